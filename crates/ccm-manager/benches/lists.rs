//! List pages at 100,000 rows: latency of `GET /v1/apps` (by name) and `GET /v1/tasks` (newest
//! first) at the first page, deep offsets and by cursor, on SQLite and PostgreSQL.
//!
//! One account gets 100,000 apps and 100,000 tasks, inserted with one SQL statement each (the
//! API would take minutes to create them); then each request shape is timed one request at a
//! time (so the figure is the server's time plus loopback, without queueing) and at 16 concurrent
//! clients. The manager runs in this process on 127.0.0.1 over plain HTTP.
//!
//!     cargo bench -p ccm-manager --bench lists
//!
//! Environment: BENCH_ROWS (default 100000), BENCH_REQUESTS (default 300) per shape.

// A benchmark has nobody to report setup failures to but the operator: abort with the reason.
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use ccm_manager::{Config, SystemClock};
use serde_json::{Value, json};
use sqlx::Connection as _;
use support::sign_up_with_account;

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Fills the account with `rows` apps and tasks copied from the one app and task it has.
async fn fill(url: &str, acct: &str, rows: i64) {
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(url).await.expect("database");
    let series = if url.starts_with("postgres") {
        format!("(SELECT generate_series(1, {rows}) AS i) n")
    } else {
        format!(
            "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows}) \
             SELECT i FROM s) n"
        )
    };
    let id = |prefix: &str| {
        if url.starts_with("postgres") {
            format!("'{prefix}' || lpad(n.i::text, 12, '0')")
        } else {
            format!("'{prefix}' || printf('%012d', n.i)")
        }
    };
    let name = if url.starts_with("postgres") {
        "'bench-' || lpad(n.i::text, 6, '0')"
    } else {
        "'bench-' || printf('%06d', n.i)"
    };
    let apps = format!(
        "INSERT INTO apps (app_id, acct_id, name, description, input_image_name, output_image_name, \
         isvprodid, isvsvn, mem_size, threads, allowed_domains, whitelisted_domains, certificate, \
         advanced_settings, labels, created_at, updated_at) \
         SELECT {}, a.acct_id, {name}, a.description, a.input_image_name, a.output_image_name, \
         a.isvprodid, a.isvsvn, a.mem_size, a.threads, '[]', '[]', NULL, a.advanced_settings, \
         a.labels, a.created_at, a.updated_at FROM {series}, (SELECT * FROM apps WHERE acct_id = '{acct}' LIMIT 1) a",
        id("00000000-0000-4000-8000-")
    );
    sqlx::query(&apps).execute(&mut db).await.expect("apps");
    let tasks = format!(
        "INSERT INTO tasks (task_id, acct_id, entity_id, task_type, status, description, \
         requester_user_id, requester_name, requester_type, domains_added, created_at, \
         status_updated_at, proposal) \
         SELECT {}, t.acct_id, t.entity_id, t.task_type, t.status, t.description, \
         t.requester_user_id, t.requester_name, t.requester_type, t.domains_added, \
         t.created_at - n.i, t.status_updated_at, t.proposal \
         FROM {series}, (SELECT * FROM tasks WHERE acct_id = '{acct}' LIMIT 1) t",
        id("00000000-0000-4000-9000-")
    );
    sqlx::query(&tasks).execute(&mut db).await.expect("tasks");
    sqlx::query("ANALYZE")
        .execute(&mut db)
        .await
        .expect("analyze");
}

struct Shape {
    name: String,
    paths: Vec<String>,
}

