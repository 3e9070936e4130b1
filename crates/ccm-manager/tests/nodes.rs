//! Node enrollment and node authentication against a real manager (HTTPS with mutual TLS for
//! nodes) on SQLite and PostgreSQL, with a manual clock: every enrollment refusal with its
//! specific code, heartbeats, STOPPED marking, deactivation taking effect at once, the CRL.
// Test code: a failed step aborts the test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_api::audit::{AuditEntry, GENESIS_HASH, verify_chain};
use ccm_attest::TcbStatus;
use ccm_attest::sim::{self, EnclaveIdentity, PlatformOptions, SimCpu, SimQuotingEnclave};
use ccm_manager::{Clock as _, Config, ManualClock, RunningManager};
use ccm_sgx::{Measurement, ReportData};
use reqwest::{Method, StatusCode};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const T0: i64 = 1_800_000_000;

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

struct World {
    m: RunningManager,
    clock: ManualClock,
    http: reqwest::Client,
    base: String,
    pin: [u8; 32],
    token: String,
    dir: tempfile::TempDir,
    /// The test PCCS the manager fetches collateral from ([`world_with_pccs`]).
    pccs: Option<ccm_testkit::pccs::Shared>,
    _db: Option<ccm_testkit::postgres::TestDatabase>,
}

async fn world(backend: Backend) -> World {
    world_of(backend, false).await
}

/// A world whose manager fetches collateral from a test PCCS serving the simulated root's,
/// issued at T0 (and nodes upload none).
async fn world_with_pccs(backend: Backend) -> World {
    world_of(backend, true).await
}

