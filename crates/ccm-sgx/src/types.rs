//! Small value types shared by several structures: measurements, report data, attributes.

use core::fmt;
use core::str::FromStr;

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::Error;

/// Implements `SIZE`, `parse`, `as_bytes`, `to_bytes` and `Default` for a fixed-layout type and
/// asserts its size at compile time.
macro_rules! fixed_layout {
    ($ty:ident, $size:expr, $name:literal) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $size);

        impl $ty {
            /// Size of the encoding in bytes.
            pub const SIZE: usize = $size;

            /// Parses exactly [`Self::SIZE`] bytes; any other length is refused.
            pub fn parse(bytes: &[u8]) -> Result<Self, crate::Error> {
                crate::reader::parse_exact(bytes, $name)
            }

            /// The wire encoding, borrowed.
            pub fn as_bytes(&self) -> &[u8] {
                zerocopy::IntoBytes::as_bytes(self)
            }

            /// The wire encoding, copied into an array.
            pub fn to_bytes(&self) -> [u8; $size] {
                let mut out = [0u8; $size];
                out.copy_from_slice(zerocopy::IntoBytes::as_bytes(self));
                out
            }
        }

        impl Default for $ty {
            /// All bytes zero.
            fn default() -> Self {
                zerocopy::FromZeros::new_zeroed()
            }
        }
    };
}
pub(crate) use fixed_layout;

/// Writes bytes as lower-case hex.
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Decodes exactly `N` bytes of hex (upper or lower case).
pub(crate) fn parse_hex<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|e| Error::BadConstant {
        field: what,
        found: format!("{s:?} ({e})"),
        expected: format!("{} hex digits", N.saturating_mul(2)),
    })?;
    Ok(out)
}

macro_rules! byte_newtype {
    ($(#[$meta:meta])* $name:ident, $n:expr, $what:literal) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
        )]
        #[repr(transparent)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// The raw bytes.
            pub const fn as_array(&self) -> &[u8; $n] {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self([0; $n])
            }
        }

        impl From<[u8; $n]> for $name {
            fn from(bytes: [u8; $n]) -> Self {
                Self(bytes)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            /// Lower-case hex.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "("))?;
                write_hex(f, &self.0)?;
                write!(f, ")")
            }
        }

        impl FromStr for $name {
            type Err = Error;
            /// Parses exactly the right number of hex digits.
            fn from_str(s: &str) -> Result<Self, Error> {
                parse_hex::<$n>(s, $what).map(Self)
            }
        }
    };
}

byte_newtype!(
    /// A 32-byte enclave measurement: MRENCLAVE, MRSIGNER, or a SHA-256 value in their place.
    Measurement,
    32,
    "measurement"
);
byte_newtype!(
    /// The 64 bytes of REPORTDATA an enclave binds into its REPORT (and so into its quote).
    ReportData,
    64,
    "report data"
);
byte_newtype!(
    /// The 16-byte CPU security version (CPUSVN).
    CpuSvn,
    16,
    "CPUSVN"
);

bitflags::bitflags! {
    /// The flags half of SGX ATTRIBUTES (SDM vol. 3D, 38.7.1). Unknown bits are kept.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct AttributeFlags: u64 {
        /// The enclave has been initialised by EINIT.
        const INIT = 0x01;
        /// Debug enclave: its memory can be read and written by a debugger.
        const DEBUG = 0x02;
        /// 64-bit enclave.
        const MODE64BIT = 0x04;
        /// The enclave may obtain the provisioning key.
        const PROVISIONKEY = 0x10;
        /// The enclave may obtain the EINIT token key.
        const EINITTOKENKEY = 0x20;
        /// Key separation and sharing (KSS) is enabled.
        const KSS = 0x80;
        // Keep bits this crate does not name.
        const _ = !0;
    }
}

/// SGX ATTRIBUTES (16 bytes): flags u64 @0, XFRM u64 @8, little-endian.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct Attributes {
    /// @0: the flags ([`AttributeFlags`]).
    pub flags: U64,
    /// @8: XFRM, the extended features the enclave may use.
    pub xfrm: U64,
}

const _: () = assert!(size_of::<Attributes>() == 16);

impl Attributes {
    /// Attributes with these flags and XFRM.
    pub fn new(flags: AttributeFlags, xfrm: u64) -> Self {
        Self {
            flags: U64::new(flags.bits()),
            xfrm: U64::new(xfrm),
        }
    }

    /// The flags, unknown bits kept.
    pub fn flags(&self) -> AttributeFlags {
        AttributeFlags::from_bits_retain(self.flags.get())
    }

    /// XFRM.
    pub fn xfrm(&self) -> u64 {
        self.xfrm.get()
    }

    /// Whether the DEBUG flag is set.
    pub fn is_debug(&self) -> bool {
        self.flags().contains(AttributeFlags::DEBUG)
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attributes")
            .field("flags", &self.flags())
            .field("xfrm", &format_args!("{:#x}", self.xfrm()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_hex_round_trip() {
        let m: Measurement = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
            .parse()
            .unwrap();
        assert_eq!(m.0[31], 0xff);
        assert_eq!(
            m.to_string(),
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
        );
        assert!(matches!(
            "0011".parse::<Measurement>(),
            Err(Error::BadConstant {
                field: "measurement",
                ..
            })
        ));
        assert!("zz".repeat(32).parse::<Measurement>().is_err());
    }

    #[test]
    fn attributes_keep_unknown_bits() {
        let a = Attributes::new(AttributeFlags::from_bits_retain(0x8000_0000_0000_0007), 3);
        assert!(
            a.flags()
                .contains(AttributeFlags::INIT | AttributeFlags::MODE64BIT)
        );
        assert_eq!(a.flags().bits(), 0x8000_0000_0000_0007);
        assert!(a.is_debug());
        assert_eq!(
            zerocopy::IntoBytes::as_bytes(&a),
            &[7, 0, 0, 0, 0, 0, 0, 0x80, 3, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
