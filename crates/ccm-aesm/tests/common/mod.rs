//! Shared helpers of the daemon tests: a simulated platform in a tempdir, a daemon on a real
//! socket in its own runtime, enclave REPORTs from the platform secret the daemon publishes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use ccm_aesm::Error;
use ccm_aesm::server::{
    Backend, ForwardBackend, SIM_CPU_KEY_FILE, Server, ServerConfig, SimBackend,
};
use ccm_attest::sim::{EnclaveIdentity, PlatformOptions, SimCpu};
use ccm_attest::{Collateral, Verifier};
use ccm_sgx::{AttributeFlags, Attributes, Measurement, Report, ReportData, TargetInfo};
use tempfile::TempDir;

/// Creation and verification time of the test platforms (fixed: tests do not read the clock).
pub const NOW: u64 = 1_750_000_000;

/// A simulated platform made with the ccm-attest API (what `ccm sim init` does).
pub struct Platform {
    pub dir: TempDir,
}

impl Platform {
    pub fn new() -> Self {
        let dir = TempDir::new().unwrap();
        ccm_attest::sim::init(dir.path(), &PlatformOptions::new(NOW)).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn verifier(&self) -> (Verifier, Collateral) {
        let root = ccm_attest::sim::load_root(self.path()).unwrap();
        let verifier = Verifier::new(ccm_attest::TrustRoots::empty().with(root));
        (
            verifier,
            ccm_attest::sim::load_collateral(self.path()).unwrap(),
        )
    }
}

/// A daemon serving a socket from its own runtime thread; stopped (gracefully) on drop.
pub struct Daemon {
    pub socket: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

impl Daemon {
    /// Binds `config` with the backend made by `backend` and serves it until dropped.
    pub fn start<B: Backend>(
        config: ServerConfig,
        backend: impl FnOnce() -> Result<B, Error> + Send + 'static,
    ) -> Result<Self, Error> {
        let socket = config.socket.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let server = match backend().and_then(|b| Server::bind(config, b)) {
                    Ok(s) => s,
                    Err(e) => {
                        let message = e.to_string();
                        ready_tx.send(Err(e)).ok();
                        return Err(Error::Setup(message));
                    }
                };
                ready_tx.send(Ok(())).ok();
                server
                    .run(async {
                        stop_rx.await.ok();
                    })
                    .await
            })
        });
        ready_rx.recv().unwrap()?;
        Ok(Self {
            socket,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// A simulated daemon for `platform` on `socket` (also publishes the platform secret).
    pub fn sim(platform: &Platform, config: ServerConfig) -> Self {
        let dir = platform.path().to_path_buf();
        let socket_dir = config.socket.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(&socket_dir).unwrap();
        ccm_aesm::server::write_platform_secret(&dir, &socket_dir).unwrap();
        Self::start(config, move || SimBackend::open(&dir)).unwrap()
    }

    /// A forwarding daemon on `socket` relaying to `upstream`.
    pub fn forward(config: ServerConfig, upstream: PathBuf, timeout: Duration) -> Self {
        Self::start(config, move || {
            Ok(ForwardBackend::new(upstream).with_timeout(timeout))
        })
        .unwrap()
    }

    /// Stops the daemon and returns how `run` ended.
    pub fn stop(mut self) -> Result<(), Error> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), Error> {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// A config for a socket in `dir` with short timeouts.
pub fn config(dir: &Path) -> ServerConfig {
    ServerConfig {
        socket: dir.join("aesm.socket"),
        read_timeout: Duration::from_millis(500),
        write_timeout: Duration::from_secs(2),
        shutdown_grace: Duration::from_secs(2),
        ..ServerConfig::default()
    }
}

/// An application enclave's identity.
pub fn app_identity(tag: u8) -> EnclaveIdentity {
    EnclaveIdentity {
        mr_enclave: Measurement([tag; 32]),
        mr_signer: Measurement([0x5a; 32]),
        attributes: Attributes::new(AttributeFlags::INIT | AttributeFlags::MODE64BIT, 0x3),
        isv_prod_id: 7,
        isv_svn: 3,
        ..EnclaveIdentity::default()
    }
}

/// The CPU a simulated enclave builds from the secret published next to the socket.
pub fn cpu_from_socket_dir(socket: &Path) -> SimCpu {
    let secret = std::fs::read(socket.parent().unwrap().join(SIM_CPU_KEY_FILE)).unwrap();
    SimCpu::new(secret.try_into().unwrap())
}

/// A REPORT of `identity` for `target` carrying `data`.
pub fn report(
    cpu: &SimCpu,
    target: &TargetInfo,
    identity: &EnclaveIdentity,
    data: [u8; 64],
) -> Report {
    cpu.ereport(target, identity, &ReportData(data))
}
