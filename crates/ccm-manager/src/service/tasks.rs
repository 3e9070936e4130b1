//! Task decisions: what approving or denying a task does.
//!
//! [`effect`] decides, for every task type, what a decision changes (statuses, the domain
//! allowlist, revocation cascades with their reasons) as a typed [`Effect`]; the store writes it
//! in the transaction that records the decision ([`ccm_store::Store::decide_task`]). The same
//! functions give the effect of an approval made at once under the AUTO_APPROVE policy
//! ([`image_effect`], [`domain_effect`]).

use ccm_api::accounts::AccessRole;
use ccm_api::builds::BuildStatusType;
use ccm_api::list::PageQuery;
use ccm_api::nodes::NodeStatusType;
use ccm_api::tasks::{ApprovalStatus, DecidedTask, Task, TaskResult, TaskType, TaskUpdateRequest};
use ccm_store::{Effect, EffectStep, Page, TaskDecision, TaskFilter};
use uuid::Uuid;

use super::{ServiceError, ServiceResult, cascade, paging};
use crate::AppState;
use crate::service::caller::Acct;
use crate::service::validate::Checker;

/// Why an image's certificates are revoked when its BUILD_WHITELIST task is denied.
pub const IMAGE_REJECTED: &str = "the image was rejected";
/// Why a certificate request is rejected when its CERTIFICATE_ISSUANCE task is denied.
pub const REQUEST_DENIED: &str = "the certificate request was denied";

/// What deciding `task` does: one function per task type.
pub fn effect(task: &Task, decision: ApprovalStatus) -> ServiceResult<Effect> {
    match task.task_type {
        TaskType::BuildWhitelist => Ok(image_effect(decision)),
        TaskType::DomainWhitelist => Ok(domain_effect(decision)),
        TaskType::NodeAttestation => Ok(node_effect(decision)),
        TaskType::CertificateIssuance => certificate_effect(decision),
        TaskType::PolicyChange => policy_change_effect(task, decision),
    }
}

/// BUILD_WHITELIST: approval whitelists the image; denial rejects it and revokes the
/// certificates issued for it.
pub fn image_effect(decision: ApprovalStatus) -> Effect {
    match decision {
        ApprovalStatus::Approved => {
            Effect::of([EffectStep::SetImageStatus(BuildStatusType::Whitelisted)])
        }
        ApprovalStatus::Denied => Effect::of([
            EffectStep::SetImageStatus(BuildStatusType::Rejected),
            EffectStep::RevokeCertificates {
                reason: IMAGE_REJECTED.into(),
            },
        ]),
    }
}

/// DOMAIN_WHITELIST: approval whitelists the task's domains the app still requests; denial
/// withdraws the ones not whitelisted from the app's requested domains.
pub fn domain_effect(decision: ApprovalStatus) -> Effect {
    match decision {
        ApprovalStatus::Approved => Effect::of([EffectStep::WhitelistTaskDomains]),
        ApprovalStatus::Denied => Effect::of([EffectStep::WithdrawTaskDomains]),
    }
}

/// NODE_ATTESTATION: approval admits a node still waiting for it; denial deactivates the node
/// with its revocation cascade ([`cascade::node_denied`]).
pub fn node_effect(decision: ApprovalStatus) -> Effect {
    match decision {
        ApprovalStatus::Approved => Effect::of([EffectStep::SetNodeStatus {
            to: NodeStatusType::Provisioned,
            from: Some(NodeStatusType::Inprogress),
        }]),
        ApprovalStatus::Denied => cascade::node_denied(),
    }
}

/// CERTIFICATE_ISSUANCE: a request is issued when its image and domains are approved, so it
/// cannot be approved itself; denial rejects it.
pub fn certificate_effect(decision: ApprovalStatus) -> ServiceResult<Effect> {
    match decision {
        ApprovalStatus::Approved => Err(ServiceError::conflict(
            "invalid_state",
            "a certificate is issued when its image and domains are approved; approve those \
             tasks instead",
        )),
        ApprovalStatus::Denied => Ok(Effect::of([EffectStep::RejectCertificateRequest {
            reason: REQUEST_DENIED.into(),
        }])),
    }
}

/// POLICY_CHANGE: approval gives the app the proposed settings and denial discards them. A
/// POLICY_CHANGE without a proposal fails closed.
pub fn policy_change_effect(task: &Task, decision: ApprovalStatus) -> ServiceResult<Effect> {
    match decision {
        ApprovalStatus::Approved => task
            .proposed_policy
            .clone()
            .map(|p| Effect::of([EffectStep::SetAppPolicy(p)]))
            .ok_or_else(|| ServiceError::internal("a POLICY_CHANGE task holds no proposal")),
        ApprovalStatus::Denied => Ok(Effect::of([EffectStep::DiscardAppPolicy])),
    }
}

