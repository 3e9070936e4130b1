//! The seed journey's application: a real Python Flask server image built from Debian's packages,
//! cached outside the clone, packaged as a reproducible one-layer OCI image and pushed to a
//! test [`Registry`].
//!
//! # What the image is
//!
//! * **Root file system**: `debootstrap --variant=minbase --include=python3-flask bookworm DIR
//!   http://deb.debian.org/debian` (mirror: `$CCM_DEBIAN_MIRROR`; the Release file is checked
//!   against `/usr/share/keyrings/debian-archive-keyring.gpg`). It needs root and network access
//!   to the Debian mirror; an unreachable mirror is an error that names the mirror ([`FlaskError::
//!   MirrorUnreachable`]), never a skipped test.
//! * **Trimmed** as Debian's own slim container images are, and only of what an application image
//!   does not run: downloaded `.deb` files and apt's binary caches (`var/cache/apt`), the package
//!   lists (`var/lib/apt/lists`; `apt-get update` fetches them again), documentation except the
//!   `copyright` files (`usr/share/doc`; the licences stay), manual and info pages
//!   (`usr/share/man`, `usr/share/info`), message translations (`usr/share/locale` except
//!   `locale.alias`: programs speak English), log files (`var/log`), dpkg/debconf `*-old` backups,
//!   ldconfig's auxiliary cache, and the files the container runtime provides: device nodes in
//!   `/dev`, `/etc/hostname`, `/etc/resolv.conf`. The dpkg database is untouched (it still lists
//!   the removed files, as in Debian's slim images), and `/etc/dpkg/dpkg.cfg.d/ccm-minimal` tells
//!   later `apt-get install`s in derived images to leave the same paths out. The result holds
//!   5,023 regular files (118 MiB), 648 directories and 532 symlinks (bookworm, May 2025; trimming
//!   removes 2,374 entries, 131 MiB): every regular file becomes a trusted file when the image
//!   is converted, which makes it a realistic load for measurement and verification.
//! * **Python bytecode** compiled by the packages (`__pycache__/*.pyc`, timestamp-checked) is
//!   recompiled in place by the image's own `python3` with `unchecked-hash` invalidation: the layer
//!   fixes every mtime, which would make timestamp-checked bytecode stale, so Python would
//!   recompile (and rewrite trusted files) at every start. The set of `.pyc` files is unchanged.
//! * **The application**: `/app/app.py` ([`APP_SOURCE`], `assets/flask/app.py`), a Flask server
//!   serving HTTPS on `$APP_PORT` (default 8443) with `$APP_CERT_PATH` / `$APP_KEY_PATH`
//!   (default `/run/cert.pem`, `/run/key.pem`, the paths ccm-launch writes), read after start and
//!   reloaded when they change. Routes: `/` (an HTML page saying "Hello from python-flask" and,
//!   in a converted image, the MRENCLAVE/MRSIGNER/ISVPRODID/ISVSVN read from
//!   `/opt/ccm/enclave.sig`, "in a simulated enclave" when the quote helper's directory holds a
//!   simulated platform's `ccm-sim-cpu.key`), `/healthz` (`ok`), `/identity` (JSON).
//! * **Config**: `ENTRYPOINT ["python3", "/app/app.py"]`, `WORKDIR /app`,
//!   `ENV PATH=… PYTHONUNBUFFERED=1 LANG=C.UTF-8`, exposed port 8443/tcp.
//!
//! # The layer
//!
//! One gzip layer written by [`write_layer`]: a depth-first walk with each directory's entries
//! sorted by name (parents before children), every mtime [`SOURCE_DATE_EPOCH`], numeric uid/gid
//! and mode (including setuid/setgid bits) preserved, no user/group names, symlinks as symlinks,
//! hard links as tar hard links to the first path in walk order, GNU long names, and a gzip header
//! without name or time. The same tree gives the same bytes. Device nodes, FIFOs and sockets are
//! refused with the path named. Extended attributes are not recorded (minbase has none that
//! matter: no file capabilities).
//!
//! # The cache
//!
//! The finished OCI image layout (whose one layer blob is the gzipped rootfs tarball) lives in
//! `<cache>/flask-<key>/`, `<cache>` being `$CCM_CACHE_DIR`, else `/var/cache/ccm-test` for
//! root, else `~/.cache/ccm-test`. `<key>` hashes everything that decides the content: the recipe
//! version, suite, variant, package list, the trimming rules and the application source (not the
//! mirror: any mirror serves the same suite). A build happens in `<cache>/.flask-<key>.build-<pid>/`
//! and is renamed into place; an exclusive `flock` on `<cache>/flask-<key>.lock` makes concurrent
//! test processes wait for one build instead of building twice. Delete the directory to pick up
//! Debian point releases. Measured on a 2-core machine: a cold build takes 100–160 s (debootstrap 90–140 s depending on
//! the mirror, then about 10 s for trimming, bytecode and packing a 122 MiB tar into a 45 MiB gzip
//! layer); a cached lookup takes about 7 ms.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ccm_testkit::Error> {
//! let registry = ccm_testkit::registry::Registry::start_with_auth("alice", "s3cret")?;
//! let pushed = ccm_testkit::flask::push_flask_image(&registry, "python-flask:latest").await?;
//! println!("pushed {} as {}", pushed.reference, pushed.digest);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ccm_image::digest::Hasher;
use ccm_image::oci::{
    Descriptor, ImageIndex, ImageManifest, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST,
    Platform,
};
use ccm_image::{
    Credentials, Destination, Digest, Location, NoProgress, REF_NAME_ANNOTATION, Registries,
    RegistryOptions, Source,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Error;
use crate::registry::Registry;

/// The application, installed as `/app/app.py`.
pub const APP_SOURCE: &str = include_str!("../assets/flask/app.py");
/// The Debian suite.
pub const SUITE: &str = "bookworm";
/// The debootstrap variant.
pub const VARIANT: &str = "minbase";
/// The packages installed on top of the variant.
pub const PACKAGES: &[&str] = &["python3-flask"];
/// The mirror used unless `$CCM_DEBIAN_MIRROR` names another.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// The port the application listens on unless `$APP_PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 8443;
/// The `org.opencontainers.image.ref.name` of the manifest in the cached layout.
pub const REF_NAME: &str = "latest";
/// The modification time of every layer entry (2024-01-01T00:00:00Z).
pub const SOURCE_DATE_EPOCH: u64 = 1_704_067_200;
/// The image config's `created`, the same instant.
const CREATED: &str = "2024-01-01T00:00:00Z";
/// Bumped whenever the recipe changes in a way the other key inputs do not show.
const RECIPE_VERSION: &str = "ccm-flask-image/1";
/// The keyring debootstrap checks the Release file with.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The statistics file inside a cached layout.
const STATS_FILE: &str = "ccm-flask.json";

/// The trimming rules, part of the cache key (see the module docs).
const TRIM_RULES: &str = "var/cache/apt/*; var/lib/apt/lists/* (keep partial/); \
usr/share/doc/** except */copyright; usr/share/man/**; usr/share/info/**; \
usr/share/locale/** except locale.alias; var/log/** files; var/cache/debconf/*-old; \
var/lib/dpkg/*-old; var/cache/ldconfig/aux-cache; dev/*; etc/hostname; etc/resolv.conf; \
pyc unchecked-hash";

/// What `/etc/dpkg/dpkg.cfg.d/ccm-minimal` says, so derived images stay trimmed.
const DPKG_EXCLUDES: &str = "# Written by ccm-testkit's python-flask image: these paths were removed from the\n\
# image (documentation, manual pages, translations); keep them out of later installs too.\n\
path-exclude /usr/share/doc/*\n\
path-include /usr/share/doc/*/copyright\n\
path-exclude /usr/share/man/*\n\
path-exclude /usr/share/info/*\n\
path-exclude /usr/share/locale/*\n\
path-include /usr/share/locale/locale.alias\n";

/// Recompiles every existing `.pyc` under /usr/lib in place with unchecked-hash invalidation.
const RECOMPILE_PYC: &str = r#"
import importlib.util, os, py_compile, sys
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
n = 0
for top in ("/usr/lib",):
    for d, _, files in os.walk(top):
        if os.path.basename(d) != "__pycache__":
            continue
        for f in sorted(files):
            if not f.endswith(".pyc"):
                continue
            pyc = os.path.join(d, f)
            try:
                src = importlib.util.source_from_cache(pyc)
            except ValueError:
                continue
            if not os.path.isfile(src):
                continue
            opt = 2 if ".opt-2." in f else 1 if ".opt-1." in f else 0
            py_compile.compile(src, cfile=pyc, doraise=True, invalidation_mode=mode, optimize=opt)
            n += 1
print(n)
"#;

/// Failures of building, caching or pushing the Flask image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlaskError {
    /// The Debian mirror does not answer.
    #[error(
        "cannot reach the Debian mirror {mirror} ({reason}): building the python-flask test image \
         runs debootstrap, which needs network access to it (set CCM_DEBIAN_MIRROR for another mirror)"
    )]
    MirrorUnreachable {
        /// The mirror URL.
        mirror: String,
        /// What went wrong.
        reason: String,
    },
    /// debootstrap needs root (it creates device nodes and runs package scripts in a chroot).
    #[error(
        "building the python-flask test image runs debootstrap, which needs root (euid is {euid})"
    )]
    NotRoot {
        /// The effective user id.
        euid: u32,
    },
    /// debootstrap failed.
    #[error("debootstrap {suite} from {mirror} failed ({status}); its last output:\n{log}")]
    Debootstrap {
        /// The suite.
        suite: String,
        /// The mirror URL.
        mirror: String,
        /// The exit status.
        status: String,
        /// The tail of its output and of `debootstrap/debootstrap.log`.
        log: String,
    },
    /// A step run inside the new root file system failed.
    #[error("{step} in {root} failed ({status}): {stderr}")]
    Step {
        /// What was run.
        step: &'static str,
        /// The root file system.
        root: PathBuf,
        /// The exit status.
        status: String,
        /// Its standard error.
        stderr: String,
    },
    /// The tree holds a file a layer cannot carry.
    #[error("{path}: {kind} cannot be put into an image layer", path = path.display())]
    SpecialFile {
        /// The file.
        path: PathBuf,
        /// Device node, FIFO or socket.
        kind: &'static str,
    },
    /// A cached image directory is incomplete or unreadable.
    #[error("cached python-flask image {path} is unusable ({reason}); delete it to rebuild", path = path.display())]
    BadCache {
        /// The cache entry.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or pushing the image with ccm-image failed.
    #[error("{what}: {source}")]
    Image {
        /// What was being done.
        what: String,
        /// The cause.
        source: ccm_image::Error,
    },
    /// A blocking build task panicked or was cancelled.
    #[error("the python-flask image build task failed: {0}")]
    Task(String),
}

