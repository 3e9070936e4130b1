//! A PCCS on 127.0.0.1 for tests: serves one collateral set over the PCS v4 API the way Intel's
//! PCS and a PCCS do (signed JSON bodies, percent-encoded PEM issuer chains in headers, DER CRLs,
//! the root CA CRL hex-encoded), or misbehaves in one chosen way ([`Fault`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ccm_attest::CollateralParts;
use ccm_attest::collateral::join_signed_json;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// How the server misbehaves, if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answers as the API does.
    None,
    /// TCB info without its issuer-chain header.
    NoTcbChainHeader,
    /// TCB info whose signed text was changed after signing.
    TcbInfoTampered,
    /// An HTML page instead of TCB info.
    GarbageTcbBody,
    /// 404 with an `Error-Code` header for TCB info.
    NotFound,
    /// A 5 MiB TCB info body.
    HugeBody,
    /// TCB info after 5 s.
    Slow,
    /// CRLs (PCK and root) as PEM.
    PemCrls,
    /// 503 for every request (the service is down).
    Unavailable,
}

/// What a running server serves: the standard set, the early set if it differs, the fault.
#[derive(Clone)]
struct Serving {
    parts: CollateralParts,
    early: Option<CollateralParts>,
    fault: Fault,
}

/// What a running server serves and has seen.
pub struct Server {
    serving: Mutex<Serving>,
    /// Every request's endpoint and sorted query (`tcb?fmspc=...&update=standard`), in order.
    pub seen: Mutex<Vec<String>>,
}

impl Server {
    /// Serves `parts` from now on (as a PCCS does after Intel re-signed), for the early TCB
    /// evaluation data set too unless [`Server::set_early_parts`] says otherwise.
    pub fn set_parts(&self, parts: CollateralParts) {
        self.lock().parts = parts;
    }

    /// Serves `parts` for `update=early` (TCB info and QE identity) from now on; `None`: the
    /// standard set.
    pub fn set_early_parts(&self, parts: Option<CollateralParts>) {
        self.lock().early = parts;
    }

    /// Misbehaves as `fault` says from now on.
    pub fn set_fault(&self, fault: Fault) {
        self.lock().fault = fault;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Serving> {
        // A handler that panicked while holding the lock left a value that is still whole.
        self.serving.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What one request is answered from: the parts of the set `query` asks for, the fault.
    fn snapshot(&self, query: &HashMap<String, String>) -> (CollateralParts, Fault) {
        let s = self.lock();
        let early = query.get("update").map(String::as_str) == Some("early");
        let parts = match (&s.early, early) {
            (Some(e), true) => e.clone(),
            _ => s.parts.clone(),
        };
        (parts, s.fault)
    }
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response()
}

/// A running server, shared with its handlers.
pub type Shared = Arc<Server>;

fn chain_header(pem: &str) -> HeaderValue {
    // Percent-encoding leaves only ASCII letters, digits and `%`: always a valid header value.
    HeaderValue::from_str(&utf8_percent_encode(pem, NON_ALPHANUMERIC).to_string())
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn crl_body(fault: Fault, der: &[u8]) -> Vec<u8> {
    if fault == Fault::PemCrls {
        pem::encode(&pem::Pem::new("X509 CRL", der.to_vec())).into_bytes()
    } else {
        der.to_vec()
    }
}

fn note(s: &Server, what: &str, q: &HashMap<String, String>) {
    let mut q: Vec<_> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    q.sort();
    // A handler that panicked while holding the lock left a log that is still a log.
    let mut seen = s.seen.lock().unwrap_or_else(|e| e.into_inner());
    seen.push(format!("{what}?{}", q.join("&")));
}

async fn pck_crl(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    note(&s, "pckcrl", &q);
    let (parts, fault) = s.snapshot(&HashMap::new());
    if fault == Fault::Unavailable {
        return unavailable();
    }
    let mut h = HeaderMap::new();
    h.insert(
        "SGX-PCK-CRL-Issuer-Chain",
        chain_header(&parts.pck_crl_issuer_chain),
    );
    (h, crl_body(fault, &parts.pck_crl)).into_response()
}

async fn tcb(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    note(&s, "tcb", &q);
    let (parts, fault) = s.snapshot(&q);
    match fault {
        Fault::Unavailable => return unavailable(),
        Fault::NotFound => {
            return (StatusCode::NOT_FOUND, [("Error-Code", "NotFound")]).into_response();
        }
        Fault::Slow => tokio::time::sleep(Duration::from_secs(5)).await,
        _ => {}
    }
    let mut h = HeaderMap::new();
    if fault != Fault::NoTcbChainHeader {
        h.insert(
            "TCB-Info-Issuer-Chain",
            chain_header(&parts.tcb_info_issuer_chain),
        );
    }
    let body = match fault {
        Fault::GarbageTcbBody => "<html>maintenance</html>".to_string(),
        Fault::HugeBody => " ".repeat(5 << 20),
        Fault::TcbInfoTampered => {
            let tampered = parts.tcb_info.replacen(
                "\"tcbEvaluationDataNumber\":",
                "\"tcbEvaluationDataNumber\":9",
                1,
            );
            join_signed_json("tcbInfo", &tampered, &parts.tcb_info_signature)
        }
        _ => join_signed_json("tcbInfo", &parts.tcb_info, &parts.tcb_info_signature),
    };
    (h, body).into_response()
}

async fn qe_identity(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    note(&s, "qe/identity", &q);
    let (parts, fault) = s.snapshot(&q);
    if fault == Fault::Unavailable {
        return unavailable();
    }
    let mut h = HeaderMap::new();
    h.insert(
        "SGX-Enclave-Identity-Issuer-Chain",
        chain_header(&parts.qe_identity_issuer_chain),
    );
    let body = join_signed_json(
        "enclaveIdentity",
        &parts.qe_identity,
        &parts.qe_identity_signature,
    );
    (h, body).into_response()
}

async fn root_crl(State(s): State<Shared>) -> Response {
    note(&s, "rootcacrl", &HashMap::new());
    let (parts, fault) = s.snapshot(&HashMap::new());
    match fault {
        Fault::Unavailable => unavailable(),
        Fault::PemCrls => crl_body(fault, &parts.root_ca_crl).into_response(),
        _ => hex::encode(&parts.root_ca_crl).into_response(),
    }
}

/// Serves `parts` at a loopback address until the runtime ends; answers the base URL
/// (`http://127.0.0.1:PORT`) and the server.
pub async fn serve(parts: CollateralParts, fault: Fault) -> std::io::Result<(String, Shared)> {
    let state = Arc::new(Server {
        serving: Mutex::new(Serving {
            parts,
            early: None,
            fault,
        }),
        seen: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route("/sgx/certification/v4/pckcrl", get(pck_crl))
        .route("/sgx/certification/v4/tcb", get(tcb))
        .route("/sgx/certification/v4/qe/identity", get(qe_identity))
        .route("/tdx/certification/v4/tcb", get(tcb))
        .route("/tdx/certification/v4/qe/identity", get(qe_identity))
        .route("/sgx/certification/v4/rootcacrl", get(root_crl))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}"), state))
}
