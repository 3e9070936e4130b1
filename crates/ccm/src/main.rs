//! The `ccm` command: manager, agent, quote helper, conversion and client commands.
//!
//! Every subcommand group lives in its own module under `src/cmd/` and is a thin layer over the
//! library crates; `main` only parses arguments, sets up logging and maps errors to exit codes.

use clap::{Parser, Subcommand};

mod cmd;

/// mimalloc instead of glibc malloc: the services allocate per request on several threads, and
/// glibc's arenas cost about an eighth of the attested-issuance CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Confidential Computing Manager.
#[derive(Debug, Parser)]
#[command(name = "ccm", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The top-level subcommands. Add one variant per group; implement it in `src/cmd/<group>.rs`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of this ccm build.
    Version,
    /// Inspect SGX artefacts: MRENCLAVE of SGXS streams, SIGSTRUCT fields and signatures.
    #[command(subcommand)]
    Sgx(cmd::sgx::SgxCommand),
    /// Run the quote helper: an AESM-protocol daemon on a Unix socket.
    Aesmd(cmd::aesmd::AesmdArgs),
    /// Simulated SGX platforms (SIMULATED: for development and tests, no security).
    #[command(subcommand)]
    Sim(cmd::sim::SimCommand),
    /// Generate (simulated), fetch and verify DCAP quotes.
    #[command(subcommand)]
    Quote(cmd::quote::QuoteCommand),
    /// Verification collateral from a PCS or PCCS.
    #[command(subcommand)]
    Collateral(cmd::collateral::CollateralCommand),
    /// Convert a container image into an enclave image (measured, signed, pushed).
    Convert(Box<cmd::convert::ConvertArgs>),
    /// Pull an image and run it with runc (as `docker run` would).
    Run(Box<cmd::run::RunArgs>),
    /// Run the manager (control plane): REST API, accounts, apps, images, tasks, zones.
    Manager(cmd::manager::ManagerArgs),
    /// Log in to a manager (stores a token in the credentials file, mode 0600).
    Login(cmd::client::LoginArgs),
    /// End the session and forget the token.
    Logout,
    /// Manage accounts on the manager.
    Account(cmd::account::AccountArgs),
    /// Manage applications of the selected account.
    App(cmd::app::AppArgs),
    /// Manage images (builds) of the selected account.
    Image(cmd::image::ImageArgs),
    /// Review, approve and deny tasks of the selected account.
    Task(cmd::task::TaskArgs),
    /// The account's zone: CA certificate and join tokens.
    Zone(cmd::zone::ZoneArgs),
    /// Read and verify the hash-chained audit log.
    Audit(cmd::audit::AuditArgs),
    /// Users: invitations, password changes and administrator-issued password resets.
    User(cmd::user::UserArgs),
    /// Registry credentials stored in the selected account, used by image creation.
    Registry(cmd::registry::RegistryArgs),
    /// Run the node agent: enroll the node, serve the node-agent API on :9092.
    Agent(Box<cmd::agent::AgentArgs>),
    /// Compute nodes of the selected account: list, show, deactivate.
    Node(cmd::node::NodeArgs),
    /// Application certificates of the selected account: list, show, revoke.
    Cert(cmd::cert::CertArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => cmd::version::run(),
        Command::Sgx(command) => cmd::sgx::run(command),
        Command::Aesmd(args) => cmd::aesmd::run(args),
        Command::Sim(command) => cmd::sim::run(command),
        Command::Quote(command) => cmd::quote::run(command),
        Command::Collateral(command) => cmd::collateral::run(command),
        Command::Convert(args) => cmd::convert::run(*args),
        Command::Run(args) => cmd::run::run(*args),
        Command::Manager(args) => cmd::manager::run(args),
        Command::Login(args) => cmd::client::login(args),
        Command::Logout => cmd::client::logout(),
        Command::Account(args) => cmd::account::run(args),
        Command::App(args) => cmd::app::run(args),
        Command::Image(args) => cmd::image::run(args),
        Command::Task(args) => cmd::task::run(args),
        Command::Zone(args) => cmd::zone::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::User(args) => cmd::user::run(args),
        Command::Registry(args) => cmd::registry::run(args),
        Command::Agent(args) => cmd::agent::run(*args),
        Command::Node(args) => cmd::node::run(args),
        Command::Cert(args) => cmd::cert::run(args),
    };
    cmd::exit(result)
}
