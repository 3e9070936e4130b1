//! Collateral: the `QuoteCollateralV3` interchange format, Intel's TCB info (v3) and QE identity
//! (v2) JSON, and the TCB statuses they carry.
//!
//! The on-disk and in-test interchange format is the JSON shape of dcap-qvl's `QuoteCollateralV3`:
//! PEM chains and JSON bodies as strings, DER CRLs and raw `r ‖ s` signatures as lowercase hex.
//! The TCB info and QE identity bodies are kept as the exact text Intel signed, because the
//! signature covers those bytes and nothing else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::CollateralError;

/// Largest PEM issuer chain accepted in a collateral field.
pub const MAX_CHAIN_LEN: usize = 64 * 1024;
/// Largest DER CRL accepted in a collateral field.
pub const MAX_CRL_LEN: usize = 4 * 1024 * 1024;
/// Largest TCB info or QE identity JSON body accepted.
pub const MAX_JSON_BODY_LEN: usize = 1024 * 1024;
/// Largest `collateral.json` file accepted (all fields, hex-encoded).
pub const MAX_COLLATERAL_FILE_LEN: usize = 2 * MAX_CRL_LEN * 2 + 4 * MAX_JSON_BODY_LEN;
/// Most TCB levels accepted in one TCB info or QE identity.
pub const MAX_TCB_LEVELS: usize = 1024;

/// A TCB status as Intel's TCB info and QE identity report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TcbStatus {
    /// The platform is patched to the latest TCB.
    UpToDate,
    /// The TCB is current but software mitigations are needed (see the advisory ids).
    SWHardeningNeeded,
    /// The TCB is current but the platform configuration needs changes (see the advisory ids).
    ConfigurationNeeded,
    /// Both [`ConfigurationNeeded`](Self::ConfigurationNeeded) and
    /// [`SWHardeningNeeded`](Self::SWHardeningNeeded).
    ConfigurationAndSWHardeningNeeded,
    /// The TCB is out of date.
    OutOfDate,
    /// The TCB is out of date and the configuration needs changes.
    OutOfDateConfigurationNeeded,
    /// The TCB level is revoked: the platform's keys must not be trusted.
    Revoked,
}

impl TcbStatus {
    /// Every status, best first.
    pub const ALL: [TcbStatus; 7] = [
        TcbStatus::UpToDate,
        TcbStatus::SWHardeningNeeded,
        TcbStatus::ConfigurationNeeded,
        TcbStatus::ConfigurationAndSWHardeningNeeded,
        TcbStatus::OutOfDate,
        TcbStatus::OutOfDateConfigurationNeeded,
        TcbStatus::Revoked,
    ];

    /// The name Intel uses in JSON (`"UpToDate"`, `"SWHardeningNeeded"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
        }
    }

    /// Converges a platform TCB status with the QE's status as Intel's QVL does: a QE that is
    /// `OutOfDate` makes an up-to-date (or SW-hardening) platform `OutOfDate` and a
    /// configuration-needed platform `OutOfDateConfigurationNeeded`; a revoked QE revokes the
    /// result; any other QE status leaves the platform status unchanged.
    pub fn converge_with_qe(self, qe: TcbStatus) -> TcbStatus {
        use TcbStatus::*;
        match (qe, self) {
            (Revoked, _) => Revoked,
            (OutOfDate, UpToDate | SWHardeningNeeded) => OutOfDate,
            (OutOfDate, ConfigurationNeeded | ConfigurationAndSWHardeningNeeded) => {
                OutOfDateConfigurationNeeded
            }
            _ => self,
        }
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TcbStatus {
    type Err = CollateralError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TcbStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| CollateralError::UnknownTcbStatus(s.chars().take(64).collect()))
    }
}

/// Intel's TCB info, version 3, for SGX (the object under `"tcbInfo"`).
///
/// Field order is Intel's, so serializing with `serde_json::to_string` produces text in the same
/// layout as the PCS (the simulator signs exactly that text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcbInfo {
    /// `"SGX"`.
    pub id: String,
    /// `3`.
    pub version: u32,
    /// RFC 3339 issue date.
    pub issue_date: String,
    /// RFC 3339 date after which this TCB info must not be used.
    pub next_update: String,
    /// FMSPC, 6 bytes as hex.
    pub fmspc: String,
    /// PCE id, 2 bytes as hex.
    pub pce_id: String,
    /// `0`: the 16 SGX TCB components are the CPUSVN bytes.
    pub tcb_type: u32,
    /// Monotonic number of the TCB evaluation data set.
    pub tcb_evaluation_data_number: u32,
    /// TCB levels, highest first.
    pub tcb_levels: Vec<TcbLevel>,
}

