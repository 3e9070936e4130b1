//! The API client behind the client commands (`ccm login`, `ccm account ...`, `ccm app ...`):
//! credentials file, pinned TLS, token refresh, error and output formatting.
//!
//! Credentials live in `$CCM_CREDENTIALS`, else `$XDG_CONFIG_HOME/ccm/credentials.toml`, else
//! `~/.config/ccm/credentials.toml`, written with mode 0600 (directory 0700). They hold the
//! manager URL, the pinned SHA-256 fingerprint of its certificate, the bearer token and the
//! selected account.

use std::io::{IsTerminal as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, anyhow, bail};
use ccm_api::ErrorBody;
use ccm_api::auth::AuthResponse;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Failure;

/// What the client keeps between commands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// Manager base URL.
    pub manager: String,
    /// Pinned certificate fingerprint (64 hex digits) for https managers.
    pub fingerprint: Option<String>,
    /// The logged-in user.
    pub email: Option<String>,
    /// Bearer token.
    pub token: Option<String>,
    /// Token expiry (Unix seconds).
    pub token_expires_at: Option<i64>,
    /// Session expiry (Unix seconds).
    pub session_expires_at: Option<i64>,
    /// Selected account.
    pub selected_account: Option<Uuid>,
}

/// The credentials file path.
pub fn credentials_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CCM_CREDENTIALS") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set; set CCM_CREDENTIALS")?)
                .join(".config")
        }
    };
    Ok(base.join("ccm").join("credentials.toml"))
}

impl Credentials {
    /// Loads the credentials; `None` if there are none yet.
    pub fn load() -> anyhow::Result<Option<Self>> {
        let path = credentials_path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(
                toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Saves the credentials with mode 0600.
    pub fn save(&self) -> anyhow::Result<()> {
        let path = credentials_path()?;
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let text = toml::to_string(self)?;
        let tmp = path.with_extension("toml.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    fn pin(&self) -> anyhow::Result<Option<[u8; 32]>> {
        self.fingerprint
            .as_deref()
            .map(|f| {
                ccm_pki::parse_fingerprint(f)
                    .ok_or_else(|| anyhow!("the stored fingerprint {f:?} is not valid"))
            })
            .transpose()
    }
}

/// `--output text|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// Human-readable.
    #[default]
    Text,
    /// JSON, for scripts.
    Json,
}

/// Output options shared by the client commands.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputOpts {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Builds an HTTP client that trusts exactly `pin` (https) or nothing (http).
pub fn http_client(pin: Option<[u8; 32]>) -> anyhow::Result<reqwest::Client> {
    let tls = match pin {
        Some(p) => ccm_pki::pinning::pinned_client_config(p)?,
        None => ccm_pki::pinning::client_config_with_roots(&[])?,
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .context("building the HTTP client")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Turns an error response into a one-line error (exit code 2).
fn api_error(status: StatusCode, text: &str) -> anyhow::Error {
    let detail = match serde_json::from_str::<ErrorBody>(text) {
        Ok(b) => {
            let mut s = format!("{} {}: {}", status.as_u16(), b.code, b.message);
            for e in b.errors.iter().skip(1) {
                s.push_str(&format!("; {}: {}", e.field, e.message));
            }
            if status == StatusCode::UNAUTHORIZED {
                s.push_str(" (run `ccm login`)");
            }
            s
        }
        Err(_) => format!(
            "{} {}",
            status.as_u16(),
            text.chars().take(200).collect::<String>()
        ),
    };
    anyhow::Error::new(Failure {
        code: 2,
        message: format!("the manager refused: {detail}"),
    })
}

/// A logged-in API client.
pub struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    /// The stored credentials.
    pub creds: Credentials,
}

impl Client {
    /// Loads the credentials and refreshes the token when it is about to expire.
    pub fn connect() -> anyhow::Result<Self> {
        let creds = Credentials::load()?
            .ok_or_else(|| anyhow!("not logged in: run `ccm login --manager URL`"))?;
        if creds.token.is_none() {
            bail!(
                "not logged in to {}: run `ccm login --manager {}`",
                creds.manager,
                creds.manager
            );
        }
        let http = http_client(creds.pin()?)?;
        let mut c = Self {
            rt: runtime()?,
            http,
            creds,
        };
        let t = now();
        let expiring = c.creds.token_expires_at.is_some_and(|e| e - t < 600);
        let session_alive = c.creds.session_expires_at.is_some_and(|e| e > t + 60);
        if expiring
            && session_alive
            && let Ok(r) =
                c.call::<AuthResponse>(Method::POST, "/v1/sys/session/refresh", None::<&()>)
        {
            c.creds.token = Some(r.access_token);
            c.creds.token_expires_at = Some(r.session_info.session_token_expires_at);
            c.creds.save()?;
        }
        Ok(c)
    }

    /// Sends a request and decodes the JSON answer (`()` for empty bodies).
    pub fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<T> {
        let text = self.call_text(method, path, body)?;
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text)
            .with_context(|| format!("decoding the manager's answer to {path}"))
    }

    /// Sends a request and returns the raw body.
    pub fn call_text(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.creds.manager.trim_end_matches('/'));
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.creds.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.rt.block_on(async {
            let resp = req
                .send()
                .await
                .with_context(|| format!("connecting to {}", self.creds.manager))?;
            let status = resp.status();
            let text = resp.text().await.context("reading the manager's answer")?;
            if status.is_success() {
                Ok(text)
            } else {
                Err(api_error(status, &text))
            }
        })
    }

    /// GET.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(Method::GET, path, None::<&()>)
    }

