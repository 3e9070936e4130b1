//! Certificate issuance for application enclaves (DESIGN.md sections 7 and 13): issuance
//! nonces, and the decision on a request as a sequence of named steps ([`steps`]).
//!
//! A request is decided in this order, stopping at the first refusal: the node may issue; the
//! CSR parses and names a DNS name; a quote is present and verifies; REPORTDATA[0..32] binds
//! the CSR key; REPORTDATA[32..64] is a fresh nonce of this node (unknown, expired and replayed
//! nonces each have their code); the key is not on the account's revoked-key list; the quote
//! comes from the node's platform; MRENCLAVE names an image of the node's account, not
//! rejected, with the same MRSIGNER, ISVPRODID and ISVSVN; the app's attestation policy
//! accepts the enclave; the requested names are the app's domains. An outstanding image or
//! domain approval makes the request PENDING; it is decided again when a task is approved
//! ([`process_pending`]), its nonce having been accepted when it came in.
//!
//! Requests of a batch are read ahead in one query (used task ids, used nonces, revoked keys)
//! plus one per distinct MRENCLAVE, decided concurrently, and written by the store's
//! group-committing writer. A request whose task id or nonce another request stored first is
//! not written, and its answer is what is stored (or a replay refusal), never the certificate
//! this call signed for it.

pub mod nonce;
pub mod steps;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_api::apps::App;
use ccm_api::builds::EnclaveInfo;
use ccm_api::certificates::{Certificate, CertificateStatusType, CertificateTask, IssueStatus};
use ccm_api::nodes::{IssuanceNonce, IssuanceNonces, MAX_NONCE_BATCH};
use ccm_api::tasks::TaskStatusType;
use ccm_pki::Evidence;
use ccm_store::{
    EnclaveFacts, ImageMatch, IssuanceLookup, IssuanceRecord, LookupKey, NodeAuth, PendingOutcome,
};
use uuid::Uuid;

use self::steps::report_nonce;
use crate::AppState;
use crate::service::attest;
use crate::service::{Refusal, RefusalCode, ServiceError, ServiceResult};

/// `count` fresh issuance nonces for `node` (1 to [`MAX_NONCE_BATCH`]). Only a node that may
/// obtain certificates gets nonces.
pub fn issue_nonces(s: &AppState, node: &NodeAuth, count: u32) -> ServiceResult<IssuanceNonces> {
    if !(1..=MAX_NONCE_BATCH).contains(&count) {
        return Err(ServiceError::bad_request(
            "nonce_count",
            format!("count must be between 1 and {MAX_NONCE_BATCH}, not {count}"),
        ));
    }
    steps::node_may_issue(node).map_err(|r| ServiceError::Forbidden(r.message))?;
    let count = usize::try_from(count).unwrap_or(1);
    let minted = s
        .nonces
        .mint(node.node_id, s.clock.now(), count)
        .ok_or_else(|| ServiceError::internal("no randomness for issuance nonces"))?;
    Ok(IssuanceNonces {
        nonces: minted
            .into_iter()
            .map(|(nonce, expires_at)| IssuanceNonce {
                nonce: STANDARD.encode(nonce),
                expires_at,
            })
            .collect(),
    })
}

/// One attested certificate request of a node.
#[derive(Debug, Clone)]
pub struct Request {
    /// The task id the agent chose (idempotency key).
    pub task_id: Uuid,
    /// The CSR (PEM).
    pub csr: String,
    /// The quote (empty when the request carries none or it was not base64).
    pub quote: Vec<u8>,
}

/// A request's task and its certificate's expiry.
pub type Answer = (CertificateTask, Option<i64>);

/// The images of one account by MRENCLAVE (hex), with their apps; `None` where the account
/// has no such image.
type ImageMemo = HashMap<String, Option<(ImageMatch, Option<App>)>>;

