//! The `ccm sgx` command-line contract, run through the built binary.

// Helpers outside #[test] functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;

use std::path::PathBuf;

use ccm_sgx::{
    AttributeFlags, Attributes, Measurement, MrEnclaveBuilder, SecInfo, SecInfoFlags, SigningKey,
    Sigstruct,
};
use cli::ccm;
use serde_json::Value;

const KEY: &str = include_str!("../../ccm-sgx/tests/data/test-signing-key-e3.pkcs1.pem");

/// A fresh file path under Cargo's per-target temporary directory.
fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sgx-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn sgxs() -> (Measurement, Vec<u8>) {
    let mut b = MrEnclaveBuilder::with_sgxs(1, 0x20000).unwrap();
    b.add_page(0, SecInfo::tcs(), &[0; 4096], true).unwrap();
    b.add_page(
        0x1000,
        SecInfo::reg(SecInfoFlags::R | SecInfoFlags::X),
        &[0x90; 4096],
        true,
    )
    .unwrap();
    b.add_page(
        0x2000,
        SecInfo::reg(SecInfoFlags::R | SecInfoFlags::W),
        &[0; 4096],
        false,
    )
    .unwrap();
    let m = b.finish();
    (m.mrenclave, m.sgxs.unwrap())
}

#[test]
fn measure_prints_mrenclave() {
    let (mrenclave, stream) = sgxs();
    let path = temp_file("enclave.sgxs", &stream);
    let out = ccm(&["sgx", "measure", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{mrenclave}\n")
    );

    let broken = temp_file("broken.sgxs", &stream[..stream.len() - 1]);
    let out = ccm(&["sgx", "measure", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated sgxs.record: needed 64 bytes, 63 available"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn sigstruct_prints_fields_and_verdict() {
    let (mrenclave, _) = sgxs();
    let key = SigningKey::from_pem(KEY).unwrap();
    let mut s = Sigstruct::unsigned(mrenclave);
    s.set_date(2026, 1, 2).unwrap();
    s.isv_prod_id.set(42);
    s.isv_svn.set(7);
    s.attributes = Attributes::new(AttributeFlags::MODE64BIT | AttributeFlags::DEBUG, 3);
    s.sign(&key).unwrap();
    let path = temp_file("enclave.sig", &s.to_bytes());

    let out = ccm(&["sgx", "sigstruct", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["signature_valid"], true);
    assert_eq!(json["signature_error"], Value::Null);
    assert_eq!(json["mrenclave"], mrenclave.to_string());
    assert_eq!(json["mrsigner"], key.mrsigner().to_string());
    assert_eq!(json["isvprodid"], 42);
    assert_eq!(json["isvsvn"], 7);
    assert_eq!(json["date"], "2026-01-02");
    assert_eq!(json["debug"], true);
    assert_eq!(json["exponent"], 3);
    assert_eq!(
        json["attributes"]["flag_names"],
        serde_json::json!(["DEBUG", "MODE64BIT"])
    );

    // A field changed after signing: the fields still print, the verdict is no, exit 1.
    let mut bytes = s.to_bytes();
    bytes[1026] ^= 1;
    let tampered = temp_file("tampered.sig", &bytes);
    let out = ccm(&["sgx", "sigstruct", tampered.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["signature_valid"], false);
    assert_eq!(json["isvsvn"], 6);
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature does not verify"));

    // Not a SIGSTRUCT at all: the command fails (exit 2) and says why.
    let short = temp_file("short.sig", &bytes[..1000]);
    let out = ccm(&["sgx", "sigstruct", short.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGSTRUCT must be exactly 1808 bytes"));
}
