//! `/v1/nodes`: enrollment with a join token, listing, deactivation, node certificates; the
//! zone's node policy and CRL.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_api::accounts::AccessRole;
use ccm_api::certificates::CertificateDetails;
use ccm_api::nodes::{EnrollmentNonce, Node, NodeEnrollment, NodeProvisionRequest, SgxInfo};
use ccm_api::zones::JoinToken;
use ccm_attest::Collateral;
use ccm_pki::Csr;
use ccm_store::{NewNode, NonceState};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::attested::{self, NodePolicy};
use crate::auth::Acct;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, Path, Query};
use crate::validate::Checker;

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

/// How long an enrollment nonce is accepted.
const NONCE_TTL_SECS: i64 = 300;

fn forbidden(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message).with_status(StatusCode::FORBIDDEN)
}

/// Checks the join token in `Authorization: Bearer` and returns its record.
async fn join_token(
    s: &AppState,
    headers: &HeaderMap,
) -> ApiResult<(JoinToken, ccm_store::JoinTokenRecord)> {
    let text = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "join_token_required",
                "enrollment needs the join token as Authorization: Bearer <token>",
            )
        })?;
    let token = JoinToken::parse(text)
        .map_err(|e| ApiError::unauthorized("invalid_join_token", e.to_string()))?;
    let invalid = || ApiError::unauthorized("invalid_join_token", "the join token is not valid");
    let rec = s
        .store
        .join_token_record(token.token_id)
        .await?
        .ok_or_else(invalid)?;
    let presented = crate::routes::join_secret_hash(&token.secret);
    // Both are SHA-256 digests of secrets: comparing them leaks nothing useful about the secret.
    if presented != rec.secret_hash {
        return Err(invalid());
    }
    let now = s.clock.now();
    if rec.info.revoked_at.is_some() {
        return Err(ApiError::unauthorized(
            "join_token_revoked",
            "the join token was revoked",
        ));
    }
    if rec.info.expires_at <= now {
        return Err(ApiError::unauthorized(
            "join_token_expired",
            "the join token has expired",
        ));
    }
    if rec.info.single_use && rec.info.use_count > 0 {
        return Err(ApiError::unauthorized(
            "join_token_used",
            "the single-use join token was already used",
        ));
    }
    Ok((token, rec))
}

/// A fresh enrollment nonce (join token as bearer). It is bound to the token, expires after
/// five minutes and admits one enrollment.
#[utoipa::path(post, path = "/v1/nodes/nonce", tag = "nodes",
    responses((status = 200, body = EnrollmentNonce), (status = 401, body = ccm_api::ErrorBody)))]
async fn enrollment_nonce(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<EnrollmentNonce>> {
    let (token, _) = join_token(&s, &headers).await?;
    let mut nonce = [0u8; 32];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| ApiError::internal("no randomness"))?;
    let now = s.clock.now();
    let expires_at = now.saturating_add(NONCE_TTL_SECS);
    s.store
        .create_enroll_nonce(
            token.token_id,
            &hex::encode(Sha256::digest(nonce)),
            now,
            expires_at,
        )
        .await?;
    Ok(Json(EnrollmentNonce {
        nonce: STANDARD.encode(nonce),
        expires_at,
    }))
}

/// Enrolls a node (join token as bearer). The quote's REPORTDATA must bind SHA-256(node key
/// SubjectPublicKeyInfo DER ‖ nonce); the quote must verify against the trusted roots and pass
/// the zone's node policy. Returns the node certificate issued by the zone CA.
#[utoipa::path(post, path = "/v1/nodes", tag = "nodes", request_body = NodeProvisionRequest,
    responses((status = 201, body = NodeEnrollment), (status = 401, body = ccm_api::ErrorBody),
        (status = 403, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody),
        (status = 422, body = ccm_api::ErrorBody)))]
