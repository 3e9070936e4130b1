//! SIGSTRUCT (1808 bytes, SDM vol. 3D, 38.13): the enclave signature EINIT checks, its RSA-3072
//! (e = 3) signing and verification, and MRSIGNER.
//!
//! The signed bytes are `[0, 128) ‖ [900, 1028)` (header to SWDEFINED and reserved, then
//! MISCSELECT to ISVSVN); the signature is RSASSA-PKCS1-v1_5 with SHA-256, stored little-endian.
//! EINIT checks it with two helper values so the CPU never divides: Q1 = ⌊s²/n⌋ and
//! Q2 = ⌊(s² mod n)·s/n⌋. MRSIGNER = SHA-256 of the 384-byte little-endian modulus.

use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest, Sha256};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::Error;
use crate::error::SigstructError;
use crate::types::{Attributes, Measurement, fixed_layout};

/// Size of the RSA modulus, signature, Q1 and Q2 fields.
pub const RSA_BYTES: usize = 384;
const RSA_BITS: usize = 3072;
const EXPONENT: u32 = 3;

/// The SIGSTRUCT.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Sigstruct {
    /// @0: [`Sigstruct::HEADER`].
    pub header: [u8; 16],
    /// @16: VENDOR (0x8086 for Intel enclaves, 0 otherwise).
    pub vendor: U32,
    /// @20: DATE, BCD yyyymmdd ([`Sigstruct::date`]).
    pub date: U32,
    /// @24: [`Sigstruct::HEADER2`].
    pub header2: [u8; 16],
    /// @40: SWDEFINED.
    pub swdefined: U32,
    /// @44: reserved.
    pub reserved1: [u8; 84],
    /// @128: the signer's RSA modulus, little-endian.
    pub modulus: [u8; RSA_BYTES],
    /// @512: the public exponent (3).
    pub exponent: U32,
    /// @516: the signature, little-endian.
    pub signature: [u8; RSA_BYTES],
    /// @900: MISCSELECT the enclave must have ...
    pub misc_select: U32,
    /// @904: ... under this mask.
    pub misc_mask: U32,
    /// @908: CET_ATTRIBUTES.
    pub cet_attributes: u8,
    /// @909: CET_ATTRIBUTES_MASK.
    pub cet_attributes_mask: u8,
    /// @910: reserved.
    pub reserved2: [u8; 2],
    /// @912: ISVFAMILYID.
    pub isv_family_id: [u8; 16],
    /// @928: ATTRIBUTES the enclave must have ...
    pub attributes: Attributes,
    /// @944: ... under this mask.
    pub attribute_mask: Attributes,
    /// @960: ENCLAVEHASH, the MRENCLAVE being signed.
    pub enclave_hash: Measurement,
    /// @992: reserved.
    pub reserved3: [u8; 16],
    /// @1008: ISVEXTPRODID.
    pub isv_ext_prod_id: [u8; 16],
    /// @1024: ISVPRODID.
    pub isv_prod_id: U16,
    /// @1026: ISVSVN.
    pub isv_svn: U16,
    /// @1028: reserved.
    pub reserved4: [u8; 12],
    /// @1040: Q1 = ⌊s²/n⌋, little-endian.
    pub q1: [u8; RSA_BYTES],
    /// @1424: Q2 = ⌊(s² mod n)·s/n⌋, little-endian.
    pub q2: [u8; RSA_BYTES],
}

fixed_layout!(Sigstruct, 1808, "SIGSTRUCT");

impl Sigstruct {
    /// The required value of HEADER.
    pub const HEADER: [u8; 16] = [
        0x06, 0x00, 0x00, 0x00, 0xe1, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00,
    ];
    /// The required value of HEADER2.
    pub const HEADER2: [u8; 16] = [
        0x01, 0x01, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00,
    ];

    /// An unsigned SIGSTRUCT for `enclave_hash`: headers set, exponent 3, every other field
    /// zero. Set the identity fields, then [`Sigstruct::sign`].
    pub fn unsigned(enclave_hash: Measurement) -> Self {
        Self {
            header: Self::HEADER,
            header2: Self::HEADER2,
            exponent: U32::new(EXPONENT),
            enclave_hash,
            ..Self::default()
        }
    }

    /// Parses exactly 1808 bytes and checks HEADER and HEADER2. The signature is not checked
    /// here; see [`Sigstruct::verify`].
    pub fn parse_checked(bytes: &[u8]) -> Result<Self, Error> {
        let s = Self::parse(bytes)?;
        s.check_headers()?;
        Ok(s)
    }

