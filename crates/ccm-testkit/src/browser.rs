//! A real browser for tests: Debian's `chromium`, headless, driven over WebDriver by Debian's
//! `chromium-driver` (chromedriver) on an ephemeral port of 127.0.0.1, with
//! [`fantoccini`] speaking plain HTTP to it.
//!
//! Every [`Browser`] gets a fresh profile directory (no cookies, no cache, no extensions) and
//! the flags that keep Chromium from reaching the network on its own (`--disable-background-
//! networking --disable-component-update --disable-sync --no-first-run --disable-quic`).
//! `--no-sandbox` is needed because tests run as root; `--disable-gpu` because there is none.
//! Certificates are not checked (`acceptInsecureCerts`), so a manager's self-signed HTTPS
//! identity works; cookies still get their `Secure` treatment.
//!
//! Screenshots go to `target/test-artifacts/<test>/NN-step.png` (numbered in the order taken;
//! the directory is emptied when the browser starts), together with chromedriver's log, so a
//! failed run can be looked at step by step. `CCM_TEST_ARTIFACTS` overrides the base directory.
//! Files the pages download land in its `downloads/` ([`Browser::wait_for_download`]).
//!
//! The page helpers ([`Browser::fill`], [`Browser::click_button`], [`Browser::wait_for_text`],
//! ...) address elements the way a person does — by field name, button text, link text — and
//! fail with an error naming what was missing and the page it was missing on.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ccm_testkit::Error> {
//! let mut b = ccm_testkit::browser::Browser::start("console_login").await?;
//! b.goto("http://127.0.0.1:8080/console/login").await?;
//! b.fill("user_email", "alice@example.com").await?;
//! b.click_button("Log in").await?;
//! b.screenshot("logged-in").await?;
//! b.close().await;
//! # Ok(()) }
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::Error;
use crate::registry::find_in_path;

/// How long chromedriver may take to answer `/status`.
const DRIVER_STARTUP: Duration = Duration::from_secs(30);
/// Default wait for elements, text and navigation.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(15);

/// The flags Chromium is started with (plus `--headless=new`, `--user-data-dir` and the window
/// size).
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-default-browser-check",
    "--password-store=basic",
];

/// Settings of a [`Browser`].
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// Name of the test: the screenshot directory's name.
    pub test_name: String,
    /// Window width and height in CSS pixels.
    pub window: (u32, u32),
}

impl BrowserOptions {
    /// Defaults for a test: a 1280×1000 window.
    pub fn new(test_name: &str) -> Self {
        Self {
            test_name: test_name.to_string(),
            window: (1280, 1000),
        }
    }
}

/// A headless Chromium under chromedriver. Dropping it kills both (the driver runs in its own
/// process group with Chromium under it); [`Browser::close`] ends the session politely first.
pub struct Browser {
    client: Client,
    driver: Child,
    driver_url: String,
    artifacts: PathBuf,
    downloads: PathBuf,
    shots: u32,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("driver_url", &self.driver_url)
            .field("artifacts", &self.artifacts)
            .finish_non_exhaustive()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// Kills chromedriver's process group (the driver and the Chromium it started) and reaps it.
fn kill_group(driver: &mut Child) {
    let group = rustix::process::Pid::from_child(driver);
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    let _ = driver.kill();
    let _ = driver.wait();
}

/// Kills a chromedriver that has not become a [`Browser`] yet.
struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(d) = self.0.as_mut() {
            kill_group(d);
        }
    }
}

fn program(env: &str, name: &'static str, package: &'static str) -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    find_in_path(name).ok_or(Error::Missing {
        program: name,
        package,
    })
}

/// `target/test-artifacts/<test>` (or `$CCM_TEST_ARTIFACTS/<test>`), emptied.
pub fn artifacts_dir(test_name: &str) -> Result<PathBuf, Error> {
    let base = match std::env::var_os("CCM_TEST_ARTIFACTS") {
        Some(p) => PathBuf::from(p),
        None => {
            // Test binaries live in <target>/<profile>/deps/.
            let exe = std::env::current_exe().map_err(|e| Error::Io {
                path: "current executable".into(),
                source: e,
            })?;
            exe.ancestors()
                .nth(3)
                .map(|t| t.join("test-artifacts"))
                .unwrap_or_else(|| std::env::temp_dir().join("ccm-test-artifacts"))
        }
    };
    let dir = base.join(test_name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::Io {
            path: dir.clone(),
            source: e,
        })?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        path: dir.clone(),
        source: e,
    })?;
    Ok(dir)
}

fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Io {
        path: "127.0.0.1:0".into(),
        source: e,
    })?;
    l.local_addr().map(|a| a.port()).map_err(|e| Error::Io {
        path: "127.0.0.1:0".into(),
        source: e,
    })
}

/// chromedriver's `GET /status` says `"ready": true`.
fn driver_ready(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.starts_with("HTTP/1.1 200") && body.contains("\"ready\":true")
}

fn webdriver(action: impl Into<String>, e: impl std::fmt::Display) -> Error {
    Error::WebDriver {
        action: action.into(),
        message: e.to_string(),
    }
}

/// An XPath string literal for any text (quotes included).
fn xpath_literal(s: &str) -> String {
    if !s.contains('"') {
        format!("\"{s}\"")
    } else if !s.contains('\'') {
        format!("'{s}'")
    } else {
        let parts: Vec<String> = s.split('"').map(|p| format!("\"{p}\"")).collect();
        format!("concat({})", parts.join(", '\"', "))
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with default options.
    pub async fn start(test_name: &str) -> Result<Self, Error> {
        Self::start_with(BrowserOptions::new(test_name)).await
    }

    /// Starts chromedriver on an ephemeral port and opens a WebDriver session with a fresh
    /// Chromium profile.
    pub async fn start_with(opts: BrowserOptions) -> Result<Self, Error> {
        let driver_bin = program(
            "CCM_TEST_CHROMEDRIVER_BIN",
            "chromedriver",
            "chromium-driver",
        )?;
        let chromium = program("CCM_TEST_CHROMIUM_BIN", "chromium", "chromium")?;
        let artifacts = artifacts_dir(&opts.test_name)?;
        let downloads = artifacts.join("downloads");
        std::fs::create_dir_all(&downloads).map_err(|e| Error::Io {
            path: downloads.clone(),
            source: e,
        })?;
        let profile = tempfile::Builder::new()
            .prefix("ccm-test-chromium-")
            .tempdir()
            .map_err(|e| Error::Io {
                path: std::env::temp_dir(),
                source: e,
            })?;
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = artifacts.join("chromedriver.log");
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that drop can end the driver with every Chromium
            // process it started.
            .process_group(0)
            .spawn()
            .map_err(|e| Error::Spawn {
                program: driver_bin.display().to_string(),
                source: e,
            })?;
        // Owns the driver from here on: an early return kills it.
        let mut guard = DriverGuard(Some(driver));
        let driver_url = format!("http://{addr}");
        let deadline = Instant::now() + DRIVER_STARTUP;
        while !driver_ready(addr) {
            if let Some(Ok(Some(status))) = guard.0.as_mut().map(Child::try_wait) {
                return Err(Error::Command {
                    program: driver_bin.display().to_string(),
                    status: status.to_string(),
                    stderr: std::fs::read_to_string(&log).unwrap_or_default(),
                });
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("chromedriver on {addr}"),
                    after: DRIVER_STARTUP,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push("--headless=new".into());
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={},{}", opts.window.0, opts.window.1));
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": args,
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            },
        });
        let Value::Object(caps) = caps else {
            return Err(webdriver("build capabilities", "not an object"));
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver_url)
            .await
            .map_err(|e| webdriver("open a Chromium session", e))?;
        let driver = guard
            .0
            .take()
            .ok_or_else(|| webdriver("start chromedriver", "the driver process is gone"))?;
        Ok(Browser {
            client,
            driver,
            driver_url,
            artifacts,
            downloads,
            shots: 0,
            _profile: profile,
        })
    }

    /// The WebDriver client, for anything the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Where screenshots and the driver log go.
    pub fn artifacts(&self) -> &Path {
        &self.artifacts
    }

    /// Where downloaded files go (`downloads/` in the artifacts directory).
    pub fn downloads(&self) -> &Path {
        &self.downloads
    }

    /// Waits up to `timeout` until a download named `file_name` has completed; returns its path.
    pub async fn wait_for_download(
        &self,
        file_name: &str,
        timeout: Duration,
    ) -> Result<PathBuf, Error> {
        let path = self.downloads.join(file_name);
        let deadline = Instant::now() + timeout;
        // Chromium writes `*.crdownload` and renames it to the final name when complete.
        while !path.is_file() {
            if Instant::now() > deadline {
                let present: Vec<String> = std::fs::read_dir(&self.downloads)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                return Err(Error::Timeout {
                    what: format!("the download {file_name} (downloads: {present:?})"),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(path)
    }

    /// Ends the WebDriver session (Chromium exits), then stops chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Opens a URL and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<(), Error> {
        self.client()
            .goto(url)
            .await
            .map_err(|e| webdriver(format!("open {url}"), e))
    }

    /// The current URL's path and query (e.g. `/console/apps?page=2`).
    pub async fn path(&self) -> Result<String, Error> {
        let u = self
            .client()
            .current_url()
            .await
            .map_err(|e| webdriver("read the current URL", e))?;
        Ok(match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        })
    }

    /// Takes a screenshot of the window into `NN-<step>.png` and returns its path.
    pub async fn screenshot(&mut self, step: &str) -> Result<PathBuf, Error> {
        self.shots += 1;
        let name: String = step
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = self.artifacts.join(format!("{:02}-{name}.png", self.shots));
        let png = self
            .client()
            .screenshot()
            .await
            .map_err(|e| webdriver(format!("screenshot {step}"), e))?;
        std::fs::write(&path, png).map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
        Ok(path)
    }

    /// Waits up to [`DEFAULT_WAIT`] for an element.
    pub async fn find(&self, locator: Locator<'_>) -> Result<Element, Error> {
        let what = format!("{locator:?}");
        match self
            .client()
            .wait()
            .at_most(DEFAULT_WAIT)
            .every(Duration::from_millis(50))
            .for_element(locator)
            .await
        {
            Ok(e) => Ok(e),
            Err(e) => {
                let at = self.path().await.unwrap_or_default();
                Err(webdriver(format!("find {what} on {at}"), e))
            }
        }
    }

    /// The input, select or textarea named `name`.
    pub async fn field(&self, name: &str) -> Result<Element, Error> {
        self.find(Locator::Css(&format!(
            "[name=\"{name}\"]:not([type=hidden])"
        )))
        .await
    }

    /// Replaces the text of the field named `name`.
    pub async fn fill(&self, name: &str, value: &str) -> Result<(), Error> {
        let e = self.field(name).await?;
        e.clear()
            .await
            .map_err(|err| webdriver(format!("clear {name}"), err))?;
        e.send_keys(value)
            .await
            .map_err(|err| webdriver(format!("type into {name}"), err))
    }

    /// Chooses the option with `value` in the select named `name`.
    pub async fn choose(&self, name: &str, value: &str) -> Result<(), Error> {
        self.field(name)
            .await?
            .select_by_value(value)
            .await
            .map_err(|e| webdriver(format!("choose {value} in {name}"), e))
    }

    /// Ticks or clears the checkbox named `name`.
    pub async fn check(&self, name: &str, on: bool) -> Result<(), Error> {
        let e = self.field(name).await?;
        let checked = e
            .is_selected()
            .await
            .map_err(|err| webdriver(format!("read {name}"), err))?;
        if checked != on {
            e.click()
                .await
                .map_err(|err| webdriver(format!("click {name}"), err))?;
        }
        Ok(())
    }

    /// Clicks the (first visible) button whose text is `text`.
    pub async fn click_button(&self, text: &str) -> Result<(), Error> {
        let xpath = format!(
            "//button[normalize-space(.)={lit}] | //input[@type='submit' and @value={lit}]",
            lit = xpath_literal(text)
        );
        self.click_first_visible(&xpath, text).await
    }

    /// Clicks the (first visible) link whose text is `text`.
    pub async fn click_link(&self, text: &str) -> Result<(), Error> {
        let xpath = format!("//a[normalize-space(.)={}]", xpath_literal(text));
        self.click_first_visible(&xpath, text).await
    }

    async fn click_first_visible(&self, xpath: &str, what: &str) -> Result<(), Error> {
        let deadline = Instant::now() + DEFAULT_WAIT;
        loop {
            let all = self
                .client()
                .find_all(Locator::XPath(xpath))
                .await
                .map_err(|e| webdriver(format!("look for {what:?}"), e))?;
            for e in all {
                if e.is_displayed().await.unwrap_or(false) {
                    return e
                        .click()
                        .await
                        .map_err(|err| webdriver(format!("click {what:?}"), err));
                }
            }
            if Instant::now() > deadline {
                let at = self.path().await.unwrap_or_default();
                return Err(webdriver(
                    format!("click {what:?} on {at}"),
                    "no visible element with this text",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The visible text of the page.
    pub async fn page_text(&self) -> Result<String, Error> {
        self.find(Locator::Css("body"))
            .await?
            .text()
            .await
            .map_err(|e| webdriver("read the page text", e))
    }

    /// The text of the first element matching a CSS selector.
    pub async fn text_of(&self, css: &str) -> Result<String, Error> {
        self.find(Locator::Css(css))
            .await?
            .text()
            .await
            .map_err(|e| webdriver(format!("read {css}"), e))
    }

    /// Waits up to [`DEFAULT_WAIT`] until the page shows `text`.
    pub async fn wait_for_text(&self, text: &str) -> Result<(), Error> {
        let deadline = Instant::now() + DEFAULT_WAIT;
        loop {
            // While a navigation is under way the old body goes stale: look again.
            if self.page_text().await.is_ok_and(|t| t.contains(text)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let at = self.path().await.unwrap_or_default();
                return Err(Error::Timeout {
                    what: format!("the text {text:?} on {at}"),
                    after: DEFAULT_WAIT,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to [`DEFAULT_WAIT`] until the path (without query) satisfies `pred`.
    pub async fn wait_for_path(
        &self,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, Error> {
        let deadline = Instant::now() + DEFAULT_WAIT;
        loop {
            let p = self.path().await.unwrap_or_default();
            if pred(p.split('?').next().unwrap_or_default()) {
                return Ok(p);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("{what} (at {p})"),
                    after: DEFAULT_WAIT,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs JavaScript in the page and returns its result.
    pub async fn script(&self, js: &str) -> Result<Value, Error> {
        self.client()
            .execute(js, Vec::new())
            .await
            .map_err(|e| webdriver("run a script", e))
    }

    /// Grants the current page's origin a permission (W3C WebDriver extension "Set Permission"),
    /// e.g. `clipboard-read` so that a test can read what a copy button copied.
    pub async fn grant_permission(&self, name: &str) -> Result<(), Error> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let action = format!("grant the permission {name}");
        let id = self
            .client()
            .session_id()
            .await
            .map_err(|e| webdriver(&action, e))?
            .ok_or_else(|| webdriver(&action, "no session"))?;
        let body = json!({"descriptor": {"name": name}, "state": "granted"}).to_string();
        let addr = self.driver_url.trim_start_matches("http://");
        let req = format!(
            "POST /session/{id}/permissions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(req.as_bytes()).await?;
            // chromedriver keeps the connection open: read the head and the body it announces.
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await?;
                answer.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&answer).into_owned();
                if n == 0 {
                    return Ok::<_, std::io::Error>(text);
                }
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())
                                .flatten()
                        })
                        .unwrap_or(0);
                    if answer.len() >= head_end + 4 + length {
                        return Ok(text);
                    }
                }
            }
        };
        let answer = tokio::time::timeout(DEFAULT_WAIT, exchange)
            .await
            .map_err(|_| webdriver(&action, "chromedriver did not answer"))?
            .map_err(|e| webdriver(&action, e))?;
        if answer.starts_with("HTTP/1.1 200") {
            Ok(())
        } else {
            Err(webdriver(&action, answer))
        }
    }

    /// The text on the clipboard (needs [`Browser::grant_permission`] `clipboard-read`).
    pub async fn clipboard(&self) -> Result<String, Error> {
        let v = self
            .script("return await navigator.clipboard.readText()")
            .await?;
        v.as_str()
            .map(String::from)
            .ok_or_else(|| webdriver("read the clipboard", format!("not text: {v}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xpath_literals_quote_any_text() {
        assert_eq!(xpath_literal("Log in"), "\"Log in\"");
        assert_eq!(xpath_literal("say \"hi\""), "'say \"hi\"'");
        assert_eq!(xpath_literal("a\"b'c"), "concat(\"a\", '\"', \"b'c\")");
    }
}
