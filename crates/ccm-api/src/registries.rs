//! Container registries whose credentials an account stores (`/v1/registry`).
//!
//! The password is write-only: it is stored encrypted and never returned. Image creation
//! (`POST /v1/builds/convert-app`) uses the stored credentials of the registry whose host
//! matches an image's registry host, unless the request gives credentials of its own.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A stored registry, without its password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Registry {
    /// Registry id.
    pub registry_id: Uuid,
    /// The registry's URL as given (e.g. `registry.example.com` or `https://ghcr.io`).
    pub url: String,
    /// The registry host image references name (`host[:port]`, lower-case), which image
    /// creation matches.
    pub host: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The stored user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// Credentials for a registry (the reference's `AuthConfig`; both fields are required by ccm).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password or access token. Write-only.
    #[serde(default)]
    pub password: Option<String>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The reference's `CredentialType`: the credentials under `default`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredential {
    /// The credentials.
    #[serde(default)]
    pub default: Option<RegistryAuth>,
}

/// `POST /v1/registry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryRequest {
    /// The registry's URL or host (`host[:port]`, optionally with `https://`).
    pub url: String,
    /// The credentials (user name and password are both required).
    pub credential: RegistryCredential,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
}

/// A JSON Patch operation (RFC 6902 subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatchOperation {
    /// Add (the same as replace here).
    Add,
    /// Remove (only `/description`).
    Remove,
    /// Replace.
    Replace,
}

/// One JSON Patch operation. In `PATCH /v1/registry/{registry_id}` the paths are `/url`,
/// `/description`, `/credential` (a `CredentialType`), `/credential/default` (an
/// `AuthConfig`); in an app's `labels`, `/KEY`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchDocument {
    /// The operation.
    pub op: PatchOperation,
    /// JSON pointer to the field.
    pub path: String,
    /// The new value (absent for `remove`).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

impl std::fmt::Debug for PatchDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatchDocument")
            .field("op", &self.op)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// `GET /v1/registry/app/{app_id}`: the stored registries an app's images would use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct AppRegistryResponse {
    /// The registry of the app's input image host, if stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_image_registry: Option<Registry>,
    /// The registry of the app's output image host, if stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_image_registry: Option<Registry>,
}

/// `GET /v1/image/registry?image_name=`: the stored registry an image would use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct ImageRegistryResponse {
    /// The registry of the image's host, if stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<Registry>,
}

crate::compat::no_reference_fields!(RegistryRequest, Vec<PatchDocument>);
