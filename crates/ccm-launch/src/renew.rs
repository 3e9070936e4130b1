//! Certificate renewal.
//!
//! Before it `exec`s the application, the launcher starts a copy of itself as the **renewal
//! process** (`ccm-launch --ccm-renewer=PID ...`, stdin and stdout closed, stderr shared). The
//! application keeps the launcher's pid, so the renewer is the application's child and lives in
//! its container; it exits when its parent is gone (it checks every few seconds).
//!
//! For each certificate of the manifest the renewer reads the installed certificate and sleeps
//! until two thirds of its validity period have passed, then re-verifies the manifest, the
//! SIGSTRUCT and every trusted file (a renewed certificate vouches for the file system as it is
//! now), creates a **fresh key**, takes a **fresh nonce** from the node agent, gets a new quote
//! binding both, asks the node agent, checks the chain as at start, and atomically replaces key
//! and certificate (key first). Applications pick the new files up by re-reading them (most TLS
//! servers can be told to reload; otherwise they keep serving the old certificate until
//! restarted, which is still valid for the last third of its life).
//!
//! A failed attempt is retried with backoff (30 s doubling to 10 min) until it works; a trusted
//! file that no longer verifies stops the renewer for good, with a message: the certificate then
//! expires, which is the point.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::certs;
use crate::config::Config;
use crate::error::LaunchError;
use crate::{Issuance, fmt_time, log, unix_now, verify};

/// Longest single sleep, so a vanished parent is noticed.
const WAKE_EVERY: Duration = Duration::from_secs(5);
/// First retry delay after a failed renewal.
const FIRST_RETRY: i64 = 30;
/// Longest retry delay.
const MAX_RETRY: i64 = 600;
/// Shortest time between two renewals of one certificate (a CA that backdates short-lived
/// certificates must not make the renewer spin).
const MIN_INTERVAL: i64 = 10;

/// The launcher binary, to start the renewer from.
fn self_exe(cfg: &Config, argv0: Option<&OsString>) -> PathBuf {
    if let Ok(p) = std::env::current_exe()
        && p.is_file()
    {
        return p;
    }
    if let Some(a) = argv0 {
        let p = PathBuf::from(a);
        if p.is_absolute() && p.is_file() {
            return p;
        }
    }
    cfg.in_root(ccm_enclave::LAUNCHER_PATH)
}

/// Starts the renewal process for this (soon to be the application's) pid.
pub fn spawn(cfg: &Config, argv0: Option<&OsString>) -> std::io::Result<u32> {
    let pid = std::process::id();
    let child = Command::new(self_exe(cfg, argv0))
        .args(cfg.renewer_args(pid))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(child.id())
}

fn parent_alive(parent: u32) -> bool {
    rustix::process::getppid().is_some_and(|p| p.as_raw_nonzero().get().cast_unsigned() == parent)
}

/// When the installed certificate of request `i` is due (Unix seconds); now when it cannot be
/// read.
fn due(cfg: &Config, req: &ccm_enclave::CertificateRequest) -> i64 {
    let path = cfg.in_root(&req.cert_path);
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|pem| certs::check(&pem, &req.domain, None).ok())
        .map_or(0, |c| c.renew_at())
}

/// The renewal process: runs until the parent is gone or a trusted file no longer verifies.
/// Returns the error that stopped it, if any.
pub fn run(cfg: &Config, parent: u32) -> Result<(), LaunchError> {
    // The manifest's certificate list, and who owns the files.
    let first = verify(cfg)?;
    let requests = first.enclave.manifest.certificates.clone();
    let owner = crate::exec::target_owner(&cfg.root, &first.enclave.manifest)?;
    drop(first);
    if requests.is_empty() {
        return Ok(());
    }
    let mut retry: Vec<Option<(i64, i64)>> = vec![None; requests.len()];
    let mut floor: Vec<i64> = vec![0; requests.len()];
    loop {
        if !parent_alive(parent) {
            return Ok(());
        }
        let now = unix_now();
        let next: Option<(usize, i64)> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let at = match retry.get(i).copied().flatten() {
                    Some((at, _)) => at,
                    None => due(cfg, r),
                };
                (i, at.max(floor.get(i).copied().unwrap_or(0)))
            })
            .min_by_key(|(_, at)| *at);
        let Some((i, at)) = next else { return Ok(()) };
        if at > now {
            let wait = u64::try_from(at - now).unwrap_or(0);
            std::thread::sleep(Duration::from_secs(wait).min(WAKE_EVERY));
            continue;
        }
        let Some(req) = requests.get(i) else {
            return Ok(());
        };
        log(&format!("renewing the certificate for {}", req.domain));
        let attempt = verify(cfg).and_then(|v| Issuance::new(cfg, &v.enclave).obtain(req, owner));
        match attempt {
            Ok(issued) => {
                if let Some(slot) = retry.get_mut(i) {
                    *slot = None;
                }
                if let Some(f) = floor.get_mut(i) {
                    *f = unix_now() + MIN_INTERVAL;
                }
                log(&format!(
                    "renewed the certificate for {} (valid until {}, next renewal at {})",
                    req.domain,
                    fmt_time(issued.not_after),
                    fmt_time(issued.renew_at())
                ));
            }
            Err(
                e @ (LaunchError::TrustedFile { .. }
                | LaunchError::Manifest { .. }
                | LaunchError::Sigstruct { .. }),
            ) => {
                log(&format!(
                    "error: renewal stopped: {e}; the certificates will not be renewed"
                ));
                return Err(e);
            }
            Err(e) => {
                let delay = retry
                    .get(i)
                    .copied()
                    .flatten()
                    .map_or(FIRST_RETRY, |(_, d)| (d * 2).min(MAX_RETRY));
                log(&format!(
                    "renewal of the certificate for {} failed: {e}; retrying in {delay} s",
                    req.domain
                ));
                if let Some(slot) = retry.get_mut(i) {
                    *slot = Some((unix_now() + delay, delay));
                }
            }
        }
    }
}
