//! Image conversion jobs and the per-account enclave signing keys.
//!
//! A conversion job is a row of `conversions` next to its image (`builds`). The manager's
//! workers move it through QUEUED → RUNNING → SUCCEEDED | FAILED:
//!
//! - **Claiming** ([`Store::claim_conversion`]) runs in a write transaction, which is serialised
//!   across processes (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the audit-head row lock every
//!   write transaction takes first), and its `UPDATE ... WHERE status = 'QUEUED'` is
//!   conditional besides, so a job is claimed by exactly one worker of one replica. An idle
//!   manager only reads: the write transaction starts once a queued job is seen.
//! - **Fencing.** A claim carries a fresh random token; every later write of the worker
//!   (progress, success, failure, release) names it and changes nothing when the job has since
//!   been recovered and claimed again, or deleted with its image. Such a write answers `false`,
//!   which tells the worker to abandon the job.
//! - **Heartbeats.** Progress updates are single conditional `UPDATE`s (no audit entry, no
//!   global lock) that also refresh `heartbeat_at`; a RUNNING job whose heartbeat is older than
//!   the lease belongs to a manager that died, and [`Store::recover_conversions`] queues it again
//!   (up to a number of attempts) or fails it with the reason "interrupted by manager restart".
//! - **Credentials** are stored sealed (the store never sees them in clear) and set to NULL in
//!   the same statement that ends the job.
//! - **Success** records the enclave identity on the image and raises its BUILD_WHITELIST task
//!   (approved at once under the AUTO_APPROVE policy) in one transaction with the audit entries.

use ccm_api::builds::{
    Build, Conversion, ConversionLogEntry, ConversionProgress, ConversionStatus,
    MAX_CONVERSION_LOG_ENTRIES, MAX_CONVERSION_LOG_LINE,
};
use ccm_api::tasks::TaskType;
use serde_json::json;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::tasks::{self, NewTask};
use crate::util::{enum_value, json, opt_uuid, to_json, uuid};
use crate::{Actor, Effect, Error, Result, Store, audit};

/// The conversion columns of the image query (`LEFT JOIN conversions`), all nullable.
#[derive(sqlx::FromRow)]
pub(crate) struct ConversionColumns {
    conv_status: Option<String>,
    conv_phase: Option<String>,
    conv_progress: Option<i64>,
    conv_bytes_done: Option<i64>,
    conv_bytes_total: Option<i64>,
    conv_input_image: Option<String>,
    conv_output_image: Option<String>,
    conv_debug: Option<i64>,
    conv_attempts: Option<i64>,
    conv_error: Option<String>,
    conv_created_at: Option<i64>,
    conv_started_at: Option<i64>,
    conv_finished_at: Option<i64>,
    conv_updated_at: Option<i64>,
}

impl ConversionColumns {
    pub(crate) fn into_conversion(self) -> Result<Option<Conversion>> {
        let Some(status) = self.conv_status else {
            return Ok(None);
        };
        Ok(Some(Conversion {
            status: enum_value("conversions.status", &status, ConversionStatus::parse)?,
            phase: self.conv_phase.unwrap_or_default(),
            progress: self.conv_progress.unwrap_or(0),
            bytes_done: self.conv_bytes_done.unwrap_or(0),
            bytes_total: self.conv_bytes_total,
            input_image: self.conv_input_image.unwrap_or_default(),
            output_image: self.conv_output_image.unwrap_or_default(),
            debug: self.conv_debug.unwrap_or(0) != 0,
            attempts: self.conv_attempts.unwrap_or(0),
            error: self.conv_error,
            created_at: self.conv_created_at.unwrap_or(0),
            started_at: self.conv_started_at,
            finished_at: self.conv_finished_at,
            updated_at: self.conv_updated_at.unwrap_or(0),
        }))
    }
}

/// A conversion to queue together with its image.
#[derive(Debug, Clone)]
pub struct NewConversion {
    /// The image to record: account, app, output coordinates (`docker_info` name and tag),
    /// ISVPRODID, ISVSVN, memory and threads. Its enclave identity is recorded on success; the
    /// values given here are ignored.
    pub build: Build,
    /// The input image reference, as pulled.
    pub input_image: String,
    /// The output image reference, as pushed.
    pub output_image: String,
    /// The job's settings as the manager interprets them (JSON), fixed at request time.
    pub settings: String,
    /// Whether a debug enclave is built.
    pub debug: bool,
    /// The registry credentials, sealed by the caller; `None` for anonymous access.
    pub credentials_sealed: Option<Vec<u8>>,
    /// For the audit entry: which credentials were given (e.g. `["input", "output"]`), never
    /// their values.
    pub credentials_given: Vec<&'static str>,
}

