//! ccm-sgx hot paths against the independent implementations the tests cross-check with:
//! quote parsing (dcap-qvl), MRENCLAVE of an SGXS stream (sgxs + OpenSSL SHA-256) and SIGSTRUCT
//! verification (sgxs + OpenSSL RSA).

// Benchmark setup unwraps: a failure there is a broken benchmark, not a result.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use ccm_sgx::{
    Measurement, MrEnclaveBuilder, Quote, SecInfo, SecInfoFlags, SigningKey, Sigstruct,
    measure_sgxs,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use openssl::bn::BigNum;
use openssl::hash::Hasher;
use openssl::rsa::Rsa;

const SGX_V3: &[u8] = include_bytes!("../tests/data/intel_sgx_quote_v3.bin");
const KEY: &str = include_str!("../tests/data/test-signing-key-e3.pkcs1.pem");

fn quote_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("quote_parse_intel_v3");
    g.bench_function("ccm-sgx", |b| {
        b.iter(|| Quote::parse(black_box(SGX_V3)).unwrap())
    });
    g.bench_function("dcap-qvl", |b| {
        b.iter(|| dcap_qvl::quote::Quote::parse(black_box(SGX_V3)).unwrap())
    });
    g.bench_function("ccm-sgx+pck_chain", |b| {
        b.iter(|| {
            Quote::parse(black_box(SGX_V3))
                .unwrap()
                .pck_cert_chain()
                .unwrap()
        })
    });
    g.finish();
}

/// An SGXS stream of 256 fully measured pages (1 MiB of measured data).
fn stream() -> Vec<u8> {
    let mut b = MrEnclaveBuilder::with_sgxs(1, 1 << 21).unwrap();
    let page: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
    let page: &[u8; 4096] = page.as_slice().try_into().unwrap();
    for i in 0..256u64 {
        b.add_page(
            i * 4096,
            SecInfo::reg(SecInfoFlags::R | SecInfoFlags::W),
            page,
            true,
        )
        .unwrap();
    }
    b.finish().sgxs.unwrap()
}

fn mrenclave(c: &mut Criterion) {
    let stream = stream();
    let mut g = c.benchmark_group("mrenclave_1mib_sgxs");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("ccm-sgx measure_sgxs", |b| {
        b.iter(|| measure_sgxs(black_box(&stream)).unwrap().mrenclave)
    });
    g.bench_function("sgxs EnclaveHash (openssl sha256)", |b| {
        b.iter(|| {
            let mut input = black_box(&stream[..]);
            let mut reader = sgxs::sgxs::CanonicalSgxsReader::new(&mut input);
            sgxs::sigstruct::EnclaveHash::from_stream::<_, Hasher>(&mut reader).unwrap()
        })
    });
    g.bench_function("sha256 of the stream (ring, lower bound)", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(&stream)))
    });
    g.finish();
}

fn sigstruct_verify(c: &mut Criterion) {
    let key = SigningKey::from_pem(KEY).unwrap();
    let mut s = Sigstruct::unsigned(Measurement([7; 32]));
    s.sign(&key).unwrap();
    let theirs = sgx_isa::Sigstruct::try_copy_from(&s.to_bytes()).unwrap();
    let mut n_be = s.modulus;
    n_be.reverse();
    let public = Rsa::from_public_components(
        BigNum::from_slice(&n_be).unwrap(),
        BigNum::from_u32(3).unwrap(),
    )
    .unwrap();

    let mut g = c.benchmark_group("sigstruct_verify");
    g.bench_function("ccm-sgx (ring RSA + Q1/Q2 check)", |b| {
        b.iter(|| black_box(&s).verify().unwrap())
    });
    g.bench_function("sgxs (openssl, no Q1/Q2)", |b| {
        b.iter(|| sgxs::sigstruct::verify::<_, Hasher>(black_box(&theirs), &*public).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("sigstruct_sign");
    g.sample_size(20);
    g.bench_function("ccm-sgx (rsa crate)", |b| {
        b.iter(|| {
            let mut s = Sigstruct::unsigned(Measurement([7; 32]));
            s.sign(&key).unwrap();
            s
        })
    });
    let private = Rsa::private_key_from_pem(KEY.as_bytes()).unwrap();
    g.bench_function("sgxs Signer (openssl)", |b| {
        b.iter(|| {
            sgxs::sigstruct::Signer::new(sgxs::sigstruct::EnclaveHash::new([7; 32]))
                .sign::<_, Hasher>(&*private)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, quote_parse, mrenclave, sigstruct_verify);
criterion_main!(benches);
