//! `ccm quote fetch`: get a quote for an enclave REPORT from an AESM socket.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ccm_aesm::{AesmClient, Error as AesmClientError};
use ccm_sgx::{AttKeyId, QeReportInfo, Report};

use super::Failure;

/// Ask the AESM service (ccm aesmd or Intel's aesmd) for a quote of a REPORT, the way
/// sgx_get_quote_ex does: select the key, GetQuoteSizeEx, GetQuoteEx.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The AESM socket.
    #[arg(long, value_name = "PATH", default_value = ccm_aesm::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The enclave's REPORT (432 raw bytes), targeted at the quoting enclave.
    #[arg(long, value_name = "FILE")]
    report: PathBuf,
    /// Where to write the quote (raw bytes).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// A 960-byte sgx_ql_qe_report_info_t (nonce ‖ app TARGETINFO ‖ zeros) to send.
    #[arg(long, value_name = "FILE", requires = "qe_report_info_out")]
    qe_report_info: Option<PathBuf>,
    /// Where to write the returned QE report info (with the QE's REPORT for the app).
    #[arg(long, value_name = "FILE", requires = "qe_report_info")]
    qe_report_info_out: Option<PathBuf>,
    /// Seconds allowed for each read and write on the socket.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
}

fn read_exact_file(path: &Path, len: usize, what: &str) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("read {}", path.display()))?;
    if meta.len() != len as u64 {
        anyhow::bail!(
            "{} must be a {len}-byte {what}, it has {} bytes",
            path.display(),
            meta.len()
        );
    }
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

fn aesm_failure(err: AesmClientError) -> anyhow::Error {
    match err {
        // The service answered and refused: the answer is no.
        AesmClientError::Aesm(code) => Failure {
            code: 1,
            message: format!("the AESM service refused: {code}"),
        }
        .into(),
        other => anyhow::Error::new(other),
    }
}

/// Fetches the quote and writes it (and the QE report info) out.
pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    let report = Report::parse(&read_exact_file(&args.report, Report::SIZE, "REPORT")?)
        .context("parse the REPORT")?;
    let info = match &args.qe_report_info {
        Some(p) => Some(
            QeReportInfo::parse(&read_exact_file(p, QeReportInfo::SIZE, "QE report info")?)
                .context("parse the QE report info")?,
        ),
        None => None,
    };
    let client = AesmClient::new(&args.socket)
        .with_timeout(std::time::Duration::from_secs(args.timeout.max(1)));
    let key: AttKeyId = client.select_att_key_id(None).map_err(aesm_failure)?;
    let result = client
        .get_quote(&key, &report, info.as_ref())
        .map_err(aesm_failure)?;
    std::fs::write(&args.out, &result.quote)
        .with_context(|| format!("write {}", args.out.display()))?;
    if let (Some(out), Some(info)) = (&args.qe_report_info_out, &result.qe_report_info) {
        std::fs::write(out, info.as_bytes()).with_context(|| format!("write {}", out.display()))?;
    }
    eprintln!(
        "wrote a {}-byte quote to {}",
        result.quote.len(),
        args.out.display()
    );
    Ok(())
}
