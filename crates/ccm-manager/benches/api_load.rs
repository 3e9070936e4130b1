//! Load benchmark of the manager's API: requests per second and p50/p99 latency for
//! authenticated `GET /v1/apps` and task approval (`PATCH /v1/tasks/{id}`), on SQLite and on
//! PostgreSQL, next to unauthenticated `GET /healthz` (no database) measured in the same run.
//!
//! The manager runs in this process on 127.0.0.1 (plain HTTP, so TLS cost is not measured) and
//! the load generator shares the machine with it: the figures are a floor for a dedicated host.
//!
//!     cargo bench -p ccm-manager --bench api_load
//!
//! Environment: BENCH_SECS (default 5) per read measurement, BENCH_CONCURRENCY (default 16),
//! BENCH_APPROVALS (default 1000) tasks approved per backend.

// A benchmark has nobody to report setup failures to but the operator: abort with the reason.
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

mod load;
mod support;

use ccm_manager::{Config, SystemClock};
use load::load;
use serde_json::{Value, json};
use support::sign_up_with_account;

async fn bench_backend(
    name: &str,
    database_url: Option<String>,
    secs: u64,
    conc: usize,
    approvals: usize,
) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        database_url,
        insecure_http: true,
        db_max_connections: 16,
        open_signup: true,
        ..Config::default()
    };
    let m = ccm_manager::start(config, Arc::new(SystemClock))
        .await
        .expect("manager starts");
    let base = m.base_url();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(ccm_pki::pinning::client_config_with_roots(&[]).expect("tls"))
        .pool_max_idle_per_host(conc)
        .build()
        .expect("client");
    let token = sign_up_with_account(&http, &base, "bench@example.com", "bench").await;
    let mut app_id = String::new();
    for i in 0..20 {
        let app: Value = http
            .post(format!("{base}/v1/apps"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("app-{i}"), "input_image_name": "registry.example/in", "output_image_name": "registry.example/out",
                "isvprodid": 1, "isvsvn": 1, "mem_size": 1024, "threads": 16, "allowed_domains": [format!("app{i}.example.com")]}))
            .send()
            .await
            .expect("app")
            .json()
            .await
            .expect("json");
        app_id = app["app_id"].as_str().expect("app id").to_string();
    }
    let mut tasks = Vec::with_capacity(approvals);
    for i in 0..approvals {
        let b: Value = http
            .post(format!("{base}/v1/builds"))
            .bearer_auth(&token)
            .json(&json!({"app_id": app_id, "docker_info": {"docker_image_name": "registry.example/out", "docker_version": format!("v{i}")},
                "mrenclave": format!("{:064x}", i), "mrsigner": "ab".repeat(32)}))
            .send()
            .await
            .expect("build")
            .json()
            .await
            .expect("json");
        tasks.push(b["pending_task_id"].as_str().expect("task").to_string());
    }
    let dur = Duration::from_secs(secs);
    let mut lines = Vec::new();
    {
        let (http, base) = (http.clone(), base.clone());
        let s = load(conc, dur, None, move |_| {
            let req = http.get(format!("{base}/healthz"));
            async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        lines.push(s.line(&format!("{name}: GET /healthz (no auth, no DB; baseline)")));
    }
    {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        let s = load(conc, dur, None, move |_| {
            let req = http.get(format!("{base}/v1/apps")).bearer_auth(&token);
            async move {
                match req.send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
        .await;
        lines.push(s.line(&format!("{name}: GET /v1/apps (20 apps, bearer token)")));
    }
    {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        let tasks = Arc::new(tasks);
        let s = load(conc, dur, Some(approvals), move |i| {
            let req = http
                .patch(format!("{base}/v1/tasks/{}", tasks[i]))
                .bearer_auth(&token)
                .json(&json!({"status": "APPROVED"}));
            async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        lines.push(s.line(&format!(
            "{name}: PATCH /v1/tasks/{{id}} approve (write + audit, durable)"
        )));
    }
    m.shutdown().await;
    lines
}

/// Child mode: serve a manager (SQLite, plain HTTP) and print its URL, until stdin closes.
fn serve_only(dir: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.into(),
            insecure_http: true,
            open_signup: true,
            ..Config::default()
        };
        let m = ccm_manager::start(config, Arc::new(SystemClock))
            .await
            .expect("manager starts");
        println!("{}", m.base_url());
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await;
        m.shutdown().await;
    });
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Starts this executable in child mode and reports the manager's RSS when idle: after start,
/// and after a burst of authenticated requests has settled.
fn idle_rss(rt: &tokio::runtime::Runtime) -> String {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut child = std::process::Command::new(exe)
        .arg("--serve-only")
        .arg(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("child manager");
    let mut url = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut url)
        .expect("url");
    let base = url.trim().to_string();
    std::thread::sleep(Duration::from_millis(500));
    let at_start = vm_rss_kib(child.id());
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(
                ccm_pki::pinning::client_config_with_roots(&[]).expect("tls"),
            )
            .build()
            .expect("client");
        let token = sign_up_with_account(&http, &base, "rss@example.com", "rss").await;
        for _ in 0..1000 {
            http.get(format!("{base}/v1/apps"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("apps");
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let after = vm_rss_kib(child.id());
    drop(child.stdin.take());
    let _ = child.wait();
    format!(
        "idle manager RSS (SQLite): {:.1} MiB after start, {:.1} MiB after sign-up, login, account creation and 1000 GET /v1/apps",
        at_start as f64 / 1024.0,
        after as f64 / 1024.0
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve-only") {
        serve_only(args.get(2).map_or("/tmp/ccm-bench", String::as_str));
        return;
    }
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let secs = env("BENCH_SECS", 5);
    let conc = env("BENCH_CONCURRENCY", 16) as usize;
    let approvals = env("BENCH_APPROVALS", 1000) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rss = idle_rss(&rt);
    let pg = ccm_testkit::postgres::database().expect("PostgreSQL test cluster");
    let mut lines = rt.block_on(bench_backend("SQLite", None, secs, conc, approvals));
    lines.extend(rt.block_on(bench_backend(
        "PostgreSQL",
        Some(pg.url.clone()),
        secs,
        conc,
        approvals,
    )));
    println!(
        "concurrency {conc}, {secs} s per read measurement, {approvals} approvals per backend"
    );
    println!("| measurement | req/s | p50 ms | p99 ms | requests | errors |");
    println!("|---|---|---|---|---|---|");
    for l in lines {
        println!("{l}");
    }
    println!("{rss}");
}
