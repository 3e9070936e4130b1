//! `ccm collateral fetch`, `ccm quote verify --pccs` and `ccm sim pcs` through the built binary,
//! against a PCCS on loopback (`ccm_testkit::pccs`) or `ccm sim pcs` serving a simulated
//! platform's collateral.

// Helpers outside #[test] functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ccm_attest::Collateral;
use ccm_testkit::pccs::{self, Fault};
use cli::{ccm, ok, p};
use tokio::task::block_in_place;

/// 2025-01-01T00:00:00Z, and an hour later.
const T0: &str = "1735689600";
const NOW: &str = "1735693200";

/// A simulated platform made at `at` and a quote of it.
struct Platform {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Platform {
    fn new(at: &str) -> Platform {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        ok(&["sim", "init", "--dir", p(&dir), "--at", at]);
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
        Platform { _tmp: tmp, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The platform's own collateral file.
    fn collateral(&self) -> Collateral {
        read_collateral(&self.path("collateral.json"))
    }

    /// `ccm quote verify` of the platform's quote under its root, with the collateral from
    /// `source` (`--pccs URL` or `--collateral FILE`), at `at` (default: now).
    fn verify(&self, source: &[&str], at: Option<&str>) -> Output {
        let (quote, root) = (self.path("quote.bin"), self.path("root-ca.pem"));
        let mut args = vec!["quote", "verify", "--quote", p(&quote), "--root", p(&root)];
        args.extend_from_slice(source);
        args.extend(at.iter().flat_map(|at| ["--at", *at]));
        ccm(&args)
    }

    /// `ccm collateral fetch` for the platform's quote from `url` into `fetched.json`.
    fn fetch(&self, url: &str, at: Option<&str>) -> Output {
        let (quote, root, out) = (
            self.path("quote.bin"),
            self.path("root-ca.pem"),
            self.path("fetched.json"),
        );
        let mut args = vec![
            "collateral",
            "fetch",
            "--pccs",
            url,
            "--quote",
            p(&quote),
            "--root",
            p(&root),
            "--out",
            p(&out),
        ];
        args.extend(at.iter().flat_map(|at| ["--at", *at]));
        ccm(&args)
    }
}

fn read_collateral(path: &Path) -> Collateral {
    Collateral::from_json(&std::fs::read(path).unwrap()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_writes_verified_collateral_and_verify_uses_the_pccs() {
    let pf = block_in_place(|| Platform::new(T0));
    let (url, server) = pccs::serve(pf.collateral().into_parts(), Fault::None)
        .await
        .unwrap();
    let fetched = block_in_place(|| pf.fetch(&url, Some(NOW)));
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    assert!(stderr(&fetched).contains("SIMULATED root"));
    assert_eq!(read_collateral(&pf.path("fetched.json")), pf.collateral());
    // The PCK CA of the simulated platform is a Platform CA, as the quote's certificate says.
    let seen = server.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|s| s == "pckcrl?ca=platform&encoding=der"),
        "{seen:?}"
    );

    // Verifying through the PCCS gives the same answer as with the collateral file.
    let file = pf.path("collateral.json");
    let (by_pccs, by_file) = block_in_place(|| {
        let a = pf.verify(&["--pccs", &url], Some(NOW));
        let b = pf.verify(&["--collateral", p(&file)], Some(NOW));
        (a, b)
    });
    assert!(by_pccs.status.success(), "{}", stderr(&by_pccs));
    assert!(by_file.status.success(), "{}", stderr(&by_file));
    assert_eq!(by_pccs.stdout, by_file.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collateral_that_does_not_verify_is_not_written() {
    let pf = block_in_place(|| Platform::new(T0));
    let (url, _server) = pccs::serve(pf.collateral().into_parts(), Fault::TcbInfoTampered)
        .await
        .unwrap();
    let (fetch, verify) = block_in_place(|| {
        (
            pf.fetch(&url, Some(NOW)),
            pf.verify(&["--pccs", &url], Some(NOW)),
        )
    });
    let err = stderr(&fetch);
    assert!(!fetch.status.success());
    assert!(err.contains("does not verify; nothing written"), "{err}");
    assert!(err.contains("TCB info signature"), "{err}");
    assert!(!pf.path("fetched.json").exists());
    assert_eq!(verify.status.code(), Some(1));
    let err = stderr(&verify);
    assert!(err.contains("TCB info signature"), "{err}");

    // --collateral and --pccs together, or neither, is a usage error.
    let file = pf.path("collateral.json");
    let both = pf.verify(
        &["--pccs", "http://127.0.0.1:9", "--collateral", p(&file)],
        None,
    );
    assert_eq!(both.status.code(), Some(2));
    let neither = pf.verify(&[], None);
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let made = (now - 40 * 86_400).to_string();
    let (pf, pcs) = block_in_place(|| {
        let pf = Platform::new(&made);
        let pcs = SimPcs::start(&pf.dir);
        (pf, pcs)
    });
    let file = pf.path("collateral.json");
    let (stale, fresh, fetched) = block_in_place(|| {
        (
            pf.verify(&["--collateral", p(&file)], None),
            pf.verify(&["--pccs", &pcs.url], None),
            pf.fetch(&pcs.url, None),
        )
    });
    assert_eq!(stale.status.code(), Some(1));
    assert!(stderr(&stale).contains("expired"));
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    let fetched = read_collateral(&pf.path("fetched.json"));
    let verifier = ccm_attest::Verifier::new(
        ccm_attest::TrustRoots::empty().with(ccm_attest::sim::load_root(&pf.dir).unwrap()),
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

/// The verdict `ccm quote verify --pccs` gives (TCB status, evaluation number), which must
/// verify.
fn verdict(out: &Output) -> (String, u64) {
    assert!(out.status.success(), "{}", stderr(out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["status"].as_str().unwrap().to_string(),
        v["tcb_evaluation_data_number"].as_u64().unwrap(),
    )
}

/// `ccm sim tcb-recovery`: announced in the early set first (the standard verdict stays), then
/// in force: the platform made before it is OutOfDate under the new evaluation number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcb_recovery_is_announced_then_in_force() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    block_in_place(|| {
        let pf = Platform::new(&now);
        let pcs = SimPcs::start(&pf.dir);
        let pccs = ["--pccs", pcs.url.as_str()];
        assert_eq!(verdict(&pf.verify(&pccs, None)), ("UpToDate".into(), 1));

        let out = ok(&["sim", "tcb-recovery", "--dir", p(&pf.dir), "--early"]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("1 in force (standard), 2 published (early)"),
            "{said}"
        );
        assert_eq!(verdict(&pf.verify(&pccs, None)), ("UpToDate".into(), 1));
        let early = ["--pccs", pcs.url.as_str(), "--early"];
        assert_eq!(verdict(&pf.verify(&early, None)), ("OutOfDate".into(), 2));

        let out = ok(&["sim", "tcb-recovery", "--dir", p(&pf.dir)]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("2 in force (standard), 2 published (early)"),
            "{said}"
        );
        let out = pf.verify(&pccs, None);
        assert_eq!(verdict(&out), ("OutOfDate".into(), 2));
        assert!(String::from_utf8_lossy(&out.stdout).contains(ccm_attest::sim::SA_TCB_RECOVERY));
        // The platform's own collateral file still says what it said when it was made.
        let file = pf.path("collateral.json");
        assert_eq!(
            verdict(&pf.verify(&["--collateral", p(&file)], None)),
            ("UpToDate".into(), 1)
        );
    });
}
