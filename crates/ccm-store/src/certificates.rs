//! Application certificates and their CERTIFICATE_ISSUANCE tasks.
//!
//! Issuance is the manager's hot path, so its records are written in batches: one transaction
//! stores many certificates, their tasks and their audit entries (multi-row inserts; the audit
//! chain head is read and written once per batch). The manager acknowledges a request only after
//! its batch committed (group commit), so acknowledged issuances survive a crash.

use std::collections::HashSet;

use ccm_api::apps::App;
use ccm_api::builds::{BuildStatusType, EnclaveInfo};
use ccm_api::certificates::{
    AppNodeInfo, AppStatus, AppStatusType, Certificate, CertificateStatusType,
};
use ccm_api::tasks::{TaskStatusType, TaskType};
use serde_json::json;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::hot::Columns;
use crate::paging::{Bind, Key, ListSpec};
use crate::sql::{Insert, WriteSet};
use crate::util::{enum_value, json, opt_uuid, to_json, uuid};
use crate::{Actor, Error, Page, PageRequest, Result, Store, audit};

/// The enclave facts recorded with a certificate request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveFacts {
    /// Identity.
    pub info: EnclaveInfo,
    /// Debug enclave.
    pub debug: bool,
    /// CPUSVN, hex.
    pub cpusvn: String,
    /// Converged TCB status (wire spelling).
    pub tcb_status: String,
}

/// One certificate request with its outcome, as written by [`Store::record_issuances`].
#[derive(Debug, Clone)]
pub struct IssuanceRecord {
    /// Certificate id.
    pub certificate_id: Uuid,
    /// Task id.
    pub task_id: Uuid,
    /// Account.
    pub acct_id: Uuid,
    /// Zone whose CA issues.
    pub zone_id: Uuid,
    /// The requesting node.
    pub node_id: Uuid,
    /// The node's name (task requester).
    pub node_name: String,
    /// The app, if the MRENCLAVE matched one.
    pub app_id: Option<Uuid>,
    /// The image, if the MRENCLAVE matched one.
    pub build_id: Option<Uuid>,
    /// PENDING, REJECTED or ISSUED.
    pub status: CertificateStatusType,
    /// The CSR (PEM).
    pub csr: String,
    /// The quote. Kept for requests that are pending or refused; an issued certificate carries
    /// it in its evidence extension, so the row does not store it a second time.
    pub quote: Vec<u8>,
    /// Requested DNS names.
    pub domains: Vec<String>,
    /// What the quote says, when it verified.
    pub enclave: Option<EnclaveFacts>,
    /// Simulated platform.
    pub simulated: bool,
    /// Certificate chain (PEM) when issued.
    pub cert_pem: Option<String>,
    /// Serial (hex) when issued.
    pub serial: Option<String>,
    /// Validity start when issued.
    pub valid_from: Option<i64>,
    /// Validity end when issued.
    pub valid_until: Option<i64>,
    /// Denial reason or what it waits for.
    pub message: Option<String>,
    /// The task status.
    pub task_status: TaskStatusType,
    /// The issuance nonce the quote carried (REPORTDATA[32..64]), once found valid for the
    /// node; each is stored once (a unique index), so a second request with it is not written.
    pub nonce: Option<[u8; 32]>,
    /// SHA-256 of the CSR's SubjectPublicKeyInfo, when the CSR parsed: a revocation denies it.
    pub spki_sha256: Option<[u8; 32]>,
}

/// A certificate request waiting for approvals.
#[derive(Debug, Clone)]
pub struct PendingCertificate {
    /// Certificate id.
    pub certificate_id: Uuid,
    /// Task id.
    pub task_id: Uuid,
    /// Account.
    pub acct_id: Uuid,
    /// Node.
    pub node_id: Uuid,
    /// CSR (PEM).
    pub csr: String,
    /// Quote.
    pub quote: Vec<u8>,
}

/// The outcome of a pending request, decided later.
#[derive(Debug, Clone)]
pub struct PendingOutcome {
    /// ISSUED, REJECTED or PENDING (still waiting, perhaps for something else).
    pub status: CertificateStatusType,
    /// App.
    pub app_id: Option<Uuid>,
    /// Image.
    pub build_id: Option<Uuid>,
    /// Chain when issued.
    pub cert_pem: Option<String>,
    /// Serial when issued.
    pub serial: Option<String>,
    /// Validity start.
    pub valid_from: Option<i64>,
    /// Validity end.
    pub valid_until: Option<i64>,
    /// Reason.
    pub message: Option<String>,
}

