//! Any bytes a client can send to `ccm aesmd`: framing, the protobuf request decoder, the
//! attestation key id list parser and the quote-ex request handling of the simulated backend
//! must answer without panicking, and every answer must encode and decode again.
#![no_main]

use std::sync::OnceLock;

use ccm_aesm::proto::{Request, Response};
use ccm_aesm::server::SimBackend;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn backend() -> &'static SimBackend {
    static BACKEND: OnceLock<(tempfile::TempDir, SimBackend)> = OnceLock::new();
    &BACKEND
        .get_or_init(|| {
            let dir = tempfile::TempDir::new().expect("tempdir");
            ccm_attest::sim::init(
                dir.path(),
                &ccm_attest::sim::PlatformOptions::new(1_750_000_000),
            )
            .expect("simulated platform");
            let backend = SimBackend::open(dir.path()).expect("sim backend");
            (dir, backend)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let _ =
        ccm_aesm::frame::read_frame(&mut &data[..], ccm_aesm::frame::MAX_REQUEST_LEN, "request");
    let _ = ccm_aesm::keylist::parse(data);
    let _ = Response::decode(data);
    if let Ok(request) = Request::decode(data) {
        let response = match request.kind.as_ref() {
            Some(kind) => backend().service().handle(kind),
            None => Response::status_for(None, 30),
        };
        let bytes = response.encode_to_vec();
        let back = Response::decode(bytes.as_slice()).expect("our answers decode");
        assert_eq!(back, response);
    }
});
