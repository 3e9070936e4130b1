//! The in-image launcher: verifies the enclave image, attests, obtains its certificate and starts
//! the app.
//!
//! `ccm convert` makes `/opt/ccm/bin/ccm-launch` the ENTRYPOINT of every converted image. When the
//! container starts, the launcher, in this order:
//!
//! 1. reads `/opt/ccm/enclave.json` and `/opt/ccm/enclave.sig`, recomputes MRENCLAVE from the
//!    manifest and checks the SIGSTRUCT's signature, ENCLAVEHASH and DEBUG attribute
//!    ([`ccm_enclave::verify_enclave`]);
//! 2. verifies every trusted file and symlink against the manifest, naming the first that
//!    differs ([`ccm_enclave::verify_trusted_files`]);
//! 3. checks the runtime arguments against the manifest;
//! 4. for each certificate request: creates a fresh key and CSR, takes a fresh nonce from the
//!    node agent, builds a REPORT of the enclave identity whose REPORTDATA binds the key and the
//!    nonce, gets it quoted through the AESM socket ([`attest`]), asks the node agent for the
//!    certificate and waits while it is pending ([`agent`]), checks it (the leaf is for the key
//!    and the domain; the chain leads to the zone CA given with `--ccm-zone-ca`), and writes key
//!    (0600) and certificate atomically ([`certs`]);
//! 5. starts the renewal process ([`renew`]), which goes the same way (fresh key, fresh nonce,
//!    new quote) at two thirds of each certificate's lifetime;
//! 6. `exec`s the original entrypoint with the measured environment plus the passthrough
//!    variables ([`exec`]).
//!
//! Any failure stops it with one line on standard error and a distinct exit code
//! ([`LaunchError::exit_code`]). The binary is built statically (`scripts/build-launcher`): no
//! async runtime, no TLS, no NSS.
#![deny(missing_docs)]

pub mod agent;
pub mod attest;
pub mod certs;
pub mod config;
mod error;
pub mod exec;
pub mod keys;
pub mod renew;

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use ccm_enclave::{CertificateRequest, Issuer, VerifiedEnclave, VerifyOptions, VerifyStats};

pub use config::{Config, Mode, QuoteVia};
pub use error::{EXIT_CODES, LaunchError, ManifestProblem};

use attest::Attester;

/// Validity of a self-signed certificate (`issuer: SELF_SIGNED`), in days.
pub const SELF_SIGNED_DAYS: i64 = 90;

/// Prints one `ccm-launch: ` line on standard error.
pub fn log(msg: &str) {
    eprintln!("ccm-launch: {msg}");
}

/// What step 1 and 2 established.
#[derive(Debug)]
pub struct Verified {
    /// The verified manifest and SIGSTRUCT.
    pub enclave: VerifiedEnclave,
    /// File verification counts.
    pub stats: VerifyStats,
    /// Milliseconds spent on the manifest and SIGSTRUCT.
    pub enclave_ms: f64,
    /// Milliseconds spent on the trusted files.
    pub files_ms: f64,
}

fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Steps 1 and 2: the manifest, the SIGSTRUCT and every trusted file.
pub fn verify(cfg: &Config) -> Result<Verified, LaunchError> {
    let t0 = Instant::now();
    let manifest =
        read_limited(&cfg.manifest, ccm_enclave::MAX_MANIFEST_SIZE as u64).map_err(|e| {
            LaunchError::Manifest {
                path: cfg.manifest.clone(),
                source: ManifestProblem::Read(e),
            }
        })?;
    let sigstruct = read_limited(&cfg.sigstruct, 4096).map_err(|e| LaunchError::Sigstruct {
        path: cfg.sigstruct.clone(),
        source: ManifestProblem::Read(e),
    })?;
    let enclave = ccm_enclave::verify_enclave(&manifest, &sigstruct)
        .map_err(|e| LaunchError::from_enclave(&cfg.manifest, &cfg.sigstruct, e))?;
    let t1 = Instant::now();
    let stats = ccm_enclave::verify_trusted_files(
        &cfg.root,
        &enclave.manifest,
        VerifyOptions {
            threads: cfg.verify_threads,
        },
    )
    .map_err(|e| LaunchError::from_enclave(&cfg.manifest, &cfg.sigstruct, e))?;
    let t2 = Instant::now();
    Ok(Verified {
        enclave,
        stats,
        enclave_ms: t1.duration_since(t0).as_secs_f64() * 1e3,
        files_ms: t2.duration_since(t1).as_secs_f64() * 1e3,
    })
}

