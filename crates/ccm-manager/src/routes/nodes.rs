//! `/v1/nodes`: enrollment with a join token, listing, deactivation, node certificates; the
//! zone's node policy and CRL.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ccm_api::certificates::CertificateDetails;
use ccm_api::list::{ListResponse, PageQuery};
use ccm_api::nodes::{
    EnrollmentNonce, Node, NodeCertificate, NodeEnrollment, NodeProvisionRequest, NodeStatusType,
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::list_response;
use crate::AppState;
use crate::auth::Acct;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, ListQuery, Path, Query};
use crate::service::attest::NodePolicy;
use crate::service::{enrollment, nodes};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_nodes, provision_node))
        .routes(routes!(enrollment_nonce))
        .routes(routes!(get_node))
        .routes(routes!(deactivate_node))
        .routes(routes!(node_certificate))
        .routes(routes!(node_certificate_details))
        .routes(routes!(get_node_policy, set_node_policy))
        .routes(routes!(zone_crl))
}

/// The bearer token of `Authorization`, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
}

/// A fresh enrollment nonce (join token as bearer). It is bound to the token, expires after
/// five minutes and admits one enrollment.
#[utoipa::path(post, path = "/v1/nodes/nonce", tag = "nodes",
    responses((status = 200, body = EnrollmentNonce), (status = 401, body = ccm_api::ErrorBody)))]
async fn enrollment_nonce(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<EnrollmentNonce>> {
    Ok(Json(nodes::enrollment_nonce(&s, bearer(&headers)).await?))
}

/// Enrolls a node (join token as bearer). The quote's REPORTDATA must bind SHA-256(node key
/// SubjectPublicKeyInfo DER ‖ nonce); the quote must verify against the trusted roots, a
/// simulated platform needs the account's `allow_simulated` (`simulated_not_trusted`), and the
/// platform must pass the zone's node policy. Returns the node certificate issued by the zone CA
/// (by its simulated intermediate for simulated platforms). The steps: `service::enrollment`.
#[utoipa::path(post, path = "/v1/nodes", tag = "nodes", request_body = NodeProvisionRequest,
    responses((status = 201, body = NodeEnrollment), (status = 401, body = ccm_api::ErrorBody),
        (status = 403, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody),
        (status = 422, body = ccm_api::ErrorBody)))]
async fn provision_node(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(req): Body<NodeProvisionRequest>,
) -> ApiResult<(StatusCode, Json<NodeEnrollment>)> {
    let enrolled = enrollment::enroll(&s, bearer(&headers), req).await?;
    Ok((StatusCode::CREATED, Json(enrolled)))
}

/// Filters of the node list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct NodeQuery {
    /// Only nodes in this status.
    status: Option<NodeStatusType>,
}

/// One page of the selected account's nodes, by name, with the application instances running
/// on each.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", security(("bearer" = [])), params(NodeQuery, PageQuery),
    responses((status = 200, body = ListResponse<Node>), (status = 400, body = ccm_api::ErrorBody)))]
async fn list_nodes(
    State(s): State<AppState>,
    acct: Acct,
    ListQuery(page, q): ListQuery<NodeQuery>,
) -> ApiResult<Json<ListResponse<Node>>> {
    Ok(list_response(
        nodes::list(&s, &acct, q.status, &page).await?,
    ))
}

/// A node, with the application instances running on it (`apps`).
#[utoipa::path(get, path = "/v1/nodes/{node_id}", tag = "nodes", security(("bearer" = [])),
    params(("node_id" = Uuid, Path)),
    responses((status = 200, body = Node), (status = 404, body = ccm_api::ErrorBody)))]
async fn get_node(
    State(s): State<AppState>,
    acct: Acct,
    Path(node_id): Path<Uuid>,
) -> ApiResult<Json<Node>> {
    Ok(Json(nodes::get(&s, &acct, node_id).await?))
}

