//! File helpers for platform directories: size-capped reads, private (0600) key files.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::Error;

/// Largest file read from a platform directory.
const MAX_FILE_LEN: u64 = 32 * 1024 * 1024;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a whole file, refusing files above the size cap.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Error> {
    let len = fs::metadata(path).map_err(io(path))?.len();
    if len > MAX_FILE_LEN {
        return Err(Error::PlatformFile {
            path: path.to_path_buf(),
            reason: format!("{len} bytes is larger than the {MAX_FILE_LEN}-byte limit"),
        });
    }
    fs::read(path).map_err(io(path))
}

/// Reads a UTF-8 text file.
pub(crate) fn read_text(path: &Path) -> Result<String, Error> {
    String::from_utf8(read(path)?).map_err(|_| Error::PlatformFile {
        path: path.to_path_buf(),
        reason: "not UTF-8 text".into(),
    })
}

/// Writes a public file (mode 0644), replacing any previous content.
pub(crate) fn write_public(path: &Path, data: &[u8]) -> Result<(), Error> {
    write_mode(path, data, 0o644)
}

/// Writes a private file (mode 0600), replacing any previous content.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    write_mode(path, data, 0o600)
}

fn write_mode(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    // Write to a temporary name and rename, so readers never see a half-written file and the
    // mode is right from the first byte.
    let tmp = path.with_extension("tmp-write");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io(&tmp))?;
    file.write_all(data).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// Creates `dir` (mode 0700 for new directories) and refuses a directory that already holds a
/// platform, so an existing platform's keys are never overwritten.
pub(crate) fn prepare_dir(dir: &Path, marker: &str) -> Result<(), Error> {
    if dir.join(marker).exists() {
        return Err(Error::PlatformDir {
            path: dir.to_path_buf(),
            reason: format!("already holds a simulated platform ({marker} exists)"),
        });
    }
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    } else if !dir.is_dir() {
        return Err(Error::PlatformDir {
            path: dir.to_path_buf(),
            reason: "exists and is not a directory".into(),
        });
    }
    Ok(())
}

/// Creates a subdirectory with mode 0700.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

use std::os::unix::fs::DirBuilderExt;
