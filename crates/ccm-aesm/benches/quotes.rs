//! Quote-helper throughput and latency, with their limits measured in the same run:
//!
//! * `in_process/get_quote/{1,2}_threads`: `SimQuotingEnclave::get_quote` called directly (the
//!   ceiling for the daemon);
//! * `socket/get_quote_ex/8_clients`: GetQuoteEx through the daemon's Unix socket, 8 concurrent
//!   blocking clients, one connection per request as aesmd clients do;
//! * `latency/{direct,forward}/{get_quote_size_ex,get_quote_ex}`: one client, sequential calls,
//!   to the daemon directly and through a forwarding `ccm aesmd` in front of it (the difference is
//!   the forwarding overhead per call).
//!
//! With `CCM_BIN=path/to/ccm` set, it also starts the real `ccm aesmd` process and prints its
//! resident memory when idle and after a burst of quotes.
//!
//!     cargo bench -p ccm-aesm --bench quotes
//!     cargo build --release -p ccm && CCM_BIN=target/release/ccm cargo bench -p ccm-aesm --bench quotes

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccm_aesm::AesmClient;
use ccm_aesm::server::{Backend, ForwardBackend, Server, ServerConfig, SimBackend};
use ccm_attest::sim::{EnclaveIdentity, PlatformOptions, SimQuotingEnclave};
use ccm_sgx::{AttKeyId, Measurement, Report, ReportData, TargetInfo};
use criterion::{Criterion, Throughput};
use tempfile::TempDir;

const NOW: u64 = 1_750_000_000;

struct Daemon {
    socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn start<B: Backend>(socket: PathBuf, backend: B) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = socket.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let config = ServerConfig {
                    socket: path,
                    ..ServerConfig::default()
                };
                let server = Server::bind(config, backend).unwrap();
                ready_tx.send(()).unwrap();
                server
                    .run(async {
                        rx.await.ok();
                    })
                    .await
                    .unwrap();
            });
        });
        ready_rx.recv().unwrap();
        Self {
            socket,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            tx.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

fn platform() -> TempDir {
    let dir = TempDir::new().unwrap();
    ccm_attest::sim::init(dir.path(), &PlatformOptions::new(NOW)).unwrap();
    dir
}

fn app_report(platform: &Path, target: &TargetInfo, n: u8) -> Report {
    let identity = EnclaveIdentity {
        mr_enclave: Measurement([n; 32]),
        ..EnclaveIdentity::default()
    };
    ccm_attest::sim::load_sim_cpu(platform).unwrap().ereport(
        target,
        &identity,
        &ReportData([n; 64]),
    )
}

/// Runs `iters` calls of `f` spread over `threads` threads; returns the wall time.
fn parallel(threads: u64, iters: u64, f: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let share = iters / threads + u64::from(t < iters % threads);
            let f = &f;
            s.spawn(move || {
                for _ in 0..share {
                    f();
                }
            });
        }
    });
    start.elapsed()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(Instant::now() < deadline, "ccm aesmd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resident memory of the real `ccm aesmd` process (idle, then after 20,000 quotes from 8
/// clients).
fn real_process_rss(bin: &Path) {
    let platform = platform();
    let run = TempDir::new().unwrap();
    let socket = run.path().join("aesm.socket");
    let mut child = std::process::Command::new(bin)
        .args(["aesmd", "--socket"])
        .arg(&socket)
        .arg("--platform")
        .arg(platform.path())
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    wait_for_socket(&socket);
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(child.id());
    let client = AesmClient::new(&socket);
    let key = AttKeyId::intel_ecdsa_p256();
    let target = client.init_quote_ex(&key).unwrap().target_info;
    let size = client.get_quote_size_ex(&key).unwrap();
    let report = app_report(platform.path(), &target, 1);
    let took = parallel(8, 20_000, || {
        client.get_quote_ex(&key, &report, None, size).unwrap();
    });
    let busy = rss_kib(child.id());
    println!(
        "ccm aesmd process ({}): idle RSS {idle} KiB; after 20000 quotes from 8 clients \
         ({:.0} quotes/s, logging at warn) RSS {busy} KiB",
        bin.display(),
        20_000.0 / took.as_secs_f64()
    );
    // SIGTERM, as the kubelet would; the daemon removes its socket.
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    println!(
        "ccm aesmd exited with {status} after SIGTERM; socket removed: {}",
        !socket.exists()
    );
}

fn benches(c: &mut Criterion) {
    let platform = platform();
    let qe = Arc::new(SimQuotingEnclave::load(platform.path()).unwrap());
    let report = app_report(platform.path(), &qe.target_info(), 1);

    let mut g = c.benchmark_group("in_process");
    g.throughput(Throughput::Elements(1));
    for threads in [1u64, 2] {
        g.bench_function(format!("get_quote/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, || {
                    qe.get_quote(&report, None).unwrap();
                })
            });
        });
    }
    g.finish();

    let run = TempDir::new().unwrap();
    let direct = Daemon::start(
        run.path().join("aesm.socket"),
        SimBackend::open(platform.path()).unwrap(),
    );
    let front = Daemon::start(
        run.path().join("front.socket"),
        ForwardBackend::new(&direct.socket),
    );
    let key = AttKeyId::intel_ecdsa_p256();
    let direct_client = AesmClient::new(&direct.socket);
    let front_client = AesmClient::new(&front.socket);
    let size = direct_client.get_quote_size_ex(&key).unwrap();
    assert_eq!(
        direct_client.init_quote_ex(&key).unwrap().target_info,
        qe.target_info()
    );

    let mut g = c.benchmark_group("socket");
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_quote_ex/8_clients", |b| {
        b.iter_custom(|iters| {
            parallel(8, iters, || {
                direct_client
                    .get_quote_ex(&key, &report, None, size)
                    .unwrap();
            })
        });
    });
    g.finish();

    let mut g = c.benchmark_group("latency");
    for (name, client) in [("direct", &direct_client), ("forward", &front_client)] {
        g.bench_function(format!("{name}/get_quote_size_ex"), |b| {
            b.iter(|| client.get_quote_size_ex(&key).unwrap());
        });
        g.bench_function(format!("{name}/get_quote_ex"), |b| {
            b.iter(|| client.get_quote_ex(&key, &report, None, size).unwrap());
        });
    }
    g.finish();
    drop(front);
    drop(direct);
}

fn main() {
    if let Some(bin) = std::env::var_os("CCM_BIN") {
        real_process_rss(Path::new(&bin));
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    benches(&mut c);
    c.final_summary();
}
