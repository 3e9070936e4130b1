//! Image conversion as a manager background job, end to end: a real manager (SQLite file or
//! PostgreSQL), a real `docker-registry` with htpasswd authentication, the REST API.
//!
//! What the tests prove:
//! - `converts_and_records_the_image`: a conversion request runs to SUCCEEDED; the recorded
//!   digest, size and enclave identity are those of the image in the registry (checked by
//!   pulling it and verifying its SIGSTRUCT against its manifest with `ccm_enclave`); the app's
//!   settings reached the manifest; MRSIGNER is the same for every image of the account; the
//!   BUILD_WHITELIST task opens (and is auto-approved under AUTO_APPROVE); credentials appear in
//!   no response, no audit entry, no log line and (SQLite) not in clear in the database files,
//!   and are deleted when the job ends.
//! - `failures_are_recorded`: wrong output credentials and a missing input image leave FAILED
//!   images with the specific reason and no task; a failed tag can be converted again.
//! - `requests_are_checked`: roles (READER 403), accounts (404), validation (422, no echo of
//!   credentials).
//! - `interrupted_jobs_are_recovered` / `lease_expiry_recovers_a_dead_replicas_job`: a job left
//!   RUNNING by a manager that was killed is queued again and converted; after three starts it
//!   FAILS with "interrupted by manager restart".
//! - `shutdown_gives_jobs_back_and_deletion_cancels`: a graceful stop puts a running job back in
//!   the queue; deleting a running image stops its job and frees the worker.
//! - `replicas_share_the_queue` (PostgreSQL): two managers convert a batch, each job once.
//! - `stored_registry_credentials_are_used`: with the registry's credentials stored in the
//!   account (`/v1/registry`), a request without credentials converts; credentials in the
//!   request win over stored ones (wrong ones fail the push); `registry_id` naming a registry on
//!   neither image's host is refused; the stored password is in no answer and no audit entry.
// Test support: a failed setup step should abort the test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ccm_image::oci::Platform;
use ccm_image::{
    Credentials, Destination, Location, NoProgress, Registries, RegistryOptions, Source,
};
use ccm_manager::{Config, ManualClock};
use ccm_testkit::registry::Registry;
use ccm_testkit::runc::{Entry, TestImage};
use common::{Backend, Harness, T0, assert_error, http_client};
use futures_util::TryStreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

const USER: &str = "registry-user";
const PASSWORD: &str = "Reg1stry-Pa55word-do-not-leak";
const WRONG_PASSWORD: &str = "Wr0ng-Pa55word-also-secret";

// ---------------------------------------------------------------------------------------------
// Log capture: every log line of the process, for the "never logged" checks.

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> Capture {
    static LOGS: OnceLock<Capture> = OnceLock::new();
    LOGS.get_or_init(|| {
        let capture = Capture(Arc::new(Mutex::new(Vec::new())));
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,ccm_manager=trace,ccm_image=trace,ccm_store=trace",
            ))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        capture
    })
    .clone()
}

fn captured() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// Every encoding of a secret that must never appear.
fn forbidden(password: &str) -> Vec<String> {
    use base64::Engine as _;
    vec![
        password.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}")),
    ]
}

#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for p in [PASSWORD, WRONG_PASSWORD] {
        for f in forbidden(p) {
            assert!(!text.contains(&f), "{what} contains a registry credential");
        }
    }
}

/// A manager with conversions configured: the launcher file, the registries as insecure.
async fn start(backend: Backend, insecure: &[String], workers: usize) -> Harness {
    let _ = logs();
    let data_dir = tempfile::tempdir().unwrap();
    let launcher = data_dir.path().join("ccm-launch");
    std::fs::write(&launcher, b"\x7fELF test launcher").unwrap();
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(ccm_testkit::postgres::database().expect("PostgreSQL")),
    };
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().join("data"),
        database_url: db.as_ref().map(|d| d.url.clone()),
        insecure_http: true,
        launcher: Some(launcher),
        insecure_registries: insecure.to_vec(),
        conversion_workers: workers,
        open_signup: true,
        ..Config::default()
    };
    let clock = ManualClock::new(T0);
    let m = ccm_manager::start(config.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    Harness {
        base: m.base_url(),
        m: Some(m),
        clock,
        http: http_client(),
        config,
        data_dir,
        db,
    }
}

fn registries(insecure: &[String]) -> Registries {
    Registries::new(&RegistryOptions {
        insecure: insecure.to_vec(),
        extra_ca_file: None,
        only_extra_ca: false,
    })
    .unwrap()
}

fn creds() -> Option<Credentials> {
    Some(Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    })
}

fn test_image() -> TestImage {
    TestImage {
        layers: vec![
            vec![
                Entry::dir("etc"),
                Entry::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                Entry::dir("app"),
                Entry::exe("app/server", vec![0x7f; 4096]),
            ],
            vec![Entry::file("app/config.toml", "port = 8443\n")],
        ],
        entrypoint: Some(vec!["/app/server".into()]),
        cmd: Some(vec!["--tls".into()]),
        env: vec!["PATH=/usr/bin:/bin".into()],
        working_dir: Some("/app".into()),
        user: None,
        created: Some("2024-05-06T07:08:09Z".into()),
    }
}

