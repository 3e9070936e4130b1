//! The quote-helper daemon: an AESM server on a Unix stream socket.
//!
//! One request per connection, as Intel's aesmd: read a frame (within [`MAX_REQUEST_LEN`] and
//! the read timeout), decode it, answer through the [`Backend`], close. Every connection is
//! logged with the caller's pid, uid and gid from `SO_PEERCRED` (the daemon signs whatever
//! REPORTDATA a valid REPORT carries, so the log is the audit trail), and `allow_uids` can
//! restrict callers.
//!
//! What a client gets for each kind of bad input:
//!
//! | input | answer |
//! |---|---|
//! | length above the cap | parameter error (3) in `UnsupportedRequestResponse` (field 20), then close; the body is never read |
//! | frame cut short (client half-closed) | parameter error (3) in field 20, best effort |
//! | not a protobuf `Request` | parameter error (3) in field 20 |
//! | a message with no request kind we know | service unavailable (30) in field 20 |
//! | silent client | connection closed after the read timeout |
//! | caller uid not allowed | service unavailable (30) in the request's own field |
//!
//! The socket is created with mode 0777 after removing a stale socket file left by a crashed
//! daemon; a socket that a live daemon still answers on is never taken over, and a path that is
//! not a socket is never removed. On shutdown the daemon stops accepting, lets running requests
//! finish (up to a grace period) and removes its socket.

mod backend;
mod forward;
mod service;
mod sim;

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

pub use backend::{Answer, Backend, LocalBackend};
pub use forward::{DEFAULT_UPSTREAM_TIMEOUT, ForwardBackend};
pub use service::{QuoteService, QuotingEnclave};
pub use sim::{SIM_CPU_KEY_FILE, SimBackend, SimEnclave, write_platform_secret};

use crate::frame::{MAX_REQUEST_LEN, tokio_io};
use crate::proto::{Request, Response};
use crate::{AesmError, Error};

/// Settings of the daemon.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The socket path (default [`crate::DEFAULT_SOCKET`]).
    pub socket: PathBuf,
    /// Only these uids may call; `None` lets everyone in (the socket is world-writable, as
    /// aesmd's is).
    pub allow_uids: Option<Vec<u32>>,
    /// Time allowed to receive a whole request frame.
    pub read_timeout: Duration,
    /// Time allowed to send the response.
    pub write_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long shutdown waits for running requests.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(crate::DEFAULT_SOCKET),
            allow_uids: None,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The bound socket file; removed on drop if it is still the one this daemon created.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(socket = %self.path.display(), error = %e, "could not remove socket");
                } else {
                    tracing::info!(socket = %self.path.display(), "socket removed");
                }
            }
            // Replaced by another daemon, or already gone: not ours to remove.
            _ => {}
        }
    }
}

/// Removes a stale socket at `path`, refusing to touch a live one or a non-socket.
fn clear_stale_socket(path: &Path) -> Result<(), Error> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("inspect {}", path.display()), e)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::Setup(format!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        )));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Error::Setup(format!(
            "{} is served by a running daemon; stop it first or choose another --socket",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path)
                .map_err(|e| Error::io(format!("remove stale socket {}", path.display()), e))?;
            tracing::info!(socket = %path.display(), "removed stale socket");
            Ok(())
        }
        Err(e) => Err(Error::io(format!("probe {}", path.display()), e)),
    }
}

/// The AESM daemon, bound and ready to run.
#[derive(Debug)]
pub struct Server<B> {
    config: ServerConfig,
    backend: Arc<B>,
    listener: UnixListener,
    socket_file: SocketFile,
}