/// One TCB level of a [`TcbInfo`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcbLevel {
    /// The component SVNs of this level.
    pub tcb: Tcb,
    /// RFC 3339 date of the TCB recovery event this level belongs to.
    pub tcb_date: String,
    /// The status of a platform at this level.
    pub tcb_status: TcbStatus,
    /// Security advisories that apply at this level.
    #[serde(rename = "advisoryIDs", default, skip_serializing_if = "Vec::is_empty")]
    pub advisory_ids: Vec<String>,
}

/// The SVNs of a [`TcbLevel`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tcb {
    /// The 16 SGX TCB components.
    pub sgxtcbcomponents: Vec<TcbComponent>,
    /// The PCE SVN.
    pub pcesvn: u16,
}

/// One SGX TCB component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcbComponent {
    /// The component's SVN.
    pub svn: u8,
    /// Intel's component category (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Intel's component type (informational).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Intel's enclave identity of the quoting enclave, version 2 (the object under
/// `"enclaveIdentity"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QeIdentity {
    /// `"QE"`.
    pub id: String,
    /// `2`.
    pub version: u32,
    /// RFC 3339 issue date.
    pub issue_date: String,
    /// RFC 3339 date after which this identity must not be used.
    pub next_update: String,
    /// Monotonic number of the TCB evaluation data set.
    pub tcb_evaluation_data_number: u32,
    /// Expected MISCSELECT, 4 bytes as hex (report byte order).
    pub miscselect: String,
    /// Mask applied to MISCSELECT before comparing.
    pub miscselect_mask: String,
    /// Expected ATTRIBUTES, 16 bytes as hex (report byte order).
    pub attributes: String,
    /// Mask applied to ATTRIBUTES before comparing.
    pub attributes_mask: String,
    /// Expected MRSIGNER, 32 bytes as hex.
    pub mrsigner: String,
    /// Expected ISVPRODID.
    pub isvprodid: u16,
    /// QE TCB levels, highest ISVSVN first.
    pub tcb_levels: Vec<QeTcbLevel>,
}

/// One TCB level of a [`QeIdentity`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QeTcbLevel {
    /// The ISVSVN of this level.
    pub tcb: QeTcb,
    /// RFC 3339 date of the TCB recovery event.
    pub tcb_date: String,
    /// The status of a QE at this level.
    pub tcb_status: TcbStatus,
    /// Security advisories that apply at this level.
    #[serde(rename = "advisoryIDs", default, skip_serializing_if = "Vec::is_empty")]
    pub advisory_ids: Vec<String>,
}

/// The ISVSVN of a [`QeTcbLevel`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QeTcb {
    /// The QE's ISVSVN.
    pub isvsvn: u16,
}

/// A validated TCB level: fixed-size components, levels sorted highest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckedTcbLevel {
    pub(crate) components: [u8; 16],
    pub(crate) pcesvn: u16,
    pub(crate) status: TcbStatus,
    pub(crate) advisory_ids: Vec<String>,
    pub(crate) tcb_date: String,
}

/// A validated SGX TCB info v3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckedTcbInfo {
    pub(crate) fmspc: [u8; 6],
    pub(crate) pce_id: [u8; 2],
    pub(crate) issue_date: u64,
    pub(crate) next_update: u64,
    pub(crate) evaluation_data_number: u32,
    pub(crate) levels: Vec<CheckedTcbLevel>,
}

/// A validated QE identity v2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckedQeIdentity {
    pub(crate) issue_date: u64,
    pub(crate) evaluation_data_number: u32,
    pub(crate) next_update: u64,
    pub(crate) miscselect: [u8; 4],
    pub(crate) miscselect_mask: [u8; 4],
    pub(crate) attributes: [u8; 16],
    pub(crate) attributes_mask: [u8; 16],
    pub(crate) mrsigner: [u8; 32],
    pub(crate) isvprodid: u16,
    /// (ISVSVN, status, advisory ids), highest ISVSVN first.
    pub(crate) levels: Vec<(u16, TcbStatus, Vec<String>)>,
}

