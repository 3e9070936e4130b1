//! Fortanix's `em-client` 4.0.2, unmodified, drives a running manager (plain HTTP on an
//! ephemeral loopback port) through the core journey with the client's own types: version,
//! sign-up, login, accounts (create, get, select), the current user, apps (add, get, update,
//! delete), images from known values without `docker_info` (create, get), tasks (get, status,
//! approve), zones (get, join token). Then every kind of task ccm makes — a node's
//! NODE_ATTESTATION (requester SYSTEM), a POLICY_CHANGE (shown as DOMAIN_WHITELIST), and an
//! auto-approved BUILD_WHITELIST (approver the nil user) — parses with em-client's `Task` and
//! `TaskResult`, and em-client approves them. On SQLite and PostgreSQL. (List calls are tested
//! with the list shapes.)
//!
//! The client is blocking (hyper 0.10); each step runs on a blocking thread while the manager
//! serves on the test's runtime.
// Test support: a failed step should abort the test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_attest::sim::{self, EnclaveIdentity, PlatformOptions, SimCpu, SimQuotingEnclave};
use ccm_sgx::{Measurement, ReportData};
use common::{Backend, Harness, PASSWORD, T0};
use em_client::models;
use em_client::{AccountsApi, AppApi, AuthApi, BuildApi, SystemApi, TaskApi, UsersApi, ZoneApi};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

both_backends!(
    em_client_drives_the_core_journey,
    em_client_parses_and_approves_every_kind_of_task
);

/// An em-client for the manager, authenticated with `token` when given.
fn client(base: &str, token: Option<&str>) -> em_client::Client {
    let mut c = em_client::Client::try_new_http(base).unwrap();
    if let Some(t) = token {
        c.headers()
            .set_raw("Authorization", vec![format!("Bearer {t}").into_bytes()]);
    }
    c
}

/// Runs a blocking em-client step off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn id06(v: &Value) -> uuid06::Uuid {
    uuid06::Uuid::parse_str(v.as_str().unwrap()).unwrap()
}

