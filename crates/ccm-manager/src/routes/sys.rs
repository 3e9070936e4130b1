//! `/healthz`, `/readyz`, `/metrics`, `/v1/sys/version`, `/v1/sys/auth`, `/v1/sys/session/...`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ccm_api::auth::{AuthResponse, SessionInfo};
use ccm_api::sys::{HealthResponse, VersionResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::ratelimit::ClientIp;
use crate::service;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(version))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(terminate))
        .routes(routes!(select_account))
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = HealthResponse)))]
async fn healthz() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
    })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, body = HealthResponse), (status = 503, body = ccm_api::ErrorBody)))]
async fn readyz(State(s): State<AppState>) -> ApiResult<Json<HealthResponse>> {
    service::system::ready(&s).await?;
    Ok(Json(HealthResponse {
        status: "ok".into(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, body = String, content_type = "text/plain")))]
async fn metrics(State(s): State<AppState>) -> ApiResult<Response> {
    let body = s.metrics.encode().map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// The manager's version.
#[utoipa::path(get, path = "/v1/sys/version", tag = "system", responses((status = 200, body = VersionResponse)))]
async fn version(State(s): State<AppState>) -> Json<VersionResponse> {
    Json(service::system::version(&s))
}

/// Logs in with HTTP Basic credentials (e-mail and password) and returns a bearer token.
/// Rate limited per client address and per e-mail (failed attempts): 429 with `Retry-After`;
/// 503 with `Retry-After` when the password hashing queue is full. Failed logins are audited.
#[utoipa::path(post, path = "/v1/sys/auth", tag = "session", security(("basic" = [])),
    responses((status = 200, body = AuthResponse), (status = 401, body = ccm_api::ErrorBody),
        (status = 429, body = ccm_api::ErrorBody), (status = 503, body = ccm_api::ErrorBody)))]
async fn login(
    State(s): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> ApiResult<Json<AuthResponse>> {
    let (email, password) = auth::parse_basic(&headers).ok_or_else(|| {
        ApiError::unauthorized(
            "missing_credentials",
            "HTTP Basic credentials (e-mail and password) are required",
        )
    })?;
    let (_, resp) = service::auth::password_login(&s, &email, password, client).await?;
    Ok(Json(resp))
}

/// Replaces the session's token with a new one (the old one stops working at once); the new
/// token expires after the token lifetime, but never after the session.
#[utoipa::path(post, path = "/v1/sys/session/refresh", tag = "session", security(("bearer" = [])),
    responses((status = 200, body = AuthResponse), (status = 401, body = ccm_api::ErrorBody)))]
async fn refresh(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<AuthResponse>> {
    Ok(Json(service::auth::refresh(&s, &caller).await?))
}

/// Ends the session; its token stops working at once, on every replica.
#[utoipa::path(post, path = "/v1/sys/session/terminate", tag = "session", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ccm_api::ErrorBody)))]
async fn terminate(State(s): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    service::auth::logout(&s, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Selects the account the session works in.
#[utoipa::path(post, path = "/v1/sys/session/select_account/{acct_id}", tag = "session", security(("bearer" = [])),
    params(("acct_id" = Uuid, Path, description = "Account id")),
    responses((status = 200, body = SessionInfo), (status = 404, body = ccm_api::ErrorBody)))]
async fn select_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(acct_id): Path<Uuid>,
) -> ApiResult<Json<SessionInfo>> {
    let updated = crate::service::accounts::select(&s, &caller, acct_id).await?;
    Ok(Json(service::auth::session_info(&updated)))
}
