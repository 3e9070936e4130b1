//! OCI runtime bundles from image configs, and running them with `runc`.
//!
//! The generated `config.json` follows `runc spec`'s defaults (mounts, masked and read-only
//! paths, Docker's default capability set, `noNewPrivileges`) with three deliberate differences:
//!
//! * no network namespace: the container uses the host's network, so a port the program listens
//!   on is a host port. `-p HOST:CTR` with different numbers is served by a TCP forwarder in the
//!   `ccm run` process ([`forward_port`]); the host's `/etc/resolv.conf` and `/etc/hosts` are
//!   bind-mounted read-only;
//! * no `rlimits` and no cgroup `resources` (they fail on hosts with hybrid cgroups, and the
//!   container inherits the caller's limits instead);
//! * devices named with `--device` are created from the host device's type and numbers.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::oci::ImageConfig;

/// A host device made available in the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceMapping {
    /// The host device node.
    pub host: PathBuf,
    /// Its path in the container.
    pub container: String,
}

impl std::str::FromStr for DeviceMapping {
    type Err = Error;
    /// `HOST[:CONTAINER]`, as `docker run --device`.
    fn from_str(s: &str) -> Result<Self> {
        let (host, ctr) = s
            .split_once(':')
            .map_or((s, s), |(h, c)| (h, c.split(':').next().unwrap_or(c)));
        if !host.starts_with('/') || !ctr.starts_with('/') {
            return Err(Error::InvalidOption {
                option: "--device",
                reason: format!("{s:?}: expected /HOST[:/CONTAINER]"),
            });
        }
        Ok(DeviceMapping {
            host: host.into(),
            container: ctr.to_owned(),
        })
    }
}

/// A bind mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// Host path.
    pub host: PathBuf,
    /// Container path.
    pub container: String,
    /// Mounted read-only.
    pub readonly: bool,
}

impl std::str::FromStr for Volume {
    type Err = Error;
    /// `HOST:CONTAINER[:ro|rw]`, as `docker run -v` with an absolute host path.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidOption {
            option: "-v",
            reason: format!("{s:?}: expected /HOST:/CONTAINER[:ro]"),
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (host, ctr, mode) = match parts.as_slice() {
            [h, c] => (*h, *c, "rw"),
            [h, c, m] => (*h, *c, *m),
            _ => return Err(bad()),
        };
        if !host.starts_with('/') || !ctr.starts_with('/') || !matches!(mode, "ro" | "rw") {
            return Err(bad());
        }
        Ok(Volume {
            host: host.into(),
            container: ctr.to_owned(),
            readonly: mode == "ro",
        })
    }
}

/// A published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// Address to listen on for a forwarded port.
    pub host_ip: std::net::IpAddr,
    /// Host port.
    pub host: u16,
    /// Container port (on the host network).
    pub container: u16,
}

impl std::str::FromStr for PortMapping {
    type Err = Error;
    /// `[IP:]HOST:CONTAINER` or `PORT`, as `docker run -p` (TCP only).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidOption {
            option: "-p",
            reason: format!("{s:?}: expected [IP:]HOST:CONTAINER"),
        };
        let spec = s.strip_suffix("/tcp").unwrap_or(s);
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad);
        let any = std::net::IpAddr::from([0, 0, 0, 0]);
        let (ip, host, ctr) = match spec.rsplitn(3, ':').collect::<Vec<_>>().as_slice() {
            [p] => (any, port(p)?, port(p)?),
            [c, h] => (any, port(h)?, port(c)?),
            [c, h, ip] => (
                ip.trim_matches(['[', ']']).parse().map_err(|_| bad())?,
                port(h)?,
                port(c)?,
            ),
            _ => return Err(bad()),
        };
        Ok(PortMapping {
            host_ip: ip,
            host,
            container: ctr,
        })
    }
}

/// Options of `ccm run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Devices.
    pub devices: Vec<DeviceMapping>,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// Extra environment (`K=V`, or `K` to copy the caller's value).
    pub env: Vec<String>,
    /// Replaces the image's ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's CMD.
    pub args: Option<Vec<String>>,
    /// Replaces the image's USER.
    pub user: Option<String>,
}

fn lookup_id(rootfs: &Path, file: &str, name: &str) -> Option<(u32, u32)> {
    let path = rootfs.join("etc").join(file);
    // A symlinked /etc/passwd could point outside the root: only read a regular file.
    if !std::fs::symlink_metadata(&path).ok()?.is_file() {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.first() == Some(&name) {
            Some((
                f.get(2)?.parse().ok()?,
                f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0),
            ))
        } else {
            None
        }
    })
}

