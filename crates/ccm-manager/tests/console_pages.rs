//! The web console's pages and forms over real HTTP against a real manager (SQLite on a temp
//! dir, 127.0.0.1:0): status codes, key content, CSRF refusal that changes nothing, errors next
//! to their fields, role enforcement, and 404 for other accounts' objects.
// A failed step aborts the test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod console_support;

use std::sync::Arc;

use ccm_api::tasks::{TaskStatusType, TaskType};
use ccm_manager::ManualClock;
use ccm_store::TaskFilter;
use console_support::{
    ConsoleClient, Manager, Page, TUTORIAL, attr_after, tutorial_pairs, unescape,
};
use reqwest::StatusCode;

const T0: i64 = 1_800_000_000;

async fn manager() -> (Manager, ManualClock) {
    let clock = ManualClock::new(T0);
    (Manager::start(false, Arc::new(clock.clone())).await, clock)
}

/// The audit chain's length: every state change appends to it, so an unchanged length proves
/// a refused request changed nothing.
async fn audit_len(m: &Manager) -> i64 {
    m.store()
        .list_audit_before(None, None, 1)
        .await
        .unwrap()
        .first()
        .map_or(0, |e| e.seq)
}

/// The account's images (this file's accounts hold a few).
async fn builds(m: &Manager, acct: uuid::Uuid) -> Vec<ccm_api::builds::Build> {
    m.store()
        .list_builds(
            acct,
            &Default::default(),
            &ccm_store::PageRequest::first(1000),
        )
        .await
        .unwrap()
        .items
}

async fn pending_tasks(m: &Manager, acct: uuid::Uuid) -> Vec<ccm_api::tasks::Task> {
    m.store()
        .list_tasks(
            acct,
            &TaskFilter {
                status: Some(TaskStatusType::Inprogress),
                task_type: None,
                entity_id: None,
            },
            &ccm_store::PageRequest {
                limit: 100,
                start: ccm_store::Start::Offset(0),
            },
        )
        .await
        .unwrap()
        .items
}

/// A signed-up user with a selected account (the manager's first one presents the setup token
/// and administers the manager).
async fn user_with_account(m: &Manager, email: &str, account: &str) -> (ConsoleClient, uuid::Uuid) {
    let mut c = m.client();
    c.sign_up(email).await;
    let acct = c.create_account(account, m.store()).await;
    (c, acct)
}

const MRENCLAVE: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";
const MRSIGNER: &str = "cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34";

