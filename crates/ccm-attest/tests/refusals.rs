//! Everything that must be refused, each with its specific reason: tampered quotes, chains and
//! collateral, expired or premature collateral, revoked certificates, untrusted roots, wrong
//! FMSPC.

// Test helpers outside #[test] functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ccm_attest::sim::{self, PlatformOptions};
use ccm_attest::{
    CertRole, Collateral, CollateralItem, CrlKind, TrustRoots, Verifier, VerifyError,
};
use ccm_sgx::Quote;
use common::*;

/// A check of the specific error a case must produce.
type Expect = fn(&VerifyError) -> bool;

/// Re-encodes `quote` after `edit` changed its parsed form.
fn edited(quote: &[u8], edit: impl FnOnce(&mut Quote)) -> Vec<u8> {
    let mut q = Quote::parse(quote).unwrap();
    edit(&mut q);
    q.to_bytes().unwrap()
}

fn collateral_with(
    c: &Collateral,
    edit: impl FnOnce(&mut ccm_attest::CollateralParts),
) -> Collateral {
    let mut parts = c.clone().into_parts();
    edit(&mut parts);
    Collateral::new(parts).unwrap()
}

#[test]
fn every_signed_byte_of_header_and_body_is_covered() {
    let p = default_platform();
    let verifier = p.verifier();
    let collateral = p.collateral();
    let quote = p.quote();
    verifier.verify(&quote, &collateral, NOW).unwrap();
    for i in 0..432 {
        let mut bad = quote.clone();
        bad[i] ^= 0x01;
        let err = verifier.verify(&bad, &collateral, NOW).unwrap_err();
        match i {
            // Version, key type, vendor id: refused before any signature is checked.
            0..=1 => assert!(
                matches!(
                    err,
                    VerifyError::Quote(_) | VerifyError::UnsupportedQuoteVersion(_)
                ),
                "byte {i}: {err}"
            ),
            2..=3 => assert!(
                matches!(err, VerifyError::UnsupportedAttestationKeyType(_)),
                "byte {i}: {err}"
            ),
            // Reserved TEE type bytes of a v3 header are signed like everything else.
            12..=27 => assert!(
                matches!(err, VerifyError::UnknownQeVendor(_)),
                "byte {i}: {err}"
            ),
            _ => assert!(
                matches!(err, VerifyError::QuoteSignature),
                "byte {i}: {err}"
            ),
        }
    }
}

#[test]
fn tampered_qe_report_and_its_binding_are_refused() {
    let p = default_platform();
    let verifier = p.verifier();
    let collateral = p.collateral();
    let quote = p.quote();
    for i in 0..384 {
        let bad = edited(&quote, |q| {
            let mut bytes = q.signature_data.qe_report.to_bytes();
            bytes[i] ^= 0x80;
            q.signature_data.qe_report = ccm_sgx::ReportBody::parse(&bytes).unwrap();
        });
        let err = verifier.verify(&bad, &collateral, NOW).unwrap_err();
        assert!(
            matches!(err, VerifyError::QeReportSignature),
            "QE report byte {i}: {err}"
        );
    }
    let bad = edited(&quote, |q| q.signature_data.qe_report_signature[5] ^= 1);
    assert!(matches!(
        verifier.verify(&bad, &collateral, NOW).unwrap_err(),
        VerifyError::QeReportSignature
    ));
    let bad = edited(&quote, |q| q.signature_data.attestation_key[63] ^= 1);
    assert!(matches!(
        verifier.verify(&bad, &collateral, NOW).unwrap_err(),
        VerifyError::QeReportDataMismatch
    ));
    let bad = edited(&quote, |q| q.signature_data.qe_auth_data[0] ^= 1);
    assert!(matches!(
        verifier.verify(&bad, &collateral, NOW).unwrap_err(),
        VerifyError::QeReportDataMismatch
    ));
    let bad = edited(&quote, |q| q.signature_data.qe_auth_data.push(0));
    assert!(matches!(
        verifier.verify(&bad, &collateral, NOW).unwrap_err(),
        VerifyError::QeReportDataMismatch
    ));
    let bad = edited(&quote, |q| q.signature_data.signature[0] ^= 1);
    assert!(matches!(
        verifier.verify(&bad, &collateral, NOW).unwrap_err(),
        VerifyError::QuoteSignature
    ));
}