#[derive(sqlx::FromRow)]
struct CertRow {
    certificate_id: String,
    task_id: String,
    acct_id: String,
    node_id: String,
    app_id: Option<String>,
    build_id: Option<String>,
    status: String,
    csr: String,
    domains: String,
    mrenclave: Option<String>,
    mrsigner: Option<String>,
    isvprodid: Option<i64>,
    isvsvn: Option<i64>,
    simulated: i64,
    cert_pem: Option<String>,
    serial: Option<String>,
    valid_from: Option<i64>,
    valid_until: Option<i64>,
    message: Option<String>,
    created_at: i64,
    revoked_at: Option<i64>,
    last_reported_at: Option<i64>,
}

/// The columns of a [`CertRow`], of `certificates c` (the last instance report joined in).
const CERT_COLS: &str = "c.certificate_id, c.task_id, c.acct_id, c.node_id, c.app_id, c.build_id, \
     c.status, c.csr, c.domains, c.mrenclave, c.mrsigner, c.isvprodid, c.isvsvn, c.simulated, \
     c.cert_pem, c.serial, c.valid_from, c.valid_until, c.message, c.created_at, c.revoked_at, \
     (SELECT r.last_reported_at FROM instance_reports r WHERE r.task_id = c.task_id) AS last_reported_at";

impl CertRow {
    fn into_cert(self, now: i64) -> Result<Certificate> {
        let mut status = enum_value(
            "certificates.status",
            &self.status,
            CertificateStatusType::parse,
        )?;
        if status == CertificateStatusType::Issued && self.valid_until.is_some_and(|v| v <= now) {
            status = CertificateStatusType::Expired;
        }
        let enclave_info = match (self.mrenclave, self.mrsigner) {
            (Some(mrenclave), Some(mrsigner)) => Some(EnclaveInfo {
                mrenclave,
                mrsigner,
                isvprodid: self.isvprodid.unwrap_or(0),
                isvsvn: self.isvsvn.unwrap_or(0),
            }),
            _ => None,
        };
        Ok(Certificate {
            certificate_id: uuid("certificates.certificate_id", &self.certificate_id)?,
            acct_id: uuid("certificates.acct_id", &self.acct_id)?,
            status,
            csr: self.csr,
            certificate: self.cert_pem,
            node_id: uuid("certificates.node_id", &self.node_id)?,
            app_id: opt_uuid("certificates.app_id", self.app_id.as_deref())?,
            build_id: opt_uuid("certificates.build_id", self.build_id.as_deref())?,
            task_id: uuid("certificates.task_id", &self.task_id)?,
            domains: json("certificates.domains", &self.domains)?,
            enclave_info,
            serial: self.serial,
            valid_from: self.valid_from,
            valid_until: self.valid_until,
            simulated: self.simulated != 0,
            message: self.message,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
            last_reported_at: self.last_reported_at,
        })
    }
}

/// Adds the keys of the ISSUED certificates matching `condition` (SQL over `certificates`, its
/// parameters numbered from 2; `$1` is the time) to their account's revoked keys.
fn deny_keys_sql(condition: &str) -> String {
    format!(
        "INSERT INTO revoked_keys (acct_id, spki_sha256, certificate_id, revoked_at) \
         SELECT acct_id, spki_sha256, certificate_id, $1 FROM certificates \
         WHERE {condition} AND status = 'ISSUED' AND spki_sha256 IS NOT NULL AND spki_sha256 <> '' \
         ON CONFLICT (acct_id, spki_sha256) DO NOTHING"
    )
}

/// Revokes the ISSUED certificates and rejects the PENDING requests whose `column` (`node_id`,
/// `app_id` or `build_id`) is `value`, closing their tasks. The revoked certificates' keys are
/// denied from then on.
pub(crate) async fn revoke_where(
    conn: &mut AnyConnection,
    column: &'static str,
    value: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(&deny_keys_sql(&format!("{column} = $2")))
        .bind(now)
        .bind(value)
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "UPDATE certificates SET status = 'REVOKED', revoked_at = $1, updated_at = $1, message = $2 \
         WHERE {column} = $3 AND status = 'ISSUED'"
    ))
    .bind(now)
    .bind(reason)
    .bind(value)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "UPDATE tasks SET status = 'DENIED', status_updated_at = $1 WHERE status = 'INPROGRESS' \
         AND task_id IN (SELECT task_id FROM certificates WHERE {column} = $2 AND status = 'PENDING')"
    ))
    .bind(now)
    .bind(value)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "UPDATE certificates SET status = 'REJECTED', updated_at = $1, message = $2 \
         WHERE {column} = $3 AND status = 'PENDING'"
    ))
    .bind(now)
    .bind(reason)
    .bind(value)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rejects a pending request whose CERTIFICATE_ISSUANCE task was denied by a user.
