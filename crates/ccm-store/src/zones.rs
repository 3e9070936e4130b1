//! Zones and their join tokens.

use ccm_api::accounts::ZoneCaKeyType;
use ccm_api::zones::{JoinTokenInfo, NodePolicy, Zone};
use serde_json::json;
use uuid::Uuid;

use crate::util::{json, opt_uuid, uuid};
use crate::{Actor, Error, Result, Store, audit};

/// A stored zone with its sealed CA key.
#[derive(Clone)]
pub struct ZoneRecord {
    /// The zone as the API shows it.
    pub zone: Zone,
    /// The CA private key, sealed by the manager's secrets module.
    pub ca_key_sealed: Vec<u8>,
    /// The simulated intermediate CA's private key, sealed likewise, once the zone has one
    /// (its certificate is `zone.simulated_certificate`).
    pub sim_ca_key_sealed: Option<Vec<u8>>,
}

impl std::fmt::Debug for ZoneRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneRecord")
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

/// The node settings of a zone that does not set its own (the manager's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneDefaults {
    /// Seconds between node agent check-ins.
    pub node_refresh_interval: i64,
    /// Renew node certificates when less than this percentage of their validity is left.
    pub node_renewal_threshold: i64,
}

impl Default for ZoneDefaults {
    fn default() -> Self {
        Self {
            node_refresh_interval: 10,
            node_renewal_threshold: 33,
        }
    }
}

/// A change of a zone's settings (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneEdit {
    /// New description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// New heartbeat interval (seconds).
    pub node_refresh_interval: Option<i64>,
    /// New renewal threshold (percent).
    pub node_renewal_threshold: Option<i64>,
    /// New node enrollment policy.
    pub node_enrollment: Option<NodePolicy>,
}

/// A join token to store.
#[derive(Debug, Clone)]
pub struct NewJoinToken {
    /// The token's metadata.
    pub info: JoinTokenInfo,
    /// Hex SHA-256 of the token secret.
    pub secret_hash: String,
}

/// The outcome of a successful join-token use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTokenUse {
    /// The zone the node joins.
    pub zone_id: Uuid,
    /// The zone's account.
    pub acct_id: Uuid,
}

#[derive(sqlx::FromRow)]
struct ZoneRow {
    zone_id: String,
    acct_id: String,
    name: String,
    description: Option<String>,
    ca_cert_pem: String,
    ca_key_sealed: Vec<u8>,
    ca_key_type: String,
    created_at: i64,
    sim_ca_cert_pem: Option<String>,
    sim_ca_key_sealed: Option<Vec<u8>>,
    node_refresh_interval: Option<i64>,
    node_renewal_threshold: Option<i64>,
    node_policy: Option<String>,
}

impl ZoneRow {
    fn into_record(self, defaults: ZoneDefaults) -> Result<ZoneRecord> {
        let ca_key_type = match self.ca_key_type.as_str() {
            "EC_P256" => ZoneCaKeyType::EcP256,
            "EC_P384" => ZoneCaKeyType::EcP384,
            other => {
                return Err(Error::corrupt(
                    "zones.ca_key_type",
                    format!("unknown value {other:?}"),
                ));
            }
        };
        Ok(ZoneRecord {
            zone: Zone {
                zone_id: uuid("zones.zone_id", &self.zone_id)?,
                acct_id: uuid("zones.acct_id", &self.acct_id)?,
                name: self.name,
                description: self.description,
                certificate: self.ca_cert_pem,
                simulated_certificate: self.sim_ca_cert_pem,
                ca_key_type,
                node_refresh_interval: self
                    .node_refresh_interval
                    .unwrap_or(defaults.node_refresh_interval),
                node_renewal_threshold: self
                    .node_renewal_threshold
                    .unwrap_or(defaults.node_renewal_threshold),
                node_enrollment: self
                    .node_policy
                    .map(|p| json("zone_node_policy.policy", &p))
                    .transpose()?
                    .unwrap_or_default(),
                created_at: self.created_at,
            },
            ca_key_sealed: self.ca_key_sealed,
            sim_ca_key_sealed: self.sim_ca_key_sealed,
        })
    }
}

