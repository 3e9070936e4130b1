//! Images, called builds in the API (`/v1/builds`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Container image coordinates of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerInfo {
    /// Image repository, e.g. `registry.example/python-flask-sgx`.
    pub docker_image_name: String,
    /// Tag, e.g. `1.0`.
    pub docker_version: String,
    /// Manifest digest, `sha256:<64 hex>`.
    #[serde(default)]
    pub docker_image_sha: Option<String>,
    /// Image size in MiB.
    #[serde(default)]
    pub docker_image_size: Option<i64>,
}

/// Enclave identity of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnclaveInfo {
    /// MRENCLAVE, 64 lowercase hex characters.
    pub mrenclave: String,
    /// MRSIGNER, 64 lowercase hex characters.
    pub mrsigner: String,
    /// ISV product id.
    pub isvprodid: i64,
    /// ISV security version number.
    pub isvsvn: i64,
}

/// Whitelisting state of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BuildStatusType {
    /// Waiting for the BUILD_WHITELIST task.
    Pending,
    /// Approved: may obtain certificates.
    Whitelisted,
    /// Denied.
    Rejected,
}

impl BuildStatusType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Whitelisted => "WHITELISTED",
            Self::Rejected => "REJECTED",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "WHITELISTED" => Some(Self::Whitelisted),
            "REJECTED" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// Status of a build with the time it was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BuildStatus {
    /// The status.
    pub status: BuildStatusType,
    /// When it was set.
    pub status_updated_at: i64,
}

/// `POST /v1/builds`: record an image from known values (e.g. an EDP-style app).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBuildRequest {
    /// The app this image belongs to.
    pub app_id: Uuid,
    /// Image coordinates.
    pub docker_info: DockerInfo,
    /// MRENCLAVE (64 hex characters).
    pub mrenclave: String,
    /// MRSIGNER (64 hex characters).
    pub mrsigner: String,
    /// ISV product id; defaults to the app's.
    #[serde(default)]
    pub isvprodid: Option<i64>,
    /// ISV security version number; defaults to the app's.
    #[serde(default)]
    pub isvsvn: Option<i64>,
    /// Memory size (MB); defaults to the app's.
    #[serde(default)]
    pub mem_size: Option<i64>,
    /// Threads; defaults to the app's.
    #[serde(default)]
    pub threads: Option<i64>,
}

/// An image (build).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Build {
    /// Build id.
    pub build_id: Uuid,
    /// Owning account.
    pub acct_id: Uuid,
    /// The app.
    pub app_id: Uuid,
    /// The app's name.
    pub app_name: String,
    /// Image coordinates.
    pub docker_info: DockerInfo,
    /// Enclave identity.
    pub enclave_info: EnclaveInfo,
    /// Memory size (MB).
    pub mem_size: i64,
    /// Threads.
    pub threads: i64,
    /// Whitelisting status.
    pub status: BuildStatus,
    /// The pending BUILD_WHITELIST task, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_task_id: Option<Uuid>,
    /// Creation time.
    pub created_at: i64,
    /// Last update time.
    pub updated_at: i64,
}
