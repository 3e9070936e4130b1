//! The simulated CPU: EREPORT with a MAC that the simulated quoting enclave can check.
//!
//! A real CPU MACs a REPORT with a key only the target enclave can derive (EGETKEY). The
//! simulation replaces that secret hardware key with the 32-byte platform secret:
//!
//! ```text
//! report key = HMAC-SHA256(platform secret, "ccm-sim-report-key" ‖ target MRENCLAVE ‖ KEYID)[0..16]
//! MAC        = AES-128-CMAC(report key, REPORT[0..384])
//! ```
//!
//! Anyone holding the secret can mint REPORTs for any identity: in simulation nothing is
//! isolated. That is what simulation means.

use aes::Aes128;
use ccm_sgx::{
    Attributes, CpuSvn, Measurement, Report, ReportBody, ReportData, TargetInfo, U16, U32,
};
use cmac::{Cmac, Mac};
use ring::hmac;
use zeroize::Zeroizing;

/// Domain separation label of the report key derivation.
const REPORT_KEY_LABEL: &[u8] = b"ccm-sim-report-key";
/// Label of the KEYID derivation.
const KEY_ID_LABEL: &[u8] = b"ccm-sim-report-keyid";

/// The identity an enclave's REPORT states (what SIGSTRUCT and EINIT decide on real hardware).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnclaveIdentity {
    /// MRENCLAVE.
    pub mr_enclave: Measurement,
    /// MRSIGNER.
    pub mr_signer: Measurement,
    /// ATTRIBUTES.
    pub attributes: Attributes,
    /// MISCSELECT.
    pub misc_select: u32,
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// CONFIGSVN.
    pub config_svn: u16,
    /// ISVEXTPRODID.
    pub isv_ext_prod_id: [u8; 16],
    /// ISVFAMILYID.
    pub isv_family_id: [u8; 16],
    /// CONFIGID.
    pub config_id: [u8; 64],
}

impl Default for EnclaveIdentity {
    /// All fields zero.
    fn default() -> Self {
        EnclaveIdentity {
            mr_enclave: Measurement::default(),
            mr_signer: Measurement::default(),
            attributes: Attributes::default(),
            misc_select: 0,
            isv_prod_id: 0,
            isv_svn: 0,
            config_svn: 0,
            isv_ext_prod_id: [0; 16],
            isv_family_id: [0; 16],
            config_id: [0; 64],
        }
    }
}

impl EnclaveIdentity {
    /// The REPORT body this identity produces on a CPU with `cpu_svn`, carrying `report_data`.
    pub fn report_body(&self, cpu_svn: CpuSvn, report_data: &ReportData) -> ReportBody {
        ReportBody {
            cpu_svn,
            misc_select: U32::new(self.misc_select),
            isv_ext_prod_id: self.isv_ext_prod_id,
            attributes: self.attributes,
            mr_enclave: self.mr_enclave,
            mr_signer: self.mr_signer,
            config_id: self.config_id,
            isv_prod_id: U16::new(self.isv_prod_id),
            isv_svn: U16::new(self.isv_svn),
            config_svn: U16::new(self.config_svn),
            isv_family_id: self.isv_family_id,
            report_data: *report_data,
            ..ReportBody::default()
        }
    }
}

/// A simulated SGX CPU holding the platform secret.
#[derive(Clone)]
pub struct SimCpu {
    secret: Zeroizing<[u8; 32]>,
    cpu_svn: CpuSvn,
    key_id: [u8; 32],
}

impl std::fmt::Debug for SimCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCpu")
            .field("cpu_svn", &self.cpu_svn)
            .finish_non_exhaustive()
    }
}

