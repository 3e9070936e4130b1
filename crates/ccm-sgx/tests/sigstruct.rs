//! SIGSTRUCT signing and verification, cross-checked with the `sgx-isa` parser and the `sgxs`
//! crate's OpenSSL signer and verifier.

// Helpers outside #[test] functions unwrap too (clippy.toml allows it only inside tests).
#![allow(clippy::unwrap_used)]

use ccm_sgx::{
    AttributeFlags, Attributes, Error, Measurement, SigningKey, Sigstruct, SigstructError,
    mrsigner_of_modulus,
};
use openssl::bn::BigNum;
use openssl::hash::Hasher;
use openssl::rsa::Rsa;
use sha2::Digest;

const KEY_PKCS1: &str = include_str!("data/test-signing-key-e3.pkcs1.pem");
const KEY_PKCS8: &str = include_str!("data/test-signing-key-e3.pkcs8.pem");
const KEY_E65537: &str = include_str!("data/test-key-e65537.pem");
const KEY_2048: &str = include_str!("data/test-key-2048-e3.pem");

fn key() -> SigningKey {
    SigningKey::from_pem(KEY_PKCS1).unwrap()
}

/// A SIGSTRUCT with every identity field set to something non-trivial.
fn sample(key: &SigningKey) -> Sigstruct {
    let mut s = Sigstruct::unsigned(Measurement([0x5a; 32]));
    s.set_date(2026, 11, 22).unwrap();
    s.swdefined.set(0x1234_5678);
    s.misc_select.set(1);
    s.misc_mask.set(!0);
    s.attributes = Attributes::new(AttributeFlags::MODE64BIT, 3);
    s.attribute_mask = Attributes::new(
        AttributeFlags::from_bits_retain(!AttributeFlags::DEBUG.bits()),
        !3,
    );
    s.isv_ext_prod_id = [0x11; 16];
    s.isv_family_id = [0x22; 16];
    s.isv_prod_id.set(0x0102);
    s.isv_svn.set(0x0304);
    s.sign(key).unwrap();
    s
}

#[test]
fn signed_sigstruct_verifies_round_trips_and_names_its_signer() {
    let key = key();
    let s = sample(&key);
    s.verify().unwrap();
    let bytes = s.to_bytes();
    assert_eq!(bytes.len(), 1808);
    assert_eq!(&bytes[..16], &Sigstruct::HEADER);
    assert_eq!(&bytes[24..40], &Sigstruct::HEADER2);
    assert_eq!(&bytes[20..24], &0x2026_1122u32.to_le_bytes());
    assert_eq!(&bytes[512..516], &3u32.to_le_bytes());
    assert_eq!(&bytes[960..992], &[0x5a; 32]);
    assert_eq!(&bytes[1024..1028], &[0x02, 0x01, 0x04, 0x03]);
    assert_eq!(Sigstruct::parse_checked(&bytes).unwrap(), s);
    assert_eq!(s.date().unwrap(), (2026, 11, 22));

    // MRSIGNER = SHA-256 of the little-endian modulus, computed here from OpenSSL's view.
    let rsa = Rsa::private_key_from_pem(KEY_PKCS1.as_bytes()).unwrap();
    let mut n_le = rsa.n().to_vec();
    n_le.reverse();
    let expected = Measurement(sha2::Sha256::digest(&n_le).into());
    assert_eq!(s.mrsigner(), expected);
    assert_eq!(key.mrsigner(), expected);
    assert_eq!(mrsigner_of_modulus(&s.modulus), expected);

    for len in 0..bytes.len() {
        assert!(matches!(
            Sigstruct::parse_checked(&bytes[..len]),
            Err(Error::Length { structure: "SIGSTRUCT", expected: 1808, actual }) if actual == len
        ));
    }
}

#[test]
fn sgx_isa_reads_the_same_fields() {
    let s = sample(&key());
    let theirs = sgx_isa::Sigstruct::try_copy_from(&s.to_bytes()).unwrap();
    assert_eq!(theirs.header, s.header);
    assert_eq!(theirs.vendor, s.vendor.get());
    assert_eq!(theirs.date, s.date.get());
    assert_eq!(theirs.header2, s.header2);
    assert_eq!(theirs.swdefined, s.swdefined.get());
    assert_eq!(theirs.modulus, s.modulus);
    assert_eq!(theirs.exponent, 3);
    assert_eq!(theirs.signature, s.signature);
    assert_eq!(theirs.miscselect.bits(), s.misc_select.get());
    assert_eq!(theirs.miscmask, s.misc_mask.get());
    assert_eq!(theirs.isvfamilyid, s.isv_family_id);
    assert_eq!(theirs.attributes.flags.bits(), s.attributes.flags().bits());
    assert_eq!(theirs.attributes.xfrm, s.attributes.xfrm());
    assert_eq!(
        theirs.attributemask,
        [s.attribute_mask.flags.get(), s.attribute_mask.xfrm.get()]
    );
    assert_eq!(theirs.enclavehash, s.enclave_hash.0);
    assert_eq!(theirs.isvextprodid, s.isv_ext_prod_id);
    assert_eq!(theirs.isvprodid, 0x0102);
    assert_eq!(theirs.isvsvn, 0x0304);
    assert_eq!(theirs.q1, s.q1);
    assert_eq!(theirs.q2, s.q2);
    let (a, b) = theirs.signature_data();
    assert_eq!([a, b].concat(), s.signed_data());
}