impl<B: Backend> Server<B> {
    /// Creates the socket (parent directory included), replacing a stale one, with mode 0777.
    /// Must be called inside a tokio runtime.
    pub fn bind(config: ServerConfig, backend: B) -> Result<Self, Error> {
        let path = config.socket.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        clear_stale_socket(&path)?;
        let listener = UnixListener::bind(&path)
            .map_err(|e| Error::io(format!("bind {}", path.display()), e))?;
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| Error::io(format!("inspect {}", path.display()), e))?;
        let socket_file = SocketFile {
            path: path.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| Error::io(format!("chmod 0777 {}", path.display()), e))?;
        Ok(Self {
            config,
            backend: Arc::new(backend),
            listener,
            socket_file,
        })
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket_file.path
    }

    /// Serves until `shutdown` completes, then stops accepting, waits up to the grace period for
    /// running requests and removes the socket.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let Self {
            config,
            backend,
            listener,
            socket_file,
        } = self;
        let config = Arc::new(config);
        let max = config.max_connections.max(1);
        let permits = Arc::new(Semaphore::new(max));
        tracing::info!(
            socket = %socket_file.path.display(),
            backend = backend.name(),
            allow_uids = ?config.allow_uids,
            "aesmd listening"
        );
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            let backend = Arc::clone(&backend);
            let config = Arc::clone(&config);
            tokio::spawn(async move {
                serve_connection(stream, &*backend, &config).await;
                drop(permit);
            });
        }
        drop(listener);
        drop(socket_file);
        tracing::info!("aesmd stopping; waiting for running requests");
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        if tokio::time::timeout(config.shutdown_grace, permits.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(grace = ?config.shutdown_grace, "requests still running at shutdown");
        }
        tracing::info!("aesmd stopped");
        Ok(())
    }
}

/// Who is calling, from `SO_PEERCRED`.
#[derive(Clone, Copy, Debug)]
struct Peer {
    pid: Option<i32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

async fn serve_connection<B: Backend>(mut stream: UnixStream, backend: &B, config: &ServerConfig) {
    let started = Instant::now();
    let peer = match stream.peer_cred() {
        Ok(c) => Peer {
            pid: c.pid(),
            uid: Some(c.uid()),
            gid: Some(c.gid()),
        },
        Err(e) => {
            tracing::warn!(error = %e, "SO_PEERCRED failed");
            Peer {
                pid: None,
                uid: None,
                gid: None,
            }
        }
    };
    let read = tokio::time::timeout(
        config.read_timeout,
        tokio_io::read_frame(&mut stream, MAX_REQUEST_LEN, "request"),
    )
    .await;
    let raw = match read {
        Ok(Ok(raw)) => raw,
        Err(_) => {
            tracing::warn!(pid = ?peer.pid, uid = ?peer.uid, timeout = ?config.read_timeout, "request not received in time; closing");
            return;
        }
        Ok(Err(Error::Closed { .. })) => {
            tracing::debug!(pid = ?peer.pid, uid = ?peer.uid, "connection closed without a request");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(pid = ?peer.pid, uid = ?peer.uid, error = %e, "bad request frame");
            if matches!(e, Error::FrameTooLarge { .. } | Error::Truncated { .. }) {
                let answer =
                    Answer::from_response(&Response::status_for(None, AesmError::Parameter.code()));
                respond(&mut stream, &answer, config, peer).await;
            }
            return;
        }
    };
    let request = match Request::decode(raw.as_slice()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(pid = ?peer.pid, uid = ?peer.uid, error = %e, len = raw.len(), "request is not an AESM message");
            let answer =
                Answer::from_response(&Response::status_for(None, AesmError::Parameter.code()));
            respond(&mut stream, &answer, config, peer).await;
            return;
        }
    };
    let kind = request.kind.as_ref().map_or("unknown", |k| k.name());
    let allowed = match (&config.allow_uids, peer.uid) {
        (None, _) => true,
        (Some(list), Some(uid)) => list.contains(&uid),
        (Some(_), None) => false,
    };
    let answer = if allowed {
        backend.answer(raw, request).await
    } else {
        tracing::warn!(pid = ?peer.pid, uid = ?peer.uid, gid = ?peer.gid, request = kind, "caller uid not allowed");
        Answer::from_response(&Response::status_for(
            request.kind.as_ref(),
            AesmError::ServiceUnavailable.code(),
        ))
    };
    respond(&mut stream, &answer, config, peer).await;
    tracing::info!(
        pid = ?peer.pid,
        uid = ?peer.uid,
        gid = ?peer.gid,
        request = kind,
        code = answer.code,
        backend = backend.name(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "aesm request"
    );
}

async fn respond(stream: &mut UnixStream, answer: &Answer, config: &ServerConfig, peer: Peer) {
    let write = tokio_io::write_frame(stream, &answer.payload, "response");
    match tokio::time::timeout(config.write_timeout, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(pid = ?peer.pid, uid = ?peer.uid, error = %e, "could not send response")
        }
        Err(_) => {
            tracing::warn!(pid = ?peer.pid, uid = ?peer.uid, "response not taken in time; closing")
        }
    }
}

/// Completes on SIGINT or SIGTERM (the signals an operator or the kubelet sends).
pub async fn shutdown_signal() -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| Error::io("install SIGTERM handler", e))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| Error::io("install SIGINT handler", e))?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
