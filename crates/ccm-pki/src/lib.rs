//! Zone certificate authorities, the manager's own TLS identity, CSR checks, attested issuance,
//! the attestation-evidence extension and CRLs.
//!
//! Design:
//! - A [`ZoneCa`] is an ECDSA P-256 or P-384 CA (`basicConstraints CA:TRUE, pathlen:1`,
//!   `keyUsage keyCertSign, cRLSign, digitalSignature`) that will sign node and application
//!   certificates of one account. Zones made before simulated intermediates existed have
//!   `pathlen:0` ([`ZoneCa::may_certify_intermediates`]).
//! - Certificates resting on a simulated platform are issued by the zone's *simulated
//!   intermediate* ([`ZoneCa::issue_simulated_intermediate`]: `pathlen:0`, `OU=SIMULATED`, under
//!   the zone CA), so a relying party refuses them by chain (by not accepting that intermediate),
//!   not only by the subject's `OU=SIMULATED`.
//! - Issued certificates carry a CRL distribution point when the CA has one
//!   ([`ZoneCa::with_crl_url`]). Its private key leaves this crate only as PKCS#8 DER in a
//!   [`Zeroizing`] buffer, for the manager to seal (AES-256-GCM) before storing it;
//!   [`ZoneCa::from_parts`] loads it back and checks that key and certificate belong together.
//! - Time is an input: validity windows start at the `now` the caller passes.
//! - Issuance: [`ZoneCa::issue_node`] certifies a node's enrollment key (client authentication),
//!   [`ZoneCa::issue_app`] an enclave application's key from a checked [`Csr`], with the
//!   requested DNS names as SAN and the attestation [`Evidence`] as an X.509 extension
//!   (interoperable RA-TLS form, see [`evidence`]). Certificates resting on a simulated platform
//!   carry `OU=SIMULATED` in their subject (and the evidence's `ccm-simulated` claim). The CSR
//!   only proves possession of the key: the profile (validity, usages, names) is the issuer's.
//! - [`ZoneCa::crl`] signs a CRL of revoked serial numbers.
#![deny(missing_docs)]

pub mod csr;
pub mod evidence;
pub mod pinning;

pub use csr::{Csr, CsrKeyType};
pub use evidence::Evidence;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber, SignatureAlgorithm,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Key generation, parsing or signing failed.
    #[error("certificate operation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A certificate could not be parsed.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// The private key does not belong to the certificate.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,
    /// A timestamp is out of range.
    #[error("timestamp {0} is out of range")]
    InvalidTime(i64),
    /// A certificate signing request is not acceptable.
    #[error("invalid CSR: {0}")]
    Csr(#[from] CsrError),
    /// The attestation-evidence extension is malformed.
    #[error("invalid attestation evidence: {0}")]
    Evidence(#[from] EvidenceError),
    /// A requested certificate name is not acceptable.
    #[error("invalid certificate name: {0}")]
    InvalidName(String),
}

/// Why a CSR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// Larger than the limit.
    #[error("{len} bytes is larger than the {max}-byte limit")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not one PEM CERTIFICATE REQUEST block.
    #[error("not a PEM certificate request: {0}")]
    Pem(String),
    /// Not a DER PKCS#10 request.
    #[error("not a PKCS#10 request: {0}")]
    Der(String),
    /// The self-signature does not verify.
    #[error("its signature does not verify with its own public key")]
    BadSignature,
    /// A key type ccm does not issue for.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// A subject or SAN name is not acceptable.
    #[error("{0}")]
    BadName(String),
}

