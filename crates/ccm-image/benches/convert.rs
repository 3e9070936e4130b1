//! Conversion wall time versus `skopeo copy`, SHA-256 versus `openssl dgst`, and trusted-file
//! verification throughput, measured in one run on the same machine.
//!
//! `cargo bench -p ccm-image --bench convert` (needs docker-registry, skopeo and openssl;
//! `CCM_BENCH_MB` sets the image size, default 500).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // Benchmark driver.
#![allow(missing_docs)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccm_enclave::{EnclaveParams, SigningKey, VerifyOptions, verify_trusted_files};
use ccm_image::oci::Platform;
use ccm_image::{ConvertSettings, Destination, NoProgress, Registries, RegistryOptions, Source};
use ccm_testkit::registry::Registry;
use ccm_testkit::runc::{Entry, TestImage};

/// xorshift64*: fast deterministic filler.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Content that compresses roughly 2:1 (random words mixed with repeated text).
fn content(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        let r = rng.next();
        if r & 1 == 0 {
            v.extend_from_slice(&r.to_le_bytes());
        } else {
            v.extend_from_slice(b"repeated");
        }
    }
    v.truncate(size);
    v
}

fn generate(total_mb: usize) -> TestImage {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let sizes = [512usize, 4 << 10, 32 << 10, 256 << 10, 1 << 20, 8 << 20];
    let layer_budget = total_mb * (1 << 20) / 5;
    let mut layers = Vec::new();
    let mut n = 0usize;
    for l in 0..5 {
        let mut entries = vec![Entry::dir(&format!("data{l}"))];
        let mut used = 0;
        while used < layer_budget {
            let size = sizes[(rng.next() % sizes.len() as u64) as usize];
            entries.push(Entry::file(
                &format!("data{l}/f{n:06}"),
                content(&mut rng, size),
            ));
            used += size;
            n += 1;
        }
        layers.push(entries);
    }
    TestImage {
        layers,
        entrypoint: Some(vec!["/data0/f000000".into()]),
        created: Some("2024-01-01T00:00:00Z".into()),
        ..Default::default()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let total_mb: usize = std::env::var("CCM_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let work = tempfile::tempdir().unwrap();
    println!("generating a {total_mb} MB image ...");
    let image = generate(total_mb);
    let layout = work.path().join("layout");
    image.write_oci_layout(&layout, "bench").unwrap();
    let files: usize = image.layers.iter().map(Vec::len).sum();
    drop(image);

    let a = Registry::start().unwrap();
    // Every copy goes to a fresh registry, so neither tool finds blobs already there (skopeo would
    // otherwise mount them from its blob-info cache).
    let dests: Vec<Registry> = (0..6).map(|_| Registry::start().unwrap()).collect();
    let mut insecure: Vec<String> = dests.iter().map(Registry::host).collect();
    insecure.push(a.host());
    let regs = Registries::new(&RegistryOptions {
        insecure,
        ..Default::default()
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let src_ref = format!("{}/bench/img:1", a.host());
    rt.block_on(async {
        let src = Source::open(
            &format!("oci:{}:bench", layout.display()).parse().unwrap(),
            &regs,
            None,
        )
        .await
        .unwrap();
        let dst = Destination::open(&src_ref.parse().unwrap(), &regs, None)
            .await
            .unwrap();
        ccm_image::copy(&src, &dst, &Platform::linux_amd64(), &NoProgress)
            .await
            .unwrap();
    });
    let compressed: u64 = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "image: {files} files, {total_mb} MB uncompressed, {} MB compressed",
        compressed >> 20
    );

    let key =
        Arc::new(SigningKey::from_pem(include_str!("../tests/data/test-signing-key.pem")).unwrap());
    let settings = ConvertSettings {
        enclave: EnclaveParams::new(2 << 30, 16, false).unwrap(),
        isv_prod_id: 1,
        isv_svn: 1,
        entrypoint: None,
        args: None,
        allow_runtime_args: false,
        env: vec![],
        passthrough_env: vec![],
        certificates: vec![],
        excluded_paths: vec![],
        launcher: vec![0x7f; 4 << 20].into(),
        launcher_version: "bench".into(),
        signing_key: key,
        platform: Platform::linux_amd64(),
    };

    let (mut skopeo, mut ccm) = (Vec::new(), Vec::new());
    let mut last_out = String::new();
    for run in 0..3 {
        let t = Instant::now();
        let st = Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(format!("docker://{src_ref}"))
            .arg(format!("docker://{}/skopeo/img:1", dests[2 * run].host()))
            .status()
            .expect("skopeo (Debian package skopeo)");
        assert!(st.success());
        skopeo.push(t.elapsed());

        let out_ref = format!("{}/ccm/img:1", dests[2 * run + 1].host());
        let t = Instant::now();
        rt.block_on(async {
            let src = Source::open(&src_ref.parse().unwrap(), &regs, None)
                .await
                .unwrap();
            let dst = Destination::open(&out_ref.parse().unwrap(), &regs, None)
                .await
                .unwrap();
            ccm_image::convert(&src, &dst, &settings, &NoProgress)
                .await
                .unwrap();
        });
        ccm.push(t.elapsed());
        last_out = out_ref;
    }
    let (s, c) = (median(skopeo), median(ccm));
    println!(
        "| conversion of {total_mb} MB / {files} files, registry to registry (median of 3) | ccm convert {:.2} s | skopeo copy {:.2} s | ratio {:.2}x |",
        c.as_secs_f64(),
        s.as_secs_f64(),
        c.as_secs_f64() / s.as_secs_f64()
    );

    // SHA-256 over the same file: ring (read + hash, as the verifier does) versus openssl dgst.
    let file = work.path().join("sha.bin");
    let mut rng = Rng(7);
    std::fs::write(&file, content(&mut rng, 1 << 30)).unwrap();
    let _ = Command::new("openssl")
        .args(["dgst", "-sha256"])
        .arg(&file)
        .output()
        .unwrap();
    let mut ring_t = Vec::new();
    let mut ossl_t = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut f = std::fs::File::open(&file).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        let ring_hex: String = ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ring_t.push(t.elapsed());
        let t = Instant::now();
        let out = Command::new("openssl")
            .args(["dgst", "-sha256", "-r"])
            .arg(&file)
            .output()
            .unwrap();
        ossl_t.push(t.elapsed());
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with(&ring_hex),
            "same digest"
        );
    }
    let gib = |d: Duration| 1.0 / d.as_secs_f64();
    let (r, o) = (median(ring_t), median(ossl_t));
    println!(
        "| SHA-256 of a 1 GiB file, warm (median of 3) | ring {:.2} GiB/s | openssl dgst {:.2} GiB/s | {:.0}% |",
        gib(r),
        gib(o),
        100.0 * o.as_secs_f64() / r.as_secs_f64()
    );
    std::fs::remove_file(&file).unwrap();

    // Trusted-file verification of the converted image, unpacked (warm page cache).
    let rootfs = work.path().join("rootfs");
    rt.block_on(async {
        let src = Source::open(&last_out.parse().unwrap(), &regs, None)
            .await
            .unwrap();
        ccm_image::unpack(&src, &Platform::linux_amd64(), &rootfs, &NoProgress)
            .await
            .unwrap();
    });
    let manifest_bytes = std::fs::read(rootfs.join("opt/ccm/enclave.json")).unwrap();
    let m = ccm_enclave::Manifest::from_canonical_bytes(&manifest_bytes).unwrap();
    let bytes: u64 = m.trusted_files.iter().map(|f| f.size).sum();
    for threads in [1, 2] {
        let mut times = Vec::new();
        for _ in 0..4 {
            let t = Instant::now();
            verify_trusted_files(&rootfs, &m, VerifyOptions { threads }).unwrap();
            times.push(t.elapsed());
        }
        let d = median(times);
        println!(
            "| trusted-file verification, {} files / {} MB, warm, {threads} thread(s) | {:.2} GB/s |",
            m.trusted_files.len(),
            bytes >> 20,
            bytes as f64 / d.as_secs_f64() / 1e9
        );
    }
}