async fn world_of(backend: Backend, with_pccs: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let platform = dir.path().join("platform");
    sim::init(&platform, &PlatformOptions::new(T0 as u64)).unwrap();
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(ccm_testkit::postgres::database().expect("PostgreSQL")),
    };
    let pccs = if with_pccs {
        let parts = sim::issue_collateral(&platform, &sim::DEFAULT_FMSPC, T0 as u64).unwrap();
        let (url, server) =
            ccm_testkit::pccs::serve(parts.into_parts(), ccm_testkit::pccs::Fault::None)
                .await
                .unwrap();
        Some((url, server))
    } else {
        None
    };
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        database_url: db.as_ref().map(|d| d.url.clone()),
        trusted_simulated_roots: vec![platform.join(sim::ROOT_CA_FILE)],
        pccs_url: pccs.as_ref().map(|(url, _)| url.clone()),
        ..Config::default()
    };
    let clock = ManualClock::new(T0);
    let m = ccm_manager::start(config, Arc::new(clock.clone()))
        .await
        .unwrap();
    let pin = m.fingerprint.unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(ccm_pki::pinning::pinned_client_config(pin).unwrap())
        .build()
        .unwrap();
    let base = m.base_url();
    let r = http
        .post(format!("{base}/v1/users"))
        .json(&json!({
            "user_email": "ops@example.com",
            "user_password": "correct horse battery",
            "setup_token": std::fs::read_to_string(dir.path().join("data/setup-token")).unwrap().trim(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r: Value = http
        .post(format!("{base}/v1/sys/auth"))
        .basic_auth("ops@example.com", Some("correct horse battery"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = r["access_token"].as_str().unwrap().to_string();
    let mut w = World {
        m,
        clock,
        http,
        base,
        pin,
        token,
        dir,
        pccs: pccs.map(|(_, server)| server),
        _db: db,
    };
    let acct = w
        .ok(
            Method::POST,
            "/v1/accounts",
            json!({"name": "acme", "allow_simulated": true}),
        )
        .await;
    let acct = acct["acct_id"].as_str().unwrap().to_string();
    w.ok(
        Method::POST,
        &format!("/v1/sys/session/select_account/{acct}"),
        json!({}),
    )
    .await;
    w.base = w.m.base_url();
    w
}

impl World {
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

    async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let body = if method == Method::GET {
            None
        } else {
            Some(body)
        };
        let (st, v) = self.call(method, path, body).await;
        assert!(st.is_success(), "{path}: {st} {v}");
        v
    }

    async fn zone(&self) -> String {
        self.ok(Method::GET, "/v1/zones", json!(null)).await[0]["zone_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn join_token(&self, body: Value) -> (String, String) {
        let zone = self.zone().await;
        let t = self
            .ok(Method::POST, &format!("/v1/zones/{zone}/token"), body)
            .await;
        (
            t["token"].as_str().unwrap().to_string(),
            t["token_id"].as_str().unwrap().to_string(),
        )
    }

    /// Asks for a nonce with `token`: the status and body.
    async fn nonce(&self, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/v1/nodes/nonce", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    /// Enrolls with `token` and `nonce` using the platform in `platform` (REPORTDATA binding
    /// the key and `bind_nonce`), uploading the platform's collateral file unless the world
    /// has a PCCS.
    async fn enroll(
        &self,
        token: &str,
        nonce: &str,
        bind_nonce: &str,
        platform: &Path,
    ) -> (StatusCode, Value, rcgen::KeyPair) {
        let collateral = match self.pccs {
            Some(_) => None,
            None => Some(
                serde_json::from_slice(
                    &std::fs::read(platform.join(sim::COLLATERAL_FILE)).unwrap(),
                )
                .unwrap(),
            ),
        };
        self.enroll_with(token, nonce, bind_nonce, platform, collateral)
            .await
    }

    /// [`World::enroll`] uploading `collateral` (none: `None`).
    async fn enroll_with(
        &self,
        token: &str,
        nonce: &str,
        bind_nonce: &str,
        platform: &Path,
        collateral: Option<Value>,
    ) -> (StatusCode, Value, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let mut h = Sha256::new();
        h.update(key.public_key_der());
        h.update(STANDARD.decode(bind_nonce).unwrap());
        let mut rd = [0u8; 64];
        rd[..32].copy_from_slice(&h.finalize());
        let quote = sim_quote(platform, rd);
        let r = self
            .http
            .post(format!("{}/v1/nodes", self.base))
            .bearer_auth(token)
            .json(&json!({
                "name": "node-a", "ipaddress": "10.0.0.4", "sgx_version": "test",
                "nonce": nonce,
                "attestation_request": {"ias_quote": STANDARD.encode(quote), "csr": csr},
                "collateral": collateral
            }))
            .send()
            .await
            .unwrap();
        let st = r.status();
        (st, r.json().await.unwrap(), key)
    }

    fn node_client(&self, cert_pem: &str, key: &rcgen::KeyPair) -> reqwest::Client {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
        reqwest::Client::builder()
            .tls_backend_preconfigured(
                ccm_pki::pinning::pinned_client_config_with_cert(self.pin, certs, key).unwrap(),
            )
            .build()
            .unwrap()
    }
}

/// A quote of the simulated platform in `platform` with REPORTDATA `rd`.
fn sim_quote(platform: &Path, rd: [u8; 64]) -> Vec<u8> {
    let qe = SimQuotingEnclave::load(platform).unwrap();
    let cpu: SimCpu = sim::load_sim_cpu(platform).unwrap();
    let id = EnclaveIdentity {
        mr_enclave: Measurement([9; 32]),
        ..EnclaveIdentity::default()
    };
    let report = cpu.ereport(&qe.target_info(), &id, &ReportData(rd));
    qe.get_quote(&report, None).unwrap().0
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or_default()
}

async fn enrollment_refusals(backend: Backend) {
    let w = world(backend).await;
    let platform = w.dir.path().join("platform");

    // A revoked token.
    let (revoked, revoked_id) = w.join_token(json!({})).await;
    let zone = w.zone().await;
    w.ok(
        Method::DELETE,
        &format!("/v1/zones/{zone}/token/{revoked_id}"),
        json!({}),
    )
    .await;
    let (st, v) = w.nonce(&revoked).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, "join_token_revoked"),
        "{v}"
    );

    // An expired token.
    let (short, _) = w.join_token(json!({"expires_in": 60})).await;
    w.clock.advance(61);
    let (st, v) = w.nonce(&short).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, "join_token_expired"),
        "{v}"
    );

    // A garbage token.
    let (st, v) = w.nonce("ccmjt1.nope").await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_join_token"),
        "{v}"
    );

    // A single-use token admits one node; the replayed nonce and the reused token are refused.
    let (single, _) = w.join_token(json!({"single_use": true})).await;
    let (_, n) = w.nonce(&single).await;
    let nonce = n["nonce"].as_str().unwrap().to_string();
    let (_, n2) = w.nonce(&single).await;
    let nonce2 = n2["nonce"].as_str().unwrap().to_string();
    // REPORTDATA binding another nonce.
    let (st, v, _) = w.enroll(&single, &nonce, &nonce2, &platform).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "report_data_mismatch"),
        "{v}"
    );
    let (st, v, _) = w.enroll(&single, &nonce, &nonce, &platform).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["node"]["platform"], "SIMULATED");
    assert_eq!(v["node"]["status"]["status"], "PROVISIONED");
    let (st, v, _) = w.enroll(&single, &nonce, &nonce, &platform).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, "join_token_used"),
        "{v}"
    );

    // With a reusable token: a replayed nonce.
    let (multi, _) = w.join_token(json!({})).await;
    let (_, n) = w.nonce(&multi).await;
    let nonce = n["nonce"].as_str().unwrap().to_string();
    let (st, _, _) = w.enroll(&multi, &nonce, &nonce, &platform).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, v, _) = w.enroll(&multi, &nonce, &nonce, &platform).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::CONFLICT, "nonce_reused"),
        "{v}"
    );
    // A nonce of another token.
    let (other, _) = w.join_token(json!({})).await;
    let (_, n) = w.nonce(&other).await;
    let foreign_nonce = n["nonce"].as_str().unwrap().to_string();
    let (st, v, _) = w
        .enroll(&multi, &foreign_nonce, &foreign_nonce, &platform)
        .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::CONFLICT, "nonce_unknown"),
        "{v}"
    );
    // An expired nonce.
    let (_, n) = w.nonce(&multi).await;
    let old = n["nonce"].as_str().unwrap().to_string();
    w.clock.advance(301);
    let (st, v, _) = w.enroll(&multi, &old, &old, &platform).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::CONFLICT, "nonce_expired"),
        "{v}"
    );

    // An OutOfDate platform under the same (trusted) root, refused by the default node policy.
    let outdated = w.dir.path().join("outdated");
    let mut o = PlatformOptions::new(T0 as u64);
    o.tcb_status = TcbStatus::OutOfDate;
    sim::add_platform(&platform, &outdated, &o).unwrap();
    let (_, n) = w.nonce(&multi).await;
    let nonce = n["nonce"].as_str().unwrap().to_string();
    let (st, v, _) = w.enroll(&multi, &nonce, &nonce, &outdated).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "node_policy"),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("OutOfDate"), "{v}");
    // The zone policy may accept it.
    w.ok(
        Method::PUT,
        &format!("/v1/zones/{zone}/node-policy"),
        json!({"accepted_tcb_statuses": ["UpToDate", "OutOfDate"], "require_approval": true}),
    )
    .await;
    let (_, n) = w.nonce(&multi).await;
    let nonce = n["nonce"].as_str().unwrap().to_string();
    let (st, v, _) = w.enroll(&multi, &nonce, &nonce, &outdated).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["node"]["status"]["status"], "INPROGRESS",
        "waits for NODE_ATTESTATION"
    );
    assert_eq!(v["node"]["sgx_info"]["tcb_status"], "OutOfDate");
    let task = v["node"]["pending_task_id"].as_str().unwrap().to_string();
    let node_id = v["node"]["node_id"].as_str().unwrap().to_string();
    w.ok(
        Method::PATCH,
        &format!("/v1/tasks/{task}"),
        json!({"status": "APPROVED"}),
    )
    .await;
    let n = w
        .ok(Method::GET, &format!("/v1/nodes/{node_id}"), json!(null))
        .await;
    assert_eq!(n["status"]["status"], "PROVISIONED");

    // A platform under a root the manager does not trust.
    let untrusted = w.dir.path().join("untrusted");
    sim::init(&untrusted, &PlatformOptions::new(T0 as u64)).unwrap();
    let (_, n) = w.nonce(&multi).await;
    let nonce = n["nonce"].as_str().unwrap().to_string();
    let (st, v, _) = w.enroll(&multi, &nonce, &nonce, &untrusted).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "quote_rejected"),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("trusted root"),
        "{v}"
    );
    w.m.shutdown().await;
}

