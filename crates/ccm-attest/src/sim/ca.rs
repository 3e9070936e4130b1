//! The simulated certificate hierarchy, shaped like Intel's:
//!
//! ```text
//! ccm Simulated SGX Root CA ──┬── ccm Simulated SGX PCK Platform CA ── ccm Simulated SGX PCK Certificate (per platform)
//!                             └── ccm Simulated SGX TCB Signing      (signs TCB info and QE identity)
//! ```
//!
//! plus a root CRL and a PCK CRL. All keys are ECDSA P-256, all signatures ECDSA with SHA-256,
//! as in Intel's PKI. The CA's keys and its revocation state live in `<root dir>/ca/` so that
//! `add-platform` can issue more platforms under the same root.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::sim::files;
use crate::time::to_datetime;

/// Subject CN of the simulated root CA.
pub const ROOT_CA_CN: &str = "ccm Simulated SGX Root CA";
/// Subject CN of the simulated PCK CA.
pub const PCK_CA_CN: &str = "ccm Simulated SGX PCK Platform CA";
/// Subject CN of the simulated TCB signing certificate.
pub const TCB_SIGNING_CN: &str = "ccm Simulated SGX TCB Signing";
/// Subject CN of simulated PCK certificates.
pub const PCK_CERT_CN: &str = "ccm Simulated SGX PCK Certificate";
const ORGANIZATION: &str = "ccm (SIMULATED, not Intel)";

const DAY: u64 = 86_400;
const YEAR: u64 = 365 * DAY;
/// Dates are backdated by this much, so verifiers whose clocks lag slightly behind the machine
/// that created the platform still accept it.
pub(crate) const BACKDATE: u64 = 300;
const ROOT_VALIDITY: u64 = 25 * YEAR;
const PCK_CA_VALIDITY: u64 = 15 * YEAR;
const TCB_SIGNING_VALIDITY: u64 = 7 * YEAR;
const PCK_CERT_VALIDITY: u64 = 7 * YEAR;
/// How long CRLs, TCB info and QE identity stay valid.
pub(crate) const COLLATERAL_VALIDITY: u64 = 30 * DAY;

const CA_DIR: &str = "ca";
const ROOT_KEY: &str = "root-ca.key";
const PCK_CA_CERT: &str = "pck-ca.pem";
const PCK_CA_KEY: &str = "pck-ca.key";
const TCB_CERT: &str = "tcb-signing.pem";
const TCB_KEY: &str = "tcb-signing.key";
const CA_STATE: &str = "state.json";

fn gen_err(what: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |e| Error::Generate {
        what,
        reason: e.to_string(),
    }
}

fn date(secs: u64) -> Result<time::OffsetDateTime, Error> {
    to_datetime(secs).ok_or(Error::TimeOutOfRange(secs))
}

/// Random bytes from the system RNG.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::Generate {
            what: "random bytes",
            reason: "the system RNG failed".into(),
        })?;
    Ok(out)
}

/// A positive 16-byte certificate serial number.
fn random_serial() -> Result<Vec<u8>, Error> {
    let mut serial = random::<16>()?;
    if let Some(first) = serial.first_mut() {
        *first = (*first & 0x7f) | 0x01;
    }
    Ok(serial.to_vec())
}

/// An ECDSA P-256 private key, kept as PKCS#8 DER (zeroized on drop).
pub(crate) struct SimKey {
    pkcs8: Zeroizing<Vec<u8>>,
}

