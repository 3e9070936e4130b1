//! `ccm collateral`: verification collateral from a PCS or PCCS.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ccm_api::collateral::{CollateralBundle, CollateralSet, ImportOutcome, ImportResponse};
use ccm_attest::pcs::{PcsClient, PcsOptions, Update, quote_collateral_key, system_tls};
use ccm_attest::{Collateral, TrustRoots, Verifier};
use reqwest::Method;

use super::client::{Client, Output, OutputOpts, print_json, print_table};

/// The environment variable holding the API key sent to the service, if it wants one (kept out
/// of the command line, where other users of the machine could read it).
pub const API_KEY_ENV: &str = "CCM_PCS_API_KEY";

/// Verification collateral.
#[derive(Debug, clap::Subcommand)]
pub enum CollateralCommand {
    /// Fetch the collateral a quote is verified with from a PCS or PCCS, verify it, and write it
    /// as QuoteCollateralV3 JSON.
    Fetch(FetchArgs),
    /// List the collateral the manager holds: per platform, its TCB evaluation number, age,
    /// expiry, source and last refresh (system administrators).
    Status {
        #[command(flatten)]
        out: OutputOpts,
    },
    /// Import collateral into the manager (an air-gapped site's): a QuoteCollateralV3 JSON file
    /// or a bundle (`{"collateral": [...]}`, what `export` writes). Each set becomes current
    /// only if newer; one that does not verify refuses the whole import.
    Import {
        /// The file.
        file: PathBuf,
    },
    /// Write every current collateral set the manager holds as a bundle `import` takes.
    Export {
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Where collateral comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct PccsArgs {
    /// Base URL of Intel's PCS (https://api.trustedservices.intel.com), a PCCS, a ccm manager or
    /// `ccm sim pcs`. The API key, if the service wants one, is read from $CCM_PCS_API_KEY.
    #[arg(long, value_name = "URL")]
    pub pccs: Option<String>,
    /// Fetch the early TCB evaluation data set (the next TCB recovery's) instead of the standard.
    #[arg(long, requires = "pccs")]
    pub early: bool,
}

/// `ccm collateral fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    #[command(flatten)]
    source: PccsArgs,
    /// The quote whose collateral to fetch (FMSPC and PCK CA from its PCK certificate).
    #[arg(long, value_name = "FILE")]
    quote: PathBuf,
    /// Where to write the collateral (QuoteCollateralV3 JSON).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Check the collateral at this time in Unix seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
    /// Trust this root certificate (PEM) instead of Intel's SGX Root CA (any other root is a
    /// simulated platform's).
    #[arg(long, value_name = "PEM")]
    root: Option<PathBuf>,
}

/// Fetches the collateral of `quote` from the service `source` names (which must be set).
pub fn fetch_for_quote(source: &PccsArgs, quote: &[u8]) -> anyhow::Result<Collateral> {
    let url = source.pccs.as_deref().context("no --pccs URL")?;
    let (fmspc, ca) = quote_collateral_key(quote).context("read the quote's PCK certificate")?;
    let mut options = PcsOptions::new(url);
    options.api_key = std::env::var(API_KEY_ENV).ok().filter(|k| !k.is_empty());
    let client = PcsClient::new(options, system_tls(None)?)?;
    let update = if source.early {
        Update::Early
    } else {
        Update::Standard
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(client.sgx_collateral(&fmspc, ca, update))
        .with_context(|| {
            format!(
                "fetch collateral for FMSPC {} from {url}",
                hex::encode_upper(fmspc)
            )
        })
}

fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    let now = match args.at {
        Some(at) => at,
        None => super::sim::unix_now()?,
    };
    let roots: TrustRoots = super::quote::roots(args.root.as_deref())?;
    let quote = super::quote::read(&args.quote, 16 << 20)?;
    let collateral = fetch_for_quote(&args.source, &quote)?;
    let summary = Verifier::new(roots)
        .check_collateral(&collateral, now)
        .context("the fetched collateral does not verify; nothing written")?;
    write(&args.out, &collateral)?;
    eprintln!(
        "collateral for FMSPC {} (TCB evaluation {}{}) valid until {} written to {}",
        hex::encode_upper(summary.fmspc),
        summary.tcb_evaluation_data_number,
        if summary.simulated {
            ", SIMULATED root"
        } else {
            ""
        },
        summary.valid_until,
        args.out.display()
    );
    Ok(())
}

fn write(path: &Path, collateral: &Collateral) -> anyhow::Result<()> {
    std::fs::write(path, collateral.to_json()).with_context(|| format!("write {}", path.display()))
}

/// Runs a `ccm collateral` subcommand.
pub fn run(command: CollateralCommand) -> anyhow::Result<()> {
    match command {
        CollateralCommand::Fetch(args) => fetch(args),
        CollateralCommand::Status { out } => status(out.output),
        CollateralCommand::Import { file } => import(&file),
        CollateralCommand::Export { out } => export(&out),
    }
}

fn status(out: Output) -> anyhow::Result<()> {
    let sets: Vec<CollateralSet> = Client::connect()?.get("/v1/collateral")?;
    if out == Output::Json {
        return print_json(&sets);
    }
    let rows: Vec<Vec<String>> = sets
        .iter()
        .map(|s| {
            vec![
                s.fmspc.clone(),
                format!("{}/{}", s.tee.as_str(), s.ca_type.as_str()),
                s.update.as_str().to_string(),
                s.tcb_evaluation_data_number.to_string(),
                s.tcb_info_issued.to_string(),
                s.valid_until.to_string(),
                format!(
                    "{}{}",
                    s.source.as_str(),
                    if s.simulated { " (SIMULATED)" } else { "" }
                ),
                s.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "FMSPC",
            "TEE/CA",
            "SET",
            "EVALUATION",
            "ISSUED",
            "VALID_UNTIL",
            "SOURCE",
            "LAST_ERROR",
        ],
        &rows,
    );
    Ok(())
}

/// The sets of a file: a bundle, or one QuoteCollateralV3 object.
fn read_bundle(file: &Path) -> anyhow::Result<CollateralBundle> {
    let text = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    if v.get("collateral").is_some() {
        return serde_json::from_value(v)
            .with_context(|| format!("{} is not a collateral bundle", file.display()));
    }
    Collateral::from_json(&text)
        .with_context(|| format!("{} is not QuoteCollateralV3 JSON", file.display()))?;
    Ok(CollateralBundle {
        collateral: vec![v],
    })
}

fn import(file: &Path) -> anyhow::Result<()> {
    let bundle = read_bundle(file)?;
    let c = Client::connect()?;
    let r: ImportResponse = c.call(Method::POST, "/v1/collateral", Some(&bundle))?;
    for (i, outcome) in r.results.iter().enumerate() {
        let what = match outcome {
            ImportOutcome::Current => "now current",
            ImportOutcome::Unchanged => "no newer than the current set: unchanged",
        };
        println!("set {i}: {what}");
    }
    Ok(())
}

fn export(out: &Path) -> anyhow::Result<()> {
    let bundle: CollateralBundle = Client::connect()?.get("/v1/collateral/export")?;
    let text = serde_json::to_string_pretty(&bundle)?;
    std::fs::write(out, text).with_context(|| format!("write {}", out.display()))?;
    eprintln!(
        "{} collateral sets written to {}",
        bundle.collateral.len(),
        out.display()
    );
    Ok(())
}
