//! A client for the OCI distribution API (Docker Registry HTTP API v2).
//!
//! * TLS by default (rustls with the ring provider; the system's roots from the usual locations,
//!   plus an optional extra CA). Plain HTTP only for registries listed as insecure, as Docker's
//!   `--insecure-registry` does.
//! * Anonymous, Basic and Bearer-token authentication, discovered from the `WWW-Authenticate`
//!   challenge of a 401 answer; tokens are cached per repository scope.
//! * Blobs are streamed: downloads as a stream of chunks checked against the descriptor's size and
//!   digest by the caller ([`crate::source`]), uploads as a monolithic `POST` + streamed `PUT`.

pub mod auth;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

pub use auth::Credentials;
use auth::{Challenge, parse_challenge};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::oci::{MANIFEST_ACCEPT, MAX_MANIFEST_SIZE};

/// A stream of blob chunks.
pub type ByteStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// `host:port` of registries spoken to over plain HTTP (nothing else ever is).
    pub insecure: Vec<String>,
    /// PEM file with extra CA certificates trusted in addition to the system's.
    pub extra_ca_file: Option<std::path::PathBuf>,
    /// Skip the system roots and trust only `extra_ca_file` (for private PKIs and tests).
    pub only_extra_ca: bool,
}

/// Builds the rustls client configuration: ring provider, HTTP/1.1 ALPN, system roots and the
/// optional extra CA.
fn tls_config(opts: &RegistryOptions) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if !opts.only_extra_ca {
        let native = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            tracing::warn!(
                "no system CA certificates found (install ca-certificates); only --ca-cert is trusted"
            );
        }
    }
    if let Some(path) = &opts.extra_ca_file {
        use rustls_pki_types::pem::PemObject as _;
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| Error::TlsConfig(format!("reading CA file {}: {e}", path.display())))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::TlsConfig(format!("parsing CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Error::TlsConfig(format!(
                "CA file {} holds no certificate",
                path.display()
            )));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| Error::TlsConfig(format!("CA file {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TlsConfig(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A connection pool and settings shared by every registry client.
#[derive(Clone)]
pub struct Registries {
    http: reqwest::Client,
    insecure: Arc<HashSet<String>>,
}

impl Registries {
    /// Builds the HTTP client.
    pub fn new(opts: &RegistryOptions) -> Result<Self> {
        let tls = tls_config(opts)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("ccm/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|e| Error::TlsConfig(format!("building the HTTP client: {e}")))?;
        Ok(Registries {
            http,
            insecure: Arc::new(opts.insecure.iter().cloned().collect()),
        })
    }

    /// A client for one registry (`host[:port]` as in the reference's registry part).
    pub fn client(&self, api_host: &str, credentials: Option<Credentials>) -> RegistryClient {
        let scheme = if self.insecure.contains(api_host) {
            "http"
        } else {
            "https"
        };
        RegistryClient {
            http: self.http.clone(),
            host: api_host.to_owned(),
            base: format!("{scheme}://{api_host}"),
            credentials,
            auth: Arc::new(Mutex::new(AuthState::default())),
        }
    }
}

#[derive(Default)]
struct AuthState {
    /// Basic auth was demanded: send it on every request.
    basic: bool,
    /// Bearer tokens by scope.
    tokens: HashMap<String, String>,
}

/// A client for one registry.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    host: String,
    base: String,
    credentials: Option<Credentials>,
    auth: Arc<Mutex<AuthState>>,
}

/// What a request needs access to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read.
    Pull,
    /// Read and write.
    Push,
}

impl Access {
    fn actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        }
    }
}

