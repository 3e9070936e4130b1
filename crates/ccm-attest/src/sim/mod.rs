//! The simulated SGX platform: CA hierarchy, collateral, CPU and quoting enclave.
//!
//! **SIMULATED.** A simulated platform proves nothing about hardware: anyone with its files can
//! mint quotes for any enclave. Verifiers trust its root only when told to
//! ([`RootKind::Simulated`](crate::RootKind)), and mark results `simulated`.
//!
//! [`init`] creates a root and a first platform in a directory; [`add_platform`] creates another
//! platform under an existing root, as real platforms share Intel's root. A platform directory
//! holds these files (private keys with mode 0600):
//!
//! | file | content |
//! |---|---|
//! | `root-ca.pem` | the simulated root CA certificate: the trust anchor |
//! | `collateral.json` | `QuoteCollateralV3` JSON for this platform's FMSPC |
//! | `platform.json` | FMSPC, PPID, TCB, QE identity values ([`PlatformInfo`]) |
//! | `tcb-info.json`, `qe-identity.json` | the signed TCB info and QE identity as the PCS serves them |
//! | `pck.pem`, `pck-chain.pem`, `pck.key` | the PCK certificate, its chain (leaf, CA, root), its key |
//! | `attestation.key` | the QE's ECDSA P-256 attestation key |
//! | `qe-report.bin` | the QE REPORT body certifying the attestation key, and its PCK signature |
//! | `ccm-sim-cpu.key` | the 32-byte platform secret (simulated local attestation) |
//!
//! A directory made by [`init`] also holds `ca/` (the CA keys and revocation state).

mod ca;
mod cpu;
mod files;
mod qe;
mod tcb;

use std::path::Path;

use ccm_sgx::{
    AttributeFlags, Attributes, CpuSvn, INTEL_QE3_MRSIGNER, Measurement, PckTcb,
    PlatformConfiguration, QuoteSignatureData, ReportBody, ReportData, SgxExtension, SgxType,
};
use serde::{Deserialize, Serialize};

use crate::collateral::{
    Collateral, CollateralParts, QeIdentity, TcbInfo, TcbStatus, join_signed_json,
};
use crate::error::Error;
use crate::roots::{RootKind, TrustRoot};
use crate::time::format_rfc3339;

pub use ca::{PCK_CA_CN, PCK_CERT_CN, ROOT_CA_CN, TCB_SIGNING_CN};
pub use cpu::{EnclaveIdentity, SimCpu};
pub use qe::SimQuotingEnclave;
pub use tcb::{
    SA_CONFIGURATION, SA_OUT_OF_DATE, SA_QE_OUT_OF_DATE, SA_QE_REVOKED, SA_REVOKED,
    SA_SW_HARDENING, SA_TCB_RECOVERY,
};

/// The trust anchor of a platform directory.
pub const ROOT_CA_FILE: &str = "root-ca.pem";
/// The collateral of a platform directory.
pub const COLLATERAL_FILE: &str = "collateral.json";
/// The platform description.
pub const PLATFORM_FILE: &str = "platform.json";
/// The platform secret (raw 32 bytes), as published to simulated enclaves.
pub const CPU_SECRET_FILE: &str = "ccm-sim-cpu.key";
/// The QE attestation key (PKCS#8 PEM).
pub const ATTESTATION_KEY_FILE: &str = "attestation.key";
/// The PCK certificate.
pub const PCK_CERT_FILE: &str = "pck.pem";
/// The PCK certificate chain as quotes carry it (leaf, PCK CA, root).
pub const PCK_CHAIN_FILE: &str = "pck-chain.pem";
/// The PCK private key (PKCS#8 PEM).
pub const PCK_KEY_FILE: &str = "pck.key";
/// The QE report body and its PCK signature.
pub const QE_REPORT_FILE: &str = "qe-report.bin";
/// The signed TCB info, PCS response shape.
pub const TCB_INFO_FILE: &str = "tcb-info.json";
/// The signed QE identity, PCS response shape.
pub const QE_IDENTITY_FILE: &str = "qe-identity.json";

