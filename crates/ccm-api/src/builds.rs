//! Images, called builds in the API (`/v1/builds`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::apps::with_reference_advanced_settings;
use crate::compat::{ReferenceField, ReferenceFields};

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
    /// The app this image belongs to (or give `app_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<Uuid>,
    /// The name of the app this image belongs to, when `app_id` is not given (if both are, they
    /// must name the same app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    /// Image coordinates, when the image is a container image. Without them, the image is known
    /// by its enclave identity alone, and an app has at most one such image per MRENCLAVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_info: Option<DockerInfo>,
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

impl ReferenceFields for CreateBuildRequest {
    fn reference_fields() -> &'static [ReferenceField] {
        const FIELDS: &[ReferenceField] = &with_reference_advanced_settings!(
            "advanced_settings.";
            ReferenceField::ignore("attributes"),
            ReferenceField::ignore("launch_hint"),
            ReferenceField::ignore("group_id"),
            ReferenceField::refuse(
                "enable_overlay_filesystem_persistence",
                "ccm runs SGX enclaves only; it has no persistent overlay file system",
            ),
        );
        FIELDS
    }
}

impl ReferenceFields for ConvertAppBuildRequest {}

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
    /// Image coordinates; absent for an image recorded from its enclave identity alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_info: Option<DockerInfo>,
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
    /// The conversion job, for images the manager converts (absent for images recorded from
    /// known values). Until it has SUCCEEDED, `enclave_info.mrenclave` and `mrsigner` are empty
    /// and no BUILD_WHITELIST task exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<Conversion>,
    /// Creation time.
    pub created_at: i64,
    /// Last update time.
    pub updated_at: i64,
}

impl Build {
    /// The image as people name it: `name:tag`, or `MRENCLAVE <hex>` for an image recorded
    /// without container coordinates.
    pub fn image_label(&self) -> String {
        match &self.docker_info {
            Some(d) => format!("{}:{}", d.docker_image_name, d.docker_version),
            None => format!("MRENCLAVE {}", self.enclave_info.mrenclave),
        }
    }

    /// The container image digest, if known.
    pub fn image_digest(&self) -> Option<&str> {
        self.docker_info
            .as_ref()
            .and_then(|d| d.docker_image_sha.as_deref())
    }
}

/// Registry credentials for a conversion (`inputAuthConfig`, `outputAuthConfig`, `authConfig`).
///
/// The manager keeps them encrypted at rest only while the conversion needs them, never logs
/// them and never returns them. `Debug` shows the user name only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// User name (for token-based registries, whatever they expect, e.g. `oauth2accesstoken`).
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `POST /v1/builds` with a conversion request (or `POST /v1/builds/convert-app`): convert the
/// app's input image into an enclave image with the app's settings, push it to the app's output
/// image, and record it. The answer (202) is the new image with its conversion QUEUED; follow it
/// with `GET /v1/builds/{build_id}` or `GET /v1/builds/{build_id}/progress`.
///
/// Tags: the output tag is `output_docker_version`, else `docker_version`, else the tag in the
/// app's output image name. The input is pulled at `input_docker_version`, else the tag or digest
/// in the app's input image name, else `docker_version`, else `latest`.
///
/// Credentials: the input registry uses `inputAuthConfig`, else `authConfig`, else (when input
/// and output are on the same registry host, as `docker login` would) `outputAuthConfig`; the
/// output registry uses `outputAuthConfig`, else `authConfig`. An image without credentials of
/// its own in the request uses the account's stored registry for its host (`/v1/registry`), if
/// any: the request's credentials win over stored ones. `registry_id` insists on a stored
/// registry (refused unless one of the images is on its host).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertAppBuildRequest {
    /// The app whose images are converted.
    pub app_id: Uuid,
    /// Tag used for both input and output (see above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    /// Tag of the input image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_docker_version: Option<String>,
    /// Tag of the output image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_docker_version: Option<String>,
    /// Credentials for pulling the input image.
    #[serde(
        default,
        rename = "inputAuthConfig",
        alias = "input_auth_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub input_auth_config: Option<AuthConfig>,
    /// Credentials for pushing the output image.
    #[serde(
        default,
        rename = "outputAuthConfig",
        alias = "output_auth_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub output_auth_config: Option<AuthConfig>,
    /// Credentials for both registries.
    #[serde(
        default,
        rename = "authConfig",
        alias = "auth_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_config: Option<AuthConfig>,
    /// Build a debug enclave (only if the app's `advanced_settings.allow_debug` is set).
    #[serde(default)]
    pub debug: bool,
    /// Memory size in MB; defaults to the app's.
    #[serde(
        default,
        rename = "memSize",
        alias = "mem_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub mem_size: Option<i64>,
    /// Thread count; defaults to the app's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<i64>,
    /// A stored registry (`/v1/registry`) whose credentials the images on its host use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_id: Option<Uuid>,
}

