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

pub mod attested;
pub mod auth;
pub mod clock;
pub mod config;
mod console;
pub mod conversion;
mod error;
pub mod extract;
pub mod metrics;
pub mod node_auth;
mod routes;
pub mod secrets;
pub mod service;
pub mod tls;
mod validate;

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
    pub attest: attested::AttestServices,
    /// Mints and checks issuance nonces (REPORTDATA[32..64] of workloads' quotes).
    pub nonces: service::issuance::nonce::NonceKey,
    /// Node certificates whose zone-CA signature was verified.
    pub node_certs: node_auth::VerifiedCerts,
    /// The image conversion queue (this instance's id, waking the workers).
    pub conversions: conversion::Queue,
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
        let attest = attested::AttestServices::new(&config)?;
        let nonces = service::issuance::nonce::NonceKey::new(
            master_key.derive_hmac_key(service::issuance::nonce::KEY_PURPOSE),
            config.issuance_nonce_ttl_secs,
        );
        let conversions = conversion::Queue::new(conversion::instance_id(&config.data_dir)?);
        Ok(Self(Arc::new(StateInner {
            conversions,
            attest,
            nonces,
            node_certs: node_auth::VerifiedCerts::default(),
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
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::Extension(extract::BodyLimit(limit)))
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
    let state = AppState::new(store, config, clock, master_key, fingerprint)?;
    let router = app(state.clone());
    let (shutdown, rx) = watch::channel(false);
    service::issuance::spawn_background(state.clone(), rx.clone());
    let conversions = conversion::spawn(state.clone(), rx.clone())?;
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server_config));
    let task = tokio::spawn(serve(listener, router, acceptor, rx));
    Ok(RunningManager {
        local_addr,
        fingerprint,
        state,
        shutdown,
        task,
        conversions,
    })
}

async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
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
        tokio::spawn(async move {
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
                        move |mut req: axum::http::Request<hyper::body::Incoming>| {
                            if let Some(p) = &peer_cert {
                                req.extensions_mut().insert(p.clone());
                            }
                            req
                        },
                    ));
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                None => {
                    let service = TowerToHyperService::new(router);
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
