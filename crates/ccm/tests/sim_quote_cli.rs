//! The `ccm sim` / `ccm quote` command-line contract, run through the built binary.

// Helpers outside #[test] functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use cli::{ccm, ok, p};
use serde_json::Value;

const MRENCLAVE: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const MRSIGNER: &str = "2222222222222222222222222222222222222222222222222222222222222222";
/// 2025-01-01T00:00:00Z, and an hour later.
const T0: &str = "1735689600";
const NOW: &str = "1735693200";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn init(dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["sim", "init", "--dir", p(dir), "--at", T0];
    args.extend_from_slice(extra);
    serde_json::from_slice(&ok(&args).stdout).unwrap()
}

fn generate(platform: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "quote",
        "generate",
        "--platform",
        p(platform),
        "--mrenclave",
        MRENCLAVE,
        "--mrsigner",
        MRSIGNER,
        "--isvprodid",
        "7",
        "--isvsvn",
        "2",
        "--report-data",
        "c0ffee",
        "--out",
        p(out),
    ];
    args.extend_from_slice(extra);
    ccm(&args)
}

fn verify(quote: &Path, collateral: &Path, root: Option<&Path>, at: &str) -> Output {
    let mut args = vec![
        "quote",
        "verify",
        "--quote",
        p(quote),
        "--collateral",
        p(collateral),
        "--at",
        at,
    ];
    if let Some(root) = root {
        args.extend_from_slice(&["--root", p(root)]);
    }
    ccm(&args)
}

#[test]
fn init_generate_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("platform");
    let info = init(&dir, &[]);
    assert_eq!(info["simulated"], true);
    assert_eq!(info["tcb_status"], "UpToDate");
    for file in ["root-ca.pem", "collateral.json", "platform.json"] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    for key in [
        "attestation.key",
        "pck.key",
        "ccm-sim-cpu.key",
        "ca/root-ca.key",
    ] {
        let mode = std::fs::metadata(dir.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    let quote = tmp.path().join("quote.bin");
    let out = generate(&dir, &quote, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("SIMULATED"));

    let out = verify(
        &quote,
        &dir.join("collateral.json"),
        Some(&dir.join("root-ca.pem")),
        NOW,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "UpToDate");
    assert_eq!(v["advisory_ids"], serde_json::json!([]));
    assert_eq!(v["qe_status"], "UpToDate");
    assert_eq!(v["platform_status"], "UpToDate");
    assert_eq!(v["mrenclave"], MRENCLAVE);
    assert_eq!(v["mrsigner"], MRSIGNER);
    assert_eq!(v["isvprodid"], 7);
    assert_eq!(v["isvsvn"], 2);
    assert_eq!(v["debug"], false);
    assert_eq!(v["report_data"], format!("c0ffee{}", "0".repeat(122)));
    assert_eq!(v["fmspc"], "00cc51000000");
    assert_eq!(v["simulated"], true);
}

#[test]
fn default_root_is_intels_so_simulated_quotes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("platform");
    init(&dir, &[]);
    let quote = tmp.path().join("quote.bin");
    assert!(generate(&dir, &quote, &[]).status.success());
    let out = verify(&quote, &dir.join("collateral.json"), None, NOW);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not issued by a trusted root"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn statuses_debug_and_add_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    init(&root, &["--tcb-status", "OutOfDate"]);
    let second = tmp.path().join("second");
    let out = ok(&[
        "sim",
        "add-platform",
        "--root",
        p(&root),
        "--dir",
        p(&second),
        "--at",
        T0,
        "--tcb-status",
        "ConfigurationNeeded",
        "--qe-status",
        "OutOfDate",
    ]);
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["qe"]["status"], "OutOfDate");

    let anchor = root.join("root-ca.pem");
    let q1 = tmp.path().join("q1.bin");
    assert!(generate(&root, &q1, &[]).status.success());
    let v: Value = serde_json::from_slice(
        &verify(&q1, &root.join("collateral.json"), Some(&anchor), NOW).stdout,
    )
    .unwrap();
    assert_eq!(v["status"], "OutOfDate");
    assert_eq!(v["advisory_ids"].as_array().unwrap().len(), 2);

    let q2 = tmp.path().join("q2.bin");
    assert!(generate(&second, &q2, &["--debug"]).status.success());
    let out = verify(&q2, &second.join("collateral.json"), Some(&anchor), NOW);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "OutOfDateConfigurationNeeded");
    assert_eq!(v["platform_status"], "ConfigurationNeeded");
    assert_eq!(v["qe_status"], "OutOfDate");
    assert_eq!(v["debug"], true);
}

