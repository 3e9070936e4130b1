//! Test support for the web console: a real manager on 127.0.0.1:0, a form-posting HTTP client
//! that keeps cookies like a browser, the seed tutorial's values, and page-level helpers that
//! walk the console in a real browser ([`ccm_testkit::browser::Browser`]).
//!
//! Other test crates (the full seed journey) can include this file with
//! `#[path = ".../ccm-manager/tests/console_support/mod.rs"] mod console_support;`.
// Test support: a failed step aborts the test with its reason.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use ccm_manager::{Clock, Config, RunningManager};
use ccm_testkit::browser::Browser;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

pub const PASSWORD: &str = "correct horse battery";

/// The seed tutorial's application (`TutorialApp { input_image, output_image, ..TUTORIAL }` for
/// images on a real registry).
pub struct TutorialApp<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub input_image: &'a str,
    pub output_image: &'a str,
    pub isvprodid: &'a str,
    pub isvsvn: &'a str,
    /// Memory size in GB (the form's default unit).
    pub mem_gb: &'a str,
    pub threads: &'a str,
    pub domain: &'a str,
    pub key_path: &'a str,
    pub cert_path: &'a str,
}

pub const TUTORIAL: TutorialApp<'static> = TutorialApp {
    name: "python-flask",
    description: "Python Flask demo app",
    input_image: "registry/python-flask",
    output_image: "registry/python-flask-sgx",
    isvprodid: "1",
    isvsvn: "1",
    mem_gb: "1",
    threads: "128",
    domain: "myapp.domain.dom",
    key_path: "/run/key.pem",
    cert_path: "/run/cert.pem",
};

/// A manager on 127.0.0.1:0 with its own data directory (SQLite), HTTP or HTTPS.
pub struct Manager {
    pub m: RunningManager,
    pub dir: tempfile::TempDir,
}

impl Manager {
    pub async fn start(https: bool, clock: Arc<dyn Clock>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("data"),
            insecure_http: !https,
            // Tests sign up several users: the first with the setup token, the others openly.
            open_signup: true,
            ..Config::default()
        };
        let m = ccm_manager::start(config, clock).await.unwrap();
        Manager { m, dir }
    }

    pub fn base(&self) -> String {
        self.m.base_url()
    }

    /// A console client for this manager (pinned to its certificate over HTTPS).
    pub fn client(&self) -> ConsoleClient {
        let mut c = ConsoleClient::pinned(&self.base(), self.m.fingerprint);
        c.setup_token_file = Some(self.setup_token_file());
        c
    }

    /// Where the manager keeps its setup token while no administrator signed up.
    pub fn setup_token_file(&self) -> std::path::PathBuf {
        self.dir.path().join("data/setup-token")
    }

    pub fn store(&self) -> &ccm_store::Store {
        &self.m.state.store
    }
}

/// What a response looked like.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The CSRF token of the page's first form.
    pub fn csrf(&self) -> String {
        attr_after(&self.body, "name=\"_csrf\" value=\"").expect("a form with a CSRF token")
    }

    #[track_caller]
    pub fn assert_redirect(&self, to_prefix: &str) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        let loc = self.location.as_deref().unwrap_or_default();
        assert!(
            loc.starts_with(to_prefix),
            "redirect to {loc}, expected {to_prefix}"
        );
    }

    #[track_caller]
    pub fn assert_contains(&self, text: &str) {
        assert!(
            self.body.contains(text),
            "page ({}) lacks {text:?}:\n{}",
            self.status,
            self.main()
        );
    }

    /// The `<main>` element (what differs between pages), for failure messages.
    pub fn main(&self) -> &str {
        let start = self.body.find("<main").unwrap_or(0);
        let end = self
            .body
            .rfind("</main>")
            .map_or(self.body.len(), |e| e + 7);
        &self.body[start..end.max(start)]
    }

    /// The text of a field's error message (`<p class="field-error" id="f-NAME-error">`).
    pub fn field_error(&self, field_id: &str) -> Option<String> {
        let marker = format!("id=\"f-{field_id}-error\">");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find("</p>")? + start;
        Some(self.body[start..end].to_string())
    }
}

