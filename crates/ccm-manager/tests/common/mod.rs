//! A real manager on 127.0.0.1:0 with a real SQLite file or PostgreSQL database, a manual clock,
//! and a small JSON client.
// Test support: a failed setup step should abort the test with its reason.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ccm_manager::{Config, ManualClock, RunningManager};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const T0: i64 = 1_800_000_000;
pub const PASSWORD: &str = "correct horse battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Harness {
    pub m: Option<RunningManager>,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub base: String,
    pub config: Config,
    pub data_dir: tempfile::TempDir,
    pub db: Option<ccm_testkit::postgres::TestDatabase>,
}

pub fn http_client() -> reqwest::Client {
    let tls = ccm_pki::pinning::client_config_with_roots(&[]).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

impl Harness {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// [`Harness::start`] with settings changed by `change`.
    pub async fn start_with(backend: Backend, change: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                Some(ccm_testkit::postgres::database().expect("PostgreSQL test cluster"))
            }
        };
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.path().join("data"),
            database_url: db.as_ref().map(|d| d.url.clone()),
            insecure_http: true,
            max_body_bytes: 64 * 1024,
            // Tests sign up several users: the first with the setup token, the others openly.
            open_signup: true,
            ..Config::default()
        };
        change(&mut config);
        let clock = ManualClock::new(T0);
        let m = ccm_manager::start(config.clone(), Arc::new(clock.clone()))
            .await
            .unwrap();
        let base = m.base_url();
        Harness {
            m: Some(m),
            clock,
            http: http_client(),
            base,
            config,
            data_dir,
            db,
        }
    }

    pub fn state(&self) -> &ccm_manager::AppState {
        &self.m.as_ref().unwrap().state
    }

    /// Stops the manager and starts it again on the same data directory and database.
    pub async fn restart(&mut self) {
        self.m.take().unwrap().shutdown().await;
        let m = ccm_manager::start(self.config.clone(), Arc::new(self.clock.clone()))
            .await
            .unwrap();
        self.base = m.base_url();
        self.m = Some(m);
    }

    /// A second manager on the same database and master key, with its own data directory.
    pub async fn replica(&self) -> RunningManager {
        let config = Config {
            data_dir: self.data_dir.path().join("replica"),
            master_key_file: Some(self.config.master_key_path()),
            ..self.config.clone()
        };
        ccm_manager::start(config, Arc::new(self.clock.clone()))
            .await
            .unwrap()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call(&self.http, &self.base, method, path, token, body).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// The manager's setup token, while no administrator signed up.
    pub fn setup_token(&self) -> Option<String> {
        setup_token(&self.config.data_dir)
    }

    /// Signs up; the first user presents the setup token (and administers the manager).
    pub async fn signup(&self, email: &str) -> Value {
        let (st, body) = self
            .call(
                Method::POST,
                "/v1/users",
                None,
                Some(json!({
                    "user_email": email,
                    "user_password": PASSWORD,
                    "setup_token": self.setup_token(),
                })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn login(&self, email: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/v1/sys/auth", self.base))
            .basic_auth(email, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    /// Signs up, logs in, creates an account and selects it.
    pub async fn user_with_account(&self, email: &str, account: &str) -> (String, String) {
        self.signup(email).await;
        let token = self.login(email).await;
        let acct = self.create_account(&token, account).await;
        (token, acct)
    }

    /// Invites a signed-up user to the inviter's selected account with `role` (201) and has them
    /// accept the invitation (204).
    pub async fn join(&self, inviter: &str, email: &str, role: &str) {
        let (st, body) = self
            .post(
                "/v1/users/invite",
                inviter,
                json!({"user_email": email, "roles": [role]}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let acct = body["invitation"]["acct_id"].as_str().unwrap().to_string();
        let token = self.login(email).await;
        let (st, body) = self
            .post(
                "/v1/users/process_invite",
                &token,
                json!({"accepts": [acct]}),
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    }

    pub async fn create_account(&self, token: &str, name: &str) -> String {
        let (st, body) = self
            .post("/v1/accounts", token, json!({"name": name}))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let acct = body["acct_id"].as_str().unwrap().to_string();
        let (st, body) = self
            .post(
                &format!("/v1/sys/session/select_account/{acct}"),
                token,
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        acct
    }
}

/// The setup token a manager wrote into `data_dir`, while unused.
pub fn setup_token(data_dir: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join("setup-token"))
        .ok()
        .map(|t| t.trim().to_string())
}

pub async fn call(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// Asserts an error response: status and `code` (and `field`, when given).
#[track_caller]
pub fn assert_error(
    resp: &(StatusCode, Value),
    status: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    assert_eq!(resp.0, status, "body: {}", resp.1);
    assert_eq!(resp.1["code"], code, "body: {}", resp.1);
    assert!(
        resp.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "body: {}",
        resp.1
    );
    if let Some(f) = field {
        assert_eq!(resp.1["field"], f, "body: {}", resp.1);
    }
}

pub fn app_body(name: &str) -> Value {
    json!({
        "name": name,
        "description": "Flask demo",
        "input_image_name": "registry.example/python-flask",
        "output_image_name": "registry.example/python-flask-sgx",
        "isvprodid": 1,
        "isvsvn": 1,
        "mem_size": 1024,
        "threads": 128,
        "allowed_domains": ["myapp.domain.dom"],
        "certificate": {
            "issuer": "MANAGER_CA",
            "subject": "myapp.domain.dom",
            "key_type": "RSA_2048",
            "key_path": "/run/key.pem",
            "cert_path": "/run/cert.pem"
        },
        "labels": {"team": "web"}
    })
}

pub fn build_body(app_id: &str, tag: &str) -> Value {
    json!({
        "app_id": app_id,
        "docker_info": {"docker_image_name": "registry.example/python-flask-sgx", "docker_version": tag},
        "mrenclave": "AB".repeat(32),
        "mrsigner": "cd".repeat(32)
    })
}

/// Generates one `#[tokio::test]` per backend for an `async fn(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::common::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::common::Backend::Postgres).await })*
        }
    };
}
