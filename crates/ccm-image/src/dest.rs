//! Where images are written: a registry, or an OCI image layout directory.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::oci::{Descriptor, ImageIndex, OCI_INDEX};
use crate::reference::{Location, Reference};
use crate::registry::{ByteStream, Credentials, Registries, RegistryClient};
use crate::source::REF_NAME_ANNOTATION;

/// An image destination.
pub enum Destination {
    /// A registry repository and tag.
    Registry {
        /// The client.
        client: RegistryClient,
        /// The target (with a tag).
        reference: Reference,
    },
    /// An OCI image layout directory (created if missing).
    Layout {
        /// The directory.
        dir: PathBuf,
        /// The ref name given to the manifest.
        name: Option<String>,
    },
}

fn blob_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(d.hex())
}

impl Destination {
    /// Opens a location for writing; `credentials` apply to registries only.
    pub async fn open(
        location: &Location,
        registries: &Registries,
        credentials: Option<Credentials>,
    ) -> Result<Self> {
        match location {
            Location::Registry(r) => {
                if r.digest().is_some() {
                    return Err(Error::InvalidReference {
                        input: r.to_string(),
                        reason: "an output image needs a tag, not a digest",
                    });
                }
                Ok(Destination::Registry {
                    client: registries.client(r.api_host(), credentials),
                    reference: r.clone(),
                })
            }
            Location::OciLayout { dir, name } => {
                let blobs = dir.join("blobs").join("sha256");
                tokio::fs::create_dir_all(&blobs)
                    .await
                    .map_err(|e| Error::io("create", &blobs, e))?;
                let layout = dir.join("oci-layout");
                if !layout.exists() {
                    tokio::fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
                        .await
                        .map_err(|e| Error::io("write", &layout, e))?;
                }
                Ok(Destination::Layout {
                    dir: dir.clone(),
                    name: name.clone(),
                })
            }
            Location::DockerArchive { .. } => Err(Error::InvalidOption {
                option: "--to",
                reason: "docker-archive: is read-only here; write to a registry or an oci: layout"
                    .into(),
            }),
        }
    }

    /// A display name (`registry/repo:tag` or `oci:DIR[:NAME]`).
    pub fn display(&self) -> String {
        match self {
            Destination::Registry { reference, .. } => reference.to_string(),
            Destination::Layout { dir, name } => {
                format!(
                    "oci:{}{}",
                    dir.display(),
                    name.as_ref().map(|n| format!(":{n}")).unwrap_or_default()
                )
            }
        }
    }

    /// Whether the destination already has the blob.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        match self {
            Destination::Registry { client, reference } => {
                client.has_blob(reference.repository(), digest).await
            }
            Destination::Layout { dir, .. } => Ok(blob_path(dir, digest).is_file()),
        }
    }

    /// Writes a blob from a stream (which should be verified; the destination checks the digest
    /// again before making the blob visible).
    pub async fn put_blob(&self, desc: &Descriptor, stream: ByteStream) -> Result<()> {
        match self {
            Destination::Registry { client, reference } => {
                let body = reqwest::Body::wrap_stream(stream);
                client
                    .upload_blob(reference.repository(), &desc.digest, desc.size, body)
                    .await
            }
            Destination::Layout { dir, .. } => write_layout_blob(dir, desc, stream).await,
        }
    }

    /// Writes a small in-memory blob unless present.
    pub async fn put_bytes(&self, media_type: &str, data: Bytes) -> Result<Descriptor> {
        let desc = Descriptor::for_bytes(media_type, &data);
        if !self.has_blob(&desc.digest).await? {
            let stream: ByteStream = Box::pin(futures_util::stream::once(async move { Ok(data) }));
            self.put_blob(&desc, stream).await?;
        }
        Ok(desc)
    }

    /// Stores the manifest under the destination's tag or name. Returns its digest.
    pub async fn put_manifest(&self, media_type: &str, bytes: Bytes) -> Result<Digest> {
        match self {
            Destination::Registry { client, reference } => {
                let tag = reference.tag().unwrap_or("latest");
                client
                    .put_manifest(reference.repository(), tag, media_type, bytes)
                    .await
            }
            Destination::Layout { dir, name } => {
                let desc = self.put_bytes(media_type, bytes).await?;
                let index_path = dir.join("index.json");
                let mut index = match tokio::fs::read(&index_path).await {
                    Ok(b) => serde_json::from_slice::<ImageIndex>(&b)
                        .map_err(|e| Error::json(index_path.display().to_string(), e))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => ImageIndex {
                        schema_version: 2,
                        media_type: Some(OCI_INDEX.to_owned()),
                        manifests: Vec::new(),
                        annotations: Default::default(),
                        extra: Default::default(),
                    },
                    Err(e) => return Err(Error::io("read", &index_path, e)),
                };
                let mut entry = desc.clone();
                match name {
                    Some(n) => {
                        index
                            .manifests
                            .retain(|d| d.annotations.get(REF_NAME_ANNOTATION) != Some(n));
                        entry
                            .annotations
                            .insert(REF_NAME_ANNOTATION.to_owned(), n.clone());
                    }
                    None => index
                        .manifests
                        .retain(|d| d.annotations.contains_key(REF_NAME_ANNOTATION)),
                }
                index.manifests.push(entry);
                let bytes = serde_json::to_vec(&index).map_err(|e| Error::json("index.json", e))?;
                let tmp = dir.join(".index.json.tmp");
                tokio::fs::write(&tmp, &bytes)
                    .await
                    .map_err(|e| Error::io("write", &tmp, e))?;
                tokio::fs::rename(&tmp, &index_path)
                    .await
                    .map_err(|e| Error::io("rename", &index_path, e))?;
                Ok(desc.digest)
            }
        }
    }
}

async fn write_layout_blob(dir: &Path, desc: &Descriptor, mut stream: ByteStream) -> Result<()> {
    let final_path = blob_path(dir, &desc.digest);
    let tmp = dir
        .join("blobs")
        .join("sha256")
        .join(format!(".{}.partial", desc.digest.hex()));
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| Error::io("create", &tmp, e))?;
    let mut h = Hasher::new();
    let result: Result<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            h.update(&chunk);
            f.write_all(&chunk)
                .await
                .map_err(|e| Error::io("write", &tmp, e))?;
        }
        f.flush().await.map_err(|e| Error::io("write", &tmp, e))?;
        Ok(())
    }
    .await;
    drop(f);
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    let (len, actual) = (h.len(), h.finish());
    if actual != desc.digest || len != desc.size {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(Error::DigestMismatch {
            what: format!("blob written to {}", dir.display()),
            expected: desc.digest.to_string(),
            actual: actual.to_string(),
        });
    }
    tokio::fs::rename(&tmp, &final_path)
        .await
        .map_err(|e| Error::io("rename", &final_path, e))
}
