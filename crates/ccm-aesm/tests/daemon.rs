//! The daemon over real Unix sockets: client → daemon (simulated platform) → quote → verifier,
//! concurrent clients, every refusal with its AESM code, uid filtering, socket lifecycle and
//! the forwarding backend in front of a second daemon.

// Test code: panicking on unexpected results is the point (clippy.toml only covers #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use ccm_aesm::proto::{
    GetQuoteExRequest, GetQuoteSizeExRequest, GetSupportedAttKeyIdsRequest, InitQuoteExRequest,
    Request, RequestKind, Response, ResponseKind, SelectAttKeyIdRequest,
};
use ccm_aesm::server::{SIM_CPU_KEY_FILE, ServerConfig};
use ccm_aesm::{AesmClient, AesmError, Error, keylist};
use ccm_sgx::{AttKeyId, QeReportInfo, Quote, TargetInfo};
use common::{Daemon, NOW, Platform, app_identity, config, cpu_from_socket_dir, report};
use prost::Message;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

fn client(d: &Daemon) -> AesmClient {
    AesmClient::new(&d.socket).with_timeout(Duration::from_secs(10))
}

fn aesm_code(result: Result<impl std::fmt::Debug, Error>) -> AesmError {
    match result {
        Err(Error::Aesm(code)) => code,
        other => panic!("expected an AESM error code, got {other:?}"),
    }
}

/// Sends a raw payload in a frame and returns the decoded answer.
fn raw_call(socket: &std::path::Path, payload: &[u8]) -> ResponseKind {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(payload);
    s.write_all(&frame).unwrap();
    read_answer(&mut s).expect("an answer")
}

fn read_answer(s: &mut UnixStream) -> Option<ResponseKind> {
    let mut header = [0u8; 4];
    if s.read_exact(&mut header).is_err() {
        return None;
    }
    let mut body = vec![0u8; u32::from_le_bytes(header) as usize];
    s.read_exact(&mut body).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "one response per connection, then close");
    Some(Response::decode(body.as_slice()).unwrap().kind.unwrap())
}

fn call(socket: &std::path::Path, kind: RequestKind) -> ResponseKind {
    raw_call(socket, &Request { kind: Some(kind) }.encode_to_vec())
}

/// The full flow for one enclave; checks everything the quote and QE report must carry.
fn quote_and_check(c: &AesmClient, platform: &Platform, tag: u8, n: u8) {
    let key = c.select_att_key_id(None).unwrap();
    let qe = c.init_quote_ex(&key).unwrap();
    let cpu = cpu_from_socket_dir(c.socket());
    let identity = app_identity(tag);
    let mut data = [0u8; 64];
    data[0] = tag;
    data[1] = n;
    data[63] = 0xee;
    let r = report(&cpu, &qe.target_info, &identity, data);
    let app_target = TargetInfo::for_enclave(&r.body);
    let info = QeReportInfo {
        nonce: [n ^ tag; 16],
        app_target_info: app_target,
        ..QeReportInfo::default()
    };
    let result = c.get_quote(&key, &r, Some(&info)).unwrap();

    let (verifier, collateral) = platform.verifier();
    let verified = verifier.verify(&result.quote, &collateral, NOW).unwrap();
    assert!(verified.simulated);
    assert_eq!(
        verified.report, r.body,
        "the quote carries the REPORT body exactly"
    );
    assert_eq!(verified.report.report_data.0, data);
    assert_eq!(verified.report.mr_enclave, identity.mr_enclave);
    assert_eq!(verified.report.isv_svn.get(), 3);

    let out = result.qe_report_info.unwrap();
    assert_eq!(out.nonce, info.nonce);
    assert_eq!(out.app_target_info, app_target);
    assert!(
        cpu.verify_report(&out.qe_report, &identity.mr_enclave),
        "the QE report is MACed for the application enclave"
    );
    assert_eq!(out.qe_report.body.mr_enclave, qe.target_info.mr_enclave);
    let mut h = Sha256::new();
    h.update(info.nonce);
    h.update(&result.quote);
    assert_eq!(out.qe_report.body.report_data.0[..32], h.finalize()[..]);
    assert_eq!(out.qe_report.body.report_data.0[32..], [0u8; 32]);
}

