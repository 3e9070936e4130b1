//! The ccm node agent: enrollment, the local node-agent API and the manager link.
//!
//! Design:
//! - **Enrollment once.** On first start the agent enrolls with a join token ([`manager::enroll`]):
//!   a fresh P-256 node key, a nonce from the manager, a quote through the quote helper whose
//!   REPORTDATA binds SHA-256(node SubjectPublicKeyInfo DER ‖ nonce), and the platform's
//!   collateral. The node certificate, key and manager pin go to the state directory
//!   ([`state`]); later starts reuse them and never enroll again.
//! - **Manager link.** Mutual TLS with the node certificate, pinned to the manager certificate
//!   named by the join token. Heartbeats report the running application instances (certificates
//!   handed out and still valid); failures back off exponentially (1 s to 60 s,
//!   `reconnect_delay`) and recover by themselves. The node certificate is renewed with a new
//!   key when two thirds of its life have passed.
//! - **Local API** ([`api`], `http://NODE:9092/v1/`), compatible with the node-agent API that
//!   enclave applications use, plus the quote-based issuance the launcher uses and the fresh
//!   issuance nonces its quotes carry ([`nonces`]: a pool refilled from the manager in
//!   batches). Sizes are capped and malformed input refused before anything is forwarded; the
//!   listener caps connections and read times ([`LocalApiLimits`]). The agent forwards
//!   requests with its node identity; the manager decides. Requests the manager has not
//!   finished (pending approval, or the manager unreachable) are kept in the state directory and
//!   retried, so neither a manager restart nor an agent restart loses them. Bad input yields a
//!   DENIED or FAILED task with a reason, never a 5xx. Requests that arrive together travel to
//!   the manager together ([`batch`]).
#![deny(missing_docs)]

pub mod api;
mod batch;
pub mod manager;
pub mod nonces;
pub mod quoting;
mod serve;
pub mod state;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use ccm_api::certificates::{CertificateTask, IssueStatus};
use ccm_api::nodes::{HeartbeatRequest, IssuanceNonce, MAX_RUNNING_APPS, RunningApp};
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

use crate::batch::Batcher;
use crate::manager::{CallError, ManagerClient};
use crate::nonces::{NoncePool, PoolSettings, RefillOutcome};
use crate::quoting::Quoter;
use crate::state::{Identity, PendingTask, StateDir};

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
    /// The state directory could not be read or written.
    #[error("state {}: {reason}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The quote helper failed.
    #[error("quote helper: {0}")]
    Aesm(String),
    /// No simulated platform secret: on hardware the agent would need its own enclave.
    #[error(
        "cannot make the agent's REPORT: the simulated platform secret {} is not readable ({reason}); \
         on SGX hardware the agent needs a provisioning enclave, which this build does not include",
        path.display()
    )]
    NoPlatformSecret {
        /// Where the secret was looked for.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
    /// TLS or key setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// Enrollment was refused or failed.
    #[error("enrollment failed: {0}")]
    Enroll(String),
    /// The local API could not listen.
    #[error("listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Settings of [`Agent::start`].
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Manager base URL (`https://HOST:PORT`).
    pub manager: String,
    /// Join token (needed for the first start only).
    pub join_token: Option<String>,
    /// Node name.
    pub name: String,
    /// Local API address.
    pub listen: SocketAddr,
    /// AESM socket of the quote helper.
    pub aesm_socket: PathBuf,
    /// The simulated platform secret (default: `ccm-sim-cpu.key` next to the socket).
    pub sim_cpu_key: Option<PathBuf>,
    /// State directory.
    pub state_dir: PathBuf,
    /// Allow a plain-HTTP manager.
    pub insecure_http_manager: bool,
    /// The platform's collateral file (`QuoteCollateralV3` JSON) to upload at enrollment.
    pub collateral: Option<PathBuf>,
    /// IP address to report (default: the local API address).
    pub ipaddress: Option<String>,
    /// Limits of the local API's listener.
    pub limits: LocalApiLimits,
}

/// Limits of the local API (`ccm agent --max-connections`, `--body-read-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalApiLimits {
    /// Most connections served at once; further clients wait until one closes.
    pub max_connections: usize,
    /// Longest time a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Longest time a client may take to send a request's body.
    pub body_read_timeout: Duration,
}

