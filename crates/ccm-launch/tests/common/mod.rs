//! Shared support for the launcher's integration tests: image roots laid out like converted
//! images, simulated platforms with a real `ccm aesmd`, and a node-agent protocol peer.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ccm_enclave::{
    CertificateRequest, EnclaveParams, Issuer, KeyType, MANIFEST_VERSION, Manifest, Runtime,
    Sha256Hex, SignOptions, SignedEnclave, SigningKey, Symlink, TrustedFile,
};

pub const ISVPRODID: u16 = 17;
pub const ISVSVN: u16 = 4;
pub const DOMAIN: &str = "app.example.test";

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn signing_key() -> SigningKey {
    SigningKey::from_pem(include_str!("../data/signing-key.pem")).unwrap()
}

/// What goes into a test image.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub entrypoint: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub passthrough: Vec<String>,
    pub allow_runtime_args: bool,
    pub debug: bool,
    pub certificates: Vec<CertificateRequest>,
    /// Extra files (path, content, mode).
    pub files: Vec<(String, Vec<u8>, u32)>,
}

pub fn cert_request(key_type: KeyType) -> CertificateRequest {
    CertificateRequest {
        domain: DOMAIN.into(),
        key_type,
        key_path: "/run/secrets/key.pem".into(),
        cert_path: "/run/secrets/cert.pem".into(),
        chain_path: Some("/run/secrets/chain.pem".into()),
        issuer: Issuer::ManagerCa,
    }
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            entrypoint: vec!["/bin/sh".into(), "-c".into(), "echo pid=$$; env".into()],
            env: [
                ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
                ("GREETING".to_owned(), "measured".to_owned()),
            ]
            .into(),
            passthrough: vec![
                "EXTRA_PASSED".into(),
                "NODE_AGENT_BASE_URL".into(),
                "SGX_AESM_ADDR".into(),
            ],
            allow_runtime_args: false,
            debug: false,
            certificates: vec![cert_request(KeyType::EcP256)],
            files: vec![
                (
                    "/app/server.py".into(),
                    b"print('hello from the app')\n".to_vec(),
                    0o644,
                ),
                (
                    "/etc/passwd".into(),
                    b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
                    0o644,
                ),
            ],
        }
    }
}

/// An image root laid out like a converted image.
pub struct TestImage {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub signed: SignedEnclave,
}

impl TestImage {
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.path(ccm_enclave::MANIFEST_PATH)
    }

    pub fn sigstruct_path(&self) -> PathBuf {
        self.path(ccm_enclave::SIGSTRUCT_PATH)
    }

    /// The launcher with a clean environment, pointed at this root.
    pub fn launcher(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ccm-launch"));
        c.env_clear()
            .arg(format!("--ccm-root={}", self.root.display()));
        c
    }

    /// Writes a manifest (canonical) and re-signs it, replacing what the image has.
    pub fn rewrite(&mut self, manifest: Manifest) {
        let bytes = manifest.to_canonical_bytes().unwrap();
        self.signed = sign(&bytes);
        std::fs::write(self.manifest_path(), &bytes).unwrap();
        std::fs::write(self.sigstruct_path(), self.signed.sigstruct.as_bytes()).unwrap();
        self.manifest = manifest;
        self.manifest_bytes = bytes;
    }
}

pub fn sign(bytes: &[u8]) -> SignedEnclave {
    ccm_enclave::sign_enclave(
        bytes,
        &signing_key(),
        &SignOptions {
            isv_prod_id: ISVPRODID,
            isv_svn: ISVSVN,
            date: (2025, 1, 2),
        },
    )
    .unwrap()
}

pub fn sha(data: &[u8]) -> Sha256Hex {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    Sha256Hex(out)
}