fn hex_array<const N: usize>(field: &'static str, text: &str) -> Result<[u8; N], CollateralError> {
    let bytes = hex::decode(text).map_err(|_| CollateralError::Hex { field })?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| CollateralError::Length {
        field,
        expected: N,
        actual: bytes.len(),
    })
}

fn date(field: &'static str, text: &str) -> Result<u64, CollateralError> {
    crate::time::parse_rfc3339(text).ok_or_else(|| CollateralError::Date {
        field,
        value: text.chars().take(64).collect(),
    })
}

impl TcbInfo {
    /// Parses the exact `tcbInfo` JSON text (the signed bytes).
    pub fn from_json(text: &str) -> Result<Self, CollateralError> {
        if text.len() > MAX_JSON_BODY_LEN {
            return Err(CollateralError::TooLarge {
                field: "tcb_info",
                len: text.len(),
                max: MAX_JSON_BODY_LEN,
            });
        }
        serde_json::from_str(text).map_err(|e| CollateralError::Json {
            field: "tcb_info",
            reason: e.to_string(),
        })
    }

    /// Checks what the verifier relies on: id `SGX`, version 3, TCB type 0, FMSPC and PCEID
    /// sizes, 16 components per level, parseable dates, 1 to [`MAX_TCB_LEVELS`] levels.
    pub fn validate(&self) -> Result<(), CollateralError> {
        self.check().map(|_| ())
    }

    /// Validates the fields the verifier relies on and sorts the levels highest first (by the 16
    /// components, then PCESVN, as Intel's QVL orders them).
    pub(crate) fn check(&self) -> Result<CheckedTcbInfo, CollateralError> {
        if self.id != "SGX" || self.version != 3 {
            return Err(CollateralError::UnsupportedTcbInfo {
                id: self.id.chars().take(32).collect(),
                version: self.version,
            });
        }
        if self.tcb_type != 0 {
            return Err(CollateralError::UnsupportedTcbType(self.tcb_type));
        }
        if self.tcb_levels.is_empty() || self.tcb_levels.len() > MAX_TCB_LEVELS {
            return Err(CollateralError::TcbLevelCount(self.tcb_levels.len()));
        }
        let mut levels = Vec::with_capacity(self.tcb_levels.len());
        for level in &self.tcb_levels {
            let svns: Vec<u8> = level.tcb.sgxtcbcomponents.iter().map(|c| c.svn).collect();
            let components =
                <[u8; 16]>::try_from(svns.as_slice()).map_err(|_| CollateralError::Length {
                    field: "tcbInfo.tcbLevels.tcb.sgxtcbcomponents",
                    expected: 16,
                    actual: svns.len(),
                })?;
            date("tcbInfo.tcbLevels.tcbDate", &level.tcb_date)?;
            levels.push(CheckedTcbLevel {
                components,
                pcesvn: level.tcb.pcesvn,
                status: level.tcb_status,
                advisory_ids: level.advisory_ids.clone(),
                tcb_date: level.tcb_date.clone(),
            });
        }
        levels.sort_by(|a, b| {
            b.components
                .cmp(&a.components)
                .then_with(|| b.pcesvn.cmp(&a.pcesvn))
        });
        Ok(CheckedTcbInfo {
            fmspc: hex_array("tcbInfo.fmspc", &self.fmspc)?,
            pce_id: hex_array("tcbInfo.pceId", &self.pce_id)?,
            issue_date: date("tcbInfo.issueDate", &self.issue_date)?,
            next_update: date("tcbInfo.nextUpdate", &self.next_update)?,
            evaluation_data_number: self.tcb_evaluation_data_number,
            levels,
        })
    }
}

impl QeIdentity {
    /// Parses the exact `enclaveIdentity` JSON text (the signed bytes).
    pub fn from_json(text: &str) -> Result<Self, CollateralError> {
        if text.len() > MAX_JSON_BODY_LEN {
            return Err(CollateralError::TooLarge {
                field: "qe_identity",
                len: text.len(),
                max: MAX_JSON_BODY_LEN,
            });
        }
        serde_json::from_str(text).map_err(|e| CollateralError::Json {
            field: "qe_identity",
            reason: e.to_string(),
        })
    }

    /// Checks what the verifier relies on: id `QE`, version 2, field sizes, parseable dates, 1
    /// to [`MAX_TCB_LEVELS`] levels.
    pub fn validate(&self) -> Result<(), CollateralError> {
        self.check().map(|_| ())
    }