impl Default for LocalApiLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A task as the agent knows it.
#[derive(Debug, Clone)]
struct LocalTask {
    view: CertificateTask,
    pending: Option<PendingTask>,
}

/// Finished tasks remembered locally, the newest; older ones are forgotten one at a time (the
/// manager still answers for them). A finished task holds its certificate chain, ~10 KB.
const MAX_FINISHED_TASKS: usize = 2_048;

/// The tasks this agent answers for without asking the manager: every unfinished one, and the
/// last [`MAX_FINISHED_TASKS`] finished ones.
#[derive(Default)]
struct LocalTasks {
    by_id: HashMap<Uuid, LocalTask>,
    /// Finished task ids, oldest first (an id finished twice is listed twice).
    finished: VecDeque<Uuid>,
}

impl LocalTasks {
    fn insert(&mut self, task: LocalTask) {
        let id = task.view.task_id;
        if task.view.task_status.is_final() {
            self.finished.push_back(id);
        }
        self.by_id.insert(id, task);
        while self.finished.len() > MAX_FINISHED_TASKS {
            if let Some(old) = self.finished.pop_front()
                && self
                    .by_id
                    .get(&old)
                    .is_some_and(|t| t.view.task_status.is_final())
            {
                self.by_id.remove(&old);
            }
        }
    }

    fn get(&self, id: &Uuid) -> Option<&LocalTask> {
        self.by_id.get(id)
    }
}

/// The running agent's shared state.
pub struct AgentInner {
    state: StateDir,
    identity: RwLock<Identity>,
    key_pem: RwLock<zeroize::Zeroizing<String>>,
    client: RwLock<ManagerClient>,
    pin: Option<[u8; 32]>,
    insecure_http: bool,
    quoter: Quoter,
    tasks: Mutex<LocalTasks>,
    /// Quotes of attested keys (`/v1/enclave/attest`), by SHA-256 of the key's SPKI.
    attested: Mutex<HashMap<[u8; 32], Vec<u8>>>,
    /// Certificates handed out and their expiry, by task id (saved as [`state::Issued`]).
    issued: Mutex<HashMap<Uuid, i64>>,
    issued_dirty: std::sync::atomic::AtomicBool,
    batcher: Batcher,
    /// Issuance nonces ready for local workloads.
    nonces: Arc<NoncePool>,
    limits: LocalApiLimits,
}

impl std::fmt::Debug for AgentInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").finish_non_exhaustive()
    }
}

/// A handle to the running agent.
pub type Agent = Arc<AgentInner>;

