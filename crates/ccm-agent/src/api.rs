//! The local node-agent API (`/v1/`), as enclave applications use it.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/sys/version` | `{"version"}` |
//! | GET | `/v1/enclave/target-info` | `{"targetInfo"}`: the quoting enclave's TARGETINFO, base64 |
//! | POST | `/v1/enclave/attest` | REPORT + attestation CSR → quote, attestation and node certificates |
//! | POST | `/v1/certificate/issue` | `{"csr"}` for a key attested through `/v1/enclave/attest` |
//! | POST | `/v1/enclave/nonce` | a fresh issuance nonce for REPORTDATA[32..64] |
//! | POST | `/v1/certificate/issue-with-quote` | `{"csr", "quote"}`: what `ccm-launch` uses |
//! | GET, POST | `/v1/certificate/result/{task_id}` | the task |
//!
//! Issuance answers are task objects `{"task_id", "task_status", "certificate", "message"}`.
//! A body that is not a JSON object with the expected string fields, a CSR over
//! [`MAX_CSR_BYTES`], a quote over [`MAX_QUOTE_BYTES`] or not base64 still gets a task, DENIED
//! with the reason, decided here: nothing is forwarded to the manager or kept. A body over
//! [`MAX_BODY_BYTES`] is refused with 413 before it is read in full, one that takes longer than
//! the body read timeout with 408; a task id that is not a UUID or unknown is 400/404. Errors are
//! `{"code", "message"}` ([`AgentError`]).

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_api::agent::{AgentError, AgentVersion, AttestResponse, NonceResponse, TargetInfoResponse};
use ccm_api::certificates::CertificateTask;
use ccm_pki::{Csr, Evidence};
use rustls_pki_types::pem::PemObject as _;
use uuid::Uuid;

use crate::Agent;
use crate::manager::CallError;

/// Largest CSR accepted (PEM text, bytes).
pub const MAX_CSR_BYTES: usize = 16 * 1024;
/// Largest quote accepted (bytes, before base64).
pub const MAX_QUOTE_BYTES: usize = 16 * 1024;
/// Largest request body accepted: a CSR and a quote of the largest sizes in base64, with room
/// for JSON.
pub const MAX_BODY_BYTES: usize = 40 * 1024;

/// The local API router.
pub fn router(agent: Agent) -> Router {
    Router::new()
        .route("/v1/sys/version", get(version))
        .route("/v1/enclave/target-info", get(target_info))
        .route("/v1/enclave/nonce", post(nonce))
        .route("/v1/enclave/attest", post(attest))
        .route("/v1/certificate/issue", post(issue))
        .route("/v1/certificate/issue-with-quote", post(issue_with_quote))
        .route("/v1/certificate/result/{task_id}", get(result).post(result))
        .fallback(not_found)
        .with_state(agent)
}

/// Reads a request body of at most [`MAX_BODY_BYTES`] within the agent's body read timeout;
/// the error answer otherwise. The rest of a refused body stays unread, so the error answer
/// closes the connection (`Connection: close`): a client must not send its next request on it.
async fn read_body(agent: &Agent, body: Body) -> Result<Bytes, Response> {
    let read = axum::body::to_bytes(body, MAX_BODY_BYTES);
    match tokio::time::timeout(agent.limits.body_read_timeout, read).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(closing(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                )))
            } else {
                Err(closing(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request body could not be read",
                )))
            }
        }
        Err(_) => Err(closing(error(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s",
                agent.limits.body_read_timeout.as_secs()
            ),
        ))),
    }
}

