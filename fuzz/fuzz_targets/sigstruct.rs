//! Any bytes as a SIGSTRUCT: parsing, header checks, date decoding and signature verification
//! answer without panicking; accepted bytes encode back unchanged.
#![no_main]

use ccm_sgx::Sigstruct;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Headers are constants, so also try the input with them forced, to reach verification.
    let mut forced = [0u8; 1808];
    let n = data.len().min(1808);
    forced[..n].copy_from_slice(&data[..n]);
    forced[..16].copy_from_slice(&Sigstruct::HEADER);
    forced[24..40].copy_from_slice(&Sigstruct::HEADER2);
    for input in [data, &forced[..]] {
        if let Ok(s) = Sigstruct::parse_checked(input) {
            assert_eq!(s.as_bytes(), input);
            let _ = s.date();
            let _ = s.mrsigner();
            let _ = s.verify();
        }
    }
});
