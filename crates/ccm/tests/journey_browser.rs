//! The whole seed journey in the web console of a real `ccm manager` (HTTPS, SQLite, simulated
//! root trusted), walked in headless Chromium (Debian's `chromium` under `chromium-driver`):
//!
//!  1. sign up; 2. create an account;
//!  3. add the application with the seed tutorial's values, its input image being the real
//!     python-flask image pushed to the world's htpasswd registry;
//!  4. create the image with the conversion form (registry credentials, tag): a real conversion
//!     job, followed on the image page's live progress until MRENCLAVE and MRSIGNER show;
//!  5. approve both tasks (domain, image);
//!  6. create a join token, copy the `ccm agent ...` command the page shows with its button and
//!     start the agent with the clipboard's text (plus the node's own settings: listen address,
//!     quote helper socket, state directory, collateral, name); the node is listed RUNNING and
//!     SIMULATED;
//!  7. download the zone CA certificate, run the converted image with `ccm run` (runc) and fetch
//!     its HTTPS page trusting only that CA;
//!  8. see the application running on its node;
//!  9. download its certificate (PEM: the served leaf with the domain, then the zone CA);
//! 10. delete the account, confirming with its name.
//!
//! A screenshot follows each step in `target/test-artifacts/journey_browser/` (downloads in its
//! `downloads/`). A failure panics with its reason; the tails of the processes' logs are printed
//! and the world's directory is kept.

// Test code: a failed step panics with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../ccm-manager/tests/console_support/mod.rs"]
mod console_support;
mod journey;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ccm_testkit::browser::Browser;
use console_support::{TUTORIAL, TutorialApp};
use journey::*;
use x509_parser::prelude::*;

const TEST: &str = "journey_browser";
const EMAIL: &str = "operator@example.com";
const ACCOUNT: &str = "Seed journey";
const NODE: &str = "node-1";
const TAG: &str = "1.0";
/// The conversion job, the first HTTPS answer: generous for 2 busy CI cores.
const LONG_WAIT: Duration = Duration::from_secs(300);
/// What the console shows after the processes act (node enrolled, app certified).
const CONSOLE_WAIT: Duration = Duration::from_secs(60);

/// The world, the browser, and the runtime the browser lives on. On a panic, prints the tails of
/// every process log and the page the browser was on, and takes a last screenshot.
struct Journey {
    b: Browser,
    w: World,
    rt: tokio::runtime::Runtime,
    base: String,
}

impl Drop for Journey {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut logs = vec![&self.w.manager, &self.w.aesmd];
        logs.extend(self.w.agent.as_ref());
        logs.extend(self.w.containers.iter());
        for p in logs {
            eprintln!(
                "---- {} log ({}), last lines:\n{}",
                p.name,
                p.log.display(),
                tail(&p.output(), 30)
            );
        }
        let b = &mut self.b;
        let (at, shot) = self.rt.block_on(async {
            (
                b.path().await.unwrap_or_default(),
                b.screenshot("failed").await,
            )
        });
        eprintln!("---- the browser was on {at}; last screenshot: {shot:?}");
    }
}

impl Journey {
    /// Runs browser steps on the runtime.
    fn ui<T>(&mut self, f: impl AsyncFnOnce(&mut Browser, &str) -> T) -> T {
        let base = self.base.clone();
        self.rt.block_on(f(&mut self.b, &base))
    }

    fn shot(&mut self, step: &str) {
        let b = &mut self.b;
        self.rt.block_on(b.screenshot(step)).unwrap();
    }
}

/// The value of a fact (`<dt>term</dt><dd>value</dd>`) on the page.
async fn fact(b: &Browser, term: &str) -> Option<String> {
    let js = format!(
        "for (const dt of document.querySelectorAll('dl.facts dt')) \
           if (dt.textContent.trim() === {t}) return dt.nextElementSibling.innerText.trim(); \
         return null;",
        t = serde_json::to_string(term).unwrap()
    );
    b.script(&js).await.ok()?.as_str().map(String::from)
}

/// The text of the table row holding a link named `link` (cells separated by tabs).
async fn row(b: &Browser, link: &str) -> Option<String> {
    let js = format!(
        "for (const tr of document.querySelectorAll('tbody tr')) \
           for (const a of tr.querySelectorAll('a')) \
             if (a.textContent.trim() === {l}) return tr.innerText; \
         return null;",
        l = serde_json::to_string(link).unwrap()
    );
    b.script(&js).await.ok()?.as_str().map(String::from)
}

