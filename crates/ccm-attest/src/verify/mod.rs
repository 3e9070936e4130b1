//! DCAP quote verification in Intel's QVL order, with caches for the hot path.
//!
//! # Steps
//!
//! [`Verifier::verify`] runs these steps, each a small function named after it:
//!
//! 1. `check_header`: quote v3 or v4, SGX, ECDSA P-256 attestation key, Intel QE vendor,
//!    certification data type 5 (a PCK certificate chain).
//! 2. `Verifier::pck_chain`: the PCK leaf and PCK CA chain to a trusted root; certificate
//!    validity at `now` (`check_pck_validity`).
//! 3. `Verifier::collateral`: the collateral's CRLs, TCB info and QE identity and their signing
//!    chains verify under the *same* root as the PCK chain (a simulated root's TCB info can never
//!    judge a hardware platform). Collateral is authenticated before any of its content is used.
//! 4. `check_revocation`: the PCK CRL comes from the CA that issued the PCK certificate and does
//!    not list it; the root CRL does not list the PCK CA.
//! 5. `check_fmspc_pceid`: the PCK certificate's FMSPC and PCEID equal the TCB info's.
//! 6. `check_collateral_validity`: TCB info, QE identity, both CRLs and the signing certificates
//!    are inside their validity windows at `now`.
//! 7. `Verifier::qe_report`: the QE report is signed by the PCK key and its REPORTDATA binds
//!    SHA-256(attestation key ‖ QE authentication data).
//! 8. `check_qe_identity`: MRSIGNER, ISVPRODID, masked MISCSELECT and ATTRIBUTES match the QE
//!    identity; the QE's TCB status comes from its ISVSVN.
//! 9. `check_quote_signature`: the attestation key signed header ‖ ISV report body.
//! 10. `match_tcb_level` and [`TcbStatus::converge_with_qe`]: the first TCB level (highest
//!     first) whose 16 components and PCESVN the platform meets, converged with the QE status.
//!
//! # Caches
//!
//! What does not change between quotes of one platform is verified once and cached, keyed by a
//! SHA-256 of the exact bytes it was verified from: PCK chains (by the raw certification data),
//! collateral (by [`Collateral::digest`]), QE reports (by PCK key, QE report, its signature,
//! attestation key and auth data) and root-issued intermediates (PCK CAs and TCB signing
//! certificates, by their DER; shared by every platform, so the first quote of a new platform
//! under known collateral costs three ECDSA verifications: PCK certificate, QE report, quote). Cached entries hold verification *results*, never decisions
//! that depend on `now`: validity windows are re-checked on every call. A repeat quote from a known
//! platform therefore costs one ECDSA verification (the quote signature) plus hashing and
//! lookups. Caches are bounded and shared behind read-mostly locks, so one `Verifier` can serve
//! many tasks concurrently.

mod cache;

use std::sync::Arc;

use ccm_sgx::{
    AttestationKeyType, CertDataType, INTEL_QE_VENDOR_ID, Quote, ReportBody, SgxExtension, TeeType,
};
use serde_json::json;

use crate::collateral::{CaType, CheckedTcbLevel, TcbStatus};
use crate::collateral::{CheckedQeIdentity, CheckedTcbInfo, Collateral, QeIdentity, TcbInfo};
use crate::error::{
    CertRole, CollateralError, CollateralItem, CrlKind, QeIdentityField, VerifyError,
};
use crate::roots::TrustRoots;
use crate::x509::{Cert, Crl, P256Point, parse_pem_chain, verify_raw};
use cache::BoundedCache;

/// Certificates (by SHA-256 of their DER) verified as issued by trusted root number `usize`.
type IssuerCache = BoundedCache<[u8; 32], usize>;

/// How many entries each verifier cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Verified PCK certificate chains (one per platform).
    pub pck_chains: usize,
    /// Verified collateral sets (one per FMSPC and collateral refresh).
    pub collaterals: usize,
    /// Verified QE reports (one per platform and attestation key).
    pub qe_reports: usize,
    /// Intermediate certificates verified as issued by a trusted root (PCK CAs, TCB signing
    /// certificates: a handful, shared by every platform).
    pub issuers: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            pck_chains: 4096,
            collaterals: 256,
            qe_reports: 4096,
            issuers: 64,
        }
    }
}

impl CacheLimits {
    /// No caching at all: every verification does the full work.
    pub const NONE: CacheLimits = CacheLimits {
        pck_chains: 0,
        collaterals: 0,
        qe_reports: 0,
        issuers: 0,
    };
}

/// Number of entries currently in each cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// Cached PCK chains.
    pub pck_chains: usize,
    /// Cached collateral sets.
    pub collaterals: usize,
    /// Cached QE reports.
    pub qe_reports: usize,
    /// Cached root-issued intermediate certificates.
    pub issuers: usize,
}

/// A verified PCK certificate chain.
struct VerifiedPck {
    root: usize,
    leaf_key: P256Point,
    leaf_serial: Vec<u8>,
    ca_subject: Vec<u8>,
    ca_key: P256Point,
    ca_serial: Vec<u8>,
    ca_type: Option<CaType>,
    /// (role, notBefore, notAfter) of the leaf, the CA and the root.
    windows: Vec<(CertRole, u64, u64)>,
    extension: SgxExtension,
}