#[test]
fn the_qe_must_match_the_qe_identity() {
    // A QE report signed by the PCK key but stating another MRSIGNER is refused. Build one by
    // editing the platform's QE report file and re-signing it with the platform's PCK key.
    let p = default_platform();
    let qe_file = p.path().join(sim::QE_REPORT_FILE);
    let mut body = std::fs::read(&qe_file).unwrap()[..384].to_vec();
    body[128] ^= 1; // MRSIGNER
    let key_pem = std::fs::read_to_string(p.path().join(sim::PCK_KEY_FILE)).unwrap();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pem::parse(key_pem).unwrap().contents(),
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let sig = key.sign(&ring::rand::SystemRandom::new(), &body).unwrap();
    let mut file = body.clone();
    file.extend_from_slice(sig.as_ref());
    std::fs::write(&qe_file, &file).unwrap();
    let err = p
        .verifier()
        .verify(&p.quote(), &p.collateral(), NOW)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::QeIdentityMismatch(ccm_attest::QeIdentityField::MrSigner)
        ),
        "{err}"
    );
}

#[test]
fn pck_chain_tampering_is_refused() {
    let p = default_platform();
    let verifier = p.verifier();
    let collateral = p.collateral();
    let quote = p.quote();
    let chain =
        String::from_utf8(std::fs::read(p.path().join(sim::PCK_CHAIN_FILE)).unwrap()).unwrap();
    let certs: Vec<&str> = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    assert_eq!(certs.len(), 3);

    // Leaf and CA only (no root) is fine; a lone leaf is not a chain.
    let two = edited(&quote, |q| {
        q.signature_data.certification_data.data = format!("{}{}", certs[0], certs[1]).into_bytes()
    });
    verifier.verify(&two, &collateral, NOW).unwrap();
    let one = edited(&quote, |q| {
        q.signature_data.certification_data.data = certs[0].as_bytes().to_vec()
    });
    assert!(matches!(
        verifier.verify(&one, &collateral, NOW).unwrap_err(),
        VerifyError::ChainLength { len: 1, .. }
    ));
    // Wrong order: the CA first.
    let swapped = edited(&quote, |q| {
        q.signature_data.certification_data.data =
            format!("{}{}{}", certs[1], certs[0], certs[2]).into_bytes()
    });
    assert!(matches!(
        verifier.verify(&swapped, &collateral, NOW).unwrap_err(),
        VerifyError::UnexpectedCa {
            role: CertRole::PckLeaf
        }
    ));
    // A different root certificate appended.
    let other = default_platform();
    let other_root = std::fs::read_to_string(other.path().join(sim::ROOT_CA_FILE)).unwrap();
    let wrong_root = edited(&quote, |q| {
        q.signature_data.certification_data.data =
            format!("{}{}{}", certs[0], certs[1], other_root).into_bytes()
    });
    assert!(matches!(
        verifier.verify(&wrong_root, &collateral, NOW).unwrap_err(),
        VerifyError::RootMismatch { .. }
    ));
    // Another platform's PCK certificate (same CA): the QE report is not signed by its key.
    let sibling = add(&p, &PlatformOptions::new(T0));
    let sibling_chain = std::fs::read(sibling.path().join(sim::PCK_CHAIN_FILE)).unwrap();
    let swapped_leaf = edited(&quote, |q| {
        q.signature_data.certification_data.data = sibling_chain
    });
    assert!(matches!(
        verifier
            .verify(&swapped_leaf, &collateral, NOW)
            .unwrap_err(),
        VerifyError::QeReportSignature
    ));
    // A flipped byte inside the leaf's signature.
    let der = pem::parse(certs[0]).unwrap();
    let mut der = der.contents().to_vec();
    let last = der.len() - 3;
    der[last] ^= 1;
    let bad_leaf = pem::encode(&pem::Pem::new("CERTIFICATE", der));
    let tampered = edited(&quote, |q| {
        q.signature_data.certification_data.data =
            format!("{}{}{}", bad_leaf, certs[1], certs[2]).into_bytes()
    });
    assert!(matches!(
        verifier.verify(&tampered, &collateral, NOW).unwrap_err(),
        VerifyError::CertificateSignature {
            role: CertRole::PckLeaf
        }
    ));
    // Garbage instead of PEM.
    let garbage = edited(&quote, |q| {
        q.signature_data.certification_data.data = b"not a chain".to_vec()
    });
    assert!(matches!(
        verifier.verify(&garbage, &collateral, NOW).unwrap_err(),
        VerifyError::Certificate {
            role: CertRole::PckLeaf,
            ..
        }
    ));
    // Another certification data type.
    let other_type = edited(&quote, |q| {
        q.signature_data.certification_data.cert_type = ccm_sgx::CertDataType::PCK_LEAF_CERT
    });
    assert!(matches!(
        verifier.verify(&other_type, &collateral, NOW).unwrap_err(),
        VerifyError::UnsupportedCertificationDataType(4)
    ));
}

