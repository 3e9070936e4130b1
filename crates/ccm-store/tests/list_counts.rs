//! The counts list pages report (`total_count`, `filtered_count`), kept by triggers in
//! `list_counts`, against counting the rows themselves: after the store's own writes, after SQL
//! written by hand, after cascading deletes, and after the triggers are replaced (a recount).
// Shared test functions abort the test with the reason when a step fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::BTreeMap;

use ccm_api::accounts::ApprovalPolicy;
use ccm_api::apps::App;
use ccm_api::builds::BuildStatusType;
use ccm_api::tasks::{ApprovalStatus, TaskStatusType, TaskType};
use ccm_store::{Actor, BuildFilter, PageRequest, Store, TaskFilter};
use common::{
    Db, NOW, app, approve_domains, build, connect, denied, domain_effect, setup, verdict,
    whitelist_image,
};
use sqlx::Connection as _;
use uuid::Uuid;

both!(
    counts_follow_every_write,
    counts_are_rebuilt_with_new_triggers
);

/// What each counted list counts: (list, table, scope column, facet columns).
const LISTS: &[(&str, &str, Option<&str>, &[&str])] = &[
    ("apps", "apps", Some("acct_id"), &[]),
    ("tasks", "tasks", Some("acct_id"), &["status", "task_type"]),
    ("builds", "builds", Some("acct_id"), &["status", "app_id"]),
    ("nodes", "nodes", Some("acct_id"), &[]),
    (
        "certificates",
        "certificates",
        Some("acct_id"),
        &["app_id", "node_id"],
    ),
    ("members", "memberships", Some("acct_id"), &[]),
    ("accounts", "memberships", Some("user_id"), &[]),
    ("users", "users", None, &[]),
];

type Counts = BTreeMap<(String, String, String), i64>;

/// Counts every list by counting its rows, as `list_counts` should hold them (no zeros).
async fn truth(conn: &mut sqlx::AnyConnection) -> Counts {
    let mut out = Counts::new();
    for (list, table, scope, facets) in LISTS {
        let group = scope.map(|s| format!(" GROUP BY {s}")).unwrap_or_default();
        let scope = scope.unwrap_or("''");
        let rows: Vec<(String, i64)> =
            sqlx::query_as(&format!("SELECT {scope}, COUNT(*) FROM {table}{group}"))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        for (s, n) in rows.into_iter().filter(|r| r.1 != 0) {
            out.insert((list.to_string(), s, String::new()), n);
        }
        for f in *facets {
            let group = match scope {
                "''" => format!("GROUP BY {f}"),
                s => format!("GROUP BY {s}, {f}"),
            };
            let rows: Vec<(String, String, i64)> = sqlx::query_as(&format!(
                "SELECT {scope}, {f}, COUNT(*) FROM {table} WHERE {f} IS NOT NULL {group}"
            ))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
            for (s, v, n) in rows {
                out.insert((list.to_string(), s, format!("{f}={v}")), n);
            }
        }
    }
    out
}

async fn kept(conn: &mut sqlx::AnyConnection) -> Counts {
    let rows: Vec<(String, String, String, i64)> =
        sqlx::query_as("SELECT list, scope, facet, n FROM list_counts WHERE n <> 0")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(l, s, f, n)| ((l, s, f), n))
        .collect()
}

/// A connection of its own to the test's database, for SQL the store does not run.
async fn raw(db: &Db) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&db.url()).await.unwrap()
}

/// Adds apps named `names`, each allowed `x.example` (so each raises a domain task).
async fn add_apps(store: &Store, actor: &Actor, acct: Uuid, names: &[&str]) -> Vec<App> {
    let mut apps = Vec::new();
    for name in names {
        let a = store
            .create_app(
                &app(acct, name, &["x.example"]),
                &approve_domains(),
                actor,
                NOW,
            )
            .await
            .unwrap();
        apps.push(a);
    }
    apps
}

