//! The real launcher binary against image roots laid out like converted images, a real
//! `ccm aesmd` serving a simulated platform, and a node-agent protocol peer on 127.0.0.1.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use ccm_enclave::KeyType;
use common::*;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The one `ccm-launch: error:` line.
fn error_line(o: &Output) -> String {
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line expected: {err}");
    lines[0].to_owned()
}

#[test]
fn tampered_trusted_file_is_refused_naming_it() {
    let img = image(&ImageSpec::default());
    // Same size, different content.
    std::fs::write(img.path("/app/server.py"), b"print('hello from the bad')\n").unwrap();
    let out = img.launcher().output().unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.starts_with("ccm-launch: error: trusted file /app/server.py: content SHA-256 is "),
        "{line}"
    );
    assert!(
        !img.path("/run/secrets/key.pem").exists(),
        "nothing written"
    );
    assert!(stdout(&out).is_empty(), "the app did not run");

    // A changed mode and a retargeted symlink are caught too.
    let img = image(&ImageSpec::default());
    std::fs::set_permissions(
        img.path("/app/server.py"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let out = img.launcher().output().unwrap();
    assert_eq!(out.status.code(), Some(12));
    assert!(error_line(&out).ends_with("trusted file /app/server.py: mode is 0666, expected 0644"));
    let img = image(&ImageSpec::default());
    std::fs::remove_file(img.path("/usr/bin/sh")).unwrap();
    std::os::unix::fs::symlink("/tmp/evil", img.path("/usr/bin/sh")).unwrap();
    let out = img.launcher().output().unwrap();
    assert_eq!(out.status.code(), Some(12));
    assert!(error_line(&out).contains("trusted file /usr/bin/sh: symlink target is \"/tmp/evil\""));
}

#[test]
fn tampered_manifest_and_sigstruct_are_refused() {
    let img = image(&ImageSpec::default());
    let good_sig = img.signed.sigstruct.as_bytes().to_vec();

    // Another valid manifest (one more measured variable) under the old SIGSTRUCT.
    let mut evil = img.manifest.clone();
    evil.env.insert("LD_PRELOAD".into(), "/tmp/evil.so".into());
    std::fs::write(img.manifest_path(), evil.to_canonical_bytes().unwrap()).unwrap();
    let out = img.launcher().output().unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("enclave.sig: SIGSTRUCT ENCLAVEHASH"),
        "{line}"
    );
    assert!(
        line.contains("does not match the manifest's MRENCLAVE"),
        "{line}"
    );

    // A manifest that is not canonical JSON.
    let pretty = serde_json::to_vec_pretty(&img.manifest).unwrap();
    std::fs::write(img.manifest_path(), pretty).unwrap();
    let out = img.launcher().output().unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(error_line(&out).contains("enclave.json: enclave manifest: not in canonical form"));

    // The right manifest with a flipped signature byte, a flipped ISVSVN, a truncated SIGSTRUCT.
    std::fs::write(img.manifest_path(), &img.manifest_bytes).unwrap();
    for (at, what) in [(600usize, "signature"), (1026, "ISVSVN")] {
        let mut sig = good_sig.clone();
        sig[at] ^= 1;
        std::fs::write(img.sigstruct_path(), &sig).unwrap();
        let out = img.launcher().output().unwrap();
        assert_eq!(out.status.code(), Some(11), "{what}: {}", stderr(&out));
        assert!(
            error_line(&out).contains("enclave.sig: SIGSTRUCT: signature does not verify"),
            "{what}"
        );
    }
    std::fs::write(img.sigstruct_path(), &good_sig[..1000]).unwrap();
    let out = img.launcher().output().unwrap();
    assert_eq!(out.status.code(), Some(11));
    assert!(error_line(&out).contains("must be exactly 1808 bytes, got 1000"));

    // Missing files.
    std::fs::remove_file(img.sigstruct_path()).unwrap();
    let out = img.launcher().output().unwrap();
    assert_eq!(out.status.code(), Some(11));
    assert!(error_line(&out).contains("enclave.sig: cannot read: No such file"));
    std::fs::remove_file(img.manifest_path()).unwrap();
    let out = img.launcher().output().unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(error_line(&out).contains("enclave.json: cannot read: No such file"));
}

