//! Node enrollment as named steps, ending in a refusal or a grant (the node certificate).
//!
//! [`enroll`] runs, in order: the join token ([`token_step`]), the request's fields
//! ([`parse_request`]), the enrollment nonce ([`nonce_step`]), the quote's verification (with the
//! current collateral of its platform, fetched on demand; collateral the node brings is only
//! offered, see [`crate::service::collateral`]), the REPORTDATA binding of the node key and the nonce
//! ([`binding_step`]), simulated trust ([`trust_step`]: a quote resting on a simulated root needs
//! the account's `allow_simulated`), the zone's node policy ([`node_policy_step`]: the platform's
//! TCB status among the accepted ones), and then the grant: the node
//! certificate issued (by the zone's simulated intermediate for simulated platforms) and the node
//! stored. Every step but the quote's verification and the grant is a pure function over data.
//!
//! A refusal names its reason ([`EnrollRefusal`]); its API code and status are stable
//! (`join_token_*` 401, `nonce_*` 409, `quote_rejected`, `report_data_mismatch`,
//! `simulated_not_trusted` and `node_policy` 403).

use ccm_api::FieldError;
use ccm_api::nodes::{NodeEnrollment, NodeProvisionRequest, SgxInfo};
use ccm_api::tasks::ApprovalStatus;
use ccm_api::zones::JoinToken;
use ccm_attest::{Collateral, TcbStatus};
use ccm_pki::Csr;
use ccm_store::{JoinTokenRecord, NewNode, NodeApproval, NonceState};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Refusal, RefusalCode, ServiceError, ServiceResult};
use crate::AppState;
use crate::service::attest::{self, NodePolicy};
use crate::service::validate::Checker;

/// Why an enrollment was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollRefusal {
    /// The join token is unknown or its secret is wrong.
    TokenInvalid,
    /// The join token was revoked.
    TokenRevoked,
    /// The join token has expired.
    TokenExpired,
    /// The single-use join token was used already.
    TokenUsed,
    /// The nonce was not issued for this join token.
    NonceUnknown,
    /// The nonce has expired.
    NonceExpired,
    /// The nonce was used already (a replayed enrollment).
    NonceReplayed,
    /// The quote does not parse or verify (what failed).
    QuoteRejected(String),
    /// REPORTDATA does not bind SHA-256(node key ‖ nonce).
    KeyNotBound,
    /// The platform is simulated and the account does not trust simulated platforms.
    SimulatedNotTrusted,
    /// The platform's TCB status is not among the zone's accepted ones.
    NodePolicy(TcbStatus),
}

impl EnrollRefusal {
    /// The refusal: a stable reason and the operator-facing message.
    pub fn refusal(&self) -> Refusal {
        use EnrollRefusal as E;
        let (code, message) = match self {
            E::TokenInvalid => (
                RefusalCode::InvalidEnrollment,
                "the join token is not valid".to_string(),
            ),
            E::TokenRevoked => (
                RefusalCode::InvalidEnrollment,
                "the join token was revoked".into(),
            ),
            E::TokenExpired => (
                RefusalCode::InvalidEnrollment,
                "the join token has expired".into(),
            ),
            E::TokenUsed => (
                RefusalCode::InvalidEnrollment,
                "the single-use join token was already used".into(),
            ),
            E::NonceUnknown => (
                RefusalCode::UnknownNonce,
                "the nonce was not issued for this join token".into(),
            ),
            E::NonceExpired => (
                RefusalCode::ExpiredNonce,
                "the nonce has expired; ask for a new one".into(),
            ),
            E::NonceReplayed => (
                RefusalCode::ReplayedNonce,
                "the nonce was already used (replayed enrollment)".into(),
            ),
            E::QuoteRejected(m) => (RefusalCode::QuoteInvalid, m.clone()),
            E::KeyNotBound => (
                RefusalCode::KeyNotBound,
                "the quote's REPORTDATA does not bind SHA-256(node public key ‖ nonce)".into(),
            ),
            E::SimulatedNotTrusted => (
                RefusalCode::SimulatedNotTrusted,
                "the platform is simulated and the account does not trust simulated platforms \
                 (a MANAGER sets allow_simulated with PATCH /v1/accounts/{acct_id})"
                    .into(),
            ),
            E::NodePolicy(status) => (
                RefusalCode::NodePolicyViolation,
                format!(
                    "the platform does not meet the zone's node policy: TCB status {} is not \
                     accepted",
                    status.as_str()
                ),
            ),
        };
        Refusal::new(code, message)
    }

