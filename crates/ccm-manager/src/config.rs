//! Manager configuration: defaults, then a TOML file, then `CCM_*` environment variables, then
//! command-line flags (applied by the caller), each overriding the previous.
//!
//! | TOML key | environment | default |
//! |---|---|---|
//! | `listen` | `CCM_LISTEN` | `127.0.0.1:8443` |
//! | `data_dir` | `CCM_DATA_DIR` | `/var/lib/ccm` as root, else `$XDG_DATA_HOME/ccm` or `~/.local/share/ccm` |
//! | `database_url` | `CCM_DATABASE_URL` | `sqlite://<data_dir>/ccm.db` |
//! | `insecure_http` | `CCM_INSECURE_HTTP` | `false` (serve HTTPS) |
//! | `tls_names` | `CCM_TLS_NAMES` (comma-separated) | `localhost, 127.0.0.1, ::1` |
//! | `tls_cert_file`, `tls_key_file` | `CCM_TLS_CERT_FILE`, `CCM_TLS_KEY_FILE` | generated in `<data_dir>/tls/` |
//! | `master_key_file` | `CCM_MASTER_KEY_FILE` | `<data_dir>/master.key` |
//! | `token_ttl_secs` | `CCM_TOKEN_TTL_SECS` | `3600` |
//! | `session_ttl_secs` | `CCM_SESSION_TTL_SECS` | `86400` |
//! | `open_signup` (alias `allow_signup`) | `CCM_OPEN_SIGNUP` (or `CCM_ALLOW_SIGNUP`) | `false`: only the holder of the setup token signs up (and becomes system administrator) |
//! | `max_body_bytes` | `CCM_MAX_BODY_BYTES` | `1048576` |
//! | `request_body_timeout_secs` | `CCM_REQUEST_BODY_TIMEOUT_SECS` | `30` (a request body must arrive within this) |
//! | `max_connections` | `CCM_MAX_CONNECTIONS` | `1024` (more wait in the listen backlog) |
//! | `password_queue_capacity` | `CCM_PASSWORD_QUEUE_CAPACITY` | `16` (then logins and sign-ups get 503) |
//! | `auth_attempts_per_minute_per_address` | `CCM_AUTH_ATTEMPTS_PER_MINUTE_PER_ADDRESS` | `30` (logins and sign-ups, then 429) |
//! | `auth_failures_per_minute_per_email` | `CCM_AUTH_FAILURES_PER_MINUTE_PER_EMAIL` | `10` (failed logins and sign-ups, then 429) |
//! | `forgot_password_per_hour_per_email` | `CCM_FORGOT_PASSWORD_PER_HOUR_PER_EMAIL` | `3` (`POST /v1/users/forgot_password` for one e-mail, then 429) |
//! | `node_requests_per_second` | `CCM_NODE_REQUESTS_PER_SECOND` | `5000` per node on `/v1/node-agent/...`, then 429 |
//! | `node_request_burst` | `CCM_NODE_REQUEST_BURST` | `10000` |
//! | `api_key_default_days` | `CCM_API_KEY_DEFAULT_DAYS` | `90` (lifetime of a key created without `expires_in`) |
//! | `api_key_max_days` | `CCM_API_KEY_MAX_DAYS` | `366` (longest `expires_in` accepted) |
//! | `rejected_retention_days` | `CCM_REJECTED_RETENTION_DAYS` | `7` (REJECTED certificate requests, with CSR and quote, are then deleted) |
//! | `housekeeping_interval_secs` | `CCM_HOUSEKEEPING_INTERVAL_SECS` | `3600` (purge of expired sessions and old rejected requests) |
//! | `db_max_connections` | `CCM_DB_MAX_CONNECTIONS` | `10` |
//! | `zone_ca_validity_days` | `CCM_ZONE_CA_VALIDITY_DAYS` | `3650` |
//! | `trusted_simulated_roots` | `CCM_TRUSTED_SIMULATED_ROOTS` (comma-separated files) | none: simulated platforms are refused |
//! | `node_heartbeat_interval_secs` | `CCM_NODE_HEARTBEAT_INTERVAL_SECS` | `10` (of zones without their own `node_refresh_interval`) |
//! | `node_renewal_threshold_percent` | `CCM_NODE_RENEWAL_THRESHOLD_PERCENT` | `33` (of zones without their own `node_renewal_threshold`: agents renew node certificates when less validity is left) |
//! | `node_stale_after_secs` | `CCM_NODE_STALE_AFTER_SECS` | `60` (then a RUNNING node becomes STOPPED) |
//! | `node_cert_validity_days` | `CCM_NODE_CERT_VALIDITY_DAYS` | `30` |
//! | `app_cert_validity_days` | `CCM_APP_CERT_VALIDITY_DAYS` | `30` |
//! | `sweep_interval_secs` | `CCM_SWEEP_INTERVAL_SECS` | `5` (pending requests, stale nodes) |
//! | `issuance_nonce_ttl_secs` | `CCM_ISSUANCE_NONCE_TTL_SECS` | `300` (lifetime of an issuance nonce) |
//! | `launcher` | `CCM_LAUNCHER` | `ccm-launch` next to the running program |
//! | `insecure_registries` | `CCM_INSECURE_REGISTRIES` (comma-separated `HOST:PORT`) | none: registries are spoken to over TLS |
//! | `registry_ca_file` | `CCM_REGISTRY_CA_FILE` | none: the system's CA certificates only |
//! | `conversion_workers` | `CCM_CONVERSION_WORKERS` | `2` (0: this replica runs no conversions) |
//! | `conversion_timeout_secs` | `CCM_CONVERSION_TIMEOUT_SECS` | `3600` |
//! | `public_url` | `CCM_PUBLIC_URL` | `https://<first TLS name>:<port>` (CRL distribution points, invitation and reset links) |
//! | `invitation_ttl_secs` | `CCM_INVITATION_TTL_SECS` | `604800` (7 days; an invitation's lifetime) |
//! | `password_reset_ttl_secs` | `CCM_PASSWORD_RESET_TTL_SECS` | `86400` (a reset token's lifetime) |
//! | `smtp_host` | `CCM_SMTP_HOST` | none: invitations and reset links are not e-mailed |
//! | `smtp_port` | `CCM_SMTP_PORT` | `587` |
//! | `smtp_security` | `CCM_SMTP_SECURITY` | `starttls` (`tls`: implicit TLS; `none`: plain, for a relay on loopback) |
//! | `smtp_from` | `CCM_SMTP_FROM` | `ccm@<smtp_host>` |
//! | `smtp_username` | `CCM_SMTP_USERNAME` | none (no SMTP authentication) |
//! | `smtp_password_file` | `CCM_SMTP_PASSWORD_FILE` | none (the SMTP password, read at start) |
//! | `pccs_url` | `CCM_PCCS_URL` | none: offline, collateral only from node uploads and `ccm collateral import` (Intel's PCS is `https://api.trustedservices.intel.com`) |
//! | `pccs_api_key_file` | `CCM_PCCS_API_KEY_FILE` | none (the PCS subscription key, read at start) |
//! | `pccs_ca_file` | `CCM_PCCS_CA_FILE` | none: the system's CA certificates only (for a PCCS with its own CA) |
//! | `pccs_timeout_secs` | `CCM_PCCS_TIMEOUT_SECS` | `30` (per request) |
//! | `collateral_refresh_interval_secs` | `CCM_COLLATERAL_REFRESH_INTERVAL_SECS` | `86400` (each set is fetched again at least this often; Intel re-signs the PCK CRL daily) |
//! | `collateral_refresh_margin_secs` | `CCM_COLLATERAL_REFRESH_MARGIN_SECS` | `604800` (and when it expires within this) |
//! | `pccs_api_requests_per_second` | `CCM_PCCS_API_REQUESTS_PER_SECOND` | `100` per client address on the PCCS API the manager serves (`/sgx/certification/v4/...`), burst twice that, then 429 |
//! | `collateral_check_interval_secs` | `CCM_COLLATERAL_CHECK_INTERVAL_SECS` | `60` (how often the refresher looks) |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// The renewal thresholds a zone (and the default) may have, in percent of a node certificate's
/// validity: renewing at less than 5 % left risks expiry while the manager is away, at more than
/// 90 % renews all the time.
pub const NODE_RENEWAL_THRESHOLD: std::ops::RangeInclusive<i64> = 5..=90;

