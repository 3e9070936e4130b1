//! The small X.509 profile the DCAP PKI uses: ECDSA P-256 with SHA-256 everywhere, short fixed
//! chains (leaf, intermediate CA, root), DER CRLs.
//!
//! Certificates and CRLs are parsed once with `x509-parser` into owned summaries holding only what
//! verification needs; signatures are checked with `ring`. Anything outside the profile (another
//! algorithm or curve, an unknown critical extension, a version 1 certificate) is refused rather
//! than interpreted.

use std::collections::HashSet;

use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{OID_SIG_ECDSA_WITH_SHA256, Oid};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::error::CertError;
use crate::time::clamp_unix;

/// DER prefix of a SubjectPublicKeyInfo holding an uncompressed P-256 point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The OID of Intel's SGX extension in PCK certificates (1.2.840.113741.1.13.1).
pub(crate) const SGX_EXTENSION_OID: &[u64] = &[1, 2, 840, 113_741, 1, 13, 1];

/// Largest certificate accepted.
const MAX_CERT_LEN: usize = 16 * 1024;

/// An uncompressed P-256 public point (`04 ‖ x ‖ y`).
pub(crate) type P256Point = [u8; 65];

/// What verification needs from one certificate.
#[derive(Clone, Debug)]
pub(crate) struct Cert {
    pub(crate) der: Vec<u8>,
    pub(crate) subject: Vec<u8>,
    pub(crate) issuer: Vec<u8>,
    pub(crate) subject_cn: String,
    pub(crate) issuer_cn: String,
    /// Serial number without leading zero bytes.
    pub(crate) serial: Vec<u8>,
    pub(crate) public_key: P256Point,
    pub(crate) not_before: u64,
    pub(crate) not_after: u64,
    pub(crate) is_ca: bool,
    /// `None` when the certificate has no key usage extension.
    pub(crate) key_cert_sign: Option<bool>,
    pub(crate) crl_sign: Option<bool>,
    /// The value (OCTET STRING contents) of the SGX extension, if present.
    pub(crate) sgx_extension: Option<Vec<u8>>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
}

/// Strips leading zero bytes from a DER INTEGER's content (serial numbers compare by value).
pub(crate) fn normalize_serial(raw: &[u8]) -> Vec<u8> {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    raw.get(start..).unwrap_or_default().to_vec()
}

fn is_ecdsa_sha256(oid: &Oid<'_>, has_params: bool) -> bool {
    *oid == OID_SIG_ECDSA_WITH_SHA256 && !has_params
}

fn p256_point(spki_raw: &[u8]) -> Result<P256Point, CertError> {
    let point = spki_raw
        .strip_prefix(&P256_SPKI_PREFIX[..])
        .ok_or(CertError::UnsupportedKey)?;
    let point: P256Point = point.try_into().map_err(|_| CertError::UnsupportedKey)?;
    if point[0] != 0x04 {
        return Err(CertError::UnsupportedKey);
    }
    Ok(point)
}

fn common_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .chars()
        .take(128)
        .collect()
}

