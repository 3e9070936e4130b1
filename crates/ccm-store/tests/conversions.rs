//! Conversion jobs in the store, on a real SQLite file and a real PostgreSQL: atomic claims
//! under concurrency, fencing by claim token, recovery of interrupted jobs, credential deletion,
//! the per-account signing key.
// Shared test functions abort the test with the reason when a step fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::HashSet;

use ccm_api::accounts::{ApprovalPolicy, ZoneCaKeyType};
use ccm_api::apps::{AdvancedSettings, App};
use ccm_api::builds::{Build, BuildStatus, BuildStatusType, DockerInfo, EnclaveInfo};
use ccm_store::{
    Actor, ConversionResult, Error, Interrupted, NewAccount, NewConversion, NewUser, NewZone,
    ProgressUpdate, Recovery, Store, StoreOptions, log_line,
};
use common::{Db, NOW, approve_domains, revoke, whitelist_image};
use uuid::Uuid;

struct Fixture {
    store: Store,
    actor: Actor,
    acct: Uuid,
    app: Uuid,
}

async fn setup(db: &Db) -> Fixture {
    let store = Store::connect(&db.url(), &StoreOptions::default())
        .await
        .unwrap();
    let user_id = Uuid::new_v4();
    store
        .create_user(
            NewUser {
                user_id,
                email: "alice@example.com".into(),
                password_hash: "$argon2id$x".into(),
                first_name: None,
                last_name: None,
            },
            NOW,
        )
        .await
        .unwrap();
    let actor = Actor {
        user_id: Some(user_id),
        name: "alice@example.com".into(),
    };
    let acct = store
        .create_account(
            &NewAccount {
                acct_id: Uuid::new_v4(),
                name: "acme".into(),
                approval_policy: ApprovalPolicy::Manual,
                allow_simulated: false,
                creator: user_id,
                zone: NewZone {
                    zone_id: Uuid::new_v4(),
                    name: "acme zone".into(),
                    ca_cert_pem: "PEM".into(),
                    ca_key_sealed: vec![1, 2, 3],
                    ca_key_type: ZoneCaKeyType::EcP256,
                },
            },
            &actor,
            NOW,
        )
        .await
        .unwrap()
        .acct_id;
    let app = store
        .create_app(
            &App {
                app_id: Uuid::new_v4(),
                acct_id: acct,
                name: "flask".into(),
                description: None,
                input_image_name: "r.test/flask".into(),
                output_image_name: "r.test/flask-sgx".into(),
                isvprodid: 1,
                isvsvn: 2,
                mem_size: 64,
                threads: 4,
                allowed_domains: vec![],
                whitelisted_domains: vec![],
                pending_task_id: None,
                pending_policy_task_id: None,
                certificate: None,
                advanced_settings: AdvancedSettings::default(),
                labels: Default::default(),
                created_at: NOW,
                updated_at: NOW,
            },
            &approve_domains(),
            &actor,
            NOW,
        )
        .await
        .unwrap()
        .app_id;
    Fixture {
        store,
        actor,
        acct,
        app,
    }
}

fn new_conversion(f: &Fixture, tag: &str) -> NewConversion {
    NewConversion {
        build: Build {
            build_id: Uuid::new_v4(),
            acct_id: f.acct,
            app_id: f.app,
            app_name: String::new(),
            docker_info: Some(DockerInfo {
                docker_image_name: "r.test/flask-sgx".into(),
                docker_version: tag.into(),
                docker_image_sha: None,
                docker_image_size: None,
            }),
            enclave_info: EnclaveInfo {
                mrenclave: "ignored".into(),
                mrsigner: "ignored".into(),
                isvprodid: 1,
                isvsvn: 2,
            },
            mem_size: 64,
            threads: 4,
            status: BuildStatus {
                status: BuildStatusType::Pending,
                status_updated_at: NOW,
            },
            pending_task_id: None,
            conversion: None,
            created_at: NOW,
            updated_at: NOW,
        },
        input_image: "r.test/flask:1".into(),
        output_image: format!("r.test/flask-sgx:{tag}"),
        settings: "{}".into(),
        debug: false,
        credentials_sealed: Some(vec![0xAB; 48]),
        credentials_given: vec!["output"],
    }
}

async fn queue(f: &Fixture, tag: &str) -> Uuid {
    let b = f
        .store
        .create_conversion(&new_conversion(f, tag), &f.actor, NOW)
        .await
        .unwrap();
    let c = b.conversion.as_ref().unwrap();
    assert_eq!(c.status.as_str(), "QUEUED");
    assert_eq!(b.enclave_info.mrenclave, "", "recorded on success only");
    assert_eq!(b.pending_task_id, None);
    b.build_id
}