    /// Validates the fields the verifier relies on and sorts the levels by ISVSVN, highest first.
    pub(crate) fn check(&self) -> Result<CheckedQeIdentity, CollateralError> {
        if self.id != "QE" || self.version != 2 {
            return Err(CollateralError::UnsupportedQeIdentity {
                id: self.id.chars().take(32).collect(),
                version: self.version,
            });
        }
        if self.tcb_levels.is_empty() || self.tcb_levels.len() > MAX_TCB_LEVELS {
            return Err(CollateralError::TcbLevelCount(self.tcb_levels.len()));
        }
        let mut levels = Vec::with_capacity(self.tcb_levels.len());
        for level in &self.tcb_levels {
            date("enclaveIdentity.tcbLevels.tcbDate", &level.tcb_date)?;
            levels.push((
                level.tcb.isvsvn,
                level.tcb_status,
                level.advisory_ids.clone(),
            ));
        }
        levels.sort_by_key(|level| std::cmp::Reverse(level.0));
        Ok(CheckedQeIdentity {
            issue_date: date("enclaveIdentity.issueDate", &self.issue_date)?,
            next_update: date("enclaveIdentity.nextUpdate", &self.next_update)?,
            miscselect: hex_array("enclaveIdentity.miscselect", &self.miscselect)?,
            miscselect_mask: hex_array("enclaveIdentity.miscselectMask", &self.miscselect_mask)?,
            attributes: hex_array("enclaveIdentity.attributes", &self.attributes)?,
            attributes_mask: hex_array("enclaveIdentity.attributesMask", &self.attributes_mask)?,
            mrsigner: hex_array("enclaveIdentity.mrsigner", &self.mrsigner)?,
            isvprodid: self.isvprodid,
            evaluation_data_number: self.tcb_evaluation_data_number,
            levels,
        })
    }
}

/// The JSON shape of `collateral.json` (dcap-qvl's `QuoteCollateralV3` serde form).
#[derive(Serialize, Deserialize)]
struct CollateralJson {
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
}

/// The parts of a [`Collateral`], as fetched from a PCCS or Intel's PCS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollateralParts {
    /// PEM chain of the PCK CRL issuer: the PCK CA, then the root CA.
    pub pck_crl_issuer_chain: String,
    /// DER CRL of the root CA.
    pub root_ca_crl: Vec<u8>,
    /// DER CRL of the PCK CA.
    pub pck_crl: Vec<u8>,
    /// PEM chain of the TCB info signer: the TCB signing certificate, then the root CA.
    pub tcb_info_issuer_chain: String,
    /// The exact `tcbInfo` JSON text that was signed.
    pub tcb_info: String,
    /// ECDSA P-256 signature `r ‖ s` (64 bytes) over `tcb_info`.
    pub tcb_info_signature: Vec<u8>,
    /// PEM chain of the QE identity signer.
    pub qe_identity_issuer_chain: String,
    /// The exact `enclaveIdentity` JSON text that was signed.
    pub qe_identity: String,
    /// ECDSA P-256 signature `r ‖ s` (64 bytes) over `qe_identity`.
    pub qe_identity_signature: Vec<u8>,
}

/// Verification collateral for SGX quotes of one FMSPC (`QuoteCollateralV3`).
///
/// Immutable once built: its SHA-256 identity is computed at construction and keys the
/// verifier's cache of verified collateral, so a long-lived `Collateral` (for example in an
/// `Arc`, refreshed when the PCCS publishes new data) costs nothing to re-identify per quote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collateral {
    parts: CollateralParts,
    digest: [u8; 32],
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), CollateralError> {
    if len > max {
        Err(CollateralError::TooLarge { field, len, max })
    } else {
        Ok(())
    }
}

fn decode_hex(field: &'static str, text: &str) -> Result<Vec<u8>, CollateralError> {
    hex::decode(text).map_err(|_| CollateralError::Hex { field })
}