/// Builds an image root: the spec's files, the host's /bin/sh as /bin/sh (so the entrypoint runs),
/// a symlink, the manifest and its SIGSTRUCT.
pub fn image(spec: &ImageSpec) -> TestImage {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    let mut files = spec.files.clone();
    files.push(("/bin/sh".into(), std::fs::read("/bin/sh").unwrap(), 0o755));
    let mut trusted = Vec::new();
    for (path, data, mode) in &files {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        trusted.push(TrustedFile {
            path: path.clone(),
            size: data.len() as u64,
            mode: *mode,
            sha256: sha(data),
        });
    }
    trusted.sort_by(|a, b| a.path.cmp(&b.path));
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::os::unix::fs::symlink("../../bin/sh", root.join("usr/bin/sh")).unwrap();
    std::fs::create_dir_all(root.join("opt/ccm")).unwrap();
    let mut passthrough = spec.passthrough.clone();
    passthrough.sort();
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        runtime: Runtime {
            version: "test".into(),
            sha256: Sha256Hex([7; 32]),
        },
        entrypoint: spec.entrypoint.clone(),
        allow_runtime_args: spec.allow_runtime_args,
        env: spec.env.clone(),
        passthrough_env: passthrough,
        working_dir: "/app".into(),
        user: String::new(),
        enclave: EnclaveParams::new(64 << 20, 2, spec.debug).unwrap(),
        certificates: spec.certificates.clone(),
        trusted_files: trusted,
        symlinks: vec![Symlink {
            path: "/usr/bin/sh".into(),
            target: "../../bin/sh".into(),
        }],
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
    let img = TestImage {
        dir,
        root,
        manifest,
        manifest_bytes: bytes,
        signed,
    };
    std::fs::write(img.manifest_path(), &img.manifest_bytes).unwrap();
    std::fs::write(img.sigstruct_path(), img.signed.sigstruct.as_bytes()).unwrap();
    img
}

/// A simulated platform (ccm_attest::sim::init) served by a real `ccm aesmd`.
pub struct Platform {
    pub dir: tempfile::TempDir,
    pub aesmd: ccm_testkit::aesmd::Aesmd,
}

impl Platform {
    pub fn start() -> Platform {
        let dir = tempfile::tempdir().unwrap();
        let platform = dir.path().join("platform");
        ccm_attest::sim::init(
            &platform,
            &ccm_attest::sim::PlatformOptions::new(unix_now() - 3600),
        )
        .unwrap();
        let run = dir.path().join("run-aesmd");
        std::fs::create_dir_all(&run).unwrap();
        let aesmd = ccm_testkit::aesmd::Aesmd::start(&platform, &run.join("aesm.socket")).unwrap();
        Platform { dir, aesmd }
    }

    pub fn platform_dir(&self) -> PathBuf {
        self.dir.path().join("platform")
    }

    pub fn socket(&self) -> &Path {
        self.aesmd.socket()
    }

    /// Verifies a quote with the ccm-attest verifier against this platform's simulated root.
    pub fn verify(&self, quote: &[u8]) -> ccm_attest::VerifiedQuote {
        let root = ccm_attest::sim::load_root(&self.platform_dir()).unwrap();
        let collateral = ccm_attest::sim::load_collateral(&self.platform_dir()).unwrap();
        ccm_attest::Verifier::new(ccm_attest::TrustRoots::empty().with(root))
            .verify(quote, &collateral, unix_now())
            .unwrap()
    }
}

/// How the protocol peer answers.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// PENDING_WHITELIST for this many polls, then SUCCESS with certificates of this lifetime.
    Issue {
        pending_polls: u32,
        lifetime_secs: u64,
    },
    /// DENIED with this message.
    Deny(String),
    /// FAILED with this message.
    Fail(String),
    /// HTTP 503 this many times, then SUCCESS at once.
    Unavailable(u32),
    /// HTTP 404 for the issuance endpoint (not a ccm agent).
    NotFound,
    /// SUCCESS with a certificate for another key.
    WrongKey,
    /// SUCCESS with a certificate from another CA than the zone CA (`ca_pem`).
    ForeignCa,
    /// HTTP 503 for every nonce (the agent cannot reach its manager).
    NoNonce,
}

struct Task {
    polls_left: u32,
    cert: Option<String>,
}

