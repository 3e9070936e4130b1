//! Policy decisions on verified quotes.

// Test helpers outside #[test] functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ccm_attest::sim::PlatformOptions;
use ccm_attest::{Policy, PolicyViolation, TcbStatus};
use common::*;

fn verified(tcb: TcbStatus, debug: bool) -> ccm_attest::VerifiedQuote {
    let p = init(&PlatformOptions {
        tcb_status: tcb,
        ..PlatformOptions::new(T0)
    });
    let quote = if debug { p.debug_quote() } else { p.quote() };
    p.verifier().verify(&quote, &p.collateral(), NOW).unwrap()
}

#[test]
fn default_policy_is_strict() {
    let policy = Policy::default();
    assert_eq!(
        policy.accepted_statuses(),
        [TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded]
    );
    // Simulated platforms are refused by default, whatever else holds.
    let up = verified(TcbStatus::UpToDate, false);
    assert_eq!(policy.violations(&up), [PolicyViolation::SimulatedPlatform]);
    let sim_ok = Policy::default().dangerous_allow_simulated(true);
    assert!(sim_ok.check(&up).is_ok());
    assert!(
        sim_ok
            .check(&verified(TcbStatus::SWHardeningNeeded, false))
            .is_ok()
    );
    for status in [
        TcbStatus::ConfigurationNeeded,
        TcbStatus::ConfigurationAndSWHardeningNeeded,
        TcbStatus::OutOfDate,
        TcbStatus::OutOfDateConfigurationNeeded,
        TcbStatus::Revoked,
    ] {
        let err = sim_ok.check(&verified(status, false)).unwrap_err();
        assert_eq!(
            err.violations,
            [PolicyViolation::TcbStatus(status)],
            "{status}"
        );
    }
}

#[test]
fn debug_isvsvn_and_status_options() {
    let base = Policy::default().dangerous_allow_simulated(true);
    let debug = verified(TcbStatus::UpToDate, true);
    assert_eq!(base.violations(&debug), [PolicyViolation::DebugEnclave]);
    assert!(base.clone().allow_debug(true).check(&debug).is_ok());

    let up = verified(TcbStatus::UpToDate, false);
    assert_eq!(up.isvsvn(), 5);
    assert!(base.clone().min_isvsvn(5).check(&up).is_ok());
    assert_eq!(
        base.clone().min_isvsvn(6).violations(&up),
        [PolicyViolation::IsvSvnTooLow { isvsvn: 5, min: 6 }]
    );

    let ood = verified(TcbStatus::OutOfDate, false);
    let lenient = base
        .clone()
        .accept_statuses([TcbStatus::UpToDate, TcbStatus::OutOfDate]);
    assert!(lenient.check(&ood).is_ok());
    // Revoked cannot be accepted, even when asked for.
    let revoked = verified(TcbStatus::Revoked, false);
    let reckless = base.accept_statuses(TcbStatus::ALL);
    assert!(!reckless.accepted_statuses().contains(&TcbStatus::Revoked));
    assert!(reckless.check(&revoked).is_err());
}

#[test]
fn all_violations_are_reported_together() {
    let debug_ood = verified(TcbStatus::OutOfDate, true);
    let err = Policy::default()
        .min_isvsvn(9)
        .check(&debug_ood)
        .unwrap_err();
    assert_eq!(
        err.violations,
        [
            PolicyViolation::TcbStatus(TcbStatus::OutOfDate),
            PolicyViolation::DebugEnclave,
            PolicyViolation::IsvSvnTooLow { isvsvn: 5, min: 9 },
            PolicyViolation::SimulatedPlatform,
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains("OutOfDate") && text.contains("debug") && text.contains("simulated"),
        "{text}"
    );
}
