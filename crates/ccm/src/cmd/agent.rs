//! `ccm agent`: the node agent (enrollment, local node-agent API, manager link).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

/// Run the node agent: enroll this node with the manager (first start, with a join token),
/// then serve the local node-agent API and keep the manager link (heartbeats, renewal).
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The manager's URL (https://HOST:PORT). Its certificate is pinned by the join token.
    #[arg(long, value_name = "URL", env = "CCM_MANAGER_URL")]
    manager: String,
    /// The join token (`ccm zone token create`); needed for the first start only.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CCM_JOIN_TOKEN",
        hide_env_values = true
    )]
    join_token: Option<String>,
    /// Node name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Address of the local node-agent API.
    #[arg(long, default_value = "0.0.0.0:9092")]
    listen: SocketAddr,
    /// The quote helper's AESM socket.
    #[arg(long, value_name = "PATH", default_value = ccm_aesm::DEFAULT_SOCKET)]
    aesm_socket: PathBuf,
    /// State directory (identity, pending requests).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/ccm-agent")]
    state_dir: PathBuf,
    /// The platform's collateral (QuoteCollateralV3 JSON, e.g. a simulated platform's
    /// collateral.json), uploaded at enrollment.
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
    /// The simulated platform secret (default: ccm-sim-cpu.key next to the AESM socket).
    #[arg(long, value_name = "FILE")]
    sim_cpu_key: Option<PathBuf>,
    /// IP address to report to the manager (default: the listen address).
    #[arg(long)]
    ipaddress: Option<String>,
    /// Allow a plain-HTTP manager (no authentication, no encryption: local testing only).
    #[arg(long)]
    insecure_http_manager: bool,
    /// Most connections the local API serves at once; further clients wait.
    #[arg(long, value_name = "N", default_value_t = 512)]
    max_connections: usize,
    /// Seconds a client may take to send a request body (and its headers) to the local API.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    body_read_timeout: u64,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    super::init_service_logging(args.log_json);
    let config = ccm_agent::AgentConfig {
        manager: args.manager,
        join_token: args.join_token,
        name: args.name.unwrap_or_else(host_name),
        listen: args.listen,
        aesm_socket: args.aesm_socket,
        sim_cpu_key: args.sim_cpu_key,
        state_dir: args.state_dir,
        insecure_http_manager: args.insecure_http_manager,
        collateral: args.collateral,
        ipaddress: args.ipaddress,
        limits: ccm_agent::LocalApiLimits {
            max_connections: args.max_connections.max(1),
            header_read_timeout: std::time::Duration::from_secs(args.body_read_timeout.max(1)),
            body_read_timeout: std::time::Duration::from_secs(args.body_read_timeout.max(1)),
        },
    };
    // Two worker threads: the agent is I/O bound and should stay small.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let agent = ccm_agent::start(config).await?;
        println!(
            "ccm agent: node {} serving the node-agent API on http://{}/v1/",
            agent.agent.node_id(),
            agent.local_addr
        );
        super::manager::shutdown_signal().await;
        agent.shutdown().await;
        Ok(())
    })
}
