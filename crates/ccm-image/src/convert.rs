//! Conversion of a container image into an enclave image (DESIGN.md section 8).
//!
//! One pass over the input: each layer blob is streamed from the source once and, at the same
//! time, (a) uploaded unchanged to the destination (unless it is already there) and (b)
//! decompressed and read on a blocking thread that hashes every regular file. Two layers are in
//! flight at once. The per-layer entry lists are then applied in order to a [`FileTree`] model
//! (whiteouts, links, ...), which gives the trusted files of the manifest. Nothing of the input is
//! written to local disk.
//!
//! The output is the input layers unchanged, plus one layer holding the launcher, the manifest
//! and the SIGSTRUCT, with a config whose ENTRYPOINT is the launcher. Every output byte is a
//! function of the input and the settings (fixed tar headers and gzip header, sorted JSON keys,
//! a SIGSTRUCT date taken from the input), so converting twice gives the same digest.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use ccm_enclave::{
    CertificateRequest, DEFAULT_EXCLUDED_PATHS, DEFAULT_PASSTHROUGH_ENV, EnclaveParams,
    LAUNCHER_PATH, MANIFEST_PATH, MANIFEST_VERSION, Manifest, Runtime, SIGSTRUCT_PATH, Sha256Hex,
    SignOptions, SigningKey, Symlink, TrustedFile,
};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::dest::Destination;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layer::{LayerScan, scan_layer};
use crate::oci::{
    self, Descriptor, ImageManifest, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Platform,
};
use crate::source::{PulledImage, Source};
use crate::stream::{ChannelReader, receiver_stream, to_io};
use crate::tree::{Entry, EntryKind, FileTree, NodeKind};

/// Label and annotation keys written on converted images.
pub mod keys {
    /// MRENCLAVE (hex).
    pub const MRENCLAVE: &str = "io.ccm.enclave.mrenclave";
    /// MRSIGNER (hex).
    pub const MRSIGNER: &str = "io.ccm.enclave.mrsigner";
    /// ISVPRODID (decimal).
    pub const ISVPRODID: &str = "io.ccm.enclave.isvprodid";
    /// ISVSVN (decimal).
    pub const ISVSVN: &str = "io.ccm.enclave.isvsvn";
    /// Whether the enclave is a debug enclave.
    pub const DEBUG: &str = "io.ccm.enclave.debug";
}

/// Layers transferred concurrently.
const PARALLEL_LAYERS: usize = 2;
/// Chunks buffered between the download and each consumer.
const CHANNEL_DEPTH: usize = 16;

/// Conversion settings (the app's settings in the manager, flags in `ccm convert`).
#[derive(Clone)]
pub struct ConvertSettings {
    /// Memory size, threads, debug.
    pub enclave: EnclaveParams,
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// Replaces the image's ENTRYPOINT (and resets its CMD, as Docker does).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's CMD.
    pub args: Option<Vec<String>>,
    /// Whether run-time arguments may replace the measured ones.
    pub allow_runtime_args: bool,
    /// Environment overrides (`K=V` applied over the image's ENV).
    pub env: Vec<(String, String)>,
    /// Extra passthrough variable names (the defaults are always included).
    pub passthrough_env: Vec<String>,
    /// Certificates the launcher obtains.
    pub certificates: Vec<CertificateRequest>,
    /// Extra unmeasured paths.
    pub excluded_paths: Vec<String>,
    /// The launcher binary.
    pub launcher: Bytes,
    /// The launcher's version string.
    pub launcher_version: String,
    /// The signing key (RSA-3072, e = 3).
    pub signing_key: Arc<SigningKey>,
    /// Platform to pick from a multi-platform input.
    pub platform: Platform,
}

