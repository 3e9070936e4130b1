//! The enclave manifest, its canonical encoding, and the synthesized enclave layout whose
//! measurement is MRENCLAVE.
//!
//! # Design
//!
//! A converted image carries three things under `/opt/ccm`: the launcher, the **manifest**
//! (`enclave.json`) and its **SIGSTRUCT** (`enclave.sig`). The manifest says everything the
//! enclave's identity covers: the program, its arguments and environment, the enclave sizing, the
//! certificates to obtain, and the SHA-256 of every trusted file of the image.
//!
//! * [`Manifest`] has exactly one byte encoding, canonical JSON (sorted keys, no whitespace,
//!   integers only, sorted lists). The parser refuses any other encoding, so the bytes measured
//!   are a function of the content and nothing else.
//! * [`Layout`] places the manifest bytes in measured pages, then one TCS + SSA + stack per
//!   thread, then unmeasured heap pages up to the memory size, and measures it with
//!   `ccm_sgx::MrEnclaveBuilder`: MRENCLAVE depends on the manifest bytes and nothing else.
//! * [`sign_enclave`] produces the SIGSTRUCT; [`verify_enclave`] is what the launcher runs first
//!   (recompute MRENCLAVE, check the RSA-3072 signature and ENCLAVEHASH); then
//!   [`verify_trusted_files`] checks the root file system against the manifest, naming the first
//!   file that differs.
//!
//! The crate is deliberately small (serde, ring, ccm-sgx; no networking, no async): the static
//! in-image launcher links it.

#![deny(missing_docs)]

mod canonical;
mod error;
mod layout;
mod manifest;
mod sign;
mod verify;

pub use error::{Error, FileProblem, ManifestError};
pub use layout::{
    Layout, MANIFEST_HEADER_LEN, MANIFEST_MAGIC, PAGE_SIZE, SSA_FRAME_PAGES, SSA_FRAMES,
    mrenclave_of,
};
pub use manifest::{
    CertificateRequest, DEFAULT_EXCLUDED_PATHS, DEFAULT_PASSTHROUGH_ENV, DEFAULT_STACK_SIZE,
    EnclaveParams, Issuer, KeyType, LAUNCHER_PATH, MANIFEST_PATH, MANIFEST_VERSION,
    MAX_MANIFEST_SIZE, MAX_THREADS, Manifest, Runtime, SIGSTRUCT_PATH, Sha256Hex, Symlink,
    TrustedFile, check_abs_path, is_under_any, round_up_page,
};
pub use sign::{
    SignOptions, SignedEnclave, VerifiedEnclave, XFRM, attributes_for, sign_enclave, verify_enclave,
};
pub use verify::{VerifyOptions, VerifyStats, verify_trusted_files};

/// Re-exported so callers need not depend on `ccm-sgx` for the key and measurement types.
pub use ccm_sgx::{Measurement, SigningKey, Sigstruct};
