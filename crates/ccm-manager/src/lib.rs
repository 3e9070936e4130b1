//! The ccm control plane: REST API, web console, authentication, workflows.
//!
//! Layout:
//! - [`app`] builds the axum [`Router`] from an [`AppState`]; tests and the server use the same
//!   function. Routes live in `routes/`, one module per resource, each registering its handlers
//!   with `utoipa-axum` so that the OpenAPI document (`GET /v1/openapi.json`, [`openapi`]) is
//!   generated from the handlers themselves and cannot drift from them. The web console
//!   (`/console`, `console/`) renders HTML pages over the same service functions.
//! - Decisions: [`service`], one module per domain, returning [`service::ServiceError`]; routes
//!   and console pages are adapters over it (DESIGN.md section 12).
//! - Errors: handlers return [`ApiError`]; failures map to statuses in `error.rs` only; request
//!   bodies, paths and queries go through the wrappers in [`extract`], so rejections use the
//!   same error format (`{"code", "message", "field", "errors"}`, see [`ccm_api::ErrorBody`]).
//! - Authentication and roles: [`auth`] (sessions and API keys, per-account roles checked on
//!   every handler through the [`auth::Acct`] extractor).
//! - Persistence: [`ccm_store::Store`] (SQLite or PostgreSQL, same queries).
//! - Secrets: [`secrets`] seals zone CA keys, enclave signing keys and registry credentials with
//!   the master key.
//! - Image conversion: [`conversion`] runs conversions as background jobs kept in the database.
//! - Time: [`clock::Clock`] in the state; nothing reads the system time directly.
//! - [`start`] runs the whole manager: data directory, master key, database, TLS identity,
//!   listener, graceful shutdown.
#![deny(missing_docs)]

pub mod auth;
pub mod clock;
pub mod config;
mod console;
pub mod conversion;
mod error;
pub mod extract;
pub mod mail;
pub mod metrics;
pub mod node_auth;
pub mod ratelimit;
mod routes;
pub mod secrets;
pub mod service;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::Config;
pub use error::{ApiError, ApiResult, Error};
use secrets::MasterKey;

/// Shared state of all handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

/// The contents of [`AppState`].
pub struct StateInner {
    /// Persistence.
    pub store: ccm_store::Store,
    /// Settings.
    pub config: Config,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Seals secrets at rest.
    pub master_key: MasterKey,
    /// Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// SHA-256 of the manager's TLS certificate, when serving HTTPS.
    pub tls_fingerprint: Option<[u8; 32]>,
    /// Quote verification, collateral, zone CAs and certificate issuance.
    pub attest: service::attest::AttestServices,
    /// Mints and checks issuance nonces (REPORTDATA[32..64] of workloads' quotes).
    pub nonces: service::issuance::nonce::NonceKey,
    /// Node certificates whose zone-CA signature was verified.
    pub node_certs: service::node_identity::VerifiedCerts,
    /// The image conversion queue (this instance's id, waking the workers).
    pub conversions: conversion::Queue,
    /// Password hashing (one thread, bounded queue).
    pub passwords: auth::PasswordWorker,
    /// Rate limits of logins and sign-ups.
    pub auth_limits: ratelimit::AuthLimits,
    /// Rate limit per node of the agent-facing routes.
    pub node_limit: ratelimit::NodeLimit,
    /// Rate limit per client address of the PCCS API.
    pub pccs_limit: ratelimit::PccsLimit,
    /// Simulated intermediate CAs and signed zone CRLs.
    pub zone_cas: service::zones::ZoneCaches,
    /// Sends invitation and reset e-mails (SMTP configured).
    pub mailer: Option<mail::Mailer>,
    dummy_hash: String,
}

impl std::ops::Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state.
    pub fn new(
        store: ccm_store::Store,
        config: Config,
        clock: Arc<dyn Clock>,
        master_key: MasterKey,
        tls_fingerprint: Option<[u8; 32]>,
    ) -> Result<Self, Error> {
        let attest = service::attest::AttestServices::new(&config)?;
        let nonces = service::issuance::nonce::NonceKey::new(
            master_key.derive_hmac_key(service::issuance::nonce::KEY_PURPOSE),
            config.issuance_nonce_ttl_secs,
        );
        let conversions = conversion::Queue::new(conversion::instance_id(&config.data_dir)?);
        Ok(Self(Arc::new(StateInner {
            passwords: auth::PasswordWorker::start(config.password_queue_capacity),
            auth_limits: ratelimit::AuthLimits::new(&config),
            node_limit: ratelimit::NodeLimit::new(&config),
            pccs_limit: ratelimit::PccsLimit::new(&config),
            conversions,
            zone_cas: service::zones::ZoneCaches::default(),
            mailer: mail::Mailer::from_config(&config)?,
            attest,
            nonces,
            node_certs: service::node_identity::VerifiedCerts::default(),
            store,
            config,
            clock,
            master_key,
            metrics: metrics::Metrics::new(),
            tls_fingerprint,
            dummy_hash: auth::dummy_hash()?,
        })))
    }
}

/// The API and console router.
pub fn app(state: AppState) -> Router {
    let (router, api) = routes::router().split_for_parts();
    let api = Arc::new(api);
    let limit = state.config.max_body_bytes;
    router
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let api = api.clone();
                async move { axum::Json((*api).clone()) }
            }),
        )
        .merge(console::router(&state))
        .merge(routes::pccs::router())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::Extension(extract::BodyLimit(limit)))
        .layer(axum::Extension(state.node_limit.clone()))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The OpenAPI document, as served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::router().into_openapi()
}