pub(crate) async fn reject_for_task(
    conn: &mut AnyConnection,
    task_id: Uuid,
    reason: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE certificates SET status = 'REJECTED', updated_at = $1, message = $2 \
         WHERE task_id = $3 AND status = 'PENDING'",
    )
    .bind(now)
    .bind(reason)
    .bind(task_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An image whose MRENCLAVE matched a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMatch {
    /// The image.
    pub build_id: Uuid,
    /// Its app.
    pub app_id: Uuid,
    /// MRSIGNER, hex.
    pub mrsigner: String,
    /// ISVPRODID.
    pub isvprodid: i64,
    /// ISVSVN.
    pub isvsvn: i64,
    /// Whitelisting status.
    pub status: BuildStatusType,
    /// `name:tag`.
    pub image: String,
    /// Whether the image's account trusts simulated platforms (read with the image, so the
    /// issuance decision costs no query of its own for it).
    pub account_allows_simulated: bool,
}

/// The image and app of [`Store::image_with_app`]'s row (either path).
fn image_with_app(r: &impl Columns) -> Result<(ImageMatch, Option<App>)> {
    let name: String = r.get("img_name")?;
    let tag: String = r.get("img_tag")?;
    let image = ImageMatch {
        build_id: uuid("builds.build_id", &r.get::<String>("img_build_id")?)?,
        app_id: uuid("builds.app_id", &r.get::<String>("img_app_id")?)?,
        mrsigner: r.get("img_mrsigner")?,
        isvprodid: r.get("img_isvprodid")?,
        isvsvn: r.get("img_isvsvn")?,
        status: enum_value(
            "builds.status",
            &r.get::<String>("img_status")?,
            BuildStatusType::parse,
        )?,
        image: format!("{name}:{tag}"),
        account_allows_simulated: r.get::<i64>("acct_allow_simulated")? != 0,
    };
    let app = match r.get::<Option<String>>("app_id")? {
        Some(_) => Some(crate::apps::AppRow::from_columns(r)?.into_app()?),
        None => None,
    };
    Ok((image, app))
}

/// Largest batch [`Store::record_issuances`] writes in one statement.
pub const MAX_ISSUANCE_BATCH: usize = 64;

/// One request of a batch as [`Store::issuance_lookup`] asks about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupKey {
    /// The request's task id.
    pub task_id: Uuid,
    /// The nonce its quote carries, if any.
    pub nonce: Option<[u8; 32]>,
    /// SHA-256 of the key it asks to certify, if known.
    pub spki_sha256: Option<[u8; 32]>,
}

/// What [`Store::issuance_lookup`] found: which of the asked task ids, nonces and keys are
/// taken, used or revoked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuanceLookup {
    /// Task ids used by a task or a certificate request.
    pub used_task_ids: HashSet<Uuid>,
    /// Nonces already recorded with a certificate request.
    pub used_nonces: HashSet<[u8; 32]>,
    /// Keys on the account's revoked-key list.
    pub revoked_keys: HashSet<[u8; 32]>,
}

/// Whether `e` is a unique-constraint violation (a task id or nonce stored meanwhile).
fn is_unique_violation(e: &Error) -> bool {
    match e {
        Error::Conflict { .. } => true,
        Error::Database(sqlx::Error::Database(db)) => db.is_unique_violation(),
        _ => false,
    }
}