struct State {
    behaviour: Behaviour,
    requests: Vec<(String, Vec<u8>)>,
    polls: u32,
    tasks: HashMap<String, Task>,
    unavailable_left: u32,
    ca_key: rcgen::KeyPair,
    ca: rcgen::Certificate,
    /// Nonces handed out, and whether a request used them.
    nonces: HashMap<[u8; 32], bool>,
}

/// A peer speaking the node agent's quote-based issuance protocol on 127.0.0.1, issuing
/// certificates from a throwaway CA. It is a test double of the protocol peer for the launcher's
/// client logic (statuses, polling, errors); the end-to-end test against the real agent and
/// manager replaces it once they offer `issue-with-quote`.
pub struct AgentPeer {
    pub url: String,
    state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

impl AgentPeer {
    pub fn start(behaviour: Behaviour) -> AgentPeer {
        use axum::routing::{get, post};
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test zone CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let unavailable_left = match behaviour {
            Behaviour::Unavailable(n) => n,
            _ => 0,
        };
        let state = Arc::new(Mutex::new(State {
            behaviour,
            requests: Vec::new(),
            polls: 0,
            tasks: HashMap::new(),
            unavailable_left,
            ca_key,
            ca,
            nonces: HashMap::new(),
        }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/v1/enclave/nonce", post(nonce))
            .route("/v1/certificate/issue-with-quote", post(issue))
            .route("/v1/certificate/result/{id}", get(result))
            .with_state(state.clone());
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
        AgentPeer {
            url: format!("http://{addr}/v1/"),
            state,
            _rt: rt,
        }
    }

    /// (CSR PEM, quote) of every issuance request received.
    pub fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn polls(&self) -> u32 {
        self.state.lock().unwrap().polls
    }

    pub fn ca_pem(&self) -> String {
        self.state.lock().unwrap().ca.pem()
    }

    /// How many nonces were handed out.
    pub fn nonces_issued(&self) -> usize {
        self.state.lock().unwrap().nonces.len()
    }
}

type Shared = axum::extract::State<Arc<Mutex<State>>>;
type Answer = (axum::http::StatusCode, axum::Json<serde_json::Value>);

fn task_json(id: &str, status: &str, cert: Option<&str>, message: Option<&str>) -> Answer {
    (
        axum::http::StatusCode::OK,
        axum::Json(serde_json::json!({
            "task_id": id, "task_status": status, "certificate": cert, "message": message
        })),
    )
}

fn issue_cert(s: &State, csr_pem: &str, lifetime: u64, wrong_key: bool) -> String {
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
    let now = time::OffsetDateTime::now_utc();
    csr.params.not_before = now;
    csr.params.not_after = now + time::Duration::seconds(lifetime as i64);
    if matches!(s.behaviour, Behaviour::ForeignCa) {
        // Same name as the zone CA, another key.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test zone CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let leaf = csr.signed_by(&ca, &key).unwrap();
        return format!("{}{}", leaf.pem(), ca.pem());
    }
    let leaf = if wrong_key {
        let other = rcgen::KeyPair::generate().unwrap();
        csr.params.signed_by(&other, &s.ca, &s.ca_key).unwrap()
    } else {
        csr.signed_by(&s.ca, &s.ca_key).unwrap()
    };
    format!("{}{}", leaf.pem(), s.ca.pem())
}

async fn nonce(state: Shared) -> Answer {
    use base64::Engine;
    let mut s = state.lock().unwrap();
    if matches!(s.behaviour, Behaviour::NoNonce) {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "code": "manager_unavailable",
                "message": "no issuance nonce: the manager is not reachable"
            })),
        );
    }
    let mut n = [0u8; 32];
    n[..8].copy_from_slice(&(s.nonces.len() as u64 + 1).to_le_bytes());
    n[8..16].copy_from_slice(&unix_now().to_le_bytes());
    s.nonces.insert(n, false);
    (
        axum::http::StatusCode::OK,
        axum::Json(serde_json::json!({
            "nonce": base64::engine::general_purpose::STANDARD.encode(n),
            "expires_at": unix_now() + 300,
        })),
    )
}

