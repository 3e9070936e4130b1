//! Streaming layer readers: decompress, walk the tar entries, hash every regular file, and either
//! record the entries (conversion) or write them under a root directory (`ccm run`).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::digest::{Digest, Hasher};
use crate::error::LayerError;
use crate::oci::Compression;
use crate::tree::{Action, Entry, EntryKind, FileTree};

/// Read buffer for file contents.
const BUF: usize = 256 * 1024;

/// A reader that counts, and optionally hashes, everything read through it (the layer's diff id).
struct HashingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    len: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(buf.get(..n).unwrap_or(&[]));
        }
        self.len = self.len.saturating_add(n as u64);
        Ok(n)
    }
}

/// What scanning a layer found.
#[derive(Debug)]
pub struct LayerScan {
    /// The entries in archive order, regular files with size and SHA-256.
    pub entries: Vec<Entry>,
    /// SHA-256 of the uncompressed tar stream, when requested.
    pub diff_id: Option<Digest>,
    /// Size of the uncompressed tar stream.
    pub uncompressed_size: u64,
}

fn decompressor<'a, R: Read + 'a>(reader: R, compression: Compression) -> Box<dyn Read + 'a> {
    match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(MultiGzDecoder::new(reader)),
    }
}

fn utf8(bytes: &[u8]) -> Result<String, LayerError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| LayerError::NonUtf8 {
        path: String::from_utf8_lossy(bytes).into_owned(),
    })
}

/// Reads one tar entry's header into an [`Entry`] (file size and hash left for the caller).
/// `None` for archive-level records that create nothing (global PAX headers).
fn entry_of<R: Read>(e: &tar::Entry<'_, R>) -> Result<Option<Entry>, LayerError> {
    let h = e.header();
    let path = utf8(&e.path_bytes())?;
    let link = || -> Result<String, LayerError> {
        match e.link_name_bytes() {
            Some(b) => utf8(&b),
            None => Err(LayerError::Read(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("link entry {path:?} has no target"),
            ))),
        }
    };
    use tar::EntryType as T;
    let kind = match h.entry_type() {
        T::Regular | T::Continuous | T::GNUSparse => EntryKind::File {
            size: 0,
            sha256: None,
        },
        T::Directory => EntryKind::Dir,
        T::Symlink => EntryKind::Symlink { target: link()? },
        T::Link => EntryKind::HardLink { target: link()? },
        T::Char | T::Block | T::Fifo => EntryKind::Special,
        T::XGlobalHeader => return Ok(None),
        other => {
            return Err(LayerError::UnsupportedEntry {
                path,
                kind: format!("{other:?}"),
            });
        }
    };
    let mode = h.mode().map_err(LayerError::Read)?;
    let uid = h.uid().map_err(LayerError::Read)?;
    let gid = h.gid().map_err(LayerError::Read)?;
    Ok(Some(Entry {
        path,
        kind,
        mode,
        uid,
        gid,
    }))
}

/// Drains what follows the end-of-archive marker so the diff id covers the whole stream.
fn drain(mut r: impl Read) -> Result<(), LayerError> {
    io::copy(&mut r, &mut io::sink())
        .map_err(LayerError::Read)
        .map(|_| ())
}

/// Reads a whole layer, hashing every regular file, without writing anything. With `diff_id`,
/// the uncompressed stream is hashed too (one more SHA-256 pass over the layer).
pub fn scan_layer(
    reader: impl Read,
    compression: Compression,
    diff_id: bool,
) -> Result<LayerScan, LayerError> {
    let hashing = HashingReader {
        inner: decompressor(reader, compression),
        hasher: diff_id.then(Hasher::new),
        len: 0,
    };
    let mut archive = tar::Archive::new(hashing);
    let mut entries = Vec::new();
    let mut buf = vec![0u8; BUF];
    {
        let iter = archive.entries().map_err(LayerError::Read)?;
        for e in iter {
            let mut e = e.map_err(LayerError::Read)?;
            let Some(mut entry) = entry_of(&e)? else {
                continue;
            };
            if let EntryKind::File { .. } = entry.kind {
                let mut h = Hasher::new();
                loop {
                    let n = e.read(&mut buf).map_err(LayerError::Read)?;
                    if n == 0 {
                        break;
                    }
                    h.update(buf.get(..n).unwrap_or(&[]));
                }
                let size = h.len();
                entry.kind = EntryKind::File {
                    size,
                    sha256: Some(*h.finish().as_bytes()),
                };
            }
            entries.push(entry);
        }
    }
    let mut inner = archive.into_inner();
    drain(&mut inner)?;
    Ok(LayerScan {
        entries,
        diff_id: inner.hasher.map(Hasher::finish),
        uncompressed_size: inner.len,
    })
}

/// Applies a layer to `tree` and writes it under `root` (which the caller created empty before
/// the first layer). Returns the layer's diff id.
///
/// Every path written is `root` joined with a canonical path from the tree model, whose parents
/// are directories this function created, so no write follows a symlink out of `root`.
pub fn extract_layer(
    reader: impl Read,
    compression: Compression,
    tree: &mut FileTree,
    root: &Path,
) -> Result<Digest, LayerError> {
    tree.begin_layer();
    let hashing = HashingReader {
        inner: decompressor(reader, compression),
        hasher: Some(Hasher::new()),
        len: 0,
    };
    let mut archive = tar::Archive::new(hashing);
    {
        let iter = archive.entries().map_err(LayerError::Read)?;
        for e in iter {
            let mut e = e.map_err(LayerError::Read)?;
            let Some(mut entry) = entry_of(&e)? else {
                continue;
            };
            if let EntryKind::File { size, .. } = &mut entry.kind {
                *size = e.size();
            }
            let actions = tree.apply(&entry)?;
            for action in actions {
                perform(root, &entry.path, action, &mut e)?;
            }
        }
    }
    let mut inner = archive.into_inner();
    drain(&mut inner)?;
    Ok(inner.hasher.unwrap_or_default().finish())
}

