//! The agent's state directory: identity (node key, certificates, manager pin), pending
//! issuance requests and the certificates handed out (running app instances).
//!
//! Layout (directory mode 0700):
//!
//! | file | content |
//! |---|---|
//! | `identity.json` | node id, manager URL and pin, node certificate, zone CA ([`Identity`]) |
//! | `node.key` | the node's P-256 private key, PKCS#8 PEM, mode 0600 |
//! | `pending/<task_id>.json` | an issuance request not finished yet ([`PendingTask`]) |
//! | `issued.json` | task ids and expiry of certificates handed out ([`Issued`]) |
//!
//! Every write goes to a temporary file that is synced and renamed over the old one, so a crash
//! leaves either the old or the new content.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::Error;

/// The enrolled node's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Node id.
    pub node_id: Uuid,
    /// Node name.
    pub name: String,
    /// Manager base URL.
    pub manager: String,
    /// SHA-256 of the manager's TLS certificate (hex), from the join token.
    pub manager_fingerprint: Option<String>,
    /// The node certificate (PEM).
    pub certificate: String,
    /// The zone CA certificate (PEM).
    pub ca_certificate: String,
    /// Heartbeat interval the manager asked for (the zone's `node_refresh_interval`).
    pub heartbeat_interval_secs: u64,
    /// Renew the node certificate when less than this percentage of its validity is left (the
    /// zone's `node_renewal_threshold`).
    #[serde(default = "default_renewal_threshold")]
    pub renewal_threshold_percent: u32,
    /// Whether the platform is simulated.
    pub simulated: bool,
}

/// The renewal threshold of identities saved before zones had one (and of managers that do not
/// send it): renewal when a third of the validity is left.
pub fn default_renewal_threshold() -> u32 {
    33
}

/// An issuance request kept until it is finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTask {
    /// Task id.
    pub task_id: Uuid,
    /// The CSR (PEM).
    pub csr: String,
    /// The quote (base64).
    pub quote: String,
    /// Whether the manager has acknowledged it.
    pub accepted: bool,
    /// Whether a file of it may exist in the state directory (always so for one read from
    /// there). Most requests are decided on their first submission and never written.
    #[serde(skip_serializing, default = "on_disk")]
    pub stored: bool,
}

fn on_disk() -> bool {
    true
}

/// Certificates handed out through this agent (running application instances).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// Task id and certificate expiry (Unix seconds).
    pub tasks: Vec<(Uuid, i64)>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes `bytes` to `path` atomically with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

impl StateDir {
    /// Opens (creating) a state directory with mode 0700.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir.join("pending")).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The identity, if the node enrolled.
    pub fn identity(&self) -> Result<Option<(Identity, Zeroizing<String>)>, Error> {
        let path = self.dir.join("identity.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let id: Identity = serde_json::from_str(&text).map_err(|e| Error::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let key_path = self.dir.join("node.key");
        let key = Zeroizing::new(std::fs::read_to_string(&key_path).map_err(io(&key_path))?);
        Ok(Some((id, key)))
    }

    /// Saves the identity and the node key (key first: a crash in between leaves an identity-less
    /// key, which the next start ignores and replaces by enrolling).
    pub fn save_identity(&self, id: &Identity, key_pem: &str) -> Result<(), Error> {
        write_atomic(&self.dir.join("node.key"), key_pem.as_bytes(), 0o600)?;
        let json = serde_json::to_vec_pretty(id).map_err(|e| Error::State {
            path: self.dir.join("identity.json"),
            reason: e.to_string(),
        })?;
        write_atomic(&self.dir.join("identity.json"), &json, 0o600)
    }

    fn pending_path(&self, task_id: Uuid) -> PathBuf {
        self.dir.join("pending").join(format!("{task_id}.json"))
    }

    /// Keeps a pending request.
    pub fn save_pending(&self, t: &PendingTask) -> Result<(), Error> {
        let json = serde_json::to_vec(t).map_err(|e| Error::State {
            path: self.pending_path(t.task_id),
            reason: e.to_string(),
        })?;
        write_atomic(&self.pending_path(t.task_id), &json, 0o600)
    }

    /// Forgets a finished request.
    pub fn remove_pending(&self, task_id: Uuid) {
        let _ = std::fs::remove_file(self.pending_path(task_id));
    }

    /// The pending requests (unreadable files are skipped with a warning).
    pub fn pending(&self) -> Vec<PendingTask> {
        let dir = self.dir.join("pending");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<PendingTask>(&b).ok())
            {
                Some(t) => out.push(t),
                None => {
                    tracing::warn!(path = %p.display(), "skipping an unreadable pending request")
                }
            }
        }
        out
    }

    /// The certificates handed out.
    pub fn issued(&self) -> Issued {
        std::fs::read(self.dir.join("issued.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves the certificates handed out.
    pub fn save_issued(&self, issued: &Issued) -> Result<(), Error> {
        let json = serde_json::to_vec(issued).map_err(|e| Error::State {
            path: self.dir.join("issued.json"),
            reason: e.to_string(),
        })?;
        write_atomic(&self.dir.join("issued.json"), &json, 0o600)
    }
}
