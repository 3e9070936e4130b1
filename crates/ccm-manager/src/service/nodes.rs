//! Nodes: listing with their running application instances, one node and its certificate,
//! deactivation with its revocation cascade, the zone's node enrollment policy and enrollment
//! nonces. Enrollment itself is `service::enrollment`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_api::FieldError;
use ccm_api::accounts::AccessRole;
use ccm_api::certificates::{AppNodeInfo, CertificateDetails, CertificateStatusType};
use ccm_api::list::PageQuery;
use ccm_api::nodes::{
    EnrollmentNonce, HeartbeatRequest, HeartbeatResponse, MAX_RUNNING_APPS, Node, NodeCertificate,
    NodeRenewResponse, NodeStatusType,
};
use ccm_pki::Csr;
use ccm_store::{NodeAuth, Page};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{ServiceError, ServiceResult, cascade, certificates, enrollment, paging};
use crate::AppState;
use crate::service::attest::{self, NodePolicy};
use crate::service::caller::Acct;

/// How long an enrollment nonce is accepted.
pub const NONCE_TTL_SECS: i64 = 300;

/// Step of [`list`] and [`get`]: each node gets the instances running on it.
fn attach_instances(nodes: &mut [Node], instances: &[AppNodeInfo]) {
    for n in nodes {
        n.apps = instances
            .iter()
            .filter(|i| i.node_id == n.node_id)
            .cloned()
            .collect();
    }
}

/// The account's application instances, on one node or on all.
async fn instances(
    s: &AppState,
    acct: &Acct,
    node_id: Option<Uuid>,
) -> ServiceResult<Vec<AppNodeInfo>> {
    Ok(s.store
        .app_instances(
            acct.acct_id,
            None,
            node_id,
            s.config.node_stale_after_secs,
            s.clock.now(),
        )
        .await?)
}

/// The account's nodes with the application instances running on each.
pub async fn list(
    s: &AppState,
    acct: &Acct,
    status: Option<NodeStatusType>,
    q: &PageQuery,
) -> ServiceResult<Page<Node>> {
    let req = paging::page_request(q)?;
    let mut page = s.store.list_nodes(acct.acct_id, status, &req).await?;
    if !page.items.is_empty() {
        attach_instances(&mut page.items, &instances(s, acct, None).await?);
    }
    Ok(page)
}

/// A node of the account, without its instances.
async fn record(s: &AppState, acct: &Acct, node_id: Uuid) -> ServiceResult<Node> {
    s.store
        .get_node(acct.acct_id, node_id)
        .await?
        .ok_or(ServiceError::NotFound("node"))
}

/// A node of the account with the application instances running on it.
pub async fn get(s: &AppState, acct: &Acct, node_id: Uuid) -> ServiceResult<Node> {
    let mut node = [record(s, acct, node_id).await?];
    attach_instances(&mut node, &instances(s, acct, Some(node_id)).await?);
    let [node] = node;
    Ok(node)
}

/// Deactivates a node (MANAGER): its certificate stops working at once, the certificates issued
/// through it are revoked and its pending requests rejected ([`cascade::node_deactivated`]).
/// Deactivating a deactivated node changes nothing. Returns the node as it is now.
pub async fn deactivate(s: &AppState, acct: &Acct, node_id: Uuid) -> ServiceResult<Node> {
    acct.require(AccessRole::Manager)?;
    s.store
        .deactivate_node(
            acct.acct_id,
            node_id,
            &cascade::node_deactivated(),
            &acct.actor(),
            s.clock.now(),
        )
        .await?;
    get(s, acct, node_id).await
}

/// The node's current certificate with its status: REVOKED once the node is deactivated.
pub async fn current_certificate(
    s: &AppState,
    acct: &Acct,
    node_id: Uuid,
) -> ServiceResult<NodeCertificate> {
    let node = record(s, acct, node_id).await?;
    Ok(NodeCertificate {
        node_id,
        status: if node.status.status == NodeStatusType::Deactivated {
            CertificateStatusType::Revoked
        } else {
            CertificateStatusType::Issued
        },
        certificate: node.certificate.unwrap_or_default(),
    })
}

/// Details of the node's certificate.
pub async fn certificate_details(
    s: &AppState,
    acct: &Acct,
    node_id: Uuid,
) -> ServiceResult<CertificateDetails> {
    let node = record(s, acct, node_id).await?;
    let status = serde_json::to_value(node.sgx_info.tcb_status)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    certificates::details(
        node.certificate.as_deref().unwrap_or_default(),
        None,
        String::new(),
        status,
        node.sgx_info.simulated,
    )
}

/// The node enrollment policy of one of the account's zones.
pub async fn node_policy(s: &AppState, acct: &Acct, zone_id: Uuid) -> ServiceResult<NodePolicy> {
    s.store
        .get_zone(acct.acct_id, zone_id)
        .await?
        .ok_or(ServiceError::NotFound("zone"))?;
    attest::node_policy(s, zone_id).await
}

