//! Platform collateral, one current set per key and never replaced by an older one; and leases,
//! which let one replica do a job the others must not do at the same time.
//!
//! The store does not verify collateral (the manager's attestation service does, before it
//! offers a set here). What it guarantees is the order: [`Store::put_collateral_if_newer`]
//! replaces the current set of a key only with one that is no older in any part and newer in at
//! least one, inside one statement, so two replicas offering sets at once cannot move a key back
//! in time.

use ccm_api::collateral::{CollateralSource, PckCaType, TcbUpdate, TeeType};

use serde_json::json;

use crate::util::enum_value;
use crate::{Actor, Result, Store, audit};

/// Which collateral set: the root it chains to, the platform family, the PCK CA whose CRL it
/// holds, the TEE and the TCB evaluation set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CollateralKey {
    /// SHA-256 (hex) of the root certificate.
    pub root_fingerprint: String,
    /// FMSPC (hex, lower case).
    pub fmspc: String,
    /// PCK CA type.
    pub ca_type: PckCaType,
    /// TEE.
    pub tee: TeeType,
    /// TCB evaluation set.
    pub update: TcbUpdate,
}

/// How old a set's parts are: what orders two sets of one key. Each part is ordered on its own,
/// TCB info and QE identity by (evaluation data number, issue date), the CRLs by `thisUpdate`.
/// Unix seconds for dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollateralAges {
    /// The TCB info's evaluation data number.
    pub tcb_evaluation_data_number: i64,
    /// The QE identity's evaluation data number.
    pub qe_evaluation_data_number: i64,
    /// The TCB info's issue date.
    pub tcb_info_issued: i64,
    /// The QE identity's issue date.
    pub qe_identity_issued: i64,
    /// The PCK CRL's `thisUpdate`.
    pub pck_crl_issued: i64,
    /// The root CA CRL's `thisUpdate`.
    pub root_crl_issued: i64,
}

/// A collateral set offered to [`Store::put_collateral_if_newer`].
#[derive(Debug, Clone)]
pub struct NewCollateral<'a> {
    /// Its key.
    pub key: &'a CollateralKey,
    /// The `QuoteCollateralV3` JSON text.
    pub collateral: &'a str,
    /// Its ages.
    pub ages: CollateralAges,
    /// When its first part expires.
    pub valid_until: i64,
    /// Whether its root is simulated.
    pub simulated: bool,
    /// Where it came from.
    pub source: CollateralSource,
    /// Who offers it (the audit entry's actor when it becomes current).
    pub actor: &'a Actor,
    /// Now.
    pub now: i64,
}

/// A current collateral set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollateralRecord {
    /// Its key.
    pub key: CollateralKey,
    /// The `QuoteCollateralV3` JSON text.
    pub collateral: String,
    /// Its ages.
    pub ages: CollateralAges,
    /// When its first part expires.
    pub valid_until: i64,
    /// Whether its root is simulated.
    pub simulated: bool,
    /// Where it came from.
    pub source: CollateralSource,
    /// When it became current.
    pub updated_at: i64,
    /// When a newer set was last looked for.
    pub last_attempt_at: Option<i64>,
    /// Why that attempt failed.
    pub last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct CollateralRow {
    root_fingerprint: String,
    fmspc: String,
    ca_type: String,
    tee: String,
    tcb_update: String,
    collateral: String,
    tcb_evaluation_data_number: i64,
    qe_evaluation_data_number: i64,
    tcb_info_issued: i64,
    qe_identity_issued: i64,
    pck_crl_issued: i64,
    root_crl_issued: i64,
    valid_until: i64,
    simulated: i64,
    source: String,
    updated_at: i64,
    last_attempt_at: Option<i64>,
    last_error: Option<String>,
}

