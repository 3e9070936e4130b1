//! The real `ccm` binary: `ccm manager` as a process, driven by the client commands.
// Test support functions abort the test with the reason when a setup step fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const PASSWORD: &str = "correct horse battery";

struct Manager {
    child: Child,
    url: String,
    fingerprint: Option<String>,
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ccm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ccm"))
}

/// Starts `ccm manager` on a free port and reads the address and fingerprint it prints.
fn start_manager(data: &Path, extra: &[&str]) -> Manager {
    let mut child = ccm()
        .args(["manager", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("ccm manager listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    let second = lines.next().unwrap().unwrap();
    let fingerprint = second
        .strip_prefix("TLS certificate SHA-256 fingerprint: ")
        .map(String::from);
    // Keep draining stdout so the manager never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Manager {
        child,
        url,
        fingerprint,
    }
}

struct Cli {
    creds: PathBuf,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, "")
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = ccm()
            .args(args)
            .env("CCM_CREDENTIALS", &self.creds)
            .env_remove("CCM_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ccm {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    #[track_caller]
    fn fails(&self, args: &[&str], code: i32, needle: &str) {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "ccm {args:?}: {err}");
        assert!(
            err.contains(needle),
            "ccm {args:?}: expected {needle:?} in {err}"
        );
    }
}

fn operator_workflow(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let status = ccm()
        .args(["sim", "init", "--dir"])
        .arg(&sim)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let root = sim.join("root-ca.pem").to_string_lossy().into_owned();
    let mut extra = vec!["--trust-simulated-root", root.as_str()];
    if let Some(db) = database {
        extra.extend(["--database", db]);
    }
    let m = start_manager(&dir.path().join("data"), &extra);
    assert!(m.url.starts_with("https://127.0.0.1:"), "{}", m.url);
    let fp = m
        .fingerprint
        .clone()
        .expect("HTTPS by default prints a fingerprint");
    let cli = Cli {
        creds: dir.path().join("cfg/ccm/credentials.toml"),
    };
    // The first sign-up presents the setup token the manager wrote into its data directory.
    let setup_token = dir.path().join("data/setup-token");
    let setup_token = setup_token.to_str().unwrap();

    // Unpinned HTTPS is refused without a decision; a wrong pin fails the handshake.
    cli.fails(
        &[
            "login",
            "--manager",
            &m.url,
            "--email",
            "a@example.com",
            "--password-stdin",
        ],
        2,
        "not pinned",
    );
    let wrong = "00".repeat(32);
    let out = cli.run_stdin(
        &[
            "login",
            "--manager",
            &m.url,
            "--fingerprint",
            &wrong,
            "--email",
            "a@example.com",
            "--password-stdin",
            "--signup",
        ],
        PASSWORD,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = cli.run_stdin(
        &[
            "login",
            "--manager",
            &m.url,
            "--fingerprint",
            &fp,
            "--email",
            "a@example.com",
            "--password-stdin",
            "--signup",
            "--setup-token-file",
            setup_token,
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&cli.creds).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials are private");
    let stored = std::fs::read_to_string(&cli.creds).unwrap();
    assert!(stored.contains("ccmst1_") && !stored.contains(PASSWORD));

    // Account, app, image, tasks.
    let acct = cli.json(&["account", "create", "acme", "--select"]);
    assert_eq!(acct["name"], "acme");
    let accounts = cli.json(&["account", "list"]);
    assert_eq!(accounts.as_array().unwrap().len(), 1);
    assert!(cli.ok(&["account", "list"]).contains("acme"));
    let app = cli.json(&[
        "app",
        "create",
        "flask",
        "--input-image",
        "registry.example/python-flask",
        "--output-image",
        "registry.example/python-flask-sgx",
        "--isvprodid",
        "1",
        "--isvsvn",
        "1",
        "--mem-size",
        "1024",
        "--threads",
        "128",
        "--domain",
        "myapp.domain.dom",
        "--cert-subject",
        "myapp.domain.dom",
        "--label",
        "team=web",
    ]);
    assert_eq!(app["mem_size"], 1024);
    assert_eq!(app["certificate"]["key_path"], "/run/key.pem");
    cli.fails(
        &[
            "app",
            "create",
            "bad",
            "--input-image",
            "x",
            "--output-image",
            "y",
            "--isvprodid",
            "1",
            "--isvsvn",
            "1",
            "--mem-size",
            "0",
            "--threads",
            "1",
        ],
        2,
        "422 validation_failed: mem_size",
    );
    assert!(
        cli.ok(&["app", "show", "flask"])
            .contains("myapp.domain.dom")
    );
    let upd = cli.json(&["app", "update", "flask", "--threads", "64"]);
    assert_eq!(upd["threads"], 64);
    let image = cli.json(&[
        "image",
        "create",
        "--app",
        "flask",
        "--image-name",
        "registry.example/python-flask-sgx",
        "--tag",
        "1.0",
        "--mrenclave",
        &"ab".repeat(32),
        "--mrsigner",
        &"cd".repeat(32),
    ]);
    assert_eq!(image["status"]["status"], "PENDING");
    let tasks = cli.json(&["task", "list", "--status", "inprogress"]);
    assert_eq!(tasks.as_array().unwrap().len(), 2);
    let build_task = image["pending_task_id"].as_str().unwrap();
    let done = cli.json(&["task", "approve", build_task]);
    assert_eq!(done["status"]["status"], "SUCCESS");
    cli.fails(&["task", "approve", build_task], 2, "409 invalid_state");
    let domain_task = app["pending_task_id"].as_str().unwrap();
    let denied = cli.json(&["task", "deny", domain_task, "--reason", "not ours"]);
    assert_eq!(denied["approvals"][0]["denial_reason"], "not ours");
    let images = cli.json(&["image", "list"]);
    assert_eq!(images[0]["status"]["status"], "WHITELISTED");

    // Join tokens carry the manager's fingerprint.
    let tok = cli.json(&[
        "zone",
        "token",
        "create",
        "--single-use",
        "--expires-in",
        "600",
    ]);
    let parsed = ccm_api::zones::JoinToken::parse(tok["token"].as_str().unwrap()).unwrap();
    assert_eq!(
        parsed.manager_fingerprint.map(hex::encode),
        ccm_pki::parse_fingerprint(&fp).map(hex::encode)
    );
    let listed = cli.json(&["zone", "token", "list"]);
    assert_eq!(listed[0]["single_use"], true);
    // The zone's node settings.
    let zone = cli.json(&[
        "zone",
        "update",
        "--refresh-interval",
        "20",
        "--renewal-threshold",
        "25",
        "--require-approval",
        "true",
    ]);
    assert_eq!(zone["node_refresh_interval"], 20, "{zone}");
    assert_eq!(zone["node_renewal_threshold"], 25);
    assert_eq!(zone["node_enrollment"]["require_approval"], true);
    assert!(cli.ok(&["zone", "show"]).contains("25 %"));
    cli.fails(
        &["zone", "update", "--renewal-threshold", "99"],
        2,
        "node_renewal_threshold",
    );
    cli.ok(&["zone", "token", "revoke", tok["token_id"].as_str().unwrap()]);
    assert!(
        cli.ok(&["zone", "certificate"])
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    // Collateral (the system administrator's): an import becomes current, the status lists it,
    // the export imports again without changing anything, and junk is refused.
    let collateral = sim.join("collateral.json").to_string_lossy().into_owned();
    assert!(
        cli.ok(&["collateral", "import", &collateral])
            .contains("set 0: now current")
    );
    let sets = cli.json(&["collateral", "status"]);
    assert_eq!(sets[0]["source"], "import", "{sets}");
    assert_eq!(sets[0]["simulated"], true, "{sets}");
    assert!(
        cli.ok(&["collateral", "status"])
            .contains("import (SIMULATED)")
    );
    let bundle = dir.path().join("bundle.json");
    cli.ok(&["collateral", "export", "--out", bundle.to_str().unwrap()]);
    assert!(
        cli.ok(&["collateral", "import", bundle.to_str().unwrap()])
            .contains("set 0: no newer than the current set: unchanged")
    );
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, r#"{"tcb_info": "x"}"#).unwrap();
    let out = cli.run(&["collateral", "import", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not QuoteCollateralV3 JSON"),
        "{out:?}"
    );

    // The first user is system administrator: the whole chain verifies.
    let report = cli.json(&["audit", "verify"]);
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["complete_chain"], true);
    assert!(report["entries"].as_u64().unwrap() > 10);
    assert!(cli.ok(&["audit", "list"]).contains("task.approve"));

    cli.fails(&["account", "delete", "acme"], 2, "--yes");
    cli.ok(&["account", "delete", "acme", "--yes"]);
    cli.fails(&["app", "list"], 2, "400 no_account_selected");
    cli.ok(&["logout"]);
    cli.fails(&["app", "list"], 2, "not logged in");
}

#[test]
fn operator_workflow_sqlite() {
    operator_workflow(None);
}

#[test]
fn operator_workflow_postgres() {
    let db = ccm_testkit::postgres::database().expect("PostgreSQL test cluster");
    operator_workflow(Some(&db.url));
}

#[test]
fn trust_on_first_use_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = start_manager(&dir.path().join("data"), &[]);
    let cli = Cli {
        creds: dir.path().join("creds.toml"),
    };
    let setup_token = dir.path().join("data/setup-token");
    let out = cli.run_stdin(
        &[
            "login",
            "--manager",
            &m.url,
            "--trust-on-first-use",
            "--email",
            "t@example.com",
            "--password-stdin",
            "--signup",
            "--setup-token-file",
            setup_token.to_str().unwrap(),
        ],
        PASSWORD,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(m.fingerprint.as_deref().unwrap()),
        "TOFU shows the fingerprint: {err}"
    );
    // The pin is stored and used from then on.
    let stored = std::fs::read_to_string(&cli.creds).unwrap();
    let fp_hex =
        hex::encode(ccm_pki::parse_fingerprint(m.fingerprint.as_deref().unwrap()).unwrap());
    assert!(stored.contains(&fp_hex));
    assert!(cli.ok(&["account", "list"]).contains("ACCT_ID"));
    // SIGTERM: graceful exit with status 0.
    let pid = m.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = m.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn manager_rejects_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = ccm()
        .args(["manager", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--database", "mysql://root@localhost/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
    let out = ccm()
        .args(["manager", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("CCM_TOKEN_TTL_SECS", "never")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CCM_TOKEN_TTL_SECS"));
}
