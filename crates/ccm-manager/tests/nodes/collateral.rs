//! Collateral in the manager against a test PCCS and uploads, time driven by the manual clock:
//! enrollment with the join token alone (collateral fetched on demand), the refresher replacing
//! a set before it expires, an upstream outage served from the current set until it expires and
//! then refused with the reason, older uploads and imports changing nothing, and the PCCS API
//! the manager serves read back by ccm's own PCS client.

use ccm_attest::pcs::{CaType, PcsClient, PcsOptions, Update};
use ccm_attest::sim;
use ccm_manager::service::collateral::{Refreshed, refresh_due, reload};
use ccm_testkit::pccs::Fault;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Backend, T0, World, code, world, world_with_pccs};

const DAY: i64 = 86_400;

/// The issue date of collateral the simulated root issues at `t` (dated five minutes back, as
/// against clock skew).
fn issued(t: i64) -> i64 {
    t - 300
}

/// Moves the clock to `t` and logs in again (sessions expire).
async fn set_clock(w: &mut World, t: i64) {
    w.clock.set(t);
    let r: Value = w
        .http
        .post(format!("{}/v1/sys/auth", w.base))
        .basic_auth("ops@example.com", Some("correct horse battery"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    w.token = r["access_token"].as_str().unwrap().to_string();
    let accounts = w.ok(Method::GET, "/v1/accounts", json!(null)).await;
    let acct = accounts["items"][0]["acct_id"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(
        Method::POST,
        &format!("/v1/sys/session/select_account/{acct}"),
        json!({}),
    )
    .await;
}

/// Enrolls a node (fresh join token and nonce): the status and body.
async fn enroll(w: &World, collateral: Option<Value>) -> (StatusCode, Value) {
    let platform = w.dir.path().join("platform");
    let (token, _) = w.join_token(json!({})).await;
    let (st, n) = w.nonce(&token).await;
    assert_eq!(st, StatusCode::OK, "{n}");
    let nonce = n["nonce"].as_str().unwrap().to_string();
    let (st, v, _) = w
        .enroll_with(&token, &nonce, &nonce, &platform, collateral)
        .await;
    (st, v)
}

/// The simulated root's collateral issued at `t`, as the JSON a node would upload.
fn collateral_at(w: &World, t: i64) -> Value {
    let c = sim::issue_collateral(
        &w.dir.path().join("platform"),
        &sim::DEFAULT_FMSPC,
        t as u64,
    )
    .unwrap();
    serde_json::from_str(&c.to_json()).unwrap()
}

/// The manager's current sets (`GET /v1/collateral`).
async fn sets(w: &World) -> Vec<Value> {
    w.ok(Method::GET, "/v1/collateral", json!(null))
        .await
        .as_array()
        .unwrap()
        .clone()
}

async fn standard_set(w: &World) -> Value {
    let all = sets(w).await;
    let standard: Vec<&Value> = all.iter().filter(|s| s["update"] == "standard").collect();
    assert_eq!(standard.len(), 1, "{all:?}");
    standard[0].clone()
}

async fn refresh(w: &World) -> Refreshed {
    refresh_due(&w.m.state).await.unwrap()
}

fn pccs(w: &World) -> &ccm_testkit::pccs::Server {
    w.pccs.as_deref().unwrap()
}

async fn fetched_on_demand_refreshed_and_outlived(backend: Backend) {
    let mut w = world_with_pccs(backend).await;
    let platform = w.dir.path().join("platform");

    // The join token alone: the manager fetches the platform's collateral to verify the quote.
    let (st, v) = enroll(&w, None).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let set = standard_set(&w).await;
    assert_eq!(set["source"], "pccs", "{set}");
    assert_eq!(set["ca_type"], "platform", "{set}");
    assert_eq!(set["fmspc"], hex::encode(sim::DEFAULT_FMSPC), "{set}");
    assert_eq!(set["tcb_info_issued"], issued(T0), "{set}");
    assert_eq!(set["simulated"], true, "{set}");

    // Nothing is due yet: the refresher fetches only the early set it has not seen.
    let r = refresh(&w).await;
    assert_eq!((r.fetched, r.failed), (1, 0), "{r:?}");
    assert_eq!(sets(&w).await.len(), 2);
    assert_eq!(refresh(&w).await, Refreshed::default());

    // Intel re-signs; a day later the refresher fetches again and the newer set is current.
    let later = sim::issue_collateral(&platform, &sim::DEFAULT_FMSPC, (T0 + DAY) as u64).unwrap();
    pccs(&w).set_parts(later.into_parts());
    set_clock(&mut w, T0 + DAY).await;
    let r = refresh(&w).await;
    assert_eq!((r.fetched, r.changed, r.failed), (2, 2, 0), "{r:?}");
    let set = standard_set(&w).await;
    assert_eq!(set["tcb_info_issued"], issued(T0 + DAY), "{set}");
    assert_eq!(set["valid_until"], T0 + 31 * DAY, "{set}");
    assert_eq!(set["last_error"], Value::Null, "{set}");
    // Its freshness is on /metrics once the refresher's reload ran.
    reload(&w.m.state).await.unwrap();
    let metrics = w
        .http
        .get(format!("{}/metrics", w.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!(
        "ccm_collateral_valid_until_seconds{{fmspc=\"{}\",ca_type=\"platform\",tee=\"sgx\",\
         update=\"standard\",root=\"simulated\"}} {}",
        hex::encode(sim::DEFAULT_FMSPC),
        T0 + 31 * DAY
    );
    assert!(metrics.contains(&series), "{series} not in {metrics}");

    // The PCCS goes away: the refresher notes why (once per platform: the early set waits for
    // the backoff too), and quotes still verify with the current set until it expires.
    pccs(&w).set_fault(Fault::Unavailable);
    set_clock(&mut w, T0 + 26 * DAY).await;
    let r = refresh(&w).await;
    assert_eq!((r.fetched, r.failed), (0, 1), "{r:?}");
    let set = standard_set(&w).await;
    assert!(set["last_error"].as_str().unwrap().contains("503"), "{set}");
    // Backing off: the next run a minute later does not ask again.
    set_clock(&mut w, T0 + 26 * DAY + 60).await;
    assert_eq!(refresh(&w).await.failed, 0);
    let (st, v) = enroll(&w, None).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");

    // Past its expiry the quote is refused with the reason.
    set_clock(&mut w, T0 + 31 * DAY + 1).await;
    let (st, v) = enroll(&w, None).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "quote_rejected"),
        "{v}"
    );
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("expired") && message.contains("503"),
        "{message}"
    );

    // The PCCS is back with fresh collateral: the next quote fetches it on demand.
    let fresh =
        sim::issue_collateral(&platform, &sim::DEFAULT_FMSPC, (T0 + 31 * DAY) as u64).unwrap();
    pccs(&w).set_parts(fresh.into_parts());
    pccs(&w).set_fault(Fault::None);
    let (st, v) = enroll(&w, None).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        standard_set(&w).await["tcb_info_issued"],
        issued(T0 + 31 * DAY)
    );
    w.m.shutdown().await;
}

async fn older_uploads_and_imports_change_nothing(backend: Backend) {
    let mut w = world(backend).await;
    set_clock(&mut w, T0 + DAY).await;
    let newer = collateral_at(&w, T0 + DAY);
    let (st, v) = enroll(&w, Some(newer.clone())).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let before = standard_set(&w).await;
    assert_eq!(before["source"], "upload", "{before}");
    assert_eq!(before["tcb_info_issued"], issued(T0 + DAY), "{before}");

    // A tenant uploads the older set (issued at T0, still valid): ignored, the quote verified
    // with the current set.
    let older: Value = serde_json::from_slice(
        &std::fs::read(w.dir.path().join("platform").join(sim::COLLATERAL_FILE)).unwrap(),
    )
    .unwrap();
    let (st, v) = enroll(&w, Some(older.clone())).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(standard_set(&w).await, before);

    // Imports: the older set is unchanged; a tampered one refuses the whole import.
    let v = w
        .ok(
            Method::POST,
            "/v1/collateral",
            json!({"collateral": [older.clone()]}),
        )
        .await;
    assert_eq!(v, json!({"results": ["unchanged"]}));
    let mut tampered = collateral_at(&w, T0 + DAY + 60);
    let tcb = tampered["tcb_info"]
        .as_str()
        .unwrap()
        .replacen("\"version\":3", "\"version\":3 ", 1);
    tampered["tcb_info"] = json!(tcb);
    let newest = collateral_at(&w, T0 + DAY + 120);
    let (st, v) = w
        .call(
            Method::POST,
            "/v1/collateral",
            Some(json!({"collateral": [newest.clone(), tampered]})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("collateral[1]"), "{v}");
    assert_eq!(standard_set(&w).await, before);

    // A newer import becomes current, and export returns it.
    set_clock(&mut w, T0 + DAY + 120).await;
    let v = w
        .ok(
            Method::POST,
            "/v1/collateral",
            json!({"collateral": [newest.clone()]}),
        )
        .await;
    assert_eq!(v, json!({"results": ["current"]}));
    let set = standard_set(&w).await;
    assert_eq!(set["source"], "import", "{set}");
    let exported = w
        .ok(Method::GET, "/v1/collateral/export", json!(null))
        .await;
    assert_eq!(exported, json!({"collateral": [newest]}));
    // Each set that became current is in the audit log, with who brought it; nothing else.
    let audit = w.ok(Method::GET, "/v1/audit?limit=1000", json!(null)).await;
    let changes: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "collateral.current")
        .map(|e| {
            let source = e["details"]["source"].as_str().unwrap().to_string();
            (e["actor"].as_str().unwrap().to_string(), source)
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("node-agent".to_string(), "upload".to_string()),
            ("ops@example.com".to_string(), "import".to_string()),
        ],
        "{audit}"
    );
    w.m.shutdown().await;
}

/// ccm's PCS client, pointed at the manager as its PCCS, gets the current set.
async fn serves_the_pccs_api(backend: Backend) {
    let w = world_with_pccs(backend).await;
    let (st, v) = enroll(&w, None).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");

    let tls = ccm_pki::pinning::pinned_client_config(w.pin).unwrap();
    let client = PcsClient::new(PcsOptions::new(&w.base), tls).unwrap();
    let fetched = client
        .sgx_collateral(&sim::DEFAULT_FMSPC, CaType::Platform, Update::Standard)
        .await
        .unwrap();
    let exported = w
        .ok(Method::GET, "/v1/collateral/export", json!(null))
        .await;
    let current: Value = serde_json::from_str(&fetched.to_json()).unwrap();
    assert_eq!(exported["collateral"][0], current);

    // Cacheable: the same ETag answers 304.
    let url = format!(
        "{}/sgx/certification/v4/tcb?fmspc={}",
        w.base,
        hex::encode(sim::DEFAULT_FMSPC)
    );
    let r = w.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()["etag"].clone();
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public, max-age="),
    );
    assert!(r.headers().contains_key("tcb-info-issuer-chain"));
    let r = w
        .http
        .get(&url)
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Bad and unknown requests.
    for (path, status) in [
        (
            "/sgx/certification/v4/tcb?fmspc=zz",
            StatusCode::BAD_REQUEST,
        ),
        ("/sgx/certification/v4/tcb", StatusCode::BAD_REQUEST),
        (
            "/sgx/certification/v4/tcb?fmspc=00112233aabb",
            StatusCode::NOT_FOUND,
        ),
        (
            "/sgx/certification/v4/pckcrl?ca=nobody",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/sgx/certification/v4/pckcrl?ca=processor",
            StatusCode::NOT_FOUND,
        ),
        (
            "/sgx/certification/v4/qe/identity?update=later",
            StatusCode::BAD_REQUEST,
        ),
        ("/tdx/certification/v4/qe/identity", StatusCode::NOT_FOUND),
        (
            "/sgx/certification/v4/qe/identity?tcbEvaluationDataNumber=1",
            StatusCode::OK,
        ),
        (
            "/sgx/certification/v4/qe/identity?tcbEvaluationDataNumber=7",
            StatusCode::NOT_FOUND,
        ),
        (
            "/sgx/certification/v4/qe/identity?tcbEvaluationDataNumber=x",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/sgx/certification/v4/qe/identity?tcbEvaluationDataNumber=1&update=early",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = w
            .http
            .get(format!("{}{path}", w.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    // PEM by default, DER when asked.
    let pck = |q: &'static str| {
        let url = format!("{}/sgx/certification/v4/pckcrl?ca=platform{q}", w.base);
        let http = w.http.clone();
        async move { http.get(url).send().await.unwrap().bytes().await.unwrap() }
    };
    assert!(pck("").await.starts_with(b"-----BEGIN X509 CRL-----"));
    assert_eq!(pck("&encoding=der").await.first(), Some(&0x30));
    w.m.shutdown().await;
}

/// Only a system administrator's session sees or changes collateral: not an API key, not a
/// member of an account.
async fn collateral_is_for_administrators(backend: Backend) {
    let w = world(backend).await;
    let key = w
        .ok(
            Method::POST,
            "/v1/apikeys",
            json!({"name": "ci", "role": "MANAGER"}),
        )
        .await;
    let secret = key["secret"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, "/v1/collateral"),
        (Method::GET, "/v1/collateral/export"),
        (Method::POST, "/v1/collateral"),
    ] {
        let r = w
            .http
            .request(method, format!("{}{path}", w.base))
            .bearer_auth(secret)
            .json(&json!({"collateral": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    w.m.shutdown().await;
}

/// A TCB recovery Intel publishes (here the simulated root) reaches the manager through the
/// refresher: the new evaluation number is current, and the next quote of a platform made
/// before it is OutOfDate, which the zone's default policy refuses. The early set announces it
/// a refresh ahead without changing any verdict.
async fn a_tcb_recovery_changes_the_next_verdict(backend: Backend) {
    let mut w = world_with_pccs(backend).await;
    let platform = w.dir.path().join("platform");
    let (st, v) = enroll(&w, None).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["node"]["sgx_info"]["tcb_status"], "UpToDate", "{v}");
    let evaluation = |sets: &[Value], update: &str| {
        sets.iter()
            .find(|s| s["update"] == update)
            .map(|s| s["tcb_evaluation_data_number"].clone())
    };

    // Announced: the early set moves, the standard one and the verdict stay.
    sim::tcb_recovery(&platform, true).unwrap();
    set_clock(&mut w, T0 + DAY).await;
    let issue = |t: i64, early: bool| {
        sim::issue_collateral_set(&platform, &sim::DEFAULT_FMSPC, t as u64, early)
            .unwrap()
            .into_parts()
    };
    pccs(&w).set_parts(issue(T0 + DAY, false));
    pccs(&w).set_early_parts(Some(issue(T0 + DAY, true)));
    let r = refresh(&w).await;
    assert_eq!((r.fetched, r.failed), (2, 0), "{r:?}");
    let all = sets(&w).await;
    assert_eq!(evaluation(&all, "early"), Some(json!(2)), "{all:?}");
    assert_eq!(evaluation(&all, "standard"), Some(json!(1)), "{all:?}");
    let (st, v) = enroll(&w, None).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");

    // In force: the refresher fetches it and the next enrollment is judged by it.
    sim::tcb_recovery(&platform, false).unwrap();
    pccs(&w).set_parts(issue(T0 + 2 * DAY, false));
    pccs(&w).set_early_parts(None);
    set_clock(&mut w, T0 + 2 * DAY).await;
    assert!(refresh(&w).await.changed >= 1);
    assert_eq!(evaluation(&sets(&w).await, "standard"), Some(json!(2)));
    let (st, v) = enroll(&w, None).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "node_policy"),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("OutOfDate"), "{v}");
    w.m.shutdown().await;
}

/// Collateral a manager before schema version 15 stored (`platform_collateral`) is offered once
/// at the next start: current if it still verifies, and the old rows are gone.
async fn collateral_of_the_previous_schema_is_adopted(backend: Backend) {
    let w = world(backend).await;
    let config = w.m.state.config.clone();
    let url = config.database_url();
    let old = collateral_at(&w, T0);
    let World { m, clock, .. } = w;
    m.shutdown().await;
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO platform_collateral (fmspc, root_fingerprint, collateral, \
         tcb_evaluation_data_number, updated_at) VALUES ($1, $2, $3, 1, $4)",
    )
    .bind(hex::encode(sim::DEFAULT_FMSPC))
    .bind("00")
    .bind(old.to_string())
    .bind(T0)
    .execute(&mut db)
    .await
    .unwrap();
    let m = ccm_manager::start(config, std::sync::Arc::new(clock))
        .await
        .unwrap();
    let sets = m.state.store.collateral_sets().await.unwrap();
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert_eq!(sets[0].ages.tcb_info_issued, issued(T0));
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM platform_collateral")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(left, 0);
    m.shutdown().await;
}

/// A quote whose PCK chain does not verify (a simulated root the manager does not trust) is
/// refused without asking the PCCS anything: made-up certificates cannot make the manager query
/// the PCS about made-up platforms.
async fn an_untrusted_pck_chain_fetches_nothing(backend: Backend) {
    let w = world_with_pccs(backend).await;
    let other = w.dir.path().join("other-root");
    sim::init(&other, &sim::PlatformOptions::new(T0 as u64)).unwrap();
    let (token, _) = w.join_token(json!({})).await;
    let (_, n) = w.nonce(&token).await;
    let nonce = n["nonce"].as_str().unwrap().to_string();
    let (st, v, _) = w.enroll_with(&token, &nonce, &nonce, &other, None).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "quote_rejected"),
        "{v}"
    );
    let seen = pccs(&w).seen.lock().unwrap().clone();
    assert!(seen.is_empty(), "{seen:?}");
    // A genuine one fetches.
    let (st, v) = enroll(&w, None).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(!pccs(&w).seen.lock().unwrap().is_empty());
    w.m.shutdown().await;
}