async fn heartbeat_deactivation_and_crl(backend: Backend) {
    let w = world(backend).await;
    let platform = w.dir.path().join("platform");
    let (token, _) = w.join_token(json!({})).await;
    let (_, n) = w.nonce(&token).await;
    let nonce = n["nonce"].as_str().unwrap().to_string();
    let (st, v, key) = w.enroll(&token, &nonce, &nonce, &platform).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let node_id = v["node"]["node_id"].as_str().unwrap().to_string();
    let node = w.node_client(v["certificate"].as_str().unwrap(), &key);

    // Without a client certificate the node endpoints refuse.
    let r = w
        .http
        .post(format!("{}/v1/node-agent/heartbeat", w.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let beat = || async {
        let r = node
            .post(format!("{}/v1/node-agent/heartbeat", w.base))
            .json(&json!({"version": "t"}))
            .send()
            .await
            .unwrap();
        let st = r.status();
        (st, r.json::<Value>().await.unwrap())
    };
    let (st, v) = beat().await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("RUNNING")),
        "{v}"
    );
    // The zone's node settings reach the agent: the configured defaults, then its own.
    assert_eq!(v["heartbeat_interval_secs"], 10, "{v}");
    assert_eq!(v["renewal_threshold_percent"], 33, "{v}");
    let zone = w.zone().await;
    w.ok(
        Method::PATCH,
        &format!("/v1/zones/{zone}"),
        json!({"node_refresh_interval": 20, "node_renewal_threshold": 50}),
    )
    .await;
    let (_, v) = beat().await;
    assert_eq!(v["heartbeat_interval_secs"], 20, "{v}");
    assert_eq!(v["renewal_threshold_percent"], 50, "{v}");

    // No heartbeat for longer than the timeout: STOPPED; the next heartbeat: RUNNING again.
    w.clock.advance(61);
    let store = &w.m.state.store;
    assert_eq!(
        store.mark_stale_nodes(T0 + 61 - 60, T0 + 61).await.unwrap(),
        1
    );
    let n = w
        .ok(Method::GET, &format!("/v1/nodes/{node_id}"), json!(null))
        .await;
    assert_eq!(n["status"]["status"], "STOPPED");
    let (_, v) = beat().await;
    assert_eq!(v["status"], "RUNNING");

    // Renewal for a new key keeps the node working.
    let key2 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr2 = rcgen::CertificateParams::default()
        .serialize_request(&key2)
        .unwrap()
        .pem()
        .unwrap();
    let r: Value = node
        .post(format!("{}/v1/node-agent/certificate", w.base))
        .json(&json!({"csr": csr2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let renewed = w.node_client(r["certificate"].as_str().unwrap(), &key2);
    let st = renewed
        .post(format!("{}/v1/node-agent/heartbeat", w.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, StatusCode::OK);

    // The node's certificate: JSON (the reference's Certificate), or PEM when asked for.
    let cert = w
        .ok(
            Method::GET,
            &format!("/v1/nodes/{node_id}/certificate"),
            json!(null),
        )
        .await;
    assert_eq!(cert["status"], "ISSUED", "{cert}");
    assert_eq!(cert["certificate"], r["certificate"], "the renewed one");
    let pem = w
        .http
        .get(format!("{}/v1/nodes/{node_id}/certificate", w.base))
        .bearer_auth(&w.token)
        .header("accept", "application/x-pem-file")
        .send()
        .await
        .unwrap();
    assert_eq!(
        pem.headers()["content-type"].to_str().unwrap(),
        "application/x-pem-file"
    );
    assert_eq!(
        pem.text().await.unwrap(),
        r["certificate"].as_str().unwrap()
    );

    // Deactivation: the very next request with either certificate is refused.
    let (st, _) = w
        .call(
            Method::POST,
            &format!("/v1/nodes/{node_id}/deactivate"),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "the reference's answer");
    let d = w
        .ok(Method::GET, &format!("/v1/nodes/{node_id}"), json!(null))
        .await;
    assert_eq!(d["status"]["status"], "DEACTIVATED");
    let cert = w
        .ok(
            Method::GET,
            &format!("/v1/nodes/{node_id}/certificate"),
            json!(null),
        )
        .await;
    assert_eq!(cert["status"], "REVOKED", "{cert}");
    for client in [&node, &renewed] {
        let r = client
            .post(format!("{}/v1/node-agent/heartbeat", w.base))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let st = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(
            st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN,
            "{st} {v}"
        );
        assert!(
            matches!(code(&v), "node_deactivated" | "node_certificate_revoked"),
            "{v}"
        );
    }
    // Both node certificates are on the zone CRL.
    let zone = w.zone().await;
    let crl = w
        .http
        .get(format!("{}/v1/zones/{zone}/crl", w.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    use x509_parser::prelude::*;
    let (_, crl) = CertificateRevocationList::from_der(&crl).unwrap();
    assert_eq!(crl.iter_revoked_certificates().count(), 2);
    w.m.shutdown().await;
}

/// The identity of the application enclave of the issuance tests.
fn enclave_identity() -> EnclaveIdentity {
    EnclaveIdentity {
        mr_enclave: Measurement([0x11; 32]),
        mr_signer: Measurement([0x22; 32]),
        isv_prod_id: 7,
        isv_svn: 1,
        ..EnclaveIdentity::default()
    }
}

/// An application enclave's request on the node's platform for `name` with `nonce` in
/// REPORTDATA[32..64]: CSR and quote (base64).
fn enclave_request(platform: &Path, name: &str, nonce: &[u8; 32]) -> (String, String) {
    let r = ccm_testkit::enclave::request_with_nonce(platform, &enclave_identity(), &[name], nonce)
        .unwrap();
    (r.csr, STANDARD.encode(r.quote))
}

/// `count` issuance nonces for `node`, decoded.
async fn nonces(w: &World, node: &reqwest::Client, count: u32) -> Vec<[u8; 32]> {
    let (st, v) = fetch_nonces(w, node, count).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["nonces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            STANDARD
                .decode(n["nonce"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

/// The batch issuance endpoint: each request decided on its own, in order, with the
/// certificate's expiry; resubmission answers the same task; a task id used by another task
/// is that request's error; malformed batches are refused whole and change nothing.
async fn batch_issuance(backend: Backend) {
    let w = world(backend).await;
    let platform = w.dir.path().join("platform");
    let acct = w.ok(Method::GET, "/v1/accounts", json!(null)).await["items"][0]["acct_id"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(
        Method::PATCH,
        &format!("/v1/accounts/{acct}"),
        json!({"approval_policy": "AUTO_APPROVE"}),
    )
    .await;
    let app = w
        .ok(
            Method::POST,
            "/v1/apps",
            json!({"name": "web", "input_image_name": "r.example/web", "output_image_name": "r.example/web-sgx",
                   "isvprodid": 7, "isvsvn": 1, "mem_size": 1024, "threads": 16,
                   "allowed_domains": ["web.example.com"],
                   "advanced_settings": {"allow_simulated": true}}),
        )
        .await;
    w.ok(
        Method::POST,
        "/v1/builds",
        json!({"app_id": app["app_id"], "docker_info": {"docker_image_name": "r.example/web-sgx", "docker_version": "1"},
               "mrenclave": hex::encode([0x11u8; 32]), "mrsigner": hex::encode([0x22u8; 32]),
               "isvprodid": 7, "isvsvn": 1}),
    )
    .await;
    let (token, _) = w.join_token(json!({})).await;
    let (_, n) = w.nonce(&token).await;
    let nonce = n["nonce"].as_str().unwrap().to_string();
    let (st, v, key) = w.enroll(&token, &nonce, &nonce, &platform).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let node = w.node_client(v["certificate"].as_str().unwrap(), &key);
    let url = format!("{}/v1/node-agent/certificates/batch", w.base);
    let post = |body: Value| {
        let req = node.post(&url).json(&body);
        async move {
            let r = req.send().await.unwrap();
            let st = r.status();
            (st, r.json::<Value>().await.unwrap())
        }
    };
    // Malformed batches are refused whole.
    let (st, v) = post(json!({"requests": []})).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::BAD_REQUEST, "batch_size"),
        "{v}"
    );
    let n = nonces(&w, &node, 3).await;
    let (csr, quote) = enclave_request(&platform, "web.example.com", &n[0]);
    let t1 = uuid::Uuid::new_v4();
    let one = json!({"task_id": t1, "csr": csr, "quote": quote});
    let (st, v) = post(json!({"requests": vec![one.clone(); 65]})).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::BAD_REQUEST, "batch_size"),
        "{v}"
    );
    let (st, v) = post(json!({"requests": [one.clone(), one.clone()]})).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::BAD_REQUEST, "duplicate_task_id"),
        "{v}"
    );
    let (st, v) = post(json!({"requests": [{"task_id": t1, "csr": csr}]})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Without a node certificate: refused.
    let r = w
        .http
        .post(&url)
        .json(&json!({"requests": [one.clone()]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // None of that left a trace.
    let (st, v) = w.call(Method::GET, &format!("/v1/tasks/{t1}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");

    // A good request, one without evidence, one for a domain the app does not have.
    let (csr3, quote3) = enclave_request(&platform, "other.example.com", &n[1]);
    let (t2, t3) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (st, v) = post(json!({"requests": [
        one.clone(),
        {"task_id": t2, "csr": csr, "quote": ""},
        {"task_id": t3, "csr": csr3, "quote": quote3},
    ]}))
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let r = v["results"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["task"]["task_id"], t1.to_string());
    assert_eq!(r[0]["task"]["task_status"], "SUCCESS", "{v}");
    let pem = r[0]["task"]["certificate"].as_str().unwrap();
    let leaf = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    assert_eq!(
        r[0]["not_after"].as_i64(),
        Some(cert.validity().not_after.timestamp())
    );
    assert_eq!(r[1]["task"]["task_status"], "DENIED");
    assert!(
        r[1]["task"]["message"]
            .as_str()
            .unwrap()
            .contains("no attestation evidence"),
        "{v}"
    );
    assert_eq!(r[2]["task"]["task_status"], "DENIED");
    assert!(
        r[2]["task"]["message"]
            .as_str()
            .unwrap()
            .contains("other.example.com"),
        "{v}"
    );
    for o in r {
        assert!(o.get("error").is_none(), "{o}");
    }

    // Resubmitting answers the same task (same certificate); a task id that belongs to another
    // task is that request's error, and the rest of the batch goes on.
    let other_task = w.ok(Method::GET, "/v1/tasks", json!(null)).await;
    let other_task = other_task["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_type"] != "CERTIFICATE_ISSUANCE")
        .unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (csr4, quote4) = enclave_request(&platform, "web.example.com", &n[2]);
    let t4 = uuid::Uuid::new_v4();
    let (st, v) = post(json!({"requests": [
        one,
        {"task_id": other_task, "csr": csr4, "quote": quote4},
        {"task_id": t4, "csr": csr4, "quote": quote4},
    ]}))
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[0]["task"]["certificate"].as_str(), Some(pem));
    assert_eq!(
        r[0]["not_after"],
        json!(cert.validity().not_after.timestamp())
    );
    assert!(r[1].get("task").is_none(), "{v}");
    assert_eq!(r[1]["error"]["code"], "task_id_taken", "{v}");
    assert_eq!(r[2]["task"]["task_status"], "SUCCESS", "{v}");
    // The single-request endpoint answers the same tasks.
    let one: Value = node
        .get(format!("{}/v1/node-agent/certificates/{t4}", w.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["task_status"], "SUCCESS");
    assert_eq!(one["certificate"], r[2]["task"]["certificate"]);

    // Batches arriving together, while other audited writes (new apps) go on, are all issued,
    // and the audit log stays one intact chain with an entry for each certificate.
    let fresh = nonces(&w, &node, 24).await;
    let batches: Vec<Value> = (0..6)
        .map(|b| {
            let requests: Vec<Value> = (0..4)
                .map(|i| {
                    let (csr, quote) =
                        enclave_request(&platform, "web.example.com", &fresh[b * 4 + i]);
                    json!({"task_id": uuid::Uuid::new_v4(), "csr": csr, "quote": quote})
                })
                .collect();
            json!({ "requests": requests })
        })
        .collect();
    let sends = futures_util::future::join_all(batches.into_iter().map(post));
    let creates = futures_util::future::join_all((0..6).map(|i| {
        w.ok(
            Method::POST,
            "/v1/apps",
            json!({"name": format!("side-{i}"), "input_image_name": "r.example/side",
                   "output_image_name": "r.example/side-sgx", "isvprodid": 8, "isvsvn": 1,
                   "mem_size": 1024, "threads": 16}),
        )
    }));
    let (sent, _) = tokio::join!(sends, creates);
    for (st, v) in &sent {
        assert_eq!(*st, StatusCode::OK, "{v}");
        for o in v["results"].as_array().unwrap() {
            assert_eq!(o["task"]["task_status"], "SUCCESS", "{o}");
        }
    }
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut after = 0;
    loop {
        let page = w
            .ok(
                Method::GET,
                &format!("/v1/audit?after={after}&limit=50"),
                json!(null),
            )
            .await;
        assert_eq!(page["complete_chain"], true, "{page}");
        entries.extend(serde_json::from_value::<Vec<AuditEntry>>(page["entries"].clone()).unwrap());
        match page["next_after"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    verify_chain(&entries, GENESIS_HASH.into(), 1).unwrap();
    let issued = entries
        .iter()
        .filter(|e| e.action == "certificate.issue")
        .count();
    // t1 and t4 before, 24 now.
    assert_eq!(issued, 26);
    assert_eq!(
        entries.iter().filter(|e| e.action == "app.create").count(),
        7
    );

    // The instances a heartbeat reports (here after 600 unknown ones, so that they are in the
    // second statement of the update) show as RUNNING after the window of their issuance.
    let app_path = format!("/v1/apps/{}", app["app_id"].as_str().unwrap());
    w.clock
        .advance(ccm_manager::Config::default().node_stale_after_secs + 1);
    let instance = w.ok(Method::GET, &app_path, json!(null)).await["nodes"][0].clone();
    assert_eq!(instance["status"]["status"], "STOPPED", "{instance}");
    let mut running: Vec<Value> = (0..600)
        .map(|_| json!({"task_id": uuid::Uuid::new_v4()}))
        .collect();
    running.extend([t1, t4].iter().map(|t| json!({"task_id": t})));
    for (_, v) in &sent {
        for o in v["results"].as_array().unwrap() {
            running.push(json!({"task_id": o["task"]["task_id"]}));
        }
    }
    let r = node
        .post(format!("{}/v1/node-agent/heartbeat", w.base))
        .json(&json!({"version": "t", "running_apps": running}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let instance = w.ok(Method::GET, &app_path, json!(null)).await["nodes"][0].clone();
    assert_eq!(instance["status"]["status"], "RUNNING", "{instance}");
    assert_eq!(
        instance["certificate"]["last_reported_at"],
        json!(w.clock.now()),
        "{instance}"
    );
    w.m.shutdown().await;
}

/// Asks the manager for `count` issuance nonces as `node`: the status and body.
async fn fetch_nonces(w: &World, node: &reqwest::Client, count: u32) -> (StatusCode, Value) {
    let r = node
        .post(format!("{}/v1/node-agent/nonces", w.base))
        .json(&json!({ "count": count }))
        .send()
        .await
        .unwrap();
    let st = r.status();
    (st, r.json().await.unwrap())
}

/// Enrolls a node on the world's platform and returns its mTLS client and id.
async fn enrolled_node(w: &World) -> (reqwest::Client, String) {
    let platform = w.dir.path().join("platform");
    let (token, _) = w.join_token(json!({})).await;
    let (_, n) = w.nonce(&token).await;
    let nonce = n["nonce"].as_str().unwrap().to_string();
    let (st, v, key) = w.enroll(&token, &nonce, &nonce, &platform).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    (
        w.node_client(v["certificate"].as_str().unwrap(), &key),
        v["node"]["node_id"].as_str().unwrap().to_string(),
    )
}

/// The nonce endpoint: batch bounds, mTLS only, fresh distinct nonces with the configured
/// lifetime, none for a deactivated node.
async fn issuance_nonces(backend: Backend) {
    let w = world(backend).await;
    let (node, node_id) = enrolled_node(&w).await;
    for count in [0, 65] {
        let (st, v) = fetch_nonces(&w, &node, count).await;
        assert_eq!(
            (st, code(&v)),
            (StatusCode::BAD_REQUEST, "nonce_count"),
            "{v}"
        );
    }
    let (st, v) = fetch_nonces(&w, &node, 64).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let nonces = v["nonces"].as_array().unwrap();
    assert_eq!(nonces.len(), 64);
    let mut seen = std::collections::HashSet::new();
    for n in nonces {
        assert_eq!(n["expires_at"], json!(T0 + 300), "{n}");
        let bytes = STANDARD.decode(n["nonce"].as_str().unwrap()).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(&bytes[..8], &((T0 + 300) as u64).to_be_bytes());
        assert!(seen.insert(bytes), "nonces are distinct");
    }
    // Without a client certificate: refused.
    let r = w
        .http
        .post(format!("{}/v1/node-agent/nonces", w.base))
        .json(&json!({"count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A deactivated node gets none.
    w.ok(
        Method::POST,
        &format!("/v1/nodes/{node_id}/deactivate"),
        json!({}),
    )
    .await;
    let (st, v) = fetch_nonces(&w, &node, 1).await;
    assert!(
        st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN,
        "{st} {v}"
    );
    w.m.shutdown().await;
}

/// An account with an app (domain web.example.com approved at once) and an approved image of
/// the test enclave, and an enrolled node: its mTLS client.
async fn issuance_setup(w: &World) -> reqwest::Client {
    let acct = w.ok(Method::GET, "/v1/accounts", json!(null)).await["items"][0]["acct_id"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(
        Method::PATCH,
        &format!("/v1/accounts/{acct}"),
        json!({"approval_policy": "AUTO_APPROVE"}),
    )
    .await;
    let app = w
        .ok(
            Method::POST,
            "/v1/apps",
            json!({"name": "web", "input_image_name": "r.example/web", "output_image_name": "r.example/web-sgx",
                   "isvprodid": 7, "isvsvn": 1, "mem_size": 1024, "threads": 16,
                   "allowed_domains": ["web.example.com"],
                   "advanced_settings": {"allow_simulated": true}}),
        )
        .await;
    w.ok(
        Method::POST,
        "/v1/builds",
        json!({"app_id": app["app_id"], "docker_info": {"docker_image_name": "r.example/web-sgx", "docker_version": "1"},
               "mrenclave": hex::encode([0x11u8; 32]), "mrsigner": hex::encode([0x22u8; 32]),
               "isvprodid": 7, "isvsvn": 1}),
    )
    .await;
    enrolled_node(w).await.0
}

/// One issuance request as `node`: the status and body.
async fn issue_one(
    w: &World,
    node: &reqwest::Client,
    task_id: uuid::Uuid,
    csr: &str,
    quote: &str,
) -> (StatusCode, Value) {
    let r = node
        .post(format!("{}/v1/node-agent/certificates", w.base))
        .json(&json!({"task_id": task_id, "csr": csr, "quote": quote}))
        .send()
        .await
        .unwrap();
    let st = r.status();
    (st, r.json().await.unwrap())
}

/// Asserts that a task was refused with `code` (the refusal code ends the message).
fn assert_refused(v: &Value, code: &str) {
    assert_eq!(v["task_status"], "DENIED", "{v}");
    assert!(v["certificate"].is_null(), "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.ends_with(&format!("({code})")), "{v}");
}

/// Fresh evidence end to end: a quote's nonce is used once (a replay, even with a new task
/// id, is refused), expires, and must be there; revoking a certificate denies its key, so
/// neither the quote copied out of the certificate nor a fresh quote for the same key buys a
/// new certificate.
async fn fresh_evidence(backend: Backend) {
    let w = world(backend).await;
    let platform = w.dir.path().join("platform");
    let node = issuance_setup(&w).await;
    let id = enclave_identity();
    let names = ["web.example.com"];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let n = nonces(&w, &node, 3).await;

    // Issued with a fresh nonce.
    let first = ccm_testkit::enclave::request_for_key(&platform, &id, &names, &n[0], &key).unwrap();
    let quote = STANDARD.encode(&first.quote);
    let t1 = uuid::Uuid::new_v4();
    let (st, v) = issue_one(&w, &node, t1, &first.csr, &quote).await;
    assert_eq!(
        (st, &v["task_status"]),
        (StatusCode::OK, &json!("SUCCESS")),
        "{v}"
    );
    let pem = v["certificate"].as_str().unwrap().to_string();

    // The same request again under a new task id: the nonce is used.
    let (_, v) = issue_one(&w, &node, uuid::Uuid::new_v4(), &first.csr, &quote).await;
    assert_refused(&v, "replayed_nonce");

    // A quote without a nonce (zeros, as the legacy path makes them).
    let legacy = ccm_testkit::enclave::request(&platform, &id, &names).unwrap();
    let (_, v) = issue_one(
        &w,
        &node,
        uuid::Uuid::new_v4(),
        &legacy.csr,
        &STANDARD.encode(&legacy.quote),
    )
    .await;
    assert_refused(&v, "unknown_nonce");
    assert!(
        v["message"].as_str().unwrap().contains("no manager nonce"),
        "{v}"
    );

    // An expired nonce.
    let late = ccm_testkit::enclave::request_with_nonce(&platform, &id, &names, &n[1]).unwrap();
    w.clock.advance(301);
    let (_, v) = issue_one(
        &w,
        &node,
        uuid::Uuid::new_v4(),
        &late.csr,
        &STANDARD.encode(&late.quote),
    )
    .await;
    assert_refused(&v, "expired_nonce");

    // Revocation denies the key.
    let certs = w.ok(Method::GET, "/v1/certificates", json!(null)).await;
    let cert_id = certs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["task_id"] == json!(t1))
        .unwrap()["certificate_id"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(
        Method::POST,
        &format!("/v1/certificates/{cert_id}/revoke"),
        json!({"reason": "key stolen"}),
    )
    .await;
    // The quote copied out of the revoked certificate's evidence extension, with a new CSR for
    // the same key.
    let leaf = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let copied = ccm_pki::Evidence::from_certificate(&leaf).unwrap().unwrap();
    assert_eq!(copied.quote, first.quote);
    let new_csr = ccm_testkit::enclave::request_for_key(&platform, &id, &names, &n[2], &key)
        .unwrap()
        .csr;
    let (_, v) = issue_one(
        &w,
        &node,
        uuid::Uuid::new_v4(),
        &new_csr,
        &STANDARD.encode(&copied.quote),
    )
    .await;
    assert_eq!(v["task_status"], "DENIED", "{v}");
    assert!(v["certificate"].is_null(), "{v}");
    // Even a fresh quote with a fresh nonce for that key.
    let n = nonces(&w, &node, 1).await;
    let again = ccm_testkit::enclave::request_for_key(&platform, &id, &names, &n[0], &key).unwrap();
    let (_, v) = issue_one(
        &w,
        &node,
        uuid::Uuid::new_v4(),
        &again.csr,
        &STANDARD.encode(&again.quote),
    )
    .await;
    assert_refused(&v, "key_revoked");
    // Another key is certified as before.
    let n = nonces(&w, &node, 1).await;
    let other = ccm_testkit::enclave::request_with_nonce(&platform, &id, &names, &n[0]).unwrap();
    let (_, v) = issue_one(
        &w,
        &node,
        uuid::Uuid::new_v4(),
        &other.csr,
        &STANDARD.encode(&other.quote),
    )
    .await;
    assert_eq!(v["task_status"], "SUCCESS", "{v}");
    w.m.shutdown().await;
}

/// Two requests with one task id at the same time (different keys and nonces): exactly one
/// certificate is recorded, and both callers get that one; the other request's certificate,
/// if it was signed, is handed to nobody.
async fn concurrent_task_id(backend: Backend) {
    let w = world(backend).await;
    let platform = w.dir.path().join("platform");
    let node = issuance_setup(&w).await;
    for _round in 0..3 {
        let n = nonces(&w, &node, 2).await;
        let (csr_a, quote_a) = enclave_request(&platform, "web.example.com", &n[0]);
        let (csr_b, quote_b) = enclave_request(&platform, "web.example.com", &n[1]);
        let task = uuid::Uuid::new_v4();
        let ((st_a, a), (st_b, b)) = tokio::join!(
            issue_one(&w, &node, task, &csr_a, &quote_a),
            issue_one(&w, &node, task, &csr_b, &quote_b)
        );
        assert_eq!((st_a, st_b), (StatusCode::OK, StatusCode::OK), "{a} {b}");
        assert_eq!(a["task_status"], "SUCCESS", "{a}");
        assert_eq!(a, b, "both callers get the recorded certificate");
        let recorded: Vec<Value> = w
            .ok(Method::GET, "/v1/certificates?limit=1000", json!(null))
            .await["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["task_id"] == json!(task))
            .cloned()
            .collect();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0]["certificate"], a["certificate"]);
    }
    w.m.shutdown().await;
}

/// The CRL distribution point URIs of a DER certificate.
fn crl_points(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let mut out = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for p in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                    for n in names {
                        if let GeneralName::URI(u) = n {
                            out.push(u.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

fn pem_ders(text: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(text.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect()
}

/// Simulated trust is the account's and the app's, off by default: a simulated node is refused
/// enrollment unless its account trusts simulated platforms, and a simulated app quote is refused
/// unless account and app both do. Simulated certificates chain through the zone's simulated
/// intermediate, carry the CRL distribution point of their CA, and that CRL verifies under it.
async fn simulated_trust_and_chain(backend: Backend) {
    use x509_parser::prelude::*;
    let w = world(backend).await;
    let platform = w.dir.path().join("platform");
    let acct = w.ok(Method::GET, "/v1/accounts", json!(null)).await["items"][0]["acct_id"]
        .as_str()
        .unwrap()
        .to_string();
    let acct_path = format!("/v1/accounts/{acct}");
    let set_account = |body: Value| w.ok(Method::PATCH, &acct_path, body);
    let a = set_account(json!({"allow_simulated": false, "approval_policy": "AUTO_APPROVE"})).await;
    assert_eq!(a["allow_simulated"], false);

    // Enrollment of a simulated node: refused without the account's trust.
    let (token, _) = w.join_token(json!({})).await;
    let (_, n) = w.nonce(&token).await;
    let nonce = n["nonce"].as_str().unwrap().to_string();
    let (st, v, _) = w.enroll(&token, &nonce, &nonce, &platform).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "simulated_not_trusted"),
        "{v}"
    );
    set_account(json!({"allow_simulated": true})).await;
    let (_, n) = w.nonce(&token).await;
    let nonce = n["nonce"].as_str().unwrap().to_string();
    let (st, v, key) = w.enroll(&token, &nonce, &nonce, &platform).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let node_cert = v["certificate"].as_str().unwrap().to_string();
    let node = w.node_client(&node_cert, &key);

    // The zone publishes its simulated intermediate; the node certificate comes from it.
    let zone = w.zone().await;
    // The default public URL: the first TLS name and the bound port.
    let port = w.m.local_addr.port();
    let z = w
        .ok(Method::GET, &format!("/v1/zones/{zone}"), json!(null))
        .await;
    let sim_pem = z["simulated_certificate"].as_str().unwrap().to_string();
    let zone_pem = z["certificate"].as_str().unwrap().to_string();
    let sim_der = pem_ders(&sim_pem).remove(0);
    let zone_der = pem_ders(&zone_pem).remove(0);
    let (_, sim_ca) = X509Certificate::from_der(&sim_der).unwrap();
    let (_, zone_ca) = X509Certificate::from_der(&zone_der).unwrap();
    assert!(sim_ca.subject().to_string().contains("OU=SIMULATED"));
    sim_ca.verify_signature(Some(zone_ca.public_key())).unwrap();
    let node_der = pem_ders(&node_cert).remove(0);
    let (_, leaf) = X509Certificate::from_der(&node_der).unwrap();
    assert_eq!(leaf.issuer(), sim_ca.subject());
    leaf.verify_signature(Some(sim_ca.public_key())).unwrap();
    assert_eq!(
        crl_points(&node_der),
        [format!(
            "https://localhost:{port}/v1/zones/{zone}/crl?ca=simulated"
        )]
    );
    assert_eq!(
        crl_points(&sim_der),
        [format!("https://localhost:{port}/v1/zones/{zone}/crl")]
    );

    // An app that does not trust simulated platforms: its simulated quote is refused.
    let app = w
        .ok(
            Method::POST,
            "/v1/apps",
            json!({"name": "web", "input_image_name": "r.example/web", "output_image_name": "r.example/web-sgx",
                   "isvprodid": 7, "isvsvn": 1, "mem_size": 1024, "threads": 16,
                   "allowed_domains": ["web.example.com"]}),
        )
        .await;
    assert_eq!(app["advanced_settings"]["allow_simulated"], false);
    let app_path = format!("/v1/apps/{}", app["app_id"].as_str().unwrap());
    w.ok(
        Method::POST,
        "/v1/builds",
        json!({"app_id": app["app_id"], "docker_info": {"docker_image_name": "r.example/web-sgx", "docker_version": "1"},
               "mrenclave": hex::encode([0x11u8; 32]), "mrsigner": hex::encode([0x22u8; 32]),
               "isvprodid": 7, "isvsvn": 1}),
    )
    .await;
    let issue = || async {
        let n = nonces(&w, &node, 1).await;
        let (csr, quote) = enclave_request(&platform, "web.example.com", &n[0]);
        let r = node
            .post(format!("{}/v1/node-agent/certificates", w.base))
            .json(&json!({"task_id": uuid::Uuid::new_v4(), "csr": csr, "quote": quote}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()
    };
    let t = issue().await;
    assert_eq!(t["task_status"], "DENIED", "{t}");
    let m = t["message"].as_str().unwrap();
    assert!(m.contains("simulated") && m.contains("app web"), "{m}");

    // The app trusts them (a MANAGER in an AUTO_APPROVE account changes the policy at once).
    let upd = w
        .ok(
            Method::PATCH,
            &app_path,
            json!({"advanced_settings": {"allow_simulated": true}}),
        )
        .await;
    assert_eq!(upd["advanced_settings"]["allow_simulated"], true, "{upd}");
    let t = issue().await;
    assert_eq!(t["task_status"], "SUCCESS", "{t}");
    let chain = pem_ders(t["certificate"].as_str().unwrap());
    assert_eq!(chain.len(), 3, "leaf, simulated intermediate, zone CA");
    assert_eq!(chain[1], sim_der);
    assert_eq!(chain[2], zone_der);
    let (_, app_leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    assert_eq!(app_leaf.issuer(), sim_ca.subject());
    app_leaf
        .verify_signature(Some(sim_ca.public_key()))
        .unwrap();
    assert!(
        app_leaf
            .verify_signature(Some(zone_ca.public_key()))
            .is_err()
    );
    assert!(app_leaf.subject().to_string().contains("OU=SIMULATED"));
    assert_eq!(
        crl_points(&chain[0]),
        [format!(
            "https://localhost:{port}/v1/zones/{zone}/crl?ca=simulated"
        )]
    );

    // Without the account's trust the app's is not enough.
    set_account(json!({"allow_simulated": false})).await;
    let t = issue().await;
    assert_eq!(t["task_status"], "DENIED", "{t}");
    assert!(
        t["message"]
            .as_str()
            .unwrap()
            .contains("the account does not trust"),
        "{t}"
    );

    // The simulated intermediate's CRL verifies under it, and is served from the cache until
    // something is revoked.
    let http = w.http.clone();
    let base = w.base.clone();
    let get_crl = |ca: &'static str| {
        let url = format!("{base}/v1/zones/{zone}/crl?ca={ca}");
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        }
    };
    let first = get_crl("simulated").await;
    let (_, crl) = CertificateRevocationList::from_der(&first).unwrap();
    assert_eq!(crl.issuer(), sim_ca.subject());
    crl.verify_signature(sim_ca.public_key()).unwrap();
    w.clock.advance(10);
    assert_eq!(get_crl("simulated").await, first, "cached while unchanged");
    let zone_crl = get_crl("zone").await;
    let (_, zcrl) = CertificateRevocationList::from_der(&zone_crl).unwrap();
    zcrl.verify_signature(zone_ca.public_key()).unwrap();
    let node_id = v["node"]["node_id"].as_str().unwrap();
    w.ok(
        Method::POST,
        &format!("/v1/nodes/{node_id}/deactivate"),
        json!({}),
    )
    .await;
    let after = get_crl("simulated").await;
    assert_ne!(after, first, "re-signed after a revocation");
    let (_, crl) = CertificateRevocationList::from_der(&after).unwrap();
    assert!(crl.iter_revoked_certificates().count() >= 2, "node and app");
    w.m.shutdown().await;
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}

both_backends!(
    enrollment_refusals,
    heartbeat_deactivation_and_crl,
    batch_issuance,
    issuance_nonces,
    fresh_evidence,
    concurrent_task_id,
    simulated_trust_and_chain,
);

#[path = "nodes/collateral.rs"]
mod collateral;
