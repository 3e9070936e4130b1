//! The local node-agent API (`/v1/`), as enclave applications use it.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/sys/version` | `{"version"}` |
//! | GET | `/v1/enclave/target-info` | `{"targetInfo"}`: the quoting enclave's TARGETINFO, base64 |
//! | POST | `/v1/enclave/attest` | REPORT + attestation CSR → quote, attestation and node certificates |
//! | POST | `/v1/certificate/issue` | `{"csr"}` for a key attested through `/v1/enclave/attest` |
//! | POST | `/v1/certificate/issue-with-quote` | `{"csr", "quote"}`: what `ccm-launch` uses |
//! | GET, POST | `/v1/certificate/result/{task_id}` | the task |
//!
//! Issuance answers are task objects `{"task_id", "task_status", "certificate", "message"}`.
//! A body that is not a JSON object with the expected string fields still gets a task, DENIED
//! with the reason; only a task id that is not a UUID or unknown is an error (400/404).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_api::agent::{AgentError, AgentVersion, AttestResponse, TargetInfoResponse};
use ccm_api::certificates::CertificateTask;
use ccm_pki::{Csr, Evidence};
use rustls_pki_types::pem::PemObject as _;
use uuid::Uuid;

use crate::Agent;

/// The local API router.
pub fn router(agent: Agent) -> Router {
    Router::new()
        .route("/v1/sys/version", get(version))
        .route("/v1/enclave/target-info", get(target_info))
        .route("/v1/enclave/attest", post(attest))
        .route("/v1/certificate/issue", post(issue))
        .route("/v1/certificate/issue-with-quote", post(issue_with_quote))
        .route("/v1/certificate/result/{task_id}", get(result).post(result))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .with_state(agent)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(AgentError {
            code: code.into(),
            message: message.into(),
        }),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn version() -> Json<AgentVersion> {
    Json(AgentVersion {
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn target_info(State(agent): State<Agent>) -> Response {
    let q = agent.quoter.clone();
    match tokio::task::spawn_blocking(move || q.target()).await {
        Ok(Ok((_, ti))) => Json(TargetInfoResponse {
            target_info: STANDARD.encode(ti.as_bytes()),
        })
        .into_response(),
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "quote_helper",
            e.to_string(),
        ),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "quote_helper",
            e.to_string(),
        ),
    }
}

/// The string fields of a JSON object body; `Err` with the reason when the body is not one.
fn fields(body: &[u8], names: &[&str]) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let serde_json::Value::Object(mut obj) = v else {
        return Err("the body is not a JSON object".to_string());
    };
    names
        .iter()
        .map(|n| match obj.remove(*n) {
            Some(serde_json::Value::String(s)) => Ok(s),
            Some(_) => Err(format!("the field {n:?} is not a string")),
            None => Err(format!("the field {n:?} is missing")),
        })
        .collect()
}

fn task(view: CertificateTask) -> Response {
    Json(view).into_response()
}

async fn issue_with_quote(State(agent): State<Agent>, body: Bytes) -> Response {
    match fields(&body, &["csr", "quote"]) {
        Ok(mut f) => {
            let quote = f.pop().unwrap_or_default();
            let csr = f.pop().unwrap_or_default();
            task(agent.issue(csr, quote).await)
        }
        Err(reason) => task(agent.deny_locally(format!("invalid request: {reason}"))),
    }
}

async fn issue(State(agent): State<Agent>, body: Bytes) -> Response {
    let csr_pem = match fields(&body, &["csr"]) {
        Ok(mut f) => f.pop().unwrap_or_default(),
        Err(reason) => return task(agent.deny_locally(format!("invalid request: {reason}"))),
    };
    let csr = match Csr::from_pem(&csr_pem) {
        Ok(c) => c,
        Err(e) => return task(agent.deny_locally(e.to_string())),
    };
    match agent.attested_quote(&csr.spki_sha256()) {
        Some(quote) => task(agent.issue(csr_pem, STANDARD.encode(quote)).await),
        None => task(
            agent.deny_locally(
                "no attestation evidence for this CSR's key: POST /v1/enclave/attest first with a \
             REPORT whose REPORTDATA binds the key"
                    .into(),
            ),
        ),
    }
}

async fn attest(State(agent): State<Agent>, body: Bytes) -> Response {
    let (report_b64, csr_pem) = match fields(&body, &["report", "attestation_csr"]) {
        Ok(mut f) => {
            let csr = f.pop().unwrap_or_default();
            (f.pop().unwrap_or_default(), csr)
        }
        Err(reason) => return error(StatusCode::BAD_REQUEST, "invalid_request", reason),
    };
    let Ok(report_bytes) = STANDARD.decode(report_b64.trim()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_report",
            "report is not base64",
        );
    };
    let report = match ccm_sgx::Report::parse(&report_bytes) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_report", e.to_string()),
    };
    let csr = match Csr::from_pem(&csr_pem) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_csr", e.to_string()),
    };
    let hash = csr.spki_sha256();
    let rd = &report.body.report_data.0;
    if rd[..32] != hash || rd[32..].iter().any(|b| *b != 0) {
        return error(
            StatusCode::BAD_REQUEST,
            "report_data_mismatch",
            "the REPORT's REPORTDATA does not bind the attestation CSR's public key",
        );
    }
    let q = agent.quoter.clone();
    let quote = match tokio::task::spawn_blocking(move || {
        let (key, _) = q.target()?;
        q.quote_report(&key, &report)
    })
    .await
    {
        Ok(Ok(quote)) => quote,
        Ok(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "quote_refused",
                format!("the quoting enclave refused the REPORT: {e}"),
            );
        }
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "quote_helper",
                e.to_string(),
            );
        }
    };
    let evidence = Evidence {
        quote: quote.clone(),
        pubkey_sha256: hash,
        simulated: agent.identity.read().map(|i| i.simulated).unwrap_or(false),
    };
    let cert = match attestation_certificate(&agent, &csr, &evidence) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "signing_failed", e),
    };
    agent.remember_attested(hash, quote.clone());
    Json(AttestResponse {
        attestation_certificate: cert,
        node_certificate: agent.node_certificate(),
        fqpe_report: STANDARD.encode(&quote),
    })
    .into_response()
}

