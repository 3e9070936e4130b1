//! The PCCS API v4 read endpoints (`/sgx/certification/v4/...`, `/tdx/certification/v4/...`),
//! answered from the manager's current collateral so that node-side libraries (Intel's QPL,
//! dcap-qvl's `CollateralClient`, go-tdx-guest) can use the manager's base URL as their PCCS.
//! Unauthenticated like a PCCS, read-only, cacheable (`ETag`, `Cache-Control`) and rate limited
//! per client address.

use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ccm_api::collateral::TcbUpdate;
use ccm_attest::CaType;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::ClientIp;
use crate::service::collateral::{EvaluationSet, PccsAnswer, PccsItem, pccs_answer};

/// The routes (plain axum: they are Intel's API, documented by Intel, not in ccm's OpenAPI).
pub(crate) fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/sgx/certification/v4/tcb", get(tcb))
        .route("/sgx/certification/v4/qe/identity", get(qe_identity))
        .route("/sgx/certification/v4/pckcrl", get(pck_crl))
        .route("/sgx/certification/v4/rootcacrl", get(root_ca_crl))
        .route("/tdx/certification/v4/tcb", get(tdx))
        .route("/tdx/certification/v4/qe/identity", get(tdx))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbQuery {
    fmspc: Option<String>,
    update: Option<String>,
    tcb_evaluation_data_number: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateQuery {
    update: Option<String>,
    tcb_evaluation_data_number: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CrlQuery {
    ca: Option<String>,
    encoding: Option<String>,
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message.into())
}

fn limit(s: &AppState, ip: ClientIp) -> ApiResult<()> {
    if let Some(ip) = ip.0
        && let Err(l) = s.pccs_limit.check(&ip, Instant::now())
    {
        return Err(ApiError::too_many_requests(l.retry_after_secs()));
    }
    Ok(())
}

/// The set asked for: `tcbEvaluationDataNumber=N` or `update=standard|early` (not both).
fn evaluation_set(update: Option<&str>, number: Option<&str>) -> ApiResult<EvaluationSet> {
    match (update, number) {
        (Some(_), Some(_)) => Err(bad(
            "invalid_update",
            "give update or tcbEvaluationDataNumber, not both",
        )),
        (_, Some(n)) => n.parse().map(EvaluationSet::Number).map_err(|_| {
            bad(
                "invalid_update",
                "tcbEvaluationDataNumber must be a non-negative integer",
            )
        }),
        (None, None) => Ok(EvaluationSet::Standard),
        (Some(t), None) => match TcbUpdate::parse(&t.to_ascii_lowercase()) {
            Some(TcbUpdate::Standard) => Ok(EvaluationSet::Standard),
            Some(TcbUpdate::Early) => Ok(EvaluationSet::Early),
            None => Err(bad("invalid_update", "update must be standard or early")),
        },
    }
}

fn fmspc(text: Option<&str>) -> ApiResult<[u8; 6]> {
    let text = text.ok_or_else(|| bad("invalid_fmspc", "fmspc is required (12 hex digits)"))?;
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 6]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| bad("invalid_fmspc", "fmspc must be 12 hex digits"))
}

async fn tcb(
    State(s): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Query(q): Query<TcbQuery>,
) -> ApiResult<Response> {
    limit(&s, ip)?;
    let item = PccsItem::TcbInfo {
        fmspc: fmspc(q.fmspc.as_deref())?,
    };
    let set = evaluation_set(q.update.as_deref(), q.tcb_evaluation_data_number.as_deref())?;
    let answer = pccs_answer(&s, item, set).await?;
    Ok(render(&s, &headers, answer, "TCB-Info-Issuer-Chain", false))
}

async fn qe_identity(
    State(s): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Query(q): Query<UpdateQuery>,
) -> ApiResult<Response> {
    limit(&s, ip)?;
    let set = evaluation_set(q.update.as_deref(), q.tcb_evaluation_data_number.as_deref())?;
    let answer = pccs_answer(&s, PccsItem::QeIdentity, set).await?;
    Ok(render(
        &s,
        &headers,
        answer,
        "SGX-Enclave-Identity-Issuer-Chain",
        false,
    ))
}

async fn pck_crl(
    State(s): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Query(q): Query<CrlQuery>,
) -> ApiResult<Response> {
    limit(&s, ip)?;
    let ca =
        q.ca.as_deref()
            .and_then(CaType::parse)
            .ok_or_else(|| bad("invalid_ca", "ca must be processor or platform"))?;
    let der = match q
        .encoding
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("pem") => false,
        Some("der") => true,
        Some(_) => return Err(bad("invalid_encoding", "encoding must be der or pem")),
    };
    let answer = pccs_answer(&s, PccsItem::PckCrl { ca }, EvaluationSet::Standard).await?;
    Ok(render(
        &s,
        &headers,
        answer,
        "SGX-PCK-CRL-Issuer-Chain",
        der,
    ))
}

async fn root_ca_crl(
    State(s): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
) -> ApiResult<Response> {
    limit(&s, ip)?;
    let answer = pccs_answer(&s, PccsItem::RootCaCrl, EvaluationSet::Standard).await?;
    // A PCCS answers the root CA CRL as hex-encoded DER text.
    let answer = match answer {
        PccsAnswer::Crl {
            der, valid_until, ..
        } => PccsAnswer::Signed {
            body: hex::encode(der),
            issuer_chain: String::new(),
            valid_until,
        },
        other => other,
    };
    Ok(render(&s, &headers, answer, "", false))
}

async fn tdx(State(s): State<AppState>, ip: ClientIp) -> ApiResult<Response> {
    limit(&s, ip)?;
    Err(ApiError::not_found("TDX collateral"))
}

/// The response: body, issuer chain header (percent-encoded PEM), `ETag` and `Cache-Control`
/// (until the set expires, at most an hour); 304 when the client's `If-None-Match` matches.
fn render(
    s: &AppState,
    request: &HeaderMap,
    answer: PccsAnswer,
    chain_header: &'static str,
    der: bool,
) -> Response {
    let (body, content_type, chain, valid_until) = match answer {
        PccsAnswer::Signed {
            body,
            issuer_chain,
            valid_until,
        } => {
            let content_type = if chain_header.is_empty() {
                "text/plain"
            } else {
                "application/json"
            };
            (body.into_bytes(), content_type, issuer_chain, valid_until)
        }
        PccsAnswer::Crl {
            der: crl,
            issuer_chain,
            valid_until,
        } if der => (crl, "application/pkix-crl", issuer_chain, valid_until),
        PccsAnswer::Crl {
            der: crl,
            issuer_chain,
            valid_until,
        } => (
            pem::encode(&pem::Pem::new("X509 CRL", crl)).into_bytes(),
            "application/x-pem-file",
            issuer_chain,
            valid_until,
        ),
    };
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
    let max_age = (valid_until - s.clock.now()).clamp(0, 3600);
    let mut headers = HeaderMap::new();
    let mut put = |name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put(header::ETAG, etag.clone());
    put(header::CACHE_CONTROL, format!("public, max-age={max_age}"));
    put(header::CONTENT_TYPE, content_type.to_string());
    if !chain_header.is_empty() {
        let encoded = utf8_percent_encode(&chain, NON_ALPHANUMERIC).to_string();
        if let (Ok(name), Ok(v)) = (
            header::HeaderName::from_bytes(chain_header.as_bytes()),
            HeaderValue::from_str(&encoded),
        ) {
            headers.insert(name, v);
        }
    }
    let matches = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == etag || t.trim() == "*");
    if matches {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, body).into_response()
}