impl CollateralRow {
    fn into_record(self) -> Result<CollateralRecord> {
        Ok(CollateralRecord {
            key: CollateralKey {
                root_fingerprint: self.root_fingerprint,
                fmspc: self.fmspc,
                ca_type: enum_value("collateral_sets.ca_type", &self.ca_type, PckCaType::parse)?,
                tee: enum_value("collateral_sets.tee", &self.tee, TeeType::parse)?,
                update: enum_value(
                    "collateral_sets.tcb_update",
                    &self.tcb_update,
                    TcbUpdate::parse,
                )?,
            },
            collateral: self.collateral,
            ages: CollateralAges {
                tcb_evaluation_data_number: self.tcb_evaluation_data_number,
                qe_evaluation_data_number: self.qe_evaluation_data_number,
                tcb_info_issued: self.tcb_info_issued,
                qe_identity_issued: self.qe_identity_issued,
                pck_crl_issued: self.pck_crl_issued,
                root_crl_issued: self.root_crl_issued,
            },
            valid_until: self.valid_until,
            simulated: self.simulated != 0,
            source: enum_value(
                "collateral_sets.source",
                &self.source,
                CollateralSource::parse,
            )?,
            updated_at: self.updated_at,
            last_attempt_at: self.last_attempt_at,
            last_error: self.last_error,
        })
    }
}

const AGE_COLUMNS: [&str; 6] = [
    "tcb_evaluation_data_number",
    "qe_evaluation_data_number",
    "tcb_info_issued",
    "qe_identity_issued",
    "pck_crl_issued",
    "root_crl_issued",
];

/// The parts of a set, each ordered by its own columns (compared as a row value, most
/// significant first): TCB info, QE identity, PCK CRL, root CA CRL.
const PARTS: [&[&str]; 4] = [
    &["tcb_evaluation_data_number", "tcb_info_issued"],
    &["qe_evaluation_data_number", "qe_identity_issued"],
    &["pck_crl_issued"],
    &["root_crl_issued"],
];

/// The upsert of [`Store::put_collateral_if_newer`]: it updates only when no part of the
/// offered set is older than the stored one's and at least one is newer.
fn put_if_newer_sql() -> String {
    let compare = |op: &str| {
        PARTS
            .iter()
            .map(|cols| {
                let mine: Vec<String> = cols.iter().map(|c| format!("excluded.{c}")).collect();
                let theirs: Vec<String> = cols
                    .iter()
                    .map(|c| format!("collateral_sets.{c}"))
                    .collect();
                format!("({}) {op} ({})", mine.join(", "), theirs.join(", "))
            })
            .collect::<Vec<_>>()
    };
    let no_older = compare(">=").join(" AND ");
    let one_newer = compare(">").join(" OR ");
    let set = AGE_COLUMNS
        .iter()
        .chain(&[
            "collateral",
            "valid_until",
            "simulated",
            "source",
            "updated_at",
        ])
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO collateral_sets (root_fingerprint, fmspc, ca_type, tee, tcb_update, \
         collateral, {ages}, valid_until, simulated, source, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (root_fingerprint, fmspc, ca_type, tee, tcb_update) DO UPDATE SET {set}, \
         last_attempt_at = excluded.updated_at, last_error = NULL \
         WHERE {no_older} AND ({one_newer})",
        ages = AGE_COLUMNS.join(", "),
    )
}

const KEY_CONDITION: &str = "root_fingerprint = $1 AND fmspc = $2 AND ca_type = $3 AND tee = $4 \
     AND tcb_update = $5";

const SELECT: &str = "SELECT root_fingerprint, fmspc, ca_type, tee, tcb_update, collateral, \
     tcb_evaluation_data_number, qe_evaluation_data_number, tcb_info_issued, qe_identity_issued, \
     pck_crl_issued, root_crl_issued, valid_until, simulated, source, updated_at, \
     last_attempt_at, last_error FROM collateral_sets";

