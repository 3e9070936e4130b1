//! The seed journey end to end with a small static HTTPS server (issue 6), every part real:
//! Debian's docker-registry with htpasswd, `ccm manager` converting the image in its job,
//! `ccm aesmd` on a simulated platform, `ccm agent` enrolled with a join token, runc through
//! `ccm run`, and the operator's steps through the `ccm` CLI.
//!
//! * `seed_journey_with_a_static_https_server`: the launcher waits (PENDING_WHITELIST) while the
//!   image and domain are unapproved, gets its certificate once they are approved, and the app
//!   serves HTTPS with a certificate that chains to the zone CA for the configured domain and
//!   carries a quote that re-verifies and binds the key; the manager shows the app on the node.
//! * `tampered_files_and_bad_credentials_are_refused_by_name`: wrong registry credentials fail
//!   the conversion with the registry's refusal; a trusted file changed in the unpacked root file
//!   system, or shadowed by a bind mount, stops the launcher (exit 12) naming the file, and no
//!   certificate is requested.

// Test helpers outside #[test] functions: a failed step panics with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod journey;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use journey::*;

const MESSAGE: &str = "from the image";

/// Builds the input image (`/app/https_server` listening on `port`, a data file, a measured
/// variable) and pushes it as `team/https-server:1`; returns the repository.
fn push_server_image(w: &World, port: u16) -> String {
    use ccm_testkit::runc::{Entry, TestImage};
    let exe = w.path().join("https_server");
    build_https_server(&exe);
    let image = TestImage {
        layers: vec![vec![
            Entry::dir("app"),
            Entry::exe("app/https_server", std::fs::read(&exe).unwrap()),
            Entry::dir("app/data"),
            Entry::file("app/data/message.txt", MESSAGE),
            Entry::dir("run"),
        ]],
        entrypoint: Some(vec!["/app/https_server".into()]),
        cmd: Some(vec![
            port.to_string(),
            "/run/cert.pem".into(),
            "/run/key.pem".into(),
            "/app/data/message.txt".into(),
        ]),
        env: vec!["GREETING=hello-from-the-image".into()],
        working_dir: Some("/app".into()),
        ..Default::default()
    };
    let layout = w.path().join("input-layout");
    image.write_oci_layout(&layout, "server").unwrap();
    let repo = format!("{}/team/https-server", w.registry.host());
    push_layout(&w.registry, &layout, "server", &format!("{repo}:1"));
    repo
}

/// The labels of an image in the test registry.
fn image_labels(w: &World, reference: &str) -> serde_json::Value {
    use ccm_image::{Credentials, Registries, RegistryOptions, Source};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let regs = Registries::new(&RegistryOptions {
            insecure: vec![w.registry.host()],
            ..Default::default()
        })
        .unwrap();
        let src = Source::open(
            &reference.parse().unwrap(),
            &regs,
            Credentials::parse(&w.registry_creds()),
        )
        .await
        .unwrap();
        let img = src
            .resolve(&ccm_image::oci::Platform::linux_amd64())
            .await
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&img.config_bytes).unwrap()["config"]["Labels"]
            .clone()
    })
}