/// Verified collateral.
struct VerifiedCollateral {
    root: usize,
    tcb_info: CheckedTcbInfo,
    qe_identity: CheckedQeIdentity,
    root_crl: Crl,
    pck_crl: Crl,
    pck_crl_issuer_subject: Vec<u8>,
    pck_crl_issuer_key: P256Point,
    /// The PCK CA type, from the CRL issuer's common name (`None`: neither of Intel's names).
    pck_ca_type: Option<CaType>,
    /// (role, notBefore, notAfter) of the signing certificates.
    cert_windows: Vec<(CertRole, u64, u64)>,
    /// (item, issued, nextUpdate) of the dated items.
    item_windows: Vec<(CollateralItem, u64, Option<u64>)>,
}

/// What verified collateral says about itself ([`Verifier::check_collateral`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollateralSummary {
    /// The FMSPC its TCB info is for.
    pub fmspc: [u8; 6],
    /// The PCK CA whose CRL it holds (`None`: an issuer named neither Processor nor Platform CA).
    pub ca_type: Option<CaType>,
    /// The TCB info's evaluation data number (higher: after a later TCB recovery).
    pub tcb_evaluation_data_number: u32,
    /// The QE identity's evaluation data number.
    pub qe_identity_evaluation_data_number: u32,
    /// The TCB info's issue date (Unix seconds).
    pub tcb_info_issued: u64,
    /// The QE identity's issue date (Unix seconds).
    pub qe_identity_issued: u64,
    /// The PCK CRL's `thisUpdate` (Unix seconds).
    pub pck_crl_issued: u64,
    /// The root CA CRL's `thisUpdate` (Unix seconds).
    pub root_crl_issued: u64,
    /// Whether it rests on a simulated root.
    pub simulated: bool,
    /// SHA-256 of the root certificate it chains to.
    pub root_fingerprint: [u8; 32],
    /// The earliest `nextUpdate` or certificate expiry of its parts (Unix seconds): fetch
    /// again before then.
    pub valid_until: u64,
}

/// How one collateral set's age compares with another's for the same platform
/// ([`CollateralSummary::compare_age`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recency {
    /// No part is older and at least one is newer: it may replace the other.
    Newer,
    /// Every part is as old as the other's.
    Same,
    /// No part is newer and at least one is older.
    Older,
    /// Some parts are newer, some older (pieced together from two fetches): it replaces nothing.
    Mixed,
}

/// The four parts of a collateral set, each ordered on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollateralPart {
    /// The TCB info, ordered by (evaluation data number, issue date).
    TcbInfo,
    /// The QE identity, ordered by (evaluation data number, issue date).
    QeIdentity,
    /// The PCK CRL, ordered by `thisUpdate`.
    PckCrl,
    /// The root CA CRL, ordered by `thisUpdate`.
    RootCrl,
}

impl CollateralPart {
    /// Every part.
    pub const ALL: [CollateralPart; 4] = [
        CollateralPart::TcbInfo,
        CollateralPart::QeIdentity,
        CollateralPart::PckCrl,
        CollateralPart::RootCrl,
    ];
}

impl CollateralSummary {
    /// The age of one part, compared as a tuple (larger: newer).
    pub fn part_age(&self, part: CollateralPart) -> (u64, u64) {
        match part {
            CollateralPart::TcbInfo => (
                u64::from(self.tcb_evaluation_data_number),
                self.tcb_info_issued,
            ),
            CollateralPart::QeIdentity => (
                u64::from(self.qe_identity_evaluation_data_number),
                self.qe_identity_issued,
            ),
            CollateralPart::PckCrl => (self.pck_crl_issued, 0),
            CollateralPart::RootCrl => (self.root_crl_issued, 0),
        }
    }

    /// How this set compares with `other`, part by part. A set may replace another only when
    /// it is [`Recency::Newer`]: no part goes back in time, so nobody can bring back collateral
    /// from before a TCB recovery or a revocation by offering it again.
    pub fn compare_age(&self, other: &CollateralSummary) -> Recency {
        let (mut newer, mut older) = (false, false);
        for part in CollateralPart::ALL {
            let (mine, theirs) = (self.part_age(part), other.part_age(part));
            newer |= mine > theirs;
            older |= mine < theirs;
        }
        match (newer, older) {
            (true, false) => Recency::Newer,
            (false, false) => Recency::Same,
            (false, true) => Recency::Older,
            (true, true) => Recency::Mixed,
        }
    }

    /// Whether `other` is collateral for the same platform: FMSPC, PCK CA type and root.
    pub fn same_platform(&self, other: &CollateralSummary) -> bool {
        self.fmspc == other.fmspc
            && self.ca_type == other.ca_type
            && self.root_fingerprint == other.root_fingerprint
    }
}

/// The newest of each part of two verified sets for the same platform: `current` with every
/// part that `offered` has newer. `None` when `offered` has no newer part or is for another
/// platform. Each part is signed on its own under the root, so the result is genuine when both
/// were; verify it again ([`Verifier::check_collateral`]) for its summary before use.
pub fn newest_parts(
    current: (&Collateral, &CollateralSummary),
    offered: (&Collateral, &CollateralSummary),
) -> Option<Collateral> {
    if !current.1.same_platform(offered.1) {
        return None;
    }
    let mut parts = current.0.parts().clone();
    let theirs = offered.0.parts();
    let mut changed = false;
    for part in CollateralPart::ALL {
        if offered.1.part_age(part) <= current.1.part_age(part) {
            continue;
        }
        changed = true;
        match part {
            CollateralPart::TcbInfo => {
                parts.tcb_info_issuer_chain = theirs.tcb_info_issuer_chain.clone();
                parts.tcb_info = theirs.tcb_info.clone();
                parts.tcb_info_signature = theirs.tcb_info_signature.clone();
            }
            CollateralPart::QeIdentity => {
                parts.qe_identity_issuer_chain = theirs.qe_identity_issuer_chain.clone();
                parts.qe_identity = theirs.qe_identity.clone();
                parts.qe_identity_signature = theirs.qe_identity_signature.clone();
            }
            CollateralPart::PckCrl => {
                parts.pck_crl_issuer_chain = theirs.pck_crl_issuer_chain.clone();
                parts.pck_crl = theirs.pck_crl.clone();
            }
            CollateralPart::RootCrl => parts.root_ca_crl = theirs.root_ca_crl.clone(),
        }
    }
    if !changed {
        return None;
    }
    Collateral::new(parts).ok()
}

