//! The crate's one error type.

use crate::quote::{CertDataType, TeeType};

/// Everything that can go wrong in `ccm-sgx`: malformed bytes, refused constants, invalid
/// measurement sequences, signature failures.
///
/// Parse errors name the field (`quote.signature_data_len`, `sigstruct.header2`, ...) so that an
/// operator can tell what is wrong with a file without a hex editor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended inside a field.
    #[error("truncated {field}: needed {needed} bytes, {available} available")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A fixed-size structure was given the wrong number of bytes.
    #[error("{structure} must be exactly {expected} bytes, got {actual}")]
    Length {
        /// The structure being parsed.
        structure: &'static str,
        /// Its size.
        expected: usize,
        /// The size of the input.
        actual: usize,
    },
    /// Bytes were left after a complete structure and they are not tolerated there.
    #[error("{count} unexpected trailing bytes after {structure}")]
    TrailingBytes {
        /// The structure that was complete.
        structure: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A variable-length field declares more bytes than this crate accepts.
    #[error("{field} declares {declared} bytes, above the limit of {limit}")]
    TooLong {
        /// The length field.
        field: &'static str,
        /// The declared length.
        declared: u64,
        /// The cap.
        limit: usize,
    },
    /// A field that must hold a fixed value holds another one.
    #[error("{field} is {found}, expected {expected}")]
    BadConstant {
        /// The field.
        field: &'static str,
        /// What was found (hex or decimal).
        found: String,
        /// What the format requires.
        expected: String,
    },
    /// The quote version is not 3 or 4.
    #[error("unsupported quote version {0} (supported: 3 and 4)")]
    UnsupportedQuoteVersion(u16),
    /// The quote's TEE type cannot be combined with its version.
    #[error("quote version {version} with TEE type {tee_type} is not supported")]
    UnsupportedTeeType {
        /// The quote version.
        version: u16,
        /// The TEE type found in the header.
        tee_type: TeeType,
    },
    /// Certification data of one type was needed and another was found.
    #[error("{context}: certification data type {found}, expected {expected}")]
    CertificationDataType {
        /// Where the certification data sits.
        context: &'static str,
        /// The type found.
        found: CertDataType,
        /// The type required there.
        expected: CertDataType,
    },
    /// The PCK certificate chain (certification data type 5) is not a PEM certificate list.
    #[error("PCK certificate chain: {0}")]
    PckChain(String),
    /// The Intel SGX PCK certificate extension is malformed.
    #[error("SGX PCK extension: {0}")]
    PckExtension(#[from] PckExtensionError),
    /// An enclave measurement sequence or SGXS stream is invalid.
    #[error("enclave measurement: {0}")]
    Measure(#[from] MeasureError),
    /// SIGSTRUCT signing or verification failed.
    #[error("SIGSTRUCT: {0}")]
    Sigstruct(#[from] SigstructError),
}

/// Why an Intel SGX PCK certificate extension (OID 1.2.840.113741.1.13.1) was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PckExtensionError {
    /// The DER is malformed or has an unexpected type.
    #[error("{field}: {source}")]
    Der {
        /// The element being decoded.
        field: &'static str,
        /// The DER decoder's error.
        source: der::Error,
    },
    /// A required entry is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// An entry appears twice.
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// An entry has a value of the wrong size or range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The entry.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate has no SGX extension.
    #[error("the certificate has no SGX extension")]
    NotPresent,
}

/// Why an MRENCLAVE measurement step or SGXS stream was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeasureError {
    /// ECREATE's SIZE is not a power of two of at least two pages.
    #[error("enclave size {0:#x} is not a power of two of at least 0x2000 bytes")]
    BadSize(u64),
    /// ECREATE's SSAFRAMESIZE is zero.
    #[error("SSA frame size must be at least one page")]
    ZeroSsaFrameSize,
    /// A page offset is not 4 KiB aligned or lies outside the enclave.
    #[error("page offset {offset:#x} is not page aligned or not below the enclave size {size:#x}")]
    BadPageOffset {
        /// The offset given.
        offset: u64,
        /// The enclave size.
        size: u64,
    },
    /// Pages must be added at strictly increasing offsets.
    #[error("page offset {offset:#x} is not above the previous page {previous:#x}")]
    PageOrder {
        /// The offset given.
        offset: u64,
        /// The previous page's offset.
        previous: u64,
    },
    /// An EEXTEND chunk is not 256-byte aligned, not inside the last added page, or repeated.
    #[error("EEXTEND offset {offset:#x} is not a new 256-byte chunk of the last added page")]
    BadChunkOffset {
        /// The offset given.
        offset: u64,
    },
    /// A TCS page was given R, W or X permissions (hardware refuses this).
    #[error("TCS page at {offset:#x} must not have R, W or X set")]
    TcsPermissions {
        /// The page offset.
        offset: u64,
    },
    /// The SGXS stream does not start with ECREATE, or has a second one.
    #[error("SGXS record {index}: {reason}")]
    Sgxs {
        /// Index of the offending 64-byte record header.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// An SGXS record has an unknown tag.
    #[error("SGXS record {index}: unknown tag {tag:#018x}")]
    UnknownTag {
        /// Index of the record.
        index: usize,
        /// The tag found (little-endian u64 of the first 8 bytes).
        tag: u64,
    },
    /// The stream is "unsized" (a template whose enclave size is filled in later); it has no
    /// MRENCLAVE until it is.
    #[error("the SGXS stream is unsized; it has no MRENCLAVE until its size is set")]
    Unsized,
}

/// Why a SIGSTRUCT could not be signed or did not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigstructError {
    /// The public exponent is not 3.
    #[error("public exponent is {0}, SGX requires 3")]
    Exponent(u32),
    /// The modulus is not 3072 bits long.
    #[error("modulus is {0} bits, SGX requires 3072")]
    ModulusSize(usize),
    /// The RSA signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// Q1 or Q2 is inconsistent with the signature and modulus.
    #[error("{0} is not consistent with the signature and modulus")]
    BadQ(&'static str),
    /// The signing key cannot be used (wrong size or exponent, or an RSA library error).
    #[error("signing key: {0}")]
    Key(String),
    /// A date is not a valid BCD yyyymmdd value.
    #[error("date {0:#010x} is not a BCD yyyymmdd date")]
    BadDate(u32),
}
