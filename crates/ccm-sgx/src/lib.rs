//! SGX and DCAP byte formats, modelled once, with no I/O.
//!
//! This crate is the foundation the rest of ccm stands on: the simulated platform and the quote
//! verifier (`ccm-attest`), the AESM protocol (`ccm-aesm`), the enclave layout (`ccm-enclave`)
//! and the launcher all speak SGX through these types.
//!
//! # Design
//!
//! * **Fixed layouts are plain bytes.** [`ReportBody`], [`Report`], [`TargetInfo`],
//!   [`AttKeyId`], [`QeReportInfo`], [`QuoteHeader`], [`TdReport10`] and [`Sigstruct`] are
//!   `#[repr(C)]` structs of byte arrays and little-endian integers (`zerocopy`), so `repr(C)`
//!   cannot add padding; their sizes are asserted at compile time and every field's doc comment
//!   gives its offset (`@N`). Parsing checks the exact length and copies; encoding is
//!   `as_bytes()`. Reserved bytes are kept, so parse → encode is the identity.
//! * **Variable layouts go through a never-panicking reader.** Quotes and SGXS streams are read
//!   with a bounds-checked cursor (`split_at_checked`) whose errors name the field
//!   (`truncated quote.signature_data_len: needed 4 bytes, 2 available`). Every variable length
//!   is capped ([`MAX_VARIABLE_LEN`]); what each whole-buffer parser does with trailing bytes is
//!   documented on it (quotes tolerate zero padding after `signature_data_len`, nothing else
//!   tolerates trailing bytes).
//! * **Unknown wire values are kept.** Attestation key types, TEE types, certification data
//!   types and SGX types are newtypes with named constants; attribute flags keep unknown bits.
//!   Only values that make a structure unparseable (an unknown quote version, a TEE type that
//!   does not fit the version) are refused.
//! * **One error type**, [`Error`], with typed sub-enums for the PCK extension, measurement and
//!   SIGSTRUCT families.
//! * The crate denies `clippy::indexing_slicing` and `clippy::arithmetic_side_effects`: no
//!   input can make it panic. Fuzz targets for every parser live in `fuzz/`.
//!
//! # Map
//!
//! | format | types |
//! |---|---|
//! | REPORT, TARGETINFO | [`Report`], [`ReportBody`], [`TargetInfo`], [`Attributes`] |
//! | AESM key ids, QE report info | [`AttKeyId`], [`QeReportInfo`] |
//! | DCAP quotes v3/v4 | [`Quote`], [`QuoteHeader`], [`QuoteBody`], [`QuoteSignatureData`], [`CertificationData`] |
//! | PCK certificate extension | [`SgxExtension`], [`PckTcb`], [`SgxType`] |
//! | MRENCLAVE and SGXS | [`MrEnclaveBuilder`], [`measure_sgxs`], [`SecInfo`] |
//! | SIGSTRUCT and MRSIGNER | [`Sigstruct`], [`SigningKey`], [`mrsigner_of_modulus`] |
//!
//! Cross-checks with independent implementations (`sgx-isa`, `sgxs`, `dcap-qvl`) and real Intel
//! quotes are in this crate's `tests/`.

#![deny(missing_docs)]
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

mod attkey;
mod error;
mod measure;
mod pck;
mod qe_report_info;
mod quote;
mod reader;
mod report;
mod sigstruct;
mod types;

pub use attkey::{ALGORITHM_ECDSA_P256, AttKeyId, INTEL_QE3_MRSIGNER};
pub use error::{Error, MeasureError, PckExtensionError, SigstructError};
pub use measure::{
    CHUNK_SIZE, Measured, MrEnclaveBuilder, PAGE_SIZE, PageType, SecInfo, SecInfoFlags,
    measure_sgxs,
};
pub use pck::{PckTcb, PlatformConfiguration, SGX_EXTENSION_OID, SgxExtension, SgxType};
pub use qe_report_info::QeReportInfo;
pub use quote::{
    AttestationKeyType, CertDataType, CertificationData, HEADER_LEN, INTEL_QE_VENDOR_ID,
    MAX_VARIABLE_LEN, Quote, QuoteBody, QuoteHeader, QuoteSignatureData, TdReport10, TeeType,
    parse_pem_chain,
};
pub use report::{Report, ReportBody, TargetInfo};
pub use sigstruct::{RSA_BYTES, SigningKey, Sigstruct, mrsigner_of_modulus};
pub use types::{AttributeFlags, Attributes, CpuSvn, Measurement, ReportData};

/// Re-exported so callers can name the little-endian field types without depending on zerocopy.
pub use zerocopy::little_endian::{U16, U32, U64};