/// The answer with `Connection: close`.
fn closing(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// The checks made before a CSR and quote are forwarded: sizes, PEM shape, base64.
fn check_evidence(csr: &str, quote_b64: &str) -> Result<(), String> {
    if csr.len() > MAX_CSR_BYTES {
        return Err(format!("the CSR is larger than {MAX_CSR_BYTES} bytes"));
    }
    // Base64 of MAX_QUOTE_BYTES, padded, plus whitespace the decoder would not accept anyway.
    if quote_b64.trim().len() > MAX_QUOTE_BYTES.div_ceil(3) * 4 {
        return Err(format!("the quote is larger than {MAX_QUOTE_BYTES} bytes"));
    }
    match ::pem::parse(csr) {
        Ok(block)
            if block.tag() == "CERTIFICATE REQUEST" || block.tag() == "NEW CERTIFICATE REQUEST" => {
        }
        _ => return Err("the CSR is not a PEM CERTIFICATE REQUEST".into()),
    }
    match STANDARD.decode(quote_b64.trim()) {
        Ok(q) if q.is_empty() => Err("the quote is empty".into()),
        Ok(q) if q.len() > MAX_QUOTE_BYTES => {
            Err(format!("the quote is larger than {MAX_QUOTE_BYTES} bytes"))
        }
        Ok(_) => Ok(()),
        Err(_) => Err("the quote is not base64".into()),
    }
}

async fn nonce(State(agent): State<Agent>, body: Body) -> Response {
    let body = match read_body(&agent, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let empty = body.iter().all(u8::is_ascii_whitespace)
        || matches!(
            serde_json::from_slice::<serde_json::Value>(&body),
            Ok(serde_json::Value::Object(o)) if o.is_empty()
        );
    if !empty {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be empty or {}",
        );
    }
    match agent.nonce().await {
        Ok(n) => Json::<NonceResponse>(n).into_response(),
        Err(CallError::Unavailable(m)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "manager_unavailable",
            format!("no issuance nonce: the manager is not reachable ({m}); try again later"),
        ),
        Err(e @ CallError::Refused { .. }) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "nonce_refused",
            format!("no issuance nonce: {e}"),
        ),
    }
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

async fn issue_with_quote(State(agent): State<Agent>, body: Body) -> Response {
    let body = match read_body(&agent, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match fields(&body, &["csr", "quote"]) {
        Ok(mut f) => {
            let quote = f.pop().unwrap_or_default();
            let csr = f.pop().unwrap_or_default();
            if let Err(reason) = check_evidence(&csr, &quote) {
                return task(agent.deny_locally(format!("invalid request: {reason}")));
            }
            task(agent.issue(csr, quote).await)
        }
        Err(reason) => task(agent.deny_locally(format!("invalid request: {reason}"))),
    }
}

async fn issue(State(agent): State<Agent>, body: Body) -> Response {
    let body = match read_body(&agent, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
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

async fn attest(State(agent): State<Agent>, body: Body) -> Response {
    let body = match read_body(&agent, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(body_len: usize) -> String {
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            "QUFB".repeat(body_len / 4)
        )
    }

    #[test]
    fn evidence_is_checked_for_size_and_shape_before_it_is_forwarded() {
        let quote = STANDARD.encode([1u8; 4_000]);
        assert_eq!(check_evidence(&csr(800), &quote), Ok(()));
        let max_quote = STANDARD.encode(vec![1u8; MAX_QUOTE_BYTES]);
        assert_eq!(check_evidence(&csr(800), &max_quote), Ok(()));
        for (c, q, why) in [
            (
                csr(MAX_CSR_BYTES),
                quote.clone(),
                "the CSR is larger than 16384 bytes",
            ),
            (
                csr(800),
                STANDARD.encode(vec![1u8; MAX_QUOTE_BYTES + 1]),
                "the quote is larger than 16384 bytes",
            ),
            (
                csr(800).replace("CERTIFICATE REQUEST", "PRIVATE KEY"),
                quote.clone(),
                "not a PEM CERTIFICATE REQUEST",
            ),
            (
                "junk".into(),
                quote.clone(),
                "not a PEM CERTIFICATE REQUEST",
            ),
            (csr(800), "%%%".into(), "not base64"),
            (csr(800), String::new(), "the quote is empty"),
        ] {
            let e = check_evidence(&c, &q).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        // The whole-body cap leaves room for a CSR and a quote of the largest sizes.
        let body = serde_json::json!({"csr": csr(MAX_CSR_BYTES - 200), "quote": max_quote});
        assert!(body.to_string().len() < MAX_BODY_BYTES);
    }
}
