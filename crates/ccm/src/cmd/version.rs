//! `ccm version`.

/// Prints the version of this build.
pub fn run() -> anyhow::Result<()> {
    println!("ccm {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}
