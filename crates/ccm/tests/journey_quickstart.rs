//! The README's first command, exactly as a person runs it: `scripts/quickstart` (build, start
//! registry, quote helper, manager and agent, first user, follow the logs), then `scripts/demo`
//! against it (the seed tutorial with the CLI on the real python-flask image), then Ctrl-C,
//! then a rerun that continues with the same data.
//!
//! Only the state directory and the ports differ from the defaults (a temporary directory and
//! free ports, so the test can run next to others), and the script uses the `ccm` binary under
//! test instead of building its own (`cargo build -p ccm` resolves features for one package and
//! would rebuild much of the workspace; likewise the demo's scripts/build-flask-image runs the
//! `flask-image` example built with the tests); `--no-install` makes a missing package an
//! error instead of an `apt-get install` from inside a test (scripts/test installs them).

// Test helpers outside #[test] functions: a failed step panics with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod journey;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use journey::*;

struct Ports {
    manager: u16,
    registry: u16,
    agent: u16,
    pcs: u16,
}

fn quickstart(dir: &std::path::Path, ports: &Ports, extra_env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(repo_root().join("scripts/quickstart"));
    c.arg("--no-install")
        .env("CCM_QUICKSTART_DIR", dir)
        .env("CCM_QUICKSTART_MANAGER_PORT", ports.manager.to_string())
        .env("CCM_QUICKSTART_REGISTRY_PORT", ports.registry.to_string())
        .env("CCM_QUICKSTART_AGENT_PORT", ports.agent.to_string())
        .env("CCM_QUICKSTART_PCS_PORT", ports.pcs.to_string())
        .env("CCM_QUICKSTART_CCM", ccm_bin())
        .env_remove("CCM_CREDENTIALS");
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The `flask-image` example `cargo test` built next to this test (`target/<profile>/examples`),
/// so scripts/build-flask-image need not `cargo run` it with one package's features.
fn flask_image_example() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("examples/flask-image");
    bin.is_file().then_some(bin)
}

#[test]
fn quickstart_then_demo_then_ctrl_c_then_rerun() {
    let work = WorkDir::new("quickstart");
    let state = work.path().join("state");
    let ports = Ports {
        manager: free_port(),
        registry: free_port(),
        agent: free_port(),
        pcs: free_port(),
    };

    // 1. The quickstart, in the foreground, following its logs.
    let mut qs = Proc::spawn(
        "scripts/quickstart",
        quickstart(&state, &ports, &[]),
        &work.path().join("quickstart.log"),
    );
    qs.wait_for("Press Ctrl-C to stop everything", Duration::from_secs(600));
    let out = qs.output();
    for expected in [
        &format!("Console       https://127.0.0.1:{}/console", ports.manager),
        "First login   admin@example.com / ",
        "Node          quickstart-node, RUNNING, SIMULATED",
        "SIMULATED SGX platform",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    let login = std::fs::read_to_string(state.join("first-login.txt")).unwrap();
    assert!(login.contains("email: admin@example.com"), "{login}");
    for port in [ports.manager, ports.registry, ports.agent, ports.pcs] {
        assert!(listening(port), "port {port} not served");
    }

    // 2. The demo against it: the seed tutorial with the CLI.
    let mut demo = Command::new(repo_root().join("scripts/demo"));
    demo.env("CCM_QUICKSTART_DIR", &state)
        .env_remove("CCM_CREDENTIALS");
    if let Some(bin) = flask_image_example() {
        demo.env("CCM_FLASK_IMAGE_BIN", bin);
    }
    let mut d = Proc::spawn("scripts/demo", demo, &work.path().join("demo.log"));
    let status = d.wait_exit(Duration::from_secs(900));
    let demo_out = d.output();
    assert!(
        status.success(),
        "scripts/demo failed ({status}):\n{}",
        tail(&demo_out, 60)
    );
    for expected in [
        "$ ccm app create python-flask",
        "$ ccm image create --app python-flask --tag latest --wait",
        "conversion  SUCCEEDED",
        "$ ccm task approve",
        "DOMAIN_WHITELIST",
        "BUILD_WHITELIST",
        "ccm-launch: verified enclave",
        "ccm-launch: certificate for myapp.domain.dom written to /run/cert.pem",
        "Hello from python-flask in a simulated enclave",
        "node                 quickstart-node",
        "RUNNING",
        "ISSUED  myapp.domain.dom",
        "Deleted app python-flask",
    ] {
        assert!(
            demo_out.contains(expected),
            "{expected:?} missing from the demo's output:\n{demo_out}"
        );
    }
    eprintln!(
        "scripts/demo timings:\n{}",
        demo_out
            .lines()
            .skip_while(|l| !l.contains("Timings"))
            .take(4)
            .collect::<Vec<_>>()
            .join("\n")
    );

    // 3. Ctrl-C: everything stops, in order, and the ports are free again.
    qs.signal("INT");
    let status = qs.wait_exit(Duration::from_secs(90));
    let out = qs.output();
    assert_eq!(status.code(), Some(130), "{}", tail(&out, 20));
    for name in ["agent", "manager", "aesmd", "registry"] {
        assert!(
            out.contains(&format!("    {name} stopped")),
            "{name} was not stopped cleanly:\n{}",
            tail(&out, 20)
        );
    }
    assert!(!state.join("quickstart.pid").exists());
    for port in [ports.manager, ports.registry, ports.agent, ports.pcs] {
        assert!(!listening(port), "port {port} still served after Ctrl-C");
    }

    // 4. A rerun continues: same platform, same user, same node (no new enrollment).
    let mut again = Proc::spawn(
        "scripts/quickstart (rerun)",
        quickstart(&state, &ports, &[("CCM_QUICKSTART_EXIT_WHEN_READY", "1")]),
        &work.path().join("quickstart-rerun.log"),
    );
    let status = again.wait_exit(Duration::from_secs(600));
    let out = again.output();
    assert!(status.success(), "{}", tail(&out, 40));
    for expected in [
        "Reusing the SIMULATED SGX platform",
        "Logging the CLI in as admin@example.com",
        "Starting the node agent (already enrolled",
        "Node          quickstart-node, RUNNING, SIMULATED",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    let nodes = Command::new(state.join("bin/ccm"))
        .args(["node", "list"])
        .env("CCM_CREDENTIALS", state.join("cli/credentials.toml"))
        .output()
        .unwrap();
    // The manager is stopped again by now: the CLI says so clearly.
    assert!(!nodes.status.success());
    assert!(
        String::from_utf8_lossy(&nodes.stderr).contains("connecting to"),
        "{}",
        String::from_utf8_lossy(&nodes.stderr)
    );
}
