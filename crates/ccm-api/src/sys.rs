//! System endpoints: version and health.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v1/sys/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionResponse {
    /// The manager's version (the `ccm` crate version).
    pub version: String,
    /// The storage backend in use: `sqlite` or `postgres`.
    pub database: String,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`, or `unavailable` with a 503 status.
    pub status: String,
}