/// A certificate for the attestation key signed by the node key, carrying the evidence.
fn attestation_certificate(
    agent: &Agent,
    csr: &Csr,
    evidence: &Evidence,
) -> Result<String, String> {
    let key_pem = agent.key_pem();
    let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| e.to_string())?;
    let node_pem = agent.node_certificate();
    let node_der = rustls_pki_types::CertificateDer::from_pem_slice(node_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let issuer = rcgen::CertificateParams::from_ca_cert_der(&node_der)
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ccm attestation");
    if evidence.simulated {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, ccm_pki::SIMULATED_OU);
    }
    let now = crate::unix_now();
    params.not_before = time_of(now - 300)?;
    params.not_after = time_of(now + 3600)?;
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        ccm_pki::evidence::EVIDENCE_OID,
        evidence.encode().map_err(|e| e.to_string())?,
    )];
    let spki = rcgen::SubjectPublicKeyInfo::from_der(csr.spki_der()).map_err(|e| e.to_string())?;
    params
        .signed_by(&spki, &issuer, &key)
        .map(|c| c.pem())
        .map_err(|e| e.to_string())
}

fn time_of(unix: i64) -> Result<::time::OffsetDateTime, String> {
    ::time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| e.to_string())
}

async fn result(State(agent): State<Agent>, Path(task_id): Path<String>) -> Response {
    let Ok(id) = Uuid::try_parse(&task_id) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_task_id",
            "the task id is not a UUID",
        );
    };
    match agent.result(id).await {
        Some(view) => task(view),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such task on this node",
        ),
    }
}
