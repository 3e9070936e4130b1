//! Application certificates (`/v1/certificates`) and certificate-issuance tasks.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::builds::EnclaveInfo;

/// State of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatusType {
    /// Waiting for an image or domain approval.
    Pending,
    /// Refused (the task says why).
    Rejected,
    /// Issued and valid.
    Issued,
    /// Revoked (listed on the zone CRL).
    Revoked,
    /// Past its validity.
    Expired,
}

impl CertificateStatusType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Rejected => "REJECTED",
            Self::Issued => "ISSUED",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "REJECTED" => Some(Self::Rejected),
            "ISSUED" => Some(Self::Issued),
            "REVOKED" => Some(Self::Revoked),
            "EXPIRED" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// A certificate (request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Certificate {
    /// Certificate id.
    pub certificate_id: Uuid,
    /// Owning account.
    pub acct_id: Uuid,
    /// Status.
    pub status: CertificateStatusType,
    /// The CSR (PEM).
    pub csr: String,
    /// The certificate chain (PEM: leaf, then the zone CA), once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The node the request came through.
    pub node_id: Uuid,
    /// The app the enclave belongs to, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<Uuid>,
    /// The image (build) the enclave runs, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<Uuid>,
    /// The CERTIFICATE_ISSUANCE task.
    pub task_id: Uuid,
    /// The DNS names requested.
    pub domains: Vec<String>,
    /// The enclave's identity from its quote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enclave_info: Option<EnclaveInfo>,
    /// Serial number (hex), once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Validity start, once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<i64>,
    /// Validity end, once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<i64>,
    /// Whether the evidence comes from a simulated platform: SIMULATED.
    pub simulated: bool,
    /// Why it was refused, is pending or was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Revocation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// Last time the node reported the instance as running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reported_at: Option<i64>,
}

/// `GET .../certificate-details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateDetails {
    /// The enclave's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enclave_info: Option<EnclaveInfo>,
    /// Subject name.
    pub subject_name: String,
    /// Issuer name.
    pub issuer_name: String,
    /// Validity end.
    pub valid_until: i64,
    /// Validity start.
    pub valid_from: i64,
    /// CPUSVN of the enclave's REPORT, hex.
    pub cpusvn: String,
    /// The platform's TCB status at issuance (named as in the reference API).
    pub ias_quote_status: String,
    /// Whether the evidence comes from a simulated platform.
    pub simulated: bool,
}

/// An application instance on a node (in `/v1/apps/{id}` as `nodes` and in `/v1/nodes/{id}`
/// as `apps`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppNodeInfo {
    /// The app.
    pub app_id: Uuid,
    /// The app's name.
    pub app_name: String,
    /// The node.
    pub node_id: Uuid,
    /// The node's name.
    pub node_name: String,
    /// The image (build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<Uuid>,
    /// MRENCLAVE, hex.
    pub mrenclave: String,
    /// The certificate the instance obtained.
    pub certificate: Certificate,
    /// When the instance first obtained a certificate.
    pub created_at: i64,
    /// Whether the instance runs (the reference's `AppStatus`).
    pub status: AppStatus,
    /// Whether the enclave runs in debug mode.
    pub is_debug: bool,
}

/// Whether an application instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppStatusType {
    /// Reported by its node's heartbeats (or recently issued).
    Running,
    /// No longer reported.
    Stopped,
}

impl AppStatusType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Stopped => "STOPPED",
        }
    }
}

/// The status of an application instance on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppStatus {
    /// `RUNNING` while reported by heartbeats (or recently issued), else `STOPPED`.
    pub status: AppStatusType,
    /// When the instance was last reported (or issued its certificate).
    pub status_updated_at: i64,
}

/// The status of a certificate-issuance task, as the node agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IssueStatus {
    /// Being processed (or the manager is not reachable yet).
    Inprogress,
    /// Could not be carried out.
    Failed,
    /// Issued.
    Success,
    /// Refused.
    Denied,
    /// Waiting for the image or a domain to be approved.
    PendingWhitelist,
}

impl IssueStatus {
    /// Whether the task is finished.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Failed | Self::Success | Self::Denied)
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inprogress => "INPROGRESS",
            Self::Failed => "FAILED",
            Self::Success => "SUCCESS",
            Self::Denied => "DENIED",
            Self::PendingWhitelist => "PENDING_WHITELIST",
        }
    }
}

/// A certificate-issuance task as the node agent's API shows it (field names as existing
/// enclave applications expect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateTask {
    /// Task id.
    pub task_id: Uuid,
    /// Status.
    pub task_status: IssueStatus,
    /// The certificate chain (PEM: leaf, zone CA) once issued, else null.
    pub certificate: Option<String>,
    /// Why it waits, failed or was denied; null on success.
    pub message: Option<String>,
}

/// `POST /v1/certificates/{id}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why (up to 1024 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /v1/apps/{app_id}`: the app with the nodes it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppWithNodes {
    /// The app.
    #[serde(flatten)]
    pub app: crate::apps::App,
    /// Instances of the app on nodes (certificates issued through them and still valid).
    #[serde(default)]
    pub nodes: Vec<AppNodeInfo>,
}

crate::compat::no_reference_fields!(RevokeRequest);
