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

    /// The reference's type of a task of this kind: the reference (and `em-client`, which
    /// refuses any other value) knows four types. A POLICY_CHANGE, like a DOMAIN_WHITELIST, is
    /// an approval of a change to the app `entity_id`, and shows as DOMAIN_WHITELIST in
    /// `task_type`; its `task_kind` says POLICY_CHANGE.
    pub fn reference(self) -> Self {
        match self {
            Self::PolicyChange => Self::DomainWhitelist,
            other => other,
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
    /// The deciding user; `None` for decisions made by the account's auto-approve policy, which
    /// the wire shows as the nil UUID (`00000000-0000-0000-0000-000000000000`, with
    /// `user_name` `system`): the reference requires a user id on every decision.
    #[serde(default, with = "nil_for_system")]
    #[schema(value_type = Uuid)]
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

/// The user id of an auto-approval decision on the wire: the nil UUID.
mod nil_for_system {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(v: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_some(&v.unwrap_or(Uuid::nil()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
        Ok(Option::<Uuid>::deserialize(d)?.filter(|u| !u.is_nil()))
    }
}

/// What kind of requester asked for a task (the reference's `RequesterType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequesterType {
    /// A user (`user_id`, `requester_name` = the e-mail).
    User,
    /// An application (not used by ccm).
    App,
    /// The system: in ccm, a compute node (`requester_name` = the node's name) for
    /// NODE_ATTESTATION and CERTIFICATE_ISSUANCE tasks.
    System,
}

impl RequesterType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "USER",
            Self::App => "APP",
            Self::System => "SYSTEM",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "USER" => Some(Self::User),
            "APP" => Some(Self::App),
            "SYSTEM" => Some(Self::System),
            _ => None,
        }
    }
}

/// Who asked for the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequesterInfo {
    /// The requesting user, when a user caused the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// The requester's name (user e-mail or node name).
    pub requester_name: String,
    /// `USER`, or `SYSTEM` for a compute node.
    pub requester_type: RequesterType,
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
///
/// On the wire `task_type` is the reference's type ([`TaskType::reference`]) and `task_kind`
/// ccm's own, which differ for POLICY_CHANGE tasks only; in Rust, `task_type` is ccm's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "TaskWire", from = "TaskWire")]
pub struct Task {
    /// Task id.
    pub task_id: Uuid,
    /// Owning account.
    pub acct_id: Uuid,
    /// The object the task is about (app id, build id, node id, certificate id).
    pub entity_id: Uuid,
    /// Kind of task (ccm's, the wire's `task_kind`).
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
    pub domains_added: Vec<String>,
    /// For POLICY_CHANGE: the attestation policy its approval gives the app.
    pub proposed_policy: Option<crate::apps::AdvancedSettings>,
}

/// A task as the API shows it.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(as = Task)]
struct TaskWire {
    /// Task id.
    task_id: Uuid,
    /// Owning account.
    acct_id: Uuid,
    /// The object the task is about (app id, build id, node id, certificate id).
    entity_id: Uuid,
    /// The reference's type of the task: one of NODE_ATTESTATION, CERTIFICATE_ISSUANCE,
    /// BUILD_WHITELIST, DOMAIN_WHITELIST (a POLICY_CHANGE shows as DOMAIN_WHITELIST: both
    /// approve a change of the app `entity_id`).
    task_type: TaskType,
    /// ccm's type of the task: `task_type`, or POLICY_CHANGE (a change of the app's attestation
    /// policy, `proposed_policy`, waits for a MANAGER). List filters use it.
    #[serde(default)]
    task_kind: Option<TaskType>,
    /// Status.
    status: TaskStatus,
    /// Who asked.
    requester_info: RequesterInfo,
    /// Human-readable details.
    description: String,
    /// Decisions.
    approvals: Vec<ApprovalInfo>,
    /// For DOMAIN_WHITELIST: the domains to approve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    domains_added: Vec<String>,
    /// For POLICY_CHANGE: the attestation policy its approval gives the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proposed_policy: Option<crate::apps::AdvancedSettings>,
}

impl From<Task> for TaskWire {
    fn from(t: Task) -> Self {
        Self {
            task_id: t.task_id,
            acct_id: t.acct_id,
            entity_id: t.entity_id,
            task_type: t.task_type.reference(),
            task_kind: Some(t.task_type),
            status: t.status,
            requester_info: t.requester_info,
            description: t.description,
            approvals: t.approvals,
            domains_added: t.domains_added,
            proposed_policy: t.proposed_policy,
        }
    }
}

