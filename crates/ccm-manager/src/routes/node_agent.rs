//! `/v1/node-agent/...`: what an enrolled node agent calls with its node certificate (mutual
//! TLS): heartbeats, node certificate renewal, attested certificate issuance for applications.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use ccm_api::certificates::CertificateTask;
use ccm_api::nodes::{
    AttestedIssueBatch, AttestedIssueBatchResponse, AttestedIssueOutcome, AttestedIssueRequest,
    HeartbeatRequest, HeartbeatResponse, IssuanceNonceRequest, IssuanceNonces, MAX_ISSUE_BATCH,
    MAX_RUNNING_APPS, NodeRenewRequest, NodeRenewResponse,
};
use ccm_pki::Csr;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, Path};
use crate::node_auth::NodeCaller;
use crate::service;
use crate::service::attest;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(heartbeat))
        .routes(routes!(renew))
        .routes(routes!(nonces))
        .routes(routes!(issue))
        .routes(routes!(issue_batch))
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
    if req.running_apps.len() > MAX_RUNNING_APPS {
        return Err(ApiError::bad_request(
            "too_many_apps",
            format!("at most {MAX_RUNNING_APPS} running apps per heartbeat"),
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
    let (heartbeat_interval_secs, renewal_threshold_percent) =
        crate::service::nodes::agent_settings(&s, caller.node.zone_id).await?;
    Ok(Json(HeartbeatResponse {
        node_id: caller.node.node_id,
        status,
        heartbeat_interval_secs,
        renewal_threshold_percent: Some(renewal_threshold_percent),
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
    // Simulated nodes' certificates come from the zone's simulated intermediate.
    let issuing =
        crate::service::zones::issuing_ca(&s, node.acct_id, node.zone_id, node.sgx_info.simulated)
            .await?;
    let ca = attest::zone_ca(&s, node.acct_id, node.zone_id).await?;
    let now = s.clock.now();
    let issued = issuing
        .ca
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

/// Fresh issuance nonces for workloads on the node (REPORTDATA[32..64] of their quotes): each
/// is accepted once, from this node only, until its `expires_at`
/// (docs/attestation-evidence.md).
#[utoipa::path(post, path = "/v1/node-agent/nonces", tag = "node-agent", request_body = IssuanceNonceRequest,
    responses((status = 200, body = IssuanceNonces), (status = 400, body = ccm_api::ErrorBody), (status = 401, body = ccm_api::ErrorBody), (status = 403, body = ccm_api::ErrorBody)))]
async fn nonces(
    State(s): State<AppState>,
    caller: NodeCaller,
    Body(req): Body<IssuanceNonceRequest>,
) -> ApiResult<Json<IssuanceNonces>> {
    Ok(Json(service::issuance::issue_nonces(
        &s,
        &caller.node,
        req.count,
    )?))
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
    let mut answers = service::issuance::issue(&s, &caller.node, vec![request(req)]).await?;
    match answers.pop() {
        Some(Ok((task, _))) => Ok(Json(task)),
        Some(Err(e)) => Err(e.into()),
        None => Err(ApiError::internal("no answer for the request")),
    }
}

/// Several attested issuance requests of the node at once (at most 64, distinct task ids), each
/// decided as the single-request endpoint would; one outcome per request, in order. What the
/// single endpoint answers with a 4xx status (a task id taken by another task) is the
/// outcome's `error`.
#[utoipa::path(post, path = "/v1/node-agent/certificates/batch", tag = "node-agent", request_body = AttestedIssueBatch,
    responses((status = 200, body = AttestedIssueBatchResponse), (status = 400, body = ccm_api::ErrorBody), (status = 401, body = ccm_api::ErrorBody)))]
async fn issue_batch(
    State(s): State<AppState>,
    caller: NodeCaller,
    Body(req): Body<AttestedIssueBatch>,
) -> ApiResult<Json<AttestedIssueBatchResponse>> {
    if req.requests.is_empty() || req.requests.len() > MAX_ISSUE_BATCH {
        return Err(ApiError::bad_request(
            "batch_size",
            format!(
                "a batch holds 1 to {MAX_ISSUE_BATCH} requests, not {}",
                req.requests.len()
            ),
        ));
    }
    let mut seen = HashSet::with_capacity(req.requests.len());
    if let Some(dup) = req.requests.iter().find(|r| !seen.insert(r.task_id)) {
        return Err(ApiError::bad_request(
            "duplicate_task_id",
            format!("task id {} appears twice in the batch", dup.task_id),
        ));
    }
    let requests = req.requests.into_iter().map(request).collect();
    let results = service::issuance::issue(&s, &caller.node, requests)
        .await?
        .into_iter()
        .map(|o| match o {
            Ok((task, not_after)) => AttestedIssueOutcome {
                task: Some(task),
                not_after,
                error: None,
            },
            Err(e) => AttestedIssueOutcome {
                task: None,
                not_after: None,
                error: Some(ApiError::from(e).body().clone()),
            },
        })
        .collect();
    Ok(Json(AttestedIssueBatchResponse { results }))
}

/// The service's request for a wire request (a quote that is not base64 counts as none).
fn request(r: AttestedIssueRequest) -> service::issuance::Request {
    service::issuance::Request {
        quote: attest::decode_b64(&r.quote).unwrap_or_default(),
        task_id: r.task_id,
        csr: r.csr,
    }
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
    Ok(Json(
        service::issuance::result(&s, &caller.node, task_id).await?,
    ))
}
