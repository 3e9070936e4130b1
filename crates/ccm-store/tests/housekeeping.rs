//! Housekeeping and bootstrap queries on a real SQLite file and a real PostgreSQL: the setup
//! token is used once, REJECTED requests and expired sessions are purged, failed logins are
//! audited.
// Shared test functions abort the test with the reason when a step fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use ccm_api::accounts::ApprovalPolicy;
use ccm_api::certificates::CertificateStatusType;
use ccm_api::tasks::TaskStatusType;
use ccm_store::{Actor, IssuanceRecord, NewSession, NewUser, SetupTokenState, Store};
use common::{Db, NOW, connect};
use uuid::Uuid;

both!(
    setup_token_is_used_once,
    rejected_requests_are_purged,
    expired_sessions_are_purged,
    failed_logins_are_audited,
);

fn user(email: &str) -> NewUser {
    NewUser {
        user_id: Uuid::new_v4(),
        email: email.into(),
        password_hash: "$argon2id$x".into(),
        first_name: None,
        last_name: None,
    }
}

/// The setup token is recorded once (a second replica's token does not replace it), makes one
/// system administrator, and is refused afterwards; ordinary users are never administrators.
async fn setup_token_is_used_once(db: Db) {
    let store = connect(&db).await;
    assert!(!store.setup_pending().await.unwrap());
    let first = store.init_setup_token("hash-a").await.unwrap();
    assert_eq!(
        first,
        SetupTokenState::Pending {
            stored_hash: "hash-a".into()
        }
    );
    // Another replica starting later keeps the first token.
    let second = store.init_setup_token("hash-b").await.unwrap();
    assert_eq!(second, first);
    assert!(store.setup_pending().await.unwrap());
    // An ordinary sign-up before the administrator is not one.
    let plain = store
        .create_user(user("plain@example.com"), NOW)
        .await
        .unwrap();
    assert!(!plain.is_sysadmin);
    // A wrong token creates nothing.
    assert!(
        store
            .create_admin_with_setup_token(user("mallory@example.com"), "hash-b", NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .user_by_email("mallory@example.com")
            .await
            .unwrap()
            .is_none()
    );
    // Two sign-ups with the right token at once: exactly one wins.
    let (a, b) = tokio::join!(
        store.create_admin_with_setup_token(user("alice@example.com"), "hash-a", NOW),
        store.create_admin_with_setup_token(user("bob@example.com"), "hash-a", NOW),
    );
    let winners: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert!(winners[0].is_sysadmin);
    assert!(!store.setup_pending().await.unwrap());
    // Used: refused, and a restart does not make a new one.
    assert!(
        store
            .create_admin_with_setup_token(user("carol@example.com"), "hash-a", NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.init_setup_token("hash-c").await.unwrap(),
        SetupTokenState::AdminExists
    );
    assert!(!store.setup_pending().await.unwrap());
}

async fn account(store: &Store) -> (Uuid, Uuid, Actor) {
    let admin = user("admin@example.com");
    let actor = Actor {
        user_id: Some(admin.user_id),
        name: admin.email.clone(),
    };
    store.create_user(admin, NOW).await.unwrap();
    let acct_id = common::create_account(store, &actor, ApprovalPolicy::Manual).await;
    let zone = store.list_zones(acct_id).await.unwrap()[0].zone.zone_id;
    (acct_id, zone, actor)
}

fn request(acct_id: Uuid, zone_id: Uuid, status: CertificateStatusType) -> IssuanceRecord {
    let rejected = status == CertificateStatusType::Rejected;
    IssuanceRecord {
        certificate_id: Uuid::now_v7(),
        task_id: Uuid::now_v7(),
        acct_id,
        zone_id,
        node_id: Uuid::new_v4(),
        node_name: "node-1".into(),
        app_id: None,
        build_id: None,
        status,
        csr: "CSR".into(),
        quote: vec![3, 0],
        domains: vec!["a.example.com".into()],
        enclave: None,
        simulated: true,
        cert_pem: None,
        serial: None,
        valid_from: None,
        valid_until: None,
        message: Some("refused".into()),
        task_status: if rejected {
            TaskStatusType::Denied
        } else {
            TaskStatusType::Inprogress
        },
        nonce: None,
        spki_sha256: None,
    }
}

/// REJECTED requests last updated at or before the cutoff go with their tasks, in batches
/// larger than one; newer rejected ones and pending ones stay.
async fn rejected_requests_are_purged(db: Db) {
    let store = connect(&db).await;
    let (acct, zone, _) = account(&store).await;
    let batch = usize::try_from(ccm_store::PURGE_BATCH).unwrap();
    let old: Vec<IssuanceRecord> = (0..batch + 3)
        .map(|_| request(acct, zone, CertificateStatusType::Rejected))
        .collect();
    store.record_issuances(&old, NOW).await.unwrap();
    let recent = vec![request(acct, zone, CertificateStatusType::Rejected)];
    store.record_issuances(&recent, NOW + 100).await.unwrap();
    let pending = vec![request(acct, zone, CertificateStatusType::Pending)];
    store.record_issuances(&pending, NOW).await.unwrap();

    assert_eq!(store.purge_rejected_requests(NOW - 1).await.unwrap(), 0);
    assert_eq!(
        store.purge_rejected_requests(NOW).await.unwrap(),
        u64::try_from(old.len()).unwrap()
    );
    let ids = |rs: &[IssuanceRecord]| rs.iter().map(|r| r.task_id).collect::<Vec<_>>();
    assert!(
        store.used_task_ids(&ids(&old)).await.unwrap().is_empty(),
        "old rejected requests and their tasks are gone"
    );
    assert_eq!(store.used_task_ids(&ids(&recent)).await.unwrap().len(), 1);
    assert_eq!(store.used_task_ids(&ids(&pending)).await.unwrap().len(), 1);
    assert_eq!(store.purge_rejected_requests(NOW).await.unwrap(), 0);
    assert_eq!(store.purge_rejected_requests(NOW + 100).await.unwrap(), 1);
    assert_eq!(store.used_task_ids(&ids(&pending)).await.unwrap().len(), 1);
}

/// Sessions past their session lifetime are deleted; live ones stay.
async fn expired_sessions_are_purged(db: Db) {
    let store = connect(&db).await;
    let (_, _, actor) = account(&store).await;
    let user_id = actor.user_id.unwrap();
    for (i, ends) in [NOW + 10, NOW + 20, NOW + 3600].into_iter().enumerate() {
        store
            .create_session(
                &NewSession {
                    session_id: Uuid::new_v4(),
                    token_hash: format!("token-{i}"),
                    user_id,
                    token_expires_at: ends,
                    session_expires_at: ends,
                },
                &actor,
                NOW,
            )
            .await
            .unwrap();
    }
    assert_eq!(store.purge_expired_sessions(NOW).await.unwrap(), 0);
    assert_eq!(store.purge_expired_sessions(NOW + 20).await.unwrap(), 2);
    assert!(
        store
            .session_by_token_hash("token-1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .session_by_token_hash("token-2")
            .await
            .unwrap()
            .is_some()
    );
}

/// A failed login is an audit entry naming the e-mail, the address and the user; the chain
/// stays valid.
async fn failed_logins_are_audited(db: Db) {
    let store = connect(&db).await;
    let (_, _, actor) = account(&store).await;
    store
        .record_login_failure(
            "admin@example.com",
            actor.user_id,
            Some("192.0.2.7"),
            "wrong_password",
            NOW,
        )
        .await
        .unwrap();
    let log = store.list_audit(None, 0, 1000).await.unwrap();
    let e = log
        .iter()
        .find(|e| e.action == "session.login_failed")
        .expect("an entry");
    assert_eq!(e.actor, "anonymous@192.0.2.7");
    assert_eq!(e.object_id, actor.user_id);
    assert_eq!(e.details["user_email"], "admin@example.com");
    assert_eq!(e.details["client_address"], "192.0.2.7");
    assert!(!e.details.to_string().contains("password\":"));
    ccm_api::audit::verify_chain(&log, ccm_api::audit::GENESIS_HASH.into(), 1).unwrap();
}
