//! `ccm image create` against a real `ccm manager` process converting from a real
//! `docker-registry` with htpasswd authentication: `--wait` follows the conversion to the end,
//! a failure exits 1 with its reason, and a manager killed with SIGKILL in the middle of a
//! conversion picks the job up again when it starts (the job is queued again, DESIGN.md and
//! `ccm_manager::conversion`).
// Test helpers abort the test with the reason when a setup step fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ccm_image::oci::Platform;
use ccm_image::{
    Credentials, Destination, Location, NoProgress, Registries, RegistryOptions, Source,
};
use ccm_testkit::registry::Registry;
use ccm_testkit::runc::{Entry, TestImage};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";
const REG_USER: &str = "pusher";
const REG_PASSWORD: &str = "Cli-Reg1stry-Secret";

fn ccm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ccm"))
}

/// A registry with auth holding a small image at `team/app:1`.
fn registry() -> Registry {
    let reg = Registry::start_with_auth(REG_USER, REG_PASSWORD).unwrap();
    let work = tempfile::tempdir().unwrap();
    let image = TestImage {
        layers: vec![vec![
            Entry::dir("app"),
            Entry::exe("app/server", vec![0x7f; 2048]),
            Entry::file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
        ]],
        entrypoint: Some(vec!["/app/server".into()]),
        ..Default::default()
    };
    let layout = work.path().join("layout");
    image.write_oci_layout(&layout, "app").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let regs = Registries::new(&RegistryOptions {
            insecure: vec![reg.host()],
            ..Default::default()
        })
        .unwrap();
        let src = Source::open(
            &format!("oci:{}:app", layout.display()).parse().unwrap(),
            &regs,
            None,
        )
        .await
        .unwrap();
        let dst = Destination::open(
            &format!("{}/team/app:1", reg.host())
                .parse::<Location>()
                .unwrap(),
            &regs,
            Some(Credentials {
                username: REG_USER.into(),
                password: REG_PASSWORD.into(),
            }),
        )
        .await
        .unwrap();
        ccm_image::copy(&src, &dst, &Platform::linux_amd64(), &NoProgress)
            .await
            .unwrap();
    });
    reg
}

/// A "registry" that accepts connections and never answers.
fn black_hole() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    addr
}

