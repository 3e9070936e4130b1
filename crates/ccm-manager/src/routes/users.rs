//! `/v1/users`, `/v1/user`: sign-up, the current user, account members.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ccm_api::list::{ListResponse, PageQuery};
use ccm_api::users::{
    ForgotPasswordRequest, Invitation, InviteUserRequest, InvitedUser, PasswordChangeRequest,
    PasswordResetRequest, ProcessInviteRequest, ResetTokenResponse, SignupRequest,
    UpdateUserRequest, User, ValidateTokenRequest, ValidateTokenResponse,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{NoFilters, list_response};
use crate::AppState;
use crate::auth::{Acct, Caller};
use crate::error::ApiResult;
use crate::extract::{Json as Body, ListQuery, Path};
use crate::ratelimit::ClientIp;
use crate::service;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup, list_users))
        .routes(routes!(current_user))
        .routes(routes!(invite))
        .routes(routes!(account_invitations))
        .routes(routes!(my_invitations))
        .routes(routes!(process_invite))
        .routes(routes!(change_password))
        .routes(routes!(forgot_password))
        .routes(routes!(issue_reset_token))
        .routes(routes!(reset_password))
        .routes(routes!(validate_reset_token))
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

/// The logged-in user, with their roles in the selected account.
#[utoipa::path(get, path = "/v1/user", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ccm_api::ErrorBody)))]
async fn current_user(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<User>> {
    Ok(Json(service::users::me(&s, &caller).await?))
}

/// One page of users by e-mail address: every user for a system administrator, else the
/// selected account's members with their roles.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = ListResponse<User>), (status = 400, body = ccm_api::ErrorBody), (status = 401, body = ccm_api::ErrorBody)))]
async fn list_users(
    State(s): State<AppState>,
    caller: Caller,
    ListQuery(page, NoFilters {}): ListQuery<NoFilters>,
) -> ApiResult<Json<ListResponse<User>>> {
    Ok(list_response(
        service::users::list(&s, caller, &page).await?,
    ))
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
    Ok(Json(service::users::get(&s, &caller, user_id).await?))
}

/// Invites an e-mail address, signed up or not, to the selected account (MANAGER only). The
/// highest of `roles` (or ccm's older single `role`) is granted when the invitee accepts: at
/// sign-up with `invitation_token` (the console's `signup_url`), or, when already signed up,
/// with `POST /v1/users/process_invite`. The token is shown in this answer only (and e-mailed
/// when SMTP is configured); inviting the address again replaces it. 409 when the address
/// already is a member.
#[utoipa::path(post, path = "/v1/users/invite", tag = "users", security(("bearer" = [])), request_body = InviteUserRequest,
    responses((status = 201, body = InvitedUser), (status = 403, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn invite(
    State(s): State<AppState>,
    acct: Acct,
    Body(req): Body<InviteUserRequest>,
) -> ApiResult<(StatusCode, Json<InvitedUser>)> {
    let invited = service::invitations::invite(&s, &acct, req).await?;
    Ok((StatusCode::CREATED, Json(invited)))
}

/// The selected account's pending invitations (MANAGER only).
#[utoipa::path(get, path = "/v1/users/invitations", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = [Invitation]), (status = 403, body = ccm_api::ErrorBody)))]
async fn account_invitations(
    State(s): State<AppState>,
    acct: Acct,
) -> ApiResult<Json<Vec<Invitation>>> {
    Ok(Json(
        service::invitations::account_invitations(&s, &acct).await?,
    ))
}

/// The pending invitations to the logged-in user's address.
#[utoipa::path(get, path = "/v1/user/invitations", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = [Invitation]), (status = 401, body = ccm_api::ErrorBody)))]
async fn my_invitations(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Invitation>>> {
    Ok(Json(
        service::invitations::my_invitations(&s, &caller).await?,
    ))
}

/// Accepts (`accepts`) or declines (`rejects`) the logged-in user's pending invitations, by
/// account id. Every named account must have a pending invitation, else nothing changes.
#[utoipa::path(post, path = "/v1/users/process_invite", tag = "users", security(("bearer" = [])), request_body = ProcessInviteRequest,
    responses((status = 204), (status = 403, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn process_invite(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<ProcessInviteRequest>,
) -> ApiResult<StatusCode> {
    service::invitations::process(&s, &caller, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the logged-in user's password (a login session; API keys cannot). The current
/// password is checked like a login (rate limited; 422 on `current_password` when wrong); the
/// user's other sessions end.
#[utoipa::path(post, path = "/v1/users/change_password", tag = "users", security(("bearer" = [])), request_body = PasswordChangeRequest,
    responses((status = 204), (status = 403, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody),
        (status = 429, body = ccm_api::ErrorBody), (status = 503, body = ccm_api::ErrorBody)))]
async fn change_password(
    State(s): State<AppState>,
    ClientIp(client): ClientIp,
    caller: Caller,
    Body(req): Body<PasswordChangeRequest>,
) -> ApiResult<StatusCode> {
    service::passwords::change(&s, &caller, req, client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Asks for a password reset link by e-mail (no login). Always 204, whether or not the address
/// names a user; when SMTP is configured and it does, the user is e-mailed a single-use reset
/// link (which replaces an earlier reset token). Rate limited per client address and per e-mail
/// address (429 with `Retry-After`). Audited.
#[utoipa::path(post, path = "/v1/users/forgot_password", tag = "users", request_body = ForgotPasswordRequest,
    responses((status = 204), (status = 422, body = ccm_api::ErrorBody), (status = 429, body = ccm_api::ErrorBody)))]
async fn forgot_password(
    State(s): State<AppState>,
    ClientIp(client): ClientIp,
    Body(req): Body<ForgotPasswordRequest>,
) -> ApiResult<StatusCode> {
    service::passwords::forgot(&s, req, client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a single-use password reset token for a user (system administrators). It replaces an
/// earlier one, expires after `password_reset_ttl_secs` and is shown only here (and e-mailed to
/// the user as a console link when SMTP is configured).
#[utoipa::path(post, path = "/v1/users/{user_id}/reset_token", tag = "users", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    responses((status = 201, body = ResetTokenResponse), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody)))]
async fn issue_reset_token(
    State(s): State<AppState>,
    caller: Caller,
    Path(user_id): Path<Uuid>,
) -> ApiResult<(StatusCode, Json<ResetTokenResponse>)> {
    let issued = service::passwords::issue_reset_token(&s, &caller, user_id).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Sets a user's password with a reset token an administrator issued (no login). The token is
/// used up and all the user's sessions end. Rate limited like logins; 401 for a wrong, expired
/// or used token.
#[utoipa::path(post, path = "/v1/users/{user_id}/reset_password", tag = "users", request_body = PasswordResetRequest,
    params(("user_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody),
        (status = 429, body = ccm_api::ErrorBody), (status = 503, body = ccm_api::ErrorBody)))]
async fn reset_password(
    State(s): State<AppState>,
    ClientIp(client): ClientIp,
    Path(user_id): Path<Uuid>,
    Body(req): Body<PasswordResetRequest>,
) -> ApiResult<StatusCode> {
    service::passwords::reset(&s, user_id, req, client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a reset token without using it; answers the user's e-mail. Rate limited like logins.
#[utoipa::path(post, path = "/v1/users/{user_id}/validate_token", tag = "users", request_body = ValidateTokenRequest,
    params(("user_id" = Uuid, Path)),
    responses((status = 200, body = ValidateTokenResponse), (status = 401, body = ccm_api::ErrorBody), (status = 429, body = ccm_api::ErrorBody)))]
async fn validate_reset_token(
    State(s): State<AppState>,
    ClientIp(client): ClientIp,
    Path(user_id): Path<Uuid>,
    Body(req): Body<ValidateTokenRequest>,
) -> ApiResult<Json<ValidateTokenResponse>> {
    Ok(Json(
        service::passwords::validate_reset_token(&s, user_id, &req.reset_token, client).await?,
    ))
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
    Ok(Json(
        service::users::set_role(&s, &acct, user_id, req).await?,
    ))
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
    service::users::remove_from_account(&s, &acct, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
