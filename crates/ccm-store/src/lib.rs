//! Persistence for the manager: one [`Store`] over SQLite or PostgreSQL.
//!
//! Design:
//! - **One code path for both databases.** The store uses sqlx's `Any` driver, so every query and
//!   the embedded migrations (`migrations/`) are the same text on SQLite and PostgreSQL. The
//!   schema keeps to what both understand: UUIDs are hyphenated `TEXT`, timestamps Unix seconds
//!   in `BIGINT`, booleans `0`/`1`, lists and objects JSON `TEXT`; parameters are `$1`, `$2`...
//!   (which sqlx's SQLite driver also binds by number).
//! - **Changes are transactions; decisions are not made here.** Each method that changes state
//!   runs in one transaction that also writes the effects the manager's service layer decided
//!   (an [`Effect`]: image and node statuses, domain whitelisting, revocation cascades) and
//!   appends the audit entry, so the API never shows a half-applied change and every change is
//!   audited. What approving or denying a task does is never decided in SQL here.
//! - **Writers are serialised where they must be.** On SQLite, write transactions start with
//!   `BEGIN IMMEDIATE` behind an in-process mutex (one writer at a time, no lock-upgrade
//!   deadlocks, no busy-waiting). On PostgreSQL, the audit chain's head row
//!   (`audit_head`) is updated first in every write transaction; its row lock orders concurrent
//!   writers from any number of manager replicas. Races on business state are decided by
//!   conditional `UPDATE ... WHERE status = ...` statements whose row counts tell who won.
//! - **Except for the hot path.** Certificate issuance batches are written by a dedicated thread
//!   and their point reads run on connections of their own (`hot`, which says which benchmark
//!   justifies each): the same rows (`sql::WriteSet`), the same writer lock or audit head lock.
//! - **Durability.** SQLite runs in WAL mode with `synchronous = FULL`: with NORMAL, a power
//!   loss may roll back the last transactions that the API already acknowledged; FULL syncs the
//!   WAL on every commit, which is what "acknowledged writes survive a crash" requires. The WAL
//!   is checkpointed into the database file by a background task, off the commit path.
//! - **Statuses are enums on both sides.** Every status-like column accepts only the wire
//!   spellings of its `ccm-api` enum: CHECK constraints on PostgreSQL, aborting triggers on SQLite,
//!   generated from the enums after the migrations (`domains`).
//! - **List counts are kept, not counted.** A page's `total_count` and `filtered_count` come
//!   from `list_counts`, which triggers (generated per database after the migrations, `counts`)
//!   update in the transaction that adds, removes or moves a counted row; shapes without a kept
//!   count are counted from the rows (`paging`).
//! - **Time is an input.** Methods take `now` (Unix seconds); the store never reads the clock.
#![deny(missing_docs)]

mod accounts;
mod apps;
mod audit;
mod builds;
mod certificates;
mod collateral;
mod conversions;
mod counts;
mod domains;
mod effects;
mod error;
mod hot;
mod invitations;
mod nodes;
mod paging;
mod registries;
mod retention;
mod sessions;
mod sql;
mod tasks;
mod users;
mod util;
mod zones;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, MutexGuard};

