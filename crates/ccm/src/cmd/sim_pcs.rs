//! `ccm sim pcs`: the simulated root's collateral over the PCS API v4, re-issued as Intel's PCS
//! re-issues it (SIMULATED).
//!
//! Serves the read endpoints a PCCS serves, so that anything pointed at a PCCS (ccm's own
//! client, `ccm collateral fetch`, a manager's refresher) gets collateral that is never stale:
//! `pckcrl?ca=platform` (the simulated PCK CA is a Platform CA; `processor` is 404), `tcb?fmspc=`,
//! `qe/identity` and `rootcacrl` under `/sgx/certification/v4`, with Intel's issuer-chain
//! headers. Each response is issued at the time of the request, dated and signed as Intel dates
//! and signs its collateral, with new CRL numbers. Every response carries `CCM-Simulated: true`.
//! `update=early` answers the early TCB evaluation data set, which holds a TCB recovery announced
//! with `ccm sim tcb-recovery --early` before it is in force (otherwise it equals the standard
//! set). TDX paths are 404.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ccm_attest::collateral::join_signed_json;
use ccm_attest::{Collateral, CollateralParts, sim};
use serde::Deserialize;
use tokio::sync::Mutex;

/// `ccm sim pcs`.
#[derive(Debug, clap::Args)]
pub struct PcsArgs {
    /// The simulated root (the directory of `ccm sim init`).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
}

/// The root directory; one request issues at a time, as issuing advances the CA's CRL number.
struct Pcs {
    dir: PathBuf,
    lock: Mutex<()>,
}

type Shared = Arc<Pcs>;

/// An API error: Intel's `Error-Code` header and a short text body.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    }

    fn invalid(message: String) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidParameter", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let headers = [("Error-Code", self.code), ("CCM-Simulated", "true")];
        (self.status, headers, self.message).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// A response labelled simulated, with an issuer chain (header name, PEM) percent-encoded in its
/// header as the API sends it.
fn simulated(chain: Option<(&'static str, &str)>, body: impl IntoResponse) -> ApiResult {
    let mut h = HeaderMap::new();
    h.insert(
        HeaderName::from_static("ccm-simulated"),
        HeaderValue::from_static("true"),
    );
    if let Some((name, pem)) = chain {
        let encoded =
            percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC);
        let value = HeaderValue::from_str(&encoded.to_string()).map_err(ApiError::internal)?;
        h.insert(name, value);
    }
    Ok((h, body).into_response())
}

/// Whether `update=` asks for the early set.
fn check_update(update: Option<&str>) -> Result<bool, ApiError> {
    match update {
        None | Some("standard") => Ok(false),
        Some("early") => Ok(true),
        Some(other) => Err(ApiError::invalid(format!(
            "update must be standard or early, not {other:?}"
        ))),
    }
}

/// Issues collateral for `fmspc` now, of the standard or the `early` TCB evaluation data set.
async fn issue(pcs: &Pcs, fmspc: [u8; 6], early: bool) -> Result<CollateralParts, ApiError> {
    let _one_at_a_time = pcs.lock.lock().await;
    let now = super::sim::unix_now().map_err(ApiError::internal)?;
    let dir = pcs.dir.clone();
    let issued =
        tokio::task::spawn_blocking(move || sim::issue_collateral_set(&dir, &fmspc, now, early))
            .await
            .map_err(ApiError::internal)?;
    issued.map(Collateral::into_parts).map_err(|e| {
        tracing::warn!(error = %e, "issuing simulated collateral failed");
        ApiError::internal(e)
    })
}

#[derive(Deserialize)]
struct CrlQuery {
    ca: Option<String>,
    encoding: Option<String>,
}

async fn pck_crl(State(s): State<Shared>, Query(q): Query<CrlQuery>) -> ApiResult {
    match q.ca.as_deref() {
        Some("platform") => {}
        Some("processor") => {
            let why = "the simulated PCK CA is a Platform CA";
            return Err(ApiError::new(StatusCode::NOT_FOUND, "NotFound", why));
        }
        other => {
            return Err(ApiError::invalid(format!(
                "ca must be processor or platform, not {other:?}"
            )));
        }
    }
    let parts = issue(&s, sim::DEFAULT_FMSPC, false).await?;
    let body = match q.encoding.as_deref() {
        Some("der") => parts.pck_crl,
        _ => pem::encode(&pem::Pem::new("X509 CRL", parts.pck_crl)).into_bytes(),
    };
    let chain = (
        "SGX-PCK-CRL-Issuer-Chain",
        parts.pck_crl_issuer_chain.as_str(),
    );
    simulated(Some(chain), body)
}

#[derive(Deserialize)]
struct TcbQuery {
    fmspc: Option<String>,
    update: Option<String>,
}

async fn tcb(State(s): State<Shared>, Query(q): Query<TcbQuery>) -> ApiResult {
    let early = check_update(q.update.as_deref())?;
    let fmspc = q
        .fmspc
        .as_deref()
        .and_then(|f| hex::decode(f).ok())
        .and_then(|b| <[u8; 6]>::try_from(b).ok())
        .ok_or_else(|| ApiError::invalid("fmspc must be 6 bytes of hex".into()))?;
    let parts = issue(&s, fmspc, early).await?;
    let body = join_signed_json("tcbInfo", &parts.tcb_info, &parts.tcb_info_signature);
    let chain = (
        "TCB-Info-Issuer-Chain",
        parts.tcb_info_issuer_chain.as_str(),
    );
    simulated(Some(chain), body)
}

#[derive(Deserialize)]
struct UpdateQuery {
    update: Option<String>,
}

async fn qe_identity(State(s): State<Shared>, Query(q): Query<UpdateQuery>) -> ApiResult {
    let early = check_update(q.update.as_deref())?;
    let parts = issue(&s, sim::DEFAULT_FMSPC, early).await?;
    let body = join_signed_json(
        "enclaveIdentity",
        &parts.qe_identity,
        &parts.qe_identity_signature,
    );
    let chain = (
        "SGX-Enclave-Identity-Issuer-Chain",
        parts.qe_identity_issuer_chain.as_str(),
    );
    simulated(Some(chain), body)
}

/// As a PCCS answers: the DER, hex-encoded.
async fn root_crl(State(s): State<Shared>) -> ApiResult {
    let parts = issue(&s, sim::DEFAULT_FMSPC, false).await?;
    simulated(None, hex::encode(&parts.root_ca_crl))
}

async fn not_found() -> ApiError {
    let why = "not served by the simulated PCS (SGX only)";
    ApiError::new(StatusCode::NOT_FOUND, "NotFound", why)
}

fn check_root(dir: &Path) -> anyhow::Result<()> {
    sim::load_root(dir).with_context(|| {
        format!(
            "{} holds no simulated root (make one with `ccm sim init --dir {0}`)",
            dir.display()
        )
    })?;
    Ok(())
}

/// Runs `ccm sim pcs` until interrupted.
pub fn run(args: PcsArgs) -> anyhow::Result<()> {
    check_root(&args.dir)?;
    let state = Arc::new(Pcs {
        dir: args.dir.clone(),
        lock: Mutex::new(()),
    });
    let app = axum::Router::new()
        .route("/sgx/certification/v4/pckcrl", get(pck_crl))
        .route("/sgx/certification/v4/tcb", get(tcb))
        .route("/sgx/certification/v4/qe/identity", get(qe_identity))
        .route("/sgx/certification/v4/rootcacrl", get(root_crl))
        .fallback(not_found)
        .with_state(state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "SIMULATED PCS for the root in {} listening on http://{addr}",
            args.dir.display()
        );
        println!("http://{addr}");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })
}
