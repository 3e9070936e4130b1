//! Approval tasks (`/v1/tasks`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Kind of task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskType {
    /// A compute node asks to join (issue 5).
    NodeAttestation,
    /// An application asks for a certificate (issue 5).
    CertificateIssuance,
    /// An image asks to be whitelisted; `entity_id` is the build id.
    BuildWhitelist,
    /// An application asks for domains; `entity_id` is the app id.
    DomainWhitelist,
    /// A change of an application's attestation policy (`advanced_settings`) waits for a
    /// MANAGER; `entity_id` is the app id, `proposed_policy` the settings approval applies.
    PolicyChange,
}

impl TaskType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeAttestation => "NODE_ATTESTATION",
            Self::CertificateIssuance => "CERTIFICATE_ISSUANCE",
            Self::BuildWhitelist => "BUILD_WHITELIST",
            Self::DomainWhitelist => "DOMAIN_WHITELIST",
            Self::PolicyChange => "POLICY_CHANGE",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "NODE_ATTESTATION" => Some(Self::NodeAttestation),
            "CERTIFICATE_ISSUANCE" => Some(Self::CertificateIssuance),
            "BUILD_WHITELIST" => Some(Self::BuildWhitelist),
            "DOMAIN_WHITELIST" => Some(Self::DomainWhitelist),
            "POLICY_CHANGE" => Some(Self::PolicyChange),
            _ => None,
        }
    }
}

/// State of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatusType {
    /// Waiting for a decision.
    Inprogress,
    /// Could not be carried out.
    Failed,
    /// Approved and applied.
    Success,
    /// Denied.
    Denied,
}

impl TaskStatusType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inprogress => "INPROGRESS",
            Self::Failed => "FAILED",
            Self::Success => "SUCCESS",
            Self::Denied => "DENIED",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "INPROGRESS" => Some(Self::Inprogress),
            "FAILED" => Some(Self::Failed),
            "SUCCESS" => Some(Self::Success),
            "DENIED" => Some(Self::Denied),
            _ => None,
        }
    }
}

/// A decision on a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApprovalStatus {
    /// Approve.
    Approved,
    /// Deny.
    Denied,
}

impl ApprovalStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Denied => "DENIED",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "APPROVED" => Some(Self::Approved),
            "DENIED" => Some(Self::Denied),
            _ => None,
        }
    }
}

/// `PATCH /v1/tasks/{task_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskUpdateRequest {
    /// The decision.
    pub status: ApprovalStatus,
    /// Why it was denied (up to 1024 characters).
    #[serde(default)]
    pub denial_reason: Option<String>,
}

/// One decision recorded on a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalInfo {
    /// The deciding user; absent for decisions made by the account's auto-approve policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// The deciding user's e-mail, or `system` for auto-approval.
    pub user_name: String,
    /// The decision.
    pub status: ApprovalStatus,
    /// Why it was denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial_reason: Option<String>,
    /// When it was decided.
    pub decided_at: i64,
}

/// Who asked for the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequesterInfo {
    /// The requesting user, when a user caused the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// The requester's name (user e-mail or node name).
    pub requester_name: String,
    /// `USER` or `NODE`.
    pub requester_type: String,
}

/// State of a task with its times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskStatus {
    /// Creation time.
    pub created_at: i64,
    /// When the status last changed.
    pub status_updated_at: i64,
    /// The status.
    pub status: TaskStatusType,
}

/// A task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    /// Task id.
    pub task_id: Uuid,
    /// Owning account.
    pub acct_id: Uuid,
    /// The object the task is about (app id, build id, node id, certificate id).
    pub entity_id: Uuid,
    /// Kind of task.
    pub task_type: TaskType,
    /// Status.
    pub status: TaskStatus,
    /// Who asked.
    pub requester_info: RequesterInfo,
    /// Human-readable details.
    pub description: String,
    /// Decisions.
    pub approvals: Vec<ApprovalInfo>,
    /// For DOMAIN_WHITELIST: the domains to approve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains_added: Vec<String>,
    /// For POLICY_CHANGE: the attestation policy its approval gives the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_policy: Option<crate::apps::AdvancedSettings>,
}

/// `GET /v1/tasks/status/{task_id}`: the outcome of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskResult {
    /// Task id.
    pub task_id: Uuid,
    /// Kind of task.
    pub task_type: TaskType,
    /// Status.
    pub task_status: TaskStatus,
    /// The build, for BUILD_WHITELIST tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<Uuid>,
    /// The app, for DOMAIN_WHITELIST and POLICY_CHANGE tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<Uuid>,
    /// The node, for NODE_ATTESTATION tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<Uuid>,
    /// The certificate, for CERTIFICATE_ISSUANCE tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<Uuid>,
}