#[test]
fn sgxs_verifier_accepts_our_signature() {
    let s = sample(&key());
    let theirs = sgx_isa::Sigstruct::try_copy_from(&s.to_bytes()).unwrap();
    let mut n_be = s.modulus;
    n_be.reverse();
    let public = Rsa::from_public_components(
        BigNum::from_slice(&n_be).unwrap(),
        BigNum::from_u32(3).unwrap(),
    )
    .unwrap();
    sgxs::sigstruct::verify::<_, Hasher>(&theirs, &*public).unwrap();

    // And it refuses a tampered copy, so the check above is not vacuous.
    let mut tampered = theirs;
    tampered.isvsvn ^= 1;
    assert!(sgxs::sigstruct::verify::<_, Hasher>(&tampered, &*public).is_err());
}

#[test]
fn sgxs_signer_produces_the_same_bytes_and_we_verify_them() {
    let ours = sample(&key());
    let mut signer = sgxs::sigstruct::Signer::new(sgxs::sigstruct::EnclaveHash::new([0x5a; 32]));
    signer
        .date(2026, 11, 22)
        .swdefined(0x1234_5678)
        .miscselect(sgxs::sigstruct::Miscselect::EXINFO, !0)
        .attributes_flags(
            sgxs::sigstruct::AttributesFlags::MODE64BIT,
            !AttributeFlags::DEBUG.bits(),
        )
        .attributes_xfrm(3, !3)
        .isvextprodid([0x11; 16])
        .isvprodid(0x0102)
        .isvsvn(0x0304);
    let rsa = Rsa::private_key_from_pem(KEY_PKCS1.as_bytes()).unwrap();
    let mut theirs = signer.sign::<_, Hasher>(&*rsa).unwrap();
    // sgxs's signer has no ISVFAMILYID setter; set it and re-sign with the same parameters.
    theirs.isvfamilyid = [0x22; 16];
    let mut signer2 = sgxs::sigstruct::Signer::new(sgxs::sigstruct::EnclaveHash::new([0x5a; 32]));
    signer2
        .date(2026, 11, 22)
        .swdefined(0x1234_5678)
        .miscselect(sgxs::sigstruct::Miscselect::EXINFO, !0)
        .attributes_flags(
            sgxs::sigstruct::AttributesFlags::MODE64BIT,
            !AttributeFlags::DEBUG.bits(),
        )
        .attributes_xfrm(3, !3)
        .isvextprodid([0x11; 16])
        .isvprodid(0x0102)
        .isvsvn(0x0304);
    let unfamilied = signer2.sign::<_, Hasher>(&*rsa).unwrap();

    // Without ISVFAMILYID (which sgxs cannot set) the two signers agree byte for byte:
    // PKCS#1 v1.5 is deterministic, so equal fields and key give equal signature, Q1 and Q2.
    let mut ours_unfamilied = ours;
    ours_unfamilied.isv_family_id = [0; 16];
    ours_unfamilied.sign(&key()).unwrap();
    assert_eq!(unfamilied.as_ref(), &ours_unfamilied.to_bytes()[..]);

    // An sgxs-signed SIGSTRUCT verifies with our verifier.
    let parsed = Sigstruct::parse_checked(unfamilied.as_ref()).unwrap();
    parsed.verify().unwrap();
    // The copy whose family id was edited after signing does not.
    let edited = Sigstruct::parse_checked(theirs.as_ref()).unwrap();
    assert!(matches!(
        edited.verify(),
        Err(Error::Sigstruct(SigstructError::BadSignature))
    ));
}