    /// The API error code (stable; older than [`RefusalCode`]).
    pub fn api_code(&self) -> &'static str {
        use EnrollRefusal as E;
        match self {
            E::TokenInvalid => "invalid_join_token",
            E::TokenRevoked => "join_token_revoked",
            E::TokenExpired => "join_token_expired",
            E::TokenUsed => "join_token_used",
            E::NonceUnknown => "nonce_unknown",
            E::NonceExpired => "nonce_expired",
            E::NonceReplayed => "nonce_reused",
            E::QuoteRejected(_) => "quote_rejected",
            E::KeyNotBound => "report_data_mismatch",
            E::SimulatedNotTrusted => "simulated_not_trusted",
            E::NodePolicy(_) => "node_policy",
        }
    }
}

impl From<EnrollRefusal> for ServiceError {
    fn from(r: EnrollRefusal) -> Self {
        use EnrollRefusal as E;
        let code = r.api_code();
        let message = r.refusal().message;
        match r {
            E::TokenInvalid | E::TokenRevoked | E::TokenExpired | E::TokenUsed => {
                ServiceError::Unauthenticated { code, message }
            }
            E::NonceUnknown | E::NonceExpired | E::NonceReplayed => {
                ServiceError::conflict(code, message)
            }
            E::QuoteRejected(_) | E::KeyNotBound | E::SimulatedNotTrusted | E::NodePolicy(_) => {
                ServiceError::Refused { code, message }
            }
        }
    }
}

/// Step 1: the join token's record (if any) admits an enrollment at `now` for the presented
/// secret's hash.
pub fn token_step(
    rec: Option<&JoinTokenRecord>,
    presented_hash: &str,
    now: i64,
) -> Result<(), EnrollRefusal> {
    let rec = rec.ok_or(EnrollRefusal::TokenInvalid)?;
    // Both are SHA-256 digests of secrets: comparing them leaks nothing useful about the secret.
    if presented_hash != rec.secret_hash {
        return Err(EnrollRefusal::TokenInvalid);
    }
    if rec.info.revoked_at.is_some() {
        return Err(EnrollRefusal::TokenRevoked);
    }
    if rec.info.expires_at <= now {
        return Err(EnrollRefusal::TokenExpired);
    }
    if rec.info.single_use && rec.info.use_count > 0 {
        return Err(EnrollRefusal::TokenUsed);
    }
    Ok(())
}

/// Step 3: the nonce's state admits an enrollment.
pub fn nonce_step(state: NonceState) -> Result<(), EnrollRefusal> {
    match state {
        NonceState::Fresh => Ok(()),
        NonceState::Unknown => Err(EnrollRefusal::NonceUnknown),
        NonceState::Expired => Err(EnrollRefusal::NonceExpired),
        NonceState::Used => Err(EnrollRefusal::NonceReplayed),
    }
}

/// Step 5: REPORTDATA = SHA-256(node SubjectPublicKeyInfo DER ‖ nonce) ‖ 32 zero bytes.
pub fn binding_step(
    report_data: &[u8; 64],
    spki_der: &[u8],
    nonce: &[u8],
) -> Result<(), EnrollRefusal> {
    let mut h = Sha256::new();
    h.update(spki_der);
    h.update(nonce);
    let expected: [u8; 32] = h.finalize().into();
    let (head, tail) = report_data.split_at(32);
    if head != expected.as_slice() || tail.iter().any(|b| *b != 0) {
        return Err(EnrollRefusal::KeyNotBound);
    }
    Ok(())
}