async fn em_client_drives_the_core_journey(b: Backend) {
    let h = Harness::start(b).await;
    // The administrator signs up with the setup token, which em-client cannot carry.
    h.signup("admin@example.com").await;
    let base = h.base.clone();

    // Version, sign-up (open sign-up; the CAPTCHA field is ignored) and login.
    let (version, alice, auth) = {
        let base = base.clone();
        blocking(move || {
            let c = client(&base, None);
            let version = c.get_manager_version().unwrap();
            let mut signup =
                models::SignupRequest::new("alice@example.com".into(), PASSWORD.into());
            signup.first_name = Some("Alice".into());
            signup.recaptcha_response = Some("not checked by ccm".into());
            let alice = c.create_user(signup).unwrap();
            let mut c = client(&base, None);
            let basic = STANDARD.encode(format!("alice@example.com:{PASSWORD}"));
            c.headers()
                .set_raw("Authorization", vec![format!("Basic {basic}").into_bytes()]);
            let auth = c.authenticate_user(None).unwrap();
            (version, alice, auth)
        })
        .await
    };
    assert_eq!(version.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(alice.user_email, "alice@example.com");
    assert_eq!(alice.first_name.as_deref(), Some("Alice"));
    let session = auth.session_info.unwrap();
    assert_eq!(session.subject_id, alice.user_id);
    let token = auth.access_token.unwrap();

    // Accounts: create (a logo is accepted and ignored), get, select; the current user.
    let (account, got, me) = {
        let (base, token) = (base.clone(), token.clone());
        blocking(move || {
            let c = client(&base, Some(&token));
            let mut req = models::AccountRequest::new("acme".into());
            req.custom_logo = Some(em_client::ByteArray(b"\x89PNG not really".to_vec()));
            let account = c.create_account(req).unwrap();
            let got = c.get_account(account.acct_id).unwrap();
            c.select_account(account.acct_id).unwrap();
            let me = c.get_logged_in_user().unwrap();
            (account, got, me)
        })
        .await
    };
    assert_eq!(account.name.as_deref(), Some("acme"));
    assert_eq!(account.roles, Some(vec![models::AccessRoles::MANAGER]));
    assert_eq!(account.status, Some(models::UserAccountStatus::ACTIVE));
    assert_eq!(got.acct_id, account.acct_id);
    assert_eq!(me.user_email, "alice@example.com");
    assert_eq!(me.roles, Some(vec![models::AccessRoles::MANAGER]));
    // The session selected the account: ccm's own view agrees.
    let (st, mine) = h.get("/v1/user", &token).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(mine["roles"], json!(["MANAGER"]), "{mine}");

    // Apps: add (with the reference's runtime options, which ccm ignores), get, update.
    let (app, got_app, updated) = {
        let (base, token) = (base.clone(), token.clone());
        blocking(move || {
            let c = client(&base, Some(&token));
            let mut req = models::AppRequest::new(
                "flask".into(),
                "registry.example/python-flask".into(),
                "registry.example/python-flask-sgx".into(),
                1,
                2,
                1024,
                64,
            );
            req.description = Some("Flask demo".into());
            req.allowed_domains = Some(vec!["flask.example.com".into()]);
            let mut adv = models::AdvancedSettings::new();
            adv.entrypoint = Some(vec!["/usr/bin/python3".into(), "app.py".into()]);
            adv.java_runtime = Some(models::JavaRuntime::OPENJDK);
            req.advanced_settings = Some(adv);
            req.labels = Some(HashMap::from([("team".to_string(), "web".to_string())]));
            let app = c.add_application(req).unwrap();
            let got = c.get_app(app.app_id).unwrap();
            let mut upd = models::AppBodyUpdateRequest::new();
            upd.description = Some("Flask demo, updated".into());
            upd.threads = Some(32);
            upd.labels = Some(vec![
                models::PatchDocument {
                    op: models::PatchOperation::ADD,
                    path: "/tier".into(),
                    value: Some(json!("gold")),
                },
                models::PatchDocument {
                    op: models::PatchOperation::REMOVE,
                    path: "/team".into(),
                    value: None,
                },
            ]);
            let updated = c.update_app(app.app_id, upd).unwrap();
            (app, got, updated)
        })
        .await
    };
    assert_eq!(app.name, "flask");
    assert_eq!((app.isvprodid, app.isvsvn, app.threads), (1, 2, 64));
    assert_eq!(
        app.allowed_domains,
        Some(vec!["flask.example.com".to_string()])
    );
    assert!(
        app.pending_task_id.is_some(),
        "the domain waits for approval"
    );
    assert_eq!(got_app.app_id, app.app_id);
    assert_eq!(got_app.labels, app.labels);
    assert_eq!(got_app.nodes, Some(Vec::new()));
    assert_eq!(updated.description.as_deref(), Some("Flask demo, updated"));
    assert_eq!(updated.threads, 32);
    assert_eq!(
        updated.labels,
        Some(HashMap::from([("tier".to_string(), "gold".to_string())]))
    );
    // The entrypoint did not become a policy change: the attestation policy is the default.
    let (_, native) = h.get(&format!("/v1/apps/{}", app.app_id), &token).await;
    assert_eq!(
        native["advanced_settings"]["allow_debug"], false,
        "{native}"
    );
    assert!(native.get("pending_policy_task_id").is_none(), "{native}");

    // Images from known values without docker_info; the task; its approval.
    let mrenclave = "ab".repeat(32);
    let (build, got_build, task, status, decided, after) = {
        let (base, token, mrenclave) = (base.clone(), token.clone(), mrenclave.clone());
        let app_id = app.app_id;
        blocking(move || {
            let c = client(&base, Some(&token));
            let mut req = models::CreateBuildRequest::new(mrenclave, "cd".repeat(32), 1, 3);
            req.app_id = Some(app_id);
            let build = c.create_build(req).unwrap();
            let build_id = build.build_id.unwrap();
            let got = c.get_build(build_id).unwrap();
            let task_id = build.pending_task_id.unwrap();
            let task = c.get_task(task_id).unwrap();
            let status = c.get_task_status(task_id).unwrap();
            let decided = c
                .update_task(
                    task_id,
                    models::TaskUpdateRequest::new(models::ApprovalStatus::APPROVED),
                )
                .unwrap();
            let after = c.get_build(build_id).unwrap();
            (build, got, task, status, decided, after)
        })
        .await
    };
    assert_eq!(build.docker_info, None);
    assert_eq!(build.app_id, Some(app.app_id));
    assert_eq!(build.status.status, models::BuildStatusType::PENDING);
    let enclave = build.enclave_info.clone().unwrap();
    assert_eq!(enclave.mrenclave, mrenclave);
    assert_eq!((enclave.isvprodid, enclave.isvsvn), (1, 3));
    assert_eq!(got_build.build_id, build.build_id);
    assert_eq!(task.task_type, models::TaskType::BUILD_WHITELIST);
    assert_eq!(Some(task.entity_id), build.build_id);
    assert_eq!(task.status.status, models::TaskStatusType::INPROGRESS);
    assert_eq!(
        task.requester_info.requester_type,
        models::RequesterType::USER
    );
    assert_eq!(task.requester_info.user_id, Some(alice.user_id));
    assert!(task.approvals.is_empty());
    assert_eq!(status.task_type, Some(models::TaskType::BUILD_WHITELIST));
    assert_eq!(status.build_id, build.build_id);
    assert_eq!(decided.task_id, Some(task.task_id));
    assert_eq!(
        decided.task_status.map(|s| s.status),
        Some(models::TaskStatusType::SUCCESS)
    );
    assert_eq!(decided.build_id, build.build_id);
    assert_eq!(after.status.status, models::BuildStatusType::WHITELISTED);

    // Zones: the zone with its node settings (the configured defaults), and join tokens.
    let (_, acct) = h
        .get(&format!("/v1/accounts/{}", account.acct_id), &token)
        .await;
    let zone_id = id06(&acct["zone_id"]);
    let (zone, t1, t2) = {
        let (base, token) = (base.clone(), token.clone());
        blocking(move || {
            let c = client(&base, Some(&token));
            let zone = c.get_zone(zone_id).unwrap();
            let t1 = c.get_zone_join_token(zone_id).unwrap();
            let t2 = c.get_zone_join_token(zone_id).unwrap();
            (zone, t1, t2)
        })
        .await
    };
    assert_eq!(zone.zone_id, zone_id);
    assert_eq!(zone.acct_id, account.acct_id);
    assert!(zone.certificate.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(zone.node_refresh_interval, 10);
    assert_eq!(zone.node_renewal_threshold, 33);
    let (t1, t2) = (t1.token.unwrap(), t2.token.unwrap());
    assert!(t1.starts_with("ccmjt1."), "{t1}");
    assert_ne!(t1, t2, "each call makes a fresh token");
    let (st, tokens) = h.get(&format!("/v1/zones/{zone_id}/tokens"), &token).await;
    assert_eq!(st, StatusCode::OK, "{tokens}");
    let tokens = tokens.as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    for t in tokens {
        assert_eq!(t["single_use"], true, "{t}");
        assert_eq!(t["expires_at"], T0 + 3600, "{t}");
    }

    // Deleting the app.
    let gone = {
        let (base, token) = (base.clone(), token.clone());
        let app_id = app.app_id;
        blocking(move || {
            let c = client(&base, Some(&token));
            c.delete_app(app_id).unwrap();
            c.get_app(app_id).is_err()
        })
        .await
    };
    assert!(gone, "a deleted app is gone");
    let (_, audit) = h.get("/v1/audit?limit=1000", &token).await;
    let audit = audit.to_string();
    for action in ["account.create", "app.create", "build.create", "app.delete"] {
        assert!(audit.contains(action), "{action} audited");
    }
}

/// Enrolls a node with `token` on the simulated platform in `platform`; the answer's body.
async fn enroll_node(h: &Harness, token: &str, platform: &Path) -> Value {
    let r = h
        .http
        .post(format!("{}/v1/nodes/nonce", h.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let nonce = r.json::<Value>().await.unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let mut hash = Sha256::new();
    hash.update(key.public_key_der());
    hash.update(STANDARD.decode(&nonce).unwrap());
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&hash.finalize());
    let qe = SimQuotingEnclave::load(platform).unwrap();
    let cpu: SimCpu = sim::load_sim_cpu(platform).unwrap();
    let id = EnclaveIdentity {
        mr_enclave: Measurement([9; 32]),
        ..EnclaveIdentity::default()
    };
    let report = cpu.ereport(&qe.target_info(), &id, &ReportData(rd));
    let (quote, _) = qe.get_quote(&report, None).unwrap();
    let collateral: Value =
        serde_json::from_slice(&std::fs::read(platform.join(sim::COLLATERAL_FILE)).unwrap())
            .unwrap();
    let r = h
        .http
        .post(format!("{}/v1/nodes", h.base))
        .bearer_auth(token)
        .json(&json!({
            "name": "node-a", "ipaddress": "10.0.0.4", "sgx_version": "test",
            "nonce": nonce,
            "attestation_request": {"ias_quote": STANDARD.encode(quote), "csr": csr},
            "collateral": collateral
        }))
        .send()
        .await
        .unwrap();
    let st = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(st, StatusCode::CREATED, "{body}");
    body
}

async fn em_client_parses_and_approves_every_kind_of_task(b: Backend) {
    let platform_dir = tempfile::tempdir().unwrap();
    let platform = platform_dir.path().to_path_buf();
    sim::init(&platform, &PlatformOptions::new(T0 as u64)).unwrap();
    let root = platform.join(sim::ROOT_CA_FILE);
    let h = Harness::start_with(b, move |c| c.trusted_simulated_roots = vec![root]).await;
    let (mgr, acct) = h.user_with_account("m@example.com", "acme").await;
    let (st, a) = h
        .patch(
            &format!("/v1/accounts/{acct}"),
            &mgr,
            json!({"allow_simulated": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    let zone_id = a["zone_id"].as_str().unwrap().to_string();

    // The zone asks for approval of every enrollment (its node_enrollment).
    let (st, zone) = h
        .patch(
            &format!("/v1/zones/{zone_id}"),
            &mgr,
            json!({"node_enrollment": {"require_approval": true}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{zone}");
    assert_eq!(zone["node_enrollment"]["require_approval"], true);

    // A node enrolls with a token em-client got: its NODE_ATTESTATION task waits.
    let join = {
        let (base, mgr) = (h.base.clone(), mgr.clone());
        let zone = uuid06::Uuid::parse_str(&zone_id).unwrap();
        blocking(move || client(&base, Some(&mgr)).get_zone_join_token(zone).unwrap())
            .await
            .token
            .unwrap()
    };
    let enrolled = enroll_node(&h, &join, &platform).await;
    let node_id = enrolled["node"]["node_id"].clone();
    let node_task = id06(&enrolled["node"]["pending_task_id"]);

    // A POLICY_CHANGE: a MANAGER changes an app's attestation policy in a MANUAL account.
    let (st, app) = h.post("/v1/apps", &mgr, common::app_body("flask")).await;
    assert_eq!(st, StatusCode::OK, "{app}");
    let app_id = app["app_id"].as_str().unwrap().to_string();
    let (st, changed) = h
        .patch(
            &format!("/v1/apps/{app_id}"),
            &mgr,
            json!({"advanced_settings": {"allow_debug": true}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{changed}");
    let policy_task = id06(&changed["pending_policy_task_id"]);

    // An auto-approved BUILD_WHITELIST in an AUTO_APPROVE account.
    let auto_acct = h.create_account(&mgr, "auto").await;
    let (st, _) = h
        .patch(
            &format!("/v1/accounts/{auto_acct}"),
            &mgr,
            json!({"approval_policy": "AUTO_APPROVE"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, auto_app) = h.post("/v1/apps", &mgr, common::app_body("auto")).await;
    let auto_app = auto_app["app_id"].as_str().unwrap().to_string();
    let (st, auto_build) = h
        .post("/v1/builds", &mgr, common::build_body(&auto_app, "1"))
        .await;
    assert_eq!(st, StatusCode::OK, "{auto_build}");
    let (_, auto_tasks) = h
        .get(
            &format!(
                "/v1/tasks?entity_id={}",
                auto_build["build_id"].as_str().unwrap()
            ),
            &mgr,
        )
        .await;
    let auto_task = auto_tasks
        .as_array()
        .or_else(|| auto_tasks["items"].as_array())
        .unwrap()[0]["task_id"]
        .clone();
    let auto_task = id06(&auto_task);

    // em-client parses each (the auto-approved one in its own account), and approves the others.
    let (auto, auto_status) = {
        let (base, mgr) = (h.base.clone(), mgr.clone());
        blocking(move || {
            let c = client(&base, Some(&mgr));
            (
                c.get_task(auto_task).unwrap(),
                c.get_task_status(auto_task).unwrap(),
            )
        })
        .await
    };
    assert_eq!(auto.task_type, models::TaskType::BUILD_WHITELIST);
    assert_eq!(auto.status.status, models::TaskStatusType::SUCCESS);
    assert_eq!(auto.approvals.len(), 1);
    assert_eq!(auto.approvals[0].user_id, uuid06::Uuid::nil());
    assert_eq!(auto.approvals[0].user_name.as_deref(), Some("system"));
    assert_eq!(
        auto.approvals[0].status,
        Some(models::ApprovalStatus::APPROVED)
    );
    assert_eq!(auto_status.build_id, Some(auto.entity_id));

    let (st, _) = h
        .post(
            &format!("/v1/sys/session/select_account/{acct}"),
            &mgr,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (node, policy, node_decided, policy_decided, policy_after) = {
        let (base, mgr) = (h.base.clone(), mgr.clone());
        blocking(move || {
            let c = client(&base, Some(&mgr));
            let node = c.get_task(node_task).unwrap();
            let policy = c.get_task(policy_task).unwrap();
            let approve = models::TaskUpdateRequest::new(models::ApprovalStatus::APPROVED);
            let node_decided = c.update_task(node_task, approve.clone()).unwrap();
            let policy_decided = c.update_task(policy_task, approve).unwrap();
            let policy_after = c.get_task(policy_task).unwrap();
            (node, policy, node_decided, policy_decided, policy_after)
        })
        .await
    };
    assert_eq!(node.task_type, models::TaskType::NODE_ATTESTATION);
    assert_eq!(
        node.requester_info.requester_type,
        models::RequesterType::SYSTEM
    );
    assert_eq!(node.requester_info.user_id, None);
    assert_eq!(node.entity_id, id06(&node_id));
    assert_eq!(node.status.status, models::TaskStatusType::INPROGRESS);
    assert_eq!(node_decided.node_id, Some(id06(&node_id)));
    assert_eq!(
        node_decided.task_type,
        Some(models::TaskType::NODE_ATTESTATION)
    );
    assert_eq!(
        node_decided.task_status.map(|s| s.status),
        Some(models::TaskStatusType::SUCCESS)
    );

    assert_eq!(policy.task_type, models::TaskType::DOMAIN_WHITELIST);
    assert_eq!(policy.entity_id, id06(&json!(app_id)));
    assert_eq!(
        policy_decided.task_type,
        Some(models::TaskType::DOMAIN_WHITELIST)
    );
    assert_eq!(policy_after.status.status, models::TaskStatusType::SUCCESS);
    let (_, me) = h.get("/v1/user", &mgr).await;
    assert_eq!(policy_after.approvals[0].user_id, id06(&me["user_id"]));
    // ccm's own view names the precise kinds, and the approval applied the policy.
    let (_, t) = h.get(&format!("/v1/tasks/{policy_task}"), &mgr).await;
    assert_eq!(t["task_kind"], "POLICY_CHANGE", "{t}");
    let (_, t) = h.get(&format!("/v1/tasks/{node_task}"), &mgr).await;
    assert_eq!(t["task_kind"], "NODE_ATTESTATION", "{t}");
    let (_, app) = h.get(&format!("/v1/apps/{app_id}"), &mgr).await;
    assert_eq!(app["advanced_settings"]["allow_debug"], true, "{app}");
}
