//! Zones (`/v1/zones`), their CA and join tokens.
//!
//! # Join token format
//!
//! ```text
//! ccmjt1.<token id: 32 lowercase hex>.<secret: 43 base64url chars (32 bytes)>[.<manager certificate SHA-256: 64 lowercase hex>]
//! ```
//!
//! The id selects the stored record; the manager keeps only SHA-256 of the secret. The optional
//! last part is the SHA-256 fingerprint of the manager's TLS certificate (kubeadm's "discovery
//! token CA cert hash"), so a node agent given only the token can pin the manager it enrolls with.
//! A manager serving plain HTTP issues tokens without it. The `ccmjt1` prefix versions the format.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::Error;
use crate::accounts::ZoneCaKeyType;
use crate::apps::TcbStatus;
use crate::compat::ReferenceFields;

/// A zone's node enrollment policy (the reference's `node_enrollment`): what a node enrolling
/// with a join token of the zone must satisfy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePolicy {
    /// Whether each enrollment needs a NODE_ATTESTATION approval (default false).
    #[serde(default)]
    pub require_approval: bool,
    /// Platform TCB statuses accepted at enrollment (default `UpToDate`, `SWHardeningNeeded`).
    #[serde(default = "default_statuses")]
    pub accepted_tcb_statuses: Vec<TcbStatus>,
}

fn default_statuses() -> Vec<TcbStatus> {
    vec![TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded]
}

impl Default for NodePolicy {
    fn default() -> Self {
        Self {
            require_approval: false,
            accepted_tcb_statuses: default_statuses(),
        }
    }
}

impl ReferenceFields for NodePolicy {}

/// A zone: the account's node-enrollment domain with its own CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Zone {
    /// Zone id.
    pub zone_id: Uuid,
    /// Owning account.
    pub acct_id: Uuid,
    /// Zone name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The zone CA certificate (PEM).
    pub certificate: String,
    /// The certificate (PEM) of the zone's simulated intermediate CA, issued by the zone CA,
    /// once the zone has one: it issues every certificate resting on a simulated platform, so a
    /// relying party refuses those by not accepting this intermediate in a chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated_certificate: Option<String>,
    /// The CA key type.
    pub ca_key_type: ZoneCaKeyType,
    /// How often the zone's node agents check in with the manager (heartbeat), in seconds.
    pub node_refresh_interval: i64,
    /// A node agent renews its node certificate when less than this percentage of the
    /// certificate's validity remains.
    pub node_renewal_threshold: i64,
    /// What enrolling nodes must satisfy (also `GET /v1/zones/{zone_id}/node-policy`).
    pub node_enrollment: NodePolicy,
    /// Creation time.
    pub created_at: i64,
}

/// `PATCH /v1/zones/{zone_id}`: absent fields are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneUpdateRequest {
    /// New description (an empty string clears it; up to 1024 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New heartbeat interval of the zone's node agents, in seconds (1 to half the manager's
    /// `node_stale_after_secs`, so a node checking in on time is never counted as stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_refresh_interval: Option<i64>,
    /// New renewal threshold, in percent of a node certificate's validity (5 to 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_renewal_threshold: Option<i64>,
    /// New node enrollment policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_enrollment: Option<NodePolicy>,
}

impl ReferenceFields for ZoneUpdateRequest {}
impl ReferenceFields for JoinTokenRequest {}

/// `POST /v1/zones/{zone_id}/token`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenRequest {
    /// Lifetime in seconds (default 86400, at most 30 days).
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// Whether the token is consumed by its first successful use (default false).
    #[serde(default)]
    pub single_use: bool,
    /// A note for operators (up to 256 characters).
    #[serde(default)]
    pub description: Option<String>,
}

/// A join token as listed (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenInfo {
    /// Token id (the second part of the token string).
    pub token_id: Uuid,
    /// The zone.
    pub zone_id: Uuid,
    /// Creation time.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// Whether the token is single-use.
    pub single_use: bool,
    /// How many nodes enrolled with it.
    pub use_count: i64,
    /// When it was last used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// Creator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Uuid>,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Response of `POST /v1/zones/{zone_id}/token` and `GET /v1/zones/{zone_id}/token` (the
/// reference's `ZoneJoinToken`, with the token's metadata): the only time the token string is
/// shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ZoneJoinToken {
    /// The token string (see the module docs for its format).
    pub token: String,
    /// The token's metadata.
    #[serde(flatten)]
    pub info: JoinTokenInfo,
}