    /// Every item of a paged list (`path` with its filters): reads pages of the largest size,
    /// each after the one before (`metadata.next`), until the last.
    pub fn get_all<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Vec<T>> {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut url = reqwest::Url::parse("http://manager/")?.join(path)?;
            url.query_pairs_mut()
                .append_pair("limit", &ccm_api::list::MAX_LIMIT.to_string());
            if let Some(n) = &next {
                url.query_pairs_mut().append_pair("next", n);
            }
            let page_path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
            let page: ccm_api::list::ListResponse<T> = self.get(&page_path)?;
            items.extend(page.items);
            match page.metadata.next {
                Some(n) => next = Some(n),
                None => return Ok(items),
            }
        }
    }
}

/// A certificate verifier that accepts any certificate but records its fingerprint (used only
/// to show the fingerprint for trust-on-first-use; the request that follows is pinned).
#[derive(Debug)]
struct Capture {
    seen: Mutex<Option<[u8; 32]>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(ccm_pki::fingerprint_sha256(end_entity.as_ref()));
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connects to an https manager and returns its certificate's fingerprint.
fn probe_fingerprint(url: &str) -> anyhow::Result<[u8; 32]> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| anyhow!("not an https URL"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:443")
    };
    let host = addr
        .rsplit_once(':')
        .map_or(addr.as_str(), |(h, _)| h)
        .trim_matches(['[', ']'])
        .to_string();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(Capture {
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(host).context("the manager host name")?;
    runtime()?.block_on(async {
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        connector
            .connect(name, tcp)
            .await
            .context("TLS handshake with the manager")?;
        Ok::<_, anyhow::Error>(())
    })?;
    let seen = capture
        .seen
        .lock()
        .map_err(|_| anyhow!("internal lock poisoned"))?;
    seen.ok_or_else(|| anyhow!("the manager presented no certificate"))
}

/// Log in to a manager.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Manager URL, e.g. https://127.0.0.1:8443.
    #[arg(long, env = "CCM_MANAGER", value_name = "URL")]
    manager: String,
    /// SHA-256 fingerprint of the manager's certificate (printed by `ccm manager` at start).
    #[arg(long, value_name = "SHA256")]
    fingerprint: Option<String>,
    /// Trust the certificate the manager presents now, and pin it (prints its fingerprint).
    #[arg(long, conflicts_with = "fingerprint")]
    trust_on_first_use: bool,
    /// E-mail address (prompted for when absent).
    #[arg(long, value_name = "EMAIL")]
    email: Option<String>,
    /// Read the password from the first line of standard input (else $CCM_PASSWORD, else a prompt).
    #[arg(long)]
    password_stdin: bool,
    /// Create the user first (sign up), then log in.
    #[arg(long)]
    signup: bool,
    /// With --signup: the manager's setup token, read from this file (`setup-token` in the
    /// manager's data directory); the user becomes the manager's system administrator.
    #[arg(long, value_name = "FILE", requires = "signup")]
    setup_token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    out: OutputOpts,
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Ok(p) = std::env::var("CCM_PASSWORD") {
        return Ok(p);
    }
    rpassword::prompt_password("Password: ")
        .context("reading the password (or use --password-stdin)")
}

/// `ccm login`.
pub fn login(args: LoginArgs) -> anyhow::Result<()> {
    let manager = args.manager.trim_end_matches('/').to_string();
    if !(manager.starts_with("https://") || manager.starts_with("http://")) {
        bail!("--manager must be an http:// or https:// URL, not {manager:?}");
    }
    let previous = Credentials::load()?.filter(|c| c.manager == manager);
    let fingerprint = if manager.starts_with("https://") {
        let pin = match (
            &args.fingerprint,
            previous.as_ref().and_then(|c| c.fingerprint.clone()),
        ) {
            (Some(f), _) => ccm_pki::parse_fingerprint(f).ok_or_else(|| {
                anyhow!("--fingerprint must be 64 hex digits (colons allowed), got {f:?}")
            })?,
            (None, Some(stored)) => ccm_pki::parse_fingerprint(&stored)
                .ok_or_else(|| anyhow!("stored fingerprint is invalid"))?,
            (None, None) => {
                let seen = probe_fingerprint(&manager)?;
                let shown = ccm_pki::format_fingerprint(&seen);
                if args.trust_on_first_use {
                    eprintln!("Trusting the manager's certificate on first use: SHA-256 {shown}");
                } else if std::io::stdin().is_terminal() && !args.password_stdin {
                    eprint!(
                        "The manager presents a certificate with SHA-256 fingerprint\n  {shown}\nTrust it? [y/N] "
                    );
                    let mut answer = String::new();
                    std::io::stdin().read_line(&mut answer)?;
                    if !answer.trim().eq_ignore_ascii_case("y") {
                        bail!(
                            "not trusted; compare with the fingerprint `ccm manager` printed, then pass --fingerprint"
                        );
                    }
                } else {
                    bail!(
                        "the manager's certificate is not pinned (it presents SHA-256 {shown}); pass \
                         --fingerprint with the value `ccm manager` printed, or --trust-on-first-use"
                    );
                }
                seen
            }
        };
        Some(pin)
    } else {
        None
    };
    let email = match args.email {
        Some(e) => e,
        None => {
            eprint!("E-mail: ");
            let mut e = String::new();
            std::io::stdin().read_line(&mut e)?;
            e.trim().to_string()
        }
    };
    let password = read_password(args.password_stdin)?;
    let setup_token = match &args.setup_token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the setup token from {}", f.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let http = http_client(fingerprint)?;
    let rt = runtime()?;
    let auth: AuthResponse = rt.block_on(async {
        if args.signup {
            let resp = http
                .post(format!("{manager}/v1/users"))
                .json(&serde_json::json!({
                    "user_email": email,
                    "user_password": password,
                    "setup_token": setup_token,
                }))
                .send()
                .await
                .with_context(|| format!("connecting to {manager}"))?;
            let st = resp.status();
            if !st.is_success() {
                return Err(api_error(st, &resp.text().await.unwrap_or_default()));
            }
        }
        let resp = http
            .post(format!("{manager}/v1/sys/auth"))
            .basic_auth(&email, Some(&password))
            .send()
            .await
            .with_context(|| format!("connecting to {manager}"))?;
        let st = resp.status();
        let text = resp.text().await?;
        if !st.is_success() {
            return Err(api_error(st, &text));
        }
        serde_json::from_str(&text).context("decoding the login answer")
    })?;
    let creds = Credentials {
        manager,
        fingerprint: fingerprint.map(hex::encode),
        email: Some(email.clone()),
        token: Some(auth.access_token),
        token_expires_at: Some(auth.session_info.session_token_expires_at),
        session_expires_at: Some(auth.session_info.session_expires_at),
        selected_account: None,
    };
    creds.save()?;
    match args.out.output {
        Output::Json => print_json(
            &serde_json::json!({"user_email": email, "user_id": auth.session_info.subject_id,
            "session_expires_at": auth.session_info.session_expires_at}),
        )?,
        Output::Text => println!("Logged in to {} as {email}", creds.manager),
    }
    Ok(())
}

/// `ccm logout`: ends the session on the manager and forgets the token.
pub fn logout() -> anyhow::Result<()> {
    let mut c = Client::connect()?;
    c.call::<serde_json::Value>(Method::POST, "/v1/sys/session/terminate", None::<&()>)?;
    c.creds.token = None;
    c.creds.token_expires_at = None;
    c.creds.selected_account = None;
    c.creds.save()?;
    println!("Logged out of {}", c.creds.manager);
    Ok(())
}

/// Prints pretty JSON.
pub fn print_json(v: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints rows under headers in aligned columns.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// Prints `key: value` lines.
pub fn print_fields(fields: &[(&str, String)]) {
    let w = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in fields {
        println!("{k:<w$}  {v}");
    }
}