/// A job claimed by a worker.
#[derive(Clone)]
pub struct ClaimedConversion {
    /// The image.
    pub build_id: Uuid,
    /// Its account.
    pub acct_id: Uuid,
    /// Its app.
    pub app_id: Uuid,
    /// The fencing token of this claim.
    pub claim_token: Uuid,
    /// Input image reference.
    pub input_image: String,
    /// Output image reference.
    pub output_image: String,
    /// The settings given at request time.
    pub settings: String,
    /// Debug enclave.
    pub debug: bool,
    /// Sealed registry credentials, if any.
    pub credentials_sealed: Option<Vec<u8>>,
    /// This is the n-th start of the job (1 for the first).
    pub attempt: i64,
    /// The log so far (earlier attempts included).
    pub log: Vec<ConversionLogEntry>,
    /// Who asked for the image.
    pub requester: Actor,
}

impl std::fmt::Debug for ClaimedConversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedConversion")
            .field("build_id", &self.build_id)
            .field("acct_id", &self.acct_id)
            .field("output_image", &self.output_image)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// Progress of a running job, written with [`Store::conversion_progress`].
#[derive(Debug, Clone)]
pub struct ProgressUpdate<'a> {
    /// What the job is doing.
    pub phase: &'a str,
    /// Estimated completion, 0-100.
    pub progress: i64,
    /// Layer bytes transferred.
    pub bytes_done: i64,
    /// Total layer bytes, once known.
    pub bytes_total: Option<i64>,
    /// The whole log (bounded here to the most recent lines).
    pub log: &'a [ConversionLogEntry],
}

/// What a successful conversion produced.
#[derive(Debug, Clone)]
pub struct ConversionResult {
    /// Manifest digest of the output image, `sha256:<hex>`.
    pub docker_image_sha: String,
    /// Output image size in MiB (rounded up).
    pub docker_image_size: i64,
    /// MRENCLAVE (hex).
    pub mrenclave: String,
    /// MRSIGNER (hex).
    pub mrsigner: String,
}

/// Which RUNNING jobs [`Store::recover_conversions`] treats as interrupted.
#[derive(Debug, Clone, Copy)]
pub enum Interrupted<'a> {
    /// Every RUNNING job (a manager on SQLite is the only process using its database).
    All,
    /// Those claimed by this manager instance in an earlier life.
    ClaimedBy(&'a str),
    /// Those whose last heartbeat is before this time (their manager died).
    HeartbeatBefore(i64),
}

/// What [`Store::recover_conversions`] did with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Queued again.
    Requeued,
    /// Failed: it had been started the maximum number of times.
    Failed,
}