/// Resolves `user[:group]` (names looked up in the image's `/etc/passwd` and `/etc/group`).
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<(u32, u32)> {
    if spec.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = spec
        .split_once(':')
        .map_or((spec, None), |(u, g)| (u, Some(g)));
    let unknown = |what: &str| Error::InvalidOption {
        option: "user",
        reason: format!("{what} not found in the image"),
    };
    let (uid, primary_gid) = match u.parse::<u32>() {
        Ok(uid) => (uid, lookup_id_by_uid(rootfs, uid).unwrap_or(0)),
        Err(_) => lookup_id(rootfs, "passwd", u).ok_or_else(|| unknown(&format!("user {u:?}")))?,
    };
    let gid = match g {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup_id(rootfs, "group", g)
                .map(|(gid, _)| gid)
                .ok_or_else(|| unknown(&format!("group {g:?}")))?,
        },
    };
    Ok((uid, gid))
}

fn lookup_id_by_uid(rootfs: &Path, uid: u32) -> Option<u32> {
    let path = rootfs.join("etc/passwd");
    if !std::fs::symlink_metadata(&path).ok()?.is_file() {
        return None;
    }
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f.get(3)?.parse().ok())?
        })
}

/// Linux device numbers from `st_rdev` (glibc's `gnu_dev_major`/`gnu_dev_minor`).
fn dev_numbers(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major, minor)
}

/// The process environment: image ENV, a default PATH, then the caller's `-e` values.
fn environment(image: &ImageConfig, extra: &[String]) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        if let Some(slot) = env.iter_mut().find(|(ek, _)| ek == k) {
            slot.1 = v.to_owned();
        } else {
            env.push((k.to_owned(), v.to_owned()));
        }
    };
    set(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    for kv in image
        .config
        .as_ref()
        .and_then(|c| c.env.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some((k, v)) = kv.split_once('=') {
            set(k, v);
        }
    }
    for kv in extra {
        match kv.split_once('=') {
            Some((k, v)) => set(k, v),
            None => {
                if let Ok(v) = std::env::var(kv) {
                    set(kv, &v);
                }
            }
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Builds the runtime spec (`config.json`) for an unpacked image.
pub fn runtime_spec(image: &ImageConfig, rootfs: &Path, opts: &RunOptions) -> Result<Value> {
    let rc = image.config.clone().unwrap_or_default();
    let args: Vec<String> = match &opts.entrypoint {
        Some(ep) => ep
            .iter()
            .cloned()
            .chain(opts.args.iter().flatten().cloned())
            .collect(),
        None => rc
            .entrypoint
            .iter()
            .flatten()
            .cloned()
            .chain(opts.args.clone().or(rc.cmd.clone()).into_iter().flatten())
            .collect(),
    };
    if args.is_empty() {
        return Err(Error::InvalidOption {
            option: "command",
            reason: "the image has no ENTRYPOINT or CMD; give a command".into(),
        });
    }
    let (uid, gid) = resolve_user(
        rootfs,
        opts.user.as_deref().or(rc.user.as_deref()).unwrap_or(""),
    )?;
    let cwd = rc
        .working_dir
        .filter(|w| w.starts_with('/'))
        .unwrap_or_else(|| "/".into());
    let caps = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for f in ["/etc/resolv.conf", "/etc/hosts"] {
        if Path::new(f).is_file() {
            mounts.push(json!({"destination": f, "type": "bind", "source": f, "options": ["rbind", "ro", "rprivate"]}));
        }
    }
    for v in &opts.volumes {
        let host =
            std::fs::canonicalize(&v.host).map_err(|e| Error::io("resolve volume", &v.host, e))?;
        let mut o = vec!["rbind", "rprivate"];
        if v.readonly {
            o.push("ro");
        }
        mounts.push(
            json!({"destination": v.container, "type": "bind", "source": host, "options": o}),
        );
    }
    let mut devices = Vec::new();
    for d in &opts.devices {
        let meta = std::fs::metadata(&d.host).map_err(|e| Error::io("stat device", &d.host, e))?;
        let kind = if meta.file_type().is_char_device() {
            "c"
        } else if meta.file_type().is_block_device() {
            "b"
        } else {
            return Err(Error::InvalidOption {
                option: "--device",
                reason: format!("{} is not a device", d.host.display()),
            });
        };
        let (major, minor) = dev_numbers(meta.rdev());
        devices.push(json!({
            "path": d.container, "type": kind, "major": major, "minor": minor,
            "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid()
        }));
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": environment(image, &opts.env),
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "mount"}],
            "devices": devices,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    }))
}

