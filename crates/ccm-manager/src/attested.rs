//! Attestation services of the manager: the DCAP verifier with its trust roots, platform
//! collateral, the zone CAs in memory, the certificate-issuance decision (whose records the
//! store's issuance writer group-commits), and the background sweeps (pending requests, stale
//! nodes).
//!
//! # Collateral
//!
//! A node uploads its platform's `QuoteCollateralV3` at enrollment. That is safe: the verifier
//! authenticates every part (CRLs, TCB info, QE identity) under the *same* trusted root as the
//! quote's PCK chain before using any of it, and the enrollment quote is verified with it. Verified
//! collateral is kept per FMSPC (in the database, so replicas and restarts share it, and in
//! memory) and used for the quotes of applications on platforms of that family. A newer upload
//! (higher TCB evaluation data number) replaces it. Hardware deployments may later add a PCCS
//! URL; the verifier does not care where collateral comes from.
//!
//! # Issuance decision
//!
//! [`evaluate`] runs the checks of DESIGN.md section 7 in a fixed order and stops at the first
//! failure with a specific reason: CSR, quote encoding, collateral, quote verification,
//! REPORTDATA binding of the CSR key, same platform as the requesting node, image lookup by
//! MRENCLAVE in the node's account (rejected images refused; MRSIGNER, ISVPRODID, ISVSVN must
//! match), the app's attestation policy (TCB statuses, debug, minimum ISVSVN), the requested
//! names among the app's domains. An outstanding image or domain approval gives PENDING; the
//! request is then re-evaluated when a task is approved ([`process_pending`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_api::apps::App;
use ccm_api::apps::TcbStatus as ApiTcbStatus;
use ccm_api::builds::EnclaveInfo;
use ccm_api::certificates::{Certificate, CertificateStatusType, CertificateTask, IssueStatus};
use ccm_api::tasks::TaskStatusType;
use ccm_attest::{Collateral, Policy, RootKind, TrustRoot, TrustRoots, VerifiedQuote, Verifier};
use ccm_pki::{Csr, Evidence, ZoneCa};
use ccm_store::{EnclaveFacts, ImageMatch, IssuanceRecord, NodeAuth, PendingOutcome};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::{AppState, Config, Error};

/// Attestation services shared by the handlers.
pub struct AttestServices {
    verifier: Verifier,
    collateral: RwLock<HashMap<[u8; 6], Vec<Arc<Collateral>>>>,
    cas: RwLock<HashMap<Uuid, Arc<ZoneCa>>>,
}

impl std::fmt::Debug for AttestServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestServices")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

/// SHA-256 hex of a PPID, as kept in node records.
pub fn ppid_hash(ppid: &[u8; 16]) -> String {
    hex::encode(Sha256::digest(ppid))
}

/// The API spelling of a verifier TCB status.
pub fn api_tcb_status(s: ccm_attest::TcbStatus) -> ApiTcbStatus {
    use ccm_attest::TcbStatus as T;
    match s {
        T::UpToDate => ApiTcbStatus::UpToDate,
        T::SWHardeningNeeded => ApiTcbStatus::SWHardeningNeeded,
        T::ConfigurationNeeded => ApiTcbStatus::ConfigurationNeeded,
        T::ConfigurationAndSWHardeningNeeded => ApiTcbStatus::ConfigurationAndSWHardeningNeeded,
        T::OutOfDate => ApiTcbStatus::OutOfDate,
        T::OutOfDateConfigurationNeeded => ApiTcbStatus::OutOfDateConfigurationNeeded,
        T::Revoked => ApiTcbStatus::Revoked,
    }
}

fn attest_tcb_status(s: ApiTcbStatus) -> ccm_attest::TcbStatus {
    use ccm_attest::TcbStatus as T;
    match s {
        ApiTcbStatus::UpToDate => T::UpToDate,
        ApiTcbStatus::SWHardeningNeeded => T::SWHardeningNeeded,
        ApiTcbStatus::ConfigurationNeeded => T::ConfigurationNeeded,
        ApiTcbStatus::ConfigurationAndSWHardeningNeeded => T::ConfigurationAndSWHardeningNeeded,
        ApiTcbStatus::OutOfDate => T::OutOfDate,
        ApiTcbStatus::OutOfDateConfigurationNeeded => T::OutOfDateConfigurationNeeded,
        ApiTcbStatus::Revoked => T::Revoked,
    }
}