/// What a batch read ahead of deciding. The values are read from the quotes *before* they are
/// verified: they only choose what to read. A decision asks the store for anything a verified
/// quote names that was not read ahead, so a forged quote can cost a lookup but never change
/// a decision.
#[derive(Debug, Default)]
pub struct Prefetched {
    images: ImageMemo,
    lookup: IssuanceLookup,
    asked_nonces: HashSet<[u8; 32]>,
    asked_keys: HashSet<[u8; 32]>,
    /// Whether REPORTDATA[32..64] must be a fresh nonce (new requests) or was accepted when
    /// the request came in (pending requests decided again).
    check_nonce: bool,
}

impl Prefetched {
    /// Nothing read ahead, nonces already accepted: for pending requests.
    fn for_pending() -> Self {
        Self::default()
    }

    async fn nonce_used(&self, s: &AppState, nonce: [u8; 32]) -> Result<bool, Refusal> {
        if self.asked_nonces.contains(&nonce) {
            return Ok(self.lookup.used_nonces.contains(&nonce));
        }
        let key = LookupKey {
            task_id: Uuid::nil(),
            nonce: Some(nonce),
            spki_sha256: None,
        };
        let found = s
            .store
            .issuance_lookup(Uuid::nil(), &[key])
            .await
            .map_err(|e| Refusal::internal("check the nonce", e))?;
        Ok(found.used_nonces.contains(&nonce))
    }

    async fn key_revoked(
        &self,
        s: &AppState,
        acct_id: Uuid,
        key: [u8; 32],
    ) -> Result<bool, Refusal> {
        if self.asked_keys.contains(&key) {
            return Ok(self.lookup.revoked_keys.contains(&key));
        }
        let ask = LookupKey {
            task_id: Uuid::nil(),
            nonce: None,
            spki_sha256: Some(key),
        };
        let found = s
            .store
            .issuance_lookup(acct_id, &[ask])
            .await
            .map_err(|e| Refusal::internal("check the revoked keys", e))?;
        Ok(found.revoked_keys.contains(&key))
    }

    async fn image(
        &self,
        s: &AppState,
        acct_id: Uuid,
        mrenclave: &str,
    ) -> Result<Option<(ImageMatch, Option<App>)>, Refusal> {
        if let Some(found) = self.images.get(mrenclave) {
            return Ok(found.clone());
        }
        s.store
            .image_with_app(acct_id, mrenclave)
            .await
            .map_err(|e| Refusal::internal("look up images", e))
    }
}

/// Reads ahead for `requests` of account `acct_id`: the batch's used task ids, nonces and
/// revoked keys in one query, at the same time as the images the quotes name.
async fn prefetch(s: &AppState, acct_id: Uuid, requests: &[Request]) -> ServiceResult<Prefetched> {
    let mut keys = Vec::with_capacity(requests.len());
    let mut mrenclaves = Vec::new();
    let mut pre = Prefetched {
        check_nonce: true,
        ..Prefetched::default()
    };
    for r in requests {
        let body = ccm_sgx::Quote::parse(&r.quote)
            .ok()
            .and_then(|q| q.sgx_body().copied());
        let (mut nonce, mut key) = (None, None);
        if let Some(b) = body {
            let rd = &b.report_data.0;
            let n = report_nonce(rd);
            if n != [0; 32] {
                pre.asked_nonces.insert(n);
                nonce = Some(n);
            }
            let k = steps::report_key(rd);
            pre.asked_keys.insert(k);
            key = Some(k);
            let mr = hex::encode(b.mr_enclave.0);
            if !mrenclaves.contains(&mr) {
                mrenclaves.push(mr);
            }
        }
        keys.push(LookupKey {
            task_id: r.task_id,
            nonce,
            spki_sha256: key,
        });
    }
    let images = async {
        let mut memo = ImageMemo::new();
        for mr in mrenclaves {
            let found = s.store.image_with_app(acct_id, &mr).await?;
            memo.insert(mr, found);
        }
        Ok::<_, ccm_store::Error>(memo)
    };
    let (lookup, images) = tokio::join!(s.store.issuance_lookup(acct_id, &keys), images);
    pre.lookup = lookup?;
    pre.images = images?;
    Ok(pre)
}