/// The simulated QE's authentication data (Intel's QE sends the 32 bytes 0, 1, ..., 31).
pub(crate) const QE_AUTH_DATA: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];
/// The simulated QE's ISVPRODID (Intel QE3's).
pub const QE_ISVPRODID: u16 = 1;
/// The simulated QE's MISCSELECT.
pub const QE_MISCSELECT: u32 = 0;
/// The simulated QE's ATTRIBUTES flags: INIT, MODE64BIT, PROVISIONKEY.
pub const QE_FLAGS: u64 = 0x15;
/// The simulated QE's XFRM.
pub const QE_XFRM: u64 = 0xe7;
/// FMSPC given to platforms unless another is asked for (not an Intel FMSPC).
pub const DEFAULT_FMSPC: [u8; 6] = [0x00, 0xcc, 0x51, 0x00, 0x00, 0x00];
/// The PCE ID of every simulated platform.
const SIM_PCE_ID: [u8; 2] = [0; 2];
/// TCB evaluation data number written into the simulated TCB info and QE identity.
pub const TCB_EVALUATION_DATA_NUMBER: u32 = 1;

/// The simulated QE's MRENCLAVE: SHA-256 of a fixed label (there is no enclave image).
pub fn qe_mrenclave() -> Measurement {
    let digest = ring::digest::digest(&ring::digest::SHA256, b"ccm simulated quoting enclave");
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Measurement(out)
}

/// The simulated QE's MRSIGNER: Intel QE3's, so unmodified AESM clients select its key id.
pub fn qe_mrsigner() -> Measurement {
    Measurement(INTEL_QE3_MRSIGNER)
}

/// What kind of platform to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformOptions {
    /// The platform TCB status the platform's SVNs should produce (any status).
    pub tcb_status: TcbStatus,
    /// The QE's TCB status: `UpToDate`, `OutOfDate` or `Revoked`.
    pub qe_status: TcbStatus,
    /// Put the platform's PCK certificate on the PCK CRL.
    pub revoked: bool,
    /// The platform's FMSPC.
    pub fmspc: [u8; 6],
    /// Creation time (Unix seconds): certificates, CRLs and collateral are dated from it.
    pub now: u64,
    /// Explicit TCB components and PCESVN instead of those of `tcb_status`.
    pub tcb_override: Option<([u8; 16], u16)>,
    /// Explicit QE ISVSVN instead of that of `qe_status`.
    pub qe_isvsvn_override: Option<u16>,
}

impl PlatformOptions {
    /// An up-to-date platform with an up-to-date QE, created at `now`.
    pub fn new(now: u64) -> PlatformOptions {
        PlatformOptions {
            tcb_status: TcbStatus::UpToDate,
            qe_status: TcbStatus::UpToDate,
            revoked: false,
            fmspc: DEFAULT_FMSPC,
            now,
            tcb_override: None,
            qe_isvsvn_override: None,
        }
    }
}

/// The simulated QE's identity values, as recorded in `platform.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QeInfo {
    /// MRENCLAVE, hex.
    pub mrenclave: String,
    /// MRSIGNER, hex.
    pub mrsigner: String,
    /// ISVPRODID.
    pub isvprodid: u16,
    /// ISVSVN.
    pub isvsvn: u16,
    /// The QE TCB status this ISVSVN has in the QE identity.
    pub status: TcbStatus,
    /// ATTRIBUTES, hex (16 bytes).
    pub attributes: String,
    /// MISCSELECT.
    pub miscselect: u32,
}

/// `platform.json`: what a simulated platform is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformInfo {
    /// Always `true`: this is a simulated platform.
    pub simulated: bool,
    /// FMSPC, hex.
    pub fmspc: String,
    /// PCE id, hex.
    pub pce_id: String,
    /// PPID, hex.
    pub ppid: String,
    /// CPUSVN, hex (equal to the 16 TCB components: TCB type 0).
    pub cpu_svn: String,
    /// The 16 SGX TCB component SVNs.
    pub tcb_components: [u8; 16],
    /// PCESVN.
    pub pce_svn: u16,
    /// The platform TCB status the collateral assigns to these SVNs (before QE convergence).
    pub tcb_status: TcbStatus,
    /// Serial number of the PCK certificate, hex.
    pub pck_serial: String,
    /// Whether the PCK certificate is on the PCK CRL.
    pub pck_revoked: bool,
    /// The quoting enclave.
    pub qe: QeInfo,
    /// Creation time (Unix seconds).
    pub created_at: u64,
    /// When the collateral expires (Unix seconds).
    pub collateral_next_update: u64,
}

impl PlatformInfo {
    /// Reads `platform.json` from a platform directory.
    pub fn load(dir: &Path) -> Result<PlatformInfo, Error> {
        let path = dir.join(PLATFORM_FILE);
        serde_json::from_slice(&files::read(&path)?).map_err(|e| Error::PlatformFile {
            path,
            reason: e.to_string(),
        })
    }

