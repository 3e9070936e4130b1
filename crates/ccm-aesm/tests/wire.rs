//! The wire format checked independently of this crate's encoder: requests are built byte by byte
//! from the field numbers of Intel's `messages.proto`, and every answer is decoded by another
//! protobuf implementation (rust-protobuf, reflecting over a descriptor of Intel's proto2 file
//! built here) which also enforces the `required errorCode`.

// Test code: panicking on unexpected results is the point (clippy.toml only covers #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ccm_sgx::{AttKeyId, QeReportInfo, TargetInfo};
use common::{Daemon, NOW, Platform, app_identity, config, cpu_from_socket_dir, report};
use protobuf::MessageDyn;
use protobuf::descriptor::field_descriptor_proto::{Label, Type};
use protobuf::descriptor::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto};
use protobuf::reflect::{FileDescriptor, MessageDescriptor, ReflectValueRef};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Hand encoding (protobuf wire format: varint keys `field << 3 | wire type`).

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn key(field: u32, wire: u8, out: &mut Vec<u8>) {
    varint(u64::from(field) << 3 | u64::from(wire), out);
}

fn bytes_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

fn varint_field(field: u32, v: u64, out: &mut Vec<u8>) {
    key(field, 0, out);
    varint(v, out);
}

fn request(kind_field: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    bytes_field(kind_field, inner, &mut out);
    out
}

fn exchange(socket: &Path, payload: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut frame = Vec::new();
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    s.write_all(&frame).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let len = u32::from_le_bytes(answer[..4].try_into().unwrap()) as usize;
    assert_eq!(
        answer.len(),
        4 + len,
        "exactly one little-endian length-prefixed frame"
    );
    answer.split_off(4)
}

// ---------------------------------------------------------------------------------------------
// Intel's messages.proto as a descriptor, for rust-protobuf's dynamic messages.

fn field(
    name: &str,
    number: i32,
    label: Label,
    ty: Type,
    type_name: Option<&str>,
) -> FieldDescriptorProto {
    let mut f = FieldDescriptorProto::new();
    f.set_name(name.into());
    f.set_number(number);
    f.set_label(label);
    f.set_type(ty);
    if let Some(t) = type_name {
        f.set_type_name(t.into());
    }
    f
}

fn message(name: &str, fields: Vec<FieldDescriptorProto>) -> DescriptorProto {
    let mut m = DescriptorProto::new();
    m.set_name(name.into());
    m.field = fields;
    m
}

fn error_code() -> FieldDescriptorProto {
    let mut f = field(
        "errorCode",
        1,
        Label::LABEL_REQUIRED,
        Type::TYPE_UINT32,
        None,
    );
    f.set_default_value("1".into());
    f
}