impl AttestServices {
    /// Builds the services: Intel's root plus the simulated roots the configuration trusts.
    pub fn new(config: &Config) -> Result<Self, Error> {
        if !cfg!(feature = "sim") && !config.trusted_simulated_roots.is_empty() {
            return Err(Error::Config {
                field: "trusted_simulated_roots".into(),
                message: "this manager was built without the simulated platform (cargo feature \
                          `sim`) and cannot trust a simulated root (--trust-simulated-root); \
                          build it with `--features sim` for development and tests"
                    .into(),
            });
        }
        let mut roots = TrustRoots::intel();
        for path in &config.trusted_simulated_roots {
            let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?;
            let root =
                TrustRoot::from_pem(&text, RootKind::Simulated).map_err(|e| Error::Config {
                    field: "trusted_simulated_roots".into(),
                    message: format!("{}: {e}", path.display()),
                })?;
            roots.add(root);
        }
        Ok(Self {
            verifier: Verifier::new(roots),
            collateral: RwLock::new(HashMap::new()),
            cas: RwLock::new(HashMap::new()),
        })
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    fn cached_collateral(&self, fmspc: &[u8; 6]) -> Vec<Arc<Collateral>> {
        self.collateral
            .read()
            .map(|m| m.get(fmspc).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn remember_collateral(&self, fmspc: [u8; 6], c: Arc<Collateral>) {
        if let Ok(mut m) = self.collateral.write() {
            let list = m.entry(fmspc).or_default();
            if !list.iter().any(|x| x.digest() == c.digest()) {
                list.insert(0, c);
                list.truncate(4);
            }
        }
    }
}

/// Verifies a quote with the collateral known for its FMSPC (and `extra`, collateral that came
/// with the request). Returns the verified quote and the collateral that verified it.
pub async fn verify_quote(
    s: &AppState,
    quote: &[u8],
    extra: Option<Collateral>,
) -> Result<(VerifiedQuote, Arc<Collateral>), String> {
    let fmspc = s.attest.verifier.quote_fmspc(quote).ok_or_else(|| {
        "the quote does not parse or carries no PCK certificate with an SGX extension".to_string()
    })?;
    let mut candidates: Vec<Arc<Collateral>> = Vec::new();
    if let Some(c) = extra {
        candidates.push(Arc::new(c));
    }
    let mut cached = s.attest.cached_collateral(&fmspc);
    if cached.is_empty()
        && let Ok(stored) = s.store.collateral_for(&hex::encode(fmspc)).await
    {
        for (_, json) in stored {
            if let Ok(c) = Collateral::from_json(json.as_bytes()) {
                let c = Arc::new(c);
                s.attest.remember_collateral(fmspc, c.clone());
                cached.push(c);
            }
        }
    }
    candidates.extend(cached);
    if candidates.is_empty() {
        return Err(format!(
            "no collateral for platform FMSPC {}: a node of this platform must enroll with its collateral first",
            hex::encode(fmspc)
        ));
    }
    let now = u64::try_from(s.clock.now()).unwrap_or(0);
    let mut last = String::new();
    for c in candidates {
        match s.attest.verifier.verify(quote, &c, now) {
            Ok(v) => return Ok((v, c)),
            Err(e) => last = format!("the quote does not verify: {e}"),
        }
    }
    Err(last)
}

/// Remembers collateral that verified an enrollment quote (memory and database).
pub async fn keep_collateral(
    s: &AppState,
    v: &VerifiedQuote,
    c: &Arc<Collateral>,
) -> ApiResult<()> {
    s.attest.remember_collateral(v.fmspc, c.clone());
    s.store
        .put_collateral(
            &hex::encode(v.fmspc),
            &hex::encode(v.root_fingerprint),
            &c.to_json(),
            i64::from(v.tcb_evaluation_data_number),
            s.clock.now(),
        )
        .await?;
    Ok(())
}

/// The loaded CA of a zone (cached).
pub async fn zone_ca(s: &AppState, acct_id: Uuid, zone_id: Uuid) -> ApiResult<Arc<ZoneCa>> {
    if let Some(ca) = s
        .attest
        .cas
        .read()
        .ok()
        .and_then(|m| m.get(&zone_id).cloned())
    {
        return Ok(ca);
    }
    let rec = s
        .store
        .get_zone(acct_id, zone_id)
        .await?
        .ok_or_else(|| ApiError::not_found("zone"))?;
    let key = s
        .master_key
        .open(
            &crate::routes::zone_key_context(zone_id),
            &rec.ca_key_sealed,
        )
        .map_err(ApiError::internal)?;
    let pem = rec.zone.certificate.clone();
    let ca = crate::routes::blocking(move || ZoneCa::from_parts(&pem, &key))
        .await?
        .map_err(ApiError::internal)?
        .with_crl_url(crate::service::zones::crl_url(
            &s.config.public_base_url(),
            zone_id,
            crate::service::zones::ZoneCaKind::Zone,
        ));
    let ca = Arc::new(ca);
    if let Ok(mut m) = s.attest.cas.write() {
        m.insert(zone_id, ca.clone());
    }
    Ok(ca)
}

/// The zone's node enrollment policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePolicy {
    /// Whether each enrollment needs a NODE_ATTESTATION approval (default false).
    #[serde(default)]
    pub require_approval: bool,
    /// Platform TCB statuses accepted at enrollment (default `UpToDate`, `SWHardeningNeeded`).
    #[serde(default = "default_statuses")]
    pub accepted_tcb_statuses: Vec<ApiTcbStatus>,
}

fn default_statuses() -> Vec<ApiTcbStatus> {
    vec![ApiTcbStatus::UpToDate, ApiTcbStatus::SWHardeningNeeded]
}

impl Default for NodePolicy {
    fn default() -> Self {
        Self {
            require_approval: false,
            accepted_tcb_statuses: default_statuses(),
        }
    }
}

/// The zone's node policy (the default when none was set).
pub async fn node_policy(s: &AppState, zone_id: Uuid) -> ApiResult<NodePolicy> {
    match s.store.zone_node_policy(zone_id).await? {
        Some(text) => serde_json::from_str(&text).map_err(ApiError::internal),
        None => Ok(NodePolicy::default()),
    }
}

/// The verifier policy of a node policy (platform checks only). Simulated platforms are accepted
/// only when the zone's account trusts them.
pub fn node_attest_policy(p: &NodePolicy, account_allows_simulated: bool) -> Policy {
    Policy::default()
        .accept_statuses(
            p.accepted_tcb_statuses
                .iter()
                .copied()
                .map(attest_tcb_status),
        )
        .allow_debug(true)
        .dangerous_allow_simulated(account_allows_simulated)
}

fn describe_violations(v: &[ccm_attest::PolicyViolation]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A decision on a certificate request (before it is written).
#[derive(Debug, Clone)]
pub struct Decision {
    /// The record to write.
    pub record: IssuanceRecord,
}

struct Refusal {
    failed: bool,
    message: String,
}

fn deny(m: impl Into<String>) -> Refusal {
    Refusal {
        failed: false,
        message: m.into(),
    }
}

/// The images (with their apps) of one account by MRENCLAVE (hex), looked up once for a batch
/// of requests; `None` where the account has no such image.
pub type ImageMemo = HashMap<String, Option<(ImageMatch, Option<App>)>>;

/// Looks up, once each, the images named by the MRENCLAVEs of `quotes` in account `acct_id`.
///
/// The MRENCLAVEs are read from the quotes *before* they are verified: they only choose what
/// to read ahead. [`evaluate`] looks the verified MRENCLAVE up in the memo and asks the store
/// for anything the memo lacks, so a forged quote can cost a lookup but never change a decision.
pub async fn prefetch_images(
    s: &AppState,
    acct_id: Uuid,
    quotes: &[Vec<u8>],
) -> ApiResult<ImageMemo> {
    let mut memo = ImageMemo::new();
    for quote in quotes {
        let Some(mr) = ccm_sgx::Quote::parse(quote)
            .ok()
            .and_then(|q| q.sgx_body().map(|b| hex::encode(b.mr_enclave.0)))
        else {
            continue;
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = memo.entry(mr) {
            let found = s.store.image_with_app(acct_id, slot.key()).await?;
            slot.insert(found);
        }
    }
    Ok(memo)
}

/// Evaluates a certificate request from `node` and returns the record to write (ISSUED,
/// PENDING or REJECTED with the reason). `images` are images read ahead for a batch
/// ([`prefetch_images`]); others are read from the store.
pub async fn evaluate(
    s: &AppState,
    node: &NodeAuth,
    certificate_id: Uuid,
    task_id: Uuid,
    csr_pem: &str,
    quote: &[u8],
    images: Option<&ImageMemo>,
) -> IssuanceRecord {
    let mut record = IssuanceRecord {
        certificate_id,
        task_id,
        acct_id: node.acct_id,
        zone_id: node.zone_id,
        node_id: node.node_id,
        node_name: node.name.clone(),
        app_id: None,
        build_id: None,
        status: CertificateStatusType::Rejected,
        csr: csr_pem.to_string(),
        quote: quote.to_vec(),
        domains: Vec::new(),
        enclave: None,
        simulated: false,
        cert_pem: None,
        serial: None,
        valid_from: None,
        valid_until: None,
        message: None,
        task_status: "DENIED",
    };
    match decide(s, node, csr_pem, quote, images, &mut record).await {
        Ok(()) => {}
        Err(r) => {
            record.status = CertificateStatusType::Rejected;
            record.task_status = if r.failed { "FAILED" } else { "DENIED" };
            record.message = Some(r.message);
        }
    }
    record
}

async fn decide(
    s: &AppState,
    node: &NodeAuth,
    csr_pem: &str,
    quote: &[u8],
    images: Option<&ImageMemo>,
    record: &mut IssuanceRecord,
) -> Result<(), Refusal> {
    if !node.status.may_issue() {
        return Err(deny(format!(
            "node {} is {} and may not obtain certificates",
            node.name,
            node.status.as_str()
        )));
    }
    let csr = Csr::from_pem(csr_pem).map_err(|e| deny(e.to_string()))?;
    let names = csr.requested_names();
    record.domains = names.clone();
    if names.is_empty() {
        return Err(deny(
            "the CSR names no DNS name (neither a DNS subjectAltName nor a DNS common name)",
        ));
    }
    if quote.is_empty() {
        return Err(deny(
            "no attestation evidence: the request carries no quote",
        ));
    }
    let (verified, _) = verify_quote(s, quote, None).await.map_err(|m| {
        if m.starts_with("no collateral") {
            Refusal {
                failed: true,
                message: m,
            }
        } else {
            deny(m)
        }
    })?;
    let report = &verified.report;
    record.simulated = verified.simulated;
    record.enclave = Some(EnclaveFacts {
        info: EnclaveInfo {
            mrenclave: hex::encode(report.mr_enclave.0),
            mrsigner: hex::encode(report.mr_signer.0),
            isvprodid: i64::from(verified.isvprodid()),
            isvsvn: i64::from(verified.isvsvn()),
        },
        debug: verified.debug(),
        cpusvn: hex::encode(report.cpu_svn.0),
        tcb_status: verified.status.as_str().to_string(),
    });
    let rd = &report.report_data.0;
    let (head, tail) = rd.split_at(32);
    if head != csr.spki_sha256().as_slice() || tail.iter().any(|b| *b != 0) {
        return Err(deny(
            "the quote's REPORTDATA does not bind the CSR's public key (expected SHA-256 of its SubjectPublicKeyInfo, then zeros)",
        ));
    }
    if ppid_hash(&verified.ppid) != node.sgx_info.ppid_hash {
        return Err(deny(format!(
            "the quote comes from a different platform than node {}",
            node.name
        )));
    }
    let mrenclave = hex::encode(report.mr_enclave.0);
    // The image (whitelisted ones first) and its app, read ahead for the batch or in one query.
    let found = match images.and_then(|m| m.get(&mrenclave)) {
        Some(found) => found.clone(),
        None => s
            .store
            .image_with_app(node.acct_id, &mrenclave)
            .await
            .map_err(|e| Refusal {
                failed: true,
                message: format!("the manager could not look up images: {e}"),
            })?,
    };
    let Some((image, app)) = found else {
        return Err(deny(format!(
            "MRENCLAVE {mrenclave} is not an image of any app in the node's account"
        )));
    };
    record.app_id = Some(image.app_id);
    record.build_id = Some(image.build_id);
    if image.status == "REJECTED" {
        return Err(deny(format!(
            "image {} (MRENCLAVE {mrenclave}) was rejected",
            image.image
        )));
    }
    let mrsigner = hex::encode(report.mr_signer.0);
    if image.mrsigner != mrsigner {
        return Err(deny(format!(
            "MRSIGNER {mrsigner} does not match image {} (expected {})",
            image.image, image.mrsigner
        )));
    }
    if image.isvprodid != i64::from(verified.isvprodid()) {
        return Err(deny(format!(
            "ISVPRODID {} does not match image {} (expected {})",
            verified.isvprodid(),
            image.image,
            image.isvprodid
        )));
    }
    if image.isvsvn != i64::from(verified.isvsvn()) {
        return Err(deny(format!(
            "ISVSVN {} does not match image {} (expected {})",
            verified.isvsvn(),
            image.image,
            image.isvsvn
        )));
    }
    let app = app.ok_or_else(|| deny("the image's app no longer exists"))?;
    // A simulated quote needs the trust of the account and of the app (code
    // `simulated_not_trusted`); the account's flag comes with the image lookup.
    crate::service::apps::check_simulated_trust(
        verified.simulated,
        image.account_allows_simulated,
        app.advanced_settings.allow_simulated,
        &app.name,
    )
    .map_err(|r| deny(r.message))?;
    let policy = crate::service::apps::app_attest_policy(
        &app.advanced_settings,
        image.account_allows_simulated,
    );
    let violations = policy.violations(&verified);
    if !violations.is_empty() {
        return Err(deny(format!(
            "app {} does not accept this enclave: {}",
            app.name,
            describe_violations(&violations)
        )));
    }
    let mut waiting = Vec::new();
    for n in &names {
        if !app
            .allowed_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(n))
        {
            return Err(deny(format!(
                "domain {n} is not among the domains of app {}",
                app.name
            )));
        }
        if !app
            .whitelisted_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(n))
        {
            waiting.push(format!("domain {n}"));
        }
    }
    if image.status == "PENDING" {
        waiting.insert(0, format!("image {}", image.image));
    }
    if !waiting.is_empty() {
        record.status = CertificateStatusType::Pending;
        record.task_status = "INPROGRESS";
        record.message = Some(format!("waiting for approval of {}", waiting.join(", ")));
        return Ok(());
    }
    // Certificates on simulated quotes come from the zone's simulated intermediate.
    let issuing =
        crate::service::zones::issuing_ca(s, node.acct_id, node.zone_id, verified.simulated)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "loading the issuing CA");
                Refusal {
                    failed: true,
                    message: "the zone CA could not be loaded".into(),
                }
            })?;
    let ca = &issuing.ca;
    let evidence = Evidence {
        quote: quote.to_vec(),
        pubkey_sha256: csr.spki_sha256(),
        simulated: verified.simulated,
    };
    let now = s.clock.now();
    let issued = ca
        .issue_app(
            &csr,
            &names,
            &evidence,
            now,
            s.config.app_cert_validity_days.saturating_mul(86_400),
        )
        .map_err(|e| Refusal {
            failed: true,
            message: format!("signing failed: {e}"),
        })?;
    record.status = CertificateStatusType::Issued;
    record.task_status = "SUCCESS";
    record.cert_pem = Some(format!("{}{}", issued.pem, issuing.chain_pem));
    record.serial = Some(hex::encode(&issued.serial));
    record.valid_from = Some(issued.not_before);
    record.valid_until = Some(issued.not_after);
    Ok(())
}

