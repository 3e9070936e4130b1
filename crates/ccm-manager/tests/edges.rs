//! The manager's edges under pressure, over real HTTP on 127.0.0.1 (SQLite and PostgreSQL where
//! the store takes part): login floods, the setup token of a new manager, API key expiry and
//! scope, metric labels, body timeouts and the connection cap, housekeeping.
// The scenario functions run under generated #[tokio::test]s; a failed step aborts with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{Backend, Harness, PASSWORD, assert_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

both_backends!(
    login_flood_is_refused_while_a_real_login_succeeds,
    failed_logins_limit_the_email_across_addresses,
    setup_token_makes_one_administrator,
    api_keys_expire_and_stay_in_their_account,
    housekeeping_purges_expired_sessions,
);

/// A client whose connections come from `ip` (any 127.0.0.0/8 address reaches the manager on
/// 127.0.0.1 over the loopback interface).
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    let tls = ccm_pki::pinning::client_config_with_roots(&[]).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .local_address(IpAddr::V4(ip))
        .build()
        .unwrap()
}

async fn login_status(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> (StatusCode, Option<String>) {
    let r = http
        .post(format!("{base}/v1/sys/auth"))
        .basic_auth(email, Some(password))
        .send()
        .await
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status(), retry)
}

/// Hundreds of concurrent wrong logins from one address get 429 (address and e-mail limits)
/// or 503 (hashing queue full), each with `Retry-After`; meanwhile a real login from another
/// address succeeds within 2 s. Failed logins are audited with the address, never the password.
async fn login_flood_is_refused_while_a_real_login_succeeds(b: Backend) {
    let h = Harness::start(b).await;
    h.signup("admin@example.com").await;
    h.signup("victim@example.com").await;
    let base = h.base.clone();
    let flood = client_from(Ipv4Addr::new(127, 0, 0, 1));
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (flood, base) = (flood.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..8 {
                seen.push(
                    login_status(&flood, &base, "victim@example.com", "not-the-password").await,
                );
            }
            seen
        }));
    }
    // The real user logs in from another address while the flood runs.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let real = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let started = Instant::now();
    let r = real
        .post(format!("{base}/v1/sys/auth"))
        .basic_auth("admin@example.com", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        took < Duration::from_secs(2),
        "the real login took {took:?}"
    );
    let token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        for (st, retry) in t.await.unwrap() {
            *counts.entry(st.as_u16()).or_insert(0u32) += 1;
            match st {
                StatusCode::UNAUTHORIZED => {}
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
                    assert!((1..=120).contains(&secs), "Retry-After {secs}");
                }
                other => panic!("unexpected {other}"),
            }
        }
    }
    let refused = counts.get(&429).copied().unwrap_or(0) + counts.get(&503).copied().unwrap_or(0);
    assert!(refused >= 280, "{counts:?}");
    assert!(
        counts.get(&401).copied().unwrap_or(0) <= 30,
        "at most the address's burst was checked: {counts:?}"
    );

    // The failures are in the audit log (who tried which e-mail from where).
    let (st, log) = h.get("/v1/audit?limit=1000", &token).await;
    assert_eq!(st, StatusCode::OK, "{log}");
    let entries = log["entries"].as_array().cloned().unwrap_or_default();
    let failed: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "session.login_failed")
        .collect();
    assert!(!failed.is_empty(), "{log}");
    assert_eq!(failed[0]["details"]["user_email"], "victim@example.com");
    assert_eq!(failed[0]["details"]["client_address"], "127.0.0.1");
    assert!(!log.to_string().contains("not-the-password"));
}