#[test]
fn quotes_verify_end_to_end_with_concurrent_clients() {
    let platform = Platform::new();
    let dir = TempDir::new().unwrap();
    let d = Daemon::sim(&platform, config(dir.path()));
    let key_file = std::fs::read(dir.path().join(SIM_CPU_KEY_FILE)).unwrap();
    assert_eq!(key_file.len(), 32);
    assert_eq!(
        key_file,
        std::fs::read(platform.path().join(SIM_CPU_KEY_FILE)).unwrap()
    );
    std::thread::scope(|s| {
        for tag in 1..=16u8 {
            let c = client(&d);
            let platform = &platform;
            s.spawn(move || {
                for n in 0..4 {
                    quote_and_check(&c, platform, tag, n);
                }
            });
        }
    });
}

#[test]
fn quote_ex_family_follows_aesmd() {
    let platform = Platform::new();
    let dir = TempDir::new().unwrap();
    let d = Daemon::sim(&platform, config(dir.path()));
    let c = client(&d);

    let ids = c.get_supported_att_key_ids().unwrap();
    assert_eq!(c.get_supported_att_key_id_num().unwrap(), 1);
    assert_eq!(ids.len(), 1);
    let key = ids[0];
    assert_eq!(
        key,
        AttKeyId::intel_ecdsa_p256(),
        "unmodified clients select it"
    );

    // Select: no list → the key; a list naming it (second) → that entry; no match → 38.
    assert_eq!(c.select_att_key_id(None).unwrap(), key);
    let other = AttKeyId::ecdsa_p256([9; 32], 1);
    let mut listed = key;
    listed.spid = [0x11; 16]; // outside the 158 identifying bytes: echoed back
    let chosen = c.select_att_key_id(Some(&[other, listed])).unwrap();
    assert_eq!(chosen.spid, [0x11; 16]);
    assert_eq!(
        aesm_code(c.select_att_key_id(Some(&[other]))),
        AesmError::UnsupportedAttKeyId
    );
    let mut bad_list = keylist::encode(&[key]);
    bad_list.pop();
    let r = call(
        &d.socket,
        RequestKind::SelectAttKeyId(SelectAttKeyIdRequest {
            att_key_id_list: Some(bad_list),
            timeout: None,
        }),
    );
    assert_eq!((r.field(), r.error_code()), (19, 3));

    // InitQuoteEx, first call: the size of the public key id (and the TARGETINFO).
    let first = call(
        &d.socket,
        RequestKind::InitQuoteEx(InitQuoteExRequest {
            att_key_id: Some(key.as_bytes().to_vec()),
            b_pub_key_id: Some(false),
            buf_size: None,
            timeout: Some(30_000),
        }),
    );
    let ResponseKind::InitQuoteEx(first) = first else {
        panic!()
    };
    assert_eq!(first.error_code, Some(0));
    assert_eq!(first.pub_key_id_size, Some(32));
    assert_eq!(first.pub_key_id, None);
    let qe = c.init_quote_ex(&key).unwrap();
    assert_eq!(
        first.target_info.as_deref(),
        Some(qe.target_info.as_bytes())
    );
    assert_eq!(qe.pub_key_id.len(), 32);
    // Second call with a wrong buffer size, a wrong key, a short key, no key.
    let init = |key: Option<Vec<u8>>, b: Option<bool>, size: Option<u64>| {
        call(
            &d.socket,
            RequestKind::InitQuoteEx(InitQuoteExRequest {
                att_key_id: key,
                b_pub_key_id: b,
                buf_size: size,
                timeout: None,
            }),
        )
        .error_code()
    };
    let k = || Some(key.as_bytes().to_vec());
    assert_eq!(init(k(), Some(true), Some(31)), 3);
    assert_eq!(init(k(), Some(true), None), 3);
    assert_eq!(init(k(), None, None), 3);
    assert_eq!(init(Some(other.as_bytes().to_vec()), Some(false), None), 38);
    assert_eq!(
        init(Some(key.as_bytes()[..255].to_vec()), Some(false), None),
        3
    );
    assert_eq!(init(None, Some(false), None), 3);
    assert_eq!(init(k(), Some(true), Some(32)), 0);

    // Sizes.
    let size = c.get_quote_size_ex(&key).unwrap();
    assert!(size > 1000);
    assert_eq!(
        aesm_code(c.get_quote_size_ex(&other)),
        AesmError::UnsupportedAttKeyId
    );
    let r = call(
        &d.socket,
        RequestKind::GetSupportedAttKeyIds(GetSupportedAttKeyIdsRequest {
            buf_size: Some(512),
            timeout: None,
        }),
    );
    assert_eq!((r.field(), r.error_code()), (22, 3));

    // The quote is padded to the buffer size, like aesmd; the client strips the padding.
    let cpu = cpu_from_socket_dir(&d.socket);
    let r = report(&cpu, &qe.target_info, &app_identity(1), [7; 64]);
    let padded = call(
        &d.socket,
        RequestKind::GetQuoteEx(GetQuoteExRequest {
            report: Some(r.as_bytes().to_vec()),
            att_key_id: k(),
            qe_report_info: None,
            buf_size: Some(size + 100),
            timeout: None,
        }),
    );
    let ResponseKind::GetQuoteEx(padded) = padded else {
        panic!()
    };
    let quote = padded.quote.unwrap();
    assert_eq!(quote.len(), size as usize + 100);
    assert!(quote[size as usize..].iter().all(|b| *b == 0));
    assert_eq!(padded.qe_report_info, None);
    let exact = c.get_quote_ex(&key, &r, None, size + 100).unwrap();
    assert_eq!(exact.quote.len(), size as usize);
    Quote::parse(&exact.quote).unwrap();
}