impl Cert {
    /// Parses one DER certificate, refusing anything outside the DCAP profile.
    pub(crate) fn from_der(der: &[u8]) -> Result<Cert, CertError> {
        if der.len() > MAX_CERT_LEN {
            return Err(CertError::TooLarge(der.len()));
        }
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| CertError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertError::TrailingData);
        }
        if cert.version() != X509Version::V3 {
            return Err(CertError::UnsupportedVersion);
        }
        let alg = &cert.signature_algorithm;
        let tbs_alg = &cert.tbs_certificate.signature;
        if !is_ecdsa_sha256(&alg.algorithm, alg.parameters.is_some())
            || !is_ecdsa_sha256(&tbs_alg.algorithm, tbs_alg.parameters.is_some())
        {
            return Err(CertError::UnsupportedSignatureAlgorithm(
                alg.algorithm.to_id_string(),
            ));
        }
        let public_key = p256_point(cert.public_key().raw)?;

        let mut is_ca = false;
        let mut key_cert_sign = None;
        let mut crl_sign = None;
        let mut sgx_extension = None;
        let mut seen = HashSet::new();
        for ext in cert.extensions() {
            if !seen.insert(ext.oid.as_bytes()) {
                return Err(CertError::DuplicateExtension(ext.oid.to_id_string()));
            }
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
                ParsedExtension::KeyUsage(ku) => {
                    key_cert_sign = Some(ku.key_cert_sign());
                    crl_sign = Some(ku.crl_sign());
                }
                ParsedExtension::ParseError { .. } => {
                    return Err(CertError::Malformed(format!(
                        "extension {} does not parse",
                        ext.oid.to_id_string()
                    )));
                }
                ParsedExtension::UnsupportedExtension { oid } => {
                    if oid
                        .iter()
                        .is_some_and(|arcs| arcs.eq(SGX_EXTENSION_OID.iter().copied()))
                    {
                        sgx_extension = Some(ext.value.to_vec());
                    } else if ext.critical {
                        return Err(CertError::UnknownCriticalExtension(oid.to_id_string()));
                    }
                }
                _ => {}
            }
        }

        let validity = cert.validity();
        Ok(Cert {
            der: der.to_vec(),
            subject: cert.subject().as_raw().to_vec(),
            issuer: cert.issuer().as_raw().to_vec(),
            subject_cn: common_name(cert.subject()),
            issuer_cn: common_name(cert.issuer()),
            serial: normalize_serial(cert.raw_serial()),
            public_key,
            not_before: clamp_unix(validity.not_before.timestamp()),
            not_after: clamp_unix(validity.not_after.timestamp()),
            is_ca,
            key_cert_sign,
            crl_sign,
            sgx_extension,
            tbs: cert.tbs_certificate.as_ref().to_vec(),
            signature: cert.signature_value.data.to_vec(),
        })
    }

    /// Whether `issuer`'s key signed this certificate and names match.
    pub(crate) fn is_signed_by(&self, issuer: &Cert) -> bool {
        self.issuer == issuer.subject && verify_asn1(&issuer.public_key, &self.tbs, &self.signature)
    }

    /// Whether the certificate may sign certificates (CA, and key usage allows it if present).
    pub(crate) fn can_sign_certs(&self) -> bool {
        self.is_ca && self.key_cert_sign != Some(false)
    }

    /// Whether the certificate may sign CRLs.
    pub(crate) fn can_sign_crls(&self) -> bool {
        self.is_ca && self.crl_sign != Some(false)
    }

    /// Whether the certificate is self-issued and its signature verifies with its own key.
    pub(crate) fn is_self_signed(&self) -> bool {
        self.is_signed_by(self)
    }
}

/// Parses every certificate of a PEM chain (trailing NUL bytes and whitespace are tolerated, as
/// quotes carry the chain NUL-terminated).
pub(crate) fn parse_pem_chain(pem_text: &[u8]) -> Result<Vec<Cert>, CertError> {
    let end = pem_text
        .iter()
        .rposition(|b| *b != 0 && !b.is_ascii_whitespace())
        .map_or(0, |i| i.saturating_add(1));
    let text = pem_text.get(..end).unwrap_or_default();
    if text.contains(&0) {
        return Err(CertError::Pem("NUL byte inside the PEM chain".into()));
    }
    let blocks = pem::parse_many(text).map_err(|e| CertError::Pem(e.to_string()))?;
    if blocks.is_empty() {
        return Err(CertError::Pem("no certificate".into()));
    }
    blocks
        .iter()
        .map(|block| {
            if block.tag() != "CERTIFICATE" {
                return Err(CertError::Pem(format!(
                    "unexpected PEM block {}",
                    block.tag().chars().take(32).collect::<String>()
                )));
            }
            Cert::from_der(block.contents())
        })
        .collect()
}

/// Verifies an ASN.1 DER ECDSA P-256 SHA-256 signature.
pub(crate) fn verify_asn1(public_key: &P256Point, msg: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
        .verify(msg, sig)
        .is_ok()
}

/// Verifies a raw `r ‖ s` ECDSA P-256 SHA-256 signature (the form quotes and collateral use).
pub(crate) fn verify_raw(public_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key)
        .verify(msg, sig)
        .is_ok()
}

/// What verification needs from one CRL.
#[derive(Clone, Debug)]
pub(crate) struct Crl {
    pub(crate) issuer: Vec<u8>,
    pub(crate) this_update: u64,
    pub(crate) next_update: Option<u64>,
    /// Revoked serial numbers without leading zero bytes.
    pub(crate) revoked: HashSet<Vec<u8>>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
}

