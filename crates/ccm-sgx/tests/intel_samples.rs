//! Real Intel quotes (shipped with the dcap-qvl crate; see tests/data/README.md) parse, encode
//! back to the same bytes, carry a PCK extension we read like dcap-qvl does, and refuse damage.

use ccm_sgx::{
    AttestationKeyType, CertDataType, Error, INTEL_QE_VENDOR_ID, Quote, QuoteBody, SgxExtension,
    SgxType, TeeType,
};

const SGX_V3: &[u8] = include_bytes!("data/intel_sgx_quote_v3.bin");
const TDX_V4: &[u8] = include_bytes!("data/intel_tdx_quote_v4.bin");
const TDX_V5: &[u8] = include_bytes!("data/intel_tdx_quote_v5.bin");
const SGX_V3_COLLATERAL: &str = include_str!("data/intel_sgx_quote_v3_collateral.json");

/// Length of the TDX sample without its 70 bytes of zero padding.
const TDX_V4_UNPADDED: usize = 4936;

#[allow(clippy::unwrap_used)] // test helper
fn collateral_fmspc() -> [u8; 6] {
    let collateral: serde_json::Value = serde_json::from_str(SGX_V3_COLLATERAL).unwrap();
    let tcb_info: serde_json::Value =
        serde_json::from_str(collateral["tcb_info"].as_str().unwrap()).unwrap();
    let mut fmspc = [0u8; 6];
    hex::decode_to_slice(tcb_info["fmspc"].as_str().unwrap(), &mut fmspc).unwrap();
    fmspc
}

#[test]
fn sgx_v3_sample_parses_and_round_trips() {
    let q = Quote::parse(SGX_V3).unwrap();
    assert_eq!(q.version(), 3);
    assert_eq!(q.tee_type(), TeeType::SGX);
    assert_eq!(
        q.header.attestation_key_type(),
        AttestationKeyType::ECDSA_P256
    );
    assert_eq!(q.header.qe_vendor_id, INTEL_QE_VENDOR_ID);
    assert_eq!((q.header.qe_svn.get(), q.header.pce_svn.get()), (10, 15));
    assert_eq!(q.signed_len(), 432);
    assert_eq!(q.signed_bytes(), &SGX_V3[..432]);
    assert!(q.signature_data.qe_report_data_matches());
    assert_eq!(q.signature_data.qe_auth_data.len(), 32);
    assert_eq!(
        q.signature_data.certification_data.cert_type,
        CertDataType::PCK_CERT_CHAIN
    );
    assert_eq!(q.to_bytes().unwrap(), SGX_V3);

    // Independent parser: dcap-qvl sees the same body and signature data.
    let theirs = dcap_qvl::quote::Quote::parse(SGX_V3).unwrap();
    let their_body = theirs.report.as_sgx().unwrap();
    let ours = q.sgx_body().unwrap();
    assert_eq!(their_body.mr_enclave, ours.mr_enclave.0);
    assert_eq!(their_body.mr_signer, ours.mr_signer.0);
    assert_eq!(their_body.isv_prod_id, ours.isv_prod_id.get());
    assert_eq!(their_body.isv_svn, ours.isv_svn.get());
    assert_eq!(their_body.report_data, ours.report_data.0);
    assert_eq!(
        their_body.attributes,
        *zerocopy::IntoBytes::as_bytes(&ours.attributes)
    );
    assert_eq!(theirs.qe_report(), q.signature_data.qe_report.as_bytes());
}

#[test]
fn sgx_v3_sample_pck_extension_matches_collateral_and_dcap_qvl() {
    let q = Quote::parse(SGX_V3).unwrap();
    let chain = q.pck_cert_chain().unwrap();
    assert_eq!(chain.len(), 3, "leaf, intermediate, root");
    let ext = SgxExtension::from_certificate_der(&chain[0]).unwrap();
    assert_eq!(ext.fmspc, collateral_fmspc());

    let theirs = dcap_qvl::intel::parse_pck_extension(&chain[0]).unwrap();
    assert_eq!(theirs.ppid, ext.ppid);
    assert_eq!(theirs.cpu_svn, ext.tcb.cpu_svn.0);
    assert_eq!(theirs.pce_svn, ext.tcb.pce_svn);
    assert_eq!(theirs.pce_id, ext.pce_id);
    assert_eq!(theirs.fmspc, ext.fmspc);
    assert_eq!(theirs.sgx_type, u64::from(ext.sgx_type.0));
    assert_eq!(
        theirs.platform_instance_id.as_deref(),
        ext.platform_instance_id.as_ref().map(|p| &p[..])
    );
    let cfg = ext.configuration.unwrap_or_default();
    assert_eq!(theirs.dynamic_platform, cfg.dynamic_platform);
    assert_eq!(theirs.cached_keys, cfg.cached_keys);
    assert_eq!(theirs.smt_enabled, cfg.smt_enabled);
    // The TCB component SVNs, read by dcap-qvl's generic OID lookup.
    for (i, svn) in ext.tcb.comp_svn.iter().enumerate() {
        let oid = dcap_qvl::oids::TCB.push_arc(i as u32 + 1).unwrap();
        let value = theirs.get_value(&oid).unwrap().unwrap();
        let expected: &[u8] = if *svn >= 0x80 { &[0, *svn] } else { &[*svn] };
        assert_eq!(value, expected, "TCB component {}", i + 1);
    }
    // Our encoder reproduces Intel's extension byte for byte.
    assert_eq!(ext.to_der().unwrap(), theirs.raw_extension);
    assert_eq!(SgxExtension::from_der(&theirs.raw_extension).unwrap(), ext);
    // Sanity on the SGX type seen on this platform.
    assert!(ext.sgx_type == SgxType::SCALABLE || ext.sgx_type == SgxType::STANDARD);
}

