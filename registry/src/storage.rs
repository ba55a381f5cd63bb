//! The registry's storage running out of room: recognising it (SQLite's
//! `SQLITE_FULL`, PostgreSQL's `disk_full`), naming the database in the
//! error without credentials, and keeping the count and the current state
//! that the server reports (metrics, health). Freeing room is the
//! operator's (see `delete.rs` for what a delete does on a full registry).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{Backend, Registry, RegistryError, Result};

/// SQLite's result code for "database or disk is full": the file system
/// has no room, or the database reached `max_page_count`.
const SQLITE_FULL: &str = "13";
/// PostgreSQL's SQLSTATE `disk_full`.
const POSTGRES_DISK_FULL: &str = "53100";

/// What the registry has seen of its storage since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStatus {
    /// A write found no room, and no write that adds data (a version) or
    /// frees it (a delete) has succeeded since.
    pub full: bool,
    /// Writes refused for want of room.
    pub full_errors: u64,
    /// SQLite: bytes held in the reserve beside the registry file; 0 when
    /// there is none, or it was given back to let a delete through on a
    /// full disk.
    pub reserve_bytes: u64,
}

/// Shared by every clone of a [`Registry`].
#[derive(Debug, Default)]
pub(crate) struct StorageWatch {
    full: AtomicBool,
    full_errors: AtomicU64,
}

/// What a successful write says about the room left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// It added data (a version) or freed some (a delete): there is room
    /// again, or was for it.
    Found,
    /// It changed little (a job's progress, an alias): it proves nothing.
    Unknown,
}

/// Whether `error` says the database has no room left.
pub(crate) fn is_storage_full(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => database
            .code()
            .is_some_and(|code| code == SQLITE_FULL || code == POSTGRES_DISK_FULL),
        _ => false,
    }
}

/// How errors and logs name the database at `location`: the SQLite file,
/// or PostgreSQL's database, host and port, never a user or password.
pub(crate) fn describe_database(backend: Backend, location: &str) -> String {
    match backend {
        Backend::Sqlite => {
            let path = location
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or(path);
            format!("SQLite file {path}")
        }
        Backend::Postgres => match url::Url::parse(location) {
            Ok(url) => {
                let database = url.path().trim_start_matches('/');
                let host = url.host_str().unwrap_or("localhost");
                let port = url.port().unwrap_or(5432);
                format!("PostgreSQL database {database:?} on {host}:{port}")
            }
            Err(_) => "a PostgreSQL database".to_string(),
        },
    }
}

impl Registry {
    /// What the registry has seen of its storage (for health and metrics).
    pub fn storage_status(&self) -> StorageStatus {
        StorageStatus {
            full: self.storage.full.load(Ordering::Relaxed),
            full_errors: self.storage.full_errors.load(Ordering::Relaxed),
            reserve_bytes: self.reserve.held(),
        }
    }

    /// The database as errors and logs name it (no credentials).
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The outcome of a write, with a full storage turned into
    /// [`RegistryError::StorageFull`] and counted; a success whose `room`
    /// is [`Room::Found`] ends the full state.
    pub(crate) fn checked_write<T>(&self, result: Result<T>, room: Room) -> Result<T> {
        match result {
            Ok(value) => {
                if room == Room::Found && self.storage.full.swap(false, Ordering::Relaxed) {
                    tracing::info!(database = %self.database, "the registry's storage has room again");
                }
                Ok(value)
            }
            Err(error) => Err(self.named_if_full(error)),
        }
    }

    /// For a write statement's error: [`RegistryError::StorageFull`] when it
    /// says there is no room (counted), else a database error.
    pub(crate) fn write_error(&self) -> impl Fn(sqlx::Error) -> RegistryError + '_ {
        |error| self.named_if_full(RegistryError::Database(error))
    }

    fn named_if_full(&self, error: RegistryError) -> RegistryError {
        match error {
            RegistryError::Database(source) if is_storage_full(&source) => {
                self.storage.full_errors.fetch_add(1, Ordering::Relaxed);
                if !self.storage.full.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        database = %self.database,
                        error = %source,
                        "the registry's storage is full: new versions and changes fail until room is freed"
                    );
                }
                RegistryError::StorageFull {
                    database: self.database.clone(),
                    source,
                }
            }
            error => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_are_named_without_credentials() {
        assert_eq!(
            describe_database(Backend::Sqlite, "/var/lib/serval/serval.db"),
            "SQLite file /var/lib/serval/serval.db"
        );
        assert_eq!(
            describe_database(Backend::Sqlite, "sqlite:///tmp/r.db?mode=rwc"),
            "SQLite file /tmp/r.db"
        );
        let named = describe_database(
            Backend::Postgres,
            "postgres://serval:s3cret@db.internal:6432/registry",
        );
        assert_eq!(named, "PostgreSQL database \"registry\" on db.internal:6432");
        assert!(!named.contains("s3cret") && !named.contains("serval:"));
    }
}