/// The value after `prefix` up to the next `"`.
pub fn attr_after(html: &str, prefix: &str) -> Option<String> {
    let start = html.find(prefix)? + prefix.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// HTML-unescapes the few entities maud produces.
pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// An HTTP client that keeps cookies (as a browser would, by name) and does not follow
/// redirects, so tests see every 303.
pub struct ConsoleClient {
    pub http: reqwest::Client,
    pub base: String,
    pub cookies: BTreeMap<String, String>,
    /// The manager's setup token file: [`ConsoleClient::sign_up`] presents the token while the
    /// file exists (the first sign-up).
    pub setup_token_file: Option<std::path::PathBuf>,
}

impl ConsoleClient {
    /// A client for `base`; over HTTPS it trusts exactly the certificate `fingerprint` names
    /// (the manager's self-signed identity), as the CLI does.
    pub fn new(base: &str) -> Self {
        Self::pinned(base, None)
    }

    pub fn pinned(base: &str, fingerprint: Option<[u8; 32]>) -> Self {
        let tls = match fingerprint {
            Some(fp) => ccm_pki::pinning::pinned_client_config(fp).unwrap(),
            None => ccm_pki::pinning::client_config_with_roots(&[]).unwrap(),
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            base: base.to_string(),
            cookies: BTreeMap::new(),
            setup_token_file: None,
        }
    }

    fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Page {
        let status = resp.status();
        let headers = resp.headers().clone();
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let set_cookies: Vec<String> = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(String::from)
            .collect();
        for c in &set_cookies {
            let first = c.split(';').next().unwrap_or_default();
            let (name, value) = first.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let body = resp.text().await.unwrap();
        Page {
            status,
            location,
            set_cookies,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = self.cookie_header() {
            req = req.header(COOKIE, c);
        }
        let resp = req.send().await.unwrap();
        self.finish(resp).await
    }

    /// Posts urlencoded pairs as they are (no CSRF token added).
    pub async fn post_raw(&mut self, path: &str, pairs: &[(&str, &str)]) -> Page {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = self.cookie_header() {
            req = req.header(COOKIE, c);
        }
        let resp = req.send().await.unwrap();
        self.finish(resp).await
    }

    /// Loads `form_page` for its CSRF token, then posts `pairs` with it to `action`.
    pub async fn submit(&mut self, form_page: &str, action: &str, pairs: &[(&str, &str)]) -> Page {
        let p = self.get(form_page).await;
        assert_eq!(p.status, StatusCode::OK, "{form_page}: {}", p.body);
        let token = p.csrf();
        let mut all: Vec<(&str, &str)> = vec![("_csrf", token.as_str())];
        all.extend_from_slice(pairs);
        self.post_raw(action, &all).await
    }

    /// Signs up and is logged in (session cookie set).
    pub async fn sign_up(&mut self, email: &str) -> Page {
        let token = self
            .setup_token_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|t| t.trim().to_string());
        let mut pairs = vec![
            ("user_email", email),
            ("user_password", PASSWORD),
            ("password_confirm", PASSWORD),
        ];
        if let Some(t) = &token {
            pairs.push(("setup_token", t.as_str()));
        }
        let p = self
            .submit("/console/signup", "/console/signup", &pairs)
            .await;
        p.assert_redirect("/console/accounts");
        p
    }

    /// Creates an account (and selects it); returns its id.
    pub async fn create_account(&mut self, name: &str, store: &ccm_store::Store) -> uuid::Uuid {
        let p = self
            .submit(
                "/console/accounts",
                "/console/accounts",
                &[("name", name), ("approval_policy", "MANUAL")],
            )
            .await;
        p.assert_redirect("/console");
        let all = store
            .list_users(&ccm_store::PageRequest::first(1000))
            .await
            .unwrap()
            .items;
        let mut found = None;
        for u in all {
            for (rec, _) in store
                .accounts_for_user(u.user_id, None, &ccm_store::PageRequest::first(1000))
                .await
                .unwrap()
                .items
            {
                if rec.name == name {
                    found = Some(rec.acct_id);
                }
            }
        }
        found.expect("the account exists")
    }

    /// Adds the tutorial's app (with `name`); returns the redirect target.
    pub async fn add_tutorial_app(&mut self, name: &str) -> Page {
        let t = TUTORIAL;
        self.submit(
            "/console/apps/new",
            "/console/apps",
            &tutorial_pairs(name, &t),
        )
        .await
    }
}

/// The application form's fields with the tutorial's values.
pub fn tutorial_pairs<'a>(name: &'a str, t: &TutorialApp<'a>) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", name),
        ("description", t.description),
        ("input_image_name", t.input_image),
        ("output_image_name", t.output_image),
        ("isvprodid", t.isvprodid),
        ("isvsvn", t.isvsvn),
        ("mem_size", t.mem_gb),
        ("mem_unit", "GB"),
        ("threads", t.threads),
        ("domain", t.domain),
        ("issuer", "MANAGER_CA"),
        ("key_type", "RSA"),
        ("rsa_key_size", "2048"),
        ("key_path", t.key_path),
        ("cert_path", t.cert_path),
        ("extra_domains", ""),
    ]
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- Browser page helpers: what a person does in the console, step by step. ----

/// Signs up through the sign-up page; lands on the accounts page, logged in.
pub async fn ui_sign_up(b: &mut Browser, base: &str, email: &str, password: &str) {
    b.goto(&format!("{base}/console/signup")).await.unwrap();
    b.fill("user_email", email).await.unwrap();
    b.fill("user_password", password).await.unwrap();
    b.fill("password_confirm", password).await.unwrap();
    b.screenshot("sign-up-form").await.unwrap();
    b.click_button("Sign up").await.unwrap();
    b.wait_for_path("the accounts page", |p| p == "/console/accounts")
        .await
        .unwrap();
    b.wait_for_text("Welcome!").await.unwrap();
}

/// Logs in through the login page.
pub async fn ui_log_in(b: &mut Browser, base: &str, email: &str, password: &str) {
    b.goto(&format!("{base}/console/login")).await.unwrap();
    b.fill("user_email", email).await.unwrap();
    b.fill("user_password", password).await.unwrap();
    b.click_button("Log in").await.unwrap();
    b.wait_for_path("a console page", |p| p != "/console/login")
        .await
        .unwrap();
}

/// Creates an account on the accounts page; it is selected and the overview shows.
pub async fn ui_create_account(b: &mut Browser, base: &str, name: &str) {
    b.goto(&format!("{base}/console/accounts")).await.unwrap();
    b.fill("name", name).await.unwrap();
    // The journeys run simulated platforms.
    b.check("allow_simulated", true).await.unwrap();
    b.click_button("Add account").await.unwrap();
    b.wait_for_path("the overview", |p| p == "/console")
        .await
        .unwrap();
    b.wait_for_text(&format!("Account “{name}” created and selected."))
        .await
        .unwrap();
}

/// Adds an Enclave OS application with the tutorial's values; returns its page's path.
pub async fn ui_add_app(b: &mut Browser, base: &str, t: &TutorialApp<'_>) -> String {
    b.goto(&format!("{base}/console/apps/new")).await.unwrap();
    b.fill("name", t.name).await.unwrap();
    b.fill("description", t.description).await.unwrap();
    b.fill("input_image_name", t.input_image).await.unwrap();
    b.fill("output_image_name", t.output_image).await.unwrap();
    b.fill("isvprodid", t.isvprodid).await.unwrap();
    b.fill("isvsvn", t.isvsvn).await.unwrap();
    b.fill("mem_size", t.mem_gb).await.unwrap();
    b.choose("mem_unit", "GB").await.unwrap();
    b.fill("threads", t.threads).await.unwrap();
    b.fill("domain", t.domain).await.unwrap();
    b.choose("issuer", "MANAGER_CA").await.unwrap();
    b.choose("key_type", "RSA").await.unwrap();
    b.choose("rsa_key_size", "2048").await.unwrap();
    b.fill("key_path", t.key_path).await.unwrap();
    b.fill("cert_path", t.cert_path).await.unwrap();
    b.check("allow_simulated", true).await.unwrap();
    b.screenshot("add-application-form").await.unwrap();
    b.click_button("Add application").await.unwrap();
    let path = b
        .wait_for_path("the application page", |p| {
            p.starts_with("/console/apps/") && p != "/console/apps/new"
        })
        .await
        .unwrap();
    b.wait_for_text(&format!("Application “{}” added.", t.name))
        .await
        .unwrap();
    path
}

/// The app page's "Create image": the image form for that app.
async fn open_image_form(b: &mut Browser, base: &str, app_path: &str) {
    b.goto(&format!("{base}{app_path}")).await.unwrap();
    b.click_link("Create image").await.unwrap();
    b.wait_for_path("the image form", |p| p == "/console/images/new")
        .await
        .unwrap();
}

/// Waits for the page of the image a form just created; returns its path.
async fn wait_for_image_page(b: &mut Browser) -> String {
    b.wait_for_path("the image page", |p| {
        p.starts_with("/console/images/") && p != "/console/images/new"
    })
    .await
    .unwrap()
}

/// Records an image of the app from known measurements (the app page's "Create image").
pub async fn ui_record_image(
    b: &mut Browser,
    base: &str,
    app_path: &str,
    tag: &str,
    mrenclave: &str,
    mrsigner: &str,
) -> String {
    open_image_form(b, base, app_path).await;
    b.fill("docker_info.docker_version", tag).await.unwrap();
    b.fill("mrenclave", mrenclave).await.unwrap();
    b.fill("mrsigner", mrsigner).await.unwrap();
    b.screenshot("create-image-form").await.unwrap();
    b.click_button("Record image").await.unwrap();
    let path = wait_for_image_page(b).await;
    b.wait_for_text("recorded; it waits for approval")
        .await
        .unwrap();
    path
}

/// Creates an image of the app by conversion: the app page's "Create image", then the conversion
/// form with the output registry's credentials and `tag`. Returns the image page's path once the
/// conversion is queued (the page then follows the job by itself).
pub async fn ui_convert_image(
    b: &mut Browser,
    base: &str,
    app_path: &str,
    tag: &str,
    registry_user: &str,
    registry_password: &str,
) -> String {
    open_image_form(b, base, app_path).await;
    b.fill("docker_version", tag).await.unwrap();
    b.fill("out_username", registry_user).await.unwrap();
    b.fill("out_password", registry_password).await.unwrap();
    b.screenshot("convert-image-form").await.unwrap();
    b.click_button("Convert and create image").await.unwrap();
    let path = wait_for_image_page(b).await;
    b.wait_for_text(&format!(":{tag} queued.")).await.unwrap();
    path
}

/// Approves every pending task on the tasks page (at most 20); returns how many.
pub async fn ui_approve_all(b: &mut Browser, base: &str) -> usize {
    for n in 0..20 {
        b.goto(&format!("{base}/console/tasks")).await.unwrap();
        if b.page_text()
            .await
            .unwrap()
            .contains("Nothing is waiting for approval.")
        {
            return n;
        }
        b.click_button("Approve").await.unwrap();
        b.wait_for_text("Approved: ").await.unwrap();
        b.screenshot(&format!("approved-{}", n + 1)).await.unwrap();
    }
    panic!("more than 20 tasks to approve");
}

/// Creates a join token on the enroll page; returns the agent command shown.
pub async fn ui_enroll_node(b: &mut Browser, base: &str) -> String {
    b.goto(&format!("{base}/console/nodes")).await.unwrap();
    b.click_link("Enroll node").await.unwrap();
    b.wait_for_path("the enroll form", |p| p == "/console/nodes/enroll")
        .await
        .unwrap();
    b.fill("description", "test node").await.unwrap();
    b.click_button("Create join token").await.unwrap();
    b.wait_for_text("Run on the compute node").await.unwrap();
    b.text_of("#agent-command").await.unwrap()
}

/// Deletes an account through its confirmation page.
pub async fn ui_delete_account(b: &mut Browser, base: &str, name: &str) {
    b.goto(&format!("{base}/console/accounts")).await.unwrap();
    b.click_link("Delete…").await.unwrap();
    b.wait_for_text(&format!("Delete account “{name}”"))
        .await
        .unwrap();
    b.fill("confirm_name", name).await.unwrap();
    b.screenshot("delete-account-confirmation").await.unwrap();
    b.click_button("Delete account").await.unwrap();
    b.wait_for_text("and everything it owned were deleted")
        .await
        .unwrap();
}
