//! The manager link: enrollment (join token, nonce, quote) and the mutual-TLS client for
//! heartbeats, renewal and issuance.
//!
//! Trust in the manager comes from the join token: it carries the SHA-256 fingerprint of the
//! manager's TLS certificate (as kubeadm's discovery hash does), and the agent accepts exactly
//! that certificate, the manager's default self-signed one included. A manager serving plain HTTP
//! is used only with an explicit `insecure_http` setting.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_api::ErrorBody;
use ccm_api::certificates::CertificateTask;
use ccm_api::nodes::{
    AttestationRequest, AttestedIssueBatch, AttestedIssueBatchResponse, AttestedIssueRequest,
    EnrollmentNonce, HeartbeatRequest, HeartbeatResponse, IssuanceNonce, IssuanceNonceRequest,
    IssuanceNonces, NodeEnrollment, NodeProvisionRequest, NodeRenewRequest, NodeRenewResponse,
};
use ccm_api::zones::JoinToken;
use reqwest::StatusCode;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::Error;
use crate::quoting::Quoter;

/// Why a call to the manager failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Not reachable, timed out or answered 5xx: retry later.
    Unavailable(String),
    /// The manager refused (4xx): the code and message of its error body.
    Refused {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(m) => write!(f, "the manager is not reachable: {m}"),
            Self::Refused {
                status,
                code,
                message,
            } => {
                write!(f, "the manager refused ({status} {code}): {message}")
            }
        }
    }
}

/// Whether a manager URL may be used, and with which pin.
fn check_url(manager: &str, pin: Option<[u8; 32]>, insecure_http: bool) -> Result<(), Error> {
    if manager.starts_with("https://") {
        if pin.is_none() {
            return Err(Error::Config(
                "the join token carries no manager certificate fingerprint, so the https manager \
                 cannot be authenticated (was the token created by a manager serving plain HTTP?)"
                    .into(),
            ));
        }
        Ok(())
    } else if manager.starts_with("http://") {
        if insecure_http {
            Ok(())
        } else {
            Err(Error::Config(
                "the manager URL is plain http://; pass --insecure-http-manager to allow an \
                 unauthenticated, unencrypted manager connection (local testing only)"
                    .into(),
            ))
        }
    } else {
        Err(Error::Config(format!(
            "the manager URL {manager:?} must start with https:// (or http:// with --insecure-http-manager)"
        )))
    }
}

fn build_client(tls: Option<rustls::ClientConfig>) -> Result<reqwest::Client, Error> {
    let tls = match tls {
        Some(t) => t,
        None => ccm_pki::pinning::client_config_with_roots(&[])
            .map_err(|e| Error::Tls(e.to_string()))?,
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .map_err(|e| Error::Tls(e.to_string()))
}

/// A client for one manager.
#[derive(Debug, Clone)]
pub struct ManagerClient {
    base: String,
    http: reqwest::Client,
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, CallError> {
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| CallError::Unavailable(e.to_string()))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| CallError::Unavailable(format!("unexpected response: {e}")));
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(CallError::Unavailable(format!("HTTP {status}")));
    }
    let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
    Err(CallError::Refused {
        status: status.as_u16(),
        code: body.as_ref().map(|b| b.code.clone()).unwrap_or_default(),
        message: body
            .map(|b| b.message)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect()),
    })
}

