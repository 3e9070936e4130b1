//! Container test support: finding `runc`, compiling small statically linked test programs, and
//! building test images (OCI image layouts and `docker save` archives) from a list of layer
//! entries, including hostile ones (`../` names, escaping symlinks) that tar builders refuse to
//! write.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::Error;

/// The `runc` binary (`$CCM_TEST_RUNC` or `runc` on the `PATH`/sbin).
pub fn runc() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("CCM_TEST_RUNC") {
        return Ok(PathBuf::from(p));
    }
    crate::registry::find_in_path("runc").ok_or(Error::Missing {
        program: "runc",
        package: "runc",
    })
}

/// Compiles C `source` into a statically linked executable at `out` with the system C compiler
/// (`cc -static -O2`; Debian's `gcc` + `libc6-dev`).
pub fn compile_static_c(source: &str, out: &Path) -> Result<(), Error> {
    let src = out.with_extension("c");
    std::fs::write(&src, source).map_err(|e| Error::Io {
        path: src.clone(),
        source: e,
    })?;
    let output = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(out)
        .arg(&src)
        .output()
        .map_err(|e| Error::Spawn {
            program: "cc".into(),
            source: e,
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            program: "cc -static".into(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

/// One entry of a test layer.
#[derive(Clone, Debug)]
pub enum Entry {
    /// A directory.
    Dir {
        /// Path without a leading `/`.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Path without a leading `/`.
        path: String,
        /// Content.
        data: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
    /// A symlink.
    Symlink {
        /// Path.
        path: String,
        /// Target.
        target: String,
    },
    /// A hard link.
    HardLink {
        /// Path.
        path: String,
        /// Linked entry.
        target: String,
    },
    /// `.wh.NAME` hiding `path` from lower layers.
    Whiteout {
        /// The hidden path.
        path: String,
    },
    /// `.wh..wh..opq` in directory `path`.
    Opaque {
        /// The directory.
        path: String,
    },
}

impl Entry {
    /// A regular file with mode 0644.
    pub fn file(path: &str, data: impl Into<Vec<u8>>) -> Self {
        Entry::File {
            path: path.into(),
            data: data.into(),
            mode: 0o644,
        }
    }

    /// An executable file (0755).
    pub fn exe(path: &str, data: impl Into<Vec<u8>>) -> Self {
        Entry::File {
            path: path.into(),
            data: data.into(),
            mode: 0o755,
        }
    }

    /// A directory with mode 0755.
    pub fn dir(path: &str) -> Self {
        Entry::Dir {
            path: path.into(),
            mode: 0o755,
        }
    }

    /// A symlink.
    pub fn symlink(path: &str, target: &str) -> Self {
        Entry::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }
}

/// Appends a header whose name bytes are written verbatim (no checks), then the data.
fn raw_append(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
    link: &str,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    let bytes = name.as_bytes();
    if bytes.len() > 100 {
        return Err(std::io::Error::other(format!(
            "test entry name {name:?} longer than 100 bytes"
        )));
    }
    if let Some(slot) = h.as_old_mut().name.get_mut(..bytes.len()) {
        slot.copy_from_slice(bytes);
    }
    if !link.is_empty() {
        let lb = link.as_bytes();
        if lb.len() > 100 {
            return Err(std::io::Error::other(format!(
                "test link {link:?} longer than 100 bytes"
            )));
        }
        if let Some(slot) = h.as_old_mut().linkname.get_mut(..lb.len()) {
            slot.copy_from_slice(lb);
        }
    }
    h.set_cksum();
    b.append(&h, data)
}

/// The uncompressed tar of a layer.
pub fn layer_tar(entries: &[Entry]) -> Result<Vec<u8>, Error> {
    let mut b = tar::Builder::new(Vec::new());
    let err = |e| Error::Io {
        path: "test layer".into(),
        source: e,
    };
    for e in entries {
        match e {
            Entry::Dir { path, mode } => {
                let name = if path.ends_with('/') {
                    path.clone()
                } else {
                    format!("{path}/")
                };
                raw_append(&mut b, &name, tar::EntryType::Directory, *mode, &[], "")
            }
            Entry::File { path, data, mode } => {
                raw_append(&mut b, path, tar::EntryType::Regular, *mode, data, "")
            }
            Entry::Symlink { path, target } => {
                raw_append(&mut b, path, tar::EntryType::Symlink, 0o777, &[], target)
            }
            Entry::HardLink { path, target } => {
                raw_append(&mut b, path, tar::EntryType::Link, 0o644, &[], target)
            }
            Entry::Whiteout { path } => {
                let (dir, name) = path
                    .rsplit_once('/')
                    .map_or(("", path.as_str()), |(d, n)| (d, n));
                let wh = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                raw_append(&mut b, &wh, tar::EntryType::Regular, 0o644, &[], "")
            }
            Entry::Opaque { path } => raw_append(
                &mut b,
                &format!("{}/.wh..wh..opq", path.trim_end_matches('/')),
                tar::EntryType::Regular,
                0o644,
                &[],
                "",
            ),
        }
        .map_err(err)?;
    }
    b.into_inner().map_err(err)
}

fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn gzip(data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data)
        .and_then(|_| gz.finish())
        .map_err(|e| Error::Io {
            path: "gzip".into(),
            source: e,
        })
}

/// A test image: layers plus the runtime config.
#[derive(Clone, Debug, Default)]
pub struct TestImage {
    /// Layers, bottom first.
    pub layers: Vec<Vec<Entry>>,
    /// ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    pub cmd: Option<Vec<String>>,
    /// ENV (`K=V`).
    pub env: Vec<String>,
    /// WORKDIR.
    pub working_dir: Option<String>,
    /// USER.
    pub user: Option<String>,
    /// `created` (RFC 3339), fixed so images are reproducible.
    pub created: Option<String>,
}

fn write_blob(dir: &Path, data: &[u8]) -> Result<String, Error> {
    let hex = sha256_hex(data);
    let path = dir.join("blobs/sha256").join(&hex);
    std::fs::write(&path, data).map_err(|e| Error::Io { path, source: e })?;
    Ok(format!("sha256:{hex}"))
}

impl TestImage {
    fn config_json(&self, diff_ids: &[String]) -> serde_json::Value {
        let mut cfg = serde_json::Map::new();
        if let Some(ep) = &self.entrypoint {
            cfg.insert("Entrypoint".into(), json!(ep));
        }
        if let Some(cmd) = &self.cmd {
            cfg.insert("Cmd".into(), json!(cmd));
        }
        cfg.insert("Env".into(), json!(self.env));
        if let Some(w) = &self.working_dir {
            cfg.insert("WorkingDir".into(), json!(w));
        }
        if let Some(u) = &self.user {
            cfg.insert("User".into(), json!(u));
        }
        json!({
            "architecture": "amd64",
            "os": "linux",
            "created": self.created.clone().unwrap_or_else(|| "2024-01-02T03:04:05Z".into()),
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": self.layers.iter().map(|_| json!({"created_by": "ccm-testkit"})).collect::<Vec<_>>()
        })
    }

    /// Writes the image as an OCI image layout in `dir` (created), its manifest named `name`
    /// (`org.opencontainers.image.ref.name`). Layers are gzip-compressed. Returns the manifest
    /// digest.
    pub fn write_oci_layout(&self, dir: &Path, name: &str) -> Result<String, Error> {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| Error::Io {
            path: blobs.clone(),
            source: e,
        })?;
        let mut diff_ids = Vec::new();
        let mut layer_descs = Vec::new();
        for entries in &self.layers {
            let tar = layer_tar(entries)?;
            diff_ids.push(format!("sha256:{}", sha256_hex(&tar)));
            let gz = gzip(&tar)?;
            let digest = write_blob(dir, &gz)?;
            layer_descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": gz.len()}));
        }
        let config = serde_json::to_vec(&self.config_json(&diff_ids)).map_err(|e| Error::Io {
            path: "config".into(),
            source: e.into(),
        })?;
        let config_digest = write_blob(dir, &config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layer_descs
        });
        let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::Io {
            path: "manifest".into(),
            source: e.into(),
        })?;
        let manifest_digest = write_blob(dir, &manifest)?;
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": name}
            }]
        });
        for (file, content) in [
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            (
                "index.json",
                serde_json::to_vec(&index).map_err(|e| Error::Io {
                    path: "index".into(),
                    source: e.into(),
                })?,
            ),
        ] {
            let p = dir.join(file);
            std::fs::write(&p, content).map_err(|e| Error::Io { path: p, source: e })?;
        }
        Ok(manifest_digest)
    }

    /// Writes the image as a `docker save` archive (uncompressed `<id>/layer.tar` layers,
    /// `manifest.json` with `repo_tag`).
    pub fn write_docker_archive(&self, path: &Path, repo_tag: &str) -> Result<(), Error> {
        let err = |e| Error::Io {
            path: path.to_owned(),
            source: e,
        };
        let mut b = tar::Builder::new(std::fs::File::create(path).map_err(err)?);
        let add =
            |b: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8]| -> std::io::Result<()> {
                let mut h = tar::Header::new_ustar();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(1_700_000_000);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, name, data)
            };
        let mut diff_ids = Vec::new();
        let mut layer_names = Vec::new();
        for entries in &self.layers {
            let tar = layer_tar(entries)?;
            let hex = sha256_hex(&tar);
            let name = format!("{hex}/layer.tar");
            add(&mut b, &name, &tar).map_err(err)?;
            diff_ids.push(format!("sha256:{hex}"));
            layer_names.push(name);
        }
        let config = serde_json::to_vec(&self.config_json(&diff_ids)).map_err(|e| err(e.into()))?;
        let config_name = format!("{}.json", sha256_hex(&config));
        add(&mut b, &config_name, &config).map_err(err)?;
        let manifest =
            json!([{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]);
        add(
            &mut b,
            "manifest.json",
            &serde_json::to_vec(&manifest).map_err(|e| err(e.into()))?,
        )
        .map_err(err)?;
        b.into_inner().and_then(|mut f| f.flush()).map_err(err)
    }
}