/// Writes decisions and waits until they are durable. The store's issuance writer commits the
/// batches of concurrent calls together (group commit).
pub async fn write(s: &AppState, records: Vec<IssuanceRecord>) -> ApiResult<()> {
    s.store
        .record_issuances(&records, s.clock.now())
        .await
        .map_err(ApiError::internal)
}

/// The task view of a certificate request.
pub fn task_view(cert: &Certificate, task_status: Option<TaskStatusType>) -> CertificateTask {
    let (status, certificate, message) = match cert.status {
        CertificateStatusType::Issued | CertificateStatusType::Expired => {
            (IssueStatus::Success, cert.certificate.clone(), None)
        }
        CertificateStatusType::Pending => {
            (IssueStatus::PendingWhitelist, None, cert.message.clone())
        }
        CertificateStatusType::Rejected => (
            if task_status == Some(TaskStatusType::Failed) {
                IssueStatus::Failed
            } else {
                IssueStatus::Denied
            },
            None,
            cert.message.clone(),
        ),
        CertificateStatusType::Revoked => (
            IssueStatus::Denied,
            None,
            Some(format!(
                "the certificate was revoked: {}",
                cert.message.as_deref().unwrap_or("no reason given")
            )),
        ),
    };
    CertificateTask {
        task_id: cert.task_id,
        task_status: status,
        certificate,
        message,
    }
}

