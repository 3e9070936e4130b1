//! Why an issuance or enrollment request was refused: a stable code and a human message.
//!
//! The message is written for the operator reading it in the API, the console or the agent's
//! log. It names what was checked and what was expected, and never carries internal error text
//! (database, I/O): such failures are [`RefusalCode::Internal`] with a generic message, and the
//! cause is logged.

use std::fmt;

/// The reason a request was refused, stable across releases (clients may match on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalCode {
    /// The requesting node may not obtain certificates (deactivated, pending, failed).
    NodeNotActive,
    /// The CSR does not parse or its signature does not verify.
    InvalidCsr,
    /// The CSR names no DNS name.
    CsrWithoutName,
    /// The request carries no quote.
    NoEvidence,
    /// The quote does not parse.
    MalformedQuote,
    /// No collateral is known for the quote's platform (a node of it must enroll first).
    NoCollateral,
    /// The quote does not verify (chain, signatures, collateral, identity).
    QuoteInvalid,
    /// REPORTDATA[0..32] is not SHA-256 of the CSR's SubjectPublicKeyInfo.
    KeyNotBound,
    /// REPORTDATA[32..64] is not a nonce this manager issued to this node.
    UnknownNonce,
    /// The nonce was issued but has expired.
    ExpiredNonce,
    /// The nonce was already used by another request (a replayed quote).
    ReplayedNonce,
    /// The certified key belongs to a revoked certificate.
    KeyRevoked,
    /// The quote comes from another platform than the requesting node's.
    WrongPlatform,
    /// The MRENCLAVE is not an image of any app in the node's account.
    UnknownImage,
    /// The image was rejected by a manager.
    ImageRejected,
    /// MRSIGNER, ISVPRODID or ISVSVN differ from the image's recorded values.
    IdentityMismatch,
    /// The app's attestation policy (TCB status, debug, minimum ISVSVN) refuses the enclave.
    PolicyViolation,
    /// The quote rests on a simulated platform and the account or app does not trust those.
    SimulatedNotTrusted,
    /// A requested name is not among the app's domains.
    DomainNotAllowed,
    /// The join token or enrollment nonce is not valid.
    InvalidEnrollment,
    /// The platform's TCB status is not accepted by the zone's node policy.
    NodePolicyViolation,
    /// The manager failed while deciding (details in its log only).
    Internal,
}

impl RefusalCode {
    /// The code as sent on the wire (`snake_case`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeNotActive => "node_not_active",
            Self::InvalidCsr => "invalid_csr",
            Self::CsrWithoutName => "csr_without_name",
            Self::NoEvidence => "no_evidence",
            Self::MalformedQuote => "malformed_quote",
            Self::NoCollateral => "no_collateral",
            Self::QuoteInvalid => "quote_invalid",
            Self::KeyNotBound => "key_not_bound",
            Self::UnknownNonce => "unknown_nonce",
            Self::ExpiredNonce => "expired_nonce",
            Self::ReplayedNonce => "replayed_nonce",
            Self::KeyRevoked => "key_revoked",
            Self::WrongPlatform => "wrong_platform",
            Self::UnknownImage => "unknown_image",
            Self::ImageRejected => "image_rejected",
            Self::IdentityMismatch => "identity_mismatch",
            Self::PolicyViolation => "policy_violation",
            Self::SimulatedNotTrusted => "simulated_not_trusted",
            Self::DomainNotAllowed => "domain_not_allowed",
            Self::InvalidEnrollment => "invalid_enrollment",
            Self::NodePolicyViolation => "node_policy_violation",
            Self::Internal => "internal",
        }
    }

    /// Whether a retry may succeed without the requester changing anything (the task is FAILED
    /// rather than DENIED): the manager lacked something or failed itself.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::NoCollateral | Self::Internal)
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: the code and the operator-facing message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why, as a stable code.
    pub code: RefusalCode,
    /// What was checked and what was expected.
    pub message: String,
}

impl Refusal {
    /// A refusal with a code and message.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A failure on the manager's side: the cause goes to the log, the requester gets a generic
    /// message.
    pub fn internal(what: &str, cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "{what}");
        Self::new(
            RefusalCode::Internal,
            format!("the manager could not {what}; try again later"),
        )
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes_match_serde() {
        for code in [
            RefusalCode::ReplayedNonce,
            RefusalCode::SimulatedNotTrusted,
            RefusalCode::Internal,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn internal_refusal_hides_the_cause() {
        let r = Refusal::internal("look up images", "connection refused on /var/db");
        assert_eq!(r.code, RefusalCode::Internal);
        assert!(!r.message.contains("/var/db"), "{}", r.message);
    }
}
