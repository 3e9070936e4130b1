//! The manager's REST API over real HTTP on 127.0.0.1, on SQLite and on PostgreSQL.
// The scenario functions run under generated #[tokio::test]s; a failed step aborts with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ccm_api::audit::{AuditEntry, GENESIS_HASH, verify_chain};
use ccm_api::zones::JoinToken;
use common::{Backend, Harness, app_body, assert_error, build_body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

both_backends!(
    signup_login_and_current_user,
    authentication_errors_and_token_lifecycle,
    accounts_membership_and_isolation,
    roles_are_enforced,
    request_body_errors,
    app_validation_and_updates,
    sql_metacharacters_are_data,
    task_workflow,
    policy_changes_are_governed,
    zones_and_join_tokens,
    audit_log_is_chained,
    restart_keeps_sessions_and_selection,
    api_keys,
    system_endpoints,
);

async fn signup_login_and_current_user(b: Backend) {
    let h = Harness::start(b).await;
    let admin = h.signup("admin@example.com").await;
    assert_eq!(admin["is_sysadmin"], true);
    let second = h.signup("bob@example.com").await;
    assert_eq!(second["is_sysadmin"], false);
    let dup = h
        .call(
            Method::POST,
            "/v1/users",
            None,
            Some(json!({"user_email": "BOB@example.com", "user_password": "longenough"})),
        )
        .await;
    assert_error(&dup, StatusCode::CONFLICT, "conflict", Some("user_email"));
    let weak = h
        .call(
            Method::POST,
            "/v1/users",
            None,
            Some(json!({"user_email": "c@example.com", "user_password": "short"})),
        )
        .await;
    assert_error(
        &weak,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("user_password"),
    );
    let bad_mail = h
        .call(
            Method::POST,
            "/v1/users",
            None,
            Some(json!({"user_email": "nope", "user_password": "longenough"})),
        )
        .await;
    assert_error(
        &bad_mail,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("user_email"),
    );

    let token = h.login("admin@example.com").await;
    assert!(token.starts_with("ccmst1_"));
    let (st, me) = h.get("/v1/user", &token).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["user_email"], "admin@example.com");
    assert_eq!(me["last_logged_in_at"], common::T0);
    assert!(me.get("password_hash").is_none() && !me.to_string().contains("argon2"));
    let (st, users) = h.get("/v1/users", &token).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        users["items"].as_array().unwrap().len(),
        2,
        "the sysadmin sees every user"
    );
}

