//! A private PostgreSQL cluster for tests, shared by every test process of a machine, with a
//! fresh database per test.
//!
//! nextest runs each test in its own process, so the cluster cannot live in one process's
//! memory. [`database`] instead:
//! 1. takes an exclusive file lock on `<dir>/lock` (`<dir>` is `$CCM_TEST_PG_DIR`, or
//!    `ccm-testkit-pg<version>-<uid>` under the system temp directory);
//! 2. reuses the cluster whose port is recorded in `<dir>/port` if it answers a query; otherwise
//!    initialises `<dir>/data` (`initdb`, trust authentication, once) and starts it with
//!    `pg_ctl` on a free 127.0.0.1 port (durability settings off: test data is disposable);
//! 3. releases the lock and creates a uniquely named database, dropped again (`WITH (FORCE)`)
//!    when the returned [`TestDatabase`] is dropped.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (as in CI), the server commands
//! run as the `postgres` system user through `runuser`, and `<dir>` is handed to that user.
//! The binaries come from `$CCM_TEST_PG_BIN`, or the newest `/usr/lib/postgresql/*/bin`
//! (Debian's `postgresql` package). A missing installation is an error, never a silent skip.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// A database of its own for one test, dropped when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub url: String,
    /// The database name.
    pub name: String,
    cluster: Cluster,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort: a leftover database in a throwaway test cluster harms nothing.
        let _ = self.cluster.psql(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ));
    }
}

/// The shared test cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    /// The port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `name` as the superuser `postgres`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one SQL statement against the `postgres` database.
    pub fn psql(&self, sql: &str) -> Result<String, Error> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .map_err(|e| Error::Spawn {
                program: "psql".into(),
                source: e,
            })?;
        check("psql", out).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// Creates a fresh, uniquely named database.
    pub fn create_database(&self) -> Result<TestDatabase, Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "ccm_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        self.psql(&format!("CREATE DATABASE \"{name}\""))?;
        Ok(TestDatabase {
            url: self.url(&name),
            name,
            cluster: self.clone(),
        })
    }
}

/// Starts (or reuses) the shared cluster and creates a fresh database in it.
pub fn database() -> Result<TestDatabase, Error> {
    cluster()?.create_database()
}

/// Starts the shared cluster if it is not running, and returns a handle to it.
pub fn cluster() -> Result<Cluster, Error> {
    let bin = find_bin()?;
    let version = bin
        .parent()
        .and_then(Path::file_name)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    let as_root = is_root();
    let dir = match std::env::var_os("CCM_TEST_PG_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("ccm-testkit-pg{version}-{}", uid_string())),
    };
    fs::create_dir_all(&dir).map_err(|e| Error::Io {
        path: dir.clone(),
        source: e,
    })?;
    let lock_path = dir.join("lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::Io {
            path: lock_path.clone(),
            source: e,
        })?;
    lock.lock().map_err(|e| Error::Io {
        path: lock_path.clone(),
        source: e,
    })?;

    let port_file = dir.join("port");
    if let Some(port) = fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse().ok())
    {
        let c = Cluster {
            bin: bin.clone(),
            port,
        };
        if c.psql("SELECT 1").is_ok() {
            return Ok(c);
        }
    }

    if as_root {
        run(
            Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(&dir),
            "chown",
        )?;
    }
    let data = dir.join("data");
    let sock = dir.join("sock");
    fs::create_dir_all(&sock).map_err(|e| Error::Io {
        path: sock.clone(),
        source: e,
    })?;
    if as_root {
        run(
            Command::new("chown").arg("postgres:postgres").arg(&sock),
            "chown",
        )?;
    }
    let pg_ctl = bin.join("pg_ctl");
    if !data.join("PG_VERSION").exists() {
        if data.exists() {
            fs::remove_dir_all(&data).map_err(|e| Error::Io {
                path: data.clone(),
                source: e,
            })?;
        }
        let mut initdb = server_command(&bin.join("initdb"), as_root);
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "--locale=C",
        ]);
        run(&mut initdb, "initdb")?;
    } else {
        // A stale server of an earlier run (e.g. after a crash) may still hold the data dir.
        let mut stop = server_command(&pg_ctl, as_root);
        stop.arg("-D").arg(&data).args(["-m", "immediate", "stop"]);
        let _ = stop.output();
    }
    let port = free_port()?;
    let opts = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB",
        sock.display()
    );
    let mut start = server_command(&pg_ctl, as_root);
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .arg("-o")
        .arg(opts)
        .args(["-w", "-t", "60", "start"]);
    run(&mut start, "pg_ctl start")?;
    fs::write(&port_file, port.to_string()).map_err(|e| Error::Io {
        path: port_file.clone(),
        source: e,
    })?;
    let c = Cluster { bin, port };
    c.psql("SELECT 1")?;
    Ok(c)
}

fn server_command(program: &Path, as_root: bool) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), Error> {
    let out = cmd.output().map_err(|e| Error::Spawn {
        program: what.into(),
        source: e,
    })?;
    check(what, out).map(|_| ())
}

fn check(what: &str, out: Output) -> Result<Output, Error> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            program: what.into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn find_bin() -> Result<PathBuf, Error> {
    if let Some(b) = std::env::var_os("CCM_TEST_PG_BIN") {
        return Ok(PathBuf::from(b));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| Error::PostgresMissing)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).ok_or(Error::PostgresMissing)
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

fn uid_string() -> String {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "user".into())
}

fn is_root() -> bool {
    uid_string() == "0"
}
