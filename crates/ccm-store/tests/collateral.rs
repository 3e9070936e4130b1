//! Collateral sets only ever move forward, on both databases and under concurrent offers; a
//! lease has one holder at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use ccm_api::collateral::{CollateralSource, PckCaType, TcbUpdate, TeeType};
use ccm_store::{Actor, CollateralAges, CollateralKey, NewCollateral, Store};
use common::{Db, NOW, connect};

both!(
    only_a_newer_set_replaces_the_current_one,
    keys_are_independent,
    concurrent_offers_leave_the_newest,
    a_lease_has_one_holder_until_it_expires,
    domains_refuse_unknown_spellings
);

fn key(fmspc: &str) -> CollateralKey {
    CollateralKey {
        root_fingerprint: "ab".repeat(32),
        fmspc: fmspc.into(),
        ca_type: PckCaType::Processor,
        tee: TeeType::Sgx,
        update: TcbUpdate::Standard,
    }
}

/// Ages of a set with evaluation number `eval`, every part issued at `issued`.
fn ages(eval: i64, issued: i64) -> CollateralAges {
    CollateralAges {
        tcb_evaluation_data_number: eval,
        qe_evaluation_data_number: eval,
        tcb_info_issued: issued,
        qe_identity_issued: issued,
        pck_crl_issued: issued,
        root_crl_issued: issued,
    }
}

/// Offers a set whose text is `text`; returns whether it became current.
async fn offer(store: &Store, key: &CollateralKey, text: &str, ages: CollateralAges) -> bool {
    store
        .put_collateral_if_newer(&NewCollateral {
            key,
            collateral: text,
            ages,
            valid_until: ages.tcb_info_issued + 30 * 86_400,
            simulated: true,
            source: CollateralSource::Pccs,
            actor: &Actor::system(),
            now: NOW,
        })
        .await
        .unwrap()
}

async fn current(store: &Store, key: &CollateralKey) -> String {
    store.collateral_set(key).await.unwrap().unwrap().collateral
}

async fn only_a_newer_set_replaces_the_current_one(db: Db) {
    let store = connect(&db).await;
    let k = key("00906ed50000");
    assert!(store.collateral_set(&k).await.unwrap().is_none());
    assert!(offer(&store, &k, "first", ages(17, NOW)).await);

    // The same ages again: nothing changes (not even the text).
    assert!(!offer(&store, &k, "same-ages", ages(17, NOW)).await);
    // Re-signed a day later, same evaluation number: newer.
    assert!(offer(&store, &k, "re-signed", ages(17, NOW + 86_400)).await);
    // Older in every part.
    assert!(!offer(&store, &k, "older", ages(17, NOW)).await);
    // A lower evaluation number issued later (from before a TCB recovery, re-signed): refused.
    assert!(!offer(&store, &k, "before-recovery", ages(16, NOW + 2 * 86_400)).await);
    // Mixed: a newer PCK CRL with an older TCB info.
    let mut mixed = ages(17, NOW + 86_400);
    mixed.pck_crl_issued += 3_600;
    mixed.tcb_info_issued -= 3_600;
    assert!(!offer(&store, &k, "mixed", mixed).await);
    assert_eq!(current(&store, &k).await, "re-signed");

    // A TCB recovery: a higher evaluation number.
    assert!(offer(&store, &k, "recovered", ages(18, NOW + 3 * 86_400)).await);
    let rec = store.collateral_set(&k).await.unwrap().unwrap();
    assert_eq!(rec.collateral, "recovered");
    assert_eq!(rec.ages, ages(18, NOW + 3 * 86_400));
    assert_eq!(rec.source, CollateralSource::Pccs);
    assert_eq!(rec.last_error, None);

    // Failed attempts are noted and cleared by the next set that becomes current.
    store
        .note_collateral_attempt(&k, NOW + 10, Some("upstream down"))
        .await
        .unwrap();
    let rec = store.collateral_set(&k).await.unwrap().unwrap();
    assert_eq!(rec.last_attempt_at, Some(NOW + 10));
    assert_eq!(rec.last_error.as_deref(), Some("upstream down"));
    assert!(offer(&store, &k, "later", ages(18, NOW + 4 * 86_400)).await);
    let rec = store.collateral_set(&k).await.unwrap().unwrap();
    assert_eq!(rec.last_error, None);
    store.close().await;
}

async fn keys_are_independent(db: Db) {
    let store = connect(&db).await;
    let processor = key("00906ed50000");
    let platform = CollateralKey {
        ca_type: PckCaType::Platform,
        ..processor.clone()
    };
    let early = CollateralKey {
        update: TcbUpdate::Early,
        ..processor.clone()
    };
    assert!(offer(&store, &processor, "processor", ages(18, NOW)).await);
    // A lower evaluation number under another key is that key's first set.
    assert!(offer(&store, &platform, "platform", ages(17, NOW)).await);
    assert!(offer(&store, &early, "early", ages(19, NOW)).await);
    let all = store.collateral_sets().await.unwrap();
    let texts: Vec<&str> = all.iter().map(|r| r.collateral.as_str()).collect();
    assert_eq!(texts.len(), 3);
    assert!(texts.contains(&"processor") && texts.contains(&"platform"));
    assert_eq!(current(&store, &early).await, "early");
    store.close().await;
}

async fn concurrent_offers_leave_the_newest(db: Db) {
    let store = connect(&db).await;
    let k = key("00606a000000");
    let mut tasks = Vec::new();
    for i in 0..16i64 {
        let (store, k) = (store.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            offer(&store, &k, &format!("set-{i}"), ages(10 + i % 4, NOW + i)).await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // The highest evaluation number (13) with the latest date among its offers (i = 15).
    assert_eq!(current(&store, &k).await, "set-15");
    store.close().await;
}

async fn a_lease_has_one_holder_until_it_expires(db: Db) {
    let store = connect(&db).await;
    assert!(store.try_lease("refresh", "a", NOW, 60).await.unwrap());
    assert!(!store.try_lease("refresh", "b", NOW + 30, 60).await.unwrap());
    // The holder renews it.
    assert!(store.try_lease("refresh", "a", NOW + 50, 60).await.unwrap());
    assert!(
        !store
            .try_lease("refresh", "b", NOW + 100, 60)
            .await
            .unwrap()
    );
    // Expired (renewed until NOW + 110): the next asker takes it.
    assert!(
        store
            .try_lease("refresh", "b", NOW + 111, 60)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_lease("refresh", "a", NOW + 112, 60)
            .await
            .unwrap()
    );
    // Another lease is independent.
    assert!(store.try_lease("other", "a", NOW + 112, 60).await.unwrap());
    store.close().await;
}

async fn domains_refuse_unknown_spellings(db: Db) {
    let store = connect(&db).await;
    assert!(offer(&store, &key("00906ed50000"), "x", ages(1, NOW)).await);
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url())
        .await
        .unwrap();
    for (column, value) in [
        ("ca_type", "PROCESSOR"),
        ("tee", "sev"),
        ("tcb_update", "later"),
        ("source", "rumour"),
    ] {
        let sql = format!("UPDATE collateral_sets SET {column} = '{value}'");
        let err = sqlx::query(&sql).execute(&mut conn).await.unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("ck_collateral_sets_{column}")),
            "{column}: {err}"
        );
    }
    store.close().await;
}