/// The outcome of a successful verification: who the enclave is, and how current its platform is.
///
/// Any TCB status, including `Revoked`, is a *successful* verification: the quote is genuine and
/// the collateral applies. Whether the status is acceptable is a [`Policy`](crate::Policy)
/// decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// The converged TCB status (platform and QE).
    pub status: TcbStatus,
    /// Advisory ids of the platform TCB level, then those of the QE level not already listed.
    pub advisory_ids: Vec<String>,
    /// The platform's TCB status (from the TCB info).
    pub platform_status: TcbStatus,
    /// Advisory ids of the platform TCB level.
    pub platform_advisory_ids: Vec<String>,
    /// The QE's TCB status (from the QE identity).
    pub qe_status: TcbStatus,
    /// Advisory ids of the QE TCB level.
    pub qe_advisory_ids: Vec<String>,
    /// `tcbDate` of the matched platform TCB level.
    pub tcb_date: String,
    /// The ISV enclave's REPORT body.
    pub report: ReportBody,
    /// The quote version (3 or 4).
    pub quote_version: u16,
    /// The platform's FMSPC.
    pub fmspc: [u8; 6],
    /// The PCE id.
    pub pce_id: [u8; 2],
    /// The platform's PPID.
    pub ppid: [u8; 16],
    /// Whether the quote rests on a simulated root.
    pub simulated: bool,
    /// SHA-256 of the trusted root certificate the quote chains to.
    pub root_fingerprint: [u8; 32],
    /// TCB evaluation data number of the TCB info.
    pub tcb_evaluation_data_number: u32,
    /// The earliest time any part of the collateral or certificate chain expires (Unix seconds):
    /// re-verify with fresh collateral before then.
    pub valid_until: u64,
}

impl VerifiedQuote {
    /// Whether the enclave is a debug enclave (ATTRIBUTES.DEBUG).
    pub fn debug(&self) -> bool {
        self.report.attributes.is_debug()
    }

    /// The enclave's ISVSVN.
    pub fn isvsvn(&self) -> u16 {
        self.report.isv_svn.get()
    }

    /// The enclave's ISVPRODID.
    pub fn isvprodid(&self) -> u16 {
        self.report.isv_prod_id.get()
    }

    /// The result as JSON (what `ccm quote verify` prints).
    pub fn to_json(&self) -> serde_json::Value {
        let r = &self.report;
        json!({
            "status": self.status,
            "advisory_ids": self.advisory_ids,
            "platform_status": self.platform_status,
            "platform_advisory_ids": self.platform_advisory_ids,
            "qe_status": self.qe_status,
            "qe_advisory_ids": self.qe_advisory_ids,
            "tcb_date": self.tcb_date,
            "mrenclave": r.mr_enclave.to_string(),
            "mrsigner": r.mr_signer.to_string(),
            "isvprodid": self.isvprodid(),
            "isvsvn": self.isvsvn(),
            "debug": self.debug(),
            "attributes": hex::encode(zerocopy_bytes(&r.attributes)),
            "miscselect": r.misc_select.get(),
            "cpusvn": r.cpu_svn.to_string(),
            "report_data": r.report_data.to_string(),
            "quote_version": self.quote_version,
            "fmspc": hex::encode(self.fmspc),
            "pce_id": hex::encode(self.pce_id),
            "ppid": hex::encode(self.ppid),
            "simulated": self.simulated,
            "root_fingerprint": hex::encode(self.root_fingerprint),
            "tcb_evaluation_data_number": self.tcb_evaluation_data_number,
            "valid_until": self.valid_until,
        })
    }
}

fn zerocopy_bytes(attributes: &ccm_sgx::Attributes) -> [u8; 16] {
    let mut out = [0u8; 16];
    let (flags, xfrm) = out.split_at_mut(8);
    flags.copy_from_slice(&attributes.flags.get().to_le_bytes());
    xfrm.copy_from_slice(&attributes.xfrm.get().to_le_bytes());
    out
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A DCAP quote verifier: trust roots plus caches. Cheap to share (`Arc<Verifier>`); every method
/// takes `&self`.
pub struct Verifier {
    roots: TrustRoots,
    pck_chains: BoundedCache<[u8; 32], VerifiedPck>,
    collaterals: BoundedCache<[u8; 32], VerifiedCollateral>,
    qe_reports: BoundedCache<[u8; 32], ()>,
    issuers: BoundedCache<[u8; 32], usize>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("roots", &self.roots)
            .field("caches", &self.cache_stats())
            .finish()
    }
}

impl Verifier {
    /// A verifier trusting `roots`, with default cache sizes.
    pub fn new(roots: TrustRoots) -> Verifier {
        Verifier::with_cache_limits(roots, CacheLimits::default())
    }

