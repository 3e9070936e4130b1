//! Issuance from CSRs: chain, names, evidence extension, CSR refusals, CRLs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use ccm_pki::evidence::EVIDENCE_OID_STR;
use ccm_pki::{CaKeyType, Csr, CsrError, CsrKeyType, Error, Evidence, ZoneCa};
use x509_parser::prelude::*;

const NOW: i64 = 1_800_000_000;

fn csr_pem(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let csr = params.serialize_request(&key).unwrap();
    (key, csr.pem().unwrap())
}

#[test]
fn app_certificate_chains_carries_names_and_evidence() {
    for (kt, simulated) in [(CaKeyType::P256, true), (CaKeyType::P384, false)] {
        let generated = ZoneCa::generate("zone", kt, NOW, 10).unwrap();
        // Issue with a CA loaded back from its stored parts, as the manager does.
        let ca =
            ZoneCa::from_parts(generated.certificate_pem(), &generated.key_pkcs8_der()).unwrap();
        let (_key, pem) = csr_pem(&["app.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let csr = Csr::from_pem(&pem).unwrap();
        assert_eq!(csr.key_type(), CsrKeyType::EcP256);
        assert_eq!(csr.requested_names(), vec!["app.example.com".to_string()]);
        let evidence = Evidence {
            quote: vec![0xab; 700],
            pubkey_sha256: csr.spki_sha256(),
            simulated,
        };
        let issued = ca
            .issue_app(&csr, &csr.requested_names(), &evidence, NOW, 86_400)
            .unwrap();
        let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
        let (_, ca_cert) = X509Certificate::from_der(ca.certificate_der()).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert_eq!(
            cert.public_key().raw,
            csr.spki_der(),
            "the CSR's key is certified as is"
        );
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(
            san.general_names,
            vec![GeneralName::DNSName("app.example.com")]
        );
        assert_eq!(
            cert.subject().to_string().contains("OU=SIMULATED"),
            simulated
        );
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == EVIDENCE_OID_STR)
            .unwrap();
        assert!(!ext.critical);
        assert_eq!(
            Evidence::from_certificate(&issued.der).unwrap(),
            Some(evidence)
        );
        assert_eq!(issued.not_after, NOW + 86_400);
        assert_eq!(cert.raw_serial(), issued.serial.as_slice());
    }
}

#[test]
fn rsa_csrs_are_accepted_and_small_or_foreign_ones_refused() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let pem = rcgen::CertificateParams::new(vec!["a.example".into()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    assert_eq!(Csr::from_pem(&pem).unwrap().key_type(), CsrKeyType::EcP384);
    // A tampered request fails its signature check.
    let block = ::pem::parse(&pem).unwrap();
    let mut der = block.contents().to_vec();
    let n = der.len();
    der[n - 5] ^= 0x01;
    assert!(matches!(
        Csr::from_der(&der),
        Err(Error::Csr(CsrError::BadSignature)) | Err(Error::Csr(CsrError::Der(_)))
    ));
    let mid = der.len() / 3;
    let mut tampered = block.contents().to_vec();
    tampered[mid] ^= 0x20;
    assert!(Csr::from_der(&tampered).is_err());
    for l in 0..block.contents().len() {
        assert!(Csr::from_der(&block.contents()[..l]).is_err(), "prefix {l}");
    }
    assert!(matches!(
        Csr::from_pem("garbage"),
        Err(Error::Csr(CsrError::Pem(_)))
    ));
    let two = format!("{pem}{pem}");
    assert!(
        Csr::from_pem(&two)
            .unwrap_err()
            .to_string()
            .contains("exactly one")
    );
    let big = "x".repeat(20_000);
    assert!(matches!(
        Csr::from_pem(&big),
        Err(Error::Csr(CsrError::TooLarge { .. }))
    ));
}

#[test]
fn node_certificate_is_a_client_certificate() {
    let ca = ZoneCa::generate("zone", CaKeyType::P256, NOW, 10).unwrap();
    let node_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let issued = ca
        .issue_node(&node_key.public_key_der(), "1234", true, NOW, 3600)
        .unwrap();
    let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
    assert!(cert.subject().to_string().contains("CN=ccm node 1234"));
    assert!(cert.subject().to_string().contains("OU=SIMULATED"));
    assert!(
        cert.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .client_auth
    );
    assert_eq!(Evidence::from_certificate(&issued.der).unwrap(), None);
}

#[test]
fn crl_lists_revoked_serials_and_verifies() {
    let ca = ZoneCa::generate("zone", CaKeyType::P256, NOW, 10).unwrap();
    let der = ca
        .crl(&[(vec![0x12, 0x34], NOW - 10)], 7, NOW, 3600)
        .unwrap();
    let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
    let (_, ca_cert) = X509Certificate::from_der(ca.certificate_der()).unwrap();
    crl.verify_signature(ca_cert.public_key()).unwrap();
    let serials: Vec<Vec<u8>> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect();
    assert_eq!(serials, vec![vec![0x12, 0x34]]);
    assert_eq!(crl.crl_number().map(|n| n.to_u64_digits()), Some(vec![7]));
}
