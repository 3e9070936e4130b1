//! `ccm quote`: generate (simulated), fetch (AESM) and verify DCAP quotes.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ccm_attest::sim::{self, EnclaveIdentity, SimQuotingEnclave};
use ccm_attest::{Collateral, INTEL_SGX_ROOT_CA_SHA256, RootKind, TrustRoot, TrustRoots, Verifier};
use ccm_sgx::{AttributeFlags, Attributes, Measurement, ReportData};

use super::Failure;

/// DCAP quotes.
#[derive(Debug, clap::Subcommand)]
pub enum QuoteCommand {
    /// Make a quote on a simulated platform: EREPORT on the simulated CPU, then the simulated
    /// quoting enclave (which checks the REPORT's MAC) signs it. SIMULATED.
    Generate(GenerateArgs),
    /// Verify a quote with its collateral; print the result as JSON (exit 0), or the reason it
    /// does not verify (exit 1).
    Verify(VerifyArgs),
    /// Get a quote for an enclave REPORT from an AESM socket (ccm aesmd or Intel's aesmd).
    Fetch(super::quote_fetch::FetchArgs),
}

/// `ccm quote generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// The simulated platform directory (`ccm sim init`).
    #[arg(long, value_name = "DIR")]
    platform: PathBuf,
    /// The enclave's MRENCLAVE (32 bytes, hex).
    #[arg(long, value_name = "HEX")]
    mrenclave: Measurement,
    /// The enclave's MRSIGNER (32 bytes, hex).
    #[arg(long, value_name = "HEX")]
    mrsigner: Measurement,
    /// The enclave's ISVPRODID.
    #[arg(long, value_name = "N")]
    isvprodid: u16,
    /// The enclave's ISVSVN.
    #[arg(long, value_name = "N")]
    isvsvn: u16,
    /// Mark the enclave as a debug enclave (ATTRIBUTES.DEBUG).
    #[arg(long)]
    debug: bool,
    /// REPORTDATA (up to 64 bytes, hex; shorter values are padded with zero bytes).
    #[arg(long, value_name = "HEX")]
    report_data: String,
    /// Where to write the quote (raw bytes).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// `ccm quote verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The quote (raw bytes).
    #[arg(long, value_name = "FILE")]
    quote: PathBuf,
    /// The collateral (QuoteCollateralV3 JSON, as `collateral.json` of a simulated platform).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "pccs",
        conflicts_with = "pccs"
    )]
    collateral: Option<PathBuf>,
    /// Fetch the collateral from a PCS or PCCS instead.
    #[command(flatten)]
    source: super::collateral::PccsArgs,
    /// Verification time in Unix seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
    /// Trust this root certificate (PEM) instead of Intel's SGX Root CA. Any root other than
    /// Intel's is treated as simulated, and the result says so.
    #[arg(long, value_name = "PEM")]
    root: Option<PathBuf>,
}

/// Parses up to 64 bytes of hex, zero-padded to 64.
fn parse_report_data(text: &str) -> anyhow::Result<ReportData> {
    let bytes = hex::decode(text).with_context(|| format!("--report-data is not hex: {text:?}"))?;
    if bytes.len() > 64 {
        bail!(
            "--report-data is {} bytes; REPORTDATA holds at most 64",
            bytes.len()
        );
    }
    let mut data = [0u8; 64];
    data.get_mut(..bytes.len())
        .context("report data length")?
        .copy_from_slice(&bytes);
    Ok(ReportData(data))
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let report_data = parse_report_data(&args.report_data)?;
    let qe =
        SimQuotingEnclave::load(&args.platform).context("load the simulated quoting enclave")?;
    let cpu = sim::load_sim_cpu(&args.platform).context("load the simulated CPU")?;
    let mut flags = AttributeFlags::INIT | AttributeFlags::MODE64BIT;
    if args.debug {
        flags |= AttributeFlags::DEBUG;
    }
    let identity = EnclaveIdentity {
        mr_enclave: args.mrenclave,
        mr_signer: args.mrsigner,
        attributes: Attributes::new(flags, 0x3),
        isv_prod_id: args.isvprodid,
        isv_svn: args.isvsvn,
        ..EnclaveIdentity::default()
    };
    // The same path an enclave takes: a REPORT targeted at the QE, whose MAC the QE checks.
    let report = cpu.ereport(&qe.target_info(), &identity, &report_data);
    let (quote, _) = qe
        .get_quote(&report, None)
        .context("the simulated quoting enclave refused the REPORT")?;
    std::fs::write(&args.out, &quote).with_context(|| format!("write {}", args.out.display()))?;
    eprintln!(
        "SIMULATED quote ({} bytes) written to {}",
        quote.len(),
        args.out.display()
    );
    Ok(())
}

pub(super) fn read(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("read {}", path.display()))?
        .len();
    if len > limit {
        bail!(
            "{} is {len} bytes, more than the {limit}-byte limit",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

pub(super) fn roots(root: Option<&Path>) -> anyhow::Result<TrustRoots> {
    let Some(path) = root else {
        return Ok(TrustRoots::intel());
    };
    let text = String::from_utf8(read(path, 1 << 20)?)
        .with_context(|| format!("{} is not PEM text", path.display()))?;
    // Only Intel's root stands for hardware; any other root is a simulated platform's.
    let hardware = TrustRoot::from_pem(&text, RootKind::Hardware)
        .with_context(|| format!("load the root certificate {}", path.display()))?;
    let root = if hardware.fingerprint() == &INTEL_SGX_ROOT_CA_SHA256 {
        hardware
    } else {
        TrustRoot::from_pem(&text, RootKind::Simulated)?
    };
    Ok(TrustRoots::empty().with(root))
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let now = match args.at {
        Some(at) => at,
        None => super::sim::unix_now()?,
    };
    let roots = roots(args.root.as_deref())?;
    let quote = read(&args.quote, 16 << 20)?;
    let collateral = match &args.collateral {
        Some(path) => Collateral::from_json(&read(
            path,
            ccm_attest::collateral::MAX_COLLATERAL_FILE_LEN as u64,
        )?)
        .with_context(|| format!("parse the collateral {}", path.display()))?,
        None => super::collateral::fetch_for_quote(&args.source, &quote)?,
    };
    let verified = Verifier::new(roots)
        .verify(&quote, &collateral, now)
        .context("the quote does not verify")?;
    if verified.simulated {
        eprintln!("note: this quote comes from a SIMULATED platform");
    }
    println!("{}", serde_json::to_string_pretty(&verified.to_json())?);
    Ok(())
}

/// Runs a `ccm quote` subcommand.
pub fn run(command: QuoteCommand) -> anyhow::Result<()> {
    match command {
        QuoteCommand::Generate(args) => generate(args),
        // Every way a verification can fail is "the answer is no": exit 1 with the reason.
        QuoteCommand::Verify(args) => verify(args).map_err(|err| {
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            Failure {
                code: 1,
                message: chain.join(": "),
            }
            .into()
        }),
        QuoteCommand::Fetch(args) => super::quote_fetch::run(args),
    }
}