/// A new record of a request from `node`, refused until the steps say otherwise.
fn new_record(
    node: &NodeAuth,
    certificate_id: Uuid,
    task_id: Uuid,
    csr_pem: &str,
    quote: &[u8],
) -> IssuanceRecord {
    IssuanceRecord {
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
        task_status: TaskStatusType::Denied,
        nonce: None,
        spki_sha256: None,
    }
}

/// Marks `record` refused by `r`: DENIED, or FAILED when a retry may succeed; whatever was
/// signed for it is dropped.
fn refuse(record: &mut IssuanceRecord, r: &Refusal) {
    record.status = CertificateStatusType::Rejected;
    record.task_status = if r.code.is_transient() {
        TaskStatusType::Failed
    } else {
        TaskStatusType::Denied
    };
    record.message = Some(r.to_string());
    record.cert_pem = None;
    record.serial = None;
    record.valid_from = None;
    record.valid_until = None;
}

/// Decides a certificate request from `node` and returns the record to write (ISSUED,
/// PENDING or REJECTED with the reason).
pub async fn evaluate(
    s: &AppState,
    node: &NodeAuth,
    certificate_id: Uuid,
    task_id: Uuid,
    csr_pem: &str,
    quote: &[u8],
    pre: &Prefetched,
) -> IssuanceRecord {
    let mut record = new_record(node, certificate_id, task_id, csr_pem, quote);
    if let Err(r) = decide(s, node, csr_pem, quote, pre, &mut record).await {
        refuse(&mut record, &r);
    }
    record
}

/// The steps, in order; fills `record` as they learn.
async fn decide(
    s: &AppState,
    node: &NodeAuth,
    csr_pem: &str,
    quote: &[u8],
    pre: &Prefetched,
    record: &mut IssuanceRecord,
) -> Result<(), Refusal> {
    steps::node_may_issue(node)?;
    let csr = steps::csr_parses(csr_pem)?;
    let spki = csr.spki_sha256();
    record.spki_sha256 = Some(spki);
    record.domains = csr.requested_names();
    let names = steps::csr_names_dns(&csr)?;
    steps::quote_present(quote)?;
    let verified = attest::verify_quote(s, quote, None)
        .await
        .map_err(steps::quote_refusal)?;
    let report = &verified.report;
    let mrenclave = hex::encode(report.mr_enclave.0);
    let mrsigner = hex::encode(report.mr_signer.0);
    record.simulated = verified.simulated;
    record.enclave = Some(EnclaveFacts {
        info: EnclaveInfo {
            mrenclave: mrenclave.clone(),
            mrsigner: mrsigner.clone(),
            isvprodid: i64::from(verified.isvprodid()),
            isvsvn: i64::from(verified.isvsvn()),
        },
        debug: verified.debug(),
        cpusvn: hex::encode(report.cpu_svn.0),
        tcb_status: verified.status.as_str().to_string(),
    });
    let rd = &report.report_data.0;
    steps::key_bound(rd, &spki)?;
    if pre.check_nonce {
        let used = pre.nonce_used(s, report_nonce(rd)).await?;
        let nonce = steps::nonce_fresh(&s.nonces, node.node_id, rd, used, s.clock.now())?;
        // From here on the request consumes the nonce, whatever the decision.
        record.nonce = Some(nonce);
    }
    steps::key_not_revoked(pre.key_revoked(s, node.acct_id, spki).await?)?;
    steps::same_platform(&attest::ppid_hash(&verified.ppid), node)?;
    let found = pre.image(s, node.acct_id, &mrenclave).await?;
    let (image, app) = steps::image_known(found, &mrenclave)?;
    record.app_id = Some(image.app_id);
    record.build_id = Some(image.build_id);
    steps::image_not_rejected(&image)?;
    steps::identity_matches(&image, &mrsigner, verified.isvprodid(), verified.isvsvn())?;
    let app = steps::app_exists(app)?;
    steps::simulated_trusted(&verified, image.account_allows_simulated, &app)?;
    steps::policy_allows(&app, image.account_allows_simulated, &verified)?;
    let domains_waiting = steps::domains_allowed(&app, &names)?;
    let waiting = steps::approvals_outstanding(&image, &domains_waiting);
    if !waiting.is_empty() {
        record.status = CertificateStatusType::Pending;
        record.task_status = TaskStatusType::Inprogress;
        record.message = Some(format!("waiting for approval of {}", waiting.join(", ")));
        return Ok(());
    }
    // Certificates on simulated quotes come from the zone's simulated intermediate.
    let issuing =
        crate::service::zones::issuing_ca(s, node.acct_id, node.zone_id, verified.simulated)
            .await
            .map_err(|e| Refusal::internal("load the issuing CA", e))?;
    let ca = &issuing.ca;
    let evidence = Evidence {
        quote: quote.to_vec(),
        pubkey_sha256: spki,
        simulated: verified.simulated,
    };
    let issued = ca
        .issue_app(
            &csr,
            &names,
            &evidence,
            s.clock.now(),
            s.config.app_cert_validity_days.saturating_mul(86_400),
        )
        .map_err(|e| Refusal::internal("sign the certificate", e))?;
    record.status = CertificateStatusType::Issued;
    record.task_status = TaskStatusType::Success;
    record.cert_pem = Some(format!("{}{}", issued.pem, issuing.chain_pem));
    record.serial = Some(hex::encode(&issued.serial));
    record.valid_from = Some(issued.not_before);
    record.valid_until = Some(issued.not_after);
    Ok(())
}

