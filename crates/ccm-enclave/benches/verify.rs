//! Trusted-file verification throughput (warm page cache) and raw SHA-256 throughput.
//!
//! `cargo bench -p ccm-enclave --bench verify`

#![allow(clippy::expect_used)] // Benchmark setup: a failure should abort the run.
#![allow(missing_docs)] // criterion_group! generates undocumented functions.

use std::hint::black_box;

use ccm_enclave::{
    EnclaveParams, Manifest, Runtime, Sha256Hex, TrustedFile, VerifyOptions, verify_trusted_files,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn tree(total: usize) -> (tempfile::TempDir, Manifest) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sizes = [4 << 10, 64 << 10, 1 << 20, 8 << 20];
    let mut files = Vec::new();
    let mut written = 0usize;
    let mut i = 0usize;
    while written < total {
        let size = sizes[i % sizes.len()];
        let data: Vec<u8> = (0..size).map(|j| (j * 31 + i * 7) as u8).collect();
        let rel = format!("/f/{i:06}");
        let p = dir.path().join(&rel[1..]);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, &data).expect("write");
        let mut sha = [0u8; 32];
        sha.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &data).as_ref());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&p).expect("stat").permissions(),
        ) & 0o7777;
        files.push(TrustedFile {
            path: rel,
            size: size as u64,
            mode,
            sha256: Sha256Hex(sha),
        });
        written += size;
        i += 1;
    }
    let m = Manifest {
        version: ccm_enclave::MANIFEST_VERSION,
        runtime: Runtime {
            version: "bench".into(),
            sha256: Sha256Hex([0; 32]),
        },
        entrypoint: vec!["/bin/true".into()],
        allow_runtime_args: false,
        env: Default::default(),
        passthrough_env: vec![],
        working_dir: "/".into(),
        user: String::new(),
        enclave: EnclaveParams::new(1 << 30, 1, false).expect("params"),
        certificates: vec![],
        trusted_files: files,
        symlinks: vec![],
        excluded_paths: vec![],
    };
    (dir, m)
}

fn bench(c: &mut Criterion) {
    const TOTAL: usize = 256 << 20;
    let (dir, m) = tree(TOTAL);
    let bytes: u64 = m.trusted_files.iter().map(|f| f.size).sum();
    let mut g = c.benchmark_group("trusted_files");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    for threads in [1usize, 2] {
        g.bench_function(format!("verify_{threads}_threads"), |b| {
            b.iter(|| {
                verify_trusted_files(dir.path(), black_box(&m), VerifyOptions { threads })
                    .expect("verify")
            })
        });
    }
    g.finish();

    let buf = vec![0x5au8; 64 << 20];
    let mut g = c.benchmark_group("sha256");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.sample_size(10);
    g.bench_function("ring_64MiB", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(&buf)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