#[test]
fn bad_reports_and_sizes_get_their_codes_and_the_daemon_keeps_serving() {
    let platform = Platform::new();
    let dir = TempDir::new().unwrap();
    let d = Daemon::sim(&platform, config(dir.path()));
    let c = client(&d);
    let key = c.select_att_key_id(None).unwrap();
    let qe = c.init_quote_ex(&key).unwrap();
    let cpu = cpu_from_socket_dir(&d.socket);
    let good = report(&cpu, &qe.target_info, &app_identity(2), [1; 64]);
    let size = c.get_quote_size_ex(&key).unwrap();

    // Wrong MAC.
    let mut forged = good;
    forged.mac[0] ^= 1;
    assert_eq!(
        aesm_code(c.get_quote(&key, &forged, None)),
        AesmError::InvalidReport
    );
    // Tampered body (REPORTDATA changed after EREPORT).
    let mut tampered = good;
    tampered.body.report_data.0[0] ^= 1;
    assert_eq!(
        aesm_code(c.get_quote(&key, &tampered, None)),
        AesmError::InvalidReport
    );
    // Targeted at another enclave.
    let mut other_target = qe.target_info;
    other_target.mr_enclave.0[0] ^= 0xff;
    let wrong_target = report(&cpu, &other_target, &app_identity(2), [1; 64]);
    assert_eq!(
        aesm_code(c.get_quote(&key, &wrong_target, None)),
        AesmError::InvalidReport
    );
    // A different platform's CPU.
    let stranger = Platform::new();
    let foreign = ccm_attest::sim::ereport(
        stranger.path(),
        &qe.target_info,
        &app_identity(2),
        &ccm_sgx::ReportData([1; 64]),
    )
    .unwrap();
    assert_eq!(
        aesm_code(c.get_quote(&key, &foreign, None)),
        AesmError::InvalidReport
    );
    // Unsupported key.
    let other = AttKeyId::ecdsa_p256([3; 32], 1);
    assert_eq!(
        aesm_code(c.get_quote_ex(&other, &good, None, size)),
        AesmError::UnsupportedAttKeyId
    );
    // Buffers too small and too large.
    assert_eq!(
        aesm_code(c.get_quote_ex(&key, &good, None, size - 1)),
        AesmError::Parameter
    );
    assert_eq!(
        aesm_code(c.get_quote_ex(&key, &good, None, ccm_aesm::frame::MAX_QUOTE_BUFFER + 1)),
        AesmError::Parameter
    );
    // Wrong sizes of REPORT and QE report info, missing fields.
    let get = |report: Option<Vec<u8>>, info: Option<Vec<u8>>, buf: Option<u32>| {
        let r = call(
            &d.socket,
            RequestKind::GetQuoteEx(GetQuoteExRequest {
                report,
                att_key_id: Some(key.as_bytes().to_vec()),
                qe_report_info: info,
                buf_size: buf,
                timeout: None,
            }),
        );
        (r.field(), r.error_code())
    };
    let rb = || Some(good.as_bytes().to_vec());
    assert_eq!(
        get(Some(good.as_bytes()[..431].to_vec()), None, Some(size)),
        (17, 3)
    );
    let mut long = good.as_bytes().to_vec();
    long.push(0);
    assert_eq!(get(Some(long), None, Some(size)), (17, 3));
    assert_eq!(get(None, None, Some(size)), (17, 3));
    assert_eq!(get(rb(), Some(vec![0; 959]), Some(size)), (17, 3));
    assert_eq!(get(rb(), None, None), (17, 3));
    let missing_key = call(
        &d.socket,
        RequestKind::GetQuoteSizeEx(GetQuoteSizeExRequest::default()),
    );
    assert_eq!((missing_key.field(), missing_key.error_code()), (16, 3));

    // Still serving.
    quote_and_check(&c, &platform, 9, 9);
}