impl ManagerClient {
    /// A client authenticating with the node certificate (mutual TLS), trusting the pinned
    /// manager certificate.
    pub fn node(
        base: &str,
        pin: Option<[u8; 32]>,
        insecure_http: bool,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Self, Error> {
        check_url(base, pin, insecure_http)?;
        let tls = match pin {
            Some(pin) => {
                let certs: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                        .collect::<Result<_, _>>()
                        .map_err(|e| Error::Tls(format!("node certificate: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                    .map_err(|e| Error::Tls(format!("node key: {e}")))?;
                Some(
                    ccm_pki::pinning::pinned_client_config_with_cert(pin, certs, key)
                        .map_err(|e| Error::Tls(e.to_string()))?,
                )
            }
            None => None,
        };
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http: build_client(tls)?,
        })
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CallError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        decode(resp).await
    }

    /// Sends a heartbeat.
    pub async fn heartbeat(&self, req: &HeartbeatRequest) -> Result<HeartbeatResponse, CallError> {
        self.post("/v1/node-agent/heartbeat", req).await
    }

    /// Renews the node certificate for a new key.
    pub async fn renew(&self, csr: &str) -> Result<NodeRenewResponse, CallError> {
        self.post(
            "/v1/node-agent/certificate",
            &NodeRenewRequest { csr: csr.into() },
        )
        .await
    }

    /// Submits an issuance request (idempotent on the task id).
    pub async fn issue(&self, req: &AttestedIssueRequest) -> Result<CertificateTask, CallError> {
        self.post("/v1/node-agent/certificates", req).await
    }

    /// Several attested issuance requests in one call (`/v1/node-agent/certificates/batch`).
    pub async fn issue_batch(
        &self,
        req: &AttestedIssueBatch,
    ) -> Result<AttestedIssueBatchResponse, CallError> {
        self.post("/v1/node-agent/certificates/batch", req).await
    }

    /// Fresh issuance nonces for workloads on this node (`POST /v1/node-agent/nonces`).
    pub async fn nonces(&self, count: u32) -> Result<Vec<IssuanceNonce>, CallError> {
        let resp: IssuanceNonces = self
            .post("/v1/node-agent/nonces", &IssuanceNonceRequest { count })
            .await?;
        Ok(resp.nonces)
    }

    /// The state of an issuance task.
    pub async fn task(&self, task_id: Uuid) -> Result<CertificateTask, CallError> {
        let resp = self
            .http
            .get(format!(
                "{}/v1/node-agent/certificates/{task_id}",
                self.base
            ))
            .send()
            .await
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        decode(resp).await
    }
}

impl crate::nonces::NonceSource for ManagerClient {
    async fn fetch(&self, count: u32) -> Result<Vec<IssuanceNonce>, CallError> {
        self.nonces(count).await
    }
}

/// A fresh node key (ECDSA P-256) and a CSR for it named `name`.
pub fn node_key_and_csr(name: &str) -> Result<(rcgen::KeyPair, String), Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Error::Tls(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("ccm node {name}"));
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok((key, csr))
}

/// What enrollment needs.
#[derive(Debug, Clone)]
pub struct EnrollParams<'a> {
    /// Manager base URL.
    pub manager: &'a str,
    /// The join token.
    pub token: &'a str,
    /// Node name.
    pub name: &'a str,
    /// IP address to report.
    pub ipaddress: &'a str,
    /// Allow a plain-HTTP manager.
    pub insecure_http: bool,
    /// The platform's collateral (`QuoteCollateralV3` JSON), if the agent has it.
    pub collateral: Option<serde_json::Value>,
}

/// Enrolls the node: nonce, quote binding the new node key and the nonce, provisioning. Returns
/// the enrollment, the node key (PKCS#8 PEM) and the manager pin.
pub async fn enroll(
    p: &EnrollParams<'_>,
    quoter: &Quoter,
) -> Result<(NodeEnrollment, String, Option<[u8; 32]>), Error> {
    let token = JoinToken::parse(p.token).map_err(|e| Error::Config(e.to_string()))?;
    let pin = token.manager_fingerprint;
    check_url(p.manager, pin, p.insecure_http)?;
    let tls = match pin {
        Some(pin) => Some(
            ccm_pki::pinning::pinned_client_config(pin).map_err(|e| Error::Tls(e.to_string()))?,
        ),
        None => None,
    };
    let http = build_client(tls)?;
    let base = p.manager.trim_end_matches('/');
    let call = |e: CallError| Error::Enroll(e.to_string());
    let resp = http
        .post(format!("{base}/v1/nodes/nonce"))
        .bearer_auth(p.token.trim())
        .send()
        .await
        .map_err(|e| Error::Enroll(CallError::Unavailable(e.to_string()).to_string()))?;
    let nonce: EnrollmentNonce = decode(resp).await.map_err(call)?;
    let nonce_bytes = STANDARD
        .decode(&nonce.nonce)
        .map_err(|_| Error::Enroll("the manager's nonce is not base64".into()))?;
    let (key, csr) = node_key_and_csr(p.name)?;
    let mut h = Sha256::new();
    h.update(key.public_key_der());
    h.update(&nonce_bytes);
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&h.finalize());
    let q = quoter.clone();
    let quote = tokio::task::spawn_blocking(move || q.own_quote(&ccm_sgx::ReportData(rd)))
        .await
        .map_err(|e| Error::Aesm(e.to_string()))??;
    let req = NodeProvisionRequest {
        name: p.name.to_string(),
        description: None,
        ipaddress: p.ipaddress.to_string(),
        sgx_version: format!("ccm-agent {}", env!("CARGO_PKG_VERSION")),
        nonce: nonce.nonce,
        attestation_request: AttestationRequest {
            ias_quote: STANDARD.encode(&quote),
            csr,
            attestation_type: Some("DCAP".into()),
        },
        collateral: p.collateral.clone(),
    };
    let resp = http
        .post(format!("{base}/v1/nodes"))
        .bearer_auth(p.token.trim())
        .json(&req)
        .send()
        .await
        .map_err(|e| Error::Enroll(CallError::Unavailable(e.to_string()).to_string()))?;
    let enrollment: NodeEnrollment = decode(resp).await.map_err(call)?;
    Ok((enrollment, key.serialize_pem(), pin))
}
