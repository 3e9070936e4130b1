//! `/v1/accounts`: adapters over `service::accounts`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ccm_api::accounts::{AccessRole, Account, AccountRequest, AccountUpdateRequest};
use ccm_api::list::{ListResponse, PageQuery};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{NoFilters, list_response};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{Json as Body, ListQuery, Path};
use crate::service::accounts;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts, create_account))
        .routes(routes!(get_account, update_account, delete_account))
        .routes(routes!(select_account))
}

/// One page of the caller's accounts, by name (called with an API key: its own account).
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = ListResponse<Account>), (status = 400, body = ccm_api::ErrorBody), (status = 401, body = ccm_api::ErrorBody)))]
async fn list_accounts(
    State(s): State<AppState>,
    caller: Caller,
    ListQuery(page, NoFilters {}): ListQuery<NoFilters>,
) -> ApiResult<Json<ListResponse<Account>>> {
    Ok(list_response(accounts::list(&s, &caller, &page).await?))
}

/// Creates an account with its zone and zone CA; the caller becomes its MANAGER. Answers 200
/// (as the reference does) with the new account.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])), request_body = AccountRequest,
    responses((status = 200, body = Account), (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn create_account(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<AccountRequest>,
) -> ApiResult<Json<Account>> {
    let rec = accounts::create(&s, &caller, req).await?;
    Ok(Json(accounts::view(&s, rec, AccessRole::Manager).await?))
}

/// Selects the account the session works in (the reference's path; the same as
/// `POST /v1/sys/session/select_account/{acct_id}`, which answers the session instead).
#[utoipa::path(post, path = "/v1/accounts/select_account/{acct_id}", tag = "accounts", security(("bearer" = [])),
    params(("acct_id" = Uuid, Path, description = "Account id")),
    responses((status = 204), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody)))]
async fn select_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(acct_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    accounts::select(&s, &caller, acct_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An account the caller belongs to.
#[utoipa::path(get, path = "/v1/accounts/{acct_id}", tag = "accounts", security(("bearer" = [])),
    params(("acct_id" = Uuid, Path)),
    responses((status = 200, body = Account), (status = 404, body = ccm_api::ErrorBody)))]
async fn get_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(acct_id): Path<Uuid>,
) -> ApiResult<Json<Account>> {
    Ok(Json(accounts::get(&s, &caller, acct_id).await?))
}

/// Renames an account, changes its approval policy or its trust in simulated platforms
/// (`allow_simulated`, off by default: nodes and application quotes resting on a simulated root
/// are refused unless it is on). MANAGER; audited.
#[utoipa::path(patch, path = "/v1/accounts/{acct_id}", tag = "accounts", security(("bearer" = [])), request_body = AccountUpdateRequest,
    params(("acct_id" = Uuid, Path)),
    responses((status = 200, body = Account), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody)))]
async fn update_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(acct_id): Path<Uuid>,
    Body(req): Body<AccountUpdateRequest>,
) -> ApiResult<Json<Account>> {
    Ok(Json(accounts::update(&s, &caller, acct_id, req).await?))
}

/// Deletes an account and everything it owns, in one transaction (MANAGER).
#[utoipa::path(delete, path = "/v1/accounts/{acct_id}", tag = "accounts", security(("bearer" = [])),
    params(("acct_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody)))]
async fn delete_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(acct_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    accounts::delete(&s, &caller, acct_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
