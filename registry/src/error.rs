//! The registry's one error type.

/// What can go wrong in a registry call. Database details are kept for the
/// log; callers map them to a generic internal error.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid model name {name:?}: {reason}")]
    InvalidModelName { name: String, reason: &'static str },
    #[error("model {0:?} not found")]
    ModelNotFound(String),
    #[error("model {model:?} has no version {version}")]
    VersionNotFound { model: String, version: u32 },
    #[error("invalid alias name {name:?}: {reason}")]
    InvalidAliasName { name: String, reason: &'static str },
    #[error("training job {0:?} not found")]
    JobNotFound(String),
    #[error("model {model:?} has no alias {name:?}")]
    AliasNotFound { model: String, name: String },
    /// The change does not apply to the current state (e.g. promoting
    /// without a canary).
    #[error("{0}")]
    InvalidChange(String),
    /// An optimistic-concurrency check failed: someone changed the policy
    /// first.
    #[error("the traffic policy of {model:?} is at revision {actual}, not {expected}; re-read and retry")]
    Conflict {
        model: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "weights of model {model:?} version {version} are corrupt: stored SHA-256 {expected}, computed {actual}"
    )]
    CorruptWeights {
        model: String,
        version: u32,
        expected: String,
        actual: String,
    },
    #[error("stored document {field} of model {model:?} version {version} is not valid JSON: {source}")]
    CorruptDocument {
        model: String,
        version: u32,
        field: &'static str,
        source: serde_json::Error,
    },
    #[error("cannot open registry at {location}: {source}")]
    Open { location: String, source: sqlx::Error },
    /// The file given as a SQLite registry is something else; it is left
    /// as it was.
    #[error("cannot open registry: {location} is not a SQLite database ({source}); it was left untouched")]
    NotSqlite { location: String, source: sqlx::Error },
    /// The database has no room left for a write (SQLite's `SQLITE_FULL`,
    /// PostgreSQL's `disk_full`); nothing of that write was stored.
    #[error("the registry's storage is full ({database}): {source}")]
    StorageFull { database: String, source: sqlx::Error },
    #[error("registry migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("registry database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl RegistryError {
    /// Whether the database could not be reached (down, restarting, network
    /// gone, no free connection in time), as opposed to refusing a request:
    /// worth retrying later, and not the caller's fault.
    pub fn is_unreachable(&self) -> bool {
        let error = match self {
            RegistryError::Database(error) | RegistryError::Open { source: error, .. } => error,
            _ => return false,
        };
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // PostgreSQL: connection exceptions (08…) and the server
            // shutting down or starting up (57P01-57P03).
            sqlx::Error::Database(database) => database
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        }
    }
}
