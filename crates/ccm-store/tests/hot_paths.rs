//! The store's hot paths (`src/hot`: the issuance writer thread, the SQLite and PostgreSQL read
//! connections of the issuance path) on a real SQLite file and a real PostgreSQL. Each test
//! that asks what a path does runs on both databases (`both!`); the tests named after one
//! database check a mechanism only it has (SQLite's write-ahead log, PostgreSQL's server ending
//! sessions, replicas, a connection cut mid-commit).
// Shared test functions abort the test with the reason when a step fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use ccm_api::accounts::ApprovalPolicy;
use ccm_api::audit::{GENESIS_HASH, verify_chain};
use ccm_api::builds::BuildStatusType;
use ccm_api::collateral::{CollateralSource, PckCaType, TcbUpdate, TeeType};
use ccm_api::tasks::ApprovalStatus;
use ccm_store::{
    CollateralAges, CollateralKey, IssuanceRecord, NewCollateral, Store, StoreOptions,
};
use common::{
    Db, NOW, app, approve_domains, build, denied, image_effect, setup, verdict, whitelist_image,
};
use uuid::Uuid;

both!(
    issuance_batch_refused_whole,
    concurrent_batches_one_refused,
    issuance_conflicts_are_reported,
    issuance_reads,
    node_certificate_read,
);

/// A batch that cannot be written (here: its account does not exist) is refused whole with the
/// database's reason and leaves no trace; a closed store refuses batches.
async fn issuance_batch_refused_whole(db: Db) {
    let (store, _, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    let record = |acct_id| denied(acct_id, zone);
    let audit_before = store.list_audit(None, 0, 1000).await.unwrap();
    let err = store
        .record_issuances(&[record(acct), record(Uuid::new_v4())], NOW)
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("foreign key"),
        "{err}"
    );
    assert_eq!(store.list_audit(None, 0, 1000).await.unwrap(), audit_before);
    // The writer goes on after a failed batch.
    store.record_issuances(&[record(acct)], NOW).await.unwrap();
    let log = store.list_audit(None, 0, 1000).await.unwrap();
    assert_eq!(log.len(), audit_before.len() + 1);
    verify_chain(&log, GENESIS_HASH.into(), 1).unwrap();
    store.close().await;
    assert!(store.record_issuances(&[record(acct)], NOW).await.is_err());
}

/// Batches written at the same time are committed together; one that cannot be written is
/// refused alone, and the others are written with their audit entries, chained in order.
async fn concurrent_batches_one_refused(db: Db) {
    let (store, _, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    let audit_before = store.list_audit(None, 0, 1000).await.unwrap().len();
    let batches: Vec<Vec<IssuanceRecord>> = (0..24)
        .map(|i| {
            let owner = if i == 7 { Uuid::new_v4() } else { acct };
            (0..3).map(|_| denied(owner, zone)).collect()
        })
        .collect();
    let writes: Vec<_> = batches
        .iter()
        .map(|b| {
            let store = store.clone();
            let b = b.clone();
            tokio::spawn(async move { store.record_issuances(&b, NOW).await })
        })
        .collect();
    let mut results = Vec::new();
    for w in writes {
        results.push(w.await.unwrap().is_ok());
    }
    let expected: Vec<bool> = (0..24).map(|i| i != 7).collect();
    assert_eq!(results, expected);
    let log = store.list_audit(None, 0, 1000).await.unwrap();
    assert_eq!(log.len(), audit_before + 23 * 3);
    verify_chain(&log, GENESIS_HASH.into(), 1).unwrap();
    let asked: Vec<Uuid> = batches.iter().flatten().map(|r| r.task_id).collect();
    let written = store.used_task_ids(&asked).await.unwrap();
    let expected: std::collections::HashSet<Uuid> = batches
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7)
        .flat_map(|(_, b)| b.iter().map(|r| r.task_id))
        .collect();
    assert_eq!(written, expected);
    store.close().await;
}

