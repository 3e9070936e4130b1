//! Starting the application: environment, user, program, `exec`.
//!
//! The application gets exactly the manifest's measured environment plus the variables named in
//! `passthrough_env` that are set in the container; nothing else of the container's environment
//! reaches it (`HOME`, `HOSTNAME` and the launcher's `CCM_LAUNCH_*` settings included, unless
//! passed through). Its arguments are the measured entrypoint, or, when the manifest allows
//! runtime arguments and some were given, the measured program with those arguments. The process
//! image is replaced (`execve`): the application keeps the launcher's pid, so it is PID 1 in a
//! container and receives the runtime's signals directly.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ccm_enclave::Manifest;

use crate::error::LaunchError;

/// Docker's default `PATH`, used to find the program when the measured environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The application's environment: measured variables, then the passthrough ones present in
/// `container_env` (a passthrough value overrides a measured one of the same name).
pub fn app_env(
    manifest: &Manifest,
    container_env: impl Fn(&str) -> Option<OsString>,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = manifest
        .env
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    for name in &manifest.passthrough_env {
        if let Some(v) = container_env(name) {
            env.insert(OsString::from(name), v);
        }
    }
    env
}

/// The application's argv: the measured entrypoint, or its program with the runtime arguments.
pub fn app_argv(
    manifest: &Manifest,
    runtime_args: &[OsString],
) -> Result<Vec<OsString>, LaunchError> {
    let mut argv: Vec<OsString> = manifest.entrypoint.iter().map(OsString::from).collect();
    if let Some(first) = runtime_args.first() {
        if !manifest.allow_runtime_args {
            return Err(LaunchError::RuntimeArgs {
                count: runtime_args.len(),
                first: first.to_string_lossy().into_owned(),
            });
        }
        argv.truncate(1);
        argv.extend(runtime_args.iter().cloned());
    }
    Ok(argv)
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves the program under `root`: a name with a `/` is taken as is (relative to the working
/// directory when relative), a bare name is searched in `PATH` (of the application's
/// environment, else [`DEFAULT_PATH`]).
pub fn resolve_program(
    root: &Path,
    program: &OsStr,
    working_dir: &Path,
    env: &BTreeMap<OsString, OsString>,
) -> Result<PathBuf, LaunchError> {
    let name = program.to_string_lossy();
    if program.as_bytes().contains(&b'/') {
        let p = Path::new(program);
        let full = if p.is_absolute() {
            root.join(p.strip_prefix("/").unwrap_or(p))
        } else {
            working_dir.join(p)
        };
        return Ok(full);
    }
    let path = env
        .get(OsStr::new("PATH"))
        .cloned()
        .unwrap_or_else(|| OsString::from(DEFAULT_PATH));
    for dir in std::env::split_paths(&path) {
        if !dir.is_absolute() {
            continue;
        }
        let candidate = root
            .join(dir.strip_prefix("/").unwrap_or(&dir))
            .join(program);
        if is_executable_file(&candidate) {
            return Ok(candidate);
        }
    }
    Err(LaunchError::Exec {
        program: name.into_owned(),
        reason: format!("not found in PATH {:?}", path.to_string_lossy()),
    })
}

/// Resolves the manifest's `user[:group]` (numbers, or names from the image's `/etc/passwd` and
/// `/etc/group`). Empty means root.
pub fn resolve_user(root: &Path, spec: &str) -> Result<(u32, u32), LaunchError> {
    if spec.is_empty() {
        return Ok((0, 0));
    }
    let bad = |why: String| LaunchError::Exec {
        program: format!("(user {spec:?})"),
        reason: why,
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(root.join("etc").join(file)).ok()?;
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
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, lookup_by_uid(root, uid).unwrap_or(0)),
        Err(_) => lookup("passwd", user)
            .ok_or_else(|| bad(format!("user {user:?} is not in the image's /etc/passwd")))?,
    };
    let gid = match group {
        None | Some("") => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup("group", g)
                .map(|(gid, _)| gid)
                .ok_or_else(|| bad(format!("group {g:?} is not in the image's /etc/group")))?,
        },
    };
    Ok((uid, gid))
}

fn lookup_by_uid(root: &Path, uid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f.get(3)?.parse().ok())?
    })
}

