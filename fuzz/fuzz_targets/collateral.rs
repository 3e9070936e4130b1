//! Any bytes as collateral: `collateral.json`, a TCB info or QE identity body, or a PCS signed
//! response. Parsers and validators answer without panicking; accepted collateral round-trips
//! through its JSON form and goes through the verifier (CRLs, PEM chains, signatures) against
//! Intel's sample quote, which must answer too.
#![no_main]

use ccm_attest::collateral::{QeIdentity, TcbInfo, split_signed_json};
use ccm_attest::{Collateral, TrustRoots, Verifier};
use libfuzzer_sys::fuzz_target;

const QUOTE: &[u8] = include_bytes!("../../crates/ccm-attest/tests/data/intel-sgx-quote.bin");
/// Inside the validity window of the sample's collateral.
const NOW: u64 = 1_750_377_600;

fuzz_target!(|data: &[u8]| {
    if let Ok(collateral) = Collateral::from_json(data) {
        let again = Collateral::from_json(collateral.to_json().as_bytes())
            .expect("serialized collateral parses");
        assert_eq!(again, collateral);
        let _ = collateral.unverified_fmspc();
        let _ = Verifier::new(TrustRoots::intel()).verify(QUOTE, &collateral, NOW);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(info) = TcbInfo::from_json(text) {
        let _ = info.validate();
    }
    if let Ok(identity) = QeIdentity::from_json(text) {
        let _ = identity.validate();
    }
    for key in ["tcbInfo", "enclaveIdentity"] {
        let _ = split_signed_json(text, key);
    }
});
