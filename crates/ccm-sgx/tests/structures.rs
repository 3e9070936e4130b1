//! Fixed structures against `sgx-isa`, and quotes built from scratch (as the simulator builds
//! them) round-tripping through our encoder and parser.

// Helpers outside #[test] functions unwrap too (clippy.toml allows it only inside tests).
#![allow(clippy::unwrap_used)]

use ccm_sgx::{AttKeyId, QeReportInfo, TdReport10};
use ccm_sgx::{
    AttestationKeyType, CertDataType, CertificationData, Error, PckExtensionError, Quote,
    QuoteBody, QuoteHeader, QuoteSignatureData, Report, ReportBody, ReportData, SgxExtension,
    TargetInfo, TeeType,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SGX_V3: &[u8] = include_bytes!("data/intel_sgx_quote_v3.bin");

#[test]
fn sgx_isa_reads_reports_and_target_infos_like_we_do() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..64 {
        let mut bytes = [0u8; 432];
        rng.fill(&mut bytes[..]);
        let ours = Report::parse(&bytes).unwrap();
        let theirs = sgx_isa::Report::try_copy_from(&bytes).unwrap();
        let b = &ours.body;
        assert_eq!(theirs.cpusvn, b.cpu_svn.0);
        assert_eq!(theirs.miscselect.bits(), b.misc_select.get());
        assert_eq!(theirs.isvextnprodid, b.isv_ext_prod_id);
        assert_eq!(theirs.attributes.flags.bits(), b.attributes.flags().bits());
        assert_eq!(theirs.attributes.xfrm, b.attributes.xfrm());
        assert_eq!(theirs.mrenclave, b.mr_enclave.0);
        assert_eq!(theirs.mrsigner, b.mr_signer.0);
        assert_eq!(theirs.configid, b.config_id);
        assert_eq!(theirs.isvprodid, b.isv_prod_id.get());
        assert_eq!(theirs.isvsvn, b.isv_svn.get());
        assert_eq!(theirs.configsvn, b.config_svn.get());
        assert_eq!(theirs.isvfamilyid, b.isv_family_id);
        assert_eq!(theirs.reportdata, b.report_data.0);
        assert_eq!(theirs.keyid, ours.key_id);
        assert_eq!(theirs.mac, ours.mac);
        assert_eq!(ours.to_bytes(), bytes);

        let mut ti = [0u8; 512];
        rng.fill(&mut ti[..]);
        let ours = TargetInfo::parse(&ti).unwrap();
        let theirs = sgx_isa::Targetinfo::try_copy_from(&ti).unwrap();
        assert_eq!(theirs.measurement, ours.mr_enclave.0);
        assert_eq!(
            theirs.attributes.flags.bits(),
            ours.attributes.flags().bits()
        );
        assert_eq!(theirs.attributes.xfrm, ours.attributes.xfrm());
        assert_eq!(theirs.miscselect.bits(), ours.misc_select.get());
        assert_eq!(ours.to_bytes(), ti);
    }

    // TARGETINFO for an enclave, as sgx-isa derives it from a REPORT.
    let mut bytes = [0u8; 432];
    rng.fill(&mut bytes[..]);
    let report = Report::parse(&bytes).unwrap();
    let ours = TargetInfo::for_enclave(&report.body);
    let theirs = sgx_isa::Targetinfo::from(sgx_isa::Report::try_copy_from(&bytes).unwrap());
    assert_eq!(theirs.measurement, ours.mr_enclave.0);
    assert_eq!(
        theirs.attributes.flags.bits(),
        ours.attributes.flags().bits()
    );
    assert_eq!(theirs.miscselect.bits(), ours.misc_select.get());
}