async fn authentication_errors_and_token_lifecycle(b: Backend) {
    let h = Harness::start(b).await;
    h.signup("a@example.com").await;
    assert_error(
        &h.call(Method::GET, "/v1/user", None, None).await,
        StatusCode::UNAUTHORIZED,
        "missing_token",
        None,
    );
    assert_error(
        &h.get("/v1/user", "ccmst1_forged").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        None,
    );
    assert_error(
        &h.get("/v1/user", "something-else").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        None,
    );
    let wrong = h
        .http
        .post(format!("{}/v1/sys/auth", h.base))
        .basic_auth("a@example.com", Some("wrong password"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().contains_key("www-authenticate"));
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["code"],
        "invalid_credentials"
    );
    let unknown = h
        .http
        .post(format!("{}/v1/sys/auth", h.base))
        .basic_auth("nobody@example.com", Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["code"],
        "invalid_credentials"
    );
    assert_error(
        &h.call(Method::POST, "/v1/sys/auth", None, None).await,
        StatusCode::UNAUTHORIZED,
        "missing_credentials",
        None,
    );

    // Expiry by injected time: the token lives token_ttl_secs.
    let token = h.login("a@example.com").await;
    h.clock.advance(h.config.token_ttl_secs - 10);
    let (st, refreshed) = h.post("/v1/sys/session/refresh", &token, json!({})).await;
    assert_eq!(st, StatusCode::OK, "{refreshed}");
    let new_token = refreshed["access_token"].as_str().unwrap().to_string();
    assert_ne!(new_token, token);
    assert_error(
        &h.get("/v1/user", &token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        None,
    );
    assert_eq!(h.get("/v1/user", &new_token).await.0, StatusCode::OK);
    h.clock.advance(h.config.token_ttl_secs);
    assert_error(
        &h.get("/v1/user", &new_token).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
        None,
    );

    // Terminate revokes at once.
    let t = h.login("a@example.com").await;
    assert_eq!(
        h.post("/v1/sys/session/terminate", &t, json!({})).await.0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &h.get("/v1/user", &t).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        None,
    );
}

async fn accounts_membership_and_isolation(b: Backend) {
    let h = Harness::start(b).await;
    let (alice, acme) = h.user_with_account("alice@example.com", "acme").await;
    let (bob, other) = h.user_with_account("bob@example.com", "other").await;
    let dup = h.post("/v1/accounts", &bob, json!({"name": "acme"})).await;
    assert_error(&dup, StatusCode::CONFLICT, "conflict", Some("name"));

    let (st, list) = h.get("/v1/accounts", &alice).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["roles"], json!(["MANAGER"]));
    assert_eq!(list["items"][0]["approval_policy"], "MANUAL");

    // Bob's objects are invisible to Alice: 404, never 403.
    let (_, app) = h.post("/v1/apps", &bob, app_body("bobs")).await;
    let bobs_app = app["app_id"].as_str().unwrap();
    assert_error(
        &h.get(&format!("/v1/accounts/{other}"), &alice).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &h.get(&format!("/v1/apps/{bobs_app}"), &alice).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &h.delete(&format!("/v1/apps/{bobs_app}"), &alice).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &h.patch(
            &format!("/v1/apps/{bobs_app}"),
            &alice,
            json!({"threads": 2}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    let task = app["pending_task_id"].as_str().unwrap();
    assert_error(
        &h.patch(
            &format!("/v1/tasks/{task}"),
            &alice,
            json!({"status": "APPROVED"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &h.post(
            &format!("/v1/sys/session/select_account/{other}"),
            &alice,
            json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &h.delete(&format!("/v1/accounts/{other}"), &alice).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    let (_, zones) = h.get("/v1/zones", &bob).await;
    let bob_zone = zones[0]["zone_id"].as_str().unwrap();
    assert_error(
        &h.get(&format!("/v1/zones/{bob_zone}"), &alice).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &h.post(&format!("/v1/zones/{bob_zone}/token"), &alice, json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    let mut build = build_body(bobs_app, "1");
    build["app_id"] = json!(bobs_app);
    assert_error(
        &h.post("/v1/builds", &alice, build).await,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("app_id"),
    );

    // Update, then delete with everything it owns, in one go.
    let (st, upd) = h
        .patch(
            &format!("/v1/accounts/{acme}"),
            &alice,
            json!({"approval_policy": "AUTO_APPROVE"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{upd}");
    assert_eq!(upd["approval_policy"], "AUTO_APPROVE");
    let (_, a) = h.post("/v1/apps", &alice, app_body("mine")).await;
    let (_, _) = h
        .post(
            "/v1/builds",
            &alice,
            build_body(a["app_id"].as_str().unwrap(), "1"),
        )
        .await;
    let (_, acct) = h.get(&format!("/v1/accounts/{acme}"), &alice).await;
    assert_eq!(acct["totals"]["apps"], 1);
    assert_eq!(acct["totals"]["builds"], 1);
    assert_eq!(
        h.delete(&format!("/v1/accounts/{acme}"), &alice).await.0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &h.get("/v1/apps", &alice).await,
        StatusCode::BAD_REQUEST,
        "no_account_selected",
        None,
    );
    assert_error(
        &h.get(&format!("/v1/accounts/{acme}"), &alice).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_eq!(
        h.get("/v1/apps", &bob).await.1["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "other accounts untouched"
    );
}

async fn roles_are_enforced(b: Backend) {
    let h = Harness::start(b).await;
    let (mgr, acct) = h.user_with_account("m@example.com", "acme").await;
    h.signup("r@example.com").await;
    h.signup("w@example.com").await;
    h.join(&mgr, "r@example.com", "READER").await;
    h.join(&mgr, "w@example.com", "WRITER").await;
    // A member cannot be invited again.
    assert_error(
        &h.post(
            "/v1/users/invite",
            &mgr,
            json!({"user_email": "w@example.com", "role": "WRITER"}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
        Some("user_email"),
    );
    assert_error(
        &h.post(
            "/v1/users/invite",
            &mgr,
            json!({"user_email": "w@example.com", "role": "OWNER"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("role"),
    );
    assert_error(
        &h.post(
            "/v1/users/invite",
            &mgr,
            json!({"user_email": "x@example.com", "roles": []}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("roles"),
    );

    let reader = h.login("r@example.com").await;
    let writer = h.login("w@example.com").await;
    for t in [&reader, &writer] {
        assert_eq!(
            h.post(
                &format!("/v1/sys/session/select_account/{acct}"),
                t,
                json!({})
            )
            .await
            .0,
            StatusCode::OK
        );
    }
    // READER: read only.
    assert_eq!(h.get("/v1/apps", &reader).await.0, StatusCode::OK);
    assert_error(
        &h.post("/v1/apps", &reader, app_body("x")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    // WRITER: apps and images, but no approvals, tokens, members or account changes.
    let (st, app) = h.post("/v1/apps", &writer, app_body("x")).await;
    assert_eq!(st, StatusCode::OK, "{app}");
    let app_id = app["app_id"].as_str().unwrap();
    assert_error(
        &h.delete(&format!("/v1/apps/{app_id}"), &reader).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    let task = app["pending_task_id"].as_str().unwrap();
    assert_error(
        &h.patch(
            &format!("/v1/tasks/{task}"),
            &writer,
            json!({"status": "APPROVED"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    let (_, zones) = h.get("/v1/zones", &writer).await;
    let zone = zones[0]["zone_id"].as_str().unwrap();
    assert_error(
        &h.post(&format!("/v1/zones/{zone}/token"), &writer, json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    assert_error(
        &h.patch(
            &format!("/v1/accounts/{acct}"),
            &writer,
            json!({"name": "mine"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    assert_error(
        &h.delete(&format!("/v1/accounts/{acct}"), &writer).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    assert_error(
        &h.post(
            "/v1/users/invite",
            &writer,
            json!({"user_email": "r@example.com", "role": "MANAGER"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    assert_error(
        &h.get("/v1/audit", &writer).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    // MANAGER approves.
    assert_eq!(
        h.patch(
            &format!("/v1/tasks/{task}"),
            &mgr,
            json!({"status": "APPROVED"})
        )
        .await
        .0,
        StatusCode::OK
    );
    // The last MANAGER cannot step down; demotion applies at once.
    let (_, me) = h.get("/v1/user", &mgr).await;
    let mgr_id = me["user_id"].as_str().unwrap();
    assert_error(
        &h.patch(
            &format!("/v1/users/{mgr_id}"),
            &mgr,
            json!({"role": "READER"}),
        )
        .await,
        StatusCode::CONFLICT,
        "invalid_state",
        None,
    );
    let (_, w) = h.get("/v1/user", &writer).await;
    assert_eq!(w["roles"], json!(["WRITER"]));
    let w_id = w["user_id"].as_str().unwrap();
    assert_eq!(
        h.patch(
            &format!("/v1/users/{w_id}"),
            &mgr,
            json!({"role": "READER"})
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_error(
        &h.post("/v1/apps", &writer, app_body("y")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    assert_eq!(
        h.delete(&format!("/v1/users/{w_id}/accounts"), &mgr)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &h.get("/v1/apps", &writer).await,
        StatusCode::BAD_REQUEST,
        "no_account_selected",
        None,
    );
}

async fn request_body_errors(b: Backend) {
    let h = Harness::start(b).await;
    let (t, _) = h.user_with_account("a@example.com", "acme").await;
    let raw = |body: &'static str, ct: &'static str| {
        let req = h
            .http
            .post(format!("{}/v1/apps", h.base))
            .bearer_auth(&t)
            .header("content-type", ct)
            .body(body);
        async move {
            let r = req.send().await.unwrap();
            let st = r.status();
            (st, r.json::<Value>().await.unwrap())
        }
    };
    assert_error(
        &raw("{\"name\": ", "application/json").await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
        None,
    );
    assert_error(
        &raw("not json", "application/json").await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
        None,
    );
    assert_error(
        &raw("{} {}", "application/json").await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
        None,
    );
    assert_error(
        &raw("{}", "text/plain").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
    // Wrong type, missing field, unknown field: 422 naming the field.
    let mut wrong = app_body("x");
    wrong["mem_size"] = json!("1 GB");
    assert_error(
        &h.post("/v1/apps", &t, wrong).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("mem_size"),
    );
    let mut nested = app_body("x");
    nested["certificate"]["key_type"] = json!("DSA");
    assert_error(
        &h.post("/v1/apps", &t, nested).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("certificate.key_type"),
    );
    let mut missing = app_body("x");
    missing.as_object_mut().unwrap().remove("input_image_name");
    assert_error(
        &h.post("/v1/apps", &t, missing).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("input_image_name"),
    );
    let mut unknown = app_body("x");
    unknown["colour"] = json!("blue");
    assert_error(
        &h.post("/v1/apps", &t, unknown).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("colour"),
    );
    assert_error(
        &h.post("/v1/apps", &t, json!([1, 2])).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        None,
    );
    // Oversize body: 413 before parsing.
    let mut big = app_body("x");
    big["description"] = json!("x".repeat(100 * 1024));
    assert_error(
        &h.post("/v1/apps", &t, big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
    );
    // Ids: malformed is 400, unknown is 404.
    assert_error(
        &h.get("/v1/apps/not-a-uuid", &t).await,
        StatusCode::BAD_REQUEST,
        "invalid_path",
        None,
    );
    assert_error(
        &h.get(&format!("/v1/apps/{}", uuid::Uuid::new_v4()), &t)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &h.get(&format!("/v1/builds/{}", uuid::Uuid::new_v4()), &t)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &h.get(&format!("/v1/tasks/{}", uuid::Uuid::new_v4()), &t)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &h.get("/v1/tasks?status=MAYBE", &t).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        None,
    );
    assert_error(
        &h.get("/v1/tasks?limit=0", &t).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("limit"),
    );
    assert!(
        h.get("/v1/apps", &t).await.1["items"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was created"
    );
}

async fn app_validation_and_updates(b: Backend) {
    let h = Harness::start(b).await;
    let (t, _) = h.user_with_account("a@example.com", "acme").await;
    let mut bad = app_body("x");
    bad["mem_size"] = json!(0);
    bad["threads"] = json!(100_000);
    bad["isvprodid"] = json!(70_000);
    bad["allowed_domains"] = json!(["ok.example", "Not_A_Domain", "ok.example"]);
    bad["output_image_name"] = json!("UPPER/Case");
    bad["certificate"]["subject"] = json!("other.example");
    bad["certificate"]["key_path"] = json!("relative/key.pem");
    bad["advanced_settings"] = json!({"accepted_tcb_statuses": ["Revoked"]});
    let resp = h.post("/v1/apps", &t, bad).await;
    assert_error(
        &resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        None,
    );
    let fields: Vec<&str> = resp.1["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "mem_size",
        "threads",
        "isvprodid",
        "allowed_domains[1]",
        "allowed_domains[2]",
        "output_image_name",
        "certificate.subject",
        "certificate.key_path",
        "advanced_settings.accepted_tcb_statuses",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }

    let (st, app) = h.post("/v1/apps", &t, app_body("flask")).await;
    assert_eq!(st, StatusCode::OK, "{app}");
    assert_eq!(app["mem_size"], 1024);
    assert_eq!(app["allowed_domains"], json!(["myapp.domain.dom"]));
    assert_eq!(app["whitelisted_domains"], json!([]));
    assert_eq!(
        app["advanced_settings"]["accepted_tcb_statuses"],
        json!(["UpToDate", "SWHardeningNeeded"])
    );
    let id = app["app_id"].as_str().unwrap();
    assert_error(
        &h.post("/v1/apps", &t, app_body("flask")).await,
        StatusCode::CONFLICT,
        "conflict",
        Some("name"),
    );

    // Patch: cross-field validation on the merged app, nothing changes on failure.
    let resp = h
        .patch(
            &format!("/v1/apps/{id}"),
            &t,
            json!({"allowed_domains": ["new.example"]}),
        )
        .await;
    assert_error(
        &resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("certificate.subject"),
    );
    assert_eq!(
        h.get(&format!("/v1/apps/{id}"), &t).await.1["allowed_domains"],
        json!(["myapp.domain.dom"])
    );
    let (st, upd) = h
        .patch(
            &format!("/v1/apps/{id}"),
            &t,
            json!({"threads": 64, "labels": {"tier": "gold"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{upd}");
    assert_eq!(upd["threads"], 64);
    assert_eq!(upd["labels"], json!({"tier": "gold"}));
    assert_eq!(upd["name"], "flask");
    let (_, other) = h.post("/v1/apps", &t, app_body("other")).await;
    let resp = h
        .patch(
            &format!("/v1/apps/{}", other["app_id"].as_str().unwrap()),
            &t,
            json!({"name": "flask"}),
        )
        .await;
    assert_error(&resp, StatusCode::CONFLICT, "conflict", Some("name"));
    assert_eq!(
        h.delete(&format!("/v1/apps/{id}"), &t).await.0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &h.get(&format!("/v1/apps/{id}"), &t).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
}

async fn sql_metacharacters_are_data(b: Backend) {
    let h = Harness::start(b).await;
    let evil = "Robert'); DROP TABLE apps; -- \" OR 1=1 %_\\";
    let (t, acct) = h.user_with_account("a@example.com", evil).await;
    let (_, a) = h.get(&format!("/v1/accounts/{acct}"), &t).await;
    assert_eq!(a["name"], evil);
    let mut body = app_body(evil);
    body["description"] = json!(evil);
    body["labels"] = json!({"k": evil});
    let (st, app) = h.post("/v1/apps", &t, body).await;
    assert_eq!(st, StatusCode::OK, "{app}");
    assert_eq!(app["name"], evil);
    assert_eq!(app["description"], evil);
    assert_eq!(app["labels"]["k"], evil);
    // Fields with a grammar reject metacharacters with a field error.
    for (field, value) in [
        ("input_image_name", json!(evil)),
        ("allowed_domains", json!([evil])),
    ] {
        let mut body = app_body("y");
        body[field] = value;
        let resp = h.post("/v1/apps", &t, body).await;
        assert_error(
            &resp,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            None,
        );
    }
    let resp = h.post("/v1/builds", &t, json!({
        "app_id": app["app_id"], "docker_info": {"docker_image_name": "a/b", "docker_version": evil},
        "mrenclave": "a".repeat(64), "mrsigner": "b".repeat(64)})).await;
    assert_error(
        &resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("docker_info.docker_version"),
    );
    let (st, _) = h
        .post(
            "/v1/builds",
            &t,
            build_body(app["app_id"].as_str().unwrap(), "1"),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, tasks) = h
        .get("/v1/tasks?status=INPROGRESS&task_type=BUILD_WHITELIST", &t)
        .await;
    let task = tasks["items"][0]["task_id"].as_str().unwrap();
    let (st, denied) = h
        .patch(
            &format!("/v1/tasks/{task}"),
            &t,
            json!({"status": "DENIED", "denial_reason": evil}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{denied}");
    assert_eq!(denied["approvals"][0]["denial_reason"], evil);
    let (_, zones) = h.get("/v1/zones", &t).await;
    let zone = zones[0]["zone_id"].as_str().unwrap();
    let (st, tok) = h
        .post(
            &format!("/v1/zones/{zone}/token"),
            &t,
            json!({"description": evil}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{tok}");
    assert_eq!(tok["description"], evil);
    let (st, key) = h
        .post("/v1/apikeys", &t, json!({"name": evil, "role": "READER"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    assert_eq!(key["name"], evil);
    // Everything is still there and intact.
    assert_eq!(
        h.get("/v1/apps", &t).await.1["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        h.get("/v1/builds", &t).await.1["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn task_workflow(b: Backend) {
    let h = Harness::start(b).await;
    let (t, acct) = h.user_with_account("a@example.com", "acme").await;
    let (_, app) = h.post("/v1/apps", &t, app_body("flask")).await;
    let app_id = app["app_id"].as_str().unwrap();
    let domain_task = app["pending_task_id"].as_str().unwrap().to_string();
    let (st, task) = h.get(&format!("/v1/tasks/{domain_task}"), &t).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(task["task_type"], "DOMAIN_WHITELIST");
    assert_eq!(task["entity_id"], app_id);
    assert_eq!(task["domains_added"], json!(["myapp.domain.dom"]));
    assert_eq!(task["status"]["status"], "INPROGRESS");

    let (st, build) = h.post("/v1/builds", &t, build_body(app_id, "1.0")).await;
    assert_eq!(st, StatusCode::OK, "{build}");
    assert_eq!(build["status"]["status"], "PENDING");
    assert_eq!(
        build["enclave_info"]["mrenclave"],
        "ab".repeat(32),
        "normalised to lowercase"
    );
    assert_eq!(
        build["enclave_info"]["isvprodid"], 1,
        "defaults to the app's"
    );
    assert_eq!(build["app_name"], "flask");
    let build_id = build["build_id"].as_str().unwrap();
    let build_task = build["pending_task_id"].as_str().unwrap().to_string();
    assert_error(
        &h.post("/v1/builds", &t, build_body(app_id, "1.0")).await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    );

    let (_, pending) = h.get("/v1/tasks?status=INPROGRESS", &t).await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 2);
    assert_error(
        &h.patch(
            &format!("/v1/tasks/{build_task}"),
            &t,
            json!({"status": "APPROVED", "denial_reason": "x"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("denial_reason"),
    );
    assert_error(
        &h.patch(
            &format!("/v1/tasks/{build_task}"),
            &t,
            json!({"status": "MAYBE"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("status"),
    );
    let (st, done) = h
        .patch(
            &format!("/v1/tasks/{build_task}"),
            &t,
            json!({"status": "APPROVED"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["status"]["status"], "SUCCESS");
    assert_eq!(done["approvals"][0]["user_name"], "a@example.com");
    let (_, build) = h.get(&format!("/v1/builds/{build_id}"), &t).await;
    assert_eq!(build["status"]["status"], "WHITELISTED");
    assert!(build.get("pending_task_id").is_none());
    let (_, result) = h.get(&format!("/v1/tasks/status/{build_task}"), &t).await;
    assert_eq!(result["task_status"]["status"], "SUCCESS");
    assert_eq!(result["build_id"], build_id);
    // Deciding again is a conflict, whichever the decision.
    for decision in ["APPROVED", "DENIED"] {
        let resp = h
            .patch(
                &format!("/v1/tasks/{build_task}"),
                &t,
                json!({"status": decision}),
            )
            .await;
        assert_error(&resp, StatusCode::CONFLICT, "invalid_state", None);
    }
    // Deny the domains: they leave allowed_domains.
    let (st, _) = h
        .patch(
            &format!("/v1/tasks/{domain_task}"),
            &t,
            json!({"status": "DENIED", "denial_reason": "not ours"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, app) = h.get(&format!("/v1/apps/{app_id}"), &t).await;
    assert_eq!(app["whitelisted_domains"], json!([]));
    // A second image, denied: REJECTED.
    let (_, b2) = h.post("/v1/builds", &t, build_body(app_id, "2.0")).await;
    let t2 = b2["pending_task_id"].as_str().unwrap();
    h.patch(&format!("/v1/tasks/{t2}"), &t, json!({"status": "DENIED"}))
        .await;
    assert_eq!(
        h.get(
            &format!("/v1/builds/{}", b2["build_id"].as_str().unwrap()),
            &t
        )
        .await
        .1["status"]["status"],
        "REJECTED"
    );

    // Auto-approve policy: decided at once, shown on the account.
    let (_, acc) = h
        .patch(
            &format!("/v1/accounts/{acct}"),
            &t,
            json!({"approval_policy": "AUTO_APPROVE"}),
        )
        .await;
    assert_eq!(acc["approval_policy"], "AUTO_APPROVE");
    let (_, b3) = h.post("/v1/builds", &t, build_body(app_id, "3.0")).await;
    assert_eq!(b3["status"]["status"], "WHITELISTED");
    let (_, app2) = h.post("/v1/apps", &t, app_body("auto")).await;
    assert_eq!(app2["whitelisted_domains"], json!(["myapp.domain.dom"]));
    let (_, all) = h
        .get(
            &format!("/v1/tasks?entity_id={}", b3["build_id"].as_str().unwrap()),
            &t,
        )
        .await;
    assert_eq!(all["items"][0]["approvals"][0]["user_name"], "system");
}

/// Changing an app's attestation policy needs a MANAGER: in a MANUAL account a WRITER's (and a
/// MANAGER's) change becomes a POLICY_CHANGE task that only a MANAGER's approval applies, and a
/// denial discards; in an AUTO_APPROVE account a WRITER's change is refused and a MANAGER's
/// applies at once. Request and outcome are audited; the account's simulated trust is a
/// MANAGER's, audited, and shown on the account.
async fn policy_changes_are_governed(b: Backend) {
    let h = Harness::start(b).await;
    let (mgr, acct) = h.user_with_account("m@example.com", "acme").await;
    h.signup("w@example.com").await;
    h.join(&mgr, "w@example.com", "WRITER").await;
    let writer = h.login("w@example.com").await;
    h.post(
        &format!("/v1/sys/session/select_account/{acct}"),
        &writer,
        json!({}),
    )
    .await;
    let (st, app) = h.post("/v1/apps", &writer, app_body("web")).await;
    assert_eq!(st, StatusCode::OK, "{app}");
    let app_id = app["app_id"].as_str().unwrap().to_string();
    let path = format!("/v1/apps/{app_id}");
    let weak = json!({"allow_debug": true, "accepted_tcb_statuses": ["UpToDate", "OutOfDate"],
                      "min_isvsvn": 0, "allow_simulated": true});

    // A WRITER's change in a MANUAL account: a task; other fields apply at once.
    let (st, upd) = h
        .patch(
            &path,
            &writer,
            json!({"threads": 64, "advanced_settings": weak}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{upd}");
    assert_eq!(upd["threads"], 64);
    assert_eq!(upd["advanced_settings"]["allow_debug"], false, "{upd}");
    assert_eq!(upd["advanced_settings"]["allow_simulated"], false, "{upd}");
    let task_id = upd["pending_policy_task_id"].as_str().unwrap().to_string();
    let (_, task) = h.get(&format!("/v1/tasks/{task_id}"), &mgr).await;
    assert_eq!(task["task_kind"], "POLICY_CHANGE", "{task}");
    assert_eq!(
        task["task_type"], "DOMAIN_WHITELIST",
        "the reference's type: {task}"
    );
    assert_eq!(task["entity_id"], app_id.as_str());
    assert_eq!(task["proposed_policy"], weak, "{task}");
    assert_eq!(task["requester_info"]["requester_name"], "w@example.com");
    let (_, result) = h.get(&format!("/v1/tasks/status/{task_id}"), &mgr).await;
    assert_eq!(result["app_id"], app_id.as_str(), "{result}");
    // One proposal at a time.
    assert_error(
        &h.patch(
            &path,
            &writer,
            json!({"advanced_settings": {"min_isvsvn": 4}}),
        )
        .await,
        StatusCode::CONFLICT,
        "policy_change_pending",
        None,
    );
    // The WRITER cannot approve it.
    assert_error(
        &h.patch(
            &format!("/v1/tasks/{task_id}"),
            &writer,
            json!({"status": "APPROVED"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    let (_, still) = h.get(&path, &mgr).await;
    assert_eq!(still["advanced_settings"]["allow_debug"], false);
    // A MANAGER's approval applies it.
    let (st, decided) = h
        .patch(
            &format!("/v1/tasks/{task_id}"),
            &mgr,
            json!({"status": "APPROVED"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{decided}");
    assert_eq!(decided["status"]["status"], "SUCCESS");
    let (_, now_app) = h.get(&path, &mgr).await;
    assert_eq!(now_app["advanced_settings"], weak, "{now_app}");
    assert!(now_app["pending_policy_task_id"].is_null());

    // A MANAGER's change in a MANUAL account is a task too; denying it discards it.
    let (_, upd) = h
        .patch(
            &path,
            &mgr,
            json!({"advanced_settings": {"allow_debug": false}}),
        )
        .await;
    let task2 = upd["pending_policy_task_id"].as_str().unwrap().to_string();
    let (st, _) = h
        .patch(
            &format!("/v1/tasks/{task2}"),
            &mgr,
            json!({"status": "DENIED", "denial_reason": "keep it"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, now_app) = h.get(&path, &mgr).await;
    assert_eq!(now_app["advanced_settings"], weak);
    assert!(now_app["pending_policy_task_id"].is_null());

    // AUTO_APPROVE: a WRITER is refused, a MANAGER applies at once.
    let (st, a) = h
        .patch(
            &format!("/v1/accounts/{acct}"),
            &mgr,
            json!({"approval_policy": "AUTO_APPROVE"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    let refused = h
        .patch(
            &path,
            &writer,
            json!({"advanced_settings": {"allow_debug": false}}),
        )
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden", None);
    assert!(
        refused.1["message"].as_str().unwrap().contains("MANAGER"),
        "{}",
        refused.1
    );
    // Nor may a WRITER create an app with a policy of its own there.
    let mut body = app_body("weak");
    body["advanced_settings"] = json!({"allow_debug": true});
    assert_error(
        &h.post("/v1/apps", &writer, body).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    // Unchanged settings are no policy change for anyone.
    let (st, _) = h
        .patch(
            &path,
            &writer,
            json!({"advanced_settings": weak, "threads": 32}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, upd) = h
        .patch(
            &path,
            &mgr,
            json!({"advanced_settings": {"allow_debug": false}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{upd}");
    assert_eq!(upd["advanced_settings"]["allow_debug"], false);
    assert!(upd["pending_policy_task_id"].is_null());

    // Simulated trust: off by default, a MANAGER's, audited.
    let (_, a) = h.get(&format!("/v1/accounts/{acct}"), &mgr).await;
    assert_eq!(a["allow_simulated"], false, "{a}");
    assert_error(
        &h.patch(
            &format!("/v1/accounts/{acct}"),
            &writer,
            json!({"allow_simulated": true}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    let (st, a) = h
        .patch(
            &format!("/v1/accounts/{acct}"),
            &mgr,
            json!({"allow_simulated": true}),
        )
        .await;
    assert_eq!((st, &a["allow_simulated"]), (StatusCode::OK, &json!(true)));

    let (_, log) = h.get("/v1/audit?limit=1000", &mgr).await;
    let entries: Vec<AuditEntry> = serde_json::from_value(log["entries"].clone()).unwrap();
    let count = |action: &str| entries.iter().filter(|e| e.action == action).count();
    assert_eq!(count("app.policy_change_request"), 2);
    assert_eq!(
        count("app.policy_change"),
        2,
        "the approval and the direct change"
    );
    assert!(count("task.approve") >= 1 && count("task.deny") >= 1);
    assert!(
        entries.iter().any(|e| e.action == "account.update"
            && e.details["after"]["allow_simulated"] == json!(true))
    );
}

async fn zones_and_join_tokens(b: Backend) {
    let h = Harness::start(b).await;
    let (t, acct) = h.user_with_account("a@example.com", "acme").await;
    let (st, zones) = h.get("/v1/zones", &t).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(zones.as_array().unwrap().len(), 1);
    let zone_id = zones[0]["zone_id"].as_str().unwrap();
    assert_eq!(zones[0]["acct_id"], acct.as_str());
    assert_eq!(zones[0]["ca_key_type"], "EC_P256");
    let pem = h
        .http
        .get(format!("{}/v1/zones/{zone_id}/certificate", h.base))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(pem.headers()["content-type"], "application/x-pem-file");
    let pem = pem.text().await.unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    // The CA key is sealed at rest: the stored bytes open only with the master key and the
    // zone's context, and give the key of the published certificate.
    let zid: uuid::Uuid = zone_id.parse().unwrap();
    let rec = h
        .state()
        .store
        .get_zone(acct.parse().unwrap(), zid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.ca_key_sealed[0], 1);
    let der = h
        .state()
        .master_key
        .open(&format!("zone-ca-key:{zid}"), &rec.ca_key_sealed)
        .unwrap();
    ccm_pki::ZoneCa::from_parts(&pem, &der).unwrap();
    assert!(
        h.state()
            .master_key
            .open("zone-ca-key:other", &rec.ca_key_sealed)
            .is_err()
    );

    let (st, tok) = h
        .post(
            &format!("/v1/zones/{zone_id}/token"),
            &t,
            json!({"expires_in": 600, "single_use": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{tok}");
    let token = JoinToken::parse(tok["token"].as_str().unwrap()).unwrap();
    assert_eq!(
        token.token_id.to_string(),
        tok["token_id"].as_str().unwrap()
    );
    assert_eq!(
        token.manager_fingerprint, None,
        "plain HTTP managers have no fingerprint to pin"
    );
    assert_eq!(tok["expires_at"], common::T0 + 600);
    let (_, list) = h.get(&format!("/v1/zones/{zone_id}/tokens"), &t).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(
        list[0].get("token").is_none()
            && !list
                .to_string()
                .contains(&tok["token"].as_str().unwrap()[10..])
    );
    // Stored hashed: the secret's hash admits, once; expiry and revocation are honoured.
    let store = &h.state().store;
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.secret));
    assert!(
        store
            .use_join_token(token.token_id, "00", common::T0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .use_join_token(token.token_id, &hash, common::T0 + 600)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(
        store
            .use_join_token(token.token_id, &hash, common::T0 + 1)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .use_join_token(token.token_id, &hash, common::T0 + 2)
            .await
            .unwrap()
            .is_none(),
        "single use"
    );
    let (_, multi) = h
        .post(&format!("/v1/zones/{zone_id}/token"), &t, json!({}))
        .await;
    let multi_tok = JoinToken::parse(multi["token"].as_str().unwrap()).unwrap();
    let multi_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(multi_tok.secret));
    assert!(
        store
            .use_join_token(multi_tok.token_id, &multi_hash, common::T0)
            .await
            .unwrap()
            .is_some()
    );
    let (st, revoked) = h
        .delete(
            &format!("/v1/zones/{zone_id}/token/{}", multi_tok.token_id),
            &t,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(revoked["revoked_at"], common::T0);
    assert!(
        store
            .use_join_token(multi_tok.token_id, &multi_hash, common::T0)
            .await
            .unwrap()
            .is_none(),
        "revoked"
    );
    assert_error(
        &h.delete(
            &format!("/v1/zones/{zone_id}/token/{}", uuid::Uuid::new_v4()),
            &t,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &h.post(
            &format!("/v1/zones/{zone_id}/token"),
            &t,
            json!({"expires_in": 1}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("expires_in"),
    );

    // P-384 zone CA.
    let (st, acc) = h
        .post(
            "/v1/accounts",
            &t,
            json!({"name": "p384", "zone_ca_key_type": "EC_P384"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{acc}");
    h.post(
        &format!(
            "/v1/sys/session/select_account/{}",
            acc["acct_id"].as_str().unwrap()
        ),
        &t,
        json!({}),
    )
    .await;
    assert_eq!(h.get("/v1/zones", &t).await.1[0]["ca_key_type"], "EC_P384");
}

async fn audit_log_is_chained(b: Backend) {
    let h = Harness::start(b).await;
    let (admin, _) = h.user_with_account("admin@example.com", "acme").await;
    let (bob, _) = h.user_with_account("bob@example.com", "bobco").await;
    let (_, app) = h.post("/v1/apps", &bob, app_body("a")).await;
    h.patch(
        &format!("/v1/tasks/{}", app["pending_task_id"].as_str().unwrap()),
        &bob,
        json!({"status": "APPROVED"}),
    )
    .await;

    // The sysadmin pages through the whole chain, which verifies from the genesis hash.
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut after = 0;
    loop {
        let (st, page) = h
            .get(&format!("/v1/audit?after={after}&limit=3"), &admin)
            .await;
        assert_eq!(st, StatusCode::OK, "{page}");
        assert_eq!(page["complete_chain"], true);
        let batch: Vec<AuditEntry> = serde_json::from_value(page["entries"].clone()).unwrap();
        entries.extend(batch);
        match page["next_after"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    verify_chain(&entries, GENESIS_HASH.into(), 1).unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "user.create",
        "session.create",
        "account.create",
        "session.select_account",
        "app.create",
        "task.create",
        "task.approve",
    ] {
        assert!(actions.contains(&a), "{a} not in {actions:?}");
    }
    let approve = entries.iter().find(|e| e.action == "task.approve").unwrap();
    assert_eq!(approve.actor, "bob@example.com");
    assert_eq!(approve.details["task_type"], "DOMAIN_WHITELIST");
    // A non-admin MANAGER sees only their account's entries.
    let (_, page) = h.get("/v1/audit", &bob).await;
    assert_eq!(page["complete_chain"], false);
    let acct = entries
        .iter()
        .find(|e| e.action == "app.create")
        .unwrap()
        .acct_id
        .unwrap();
    assert!(
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["acct_id"] == acct.to_string())
    );
    // Tampering is detected.
    let mut tampered = entries.clone();
    tampered[2].actor = "mallory".into();
    assert!(verify_chain(&tampered, GENESIS_HASH.into(), 1).is_err());
}

async fn restart_keeps_sessions_and_selection(b: Backend) {
    let mut h = Harness::start(b).await;
    let (t, acct) = h.user_with_account("a@example.com", "acme").await;
    h.post("/v1/apps", &t, app_body("flask")).await;
    h.restart().await;
    let (st, me) = h.get("/v1/user", &t).await;
    assert_eq!(st, StatusCode::OK, "{me}");
    assert_eq!(me["roles"], json!(["MANAGER"]));
    let (st, apps) = h.get("/v1/apps", &t).await;
    assert_eq!(st, StatusCode::OK, "the selected account survives: {apps}");
    assert_eq!(apps["items"][0]["acct_id"], acct.as_str());
    // Zone CA keys still open after the restart (same master key).
    let (_, zones) = h.get("/v1/zones", &t).await;
    let zid: uuid::Uuid = zones[0]["zone_id"].as_str().unwrap().parse().unwrap();
    let rec = h
        .state()
        .store
        .get_zone(acct.parse().unwrap(), zid)
        .await
        .unwrap()
        .unwrap();
    assert!(
        h.state()
            .master_key
            .open(&format!("zone-ca-key:{zid}"), &rec.ca_key_sealed)
            .is_ok()
    );

    if b == Backend::Postgres {
        // Two replicas on one database accept the same token; terminate on one is seen by both.
        let replica = h.replica().await;
        let rbase = replica.base_url();
        let (st, _) = common::call(&h.http, &rbase, Method::GET, "/v1/apps", Some(&t), None).await;
        assert_eq!(st, StatusCode::OK);
        let (st, _) = common::call(
            &h.http,
            &rbase,
            Method::POST,
            "/v1/sys/session/terminate",
            Some(&t),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        assert_error(
            &h.get("/v1/apps", &t).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            None,
        );
        replica.shutdown().await;
    } else {
        assert_eq!(
            h.post("/v1/sys/session/terminate", &t, json!({})).await.0,
            StatusCode::NO_CONTENT
        );
        h.restart().await;
        assert_error(
            &h.get("/v1/apps", &t).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            None,
        );
    }
}

async fn api_keys(b: Backend) {
    let h = Harness::start(b).await;
    let (t, acct) = h.user_with_account("a@example.com", "acme").await;
    let (st, key) = h
        .post(
            "/v1/apikeys",
            &t,
            json!({"name": "ci", "role": "READER", "expires_in": 3600}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    let secret = key["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("ccmak1_"));
    assert_eq!(key["acct_id"], acct.as_str());
    let (_, listed) = h.get("/v1/apikeys", &t).await;
    assert!(listed["items"][0].get("secret").is_none());
    // The key acts in its account with its role.
    assert_eq!(h.get("/v1/apps", &secret).await.0, StatusCode::OK);
    assert_error(
        &h.post("/v1/apps", &secret, app_body("x")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    assert_error(
        &h.post(
            "/v1/apikeys",
            &secret,
            json!({"name": "y", "role": "READER"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    assert_error(
        &h.post("/v1/sys/session/refresh", &secret, json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    let (_, accounts) = h.get("/v1/accounts", &secret).await;
    assert_eq!(accounts["items"][0]["roles"], json!(["READER"]));
    // A WRITER cannot mint a MANAGER key.
    h.signup("w@example.com").await;
    h.join(&t, "w@example.com", "WRITER").await;
    let w = h.login("w@example.com").await;
    h.post(
        &format!("/v1/sys/session/select_account/{acct}"),
        &w,
        json!({}),
    )
    .await;
    assert_error(
        &h.post("/v1/apikeys", &w, json!({"name": "x", "role": "MANAGER"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("role"),
    );
    // Expiry and deletion.
    h.clock.advance(3600);
    assert_error(
        &h.get("/v1/apps", &secret).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
        None,
    );
    let id = key["api_key_id"].as_str().unwrap();
    let t = h.login("a@example.com").await;
    assert_eq!(
        h.delete(&format!("/v1/apikeys/{id}"), &t).await.0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &h.get("/v1/apps", &secret).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        None,
    );
}

async fn system_endpoints(b: Backend) {
    let h = Harness::start(b).await;
    let get = |p: &'static str| {
        let r = h.http.get(format!("{}{p}", h.base));
        async move {
            let r = r.send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, StatusCode::OK);
    assert_eq!(get("/readyz").await.0, StatusCode::OK);
    let (st, v) = get("/v1/sys/version").await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_str(&v).unwrap();
    assert_eq!(
        v["database"],
        if b == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    let (st, doc) = get("/v1/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/v1/apps",
        "/v1/apps/{app_id}",
        "/v1/builds",
        "/v1/tasks/{task_id}",
        "/v1/tasks/status/{task_id}",
        "/v1/zones/{zone_id}/token",
        "/v1/sys/auth",
        "/v1/audit",
        "/v1/users/invite",
        "/v1/users/process_invite",
        "/v1/users/change_password",
        "/v1/users/{user_id}/reset_token",
        "/v1/users/{user_id}/reset_password",
        "/v1/registry",
        "/v1/registry/{registry_id}",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["paths"]["/v1/tasks/{task_id}"].get("patch").is_some());
    assert!(doc["components"]["schemas"].get("App").is_some());
    assert!(doc["components"]["schemas"].get("Registry").is_some());
    assert!(doc["components"]["schemas"].get("InvitedUser").is_some());
    let (st, metrics) = get("/metrics").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        metrics.contains(
            "ccm_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    let (st, body) = get("/v1/nothing-here").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(body.contains("\"code\":\"not_found\""));
    let del = h
        .http
        .delete(format!("{}/healthz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn https_with_pinned_fingerprint_and_persisted_identity() {
    let dir = tempfile::tempdir().unwrap();
    let config = ccm_manager::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let clock = std::sync::Arc::new(ccm_manager::ManualClock::new(common::T0));
    let m = ccm_manager::start(config.clone(), clock.clone())
        .await
        .unwrap();
    let fp = m.fingerprint.unwrap();
    assert!(m.base_url().starts_with("https://127.0.0.1:"));
    let pinned = reqwest::Client::builder()
        .tls_backend_preconfigured(ccm_pki::pinning::pinned_client_config(fp).unwrap())
        .build()
        .unwrap();
    let r = pinned
        .get(format!("{}/healthz", m.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let wrong = reqwest::Client::builder()
        .tls_backend_preconfigured(ccm_pki::pinning::pinned_client_config([0; 32]).unwrap())
        .build()
        .unwrap();
    assert!(
        wrong
            .get(format!("{}/healthz", m.base_url()))
            .send()
            .await
            .is_err()
    );
    // Join tokens carry the fingerprint.
    let base = m.base_url();
    let (st, _) = common::call(
        &pinned,
        &base,
        Method::POST,
        "/v1/users",
        None,
        Some(json!({
            "user_email": "a@example.com",
            "user_password": common::PASSWORD,
            "setup_token": common::setup_token(dir.path()),
        })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let login: Value = pinned
        .post(format!("{base}/v1/sys/auth"))
        .basic_auth("a@example.com", Some(common::PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = login["access_token"].as_str().unwrap();
    let (_, acc) = common::call(
        &pinned,
        &base,
        Method::POST,
        "/v1/accounts",
        Some(t),
        Some(json!({"name": "x"})),
    )
    .await;
    common::call(
        &pinned,
        &base,
        Method::POST,
        &format!(
            "/v1/sys/session/select_account/{}",
            acc["acct_id"].as_str().unwrap()
        ),
        Some(t),
        None,
    )
    .await;
    let (_, tok) = common::call(
        &pinned,
        &base,
        Method::POST,
        &format!("/v1/zones/{}/token", acc["zone_id"].as_str().unwrap()),
        Some(t),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        JoinToken::parse(tok["token"].as_str().unwrap())
            .unwrap()
            .manager_fingerprint,
        Some(fp)
    );
    m.shutdown().await;
    // The identity is persisted: same fingerprint after a restart; the key file is private.
    let m = ccm_manager::start(config, clock).await.unwrap();
    assert_eq!(m.fingerprint, Some(fp));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(dir.path().join("tls/manager.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    m.shutdown().await;
}

#[tokio::test]
async fn refuses_a_different_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = ccm_manager::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("d"),
        insecure_http: true,
        ..Default::default()
    };
    let clock = std::sync::Arc::new(ccm_manager::ManualClock::new(common::T0));
    ccm_manager::start(config.clone(), clock.clone())
        .await
        .unwrap()
        .shutdown()
        .await;
    std::fs::remove_file(config.master_key_path()).unwrap();
    let err = ccm_manager::start(config, clock).await.unwrap_err();
    assert!(
        matches!(err, ccm_manager::Error::MasterKeyMismatch { .. }),
        "{err}"
    );
}
