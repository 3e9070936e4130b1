//! Pulling an image and unpacking its layers into a root file system on disk.

use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::convert::{Progress, ProgressEvent};
use crate::error::{Error, Result};
use crate::layer::extract_layer;
use crate::oci::{self, Platform};
use crate::source::{PulledImage, Source};
use crate::stream::{ChannelReader, to_io};
use crate::tree::FileTree;

/// Pulls the image and writes its file tree under `rootfs` (created; must not exist or be
/// empty). Layers are applied bottom to top with the rules of [`FileTree`]; each layer's diff id
/// is checked against the config.
pub async fn unpack(
    src: &Source,
    platform: &Platform,
    rootfs: &Path,
    progress: &dyn Progress,
) -> Result<PulledImage> {
    let image = src.resolve(platform).await?;
    match std::fs::read_dir(rootfs) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::invalid(
                    rootfs.display().to_string(),
                    "root file system directory is not empty",
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(rootfs).map_err(|e| Error::io("create", rootfs, e))?;
        }
        Err(e) => return Err(Error::io("read", rootfs, e)),
    }
    progress.event(ProgressEvent::Resolved {
        layers: image.manifest.layers.len(),
        total_bytes: image.manifest.layers.iter().map(|l| l.size).sum(),
    });
    let mut tree = FileTree::new();
    for (index, desc) in image.manifest.layers.iter().enumerate() {
        let compression = oci::layer_compression(&desc.media_type)?;
        let mut stream = src.blob(desc).await?;
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(16);
        let root = rootfs.to_owned();
        let mut moved_tree = std::mem::take(&mut tree);
        let worker = tokio::task::spawn_blocking(move || {
            let r = extract_layer(ChannelReader::new(rx), compression, &mut moved_tree, &root);
            (moved_tree, r)
        });
        let mut failure = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    progress.event(ProgressEvent::LayerBytes {
                        index,
                        bytes: chunk.len() as u64,
                    });
                    if tx.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(to_io(&e))).await;
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let (t, result) = worker.await.map_err(|e| Error::Task(e.to_string()))?;
        tree = t;
        if let Some(e) = failure {
            return Err(e);
        }
        let diff_id = result.map_err(|source| Error::Layer {
            index,
            digest: desc.digest.to_string(),
            source,
        })?;
        let expected = image.config.rootfs.diff_ids.get(index).copied();
        if expected != Some(diff_id) {
            return Err(Error::DigestMismatch {
                what: format!("uncompressed layer {index} ({})", desc.digest),
                expected: expected.map(|d| d.to_string()).unwrap_or_default(),
                actual: diff_id.to_string(),
            });
        }
        progress.event(ProgressEvent::LayerDone {
            index,
            already_present: false,
        });
    }
    Ok(image)
}