    /// Checks HEADER and HEADER2.
    pub fn check_headers(&self) -> Result<(), Error> {
        for (field, found, expected) in [
            ("sigstruct.header", &self.header, &Self::HEADER),
            ("sigstruct.header2", &self.header2, &Self::HEADER2),
        ] {
            if found != expected {
                return Err(Error::BadConstant {
                    field,
                    found: hex::encode(found),
                    expected: hex::encode(expected),
                });
            }
        }
        Ok(())
    }

    /// The signed bytes: `[0, 128) ‖ [900, 1028)`.
    pub fn signed_data(&self) -> [u8; 256] {
        let bytes = self.as_bytes();
        let mut out = [0u8; 256];
        let (a, b) = out.split_at_mut(128);
        if let (Some(first), Some(second)) = (bytes.get(..128), bytes.get(900..1028)) {
            a.copy_from_slice(first);
            b.copy_from_slice(second);
        }
        out
    }

    /// MRSIGNER of the signer: SHA-256 of the little-endian modulus.
    pub fn mrsigner(&self) -> Measurement {
        mrsigner_of_modulus(&self.modulus)
    }

    /// Decodes DATE as (year, month, day).
    pub fn date(&self) -> Result<(u16, u8, u8), Error> {
        decode_bcd_date(self.date.get())
    }

    /// Sets DATE from a calendar date (BCD yyyymmdd).
    pub fn set_date(&mut self, year: u16, month: u8, day: u8) -> Result<(), Error> {
        // The decimal digits of yyyymmdd, read as hex, are the BCD encoding.
        let value = u32::from_str_radix(&format!("{year:04}{month:02}{day:02}"), 16)
            .map_err(|_| SigstructError::BadDate(0))?;
        decode_bcd_date(value)?;
        self.date.set(value);
        Ok(())
    }

    /// Signs with `key`: fills MODULUS, EXPONENT, SIGNATURE, Q1 and Q2 (HEADER and HEADER2 are
    /// set too). Change nothing in the signed ranges afterwards.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), Error> {
        self.header = Self::HEADER;
        self.header2 = Self::HEADER2;
        self.exponent.set(EXPONENT);
        self.modulus = key.modulus_le();
        let digest = Sha256::digest(self.signed_data());
        let s_be = key
            .key
            .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
            .map_err(|e| SigstructError::Key(e.to_string()))?;
        let s = BigUint::from_bytes_be(&s_be);
        let (q1, q2) = q1_q2(&s, key.key.n());
        self.signature = to_le_384(&s, "signature")?;
        self.q1 = to_le_384(&q1, "Q1")?;
        self.q2 = to_le_384(&q2, "Q2")?;
        Ok(())
    }

    /// Verifies as EINIT would: HEADER and HEADER2, exponent 3, a 3072-bit modulus, the
    /// PKCS#1 v1.5 SHA-256 signature over the signed bytes, and Q1/Q2 consistent with it.
    pub fn verify(&self) -> Result<(), Error> {
        self.check_headers()?;
        let exponent = self.exponent.get();
        if exponent != EXPONENT {
            return Err(SigstructError::Exponent(exponent).into());
        }
        let n = BigUint::from_bytes_le(&self.modulus);
        if n.bits() != RSA_BITS {
            return Err(SigstructError::ModulusSize(n.bits()).into());
        }
        let s = BigUint::from_bytes_le(&self.signature);
        if s >= n {
            return Err(SigstructError::BadSignature.into());
        }
        let mut n_be = self.modulus;
        n_be.reverse();
        let mut s_be = self.signature;
        s_be.reverse();
        // ring verifies PKCS#1 v1.5 (it hashes the signed bytes itself) and accepts e = 3.
        ring::signature::RsaPublicKeyComponents {
            n: &n_be[..],
            e: &[3u8][..],
        }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.signed_data(),
            &s_be,
        )
        .map_err(|_| SigstructError::BadSignature)?;
        check_q1_q2(
            &s,
            &n,
            &BigUint::from_bytes_le(&self.q1),
            &BigUint::from_bytes_le(&self.q2),
        )
    }
}

/// MRSIGNER for a little-endian RSA modulus.
pub fn mrsigner_of_modulus(modulus_le: &[u8; RSA_BYTES]) -> Measurement {
    Measurement(Sha256::digest(modulus_le).into())
}

fn decode_bcd_date(v: u32) -> Result<(u16, u8, u8), Error> {
    let bad = || Error::from(SigstructError::BadDate(v));
    // BCD: the hex digits are the decimal digits.
    let digits = format!("{v:08x}");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let year = digits
        .get(0..4)
        .and_then(|d| d.parse::<u16>().ok())
        .ok_or_else(bad)?;
    let month = digits
        .get(4..6)
        .and_then(|d| d.parse::<u8>().ok())
        .ok_or_else(bad)?;
    let day = digits
        .get(6..8)
        .and_then(|d| d.parse::<u8>().ok())
        .ok_or_else(bad)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    Ok((year, month, day))
}

