//! Applications (`/v1/apps`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::compat::{ReferenceField, ReferenceFields};

/// Who issues the application's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateIssuer {
    /// The account's zone CA, after attestation ("issued by the manager").
    #[default]
    ManagerCa,
}

/// Key type of the application's certificate key (generated inside the enclave).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub enum KeyType {
    /// RSA, 2048-bit modulus.
    #[default]
    #[serde(rename = "RSA_2048")]
    Rsa2048,
    /// RSA, 3072-bit modulus.
    #[serde(rename = "RSA_3072")]
    Rsa3072,
    /// ECDSA on NIST P-256.
    #[serde(rename = "EC_P256")]
    EcP256,
    /// ECDSA on NIST P-384.
    #[serde(rename = "EC_P384")]
    EcP384,
}

/// How the application obtains its TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// Issuance strategy (default `MANAGER_CA`).
    #[serde(default)]
    pub issuer: CertificateIssuer,
    /// Subject common name and SAN, a DNS name that must be among `allowed_domains`.
    pub subject: String,
    /// Key type (default `RSA_2048`).
    #[serde(default, alias = "keyType")]
    pub key_type: KeyType,
    /// Absolute path where the key is written inside the application (e.g. `/run/key.pem`).
    #[serde(alias = "keyPath")]
    pub key_path: String,
    /// Absolute path where the certificate is written (e.g. `/run/cert.pem`).
    #[serde(alias = "certPath")]
    pub cert_path: String,
    /// Optional absolute path for the CA chain.
    #[serde(default, alias = "chainPath")]
    pub chain_path: Option<String>,
}

/// Platform TCB statuses (DCAP), as the verifier reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum TcbStatus {
    /// Fully up to date.
    UpToDate,
    /// Up to date; software hardening is needed.
    SWHardeningNeeded,
    /// Platform configuration is needed.
    ConfigurationNeeded,
    /// Configuration and software hardening are needed.
    ConfigurationAndSWHardeningNeeded,
    /// Out of date.
    OutOfDate,
    /// Out of date, configuration needed.
    OutOfDateConfigurationNeeded,
    /// Revoked (never accepted).
    Revoked,
}

/// Attestation policy settings of an application. Changing them is governed: it needs the MANAGER
/// role, and in accounts with manual approvals it becomes a `POLICY_CHANGE` task that only a
/// MANAGER's approval applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvancedSettings {
    /// Whether debug enclaves may obtain certificates (default false).
    #[serde(default)]
    pub allow_debug: bool,
    /// TCB statuses accepted for nodes running this app (default `UpToDate`, `SWHardeningNeeded`).
    #[serde(default = "default_tcb_statuses")]
    pub accepted_tcb_statuses: Vec<TcbStatus>,
    /// Minimum ISVSVN accepted (default: none).
    #[serde(default)]
    pub min_isvsvn: Option<i64>,
    /// Whether enclaves on simulated platforms may obtain certificates (default false). Takes
    /// effect only when the account allows simulated platforms too.
    #[serde(default)]
    pub allow_simulated: bool,
}

fn default_tcb_statuses() -> Vec<TcbStatus> {
    vec![TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded]
}

impl Default for AdvancedSettings {
    fn default() -> Self {
        Self {
            allow_debug: false,
            accepted_tcb_statuses: default_tcb_statuses(),
            min_isvsvn: None,
            allow_simulated: false,
        }
    }
}

/// `POST /v1/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppRequest {
    /// Name, unique within the account (1-128 characters).
    pub name: String,
    /// Description (up to 1024 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// Input image reference, e.g. `registry.example/python-flask`.
    pub input_image_name: String,
    /// Output image reference, e.g. `registry.example/python-flask-sgx`.
    pub output_image_name: String,
    /// ISV product id (0-65535).
    pub isvprodid: i64,
    /// ISV security version number (0-65535).
    pub isvsvn: i64,
    /// Enclave memory size in MB (e.g. 1024 for 1 GB).
    pub mem_size: i64,
    /// Enclave thread count.
    pub threads: i64,
    /// Domains requested for the app; each addition needs approval (DOMAIN_WHITELIST task).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Certificate configuration.
    #[serde(default)]
    pub certificate: Option<CertificateConfig>,
    /// Attestation policy settings.
    #[serde(default)]
    pub advanced_settings: Option<AdvancedSettings>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// An array of reference fields: `$extra`, then the reference's `advanced_settings` fields
