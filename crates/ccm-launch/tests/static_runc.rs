//! The shipped launcher (built by `scripts/build-launcher`): statically linked, and working in an
//! empty (scratch-like) root file system under runc; built without the simulated platform (the
//! default), it refuses to obtain a certificate from the manager's CA and says why.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ccm_enclave::{EnclaveParams, KeyType, MANIFEST_VERSION, Manifest, Runtime, TrustedFile};
use common::*;

/// Builds the static launcher, with the simulated platform when `simulation` (once at a time
/// across test processes), and returns its path.
fn static_launcher(simulation: bool) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-launcher");
    let lock_path = std::env::temp_dir().join("ccm-launch-static-build.lock");
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    let mut build = Command::new(&script);
    if simulation {
        build.arg("--simulation");
    }
    let out = build.output().unwrap();
    assert!(
        out.status.success(),
        "scripts/build-launcher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(path.is_file(), "{}", path.display());
    path
}

#[test]
fn the_shipped_launcher_is_static() {
    let bin = static_launcher(false);
    let data = std::fs::read(&bin).unwrap();
    // ELF64, little-endian, x86-64.
    assert_eq!(&data[..4], b"\x7fELF");
    assert_eq!((data[4], data[5]), (2, 1));
    assert_eq!(u16::from_le_bytes([data[18], data[19]]), 62);
    // No program interpreter (PT_INTERP = 3) among the program headers.
    let phoff = u64::from_le_bytes(data[32..40].try_into().unwrap()) as usize;
    let phentsize = u16::from_le_bytes([data[54], data[55]]) as usize;
    let phnum = u16::from_le_bytes([data[56], data[57]]) as usize;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
        assert_ne!(p_type, 3, "PT_INTERP: the binary needs a dynamic loader");
    }
    // And no shared library: readelf finds no NEEDED entry, ldd calls it static.
    let readelf = Command::new("readelf")
        .arg("-dW")
        .arg(&bin)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&readelf.stdout);
    assert!(!text.contains("(NEEDED)"), "{text}");
    let ldd = Command::new("ldd").arg(&bin).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        text.contains("statically linked") || text.contains("not a dynamic executable"),
        "{text}"
    );
    // It runs with an empty environment.
    let out = Command::new(&bin)
        .env_clear()
        .arg("--ccm-version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ccm-launch {}", env!("CARGO_PKG_VERSION"))
    );
}

/// A scratch root: nothing but the launcher, a static test app, the manifest and the SIGSTRUCT.
fn scratch_root(dir: &Path, launcher: &Path) -> (PathBuf, ccm_enclave::SignedEnclave) {
    let root = dir.join("bundle/rootfs");
    std::fs::create_dir_all(root.join("opt/ccm/bin")).unwrap();
    std::fs::create_dir_all(root.join("app")).unwrap();
    let app = root.join("app/hello");
    ccm_testkit::runc::compile_static_c(
        r#"#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
int main(int argc, char **argv) {
    struct stat st;
    int ok = stat("/run/secrets/key.pem", &st) == 0;
    printf("hello from scratch: key %s mode %o, GREETING=%s\n", ok ? "present" : "missing",
           ok ? (unsigned)(st.st_mode & 07777) : 0u, getenv("GREETING") ? getenv("GREETING") : "-");
    return 0;
}
"#,
        &dir.join("hello"),
    )
    .unwrap();
    std::fs::copy(dir.join("hello"), &app).unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    let launcher_bytes = std::fs::read(launcher).unwrap();
    let target = root.join("opt/ccm/bin/ccm-launch");
    std::fs::write(&target, &launcher_bytes).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app_bytes = std::fs::read(&app).unwrap();
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        runtime: Runtime {
            version: env!("CARGO_PKG_VERSION").into(),
            sha256: sha(&launcher_bytes),
        },
        entrypoint: vec!["/app/hello".into()],
        allow_runtime_args: false,
        env: [("GREETING".to_owned(), "measured".to_owned())].into(),
        passthrough_env: vec!["NODE_AGENT_BASE_URL".into(), "SGX_AESM_ADDR".into()],
        working_dir: "/".into(),
        user: String::new(),
        enclave: EnclaveParams::new(64 << 20, 2, false).unwrap(),
        certificates: vec![cert_request(KeyType::EcP256)],
        trusted_files: vec![
            TrustedFile {
                path: "/app/hello".into(),
                size: app_bytes.len() as u64,
                mode: 0o755,
                sha256: sha(&app_bytes),
            },
            TrustedFile {
                path: "/opt/ccm/bin/ccm-launch".into(),
                size: launcher_bytes.len() as u64,
                mode: 0o755,
                sha256: sha(&launcher_bytes),
            },
        ],
        symlinks: vec![],
        excluded_paths: ccm_enclave::DEFAULT_EXCLUDED_PATHS
            .iter()
            .map(|s| (*s).to_owned())
            .chain([
                "/opt/ccm/enclave.json".to_owned(),
                "/opt/ccm/enclave.sig".to_owned(),
            ])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let bytes = manifest.to_canonical_bytes().unwrap();
    let signed = sign(&bytes);
    std::fs::write(root.join("opt/ccm/enclave.json"), &bytes).unwrap();
    std::fs::write(
        root.join("opt/ccm/enclave.sig"),
        signed.sigstruct.as_bytes(),
    )
    .unwrap();
    (root, signed)
}

