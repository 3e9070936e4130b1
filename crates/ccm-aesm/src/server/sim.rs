//! The simulated backend: the quoting enclave of a `ccm sim init` platform, and the platform
//! secret published next to the socket so simulated enclaves can MAC their REPORTs.
//!
//! **Simulation only.** Whoever can read `ccm-sim-cpu.key` can mint REPORTs for any enclave
//! identity and get them quoted; quotes of a simulated platform are trusted only by a manager
//! started with `--trust-simulated-root`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ccm_attest::sim::{CPU_SECRET_FILE, SimQuotingEnclave};
use ccm_sgx::{AttKeyId, QeReportInfo, Report, TargetInfo};

use super::backend::LocalBackend;
use super::service::QuotingEnclave;
use crate::{AesmError, Error};

/// Name of the platform secret file written next to the socket (DESIGN §3): the raw 32 bytes.
pub const SIM_CPU_KEY_FILE: &str = CPU_SECRET_FILE;

/// The backend of `ccm aesmd --platform DIR`.
pub type SimBackend = LocalBackend<SimEnclave>;

/// A [`SimQuotingEnclave`] as an AESM [`QuotingEnclave`].
#[derive(Debug)]
pub struct SimEnclave {
    qe: SimQuotingEnclave,
    quote_size: u32,
    platform: PathBuf,
}

impl SimEnclave {
    /// Loads the quoting enclave of the platform in `dir`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let qe = SimQuotingEnclave::load(dir)
            .map_err(|e| Error::Setup(format!("simulated platform {}: {e}", dir.display())))?;
        let quote_size = u32::try_from(qe.quote_size()).map_err(|_| {
            Error::Setup(format!(
                "simulated platform {}: quote size overflows",
                dir.display()
            ))
        })?;
        Ok(Self {
            qe,
            quote_size,
            platform: dir.to_path_buf(),
        })
    }

    /// The wrapped enclave.
    pub fn inner(&self) -> &SimQuotingEnclave {
        &self.qe
    }

    /// The platform directory.
    pub fn platform(&self) -> &Path {
        &self.platform
    }
}

impl QuotingEnclave for SimEnclave {
    fn target_info(&self) -> TargetInfo {
        self.qe.target_info()
    }

    fn att_key_id(&self) -> AttKeyId {
        self.qe.att_key_id()
    }

    fn pub_key_id(&self) -> [u8; 32] {
        self.qe.pub_key_id()
    }

    fn quote_size(&self) -> u32 {
        self.quote_size
    }

    fn get_quote(
        &self,
        report: &Report,
        qe_report_info: Option<&QeReportInfo>,
    ) -> Result<(Vec<u8>, Option<QeReportInfo>), AesmError> {
        self.qe
            .get_quote(report, qe_report_info)
            .map_err(|e| AesmError::from_code(e.aesm_code()).unwrap_or(AesmError::Unexpected))
    }
}

impl SimBackend {
    /// Loads the platform in `dir` as the `sim` backend.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        Ok(LocalBackend::new(SimEnclave::load(dir)?, "sim"))
    }
}

/// Publishes the platform secret of the platform in `platform_dir` as
/// `socket_dir/ccm-sim-cpu.key` (mode 0644, so containers of any uid that mount the socket
/// directory can read it), written under a temporary name and renamed into place.
pub fn write_platform_secret(platform_dir: &Path, socket_dir: &Path) -> Result<PathBuf, Error> {
    let source = platform_dir.join(CPU_SECRET_FILE);
    let secret =
        std::fs::read(&source).map_err(|e| Error::io(format!("read {}", source.display()), e))?;
    if secret.len() != 32 {
        return Err(Error::Setup(format!(
            "{} must hold exactly 32 bytes, it has {}",
            source.display(),
            secret.len()
        )));
    }
    let target = socket_dir.join(SIM_CPU_KEY_FILE);
    if target == source {
        return Ok(target);
    }
    let tmp = socket_dir.join(format!(".{SIM_CPU_KEY_FILE}.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(&secret)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("write {}", target.display()), e)
    })?;
    Ok(target)
}