/// Reloads `url` until `done` holds for the page (a person pressing reload); fails with `what`
/// and the page's text after `timeout`.
async fn reload_until(
    b: &Browser,
    url: &str,
    what: &str,
    timeout: Duration,
    done: impl AsyncFn(&Browser) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        b.goto(url).await.unwrap();
        if done(b).await {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not shown on {url} within {timeout:?}; the page:\n{}",
                b.page_text().await.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The DER certificates of a PEM file, in order.
fn pem_certs(what: &str, text: &str) -> Vec<Vec<u8>> {
    let blocks = ::pem::parse_many(text).unwrap_or_else(|e| panic!("{what}: not PEM: {e}"));
    assert!(!blocks.is_empty(), "{what}: no PEM block: {text}");
    for b in &blocks {
        assert_eq!(b.tag(), "CERTIFICATE", "{what}: {text}");
    }
    blocks.into_iter().map(|b| b.contents().to_vec()).collect()
}

#[test]
fn seed_journey_in_the_console() {
    let started = Instant::now();
    let w = World::start_infrastructure("browser");
    // The real application: the cached python-flask image with APP_PORT set to a free port,
    // pushed to the registry as the tutorial's input image.
    let port = free_port();
    let layout = w.path().join("flask-layout");
    derive_flask_image(&layout, &[format!("APP_PORT={port}")]);
    let input = format!("{}/python-flask", w.registry.host());
    let output = format!("{}/python-flask-sgx", w.registry.host());
    push_layout(&w.registry, &layout, "latest", &format!("{input}:{TAG}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let b = rt.block_on(Browser::start(TEST)).unwrap();
    let base = w.manager_url.clone();
    let mut j = Journey { b, w, rt, base };
    let ready = started.elapsed();

    // 1. Sign up.
    j.ui(async |b, base| console_support::ui_sign_up(b, base, EMAIL, PASSWORD).await);
    j.shot("1-signed-up");

    // 2. Account.
    j.ui(async |b, base| console_support::ui_create_account(b, base, ACCOUNT).await);
    j.shot("2-account-created");

    // 3. The application with the tutorial's values, on the world's registry.
    let app = TutorialApp {
        input_image: &input,
        output_image: &output,
        ..TUTORIAL
    };
    let app_path = j.ui(async |b, base| console_support::ui_add_app(b, base, &app).await);
    let text = j.ui(async |b, _| b.page_text().await.unwrap());
    for shown in [
        input.as_str(),
        output.as_str(),
        "1024 MB",
        "128",
        DOMAIN,
        "Issued by the manager (zone CA)",
        "RSA, 2048 bits",
        "/run/key.pem",
        "/run/cert.pem",
    ] {
        assert!(
            text.contains(shown),
            "the application page lacks {shown}:\n{text}"
        );
    }
    j.shot("3-application-added");

    // 4. The image: a conversion job with the registry's credentials, followed on the page.
    let t = Instant::now();
    let image_path = j.ui(async |b, base| {
        console_support::ui_convert_image(b, base, &app_path, TAG, REGISTRY_USER, REGISTRY_PASSWORD)
            .await
    });
    let (mrenclave, mrsigner) = j.ui(async |b, _| {
        // The page as first shown follows a job under way: the panel polls its progress.
        let polling = b
            .script("const p = document.getElementById('conversion'); return p && p.dataset.poll || null")
            .await
            .unwrap();
        assert!(
            polling.is_string(),
            "the image page does not follow the conversion: {}",
            b.page_text().await.unwrap_or_default()
        );
        b.screenshot("4-conversion-in-progress").await.unwrap();
        // Nothing but the page itself updates it from here (no reload by the test).
        let deadline = Instant::now() + LONG_WAIT;
        loop {
            let heading = b.text_of("#conversion h2").await.unwrap_or_default();
            if heading.contains("FAILED") {
                panic!(
                    "the conversion failed: {}",
                    b.text_of("#conversion").await.unwrap_or_default()
                );
            }
            if heading.contains("SUCCEEDED")
                && let Some(mre) = fact(b, "MRENCLAVE").await.filter(|v| is_hex64(v))
            {
                let mrs = fact(b, "MRSIGNER").await.unwrap_or_default();
                assert!(is_hex64(&mrs), "MRSIGNER shown: {mrs:?}");
                break (mre, mrs);
            }
            assert!(
                Instant::now() < deadline,
                "the conversion did not finish within {LONG_WAIT:?}: {}",
                b.page_text().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let conversion = t.elapsed();
    let at = j.ui(async |b, _| b.path().await.unwrap());
    assert_eq!(at, image_path, "the image page updated itself");
    assert_ne!(mrenclave, mrsigner);
    j.shot("4-image-converted");

    // 5. Both tasks: the domain and the image.
    let approved = j.ui(async |b, base| {
        b.goto(&format!("{base}/console/tasks")).await.unwrap();
        b.wait_for_text("DOMAIN_WHITELIST").await.unwrap();
        b.wait_for_text("BUILD_WHITELIST").await.unwrap();
        b.screenshot("5-pending-tasks").await.unwrap();
        console_support::ui_approve_all(b, base).await
    });
    assert_eq!(approved, 2, "two tasks: the domain and the image");
    j.ui(async |b, base| {
        b.goto(&format!("{base}{image_path}")).await.unwrap();
        let status = fact(b, "Status").await;
        assert_eq!(status.as_deref(), Some("WHITELISTED"), "the image's status");
        b.goto(&format!("{base}{app_path}")).await.unwrap();
        b.wait_for_text("WHITELISTED").await.unwrap();
    });
    j.shot("5-approved");

    // 6. Enroll the node with the command the console shows.
    let (shown, command) = j.ui(async |b, base| {
        let shown = console_support::ui_enroll_node(b, base).await;
        // What the operator pastes on the node: the copy button's clipboard.
        b.grant_permission("clipboard-read").await.unwrap();
        b.click_button("Copy command").await.unwrap();
        b.wait_for_text("Copied").await.unwrap();
        (shown, b.clipboard().await.unwrap())
    });
    assert_eq!(command, shown, "the copy button copies the command shown");
    let prefix = format!("ccm agent --manager {} --join-token ", j.base);
    assert!(command.starts_with(&prefix), "the agent command: {command}");
    let token = ccm_api::zones::JoinToken::parse(&command[prefix.len()..]).unwrap();
    assert_eq!(
        token.manager_fingerprint.map(hex::encode).as_deref(),
        Some(j.w.fingerprint.replace(':', "").to_lowercase().as_str()),
        "the token pins the manager's certificate"
    );
    j.shot("6-join-token");
    j.w.start_agent_command(NODE, &command);
    j.ui(async |b, base| {
        reload_until(
            b,
            &format!("{base}/console/nodes"),
            "the node RUNNING and SIMULATED",
            CONSOLE_WAIT,
            async |b| {
                row(b, NODE)
                    .await
                    .is_some_and(|r| r.contains("RUNNING") && r.contains("SIMULATED"))
            },
        )
        .await;
    });
    j.shot("6-node-running");

    // 7. The zone CA from the console; the converted image run with `ccm run`; its HTTPS page
    // under that CA.
    let ca = j.ui(async |b, base| {
        b.goto(&format!("{base}/console/certificates"))
            .await
            .unwrap();
        b.click_link("Download zone CA certificate").await.unwrap();
        let f = b
            .wait_for_download("zone-ca.pem", CONSOLE_WAIT)
            .await
            .unwrap();
        std::fs::read_to_string(f).unwrap()
    });
    let ca_der = pem_certs("the zone CA", &ca);
    assert_eq!(ca_der.len(), 1, "one certificate: {ca}");
    {
        let (_, c) = X509Certificate::from_der(&ca_der[0]).unwrap();
        assert!(
            c.is_ca(),
            "the zone CA certificate is a CA: {}",
            c.subject()
        );
    }
    let t = Instant::now();
    let c = j.w.run_image("flask", &format!("{output}:{TAG}"), &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let answer = wait_https(&mut j.w.containers[c], addr, &ca, "/", LONG_WAIT);
    let first_https = t.elapsed();
    assert!(
        answer.response.starts_with("HTTP/1.1 200 OK"),
        "{}",
        answer.response
    );
    assert!(
        answer
            .response
            .contains("Hello from python-flask in a simulated enclave")
            && answer.response.contains(&mrenclave),
        "the page names the enclave identity shown in the console: {}",
        answer.response
    );
    check_attested_certificate(&j.w, &answer.chain, &ca, &mrenclave);
    // The same page in the browser (which does not check certificates).
    j.ui(async |b, _| {
        b.goto(&format!("https://127.0.0.1:{port}/")).await.unwrap();
        b.wait_for_text("Hello from python-flask").await.unwrap();
    });
    j.shot("7-app-page");

    // 8. The application runs on the node.
    j.ui(async |b, base| {
        reload_until(
            b,
            &format!("{base}/console/running"),
            "the app RUNNING on its node",
            CONSOLE_WAIT,
            async |b| {
                row(b, TUTORIAL.name).await.is_some_and(|r| {
                    r.contains(NODE)
                        && r.contains("RUNNING")
                        && r.contains("SIMULATED")
                        && r.contains(&mrenclave)
                        && r.contains(DOMAIN)
                })
            },
        )
        .await;
    });
    j.shot("8-running");
    j.ui(async |b, base| {
        b.goto(&format!("{base}{app_path}")).await.unwrap();
        b.wait_for_text(&format!("{NODE} RUNNING")).await.unwrap();
    });
    j.shot("8-application-running-on");

    // 9. Its certificate, downloaded from the console.
    let chain = j.ui(async |b, base| {
        b.goto(&format!("{base}/console/running")).await.unwrap();
        b.click_link(DOMAIN).await.unwrap();
        b.wait_for_path("the certificate page", |p| {
            p.starts_with("/console/certificates/")
        })
        .await
        .unwrap();
        b.wait_for_text("Download PEM").await.unwrap();
        assert_eq!(fact(b, "Status").await.as_deref(), Some("ISSUED"));
        assert_eq!(
            fact(b, "MRENCLAVE").await.as_deref(),
            Some(mrenclave.as_str())
        );
        b.screenshot("9-certificate").await.unwrap();
        b.click_link("Download PEM").await.unwrap();
        let f = b
            .wait_for_download(&format!("{DOMAIN}.pem"), CONSOLE_WAIT)
            .await
            .unwrap();
        std::fs::read_to_string(f).unwrap()
    });
    let certs = pem_certs("the downloaded certificate", &chain);
    assert_eq!(
        certs.len(),
        3,
        "the leaf, the simulated intermediate and the zone CA: {chain}"
    );
    assert_eq!(
        certs[0], answer.chain[0],
        "the console's certificate is the one the app serves"
    );
    assert_eq!(certs[2], ca_der[0], "the chain ends with the zone CA");
    {
        let (_, leaf) = X509Certificate::from_der(&certs[0]).unwrap();
        let (_, sim) = X509Certificate::from_der(&certs[1]).unwrap();
        let (_, zone_ca) = X509Certificate::from_der(&ca_der[0]).unwrap();
        sim.verify_signature(Some(zone_ca.public_key()))
            .expect("the simulated intermediate is signed by the zone CA");
        leaf.verify_signature(Some(sim.public_key()))
            .expect("the certificate is signed by the simulated intermediate");
        let san = leaf.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(san.general_names, vec![GeneralName::DNSName(DOMAIN)]);
    }
    j.shot("9-certificate-downloaded");

    // 10. Delete the account, confirming with its name.
    j.ui(async |b, base| {
        console_support::ui_delete_account(b, base, ACCOUNT).await;
        b.goto(&format!("{base}/console/accounts")).await.unwrap();
        b.wait_for_text("You are not a member of any account yet.")
            .await
            .unwrap();
    });
    j.shot("10-account-deleted");

    let total = started.elapsed();
    let report = format!(
        "infrastructure, image and browser ready: {:.1} s\n\
         conversion in the console (form to MRENCLAVE shown): {:.1} s\n\
         ccm run to first HTTPS response: {:.1} s\n\
         whole journey: {:.1} s\n",
        ready.as_secs_f64(),
        conversion.as_secs_f64(),
        first_https.as_secs_f64(),
        total.as_secs_f64()
    );
    eprint!("journey_browser timings:\n{report}");
    let _ = std::fs::write(j.b.artifacts().join("timings.txt"), &report);
    let b = &mut j.b;
    j.rt.block_on(async {
        b.click_button("Log out").await.unwrap();
        b.wait_for_text("You have been logged out.").await.unwrap();
    });
}