async fn record_image(c: &mut ConsoleClient, app_id: &str, tag: &str) -> Page {
    c.submit(
        &format!("/console/images/new?app_id={app_id}"),
        "/console/images",
        &[
            ("mode", "known"),
            ("known_app_id", app_id),
            ("docker_info.docker_image_name", "registry/python-flask-sgx"),
            ("docker_info.docker_version", tag),
            ("docker_info.docker_image_sha", ""),
            ("mrenclave", MRENCLAVE),
            ("mrsigner", MRSIGNER),
            ("isvprodid", ""),
            ("isvsvn", ""),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_visitors_are_sent_to_login_and_assets_are_cached() {
    let (m, _) = manager().await;
    let mut c = ConsoleClient::new(&m.base());
    c.get("/").await.assert_redirect("/console");
    c.get("/console").await.assert_redirect("/console/login");
    c.get("/console/apps?page=2")
        .await
        .assert_redirect("/console/login?next=%2Fconsole%2Fapps%3Fpage%3D2");
    // A POST without a session changes nothing and goes to the login page.
    c.post_raw("/console/accounts", &[("name", "x")])
        .await
        .assert_redirect("/console/login");
    let login = c.get("/console/login?next=/console/apps").await;
    assert_eq!(login.status, StatusCode::OK);
    login.assert_contains(r#"name="next" value="/console/apps""#);
    // An off-site `next` is dropped.
    let login = c.get("/console/login?next=https://evil.example/").await;
    login.assert_contains(r#"name="next" value="""#);
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(login.headers["cache-control"], "no-store");
    // Static files: versioned URL in the page, long-lived caching, nothing else served.
    let css_url = attr_after(&login.body, "rel=\"stylesheet\" href=\"").unwrap();
    assert!(css_url.starts_with("/console/static/console.css?v="));
    let css = c.get(&css_url).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(
        css.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(css.body.contains(".badge.sim"));
    assert_eq!(
        c.get("/console/static/../Cargo.toml").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.get("/console/static/x.js").await.status,
        StatusCode::NOT_FOUND
    );
    let missing = c.get("/console/no-such-page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    missing.assert_contains("does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_log_in_log_out_with_csrf_and_cookie_attributes() {
    let (m, clock) = manager().await;
    let mut c = ConsoleClient::new(&m.base());
    let form = c.get("/console/signup").await;
    assert_eq!(form.status, StatusCode::OK);
    // The pre-session cookie carries the double-submit secret.
    assert!(form.set_cookies.iter().any(|s| s.starts_with("ccm_pre=")
        && s.contains("HttpOnly")
        && s.contains("SameSite=Strict")));
    let token = form.csrf();
    let fields = [
        ("user_email", "alice@example.com"),
        ("user_password", console_support::PASSWORD),
        ("password_confirm", console_support::PASSWORD),
    ];
    let before = audit_len(&m).await;
    // Without a token, and with a wrong one: refused before anything happens.
    let p = c.post_raw("/console/signup", &fields).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    p.assert_contains("nothing was changed");
    let mut wrong = vec![("_csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")];
    wrong.extend_from_slice(&fields);
    assert_eq!(
        c.post_raw("/console/signup", &wrong).await.status,
        StatusCode::FORBIDDEN
    );
    // A token from another visitor's pre-session cookie does not fit this one.
    let other = ConsoleClient::new(&m.base())
        .get("/console/signup")
        .await
        .csrf();
    let mut foreign = vec![("_csrf", other.as_str())];
    foreign.extend_from_slice(&fields);
    assert_eq!(
        c.post_raw("/console/signup", &foreign).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(
        m.store()
            .user_by_email("alice@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(audit_len(&m).await, before);

    // Errors next to their fields, values kept (never the password).
    let p = c
        .post_raw(
            "/console/signup",
            &[
                ("_csrf", token.as_str()),
                ("user_email", "not-an-email"),
                ("user_password", "short"),
                ("password_confirm", "different"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        p.field_error("password-confirm").unwrap(),
        "does not match the password"
    );
    let p = c
        .post_raw(
            "/console/signup",
            &[
                ("_csrf", token.as_str()),
                ("user_email", "not-an-email"),
                ("user_password", "short"),
                ("password_confirm", "short"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.field_error("user-email")
            .unwrap()
            .contains("e-mail address")
    );
    assert!(
        p.field_error("user-password")
            .unwrap()
            .contains("at least 8")
    );
    p.assert_contains(r#"value="not-an-email""#);
    assert!(!p.body.contains("value=\"short\""));

    // Sign-up logs in: an HttpOnly, SameSite=Strict session cookie (not Secure over HTTP).
    let mut ok = vec![("_csrf", token.as_str())];
    ok.extend_from_slice(&fields);
    let p = c.post_raw("/console/signup", &ok).await;
    p.assert_redirect("/console/accounts");
    let cookie = p
        .set_cookies
        .iter()
        .find(|s| s.starts_with("ccm_session=ccmst1_"))
        .expect("session cookie");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/")
    );
    assert!(!cookie.contains("Secure"));
    // The cookie's token is a session of the API's session store.
    let session_token = c.cookies["ccm_session"].clone();
    let session = m
        .store()
        .session_by_token_hash(&ccm_manager::auth::token_hash(&session_token))
        .await
        .unwrap()
        .expect("a stored session");
    assert_eq!(session.selected_acct_id, None);
    let accounts = c.get("/console/accounts").await;
    accounts.assert_contains("Welcome! Create an account to start.");
    accounts.assert_contains("alice@example.com");
    // The flash shows once.
    assert!(!c.get("/console/accounts").await.body.contains("Welcome!"));
    // Signed-in users' forms carry a session-bound token; the pre-session one no longer fits.
    let p = c
        .post_raw(
            "/console/accounts",
            &[("_csrf", token.as_str()), ("name", "a")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);

    // The token rotates once half its lifetime has passed; the old one stops working.
    clock.advance(1900);
    let p = c.get("/console/accounts").await;
    assert_eq!(p.status, StatusCode::OK);
    assert_ne!(c.cookies["ccm_session"], session_token);
    assert!(
        m.store()
            .session_by_token_hash(&ccm_manager::auth::token_hash(&session_token))
            .await
            .unwrap()
            .is_none()
    );

    // Log out: the session ends everywhere and the cookie is cleared.
    let rotated = c.cookies["ccm_session"].clone();
    let p = c.submit("/console/accounts", "/console/logout", &[]).await;
    p.assert_redirect("/console/login");
    assert!(
        p.set_cookies
            .iter()
            .any(|s| s.starts_with("ccm_session=;") && s.contains("Max-Age=0"))
    );
    assert!(!c.cookies.contains_key("ccm_session"));
    assert!(
        m.store()
            .session_by_token_hash(&ccm_manager::auth::token_hash(&rotated))
            .await
            .unwrap()
            .is_none()
    );
    c.get("/console/accounts")
        .await
        .assert_redirect("/console/login");
    assert!(
        c.get("/console/login")
            .await
            .body
            .contains("You have been logged out.")
    );

    // Log in: wrong password is refused with a message; the right one opens a session.
    let p = c
        .submit(
            "/console/login",
            "/console/login",
            &[
                ("user_email", "alice@example.com"),
                ("user_password", "wrong password"),
                ("next", ""),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    p.assert_contains("Wrong e-mail or password.");
    p.assert_contains(r#"value="alice@example.com""#);
    let p = c
        .submit(
            "/console/login",
            "/console/login",
            &[
                ("user_email", "alice@example.com"),
                ("user_password", console_support::PASSWORD),
                ("next", "/console/accounts?select=1"),
            ],
        )
        .await;
    p.assert_redirect("/console/accounts?select=1");
    assert!(c.cookies.contains_key("ccm_session"));
    // An expired session cookie sends the user to the login page and is cleared.
    clock.advance(86_400 * 2);
    let p = c.get("/console/accounts").await;
    p.assert_redirect("/console/login");
    assert!(!c.cookies.contains_key("ccm_session"));
}

/// While no administrator exists, the sign-up form asks for the setup token: a wrong one is
/// refused next to its field and creates nothing; the user who gives the right one administers
/// the manager, and the field goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_form_takes_the_setup_token_while_no_administrator_exists() {
    let (m, _) = manager().await;
    let mut c = ConsoleClient::new(&m.base());
    c.get("/console/signup")
        .await
        .assert_contains("name=\"setup_token\"");
    let p = c
        .submit(
            "/console/signup",
            "/console/signup",
            &[
                ("user_email", "x@example.com"),
                ("user_password", console_support::PASSWORD),
                ("password_confirm", console_support::PASSWORD),
                ("setup_token", "ccmsetup1_wrong"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.field_error("setup-token").is_some(), "{}", p.body);
    assert!(
        m.store()
            .user_by_email("x@example.com")
            .await
            .unwrap()
            .is_none()
    );
    m.client().sign_up("root@example.com").await;
    let root = m
        .store()
        .user_by_email("root@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(root.user.is_sysadmin);
    assert!(!m.setup_token_file().exists());
    let form = ConsoleClient::new(&m.base()).get("/console/signup").await;
    assert!(!form.body.contains("name=\"setup_token\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_cookies_are_secure_and_host_prefixed() {
    let m = Manager::start(true, Arc::new(ccm_manager::SystemClock)).await;
    assert!(m.base().starts_with("https://"));
    let mut c = m.client();
    let form = c.get("/console/signup").await;
    assert!(
        form.set_cookies
            .iter()
            .any(|s| s.starts_with("__Host-ccm_pre=") && s.contains("; Secure"))
    );
    let p = c.sign_up("carol@example.com").await;
    let cookie = p
        .set_cookies
        .iter()
        .find(|s| s.starts_with("__Host-ccm_session="))
        .expect("secure session cookie");
    assert!(
        cookie.contains("; Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
    );
    assert!(!cookie.contains("Domain="));
    assert_eq!(c.get("/console/accounts").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_created_selected_and_deleted_after_confirmation() {
    let (m, _) = manager().await;
    let mut c = ConsoleClient::new(&m.base());
    c.sign_up("bob@example.com").await;
    // Pages that need an account send the user to choose one.
    c.get("/console/apps")
        .await
        .assert_redirect("/console/accounts?select=1");
    let p = c.get("/console/accounts?select=1").await;
    p.assert_contains("You are not a member of any account yet.");
    // Refused without a token; a blank name is an error next to the field.
    let before = audit_len(&m).await;
    assert_eq!(
        c.post_raw("/console/accounts", &[("name", "Team A")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(audit_len(&m).await, before);
    let p = c
        .submit("/console/accounts", "/console/accounts", &[("name", " ")])
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p.field_error("name").unwrap(), "must not be empty");
    assert_eq!(audit_len(&m).await, before);

    let a = c.create_account("Team A", m.store()).await;
    let overview = c.get("/console").await;
    overview.assert_contains("Account “Team A” created and selected.");
    overview.assert_contains("Team A <span class=\"role\">MANAGER</span>");
    overview.assert_contains("Getting started");
    // A duplicate name is an error next to the field.
    let p = c
        .submit(
            "/console/accounts",
            "/console/accounts",
            &[("name", "Team A")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.field_error("name").unwrap().contains("already exists"));
    let b = c.create_account("Team B", m.store()).await;
    // Switch back to A.
    c.submit(
        "/console/accounts",
        &format!("/console/accounts/{a}/select"),
        &[],
    )
    .await
    .assert_redirect("/console");
    assert!(
        c.get("/console")
            .await
            .body
            .contains("Working in account “Team A”.")
    );

    // Deleting needs the typed name; a wrong one deletes nothing.
    let confirm = c.get(&format!("/console/accounts/{b}/delete")).await;
    confirm.assert_contains("Type the account name “Team B” to confirm");
    let before = audit_len(&m).await;
    let p = c
        .submit(
            &format!("/console/accounts/{b}/delete"),
            &format!("/console/accounts/{b}/delete"),
            &[("confirm_name", "Team A")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.field_error("confirm-name")
            .unwrap()
            .contains("nothing was deleted")
    );
    assert_eq!(audit_len(&m).await, before);
    let p = c
        .submit(
            &format!("/console/accounts/{b}/delete"),
            &format!("/console/accounts/{b}/delete"),
            &[("confirm_name", "Team B")],
        )
        .await;
    p.assert_redirect("/console/accounts");
    let user = m
        .store()
        .user_by_email("bob@example.com")
        .await
        .unwrap()
        .unwrap();
    let left: Vec<String> = m
        .store()
        .accounts_for_user(
            user.user.user_id,
            None,
            &ccm_store::PageRequest::first(1000),
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|(r, _)| r.name)
        .collect();
    assert_eq!(left, ["Team A"]);
    // An account the user is not in: 404.
    let mut stranger = ConsoleClient::new(&m.base());
    stranger.sign_up("eve@example.com").await;
    assert_eq!(
        stranger
            .get(&format!("/console/accounts/{a}/delete"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let p = stranger
        .submit(
            "/console/accounts",
            &format!("/console/accounts/{a}/select"),
            &[],
        )
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_application_is_added_edited_and_deleted() {
    let (m, _) = manager().await;
    let (mut c, acct) = user_with_account(&m, "dana@example.com", "Tutorial").await;
    let form = c.get("/console/apps/new").await;
    assert_eq!(form.status, StatusCode::OK);
    for label in [
        "Name",
        "Description",
        "Input image",
        "Output image",
        "ISVPRODID",
        "ISVSVN",
        "Memory size",
        "Thread count",
        "Domain",
        "Issuer",
        "Key type",
        "RSA key size",
        "Key path",
        "Certificate path",
    ] {
        form.assert_contains(&format!(">{label}"));
    }
    form.assert_contains("Issued by the manager");
    form.assert_contains(r#"value="/run/key.pem""#);

    // Refused without a token: nothing created.
    let before = audit_len(&m).await;
    let pairs = tutorial_pairs("flask", &TUTORIAL);
    assert_eq!(
        c.post_raw("/console/apps", &pairs).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(audit_len(&m).await, before);

    // Bad values: each error next to its field, the values kept, nothing created.
    let mut bad = tutorial_pairs("flask", &TUTORIAL);
    for (k, v) in bad.iter_mut() {
        match *k {
            "threads" => *v = "many",
            "domain" => *v = "MyApp",
            "output_image_name" => *v = "Registry/Bad Name",
            "key_path" => *v = "run/key.pem",
            _ => {}
        }
    }
    let p = c.submit("/console/apps/new", "/console/apps", &bad).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p.field_error("threads").unwrap(), "must be a whole number");
    p.assert_contains(r#"value="MyApp""#);
    let mut bad2 = tutorial_pairs("flask", &TUTORIAL);
    for (k, v) in bad2.iter_mut() {
        match *k {
            "domain" => *v = "MyApp",
            "output_image_name" => *v = "Registry/Bad Name",
            "key_path" => *v = "run/key.pem",
            "mem_size" => *v = "512",
            _ => {}
        }
    }
    let p = c.submit("/console/apps/new", "/console/apps", &bad2).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.field_error("domain")
            .unwrap()
            .contains("lowercase DNS name"),
        "{}",
        p.body
    );
    assert!(
        p.field_error("output-image-name")
            .unwrap()
            .contains("lowercase")
    );
    assert_eq!(
        p.field_error("key-path").unwrap(),
        "must be an absolute file path"
    );
    assert!(
        p.field_error("mem-size")
            .unwrap()
            .contains("between 16 and 262144")
    );
    p.assert_contains("Please correct the following");
    assert!(
        m.store()
            .list_apps(acct, &ccm_store::PageRequest::first(1000))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(audit_len(&m).await, before);

    // The tutorial's values.
    let p = c.add_tutorial_app(TUTORIAL.name).await;
    p.assert_redirect("/console/apps/");
    let app_path = p.location.clone().unwrap();
    let apps = m
        .store()
        .list_apps(acct, &ccm_store::PageRequest::first(1000))
        .await
        .unwrap()
        .items;
    let app = &apps[0];
    assert_eq!(app.name, "python-flask");
    assert_eq!(app.description.as_deref(), Some("Python Flask demo app"));
    assert_eq!(app.input_image_name, "registry/python-flask");
    assert_eq!(app.output_image_name, "registry/python-flask-sgx");
    assert_eq!(
        (app.isvprodid, app.isvsvn, app.mem_size, app.threads),
        (1, 1, 1024, 128)
    );
    assert_eq!(app.allowed_domains, ["myapp.domain.dom"]);
    let cert = app.certificate.as_ref().unwrap();
    assert_eq!(cert.subject, "myapp.domain.dom");
    assert_eq!(cert.issuer, ccm_api::apps::CertificateIssuer::ManagerCa);
    assert_eq!(cert.key_type, ccm_api::apps::KeyType::Rsa2048);
    assert_eq!(
        (cert.key_path.as_str(), cert.cert_path.as_str()),
        ("/run/key.pem", "/run/cert.pem")
    );
    let tasks = pending_tasks(&m, acct).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task_type, TaskType::DomainWhitelist);

    let page = c.get(&app_path).await;
    page.assert_contains(
        "Application “python-flask” added. Its domain waits for approval under Tasks.",
    );
    for text in [
        "registry/python-flask-sgx",
        "1024 MB",
        "RSA, 2048 bits",
        "/run/cert.pem",
        "myapp.domain.dom",
    ] {
        page.assert_contains(text);
    }
    assert_eq!(c.get("/console/apps").await.status, StatusCode::OK);
    // A duplicate name is an error next to the name.
    let p = c.add_tutorial_app(TUTORIAL.name).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.field_error("name").unwrap().contains("already exists"));

    // Edit: the form shows the stored values (1024 MB as 1 GB); EC P-256 and 64 threads saved.
    let edit = c.get(&format!("{app_path}/edit")).await;
    edit.assert_contains(r#"name="mem_size" type="number" value="1""#);
    let mut changed = tutorial_pairs("python-flask", &TUTORIAL);
    for (k, v) in changed.iter_mut() {
        match *k {
            "threads" => *v = "64",
            "key_type" => *v = "EC_P256",
            _ => {}
        }
    }
    c.submit(
        &format!("{app_path}/edit"),
        &format!("{app_path}/edit"),
        &changed,
    )
    .await
    .assert_redirect(&app_path);
    let app = &m
        .store()
        .list_apps(acct, &ccm_store::PageRequest::first(1000))
        .await
        .unwrap()
        .items[0];
    assert_eq!(app.threads, 64);
    assert_eq!(
        app.certificate.as_ref().unwrap().key_type,
        ccm_api::apps::KeyType::EcP256
    );

    // Delete through the confirmation page.
    c.get(&format!("{app_path}/delete"))
        .await
        .assert_contains("Delete application");
    c.submit(
        &format!("{app_path}/delete"),
        &format!("{app_path}/delete"),
        &[],
    )
    .await
    .assert_redirect("/console/apps");
    assert!(
        m.store()
            .list_apps(acct, &ccm_store::PageRequest::first(1000))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(c.get(&app_path).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_and_task_approval_and_denial() {
    let (m, _) = manager().await;
    let (mut c, acct) = user_with_account(&m, "erin@example.com", "Images").await;
    let p = c.add_tutorial_app("flask").await;
    let app_path = p.location.unwrap();
    let app_id = app_path.trim_start_matches("/console/apps/").to_string();
    let form = c.get(&format!("/console/images/new?app_id={app_id}")).await;
    form.assert_contains("Output registry credentials");
    form.assert_contains("Record an image built elsewhere");
    form.assert_contains(r#"value="registry/python-flask-sgx""#);

    // A bad measurement is an error next to MRENCLAVE; nothing is recorded.
    let before = audit_len(&m).await;
    let p = c
        .submit(
            "/console/images/new",
            "/console/images",
            &[
                ("mode", "known"),
                ("known_app_id", &app_id),
                ("docker_info.docker_image_name", "registry/python-flask-sgx"),
                ("docker_info.docker_version", "1.0"),
                ("mrenclave", "xyz"),
                ("mrsigner", MRSIGNER),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        p.field_error("mrenclave").unwrap(),
        "must be 64 hexadecimal digits"
    );
    assert_eq!(audit_len(&m).await, before);

    let p = record_image(&mut c, &app_id, "1.0").await;
    p.assert_redirect("/console/images/");
    let image_path = p.location.unwrap();
    let page = c.get(&image_path).await;
    page.assert_contains("recorded; it waits for approval under Tasks.");
    page.assert_contains(MRENCLAVE);
    page.assert_contains(MRSIGNER);
    page.assert_contains(">PENDING<");
    let list = c.get("/console/images").await;
    list.assert_contains("registry/python-flask-sgx:1.0");

    // Both tasks are pending; the tasks page offers approve and deny.
    let tasks = pending_tasks(&m, acct).await;
    assert_eq!(tasks.len(), 2);
    let tasks_page = c.get("/console/tasks").await;
    tasks_page.assert_contains("DOMAIN_WHITELIST");
    tasks_page.assert_contains("BUILD_WHITELIST");
    tasks_page.assert_contains(">Approve</button>");
    tasks_page.assert_contains("Deny…");
    let build_task = tasks
        .iter()
        .find(|t| t.task_type == TaskType::BuildWhitelist)
        .unwrap();
    let domain_task = tasks
        .iter()
        .find(|t| t.task_type == TaskType::DomainWhitelist)
        .unwrap();

    // CSRF refusal changes nothing.
    let before = audit_len(&m).await;
    let p = c
        .post_raw(
            &format!("/console/tasks/{}/approve", build_task.task_id),
            &[("back", "/console/tasks")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(audit_len(&m).await, before);
    assert_eq!(pending_tasks(&m, acct).await.len(), 2);

    // Approve the image; deny the domain with a too-long reason (error next to it), then a
    // proper one.
    c.submit(
        "/console/tasks",
        &format!("/console/tasks/{}/approve", build_task.task_id),
        &[("back", "/console/tasks")],
    )
    .await
    .assert_redirect("/console/tasks");
    let long = "x".repeat(1025);
    let p = c
        .submit(
            "/console/tasks",
            &format!("/console/tasks/{}/deny", domain_task.task_id),
            &[
                ("denial_reason", long.as_str()),
                ("back", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("must be at most 1024 characters"),
        "{}",
        p.body
    );
    let p = c
        .submit(
            "/console/tasks",
            &format!("/console/tasks/{}/deny", domain_task.task_id),
            &[
                ("denial_reason", "not our domain"),
                ("back", "https://evil.example/"),
            ],
        )
        .await;
    p.assert_redirect("/console/tasks");
    assert!(pending_tasks(&m, acct).await.is_empty());
    let b = builds(&m, acct).await.pop().unwrap();
    assert_eq!(
        b.status.status,
        ccm_api::builds::BuildStatusType::Whitelisted
    );
    let detail = c
        .get(&format!("/console/tasks/{}", domain_task.task_id))
        .await;
    detail.assert_contains("not our domain");
    detail.assert_contains(">DENIED<");
    // Deciding again is refused with the reason, nothing changes.
    let before = audit_len(&m).await;
    let p = c
        .submit(
            "/console/tasks",
            &format!("/console/tasks/{}/approve", domain_task.task_id),
            &[],
        )
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    assert_eq!(audit_len(&m).await, before);
    let approved = c.get("/console/tasks?status=SUCCESS").await;
    approved.assert_contains("BUILD_WHITELIST");
    assert_eq!(
        c.get("/console/tasks?status=BOGUS").await.status,
        StatusCode::BAD_REQUEST
    );

    // Delete the image.
    c.submit(
        &format!("{image_path}/delete"),
        &format!("{image_path}/delete"),
        &[],
    )
    .await
    .assert_redirect("/console/images");
    assert!(builds(&m, acct).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_cannot_decide_or_write_and_other_accounts_objects_are_404() {
    let (m, _) = manager().await;
    let (mut owner, acct) = user_with_account(&m, "owner@example.com", "Owned").await;
    let app_path = owner.add_tutorial_app("flask").await.location.unwrap();
    let app_id: uuid::Uuid = app_path
        .trim_start_matches("/console/apps/")
        .parse()
        .unwrap();
    let task = pending_tasks(&m, acct).await.pop().unwrap();

    // A READER of the same account.
    let mut reader = ConsoleClient::new(&m.base());
    reader.sign_up("reader@example.com").await;
    let owner_user = m
        .store()
        .user_by_email("owner@example.com")
        .await
        .unwrap()
        .unwrap();
    let reader_user = m
        .store()
        .user_by_email("reader@example.com")
        .await
        .unwrap()
        .unwrap();
    m.store()
        .add_member(
            acct,
            reader_user.user.user_id,
            ccm_api::accounts::AccessRole::Reader,
            &ccm_store::Actor {
                user_id: Some(owner_user.user.user_id),
                name: "owner@example.com".into(),
            },
            T0,
        )
        .await
        .unwrap();
    reader
        .submit(
            "/console/accounts",
            &format!("/console/accounts/{acct}/select"),
            &[],
        )
        .await
        .assert_redirect("/console");
    let tasks = reader.get("/console/tasks").await;
    assert_eq!(tasks.status, StatusCode::OK);
    tasks.assert_contains("needs the MANAGER role");
    assert!(!tasks.body.contains(">Approve</button>"));
    assert!(
        !reader
            .get("/console/apps")
            .await
            .body
            .contains("Add application")
    );
    assert_eq!(reader.get(&app_path).await.status, StatusCode::OK);
    let before = audit_len(&m).await;
    let p = reader
        .submit(
            "/console/tasks",
            &format!("/console/tasks/{}/approve", task.task_id),
            &[],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    p.assert_contains("MANAGER");
    let p = reader
        .submit(
            "/console/tasks",
            &format!("/console/tasks/{}/deny", task.task_id),
            &[("denial_reason", "no")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let pairs = tutorial_pairs("reader-app", &TUTORIAL);
    let p = reader
        .submit("/console/apps", "/console/apps", &pairs)
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reader.get("/console/apps/new").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        reader.get("/console/nodes/enroll").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        reader.get("/console/audit").await.status,
        StatusCode::FORBIDDEN
    );
    let p = reader
        .submit("/console/apps", &format!("{app_path}/delete"), &[])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(audit_len(&m).await, before);
    assert_eq!(pending_tasks(&m, acct).await.len(), 1);

    // Another account's user: every object of this account is 404, and deleting does nothing.
    let (mut other, _) = user_with_account(&m, "other@example.com", "Other").await;
    for path in [
        app_path.clone(),
        format!("{app_path}/edit"),
        format!("/console/tasks/{}", task.task_id),
        format!("/console/images/{}", uuid::Uuid::new_v4()),
        format!("/console/nodes/{}", uuid::Uuid::new_v4()),
        format!("/console/certificates/{}", uuid::Uuid::new_v4()),
    ] {
        let p = other.get(&path).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}");
    }
    let before = audit_len(&m).await;
    let p = other
        .submit("/console/apps", &format!("{app_path}/delete"), &[])
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    let p = other
        .submit(
            "/console/tasks",
            &format!("/console/tasks/{}/approve", task.task_id),
            &[],
        )
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert_eq!(audit_len(&m).await, before);
    assert!(m.store().get_app(acct, app_id).await.unwrap().is_some());
    // A malformed id is refused, not a server error.
    assert_eq!(
        other.get("/console/apps/not-a-uuid").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolling_a_node_shows_the_agent_command_and_nodes_are_labelled() {
    let (m, _) = manager().await;
    let (mut c, acct) = user_with_account(&m, "frank@example.com", "Nodes").await;
    let nodes = c.get("/console/nodes").await;
    nodes.assert_contains("No compute node has enrolled yet.");
    c.get("/console/certificates")
        .await
        .assert_contains("No certificate has been requested yet.");
    c.get("/console/running")
        .await
        .assert_contains("No application is running.");
    let form = c.get("/console/nodes/enroll").await;
    form.assert_contains("Create join token");
    let p = c
        .submit(
            "/console/nodes/enroll",
            "/console/nodes/enroll",
            &[
                ("expires_in", "3600"),
                ("single_use", "on"),
                ("description", "rack 1"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.headers["cache-control"], "no-store");
    let marker = "<code id=\"agent-command\">";
    let start = p.body.find(marker).unwrap() + marker.len();
    let end = p.body[start..].find("</code>").unwrap() + start;
    let command = unescape(&p.body[start..end]);
    let prefix = format!("ccm agent --manager {} --join-token ", m.base());
    assert!(command.starts_with(&prefix), "{command}");
    let token = ccm_api::zones::JoinToken::parse(command.trim_start_matches(&prefix)).unwrap();
    assert_eq!(
        token.manager_fingerprint, None,
        "plain HTTP: no pinned certificate"
    );
    let zone = m
        .store()
        .list_zones(acct)
        .await
        .unwrap()
        .pop()
        .unwrap()
        .zone
        .zone_id;
    // The zone CA certificate, which clients of the applications trust, as a file.
    c.get("/console/certificates")
        .await
        .assert_contains("href=\"/console/zone/certificate\" download");
    let ca = c.get("/console/zone/certificate").await;
    assert_eq!(ca.status, StatusCode::OK);
    assert_eq!(ca.headers["content-type"], "application/x-pem-file");
    assert_eq!(
        ca.headers["content-disposition"],
        "attachment; filename=\"zone-ca.pem\""
    );
    let zone_cert = &m.store().list_zones(acct).await.unwrap()[0]
        .zone
        .certificate;
    assert!(zone_cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(&ca.body, zone_cert);
    let stored = m.store().list_join_tokens(acct, zone).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].token_id, token.token_id);
    assert!(stored[0].single_use);
    assert_eq!(stored[0].expires_at, T0 + 3600);
    // A bad expiry is an error next to it; no token is made.
    let p = c
        .submit(
            "/console/nodes/enroll",
            "/console/nodes/enroll",
            &[("expires_in", "5")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.field_error("expires-in").unwrap().contains("between 60"));
    assert_eq!(
        m.store().list_join_tokens(acct, zone).await.unwrap().len(),
        1
    );

    // A node enrolled with that token (the store's enrollment, as the provisioning endpoint
    // records it) on a simulated platform: listed, labelled SIMULATED, deactivatable.
    let nonce_hash = "11".repeat(32);
    m.store()
        .create_enroll_nonce(token.token_id, &nonce_hash, T0, T0 + 300)
        .await
        .unwrap();
    use sha2::Digest as _;
    let node = m
        .store()
        .enroll_node(
            &ccm_store::NewNode {
                node_id: uuid::Uuid::new_v4(),
                acct_id: acct,
                zone_id: zone,
                name: "node-1".into(),
                description: None,
                ipaddress: Some("127.0.0.1".into()),
                version: Some("0.1.0".into()),
                sgx_info: ccm_api::nodes::SgxInfo {
                    version: Some("0.1.0".into()),
                    fmspc: "00906ed50000".into(),
                    tcb_status: ccm_api::apps::TcbStatus::UpToDate,
                    advisory_ids: vec![],
                    tcb_date: "2024-03-13T00:00:00Z".into(),
                    ppid_hash: "22".repeat(32),
                    simulated: true,
                    root_fingerprint: "33".repeat(32),
                },
                cert_pem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
                cert_serial: "01".into(),
                cert_not_after: T0 + 86_400,
                token_id: token.token_id,
                secret_hash: hex::encode(sha2::Sha256::digest(token.secret)),
                nonce_hash,
                approval: None,
            },
            T0,
        )
        .await
        .unwrap();
    let nodes = c.get("/console/nodes").await;
    nodes.assert_contains("node-1");
    nodes.assert_contains(">SIMULATED<");
    nodes.assert_contains("00906ed50000");
    nodes.assert_contains(">UpToDate<");
    let detail = c.get(&format!("/console/nodes/{}", node.node_id)).await;
    detail.assert_contains("SIMULATED platform.");
    detail.assert_contains("Deactivate node");

    // An application certificate issued through the node (as attested issuance records it):
    // the app shows as running on the node, the certificate is viewable and downloadable.
    let app_path = c.add_tutorial_app("python-flask").await.location.unwrap();
    let app_id: uuid::Uuid = app_path
        .trim_start_matches("/console/apps/")
        .parse()
        .unwrap();
    let cert_id = uuid::Uuid::new_v4();
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
    m.store()
        .record_issuances(
            &[ccm_store::IssuanceRecord {
                certificate_id: cert_id,
                task_id: uuid::Uuid::new_v4(),
                acct_id: acct,
                zone_id: zone,
                node_id: node.node_id,
                node_name: "node-1".into(),
                app_id: Some(app_id),
                build_id: None,
                status: ccm_api::certificates::CertificateStatusType::Issued,
                csr: "-----BEGIN CERTIFICATE REQUEST-----\n".into(),
                quote: vec![3, 0],
                domains: vec!["myapp.domain.dom".into()],
                enclave: Some(ccm_store::EnclaveFacts {
                    info: ccm_api::builds::EnclaveInfo {
                        mrenclave: MRENCLAVE.into(),
                        mrsigner: MRSIGNER.into(),
                        isvprodid: 1,
                        isvsvn: 1,
                    },
                    debug: false,
                    cpusvn: "00".repeat(16),
                    tcb_status: "UpToDate".into(),
                }),
                simulated: true,
                cert_pem: Some(pem.into()),
                serial: Some("0a1b".into()),
                valid_from: Some(T0),
                valid_until: Some(T0 + 30 * 86_400),
                message: None,
                task_status: ccm_api::tasks::TaskStatusType::Success,
                nonce: None,
                spki_sha256: None,
            }],
            T0,
        )
        .await
        .unwrap();
    let running = c.get("/console/running").await;
    running.assert_contains("python-flask");
    running.assert_contains("node-1");
    running.assert_contains(">RUNNING<");
    running.assert_contains(">SIMULATED<");
    c.get(&app_path).await.assert_contains("node-1");
    c.get(&format!("/console/nodes/{}", node.node_id))
        .await
        .assert_contains("python-flask");
    let certs = c.get("/console/certificates").await;
    certs.assert_contains("myapp.domain.dom");
    certs.assert_contains(">ISSUED<");
    certs.assert_contains(">SIMULATED<");
    let cert = c.get(&format!("/console/certificates/{cert_id}")).await;
    cert.assert_contains("SIMULATED.");
    cert.assert_contains(MRENCLAVE);
    cert.assert_contains("Download PEM");
    let download = c.get(&format!("/console/certificates/{cert_id}/pem")).await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.headers["content-type"], "application/x-pem-file");
    assert_eq!(
        download.headers["content-disposition"],
        "attachment; filename=\"myapp.domain.dom.pem\""
    );
    assert_eq!(download.body, pem);
    let overview = c.get("/console").await;
    overview.assert_contains("SIMULATED");
    c.submit(
        &format!("/console/nodes/{}", node.node_id),
        &format!("/console/nodes/{}/deactivate", node.node_id),
        &[],
    )
    .await
    .assert_redirect(&format!("/console/nodes/{}", node.node_id));
    let detail = c.get(&format!("/console/nodes/{}", node.node_id)).await;
    detail.assert_contains(">DEACTIVATED<");
    assert!(!detail.body.contains("Deactivate node"));
    // Deactivation revoked the certificate issued through the node.
    c.get(&format!("/console/certificates/{cert_id}"))
        .await
        .assert_contains(">REVOKED<");

    // Revoke the token.
    c.submit(
        "/console/nodes",
        &format!("/console/nodes/tokens/{}/revoke", token.token_id),
        &[],
    )
    .await
    .assert_redirect("/console/nodes");
    let t = &m.store().list_join_tokens(acct, zone).await.unwrap()[0];
    assert!(t.revoked_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_pages_newest_first() {
    let (m, _) = manager().await;
    let (mut c, _) = user_with_account(&m, "gina@example.com", "Audited").await;
    for i in 0..60 {
        let name = format!("app-{i:02}");
        c.add_tutorial_app(&name)
            .await
            .assert_redirect("/console/apps/");
    }
    let first = c.get("/console/audit").await;
    assert_eq!(first.status, StatusCode::OK);
    first.assert_contains("app.create");
    first.assert_contains("Older →");
    // Newest first: the last app created is on page one, the account's creation is not.
    assert!(first.body.contains("app-59"));
    assert!(!first.body.contains("account.create"));
    // Following "Older" reaches the account's creation, each page older than the last.
    let mut page = first;
    let mut pages = 1;
    let mut last_seq = i64::MAX;
    while let Some(older) = attr_after(&page.body, "rel=\"next\" href=\"") {
        let before: i64 = older.rsplit('=').next().unwrap().parse().unwrap();
        assert!(before < last_seq);
        last_seq = before;
        page = c.get(&unescape(&older)).await;
        assert_eq!(page.status, StatusCode::OK);
        pages += 1;
    }
    assert!(pages >= 3, "{pages} pages");
    page.assert_contains("account.create");
    page.assert_contains("← Newest");
    // The sysadmin (first user) may see the whole manager's log.
    c.get("/console/audit?scope=all")
        .await
        .assert_contains("Whole manager");
    assert_eq!(
        c.get("/console/audit?before=0").await.status,
        StatusCode::BAD_REQUEST
    );
    // Apps paginate by 50.
    let apps = c.get("/console/apps").await;
    apps.assert_contains("Next →");
    assert!(!apps.body.contains("app-59"));
    let p2 = c.get("/console/apps?page=2").await;
    p2.assert_contains("app-59");
    p2.assert_contains("← Previous");
    assert_eq!(
        c.get("/console/apps?page=0").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversion_form_queues_a_job_with_live_progress() {
    let (m, _) = manager().await;
    let (mut c, acct) = user_with_account(&m, "hank@example.com", "Convert").await;
    // A registry address on this machine where nothing listens: the job fails at once, and no
    // traffic leaves the machine.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let input = format!("127.0.0.1:{port}/python-flask");
    let output = format!("127.0.0.1:{port}/python-flask-sgx");
    let mut pairs = tutorial_pairs("flask", &TUTORIAL);
    for (k, v) in pairs.iter_mut() {
        match *k {
            "input_image_name" => *v = &input,
            "output_image_name" => *v = &output,
            _ => {}
        }
    }
    let app_path = c
        .submit("/console/apps/new", "/console/apps", &pairs)
        .await
        .location
        .unwrap();
    let app_id = app_path.trim_start_matches("/console/apps/").to_string();
    // Missing tag: error next to it, nothing queued.
    let p = c
        .submit(
            "/console/images/new",
            "/console/images",
            &[
                ("mode", "convert"),
                ("app_id", &app_id),
                ("docker_version", ""),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p.field_error("docker-version").unwrap(), "is required");
    assert!(builds(&m, acct).await.is_empty());
    let p = c
        .submit(
            "/console/images/new",
            "/console/images",
            &[
                ("mode", "convert"),
                ("app_id", &app_id),
                ("docker_version", "1.0"),
                ("out_username", "pusher"),
                ("out_password", "s3cret-password"),
            ],
        )
        .await;
    p.assert_redirect("/console/images/");
    let image_path = p.location.unwrap();
    let page = c.get(&image_path).await;
    page.assert_contains("python-flask-sgx:1.0 queued.");
    page.assert_contains("id=\"conversion\"");
    assert!(!page.body.contains("s3cret-password"));
    let b = builds(&m, acct).await.pop().unwrap();
    assert!(b.conversion.is_some());
    // The progress fragment is the panel alone; it keeps polling until the job is over.
    let frag = c.get(&format!("{image_path}/progress")).await;
    assert_eq!(frag.status, StatusCode::OK);
    assert!(
        frag.body
            .starts_with("<div class=\"panel\" id=\"conversion\""),
        "{}",
        frag.body
    );
    assert!(!frag.body.contains("<html"));
    // Poll as the page's script does until the job is over: then the fragment stops polling,
    // asks for a reload, and shows why the job failed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let done = loop {
        let frag = c.get(&format!("{image_path}/progress")).await;
        if !frag.body.contains("data-poll=") {
            break frag;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "conversion still running: {}",
            frag.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    done.assert_contains(">FAILED<");
    done.assert_contains("data-reload=\"true\"");
    done.assert_contains("class=\"field-error\"");
    assert!(!done.body.contains("s3cret-password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_refuses_a_missing_or_wrong_csrf_token_and_changes_nothing() {
    let (m, _) = manager().await;
    let (mut c, acct) = user_with_account(&m, "ivan@example.com", "Forms").await;
    let app_path = c.add_tutorial_app("flask").await.location.unwrap();
    let app_id = app_path.trim_start_matches("/console/apps/").to_string();
    let image_path = record_image(&mut c, &app_id, "1.0").await.location.unwrap();
    let task = pending_tasks(&m, acct).await.pop().unwrap().task_id;
    let any = uuid::Uuid::new_v4();
    let posts = [
        "/console/signup".to_string(),
        "/console/login".to_string(),
        "/console/logout".to_string(),
        "/console/accounts".to_string(),
        format!("/console/accounts/{acct}/select"),
        format!("/console/accounts/{acct}/delete"),
        "/console/apps".to_string(),
        format!("{app_path}/edit"),
        format!("{app_path}/delete"),
        "/console/images".to_string(),
        format!("{image_path}/delete"),
        format!("/console/tasks/{task}/approve"),
        format!("/console/tasks/{task}/deny"),
        "/console/nodes/enroll".to_string(),
        format!("/console/nodes/tokens/{any}/revoke"),
        format!("/console/nodes/{any}/deactivate"),
    ];
    let before = audit_len(&m).await;
    let fields = [("name", "x"), ("confirm_name", "Forms"), ("mode", "known")];
    for path in &posts {
        let p = c.post_raw(path, &fields).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path} without a token");
        let mut wrong = vec![("_csrf", "d3JvbmctdG9rZW4td3JvbmctdG9rZW4td3JvbmctdG9rZW4")];
        wrong.extend_from_slice(&fields);
        let p = c.post_raw(path, &wrong).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path} with a wrong token");
    }
    assert_eq!(
        audit_len(&m).await,
        before,
        "a refused form changed something"
    );
    // Still signed in, everything still there.
    assert_eq!(c.get(&app_path).await.status, StatusCode::OK);
    assert_eq!(c.get(&image_path).await.status, StatusCode::OK);
    // A form body that is not urlencoded is refused too.
    let resp = c
        .http
        .post(format!("{}/console/apps", m.base()))
        .header("content-type", "application/json")
        .header(
            "cookie",
            format!("ccm_session={}", c.cookies["ccm_session"]),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(audit_len(&m).await, before);
}

/// A system administrator issues a reset link from the users page (others get 403); the link's
/// page sets the password once; an invitation link fills the sign-up form's token field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_links_and_invitation_links() {
    let (m, _) = manager().await;
    let mut admin = m.client();
    admin.sign_up("root@example.com").await;
    let mut bob = m.client();
    bob.sign_up("bob@example.com").await;
    let bob_id = m
        .store()
        .user_by_email("bob@example.com")
        .await
        .unwrap()
        .unwrap()
        .user
        .user_id
        .to_string();
    assert_eq!(
        bob.get("/console/users").await.status,
        StatusCode::FORBIDDEN
    );
    let users = admin.get("/console/users").await;
    assert_eq!(users.status, StatusCode::OK);
    users.assert_contains("bob@example.com");
    // The collateral page likewise (an offline manager without any yet).
    assert_eq!(
        bob.get("/console/collateral").await.status,
        StatusCode::FORBIDDEN
    );
    let collateral = admin.get("/console/collateral").await;
    assert_eq!(collateral.status, StatusCode::OK);
    collateral.assert_contains("Offline (no");
    collateral.assert_contains("No collateral yet");
    let issued = admin
        .submit(
            "/console/users",
            &format!("/console/users/{bob_id}/reset-token"),
            &[],
        )
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let start = issued.body.find("ccmreset1_").expect("the token is shown");
    let token: String = issued.body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();

    let mut anon = ConsoleClient::new(&m.base());
    let link = format!("/console/reset-password?user={bob_id}&token={token}");
    let form = anon.get(&link).await;
    assert_eq!(form.status, StatusCode::OK);
    form.assert_contains(&token);
    let pairs = [
        ("user", bob_id.as_str()),
        ("reset_token", token.as_str()),
        ("new_password", "brand new password 9"),
        ("password_confirm", "brand new password 9"),
    ];
    anon.submit(&link, "/console/reset-password", &pairs)
        .await
        .assert_redirect("/console/login");
    let again = anon.submit(&link, "/console/reset-password", &pairs).await;
    assert_eq!(
        again.status,
        StatusCode::UNAUTHORIZED,
        "the link works once"
    );
    anon.submit(
        "/console/login",
        "/console/login",
        &[
            ("user_email", "bob@example.com"),
            ("user_password", "brand new password 9"),
        ],
    )
    .await
    .assert_redirect("/console");

    let signup = ConsoleClient::new(&m.base())
        .get("/console/signup?invitation=ccminv1_example")
        .await;
    assert_eq!(signup.status, StatusCode::OK);
    signup.assert_contains("value=\"ccminv1_example\"");
}
