//! `/v1/zones`: the account's zone, its CA certificate and join tokens.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ccm_api::accounts::AccessRole;
use ccm_api::zones::{JoinToken, JoinTokenInfo, JoinTokenRequest, Zone, ZoneJoinToken};
use ccm_store::NewJoinToken;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Acct;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, Path};
use crate::validate::Checker;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_zones))
        .routes(routes!(get_zone))
        .routes(routes!(zone_certificate))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// Hex SHA-256 of a join token's 32-byte secret, as stored.
pub(crate) fn join_secret_hash(secret: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(secret))
}

async fn zone(s: &AppState, acct: &Acct, zone_id: Uuid) -> ApiResult<Zone> {
    Ok(s.store
        .get_zone(acct.acct_id, zone_id)
        .await?
        .ok_or_else(|| ApiError::not_found("zone"))?
        .zone)
}

/// The selected account's zones (one per account).
#[utoipa::path(get, path = "/v1/zones", tag = "zones", security(("bearer" = [])),
    responses((status = 200, body = [Zone])))]
async fn list_zones(State(s): State<AppState>, acct: Acct) -> ApiResult<Json<Vec<Zone>>> {
    Ok(Json(
        s.store
            .list_zones(acct.acct_id)
            .await?
            .into_iter()
            .map(|z| z.zone)
            .collect(),
    ))
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
    Ok(Json(zone(&s, &acct, zone_id).await?))
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
    let z = zone(&s, &acct, zone_id).await?;
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
    Ok((
        StatusCode::CREATED,
        Json(create_join_token(&s, &acct, zone_id, req).await?),
    ))
}

/// Validates and creates a join token for a zone of the account (MANAGER); the token string
/// exists only in the result. Shared by the API and the console.
pub(crate) async fn create_join_token(
    s: &AppState,
    acct: &Acct,
    zone_id: Uuid,
    req: JoinTokenRequest,
) -> ApiResult<ZoneJoinToken> {
    acct.require(AccessRole::Manager)?;
    let mut c = Checker::new();
    let expires_in = req.expires_in.unwrap_or(86_400);
    c.range("expires_in", expires_in, 60, 30 * 86_400);
    if let Some(d) = &req.description {
        c.text("description", d, 1, 256, false);
    }
    c.finish()?;
    zone(s, acct, zone_id).await?;
    let mut secret = [0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| ApiError::internal("no randomness"))?;
    let token = JoinToken {
        token_id: Uuid::new_v4(),
        secret,
        manager_fingerprint: s.tls_fingerprint,
    };
    let now = s.clock.now();
    let info = JoinTokenInfo {
        token_id: token.token_id,
        zone_id,
        created_at: now,
        expires_at: now.saturating_add(expires_in),
        single_use: req.single_use,
        use_count: 0,
        last_used_at: None,
        revoked_at: None,
        created_by: Some(acct.caller.user_id),
        description: req.description,
    };
    s.store
        .create_join_token(
            acct.acct_id,
            &NewJoinToken {
                info: info.clone(),
                secret_hash: join_secret_hash(&secret),
            },
            &acct.actor(),
            now,
        )
        .await?;
    Ok(ZoneJoinToken {
        token: token.encode(),
        info,
    })
}

/// The zone's join tokens (without secrets), newest first.
#[utoipa::path(get, path = "/v1/zones/{zone_id}/token", tag = "zones", security(("bearer" = [])),
    params(("zone_id" = Uuid, Path)),
    responses((status = 200, body = [JoinTokenInfo]), (status = 404, body = ccm_api::ErrorBody)))]
async fn list_tokens(
    State(s): State<AppState>,
    acct: Acct,
    Path(zone_id): Path<Uuid>,
) -> ApiResult<Json<Vec<JoinTokenInfo>>> {
    zone(&s, &acct, zone_id).await?;
    Ok(Json(s.store.list_join_tokens(acct.acct_id, zone_id).await?))
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
    acct.require(AccessRole::Manager)?;
    Ok(Json(
        s.store
            .revoke_join_token(
                acct.acct_id,
                zone_id,
                token_id,
                &acct.actor(),
                s.clock.now(),
            )
            .await?,
    ))
}