#[test]
fn tampering_is_refused_with_specific_errors() {
    let s = sample(&key());
    let bytes = s.to_bytes();
    let verify = |b: &[u8]| Sigstruct::parse(b).unwrap().verify();

    // Every signed range matters.
    for offset in [
        16, 20, 40, 100, 900, 904, 912, 928, 944, 960, 1008, 1024, 1026,
    ] {
        let mut b = bytes;
        b[offset] ^= 0x01;
        assert!(
            matches!(
                verify(&b),
                Err(Error::Sigstruct(SigstructError::BadSignature))
            ),
            "offset {offset}"
        );
    }
    // Signature bytes themselves.
    let mut b = bytes;
    b[516] ^= 1;
    assert!(matches!(
        verify(&b),
        Err(Error::Sigstruct(SigstructError::BadSignature))
    ));
    // Q1 / Q2.
    let mut b = bytes;
    b[1040] ^= 1;
    assert!(matches!(
        verify(&b),
        Err(Error::Sigstruct(SigstructError::BadQ("Q1")))
    ));
    let mut b = bytes;
    b[1807] ^= 0x80;
    assert!(matches!(
        verify(&b),
        Err(Error::Sigstruct(SigstructError::BadQ("Q2")))
    ));
    // Exponent.
    let mut b = bytes;
    b[512] = 5;
    assert!(matches!(
        verify(&b),
        Err(Error::Sigstruct(SigstructError::Exponent(5)))
    ));
    // A modulus that is not 3072 bits.
    let mut b = bytes;
    b[128 + 383] = 0;
    b[128 + 382] = 0;
    assert!(matches!(
        verify(&b),
        Err(Error::Sigstruct(SigstructError::ModulusSize(_)))
    ));
    // Unsigned.
    assert!(Sigstruct::unsigned(Measurement([1; 32])).verify().is_err());

    // Header constants are checked by verify and by parse_checked.
    let mut b = bytes;
    b[0] = 7;
    assert!(matches!(
        verify(&b),
        Err(Error::BadConstant {
            field: "sigstruct.header",
            ..
        })
    ));
    let mut b = bytes;
    b[4] = 0xe2;
    assert!(matches!(
        Sigstruct::parse_checked(&b),
        Err(Error::BadConstant {
            field: "sigstruct.header",
            ..
        })
    ));
    let mut b = bytes;
    b[39] = 1;
    assert!(matches!(
        Sigstruct::parse_checked(&b),
        Err(Error::BadConstant {
            field: "sigstruct.header2",
            ..
        })
    ));
}

#[test]
fn signing_keys_load_check_and_save() {
    let pkcs1 = SigningKey::from_pem(KEY_PKCS1).unwrap();
    let pkcs8 = SigningKey::from_pem(KEY_PKCS8).unwrap();
    assert_eq!(pkcs1.mrsigner(), pkcs8.mrsigner());
    let again = SigningKey::from_pem(&pkcs1.to_pkcs8_pem().unwrap()).unwrap();
    assert_eq!(again.mrsigner(), pkcs1.mrsigner());
    let again = SigningKey::from_pem(&pkcs1.to_pkcs1_pem().unwrap()).unwrap();
    assert_eq!(again.modulus_le(), pkcs1.modulus_le());

    assert!(matches!(
        SigningKey::from_pem(KEY_E65537),
        Err(Error::Sigstruct(SigstructError::Exponent(65537)))
    ));
    assert!(matches!(
        SigningKey::from_pem(KEY_2048),
        Err(Error::Sigstruct(SigstructError::ModulusSize(2048)))
    ));
    assert!(matches!(
        SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        Err(Error::Sigstruct(SigstructError::Key(_)))
    ));
}

#[test]
fn generated_keys_sign_verifiable_sigstructs() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng).unwrap();
    assert_eq!(
        key.modulus_le()[383] & 0x80,
        0x80,
        "a full 3072-bit modulus"
    );
    let s = sample(&key);
    s.verify().unwrap();
    assert_eq!(s.mrsigner(), key.mrsigner());
}

#[test]
fn dates_are_bcd() {
    let mut s = Sigstruct::unsigned(Measurement::default());
    s.set_date(1999, 9, 9).unwrap();
    assert_eq!(s.date.get(), 0x1999_0909);
    assert_eq!(s.date().unwrap(), (1999, 9, 9));
    assert!(matches!(
        s.set_date(2024, 13, 1),
        Err(Error::Sigstruct(SigstructError::BadDate(0x2024_1301)))
    ));
    assert!(s.set_date(2024, 1, 0).is_err());
    assert!(s.set_date(10000, 1, 1).is_err());
    assert_eq!(
        s.date().unwrap(),
        (1999, 9, 9),
        "a refused date changes nothing"
    );
    s.date.set(0x2024_0a01);
    assert!(matches!(
        s.date(),
        Err(Error::Sigstruct(SigstructError::BadDate(0x2024_0a01)))
    ));
}