async fn provision_node(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(req): Body<NodeProvisionRequest>,
) -> ApiResult<(StatusCode, Json<NodeEnrollment>)> {
    let (token, rec) = join_token(&s, &headers).await?;
    let mut c = Checker::new();
    c.text("name", &req.name, 1, 128, false);
    if let Some(d) = &req.description {
        c.text("description", d, 0, 1024, true);
    }
    c.text("ipaddress", &req.ipaddress, 0, 64, false);
    c.text("sgx_version", &req.sgx_version, 0, 128, false);
    if let Some(t) = &req.attestation_request.attestation_type
        && t != "DCAP"
    {
        c.err(
            "attestation_request.attestation_type",
            "only DCAP is supported",
        );
    }
    c.finish()?;
    let now = s.clock.now();
    let nonce = attested::decode_b64(&req.nonce)
        .filter(|n| n.len() == 32)
        .ok_or_else(|| {
            ApiError::validation(vec![ccm_api::FieldError {
                field: "nonce".into(),
                message: "must be the 32-byte nonce from POST /v1/nodes/nonce, base64".into(),
            }])
        })?;
    let nonce_hash = hex::encode(Sha256::digest(&nonce));
    match s
        .store
        .enroll_nonce_state(token.token_id, &nonce_hash, now)
        .await?
    {
        NonceState::Fresh => {}
        NonceState::Unknown => {
            return Err(ApiError::conflict(
                "nonce_unknown",
                "the nonce was not issued for this join token",
            ));
        }
        NonceState::Expired => {
            return Err(ApiError::conflict(
                "nonce_expired",
                "the nonce has expired; ask for a new one",
            ));
        }
        NonceState::Used => {
            return Err(ApiError::conflict(
                "nonce_reused",
                "the nonce was already used (replayed enrollment)",
            ));
        }
    }
    let csr = Csr::from_pem(&req.attestation_request.csr).map_err(|e| {
        ApiError::validation(vec![ccm_api::FieldError {
            field: "attestation_request.csr".into(),
            message: e.to_string(),
        }])
    })?;
    let quote = attested::decode_b64(&req.attestation_request.ias_quote).ok_or_else(|| {
        ApiError::validation(vec![ccm_api::FieldError {
            field: "attestation_request.ias_quote".into(),
            message: "is not base64".into(),
        }])
    })?;
    let collateral = match &req.collateral {
        None => None,
        Some(v) => Some(
            Collateral::from_json(v.to_string().as_bytes()).map_err(|e| {
                ApiError::validation(vec![ccm_api::FieldError {
                    field: "collateral".into(),
                    message: e.to_string(),
                }])
            })?,
        ),
    };
    let (verified, used) = attested::verify_quote(&s, &quote, collateral)
        .await
        .map_err(|e| match e {
            attested::QuoteError::Store(cause) => ApiError::internal(cause),
            e => forbidden("quote_rejected", e.to_string()),
        })?;
    let mut h = Sha256::new();
    h.update(csr.spki_der());
    h.update(&nonce);
    let expected: [u8; 32] = h.finalize().into();
    let rd = &verified.report.report_data.0;
    if rd[..32] != expected || rd[32..].iter().any(|b| *b != 0) {
        return Err(forbidden(
            "report_data_mismatch",
            "the quote's REPORTDATA does not bind SHA-256(node public key ‖ nonce)",
        ));
    }
    let policy: NodePolicy = attested::node_policy(&s, rec.info.zone_id).await?;
    let violations = attested::node_attest_policy(&policy).violations(&verified);
    if !violations.is_empty() {
        return Err(forbidden(
            "node_policy",
            format!(
                "the platform does not meet the zone's node policy: {}",
                violations
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ));
    }
    attested::keep_collateral(&s, &verified, &used).await?;
    let node_id = Uuid::new_v4();
    let ca = attested::zone_ca(&s, rec.acct_id, rec.info.zone_id).await?;
    let issued = ca
        .issue_node(
            csr.spki_der(),
            &node_id.to_string(),
            verified.simulated,
            now,
            s.config.node_cert_validity_days.saturating_mul(86_400),
        )
        .map_err(ApiError::internal)?;
    let sgx_info = SgxInfo {
        version: Some(req.sgx_version.clone()),
        fmspc: hex::encode(verified.fmspc),
        tcb_status: attested::api_tcb_status(verified.status),
        advisory_ids: verified.advisory_ids.clone(),
        tcb_date: verified.tcb_date.clone(),
        ppid_hash: attested::ppid_hash(&verified.ppid),
        simulated: verified.simulated,
        root_fingerprint: hex::encode(verified.root_fingerprint),
    };
    let node = s
        .store
        .enroll_node(
            &NewNode {
                node_id,
                acct_id: rec.acct_id,
                zone_id: rec.info.zone_id,
                name: req.name,
                description: req.description.filter(|d| !d.is_empty()),
                ipaddress: Some(req.ipaddress).filter(|i| !i.is_empty()),
                version: Some(req.sgx_version),
                sgx_info,
                cert_pem: issued.pem.clone(),
                cert_serial: hex::encode(&issued.serial),
                cert_not_after: issued.not_after,
                token_id: token.token_id,
                secret_hash: rec.secret_hash.clone(),
                nonce_hash,
                require_approval: policy.require_approval,
            },
            now,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NodeEnrollment {
            node,
            certificate: issued.pem,
            ca_certificate: ca.certificate_pem().to_string(),
            heartbeat_interval_secs: s.config.node_heartbeat_interval_secs,
        }),
    ))
}

