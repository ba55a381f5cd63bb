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
    #[error("registry migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("registry database error: {0}")]
    Database(#[from] sqlx::Error),
}