/// What a conversion produced.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConvertOutcome {
    /// The output image.
    pub reference: String,
    /// Digest of the output manifest.
    pub digest: Digest,
    /// MRENCLAVE (hex).
    pub mrenclave: String,
    /// MRSIGNER (hex).
    pub mrsigner: String,
    /// ISVPRODID.
    pub isvprodid: u16,
    /// ISVSVN.
    pub isvsvn: u16,
    /// Whether the enclave is a debug enclave.
    pub debug: bool,
    /// Digest of the input manifest.
    pub input_digest: Digest,
    /// Layers of the output image.
    pub layers: usize,
    /// Trusted files measured.
    pub trusted_files: usize,
    /// Bytes of trusted files.
    pub trusted_bytes: u64,
    /// Layers that were already present at the destination.
    pub layers_skipped: usize,
}

/// Progress of a conversion, for a progress bar or a job log.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// The input was resolved.
    Resolved {
        /// Input layers.
        layers: usize,
        /// Their total compressed size.
        total_bytes: u64,
    },
    /// Bytes of a layer were received.
    LayerBytes {
        /// Layer index.
        index: usize,
        /// Bytes in this chunk.
        bytes: u64,
    },
    /// A layer was read (and uploaded unless present).
    LayerDone {
        /// Layer index.
        index: usize,
        /// Whether the destination already had it.
        already_present: bool,
    },
    /// A step without byte progress started ("building manifest", "signing", "pushing").
    Step(&'static str),
}

/// Receives progress events. Must be cheap: it is called for every chunk.
pub trait Progress: Send + Sync {
    /// One event.
    fn event(&self, event: ProgressEvent);
}

/// Discards progress.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: ProgressEvent) {}
}