impl SimKey {
    /// A fresh key.
    pub(crate) fn generate() -> Result<SimKey, Error> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| Error::Generate {
                    what: "ECDSA P-256 key",
                    reason: "the system RNG failed".into(),
                })?;
        Ok(SimKey {
            pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
        })
    }

    /// Loads a PKCS#8 PEM key file.
    pub(crate) fn load(path: &Path) -> Result<SimKey, Error> {
        let text = Zeroizing::new(files::read_text(path)?);
        let bad = |reason: String| Error::PlatformFile {
            path: path.to_path_buf(),
            reason,
        };
        let block = pem::parse(text.as_bytes()).map_err(|e| bad(e.to_string()))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(bad(format!(
                "expected a PRIVATE KEY block, found {}",
                block.tag()
            )));
        }
        let key = SimKey {
            pkcs8: Zeroizing::new(block.into_contents()),
        };
        key.ring()
            .map_err(|_| bad("not an ECDSA P-256 PKCS#8 key".into()))?;
        Ok(key)
    }

    /// Writes the key as PKCS#8 PEM with mode 0600.
    pub(crate) fn save(&self, path: &Path) -> Result<(), Error> {
        let text = Zeroizing::new(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            self.pkcs8.to_vec(),
        )));
        files::write_private(path, text.as_bytes())
    }

    /// The key for ring's ECDSA signing (`r ‖ s` output).
    pub(crate) fn ring(&self) -> Result<EcdsaKeyPair, Error> {
        EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &self.pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| Error::Generate {
            what: "ECDSA key",
            reason: e.to_string(),
        })
    }

    /// The key for rcgen (certificate and CRL signing).
    pub(crate) fn rcgen(&self) -> Result<KeyPair, Error> {
        KeyPair::try_from(self.pkcs8.as_slice()).map_err(gen_err("certificate key"))
    }

    /// The uncompressed public point `04 ‖ x ‖ y`.
    pub(crate) fn public_point(&self) -> Result<[u8; 65], Error> {
        let key = self.ring()?;
        key.public_key()
            .as_ref()
            .try_into()
            .map_err(|_| Error::Generate {
                what: "ECDSA key",
                reason: "unexpected public key length".into(),
            })
    }

    /// Signs `msg`, returning the raw `r ‖ s` signature.
    pub(crate) fn sign(&self, msg: &[u8]) -> Result<[u8; 64], Error> {
        let sig = self
            .ring()?
            .sign(&SystemRandom::new(), msg)
            .map_err(|_| Error::Generate {
                what: "ECDSA signature",
                reason: "signing failed".into(),
            })?;
        sig.as_ref().try_into().map_err(|_| Error::Generate {
            what: "ECDSA signature",
            reason: "unexpected signature length".into(),
        })
    }
}

/// The CA's revocation bookkeeping, persisted in `ca/state.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct CaState {
    /// Number of the next CRL to issue (CRL numbers increase monotonically).
    next_crl_number: u64,
    /// Serial numbers (hex) of revoked PCK certificates.
    revoked_pck_serials: Vec<String>,
    /// TCB recoveries in force (the standard TCB evaluation data set).
    #[serde(default)]
    recoveries: u32,
    /// TCB recoveries published, in force or announced ahead (the early set).
    #[serde(default)]
    early_recoveries: u32,
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn
}

fn params(
    cn: &str,
    serial: Vec<u8>,
    not_before: u64,
    validity: u64,
) -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn);
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = date(not_before)?;
    p.not_after = date(not_before.saturating_add(validity))?;
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

/// An issuing CA: its certificate as rcgen needs it to sign, its PEM as published, its key.
struct Issuer {
    cert: rcgen::Certificate,
    pem: String,
    key: SimKey,
}

impl Issuer {
    fn load(cert_path: &Path, key_path: &Path) -> Result<Issuer, Error> {
        let pem_text = files::read_text(cert_path)?;
        let key = SimKey::load(key_path)?;
        let bad = |reason: String| Error::PlatformFile {
            path: cert_path.to_path_buf(),
            reason,
        };
        // rcgen signs with an issuer `Certificate`; rebuild one from the published certificate's
        // parameters (subject, key identifier, key usages) and the CA key. Only the signature of
        // the rebuilt certificate differs, and it is never published.
        let params = CertificateParams::from_ca_cert_pem(&pem_text)
            .map_err(|e| bad(format!("not a CA certificate: {e}")))?;
        let rcgen_key = key.rcgen()?;
        let parsed = crate::x509::Cert::from_der(
            pem::parse(pem_text.as_bytes())
                .map_err(|e| bad(e.to_string()))?
                .contents(),
        )
        .map_err(|e| bad(e.to_string()))?;
        if parsed.public_key != key.public_point()? {
            return Err(bad(format!(
                "does not match the key in {}",
                key_path.display()
            )));
        }
        let cert = params
            .self_signed(&rcgen_key)
            .map_err(gen_err("CA certificate"))?;
        Ok(Issuer {
            cert,
            pem: pem_text,
            key,
        })
    }
}