/// A v3 quote as the simulated QE will build one.
fn built_quote(rng: &mut StdRng) -> Quote {
    let sample = Quote::parse(SGX_V3).unwrap();
    let mut body = ReportBody::default();
    body.mr_enclave.0 = rng.r#gen();
    body.mr_signer.0 = rng.r#gen();
    body.isv_prod_id.set(rng.r#gen());
    body.report_data = ReportData([0x42; 64]);
    let attestation_key: [u8; 64] = [rng.r#gen::<[u8; 32]>(), rng.r#gen()]
        .concat()
        .try_into()
        .unwrap();
    let qe_auth_data: Vec<u8> = (0..32).map(|i| i as u8).collect();
    let mut qe_report = sample.signature_data.qe_report;
    qe_report.report_data =
        QuoteSignatureData::expected_qe_report_data(&attestation_key, &qe_auth_data);
    Quote {
        header: QuoteHeader::v3(8, 13, [0x11; 20]),
        body: QuoteBody::Sgx(body),
        signature_data: QuoteSignatureData {
            signature: [0x33; 64],
            attestation_key,
            qe_report,
            qe_report_signature: [0x44; 64],
            qe_auth_data,
            certification_data: sample.signature_data.certification_data.clone(),
        },
    }
}

#[test]
fn built_v3_quotes_round_trip_and_every_truncation_fails() {
    let mut rng = StdRng::seed_from_u64(3);
    let quote = built_quote(&mut rng);
    let bytes = quote.to_bytes().unwrap();
    assert_eq!(&bytes[..2], &[3, 0]);
    assert_eq!(&bytes[2..4], &[2, 0]);
    assert_eq!(
        quote.header.attestation_key_type(),
        AttestationKeyType::ECDSA_P256
    );
    assert_eq!(quote.tee_type(), TeeType::SGX);
    let sig_len = u32::from_le_bytes(bytes[432..436].try_into().unwrap()) as usize;
    assert_eq!(bytes.len(), 436 + sig_len);
    let parsed = Quote::parse(&bytes).unwrap();
    assert_eq!(parsed, quote);
    assert!(parsed.signature_data.qe_report_data_matches());
    assert_eq!(parsed.signed_bytes(), &bytes[..432]);
    // dcap-qvl parses what we encode.
    let theirs = dcap_qvl::quote::Quote::parse(&bytes).unwrap();
    assert_eq!(
        theirs.report.as_sgx().unwrap().mr_enclave,
        quote.sgx_body().unwrap().mr_enclave.0
    );
    assert_eq!(
        theirs.qe_report(),
        quote.signature_data.qe_report.as_bytes()
    );
    for len in 0..bytes.len() {
        assert!(Quote::parse(&bytes[..len]).is_err(), "prefix {len}");
    }
}

#[test]
fn encoder_refuses_what_it_cannot_represent() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut q = built_quote(&mut rng);
    q.signature_data.qe_auth_data = vec![0; 70_000];
    assert!(matches!(
        q.to_bytes(),
        Err(Error::TooLong {
            field: "quote.qe_auth_data",
            declared: 70_000,
            limit: 65535
        })
    ));
    let mut q = built_quote(&mut rng);
    q.signature_data.certification_data.data = vec![0; (1 << 20) + 1];
    assert!(matches!(
        q.to_bytes(),
        Err(Error::TooLong {
            field: "quote.certification_data",
            ..
        })
    ));
    let mut q = built_quote(&mut rng);
    q.header.version.set(5);
    assert!(matches!(
        q.to_bytes(),
        Err(Error::UnsupportedQuoteVersion(5))
    ));
    let mut q = built_quote(&mut rng);
    q.header.version.set(4);
    q.header.tee_type.set(TeeType::TDX.0);
    assert!(matches!(
        q.to_bytes(),
        Err(Error::UnsupportedTeeType { version: 4, .. })
    ));
}

#[test]
fn pck_chains_tolerate_one_trailing_nul_only() {
    let sample = Quote::parse(SGX_V3).unwrap();
    let data = &sample.signature_data.certification_data.data;
    assert_eq!(data.last(), Some(&0), "Intel's chain ends with a NUL");
    let chain = |data: Vec<u8>| {
        CertificationData {
            cert_type: CertDataType::PCK_CERT_CHAIN,
            data,
        }
        .pck_cert_chain()
    };
    let with_nul = chain(data.clone()).unwrap();
    let without = chain(data[..data.len() - 1].to_vec()).unwrap();
    assert_eq!(with_nul, without);
    let mut two_nuls = data.clone();
    two_nuls.push(0);
    assert!(matches!(chain(two_nuls), Err(Error::PckChain(_))));
    assert!(matches!(
        chain(b"not pem".to_vec()),
        Err(Error::PckChain(_))
    ));
    let key_block = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec();
    assert!(matches!(chain(key_block), Err(Error::PckChain(msg)) if msg.contains("PRIVATE KEY")));

    // The root CA of the chain has no SGX extension.
    assert!(matches!(
        SgxExtension::from_certificate_der(&with_nul[2]),
        Err(PckExtensionError::NotPresent)
    ));
    assert!(matches!(
        SgxExtension::from_certificate_der(b"junk"),
        Err(PckExtensionError::Der {
            field: "certificate",
            ..
        })
    ));
}

#[test]
fn fixed_structures_refuse_every_other_length() {
    macro_rules! lengths {
        ($($ty:ty => $name:literal),*) => {$(
            let full = <$ty>::default().to_bytes();
            assert_eq!(full.len(), <$ty>::SIZE);
            assert_eq!(<$ty>::parse(&full).unwrap(), <$ty>::default());
            let mut long = full.to_vec();
            long.push(0);
            for input in (0..full.len()).map(|l| &full[..l]).chain([&long[..]]) {
                assert!(matches!(
                    <$ty>::parse(input),
                    Err(Error::Length { structure: $name, expected, actual })
                        if expected == full.len() && actual == input.len()
                ));
            }
        )*};
    }
    lengths!(
        Report => "REPORT",
        ReportBody => "REPORT body",
        TargetInfo => "TARGETINFO",
        AttKeyId => "attestation key id",
        QeReportInfo => "qe_report_info",
        QuoteHeader => "quote header",
        TdReport10 => "TDX 1.0 TD report"
    );
}