/// The manager's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the SQLite file, master key and TLS identity.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://...`; default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Serve plain HTTP instead of HTTPS (local use only).
    pub insecure_http: bool,
    /// Names (DNS or IP) in the generated TLS certificate.
    pub tls_names: Vec<String>,
    /// Operator-provided certificate chain (PEM) instead of the generated one.
    pub tls_cert_file: Option<PathBuf>,
    /// Operator-provided private key (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// Master key file; default `<data_dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// Lifetime of a bearer token (refresh issues a new one).
    pub token_ttl_secs: i64,
    /// Lifetime of a session (refresh cannot extend past it).
    pub session_ttl_secs: i64,
    /// Whether anyone may sign up as an ordinary user. Off: only the holder of the setup token
    /// signs up (once, as system administrator).
    #[serde(alias = "allow_signup")]
    pub open_signup: bool,
    /// Request body limit.
    pub max_body_bytes: usize,
    /// Time a client has to send a request body, from the end of its headers.
    pub request_body_timeout_secs: u64,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Password hashes that may wait for the hashing thread; when full, 503.
    pub password_queue_capacity: usize,
    /// Logins and sign-ups per minute from one client address (burst of the same size).
    pub auth_attempts_per_minute_per_address: u32,
    /// Failed logins and sign-up attempts per minute for one e-mail address.
    pub auth_failures_per_minute_per_email: u32,
    /// Password reset requests (`forgot_password`) per hour for one e-mail address.
    pub forgot_password_per_hour_per_email: u32,
    /// Requests per second one node may make on the agent-facing routes.
    pub node_requests_per_second: u32,
    /// Requests one node may make at once on the agent-facing routes.
    pub node_request_burst: u32,
    /// Lifetime of an API key created without `expires_in`.
    pub api_key_default_days: i64,
    /// Longest lifetime an API key may be given.
    pub api_key_max_days: i64,
    /// REJECTED certificate requests (with their CSR and quote) are deleted after this.
    pub rejected_retention_days: i64,
    /// Interval of the housekeeping sweep (expired sessions, old rejected requests).
    pub housekeeping_interval_secs: u64,
    /// Database pool size.
    pub db_max_connections: u32,
    /// Validity of new zone CA certificates.
    pub zone_ca_validity_days: i64,
    /// Root certificates (PEM files) of simulated SGX platforms to trust. SIMULATED: never in
    /// production; without any, simulated quotes are refused.
    pub trusted_simulated_roots: Vec<PathBuf>,
    /// Heartbeat interval asked of node agents (zones without their own
    /// `node_refresh_interval`).
    pub node_heartbeat_interval_secs: u64,
    /// Node agents renew their certificate when less than this percentage of its validity is
    /// left (zones without their own `node_renewal_threshold`).
    pub node_renewal_threshold_percent: i64,
    /// A RUNNING node without a heartbeat for this long becomes STOPPED.
    pub node_stale_after_secs: i64,
    /// Validity of node certificates.
    pub node_cert_validity_days: i64,
    /// Validity of application certificates.
    pub app_cert_validity_days: i64,
    /// Interval of the background sweeps (pending certificate requests, stale nodes).
    pub sweep_interval_secs: u64,
    /// How long an issuance nonce (REPORTDATA[32..64] of a workload's quote) is accepted.
    pub issuance_nonce_ttl_secs: i64,
    /// The in-image launcher embedded by conversions; default `ccm-launch` next to the running
    /// program.
    pub launcher: Option<PathBuf>,
    /// Registries (`HOST:PORT`) spoken to over plain HTTP, as Docker's `--insecure-registry`.
    pub insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM) trusted for registry TLS besides the system's.
    pub registry_ca_file: Option<PathBuf>,
    /// Conversions this replica runs at once (0: none; other replicas run them).
    pub conversion_workers: usize,
    /// A conversion still running after this long fails.
    pub conversion_timeout_secs: u64,
    /// The manager's base URL as relying parties reach it (e.g. `https://ccm.example:8443`):
    /// issued certificates name `<public_url>/v1/zones/<zone>/crl` as their CRL distribution
    /// point. Default: the first TLS name and the listening port ([`Config::public_base_url`]).
    pub public_url: Option<String>,
    /// Lifetime of an invitation.
    pub invitation_ttl_secs: i64,
    /// Lifetime of a password reset token.
    pub password_reset_ttl_secs: i64,
    /// SMTP relay for invitation and reset e-mails; none: nothing is e-mailed.
    pub smtp_host: Option<String>,
    /// SMTP port.
    pub smtp_port: u16,
    /// SMTP transport security.
    pub smtp_security: SmtpSecurity,
    /// Sender address of the e-mails.
    pub smtp_from: Option<String>,
    /// SMTP user name (with `smtp_password_file`).
    pub smtp_username: Option<String>,
    /// File holding the SMTP password.
    pub smtp_password_file: Option<PathBuf>,
    /// Base URL of the PCS or PCCS collateral is fetched from (`None`: offline).
    pub pccs_url: Option<String>,
    /// File holding the PCS API key (sent as `Ocp-Apim-Subscription-Key`).
    pub pccs_api_key_file: Option<PathBuf>,
    /// PEM CA certificates that authenticate the PCCS's TLS certificate, besides the system's.
    pub pccs_ca_file: Option<PathBuf>,
    /// Limit of each request to the PCS or PCCS.
    pub pccs_timeout_secs: u64,
    /// Each collateral set is fetched again at least this often.
    pub collateral_refresh_interval_secs: i64,
    /// ... and when it expires within this.
    pub collateral_refresh_margin_secs: i64,
    /// How often the refresher looks for sets to fetch.
    pub collateral_check_interval_secs: u64,
    /// Requests per second per client address on the PCCS API the manager serves.
    pub pccs_api_requests_per_second: u32,
}

