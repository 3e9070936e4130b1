//! Shared parts of the journey tests (`tests/journey_*.rs`): the seed journey's world made of real
//! processes on loopback.
//!
//! * a simulated SGX platform (`ccm sim init`) and the quote helper `ccm aesmd` serving it on a
//!   socket in its own directory (mounted into containers at `/var/run/aesmd`, as the seed does);
//! * the platform's collateral service `ccm sim pcs` (the PCS API v4);
//! * Debian's `docker-registry` with htpasswd authentication (ccm-testkit);
//! * `ccm manager` (SQLite, HTTPS with its self-signed certificate, the simulated root trusted
//!   with `--trust-simulated-root`, collateral fetched from `ccm sim pcs` with `--pccs`, the
//!   registry named insecure, the static launcher);
//! * the operator: the `ccm` CLI with its own credentials file (`CCM_CREDENTIALS`);
//! * `ccm agent`, enrolled with a join token made by the CLI (or with the command the console
//!   shows);
//! * converted images run with `ccm run` (runc) on the host network.
//!
//! Every process logs to a file in the world's directory; failures quote the end of the logs that
//! matter. The directory is kept (and its path printed) when a test fails.
// Test support: a failed step panics with its reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ccm_testkit::registry::Registry;
use serde_json::Value;

/// The domain of the seed tutorial's certificate configuration.
pub const DOMAIN: &str = "myapp.domain.dom";
/// The operator's password.
pub const PASSWORD: &str = "correct horse battery staple";
/// The registry user.
pub const REGISTRY_USER: &str = "journey";
/// The registry password.
pub const REGISTRY_PASSWORD: &str = "registry-secret";

