//! The reference API's expectations that ccm meets beyond what em-client exercises, over real
//! HTTP on 127.0.0.1, on SQLite and PostgreSQL: zones' node settings (configured defaults, a
//! MANAGER's audited change, checks) and fresh, short-lived, single-use join tokens from
//! `GET .../token`; the reference's request fields that ccm ignores or refuses (422
//! `unsupported_field`); images from known values without `docker_info`; the reference's
//! success codes and the task decision's result fields.
// The scenario functions run under generated #[tokio::test]s; a failed step aborts with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, Harness, app_body, assert_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

both_backends!(
    zones_carry_node_settings_and_give_fresh_join_tokens,
    reference_fields_are_ignored_or_refused,
    images_from_known_values_need_no_docker_info,
);

/// The selected account's zone id.
async fn zone_of(h: &Harness, token: &str, acct: &str) -> String {
    let (st, a) = h.get(&format!("/v1/accounts/{acct}"), token).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    a["zone_id"].as_str().unwrap().to_string()
}

/// The audit entries the caller sees.
async fn audit(h: &Harness, token: &str) -> Vec<Value> {
    let (st, page) = h.get("/v1/audit?limit=1000", token).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    page["entries"].as_array().unwrap().clone()
}

async fn zones_carry_node_settings_and_give_fresh_join_tokens(b: Backend) {
    let h = Harness::start_with(b, |c| {
        c.node_heartbeat_interval_secs = 15;
        c.node_renewal_threshold_percent = 40;
    })
    .await;
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
    let (other, _) = h.user_with_account("o@example.com", "other").await;
    let zone = zone_of(&h, &mgr, &acct).await;

    // The configured defaults, and the node policy as node_enrollment.
    let (st, z) = h.get(&format!("/v1/zones/{zone}"), &writer).await;
    assert_eq!(st, StatusCode::OK, "{z}");
    assert_eq!(z["node_refresh_interval"], 15);
    assert_eq!(z["node_renewal_threshold"], 40);
    assert_eq!(
        z["node_enrollment"],
        json!({"require_approval": false, "accepted_tcb_statuses": ["UpToDate", "SWHardeningNeeded"]})
    );

    // Only a MANAGER changes them, within bounds, naming the field at fault.
    let path = format!("/v1/zones/{zone}");
    let r = h
        .patch(&path, &writer, json!({"node_refresh_interval": 20}))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);
    let r = h
        .patch(&path, &other, json!({"node_refresh_interval": 20}))
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    for (body, field) in [
        (json!({"node_refresh_interval": 0}), "node_refresh_interval"),
        // Half of node_stale_after_secs (60) at most.
        (
            json!({"node_refresh_interval": 31}),
            "node_refresh_interval",
        ),
        (
            json!({"node_renewal_threshold": 95}),
            "node_renewal_threshold",
        ),
        (
            json!({"node_enrollment": {"accepted_tcb_statuses": []}}),
            "node_enrollment.accepted_tcb_statuses",
        ),
    ] {
        let r = h.patch(&path, &mgr, body).await;
        assert_error(
            &r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some(field),
        );
    }
    let r = h
        .patch(&path, &mgr, json!({"node_renewal_threshold": "x"}))
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("node_renewal_threshold"),
    );
    let (st, z) = h
        .patch(
            &path,
            &mgr,
            json!({"node_refresh_interval": 30, "node_renewal_threshold": 20,
                   "description": "rack 4", "node_enrollment": {"require_approval": true}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{z}");
    assert_eq!(
        (
            &z["node_refresh_interval"],
            &z["node_renewal_threshold"],
            &z["description"]
        ),
        (&json!(30), &json!(20), &json!("rack 4"))
    );
    assert_eq!(z["node_enrollment"]["require_approval"], true);
    // The node policy endpoint sees the same policy; absent fields stay.
    let (_, policy) = h.get(&format!("/v1/zones/{zone}/node-policy"), &mgr).await;
    assert_eq!(policy["require_approval"], true, "{policy}");
    let (_, z) = h.patch(&path, &mgr, json!({"description": ""})).await;
    assert!(z.get("description").is_none(), "{z}");
    assert_eq!(z["node_refresh_interval"], 30);
    let updates: Vec<Value> = audit(&h, &mgr)
        .await
        .into_iter()
        .filter(|e| e["action"] == "zone.update")
        .collect();
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[0]["details"]["node_refresh_interval"], 30);
    assert_eq!(updates[0]["actor"], "m@example.com");

    // GET .../token: a fresh token per call, MANAGER only, single use, valid for one hour.
    let token_path = format!("/v1/zones/{zone}/token");
    let r = h.get(&token_path, &writer).await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None);
    let r = h
        .http
        .get(format!("{}{token_path}", h.base))
        .bearer_auth(&mgr)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["cache-control"],
        "no-store",
        "a secret is not cached"
    );
    let t1: Value = r.json().await.unwrap();
    let (_, t2) = h.get(&token_path, &mgr).await;
    assert_ne!(t1["token"], t2["token"]);
    assert_eq!(t1["single_use"], true);
    assert_eq!(t1["expires_at"], common::T0 + 3600);
    let (st, listed) = h.get(&format!("/v1/zones/{zone}/tokens"), &writer).await;
    assert_eq!(st, StatusCode::OK, "{listed}");
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|t| t.get("token").is_none()),
        "no secrets"
    );
    let created = audit(&h, &mgr)
        .await
        .into_iter()
        .filter(|e| e["action"] == "join_token.create")
        .count();
    assert_eq!(created, 2);
    let r = h.get(&format!("/v1/zones/{zone}/tokens"), &other).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    // The token admits a node within the hour, not after.
    let nonce = |t: Value| {
        let http = h.http.clone();
        let url = format!("{}/v1/nodes/nonce", h.base);
        async move {
            http.post(url)
                .bearer_auth(t.as_str().unwrap())
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(nonce(t1["token"].clone()).await.status(), StatusCode::OK);
    h.clock.advance(3601);
    let r = nonce(t2["token"].clone()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "join_token_expired", "{body}");
}

async fn reference_fields_are_ignored_or_refused(b: Backend) {
    let h = Harness::start(b).await;
    let (mgr, acct) = h.user_with_account("m@example.com", "acme").await;

    // Accounts: a logo is ignored; authentication configs and disabling are refused; anything
    // else unknown stays an error.
    let (st, a) = h
        .post(
            "/v1/accounts",
            &mgr,
            json!({"name": "logo", "custom_logo": "iVBORw0KGgo=", "component": "SGX"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert!(a.get("custom_logo").is_none());
    let r = h
        .post(
            "/v1/accounts",
            &mgr,
            json!({"name": "sso", "auth_configs": [{"oauth": {}}]}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_field",
        Some("auth_configs"),
    );
    assert!(
        r.1["message"].as_str().unwrap().contains("passwords"),
        "{}",
        r.1
    );
    let r = h
        .post("/v1/accounts", &mgr, json!({"name": "x", "colour": "red"}))
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("colour"),
    );
    let r = h
        .patch(
            &format!("/v1/accounts/{acct}"),
            &mgr,
            json!({"enabled": false}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_field",
        Some("enabled"),
    );
    let (st, _) = h
        .patch(
            &format!("/v1/accounts/{acct}"),
            &mgr,
            json!({"name": "acme2", "features": ["x"], "custom_logo": null, "del_auth_configs": null}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    // Apps: the reference's runtime options are ignored or refused by what they would do.
    let mut body = app_body("flask");
    body["advanced_settings"] = json!({"entrypoint": ["/app"], "java_runtime": "OPENJDK"});
    body["custom_metadata"] = json!({"owner": "web"});
    body["group_id"] = json!("00000000-0000-0000-0000-000000000001");
    let (st, app) = h.post("/v1/apps", &mgr, body).await;
    assert_eq!(st, StatusCode::OK, "{app}");
    assert_eq!(app["advanced_settings"]["allow_debug"], false);
    assert!(app.get("custom_metadata").is_none());
    let app_id = app["app_id"].as_str().unwrap().to_string();
    for (field, value) in [
        ("encryptedDirs", json!(["/data"])),
        ("rw_dirs", json!(["/tmp/x"])),
        ("allowCmdlineArgs", json!(true)),
        ("manifestEnv", json!(["A=1"])),
        ("caCertificate", json!({"caPath": "/ca.pem"})),
        ("certificate", json!({"issuer": "MANAGER_CA"})),
    ] {
        let mut body = app_body(&format!("app-{field}"));
        body["advanced_settings"] = json!({ field: value, "entrypoint": ["/app"] });
        let r = h.post("/v1/apps", &mgr, body).await;
        assert_error(
            &r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_field",
            Some(&format!("advanced_settings.{field}")),
        );
    }
    for field in ["certificate_policy", "signers", "default_build_settings"] {
        let mut body = app_body("x");
        body[field] = json!({});
        let r = h.post("/v1/apps", &mgr, body).await;
        assert_error(
            &r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_field",
            Some(field),
        );
    }
    // An update with only ignored settings changes no policy; with ccm's own it does.
    let path = format!("/v1/apps/{app_id}");
    let (st, upd) = h
        .patch(
            &path,
            &mgr,
            json!({"advanced_settings": {"entrypoint": ["/x"]}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{upd}");
    assert!(upd.get("pending_policy_task_id").is_none(), "{upd}");
    let (st, upd) = h
        .patch(
            &path,
            &mgr,
            json!({"advanced_settings": {"entrypoint": ["/x"], "allow_debug": true}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{upd}");
    assert!(upd["pending_policy_task_id"].is_string(), "{upd}");
    let r = h
        .patch(&path, &mgr, json!({"advanced_settings": {"rw_dirs": []}}))
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_field",
        Some("advanced_settings.rw_dirs"),
    );

    // Images: attributes and launch hints are ignored; persistence is refused.
    let mut body = common::build_body(&app_id, "1");
    body["attributes"] = json!({"k": "v"});
    body["launch_hint"] = json!({});
    body["advanced_settings"] = json!({"entrypoint": ["/app"]});
    let (st, build) = h.post("/v1/builds", &mgr, body).await;
    assert_eq!(st, StatusCode::OK, "{build}");
    let mut body = common::build_body(&app_id, "2");
    body["enable_overlay_filesystem_persistence"] = json!(true);
    let r = h.post("/v1/builds", &mgr, body).await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_field",
        Some("enable_overlay_filesystem_persistence"),
    );
    // ccm's own attestation settings are no image setting.
    let mut body = common::build_body(&app_id, "3");
    body["advanced_settings"] = json!({"allow_debug": true});
    let r = h.post("/v1/builds", &mgr, body).await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("advanced_settings"),
    );

    // Users: the CAPTCHA answer and a member's name are ignored.
    let (st, u) = h
        .call(
            Method::POST,
            "/v1/users",
            None,
            Some(
                json!({"user_email": "r@example.com", "user_password": common::PASSWORD,
                        "recaptcha_response": "x"}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    h.join(&mgr, "r@example.com", "READER").await;
    let (st, u) = h
        .patch(
            &format!("/v1/users/{}", u["user_id"].as_str().unwrap()),
            &mgr,
            json!({"roles": ["WRITER"], "first_name": "R"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{u}");
    assert_eq!(u["roles"], json!(["WRITER"]));
}

async fn images_from_known_values_need_no_docker_info(b: Backend) {
    let h = Harness::start(b).await;
    let (mgr, acct) = h.user_with_account("m@example.com", "acme").await;
    let (st, app) = h.post("/v1/apps", &mgr, app_body("flask")).await;
    assert_eq!(st, StatusCode::OK, "{app}");
    let app_id = app["app_id"].as_str().unwrap().to_string();
    let known = |mrenclave: &str| {
        json!({"app_id": app_id, "mrenclave": mrenclave, "mrsigner": "cd".repeat(32),
               "isvprodid": 1, "isvsvn": 4})
    };

    let (st, build) = h.post("/v1/builds", &mgr, known(&"AB".repeat(32))).await;
    assert_eq!(st, StatusCode::OK, "{build}");
    assert!(build.get("docker_info").is_none(), "{build}");
    assert!(build.get("conversion").is_none(), "{build}");
    assert_eq!(build["enclave_info"]["mrenclave"], "ab".repeat(32));
    assert_eq!(build["enclave_info"]["isvsvn"], 4);
    assert_eq!(build["mem_size"], 1024, "the app's default");
    let build_id = build["build_id"].as_str().unwrap().to_string();
    let (_, got) = h.get(&format!("/v1/builds/{build_id}"), &mgr).await;
    assert_eq!(got, build);
    let task_id = build["pending_task_id"].as_str().unwrap().to_string();
    let (_, task) = h.get(&format!("/v1/tasks/{task_id}"), &mgr).await;
    assert!(
        task["description"]
            .as_str()
            .unwrap()
            .contains(&"ab".repeat(32)),
        "{task}"
    );

    // One image without docker_info per app and MRENCLAVE.
    let r = h.post("/v1/builds", &mgr, known(&"ab".repeat(32))).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", Some("mrenclave"));
    let (st, _) = h.post("/v1/builds", &mgr, known(&"ef".repeat(32))).await;
    assert_eq!(st, StatusCode::OK);

    // The app by name; names that do not match, and no app at all, are errors naming the field.
    let (st, by_name) = h
        .post(
            "/v1/builds",
            &mgr,
            json!({"app_name": "flask", "mrenclave": "01".repeat(32), "mrsigner": "cd".repeat(32)}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{by_name}");
    assert_eq!(by_name["app_id"], app_id.as_str());
    let r = h
        .post(
            "/v1/builds",
            &mgr,
            json!({"app_name": "nope", "mrenclave": "02".repeat(32), "mrsigner": "cd".repeat(32)}),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", Some("app_name"));
    let mut mismatch = known(&"03".repeat(32));
    mismatch["app_name"] = json!("other");
    let r = h.post("/v1/builds", &mgr, mismatch).await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("app_name"),
    );
    let r = h
        .post(
            "/v1/builds",
            &mgr,
            json!({"mrenclave": "04".repeat(32), "mrsigner": "cd".repeat(32)}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("app_id"),
    );
    let r = h
        .post(
            "/v1/builds",
            &mgr,
            json!({"app_id": app_id, "mrenclave": "xyz", "mrsigner": "cd".repeat(32)}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("mrenclave"),
    );

    // Approving answers the task with the reference's result fields.
    let (st, decided) = h
        .patch(
            &format!("/v1/tasks/{task_id}"),
            &mgr,
            json!({"status": "APPROVED"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{decided}");
    assert_eq!(decided["task_id"], task_id.as_str());
    assert_eq!(decided["task_status"]["status"], "SUCCESS");
    assert_eq!(decided["status"]["status"], "SUCCESS");
    assert_eq!(decided["build_id"], build_id.as_str());
    assert_eq!(decided["task_kind"], "BUILD_WHITELIST");
    let (_, got) = h.get(&format!("/v1/builds/{build_id}"), &mgr).await;
    assert_eq!(got["status"]["status"], "WHITELISTED");

    // The reference's account selection: 204, and the session works in the account.
    let (other_mgr, other) = h.user_with_account("o@example.com", "other").await;
    let (st, body) = h
        .post(
            &format!("/v1/accounts/select_account/{acct}"),
            &other_mgr,
            json!({}),
        )
        .await;
    assert_error(&(st, body), StatusCode::NOT_FOUND, "not_found", None);
    let r = h
        .http
        .post(format!("{}/v1/accounts/select_account/{other}", h.base))
        .bearer_auth(&mgr)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "not a member");
    // Another account is selected; the reference's call selects the first again.
    h.create_account(&other_mgr, "other2").await;
    let r = h
        .http
        .post(format!("{}/v1/accounts/select_account/{other}", h.base))
        .bearer_auth(&other_mgr)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.text().await.unwrap(), "");
    let (st, session) = h
        .call(
            Method::POST,
            "/v1/sys/session/refresh",
            Some(&other_mgr),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{session}");
    assert_eq!(
        session["session_info"]["selected_account_id"],
        other.as_str()
    );
}