/// Writes `config.json` into `bundle` (whose `rootfs/` holds the unpacked image).
pub fn write_bundle(bundle: &Path, spec: &Value) -> Result<()> {
    let path = bundle.join("config.json");
    let bytes = serde_json::to_vec_pretty(spec).map_err(|e| Error::json("runtime spec", e))?;
    std::fs::write(&path, bytes).map_err(|e| Error::io("write", &path, e))
}

/// Runs the bundle with `runc run` in the foreground (stdio inherited), forwarding SIGINT,
/// SIGTERM, SIGHUP and SIGQUIT to the container with `runc kill`, and returns the container's exit
/// code (128 + N when killed by signal N). The container is deleted afterwards.
pub async fn run_bundle(runc: &Path, state_root: &Path, bundle: &Path, id: &str) -> Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut child = tokio::process::Command::new(runc)
        .arg("--root")
        .arg(state_root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            Error::Runc(format!(
                "cannot start {}: {e} (install the runc package)",
                runc.display()
            ))
        })?;
    let sig = |k: SignalKind| {
        signal(k).map_err(|e| Error::Runc(format!("installing a signal handler: {e}")))
    };
    let (mut int, mut term, mut hup, mut quit) = (
        sig(SignalKind::interrupt())?,
        sig(SignalKind::terminate())?,
        sig(SignalKind::hangup())?,
        sig(SignalKind::quit())?,
    );
    let status = loop {
        let name = tokio::select! {
            s = child.wait() => break s.map_err(|e| Error::Runc(format!("waiting for runc: {e}")))?,
            _ = int.recv() => "INT",
            _ = term.recv() => "TERM",
            _ = hup.recv() => "HUP",
            _ = quit.recv() => "QUIT",
        };
        let _ = tokio::process::Command::new(runc)
            .arg("--root")
            .arg(state_root)
            .args(["kill", id, name])
            .stderr(Stdio::null())
            .status()
            .await;
    };
    let _ = tokio::process::Command::new(runc)
        .arg("--root")
        .arg(state_root)
        .args(["delete", "--force", id])
        .stderr(Stdio::null())
        .status()
        .await;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

/// Forwards TCP connections from `host_ip:host` to `127.0.0.1:container` until the task is
/// dropped (for `-p HOST:CTR` with different ports; equal ports need nothing under host
/// networking).
pub async fn forward_port(mapping: PortMapping) -> Result<tokio::task::JoinHandle<()>> {
    let addr = std::net::SocketAddr::new(mapping.host_ip, mapping.host);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io("listen on", addr.to_string(), e))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", mapping.container)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        let p: PortMapping = "8443:443".parse().unwrap();
        assert_eq!((p.host, p.container), (8443, 443));
        let p: PortMapping = "127.0.0.1:80:8080".parse().unwrap();
        assert_eq!(p.host_ip.to_string(), "127.0.0.1");
        assert_eq!("9000".parse::<PortMapping>().unwrap().container, 9000);
        assert!("0:1".parse::<PortMapping>().is_err() && "a:b".parse::<PortMapping>().is_err());
        let v: Volume = "/var/run/aesmd:/var/run/aesmd:ro".parse().unwrap();
        assert!(v.readonly);
        assert!("rel:/x".parse::<Volume>().is_err());
        let d: DeviceMapping = "/dev/sgx_enclave".parse().unwrap();
        assert_eq!(d.container, "/dev/sgx_enclave");
        let d: DeviceMapping = "/dev/isgx:/dev/sgx/enclave".parse().unwrap();
        assert_eq!(d.container, "/dev/sgx/enclave");
    }

    #[test]
    fn device_numbers() {
        // /dev/null is 1:3.
        let rdev = std::fs::metadata("/dev/null").unwrap().rdev();
        assert_eq!(dev_numbers(rdev), (1, 3));
    }

    #[test]
    fn users_resolve_from_the_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user(dir.path(), "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(dir.path(), "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_user(dir.path(), "1000").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(dir.path(), "42:7").unwrap(), (42, 7));
        assert!(resolve_user(dir.path(), "nobody").is_err());
    }
}
