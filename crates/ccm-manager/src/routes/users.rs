//! `/v1/users`, `/v1/user`: sign-up, the current user, account members.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ccm_api::accounts::AccessRole;
use ccm_api::users::{InviteUserRequest, SignupRequest, UpdateUserRequest, User};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Acct, Caller, CallerAuth};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, Path};
use crate::ratelimit::ClientIp;
use crate::service;
use crate::service::validate::Checker;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup, list_users))
        .routes(routes!(current_user))
        .routes(routes!(invite))
        .routes(routes!(get_user, update_user))
        .routes(routes!(remove_from_account))
}

/// Signs up. With the manager's setup token (`setup_token`, from the file `setup-token` in its
/// data directory) the new user becomes system administrator and the token is used up; without
/// it, sign-up needs open sign-up (`open_signup`) and makes an ordinary user. Rate limited per
/// client address and per e-mail (429 with `Retry-After`); 503 with `Retry-After` when the
/// password hashing queue is full.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = SignupRequest,
    responses((status = 201, body = User), (status = 403, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody),
        (status = 422, body = ccm_api::ErrorBody), (status = 429, body = ccm_api::ErrorBody), (status = 503, body = ccm_api::ErrorBody)))]
async fn signup(
    State(s): State<AppState>,
    ClientIp(client): ClientIp,
    Body(req): Body<SignupRequest>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let user = service::users::signup(&s, req, client).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn roles_in_selected(s: &AppState, caller: &Caller) -> ApiResult<Vec<AccessRole>> {
    let acct = match &caller.auth {
        CallerAuth::Session { session, .. } => session.selected_acct_id,
        CallerAuth::ApiKey(k) => Some(k.acct_id),
    };
    Ok(match acct {
        Some(a) => s
            .store
            .role_of(caller.user_id, a)
            .await?
            .into_iter()
            .collect(),
        None => Vec::new(),
    })
}

/// The logged-in user, with their roles in the selected account.
#[utoipa::path(get, path = "/v1/user", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ccm_api::ErrorBody)))]
async fn current_user(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<User>> {
    let mut user = s
        .store
        .get_user(caller.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?
        .user;
    user.roles = roles_in_selected(&s, &caller).await?;
    Ok(Json(user))
}

/// Lists users: every user for a system administrator, else the selected account's members.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = [User]), (status = 401, body = ccm_api::ErrorBody)))]
async fn list_users(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<User>>> {
    if caller.is_sysadmin && matches!(caller.auth, CallerAuth::Session { .. }) {
        return Ok(Json(s.store.list_users().await?));
    }
    let acct = Acct::of(caller, &s).await?;
    Ok(Json(s.store.list_members(acct.acct_id).await?))
}

/// A user: yourself, a member of the selected account, or anyone for a system administrator.
#[utoipa::path(get, path = "/v1/users/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    responses((status = 200, body = User), (status = 404, body = ccm_api::ErrorBody)))]
async fn get_user(
    State(s): State<AppState>,
    caller: Caller,
    Path(user_id): Path<Uuid>,
) -> ApiResult<Json<User>> {
    if user_id == caller.user_id {
        let mut u = s
            .store
            .get_user(user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("user"))?
            .user;
        u.roles = roles_in_selected(&s, &caller).await?;
        return Ok(Json(u));
    }
    let sysadmin = caller.is_sysadmin && matches!(caller.auth, CallerAuth::Session { .. });
    if let Ok(acct) = Acct::of(caller, &s).await
        && let Some(u) = s
            .store
            .list_members(acct.acct_id)
            .await?
            .into_iter()
            .find(|u| u.user_id == user_id)
    {
        return Ok(Json(u));
    }
    if sysadmin {
        return s
            .store
            .get_user(user_id)
            .await?
            .map(|u| Json(u.user))
            .ok_or_else(|| ApiError::not_found("user"));
    }
    Err(ApiError::not_found("user"))
}

/// Adds a registered user to the selected account with a role (MANAGER only).
#[utoipa::path(post, path = "/v1/users/invite", tag = "users", security(("bearer" = [])), request_body = InviteUserRequest,
    responses((status = 200, body = User), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody)))]
async fn invite(
    State(s): State<AppState>,
    acct: Acct,
    Body(req): Body<InviteUserRequest>,
) -> ApiResult<Json<User>> {
    acct.require(AccessRole::Manager)?;
    let mut c = Checker::new();
    c.email("user_email", &req.user_email);
    c.finish()?;
    let mut user = s
        .store
        .user_by_email(&req.user_email)
        .await?
        .ok_or_else(|| ApiError::not_found("user").with_field("user_email"))?
        .user;
    s.store
        .add_member(
            acct.acct_id,
            user.user_id,
            req.role,
            &acct.actor(),
            s.clock.now(),
        )
        .await?;
    user.roles = vec![req.role];
    Ok(Json(user))
}

/// Changes a member's role in the selected account (MANAGER only).
#[utoipa::path(patch, path = "/v1/users/{user_id}", tag = "users", security(("bearer" = [])), request_body = UpdateUserRequest,
    params(("user_id" = Uuid, Path)),
    responses((status = 200, body = User), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody)))]
async fn update_user(
    State(s): State<AppState>,
    acct: Acct,
    Path(user_id): Path<Uuid>,
    Body(req): Body<UpdateUserRequest>,
) -> ApiResult<Json<User>> {
    acct.require(AccessRole::Manager)?;
    s.store
        .set_member_role(
            acct.acct_id,
            user_id,
            req.role,
            &acct.actor(),
            s.clock.now(),
        )
        .await?;
    let user = s
        .store
        .list_members(acct.acct_id)
        .await?
        .into_iter()
        .find(|u| u.user_id == user_id);
    user.map(Json).ok_or_else(|| ApiError::not_found("user"))
}

/// Removes a user from the selected account (MANAGER, or the user themself).
#[utoipa::path(delete, path = "/v1/users/{user_id}/accounts", tag = "users", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody)))]
async fn remove_from_account(
    State(s): State<AppState>,
    acct: Acct,
    Path(user_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    if user_id != acct.caller.user_id {
        acct.require(AccessRole::Manager)?;
    }
    s.store
        .remove_member(acct.acct_id, user_id, &acct.actor(), s.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
