//! `/v1/certificates` and the per-app, per-node certificate endpoints.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use ccm_api::certificates::{Certificate, CertificateDetails, RevokeRequest};
use ccm_api::list::{ListResponse, PageQuery};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::list_response;
use crate::AppState;
use crate::auth::Acct;
use crate::error::ApiResult;
use crate::extract::{Json as Body, ListQuery, Path};
use crate::service::certificates::{self, CertificateFilter};

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
}

/// One page of the selected account's certificates and certificate requests, newest first.
#[utoipa::path(get, path = "/v1/certificates", tag = "certificates", security(("bearer" = [])), params(CertQuery, PageQuery),
    responses((status = 200, body = ListResponse<Certificate>), (status = 400, body = ccm_api::ErrorBody)))]
async fn list_certificates(
    State(s): State<AppState>,
    acct: Acct,
    ListQuery(page, q): ListQuery<CertQuery>,
) -> ApiResult<Json<ListResponse<Certificate>>> {
    let f = CertificateFilter {
        app_id: q.app_id,
        node_id: q.node_id,
    };
    Ok(list_response(
        certificates::list(&s, &acct, f, &page).await?,
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
    Ok(Json(certificates::get(&s, &acct, id).await?))
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
    let reason = req.reason.as_deref();
    Ok(Json(certificates::revoke(&s, &acct, id, reason).await?))
}

/// The app's current certificate on a node: JSON (the reference's `Certificate`), or the PEM
/// chain alone when the request accepts `application/x-pem-file`.
#[utoipa::path(get, path = "/v1/apps/{app_id}/node/{node_id}/certificate", tag = "certificates", security(("bearer" = [])),
    params(("app_id" = Uuid, Path), ("node_id" = Uuid, Path)),
    responses((status = 200, body = Certificate), (status = 200, body = String, content_type = "application/x-pem-file"), (status = 404, body = ccm_api::ErrorBody)))]
async fn app_node_certificate(
    State(s): State<AppState>,
    acct: Acct,
    headers: HeaderMap,
    Path((app_id, node_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Response> {
    let cert = certificates::current_on_node(&s, &acct, app_id, node_id).await?;
    Ok(if super::wants_pem(&headers) {
        super::pem_response(cert.certificate.unwrap_or_default())
    } else {
        Json(cert).into_response()
    })
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
    let details = certificates::current_on_node_details(&s, &acct, app_id, node_id).await?;
    Ok(Json(details))
}
