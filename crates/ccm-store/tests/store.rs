//! The store against real SQLite files and a real PostgreSQL: the same tests on both.
// Shared test functions abort the test with the reason when a step fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use ccm_api::accounts::{AccessRole, ApprovalPolicy};
use ccm_api::apps::{AdvancedSettings, App};
use ccm_api::audit::{GENESIS_HASH, verify_chain};
use ccm_api::builds::BuildStatusType;
use ccm_api::certificates::CertificateStatusType;
use ccm_api::tasks::{ApprovalStatus, TaskStatusType};
use ccm_api::zones::JoinTokenInfo;
use ccm_store::{
    AppEdit, Effect, EffectStep, Error, IssuanceRecord, NewJoinToken, PageRequest, PolicyEdit,
    Store, StoreOptions, TaskFilter,
};
use common::{
    Db, NOW, app, approve_domains, build, denied, domain_effect, image_effect, revoke, setup,
    verdict, whitelist_image,
};
use uuid::Uuid;

both!(
    workflow,
    auto_approve_and_tokens,
    concurrent_decisions_one_winner,
    revocation_denies_keys,
    policy_change_and_simulated_trust,
    upgrade_keeps_instance_reports,
    statuses_outside_their_enum_are_refused,
    decided_effects_are_written_atomically,
);

