//! The seed journey with the real application (issue 7 item 3): the python-flask image built from
//! Debian's packages (ccm-testkit's `flask`: bookworm minbase + python3-flask, about 5,000
//! files, cached outside the clone), converted by the manager's job, run with `ccm run` (runc)
//! with the seed's options, serving HTTPS with the certificate the launcher obtained.
//!
//! It reports the figures issue 7 asks for, on standard error and in
//! `target/test-artifacts/journey_flask/timings.txt`: conversion time (`ccm image create
//! --wait`), the launcher's file verification (files, MB, ms), certificate time, and the time
//! from `ccm run` to the first HTTPS response. Nothing is asserted about the figures (timings are
//! benchmarked, never asserted).
//!
//! The image is the cached one with `APP_PORT` set to a free port (`FROM python-flask` + `ENV`),
//! so this test can run next to others that serve HTTPS on the host network.

// Test helpers outside #[test] functions: a failed step panics with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod journey;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use journey::*;
use sha2::Digest as _;

#[test]
fn seed_journey_with_the_python_flask_app() {
    let mut w = World::start("flask", "acme");
    let port = free_port();
    let layout = w.path().join("flask-layout");
    let files_in_image = derive_flask_image(&layout, &[format!("APP_PORT={port}")]);
    let input = format!("{}/python-flask", w.registry.host());
    let output = format!("{}/python-flask-sgx", w.registry.host());
    push_layout(&w.registry, &layout, "latest", &format!("{input}:latest"));

    // The tutorial: add the app, create the image, approve both tasks, enroll the node.
    w.create_app("python-flask", &input, &output, 1024, 128);
    let (build, conversion) = w.create_image("python-flask", "latest");
    assert_eq!(build["conversion"]["status"], "SUCCEEDED", "{build}");
    let mrenclave = build["enclave_info"]["mrenclave"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(w.approve_all(), ["BUILD_WHITELIST", "DOMAIN_WHITELIST"]);
    w.enroll_node("node-1");
    let ca = w.zone_ca();

    // Run it as the seed does.
    let started = Instant::now();
    let c = w.run_image("flask", &format!("{output}:latest"), &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let answer = wait_https(
        &mut w.containers[c],
        addr,
        &ca,
        "/",
        Duration::from_secs(300),
    );
    let first_https = started.elapsed();
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
        "the page names the enclave identity: {}",
        answer.response
    );
    check_attested_certificate(&w, &answer.chain, &ca, &mrenclave);

    // The app's own view of its identity and certificate.
    let identity = https_get(addr, DOMAIN, &ca, "/identity").unwrap();
    let body = identity.response.split("\r\n\r\n").nth(1).unwrap_or("");
    let id: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(id["enclave"], true, "{id}");
    assert_eq!(id["simulated"], true, "{id}");
    assert_eq!(id["identity"]["mrenclave"], mrenclave.as_str());
    assert_eq!(id["identity"]["isvprodid"], 1);
    assert_eq!(id["identity"]["isvsvn"], 1);
    assert_eq!(
        id["certificate_sha256"],
        hex::encode(sha2::Sha256::digest(&answer.chain[0])).as_str(),
        "the app serves the certificate the launcher wrote"
    );

    // The launcher's figures.
    let log = w.containers[c].output();
    let verified = log
        .lines()
        .find(|l| l.starts_with("ccm-launch: verified enclave"))
        .unwrap_or_else(|| panic!("no verification line: {log}"));
    let files = number_after(verified, ") and ").unwrap() as u64;
    let mb = number_after(verified, "files (").unwrap();
    let verify_ms = number_after(verified, " in ").unwrap();
    assert!(
        files >= 4_000 && files + 10 >= files_in_image,
        "thousands of trusted files verified ({files} of the image's {files_in_image} regular files, plus the launcher's): {verified}"
    );
    let cert_line = log
        .lines()
        .find(|l| l.starts_with(&format!("ccm-launch: certificate for {DOMAIN} written")))
        .unwrap_or_else(|| panic!("no certificate line: {log}"));
    let cert_ms = number_after(cert_line, " in ").unwrap();
    let start_line = log
        .lines()
        .find(|l| l.starts_with("ccm-launch: starting"))
        .unwrap_or_else(|| panic!("no start line: {log}"));
    let launcher_ms = number_after(start_line, " after ").unwrap();

    // The manager shows it running on the node.
    let shown = w.ccm_json(&["app", "show", "python-flask"]);
    assert_eq!(shown["nodes"][0]["node_name"], "node-1", "{shown}");
    assert_eq!(shown["nodes"][0]["status"]["status"], "RUNNING");

    let mut report = String::new();
    let _ = writeln!(
        report,
        "python-flask ({files_in_image} regular files in the image)"
    );
    let _ = writeln!(
        report,
        "conversion (ccm image create --wait, manager job): {:.1} s",
        conversion.as_secs_f64()
    );
    let _ = writeln!(
        report,
        "launcher file verification: {files} files, {mb:.1} MB in {verify_ms:.0} ms"
    );
    let _ = writeln!(
        report,
        "launcher certificate (quote, CSR, agent, manager): {cert_ms:.0} ms"
    );
    let _ = writeln!(
        report,
        "launcher start to exec of the app: {launcher_ms:.0} ms"
    );
    let _ = writeln!(
        report,
        "ccm run to first HTTPS response (pull, unpack, verify, attest, Python start): {:.1} s",
        first_https.as_secs_f64()
    );
    eprint!("journey timings:\n{report}");
    if let Ok(dir) = ccm_testkit::browser::artifacts_dir("journey_flask") {
        let _ = std::fs::write(dir.join("timings.txt"), &report);
    }

    let status = w.containers[c].stop(Duration::from_secs(20)).unwrap();
    assert!(
        status.success(),
        "{status}: {}",
        tail(&w.containers[c].output(), 20)
    );
}
