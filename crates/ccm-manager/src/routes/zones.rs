//! `/v1/zones`: the account's zone, its CA certificate and join tokens.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ccm_api::zones::{JoinTokenInfo, JoinTokenRequest, Zone, ZoneJoinToken, ZoneUpdateRequest};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Acct;
use crate::error::ApiResult;
use crate::extract::{Json as Body, Path};
use crate::service::zones;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_zones))
        .routes(routes!(get_zone, update_zone))
        .routes(routes!(zone_certificate))
        .routes(routes!(fresh_token, create_token))
        .routes(routes!(list_tokens))
        .routes(routes!(revoke_token))
}

/// The selected account's zones (one per account).
#[utoipa::path(get, path = "/v1/zones", tag = "zones", security(("bearer" = [])),
    responses((status = 200, body = [Zone])))]
async fn list_zones(State(s): State<AppState>, acct: Acct) -> ApiResult<Json<Vec<Zone>>> {
    Ok(Json(zones::list(&s, &acct).await?))
}

/// A zone, with its CA certificate.
#[utoipa::path(get, path = "/v1/zones/{zone_id}", tag = "zones", security(("bearer" = [])),
    params(("zone_id" = Uuid, Path)),
    responses((status = 200, body = Zone), (status = 404, body = ccm_api::ErrorBody)))]
async fn get_zone(
    State(s): State<AppState>,
    acct: Acct,
    Path(zone_id): Path<Uuid>,
) -> ApiResult<Json<Zone>> {
    Ok(Json(zones::get(&s, &acct, zone_id).await?))
}

/// Changes the zone's description, its node agents' refresh interval and renewal threshold,
/// and its node enrollment policy (MANAGER); absent fields are unchanged. Audited.
#[utoipa::path(patch, path = "/v1/zones/{zone_id}", tag = "zones", security(("bearer" = [])), request_body = ZoneUpdateRequest,
    params(("zone_id" = Uuid, Path)),
    responses((status = 200, body = Zone), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn update_zone(
    State(s): State<AppState>,
    acct: Acct,
    Path(zone_id): Path<Uuid>,
    Body(req): Body<ZoneUpdateRequest>,
) -> ApiResult<Json<Zone>> {
    Ok(Json(zones::update(&s, &acct, zone_id, req).await?))
}

/// The zone CA certificate as a PEM file.
#[utoipa::path(get, path = "/v1/zones/{zone_id}/certificate", tag = "zones", security(("bearer" = [])),
    params(("zone_id" = Uuid, Path)),
    responses((status = 200, body = String, content_type = "application/x-pem-file"), (status = 404, body = ccm_api::ErrorBody)))]
async fn zone_certificate(
    State(s): State<AppState>,
    acct: Acct,
    Path(zone_id): Path<Uuid>,
) -> ApiResult<Response> {
    let z = zones::get(&s, &acct, zone_id).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        z.certificate,
    )
        .into_response())
}

/// Creates a join token for the zone (MANAGER). The token string is shown only here; it carries
/// the manager's certificate fingerprint when the manager serves HTTPS.
#[utoipa::path(post, path = "/v1/zones/{zone_id}/token", tag = "zones", security(("bearer" = [])), request_body = JoinTokenRequest,
    params(("zone_id" = Uuid, Path)),
    responses((status = 201, body = ZoneJoinToken), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn create_token(
    State(s): State<AppState>,
    acct: Acct,
    Path(zone_id): Path<Uuid>,
    Body(req): Body<JoinTokenRequest>,
) -> ApiResult<(StatusCode, Json<ZoneJoinToken>)> {
    let token = zones::create_join_token(&s, &acct, zone_id, req).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

/// A fresh join token for the zone (MANAGER), as the reference's `getZoneJoinToken`: single
/// use and valid for one hour (ccm keeps no long-lived zone secret to hand out). Each call makes
/// (and audits) a new token; the token string is shown only here (`Cache-Control: no-store`).
/// `POST` makes one with other settings.
#[utoipa::path(get, path = "/v1/zones/{zone_id}/token", tag = "zones", security(("bearer" = [])),
    params(("zone_id" = Uuid, Path)),
    responses((status = 200, body = ZoneJoinToken), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody)))]
async fn fresh_token(
    State(s): State<AppState>,
    acct: Acct,
    Path(zone_id): Path<Uuid>,
) -> ApiResult<Response> {
    let token = zones::fresh_join_token(&s, &acct, zone_id).await?;
    // A secret answering a GET: no cache may keep it.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(token)).into_response())
}

/// The zone's join tokens (without secrets), newest first.
#[utoipa::path(get, path = "/v1/zones/{zone_id}/tokens", tag = "zones", security(("bearer" = [])),
    params(("zone_id" = Uuid, Path)),
    responses((status = 200, body = [JoinTokenInfo]), (status = 404, body = ccm_api::ErrorBody)))]
async fn list_tokens(
    State(s): State<AppState>,
    acct: Acct,
    Path(zone_id): Path<Uuid>,
) -> ApiResult<Json<Vec<JoinTokenInfo>>> {
    Ok(Json(zones::join_tokens(&s, &acct, zone_id).await?))
}

/// Revokes a join token at once (MANAGER).
#[utoipa::path(delete, path = "/v1/zones/{zone_id}/token/{token_id}", tag = "zones", security(("bearer" = [])),
    params(("zone_id" = Uuid, Path), ("token_id" = Uuid, Path)),
    responses((status = 200, body = JoinTokenInfo), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody)))]
async fn revoke_token(
    State(s): State<AppState>,
    acct: Acct,
    Path((zone_id, token_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<JoinTokenInfo>> {
    let info = zones::revoke_join_token(&s, &acct, zone_id, token_id).await?;
    Ok(Json(info))
}