/// The node with its running application instances.
async fn node_view(s: &AppState, acct: &Acct, node_id: Uuid) -> ApiResult<Node> {
    let mut node = s
        .store
        .get_node(acct.acct_id, node_id)
        .await?
        .ok_or_else(|| ApiError::not_found("node"))?;
    node.apps = s
        .store
        .app_instances(
            acct.acct_id,
            None,
            Some(node_id),
            s.config.node_stale_after_secs,
            s.clock.now(),
        )
        .await?;
    Ok(node)
}

/// The selected account's nodes.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", security(("bearer" = [])),
    responses((status = 200, body = [Node])))]
async fn list_nodes(State(s): State<AppState>, acct: Acct) -> ApiResult<Json<Vec<Node>>> {
    let mut nodes = s.store.list_nodes(acct.acct_id).await?;
    let instances = s
        .store
        .app_instances(
            acct.acct_id,
            None,
            None,
            s.config.node_stale_after_secs,
            s.clock.now(),
        )
        .await?;
    for n in &mut nodes {
        n.apps = instances
            .iter()
            .filter(|i| i.node_id == n.node_id)
            .cloned()
            .collect();
    }
    Ok(Json(nodes))
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
    Ok(Json(node_view(&s, &acct, node_id).await?))
}

/// Deactivates a node (MANAGER): its certificate stops working at once, and the certificates
/// issued through it are revoked.
#[utoipa::path(post, path = "/v1/nodes/{node_id}/deactivate", tag = "nodes", security(("bearer" = [])),
    params(("node_id" = Uuid, Path)),
    responses((status = 200, body = Node), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody)))]
async fn deactivate_node(
    State(s): State<AppState>,
    acct: Acct,
    Path(node_id): Path<Uuid>,
) -> ApiResult<Json<Node>> {
    acct.require(AccessRole::Manager)?;
    s.store
        .deactivate_node(acct.acct_id, node_id, &acct.actor(), s.clock.now())
        .await?;
    Ok(Json(node_view(&s, &acct, node_id).await?))
}

/// The node's current certificate (PEM).
#[utoipa::path(get, path = "/v1/nodes/{node_id}/certificate", tag = "nodes", security(("bearer" = [])),
    params(("node_id" = Uuid, Path)),
    responses((status = 200, body = String, content_type = "application/x-pem-file"), (status = 404, body = ccm_api::ErrorBody)))]
