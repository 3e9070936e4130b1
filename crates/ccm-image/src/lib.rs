//! OCI pull and push, layer application, conversion into enclave images, and runc bundles.
//!
//! # Design
//!
//! * **Locations.** An image is read from a registry (Registry v2 / OCI distribution), an OCI
//!   image layout directory (`oci:DIR[:NAME]`) or a `docker save` archive
//!   (`docker-archive:FILE[:NAME]`) through one [`Source`], and written to a registry or an OCI
//!   layout through one [`Destination`]. References follow Docker's defaults ([`Reference`]).
//! * **Registries** ([`registry`]) speak TLS by default (rustls + ring, system roots, optional
//!   extra CA); plain HTTP only for registries explicitly listed as insecure. Anonymous, Basic and
//!   Bearer-token authentication are discovered from `WWW-Authenticate` challenges.
//! * **Streaming.** Blobs are never held whole in memory: downloads are streams checked against
//!   their descriptor's size and digest, uploads are streamed `PUT`s.
//! * **Layers** are applied to a [`FileTree`] model (whiteouts, opaque directories, hard links,
//!   symlinks resolved inside the root, `..` and escapes refused) that both conversion and
//!   unpacking drive, so the layer semantics exist once. Conversion needs only the model and the
//!   file hashes, computed while streaming; `ccm run` mirrors the model on disk.
//! * **Conversion** ([`convert()`]) streams each input layer once to both the destination and the
//!   scanner, builds the enclave manifest with `ccm-enclave`, signs it, and adds one reproducible
//!   layer. Progress goes to a [`Progress`] trait object.
//! * **Running** ([`run`]) writes an OCI runtime bundle and runs it with `runc`.

#![deny(missing_docs)]

pub mod convert;
mod copy;
mod dest;
pub mod digest;
mod error;
pub mod layer;
pub mod oci;
pub mod reference;
pub mod registry;
pub mod run;
mod source;
mod stream;
pub mod tree;
mod unpack;

pub use convert::{ConvertOutcome, ConvertSettings, NoProgress, Progress, ProgressEvent, convert};
pub use copy::copy;
pub use dest::Destination;
pub use digest::Digest;
pub use error::{Error, LayerError, Result};
pub use reference::{Location, Reference};
pub use registry::{Credentials, Registries, RegistryOptions};
pub use source::{DockerArchive, PulledImage, REF_NAME_ANNOTATION, Source};
pub use tree::FileTree;
pub use unpack::unpack;