/// Why an evidence extension could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Not well-formed CBOR.
    #[error("malformed CBOR: {0}")]
    Cbor(String),
    /// A CBOR tag other than the Intel quote tag.
    #[error("unknown evidence CBOR tag {0}")]
    UnknownTag(u64),
    /// Well-formed CBOR of the wrong shape.
    #[error("{0}")]
    Format(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The curve of a CA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaKeyType {
    /// ECDSA P-256 with SHA-256.
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
}

impl CaKeyType {
    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// SHA-256 of a DER certificate: the fingerprint clients pin.
pub fn fingerprint_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Formats a fingerprint as colon-separated uppercase hex (`AB:CD:...`), as `openssl x509
/// -fingerprint` prints it.
pub fn format_fingerprint(fp: &[u8; 32]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses a fingerprint given as 64 hex digits, with or without colons, any case.
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    let s = s
        .strip_prefix("sha256:")
        .or_else(|| s.strip_prefix("SHA256:"))
        .unwrap_or(s);
    let hex_digits: String = s.chars().filter(|c| *c != ':').collect();
    if hex_digits.len() != 64 {
        return None;
    }
    hex::decode(hex_digits).ok()?.try_into().ok()
}

fn datetime(unix: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|_| Error::InvalidTime(unix))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and non-zero, as RFC 5280 requires.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// A zone certificate authority.
pub struct ZoneCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
    key_type: CaKeyType,
    /// The CA as rcgen's issuer (its name, key identifier and usages; the signature of this
    /// re-signed copy is never published).
    issuer: rcgen::Certificate,
    /// Where relying parties fetch this CA's CRL; put into every certificate it issues.
    crl_url: Option<String>,
}

impl std::fmt::Debug for ZoneCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneCa")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl ZoneCa {
    /// Generates a new CA named `common_name`, valid from `now` for `validity_days`.
    pub fn generate(
        common_name: &str,
        key_type: CaKeyType,
        now: i64,
        validity_days: i64,
    ) -> Result<Self> {
        let key = KeyPair::generate_for(key_type.algorithm())?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "ccm");
        params.distinguished_name = dn;
        // One level below: the simulated intermediate.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = datetime(now.saturating_sub(300))?;
        params.not_after = datetime(now.saturating_add(validity_days.saturating_mul(86_400)))?;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = false;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
            key_type,
            issuer: cert,
            crl_url: None,
        })
    }

    /// Whether this CA's basic constraints allow an intermediate CA below it (`pathlen` 1 or
    /// more, or none). Zone CAs made before simulated intermediates existed have `pathlen:0`.
    pub fn may_certify_intermediates(&self) -> bool {
        x509_parser::parse_x509_certificate(&self.cert_der)
            .ok()
            .and_then(|(_, c)| {
                c.basic_constraints()
                    .ok()
                    .flatten()
                    .map(|b| b.value.clone())
            })
            .is_some_and(|bc| bc.ca && bc.path_len_constraint.is_none_or(|n| n >= 1))
    }

    /// Makes the zone's simulated intermediate CA, certified by this CA: the same key type,
    /// subject `CN=<common_name>, O=ccm, OU=SIMULATED`, `pathlen:0`, valid from `now` for
    /// `validity_days` (never beyond this CA). Certificates resting on simulated platforms are
    /// issued by it, so relying parties can refuse them by chain.
    pub fn issue_simulated_intermediate(
        &self,
        common_name: &str,
        now: i64,
        validity_days: i64,
    ) -> Result<ZoneCa> {
        if !self.may_certify_intermediates() {
            return Err(Error::InvalidCertificate(
                "the zone CA's basic constraints (pathlen:0) allow no intermediate CA".into(),
            ));
        }
        let key = KeyPair::generate_for(self.key_type.algorithm())?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "ccm");
        dn.push(DnType::OrganizationalUnitName, SIMULATED_OU);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_not_after = self.issuer.params().not_after.unix_timestamp();
        params.not_before = datetime(now.saturating_sub(300))?;
        params.not_after = datetime(
            now.saturating_add(validity_days.saturating_mul(86_400))
                .min(ca_not_after),
        )?;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        if let Some(url) = &self.crl_url {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![url.clone()],
            }];
        }
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
            key_type: self.key_type,
            issuer: cert,
            crl_url: None,
        })
    }

    /// Sets where relying parties fetch this CA's CRL: every certificate it issues from now on
    /// carries it as its CRL distribution point.
    pub fn with_crl_url(mut self, url: impl Into<String>) -> Self {
        self.crl_url = Some(url.into());
        self
    }

    /// The CRL distribution point of the certificates this CA issues.
    pub fn crl_url(&self) -> Option<&str> {
        self.crl_url.as_deref()
    }

    /// Loads a CA from its certificate (PEM) and PKCS#8 private key (DER), checking that they
    /// belong together.
    pub fn from_parts(cert_pem: &str, key_pkcs8_der: &[u8]) -> Result<Self> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| Error::InvalidCertificate(e.to_string()))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| Error::InvalidCertificate(e.to_string()))?;
        let key = KeyPair::try_from(key_pkcs8_der)?;
        let key_type = if key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            CaKeyType::P256
        } else if key.is_compatible(&rcgen::PKCS_ECDSA_P384_SHA384) {
            CaKeyType::P384
        } else {
            return Err(Error::InvalidCertificate(
                "the CA key is neither P-256 nor P-384".into(),
            ));
        };
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(Error::KeyMismatch);
        }
        let issuer = CertificateParams::from_ca_cert_der(&pem.contents.as_slice().into())?
            .self_signed(&key)?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            cert_der: pem.contents.clone(),
            key,
            key_type,
            issuer,
            crl_url: None,
        })
    }

    /// The CA certificate (PEM).
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate (DER).
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The key type.
    pub fn key_type(&self) -> CaKeyType {
        self.key_type
    }

    /// The private key as PKCS#8 DER, for sealing.
    pub fn key_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.serialize_der())
    }

    fn sign(&self, params: CertificateParams, spki_der: &[u8]) -> Result<IssuedCert> {
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)?;
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| s.to_bytes())
            .unwrap_or_default();
        let not_before = params.not_before.unix_timestamp();
        let not_after = params.not_after.unix_timestamp();
        let mut params = params;
        if let Some(url) = &self.crl_url {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![url.clone()],
            }];
        }
        let cert = params.signed_by(&public_key, &self.issuer, &self.key)?;
        Ok(IssuedCert {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            serial,
            not_before,
            not_after,
        })
    }

    /// Certifies a node's enrollment key (`spki_der`, the node's SubjectPublicKeyInfo) for TLS
    /// client authentication to the manager: subject `CN=ccm node <node_id>` (plus
    /// `OU=SIMULATED` for simulated platforms), SAN URI `urn:ccm:node:<node_id>`.
    pub fn issue_node(
        &self,
        spki_der: &[u8],
        node_id: &str,
        simulated: bool,
        now: i64,
        validity_secs: i64,
    ) -> Result<IssuedCert> {
        let uri = format!("urn:ccm:node:{node_id}");
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::Ia5String::try_from(uri).map_err(|e| Error::InvalidName(e.to_string()))?,
        )];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("ccm node {node_id}"));
        dn.push(DnType::OrganizationName, "ccm");
        if simulated {
            dn.push(DnType::OrganizationalUnitName, SIMULATED_OU);
        }
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = datetime(now.saturating_sub(300))?;
        params.not_after = datetime(now.saturating_add(validity_secs))?;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        self.sign(params, spki_der)
    }

    /// Certifies an enclave application's key: subject CN = the first name (plus
    /// `OU=SIMULATED` for simulated platforms), every name as a DNS SAN, server and client
    /// authentication, and the attestation evidence as an extension.
    pub fn issue_app(
        &self,
        csr: &Csr,
        names: &[String],
        evidence: &Evidence,
        now: i64,
        validity_secs: i64,
    ) -> Result<IssuedCert> {
        let first = names
            .first()
            .ok_or_else(|| Error::InvalidName("no name to certify".into()))?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, first.as_str());
        if evidence.simulated {
            dn.push(DnType::OrganizationalUnitName, SIMULATED_OU);
        }
        params.distinguished_name = dn;
        params.key_usages = match csr.key_type() {
            CsrKeyType::Rsa(_) => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            _ => vec![KeyUsagePurpose::DigitalSignature],
        };
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = datetime(now.saturating_sub(300))?;
        params.not_after = datetime(now.saturating_add(validity_secs))?;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            evidence::EVIDENCE_OID,
            evidence.encode()?,
        )];
        self.sign(params, csr.spki_der())
    }

    /// Signs a CRL listing `revoked` (serial number, revocation time), numbered `crl_number`,
    /// valid from `now` for `validity_secs`. Returns the DER.
    pub fn crl(
        &self,
        revoked: &[(Vec<u8>, i64)],
        crl_number: u64,
        now: i64,
        validity_secs: i64,
    ) -> Result<Vec<u8>> {
        let revoked_certs = revoked
            .iter()
            .map(|(serial, at)| {
                Ok(rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: datetime(*at)?,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let params = rcgen::CertificateRevocationListParams {
            this_update: datetime(now)?,
            next_update: datetime(now.saturating_add(validity_secs.max(1)))?,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: self.issuer.params().key_identifier_method.clone(),
        };
        Ok(params.signed_by(&self.issuer, &self.key)?.der().to_vec())
    }
}

/// The subject organizational unit of certificates resting on a simulated platform.
pub const SIMULATED_OU: &str = "SIMULATED";

/// A certificate just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// PEM.
    pub pem: String,
    /// DER.
    pub der: Vec<u8>,
    /// The serial number (big-endian bytes).
    pub serial: Vec<u8>,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
}

/// The manager's TLS identity: a self-signed server certificate and its key.
pub struct ServerIdentity {
    /// Certificate (PEM).
    pub cert_pem: String,
    /// Private key (PKCS#8 PEM).
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity").finish_non_exhaustive()
    }
}