    fn ppid_bytes(&self) -> Result<[u8; 16], Error> {
        hex_field(&self.ppid, "ppid")
    }

    fn cpu_svn_bytes(&self) -> Result<[u8; 16], Error> {
        hex_field(&self.cpu_svn, "cpu_svn")
    }
}

fn hex_field<const N: usize>(text: &str, field: &str) -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| Error::PlatformFile {
        path: PLATFORM_FILE.into(),
        reason: format!("{field} is not {N} bytes of hex"),
    })?;
    Ok(out)
}

/// The QE id Intel's QE writes into the quote header's user data: here derived from the PPID.
fn qe_user_data(ppid: &[u8; 16]) -> [u8; 20] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"ccm-sim-qe-id");
    ctx.update(ppid);
    let mut out = [0u8; 20];
    if let (Some(dst), Some(src)) = (out.get_mut(..16), ctx.finish().as_ref().get(..16)) {
        dst.copy_from_slice(src);
    }
    out
}

/// Loads the platform's simulated CPU (secret and CPUSVN).
fn load_cpu(dir: &Path, info: &PlatformInfo) -> Result<SimCpu, Error> {
    let path = dir.join(CPU_SECRET_FILE);
    let secret: [u8; 32] =
        files::read(&path)?
            .as_slice()
            .try_into()
            .map_err(|_| Error::PlatformFile {
                path: path.clone(),
                reason: "expected exactly 32 bytes".into(),
            })?;
    Ok(SimCpu::new(secret).with_cpu_svn(CpuSvn(info.cpu_svn_bytes()?)))
}

/// The simulated CPU of the platform in `dir`.
pub fn load_sim_cpu(dir: &Path) -> Result<SimCpu, Error> {
    load_cpu(dir, &PlatformInfo::load(dir)?)
}

/// The collateral of the platform in `dir`.
pub fn load_collateral(dir: &Path) -> Result<Collateral, Error> {
    Ok(Collateral::from_json(&files::read(
        &dir.join(COLLATERAL_FILE),
    )?)?)
}

/// The root of the platform in `dir`, as a simulated trust root.
pub fn load_root(dir: &Path) -> Result<TrustRoot, Error> {
    TrustRoot::from_pem(
        &files::read_text(&dir.join(ROOT_CA_FILE))?,
        RootKind::Simulated,
    )
}

/// Creates a simulated root CA and a first platform under it in `dir`.
///
/// Refuses a directory that already holds a platform.
pub fn init(dir: &Path, options: &PlatformOptions) -> Result<PlatformInfo, Error> {
    check_options(options)?;
    files::prepare_dir(dir, PLATFORM_FILE)?;
    let mut ca = ca::SimCa::generate(options.now)?;
    let info = create_platform(&mut ca, dir, options)?;
    ca.save(dir)?;
    Ok(info)
}

/// Creates another platform in `dir` under the root created by [`init`] in `root_dir`.
///
/// The new platform gets its own PCK certificate, keys, secret and collateral; the CA's
/// revocation state in `root_dir` is updated when the platform is created revoked.
pub fn add_platform(
    root_dir: &Path,
    dir: &Path,
    options: &PlatformOptions,
) -> Result<PlatformInfo, Error> {
    check_options(options)?;
    let mut ca = ca::SimCa::load(root_dir)?;
    files::prepare_dir(dir, PLATFORM_FILE)?;
    let info = create_platform(&mut ca, dir, options)?;
    ca.save(root_dir)?;
    Ok(info)
}

fn check_options(options: &PlatformOptions) -> Result<(), Error> {
    if options.qe_isvsvn_override.is_none() && tcb::qe_isvsvn(options.qe_status).is_none() {
        return Err(Error::SimOption(format!(
            "QE status {} is not one the simulated QE identity has (UpToDate, OutOfDate, Revoked)",
            options.qe_status
        )));
    }
    // Everything dated from `now` must be representable as a calendar date.
    let horizon = options.now.saturating_add(30 * 365 * 86_400);
    if format_rfc3339(horizon).is_none() {
        return Err(Error::TimeOutOfRange(options.now));
    }
    Ok(())
}

fn qe_attributes() -> Attributes {
    Attributes::new(AttributeFlags::from_bits_retain(QE_FLAGS), QE_XFRM)
}

fn date_text(secs: u64) -> Result<String, Error> {
    format_rfc3339(secs).ok_or(Error::TimeOutOfRange(secs))
}