/// A record that stored its nonce (as a request with a fresh nonce does).
fn with_nonce(acct_id: Uuid, zone_id: Uuid, nonce: u8) -> IssuanceRecord {
    IssuanceRecord {
        nonce: Some([nonce; 32]),
        ..denied(acct_id, zone_id)
    }
}

/// A task id or nonce another request stored first is not written again, alone or in a batch
/// (and nothing of it: no task, no audit entry); the store says which requests it skipped,
/// also when the requests race.
async fn issuance_conflicts_are_reported(db: Db) {
    let (store, _, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    let first = with_nonce(acct, zone, 1);
    assert!(
        store
            .record_issuances(std::slice::from_ref(&first), NOW)
            .await
            .unwrap()
            .is_empty()
    );
    let audit_before = store.list_audit(None, 0, 1000).await.unwrap().len();
    // Same task id; same nonce under a new task id; and a new request in the same batch.
    let same_task = IssuanceRecord {
        certificate_id: Uuid::now_v7(),
        nonce: Some([2; 32]),
        ..first.clone()
    };
    let same_nonce = with_nonce(acct, zone, 1);
    let new = with_nonce(acct, zone, 3);
    let skipped = store
        .record_issuances(&[same_task.clone(), new.clone(), same_nonce.clone()], NOW)
        .await
        .unwrap();
    assert_eq!(skipped, [same_task.task_id, same_nonce.task_id]);
    let log = store.list_audit(None, 0, 1000).await.unwrap();
    assert_eq!(
        log.len(),
        audit_before + 1,
        "only the new request is audited"
    );
    verify_chain(&log, GENESIS_HASH.into(), 1).unwrap();
    let used = store
        .used_task_ids(&[same_nonce.task_id, new.task_id])
        .await
        .unwrap();
    assert_eq!(
        used,
        [new.task_id].into_iter().collect(),
        "no task for the skipped"
    );
    let lookup = store
        .issuance_lookup(
            acct,
            &[ccm_store::LookupKey {
                task_id: Uuid::now_v7(),
                nonce: Some([1; 32]),
                spki_sha256: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(lookup.used_nonces, [[1; 32]].into_iter().collect());

    // Racing: eight writers with one task id, each its own nonce; and eight with one nonce.
    let task = Uuid::now_v7();
    let racers: Vec<_> = (0..16u8)
        .map(|i| {
            let store = store.clone();
            let mut r = with_nonce(acct, zone, 10 + i);
            if i < 8 {
                r.task_id = task;
            } else {
                r.nonce = Some([99; 32]);
            }
            tokio::spawn(async move { store.record_issuances(&[r], NOW).await.unwrap() })
        })
        .collect();
    let mut written = 0;
    for r in racers {
        if r.await.unwrap().is_empty() {
            written += 1;
        }
    }
    assert_eq!(written, 2, "one per task id, one per nonce");
    let log = store.list_audit(None, 0, 1000).await.unwrap();
    assert_eq!(log.len(), audit_before + 3);
    verify_chain(&log, GENESIS_HASH.into(), 1).unwrap();
    store.close().await;
}

/// The reads of every issuance batch (on SQLite they run on their own connections): the image
/// a MRENCLAVE names with its app, whitelisted images first, only in the node's account; and
/// which task ids are used, across more ids than one statement takes.
async fn issuance_reads(db: Db) {
    let (store, actor, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let a = store
        .create_app(
            &app(acct, "flask", &["a.example"]),
            &approve_domains(),
            &actor,
            NOW,
        )
        .await
        .unwrap();
    let mrenclave = "a".repeat(64);
    assert_eq!(store.image_with_app(acct, &mrenclave).await.unwrap(), None);
    let older = store
        .create_build(&build(acct, a.app_id, "1"), &whitelist_image(), &actor, NOW)
        .await
        .unwrap();
    let newer = store
        .create_build(
            &build(acct, a.app_id, "2"),
            &whitelist_image(),
            &actor,
            NOW + 1,
        )
        .await
        .unwrap();
    let (image, found_app) = store
        .image_with_app(acct, &mrenclave)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (image.build_id, image.status, image.image.as_str()),
        (
            newer.build_id,
            BuildStatusType::Pending,
            "registry.example/flask-sgx:2"
        ),
        "of pending images, the newest"
    );
    let stored_app = store.get_app(acct, a.app_id).await.unwrap();
    assert_eq!(found_app, stored_app);
    assert_eq!(
        (image.app_id, image.mrsigner, image.isvprodid, image.isvsvn),
        (a.app_id, "b".repeat(64), 1, 2)
    );
    store
        .decide_task(
            acct,
            older.pending_task_id.unwrap(),
            verdict(
                ApprovalStatus::Approved,
                None,
                &image_effect(ApprovalStatus::Approved),
            ),
            &actor,
            NOW + 2,
        )
        .await
        .unwrap();
    let (image, _) = store
        .image_with_app(acct, &mrenclave)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (image.build_id, image.status),
        (older.build_id, BuildStatusType::Whitelisted),
        "a whitelisted image before a newer pending one"
    );
    assert_eq!(
        store
            .image_with_app(Uuid::new_v4(), &mrenclave)
            .await
            .unwrap(),
        None,
        "another account's image is not found"
    );
    assert_eq!(
        store.image_with_app(acct, &"c".repeat(64)).await.unwrap(),
        None
    );

    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    let records: Vec<IssuanceRecord> = (0..3).map(|_| denied(acct, zone)).collect();
    store.record_issuances(&records, NOW).await.unwrap();
    let mut asked: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    asked[3] = records[0].task_id;
    asked[90] = records[2].task_id;
    let used = store.used_task_ids(&asked).await.unwrap();
    assert_eq!(
        used,
        [records[0].task_id, records[2].task_id]
            .into_iter()
            .collect()
    );
    assert!(store.used_task_ids(&[]).await.unwrap().is_empty());
    store.close().await;
    assert!(store.image_with_app(acct, &mrenclave).await.is_err());
}

/// The node certificate read of every node request: the certificate's record with its node, the
/// node absent once deleted (the certificate is not), nothing for an unknown serial; closing the
/// store ends the reads.
async fn node_certificate_read(db: Db) {
    use ccm_api::nodes::NodeStatusType;
    use sqlx::Connection as _;
    let (store, _, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    let node = Uuid::new_v4();
    let sgx = serde_json::json!({
        "fmspc": "00906ED50000",
        "tcb_status": "UpToDate",
        "advisory_ids": [],
        "tcb_date": "2024-03-13T00:00:00Z",
        "ppid_hash": "c".repeat(64),
        "simulated": true,
        "root_fingerprint": "d".repeat(64),
    });
    let mut admin = sqlx::AnyConnection::connect(&db.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO nodes (node_id, acct_id, zone_id, name, status, created_at, \
         status_updated_at, attested_at, sgx_info, simulated, cert_pem, cert_serial, \
         cert_not_after) VALUES ($1, $2, $3, 'node-1', 'RUNNING', $4, $4, $4, $5, 1, 'PEM', \
         '0a1b', $6)",
    )
    .bind(node.to_string())
    .bind(acct.to_string())
    .bind(zone.to_string())
    .bind(NOW)
    .bind(sgx.to_string())
    .bind(NOW + 86_400)
    .execute(&mut admin)
    .await
    .unwrap();
    for (serial, revoked_at) in [("0a1b", None), ("0a1a", Some(NOW - 5))] {
        sqlx::query(
            "INSERT INTO node_certs (serial, node_id, zone_id, not_after, revoked_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(serial)
        .bind(node.to_string())
        .bind(zone.to_string())
        .bind(NOW + 86_400)
        .bind(revoked_at)
        .execute(&mut admin)
        .await
        .unwrap();
    }
    let (cert, auth) = store.node_cert_auth("0a1b").await.unwrap().unwrap();
    assert_eq!(
        (cert.node_id, cert.zone_id, cert.not_after, cert.revoked_at),
        (node, zone, NOW + 86_400, None)
    );
    let auth = auth.expect("the node is there");
    assert_eq!(
        (auth.node_id, auth.acct_id, auth.zone_id, auth.name.as_str()),
        (node, acct, zone, "node-1")
    );
    assert_eq!(auth.status, NodeStatusType::Running);
    assert!(auth.sgx_info.simulated);
    let (old, _) = store.node_cert_auth("0a1a").await.unwrap().unwrap();
    assert_eq!(old.revoked_at, Some(NOW - 5));
    assert_eq!(store.node_cert_auth("ffff").await.unwrap(), None);
    admin.close().await.unwrap();
    store.close().await;
    assert!(store.node_cert_auth("0a1b").await.is_err());
}

/// The store's own PostgreSQL connections (the issuance writer's, the hot-path reads', the
/// pool's) outlive the server ending their sessions, as a restart does: the next reads and
/// issuance batch succeed on new connections, with nothing lost or written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_ended_by_the_server_are_replaced() {
    use sqlx::Connection as _;
    let db = common::pg();
    let (store, _, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    let first: Vec<IssuanceRecord> = (0..2).map(|_| denied(acct, zone)).collect();
    store.record_issuances(&first, NOW).await.unwrap();
    let ids: Vec<Uuid> = first.iter().map(|r| r.task_id).collect();
    assert_eq!(store.used_task_ids(&ids).await.unwrap().len(), 2);
    assert_eq!(
        store.image_with_app(acct, &"a".repeat(64)).await.unwrap(),
        None
    );

    let mut admin = sqlx::AnyConnection::connect(&db.url()).await.unwrap();
    let ended: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    // The pool's, the reads' and the writer's.
    assert!(ended.len() >= 3, "{ended:?}");
    admin.close().await.unwrap();

    assert_eq!(store.used_task_ids(&ids).await.unwrap().len(), 2);
    assert_eq!(
        store.image_with_app(acct, &"a".repeat(64)).await.unwrap(),
        None
    );
    let second: Vec<IssuanceRecord> = (0..2).map(|_| denied(acct, zone)).collect();
    store.record_issuances(&second, NOW).await.unwrap();
    let log = store.list_audit(None, 0, 1000).await.unwrap();
    let issued = log
        .iter()
        .filter(|e| e.action == "certificate.deny")
        .count();
    assert_eq!(issued, 4, "each batch's entries once");
    verify_chain(&log, GENESIS_HASH.into(), 1).unwrap();
    store.close().await;
}

/// Two replicas on one PostgreSQL database issue side by side while approvals-style writes
/// (an app created) append to the same audit chain: each issuance writer's one-statement
/// commit finds the head moved by the others now and then and takes the locked way; every
/// entry is written once and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_issue_side_by_side() {
    let db = common::pg();
    let (a, actor, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let b = Store::connect(&db.url(), &StoreOptions::default())
        .await
        .unwrap();
    let zone = a.list_zones(acct).await.unwrap()[0].zone.zone_id;
    let issue = |store: Store| async move {
        for _ in 0..20 {
            let records: Vec<IssuanceRecord> = (0..3).map(|_| denied(acct, zone)).collect();
            store.record_issuances(&records, NOW).await.unwrap();
        }
    };
    let other = {
        let (a, actor) = (a.clone(), actor.clone());
        async move {
            for i in 0..10 {
                a.create_app(
                    &app(acct, &format!("app-{i}"), &["a.example"]),
                    &approve_domains(),
                    &actor,
                    NOW,
                )
                .await
                .unwrap();
            }
        }
    };
    tokio::join!(issue(a.clone()), issue(b.clone()), issue(a.clone()), other);
    let log = a.list_audit(None, 0, 10_000).await.unwrap();
    let denials = log
        .iter()
        .filter(|e| e.action == "certificate.deny")
        .count();
    assert_eq!(denials, 3 * 20 * 3);
    verify_chain(&log, GENESIS_HASH.into(), 1).unwrap();
    b.close().await;
    a.close().await;
}

/// What [`cutting_proxy`] does with the client message that carries its needle.
#[derive(Clone, Copy, PartialEq)]
enum Cut {
    /// Drops it and closes the connection: the server never sees it.
    Before,
    /// Passes it on, lets the server run it, and closes the connection before the answer.
    After,
}

/// A TCP proxy to the PostgreSQL server at `upstream` (`host:port`) that cuts, once, the
/// connection whose client sends `needle` (as a parameter's bytes, say); answers the proxy's
/// address and whether the cut happened.
async fn cutting_proxy(
    upstream: String,
    needle: &'static [u8],
    cut: Cut,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let cut_done = done.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let done = cut_done.clone();
            tokio::spawn(async move {
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                // Once cutting, the server's next answer is not passed on: the client's side
                // closes when the server's does.
                let cutting = Arc::new(AtomicBool::new(false));
                let stop = cutting.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                        if stop.load(Ordering::SeqCst)
                            || to_client.write_all(&buf[..n]).await.is_err()
                        {
                            break;
                        }
                    }
                });
                let mut buf = vec![0u8; 1 << 16];
                let mut window: Vec<u8> = Vec::new();
                while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                    window.extend_from_slice(&buf[..n]);
                    let hit = window.windows(needle.len()).any(|w| w == needle);
                    if hit && !done.swap(true, Ordering::SeqCst) {
                        cutting.store(true, Ordering::SeqCst);
                        if cut == Cut::After {
                            to_server.write_all(&buf[..n]).await.unwrap();
                            // Time for the server to run (and commit) it.
                            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        }
                        return;
                    }
                    window.drain(..window.len().saturating_sub(needle.len()));
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, done)
}

/// The issuance writer's one-statement commit on PostgreSQL, when the connection fails before
/// its answer: whether the statement committed or never arrived, the group is written exactly
/// once and the caller is told it is written.
async fn issuance_write_cut_off(cut: Cut) {
    let db = common::pg();
    let Db::Pg(test_db) = &db else { unreachable!() };
    let rest = test_db.url.split_once("127.0.0.1:").unwrap().1;
    let port = rest.split_once('/').unwrap().0;
    let needle: &'static [u8] = match cut {
        Cut::Before => b"CSR-cut-before",
        Cut::After => b"CSR-cut-after",
    };
    let (proxy, done) = cutting_proxy(format!("127.0.0.1:{port}"), needle, cut).await;
    let url = test_db
        .url
        .replace(&format!("127.0.0.1:{port}"), &proxy.to_string());
    let (_, _, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    // The first group takes the locked way and leaves the writer knowing the head; the second
    // goes as one statement, which the proxy cuts off.
    let first: Vec<IssuanceRecord> = (0..2).map(|_| denied(acct, zone)).collect();
    store.record_issuances(&first, NOW).await.unwrap();
    let second: Vec<IssuanceRecord> = (0..3)
        .map(|_| IssuanceRecord {
            csr: String::from_utf8(needle.to_vec()).unwrap(),
            ..denied(acct, zone)
        })
        .collect();
    store.record_issuances(&second, NOW).await.unwrap();
    assert!(
        done.load(std::sync::atomic::Ordering::SeqCst),
        "the one-statement commit was not sent"
    );
    let third: Vec<IssuanceRecord> = (0..2).map(|_| denied(acct, zone)).collect();
    store.record_issuances(&third, NOW).await.unwrap();

    let ids: Vec<Uuid> = first
        .iter()
        .chain(&second)
        .chain(&third)
        .map(|r| r.task_id)
        .collect();
    assert_eq!(store.used_task_ids(&ids).await.unwrap().len(), 7);
    let log = store.list_audit(None, 0, 1000).await.unwrap();
    let denials: Vec<_> = log
        .iter()
        .filter(|e| e.action == "certificate.deny")
        .collect();
    assert_eq!(denials.len(), 7, "each entry once");
    verify_chain(&log, GENESIS_HASH.into(), 1).unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_issuance_write_cut_off_after_commit_is_not_written_twice() {
    issuance_write_cut_off(Cut::After).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_issuance_write_cut_off_before_the_server_is_written() {
    issuance_write_cut_off(Cut::Before).await
}

/// The size of an SQLite store's write-ahead log.
fn wal_size(db: &Db) -> u64 {
    let Db::Sqlite(dir) = db else { unreachable!() };
    std::fs::metadata(dir.path().join("ccm.db-wal")).map_or(0, |m| m.len())
}

/// Checks the largest write-ahead log seen while ~50 MB went through it: without the
/// checkpointer it would hold them all.
fn assert_wal_bounded(largest: u64) {
    assert!(largest > 0, "no write-ahead log");
    assert!(
        largest < 32 << 20,
        "the write-ahead log grew to {largest} bytes"
    );
}

const AGES: CollateralAges = CollateralAges {
    tcb_evaluation_data_number: 17,
    qe_evaluation_data_number: 17,
    tcb_info_issued: NOW,
    qe_identity_issued: NOW,
    pck_crl_issued: NOW,
    root_crl_issued: NOW,
};

fn collateral_key(fmspc: &str) -> CollateralKey {
    CollateralKey {
        root_fingerprint: "00".into(),
        fmspc: fmspc.into(),
        ca_type: PckCaType::Processor,
        tee: TeeType::Sgx,
        update: TcbUpdate::Standard,
    }
}

/// SQLite's automatic checkpoints are off (they stall the commit that triggers them); the
/// store's background checkpoints must still keep the write-ahead log bounded while writes keep
/// coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_bounded_under_sustained_writes() {
    let db = common::sqlite();
    let (store, _, _) = setup(&db, ApprovalPolicy::Manual).await;
    let blob = "x".repeat(64 * 1024);
    let mut largest = 0;
    for i in 0..800u32 {
        let key = collateral_key(&format!("{i:012x}"));
        let offered = NewCollateral {
            key: &key,
            collateral: &blob,
            ages: AGES,
            valid_until: NOW + 86_400,
            simulated: true,
            source: CollateralSource::Upload,
            actor: &ccm_store::Actor::system(),
            now: NOW,
        };
        assert!(store.put_collateral_if_newer(&offered).await.unwrap());
        largest = largest.max(wal_size(&db));
    }
    assert_wal_bounded(largest);
    // Everything written is there.
    let last = store
        .collateral_set(&collateral_key("00000000031f"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.collateral.len(), blob.len());
    store.close().await;
}

/// The same with issuance batches, which the dedicated writer thread commits (and where the
/// log is made to start over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_bounded_under_sustained_issuance() {
    let db = common::sqlite();
    let (store, _, acct) = setup(&db, ApprovalPolicy::Manual).await;
    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    let csr = "C".repeat(48 * 1024);
    let mut largest = 0;
    for _ in 0..100 {
        let batch: Vec<IssuanceRecord> = (0..8)
            .map(|_| IssuanceRecord {
                csr: csr.clone(),
                quote: vec![7; 16 * 1024],
                ..denied(acct, zone)
            })
            .collect();
        store.record_issuances(&batch, NOW).await.unwrap();
        largest = largest.max(wal_size(&db));
        // Writes at the pace of issuance, so that the checkpointer runs in between.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_wal_bounded(largest);
    let audit = store.list_audit(None, 0, 1000).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "certificate.deny")
            .count(),
        800
    );
    store.close().await;
}