impl From<FlaskError> for Error {
    fn from(e: FlaskError) -> Self {
        Error::Flask(Box::new(e))
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// The inputs that decide the image's content.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// Debian suite.
    pub suite: String,
    /// Packages on top of minbase.
    pub packages: Vec<String>,
    /// `/app/app.py`.
    pub app_source: String,
    /// The mirror (not part of the cache key).
    pub mirror: String,
}

impl Default for Recipe {
    /// bookworm, `python3-flask`, [`APP_SOURCE`], `$CCM_DEBIAN_MIRROR` or [`DEFAULT_MIRROR`].
    fn default() -> Self {
        Recipe {
            suite: SUITE.into(),
            packages: PACKAGES.iter().map(|p| (*p).to_owned()).collect(),
            app_source: APP_SOURCE.into(),
            mirror: std::env::var("CCM_DEBIAN_MIRROR")
                .ok()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| DEFAULT_MIRROR.into()),
        }
    }
}

impl Recipe {
    /// The cache key: 16 hex digits of SHA-256 over every content-deciding input.
    pub fn key(&self) -> String {
        let mut h = Hasher::new();
        let mut packages = self.packages.clone();
        packages.sort();
        for part in [
            RECIPE_VERSION,
            &self.suite,
            VARIANT,
            &packages.join(","),
            TRIM_RULES,
            DPKG_EXCLUDES,
            RECOMPILE_PYC,
            &self.app_source,
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finish().hex().chars().take(16).collect()
    }
}

/// Figures of a built image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageStats {
    /// Regular files (hard links to an earlier file not counted): the trusted files of a
    /// converted image.
    pub regular_files: u64,
    /// Their total size in bytes.
    pub file_bytes: u64,
    /// Directories.
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Hard links (tar entries pointing at an earlier file).
    pub hard_links: u64,
    /// Files and symlinks removed by trimming.
    pub trimmed_files: u64,
    /// Bytes removed by trimming.
    pub trimmed_bytes: u64,
    /// `.pyc` files recompiled with unchecked-hash invalidation.
    pub recompiled_pyc: u64,
    /// Size of the uncompressed layer tar.
    pub layer_tar_bytes: u64,
    /// Size of the gzip layer blob.
    pub layer_gzip_bytes: u64,
    /// Seconds spent in debootstrap.
    pub debootstrap_seconds: f64,
    /// Seconds of the whole cold build.
    pub build_seconds: f64,
}

