//! `ccm convert` and `ccm run` end to end: a real registry with htpasswd auth, a statically
//! linked test program, runc.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers outside #[test] functions.

use std::process::{Command, Output};

use ccm_image::oci::Platform;
use ccm_image::{
    Credentials, Destination, Location, NoProgress, Registries, RegistryOptions, Source,
};
use ccm_testkit::registry::Registry;
use ccm_testkit::runc::{Entry, TestImage, compile_static_c};

const PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    printf("hello from the test image:");
    for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
    printf("\nGREETING=%s\n", getenv("GREETING") ? getenv("GREETING") : "(unset)");
    FILE *f = fopen("/app/data/message.txt", "r");
    if (f) { char b[128]; size_t n = fread(b, 1, sizeof b - 1, f); b[n] = 0; printf("message: %s", b); fclose(f); }
    return 7;
}
"#;

fn ccm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ccm"))
        .args(args)
        .env_remove("CCM_CREDS")
        .output()
        .unwrap()
}

/// Starts a registry with auth and pushes a plain test image to `team/hello:1`.
fn setup(work: &std::path::Path) -> (Registry, String) {
    let reg = Registry::start_with_auth("alice", "pw").unwrap();
    let exe = work.join("hello");
    compile_static_c(PROGRAM, &exe).unwrap();
    let image = TestImage {
        layers: vec![vec![
            Entry::dir("app"),
            Entry::exe("app/hello", std::fs::read(&exe).unwrap()),
            Entry::dir("app/data"),
            Entry::file("app/data/message.txt", "from the image\n"),
            Entry::file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
        ]],
        entrypoint: Some(vec!["/app/hello".into()]),
        cmd: Some(vec!["default".into()]),
        env: vec!["GREETING=image".into()],
        working_dir: Some("/app".into()),
        ..Default::default()
    };
    let layout = work.join("layout");
    image.write_oci_layout(&layout, "hello").unwrap();
    let reference = format!("{}/team/hello:1", reg.host());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let regs = Registries::new(&RegistryOptions {
            insecure: vec![reg.host()],
            ..Default::default()
        })
        .unwrap();
        let src = Source::open(
            &format!("oci:{}:hello", layout.display()).parse().unwrap(),
            &regs,
            None,
        )
        .await
        .unwrap();
        let creds = Some(Credentials {
            username: "alice".into(),
            password: "pw".into(),
        });
        let dst = Destination::open(&reference.parse::<Location>().unwrap(), &regs, creds)
            .await
            .unwrap();
        ccm_image::copy(&src, &dst, &Platform::linux_amd64(), &NoProgress)
            .await
            .unwrap();
    });
    (reg, reference)
}

#[test]
fn run_pulls_unpacks_and_runs_with_runc() {
    let work = tempfile::tempdir().unwrap();
    let (reg, reference) = setup(work.path());
    let host_data = work.path().join("data");
    std::fs::create_dir(&host_data).unwrap();
    std::fs::write(host_data.join("message.txt"), "from the host\n").unwrap();
    let volume = format!("{}:/app/data:ro", host_data.display());
    let out = ccm(&[
        "run",
        "--insecure-registry",
        &reg.host(),
        "--creds",
        "alice:pw",
        "-e",
        "GREETING=cli",
        "-v",
        &volume,
        &reference,
        "one",
        "two",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(7),
        "exit code passes through; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("hello from the test image: one two"),
        "{stdout}"
    );
    assert!(stdout.contains("GREETING=cli"), "{stdout}");
    assert!(stdout.contains("message: from the host"), "{stdout}");

    // Image defaults (CMD, ENV, the file from the image).
    let out = ccm(&[
        "run",
        "--insecure-registry",
        &reg.host(),
        "--creds",
        "alice:pw",
        &reference,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7));
    assert!(
        stdout.contains("hello from the test image: default") && stdout.contains("GREETING=image"),
        "{stdout}"
    );
    assert!(stdout.contains("message: from the image"), "{stdout}");

    // Wrong credentials: one clear line, exit 2.
    let out = ccm(&[
        "run",
        "--insecure-registry",
        &reg.host(),
        "--creds",
        "alice:nope",
        &reference,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "authentication failed for registry {}",
            reg.host()
        )),
        "{stderr}"
    );
}

#[test]
fn convert_prints_identity_and_is_reproducible() {
    let work = tempfile::tempdir().unwrap();
    let (reg, reference) = setup(work.path());
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ccm-image/tests/data/test-signing-key.pem"
    );
    let launcher = work.path().join("launcher");
    std::fs::write(&launcher, b"#!/bin/sh\nexit 0\n").unwrap();
    let to = format!("{}/team/hello-sgx:1", reg.host());
    let convert = |creds: &str| {
        ccm(&[
            "convert",
            "--from",
            &reference,
            "--to",
            &to,
            "--from-creds",
            creds,
            "--to-creds",
            creds,
            "--insecure-registry",
            &reg.host(),
            "--isvprodid",
            "5",
            "--isvsvn",
            "2",
            "--mem-size",
            "64M",
            "--threads",
            "4",
            "--domain",
            "hello.example.test",
            "--key-type",
            "ec:p256",
            "--signing-key",
            key,
            "--launcher",
            launcher.to_str().unwrap(),
            "--output",
            "json",
            "--quiet",
        ])
    };
    let first = convert("alice:pw");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let a: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(a["reference"], to);
    assert_eq!(
        (a["isvprodid"].as_u64(), a["isvsvn"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(a["mrenclave"].as_str().unwrap().len(), 64);
    assert!(a["digest"].as_str().unwrap().starts_with("sha256:"));
    let b: serde_json::Value = serde_json::from_slice(&convert("alice:pw").stdout).unwrap();
    assert_eq!(
        (&a["digest"], &a["mrenclave"], &a["mrsigner"]),
        (&b["digest"], &b["mrenclave"], &b["mrsigner"])
    );

    let bad = convert("alice:wrong");
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains(&format!(
            "authentication failed for registry {}",
            reg.host()
        )),
        "{stderr}"
    );

    let missing = ccm(&[
        "convert",
        "--from",
        &format!("{}/team/hello:nope", reg.host()),
        "--to",
        &to,
        "--from-creds",
        "alice:pw",
        "--insecure-registry",
        &reg.host(),
        "--signing-key",
        key,
        "--launcher",
        launcher.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains(&format!("image {}/team/hello:nope not found", reg.host())),
        "{stderr}"
    );
}
