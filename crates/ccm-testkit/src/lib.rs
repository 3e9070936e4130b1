//! Test support: real registries, PostgreSQL, runc and browsers started on 127.0.0.1 for ccm's tests.
//!
//! One module per harness. Harnesses start real programs from Debian packages (listed in
//! `scripts/apt-packages`) and fail loudly when one is missing: a test that needs PostgreSQL
//! must not pass by skipping.
//!
//! [`flask`] builds the seed journey's Python Flask image from Debian packages (cached outside the
//! clone) and pushes it with `ccm-image`, the one ccm crate this crate depends on.
#![deny(missing_docs)]

pub mod aesmd;
pub mod browser;
pub mod enclave;
pub mod flask;
pub mod pccs;
pub mod postgres;
pub mod registry;
pub mod runc;

use std::path::PathBuf;

/// Errors of the test harnesses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// PostgreSQL is not installed.
    #[error(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (install the Debian package `postgresql`, or set CCM_TEST_PG_BIN)"
    )]
    PostgresMissing,
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A program failed.
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// Its standard error.
        stderr: String,
    },
    /// A program a harness needs is not installed.
    #[error("{program} not found (install the Debian package `{package}`)")]
    Missing {
        /// The program.
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A started program did not become ready in time.
    #[error("{what} not ready after {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: std::time::Duration,
    },
    /// Building, caching or pushing the python-flask test image failed.
    #[error(transparent)]
    Flask(Box<flask::FlaskError>),
    /// A WebDriver command failed (element missing, navigation failed, ...).
    #[error("browser: {action}: {message}")]
    WebDriver {
        /// What the test tried to do, and on which page.
        action: String,
        /// What chromedriver answered.
        message: String,
    },
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}
