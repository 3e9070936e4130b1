//! `ccm sim`: create simulated SGX platforms (SIMULATED: no hardware, no security).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use ccm_attest::TcbStatus;
use ccm_attest::sim::{self, PlatformInfo, PlatformOptions};

/// Simulated SGX platforms for development and tests. Quotes from them prove nothing: anyone
/// with the platform files can mint quotes for any enclave.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Create a simulated root CA and a first platform under it in DIR.
    Init(InitArgs),
    /// Create another platform in DIR under the root made by `ccm sim init --dir ROOT`.
    AddPlatform(AddPlatformArgs),
    /// Serve the root's collateral over the PCS API v4 (as a PCCS), re-issued fresh for every
    /// request.
    Pcs(super::sim_pcs::PcsArgs),
    /// Publish a TCB recovery under the root, as Intel does: a new TCB evaluation data number
    /// whose TCB info requires a higher microcode SVN, so that platforms made before it are
    /// OutOfDate. Collateral issued from then on (`ccm sim pcs`) carries it.
    TcbRecovery(TcbRecoveryArgs),
}

/// `ccm sim tcb-recovery`.
#[derive(Debug, clap::Args)]
pub struct TcbRecoveryArgs {
    /// A directory created by `ccm sim init` (holds the root CA and its keys).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Only announce it: publish it in the early TCB evaluation data set (`update=early`); a
    /// later run without --early puts it in force.
    #[arg(long)]
    early: bool,
}

/// What kind of platform to create.
#[derive(Debug, clap::Args)]
pub struct PlatformArgs {
    /// The platform TCB status its SVNs produce: UpToDate, SWHardeningNeeded,
    /// ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, OutOfDate,
    /// OutOfDateConfigurationNeeded or Revoked.
    #[arg(long, value_name = "STATUS", default_value = "UpToDate")]
    tcb_status: TcbStatus,
    /// The quoting enclave's TCB status: UpToDate, OutOfDate or Revoked.
    #[arg(long, value_name = "STATUS", default_value = "UpToDate")]
    qe_status: TcbStatus,
    /// Put the platform's PCK certificate on the PCK CRL.
    #[arg(long)]
    revoked: bool,
    /// The platform's FMSPC (6 bytes, hex).
    #[arg(long, value_name = "HEX")]
    fmspc: Option<String>,
    /// Creation time in Unix seconds (default: now); certificates and collateral are dated
    /// from it.
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
}

/// `ccm sim init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The platform directory to create (must not hold a platform yet).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    platform: PlatformArgs,
}

/// `ccm sim add-platform`.
#[derive(Debug, clap::Args)]
pub struct AddPlatformArgs {
    /// A directory created by `ccm sim init` (holds the root CA and its keys).
    #[arg(long, value_name = "ROOTDIR")]
    root: PathBuf,
    /// The platform directory to create (must not hold a platform yet).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    platform: PlatformArgs,
}

/// The current time in Unix seconds.
pub(crate) fn unix_now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

fn options(args: &PlatformArgs) -> anyhow::Result<PlatformOptions> {
    let now = match args.at {
        Some(at) => at,
        None => unix_now()?,
    };
    let mut options = PlatformOptions::new(now);
    options.tcb_status = args.tcb_status;
    options.qe_status = args.qe_status;
    options.revoked = args.revoked;
    if let Some(text) = &args.fmspc {
        let mut fmspc = [0u8; 6];
        if hex::decode_to_slice(text, &mut fmspc).is_err() {
            bail!("--fmspc must be 6 bytes of hex (12 hex digits), got {text:?}");
        }
        options.fmspc = fmspc;
    }
    Ok(options)
}

fn report(dir: &std::path::Path, info: &PlatformInfo) -> anyhow::Result<()> {
    eprintln!(
        "SIMULATED SGX platform created in {} (FMSPC {}, TCB {}, QE {}{}). Trust anchor: {}. \
         Simulated quotes prove nothing about hardware.",
        dir.display(),
        info.fmspc,
        info.tcb_status,
        info.qe.status,
        if info.pck_revoked {
            ", PCK certificate REVOKED"
        } else {
            ""
        },
        dir.join(sim::ROOT_CA_FILE).display(),
    );
    println!("{}", serde_json::to_string_pretty(info)?);
    Ok(())
}

/// Runs a `ccm sim` subcommand.
pub fn run(command: SimCommand) -> anyhow::Result<()> {
    match command {
        SimCommand::Init(args) => {
            let info = sim::init(&args.dir, &options(&args.platform)?).with_context(|| {
                format!("create a simulated platform in {}", args.dir.display())
            })?;
            report(&args.dir, &info)
        }
        SimCommand::AddPlatform(args) => {
            let info = sim::add_platform(&args.root, &args.dir, &options(&args.platform)?)
                .with_context(|| {
                    format!(
                        "add a simulated platform in {} under {}",
                        args.dir.display(),
                        args.root.display()
                    )
                })?;
            report(&args.dir, &info)
        }
        SimCommand::Pcs(args) => super::sim_pcs::run(args),
        SimCommand::TcbRecovery(args) => {
            let n = sim::tcb_recovery(&args.dir, args.early)
                .with_context(|| format!("publish a TCB recovery under {}", args.dir.display()))?;
            println!(
                "SIMULATED TCB recovery published: TCB evaluation data number {} in force \
                 (standard), {} published (early)",
                n.standard, n.early
            );
            Ok(())
        }
    }
}