/// How the manager secures its SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on the same host.
    None,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: default_data_dir(),
            database_url: None,
            insecure_http: false,
            tls_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            tls_cert_file: None,
            tls_key_file: None,
            master_key_file: None,
            token_ttl_secs: 3600,
            session_ttl_secs: 86_400,
            open_signup: false,
            max_body_bytes: 1 << 20,
            request_body_timeout_secs: 30,
            max_connections: 1024,
            password_queue_capacity: 16,
            auth_attempts_per_minute_per_address: 30,
            auth_failures_per_minute_per_email: 10,
            forgot_password_per_hour_per_email: 3,
            node_requests_per_second: 5000,
            node_request_burst: 10_000,
            api_key_default_days: 90,
            api_key_max_days: 366,
            rejected_retention_days: 7,
            housekeeping_interval_secs: 3600,
            db_max_connections: 10,
            zone_ca_validity_days: 3650,
            trusted_simulated_roots: Vec::new(),
            node_heartbeat_interval_secs: 10,
            node_renewal_threshold_percent: 33,
            node_stale_after_secs: 60,
            node_cert_validity_days: 30,
            app_cert_validity_days: 30,
            sweep_interval_secs: 5,
            issuance_nonce_ttl_secs: 300,
            launcher: None,
            insecure_registries: Vec::new(),
            registry_ca_file: None,
            conversion_workers: 2,
            conversion_timeout_secs: 3600,
            public_url: None,
            invitation_ttl_secs: 7 * 86_400,
            password_reset_ttl_secs: 86_400,
            smtp_host: None,
            smtp_port: 587,
            smtp_security: SmtpSecurity::Starttls,
            smtp_from: None,
            smtp_username: None,
            smtp_password_file: None,
            pccs_url: None,
            pccs_api_key_file: None,
            pccs_ca_file: None,
            pccs_timeout_secs: 30,
            collateral_refresh_interval_secs: 86_400,
            collateral_refresh_margin_secs: 7 * 86_400,
            collateral_check_interval_secs: 60,
            pccs_api_requests_per_second: 100,
        }
    }
}

