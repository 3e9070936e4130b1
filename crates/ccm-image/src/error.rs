//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while pulling, applying, converting, pushing or running an image.
///
/// Every variant names the registry, image, layer, file or value at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image reference (`registry/repo:tag`, `oci:DIR`, ...) could not be parsed.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A content digest is malformed or uses an unsupported algorithm.
    #[error("invalid digest {0:?} (expected sha256:<64 hex digits>)")]
    InvalidDigest(String),
    /// The registry refused the credentials (or asked for credentials that were not given).
    #[error("authentication failed for registry {registry}{}", if *.had_credentials { "" } else { " (no credentials given)" })]
    AuthenticationFailed {
        /// The registry host.
        registry: String,
        /// Whether credentials were sent.
        had_credentials: bool,
    },
    /// The registry authenticated us but refused access to the repository.
    #[error("access to {repository} denied by registry {registry}")]
    AccessDenied {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
    },
    /// The image (repository or tag) does not exist.
    #[error("image {reference} not found")]
    ImageNotFound {
        /// The image reference as given.
        reference: String,
    },
    /// A blob named by a manifest does not exist.
    #[error("blob {digest} not found in {location}")]
    BlobNotFound {
        /// Where it was looked up.
        location: String,
        /// The digest.
        digest: String,
    },
    /// The registry answered with an unexpected HTTP status.
    #[error("registry {registry} answered {status} to {operation}: {message}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What was being done (e.g. "GET manifest ubuntu:22.04").
        operation: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error codes and messages, or the start of its body.
        message: String,
    },
    /// The connection to a registry failed (DNS, TCP, TLS, timeouts).
    #[error("cannot reach registry {registry}: {source}")]
    Transport {
        /// The registry host.
        registry: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The TLS client configuration could not be built (CA file unreadable or invalid, no roots).
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// Content did not match the digest that names it.
    #[error("{what}: digest mismatch (expected {expected}, got {actual})")]
    DigestMismatch {
        /// Which blob or manifest.
        what: String,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// Content did not have the size its descriptor announces.
    #[error("{what}: size mismatch (expected {expected} bytes, got {actual})")]
    SizeMismatch {
        /// Which blob.
        what: String,
        /// Size in the descriptor.
        expected: u64,
        /// Size received.
        actual: u64,
    },
    /// A manifest, index or blob exceeds the size accepted for its kind.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A media type this crate cannot handle.
    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType {
        /// What had the media type.
        what: String,
        /// The media type.
        media_type: String,
    },
    /// An image index has no manifest for the requested platform.
    #[error("image {reference} has no manifest for platform {platform} (available: {available})")]
    NoMatchingPlatform {
        /// The image.
        reference: String,
        /// The requested platform (`os/arch`).
        platform: String,
        /// The platforms the index lists, comma-separated.
        available: String,
    },
    /// A JSON document (manifest, index, config) is malformed.
    #[error("malformed {what}: {source}")]
    Json {
        /// What document.
        what: String,
        /// The parser error.
        #[source]
        source: serde_json::Error,
    },
    /// A document is well-formed JSON but its content is invalid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What document or field.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "create", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A layer could not be applied.
    #[error("layer {index} ({digest}): {source}")]
    Layer {
        /// The layer's position in the manifest (0 = bottom).
        index: usize,
        /// The layer's digest.
        digest: String,
        /// What went wrong.
        #[source]
        source: LayerError,
    },
    /// Building or signing the enclave failed.
    #[error(transparent)]
    Enclave(#[from] ccm_enclave::Error),
    /// A conversion or run option is invalid.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Why.
        reason: String,
    },
    /// `runc` could not be started or failed before running the container.
    #[error("runc: {0}")]
    Runc(String),
    /// A background task died.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// Why a layer tar stream could not be applied to the file tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The tar stream is malformed or the decompressor failed.
    #[error("reading the layer archive: {0}")]
    Read(#[source] std::io::Error),
    /// An entry name contains `..`.
    #[error("entry {path:?} contains a '..' component (path traversal refused)")]
    DotDot {
        /// The entry name.
        path: String,
    },
    /// Resolving an entry's parent through a symlink would leave the image root.
    #[error("entry {path:?} escapes the image root through symlink {symlink:?} -> {target:?}")]
    EscapesRoot {
        /// The entry name.
        path: String,
        /// The symlink that leads out.
        symlink: String,
        /// Its target.
        target: String,
    },
    /// Too many symlinks while resolving a path (a loop).
    #[error("entry {path:?}: too many levels of symbolic links")]
    SymlinkLoop {
        /// The entry name.
        path: String,
    },
    /// A parent component of an entry is not a directory.
    #[error("entry {path:?}: parent {parent:?} is not a directory")]
    NotADirectory {
        /// The entry name.
        path: String,
        /// The parent that is a file.
        parent: String,
    },
    /// A hard link names a target that does not exist (or is a directory).
    #[error(
        "hard link {path:?} points to {target:?}, which is not an existing non-directory entry"
    )]
    BadHardLink {
        /// The link.
        path: String,
        /// Its target.
        target: String,
    },
    /// An entry name or link target is not valid UTF-8.
    #[error("entry name {path:?} is not valid UTF-8")]
    NonUtf8 {
        /// The name, lossily decoded.
        path: String,
    },
    /// A whiteout entry is malformed (for example `.wh.` alone, or `.wh...`).
    #[error("malformed whiteout entry {path:?}")]
    BadWhiteout {
        /// The entry name.
        path: String,
    },
    /// An entry type that cannot appear in an image layer.
    #[error("entry {path:?} has unsupported type {kind}")]
    UnsupportedEntry {
        /// The entry name.
        path: String,
        /// The tar entry type.
        kind: String,
    },
    /// Writing an entry to disk failed.
    #[error("writing {path:?}: {source}")]
    Write {
        /// The entry name.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the action and path.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Wraps a JSON error with what document it was.
    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            what: what.into(),
            source,
        }
    }

    /// A content-validation error.
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
