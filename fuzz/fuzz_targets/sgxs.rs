//! Any bytes as an SGXS stream: the reader answers without panicking, and for an accepted stream
//! without UNMEASRD records MRENCLAVE is the SHA-256 of the stream.
#![no_main]

use ccm_sgx::measure_sgxs;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let Ok(measured) = measure_sgxs(data) else {
        return;
    };
    let has_unmeasured = (0..)
        .scan(0usize, |at, _| {
            let tag = data.get(*at..*at + 8)?;
            *at += if tag == b"EEXTEND\0" || tag == b"UNMEASRD" { 320 } else { 64 };
            Some(tag == b"UNMEASRD")
        })
        .any(|u| u);
    if !has_unmeasured {
        assert_eq!(measured.mrenclave.0, <[u8; 32]>::from(Sha256::digest(data)));
    }
});