/// A built (or cached) python-flask image.
#[derive(Clone, Debug)]
pub struct FlaskImage {
    /// The OCI image layout directory.
    pub layout: PathBuf,
    /// The manifest's ref name in the layout ([`REF_NAME`]).
    pub ref_name: String,
    /// The manifest digest (`sha256:…`).
    pub manifest_digest: String,
    /// The gzip layer's digest.
    pub layer_digest: String,
    /// The uncompressed layer's digest (diff id).
    pub diff_id: String,
    /// Figures recorded when it was built.
    pub stats: ImageStats,
    /// Whether it came from the cache.
    pub cached: bool,
    /// How long this call took (the whole build when not cached).
    pub elapsed: Duration,
}

impl FlaskImage {
    /// The image location for ccm-image and `ccm` commands: `oci:<layout>:latest`.
    pub fn location(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.ref_name)
    }
}

/// The cache root: `$CCM_CACHE_DIR`, else `/var/cache/ccm-test` for root, else
/// `$XDG_CACHE_HOME/ccm-test` or `~/.cache/ccm-test`.
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("CCM_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if euid() == Some(0) {
        return PathBuf::from("/var/cache/ccm-test");
    }
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("ccm-test")
}

/// The effective uid (the owner of `/proc/self`).
fn euid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The default image from the default cache: built on first use, then reused.
pub fn flask_image() -> Result<FlaskImage, Error> {
    build_or_reuse(&Recipe::default(), &cache_root())
}

