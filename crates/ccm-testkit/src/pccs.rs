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
}

/// What a running server serves and has seen.
pub struct Server {
    parts: CollateralParts,
    fault: Fault,
    /// Every request's endpoint and sorted query (`tcb?fmspc=...&update=standard`), in order.
    pub seen: Mutex<Vec<String>>,
}

/// A running server, shared with its handlers.
pub type Shared = Arc<Server>;

fn chain_header(pem: &str) -> HeaderValue {
    // Percent-encoding leaves only ASCII letters, digits and `%`: always a valid header value.
    HeaderValue::from_str(&utf8_percent_encode(pem, NON_ALPHANUMERIC).to_string())
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn crl_body(s: &Server, der: &[u8]) -> Vec<u8> {
    if s.fault == Fault::PemCrls {
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
    let mut h = HeaderMap::new();
    h.insert(
        "SGX-PCK-CRL-Issuer-Chain",
        chain_header(&s.parts.pck_crl_issuer_chain),
    );
    (h, crl_body(&s, &s.parts.pck_crl)).into_response()
}

async fn tcb(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    note(&s, "tcb", &q);
    match s.fault {
        Fault::NotFound => {
            return (StatusCode::NOT_FOUND, [("Error-Code", "NotFound")]).into_response();
        }
        Fault::Slow => tokio::time::sleep(Duration::from_secs(5)).await,
        _ => {}
    }
    let mut h = HeaderMap::new();
    if s.fault != Fault::NoTcbChainHeader {
        h.insert(
            "TCB-Info-Issuer-Chain",
            chain_header(&s.parts.tcb_info_issuer_chain),
        );
    }
    let body = match s.fault {
        Fault::GarbageTcbBody => "<html>maintenance</html>".to_string(),
        Fault::HugeBody => " ".repeat(5 << 20),
        Fault::TcbInfoTampered => {
            let tampered = s.parts.tcb_info.replacen(
                "\"tcbEvaluationDataNumber\":",
                "\"tcbEvaluationDataNumber\":9",
                1,
            );
            join_signed_json("tcbInfo", &tampered, &s.parts.tcb_info_signature)
        }
        _ => join_signed_json("tcbInfo", &s.parts.tcb_info, &s.parts.tcb_info_signature),
    };
    (h, body).into_response()
}

async fn qe_identity(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    note(&s, "qe/identity", &q);
    let mut h = HeaderMap::new();
    h.insert(
        "SGX-Enclave-Identity-Issuer-Chain",
        chain_header(&s.parts.qe_identity_issuer_chain),
    );
    let body = join_signed_json(
        "enclaveIdentity",
        &s.parts.qe_identity,
        &s.parts.qe_identity_signature,
    );
    (h, body).into_response()
}

async fn root_crl(State(s): State<Shared>) -> Response {
    note(&s, "rootcacrl", &HashMap::new());
    if s.fault == Fault::PemCrls {
        return crl_body(&s, &s.parts.root_ca_crl).into_response();
    }
    hex::encode(&s.parts.root_ca_crl).into_response()
}

/// Serves `parts` at a loopback address until the runtime ends; answers the base URL
/// (`http://127.0.0.1:PORT`) and the server.
pub async fn serve(parts: CollateralParts, fault: Fault) -> std::io::Result<(String, Shared)> {
    let state = Arc::new(Server {
        parts,
        fault,
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