#[test]
fn seed_journey_with_a_static_https_server() {
    let mut w = World::start("https", "acme");
    let port = free_port();
    let input = push_server_image(&w, port);
    let output = format!("{}/team/https-server-sgx", w.registry.host());

    // Add the application: the tutorial's values (1 GB, 128 threads, the certificate step).
    let app = w.create_app("https-server", &input, &output, 1024, 128);
    let app_id = app["app_id"].as_str().unwrap().to_string();
    assert_eq!(app["allowed_domains"][0], DOMAIN);
    assert!(
        app["pending_task_id"].is_string(),
        "the domain waits for approval: {app}"
    );

    // Create the image: the manager converts it in its job and pushes it.
    let (build, took) = w.create_image("https-server", "1");
    eprintln!("journey: conversion through the manager took {took:?}");
    assert_eq!(build["conversion"]["status"], "SUCCEEDED", "{build}");
    let mrenclave = build["enclave_info"]["mrenclave"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(mrenclave.len(), 64, "{build}");
    assert!(build["pending_task_id"].is_string(), "{build}");
    let labels = image_labels(&w, &format!("{output}:1"));
    assert_eq!(labels["io.ccm.enclave.mrenclave"], mrenclave.as_str());
    assert_eq!(labels["io.ccm.enclave.isvprodid"], "1");

    // Enroll the node: a join token from the CLI, the agent started with it.
    w.enroll_node("node-1");
    let nodes = w.ccm_json(&["node", "list"]);
    let node_id = nodes[0]["node_id"].as_str().unwrap().to_string();
    assert_eq!(nodes[0]["name"], "node-1");
    assert_eq!(nodes[0]["platform"], "SIMULATED");

    // Run the converted image before anything is approved: the launcher verifies the image,
    // asks for its certificate and waits.
    let c = w.run_image("server", &format!("{output}:1"), &[]);
    let waiting = w.containers[c].wait_for("PENDING_WHITELIST", Duration::from_secs(120));
    assert!(waiting.contains(DOMAIN), "{waiting}");
    let verified = w.containers[c].wait_for("ccm-launch: verified enclave", Duration::ZERO);
    assert!(verified.contains(&mrenclave), "{verified}");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ca = w.zone_ca();
    assert!(
        https_get(addr, DOMAIN, &ca, "/").is_err(),
        "nothing serves before the certificate is issued"
    );
    assert!(w.containers[c].exited().is_none());

    // The certificate request waits as a task of its own.
    let pending = w.ccm_json(&["task", "list", "--status", "INPROGRESS"]);
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["task_type"] == "CERTIFICATE_ISSUANCE"),
        "{pending}"
    );
    // Approve the two tasks: the domain and the image.
    assert_eq!(w.approve_all(), ["BUILD_WHITELIST", "DOMAIN_WHITELIST"]);
    let t = Instant::now();
    let answer = wait_https(
        &mut w.containers[c],
        addr,
        &ca,
        "/",
        Duration::from_secs(60),
    );
    eprintln!(
        "journey: approval → first HTTPS answer in {:?}",
        t.elapsed()
    );
    assert!(
        answer.response.starts_with("HTTP/1.1 200 OK"),
        "{}",
        answer.response
    );
    assert!(
        answer.response.contains("greeting: hello-from-the-image")
            && answer.response.contains(&format!("file: {MESSAGE}")),
        "the app runs with its measured environment and files: {}",
        answer.response
    );
    let log = w.containers[c].output();
    assert!(
        log.contains(&format!(
            "ccm-launch: certificate for {DOMAIN} written to /run/cert.pem"
        )),
        "{log}"
    );
    check_attested_certificate(&w, &answer.chain, &ca, &mrenclave);

    // The manager shows the app running on the node, with its certificate.
    let shown = w.ccm_json(&["app", "show", "https-server"]);
    assert_eq!(shown["nodes"][0]["node_id"], node_id.as_str(), "{shown}");
    assert_eq!(shown["nodes"][0]["node_name"], "node-1");
    assert_eq!(shown["nodes"][0]["status"]["status"], "RUNNING");
    assert_eq!(shown["nodes"][0]["mrenclave"], mrenclave.as_str());
    let text = w.ccm_ok(&["app", "show", "https-server"]);
    assert!(
        text.contains("node-1") && text.contains("RUNNING"),
        "{text}"
    );
    let node = w.ccm_json(&["node", "show", &node_id]);
    assert_eq!(node["apps"][0]["app_id"], app_id.as_str(), "{node}");
    assert_eq!(node["status"]["status"], "RUNNING", "{node}");
    let certs = w.ccm_json(&["cert", "list", "--app", &app_id]);
    let issued: Vec<_> = certs
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "ISSUED")
        .collect();
    assert_eq!(issued.len(), 1, "{certs}");
    assert_eq!(issued[0]["simulated"], true);
    let pem = w.ccm_ok(&[
        "cert",
        "show",
        issued[0]["certificate_id"].as_str().unwrap(),
        "--pem",
    ]);
    let served_leaf = ::pem::parse_many(&pem).unwrap()[0].contents().to_vec();
    assert_eq!(
        served_leaf, answer.chain[0],
        "the manager's record is the certificate the app serves"
    );

    // Stop: `ccm run` forwards SIGTERM to the app, which exits cleanly.
    let status = w.containers[c].stop(Duration::from_secs(10)).unwrap();
    assert!(
        status.success(),
        "{status}: {}",
        tail(&w.containers[c].output(), 20)
    );
}