/// Returns the cached image for `recipe` under `cache`, building it first when absent (one build
/// at a time per key across processes).
pub fn build_or_reuse(recipe: &Recipe, cache: &Path) -> Result<FlaskImage, Error> {
    let started = Instant::now();
    fs::create_dir_all(cache).map_err(io_err(cache))?;
    let key = recipe.key();
    let final_dir = cache.join(format!("flask-{key}"));
    let lock_path = cache.join(format!("flask-{key}.lock"));
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;
    // Anything left by an interrupted build of this key is stale: we hold its lock.
    let stale_prefix = format!(".flask-{key}.build-");
    for entry in fs::read_dir(cache).map_err(io_err(cache))? {
        let entry = entry.map_err(io_err(cache))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&stale_prefix)
        {
            remove_build_dir(&entry.path())?;
        }
    }
    if final_dir.exists() {
        let mut image = read_cached(&final_dir)?;
        image.cached = true;
        image.elapsed = started.elapsed();
        return Ok(image);
    }
    let work = cache.join(format!("{stale_prefix}{}", std::process::id()));
    let result = build(recipe, &work, started);
    let outcome = result.and_then(|mut image| {
        let layout = work.join("oci");
        fs::rename(&layout, &final_dir).map_err(io_err(&final_dir))?;
        image.layout = final_dir.clone();
        Ok(image)
    });
    // The root file system is large; it is not kept (the layer blob is the rootfs tarball).
    let cleanup = remove_build_dir(&work);
    let mut image = outcome?;
    cleanup?;
    image.elapsed = started.elapsed();
    Ok(image)
}

/// Removes a build directory, first unmounting what a killed debootstrap may have left mounted in
/// it (`proc`, `sys`, ...), so the removal never reaches into a mounted file system.
fn remove_build_dir(dir: &Path) -> Result<(), Error> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    // Field 5 is the mount point (octal escapes for spaces etc.; ours have none).
    let mut mounts: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let output = Command::new("umount")
            .args(["--lazy", m])
            .output()
            .map_err(|e| Error::Spawn {
                program: "umount".into(),
                source: e,
            })?;
        if !output.status.success() {
            return Err(Error::Command {
                program: format!("umount --lazy {m}"),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(dir)(e)),
        _ => Ok(()),
    }
}

fn read_cached(dir: &Path) -> Result<FlaskImage, Error> {
    let bad = |reason: String| {
        Error::from(FlaskError::BadCache {
            path: dir.to_owned(),
            reason,
        })
    };
    let stats_path = dir.join(STATS_FILE);
    let text = fs::read(&stats_path).map_err(|e| bad(format!("{STATS_FILE}: {e}")))?;
    let record: CacheRecord =
        serde_json::from_slice(&text).map_err(|e| bad(format!("{STATS_FILE}: {e}")))?;
    for digest in [&record.manifest_digest, &record.layer_digest] {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let blob = dir.join("blobs/sha256").join(hex);
        if !blob.is_file() {
            return Err(bad(format!("blob {digest} missing")));
        }
    }
    Ok(FlaskImage {
        layout: dir.to_owned(),
        ref_name: REF_NAME.into(),
        manifest_digest: record.manifest_digest,
        layer_digest: record.layer_digest,
        diff_id: record.diff_id,
        stats: record.stats,
        cached: true,
        elapsed: Duration::ZERO,
    })
}

/// What a cache entry records beside the layout.
#[derive(Serialize, Deserialize)]
struct CacheRecord {
    recipe_version: String,
    suite: String,
    packages: Vec<String>,
    mirror: String,
    manifest_digest: String,
    layer_digest: String,
    diff_id: String,
    stats: ImageStats,
}