/// A running agent with its local API.
#[derive(Debug)]
pub struct RunningAgent {
    /// The agent.
    pub agent: Agent,
    /// The local API's address.
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningAgent {
    /// Stops the local API and the background loops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

impl AgentInner {
    /// The node id.
    pub fn node_id(&self) -> Uuid {
        self.identity.read().map(|i| i.node_id).unwrap_or_default()
    }

    fn client(&self) -> Option<ManagerClient> {
        self.client.read().ok().map(|c| c.clone())
    }

    /// The node certificate (PEM).
    pub fn node_certificate(&self) -> String {
        self.identity
            .read()
            .map(|i| i.certificate.clone())
            .unwrap_or_default()
    }

    /// The node key (PKCS#8 PEM).
    fn key_pem(&self) -> zeroize::Zeroizing<String> {
        self.key_pem
            .read()
            .map(|k| k.clone())
            .unwrap_or_else(|_| zeroize::Zeroizing::new(String::new()))
    }

    fn remember(&self, view: CertificateTask, pending: Option<PendingTask>) {
        if let Ok(mut m) = self.tasks.lock() {
            m.insert(LocalTask { view, pending });
        }
    }

    fn local(&self, task_id: Uuid) -> Option<LocalTask> {
        self.tasks
            .lock()
            .ok()
            .and_then(|m| m.get(&task_id).cloned())
    }

    /// Notes a certificate handed out; `not_after` is its expiry when the manager said so.
    fn record_success(&self, view: &CertificateTask, not_after: Option<i64>) {
        let Some(pem) = &view.certificate else { return };
        let expiry = not_after.unwrap_or_else(|| {
            // The leaf is the chain's first certificate (rustls' PEM reader: the `pem` crate's
            // parser cost more than the X.509 parse here).
            use rustls_pki_types::pem::PemObject as _;
            rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
                .ok()
                .and_then(|der| {
                    x509_parser::parse_x509_certificate(&der)
                        .ok()
                        .map(|(_, c)| c.validity().not_after.timestamp())
                })
                .unwrap_or(0)
        });
        if let Ok(mut issued) = self.issued.lock() {
            issued.insert(view.task_id, expiry);
        }
        // Saved by the background loop: losing the last seconds of this list only delays the
        // reporting of running instances, and an fsync per issuance would cap throughput.
        self.issued_dirty
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Forgets expired certificates and saves the list when it changed.
    fn save_issued_if_dirty(&self) {
        let now = unix_now();
        if let Ok(mut issued) = self.issued.lock() {
            let before = issued.len();
            issued.retain(|_, exp| *exp > now);
            if issued.len() != before {
                self.issued_dirty
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if self
            .issued_dirty
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            let snapshot = state::Issued {
                tasks: self
                    .issued
                    .lock()
                    .map(|i| i.iter().map(|(t, exp)| (*t, *exp)).collect())
                    .unwrap_or_default(),
            };
            if let Err(e) = self.state.save_issued(&snapshot) {
                tracing::warn!(error = %e, "cannot save the issued certificates");
                self.issued_dirty
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Writes a request to the state directory (a warning when that fails: it is still
    /// remembered in memory and retried while the agent runs).
    fn keep(&self, p: &mut PendingTask) {
        match self.state.save_pending(p) {
            Ok(()) => p.stored = true,
            Err(e) => tracing::warn!(error = %e, "cannot keep a pending request"),
        }
    }

    /// Forgets a finished request's file, if it has one.
    fn forget(&self, p: &PendingTask) {
        if p.stored {
            self.state.remove_pending(p.task_id);
        }
    }

    /// Applies the manager's answer for a task: remember it, keep or drop the pending file.
    /// `not_after` is the certificate's expiry when the manager gave it.
    fn settle(
        &self,
        mut p: PendingTask,
        view: CertificateTask,
        not_after: Option<i64>,
    ) -> CertificateTask {
        if view.task_status.is_final() {
            self.forget(&p);
            if view.task_status == IssueStatus::Success {
                self.record_success(&view, not_after);
            }
            self.remember(view.clone(), None);
        } else {
            if !p.accepted {
                p.accepted = true;
                self.keep(&mut p);
            }
            self.remember(view.clone(), Some(p));
        }
        view
    }

    fn failed(task_id: Uuid, message: String) -> CertificateTask {
        CertificateTask {
            task_id,
            task_status: IssueStatus::Failed,
            certificate: None,
            message: Some(message),
        }
    }

    /// Submits (or resubmits) a request to the manager.
    async fn submit(&self, p: PendingTask) -> CertificateTask {
        let task_id = p.task_id;
        let p = Arc::new(p);
        let answer = self.batcher.submit(p.clone()).await;
        let mut p = Arc::unwrap_or_clone(p);
        match answer {
            Ok((view, not_after)) => self.settle(p, view, not_after),
            Err(CallError::Unavailable(m)) => {
                self.keep(&mut p);
                let view = CertificateTask {
                    task_id,
                    task_status: IssueStatus::Inprogress,
                    certificate: None,
                    message: Some(format!(
                        "the manager is not reachable ({m}); the request is kept and retried"
                    )),
                };
                self.remember(view.clone(), Some(p));
                view
            }
            Err(e @ CallError::Refused { .. }) => {
                self.forget(&p);
                let view = Self::failed(task_id, e.to_string());
                self.remember(view.clone(), None);
                view
            }
        }
    }

    /// Starts an issuance task for `csr` with `quote` (base64).
    pub async fn issue(&self, csr: String, quote: String) -> CertificateTask {
        let p = PendingTask {
            task_id: Uuid::now_v7(),
            csr,
            quote,
            accepted: false,
            stored: false,
        };
        self.submit(p).await
    }

    /// Records a task decided by the agent itself (no evidence to forward).
    pub fn deny_locally(&self, message: String) -> CertificateTask {
        let view = CertificateTask {
            task_id: Uuid::new_v4(),
            task_status: IssueStatus::Denied,
            certificate: None,
            message: Some(message),
        };
        self.remember(view.clone(), None);
        view
    }

    /// The current state of a task; asks the manager when the task is not finished.
    pub async fn result(&self, task_id: Uuid) -> Option<CertificateTask> {
        let local = self.local(task_id);
        if let Some(t) = &local {
            if t.view.task_status.is_final() {
                return Some(t.view.clone());
            }
            if let Some(p) = &t.pending
                && !p.accepted
            {
                return Some(self.submit(p.clone()).await);
            }
        }
        let client = self.client()?;
        match client.task(task_id).await {
            Ok(view) => {
                let p = local.and_then(|t| t.pending).unwrap_or(PendingTask {
                    task_id,
                    csr: String::new(),
                    quote: String::new(),
                    accepted: true,
                    stored: true,
                });
                Some(self.settle(p, view, None))
            }
            Err(CallError::Refused { status: 404, .. }) => local.map(|t| t.view),
            Err(e) => local.map(|t| {
                let mut v = t.view;
                v.message = Some(format!("{e}; showing the last known state"));
                v
            }),
        }
    }

    /// A fresh issuance nonce for a local workload (`POST /v1/enclave/nonce`): from the pool,
    /// else fetched from the manager. A pool below its low-water mark is refilled in the
    /// background.
    pub async fn nonce(&self) -> Result<IssuanceNonce, CallError> {
        let client = self
            .client()
            .ok_or_else(|| CallError::Unavailable("no manager client".into()))?;
        let nonce = self.nonces.take(&client, unix_now).await?;
        if self.nonces.needs_refill(unix_now()) {
            let pool = self.nonces.clone();
            tokio::spawn(async move {
                if let Err(e) = pool.refill(&client, unix_now).await {
                    tracing::debug!(error = %e, "nonce pool refill failed");
                }
            });
        }
        Ok(nonce)
    }

    /// Keeps the nonce pool above its low-water mark (after a heartbeat went through). A
    /// manager refusing nonces is a warning when it starts and a note when it ends; the
    /// heartbeats in between log it at debug level only.
    async fn refill_nonces(&self) {
        let Some(client) = self.client() else { return };
        match self.nonces.refill_tracked(&client, unix_now).await {
            RefillOutcome::Failed { error, first: true } => tracing::warn!(
                error = %error,
                "cannot fetch issuance nonces; retrying at every heartbeat, logged again when they are available"
            ),
            RefillOutcome::Failed {
                error,
                first: false,
            } => {
                tracing::debug!(error = %error, "still cannot fetch issuance nonces");
            }
            RefillOutcome::Available { recovered: true } => {
                tracing::info!("issuance nonces are available again");
            }
            RefillOutcome::Available { recovered: false } => {}
        }
    }

    /// Remembers the quote of a key attested through `/v1/enclave/attest`.
    fn remember_attested(&self, spki_sha256: [u8; 32], quote: Vec<u8>) {
        if let Ok(mut m) = self.attested.lock() {
            if m.len() >= 10_000 {
                m.clear();
            }
            m.insert(spki_sha256, quote);
        }
    }

    fn attested_quote(&self, spki_sha256: &[u8; 32]) -> Option<Vec<u8>> {
        self.attested
            .lock()
            .ok()
            .and_then(|m| m.get(spki_sha256).cloned())
    }

    async fn retry_pending(&self) {
        for p in self.state.pending() {
            let view = if p.accepted {
                match self.client() {
                    Some(c) => match c.task(p.task_id).await {
                        Ok(v) => Some(self.settle(p.clone(), v, None)),
                        Err(CallError::Refused { status: 404, .. }) => {
                            // The manager never stored it (it failed before committing): resubmit.
                            let mut q = p.clone();
                            q.accepted = false;
                            Some(self.submit(q).await)
                        }
                        Err(_) => None,
                    },
                    None => None,
                }
            } else {
                Some(self.submit(p.clone()).await)
            };
            if let Some(v) = view {
                tracing::debug!(task_id = %v.task_id, status = v.task_status.as_str(), "pending request checked");
            }
        }
    }

    async fn heartbeat(&self) -> Result<(), CallError> {
        let client = self
            .client()
            .ok_or_else(|| CallError::Unavailable("no client".into()))?;
        let (running, valid) = self
            .issued
            .lock()
            .map(|i| running_report(&i, unix_now(), MAX_RUNNING_APPS))
            .unwrap_or_default();
        if valid > running.len() {
            tracing::warn!(
                valid,
                reported = running.len(),
                "more certificates in use than a heartbeat may list; reporting the newest"
            );
        }
        let resp = client
            .heartbeat(&HeartbeatRequest {
                version: Some(env!("CARGO_PKG_VERSION").into()),
                running_apps: running,
            })
            .await?;
        tracing::debug!(status = resp.status.as_str(), "heartbeat");
        // The zone's settings may have changed since enrollment.
        if let Ok(mut id) = self.identity.write() {
            id.heartbeat_interval_secs = resp.heartbeat_interval_secs;
            if let Some(t) = resp.renewal_threshold_percent {
                id.renewal_threshold_percent = t;
            }
        }
        Ok(())
    }

    /// Renews the node certificate when less of its validity is left than the zone's renewal
    /// threshold ([`renewal_due`]).
    async fn maybe_renew(&self) -> Result<bool, Error> {
        let cert_pem = self.node_certificate();
        let block = ::pem::parse(&cert_pem).map_err(|e| Error::Tls(e.to_string()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(block.contents())
            .map_err(|e| Error::Tls(e.to_string()))?;
        let from = cert.validity().not_before.timestamp();
        let to = cert.validity().not_after.timestamp();
        let threshold = self
            .identity
            .read()
            .map(|i| i.renewal_threshold_percent)
            .unwrap_or_else(|_| state::default_renewal_threshold());
        if !renewal_due(from, to, unix_now(), threshold) {
            return Ok(false);
        }
        let name = self
            .identity
            .read()
            .map(|i| i.name.clone())
            .unwrap_or_default();
        let (key, csr) = manager::node_key_and_csr(&name)?;
        let client = self
            .client()
            .ok_or_else(|| Error::Config("no manager client".into()))?;
        let resp = client
            .renew(&csr)
            .await
            .map_err(|e| Error::Enroll(format!("renewal: {e}")))?;
        let mut id = self
            .identity
            .read()
            .map(|i| i.clone())
            .map_err(|_| Error::Config("identity lock poisoned".into()))?;
        id.certificate = resp.certificate;
        id.ca_certificate = resp.ca_certificate;
        let key_pem = key.serialize_pem();
        self.state.save_identity(&id, &key_pem)?;
        let new_client = ManagerClient::node(
            &id.manager,
            self.pin,
            self.insecure_http,
            &id.certificate,
            &key_pem,
        )?;
        if let Ok(mut c) = self.client.write() {
            *c = new_client;
        }
        if let Ok(mut k) = self.key_pem.write() {
            *k = zeroize::Zeroizing::new(key_pem);
        }
        if let Ok(mut i) = self.identity.write() {
            *i = id;
        }
        tracing::info!("node certificate renewed");
        Ok(true)
    }
}

/// Whether a certificate valid from `from` to `to` (Unix seconds) is due for renewal at `now`:
/// less than `threshold_percent` of its validity is left (the threshold is kept within 1-99).
fn renewal_due(from: i64, to: i64, now: i64, threshold_percent: u32) -> bool {
    let validity = i128::from(to.saturating_sub(from).max(0));
    let left = i128::from(to.saturating_sub(now));
    left * 100 < validity * i128::from(threshold_percent.clamp(1, 99))
}

/// The running application instances a heartbeat reports: the certificates still valid at
/// `now`, at most `cap` of them (those expiring last, i.e. the newest), and how many are valid.
fn running_report(issued: &HashMap<Uuid, i64>, now: i64, cap: usize) -> (Vec<RunningApp>, usize) {
    let mut valid: Vec<(i64, Uuid)> = issued
        .iter()
        .filter(|(_, exp)| **exp > now)
        .map(|(t, exp)| (*exp, *t))
        .collect();
    let count = valid.len();
    if count > cap {
        valid.select_nth_unstable_by(cap, |a, b| b.cmp(a));
        valid.truncate(cap);
    }
    let report = valid
        .into_iter()
        .map(|(_, task_id)| RunningApp { task_id })
        .collect();
    (report, count)
}

/// First wait after a failed heartbeat.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Longest wait between two heartbeat attempts while the manager is away.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(60);

/// How long to wait after `failures` consecutive failed heartbeats (at least 1): 1 s, doubling
/// with each further failure, at most 60 s.
fn reconnect_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    FIRST_RECONNECT_DELAY
        .saturating_mul(1u32 << doublings)
        .min(MAX_RECONNECT_DELAY)
}

async fn background(agent: Agent, mut shutdown: watch::Receiver<bool>) {
    let mut failures: u32 = 0;
    let mut next_renew_check = tokio::time::Instant::now();
    loop {
        agent.save_issued_if_dirty();
        let interval = agent
            .identity
            .read()
            .map(|i| Duration::from_secs(i.heartbeat_interval_secs.max(1)))
            .unwrap_or(Duration::from_secs(10));
        let wait = match agent.heartbeat().await {
            Ok(()) => {
                failures = 0;
                agent.refill_nonces().await;
                agent.retry_pending().await;
                if tokio::time::Instant::now() >= next_renew_check {
                    if let Err(e) = agent.maybe_renew().await {
                        tracing::warn!(error = %e, "node certificate renewal failed; will retry");
                    }
                    next_renew_check = tokio::time::Instant::now() + Duration::from_secs(60);
                }
                interval
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = reconnect_delay(failures);
                tracing::warn!(error = %e, retry_in = ?wait, "heartbeat failed");
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => break,
        }
    }
    agent.save_issued_if_dirty();
}

/// Starts the agent: loads its identity or enrolls, then serves the local API and runs the
/// manager link in the background.
pub async fn start(config: AgentConfig) -> Result<RunningAgent, Error> {
    let state = StateDir::open(&config.state_dir)?;
    let quoter = Quoter::new(&config.aesm_socket, config.sim_cpu_key.clone());
    let (identity, key_pem, pin) = match state.identity()? {
        Some((id, key)) => {
            let pin = match &id.manager_fingerprint {
                Some(f) => Some(ccm_pki::parse_fingerprint(f).ok_or_else(|| Error::State {
                    path: state.path().join("identity.json"),
                    reason: "the stored manager fingerprint is not valid".into(),
                })?),
                None => None,
            };
            tracing::info!(node_id = %id.node_id, "using the enrolled identity");
            (id, key, pin)
        }
        None => {
            let token = config.join_token.as_deref().ok_or_else(|| {
                Error::Config(format!(
                    "the node is not enrolled (no identity in {}): give --join-token",
                    config.state_dir.display()
                ))
            })?;
            let collateral = match &config.collateral {
                None => None,
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| Error::State {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                    Some(serde_json::from_str(&text).map_err(|e| Error::State {
                        path: path.clone(),
                        reason: format!("not JSON: {e}"),
                    })?)
                }
            };
            let ip = config
                .ipaddress
                .clone()
                .unwrap_or_else(|| config.listen.ip().to_string());
            let (enrollment, key_pem, pin) = manager::enroll(
                &manager::EnrollParams {
                    manager: &config.manager,
                    token,
                    name: &config.name,
                    ipaddress: &ip,
                    insecure_http: config.insecure_http_manager,
                    collateral,
                },
                &quoter,
            )
            .await?;
            let id = Identity {
                node_id: enrollment.node.node_id,
                name: config.name.clone(),
                manager: config.manager.trim_end_matches('/').to_string(),
                manager_fingerprint: pin.map(hex::encode),
                certificate: enrollment.certificate,
                ca_certificate: enrollment.ca_certificate,
                heartbeat_interval_secs: enrollment.heartbeat_interval_secs,
                renewal_threshold_percent: enrollment
                    .renewal_threshold_percent
                    .unwrap_or_else(state::default_renewal_threshold),
                simulated: enrollment.node.sgx_info.simulated,
            };
            state.save_identity(&id, &key_pem)?;
            tracing::info!(node_id = %id.node_id, status = enrollment.node.status.status.as_str(), "enrolled");
            (id, zeroize::Zeroizing::new(key_pem), pin)
        }
    };
    let client = ManagerClient::node(
        &identity.manager,
        pin,
        config.insecure_http_manager,
        &identity.certificate,
        &key_pem,
    )?;
    let issued = state.issued().tasks.into_iter().collect();
    let agent: Agent = Arc::new_cyclic(|weak: &Weak<AgentInner>| {
        let weak = weak.clone();
        AgentInner {
            state,
            identity: RwLock::new(identity),
            key_pem: RwLock::new(key_pem),
            client: RwLock::new(client),
            pin,
            insecure_http: config.insecure_http_manager,
            quoter,
            tasks: Mutex::new(LocalTasks::default()),
            attested: Mutex::new(HashMap::new()),
            issued: Mutex::new(issued),
            issued_dirty: std::sync::atomic::AtomicBool::new(false),
            batcher: Batcher::start(move || weak.upgrade().and_then(|a| a.client())),
            nonces: Arc::new(NoncePool::new(PoolSettings::default())),
            limits: config.limits,
        }
    });
    for p in agent.state.pending() {
        agent.remember(
            CertificateTask {
                task_id: p.task_id,
                task_status: IssueStatus::Inprogress,
                certificate: None,
                message: Some("kept across an agent restart; being retried".into()),
            },
            Some(p),
        );
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Listen {
            addr: config.listen,
            reason: e.to_string(),
        })?;
    let local_addr = listener.local_addr().map_err(|e| Error::Listen {
        addr: config.listen,
        reason: e.to_string(),
    })?;
    let (shutdown, rx) = watch::channel(false);
    tokio::spawn(background(agent.clone(), rx.clone()));
    let router = api::router(agent.clone());
    let task = tokio::spawn(serve::serve(listener, router, config.limits, rx));
    Ok(RunningAgent {
        agent,
        local_addr,
        shutdown,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_doubles_from_one_second_up_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| reconnect_delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(reconnect_delay(0), Duration::from_secs(1));
        assert_eq!(reconnect_delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn renewal_is_due_when_less_than_the_threshold_is_left() {
        // 100 s of validity, 33 %: due once fewer than 33 s are left.
        assert!(!renewal_due(0, 100, 66, 33));
        assert!(!renewal_due(0, 100, 67, 33));
        assert!(renewal_due(0, 100, 68, 33));
        // A zone renewing early (90 %) and late (5 %).
        assert!(renewal_due(1000, 2000, 1101, 90));
        assert!(!renewal_due(1000, 2000, 1099, 90));
        assert!(!renewal_due(1000, 2000, 1949, 5));
        assert!(renewal_due(1000, 2000, 1951, 5));
        // Expired, and nonsense validity, are due.
        assert!(renewal_due(0, 100, 200, 33));
        assert!(renewal_due(100, 0, 50, 33));
    }

    #[test]
    fn heartbeat_reports_the_newest_valid_certificates_up_to_the_cap() {
        let now = 1_000;
        let issued: HashMap<Uuid, i64> = (0..12i64)
            .map(|i| (Uuid::from_u128(i as u128), now - 2 + i))
            .collect();
        // Expiries now-2 .. now+9: the first three are no longer valid (expiry <= now).
        let (all, valid) = running_report(&issued, now, 100);
        assert_eq!((all.len(), valid), (9, 9));
        let (capped, valid) = running_report(&issued, now, 4);
        assert_eq!(valid, 9);
        let mut ids: Vec<u128> = capped.iter().map(|r| r.task_id.as_u128()).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![8, 9, 10, 11]);
        assert_eq!(running_report(&HashMap::new(), now, 4).0, Vec::new());
    }

    fn task(id: u128, status: IssueStatus) -> LocalTask {
        LocalTask {
            view: CertificateTask {
                task_id: Uuid::from_u128(id),
                task_status: status,
                certificate: None,
                message: None,
            },
            pending: None,
        }
    }

    #[test]
    fn local_tasks_forget_the_oldest_finished_ones_and_keep_unfinished_ones() {
        let mut m = LocalTasks::default();
        m.insert(task(0, IssueStatus::Inprogress));
        // Task 1 finishes after it was first seen unfinished.
        m.insert(task(1, IssueStatus::Inprogress));
        m.insert(task(1, IssueStatus::Success));
        for i in 2..(MAX_FINISHED_TASKS as u128 + 2) {
            m.insert(task(i, IssueStatus::Success));
        }
        let last = MAX_FINISHED_TASKS as u128 + 1;
        assert!(
            m.get(&Uuid::from_u128(1)).is_none(),
            "oldest finished one kept"
        );
        assert!(m.get(&Uuid::from_u128(2)).is_some());
        assert!(m.get(&Uuid::from_u128(last)).is_some());
        assert_eq!(
            m.get(&Uuid::from_u128(0)).map(|t| t.view.task_status),
            Some(IssueStatus::Inprogress),
            "an unfinished task is never forgotten"
        );
        assert_eq!(m.by_id.len(), MAX_FINISHED_TASKS + 1);
        assert_eq!(m.finished.len(), MAX_FINISHED_TASKS);
    }
}
