//! Attested certificate issuance throughput and latency, client → agent → manager, with EC P-256
//! keys, on SQLite or PostgreSQL; plus where the time goes (quote verification, CSR check,
//! signing, store batches) and the idle RSS of a real `ccm agent` process.
//!
//! ```text
//! cargo bench -p ccm-agent --bench issuance -- [--db sqlite|postgres] [--requests N] [--concurrency C | --rate R] [--evidence-ahead] [--pccs-load]
//! CCM_BIN=target/release/ccm cargo bench -p ccm-agent --bench issuance   # adds the agent RSS
//! ```
//!
//! Everything runs on this machine: a simulated platform, an in-process quote helper on a Unix
//! socket, the manager (HTTPS, node mTLS) and the agent (plain HTTP on 127.0.0.1) in this process.
//! The enclave keys and CSRs are made before the clock starts; the timed part is what a launcher
//! does for each certificate: a fresh nonce from the agent (`POST /v1/enclave/nonce`), a REPORT
//! binding the key and the nonce quoted through the quote helper's socket, and the request to
//! the agent until the certificate comes back. With `--evidence-ahead` the nonces and quotes are
//! taken before the clock starts too, so the timed part is the issuance request alone (what the
//! bench timed before issuance needed a fresh nonce; the nonces stay valid for the run).
//!
//! With `--pccs-load` the manager also fetches collateral from a test PCCS, its refresher looks
//! every second, and during the timed run the PCCS re-issues the collateral and the manager
//! fetches it again every second (each time a newer set becomes current) while two clients read
//! the manager's own PCCS API over HTTPS as fast as they can: what collateral work costs
//! issuance. Compare with a run without it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::print_stdout
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_aesm::AesmClient;
use ccm_attest::sim::{self, EnclaveIdentity, PlatformOptions, SimCpu};
use ccm_attest::{Collateral, RootKind, TrustRoot, TrustRoots, Verifier};
use ccm_manager::{Config, SystemClock};
use ccm_pki::{CaKeyType, Csr, Evidence, ZoneCa};
use ccm_sgx::{AttKeyId, Measurement, ReportData, TargetInfo};
use serde_json::{Value, json};

/// The allocator of the `ccm` binary, so that the in-process manager and agent run as shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Req {
    csr: String,
    /// SHA-256 of the key's SubjectPublicKeyInfo: REPORTDATA[0..32].
    spki_sha256: [u8; 32],
    /// A quote made before the clock starts, for the single-thread costs below.
    quote: String,
}

/// The enclave side of the quote: the simulated CPU that MACs REPORTs and the quote helper's
/// socket, as the launcher has them.
struct Quoting {
    aesm: AesmClient,
    att_key: AttKeyId,
    target: TargetInfo,
    cpu: SimCpu,
    identity: EnclaveIdentity,
}

impl Quoting {
    fn quote(&self, report_data: [u8; 64]) -> Vec<u8> {
        let report = self
            .cpu
            .ereport(&self.target, &self.identity, &ReportData(report_data));
        self.aesm
            .get_quote(&self.att_key, &report, None)
            .unwrap()
            .quote
    }
}

fn enclave_identity() -> EnclaveIdentity {
    EnclaveIdentity {
        mr_enclave: Measurement([0x11; 32]),
        mr_signer: Measurement([0x22; 32]),
        isv_prod_id: 7,
        isv_svn: 1,
        ..EnclaveIdentity::default()
    }
}

/// What the client reads of an answer.
#[derive(serde::Deserialize)]
struct Answer {
    task_status: String,
    #[serde(default)]
    message: Option<String>,
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn make_requests(platform: &std::path::Path, n: usize) -> Vec<Req> {
    let id = enclave_identity();
    (0..n)
        .map(|_| {
            let r = ccm_testkit::enclave::request(platform, &id, &["bench.example.com"]).unwrap();
            Req {
                spki_sha256: Csr::from_pem(&r.csr).unwrap().spki_sha256(),
                csr: r.csr,
                quote: STANDARD.encode(r.quote),
            }
        })
        .collect()
}

/// CPU seconds used so far by this process's threads, by thread name (Linux `/proc`; empty
/// elsewhere). Threads that ended are not counted, which is fine for the long-lived runtime and
/// database threads measured here.
fn thread_cpu() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    let tick = 100.0; // USER_HZ on Linux
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let (Some(u), Some(s)) = (f.get(11), f.get(12)) else {
            continue;
        };
        let secs = (u.parse::<f64>().unwrap_or(0.0) + s.parse::<f64>().unwrap_or(0.0)) / tick;
        let group = if name.starts_with("sqlx-sqlite") {
            "sqlite connection threads".to_string()
        } else if name.starts_with("ccm-issuance-wr") {
            // The kernel keeps 15 characters of a thread's name.
            "issuance writer".to_string()
        } else if name.starts_with("tokio-rt") {
            "tokio workers".to_string()
        } else {
            "other threads".to_string()
        };
        *out.entry(group).or_insert(0.0) += secs;
    }
    out
}