/// Builds into `work/rootfs`, then writes the layout to `work/oci`.
fn build(recipe: &Recipe, work: &Path, started: Instant) -> Result<FlaskImage, Error> {
    if let Some(uid) = euid().filter(|u| *u != 0) {
        return Err(FlaskError::NotRoot { euid: uid }.into());
    }
    let debootstrap = crate::registry::find_in_path("debootstrap").ok_or(Error::Missing {
        program: "debootstrap",
        package: "debootstrap",
    })?;
    probe_mirror(&recipe.mirror, &recipe.suite)?;
    fs::create_dir_all(work).map_err(io_err(work))?;
    let rootfs = work.join("rootfs");
    let t = Instant::now();
    run_debootstrap(&debootstrap, recipe, &rootfs, work)?;
    let debootstrap_seconds = t.elapsed().as_secs_f64();

    let (trimmed_files, trimmed_bytes) = trim(&rootfs)?;
    let recompiled_pyc = recompile_pyc(&rootfs)?;
    install_app(&rootfs, &recipe.app_source)?;

    let layout = work.join("oci");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    let partial = blobs.join(".layer.partial");
    let file = fs::File::create(&partial).map_err(io_err(&partial))?;
    let layer = write_layer(&rootfs, BufWriter::with_capacity(1 << 20, file))?;
    let layer_path = blobs.join(layer.digest.hex());
    fs::rename(&partial, &layer_path).map_err(io_err(&layer_path))?;

    let config = image_config(&layer.diff_id)?;
    let config_desc = write_blob(&layout, OCI_CONFIG, &config)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        config: config_desc,
        layers: vec![Descriptor {
            media_type: OCI_LAYER_GZIP.into(),
            digest: layer.digest,
            size: layer.gzip_bytes,
            platform: None,
            annotations: Default::default(),
            extra: Default::default(),
        }],
        annotations: [(
            "org.opencontainers.image.title".to_owned(),
            "python-flask".to_owned(),
        )]
        .into(),
        extra: Default::default(),
    };
    let manifest_bytes = to_json(&manifest, "manifest")?;
    let mut manifest_desc = write_blob(&layout, OCI_MANIFEST, &manifest_bytes)?;
    manifest_desc
        .annotations
        .insert(REF_NAME_ANNOTATION.into(), REF_NAME.into());
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: vec![manifest_desc.clone()],
        annotations: Default::default(),
        extra: Default::default(),
    };
    write_file(&layout.join("index.json"), &to_json(&index, "index")?)?;
    write_file(
        &layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;

    let stats = ImageStats {
        regular_files: layer.regular_files,
        file_bytes: layer.file_bytes,
        directories: layer.directories,
        symlinks: layer.symlinks,
        hard_links: layer.hard_links,
        trimmed_files,
        trimmed_bytes,
        recompiled_pyc,
        layer_tar_bytes: layer.tar_bytes,
        layer_gzip_bytes: layer.gzip_bytes,
        debootstrap_seconds,
        build_seconds: started.elapsed().as_secs_f64(),
    };
    let record = CacheRecord {
        recipe_version: RECIPE_VERSION.into(),
        suite: recipe.suite.clone(),
        packages: recipe.packages.clone(),
        mirror: recipe.mirror.clone(),
        manifest_digest: manifest_desc.digest.to_string(),
        layer_digest: layer.digest.to_string(),
        diff_id: layer.diff_id.to_string(),
        stats: stats.clone(),
    };
    write_file(
        &layout.join(STATS_FILE),
        &serde_json::to_vec_pretty(&record).map_err(|e| Error::Io {
            path: layout.join(STATS_FILE),
            source: e.into(),
        })?,
    )?;
    Ok(FlaskImage {
        layout,
        ref_name: REF_NAME.into(),
        manifest_digest: record.manifest_digest,
        layer_digest: record.layer_digest,
        diff_id: record.diff_id,
        stats,
        cached: false,
        elapsed: started.elapsed(),
    })
}

fn to_json<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Io {
        path: what.into(),
        source: e.into(),
    })
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), Error> {
    fs::write(path, data).map_err(io_err(path))
}

fn write_blob(layout: &Path, media_type: &str, data: &[u8]) -> Result<Descriptor, Error> {
    let desc = Descriptor::for_bytes(media_type, data);
    write_file(&layout.join("blobs/sha256").join(desc.digest.hex()), data)?;
    Ok(desc)
}

/// The OCI architecture name of this machine (debootstrap builds for the host).
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The platform of the image this machine builds.
pub fn platform() -> Platform {
    Platform {
        os: "linux".into(),
        architecture: architecture().into(),
        variant: (architecture() == "arm64").then(|| "v8".into()),
        extra: Default::default(),
    }
}

