//! Any bytes as a quote for the DCAP verifier, with Intel's sample collateral under Intel's root:
//! the verifier answers (almost always "no", with a reason) without panicking, cold and warm.
#![no_main]

use std::sync::LazyLock;

use ccm_attest::{Collateral, TrustRoots, Verifier};
use libfuzzer_sys::fuzz_target;

const COLLATERAL: &[u8] =
    include_bytes!("../../crates/ccm-attest/tests/data/intel-sgx-quote-collateral.json");
/// Inside the validity window of the sample's collateral.
const NOW: u64 = 1_750_377_600;

static STATE: LazyLock<(Verifier, Collateral)> = LazyLock::new(|| {
    let collateral = Collateral::from_json(COLLATERAL).expect("sample collateral parses");
    (Verifier::new(TrustRoots::intel()), collateral)
});

fuzz_target!(|data: &[u8]| {
    let (verifier, collateral) = &*STATE;
    let _ = verifier.verify(data, collateral, NOW);
});