/// The `ccm` binary under test.
pub fn ccm_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ccm"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The static launcher with the simulated platform (the journeys' nodes are simulated), built
/// once per test process with `scripts/build-launcher --simulation` (a no-op when it is up to
/// date; concurrent builds wait on the script's lock).
pub fn launcher() -> PathBuf {
    static LAUNCHER: OnceLock<PathBuf> = OnceLock::new();
    LAUNCHER
        .get_or_init(|| {
            let out = Command::new(repo_root().join("scripts/build-launcher"))
                .arg("--simulation")
                .output()
                .expect("running scripts/build-launcher");
            assert!(
                out.status.success(),
                "scripts/build-launcher failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
            assert!(path.is_file(), "{} missing", path.display());
            path
        })
        .clone()
}

/// A free TCP port on 127.0.0.1 (bound and released: the caller binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A background process with its output in a log file. Dropping it stops it: SIGTERM, then
/// SIGKILL after a grace period.
pub struct Proc {
    /// A short name for messages.
    pub name: String,
    child: Option<Child>,
    /// stdout + stderr.
    pub log: PathBuf,
    /// Extra cleanup run after the process is gone (e.g. deleting a runc container).
    cleanup: Option<Box<dyn FnOnce() + Send>>,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
            cleanup: None,
        }
    }

    /// Runs `f` after the process has been stopped (on drop or [`Proc::stop`]).
    pub fn on_stop(&mut self, f: impl FnOnce() + Send + 'static) {
        self.cleanup = Some(Box::new(f));
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything logged so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits until a log line contains `marker` and returns that line. Fails with the log's tail
    /// if the process exits first or `timeout` passes.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> String {
        self.wait_for_any(&[marker], timeout).1
    }

    /// Waits until a log line contains one of `markers`; returns its index and the line.
    pub fn wait_for_any(&mut self, markers: &[&str], timeout: Duration) -> (usize, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.output();
            for line in text.lines() {
                if let Some(i) = markers.iter().position(|m| line.contains(m)) {
                    return (i, line.to_string());
                }
            }
            if let Some(status) = self.exited() {
                // One more look: the line may have been written just before the exit.
                let text = self.output();
                if let Some((i, l)) = text.lines().find_map(|l| {
                    markers
                        .iter()
                        .position(|m| l.contains(m))
                        .map(|i| (i, l.to_string()))
                }) {
                    return (i, l);
                }
                panic!(
                    "{} exited ({status}) before logging any of {markers:?}; its log:\n{}",
                    self.name,
                    tail(&text, 40)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not log any of {markers:?} within {timeout:?}; its log:\n{}",
                    self.name,
                    tail(&text, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} still running after {timeout:?}; its log:\n{}",
                    self.name,
                    tail(&self.output(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`TERM`, `INT`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            send_signal(c.id(), signal);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut status = None;
        if let Some(mut c) = self.child.take() {
            status = c.try_wait().ok().flatten();
            if status.is_none() {
                send_signal(c.id(), "TERM");
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline {
                    if let Ok(Some(s)) = c.try_wait() {
                        status = Some(s);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                if status.is_none() {
                    let _ = c.kill();
                    status = c.wait().ok();
                }
            }
        }
        if let Some(f) = self.cleanup.take() {
            f();
        }
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Sends `signal` to `pid` with the shell's `kill` builtin (no signal crate needed).
pub fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -{signal} {pid}")])
        .stderr(Stdio::null())
        .status();
}

/// A test's working directory: removed at the end, kept (and printed) when the test fails.
pub struct WorkDir(Option<tempfile::TempDir>);

impl WorkDir {
    /// A fresh directory `ccm-journey-<name>-XXXX` under the system temp directory.
    pub fn new(name: &str) -> WorkDir {
        WorkDir(Some(
            tempfile::Builder::new()
                .prefix(&format!("ccm-journey-{name}-"))
                .tempdir()
                .unwrap(),
        ))
    }

    /// The path.
    pub fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(d) = self.0.take()
        {
            eprintln!("journey: keeping {} for inspection", d.keep().display());
        }
    }
}

/// The journey's world. Fields drop in declaration order: containers first, the directory last.
pub struct World {
    /// Containers started with [`World::run_image`].
    pub containers: Vec<Proc>,
    /// The node agent, once enrolled.
    pub agent: Option<Proc>,
    /// `http://127.0.0.1:PORT/v1/`.
    pub agent_url: String,
    /// The manager.
    pub manager: Proc,
    /// `https://127.0.0.1:PORT`.
    pub manager_url: String,
    /// The manager's certificate fingerprint (hex).
    pub fingerprint: String,
    /// The quote helper.
    pub aesmd: Proc,
    /// The simulated collateral service (`ccm sim pcs`).
    pub pcs: Proc,
    /// The registry (htpasswd auth).
    pub registry: Registry,
    /// The simulated platform directory.
    pub platform: PathBuf,
    /// The directory holding `aesm.socket` and `ccm-sim-cpu.key` (mounted at `/var/run/aesmd`).
    pub aesmd_dir: PathBuf,
    /// The CLI credentials file.
    pub credentials: PathBuf,
    /// The working directory.
    pub dir: WorkDir,
}

/// Bounded waits of the world.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

impl World {
    /// Starts platform, quote helper, registry and manager; signs the operator up and creates
    /// and selects an account `account` (manual approvals).
    pub fn start(name: &str, account: &str) -> World {
        let w = World::start_infrastructure(name);
        w.cli_sign_up(&format!("operator-{name}@example.com"));
        w.ccm_ok(&[
            "account",
            "create",
            account,
            "--select",
            "--allow-simulated",
        ]);
        w
    }

    /// Starts platform, quote helper, registry and manager only: no user, no account (for
    /// journeys that sign up elsewhere, e.g. in the console).
    pub fn start_infrastructure(name: &str) -> World {
        let dir = WorkDir::new(name);
        let d = dir.path().to_path_buf();
        let launcher = launcher();
        let platform = d.join("sim/platform");
        let out = Command::new(ccm_bin())
            .args(["sim", "init", "--dir"])
            .arg(&platform)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ccm sim init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let aesmd_dir = d.join("aesmd");
        std::fs::create_dir_all(&aesmd_dir).unwrap();
        let socket = aesmd_dir.join("aesm.socket");
        let mut cmd = Command::new(ccm_bin());
        cmd.args(["aesmd", "--platform"])
            .arg(&platform)
            .arg("--socket")
            .arg(&socket);
        let mut aesmd = Proc::spawn("ccm aesmd", cmd, &d.join("aesmd.log"));
        aesmd.wait_for("listening", START_TIMEOUT);
        let key = aesmd_dir.join("ccm-sim-cpu.key");
        let deadline = Instant::now() + START_TIMEOUT;
        while !(key.is_file() && std::os::unix::net::UnixStream::connect(&socket).is_ok()) {
            assert!(
                Instant::now() < deadline,
                "ccm aesmd: no socket and key in {}: {}",
                aesmd_dir.display(),
                aesmd.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }

        let mut cmd = Command::new(ccm_bin());
        cmd.args(["sim", "pcs", "--dir"])
            .arg(&platform)
            .args(["--listen", "127.0.0.1:0"]);
        let mut pcs = Proc::spawn("ccm sim pcs", cmd, &d.join("pcs.log"));
        let line = pcs.wait_for("http://", START_TIMEOUT);
        let pcs_url = line.rsplit(' ').next().unwrap().trim().to_string();

        let registry = Registry::start_with_auth(REGISTRY_USER, REGISTRY_PASSWORD).unwrap();

        let mut cmd = Command::new(ccm_bin());
        cmd.args(["manager", "--data-dir"])
            .arg(d.join("manager"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--open-signup",
                "--trust-simulated-root",
            ])
            .arg(platform.join("root-ca.pem"))
            .args(["--pccs", &pcs_url])
            .env("CCM_INSECURE_REGISTRIES", registry.host())
            .env("CCM_LAUNCHER", &launcher)
            .env("RUST_LOG", "info");
        let mut manager = Proc::spawn("ccm manager", cmd, &d.join("manager.log"));
        let line = manager.wait_for("ccm manager listening on", START_TIMEOUT);
        let manager_url = line.rsplit(' ').next().unwrap().trim().to_string();
        let fp = manager.wait_for("fingerprint:", START_TIMEOUT);
        let fingerprint = fp.rsplit(' ').next().unwrap().trim().to_string();

        World {
            containers: Vec::new(),
            agent: None,
            agent_url: String::new(),
            manager,
            manager_url,
            fingerprint,
            aesmd,
            pcs,
            registry,
            platform,
            aesmd_dir,
            credentials: d.join("cli/credentials.toml"),
            dir,
        }
    }

    /// `ccm login --signup` with `email` and [`PASSWORD`] (the CLI's credentials file).
    pub fn cli_sign_up(&self, email: &str) {
        let mut login = self.ccm_cmd(&[
            "login",
            "--manager",
            &self.manager_url,
            "--fingerprint",
            &self.fingerprint,
            "--email",
            email,
            "--password-stdin",
            "--signup",
        ]);
        // The first sign-up presents the setup token and administers the manager.
        let setup_token = self.dir.path().join("manager/setup-token");
        if setup_token.exists() {
            login.arg("--setup-token-file").arg(&setup_token);
        }
        login
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = login.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ccm login --signup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The world's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The quote helper's socket.
    pub fn socket(&self) -> PathBuf {
        self.aesmd_dir.join("aesm.socket")
    }

    /// A `ccm` command with the operator's credentials.
    pub fn ccm_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(ccm_bin());
        c.args(args)
            .env("CCM_CREDENTIALS", &self.credentials)
            .env_remove("CCM_REGISTRY_CREDS")
            .env_remove("CCM_OUTPUT_CREDS")
            .env_remove("CCM_INPUT_CREDS")
            .env_remove("CCM_CREDS");
        c
    }

    /// Runs a `ccm` command; returns its output whatever the exit status.
    pub fn ccm(&self, args: &[&str]) -> Output {
        self.ccm_cmd(args).output().unwrap()
    }

    /// Runs a `ccm` command that must succeed; returns its standard output.
    pub fn ccm_ok(&self, args: &[&str]) -> String {
        let out = self.ccm(args);
        assert!(
            out.status.success(),
            "ccm {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a `ccm` command with `--output json` that must succeed; returns the JSON.
    pub fn ccm_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let text = self.ccm_ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ccm {a:?}: {e}: {text}"))
    }

    /// `user:password` of the registry.
    pub fn registry_creds(&self) -> String {
        format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}")
    }

    /// The seed tutorial's app: `name`, input and output images on the test registry, the
    /// tutorial's certificate configuration (domain, manager CA, RSA 2048, /run/key.pem,
    /// /run/cert.pem). Returns the app as JSON.
    pub fn create_app(
        &self,
        name: &str,
        input: &str,
        output: &str,
        mem_size_mb: u32,
        threads: u32,
    ) -> Value {
        self.ccm_json(&[
            "app",
            "create",
            name,
            "--description",
            "The seed journey's application",
            "--input-image",
            input,
            "--output-image",
            output,
            "--isvprodid",
            "1",
            "--isvsvn",
            "1",
            "--mem-size",
            &mem_size_mb.to_string(),
            "--threads",
            &threads.to_string(),
            "--domain",
            DOMAIN,
            "--cert-subject",
            DOMAIN,
            "--key-type",
            "rsa2048",
            "--key-path",
            "/run/key.pem",
            "--cert-path",
            "/run/cert.pem",
            "--allow-simulated",
        ])
    }

    /// `ccm image create --app APP --tag TAG --wait` with the registry credentials in
    /// `CCM_REGISTRY_CREDS`; returns the image (build) JSON and the wall time.
    pub fn create_image(&self, app: &str, tag: &str) -> (Value, Duration) {
        let t = Instant::now();
        let out = self
            .ccm_cmd(&[
                "image", "create", "--app", app, "--tag", tag, "--wait", "--output", "json",
            ])
            .env("CCM_REGISTRY_CREDS", self.registry_creds())
            .output()
            .unwrap();
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "ccm image create: {}\nmanager log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.manager.output(), 30)
        );
        (serde_json::from_slice(&out.stdout).unwrap(), took)
    }

    /// Approves the tutorial's two kinds of tasks (DOMAIN_WHITELIST, BUILD_WHITELIST) in
    /// progress; returns the types approved, sorted. (Certificate requests waiting for them,
    /// CERTIFICATE_ISSUANCE tasks, are not approved directly: they are issued once these are.)
    pub fn approve_all(&self) -> Vec<String> {
        let tasks = self.ccm_json(&["task", "list", "--status", "INPROGRESS"]);
        let mut types = Vec::new();
        for t in tasks.as_array().unwrap() {
            let kind = t["task_type"].as_str().unwrap();
            if kind != "DOMAIN_WHITELIST" && kind != "BUILD_WHITELIST" {
                continue;
            }
            let id = t["task_id"].as_str().unwrap();
            let done = self.ccm_json(&["task", "approve", id]);
            assert_eq!(done["status"]["status"], "SUCCESS", "{done}");
            types.push(kind.to_string());
        }
        types.sort();
        types
    }

    /// Creates a join token with the CLI and starts `ccm agent` with it on an ephemeral port.
    pub fn enroll_node(&mut self, name: &str) {
        let token = self.ccm_ok(&[
            "zone",
            "token",
            "create",
            "--single-use",
            "--expires-in",
            "600",
        ]);
        self.start_agent(name, token.trim());
    }

    /// Starts `ccm agent` with `token` (the join token in `CCM_JOIN_TOKEN`, out of the process
    /// list).
    pub fn start_agent(&mut self, name: &str, token: &str) {
        let mut cmd = Command::new(ccm_bin());
        cmd.args(["agent", "--manager", &self.manager_url])
            .env("CCM_JOIN_TOKEN", token);
        self.spawn_agent(cmd, name);
    }

    /// Starts the agent with a command line as an operator copies it (`ccm agent --manager URL
    /// --join-token TOKEN`, split at spaces; `ccm` is the binary under test), followed by this
    /// node's own settings.
    pub fn start_agent_command(&mut self, name: &str, command_line: &str) {
        let mut words = command_line.split_whitespace();
        assert_eq!(
            words.next(),
            Some("ccm"),
            "not a ccm command: {command_line}"
        );
        let mut cmd = Command::new(ccm_bin());
        cmd.args(words).env_remove("CCM_JOIN_TOKEN");
        self.spawn_agent(cmd, name);
    }

    /// Adds the node's settings to an agent command (API on an ephemeral port, the world's quote
    /// helper and state directory, `name`; no collateral: the manager fetches it) and starts it.
    fn spawn_agent(&mut self, mut cmd: Command, name: &str) {
        cmd.args(["--listen", "127.0.0.1:0"])
            .arg("--aesm-socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.path().join("agent"))
            .args(["--name", name])
            .env_remove("CCM_MANAGER_URL")
            .env("RUST_LOG", "info");
        let mut agent = Proc::spawn("ccm agent", cmd, &self.path().join("agent.log"));
        let line = agent.wait_for("serving the node-agent API on", START_TIMEOUT);
        self.agent_url = line.rsplit(' ').next().unwrap().trim().to_string();
        self.agent = Some(agent);
    }

    /// The agent's `host:port`.
    pub fn agent_addr(&self) -> String {
        self.agent_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_string()
    }

    /// The `ccm run` arguments of the seed tutorial: the SGX device when the host has one, the
    /// quote helper's directory at `/var/run/aesmd`, `SGX_AESM_ADDR=1`, the node agent's URL.
    pub fn seed_run_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for dev in ["/dev/sgx_enclave", "/dev/isgx"] {
            if Path::new(dev).exists() {
                a.extend(["--device".to_string(), dev.to_string()]);
                break;
            }
        }
        a.extend([
            "-v".to_string(),
            format!("{}:/var/run/aesmd", self.aesmd_dir.display()),
            "-e".into(),
            "SGX_AESM_ADDR=1".into(),
            "-e".into(),
            format!("NODE_AGENT_BASE_URL={}", self.agent_url),
        ]);
        a
    }

    /// Starts `ccm run [extra] IMAGE` in the background (bundle under the world's directory);
    /// returns its index in `containers`. Stopping it stops the container; a container that
    /// does not stop on SIGTERM (the launcher waiting as PID 1) is killed with runc.
    pub fn run_image(&mut self, name: &str, image: &str, extra: &[String]) -> usize {
        let bundle = self.path().join(format!("bundle-{name}"));
        let mut args: Vec<String> = vec![
            "run".into(),
            "--insecure-registry".into(),
            self.registry.host(),
            "--bundle-dir".into(),
            bundle.display().to_string(),
        ];
        args.extend(self.seed_run_args());
        args.extend(extra.iter().cloned());
        args.push(image.to_string());
        let mut cmd = Command::new(ccm_bin());
        cmd.args(&args).env("CCM_CREDS", self.registry_creds());
        let mut p = Proc::spawn(
            &format!("ccm run {name}"),
            cmd,
            &self.path().join(format!("run-{name}.log")),
        );
        let state = bundle.join("runc-state");
        p.on_stop(move || kill_containers(&state));
        self.containers.push(p);
        self.containers.len() - 1
    }

    /// The zone CA certificate (PEM) from the CLI.
    pub fn zone_ca(&self) -> String {
        let out = self.path().join("zone-ca.pem");
        self.ccm_ok(&["zone", "certificate", "--out-file", out.to_str().unwrap()]);
        std::fs::read_to_string(out).unwrap()
    }
}

/// Kills and deletes every container under a runc state root.
pub fn kill_containers(state: &Path) {
    let Ok(runc) = ccm_testkit::runc::runc() else {
        return;
    };
    let Ok(out) = Command::new(&runc)
        .arg("--root")
        .arg(state)
        .args(["list", "-q"])
        .output()
    else {
        return;
    };
    for id in String::from_utf8_lossy(&out.stdout).lines() {
        let id = id.trim();
        if id.is_empty() {
            continue;
        }
        let _ = Command::new(&runc)
            .arg("--root")
            .arg(state)
            .args(["kill", id, "KILL"])
            .output();
        let _ = Command::new(&runc)
            .arg("--root")
            .arg(state)
            .args(["delete", "--force", id])
            .output();
    }
}

/// Pushes an OCI layout image `oci:DIR:NAME` to `reference` with the registry's credentials.
pub fn push_layout(registry: &Registry, layout: &Path, name: &str, reference: &str) -> String {
    use ccm_image::{
        Credentials, Destination, Location, NoProgress, Registries, RegistryOptions, Source,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let regs = Registries::new(&RegistryOptions {
            insecure: vec![registry.host()],
            ..Default::default()
        })
        .unwrap();
        let src = Source::open(
            &format!("oci:{}:{name}", layout.display()).parse().unwrap(),
            &regs,
            None,
        )
        .await
        .unwrap();
        let creds = Credentials::parse(&registry.credentials().unwrap());
        let dst = Destination::open(&reference.parse::<Location>().unwrap(), &regs, creds)
            .await
            .unwrap();
        ccm_image::copy(
            &src,
            &dst,
            &ccm_image::oci::Platform::linux_amd64(),
            &NoProgress,
        )
        .await
        .unwrap()
        .to_string()
    })
}

/// Compiles `tests/journey/https_server.c` statically (glibc + OpenSSL from `libssl-dev`).
pub fn build_https_server(out: &Path) {
    let src = out.with_extension("c");
    std::fs::write(&src, include_str!("https_server.c")).unwrap();
    let o = Command::new("cc")
        .args(["-static", "-O2", "-s", "-o"])
        .arg(out)
        .arg(&src)
        .args(["-lssl", "-lcrypto", "-lpthread"])
        .output()
        .expect("cc (install gcc, libc6-dev and libssl-dev)");
    assert!(
        o.status.success(),
        "cc -static https_server.c: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// What an HTTPS request returned.
pub struct HttpsAnswer {
    /// The response (status line, headers, body).
    pub response: String,
    /// The server's certificate chain (DER), leaf first.
    pub chain: Vec<Vec<u8>>,
}

/// `GET /` over TLS to `addr` with SNI `domain`, trusting only `ca_pem`: the handshake succeeds
/// only if the server's certificate chains to that CA and names `domain`.
pub fn https_get(
    addr: SocketAddr,
    domain: &str,
    ca_pem: &str,
    path: &str,
) -> Result<HttpsAnswer, String> {
    use rustls_pki_types::{CertificateDer, ServerName};
    let ca = ::pem::parse(ca_pem).map_err(|e| e.to_string())?;
    let config =
        ccm_pki::pinning::client_config_with_roots(&[CertificateDer::from(ca.contents().to_vec())])
            .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(domain.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("TLS: {e}"))?;
    let mut buf = Vec::new();
    match tls.read_to_end(&mut buf) {
        Ok(_) => {}
        // Servers that close without close_notify: keep what was read.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(format!("TLS read: {e}")),
    }
    let chain = tls
        .conn
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect())
        .unwrap_or_default();
    Ok(HttpsAnswer {
        response: String::from_utf8_lossy(&buf).into_owned(),
        chain,
    })
}

/// Polls [`https_get`] until it answers, the container exits, or `timeout` passes.
pub fn wait_https(
    container: &mut Proc,
    addr: SocketAddr,
    ca_pem: &str,
    path: &str,
    timeout: Duration,
) -> HttpsAnswer {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match https_get(addr, DOMAIN, ca_pem, path) {
            Ok(a) => return a,
            Err(e) => e,
        };
        if let Some(s) = container.exited() {
            panic!(
                "{} exited ({s}) before serving HTTPS on {addr}; its log:\n{}",
                container.name,
                tail(&container.output(), 40)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no HTTPS answer from {addr} within {timeout:?} (last error: {last}); {} log:\n{}",
            container.name,
            tail(&container.output(), 40)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks the served certificate: it is for `DOMAIN`, labelled SIMULATED, chains through the
/// zone's simulated intermediate to the zone CA (already checked by the handshake; here the
/// signatures once more), and carries the attestation
/// evidence: a quote that verifies under the simulated root, states `mrenclave`, and binds the
/// leaf's public key.
pub fn check_attested_certificate(w: &World, chain: &[Vec<u8>], ca_pem: &str, mrenclave: &str) {
    use ccm_attest::{Collateral, RootKind, TrustRoot, TrustRoots, Verifier};
    use sha2::Digest as _;
    use x509_parser::prelude::*;
    let leaf_der = chain.first().expect("the server sent no certificate");
    let ca_der = ::pem::parse(ca_pem).unwrap().contents().to_vec();
    let (_, leaf) = X509Certificate::from_der(leaf_der).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    // Simulated: the leaf comes from the zone's simulated intermediate, which the server sends
    // after it and which the zone CA signed.
    let sim_der = chain
        .get(1)
        .expect("the server sent the simulated intermediate");
    let (_, sim) = X509Certificate::from_der(sim_der).unwrap();
    assert!(sim.subject().to_string().contains("OU=SIMULATED"));
    sim.verify_signature(Some(ca.public_key()))
        .expect("the simulated intermediate is signed by the zone CA");
    leaf.verify_signature(Some(sim.public_key()))
        .expect("the leaf is signed by the simulated intermediate");
    let san = leaf.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(san.general_names, vec![GeneralName::DNSName(DOMAIN)]);
    assert!(
        leaf.subject().to_string().contains("SIMULATED"),
        "a certificate resting on a simulated quote is labelled: {}",
        leaf.subject()
    );
    let ev = ccm_pki::Evidence::from_certificate(leaf_der)
        .unwrap()
        .expect("the certificate carries the attestation evidence extension");
    assert!(ev.simulated);
    let root = std::fs::read_to_string(w.platform.join("root-ca.pem")).unwrap();
    let verifier = Verifier::new(
        TrustRoots::empty().with(TrustRoot::from_pem(&root, RootKind::Simulated).unwrap()),
    );
    let collateral =
        Collateral::from_json(&std::fs::read(w.platform.join("collateral.json")).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let vq = verifier
        .verify(&ev.quote, &collateral, now)
        .expect("the embedded quote verifies under the simulated root");
    assert_eq!(hex::encode(vq.report.mr_enclave.0), mrenclave);
    let spki_hash: [u8; 32] = sha2::Sha256::digest(leaf.public_key().raw).into();
    assert_eq!(
        &vq.report.report_data.0[..32],
        &spki_hash,
        "the quote's REPORTDATA binds the certificate's key"
    );
    assert_eq!(ev.pubkey_sha256, spki_hash);
}

/// Parses a number followed by `unit` after `prefix` in `line`, e.g. `in 123 ms`.
pub fn number_after(line: &str, prefix: &str) -> Option<f64> {
    let rest = &line[line.rfind(prefix)? + prefix.len()..];
    rest.trim_start()
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?
        .parse()
        .ok()
}

/// Writes to `out` an OCI image layout (manifest named `latest`) of the cached python-flask image
/// (ccm-testkit's `flask`, built from Debian packages on first use) with `env` added to its
/// config, as `FROM python-flask` + `ENV ...` would: the same layer blob (hard-linked when
/// possible), a new config and manifest. Returns the image's regular-file count.
pub fn derive_flask_image(out: &Path, env: &[String]) -> u64 {
    use sha2::Digest as _;
    let image = ccm_testkit::flask::flask_image().expect("the python-flask test image");
    let blob = |digest: &str| {
        image
            .layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(image.layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == image.ref_name.as_str())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest_digest)).unwrap()).unwrap();
    let mut config: Value = serde_json::from_slice(
        &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let envs = config["config"]["Env"].as_array_mut().unwrap();
    for e in env {
        envs.push(Value::String(e.clone()));
    }
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let write = |bytes: &[u8]| {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    for layer in manifest["layers"].as_array().unwrap() {
        let d = layer["digest"].as_str().unwrap();
        let to = blobs.join(d.trim_start_matches("sha256:"));
        if std::fs::hard_link(blob(d), &to).is_err() {
            std::fs::copy(blob(d), &to).unwrap();
        }
    }
    let (cd, cs) = write(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = Value::String(cd);
    manifest["config"]["size"] = Value::from(cs);
    let (md, ms) = write(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": "latest"}
        }]
    });
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    image.stats.regular_files
}