pub use accounts::{AccountRecord, NewAccount, NewZone};
pub use apps::{AppEdit, PolicyEdit};
pub use builds::BuildFilter;
pub use certificates::{
    EnclaveFacts, ImageMatch, IssuanceLookup, IssuanceRecord, LookupKey, MAX_ISSUANCE_BATCH,
    PendingCertificate, PendingOutcome,
};
pub use collateral::{CollateralAges, CollateralKey, CollateralRecord, NewCollateral};
pub use conversions::{
    ClaimedConversion, ConversionResult, INTERRUPTED_REASON, Interrupted, NewConversion,
    ProgressUpdate, Recovery, SigningKeyRecord, log_line,
};
pub use effects::{Effect, EffectStep, Subject};
pub use error::Error;
pub use invitations::NewInvitation;
pub use nodes::{JoinTokenRecord, NewNode, NodeApproval, NodeAuth, NodeCertRecord, NonceState};
pub use paging::{MAX_LIMIT, Page, PageRequest, Start};
pub use registries::{NewRegistry, RegistryEdit};
pub use retention::PURGE_BATCH;
pub use sessions::{ApiKeyRecord, NewApiKey, NewSession, SessionRecord};
pub use tasks::{TaskDecision, TaskFilter};
pub use users::{NewUser, SetupTokenState, UserRecord};
pub use zones::{JoinTokenUse, NewJoinToken, ZoneDefaults, ZoneEdit, ZoneRecord};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The database behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// Parameter number `n` (from 1) of a statement whose parameters all appear once, in order:
    /// `$n` on PostgreSQL, `?` on SQLite. SQLite looks a numbered or named parameter up in a
    /// list, once when preparing and once more when sqlx binds it, so the multi-row inserts of a
    /// batch would cost time quadratic in their size; anonymous ones are bound in order.
    pub(crate) fn param(self, n: usize) -> String {
        match self {
            Self::Sqlite => "?".to_string(),
            Self::Postgres => format!("${n}"),
        }
    }

    /// `count` parameters numbered from `first`, comma-separated (an `IN (...)` list; see
    /// [`Backend::param`]).
    pub(crate) fn params(self, first: usize, count: usize) -> String {
        (first..first + count)
            .map(|n| self.param(n))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Text `column` in a condition that must not choose the index a query uses. Without
    /// statistics (a young table), both planners rate an index equality at a few rows and would
    /// rather walk every row of `column`'s value than look up an `IN` list of unique keys. An
    /// expression takes the column out of their choice: SQLite's documented unary `+`, and on
    /// PostgreSQL (which has no `+` for text) an empty concatenation.
    pub(crate) fn not_for_index(self, column: &str) -> String {
        match self {
            Self::Sqlite => format!("+{column}"),
            Self::Postgres => format!("({column} || '')"),
        }
    }
}

/// The settings of every SQLite connection (pool and dedicated writer). `journal_mode` is
/// persistent; the others are per connection.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 10000",
    // Statement journals (a multi-row insert that may need to roll back alone) in memory rather
    // than in temporary files.
    "PRAGMA temp_store = MEMORY",
    // Checkpoints run in the background (see `spawn_checkpointer`), not in whichever commit
    // happens to cross the WAL size limit.
    "PRAGMA wal_autocheckpoint = 0",
    // A log that grew during a burst is truncated once it starts over.
    "PRAGMA journal_size_limit = 16777216",
];

/// How often the SQLite write-ahead log is checkpointed into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// The checkpoint the background task and the issuance writer run; it answers (busy, frames in
/// the log, frames copied).
const WAL_CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// Takes the audit chain head's row lock, as the first statement of a PostgreSQL write
/// transaction that does not begin by advancing the head itself (an issuance write set does:
/// `WriteSet::execute`). Every write transaction but a running node's heartbeat
/// (`Store::begin_unaudited_write`) appends to the audit log, and taking this one lock before
/// any other makes writers (of any replica) queue in order instead of deadlocking on each
/// other's rows.
const PG_WRITE_ORDER: &str = "UPDATE audit_head SET seq = seq WHERE id = 1";

/// WAL frames (pages) beyond which the log is made to start over.
const WAL_RESTART_FRAMES: i64 = 2048;

