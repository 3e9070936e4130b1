//! The console in a real browser: headless Chromium (Debian's `chromium` under
//! `chromium-driver`) against a real manager serving HTTPS on 127.0.0.1:0. Walks the seed
//! tutorial's console steps a person takes — sign up, add an account, add the application with
//! the tutorial's values, record an image, approve both tasks, create a join token and read the
//! agent command, delete the account — with a screenshot after each step in
//! `target/test-artifacts/console_seed_steps/`.
// A failed step aborts the test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod console_support;

use std::sync::Arc;

use ccm_api::tasks::TaskStatusType;
use ccm_store::TaskFilter;
use ccm_testkit::browser::Browser;
use console_support::{Manager, PASSWORD, TUTORIAL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_seed_steps() {
    let m = Manager::start(true, Arc::new(ccm_manager::SystemClock)).await;
    let base = m.base();
    let mut b = Browser::start("console_seed_steps").await.unwrap();

    // Sign up: the session cookie is HttpOnly, so page scripts cannot read it.
    console_support::ui_sign_up(&mut b, &base, "operator@example.com", PASSWORD).await;
    let script_cookies = b.script("return document.cookie").await.unwrap();
    assert_eq!(
        script_cookies, "",
        "cookies visible to scripts: {script_cookies}"
    );
    b.screenshot("signed-up").await.unwrap();

    // Account.
    console_support::ui_create_account(&mut b, &base, "Seed tutorial").await;
    b.screenshot("account-created").await.unwrap();
    let user = m
        .store()
        .user_by_email("operator@example.com")
        .await
        .unwrap()
        .unwrap();
    let (acct, _) = m
        .store()
        .accounts_for_user(
            user.user.user_id,
            None,
            &ccm_store::PageRequest::first(1000),
        )
        .await
        .unwrap()
        .items
        .pop()
        .unwrap();

    // Application with the tutorial's values.
    let app_path = console_support::ui_add_app(&mut b, &base, &TUTORIAL).await;
    let text = b.page_text().await.unwrap();
    for shown in [
        "registry/python-flask-sgx",
        "1024 MB",
        "128",
        "myapp.domain.dom",
        "RSA, 2048 bits",
        "/run/key.pem",
        "/run/cert.pem",
    ] {
        assert!(
            text.contains(shown),
            "the application page lacks {shown}:\n{text}"
        );
    }
    b.screenshot("application-added").await.unwrap();
    let app = m
        .store()
        .list_apps(acct.acct_id, &ccm_store::PageRequest::first(1000))
        .await
        .unwrap()
        .items
        .pop()
        .unwrap();
    assert_eq!(
        (app.mem_size, app.threads, app.isvprodid, app.isvsvn),
        (1024, 128, 1, 1)
    );

    // A refused form shows the error next to its field and keeps the values.
    b.goto(&format!("{base}/console/apps/new")).await.unwrap();
    b.fill("name", "second").await.unwrap();
    b.fill("input_image_name", "registry/python-flask")
        .await
        .unwrap();
    b.fill("output_image_name", "registry/python-flask-sgx")
        .await
        .unwrap();
    b.fill("isvprodid", "70000").await.unwrap();
    b.fill("isvsvn", "1").await.unwrap();
    b.fill("domain", "Not A Domain").await.unwrap();
    b.click_button("Add application").await.unwrap();
    b.wait_for_text("Please correct the following")
        .await
        .unwrap();
    let isv_error = b.text_of("#f-isvprodid-error").await.unwrap();
    assert_eq!(isv_error, "must be between 0 and 65535");
    assert!(
        b.text_of("#f-domain-error")
            .await
            .unwrap()
            .contains("DNS name")
    );
    let kept = b.field("name").await.unwrap().prop("value").await.unwrap();
    assert_eq!(kept.as_deref(), Some("second"));
    b.screenshot("application-form-errors").await.unwrap();
    assert_eq!(
        m.store()
            .list_apps(acct.acct_id, &ccm_store::PageRequest::first(1000))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Image from known values.
    let mrenclave = "5f".repeat(32);
    let mrsigner = "a0".repeat(32);
    console_support::ui_record_image(&mut b, &base, &app_path, "1.0", &mrenclave, &mrsigner).await;
    let text = b.page_text().await.unwrap();
    assert!(
        text.contains(&mrenclave) && text.contains(&mrsigner),
        "{text}"
    );
    b.screenshot("image-recorded").await.unwrap();

    // Both tasks: the domain and the image.
    b.goto(&format!("{base}/console/tasks")).await.unwrap();
    b.wait_for_text("DOMAIN_WHITELIST").await.unwrap();
    b.wait_for_text("BUILD_WHITELIST").await.unwrap();
    b.screenshot("pending-tasks").await.unwrap();
    assert_eq!(console_support::ui_approve_all(&mut b, &base).await, 2);
    let pending = m
        .store()
        .list_tasks(
            acct.acct_id,
            &TaskFilter {
                status: Some(TaskStatusType::Inprogress),
                task_type: None,
                entity_id: None,
            },
            &ccm_store::PageRequest {
                limit: 10,
                start: ccm_store::Start::Offset(0),
            },
        )
        .await
        .unwrap()
        .items;
    assert!(pending.is_empty());
    b.goto(&format!("{base}{app_path}")).await.unwrap();
    b.wait_for_text("WHITELISTED").await.unwrap();
    b.screenshot("application-approved").await.unwrap();

    // Enroll a node: the exact agent command, pinned to this manager's certificate.
    let command = console_support::ui_enroll_node(&mut b, &base).await;
    b.screenshot("join-token").await.unwrap();
    let prefix = format!("ccm agent --manager {base} --join-token ");
    assert!(command.starts_with(&prefix), "{command}");
    let token = ccm_api::zones::JoinToken::parse(&command[prefix.len()..]).unwrap();
    assert_eq!(token.manager_fingerprint, m.m.fingerprint);
    // The copy button is enabled by the script (hidden without JavaScript).
    let copy_hidden = b
        .script("return document.querySelector('button[data-copy=agent-command]').hidden")
        .await
        .unwrap();
    assert_eq!(copy_hidden, false);

    // Delete the account: everything goes with it.
    console_support::ui_delete_account(&mut b, &base, "Seed tutorial").await;
    b.screenshot("account-deleted").await.unwrap();
    assert!(
        m.store()
            .list_apps(acct.acct_id, &ccm_store::PageRequest::first(1000))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        m.store()
            .accounts_for_user(
                user.user.user_id,
                None,
                &ccm_store::PageRequest::first(1000)
            )
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Log out.
    b.click_button("Log out").await.unwrap();
    b.wait_for_text("You have been logged out.").await.unwrap();
    b.screenshot("logged-out").await.unwrap();
    b.close().await;
}
