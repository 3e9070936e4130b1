//! `/v1/certificates` and the per-app, per-node certificate endpoints.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ccm_api::accounts::AccessRole;
use ccm_api::certificates::{Certificate, CertificateDetails, RevokeRequest};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Acct;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, Path, Query};
use crate::validate::Checker;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_certificates))
        .routes(routes!(get_certificate))
        .routes(routes!(revoke_certificate))
        .routes(routes!(app_node_certificate))
        .routes(routes!(app_node_certificate_details))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct CertQuery {
    /// Only certificates of this app.
    app_id: Option<Uuid>,
    /// Only certificates requested through this node.
    node_id: Option<Uuid>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
}

/// The selected account's certificates and certificate requests, newest first.
#[utoipa::path(get, path = "/v1/certificates", tag = "certificates", security(("bearer" = [])), params(CertQuery),
    responses((status = 200, body = [Certificate])))]
async fn list_certificates(
    State(s): State<AppState>,
    acct: Acct,
    Query(q): Query<CertQuery>,
) -> ApiResult<Json<Vec<Certificate>>> {
    let mut c = Checker::new();
    if let Some(l) = q.limit {
        c.range("limit", l, 1, 1000);
    }
    c.finish()?;
    Ok(Json(
        s.store
            .list_certificates(
                acct.acct_id,
                q.app_id,
                q.node_id,
                q.limit.unwrap_or(100),
                s.clock.now(),
            )
            .await?,
    ))
}

/// A certificate (request) of the selected account.
#[utoipa::path(get, path = "/v1/certificates/{certificate_id}", tag = "certificates", security(("bearer" = [])),
    params(("certificate_id" = Uuid, Path)),
    responses((status = 200, body = Certificate), (status = 404, body = ccm_api::ErrorBody)))]
async fn get_certificate(
    State(s): State<AppState>,
    acct: Acct,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Certificate>> {
    s.store
        .get_certificate(Some(acct.acct_id), id, s.clock.now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("certificate"))
}

/// Revokes an issued certificate (MANAGER); it appears on the zone CRL.
#[utoipa::path(post, path = "/v1/certificates/{certificate_id}/revoke", tag = "certificates", security(("bearer" = [])),
    request_body = RevokeRequest, params(("certificate_id" = Uuid, Path)),
    responses((status = 200, body = Certificate), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody)))]
async fn revoke_certificate(
    State(s): State<AppState>,
    acct: Acct,
    Path(id): Path<Uuid>,
    Body(req): Body<RevokeRequest>,
) -> ApiResult<Json<Certificate>> {
    acct.require(AccessRole::Manager)?;
    let mut c = Checker::new();
    if let Some(r) = &req.reason {
        c.text("reason", r, 1, 1024, true);
    }
    c.finish()?;
    let now = s.clock.now();
    s.store
        .revoke_certificate(acct.acct_id, id, req.reason.as_deref(), &acct.actor(), now)
        .await?;
    s.store
        .get_certificate(Some(acct.acct_id), id, now)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("certificate"))
}

async fn latest(s: &AppState, acct: &Acct, app_id: Uuid, node_id: Uuid) -> ApiResult<Certificate> {
    s.store
        .app_instances(
            acct.acct_id,
            Some(app_id),
            Some(node_id),
            i64::MAX,
            s.clock.now(),
        )
        .await?
        .into_iter()
        .next()
        .map(|i| i.certificate)
        .ok_or_else(|| ApiError::not_found("certificate of this app on this node"))
}

/// The app's current certificate on a node (PEM chain).
#[utoipa::path(get, path = "/v1/apps/{app_id}/node/{node_id}/certificate", tag = "certificates", security(("bearer" = [])),
    params(("app_id" = Uuid, Path), ("node_id" = Uuid, Path)),
    responses((status = 200, body = String, content_type = "application/x-pem-file"), (status = 404, body = ccm_api::ErrorBody)))]
async fn app_node_certificate(
    State(s): State<AppState>,
    acct: Acct,
    Path((app_id, node_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Response> {
    let cert = latest(&s, &acct, app_id, node_id).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        cert.certificate.unwrap_or_default(),
    )
        .into_response())
}

/// Details of the app's current certificate on a node.
#[utoipa::path(get, path = "/v1/apps/{app_id}/node/{node_id}/certificate-details", tag = "certificates", security(("bearer" = [])),
    params(("app_id" = Uuid, Path), ("node_id" = Uuid, Path)),
    responses((status = 200, body = CertificateDetails), (status = 404, body = ccm_api::ErrorBody)))]
async fn app_node_certificate_details(
    State(s): State<AppState>,
    acct: Acct,
    Path((app_id, node_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<CertificateDetails>> {
    let cert = latest(&s, &acct, app_id, node_id).await?;
    let (cpusvn, status) = s
        .store
        .certificate_quote_facts(cert.certificate_id)
        .await?
        .unwrap_or_default();
    Ok(Json(super::nodes::certificate_details(
        cert.certificate.as_deref().unwrap_or_default(),
        cert.enclave_info.clone(),
        cpusvn,
        status,
        cert.simulated,
    )?))
}
