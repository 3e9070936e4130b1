//! Shared helpers of the ccm-attest integration tests: simulated platforms in temporary
//! directories and quotes from them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use ccm_attest::sim::{self, EnclaveIdentity, PlatformOptions, SimQuotingEnclave};
use ccm_attest::{Collateral, RootKind, TrustRoot, TrustRoots, Verifier};
use ccm_sgx::{AttributeFlags, Attributes, Measurement, ReportData};

/// A fixed creation time (2025-01-01T00:00:00Z) so tests are deterministic.
pub const T0: u64 = 1_735_689_600;
/// A verification time inside every validity window of a platform created at `T0`.
pub const NOW: u64 = T0 + 3_600;

/// A simulated platform in a temporary directory.
pub struct Platform {
    pub dir: tempfile::TempDir,
}

impl Platform {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn collateral(&self) -> Collateral {
        sim::load_collateral(self.path()).unwrap()
    }

    pub fn root(&self) -> TrustRoot {
        sim::load_root(self.path()).unwrap()
    }

    pub fn verifier(&self) -> Verifier {
        Verifier::new(TrustRoots::empty().with(self.root()))
    }

    pub fn quote(&self) -> Vec<u8> {
        quote_with(self.path(), &identity(false), &report_data())
    }

    pub fn debug_quote(&self) -> Vec<u8> {
        quote_with(self.path(), &identity(true), &report_data())
    }
}

/// `ccm sim init` with these options.
pub fn init(options: &PlatformOptions) -> Platform {
    let dir = tempfile::tempdir().unwrap();
    sim::init(dir.path(), options).unwrap();
    Platform { dir }
}

/// `ccm sim init` of an up-to-date platform at `T0`.
pub fn default_platform() -> Platform {
    init(&PlatformOptions::new(T0))
}

/// `ccm sim add-platform` under `root`.
pub fn add(root: &Platform, options: &PlatformOptions) -> Platform {
    let dir = tempfile::tempdir().unwrap();
    sim::add_platform(root.path(), dir.path(), options).unwrap();
    Platform { dir }
}

/// The test enclave's identity.
pub fn identity(debug: bool) -> EnclaveIdentity {
    let mut flags = AttributeFlags::INIT | AttributeFlags::MODE64BIT;
    if debug {
        flags |= AttributeFlags::DEBUG;
    }
    EnclaveIdentity {
        mr_enclave: Measurement([0x11; 32]),
        mr_signer: Measurement([0x22; 32]),
        attributes: Attributes::new(flags, 0x3),
        isv_prod_id: 3,
        isv_svn: 5,
        ..EnclaveIdentity::default()
    }
}

pub fn report_data() -> ReportData {
    let mut rd = [0u8; 64];
    for (i, b) in rd.iter_mut().enumerate() {
        *b = i as u8;
    }
    ReportData(rd)
}

/// A quote through the simulated CPU and QE of the platform in `dir`.
pub fn quote_with(dir: &Path, identity: &EnclaveIdentity, report_data: &ReportData) -> Vec<u8> {
    let qe = SimQuotingEnclave::load(dir).unwrap();
    let cpu = sim::load_sim_cpu(dir).unwrap();
    let report = cpu.ereport(&qe.target_info(), identity, report_data);
    qe.get_quote(&report, None).unwrap().0
}

/// A simulated trust root read from a platform directory.
pub fn sim_root(dir: &Path) -> TrustRoot {
    TrustRoot::from_pem(
        &std::fs::read_to_string(dir.join(sim::ROOT_CA_FILE)).unwrap(),
        RootKind::Simulated,
    )
    .unwrap()
}
