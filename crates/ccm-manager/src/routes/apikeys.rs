//! `/v1/apikeys`: API keys for automation, bound to one account and a role.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ccm_api::auth::{ApiKey, ApiKeyCreated, ApiKeyRequest};
use ccm_api::list::{ListResponse, PageQuery};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{NoFilters, list_response};
use crate::AppState;
use crate::auth::{Acct, Caller};
use crate::error::ApiResult;
use crate::extract::{Json as Body, ListQuery, Path};
use crate::service::apikeys;

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
    Ok((
        StatusCode::CREATED,
        Json(apikeys::create(&s, &acct, req).await?),
    ))
}

/// The caller's API keys (without secrets). Called with an API key: that key's account's keys
/// only.
#[utoipa::path(get, path = "/v1/apikeys", tag = "apikeys", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = ListResponse<ApiKey>), (status = 400, body = ccm_api::ErrorBody)))]
async fn list_keys(
    State(s): State<AppState>,
    caller: Caller,
    ListQuery(page, NoFilters {}): ListQuery<NoFilters>,
) -> ApiResult<Json<ListResponse<ApiKey>>> {
    Ok(list_response(apikeys::visible(&s, &caller, &page).await?))
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
    apikeys::delete(&s, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
