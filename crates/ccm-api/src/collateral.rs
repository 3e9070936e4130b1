//! Platform collateral the manager holds (`GET /v1/collateral`, `ccm collateral status`).
//!
//! The manager keeps one current collateral set per trusted root, FMSPC, PCK CA type, TEE and
//! TCB evaluation set (`standard` is the one in force, `early` the one Intel publishes ahead of
//! a TCB recovery), and never replaces a set with an older one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The PCK CA whose CRL a collateral set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PckCaType {
    /// Intel SGX PCK Processor CA.
    Processor,
    /// Intel SGX PCK Platform CA.
    Platform,
}

/// The TEE a collateral set is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TeeType {
    /// Intel SGX.
    Sgx,
    /// Intel TDX.
    Tdx,
}

/// Which TCB evaluation set a collateral set is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TcbUpdate {
    /// The set in force: quotes are verified with it.
    Standard,
    /// The set of the next TCB recovery, published ahead of it: used only to warn.
    Early,
}

/// Where the current collateral set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CollateralSource {
    /// Fetched from the configured PCS or PCCS.
    Pccs,
    /// Uploaded by a node agent at enrollment (accepted because it was newer).
    Upload,
    /// Imported by an operator (`ccm collateral import`).
    Import,
}

/// One current collateral set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CollateralSet {
    /// The platform family (hex).
    pub fmspc: String,
    /// SHA-256 (hex) of the root certificate the set chains to.
    pub root_fingerprint: String,
    /// Whether that root is a simulated one.
    pub simulated: bool,
    /// The PCK CA whose CRL the set holds.
    pub ca_type: PckCaType,
    /// The TEE.
    pub tee: TeeType,
    /// The TCB evaluation set.
    pub update: TcbUpdate,
    /// The TCB info's evaluation data number.
    pub tcb_evaluation_data_number: i64,
    /// The TCB info's issue date (Unix seconds).
    pub tcb_info_issued: i64,
    /// The PCK CRL's `thisUpdate` (Unix seconds).
    pub pck_crl_issued: i64,
    /// When the first of its parts expires (Unix seconds): quotes are refused after this
    /// unless newer collateral arrives.
    pub valid_until: i64,
    /// Where it came from.
    pub source: CollateralSource,
    /// When it became current (Unix seconds).
    pub updated_at: i64,
    /// When the manager last tried to fetch a newer set (Unix seconds).
    pub last_attempt_at: Option<i64>,
    /// Why that attempt failed (`None`: it succeeded, or there was none).
    pub last_error: Option<String>,
}

/// Collateral to import, or exported (`POST /v1/collateral`, `GET /v1/collateral/export`): a
/// bundle of `QuoteCollateralV3` JSON objects (dcap-qvl's serde shape), one per platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollateralBundle {
    /// The sets.
    #[schema(value_type = Vec<Object>)]
    pub collateral: Vec<serde_json::Value>,
}

/// What became of an imported set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportOutcome {
    /// It (or its newer parts) is now current.
    Current,
    /// It was no newer than the current set: nothing changed.
    Unchanged,
}

/// The answer to an import: one outcome per set, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportResponse {
    /// Outcomes.
    pub results: Vec<ImportOutcome>,
}

/// `as_str` and `parse` of an enum's wire spellings.
macro_rules! wire_spelling {
    ($ty:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $ty {
            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$v => $s),+
                }
            }

            /// Parses the wire spelling.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($s => Some(Self::$v),)+
                    _ => None,
                }
            }
        }
    };
}

wire_spelling!(PckCaType { Processor => "processor", Platform => "platform" });
wire_spelling!(TeeType { Sgx => "sgx", Tdx => "tdx" });
wire_spelling!(TcbUpdate { Standard => "standard", Early => "early" });
wire_spelling!(CollateralSource { Pccs => "pccs", Upload => "upload", Import => "import" });

crate::compat::no_reference_fields!(CollateralBundle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_spellings_are_the_serde_names() {
        for v in [PckCaType::Processor, PckCaType::Platform] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
            assert_eq!(PckCaType::parse(v.as_str()), Some(v));
        }
        for v in [TeeType::Sgx, TeeType::Tdx] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
            assert_eq!(TeeType::parse(v.as_str()), Some(v));
        }
        for v in [TcbUpdate::Standard, TcbUpdate::Early] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
            assert_eq!(TcbUpdate::parse(v.as_str()), Some(v));
        }
        for v in [
            CollateralSource::Pccs,
            CollateralSource::Upload,
            CollateralSource::Import,
        ] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
            assert_eq!(CollateralSource::parse(v.as_str()), Some(v));
        }
        assert_eq!(TeeType::parse("SGX"), None);
    }
}
