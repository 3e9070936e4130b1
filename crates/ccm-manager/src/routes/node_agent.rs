//! `/v1/node-agent/...`: what an enrolled node agent calls with its node certificate (mutual
//! TLS): heartbeats, node certificate renewal, attested certificate issuance for applications.

use axum::Json;
use axum::extract::State;
use ccm_api::certificates::CertificateTask;
use ccm_api::nodes::{
    AttestedIssueRequest, HeartbeatRequest, HeartbeatResponse, NodeRenewRequest, NodeRenewResponse,
};
use ccm_pki::Csr;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::attested;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, Path};
use crate::node_auth::NodeCaller;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(heartbeat))
        .routes(routes!(renew))
        .routes(routes!(issue))
        .routes(routes!(issue_result))
}

/// A heartbeat: marks the node RUNNING and records the application instances it reports.
#[utoipa::path(post, path = "/v1/node-agent/heartbeat", tag = "node-agent", request_body = HeartbeatRequest,
    responses((status = 200, body = HeartbeatResponse), (status = 401, body = ccm_api::ErrorBody), (status = 403, body = ccm_api::ErrorBody)))]
async fn heartbeat(
    State(s): State<AppState>,
    caller: NodeCaller,
    Body(req): Body<HeartbeatRequest>,
) -> ApiResult<Json<HeartbeatResponse>> {
    if req.running_apps.len() > 10_000 {
        return Err(ApiError::bad_request(
            "too_many_apps",
            "at most 10000 running apps per heartbeat",
        ));
    }
    let running: Vec<Uuid> = req.running_apps.iter().map(|a| a.task_id).collect();
    let status = s
        .store
        .node_heartbeat(
            caller.node.node_id,
            req.version.as_deref(),
            &running,
            s.clock.now(),
        )
        .await?
        .ok_or_else(|| ApiError::not_found("node"))?;
    Ok(Json(HeartbeatResponse {
        node_id: caller.node.node_id,
        status,
        heartbeat_interval_secs: s.config.node_heartbeat_interval_secs,
    }))
}

/// Renews the node certificate for a new key (the CSR proves possession of it).
#[utoipa::path(post, path = "/v1/node-agent/certificate", tag = "node-agent", request_body = NodeRenewRequest,
    responses((status = 200, body = NodeRenewResponse), (status = 401, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn renew(
    State(s): State<AppState>,
    caller: NodeCaller,
    Body(req): Body<NodeRenewRequest>,
) -> ApiResult<Json<NodeRenewResponse>> {
    let csr = Csr::from_pem(&req.csr).map_err(|e| {
        ApiError::validation(vec![ccm_api::FieldError {
            field: "csr".into(),
            message: e.to_string(),
        }])
    })?;
    let node = &caller.node;
    let ca = attested::zone_ca(&s, node.acct_id, node.zone_id).await?;
    let now = s.clock.now();
    let issued = ca
        .issue_node(
            csr.spki_der(),
            &node.node_id.to_string(),
            node.sgx_info.simulated,
            now,
            s.config.node_cert_validity_days.saturating_mul(86_400),
        )
        .map_err(ApiError::internal)?;
    s.store
        .renew_node_cert(
            node.node_id,
            node.zone_id,
            &issued.pem,
            &hex::encode(&issued.serial),
            issued.not_after,
            now,
        )
        .await?;
    Ok(Json(NodeRenewResponse {
        certificate: issued.pem,
        ca_certificate: ca.certificate_pem().to_string(),
    }))
}

/// Attested certificate issuance for an application enclave on the node. Idempotent on
/// `task_id`. A request without valid evidence is a DENIED task, never an error response.
#[utoipa::path(post, path = "/v1/node-agent/certificates", tag = "node-agent", request_body = AttestedIssueRequest,
    responses((status = 200, body = CertificateTask), (status = 401, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody)))]
async fn issue(
    State(s): State<AppState>,
    caller: NodeCaller,
    Body(req): Body<AttestedIssueRequest>,
) -> ApiResult<Json<CertificateTask>> {
    let now = s.clock.now();
    // A new task id (the usual case) is confirmed in one query; a used one is looked at closely.
    if !s.store.task_id_unused(req.task_id).await? {
        if let Some(existing) = s
            .store
            .certificate_by_task(caller.node.node_id, req.task_id, now)
            .await?
        {
            return Ok(Json(task_view(&s, &caller, &existing).await?));
        }
        if s.store.task_exists(req.task_id).await? {
            return Err(ApiError::conflict(
                "task_id_taken",
                "this task id is already used; choose another",
            ));
        }
    }
    let quote = attested::decode_b64(&req.quote).unwrap_or_default();
    let record = attested::evaluate(
        &s,
        &caller.node,
        Uuid::new_v4(),
        req.task_id,
        &req.csr,
        &quote,
    )
    .await;
    let view = attested::record_view(&record);
    attested::write(&s, record).await?;
    Ok(Json(view))
}

async fn task_view(
    s: &AppState,
    caller: &NodeCaller,
    cert: &ccm_api::certificates::Certificate,
) -> ApiResult<CertificateTask> {
    let task = s.store.get_task(caller.node.acct_id, cert.task_id).await?;
    Ok(attested::task_view(cert, task.map(|t| t.status.status)))
}

/// The state of an issuance task of this node.
#[utoipa::path(get, path = "/v1/node-agent/certificates/{task_id}", tag = "node-agent",
    params(("task_id" = Uuid, Path)),
    responses((status = 200, body = CertificateTask), (status = 404, body = ccm_api::ErrorBody)))]
async fn issue_result(
    State(s): State<AppState>,
    caller: NodeCaller,
    Path(task_id): Path<Uuid>,
) -> ApiResult<Json<CertificateTask>> {
    let cert = s
        .store
        .certificate_by_task(caller.node.node_id, task_id, s.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("task"))?;
    Ok(Json(task_view(&s, &caller, &cert).await?))
}