/// Who the application runs as, when the launcher has to switch: only when it runs as root and
/// the manifest names another user (normally the container runtime has already applied the
/// image's USER).
pub fn target_owner(root: &Path, manifest: &Manifest) -> Result<Option<(u32, u32)>, LaunchError> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let (uid, gid) = resolve_user(root, &manifest.user)?;
    Ok((uid != 0 || gid != 0).then_some((uid, gid)))
}

/// Replaces this process with the application. Returns only on failure.
pub fn exec_app(
    program: &Path,
    argv: &[OsString],
    env: &BTreeMap<OsString, OsString>,
    working_dir: &Path,
    owner: Option<(u32, u32)>,
) -> LaunchError {
    let mut cmd = Command::new(program);
    if let Some(arg0) = argv.first() {
        cmd.arg0(arg0);
    }
    cmd.args(argv.iter().skip(1))
        .env_clear()
        .envs(env)
        .current_dir(working_dir);
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    let err = cmd.exec();
    let reason = match err.kind() {
        std::io::ErrorKind::NotFound if !working_dir.is_dir() => {
            format!("working directory {} does not exist", working_dir.display())
        }
        _ => format!("{} ({})", err, program.display()),
    };
    LaunchError::Exec {
        program: argv
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        serde_json::from_value(serde_json::json!({
            "version": 1,
            "runtime": {"version": "t", "sha256": "00".repeat(32)},
            "entrypoint": ["/app/server", "--port", "8443"],
            "allow_runtime_args": false,
            "env": {"PATH": "/usr/bin:/bin", "MODE": "measured"},
            "passthrough_env": ["MODE", "NODE_AGENT_BASE_URL", "SGX_AESM_ADDR"],
            "working_dir": "/app",
            "user": "",
            "enclave": {"mem_size": 65536, "size": 65536, "threads": 1, "stack_size": 4096, "debug": false},
            "certificates": [],
            "trusted_files": [],
            "symlinks": [],
            "excluded_paths": []
        }))
        .unwrap()
    }

    #[test]
    fn env_is_measured_plus_passthrough_only() {
        let m = manifest();
        let env = app_env(&m, |k| match k {
            "NODE_AGENT_BASE_URL" => Some("http://10.0.0.4:9092/v1/".into()),
            "MODE" => Some("runtime".into()),
            "HOME" => Some("/root".into()),
            _ => None,
        });
        let got: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
            .collect();
        assert_eq!(
            got,
            [
                ("MODE".to_owned(), "runtime".to_owned()),
                (
                    "NODE_AGENT_BASE_URL".into(),
                    "http://10.0.0.4:9092/v1/".into()
                ),
                ("PATH".into(), "/usr/bin:/bin".into()),
            ]
        );
    }

    #[test]
    fn runtime_args_only_when_allowed() {
        let mut m = manifest();
        assert_eq!(
            app_argv(&m, &[]).unwrap(),
            ["/app/server", "--port", "8443"]
        );
        let e = app_argv(&m, &["--debug".into()]).unwrap_err();
        assert_eq!(e.exit_code(), 13);
        assert!(e.to_string().contains("\"--debug\""), "{e}");
        m.allow_runtime_args = true;
        assert_eq!(
            app_argv(&m, &["--debug".into()]).unwrap(),
            ["/app/server", "--debug"]
        );
    }

    #[test]
    fn program_and_user_resolution_under_a_root() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("tool"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(bin.join("data"), b"x").unwrap();
        let env: BTreeMap<OsString, OsString> = [("PATH".into(), "/nope:/usr/bin".into())].into();
        let wd = root.path().join("app");
        assert_eq!(
            resolve_program(root.path(), OsStr::new("tool"), &wd, &env).unwrap(),
            bin.join("tool")
        );
        assert!(resolve_program(root.path(), OsStr::new("data"), &wd, &env).is_err());
        assert_eq!(
            resolve_program(root.path(), OsStr::new("/usr/bin/x"), &wd, &env).unwrap(),
            root.path().join("usr/bin/x")
        );
        assert_eq!(
            resolve_program(root.path(), OsStr::new("./run.sh"), &wd, &env).unwrap(),
            wd.join("./run.sh")
        );

        let etc = root.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user(root.path(), "").unwrap(), (0, 0));
        assert_eq!(resolve_user(root.path(), "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(root.path(), "1000").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(root.path(), "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_user(root.path(), "7:8").unwrap(), (7, 8));
        assert!(resolve_user(root.path(), "ghost").is_err());
        assert!(resolve_user(root.path(), "app:ghosts").is_err());
    }
}