async fn issue(state: Shared, body: axum::Json<serde_json::Value>) -> Answer {
    use base64::Engine;
    let mut s = state.lock().unwrap();
    if matches!(s.behaviour, Behaviour::NotFound) {
        return (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "no such route"})),
        );
    }
    if s.unavailable_left > 0 {
        s.unavailable_left -= 1;
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": "manager unreachable"})),
        );
    }
    let csr = body["csr"].as_str().unwrap_or_default().to_owned();
    let quote = base64::engine::general_purpose::STANDARD
        .decode(body["quote"].as_str().unwrap_or_default())
        .unwrap_or_default();
    // As the manager does: REPORTDATA[32..64] must be a nonce handed out and not used yet.
    let fresh = ccm_sgx::Quote::parse(&quote)
        .ok()
        .and_then(|q| q.sgx_body().map(|b| b.report_data.0))
        .and_then(|rd| <[u8; 32]>::try_from(&rd[32..]).ok())
        .and_then(|n| s.nonces.get_mut(&n))
        .is_some_and(|used| !std::mem::replace(used, true));
    s.requests.push((csr.clone(), quote));
    let id = format!("00000000-0000-4000-8000-{:012}", s.requests.len());
    if !fresh {
        return task_json(&id, "DENIED", None, Some("nonce unknown or used"));
    }
    match s.behaviour.clone() {
        Behaviour::Deny(m) => task_json(&id, "DENIED", None, Some(&m)),
        Behaviour::Fail(m) => task_json(&id, "FAILED", None, Some(&m)),
        Behaviour::WrongKey | Behaviour::ForeignCa => {
            let cert = issue_cert(&s, &csr, 3600, true);
            task_json(&id, "SUCCESS", Some(&cert), None)
        }
        Behaviour::Unavailable(_) => {
            let cert = issue_cert(&s, &csr, 3600, false);
            task_json(&id, "SUCCESS", Some(&cert), None)
        }
        Behaviour::Issue {
            pending_polls,
            lifetime_secs,
        } => {
            let cert = issue_cert(&s, &csr, lifetime_secs, false);
            if pending_polls == 0 {
                return task_json(&id, "SUCCESS", Some(&cert), None);
            }
            s.tasks.insert(
                id.clone(),
                Task {
                    polls_left: pending_polls,
                    cert: Some(cert),
                },
            );
            task_json(
                &id,
                "PENDING_WHITELIST",
                None,
                Some("image is awaiting approval"),
            )
        }
        Behaviour::NotFound | Behaviour::NoNonce => unreachable!(),
    }
}

async fn result(state: Shared, axum::extract::Path(id): axum::extract::Path<String>) -> Answer {
    let mut s = state.lock().unwrap();
    s.polls += 1;
    let Some(task) = s.tasks.get_mut(&id) else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "unknown task"})),
        );
    };
    task.polls_left = task.polls_left.saturating_sub(1);
    if task.polls_left == 0 {
        let cert = task.cert.clone();
        task_json(&id, "SUCCESS", cert.as_deref(), None)
    } else {
        task_json(
            &id,
            "PENDING_WHITELIST",
            None,
            Some("image is awaiting approval"),
        )
    }
}

/// The SubjectPublicKeyInfo DER of a CSR (PEM).
pub fn csr_spki(csr_pem: &str) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, p) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes()).unwrap();
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&p.contents)
            .unwrap();
    req.certification_request_info.subject_pki.raw.to_vec()
}

/// The SubjectPublicKeyInfo DER of the first certificate of a PEM file.
pub fn cert_spki(pem: &str) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(&p.contents).unwrap();
    c.public_key().raw.to_vec()
}

/// The SubjectPublicKeyInfo DER of a PKCS#8 PEM private key.
pub fn key_spki(pem: &str) -> Vec<u8> {
    rcgen::KeyPair::from_pem(pem).unwrap().public_key_der()
}

pub fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