/// Step of [`set_node_policy`]: a policy must accept at least one TCB status.
pub fn check_node_policy(policy: &NodePolicy) -> ServiceResult<()> {
    if policy.accepted_tcb_statuses.is_empty() {
        return Err(ServiceError::invalid(
            "accepted_tcb_statuses",
            "must name at least one status",
        ));
    }
    Ok(())
}

/// Sets the node enrollment policy of one of the account's zones (MANAGER).
pub async fn set_node_policy(
    s: &AppState,
    acct: &Acct,
    zone_id: Uuid,
    policy: NodePolicy,
) -> ServiceResult<NodePolicy> {
    acct.require(AccessRole::Manager)?;
    check_node_policy(&policy)?;
    let value = serde_json::to_value(&policy).map_err(ServiceError::internal)?;
    s.store
        .set_zone_node_policy(acct.acct_id, zone_id, &value, &acct.actor(), s.clock.now())
        .await?;
    Ok(policy)
}

/// What a zone asks of its node agents: the heartbeat interval (seconds) and the renewal
/// threshold (percent of a node certificate's validity left), the manager's defaults where the
/// zone sets none.
pub async fn agent_settings(s: &AppState, zone_id: Uuid) -> ServiceResult<(u64, u32)> {
    let (interval, threshold) = s
        .store
        .zone_node_settings(zone_id)
        .await?
        .ok_or(ServiceError::NotFound("zone"))?;
    Ok((
        u64::try_from(interval).unwrap_or(s.config.node_heartbeat_interval_secs),
        u32::try_from(threshold).unwrap_or(33),
    ))
}

/// A fresh enrollment nonce for the join token presented as `bearer`: bound to the token, it
/// expires after [`NONCE_TTL_SECS`] and admits one enrollment. Only its hash is stored.
pub async fn enrollment_nonce(
    s: &AppState,
    bearer: Option<&str>,
) -> ServiceResult<EnrollmentNonce> {
    let (token, _) = enrollment::authenticate_token(s, bearer).await?;
    let mut nonce = [0u8; 32];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| ServiceError::internal("no randomness"))?;
    let now = s.clock.now();
    let expires_at = now.saturating_add(NONCE_TTL_SECS);
    s.store
        .create_enroll_nonce(
            token.token_id,
            &hex::encode(Sha256::digest(nonce)),
            now,
            expires_at,
        )
        .await?;
    Ok(EnrollmentNonce {
        nonce: STANDARD.encode(nonce),
        expires_at,
    })
}

/// A node's heartbeat: marks it RUNNING and records the application instances (certificate
/// task ids) it reports, at most [`MAX_RUNNING_APPS`].
pub async fn heartbeat(
    s: &AppState,
    node: &NodeAuth,
    req: &HeartbeatRequest,
) -> ServiceResult<HeartbeatResponse> {
    if req.running_apps.len() > MAX_RUNNING_APPS {
        return Err(ServiceError::BadRequest {
            code: "too_many_apps",
            message: format!("at most {MAX_RUNNING_APPS} running apps per heartbeat"),
        });
    }
    let running: Vec<Uuid> = req.running_apps.iter().map(|a| a.task_id).collect();
    let status = s
        .store
        .node_heartbeat(
            node.node_id,
            req.version.as_deref(),
            &running,
            s.clock.now(),
        )
        .await?
        .ok_or(ServiceError::NotFound("node"))?;
    let (heartbeat_interval_secs, renewal_threshold_percent) =
        agent_settings(s, node.zone_id).await?;
    Ok(HeartbeatResponse {
        node_id: node.node_id,
        status,
        heartbeat_interval_secs,
        renewal_threshold_percent: Some(renewal_threshold_percent),
    })
}

