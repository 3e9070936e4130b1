//! `ccm aesmd`: the quote helper, an AESM-protocol daemon on a Unix socket.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use ccm_aesm::server::{
    DEFAULT_UPSTREAM_TIMEOUT, ForwardBackend, Server, ServerConfig, SimBackend, shutdown_signal,
    write_platform_secret,
};

/// Serve Intel's AESM protocol on a Unix socket so enclave containers (SGX_AESM_ADDR=1) get
/// quotes: from a simulated platform (--platform) or relayed to a real aesmd (--forward).
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("backend").required(true).args(["platform", "forward"])))]
pub struct AesmdArgs {
    /// The socket to serve (created with mode 0777; a stale one is replaced).
    #[arg(long, value_name = "PATH", default_value = ccm_aesm::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Serve the simulated quoting enclave of this platform directory (`ccm sim init`) and
    /// publish its secret as ccm-sim-cpu.key next to the socket. Simulation only.
    #[arg(long, value_name = "DIR")]
    platform: Option<PathBuf>,
    /// Relay every request to the real aesmd listening on this socket (SGX hardware).
    #[arg(long, value_name = "REAL_SOCKET")]
    forward: Option<PathBuf>,
    /// Only serve callers with this uid (repeatable; default: everyone).
    #[arg(long = "allow-uid", value_name = "UID")]
    allow_uid: Vec<u32>,
    /// Seconds a client has to send its request.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    read_timeout: u64,
    /// Seconds the real aesmd has to answer (--forward).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_UPSTREAM_TIMEOUT.as_secs())]
    forward_timeout: u64,
    /// Connections served at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(args: AesmdArgs) -> anyhow::Result<()> {
    super::init_service_logging(args.log_json);
    let config = ServerConfig {
        socket: args.socket.clone(),
        allow_uids: (!args.allow_uid.is_empty()).then(|| args.allow_uid.clone()),
        read_timeout: Duration::from_secs(args.read_timeout.max(1)),
        max_connections: args.max_connections.max(1),
        ..ServerConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aesmd")
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async move {
        match (&args.platform, &args.forward) {
            (Some(platform), None) => {
                let backend = SimBackend::open(platform)?;
                let server = Server::bind(config, backend)?;
                let dir = server
                    .socket()
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                let key = write_platform_secret(platform, &dir)?;
                tracing::warn!(
                    key = %key.display(),
                    "SIMULATED platform: quotes prove nothing; its secret is readable at this path"
                );
                server.run(wait_for_signal()).await?;
            }
            (None, Some(upstream)) => {
                if upstream == &args.socket {
                    bail!("--forward must name another socket than --socket");
                }
                let backend = ForwardBackend::new(upstream)
                    .with_timeout(Duration::from_secs(args.forward_timeout.max(1)));
                let server = Server::bind(config, backend)?;
                server.run(wait_for_signal()).await?;
            }
            _ => bail!("give exactly one of --platform and --forward"),
        }
        Ok(())
    })
}

async fn wait_for_signal() {
    if let Err(e) = shutdown_signal().await {
        tracing::error!(error = %e, "cannot watch for signals; stopping");
    }
}