/// A stored enclave signing key.
#[derive(Clone)]
pub struct SigningKeyRecord {
    /// The private key, sealed by the manager.
    pub key_sealed: Vec<u8>,
    /// MRSIGNER (hex).
    pub mrsigner: String,
    /// When it was generated.
    pub created_at: i64,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("mrsigner", &self.mrsigner)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The reason recorded when a job is given up after manager restarts.
pub const INTERRUPTED_REASON: &str = "interrupted by manager restart";

/// Cuts a log line to [`MAX_CONVERSION_LOG_LINE`] characters.
pub fn log_line(at: i64, message: impl Into<String>) -> ConversionLogEntry {
    let mut message: String = message.into();
    if let Some((i, _)) = message.char_indices().nth(MAX_CONVERSION_LOG_LINE) {
        message.truncate(i);
        message.push('…');
    }
    ConversionLogEntry { at, message }
}

fn bounded_log_json(log: &[ConversionLogEntry]) -> Result<String> {
    let start = log.len().saturating_sub(MAX_CONVERSION_LOG_ENTRIES);
    to_json("conversions.log", &log.get(start..).unwrap_or_default())
}

#[derive(sqlx::FromRow)]
struct JobRow {
    build_id: String,
    acct_id: String,
    app_id: String,
    status: String,
    claim_token: Option<String>,
    input_image: String,
    output_image: String,
    settings: String,
    debug: i64,
    credentials_sealed: Option<Vec<u8>>,
    attempts: i64,
    log: String,
    requester_user_id: Option<String>,
    requester_name: String,
}

const JOB_SELECT: &str = "SELECT c.build_id, c.acct_id, b.app_id, c.status, c.claim_token, \
     c.input_image, c.output_image, c.settings, c.debug, c.credentials_sealed, c.attempts, c.log, \
     c.requester_user_id, c.requester_name FROM conversions c JOIN builds b ON b.build_id = c.build_id";

async fn load_job(conn: &mut AnyConnection, build_id: &str) -> Result<Option<JobRow>> {
    Ok(
        sqlx::query_as(&format!("{JOB_SELECT} WHERE c.build_id = $1"))
            .bind(build_id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

impl JobRow {
    fn requester(&self) -> Result<Actor> {
        Ok(Actor {
            user_id: opt_uuid(
                "conversions.requester_user_id",
                self.requester_user_id.as_deref(),
            )?,
            name: self.requester_name.clone(),
        })
    }

    /// Whether this row is RUNNING under `token`.
    fn held_by(&self, token: Uuid) -> bool {
        self.status == ConversionStatus::Running.as_str()
            && self.claim_token.as_deref() == Some(token.to_string().as_str())
    }
}

impl Store {
    /// Records an image to be converted and queues its conversion, in one transaction with the
    /// audit entry. The app must belong to the image's account. An earlier image of the app with
    /// the same name and tag whose conversion FAILED is replaced (deleted, and audited as such);
    /// any other earlier image with that name and tag is a conflict.
    pub async fn create_conversion(
        &self,
        c: &NewConversion,
        actor: &Actor,
        now: i64,
    ) -> Result<Build> {
        let b = &c.build;
        let Some(docker) = &b.docker_info else {
            return Err(Error::InvalidState(
                "a converted image has output coordinates (docker_info)".into(),
            ));
        };
        let mut w = self.begin_write().await?;
        let app: Option<(String,)> =
            sqlx::query_as("SELECT name FROM apps WHERE app_id = $1 AND acct_id = $2")
                .bind(b.app_id.to_string())
                .bind(b.acct_id.to_string())
                .fetch_optional(&mut *w.tx)
                .await?;
        if app.is_none() {
            return Err(Error::NotFound("app"));
        }
        let existing: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT b.build_id, c.status FROM builds b LEFT JOIN conversions c ON c.build_id = b.build_id \
             WHERE b.app_id = $1 AND b.docker_image_name = $2 AND b.docker_version = $3",
        )
        .bind(b.app_id.to_string())
        .bind(&docker.docker_image_name)
        .bind(&docker.docker_version)
        .fetch_optional(&mut *w.tx)
        .await?;
        if let Some((old_id, status)) = existing {
            if status.as_deref() != Some(ConversionStatus::Failed.as_str()) {
                return Err(Error::Conflict {
                    what: "image",
                    field: "docker_version",
                });
            }
            sqlx::query("DELETE FROM tasks WHERE acct_id = $1 AND entity_id = $2")
                .bind(b.acct_id.to_string())
                .bind(&old_id)
                .execute(&mut *w.tx)
                .await?;
            sqlx::query("DELETE FROM builds WHERE build_id = $1")
                .bind(&old_id)
                .execute(&mut *w.tx)
                .await?;
            audit::append(
                &mut w.tx,
                now,
                actor,
                Some(b.acct_id),
                "build.delete",
                "build",
                Some(uuid("builds.build_id", &old_id)?),
                json!({"app_id": b.app_id, "reason": "replaced by a new conversion of the same tag",
                       "replaced_by": b.build_id}),
            )
            .await?;
        }
        sqlx::query(
            "INSERT INTO builds (build_id, acct_id, app_id, docker_image_name, docker_version, \
             docker_image_sha, docker_image_size, mrenclave, mrsigner, isvprodid, isvsvn, mem_size, \
             threads, status, status_updated_at, pending_task_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, NULL, '', '', $6, $7, $8, $9, 'PENDING', $10, NULL, $10, $10)",
        )
        .bind(b.build_id.to_string())
        .bind(b.acct_id.to_string())
        .bind(b.app_id.to_string())
        .bind(&docker.docker_image_name)
        .bind(&docker.docker_version)
        .bind(b.enclave_info.isvprodid)
        .bind(b.enclave_info.isvsvn)
        .bind(b.mem_size)
        .bind(b.threads)
        .bind(now)
        .execute(&mut *w.tx)
        .await
        .map_err(crate::error::on_unique("image", "docker_version"))?;
        let log = [log_line(
            now,
            format!(
                "queued by {}: convert {} into {}",
                actor.name, c.input_image, c.output_image
            ),
        )];
        sqlx::query(
            "INSERT INTO conversions (build_id, acct_id, status, input_image, output_image, settings, \
             debug, credentials_sealed, requester_user_id, requester_name, phase, progress, bytes_done, \
             bytes_total, log, error, attempts, claim_token, claimed_by, heartbeat_at, created_at, \
             started_at, finished_at, updated_at) \
             VALUES ($1, $2, 'QUEUED', $3, $4, $5, $6, $7, $8, $9, 'queued', 0, 0, NULL, $10, NULL, 0, \
             NULL, NULL, NULL, $11, NULL, NULL, $11)",
        )
        .bind(b.build_id.to_string())
        .bind(b.acct_id.to_string())
        .bind(&c.input_image)
        .bind(&c.output_image)
        .bind(&c.settings)
        .bind(i64::from(c.debug))
        .bind(c.credentials_sealed.clone())
        .bind(actor.user_id.map(|u| u.to_string()))
        .bind(&actor.name)
        .bind(bounded_log_json(&log)?)
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(b.acct_id),
            "build.convert",
            "build",
            Some(b.build_id),
            json!({
                "app_id": b.app_id,
                "input_image": c.input_image,
                "output_image": c.output_image,
                "debug": c.debug,
                "isvprodid": b.enclave_info.isvprodid,
                "isvsvn": b.enclave_info.isvsvn,
                "mem_size": b.mem_size,
                "threads": b.threads,
                "credentials_given": c.credentials_given,
            }),
        )
        .await?;
        let build = crate::builds::load(&mut w.tx, b.acct_id, b.build_id)
            .await?
            .ok_or(Error::NotFound("image"))?;
        w.commit().await?;
        Ok(build)
    }

    /// Claims the oldest queued job for manager `instance`: it becomes RUNNING with a fresh
    /// claim token and one more attempt. `None` when nothing is queued.
    pub async fn claim_conversion(
        &self,
        instance: &str,
        now: i64,
    ) -> Result<Option<ClaimedConversion>> {
        // Read first, so that an idle manager polling the queue never writes.
        let queued: Option<(String,)> = sqlx::query_as(
            "SELECT build_id FROM conversions WHERE status = 'QUEUED' ORDER BY created_at, build_id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        if queued.is_none() {
            return Ok(None);
        }
        let mut w = self.begin_write().await?;
        let next: Option<(String,)> = sqlx::query_as(
            "SELECT build_id FROM conversions WHERE status = 'QUEUED' ORDER BY created_at, build_id LIMIT 1",
        )
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some((build_id,)) = next else {
            return Ok(None);
        };
        let token = Uuid::new_v4();
        let claimed = sqlx::query(
            "UPDATE conversions SET status = 'RUNNING', claim_token = $1, claimed_by = $2, \
             attempts = attempts + 1, started_at = $3, heartbeat_at = $3, updated_at = $3, \
             phase = 'starting', error = NULL WHERE build_id = $4 AND status = 'QUEUED'",
        )
        .bind(token.to_string())
        .bind(instance)
        .bind(now)
        .bind(&build_id)
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        if claimed != 1 {
            return Ok(None);
        }
        let row = load_job(&mut w.tx, &build_id)
            .await?
            .ok_or(Error::NotFound("conversion"))?;
        w.commit().await?;
        Ok(Some(ClaimedConversion {
            build_id: uuid("conversions.build_id", &row.build_id)?,
            acct_id: uuid("conversions.acct_id", &row.acct_id)?,
            app_id: uuid("builds.app_id", &row.app_id)?,
            claim_token: token,
            requester: row.requester()?,
            log: json("conversions.log", &row.log)?,
            input_image: row.input_image,
            output_image: row.output_image,
            settings: row.settings,
            debug: row.debug != 0,
            credentials_sealed: row.credentials_sealed,
            attempt: row.attempts,
        }))
    }

    /// Records the progress of a running job and refreshes its heartbeat. `false` when the claim
    /// no longer holds (the job was recovered elsewhere, or deleted with its image).
    pub async fn conversion_progress(
        &self,
        build_id: Uuid,
        claim_token: Uuid,
        p: &ProgressUpdate<'_>,
        now: i64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE conversions SET phase = $1, progress = $2, bytes_done = $3, bytes_total = $4, \
             log = $5, heartbeat_at = $6, updated_at = $6 \
             WHERE build_id = $7 AND claim_token = $8 AND status = 'RUNNING'",
        )
        .bind(p.phase)
        .bind(p.progress.clamp(0, 100))
        .bind(p.bytes_done)
        .bind(p.bytes_total)
        .bind(bounded_log_json(p.log)?)
        .bind(now)
        .bind(build_id.to_string())
        .bind(claim_token.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Ends a job successfully: records the enclave identity and output digest on the image,
    /// the final byte counts and log on the job (phase `done`, 100%), raises the image's
    /// BUILD_WHITELIST task (approved at once under AUTO_APPROVE, writing `on_approve`), deletes
    /// the sealed credentials, and audits it, in one transaction. `false` (and no change) when
    /// the claim no longer holds.
    pub async fn complete_conversion(
        &self,
        build_id: Uuid,
        claim_token: Uuid,
        result: &ConversionResult,
        last: &ProgressUpdate<'_>,
        on_approve: &Effect,
        now: i64,
    ) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let Some(row) = load_job(&mut w.tx, &build_id.to_string()).await? else {
            return Ok(false);
        };
        if !row.held_by(claim_token) {
            return Ok(false);
        }
        let acct_id = uuid("conversions.acct_id", &row.acct_id)?;
        let requester = row.requester()?;
        let task_id = Uuid::new_v4();
        sqlx::query(
            "UPDATE builds SET docker_image_sha = $1, docker_image_size = $2, mrenclave = $3, \
             mrsigner = $4, pending_task_id = $5, status_updated_at = $6, updated_at = $6 \
             WHERE build_id = $7",
        )
        .bind(&result.docker_image_sha)
        .bind(result.docker_image_size)
        .bind(&result.mrenclave)
        .bind(&result.mrsigner)
        .bind(task_id.to_string())
        .bind(now)
        .bind(build_id.to_string())
        .execute(&mut *w.tx)
        .await?;
        sqlx::query(
            "UPDATE conversions SET status = 'SUCCEEDED', phase = 'done', progress = 100, \
             bytes_done = $1, bytes_total = $2, credentials_sealed = NULL, claim_token = NULL, \
             heartbeat_at = NULL, log = $3, finished_at = $4, updated_at = $4 WHERE build_id = $5",
        )
        .bind(last.bytes_done)
        .bind(last.bytes_total)
        .bind(bounded_log_json(last.log)?)
        .bind(now)
        .bind(build_id.to_string())
        .execute(&mut *w.tx)
        .await?;
        audit::append(
            &mut w.tx,
            now,
            &Actor::system(),
            Some(acct_id),
            "build.converted",
            "build",
            Some(build_id),
            json!({
                "app_id": row.app_id,
                "output_image": row.output_image,
                "digest": result.docker_image_sha,
                "mrenclave": result.mrenclave,
                "mrsigner": result.mrsigner,
                "requested_by": requester.name,
            }),
        )
        .await?;
        let app_name: (String,) = sqlx::query_as("SELECT name FROM apps WHERE app_id = $1")
            .bind(&row.app_id)
            .fetch_one(&mut *w.tx)
            .await?;
        tasks::create(
            &mut w.tx,
            NewTask {
                acct_id,
                task_id,
                entity_id: build_id,
                task_type: TaskType::BuildWhitelist,
                description: format!(
                    "Whitelist image {} (MRENCLAVE {}) of app {}",
                    row.output_image, result.mrenclave, app_name.0
                ),
                requester: &requester,
                requester_type: ccm_api::tasks::RequesterType::User,
                domains_added: Vec::new(),
                proposal: None,
                on_approve: Some(on_approve),
            },
            now,
        )
        .await?;
        w.commit().await?;
        Ok(true)
    }

    /// Ends a job as FAILED with `reason` (keeping the progress it had reached), deletes the
    /// sealed credentials, and audits it. `false` (and no change) when the claim no longer
    /// holds.
    pub async fn fail_conversion(
        &self,
        build_id: Uuid,
        claim_token: Uuid,
        reason: &str,
        last: &ProgressUpdate<'_>,
        now: i64,
    ) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let Some(row) = load_job(&mut w.tx, &build_id.to_string()).await? else {
            return Ok(false);
        };
        if !row.held_by(claim_token) {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE conversions SET progress = $1, bytes_done = $2, bytes_total = $3 WHERE build_id = $4",
        )
        .bind(last.progress.clamp(0, 100))
        .bind(last.bytes_done)
        .bind(last.bytes_total)
        .bind(build_id.to_string())
        .execute(&mut *w.tx)
        .await?;
        fail_in_tx(&mut w.tx, &row, reason, last.log, now).await?;
        w.commit().await?;
        Ok(true)
    }

    /// Gives a job back to the queue (at manager shutdown): QUEUED again from the start, the
    /// attempt not counted. `false` when the claim no longer holds.
    pub async fn release_conversion(
        &self,
        build_id: Uuid,
        claim_token: Uuid,
        log: &[ConversionLogEntry],
        now: i64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE conversions SET status = 'QUEUED', phase = 'queued', progress = 0, bytes_done = 0, \
             claim_token = NULL, claimed_by = NULL, heartbeat_at = NULL, attempts = attempts - 1, \
             log = $1, updated_at = $2 WHERE build_id = $3 AND claim_token = $4 AND status = 'RUNNING'",
        )
        .bind(bounded_log_json(log)?)
        .bind(now)
        .bind(build_id.to_string())
        .bind(claim_token.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Handles RUNNING jobs whose manager is gone (see [`Interrupted`]): each is queued again if
    /// it has been started fewer than `max_attempts` times, else FAILED with
    /// [`INTERRUPTED_REASON`] (credentials deleted, audited). Returns what was done.
    pub async fn recover_conversions(
        &self,
        which: Interrupted<'_>,
        max_attempts: i64,
        now: i64,
    ) -> Result<Vec<(Uuid, Recovery)>> {
        let cond = match which {
            Interrupted::All => "",
            Interrupted::ClaimedBy(_) => " AND claimed_by = $1",
            Interrupted::HeartbeatBefore(_) => " AND heartbeat_at < $1",
        };
        let sql = format!(
            "SELECT build_id, claim_token FROM conversions WHERE status = 'RUNNING'{cond} ORDER BY build_id"
        );
        let candidates = self.interrupted_candidates(&sql, which).await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = self.begin_write().await?;
        let mut done = Vec::new();
        for (build_id, token) in candidates {
            let Some(row) = load_job(&mut w.tx, &build_id).await? else {
                continue;
            };
            // Still the same run, still RUNNING (and, for lease expiry, still silent).
            if row.status != ConversionStatus::Running.as_str() || row.claim_token != token {
                continue;
            }
            if let Interrupted::HeartbeatBefore(t) = which {
                let (hb,): (Option<i64>,) =
                    sqlx::query_as("SELECT heartbeat_at FROM conversions WHERE build_id = $1")
                        .bind(&build_id)
                        .fetch_one(&mut *w.tx)
                        .await?;
                if hb.is_some_and(|hb| hb >= t) {
                    continue;
                }
            }
            let mut log: Vec<ConversionLogEntry> = json("conversions.log", &row.log)?;
            let id = uuid("conversions.build_id", &build_id)?;
            if row.attempts < max_attempts {
                log.push(log_line(
                    now,
                    format!(
                        "attempt {} was interrupted (its manager stopped); queued again",
                        row.attempts
                    ),
                ));
                sqlx::query(
                    "UPDATE conversions SET status = 'QUEUED', phase = 'queued', progress = 0, \
                     bytes_done = 0, claim_token = NULL, claimed_by = NULL, heartbeat_at = NULL, \
                     log = $1, updated_at = $2 WHERE build_id = $3",
                )
                .bind(bounded_log_json(&log)?)
                .bind(now)
                .bind(&build_id)
                .execute(&mut *w.tx)
                .await?;
                done.push((id, Recovery::Requeued));
            } else {
                let reason = format!("{INTERRUPTED_REASON} (after {} attempts)", row.attempts);
                log.push(log_line(now, reason.clone()));
                fail_in_tx(&mut w.tx, &row, &reason, &log, now).await?;
                done.push((id, Recovery::Failed));
            }
        }
        w.commit().await?;
        Ok(done)
    }

    async fn interrupted_candidates(
        &self,
        sql: &str,
        which: Interrupted<'_>,
    ) -> Result<Vec<(String, Option<String>)>> {
        let q = sqlx::query_as::<_, (String, Option<String>)>(sql);
        let q = match which {
            Interrupted::All => q,
            Interrupted::ClaimedBy(instance) => q.bind(instance.to_owned()),
            Interrupted::HeartbeatBefore(t) => q.bind(t),
        };
        Ok(q.fetch_all(&self.pool).await?)
    }

    /// A conversion job with its log, if the image of the account has one.
    pub async fn get_conversion(
        &self,
        acct_id: Uuid,
        build_id: Uuid,
    ) -> Result<Option<ConversionProgress>> {
        let mut conn = self.pool.acquire().await?;
        let Some(build) = crate::builds::load(&mut conn, acct_id, build_id).await? else {
            return Ok(None);
        };
        let Some(conversion) = build.conversion else {
            return Ok(None);
        };
        let (log,): (String,) = sqlx::query_as("SELECT log FROM conversions WHERE build_id = $1")
            .bind(build_id.to_string())
            .fetch_one(&mut *conn)
            .await?;
        Ok(Some(ConversionProgress {
            build_id,
            conversion,
            log: json("conversions.log", &log)?,
        }))
    }

    /// Whether sealed registry credentials are still stored for a job (for diagnostics and
    /// tests: they must be gone once the job has ended).
    pub async fn conversion_holds_credentials(&self, build_id: Uuid) -> Result<bool> {
        let row: Option<(Option<Vec<u8>>,)> =
            sqlx::query_as("SELECT credentials_sealed FROM conversions WHERE build_id = $1")
                .bind(build_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(matches!(row, Some((Some(_),))))
    }

    /// The account's enclave signing key, if one was generated.
    pub async fn signing_key(&self, acct_id: Uuid) -> Result<Option<SigningKeyRecord>> {
        let row: Option<(Vec<u8>, String, i64)> = sqlx::query_as(
            "SELECT key_sealed, mrsigner, created_at FROM signing_keys WHERE acct_id = $1",
        )
        .bind(acct_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(key_sealed, mrsigner, created_at)| SigningKeyRecord {
                key_sealed,
                mrsigner,
                created_at,
            }),
        )
    }

    /// Stores the account's signing key unless it has one already (two workers may generate
    /// one at the same time: the first stored wins), and returns the key now stored. A new key
    /// is audited with its MRSIGNER.
    pub async fn insert_signing_key(
        &self,
        acct_id: Uuid,
        key_sealed: &[u8],
        mrsigner: &str,
        now: i64,
    ) -> Result<SigningKeyRecord> {
        let mut w = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO signing_keys (acct_id, key_sealed, mrsigner, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (acct_id) DO NOTHING",
        )
        .bind(acct_id.to_string())
        .bind(key_sealed.to_vec())
        .bind(mrsigner)
        .bind(now)
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            audit::append(
                &mut w.tx,
                now,
                &Actor::system(),
                Some(acct_id),
                "account.signing_key.create",
                "account",
                Some(acct_id),
                json!({"mrsigner": mrsigner, "algorithm": "RSA-3072, e = 3"}),
            )
            .await?;
        }
        let (key_sealed, mrsigner, created_at): (Vec<u8>, String, i64) = sqlx::query_as(
            "SELECT key_sealed, mrsigner, created_at FROM signing_keys WHERE acct_id = $1",
        )
        .bind(acct_id.to_string())
        .fetch_one(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(SigningKeyRecord {
            key_sealed,
            mrsigner,
            created_at,
        })
    }
}

async fn fail_in_tx(
    conn: &mut AnyConnection,
    row: &JobRow,
    reason: &str,
    log: &[ConversionLogEntry],
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE conversions SET status = 'FAILED', phase = 'failed', error = $1, \
         credentials_sealed = NULL, claim_token = NULL, heartbeat_at = NULL, log = $2, \
         finished_at = $3, updated_at = $3 WHERE build_id = $4",
    )
    .bind(reason)
    .bind(bounded_log_json(log)?)
    .bind(now)
    .bind(&row.build_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE builds SET updated_at = $1 WHERE build_id = $2")
        .bind(now)
        .bind(&row.build_id)
        .execute(&mut *conn)
        .await?;
    audit::append(
        conn,
        now,
        &Actor::system(),
        Some(uuid("conversions.acct_id", &row.acct_id)?),
        "build.conversion_failed",
        "build",
        Some(uuid("conversions.build_id", &row.build_id)?),
        json!({"app_id": row.app_id, "output_image": row.output_image, "reason": reason}),
    )
    .await
}
