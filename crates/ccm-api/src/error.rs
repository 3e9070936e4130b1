//! The error body of every API error response, and this crate's own error type.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The JSON body of every error response of the manager API.
///
/// `code` is a stable, machine-readable snake_case identifier (for example `not_found`,
/// `validation_failed`, `invalid_json`, `conflict`); `message` is a human-readable sentence;
/// `field` names the offending request field (dotted path, e.g. `certificate.key_type`) when one
/// field is to blame. Validation failures list every offending field in `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable error code.
    pub code: String,
    /// Human-readable description of the problem.
    pub message: String,
    /// The request field at fault, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every field-level problem, for validation failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One field-level validation problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `allowed_domains[2]`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Errors of this crate: parsing the string formats defined here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A join token string does not have the `ccmjt1.<id>.<secret>[.<fingerprint>]` form.
    #[error("invalid join token: {0}")]
    InvalidJoinToken(&'static str),
}