/// Times GETs of `paths` (cycled) `n` times with `conc` clients; (p50, p99, req/s).
async fn time(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    paths: &[String],
    n: usize,
    conc: usize,
) -> (f64, f64, f64) {
    let paths = Arc::new(paths.to_vec());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..conc {
        let (http, base, token) = (http.clone(), base.to_string(), token.to_string());
        let (paths, next) = (paths.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return lat;
                }
                let path = &paths[i % paths.len()];
                let t = Instant::now();
                let resp = http
                    .get(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("request");
                assert!(resp.status().is_success(), "{path}: {}", resp.status());
                resp.bytes().await.expect("body");
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("worker"));
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    (
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.len() as f64 / secs,
    )
}

/// The `next` cursors of every page of `path` with `limit` (walking the whole list).
async fn cursors(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    limit: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut url = format!("{path}?limit={limit}");
    loop {
        let page: Value = http
            .get(format!("{base}{url}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("json");
        match page["metadata"]["next"].as_str() {
            Some(n) => {
                out.push(n.to_string());
                url = format!("{path}?limit={limit}&next={n}");
            }
            None => return out,
        }
    }
}

async fn bench_backend(
    name: &str,
    database_url: Option<String>,
    rows: i64,
    n: usize,
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
    let url = config.database_url();
    let m = ccm_manager::start(config, Arc::new(SystemClock))
        .await
        .expect("manager starts");
    let base = m.base_url();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(ccm_pki::pinning::client_config_with_roots(&[]).expect("tls"))
        .pool_max_idle_per_host(16)
        .build()
        .expect("client");
    let token = sign_up_with_account(&http, &base, "lists@example.com", "lists").await;
    let accounts: Value = http
        .get(format!("{base}/v1/accounts"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("accounts")
        .json()
        .await
        .expect("json");
    let acct_id = accounts["items"][0]["acct_id"]
        .as_str()
        .expect("id")
        .to_string();
    // One app with an allowed domain: one app and one task to copy.
    http.post(format!("{base}/v1/apps"))
        .bearer_auth(&token)
        .json(&json!({
            "name": "seed", "input_image_name": "registry.example/app",
            "output_image_name": "registry.example/app-sgx", "isvprodid": 1, "isvsvn": 1,
            "mem_size": 1024, "threads": 16, "allowed_domains": ["seed.example"]
        }))
        .send()
        .await
        .expect("app");
    let t = Instant::now();
    fill(&url, &acct_id, rows).await;
    eprintln!(
        "{name}: {rows} apps and {rows} tasks inserted in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let deep = rows - 100;
    let mid = rows / 2;
    let app_cursors = cursors(&http, &base, &token, "/v1/apps", 1000).await;
    let task_cursors = cursors(&http, &base, &token, "/v1/tasks", 1000).await;
    let with_limit = |path: &str, cs: &[String]| {
        cs.iter()
            .map(|c| format!("{path}?limit=100&next={c}"))
            .collect::<Vec<_>>()
    };
    let shapes = [
        Shape {
            name: "GET /v1/apps first page (limit 100)".into(),
            paths: vec!["/v1/apps?limit=100".into()],
        },
        Shape {
            name: format!("GET /v1/apps offset {mid}"),
            paths: vec![format!("/v1/apps?limit=100&offset={mid}")],
        },
        Shape {
            name: format!("GET /v1/apps offset {deep}"),
            paths: vec![format!("/v1/apps?limit=100&offset={deep}")],
        },
        Shape {
            name: "GET /v1/apps by cursor (every position)".into(),
            paths: with_limit("/v1/apps", &app_cursors),
        },
        Shape {
            name: "GET /v1/tasks first page (limit 100)".into(),
            paths: vec!["/v1/tasks?limit=100".into()],
        },
        Shape {
            name: format!("GET /v1/tasks offset {deep}"),
            paths: vec![format!("/v1/tasks?limit=100&offset={deep}")],
        },
        Shape {
            name: "GET /v1/tasks by cursor (every position)".into(),
            paths: with_limit("/v1/tasks", &task_cursors),
        },
        Shape {
            name: "GET /v1/tasks?status=INPROGRESS by cursor".into(),
            paths: task_cursors
                .iter()
                .map(|c| format!("/v1/tasks?status=INPROGRESS&limit=100&next={c}"))
                .collect(),
        },
    ];
    let mut lines = Vec::new();
    for s in &shapes {
        let (p50, p99, _) = time(&http, &base, &token, &s.paths, n, 1).await;
        let (c50, c99, rate) = time(&http, &base, &token, &s.paths, n, 16).await;
        lines.push(format!(
            "| {name} | {} | {p50:.2} | {p99:.2} | {c50:.2} | {c99:.2} | {rate:.0} |",
            s.name
        ));
    }
    m.shutdown().await;
    lines
}

fn main() {
    let env = |k: &str, d: i64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let rows = env("BENCH_ROWS", 100_000);
    let n = env("BENCH_REQUESTS", 300) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pg = ccm_testkit::postgres::database().expect("PostgreSQL test cluster");
    let mut lines = rt.block_on(bench_backend("SQLite", None, rows, n));
    lines.extend(rt.block_on(bench_backend("PostgreSQL", Some(pg.url.clone()), rows, n)));
    println!("{rows} apps and {rows} tasks in one account, {n} requests per shape");
    println!(
        "| backend | request | p50 ms (1 client) | p99 ms (1 client) | p50 ms (16) | p99 ms (16) | req/s (16) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for l in lines {
        println!("{l}");
    }
}
