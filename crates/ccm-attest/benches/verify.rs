//! Verifications per second of one quote + collateral, in one run: ccm with warm caches, ccm
//! cold (a fresh verifier), ccm with caching disabled, ccm for a new platform under known
//! collateral, dcap-qvl (ring and RustCrypto backends), and one bare ECDSA P-256 verification
//! with ring (the floor a warm verification cannot beat).
//!
//! Two data sets: a simulated platform's quote (collateral and root from `ccm sim init`) and
//! Intel's sample quote shipped with dcap-qvl (under Intel's root, at a time inside its
//! collateral's validity window).
//!
//! Run: `cargo bench -p ccm-attest --bench verify`

// Benchmark setup may panic on failure.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use ccm_attest::sim::{self, EnclaveIdentity, PlatformOptions, SimQuotingEnclave};
use ccm_attest::{CacheLimits, Collateral, TrustRoots, Verifier};
use ccm_sgx::{Measurement, Quote, ReportData};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const SIM_NOW: u64 = 1_735_693_200;
const INTEL_NOW: u64 = 1_750_377_600;

struct DataSet {
    name: &'static str,
    quote: Vec<u8>,
    /// A quote of another platform of the same FMSPC under the same root, if there is one.
    sibling_quote: Option<Vec<u8>>,
    collateral: Collateral,
    collateral_json: Vec<u8>,
    roots: TrustRoots,
    root_der: Vec<u8>,
    now: u64,
}

fn quote_of(dir: &std::path::Path) -> Vec<u8> {
    let qe = SimQuotingEnclave::load(dir).unwrap();
    let cpu = sim::load_sim_cpu(dir).unwrap();
    let identity = EnclaveIdentity {
        mr_enclave: Measurement([0x11; 32]),
        mr_signer: Measurement([0x22; 32]),
        isv_prod_id: 1,
        isv_svn: 1,
        ..EnclaveIdentity::default()
    };
    let report = cpu.ereport(&qe.target_info(), &identity, &ReportData([7; 64]));
    qe.get_quote(&report, None).unwrap().0
}

fn simulated() -> (DataSet, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    sim::init(dir.path(), &PlatformOptions::new(SIM_NOW - 3_600)).unwrap();
    let sibling = dir.path().join("sibling");
    sim::add_platform(dir.path(), &sibling, &PlatformOptions::new(SIM_NOW - 3_600)).unwrap();
    let quote = quote_of(dir.path());
    let sibling_quote = Some(quote_of(&sibling));
    let root = sim::load_root(dir.path()).unwrap();
    let root_der = root.der().to_vec();
    let collateral_json = std::fs::read(dir.path().join(sim::COLLATERAL_FILE)).unwrap();
    (
        DataSet {
            name: "simulated",
            quote,
            sibling_quote,
            collateral: Collateral::from_json(&collateral_json).unwrap(),
            collateral_json,
            roots: TrustRoots::empty().with(root),
            root_der,
            now: SIM_NOW,
        },
        dir,
    )
}

fn intel_sample() -> DataSet {
    let collateral_json = include_bytes!("../tests/data/intel-sgx-quote-collateral.json").to_vec();
    DataSet {
        name: "intel-sample",
        quote: include_bytes!("../tests/data/intel-sgx-quote.bin").to_vec(),
        sibling_quote: None,
        collateral: Collateral::from_json(&collateral_json).unwrap(),
        collateral_json,
        roots: TrustRoots::intel(),
        root_der: ccm_attest::INTEL_SGX_ROOT_CA_DER.to_vec(),
        now: INTEL_NOW,
    }
}

fn bench_set(c: &mut Criterion, set: &DataSet) {
    let mut group = c.benchmark_group(format!("verify/{}", set.name));
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));

    let warm = Verifier::new(set.roots.clone());
    let expected = warm.verify(&set.quote, &set.collateral, set.now).unwrap();
    group.bench_function("ccm-warm", |b| {
        b.iter(|| {
            warm.verify(black_box(&set.quote), &set.collateral, set.now)
                .unwrap()
        })
    });

    // Cold: the first verification of a fresh verifier (empty caches).
    group.bench_function("ccm-cold", |b| {
        b.iter_batched(
            || Verifier::new(set.roots.clone()),
            |v| {
                v.verify(black_box(&set.quote), &set.collateral, set.now)
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    // Caching disabled altogether: every step redone, nothing shared even within one call.
    let uncached = Verifier::with_cache_limits(set.roots.clone(), CacheLimits::NONE);
    assert_eq!(
        uncached
            .verify(&set.quote, &set.collateral, set.now)
            .unwrap(),
        expected
    );
    group.bench_function("ccm-uncached", |b| {
        b.iter(|| {
            uncached
                .verify(black_box(&set.quote), &set.collateral, set.now)
                .unwrap()
        })
    });

    // First quote of a new platform whose collateral (and PCK CA) the verifier already knows:
    // the common "cold" case in production (a node joins a known FMSPC).
    if let Some(sibling) = &set.sibling_quote {
        group.bench_function("ccm-new-platform-known-collateral", |b| {
            b.iter_batched(
                || {
                    let v = Verifier::new(set.roots.clone());
                    v.verify(&set.quote, &set.collateral, set.now).unwrap();
                    v
                },
                |v| {
                    v.verify(black_box(sibling), &set.collateral, set.now)
                        .unwrap()
                },
                BatchSize::PerIteration,
            )
        });
    }

    let qvl_collateral: dcap_qvl::QuoteCollateralV3 =
        serde_json::from_slice(&set.collateral_json).unwrap();
    let qvl_ring = dcap_qvl::verify::QuoteVerifier::new(set.root_der.clone())
        .with_config::<dcap_qvl::configs::RingConfig>();
    let report = qvl_ring
        .verify(&set.quote, &qvl_collateral, set.now)
        .unwrap();
    assert_eq!(report.status, expected.status.as_str());
    group.bench_function("dcap-qvl-ring", |b| {
        b.iter(|| {
            qvl_ring
                .verify(black_box(&set.quote), &qvl_collateral, set.now)
                .unwrap()
        })
    });
    let qvl_rc = dcap_qvl::verify::QuoteVerifier::new(set.root_der.clone())
        .with_config::<dcap_qvl::configs::RustCryptoConfig>();
    qvl_rc.verify(&set.quote, &qvl_collateral, set.now).unwrap();
    group.bench_function("dcap-qvl-rustcrypto", |b| {
        b.iter(|| {
            qvl_rc
                .verify(black_box(&set.quote), &qvl_collateral, set.now)
                .unwrap()
        })
    });

    // The floor: the quote signature alone, one ECDSA P-256 verification with ring.
    let parsed = Quote::parse(&set.quote).unwrap();
    let mut point = vec![0x04];
    point.extend_from_slice(&parsed.signature_data.attestation_key);
    let signed = set.quote[..parsed.signed_len()].to_vec();
    let sig = parsed.signature_data.signature;
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
    key.verify(&signed, &sig).unwrap();
    group.bench_function("bare-ecdsa-p256-verify", |b| {
        b.iter(|| key.verify(black_box(&signed), black_box(&sig)).unwrap())
    });
    group.finish();
}

fn verify(c: &mut Criterion) {
    let (sim_set, _dir) = simulated();
    bench_set(c, &sim_set);
    bench_set(c, &intel_sample());
}

criterion_group!(benches, verify);
criterion_main!(benches);
