//! Invitations, password changes, administrator-issued password resets and forgotten passwords
//! (with e-mail through a real SMTP server on loopback) and stored registries, over real HTTP on
//! 127.0.0.1, on SQLite and on PostgreSQL.
// The scenario functions run under generated #[tokio::test]s; a failed step aborts with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, Harness, PASSWORD, assert_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

both_backends!(
    invitations_reach_new_and_existing_users,
    passwords_change_and_end_other_sessions,
    administrators_issue_password_resets,
    registries_store_credentials_write_only,
    forgot_password_answers_alike_and_is_rate_limited,
);

const NEW_PASSWORD: &str = "a new password 2";

/// Logs in with a password; the status and the token.
async fn login_with(h: &Harness, email: &str, password: &str) -> (StatusCode, Option<String>) {
    let resp = h
        .http
        .post(format!("{}/v1/sys/auth", h.base))
        .basic_auth(email, Some(password))
        .send()
        .await
        .unwrap();
    let st = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (st, body["access_token"].as_str().map(String::from))
}

async fn signup_with(h: &Harness, body: Value) -> (StatusCode, Value) {
    h.call(Method::POST, "/v1/users", None, Some(body)).await
}

async fn audit_text(h: &Harness, admin: &str) -> String {
    let (st, page) = h.get("/v1/audit?limit=1000", admin).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    page.to_string()
}