impl Config {
    fn validate_collateral(&self) -> Result<(), Error> {
        if let Some(u) = &self.pccs_url
            && !((u.starts_with("https://") || u.starts_with("http://"))
                && u.len() <= 512
                && !u.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(invalid(
                "pccs_url",
                "must be an http:// or https:// URL without spaces (at most 512 characters)",
            ));
        }
        if !(1..=300).contains(&self.pccs_timeout_secs) {
            return Err(invalid("pccs_timeout_secs", "must be between 1 and 300"));
        }
        if !(60..=86_400 * 7).contains(&self.collateral_refresh_interval_secs) {
            return Err(invalid(
                "collateral_refresh_interval_secs",
                "must be between 60 and 604800",
            ));
        }
        if !(0..=86_400 * 29).contains(&self.collateral_refresh_margin_secs) {
            return Err(invalid(
                "collateral_refresh_margin_secs",
                "must be between 0 and 2505600 (29 days)",
            ));
        }
        if self.pccs_api_requests_per_second == 0 {
            return Err(invalid(
                "pccs_api_requests_per_second",
                "must be at least 1",
            ));
        }
        if !(1..=3600).contains(&self.collateral_check_interval_secs) {
            return Err(invalid(
                "collateral_check_interval_secs",
                "must be between 1 and 3600",
            ));
        }
        Ok(())
    }

    /// The manager's base URL without a trailing slash: `public_url`, or
    /// `https://<first TLS name>:<port>` (`http://` when serving plain HTTP; the listening IP
    /// address when there is no TLS name).
    pub fn public_base_url(&self) -> String {
        if let Some(u) = &self.public_url {
            return u.trim_end_matches('/').to_string();
        }
        let scheme = if self.insecure_http { "http" } else { "https" };
        let host = match self.tls_names.first() {
            Some(n) if n.contains(':') => format!("[{n}]"),
            Some(n) => n.clone(),
            None => match self.listen.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                std::net::IpAddr::V4(ip) => ip.to_string(),
            },
        };
        format!("{scheme}://{host}:{}", self.listen.port())
    }
}

fn default_data_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if home.as_deref() == Some(Path::new("/root")) || home.is_none() {
        return PathBuf::from("/var/lib/ccm");
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("ccm"),
        _ => home
            .map(|h| h.join(".local/share/ccm"))
            .unwrap_or_else(|| PathBuf::from("/var/lib/ccm")),
    }
}

