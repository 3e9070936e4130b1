//! The crate's error type.

/// Everything that can go wrong building, parsing, measuring, signing or verifying an enclave.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The manifest bytes are not a valid canonical manifest.
    #[error("enclave manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// A setting given to build a manifest is invalid.
    #[error("invalid enclave setting {field}: {reason}")]
    InvalidSetting {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The image's measured content, thread structures and files do not fit the memory size.
    #[error(
        "image does not fit the enclave memory size: it needs {needed} bytes ({manifest_bytes} of manifest, \
         {thread_bytes} for {threads} threads, {file_bytes} of trusted files) but the memory size is {mem_size} bytes"
    )]
    DoesNotFit {
        /// Total bytes needed.
        needed: u64,
        /// Bytes of measured manifest pages.
        manifest_bytes: u64,
        /// Bytes of TCS, SSA and stack pages.
        thread_bytes: u64,
        /// Thread count.
        threads: u32,
        /// Page-rounded bytes of the trusted files (loaded into enclave memory at run time).
        file_bytes: u64,
        /// The configured memory size.
        mem_size: u64,
    },
    /// An SGX structure could not be built, parsed or verified.
    #[error(transparent)]
    Sgx(#[from] ccm_sgx::Error),
    /// The SIGSTRUCT signs a different enclave than the manifest describes.
    #[error("SIGSTRUCT ENCLAVEHASH {sigstruct} does not match the manifest's MRENCLAVE {computed}")]
    EnclaveHashMismatch {
        /// MRENCLAVE recomputed from the manifest.
        computed: String,
        /// ENCLAVEHASH in the SIGSTRUCT.
        sigstruct: String,
    },
    /// The SIGSTRUCT's DEBUG attribute disagrees with the manifest's debug flag.
    #[error("SIGSTRUCT DEBUG attribute is {sigstruct} but the manifest says debug = {manifest}")]
    DebugMismatch {
        /// The manifest's flag.
        manifest: bool,
        /// The SIGSTRUCT's attribute.
        sigstruct: bool,
    },
    /// A trusted file on disk differs from the manifest.
    #[error("trusted file {path}: {problem}")]
    TrustedFile {
        /// The file's path in the image.
        path: String,
        /// How it differs.
        problem: FileProblem,
    },
}

/// Why manifest bytes were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed: {0}")]
    Json(#[from] serde_json::Error),
    /// Valid, but not in canonical form (key order, whitespace, escapes, defaults written out).
    #[error("not in canonical form (sorted keys, no whitespace, no null or default fields)")]
    NotCanonical,
    /// A manifest version this build does not know.
    #[error("unsupported manifest version {0} (this build reads version {expected})", expected = crate::manifest::MANIFEST_VERSION)]
    Version(u64),
    /// Larger than [`crate::manifest::MAX_MANIFEST_SIZE`].
    #[error("{0} bytes is larger than the {max}-byte limit", max = crate::manifest::MAX_MANIFEST_SIZE)]
    TooLarge(usize),
    /// A field has an invalid value.
    #[error("{field}: {reason}")]
    Field {
        /// The field (`trusted_files[3].path`).
        field: String,
        /// Why.
        reason: String,
    },
}

/// How a trusted file differs from its manifest entry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileProblem {
    /// The file does not exist.
    #[error("missing")]
    Missing,
    /// It exists but is not a regular file (or, for a symlink entry, not a symlink).
    #[error("is a {found}, expected a {expected}")]
    WrongType {
        /// What was expected.
        expected: &'static str,
        /// What is there.
        found: &'static str,
    },
    /// Different size.
    #[error("size is {actual} bytes, expected {expected}")]
    Size {
        /// From the manifest.
        expected: u64,
        /// On disk.
        actual: u64,
    },
    /// Different permission bits.
    #[error("mode is {actual:04o}, expected {expected:04o}")]
    Mode {
        /// From the manifest.
        expected: u32,
        /// On disk.
        actual: u32,
    },
    /// Different content.
    #[error("content SHA-256 is {actual}, expected {expected}")]
    Content {
        /// From the manifest.
        expected: String,
        /// On disk.
        actual: String,
    },
    /// Different symlink target.
    #[error("symlink target is {actual:?}, expected {expected:?}")]
    Target {
        /// From the manifest.
        expected: String,
        /// On disk.
        actual: String,
    },
    /// Reading it failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