    /// A verifier trusting `roots` with the given cache sizes.
    pub fn with_cache_limits(roots: TrustRoots, limits: CacheLimits) -> Verifier {
        Verifier {
            roots,
            pck_chains: BoundedCache::new(limits.pck_chains),
            collaterals: BoundedCache::new(limits.collaterals),
            qe_reports: BoundedCache::new(limits.qe_reports),
            issuers: BoundedCache::new(limits.issuers),
        }
    }

    /// The trusted roots.
    pub fn roots(&self) -> &TrustRoots {
        &self.roots
    }

    /// Entries currently cached.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            pck_chains: self.pck_chains.len(),
            collaterals: self.collaterals.len(),
            qe_reports: self.qe_reports.len(),
            issuers: self.issuers.len(),
        }
    }

    /// Empties every cache.
    pub fn clear_caches(&self) {
        self.pck_chains.clear();
        self.collaterals.clear();
        self.qe_reports.clear();
        self.issuers.clear();
    }

    /// Verifies `quote` with `collateral` at time `now` (Unix seconds).
    ///
    /// Succeeds whatever the TCB status (apply a [`Policy`](crate::Policy) to decide); fails with
    /// the specific reason when the quote or the collateral does not verify.
    pub fn verify(
        &self,
        quote: &[u8],
        collateral: &Collateral,
        now: u64,
    ) -> Result<VerifiedQuote, VerifyError> {
        let parsed = Quote::parse(quote).map_err(VerifyError::Quote)?;
        let body = check_header(&parsed)?;
        let sig = &parsed.signature_data;

        let pck = self.pck_chain(&sig.certification_data.data)?;
        check_pck_validity(&pck, now)?;

        let coll = self.collateral(collateral)?;
        if coll.root != pck.root {
            return Err(VerifyError::CollateralRootMismatch);
        }
        check_revocation(&pck, &coll)?;
        check_fmspc_pceid(&pck.extension, &coll.tcb_info)?;
        check_collateral_validity(&coll, now)?;

        self.qe_report(&pck, sig)?;
        let (qe_status, qe_advisories) = check_qe_identity(&sig.qe_report, &coll.qe_identity)?;

        let signed = quote
            .get(..parsed.signed_len())
            .ok_or(VerifyError::QuoteSignature)?;
        check_quote_signature(signed, &sig.attestation_key, &sig.signature)?;

        let level = match_tcb_level(
            &pck.extension.tcb.comp_svn,
            pck.extension.tcb.pce_svn,
            &coll.tcb_info,
        )?;
        let status = level.status.converge_with_qe(qe_status);
        let mut advisory_ids = level.advisory_ids.clone();
        for id in qe_advisories {
            if !advisory_ids.contains(id) {
                advisory_ids.push(id.clone());
            }
        }

        let root = self
            .roots
            .get(pck.root)
            .ok_or(VerifyError::CollateralRootMismatch)?;
        Ok(VerifiedQuote {
            status,
            advisory_ids,
            platform_status: level.status,
            platform_advisory_ids: level.advisory_ids.clone(),
            qe_status,
            qe_advisory_ids: qe_advisories.to_vec(),
            tcb_date: level.tcb_date.clone(),
            report: *body,
            quote_version: parsed.version(),
            fmspc: pck.extension.fmspc,
            pce_id: pck.extension.pce_id,
            ppid: pck.extension.ppid,
            simulated: root.is_simulated(),
            root_fingerprint: *root.fingerprint(),
            tcb_evaluation_data_number: coll.tcb_info.evaluation_data_number,
            valid_until: valid_until(&pck, &coll),
        })
    }

    /// Verifies `collateral` alone at time `now`: the CRLs', TCB info's and QE identity's
    /// signatures and signing chains up to a trusted root, and that every part is in its
    /// validity window. What a fetched or uploaded collateral set must pass before it is stored.
    pub fn check_collateral(
        &self,
        collateral: &Collateral,
        now: u64,
    ) -> Result<CollateralSummary, VerifyError> {
        let coll = self.collateral(collateral)?;
        check_collateral_validity(&coll, now)?;
        let root = self
            .roots
            .get(coll.root)
            .ok_or(VerifyError::CollateralRootMismatch)?;
        Ok(CollateralSummary {
            fmspc: coll.tcb_info.fmspc,
            ca_type: coll.pck_ca_type,
            tcb_evaluation_data_number: coll.tcb_info.evaluation_data_number,
            qe_identity_evaluation_data_number: coll.qe_identity.evaluation_data_number,
            tcb_info_issued: coll.tcb_info.issue_date,
            qe_identity_issued: coll.qe_identity.issue_date,
            pck_crl_issued: coll.pck_crl.this_update,
            root_crl_issued: coll.root_crl.this_update,
            simulated: root.is_simulated(),
            root_fingerprint: *root.fingerprint(),
            valid_until: collateral_valid_until(&coll),
        })
    }

    /// The FMSPC of a quote's PCK certificate, to pick the collateral to verify it with; `None`
    /// when the quote does not parse or carries no PCK chain with an SGX extension. Nothing is
    /// verified here: when the PCK chain was verified before, the FMSPC comes from that result
    /// (the same leaf certificate, so the same value), otherwise from parsing the leaf.
    pub fn quote_fmspc(&self, quote: &[u8]) -> Option<[u8; 6]> {
        self.quote_platform(quote).map(|(fmspc, _)| fmspc)
    }

    /// The FMSPC and PCK CA type of a quote's PCK certificate: what its collateral is for.
    /// `None` as for [`Verifier::quote_fmspc`], or when the PCK certificate's issuer is neither
    /// a Processor nor a Platform CA. Nothing is verified here either.
    pub fn quote_collateral_key(&self, quote: &[u8]) -> Option<([u8; 6], CaType)> {
        match self.quote_platform(quote)? {
            (fmspc, Some(ca)) => Some((fmspc, ca)),
            (_, None) => None,
        }
    }

    /// The FMSPC and PCK CA type (`None`: neither Processor nor Platform CA) of a quote whose
    /// PCK certificate chain verifies under a trusted root and is valid at `now`: which
    /// collateral to fetch for it. Only the chain is checked (and cached, as by
    /// [`Verifier::verify`]), so a made-up certificate cannot make anyone fetch collateral for a
    /// made-up platform.
    pub fn verified_collateral_key(
        &self,
        quote: &[u8],
        now: u64,
    ) -> Result<([u8; 6], Option<CaType>), VerifyError> {
        let parsed = Quote::parse(quote).map_err(VerifyError::Quote)?;
        check_header(&parsed)?;
        let pck = self.pck_chain(&parsed.signature_data.certification_data.data)?;
        check_pck_validity(&pck, now)?;
        Ok((pck.extension.fmspc, pck.ca_type))
    }

    fn quote_platform(&self, quote: &[u8]) -> Option<([u8; 6], Option<CaType>)> {
        let parsed = Quote::parse(quote).ok()?;
        let cert_data = &parsed.signature_data.certification_data;
        if cert_data.cert_type != CertDataType::PCK_CERT_CHAIN {
            return None;
        }
        if let Some(hit) = self.pck_chains.get(&sha256(&[&cert_data.data])) {
            return Some((hit.extension.fmspc, hit.ca_type));
        }
        let chain = cert_data.pck_cert_chain().ok()?;
        let leaf = chain.first()?;
        let fmspc = SgxExtension::from_certificate_der(leaf).ok()?.fmspc;
        let issuer = Cert::from_der(leaf).ok()?.issuer_cn;
        Some((fmspc, CaType::from_issuer_cn(&issuer)))
    }

    /// Step 2: the PCK chain, verified once per distinct certification data.
    fn pck_chain(&self, cert_data: &[u8]) -> Result<Arc<VerifiedPck>, VerifyError> {
        let key = sha256(&[cert_data]);
        if let Some(hit) = self.pck_chains.get(&key) {
            return Ok(hit);
        }
        let verified = verify_pck_chain(&self.roots, &self.issuers, cert_data)?;
        Ok(self.pck_chains.insert(key, verified))
    }

    /// Step 3: the collateral, verified once per distinct collateral.
    fn collateral(&self, collateral: &Collateral) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        if let Some(hit) = self.collaterals.get(collateral.digest()) {
            return Ok(hit);
        }
        let verified = verify_collateral(&self.roots, &self.issuers, collateral)?;
        Ok(self.collaterals.insert(*collateral.digest(), verified))
    }

    /// Step 7: the QE report signature and binding, verified once per distinct QE report.
    fn qe_report(
        &self,
        pck: &VerifiedPck,
        sig: &ccm_sgx::QuoteSignatureData,
    ) -> Result<(), VerifyError> {
        let qe_report = sig.qe_report.as_bytes();
        let key = sha256(&[
            &pck.leaf_key,
            qe_report,
            &sig.qe_report_signature,
            &sig.attestation_key,
            &(sig.qe_auth_data.len() as u64).to_le_bytes(),
            &sig.qe_auth_data,
        ]);
        if self.qe_reports.get(&key).is_some() {
            return Ok(());
        }
        verify_qe_report(&pck.leaf_key, sig)?;
        self.qe_reports.insert(key, ());
        Ok(())
    }
}