/// `HOST` or `HOST:PORT` as a registry is named in image references (an IPv6 literal in
/// brackets is accepted).
fn is_registry_host(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => return false,
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Config {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    /// Defaults, overridden by the TOML file (if given), overridden by `CCM_*` variables taken
    /// from `env` (pass `std::env::vars()`).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let mut c = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
                    path: path.into(),
                    source: e,
                })?;
                toml::from_str(&text)
                    .map_err(|e| invalid(&path.display().to_string(), e.message().to_string()))?
            }
            None => Self::default(),
        };
        for (k, v) in env {
            c.apply_env(&k, &v)?;
        }
        c.validate()?;
        Ok(c)
    }

    fn apply_env(&mut self, key: &str, v: &str) -> Result<(), Error> {
        fn parse<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, Error> {
            v.trim()
                .parse()
                .map_err(|_| invalid(key, format!("cannot parse {v:?}")))
        }
        fn boolean(key: &str, v: &str) -> Result<bool, Error> {
            match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" | "" => Ok(false),
                _ => Err(invalid(key, format!("expected true or false, got {v:?}"))),
            }
        }
        match key {
            "CCM_LISTEN" => self.listen = parse(key, v)?,
            "CCM_DATA_DIR" => self.data_dir = PathBuf::from(v),
            "CCM_DATABASE_URL" => self.database_url = Some(v.to_string()),
            "CCM_INSECURE_HTTP" => self.insecure_http = boolean(key, v)?,
            "CCM_TLS_NAMES" => {
                self.tls_names = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "CCM_TLS_CERT_FILE" => self.tls_cert_file = Some(PathBuf::from(v)),
            "CCM_TLS_KEY_FILE" => self.tls_key_file = Some(PathBuf::from(v)),
            "CCM_MASTER_KEY_FILE" => self.master_key_file = Some(PathBuf::from(v)),
            "CCM_TOKEN_TTL_SECS" => self.token_ttl_secs = parse(key, v)?,
            "CCM_SESSION_TTL_SECS" => self.session_ttl_secs = parse(key, v)?,
            "CCM_OPEN_SIGNUP" | "CCM_ALLOW_SIGNUP" => self.open_signup = boolean(key, v)?,
            "CCM_MAX_BODY_BYTES" => self.max_body_bytes = parse(key, v)?,
            "CCM_REQUEST_BODY_TIMEOUT_SECS" => self.request_body_timeout_secs = parse(key, v)?,
            "CCM_MAX_CONNECTIONS" => self.max_connections = parse(key, v)?,
            "CCM_PASSWORD_QUEUE_CAPACITY" => self.password_queue_capacity = parse(key, v)?,
            "CCM_AUTH_ATTEMPTS_PER_MINUTE_PER_ADDRESS" => {
                self.auth_attempts_per_minute_per_address = parse(key, v)?
            }
            "CCM_AUTH_FAILURES_PER_MINUTE_PER_EMAIL" => {
                self.auth_failures_per_minute_per_email = parse(key, v)?
            }
            "CCM_FORGOT_PASSWORD_PER_HOUR_PER_EMAIL" => {
                self.forgot_password_per_hour_per_email = parse(key, v)?
            }
            "CCM_NODE_REQUESTS_PER_SECOND" => self.node_requests_per_second = parse(key, v)?,
            "CCM_NODE_REQUEST_BURST" => self.node_request_burst = parse(key, v)?,
            "CCM_API_KEY_DEFAULT_DAYS" => self.api_key_default_days = parse(key, v)?,
            "CCM_API_KEY_MAX_DAYS" => self.api_key_max_days = parse(key, v)?,
            "CCM_REJECTED_RETENTION_DAYS" => self.rejected_retention_days = parse(key, v)?,
            "CCM_HOUSEKEEPING_INTERVAL_SECS" => self.housekeeping_interval_secs = parse(key, v)?,
            "CCM_DB_MAX_CONNECTIONS" => self.db_max_connections = parse(key, v)?,
            "CCM_ZONE_CA_VALIDITY_DAYS" => self.zone_ca_validity_days = parse(key, v)?,
            "CCM_TRUSTED_SIMULATED_ROOTS" => {
                self.trusted_simulated_roots = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            }
            "CCM_NODE_HEARTBEAT_INTERVAL_SECS" => {
                self.node_heartbeat_interval_secs = parse(key, v)?
            }
            "CCM_NODE_RENEWAL_THRESHOLD_PERCENT" => {
                self.node_renewal_threshold_percent = parse(key, v)?
            }
            "CCM_NODE_STALE_AFTER_SECS" => self.node_stale_after_secs = parse(key, v)?,
            "CCM_NODE_CERT_VALIDITY_DAYS" => self.node_cert_validity_days = parse(key, v)?,
            "CCM_APP_CERT_VALIDITY_DAYS" => self.app_cert_validity_days = parse(key, v)?,
            "CCM_SWEEP_INTERVAL_SECS" => self.sweep_interval_secs = parse(key, v)?,
            "CCM_ISSUANCE_NONCE_TTL_SECS" => self.issuance_nonce_ttl_secs = parse(key, v)?,
            "CCM_LAUNCHER" => self.launcher = Some(PathBuf::from(v)),
            "CCM_PUBLIC_URL" => self.public_url = Some(v.trim().to_string()),
            "CCM_INSECURE_REGISTRIES" => {
                self.insecure_registries = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "CCM_REGISTRY_CA_FILE" => self.registry_ca_file = Some(PathBuf::from(v)),
            "CCM_CONVERSION_WORKERS" => self.conversion_workers = parse(key, v)?,
            "CCM_CONVERSION_TIMEOUT_SECS" => self.conversion_timeout_secs = parse(key, v)?,
            "CCM_INVITATION_TTL_SECS" => self.invitation_ttl_secs = parse(key, v)?,
            "CCM_PASSWORD_RESET_TTL_SECS" => self.password_reset_ttl_secs = parse(key, v)?,
            "CCM_SMTP_HOST" => self.smtp_host = Some(v.trim().to_string()),
            "CCM_SMTP_PORT" => self.smtp_port = parse(key, v)?,
            "CCM_SMTP_SECURITY" => {
                self.smtp_security = match v.trim().to_ascii_lowercase().as_str() {
                    "starttls" => SmtpSecurity::Starttls,
                    "tls" => SmtpSecurity::Tls,
                    "none" => SmtpSecurity::None,
                    _ => return Err(invalid(key, "expected starttls, tls or none")),
                }
            }
            "CCM_SMTP_FROM" => self.smtp_from = Some(v.trim().to_string()),
            "CCM_SMTP_USERNAME" => self.smtp_username = Some(v.to_string()),
            "CCM_SMTP_PASSWORD_FILE" => self.smtp_password_file = Some(PathBuf::from(v)),
            "CCM_PCCS_URL" => self.pccs_url = Some(v.trim().to_string()).filter(|u| !u.is_empty()),
            "CCM_PCCS_API_KEY_FILE" => self.pccs_api_key_file = Some(PathBuf::from(v)),
            "CCM_PCCS_CA_FILE" => self.pccs_ca_file = Some(PathBuf::from(v)),
            "CCM_PCCS_TIMEOUT_SECS" => self.pccs_timeout_secs = parse(key, v)?,
            "CCM_COLLATERAL_REFRESH_INTERVAL_SECS" => {
                self.collateral_refresh_interval_secs = parse(key, v)?
            }
            "CCM_COLLATERAL_REFRESH_MARGIN_SECS" => {
                self.collateral_refresh_margin_secs = parse(key, v)?
            }
            "CCM_PCCS_API_REQUESTS_PER_SECOND" => {
                self.pccs_api_requests_per_second = parse(key, v)?
            }
            "CCM_COLLATERAL_CHECK_INTERVAL_SECS" => {
                self.collateral_check_interval_secs = parse(key, v)?
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks value ranges.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(u) = &self.public_url
            && !((u.starts_with("https://") || u.starts_with("http://"))
                && u.len() <= 512
                && !u.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(invalid(
                "public_url",
                "must be an http:// or https:// URL without spaces (at most 512 characters)",
            ));
        }
        self.validate_collateral()?;
        if !(300..=86_400 * 30).contains(&self.invitation_ttl_secs) {
            return Err(invalid(
                "invitation_ttl_secs",
                "must be between 300 and 2592000",
            ));
        }
        if !(300..=86_400 * 7).contains(&self.password_reset_ttl_secs) {
            return Err(invalid(
                "password_reset_ttl_secs",
                "must be between 300 and 604800",
            ));
        }
        if self.smtp_host.as_deref().is_some_and(|h| {
            h.is_empty() || h.len() > 253 || h.chars().any(|c| c.is_whitespace() || c == '/')
        }) {
            return Err(invalid("smtp_host", "must be a host name or IP address"));
        }
        if self.smtp_username.is_some() != self.smtp_password_file.is_some() {
            return Err(invalid(
                "smtp_username",
                "give smtp_username and smtp_password_file together",
            ));
        }
        if !(60..=86_400 * 30).contains(&self.token_ttl_secs) {
            return Err(invalid("token_ttl_secs", "must be between 60 and 2592000"));
        }
        if self.session_ttl_secs < self.token_ttl_secs || self.session_ttl_secs > 86_400 * 90 {
            return Err(invalid(
                "session_ttl_secs",
                "must be at least token_ttl_secs and at most 7776000",
            ));
        }
        if !(1024..=64 << 20).contains(&self.max_body_bytes) {
            return Err(invalid(
                "max_body_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        if !(1..=3600).contains(&self.request_body_timeout_secs) {
            return Err(invalid(
                "request_body_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(invalid("max_connections", "must be between 1 and 1000000"));
        }
        if !(1..=4096).contains(&self.password_queue_capacity) {
            return Err(invalid(
                "password_queue_capacity",
                "must be between 1 and 4096",
            ));
        }
        for (field, v) in [
            (
                "auth_attempts_per_minute_per_address",
                self.auth_attempts_per_minute_per_address,
            ),
            (
                "auth_failures_per_minute_per_email",
                self.auth_failures_per_minute_per_email,
            ),
            ("node_requests_per_second", self.node_requests_per_second),
            ("node_request_burst", self.node_request_burst),
        ] {
            if !(1..=1_000_000).contains(&v) {
                return Err(invalid(field, "must be between 1 and 1000000"));
            }
        }
        if !(1..=3650).contains(&self.api_key_max_days) {
            return Err(invalid("api_key_max_days", "must be between 1 and 3650"));
        }
        if !(1..=self.api_key_max_days).contains(&self.api_key_default_days) {
            return Err(invalid(
                "api_key_default_days",
                "must be between 1 and api_key_max_days",
            ));
        }
        if !(1..=3650).contains(&self.rejected_retention_days) {
            return Err(invalid(
                "rejected_retention_days",
                "must be between 1 and 3650",
            ));
        }
        if !(1..=86_400).contains(&self.housekeeping_interval_secs) {
            return Err(invalid(
                "housekeeping_interval_secs",
                "must be between 1 and 86400",
            ));
        }
        if !(1..=1000).contains(&self.db_max_connections) {
            return Err(invalid("db_max_connections", "must be between 1 and 1000"));
        }
        if !(1..=36_500).contains(&self.zone_ca_validity_days) {
            return Err(invalid(
                "zone_ca_validity_days",
                "must be between 1 and 36500",
            ));
        }
        if !(1..=3600).contains(&self.node_heartbeat_interval_secs) {
            return Err(invalid(
                "node_heartbeat_interval_secs",
                "must be between 1 and 3600",
            ));
        }
        if self.node_stale_after_secs < 2 * self.node_heartbeat_interval_secs as i64 {
            return Err(invalid(
                "node_stale_after_secs",
                "must be at least twice node_heartbeat_interval_secs",
            ));
        }
        if !NODE_RENEWAL_THRESHOLD.contains(&self.node_renewal_threshold_percent) {
            return Err(invalid(
                "node_renewal_threshold_percent",
                "must be between 5 and 90",
            ));
        }
        if self.forgot_password_per_hour_per_email == 0 {
            return Err(invalid(
                "forgot_password_per_hour_per_email",
                "must be at least 1",
            ));
        }
        if !(1..=825).contains(&self.node_cert_validity_days) {
            return Err(invalid(
                "node_cert_validity_days",
                "must be between 1 and 825",
            ));
        }
        if !(1..=825).contains(&self.app_cert_validity_days) {
            return Err(invalid(
                "app_cert_validity_days",
                "must be between 1 and 825",
            ));
        }
        if !(1..=3600).contains(&self.sweep_interval_secs) {
            return Err(invalid("sweep_interval_secs", "must be between 1 and 3600"));
        }
        if !(10..=3600).contains(&self.issuance_nonce_ttl_secs) {
            return Err(invalid(
                "issuance_nonce_ttl_secs",
                "must be between 10 and 3600",
            ));
        }
        for r in &self.insecure_registries {
            if !is_registry_host(r) {
                return Err(invalid(
                    "insecure_registries",
                    format!("{r:?} is not a registry HOST or HOST:PORT (no scheme, no path)"),
                ));
            }
        }
        if self.conversion_workers > 64 {
            return Err(invalid("conversion_workers", "must be between 0 and 64"));
        }
        if !(60..=86_400).contains(&self.conversion_timeout_secs) {
            return Err(invalid(
                "conversion_timeout_secs",
                "must be between 60 and 86400",
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(invalid(
                "tls_cert_file",
                "tls_cert_file and tls_key_file go together",
            ));
        }
        if self.tls_names.is_empty() && !self.insecure_http && self.tls_cert_file.is_none() {
            return Err(invalid(
                "tls_names",
                "at least one name is needed for the generated certificate",
            ));
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("ccm.db").display()))
    }

    /// The launcher path in effect: `launcher`, else `ccm-launch` next to the running program.
    pub fn launcher_path(&self) -> Result<PathBuf, Error> {
        if let Some(p) = &self.launcher {
            return Ok(p.clone());
        }
        let exe = std::env::current_exe().map_err(|e| Error::Io {
            path: "the running program".into(),
            source: e,
        })?;
        Ok(exe.with_file_name("ccm-launch"))
    }

    /// The master key path in effect.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| crate::secrets::default_key_path(&self.data_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/d\"\ninsecure_http = true\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&f),
            env(&[("CCM_LISTEN", "127.0.0.1:9001"), ("UNRELATED", "x")]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9001);
        assert!(c.insecure_http);
        assert_eq!(c.database_url(), "sqlite:///d/ccm.db");
        assert_eq!(c.master_key_path(), PathBuf::from("/d/master.key"));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = Config::load(None, env(&[("CCM_TOKEN_TTL_SECS", "abc")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("CCM_TOKEN_TTL_SECS"), "{e}");
        let e = Config::load(None, env(&[("CCM_TOKEN_TTL_SECS", "5")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("token_ttl_secs"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "lisen = \"x\"\n").unwrap();
        let e = Config::load(Some(&f), env(&[])).unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn edge_settings_from_file_and_env() {
        let c = Config::default();
        assert!(!c.open_signup, "sign-up is closed by default");
        assert_eq!((c.api_key_default_days, c.rejected_retention_days), (90, 7));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        // The old name still reads.
        std::fs::write(&f, "allow_signup = true\nmax_connections = 10\n").unwrap();
        let c = Config::load(Some(&f), env(&[])).unwrap();
        assert!(c.open_signup);
        assert_eq!(c.max_connections, 10);
        let c = Config::load(
            None,
            env(&[
                ("CCM_OPEN_SIGNUP", "yes"),
                ("CCM_PASSWORD_QUEUE_CAPACITY", "4"),
                ("CCM_NODE_REQUESTS_PER_SECOND", "7"),
                ("CCM_REJECTED_RETENTION_DAYS", "2"),
            ]),
        )
        .unwrap();
        assert!(c.open_signup);
        assert_eq!(c.password_queue_capacity, 4);
        assert_eq!(c.node_requests_per_second, 7);
        assert_eq!(c.rejected_retention_days, 2);
        for (k, v, field) in [
            (
                "CCM_PASSWORD_QUEUE_CAPACITY",
                "0",
                "password_queue_capacity",
            ),
            ("CCM_API_KEY_DEFAULT_DAYS", "400", "api_key_default_days"),
            (
                "CCM_REQUEST_BODY_TIMEOUT_SECS",
                "0",
                "request_body_timeout_secs",
            ),
            (
                "CCM_REJECTED_RETENTION_DAYS",
                "0",
                "rejected_retention_days",
            ),
        ] {
            let e = Config::load(None, env(&[(k, v)])).unwrap_err().to_string();
            assert!(e.contains(field), "{k}={v}: {e}");
        }
    }

    #[test]
    fn conversion_settings_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "insecure_registries = [\"127.0.0.1:5000\", \"registry.local\"]\nlauncher = \"/opt/ccm/ccm-launch\"\nconversion_workers = 0\n",
        )
        .unwrap();
        let c = Config::load(Some(&f), env(&[])).unwrap();
        assert_eq!(c.insecure_registries, ["127.0.0.1:5000", "registry.local"]);
        assert_eq!(
            c.launcher_path().unwrap(),
            PathBuf::from("/opt/ccm/ccm-launch")
        );
        assert_eq!(c.conversion_workers, 0);
        let c = Config::load(
            Some(&f),
            env(&[
                ("CCM_INSECURE_REGISTRIES", "a.test:1, [::1]:5000"),
                ("CCM_LAUNCHER", "/l"),
                ("CCM_CONVERSION_WORKERS", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(c.insecure_registries, ["a.test:1", "[::1]:5000"]);
        assert_eq!(c.launcher_path().unwrap(), PathBuf::from("/l"));
        assert_eq!(c.conversion_workers, 3);
        let default = Config::default().launcher_path().unwrap();
        assert_eq!(default.file_name().unwrap(), "ccm-launch");
        for bad in ["http://r:5000", "r:5000/path", "r:0", "r:port", ":5000", ""] {
            let e = Config::load(None, env(&[("CCM_INSECURE_REGISTRIES", bad)]));
            if bad.is_empty() {
                assert!(e.is_ok(), "an empty list is no registry");
                continue;
            }
            let e = e.unwrap_err().to_string();
            assert!(
                e.contains("insecure_registries") && e.contains(bad),
                "{bad}: {e}"
            );
        }
        let e = Config::load(None, env(&[("CCM_CONVERSION_WORKERS", "65")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("conversion_workers"), "{e}");
    }
}