#[test]
fn tdx_v4_sample_parses_and_round_trips() {
    let q = Quote::parse(TDX_V4).unwrap();
    assert_eq!(q.version(), 4);
    assert_eq!(q.tee_type(), TeeType::TDX);
    assert!(matches!(q.body, QuoteBody::Td10(_)));
    assert_eq!(q.signed_len(), 48 + 584);
    assert!(q.signature_data.qe_report_data_matches());
    assert_eq!(q.pck_cert_chain().unwrap().len(), 3);
    // Encoding drops the zero padding and otherwise reproduces the input.
    assert_eq!(q.to_bytes().unwrap(), &TDX_V4[..TDX_V4_UNPADDED]);
    assert!(TDX_V4[TDX_V4_UNPADDED..].iter().all(|b| *b == 0));

    let theirs = dcap_qvl::quote::Quote::parse(TDX_V4).unwrap();
    let td = theirs.report.as_td10().unwrap();
    let QuoteBody::Td10(ours) = &q.body else {
        unreachable!()
    };
    assert_eq!(td.mr_td, ours.mr_td);
    assert_eq!(td.rt_mr3, ours.rt_mr[3]);
    assert_eq!(td.report_data, ours.report_data.0);
    assert_eq!(theirs.qe_report(), q.signature_data.qe_report.as_bytes());
    let ext = SgxExtension::from_certificate_der(&q.pck_cert_chain().unwrap()[0]).unwrap();
    let their_ext = dcap_qvl::intel::parse_pck_extension(&q.pck_cert_chain().unwrap()[0]).unwrap();
    assert_eq!(ext.fmspc, their_ext.fmspc);
    assert_eq!(ext.to_der().unwrap(), their_ext.raw_extension);
}

#[test]
fn v5_is_refused_by_version() {
    assert!(matches!(
        Quote::parse(TDX_V5),
        Err(Error::UnsupportedQuoteVersion(5))
    ));
}

#[test]
fn every_truncation_is_an_error() {
    for len in 0..SGX_V3.len() {
        assert!(
            Quote::parse(&SGX_V3[..len]).is_err(),
            "v3 prefix {len} parsed"
        );
    }
    for len in 0..TDX_V4_UNPADDED {
        assert!(
            Quote::parse(&TDX_V4[..len]).is_err(),
            "v4 prefix {len} parsed"
        );
    }
    // Short inputs name the field that ran out.
    assert!(matches!(
        Quote::parse(&SGX_V3[..434]),
        Err(Error::Truncated {
            field: "quote.signature_data_len",
            needed: 4,
            available: 2
        })
    ));
    assert!(matches!(
        Quote::parse(&SGX_V3[..4000]),
        Err(Error::Truncated {
            field: "quote.signature_data",
            ..
        })
    ));
}

#[test]
fn padding_zero_is_tolerated_anything_else_is_not() {
    let mut padded = SGX_V3.to_vec();
    padded.extend_from_slice(&[0; 100]);
    assert_eq!(
        Quote::parse(&padded).unwrap(),
        Quote::parse(SGX_V3).unwrap()
    );
    padded[4650] = 1;
    assert!(matches!(
        Quote::parse(&padded),
        Err(Error::TrailingBytes { count: 50, .. })
    ));
}

#[test]
fn damaged_quotes_are_refused_with_specific_errors() {
    let mut q = SGX_V3.to_vec();
    q[0] = 2;
    assert!(matches!(
        Quote::parse(&q),
        Err(Error::UnsupportedQuoteVersion(2))
    ));

    let mut q = TDX_V4.to_vec();
    q[4] = 0x82; // TEE type
    assert!(matches!(
        Quote::parse(&q),
        Err(Error::UnsupportedTeeType {
            version: 4,
            tee_type: TeeType(0x82)
        })
    ));

    let mut q = SGX_V3.to_vec();
    q[432..436].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Quote::parse(&q),
        Err(Error::TooLong {
            field: "quote.signature_data",
            declared: 0xffff_ffff,
            ..
        })
    ));

    // signature_data_len one short: the certification data no longer fits.
    let mut q = SGX_V3.to_vec();
    q[432..436].copy_from_slice(&4163u32.to_le_bytes());
    assert!(matches!(
        Quote::parse(&q),
        Err(Error::Truncated {
            field: "quote.certification_data",
            ..
        })
    ));

    // v4 certification data must be the type-6 wrapper.
    let mut q = TDX_V4.to_vec();
    let outer_type = 48 + 584 + 4 + 128;
    assert_eq!(&q[outer_type..outer_type + 2], &[6, 0]);
    q[outer_type] = 5;
    assert!(matches!(
        Quote::parse(&q),
        Err(Error::CertificationDataType {
            found: CertDataType(5),
            ..
        })
    ));

    // An unknown certification data type in v3 is kept, and asking for a PCK chain names it.
    let mut q = SGX_V3.to_vec();
    let cert_type = 436 + 64 + 64 + 384 + 64 + 2 + 32;
    q[cert_type] = 0x42;
    let parsed = Quote::parse(&q).unwrap();
    assert_eq!(
        parsed.signature_data.certification_data.cert_type,
        CertDataType(0x42)
    );
    assert!(matches!(
        parsed.pck_cert_chain(),
        Err(Error::CertificationDataType {
            found: CertDataType(0x42),
            ..
        })
    ));
    assert_eq!(parsed.to_bytes().unwrap(), q);
}