/// An authenticated registry holding the test image at `team/app:1`.
async fn registry_with_image() -> Registry {
    let reg = Registry::start_with_auth(USER, PASSWORD).unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    test_image().write_oci_layout(&layout, "app").unwrap();
    let regs = registries(&[reg.host()]);
    let src = Source::open(
        &format!("oci:{}:app", layout.display()).parse().unwrap(),
        &regs,
        None,
    )
    .await
    .unwrap();
    let dst = Destination::open(
        &format!("{}/team/app:1", reg.host()).parse().unwrap(),
        &regs,
        creds(),
    )
    .await
    .unwrap();
    ccm_image::copy(&src, &dst, &Platform::linux_amd64(), &NoProgress)
        .await
        .unwrap();
    reg
}

/// A "registry" that accepts connections and never answers: conversions hang in it.
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

fn app_body(name: &str, host: &str) -> Value {
    json!({
        "name": name,
        "input_image_name": format!("{host}/team/app"),
        "output_image_name": format!("{host}/team/app-sgx"),
        "isvprodid": 7,
        "isvsvn": 3,
        "mem_size": 64,
        "threads": 4,
        "allowed_domains": ["app.example.test"],
        "certificate": {
            "issuer": "MANAGER_CA",
            "subject": "app.example.test",
            "key_type": "EC_P256",
            "key_path": "/run/key.pem",
            "cert_path": "/run/cert.pem"
        },
        "advanced_settings": {"allow_debug": true}
    })
}

async fn create_app(h: &Harness, token: &str, name: &str, host: &str) -> String {
    let (st, app) = h.post("/v1/apps", token, app_body(name, host)).await;
    assert_eq!(st, StatusCode::OK, "{app}");
    app["app_id"].as_str().unwrap().to_owned()
}

fn auth(password: &str) -> Value {
    json!({"username": USER, "password": password})
}

/// Queues a conversion; returns the image.
async fn convert(h: &Harness, token: &str, body: Value) -> Value {
    let (st, build) = h.post("/v1/builds", token, body).await;
    assert_eq!(st, StatusCode::OK, "{build}");
    assert_eq!(build["conversion"]["status"], "QUEUED", "{build}");
    assert_eq!(build["enclave_info"]["mrenclave"], "");
    assert!(build.get("pending_task_id").is_none());
    build
}