impl SimCpu {
    /// A CPU with this platform secret and CPUSVN zero.
    ///
    /// Enclaves that only have the secret file (`ccm-sim-cpu.key`) use this; the verifier does
    /// not judge the ISV report's CPUSVN (the platform TCB comes from the PCK certificate).
    pub fn new(secret: [u8; 32]) -> SimCpu {
        let key_id = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &secret), KEY_ID_LABEL);
        let mut id = [0u8; 32];
        id.copy_from_slice(key_id.as_ref());
        SimCpu {
            secret: Zeroizing::new(secret),
            cpu_svn: CpuSvn::default(),
            key_id: id,
        }
    }

    /// The same CPU reporting `cpu_svn` in its REPORTs.
    pub fn with_cpu_svn(mut self, cpu_svn: CpuSvn) -> SimCpu {
        self.cpu_svn = cpu_svn;
        self
    }

    /// The CPUSVN this CPU reports.
    pub fn cpu_svn(&self) -> CpuSvn {
        self.cpu_svn
    }

    /// The report key for reports targeted at `target_mrenclave` with `key_id`.
    pub fn report_key(
        &self,
        target_mrenclave: &Measurement,
        key_id: &[u8; 32],
    ) -> Zeroizing<[u8; 16]> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.secret.as_ref());
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(REPORT_KEY_LABEL);
        ctx.update(&target_mrenclave.0);
        ctx.update(key_id);
        let tag = ctx.sign();
        let mut out = Zeroizing::new([0u8; 16]);
        if let Some(head) = tag.as_ref().get(..16) {
            out.copy_from_slice(head);
        }
        out
    }

    fn mac(
        &self,
        target_mrenclave: &Measurement,
        key_id: &[u8; 32],
        body: &ReportBody,
    ) -> [u8; 16] {
        let key = self.report_key(target_mrenclave, key_id);
        // A 16-byte key is always a valid AES-128 key.
        let mut mac = <Cmac<Aes128> as Mac>::new(key.as_ref().into());
        mac.update(body.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// EREPORT: a REPORT of `identity` carrying `report_data`, MAC'ed for `target`.
    pub fn ereport(
        &self,
        target: &TargetInfo,
        identity: &EnclaveIdentity,
        report_data: &ReportData,
    ) -> Report {
        let body = identity.report_body(self.cpu_svn, report_data);
        self.report_for(target, body)
    }

    /// EREPORT for an already assembled body (the quoting enclave's own reports).
    pub fn report_for(&self, target: &TargetInfo, body: ReportBody) -> Report {
        let mac = self.mac(&target.mr_enclave, &self.key_id, &body);
        Report {
            body,
            key_id: self.key_id,
            mac,
        }
    }

    /// What the target enclave does with EGETKEY + CMAC: whether `report` was produced by this
    /// CPU for the enclave with MRENCLAVE `own_mrenclave`. Constant-time in the MAC comparison.
    pub fn verify_report(&self, report: &Report, own_mrenclave: &Measurement) -> bool {
        let key = self.report_key(own_mrenclave, &report.key_id);
        let mut mac = <Cmac<Aes128> as Mac>::new(key.as_ref().into());
        mac.update(report.body.as_bytes());
        mac.verify_slice(&report.mac).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> EnclaveIdentity {
        EnclaveIdentity {
            mr_enclave: Measurement([1; 32]),
            mr_signer: Measurement([2; 32]),
            isv_prod_id: 7,
            isv_svn: 3,
            ..EnclaveIdentity::default()
        }
    }

    #[test]
    fn report_verifies_only_for_its_target_and_secret() {
        let cpu = SimCpu::new([9; 32]);
        let target = TargetInfo {
            mr_enclave: Measurement([5; 32]),
            ..TargetInfo::default()
        };
        let report = cpu.ereport(&target, &identity(), &ReportData([4; 64]));
        assert_eq!(report.body.isv_prod_id.get(), 7);
        assert_eq!(report.body.report_data.0, [4; 64]);
        assert!(cpu.verify_report(&report, &target.mr_enclave));
        assert!(!cpu.verify_report(&report, &Measurement([6; 32])));
        assert!(!SimCpu::new([8; 32]).verify_report(&report, &target.mr_enclave));
        for i in 0..ReportBody::SIZE {
            let mut bytes = report.to_bytes();
            bytes[i] ^= 1;
            let tampered = Report::parse(&bytes).unwrap();
            assert!(
                !cpu.verify_report(&tampered, &target.mr_enclave),
                "byte {i}"
            );
        }
    }

    #[test]
    fn mac_follows_the_design_formula() {
        // report key = HMAC-SHA256(secret, label ‖ MRENCLAVE ‖ KEYID)[..16], computed here with
        // the RustCrypto HMAC as an independent implementation.
        use ::hmac::Hmac;
        let cpu = SimCpu::new([3; 32]);
        let target = TargetInfo {
            mr_enclave: Measurement([0xaa; 32]),
            ..TargetInfo::default()
        };
        let report = cpu.ereport(&target, &identity(), &ReportData::default());
        let mut h = <Hmac<sha2::Sha256> as ::hmac::Mac>::new_from_slice(&[3; 32]).unwrap();
        ::hmac::Mac::update(&mut h, b"ccm-sim-report-key");
        ::hmac::Mac::update(&mut h, &[0xaa; 32]);
        ::hmac::Mac::update(&mut h, &report.key_id);
        let key: [u8; 16] = ::hmac::Mac::finalize(h).into_bytes()[..16]
            .try_into()
            .unwrap();
        let mut c = <Cmac<Aes128> as Mac>::new(&key.into());
        c.update(&report.to_bytes()[..384]);
        assert_eq!(c.finalize().into_bytes().as_slice(), &report.mac);
    }
}