impl std::fmt::Debug for ConvertAppBuildRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvertAppBuildRequest")
            .field("app_id", &self.app_id)
            .field("docker_version", &self.docker_version)
            .field("input_docker_version", &self.input_docker_version)
            .field("output_docker_version", &self.output_docker_version)
            .field("input_auth_config", &self.input_auth_config)
            .field("output_auth_config", &self.output_auth_config)
            .field("auth_config", &self.auth_config)
            .field("debug", &self.debug)
            .field("mem_size", &self.mem_size)
            .field("threads", &self.threads)
            .field("registry_id", &self.registry_id)
            .finish()
    }
}

/// State of a conversion job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConversionStatus {
    /// Waiting for a manager worker.
    Queued,
    /// Being converted.
    Running,
    /// Converted, pushed and recorded; the BUILD_WHITELIST task is open (or auto-approved).
    Succeeded,
    /// Failed; `error` says why.
    Failed,
}

impl ConversionStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "QUEUED" => Some(Self::Queued),
            "RUNNING" => Some(Self::Running),
            "SUCCEEDED" => Some(Self::Succeeded),
            "FAILED" => Some(Self::Failed),
            _ => None,
        }
    }

    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// A conversion job as shown with its image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Conversion {
    /// Job state.
    pub status: ConversionStatus,
    /// What the job is doing (e.g. `copying layers`, `signing`), or `queued`, `done`, `failed`.
    pub phase: String,
    /// Estimated completion, 0-100.
    pub progress: i64,
    /// Layer bytes transferred so far.
    pub bytes_done: i64,
    /// Total layer bytes of the input, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<i64>,
    /// The input image pulled.
    pub input_image: String,
    /// The output image pushed.
    pub output_image: String,
    /// Whether a debug enclave is built.
    pub debug: bool,
    /// How many times a manager started the job (a job interrupted by a manager restart is
    /// started again, up to 3 times).
    pub attempts: i64,
    /// Why the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the job was queued.
    pub created_at: i64,
    /// When the last attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// When the job ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// Last change (progress updates included).
    pub updated_at: i64,
}

/// One line of a conversion job's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversionLogEntry {
    /// When (Unix seconds).
    pub at: i64,
    /// What happened.
    pub message: String,
}

/// `GET /v1/builds/{build_id}/progress`: the job and its log (the most recent
/// [`MAX_CONVERSION_LOG_ENTRIES`] lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversionProgress {
    /// The image.
    pub build_id: Uuid,
    /// The job.
    pub conversion: Conversion,
    /// Log lines, oldest first.
    pub log: Vec<ConversionLogEntry>,
}

/// The number of log lines a conversion job keeps (older ones are dropped).
pub const MAX_CONVERSION_LOG_ENTRIES: usize = 200;
/// The length (in characters) a conversion log line is cut to.
pub const MAX_CONVERSION_LOG_LINE: usize = 500;
