//! Paged lists over real HTTP on 127.0.0.1, on SQLite and PostgreSQL: every list answers
//! `{"items", "metadata"}`; `limit`/`offset` pages and `next` cursors walk the same items in the
//! same order, without gaps or repeats, also while items are added; counts follow filters; bad
//! paging parameters and foreign cursors are refused with a message naming them.
// The scenario functions run under generated #[tokio::test]s; a failed step aborts with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, Harness, app_body, assert_error, build_body};
use reqwest::StatusCode;
use serde_json::Value;

both_backends!(
    lists_page_by_offset_and_by_cursor,
    list_counts_follow_filters,
    bad_paging_is_refused,
    every_list_has_the_list_shape,
);

/// GET `path`, asserting 200; the page.
async fn page(h: &Harness, token: &str, path: &str) -> Value {
    let (st, body) = h.get(path, token).await;
    assert_eq!(st, StatusCode::OK, "{path}: {body}");
    body
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

/// Creates apps `app-000` .. in the selected account.
async fn add_apps(h: &Harness, token: &str, from: usize, to: usize) {
    for i in from..to {
        let (st, app) = h
            .post("/v1/apps", token, app_body(&format!("app-{i:03}")))
            .await;
        assert_eq!(st, StatusCode::OK, "{app}");
    }
}

async fn lists_page_by_offset_and_by_cursor(b: Backend) {
    let h = Harness::start(b).await;
    let (t, _) = h.user_with_account("pages@example.com", "Pages").await;
    add_apps(&h, &t, 0, 25).await;

    let first = page(&h, &t, "/v1/apps?limit=10").await;
    let m = &first["metadata"];
    assert_eq!(names(&first).len(), 10);
    assert_eq!(names(&first)[0], "app-000");
    assert_eq!(
        (m["page"].as_i64(), m["pages"].as_i64()),
        (Some(1), Some(3))
    );
    assert_eq!(
        (m["limit"].as_i64(), m["offset"].as_i64()),
        (Some(10), Some(0))
    );
    assert_eq!(m["total_count"], 25);
    assert_eq!(m["filtered_count"], 25);

    // Offsets, as the reference's clients page.
    let third = page(&h, &t, "/v1/apps?limit=10&offset=20").await;
    assert_eq!(names(&third).len(), 5);
    assert_eq!(third["metadata"]["page"], 3);
    assert!(
        third["metadata"].get("next").is_none(),
        "last page: {third}"
    );

    // Cursors walk the same order; an app added before the cursor's position does not shift
    // the pages after it (an offset would repeat an item).
    let mut walked = names(&first);
    let mut next = first["metadata"]["next"].as_str().unwrap().to_string();
    add_apps(&h, &t, 100, 101).await; // "app-100" sorts after every other name
    let early = h.post("/v1/apps", &t, app_body("app-0000")).await;
    assert_eq!(early.0, StatusCode::OK, "{}", early.1);
    loop {
        let p = page(&h, &t, &format!("/v1/apps?limit=10&next={next}")).await;
        assert!(p["metadata"].get("offset").is_none(), "{p}");
        walked.extend(names(&p));
        match p["metadata"]["next"].as_str() {
            Some(n) => next = n.to_string(),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..25).map(|i| format!("app-{i:03}")).collect();
    expected.push("app-100".into());
    assert_eq!(walked, expected, "no gaps, no repeats, in name order");

    // Tasks page newest first the same way (one BUILD_WHITELIST task per image).
    let app_id = page(&h, &t, "/v1/apps?limit=1").await["items"][0]["app_id"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..7 {
        let (st, body) = h
            .post("/v1/builds", &t, build_body(&app_id, &format!("v{i}")))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    let mut seen = Vec::new();
    let mut path = "/v1/builds?limit=3".to_string();
    loop {
        let p = page(&h, &t, &path).await;
        assert_eq!(p["metadata"]["total_count"], 7);
        for b in p["items"].as_array().unwrap() {
            seen.push(b["build_id"].as_str().unwrap().to_string());
        }
        match p["metadata"]["next"].as_str() {
            Some(n) => path = format!("/v1/builds?limit=3&next={n}"),
            None => break,
        }
    }
    let all = page(&h, &t, "/v1/builds?limit=1000").await;
    let ids: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["build_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, ids, "cursor pages and one big page agree");
    let created: Vec<i64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["created_at"].as_i64().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");
}

async fn list_counts_follow_filters(b: Backend) {
    let h = Harness::start(b).await;
    let (t, _) = h.user_with_account("counts@example.com", "Counts").await;
    add_apps(&h, &t, 0, 2).await;
    let apps = page(&h, &t, "/v1/apps").await;
    let a0 = apps["items"][0]["app_id"].as_str().unwrap().to_string();
    let a1 = apps["items"][1]["app_id"].as_str().unwrap().to_string();
    for (app, tag) in [(&a0, "1"), (&a0, "2"), (&a1, "1")] {
        let (st, body) = h.post("/v1/builds", &t, build_body(app, tag)).await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    let of_a0 = page(&h, &t, &format!("/v1/builds?app_id={a0}&limit=1")).await;
    let m = &of_a0["metadata"];
    assert_eq!(
        (m["total_count"].as_i64(), m["filtered_count"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(m["pages"], 2);
    let waiting = page(
        &h,
        &t,
        "/v1/tasks?status=INPROGRESS&task_type=BUILD_WHITELIST",
    )
    .await;
    assert_eq!(waiting["metadata"]["filtered_count"], 3);
    assert_eq!(waiting["items"].as_array().unwrap().len(), 3);
    let none = page(&h, &t, "/v1/tasks?status=DENIED").await;
    assert_eq!(none["metadata"]["filtered_count"], 0);
    assert_eq!(none["metadata"]["pages"], 0);
    assert!(none["items"].as_array().unwrap().is_empty());

    // Another account's objects are never counted.
    let (other, _) = h.user_with_account("other@example.com", "Other").await;
    let theirs = page(&h, &other, "/v1/builds").await;
    assert_eq!(theirs["metadata"]["total_count"], 0);
}

async fn bad_paging_is_refused(b: Backend) {
    let h = Harness::start(b).await;
    let (t, _) = h.user_with_account("bad@example.com", "Bad").await;
    add_apps(&h, &t, 0, 3).await;
    assert_error(
        &h.get("/v1/apps?limit=0", &t).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("limit"),
    );
    assert_error(
        &h.get("/v1/apps?limit=1001", &t).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("limit"),
    );
    assert_error(
        &h.get("/v1/apps?offset=-1", &t).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("offset"),
    );
    assert_error(
        &h.get("/v1/apps?limit=ten", &t).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        None,
    );
    assert_error(
        &h.get("/v1/apps?sort_by=name", &t).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        None,
    );
    assert_error(
        &h.get("/v1/apps?next=bm9wZQ", &t).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("next"),
    );
    // A cursor of another list is not taken for this one's.
    let builds_cursor = {
        let apps = page(&h, &t, "/v1/apps").await;
        let app = apps["items"][0]["app_id"].as_str().unwrap().to_string();
        for tag in ["1", "2"] {
            h.post("/v1/builds", &t, build_body(&app, tag)).await;
        }
        page(&h, &t, "/v1/builds?limit=1").await["metadata"]["next"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_error(
        &h.get(&format!("/v1/apps?next={builds_cursor}"), &t).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("next"),
    );
    assert_error(
        &h.get(&format!("/v1/builds?offset=1&next={builds_cursor}"), &t)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("offset"),
    );
}

async fn every_list_has_the_list_shape(b: Backend) {
    let h = Harness::start(b).await;
    let (t, _) = h.user_with_account("shape@example.com", "Shape").await;
    add_apps(&h, &t, 0, 1).await;
    for path in [
        "/v1/accounts",
        "/v1/apps",
        "/v1/builds",
        "/v1/tasks",
        "/v1/nodes",
        "/v1/users",
        "/v1/certificates",
        "/v1/apikeys",
    ] {
        let p = page(&h, &t, &format!("{path}?limit=5")).await;
        let m = &p["metadata"];
        assert!(p["items"].is_array(), "{path}: {p}");
        let n = p["items"].as_array().unwrap().len() as i64;
        assert_eq!(m["filtered_count"].as_i64(), Some(n), "{path}: {p}");
        assert_eq!(m["limit"], 5, "{path}");
        assert_eq!(m["offset"], 0, "{path}");
    }
    // The reference's clients read zones and registries as bare arrays.
    assert!(page(&h, &t, "/v1/zones").await.is_array());
    assert!(page(&h, &t, "/v1/registry").await.is_array());
}
