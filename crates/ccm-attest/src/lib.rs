//! DCAP quote verification with collateral and policy, and the simulated SGX platform.
//!
//! # Verification
//!
//! [`Verifier`] checks an SGX DCAP quote (v3 or v4) against [`Collateral`] (Intel's
//! `QuoteCollateralV3`: CRLs, TCB info, QE identity and their signing chains) in the order of
//! Intel's Quote Verification Library, and returns a [`VerifiedQuote`] with the converged
//! [`TcbStatus`], advisory ids, the QE and platform statuses and the enclave's REPORT body. Trust
//! roots ([`TrustRoots`]) and the time (`now`, Unix seconds) are always inputs: nothing reads the
//! clock, and only Intel's SGX Root CA is trusted unless the caller adds a root explicitly, saying
//! whether it is [simulated](RootKind::Simulated). Each failure has its own [`VerifyError`]
//! variant. A [`Policy`] then decides whether a verified quote is acceptable.
//!
//! Verification is the hot path of the manager: verified PCK chains, collateral and QE reports are
//! cached (bounded, thread-safe), so a repeat quote from a known platform costs about one ECDSA
//! verification. See [`verify`] for the steps and the cache design.
//!
//! # The simulated platform
//!
//! Real SGX hardware is not available on development and CI machines. The [`sim`] module builds a
//! software platform whose quotes are byte-for-byte DCAP v3 quotes: a CA hierarchy shaped like
//! Intel's (root, PCK CA, PCK certificates with the real SGX extension, TCB signing certificate,
//! CRLs), TCB info and QE identity signed as Intel signs them, a quoting enclave
//! ([`sim::SimQuotingEnclave`]) and a CPU that produces MAC'ed REPORTs ([`sim::SimCpu`]). The
//! verification code path is the same for simulated and hardware quotes; only the trust anchor
//! differs, and results resting on a simulated root are marked `simulated`.
//!
//! **Simulation proves nothing.** Anyone holding a simulated platform's files can mint quotes for
//! any enclave identity. Never trust a simulated root in production.
//!
//! The simulator is behind the cargo feature `sim` (on by default for this crate's own tests;
//! the workspace depends on the crate without default features, so only the crates that ask for
//! it carry it: the `ccm` binary, the quote helper's server, test fixtures). Verifying quotes that
//! rest on a simulated root needs no simulator: [`RootKind::Simulated`] is always available.
#![deny(missing_docs)]
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

pub mod collateral;
mod error;
#[cfg(feature = "pcs-client")]
pub mod pcs;
pub mod policy;
mod roots;
#[cfg(feature = "sim")]
pub mod sim;
mod time;
pub mod verify;
mod x509;

pub use collateral::{CaType, Collateral, CollateralParts, TcbStatus, Tee};
pub use error::{
    CertError, CertRole, CollateralError, CollateralItem, CrlKind, Error, PcsError, PolicyError,
    PolicyViolation, QeError, QeIdentityField, VerifyError,
};
pub use policy::Policy;
pub use roots::{INTEL_SGX_ROOT_CA_DER, INTEL_SGX_ROOT_CA_SHA256, RootKind, TrustRoot, TrustRoots};
pub use verify::{
    CacheLimits, CacheStats, CollateralPart, CollateralSummary, Recency, VerifiedQuote, Verifier,
    newest_parts,
};
