//! Authentication at the HTTP edge: the extractors that turn a request's `Authorization` header
//! into a [`Caller`] and an account context ([`Acct`]), and HTTP Basic parsing. Who the caller
//! is and what it may do is decided in `service::caller`, re-exported here.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::AppState;
use crate::error::ApiError;
pub use crate::service::caller::{
    Acct, Caller, CallerAuth, PasswordWorker, dummy_hash, hash_password, new_token, require_role,
    token_hash,
};

/// Parses an HTTP Basic `Authorization` header into user and password.
pub fn parse_basic(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "an Authorization: Bearer token is required",
            )
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "invalid_token",
                    "the Authorization header is not a Bearer token",
                )
            })?;
        Ok(Caller::from_token(state, token).await?)
    }
}

impl FromRequestParts<AppState> for Acct {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        Ok(Acct::of(caller, state).await?)
    }
}