fn aesm_proto() -> FileDescriptor {
    use Label::*;
    use Type::*;
    let legacy = [
        (1, "InitQuote"),
        (2, "GetQuote"),
        (3, "GetLaunchToken"),
        (4, "ReportAttestationError"),
        (5, "CreateSession"),
        (6, "InvokeService"),
        (7, "ExchangeReport"),
        (8, "CloseSession"),
        (9, "GetPsCap"),
        (10, "GetWhiteListSize"),
        (11, "GetWhiteList"),
        (12, "SGXGetExtendedEpidGroupId"),
        (13, "SGXSwitchExtendedEpidGroup"),
        (14, "SGXRegister"),
        (18, "CheckUpdateStatus"),
    ];
    let mut nested = vec![
        message(
            "InitQuoteExResponse",
            vec![
                error_code(),
                field("target_info", 2, LABEL_OPTIONAL, TYPE_BYTES, None),
                field("pub_key_id_size", 3, LABEL_OPTIONAL, TYPE_UINT64, None),
                field("pub_key_id", 4, LABEL_OPTIONAL, TYPE_BYTES, None),
            ],
        ),
        message(
            "GetQuoteSizeExResponse",
            vec![
                error_code(),
                field("quote_size", 2, LABEL_OPTIONAL, TYPE_UINT32, None),
            ],
        ),
        message(
            "GetQuoteExResponse",
            vec![
                error_code(),
                field("quote", 2, LABEL_OPTIONAL, TYPE_BYTES, None),
                field("qe_report_info", 3, LABEL_OPTIONAL, TYPE_BYTES, None),
            ],
        ),
        message(
            "SelectAttKeyIDResponse",
            vec![
                error_code(),
                field("selected_att_key_id", 2, LABEL_OPTIONAL, TYPE_BYTES, None),
            ],
        ),
        message("UnsupportedRequestResponse", vec![error_code()]),
        message(
            "GetSupportedAttKeyIDNumResponse",
            vec![
                error_code(),
                field("att_key_id_num", 2, LABEL_OPTIONAL, TYPE_UINT32, None),
            ],
        ),
        message(
            "GetSupportedAttKeyIDsResponse",
            vec![
                error_code(),
                field("att_key_ids", 2, LABEL_OPTIONAL, TYPE_BYTES, None),
            ],
        ),
    ];
    let mut fields = vec![
        field(
            "initQuoteExRes",
            15,
            LABEL_OPTIONAL,
            TYPE_MESSAGE,
            Some(".aesm.message.Response.InitQuoteExResponse"),
        ),
        field(
            "getQuoteSizeExRes",
            16,
            LABEL_OPTIONAL,
            TYPE_MESSAGE,
            Some(".aesm.message.Response.GetQuoteSizeExResponse"),
        ),
        field(
            "getQuoteExRes",
            17,
            LABEL_OPTIONAL,
            TYPE_MESSAGE,
            Some(".aesm.message.Response.GetQuoteExResponse"),
        ),
        field(
            "selectAttKeyIDRes",
            19,
            LABEL_OPTIONAL,
            TYPE_MESSAGE,
            Some(".aesm.message.Response.SelectAttKeyIDResponse"),
        ),
        field(
            "unsupportedRequestResponse",
            20,
            LABEL_OPTIONAL,
            TYPE_MESSAGE,
            Some(".aesm.message.Response.UnsupportedRequestResponse"),
        ),
        field(
            "getSupportedAttKeyIDNumRes",
            21,
            LABEL_OPTIONAL,
            TYPE_MESSAGE,
            Some(".aesm.message.Response.GetSupportedAttKeyIDNumResponse"),
        ),
        field(
            "getSupportedAttKeyIDsRes",
            22,
            LABEL_OPTIONAL,
            TYPE_MESSAGE,
            Some(".aesm.message.Response.GetSupportedAttKeyIDsResponse"),
        ),
    ];
    for (number, name) in legacy {
        let type_name = format!("{name}Response");
        nested.push(message(&type_name, vec![error_code()]));
        fields.push(field(
            &format!("legacy{number}"),
            number,
            LABEL_OPTIONAL,
            TYPE_MESSAGE,
            Some(&format!(".aesm.message.Response.{type_name}")),
        ));
    }
    let mut response = message("Response", fields);
    response.nested_type = nested;
    let mut file = FileDescriptorProto::new();
    file.set_name("messages.proto".into());
    file.set_package("aesm.message".into());
    file.set_syntax("proto2".into());
    file.message_type = vec![response];
    FileDescriptor::new_dynamic(file, &[]).unwrap()
}

/// Decodes an answer with rust-protobuf; checks that exactly one response field is set, that all
/// required fields are present, and returns (field number, inner message).
fn decode(descriptor: &MessageDescriptor, bytes: &[u8]) -> (i32, Box<dyn MessageDyn>) {
    let msg = descriptor
        .parse_from_bytes(bytes)
        .expect("rust-protobuf decodes the answer");
    assert!(msg.is_initialized_dyn(), "required fields present");
    let set: Vec<_> = descriptor.fields().filter(|f| f.has_field(&*msg)).collect();
    assert_eq!(set.len(), 1, "exactly one answer field");
    let f = &set[0];
    let inner = f.get_message(&*msg).clone_box();
    assert!(inner.is_initialized_dyn(), "errorCode (required) present");
    (f.proto().number(), inner)
}

fn get<'a>(m: &'a dyn MessageDyn, name: &str) -> Option<ReflectValueRef<'a>> {
    m.descriptor_dyn()
        .field_by_name(name)
        .unwrap()
        .get_singular(m)
}

fn code(m: &dyn MessageDyn) -> u32 {
    get(m, "errorCode").unwrap().to_u32().unwrap()
}

