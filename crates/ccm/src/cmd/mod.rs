//! Subcommand implementations, one module per group.

pub mod account;
pub mod aesmd;
pub mod agent;
pub mod app;
pub mod audit;
pub mod cert;
pub mod client;
pub mod collateral;
pub mod convert;
pub mod image;
pub mod manager;
pub mod node;
pub mod quote;
pub mod quote_fetch;
pub mod registry;
pub mod run;
pub mod sgx;
pub mod sim;
pub mod sim_pcs;
pub mod task;
pub mod user;
pub mod version;
pub mod zone;

use std::process::ExitCode;

/// Logging for the long-running services (`manager`, `agent`, `aesmd`): `RUST_LOG` filter
/// (default `info`), on stderr, as text or JSON lines.
pub(crate) fn init_service_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Another part of the binary may have installed a subscriber already; keep it then.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Turns a command's result into the process exit code, printing the error chain on one line.
///
/// Commands that need a specific non-zero code (for example `ccm quote verify`, which exits 1 on a
/// refused quote) return [`Failure`] inside the `anyhow::Error`.
pub fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = err.downcast_ref::<Failure>().map_or(2, |f| f.code);
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::from(code)
        }
    }
}

/// An error with a chosen exit code (1 is "the answer is no", 2 is "the command failed").
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// The one-line reason.
    pub message: String,
}
