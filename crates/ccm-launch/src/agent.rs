//! The node agent client: quote-based certificate issuance and polling.
//!
//! Contract (the agent's native endpoint, DESIGN.md section 6):
//!
//! ```text
//! POST {base}/v1/enclave/nonce                  {} → {"nonce": base64(32 bytes), "expires_at"}
//! POST {base}/v1/certificate/issue-with-quote   {"csr": PEM, "quote": base64(DCAP quote)}
//! GET  {base}/v1/certificate/result/{task_id}
//!   → {"task_id", "task_status": INPROGRESS|PENDING_WHITELIST|SUCCESS|DENIED|FAILED,
//!      "certificate": PEM chain|null, "message": reason|null}
//! ```
//!
//! Every request starts with a fresh nonce from the agent (single use, minutes of validity); the
//! caller makes the quote over the key and that nonce (REPORTDATA[32..64]). The launcher polls
//! while the task is `INPROGRESS` or `PENDING_WHITELIST`, backing off from 10 ms to 5 s, and says
//! on standard error why it waits (on every status change and at least once a minute).
//! Connection failures and 5xx answers (a 503 for the nonce: the agent cannot reach the manager)
//! are retried within the same deadline (the agent may start after the app); a request whose
//! fate is unknown (the agent unreachable after it was sent, or it forgot the task) is made
//! again with a new nonce and a new quote, since the old nonce may be spent. Other answers end
//! the attempt with a specific error.
//!
//! `NODE_AGENT_BASE_URL` is accepted with or without a trailing `/v1/`. Only plain `http` is
//! spoken (the agent listens on the node). Host names are resolved without the C library's NSS
//! (the launcher is a static binary that also runs in scratch images): IP literals, `localhost`
//! and `/etc/hosts` entries work; anything else is refused with advice to use the node's IP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::LaunchError;
use crate::log;

/// Longest time one HTTP exchange may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// First poll delay.
const FIRST_POLL: Duration = Duration::from_millis(10);
/// Longest poll delay.
const MAX_POLL: Duration = Duration::from_secs(5);
/// Largest response body read.
const MAX_BODY: u64 = 1 << 20;
/// How often a still-waiting launcher repeats why it waits.
const REMIND_EVERY: Duration = Duration::from_secs(60);

/// Where the node agent is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentUrl {
    /// The URL as configured.
    pub configured: String,
    /// The resolved address.
    pub addr: SocketAddr,
    /// Path prefix before `/v1` (usually empty), without a trailing slash.
    pub prefix: String,
}

fn config_err(url: &str, why: impl std::fmt::Display) -> LaunchError {
    LaunchError::AgentConfig(format!("NODE_AGENT_BASE_URL {url:?}: {why}"))
}

impl AgentUrl {
    /// Parses and resolves `NODE_AGENT_BASE_URL` (`hosts` is the `/etc/hosts` to consult).
    pub fn parse(url: &str, hosts: &Path) -> Result<AgentUrl, LaunchError> {
        let uri: ureq::http::Uri = url
            .trim()
            .parse()
            .map_err(|e| config_err(url, format!("not a URL ({e})")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(config_err(
                    url,
                    "https is not supported: the node agent serves plain HTTP on the node (http://NODE_IP:9092/v1/)",
                ));
            }
            Some(other) => return Err(config_err(url, format!("unsupported scheme {other:?}"))),
            None => return Err(config_err(url, "no scheme (expected http://HOST:PORT/v1/)")),
        }
        if uri.query().is_some() {
            return Err(config_err(url, "a query string is not allowed"));
        }
        let authority = uri.authority().ok_or_else(|| config_err(url, "no host"))?;
        if authority.as_str().contains('@') {
            return Err(config_err(url, "user information is not allowed"));
        }
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(80);
        let ip = resolve(host, hosts).map_err(|why| config_err(url, why))?;
        let mut prefix = uri.path().trim_end_matches('/').to_owned();
        if let Some(p) = prefix.strip_suffix("/v1") {
            prefix = p.to_owned();
        }
        Ok(AgentUrl {
            configured: url.trim().to_owned(),
            addr: SocketAddr::new(ip, port),
            prefix,
        })
    }

    /// The URL of `path` (starting with `/v1/`), on the resolved address.
    pub fn endpoint(&self, path: &str) -> String {
        format!("http://{}{}{}", self.addr, self.prefix, path)
    }
}

