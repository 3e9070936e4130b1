//! The quote helper as a real process: finds (or builds) the workspace's `ccm` binary and runs
//! `ccm aesmd --platform DIR --socket PATH` until dropped.
//!
//! The platform directory is made by the caller (`ccm_attest::sim::init`, or `ccm sim init`);
//! this module uses no ccm crate.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// How long `ccm aesmd` has to create its socket and publish the platform secret.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `ccm` binary of this workspace: `$CCM_TEST_CCM_BIN`, else `ccm` in the profile directory
/// the running test was built into (`target/debug/ccm`), built with `cargo build -p ccm` first
/// when it is not there (a build started by `cargo nextest run -p OTHER_CRATE` does not produce
/// it). One build at a time, whatever the number of test processes.
pub fn ccm_binary() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("CCM_TEST_CCM_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| Error::Io {
        path: "current test executable".into(),
        source: e,
    })?;
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| Error::Io {
            path: exe.clone(),
            source: std::io::Error::other("not inside a cargo target directory"),
        })?
        .to_path_buf();
    let bin = profile_dir.join("ccm");
    if bin.is_file() {
        return Ok(bin);
    }
    let lock_path = profile_dir.join(".ccm-testkit-build-ccm.lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| Error::Io {
        path: lock_path.clone(),
        source: e,
    })?;
    lock.lock().map_err(|e| Error::Io {
        path: lock_path.clone(),
        source: e,
    })?;
    if bin.is_file() {
        return Ok(bin);
    }
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--quiet", "-p", "ccm", "--bin", "ccm"]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    // target/<profile> → target: build into the same target directory.
    if let Some(target_dir) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target_dir);
    }
    let out = cmd.output().map_err(|e| Error::Spawn {
        program: "cargo build -p ccm".into(),
        source: e,
    })?;
    if !out.status.success() || !bin.is_file() {
        return Err(Error::Command {
            program: "cargo build -p ccm".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(bin)
}

/// A running `ccm aesmd` serving a simulated platform.
#[derive(Debug)]
pub struct Aesmd {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Aesmd {
    /// Starts `ccm aesmd --platform platform_dir --socket socket` (stderr to `socket`'s directory
    /// as `aesmd.log`) and waits until the socket accepts connections and the platform secret
    /// (`ccm-sim-cpu.key`) is published next to it.
    pub fn start(platform_dir: &Path, socket: &Path) -> Result<Aesmd, Error> {
        let ccm = ccm_binary()?;
        let dir = socket.parent().unwrap_or(Path::new("."));
        let log = dir.join("aesmd.log");
        let log_file = std::fs::File::create(&log).map_err(|e| Error::Io {
            path: log.clone(),
            source: e,
        })?;
        let child = Command::new(&ccm)
            .arg("aesmd")
            .arg("--platform")
            .arg(platform_dir)
            .arg("--socket")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| Error::Spawn {
                program: format!("{} aesmd", ccm.display()),
                source: e,
            })?;
        let mut aesmd = Aesmd {
            child,
            socket: socket.to_path_buf(),
            log,
        };
        let key = dir.join("ccm-sim-cpu.key");
        let start = Instant::now();
        loop {
            if UnixStream::connect(socket).is_ok() && key.is_file() {
                return Ok(aesmd);
            }
            if let Ok(Some(status)) = aesmd.child.try_wait() {
                return Err(Error::Command {
                    program: "ccm aesmd".into(),
                    status: status.to_string(),
                    stderr: std::fs::read_to_string(&aesmd.log).unwrap_or_default(),
                });
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!("ccm aesmd on {}", socket.display()),
                    after: READY_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Aesmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