/// (enclave runtime options) under `$prefix` with what ccm does with them. ccm's own
/// `advanced_settings` fields are the attestation policy.
macro_rules! with_reference_advanced_settings {
    ($prefix:literal; $($extra:expr),* $(,)?) => {
        [
            $($extra,)*
            $crate::compat::ReferenceField::ignore(concat!($prefix, "entrypoint")),
            $crate::compat::ReferenceField::ignore(concat!($prefix, "java_runtime")),
            $crate::compat::ReferenceField::refuse(
                concat!($prefix, "encryptedDirs"),
                "ccm has no encrypted directories: files written at run time are not sealed",
            ),
            $crate::compat::ReferenceField::refuse(
                concat!($prefix, "rw_dirs"),
                "ccm measures every file of the image and has no unprotected read-write \
                 directories",
            ),
            $crate::compat::ReferenceField::refuse(
                concat!($prefix, "allowCmdlineArgs"),
                "the measured manifest fixes the command line; ccm does not allow run-time \
                 arguments through app settings",
            ),
            $crate::compat::ReferenceField::refuse(
                concat!($prefix, "manifestEnv"),
                "the measured environment is the image's; ccm does not add manifest variables \
                 through app settings",
            ),
            $crate::compat::ReferenceField::refuse(
                concat!($prefix, "certificate"),
                "set the app's certificate with the top-level `certificate` field",
            ),
            $crate::compat::ReferenceField::refuse(
                concat!($prefix, "caCertificate"),
                "ccm does not install CA certificates into enclaves",
            ),
        ]
    };
}
pub(crate) use with_reference_advanced_settings;

/// The reference's app fields ccm does not implement (shared by create and update).
const APP_REFERENCE_FIELDS: &[ReferenceField] = &with_reference_advanced_settings!(
    "advanced_settings.";
    ReferenceField::ignore("custom_metadata"),
    ReferenceField::ignore("group_id"),
    ReferenceField::refuse(
        "certificate_policy",
        "ccm issues app certificates by its own policy: approved images and domains, and the \
         app's advanced_settings",
    ),
    ReferenceField::refuse(
        "signers",
        "ccm identifies images by MRENCLAVE (BUILD_WHITELIST tasks), not by signers",
    ),
    ReferenceField::refuse(
        "default_build_settings",
        "give isvprodid, isvsvn, mem_size and threads at the top level",
    ),
);

impl ReferenceFields for AppRequest {
    fn reference_fields() -> &'static [ReferenceField] {
        APP_REFERENCE_FIELDS
    }
}

impl ReferenceFields for AppUpdateRequest {
    fn reference_fields() -> &'static [ReferenceField] {
        APP_REFERENCE_FIELDS
    }
}

/// `PATCH /v1/apps/{app_id}`: every field optional; absent fields are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppUpdateRequest {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New description (empty string clears it).
    #[serde(default)]
    pub description: Option<String>,
    /// New input image.
    #[serde(default)]
    pub input_image_name: Option<String>,
    /// New output image.
    #[serde(default)]
    pub output_image_name: Option<String>,
    /// New ISVPRODID.
    #[serde(default)]
    pub isvprodid: Option<i64>,
    /// New ISVSVN.
    #[serde(default)]
    pub isvsvn: Option<i64>,
    /// New memory size (MB).
    #[serde(default)]
    pub mem_size: Option<i64>,
    /// New thread count.
    #[serde(default)]
    pub threads: Option<i64>,
    /// The complete new list of allowed domains; added ones need approval, removed ones are
    /// dropped from the whitelist at once.
    #[serde(default)]
    pub allowed_domains: Option<Vec<String>>,
    /// New certificate configuration.
    #[serde(default)]
    pub certificate: Option<CertificateConfig>,
    /// New attestation policy settings (governed: see [`AdvancedSettings`]).
    #[serde(default)]
    pub advanced_settings: Option<AdvancedSettings>,
    /// New labels: a map replaces the old ones; JSON Patch operations (the reference's form)
    /// change them.
    #[serde(default)]
    pub labels: Option<LabelsUpdate>,
}

/// A change of an app's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LabelsUpdate {
    /// The new labels, replacing the old ones.
    Replace(BTreeMap<String, String>),
    /// JSON Patch operations on the labels: `add` or `replace` `/KEY` with a string value,
    /// `remove` `/KEY` (`~1` and `~0` escape `/` and `~` in keys).
    Patch(Vec<crate::registries::PatchDocument>),
}

/// An application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct App {
    /// App id.
    pub app_id: Uuid,
    /// Owning account.
    pub acct_id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Input image reference.
    pub input_image_name: String,
    /// Output image reference.
    pub output_image_name: String,
    /// ISV product id.
    pub isvprodid: i64,
    /// ISV security version number.
    pub isvsvn: i64,
    /// Memory size (MB).
    pub mem_size: i64,
    /// Threads.
    pub threads: i64,
    /// Domains requested for the app.
    pub allowed_domains: Vec<String>,
    /// Domains approved for the app.
    pub whitelisted_domains: Vec<String>,
    /// The pending DOMAIN_WHITELIST task, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_task_id: Option<Uuid>,
    /// The pending POLICY_CHANGE task proposing new `advanced_settings`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_policy_task_id: Option<Uuid>,
    /// Certificate configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateConfig>,
    /// Attestation policy settings.
    pub advanced_settings: AdvancedSettings,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: i64,
    /// Last update time.
    pub updated_at: i64,
}
