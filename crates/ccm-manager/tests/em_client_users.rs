//! Fortanix's `em-client` 4.0.2, unmodified, drives a running manager (plain HTTP on an
//! ephemeral loopback port) through the user and registry calls with the client's own types:
//! the current user, invitations (to a person who has not signed up and to one who has, who
//! accepts with the reference's `process_invite`), change password, password reset with an
//! administrator-issued token (`validate_token`, `reset_password`), and registries (create,
//! list, get, update, delete, and the registry of an app and of an image). On SQLite and
//! PostgreSQL.
//!
//! The client is blocking (hyper 0.10); each step runs on a blocking thread while the manager
//! serves on the test's runtime.
// Test support: a failed step should abort the test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, Harness, PASSWORD};
use em_client::models;
use em_client::{RegistryApi, UsersApi};
use reqwest::StatusCode;
use serde_json::json;

both_backends!(em_client_drives_users_and_registries);

const NEW_PASSWORD: &str = "a new password 2";
const RESET_PASSWORD: &str = "a reset password 3";

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

async fn em_client_drives_users_and_registries(b: Backend) {
    let h = Harness::start(b).await;
    let (admin, acct) = h.user_with_account("admin@example.com", "acme").await;
    h.signup("bob@example.com").await;
    let bob = h.login("bob@example.com").await;
    let (st, app) = h.post("/v1/apps", &admin, common::app_body("flask")).await;
    assert_eq!(st, StatusCode::OK, "{app}");
    let app_id = app["app_id"].as_str().unwrap().to_string();
    let base = h.base.clone();

    // The current user; invitations to a person not signed up yet and to bob (201 both).
    let (me, carol, invited_bob) = {
        let (base, admin) = (base.clone(), admin.clone());
        blocking(move || {
            let c = client(&base, Some(&admin));
            let me = c.get_logged_in_user().unwrap();
            let invite = |email: &str, role| {
                c.invite_user(models::InviteUserRequest {
                    user_email: email.into(),
                    roles: vec![role],
                    first_name: None,
                    last_name: None,
                })
                .unwrap()
            };
            (
                me,
                invite("carol@example.com", models::AccessRoles::READER),
                invite("bob@example.com", models::AccessRoles::WRITER),
            )
        })
        .await
    };
    assert_eq!(me.user_email, "admin@example.com");
    assert_eq!(carol.user_email, "carol@example.com");
    assert_eq!(carol.roles, Some(vec![models::AccessRoles::READER]));
    assert_eq!(
        carol.user_account_status,
        Some(models::UserAccountStatus::PENDING)
    );
    assert_eq!(invited_bob.roles, Some(vec![models::AccessRoles::WRITER]));
    let (_, pending) = h.get("/v1/users/invitations", &admin).await;
    assert_eq!(pending.as_array().unwrap().len(), 2, "{pending}");

    // Bob accepts, changes his password, and is the WRITER of the account.
    let bob_id = {
        let (base, bob, acct) = (base.clone(), bob.clone(), acct.clone());
        blocking(move || {
            let c = client(&base, Some(&bob));
            c.process_invitations(models::ProcessInviteRequest {
                accepts: Some(vec![uuid06::Uuid::parse_str(&acct).unwrap()]),
                rejects: None,
            })
            .unwrap();
            c.change_password(models::PasswordChangeRequest {
                current_password: PASSWORD.into(),
                new_password: NEW_PASSWORD.into(),
            })
            .unwrap();
            c.get_logged_in_user().unwrap().user_id
        })
        .await
    };
    let (st, _) = h
        .post(
            &format!("/v1/sys/session/select_account/{acct}"),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "bob's session survived his own change");
    let (_, me) = h.get("/v1/user", &bob).await;
    assert_eq!(me["roles"], json!(["WRITER"]));

    // The administrator issues a reset token; bob's client validates it and resets.
    let (st, issued) = h
        .post(
            &format!("/v1/users/{bob_id}/reset_token"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{issued}");
    let token = issued["reset_token"].as_str().unwrap().to_string();
    let validated = {
        let base = base.clone();
        blocking(move || {
            let c = client(&base, None);
            let v = c
                .validate_password_reset_token(
                    bob_id,
                    models::ValidateTokenRequest {
                        reset_token: token.clone(),
                    },
                )
                .unwrap();
            c.reset_password(
                bob_id,
                models::PasswordResetRequest {
                    reset_token: token,
                    new_password: RESET_PASSWORD.into(),
                },
            )
            .unwrap();
            v
        })
        .await
    };
    assert_eq!(validated.user_email, "bob@example.com");
    let resp = h
        .http
        .post(format!("{}/v1/sys/auth", h.base))
        .basic_auth("bob@example.com", Some(RESET_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Registries: create, list, get, update, the app's and an image's registry, delete.
    let secret = "em-client-registry-secret";
    let (created, listed, got, updated, for_app, for_image, after_delete) = {
        let (base, admin) = (base.clone(), admin.clone());
        let app_id = uuid06::Uuid::parse_str(&app_id).unwrap();
        blocking(move || {
            let c = client(&base, Some(&admin));
            let created = c
                .create_registry(models::RegistryRequest {
                    url: "registry.example".into(),
                    credential: models::CredentialType {
                        default: Some(models::AuthConfig {
                            username: Some("robot".into()),
                            password: Some(secret.into()),
                        }),
                    },
                    description: Some("the app's registry".into()),
                })
                .unwrap();
            let id = created.registry_id;
            let listed = c.get_all_registries().unwrap();
            let got = c.get_registry(id).unwrap();
            let updated = c
                .update_registry(
                    id,
                    vec![models::PatchDocument {
                        op: models::PatchOperation::REPLACE,
                        path: "/description".into(),
                        value: Some(json!("CI images")),
                    }]
                    .into(),
                )
                .unwrap();
            let for_app = c.get_registry_for_app(app_id).unwrap();
            let for_image = c
                .get_registry_for_image("registry.example/python-flask:1".into())
                .unwrap();
            c.delete_registry(id).unwrap();
            let after_delete = c.get_registry(id).is_err();
            (
                created,
                listed,
                got,
                updated,
                for_app,
                for_image,
                after_delete,
            )
        })
        .await
    };
    assert_eq!(created.url, "registry.example");
    assert_eq!(created.username.as_deref(), Some("robot"));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].registry_id, created.registry_id);
    assert_eq!(got.description.as_deref(), Some("the app's registry"));
    assert_eq!(updated.description.as_deref(), Some("CI images"));
    for r in [
        &for_app.input_image_registry,
        &for_app.output_image_registry,
    ] {
        assert_eq!(r.as_ref().unwrap().registry_id, created.registry_id);
    }
    assert_eq!(
        for_image.registry.map(|r| r.registry_id),
        Some(created.registry_id)
    );
    assert!(after_delete, "a deleted registry is gone");
    let (_, audit) = h.get("/v1/audit?limit=1000", &admin).await;
    let audit = audit.to_string();
    assert!(audit.contains("registry.delete"));
    assert!(!audit.contains(secret));
}
