//! Shared fixtures: a test image with a static program, a registry with htpasswd auth, settings.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use ccm_enclave::{CertificateRequest, EnclaveParams, Issuer, KeyType, SigningKey};
use ccm_image::oci::Platform;
use ccm_image::{
    ConvertSettings, Credentials, Destination, Location, NoProgress, Registries, RegistryOptions,
    Source,
};
use ccm_testkit::registry::Registry;
use ccm_testkit::runc::{Entry, TestImage, compile_static_c};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse";

/// The test program: prints its arguments and an env var, reads a data file, exits 7.
pub const PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    printf("hello from the test image:");
    for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
    printf("\n");
    const char *g = getenv("GREETING");
    printf("GREETING=%s\n", g ? g : "(unset)");
    FILE *f = fopen("/app/data/message.txt", "r");
    if (f) { char buf[128]; size_t n = fread(buf, 1, sizeof buf - 1, f); buf[n] = 0; printf("message: %s", buf); fclose(f); }
    fflush(stdout);
    return 7;
}
"#;

pub fn static_program(dir: &Path) -> Vec<u8> {
    let out = dir.join("hello");
    compile_static_c(PROGRAM, &out).expect("compile the static test program");
    std::fs::read(out).unwrap()
}

/// A three-layer image: base files, the program with links, and a layer with whiteouts.
pub fn test_image(program: Vec<u8>) -> TestImage {
    TestImage {
        layers: vec![
            vec![
                Entry::dir("etc"),
                Entry::file(
                    "etc/passwd",
                    "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n",
                ),
                Entry::file("etc/group", "root:x:0:\napp:x:1000:\n"),
                Entry::file("etc/hostname", "excluded\n"),
                Entry::dir("tmp"),
                Entry::file("tmp/scratch", "unmeasured"),
                Entry::dir("old"),
                Entry::file("old/removed.txt", "gone in layer 3"),
                Entry::dir("usr/lib"),
                Entry::file("usr/lib/libfake.so", vec![0xaa; 10_000]),
                Entry::symlink("lib", "usr/lib"),
            ],
            vec![
                Entry::dir("app"),
                Entry::exe("app/hello", program),
                Entry::dir("app/data"),
                Entry::file("app/data/message.txt", "measured content\n"),
                Entry::HardLink {
                    path: "app/hello-link".into(),
                    target: "app/hello".into(),
                },
                Entry::symlink("app/current", "hello"),
                Entry::file("lib/through-symlink.so", "lands in usr/lib"),
            ],
            vec![
                Entry::Whiteout { path: "old".into() },
                Entry::file("app/data/extra.txt", "layer three"),
            ],
        ],
        entrypoint: Some(vec!["/app/hello".into()]),
        cmd: Some(vec!["default-arg".into()]),
        env: vec!["PATH=/usr/bin:/bin".into(), "GREETING=hi".into()],
        working_dir: Some("/app".into()),
        user: None,
        created: Some("2024-03-04T05:06:07Z".into()),
    }
}

pub fn registries(insecure: &[String]) -> Registries {
    Registries::new(&RegistryOptions {
        insecure: insecure.to_vec(),
        extra_ca_file: None,
        only_extra_ca: false,
    })
    .unwrap()
}

pub fn creds() -> Option<Credentials> {
    Some(Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    })
}

pub fn signing_key() -> Arc<SigningKey> {
    let pem = include_str!("../data/test-signing-key.pem");
    Arc::new(SigningKey::from_pem(pem).unwrap())
}

pub fn settings(mem_size: u64, launcher: &[u8]) -> ConvertSettings {
    ConvertSettings {
        enclave: EnclaveParams::new(mem_size, 8, false).unwrap(),
        isv_prod_id: 42,
        isv_svn: 3,
        entrypoint: None,
        args: None,
        allow_runtime_args: false,
        env: vec![("MODE".into(), "enclave".into())],
        passthrough_env: vec![],
        certificates: vec![CertificateRequest {
            domain: "app.example.test".into(),
            key_type: KeyType::EcP256,
            key_path: "/run/key.pem".into(),
            cert_path: "/run/cert.pem".into(),
            chain_path: None,
            issuer: Issuer::ManagerCa,
        }],
        excluded_paths: vec![],
        launcher: launcher.to_vec().into(),
        launcher_version: "0.1.0-test".into(),
        signing_key: signing_key(),
        platform: Platform::linux_amd64(),
    }
}

/// Starts an authenticated registry and pushes the test image to `app:1` with ccm-image's copy.
pub async fn registry_with_image(work: &Path) -> (Registry, Registries, String) {
    let reg = Registry::start_with_auth(USER, PASSWORD).unwrap();
    let regs = registries(&[reg.host()]);
    let layout = work.join("layout");
    test_image(static_program(work))
        .write_oci_layout(&layout, "app")
        .unwrap();
    let src = Source::open(
        &format!("oci:{}:app", layout.display()).parse().unwrap(),
        &regs,
        None,
    )
    .await
    .unwrap();
    let reference = format!("{}/team/app:1", reg.host());
    let dst = Destination::open(&reference.parse::<Location>().unwrap(), &regs, creds())
        .await
        .unwrap();
    ccm_image::copy(&src, &dst, &Platform::linux_amd64(), &NoProgress)
        .await
        .unwrap();
    (reg, regs, reference)
}