/// The refusal of a request whose nonce another request (of the batch, or stored first)
/// consumed.
fn replayed() -> Refusal {
    Refusal::new(
        RefusalCode::ReplayedNonce,
        "the quote's nonce was already used by another request (a replayed quote)",
    )
}

/// Within one batch a nonce is consumed once: later records carrying the nonce of an earlier
/// one are refused as replays (and do not record it).
pub fn one_use_per_nonce(records: &mut [IssuanceRecord]) {
    let mut seen = HashSet::new();
    for r in records.iter_mut() {
        if let Some(n) = r.nonce
            && !seen.insert(n)
        {
            r.nonce = None;
            refuse(r, &replayed());
        }
    }
}

/// The task view of a stored certificate request.
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
        (_, TaskStatusType::Failed) => IssueStatus::Failed,
        _ => IssueStatus::Denied,
    };
    CertificateTask {
        task_id: r.task_id,
        task_status: status,
        certificate: r.cert_pem.clone(),
        message: r.message.clone(),
    }
}

/// The stored answer for task id `task_id`: its certificate request when it came through
/// `node`; a conflict when another task uses the id; `None` when nothing does.
async fn stored_answer(
    s: &AppState,
    node: &NodeAuth,
    task_id: Uuid,
    now: i64,
) -> ServiceResult<Option<Answer>> {
    if let Some(cert) = s
        .store
        .certificate_by_task(node.node_id, task_id, now)
        .await?
    {
        let task = s.store.get_task(node.acct_id, task_id).await?;
        let not_after = cert.valid_until;
        return Ok(Some((
            task_view(&cert, task.map(|t| t.status.status)),
            not_after,
        )));
    }
    if s.store.task_exists(task_id).await? {
        return Err(ServiceError::conflict(
            "task_id_taken",
            "this task id is already used; choose another",
        ));
    }
    Ok(None)
}

/// The answer to a request the store did not write because its task id or nonce was stored
/// first by another request: what is stored under its task id, or else (its nonce was taken)
/// a replay refusal, recorded. What this call decided for it (a certificate, perhaps) is
/// dropped.
async fn answer_lost_race(
    s: &AppState,
    node: &NodeAuth,
    mut record: IssuanceRecord,
    now: i64,
) -> ServiceResult<Answer> {
    if let Some(answer) = stored_answer(s, node, record.task_id, now).await? {
        return Ok(answer);
    }
    record.nonce = None;
    refuse(&mut record, &replayed());
    let skipped = s
        .store
        .record_issuances(std::slice::from_ref(&record), now)
        .await?;
    if skipped.is_empty() {
        return Ok((record_view(&record), None));
    }
    stored_answer(s, node, record.task_id, now)
        .await?
        .ok_or_else(|| ServiceError::internal("a refused request was neither written nor found"))
}

