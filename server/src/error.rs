//! The server's one error type and its mapping to gRPC status codes: the
//! one place where the model crate's and the registry's errors, named by
//! cause, become codes a caller can act on; and the one mapping of those
//! codes to HTTP statuses, for the HTTP edge (`oip_http`).

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

/// The HTTP status of a call that ended with `code`, so that HTTP callers
/// can act on the same causes as gRPC callers (the usual gRPC-HTTP
/// mapping, as in Google's API design guide).
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode;
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        // "Client closed request": the caller went away.
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status"),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
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
        ModelError::CorruptWeights(_) | ModelError::CorruptDocument { .. } | ModelError::MemoryBudget(_) => {
            Code::FailedPrecondition
        }
        ModelError::ShapeMismatch(_) | ModelError::Compute(_) | ModelError::TemporaryStorage(_) => {
            Code::Internal
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_http_status_a_caller_can_act_on() {
        let expected = [
            (Code::Ok, 200),
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::OutOfRange, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::ResourceExhausted, 429),
            (Code::Cancelled, 499),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Unknown, 500),
            (Code::Internal, 500),
            (Code::DataLoss, 500),
        ];
        for (code, status) in expected {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }
}
