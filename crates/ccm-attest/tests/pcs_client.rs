//! The PCS/PCCS client against a real HTTP server on loopback that serves collateral the way
//! Intel's PCS v4 API and a PCCS do (`ccm_testkit::pccs`): Intel's real sample collateral
//! replayed, and the simulated platform's. Then every way a response can be wrong.

// Test helpers outside #[test] functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use ccm_attest::pcs::{CaType, PcsClient, PcsOptions, Tee, Update};
use ccm_attest::{Collateral, CollateralParts, PcsError, TrustRoots, Verifier, VerifyError};
use ccm_testkit::pccs::{self, Fault, Shared};

const INTEL_QUOTE: &[u8] = include_bytes!("data/intel-sgx-quote.bin");
const INTEL_COLLATERAL: &[u8] = include_bytes!("data/intel-sgx-quote-collateral.json");
/// Inside the sample collateral's validity windows (see intel_sample.rs).
const INTEL_NOW: u64 = 1_750_377_600;
const INTEL_FMSPC: [u8; 6] = [0x00, 0xA0, 0x67, 0x11, 0x00, 0x00];

/// Serves `parts` as a PCCS does; answers a client of it (1.5 s timeout) and the server.
async fn serve(parts: CollateralParts, fault: Fault) -> (PcsClient, Shared) {
    let (url, state) = pccs::serve(parts, fault).await.unwrap();
    let mut options = PcsOptions::new(&format!("{url}/sgx/certification/v4/"));
    options.timeout = Duration::from_millis(1500);
    (PcsClient::new(options, ccm_tls()).unwrap(), state)
}

fn ccm_tls() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

fn intel_parts() -> CollateralParts {
    Collateral::from_json(INTEL_COLLATERAL)
        .unwrap()
        .into_parts()
}

/// Intel's real sample collateral, fetched through the client from a server replaying it as
/// PCS responses, is the same collateral byte for byte, and verifies Intel's sample quote with
/// the same verdict.
#[tokio::test]
async fn intel_collateral_fetched_verifies_the_intel_sample() {
    let (client, server) = serve(intel_parts(), Fault::None).await;
    let fetched = client
        .sgx_collateral(&INTEL_FMSPC, CaType::Processor, Update::Standard)
        .await
        .unwrap();
    let file = Collateral::from_json(INTEL_COLLATERAL).unwrap();
    assert_eq!(fetched, file);

    let verifier = Verifier::new(TrustRoots::intel());
    let summary = verifier.check_collateral(&fetched, INTEL_NOW).unwrap();
    assert_eq!(summary.fmspc, INTEL_FMSPC);
    assert!(!summary.simulated);
    assert!(summary.valid_until > INTEL_NOW);
    let ours = verifier.verify(INTEL_QUOTE, &fetched, INTEL_NOW).unwrap();
    let from_file = Verifier::new(TrustRoots::intel())
        .verify(INTEL_QUOTE, &file, INTEL_NOW)
        .unwrap();
    assert_eq!(ours.status, from_file.status);
    assert_eq!(ours.advisory_ids, from_file.advisory_ids);

    let mut seen = server.seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            "pckcrl?ca=processor&encoding=der",
            "qe/identity?update=standard",
            "rootcacrl?",
            "tcb?fmspc=00A067110000&update=standard",
        ]
    );
}

/// The simulated platform's collateral comes through the same way; the early set and the TDX
/// paths are asked for by their API names; PEM CRLs are accepted as well as DER.
#[tokio::test]
async fn simulated_collateral_early_set_tdx_paths_and_pem_crls() {
    let platform = common::default_platform();
    let parts = platform.collateral().into_parts();
    let (client, server) = serve(parts, Fault::PemCrls).await;
    let fmspc = platform.collateral().unverified_fmspc().unwrap();
    let fetched = client
        .sgx_collateral(&fmspc, CaType::Platform, Update::Early)
        .await
        .unwrap();
    assert_eq!(fetched, platform.collateral());
    let summary = platform
        .verifier()
        .check_collateral(&fetched, common::NOW)
        .unwrap();
    assert!(summary.simulated);
    assert_eq!(summary.fmspc, fmspc);

    client
        .tcb_info(Tee::Tdx, &fmspc, Update::Standard)
        .await
        .unwrap();
    client.qe_identity(Tee::Tdx, Update::Early).await.unwrap();
    let seen = server.seen.lock().unwrap().clone();
    assert!(seen.contains(&"pckcrl?ca=platform&encoding=der".to_string()));
    assert!(seen.contains(&format!(
        "tcb?fmspc={}&update=early",
        hex::encode_upper(fmspc)
    )));
    assert!(seen.contains(&"qe/identity?update=early".to_string()));
}

/// Each kind of bad answer is refused with a reason naming the endpoint; tampered contents
/// pass the client (it checks shape) and are refused by the verifier (it checks trust).
#[tokio::test]
async fn bad_answers_are_refused_with_their_reason() {
    let fmspc = INTEL_FMSPC;
    let fetch = |fault| async move {
        let (client, _) = serve(intel_parts(), fault).await;
        client
            .sgx_collateral(&fmspc, CaType::Processor, Update::Standard)
            .await
    };
    let err = fetch(Fault::NoTcbChainHeader).await.unwrap_err();
    assert!(
        matches!(&err, PcsError::Header { path, .. } if path.contains("/tcb?")),
        "{err}"
    );
    assert!(err.to_string().contains("TCB-Info-Issuer-Chain"), "{err}");
    let err = fetch(Fault::NotFound).await.unwrap_err();
    assert!(
        matches!(&err, PcsError::Status { status: 404, error: Some(e), .. } if e == "NotFound"),
        "{err}"
    );
    let err = fetch(Fault::GarbageTcbBody).await.unwrap_err();
    assert!(matches!(err, PcsError::Body { .. }), "{err}");
    let err = fetch(Fault::HugeBody).await.unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    let err = fetch(Fault::Slow).await.unwrap_err();
    assert!(matches!(err, PcsError::Request { .. }), "{err}");

    let tampered = fetch(Fault::TcbInfoTampered).await.unwrap();
    let err = Verifier::new(TrustRoots::intel())
        .check_collateral(&tampered, INTEL_NOW)
        .unwrap_err();
    assert!(matches!(err, VerifyError::TcbInfoSignature), "{err:?}");

    // Collateral past its dates, and a service nobody answers at.
    let (client, _) = serve(intel_parts(), Fault::None).await;
    let fresh = client
        .sgx_collateral(&fmspc, CaType::Processor, Update::Standard)
        .await
        .unwrap();
    let err = Verifier::new(TrustRoots::intel())
        .check_collateral(&fresh, INTEL_NOW + 400 * 86_400)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CollateralExpired { .. } | VerifyError::CertificateExpired { .. }
        ),
        "{err:?}"
    );
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = gone.local_addr().unwrap();
    drop(gone);
    let client = PcsClient::new(PcsOptions::new(&format!("http://{addr}")), ccm_tls()).unwrap();
    let err = client.pck_crl(CaType::Processor).await.unwrap_err();
    assert!(matches!(err, PcsError::Request { .. }), "{err}");
    let err = PcsClient::new(PcsOptions::new("ftp://pccs.example"), ccm_tls()).unwrap_err();
    assert!(matches!(err, PcsError::BaseUrl(_)), "{err}");
}