/// Decides requests of one node (distinct task ids) and writes the new decisions through the
/// group-committing writer, answering once they are durable. Task ids already used are
/// answered from the store (idempotent resubmission) or refused; the others are decided
/// concurrently on the runtime's workers, as the checks are CPU-bound (quote and CSR
/// signatures, signing). One answer per request, in order.
pub async fn issue(
    s: &AppState,
    node: &NodeAuth,
    requests: Vec<Request>,
) -> ServiceResult<Vec<ServiceResult<Answer>>> {
    let now = s.clock.now();
    let pre = Arc::new(prefetch(s, node.acct_id, &requests).await?);
    let mut answers: Vec<Option<ServiceResult<Answer>>> = Vec::with_capacity(requests.len());
    let mut fresh = Vec::with_capacity(requests.len());
    for (i, req) in requests.into_iter().enumerate() {
        if pre.lookup.used_task_ids.contains(&req.task_id) {
            match stored_answer(s, node, req.task_id, now).await {
                // Nothing uses the id any more: decided afresh.
                Ok(None) => {}
                Ok(Some(answer)) => {
                    answers.push(Some(Ok(answer)));
                    continue;
                }
                Err(e @ ServiceError::Conflict { .. }) => {
                    answers.push(Some(Err(e)));
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        answers.push(None);
        fresh.push((i, req));
    }
    let evaluations: Vec<_> = fresh
        .into_iter()
        .map(|(i, req)| {
            let (s, node, pre) = (s.clone(), node.clone(), pre.clone());
            tokio::spawn(async move {
                let record = evaluate(
                    &s,
                    &node,
                    Uuid::now_v7(),
                    req.task_id,
                    &req.csr,
                    &req.quote,
                    &pre,
                )
                .await;
                (i, record)
            })
        })
        .collect();
    let mut slots = Vec::with_capacity(evaluations.len());
    let mut records = Vec::with_capacity(evaluations.len());
    for evaluation in evaluations {
        let (i, record) = evaluation.await.map_err(ServiceError::internal)?;
        slots.push(i);
        records.push(record);
    }
    one_use_per_nonce(&mut records);
    let skipped: HashSet<Uuid> = s
        .store
        .record_issuances(&records, now)
        .await?
        .into_iter()
        .collect();
    for (i, record) in slots.into_iter().zip(records) {
        let answer = if skipped.contains(&record.task_id) {
            answer_lost_race(s, node, record, now).await
        } else {
            Ok((record_view(&record), record.valid_until))
        };
        if let Some(slot) = answers.get_mut(i) {
            *slot = Some(answer);
        }
    }
    Ok(answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(ServiceError::internal("a request was not decided"))))
        .collect())
}

/// The state of an issuance task of `node`.
pub async fn result(
    s: &AppState,
    node: &NodeAuth,
    task_id: Uuid,
) -> ServiceResult<CertificateTask> {
    let now = s.clock.now();
    let cert = s
        .store
        .certificate_by_task(node.node_id, task_id, now)
        .await?
        .ok_or(ServiceError::NotFound("task"))?;
    let task = s.store.get_task(node.acct_id, task_id).await?;
    Ok(task_view(&cert, task.map(|t| t.status.status)))
}

/// Decides the pending requests again (of one account, or all): those whose approvals landed
/// are issued, those that can no longer succeed are refused. Returns how many changed.
pub async fn process_pending(s: &AppState, acct_id: Option<Uuid>) -> ServiceResult<usize> {
    let pending = s.store.pending_certificates(acct_id, 512).await?;
    let pre = Prefetched::for_pending();
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
            &pre,
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

/// Records the key hashes of certificates issued before the store kept them (schema version
/// 5), so that revoking one of those denies its key too, and denies the keys of those already
/// revoked. Returns how many it recorded; a manager that finds none asks once.
pub async fn backfill_key_hashes(s: &AppState) -> ServiceResult<usize> {
    let mut done = 0;
    loop {
        let batch = s.store.certificates_without_key_hash(256).await?;
        if batch.is_empty() {
            return Ok(done);
        }
        for (certificate_id, csr) in batch {
            let hash = ccm_pki::Csr::from_pem(&csr).ok().map(|c| c.spki_sha256());
            s.store.set_key_hash(certificate_id, hash).await?;
            done += 1;
        }
    }
}

/// Runs the periodic sweeps until `shutdown` fires: pending requests (approvals made under the
/// auto-approve policy or on another replica) and nodes whose heartbeats stopped. First, once,
/// [`backfill_key_hashes`].
pub fn spawn_background(s: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        match backfill_key_hashes(&s).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                certificates = n,
                "key hashes of older certificates recorded"
            ),
            Err(e) => {
                tracing::warn!(error = ?e, "recording key hashes of older certificates failed")
            }
        }
        let every = Duration::from_secs(s.config.sweep_interval_secs.max(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => break,
            }
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

#[cfg(test)]
mod tests {
    use ccm_api::apps::TcbStatus;
    use ccm_api::nodes::{NodeStatusType, SgxInfo};

    use super::*;

    fn node() -> NodeAuth {
        NodeAuth {
            node_id: Uuid::from_u128(1),
            acct_id: Uuid::from_u128(2),
            zone_id: Uuid::from_u128(3),
            name: "node-a".into(),
            status: NodeStatusType::Running,
            sgx_info: SgxInfo {
                version: None,
                fmspc: String::new(),
                tcb_status: TcbStatus::UpToDate,
                advisory_ids: Vec::new(),
                tcb_date: String::new(),
                ppid_hash: String::new(),
                simulated: true,
                root_fingerprint: String::new(),
            },
        }
    }

    /// A record as a granted request leaves it, carrying `nonce`.
    fn issued(nonce: Option<[u8; 32]>) -> IssuanceRecord {
        let mut r = new_record(&node(), Uuid::now_v7(), Uuid::now_v7(), "CSR", &[3, 0]);
        r.status = CertificateStatusType::Issued;
        r.task_status = TaskStatusType::Success;
        r.cert_pem = Some("PEM".into());
        r.serial = Some("01".into());
        r.valid_from = Some(1);
        r.valid_until = Some(2);
        r.nonce = nonce;
        r
    }

    #[test]
    fn a_nonce_is_used_once_per_batch_and_the_replay_keeps_nothing_signed() {
        let mut records = vec![
            issued(Some([1; 32])),
            issued(Some([2; 32])),
            issued(Some([1; 32])),
            issued(None),
        ];
        one_use_per_nonce(&mut records);
        let statuses: Vec<_> = records.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [
                CertificateStatusType::Issued,
                CertificateStatusType::Issued,
                CertificateStatusType::Rejected,
                CertificateStatusType::Issued
            ]
        );
        let replay = &records[2];
        assert_eq!(replay.nonce, None, "the replay does not record the nonce");
        assert_eq!(replay.task_status, TaskStatusType::Denied);
        assert_eq!(
            (&replay.cert_pem, &replay.serial, replay.valid_until),
            (&None, &None, None)
        );
        assert!(
            replay
                .message
                .as_deref()
                .is_some_and(|m| m.ends_with("(replayed_nonce)")),
            "{replay:?}"
        );
        let view = record_view(replay);
        assert_eq!(view.task_status, IssueStatus::Denied);
        assert_eq!(view.certificate, None);
    }

    #[test]
    fn transient_refusals_fail_the_task_others_deny_it() {
        let mut r = issued(None);
        refuse(&mut r, &Refusal::internal("look up images", "I/O error"));
        assert_eq!(r.task_status, TaskStatusType::Failed);
        assert_eq!(record_view(&r).task_status, IssueStatus::Failed);
        let mut r = issued(None);
        refuse(
            &mut r,
            &Refusal::new(RefusalCode::KeyRevoked, "the key was revoked"),
        );
        assert_eq!(r.task_status, TaskStatusType::Denied);
        assert_eq!(r.cert_pem, None);
    }
}