/// The zone columns with the zone's node policy (`zones z`, `zone_node_policy p`): see
/// [`ZONES_WITH_POLICY`].
const ZONE_COLS: &str = "z.zone_id, z.acct_id, z.name, z.description, z.ca_cert_pem, \
     z.ca_key_sealed, z.ca_key_type, z.created_at, z.sim_ca_cert_pem, z.sim_ca_key_sealed, \
     z.node_refresh_interval, z.node_renewal_threshold, p.policy AS node_policy";

/// The tables [`ZONE_COLS`] come from.
const ZONES_WITH_POLICY: &str = "zones z LEFT JOIN zone_node_policy p ON p.zone_id = z.zone_id";

#[derive(sqlx::FromRow)]
struct TokenRow {
    token_id: String,
    zone_id: String,
    created_at: i64,
    expires_at: i64,
    single_use: i64,
    use_count: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    created_by: Option<String>,
    description: Option<String>,
}

impl TokenRow {
    fn into_info(self) -> Result<JoinTokenInfo> {
        Ok(JoinTokenInfo {
            token_id: uuid("join_tokens.token_id", &self.token_id)?,
            zone_id: uuid("join_tokens.zone_id", &self.zone_id)?,
            created_at: self.created_at,
            expires_at: self.expires_at,
            single_use: self.single_use != 0,
            use_count: self.use_count,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
            created_by: opt_uuid("join_tokens.created_by", self.created_by.as_deref())?,
            description: self.description,
        })
    }
}

const TOKEN_COLS: &str = "token_id, zone_id, created_at, expires_at, single_use, use_count, \
     last_used_at, revoked_at, created_by, description";

impl Store {
    /// The zones of an account (one per account today).
    pub async fn list_zones(&self, acct_id: Uuid) -> Result<Vec<ZoneRecord>> {
        let rows: Vec<ZoneRow> = sqlx::query_as(&format!(
            "SELECT {ZONE_COLS} FROM {ZONES_WITH_POLICY} WHERE z.acct_id = $1 ORDER BY z.name"
        ))
        .bind(acct_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| r.into_record(self.zone_defaults))
            .collect()
    }

    /// A zone of an account; `None` if it does not exist in that account.
    pub async fn get_zone(&self, acct_id: Uuid, zone_id: Uuid) -> Result<Option<ZoneRecord>> {
        let row: Option<ZoneRow> = sqlx::query_as(&format!(
            "SELECT {ZONE_COLS} FROM {ZONES_WITH_POLICY} WHERE z.zone_id = $1 AND z.acct_id = $2"
        ))
        .bind(zone_id.to_string())
        .bind(acct_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.into_record(self.zone_defaults)).transpose()
    }

    /// A zone's node settings (`node_refresh_interval`, `node_renewal_threshold`), the
    /// configured defaults for those it does not set; `None` for an unknown zone.
    pub async fn zone_node_settings(&self, zone_id: Uuid) -> Result<Option<(i64, i64)>> {
        let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT node_refresh_interval, node_renewal_threshold FROM zones WHERE zone_id = $1",
        )
        .bind(zone_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let d = self.zone_defaults;
        Ok(row.map(|(r, t)| {
            (
                r.unwrap_or(d.node_refresh_interval),
                t.unwrap_or(d.node_renewal_threshold),
            )
        }))
    }

