//! Test support: real registries, PostgreSQL, runc and browsers started on 127.0.0.1 for ccm's tests.
//!
//! One module per harness. Harnesses start real programs from Debian packages (listed in
//! `scripts/apt-packages`) and fail loudly when one is missing: a test that needs PostgreSQL
//! must not pass by skipping.
#![deny(missing_docs)]

pub mod postgres;

use std::path::PathBuf;

/// Errors of the test harnesses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// PostgreSQL is not installed.
    #[error("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (install the Debian package `postgresql`, or set CCM_TEST_PG_BIN)")]
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
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}