/// Copies the SQLite write-ahead log into the database file in the background until the pool
/// closes.
///
/// With SQLite's automatic checkpoints, the commit that crosses the WAL size limit copies a
/// thousand pages and syncs the database file before it returns: a stall of tens of
/// milliseconds for whichever request it was. Here a PASSIVE checkpoint copies what was written
/// in the last 100 ms while writers go on. A log can only start over once everything in it is
/// copied, which never happens while writes keep coming; so when it has grown past
/// [`WAL_RESTART_FRAMES`], one more checkpoint runs holding the store's write lock, copying just
/// the frames of the last moments, and the next write starts the log from its beginning.
///
/// SQLite syncs the database file only in a checkpoint that reaches the end of the log, which
/// the passive ones never do under load: the locked one then had to sync all the pages they
/// copied, with writers held (BENCHMARKS.md has the figures). So after each
/// passive checkpoint the file `db_file` is synced here, outside the lock, and the locked one
/// syncs only its own few pages.
fn spawn_checkpointer(
    pool: AnyPool,
    write_lock: Arc<Mutex<()>>,
    writer: Option<std::sync::Weak<hot::Writer>>,
    db_file: Option<std::path::PathBuf>,
) {
    tokio::spawn(async move {
        // (busy, frames in the log, frames copied)
        let checkpoint = |pool: AnyPool| async move {
            sqlx::query_as::<_, (i64, i64, i64)>(WAL_CHECKPOINT)
                .fetch_one(&pool)
                .await
        };
        // Opened once; syncing a read-only descriptor flushes the file like any other.
        let db_file = db_file
            .and_then(|p| std::fs::File::open(p).ok())
            .map(Arc::new);
        loop {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            if pool.is_closed() {
                break;
            }
            let (frames, copied) = match checkpoint(pool.clone()).await {
                Ok((_, frames, copied)) => (frames, copied),
                Err(_) if pool.is_closed() => break,
                Err(e) => {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; retrying");
                    continue;
                }
            };
            if copied > 0
                && let Some(f) = &db_file
            {
                let f = f.clone();
                let synced = tokio::task::spawn_blocking(move || f.sync_data())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                if let Err(e) = synced {
                    tracing::warn!(error = %e, "syncing the SQLite database file failed");
                }
            }
            if frames <= WAL_RESTART_FRAMES {
                continue;
            }
            // On the issuance writer's thread when it runs, else here.
            let on_writer = match writer.as_ref().and_then(std::sync::Weak::upgrade) {
                Some(w) => w.restart_checkpoint().await,
                None => None,
            };
            let restarted = match on_writer {
                Some(r) => r.map(|_| ()).map_err(|e| e.to_string()),
                None => {
                    let _writers_wait = write_lock.lock().await;
                    checkpoint(pool.clone())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            };
            if let Err(e) = restarted
                && !pool.is_closed()
            {
                tracing::warn!(error = %e, "SQLite checkpoint failed; retrying");
            }
        }
    });
}

/// Who performs a change, for the audit log and task records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user, if a user acts.
    pub user_id: Option<uuid::Uuid>,
    /// The user's e-mail, `apikey:<name>`, or `system`.
    pub name: String,
}

impl Actor {
    /// The manager itself (startup, policies).
    pub fn system() -> Self {
        Self {
            user_id: None,
            name: "system".into(),
        }
    }
}

/// Options for [`Store::connect`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Maximum pool connections (SQLite caps it at 8; reads run in parallel under WAL).
    pub max_connections: u32,
    /// How long to wait for a pool connection.
    pub acquire_timeout: Duration,
    /// The node settings of zones that do not set their own.
    pub zone_defaults: ZoneDefaults,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            zone_defaults: ZoneDefaults::default(),
        }
    }
}

/// The manager's persistent state. Cheap to clone (shares one pool).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    write_lock: Option<Arc<Mutex<()>>>,
    /// The issuance path's own writer and read connections (see `hot`).
    hot: hot::HotPaths,
    /// The node settings of zones that do not set their own.
    zone_defaults: ZoneDefaults,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// A write transaction; on SQLite it also holds the process-wide writer lock.
pub(crate) struct WriteTx<'a> {
    pub(crate) tx: Transaction<'static, Any>,
    _guard: Option<MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

