//! Where images are read from: registries, OCI image layout directories, `docker save` archives.
//! All three resolve to the same [`PulledImage`] (a single-platform manifest and its config) and
//! serve blobs as verified streams.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::digest::{self, Digest, Hasher};
use crate::error::{Error, Result};
use crate::oci::{
    self, Descriptor, ImageConfig, ImageIndex, ImageManifest, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE,
    ManifestKind, Platform,
};
use crate::reference::{Location, Reference};
use crate::registry::{ByteStream, Credentials, Registries, RegistryClient};
use crate::stream::{collect, verified};

/// The `org.opencontainers.image.ref.name` annotation used to name manifests in an OCI layout.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// A resolved single-platform image.
#[derive(Clone, Debug)]
pub struct PulledImage {
    /// The image as the user named it.
    pub display: String,
    /// Its manifest.
    pub manifest: ImageManifest,
    /// Digest of the manifest bytes (for archives: of the synthesized manifest).
    pub manifest_digest: Digest,
    /// The manifest bytes as stored (for archives: synthesized).
    pub manifest_bytes: Bytes,
    /// The raw config bytes.
    pub config_bytes: Bytes,
    /// The parsed config.
    pub config: ImageConfig,
}

/// An image source.
pub enum Source {
    /// A registry.
    Registry {
        /// The client.
        client: RegistryClient,
        /// The image.
        reference: Reference,
    },
    /// An OCI image layout directory.
    Layout {
        /// The directory.
        dir: PathBuf,
        /// The ref name, if any.
        name: Option<String>,
    },
    /// A `docker save` archive, indexed.
    Archive(Box<DockerArchive>),
}

fn blob_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(d.hex())
}

async fn read_file_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| Error::io("read", path, e))?;
    if meta.len() > limit {
        return Err(Error::TooLarge {
            what: what.to_owned(),
            limit,
        });
    }
    tokio::fs::read(path)
        .await
        .map_err(|e| Error::io("read", path, e))
}

/// Streams `len` bytes of `path` from `offset`.
async fn file_stream(path: &Path, offset: u64, len: u64) -> Result<ByteStream> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io("open", path, e))?;
    f.seek(SeekFrom::Start(offset))
        .await
        .map_err(|e| Error::io("seek", path, e))?;
    let path = path.to_owned();
    let state = (f.take(len), path, vec![0u8; 1 << 20]);
    Ok(Box::pin(futures_util::stream::unfold(
        Some(state),
        |st| async move {
            let (mut f, path, mut buf) = st?;
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or(&[]));
                    Some((Ok(chunk), Some((f, path, buf))))
                }
                Err(e) => Some((Err(Error::io("read", path, e)), None)),
            }
        },
    )))
}

impl Source {
    /// Opens a location for reading; `credentials` apply to registries only.
    pub async fn open(
        location: &Location,
        registries: &Registries,
        credentials: Option<Credentials>,
    ) -> Result<Self> {
        Ok(match location {
            Location::Registry(r) => Source::Registry {
                client: registries.client(r.api_host(), credentials),
                reference: r.clone(),
            },
            Location::OciLayout { dir, name } => {
                let layout = dir.join("oci-layout");
                if !layout.is_file() {
                    return Err(Error::invalid(
                        format!("OCI layout {}", dir.display()),
                        "no oci-layout file (not an OCI image layout directory)",
                    ));
                }
                Source::Layout {
                    dir: dir.clone(),
                    name: name.clone(),
                }
            }
            Location::DockerArchive { path, name } => {
                let (path, name) = (path.clone(), name.clone());
                let archive = tokio::task::spawn_blocking(move || {
                    DockerArchive::open(&path, name.as_deref())
                })
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
                Source::Archive(Box::new(archive))
            }
        })
    }

