//! OCI and Docker manifest, index and descriptor types, and their media types.
//!
//! These are small serde types rather than `oci-spec`'s: both the OCI and the Docker schema 2
//! spellings must be read through one type, and fields this crate does not know are kept
//! (`extra`) so that re-serialising a document loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer (not supported for application).
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (as in `docker save`).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The `Accept` header value for manifest requests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest or index accepted (the distribution spec recommends 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;
/// Largest image config accepted.
pub const MAX_CONFIG_SIZE: u64 = 16 * 1024 * 1024;

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
}

/// The compression of a layer media type, or an error for media types that are not layers this
/// crate can apply.
pub fn layer_compression(media_type: &str) -> Result<Compression> {
    match media_type {
        OCI_LAYER_TAR
        | DOCKER_LAYER_TAR
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Ok(Compression::None),
        OCI_LAYER_GZIP
        | DOCKER_LAYER_GZIP
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        other => Err(Error::UnsupportedMediaType {
            what: "layer".into(),
            media_type: other.to_owned(),
        }),
    }
}

/// The OCI spelling of a layer media type (Docker's are renamed; the bytes are the same).
pub fn oci_layer_media_type(media_type: &str) -> Result<&'static str> {
    Ok(match layer_compression(media_type)? {
        Compression::None => OCI_LAYER_TAR,
        Compression::Gzip => OCI_LAYER_GZIP,
    })
}

/// A platform, as in an index entry or an image config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// CPU architecture (`amd64`).
    pub architecture: String,
    /// CPU variant (`v8`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Everything else, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Platform {
    /// `linux/amd64`, the platform SGX images run on.
    pub fn linux_amd64() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
            extra: BTreeMap::new(),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        self.variant.as_ref().map_or(Ok(()), |v| write!(f, "/{v}"))
    }
}

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Digest of the content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Platform (index entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Everything else, kept verbatim (urls, artifactType, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Descriptor {
    /// A descriptor for `data` with the given media type.
    pub fn for_bytes(media_type: &str, data: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: Digest::of(data),
            size: data.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// An image manifest (OCI, or Docker schema 2: the same shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The manifest's media type (optional in OCI, required by Docker).
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Everything else, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// An image index or Docker manifest list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIndex {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The index's media type.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Everything else, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A manifest or an index, as fetched.
#[derive(Clone, Debug)]
pub enum ManifestKind {
    /// A single-platform image manifest.
    Image(Box<ImageManifest>),
    /// A multi-platform index.
    Index(Box<ImageIndex>),
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
}

/// Parses a manifest or index. `content_type` is the HTTP `Content-Type` (or the descriptor's
/// media type); when it is missing or generic, the document's own `mediaType` and shape decide.
pub fn parse_manifest(
    what: &str,
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<ManifestKind> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| Error::json(what, e))?;
    match probe.schema_version {
        Some(2) => {}
        Some(1) => {
            return Err(Error::UnsupportedMediaType {
                what: what.to_owned(),
                media_type: "application/vnd.docker.distribution.manifest.v1+json (schema 1)"
                    .into(),
            });
        }
        _ => return Err(Error::invalid(what, "schemaVersion must be 2")),
    }
    let declared = probe
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_owned()))
        .unwrap_or_default();
    let is_index = match declared.as_str() {
        OCI_INDEX | DOCKER_MANIFEST_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        _ if probe.manifests.is_some() => true,
        _ if probe.config.is_some() => false,
        other => {
            return Err(Error::UnsupportedMediaType {
                what: what.to_owned(),
                media_type: other.to_owned(),
            });
        }
    };
    if is_index {
        let index: ImageIndex = serde_json::from_slice(bytes).map_err(|e| Error::json(what, e))?;
        Ok(ManifestKind::Index(Box::new(index)))
    } else {
        let m: ImageManifest = serde_json::from_slice(bytes).map_err(|e| Error::json(what, e))?;
        match m.config.media_type.as_str() {
            OCI_CONFIG | DOCKER_CONFIG => {}
            other => {
                return Err(Error::UnsupportedMediaType {
                    what: format!("{what} config (not a container image)"),
                    media_type: other.to_owned(),
                });
            }
        }
        Ok(ManifestKind::Image(Box::new(m)))
    }
}

/// Picks the entry of `index` for `platform` (os and architecture must match; a variant, when
/// requested, too).
pub fn select_platform<'a>(
    reference: &str,
    index: &'a ImageIndex,
    platform: &Platform,
) -> Result<&'a Descriptor> {
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == platform.os
                    && p.architecture == platform.architecture
                    && (platform.variant.is_none() || p.variant == platform.variant)
            }) && matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST)
        })
        .ok_or_else(|| Error::NoMatchingPlatform {
            reference: reference.to_owned(),
            platform: platform.to_string(),
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The fields of an image config that conversion and `ccm run` read; the rest of the document is
/// handled as a JSON value so nothing is lost when it is rewritten.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ImageConfig {
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// OS.
    #[serde(default)]
    pub os: String,
    /// Creation time (RFC 3339), if recorded.
    #[serde(default)]
    pub created: Option<String>,
    /// The runtime config.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// The layer diff ids.
    pub rootfs: RootFs,
}

/// The `config` section of an image config.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RunConfig {
    /// `USER`.
    #[serde(rename = "User", default)]
    pub user: Option<String>,
    /// `ENV`, `K=V` entries.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    /// `ENTRYPOINT`.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// `WORKDIR`.
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    /// `LABEL`s.
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// `STOPSIGNAL`.
    #[serde(rename = "StopSignal", default)]
    pub stop_signal: Option<String>,
}