impl Store {
    /// Makes `new` the current set of its key when there is none, or when the current one is
    /// older: no part of `new` is older and one is newer ([`CollateralAges`]), with an audit
    /// entry (`collateral.current`). Returns whether it became current; an equal, older or
    /// mixed set changes nothing.
    pub async fn put_collateral_if_newer(&self, new: &NewCollateral<'_>) -> Result<bool> {
        let a = new.ages;
        let mut w = self.begin_write().await?;
        let done = sqlx::query(&put_if_newer_sql())
            .bind(&new.key.root_fingerprint)
            .bind(&new.key.fmspc)
            .bind(new.key.ca_type.as_str())
            .bind(new.key.tee.as_str())
            .bind(new.key.update.as_str())
            .bind(new.collateral)
            .bind(a.tcb_evaluation_data_number)
            .bind(a.qe_evaluation_data_number)
            .bind(a.tcb_info_issued)
            .bind(a.qe_identity_issued)
            .bind(a.pck_crl_issued)
            .bind(a.root_crl_issued)
            .bind(new.valid_until)
            .bind(i64::from(new.simulated))
            .bind(new.source.as_str())
            .bind(new.now)
            .execute(&mut *w.tx)
            .await?;
        let became_current = done.rows_affected() == 1;
        if became_current {
            let k = new.key;
            audit::append(
                &mut w.tx,
                new.now,
                new.actor,
                None,
                "collateral.current",
                "collateral",
                None,
                json!({
                    "fmspc": k.fmspc, "root_fingerprint": k.root_fingerprint,
                    "ca_type": k.ca_type, "tee": k.tee, "update": k.update,
                    "tcb_evaluation_data_number": a.tcb_evaluation_data_number,
                    "tcb_info_issued": a.tcb_info_issued, "valid_until": new.valid_until,
                    "source": new.source,
                }),
            )
            .await?;
        }
        w.commit().await?;
        Ok(became_current)
    }

    /// The current set of a key.
    pub async fn collateral_set(&self, key: &CollateralKey) -> Result<Option<CollateralRecord>> {
        let row: Option<CollateralRow> = sqlx::query_as(&format!("{SELECT} WHERE {KEY_CONDITION}"))
            .bind(&key.root_fingerprint)
            .bind(&key.fmspc)
            .bind(key.ca_type.as_str())
            .bind(key.tee.as_str())
            .bind(key.update.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(CollateralRow::into_record).transpose()
    }

    /// The current sets of a platform under every root (one per root).
    pub async fn collateral_sets_for(
        &self,
        fmspc: &str,
        ca_type: PckCaType,
        tee: TeeType,
        update: TcbUpdate,
    ) -> Result<Vec<CollateralRecord>> {
        let rows: Vec<CollateralRow> = sqlx::query_as(&format!(
            "{SELECT} WHERE fmspc = $1 AND ca_type = $2 AND tee = $3 AND tcb_update = $4 \
             ORDER BY root_fingerprint"
        ))
        .bind(fmspc)
        .bind(ca_type.as_str())
        .bind(tee.as_str())
        .bind(update.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(CollateralRow::into_record).collect()
    }

    /// Every current set (one per key; a deployment has a few dozen at most), by FMSPC.
    pub async fn collateral_sets(&self) -> Result<Vec<CollateralRecord>> {
        let rows: Vec<CollateralRow> = sqlx::query_as(&format!(
            "{SELECT} ORDER BY fmspc, root_fingerprint, ca_type, tee, tcb_update"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(CollateralRow::into_record).collect()
    }

    /// Records an attempt to find a newer set for `key`: when, and why it failed (`None`: it
    /// found nothing newer, or what it found is now current).
    pub async fn note_collateral_attempt(
        &self,
        key: &CollateralKey,
        now: i64,
        error: Option<&str>,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query(&format!(
            "UPDATE collateral_sets SET last_attempt_at = $6, last_error = $7 \
             WHERE {KEY_CONDITION}"
        ))
        .bind(&key.root_fingerprint)
        .bind(&key.fmspc)
        .bind(key.ca_type.as_str())
        .bind(key.tee.as_str())
        .bind(key.update.as_str())
        .bind(now)
        .bind(error)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    /// The collateral texts managers before schema version 15 kept (`platform_collateral`),
    /// for the manager to offer as current sets once.
    pub async fn legacy_collateral(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT collateral FROM platform_collateral")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(c,)| c).collect())
    }

    /// Forgets the legacy collateral texts (after they were offered).
    pub async fn forget_legacy_collateral(&self) -> Result<u64> {
        let mut w = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM platform_collateral")
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(done.rows_affected())
    }

    /// Takes or renews the lease `name` for `holder` until `now + ttl_secs`: granted when nobody
    /// holds it, its holder is `holder`, or it expired. Returns whether `holder` holds it now.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now.saturating_add(ttl_secs))
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