    /// A display name.
    pub fn display(&self) -> String {
        match self {
            Source::Registry { reference, .. } => reference.to_string(),
            Source::Layout { dir, name } => {
                format!(
                    "oci:{}{}",
                    dir.display(),
                    name.as_ref().map(|n| format!(":{n}")).unwrap_or_default()
                )
            }
            Source::Archive(a) => a.display.clone(),
        }
    }

    /// Reads a manifest or index blob named by a descriptor.
    async fn manifest_blob(&self, desc: &Descriptor) -> Result<(ManifestKind, Vec<u8>)> {
        let what = format!("manifest {}", desc.digest);
        let bytes = match self {
            Source::Registry { client, reference } => {
                client
                    .get_manifest(
                        reference.repository(),
                        &desc.digest.to_string(),
                        &reference.to_string(),
                    )
                    .await?
                    .0
            }
            _ => {
                if desc.size > MAX_MANIFEST_SIZE {
                    return Err(Error::TooLarge {
                        what,
                        limit: MAX_MANIFEST_SIZE,
                    });
                }
                collect(self.blob(desc).await?, MAX_MANIFEST_SIZE, &what).await?
            }
        };
        digest::verify(&what, &bytes, &desc.digest)?;
        Ok((
            oci::parse_manifest(&what, &bytes, Some(&desc.media_type))?,
            bytes,
        ))
    }

    /// Resolves the image for `platform`: reads the manifest (choosing from an index) and the
    /// config, checking every digest.
    pub async fn resolve(&self, platform: &Platform) -> Result<PulledImage> {
        let display = self.display();
        let (kind, mut manifest_digest, mut manifest_bytes) = match self {
            Source::Registry { client, reference } => {
                let (bytes, ct, d) = client
                    .get_manifest(reference.repository(), &reference.manifest_ref(), &display)
                    .await?;
                (
                    oci::parse_manifest(&format!("manifest of {display}"), &bytes, ct.as_deref())?,
                    d,
                    bytes,
                )
            }
            Source::Layout { dir, name } => {
                let path = dir.join("index.json");
                let bytes = read_file_limited(&path, MAX_MANIFEST_SIZE, "index.json").await?;
                let index: ImageIndex = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::json(format!("{}", path.display()), e))?;
                let desc = select_by_name(&display, &index, name.as_deref())?;
                let (kind, bytes) = self.manifest_blob(desc).await?;
                (kind, desc.digest, bytes)
            }
            Source::Archive(a) => {
                return Ok(a.image.clone());
            }
        };
        let manifest = match kind {
            ManifestKind::Image(m) => *m,
            ManifestKind::Index(index) => {
                let desc = oci::select_platform(&display, &index, platform)?.clone();
                manifest_digest = desc.digest;
                let (kind, bytes) = self.manifest_blob(&desc).await?;
                manifest_bytes = bytes;
                match kind {
                    ManifestKind::Image(m) => *m,
                    ManifestKind::Index(_) => {
                        return Err(Error::invalid(
                            format!("manifest of {display}"),
                            "nested index for one platform",
                        ));
                    }
                }
            }
        };
        if manifest.config.size > MAX_CONFIG_SIZE {
            return Err(Error::TooLarge {
                what: format!("config of {display}"),
                limit: MAX_CONFIG_SIZE,
            });
        }
        let config_bytes = collect(
            self.blob(&manifest.config).await?,
            MAX_CONFIG_SIZE,
            "image config",
        )
        .await?;
        let config = oci::parse_config(&config_bytes, manifest.layers.len())?;
        for l in &manifest.layers {
            oci::layer_compression(&l.media_type)?;
        }
        Ok(PulledImage {
            display,
            manifest,
            manifest_digest,
            manifest_bytes: Bytes::from(manifest_bytes),
            config_bytes: Bytes::from(config_bytes),
            config,
        })
    }

    /// Streams a blob, verified against the descriptor's size and digest.
    pub async fn blob(&self, desc: &Descriptor) -> Result<ByteStream> {
        let what = format!("blob {}", desc.digest);
        let raw = match self {
            Source::Registry { client, reference } => {
                client
                    .get_blob(reference.repository(), &desc.digest)
                    .await?
            }
            Source::Layout { dir, .. } => {
                let path = blob_path(dir, &desc.digest);
                if !path.is_file() {
                    return Err(Error::BlobNotFound {
                        location: dir.display().to_string(),
                        digest: desc.digest.to_string(),
                    });
                }
                file_stream(&path, 0, u64::MAX).await?
            }
            Source::Archive(a) => {
                let (offset, len) =
                    a.blobs
                        .get(&desc.digest)
                        .copied()
                        .ok_or_else(|| Error::BlobNotFound {
                            location: a.display.clone(),
                            digest: desc.digest.to_string(),
                        })?;
                file_stream(&a.path, offset, len).await?
            }
        };
        Ok(verified(raw, desc, what))
    }
}