/// The simulated CA hierarchy.
pub(crate) struct SimCa {
    root: Issuer,
    pck_ca: Issuer,
    tcb_cert_pem: String,
    tcb_key: SimKey,
    state: CaState,
}

impl SimCa {
    /// A fresh hierarchy valid from `now`.
    pub(crate) fn generate(now: u64) -> Result<SimCa, Error> {
        let start = now.saturating_sub(BACKDATE);

        let root_key = SimKey::generate()?;
        let mut p = params(ROOT_CA_CN, random_serial()?, start, ROOT_VALIDITY)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root_cert = p
            .self_signed(&root_key.rcgen()?)
            .map_err(gen_err("root CA certificate"))?;
        let root = Issuer {
            pem: root_cert.pem(),
            cert: root_cert,
            key: root_key,
        };

        let pck_key = SimKey::generate()?;
        let mut p = params(PCK_CA_CN, random_serial()?, start, PCK_CA_VALIDITY)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.use_authority_key_identifier_extension = true;
        let pck_cert = p
            .signed_by(&pck_key.rcgen()?, &root.cert, &root.key.rcgen()?)
            .map_err(gen_err("PCK CA certificate"))?;
        let pck_ca = Issuer {
            pem: pck_cert.pem(),
            cert: pck_cert,
            key: pck_key,
        };

        let tcb_key = SimKey::generate()?;
        let mut p = params(
            TCB_SIGNING_CN,
            random_serial()?,
            start,
            TCB_SIGNING_VALIDITY,
        )?;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        p.use_authority_key_identifier_extension = true;
        let tcb_cert = p
            .signed_by(&tcb_key.rcgen()?, &root.cert, &root.key.rcgen()?)
            .map_err(gen_err("TCB signing certificate"))?;

        Ok(SimCa {
            root,
            pck_ca,
            tcb_cert_pem: tcb_cert.pem(),
            tcb_key,
            state: CaState {
                next_crl_number: 1,
                ..CaState::default()
            },
        })
    }

