//! Our verifier on Intel's real sample SGX quote and collateral (shipped in the dcap-qvl crate,
//! see tests/data/README.md), under Intel's root, cross-checked against dcap-qvl.

// Test helpers outside #[test] functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ccm_attest::{Collateral, CollateralItem, TcbStatus, TrustRoots, Verifier, VerifyError};

const QUOTE: &[u8] = include_bytes!("data/intel-sgx-quote.bin");
const COLLATERAL: &[u8] = include_bytes!("data/intel-sgx-quote-collateral.json");

/// 2025-06-20T00:00:00Z: inside the validity windows of the sample's TCB info (issued
/// 2025-06-19T10:56:11Z), QE identity and CRLs (all valid for 30 days).
const NOW: u64 = 1_750_377_600;

fn dcap_qvl(now: u64) -> Result<dcap_qvl::verify::VerifiedReport, String> {
    let collateral: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(COLLATERAL).unwrap();
    dcap_qvl::verify::QuoteVerifier::new_prod()
        .with_config::<dcap_qvl::configs::RustCryptoConfig>()
        .verify(QUOTE, &collateral, now)
        .map_err(|e| format!("{e:#}"))
}

#[test]
fn verifies_intel_sample_with_the_verdict_dcap_qvl_gives() {
    let collateral = Collateral::from_json(COLLATERAL).unwrap();
    let verifier = Verifier::new(TrustRoots::intel());
    let ours = verifier.verify(QUOTE, &collateral, NOW).unwrap();
    let theirs = dcap_qvl(NOW).unwrap();

    assert_eq!(ours.status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    assert_eq!(ours.status.as_str(), theirs.status);
    assert_eq!(ours.advisory_ids, theirs.advisory_ids);
    assert_eq!(ours.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert_eq!(
        ours.platform_status.as_str(),
        theirs.platform_status.status.to_string()
    );
    assert_eq!(ours.qe_status.as_str(), theirs.qe_status.status.to_string());
    assert_eq!(ours.qe_status, TcbStatus::UpToDate);
    assert!(!ours.simulated);
    assert_eq!(ours.fmspc, [0x00, 0xA0, 0x67, 0x11, 0x00, 0x00]);
    assert_eq!(ours.ppid.as_slice(), theirs.ppid.as_slice());
    match theirs.report {
        dcap_qvl::quote::Report::SgxEnclave(r) => {
            assert_eq!(ours.report.mr_enclave.0, r.mr_enclave);
            assert_eq!(ours.report.mr_signer.0, r.mr_signer);
            assert_eq!(ours.report.report_data.0, r.report_data);
            assert_eq!(ours.isvsvn(), r.isv_svn);
            assert_eq!(ours.isvprodid(), r.isv_prod_id);
        }
        other => panic!("unexpected report kind {other:?}"),
    }
    assert!(!ours.debug());

    // The second verification is served from the caches and agrees.
    let stats = verifier.cache_stats();
    assert_eq!(
        (stats.pck_chains, stats.collaterals, stats.qe_reports),
        (1, 1, 1)
    );
    assert_eq!(verifier.verify(QUOTE, &collateral, NOW).unwrap(), ours);
}

#[test]
fn intel_sample_outside_the_collateral_window_is_refused_by_both() {
    let collateral = Collateral::from_json(COLLATERAL).unwrap();
    let verifier = Verifier::new(TrustRoots::intel());
    // 2025-08-01: the TCB info expired on 2025-07-19.
    let later = 1_754_006_400;
    let err = verifier.verify(QUOTE, &collateral, later).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CollateralExpired {
                item: CollateralItem::TcbInfo,
                ..
            }
        ),
        "{err}"
    );
    assert!(dcap_qvl(later).is_err());
    // 2025-06-01: issued later than that.
    let earlier = 1_748_736_000;
    let err = verifier.verify(QUOTE, &collateral, earlier).unwrap_err();
    assert!(
        matches!(err, VerifyError::CollateralNotYetValid { .. }),
        "{err}"
    );
    assert!(dcap_qvl(earlier).is_err());
}

#[test]
fn intel_sample_is_refused_without_the_intel_root() {
    let collateral = Collateral::from_json(COLLATERAL).unwrap();
    let verifier = Verifier::new(TrustRoots::empty());
    let err = verifier.verify(QUOTE, &collateral, NOW).unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
}

#[test]
fn truncated_intel_quote_is_an_error_at_every_length() {
    let collateral = Collateral::from_json(COLLATERAL).unwrap();
    let verifier = Verifier::new(TrustRoots::intel());
    // Cut inside the certification data is the interesting region; check every length there
    // and a stride elsewhere (each call is cheap but the quote is 4.6 kB).
    for len in (0..QUOTE.len()).filter(|l| l % 7 == 0 || *l > QUOTE.len() - 64) {
        assert!(
            verifier.verify(&QUOTE[..len], &collateral, NOW).is_err(),
            "len {len}"
        );
    }
}