/// Step 6: a simulated platform needs the account's trust.
pub fn trust_step(simulated: bool, account_allows_simulated: bool) -> Result<(), EnrollRefusal> {
    if simulated && !account_allows_simulated {
        return Err(EnrollRefusal::SimulatedNotTrusted);
    }
    Ok(())
}

/// Step 7: the platform's TCB status is among the zone's accepted ones (`Revoked` never is).
pub fn node_policy_step(policy: &NodePolicy, status: TcbStatus) -> Result<(), EnrollRefusal> {
    let accepted = status != TcbStatus::Revoked
        && policy
            .accepted_tcb_statuses
            .iter()
            .any(|s| crate::service::attest::attest_tcb_status(*s) == status);
    if accepted {
        Ok(())
    } else {
        Err(EnrollRefusal::NodePolicy(status))
    }
}

/// A checked enrollment request.
#[derive(Debug)]
pub struct ParsedRequest {
    /// The 32-byte nonce.
    pub nonce: Vec<u8>,
    /// The node key's CSR.
    pub csr: Csr,
    /// The quote.
    pub quote: Vec<u8>,
    /// Collateral that came with the request.
    pub collateral: Option<Collateral>,
}

fn field(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(vec![FieldError {
        field: field.into(),
        message: message.into(),
    }])
}

/// Step 2: the request's fields (names and sizes, nonce, CSR, quote, collateral).
pub fn parse_request(req: &NodeProvisionRequest) -> ServiceResult<ParsedRequest> {
    let mut c = Checker::new();
    c.text("name", &req.name, 1, 128, false);
    if let Some(d) = &req.description {
        c.text("description", d, 0, 1024, true);
    }
    c.text("ipaddress", &req.ipaddress, 0, 64, false);
    c.text("sgx_version", &req.sgx_version, 0, 128, false);
    if let Some(t) = &req.attestation_request.attestation_type
        && t != "DCAP"
    {
        c.err(
            "attestation_request.attestation_type",
            "only DCAP is supported",
        );
    }
    c.finish()?;
    let nonce = attest::decode_b64(&req.nonce)
        .filter(|n| n.len() == 32)
        .ok_or_else(|| {
            field(
                "nonce",
                "must be the 32-byte nonce from POST /v1/nodes/nonce, base64",
            )
        })?;
    let csr = Csr::from_pem(&req.attestation_request.csr)
        .map_err(|e| field("attestation_request.csr", e.to_string()))?;
    let quote = attest::decode_b64(&req.attestation_request.ias_quote)
        .ok_or_else(|| field("attestation_request.ias_quote", "is not base64"))?;
    let collateral = req
        .collateral
        .as_ref()
        .map(|v| {
            Collateral::from_json(v.to_string().as_bytes())
                .map_err(|e| field("collateral", e.to_string()))
        })
        .transpose()?;
    Ok(ParsedRequest {
        nonce,
        csr,
        quote,
        collateral,
    })
}

/// Checks a join token presented as bearer text; returns it with its record.
pub async fn authenticate_token(
    s: &AppState,
    text: Option<&str>,
) -> ServiceResult<(JoinToken, JoinTokenRecord)> {
    let text = text.ok_or_else(|| ServiceError::Unauthenticated {
        code: "join_token_required",
        message: "enrollment needs the join token as Authorization: Bearer <token>".into(),
    })?;
    let token = JoinToken::parse(text).map_err(|e| ServiceError::Unauthenticated {
        code: "invalid_join_token",
        message: e.to_string(),
    })?;
    let rec = s.store.join_token_record(token.token_id).await?;
    let presented = super::zones::join_secret_hash(&token.secret);
    token_step(rec.as_ref(), &presented, s.clock.now())?;
    let rec = rec.ok_or(EnrollRefusal::TokenInvalid)?;
    Ok((token, rec))
}

