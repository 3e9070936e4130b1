//! The python-flask image: the reproducible layer writer on a small tree, the mirror check, and
//! the real image built with debootstrap (or taken from the cache), pushed to a real
//! docker-registry, pulled back, and served over HTTPS by runc.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers outside #[test] functions.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccm_image::oci::Compression;
use ccm_image::run::{RunOptions, Volume, runtime_spec, write_bundle};
use ccm_image::tree::EntryKind;
use ccm_image::{Credentials, Location, NoProgress, Registries, RegistryOptions, Source};
use ccm_testkit::flask::{self, FlaskError, Recipe};
use ccm_testkit::registry::Registry;

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A small tree with everything the layer writer must keep: owners, setuid, hard and symbolic
/// links, names and link targets longer than a ustar header holds.
fn sample_tree(root: &Path) -> String {
    let long_dir = format!("deep/{}", "d".repeat(60));
    let long_name = format!("{long_dir}/{}.txt", "f".repeat(70));
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::create_dir_all(root.join("b/empty")).unwrap();
    std::fs::create_dir_all(root.join(&long_dir)).unwrap();
    std::fs::write(root.join("a/file"), b"hello layer\n").unwrap();
    std::os::unix::fs::chown(root.join("a/file"), Some(1000), Some(1001)).unwrap();
    std::fs::hard_link(root.join("a/file"), root.join("b/hard")).unwrap();
    std::fs::write(root.join("a/suid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(root.join("a/suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink("../a/file", root.join("b/link")).unwrap();
    std::fs::write(root.join(&long_name), b"long").unwrap();
    std::os::unix::fs::symlink(format!("/{long_name}"), root.join("b/long-link")).unwrap();
    long_name
}

fn layer_bytes(root: &Path) -> (Vec<u8>, flask::LayerInfo) {
    let mut out = Vec::new();
    let info = flask::write_layer(root, &mut out).unwrap();
    (out, info)
}

#[test]
fn layer_is_reproducible_and_keeps_owners_modes_and_links() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let long_name = sample_tree(&root);

    let (first, info) = layer_bytes(&root);
    // Touch everything: new mtimes must not change a byte.
    for p in ["a/file", "a/suid", "b", &long_name] {
        let f = std::fs::File::options()
            .read(true)
            .open(root.join(p))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
    }
    let (second, again) = layer_bytes(&root);
    assert_eq!(first, second, "same tree, same layer bytes");
    assert_eq!(info, again);
    assert_eq!(info.digest, ccm_image::Digest::of(&first));
    assert_eq!(info.gzip_bytes, first.len() as u64);
    assert_eq!(
        (info.regular_files, info.hard_links, info.symlinks),
        (3, 1, 2)
    );
    assert_eq!(info.directories, 5); // a, b, b/empty, deep, deep/ddd…

    // ccm-image reads it back: sorted walk order, owners, modes, links and long names intact.
    let scan = ccm_image::layer::scan_layer(&first[..], Compression::Gzip, true).unwrap();
    assert_eq!(scan.diff_id, Some(info.diff_id));
    assert_eq!(scan.uncompressed_size, info.tar_bytes);
    let paths: Vec<&str> = scan.entries.iter().map(|e| e.path.as_str()).collect();
    let dd = format!("deep/{}", "d".repeat(60));
    assert_eq!(
        paths,
        [
            "a",
            "a/file",
            "a/suid",
            "b",
            "b/empty",
            "b/hard",
            "b/link",
            "b/long-link",
            "deep",
            &dd,
            &long_name,
        ]
    );
    let get = |p: &str| scan.entries.iter().find(|e| e.path == p).unwrap();
    let file = get("a/file");
    assert_eq!((file.uid, file.gid, file.mode), (1000, 1001, 0o644));
    match &file.kind {
        EntryKind::File { size, sha256 } => {
            assert_eq!(*size, 12);
            assert_eq!(
                hex_of(sha256.as_ref().unwrap()),
                sha256_hex(b"hello layer\n")
            );
        }
        other => panic!("a/file is {other:?}"),
    }
    assert_eq!(get("a/suid").mode, 0o4755);
    assert!(matches!(&get("b/hard").kind, EntryKind::HardLink { target } if target == "a/file"));
    assert!(matches!(&get("b/link").kind, EntryKind::Symlink { target } if target == "../a/file"));
    assert!(
        matches!(&get("b/long-link").kind, EntryKind::Symlink { target } if *target == format!("/{long_name}"))
    );

    // Every entry carries the fixed mtime.
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&first[..]));
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().mtime().unwrap(), flask::SOURCE_DATE_EPOCH);
        assert_eq!(e.header().username_bytes(), Some(&b""[..]));
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn special_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("run")).unwrap();
    let fifo = dir.path().join("run/initctl");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let err = flask::write_layer(dir.path(), std::io::sink()).unwrap_err();
    match err {
        ccm_testkit::Error::Flask(e) => match *e {
            FlaskError::SpecialFile { path, kind } => {
                assert_eq!(path, fifo);
                assert_eq!(kind, "a FIFO");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unreachable_mirror_is_a_clear_error() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cache = tempfile::tempdir().unwrap();
    let recipe = Recipe {
        mirror: format!("http://127.0.0.1:{port}/debian"),
        ..Recipe::default()
    };
    let err = flask::build_or_reuse(&recipe, cache.path()).unwrap_err();
    let text = err.to_string();
    match err {
        ccm_testkit::Error::Flask(e) => {
            assert!(
                matches!(&*e, FlaskError::MirrorUnreachable { mirror, .. } if *mirror == recipe.mirror),
                "{e:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(text.contains("needs network access"), "{text}");
    // Nothing half-built is left behind as if it were an image.
    let left: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A runc container run in the background, killed and deleted on drop.
struct Container {
    runc: PathBuf,
    state: PathBuf,
    id: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Container {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn runc(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.runc)
            .arg("--root")
            .arg(&self.state)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.runc(&["kill", &self.id, "KILL"]);
            let _ = child.wait();
        }
        let _ = self.runc(&["delete", "--force", &self.id]);
    }
}

/// A TLS client trusting only `ca_pem`.
fn tls_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// `GET path` over TLS to 127.0.0.1:port: (status, body, the server's leaf certificate DER).
fn https_get(
    config: &Arc<rustls::ClientConfig>,
    port: u16,
    path: &str,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    tls.flush()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // Werkzeug closes without close_notify once the response is complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned(), leaf))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a self-signed certificate for 127.0.0.1 and its key into `dir` (renamed into place,
/// key first, as the launcher installs them). Returns (certificate PEM, certificate DER).
fn install_cert(dir: &Path) -> (String, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert_pem = ck.cert.pem();
    for (name, data) in [
        ("key.pem", ck.key_pair.serialize_pem()),
        ("cert.pem", cert_pem.clone()),
    ] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, data).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
    (cert_pem, ck.cert.der().to_vec())
}

/// Regular files (distinct inodes) under `root`.
fn count_files(root: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                seen.insert(m.ino());
            }
        }
    }
    seen.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_image_is_pushed_pulled_and_serves_https_under_runc() {
    // Two test threads asking at once: one build (or none, when cached), one answer.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(flask::flask_image);
        let b = s.spawn(flask::flask_image);
        (a.join().unwrap(), b.join().unwrap())
    });
    let (image, other) = (
        a.unwrap_or_else(|e| panic!("building the python-flask image: {e}")),
        b.unwrap_or_else(|e| panic!("building the python-flask image: {e}")),
    );
    assert_eq!(image.manifest_digest, other.manifest_digest);
    assert!(image.cached || other.cached, "built once, not twice");
    let stats = &image.stats;
    eprintln!(
        "python-flask image {} ({}): {} regular files ({} bytes), {} symlinks, {} hard links; \
         layer {} bytes tar, {} bytes gzip; cold build {:.1}s (debootstrap {:.1}s); this lookup {:?}",
        image.location(),
        image.manifest_digest,
        stats.regular_files,
        stats.file_bytes,
        stats.symlinks,
        stats.hard_links,
        stats.layer_tar_bytes,
        stats.layer_gzip_bytes,
        stats.build_seconds,
        stats.debootstrap_seconds,
        image.elapsed.min(other.elapsed),
    );
    assert!(
        stats.regular_files > 3000,
        "thousands of trusted files: {stats:?}"
    );
    assert!(
        stats.trimmed_files > 1000 && stats.recompiled_pyc > 300,
        "{stats:?}"
    );

    // Push with the registry's credentials, then pull back through the registry.
    let registry = Registry::start_with_auth("flask", "bottle").unwrap();
    let pushed = flask::push_flask_image(&registry, "python-flask:latest")
        .await
        .unwrap();
    assert_eq!(
        pushed.reference,
        format!("{}/python-flask:latest", registry.host())
    );
    assert_eq!(pushed.digest, image.manifest_digest);

    let registries = Registries::new(&RegistryOptions {
        insecure: vec![registry.host()],
        ..Default::default()
    })
    .unwrap();
    let src = Source::open(
        &pushed.reference.parse::<Location>().unwrap(),
        &registries,
        Some(Credentials {
            username: "flask".into(),
            password: "bottle".into(),
        }),
    )
    .await
    .unwrap();
    let work = tempfile::Builder::new()
        .prefix("ccm-flask-test-")
        .tempdir()
        .unwrap();
    let bundle = work.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    let pulled = ccm_image::unpack(&src, &flask::platform(), &rootfs, &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest.to_string(), image.manifest_digest);
    let rc = pulled.config.config.clone().unwrap();
    assert_eq!(
        rc.entrypoint.as_deref(),
        Some(&["python3".to_owned(), "/app/app.py".to_owned()][..])
    );
    assert_eq!(rc.working_dir.as_deref(), Some("/app"));
    assert!(rc.env.iter().flatten().any(|e| e == "PYTHONUNBUFFERED=1"));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/app.py")).unwrap(),
        flask::APP_SOURCE
    );
    assert_eq!(count_files(&rootfs), stats.regular_files);
    assert_eq!(
        std::fs::metadata(rootfs.join("usr/bin/su")).unwrap().mode() & 0o7777,
        0o4755
    );
    // The unpacked tree packs back into the very same layer: nothing was lost on the way.
    let repacked = flask::write_layer(&rootfs, std::io::sink()).unwrap();
    assert_eq!(repacked.diff_id.to_string(), image.diff_id);

    // Run it unconverted with runc, a self-signed certificate mounted at /run.
    let certs = work.path().join("run");
    std::fs::create_dir(&certs).unwrap();
    let (ca_pem, cert_der) = install_cert(&certs);
    let port = free_port();
    let opts = RunOptions {
        volumes: vec![Volume {
            host: certs.clone(),
            container: "/run".into(),
            readonly: true,
        }],
        env: vec![
            format!("APP_PORT={port}"),
            "APP_HOST=127.0.0.1".into(),
            "APP_CERT_RELOAD_SECONDS=1".into(),
        ],
        ..Default::default()
    };
    let spec = runtime_spec(&pulled.config, &rootfs, &opts).unwrap();
    write_bundle(&bundle, &spec).unwrap();
    let state = work.path().join("runc-state");
    std::fs::create_dir(&state).unwrap();
    let log = work.path().join("container.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let runc = ccm_testkit::runc::runc().unwrap();
    let id = format!("ccm-flask-test-{}", std::process::id());
    let child = Command::new(&runc)
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut container = Container {
        runc,
        state,
        id,
        child: Some(child),
        log,
    };

    let tls = tls_config(&ca_pem);
    let started = Instant::now();
    let (status, body, leaf) = loop {
        match https_get(&tls, port, "/healthz") {
            Ok(r) => break r,
            Err(e) => {
                if let Some(Ok(Some(exit))) = container.child.as_mut().map(Child::try_wait) {
                    panic!("the container exited ({exit}): {}", container.log());
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "no HTTPS on 127.0.0.1:{port} after 60s ({e}): {}",
                    container.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    eprintln!("first HTTPS answer {:?} after start", started.elapsed());
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(leaf, cert_der, "served with the mounted certificate");

    let (status, page, _) = https_get(&tls, port, "/").unwrap();
    assert_eq!(status, 200);
    assert!(
        page.contains(
            "Hello from python-flask not in an enclave (no SIGSTRUCT at /opt/ccm/enclave.sig)"
        ),
        "{page}"
    );
    let (status, identity, _) = https_get(&tls, port, "/identity").unwrap();
    assert_eq!(status, 200);
    let identity: serde_json::Value = serde_json::from_str(&identity).unwrap();
    assert_eq!(identity["enclave"], false);
    assert_eq!(identity["certificate_sha256"], sha256_hex(&cert_der));

    // A renewed certificate (as the launcher installs it) is served to new connections.
    let (ca2_pem, cert2_der) = install_cert(&certs);
    let tls2 = tls_config(&ca2_pem);
    let started = Instant::now();
    loop {
        if let Ok((200, _, leaf)) = https_get(&tls2, port, "/healthz") {
            assert_eq!(leaf, cert2_der);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the renewed certificate is not served after 30s: {}",
            container.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGTERM stops it cleanly (python is PID 1 in the container).
    let out = container.runc(&["kill", &container.id, "TERM"]);
    assert!(out.status.success(), "{out:?}");
    let mut child = container.child.take().unwrap();
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(20) {
            container.child = Some(child);
            panic!("not stopped 20s after SIGTERM: {}", container.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = container.log();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(
        log.contains("python-flask: serving https://127.0.0.1:"),
        "{log}"
    );
    assert!(
        log.contains("python-flask: reloaded the certificate /run/cert.pem"),
        "{log}"
    );
    assert!(log.contains("python-flask: stopped"), "{log}");
}