#[test]
fn untrusted_roots_are_refused() {
    let p = default_platform();
    // Intel's root only (the default): a simulated quote does not verify.
    let err = Verifier::new(TrustRoots::intel())
        .verify(&p.quote(), &p.collateral(), NOW)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::UntrustedRoot {
                role: CertRole::PckCa,
                ..
            }
        ),
        "{err}"
    );
    // Another simulated root does not vouch for this platform either.
    let other = default_platform();
    let err = other
        .verifier()
        .verify(&p.quote(), &p.collateral(), NOW)
        .unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
}

#[test]
fn collateral_must_come_from_the_same_root_as_the_pck_chain() {
    let a = default_platform();
    let b = default_platform();
    let both = Verifier::new(TrustRoots::empty().with(a.root()).with(b.root()));
    let err = both.verify(&a.quote(), &b.collateral(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::CollateralRootMismatch), "{err}");
    assert!(both.verify(&a.quote(), &a.collateral(), NOW).is_ok());
    assert!(both.verify(&b.quote(), &b.collateral(), NOW).is_ok());
}

#[test]
fn collateral_signature_tampering_is_refused() {
    let p = default_platform();
    let verifier = p.verifier();
    let quote = p.quote();
    let c = p.collateral();
    let cases: Vec<(Collateral, Expect)> = vec![
        (
            collateral_with(&c, |x| x.tcb_info_signature[10] ^= 1),
            |e| matches!(e, VerifyError::TcbInfoSignature),
        ),
        (
            collateral_with(&c, |x| {
                x.tcb_info = x.tcb_info.replacen(
                    "\"tcbEvaluationDataNumber\":1",
                    "\"tcbEvaluationDataNumber\":2",
                    1,
                )
            }),
            |e| matches!(e, VerifyError::TcbInfoSignature),
        ),
        (
            collateral_with(&c, |x| {
                x.tcb_info = x.tcb_info.replacen(
                    "\"tcbStatus\":\"OutOfDate\"",
                    "\"tcbStatus\":\"UpToDate\"",
                    1,
                )
            }),
            |e| matches!(e, VerifyError::TcbInfoSignature),
        ),
        (
            collateral_with(&c, |x| x.qe_identity_signature[63] ^= 1),
            |e| matches!(e, VerifyError::QeIdentitySignature),
        ),
        (
            collateral_with(&c, |x| {
                x.qe_identity = x.qe_identity.replacen("\"isvsvn\":6", "\"isvsvn\":5", 1)
            }),
            |e| matches!(e, VerifyError::QeIdentitySignature),
        ),
        (
            collateral_with(&c, |x| x.tcb_info_signature.truncate(63)),
            |e| {
                matches!(
                    e,
                    VerifyError::Collateral(ccm_attest::CollateralError::SignatureLength { .. })
                )
            },
        ),
        (
            collateral_with(&c, |x| {
                let n = x.root_ca_crl.len();
                x.root_ca_crl[n - 5] ^= 1;
            }),
            |e| {
                matches!(
                    e,
                    VerifyError::CrlSignature {
                        crl: CrlKind::RootCa
                    }
                )
            },
        ),
        (
            collateral_with(&c, |x| {
                let n = x.pck_crl.len();
                x.pck_crl[n - 5] ^= 1;
            }),
            |e| {
                matches!(
                    e,
                    VerifyError::CrlSignature {
                        crl: CrlKind::PckCa
                    }
                )
            },
        ),
        (collateral_with(&c, |x| x.pck_crl.truncate(20)), |e| {
            matches!(
                e,
                VerifyError::Crl {
                    crl: CrlKind::PckCa,
                    ..
                }
            )
        }),
        (
            // The TCB info signed by a certificate the root did not issue (the PCK CA's chain
            // in place of the TCB signing chain: the PCK CA did not sign the TCB info).
            collateral_with(&c, |x| {
                x.tcb_info_issuer_chain = x.pck_crl_issuer_chain.clone()
            }),
            |e| matches!(e, VerifyError::TcbInfoSignature),
        ),
    ];
    for (i, (collateral, expected)) in cases.into_iter().enumerate() {
        let err = verifier.verify(&quote, &collateral, NOW).unwrap_err();
        assert!(expected(&err), "case {i}: {err}");
    }
    // The untouched collateral still verifies (the failures were not cached as successes).
    verifier.verify(&quote, &c, NOW).unwrap();
}