/// Streams one layer from `src` to `dst` (unless present) and through the scanner.
async fn transfer_layer(
    src: &Source,
    dst: &Destination,
    index: usize,
    desc: &Descriptor,
    progress: &dyn Progress,
) -> Result<(LayerScan, bool)> {
    let compression = oci::layer_compression(&desc.media_type)?;
    let present = dst.has_blob(&desc.digest).await?;
    let mut stream = src.blob(desc).await?;

    let (scan_tx, scan_rx) = mpsc::channel::<std::io::Result<Bytes>>(CHANNEL_DEPTH);
    // The diff id is not recomputed: the blob is verified against the manifest's digest, the
    // manifest names the config and its diff ids, and the measurement hashes the files themselves.
    let scanner = tokio::task::spawn_blocking(move || {
        scan_layer(ChannelReader::new(scan_rx), compression, false)
    });

    let (upload_tx, upload) = if present {
        (None, None)
    } else {
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(CHANNEL_DEPTH);
        let body: crate::registry::ByteStream = Box::pin(receiver_stream(rx));
        (Some(tx), Some(dst.put_blob(desc, body)))
    };

    let pump = async {
        let mut upload_tx = upload_tx;
        let mut scan_tx = Some(scan_tx);
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    progress.event(ProgressEvent::LayerBytes {
                        index,
                        bytes: chunk.len() as u64,
                    });
                    if let Some(tx) = &upload_tx
                        && tx.send(Ok(chunk.clone())).await.is_err()
                    {
                        // The upload ended early; its own error is reported below.
                        upload_tx = None;
                    }
                    if let Some(tx) = &scan_tx
                        && tx.send(Ok(chunk)).await.is_err()
                    {
                        // The scanner stopped (bad tar); its error is reported below.
                        scan_tx = None;
                    }
                    if upload_tx.is_none() && scan_tx.is_none() {
                        break;
                    }
                }
                Err(e) => {
                    if let Some(tx) = &scan_tx {
                        let _ = tx.send(Err(to_io(&e))).await;
                    }
                    if let Some(tx) = &upload_tx {
                        let _ = tx
                            .send(Err(Error::Task(format!("source failed: {e}"))))
                            .await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    };

    let (pumped, uploaded) = match upload {
        Some(up) => {
            let (p, u) = tokio::join!(pump, up);
            (p, u)
        }
        None => (pump.await, Ok(())),
    };
    let scanned = scanner.await.map_err(|e| Error::Task(e.to_string()))?;
    pumped?;
    let scan = scanned.map_err(|source| Error::Layer {
        index,
        digest: desc.digest.to_string(),
        source,
    })?;
    uploaded?;
    progress.event(ProgressEvent::LayerDone {
        index,
        already_present: present,
    });
    Ok((scan, present))
}

/// Converts the image at `src` into an enclave image at `dst`.
pub async fn convert(
    src: &Source,
    dst: &Destination,
    settings: &ConvertSettings,
    progress: &dyn Progress,
) -> Result<ConvertOutcome> {
    let input = src.resolve(&settings.platform).await?;
    progress.event(ProgressEvent::Resolved {
        layers: input.manifest.layers.len(),
        total_bytes: input.manifest.layers.iter().map(|l| l.size).sum(),
    });

    // Stream every layer once: upload it unchanged and scan its files.
    let layers = input.manifest.layers.clone();
    let results: Vec<(LayerScan, bool)> = futures_util::stream::iter(layers.iter().enumerate())
        .map(|(i, d)| transfer_layer(src, dst, i, d, progress))
        .buffered(PARALLEL_LAYERS)
        .try_collect()
        .await?;

    progress.event(ProgressEvent::Step("building the enclave manifest"));
    let mut tree = FileTree::new();
    let mut skipped = 0;
    for (i, ((scan, present), desc)) in results.iter().zip(&layers).enumerate() {
        tree.apply_layer(&scan.entries)
            .map_err(|source| Error::Layer {
                index: i,
                digest: desc.digest.to_string(),
                source,
            })?;
        skipped += usize::from(*present);
    }
    let launcher_sha = *Digest::of(&settings.launcher).as_bytes();
    tree.apply_layer(&launcher_entries(
        settings.launcher.len() as u64,
        launcher_sha,
    ))
    .map_err(|source| Error::Layer {
        index: layers.len(),
        digest: "launcher layer".into(),
        source,
    })?;

    let manifest = build_manifest(&input, &tree, settings, launcher_sha)?;
    let manifest_bytes = manifest
        .to_canonical_bytes()
        .map_err(ccm_enclave::Error::from)?;

    progress.event(ProgressEvent::Step("signing"));
    let sign_opts = SignOptions {
        isv_prod_id: settings.isv_prod_id,
        isv_svn: settings.isv_svn,
        date: sigstruct_date(input.config.created.as_deref()),
    };
    let signed = ccm_enclave::sign_enclave(&manifest_bytes, &settings.signing_key, &sign_opts)?;
    let sig_bytes = signed.sigstruct.as_bytes().to_vec();
    let (mrenclave, mrsigner) = (signed.mrenclave.to_string(), signed.mrsigner.to_string());

    progress.event(ProgressEvent::Step("pushing the enclave layer"));
    let (layer_gz, diff_id) = enclave_layer(&settings.launcher, &manifest_bytes, &sig_bytes)?;
    let layer_desc = dst.put_bytes(OCI_LAYER_GZIP, Bytes::from(layer_gz)).await?;

    let mut labels = BTreeMap::new();
    labels.insert(keys::MRENCLAVE.to_owned(), mrenclave.clone());
    labels.insert(keys::MRSIGNER.to_owned(), mrsigner.clone());
    labels.insert(keys::ISVPRODID.to_owned(), settings.isv_prod_id.to_string());
    labels.insert(keys::ISVSVN.to_owned(), settings.isv_svn.to_string());
    labels.insert(keys::DEBUG.to_owned(), settings.enclave.debug.to_string());

    let config_bytes = rewrite_config(&input.config_bytes, &labels, diff_id)?;
    let config_desc = dst.put_bytes(OCI_CONFIG, Bytes::from(config_bytes)).await?;

    let mut out_layers = Vec::with_capacity(layers.len() + 1);
    for l in &layers {
        let mut d = l.clone();
        d.media_type = oci::oci_layer_media_type(&l.media_type)?.to_owned();
        out_layers.push(d);
    }
    out_layers.push(layer_desc);
    let mut annotations = labels.clone();
    annotations.insert(
        "org.opencontainers.image.base.digest".into(),
        input.manifest_digest.to_string(),
    );
    let out = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_owned()),
        config: config_desc,
        layers: out_layers,
        annotations,
        extra: BTreeMap::new(),
    };
    let out_value = serde_json::to_value(&out).map_err(|e| Error::json("output manifest", e))?;
    let out_bytes = sorted_json(&out_value);

    progress.event(ProgressEvent::Step("pushing the manifest"));
    let digest = dst
        .put_manifest(OCI_MANIFEST, Bytes::from(out_bytes))
        .await?;
    Ok(ConvertOutcome {
        reference: dst.display(),
        digest,
        mrenclave,
        mrsigner,
        isvprodid: settings.isv_prod_id,
        isvsvn: settings.isv_svn,
        debug: settings.enclave.debug,
        input_digest: input.manifest_digest,
        layers: out.layers.len(),
        trusted_files: manifest.trusted_files.len(),
        trusted_bytes: manifest.trusted_files.iter().map(|f| f.size).sum(),
        layers_skipped: skipped,
    })
}