/// Step 1: the header and certification data type; returns the ISV report body.
pub(crate) fn check_header(quote: &Quote) -> Result<&ReportBody, VerifyError> {
    let version = quote.version();
    if version != 3 && version != 4 {
        return Err(VerifyError::UnsupportedQuoteVersion(version));
    }
    if quote.tee_type() != TeeType::SGX {
        return Err(VerifyError::UnsupportedTeeType(quote.tee_type().0));
    }
    let key_type = quote.header.attestation_key_type();
    if key_type != AttestationKeyType::ECDSA_P256 {
        return Err(VerifyError::UnsupportedAttestationKeyType(key_type.0));
    }
    if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID {
        return Err(VerifyError::UnknownQeVendor(hex::encode(
            quote.header.qe_vendor_id,
        )));
    }
    let cert_type = quote.signature_data.certification_data.cert_type;
    if cert_type != CertDataType::PCK_CERT_CHAIN {
        return Err(VerifyError::UnsupportedCertificationDataType(cert_type.0));
    }
    quote
        .sgx_body()
        .ok_or(VerifyError::UnsupportedTeeType(quote.tee_type().0))
}

fn cert(role: CertRole) -> impl Fn(crate::error::CertError) -> VerifyError {
    move |source| VerifyError::Certificate { role, source }
}

/// Checks that the chain's optional trailing root certificate is the trusted root itself.
fn check_carried_root(
    carried: Option<&Cert>,
    trusted: &Cert,
    role: CertRole,
) -> Result<(), VerifyError> {
    match carried {
        Some(root) if root.der != trusted.der => Err(VerifyError::RootMismatch { role }),
        _ => Ok(()),
    }
}

