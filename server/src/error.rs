//! The server's one error type and its mapping to gRPC status codes: the
//! one place where the model crate's and the registry's errors, named by
//! cause, become codes a caller can act on.

use serval_model::ModelError;
use serval_registry::RegistryError;
use tonic::{Code, Status};

/// Every failure a call can end in, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum ServalError {
    /// Bad input; the message names the field, line or column.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// Overload: a queue or limit is full; retry later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The caller may not do this (e.g. read a source outside the allowed
    /// prefixes).
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    /// A concurrent change won; re-read and retry.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bug or a broken dependency; details go to the log.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A model error about one stored version, which the message names.
    #[error("model {model:?} version {version}: {source}")]
    Version {
        model: String,
        version: u32,
        source: ModelError,
    },
}

impl From<ServalError> for Status {
    fn from(error: ServalError) -> Self {
        let (code, message) = match error {
            ServalError::InvalidArgument(m) => (Code::InvalidArgument, m),
            ServalError::NotFound(m) => (Code::NotFound, m),
            ServalError::FailedPrecondition(m) => (Code::FailedPrecondition, m),
            ServalError::ResourceExhausted(m) => (Code::ResourceExhausted, m),
            ServalError::PermissionDenied(m) => (Code::PermissionDenied, m),
            ServalError::Unavailable(m) => (Code::Unavailable, m),
            ServalError::Aborted(m) => (Code::Aborted, m),
            ServalError::DeadlineExceeded(m) => (Code::DeadlineExceeded, m),
            ServalError::Internal(m) => (Code::Internal, m),
            ServalError::Registry(error) => registry_status(error),
            ServalError::Model(error) => (model_code(&error), error.to_string()),
            ServalError::Version {
                model,
                version,
                source,
            } => (
                model_code(&source),
                ServalError::Version {
                    model,
                    version,
                    source,
                }
                .to_string(),
            ),
        };
        if code == Code::Internal {
            tracing::error!(error = %message, "internal error");
        }
        Status::new(code, message)
    }
}

/// What a caller can do about a model error.
fn model_code(error: &ModelError) -> Code {
    match error {
        ModelError::InvalidData(_)
        | ModelError::InvalidSetting(_)
        | ModelError::MissingColumn { .. }
        | ModelError::InvalidCell { .. }
        | ModelError::InvalidDenseRow { .. }
        | ModelError::Diverged { .. }
        | ModelError::ExplanationsUnavailable => Code::InvalidArgument,
        ModelError::Cancelled => Code::Cancelled,
        ModelError::CorruptWeights(_) | ModelError::CorruptDocument { .. } => Code::FailedPrecondition,
        ModelError::ShapeMismatch(_) | ModelError::Compute(_) => Code::Internal,
    }
}

fn registry_status(error: RegistryError) -> (Code, String) {
    match error {
        RegistryError::InvalidModelName { .. } | RegistryError::InvalidAliasName { .. } => {
            (Code::InvalidArgument, error.to_string())
        }
        RegistryError::ModelNotFound(_)
        | RegistryError::VersionNotFound { .. }
        | RegistryError::AliasNotFound { .. }
        | RegistryError::JobNotFound(_) => (Code::NotFound, error.to_string()),
        RegistryError::InvalidChange(_) => (Code::FailedPrecondition, error.to_string()),
        RegistryError::Conflict { .. } => (Code::Aborted, error.to_string()),
        RegistryError::CorruptWeights { .. } | RegistryError::CorruptDocument { .. } => {
            tracing::error!(error = %error, "registry data failed verification");
            (Code::FailedPrecondition, error.to_string())
        }
        _ if error.is_unreachable() => {
            tracing::error!(error = %error, "registry database unreachable");
            (
                Code::Unavailable,
                "the registry database cannot be reached: predictions of loaded versions go on, \
                 training, rollout changes and registry reads fail until it is back; retry later"
                    .to_string(),
            )
        }
        RegistryError::StorageFull { ref database, .. } => {
            tracing::error!(error = %error, "registry storage full");
            (
                Code::ResourceExhausted,
                format!(
                    "the registry's storage is full ({database}): nothing was stored; delete versions \
                     that are no longer needed (serval models delete) or give the database more room"
                ),
            )
        }
        RegistryError::Open { .. }
        | RegistryError::NotSqlite { .. }
        | RegistryError::Migration(_)
        | RegistryError::Database(_) => {
            tracing::error!(error = %error, "registry database error");
            (
                Code::Internal,
                "registry database error (see server log)".to_string(),
            )
        }
    }
}