/// Resolves a host without NSS: IP literal, `localhost`, or `/etc/hosts`.
pub fn resolve(host: &str, hosts: &Path) -> Result<IpAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip);
    }
    let wanted = bare.to_ascii_lowercase();
    if let Ok(text) = std::fs::read_to_string(hosts) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
                continue;
            };
            if words.any(|name| name.eq_ignore_ascii_case(&wanted)) {
                return Ok(ip);
            }
        }
    }
    if wanted == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    Err(format!(
        "cannot resolve host {host:?}: it is not an IP address and not in {} (the static launcher does not use DNS; \
         give the node's IP, e.g. from the Kubernetes downward API status.hostIP)",
        hosts.display()
    ))
}

/// The task object the agent answers with.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Task {
    /// The task id.
    pub task_id: String,
    /// `INPROGRESS`, `PENDING_WHITELIST`, `SUCCESS`, `DENIED` or `FAILED`.
    pub task_status: String,
    /// The certificate chain (PEM) once issued.
    #[serde(default)]
    pub certificate: Option<String>,
    /// Why it waits, failed or was denied.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Serialize)]
struct IssueRequest<'a> {
    csr: &'a str,
    quote: String,
}

/// The agent's nonce answer (`ccm_api::agent::NonceResponse`).
#[derive(Deserialize)]
struct NonceAnswer {
    nonce: String,
}

/// The outcome of asking for a nonce.
enum Nonce {
    /// The 32 nonce bytes.
    Fresh([u8; 32]),
    /// Worth retrying (connection failure, 5xx, 429).
    Transient(String),
}

/// The outcome of one HTTP exchange.
enum Answer {
    Task(Task),
    /// Worth retrying (connection failure, 5xx, 429).
    Transient(String),
    /// `GET result` said the task does not exist.
    UnknownTask,
}

/// A blocking client for one node agent.
#[derive(Debug)]
pub struct AgentClient {
    url: AgentUrl,
    agent: ureq::Agent,
}

/// The reason in an error answer: `code: message` of the agent's `{"code", "message"}` error
/// body, else the body itself, flattened to one line.
fn error_text(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(message) = v.get("message").and_then(|m| m.as_str())
    {
        return match v.get("code").and_then(|c| c.as_str()) {
            Some(code) => one_line(&format!("{code}: {message}"), 300),
            None => one_line(message, 300),
        };
    }
    one_line(body, 300)
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &flat[..i]),
        None => flat.to_owned(),
    }
}

