//! The attestation key id (`sgx_att_key_id_ext_t`, 256 bytes) that AESM clients use to select a
//! quoting enclave and key type.

use core::fmt;

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::types::fixed_layout;

/// `algorithm_id` of ECDSA P-256 attestation keys (`SGX_QL_ALG_ECDSA_P256`).
pub const ALGORITHM_ECDSA_P256: u32 = 2;

/// The MRSIGNER of Intel's quoting enclave (QE3), as named in its attestation key id.
pub const INTEL_QE3_MRSIGNER: [u8; 32] = [
    0x8c, 0x4f, 0x57, 0x75, 0xd7, 0x96, 0x50, 0x3e, 0x96, 0x13, 0x7f, 0x77, 0xc6, 0x8a, 0x82, 0x9a,
    0x00, 0x56, 0xac, 0x8d, 0xed, 0x70, 0x14, 0x0b, 0x08, 0x1b, 0x09, 0x44, 0x90, 0xc5, 0x7b, 0xff,
];

/// An attestation key id: `sgx_ql_att_key_id_t` (158 bytes) extended to 256 bytes.
///
/// Two key ids name the same key when their first 158 bytes are equal; that is what
/// [`PartialEq`] compares (the SPID, key type and reserved tail are ignored).
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct AttKeyId {
    /// @0: id (0).
    pub id: U16,
    /// @2: version (0).
    pub version: U16,
    /// @4: number of meaningful bytes in `mrsigner` (32 for SHA-256).
    pub mrsigner_length: U16,
    /// @6: MRSIGNER of the quoting enclave, zero padded to 48 bytes.
    pub mrsigner: [u8; 48],
    /// @54: ISVPRODID of the quoting enclave (1 for QE3).
    pub prod_id: U32,
    /// @58: ISVEXTPRODID of the quoting enclave.
    pub extended_prod_id: [u8; 16],
    /// @74: CONFIGID of the quoting enclave.
    pub config_id: [u8; 64],
    /// @138: ISVFAMILYID of the quoting enclave.
    pub family_id: [u8; 16],
    /// @154: the attestation algorithm ([`ALGORITHM_ECDSA_P256`]).
    pub algorithm_id: U32,
    /// @158: SPID (EPID only).
    pub spid: [u8; 16],
    /// @174: attestation key type (EPID only).
    pub att_key_type: U16,
    /// @176: reserved.
    pub reserved: [u8; 80],
}

fixed_layout!(AttKeyId, 256, "attestation key id");

impl AttKeyId {
    /// Number of leading bytes that identify the key.
    pub const IDENTIFYING_LEN: usize = 158;

    /// The ECDSA P-256 key of Intel's quoting enclave, as `sgx_select_att_key_id` offers it:
    /// MRSIGNER [`INTEL_QE3_MRSIGNER`], product id 1, algorithm 2.
    pub fn intel_ecdsa_p256() -> Self {
        Self::ecdsa_p256(INTEL_QE3_MRSIGNER, 1)
    }

    /// An ECDSA P-256 key id for a quoting enclave with this MRSIGNER and product id.
    pub fn ecdsa_p256(mrsigner: [u8; 32], prod_id: u32) -> Self {
        let mut padded = [0u8; 48];
        if let Some(head) = padded.get_mut(..32) {
            head.copy_from_slice(&mrsigner);
        }
        Self {
            mrsigner_length: U16::new(32),
            mrsigner: padded,
            prod_id: U32::new(prod_id),
            algorithm_id: U32::new(ALGORITHM_ECDSA_P256),
            ..Self::default()
        }
    }

    /// The identifying bytes (`0..158`).
    pub fn identifying_bytes(&self) -> &[u8] {
        let bytes = self.as_bytes();
        bytes.get(..Self::IDENTIFYING_LEN).unwrap_or(bytes)
    }
}

impl PartialEq for AttKeyId {
    fn eq(&self, other: &Self) -> bool {
        self.identifying_bytes() == other.identifying_bytes()
    }
}

impl Eq for AttKeyId {}

impl fmt::Debug for AttKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = usize::from(self.mrsigner_length.get()).min(48);
        f.debug_struct("AttKeyId")
            .field("id", &self.id.get())
            .field("version", &self.version.get())
            .field(
                "mrsigner",
                &hex::encode(self.mrsigner.get(..len).unwrap_or_default()),
            )
            .field("prod_id", &self.prod_id.get())
            .field("algorithm_id", &self.algorithm_id.get())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layout_and_intel_key_id() {
        assert_eq!(offset_of!(AttKeyId, mrsigner), 6);
        assert_eq!(offset_of!(AttKeyId, prod_id), 54);
        assert_eq!(offset_of!(AttKeyId, config_id), 74);
        assert_eq!(offset_of!(AttKeyId, family_id), 138);
        assert_eq!(offset_of!(AttKeyId, algorithm_id), 154);
        let k = AttKeyId::intel_ecdsa_p256().to_bytes();
        // As in Intel's SDK samples (after the list header): id 0, version 0, length 32, ...
        assert_eq!(&k[..8], &[0, 0, 0, 0, 0x20, 0, 0x8c, 0x4f]);
        assert_eq!(&k[54..58], &[1, 0, 0, 0]);
        assert_eq!(&k[154..158], &[2, 0, 0, 0]);
        assert!(k[158..].iter().all(|b| *b == 0));
        assert_eq!(AttKeyId::parse(&k).unwrap(), AttKeyId::intel_ecdsa_p256());
    }

    #[test]
    fn equality_ignores_the_tail() {
        let a = AttKeyId::intel_ecdsa_p256();
        let mut b = a;
        b.spid = [1; 16];
        b.reserved[79] = 1;
        assert_eq!(a, b);
        b.algorithm_id.set(3);
        assert_ne!(a, b);
    }
}
