//! The node agent's local API (`http://NODE:9092/v1/`), compatible with the node-agent API that
//! existing enclave applications use. Field names are exactly those applications send and
//! expect (note `targetInfo` in camel case).

use serde::{Deserialize, Serialize};

pub use crate::certificates::{CertificateTask, IssueStatus};

/// `GET /v1/sys/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentVersion {
    /// The agent's version.
    pub version: String,
}

/// `GET /v1/enclave/target-info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfoResponse {
    /// The quoting enclave's 512-byte TARGETINFO, base64.
    #[serde(rename = "targetInfo")]
    pub target_info: String,
}

/// `POST /v1/enclave/attest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestRequest {
    /// A 432-byte REPORT targeted at the quoting enclave, base64; REPORTDATA[0..32] = SHA-256 of
    /// the attestation CSR's SubjectPublicKeyInfo DER.
    pub report: String,
    /// A PKCS#10 request (PEM) for the key the REPORT binds.
    pub attestation_csr: String,
}

/// Response of `POST /v1/enclave/attest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestResponse {
    /// A certificate for the attestation key, signed by the node key, carrying the quote as
    /// attestation evidence (PEM).
    pub attestation_certificate: String,
    /// The node certificate (PEM), issued by the zone CA.
    pub node_certificate: String,
    /// The DCAP quote of the REPORT, base64 (the quoting enclave checked the REPORT's MAC).
    pub fqpe_report: String,
}

/// `POST /v1/certificate/issue`: issuance for a key attested earlier through
/// `/v1/enclave/attest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRequest {
    /// The application's CSR (PEM).
    pub csr: String,
}

/// `POST /v1/certificate/issue-with-quote`: issuance with the enclave's quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueWithQuoteRequest {
    /// The application's CSR (PEM).
    pub csr: String,
    /// The enclave's DCAP quote, base64.
    pub quote: String,
}

/// Response of `POST /v1/enclave/nonce`: a manager-issued nonce for the workload's next quote
/// (REPORTDATA[32..64]); see [`crate::nodes::IssuanceNonce`].
pub type NonceResponse = crate::nodes::IssuanceNonce;

/// The error body of the agent's API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentError {
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
}