/// Renews a node's certificate for the key of `csr_pem` (the CSR proves possession of it),
/// from the zone CA (a simulated node's from the zone's simulated intermediate).
pub async fn renew_certificate(
    s: &AppState,
    node: &NodeAuth,
    csr_pem: &str,
) -> ServiceResult<NodeRenewResponse> {
    let csr = Csr::from_pem(csr_pem).map_err(|e| {
        ServiceError::Invalid(vec![FieldError {
            field: "csr".into(),
            message: e.to_string(),
        }])
    })?;
    let issuing =
        super::zones::issuing_ca(s, node.acct_id, node.zone_id, node.sgx_info.simulated).await?;
    let ca = attest::zone_ca(s, node.acct_id, node.zone_id).await?;
    let now = s.clock.now();
    let issued = issuing
        .ca
        .issue_node(
            csr.spki_der(),
            &node.node_id.to_string(),
            node.sgx_info.simulated,
            now,
            s.config.node_cert_validity_days.saturating_mul(86_400),
        )
        .map_err(ServiceError::internal)?;
    s.store
        .renew_node_cert(
            node.node_id,
            node.zone_id,
            &issued.pem,
            &hex::encode(&issued.serial),
            issued.not_after,
            now,
        )
        .await?;
    Ok(NodeRenewResponse {
        certificate: issued.pem,
        ca_certificate: ca.certificate_pem().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccm_api::apps::TcbStatus;

    #[test]
    fn a_policy_accepting_no_status_is_invalid() {
        let mut p = NodePolicy {
            require_approval: false,
            accepted_tcb_statuses: Vec::new(),
        };
        assert!(matches!(
            check_node_policy(&p),
            Err(ServiceError::Invalid(f)) if f[0].field == "accepted_tcb_statuses"
        ));
        p.accepted_tcb_statuses.push(TcbStatus::UpToDate);
        assert!(check_node_policy(&p).is_ok());
    }

    use crate::service::testing::Fixture;
    use ccm_api::accounts::ApprovalPolicy;

    #[tokio::test]
    async fn deactivation_needs_a_manager_and_revokes_the_node_certificate() {
        let f = Fixture::new().await;
        let alice = f.user("alice@example.com").await;
        let mgr = f.account(&alice, "acme", ApprovalPolicy::Manual).await;
        let writer = f.member(&mgr, "w@example.com", AccessRole::Writer).await;
        let (node, serial) = f.node(&mgr, "n1", false).await;

        let refused = deactivate(&f.s, &writer, node).await;
        assert!(
            matches!(refused, Err(ServiceError::Forbidden(_))),
            "{refused:?}"
        );
        assert_eq!(
            get(&f.s, &mgr, node).await.unwrap().status.status,
            NodeStatusType::Provisioned
        );
        assert!(
            !f.node_cert_revoked(&serial).await,
            "a refused deactivation changes nothing"
        );

        let n = deactivate(&f.s, &mgr, node).await.unwrap();
        assert_eq!(n.status.status, NodeStatusType::Deactivated);
        assert!(f.node_cert_revoked(&serial).await);
        // Again: nothing more happens.
        let again = deactivate(&f.s, &mgr, node).await.unwrap();
        assert_eq!(again.status, n.status);
        let log =
            f.s.store
                .list_audit(Some(mgr.acct_id), 0, 1000)
                .await
                .unwrap();
        assert_eq!(
            log.iter().filter(|e| e.action == "node.deactivate").count(),
            1
        );
    }

    #[tokio::test]
    async fn another_accounts_node_is_not_found() {
        let f = Fixture::new().await;
        let alice = f.user("alice@example.com").await;
        let mine = f.account(&alice, "acme", ApprovalPolicy::Manual).await;
        let bob = f.user("bob@example.com").await;
        let theirs = f.account(&bob, "other", ApprovalPolicy::Manual).await;
        let (node, serial) = f.node(&theirs, "n1", false).await;
        assert!(matches!(
            get(&f.s, &mine, node).await,
            Err(ServiceError::NotFound("node"))
        ));
        assert!(matches!(
            deactivate(&f.s, &mine, node).await,
            Err(ServiceError::NotFound("node"))
        ));
        assert!(!f.node_cert_revoked(&serial).await);
        assert_eq!(
            list(&f.s, &mine, None, &PageQuery::default())
                .await
                .unwrap()
                .items
                .len(),
            0
        );
        assert_eq!(
            list(&f.s, &theirs, None, &PageQuery::default())
                .await
                .unwrap()
                .items
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_zones_node_policy_is_set_by_a_manager_only() {
        let f = Fixture::new().await;
        let alice = f.user("alice@example.com").await;
        let mgr = f.account(&alice, "acme", ApprovalPolicy::Manual).await;
        let writer = f.member(&mgr, "w@example.com", AccessRole::Writer).await;
        let zone = crate::service::zones::list(&f.s, &mgr).await.unwrap()[0].zone_id;
        let strict = NodePolicy {
            require_approval: true,
            accepted_tcb_statuses: vec![TcbStatus::UpToDate],
        };
        assert!(matches!(
            set_node_policy(&f.s, &writer, zone, strict.clone()).await,
            Err(ServiceError::Forbidden(_))
        ));
        set_node_policy(&f.s, &mgr, zone, strict.clone())
            .await
            .unwrap();
        let read = node_policy(&f.s, &writer, zone).await.unwrap();
        assert!(read.require_approval);
        assert_eq!(read.accepted_tcb_statuses, strict.accepted_tcb_statuses);
        assert!(matches!(
            node_policy(&f.s, &mgr, Uuid::new_v4()).await,
            Err(ServiceError::NotFound("zone"))
        ));
    }
}