/// The SIGSTRUCT date: the input's creation date (so that it is reproducible), else 1970-01-01.
fn sigstruct_date(created: Option<&str>) -> (u16, u8, u8) {
    let parse = |s: &str| -> Option<(u16, u8, u8)> {
        let y = s.get(0..4)?.parse().ok()?;
        let m = s.get(5..7)?.parse().ok()?;
        let d = s.get(8..10)?.parse().ok()?;
        ((1..=12).contains(&m) && (1..=31).contains(&d) && s.get(4..5) == Some("-"))
            .then_some((y, m, d))
    };
    created.and_then(parse).unwrap_or((1970, 1, 1))
}

/// The entries the enclave layer adds that are measured (the launcher and its directories).
fn launcher_entries(size: u64, sha256: [u8; 32]) -> Vec<Entry> {
    let dir = |p: &str| Entry {
        path: p.into(),
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
    vec![
        dir("opt/ccm/"),
        dir("opt/ccm/bin/"),
        Entry {
            path: LAUNCHER_PATH.trim_start_matches('/').into(),
            kind: EntryKind::File {
                size,
                sha256: Some(sha256),
            },
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
    ]
}

fn parse_env(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .filter_map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Some((k.to_owned(), v.to_owned())),
            _ => None,
        })
        .collect()
}