/// Enrolls a node: the steps of the module documentation, then the grant.
pub async fn enroll(
    s: &AppState,
    bearer: Option<&str>,
    req: NodeProvisionRequest,
) -> ServiceResult<NodeEnrollment> {
    let (token, rec) = authenticate_token(s, bearer).await?;
    let parsed = parse_request(&req)?;
    let now = s.clock.now();
    let nonce_hash = hex::encode(Sha256::digest(&parsed.nonce));
    nonce_step(
        s.store
            .enroll_nonce_state(token.token_id, &nonce_hash, now)
            .await?,
    )?;
    let verified = attest::verify_quote(s, &parsed.quote, parsed.collateral)
        .await
        .map_err(|e| match e {
            attest::QuoteError::Store(cause) => ServiceError::internal(cause),
            e => EnrollRefusal::QuoteRejected(e.to_string()).into(),
        })?;
    binding_step(
        &verified.report.report_data.0,
        parsed.csr.spki_der(),
        &parsed.nonce,
    )?;
    trust_step(
        verified.simulated,
        s.store.account_allows_simulated(rec.acct_id).await?,
    )?;
    let policy: NodePolicy = attest::node_policy(s, rec.info.zone_id)
        .await
        .map_err(|e| ServiceError::internal(format!("reading the node policy: {e:?}")))?;
    node_policy_step(&policy, verified.status)?;

    // The grant.
    let node_id = Uuid::new_v4();
    let issuing =
        super::zones::issuing_ca(s, rec.acct_id, rec.info.zone_id, verified.simulated).await?;
    let zone_ca = attest::zone_ca(s, rec.acct_id, rec.info.zone_id)
        .await
        .map_err(|e| ServiceError::internal(format!("loading the zone CA: {e:?}")))?;
    let issued = issuing
        .ca
        .issue_node(
            parsed.csr.spki_der(),
            &node_id.to_string(),
            verified.simulated,
            now,
            s.config.node_cert_validity_days.saturating_mul(86_400),
        )
        .map_err(ServiceError::internal)?;
    let sgx_info = SgxInfo {
        version: Some(req.sgx_version.clone()),
        fmspc: hex::encode(verified.fmspc),
        tcb_status: attest::api_tcb_status(verified.status),
        advisory_ids: verified.advisory_ids.clone(),
        tcb_date: verified.tcb_date.clone(),
        ppid_hash: attest::ppid_hash(&verified.ppid),
        simulated: verified.simulated,
        root_fingerprint: hex::encode(verified.root_fingerprint),
    };
    let approval = node_approval(&policy, &req.name, &sgx_info);
    let node = s
        .store
        .enroll_node(
            &NewNode {
                node_id,
                acct_id: rec.acct_id,
                zone_id: rec.info.zone_id,
                name: req.name,
                description: req.description.filter(|d| !d.is_empty()),
                ipaddress: Some(req.ipaddress).filter(|i| !i.is_empty()),
                version: Some(req.sgx_version),
                sgx_info,
                cert_pem: issued.pem.clone(),
                cert_serial: hex::encode(&issued.serial),
                cert_not_after: issued.not_after,
                token_id: token.token_id,
                secret_hash: rec.secret_hash.clone(),
                nonce_hash,
                approval,
            },
            now,
        )
        .await?;
    let (heartbeat_interval_secs, renewal_threshold_percent) =
        super::nodes::agent_settings(s, rec.info.zone_id).await?;
    Ok(NodeEnrollment {
        node,
        certificate: issued.pem,
        ca_certificate: zone_ca.certificate_pem().to_string(),
        heartbeat_interval_secs,
        renewal_threshold_percent: Some(renewal_threshold_percent),
    })
}

