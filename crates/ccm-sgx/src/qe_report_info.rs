//! `sgx_ql_qe_report_info_t`: how an application asks for, and receives, a QE report that proves
//! a quote came from the quoting enclave.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::report::{Report, TargetInfo};
use crate::types::fixed_layout;

/// nonce(16) ‖ app TARGETINFO(512) ‖ QE REPORT(432) = 960 bytes. The application fills the nonce
/// and its TARGETINFO; the quoting enclave returns a REPORT targeted at the application whose
/// REPORTDATA\[0..32\] is SHA-256(nonce ‖ quote).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct QeReportInfo {
    /// @0: the application's nonce.
    pub nonce: [u8; 16],
    /// @16: TARGETINFO of the application enclave.
    pub app_target_info: TargetInfo,
    /// @528: the QE's REPORT for the application (output).
    pub qe_report: Report,
}

fixed_layout!(QeReportInfo, 960, "qe_report_info");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut info = QeReportInfo {
            nonce: [7; 16],
            ..QeReportInfo::default()
        };
        info.app_target_info.mr_enclave.0 = [1; 32];
        info.qe_report.mac = [2; 16];
        let b = info.to_bytes();
        assert_eq!(&b[..16], &[7; 16]);
        assert_eq!(&b[16..48], &[1; 32]);
        assert_eq!(&b[944..960], &[2; 16]);
        assert_eq!(QeReportInfo::parse(&b).unwrap(), info);
        for len in 0..b.len() {
            assert!(QeReportInfo::parse(&b[..len]).is_err());
        }
    }
}