/// Checks Q1 and Q2 the way EINIT uses them, with multiplications only:
/// r1 = s² − Q1·n must lie in [0, n), and r2 = s·r1 − Q2·n in [0, n). Those conditions hold for
/// exactly one pair, ⌊s²/n⌋ and ⌊(s² mod n)·s/n⌋.
#[allow(clippy::arithmetic_side_effects)] // BigUint arithmetic is arbitrary precision.
fn check_q1_q2(s: &BigUint, n: &BigUint, q1: &BigUint, q2: &BigUint) -> Result<(), Error> {
    let s2 = s * s;
    let q1n = q1 * n;
    if q1n > s2 || &s2 - &q1n >= *n {
        return Err(SigstructError::BadQ("Q1").into());
    }
    let r1 = s2 - q1n;
    let sr1 = s * r1;
    let q2n = q2 * n;
    if q2n > sr1 || &sr1 - &q2n >= *n {
        return Err(SigstructError::BadQ("Q2").into());
    }
    Ok(())
}

#[allow(clippy::arithmetic_side_effects)] // BigUint arithmetic is arbitrary precision.
fn q1_q2(s: &BigUint, n: &BigUint) -> (BigUint, BigUint) {
    let s2 = s * s;
    let q1 = &s2 / n;
    let r = &s2 % n;
    let q2 = (r * s) / n;
    (q1, q2)
}

fn to_le_384(v: &BigUint, what: &'static str) -> Result<[u8; RSA_BYTES], Error> {
    let bytes = v.to_bytes_le();
    let mut out = [0u8; RSA_BYTES];
    out.get_mut(..bytes.len())
        .ok_or(SigstructError::Key(format!(
            "{what} is longer than 384 bytes"
        )))?
        .copy_from_slice(&bytes);
    Ok(out)
}

/// An enclave signing key: RSA-3072 with public exponent 3.
#[derive(Clone)]
pub struct SigningKey {
    key: RsaPrivateKey,
}

impl core::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SigningKey")
            .field("mrsigner", &self.mrsigner())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new key (RSA-3072, e = 3).
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore) -> Result<Self, Error> {
        let key = RsaPrivateKey::new_with_exp(rng, RSA_BITS, &BigUint::from(EXPONENT))
            .map_err(|e| SigstructError::Key(e.to_string()))?;
        Self::from_rsa(key)
    }

    /// Wraps an RSA key after checking it is 3072 bits with e = 3.
    pub fn from_rsa(key: RsaPrivateKey) -> Result<Self, Error> {
        if key.e() != &BigUint::from(EXPONENT) {
            let e = key.e().to_bytes_le();
            let mut low = [0u8; 4];
            for (slot, byte) in low.iter_mut().zip(&e) {
                *slot = *byte;
            }
            let e = if e.len() > 4 {
                u32::MAX
            } else {
                u32::from_le_bytes(low)
            };
            return Err(SigstructError::Exponent(e).into());
        }
        if key.n().bits() != RSA_BITS {
            return Err(SigstructError::ModulusSize(key.n().bits()).into());
        }
        key.validate()
            .map_err(|e| SigstructError::Key(e.to_string()))?;
        Ok(Self { key })
    }

    /// Loads a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let key = if pem.contains("BEGIN RSA PRIVATE KEY") {
            RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| SigstructError::Key(e.to_string()))?
        } else {
            RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| SigstructError::Key(e.to_string()))?
        };
        Self::from_rsa(key)
    }

    /// The key as PKCS#8 PEM (zeroized on drop).
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, Error> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| SigstructError::Key(e.to_string()).into())
    }

    /// The key as PKCS#1 PEM (zeroized on drop).
    pub fn to_pkcs1_pem(&self) -> Result<zeroize::Zeroizing<String>, Error> {
        self.key
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|e| SigstructError::Key(e.to_string()).into())
    }

    /// The modulus, little-endian, 384 bytes.
    pub fn modulus_le(&self) -> [u8; RSA_BYTES] {
        let bytes = self.key.n().to_bytes_le();
        let mut out = [0u8; RSA_BYTES];
        if let Some(slot) = out.get_mut(..bytes.len()) {
            slot.copy_from_slice(&bytes);
        }
        out
    }

    /// MRSIGNER of enclaves signed with this key.
    pub fn mrsigner(&self) -> Measurement {
        mrsigner_of_modulus(&self.modulus_le())
    }

    /// The underlying RSA key.
    pub fn as_rsa(&self) -> &RsaPrivateKey {
        &self.key
    }
}