async fn workflow(db: Db) {
    let (store, actor, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let user = store
        .user_by_email("ALICE@example.COM")
        .await
        .unwrap()
        .unwrap();
    assert!(
        user.user.is_sysadmin,
        "the first user is system administrator"
    );

    let a = store
        .create_app(
            &app(acct, "flask", &["a.example", "b.example"]),
            &approve_domains(),
            &actor,
            NOW,
        )
        .await
        .unwrap();
    let task_id = a.pending_task_id.expect("domain task");
    assert!(a.whitelisted_domains.is_empty());
    assert_eq!(
        a.description.as_deref(),
        Some("it's a '; DROP TABLE apps; --")
    );
    let dup = store
        .create_app(&app(acct, "flask", &[]), &approve_domains(), &actor, NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(dup, Error::Conflict { field: "name", .. }),
        "{dup}"
    );

    let t = store
        .decide_task(
            acct,
            task_id,
            verdict(
                ApprovalStatus::Approved,
                None,
                &domain_effect(ApprovalStatus::Approved),
            ),
            &actor,
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(t.status.status, TaskStatusType::Success);
    assert_eq!(t.approvals.len(), 1);
    let again = store
        .decide_task(
            acct,
            task_id,
            verdict(
                ApprovalStatus::Denied,
                Some("no"),
                &domain_effect(ApprovalStatus::Denied),
            ),
            &actor,
            NOW + 2,
        )
        .await
        .unwrap_err();
    assert!(matches!(again, Error::InvalidState(_)), "{again}");
    let a = store.get_app(acct, a.app_id).await.unwrap().unwrap();
    assert_eq!(a.whitelisted_domains, vec!["a.example", "b.example"]);
    assert_eq!(a.pending_task_id, None);

    // Adding a domain raises a new task; removing one leaves the whitelist at once.
    let a = store
        .update_app(
            acct,
            a.app_id,
            &approve_domains(),
            &actor,
            NOW + 3,
            |mut x, _| {
                x.allowed_domains = vec!["b.example".into(), "c.example".into()];
                Ok::<_, ()>(AppEdit {
                    app: x,
                    policy: PolicyEdit::Apply,
                })
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.whitelisted_domains, vec!["b.example"]);
    let t2 = a.pending_task_id.unwrap();
    assert_eq!(
        store
            .get_task(acct, t2)
            .await
            .unwrap()
            .unwrap()
            .domains_added,
        vec!["c.example"]
    );
    store
        .decide_task(
            acct,
            t2,
            verdict(
                ApprovalStatus::Denied,
                Some("not ours"),
                &domain_effect(ApprovalStatus::Denied),
            ),
            &actor,
            NOW + 4,
        )
        .await
        .unwrap();
    let a = store.get_app(acct, a.app_id).await.unwrap().unwrap();
    assert_eq!(a.allowed_domains, vec!["b.example"]);

    let b = store
        .create_build(
            &build(acct, a.app_id, "1.0"),
            &whitelist_image(),
            &actor,
            NOW + 5,
        )
        .await
        .unwrap();
    assert_eq!(b.status.status, BuildStatusType::Pending);
    assert_eq!(b.app_name, "flask");
    let bt = b.pending_task_id.unwrap();
    store
        .decide_task(
            acct,
            bt,
            verdict(
                ApprovalStatus::Approved,
                None,
                &image_effect(ApprovalStatus::Approved),
            ),
            &actor,
            NOW + 6,
        )
        .await
        .unwrap();
    let b = store.get_build(acct, b.build_id).await.unwrap().unwrap();
    assert_eq!(b.status.status, BuildStatusType::Whitelisted);
    assert_eq!(b.pending_task_id, None);

    // Other accounts see nothing.
    let other = Uuid::new_v4();
    assert!(store.get_app(other, a.app_id).await.unwrap().is_none());
    assert!(matches!(
        store
            .decide_task(
                other,
                bt,
                verdict(
                    ApprovalStatus::Approved,
                    None,
                    &image_effect(ApprovalStatus::Approved)
                ),
                &actor,
                NOW
            )
            .await,
        Err(Error::NotFound("task"))
    ));

    let filter = TaskFilter::default();
    assert_eq!(
        store
            .list_tasks(acct, &filter, &PageRequest::first(100))
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    let counts = store.account_counts(acct).await.unwrap();
    assert_eq!(
        (
            counts.apps,
            counts.builds,
            counts.pending_tasks,
            counts.users
        ),
        (1, 1, 0, 1)
    );

    // Delete cascades in one transaction and is audited; the chain verifies.
    store.delete_account(acct, &actor, NOW + 7).await.unwrap();
    assert!(store.get_app(acct, a.app_id).await.unwrap().is_none());
    assert!(
        store
            .list_tasks(acct, &filter, &PageRequest::first(100))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let log = store.list_audit(None, 0, 1000).await.unwrap();
    verify_chain(&log, GENESIS_HASH.into(), 1).unwrap();
    assert_eq!(log.last().unwrap().action, "account.delete");
}

async fn auto_approve_and_tokens(db: Db) {
    let (store, actor, acct) = setup(&db, ApprovalPolicy::AutoApprove).await;
    let a = store
        .create_app(
            &app(acct, "x", &["x.example"]),
            &approve_domains(),
            &actor,
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(a.whitelisted_domains, vec!["x.example"]);
    assert_eq!(a.pending_task_id, None);
    let b = store
        .create_build(&build(acct, a.app_id, "2"), &whitelist_image(), &actor, NOW)
        .await
        .unwrap();
    assert_eq!(b.status.status, BuildStatusType::Whitelisted);
    let dup = store
        .create_build(&build(acct, a.app_id, "2"), &whitelist_image(), &actor, NOW)
        .await
        .unwrap_err();
    assert!(matches!(dup, Error::Conflict { .. }));

    let zone = store.list_zones(acct).await.unwrap().remove(0).zone;
    let token_id = Uuid::new_v4();
    let info = JoinTokenInfo {
        token_id,
        zone_id: zone.zone_id,
        created_at: NOW,
        expires_at: NOW + 100,
        single_use: true,
        use_count: 0,
        last_used_at: None,
        revoked_at: None,
        created_by: actor.user_id,
        description: None,
    };
    store
        .create_join_token(
            acct,
            &NewJoinToken {
                info,
                secret_hash: "h".into(),
            },
            &actor,
            NOW,
        )
        .await
        .unwrap();
    assert!(
        store
            .use_join_token(token_id, "wrong", NOW + 1)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .use_join_token(token_id, "h", NOW + 100)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    let used = store
        .use_join_token(token_id, "h", NOW + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((used.acct_id, used.zone_id), (acct, zone.zone_id));
    assert!(
        store
            .use_join_token(token_id, "h", NOW + 2)
            .await
            .unwrap()
            .is_none(),
        "single use"
    );
    let listed = store.list_join_tokens(acct, zone.zone_id).await.unwrap();
    assert_eq!(listed[0].use_count, 1);
    store
        .revoke_join_token(acct, zone.zone_id, token_id, &actor, NOW + 3)
        .await
        .unwrap();
    assert_eq!(
        store.role_of(actor.user_id.unwrap(), acct).await.unwrap(),
        Some(AccessRole::Manager)
    );
    let err = store
        .set_member_role(
            acct,
            actor.user_id.unwrap(),
            AccessRole::Reader,
            &actor,
            NOW,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidState(_)));
}

async fn concurrent_decisions_one_winner(db: Db) {
    let (store, actor, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let a = store
        .create_app(&app(acct, "c", &[]), &approve_domains(), &actor, NOW)
        .await
        .unwrap();
    let b = store
        .create_build(&build(acct, a.app_id, "1"), &whitelist_image(), &actor, NOW)
        .await
        .unwrap();
    let task = b.pending_task_id.unwrap();
    let mut handles = Vec::new();
    for i in 0..8 {
        let (store, actor) = (store.clone(), actor.clone());
        let decision = if i % 2 == 0 {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::Denied
        };
        handles.push(tokio::spawn(async move {
            store
                .decide_task(
                    acct,
                    task,
                    verdict(decision, None, &image_effect(decision)),
                    &actor,
                    NOW,
                )
                .await
        }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::InvalidState(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
    let log = store.list_audit(None, 0, 1000).await.unwrap();
    verify_chain(&log, GENESIS_HASH.into(), 1).unwrap();
}

/// A request refused for want of evidence, as the manager records it.
/// Revoking a certificate (by hand, or by deleting its app) puts its key on the account's
/// revoked-key list; other accounts' lists are not affected.
async fn revocation_denies_keys(db: Db) {
    let (store, actor, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    let a = store
        .create_app(
            &app(acct, "flask", &["a.example"]),
            &approve_domains(),
            &actor,
            NOW,
        )
        .await
        .unwrap();
    let issued = |key: u8| IssuanceRecord {
        status: CertificateStatusType::Issued,
        task_status: TaskStatusType::Success,
        app_id: Some(a.app_id),
        cert_pem: Some("PEM".into()),
        serial: Some(format!("0{key}")),
        valid_from: Some(NOW),
        valid_until: Some(NOW + 1000),
        message: None,
        spki_sha256: Some([key; 32]),
        ..denied(acct, zone)
    };
    let (one, two) = (issued(1), issued(2));
    store
        .record_issuances(&[one.clone(), two.clone()], NOW)
        .await
        .unwrap();
    let revoked = |acct_id| {
        let store = store.clone();
        async move {
            let ask = |k: u8| ccm_store::LookupKey {
                task_id: Uuid::now_v7(),
                nonce: None,
                spki_sha256: Some([k; 32]),
            };
            let mut keys: Vec<u8> = store
                .issuance_lookup(acct_id, &[ask(1), ask(2), ask(3)])
                .await
                .unwrap()
                .revoked_keys
                .into_iter()
                .map(|k| k[0])
                .collect();
            keys.sort();
            keys
        }
    };
    assert!(revoked(acct).await.is_empty());
    store
        .revoke_certificate(acct, one.certificate_id, Some("stolen"), &actor, NOW + 1)
        .await
        .unwrap();
    assert_eq!(revoked(acct).await, [1]);
    assert!(revoked(Uuid::new_v4()).await.is_empty());
    store
        .delete_app(
            acct,
            a.app_id,
            &revoke("the app was deleted"),
            &actor,
            NOW + 2,
        )
        .await
        .unwrap();
    assert_eq!(revoked(acct).await, [1, 2]);

    // Certificates recorded before key hashes were: revoked ones are denied once their hash
    // is recorded, issued ones when revoked later; a CSR that does not parse leaves none.
    let old = |key: u8| IssuanceRecord {
        spki_sha256: None,
        ..issued(key)
    };
    let (revoked_old, issued_old, broken) = (old(3), old(4), old(5));
    store
        .record_issuances(
            &[revoked_old.clone(), issued_old.clone(), broken.clone()],
            NOW,
        )
        .await
        .unwrap();
    store
        .revoke_certificate(acct, revoked_old.certificate_id, None, &actor, NOW + 3)
        .await
        .unwrap();
    let mut todo = store.certificates_without_key_hash(100).await.unwrap();
    todo.sort();
    let mut expected = vec![
        revoked_old.certificate_id,
        issued_old.certificate_id,
        broken.certificate_id,
    ];
    expected.sort();
    assert_eq!(todo.iter().map(|t| t.0).collect::<Vec<_>>(), expected);
    for (id, _) in todo {
        let hash = if id == broken.certificate_id {
            None
        } else if id == revoked_old.certificate_id {
            Some([3; 32])
        } else {
            Some([4; 32])
        };
        store.set_key_hash(id, hash).await.unwrap();
    }
    assert!(
        store
            .certificates_without_key_hash(100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(revoked(acct).await, [1, 2, 3]);
    store
        .revoke_certificate(acct, issued_old.certificate_id, None, &actor, NOW + 4)
        .await
        .unwrap();
    store
        .revoke_certificate(acct, broken.certificate_id, None, &actor, NOW + 4)
        .await
        .unwrap();
    let lookup = store
        .issuance_lookup(
            acct,
            &[ccm_store::LookupKey {
                task_id: Uuid::now_v7(),
                nonce: None,
                spki_sha256: None,
            }],
        )
        .await
        .unwrap();
    assert!(lookup.revoked_keys.is_empty(), "no empty key is denied");
    let mut all: Vec<u8> = store
        .issuance_lookup(
            acct,
            &(1..=5u8)
                .map(|k| ccm_store::LookupKey {
                    task_id: Uuid::now_v7(),
                    nonce: None,
                    spki_sha256: Some([k; 32]),
                })
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap()
        .revoked_keys
        .into_iter()
        .map(|k| k[0])
        .collect();
    all.sort();
    assert_eq!(all, [1, 2, 3, 4]);
    store.close().await;
}

/// A POLICY_CHANGE task: proposed by an edit (the app keeps its settings and names the task),
/// applied by an approval with the decided effect, discarded by a denial; the store's effect by
/// type refuses it; one proposal at a time. The account's simulated trust is stored, audited and
/// read with the image lookup; a zone's simulated CA is stored once.
async fn policy_change_and_simulated_trust(db: Db) {
    use ccm_api::tasks::TaskType;
    let (store, actor, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let a = store
        .create_app(&app(acct, "flask", &[]), &approve_domains(), &actor, NOW)
        .await
        .unwrap();
    let weak = AdvancedSettings {
        allow_debug: true,
        allow_simulated: true,
        ..AdvancedSettings::default()
    };
    let propose = |task_id: Uuid, settings: AdvancedSettings| {
        move |mut x: App, approval: ApprovalPolicy| {
            assert_eq!(approval, ApprovalPolicy::Manual);
            x.advanced_settings = settings;
            x.threads = 64;
            Ok::<_, ()>(AppEdit {
                app: x,
                policy: PolicyEdit::Propose {
                    task_id,
                    description: "weaken".into(),
                },
            })
        }
    };
    let t1 = Uuid::new_v4();
    let edited = store
        .update_app(
            acct,
            a.app_id,
            &approve_domains(),
            &actor,
            NOW + 1,
            propose(t1, weak.clone()),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.advanced_settings, AdvancedSettings::default());
    assert_eq!(edited.threads, 64, "other fields apply at once");
    assert_eq!(edited.pending_policy_task_id, Some(t1));
    let task = store.get_task(acct, t1).await.unwrap().unwrap();
    assert_eq!(task.task_type, TaskType::PolicyChange);
    assert_eq!(task.status.status, TaskStatusType::Inprogress);
    assert_eq!(task.proposed_policy.as_ref(), Some(&weak));
    // A second proposal waits for the first.
    assert!(matches!(
        store
            .update_app(
                acct,
                a.app_id,
                &approve_domains(),
                &actor,
                NOW + 2,
                propose(
                    Uuid::new_v4(),
                    AdvancedSettings {
                        min_isvsvn: Some(3),
                        ..AdvancedSettings::default()
                    }
                )
            )
            .await,
        Err(Error::InvalidState(_))
    ));
    // The store never applies a policy change by itself.
    assert!(matches!(
        store
            .decide_task(
                acct,
                t1,
                verdict(
                    ApprovalStatus::Approved,
                    None,
                    &Effect::of([EffectStep::SetImageStatus(BuildStatusType::Whitelisted)])
                ),
                &actor,
                NOW + 3
            )
            .await,
        Err(Error::InvalidState(_))
    ));
    assert_eq!(
        store
            .get_task(acct, t1)
            .await
            .unwrap()
            .unwrap()
            .status
            .status,
        TaskStatusType::Inprogress,
        "a refused decision changes nothing"
    );
    let decided = store
        .decide_task(
            acct,
            t1,
            verdict(
                ApprovalStatus::Approved,
                None,
                &Effect::of([EffectStep::SetAppPolicy(weak.clone())]),
            ),
            &actor,
            NOW + 4,
        )
        .await
        .unwrap();
    assert_eq!(decided.status.status, TaskStatusType::Success);
    let now_app = store.get_app(acct, a.app_id).await.unwrap().unwrap();
    assert_eq!(now_app.advanced_settings, weak);
    assert_eq!(now_app.pending_policy_task_id, None);
    // A denied proposal leaves the policy as it was.
    let t2 = Uuid::new_v4();
    store
        .update_app(
            acct,
            a.app_id,
            &approve_domains(),
            &actor,
            NOW + 5,
            propose(t2, AdvancedSettings::default()),
        )
        .await
        .unwrap()
        .unwrap();
    store
        .decide_task(
            acct,
            t2,
            verdict(
                ApprovalStatus::Denied,
                Some("no"),
                &Effect::of([EffectStep::DiscardAppPolicy]),
            ),
            &actor,
            NOW + 6,
        )
        .await
        .unwrap();
    let now_app = store.get_app(acct, a.app_id).await.unwrap().unwrap();
    assert_eq!(now_app.advanced_settings, weak);
    assert_eq!(now_app.pending_policy_task_id, None);
    // A policy effect on another type of task is refused.
    let b = store
        .create_build(
            &build(acct, a.app_id, "1"),
            &whitelist_image(),
            &actor,
            NOW + 7,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .decide_task(
                acct,
                b.pending_task_id.unwrap(),
                verdict(
                    ApprovalStatus::Approved,
                    None,
                    &Effect::of([EffectStep::SetAppPolicy(weak.clone())])
                ),
                &actor,
                NOW + 8
            )
            .await,
        Err(Error::InvalidState(_))
    ));
    // An edit applied directly is audited as a policy change.
    store
        .update_app(
            acct,
            a.app_id,
            &approve_domains(),
            &actor,
            NOW + 9,
            |mut x, _| {
                x.advanced_settings.min_isvsvn = Some(2);
                Ok::<_, ()>(AppEdit {
                    app: x,
                    policy: PolicyEdit::Apply,
                })
            },
        )
        .await
        .unwrap()
        .unwrap();
    let log = store.list_audit(Some(acct), 0, 1000).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "app.policy_change_request")
            .count(),
        2
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "app.policy_change")
            .count(),
        2,
        "the approval and the direct edit"
    );
    assert!(actions.contains(&"task.deny"));

    // Simulated trust: off by default, read with the image.
    let mrenclave = "a".repeat(64);
    let (image, _) = store
        .image_with_app(acct, &mrenclave)
        .await
        .unwrap()
        .unwrap();
    assert!(!image.account_allows_simulated);
    assert!(!store.account_allows_simulated(acct).await.unwrap());
    let rec = store
        .update_account(acct, None, None, Some(true), &actor, NOW + 10)
        .await
        .unwrap();
    assert!(rec.allow_simulated);
    assert!(store.account_allows_simulated(acct).await.unwrap());
    let (image, _) = store
        .image_with_app(acct, &mrenclave)
        .await
        .unwrap()
        .unwrap();
    assert!(image.account_allows_simulated);
    let (rec, _) = store
        .account_for_user(acct, actor.user_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(rec.allow_simulated);

    // The zone's simulated CA: stored once, the first one kept.
    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    assert!(
        store.list_zones(acct).await.unwrap()[0]
            .zone
            .simulated_certificate
            .is_none()
    );
    let first = store
        .set_zone_sim_ca(acct, zone, "SIM1", &[7, 7], NOW)
        .await
        .unwrap();
    let second = store
        .set_zone_sim_ca(acct, zone, "SIM2", &[8], NOW)
        .await
        .unwrap();
    assert_eq!(first, ("SIM1".to_string(), vec![7, 7]));
    assert_eq!(second, first);
    let z = store.get_zone(acct, zone).await.unwrap().unwrap();
    assert_eq!(z.zone.simulated_certificate.as_deref(), Some("SIM1"));
    assert_eq!(z.sim_ca_key_sealed, Some(vec![7, 7]));
    let log = store.list_audit(None, 0, 1000).await.unwrap();
    verify_chain(&log, GENESIS_HASH.into(), 1).unwrap();
}

/// On PostgreSQL a running node's heartbeat (last seen, instance reports) appends nothing to the
/// audit log, so it does not queue behind writers: it completes while another transaction holds
/// the audit head's lock. A STOPPED node's heartbeat still records `node.running` in the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_heartbeats_do_not_queue_behind_writers() {
    use ccm_api::nodes::NodeStatusType;
    use sqlx::Connection as _;
    let db = common::pg();
    let (store, _, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    let node = Uuid::new_v4();
    let mut admin = sqlx::AnyConnection::connect(&db.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO nodes (node_id, acct_id, zone_id, name, status, created_at, \
         status_updated_at, attested_at, sgx_info, simulated, cert_pem, cert_serial, \
         cert_not_after) VALUES ($1, $2, $3, 'node-1', 'RUNNING', $4, $4, $4, '{}', 1, 'PEM', \
         '01', $5)",
    )
    .bind(node.to_string())
    .bind(acct.to_string())
    .bind(zone.to_string())
    .bind(NOW)
    .bind(NOW + 86_400)
    .execute(&mut admin)
    .await
    .unwrap();
    let records: Vec<IssuanceRecord> = (0..3)
        .map(|_| IssuanceRecord {
            node_id: node,
            ..denied(acct, zone)
        })
        .collect();
    store.record_issuances(&records, NOW).await.unwrap();
    let running: Vec<Uuid> = records.iter().map(|r| r.task_id).collect();

    let mut writer = admin.begin().await.unwrap();
    sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
        .execute(&mut *writer)
        .await
        .unwrap();
    let status = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        store.node_heartbeat(node, Some("9.9.9"), &running, NOW + 10),
    )
    .await
    .expect("the heartbeat waited for the audit head's lock")
    .unwrap();
    assert_eq!(status, Some(NodeStatusType::Running));
    writer.rollback().await.unwrap();
    for r in &records {
        let cert = store
            .get_certificate(Some(acct), r.certificate_id, NOW + 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cert.last_reported_at, Some(NOW + 10));
    }

    sqlx::query("UPDATE nodes SET status = 'STOPPED' WHERE node_id = $1")
        .bind(node.to_string())
        .execute(&mut admin)
        .await
        .unwrap();
    let status = store
        .node_heartbeat(node, None, &running, NOW + 20)
        .await
        .unwrap();
    assert_eq!(status, Some(NodeStatusType::Running));
    let log = store.list_audit(None, 0, 1000).await.unwrap();
    let running_again: Vec<_> = log.iter().filter(|e| e.action == "node.running").collect();
    assert_eq!(running_again.len(), 1, "{log:?}");
    verify_chain(&log, GENESIS_HASH.into(), 1).unwrap();
    assert_eq!(
        store
            .node_heartbeat(Uuid::new_v4(), None, &running, NOW + 30)
            .await
            .unwrap(),
        None,
        "an unknown node"
    );
    admin.close().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn rejects_unknown_database_urls() {
    let err = Store::connect("mysql://root:hunter2@db/x", &StoreOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("unsupported database URL") && !msg.contains("hunter2"),
        "{msg}"
    );
}

/// Upgrading a version-3 database (instance reports kept on the certificate rows) to the current
/// schema keeps every report and every certificate.
async fn upgrade_keeps_instance_reports(db: Db) {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let url = match &db {
        Db::Sqlite(_) => format!("{}?mode=rwc", db.url()),
        Db::Pg(_) => db.url(),
    };
    // The schema as version 3 left it: its migrations, from the same files.
    let v3 = tempfile::tempdir().unwrap();
    for m in [
        "0001_init.sql",
        "0002_nodes_certificates.sql",
        "0003_conversions.sql",
    ] {
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(m),
            v3.path().join(m),
        )
        .unwrap();
    }
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(v3.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    let acct = Uuid::new_v4();
    sqlx::query("INSERT INTO accounts (acct_id, name, approval_policy, created_at, updated_at) VALUES ($1, 'old', 'MANUAL', $2, $2)")
        .bind(acct.to_string())
        .bind(NOW)
        .execute(&mut conn)
        .await
        .unwrap();
    let (reported, silent) = (Uuid::new_v4(), Uuid::new_v4());
    for (id, last) in [(reported, Some(NOW - 5)), (silent, None)] {
        sqlx::query(
            "INSERT INTO certificates (certificate_id, task_id, acct_id, zone_id, node_id, status, \
             csr, quote, domains, debug, simulated, created_at, updated_at, last_reported_at) \
             VALUES ($1, $2, $3, $4, $5, 'ISSUED', 'CSR', $6, '[\"a.example\"]', 0, 1, $7, $7, $8)",
        )
        .bind(id.to_string())
        .bind(Uuid::new_v4().to_string())
        .bind(acct.to_string())
        .bind(Uuid::new_v4().to_string())
        .bind(Uuid::new_v4().to_string())
        .bind(vec![3u8; 16])
        .bind(NOW - 60)
        .bind(last)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let store = Store::connect(&db.url(), &StoreOptions::default())
        .await
        .unwrap();
    let cert = |id| {
        let store = &store;
        async move {
            store
                .get_certificate(Some(acct), id, NOW)
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert_eq!(cert(reported).await.last_reported_at, Some(NOW - 5));
    let silent = cert(silent).await;
    assert_eq!(silent.last_reported_at, None);
    assert_eq!(silent.csr, "CSR");
    assert_eq!(silent.status, CertificateStatusType::Issued);
    store.close().await;
}

/// On PostgreSQL the certificate chain and the quote are stored out of line without compression,
/// set once by the first start and left alone by the next.
#[tokio::test]
async fn postgres_stores_certificates_uncompressed() {
    use sqlx::Connection as _;
    let db = common::pg();
    for _ in 0..2 {
        Store::connect(&db.url(), &StoreOptions::default())
            .await
            .unwrap()
            .close()
            .await;
    }
    let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let storage: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, attstorage::text FROM pg_attribute \
         WHERE attrelid = 'certificates'::regclass AND attname IN ('cert_pem', 'quote', 'csr') \
         ORDER BY attname",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let storage: Vec<(&str, &str)> = storage
        .iter()
        .map(|(a, s)| (a.as_str(), s.as_str()))
        .collect();
    // `x` (extended: compressed, then out of line) is the default the CSR keeps.
    assert_eq!(storage, [("cert_pem", "e"), ("csr", "x"), ("quote", "e")]);
}

/// A status-like column refuses a value outside its enum, on insert and on update, and a second
/// start leaves the constraints as they are.
async fn statuses_outside_their_enum_are_refused(db: Db) {
    let (store, actor, acct_id) = setup(&db, ApprovalPolicy::Manual).await;
    store.close().await;
    // A second start finds every constraint in place and changes nothing.
    let store = Store::connect(&db.url(), &StoreOptions::default())
        .await
        .unwrap();
    store.close().await;
    let statements = [
        format!("UPDATE accounts SET approval_policy = 'LAX' WHERE acct_id = '{acct_id}'"),
        format!("UPDATE memberships SET role = 'OWNER' WHERE acct_id = '{acct_id}'"),
        format!(
            "INSERT INTO tasks (task_id, acct_id, entity_id, task_type, status, description, \
             requester_name, requester_type, domains_added, created_at, status_updated_at) \
             VALUES ('{}', '{acct_id}', 'x', 'BUILD_WHITELIST', 'APPROVED', 'd', 'n', 'USER', \
             '[]', 1, 1)",
            Uuid::new_v4()
        ),
    ];
    let errors: Vec<String> = match &db {
        Db::Sqlite(dir) => {
            let conn = rusqlite::Connection::open(dir.path().join("ccm.db")).unwrap();
            statements
                .iter()
                .map(|sql| conn.execute(sql, []).unwrap_err().to_string())
                .collect()
        }
        Db::Pg(_) => {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
            let mut errors = Vec::new();
            for sql in &statements {
                errors.push(
                    sqlx::query(sql)
                        .execute(&mut conn)
                        .await
                        .unwrap_err()
                        .to_string(),
                );
            }
            errors
        }
    };
    for (error, column) in errors.iter().zip([
        "ck_accounts_approval_policy_",
        "ck_memberships_role_",
        "ck_tasks_status_",
    ]) {
        assert!(error.contains(column), "{error}");
    }
    // The rows are as they were.
    let store = Store::connect(&db.url(), &StoreOptions::default())
        .await
        .unwrap();
    let (account, role) = store
        .account_for_user(acct_id, actor.user_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.approval_policy, ApprovalPolicy::Manual);
    assert_eq!(role, AccessRole::Manager);
    store.close().await;
}

/// A decision's effect is written with the decision in one transaction: an effect whose last
/// step does not fit the task's object changes nothing (not the image status its first step
/// set, not the certificates its second revoked, not the task, not the audit log); the fitting
/// effect then writes every step. A cascade given to a deletion is checked the same way.
async fn decided_effects_are_written_atomically(db: Db) {
    let (store, actor, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    let a = store
        .create_app(&app(acct, "flask", &[]), &approve_domains(), &actor, NOW)
        .await
        .unwrap();
    let b = store
        .create_build(&build(acct, a.app_id, "1"), &whitelist_image(), &actor, NOW)
        .await
        .unwrap();
    let cert = IssuanceRecord {
        status: CertificateStatusType::Issued,
        task_status: TaskStatusType::Success,
        app_id: Some(a.app_id),
        build_id: Some(b.build_id),
        cert_pem: Some("PEM".into()),
        serial: Some("0a".into()),
        valid_from: Some(NOW),
        valid_until: Some(NOW + 1000),
        message: None,
        spki_sha256: Some([9; 32]),
        ..denied(acct, zone)
    };
    store
        .record_issuances(std::slice::from_ref(&cert), NOW)
        .await
        .unwrap();
    let task = b.pending_task_id.unwrap();
    let audit_before = store.list_audit(Some(acct), 0, 1000).await.unwrap().len();
    let mut broken = image_effect(ApprovalStatus::Denied);
    broken.steps.push(EffectStep::DiscardAppPolicy);
    let err = store
        .decide_task(
            acct,
            task,
            verdict(ApprovalStatus::Denied, None, &broken),
            &actor,
            NOW + 1,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidState(_)), "{err}");
    let image = store.get_build(acct, b.build_id).await.unwrap().unwrap();
    assert_eq!(image.status.status, BuildStatusType::Pending);
    let c = store
        .get_certificate(Some(acct), cert.certificate_id, NOW + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, CertificateStatusType::Issued);
    let t = store.get_task(acct, task).await.unwrap().unwrap();
    assert_eq!(t.status.status, TaskStatusType::Inprogress);
    assert!(t.approvals.is_empty());
    assert_eq!(
        store.list_audit(Some(acct), 0, 1000).await.unwrap().len(),
        audit_before
    );

    let effect = image_effect(ApprovalStatus::Denied);
    let t = store
        .decide_task(
            acct,
            task,
            verdict(ApprovalStatus::Denied, Some("no"), &effect),
            &actor,
            NOW + 2,
        )
        .await
        .unwrap();
    assert_eq!(t.status.status, TaskStatusType::Denied);
    let image = store.get_build(acct, b.build_id).await.unwrap().unwrap();
    assert_eq!(image.status.status, BuildStatusType::Rejected);
    assert_eq!(image.pending_task_id, None);
    let c = store
        .get_certificate(Some(acct), cert.certificate_id, NOW + 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, CertificateStatusType::Revoked);
    assert_eq!(c.message.as_deref(), Some("the image was rejected"));

    // A deletion's cascade that does not fit its object deletes nothing.
    let misfit =
        ccm_store::Effect::of([EffectStep::RejectCertificateRequest { reason: "x".into() }]);
    let err = store
        .delete_app(acct, a.app_id, &misfit, &actor, NOW + 3)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidState(_)), "{err}");
    assert!(store.get_app(acct, a.app_id).await.unwrap().is_some());
    store.close().await;
}