struct Manager(Child);

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ccm manager` (plain HTTP) on `port` and waits for its first line.
fn start_manager(data: &Path, port: u16, extra: &[&str]) -> Manager {
    let mut child = ccm()
        .args(["manager", "--insecure-http", "--open-signup", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("ccm manager listening on http://"),
        "{first}"
    );
    std::thread::spawn(move || for _ in lines {});
    Manager(child)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cli {
    creds: std::path::PathBuf,
}

impl Cli {
    fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
        let mut child = ccm()
            .args(args)
            .env("CCM_CREDENTIALS", &self.creds)
            .env_remove("CCM_PASSWORD")
            .env_remove("CCM_OUTPUT_CREDS")
            .env_remove("CCM_INPUT_CREDS")
            .env_remove("CCM_REGISTRY_CREDS")
            .envs(env.iter().copied())
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
    fn json(&self, args: &[&str], env: &[(&str, &str)]) -> (Value, String) {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = self.run(&a, env, "");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "ccm {args:?} failed: {err}");
        (serde_json::from_slice(&out.stdout).unwrap(), err)
    }
}

fn setup(dir: &Path, port: u16) -> Cli {
    let cli = Cli {
        creds: dir.join("cfg/credentials.toml"),
    };
    let out = cli.run(
        &[
            "login",
            "--manager",
            &format!("http://127.0.0.1:{port}"),
            "--email",
            "a@example.com",
            "--password-stdin",
            "--signup",
        ],
        &[],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cli.json(&["account", "create", "acme", "--select"], &[]);
    cli
}

fn create_app(cli: &Cli, name: &str, host: &str) {
    cli.json(
        &[
            "app",
            "create",
            name,
            "--input-image",
            &format!("{host}/team/app"),
            "--output-image",
            &format!("{host}/team/app-sgx"),
            "--isvprodid",
            "5",
            "--isvsvn",
            "2",
            "--mem-size",
            "64",
            "--threads",
            "4",
            "--domain",
            "app.example.test",
            "--cert-subject",
            "app.example.test",
        ],
        &[],
    );
}

#[test]
fn image_create_waits_for_the_conversion() {
    let reg = registry();
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let launcher = dir.path().join("ccm-launch");
    std::fs::write(&launcher, b"test launcher").unwrap();
    let port = free_port();
    let _m = start_manager(
        &dir.path().join("data"),
        port,
        &[
            "--insecure-registry",
            &host,
            "--launcher",
            launcher.to_str().unwrap(),
        ],
    );
    let cli = setup(dir.path(), port);
    create_app(&cli, "flask", &host);

    let good = format!("{REG_USER}:{REG_PASSWORD}");
    let (image, progress) = cli.json(
        &["image", "create", "--app", "flask", "--tag", "1", "--wait"],
        &[("CCM_OUTPUT_CREDS", &good)],
    );
    assert_eq!(image["conversion"]["status"], "SUCCEEDED", "{image}");
    assert_eq!(image["docker_info"]["docker_version"], "1");
    assert_eq!(image["enclave_info"]["isvprodid"], 5);
    assert_eq!(
        image["enclave_info"]["mrenclave"].as_str().unwrap().len(),
        64
    );
    assert!(
        image["docker_info"]["docker_image_sha"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        image["pending_task_id"].is_string(),
        "the BUILD_WHITELIST task"
    );
    assert!(!image.to_string().contains(REG_PASSWORD));
    assert!(!progress.contains(REG_PASSWORD));

    // Text output of a finished job, through `image progress`.
    let id = image["build_id"].as_str().unwrap();
    let out = cli.run(&["image", "progress", id], &[], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("SUCCEEDED") && text.contains("100% (done)"),
        "{text}"
    );

    // Wrong output credentials (given as a flag this time): exit 1 with the reason.
    let bad = format!("{REG_USER}:not-the-password");
    let out = cli.run(
        &[
            "image",
            "create",
            "--app",
            "flask",
            "--tag",
            "2",
            "--input-tag",
            "1",
            "--input-creds",
            &good,
            "--output-creds",
            &bad,
            "--wait",
        ],
        &[],
        "",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "failed: authentication failed for registry {host}"
        )),
        "{err}"
    );
    assert!(!err.contains("not-the-password") && !err.contains(REG_PASSWORD));
    // A missing tag is refused before anything is recorded.
    let out = cli.run(&["image", "create", "--app", "flask"], &[], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tag"));
}

#[test]
fn a_killed_manager_resumes_its_conversion() {
    let hole = black_hole();
    let dir = tempfile::tempdir().unwrap();
    let launcher = dir.path().join("ccm-launch");
    std::fs::write(&launcher, b"test launcher").unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let args = [
        "--insecure-registry",
        hole.as_str(),
        "--launcher",
        launcher.to_str().unwrap(),
    ];
    let mut m = start_manager(&data, port, &args);
    let cli = setup(dir.path(), port);
    create_app(&cli, "stuck", &hole);
    let (image, _) = cli.json(
        &["image", "create", "--app", "stuck", "--tag", "1"],
        &[("CCM_REGISTRY_CREDS", "u:secret-for-the-hole")],
    );
    let id = image["build_id"].as_str().unwrap().to_owned();
    let wait = |pred: &dyn Fn(&Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (p, _) = cli.json(&["image", "progress", &id], &[]);
            if pred(&p) {
                return p;
            }
            assert!(Instant::now() < deadline, "{p}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait(&|p| p["conversion"]["phase"] == "resolving the input image");

    // SIGKILL: no chance to give the job back.
    m.0.kill().unwrap();
    m.0.wait().unwrap();
    drop(m);
    let _m = start_manager(&data, port, &args);
    let p = wait(&|p| p["conversion"]["attempts"] == 2 && p["conversion"]["status"] == "RUNNING");
    let log = p["log"].to_string();
    assert!(
        log.contains("attempt 1 was interrupted (its manager stopped); queued again"),
        "{log}"
    );
    assert!(!p.to_string().contains("secret-for-the-hole"));
}