/// Unpacks `image` into a runc bundle with the seed's run options, the way `ccm run` does.
fn unpack_bundle(w: &World, image: &str, bundle: &std::path::Path) {
    use ccm_image::run::{RunOptions, Volume};
    use ccm_image::{Credentials, NoProgress, Registries, RegistryOptions, Source};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let regs = Registries::new(&RegistryOptions {
            insecure: vec![w.registry.host()],
            ..Default::default()
        })
        .unwrap();
        let src = Source::open(
            &image.parse().unwrap(),
            &regs,
            Credentials::parse(&w.registry_creds()),
        )
        .await
        .unwrap();
        let rootfs = bundle.join("rootfs");
        let pulled = ccm_image::unpack(
            &src,
            &ccm_image::oci::Platform::linux_amd64(),
            &rootfs,
            &NoProgress,
        )
        .await
        .unwrap();
        let opts = RunOptions {
            volumes: vec![
                format!("{}:/var/run/aesmd", w.aesmd_dir.display())
                    .parse::<Volume>()
                    .unwrap(),
            ],
            env: vec![
                "SGX_AESM_ADDR=1".into(),
                format!("NODE_AGENT_BASE_URL={}", w.agent_url),
            ],
            ..Default::default()
        };
        let spec = ccm_image::run::runtime_spec(&pulled.config, &rootfs, &opts).unwrap();
        ccm_image::run::write_bundle(bundle, &spec).unwrap();
    });
}

#[test]
fn tampered_files_and_bad_credentials_are_refused_by_name() {
    let mut w = World::start("tamper", "acme");
    let port = free_port();
    let input = push_server_image(&w, port);
    let output = format!("{}/team/https-server-sgx", w.registry.host());
    w.create_app("https-server", &input, &output, 1024, 128);

    // Wrong registry credentials: the conversion fails with the registry's refusal.
    let out = w
        .ccm_cmd(&[
            "image",
            "create",
            "--app",
            "https-server",
            "--tag",
            "1",
            "--wait",
        ])
        .env("CCM_REGISTRY_CREDS", format!("{REGISTRY_USER}:wrong"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed: authentication failed for registry"),
        "the reason names the registry's refusal: {stderr}"
    );
    let failed = w.ccm_json(&["image", "list"]);
    assert_eq!(failed[0]["conversion"]["status"], "FAILED", "{failed}");
    assert!(
        !serde_json::to_string(&failed).unwrap().contains("wrong"),
        "credentials are never returned: {failed}"
    );

    let (build, _) = w.create_image("https-server", "1");
    let mrenclave = build["enclave_info"]["mrenclave"]
        .as_str()
        .unwrap()
        .to_string();
    w.approve_all();
    w.enroll_node("node-1");
    let image = format!("{output}:1");

    // 1. A trusted file changed in the root file system after conversion.
    let bundle = w.path().join("bundle-tampered");
    unpack_bundle(&w, &image, &bundle);
    let victim = bundle.join("rootfs/app/data/message.txt");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), MESSAGE);
    std::fs::write(&victim, "from an attacker").unwrap();
    let state = bundle.join("runc-state");
    let mut cmd = Command::new(ccm_testkit::runc::runc().unwrap());
    cmd.arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg("ccm-journey-tampered");
    let mut p = Proc::spawn(
        "runc run (tampered rootfs)",
        cmd,
        &w.path().join("tampered.log"),
    );
    let st = state.clone();
    p.on_stop(move || kill_containers(&st));
    let status = p.wait_exit(Duration::from_secs(60));
    let log = p.output();
    assert_eq!(status.code(), Some(12), "{log}");
    assert!(
        log.contains("ccm-launch: error: trusted file /app/data/message.txt"),
        "the launcher names the file: {log}"
    );
    assert!(!log.contains("certificate for"), "{log}");

    // 2. A trusted file shadowed by a bind mount at run time (`ccm run -v`).
    let fake = w.path().join("fake-message.txt");
    std::fs::write(&fake, "mounted over the image").unwrap();
    let c = w.run_image(
        "shadowed",
        &image,
        &[
            "-v".into(),
            format!("{}:/app/data/message.txt:ro", fake.display()),
        ],
    );
    let status = w.containers[c].wait_exit(Duration::from_secs(120));
    let log = w.containers[c].output();
    assert_eq!(status.code(), Some(12), "{log}");
    assert!(
        log.contains("ccm-launch: error: trusted file /app/data/message.txt"),
        "{log}"
    );

    // Neither run asked for a certificate.
    let certs = w.ccm_json(&["cert", "list"]);
    assert_eq!(certs.as_array().unwrap().len(), 0, "{certs}");

    // The same image, untampered, starts and is served under the zone CA: the refusals above
    // came from the tampering alone.
    let c = w.run_image("intact", &image, &[]);
    let ca = w.zone_ca();
    let answer = wait_https(
        &mut w.containers[c],
        SocketAddr::from(([127, 0, 0, 1], port)),
        &ca,
        "/",
        Duration::from_secs(120),
    );
    assert!(answer.response.contains(MESSAGE), "{}", answer.response);
    check_attested_certificate(&w, &answer.chain, &ca, &mrenclave);
}
