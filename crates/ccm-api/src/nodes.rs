//! Compute nodes (`/v1/nodes`): enrollment with a join token, status, and the node agent's
//! authenticated calls to the manager (`/v1/node-agent/...`, mutual TLS with the node
//! certificate).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::apps::TcbStatus;
use crate::certificates::{AppNodeInfo, CertificateTask};

/// Life-cycle state of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeStatusType {
    /// Heartbeating and allowed to request certificates.
    Running,
    /// Enrolled, but no heartbeat for longer than the manager's timeout.
    Stopped,
    /// Enrollment failed.
    Failed,
    /// Deactivated by an operator (or its enrollment denied): its certificate no longer works.
    Deactivated,
    /// Waiting for a NODE_ATTESTATION approval.
    Inprogress,
    /// Enrolled; no heartbeat yet.
    Provisioned,
}

impl NodeStatusType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Stopped => "STOPPED",
            Self::Failed => "FAILED",
            Self::Deactivated => "DEACTIVATED",
            Self::Inprogress => "INPROGRESS",
            Self::Provisioned => "PROVISIONED",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RUNNING" => Some(Self::Running),
            "STOPPED" => Some(Self::Stopped),
            "FAILED" => Some(Self::Failed),
            "DEACTIVATED" => Some(Self::Deactivated),
            "INPROGRESS" => Some(Self::Inprogress),
            "PROVISIONED" => Some(Self::Provisioned),
            _ => None,
        }
    }

    /// Whether a node in this state may obtain certificates for applications.
    pub fn may_issue(self) -> bool {
        matches!(self, Self::Running | Self::Provisioned | Self::Stopped)
    }
}

/// Status of a node with its times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    /// The status.
    pub status: NodeStatusType,
    /// Enrollment time.
    pub created_at: i64,
    /// When the status last changed.
    pub status_updated_at: i64,
    /// Last heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<i64>,
    /// Agent version at the last heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_version: Option<String>,
}

/// What the platform's enrollment quote proved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SgxInfo {
    /// Version of the platform software the agent reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// FMSPC (12 hex digits).
    pub fmspc: String,
    /// Converged TCB status of the platform at enrollment.
    pub tcb_status: TcbStatus,
    /// Advisory ids of the TCB level.
    pub advisory_ids: Vec<String>,
    /// `tcbDate` of the matched TCB level.
    pub tcb_date: String,
    /// Hex SHA-256 of the platform's PPID (the PPID itself is not kept).
    pub ppid_hash: String,
    /// Whether the platform is simulated (its quote chains to a simulated root): SIMULATED.
    pub simulated: bool,
    /// SHA-256 of the trust root the quote chains to.
    pub root_fingerprint: String,
}

/// A compute node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    /// Node id.
    pub node_id: Uuid,
    /// Owning account.
    pub acct_id: Uuid,
    /// The zone it enrolled in.
    pub zone_id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// IP address the agent reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipaddress: Option<String>,
    /// Status.
    pub status: NodeStatus,
    /// When the platform was attested.
    pub attested_at: i64,
    /// The node's current certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// `DCAP`.
    pub attestation_type: String,
    /// The platform.
    pub sgx_info: SgxInfo,
    /// `SIMULATED` or `SGX`: a label repeating `sgx_info.simulated`.
    pub platform: String,
    /// Applications running on the node (certificates issued through it and still valid).
    #[serde(default)]
    pub apps: Vec<AppNodeInfo>,
    /// The pending NODE_ATTESTATION task, if approval is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_task_id: Option<Uuid>,
}

/// `GET /v1/nodes/{node_id}/certificate` as JSON (the reference's `Certificate`): the node's
/// current certificate. With `Accept: application/x-pem-file` the answer is the PEM alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeCertificate {
    /// The node.
    pub node_id: Uuid,
    /// `ISSUED` (a deactivated node's certificate is `REVOKED`).
    pub status: crate::certificates::CertificateStatusType,
    /// The certificate (PEM).
    pub certificate: String,
}

/// `POST /v1/nodes/nonce` (join token as bearer): a fresh enrollment nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentNonce {
    /// 32 random bytes, base64.
    pub nonce: String,
    /// When it stops being accepted.
    pub expires_at: i64,
}

/// The node's attestation evidence at enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestationRequest {
    /// The DCAP quote, base64. REPORTDATA[0..32] = SHA-256(node SubjectPublicKeyInfo DER ‖
    /// nonce), the rest zero.
    pub ias_quote: String,
    /// A PKCS#10 request (PEM) for the node key.
    pub csr: String,
    /// `DCAP` (the default).
    #[serde(default)]
    pub attestation_type: Option<String>,
}

/// `POST /v1/nodes` (join token as bearer): enroll a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeProvisionRequest {
    /// Node name (1-128 characters).
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// The node's IP address.
    pub ipaddress: String,
    /// Version of the platform software (e.g. the agent's).
    pub sgx_version: String,
    /// The nonce from `POST /v1/nodes/nonce`, base64.
    pub nonce: String,
    /// The evidence.
    pub attestation_request: AttestationRequest,
    /// The platform's collateral (`QuoteCollateralV3` JSON). Optional when the manager already
    /// holds collateral for the platform's FMSPC.
    #[serde(default)]
    pub collateral: Option<serde_json::Value>,
}

