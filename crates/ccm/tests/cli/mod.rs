//! Running the built `ccm` binary from the command-line tests (`tests/*_cli.rs`).
// Each test file uses part of this module; a failed step panics with its reason.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `ccm` with `args` and answers what it did.
pub fn ccm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ccm"))
        .args(args)
        .output()
        .expect("run ccm")
}

/// Runs `ccm` with `args`, which must succeed.
pub fn ok(args: &[&str]) -> Output {
    let out = ccm(args);
    assert!(
        out.status.success(),
        "ccm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A path as an argument.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}
