//! Serval's model registry: named models, their immutable numbered versions,
//! each version's weights, the aliases and traffic policies that decide what
//! serves, and the append-only audit log of every change, kept in SQLite
//! through sqlx.
//!
//! The registry stores the server's documents (training recipe, fitted
//! encoder, metrics, dataset fingerprint) as opaque JSON and the weights as
//! bytes with their SHA-256; it knows nothing of how they were made. It
//! also keeps each replica's published live statistics (opaque JSON too),
//! so that any replica can answer for the fleet.

mod changes;
mod delete;
mod error;
mod fleet_quality;
mod fleet_stats;
mod jobs;
mod names;
mod outcome_mailbox;
mod reserve;
mod rollout;
mod storage;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use changes::{Announcement, CHANGES_CHANNEL, ChangeListener};
pub use delete::Deletion;
pub use error::RegistryError;
pub use fleet_quality::{PublishedQuality, ReplicaQuality};
pub use fleet_stats::{PublishedSecond, ReplicaHeartbeat, ReplicaSecond};
pub use jobs::{JobRecord, JobState};
pub use names::{validate_alias_name, validate_model_name};
pub use outcome_mailbox::MailboxOutcome;
pub use rollout::{
    Alias, AuditEvent, AuditFilter, ChangeContext, RolloutState, ServingAt, TrafficChange, TrafficPolicy,
};
pub use storage::StorageStatus;
pub use store::{Backend, ModelRecord, NewVersion, OpenOptions, Registry, VersionRecord, redact_password};

/// Result type of every registry call.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