/// Runs the bundle's rootfs with runc: the launcher as the process, `env`, and optionally the
/// AESM socket directory mounted at /var/run/aesmd. Returns (exit code, stdout, stderr).
fn run_in_runc(
    dir: &Path,
    env: &[String],
    aesmd_dir: Option<&Path>,
    id: &str,
) -> (i32, String, String) {
    let bundle = dir.join("bundle");
    let caps = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_SETUID",
        "CAP_SETGID",
    ];
    let mut mounts = vec![
        serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
    ];
    if let Some(d) = aesmd_dir {
        mounts.push(serde_json::json!({"destination": "/var/run/aesmd", "type": "bind", "source": d, "options": ["rbind", "rprivate"]}));
    }
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/opt/ccm/bin/ccm-launch"],
            "env": env,
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "mounts": mounts,
        "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "mount"}]}
    });
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();
    let state = dir.join("runc-state");
    std::fs::create_dir_all(&state).unwrap();
    let out = Command::new(ccm_testkit::runc::runc().unwrap())
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn runs_in_an_empty_rootfs_under_runc() {
    let launcher = static_launcher(true);
    let work = tempfile::tempdir().unwrap();
    let (root, signed) = scratch_root(work.path(), &launcher);
    let id = format!("ccm-launch-test-{}", std::process::id());

    // Nothing but the launcher's own files: it verifies them, then needs the AESM socket.
    let (code, _, err) = run_in_runc(
        work.path(),
        &[
            "SGX_AESM_ADDR=1".into(),
            "NODE_AGENT_BASE_URL=http://127.0.0.1:9/v1/".into(),
        ],
        None,
        &format!("{id}-a"),
    );
    assert_eq!(code, 21, "{err}");
    assert!(
        err.contains(&format!("verified enclave {}", signed.mrenclave)),
        "{err}"
    );
    assert!(
        err.contains(
            "ccm-launch: error: cannot reach the AESM service at /var/run/aesmd/aesm.socket"
        ),
        "{err}"
    );

    // With the quote helper's directory mounted and a node-agent peer on the host: the whole
    // launch, in a scratch root, ending in the static app with its key on disk.
    let platform = Platform::start();
    let agent = AgentPeer::start(Behaviour::Issue {
        pending_polls: 1,
        lifetime_secs: 3600,
    });
    let (code, out, err) = run_in_runc(
        work.path(),
        &[
            "SGX_AESM_ADDR=1".into(),
            format!("NODE_AGENT_BASE_URL={}", agent.url),
            "GREETING=from the runtime".into(),
        ],
        Some(platform.socket().parent().unwrap()),
        &format!("{id}-b"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "hello from scratch: key present mode 600, GREETING=measured\n",
        "{err}"
    );
    let (_, quote) = &agent.requests()[0];
    assert_eq!(platform.verify(quote).report.mr_enclave, signed.mrenclave);
    let cert = std::fs::read_to_string(root.join("run/secrets/cert.pem")).unwrap();
    let key = std::fs::read_to_string(root.join("run/secrets/key.pem")).unwrap();
    assert_eq!(cert_spki(&cert), key_spki(&key));
}

/// The default build carries no simulator: with the quote helper mounted and a node agent that
/// would issue, it verifies the image, then stops before asking the agent for anything, with
/// exit code 20 and a message that says how to build a launcher that can attest.
#[test]
fn a_launcher_built_without_simulation_refuses_simulated_attestation() {
    let launcher = static_launcher(false);
    let work = tempfile::tempdir().unwrap();
    let (root, signed) = scratch_root(work.path(), &launcher);
    let platform = Platform::start();
    let agent = AgentPeer::start(Behaviour::Issue {
        pending_polls: 0,
        lifetime_secs: 3600,
    });
    let (code, out, err) = run_in_runc(
        work.path(),
        &[
            "SGX_AESM_ADDR=1".into(),
            format!("NODE_AGENT_BASE_URL={}", agent.url),
        ],
        Some(platform.socket().parent().unwrap()),
        &format!("ccm-launch-nosim-{}", std::process::id()),
    );
    assert_eq!(code, 20, "{err}");
    assert!(
        err.contains(&format!("verified enclave {}", signed.mrenclave)),
        "{err}"
    );
    assert!(
        err.contains("ccm-launch: error: this launcher was built without the simulated platform")
            && err.contains("scripts/build-launcher --simulation")
            && err.contains("/var/run/aesmd/aesm.socket"),
        "{err}"
    );
    assert_eq!(out, "", "the app must not start");
    assert!(agent.requests().is_empty(), "nothing was sent to the agent");
    assert!(!root.join("run/secrets/key.pem").exists());
}