/// Generates a self-signed ECDSA P-256 server certificate for `names` (DNS names or IP
/// addresses), valid from `now` for `validity_days`.
pub fn self_signed_server(
    names: &[String],
    now: i64,
    validity_days: i64,
) -> Result<ServerIdentity> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ccm manager");
    dn.push(DnType::OrganizationName, "ccm");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = datetime(now.saturating_sub(300))?;
    params.not_after = datetime(now.saturating_add(validity_days.saturating_mul(86_400)))?;
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key)?;
    Ok(ServerIdentity {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn zone_ca_is_a_constrained_ca_and_round_trips() {
        for kt in [CaKeyType::P256, CaKeyType::P384] {
            let ca = ZoneCa::generate("acme zone CA", kt, NOW, 3650).unwrap();
            let (_, cert) = X509Certificate::from_der(ca.certificate_der()).unwrap();
            let bc = cert.basic_constraints().unwrap().unwrap().value;
            assert!(bc.ca);
            assert_eq!(bc.path_len_constraint, Some(1));
            assert!(cert.key_usage().unwrap().unwrap().value.key_cert_sign());
            assert_eq!(cert.validity().not_before.timestamp(), NOW - 300);
            assert!(cert.subject().to_string().contains("acme zone CA"));
            cert.verify_signature(None).unwrap();
            let loaded = ZoneCa::from_parts(ca.certificate_pem(), &ca.key_pkcs8_der()).unwrap();
            assert_eq!(loaded.key_type(), kt);
            assert_eq!(loaded.certificate_der(), ca.certificate_der());
        }
    }

    #[test]
    fn from_parts_rejects_a_foreign_key_and_garbage() {
        let a = ZoneCa::generate("a", CaKeyType::P256, NOW, 1).unwrap();
        let b = ZoneCa::generate("b", CaKeyType::P256, NOW, 1).unwrap();
        assert!(matches!(
            ZoneCa::from_parts(a.certificate_pem(), &b.key_pkcs8_der()),
            Err(Error::KeyMismatch)
        ));
        assert!(matches!(
            ZoneCa::from_parts("not pem", &a.key_pkcs8_der()),
            Err(Error::InvalidCertificate(_))
        ));
        assert!(ZoneCa::from_parts(a.certificate_pem(), b"junk").is_err());
    }

    #[test]
    fn fingerprints_format_and_parse() {
        let fp = fingerprint_sha256(b"x");
        let s = format_fingerprint(&fp);
        assert_eq!(s.len(), 95);
        assert_eq!(parse_fingerprint(&s), Some(fp));
        assert_eq!(parse_fingerprint(&hex::encode(fp)), Some(fp));
        assert_eq!(
            parse_fingerprint(&format!("sha256:{}", hex::encode(fp))),
            Some(fp)
        );
        assert_eq!(parse_fingerprint("abcd"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn server_certificate_names_and_usage() {
        let id = self_signed_server(&["localhost".into(), "127.0.0.1".into()], NOW, 365).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(id.cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(san.general_names.len(), 2);
        assert!(!cert.is_ca());
        assert!(id.key_pem.contains("PRIVATE KEY"));
    }

    fn app_csr(name: &str) -> Csr {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = CertificateParams::new(vec![name.to_string()]).unwrap();
        Csr::from_pem(&params.serialize_request(&key).unwrap().pem().unwrap()).unwrap()
    }

    fn crl_uris(der: &[u8]) -> Vec<String> {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        let mut out = Vec::new();
        for ext in cert.extensions() {
            if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
                for p in points.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                        for n in names {
                            if let GeneralName::URI(u) = n {
                                out.push(u.to_string());
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn simulated_certificates_chain_through_the_simulated_intermediate() {
        let zone = ZoneCa::generate("acme zone CA", CaKeyType::P256, NOW, 3650)
            .unwrap()
            .with_crl_url("https://m.example/v1/zones/z/crl");
        assert!(zone.may_certify_intermediates());
        let sim = zone
            .issue_simulated_intermediate("acme simulated CA", NOW, 3650)
            .unwrap()
            .with_crl_url("https://m.example/v1/zones/z/crl?ca=simulated");
        let (_, zone_cert) = X509Certificate::from_der(zone.certificate_der()).unwrap();
        let (_, sim_cert) = X509Certificate::from_der(sim.certificate_der()).unwrap();
        // The intermediate: a CA that may sign leaves only, OU=SIMULATED, signed by the zone CA.
        let bc = sim_cert.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        assert!(sim_cert.subject().to_string().contains("OU=SIMULATED"));
        assert_eq!(sim_cert.issuer(), zone_cert.subject());
        sim_cert
            .verify_signature(Some(zone_cert.public_key()))
            .unwrap();
        assert_eq!(
            crl_uris(sim.certificate_der()),
            ["https://m.example/v1/zones/z/crl"]
        );
        // A leaf issued by it chains to it, not to the zone CA directly.
        let csr = app_csr("app.example.com");
        let evidence = Evidence {
            quote: vec![1, 2, 3],
            pubkey_sha256: csr.spki_sha256(),
            simulated: true,
        };
        let leaf = sim
            .issue_app(&csr, &["app.example.com".into()], &evidence, NOW, 86_400)
            .unwrap();
        let (_, leaf_cert) = X509Certificate::from_der(&leaf.der).unwrap();
        assert_eq!(leaf_cert.issuer(), sim_cert.subject());
        leaf_cert
            .verify_signature(Some(sim_cert.public_key()))
            .unwrap();
        assert!(
            leaf_cert
                .verify_signature(Some(zone_cert.public_key()))
                .is_err()
        );
        assert_eq!(
            crl_uris(&leaf.der),
            ["https://m.example/v1/zones/z/crl?ca=simulated"]
        );
        // It loads back from its parts like a zone CA.
        let loaded = ZoneCa::from_parts(sim.certificate_pem(), &sim.key_pkcs8_der()).unwrap();
        let again = loaded
            .issue_app(&csr, &["app.example.com".into()], &evidence, NOW, 86_400)
            .unwrap();
        let (_, again_cert) = X509Certificate::from_der(&again.der).unwrap();
        again_cert
            .verify_signature(Some(sim_cert.public_key()))
            .unwrap();
        assert!(crl_uris(&again.der).is_empty());
    }

    #[test]
    fn a_pathlen_zero_zone_ca_makes_no_intermediate() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "old zone CA");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let cert = params.self_signed(&key).unwrap();
        let old = ZoneCa::from_parts(&cert.pem(), &key.serialize_der()).unwrap();
        assert!(!old.may_certify_intermediates());
        assert!(old.issue_simulated_intermediate("x", NOW, 1).is_err());
    }

    #[test]
    fn issued_certificates_carry_the_crl_distribution_point() {
        let bare = ZoneCa::generate("z", CaKeyType::P256, NOW, 1).unwrap();
        let spki = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .public_key_der();
        let node = bare.issue_node(&spki, "n1", false, NOW, 3600).unwrap();
        assert!(crl_uris(&node.der).is_empty());
        let ca = bare.with_crl_url("https://m.example/v1/zones/z/crl");
        assert_eq!(ca.crl_url(), Some("https://m.example/v1/zones/z/crl"));
        let node = ca.issue_node(&spki, "n1", false, NOW, 3600).unwrap();
        assert_eq!(crl_uris(&node.der), ["https://m.example/v1/zones/z/crl"]);
    }
}