fn build_manifest(
    input: &PulledImage,
    tree: &FileTree,
    settings: &ConvertSettings,
    launcher_sha: [u8; 32],
) -> Result<Manifest> {
    let rc = input.config.config.clone().unwrap_or_default();
    let entrypoint: Vec<String> = match &settings.entrypoint {
        Some(ep) => ep
            .iter()
            .cloned()
            .chain(settings.args.iter().flatten().cloned())
            .collect(),
        None => rc
            .entrypoint
            .iter()
            .flatten()
            .cloned()
            .chain(
                settings
                    .args
                    .clone()
                    .or(rc.cmd.clone())
                    .into_iter()
                    .flatten(),
            )
            .collect(),
    };
    if entrypoint.is_empty() {
        return Err(Error::InvalidOption {
            option: "--entrypoint",
            reason: format!(
                "{} has no ENTRYPOINT or CMD; give the program to run",
                input.display
            ),
        });
    }
    let mut env = parse_env(rc.env.as_deref().unwrap_or_default());
    for (k, v) in &settings.env {
        env.insert(k.clone(), v.clone());
    }
    let mut passthrough: Vec<String> = DEFAULT_PASSTHROUGH_ENV
        .iter()
        .map(|s| (*s).to_owned())
        .chain(settings.passthrough_env.iter().cloned())
        .collect();
    passthrough.sort();
    passthrough.dedup();
    let mut excluded: Vec<String> = DEFAULT_EXCLUDED_PATHS
        .iter()
        .map(|s| (*s).to_owned())
        .chain([MANIFEST_PATH.to_owned(), SIGSTRUCT_PATH.to_owned()])
        .chain(settings.excluded_paths.iter().cloned())
        .collect();
    for p in &excluded {
        ccm_enclave::check_abs_path("excluded path", p).map_err(|e| Error::InvalidOption {
            option: "--exclude",
            reason: e.to_string(),
        })?;
    }
    excluded.sort();
    excluded.dedup();

    let mut trusted_files = Vec::new();
    let mut symlinks = Vec::new();
    for (path, node) in tree.iter() {
        let abs = format!("/{path}");
        if ccm_enclave::is_under_any(&abs, &excluded) {
            continue;
        }
        match &node.kind {
            NodeKind::File {
                size,
                sha256: Some(sha),
            } => {
                trusted_files.push(TrustedFile {
                    path: abs,
                    size: *size,
                    mode: node.mode,
                    sha256: Sha256Hex(*sha),
                });
            }
            NodeKind::File { sha256: None, .. } => {
                return Err(Error::invalid(abs, "file was not hashed"));
            }
            NodeKind::Symlink { target } => symlinks.push(Symlink {
                path: abs,
                target: target.clone(),
            }),
            NodeKind::Dir | NodeKind::Special => {}
        }
    }
    let working_dir = rc
        .working_dir
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    Ok(Manifest {
        version: MANIFEST_VERSION,
        runtime: Runtime {
            version: settings.launcher_version.clone(),
            sha256: Sha256Hex(launcher_sha),
        },
        entrypoint,
        allow_runtime_args: settings.allow_runtime_args,
        env,
        passthrough_env: passthrough,
        working_dir,
        user: rc.user.unwrap_or_default(),
        enclave: settings.enclave,
        certificates: settings.certificates.clone(),
        trusted_files,
        symlinks,
        excluded_paths: excluded,
    })
}

/// Builds the enclave layer: a reproducible tar (sorted entries, zero times and owners, ustar
/// headers) compressed with a fixed gzip header. Returns (gzip bytes, diff id).
pub fn enclave_layer(
    launcher: &[u8],
    manifest: &[u8],
    sigstruct: &[u8],
) -> Result<(Vec<u8>, Digest)> {
    let io_err = |e: std::io::Error| Error::io("build", "enclave layer", e);
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    let mut add =
        |path: &str, data: &[u8], mode: u32, kind: tar::EntryType| -> std::io::Result<()> {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_path(path)?;
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_username("")?;
            h.set_groupname("")?;
            h.set_cksum();
            tar.append(&h, data)
        };
    add("opt/ccm/", &[], 0o755, tar::EntryType::Directory).map_err(io_err)?;
    add("opt/ccm/bin/", &[], 0o755, tar::EntryType::Directory).map_err(io_err)?;
    add(
        LAUNCHER_PATH.trim_start_matches('/'),
        launcher,
        0o755,
        tar::EntryType::Regular,
    )
    .map_err(io_err)?;
    add(
        MANIFEST_PATH.trim_start_matches('/'),
        manifest,
        0o444,
        tar::EntryType::Regular,
    )
    .map_err(io_err)?;
    add(
        SIGSTRUCT_PATH.trim_start_matches('/'),
        sigstruct,
        0o444,
        tar::EntryType::Regular,
    )
    .map_err(io_err)?;
    let raw = tar.into_inner().map_err(io_err)?;
    let diff_id = Digest::of(&raw);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&raw).map_err(io_err)?;
    Ok((gz.finish().map_err(io_err)?, diff_id))
}