    /// Changes a zone's settings in one audited transaction (`zone.update`, naming what
    /// changed); returns the zone afterwards.
    pub async fn update_zone(
        &self,
        acct_id: Uuid,
        zone_id: Uuid,
        edit: &ZoneEdit,
        actor: &Actor,
        now: i64,
    ) -> Result<ZoneRecord> {
        let mut w = self.begin_write().await?;
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT zone_id FROM zones WHERE zone_id = $1 AND acct_id = $2")
                .bind(zone_id.to_string())
                .bind(acct_id.to_string())
                .fetch_optional(&mut *w.tx)
                .await?;
        if exists.is_none() {
            return Err(Error::NotFound("zone"));
        }
        let mut changed = serde_json::Map::new();
        if let Some(d) = &edit.description {
            sqlx::query("UPDATE zones SET description = $1 WHERE zone_id = $2")
                .bind(d.as_deref())
                .bind(zone_id.to_string())
                .execute(&mut *w.tx)
                .await?;
            changed.insert("description".into(), json!(d));
        }
        if let Some(v) = edit.node_refresh_interval {
            sqlx::query("UPDATE zones SET node_refresh_interval = $1 WHERE zone_id = $2")
                .bind(v)
                .bind(zone_id.to_string())
                .execute(&mut *w.tx)
                .await?;
            changed.insert("node_refresh_interval".into(), json!(v));
        }
        if let Some(v) = edit.node_renewal_threshold {
            sqlx::query("UPDATE zones SET node_renewal_threshold = $1 WHERE zone_id = $2")
                .bind(v)
                .bind(zone_id.to_string())
                .execute(&mut *w.tx)
                .await?;
            changed.insert("node_renewal_threshold".into(), json!(v));
        }
        if let Some(p) = &edit.node_enrollment {
            let policy = serde_json::to_string(p)
                .map_err(|e| Error::corrupt("zone_node_policy.policy", e.to_string()))?;
            sqlx::query(
                "INSERT INTO zone_node_policy (zone_id, policy, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (zone_id) DO UPDATE SET policy = $2, updated_at = $3",
            )
            .bind(zone_id.to_string())
            .bind(policy)
            .bind(now)
            .execute(&mut *w.tx)
            .await?;
            changed.insert("node_enrollment".into(), json!(p));
        }
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "zone.update",
            "zone",
            Some(zone_id),
            serde_json::Value::Object(changed),
        )
        .await?;
        let row: ZoneRow = sqlx::query_as(&format!(
            "SELECT {ZONE_COLS} FROM {ZONES_WITH_POLICY} WHERE z.zone_id = $1"
        ))
        .bind(zone_id.to_string())
        .fetch_one(&mut *w.tx)
        .await?;
        w.commit().await?;
        row.into_record(self.zone_defaults)
    }

    /// Gives a zone its simulated intermediate CA (certificate PEM and sealed key) unless it has
    /// one already, and returns the one the zone has afterwards: of two replicas creating it at
    /// once, both end up with the first one stored.
    pub async fn set_zone_sim_ca(
        &self,
        acct_id: Uuid,
        zone_id: Uuid,
        cert_pem: &str,
        key_sealed: &[u8],
        now: i64,
    ) -> Result<(String, Vec<u8>)> {
        let mut w = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE zones SET sim_ca_cert_pem = $1, sim_ca_key_sealed = $2 \
             WHERE zone_id = $3 AND acct_id = $4 AND sim_ca_cert_pem IS NULL",
        )
        .bind(cert_pem)
        .bind(key_sealed)
        .bind(zone_id.to_string())
        .bind(acct_id.to_string())
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        if n == 1 {
            audit::append(
                &mut w.tx,
                now,
                &Actor::system(),
                Some(acct_id),
                "zone.simulated_ca.create",
                "zone",
                Some(zone_id),
                json!({}),
            )
            .await?;
        }
        let row: Option<(Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT sim_ca_cert_pem, sim_ca_key_sealed FROM zones WHERE zone_id = $1 AND acct_id = $2",
        )
        .bind(zone_id.to_string())
        .bind(acct_id.to_string())
        .fetch_optional(&mut *w.tx)
        .await?;
        w.commit().await?;
        match row {
            Some((Some(cert), Some(key))) => Ok((cert, key)),
            Some(_) => Err(Error::corrupt(
                "zones.sim_ca_cert_pem",
                "the simulated CA was not stored",
            )),
            None => Err(Error::NotFound("zone")),
        }
    }

    /// Stores a join token for a zone of `acct_id`.
    pub async fn create_join_token(
        &self,
        acct_id: Uuid,
        t: &NewJoinToken,
        actor: &Actor,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let n = sqlx::query(&format!(
            "INSERT INTO join_tokens ({TOKEN_COLS}, acct_id, secret_hash) \
             SELECT $1, $2, $3, $4, $5, 0, NULL, NULL, $6, $7, $8, $9 \
             WHERE EXISTS (SELECT 1 FROM zones WHERE zone_id = $2 AND acct_id = $8)"
        ))
        .bind(t.info.token_id.to_string())
        .bind(t.info.zone_id.to_string())
        .bind(t.info.created_at)
        .bind(t.info.expires_at)
        .bind(i64::from(t.info.single_use))
        .bind(t.info.created_by.map(|u| u.to_string()))
        .bind(&t.info.description)
        .bind(acct_id.to_string())
        .bind(&t.secret_hash)
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(Error::NotFound("zone"));
        }
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "join_token.create",
            "join_token",
            Some(t.info.token_id),
            json!({"zone_id": t.info.zone_id, "expires_at": t.info.expires_at, "single_use": t.info.single_use}),
        )
        .await?;
        w.commit().await
    }

    /// Lists a zone's join tokens, newest first.
    pub async fn list_join_tokens(
        &self,
        acct_id: Uuid,
        zone_id: Uuid,
    ) -> Result<Vec<JoinTokenInfo>> {
        let rows: Vec<TokenRow> = sqlx::query_as(&format!(
            "SELECT {TOKEN_COLS} FROM join_tokens WHERE zone_id = $1 AND acct_id = $2 \
             ORDER BY created_at DESC, token_id"
        ))
        .bind(zone_id.to_string())
        .bind(acct_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TokenRow::into_info).collect()
    }

    /// Revokes a join token at once. Revoking a revoked token is a no-op.
    pub async fn revoke_join_token(
        &self,
        acct_id: Uuid,
        zone_id: Uuid,
        token_id: Uuid,
        actor: &Actor,
        now: i64,
    ) -> Result<JoinTokenInfo> {
        let mut w = self.begin_write().await?;
        let row: Option<TokenRow> = sqlx::query_as(&format!(
            "UPDATE join_tokens SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE token_id = $2 AND zone_id = $3 AND acct_id = $4 RETURNING {TOKEN_COLS}"
        ))
        .bind(now)
        .bind(token_id.to_string())
        .bind(zone_id.to_string())
        .bind(acct_id.to_string())
        .fetch_optional(&mut *w.tx)
        .await?;
        let info = row.ok_or(Error::NotFound("join token"))?.into_info()?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "join_token.revoke",
            "join_token",
            Some(token_id),
            json!({"zone_id": zone_id}),
        )
        .await?;
        w.commit().await?;
        Ok(info)
    }

    /// Uses a join token: succeeds only if the secret hash matches and the token is neither
    /// expired, revoked, nor (if single-use) already used. Decided by one conditional UPDATE, so
    /// a single-use token admits exactly one node even across replicas.
    pub async fn use_join_token(
        &self,
        token_id: Uuid,
        secret_hash: &str,
        now: i64,
    ) -> Result<Option<JoinTokenUse>> {
        let mut w = self.begin_write().await?;
        let row: Option<(String, String)> = sqlx::query_as(
            "UPDATE join_tokens SET use_count = use_count + 1, last_used_at = $1 \
             WHERE token_id = $2 AND secret_hash = $3 AND revoked_at IS NULL AND expires_at > $1 \
             AND (single_use = 0 OR use_count = 0) RETURNING zone_id, acct_id",
        )
        .bind(now)
        .bind(token_id.to_string())
        .bind(secret_hash)
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some((zone_id, acct_id)) = row else {
            return Ok(None);
        };
        let used = JoinTokenUse {
            zone_id: uuid("join_tokens.zone_id", &zone_id)?,
            acct_id: uuid("join_tokens.acct_id", &acct_id)?,
        };
        audit::append(
            &mut w.tx,
            now,
            &Actor::system(),
            Some(used.acct_id),
            "join_token.use",
            "join_token",
            Some(token_id),
            json!({"zone_id": used.zone_id}),
        )
        .await?;
        w.commit().await?;
        Ok(Some(used))
    }
}
