//! `/v1/apikeys`: API keys for automation, bound to one account and a role.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ccm_api::auth::{API_KEY_PREFIX, ApiKey, ApiKeyCreated, ApiKeyRequest};
use ccm_store::NewApiKey;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{self, Acct, Caller, CallerAuth};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, Path};
use crate::service::validate::Checker;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(delete_key))
}

/// Creates an API key acting for the caller in the selected account, with a role no higher than
/// the caller's. It expires after `expires_in` seconds (at most `api_key_max_days`), or after
/// `api_key_default_days` (90 by default) without it. The secret is shown only in this response.
#[utoipa::path(post, path = "/v1/apikeys", tag = "apikeys", security(("bearer" = [])), request_body = ApiKeyRequest,
    responses((status = 201, body = ApiKeyCreated), (status = 403, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn create_key(
    State(s): State<AppState>,
    acct: Acct,
    Body(req): Body<ApiKeyRequest>,
) -> ApiResult<(StatusCode, Json<ApiKeyCreated>)> {
    acct.caller.session()?;
    let mut c = Checker::new();
    c.text("name", &req.name, 1, 128, false);
    let max = s.config.api_key_max_days.saturating_mul(86_400);
    if let Some(e) = req.expires_in {
        c.range("expires_in", e, 60, max);
    }
    c.finish()?;
    if req.role > acct.role {
        return Err(ApiError::forbidden(format!(
            "an API key cannot have a higher role than yours ({})",
            acct.role.as_str()
        ))
        .with_field("role"));
    }
    let now = s.clock.now();
    let secret = auth::new_token(API_KEY_PREFIX)?;
    let key = ApiKey {
        api_key_id: Uuid::new_v4(),
        name: req.name,
        acct_id: acct.acct_id,
        user_id: acct.caller.user_id,
        role: req.role,
        created_at: now,
        expires_at: Some(
            now.saturating_add(
                req.expires_in
                    .unwrap_or(s.config.api_key_default_days.saturating_mul(86_400)),
            ),
        ),
    };
    s.store
        .create_api_key(
            &NewApiKey {
                key: key.clone(),
                secret_hash: auth::token_hash(&secret),
            },
            &acct.actor(),
            now,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(ApiKeyCreated { key, secret })))
}

/// The keys a caller may see and delete: with a session, the user's keys; with an API key,
/// the user's keys of that key's account only (never another account's).
async fn visible_keys(s: &AppState, caller: &Caller) -> ApiResult<Vec<ApiKey>> {
    let keys = s.store.list_api_keys(caller.user_id).await?;
    Ok(match &caller.auth {
        CallerAuth::Session { .. } => keys,
        CallerAuth::ApiKey(k) => keys
            .into_iter()
            .filter(|x| x.acct_id == k.acct_id)
            .collect(),
    })
}

/// The caller's API keys (without secrets). Called with an API key: that key's account's keys
/// only.
#[utoipa::path(get, path = "/v1/apikeys", tag = "apikeys", security(("bearer" = [])),
    responses((status = 200, body = [ApiKey])))]
async fn list_keys(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ApiKey>>> {
    Ok(Json(visible_keys(&s, &caller).await?))
}

/// Deletes one of the caller's API keys; it stops working at once. Called with an API key,
/// only keys of that key's account (others answer 404).
#[utoipa::path(delete, path = "/v1/apikeys/{api_key_id}", tag = "apikeys", security(("bearer" = [])),
    params(("api_key_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ccm_api::ErrorBody)))]
async fn delete_key(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    if !visible_keys(&s, &caller)
        .await?
        .iter()
        .any(|k| k.api_key_id == id)
    {
        return Err(ApiError::not_found("api key"));
    }
    s.store
        .delete_api_key(caller.user_id, id, &caller.actor(), s.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