/// The NODE_ATTESTATION task a new node waits for, when its zone requires approval: its
/// approval admits the node (PROVISIONED) while it still waits.
pub(crate) fn node_approval(
    policy: &NodePolicy,
    name: &str,
    sgx: &SgxInfo,
) -> Option<NodeApproval> {
    policy.require_approval.then(|| NodeApproval {
        task_id: Uuid::new_v4(),
        description: format!(
            "Admit node {name} (FMSPC {}, TCB {:?}{})",
            sgx.fmspc,
            sgx.tcb_status,
            if sgx.simulated { ", SIMULATED" } else { "" }
        ),
        on_approve: super::tasks::node_effect(ApprovalStatus::Approved),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use ccm_api::apps::TcbStatus as ApiTcbStatus;
    use ccm_api::zones::JoinTokenInfo;

    const NOW: i64 = 1_800_000_000;

    fn record(secret_hash: &str) -> JoinTokenRecord {
        JoinTokenRecord {
            info: JoinTokenInfo {
                token_id: Uuid::new_v4(),
                zone_id: Uuid::new_v4(),
                created_at: NOW - 10,
                expires_at: NOW + 10,
                single_use: true,
                use_count: 0,
                last_used_at: None,
                revoked_at: None,
                created_by: None,
                description: None,
            },
            acct_id: Uuid::new_v4(),
            secret_hash: secret_hash.into(),
        }
    }

    #[test]
    fn token_step_refuses_each_way_a_token_fails() {
        let ok = record("h");
        assert_eq!(token_step(Some(&ok), "h", NOW), Ok(()));
        assert_eq!(token_step(None, "h", NOW), Err(EnrollRefusal::TokenInvalid));
        assert_eq!(
            token_step(Some(&ok), "other", NOW),
            Err(EnrollRefusal::TokenInvalid)
        );
        let mut revoked = record("h");
        revoked.info.revoked_at = Some(NOW - 1);
        assert_eq!(
            token_step(Some(&revoked), "h", NOW),
            Err(EnrollRefusal::TokenRevoked)
        );
        assert_eq!(
            token_step(Some(&ok), "h", NOW + 10),
            Err(EnrollRefusal::TokenExpired)
        );
        let mut used = record("h");
        used.info.use_count = 1;
        assert_eq!(
            token_step(Some(&used), "h", NOW),
            Err(EnrollRefusal::TokenUsed)
        );
        used.info.single_use = false;
        assert_eq!(token_step(Some(&used), "h", NOW), Ok(()));
    }

    #[test]
    fn nonce_step_refuses_all_but_fresh() {
        assert_eq!(nonce_step(NonceState::Fresh), Ok(()));
        assert_eq!(
            nonce_step(NonceState::Unknown),
            Err(EnrollRefusal::NonceUnknown)
        );
        assert_eq!(
            nonce_step(NonceState::Expired),
            Err(EnrollRefusal::NonceExpired)
        );
        assert_eq!(
            nonce_step(NonceState::Used),
            Err(EnrollRefusal::NonceReplayed)
        );
    }

    #[test]
    fn binding_step_needs_key_and_nonce_then_zeros() {
        let spki = b"spki";
        let nonce = [7u8; 32];
        let mut h = Sha256::new();
        h.update(spki);
        h.update(nonce);
        let mut rd = [0u8; 64];
        rd[..32].copy_from_slice(&h.finalize());
        assert_eq!(binding_step(&rd, spki, &nonce), Ok(()));
        assert_eq!(
            binding_step(&rd, b"other", &nonce),
            Err(EnrollRefusal::KeyNotBound)
        );
        assert_eq!(
            binding_step(&rd, spki, &[8u8; 32]),
            Err(EnrollRefusal::KeyNotBound)
        );
        let mut tail = rd;
        tail[63] = 1;
        assert_eq!(
            binding_step(&tail, spki, &nonce),
            Err(EnrollRefusal::KeyNotBound)
        );
    }

    #[test]
    fn trust_step_refuses_simulated_without_the_accounts_trust() {
        assert_eq!(trust_step(false, false), Ok(()));
        assert_eq!(trust_step(true, true), Ok(()));
        let r = trust_step(true, false).unwrap_err();
        assert_eq!(r, EnrollRefusal::SimulatedNotTrusted);
        assert_eq!(r.refusal().code, RefusalCode::SimulatedNotTrusted);
        assert_eq!(r.api_code(), "simulated_not_trusted");
        assert!(matches!(
            ServiceError::from(r),
            ServiceError::Refused {
                code: "simulated_not_trusted",
                ..
            }
        ));
    }

    #[test]
    fn node_policy_step_checks_the_zones_tcb_statuses() {
        let default = NodePolicy::default();
        assert_eq!(node_policy_step(&default, TcbStatus::UpToDate), Ok(()));
        assert_eq!(
            node_policy_step(&default, TcbStatus::SWHardeningNeeded),
            Ok(())
        );
        assert_eq!(
            node_policy_step(&default, TcbStatus::OutOfDate),
            Err(EnrollRefusal::NodePolicy(TcbStatus::OutOfDate))
        );
        let lax = NodePolicy {
            require_approval: false,
            accepted_tcb_statuses: vec![ApiTcbStatus::OutOfDate, ApiTcbStatus::Revoked],
        };
        assert_eq!(node_policy_step(&lax, TcbStatus::OutOfDate), Ok(()));
        assert_eq!(
            node_policy_step(&lax, TcbStatus::UpToDate),
            Err(EnrollRefusal::NodePolicy(TcbStatus::UpToDate))
        );
        assert_eq!(
            node_policy_step(&lax, TcbStatus::Revoked),
            Err(EnrollRefusal::NodePolicy(TcbStatus::Revoked)),
            "Revoked is never accepted"
        );
        let e = EnrollRefusal::NodePolicy(TcbStatus::OutOfDate);
        assert_eq!(e.api_code(), "node_policy");
        assert_eq!(e.refusal().code, RefusalCode::NodePolicyViolation);
        assert!(
            e.refusal().message.contains("OutOfDate"),
            "{}",
            e.refusal().message
        );
    }

    #[test]
    fn refusals_map_to_their_api_statuses() {
        assert!(matches!(
            ServiceError::from(EnrollRefusal::TokenUsed),
            ServiceError::Unauthenticated {
                code: "join_token_used",
                ..
            }
        ));
        assert!(matches!(
            ServiceError::from(EnrollRefusal::NonceReplayed),
            ServiceError::Conflict {
                code: "nonce_reused",
                ..
            }
        ));
        assert!(matches!(
            ServiceError::from(EnrollRefusal::KeyNotBound),
            ServiceError::Refused {
                code: "report_data_mismatch",
                ..
            }
        ));
        assert_eq!(
            EnrollRefusal::QuoteRejected("x".into()).refusal().code,
            RefusalCode::QuoteInvalid
        );
    }

    #[test]
    fn parse_request_names_the_bad_field() {
        let req: NodeProvisionRequest = serde_json::from_value(serde_json::json!({
            "name": "n", "ipaddress": "", "sgx_version": "",
            "nonce": STANDARD.encode([1u8; 16]),
            "attestation_request": {"ias_quote": "", "csr": ""}
        }))
        .unwrap();
        match parse_request(&req) {
            Err(ServiceError::Invalid(e)) => assert_eq!(e[0].field, "nonce"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_zone_that_requires_approval_makes_the_node_wait_for_a_task() {
        let sgx = SgxInfo {
            version: None,
            fmspc: "00906ed50000".into(),
            tcb_status: ApiTcbStatus::UpToDate,
            advisory_ids: Vec::new(),
            tcb_date: String::new(),
            ppid_hash: String::new(),
            simulated: true,
            root_fingerprint: String::new(),
        };
        assert!(node_approval(&NodePolicy::default(), "n1", &sgx).is_none());
        let strict = NodePolicy {
            require_approval: true,
            ..NodePolicy::default()
        };
        let approval = node_approval(&strict, "n1", &sgx).unwrap();
        assert_eq!(
            approval.on_approve,
            super::super::tasks::node_effect(ApprovalStatus::Approved)
        );
        assert!(
            approval.description.contains("n1"),
            "{}",
            approval.description
        );
        assert!(approval.description.contains("00906ed50000"));
        assert!(approval.description.contains("SIMULATED"));
    }
}
