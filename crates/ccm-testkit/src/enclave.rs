//! An application enclave's certificate request on a simulated platform, made in process: a
//! fresh EC P-256 key, a CSR for it, and a quote whose REPORTDATA binds the key (SHA-256 of its
//! SubjectPublicKeyInfo) and a manager-issued nonce (or zeros), as `ccm-launch` makes them.

use std::path::Path;

use ccm_attest::sim::{self, EnclaveIdentity, SimQuotingEnclave};
use ccm_sgx::ReportData;
use sha2::{Digest, Sha256};

/// A certificate request: the CSR (PEM) and the quote (bytes).
#[derive(Debug, Clone)]
pub struct EnclaveRequest {
    /// The CSR, PEM.
    pub csr: String,
    /// The DCAP quote.
    pub quote: Vec<u8>,
}

/// Makes a request for `names` from an enclave with `identity` on the simulated platform in
/// `platform` (as `ccm sim init` writes it), with zeros in REPORTDATA[32..64] (no nonce).
pub fn request(
    platform: &Path,
    identity: &EnclaveIdentity,
    names: &[&str],
) -> Result<EnclaveRequest, String> {
    request_with_nonce(platform, identity, names, &[0; 32])
}

/// As [`request`], with `nonce` in REPORTDATA[32..64].
pub fn request_with_nonce(
    platform: &Path,
    identity: &EnclaveIdentity,
    names: &[&str],
    nonce: &[u8; 32],
) -> Result<EnclaveRequest, String> {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    request_for_key(platform, identity, names, nonce, &key)
}

/// As [`request_with_nonce`], for the given key (a new CSR for a key already certified).
pub fn request_for_key(
    platform: &Path,
    identity: &EnclaveIdentity,
    names: &[&str],
    nonce: &[u8; 32],
    key: &rcgen::KeyPair,
) -> Result<EnclaveRequest, String> {
    let csr =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .and_then(|p| p.serialize_request(key))
            .and_then(|r| r.pem())
            .map_err(|e| e.to_string())?;
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&Sha256::digest(key.public_key_der()));
    rd[32..].copy_from_slice(nonce);
    let qe = SimQuotingEnclave::load(platform).map_err(|e| e.to_string())?;
    let cpu = sim::load_sim_cpu(platform).map_err(|e| e.to_string())?;
    let report = cpu.ereport(&qe.target_info(), identity, &ReportData(rd));
    let (quote, _) = qe.get_quote(&report, None).map_err(|e| e.to_string())?;
    Ok(EnclaveRequest { csr, quote })
}