fn collateral_json_error(what: &'static str) -> impl Fn(serde_json::Error) -> Error {
    move |e| Error::Generate {
        what,
        reason: e.to_string(),
    }
}

/// A collateral set issued by the simulated CA at one time, with the signed texts it holds.
struct SignedCollateral {
    collateral: Collateral,
    tcb_info: TcbInfo,
    tcb_info_text: String,
    tcb_info_signature: [u8; 64],
    qe_identity_text: String,
    qe_identity_signature: [u8; 64],
    next_update: u64,
}

impl SignedCollateral {
    /// CRLs, TCB info for `fmspc` and QE identity, issued at `now` (backdated a little, valid
    /// for [`ca::COLLATERAL_VALIDITY`]) as Intel issues them, of the standard TCB evaluation data
    /// set or the `early` one.
    fn issue(
        ca: &mut ca::SimCa,
        fmspc: &[u8; 6],
        now: u64,
        early: bool,
    ) -> Result<SignedCollateral, Error> {
        let recoveries = ca.recoveries(early);
        let evaluation = TCB_EVALUATION_DATA_NUMBER.saturating_add(recoveries);
        let issued = now.saturating_sub(ca::BACKDATE);
        let next_update = now.saturating_add(ca::COLLATERAL_VALIDITY);
        let pce_id = SIM_PCE_ID;
        let root_crl = ca.root_crl(now)?;
        let pck_crl = ca.pck_crl(now)?;
        let tcb_info = TcbInfo {
            id: "SGX".into(),
            version: 3,
            issue_date: date_text(issued)?,
            next_update: date_text(next_update)?,
            fmspc: hex::encode_upper(fmspc),
            pce_id: hex::encode_upper(pce_id),
            tcb_type: 0,
            tcb_evaluation_data_number: evaluation,
            tcb_levels: tcb::tcb_levels(recoveries),
        };
        let tcb_info_text =
            serde_json::to_string(&tcb_info).map_err(collateral_json_error("TCB info"))?;
        let tcb_info_signature = ca.sign_collateral(&tcb_info_text)?;
        let mask_attributes: [u8; 16] = [
            0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut expected_attributes = [0u8; 16];
        if let Some(flags) = expected_attributes.get_mut(..8) {
            flags.copy_from_slice(&QE_FLAGS.to_le_bytes());
        }
        let qe_identity = QeIdentity {
            id: "QE".into(),
            version: 2,
            issue_date: date_text(issued)?,
            next_update: date_text(next_update)?,
            tcb_evaluation_data_number: evaluation,
            miscselect: hex::encode_upper(QE_MISCSELECT.to_le_bytes()),
            miscselect_mask: "FFFFFFFF".into(),
            attributes: hex::encode_upper(expected_attributes),
            attributes_mask: hex::encode_upper(mask_attributes),
            mrsigner: hex::encode_upper(qe_mrsigner().0),
            isvprodid: QE_ISVPRODID,
            tcb_levels: tcb::qe_levels(),
        };
        let qe_identity_text =
            serde_json::to_string(&qe_identity).map_err(collateral_json_error("QE identity"))?;
        let qe_identity_signature = ca.sign_collateral(&qe_identity_text)?;
        let signer_chain = format!("{}{}", ca.tcb_signing_pem(), ca.root_pem());
        let collateral = Collateral::new(CollateralParts {
            pck_crl_issuer_chain: format!("{}{}", ca.pck_ca_pem(), ca.root_pem()),
            root_ca_crl: root_crl,
            pck_crl,
            tcb_info_issuer_chain: signer_chain.clone(),
            tcb_info: tcb_info_text.clone(),
            tcb_info_signature: tcb_info_signature.to_vec(),
            qe_identity_issuer_chain: signer_chain,
            qe_identity: qe_identity_text.clone(),
            qe_identity_signature: qe_identity_signature.to_vec(),
        })?;
        Ok(SignedCollateral {
            collateral,
            tcb_info,
            tcb_info_text,
            tcb_info_signature,
            qe_identity_text,
            qe_identity_signature,
            next_update,
        })
    }
}

/// Issues fresh collateral for `fmspc` at `now` under the simulated root in `root_dir` (made by
/// [`init`]), as Intel's PCS re-issues it: new CRLs (their numbers recorded in the root's CA
/// state, so each is newer than the last) and TCB info and QE identity dated `now`. What
/// `ccm sim pcs` serves. SIMULATED.
pub fn issue_collateral(root_dir: &Path, fmspc: &[u8; 6], now: u64) -> Result<Collateral, Error> {
    issue_collateral_set(root_dir, fmspc, now, false)
}

/// [`issue_collateral`] of the standard TCB evaluation data set or the `early` one (which holds
/// a TCB recovery announced with [`tcb_recovery`] before it is in force).
pub fn issue_collateral_set(
    root_dir: &Path,
    fmspc: &[u8; 6],
    now: u64,
    early: bool,
) -> Result<Collateral, Error> {
    if format_rfc3339(now.saturating_add(ca::COLLATERAL_VALIDITY)).is_none() {
        return Err(Error::TimeOutOfRange(now));
    }
    let mut ca = ca::SimCa::load(root_dir)?;
    let signed = SignedCollateral::issue(&mut ca, fmspc, now, early)?;
    ca.save(root_dir)?;
    Ok(signed.collateral)
}

/// The TCB evaluation data numbers of the simulated root's standard and early sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvaluationNumbers {
    /// The set in force.
    pub standard: u32,
    /// The set published ahead (equal to `standard` when nothing is announced).
    pub early: u32,
}