/// Step 1 of [`decide`]: only a MANAGER decides tasks.
fn require_manager(acct: &Acct) -> ServiceResult<()> {
    if acct.role < AccessRole::Manager {
        return Err(ServiceError::Forbidden(format!(
            "deciding a task needs the MANAGER role in the account; you have {}",
            acct.role.as_str()
        )));
    }
    Ok(())
}

/// Step 2 of [`decide`]: only a denial has a reason, of 1 to 1024 characters.
pub fn check_decision(req: &TaskUpdateRequest) -> ServiceResult<()> {
    let mut c = Checker::new();
    if let Some(r) = &req.denial_reason {
        if req.status == ApprovalStatus::Approved {
            c.err("denial_reason", "only a denial has a reason");
        }
        c.text("denial_reason", r, 1, 1024, true);
    }
    c.finish()
}

/// The account's tasks, newest first.
pub async fn list(
    s: &AppState,
    acct: &Acct,
    filter: &TaskFilter,
    q: &PageQuery,
) -> ServiceResult<Page<Task>> {
    let req = paging::page_request(q)?;
    Ok(s.store.list_tasks(acct.acct_id, filter, &req).await?)
}

/// A task of the account.
pub async fn get(s: &AppState, acct: &Acct, task_id: Uuid) -> ServiceResult<Task> {
    s.store
        .get_task(acct.acct_id, task_id)
        .await?
        .ok_or(ServiceError::NotFound("task"))
}

/// The status of a task with the object it is about, named by its kind.
pub fn result(t: &Task) -> TaskResult {
    let of = |ty: TaskType| (t.task_type == ty).then_some(t.entity_id);
    TaskResult {
        task_id: t.task_id,
        task_type: t.task_type.reference(),
        task_kind: t.task_type,
        build_id: of(TaskType::BuildWhitelist),
        app_id: of(TaskType::DomainWhitelist).or(of(TaskType::PolicyChange)),
        node_id: of(TaskType::NodeAttestation),
        certificate_id: of(TaskType::CertificateIssuance),
        task_status: t.status.clone(),
    }
}

/// A decided task with the outcome fields the reference's `PATCH /v1/tasks/{task_id}` answers.
pub fn decided(task: Task) -> DecidedTask {
    let r = result(&task);
    DecidedTask {
        task_status: r.task_status,
        build_id: r.build_id,
        app_id: r.app_id,
        node_id: r.node_id,
        certificate_id: r.certificate_id,
        task,
    }
}

/// Whether approving a task of this type may let waiting certificate requests through.
pub fn unblocks_certificates(task_type: TaskType, decision: ApprovalStatus) -> bool {
    decision == ApprovalStatus::Approved
        && matches!(
            task_type,
            TaskType::BuildWhitelist | TaskType::DomainWhitelist | TaskType::PolicyChange
        )
}