/// Response of `POST /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeEnrollment {
    /// The node.
    pub node: Node,
    /// The node certificate (PEM).
    pub certificate: String,
    /// The zone CA certificate (PEM).
    pub ca_certificate: String,
    /// How often to heartbeat (seconds): the zone's `node_refresh_interval`.
    pub heartbeat_interval_secs: u64,
    /// Renew the node certificate when less than this percentage of its validity remains: the
    /// zone's `node_renewal_threshold` (absent from older managers: 33).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_threshold_percent: Option<u32>,
}

/// One application instance the agent reports as running on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunningApp {
    /// The issuance task through which the instance obtained its (still valid) certificate.
    pub task_id: Uuid,
}

/// `POST /v1/node-agent/heartbeat` (mTLS).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The agent's version.
    #[serde(default)]
    pub version: Option<String>,
    /// Application instances running on the node.
    #[serde(default)]
    pub running_apps: Vec<RunningApp>,
}

/// Response of a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// The node.
    pub node_id: Uuid,
    /// Its status.
    pub status: NodeStatusType,
    /// How often to heartbeat (seconds): the zone's `node_refresh_interval`.
    pub heartbeat_interval_secs: u64,
    /// Renew the node certificate when less than this percentage of its validity remains: the
    /// zone's `node_renewal_threshold` (absent from older managers: 33).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_threshold_percent: Option<u32>,
}

/// `POST /v1/node-agent/certificate` (mTLS): renew the node certificate for a new key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRenewRequest {
    /// A PKCS#10 request (PEM) for the new node key.
    pub csr: String,
}

/// Response of a node certificate renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeRenewResponse {
    /// The new node certificate (PEM).
    pub certificate: String,
    /// The zone CA certificate (PEM).
    pub ca_certificate: String,
}

/// `POST /v1/node-agent/certificates` (mTLS): attested certificate issuance for an application
/// on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestedIssueRequest {
    /// The task id the agent chose (idempotency key: resubmitting returns the same task).
    pub task_id: Uuid,
    /// The application's CSR (PEM).
    pub csr: String,
    /// The application enclave's DCAP quote, base64; REPORTDATA[0..32] = SHA-256 of the CSR's
    /// SubjectPublicKeyInfo DER, REPORTDATA[32..64] = an [`IssuanceNonce`] this manager issued
    /// to this node (docs/attestation-evidence.md).
    pub quote: String,
}

/// Most nonces one [`IssuanceNonceRequest`] may ask for.
pub const MAX_NONCE_BATCH: u32 = 64;

/// `POST /v1/node-agent/nonces` (mTLS): fresh issuance nonces for workloads on the node. The
/// agent keeps a few ready and hands one to each local workload that asks
/// (`POST /v1/enclave/nonce`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuanceNonceRequest {
    /// How many (1 to [`MAX_NONCE_BATCH`]).
    pub count: u32,
}

/// A manager-issued issuance nonce: single use, bound to the node that fetched it, valid until
/// `expires_at`. A workload puts its 32 bytes into REPORTDATA[32..64] of the quote it sends with
/// its CSR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuanceNonce {
    /// The 32 nonce bytes, base64.
    pub nonce: String,
    /// When the manager stops accepting it (Unix seconds).
    pub expires_at: i64,
}

/// Response of [`IssuanceNonceRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuanceNonces {
    /// The nonces, as many as asked for.
    pub nonces: Vec<IssuanceNonce>,
}

/// Response of attested issuance and of polling it.
pub type AttestedIssueResponse = CertificateTask;

/// Most running application instances one [`HeartbeatRequest`] may list.
pub const MAX_RUNNING_APPS: usize = 10_000;

/// Most requests in one [`AttestedIssueBatch`].
pub const MAX_ISSUE_BATCH: usize = 64;

/// `POST /v1/node-agent/certificates/batch` (mTLS): several attested issuance requests of the
/// node in one call, each decided exactly as [`AttestedIssueRequest`] alone would be. The agent
/// sends the requests that arrive while earlier ones are with the manager, so one node
/// authentication, one HTTP exchange and one store transaction serve them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestedIssueBatch {
    /// The requests (1 to [`MAX_ISSUE_BATCH`], distinct task ids).
    pub requests: Vec<AttestedIssueRequest>,
}

/// The outcome of one request of a batch, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttestedIssueOutcome {
    /// The task, when the request was taken (it may be DENIED, FAILED or pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<CertificateTask>,
    /// Expiry (Unix seconds) of the issued certificate, so the agent need not parse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// Why the request was refused as a request (what the single-request endpoint answers
    /// with a 4xx status, e.g. `task_id_taken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ErrorBody>,
}

/// Response of [`AttestedIssueBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttestedIssueBatchResponse {
    /// One outcome per request, in request order.
    pub results: Vec<AttestedIssueOutcome>,
}

crate::compat::no_reference_fields!(
    NodeProvisionRequest,
    HeartbeatRequest,
    NodeRenewRequest,
    AttestedIssueRequest,
    IssuanceNonceRequest,
    AttestedIssueBatch,
);