    /// Loads the hierarchy saved in `root_dir`.
    pub(crate) fn load(root_dir: &Path) -> Result<SimCa, Error> {
        let ca = root_dir.join(CA_DIR);
        let root = Issuer::load(&root_dir.join(super::ROOT_CA_FILE), &ca.join(ROOT_KEY))?;
        let pck_ca = Issuer::load(&ca.join(PCK_CA_CERT), &ca.join(PCK_CA_KEY))?;
        let tcb_cert_pem = files::read_text(&ca.join(TCB_CERT))?;
        let tcb_key = SimKey::load(&ca.join(TCB_KEY))?;
        let state_path = ca.join(CA_STATE);
        let state: CaState = serde_json::from_slice(&files::read(&state_path)?).map_err(|e| {
            Error::PlatformFile {
                path: state_path.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(SimCa {
            root,
            pck_ca,
            tcb_cert_pem,
            tcb_key,
            state,
        })
    }

    /// Saves the hierarchy into `root_dir` (`root-ca.pem` and `ca/`).
    pub(crate) fn save(&self, root_dir: &Path) -> Result<(), Error> {
        let ca = root_dir.join(CA_DIR);
        files::create_private_dir(&ca)?;
        files::write_public(
            &root_dir.join(super::ROOT_CA_FILE),
            self.root.pem.as_bytes(),
        )?;
        self.root.key.save(&ca.join(ROOT_KEY))?;
        files::write_public(&ca.join(PCK_CA_CERT), self.pck_ca.pem.as_bytes())?;
        self.pck_ca.key.save(&ca.join(PCK_CA_KEY))?;
        files::write_public(&ca.join(TCB_CERT), self.tcb_cert_pem.as_bytes())?;
        self.tcb_key.save(&ca.join(TCB_KEY))?;
        let state = serde_json::to_vec_pretty(&self.state).map_err(|e| Error::Generate {
            what: "CA state",
            reason: e.to_string(),
        })?;
        files::write_public(&ca.join(CA_STATE), &state)
    }

    /// The root certificate (PEM), the trust anchor.
    pub(crate) fn root_pem(&self) -> &str {
        &self.root.pem
    }

    /// The PCK CA certificate (PEM).
    pub(crate) fn pck_ca_pem(&self) -> &str {
        &self.pck_ca.pem
    }

    /// The TCB signing certificate (PEM).
    pub(crate) fn tcb_signing_pem(&self) -> &str {
        &self.tcb_cert_pem
    }

    /// Issues a PCK certificate for `leaf_key` carrying the SGX extension `sgx_extension_der`;
    /// returns (PEM, serial).
    pub(crate) fn issue_pck(
        &self,
        leaf_key: &SimKey,
        sgx_extension_der: Vec<u8>,
        now: u64,
    ) -> Result<(String, Vec<u8>), Error> {
        let serial = random_serial()?;
        let mut p = params(
            PCK_CERT_CN,
            serial.clone(),
            now.saturating_sub(BACKDATE),
            PCK_CERT_VALIDITY,
        )?;
        p.is_ca = IsCa::NoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        p.use_authority_key_identifier_extension = true;
        p.custom_extensions = vec![CustomExtension::from_oid_content(
            crate::x509::SGX_EXTENSION_OID,
            sgx_extension_der,
        )];
        let cert = p
            .signed_by(
                &leaf_key.rcgen()?,
                &self.pck_ca.cert,
                &self.pck_ca.key.rcgen()?,
            )
            .map_err(gen_err("PCK certificate"))?;
        Ok((cert.pem(), serial))
    }

    /// Records a PCK certificate as revoked (it appears on every later PCK CRL).
    pub(crate) fn revoke_pck(&mut self, serial: &[u8]) {
        let hex = hex::encode(serial);
        if !self.state.revoked_pck_serials.contains(&hex) {
            self.state.revoked_pck_serials.push(hex);
        }
    }

    /// The TCB recoveries of a TCB evaluation data set: in force, or published (`early`).
    pub(crate) fn recoveries(&self, early: bool) -> u32 {
        if early {
            self.state.early_recoveries.max(self.state.recoveries)
        } else {
            self.state.recoveries
        }
    }

    /// Publishes a TCB recovery: announced in the early set only (`early`), or in force in both
    /// (an announced one is put in force; with none announced, a new one).
    pub(crate) fn publish_recovery(&mut self, early: bool) {
        let published = self.recoveries(true);
        if early {
            self.state.early_recoveries = self.state.recoveries.saturating_add(1).max(published);
        } else {
            let next = if published > self.state.recoveries {
                published
            } else {
                published.saturating_add(1)
            };
            self.state.recoveries = next;
            self.state.early_recoveries = next;
        }
    }

    fn next_crl_number(&mut self) -> u64 {
        let n = self.state.next_crl_number.max(1);
        self.state.next_crl_number = n.saturating_add(1);
        n
    }

    fn crl(issuer: &Issuer, number: u64, revoked: &[Vec<u8>], now: u64) -> Result<Vec<u8>, Error> {
        let this_update = now.saturating_sub(BACKDATE);
        let revoked_certs = revoked
            .iter()
            .map(|serial| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from(serial.clone()),
                    revocation_time: date(this_update)?,
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let params = CertificateRevocationListParams {
            this_update: date(this_update)?,
            next_update: date(now.saturating_add(COLLATERAL_VALIDITY))?,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&issuer.cert, &issuer.key.rcgen()?)
            .map_err(gen_err("CRL"))?;
        Ok(crl.der().to_vec())
    }

    /// A fresh root CA CRL (revoking nothing).
    pub(crate) fn root_crl(&mut self, now: u64) -> Result<Vec<u8>, Error> {
        let number = self.next_crl_number();
        Self::crl(&self.root, number, &[], now)
    }

    /// A fresh PCK CRL listing every revoked PCK certificate.
    pub(crate) fn pck_crl(&mut self, now: u64) -> Result<Vec<u8>, Error> {
        let number = self.next_crl_number();
        let revoked = self
            .state
            .revoked_pck_serials
            .iter()
            .filter_map(|s| hex::decode(s).ok())
            .collect::<Vec<_>>();
        Self::crl(&self.pck_ca, number, &revoked, now)
    }

    /// Signs TCB info or QE identity text as Intel does (ECDSA P-256, raw `r ‖ s`).
    pub(crate) fn sign_collateral(&self, text: &str) -> Result<[u8; 64], Error> {
        self.tcb_key.sign(text.as_bytes())
    }
}
