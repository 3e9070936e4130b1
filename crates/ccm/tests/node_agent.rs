//! The node agent end to end with real processes on loopback: a simulated platform, a real
//! `ccm aesmd`, a real `ccm manager` (HTTPS with its self-signed certificate, pinned by the join
//! token) on SQLite or on PostgreSQL, a real `ccm agent`, and test code acting as an enclave.
//! Every test runs once per database (`sqlite::NAME`, `postgres::NAME`).
// Test code: a failed step aborts the test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_aesm::AesmClient;
use ccm_attest::sim::{EnclaveIdentity, SimCpu};
use ccm_attest::{Collateral, RootKind, TrustRoot, TrustRoots, Verifier};
use ccm_pki::Evidence;
use ccm_sgx::{AttributeFlags, Attributes, Measurement, ReportData};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Runs each named `async fn name(db: Db)` as two tests, `sqlite::name` and `postgres::name`.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Db::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Db::Postgres).await
            })*
        }
    };
}

on_both_databases!(
    full_flow_pending_whitelist_then_success_with_evidence_and_tls,
    a_revoked_certificates_evidence_cannot_be_replayed,
    issuance_refusals_name_the_reason,
    manager_and_agent_restarts_lose_nothing,
    junk_bodies_are_refused_by_the_agent_and_reach_nothing,
);

/// The manager's database in a test.
#[derive(Debug, Clone, Copy)]
enum Db {
    /// The SQLite file in the manager's data directory.
    Sqlite,
    /// A new database of the PostgreSQL test cluster.
    Postgres,
}

const PASSWORD: &str = "correct horse battery";
const DOMAIN: &str = "myapp.domain.dom";
const MRENCLAVE: [u8; 32] = [0x11; 32];
const MRSIGNER: [u8; 32] = [0x22; 32];

/// A child process killed when dropped.
struct Proc {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ccm"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ccm");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// Waits for a stdout line containing `marker` and returns it.
    fn line_with(&self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(marker) => return l,
                Ok(_) => {}
                Err(e) => panic!("no line with {marker:?}: {e}"),
            }
        }
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn ccm_ok(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_ccm"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ccm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Manager {
    proc: Proc,
    base: String,
    pin: [u8; 32],
}

/// A manager on `w`'s database with its files in `data`, trusting the simulated `roots`.
fn start_manager(w: &World, data: &Path, roots: &[&Path], listen: &str) -> Manager {
    // Several users sign up without the setup token: open sign-up.
    let mut args = vec![
        "manager",
        "--data-dir",
        p(data),
        "--listen",
        listen,
        "--open-signup",
    ];
    if let Some(db) = &w.database {
        args.push("--database");
        args.push(&db.url);
    }
    for r in roots {
        args.push("--trust-simulated-root");
        args.push(p(r));
    }
    let proc = Proc::spawn(&args);
    let base = proc
        .line_with("listening on")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let fp = proc.line_with("fingerprint");
    let pin = ccm_pki::parse_fingerprint(fp.rsplit(' ').next().unwrap()).unwrap();
    Manager { proc, base, pin }
}

fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} never accepted",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An operator's API session.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let st = resp.status();
        let text = resp.text().await.unwrap();
        (
            st,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (st, v) = self.call(method, path, body).await;
        assert!(st.is_success(), "{path}: {st} {v}");
        v
    }

    /// Signs up, logs in, creates and selects an account.
    async fn new(base: &str, pin: [u8; 32], email: &str, account: &str) -> Api {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(ccm_pki::pinning::pinned_client_config(pin).unwrap())
            .build()
            .unwrap();
        let r = http
            .post(format!("{base}/v1/users"))
            .json(&json!({"user_email": email, "user_password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let r: Value = http
            .post(format!("{base}/v1/sys/auth"))
            .basic_auth(email, Some(PASSWORD))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut api = Api {
            http,
            base: base.to_string(),
            token: r["access_token"].as_str().unwrap().to_string(),
        };
        let acct = api
            .ok(
                Method::POST,
                "/v1/accounts",
                // The nodes of these tests are simulated.
                Some(json!({"name": account, "allow_simulated": true})),
            )
            .await;
        let acct = acct["acct_id"].as_str().unwrap().to_string();
        api.ok(
            Method::POST,
            &format!("/v1/sys/session/select_account/{acct}"),
            Some(json!({})),
        )
        .await;
        api.base = base.to_string();
        api
    }

    async fn join_token(&self, extra: Value) -> String {
        let zones = self.ok(Method::GET, "/v1/zones", None).await;
        let zone = zones[0]["zone_id"].as_str().unwrap();
        let t = self
            .ok(
                Method::POST,
                &format!("/v1/zones/{zone}/token"),
                Some(extra),
            )
            .await;
        t["token"].as_str().unwrap().to_string()
    }

    async fn zone_ca(&self) -> String {
        self.ok(Method::GET, "/v1/zones", None).await[0]["certificate"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// An app with `DOMAIN` and an image with the test enclave's identity.
    async fn app_and_image(&self, name: &str, mrenclave: [u8; 32]) -> (String, String) {
        let app = self
            .ok(
                Method::POST,
                "/v1/apps",
                Some(json!({
                    "name": name, "input_image_name": "registry.example/flask",
                    "output_image_name": "registry.example/flask-sgx", "isvprodid": 7,
                    "isvsvn": 1, "mem_size": 1024, "threads": 16, "allowed_domains": [DOMAIN],
                    "advanced_settings": {"allow_simulated": true}
                })),
            )
            .await;
        let app_id = app["app_id"].as_str().unwrap().to_string();
        let build = self
            .ok(
                Method::POST,
                "/v1/builds",
                Some(json!({
                    "app_id": app_id,
                    "docker_info": {"docker_image_name": "registry.example/flask-sgx", "docker_version": name},
                    "mrenclave": hex::encode(mrenclave), "mrsigner": hex::encode(MRSIGNER),
                    "isvprodid": 7, "isvsvn": 1
                })),
            )
            .await;
        (app_id, build["build_id"].as_str().unwrap().to_string())
    }

    /// Approves (or denies) every task of `task_type` in progress.
    async fn decide_all(&self, task_type: &str, status: &str) {
        let tasks = self
            .ok(
                Method::GET,
                &format!("/v1/tasks?status=INPROGRESS&task_type={task_type}"),
                None,
            )
            .await;
        for t in tasks["items"].as_array().unwrap() {
            let id = t["task_id"].as_str().unwrap();
            self.ok(
                Method::PATCH,
                &format!("/v1/tasks/{id}"),
                Some(json!({"status": status})),
            )
            .await;
        }
    }
}

struct Agent {
    _proc: Proc,
    url: String,
}

fn start_agent(
    m: &Manager,
    token: Option<&str>,
    socket: &Path,
    state: &Path,
    platform: &Path,
) -> Agent {
    let mut args = vec![
        "agent",
        "--manager",
        &m.base,
        "--listen",
        "127.0.0.1:0",
        "--aesm-socket",
        p(socket),
        "--state-dir",
        p(state),
        "--name",
        "node-1",
    ];
    let collateral = platform.join("collateral.json");
    args.push("--collateral");
    args.push(p(&collateral));
    if let Some(t) = token {
        args.push("--join-token");
        args.push(t);
    }
    let proc = Proc::spawn(&args);
    let line = proc.line_with("serving the node-agent API on");
    let url = line
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string();
    Agent { _proc: proc, url }
}

/// What the test enclave sends: its key, CSR and quote.
struct EnclaveRequest {
    key: rcgen::KeyPair,
    csr: String,
    quote: Vec<u8>,
}

fn identity(mrenclave: [u8; 32], debug: bool) -> EnclaveIdentity {
    let mut flags = AttributeFlags::INIT | AttributeFlags::MODE64BIT;
    if debug {
        flags |= AttributeFlags::DEBUG;
    }
    EnclaveIdentity {
        mr_enclave: Measurement(mrenclave),
        mr_signer: Measurement(MRSIGNER),
        attributes: Attributes::new(flags, 3),
        isv_prod_id: 7,
        isv_svn: 1,
        ..EnclaveIdentity::default()
    }
}

/// A fresh issuance nonce from the agent (`POST /v1/enclave/nonce`), as a launcher takes one.
async fn agent_nonce(http: &reqwest::Client, agent: &Agent) -> [u8; 32] {
    let resp = http
        .post(format!("{}/v1/enclave/nonce", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(v["expires_at"].as_i64().unwrap() > now + 60, "{v}");
    STANDARD
        .decode(v["nonce"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// Acts as an enclave: key, CSR, REPORT MACed with the simulated CPU key next to the socket
/// (REPORTDATA binding `bind_key`'s SPKI, by default the CSR key, and `nonce`), quote through
/// the socket.
fn enclave_request(
    socket: &Path,
    id: &EnclaveIdentity,
    names: &[&str],
    bind_other_key: bool,
    nonce: [u8; 32],
) -> EnclaveRequest {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
    let bound = if bind_other_key {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
    } else {
        rcgen::KeyPair::from_pem(&key.serialize_pem()).unwrap()
    };
    let quote = quote_for(socket, id, &bound, nonce);
    EnclaveRequest { key, csr, quote }
}

/// A quote through the quote helper whose REPORTDATA binds `key` and `nonce`.
fn quote_for(
    socket: &Path,
    id: &EnclaveIdentity,
    key: &rcgen::KeyPair,
    nonce: [u8; 32],
) -> Vec<u8> {
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&Sha256::digest(key.public_key_der()));
    rd[32..].copy_from_slice(&nonce);
    let secret: [u8; 32] = std::fs::read(socket.parent().unwrap().join("ccm-sim-cpu.key"))
        .unwrap()
        .try_into()
        .unwrap();
    let client = AesmClient::new(socket);
    let att = client.select_att_key_id(None).unwrap();
    let qe = client.init_quote_ex(&att).unwrap();
    let report = SimCpu::new(secret).ereport(&qe.target_info, id, &ReportData(rd));
    client.get_quote(&att, &report, None).unwrap().quote
}

async fn agent_issue(http: &reqwest::Client, agent: &Agent, r: &EnclaveRequest) -> Value {
    let resp = http
        .post(format!("{}/v1/certificate/issue-with-quote", agent.url))
        .json(&json!({"csr": r.csr, "quote": STANDARD.encode(&r.quote)}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the agent answers with a task"
    );
    resp.json().await.unwrap()
}

async fn agent_result(http: &reqwest::Client, agent: &Agent, task_id: &str) -> Value {
    let resp = http
        .get(format!("{}/v1/certificate/result/{task_id}", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

async fn poll_until(http: &reqwest::Client, agent: &Agent, task_id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = agent_result(http, agent, task_id).await;
        if v["task_status"] == want {
            return v;
        }
        assert!(Instant::now() < deadline, "task never reached {want}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_denied(v: &Value, reason: &str) {
    assert_eq!(v["task_status"], "DENIED", "{v}");
    assert!(v["certificate"].is_null(), "{v}");
    let m = v["message"].as_str().unwrap_or_default();
    assert!(m.contains(reason), "expected {reason:?} in {m:?}");
}

struct World {
    _tmp: tempfile::TempDir,
    platform: PathBuf,
    socket: PathBuf,
    _aesmd: Proc,
    /// The manager's PostgreSQL database; `None` for SQLite.
    database: Option<ccm_testkit::postgres::TestDatabase>,
}

fn world(db: Db) -> World {
    let database = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(ccm_testkit::postgres::database().expect("PostgreSQL test cluster")),
    };
    let tmp = tempfile::tempdir().unwrap();
    let platform = tmp.path().join("platform");
    ccm_ok(&["sim", "init", "--dir", p(&platform)]);
    let sockdir = tmp.path().join("aesmd");
    std::fs::create_dir_all(&sockdir).unwrap();
    let socket = sockdir.join("aesm.socket");
    let aesmd = Proc::spawn(&["aesmd", "--platform", p(&platform), "--socket", p(&socket)]);
    wait_for_socket(&socket);
    World {
        _tmp: tmp,
        platform,
        socket,
        _aesmd: aesmd,
        database,
    }
}

fn plain_http() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(ccm_pki::pinning::client_config_with_roots(&[]).unwrap())
        .no_proxy()
        .build()
        .unwrap()
}

async fn full_flow_pending_whitelist_then_success_with_evidence_and_tls(db: Db) {
    let w = world(db);
    let data = w._tmp.path().join("manager");
    let root = w.platform.join("root-ca.pem");
    let m = start_manager(&w, &data, &[&root], "127.0.0.1:0");
    let api = Api::new(&m.base, m.pin, "alice@example.com", "acme").await;
    let (app_id, _build) = api.app_and_image("flask", MRENCLAVE).await;
    let token = api.join_token(json!({})).await;
    // The token alone pins the manager's self-signed certificate.
    assert!(token.ends_with(&hex::encode(m.pin)));
    let agent = start_agent(
        &m,
        Some(&token),
        &w.socket,
        &w._tmp.path().join("agent"),
        &w.platform,
    );
    let http = plain_http();

    let v: Value = http
        .get(format!("{}/v1/sys/version", agent.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["version"].is_string());
    let ti: Value = http
        .get(format!("{}/v1/enclave/target-info", agent.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        STANDARD
            .decode(ti["targetInfo"].as_str().unwrap())
            .unwrap()
            .len(),
        512
    );

    // The node is enrolled, simulated, and becomes RUNNING with its first heartbeat.
    let nodes = api.ok(Method::GET, "/v1/nodes", None).await;
    let node = &nodes["items"][0];
    assert_eq!(node["platform"], "SIMULATED");
    assert_eq!(node["sgx_info"]["simulated"], true);
    assert_eq!(node["sgx_info"]["tcb_status"], "UpToDate");
    let node_id = node["node_id"].as_str().unwrap().to_string();

    let req = enclave_request(
        &w.socket,
        &identity(MRENCLAVE, false),
        &[DOMAIN],
        false,
        agent_nonce(&http, &agent).await,
    );
    let task = agent_issue(&http, &agent, &req).await;
    assert_eq!(task["task_status"], "PENDING_WHITELIST", "{task}");
    assert!(task["certificate"].is_null());
    let msg = task["message"].as_str().unwrap();
    assert!(msg.contains("image") && msg.contains(DOMAIN), "{msg}");
    let task_id = task["task_id"].as_str().unwrap().to_string();

    api.decide_all("DOMAIN_WHITELIST", "APPROVED").await;
    let still = agent_result(&http, &agent, &task_id).await;
    assert_eq!(
        still["task_status"], "PENDING_WHITELIST",
        "image approval outstanding: {still}"
    );
    api.decide_all("BUILD_WHITELIST", "APPROVED").await;
    let done = poll_until(&http, &agent, &task_id, "SUCCESS").await;
    let chain = done["certificate"].as_str().unwrap();
    // POST on the result endpoint answers the same.
    let again: Value = http
        .post(format!("{}/v1/certificate/result/{task_id}", agent.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, done);

    // The certificate chains through the zone's simulated intermediate to the zone CA and names
    // the domain.
    let ca_pem = api.zone_ca().await;
    let blocks = ::pem::parse_many(chain).unwrap();
    assert_eq!(blocks.len(), 3, "leaf, simulated intermediate and zone CA");
    let leaf_der = blocks[0].contents().to_vec();
    let ca_der = ::pem::parse(&ca_pem).unwrap().contents().to_vec();
    assert_eq!(blocks[2].contents(), ca_der.as_slice());
    {
        use x509_parser::prelude::*;
        let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
        let (_, sim) = X509Certificate::from_der(blocks[1].contents()).unwrap();
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        assert!(sim.subject().to_string().contains("OU=SIMULATED"));
        sim.verify_signature(Some(ca.public_key())).unwrap();
        leaf.verify_signature(Some(sim.public_key())).unwrap();
        let san = leaf.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(san.general_names, vec![GeneralName::DNSName(DOMAIN)]);
        assert!(leaf.subject().to_string().contains("OU=SIMULATED"));
    }
    // The evidence extension carries the quote, which re-verifies and binds the key.
    let ev = Evidence::from_certificate(&leaf_der).unwrap().unwrap();
    assert_eq!(ev.quote, req.quote);
    assert!(ev.simulated);
    let verifier = Verifier::new(
        TrustRoots::empty().with(
            TrustRoot::from_pem(
                &std::fs::read_to_string(&root).unwrap(),
                RootKind::Simulated,
            )
            .unwrap(),
        ),
    );
    let collateral =
        Collateral::from_json(&std::fs::read(w.platform.join("collateral.json")).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let vq = verifier.verify(&ev.quote, &collateral, now).unwrap();
    assert_eq!(vq.report.mr_enclave.0, MRENCLAVE);
    assert_eq!(&vq.report.report_data.0[..32], &ev.pubkey_sha256);
    assert_eq!(
        ev.pubkey_sha256,
        <[u8; 32]>::from(Sha256::digest(req.key.public_key_der()))
    );

    // A TLS handshake with the certificate succeeds for a client trusting the zone CA.
    // The server presents the leaf and the simulated intermediate, as the issued chain has them.
    tls_handshake(
        &[leaf_der.clone(), blocks[1].contents().to_vec()],
        &req.key,
        &ca_der,
    )
    .await;

    // The manager shows the app on the node and the node under the app.
    let app = api
        .ok(Method::GET, &format!("/v1/apps/{app_id}"), None)
        .await;
    assert_eq!(app["nodes"][0]["node_id"], node_id.as_str(), "{app}");
    let n = api
        .ok(Method::GET, &format!("/v1/nodes/{node_id}"), None)
        .await;
    assert_eq!(n["apps"][0]["app_id"], app_id.as_str(), "{n}");
    assert_eq!(n["apps"][0]["status"]["status"], "RUNNING", "{n}");
    // The app's certificate on the node: JSON by default (the reference's), PEM when asked.
    let cert = api
        .ok(
            Method::GET,
            &format!("/v1/apps/{app_id}/node/{node_id}/certificate"),
            None,
        )
        .await;
    assert_eq!(cert["status"], "ISSUED", "{cert}");
    assert_eq!(cert["certificate"], chain);
    let pem_text = api
        .http
        .get(format!(
            "{}/v1/apps/{app_id}/node/{node_id}/certificate",
            m.base
        ))
        .bearer_auth(&api.token)
        .header("accept", "application/x-pem-file")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(pem_text, chain);
    let details = api
        .ok(
            Method::GET,
            &format!("/v1/apps/{app_id}/node/{node_id}/certificate-details"),
            None,
        )
        .await;
    assert_eq!(details["enclave_info"]["mrenclave"], hex::encode(MRENCLAVE));
    assert_eq!(details["simulated"], true);
    drop(m.proc);
}

/// With real processes (quote helper, manager, agent): the quote in a revoked certificate's
/// evidence extension, sent again with a new CSR for the same key, is refused as a replay; a
/// fresh quote for that key is refused because the key was revoked; a new key still issues.
async fn a_revoked_certificates_evidence_cannot_be_replayed(db: Db) {
    let w = world(db);
    let data = w._tmp.path().join("manager");
    let root = w.platform.join("root-ca.pem");
    let m = start_manager(&w, &data, &[&root], "127.0.0.1:0");
    let api = Api::new(&m.base, m.pin, "alice@example.com", "acme").await;
    api.app_and_image("flask", MRENCLAVE).await;
    api.decide_all("DOMAIN_WHITELIST", "APPROVED").await;
    api.decide_all("BUILD_WHITELIST", "APPROVED").await;
    let token = api.join_token(json!({})).await;
    let agent = start_agent(
        &m,
        Some(&token),
        &w.socket,
        &w._tmp.path().join("agent"),
        &w.platform,
    );
    let http = plain_http();
    let id = identity(MRENCLAVE, false);
    let nonce = agent_nonce(&http, &agent).await;
    let req = enclave_request(&w.socket, &id, &[DOMAIN], false, nonce);
    let task = agent_issue(&http, &agent, &req).await;
    assert_eq!(task["task_status"], "SUCCESS", "{task}");
    let leaf = ::pem::parse_many(task["certificate"].as_str().unwrap()).unwrap()[0]
        .contents()
        .to_vec();

    // A MANAGER revokes it (say the key was stolen).
    let certs = api.ok(Method::GET, "/v1/certificates", None).await;
    let cert = certs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["task_id"] == task["task_id"])
        .unwrap();
    let revoked = api
        .ok(
            Method::POST,
            &format!(
                "/v1/certificates/{}/revoke",
                cert["certificate_id"].as_str().unwrap()
            ),
            Some(json!({"reason": "key stolen"})),
        )
        .await;
    assert_eq!(revoked["status"], "REVOKED", "{revoked}");

    // The thief copies the quote out of the certificate and asks again for the same key.
    let quote = Evidence::from_certificate(&leaf).unwrap().unwrap().quote;
    let csr = rcgen::CertificateParams::new(vec![DOMAIN.to_string()])
        .unwrap()
        .serialize_request(&req.key)
        .unwrap()
        .pem()
        .unwrap();
    let replay = EnclaveRequest {
        key: rcgen::KeyPair::from_pem(&req.key.serialize_pem()).unwrap(),
        csr: csr.clone(),
        quote,
    };
    let t = agent_issue(&http, &agent, &replay).await;
    assert_eq!(t["task_status"], "DENIED", "{t}");
    assert!(t["certificate"].is_null());
    assert!(
        t["message"].as_str().unwrap().contains("(replayed_nonce)"),
        "{t}"
    );

    // Even a fresh nonce and quote for that key are refused: its key is on the deny list.
    let fresh = EnclaveRequest {
        quote: quote_for(&w.socket, &id, &req.key, agent_nonce(&http, &agent).await),
        key: rcgen::KeyPair::from_pem(&req.key.serialize_pem()).unwrap(),
        csr,
    };
    let t = agent_issue(&http, &agent, &fresh).await;
    assert_eq!(t["task_status"], "DENIED", "{t}");
    assert!(
        t["message"].as_str().unwrap().contains("(key_revoked)"),
        "{t}"
    );

    // A new key in the same enclave still gets its certificate.
    let other = enclave_request(
        &w.socket,
        &id,
        &[DOMAIN],
        false,
        agent_nonce(&http, &agent).await,
    );
    let t = agent_issue(&http, &agent, &other).await;
    assert_eq!(t["task_status"], "SUCCESS", "{t}");
    drop(m.proc);
}

async fn tls_handshake(chain_der: &[Vec<u8>], key: &rcgen::KeyPair, ca_der: &[u8]) {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            chain_der
                .iter()
                .map(|c| CertificateDer::from(c.clone()))
                .collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let client =
        ccm_pki::pinning::client_config_with_roots(&[CertificateDer::from(ca_der.to_vec())])
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut s = acceptor.accept(tcp).await.unwrap();
        s.write_all(b"hello from the enclave").await.unwrap();
        s.shutdown().await.unwrap();
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let mut s = connector
        .connect(ServerName::try_from(DOMAIN).unwrap(), tcp)
        .await
        .expect("TLS handshake with the issued certificate");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"hello from the enclave");
    srv.await.unwrap();
}

async fn issuance_refusals_name_the_reason(db: Db) {
    let w = world(db);
    let data = w._tmp.path().join("manager");
    let root = w.platform.join("root-ca.pem");
    // A second simulated root the manager does not trust, with its own quote helper.
    let foreign = w._tmp.path().join("foreign");
    ccm_ok(&["sim", "init", "--dir", p(&foreign)]);
    let fsock_dir = w._tmp.path().join("faesmd");
    std::fs::create_dir_all(&fsock_dir).unwrap();
    let fsock = fsock_dir.join("aesm.socket");
    let _faesmd = Proc::spawn(&["aesmd", "--platform", p(&foreign), "--socket", p(&fsock)]);
    wait_for_socket(&fsock);

    let m = start_manager(&w, &data, &[&root], "127.0.0.1:0");
    let api = Api::new(&m.base, m.pin, "bob@example.com", "bobco").await;
    api.app_and_image("good", MRENCLAVE).await;
    let rejected = [0x33; 32];
    api.app_and_image("bad", rejected).await;
    api.decide_all("DOMAIN_WHITELIST", "APPROVED").await;
    // Approve the good image, reject the other one.
    let builds = api.ok(Method::GET, "/v1/builds", None).await;
    for b in builds["items"].as_array().unwrap() {
        let decision = if b["enclave_info"]["mrenclave"] == hex::encode(rejected) {
            "DENIED"
        } else {
            "APPROVED"
        };
        let task = b["pending_task_id"].as_str().unwrap();
        api.ok(
            Method::PATCH,
            &format!("/v1/tasks/{task}"),
            Some(json!({"status": decision})),
        )
        .await;
    }
    // Another account holds an image with its own MRENCLAVE.
    let other = Api::new(&m.base, m.pin, "eve@example.com", "eveco").await;
    let foreign_mr = [0x44; 32];
    other.app_and_image("theirs", foreign_mr).await;

    let token = api.join_token(json!({})).await;
    let agent = start_agent(
        &m,
        Some(&token),
        &w.socket,
        &w._tmp.path().join("agent"),
        &w.platform,
    );
    let http = plain_http();

    let good = identity(MRENCLAVE, false);
    let ok = enclave_request(
        &w.socket,
        &good,
        &[DOMAIN],
        false,
        agent_nonce(&http, &agent).await,
    );
    assert_eq!(
        agent_issue(&http, &agent, &ok).await["task_status"],
        "SUCCESS"
    );

    let cases: Vec<(EnclaveRequest, &str)> = vec![
        (
            enclave_request(
                &fsock,
                &good,
                &[DOMAIN],
                false,
                agent_nonce(&http, &agent).await,
            ),
            "not issued by a trusted root",
        ),
        (
            enclave_request(
                &w.socket,
                &identity(MRENCLAVE, true),
                &[DOMAIN],
                false,
                agent_nonce(&http, &agent).await,
            ),
            "debug",
        ),
        (
            enclave_request(
                &w.socket,
                &identity([0x55; 32], false),
                &[DOMAIN],
                false,
                agent_nonce(&http, &agent).await,
            ),
            "is not an image of any app",
        ),
        (
            enclave_request(
                &w.socket,
                &identity(rejected, false),
                &[DOMAIN],
                false,
                agent_nonce(&http, &agent).await,
            ),
            "was rejected",
        ),
        (
            enclave_request(
                &w.socket,
                &identity(foreign_mr, false),
                &[DOMAIN],
                false,
                agent_nonce(&http, &agent).await,
            ),
            "is not an image of any app in the node's account",
        ),
        (
            enclave_request(
                &w.socket,
                &good,
                &["other.domain.dom"],
                false,
                agent_nonce(&http, &agent).await,
            ),
            "is not among the domains",
        ),
        (
            enclave_request(
                &w.socket,
                &good,
                &[DOMAIN],
                true,
                agent_nonce(&http, &agent).await,
            ),
            "(key_not_bound)",
        ),
    ];
    for (req, reason) in cases {
        let t = agent_issue(&http, &agent, &req).await;
        assert_denied(&t, reason);
        // Polling says the same.
        let again = agent_result(&http, &agent, t["task_id"].as_str().unwrap()).await;
        assert_denied(&again, reason);
    }
    // Requests without usable evidence are DENIED tasks, never 5xx.
    for body in [
        json!({"csr": ok.csr}),
        json!({"csr": ok.csr, "quote": "%%%"}),
        json!([1, 2]),
        json!({"csr": "junk", "quote": STANDARD.encode(&ok.quote)}),
    ] {
        let resp = http
            .post(format!("{}/v1/certificate/issue-with-quote", agent.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let t: Value = resp.json().await.unwrap();
        assert_eq!(t["task_status"], "DENIED", "{body}: {t}");
        assert!(t["message"].as_str().unwrap().len() > 5);
    }
    // The legacy flow without /v1/enclave/attest first: DENIED with the reason.
    let t: Value = http
        .post(format!("{}/v1/certificate/issue", agent.url))
        .json(&json!({"csr": ok.csr}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_denied(&t, "no attestation evidence");
    drop(m.proc);
}

async fn manager_and_agent_restarts_lose_nothing(db: Db) {
    let w = world(db);
    let data = w._tmp.path().join("manager");
    let root = w.platform.join("root-ca.pem");
    let state = w._tmp.path().join("agent");
    let m = start_manager(&w, &data, &[&root], "127.0.0.1:0");
    let listen = m.base.trim_start_matches("https://").to_string();
    let api = Api::new(&m.base, m.pin, "carol@example.com", "carolco").await;
    api.app_and_image("flask", MRENCLAVE).await;
    api.decide_all("DOMAIN_WHITELIST", "APPROVED").await;
    let token = api.join_token(json!({"single_use": true})).await;
    let agent = start_agent(&m, Some(&token), &w.socket, &state, &w.platform);
    let http = plain_http();

    // The manager goes away mid-flow (after the enclave got its nonce): the agent keeps the
    // request and says why it waits.
    let req = enclave_request(
        &w.socket,
        &identity(MRENCLAVE, false),
        &[DOMAIN],
        false,
        agent_nonce(&http, &agent).await,
    );
    drop(m.proc);
    let t = agent_issue(&http, &agent, &req).await;
    assert_eq!(t["task_status"], "INPROGRESS", "{t}");
    assert!(
        t["message"].as_str().unwrap().contains("not reachable"),
        "{t}"
    );
    let task_id = t["task_id"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read_dir(state.join("pending")).unwrap().count(), 1);

    // Meanwhile the agent hands out the nonces it has on hand, each once, then says that the
    // manager is away (503, the agent's error body).
    let mut seen = std::collections::HashSet::new();
    loop {
        let resp = http
            .post(format!("{}/v1/enclave/nonce", agent.url))
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            let e: Value = resp.json().await.unwrap();
            assert_eq!(e["code"], "manager_unavailable", "{e}");
            assert!(
                e["message"].as_str().unwrap().contains("not reachable"),
                "{e}"
            );
            break;
        }
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        assert!(
            seen.insert(v["nonce"].as_str().unwrap().to_string()),
            "a nonce twice"
        );
        assert!(seen.len() <= 2 * 64, "the pool never runs dry");
    }

    // The agent restarts too, without a join token (the single-use one is spent): it uses its
    // stored identity and its pending request.
    drop(agent);
    let m2 = start_manager(&w, &data, &[&root], &listen);
    assert_eq!(m2.pin, m.pin, "the manager keeps its certificate");
    let agent = start_agent(&m2, None, &w.socket, &state, &w.platform);
    let v = poll_until(&http, &agent, &task_id, "PENDING_WHITELIST").await;
    assert!(v["message"].as_str().unwrap().contains("image"), "{v}");
    let nodes = api.ok(Method::GET, "/v1/nodes", None).await;
    assert_eq!(
        nodes["items"].as_array().unwrap().len(),
        1,
        "no second enrollment"
    );
    api.decide_all("BUILD_WHITELIST", "APPROVED").await;
    let done = poll_until(&http, &agent, &task_id, "SUCCESS").await;
    assert!(
        done["certificate"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert_eq!(std::fs::read_dir(state.join("pending")).unwrap().count(), 0);
    drop(m2.proc);
}

/// Posts `body` to the agent; the answer, or `None` when the agent closed the connection
/// before the client finished sending (an early 413 may do that).
async fn post_raw(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Option<(StatusCode, Value)> {
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .ok()?;
    let status = resp.status();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

async fn junk_bodies_are_refused_by_the_agent_and_reach_nothing(db: Db) {
    let w = world(db);
    let data = w._tmp.path().join("manager");
    let root = w.platform.join("root-ca.pem");
    let m = start_manager(&w, &data, &[&root], "127.0.0.1:0");
    let api = Api::new(&m.base, m.pin, "dave@example.com", "daveco").await;
    api.app_and_image("flask", MRENCLAVE).await;
    let token = api.join_token(json!({})).await;
    let state = w._tmp.path().join("agent");
    let agent = start_agent(&m, Some(&token), &w.socket, &state, &w.platform);
    let http = plain_http();
    let recorded = || async {
        let certs = api
            .ok(Method::GET, "/v1/certificates?limit=1000", None)
            .await["items"]
            .clone();
        let tasks = api.ok(Method::GET, "/v1/tasks", None).await["items"].clone();
        (certs, tasks)
    };

    // Control: a well-formed request reaches the manager and is recorded there.
    let before = recorded().await;
    assert_eq!(before.0.as_array().unwrap().len(), 0);
    let req = enclave_request(
        &w.socket,
        &identity(MRENCLAVE, false),
        &[DOMAIN],
        false,
        agent_nonce(&http, &agent).await,
    );
    agent_issue(&http, &agent, &req).await;
    let before = recorded().await;
    assert_eq!(before.0.as_array().unwrap().len(), 1, "{}", before.0);
    let pending = || {
        std::fs::read_dir(state.join("pending"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let pending_before = pending();

    // 1 MB bodies: refused before they are read in full (413, or the connection closed).
    let url = |path: &str| format!("{}{path}", agent.url);
    let big_csr = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        "A".repeat(1 << 20)
    );
    let junk: Vec<(&str, Vec<u8>)> = vec![
        ("/v1/certificate/issue-with-quote", vec![b'x'; 1 << 20]),
        (
            "/v1/certificate/issue-with-quote",
            json!({"csr": big_csr, "quote": STANDARD.encode(&req.quote)})
                .to_string()
                .into_bytes(),
        ),
        (
            "/v1/certificate/issue",
            json!({"csr": big_csr}).to_string().into_bytes(),
        ),
        ("/v1/enclave/attest", vec![b'{'; 1 << 20]),
        ("/v1/enclave/nonce", vec![b' '; 1 << 20]),
    ];
    for (path, body) in junk {
        // The agent may answer before the client has sent the whole body; the client may then
        // see no answer at all.
        let sent = http
            .post(url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let Ok(resp) = sent else { continue };
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let connection = resp.headers().get("connection").cloned();
        assert_eq!(
            connection.as_ref().and_then(|v| v.to_str().ok()),
            Some("close"),
            "{path}: the rest of the body is unread, so the connection must not be reused"
        );
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(v["code"], "body_too_large", "{path}: {v}");
    }

    // Bodies under the cap with a field over its cap, or malformed: DENIED by the agent.
    let csr_17k = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        "A".repeat(17 * 1024)
    );
    let cases = [
        (
            json!({"csr": csr_17k, "quote": STANDARD.encode(&req.quote)}).to_string(),
            "the CSR is larger than 16384 bytes",
        ),
        (
            json!({"csr": req.csr, "quote": STANDARD.encode(vec![7u8; 17 * 1024])}).to_string(),
            "the quote is larger than 16384 bytes",
        ),
        (
            json!({"csr": "junk", "quote": STANDARD.encode(&req.quote)}).to_string(),
            "not a PEM CERTIFICATE REQUEST",
        ),
        (
            json!({"csr": req.csr, "quote": "%%%"}).to_string(),
            "not base64",
        ),
        ("\u{1}\u{2} not json".to_string(), "not JSON"),
    ];
    for (body, reason) in cases {
        let (status, t) = post_raw(
            &http,
            &url("/v1/certificate/issue-with-quote"),
            body.into_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_denied(&t, reason);
    }

    // Nothing of it reached the manager or the agent's state directory.
    let after = recorded().await;
    assert_eq!(after.0, before.0, "no certificate request recorded");
    assert_eq!(after.1, before.1, "no task created");
    assert_eq!(pending(), pending_before, "nothing kept by the agent");
    drop(m.proc);
}
