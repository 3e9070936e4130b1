//! Simulated platform → verifier round trips: every TCB status, QE convergence, caches, v4.

// Test helpers outside #[test] functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ccm_attest::sim::{self, PlatformOptions, SimQuotingEnclave};
use ccm_attest::{CacheLimits, TcbStatus, TrustRoots, Verifier};
use ccm_sgx::{Quote, QuoteHeader, TargetInfo};
use common::*;

fn platform_with(tcb: TcbStatus, qe: TcbStatus) -> Platform {
    init(&PlatformOptions {
        tcb_status: tcb,
        qe_status: qe,
        ..PlatformOptions::new(T0)
    })
}

fn owned(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn every_platform_tcb_status_round_trips_with_its_advisories() {
    use sim::{
        SA_CONFIGURATION as CONF, SA_OUT_OF_DATE as OOD, SA_REVOKED as REV, SA_SW_HARDENING as SWH,
    };
    let cases: [(TcbStatus, &[&str]); 7] = [
        (TcbStatus::UpToDate, &[]),
        (TcbStatus::SWHardeningNeeded, &[SWH]),
        (TcbStatus::ConfigurationNeeded, &[CONF]),
        (TcbStatus::ConfigurationAndSWHardeningNeeded, &[CONF, SWH]),
        (TcbStatus::OutOfDate, &[OOD, SWH]),
        (TcbStatus::OutOfDateConfigurationNeeded, &[CONF, OOD, SWH]),
        (TcbStatus::Revoked, &[REV]),
    ];
    for (status, advisories) in cases {
        let p = platform_with(status, TcbStatus::UpToDate);
        let info = sim::PlatformInfo::load(p.path()).unwrap();
        assert_eq!(info.tcb_status, status);
        let v = p
            .verifier()
            .verify(&p.quote(), &p.collateral(), NOW)
            .unwrap();
        assert_eq!(v.status, status, "platform created as {status}");
        assert_eq!(v.platform_status, status);
        assert_eq!(v.qe_status, TcbStatus::UpToDate);
        assert_eq!(v.advisory_ids, owned(advisories), "{status}");
        assert_eq!(v.platform_advisory_ids, owned(advisories));
        assert!(v.qe_advisory_ids.is_empty());
        assert!(v.simulated);
        assert_eq!(v.report.mr_enclave.0, [0x11; 32]);
        assert_eq!(v.report.mr_signer.0, [0x22; 32]);
        assert_eq!(v.isvprodid(), 3);
        assert_eq!(v.isvsvn(), 5);
        assert_eq!(v.report.report_data, report_data());
        assert!(!v.debug());
        assert_eq!(v.fmspc, sim::DEFAULT_FMSPC);
        assert_eq!(hex::encode(v.ppid), info.ppid);
        assert_eq!(v.quote_version, 3);
        assert_eq!(v.valid_until, info.collateral_next_update);
    }
}

#[test]
fn qe_status_converges_as_intel_qvl_does() {
    use TcbStatus::*;
    use sim::{SA_CONFIGURATION as CONF, SA_OUT_OF_DATE as OOD, SA_QE_OUT_OF_DATE as QOOD};
    use sim::{SA_QE_REVOKED as QREV, SA_SW_HARDENING as SWH};
    let cases: [(TcbStatus, TcbStatus, TcbStatus, &[&str]); 7] = [
        (UpToDate, OutOfDate, OutOfDate, &[QOOD]),
        (SWHardeningNeeded, OutOfDate, OutOfDate, &[SWH, QOOD]),
        (
            ConfigurationNeeded,
            OutOfDate,
            OutOfDateConfigurationNeeded,
            &[CONF, QOOD],
        ),
        (
            ConfigurationAndSWHardeningNeeded,
            OutOfDate,
            OutOfDateConfigurationNeeded,
            &[CONF, SWH, QOOD],
        ),
        (OutOfDate, OutOfDate, OutOfDate, &[OOD, SWH, QOOD]),
        (UpToDate, Revoked, Revoked, &[QREV]),
        (ConfigurationNeeded, Revoked, Revoked, &[CONF, QREV]),
    ];
    for (platform, qe, want, advisories) in cases {
        let p = platform_with(platform, qe);
        let v = p
            .verifier()
            .verify(&p.quote(), &p.collateral(), NOW)
            .unwrap();
        assert_eq!(v.platform_status, platform);
        assert_eq!(v.qe_status, qe);
        assert_eq!(v.status, want, "platform {platform} + QE {qe}");
        assert_eq!(
            v.advisory_ids,
            owned(advisories),
            "platform {platform} + QE {qe}"
        );
    }
}

#[test]
fn qe_below_every_identity_level_is_revoked() {
    // Intel's QVL treats a QE ISVSVN below all QE identity levels as revoked.
    let p = init(&PlatformOptions {
        qe_isvsvn_override: Some(1),
        ..PlatformOptions::new(T0)
    });
    let v = p
        .verifier()
        .verify(&p.quote(), &p.collateral(), NOW)
        .unwrap();
    assert_eq!(v.qe_status, TcbStatus::Revoked);
    assert_eq!(v.status, TcbStatus::Revoked);
    assert!(v.qe_advisory_ids.is_empty());
}

#[test]
fn platform_between_levels_takes_the_first_level_it_meets() {
    // Component 6 above the UpToDate level, component 0 between SWHardening and UpToDate.
    let mut comps = [7, 9, 3, 3, 255, 1, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let p = init(&PlatformOptions {
        tcb_override: Some((comps, 13)),
        ..PlatformOptions::new(T0)
    });
    let v = p
        .verifier()
        .verify(&p.quote(), &p.collateral(), NOW)
        .unwrap();
    assert_eq!(v.status, TcbStatus::SWHardeningNeeded);
    // A PCESVN below the level's pushes the platform down to the next level it meets.
    comps[0] = 8;
    let p = init(&PlatformOptions {
        tcb_override: Some((comps, 12)),
        ..PlatformOptions::new(T0)
    });
    let v = p
        .verifier()
        .verify(&p.quote(), &p.collateral(), NOW)
        .unwrap();
    assert_eq!(
        v.status,
        TcbStatus::Revoked,
        "PCESVN 12 meets only the PCESVN-11 level"
    );
}

#[test]
fn platform_below_every_level_is_refused() {
    let p = init(&PlatformOptions {
        tcb_override: Some(([4; 16], 13)),
        ..PlatformOptions::new(T0)
    });
    let err = p
        .verifier()
        .verify(&p.quote(), &p.collateral(), NOW)
        .unwrap_err();
    assert!(
        matches!(err, ccm_attest::VerifyError::NoMatchingTcbLevel),
        "{err}"
    );
}

#[test]
fn debug_enclaves_verify_and_say_so() {
    let p = default_platform();
    let v = p
        .verifier()
        .verify(&p.debug_quote(), &p.collateral(), NOW)
        .unwrap();
    assert!(v.debug());
    assert_eq!(v.to_json()["debug"], true);
}

#[test]
fn platforms_added_under_one_root_verify_under_that_root() {
    let root = default_platform();
    let second = add(
        &root,
        &PlatformOptions {
            tcb_status: TcbStatus::OutOfDate,
            now: T0 + 60,
            ..PlatformOptions::new(T0)
        },
    );
    assert_eq!(
        std::fs::read(second.path().join(sim::ROOT_CA_FILE)).unwrap(),
        std::fs::read(root.path().join(sim::ROOT_CA_FILE)).unwrap()
    );
    let verifier = root.verifier();
    let v1 = verifier
        .verify(&root.quote(), &root.collateral(), NOW)
        .unwrap();
    let v2 = verifier
        .verify(&second.quote(), &second.collateral(), NOW)
        .unwrap();
    assert_eq!(v1.status, TcbStatus::UpToDate);
    assert_eq!(v2.status, TcbStatus::OutOfDate);
    assert_ne!(v1.ppid, v2.ppid);
    // Platforms of one FMSPC share collateral: each verifies with the other's too.
    assert_eq!(
        verifier
            .verify(&root.quote(), &second.collateral(), NOW)
            .unwrap()
            .status,
        TcbStatus::UpToDate
    );
    assert_eq!(
        verifier
            .verify(&second.quote(), &root.collateral(), NOW)
            .unwrap()
            .status,
        TcbStatus::OutOfDate
    );
}

#[test]
fn repeat_quotes_are_served_from_the_caches() {
    let p = default_platform();
    let verifier = p.verifier();
    let collateral = p.collateral();
    let first = verifier.verify(&p.quote(), &collateral, NOW).unwrap();
    let stats = verifier.cache_stats();
    assert_eq!(
        (
            stats.pck_chains,
            stats.collaterals,
            stats.qe_reports,
            stats.issuers
        ),
        (1, 1, 1, 2),
        "one PCK chain, one collateral, one QE report, the PCK CA and the TCB signer"
    );
    // A different quote (new signature) from the same platform reuses every cached part.
    let second = verifier.verify(&p.quote(), &collateral, NOW).unwrap();
    assert_eq!(verifier.cache_stats(), stats);
    assert_eq!(first, second);
    // An uncached verifier gives the same answer.
    let cold = Verifier::with_cache_limits(TrustRoots::empty().with(p.root()), CacheLimits::NONE);
    assert_eq!(cold.verify(&p.quote(), &collateral, NOW).unwrap(), first);
    assert_eq!(cold.cache_stats().pck_chains, 0);
    // A new platform under the same root reuses the verified PCK CA.
    let sibling = add(&p, &PlatformOptions::new(T0));
    verifier.verify(&sibling.quote(), &collateral, NOW).unwrap();
    let after = verifier.cache_stats();
    assert_eq!((after.pck_chains, after.issuers), (2, 2));
    verifier.clear_caches();
    assert_eq!(verifier.cache_stats().collaterals, 0);
}

#[test]
fn one_verifier_serves_many_threads() {
    let p = default_platform();
    let verifier = std::sync::Arc::new(p.verifier());
    let collateral = std::sync::Arc::new(p.collateral());
    let quotes: Vec<Vec<u8>> = (0..8).map(|_| p.quote()).collect();
    let threads: Vec<_> = quotes
        .into_iter()
        .map(|q| {
            let verifier = verifier.clone();
            let collateral = collateral.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let v = verifier.verify(&q, &collateral, NOW).unwrap();
                    assert_eq!(v.status, TcbStatus::UpToDate);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn v4_sgx_quotes_verify() {
    // Re-encode a v3 quote as v4 (certification data type 6 wrapping the QE report and the
    // type-5 chain) and re-sign header ‖ body with the platform's attestation key.
    let p = default_platform();
    let mut quote = Quote::parse(&p.quote()).unwrap();
    quote.header = QuoteHeader {
        version: 4.into(),
        ..quote.header
    };
    let key_pem = std::fs::read_to_string(p.path().join(sim::ATTESTATION_KEY_FILE)).unwrap();
    let pkcs8 = pem::parse(key_pem).unwrap();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.contents(),
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let sig = key
        .sign(&ring::rand::SystemRandom::new(), &quote.signed_bytes())
        .unwrap();
    quote.signature_data.signature = sig.as_ref().try_into().unwrap();
    let bytes = quote.to_bytes().unwrap();
    assert_eq!(u16::from_le_bytes([bytes[0], bytes[1]]), 4);
    let v = p.verifier().verify(&bytes, &p.collateral(), NOW).unwrap();
    assert_eq!(v.quote_version, 4);
    assert_eq!(v.status, TcbStatus::UpToDate);
}

#[test]
fn quotes_with_zero_padding_verify() {
    let p = default_platform();
    let mut quote = p.quote();
    quote.extend_from_slice(&[0; 100]);
    assert!(p.verifier().verify(&quote, &p.collateral(), NOW).is_ok());
}

#[test]
fn qe_report_info_binds_the_quote() {
    let p = default_platform();
    let qe = SimQuotingEnclave::load(p.path()).unwrap();
    let cpu = sim::load_sim_cpu(p.path()).unwrap();
    let report = cpu.ereport(&qe.target_info(), &identity(false), &report_data());
    let app = TargetInfo {
        mr_enclave: ccm_sgx::Measurement([0x11; 32]),
        ..TargetInfo::default()
    };
    let request = ccm_sgx::QeReportInfo {
        nonce: [0x42; 16],
        app_target_info: app,
        ..ccm_sgx::QeReportInfo::default()
    };
    let (quote, info) = qe.get_quote(&report, Some(&request)).unwrap();
    let info = info.unwrap();
    assert_eq!(info.nonce, [0x42; 16]);
    assert_eq!(info.app_target_info, app);
    let qe_report = info.qe_report;
    // The application checks the QE report's MAC with its own report key...
    assert!(cpu.verify_report(&qe_report, &app.mr_enclave));
    assert!(!cpu.verify_report(&qe_report, &qe.mr_enclave()));
    // ...and that REPORTDATA[0..32] = SHA-256(nonce ‖ quote).
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[0x42; 16]);
    ctx.update(&quote);
    assert_eq!(&qe_report.body.report_data.0[..32], ctx.finish().as_ref());
    assert_eq!(&qe_report.body.report_data.0[32..], &[0; 32]);
    assert_eq!(qe_report.body.mr_enclave, qe.mr_enclave());
    assert_eq!(quote.len(), qe.quote_size());
}

#[test]
fn quote_fmspc_is_the_same_before_and_after_the_pck_chain_is_cached() {
    let p = platform_with(TcbStatus::UpToDate, TcbStatus::UpToDate);
    let verifier = p.verifier();
    let quote = p.quote();
    assert_eq!(verifier.quote_fmspc(&quote), Some(sim::DEFAULT_FMSPC));
    verifier.verify(&quote, &p.collateral(), NOW).unwrap();
    assert_eq!(verifier.cache_stats().pck_chains, 1);
    assert_eq!(verifier.quote_fmspc(&quote), Some(sim::DEFAULT_FMSPC));
    assert_eq!(verifier.quote_fmspc(&quote[..100]), None);
    assert_eq!(verifier.quote_fmspc(b"not a quote"), None);
}

#[test]
fn collateral_sets_order_part_by_part_and_lend_their_newer_parts() {
    use ccm_attest::{CaType, Collateral, CollateralParts, Recency, newest_parts};
    let p = platform_with(TcbStatus::UpToDate, TcbStatus::UpToDate);
    let verifier = p.verifier();
    let issue = |t: u64| sim::issue_collateral(p.dir.path(), &sim::DEFAULT_FMSPC, t).unwrap();
    let (old, new) = (issue(T0), issue(T0 + 86_400));
    let at = T0 + 2 * 86_400;
    let summary = |c: &Collateral| verifier.check_collateral(c, at).unwrap();
    let (s_old, s_new) = (summary(&old), summary(&new));
    assert_eq!(s_old.ca_type, Some(CaType::Platform));
    assert_eq!(s_new.compare_age(&s_old), Recency::Newer);
    assert_eq!(s_old.compare_age(&s_new), Recency::Older);
    assert_eq!(s_old.compare_age(&s_old), Recency::Same);
    assert!(s_old.same_platform(&s_new));

    // The newer PCK CRL with the older TCB info: pieced together, newer nowhere in full.
    let mixed = Collateral::new(CollateralParts {
        pck_crl: new.parts().pck_crl.clone(),
        pck_crl_issuer_chain: new.parts().pck_crl_issuer_chain.clone(),
        ..old.parts().clone()
    })
    .unwrap();
    let s_mixed = summary(&mixed);
    assert_eq!(s_mixed.compare_age(&s_old), Recency::Newer);
    assert_eq!(s_mixed.compare_age(&s_new), Recency::Older);
    let other = Collateral::new(CollateralParts {
        tcb_info: new.parts().tcb_info.clone(),
        tcb_info_signature: new.parts().tcb_info_signature.clone(),
        ..old.parts().clone()
    })
    .unwrap();
    let s_other = summary(&other);
    assert_eq!(s_other.compare_age(&s_mixed), Recency::Mixed);

    // Lending: the current set takes the offer's newer parts only, and the result verifies.
    let merged = newest_parts((&mixed, &s_mixed), (&other, &s_other)).unwrap();
    let s_merged = summary(&merged);
    assert_eq!(s_merged.compare_age(&s_mixed), Recency::Newer);
    assert_eq!(s_merged.compare_age(&s_other), Recency::Newer);
    assert_eq!(merged.parts().pck_crl, new.parts().pck_crl);
    assert_eq!(merged.parts().tcb_info, new.parts().tcb_info);
    assert_eq!(merged.parts().qe_identity, old.parts().qe_identity);
    verifier.verify(&p.quote(), &merged, at).unwrap();
    // Nothing newer to lend.
    assert!(newest_parts((&new, &s_new), (&old, &s_old)).is_none());
}

#[test]
fn a_tcb_recovery_is_announced_early_then_put_in_force() {
    let p = platform_with(TcbStatus::UpToDate, TcbStatus::UpToDate);
    let verifier = p.verifier();
    let quote = p.quote();
    let verdict = |early: bool| {
        let c = sim::issue_collateral_set(p.dir.path(), &sim::DEFAULT_FMSPC, NOW, early).unwrap();
        let v = verifier.verify(&quote, &c, NOW).unwrap();
        (v.status, v.tcb_evaluation_data_number)
    };
    assert_eq!(verdict(false), (TcbStatus::UpToDate, 1));
    let announced = sim::tcb_recovery(p.dir.path(), true).unwrap();
    assert_eq!((announced.standard, announced.early), (1, 2));
    assert_eq!(verdict(false), (TcbStatus::UpToDate, 1));
    assert_eq!(verdict(true), (TcbStatus::OutOfDate, 2));
    // Announcing again announces the same one.
    assert_eq!(sim::tcb_recovery(p.dir.path(), true).unwrap().early, 2);
    let in_force = sim::tcb_recovery(p.dir.path(), false).unwrap();
    assert_eq!((in_force.standard, in_force.early), (2, 2));
    assert_eq!(verdict(false), (TcbStatus::OutOfDate, 2));
    // A second recovery, straight into force.
    assert_eq!(sim::tcb_recovery(p.dir.path(), false).unwrap().standard, 3);
    let v = verifier
        .verify(
            &quote,
            &sim::issue_collateral(p.dir.path(), &sim::DEFAULT_FMSPC, NOW).unwrap(),
            NOW,
        )
        .unwrap();
    assert_eq!(v.status, TcbStatus::OutOfDate);
    assert!(v.advisory_ids.iter().any(|a| a == sim::SA_TCB_RECOVERY));
}