fn image_config(diff_id: &Digest) -> Result<Vec<u8>, Error> {
    let mut config = json!({
        "architecture": architecture(),
        "os": "linux",
        "created": CREATED,
        "config": {
            "Entrypoint": ["python3", "/app/app.py"],
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "PYTHONUNBUFFERED=1",
                "LANG=C.UTF-8"
            ],
            "WorkingDir": "/app",
            "ExposedPorts": {format!("{DEFAULT_PORT}/tcp"): {}},
            "Labels": {
                "org.opencontainers.image.title": "python-flask",
                "org.opencontainers.image.description": "Python Flask HTTPS server (ccm seed journey application)",
                "org.opencontainers.image.base.name": format!("debian:{SUITE} (debootstrap --variant={VARIANT})")
            }
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{
            "created": CREATED,
            "created_by": format!(
                "debootstrap --variant={VARIANT} --include={} {SUITE}; trimmed; /app/app.py (ccm-testkit)",
                PACKAGES.join(",")
            )
        }]
    });
    if let (Some(cfg), "arm64") = (config.as_object_mut(), architecture()) {
        cfg.insert("variant".into(), json!("v8"));
    }
    // serde_json serialises a `Value` deterministically (the map order is fixed by the code).
    to_json(&config, "image config")
}

/// Fetches `MIRROR/dists/SUITE/Release` headers over plain HTTP (debootstrap's own failure on an
/// unreachable mirror takes many minutes of retries). HTTPS mirrors are left to debootstrap.
fn probe_mirror(mirror: &str, suite: &str) -> Result<(), Error> {
    use std::net::{TcpStream, ToSocketAddrs};
    let unreachable = |reason: String| {
        Error::from(FlaskError::MirrorUnreachable {
            mirror: mirror.to_owned(),
            reason,
        })
    };
    let Some(rest) = mirror.strip_prefix("http://") else {
        return Ok(());
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let hostport = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addrs: Vec<_> = hostport
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("resolving {authority}: {e}")))?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                let path = format!("/{}/dists/{suite}/Release", path.trim_end_matches('/'))
                    .replace("//", "/");
                let req = format!(
                    "HEAD {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: ccm-testkit\r\nConnection: close\r\n\r\n"
                );
                s.write_all(req.as_bytes())
                    .map_err(|e| unreachable(format!("sending to {addr}: {e}")))?;
                let mut head = [0u8; 12];
                s.read_exact(&mut head)
                    .map_err(|e| unreachable(format!("reading from {addr}: {e}")))?;
                let status = String::from_utf8_lossy(head.get(9..12).unwrap_or(&[])).into_owned();
                return if status.starts_with('2') || status.starts_with('3') {
                    Ok(())
                } else {
                    Err(unreachable(format!("HEAD {path} answered {status}")))
                };
            }
            Err(e) => last = format!("connecting to {addr}: {e}"),
        }
    }
    Err(unreachable(last))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn run_debootstrap(
    program: &Path,
    recipe: &Recipe,
    rootfs: &Path,
    work: &Path,
) -> Result<(), Error> {
    let log_path = work.join("debootstrap.out");
    let log = fs::File::create(&log_path).map_err(io_err(&log_path))?;
    let log2 = log.try_clone().map_err(io_err(&log_path))?;
    let mut cmd = Command::new(program);
    cmd.arg(format!("--variant={VARIANT}"))
        .arg(format!("--include={}", recipe.packages.join(",")));
    if Path::new(KEYRING).is_file() {
        cmd.arg(format!("--keyring={KEYRING}"));
    }
    let status = cmd
        .arg(&recipe.suite)
        .arg(rootfs)
        .arg(&recipe.mirror)
        .env("LC_ALL", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .status()
        .map_err(|e| Error::Spawn {
            program: program.display().to_string(),
            source: e,
        })?;
    if status.success() {
        return Ok(());
    }
    let mut text = tail(&fs::read_to_string(&log_path).unwrap_or_default(), 15);
    if let Ok(inner) = fs::read_to_string(rootfs.join("debootstrap/debootstrap.log")) {
        text.push_str("\n--- debootstrap/debootstrap.log ---\n");
        text.push_str(&tail(&inner, 15));
    }
    Err(FlaskError::Debootstrap {
        suite: recipe.suite.clone(),
        mirror: recipe.mirror.clone(),
        status: status.to_string(),
        log: text,
    }
    .into())
}

/// Removes the non-directory entries under `dir` (recursively) for which `remove` says yes, then
/// the directories left empty below `dir` when `prune` is set. Returns (entries, bytes) removed.
fn remove_where(
    dir: &Path,
    remove: &dyn Fn(&Path) -> bool,
    prune: bool,
) -> Result<(u64, u64), Error> {
    let mut counts = (0u64, 0u64);
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(counts),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if meta.is_dir() {
            let (n, b) = remove_where(&path, remove, prune)?;
            counts = (counts.0 + n, counts.1 + b);
            if prune && fs::read_dir(&path).map_err(io_err(&path))?.next().is_none() {
                fs::remove_dir(&path).map_err(io_err(&path))?;
            }
        } else if remove(&path) {
            fs::remove_file(&path).map_err(io_err(&path))?;
            counts = (
                counts.0 + 1,
                counts.1 + if meta.is_file() { meta.len() } else { 0 },
            );
        }
    }
    Ok(counts)
}