/// Polls the image until `done` holds for its conversion (with a deadline, not a sleep).
async fn wait_for(
    h: &Harness,
    token: &str,
    build_id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (st, b) = h.get(&format!("/v1/builds/{build_id}"), token).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        if done(&b["conversion"]) {
            return b;
        }
        assert!(Instant::now() < deadline, "conversion stuck: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_final(h: &Harness, token: &str, build_id: &str) -> Value {
    wait_for(h, token, build_id, |c| {
        c["status"] == "SUCCEEDED" || c["status"] == "FAILED"
    })
    .await
}

async fn audit_text(h: &Harness, token: &str) -> (String, Vec<Value>) {
    let (st, page) = h.get("/v1/audit?limit=1000", token).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    (
        page.to_string(),
        page["entries"].as_array().unwrap().clone(),
    )
}

/// What the registry holds for `reference`: manifest annotations, and the MRENCLAVE and
/// MRSIGNER that `ccm_enclave` verifies from the enclave layer's manifest and SIGSTRUCT.
struct Pushed {
    digest: String,
    annotations: std::collections::BTreeMap<String, String>,
    verified: ccm_enclave::VerifiedEnclave,
    bytes: u64,
}

async fn pull(host: &str, reference: &str) -> Pushed {
    let regs = registries(&[host.to_owned()]);
    let src = Source::open(&reference.parse::<Location>().unwrap(), &regs, creds())
        .await
        .unwrap();
    let image = src.resolve(&Platform::linux_amd64()).await.unwrap();
    let last = image.manifest.layers.last().unwrap().clone();
    let gz: Vec<u8> = src
        .blob(&last)
        .await
        .unwrap()
        .try_fold(Vec::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await
        .unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
    let (mut manifest, mut sig) = (Vec::new(), Vec::new());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        match path.as_str() {
            "opt/ccm/enclave.json" => entry.read_to_end(&mut manifest).unwrap(),
            "opt/ccm/enclave.sig" => entry.read_to_end(&mut sig).unwrap(),
            _ => 0,
        };
    }
    let bytes = image.manifest.layers.iter().map(|l| l.size).sum::<u64>()
        + image.manifest.config.size
        + image.manifest_bytes.len() as u64;
    Pushed {
        digest: image.manifest_digest.to_string(),
        annotations: image.manifest.annotations.clone(),
        verified: ccm_enclave::verify_enclave(&manifest, &sig).unwrap(),
        bytes,
    }
}

fn sqlite_bytes(h: &Harness) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["ccm.db", "ccm.db-wal"] {
        if let Ok(b) = std::fs::read(h.config.data_dir.join(name)) {
            all.extend(b);
        }
    }
    assert!(!all.is_empty(), "no SQLite files found");
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------

async fn converts_and_records_the_image(b: Backend) {
    let reg = registry_with_image().await;
    let host = reg.host();
    let h = start(b, std::slice::from_ref(&host), 2).await;
    let (token, _) = h.user_with_account("alice@example.com", "acme").await;
    let app_id = create_app(&h, &token, "flask", &host).await;

    // Output credentials only: the input is on the same registry and uses them too.
    let build = convert(
        &h,
        &token,
        json!({"app_id": app_id, "docker_version": "1", "outputAuthConfig": auth(PASSWORD)}),
    )
    .await;
    let id = build["build_id"].as_str().unwrap();
    assert_eq!(
        build["docker_info"]["docker_image_name"],
        format!("{host}/team/app-sgx")
    );
    assert_eq!(build["docker_info"]["docker_version"], "1");
    assert_eq!(
        build["conversion"]["input_image"],
        format!("{host}/team/app:1")
    );
    assert_eq!(
        build["conversion"]["output_image"],
        format!("{host}/team/app-sgx:1")
    );
    let done = wait_final(&h, &token, id).await;
    let conv = &done["conversion"];
    assert_eq!(conv["status"], "SUCCEEDED", "{done}");
    assert_eq!(
        (conv["progress"].as_i64(), conv["phase"].as_str()),
        (Some(100), Some("done"))
    );
    assert_eq!(conv["attempts"], 1);
    assert!(conv.get("error").is_none());
    assert!(conv["bytes_total"].as_i64().unwrap() > 0);
    assert_eq!(conv["bytes_done"], conv["bytes_total"]);

    // The record is what the registry holds.
    let pushed = pull(&host, &format!("{host}/team/app-sgx:1")).await;
    let info = &done["enclave_info"];
    assert_eq!(done["docker_info"]["docker_image_sha"], pushed.digest);
    assert_eq!(
        done["docker_info"]["docker_image_size"],
        pushed.bytes.div_ceil(1 << 20)
    );
    assert_eq!(info["mrenclave"], pushed.verified.mrenclave.to_string());
    assert_eq!(info["mrsigner"], pushed.verified.mrsigner.to_string());
    assert_eq!(
        info["mrenclave"],
        pushed.annotations["io.ccm.enclave.mrenclave"]
    );
    assert_eq!(
        info["mrsigner"],
        pushed.annotations["io.ccm.enclave.mrsigner"]
    );
    assert_eq!(
        (info["isvprodid"].as_u64(), info["isvsvn"].as_u64()),
        (Some(7), Some(3))
    );
    assert_eq!(
        (pushed.verified.isv_prod_id, pushed.verified.isv_svn),
        (7, 3)
    );
    assert_eq!(pushed.annotations["io.ccm.enclave.isvprodid"], "7");
    // The app's settings reached the measured manifest.
    let m = &pushed.verified.manifest;
    assert_eq!(
        (m.enclave.mem_size, m.enclave.threads, m.enclave.debug),
        (64 << 20, 4, false)
    );
    assert_eq!(m.certificates.len(), 1);
    assert_eq!(m.certificates[0].domain, "app.example.test");
    assert_eq!(m.certificates[0].key_type, ccm_enclave::KeyType::EcP256);
    assert_eq!(m.certificates[0].key_path, "/run/key.pem");
    assert_eq!(m.entrypoint, ["/app/server", "--tls"]);

    // The BUILD_WHITELIST task is open; approving it whitelists the image.
    assert_eq!(done["status"]["status"], "PENDING");
    let task_id = done["pending_task_id"].as_str().unwrap();
    let (_, task) = h.get(&format!("/v1/tasks/{task_id}"), &token).await;
    assert_eq!(task["task_type"], "BUILD_WHITELIST");
    assert_eq!(task["entity_id"], id);
    assert_eq!(task["status"]["status"], "INPROGRESS");
    assert_eq!(
        task["requester_info"]["requester_name"], "alice@example.com",
        "{task}"
    );
    let (st, _) = h
        .patch(
            &format!("/v1/tasks/{task_id}"),
            &token,
            json!({"status": "APPROVED"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, whitelisted) = h.get(&format!("/v1/builds/{id}"), &token).await;
    assert_eq!(whitelisted["status"]["status"], "WHITELISTED");

    // The progress endpoint: the job and its log.
    let (st, progress) = h.get(&format!("/v1/builds/{id}/progress"), &token).await;
    assert_eq!(st, StatusCode::OK, "{progress}");
    assert_eq!(progress["conversion"], whitelisted["conversion"]);
    let log: Vec<&str> = progress["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    for expected in [
        "queued by alice@example.com",
        "input resolved: 2 layers",
        "signing with",
        "pushed ",
        "done: MRENCLAVE",
    ] {
        assert!(
            log.iter().any(|l| l.contains(expected)),
            "{expected}: {log:?}"
        );
    }

    // A second image of the account: same signer; same input and settings, same MRENCLAVE.
    let second = convert(
        &h,
        &token,
        json!({"app_id": app_id, "input_docker_version": "1", "output_docker_version": "2",
               "inputAuthConfig": auth(PASSWORD), "outputAuthConfig": auth(PASSWORD)}),
    )
    .await;
    let second = wait_final(&h, &token, second["build_id"].as_str().unwrap()).await;
    assert_eq!(second["conversion"]["status"], "SUCCEEDED", "{second}");
    assert_eq!(second["enclave_info"]["mrsigner"], info["mrsigner"]);
    assert_eq!(second["enclave_info"]["mrenclave"], info["mrenclave"]);
    assert_eq!(
        second["docker_info"]["docker_image_sha"],
        done["docker_info"]["docker_image_sha"]
    );

    // An AUTO_APPROVE account: the task is approved as it opens. Another account, another key.
    let (st, other) = h
        .post(
            "/v1/accounts",
            &token,
            json!({"name": "auto", "approval_policy": "AUTO_APPROVE"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{other}");
    let other_id = other["acct_id"].as_str().unwrap();
    h.post(
        &format!("/v1/sys/session/select_account/{other_id}"),
        &token,
        json!({}),
    )
    .await;
    let auto_app = create_app(&h, &token, "flask", &host).await;
    let auto = convert(
        &h,
        &token,
        json!({"app_id": auto_app, "docker_version": "1", "output_docker_version": "auto",
               "authConfig": auth(PASSWORD), "debug": true}),
    )
    .await;
    let auto = wait_final(&h, &token, auto["build_id"].as_str().unwrap()).await;
    assert_eq!(auto["conversion"]["status"], "SUCCEEDED", "{auto}");
    assert_eq!(auto["conversion"]["debug"], true);
    assert_eq!(auto["status"]["status"], "WHITELISTED");
    assert_ne!(
        auto["enclave_info"]["mrsigner"], info["mrsigner"],
        "one key per account"
    );
    let pushed = pull(&host, &format!("{host}/team/app-sgx:auto")).await;
    assert!(pushed.verified.manifest.enclave.debug);
    assert!(pushed.verified.attributes.is_debug());
    let (_, tasks) = h
        .get(
            &format!("/v1/tasks?entity_id={}", auto["build_id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(tasks["items"][0]["status"]["status"], "SUCCESS", "{tasks}");

    // Credentials: gone from the database once the jobs ended, never in clear anywhere.
    for b in [
        id,
        second["build_id"].as_str().unwrap(),
        auto["build_id"].as_str().unwrap(),
    ] {
        assert!(
            !h.state()
                .store
                .conversion_holds_credentials(b.parse().unwrap())
                .await
                .unwrap()
        );
    }
    let (_, list) = h.get("/v1/builds", &token).await;
    assert_no_secret("GET /v1/builds", &list.to_string());
    h.post(
        &format!(
            "/v1/sys/session/select_account/{}",
            done["acct_id"].as_str().unwrap()
        ),
        &token,
        json!({}),
    )
    .await;
    let (_, list) = h.get("/v1/builds", &token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_no_secret("GET /v1/builds", &list.to_string());
    assert_no_secret("GET /v1/builds/{id}", &whitelisted.to_string());
    assert_no_secret("GET /v1/builds/{id}/progress", &progress.to_string());
    let (text, entries) = audit_text(&h, &token).await;
    assert_no_secret("the audit log", &text);
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "account.signing_key.create",
        "build.convert",
        "build.converted",
        "task.create",
    ] {
        assert!(actions.contains(&a), "{a}: {actions:?}");
    }
    let queued = entries
        .iter()
        .find(|e| e["action"] == "build.convert")
        .unwrap();
    assert_eq!(
        queued["details"]["credentials_given"],
        json!(["input", "output"])
    );
    let (_, metrics) = h.call(reqwest::Method::GET, "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains("ccm_conversions_total{result=\"succeeded\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ccm_conversion_duration_seconds_count 3"),
        "{metrics}"
    );
    let logs = captured();
    assert!(logs.contains("conversion succeeded"), "the capture works");
    assert_no_secret("the log", &logs);
    if b == Backend::Sqlite {
        let db = sqlite_bytes(&h);
        for p in forbidden(PASSWORD) {
            assert!(
                !contains(&db, p.as_bytes()),
                "credentials in clear in the database"
            );
        }
    }
}

async fn failures_are_recorded(b: Backend) {
    let reg = registry_with_image().await;
    let host = reg.host();
    let h = start(b, std::slice::from_ref(&host), 2).await;
    let (token, _) = h.user_with_account("alice@example.com", "acme").await;
    let app_id = create_app(&h, &token, "flask", &host).await;

    // Right input credentials, wrong output credentials: the push is refused.
    let wrong = convert(
        &h,
        &token,
        json!({"app_id": app_id, "docker_version": "1", "inputAuthConfig": auth(PASSWORD),
               "outputAuthConfig": auth(WRONG_PASSWORD)}),
    )
    .await;
    // A tag the registry does not have.
    let missing = convert(
        &h,
        &token,
        json!({"app_id": app_id, "input_docker_version": "nope", "output_docker_version": "2",
               "authConfig": auth(PASSWORD)}),
    )
    .await;
    let wrong_id = wrong["build_id"].as_str().unwrap();
    let missing_id = missing["build_id"].as_str().unwrap();
    let wrong = wait_final(&h, &token, wrong_id).await;
    let missing = wait_final(&h, &token, missing_id).await;
    assert_eq!(wrong["conversion"]["status"], "FAILED", "{wrong}");
    assert_eq!(
        wrong["conversion"]["error"],
        format!("authentication failed for registry {host}")
    );
    assert_eq!(missing["conversion"]["status"], "FAILED", "{missing}");
    assert_eq!(
        missing["conversion"]["error"],
        format!("image {host}/team/app:nope not found")
    );
    for b in [&wrong, &missing] {
        assert_eq!(b["conversion"]["phase"], "failed");
        assert_eq!(b["enclave_info"]["mrenclave"], "");
        assert!(
            b.get("pending_task_id").is_none(),
            "no task for a failed image"
        );
        let id = b["build_id"].as_str().unwrap();
        let (_, tasks) = h.get(&format!("/v1/tasks?entity_id={id}"), &token).await;
        assert_eq!(tasks["items"], json!([]));
        assert!(
            !h.state()
                .store
                .conversion_holds_credentials(id.parse().unwrap())
                .await
                .unwrap()
        );
        let (_, progress) = h.get(&format!("/v1/builds/{id}/progress"), &token).await;
        let last = progress["log"].as_array().unwrap().last().unwrap()["message"].clone();
        assert_eq!(
            last,
            format!("failed: {}", b["conversion"]["error"].as_str().unwrap())
        );
        assert_no_secret("a failed image's progress", &progress.to_string());
    }
    let (text, entries) = audit_text(&h, &token).await;
    assert_no_secret("the audit log", &text);
    let failed: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "build.conversion_failed")
        .collect();
    assert_eq!(failed.len(), 2);
    let (_, metrics) = h.call(reqwest::Method::GET, "/metrics", None, None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("ccm_conversions_total{result=\"failed\"} 2"),
        "{metrics}"
    );

    // The failed tag can be converted again (the failed image is replaced).
    let again = convert(
        &h,
        &token,
        json!({"app_id": app_id, "docker_version": "1", "outputAuthConfig": auth(PASSWORD)}),
    )
    .await;
    let again = wait_final(&h, &token, again["build_id"].as_str().unwrap()).await;
    assert_eq!(again["conversion"]["status"], "SUCCEEDED", "{again}");
    assert_eq!(
        h.get(&format!("/v1/builds/{wrong_id}"), &token).await.0,
        StatusCode::NOT_FOUND
    );
    // A tag in use by an image that did not fail is a conflict.
    assert_error(
        &h.post(
            "/v1/builds",
            &token,
            json!({"app_id": app_id, "docker_version": "1"}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
        Some("docker_version"),
    );
    let logs = captured();
    assert!(logs.contains("conversion failed"), "the capture works");
    assert_no_secret("the log", &logs);
}

async fn requests_are_checked(b: Backend) {
    let host = "127.0.0.1:9".to_owned();
    let h = start(b, std::slice::from_ref(&host), 0).await;
    let (mgr, acct) = h.user_with_account("m@example.com", "acme").await;
    let app_id = create_app(&h, &mgr, "flask", &host).await;
    h.signup("r@example.com").await;
    h.join(&mgr, "r@example.com", "READER").await;
    let reader = h.login("r@example.com").await;
    h.post(
        &format!("/v1/sys/session/select_account/{acct}"),
        &reader,
        json!({}),
    )
    .await;
    let body = json!({"app_id": app_id, "docker_version": "1", "outputAuthConfig": auth(PASSWORD)});
    for path in ["/v1/builds", "/v1/builds/convert-app"] {
        assert_error(
            &h.post(path, &reader, body.clone()).await,
            StatusCode::FORBIDDEN,
            "forbidden",
            None,
        );
    }
    // Another account's app does not exist for this caller.
    let (other, _) = h.user_with_account("o@example.com", "other").await;
    let other_app = create_app(&h, &other, "theirs", &host).await;
    assert_error(
        &h.post(
            "/v1/builds",
            &mgr,
            json!({"app_id": other_app, "docker_version": "1"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("app_id"),
    );
    // Validation: each problem names its field; credentials are never echoed.
    let cases = [
        (json!({"app_id": app_id}), "docker_version"),
        (
            json!({"app_id": app_id, "docker_version": "bad tag"}),
            "docker_version",
        ),
        (
            json!({"app_id": app_id, "docker_version": "1", "memSize": 1}),
            "memSize",
        ),
        (
            json!({"app_id": app_id, "docker_version": "1", "threads": 0}),
            "threads",
        ),
        (
            json!({"app_id": app_id, "docker_version": "1", "memSize": 16, "threads": 4096}),
            "memSize",
        ),
        (
            json!({"app_id": app_id, "docker_version": "1",
                "outputAuthConfig": {"username": "a:b", "password": PASSWORD}}),
            "outputAuthConfig.username",
        ),
        (
            json!({"app_id": app_id, "docker_version": "1",
                "authConfig": {"username": "a", "password": ""}}),
            "authConfig.password",
        ),
    ];
    for (body, field) in cases {
        let resp = h.post("/v1/builds", &mgr, body.clone()).await;
        assert_error(
            &resp,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some(field),
        );
        assert_no_secret("a validation error", &resp.1.to_string());
    }
    let resp = h
        .post(
            "/v1/builds",
            &mgr,
            json!({"app_id": app_id, "outputAuthConfig": format!("{USER}:{PASSWORD}")}),
        )
        .await;
    assert_error(
        &resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("outputAuthConfig"),
    );
    assert_no_secret("a type error", &resp.1.to_string());
    assert_error(
        &h.post(
            "/v1/builds",
            &mgr,
            json!({"app_id": app_id, "docker_version": "1", "tag": "x"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        None,
    );
    // Debug enclaves need the app's permission (a policy change: a task, then its approval).
    let (_, upd) = h
        .patch(
            &format!("/v1/apps/{app_id}"),
            &mgr,
            json!({"advanced_settings": {"allow_debug": false}}),
        )
        .await;
    let policy_task = upd["pending_policy_task_id"].as_str().unwrap();
    let (st, _) = h
        .patch(
            &format!("/v1/tasks/{policy_task}"),
            &mgr,
            json!({"status": "APPROVED"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_error(
        &h.post(
            "/v1/builds",
            &mgr,
            json!({"app_id": app_id, "docker_version": "1", "debug": true}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("debug"),
    );
    // Nothing was recorded by the refused requests.
    assert_eq!(h.get("/v1/builds", &mgr).await.1["items"], json!([]));
    // Known values still work through the same endpoint; they have no conversion.
    let (st, known) = h
        .post("/v1/builds", &mgr, common::build_body(&app_id, "k1"))
        .await;
    assert_eq!(st, StatusCode::OK, "{known}");
    assert!(known.get("conversion").is_none());
    let known_id = known["build_id"].as_str().unwrap();
    assert_error(
        &h.get(&format!("/v1/builds/{known_id}/progress"), &mgr)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    // A queued conversion is visible to readers of the account, not to others.
    let queued = convert(&h, &mgr, json!({"app_id": app_id, "docker_version": "q"})).await;
    let qid = queued["build_id"].as_str().unwrap();
    assert_eq!(
        h.get(&format!("/v1/builds/{qid}/progress"), &reader)
            .await
            .0,
        StatusCode::OK
    );
    assert_error(
        &h.get(&format!("/v1/builds/{qid}/progress"), &other).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
}

/// Claims the queued job as a manager that is then "killed" (its claim stays behind).
async fn claim_as(h: &Harness, instance: &str) -> ccm_store::ClaimedConversion {
    h.state()
        .store
        .claim_conversion(instance, ccm_manager::Clock::now(&h.clock))
        .await
        .unwrap()
        .expect("a queued job")
}

async fn restart_with_workers(h: &mut Harness, workers: usize) {
    h.config.conversion_workers = workers;
    h.restart().await;
}

async fn interrupted_jobs_are_recovered(b: Backend) {
    let reg = registry_with_image().await;
    let host = reg.host();
    let mut h = start(b, std::slice::from_ref(&host), 0).await;
    let (token, _) = h.user_with_account("alice@example.com", "acme").await;
    let app_id = create_app(&h, &token, "flask", &host).await;
    let body = |tag: &str| {
        json!({"app_id": app_id, "input_docker_version": "1",
        "output_docker_version": tag, "authConfig": auth(PASSWORD)})
    };

    // Job 1 was claimed by this manager instance before it was killed: it is recognised at
    // the next start on either database. Job 2 was claimed three times by managers that died:
    // it fails.
    let one = convert(&h, &token, body("r1")).await;
    let own_instance = h.state().conversions.instance().to_owned();
    let claimed = claim_as(&h, &own_instance).await;
    assert_eq!(
        (claimed.build_id.to_string(), claimed.attempt),
        (one["build_id"].as_str().unwrap().to_owned(), 1)
    );
    let two = convert(&h, &token, body("r2")).await;
    for attempt in 1..=3 {
        let c = claim_as(&h, "a-killed-manager").await;
        assert_eq!(c.attempt, attempt);
        if attempt < 3 {
            let done = h
                .state()
                .store
                .recover_conversions(ccm_store::Interrupted::ClaimedBy("a-killed-manager"), 3, T0)
                .await
                .unwrap();
            assert_eq!(done, [(c.build_id, ccm_store::Recovery::Requeued)]);
        }
    }
    let (_, running) = h
        .get(
            &format!("/v1/builds/{}", one["build_id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(running["conversion"]["status"], "RUNNING");

    restart_with_workers(&mut h, 1).await;
    let one = wait_final(&h, &token, one["build_id"].as_str().unwrap()).await;
    assert_eq!(one["conversion"]["status"], "SUCCEEDED", "{one}");
    assert_eq!(one["conversion"]["attempts"], 2);
    let (_, progress) = h
        .get(
            &format!("/v1/builds/{}/progress", one["build_id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert!(
        progress
            .to_string()
            .contains("attempt 1 was interrupted (its manager stopped); queued again"),
        "{progress}"
    );
    let two_id = two["build_id"].as_str().unwrap();
    if b == Backend::Sqlite {
        // The only manager of an SQLite database: every RUNNING job was interrupted.
        let two = wait_final(&h, &token, two_id).await;
        assert_eq!(two["conversion"]["status"], "FAILED", "{two}");
        assert_eq!(
            two["conversion"]["error"],
            "interrupted by manager restart (after 3 attempts)"
        );
        assert!(
            !h.state()
                .store
                .conversion_holds_credentials(two_id.parse().unwrap())
                .await
                .unwrap()
        );
    } else {
        // PostgreSQL: another replica's job is left alone while its heartbeat is fresh...
        let (_, two) = h.get(&format!("/v1/builds/{two_id}"), &token).await;
        assert_eq!(two["conversion"]["status"], "RUNNING", "{two}");
        // ... and failed once its lease has expired (it was started three times).
        h.clock.advance(ccm_manager::conversion::LEASE_SECS + 1);
        let two = wait_final(&h, &token, two_id).await;
        assert_eq!(two["conversion"]["status"], "FAILED", "{two}");
        assert_eq!(
            two["conversion"]["error"],
            "interrupted by manager restart (after 3 attempts)"
        );
    }
    let (text, entries) = audit_text(&h, &token).await;
    assert_no_secret("the audit log", &text);
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "build.conversion_failed"
                && e["details"]["reason"] == "interrupted by manager restart (after 3 attempts)")
    );
}

async fn lease_expiry_recovers_a_dead_replicas_job(b: Backend) {
    let reg = registry_with_image().await;
    let host = reg.host();
    let mut h = start(b, std::slice::from_ref(&host), 0).await;
    let (token, _) = h.user_with_account("alice@example.com", "acme").await;
    let app_id = create_app(&h, &token, "flask", &host).await;
    let job = convert(
        &h,
        &token,
        json!({"app_id": app_id, "docker_version": "1",
        "outputAuthConfig": auth(PASSWORD)}),
    )
    .await;
    let id = job["build_id"].as_str().unwrap();
    claim_as(&h, "replica-that-died").await;
    // A second manager on the same database (PostgreSQL: a replica; SQLite: the restarted
    // manager, which owns the file).
    restart_with_workers(&mut h, 1).await;
    if b == Backend::Postgres {
        let (_, running) = h.get(&format!("/v1/builds/{id}"), &token).await;
        assert_eq!(running["conversion"]["status"], "RUNNING");
        h.clock.advance(ccm_manager::conversion::LEASE_SECS + 1);
    }
    let done = wait_final(&h, &token, id).await;
    assert_eq!(done["conversion"]["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["conversion"]["attempts"], 2);
}

async fn shutdown_gives_jobs_back_and_deletion_cancels(b: Backend) {
    let reg = registry_with_image().await;
    let host = reg.host();
    let hole = black_hole();
    let mut h = start(b, &[host.clone(), hole.clone()], 1).await;
    let (token, _) = h.user_with_account("alice@example.com", "acme").await;
    let stuck_app = create_app(&h, &token, "stuck", &hole).await;
    let stuck = convert(
        &h,
        &token,
        json!({"app_id": stuck_app, "docker_version": "1",
        "outputAuthConfig": auth(PASSWORD)}),
    )
    .await;
    let id = stuck["build_id"].as_str().unwrap();
    wait_for(&h, &token, id, |c| {
        c["status"] == "RUNNING" && c["phase"] == "resolving the input image"
    })
    .await;

    // A graceful stop gives the job back: QUEUED, the attempt not counted.
    restart_with_workers(&mut h, 0).await;
    let (_, back) = h.get(&format!("/v1/builds/{id}/progress"), &token).await;
    assert_eq!(back["conversion"]["status"], "QUEUED", "{back}");
    assert_eq!(back["conversion"]["attempts"], 0);
    assert!(
        back.to_string().contains("the manager is stopping"),
        "{back}"
    );

    // With one worker: the stuck job runs again; deleting its image stops it and frees the
    // worker for the next job.
    restart_with_workers(&mut h, 1).await;
    wait_for(&h, &token, id, |c| c["status"] == "RUNNING").await;
    let good_app = create_app(&h, &token, "good", &host).await;
    let good = convert(
        &h,
        &token,
        json!({"app_id": good_app, "docker_version": "1",
        "outputAuthConfig": auth(PASSWORD)}),
    )
    .await;
    let (st, _) = h.delete(&format!("/v1/builds/{id}"), &token).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let good = wait_final(&h, &token, good["build_id"].as_str().unwrap()).await;
    assert_eq!(good["conversion"]["status"], "SUCCEEDED", "{good}");
    assert!(
        captured().contains("conversion abandoned"),
        "the worker noticed the deletion"
    );
}

async fn replicas_share_the_queue(_: Backend) {
    let reg = registry_with_image().await;
    let host = reg.host();
    let h = start(Backend::Postgres, std::slice::from_ref(&host), 2).await;
    let replica = h.replica().await;
    let (token, _) = h.user_with_account("alice@example.com", "acme").await;
    let app_id = create_app(&h, &token, "flask", &host).await;
    let mut ids = Vec::new();
    for tag in ["a", "b", "c", "d", "e"] {
        // Half the requests through each replica.
        let base = if ids.len() % 2 == 0 {
            h.base.clone()
        } else {
            replica.base_url()
        };
        let (st, b) = common::call(
            &h.http,
            &base,
            reqwest::Method::POST,
            "/v1/builds",
            Some(&token),
            Some(
                json!({"app_id": app_id, "input_docker_version": "1", "output_docker_version": tag,
                        "authConfig": auth(PASSWORD)}),
            ),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        ids.push(b["build_id"].as_str().unwrap().to_owned());
    }
    let mut mrenclaves = std::collections::BTreeSet::new();
    for id in &ids {
        let done = wait_final(&h, &token, id).await;
        assert_eq!(done["conversion"]["status"], "SUCCEEDED", "{done}");
        assert_eq!(done["conversion"]["attempts"], 1, "claimed once: {done}");
        mrenclaves.insert(
            done["enclave_info"]["mrenclave"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        let (_, p) = h.get(&format!("/v1/builds/{id}/progress"), &token).await;
        let starts = p["log"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["message"].as_str().unwrap().starts_with("attempt "))
            .count();
        assert_eq!(starts, 1, "{p}");
    }
    assert_eq!(
        mrenclaves.len(),
        1,
        "same input and settings, same MRENCLAVE"
    );
    replica.shutdown().await;
}

async fn stored_registry_credentials_are_used(b: Backend) {
    let reg = registry_with_image().await;
    let host = reg.host();
    let h = start(b, std::slice::from_ref(&host), 2).await;
    let (token, _) = h.user_with_account("alice@example.com", "acme").await;
    let app_id = create_app(&h, &token, "flask", &host).await;
    let (st, stored) = h
        .post(
            "/v1/registry",
            &token,
            json!({"url": format!("http://{host}"), "credential": {"default": auth(PASSWORD)},
                   "description": "test registry"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{stored}");
    assert_eq!(stored["host"], host);
    assert_no_secret("the stored registry", &stored.to_string());
    let (st, other) = h
        .post(
            "/v1/registry",
            &token,
            json!({"url": "registry.example.com", "credential": {"default": auth("other-secret")}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{other}");

    // No credentials in the request: the stored ones pull and push.
    let build = convert(&h, &token, json!({"app_id": app_id, "docker_version": "1"})).await;
    let done = wait_final(&h, &token, build["build_id"].as_str().unwrap()).await;
    assert_eq!(done["conversion"]["status"], "SUCCEEDED", "{done}");
    // Naming the registry works the same.
    let named = convert(
        &h,
        &token,
        json!({"app_id": app_id, "input_docker_version": "1", "output_docker_version": "2",
               "registry_id": stored["registry_id"]}),
    )
    .await;
    let named = wait_final(&h, &token, named["build_id"].as_str().unwrap()).await;
    assert_eq!(named["conversion"]["status"], "SUCCEEDED", "{named}");
    // The request's credentials win: wrong output credentials fail the push.
    let wrong = convert(
        &h,
        &token,
        json!({"app_id": app_id, "input_docker_version": "1", "output_docker_version": "3",
               "outputAuthConfig": auth(WRONG_PASSWORD)}),
    )
    .await;
    let wrong = wait_final(&h, &token, wrong["build_id"].as_str().unwrap()).await;
    assert_eq!(wrong["conversion"]["status"], "FAILED", "{wrong}");
    assert_eq!(
        wrong["conversion"]["error"],
        format!("authentication failed for registry {host}")
    );
    // A registry on neither image's host is refused, and an unknown one is 404.
    assert_error(
        &h.post(
            "/v1/builds",
            &token,
            json!({"app_id": app_id, "docker_version": "4", "registry_id": other["registry_id"]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("registry_id"),
    );
    assert_error(
        &h.post(
            "/v1/builds",
            &token,
            json!({"app_id": app_id, "docker_version": "4",
                   "registry_id": "00000000-0000-4000-8000-000000000000"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("registry_id"),
    );
    let (st, list) = h.get("/v1/registry", &token).await;
    assert_eq!(st, StatusCode::OK);
    assert_no_secret("the registry list", &list.to_string());
    let (text, _) = audit_text(&h, &token).await;
    assert_no_secret("the audit log", &text);
    assert!(!text.contains("other-secret"));
}

both_backends!(
    stored_registry_credentials_are_used,
    converts_and_records_the_image,
    failures_are_recorded,
    requests_are_checked,
    interrupted_jobs_are_recovered,
    lease_expiry_recovers_a_dead_replicas_job,
    shutdown_gives_jobs_back_and_deletion_cancels,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_queue_on_postgres() {
    replicas_share_the_queue(Backend::Postgres).await;
}

#[test]
fn capture_sees_writes() {
    let mut c = logs();
    c.write_all(b"probe-line\n").unwrap();
    assert!(captured().contains("probe-line"));
}
