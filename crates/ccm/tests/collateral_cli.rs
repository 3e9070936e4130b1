//! `ccm collateral fetch` and `ccm quote verify --pccs` through the built binary, against a PCCS
//! on loopback (`ccm_testkit::pccs`) serving a simulated platform's collateral.

// Helpers outside #[test] functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use ccm_attest::Collateral;
use ccm_testkit::pccs::{self, Fault};

/// 2025-01-01T00:00:00Z, and an hour later.
const T0: &str = "1735689600";
const NOW: &str = "1735693200";

fn ccm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ccm"))
        .args(args)
        .output()
        .expect("run ccm")
}

fn ok(args: &[&str]) -> Output {
    let out = ccm(args);
    assert!(
        out.status.success(),
        "ccm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A simulated platform in `dir` and a quote of it at `dir/quote.bin`.
fn platform(dir: &Path) {
    ok(&["sim", "init", "--dir", p(dir), "--at", T0]);
    let quote = dir.join("quote.bin");
    ok(&[
        "quote",
        "generate",
        "--platform",
        p(dir),
        "--mrenclave",
        &"1".repeat(64),
        "--mrsigner",
        &"2".repeat(64),
        "--isvprodid",
        "1",
        "--isvsvn",
        "1",
        "--report-data",
        "c0ffee",
        "--out",
        p(&quote),
    ]);
}

fn collateral_of(dir: &Path) -> Collateral {
    Collateral::from_json(&std::fs::read(dir.join("collateral.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_writes_verified_collateral_and_verify_uses_the_pccs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    platform(dir);
    let (url, server) = pccs::serve(collateral_of(dir).into_parts(), Fault::None)
        .await
        .unwrap();
    let (quote, root, out) = (
        dir.join("quote.bin"),
        dir.join("root-ca.pem"),
        dir.join("fetched.json"),
    );
    let fetched = tokio::task::spawn_blocking({
        let (url, quote, root, out) = (url.clone(), quote.clone(), root.clone(), out.clone());
        move || {
            ok(&[
                "collateral",
                "fetch",
                "--pccs",
                &url,
                "--quote",
                p(&quote),
                "--root",
                p(&root),
                "--at",
                NOW,
                "--out",
                p(&out),
            ])
        }
    })
    .await
    .unwrap();
    let note = String::from_utf8_lossy(&fetched.stderr);
    assert!(note.contains("SIMULATED root"), "{note}");
    let written = Collateral::from_json(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(written, collateral_of(dir));
    // The PCK CA of the simulated platform is a Platform CA, as the quote's certificate says.
    assert!(
        server
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s == "pckcrl?ca=platform&encoding=der"),
        "{:?}",
        server.seen.lock().unwrap()
    );

    // Verifying through the PCCS gives the same answer as with the collateral file.
    let (by_pccs, by_file) = tokio::task::spawn_blocking({
        let (url, quote, root) = (url.clone(), quote.clone(), root.clone());
        let file = dir.join("collateral.json");
        move || {
            let a = ok(&[
                "quote",
                "verify",
                "--quote",
                p(&quote),
                "--pccs",
                &url,
                "--root",
                p(&root),
                "--at",
                NOW,
            ]);
            let b = ok(&[
                "quote",
                "verify",
                "--quote",
                p(&quote),
                "--collateral",
                p(&file),
                "--root",
                p(&root),
                "--at",
                NOW,
            ]);
            (a.stdout, b.stdout)
        }
    })
    .await
    .unwrap();
    assert_eq!(by_pccs, by_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collateral_that_does_not_verify_is_not_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    platform(dir);
    let (url, _server) = pccs::serve(collateral_of(dir).into_parts(), Fault::TcbInfoTampered)
        .await
        .unwrap();
    let (quote, root, out) = (
        dir.join("quote.bin"),
        dir.join("root-ca.pem"),
        dir.join("fetched.json"),
    );
    let (fetch, verify) = tokio::task::spawn_blocking({
        let (quote, root, out) = (quote.clone(), root.clone(), out.clone());
        move || {
            let fetch = ccm(&[
                "collateral",
                "fetch",
                "--pccs",
                &url,
                "--quote",
                p(&quote),
                "--root",
                p(&root),
                "--at",
                NOW,
                "--out",
                p(&out),
            ]);
            let verify = ccm(&[
                "quote",
                "verify",
                "--quote",
                p(&quote),
                "--pccs",
                &url,
                "--root",
                p(&root),
                "--at",
                NOW,
            ]);
            (fetch, verify)
        }
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&fetch.stderr);
    assert!(!fetch.status.success());
    assert!(err.contains("does not verify; nothing written"), "{err}");
    assert!(err.contains("TCB info signature"), "{err}");
    assert!(!out.exists());
    assert_eq!(verify.status.code(), Some(1));
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(err.contains("TCB info signature"), "{err}");

    // --collateral and --pccs together, or neither, is a usage error.
    let both = ccm(&[
        "quote",
        "verify",
        "--quote",
        p(&quote),
        "--pccs",
        "http://127.0.0.1:9",
        "--collateral",
        p(&dir.join("collateral.json")),
    ]);
    assert_eq!(both.status.code(), Some(2));
    let neither = ccm(&["quote", "verify", "--quote", p(&quote)]);
    assert_eq!(neither.status.code(), Some(2));
}

/// `ccm sim pcs` until dropped.
struct SimPcs {
    child: std::process::Child,
    url: String,
}

impl SimPcs {
    fn start(dir: &Path) -> SimPcs {
        use std::io::BufRead as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ccm"))
            .args(["sim", "pcs", "--dir", p(dir), "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start ccm sim pcs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("http://127.0.0.1:"), "{line:?}");
        SimPcs {
            child,
            url: line.trim().to_string(),
        }
    }
}

impl Drop for SimPcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A platform made 40 days ago: its collateral file has expired, and `ccm sim pcs` serves
/// collateral issued now, as Intel's PCS would, so the quote verifies through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_pcs_serves_fresh_collateral() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let made = (now - 40 * 86_400).to_string();
    let pcs = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            ok(&["sim", "init", "--dir", p(&dir), "--at", &made]);
            ok(&[
                "quote",
                "generate",
                "--platform",
                p(&dir),
                "--mrenclave",
                &"1".repeat(64),
                "--mrsigner",
                &"2".repeat(64),
                "--isvprodid",
                "1",
                "--isvsvn",
                "1",
                "--report-data",
                "c0ffee",
                "--out",
                p(&dir.join("quote.bin")),
            ]);
            SimPcs::start(&dir)
        }
    })
    .await
    .unwrap();
    let (quote, root) = (dir.join("quote.bin"), dir.join("root-ca.pem"));
    let (stale, fresh, out) = tokio::task::spawn_blocking({
        let (url, dir) = (pcs.url.clone(), dir.clone());
        move || {
            let stale = ccm(&[
                "quote",
                "verify",
                "--quote",
                p(&quote),
                "--collateral",
                p(&dir.join("collateral.json")),
                "--root",
                p(&root),
            ]);
            let fresh = ccm(&[
                "quote",
                "verify",
                "--quote",
                p(&quote),
                "--pccs",
                &url,
                "--root",
                p(&root),
            ]);
            let out = dir.join("fetched.json");
            ok(&[
                "collateral",
                "fetch",
                "--pccs",
                &url,
                "--quote",
                p(&quote),
                "--root",
                p(&root),
                "--out",
                p(&out),
            ]);
            (stale, fresh, out)
        }
    })
    .await
    .unwrap();
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("expired"));
    assert!(
        fresh.status.success(),
        "{}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    let fetched = Collateral::from_json(&std::fs::read(&out).unwrap()).unwrap();
    let verifier = ccm_attest::Verifier::new(
        ccm_attest::TrustRoots::empty().with(ccm_attest::sim::load_root(&dir).unwrap()),
    );
    let summary = verifier.check_collateral(&fetched, now).unwrap();
    assert!(summary.simulated);
    assert!(summary.valid_until > now + 29 * 86_400, "{summary:?}");
    assert!(summary.tcb_info_issued + 3_600 > now, "{summary:?}");

    // Labelled, and refusing what it does not serve as the API does.
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(ccm_pki::pinning::client_config_with_roots(&[]).unwrap())
        .build()
        .unwrap();
    let get = |path: &str| http.get(format!("{}{path}", pcs.url)).send();
    let crl = get("/sgx/certification/v4/rootcacrl").await.unwrap();
    assert_eq!(crl.headers()["ccm-simulated"], "true");
    let first = crl.text().await.unwrap();
    let second = get("/sgx/certification/v4/rootcacrl")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_ne!(
        first, second,
        "each CRL is issued anew, with a higher number"
    );
    for (path, status) in [
        ("/sgx/certification/v4/pckcrl?ca=processor", 404),
        ("/sgx/certification/v4/pckcrl?ca=nobody", 400),
        ("/sgx/certification/v4/tcb?fmspc=zz", 400),
        (
            "/sgx/certification/v4/tcb?fmspc=00CC51000000&update=later",
            400,
        ),
        ("/tdx/certification/v4/tcb?fmspc=00CC51000000", 404),
    ] {
        let resp = get(path).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        assert!(resp.headers().contains_key("error-code"), "{path}");
        assert_eq!(resp.headers()["ccm-simulated"], "true", "{path}");
    }
}