/// Applies the trimming rules of the module docs. Returns (entries, bytes) removed.
fn trim(root: &Path) -> Result<(u64, u64), Error> {
    let name_is = |p: &Path, n: &str| p.file_name().is_some_and(|f| f == n);
    let all = |_: &Path| true;
    let mut total = (0u64, 0u64);
    let mut add = |r: (u64, u64)| total = (total.0 + r.0, total.1 + r.1);
    add(remove_where(&root.join("var/cache/apt"), &all, true)?);
    add(remove_where(&root.join("var/lib/apt/lists"), &all, false)?);
    add(remove_where(
        &root.join("usr/share/doc"),
        &|p| !name_is(p, "copyright"),
        true,
    )?);
    add(remove_where(&root.join("usr/share/man"), &all, true)?);
    add(remove_where(&root.join("usr/share/info"), &all, true)?);
    add(remove_where(
        &root.join("usr/share/locale"),
        &|p| !name_is(p, "locale.alias"),
        true,
    )?);
    add(remove_where(&root.join("var/log"), &all, false)?);
    let old = |p: &Path| p.to_string_lossy().ends_with("-old");
    for dir in ["var/cache/debconf", "var/lib/dpkg"] {
        let d = root.join(dir);
        for entry in fs::read_dir(&d).map_err(io_err(&d))? {
            let p = entry.map_err(io_err(&d))?.path();
            if old(&p) && fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&p).map_err(io_err(&p))?;
                add((1, len));
            }
        }
    }
    add(remove_where(&root.join("dev"), &all, false)?);
    for f in [
        "var/cache/ldconfig/aux-cache",
        "etc/hostname",
        "etc/resolv.conf",
    ] {
        let p = root.join(f);
        if let Ok(meta) = fs::symlink_metadata(&p) {
            fs::remove_file(&p).map_err(io_err(&p))?;
            add((1, if meta.is_file() { meta.len() } else { 0 }));
        }
    }
    // Directories the runtime mounts over stay, empty (the dev/ contents are gone above).
    for d in ["dev", "proc", "sys", "run", "tmp"] {
        let p = root.join(d);
        fs::create_dir_all(&p).map_err(io_err(&p))?;
    }
    let excludes = root.join("etc/dpkg/dpkg.cfg.d/ccm-minimal");
    write_file(&excludes, DPKG_EXCLUDES.as_bytes())?;
    Ok(total)
}

/// Recompiles the packaged bytecode with unchecked-hash invalidation, with the image's python3.
fn recompile_pyc(root: &Path) -> Result<u64, Error> {
    let output = Command::new("chroot")
        .arg(root)
        .args(["/usr/bin/python3", "-I", "-c", RECOMPILE_PYC])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Spawn {
            program: "chroot".into(),
            source: e,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match (output.status.success(), stdout.trim().parse::<u64>()) {
        (true, Ok(n)) => Ok(n),
        _ => Err(FlaskError::Step {
            step: "recompiling the Python bytecode (chroot python3)",
            root: root.to_owned(),
            status: output.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&output.stderr), 15),
        }
        .into()),
    }
}

fn install_app(root: &Path, source: &str) -> Result<(), Error> {
    let app = root.join("app");
    fs::create_dir_all(&app).map_err(io_err(&app))?;
    fs::set_permissions(&app, fs::Permissions::from_mode(0o755)).map_err(io_err(&app))?;
    let file = app.join("app.py");
    write_file(&file, source.as_bytes())?;
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).map_err(io_err(&file))
}

/// What [`write_layer`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the gzip blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar (the diff id).
    pub diff_id: Digest,
    /// Bytes of the gzip blob.
    pub gzip_bytes: u64,
    /// Bytes of the tar.
    pub tar_bytes: u64,
    /// Regular files written with content.
    pub regular_files: u64,
    /// Their total size.
    pub file_bytes: u64,
    /// Directories.
    pub directories: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Hard-link entries.
    pub hard_links: u64,
}

