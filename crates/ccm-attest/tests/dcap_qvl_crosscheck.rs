//! dcap-qvl, an independent verifier, checks our simulated quotes with our collateral under our
//! simulated root and must reach the same verdict as ours.
//!
//! Known, documented differences: dcap-qvl refuses a `Revoked` TCB outright (we return it as a
//! status for policy to refuse) and refuses debug enclaves unless `allow_debug` is set.

// Test helpers outside #[test] functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ccm_attest::TcbStatus;
use ccm_attest::sim::{self, PlatformOptions};
use common::*;

fn dcap_qvl(
    p: &Platform,
    quote: &[u8],
    now: u64,
) -> Result<dcap_qvl::verify::VerifiedReport, String> {
    let root = pem::parse(std::fs::read(p.path().join(sim::ROOT_CA_FILE)).unwrap()).unwrap();
    // The very file our verifier reads, through dcap-qvl's own serde.
    let collateral: dcap_qvl::QuoteCollateralV3 =
        serde_json::from_slice(&std::fs::read(p.path().join(sim::COLLATERAL_FILE)).unwrap())
            .unwrap();
    let ring = dcap_qvl::verify::QuoteVerifier::new(root.contents().to_vec())
        .with_config::<dcap_qvl::configs::RingConfig>()
        .verify(quote, &collateral, now)
        .map_err(|e| format!("{e:#}"));
    let rustcrypto = dcap_qvl::verify::QuoteVerifier::new(root.contents().to_vec())
        .with_config::<dcap_qvl::configs::RustCryptoConfig>()
        .verify(quote, &collateral, now)
        .map_err(|e| format!("{e:#}"));
    assert_eq!(ring, rustcrypto, "dcap-qvl's two backends disagree");
    ring
}

#[test]
fn dcap_qvl_agrees_on_every_status() {
    let statuses = [
        (TcbStatus::UpToDate, TcbStatus::UpToDate),
        (TcbStatus::SWHardeningNeeded, TcbStatus::UpToDate),
        (TcbStatus::ConfigurationNeeded, TcbStatus::UpToDate),
        (
            TcbStatus::ConfigurationAndSWHardeningNeeded,
            TcbStatus::UpToDate,
        ),
        (TcbStatus::OutOfDate, TcbStatus::UpToDate),
        (TcbStatus::OutOfDateConfigurationNeeded, TcbStatus::UpToDate),
        (TcbStatus::UpToDate, TcbStatus::OutOfDate),
        (TcbStatus::ConfigurationNeeded, TcbStatus::OutOfDate),
        (TcbStatus::SWHardeningNeeded, TcbStatus::OutOfDate),
    ];
    for (tcb, qe) in statuses {
        let p = init(&PlatformOptions {
            tcb_status: tcb,
            qe_status: qe,
            ..PlatformOptions::new(T0)
        });
        let quote = p.quote();
        let ours = p.verifier().verify(&quote, &p.collateral(), NOW).unwrap();
        let theirs = dcap_qvl(&p, &quote, NOW)
            .unwrap_or_else(|e| panic!("dcap-qvl refused {tcb}/{qe}: {e}"));
        assert_eq!(ours.status.as_str(), theirs.status, "{tcb}/{qe}");
        assert_eq!(ours.advisory_ids, theirs.advisory_ids, "{tcb}/{qe}");
        assert_eq!(
            ours.platform_status.as_str(),
            theirs.platform_status.status.to_string()
        );
        assert_eq!(ours.qe_status.as_str(), theirs.qe_status.status.to_string());
        assert_eq!(ours.ppid.as_slice(), theirs.ppid.as_slice());
        match theirs.report {
            dcap_qvl::quote::Report::SgxEnclave(r) => {
                assert_eq!(ours.report.mr_enclave.0, r.mr_enclave);
                assert_eq!(ours.report.report_data.0, r.report_data);
            }
            other => panic!("unexpected report kind {other:?}"),
        }
    }
}

#[test]
fn revoked_tcb_is_a_status_for_us_and_a_refusal_for_dcap_qvl() {
    for (tcb, qe) in [
        (TcbStatus::Revoked, TcbStatus::UpToDate),
        (TcbStatus::UpToDate, TcbStatus::Revoked),
    ] {
        let p = init(&PlatformOptions {
            tcb_status: tcb,
            qe_status: qe,
            ..PlatformOptions::new(T0)
        });
        let quote = p.quote();
        let ours = p.verifier().verify(&quote, &p.collateral(), NOW).unwrap();
        assert_eq!(ours.status, TcbStatus::Revoked);
        let err = dcap_qvl(&p, &quote, NOW).unwrap_err();
        assert!(err.contains("Revoked"), "{err}");
    }
}

#[test]
fn both_refuse_what_must_be_refused() {
    // Revoked PCK certificate.
    let p = init(&PlatformOptions {
        revoked: true,
        ..PlatformOptions::new(T0)
    });
    let quote = p.quote();
    assert!(p.verifier().verify(&quote, &p.collateral(), NOW).is_err());
    let err = dcap_qvl(&p, &quote, NOW).unwrap_err();
    assert!(err.to_lowercase().contains("revoked"), "{err}");

    // Expired collateral.
    let p = default_platform();
    let info = sim::PlatformInfo::load(p.path()).unwrap();
    let quote = p.quote();
    let later = info.collateral_next_update + 1;
    assert!(p.verifier().verify(&quote, &p.collateral(), later).is_err());
    assert!(dcap_qvl(&p, &quote, later).is_err());

    // A tampered ISV report body.
    let mut bad = quote.clone();
    bad[48 + 64] ^= 1;
    assert!(p.verifier().verify(&bad, &p.collateral(), NOW).is_err());
    assert!(dcap_qvl(&p, &bad, NOW).is_err());

    // Debug enclave: dcap-qvl refuses by default; we verify and report it for policy.
    let debug = p.debug_quote();
    assert!(
        p.verifier()
            .verify(&debug, &p.collateral(), NOW)
            .unwrap()
            .debug()
    );
    assert!(dcap_qvl(&p, &debug, NOW).unwrap_err().contains("Debug"));
}

#[test]
fn dcap_qvl_parses_our_pck_extension_identically() {
    let p = default_platform();
    let chain = std::fs::read(p.path().join(sim::PCK_CHAIN_FILE)).unwrap();
    let ext = dcap_qvl::intel::parse_pck_extension_from_pem(&chain).unwrap();
    let info = sim::PlatformInfo::load(p.path()).unwrap();
    assert_eq!(hex::encode(&ext.ppid), info.ppid);
    assert_eq!(hex::encode_upper(ext.fmspc), info.fmspc);
    assert_eq!(hex::encode(ext.cpu_svn), info.cpu_svn);
    assert_eq!(ext.pce_svn, info.pce_svn);
    assert_eq!(hex::encode_upper(&ext.pce_id), info.pce_id);
    assert_eq!(ext.sgx_type, 0);
    assert!(ext.platform_instance_id.is_some());
    assert_eq!(ext.smt_enabled, Some(true));
}
