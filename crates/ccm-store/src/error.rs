//! The store's error type.

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database URL names no supported backend.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A dedicated connection (the issuance writer thread's, the SQLite hot-path reads') failed
    /// or is gone.
    #[error("database error: {0}")]
    Connection(String),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The object does not exist (or is not visible in the given account).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique field already has this value.
    #[error("{what} with this {field} already exists")]
    Conflict {
        /// The kind of object.
        what: &'static str,
        /// The field whose value must be unique.
        field: &'static str,
    },
    /// The change is not possible in the object's current state.
    #[error("{0}")]
    InvalidState(String),
    /// A list's `next` cursor is not one this list gave out.
    #[error("invalid cursor: pass the `next` value of the previous page unchanged")]
    InvalidCursor,
    /// A stored value could not be decoded.
    #[error("corrupt stored value in {column}: {detail}")]
    Corrupt {
        /// The column.
        column: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// A failure of a rusqlite connection (the SQLite hot-path reads).
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Connection(e.to_string())
    }
}

impl Error {
    /// Whether PostgreSQL ended the transaction to break a deadlock (SQLSTATE 40P01): asking
    /// again in a new transaction is the remedy.
    pub(crate) fn is_deadlock(&self) -> bool {
        matches!(self, Error::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("40P01"))
    }

    pub(crate) fn corrupt(column: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            column,
            detail: detail.to_string(),
        }
    }
}

/// Maps a unique-constraint violation to [`Error::Conflict`], other errors to [`Error::Database`].
pub(crate) fn on_unique(what: &'static str, field: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict { what, field },
        _ => Error::Database(e),
    }
}