impl Collateral {
    /// Builds collateral from its parts, checking sizes (contents are checked by the verifier).
    pub fn new(parts: CollateralParts) -> Result<Self, CollateralError> {
        check_len(
            "pck_crl_issuer_chain",
            parts.pck_crl_issuer_chain.len(),
            MAX_CHAIN_LEN,
        )?;
        check_len(
            "tcb_info_issuer_chain",
            parts.tcb_info_issuer_chain.len(),
            MAX_CHAIN_LEN,
        )?;
        check_len(
            "qe_identity_issuer_chain",
            parts.qe_identity_issuer_chain.len(),
            MAX_CHAIN_LEN,
        )?;
        check_len("root_ca_crl", parts.root_ca_crl.len(), MAX_CRL_LEN)?;
        check_len("pck_crl", parts.pck_crl.len(), MAX_CRL_LEN)?;
        check_len("tcb_info", parts.tcb_info.len(), MAX_JSON_BODY_LEN)?;
        check_len("qe_identity", parts.qe_identity.len(), MAX_JSON_BODY_LEN)?;
        let digest = {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            for field in [
                parts.pck_crl_issuer_chain.as_bytes(),
                &parts.root_ca_crl,
                &parts.pck_crl,
                parts.tcb_info_issuer_chain.as_bytes(),
                parts.tcb_info.as_bytes(),
                &parts.tcb_info_signature,
                parts.qe_identity_issuer_chain.as_bytes(),
                parts.qe_identity.as_bytes(),
                &parts.qe_identity_signature,
            ] {
                ctx.update(&(field.len() as u64).to_le_bytes());
                ctx.update(field);
            }
            let mut out = [0u8; 32];
            out.copy_from_slice(ctx.finish().as_ref());
            out
        };
        Ok(Collateral { parts, digest })
    }

    /// Parses `collateral.json` (the `QuoteCollateralV3` JSON shape; unknown fields such as
    /// dcap-qvl's optional `pck_certificate_chain` are ignored).
    pub fn from_json(json: &[u8]) -> Result<Self, CollateralError> {
        check_len("collateral", json.len(), MAX_COLLATERAL_FILE_LEN)?;
        let raw: CollateralJson =
            serde_json::from_slice(json).map_err(|e| CollateralError::Json {
                field: "collateral",
                reason: e.to_string(),
            })?;
        Collateral::new(CollateralParts {
            pck_crl_issuer_chain: raw.pck_crl_issuer_chain,
            root_ca_crl: decode_hex("root_ca_crl", &raw.root_ca_crl)?,
            pck_crl: decode_hex("pck_crl", &raw.pck_crl)?,
            tcb_info_issuer_chain: raw.tcb_info_issuer_chain,
            tcb_info: raw.tcb_info,
            tcb_info_signature: decode_hex("tcb_info_signature", &raw.tcb_info_signature)?,
            qe_identity_issuer_chain: raw.qe_identity_issuer_chain,
            qe_identity: raw.qe_identity,
            qe_identity_signature: decode_hex("qe_identity_signature", &raw.qe_identity_signature)?,
        })
    }

    /// Serializes to the `QuoteCollateralV3` JSON shape (pretty-printed).
    pub fn to_json(&self) -> String {
        let p = &self.parts;
        let raw = CollateralJson {
            pck_crl_issuer_chain: p.pck_crl_issuer_chain.clone(),
            root_ca_crl: hex::encode(&p.root_ca_crl),
            pck_crl: hex::encode(&p.pck_crl),
            tcb_info_issuer_chain: p.tcb_info_issuer_chain.clone(),
            tcb_info: p.tcb_info.clone(),
            tcb_info_signature: hex::encode(&p.tcb_info_signature),
            qe_identity_issuer_chain: p.qe_identity_issuer_chain.clone(),
            qe_identity: p.qe_identity.clone(),
            qe_identity_signature: hex::encode(&p.qe_identity_signature),
        };
        // Serializing a struct of strings cannot fail.
        serde_json::to_string_pretty(&raw).unwrap_or_default()
    }

    /// The parts of this collateral.
    pub fn parts(&self) -> &CollateralParts {
        &self.parts
    }

    /// Takes the parts back (for example to modify and rebuild).
    pub fn into_parts(self) -> CollateralParts {
        self.parts
    }

    /// SHA-256 over all fields (length-prefixed): the identity under which verified collateral
    /// is cached.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The TCB info's FMSPC as text, without verifying anything (for indexing collateral stores).
    pub fn unverified_fmspc(&self) -> Result<[u8; 6], CollateralError> {
        let info = TcbInfo::from_json(&self.parts.tcb_info)?;
        hex_array("tcbInfo.fmspc", &info.fmspc)
    }
}