impl AgentClient {
    /// A client for `url`.
    pub fn new(url: AgentUrl) -> AgentClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .timeout_global(Some(CALL_TIMEOUT))
            .user_agent(concat!("ccm-launch/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        AgentClient { url, agent }
    }

    /// The agent's URL.
    pub fn url(&self) -> &AgentUrl {
        &self.url
    }

    fn exchange(
        &self,
        req: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        what: &str,
    ) -> Result<Answer, LaunchError> {
        let mut resp = match req {
            Ok(r) => r,
            Err(e) => {
                return Ok(Answer::Transient(format!(
                    "{what}: node agent at {} unreachable: {e}",
                    self.url.configured
                )));
            }
        };
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string();
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                return Ok(Answer::Transient(format!(
                    "{what}: reading the node agent's answer: {e}"
                )));
            }
        };
        match status {
            200..=299 => serde_json::from_str::<Task>(&body).map(Answer::Task).map_err(|e| {
                LaunchError::Agent(format!(
                    "{what}: the node agent at {} answered with something that is not a task object ({e}): {}",
                    self.url.configured,
                    one_line(&body, 200)
                ))
            }),
            404 if what == "poll" => Ok(Answer::UnknownTask),
            404 => Err(LaunchError::Agent(format!(
                "{what}: the node agent at {} has no quote-based issuance endpoint (HTTP 404 for {}); is NODE_AGENT_BASE_URL a ccm agent?",
                self.url.configured,
                self.url.endpoint("/v1/certificate/issue-with-quote")
            ))),
            429 | 500..=599 => Ok(Answer::Transient(format!(
                "{what}: node agent answered HTTP {status}: {}",
                error_text(&body)
            ))),
            _ => Err(LaunchError::Agent(format!(
                "{what}: node agent at {} answered HTTP {status}: {}",
                self.url.configured,
                error_text(&body)
            ))),
        }
    }

    fn nonce(&self) -> Result<Nonce, LaunchError> {
        let url = self.url.endpoint("/v1/enclave/nonce");
        let mut resp = match self.agent.post(&url).send_json(serde_json::json!({})) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Nonce::Transient(format!(
                    "nonce: node agent at {} unreachable: {e}",
                    self.url.configured
                )));
            }
        };
        let status = resp.status().as_u16();
        let body = match resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
        {
            Ok(b) => b,
            Err(e) => {
                return Ok(Nonce::Transient(format!(
                    "nonce: reading the node agent's answer: {e}"
                )));
            }
        };
        match status {
            200..=299 => {
                let bad = |why: &str| {
                    LaunchError::Agent(format!(
                        "nonce: the node agent at {} answered with {why}: {}",
                        self.url.configured,
                        one_line(&body, 200)
                    ))
                };
                let answer: NonceAnswer = serde_json::from_str(&body)
                    .map_err(|_| bad("something that is not a nonce"))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(answer.nonce.trim())
                    .map_err(|_| bad("a nonce that is not base64"))?;
                let nonce: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| bad("a nonce that is not 32 bytes"))?;
                Ok(Nonce::Fresh(nonce))
            }
            404 => Err(LaunchError::Agent(format!(
                "nonce: the node agent at {} has no nonce endpoint (HTTP 404 for {url}); it is older than this launcher",
                self.url.configured
            ))),
            429 | 500..=599 => Ok(Nonce::Transient(format!(
                "no nonce: node agent answered HTTP {status}: {}",
                error_text(&body)
            ))),
            _ => Err(LaunchError::Agent(format!(
                "nonce: node agent at {} answered HTTP {status}: {}",
                self.url.configured,
                error_text(&body)
            ))),
        }
    }

    fn issue(&self, csr: &str, quote_b64: &str) -> Result<Answer, LaunchError> {
        let body = IssueRequest {
            csr,
            quote: quote_b64.to_owned(),
        };
        let r = self
            .agent
            .post(self.url.endpoint("/v1/certificate/issue-with-quote"))
            .send_json(&body);
        self.exchange(r, "issue")
    }

    fn poll(&self, task_id: &str) -> Result<Answer, LaunchError> {
        let r = self
            .agent
            .get(
                self.url
                    .endpoint(&format!("/v1/certificate/result/{task_id}")),
            )
            .call();
        self.exchange(r, "poll")
    }

    /// Requests a certificate for `domain` with `csr` (PEM), and waits for it until `timeout`
    /// (None: for ever). Each request takes a fresh nonce from the agent and a quote from
    /// `quote_for(nonce)` (REPORTDATA binding the CSR's key and the nonce). Returns the PEM
    /// chain.
    pub fn obtain(
        &self,
        domain: &str,
        csr: &str,
        mut quote_for: impl FnMut(&[u8; 32]) -> Result<Vec<u8>, LaunchError>,
        timeout: Option<Duration>,
    ) -> Result<String, LaunchError> {
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let mut delay = FIRST_POLL;
        let mut task: Option<Task> = None;
        let mut last_said: Option<(String, Instant)> = None;
        loop {
            let answer = match &task {
                None => match self.nonce()? {
                    Nonce::Fresh(nonce) => {
                        let quote = quote_for(&nonce)?;
                        let quote_b64 = base64::engine::general_purpose::STANDARD.encode(quote);
                        self.issue(csr, &quote_b64)?
                    }
                    Nonce::Transient(why) => Answer::Transient(why),
                },
                Some(t) => self.poll(&t.task_id)?,
            };
            let reason = match answer {
                Answer::Task(t) => {
                    check_task_id(&t.task_id)?;
                    match t.task_status.as_str() {
                        "SUCCESS" => {
                            return t.certificate.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
                                LaunchError::Agent(format!(
                                    "certificate for {domain}: task {} is SUCCESS but carries no certificate",
                                    t.task_id
                                ))
                            });
                        }
                        "DENIED" | "FAILED" => {
                            return Err(LaunchError::Refused {
                                domain: domain.to_owned(),
                                status: t.task_status.clone(),
                                message: t.message.as_deref().map(|m| one_line(m, 300)),
                            });
                        }
                        "INPROGRESS" | "PENDING_WHITELIST" => {
                            let why = format!(
                                "{}{} (task {})",
                                t.task_status,
                                t.message
                                    .as_deref()
                                    .map(|m| format!(": {}", one_line(m, 200)))
                                    .unwrap_or_default(),
                                t.task_id
                            );
                            task = Some(t);
                            why
                        }
                        other => {
                            return Err(LaunchError::Agent(format!(
                                "certificate for {domain}: unknown task_status {:?} (task {})",
                                one_line(other, 40),
                                t.task_id
                            )));
                        }
                    }
                }
                Answer::Transient(why) => why,
                Answer::UnknownTask => {
                    let why = format!(
                        "the node agent no longer knows task {}; requesting again",
                        task.as_ref().map(|t| t.task_id.as_str()).unwrap_or("?")
                    );
                    task = None;
                    why
                }
            };
            let now = Instant::now();
            if let Some(d) = deadline
                && now >= d
            {
                return Err(match &task {
                    Some(t) => LaunchError::Timeout {
                        domain: domain.to_owned(),
                        status: t.task_status.clone(),
                        task_id: t.task_id.clone(),
                        waited_secs: now.duration_since(start).as_secs(),
                    },
                    None => LaunchError::Agent(format!(
                        "certificate for {domain}: gave up after {} s: {reason}",
                        now.duration_since(start).as_secs()
                    )),
                });
            }
            let say = match &last_said {
                Some((said, at)) => *said != reason || now.duration_since(*at) >= REMIND_EVERY,
                None => true,
            };
            if say {
                let left = deadline
                    .map(|d| format!(" (up to {} s more)", d.duration_since(now).as_secs()))
                    .unwrap_or_default();
                log(&format!(
                    "certificate for {domain}: {reason}; waiting{left}"
                ));
                last_said = Some((reason, now));
            }
            let mut sleep = delay;
            if let Some(d) = deadline {
                sleep = sleep.min(d.saturating_duration_since(now));
            }
            std::thread::sleep(sleep);
            delay = (delay * 2).min(MAX_POLL);
        }
    }
}