/// Rewrites the input config: ENTRYPOINT = the launcher, CMD removed, labels added, the new
/// layer's diff id and a history entry appended. Everything else is kept.
fn rewrite_config(
    input: &[u8],
    labels: &BTreeMap<String, String>,
    diff_id: Digest,
) -> Result<Vec<u8>> {
    let mut cfg: Value =
        serde_json::from_slice(input).map_err(|e| Error::json("image config", e))?;
    let root = cfg
        .as_object_mut()
        .ok_or_else(|| Error::invalid("image config", "not a JSON object"))?;
    let rc = root
        .entry("config")
        .or_insert_with(|| Value::Object(Default::default()));
    if rc.is_null() {
        *rc = Value::Object(Default::default());
    }
    let rc = rc
        .as_object_mut()
        .ok_or_else(|| Error::invalid("image config", "config is not an object"))?;
    rc.insert("Entrypoint".into(), Value::from(vec![LAUNCHER_PATH]));
    rc.remove("Cmd");
    let lbl = rc
        .entry("Labels")
        .or_insert_with(|| Value::Object(Default::default()));
    if lbl.is_null() {
        *lbl = Value::Object(Default::default());
    }
    let lbl = lbl
        .as_object_mut()
        .ok_or_else(|| Error::invalid("image config", "Labels is not an object"))?;
    for (k, v) in labels {
        lbl.insert(k.clone(), Value::from(v.as_str()));
    }
    let diff_ids = root
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error::invalid("image config", "no rootfs.diff_ids"))?;
    diff_ids.push(Value::from(diff_id.to_string()));
    if let Some(history) = root.get_mut("history").and_then(Value::as_array_mut) {
        history.push(serde_json::json!({
            "created_by": "ccm convert",
            "comment": "enclave launcher, manifest and SIGSTRUCT"
        }));
    }
    Ok(sorted_json(&cfg))
}

/// Compact JSON with object keys sorted by bytes, independent of `serde_json`'s map ordering.
pub fn sorted_json(v: &Value) -> Vec<u8> {
    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                out.push(b'{');
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut *out, k);
                    out.push(b':');
                    write(v, out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(item, out);
                }
                out.push(b']');
            }
            scalar => {
                let _ = serde_json::to_writer(&mut *out, scalar);
            }
        }
    }
    let mut out = Vec::new();
    write(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enclave_layer_is_reproducible() {
        let (a, da) = enclave_layer(b"launcher", b"{}", &[1; 1808]).unwrap();
        let (b, db) = enclave_layer(b"launcher", b"{}", &[1; 1808]).unwrap();
        assert_eq!((a.clone(), da), (b, db));
        assert_eq!(
            &a[..10],
            &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255],
            "fixed gzip header"
        );
        let scan = scan_layer(&a[..], oci::Compression::Gzip, true).unwrap();
        let paths: Vec<_> = scan.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "opt/ccm/",
                "opt/ccm/bin/",
                "opt/ccm/bin/ccm-launch",
                "opt/ccm/enclave.json",
                "opt/ccm/enclave.sig"
            ]
        );
        assert_eq!(scan.diff_id, Some(da));
    }

    #[test]
    fn config_rewrite_keeps_unknown_fields() {
        let input = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["/app"],"Env":["A=1"],"Zed":1},"rootfs":{"type":"layers","diff_ids":[]},"history":[],"x-extra":{"b":1,"a":2}}"#;
        let labels = [("k".to_owned(), "v".to_owned())].into();
        let out = rewrite_config(input, &labels, Digest::of(b"")).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""config":{"Entrypoint":["/opt/ccm/bin/ccm-launch"],"Env":["A=1"],"Labels":{"k":"v"},"Zed":1}"#), "{text}");
        assert!(text.contains(r#""x-extra":{"a":2,"b":1}"#), "{text}");
        assert!(!text.contains("Cmd"));
        assert!(text.contains("ccm convert"));
    }

    #[test]
    fn sigstruct_dates() {
        assert_eq!(sigstruct_date(Some("2023-11-05T10:00:00Z")), (2023, 11, 5));
        assert_eq!(sigstruct_date(Some("garbage")), (1970, 1, 1));
        assert_eq!(sigstruct_date(None), (1970, 1, 1));
    }
}
