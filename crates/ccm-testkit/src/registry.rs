//! A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution 2.x) serving a
//! temporary directory on `127.0.0.1` with an ephemeral port, optionally behind htpasswd Basic
//! authentication (bcrypt cost 4, hashed in-process). The process is killed when the
//! [`Registry`] is dropped.
//!
//! ```no_run
//! let reg = ccm_testkit::registry::Registry::start_with_auth("alice", "s3cret").unwrap();
//! println!("push to {}/team/app:1", reg.host());
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// How long a registry may take to answer its first request.
const STARTUP: Duration = Duration::from_secs(30);

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    credentials: Option<(String, String)>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry program: `$CCM_TEST_REGISTRY_BIN` or `docker-registry` on the `PATH`.
fn program() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("CCM_TEST_REGISTRY_BIN") {
        return Ok(PathBuf::from(p));
    }
    find_in_path("docker-registry").ok_or(Error::Missing {
        program: "docker-registry",
        package: "docker-registry",
    })
}

/// Finds an executable on `PATH` (and in the sbin directories, which `PATH` may lack).
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Io {
        path: "127.0.0.1:0".into(),
        source: e,
    })?;
    l.local_addr().map(|a| a.port()).map_err(|e| Error::Io {
        path: "127.0.0.1:0".into(),
        source: e,
    })
}

/// `GET /v2/` answered 200 or 401: the registry is serving.
fn answers(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(
        format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && (head.ends_with(b"200") || head.ends_with(b"401"))
}

impl Registry {
    /// Starts an anonymous registry.
    pub fn start() -> Result<Self, Error> {
        Self::launch(None)
    }

    /// Starts a registry that requires Basic authentication as `user`/`password`.
    pub fn start_with_auth(user: &str, password: &str) -> Result<Self, Error> {
        Self::launch(Some((user.to_owned(), password.to_owned())))
    }

    fn launch(credentials: Option<(String, String)>) -> Result<Self, Error> {
        let program = program()?;
        let dir = tempfile::Builder::new()
            .prefix("ccm-test-registry-")
            .tempdir()
            .map_err(|e| Error::Io {
                path: std::env::temp_dir(),
                source: e,
            })?;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |e| Error::Io { path, source: e }
        };
        let mut auth = String::new();
        if let Some((user, password)) = &credentials {
            let hash = bcrypt::hash_with_result(password, 4)
                .map_err(|e| Error::Io {
                    path: "htpasswd".into(),
                    source: std::io::Error::other(e.to_string()),
                })?
                .format_for_version(bcrypt::Version::TwoY);
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).map_err(io(&htpasswd))?;
            auth = format!(
                "auth:\n  htpasswd:\n    realm: ccm-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        // A port picked by binding :0 can be taken by someone else before the registry binds it:
        // retry with a new port if the registry exits early.
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let config = dir.path().join("config.yml");
            let yaml = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: ccm-test-secret\n{auth}",
                dir.path().join("data").display()
            );
            std::fs::write(&config, yaml).map_err(io(&config))?;
            let log = dir.path().join("registry.log");
            let log_file = std::fs::File::create(&log).map_err(io(&log))?;
            let log_err = log_file.try_clone().map_err(io(&log))?;
            let mut child = Command::new(&program)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(log_err)
                .spawn()
                .map_err(|e| Error::Spawn {
                    program: program.display().to_string(),
                    source: e,
                })?;
            let deadline = Instant::now() + STARTUP;
            loop {
                if answers(addr) {
                    return Ok(Registry {
                        child,
                        addr,
                        dir,
                        credentials,
                    });
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last_err = Some(Error::Command {
                        program: program.display().to_string(),
                        status: status.to_string(),
                        stderr: std::fs::read_to_string(&log).unwrap_or_default(),
                    });
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::Timeout {
                        what: format!("docker-registry on {addr}"),
                        after: STARTUP,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(last_err.unwrap_or(Error::Timeout {
            what: "docker-registry".into(),
            after: STARTUP,
        }))
    }

    /// `127.0.0.1:PORT`, the registry part of image references (it must be named as an insecure
    /// registry: it speaks plain HTTP).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `user:password` when the registry requires authentication.
    pub fn credentials(&self) -> Option<String> {
        self.credentials.as_ref().map(|(u, p)| format!("{u}:{p}"))
    }

    /// The storage directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base64_encode(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in data.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn starts_answers_and_stops() {
        let reg = Registry::start_with_auth("u", "p").unwrap();
        assert!(answers(reg.addr()));
        assert_eq!(reg.credentials().as_deref(), Some("u:p"));
        let addr = reg.addr();
        let status = |auth: Option<&str>| {
            let mut s = TcpStream::connect(addr).unwrap();
            let header = auth.map(|a| {
                use std::fmt::Write as _;
                let b64 = base64_encode(a.as_bytes());
                let mut h = String::new();
                let _ = write!(h, "Authorization: Basic {b64}\r\n");
                h
            });
            write!(
                s,
                "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\n{}Connection: close\r\n\r\n",
                header.unwrap_or_default()
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out.get(9..12).unwrap_or("").to_owned()
        };
        assert_eq!(status(None), "401");
        assert_eq!(status(Some("u:wrong")), "401");
        assert_eq!(status(Some("u:p")), "200");
        drop(reg);
        assert!(!answers(addr));
    }
}