/// Task ids go into a URL path: only UUID-like characters.
fn check_task_id(id: &str) -> Result<(), LaunchError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(LaunchError::Agent(format!(
            "the node agent returned an invalid task_id {:?}",
            one_line(id, 60)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<AgentUrl, LaunchError> {
        AgentUrl::parse(url, Path::new("/nonexistent/hosts"))
    }

    #[test]
    fn base_url_with_or_without_v1() {
        for url in [
            "http://10.0.0.4:9092/v1/",
            "http://10.0.0.4:9092/v1",
            "http://10.0.0.4:9092",
            "http://10.0.0.4:9092/",
            " http://10.0.0.4:9092/v1/ ",
        ] {
            let u = parse(url).unwrap();
            assert_eq!(
                u.endpoint("/v1/certificate/issue-with-quote"),
                "http://10.0.0.4:9092/v1/certificate/issue-with-quote",
                "{url}"
            );
        }
        let u = parse("http://[::1]:9092/agent/v1/").unwrap();
        assert_eq!(u.endpoint("/v1/x"), "http://[::1]:9092/agent/v1/x");
        assert_eq!(parse("http://127.0.0.1").unwrap().addr.port(), 80);
        assert_eq!(
            parse("http://localhost:9092").unwrap().addr,
            "127.0.0.1:9092".parse().unwrap()
        );
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for (url, needle) in [
            ("https://10.0.0.4:9092/v1/", "https is not supported"),
            ("10.0.0.4:9092", "scheme"),
            ("ftp://10.0.0.4/", "unsupported scheme"),
            ("http://10.0.0.4:9092/v1/?x=1", "query"),
            ("http://u:p@10.0.0.4:9092/", "user information"),
            ("http://agent.invalid:9092/", "cannot resolve host"),
            ("http://", "not a URL"),
        ] {
            let e = parse(url).unwrap_err();
            assert_eq!(e.exit_code(), 31, "{url}");
            assert!(e.to_string().contains(needle), "{url}: {e}");
        }
    }

    #[test]
    fn hosts_file_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            "# comment\n127.0.0.1 localhost\n10.1.2.3  node-a node-a.cluster # trailing\nbogus line\nfe80::1 six\n",
        )
        .unwrap();
        assert_eq!(
            resolve("NODE-A.cluster", &hosts).unwrap(),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            resolve("six", &hosts).unwrap(),
            "fe80::1".parse::<IpAddr>().unwrap()
        );
        assert!(resolve("node-b", &hosts).is_err());
    }

    #[test]
    fn task_ids_are_path_safe() {
        assert!(check_task_id("0b5e3c1e-93f1-4a55-8d6f-2f0f3a1c9d10").is_ok());
        for bad in ["", "../x", "a/b", "a?b", &"x".repeat(200)] {
            assert_eq!(check_task_id(bad).unwrap_err().exit_code(), 32, "{bad}");
        }
    }

    #[test]
    fn error_bodies_are_read_for_their_reason() {
        assert_eq!(
            error_text(r#"{"code":"bad_csr","message":"CSR does not parse"}"#),
            "bad_csr: CSR does not parse"
        );
        assert_eq!(error_text(r#"{"message":"no"}"#), "no");
        assert_eq!(
            error_text("<html>\nbad gateway</html>"),
            "<html> bad gateway</html>"
        );
    }

    #[test]
    fn one_line_flattens_and_truncates() {
        assert_eq!(one_line("a\nb\r\n", 10), "a b");
        assert_eq!(one_line("abcdef", 3), "abc...");
    }
}
