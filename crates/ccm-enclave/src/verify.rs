//! Verification of the trusted files on disk against the manifest.
//!
//! Each file is opened without following a final symlink (`O_NOFOLLOW`), its type, size and mode
//! are read from the open descriptor (so what is hashed is what was checked), and its content is
//! hashed with ring's SHA-256 (SHA-NI / AVX2 when present). Files are spread over worker threads;
//! the reported failure is always the first mismatching entry in manifest order, whatever the
//! thread timing, so the error is deterministic.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::error::{Error, FileProblem};
use crate::manifest::{Manifest, Sha256Hex};

/// Read buffer per worker.
const BUF: usize = 1024 * 1024;

/// Counts from a successful verification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyStats {
    /// Regular files verified.
    pub files: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// Symlinks verified.
    pub symlinks: u64,
}

/// Options for [`verify_trusted_files`].
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    /// Worker threads (0: one per available CPU, at most 8).
    pub threads: usize,
}

fn type_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

fn not_found_is_missing(e: io::Error) -> FileProblem {
    if e.kind() == io::ErrorKind::NotFound {
        FileProblem::Missing
    } else {
        FileProblem::Io(e)
    }
}

/// `root` joined with an absolute manifest path.
fn on_disk(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn check_file(
    root: &Path,
    f: &crate::manifest::TrustedFile,
    buf: &mut [u8],
) -> Result<u64, FileProblem> {
    let path = on_disk(root, &f.path);
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                FileProblem::WrongType {
                    expected: "regular file",
                    found: "symlink",
                }
            } else {
                not_found_is_missing(e)
            }
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(FileProblem::WrongType {
            expected: "regular file",
            found: type_name(meta.file_type()),
        });
    }
    if meta.len() != f.size {
        return Err(FileProblem::Size {
            expected: f.size,
            actual: meta.len(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode != f.mode {
        return Err(FileProblem::Mode {
            expected: f.mode,
            actual: mode,
        });
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut reader = file;
    let mut total = 0u64;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FileProblem::Io(e)),
        };
        ctx.update(buf.get(..n).unwrap_or(&[]));
        total = total.saturating_add(n as u64);
    }
    if total != f.size {
        return Err(FileProblem::Size {
            expected: f.size,
            actual: total,
        });
    }
    let mut actual = [0u8; 32];
    actual.copy_from_slice(ctx.finish().as_ref());
    if actual != f.sha256.0 {
        return Err(FileProblem::Content {
            expected: f.sha256.to_string(),
            actual: Sha256Hex(actual).to_string(),
        });
    }
    Ok(total)
}

fn check_symlink(root: &Path, s: &crate::manifest::Symlink) -> Result<(), FileProblem> {
    let path = on_disk(root, &s.path);
    let meta = std::fs::symlink_metadata(&path).map_err(not_found_is_missing)?;
    if !meta.file_type().is_symlink() {
        return Err(FileProblem::WrongType {
            expected: "symlink",
            found: type_name(meta.file_type()),
        });
    }
    let target = std::fs::read_link(&path)?;
    let target = target.to_string_lossy();
    if target != s.target {
        return Err(FileProblem::Target {
            expected: s.target.clone(),
            actual: target.into_owned(),
        });
    }
    Ok(())
}

/// Verifies every trusted file and symlink of `manifest` under `root` (`/` inside the container).
/// Fails with [`Error::TrustedFile`] naming the first entry (in manifest order: files, then
/// symlinks) that differs.
pub fn verify_trusted_files(
    root: &Path,
    manifest: &Manifest,
    opts: VerifyOptions,
) -> Result<VerifyStats, Error> {
    let files = &manifest.trusted_files;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8),
        n => n,
    }
    .clamp(1, files.len().max(1));

    let next = AtomicUsize::new(0);
    // Index of the first failure found so far; work past it is skipped.
    let first_bad = AtomicUsize::new(usize::MAX);
    let failure: Mutex<Option<(usize, FileProblem)>> = Mutex::new(None);
    let bytes = AtomicU64::new(0);

    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut buf = vec![0u8; BUF];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= files.len() || i > first_bad.load(Ordering::Relaxed) {
                        break;
                    }
                    let Some(f) = files.get(i) else { break };
                    match check_file(root, f, &mut buf) {
                        Ok(n) => {
                            bytes.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(problem) => {
                            first_bad.fetch_min(i, Ordering::Relaxed);
                            if let Ok(mut slot) = failure.lock()
                                && slot.as_ref().is_none_or(|(j, _)| i < *j)
                            {
                                *slot = Some((i, problem));
                            }
                        }
                    }
                }
            });
        }
    });

    if let Some((i, problem)) = failure.into_inner().ok().flatten() {
        let path = files.get(i).map(|f| f.path.clone()).unwrap_or_default();
        return Err(Error::TrustedFile { path, problem });
    }
    for s in &manifest.symlinks {
        check_symlink(root, s).map_err(|problem| Error::TrustedFile {
            path: s.path.clone(),
            problem,
        })?;
    }
    Ok(VerifyStats {
        files: files.len() as u64,
        bytes: bytes.into_inner(),
        symlinks: manifest.symlinks.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Symlink, TrustedFile, tests::sample};
    use std::os::unix::fs::PermissionsExt;

    fn setup() -> (tempfile::TempDir, Manifest) {
        let dir = tempfile::tempdir().unwrap();
        let mut m = sample();
        m.trusted_files.clear();
        m.symlinks.clear();
        for i in 0..50u32 {
            let rel = format!("/data/f{i:03}");
            let content = vec![i as u8; (i as usize) * 1000 + 1];
            let p = dir.path().join(rel.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
            let mut sha = [0u8; 32];
            sha.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &content).as_ref());
            m.trusted_files.push(TrustedFile {
                path: rel,
                size: content.len() as u64,
                mode: 0o640,
                sha256: Sha256Hex(sha),
            });
        }
        std::os::unix::fs::symlink("data/f001", dir.path().join("link")).unwrap();
        m.symlinks.push(Symlink {
            path: "/link".into(),
            target: "data/f001".into(),
        });
        (dir, m)
    }

    fn problem(root: &Path, m: &Manifest) -> (String, String) {
        match verify_trusted_files(root, m, VerifyOptions { threads: 2 }) {
            Err(Error::TrustedFile { path, problem }) => (path, problem.to_string()),
            other => panic!("expected a trusted file error, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_measured_tree() {
        let (dir, m) = setup();
        let stats = verify_trusted_files(dir.path(), &m, VerifyOptions::default()).unwrap();
        assert_eq!((stats.files, stats.symlinks), (50, 1));
        assert_eq!(
            stats.bytes,
            m.trusted_files.iter().map(|f| f.size).sum::<u64>()
        );
    }

    #[test]
    fn names_the_first_mismatch() {
        let (dir, m) = setup();
        // Same size, different content, in two files: the earlier one is reported.
        for name in ["data/f040", "data/f020"] {
            let p = dir.path().join(name);
            let mut c = std::fs::read(&p).unwrap();
            c[0] ^= 0xff;
            std::fs::write(&p, c).unwrap();
        }
        let (path, why) = problem(dir.path(), &m);
        assert_eq!(path, "/data/f020");
        assert!(why.contains("content SHA-256"), "{why}");
    }

    #[test]
    fn detects_size_mode_type_missing_and_symlinks() {
        let (dir, m) = setup();
        let p = dir.path().join("data/f005");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            problem(dir.path(), &m),
            ("/data/f005".into(), "mode is 0777, expected 0640".into())
        );
        std::fs::remove_file(&p).unwrap();
        assert_eq!(
            problem(dir.path(), &m),
            ("/data/f005".into(), "missing".into())
        );
        std::os::unix::fs::symlink("f006", &p).unwrap();
        assert!(problem(dir.path(), &m).1.contains("symlink"));
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, b"short").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(problem(dir.path(), &m).1.starts_with("size is 5 bytes"));
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        assert!(problem(dir.path(), &m).1.contains("directory"));
        std::fs::remove_dir(&p).unwrap();

        let mut m2 = m.clone();
        m2.trusted_files.remove(5);
        std::fs::remove_file(dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("elsewhere", dir.path().join("link")).unwrap();
        let (path, why) = problem(dir.path(), &m2);
        assert_eq!(path, "/link");
        assert!(why.contains("elsewhere"), "{why}");
    }
}