#[test]
fn quote_source_and_agent_configuration_errors() {
    let img = image(&ImageSpec::default());
    let agent = AgentPeer::start(Behaviour::Issue {
        pending_polls: 0,
        lifetime_secs: 3600,
    });

    // No SGX_AESM_ADDR, no simulation flag.
    let out = img
        .launcher()
        .env("NODE_AGENT_BASE_URL", &agent.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(20), "{}", stderr(&out));
    assert!(error_line(&out).contains("no quote source: SGX_AESM_ADDR is not set"));

    // A socket path where nothing listens.
    let missing = img.dir.path().join("nowhere/aesm.socket");
    let out = img
        .launcher()
        .env("SGX_AESM_ADDR", "1")
        .env("NODE_AGENT_BASE_URL", &agent.url)
        .arg(format!("--ccm-aesm-socket={}", missing.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(21), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains(&format!(
            "cannot reach the AESM service at {}",
            missing.display()
        )),
        "{line}"
    );

    // Something that is not an AESM service: a regular file.
    let file = img.dir.path().join("not-a-socket");
    std::fs::write(&file, b"x").unwrap();
    let out = img
        .launcher()
        .env("SGX_AESM_ADDR", "1")
        .env("NODE_AGENT_BASE_URL", &agent.url)
        .arg(format!("--ccm-aesm-socket={}", file.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(21), "{}", stderr(&out));

    // A live service but no simulated CPU key next to the socket: a copy of the socket path
    // elsewhere cannot be made, so point at the live socket through a symlink in another dir.
    let platform = Platform::start();
    let other = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(platform.socket(), other.path().join("aesm.socket")).unwrap();
    let out = img
        .launcher()
        .env("SGX_AESM_ADDR", "1")
        .env("NODE_AGENT_BASE_URL", &agent.url)
        .arg(format!(
            "--ccm-aesm-socket={}",
            other.path().join("aesm.socket").display()
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(20), "{}", stderr(&out));
    assert!(error_line(&out).contains("no simulated CPU key at"));

    // The agent URL: missing, https, unresolvable. Checked before any quote is spent.
    for (url, needle) in [
        (None, "NODE_AGENT_BASE_URL is not set"),
        (Some("https://127.0.0.1:9092/v1/"), "https is not supported"),
        (Some("http://agent.invalid:9092/v1/"), "cannot resolve host"),
    ] {
        let mut cmd = img.launcher();
        cmd.env("SGX_AESM_ADDR", "1")
            .arg(format!("--ccm-aesm-socket={}", platform.socket().display()));
        if let Some(u) = url {
            cmd.env("NODE_AGENT_BASE_URL", u);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(31), "{url:?}: {}", stderr(&out));
        assert!(error_line(&out).contains(needle), "{url:?}");
    }
    assert!(agent.requests().is_empty());
}

#[test]
fn quote_binds_identity_and_key_then_the_app_replaces_the_launcher() {
    let platform = Platform::start();
    let agent = AgentPeer::start(Behaviour::Issue {
        pending_polls: 0,
        lifetime_secs: 3600,
    });
    let img = image(&ImageSpec::default());
    let zone_ca = img.dir.path().join("zone-ca.pem");
    std::fs::write(&zone_ca, agent.ca_pem()).unwrap();
    let child = img
        .launcher()
        .arg(format!("--ccm-aesm-socket={}", platform.socket().display()))
        .arg("--ccm-no-renew")
        .env("SGX_AESM_ADDR", "1")
        .env("NODE_AGENT_BASE_URL", &agent.url)
        .env("EXTRA_PASSED", "through")
        .env("HOME", "/root")
        .env("NOT_PASSED", "secret")
        .env("GREETING", "from the container")
        .env("CCM_LAUNCH_CERT_TIMEOUT", "30")
        .env("CCM_LAUNCH_ZONE_CA", &zone_ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // The quote: verified by the ccm-attest verifier, stating the SIGSTRUCT's identity, binding
    // the CSR's key.
    let reqs = agent.requests();
    assert_eq!(reqs.len(), 1);
    let (csr, quote) = &reqs[0];
    let verified = platform.verify(quote);
    assert!(verified.simulated);
    let body = verified.report;
    assert_eq!(body.mr_enclave, img.signed.mrenclave);
    assert_eq!(body.mr_signer, img.signed.mrsigner);
    assert_eq!(body.mr_signer, signing_key().mrsigner());
    assert_eq!(
        (body.isv_prod_id.get(), body.isv_svn.get()),
        (ISVPRODID, ISVSVN)
    );
    assert!(!body.attributes.is_debug());
    let spki = csr_spki(csr);
    assert_eq!(
        &body.report_data.0[..32],
        ring::digest::digest(&ring::digest::SHA256, &spki).as_ref()
    );
    // REPORTDATA[32..64]: the nonce the agent handed out for this request.
    assert_ne!(&body.report_data.0[32..], &[0u8; 32]);
    assert_eq!(agent.nonces_issued(), 1);

    // Key (0600) and certificate on disk, for the same key; the chain is the CA.
    let key = std::fs::read_to_string(img.path("/run/secrets/key.pem")).unwrap();
    let cert = std::fs::read_to_string(img.path("/run/secrets/cert.pem")).unwrap();
    let chain = std::fs::read_to_string(img.path("/run/secrets/chain.pem")).unwrap();
    assert_eq!(mode_of(&img.path("/run/secrets/key.pem")), 0o600);
    assert_eq!(mode_of(&img.path("/run/secrets/cert.pem")), 0o644);
    assert_eq!(key_spki(&key), spki);
    assert_eq!(cert_spki(&cert), spki);
    assert_eq!(chain, agent.ca_pem());

    // The app ran in the launcher's process, with the measured env plus passthrough only.
    let text = stdout(&out);
    assert!(
        text.contains(&format!("pid={pid}\n")),
        "exec keeps the pid: {text}"
    );
    let mut env: Vec<&str> = text
        .lines()
        .filter(|l| l.contains('=') && !l.starts_with("pid="))
        .filter(|l| {
            !["PWD=", "OLDPWD=", "SHLVL=", "_="]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    env.sort();
    assert_eq!(
        env,
        [
            "EXTRA_PASSED=through",
            "GREETING=measured",
            &format!("NODE_AGENT_BASE_URL={}", agent.url),
            "PATH=/usr/bin:/bin",
            "SGX_AESM_ADDR=1",
        ],
        "{text}"
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("verified enclave {}", img.signed.mrenclave)),
        "{err}"
    );
    assert!(
        err.contains("certificate for app.example.test written to /run/secrets/cert.pem"),
        "{err}"
    );
    assert!(platform.aesmd.log().contains(&format!("{pid}")) || !platform.aesmd.log().is_empty());
}

#[test]
fn every_key_type_is_bound() {
    let platform = Platform::start();
    let agent = AgentPeer::start(Behaviour::Issue {
        pending_polls: 0,
        lifetime_secs: 3600,
    });
    let mut spec = ImageSpec::default();
    spec.entrypoint = vec!["/bin/sh".into(), "-c".into(), "exit 0".into()];
    spec.certificates = [KeyType::EcP384, KeyType::Rsa2048, KeyType::Rsa3072]
        .into_iter()
        .enumerate()
        .map(|(i, kt)| {
            let mut r = cert_request(kt);
            r.key_path = format!("/run/k{i}.pem");
            r.cert_path = format!("/run/c{i}.pem");
            r.chain_path = None;
            r
        })
        .collect();
    let img = image(&spec);
    let out = img
        .launcher()
        .arg(format!("--ccm-aesm-socket={}", platform.socket().display()))
        .arg("--ccm-no-renew")
        .env("SGX_AESM_ADDR", "1")
        .env("NODE_AGENT_BASE_URL", agent.url.trim_end_matches("/v1/"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let reqs = agent.requests();
    assert_eq!(reqs.len(), 3);
    for (i, (csr, quote)) in reqs.iter().enumerate() {
        let spki = csr_spki(csr);
        let body = platform.verify(quote).report;
        assert_eq!(
            &body.report_data.0[..32],
            ring::digest::digest(&ring::digest::SHA256, &spki).as_ref()
        );
        let key = std::fs::read_to_string(img.path(&format!("/run/k{i}.pem"))).unwrap();
        assert_eq!(key_spki(&key), spki);
        assert_eq!(mode_of(&img.path(&format!("/run/k{i}.pem"))), 0o600);
    }
}

#[test]
fn waits_while_pending_then_succeeds() {
    let platform = Platform::start();
    let agent = AgentPeer::start(Behaviour::Issue {
        pending_polls: 4,
        lifetime_secs: 3600,
    });
    let img = image(&ImageSpec::default());
    let out = img
        .launcher()
        .arg(format!("--ccm-aesm-socket={}", platform.socket().display()))
        .arg("--ccm-no-renew")
        .env("SGX_AESM_ADDR", "1")
        .env("NODE_AGENT_BASE_URL", &agent.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(agent.polls(), 4);
    let err = stderr(&out);
    assert!(
        err.contains("certificate for app.example.test: PENDING_WHITELIST: image is awaiting approval (task 00000000-0000-4000-8000-000000000001); waiting (up to"),
        "{err}"
    );
    assert_eq!(
        err.matches("PENDING_WHITELIST").count(),
        1,
        "said once per status: {err}"
    );
    assert!(img.path("/run/secrets/cert.pem").is_file());
}

#[test]
fn refusals_timeouts_and_protocol_errors() {
    let platform = Platform::start();
    let img = image(&ImageSpec::default());
    let run = |agent_url: &str, extra: &[&str]| {
        img.launcher()
            .arg(format!("--ccm-aesm-socket={}", platform.socket().display()))
            .arg("--ccm-no-renew")
            .args(extra)
            .env("SGX_AESM_ADDR", "1")
            .env("NODE_AGENT_BASE_URL", agent_url)
            .output()
            .unwrap()
    };

    let agent = AgentPeer::start(Behaviour::Deny(
        "image 1234 is not allowed in this account".into(),
    ));
    let out = run(&agent.url, &[]);
    assert_eq!(out.status.code(), Some(33));
    assert_eq!(
        error_line(&out),
        "ccm-launch: error: certificate for app.example.test: DENIED: image 1234 is not allowed in this account"
    );

    let agent = AgentPeer::start(Behaviour::Fail("quote does not verify".into()));
    let out = run(&agent.url, &[]);
    assert_eq!(out.status.code(), Some(33));
    assert!(error_line(&out).ends_with("FAILED: quote does not verify"));

    let agent = AgentPeer::start(Behaviour::Issue {
        pending_polls: 1_000_000,
        lifetime_secs: 60,
    });
    let out = run(&agent.url, &["--ccm-cert-timeout=1"]);
    assert_eq!(out.status.code(), Some(34), "{}", stderr(&out));
    assert!(
        error_line(&out).contains(
            "still PENDING_WHITELIST after 1 s (task 00000000-0000-4000-8000-000000000001)"
        )
    );

    let agent = AgentPeer::start(Behaviour::NotFound);
    let out = run(&agent.url, &[]);
    assert_eq!(out.status.code(), Some(32));
    assert!(error_line(&out).contains("has no quote-based issuance endpoint (HTTP 404"));

    let agent = AgentPeer::start(Behaviour::WrongKey);
    let out = run(&agent.url, &[]);
    assert_eq!(out.status.code(), Some(35));
    assert!(error_line(&out).contains("for another public key"));
    assert!(
        !img.path("/run/secrets/key.pem").exists(),
        "nothing installed"
    );

    // A certificate that does not chain to the zone CA the launcher was given is refused, even
    // though it is for the right key and domain and its issuer has the zone CA's name.
    let agent = AgentPeer::start(Behaviour::ForeignCa);
    let ca_file = img.dir.path().join("zone-ca.pem");
    std::fs::write(&ca_file, agent.ca_pem()).unwrap();
    let zone_ca = format!("--ccm-zone-ca={}", ca_file.display());
    let out = run(&agent.url, &[&zone_ca]);
    assert_eq!(out.status.code(), Some(35), "{}", stderr(&out));
    assert!(
        error_line(&out).contains(&format!(
            "certificate for app.example.test: the certificate does not chain to the zone CA in {}",
            ca_file.display()
        )),
        "{}",
        error_line(&out)
    );
    assert!(
        !img.path("/run/secrets/key.pem").exists(),
        "nothing installed"
    );
    // An unreadable zone CA file is a usage error, before any nonce is spent.
    let agent = AgentPeer::start(Behaviour::Issue {
        pending_polls: 0,
        lifetime_secs: 3600,
    });
    let missing = format!(
        "--ccm-zone-ca={}",
        img.dir.path().join("nope.pem").display()
    );
    let out = run(&agent.url, &[&missing]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(error_line(&out).contains("cannot read the zone CA certificate file"));
    assert_eq!(agent.nonces_issued(), 0);

    // No nonce to be had (the agent cannot reach its manager): retried, then one clear line.
    let agent = AgentPeer::start(Behaviour::NoNonce);
    let out = run(&agent.url, &["--ccm-cert-timeout=1"]);
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    assert_eq!(
        error_line(&out),
        "ccm-launch: error: certificate for app.example.test: gave up after 1 s: no nonce: node agent \
         answered HTTP 503: manager_unavailable: no issuance nonce: the manager is not reachable"
    );
    assert!(agent.requests().is_empty(), "no request without a nonce");

    // Transient failures are retried within the deadline.
    let agent = AgentPeer::start(Behaviour::Unavailable(2));
    let out = run(&agent.url, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("node agent answered HTTP 503"));
    // Each attempt had its own nonce and quote: the one that went through was fresh.
    assert_eq!(agent.nonces_issued(), 3);

    // Nobody listening: retried, then a clear error when the time is up.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(
        &format!("http://127.0.0.1:{port}/v1/"),
        &["--ccm-cert-timeout=1"],
    );
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    assert!(error_line(&out).contains("unreachable"));
}

#[test]
fn runtime_arguments_follow_the_manifest() {
    let mut spec = ImageSpec::default();
    spec.certificates.clear();
    spec.entrypoint = vec!["/bin/sh".into(), "-c".into(), "echo measured".into()];
    let img = image(&spec);
    let out = img
        .launcher()
        .arg("-c")
        .arg("echo injected")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(13));
    assert!(error_line(&out).contains("2 runtime argument(s) given but the manifest does not allow runtime arguments (first: \"-c\")"));

    spec.allow_runtime_args = true;
    let img = image(&spec);
    let out = img.launcher().output().unwrap();
    assert_eq!(stdout(&out), "measured\n", "{}", stderr(&out));
    let out = img
        .launcher()
        .args(["--", "-c", "echo replaced $0"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "replaced /bin/sh\n", "{}", stderr(&out));
}

#[test]
fn self_signed_needs_no_attestation_and_verify_only_reports() {
    let mut spec = ImageSpec::default();
    spec.certificates[0].issuer = ccm_enclave::Issuer::SelfSigned;
    spec.entrypoint = vec!["/bin/sh".into(), "-c".into(), "exit 7".into()];
    let img = image(&spec);
    let out = img.launcher().arg("--ccm-no-renew").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "the app's exit code: {}",
        stderr(&out)
    );
    let cert = std::fs::read_to_string(img.path("/run/secrets/cert.pem")).unwrap();
    let key = std::fs::read_to_string(img.path("/run/secrets/key.pem")).unwrap();
    assert_eq!(cert_spki(&cert), key_spki(&key));

    let out = img.launcher().arg("--ccm-verify-only").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mrenclave"], img.signed.mrenclave.to_string());
    assert_eq!(v["files"], 3);
    assert_eq!(v["symlinks"], 1);
}

#[test]
fn in_process_simulation_is_explicit_and_labelled() {
    let platform_dir = tempfile::tempdir().unwrap();
    let platform = platform_dir.path().join("p");
    ccm_attest::sim::init(
        &platform,
        &ccm_attest::sim::PlatformOptions::new(unix_now() - 60),
    )
    .unwrap();
    let agent = AgentPeer::start(Behaviour::Issue {
        pending_polls: 0,
        lifetime_secs: 3600,
    });
    let img = image(&ImageSpec::default());
    let out = img
        .launcher()
        .arg(format!(
            "--ccm-dangerous-inprocess-sim={}",
            platform.display()
        ))
        .arg("--ccm-no-renew")
        .env("NODE_AGENT_BASE_URL", &agent.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("SIMULATION: quoting in-process"));
    let (_, quote) = &agent.requests()[0];
    let root = ccm_attest::sim::load_root(&platform).unwrap();
    let collateral = ccm_attest::sim::load_collateral(&platform).unwrap();
    let v = ccm_attest::Verifier::new(ccm_attest::TrustRoots::empty().with(root))
        .verify(quote, &collateral, unix_now())
        .unwrap();
    assert_eq!(v.report.mr_enclave, img.signed.mrenclave);
}

#[test]
fn renewal_replaces_key_and_certificate_with_a_fresh_attestation() {
    let platform = Platform::start();
    let agent = AgentPeer::start(Behaviour::Issue {
        pending_polls: 0,
        lifetime_secs: 3,
    });
    let mut spec = ImageSpec::default();
    let stop = tempfile::tempdir().unwrap();
    let stop_file = stop.path().join("stop");
    spec.entrypoint = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("while [ ! -e {} ]; do sleep 0.1; done", stop_file.display()),
    ];
    let img = image(&spec);
    let log = img.dir.path().join("launcher.log");
    let mut child = img
        .launcher()
        .arg(format!("--ccm-aesm-socket={}", platform.socket().display()))
        .env("SGX_AESM_ADDR", "1")
        .env("NODE_AGENT_BASE_URL", &agent.url)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let cert_path = img.path("/run/secrets/cert.pem");
    let key_path = img.path("/run/secrets/key.pem");
    wait_until("the first certificate", Duration::from_secs(30), || {
        cert_path.is_file()
    });
    let first_cert = std::fs::read_to_string(&cert_path).unwrap();
    let first_key = std::fs::read_to_string(&key_path).unwrap();
    wait_until("the renewed certificate", Duration::from_secs(30), || {
        std::fs::read_to_string(&cert_path).is_ok_and(|c| c != first_cert)
    });
    let cert = std::fs::read_to_string(&cert_path).unwrap();
    // The key is replaced before the certificate: the pair on disk matches.
    let key = std::fs::read_to_string(&key_path).unwrap();
    assert_ne!(key, first_key, "a fresh key");
    assert_eq!(cert_spki(&cert), key_spki(&key));
    assert_eq!(mode_of(&key_path), 0o600);
    let reqs = agent.requests();
    assert!(reqs.len() >= 2);
    // Each request had its own nonce (the peer denies a nonce used twice, as the manager does).
    assert_eq!(agent.nonces_issued(), reqs.len());
    let (csr, quote) = reqs
        .iter()
        .find(|(csr, _)| csr_spki(csr) == cert_spki(&cert))
        .unwrap();
    let body = platform.verify(quote).report;
    assert_eq!(body.mr_enclave, img.signed.mrenclave);
    assert_eq!(
        &body.report_data.0[..32],
        ring::digest::digest(&ring::digest::SHA256, &csr_spki(csr)).as_ref()
    );

    // The app stops; the renewer notices its parent is gone and exits.
    std::fs::write(&stop_file, b"").unwrap();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let renewer: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("ccm-launch: renewal process "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no renewer pid in {text}"));
    wait_until(
        "the renewer to exit",
        Duration::from_secs(20),
        || match std::fs::read_to_string(format!("/proc/{renewer}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z')),
        },
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("renewed the certificate for app.example.test"),
        "{text}"
    );
}