/// Step 2 (uncached): PCK leaf ← PCK CA ← trusted root, and the leaf's SGX extension.
fn verify_pck_chain(
    roots: &TrustRoots,
    issuers: &IssuerCache,
    cert_data: &[u8],
) -> Result<VerifiedPck, VerifyError> {
    let certs = parse_pem_chain(cert_data).map_err(cert(CertRole::PckLeaf))?;
    let (leaf, ca, carried_root) = match certs.as_slice() {
        [leaf, ca] => (leaf, ca, None),
        [leaf, ca, root] => (leaf, ca, Some(root)),
        other => {
            return Err(VerifyError::ChainLength {
                role: CertRole::PckLeaf,
                len: other.len(),
                expected: "2 or 3: leaf, PCK CA, optional root",
            });
        }
    };
    if leaf.is_ca {
        return Err(VerifyError::UnexpectedCa {
            role: CertRole::PckLeaf,
        });
    }
    if !ca.can_sign_certs() {
        return Err(VerifyError::NotCa {
            role: CertRole::PckCa,
        });
    }
    if !leaf.is_signed_by(ca) {
        return Err(VerifyError::CertificateSignature {
            role: CertRole::PckLeaf,
        });
    }
    // No trusted root signed the CA: either an unknown root, or one with the same name as a
    // trusted root (every simulated root has the same name) or a tampered CA certificate.
    let ca_key = sha256(&[&ca.der]);
    let cached_root = issuers
        .get(&ca_key)
        .and_then(|index| roots.get(*index).map(|root| (*index, root)));
    let (root_index, root) = match cached_root {
        Some(hit) => hit,
        None => {
            let (index, root) =
                roots
                    .find_issuer(ca)
                    .ok_or_else(|| VerifyError::UntrustedRoot {
                        role: CertRole::PckCa,
                        issuer: ca.issuer_cn.clone(),
                    })?;
            issuers.insert(ca_key, index);
            (index, root)
        }
    };
    check_carried_root(carried_root, &root.cert, CertRole::PckLeaf)?;
    let extension_der = leaf
        .sgx_extension
        .as_deref()
        .ok_or(VerifyError::PckExtension(
            ccm_sgx::PckExtensionError::NotPresent,
        ))?;
    let extension = SgxExtension::from_der(extension_der).map_err(VerifyError::PckExtension)?;
    Ok(VerifiedPck {
        root: root_index,
        leaf_key: leaf.public_key,
        leaf_serial: leaf.serial.clone(),
        ca_subject: ca.subject.clone(),
        ca_key: ca.public_key,
        ca_serial: ca.serial.clone(),
        ca_type: CaType::from_issuer_cn(&ca.subject_cn),
        windows: vec![
            (CertRole::PckLeaf, leaf.not_before, leaf.not_after),
            (CertRole::PckCa, ca.not_before, ca.not_after),
            (CertRole::Root, root.cert.not_before, root.cert.not_after),
        ],
        extension,
    })
}

fn check_cert_window(
    role: CertRole,
    not_before: u64,
    not_after: u64,
    now: u64,
) -> Result<(), VerifyError> {
    if now < not_before {
        return Err(VerifyError::CertificateNotYetValid {
            role,
            not_before,
            now,
        });
    }
    if now > not_after {
        return Err(VerifyError::CertificateExpired {
            role,
            not_after,
            now,
        });
    }
    Ok(())
}

/// Step 2 (per call): the PCK chain's certificates are valid at `now`.
fn check_pck_validity(pck: &VerifiedPck, now: u64) -> Result<(), VerifyError> {
    for (role, not_before, not_after) in &pck.windows {
        check_cert_window(*role, *not_before, *not_after, now)?;
    }
    Ok(())
}

/// Verifies a collateral signing chain (`signer`, optional root) under `root`; returns the signer.
fn verify_signer_chain(
    pem_chain: &str,
    role: CertRole,
    (root_index, root): (usize, &Cert),
    root_crl: &Crl,
    issuers: &IssuerCache,
) -> Result<Cert, VerifyError> {
    let certs = parse_pem_chain(pem_chain.as_bytes()).map_err(cert(role))?;
    let mut certs = certs.into_iter();
    let (signer, carried_root) = match (certs.next(), certs.next(), certs.next()) {
        (Some(signer), carried, None) => (signer, carried),
        _ => {
            return Err(VerifyError::ChainLength {
                role,
                len: parse_pem_chain(pem_chain.as_bytes()).map_or(0, |c| c.len()),
                expected: "1 or 2: signer, optional root",
            });
        }
    };
    let signer_key = sha256(&[&signer.der]);
    if issuers.get(&signer_key).as_deref() != Some(&root_index) {
        if !signer.is_signed_by(root) {
            return Err(VerifyError::UntrustedRoot {
                role,
                issuer: signer.issuer_cn.clone(),
            });
        }
        issuers.insert(signer_key, root_index);
    }
    check_carried_root(carried_root.as_ref(), root, role)?;
    if root_crl.revokes(&signer.serial) {
        return Err(VerifyError::Revoked {
            role,
            serial: hex::encode(&signer.serial),
        });
    }
    Ok(signer)
}

fn check_signature_len(field: &'static str, sig: &[u8]) -> Result<(), VerifyError> {
    if sig.len() != 64 {
        return Err(VerifyError::Collateral(CollateralError::SignatureLength {
            field,
            len: sig.len(),
        }));
    }
    Ok(())
}