/// A running manager.
#[derive(Debug)]
pub struct RunningManager {
    /// The bound address.
    pub local_addr: SocketAddr,
    /// SHA-256 of the TLS certificate (absent with `insecure_http`).
    pub fingerprint: Option<[u8; 32]>,
    /// The handlers' state.
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    conversions: JoinHandle<()>,
}

impl RunningManager {
    /// `https://ADDR` or `http://ADDR`.
    pub fn base_url(&self) -> String {
        let scheme = if self.fingerprint.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Stops accepting connections, lets requests in flight finish (up to 10 s), closes the
    /// database pool.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        // Running conversions are given back to the queue before the pool closes.
        let _ = self.conversions.await;
        self.state.store.close().await;
    }
}

/// Opens everything the configuration names and starts serving.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<RunningManager, Error> {
    let io = |p: &std::path::Path| {
        let p = p.to_path_buf();
        move |e| Error::Io { path: p, source: e }
    };
    std::fs::create_dir_all(&config.data_dir).map_err(io(&config.data_dir))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(&config.data_dir))?;
    }
    let master_key = MasterKey::load_or_create(&config.master_key_path())?;
    let store = ccm_store::Store::connect(
        &config.database_url(),
        &ccm_store::StoreOptions {
            max_connections: config.db_max_connections,
            zone_defaults: ccm_store::ZoneDefaults {
                node_refresh_interval: i64::try_from(config.node_heartbeat_interval_secs)
                    .unwrap_or(i64::MAX),
                node_renewal_threshold: config.node_renewal_threshold_percent,
            },
            ..Default::default()
        },
    )
    .await?;
    let recorded = store
        .set_meta_if_absent("master_key_id", master_key.id())
        .await?;
    if recorded != master_key.id() {
        return Err(Error::MasterKeyMismatch {
            expected: recorded,
            found: master_key.id().to_string(),
        });
    }
    service::users::ensure_setup_token(&store, &config.data_dir).await?;
    let tls = if config.insecure_http {
        None
    } else {
        Some(tls::load_or_create(&config, clock.now())?)
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Io {
            path: config.listen.to_string().into(),
            source: e,
        })?;
    let local_addr = listener.local_addr().map_err(|e| Error::Io {
        path: "listener".into(),
        source: e,
    })?;
    let fingerprint = tls.as_ref().map(|t| t.fingerprint);
    // An ephemeral port (0) is recorded as the one bound, e.g. for the default public URL.
    let mut config = config;
    if config.listen.port() == 0 {
        config.listen.set_port(local_addr.port());
    }
    let state = AppState::new(store, config, clock, master_key, fingerprint)?;
    let router = app(state.clone());
    let (shutdown, rx) = watch::channel(false);
    service::issuance::spawn_background(state.clone(), rx.clone());
    service::collateral::load_at_start(&state).await;
    service::collateral::spawn_refresher(state.clone(), rx.clone());
    let conversions = conversion::spawn(state.clone(), rx.clone())?;
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server_config));
    let limits = ServeLimits {
        max_connections: state.config.max_connections,
        body_timeout: Duration::from_secs(state.config.request_body_timeout_secs),
    };
    let task = tokio::spawn(serve(listener, router, acceptor, limits, rx));
    Ok(RunningManager {
        local_addr,
        fingerprint,
        state,
        shutdown,
        task,
        conversions,
    })
}

/// Limits of the serve loop.
#[derive(Debug, Clone, Copy)]
struct ServeLimits {
    max_connections: usize,
    body_timeout: Duration,
}

/// A request body that fails once `deadline` passes (a client trickling its body holds a
/// connection and a handler only that long).
struct DeadlineBody<B> {
    inner: B,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// The error of a body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the time allowed")]
pub struct BodyTimeout;

impl<B> hyper::body::Body for DeadlineBody<B>
where
    B: hyper::body::Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|f| f.map_err(Into::into))),
            Poll::Pending => match std::future::Future::poll(this.deadline.as_mut(), cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Puts the peer's address (and its client certificate, if any) into the request and bounds
/// the time its body may take.
fn prepare_request(
    req: axum::http::Request<hyper::body::Incoming>,
    peer: SocketAddr,
    peer_cert: Option<&node_auth::PeerCertificate>,
    body_timeout: Duration,
) -> axum::http::Request<axum::body::Body> {
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(ratelimit::ClientAddr(peer.ip()));
    if let Some(p) = peer_cert {
        parts.extensions.insert(p.clone());
    }
    let body = DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(body_timeout)),
    };
    axum::http::Request::from_parts(parts, axum::body::Body::new(body))
}

async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    loop {
        // At most `max_connections` served at once: further ones wait in the listen backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let body_timeout = limits.body_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            match tls {
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    // Node agents authenticate with a client certificate: hand it to the
                    // handlers (checked per request by `node_auth::NodeCaller`).
                    let peer_cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| node_auth::PeerCertificate(Arc::new(c.as_ref().to_vec())));
                    let service = TowerToHyperService::new(tower::ServiceExt::map_request(
                        router,
                        move |req: axum::http::Request<hyper::body::Incoming>| {
                            prepare_request(req, peer, peer_cert.as_ref(), body_timeout)
                        },
                    ));
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                None => {
                    let service = TowerToHyperService::new(tower::ServiceExt::map_request(
                        router,
                        move |req: axum::http::Request<hyper::body::Incoming>| {
                            prepare_request(req, peer, None, body_timeout)
                        },
                    ));
                    let conn = builder.serve_connection(TokioIo::new(tcp), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
    }
}