/// A lazily connected quote source and node agent, shared by all certificate requests.
pub struct Issuance<'a> {
    cfg: &'a Config,
    enclave: &'a VerifiedEnclave,
    attester: Option<Attester>,
    agent: Option<agent::AgentClient>,
    /// The zone CA certificates (DER), once read.
    zone_ca: Option<Vec<Vec<u8>>>,
}

impl<'a> Issuance<'a> {
    /// Nothing is connected until a certificate issued by the manager is requested.
    pub fn new(cfg: &'a Config, enclave: &'a VerifiedEnclave) -> Self {
        Issuance {
            cfg,
            enclave,
            attester: None,
            agent: None,
            zone_ca: None,
        }
    }

    /// The zone CA certificates (DER) of `--ccm-zone-ca`, read once; `None` when not
    /// configured.
    fn zone_ca(&mut self) -> Result<Option<&[Vec<u8>]>, LaunchError> {
        let cfg = self.cfg;
        let Some(path) = cfg.zone_ca.as_deref() else {
            return Ok(None);
        };
        if self.zone_ca.is_none() {
            let text = read_limited(path, 1 << 20)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    LaunchError::Usage(format!(
                        "--ccm-zone-ca {}: cannot read the zone CA certificate file",
                        path.display()
                    ))
                })?;
            let ders = certs::pem_certificates(&text).map_err(|e| {
                LaunchError::Usage(format!("--ccm-zone-ca {}: {e}", path.display()))
            })?;
            self.zone_ca = Some(ders);
        }
        Ok(self.zone_ca.as_deref())
    }

    fn attester(&mut self) -> Result<&Attester, LaunchError> {
        if self.attester.is_none() {
            let a = Attester::connect(&self.cfg.quote_via, self.enclave)?;
            if a.in_process {
                log(
                    "SIMULATION: quoting in-process with --ccm-dangerous-inprocess-sim; this quote proves nothing",
                );
            }
            self.attester = Some(a);
        }
        self.attester
            .as_ref()
            .ok_or_else(|| LaunchError::QuoteSource("no quote source".into()))
    }

    fn agent(&mut self) -> Result<&agent::AgentClient, LaunchError> {
        if self.agent.is_none() {
            let url = self.cfg.agent_url.as_deref().ok_or_else(|| {
                LaunchError::AgentConfig(
                    "NODE_AGENT_BASE_URL is not set (e.g. http://NODE_IP:9092/v1/): the certificate comes from the node agent"
                        .into(),
                )
            })?;
            let url = agent::AgentUrl::parse(url, Path::new("/etc/hosts"))?;
            self.agent = Some(agent::AgentClient::new(url));
        }
        self.agent
            .as_ref()
            .ok_or_else(|| LaunchError::AgentConfig("no node agent".into()))
    }

    /// Obtains one certificate and installs key, certificate and chain. Returns the installed
    /// certificate.
    pub fn obtain(
        &mut self,
        req: &CertificateRequest,
        owner: Option<(u32, u32)>,
    ) -> Result<certs::Issued, LaunchError> {
        let key = keys::key_and_csr(req.key_type, &req.domain)?;
        let pem = match req.issuer {
            Issuer::SelfSigned => key.self_signed(&req.domain, SELF_SIGNED_DAYS)?,
            Issuer::ManagerCa => {
                // Fail on configuration before asking for a nonce.
                self.agent()?;
                self.attester()?;
                self.zone_ca()?;
                let timeout = self.cfg.cert_timeout;
                let (Some(agent), Some(attester)) = (&self.agent, &self.attester) else {
                    return Err(LaunchError::AgentConfig("no node agent".into()));
                };
                let quote_for = |nonce: &[u8; 32]| {
                    attester.quote(&attest::report_data_for(&key.spki_der, nonce))
                };
                let pem = agent.obtain(&req.domain, &key.csr_pem, quote_for, timeout)?;
                let cfg = self.cfg;
                if let (Some(ca_file), Some(anchors)) = (cfg.zone_ca.as_deref(), self.zone_ca()?) {
                    certs::check_chain(&pem, &req.domain, anchors, ca_file)?;
                }
                pem
            }
        };
        let issued = certs::check(&pem, &req.domain, Some(&key.spki_der))?;
        let chain = req.chain_path.as_deref().map(|p| self.cfg.in_root(p));
        certs::install(
            &self.cfg.in_root(&req.key_path),
            key.key_pem().expose(),
            &self.cfg.in_root(&req.cert_path),
            chain.as_deref(),
            &issued,
            owner,
        )?;
        Ok(issued)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The whole launch: verify, certificates, renewer, exec. Returns only on failure.
pub fn launch(cfg: &Config, argv0: Option<&OsString>) -> LaunchError {
    match launch_inner(cfg, argv0) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn launch_inner(cfg: &Config, argv0: Option<&OsString>) -> Result<Never, LaunchError> {
    let start = Instant::now();
    let v = verify(cfg)?;
    let m = &v.enclave.manifest;
    log(&format!(
        "verified enclave {} (MRSIGNER {}, ISVPRODID {}, ISVSVN {}{}) and {} files ({:.1} MB) in {:.0} ms",
        v.enclave.mrenclave,
        v.enclave.mrsigner,
        v.enclave.isv_prod_id,
        v.enclave.isv_svn,
        if m.enclave.debug { ", DEBUG" } else { "" },
        v.stats.files,
        v.stats.bytes as f64 / 1e6,
        v.enclave_ms + v.files_ms,
    ));
    let argv = exec::app_argv(m, &cfg.runtime_args)?;
    let owner = exec::target_owner(&cfg.root, m)?;

    let mut issuance = Issuance::new(cfg, &v.enclave);
    for req in &m.certificates {
        let t = Instant::now();
        let issued = issuance.obtain(req, owner)?;
        log(&format!(
            "certificate for {} written to {} (valid until {}, renewal at {}) in {:.0} ms",
            req.domain,
            req.cert_path,
            fmt_time(issued.not_after),
            fmt_time(issued.renew_at()),
            t.elapsed().as_secs_f64() * 1e3
        ));
    }
    drop(issuance);

    if cfg.renew && !m.certificates.is_empty() {
        match renew::spawn(cfg, argv0) {
            Ok(pid) => log(&format!(
                "renewal process {pid} renews the certificates at 2/3 of their lifetime"
            )),
            // The app can run without renewal until the certificate expires: say so loudly.
            Err(e) => log(&format!(
                "WARNING: cannot start the renewal process ({e}); certificates will not be renewed"
            )),
        }
    }

    let env = exec::app_env(m, |k| std::env::var_os(k));
    let working_dir = cfg.in_root(&m.working_dir);
    let program = argv.first().cloned().unwrap_or_default();
    let resolved = exec::resolve_program(&cfg.root, &program, &working_dir, &env)?;
    log(&format!(
        "starting {} after {:.0} ms",
        program.to_string_lossy(),
        start.elapsed().as_secs_f64() * 1e3
    ));
    Err(exec::exec_app(&resolved, &argv, &env, &working_dir, owner))
}

/// `--ccm-verify-only`: steps 1 and 2, and a summary on standard output.
pub fn verify_only(cfg: &Config) -> Result<(), LaunchError> {
    let v = verify(cfg)?;
    let secs = v.files_ms / 1e3;
    let rate = if secs > 0.0 {
        v.stats.bytes as f64 / secs / 1e6
    } else {
        0.0
    };
    println!(
        "{{\"mrenclave\":\"{}\",\"mrsigner\":\"{}\",\"isvprodid\":{},\"isvsvn\":{},\"files\":{},\"symlinks\":{},\"bytes\":{},\"enclave_ms\":{:.3},\"files_ms\":{:.3},\"mb_per_s\":{:.1}}}",
        v.enclave.mrenclave,
        v.enclave.mrsigner,
        v.enclave.isv_prod_id,
        v.enclave.isv_svn,
        v.stats.files,
        v.stats.symlinks,
        v.stats.bytes,
        v.enclave_ms,
        v.files_ms,
        rate
    );
    Ok(())
}

/// Formats Unix seconds as RFC 3339 (UTC).
pub fn fmt_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}