async fn invitations_reach_new_and_existing_users(b: Backend) {
    // Sign-up is closed: only the setup token and invitations let people in.
    let h = Harness::start_with(b, |c| c.open_signup = false).await;
    let (mgr, acme) = h.user_with_account("m@example.com", "acme").await;

    let (st, inv) = h
        .post(
            "/v1/users/invite",
            &mgr,
            json!({"user_email": "New@Example.com", "roles": ["READER", "WRITER"],
                   "first_name": "Nora"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{inv}");
    assert_eq!(inv["roles"], json!(["WRITER"]));
    assert_eq!(inv["user_account_status"], "PENDING");
    assert_eq!(inv["invitation"]["acct_id"], acme);
    assert_eq!(inv["invitation"]["invited_by"], "m@example.com");
    assert_eq!(inv["emailed"], false);
    let token = inv["invitation_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ccminv1_"));
    assert!(inv["signup_url"].as_str().unwrap().ends_with(&token));
    assert_eq!(inv["user_id"], inv["invitation"]["invitation_id"]);
    let (st, pending) = h.get("/v1/users/invitations", &mgr).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");

    let signup = |email: &str, t: Option<&str>| json!({"user_email": email, "user_password": PASSWORD, "invitation_token": t});
    // Closed sign-up without a token; the token for another address; a made-up token.
    assert_error(
        &signup_with(&h, signup("new@example.com", None)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    for body in [
        signup("other@example.com", Some(&token)),
        signup("new@example.com", Some("ccminv1_madeup")),
    ] {
        assert_error(
            &signup_with(&h, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("invitation_token"),
        );
    }
    assert_eq!(
        login_with(&h, "other@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED,
        "a refused sign-up creates nobody"
    );
    // The invited address signs up with the token and is a WRITER of the account.
    let (st, user) = signup_with(&h, signup("new@example.com", Some(&token))).await;
    assert_eq!(st, StatusCode::CREATED, "{user}");
    let new = h.login("new@example.com").await;
    let (st, _) = h
        .post(
            &format!("/v1/sys/session/select_account/{acme}"),
            &new,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, me) = h.get("/v1/user", &new).await;
    assert_eq!(me["roles"], json!(["WRITER"]));
    // The token is used up.
    assert_error(
        &signup_with(&h, signup("new2@example.com", Some(&token))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("invitation_token"),
    );
    assert_eq!(h.get("/v1/users/invitations", &mgr).await.1, json!([]));
    // A member cannot be invited again; a WRITER cannot invite.
    assert_error(
        &h.post(
            "/v1/users/invite",
            &mgr,
            json!({"user_email": "new@example.com", "roles": ["READER"]}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
        Some("user_email"),
    );
    assert_error(
        &h.post(
            "/v1/users/invite",
            &new,
            json!({"user_email": "x@example.com", "roles": ["READER"]}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );

    // An existing user is invited to a second account and accepts; to a third and declines.
    let beta = h.create_account(&mgr, "beta").await;
    let (st, inv) = h
        .post(
            "/v1/users/invite",
            &mgr,
            json!({"user_email": "new@example.com", "role": "READER"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{inv}");
    assert_eq!(
        inv["user_id"], user["user_id"],
        "a signed-up invitee shows their id"
    );
    let gamma = h.create_account(&mgr, "gamma").await;
    h.post(
        "/v1/users/invite",
        &mgr,
        json!({"user_email": "new@example.com", "roles": ["MANAGER"]}),
    )
    .await;
    let (_, mine) = h.get("/v1/user/invitations", &new).await;
    let mut names: Vec<&str> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["account_name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["beta", "gamma"]);
    // Naming an account without an invitation changes nothing.
    assert_error(
        &h.post(
            "/v1/users/process_invite",
            &new,
            json!({"accepts": [beta, acme]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("accepts"),
    );
    assert_error(
        &h.post(
            &format!("/v1/sys/session/select_account/{beta}"),
            &new,
            json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    let (st, body) = h
        .post(
            "/v1/users/process_invite",
            &new,
            json!({"accepts": [beta], "rejects": [gamma]}),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let (st, _) = h
        .post(
            &format!("/v1/sys/session/select_account/{beta}"),
            &new,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, me) = h.get("/v1/user", &new).await;
    assert_eq!(me["roles"], json!(["READER"]));
    assert_eq!(
        h.post(
            &format!("/v1/sys/session/select_account/{gamma}"),
            &new,
            json!({})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.get("/v1/user/invitations", &new).await.1, json!([]));

    // Invitations expire.
    let (_, late) = h
        .post(
            "/v1/users/invite",
            &mgr,
            json!({"user_email": "late@example.com", "roles": ["READER"]}),
        )
        .await;
    h.clock.advance(7 * 86_400 + 1);
    assert_error(
        &signup_with(
            &h,
            signup("late@example.com", late["invitation_token"].as_str()),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("invitation_token"),
    );

    let mgr = h.login("m@example.com").await;
    let audit = audit_text(&h, &mgr).await;
    for action in [
        "invitation.create",
        "invitation.accept",
        "invitation.decline",
    ] {
        assert!(audit.contains(action), "{action} is audited");
    }
    assert!(!audit.contains(&token), "no token in the audit log");
}

async fn passwords_change_and_end_other_sessions(b: Backend) {
    let h = Harness::start(b).await;
    let (first, _) = h.user_with_account("u@example.com", "acme").await;
    let second = h.login("u@example.com").await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    assert_error(
        &h.post(
            "/v1/users/change_password",
            &first,
            change("wrong password", NEW_PASSWORD),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("current_password"),
    );
    assert_error(
        &h.post(
            "/v1/users/change_password",
            &first,
            change(PASSWORD, "short"),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("new_password"),
    );
    assert_error(
        &h.post(
            "/v1/users/change_password",
            &first,
            json!({"current_password": PASSWORD}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("new_password"),
    );
    // API keys cannot change the password.
    let (st, key) = h
        .post(
            "/v1/apikeys",
            &first,
            json!({"name": "ci", "role": "READER"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    assert_error(
        &h.post(
            "/v1/users/change_password",
            key["secret"].as_str().unwrap(),
            change(PASSWORD, NEW_PASSWORD),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    assert_eq!(
        h.get("/v1/user", &second).await.0,
        StatusCode::OK,
        "nothing changed yet"
    );

    let (st, body) = h
        .post(
            "/v1/users/change_password",
            &first,
            change(PASSWORD, NEW_PASSWORD),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        h.get("/v1/user", &first).await.0,
        StatusCode::OK,
        "this session stays"
    );
    assert_error(
        &h.get("/v1/user", &second).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        None,
    );
    assert_eq!(
        login_with(&h, "u@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_with(&h, "u@example.com", NEW_PASSWORD).await.0,
        StatusCode::OK
    );
    let audit = audit_text(&h, &first).await;
    assert!(audit.contains("user.password_change"));
    assert!(!audit.contains(NEW_PASSWORD));
}

async fn administrators_issue_password_resets(b: Backend) {
    let h = Harness::start_with(b, |c| c.auth_failures_per_minute_per_email = 3).await;
    h.signup("admin@example.com").await;
    let admin = h.login("admin@example.com").await;
    let bob = h.signup("bob@example.com").await;
    let bob_id = bob["user_id"].as_str().unwrap().to_string();
    let admin_id = h.get("/v1/user", &admin).await.1["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let bob_session = h.login("bob@example.com").await;

    // Only a system administrator issues reset tokens.
    assert_error(
        &h.post(
            &format!("/v1/users/{admin_id}/reset_token"),
            &bob_session,
            json!({}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    assert_error(
        &h.post(
            "/v1/users/00000000-0000-4000-8000-000000000000/reset_token",
            &admin,
            json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    let issue = || async {
        let (st, r) = h
            .post(
                &format!("/v1/users/{bob_id}/reset_token"),
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{r}");
        r
    };
    let replaced = issue().await;
    let issued = issue().await;
    assert_eq!(issued["user_email"], "bob@example.com");
    assert_eq!(issued["emailed"], false);
    let token = issued["reset_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ccmreset1_"));
    assert!(issued["reset_url"].as_str().unwrap().contains(&token));

    let reset = |t: &str, p: &str| json!({"reset_token": t, "new_password": p});
    let anon = |path: String, body: Value| {
        let h = &h;
        async move { h.call(Method::POST, &path, None, Some(body)).await }
    };
    // The earlier token was replaced; a short password is refused before the token is used.
    assert_error(
        &anon(
            format!("/v1/users/{bob_id}/reset_password"),
            reset(replaced["reset_token"].as_str().unwrap(), NEW_PASSWORD),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_reset_token",
        None,
    );
    assert_error(
        &anon(
            format!("/v1/users/{bob_id}/reset_password"),
            reset(&token, "short"),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("new_password"),
    );
    // The token is bob's only.
    assert_error(
        &anon(
            format!("/v1/users/{admin_id}/reset_password"),
            reset(&token, NEW_PASSWORD),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_reset_token",
        None,
    );
    let (st, v) = anon(
        format!("/v1/users/{bob_id}/validate_token"),
        json!({"reset_token": token}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["user_email"], "bob@example.com");

    let (st, body) = anon(
        format!("/v1/users/{bob_id}/reset_password"),
        reset(&token, NEW_PASSWORD),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        h.get("/v1/user", &bob_session).await.0,
        StatusCode::UNAUTHORIZED,
        "sessions end"
    );
    assert_eq!(
        login_with(&h, "bob@example.com", NEW_PASSWORD).await.0,
        StatusCode::OK
    );
    assert_error(
        &anon(
            format!("/v1/users/{bob_id}/reset_password"),
            reset(&token, "third password"),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_reset_token",
        None,
    );

    // Tokens expire.
    let late = issue().await;
    h.clock.advance(86_400 + 1);
    let admin = h.login("admin@example.com").await;
    assert_error(
        &anon(
            format!("/v1/users/{bob_id}/reset_password"),
            reset(late["reset_token"].as_str().unwrap(), NEW_PASSWORD),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_reset_token",
        None,
    );
    // Guessing is rate limited like logins (3 failures a minute here).
    let mut limited = false;
    for _ in 0..5 {
        let (st, _) = anon(
            format!("/v1/users/{bob_id}/reset_password"),
            reset("ccmreset1_guess", NEW_PASSWORD),
        )
        .await;
        limited |= st == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "wrong reset tokens are rate limited");

    let audit = audit_text(&h, &admin).await;
    assert!(audit.contains("user.password_reset_issue"));
    assert!(audit.contains("\"user.password_reset\""));
    assert!(!audit.contains(&token));
}

async fn registries_store_credentials_write_only(b: Backend) {
    let h = Harness::start(b).await;
    let (mgr, acme) = h.user_with_account("m@example.com", "acme").await;
    h.signup("r@example.com").await;
    h.join(&mgr, "r@example.com", "READER").await;
    let reader = h.login("r@example.com").await;
    let (st, _) = h
        .post(
            &format!("/v1/sys/session/select_account/{acme}"),
            &reader,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let secret = "s3cret-registry-password";
    let create = |url: &str, password: Option<&str>| {
        json!({"url": url, "description": "team images",
               "credential": {"default": {"username": "robot", "password": password}}})
    };
    let (st, reg) = h
        .post(
            "/v1/registry",
            &mgr,
            create("https://Registry.Example.com:5000/v2/", Some(secret)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{reg}");
    assert_eq!(reg["host"], "registry.example.com:5000");
    assert_eq!(reg["username"], "robot");
    assert!(!reg.to_string().contains(secret));
    let id = reg["registry_id"].as_str().unwrap().to_string();

    // Bad input: 422 with the field, nothing stored; one registry per host (409).
    for (body, field) in [
        (create("not a host/", Some("x")), "url"),
        (create("registry.example.org", None), "credential.default"),
        (
            json!({"url": "r.example.org", "credential": {"default": {"username": "a:b", "password": "x"}}}),
            "credential.default.username",
        ),
    ] {
        assert_error(
            &h.post("/v1/registry", &mgr, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some(field),
        );
    }
    assert_error(
        &h.post(
            "/v1/registry",
            &mgr,
            create("registry.example.com:5000", Some("x")),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    );
    // READERs list and read, without secrets; they cannot change.
    let (st, list) = h.get("/v1/registry", &reader).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(!list.to_string().contains(secret));
    assert_eq!(
        h.get(&format!("/v1/registry/{id}"), &reader).await.1["host"],
        reg["host"]
    );
    assert_error(
        &h.post(
            "/v1/registry",
            &reader,
            create("other.example.com", Some("x")),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    assert_error(
        &h.delete(&format!("/v1/registry/{id}"), &reader).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    // JSON Patch: description, credentials; unknown paths refused.
    let (st, updated) = h
        .patch(
            &format!("/v1/registry/{id}"),
            &mgr,
            json!([{"op": "replace", "path": "/description", "value": "CI images"},
                   {"op": "replace", "path": "/credential/default",
                    "value": {"username": "robot2", "password": "another-secret"}}]),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{updated}");
    assert_eq!(updated["description"], "CI images");
    assert_eq!(updated["username"], "robot2");
    assert_error(
        &h.patch(
            &format!("/v1/registry/{id}"),
            &mgr,
            json!([{"op": "replace", "path": "/registry_id", "value": "x"}]),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("[0].path"),
    );
    // Other accounts do not see it.
    let (other, _) = h.user_with_account("o@example.com", "other").await;
    assert_eq!(
        h.get(&format!("/v1/registry/{id}"), &other).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.get("/v1/registry", &other).await.1, json!([]));

    let audit = audit_text(&h, &mgr).await;
    assert!(audit.contains("registry.create") && audit.contains("registry.update"));
    assert!(!audit.contains(secret) && !audit.contains("another-secret"));
    if b == Backend::Sqlite {
        // At rest the password is sealed: not in the database files (file and log).
        let mut bytes = Vec::new();
        for name in ["ccm.db", "ccm.db-wal"] {
            bytes.extend(std::fs::read(h.config.data_dir.join(name)).unwrap_or_default());
        }
        assert!(!bytes.is_empty());
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(secret) && !text.contains("another-secret"));
        assert!(text.contains("robot2"), "the user name is stored in clear");
    }
    let (st, _) = h.delete(&format!("/v1/registry/{id}"), &mgr).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&format!("/v1/registry/{id}"), &mgr).await.0,
        StatusCode::NOT_FOUND
    );
}

/// A real SMTP server (`python3 -m aiosmtpd`, Debian's python3-aiosmtpd) on 127.0.0.1 that
/// prints the messages it receives.
struct SmtpServer {
    child: Child,
    port: u16,
    out: Arc<Mutex<String>>,
}

impl SmtpServer {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .env("PYTHONUNBUFFERED", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (install the Debian package python3-aiosmtpd)");
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, out }
    }

    /// Waits until the printed messages (quoted-printable decoded, as a mail reader shows them)
    /// contain `needle`; returns them.
    async fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = decode_quoted_printable(&self.out.lock().unwrap());
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no e-mail with {needle:?}: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Undoes quoted-printable: soft line breaks (`=` at a line's end) and `=XX` escapes.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_and_resets_are_emailed() {
    let smtp = SmtpServer::start();
    let h = Harness::start_with(Backend::Sqlite, |c| {
        c.smtp_host = Some("127.0.0.1".into());
        c.smtp_port = smtp.port;
        c.smtp_security = ccm_manager::config::SmtpSecurity::None;
        c.smtp_from = Some("ccm@example.com".into());
        c.public_url = Some("https://ccm.example.com".into());
    })
    .await;
    let (mgr, _) = h.user_with_account("m@example.com", "acme").await;
    let (st, inv) = h
        .post(
            "/v1/users/invite",
            &mgr,
            json!({"user_email": "new@example.com", "roles": ["READER"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{inv}");
    assert_eq!(inv["emailed"], true);
    let token = inv["invitation_token"].as_str().unwrap();
    let mail = smtp.wait_for(token).await;
    assert!(mail.contains("To: new@example.com"), "{mail}");
    assert!(mail.contains("From: ccm@example.com"), "{mail}");
    assert!(
        mail.contains(&format!(
            "https://ccm.example.com/console/signup?invitation={token}"
        )),
        "{mail}"
    );

    let bob = h.signup("bob@example.com").await;
    let bob_id = bob["user_id"].as_str().unwrap();
    let (st, r) = h
        .post(&format!("/v1/users/{bob_id}/reset_token"), &mgr, json!({}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["emailed"], true);
    let mail = smtp.wait_for(r["reset_token"].as_str().unwrap()).await;
    assert!(mail.contains("To: bob@example.com"), "{mail}");
    assert!(mail.contains("/console/reset-password?user="), "{mail}");
}

/// Waits for `n` `user.password_forgot` audit entries (the work runs after the answer).
async fn forgot_entries(h: &Harness, admin: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, audit) = h.get("/v1/audit?limit=1000", admin).await;
        assert_eq!(st, StatusCode::OK, "{audit}");
        let entries: Vec<Value> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "user.password_forgot")
            .cloned()
            .collect();
        if entries.len() >= n {
            return entries;
        }
        assert!(Instant::now() < deadline, "{n} forgot entries: {audit}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn forgot(h: &Harness, email: &str) -> (StatusCode, String, Option<String>) {
    let r = h
        .http
        .post(format!("{}/v1/users/forgot_password", h.base))
        .json(&json!({ "user_email": email }))
        .send()
        .await
        .unwrap();
    let st = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (st, r.text().await.unwrap(), retry)
}

async fn forgot_password_answers_alike_and_is_rate_limited(b: Backend) {
    // Sign-ups, logins and these requests share the address's budget: 10 before the last step.
    let h = Harness::start_with(b, |c| c.auth_attempts_per_minute_per_address = 14).await;
    let (admin, _) = h.user_with_account("admin@example.com", "acme").await;
    h.signup("bob@example.com").await;

    // A user's address and an unknown one get the same answer; nothing is e-mailed (no SMTP).
    let known = forgot(&h, "bob@example.com").await;
    let unknown = forgot(&h, "nobody@example.com").await;
    assert_eq!((known.0, known.1.as_str()), (StatusCode::NO_CONTENT, ""));
    assert_eq!((unknown.0, unknown.1.as_str()), (known.0, known.1.as_str()));
    let entries = forgot_entries(&h, &admin, 2).await;
    let outcome = |email: &str| {
        entries
            .iter()
            .find(|e| e["details"]["user_email"] == email)
            .map(|e| e["details"]["outcome"].clone())
    };
    assert_eq!(
        outcome("bob@example.com"),
        Some(json!("not_emailed_no_smtp"))
    );
    assert_eq!(outcome("nobody@example.com"), Some(json!("unknown_user")));
    // No reset token was issued: bob's password still works, nothing else changed.
    assert_eq!(
        login_with(&h, "bob@example.com", PASSWORD).await.0,
        StatusCode::OK
    );

    // Per e-mail: three an hour, then 429 for that address only (known or not).
    for _ in 0..2 {
        assert_eq!(
            forgot(&h, "nobody@example.com").await.0,
            StatusCode::NO_CONTENT
        );
    }
    let (st, body, retry) = forgot(&h, "Nobody@Example.com").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(retry.unwrap().parse::<u64>().unwrap() > 60);
    assert_eq!(
        forgot(&h, "bob@example.com").await.0,
        StatusCode::NO_CONTENT
    );

    // Bad input is named.
    let r = h
        .call(
            Method::POST,
            "/v1/users/forgot_password",
            None,
            Some(json!({"user_email": "not an address"})),
        )
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("user_email"),
    );
    let r = h
        .call(
            Method::POST,
            "/v1/users/forgot_password",
            None,
            Some(json!({"user_email": "bob@example.com", "password": "x"})),
        )
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("password"),
    );

    // Per client address: the login budget (14 a minute here) runs out within a few more.
    let mut limited = false;
    for i in 0..10 {
        if forgot(&h, &format!("n{i}@example.com")).await.0 == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
    }
    assert!(limited, "the address's budget runs out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_password_is_reset_through_the_emailed_link() {
    let smtp = SmtpServer::start();
    let h = Harness::start_with(Backend::Sqlite, |c| {
        c.smtp_host = Some("127.0.0.1".into());
        c.smtp_port = smtp.port;
        c.smtp_security = ccm_manager::config::SmtpSecurity::None;
        c.smtp_from = Some("ccm@example.com".into());
        c.public_url = Some("https://ccm.example.com".into());
    })
    .await;
    let (admin, _) = h.user_with_account("admin@example.com", "acme").await;
    let bob = h.signup("bob@example.com").await;
    let bob_id = bob["user_id"].as_str().unwrap();

    assert_eq!(
        forgot(&h, "ghost@example.com").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        forgot(&h, "bob@example.com").await.0,
        StatusCode::NO_CONTENT
    );
    let link = format!("https://ccm.example.com/console/reset-password?user={bob_id}&token=");
    let mail = smtp.wait_for(&link).await;
    assert!(mail.contains("To: bob@example.com"), "{mail}");
    assert!(
        !mail.contains("ghost@example.com"),
        "nothing for an unknown address: {mail}"
    );
    let token: String = mail
        .split(&link)
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    assert!(token.starts_with("ccmreset1_"), "{token}");
    let entries = forgot_entries(&h, &admin, 2).await;
    assert!(
        entries
            .iter()
            .any(|e| e["details"]["outcome"] == "emailed" && e["object_id"] == bob_id),
        "{entries:?}"
    );

    // The link resets the password once.
    let reset_path = format!("/v1/users/{bob_id}/reset_password");
    let reset = |token: String| {
        h.call(
            Method::POST,
            &reset_path,
            None,
            Some(json!({"reset_token": token, "new_password": NEW_PASSWORD})),
        )
    };
    assert_eq!(reset(token.clone()).await.0, StatusCode::NO_CONTENT);
    assert_eq!(reset(token).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login_with(&h, "bob@example.com", NEW_PASSWORD).await.0,
        StatusCode::OK
    );
}
