//! The audit log (`GET /v1/audit`): append-only and hash-chained.
//!
//! Each entry's `hash` is the lowercase hex SHA-256 of
//! `"ccm-audit-v1\n" ‖ JSON([seq, entry_id, at, actor_user_id, actor, acct_id, action,
//! object_type, object_id, details, prev_hash])`, where the JSON is serde_json's compact encoding
//! and `details` is the entry's JSON object as stored. `prev_hash` is the previous entry's `hash`
//! ([`GENESIS_HASH`] for the first entry), so changing, removing or reordering any entry breaks
//! every later link. [`verify_chain`] checks a run of consecutive entries.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the log, starting at 1, without gaps.
    pub seq: i64,
    /// Entry id.
    pub entry_id: Uuid,
    /// When (Unix seconds).
    pub at: i64,
    /// The acting user, if a user acted.
    #[serde(default)]
    pub actor_user_id: Option<Uuid>,
    /// Who acted: a user's e-mail, `apikey:<name>`, or `system`.
    pub actor: String,
    /// The account concerned, if any.
    #[serde(default)]
    pub acct_id: Option<Uuid>,
    /// What happened, e.g. `app.create`, `task.approve`.
    pub action: String,
    /// Kind of object, e.g. `app`.
    pub object_type: String,
    /// The object's id.
    #[serde(default)]
    pub object_id: Option<Uuid>,
    /// Before/after values and related ids.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// Hash of this entry.
    pub hash: String,
}

/// A page of `GET /v1/audit?after=SEQ&limit=N`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Entries in ascending `seq` order.
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
    /// Whether the page is the whole chain (caller sees all accounts) rather than one account's
    /// entries; only then are the `prev_hash` links between entries checkable.
    pub complete_chain: bool,
}

/// Computes an entry's hash from its fields (everything but `hash`).
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    seq: i64,
    entry_id: Uuid,
    at: i64,
    actor_user_id: Option<Uuid>,
    actor: &str,
    acct_id: Option<Uuid>,
    action: &str,
    object_type: &str,
    object_id: Option<Uuid>,
    details: &serde_json::Value,
    prev_hash: &str,
) -> String {
    let body = serde_json::json!([
        seq,
        entry_id,
        at,
        actor_user_id,
        actor,
        acct_id,
        action,
        object_type,
        object_id,
        details,
        prev_hash
    ]);
    let mut h = Sha256::new();
    h.update(b"ccm-audit-v1\n");
    h.update(body.to_string().as_bytes());
    hex::encode(h.finalize())
}

impl AuditEntry {
    /// Recomputes this entry's hash from its fields.
    pub fn computed_hash(&self) -> String {
        entry_hash(
            self.seq,
            self.entry_id,
            self.at,
            self.actor_user_id,
            &self.actor,
            self.acct_id,
            &self.action,
            &self.object_type,
            self.object_id,
            &self.details,
            &self.prev_hash,
        )
    }
}

/// Why a chain failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainFault {
    /// The entry's stored hash does not match its contents.
    HashMismatch {
        /// The entry.
        seq: i64,
    },
    /// The entry's `prev_hash` is not the previous entry's hash.
    BrokenLink {
        /// The entry.
        seq: i64,
    },
    /// Entries are missing between two sequence numbers.
    Gap {
        /// Sequence number expected.
        expected: i64,
        /// Sequence number found.
        found: i64,
    },
}

impl std::fmt::Display for ChainFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::HashMismatch { seq } => {
                write!(f, "entry {seq}: hash does not match its contents")
            }
            Self::BrokenLink { seq } => {
                write!(
                    f,
                    "entry {seq}: prev_hash is not the hash of entry {}",
                    seq - 1
                )
            }
            Self::Gap { expected, found } => {
                write!(f, "entries missing: expected {expected}, found {found}")
            }
        }
    }
}

/// Verifies consecutive entries. `prev` is the hash the first entry must link to (the previous
/// page's last hash, or [`GENESIS_HASH`] with `expect_seq = 1` for the start of the log).
/// Returns the hash of the last entry on success.
pub fn verify_chain(
    entries: &[AuditEntry],
    mut prev: String,
    mut expect_seq: i64,
) -> Result<String, ChainFault> {
    for e in entries {
        if e.seq != expect_seq {
            return Err(ChainFault::Gap {
                expected: expect_seq,
                found: e.seq,
            });
        }
        if e.computed_hash() != e.hash {
            return Err(ChainFault::HashMismatch { seq: e.seq });
        }
        if e.prev_hash != prev {
            return Err(ChainFault::BrokenLink { seq: e.seq });
        }
        prev = e.hash.clone();
        expect_seq += 1;
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let mut e = AuditEntry {
                    seq,
                    entry_id: Uuid::from_u128(seq as u128),
                    at: 1_700_000_000 + seq,
                    actor_user_id: None,
                    actor: "system".into(),
                    acct_id: None,
                    action: "app.create".into(),
                    object_type: "app".into(),
                    object_id: Some(Uuid::from_u128(99)),
                    details: serde_json::json!({"name": format!("app{seq}")}),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = e.computed_hash();
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn valid_chain_verifies_and_any_change_breaks_it() {
        let c = chain(5);
        assert_eq!(verify_chain(&c, GENESIS_HASH.into(), 1).unwrap(), c[4].hash);
        let mut t = c.clone();
        t[2].details = serde_json::json!({"name": "evil"});
        assert_eq!(
            verify_chain(&t, GENESIS_HASH.into(), 1),
            Err(ChainFault::HashMismatch { seq: 3 })
        );
        let mut t = c.clone();
        t.remove(1);
        assert_eq!(
            verify_chain(&t, GENESIS_HASH.into(), 1),
            Err(ChainFault::Gap {
                expected: 2,
                found: 3
            })
        );
        // Rewriting an entry and its hash still breaks the next link.
        let mut t = c.clone();
        t[1].actor = "mallory".into();
        t[1].hash = t[1].computed_hash();
        assert_eq!(
            verify_chain(&t, GENESIS_HASH.into(), 1),
            Err(ChainFault::BrokenLink { seq: 3 })
        );
    }
}