/// Publishes a TCB recovery under the simulated root in `root_dir`, as Intel does: a new TCB
/// evaluation data number whose TCB info requires a higher microcode SVN (components 0 and 1)
/// for UpToDate, so that every platform made before it is OutOfDate (or OutOfDate and
/// ConfigurationNeeded) under it. With `early` it is only announced (the early set); without,
/// it is in force (an announced one becomes standard, or a new one is published in both).
/// Collateral issued from then on carries it; collateral issued before stays as it was.
/// SIMULATED.
pub fn tcb_recovery(root_dir: &Path, early: bool) -> Result<EvaluationNumbers, Error> {
    let mut ca = ca::SimCa::load(root_dir)?;
    ca.publish_recovery(early);
    ca.save(root_dir)?;
    Ok(evaluation_numbers(&ca))
}

fn evaluation_numbers(ca: &ca::SimCa) -> EvaluationNumbers {
    EvaluationNumbers {
        standard: TCB_EVALUATION_DATA_NUMBER.saturating_add(ca.recoveries(false)),
        early: TCB_EVALUATION_DATA_NUMBER.saturating_add(ca.recoveries(true)),
    }
}

/// Issues everything of one platform under `ca` and writes the platform directory.
fn create_platform(
    ca: &mut ca::SimCa,
    dir: &Path,
    options: &PlatformOptions,
) -> Result<PlatformInfo, Error> {
    let now = options.now;

    // Platform identity and TCB.
    let (components, pce_svn) = options
        .tcb_override
        .unwrap_or_else(|| tcb::platform_tcb(options.tcb_status));
    let qe_isvsvn = options
        .qe_isvsvn_override
        .or_else(|| tcb::qe_isvsvn(options.qe_status))
        .unwrap_or(8);
    let secret = ca::random::<32>()?;
    let ppid = ca::random::<16>()?;
    let instance_id = ca::random::<16>()?;
    let pce_id = SIM_PCE_ID;
    let cpu_svn = CpuSvn(components);

    // PCK certificate with the SGX extension, as a Platform CA issues it.
    let extension = SgxExtension {
        ppid,
        tcb: PckTcb {
            comp_svn: components,
            pce_svn,
            cpu_svn,
        },
        pce_id,
        fmspc: options.fmspc,
        sgx_type: SgxType::STANDARD,
        platform_instance_id: Some(instance_id),
        configuration: Some(PlatformConfiguration {
            dynamic_platform: Some(false),
            cached_keys: Some(false),
            smt_enabled: Some(true),
        }),
    };
    let extension_der = extension.to_der().map_err(|e| Error::Generate {
        what: "SGX extension",
        reason: e.to_string(),
    })?;
    let pck_key = ca::SimKey::generate()?;
    let (pck_pem, pck_serial) = ca.issue_pck(&pck_key, extension_der, now)?;
    if options.revoked {
        ca.revoke_pck(&pck_serial);
    }

    // The QE: attestation key certified by a QE REPORT signed with the PCK key.
    let att_key = ca::SimKey::generate()?;
    let att_point = att_key.public_point()?;
    let att_xy: [u8; 64] =
        att_point
            .get(1..)
            .and_then(|xy| xy.try_into().ok())
            .ok_or(Error::Generate {
                what: "attestation key",
                reason: "unexpected public key encoding".into(),
            })?;
    let qe_identity_values = EnclaveIdentity {
        mr_enclave: qe_mrenclave(),
        mr_signer: qe_mrsigner(),
        attributes: qe_attributes(),
        misc_select: QE_MISCSELECT,
        isv_prod_id: QE_ISVPRODID,
        isv_svn: qe_isvsvn,
        ..EnclaveIdentity::default()
    };
    let qe_report: ReportBody = qe_identity_values.report_body(
        cpu_svn,
        &QuoteSignatureData::expected_qe_report_data(&att_xy, &QE_AUTH_DATA),
    );
    let qe_report_sig = pck_key.sign(qe_report.as_bytes())?;
    let mut qe_report_file = qe_report.as_bytes().to_vec();
    qe_report_file.extend_from_slice(&qe_report_sig);

    // Collateral: CRLs, TCB info and QE identity signed over their exact JSON text.
    let SignedCollateral {
        collateral,
        tcb_info,
        tcb_info_text,
        tcb_info_signature: tcb_info_sig,
        qe_identity_text,
        qe_identity_signature: qe_identity_sig,
        next_update,
    } = SignedCollateral::issue(ca, &options.fmspc, now, false)?;

    let platform_status = crate::verify::platform_status_for(&tcb_info, &components, pce_svn);
    let qe_status = tcb::QE_TABLE
        .iter()
        .find(|(svn, _, _, _)| qe_isvsvn >= *svn)
        .map_or(TcbStatus::Revoked, |(_, status, _, _)| *status);
    let info = PlatformInfo {
        simulated: true,
        fmspc: hex::encode_upper(options.fmspc),
        pce_id: hex::encode_upper(pce_id),
        ppid: hex::encode(ppid),
        cpu_svn: hex::encode(cpu_svn.0),
        tcb_components: components,
        pce_svn,
        tcb_status: platform_status.unwrap_or(options.tcb_status),
        pck_serial: hex::encode(&pck_serial),
        pck_revoked: options.revoked,
        qe: QeInfo {
            mrenclave: qe_mrenclave().to_string(),
            mrsigner: qe_mrsigner().to_string(),
            isvprodid: QE_ISVPRODID,
            isvsvn: qe_isvsvn,
            status: qe_status,
            attributes: hex::encode(qe_attributes().flags.get().to_le_bytes())
                + &hex::encode(qe_attributes().xfrm.get().to_le_bytes()),
            miscselect: QE_MISCSELECT,
        },
        created_at: now,
        collateral_next_update: next_update,
    };

    // Write the platform directory: secrets first (0600), the public files after.
    files::write_private(&dir.join(CPU_SECRET_FILE), &secret)?;
    pck_key.save(&dir.join(PCK_KEY_FILE))?;
    att_key.save(&dir.join(ATTESTATION_KEY_FILE))?;
    files::write_public(&dir.join(ROOT_CA_FILE), ca.root_pem().as_bytes())?;
    files::write_public(&dir.join(PCK_CERT_FILE), pck_pem.as_bytes())?;
    files::write_public(
        &dir.join(PCK_CHAIN_FILE),
        format!("{pck_pem}{}{}", ca.pck_ca_pem(), ca.root_pem()).as_bytes(),
    )?;
    files::write_public(&dir.join(QE_REPORT_FILE), &qe_report_file)?;
    files::write_public(
        &dir.join(TCB_INFO_FILE),
        join_signed_json("tcbInfo", &tcb_info_text, &tcb_info_sig).as_bytes(),
    )?;
    files::write_public(
        &dir.join(QE_IDENTITY_FILE),
        join_signed_json("enclaveIdentity", &qe_identity_text, &qe_identity_sig).as_bytes(),
    )?;
    files::write_public(&dir.join(COLLATERAL_FILE), collateral.to_json().as_bytes())?;
    let info_json =
        serde_json::to_vec_pretty(&info).map_err(collateral_json_error("platform.json"))?;
    // platform.json last: its presence marks a complete platform directory.
    files::write_public(&dir.join(PLATFORM_FILE), &info_json)?;
    Ok(info)
}

/// A REPORT of `identity` for `target` on the platform in `dir` (convenience for tests and the
/// CLI: load the CPU, EREPORT).
pub fn ereport(
    dir: &Path,
    target: &ccm_sgx::TargetInfo,
    identity: &EnclaveIdentity,
    report_data: &ReportData,
) -> Result<ccm_sgx::Report, Error> {
    Ok(load_sim_cpu(dir)?.ereport(target, identity, report_data))
}