/// Decides a task in named steps: the caller must be a MANAGER; the decision must be well
/// formed; the task must exist in the account; its [`effect`] is decided; the store records the decision with that effect
/// atomically; certificate requests waiting for an approval (or judged by a changed policy) are
/// re-evaluated afterwards.
pub async fn decide(
    s: &AppState,
    acct: &Acct,
    task_id: Uuid,
    req: TaskUpdateRequest,
) -> ServiceResult<Task> {
    require_manager(acct)?;
    check_decision(&req)?;
    let task = get(s, acct, task_id).await?;
    let effect = effect(&task, req.status)?;
    let decision = TaskDecision {
        status: req.status,
        denial_reason: req.denial_reason.as_deref(),
        effect: &effect,
    };
    let task = s
        .store
        .decide_task(
            acct.acct_id,
            task_id,
            decision,
            &acct.actor(),
            s.clock.now(),
        )
        .await?;
    if unblocks_certificates(task.task_type, req.status) {
        // Certificate requests that waited for this approval are decided now.
        if let Err(e) = crate::service::issuance::process_pending(s, Some(acct.acct_id)).await {
            tracing::warn!(error = ?e, "deciding pending certificates after an approval failed");
        }
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccm_api::apps::AdvancedSettings;
    use ccm_api::tasks::{RequesterInfo, RequesterType, TaskStatus, TaskStatusType};

    fn task(task_type: TaskType, proposal: Option<AdvancedSettings>) -> Task {
        Task {
            task_id: Uuid::new_v4(),
            acct_id: Uuid::new_v4(),
            entity_id: Uuid::new_v4(),
            task_type,
            status: TaskStatus {
                created_at: 0,
                status_updated_at: 0,
                status: TaskStatusType::Inprogress,
            },
            requester_info: RequesterInfo {
                user_id: None,
                requester_name: "w@example.com".into(),
                requester_type: RequesterType::User,
            },
            description: String::new(),
            approvals: Vec::new(),
            domains_added: Vec::new(),
            proposed_policy: proposal,
        }
    }

    fn steps(task_type: TaskType, decision: ApprovalStatus) -> Vec<EffectStep> {
        effect(&task(task_type, None), decision).unwrap().steps
    }

    #[test]
    fn approving_an_image_whitelists_it() {
        assert_eq!(
            steps(TaskType::BuildWhitelist, ApprovalStatus::Approved),
            vec![EffectStep::SetImageStatus(BuildStatusType::Whitelisted)]
        );
    }

    #[test]
    fn denying_an_image_rejects_it_and_revokes_its_certificates() {
        assert_eq!(
            steps(TaskType::BuildWhitelist, ApprovalStatus::Denied),
            vec![
                EffectStep::SetImageStatus(BuildStatusType::Rejected),
                EffectStep::RevokeCertificates {
                    reason: IMAGE_REJECTED.into()
                },
            ]
        );
    }

    #[test]
    fn approving_domains_whitelists_them_and_denying_withdraws_them() {
        assert_eq!(
            steps(TaskType::DomainWhitelist, ApprovalStatus::Approved),
            vec![EffectStep::WhitelistTaskDomains]
        );
        assert_eq!(
            steps(TaskType::DomainWhitelist, ApprovalStatus::Denied),
            vec![EffectStep::WithdrawTaskDomains]
        );
    }

    #[test]
    fn approving_a_node_admits_it_only_while_it_waits() {
        assert_eq!(
            steps(TaskType::NodeAttestation, ApprovalStatus::Approved),
            vec![EffectStep::SetNodeStatus {
                to: NodeStatusType::Provisioned,
                from: Some(NodeStatusType::Inprogress),
            }]
        );
    }

    #[test]
    fn denying_a_node_deactivates_it_and_revokes_everything_it_holds() {
        assert_eq!(
            steps(TaskType::NodeAttestation, ApprovalStatus::Denied),
            vec![
                EffectStep::SetNodeStatus {
                    to: NodeStatusType::Deactivated,
                    from: None,
                },
                EffectStep::RevokeNodeIdentity,
                EffectStep::RevokeCertificates {
                    reason: cascade::NODE_DENIED.into()
                },
            ]
        );
    }

    #[test]
    fn a_certificate_request_cannot_be_approved_only_denied() {
        let t = task(TaskType::CertificateIssuance, None);
        assert!(matches!(
            effect(&t, ApprovalStatus::Approved),
            Err(ServiceError::Conflict {
                code: "invalid_state",
                ..
            })
        ));
        assert_eq!(
            steps(TaskType::CertificateIssuance, ApprovalStatus::Denied),
            vec![EffectStep::RejectCertificateRequest {
                reason: REQUEST_DENIED.into()
            }]
        );
    }

    #[test]
    fn approving_a_policy_change_applies_its_proposal() {
        let proposal = AdvancedSettings {
            allow_debug: true,
            ..AdvancedSettings::default()
        };
        let t = task(TaskType::PolicyChange, Some(proposal.clone()));
        assert_eq!(
            effect(&t, ApprovalStatus::Approved).unwrap().steps,
            vec![EffectStep::SetAppPolicy(proposal)]
        );
        assert_eq!(
            effect(&t, ApprovalStatus::Denied).unwrap().steps,
            vec![EffectStep::DiscardAppPolicy]
        );
    }

    #[test]
    fn a_policy_change_without_proposal_fails_closed() {
        let t = task(TaskType::PolicyChange, None);
        assert!(matches!(
            effect(&t, ApprovalStatus::Approved),
            Err(ServiceError::Internal(_))
        ));
    }

    #[test]
    fn only_approvals_of_images_domains_and_policies_unblock_certificates() {
        use ApprovalStatus::{Approved, Denied};
        assert!(unblocks_certificates(TaskType::BuildWhitelist, Approved));
        assert!(unblocks_certificates(TaskType::DomainWhitelist, Approved));
        assert!(unblocks_certificates(TaskType::PolicyChange, Approved));
        assert!(!unblocks_certificates(TaskType::NodeAttestation, Approved));
        assert!(!unblocks_certificates(TaskType::BuildWhitelist, Denied));
    }

    #[test]
    fn only_a_denial_has_a_reason() {
        let req = |status, reason: Option<&str>| TaskUpdateRequest {
            status,
            denial_reason: reason.map(String::from),
        };
        assert!(check_decision(&req(ApprovalStatus::Approved, None)).is_ok());
        assert!(check_decision(&req(ApprovalStatus::Denied, Some("not ours"))).is_ok());
        assert!(matches!(
            check_decision(&req(ApprovalStatus::Approved, Some("why"))),
            Err(ServiceError::Invalid(f)) if f[0].field == "denial_reason"
        ));
        assert!(check_decision(&req(ApprovalStatus::Denied, Some(""))).is_err());
        assert!(check_decision(&req(ApprovalStatus::Denied, Some(&"x".repeat(1025)))).is_err());
    }

    #[test]
    fn a_task_result_names_its_object_by_kind() {
        let t = task(TaskType::PolicyChange, None);
        let r = result(&t);
        assert_eq!(r.app_id, Some(t.entity_id));
        assert_eq!(
            (r.build_id, r.node_id, r.certificate_id),
            (None, None, None)
        );
        let t = task(TaskType::CertificateIssuance, None);
        assert_eq!(result(&t).certificate_id, Some(t.entity_id));
        assert_eq!(result(&t).app_id, None);
    }

    use crate::service::testing::Fixture;
    use ccm_api::accounts::ApprovalPolicy;
    use ccm_api::tasks::TaskStatusType as St;

    async fn node_task(f: &Fixture, acct: &Acct, node_id: Uuid) -> Task {
        let q = TaskFilter {
            entity_id: Some(node_id),
            ..TaskFilter::default()
        };
        list(&f.s, acct, &q, &PageQuery::default())
            .await
            .unwrap()
            .items
            .remove(0)
    }

    #[tokio::test]
    async fn denying_a_node_deactivates_it_and_revokes_its_certificate() {
        let f = Fixture::new().await;
        let alice = f.user("alice@example.com").await;
        let mgr = f.account(&alice, "acme", ApprovalPolicy::Manual).await;
        let (node, serial) = f.node(&mgr, "n1", true).await;
        let t = node_task(&f, &mgr, node).await;
        assert_eq!(t.task_type, TaskType::NodeAttestation);
        let deny = TaskUpdateRequest {
            status: ApprovalStatus::Denied,
            denial_reason: Some("unknown machine".into()),
        };
        let decided = decide(&f.s, &mgr, t.task_id, deny).await.unwrap();
        assert_eq!(decided.status.status, St::Denied);
        let n =
            f.s.store
                .get_node(mgr.acct_id, node)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(n.status.status, NodeStatusType::Deactivated);
        assert_eq!(n.pending_task_id, None);
        assert!(f.node_cert_revoked(&serial).await);
    }

    #[tokio::test]
    async fn approving_a_node_admits_it_and_a_writer_cannot_decide() {
        let f = Fixture::new().await;
        let alice = f.user("alice@example.com").await;
        let mgr = f.account(&alice, "acme", ApprovalPolicy::Manual).await;
        let writer = f.member(&mgr, "w@example.com", AccessRole::Writer).await;
        let (node, serial) = f.node(&mgr, "n1", true).await;
        let t = node_task(&f, &mgr, node).await;
        let approve = || TaskUpdateRequest {
            status: ApprovalStatus::Approved,
            denial_reason: None,
        };
        assert!(matches!(
            decide(&f.s, &writer, t.task_id, approve()).await,
            Err(ServiceError::Forbidden(_))
        ));
        // A reason on an approval is refused before anything is written.
        let with_reason = TaskUpdateRequest {
            denial_reason: Some("why".into()),
            ..approve()
        };
        assert!(matches!(
            decide(&f.s, &mgr, t.task_id, with_reason).await,
            Err(ServiceError::Invalid(_))
        ));
        assert_eq!(
            get(&f.s, &mgr, t.task_id).await.unwrap().status.status,
            St::Inprogress
        );
        decide(&f.s, &mgr, t.task_id, approve()).await.unwrap();
        let n =
            f.s.store
                .get_node(mgr.acct_id, node)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(n.status.status, NodeStatusType::Provisioned);
        assert!(!f.node_cert_revoked(&serial).await);
        // Decided once: a second decision conflicts and changes nothing.
        let again = decide(&f.s, &mgr, t.task_id, approve()).await;
        assert!(
            matches!(again, Err(ServiceError::Conflict { .. })),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn under_auto_approve_a_node_is_admitted_at_once() {
        let f = Fixture::new().await;
        let alice = f.user("alice@example.com").await;
        let mgr = f.account(&alice, "acme", ApprovalPolicy::AutoApprove).await;
        let (node, _) = f.node(&mgr, "n1", true).await;
        let t = node_task(&f, &mgr, node).await;
        assert_eq!(t.status.status, St::Success);
        let n =
            f.s.store
                .get_node(mgr.acct_id, node)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(n.status.status, NodeStatusType::Provisioned);
    }
}