async fn node_certificate(
    State(s): State<AppState>,
    acct: Acct,
    Path(node_id): Path<Uuid>,
) -> ApiResult<Response> {
    let node = s
        .store
        .get_node(acct.acct_id, node_id)
        .await?
        .ok_or_else(|| ApiError::not_found("node"))?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        node.certificate.unwrap_or_default(),
    )
        .into_response())
}

/// Details of a certificate (PEM), shared with the app certificate endpoints.
pub(crate) fn certificate_details(
    pem_text: &str,
    enclave_info: Option<ccm_api::builds::EnclaveInfo>,
    cpusvn: String,
    status: String,
    simulated: bool,
) -> ApiResult<CertificateDetails> {
    let block = pem::parse(pem_text).map_err(ApiError::internal)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(block.contents()).map_err(ApiError::internal)?;
    Ok(CertificateDetails {
        enclave_info,
        subject_name: cert.subject().to_string(),
        issuer_name: cert.issuer().to_string(),
        valid_until: cert.validity().not_after.timestamp(),
        valid_from: cert.validity().not_before.timestamp(),
        cpusvn,
        ias_quote_status: status,
        simulated,
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
    let node = s
        .store
        .get_node(acct.acct_id, node_id)
        .await?
        .ok_or_else(|| ApiError::not_found("node"))?;
    let status = serde_json::to_value(node.sgx_info.tcb_status)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    Ok(Json(certificate_details(
        node.certificate.as_deref().unwrap_or_default(),
        None,
        String::new(),
        status,
        node.sgx_info.simulated,
    )?))
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
    s.store
        .get_zone(acct.acct_id, zone_id)
        .await?
        .ok_or_else(|| ApiError::not_found("zone"))?;
    Ok(Json(attested::node_policy(&s, zone_id).await?))
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
    acct.require(AccessRole::Manager)?;
    if policy.accepted_tcb_statuses.is_empty() {
        return Err(ApiError::validation(vec![ccm_api::FieldError {
            field: "accepted_tcb_statuses".into(),
            message: "must name at least one status".into(),
        }]));
    }
    let value = serde_json::to_value(&policy).map_err(ApiError::internal)?;
    s.store
        .set_zone_node_policy(acct.acct_id, zone_id, &value, &acct.actor(), s.clock.now())
        .await?;
    Ok(Json(policy))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct CrlQuery {
    /// `der` (default) or `pem`.
    format: Option<String>,
}

/// The zone's certificate revocation list (public: relying parties need it without an account).
#[utoipa::path(get, path = "/v1/zones/{zone_id}/crl", tag = "zones", params(("zone_id" = Uuid, Path), CrlQuery),
    responses((status = 200, body = Vec<u8>, content_type = "application/pkix-crl"), (status = 404, body = ccm_api::ErrorBody)))]
async fn zone_crl(
    State(s): State<AppState>,
    Path(zone_id): Path<Uuid>,
    Query(q): Query<CrlQuery>,
) -> ApiResult<Response> {
    let acct_id = s
        .store
        .zone_account(zone_id)
        .await?
        .ok_or_else(|| ApiError::not_found("zone"))?;
    let ca = attested::zone_ca(&s, acct_id, zone_id).await?;
    let now = s.clock.now();
    let entries = s.store.crl_entries(zone_id, now, 0).await?;
    let revoked: Vec<(Vec<u8>, i64)> = entries
        .into_iter()
        .filter_map(|(serial, at)| hex::decode(serial).ok().map(|s| (s, at)))
        .collect();
    let crl_number = u64::try_from(now).unwrap_or(0);
    let der = ca
        .crl(&revoked, crl_number, now, 86_400)
        .map_err(ApiError::internal)?;
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