static INSTALL_DRIVERS: std::sync::Once = std::sync::Once::new();

impl Store {
    /// Connects to `url` (`sqlite://PATH` — the file is created if missing — or
    /// `postgres://...`), then applies pending migrations.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self> {
        INSTALL_DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(Error::UnsupportedUrl(redact_url(url)));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let connect_options = AnyConnectOptions::from_str(&url).map_err(Error::Database)?;
        let mut pool_options = AnyPoolOptions::new().acquire_timeout(options.acquire_timeout);
        pool_options = match backend {
            Backend::Sqlite => pool_options
                .max_connections(options.max_connections.clamp(1, 8))
                // sqlx pings a connection when it is taken from the pool and again when it goes
                // back. For SQLite a ping is a round trip to the connection's worker thread that
                // can find nothing wrong (there is no network, and a worker that died fails the
                // query itself); the ping on release still runs.
                .test_before_acquire(false)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        for pragma in SQLITE_PRAGMAS {
                            conn.execute(*pragma).await?;
                        }
                        Ok(())
                    })
                }),
            Backend::Postgres => pool_options.max_connections(options.max_connections.max(1)),
        };
        let pool = pool_options.connect_with(connect_options).await?;
        let write_lock = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
        let hot = match &write_lock {
            Some(lock) => hot::HotPaths::sqlite(sqlite_file(&url), lock.clone()),
            None => hot::HotPaths::postgres(&url, options.acquire_timeout),
        };
        let store = Self {
            pool,
            backend,
            write_lock,
            hot,
            zone_defaults: options.zone_defaults,
        };
        store.migrate().await?;
        if let Some(lock) = &store.write_lock {
            spawn_checkpointer(
                store.pool.clone(),
                lock.clone(),
                store.hot.writer().map(Arc::downgrade),
                sqlite_file(&url),
            );
        }
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            // Two replicas starting together must not both run the migrations.
            sqlx::query("SELECT pg_advisory_lock(7347004)")
                .execute(&mut *conn)
                .await?;
        }
        let mut result = sqlx::migrate!("./migrations")
            .run(&mut *conn)
            .await
            .map_err(Error::from);
        if result.is_ok() {
            result = domains::apply(&mut conn, self.backend).await;
        }
        if result.is_ok() {
            result = counts::apply(&mut conn, self.backend).await;
        }
        if self.backend == Backend::Postgres {
            if result.is_ok() {
                result = postgres_storage(&mut conn).await;
            }
            sqlx::query("SELECT pg_advisory_unlock(7347004)")
                .execute(&mut *conn)
                .await?;
        }
        result?;
        Ok(())
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned, and stops the issuance
    /// writer once the writes handed to it are done. Reads and writes fail afterwards.
    pub async fn close(&self) {
        self.hot.close();
        self.pool.close().await;
    }

    /// Runs a point read of the issuance path on its own connections (see
    /// [`hot::HotPaths::read`]): `sqlite` on an SQLite file, `sqlx` on PostgreSQL or an
    /// in-memory SQLite database.
    pub(crate) async fn hot_read<T>(
        &self,
        sqlite: impl FnOnce(&rusqlite::Connection) -> Result<T>,
        sqlx: impl Fn(&mut sqlx::AnyConnection) -> hot::ReadFuture<'_, T>,
    ) -> Result<T> {
        self.hot.read(&self.pool, sqlite, sqlx).await
    }

    pub(crate) async fn begin_write(&self) -> Result<WriteTx<'_>> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        let mut w = WriteTx { tx, _guard: guard };
        // (SQLite's BEGIN IMMEDIATE has already taken the one database write lock.)
        if self.backend == Backend::Postgres {
            sqlx::query(PG_WRITE_ORDER).execute(&mut *w.tx).await?;
        }
        Ok(w)
    }

    /// A write transaction that appends nothing to the audit log, for bookkeeping such as a
    /// heartbeat's last-seen time and instance reports. On SQLite it is [`Store::begin_write`]
    /// (one writer at a time). On PostgreSQL it does not take the audit head's lock
    /// ([`PG_WRITE_ORDER`]), so it runs beside the issuance writer instead of holding it up;
    /// the rows it locks are only ordered by their own row locks, so a deadlock with a writer
    /// deleting the same rows is possible and shows as [`Error::is_deadlock`] (the caller asks
    /// again).
    pub(crate) async fn begin_unaudited_write(&self) -> Result<WriteTx<'_>> {
        match self.backend {
            Backend::Sqlite => self.begin_write().await,
            Backend::Postgres => Ok(WriteTx {
                tx: self.pool.begin().await?,
                _guard: None,
            }),
        }
    }

    /// Reads a value from the `meta` table.
    pub async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let v: Option<(String,)> = sqlx::query_as("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(v.map(|(v,)| v))
    }

    /// Stores `value` under `key` unless the key exists; returns the value now stored.
    pub async fn set_meta_if_absent(&self, key: &str, value: &str) -> Result<String> {
        let mut w = self.begin_write().await?;
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut *w.tx)
            .await?;
        let (v,): (String,) = sqlx::query_as("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_one(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(v)
    }
}

