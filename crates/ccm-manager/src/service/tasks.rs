//! Task decisions: what approving or denying a task does.
//!
//! The store applies the effects of image, domain, node and certificate tasks by their type
//! ([`TaskEffect::ByType`]). The effect of a POLICY_CHANGE task is decided here
//! ([`policy_change_effect`]) and written by the store in the transaction that records the
//! decision, with its audit entries.

use ccm_api::accounts::AccessRole;
use ccm_api::tasks::{ApprovalStatus, Task, TaskType, TaskUpdateRequest};
use ccm_store::TaskEffect;
use uuid::Uuid;

use super::{ServiceError, ServiceResult};
use crate::AppState;
use crate::auth::Acct;

/// The effect of deciding `task`: for a POLICY_CHANGE, approval gives the app the proposed
/// settings and denial discards them; other types keep the store's effect by type. A
/// POLICY_CHANGE without a proposal fails closed.
pub fn policy_change_effect(task: &Task, decision: ApprovalStatus) -> ServiceResult<TaskEffect> {
    match (task.task_type, decision) {
        (TaskType::PolicyChange, ApprovalStatus::Approved) => task
            .proposed_policy
            .clone()
            .map(TaskEffect::SetAppPolicy)
            .ok_or_else(|| ServiceError::internal("a POLICY_CHANGE task holds no proposal")),
        (TaskType::PolicyChange, ApprovalStatus::Denied) => Ok(TaskEffect::DiscardAppPolicy),
        (
            TaskType::NodeAttestation
            | TaskType::CertificateIssuance
            | TaskType::BuildWhitelist
            | TaskType::DomainWhitelist,
            _,
        ) => Ok(TaskEffect::ByType),
    }
}

/// Decides a task (MANAGER) and applies its effect atomically; certificate requests waiting for
/// an approval (or judged by a changed policy) are re-evaluated afterwards. `check` validates the
/// request's fields.
pub async fn decide(
    s: &AppState,
    acct: &Acct,
    task_id: Uuid,
    req: TaskUpdateRequest,
) -> ServiceResult<Task> {
    if acct.role < AccessRole::Manager {
        return Err(ServiceError::Forbidden(format!(
            "deciding a task needs the MANAGER role in the account; you have {}",
            acct.role.as_str()
        )));
    }
    let task = s
        .store
        .get_task(acct.acct_id, task_id)
        .await?
        .ok_or(ServiceError::NotFound("task"))?;
    let effect = policy_change_effect(&task, req.status)?;
    let task = s
        .store
        .decide_task_with(
            acct.acct_id,
            task_id,
            req.status,
            req.denial_reason.as_deref(),
            effect,
            &acct.actor(),
            s.clock.now(),
        )
        .await?;
    if req.status == ApprovalStatus::Approved
        && matches!(
            task.task_type,
            TaskType::BuildWhitelist | TaskType::DomainWhitelist | TaskType::PolicyChange
        )
    {
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
    use ccm_api::tasks::{RequesterInfo, TaskStatus, TaskStatusType};

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
                requester_type: "USER".into(),
            },
            description: String::new(),
            approvals: Vec::new(),
            domains_added: Vec::new(),
            proposed_policy: proposal,
        }
    }

    #[test]
    fn approving_a_policy_change_applies_its_proposal() {
        let proposal = AdvancedSettings {
            allow_debug: true,
            ..AdvancedSettings::default()
        };
        let t = task(TaskType::PolicyChange, Some(proposal.clone()));
        assert_eq!(
            policy_change_effect(&t, ApprovalStatus::Approved).unwrap(),
            TaskEffect::SetAppPolicy(proposal)
        );
        assert_eq!(
            policy_change_effect(&t, ApprovalStatus::Denied).unwrap(),
            TaskEffect::DiscardAppPolicy
        );
    }

    #[test]
    fn a_policy_change_without_proposal_fails_closed() {
        let t = task(TaskType::PolicyChange, None);
        assert!(matches!(
            policy_change_effect(&t, ApprovalStatus::Approved),
            Err(ServiceError::Internal(_))
        ));
    }

    #[test]
    fn other_tasks_keep_the_effect_by_type() {
        for ty in [
            TaskType::BuildWhitelist,
            TaskType::DomainWhitelist,
            TaskType::NodeAttestation,
            TaskType::CertificateIssuance,
        ] {
            assert_eq!(
                policy_change_effect(&task(ty, None), ApprovalStatus::Approved).unwrap(),
                TaskEffect::ByType
            );
        }
    }
}
