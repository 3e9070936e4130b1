//! Image conversion as a background job (DESIGN.md sections 7 and 8, issue 6 item 4).
//!
//! `POST /v1/builds` with a conversion request records the image (with empty MRENCLAVE and
//! MRSIGNER) and queues a job in the same transaction (`service::conversions::request`). Workers ([`worker`]) claim
//! queued jobs from the database, convert the app's input image with `ccm_image::convert`
//! using the app's settings as they were at request time and the account's enclave signing key,
//! push the result, read it back from the registry to check it, then record the digest, size and
//! enclave identity and open the BUILD_WHITELIST task in one transaction.
//!
//! Decisions an operator should know:
//!
//! - **Where jobs live.** In the database, not in memory: every replica sharing a PostgreSQL
//!   database serves the same queue, and a claim is atomic (see `ccm_store`'s conversions
//!   module). Each replica runs at most `conversion_workers` jobs at once (0: none, for
//!   API-only replicas); it looks for work when a job is queued through it, when one of its jobs
//!   ends, and every few seconds (jobs queued through other replicas).
//! - **Restarts: jobs are re-queued.** Conversion is reproducible (same input and settings give
//!   the same digest and MRENCLAVE) and pushing again is harmless, so a job interrupted by a
//!   manager restart or crash is run again from the start, up to [`MAX_ATTEMPTS`] starts in all;
//!   after that it FAILS with the reason "interrupted by manager restart (after 3 attempts)", so
//!   an image that crashes the manager cannot crash it forever. A manager that stops gracefully
//!   gives its running jobs back at once (the attempt is not counted). Interrupted jobs are found
//!   (a) at start: on SQLite every RUNNING job (one manager process owns an SQLite database), on
//!   PostgreSQL those this manager instance had claimed (the instance id is kept in
//!   `<data_dir>/manager-id`); (b) on every poll: RUNNING jobs whose heartbeat (written with the
//!   progress every second) is older than [`LEASE_SECS`], i.e. whose replica died.
//! - **Credentials.** Registry credentials from the request are sealed with the master key
//!   (AES-256-GCM, bound to the image id) in the job row, opened by the worker only, and deleted
//!   when the job SUCCEEDS or FAILS. They are never logged, never written to the job log or the
//!   audit log (which only records which credentials were given), never returned, and scrubbed
//!   from failure reasons. They are per job rather than a stored per-account registry resource:
//!   nothing outlives the job that needs it. Docker's model applies to defaults: the output
//!   credentials are used for the input too when both images are on the same registry host.
//! - **Signing key.** One RSA-3072 (e = 3) key per account, generated on the first conversion,
//!   sealed with the master key (bound to the account id), so MRSIGNER is stable per account.
//!   Two replicas generating at once keep the first key stored.
//! - **Cancellation.** Deleting an image deletes its job; the worker notices at its next
//!   heartbeat and stops.
//! - **Timeouts.** A job running longer than `conversion_timeout_secs` FAILS.

pub(crate) mod progress;
mod worker;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::Error;

pub use worker::spawn;

/// How many times a job is started before an interruption fails it.
pub const MAX_ATTEMPTS: i64 = 3;
/// A RUNNING job whose heartbeat is older than this (seconds) is treated as interrupted.
pub const LEASE_SECS: i64 = 60;

/// The part of the conversion service that request handlers use: the instance id and a way to
/// wake the workers.
#[derive(Debug, Clone)]
pub struct Queue {
    instance: Arc<str>,
    wake: Arc<Notify>,
}

impl Queue {
    /// A queue handle for manager instance `instance`.
    pub fn new(instance: impl Into<Arc<str>>) -> Self {
        Self {
            instance: instance.into(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// This manager instance's id (recorded on the jobs it claims).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Wakes the workers: a job was queued or a worker became free.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }
}

/// The manager instance id kept in `<data_dir>/manager-id` (created on first start), so that a
/// restarted manager recognises the jobs it had claimed before.
pub fn instance_id(data_dir: &Path) -> Result<String, Error> {
    let path = data_dir.join("manager-id");
    let io = |e| Error::Io {
        path: path.clone(),
        source: e,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if uuid::Uuid::try_parse(id).is_err() {
                return Err(Error::Config {
                    field: "data_dir".into(),
                    message: format!("{} does not hold a UUID", path.display()),
                });
            }
            Ok(id.to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let id = uuid::Uuid::new_v4().to_string();
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, format!("{id}\n")).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = instance_id(&dir.path().join("d")).unwrap();
        let b = instance_id(&dir.path().join("d")).unwrap();
        assert_eq!(a, b);
        std::fs::write(dir.path().join("d/manager-id"), "nonsense").unwrap();
        let e = instance_id(&dir.path().join("d")).unwrap_err().to_string();
        assert!(e.contains("manager-id") && e.contains("UUID"), "{e}");
    }
}
