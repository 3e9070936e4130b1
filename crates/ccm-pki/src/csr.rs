//! Certificate signing requests: parsing, signature check and the facts issuance needs.
//!
//! A [`Csr`] is accepted only when it is one PEM `CERTIFICATE REQUEST` block (at most
//! [`MAX_CSR_PEM_LEN`] bytes) holding a PKCS#10 request whose self-signature verifies, whose key
//! is one ccm issues for (EC P-256, EC P-384, RSA 2048-4096), and whose names are DNS names.
//! Everything the CSR asks for besides its key and names (key usages, extra extensions, subject
//! attributes) is ignored: the issuer decides the profile, the CSR only proves key possession.

use sha2::{Digest, Sha256};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::{CsrError, Error, Result};

/// The largest CSR accepted, in PEM bytes.
pub const MAX_CSR_PEM_LEN: usize = 16 * 1024;

/// The key in a CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrKeyType {
    /// ECDSA on P-256.
    EcP256,
    /// ECDSA on P-384.
    EcP384,
    /// RSA with this many modulus bits.
    Rsa(u32),
}

impl CsrKeyType {
    /// The spelling used in the API (`EC_P256`, `EC_P384`, `RSA_2048`, ...).
    pub fn api_name(self) -> String {
        match self {
            Self::EcP256 => "EC_P256".into(),
            Self::EcP384 => "EC_P384".into(),
            Self::Rsa(bits) => format!("RSA_{bits}"),
        }
    }
}

/// A parsed, signature-checked certificate signing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    der: Vec<u8>,
    spki_der: Vec<u8>,
    key_type: CsrKeyType,
    common_name: Option<String>,
    dns_names: Vec<String>,
}

fn invalid(e: CsrError) -> Error {
    Error::Csr(e)
}

/// Lower-cases a DNS name and checks its syntax (LDH labels, optional leading `*.` wildcard).
pub fn normalize_dns_name(name: &str) -> Option<String> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if n.is_empty() || n.len() > 253 {
        return None;
    }
    let body = n.strip_prefix("*.").unwrap_or(&n);
    let ok = body.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    ok.then_some(n)
}

impl Csr {
    /// Parses a PEM CSR (`-----BEGIN CERTIFICATE REQUEST-----`; the legacy `NEW CERTIFICATE
    /// REQUEST` label is accepted too) and verifies its self-signature.
    pub fn from_pem(text: &str) -> Result<Self> {
        if text.len() > MAX_CSR_PEM_LEN {
            return Err(invalid(CsrError::TooLarge {
                len: text.len(),
                max: MAX_CSR_PEM_LEN,
            }));
        }
        let blocks = pem::parse_many(text).map_err(|e| invalid(CsrError::Pem(e.to_string())))?;
        let [block] = blocks.as_slice() else {
            return Err(invalid(CsrError::Pem(format!(
                "expected exactly one PEM block, found {}",
                blocks.len()
            ))));
        };
        if block.tag() != "CERTIFICATE REQUEST" && block.tag() != "NEW CERTIFICATE REQUEST" {
            return Err(invalid(CsrError::Pem(format!(
                "expected a CERTIFICATE REQUEST block, found {:?}",
                block.tag().chars().take(40).collect::<String>()
            ))));
        }
        Self::from_der(block.contents())
    }

    /// Parses a DER CSR and verifies its self-signature. Trailing bytes are refused.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let (rest, req) = X509CertificationRequest::from_der(der)
            .map_err(|e| invalid(CsrError::Der(e.to_string())))?;
        if !rest.is_empty() {
            return Err(invalid(CsrError::Der(format!(
                "{} trailing bytes after the request",
                rest.len()
            ))));
        }
        req.verify_signature()
            .map_err(|_| invalid(CsrError::BadSignature))?;
        let info = &req.certification_request_info;
        let key_type = match info.subject_pki.parsed() {
            Ok(PublicKey::EC(point)) => {
                let curve = info
                    .subject_pki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string());
                match (curve.as_deref(), point.key_size()) {
                    (Some("1.2.840.10045.3.1.7"), 256) => CsrKeyType::EcP256,
                    (Some("1.3.132.0.34"), 384) => CsrKeyType::EcP384,
                    (c, _) => {
                        return Err(invalid(CsrError::UnsupportedKey(format!(
                            "EC curve {}",
                            c.unwrap_or("(none)")
                        ))));
                    }
                }
            }
            Ok(PublicKey::RSA(rsa)) => {
                let bits = u32::try_from(rsa.key_size()).unwrap_or(0);
                if !(2048..=4096).contains(&bits) {
                    return Err(invalid(CsrError::UnsupportedKey(format!(
                        "RSA with {bits} bits (2048 to 4096 are accepted)"
                    ))));
                }
                CsrKeyType::Rsa(bits)
            }
            Ok(_) | Err(_) => {
                return Err(invalid(CsrError::UnsupportedKey(format!(
                    "algorithm {}",
                    info.subject_pki.algorithm.algorithm.to_id_string()
                ))));
            }
        };
        let common_name = match info.subject.iter_common_name().next() {
            None => None,
            Some(cn) => Some(
                cn.as_str()
                    .map_err(|_| {
                        invalid(CsrError::BadName("the subject CN is not a string".into()))
                    })?
                    .to_string(),
            ),
        };
        let mut dns_names = Vec::new();
        if let Some(exts) = req.requested_extensions() {
            for ext in exts {
                if let ParsedExtension::SubjectAlternativeName(san) = ext {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(d) => {
                                dns_names.push(normalize_dns_name(d).ok_or_else(|| {
                                    invalid(CsrError::BadName(format!("{d:?} is not a DNS name")))
                                })?)
                            }
                            other => {
                                return Err(invalid(CsrError::BadName(format!(
                                    "only DNS names may be requested, not {other}"
                                ))));
                            }
                        }
                    }
                }
            }
        }
        Ok(Self {
            der: der.to_vec(),
            spki_der: info.subject_pki.raw.to_vec(),
            key_type,
            common_name,
            dns_names,
        })
    }

    /// The request (DER).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The request as PEM.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", self.der.clone()))
    }

    /// The SubjectPublicKeyInfo (DER), exactly as in the request.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the SubjectPublicKeyInfo DER: what an enclave's REPORTDATA[0..32] must be.
    pub fn spki_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.spki_der).into()
    }

    /// The key type.
    pub fn key_type(&self) -> CsrKeyType {
        self.key_type
    }

    /// The subject common name, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The DNS names the request asks for: the SAN DNS names, or (without a SAN) the subject CN
    /// when it is a DNS name. Lower-case, deduplicated, in request order.
    pub fn requested_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let candidates: Vec<String> = if self.dns_names.is_empty() {
            self.common_name
                .as_deref()
                .and_then(normalize_dns_name)
                .into_iter()
                .collect()
        } else {
            self.dns_names.clone()
        };
        for n in candidates {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }
}
