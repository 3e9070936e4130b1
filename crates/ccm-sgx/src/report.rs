//! REPORT, REPORT body and TARGETINFO (SDM vol. 3D, 38.15 and 38.16).

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::types::{Attributes, CpuSvn, Measurement, ReportData, fixed_layout};

/// The 384-byte REPORT body: the part of a REPORT the MAC covers and the ISV enclave part of a
/// DCAP quote. Offsets are those of the SDM.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ReportBody {
    /// @0: CPUSVN of the platform.
    pub cpu_svn: CpuSvn,
    /// @16: MISCSELECT, the extended SSA features.
    pub misc_select: U32,
    /// @20: reserved (byte 20 holds CET_ATTRIBUTES on CET-capable CPUs).
    pub reserved1: [u8; 12],
    /// @32: ISVEXTPRODID.
    pub isv_ext_prod_id: [u8; 16],
    /// @48: ATTRIBUTES.
    pub attributes: Attributes,
    /// @64: MRENCLAVE.
    pub mr_enclave: Measurement,
    /// @96: reserved.
    pub reserved2: [u8; 32],
    /// @128: MRSIGNER.
    pub mr_signer: Measurement,
    /// @160: reserved.
    pub reserved3: [u8; 32],
    /// @192: CONFIGID.
    pub config_id: [u8; 64],
    /// @256: ISVPRODID.
    pub isv_prod_id: U16,
    /// @258: ISVSVN.
    pub isv_svn: U16,
    /// @260: CONFIGSVN.
    pub config_svn: U16,
    /// @262: reserved.
    pub reserved4: [u8; 42],
    /// @304: ISVFAMILYID.
    pub isv_family_id: [u8; 16],
    /// @320: REPORTDATA.
    pub report_data: ReportData,
}

fixed_layout!(ReportBody, 384, "REPORT body");

/// The 432-byte REPORT produced by EREPORT: body ‖ KEYID ‖ MAC. The MAC covers bytes `0..384`
/// ([`Report::mac_input`]).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Report {
    /// @0: the body.
    pub body: ReportBody,
    /// @384: KEYID, the value the report key was derived with.
    pub key_id: [u8; 32],
    /// @416: AES-128-CMAC over bytes `0..384` with the target's report key.
    pub mac: [u8; 16],
}

fixed_layout!(Report, 432, "REPORT");

impl Report {
    /// The bytes the MAC covers: the encoded body.
    pub fn mac_input(&self) -> &[u8] {
        self.body.as_bytes()
    }
}

/// The 512-byte TARGETINFO naming the enclave a REPORT is for.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct TargetInfo {
    /// @0: MRENCLAVE of the target.
    pub mr_enclave: Measurement,
    /// @32: ATTRIBUTES of the target.
    pub attributes: Attributes,
    /// @48: reserved (byte 48 holds CET_ATTRIBUTES on CET-capable CPUs).
    pub reserved1: [u8; 2],
    /// @50: CONFIGSVN of the target.
    pub config_svn: U16,
    /// @52: MISCSELECT of the target.
    pub misc_select: U32,
    /// @56: reserved.
    pub reserved2: [u8; 8],
    /// @64: CONFIGID of the target.
    pub config_id: [u8; 64],
    /// @128: reserved.
    pub reserved3: [u8; 384],
}

fixed_layout!(TargetInfo, 512, "TARGETINFO");

impl TargetInfo {
    /// The TARGETINFO that makes EREPORT produce reports for the enclave that produced `body`
    /// (what `sgx_init_quote` returns for the quoting enclave).
    pub fn for_enclave(body: &ReportBody) -> Self {
        Self {
            mr_enclave: body.mr_enclave,
            attributes: body.attributes,
            config_svn: body.config_svn,
            misc_select: body.misc_select,
            config_id: body.config_id,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::types::AttributeFlags;
    use core::mem::offset_of;

    #[test]
    fn offsets_match_the_sdm() {
        assert_eq!(offset_of!(ReportBody, misc_select), 16);
        assert_eq!(offset_of!(ReportBody, isv_ext_prod_id), 32);
        assert_eq!(offset_of!(ReportBody, attributes), 48);
        assert_eq!(offset_of!(ReportBody, mr_enclave), 64);
        assert_eq!(offset_of!(ReportBody, mr_signer), 128);
        assert_eq!(offset_of!(ReportBody, config_id), 192);
        assert_eq!(offset_of!(ReportBody, isv_prod_id), 256);
        assert_eq!(offset_of!(ReportBody, isv_svn), 258);
        assert_eq!(offset_of!(ReportBody, config_svn), 260);
        assert_eq!(offset_of!(ReportBody, isv_family_id), 304);
        assert_eq!(offset_of!(ReportBody, report_data), 320);
        assert_eq!(offset_of!(Report, key_id), 384);
        assert_eq!(offset_of!(Report, mac), 416);
        assert_eq!(offset_of!(TargetInfo, attributes), 32);
        assert_eq!(offset_of!(TargetInfo, config_svn), 50);
        assert_eq!(offset_of!(TargetInfo, misc_select), 52);
        assert_eq!(offset_of!(TargetInfo, config_id), 64);
    }

    #[test]
    fn round_trip_and_exact_length() {
        let mut r = Report::default();
        r.body.isv_prod_id.set(0x1234);
        r.body.attributes = Attributes::new(AttributeFlags::INIT | AttributeFlags::DEBUG, 0xe7);
        r.body.report_data.0[63] = 9;
        r.mac = [0xaa; 16];
        let bytes = r.to_bytes();
        assert_eq!(&bytes[256..258], &[0x34, 0x12]);
        assert_eq!(bytes[48], 3);
        assert_eq!(Report::parse(&bytes).unwrap(), r);
        assert_eq!(r.mac_input(), &bytes[..384]);
        for len in 0..bytes.len() {
            assert!(matches!(
                Report::parse(&bytes[..len]),
                Err(Error::Length { structure: "REPORT", expected: 432, actual }) if actual == len
            ));
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(matches!(
            Report::parse(&long),
            Err(Error::Length { actual: 433, .. })
        ));

        let ti = TargetInfo::for_enclave(&r.body);
        assert_eq!(TargetInfo::parse(&ti.to_bytes()).unwrap(), ti);
        assert!(TargetInfo::parse(&ti.to_bytes()[..511]).is_err());
        assert_eq!(ReportBody::parse(&bytes[..384]).unwrap(), r.body);
    }
}
