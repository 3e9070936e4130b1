//! Accounts (`/v1/accounts`) and roles.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::compat::{ReferenceField, ReferenceFields};

const NO_AUTH_CONFIGS: &str = "ccm authenticates users with passwords (and API keys) only; \
     per-account authentication methods are not implemented";

/// A user's role in an account. Ordered: `READER < WRITER < MANAGER`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessRole {
    /// Read everything in the account.
    Reader,
    /// Read, and create/update/delete apps and images.
    Writer,
    /// Everything: approve tasks, manage members, join tokens, delete the account.
    Manager,
}

impl AccessRole {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "READER",
            Self::Writer => "WRITER",
            Self::Manager => "MANAGER",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "READER" => Some(Self::Reader),
            "WRITER" => Some(Self::Writer),
            "MANAGER" => Some(Self::Manager),
            _ => None,
        }
    }
}

/// How an account's approval tasks are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApprovalPolicy {
    /// A MANAGER approves or denies each task.
    #[default]
    Manual,
    /// Tasks are approved as they are created (recorded as approved by the system).
    AutoApprove,
}

impl ApprovalPolicy {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "MANUAL",
            Self::AutoApprove => "AUTO_APPROVE",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "MANUAL" => Some(Self::Manual),
            "AUTO_APPROVE" => Some(Self::AutoApprove),
            _ => None,
        }
    }
}

/// Elliptic curve of a zone CA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub enum ZoneCaKeyType {
    /// ECDSA P-256 with SHA-256.
    #[default]
    #[serde(rename = "EC_P256")]
    EcP256,
    /// ECDSA P-384 with SHA-384.
    #[serde(rename = "EC_P384")]
    EcP384,
}

/// `POST /v1/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRequest {
    /// Account name, unique within the manager (1-128 characters).
    pub name: String,
    /// Approval policy for tasks (default `MANUAL`).
    #[serde(default)]
    pub approval_policy: Option<ApprovalPolicy>,
    /// Key type of the account's zone CA (default `EC_P256`).
    #[serde(default)]
    pub zone_ca_key_type: Option<ZoneCaKeyType>,
    /// Whether the account trusts simulated SGX platforms (default false; development and tests
    /// only).
    #[serde(default)]
    pub allow_simulated: Option<bool>,
}

impl ReferenceFields for AccountRequest {
    fn reference_fields() -> &'static [ReferenceField] {
        const FIELDS: &[ReferenceField] = &[
            ReferenceField::ignore("custom_logo"),
            ReferenceField::ignore("component"),
            ReferenceField::refuse("auth_configs", NO_AUTH_CONFIGS),
            ReferenceField::refuse(
                "node_enrollment",
                "node enrollment is set per zone: `node_enrollment` of \
                 PATCH /v1/zones/{zone_id}",
            ),
        ];
        FIELDS
    }
}

/// `PATCH /v1/accounts/{acct_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountUpdateRequest {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New approval policy.
    #[serde(default)]
    pub approval_policy: Option<ApprovalPolicy>,
    /// Whether the account trusts simulated SGX platforms (nodes and app quotes resting on a
    /// `--trust-simulated-root`). Off by default; for development and tests only.
    #[serde(default)]
    pub allow_simulated: Option<bool>,
}

impl ReferenceFields for AccountUpdateRequest {
    fn reference_fields() -> &'static [ReferenceField] {
        const FIELDS: &[ReferenceField] = &[
            ReferenceField::ignore("custom_logo"),
            ReferenceField::ignore("features"),
            ReferenceField::ignore("default_group_id"),
            ReferenceField::ignore("marketplace_group_id"),
            ReferenceField::ignore("azure_cvm_pcr_priority"),
            ReferenceField::refuse("add_auth_configs", NO_AUTH_CONFIGS),
            ReferenceField::refuse("mod_auth_configs", NO_AUTH_CONFIGS),
            ReferenceField::refuse("del_auth_configs", NO_AUTH_CONFIGS),
            ReferenceField::refuse(
                "enabled",
                "accounts cannot be disabled in ccm; remove members or delete the account",
            ),
            ReferenceField::refuse(
                "account_status",
                "accounts cannot be disabled in ccm; remove members or delete the account",
            ),
        ];
        FIELDS
    }
}

/// Counts of the objects an account owns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct ObjectCounts {
    /// Applications.
    pub apps: i64,
    /// Images (builds).
    pub builds: i64,
    /// Tasks still waiting for a decision.
    pub pending_tasks: i64,
    /// Members.
    pub users: i64,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    /// Account id.
    pub acct_id: Uuid,
    /// Unique name.
    pub name: String,
    /// Creation time.
    pub created_at: i64,
    /// Last update time.
    pub updated_at: i64,
    /// The calling user's roles in this account.
    pub roles: Vec<AccessRole>,
    /// `ACTIVE`.
    pub status: String,
    /// Approval policy for tasks.
    pub approval_policy: ApprovalPolicy,
    /// Whether the account trusts simulated SGX platforms (default false).
    #[serde(default)]
    pub allow_simulated: bool,
    /// The account's zone.
    pub zone_id: Uuid,
    /// Object counts.
    pub totals: ObjectCounts,
}