/// The prefix (and version) of join token strings.
pub const JOIN_TOKEN_PREFIX: &str = "ccmjt1";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The token id.
    pub token_id: Uuid,
    /// The 32-byte secret.
    pub secret: [u8; 32],
    /// SHA-256 of the manager's TLS certificate (DER), if the token carries it.
    pub manager_fingerprint: Option<[u8; 32]>,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("token_id", &self.token_id)
            .field("secret", &"<redacted>")
            .field(
                "manager_fingerprint",
                &self.manager_fingerprint.map(hex::encode),
            )
            .finish()
    }
}

impl JoinToken {
    /// Parses a token string. Surrounding whitespace is ignored; anything else that deviates from
    /// the format is an error naming the part at fault.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let mut parts = s.trim().split('.');
        if parts.next() != Some(JOIN_TOKEN_PREFIX) {
            return Err(Error::InvalidJoinToken("it does not start with `ccmjt1.`"));
        }
        let id = parts
            .next()
            .ok_or(Error::InvalidJoinToken("the token id is missing"))?;
        if id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::InvalidJoinToken(
                "the token id is not 32 lowercase hex digits",
            ));
        }
        let token_id = Uuid::try_parse(id)
            .map_err(|_| Error::InvalidJoinToken("the token id is not a UUID"))?;
        let secret_text = parts
            .next()
            .ok_or(Error::InvalidJoinToken("the secret is missing"))?;
        let secret: [u8; 32] = URL_SAFE_NO_PAD
            .decode(secret_text)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(Error::InvalidJoinToken(
                "the secret is not 32 bytes of unpadded base64url",
            ))?;
        let manager_fingerprint = match parts.next() {
            None => None,
            Some(fp) => {
                let fp: [u8; 32] = (fp.len() == 64)
                    .then(|| hex::decode(fp).ok())
                    .flatten()
                    .and_then(|v| v.try_into().ok())
                    .ok_or(Error::InvalidJoinToken(
                        "the manager fingerprint is not 64 hex digits",
                    ))?;
                Some(fp)
            }
        };
        if parts.next().is_some() {
            return Err(Error::InvalidJoinToken("it has more than four parts"));
        }
        Ok(Self {
            token_id,
            secret,
            manager_fingerprint,
        })
    }

    /// Formats the token string.
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{JOIN_TOKEN_PREFIX}.{}.{}",
            self.token_id.simple(),
            URL_SAFE_NO_PAD.encode(self.secret)
        );
        if let Some(fp) = self.manager_fingerprint {
            s.push('.');
            s.push_str(&hex::encode(fp));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(fp: bool) -> JoinToken {
        JoinToken {
            token_id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            secret: [7; 32],
            manager_fingerprint: fp.then_some([0xab; 32]),
        }
    }

    #[test]
    fn round_trips_with_and_without_fingerprint() {
        for fp in [false, true] {
            let t = sample(fp);
            let s = t.encode();
            assert!(s.starts_with("ccmjt1.0123456789abcdef0123456789abcdef."));
            assert_eq!(JoinToken::parse(&s).unwrap(), t);
            assert_eq!(JoinToken::parse(&format!("  {s}\n")).unwrap(), t);
        }
    }

    #[test]
    fn rejects_every_truncation_and_bad_part() {
        let s = sample(true).encode();
        for l in 0..s.len() {
            let prefix = &s[..l];
            // The one valid prefix is the token without its fingerprint part.
            if prefix == sample(false).encode() {
                continue;
            }
            assert!(JoinToken::parse(prefix).is_err(), "accepted {prefix:?}");
        }
        let bad = [
            ("ccmjt2.x", "start with"),
            (
                "ccmjt1.0123456789ABCDEF0123456789ABCDEF.AAAA",
                "lowercase hex",
            ),
            ("ccmjt1.0123456789abcdef0123456789abcdef.AAAA", "32 bytes"),
            (&format!("{s}.extra"), "more than four"),
            (&format!("{}.zz", sample(false).encode()), "fingerprint"),
        ];
        for (input, reason) in bad {
            let err = JoinToken::parse(input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input}: {err}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let d = format!("{:?}", sample(false));
        assert!(d.contains("redacted") && !d.contains("7, 7"));
    }
}