#[test]
fn collateral_signed_under_another_root_is_refused() {
    let p = default_platform();
    let other = default_platform();
    let c = collateral_with(&p.collateral(), |x| {
        x.tcb_info_issuer_chain = other.collateral().parts().tcb_info_issuer_chain.clone()
    });
    let err = p.verifier().verify(&p.quote(), &c, NOW).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::UntrustedRoot {
                role: CertRole::TcbSigner,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn expired_and_premature_collateral_is_refused() {
    let p = default_platform();
    let info = sim::PlatformInfo::load(p.path()).unwrap();
    let verifier = p.verifier();
    let quote = p.quote();
    let c = p.collateral();
    // Warm the caches first: validity is still checked on every call.
    verifier.verify(&quote, &c, NOW).unwrap();
    verifier
        .verify(&quote, &c, info.collateral_next_update)
        .unwrap();
    let err = verifier
        .verify(&quote, &c, info.collateral_next_update + 1)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CollateralExpired {
                item: CollateralItem::TcbInfo,
                ..
            }
        ),
        "{err}"
    );
    // A platform created later under the same root: its collateral is not valid yet at a time
    // when the first platform's certificates already are.
    let later = add(&p, &PlatformOptions::new(T0 + 10_000));
    let err = verifier
        .verify(&quote, &later.collateral(), T0 + 5_000)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CollateralNotYetValid {
                item: CollateralItem::TcbInfo,
                ..
            }
        ),
        "{err}"
    );
    // Before the PCK certificate's notBefore.
    let err = verifier.verify(&quote, &c, T0 - 10_000).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CertificateNotYetValid {
                role: CertRole::PckLeaf,
                ..
            }
        ),
        "{err}"
    );
    // After the PCK certificate's notAfter (7 years).
    let err = verifier
        .verify(&quote, &c, T0 + 8 * 365 * 86_400)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CertificateExpired {
                role: CertRole::PckLeaf,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_revoked_pck_certificate_is_refused() {
    let p = init(&PlatformOptions {
        revoked: true,
        ..PlatformOptions::new(T0)
    });
    let info = sim::PlatformInfo::load(p.path()).unwrap();
    assert!(info.pck_revoked);
    let err = p
        .verifier()
        .verify(&p.quote(), &p.collateral(), NOW)
        .unwrap_err();
    match err {
        VerifyError::Revoked {
            role: CertRole::PckLeaf,
            serial,
        } => assert_eq!(serial, info.pck_serial.trim_start_matches("00")),
        other => panic!("unexpected {other}"),
    }
    // Revocation is recorded in the CA: a platform added later carries a PCK CRL that still
    // lists the first platform's certificate.
    let second = add(&p, &PlatformOptions::new(T0 + 60));
    let err = p
        .verifier()
        .verify(&p.quote(), &second.collateral(), NOW)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Revoked {
                role: CertRole::PckLeaf,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        p.verifier()
            .verify(&second.quote(), &second.collateral(), NOW)
            .is_ok()
    );
}

#[test]
fn wrong_fmspc_is_refused() {
    let p = default_platform();
    let other = add(
        &p,
        &PlatformOptions {
            fmspc: [0x00, 0x90, 0x6e, 0xa1, 0x00, 0x00],
            ..PlatformOptions::new(T0)
        },
    );
    let err = p
        .verifier()
        .verify(&p.quote(), &other.collateral(), NOW)
        .unwrap_err();
    match err {
        VerifyError::FmspcMismatch { pck, tcb_info } => {
            assert_eq!(pck, "00cc51000000");
            assert_eq!(tcb_info, "00906ea10000");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn malformed_quotes_are_refused_not_panicking() {
    let p = default_platform();
    let verifier = p.verifier();
    let collateral = p.collateral();
    let quote = p.quote();
    for len in 0..quote.len() {
        assert!(
            verifier.verify(&quote[..len], &collateral, NOW).is_err(),
            "len {len}"
        );
    }
    let mut trailing = quote.clone();
    trailing.push(1);
    assert!(matches!(
        verifier.verify(&trailing, &collateral, NOW).unwrap_err(),
        VerifyError::Quote(_)
    ));
}
