//! `ccm manager`: run the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use ccm_manager::{Config, SystemClock};

/// Run the manager: REST API on 127.0.0.1:8443 over HTTPS with a generated self-signed
/// certificate (its SHA-256 fingerprint is printed at start), state in one SQLite file in the
/// data directory unless --database names PostgreSQL. Settings: defaults < --config FILE <
/// CCM_* environment variables < flags.
#[derive(Debug, clap::Args)]
pub struct ManagerArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, master key, TLS identity).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Serve plain HTTP instead of HTTPS (local use only: tokens travel in clear text).
    #[arg(long)]
    insecure_http: bool,
    /// Trust the root CA of a simulated SGX platform (its root-ca.pem); repeatable. SIMULATED:
    /// quotes under it prove nothing about hardware; never use this in production.
    #[arg(long, value_name = "FILE")]
    trust_simulated_root: Vec<PathBuf>,
    /// Speak plain HTTP to this registry when converting images (HOST:PORT); repeatable, added
    /// to `insecure_registries` / CCM_INSECURE_REGISTRIES. Never the default.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registry: Vec<String>,
    /// The launcher embedded in converted images (default: ccm-launch next to this program,
    /// or `launcher` / CCM_LAUNCHER).
    #[arg(long, value_name = "FILE")]
    launcher: Option<PathBuf>,
    /// Conversions this manager runs at once (0: none; default 2).
    #[arg(long, value_name = "N")]
    conversion_workers: Option<usize>,
    /// Let anyone sign up as an ordinary user (`open_signup` / CCM_OPEN_SIGNUP). Off by default:
    /// only the holder of the setup token signs up, once, as system administrator.
    #[arg(long)]
    open_signup: bool,
    /// The manager's URL as relying parties reach it, named in issued certificates' CRL
    /// distribution point (default: https://<first TLS name>:<port>; `public_url` /
    /// CCM_PUBLIC_URL).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Fetch platform collateral from this PCS or PCCS (Intel's PCS is
    /// https://api.trustedservices.intel.com; `pccs_url` / CCM_PCCS_URL). Without it the
    /// manager is offline: collateral comes only from node uploads and `ccm collateral import`.
    #[arg(long, value_name = "URL")]
    pccs: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

/// Runs the manager until SIGINT or SIGTERM, then shuts down gracefully.
pub fn run(args: ManagerArgs) -> anyhow::Result<()> {
    super::init_service_logging(args.log_json);
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(db) = args.database {
        config.database_url = Some(db);
    }
    if args.insecure_http {
        config.insecure_http = true;
    }
    if let Some(u) = args.public_url {
        config.public_url = Some(u);
    }
    config
        .trusted_simulated_roots
        .extend(args.trust_simulated_root);
    config.insecure_registries.extend(args.insecure_registry);
    if let Some(l) = args.launcher {
        config.launcher = Some(l);
    }
    if let Some(n) = args.conversion_workers {
        config.conversion_workers = n;
    }
    if args.open_signup {
        config.open_signup = true;
    }
    if let Some(u) = args.pccs {
        config.pccs_url = Some(u);
    }
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let m = ccm_manager::start(config.clone(), Arc::new(SystemClock))
            .await
            .context("starting the manager")?;
        println!("ccm manager listening on {}", m.base_url());
        match m.fingerprint {
            Some(fp) => println!(
                "TLS certificate SHA-256 fingerprint: {}",
                ccm_pki::format_fingerprint(&fp)
            ),
            None => println!(
                "WARNING: plain HTTP (--insecure-http): use only on a trusted local machine"
            ),
        }
        println!(
            "database: {}",
            ccm_store::redact_url(&config.database_url())
        );
        let setup = ccm_manager::service::users::setup_token_path(&config.data_dir);
        if setup.exists() {
            println!(
                "no administrator yet: sign up with the setup token in {}",
                setup.display()
            );
        }
        tracing::info!(addr = %m.local_addr, "manager started");
        shutdown_signal().await;
        tracing::info!("shutting down");
        m.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