fn write_err(entry: &str) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Write {
        path: entry.to_owned(),
        source,
    }
}

/// Sets ownership; without the privilege to do so (not root), ownership is left as is.
fn chown(path: &Path, uid: u64, gid: u64) -> io::Result<()> {
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "uid/gid out of range",
        ));
    };
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        r => r,
    }
}

fn remove_path(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn perform(
    root: &Path,
    entry: &str,
    action: Action,
    content: &mut impl Read,
) -> Result<(), LayerError> {
    let at = |p: &str| -> PathBuf { root.join(p) };
    let err = write_err(entry);
    let result = (|| -> io::Result<()> {
        match action {
            Action::Remove(p) => remove_path(&at(&p)),
            Action::Dir {
                path,
                mode,
                uid,
                gid,
            } => {
                let p = at(&path);
                match fs::create_dir(&p) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    r => r?,
                }
                chown(&p, uid, gid)?;
                fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            }
            Action::File {
                path,
                mode,
                uid,
                gid,
            } => {
                let p = at(&path);
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&p)?;
                io::copy(content, &mut f)?;
                drop(f);
                chown(&p, uid, gid)?;
                fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            }
            Action::Symlink {
                path,
                target,
                uid,
                gid,
            } => {
                let p = at(&path);
                std::os::unix::fs::symlink(&target, &p)?;
                chown(&p, uid, gid)
            }
            Action::HardLink { path, target } => fs::hard_link(at(&target), at(&path)),
            Action::Special(path) => {
                tracing::debug!(
                    path,
                    "device node or FIFO not created (the runtime provides /dev)"
                );
                Ok(())
            }
        }
    })();
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o640
            });
            h.set_size(data.len() as u64);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            // Bypass the builder's own path checks so hostile names can be tested.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn scan_hashes_files_and_diff_id() {
        use tar::EntryType as T;
        let raw = tar_of(&[
            ("d/", T::Directory, b"", ""),
            ("d/f", T::Regular, b"hello", ""),
            ("d/l", T::Symlink, b"", "f"),
        ]);
        let scan = scan_layer(&raw[..], Compression::None, true).unwrap();
        assert_eq!(scan.diff_id, Some(Digest::of(&raw)));
        assert_eq!(scan.uncompressed_size, raw.len() as u64);
        let EntryKind::File { size, sha256 } = &scan.entries[1].kind else {
            panic!()
        };
        assert_eq!(
            (*size, sha256.unwrap()),
            (5, *Digest::of(b"hello").as_bytes())
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &raw).unwrap();
        let scan2 = scan_layer(&gz.finish().unwrap()[..], Compression::Gzip, false).unwrap();
        assert_eq!(scan2.diff_id, None);
        assert_eq!(
            (scan2.uncompressed_size, scan2.entries),
            (scan.uncompressed_size, scan.entries)
        );
        assert!(matches!(
            scan_layer(&b"garbage that is not gzip"[..], Compression::Gzip, true),
            Err(LayerError::Read(_))
        ));
    }

    #[test]
    fn extract_writes_tree_and_refuses_escapes() {
        use tar::EntryType as T;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        fs::create_dir(&root).unwrap();
        let mut tree = FileTree::new();
        let l1 = tar_of(&[
            ("usr/bin/", T::Directory, b"", ""),
            ("usr/bin/tool", T::Regular, b"#!/bin/sh\n", ""),
            ("bin", T::Symlink, b"", "usr/bin"),
            ("usr/bin/hard", T::Link, b"", "usr/bin/tool"),
            ("gone", T::Regular, b"x", ""),
        ]);
        extract_layer(&l1[..], Compression::None, &mut tree, &root).unwrap();
        let l2 = tar_of(&[
            (".wh.gone", T::Regular, b"", ""),
            ("bin/new", T::Regular, b"n", ""),
        ]);
        extract_layer(&l2[..], Compression::None, &mut tree, &root).unwrap();
        assert_eq!(fs::read(root.join("usr/bin/new")).unwrap(), b"n");
        assert_eq!(fs::read(root.join("usr/bin/hard")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(
            fs::metadata(root.join("usr/bin/tool"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o640
        );
        assert!(!root.join("gone").exists());

        let evil = tar_of(&[
            ("esc", T::Symlink, b"", "../../.."),
            ("esc/pwned", T::Regular, b"x", ""),
        ]);
        let err = extract_layer(&evil[..], Compression::None, &mut tree, &root).unwrap_err();
        assert!(matches!(err, LayerError::EscapesRoot { .. }), "{err}");
        assert!(
            !dir.path().join("pwned").exists()
                && !dir.path().parent().unwrap().join("pwned").exists()
        );
        let dotdot = tar_of(&[("../outside", T::Regular, b"x", "")]);
        let err = extract_layer(&dotdot[..], Compression::None, &mut tree, &root).unwrap_err();
        assert!(matches!(err, LayerError::DotDot { .. }), "{err}");
        assert!(!dir.path().join("outside").exists());
    }
}