fn select_by_name<'a>(
    display: &str,
    index: &'a ImageIndex,
    name: Option<&str>,
) -> Result<&'a Descriptor> {
    match name {
        Some(n) => index
            .manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) == Some(n))
            .ok_or_else(|| Error::ImageNotFound {
                reference: display.to_owned(),
            }),
        None => match index.manifests.as_slice() {
            [only] => Ok(only),
            [] => Err(Error::ImageNotFound {
                reference: display.to_owned(),
            }),
            many => Err(Error::invalid(
                display,
                format!(
                    "the layout holds {} images; name one of: {}",
                    many.len(),
                    many.iter()
                        .filter_map(|d| d.annotations.get(REF_NAME_ANNOTATION).cloned())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        },
    }
}

/// A `docker save` archive, indexed: where each file lies in the tar, and the image it holds with
/// a synthesized OCI manifest (layer digests computed from the archive's layer files).
pub struct DockerArchive {
    path: PathBuf,
    display: String,
    /// Blob digest → (offset, length) in the archive file.
    blobs: HashMap<Digest, (u64, u64)>,
    image: PulledImage,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn normalize_archive_name(dir: &str, name: &str) -> String {
    let mut parts: Vec<&str> = if name.starts_with('/') {
        Vec::new()
    } else {
        dir.split('/').filter(|c| !c.is_empty()).collect()
    };
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn repo_tag_matches(tag: &str, wanted: &str) -> bool {
    if tag == wanted {
        return true;
    }
    match (tag.parse::<Reference>(), wanted.parse::<Reference>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl DockerArchive {
    /// Indexes the archive (one pass over the tar) and hashes its layers (one more pass over each).
    pub fn open(path: &Path, name: Option<&str>) -> Result<Self> {
        let display = format!(
            "docker-archive:{}{}",
            path.display(),
            name.map(|n| format!(":{n}")).unwrap_or_default()
        );
        let bad = |reason: String| Error::invalid(display.clone(), reason);
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        let mut files: HashMap<String, (u64, u64)> = HashMap::new();
        let mut links: HashMap<String, String> = HashMap::new();
        let mut manifest_json: Option<Vec<u8>> = None;
        for entry in archive
            .entries()
            .map_err(|e| bad(format!("not a tar archive: {e}")))?
        {
            let mut entry = entry.map_err(|e| bad(format!("reading the archive: {e}")))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = normalize_archive_name("", &name);
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    if name == "manifest.json" {
                        if entry.size() > MAX_MANIFEST_SIZE {
                            return Err(Error::TooLarge {
                                what: "manifest.json".into(),
                                limit: MAX_MANIFEST_SIZE,
                            });
                        }
                        let mut buf = Vec::new();
                        entry
                            .read_to_end(&mut buf)
                            .map_err(|e| bad(format!("reading manifest.json: {e}")))?;
                        manifest_json = Some(buf);
                    }
                    files.insert(name, (entry.raw_file_position(), entry.size()));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(target) = entry.link_name_bytes() {
                        let target = String::from_utf8_lossy(&target).into_owned();
                        let dir = name.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
                        let resolved = if entry.header().entry_type() == tar::EntryType::Link {
                            normalize_archive_name("", &target)
                        } else {
                            normalize_archive_name(&dir, &target)
                        };
                        links.insert(name, resolved);
                    }
                }
                _ => {}
            }
        }
        let manifest_json = manifest_json
            .ok_or_else(|| bad("no manifest.json (not a docker save archive)".into()))?;
        let entries: Vec<ArchiveEntry> =
            serde_json::from_slice(&manifest_json).map_err(|e| Error::json("manifest.json", e))?;
        let entry = match name {
            Some(n) => entries
                .iter()
                .find(|e| e.repo_tags.iter().flatten().any(|t| repo_tag_matches(t, n)))
                .ok_or_else(|| Error::ImageNotFound {
                    reference: display.clone(),
                })?,
            None => match entries.as_slice() {
                [only] => only,
                _ => {
                    return Err(bad(format!(
                        "the archive holds {} images; name one",
                        entries.len()
                    )));
                }
            },
        };
        let lookup = |n: &str| -> Result<(u64, u64)> {
            let mut n = normalize_archive_name("", n);
            for _ in 0..8 {
                if let Some(loc) = files.get(&n) {
                    return Ok(*loc);
                }
                match links.get(&n) {
                    Some(t) => n = t.clone(),
                    None => break,
                }
            }
            Err(bad(format!(
                "{n} named by manifest.json is missing from the archive"
            )))
        };
        let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut blobs = HashMap::new();
        let (cfg_off, cfg_len) = lookup(&entry.config)?;
        if cfg_len > MAX_CONFIG_SIZE {
            return Err(Error::TooLarge {
                what: "image config".into(),
                limit: MAX_CONFIG_SIZE,
            });
        }
        let mut config_bytes = vec![0u8; cfg_len as usize];
        f.seek(SeekFrom::Start(cfg_off))
            .and_then(|_| f.read_exact(&mut config_bytes))
            .map_err(|e| Error::io("read", path, e))?;
        let config = oci::parse_config(&config_bytes, entry.layers.len())?;
        let config_desc = Descriptor::for_bytes(oci::OCI_CONFIG, &config_bytes);
        blobs.insert(config_desc.digest, (cfg_off, cfg_len));
        let mut layers = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        for l in &entry.layers {
            let (off, len) = lookup(l)?;
            f.seek(SeekFrom::Start(off))
                .map_err(|e| Error::io("seek", path, e))?;
            let mut h = Hasher::new();
            let mut left = len;
            let mut magic = [0u8; 2];
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let chunk = buf.get_mut(..want).unwrap_or_default();
                f.read_exact(chunk)
                    .map_err(|e| Error::io("read", path, e))?;
                if h.is_empty() && chunk.len() >= 2 {
                    magic.copy_from_slice(chunk.get(..2).unwrap_or(&[0, 0]));
                }
                h.update(chunk);
                left -= want as u64;
            }
            let media_type = if magic == [0x1f, 0x8b] {
                oci::OCI_LAYER_GZIP
            } else {
                oci::OCI_LAYER_TAR
            };
            let digest = h.finish();
            blobs.insert(digest, (off, len));
            layers.push(Descriptor {
                media_type: media_type.to_owned(),
                digest,
                size: len,
                platform: None,
                annotations: Default::default(),
                extra: Default::default(),
            });
        }
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.to_owned()),
            config: config_desc,
            layers,
            annotations: Default::default(),
            extra: Default::default(),
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| Error::json("synthesized manifest", e))?;
        let image = PulledImage {
            display: display.clone(),
            manifest,
            manifest_digest: Digest::of(&manifest_bytes),
            manifest_bytes: Bytes::from(manifest_bytes),
            config_bytes: Bytes::from(config_bytes),
            config,
        };
        Ok(DockerArchive {
            path: path.to_owned(),
            display,
            blobs,
            image,
        })
    }
}