fn result() -> ConversionResult {
    ConversionResult {
        docker_image_sha: format!("sha256:{}", "c".repeat(64)),
        docker_image_size: 3,
        mrenclave: "a".repeat(64),
        mrsigner: "b".repeat(64),
    }
}

async fn concurrent_claims_take_each_job_once(db: Db) {
    let f = setup(&db).await;
    let mut queued = HashSet::new();
    for i in 0..8 {
        queued.insert(queue(&f, &format!("t{i}")).await);
    }
    // Sixteen workers of four "replicas" race for eight jobs.
    let mut handles = Vec::new();
    for w in 0..16 {
        let store = f.store.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(c) = store
                .claim_conversion(&format!("replica-{}", w % 4), NOW)
                .await
                .unwrap()
            {
                assert_eq!(c.attempt, 1);
                mine.push(c.build_id);
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for h in handles {
        claimed.extend(h.await.unwrap());
    }
    assert_eq!(
        claimed.len(),
        8,
        "every job claimed exactly once: {claimed:?}"
    );
    assert_eq!(claimed.iter().copied().collect::<HashSet<_>>(), queued);
    assert!(
        f.store
            .claim_conversion("late", NOW)
            .await
            .unwrap()
            .is_none()
    );
}

async fn fencing_completion_and_recovery(db: Db) {
    let f = setup(&db).await;
    let id = queue(&f, "1").await;
    assert!(f.store.conversion_holds_credentials(id).await.unwrap());
    let first = f.store.claim_conversion("m1", NOW).await.unwrap().unwrap();
    assert_eq!((first.build_id, first.attempt), (id, 1));
    assert_eq!(first.credentials_sealed.as_deref(), Some(&[0xAB; 48][..]));
    assert_eq!(first.requester, f.actor);
    let log = vec![log_line(NOW, "working")];
    let p = ProgressUpdate {
        phase: "copying layers",
        progress: 40,
        bytes_done: 10,
        bytes_total: Some(25),
        log: &log,
    };
    assert!(
        f.store
            .conversion_progress(id, first.claim_token, &p, NOW + 1)
            .await
            .unwrap()
    );

    // m1's heartbeat went silent: the lease expiry hands the job to m2.
    let none = f
        .store
        .recover_conversions(Interrupted::HeartbeatBefore(NOW + 1), 3, NOW + 100)
        .await
        .unwrap();
    assert!(none.is_empty(), "a heartbeat at the limit is not stale");
    let done = f
        .store
        .recover_conversions(Interrupted::HeartbeatBefore(NOW + 2), 3, NOW + 100)
        .await
        .unwrap();
    assert_eq!(done, [(id, Recovery::Requeued)]);
    let second = f
        .store
        .claim_conversion("m2", NOW + 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.attempt, 2);
    assert!(
        second
            .log
            .iter()
            .any(|l| l.message.contains("attempt 1 was interrupted"))
    );

    // m1 wakes up: none of its writes change the job any more.
    assert!(
        !f.store
            .conversion_progress(id, first.claim_token, &p, NOW + 101)
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .complete_conversion(
                id,
                first.claim_token,
                &result(),
                &p,
                &whitelist_image(),
                NOW + 101
            )
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .fail_conversion(id, first.claim_token, "stale", &p, NOW + 101)
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .release_conversion(id, first.claim_token, &log, NOW + 101)
            .await
            .unwrap()
    );
    let b = f.store.get_build(f.acct, id).await.unwrap().unwrap();
    assert_eq!(b.conversion.unwrap().status.as_str(), "RUNNING");

    // m2 completes: identity recorded, task raised, credentials gone, in one step.
    assert!(
        f.store
            .complete_conversion(
                id,
                second.claim_token,
                &result(),
                &p,
                &whitelist_image(),
                NOW + 200
            )
            .await
            .unwrap()
    );
    let b = f.store.get_build(f.acct, id).await.unwrap().unwrap();
    let c = b.conversion.clone().unwrap();
    assert_eq!(
        (c.status.as_str(), c.progress, c.phase.as_str()),
        ("SUCCEEDED", 100, "done")
    );
    assert_eq!(c.finished_at, Some(NOW + 200));
    assert_eq!(
        (c.bytes_done, c.bytes_total),
        (10, Some(25)),
        "the final counts"
    );
    assert_eq!(b.enclave_info.mrenclave, "a".repeat(64));
    assert_eq!(
        b.image_digest().map(String::from),
        Some(format!("sha256:{}", "c".repeat(64)))
    );
    assert_eq!(
        b.docker_info.as_ref().and_then(|d| d.docker_image_size),
        Some(3)
    );
    let task = b.pending_task_id.expect("BUILD_WHITELIST task");
    let t = f.store.get_task(f.acct, task).await.unwrap().unwrap();
    assert_eq!(t.task_type.as_str(), "BUILD_WHITELIST");
    assert_eq!(t.requester_info.requester_name, "alice@example.com");
    assert!(!f.store.conversion_holds_credentials(id).await.unwrap());
    // A finished job is never recovered, and cannot be completed twice.
    assert!(
        f.store
            .recover_conversions(Interrupted::All, 3, NOW + 300)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !f.store
            .complete_conversion(
                id,
                second.claim_token,
                &result(),
                &p,
                &whitelist_image(),
                NOW + 300
            )
            .await
            .unwrap()
    );

    // Release (graceful stop) does not count the attempt; exhausting attempts fails the job.
    let id2 = queue(&f, "2").await;
    let c = f.store.claim_conversion("m3", NOW).await.unwrap().unwrap();
    assert!(
        f.store
            .release_conversion(id2, c.claim_token, &log, NOW)
            .await
            .unwrap()
    );
    for attempt in 1..=2 {
        let c = f.store.claim_conversion("m3", NOW).await.unwrap().unwrap();
        assert_eq!(c.attempt, attempt);
        let r = f
            .store
            .recover_conversions(Interrupted::ClaimedBy("m3"), 2, NOW)
            .await
            .unwrap();
        let expected = if attempt < 2 {
            Recovery::Requeued
        } else {
            Recovery::Failed
        };
        assert_eq!(r, [(id2, expected)]);
    }
    let b = f.store.get_build(f.acct, id2).await.unwrap().unwrap();
    let c = b.conversion.unwrap();
    assert_eq!(c.status.as_str(), "FAILED");
    assert_eq!(
        c.error.as_deref(),
        Some("interrupted by manager restart (after 2 attempts)")
    );
    assert!(!f.store.conversion_holds_credentials(id2).await.unwrap());
    assert_eq!(b.pending_task_id, None);

    // A failed tag may be queued again (replacing it); a live one may not.
    let id3 = queue(&f, "2").await;
    assert!(f.store.get_build(f.acct, id2).await.unwrap().is_none());
    assert_ne!(id3, id2);
    let e = f
        .store
        .create_conversion(&new_conversion(&f, "1"), &f.actor, NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Conflict {
                field: "docker_version",
                ..
            }
        ),
        "{e}"
    );
    // Deleting an image deletes its job (a worker's next write says so).
    let c = f.store.claim_conversion("m4", NOW).await.unwrap().unwrap();
    assert_eq!(c.build_id, id3);
    f.store
        .delete_build(f.acct, id3, &revoke("the image was deleted"), &f.actor, NOW)
        .await
        .unwrap();
    assert!(
        !f.store
            .conversion_progress(id3, c.claim_token, &p, NOW)
            .await
            .unwrap()
    );
    assert!(f.store.get_conversion(f.acct, id3).await.unwrap().is_none());
    // The log is bounded.
    let id4 = queue(&f, "4").await;
    let c = f.store.claim_conversion("m5", NOW).await.unwrap().unwrap();
    let long: Vec<_> = (0..500)
        .map(|i| log_line(NOW, format!("line {i}")))
        .collect();
    let p = ProgressUpdate { log: &long, ..p };
    assert!(
        f.store
            .conversion_progress(id4, c.claim_token, &p, NOW)
            .await
            .unwrap()
    );
    let progress = f.store.get_conversion(f.acct, id4).await.unwrap().unwrap();
    assert_eq!(
        progress.log.len(),
        ccm_api::builds::MAX_CONVERSION_LOG_ENTRIES
    );
    assert_eq!(progress.log.last().unwrap().message, "line 499");
    // Another account sees nothing.
    assert!(
        f.store
            .get_conversion(Uuid::new_v4(), id4)
            .await
            .unwrap()
            .is_none()
    );
}

async fn signing_key_is_kept_per_account(db: Db) {
    let f = setup(&db).await;
    assert!(f.store.signing_key(f.acct).await.unwrap().is_none());
    let (one, two) = ("1".repeat(64), "2".repeat(64));
    let (a, b) = tokio::join!(
        f.store.insert_signing_key(f.acct, b"first", &one, NOW),
        f.store.insert_signing_key(f.acct, b"second", &two, NOW),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.key_sealed, b.key_sealed,
        "both callers get the key stored first"
    );
    assert_eq!(a.mrsigner, b.mrsigner);
    let stored = f.store.signing_key(f.acct).await.unwrap().unwrap();
    assert_eq!(stored.key_sealed, a.key_sealed);
    let created = f
        .store
        .list_audit(Some(f.acct), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "account.signing_key.create")
        .count();
    assert_eq!(created, 1, "one key, one audit entry");
    // The key goes with the account.
    f.store.delete_account(f.acct, &f.actor, NOW).await.unwrap();
    assert!(f.store.signing_key(f.acct).await.unwrap().is_none());
}

both!(
    concurrent_claims_take_each_job_once,
    fencing_completion_and_recovery,
    signing_key_is_kept_per_account
);
