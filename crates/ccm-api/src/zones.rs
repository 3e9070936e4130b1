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
    /// Creation time.
    pub created_at: i64,
}

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

/// Response of `POST /v1/zones/{zone_id}/token`: the only time the token string is shown.
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