impl Crl {
    /// Parses a DER CRL (ECDSA P-256 SHA-256 signed).
    pub(crate) fn from_der(der: &[u8]) -> Result<Crl, CertError> {
        let (rest, crl) = CertificateRevocationList::from_der(der)
            .map_err(|e| CertError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertError::TrailingData);
        }
        let alg = &crl.signature_algorithm;
        let tbs_alg = &crl.tbs_cert_list.signature;
        if !is_ecdsa_sha256(&alg.algorithm, alg.parameters.is_some())
            || !is_ecdsa_sha256(&tbs_alg.algorithm, tbs_alg.parameters.is_some())
        {
            return Err(CertError::UnsupportedSignatureAlgorithm(
                alg.algorithm.to_id_string(),
            ));
        }
        for ext in crl.extensions() {
            if ext.critical
                && matches!(
                    ext.parsed_extension(),
                    ParsedExtension::UnsupportedExtension { .. }
                        | ParsedExtension::ParseError { .. }
                )
            {
                return Err(CertError::UnknownCriticalExtension(ext.oid.to_id_string()));
            }
        }
        let mut revoked = HashSet::new();
        for entry in crl.iter_revoked_certificates() {
            revoked.insert(normalize_serial(entry.raw_serial()));
        }
        Ok(Crl {
            issuer: crl.issuer().as_raw().to_vec(),
            this_update: clamp_unix(crl.last_update().timestamp()),
            next_update: crl.next_update().map(|t| clamp_unix(t.timestamp())),
            revoked,
            tbs: crl.tbs_cert_list.as_ref().to_vec(),
            signature: crl.signature_value.data.to_vec(),
        })
    }

    /// Whether `issuer` signed this CRL (names match, key may sign CRLs, signature verifies).
    pub(crate) fn is_signed_by(&self, issuer: &Cert) -> bool {
        self.issuer == issuer.subject
            && issuer.can_sign_crls()
            && verify_asn1(&issuer.public_key, &self.tbs, &self.signature)
    }

    /// Whether the CRL lists `serial` (normalized).
    pub(crate) fn revokes(&self, serial: &[u8]) -> bool {
        self.revoked.contains(serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTEL_ROOT: &[u8] = include_bytes!("intel-sgx-root-ca.der");
    const INTEL_COLLATERAL: &[u8] = include_bytes!("../tests/data/intel-sgx-quote-collateral.json");

    #[test]
    fn parses_intel_root() {
        let root = Cert::from_der(INTEL_ROOT).unwrap();
        assert_eq!(root.subject_cn, "Intel SGX Root CA");
        assert!(root.is_ca && root.can_sign_certs() && root.can_sign_crls());
        assert!(root.is_self_signed());
        assert!(root.sgx_extension.is_none());
    }

    #[test]
    fn parses_intel_crls_and_chains() {
        let c = crate::Collateral::from_json(INTEL_COLLATERAL).unwrap();
        let root = Cert::from_der(INTEL_ROOT).unwrap();
        let root_crl = Crl::from_der(&c.parts().root_ca_crl).unwrap();
        assert!(root_crl.is_signed_by(&root));
        let chain = parse_pem_chain(c.parts().pck_crl_issuer_chain.as_bytes()).unwrap();
        assert_eq!(chain.len(), 2);
        assert!(chain[0].is_signed_by(&root));
        assert!(chain[0].can_sign_crls());
        let pck_crl = Crl::from_der(&c.parts().pck_crl).unwrap();
        assert!(pck_crl.is_signed_by(&chain[0]));
        assert!(!pck_crl.is_signed_by(&root));
        assert!(
            pck_crl.revoked.is_empty(),
            "Intel's sample PCK CRL revokes nothing"
        );
        assert!(pck_crl.next_update.is_some());
    }

    #[test]
    fn truncated_certificates_are_errors() {
        for len in 0..INTEL_ROOT.len() {
            assert!(Cert::from_der(&INTEL_ROOT[..len]).is_err(), "len {len}");
        }
        let mut long = INTEL_ROOT.to_vec();
        long.push(0);
        assert!(matches!(
            Cert::from_der(&long),
            Err(CertError::TrailingData)
        ));
    }

    #[test]
    fn tampered_certificate_fails_signature() {
        let root = Cert::from_der(INTEL_ROOT).unwrap();
        let mut der = INTEL_ROOT.to_vec();
        // A byte inside the validity period of the TBS part.
        let pos = der.windows(4).position(|w| w == b"1805").unwrap();
        der[pos + 3] ^= 1;
        let tampered = Cert::from_der(&der).unwrap();
        assert!(!tampered.is_signed_by(&root));
    }

    #[test]
    fn serials_compare_by_value() {
        assert_eq!(normalize_serial(&[0, 0, 1, 2]), vec![1, 2]);
        assert_eq!(normalize_serial(&[0]), Vec::<u8>::new());
    }
}