/// A registry error document: `{"errors":[{"code":..., "message":...}]}`.
#[derive(serde::Deserialize)]
struct ErrorDoc {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}
#[derive(serde::Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl RegistryClient {
    /// The registry host this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn scope(repo: &str, access: Access) -> String {
        format!("repository:{repo}:{}", access.actions())
    }

    fn auth_header(&self, scope: &str) -> Option<String> {
        let state = self.auth.lock().ok()?;
        if let Some(t) = state.tokens.get(scope) {
            return Some(format!("Bearer {t}"));
        }
        if state.basic {
            return self.credentials.as_ref().map(Credentials::basic_header);
        }
        None
    }

    fn transport(&self, source: reqwest::Error) -> Error {
        Error::Transport {
            registry: self.host.clone(),
            source,
        }
    }

    fn auth_failed(&self) -> Error {
        Error::AuthenticationFailed {
            registry: self.host.clone(),
            had_credentials: self.credentials.is_some(),
        }
    }

    /// Answers a 401 challenge: remembers Basic, or fetches a Bearer token for `scope`.
    async fn authenticate(&self, challenge: Option<Challenge>, scope: &str) -> Result<()> {
        let Some(ch) = challenge else {
            return Err(self.auth_failed());
        };
        match ch.scheme.as_str() {
            "basic" => {
                if self.credentials.is_none() {
                    return Err(self.auth_failed());
                }
                if let Ok(mut s) = self.auth.lock() {
                    s.basic = true;
                }
                Ok(())
            }
            "bearer" => {
                let realm = ch.params.get("realm").ok_or_else(|| Error::Registry {
                    registry: self.host.clone(),
                    operation: "authentication".into(),
                    status: 401,
                    message: "Bearer challenge without realm".into(),
                })?;
                let mut url = Url::parse(realm).map_err(|e| Error::Registry {
                    registry: self.host.clone(),
                    operation: "authentication".into(),
                    status: 401,
                    message: format!("invalid token realm {realm:?}: {e}"),
                })?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(service) = ch.params.get("service") {
                        q.append_pair("service", service);
                    }
                    q.append_pair("scope", scope);
                }
                let mut req = self.http.get(url);
                if let Some(c) = &self.credentials {
                    req = req.header(AUTHORIZATION, c.basic_header());
                }
                let resp = req.send().await.map_err(|e| self.transport(e))?;
                if matches!(
                    resp.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ) {
                    return Err(self.auth_failed());
                }
                if !resp.status().is_success() {
                    return Err(self.status_error("token request", resp).await);
                }
                let body = read_limited(resp, 1024 * 1024, &self.host, "token response").await?;
                let tr: TokenResponse =
                    serde_json::from_slice(&body).map_err(|e| Error::json("token response", e))?;
                let token = tr
                    .token
                    .or(tr.access_token)
                    .ok_or_else(|| Error::invalid("token response", "no token"))?;
                if let Ok(mut s) = self.auth.lock() {
                    s.tokens.insert(scope.to_owned(), token);
                }
                Ok(())
            }
            other => Err(Error::Registry {
                registry: self.host.clone(),
                operation: "authentication".into(),
                status: 401,
                message: format!("unsupported authentication scheme {other:?}"),
            }),
        }
    }

    /// Sends a request built by `build`, answering one authentication challenge if needed.
    async fn send(
        &self,
        repo: &str,
        access: Access,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response> {
        let scope = Self::scope(repo, access);
        let attempt = |auth: Option<String>| {
            let mut req = build();
            if let Some(h) = auth {
                req = req.header(AUTHORIZATION, h);
            }
            req.send()
        };
        let sent_auth = self.auth_header(&scope);
        let had_auth = sent_auth.is_some();
        let resp = attempt(sent_auth).await.map_err(|e| self.transport(e))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        if had_auth && challenge.as_ref().is_some_and(|c| c.scheme == "basic") {
            // We already sent the credentials and they were refused.
            return Err(self.auth_failed());
        }
        self.authenticate(challenge, &scope).await?;
        let resp = attempt(self.auth_header(&scope))
            .await
            .map_err(|e| self.transport(e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(self.auth_failed());
        }
        Ok(resp)
    }

    /// Builds the error for an unexpected answer, with the registry's own error codes.
    async fn status_error(&self, operation: &str, resp: Response) -> Error {
        let status = resp.status().as_u16();
        let body = read_limited(resp, 64 * 1024, &self.host, operation)
            .await
            .unwrap_or_default();
        let message = match serde_json::from_slice::<ErrorDoc>(&body) {
            Ok(doc) if !doc.errors.is_empty() => doc
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            _ => String::from_utf8_lossy(body.get(..200).unwrap_or(&body))
                .trim()
                .to_owned(),
        };
        Error::Registry {
            registry: self.host.clone(),
            operation: operation.to_owned(),
            status,
            message,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Fetches a manifest or index by tag or digest: `(bytes, content type, digest)`. The bytes
    /// are checked against the digest when the reference is one.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        display: &str,
    ) -> Result<(Vec<u8>, Option<String>, Digest)> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(repo, Access::Pull, || {
                self.http.get(&url).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(Error::ImageNotFound {
                    reference: display.to_owned(),
                });
            }
            StatusCode::FORBIDDEN => {
                return Err(Error::AccessDenied {
                    registry: self.host.clone(),
                    repository: repo.to_owned(),
                });
            }
            _ => {
                return Err(self
                    .status_error(&format!("GET manifest {display}"), resp)
                    .await);
            }
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(
            resp,
            MAX_MANIFEST_SIZE,
            &self.host,
            &format!("manifest {display}"),
        )
        .await?;
        let digest = Digest::of(&body);
        if let Ok(expected) = reference.parse::<Digest>() {
            crate::digest::verify(&format!("manifest {display}"), &body, &expected)?;
        }
        Ok((body, content_type, digest))
    }

    /// Downloads a blob as a stream (redirects to storage back-ends are followed). The caller
    /// checks size and digest.
    pub async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<ByteStream> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .send(repo, Access::Pull, || self.http.get(&url))
            .await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(Error::BlobNotFound {
                    location: format!("{}/{repo}", self.host),
                    digest: digest.to_string(),
                });
            }
            StatusCode::FORBIDDEN => {
                return Err(Error::AccessDenied {
                    registry: self.host.clone(),
                    repository: repo.to_owned(),
                });
            }
            _ => return Err(self.status_error(&format!("GET blob {digest}"), resp).await),
        }
        let host = self.host.clone();
        Ok(Box::pin(resp.bytes_stream().map_err(move |e| {
            Error::Transport {
                registry: host.clone(),
                source: e,
            }
        })))
    }

    /// Whether the repository already has this blob.
    pub async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .send(repo, Access::Push, || self.http.head(&url))
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            StatusCode::FORBIDDEN => Err(Error::AccessDenied {
                registry: self.host.clone(),
                repository: repo.to_owned(),
            }),
            _ => Err(self
                .status_error(&format!("HEAD blob {digest}"), resp)
                .await),
        }
    }

    /// Uploads a blob: `POST` opens an upload session, one `PUT` streams the whole body and
    /// closes it with the digest (the registry verifies it).
    pub async fn upload_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: reqwest::Body,
    ) -> Result<()> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self
            .send(repo, Access::Push, || {
                self.http.post(&url).header(CONTENT_LENGTH, "0")
            })
            .await?;
        if resp.status() == StatusCode::FORBIDDEN {
            return Err(Error::AccessDenied {
                registry: self.host.clone(),
                repository: repo.to_owned(),
            });
        }
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self
                .status_error(&format!("POST blob upload for {digest}"), resp)
                .await);
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::invalid("blob upload answer", "no Location header"))?;
        let base =
            Url::parse(&self.base).map_err(|e| Error::invalid("registry URL", e.to_string()))?;
        let mut put_url = base
            .join(location)
            .map_err(|e| Error::invalid("upload Location", e.to_string()))?;
        put_url
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let mut req = self
            .http
            .request(Method::PUT, put_url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size.to_string())
            .body(body);
        if let Some(h) = self.auth_header(&Self::scope(repo, Access::Push)) {
            req = req.header(AUTHORIZATION, h);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            StatusCode::UNAUTHORIZED => Err(self.auth_failed()),
            _ => Err(self.status_error(&format!("PUT blob {digest}"), resp).await),
        }
    }

    /// Uploads a small in-memory blob unless the repository has it already.
    pub async fn push_bytes(&self, repo: &str, data: Bytes) -> Result<Digest> {
        let digest = Digest::of(&data);
        if !self.has_blob(repo, &digest).await? {
            let size = data.len() as u64;
            self.upload_blob(repo, &digest, size, reqwest::Body::from(data))
                .await?;
        }
        Ok(digest)
    }

    /// Stores a manifest under a tag (or digest). Returns the manifest's digest.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest> {
        let digest = Digest::of(&bytes);
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(repo, Access::Push, || {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::OK | StatusCode::ACCEPTED => Ok(digest),
            StatusCode::FORBIDDEN => Err(Error::AccessDenied {
                registry: self.host.clone(),
                repository: repo.to_owned(),
            }),
            _ => Err(self
                .status_error(&format!("PUT manifest {repo}:{reference}"), resp)
                .await),
        }
    }
}

/// Reads a response body, refusing more than `limit` bytes.
async fn read_limited(resp: Response, limit: u64, host: &str, what: &str) -> Result<Vec<u8>> {
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(Error::TooLarge {
            what: what.to_owned(),
            limit,
        });
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Transport {
            registry: host.to_owned(),
            source: e,
        })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: what.to_owned(),
                limit,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads the whole of a PEM CA file for [`RegistryOptions::extra_ca_file`] up front, so a bad path
/// fails before any network traffic.
pub fn check_ca_file(path: &Path) -> Result<()> {
    tls_config(&RegistryOptions {
        extra_ca_file: Some(path.to_owned()),
        only_extra_ca: true,
        ..Default::default()
    })
    .map(|_| ())
}
