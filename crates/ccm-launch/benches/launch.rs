//! Launcher benchmarks with the shipped binary (scripts/build-launcher: static, `launcher`
//! profile), printed as a table for BENCHMARKS.md:
//!
//! 1. start → certificate on disk (EC P-256), against a real `ccm aesmd` (simulated platform) and
//!    the node-agent protocol peer of the tests (which issues at once), compared in the same run
//!    with the launcher doing everything but the certificate, and with starting the app directly;
//! 2. trusted-file verification throughput on a warm page cache (~512 MB of mixed-size files),
//!    compared with `sha256sum` over the same files.
//!
//! `cargo bench -p ccm-launch --bench launch` (`CCM_BENCH_RUNS`, `CCM_BENCH_MB` to change sizes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

/// The shipped launcher with the simulated platform (the bench attests on one).
fn static_launcher() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-launcher");
    let out = Command::new(script).arg("--simulation").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (percentile(&v, 0.5), percentile(&v, 0.9), v[0])
}

fn time_runs(runs: usize, mut cmd: impl FnMut() -> Command) -> Vec<f64> {
    (0..runs)
        .map(|_| {
            let mut c = cmd();
            let t = Instant::now();
            let out = c
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            ms
        })
        .collect()
}

fn main() {
    let runs: usize = std::env::var("CCM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mb: usize = std::env::var("CCM_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let launcher = static_launcher();
    println!(
        "launcher: {} ({} bytes)",
        launcher.display(),
        std::fs::metadata(&launcher).unwrap().len()
    );

    // 1. Start to certificate on disk.
    let platform = Platform::start();
    let agent = AgentPeer::start(Behaviour::Issue {
        pending_polls: 0,
        lifetime_secs: 86_400,
    });
    let mut spec = ImageSpec::default();
    spec.entrypoint = vec!["/bin/sh".into(), "-c".into(), ":".into()];
    let img = image(&spec);
    let mut no_cert = spec.clone();
    no_cert.certificates.clear();
    let img_no_cert = image(&no_cert);
    let launch = |img: &TestImage| {
        let mut c = Command::new(&launcher);
        c.env_clear()
            .arg(format!("--ccm-root={}", img.root.display()))
            .arg(format!("--ccm-aesm-socket={}", platform.socket().display()))
            .arg("--ccm-no-renew")
            .env("SGX_AESM_ADDR", "1")
            .env("NODE_AGENT_BASE_URL", &agent.url);
        c
    };
    // Warm up (page cache, first connections).
    time_runs(5, || launch(&img));
    let with_cert = stats(time_runs(runs, || launch(&img)));
    let without = stats(time_runs(runs, || launch(&img_no_cert)));
    let direct = stats(time_runs(runs, || {
        let mut c = Command::new(img.root.join("bin/sh"));
        c.args(["-c", ":"]);
        c
    }));
    assert!(img.root.join("run/secrets/cert.pem").is_file());
    println!(
        "| start → exit of the app, EC P-256 certificate (aesmd + agent peer) | p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms |",
        with_cert.0, with_cert.1, with_cert.2
    );
    println!(
        "| same image without a certificate (verify + exec only) | p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms |",
        without.0, without.1, without.2
    );
    println!(
        "| /bin/sh -c : started directly | p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms |",
        direct.0, direct.1, direct.2
    );
    println!(
        "| → certificate step (difference of p50s) | {:.1} ms |",
        with_cert.0 - without.0
    );

    // 2. File verification throughput.
    let mut files = Vec::new();
    let mut total = 0usize;
    let mut i = 0usize;
    let sizes = [
        4 << 20,
        1 << 20,
        256 << 10,
        64 << 10,
        16 << 10,
        4 << 10,
        700,
    ];
    while total < mb << 20 {
        let size = sizes[i % sizes.len()];
        let data: Vec<u8> = (0..size).map(|b| (b as u8) ^ (i as u8)).collect();
        files.push((format!("/data/d{:02}/f{i:05}", i % 37), data, 0o644));
        total += size;
        i += 1;
    }
    let mut big = ImageSpec::default();
    big.certificates.clear();
    big.files = files;
    big.entrypoint = vec!["/bin/sh".into(), "-c".into(), ":".into()];
    // Room for the files in the enclave.
    let img_big = {
        let mut spec = big.clone();
        spec.files.push(("/app/x".into(), vec![1], 0o644));
        image_with_mem(&spec, (2 * total as u64).next_power_of_two())
    };
    // Warm the page cache.
    let all: Vec<PathBuf> = walk(&img_big.root.join("data"));
    for f in &all {
        let _ = std::fs::read(f);
    }
    let mut ours = Vec::new();
    for _ in 0..5 {
        let out = Command::new(&launcher)
            .env_clear()
            .arg(format!("--ccm-root={}", img_big.root.display()))
            .arg("--ccm-verify-only")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ours.push(v["mb_per_s"].as_f64().unwrap());
    }
    let mut theirs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let st = Command::new("sha256sum")
            .args(&all)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        theirs.push(total as f64 / t.elapsed().as_secs_f64() / 1e6);
    }
    let (o50, _, _) = stats(ours.clone());
    let (t50, _, _) = stats(theirs.clone());
    println!(
        "| trusted-file verification, {} files, {:.0} MB, warm cache (--ccm-verify-only) | median {:.0} MB/s (best {:.0}) |",
        all.len(),
        total as f64 / 1e6,
        o50,
        ours.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "| sha256sum over the same files (one process, one core) | median {:.0} MB/s (best {:.0}) |",
        t50,
        theirs.iter().cloned().fold(0.0, f64::max)
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn image_with_mem(spec: &ImageSpec, mem: u64) -> TestImage {
    let mut img = image(&ImageSpec {
        files: vec![],
        ..spec.clone()
    });
    // Re-lay the files and the manifest with a larger enclave.
    for (path, data, mode) in &spec.files {
        let p = img.path(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(*mode)).unwrap();
    }
    let mut m = img.manifest.clone();
    m.enclave = ccm_enclave::EnclaveParams::new(mem, 2, false).unwrap();
    m.trusted_files.extend(
        spec.files
            .iter()
            .map(|(path, data, mode)| ccm_enclave::TrustedFile {
                path: path.clone(),
                size: data.len() as u64,
                mode: *mode,
                sha256: sha(data),
            }),
    );
    m.trusted_files.sort_by(|a, b| a.path.cmp(&b.path));
    img.rewrite(m);
    img
}