/// Splits a PCS response body such as `{"tcbInfo":{...},"signature":"..."}` into the exact text
/// of the object under `key` (the signed bytes) and the decoded signature.
///
/// The inner text is returned byte for byte as it appears in `body`, which is what Intel signs;
/// re-serializing a parsed object would change the bytes and break the signature.
pub fn split_signed_json(body: &str, key: &str) -> Result<(String, Vec<u8>), CollateralError> {
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;

    check_len("signed JSON", body.len(), MAX_JSON_BODY_LEN)?;
    let map: BTreeMap<String, &RawValue> =
        serde_json::from_str(body).map_err(|e| CollateralError::Json {
            field: "signed JSON",
            reason: e.to_string(),
        })?;
    let inner = map
        .get(key)
        .ok_or_else(|| CollateralError::MissingField(key.chars().take(64).collect()))?;
    let signature = map
        .get("signature")
        .ok_or_else(|| CollateralError::MissingField("signature".into()))?;
    let signature: String =
        serde_json::from_str(signature.get()).map_err(|e| CollateralError::Json {
            field: "signature",
            reason: e.to_string(),
        })?;
    Ok((inner.get().to_owned(), decode_hex("signature", &signature)?))
}

/// Builds a PCS-style signed body `{"<key>":<inner>,"signature":"<hex>"}` around exact inner text.
pub fn join_signed_json(key: &str, inner: &str, signature: &[u8]) -> String {
    // `key` is one of Intel's fixed names; serde_json quotes it correctly in any case.
    let key = serde_json::to_string(key).unwrap_or_default();
    format!(
        "{{{key}:{inner},\"signature\":\"{}\"}}",
        hex::encode(signature)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTEL_COLLATERAL: &[u8] = include_bytes!("../tests/data/intel-sgx-quote-collateral.json");

    #[test]
    fn parses_intel_collateral_and_round_trips() {
        let c = Collateral::from_json(INTEL_COLLATERAL).unwrap();
        let again = Collateral::from_json(c.to_json().as_bytes()).unwrap();
        assert_eq!(c, again);
        assert_eq!(
            c.unverified_fmspc().unwrap(),
            [0x00, 0xA0, 0x67, 0x11, 0x00, 0x00]
        );
        let info = TcbInfo::from_json(&c.parts().tcb_info)
            .unwrap()
            .check()
            .unwrap();
        assert_eq!(info.pce_id, [0, 0]);
        assert!(
            info.levels
                .windows(2)
                .all(|w| w[0].components >= w[1].components)
        );
        let qe = QeIdentity::from_json(&c.parts().qe_identity)
            .unwrap()
            .check()
            .unwrap();
        assert_eq!(qe.isvprodid, 1);
        assert_eq!(qe.levels[0].0, 8);
    }

    #[test]
    fn digest_changes_with_any_field() {
        let c = Collateral::from_json(INTEL_COLLATERAL).unwrap();
        let mut parts = c.clone().into_parts();
        parts.qe_identity_signature[0] ^= 1;
        assert_ne!(Collateral::new(parts).unwrap().digest(), c.digest());
        let mut parts = c.clone().into_parts();
        // Moving a byte between adjacent fields must change the digest too.
        let byte = parts.tcb_info_issuer_chain.pop().unwrap();
        parts.tcb_info.insert(0, byte);
        assert_ne!(Collateral::new(parts).unwrap().digest(), c.digest());
    }

    #[test]
    fn signed_json_split_keeps_exact_bytes() {
        let inner = r#"{"id":"QE","b":[1, 2]}"#;
        let body = join_signed_json("enclaveIdentity", inner, &[0xab; 64]);
        let (text, sig) = split_signed_json(&body, "enclaveIdentity").unwrap();
        assert_eq!(text, inner);
        assert_eq!(sig, vec![0xab; 64]);
        assert!(matches!(
            split_signed_json(&body, "tcbInfo"),
            Err(CollateralError::MissingField(f)) if f == "tcbInfo"
        ));
    }

    #[test]
    fn rejects_bad_collateral_json() {
        assert!(matches!(
            Collateral::from_json(b"{"),
            Err(CollateralError::Json { .. })
        ));
        let mut v: serde_json::Value = serde_json::from_slice(INTEL_COLLATERAL).unwrap();
        v["pck_crl"] = "zz".into();
        assert!(matches!(
            Collateral::from_json(v.to_string().as_bytes()),
            Err(CollateralError::Hex { field: "pck_crl" })
        ));
    }

    #[test]
    fn rejects_wrong_tcb_info_shapes() {
        let c = Collateral::from_json(INTEL_COLLATERAL).unwrap();
        let mut info = TcbInfo::from_json(&c.parts().tcb_info).unwrap();
        info.version = 2;
        assert!(matches!(
            info.check(),
            Err(CollateralError::UnsupportedTcbInfo { version: 2, .. })
        ));
        let mut info = TcbInfo::from_json(&c.parts().tcb_info).unwrap();
        info.tcb_levels[0].tcb.sgxtcbcomponents.pop();
        assert!(matches!(
            info.check(),
            Err(CollateralError::Length {
                expected: 16,
                actual: 15,
                ..
            })
        ));
        let mut info = TcbInfo::from_json(&c.parts().tcb_info).unwrap();
        info.fmspc = "00".into();
        assert!(matches!(
            info.check(),
            Err(CollateralError::Length {
                field: "tcbInfo.fmspc",
                ..
            })
        ));
        assert!(matches!(
            TcbInfo::from_json(r#"{"id":"SGX"}"#),
            Err(CollateralError::Json { .. })
        ));
    }

    #[test]
    fn status_convergence_matches_qvl() {
        use TcbStatus::*;
        for (platform, qe, want) in [
            (UpToDate, UpToDate, UpToDate),
            (UpToDate, OutOfDate, OutOfDate),
            (SWHardeningNeeded, OutOfDate, OutOfDate),
            (ConfigurationNeeded, OutOfDate, OutOfDateConfigurationNeeded),
            (
                ConfigurationAndSWHardeningNeeded,
                OutOfDate,
                OutOfDateConfigurationNeeded,
            ),
            (OutOfDate, OutOfDate, OutOfDate),
            (
                OutOfDateConfigurationNeeded,
                OutOfDate,
                OutOfDateConfigurationNeeded,
            ),
            (UpToDate, Revoked, Revoked),
            (ConfigurationNeeded, UpToDate, ConfigurationNeeded),
            (Revoked, UpToDate, Revoked),
        ] {
            assert_eq!(platform.converge_with_qe(qe), want, "{platform} + QE {qe}");
        }
    }

    #[test]
    fn status_names_round_trip() {
        for s in TcbStatus::ALL {
            assert_eq!(s.as_str().parse::<TcbStatus>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("Fine".parse::<TcbStatus>().is_err());
    }
}

/// Which PCK CA issued a platform's PCK certificate, and so which PCK CRL its collateral holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaType {
    /// The Intel SGX PCK Processor CA.
    Processor,
    /// The Intel SGX PCK Platform CA.
    Platform,
}

impl CaType {
    /// The PCS API's spelling (`ca=`).
    pub fn as_str(self) -> &'static str {
        match self {
            CaType::Processor => "processor",
            CaType::Platform => "platform",
        }
    }

    /// The CA type of the API spelling (`processor`, `platform`, any case).
    pub fn parse(text: &str) -> Option<CaType> {
        match text.to_ascii_lowercase().as_str() {
            "processor" => Some(CaType::Processor),
            "platform" => Some(CaType::Platform),
            _ => None,
        }
    }

    /// The CA type of a PCK CA certificate's common name ("Intel SGX PCK Processor CA" or
    /// "... Platform CA"; the simulated CA names follow Intel's).
    pub fn from_issuer_cn(cn: &str) -> Option<CaType> {
        let cn = cn.to_ascii_lowercase();
        if cn.contains("processor") {
            Some(CaType::Processor)
        } else if cn.contains("platform") {
            Some(CaType::Platform)
        } else {
            None
        }
    }
}

/// The trusted execution environment a collateral set is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tee {
    /// SGX enclaves (`sgx/certification/v4`).
    Sgx,
    /// TDX trust domains (`tdx/certification/v4`).
    Tdx,
}

impl Tee {
    /// The lower-case name (`sgx`, `tdx`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tee::Sgx => "sgx",
            Tee::Tdx => "tdx",
        }
    }

    /// The TEE of its lower-case name.
    pub fn parse(text: &str) -> Option<Tee> {
        match text {
            "sgx" => Some(Tee::Sgx),
            "tdx" => Some(Tee::Tdx),
            _ => None,
        }
    }

    /// The PCS API path of its certification endpoints, without slashes at either end.
    pub fn api_path(self) -> &'static str {
        match self {
            Tee::Sgx => "sgx/certification/v4",
            Tee::Tdx => "tdx/certification/v4",
        }
    }
}
