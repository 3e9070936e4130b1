//! Sessions (`/v1/sys/auth`, `/v1/sys/session/...`) and API keys (`/v1/apikeys`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::AccessRole;

/// Prefix of session bearer tokens issued by `POST /v1/sys/auth`.
pub const SESSION_TOKEN_PREFIX: &str = "ccmst1_";
/// Prefix of API keys issued by `POST /v1/apikeys`.
pub const API_KEY_PREFIX: &str = "ccmak1_";

/// Response of `POST /v1/sys/auth` and `POST /v1/sys/session/refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthResponse {
    /// Bearer token for the `Authorization: Bearer ...` header.
    pub access_token: String,
    /// The session this token belongs to.
    pub session_info: SessionInfo,
}

/// State of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// The user the session belongs to.
    pub subject_id: Uuid,
    /// When the session ends for good (Unix seconds); refresh cannot extend past it.
    pub session_expires_at: i64,
    /// When the current token expires (Unix seconds) unless refreshed.
    pub session_token_expires_at: i64,
    /// The account selected for this session, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_account_id: Option<Uuid>,
}

/// `POST /v1/apikeys`: an API key for automation, bound to the session's selected account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRequest {
    /// A name to recognise the key by (1-128 characters).
    pub name: String,
    /// The key's role in the account; at most the creator's own role.
    pub role: AccessRole,
    /// Lifetime in seconds; the key never expires when absent.
    #[serde(default)]
    pub expires_in: Option<i64>,
}

/// An API key as listed (the secret is never shown again after creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    /// Key id.
    pub api_key_id: Uuid,
    /// Name given at creation.
    pub name: String,
    /// The account the key acts in.
    pub acct_id: Uuid,
    /// The user who created the key (and on whose behalf it acts).
    pub user_id: Uuid,
    /// The key's role.
    pub role: AccessRole,
    /// Creation time.
    pub created_at: i64,
    /// Expiry, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// Response of `POST /v1/apikeys`: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyCreated {
    /// The key's metadata.
    #[serde(flatten)]
    pub key: ApiKey,
    /// The bearer token (`ccmak1_...`).
    pub secret: String,
}

crate::compat::no_reference_fields!(ApiKeyRequest);
