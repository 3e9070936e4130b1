//! Push, pull and convert against a real registry (Debian's docker-registry with htpasswd auth).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers outside #[test] functions.

mod common;

use ccm_enclave::{Manifest, VerifyOptions, verify_enclave, verify_trusted_files};
use ccm_image::oci::{self, ManifestKind, Platform};
use ccm_image::{Credentials, Destination, Error, Location, NoProgress, Source, convert::keys};
use common::*;

async fn open_src(regs: &ccm_image::Registries, r: &str, creds: Option<Credentials>) -> Source {
    Source::open(&r.parse::<Location>().unwrap(), regs, creds)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_round_trips_with_auth() {
    let work = tempfile::tempdir().unwrap();
    let (_reg, regs, reference) = registry_with_image(work.path()).await;
    let local = open_src(
        &regs,
        &format!("oci:{}:app", work.path().join("layout").display()),
        None,
    )
    .await;
    let want = local.resolve(&Platform::linux_amd64()).await.unwrap();

    let remote = open_src(&regs, &reference, creds()).await;
    let got = remote.resolve(&Platform::linux_amd64()).await.unwrap();
    assert_eq!(
        got.manifest_digest, want.manifest_digest,
        "the manifest is stored byte for byte"
    );
    assert_eq!(got.config_bytes, want.config_bytes);
    // Pull every layer back out to disk and check the tree.
    let rootfs = work.path().join("rootfs");
    ccm_image::unpack(&remote, &Platform::linux_amd64(), &rootfs, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/data/message.txt")).unwrap(),
        "measured content\n"
    );
    assert_eq!(
        std::fs::read(rootfs.join("usr/lib/through-symlink.so")).unwrap(),
        b"lands in usr/lib"
    );
    assert!(!rootfs.join("old").exists(), "whiteout applied");
    assert_eq!(
        std::fs::read_link(rootfs.join("app/current"))
            .unwrap()
            .to_str(),
        Some("hello")
    );
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        std::fs::metadata(rootfs.join("app/hello")).unwrap(),
        std::fs::metadata(rootfs.join("app/hello-link")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hard link shares the inode");
    assert_eq!(a.mode() & 0o7777, 0o755);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_missing_images_have_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    let (reg, regs, reference) = registry_with_image(work.path()).await;
    let wrong = Some(Credentials {
        username: USER.into(),
        password: "wrong".into(),
    });
    let err = open_src(&regs, &reference, wrong)
        .await
        .resolve(&Platform::linux_amd64())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("authentication failed for registry {}", reg.host())
    );
    let err = open_src(&regs, &reference, None)
        .await
        .resolve(&Platform::linux_amd64())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "authentication failed for registry {} (no credentials given)",
            reg.host()
        )
    );

    let missing_tag = format!("{}/team/app:nope", reg.host());
    let err = open_src(&regs, &missing_tag, creds())
        .await
        .resolve(&Platform::linux_amd64())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), format!("image {missing_tag} not found"));
    let missing_repo = format!("{}/team/other:1", reg.host());
    let err = open_src(&regs, &missing_repo, creds())
        .await
        .resolve(&Platform::linux_amd64())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), format!("image {missing_repo} not found"));

    // Without --insecure-registry the client insists on TLS and fails to handshake.
    let strict = registries(&[]);
    let err = open_src(&strict, &reference, creds())
        .await
        .resolve(&Platform::linux_amd64())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convert_with_credentials_is_reproducible_and_verifiable() {
    let work = tempfile::tempdir().unwrap();
    let (reg, regs, reference) = registry_with_image(work.path()).await;
    let launcher = b"#!/bin/sh\necho stand-in launcher\n".to_vec();
    let settings = settings(64 << 20, &launcher);
    let out_ref = format!("{}/team/app-sgx:1", reg.host());

    let src = open_src(&regs, &reference, creds()).await;
    let dst = Destination::open(&out_ref.parse().unwrap(), &regs, creds())
        .await
        .unwrap();
    let first = ccm_image::convert(&src, &dst, &settings, &NoProgress)
        .await
        .unwrap();
    let second = ccm_image::convert(&src, &dst, &settings, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        first.digest, second.digest,
        "same input and settings, same output digest"
    );
    assert_eq!(first.mrenclave, second.mrenclave);
    assert_eq!(
        second.layers_skipped, 3,
        "the second run finds the input layers present"
    );
    // Converting to a second repository (a different registry path) gives the same digest too.
    let other = Destination::open(
        &format!("{}/elsewhere/app-sgx:x", reg.host())
            .parse()
            .unwrap(),
        &regs,
        creds(),
    )
    .await
    .unwrap();
    assert_eq!(
        ccm_image::convert(&src, &other, &settings, &NoProgress)
            .await
            .unwrap()
            .digest,
        first.digest
    );

    // Inspect the pushed image.
    let out = open_src(&regs, &out_ref, creds()).await;
    let input = src.resolve(&Platform::linux_amd64()).await.unwrap();
    let pulled = out.resolve(&Platform::linux_amd64()).await.unwrap();
    assert_eq!(pulled.manifest_digest, first.digest);
    assert_eq!(
        pulled.manifest.media_type.as_deref(),
        Some(oci::OCI_MANIFEST)
    );
    assert_eq!(
        pulled.manifest.layers.len(),
        input.manifest.layers.len() + 1
    );
    for (a, b) in input.manifest.layers.iter().zip(&pulled.manifest.layers) {
        assert_eq!(
            (a.digest, a.size),
            (b.digest, b.size),
            "input layers unchanged"
        );
    }
    let ann = &pulled.manifest.annotations;
    assert_eq!(ann[keys::MRENCLAVE], first.mrenclave);
    assert_eq!(ann[keys::MRSIGNER], first.mrsigner);
    assert_eq!(
        (ann[keys::ISVPRODID].as_str(), ann[keys::ISVSVN].as_str()),
        ("42", "3")
    );
    let rc = pulled.config.config.clone().unwrap();
    assert_eq!(rc.entrypoint.unwrap(), ["/opt/ccm/bin/ccm-launch"]);
    assert!(rc.cmd.is_none(), "CMD cleared");
    assert_eq!(rc.labels.unwrap()[keys::MRENCLAVE], first.mrenclave);
    assert_eq!(pulled.config.rootfs.diff_ids.len(), 4);

    // Unpack the converted image: the manifest and SIGSTRUCT verify, and so do the files.
    let rootfs = work.path().join("converted");
    ccm_image::unpack(&out, &Platform::linux_amd64(), &rootfs, &NoProgress)
        .await
        .unwrap();
    let manifest_bytes = std::fs::read(rootfs.join("opt/ccm/enclave.json")).unwrap();
    let sig = std::fs::read(rootfs.join("opt/ccm/enclave.sig")).unwrap();
    let v = verify_enclave(&manifest_bytes, &sig).unwrap();
    assert_eq!(v.mrenclave.to_string(), first.mrenclave);
    assert_eq!((v.isv_prod_id, v.isv_svn), (42, 3));
    assert_eq!(
        std::fs::read(rootfs.join("opt/ccm/bin/ccm-launch")).unwrap(),
        launcher
    );
    let m: Manifest = v.manifest;
    assert_eq!(m.entrypoint, ["/app/hello", "default-arg"]);
    assert_eq!(m.env["GREETING"], "hi");
    assert_eq!(m.env["MODE"], "enclave");
    assert_eq!(m.working_dir, "/app");
    let paths: Vec<&str> = m.trusted_files.iter().map(|f| f.path.as_str()).collect();
    for expected in [
        "/app/hello",
        "/app/hello-link",
        "/app/data/extra.txt",
        "/opt/ccm/bin/ccm-launch",
        "/usr/lib/through-symlink.so",
    ] {
        assert!(paths.contains(&expected), "{expected} measured: {paths:?}");
    }
    for excluded in [
        "/tmp/scratch",
        "/etc/hostname",
        "/old/removed.txt",
        "/opt/ccm/enclave.json",
    ] {
        assert!(!paths.contains(&excluded), "{excluded} not measured");
    }
    assert!(
        m.symlinks
            .iter()
            .any(|s| s.path == "/lib" && s.target == "usr/lib")
    );
    let stats = verify_trusted_files(&rootfs, &m, VerifyOptions::default()).unwrap();
    assert_eq!(stats.files as usize, m.trusted_files.len());

    // Tampering is detected, naming the file.
    std::fs::write(rootfs.join("app/data/message.txt"), "tampered content\n").unwrap();
    let err = verify_trusted_files(&rootfs, &m, VerifyOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("trusted file /app/data/message.txt: content SHA-256"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_images_and_hostile_layers_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let regs = registries(&[]);
    let program = static_program(work.path());
    let image = test_image(program.clone());
    let layout = work.path().join("in");
    image.write_oci_layout(&layout, "app").unwrap();
    let src = open_src(&regs, &format!("oci:{}:app", layout.display()), None).await;
    let out = work.path().join("out");
    let dst = Destination::open(
        &format!("oci:{}:app-sgx", out.display()).parse().unwrap(),
        &regs,
        None,
    )
    .await
    .unwrap();

    // 8 threads × 67 pages is 2.1 MiB before any file: 2 MiB cannot hold it.
    let err = ccm_image::convert(&src, &dst, &settings(2 << 20, b"launcher"), &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Enclave(ccm_enclave::Error::DoesNotFit { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("does not fit the enclave memory size"),
        "{err}"
    );
    assert!(
        !out.join("index.json").exists(),
        "no manifest written for a refused image"
    );

    for (name, entries, expect) in [
        (
            "dotdot",
            vec![ccm_testkit::runc::Entry::file("../escape.txt", "x")],
            "'..' component",
        ),
        (
            "symlink",
            vec![
                ccm_testkit::runc::Entry::symlink("evil", "../../.."),
                ccm_testkit::runc::Entry::file("evil/escape.txt", "x"),
            ],
            "escapes the image root through symlink \"/evil\"",
        ),
    ] {
        let mut bad = image.clone();
        bad.layers.push(entries);
        let dir = work.path().join(name);
        bad.write_oci_layout(&dir, "bad").unwrap();
        let src = open_src(&regs, &format!("oci:{}:bad", dir.display()), None).await;
        let err = ccm_image::convert(&src, &dst, &settings(64 << 20, b"launcher"), &NoProgress)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Layer { index: 3, .. }), "{err:?}");
        assert!(err.to_string().contains(expect), "{name}: {err}");
        let rootfs = work.path().join(format!("{name}-rootfs"));
        let err = ccm_image::unpack(&src, &Platform::linux_amd64(), &rootfs, &NoProgress)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expect), "{name}: {err}");
        assert!(
            !work.path().join("escape.txt").exists()
                && !std::path::Path::new("/escape.txt").exists()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_archives_and_layouts_convert_the_same() {
    let work = tempfile::tempdir().unwrap();
    let regs = registries(&[]);
    let image = test_image(static_program(work.path()));
    let archive = work.path().join("app.tar");
    image
        .write_docker_archive(&archive, "example.test/team/app:1")
        .unwrap();
    let src = open_src(
        &regs,
        &format!(
            "docker-archive:{}:example.test/team/app:1",
            archive.display()
        ),
        None,
    )
    .await;
    let resolved = src.resolve(&Platform::linux_amd64()).await.unwrap();
    assert_eq!(resolved.manifest.layers.len(), 3);
    assert_eq!(resolved.manifest.layers[0].media_type, oci::OCI_LAYER_TAR);
    let out = work.path().join("out");
    let dst = Destination::open(
        &format!("oci:{}:sgx", out.display()).parse().unwrap(),
        &regs,
        None,
    )
    .await
    .unwrap();
    let from_archive =
        ccm_image::convert(&src, &dst, &settings(64 << 20, b"launcher"), &NoProgress)
            .await
            .unwrap();

    // The same files from an OCI layout (gzip layers) give the same MRENCLAVE: the measurement
    // depends on the file tree, not on how the layers are packed.
    let layout = work.path().join("layout");
    image.write_oci_layout(&layout, "app").unwrap();
    let src2 = open_src(&regs, &format!("oci:{}:app", layout.display()), None).await;
    let dst2 = Destination::open(
        &format!("oci:{}:sgx2", out.display()).parse().unwrap(),
        &regs,
        None,
    )
    .await
    .unwrap();
    let from_layout =
        ccm_image::convert(&src2, &dst2, &settings(64 << 20, b"launcher"), &NoProgress)
            .await
            .unwrap();
    assert_eq!(from_archive.mrenclave, from_layout.mrenclave);
    assert_ne!(
        from_archive.digest, from_layout.digest,
        "different input layers, different image"
    );

    // Read back from the written layout.
    let back = open_src(&regs, &format!("oci:{}:sgx", out.display()), None).await;
    let ManifestKind::Image(m) = oci::parse_manifest(
        "m",
        &back
            .resolve(&Platform::linux_amd64())
            .await
            .unwrap()
            .manifest_bytes,
        None,
    )
    .unwrap() else {
        panic!("not an image manifest")
    };
    assert_eq!(m.layers.len(), 4);
    let loc: Location = format!("docker-archive:{}:nope:1", archive.display())
        .parse()
        .unwrap();
    match Source::open(&loc, &regs, None).await {
        Err(err) => assert!(matches!(err, Error::ImageNotFound { .. }), "{err:?}"),
        Ok(_) => panic!("an image that is not in the archive was found"),
    }
}