/// Deactivates a node (MANAGER): its certificate stops working at once, and the certificates
/// issued through it are revoked. Answers 204, as the reference does.
#[utoipa::path(post, path = "/v1/nodes/{node_id}/deactivate", tag = "nodes", security(("bearer" = [])),
    params(("node_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody)))]
async fn deactivate_node(
    State(s): State<AppState>,
    acct: Acct,
    Path(node_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    nodes::deactivate(&s, &acct, node_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The node's current certificate: JSON (the reference's `Certificate`), or the PEM alone when
/// the request accepts `application/x-pem-file`.
#[utoipa::path(get, path = "/v1/nodes/{node_id}/certificate", tag = "nodes", security(("bearer" = [])),
    params(("node_id" = Uuid, Path)),
    responses((status = 200, body = NodeCertificate), (status = 200, body = String, content_type = "application/x-pem-file"), (status = 404, body = ccm_api::ErrorBody)))]
async fn node_certificate(
    State(s): State<AppState>,
    acct: Acct,
    headers: HeaderMap,
    Path(node_id): Path<Uuid>,
) -> ApiResult<Response> {
    let cert = nodes::current_certificate(&s, &acct, node_id).await?;
    Ok(if super::wants_pem(&headers) {
        super::pem_response(cert.certificate)
    } else {
        Json(cert).into_response()
    })
}

/// Details of the node's certificate.
#[utoipa::path(get, path = "/v1/nodes/{node_id}/certificate-details", tag = "nodes", security(("bearer" = [])),
    params(("node_id" = Uuid, Path)),
    responses((status = 200, body = CertificateDetails), (status = 404, body = ccm_api::ErrorBody)))]
async fn node_certificate_details(
    State(s): State<AppState>,
    acct: Acct,
    Path(node_id): Path<Uuid>,
) -> ApiResult<Json<CertificateDetails>> {
    Ok(Json(nodes::certificate_details(&s, &acct, node_id).await?))
}

/// The zone's node enrollment policy.
#[utoipa::path(get, path = "/v1/zones/{zone_id}/node-policy", tag = "zones", security(("bearer" = [])),
    params(("zone_id" = Uuid, Path)),
    responses((status = 200, body = NodePolicy), (status = 404, body = ccm_api::ErrorBody)))]
async fn get_node_policy(
    State(s): State<AppState>,
    acct: Acct,
    Path(zone_id): Path<Uuid>,
) -> ApiResult<Json<NodePolicy>> {
    Ok(Json(nodes::node_policy(&s, &acct, zone_id).await?))
}

/// Sets the zone's node enrollment policy (MANAGER).
#[utoipa::path(put, path = "/v1/zones/{zone_id}/node-policy", tag = "zones", security(("bearer" = [])),
    request_body = NodePolicy, params(("zone_id" = Uuid, Path)),
    responses((status = 200, body = NodePolicy), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody)))]
async fn set_node_policy(
    State(s): State<AppState>,
    acct: Acct,
    Path(zone_id): Path<Uuid>,
    Body(policy): Body<NodePolicy>,
) -> ApiResult<Json<NodePolicy>> {
    Ok(Json(
        nodes::set_node_policy(&s, &acct, zone_id, policy).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct CrlQuery {
    /// `der` (default) or `pem`.
    format: Option<String>,
    /// `zone` (default: the zone CA's CRL) or `simulated` (the simulated intermediate's).
    ca: Option<String>,
}

/// The CRL of the zone CA, or with `ca=simulated` of the zone's simulated intermediate (public:
/// relying parties need it without an account). It is the CRL distribution point of the
/// certificates each CA issues; cached, and re-signed when a certificate is revoked or half a
/// day has passed.
#[utoipa::path(get, path = "/v1/zones/{zone_id}/crl", tag = "zones", params(("zone_id" = Uuid, Path), CrlQuery),
    responses((status = 200, body = Vec<u8>, content_type = "application/pkix-crl"), (status = 404, body = ccm_api::ErrorBody)))]
async fn zone_crl(
    State(s): State<AppState>,
    Path(zone_id): Path<Uuid>,
    Query(q): Query<CrlQuery>,
) -> ApiResult<Response> {
    use crate::service::zones::{self, ZoneCaKind};
    let kind = match q.ca.as_deref() {
        None | Some("zone") => ZoneCaKind::Zone,
        Some("simulated") => ZoneCaKind::Simulated,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("ca must be zone or simulated, not {other:?}"),
            ));
        }
    };
    if !matches!(q.format.as_deref(), None | Some("der") | Some("pem")) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "format must be der or pem, not {:?}",
                q.format.as_deref().unwrap_or_default()
            ),
        ));
    }
    let der = zones::crl(&s, zone_id, kind).await?;
    Ok(match q.format.as_deref() {
        Some("pem") => (
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            pem::encode(&pem::Pem::new("X509 CRL", der)),
        )
            .into_response(),
        None | Some("der") => {
            ([(header::CONTENT_TYPE, "application/pkix-crl")], der).into_response()
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("format must be der or pem, not {other:?}"),
            ));
        }
    })
}