/// Lower-case hex of 32 bytes, as nonces and key hashes are stored.
fn hex_encode(bytes: [u8; 32]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The 32 bytes of a stored hex value.
fn hex32(column: &'static str, text: &str) -> Result<[u8; 32]> {
    let corrupt = || Error::corrupt(column, format!("not 64 hex digits: {text:?}"));
    if text.len() != 64 || !text.is_ascii() {
        return Err(corrupt());
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
        let digits = std::str::from_utf8(pair).map_err(|_| corrupt())?;
        *o = u8::from_str_radix(digits, 16).map_err(|_| corrupt())?;
    }
    Ok(out)
}

impl Store {
    /// Writes a batch of certificate requests with their tasks and audit entries in one
    /// transaction, and returns the task ids of the requests it did *not* write: those whose
    /// task id or nonce another request stored first (a resubmission, or two requests racing).
    /// Nothing of those is written (no task, no audit entry); the caller answers them from
    /// what is stored, never with what it decided for them.
    pub async fn record_issuances(&self, batch: &[IssuanceRecord], now: i64) -> Result<Vec<Uuid>> {
        let mut skipped = Vec::new();
        for chunk in batch.chunks(MAX_ISSUANCE_BATCH) {
            let mut todo: Vec<&IssuanceRecord> = chunk.iter().collect();
            while !todo.is_empty() {
                match self.record_chunk(&todo, now).await {
                    Ok(()) => break,
                    Err(e) if is_unique_violation(&e) => {
                        // Rare (a race): find what was stored meanwhile and write the rest.
                        let keys: Vec<LookupKey> = todo
                            .iter()
                            .map(|r| LookupKey {
                                task_id: r.task_id,
                                nonce: r.nonce,
                                spki_sha256: None,
                            })
                            .collect();
                        let taken = self.issuance_lookup(Uuid::nil(), &keys).await?;
                        let before = todo.len();
                        todo.retain(|r| {
                            let lost = taken.used_task_ids.contains(&r.task_id)
                                || r.nonce.is_some_and(|n| taken.used_nonces.contains(&n));
                            if lost {
                                skipped.push(r.task_id);
                            }
                            !lost
                        });
                        if todo.len() == before {
                            // Not a conflict with a stored row (two records of the batch
                            // itself): the caller must not send such a batch.
                            return Err(e);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(skipped)
    }

    async fn record_chunk(&self, batch: &[&IssuanceRecord], now: i64) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let write = issuance_write(batch, now)?;
        if let Some(writer) = self.hot.writer() {
            return writer.write(write).await;
        }
        let mut w = self.begin_write().await?;
        write.execute(&mut w.tx, self.backend).await?;
        w.commit().await
    }

    /// A certificate request by task id, if it came through `node_id`.
    pub async fn certificate_by_task(
        &self,
        node_id: Uuid,
        task_id: Uuid,
        now: i64,
    ) -> Result<Option<Certificate>> {
        let row: Option<CertRow> = sqlx::query_as(&format!(
            "SELECT {CERT_COLS} FROM certificates c WHERE task_id = $1 AND node_id = $2"
        ))
        .bind(task_id.to_string())
        .bind(node_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.into_cert(now)).transpose()
    }

    /// The image of an account with this MRENCLAVE (hex), whitelisted first, then pending, newest
    /// first, with its app (`None` when the app is gone), read in one query for the issuance
    /// decision.
    pub async fn image_with_app(
        &self,
        acct_id: Uuid,
        mrenclave: &str,
    ) -> Result<Option<(ImageMatch, Option<App>)>> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let app_cols: Vec<String> = crate::apps::APP_COLS
                .split(',')
                .map(|c| format!("a.{}", c.trim()))
                .collect();
            format!(
                "SELECT b.build_id AS img_build_id, b.app_id AS img_app_id, \
                 b.mrsigner AS img_mrsigner, b.isvprodid AS img_isvprodid, \
                 b.isvsvn AS img_isvsvn, b.status AS img_status, \
                 b.docker_image_name AS img_name, b.docker_version AS img_tag, \
                 (SELECT allow_simulated FROM accounts WHERE acct_id = $1) AS acct_allow_simulated, {} \
                 FROM (SELECT build_id, app_id, acct_id, mrsigner, isvprodid, isvsvn, status, \
                 docker_image_name, docker_version FROM builds WHERE acct_id = $1 AND mrenclave = $2 \
                 ORDER BY CASE status WHEN 'WHITELISTED' THEN 0 WHEN 'PENDING' THEN 1 ELSE 2 END, \
                 created_at DESC LIMIT 1) b \
                 LEFT JOIN apps a ON a.app_id = b.app_id AND a.acct_id = b.acct_id",
                app_cols.join(", ")
            )
        });
        self.hot_read(
            |c| {
                let mut stmt = c.prepare_cached(&SQL)?;
                let mut rows = stmt.query([acct_id.to_string(), mrenclave.to_string()])?;
                rows.next()?.map(image_with_app).transpose()
            },
            |c| {
                let mrenclave = mrenclave.to_string();
                Box::pin(async move {
                    sqlx::query(&SQL)
                        .bind(acct_id.to_string())
                        .bind(mrenclave)
                        .fetch_optional(c)
                        .await?
                        .map(|r| image_with_app(&r))
                        .transpose()
                })
            },
        )
        .await
    }

    /// CPUSVN and TCB status recorded with a certificate.
    pub async fn certificate_quote_facts(
        &self,
        certificate_id: Uuid,
    ) -> Result<Option<(String, String)>> {
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT cpusvn, tcb_status FROM certificates WHERE certificate_id = $1")
                .bind(certificate_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(c, t)| (c.unwrap_or_default(), t.unwrap_or_default())))
    }

    /// Whether a task id is taken (by any node).
    pub async fn task_exists(&self, task_id: Uuid) -> Result<bool> {
        let row: Option<(String,)> = sqlx::query_as("SELECT task_id FROM tasks WHERE task_id = $1")
            .bind(task_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Which of `task_ids` are used by a task or a certificate request (see
    /// [`Store::issuance_lookup`]).
    pub async fn used_task_ids(&self, task_ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        let keys: Vec<LookupKey> = task_ids
            .iter()
            .map(|&task_id| LookupKey {
                task_id,
                nonce: None,
                spki_sha256: None,
            })
            .collect();
        Ok(self
            .issuance_lookup(Uuid::nil(), &keys)
            .await?
            .used_task_ids)
    }

    /// What an issuance batch must know before deciding, in one query per
    /// [`MAX_ISSUANCE_BATCH`] requests: which task ids are used by a task or a certificate
    /// request (for new ids, the usual case, neither [`Store::certificate_by_task`] nor
    /// [`Store::task_exists`] can find anything, so new requests need not ask both), which
    /// nonces are already recorded, and which keys account `acct_id` has revoked.
    pub async fn issuance_lookup(
        &self,
        acct_id: Uuid,
        requests: &[LookupKey],
    ) -> Result<IssuanceLookup> {
        let mut out = IssuanceLookup::default();
        for chunk in requests.chunks(MAX_ISSUANCE_BATCH) {
            let n = chunk.len();
            // Each list has one entry per request (an absent nonce or key asks for the empty
            // string, which matches nothing), so there is one statement per batch size.
            let sql = format!(
                "SELECT 't', task_id FROM tasks WHERE task_id IN ({}) \
                 UNION ALL SELECT 't', task_id FROM certificates WHERE task_id IN ({}) \
                 UNION ALL SELECT 'n', nonce FROM certificates WHERE nonce IN ({}) \
                 UNION ALL SELECT 'k', spki_sha256 FROM revoked_keys WHERE acct_id = {} \
                 AND spki_sha256 IN ({})",
                self.backend.params(1, n),
                self.backend.params(n + 1, n),
                self.backend.params(2 * n + 1, n),
                self.backend.params(3 * n + 1, 1),
                self.backend.params(3 * n + 2, n),
            );
            let ids: Vec<String> = chunk.iter().map(|r| r.task_id.to_string()).collect();
            let nonces: Vec<String> = chunk
                .iter()
                .map(|r| r.nonce.map(hex_encode).unwrap_or_default())
                .collect();
            let keys: Vec<String> = chunk
                .iter()
                .map(|r| r.spki_sha256.map(hex_encode).unwrap_or_default())
                .collect();
            let acct = [acct_id.to_string()];
            let params: Vec<String> = ids
                .iter()
                .chain(&ids)
                .chain(&nonces)
                .chain(&acct)
                .chain(&keys)
                .cloned()
                .collect();
            let found: Vec<(String, String)> = self
                .hot_read(
                    |c| {
                        Ok(c.prepare_cached(&sql)?
                            .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                                Ok((r.get(0)?, r.get(1)?))
                            })?
                            .collect::<rusqlite::Result<_>>()?)
                    },
                    |c| {
                        let (sql, params) = (sql.clone(), params.clone());
                        Box::pin(async move {
                            let mut q = sqlx::query_as::<_, (String, String)>(&sql);
                            for p in &params {
                                q = q.bind(p);
                            }
                            Ok(q.fetch_all(c).await?)
                        })
                    },
                )
                .await?;
            for (kind, value) in found {
                match kind.as_str() {
                    "t" => {
                        out.used_task_ids.insert(uuid("tasks.task_id", &value)?);
                    }
                    "n" => {
                        out.used_nonces.insert(hex32("certificates.nonce", &value)?);
                    }
                    _ => {
                        out.revoked_keys
                            .insert(hex32("revoked_keys.spki_sha256", &value)?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` certificates (ISSUED or REVOKED) recorded before their key hash was
    /// (schema version 5), with their CSR (PEM), for [`Store::set_key_hash`].
    pub async fn certificates_without_key_hash(&self, limit: i64) -> Result<Vec<(Uuid, String)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT certificate_id, csr FROM certificates WHERE spki_sha256 IS NULL \
             AND status IN ('ISSUED', 'REVOKED') LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, csr)| Ok((uuid("certificates.certificate_id", &id)?, csr)))
            .collect()
    }

    /// Records the key hash of a certificate recorded before schema version 5 (`None`: its CSR
    /// does not parse, so it has none), and denies the key when the certificate is revoked.
    pub async fn set_key_hash(
        &self,
        certificate_id: Uuid,
        spki_sha256: Option<[u8; 32]>,
    ) -> Result<()> {
        let mut w = self.begin_unaudited_write().await?;
        sqlx::query(
            "UPDATE certificates SET spki_sha256 = $1 WHERE certificate_id = $2 \
             AND spki_sha256 IS NULL",
        )
        .bind(spki_sha256.map(hex_encode).unwrap_or_default())
        .bind(certificate_id.to_string())
        .execute(&mut *w.tx)
        .await?;
        sqlx::query(
            "INSERT INTO revoked_keys (acct_id, spki_sha256, certificate_id, revoked_at) \
             SELECT acct_id, spki_sha256, certificate_id, COALESCE(revoked_at, updated_at) \
             FROM certificates WHERE certificate_id = $1 AND status = 'REVOKED' \
             AND spki_sha256 <> '' ON CONFLICT (acct_id, spki_sha256) DO NOTHING",
        )
        .bind(certificate_id.to_string())
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    /// A certificate of an account (any account when `acct_id` is `None`).
    pub async fn get_certificate(
        &self,
        acct_id: Option<Uuid>,
        certificate_id: Uuid,
        now: i64,
    ) -> Result<Option<Certificate>> {
        let row: Option<CertRow> = match acct_id {
            Some(a) => sqlx::query_as(&format!(
                "SELECT {CERT_COLS} FROM certificates c WHERE certificate_id = $1 AND acct_id = $2"
            ))
            .bind(certificate_id.to_string())
            .bind(a.to_string())
            .fetch_optional(&self.pool)
            .await?,
            None => {
                sqlx::query_as(&format!(
                    "SELECT {CERT_COLS} FROM certificates c WHERE certificate_id = $1"
                ))
                .bind(certificate_id.to_string())
                .fetch_optional(&self.pool)
                .await?
            }
        };
        row.map(|r| r.into_cert(now)).transpose()
    }

    /// One page of an account's certificates, newest first, optionally of one app or node.
    pub async fn list_certificates(
        &self,
        acct_id: Uuid,
        app_id: Option<Uuid>,
        node_id: Option<Uuid>,
        req: &PageRequest,
        now: i64,
    ) -> Result<Page<Certificate>> {
        let mut filters = Vec::new();
        if let Some(app) = app_id {
            filters.push(("c.app_id", Bind::Text(app.to_string())));
        }
        if let Some(node) = node_id {
            filters.push(("c.node_id", Bind::Text(node.to_string())));
        }
        let spec = ListSpec {
            name: "certificates",
            select: format!("SELECT {CERT_COLS} FROM certificates c"),
            count_from: "certificates c",
            key: "c.created_at",
            text_key: false,
            id: "c.certificate_id",
            desc: true,
            scope: vec![("c.acct_id", Bind::Text(acct_id.to_string()))],
            filters,
            counts: Some(&crate::counts::CERTIFICATES),
        };
        let page = spec
            .fetch::<CertRow>(&self.pool, req, |r| {
                (Key::Int(r.created_at), r.certificate_id.clone())
            })
            .await?;
        page.try_map(|r| r.into_cert(now))
    }

    /// The requests waiting for approvals, oldest first (all accounts when `acct_id` is `None`).
    pub async fn pending_certificates(
        &self,
        acct_id: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<PendingCertificate>> {
        let rows: Vec<(String, String, String, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT certificate_id, task_id, acct_id, node_id, csr, quote FROM certificates \
             WHERE status = 'PENDING' AND ($1 = '' OR acct_id = $1) ORDER BY created_at LIMIT $2",
        )
        .bind(acct_id.map(|u| u.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(c, t, a, n, csr, quote)| {
                Ok(PendingCertificate {
                    certificate_id: uuid("certificates.certificate_id", &c)?,
                    task_id: uuid("certificates.task_id", &t)?,
                    acct_id: uuid("certificates.acct_id", &a)?,
                    node_id: uuid("certificates.node_id", &n)?,
                    csr,
                    quote,
                })
            })
            .collect()
    }

    /// Completes a pending request (only if it is still PENDING; returns whether it was).
    pub async fn complete_pending(
        &self,
        certificate_id: Uuid,
        o: &PendingOutcome,
        now: i64,
    ) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let row: Option<(String, String)> = sqlx::query_as(
            "UPDATE certificates SET status = $1, app_id = COALESCE($2, app_id), \
             build_id = COALESCE($3, build_id), cert_pem = $4, serial = $5, valid_from = $6, \
             valid_until = $7, message = $8, updated_at = $9 \
             WHERE certificate_id = $10 AND status = 'PENDING' RETURNING task_id, acct_id",
        )
        .bind(o.status.as_str())
        .bind(o.app_id.map(|u| u.to_string()))
        .bind(o.build_id.map(|u| u.to_string()))
        .bind(&o.cert_pem)
        .bind(&o.serial)
        .bind(o.valid_from)
        .bind(o.valid_until)
        .bind(&o.message)
        .bind(now)
        .bind(certificate_id.to_string())
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some((task_id, acct)) = row else {
            return Ok(false);
        };
        let task_status = match o.status {
            CertificateStatusType::Issued => "SUCCESS",
            CertificateStatusType::Pending => "INPROGRESS",
            _ => "DENIED",
        };
        sqlx::query("UPDATE tasks SET status = $1, status_updated_at = $2 WHERE task_id = $3")
            .bind(task_status)
            .bind(now)
            .bind(&task_id)
            .execute(&mut *w.tx)
            .await?;
        if o.status != CertificateStatusType::Pending {
            audit::append(
                &mut w.tx,
                now,
                &Actor::system(),
                Some(uuid("certificates.acct_id", &acct)?),
                if o.status == CertificateStatusType::Issued {
                    "certificate.issue"
                } else {
                    "certificate.deny"
                },
                "certificate",
                Some(certificate_id),
                json!({"task_id": task_id, "serial": o.serial, "message": o.message, "after_approval": true}),
            )
            .await?;
        }
        w.commit().await?;
        Ok(true)
    }

    /// Revokes an issued certificate (MANAGER action); its key is denied from then on.
    pub async fn revoke_certificate(
        &self,
        acct_id: Uuid,
        certificate_id: Uuid,
        reason: Option<&str>,
        actor: &Actor,
        now: i64,
    ) -> Result<Certificate> {
        let mut w = self.begin_write().await?;
        sqlx::query(&deny_keys_sql("certificate_id = $2 AND acct_id = $3"))
            .bind(now)
            .bind(certificate_id.to_string())
            .bind(acct_id.to_string())
            .execute(&mut *w.tx)
            .await?;
        let n = sqlx::query(
            "UPDATE certificates SET status = 'REVOKED', revoked_at = $1, updated_at = $1, message = $2 \
             WHERE certificate_id = $3 AND acct_id = $4 AND status = 'ISSUED'",
        )
        .bind(now)
        .bind(reason.unwrap_or("revoked by an operator"))
        .bind(certificate_id.to_string())
        .bind(acct_id.to_string())
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        let row: Option<CertRow> = sqlx::query_as(&format!(
            "SELECT {CERT_COLS} FROM certificates c WHERE certificate_id = $1 AND acct_id = $2"
        ))
        .bind(certificate_id.to_string())
        .bind(acct_id.to_string())
        .fetch_optional(&mut *w.tx)
        .await?;
        let cert = row.ok_or(Error::NotFound("certificate"))?.into_cert(now)?;
        if n == 0 {
            return Err(Error::InvalidState(format!(
                "only an issued certificate can be revoked; its status is {}",
                cert.status.as_str()
            )));
        }
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "certificate.revoke",
            "certificate",
            Some(certificate_id),
            json!({"serial": cert.serial, "reason": reason}),
        )
        .await?;
        w.commit().await?;
        Ok(cert)
    }

    /// Revoked serials (hex) of a zone with their revocation times: node and application
    /// certificates that have not expired more than `keep_expired_secs` ago.
    pub async fn crl_entries(
        &self,
        zone_id: Uuid,
        now: i64,
        keep_expired_secs: i64,
    ) -> Result<Vec<(String, i64)>> {
        let since = now.saturating_sub(keep_expired_secs);
        let mut out: Vec<(String, i64)> = sqlx::query_as(
            "SELECT serial, revoked_at FROM node_certs WHERE zone_id = $1 AND revoked_at IS NOT NULL \
             AND not_after > $2",
        )
        .bind(zone_id.to_string())
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let apps: Vec<(String, i64)> = sqlx::query_as(
            "SELECT serial, revoked_at FROM certificates WHERE zone_id = $1 AND revoked_at IS NOT NULL \
             AND serial IS NOT NULL AND valid_until > $2",
        )
        .bind(zone_id.to_string())
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        out.extend(apps);
        out.sort();
        Ok(out)
    }

    /// Application instances: valid issued certificates (newest per app, node and image),
    /// optionally of one app or one node. An instance is RUNNING when the node reported it
    /// within `running_window` seconds or it was issued within that window.
    pub async fn app_instances(
        &self,
        acct_id: Uuid,
        app_id: Option<Uuid>,
        node_id: Option<Uuid>,
        running_window: i64,
        now: i64,
    ) -> Result<Vec<AppNodeInfo>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            cert: CertRow,
            app_name: String,
            node_name: String,
            debug: i64,
        }
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {}, a.name AS app_name, n.name AS node_name, c.debug AS debug \
             FROM certificates c JOIN apps a ON a.app_id = c.app_id JOIN nodes n ON n.node_id = c.node_id \
             WHERE c.acct_id = $1 AND c.status = 'ISSUED' AND c.valid_until > $2 \
             AND ($3 = '' OR c.app_id = $3) AND ($4 = '' OR c.node_id = $4) \
             ORDER BY c.created_at DESC",
            CERT_COLS
        ))
        .bind(acct_id.to_string())
        .bind(now)
        .bind(app_id.map(|u| u.to_string()).unwrap_or_default())
        .bind(node_id.map(|u| u.to_string()).unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for r in rows {
            let key = (
                r.cert.app_id.clone(),
                r.cert.node_id.clone(),
                r.cert.build_id.clone(),
            );
            if !seen.insert(key) {
                continue;
            }
            let debug = r.debug != 0;
            let cert = r.cert.into_cert(now)?;
            let last = cert.last_reported_at.unwrap_or(cert.created_at);
            out.push(AppNodeInfo {
                app_id: cert.app_id.ok_or(Error::NotFound("app"))?,
                app_name: r.app_name,
                node_id: cert.node_id,
                node_name: r.node_name,
                build_id: cert.build_id,
                mrenclave: cert
                    .enclave_info
                    .as_ref()
                    .map(|e| e.mrenclave.clone())
                    .unwrap_or_default(),
                created_at: cert.created_at,
                status: AppStatus {
                    status: if now.saturating_sub(last) <= running_window {
                        AppStatusType::Running
                    } else {
                        AppStatusType::Stopped
                    },
                    status_updated_at: last,
                },
                is_debug: debug,
                certificate: cert,
            });
        }
        Ok(out)
    }
}

/// The rows of a batch of certificate requests: certificates, their tasks, their audit entries.
fn issuance_write(batch: &[&IssuanceRecord], now: i64) -> Result<WriteSet> {
    use crate::sql::Cell::{Lit, Param as P};
    let mut certs = Vec::with_capacity(batch.len());
    let mut tasks = Vec::with_capacity(batch.len());
    let mut audit = Vec::with_capacity(batch.len());
    for &r in batch {
        let e = r.enclave.as_ref();
        certs.push(vec![
            r.certificate_id.to_string().into(),
            r.task_id.to_string().into(),
            r.acct_id.to_string().into(),
            r.zone_id.to_string().into(),
            r.node_id.to_string().into(),
            r.app_id.map(|u| u.to_string()).into(),
            r.build_id.map(|u| u.to_string()).into(),
            r.status.as_str().into(),
            r.csr.clone().into(),
            if r.status == CertificateStatusType::Issued {
                Vec::new()
            } else {
                r.quote.clone()
            }
            .into(),
            to_json("certificates.domains", &r.domains)?.into(),
            e.map(|e| e.info.mrenclave.clone()).into(),
            e.map(|e| e.info.mrsigner.clone()).into(),
            e.map(|e| e.info.isvprodid).into(),
            e.map(|e| e.info.isvsvn).into(),
            i64::from(e.is_some_and(|e| e.debug)).into(),
            e.map(|e| e.cpusvn.clone()).into(),
            e.map(|e| e.tcb_status.clone()).into(),
            i64::from(r.simulated).into(),
            r.cert_pem.clone().into(),
            r.serial.clone().into(),
            r.valid_from.into(),
            r.valid_until.into(),
            r.message.clone().into(),
            r.nonce.map(hex_encode).into(),
            r.spki_sha256.map(hex_encode).into(),
            now.into(),
            now.into(),
        ]);
        let names = r.domains.join(", ");
        let what = match &r.enclave {
            Some(e) => format!("MRENCLAVE {}", e.info.mrenclave),
            None => "unverified evidence".to_string(),
        };
        tasks.push(vec![
            r.task_id.to_string().into(),
            r.acct_id.to_string().into(),
            r.certificate_id.to_string().into(),
            TaskType::CertificateIssuance.as_str().into(),
            r.task_status.as_str().into(),
            format!(
                "Certificate for {names} ({what}) on node {}{}",
                r.node_name,
                if r.simulated { ", SIMULATED" } else { "" }
            )
            .into(),
            r.node_name.clone().into(),
            now.into(),
            now.into(),
        ]);
        audit.push(audit::PendingEntry {
            actor: Actor {
                user_id: None,
                name: format!("node:{}", r.node_name),
            },
            acct_id: Some(r.acct_id),
            action: match r.status {
                CertificateStatusType::Issued => "certificate.issue",
                CertificateStatusType::Pending => "certificate.pending",
                _ => "certificate.deny",
            },
            object_type: "certificate",
            object_id: Some(r.certificate_id),
            details: json!({
                "task_id": r.task_id, "node_id": r.node_id, "app_id": r.app_id,
                "build_id": r.build_id, "domains": r.domains, "serial": r.serial,
                "mrenclave": r.enclave.as_ref().map(|e| &e.info.mrenclave),
                "simulated": r.simulated, "message": r.message,
            }),
        });
    }
    Ok(WriteSet {
        inserts: vec![
            Insert {
                head: "INSERT INTO certificates (certificate_id, task_id, acct_id, zone_id, \
                       node_id, app_id, build_id, status, csr, quote, domains, mrenclave, \
                       mrsigner, isvprodid, isvsvn, debug, cpusvn, tcb_status, simulated, \
                       cert_pem, serial, valid_from, valid_until, message, nonce, \
                       spki_sha256, created_at, updated_at) VALUES",
                cells: &[P; 28],
                // No ON CONFLICT: a task id or nonce stored meanwhile fails the write, and
                // `record_issuances` writes the others without it.
                tail: "",
                rows: certs,
            },
            Insert {
                head: "INSERT INTO tasks (task_id, acct_id, entity_id, task_type, status, \
                       description, requester_user_id, requester_name, requester_type, \
                       domains_added, created_at, status_updated_at) VALUES",
                cells: &[
                    P,
                    P,
                    P,
                    P,
                    P,
                    P,
                    Lit("NULL"),
                    P,
                    Lit("'SYSTEM'"),
                    Lit("'[]'"),
                    P,
                    P,
                ],
                tail: "",
                rows: tasks,
            },
        ],
        audit,
        now,
    })
}
