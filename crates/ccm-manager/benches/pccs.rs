//! The PCCS API the manager serves from its cache: responses per second and p50/p99 latency of
//! each read endpoint, next to `GET /healthz` (no work at all) in the same run, on the same
//! server with the same load generator.
//!
//! The manager runs in this process on 127.0.0.1 (plain HTTP: TLS cost is not measured) with a
//! simulated platform's collateral fetched from a test PCCS, the rate limit raised out of the
//! way; the load generator shares the two cores with it, so the figures are a floor.
//!
//!     cargo bench -p ccm-manager --bench pccs
//!
//! Environment: BENCH_SECS (default 5) per endpoint, BENCH_CONCURRENCY (default 32).

// A benchmark has nobody to report setup failures to but the operator: abort with the reason.
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

mod load;

use ccm_api::collateral::TcbUpdate;
use ccm_attest::sim::{self, PlatformOptions};
use ccm_attest::{CaType, Tee};
use ccm_manager::service::collateral::{Platform, fetch_and_offer};
use ccm_manager::{Clock as _, Config, SystemClock};
use load::load;

async fn run(secs: u64, conc: usize) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let platform = dir.path().join("platform");
    let now = SystemClock.now();
    sim::init(&platform, &PlatformOptions::new(now as u64)).expect("sim init");
    let parts = sim::issue_collateral(&platform, &sim::DEFAULT_FMSPC, now as u64)
        .expect("collateral")
        .into_parts();
    let (pccs_url, _pccs) = ccm_testkit::pccs::serve(parts, ccm_testkit::pccs::Fault::None)
        .await
        .expect("test PCCS");
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        insecure_http: true,
        trusted_simulated_roots: vec![platform.join(sim::ROOT_CA_FILE)],
        pccs_url: Some(pccs_url),
        pccs_api_requests_per_second: 10_000_000,
        ..Config::default()
    };
    let m = ccm_manager::start(config, Arc::new(SystemClock))
        .await
        .expect("manager starts");
    let target = Platform {
        fmspc: sim::DEFAULT_FMSPC,
        ca: CaType::Platform,
        tee: Tee::Sgx,
    };
    fetch_and_offer(&m.state, target, TcbUpdate::Standard)
        .await
        .expect("collateral fetched");
    let base = m.base_url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .build()
        .expect("client");
    let fmspc = hex::encode(sim::DEFAULT_FMSPC);
    let endpoints = [
        ("GET /healthz (baseline)", "/healthz".to_string()),
        (
            "GET /sgx/certification/v4/tcb?fmspc=",
            format!("/sgx/certification/v4/tcb?fmspc={fmspc}"),
        ),
        (
            "GET /sgx/certification/v4/qe/identity",
            "/sgx/certification/v4/qe/identity".to_string(),
        ),
        (
            "GET /sgx/certification/v4/pckcrl?ca=platform&encoding=der",
            "/sgx/certification/v4/pckcrl?ca=platform&encoding=der".to_string(),
        ),
        (
            "GET /sgx/certification/v4/rootcacrl",
            "/sgx/certification/v4/rootcacrl".to_string(),
        ),
    ];
    let mut lines = Vec::new();
    for (what, path) in endpoints {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        let s = load(conc, Duration::from_secs(secs), None, move |_| {
            let req = http.get(&url);
            async move {
                match req.send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
        .await;
        lines.push(s.line(what));
    }
    m.shutdown().await;
    lines
}

fn main() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let secs = env("BENCH_SECS", 5);
    let conc = env("BENCH_CONCURRENCY", 32) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let lines = rt.block_on(run(secs, conc));
    println!("concurrency {conc}, {secs} s per endpoint");
    println!("| measurement | req/s | p50 ms | p99 ms | requests | errors |");
    println!("|---|---|---|---|---|---|");
    for l in lines {
        println!("{l}");
    }
}
