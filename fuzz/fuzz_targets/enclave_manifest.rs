//! Any bytes given to the launcher as `/opt/ccm/enclave.json`: the canonical manifest parser must
//! answer without panicking, and whatever it accepts must re-encode to exactly the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ccm_enclave::Manifest::from_canonical_bytes(data) {
        let again = m
            .to_canonical_bytes()
            .expect("an accepted manifest encodes");
        assert_eq!(again, data, "accepted bytes are the canonical encoding");
        // Planning the layout must not panic either (it may refuse an oversized image).
        let _ = ccm_enclave::Layout::for_manifest(&m, data.len());
    }
});