/// One issuance as a launcher makes it: a nonce from the agent, a quote binding the key and the
/// nonce, the request to the agent; the answer must be a certificate. `ready` is a request body
/// whose evidence was taken earlier (`--evidence-ahead`).
async fn issue(
    client: &reqwest::Client,
    agent: &str,
    quoting: &Arc<Quoting>,
    req: &Req,
    ready: Option<&str>,
) {
    let body = match ready {
        Some(body) => body.to_string(),
        None => evidence(client, agent, quoting, req).await,
    };
    let v: Answer = client
        .post(format!("{agent}/v1/certificate/issue-with-quote"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v.task_status, "SUCCESS", "{:?}", v.message);
}

/// A fresh nonce from the agent and a quote binding the key and the nonce: the request body.
async fn evidence(
    client: &reqwest::Client,
    agent: &str,
    quoting: &Arc<Quoting>,
    req: &Req,
) -> String {
    let nonce: ccm_api::agent::NonceResponse = client
        .post(format!("{agent}/v1/enclave/nonce"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&req.spki_sha256);
    rd[32..].copy_from_slice(&STANDARD.decode(&nonce.nonce).unwrap());
    let q = quoting.clone();
    let quote = tokio::task::spawn_blocking(move || q.quote(rd))
        .await
        .unwrap();
    json!({"csr": req.csr, "quote": STANDARD.encode(quote)}).to_string()
}

fn per_op(label: &str, n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!("  {label:<46} {us:>8.1} µs/op");
    us
}

/// Collateral work beside issuance (`--pccs-load`): the PCCS re-issues and the manager fetches
/// every second; two clients read the manager's PCCS API.
struct CollateralLoad {
    stop: Arc<std::sync::atomic::AtomicBool>,
    fetches: tokio::task::JoinHandle<usize>,
    readers: Vec<tokio::task::JoinHandle<usize>>,
}

impl CollateralLoad {
    fn start(
        state: &ccm_manager::AppState,
        server: ccm_testkit::pccs::Shared,
        platform: &std::path::Path,
        base: &str,
        pin: [u8; 32],
    ) -> CollateralLoad {
        use ccm_manager::service::collateral::{Platform, fetch_and_offer};
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st, dir) = (state.clone(), stop.clone(), platform.to_path_buf());
        let fetches = tokio::spawn(async move {
            let mut n = 0;
            while !st.load(Ordering::Relaxed) {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let d = dir.clone();
                let fresh = tokio::task::spawn_blocking(move || {
                    sim::issue_collateral(&d, &sim::DEFAULT_FMSPC, now).unwrap()
                })
                .await
                .unwrap();
                server.set_parts(fresh.into_parts());
                let target = Platform {
                    fmspc: sim::DEFAULT_FMSPC,
                    ca: ccm_attest::CaType::Platform,
                    tee: ccm_attest::Tee::Sgx,
                };
                let done = fetch_and_offer(&s, target, ccm_api::collateral::TcbUpdate::Standard)
                    .await
                    .unwrap();
                n += usize::from(done == ccm_manager::service::collateral::Offered::Current);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            n
        });
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(ccm_pki::pinning::pinned_client_config(pin).unwrap())
            .build()
            .unwrap();
        let url = format!(
            "{base}/sgx/certification/v4/tcb?fmspc={}",
            hex::encode(sim::DEFAULT_FMSPC)
        );
        let readers = (0..2)
            .map(|_| {
                let (http, url, st) = (http.clone(), url.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !st.load(Ordering::Relaxed) {
                        let r = http.get(&url).send().await.unwrap();
                        assert!(r.status().is_success());
                        r.bytes().await.unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        CollateralLoad {
            stop,
            fetches,
            readers,
        }
    }

    /// Stops; answers (fetches made current, PCCS API reads).
    async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let mut reads = 0;
        for r in self.readers {
            reads += r.await.unwrap();
        }
        (self.fetches.await.unwrap(), reads)
    }
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_writer(std::io::stderr)
            .init();
    }
    let db = arg("--db", "sqlite");
    let n: usize = arg("--requests", "4000").parse().unwrap();
    let concurrency: usize = arg("--concurrency", "32").parse().unwrap();
    let evidence_ahead = std::env::args().any(|a| a == "--evidence-ahead");
    let pccs_load = std::env::args().any(|a| a == "--pccs-load");
    let rate: Option<f64> = Some(arg("--rate", ""))
        .filter(|r| !r.is_empty())
        .map(|r| r.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let platform = dir.path().join("platform");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    sim::init(&platform, &PlatformOptions::new(now)).unwrap();
    println!("preparing {n} enclave keys and CSRs...");
    let reqs = Arc::new(make_requests(&platform, n));

    println!("where the time goes (one thread, warm caches):");
    {
        let root = TrustRoot::from_pem(
            &std::fs::read_to_string(platform.join(sim::ROOT_CA_FILE)).unwrap(),
            RootKind::Simulated,
        )
        .unwrap();
        let verifier = Verifier::new(TrustRoots::empty().with(root));
        let collateral =
            Collateral::from_json(&std::fs::read(platform.join(sim::COLLATERAL_FILE)).unwrap())
                .unwrap();
        let quotes: Vec<Vec<u8>> = reqs
            .iter()
            .take(1000)
            .map(|r| STANDARD.decode(&r.quote).unwrap())
            .collect();
        let mut i = 0;
        per_op("quote verification (cached platform)", 1000, || {
            verifier
                .verify(&quotes[i % quotes.len()], &collateral, now)
                .unwrap();
            i += 1;
        });
        let mut i = 0;
        per_op("CSR parse + self-signature check", 1000, || {
            Csr::from_pem(&reqs[i % reqs.len()].csr).unwrap();
            i += 1;
        });
        let ca = ZoneCa::generate("bench", CaKeyType::P256, now as i64, 10).unwrap();
        let csr = Csr::from_pem(&reqs[0].csr).unwrap();
        let ev = Evidence {
            quote: quotes[0].clone(),
            pubkey_sha256: csr.spki_sha256(),
            simulated: true,
        };
        per_op(
            "certificate signing (P-256 zone CA, evidence ext)",
            1000,
            || {
                ca.issue_app(&csr, &["bench.example.com".into()], &ev, now as i64, 86_400)
                    .unwrap();
            },
        );
    }

    let pg = (db == "postgres").then(|| ccm_testkit::postgres::database().expect("PostgreSQL"));
    let pccs = pccs_load.then(|| {
        let parts = sim::issue_collateral(&platform, &sim::DEFAULT_FMSPC, now)
            .unwrap()
            .into_parts();
        rt.block_on(ccm_testkit::pccs::serve(
            parts,
            ccm_testkit::pccs::Fault::None,
        ))
        .unwrap()
    });
    let config = Config {
        pccs_url: pccs.as_ref().map(|(url, _)| url.clone()),
        collateral_check_interval_secs: 1,
        pccs_api_requests_per_second: 10_000_000,
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("manager"),
        database_url: pg.as_ref().map(|d| d.url.clone()),
        trusted_simulated_roots: vec![platform.join(sim::ROOT_CA_FILE)],
        db_max_connections: 8,
        open_signup: true,
        ..Config::default()
    };
    rt.block_on(async move {
        let m = ccm_manager::start(config, Arc::new(SystemClock)).await.unwrap();
        let pin = m.fingerprint.unwrap();
        let base = m.base_url();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(ccm_pki::pinning::pinned_client_config(pin).unwrap())
            .build()
            .unwrap();
        http.post(format!("{base}/v1/users"))
            .json(&json!({"user_email": "b@example.com", "user_password": "bench password 123"}))
            .send()
            .await
            .unwrap();
        let auth: Value = http
            .post(format!("{base}/v1/sys/auth"))
            .basic_auth("b@example.com", Some("bench password 123"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = auth["access_token"].as_str().unwrap().to_string();
        let call = |method: reqwest::Method, path: &str, body: Value| {
            let req = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(&token)
                .json(&body);
            async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
        };
        let acct = call(
            reqwest::Method::POST,
            "/v1/accounts",
            json!({"name": "bench", "approval_policy": "AUTO_APPROVE", "allow_simulated": true}),
        )
        .await;
        let acct = acct["acct_id"].as_str().unwrap().to_string();
        call(reqwest::Method::POST, &format!("/v1/sys/session/select_account/{acct}"), json!({})).await;
        let app = call(
            reqwest::Method::POST,
            "/v1/apps",
            json!({"name": "bench", "input_image_name": "r.example/a", "output_image_name": "r.example/a-sgx",
                   "isvprodid": 7, "isvsvn": 1, "mem_size": 1024, "threads": 16,
                   "allowed_domains": ["bench.example.com"], "advanced_settings": {"allow_simulated": true}}),
        )
        .await;
        call(
            reqwest::Method::POST,
            "/v1/builds",
            json!({"app_id": app["app_id"], "docker_info": {"docker_image_name": "r.example/a-sgx", "docker_version": "1"},
                   "mrenclave": hex::encode([0x11u8; 32]), "mrsigner": hex::encode([0x22u8; 32]),
                   "isvprodid": 7, "isvsvn": 1}),
        )
        .await;
        let zones = call(reqwest::Method::GET, "/v1/zones", json!(null)).await;
        let zone = zones[0]["zone_id"].as_str().unwrap().to_string();
        let jt = call(reqwest::Method::POST, &format!("/v1/zones/{zone}/token"), json!({})).await;
        let join = jt["token"].as_str().unwrap().to_string();

        // The quote helper, in process.
        let sockdir = dir.path().join("aesmd");
        std::fs::create_dir_all(&sockdir).unwrap();
        let socket = sockdir.join("aesm.socket");
        let backend = ccm_aesm::server::SimBackend::open(&platform).unwrap();
        let server = ccm_aesm::server::Server::bind(
            ccm_aesm::server::ServerConfig {
                socket: socket.clone(),
                ..Default::default()
            },
            backend,
        )
        .unwrap();
        ccm_aesm::server::write_platform_secret(&platform, &sockdir).unwrap();
        tokio::spawn(server.run(std::future::pending()));

        let agent = ccm_agent::start(ccm_agent::AgentConfig {
            manager: base.clone(),
            join_token: Some(join.clone()),
            name: "bench-node".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            aesm_socket: socket.clone(),
            sim_cpu_key: None,
            state_dir: dir.path().join("agent"),
            insecure_http_manager: false,
            collateral: Some(platform.join(sim::COLLATERAL_FILE)),
            ipaddress: None,
            limits: ccm_agent::LocalApiLimits::default(),
        })
        .await
        .unwrap();
        let agent_url = format!("http://{}", agent.local_addr);
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(ccm_pki::pinning::client_config_with_roots(&[]).unwrap())
            .pool_max_idle_per_host(if rate.is_some() { 1024 } else { concurrency })
            .no_proxy()
            .build()
            .unwrap();

        let aesm = AesmClient::new(&socket);
        let att_key = aesm.select_att_key_id(None).unwrap();
        let target = aesm.init_quote_ex(&att_key).unwrap().target_info;
        let quoting = Arc::new(Quoting {
            aesm,
            att_key,
            target,
            cpu: sim::load_sim_cpu(&platform).unwrap(),
            identity: enclave_identity(),
        });

        // Warm-up (connections, caches, the agent's nonce pool), then the timed run.
        let warm = 64.min(reqs.len() / 4);
        let reqs_len = reqs.len();
        let url = agent_url.clone();
        for r in reqs.iter().take(warm) {
            issue(&client, &url, &quoting, r, None).await;
        }
        let mut bodies = Vec::new();
        if evidence_ahead {
            for r in reqs.iter() {
                bodies.push(evidence(&client, &url, &quoting, r).await);
            }
        }
        let bodies = Arc::new(bodies);
        let collateral_load = pccs
            .as_ref()
            .map(|(_, server)| CollateralLoad::start(&m.state, server.clone(), &platform, &base, pin));
        let cpu_before = thread_cpu();
        let start = Instant::now();
        // (latency, when it was sent) of every timed request.
        let mut lat: Vec<(Duration, Duration)> = Vec::with_capacity(reqs.len());
        if let Some(rate) = rate {
            // Open loop: request k is due at start + k / rate whatever happened before, and
            // its latency counts from then, so a stall delays everything due during it.
            let mut sent = Vec::with_capacity(reqs.len());
            for (k, i) in (warm..reqs.len()).enumerate() {
                let due = start + Duration::from_secs_f64(k as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let (client, url, reqs, quoting, bodies) = (
                    client.clone(),
                    url.clone(),
                    reqs.clone(),
                    quoting.clone(),
                    bodies.clone(),
                );
                sent.push(tokio::spawn(async move {
                    let ready = bodies.get(i).map(String::as_str);
                    issue(&client, &url, &quoting, &reqs[i], ready).await;
                    (due.elapsed(), due - start)
                }));
            }
            for s in sent {
                lat.push(s.await.unwrap());
            }
        } else {
            // Closed loop: `concurrency` clients, each sending its next request on an answer.
            let next = Arc::new(AtomicUsize::new(warm));
            let mut workers = Vec::new();
            for _ in 0..concurrency {
                let (next, client, url, reqs, quoting, bodies) = (
                    next.clone(),
                    client.clone(),
                    url.clone(),
                    reqs.clone(),
                    quoting.clone(),
                    bodies.clone(),
                );
                workers.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= reqs_len {
                            break;
                        }
                        let t = Instant::now();
                        let ready = bodies.get(i).map(String::as_str);
                        issue(&client, &url, &quoting, &reqs[i], ready).await;
                        lat.push((t.elapsed(), t - start));
                    }
                    lat
                }));
            }
            for w in workers {
                lat.extend(w.await.unwrap());
            }
        }
        let elapsed = start.elapsed();
        let cpu_after = thread_cpu();
        if let Some(l) = collateral_load {
            let (fetches, reads) = l.stop().await;
            println!(
                "  during the run: {fetches} collateral fetches made current, {reads} reads of the manager's PCCS API ({:.0}/s)",
                reads as f64 / elapsed.as_secs_f64()
            );
        }
        lat.sort();
        // The slowest requests and when they were sent: stalls show up as a cluster.
        let slowest: Vec<String> = lat
            .iter()
            .rev()
            .take(5)
            .map(|(l, at)| format!("{:.1} ms at +{:.2} s", l.as_secs_f64() * 1e3, at.as_secs_f64()))
            .collect();
        let lat: Vec<Duration> = lat.into_iter().map(|(l, _)| l).collect();
        let mut load = match rate {
            Some(r) => format!("open loop, {r:.0}/s offered"),
            None => format!("{concurrency} concurrent"),
        };
        if evidence_ahead {
            load.push_str(", evidence taken ahead");
        }
        println!(
            "issuance via agent ({db}, {} requests, {load}): {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
            lat.len(),
            lat.len() as f64 / elapsed.as_secs_f64(),
            percentile(&lat, 0.50).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
        );
        println!(
            "  latency: p10 {:.2} ms, p90 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            percentile(&lat, 0.10).as_secs_f64() * 1e3,
            percentile(&lat, 0.90).as_secs_f64() * 1e3,
            percentile(&lat, 0.999).as_secs_f64() * 1e3,
            lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        );
        println!("  slowest: {}", slowest.join(", "));
        // CPU per issuance (client, agent and manager share this process), so that runs on a
        // busy machine can still be compared.
        let per_req = |secs: f64| secs * 1e6 / lat.len() as f64;
        let mut total = 0.0;
        let mut parts = Vec::new();
        for (group, after) in &cpu_after {
            let used = after - cpu_before.get(group).copied().unwrap_or(0.0);
            total += used;
            parts.push(format!("{group} {:.0}", per_req(used)));
        }
        println!(
            "  CPU per issuance (whole process): {:.0} µs ({}); {:.2} of {} cores busy",
            per_req(total),
            parts.join(", "),
            total / elapsed.as_secs_f64(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );

        if let Ok(bin) = std::env::var("CCM_BIN") {
            let jt = call(reqwest::Method::POST, &format!("/v1/zones/{zone}/token"), json!({})).await;
            let mut child = std::process::Command::new(bin)
                .args([
                    "agent", "--manager", &base, "--join-token", jt["token"].as_str().unwrap(),
                    "--listen", "127.0.0.1:0", "--aesm-socket", socket.to_str().unwrap(),
                    "--state-dir", dir.path().join("agent2").to_str().unwrap(),
                    "--collateral", platform.join(sim::COLLATERAL_FILE).to_str().unwrap(),
                    "--name", "rss-node",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
            let rss = status.lines().find(|l| l.starts_with("VmRSS")).unwrap_or("VmRSS: ?");
            println!("idle `ccm agent` process after enrollment and 5 s: {}", rss.split_whitespace().skip(1).collect::<Vec<_>>().join(" "));
            let _ = child.kill();
            let _ = child.wait();
        }
        agent.shutdown().await;
        m.shutdown().await;
    });
}
