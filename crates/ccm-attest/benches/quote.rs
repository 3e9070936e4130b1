//! Quotes per second from the simulated quoting enclave (what the quote helper serves): REPORT
//! MAC check + one ECDSA P-256 signature + encoding, on one thread and on all cores.
//!
//! Run: `cargo bench -p ccm-attest --bench quote`

// Benchmark setup may panic on failure.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use ccm_attest::sim::{self, EnclaveIdentity, PlatformOptions, SimQuotingEnclave};
use ccm_sgx::{Measurement, ReportData};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn quote(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    sim::init(dir.path(), &PlatformOptions::new(1_735_689_600)).unwrap();
    let qe = Arc::new(SimQuotingEnclave::load(dir.path()).unwrap());
    let cpu = sim::load_sim_cpu(dir.path()).unwrap();
    let identity = EnclaveIdentity {
        mr_enclave: Measurement([0x11; 32]),
        ..EnclaveIdentity::default()
    };
    let report = cpu.ereport(&qe.target_info(), &identity, &ReportData([7; 64]));

    let mut group = c.benchmark_group("sim-qe");
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_quote/1-thread", |b| {
        b.iter(|| qe.get_quote(black_box(&report), None).unwrap())
    });
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = 64u64;
    group.throughput(Throughput::Elements(per_thread * threads as u64));
    group.bench_function(format!("get_quote/{threads}-threads"), |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for _ in 0..threads {
                    let qe = qe.clone();
                    s.spawn(move || {
                        for _ in 0..per_thread {
                            black_box(qe.get_quote(&report, None).unwrap());
                        }
                    });
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, quote);
criterion_main!(benches);