/// Columns PostgreSQL stores out of line *without compression*: the certificate chain (PEM,
/// with the quote embedded) and the quote. Compressing them with pglz took a quarter of the
/// server's CPU under issuance load, for values that hardly compress (base64 and signatures).
/// SQLite has no such setting, so this is not a migration: it is applied after them, once.
const PG_UNCOMPRESSED: &[(&str, &str)] = &[("certificates", "cert_pem"), ("certificates", "quote")];

/// Certificate rows up to this size (bytes) stay whole in the table's page instead of having
/// their chain moved out of line. An issued certificate's row is ~8 KB (the chain embeds the
/// quote); moving it out cost four more rows and four more index entries in the TOAST table per
/// issuance. Larger rows, such as a pending request with its quote, still move out. 8160 is
/// PostgreSQL's maximum (one row per 8 KiB page).
const PG_CERTIFICATE_ROW_TARGET: u32 = 8160;

/// Applies [`PG_UNCOMPRESSED`] and [`PG_CERTIFICATE_ROW_TARGET`] where they are not in place yet
/// (an `ALTER TABLE` takes the table's lock, so it does not run on every start).
async fn postgres_storage(conn: &mut sqlx::AnyConnection) -> Result<()> {
    for (table, column) in PG_UNCOMPRESSED {
        let (storage,): (String,) = sqlx::query_as(
            "SELECT attstorage::text FROM pg_attribute \
             WHERE attrelid = $1::regclass AND attname = $2",
        )
        .bind(*table)
        .bind(*column)
        .fetch_one(&mut *conn)
        .await?;
        if storage != "e" {
            sqlx::query(&format!(
                "ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTERNAL"
            ))
            .execute(&mut *conn)
            .await?;
        }
    }
    let (options,): (Option<String>,) = sqlx::query_as(
        "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = 'certificates'::regclass",
    )
    .fetch_one(&mut *conn)
    .await?;
    let target = format!("toast_tuple_target={PG_CERTIFICATE_ROW_TARGET}");
    if !options.is_some_and(|o| o.split(',').any(|kv| kv == target)) {
        sqlx::query(&format!("ALTER TABLE certificates SET ({target})"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The database file of an SQLite URL; `None` for an in-memory database, which only the pool's
/// connections can share.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let (_, query) = url.split_once('?').unwrap_or((url, ""));
    if query.split('&').any(|kv| kv == "mode=memory") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    (path != std::path::Path::new(":memory:") && !path.as_os_str().is_empty())
        .then(|| path.to_path_buf())
}

/// Removes a password from a database URL for error messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