/// The task view of a record just written.
pub fn record_view(r: &IssuanceRecord) -> CertificateTask {
    let status = match (r.status, r.task_status) {
        (CertificateStatusType::Issued, _) => IssueStatus::Success,
        (CertificateStatusType::Pending, _) => IssueStatus::PendingWhitelist,
        (_, "FAILED") => IssueStatus::Failed,
        _ => IssueStatus::Denied,
    };
    CertificateTask {
        task_id: r.task_id,
        task_status: status,
        certificate: r.cert_pem.clone(),
        message: r.message.clone(),
    }
}

/// Re-evaluates the pending requests (of one account, or all): those whose approvals landed are
/// issued, those that can no longer succeed are refused. Returns how many changed.
pub async fn process_pending(s: &AppState, acct_id: Option<Uuid>) -> ApiResult<usize> {
    let pending = s.store.pending_certificates(acct_id, 512).await?;
    let mut changed = 0;
    for p in pending {
        let Some(node) = s.store.node_auth(p.node_id).await? else {
            continue;
        };
        let r = evaluate(
            s,
            &node,
            p.certificate_id,
            p.task_id,
            &p.csr,
            &p.quote,
            None,
        )
        .await;
        if r.status == CertificateStatusType::Pending {
            continue;
        }
        let outcome = PendingOutcome {
            status: r.status,
            app_id: r.app_id,
            build_id: r.build_id,
            cert_pem: r.cert_pem,
            serial: r.serial,
            valid_from: r.valid_from,
            valid_until: r.valid_until,
            message: r.message,
        };
        if s.store
            .complete_pending(p.certificate_id, &outcome, s.clock.now())
            .await?
        {
            changed += 1;
        }
    }
    Ok(changed)
}

/// Runs the periodic sweeps until `shutdown` fires: pending requests (approvals made under the
/// auto-approve policy or on another replica) and nodes whose heartbeats stopped.
pub fn spawn_background(s: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let every = Duration::from_secs(s.config.sweep_interval_secs.max(1));
        let mut housekeeping = crate::service::housekeeping::Schedule::new(&s);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => break,
            }
            housekeeping.run_if_due(&s).await;
            if let Err(e) = process_pending(&s, None).await {
                tracing::warn!(error = ?e, "pending certificate sweep failed");
            }
            let now = s.clock.now();
            let cutoff = now.saturating_sub(s.config.node_stale_after_secs);
            match s.store.mark_stale_nodes(cutoff, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(nodes = n, "nodes marked STOPPED (no heartbeat)"),
                Err(e) => tracing::warn!(error = %e, "stale node sweep failed"),
            }
        }
    });
}

/// Decodes base64 (standard alphabet, padding optional, whitespace ignored).
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    // The usual case, padded base64 without whitespace, without copying the text first.
    if let Ok(bytes) = STANDARD.decode(text) {
        return Some(bytes);
    }
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(&clean).ok().or_else(|| {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&clean)
            .ok()
    })
}
