//! Trust anchors for DCAP verification.
//!
//! [`TrustRoots::intel`] holds Intel's SGX Root CA (embedded, the public certificate Intel
//! publishes; SHA-256 fingerprint [`INTEL_SGX_ROOT_CA_SHA256`]). Any other root, such as the root
//! of a simulated platform, is trusted only when a caller adds it explicitly and says what kind of
//! root it is; quotes resting on a simulated root come out of the verifier marked `simulated`.

use crate::error::{CertError, Error};
use crate::x509::Cert;

/// Intel's SGX Root CA certificate (DER), as published by Intel.
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("intel-sgx-root-ca.der");

/// SHA-256 fingerprint of [`INTEL_SGX_ROOT_CA_DER`].
pub const INTEL_SGX_ROOT_CA_SHA256: [u8; 32] = [
    0x44, 0xA0, 0x19, 0x6B, 0x2B, 0x99, 0xF8, 0x89, 0xB8, 0xE1, 0x49, 0xE9, 0x5B, 0x80, 0x7A, 0x35,
    0x0E, 0x74, 0x24, 0x96, 0x43, 0x99, 0xE8, 0x85, 0xA7, 0xCB, 0xB8, 0xCC, 0xFA, 0xB6, 0x74, 0xD3,
];

/// What a trust root stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RootKind {
    /// A hardware root (Intel's, or another vendor-operated SGX root).
    Hardware,
    /// The root of a simulated platform: quotes under it prove nothing about hardware.
    Simulated,
}

/// One trusted root certificate.
#[derive(Clone, Debug)]
pub struct TrustRoot {
    pub(crate) cert: Cert,
    kind: RootKind,
    fingerprint: [u8; 32],
}

impl TrustRoot {
    /// Parses a DER root certificate: it must be a self-signed ECDSA P-256 CA certificate.
    pub fn from_der(der: &[u8], kind: RootKind) -> Result<TrustRoot, Error> {
        let cert = Cert::from_der(der).map_err(Error::TrustRoot)?;
        if !cert.can_sign_certs() {
            return Err(Error::TrustRoot(CertError::NotCa));
        }
        if !cert.is_self_signed() {
            return Err(Error::TrustRoot(CertError::NotSelfSigned));
        }
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
        Ok(TrustRoot {
            cert,
            kind,
            fingerprint,
        })
    }

    /// Parses a PEM root certificate (the first `CERTIFICATE` block).
    pub fn from_pem(pem_text: &str, kind: RootKind) -> Result<TrustRoot, Error> {
        let block =
            pem::parse(pem_text).map_err(|e| Error::TrustRoot(CertError::Pem(e.to_string())))?;
        if block.tag() != "CERTIFICATE" {
            return Err(Error::TrustRoot(CertError::Pem(format!(
                "expected a CERTIFICATE block, found {}",
                block.tag().chars().take(32).collect::<String>()
            ))));
        }
        TrustRoot::from_der(block.contents(), kind)
    }

    /// Intel's SGX Root CA (parsed from the embedded certificate).
    pub fn intel() -> Result<TrustRoot, Error> {
        TrustRoot::from_der(INTEL_SGX_ROOT_CA_DER, RootKind::Hardware)
    }

    /// Whether this root is a simulated platform's.
    pub fn is_simulated(&self) -> bool {
        self.kind == RootKind::Simulated
    }

    /// The kind of root.
    pub fn kind(&self) -> RootKind {
        self.kind
    }

    /// SHA-256 of the DER certificate.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// The subject common name.
    pub fn common_name(&self) -> &str {
        &self.cert.subject_cn
    }

    /// The DER certificate.
    pub fn der(&self) -> &[u8] {
        &self.cert.der
    }
}

/// The set of roots a verifier trusts.
#[derive(Clone, Debug)]
pub struct TrustRoots {
    roots: Vec<TrustRoot>,
}

impl TrustRoots {
    /// Intel's SGX Root CA only: the secure default for production.
    ///
    /// The embedded certificate is fixed and checked by a test; should it ever fail to parse, the
    /// set is empty and every quote is refused (fail closed) rather than the process panicking.
    pub fn intel() -> TrustRoots {
        TrustRoots {
            roots: TrustRoot::intel().into_iter().collect(),
        }
    }

    /// No roots at all (every quote is refused until roots are added).
    pub fn empty() -> TrustRoots {
        TrustRoots { roots: Vec::new() }
    }

    /// Adds a root (a root already present is not added twice).
    pub fn with(mut self, root: TrustRoot) -> TrustRoots {
        self.add(root);
        self
    }

    /// Adds a root (a root already present is not added twice).
    pub fn add(&mut self, root: TrustRoot) {
        if !self.roots.iter().any(|r| r.fingerprint == root.fingerprint) {
            self.roots.push(root);
        }
    }

    /// The trusted roots.
    pub fn roots(&self) -> &[TrustRoot] {
        &self.roots
    }

    /// The root whose subject is `issuer` and whose key signed `cert`, if any.
    pub(crate) fn find_issuer(&self, cert: &Cert) -> Option<(usize, &TrustRoot)> {
        self.roots
            .iter()
            .enumerate()
            .find(|(_, root)| cert.is_signed_by(&root.cert))
    }

    /// The root with the given subject name.
    pub(crate) fn by_subject(&self, subject: &[u8]) -> impl Iterator<Item = (usize, &TrustRoot)> {
        self.roots
            .iter()
            .enumerate()
            .filter(move |(_, root)| root.cert.subject == subject)
    }

    /// Root number `index`.
    pub(crate) fn get(&self, index: usize) -> Option<&TrustRoot> {
        self.roots.get(index)
    }
}

impl Default for TrustRoots {
    fn default() -> Self {
        TrustRoots::intel()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_intel_root_has_the_published_fingerprint() {
        let digest = ring::digest::digest(&ring::digest::SHA256, INTEL_SGX_ROOT_CA_DER);
        assert_eq!(digest.as_ref(), &INTEL_SGX_ROOT_CA_SHA256);
        let root = TrustRoot::intel().unwrap();
        assert_eq!(root.fingerprint(), &INTEL_SGX_ROOT_CA_SHA256);
        assert_eq!(root.common_name(), "Intel SGX Root CA");
        assert!(!root.is_simulated());
        // The fingerprint as DESIGN.md writes it.
        let text = INTEL_SGX_ROOT_CA_SHA256
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            text,
            "44:A0:19:6B:2B:99:F8:89:B8:E1:49:E9:5B:80:7A:35:0E:74:24:96:43:99:E8:85:A7:CB:B8:CC:FA:B6:74:D3"
        );
    }

    #[test]
    fn default_trusts_only_intel() {
        let roots = TrustRoots::default();
        assert_eq!(roots.roots().len(), 1);
        assert_eq!(roots.roots()[0].der(), INTEL_SGX_ROOT_CA_DER);
    }

    #[test]
    fn refuses_non_certificates() {
        assert!(TrustRoot::from_der(b"nope", RootKind::Simulated).is_err());
        assert!(
            TrustRoot::from_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                RootKind::Simulated
            )
            .is_err()
        );
    }

    #[test]
    fn adding_twice_keeps_one() {
        let roots = TrustRoots::intel().with(TrustRoot::intel().unwrap());
        assert_eq!(roots.roots().len(), 1);
    }
}