/// dcap-qvl's transport: the test's HTTP client (which pins the manager's certificate).
struct PinnedHttp(reqwest::Client);

impl dcap_qvl::http::HttpClient for PinnedHttp {
    async fn get(&self, url: &str) -> anyhow::Result<dcap_qvl::http::HttpResponse> {
        let r = self.0.get(url).send().await?;
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = r.bytes().await?.to_vec();
        Ok(dcap_qvl::http::HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// dcap-qvl's `CollateralClient`, with the manager's base URL as its PCCS, fetches collateral
/// (standard and early sets, and the set by its evaluation number) with which dcap-qvl's
/// verifier accepts a simulated quote.
async fn dcap_qvl_fetches_from_the_manager(backend: Backend) {
    use dcap_qvl::collateral::{CollateralClient, TcbEvaluationDataSet};
    let w = world_with_pccs(backend).await;
    let (st, v) = enroll(&w, None).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // The refresher fetches the early set beside the standard one.
    assert_eq!(refresh(&w).await.fetched, 1);
    let platform = w.dir.path().join("platform");
    let quote = super::sim_quote(&platform, [7; 64]);
    let root_pem = std::fs::read(platform.join(sim::ROOT_CA_FILE)).unwrap();
    let root_der = pem::parse(&root_pem).unwrap().into_contents();
    for set in [
        TcbEvaluationDataSet::Standard,
        TcbEvaluationDataSet::Early,
        TcbEvaluationDataSet::Number(1),
    ] {
        let client = CollateralClient::<dcap_qvl::configs::RustCryptoConfig, _>::new(
            PinnedHttp(w.http.clone()),
            &w.base,
        )
        .with_evaluation_data_set(set);
        let collateral = client.fetch(&quote).await.unwrap();
        let verified = dcap_qvl::verify::QuoteVerifier::new(root_der.clone())
            .with_config::<dcap_qvl::configs::RustCryptoConfig>()
            .verify(&quote, &collateral, (T0 + 60) as u64)
            .unwrap_or_else(|e| panic!("{set:?}: {e:#}"));
        assert_eq!(verified.status, "UpToDate", "{set:?}");
    }
    w.m.shutdown().await;
}

both_backends!(
    fetched_on_demand_refreshed_and_outlived,
    older_uploads_and_imports_change_nothing,
    serves_the_pccs_api,
    collateral_is_for_administrators,
    dcap_qvl_fetches_from_the_manager,
    a_tcb_recovery_changes_the_next_verdict,
    collateral_of_the_previous_schema_is_adopted,
    an_untrusted_pck_chain_fetches_nothing,
);
