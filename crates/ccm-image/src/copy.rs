//! Copying an image unchanged (single platform), blob by blob, streamed.

use futures_util::{StreamExt, TryStreamExt};

use crate::convert::{Progress, ProgressEvent};
use crate::dest::Destination;
use crate::digest::Digest;
use crate::error::Result;
use crate::oci::{OCI_MANIFEST, Platform};
use crate::source::Source;

/// Copies the image for `platform` from `src` to `dst`: layers not yet present are streamed
/// (two at a time), then the config, then the manifest bytes exactly as the source stores them
/// (so the digest is preserved). Returns the manifest digest.
pub async fn copy(
    src: &Source,
    dst: &Destination,
    platform: &Platform,
    progress: &dyn Progress,
) -> Result<Digest> {
    let image = src.resolve(platform).await?;
    progress.event(ProgressEvent::Resolved {
        layers: image.manifest.layers.len(),
        total_bytes: image.manifest.layers.iter().map(|l| l.size).sum(),
    });
    futures_util::stream::iter(image.manifest.layers.iter().enumerate())
        .map(|(index, desc)| async move {
            let present = dst.has_blob(&desc.digest).await?;
            if !present {
                dst.put_blob(desc, src.blob(desc).await?).await?;
            }
            progress.event(ProgressEvent::LayerBytes {
                index,
                bytes: desc.size,
            });
            progress.event(ProgressEvent::LayerDone {
                index,
                already_present: present,
            });
            Ok::<(), crate::error::Error>(())
        })
        .buffered(2)
        .try_collect::<Vec<()>>()
        .await?;
    dst.put_bytes(
        &image.manifest.config.media_type,
        image.config_bytes.clone(),
    )
    .await?;
    let media_type = image
        .manifest
        .media_type
        .clone()
        .unwrap_or_else(|| OCI_MANIFEST.to_owned());
    dst.put_manifest(&media_type, image.manifest_bytes.clone())
        .await
}