#[test]
fn refusals_exit_1_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("revoked");
    init(&dir, &["--revoked"]);
    let anchor = dir.join("root-ca.pem");
    let collateral = dir.join("collateral.json");
    let quote = tmp.path().join("quote.bin");
    assert!(generate(&dir, &quote, &[]).status.success());

    let out = verify(&quote, &collateral, Some(&anchor), NOW);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));

    let ok_dir = tmp.path().join("ok");
    init(&ok_dir, &[]);
    let quote = tmp.path().join("ok.bin");
    assert!(generate(&ok_dir, &quote, &[]).status.success());
    let anchor = ok_dir.join("root-ca.pem");
    let collateral = ok_dir.join("collateral.json");

    // 31 days later the collateral has expired.
    let later = (T0.parse::<u64>().unwrap() + 31 * 86_400).to_string();
    let out = verify(&quote, &collateral, Some(&anchor), &later);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));

    // A flipped byte of the enclave's REPORT body.
    let mut bytes = std::fs::read(&quote).unwrap();
    bytes[48 + 64] ^= 1;
    let tampered = tmp.path().join("tampered.bin");
    std::fs::write(&tampered, &bytes).unwrap();
    let out = verify(&tampered, &collateral, Some(&anchor), NOW);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("quote signature is invalid"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);

    // Not a quote, not collateral, a missing file: still a one-line "no".
    let out = verify(&collateral, &collateral, Some(&anchor), NOW);
    assert_eq!(out.status.code(), Some(1));
    let out = verify(&quote, &quote, Some(&anchor), NOW);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("collateral"), "{}", stderr(&out));
    let out = verify(&tmp.path().join("missing"), &collateral, Some(&anchor), NOW);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("platform");
    init(&dir, &[]);
    let before = std::fs::read(dir.join("platform.json")).unwrap();

    // A directory that already holds a platform is never overwritten.
    let out = ccm(&["sim", "init", "--dir", p(&dir)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("already holds a simulated platform"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(dir.join("platform.json")).unwrap(), before);

    // Unknown status, QE status the identity does not have, bad FMSPC.
    let other = tmp.path().join("other");
    assert_eq!(
        ccm(&["sim", "init", "--dir", p(&other), "--tcb-status", "Great"])
            .status
            .code(),
        Some(2)
    );
    let out = ccm(&[
        "sim",
        "init",
        "--dir",
        p(&other),
        "--qe-status",
        "ConfigurationNeeded",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("QE status"), "{}", stderr(&out));
    assert_eq!(
        ccm(&["sim", "init", "--dir", p(&other), "--fmspc", "00"])
            .status
            .code(),
        Some(2)
    );
    assert!(!other.join("platform.json").exists());

    // add-platform needs a root made by init.
    let out = ccm(&[
        "sim",
        "add-platform",
        "--root",
        p(&other),
        "--dir",
        p(&tmp.path().join("x")),
    ]);
    assert_eq!(out.status.code(), Some(2));

    // REPORTDATA longer than 64 bytes, a short MRENCLAVE: refused, no quote written.
    let quote = tmp.path().join("quote.bin");
    let long = "00".repeat(65);
    let out = ccm(&[
        "quote",
        "generate",
        "--platform",
        p(&dir),
        "--mrenclave",
        MRENCLAVE,
        "--mrsigner",
        MRSIGNER,
        "--isvprodid",
        "1",
        "--isvsvn",
        "1",
        "--report-data",
        &long,
        "--out",
        p(&quote),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("at most 64"), "{}", stderr(&out));
    let out = ccm(&[
        "quote",
        "generate",
        "--platform",
        p(&dir),
        "--mrenclave",
        "1234",
        "--mrsigner",
        MRSIGNER,
        "--isvprodid",
        "1",
        "--isvsvn",
        "1",
        "--report-data",
        "",
        "--out",
        p(&quote),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!quote.exists());
}