/// Step 3 (uncached): CRLs, signing chains, TCB info and QE identity signatures, parsed content.
fn verify_collateral(
    roots: &TrustRoots,
    issuers: &IssuerCache,
    collateral: &Collateral,
) -> Result<VerifiedCollateral, VerifyError> {
    let parts = collateral.parts();

    // The root CRL names the root everything else must chain to.
    let root_crl = Crl::from_der(&parts.root_ca_crl).map_err(|source| VerifyError::Crl {
        crl: CrlKind::RootCa,
        source,
    })?;
    let (root_index, root) = roots
        .by_subject(&root_crl.issuer)
        .find(|(_, root)| root_crl.is_signed_by(&root.cert))
        .ok_or(VerifyError::CrlSignature {
            crl: CrlKind::RootCa,
        })?;
    let root = (root_index, &root.cert);

    // TCB info: signer chain, signature over the exact text, then content.
    let tcb_signer = verify_signer_chain(
        &parts.tcb_info_issuer_chain,
        CertRole::TcbSigner,
        root,
        &root_crl,
        issuers,
    )?;
    check_signature_len("tcb_info_signature", &parts.tcb_info_signature)?;
    if !verify_raw(
        &tcb_signer.public_key,
        parts.tcb_info.as_bytes(),
        &parts.tcb_info_signature,
    ) {
        return Err(VerifyError::TcbInfoSignature);
    }
    let tcb_info = TcbInfo::from_json(&parts.tcb_info)?.check()?;

    // QE identity: usually signed by the same certificate as the TCB info.
    let qe_signer = if parts.qe_identity_issuer_chain == parts.tcb_info_issuer_chain {
        tcb_signer.clone()
    } else {
        verify_signer_chain(
            &parts.qe_identity_issuer_chain,
            CertRole::QeIdentitySigner,
            root,
            &root_crl,
            issuers,
        )?
    };
    check_signature_len("qe_identity_signature", &parts.qe_identity_signature)?;
    if !verify_raw(
        &qe_signer.public_key,
        parts.qe_identity.as_bytes(),
        &parts.qe_identity_signature,
    ) {
        return Err(VerifyError::QeIdentitySignature);
    }
    let qe_identity = QeIdentity::from_json(&parts.qe_identity)?.check()?;

    // PCK CRL: issued by a PCK CA that the same root issued and has not revoked.
    let pck_ca = verify_signer_chain(
        &parts.pck_crl_issuer_chain,
        CertRole::PckCrlIssuer,
        root,
        &root_crl,
        issuers,
    )?;
    if !pck_ca.can_sign_crls() {
        return Err(VerifyError::NotCa {
            role: CertRole::PckCrlIssuer,
        });
    }
    let pck_crl = Crl::from_der(&parts.pck_crl).map_err(|source| VerifyError::Crl {
        crl: CrlKind::PckCa,
        source,
    })?;
    if !pck_crl.is_signed_by(&pck_ca) {
        return Err(VerifyError::CrlSignature {
            crl: CrlKind::PckCa,
        });
    }

    let item_windows = vec![
        (
            CollateralItem::TcbInfo,
            tcb_info.issue_date,
            Some(tcb_info.next_update),
        ),
        (
            CollateralItem::QeIdentity,
            qe_identity.issue_date,
            Some(qe_identity.next_update),
        ),
        (
            CollateralItem::Crl(CrlKind::RootCa),
            root_crl.this_update,
            root_crl.next_update,
        ),
        (
            CollateralItem::Crl(CrlKind::PckCa),
            pck_crl.this_update,
            pck_crl.next_update,
        ),
    ];
    let cert_windows = vec![
        (
            CertRole::TcbSigner,
            tcb_signer.not_before,
            tcb_signer.not_after,
        ),
        (
            CertRole::QeIdentitySigner,
            qe_signer.not_before,
            qe_signer.not_after,
        ),
        (CertRole::PckCrlIssuer, pck_ca.not_before, pck_ca.not_after),
    ];
    Ok(VerifiedCollateral {
        root: root_index,
        tcb_info,
        qe_identity,
        root_crl,
        pck_crl,
        pck_ca_type: CaType::from_issuer_cn(&pck_ca.subject_cn),
        pck_crl_issuer_subject: pck_ca.subject,
        pck_crl_issuer_key: pck_ca.public_key,
        cert_windows,
        item_windows,
    })
}

/// Step 4: revocation of the PCK certificate and the PCK CA.
fn check_revocation(pck: &VerifiedPck, coll: &VerifiedCollateral) -> Result<(), VerifyError> {
    if coll.pck_crl_issuer_subject != pck.ca_subject || coll.pck_crl_issuer_key != pck.ca_key {
        return Err(VerifyError::PckCrlIssuerMismatch);
    }
    if coll.pck_crl.revokes(&pck.leaf_serial) {
        return Err(VerifyError::Revoked {
            role: CertRole::PckLeaf,
            serial: hex::encode(&pck.leaf_serial),
        });
    }
    if coll.root_crl.revokes(&pck.ca_serial) {
        return Err(VerifyError::Revoked {
            role: CertRole::PckCa,
            serial: hex::encode(&pck.ca_serial),
        });
    }
    Ok(())
}

/// Step 5: the TCB info applies to this platform.
fn check_fmspc_pceid(ext: &SgxExtension, tcb_info: &CheckedTcbInfo) -> Result<(), VerifyError> {
    if ext.fmspc != tcb_info.fmspc {
        return Err(VerifyError::FmspcMismatch {
            pck: hex::encode(ext.fmspc),
            tcb_info: hex::encode(tcb_info.fmspc),
        });
    }
    if ext.pce_id != tcb_info.pce_id {
        return Err(VerifyError::PceIdMismatch {
            pck: hex::encode(ext.pce_id),
            tcb_info: hex::encode(tcb_info.pce_id),
        });
    }
    Ok(())
}