impl From<TaskWire> for Task {
    fn from(w: TaskWire) -> Self {
        Self {
            task_id: w.task_id,
            acct_id: w.acct_id,
            entity_id: w.entity_id,
            task_type: w.task_kind.unwrap_or(w.task_type),
            status: w.status,
            requester_info: w.requester_info,
            description: w.description,
            approvals: w.approvals,
            domains_added: w.domains_added,
            proposed_policy: w.proposed_policy,
        }
    }
}

impl utoipa::PartialSchema for Task {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <TaskWire as utoipa::PartialSchema>::schema()
    }
}

impl ToSchema for Task {
    fn name() -> std::borrow::Cow<'static, str> {
        "Task".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <TaskWire as ToSchema>::schemas(schemas);
    }
}

/// `GET /v1/tasks/status/{task_id}`: the outcome of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskResult {
    /// Task id.
    pub task_id: Uuid,
    /// The reference's type of the task (see [`Task`]).
    pub task_type: TaskType,
    /// ccm's type of the task (see [`Task`]).
    pub task_kind: TaskType,
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

/// Response of `PATCH /v1/tasks/{task_id}`: the decided task, with the outcome fields of
/// [`TaskResult`] (what the reference answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecidedTask {
    /// The task.
    #[serde(flatten)]
    pub task: Task,
    /// Status (the task's `status`, under the reference's name).
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

impl crate::compat::ReferenceFields for TaskUpdateRequest {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(kind: TaskType, approver: Option<Uuid>) -> Task {
        Task {
            task_id: Uuid::from_u128(1),
            acct_id: Uuid::from_u128(2),
            entity_id: Uuid::from_u128(3),
            task_type: kind,
            status: TaskStatus {
                created_at: 10,
                status_updated_at: 11,
                status: TaskStatusType::Success,
            },
            requester_info: RequesterInfo {
                user_id: None,
                requester_name: "node-1".into(),
                requester_type: RequesterType::System,
            },
            description: "d".into(),
            approvals: vec![ApprovalInfo {
                user_id: approver,
                user_name: "system".into(),
                status: ApprovalStatus::Approved,
                denial_reason: None,
                decided_at: 11,
            }],
            domains_added: Vec::new(),
            proposed_policy: None,
        }
    }

    #[test]
    fn a_policy_change_shows_the_reference_type_and_its_kind() {
        let t = task(TaskType::PolicyChange, None);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["task_type"], "DOMAIN_WHITELIST");
        assert_eq!(v["task_kind"], "POLICY_CHANGE");
        assert_eq!(serde_json::from_value::<Task>(v).unwrap(), t);
        let b = serde_json::to_value(task(TaskType::BuildWhitelist, None)).unwrap();
        assert_eq!(
            (&b["task_type"], &b["task_kind"]),
            (&json!("BUILD_WHITELIST"), &json!("BUILD_WHITELIST"))
        );
    }

    #[test]
    fn a_system_decision_has_the_nil_user_id_on_the_wire() {
        let t = task(TaskType::NodeAttestation, None);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["approvals"][0]["user_id"], Uuid::nil().to_string());
        assert_eq!(v["requester_info"]["requester_type"], "SYSTEM");
        assert_eq!(serde_json::from_value::<Task>(v).unwrap(), t);
        let u = Uuid::from_u128(9);
        let v = serde_json::to_value(task(TaskType::NodeAttestation, Some(u))).unwrap();
        assert_eq!(v["approvals"][0]["user_id"], u.to_string());
    }

    #[test]
    fn a_decided_task_carries_the_result_fields_next_to_the_task() {
        let t = task(TaskType::BuildWhitelist, None);
        let d = DecidedTask {
            task_status: t.status.clone(),
            build_id: Some(t.entity_id),
            app_id: None,
            node_id: None,
            certificate_id: None,
            task: t,
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["task_status"]["status"], "SUCCESS");
        assert_eq!(v["task_type"], "BUILD_WHITELIST");
        assert_eq!(v["build_id"], v["entity_id"]);
        assert_eq!(serde_json::from_value::<DecidedTask>(v.clone()).unwrap(), d);
        assert_eq!(serde_json::from_value::<Task>(v).unwrap(), d.task);
    }
}