/// A writer that hashes and counts what passes through.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or(&[]));
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the tree under `root` as one reproducible gzip layer to `out` (see the module docs for
/// the format). The root directory itself is not an entry.
pub fn write_layer<W: Write>(root: &Path, out: W) -> Result<LayerInfo, Error> {
    let compressed = HashingWriter {
        inner: out,
        hasher: Hasher::new(),
    };
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(compressed, flate2::Compression::default());
    let plain = HashingWriter {
        inner: gz,
        hasher: Hasher::new(),
    };
    let mut builder = tar::Builder::new(plain);
    let mut info = LayerInfo {
        digest: Digest::from_bytes([0; 32]),
        diff_id: Digest::from_bytes([0; 32]),
        gzip_bytes: 0,
        tar_bytes: 0,
        regular_files: 0,
        file_bytes: 0,
        directories: 0,
        symlinks: 0,
        hard_links: 0,
    };
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    append_dir(&mut builder, root, Path::new(""), &mut links, &mut info)?;
    let werr = io_err(root);
    let plain = builder.into_inner().map_err(io_err(root))?;
    let (tar_bytes, diff_id) = (plain.hasher.len(), plain.hasher.finish());
    let mut compressed = plain.inner.finish().map_err(werr)?;
    compressed.flush().map_err(io_err(root))?;
    info.tar_bytes = tar_bytes;
    info.diff_id = diff_id;
    info.gzip_bytes = compressed.hasher.len();
    info.digest = compressed.hasher.finish();
    Ok(info)
}

fn header(meta: &fs::Metadata, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(SOURCE_DATE_EPOCH);
    h.set_size(size);
    h
}

fn append_dir<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    info: &mut LayerInfo,
) -> Result<(), Error> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(&dir))?;
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let rel_path = rel.join(&name);
        let path = root.join(&rel_path);
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            let mut h = header(&meta, tar::EntryType::Directory, 0);
            b.append_data(&mut h, &rel_path, io::empty())
                .map_err(io_err(&path))?;
            info.directories += 1;
            append_dir(b, root, &rel_path, links, info)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err(&path))?;
            let mut h = header(&meta, tar::EntryType::Symlink, 0);
            b.append_link(&mut h, &rel_path, &target)
                .map_err(io_err(&path))?;
            info.symlinks += 1;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    let mut h = header(&meta, tar::EntryType::Link, 0);
                    b.append_link(&mut h, &rel_path, first)
                        .map_err(io_err(&path))?;
                    info.hard_links += 1;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), rel_path.clone());
            }
            let file = fs::File::open(&path).map_err(io_err(&path))?;
            let mut h = header(&meta, tar::EntryType::Regular, meta.len());
            b.append_data(&mut h, &rel_path, file.take(meta.len()))
                .map_err(io_err(&path))?;
            info.regular_files += 1;
            info.file_bytes += meta.len();
        } else {
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_char_device() || ft.is_block_device() {
                "a device node"
            } else if ft.is_fifo() {
                "a FIFO"
            } else {
                "a socket"
            };
            return Err(FlaskError::SpecialFile { path, kind }.into());
        }
    }
    Ok(())
}

/// An image pushed to a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedImage {
    /// `host:port/name:tag`.
    pub reference: String,
    /// The manifest digest (`sha256:…`), the same as the cached layout's.
    pub digest: String,
}

/// Pushes `image` to `reference` (`host[:port]/repo:tag`) with ccm-image's copy; `credentials` is
/// `user:password`; registries named in `insecure` are spoken to over plain HTTP.
pub async fn push_image(
    image: &FlaskImage,
    reference: &str,
    credentials: Option<&str>,
    insecure: &[String],
) -> Result<PushedImage, Error> {
    let image_err = |what: String| move |source| Error::from(FlaskError::Image { what, source });
    let registries = Registries::new(&RegistryOptions {
        insecure: insecure.to_vec(),
        ..Default::default()
    })
    .map_err(image_err("setting up the registry client".into()))?;
    let location: Location = reference
        .parse()
        .map_err(image_err(format!("image reference {reference:?}")))?;
    let source_location = Location::OciLayout {
        dir: image.layout.clone(),
        name: Some(image.ref_name.clone()),
    };
    let src = Source::open(&source_location, &registries, None)
        .await
        .map_err(image_err(format!("opening {}", image.location())))?;
    let credentials = credentials.and_then(Credentials::parse);
    let dst = Destination::open(&location, &registries, credentials)
        .await
        .map_err(image_err(format!("opening {reference}")))?;
    let digest = ccm_image::copy(&src, &dst, &platform(), &NoProgress)
        .await
        .map_err(image_err(format!(
            "pushing {} to {reference}",
            image.location()
        )))?;
    Ok(PushedImage {
        reference: reference.to_owned(),
        digest: digest.to_string(),
    })
}

/// Builds or reuses the default image ([`flask_image`], on a blocking thread) and pushes it to
/// `registry` as `name` (e.g. `python-flask:latest`) with the registry's credentials.
pub async fn push_flask_image(registry: &Registry, name: &str) -> Result<PushedImage, Error> {
    let image = tokio::task::spawn_blocking(flask_image)
        .await
        .map_err(|e| Error::from(FlaskError::Task(e.to_string())))??;
    push_image(
        &image,
        &format!("{}/{name}", registry.host()),
        registry.credentials().as_deref(),
        &[registry.host()],
    )
    .await
}
