//! Any bytes as the DER value of the SGX PCK certificate extension (and as a certificate): the
//! parsers answer without panicking, and an accepted extension encodes to DER that parses to the
//! same value.
#![no_main]

use ccm_sgx::SgxExtension;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ext) = SgxExtension::from_der(data) {
        let der = ext.to_der().expect("an accepted extension encodes");
        assert_eq!(SgxExtension::from_der(&der).expect("the encoding parses"), ext);
    }
    let _ = SgxExtension::from_certificate_der(data);
});
