//! Fortanix's `em-client` 4.0.2, unmodified, reads every list ccm pages — accounts, apps,
//! images, tasks, nodes, users — with its own types (`{"items", "metadata"}` with the
//! reference's `SearchMetadata`), paging by `limit` and `offset` as the reference's clients do,
//! against a running manager on SQLite and PostgreSQL.
// Test support: a failed step should abort the test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, Harness, app_body, build_body};
use em_client::{AccountsApi, AppApi, BuildApi, NodeApi, TaskApi, UsersApi};
use reqwest::StatusCode;

both_backends!(em_client_reads_every_list_page_by_page);

fn client(base: &str, token: &str) -> em_client::Client {
    let mut c = em_client::Client::try_new_http(base).unwrap();
    c.headers().set_raw(
        "Authorization",
        vec![format!("Bearer {token}").into_bytes()],
    );
    c
}

async fn em_client_reads_every_list_page_by_page(b: Backend) {
    let h = Harness::start(b).await;
    let (t, _) = h.user_with_account("lists@example.com", "Lists").await;
    h.signup("reader@example.com").await;
    h.join(&t, "reader@example.com", "READER").await;
    let mut app_id = String::new();
    for i in 0..5 {
        let (st, app) = h.post("/v1/apps", &t, app_body(&format!("app-{i}"))).await;
        assert_eq!(st, StatusCode::OK, "{app}");
        app_id = app["app_id"].as_str().unwrap().to_string();
    }
    for tag in ["1", "2", "3"] {
        let (st, build) = h.post("/v1/builds", &t, build_body(&app_id, tag)).await;
        assert_eq!(st, StatusCode::OK, "{build}");
    }
    let base = h.base.clone();
    tokio::task::spawn_blocking(move || {
        let c = client(&base, &t);

        let accounts = c.get_accounts().unwrap();
        let accounts = accounts.items.unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].name.as_deref(), Some("Lists"));

        let first = c
            .get_all_apps(None, None, None, Some(2), Some(0), None)
            .unwrap();
        let m = first.metadata.unwrap();
        assert_eq!(first.items.len(), 2);
        assert_eq!((m.page, m.pages, m.limit), (1, 3, 2));
        assert_eq!((m.total_count, m.filtered_count), (5, 5));
        let last = c
            .get_all_apps(None, None, None, Some(2), Some(4), None)
            .unwrap();
        assert_eq!(last.items.len(), 1);
        assert_eq!(last.items[0].name, "app-4");
        assert_eq!(last.metadata.unwrap().page, 3);

        let builds = c
            .get_all_builds(None, None, None, None, None, Some(2), Some(2), None)
            .unwrap();
        assert_eq!(builds.items.len(), 1);
        assert_eq!(builds.metadata.unwrap().total_count, 3);

        let tasks = c
            .get_all_tasks(
                Some("BUILD_WHITELIST".into()),
                Some("INPROGRESS".into()),
                None,
                None,
                None,
                Some(10),
                None,
                None,
                None,
            )
            .unwrap();
        assert_eq!(tasks.items.len(), 3);
        let tm = tasks.metadata.unwrap();
        assert_eq!(tm.filtered_count, 3);
        assert!(
            tm.total_count >= 3,
            "domain tasks count too: {}",
            tm.total_count
        );

        let nodes = c
            .get_all_nodes(None, None, None, None, None, Some(10), Some(0), None)
            .unwrap();
        assert!(nodes.items.is_empty());
        assert_eq!(nodes.metadata.unwrap().total_count, 0);

        let users = c.get_all_users(None, Some(1), Some(1), None).unwrap();
        let um = users.metadata.unwrap();
        assert_eq!((um.total_count, um.page, um.pages), (2, 2, 2));
        assert_eq!(users.items.len(), 1);
        assert_eq!(users.items[0].user_email, "reader@example.com");
    })
    .await
    .unwrap();
}