#[test]
fn hand_built_requests_and_independently_decoded_answers() {
    let platform = Platform::new();
    let dir = TempDir::new().unwrap();
    let d = Daemon::sim(&platform, config(dir.path()));
    let file = aesm_proto();
    let response = file.message_by_full_name(".aesm.message.Response").unwrap();

    // GetSupportedAttKeyIDNum: field 21, empty. The whole answer, byte for byte:
    // field 21 (0xaa 0x01), length 4, errorCode 0 (0x08 0x00), att_key_id_num 1 (0x10 0x01).
    let answer = exchange(&d.socket, &[0xaa, 0x01, 0x00]);
    assert_eq!(answer, [0xaa, 0x01, 0x04, 0x08, 0x00, 0x10, 0x01]);
    let (n, m) = decode(&response, &answer);
    assert_eq!((n, code(&*m)), (21, 0));
    // The reference decoder does notice a missing required errorCode.
    let without_code = response.parse_from_bytes(&[0xaa, 0x01, 0x02, 0x10, 0x01]);
    assert!(without_code.map_or(true, |m| !m.is_initialized_dyn()));

    // GetSupportedAttKeyIDs (field 22) with buf_size (field 1) = 256.
    let mut inner = Vec::new();
    varint_field(1, 256, &mut inner);
    let (n, m) = decode(&response, &exchange(&d.socket, &request(22, &inner)));
    assert_eq!((n, code(&*m)), (22, 0));
    let ids = get(&*m, "att_key_ids")
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec();
    assert_eq!(ids.len(), 256);
    let key = AttKeyId::parse(&ids).unwrap();
    assert_eq!(key, AttKeyId::intel_ecdsa_p256());

    // SelectAttKeyID (field 19) with a list: header id 0, version 0, count 1, then the id.
    let mut list = vec![0, 0, 0, 0, 1, 0, 0, 0];
    list.extend_from_slice(&ids);
    let mut inner = Vec::new();
    bytes_field(1, &list, &mut inner);
    varint_field(2, 1000, &mut inner); // timeout is field 2 in this message
    let (n, m) = decode(&response, &exchange(&d.socket, &request(19, &inner)));
    assert_eq!((n, code(&*m)), (19, 0));
    assert_eq!(
        get(&*m, "selected_att_key_id").unwrap().to_bytes().unwrap(),
        &ids[..]
    );

    // InitQuoteEx (field 15): att_key_id (1), b_pub_key_id (3) false, then true with buf_size (4).
    let mut inner = Vec::new();
    bytes_field(1, &ids, &mut inner);
    varint_field(3, 0, &mut inner);
    varint_field(9, 30_000, &mut inner);
    let (n, m) = decode(&response, &exchange(&d.socket, &request(15, &inner)));
    assert_eq!((n, code(&*m)), (15, 0));
    assert_eq!(get(&*m, "pub_key_id_size").unwrap().to_u64(), Some(32));
    assert!(get(&*m, "pub_key_id").is_none());
    let mut inner = Vec::new();
    bytes_field(1, &ids, &mut inner);
    varint_field(3, 1, &mut inner);
    varint_field(4, 32, &mut inner);
    let (n, m) = decode(&response, &exchange(&d.socket, &request(15, &inner)));
    assert_eq!((n, code(&*m)), (15, 0));
    let target = get(&*m, "target_info")
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec();
    let target = TargetInfo::parse(&target).unwrap();
    assert_eq!(
        get(&*m, "pub_key_id").unwrap().to_bytes().unwrap().len(),
        32
    );

    // GetQuoteSizeEx (field 16).
    let mut inner = Vec::new();
    bytes_field(1, &ids, &mut inner);
    let (n, m) = decode(&response, &exchange(&d.socket, &request(16, &inner)));
    assert_eq!((n, code(&*m)), (16, 0));
    let size = get(&*m, "quote_size").unwrap().to_u32().unwrap();

    // GetQuoteEx (field 17): report (1), att_key_id (2), qe_report_info (3), buf_size (4).
    let cpu = cpu_from_socket_dir(&d.socket);
    let identity = app_identity(0x42);
    let r = report(&cpu, &target, &identity, [0x42; 64]);
    let info = QeReportInfo {
        nonce: [0x99; 16],
        app_target_info: TargetInfo::for_enclave(&r.body),
        ..QeReportInfo::default()
    };
    let mut inner = Vec::new();
    bytes_field(1, r.as_bytes(), &mut inner);
    bytes_field(2, &ids, &mut inner);
    bytes_field(3, info.as_bytes(), &mut inner);
    varint_field(4, u64::from(size), &mut inner);
    let (n, m) = decode(&response, &exchange(&d.socket, &request(17, &inner)));
    assert_eq!((n, code(&*m)), (17, 0));
    let quote = get(&*m, "quote").unwrap().to_bytes().unwrap().to_vec();
    assert_eq!(quote.len(), size as usize);
    let (verifier, collateral) = platform.verifier();
    let verified = verifier.verify(&quote, &collateral, NOW).unwrap();
    assert_eq!(verified.report, r.body);
    let out = QeReportInfo::parse(get(&*m, "qe_report_info").unwrap().to_bytes().unwrap()).unwrap();
    assert!(cpu.verify_report(&out.qe_report, &identity.mr_enclave));

    // A refusal still carries the required errorCode: a wrong REPORT size.
    let mut inner = Vec::new();
    bytes_field(1, &r.as_bytes()[..400], &mut inner);
    bytes_field(2, &ids, &mut inner);
    varint_field(4, u64::from(size), &mut inner);
    let (n, m) = decode(&response, &exchange(&d.socket, &request(17, &inner)));
    assert_eq!((n, code(&*m)), (17, 3));
    assert!(get(&*m, "quote").is_none());

    // Legacy requests: answered in their own field; unknown ones in field 20.
    for legacy in [1u32, 2, 3, 4, 9, 10, 11, 12, 13, 14, 18] {
        let (n, m) = decode(&response, &exchange(&d.socket, &request(legacy, &[])));
        assert_eq!((n as u32, code(&*m)), (legacy, 30));
    }
    let (n, m) = decode(&response, &exchange(&d.socket, &request(23, &[])));
    assert_eq!((n, code(&*m)), (20, 30));
    let (n, m) = decode(&response, &exchange(&d.socket, &[0xff, 0xff, 0x03]));
    assert_eq!((n, code(&*m)), (20, 3));
}