#[test]
fn bad_frames_get_answers_or_a_closed_connection() {
    let platform = Platform::new();
    let dir = TempDir::new().unwrap();
    let d = Daemon::sim(&platform, config(dir.path()));

    // Oversize length: refused from the header alone.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    let r = read_answer(&mut s).unwrap();
    assert_eq!((r.field(), r.error_code()), (20, 3));
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&(ccm_aesm::frame::MAX_REQUEST_LEN + 1).to_le_bytes())
        .unwrap();
    let r = read_answer(&mut s).unwrap();
    assert_eq!((r.field(), r.error_code()), (20, 3));

    // Garbage that is not protobuf (a field with wire type 7).
    let r = raw_call(&d.socket, &[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert_eq!((r.field(), r.error_code()), (20, 3));
    // A message truncated inside a submessage.
    let mut req = Request {
        kind: Some(RequestKind::GetQuoteSizeEx(GetQuoteSizeExRequest {
            att_key_id: Some(vec![0; 256]),
            timeout: None,
        })),
    }
    .encode_to_vec();
    req.truncate(100);
    let r = raw_call(&d.socket, &req);
    assert_eq!((r.field(), r.error_code()), (20, 3));
    // A valid message with no request we know, and an empty one.
    let r = raw_call(&d.socket, &[0xf8, 0x01, 0x01]); // field 31, varint 1
    assert_eq!((r.field(), r.error_code()), (20, 30));
    let r = raw_call(&d.socket, &[]);
    assert_eq!((r.field(), r.error_code()), (20, 30));

    // Truncated frame: 100 bytes announced, 10 sent, write side closed.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&100u32.to_le_bytes()).unwrap();
    s.write_all(&[0u8; 10]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let r = read_answer(&mut s).unwrap();
    assert_eq!((r.field(), r.error_code()), (20, 3));

    // Silent client and a half header: closed after the read timeout, no answer.
    for prefix in [&[][..], &[4u8, 0][..], &[4u8, 0, 0, 0, 0x08][..]] {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(prefix).unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap(), 0, "closed without an answer");
        assert!(started.elapsed() >= Duration::from_millis(400));
    }

    // Legacy requests: answered in their own field with service unavailable.
    for field in [1u32, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 18] {
        let tag = (field << 3) | 2;
        let mut payload = Vec::new();
        if tag < 0x80 {
            payload.push(tag as u8);
        } else {
            payload.extend_from_slice(&[(tag as u8) | 0x80, (tag >> 7) as u8]);
        }
        payload.push(0);
        let r = raw_call(&d.socket, &payload);
        assert_eq!(
            (r.field(), r.error_code()),
            (field, 30),
            "legacy field {field}"
        );
    }

    // Still serving.
    quote_and_check(&client(&d), &platform, 4, 4);
}

#[test]
fn callers_outside_allow_uid_are_refused() {
    let platform = Platform::new();
    let me = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    let me = me.unwrap();
    let dir = TempDir::new().unwrap();
    let d = Daemon::sim(
        &platform,
        ServerConfig {
            allow_uids: Some(vec![me.wrapping_add(1), me.wrapping_add(2)]),
            ..config(dir.path())
        },
    );
    let c = client(&d);
    assert_eq!(
        aesm_code(c.select_att_key_id(None)),
        AesmError::ServiceUnavailable
    );
    assert_eq!(
        aesm_code(c.get_quote_size_ex(&AttKeyId::intel_ecdsa_p256())),
        AesmError::ServiceUnavailable
    );
    drop(d);

    let dir = TempDir::new().unwrap();
    let d = Daemon::sim(
        &platform,
        ServerConfig {
            allow_uids: Some(vec![me.wrapping_add(1), me]),
            ..config(dir.path())
        },
    );
    quote_and_check(&client(&d), &platform, 5, 5);
}

#[test]
fn socket_lifecycle_stale_live_and_shutdown() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    let platform = Platform::new();
    let dir = TempDir::new().unwrap();
    let cfg = config(dir.path());

    // A stale socket file from a crash (bound, never served) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&cfg.socket).unwrap());
    assert!(
        std::fs::metadata(&cfg.socket)
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert!(UnixStream::connect(&cfg.socket).is_err());
    let d = Daemon::sim(&platform, cfg.clone());
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o777);
    client(&d).select_att_key_id(None).unwrap();

    // A live daemon is not taken over.
    let dir2 = platform.path().to_path_buf();
    let second = Daemon::start(cfg.clone(), move || {
        ccm_aesm::server::SimBackend::open(&dir2)
    });
    match second {
        Err(Error::Setup(m)) => assert!(m.contains("running daemon"), "{m}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    client(&d).select_att_key_id(None).unwrap();

    // Graceful shutdown removes the socket (and leaves the published secret).
    d.stop().unwrap();
    assert!(!cfg.socket.exists());
    assert!(dir.path().join(SIM_CPU_KEY_FILE).exists());

    // A path that is not a socket is never removed.
    std::fs::write(&cfg.socket, b"keep me").unwrap();
    let dir3 = platform.path().to_path_buf();
    match Daemon::start(cfg.clone(), move || {
        ccm_aesm::server::SimBackend::open(&dir3)
    }) {
        Err(Error::Setup(m)) => assert!(m.contains("not a socket"), "{m}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    assert_eq!(std::fs::read(&cfg.socket).unwrap(), b"keep me");

    // A platform directory that is not one is a setup error naming it.
    let empty = TempDir::new().unwrap();
    let e = ccm_aesm::server::SimBackend::open(empty.path()).unwrap_err();
    assert!(
        e.to_string().contains(&empty.path().display().to_string()),
        "{e}"
    );
}

#[test]
fn forward_mode_relays_to_a_second_daemon() {
    let platform = Platform::new();
    let real_dir = TempDir::new().unwrap();
    let real = Daemon::sim(&platform, config(real_dir.path()));
    let front_dir = TempDir::new().unwrap();
    let front = Daemon::forward(
        config(front_dir.path()),
        real.socket.clone(),
        Duration::from_secs(5),
    );
    // The enclave reads the secret next to the socket it uses; here it is the real daemon's.
    std::fs::copy(
        real_dir.path().join(SIM_CPU_KEY_FILE),
        front_dir.path().join(SIM_CPU_KEY_FILE),
    )
    .unwrap();
    let c = client(&front);
    std::thread::scope(|s| {
        for tag in 1..=4u8 {
            let c = c.clone();
            let platform = &platform;
            s.spawn(move || quote_and_check(&c, platform, tag, 1));
        }
    });
    // Upstream answers pass through, codes included.
    let key = c.select_att_key_id(None).unwrap();
    let qe = c.init_quote_ex(&key).unwrap();
    let mut forged = report(
        &cpu_from_socket_dir(&front.socket),
        &qe.target_info,
        &app_identity(1),
        [0; 64],
    );
    forged.mac[3] ^= 1;
    assert_eq!(
        aesm_code(c.get_quote(&key, &forged, None)),
        AesmError::InvalidReport
    );
    let r = raw_call(&front.socket, &[0x0a, 0x00]); // legacy InitQuote
    assert_eq!((r.field(), r.error_code()), (1, 30));
    // Garbage is refused by the forwarder itself.
    let r = raw_call(&front.socket, &[0xff, 0xff]);
    assert_eq!((r.field(), r.error_code()), (20, 3));

    // The real aesmd gone: service unavailable in the request's own field.
    real.stop().unwrap();
    assert_eq!(
        aesm_code(c.select_att_key_id(None)),
        AesmError::ServiceUnavailable
    );
    assert_eq!(
        aesm_code(c.get_quote_size_ex(&key)),
        AesmError::ServiceUnavailable
    );
}

/// An upstream that answers every connection with `reply` (or nothing), to check that the
/// forwarder validates what comes back.
fn misbehaving_upstream(dir: &std::path::Path, reply: Option<Vec<u8>>) -> std::path::PathBuf {
    let path = dir.join("bad-upstream.socket");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let reply = reply.clone();
            std::thread::spawn(move || {
                let mut header = [0u8; 4];
                if s.read_exact(&mut header).is_err() {
                    return;
                }
                let mut body = vec![0u8; u32::from_le_bytes(header) as usize];
                if s.read_exact(&mut body).is_err() {
                    return;
                }
                match reply {
                    Some(r) => {
                        let _ = s.write_all(&r);
                    }
                    None => std::thread::sleep(Duration::from_secs(3)),
                }
            });
        }
    });
    path
}

#[test]
fn forwarder_checks_upstream_responses() {
    let key = AttKeyId::intel_ecdsa_p256();
    let cases: [(Option<Vec<u8>>, AesmError); 4] = [
        // Not protobuf.
        (
            Some([3u32.to_le_bytes().to_vec(), vec![0xff, 0xff, 0xff]].concat()),
            AesmError::Unexpected,
        ),
        // A frame above the response cap.
        (Some(u32::MAX.to_le_bytes().to_vec()), AesmError::Unexpected),
        // Cut short.
        (
            Some([50u32.to_le_bytes().to_vec(), vec![0x82, 0x01]].concat()),
            AesmError::Unexpected,
        ),
        // No answer in time.
        (None, AesmError::ServiceUnavailable),
    ];
    for (reply, expected) in cases {
        let dir = TempDir::new().unwrap();
        let upstream = misbehaving_upstream(dir.path(), reply);
        let front_dir = TempDir::new().unwrap();
        let front = Daemon::forward(
            config(front_dir.path()),
            upstream,
            Duration::from_millis(300),
        );
        let c = client(&front);
        assert_eq!(aesm_code(c.get_quote_size_ex(&key)), expected);
    }
}