/// Step 6: every dated part of the collateral is current at `now`.
fn check_collateral_validity(coll: &VerifiedCollateral, now: u64) -> Result<(), VerifyError> {
    for (item, issued, next_update) in &coll.item_windows {
        if now < *issued {
            return Err(VerifyError::CollateralNotYetValid {
                item: *item,
                issued: *issued,
                now,
            });
        }
        if let Some(next_update) = next_update
            && now > *next_update
        {
            return Err(VerifyError::CollateralExpired {
                item: *item,
                next_update: *next_update,
                now,
            });
        }
    }
    for (role, not_before, not_after) in &coll.cert_windows {
        check_cert_window(*role, *not_before, *not_after, now)?;
    }
    Ok(())
}

/// Step 7 (uncached): QE report signed by the PCK key, REPORTDATA binds the attestation key.
fn verify_qe_report(
    pck_key: &P256Point,
    sig: &ccm_sgx::QuoteSignatureData,
) -> Result<(), VerifyError> {
    if !verify_raw(pck_key, sig.qe_report.as_bytes(), &sig.qe_report_signature) {
        return Err(VerifyError::QeReportSignature);
    }
    if !sig.qe_report_data_matches() {
        return Err(VerifyError::QeReportDataMismatch);
    }
    Ok(())
}

fn masked_eq(actual: &[u8], expected: &[u8], mask: &[u8]) -> bool {
    actual.len() == expected.len()
        && expected.len() == mask.len()
        && actual
            .iter()
            .zip(expected)
            .zip(mask)
            .all(|((a, e), m)| a & m == e & m)
}

/// Step 8: the QE report matches the QE identity; returns the QE's TCB status and advisories.
///
/// As in Intel's QVL, a QE whose ISVSVN is below every level of the identity is `Revoked`.
fn check_qe_identity<'a>(
    qe_report: &ReportBody,
    identity: &'a CheckedQeIdentity,
) -> Result<(TcbStatus, &'a [String]), VerifyError> {
    if qe_report.mr_signer.0 != identity.mrsigner {
        return Err(VerifyError::QeIdentityMismatch(QeIdentityField::MrSigner));
    }
    if qe_report.isv_prod_id.get() != identity.isvprodid {
        return Err(VerifyError::QeIdentityMismatch(QeIdentityField::IsvProdId));
    }
    if !masked_eq(
        &qe_report.misc_select.get().to_le_bytes(),
        &identity.miscselect,
        &identity.miscselect_mask,
    ) {
        return Err(VerifyError::QeIdentityMismatch(QeIdentityField::MiscSelect));
    }
    if !masked_eq(
        &zerocopy_bytes(&qe_report.attributes),
        &identity.attributes,
        &identity.attributes_mask,
    ) {
        return Err(VerifyError::QeIdentityMismatch(QeIdentityField::Attributes));
    }
    let isvsvn = qe_report.isv_svn.get();
    Ok(identity
        .levels
        .iter()
        .find(|(level_svn, _, _)| isvsvn >= *level_svn)
        .map_or((TcbStatus::Revoked, &[][..]), |(_, status, advisories)| {
            (*status, advisories.as_slice())
        }))
}

/// Step 9: the attestation key signed header ‖ ISV report body.
fn check_quote_signature(
    signed: &[u8],
    attestation_key: &[u8; 64],
    signature: &[u8; 64],
) -> Result<(), VerifyError> {
    let mut point = [0x04u8; 65];
    if let Some(xy) = point.get_mut(1..) {
        xy.copy_from_slice(attestation_key);
    }
    if verify_raw(&point, signed, signature) {
        Ok(())
    } else {
        Err(VerifyError::QuoteSignature)
    }
}

/// Step 10: the first TCB level (highest first) whose 16 components and PCESVN the platform's
/// (from its PCK certificate) meet.
fn match_tcb_level<'a>(
    components: &[u8; 16],
    pce_svn: u16,
    tcb_info: &'a CheckedTcbInfo,
) -> Result<&'a CheckedTcbLevel, VerifyError> {
    tcb_info
        .levels
        .iter()
        .find(|level| {
            level
                .components
                .iter()
                .zip(components)
                .all(|(need, have)| have >= need)
                && pce_svn >= level.pcesvn
        })
        .ok_or(VerifyError::NoMatchingTcbLevel)
}

/// The platform TCB status `tcb_info` assigns to these SVNs (`None` when the TCB info is invalid
/// or no level matches). Used by the simulator to record what it created.
#[cfg(feature = "sim")]
pub(crate) fn platform_status_for(
    tcb_info: &TcbInfo,
    components: &[u8; 16],
    pce_svn: u16,
) -> Option<TcbStatus> {
    let checked = tcb_info.check().ok()?;
    match_tcb_level(components, pce_svn, &checked)
        .ok()
        .map(|level| level.status)
}

/// The earliest expiry of anything the verification relied on.
/// The earliest expiry of the collateral's dated items and signing certificates.
fn collateral_valid_until(coll: &VerifiedCollateral) -> u64 {
    let certs = coll.cert_windows.iter().map(|(_, _, not_after)| *not_after);
    let items = coll
        .item_windows
        .iter()
        .filter_map(|(_, _, next_update)| *next_update);
    certs.chain(items).min().unwrap_or(0)
}

fn valid_until(pck: &VerifiedPck, coll: &VerifiedCollateral) -> u64 {
    let certs = pck
        .windows
        .iter()
        .chain(&coll.cert_windows)
        .map(|(_, _, not_after)| *not_after);
    let items = coll
        .item_windows
        .iter()
        .filter_map(|(_, _, next_update)| *next_update);
    certs.chain(items).min().unwrap_or(0)
}