/// The kept counts equal the rows' counts, and the pages of `acct` report them.
async fn check(db: &Db, store: &Store, acct: Uuid, step: &str) {
    let mut conn = raw(db).await;
    let truth = truth(&mut conn).await;
    assert_eq!(kept(&mut conn).await, truth, "after {step}");
    let key = |list: &str, facet: String| (list.to_string(), acct.to_string(), facet);
    let count = |list: &str, facet: String| truth.get(&key(list, facet)).copied().unwrap_or(0);
    let first = PageRequest::first(1);
    let apps = store.list_apps(acct, &first).await.unwrap();
    assert_eq!(apps.total_count, count("apps", String::new()), "{step}");
    for status in [TaskStatusType::Inprogress, TaskStatusType::Success] {
        let f = TaskFilter {
            status: Some(status),
            ..TaskFilter::default()
        };
        let page = store.list_tasks(acct, &f, &first).await.unwrap();
        assert_eq!(page.total_count, count("tasks", String::new()), "{step}");
        let facet = format!("status={}", status.as_str());
        assert_eq!(page.filtered_count, count("tasks", facet), "{step}");
    }
    // Two filters at once are counted from the rows: the same answer.
    let both = TaskFilter {
        status: Some(TaskStatusType::Inprogress),
        task_type: Some(TaskType::DomainWhitelist),
        entity_id: None,
    };
    let page = store.list_tasks(acct, &both, &first).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM tasks WHERE acct_id = $1 AND status = 'INPROGRESS' \
         AND task_type = 'DOMAIN_WHITELIST'",
    )
    .bind(acct.to_string())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(page.filtered_count, n, "{step}");
    let f = BuildFilter {
        status: Some(BuildStatusType::Whitelisted),
        app_id: None,
    };
    let page = store.list_builds(acct, &f, &first).await.unwrap();
    assert_eq!(page.total_count, count("builds", String::new()), "{step}");
    let facet = "status=WHITELISTED".to_string();
    assert_eq!(page.filtered_count, count("builds", facet), "{step}");
    let members = store.list_members(acct, &first).await.unwrap();
    assert_eq!(members.total_count, count("members", String::new()));
}

/// Apps, images, tasks, certificates and members added, decided, moved and deleted through the
/// store, by hand-written SQL and by cascades: the kept counts follow each step.
async fn counts_follow_every_write(db: Db) {
    let (store, actor, acct) = setup(&db, ApprovalPolicy::Manual).await;
    check(&db, &store, acct, "setup").await;
    let apps = add_apps(&store, &actor, acct, &["one", "two", "three"]).await;
    for (i, a) in apps.iter().enumerate() {
        store
            .create_build(
                &build(acct, a.app_id, &format!("v{i}")),
                &whitelist_image(),
                &actor,
                NOW,
            )
            .await
            .unwrap();
    }
    check(&db, &store, acct, "apps and images").await;

    // A decision moves a task from INPROGRESS to SUCCESS.
    let task = apps[0].pending_task_id.expect("a domain task");
    let approved = domain_effect(ApprovalStatus::Approved);
    store
        .decide_task(
            acct,
            task,
            verdict(ApprovalStatus::Approved, None, &approved),
            &actor,
            NOW + 1,
        )
        .await
        .unwrap();
    check(&db, &store, acct, "a decision").await;

    let zone = store.list_zones(acct).await.unwrap()[0].zone.zone_id;
    let mut records: Vec<_> = (0..5).map(|_| denied(acct, zone)).collect();
    records[0].app_id = Some(apps[1].app_id);
    store.record_issuances(&records, NOW).await.unwrap();
    check(&db, &store, acct, "issuances").await;

    // SQL written by hand is counted as well.
    let mut conn = raw(&db).await;
    sqlx::query("UPDATE tasks SET status = 'FAILED' WHERE acct_id = $1 AND status = 'INPROGRESS'")
        .bind(acct.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM certificates WHERE certificate_id = $1")
        .bind(records[1].certificate_id.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    check(&db, &store, acct, "hand-written SQL").await;

    // Deleting an app deletes its images by cascade.
    let cascade = ccm_store::Effect::of([]);
    store
        .delete_app(acct, apps[2].app_id, &cascade, &actor, NOW + 2)
        .await
        .unwrap();
    check(&db, &store, acct, "an app deleted").await;

    // The account deleted with everything in it.
    store.delete_account(acct, &actor, NOW + 3).await.unwrap();
    check(&db, &store, acct, "the account deleted").await;
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM list_counts WHERE scope = $1")
        .bind(acct.to_string())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "a deleted account leaves no counts behind");
}

/// Counts lost or wrong (as after a restore of part of the database) and triggers from another
/// version: the next start replaces the triggers and recounts every list from its rows.
async fn counts_are_rebuilt_with_new_triggers(db: Db) {
    let (store, actor, acct) = setup(&db, ApprovalPolicy::Manual).await;
    add_apps(&store, &actor, acct, &["one", "two"]).await;
    store.close().await;
    let mut conn = raw(&db).await;
    sqlx::query("UPDATE list_counts SET n = n + 7")
        .execute(&mut conn)
        .await
        .unwrap();
    // Unchanged triggers: a start keeps the counts as they are.
    let store = connect(&db).await;
    let apps = store.list_apps(acct, &PageRequest::first(1)).await.unwrap();
    assert_eq!(apps.total_count, 9);
    store.close().await;
    sqlx::query("UPDATE meta SET value = 'older' WHERE key = 'list_counts_triggers'")
        .execute(&mut conn)
        .await
        .unwrap();
    let store = connect(&db).await;
    check(&db, &store, acct, "a start with other triggers").await;
    let apps = store.list_apps(acct, &PageRequest::first(1)).await.unwrap();
    assert_eq!(apps.total_count, 2);
    // The new triggers count what comes next.
    store
        .create_app(&app(acct, "three", &[]), &approve_domains(), &actor, NOW)
        .await
        .unwrap();
    check(&db, &store, acct, "an app after the recount").await;
}