/// After the e-mail's failure budget, even the right password from another address waits
/// (429): guessing one account's password from many addresses is limited too.
async fn failed_logins_limit_the_email_across_addresses(b: Backend) {
    let h = Harness::start_with(b, |c| {
        c.auth_failures_per_minute_per_email = 3;
    })
    .await;
    h.signup("a@example.com").await;
    for i in 0..3u8 {
        let c = client_from(Ipv4Addr::new(127, 0, 1, i + 1));
        let (st, _) = login_status(&c, &h.base, "A@example.com", "wrong-password").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let c = client_from(Ipv4Addr::new(127, 0, 1, 9));
    let (st, retry) = login_status(&c, &h.base, "a@example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some());
    // Sign-up attempts for the e-mail are limited by the same budget.
    let (st, _) = h
        .call(
            Method::POST,
            "/v1/users",
            None,
            Some(json!({"user_email": "a@example.com", "user_password": PASSWORD})),
        )
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
}

/// A full password queue answers 503 with `Retry-After` at once instead of queueing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hashing_queue_answers_503() {
    let h = Harness::start_with(Backend::Sqlite, |c| {
        c.password_queue_capacity = 1;
        c.auth_attempts_per_minute_per_address = 10_000;
        c.auth_failures_per_minute_per_email = 10_000;
    })
    .await;
    let base = h.base.clone();
    let mut tasks = Vec::new();
    // From 24 addresses: one address may only hold its share of the queue (then 429).
    for i in 0..24u8 {
        let (http, base) = (client_from(Ipv4Addr::new(127, 0, 1, i + 1)), base.clone());
        tasks.push(tokio::spawn(async move {
            login_status(
                &http,
                &base,
                &format!("u{i}@example.com"),
                "whatever-password",
            )
            .await
        }));
    }
    let mut busy = 0;
    for t in tasks {
        let (st, retry) = t.await.unwrap();
        if st == StatusCode::SERVICE_UNAVAILABLE {
            busy += 1;
            assert_eq!(retry.as_deref(), Some("1"));
        } else {
            assert_eq!(st, StatusCode::UNAUTHORIZED);
        }
    }
    assert!(busy > 0, "24 logins at once fit a queue of 1");
}

async fn signup_with(h: &Harness, email: &str, token: Option<&str>) -> (StatusCode, Value) {
    h.call(
        Method::POST,
        "/v1/users",
        None,
        Some(json!({"user_email": email, "user_password": PASSWORD, "setup_token": token})),
    )
    .await
}

/// A new manager writes a one-time setup token (mode 0600); sign-up without it is refused, with
/// it succeeds once (the system administrator), and the token is then refused; the file goes,
/// and a restart makes no new one.
async fn setup_token_makes_one_administrator(b: Backend) {
    use std::os::unix::fs::PermissionsExt as _;
    let mut h = Harness::start_with(b, |c| c.open_signup = false).await;
    let file = h.config.data_dir.join("setup-token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = h.setup_token().unwrap();
    assert!(token.starts_with("ccmsetup1_"), "{token}");

    assert_error(
        &signup_with(&h, "early@example.com", None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    assert_error(
        &signup_with(&h, "early@example.com", Some("ccmsetup1_guess")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("setup_token"),
    );
    let (st, admin) = signup_with(&h, "admin@example.com", Some(&token)).await;
    assert_eq!(st, StatusCode::CREATED, "{admin}");
    assert_eq!(admin["is_sysadmin"], true);
    assert!(!file.exists(), "the used token's file is removed");
    assert_error(
        &signup_with(&h, "second@example.com", Some(&token)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("setup_token"),
    );
    assert_error(
        &signup_with(&h, "second@example.com", None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    h.restart().await;
    assert!(!file.exists(), "no new token once an administrator exists");
    assert_error(
        &signup_with(&h, "second@example.com", Some(&token)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("setup_token"),
    );
    // Open sign-up makes ordinary users only.
    let mut h2 = Harness::start_with(b, |c| c.open_signup = true).await;
    let (st, u) = signup_with(&h2, "first@example.com", None).await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    assert_eq!(
        u["is_sysadmin"], false,
        "open sign-up never makes an administrator"
    );
    assert!(
        h2.setup_token().is_some(),
        "the token still waits for its holder"
    );
    h2.restart().await;
    let token = h2.setup_token().unwrap();
    let (st, u) = signup_with(&h2, "owner@example.com", Some(&token)).await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    assert_eq!(u["is_sysadmin"], true, "the token survives a restart");
}

/// API keys expire after 90 days unless given a shorter life (within the maximum); expired keys
/// are refused; a caller with an API key sees and deletes only its account's keys.
async fn api_keys_expire_and_stay_in_their_account(b: Backend) {
    let h = Harness::start(b).await;
    let (t, _acct_a) = h.user_with_account("a@example.com", "a").await;
    let (st, key_a) = h
        .post("/v1/apikeys", &t, json!({"name": "ci-a", "role": "READER"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{key_a}");
    assert_eq!(key_a["expires_at"], common::T0 + 90 * 86_400);
    assert_error(
        &h.post(
            "/v1/apikeys",
            &t,
            json!({"name": "long", "role": "READER", "expires_in": 367 * 86_400}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("expires_in"),
    );
    // A second account of the same user, with its own key.
    h.create_account(&t, "b").await;
    let (st, key_b) = h
        .post(
            "/v1/apikeys",
            &t,
            json!({"name": "ci-b", "role": "MANAGER", "expires_in": 86_400 * 365}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{key_b}");
    let secret_a = key_a["secret"].as_str().unwrap();
    let secret_b = key_b["secret"].as_str().unwrap();
    // With a session: both keys. With key A: only account A's.
    let (_, all) = h.get("/v1/apikeys", &t).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let (st, seen) = h.get("/v1/apikeys", secret_a).await;
    assert_eq!(st, StatusCode::OK);
    let seen = seen["items"].as_array().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["api_key_id"], key_a["api_key_id"]);
    let id_b = key_b["api_key_id"].as_str().unwrap();
    assert_error(
        &h.delete(&format!("/v1/apikeys/{id_b}"), secret_a).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_eq!(h.get("/v1/apps", secret_b).await.0, StatusCode::OK);
    // Expiry.
    h.clock.advance(90 * 86_400);
    assert_error(
        &h.get("/v1/apps", secret_a).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
        None,
    );
    assert_eq!(h.get("/v1/apps", secret_b).await.0, StatusCode::OK);
}

/// The housekeeping run deletes sessions whose lifetime is over and keeps live ones.
async fn housekeeping_purges_expired_sessions(b: Backend) {
    let h = Harness::start(b).await;
    h.signup("a@example.com").await;
    let old = h.login("a@example.com").await;
    h.clock.advance(h.config.session_ttl_secs);
    let live = h.login("a@example.com").await;
    let purged = ccm_manager::service::housekeeping::purge(h.state())
        .await
        .unwrap();
    assert_eq!(purged.sessions, 1);
    assert_eq!(purged.rejected_requests, 0);
    assert_eq!(h.get("/v1/user", &live).await.0, StatusCode::OK);
    assert_error(
        &h.get("/v1/user", &old).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        None,
    );
}

/// Invented HTTP methods are counted under one label: no new time series per method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_share_the_other_label() {
    let h = Harness::start(Backend::Sqlite).await;
    for m in ["BREW", "PROPFIND", "XYZZY"] {
        let m = Method::from_bytes(m.as_bytes()).unwrap();
        let r = h
            .http
            .request(m, format!("{}/v1/sys/version", h.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
    }
    let text = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("method=\"OTHER\""), "{text}");
    for m in ["BREW", "PROPFIND", "XYZZY"] {
        assert!(!text.contains(m), "{m} made a series");
    }
}

/// A client that sends its headers but trickles its body gets 408 once the body deadline
/// passes; at most `max_connections` connections are served at once, and a waiting one is
/// served when another closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_time_out_and_connections_are_capped() {
    let h = Harness::start_with(Backend::Sqlite, |c| {
        c.request_body_timeout_secs = 1;
        c.max_connections = 2;
    })
    .await;
    let addr = h.m.as_ref().unwrap().local_addr;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf))
        .await
        .expect("an answer after the body deadline")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    drop(slow);

    // Two idle connections take both slots; a third is not served until one closes.
    let a = tokio::net::TcpStream::connect(addr).await.unwrap();
    let b = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), c.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served while two were open"
    );
    drop(a);
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(b);
}
