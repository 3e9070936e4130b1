//! Server time and weight of the web console's main pages with 1,000 applications, 1,000
//! images and 2,000 tasks (each app raises a domain task, each image an image task) in the
//! account, on SQLite.
//!
//! Each page is requested through the manager's real router (`ccm_manager::app`: console
//! middleware, session lookup, CSRF key, database queries, rendering) with `tower`'s `oneshot`,
//! so the figures are the server's own time without sockets or a client. The data set is made
//! through the store, the same transactions the API uses.
//!
//!     cargo bench -p ccm-manager --bench console_pages
//!
//! Environment: BENCH_ITERATIONS (default 40) requests per page after 3 warm-up requests;
//! BENCH_OBJECTS (default 1000) apps and images.

// A benchmark has nobody to report setup failures to but the operator: abort with the reason.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ccm_api::apps::{AdvancedSettings, App, CertificateConfig, CertificateIssuer, KeyType};
use ccm_api::builds::{Build, BuildStatus, BuildStatusType, DockerInfo, EnclaveInfo};
use ccm_manager::{Config, SystemClock};
use ccm_store::Actor;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use uuid::Uuid;

async fn call(router: &axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .expect("body");
    (status, body.to_vec())
}

fn json_req(method: &str, path: &str, token: Option<&str>, body: Value) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_string())).expect("request")
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let objects: usize = std::env::var("BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        insecure_http: true,
        open_signup: true,
        ..Config::default()
    };
    let m = ccm_manager::start(config, Arc::new(SystemClock))
        .await
        .expect("manager starts");
    let router = ccm_manager::app(m.state.clone());
    let store = m.state.store.clone();

    // A user, a session (the console's cookie holds the same token), an account.
    let (st, _) = call(
        &router,
        json_req(
            "POST",
            "/v1/users",
            None,
            json!({"user_email": "bench@example.com", "user_password": "benchmark-password"}),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let login = Request::builder()
        .method("POST")
        .uri("/v1/sys/auth")
        .header(
            "authorization",
            "Basic YmVuY2hAZXhhbXBsZS5jb206YmVuY2htYXJrLXBhc3N3b3Jk",
        )
        .body(Body::empty())
        .expect("request");
    let (st, body) = call(&router, login).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let token = serde_json::from_slice::<Value>(&body).expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    let (st, body) = call(
        &router,
        json_req(
            "POST",
            "/v1/accounts",
            Some(&token),
            json!({"name": "bench"}),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let acct: Uuid = serde_json::from_slice::<Value>(&body).expect("json")["acct_id"]
        .as_str()
        .expect("acct_id")
        .parse()
        .expect("uuid");
    let (st, _) = call(
        &router,
        json_req(
            "POST",
            &format!("/v1/sys/session/select_account/{acct}"),
            Some(&token),
            json!({}),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    // The data set.
    let seed_start = Instant::now();
    let actor = Actor {
        user_id: None,
        name: "bench@example.com".into(),
    };
    let now = 1_800_000_000;
    let mut first_app = None;
    let mut first_build = None;
    let approved = ccm_api::tasks::ApprovalStatus::Approved;
    let domains_approved = ccm_manager::service::tasks::domain_effect(approved);
    let image_approved = ccm_manager::service::tasks::image_effect(approved);
    for i in 0..objects {
        let domain = format!("app{i:04}.example.com");
        let app = App {
            app_id: Uuid::new_v4(),
            acct_id: acct,
            name: format!("app-{i:04}"),
            description: Some("benchmark application".into()),
            input_image_name: format!("registry.example/team/app-{i:04}"),
            output_image_name: format!("registry.example/team/app-{i:04}-sgx"),
            isvprodid: 1,
            isvsvn: 1,
            mem_size: 1024,
            threads: 128,
            allowed_domains: vec![domain.clone()],
            whitelisted_domains: Vec::new(),
            pending_task_id: None,
            pending_policy_task_id: None,
            certificate: Some(CertificateConfig {
                issuer: CertificateIssuer::ManagerCa,
                subject: domain,
                key_type: KeyType::Rsa2048,
                key_path: "/run/key.pem".into(),
                cert_path: "/run/cert.pem".into(),
                chain_path: None,
            }),
            advanced_settings: AdvancedSettings::default(),
            labels: Default::default(),
            created_at: now,
            updated_at: now,
        };
        let app = store
            .create_app(&app, &domains_approved, &actor, now)
            .await
            .expect("app");
        let build = Build {
            build_id: Uuid::new_v4(),
            acct_id: acct,
            app_id: app.app_id,
            app_name: app.name.clone(),
            docker_info: Some(DockerInfo {
                docker_image_name: app.output_image_name.clone(),
                docker_version: "1.0".into(),
                docker_image_sha: None,
                docker_image_size: None,
            }),
            enclave_info: EnclaveInfo {
                mrenclave: format!("{i:064x}"),
                mrsigner: "ab".repeat(32),
                isvprodid: 1,
                isvsvn: 1,
            },
            mem_size: 1024,
            threads: 128,
            status: BuildStatus {
                status: BuildStatusType::Pending,
                status_updated_at: now,
            },
            pending_task_id: None,
            conversion: None,
            created_at: now + i as i64,
            updated_at: now,
        };
        let build = store
            .create_build(&build, &image_approved, &actor, now)
            .await
            .expect("image");
        first_app.get_or_insert(app.app_id);
        first_build.get_or_insert(build.build_id);
    }
    let counts = store.account_counts(acct).await.expect("counts");
    let task = store
        .list_tasks(
            acct,
            &ccm_store::TaskFilter {
                status: None,
                task_type: None,
                entity_id: None,
            },
            &ccm_store::PageRequest {
                limit: 1,
                start: ccm_store::Start::Offset(0),
            },
        )
        .await
        .expect("tasks")
        .items
        .pop()
        .expect("a task");
    eprintln!(
        "seeded {} apps, {} images, {} pending tasks in {:.1} s",
        counts.apps,
        counts.builds,
        counts.pending_tasks,
        seed_start.elapsed().as_secs_f64()
    );

    let app = first_app.expect("app");
    let build = first_build.expect("build");
    let pages = [
        ("overview", "/console".to_string()),
        ("applications (page 1 of 20)", "/console/apps".to_string()),
        (
            "applications (page 20)",
            "/console/apps?page=20".to_string(),
        ),
        ("application", format!("/console/apps/{app}")),
        ("add application form", "/console/apps/new".to_string()),
        ("images", "/console/images".to_string()),
        ("image", format!("/console/images/{build}")),
        (
            "create image: choose the app",
            "/console/images/new".to_string(),
        ),
        (
            "create image form",
            format!("/console/images/new?app_id={app}"),
        ),
        ("tasks (pending)", "/console/tasks".to_string()),
        ("task", format!("/console/tasks/{}", task.task_id)),
        ("compute nodes", "/console/nodes".to_string()),
        ("running apps", "/console/running".to_string()),
        ("certificates", "/console/certificates".to_string()),
        ("audit log", "/console/audit".to_string()),
        ("accounts", "/console/accounts".to_string()),
    ];
    println!("| page | median | p95 | max | bytes |");
    println!("|---|---|---|---|---|");
    for (name, path) in pages {
        let get = || {
            Request::builder()
                .uri(&path)
                .header("cookie", format!("ccm_session={token}"))
                .body(Body::empty())
                .expect("request")
        };
        let mut bytes = 0;
        for _ in 0..3 {
            let (st, body) = call(&router, get()).await;
            assert_eq!(
                st,
                StatusCode::OK,
                "{path}: {}",
                String::from_utf8_lossy(&body)
            );
            bytes = body.len();
        }
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            let (st, _) = call(&router, get()).await;
            times.push(t.elapsed());
            assert_eq!(st, StatusCode::OK);
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let shown = path
            .replace(&app.to_string(), "{app_id}")
            .replace(&build.to_string(), "{build_id}")
            .replace(&task.task_id.to_string(), "{task_id}");
        println!(
            "| {name} (`{shown}`) | {:.2} ms | {:.2} ms | {:.2} ms | {bytes} |",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.95)),
            ms(*times.last().expect("times")),
        );
    }
    m.shutdown().await;
}