/// The `rootfs` section of an image config.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digest of each uncompressed layer, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// Parses an image config and checks it against the manifest's layer count.
pub fn parse_config(bytes: &[u8], layer_count: usize) -> Result<ImageConfig> {
    let cfg: ImageConfig =
        serde_json::from_slice(bytes).map_err(|e| Error::json("image config", e))?;
    if cfg.rootfs.kind != "layers" {
        return Err(Error::invalid(
            "image config",
            format!("rootfs.type is {:?}, expected \"layers\"", cfg.rootfs.kind),
        ));
    }
    if cfg.rootfs.diff_ids.len() != layer_count {
        return Err(Error::invalid(
            "image config",
            format!(
                "{} diff_ids for {} layers",
                cfg.rootfs.diff_ids.len(),
                layer_count
            ),
        ));
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_docker_and_oci_manifests() {
        let docker = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{D}","size":1}},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"{D}","size":2}}]}}"#
        );
        let ManifestKind::Image(m) = parse_manifest("m", docker.as_bytes(), None).unwrap() else {
            panic!()
        };
        assert_eq!(
            oci_layer_media_type(&m.layers[0].media_type).unwrap(),
            OCI_LAYER_GZIP
        );
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":3,"platform":{{"os":"linux","architecture":"arm64"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":4,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let ManifestKind::Index(i) =
            parse_manifest("i", index.as_bytes(), Some(OCI_INDEX)).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            select_platform("x", &i, &Platform::linux_amd64())
                .unwrap()
                .size,
            4
        );
        let arm = Platform {
            architecture: "s390x".into(),
            ..Platform::linux_amd64()
        };
        let err = select_platform("x", &i, &arm).unwrap_err().to_string();
        assert!(err.contains("linux/arm64, linux/amd64"), "{err}");
    }

    #[test]
    fn rejects_schema1_and_garbage() {
        assert!(matches!(
            parse_manifest("m", br#"{"schemaVersion":1}"#, None),
            Err(Error::UnsupportedMediaType { .. })
        ));
        assert!(matches!(
            parse_manifest("m", b"{", None),
            Err(Error::Json { .. })
        ));
        assert!(matches!(
            parse_manifest("m", br#"{"schemaVersion":2}"#, None),
            Err(Error::UnsupportedMediaType { .. })
        ));
        let art = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/x-helm","digest":"{D}","size":1}},"layers":[]}}"#
        );
        assert!(matches!(
            parse_manifest("m", art.as_bytes(), None),
            Err(Error::UnsupportedMediaType { .. })
        ));
    }
}
