//! The [`Registry`] handle: opening and migrating the database (SQLite or
//! PostgreSQL), and reading and writing models and versions. Each write is
//! one transaction.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row};

use crate::reserve::Reserve;
use crate::storage::{Room, StorageWatch, is_storage_full};
use crate::{RegistryError, Result, validate_model_name};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// How long a call waits for a database connection before failing: a
/// registry that cannot be reached must fail admin calls promptly, not hang
/// them.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite's result code for a file that is not a database.
const SQLITE_NOTADB: &str = "26";

/// Which database engine holds the registry. The SQL is written once, in the
/// dialect both understand (`$N` placeholders, `RETURNING`, `ON CONFLICT`);
/// the few engine-specific statements branch on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file, for one host (several servers on that host may share it).
    Sqlite,
    /// A PostgreSQL server, for replicas on many hosts.
    Postgres,
}

impl Backend {
    /// Pooled connections a registry opens at most unless told otherwise.
    /// SQLite: a few readers beside its one writer. PostgreSQL: enough for
    /// a replica's admin calls, trainings and sync at once, while ten
    /// replicas (plus one change listener each) stay under the server's
    /// default `max_connections` of 100.
    pub fn default_max_connections(self) -> u32 {
        match self {
            Backend::Sqlite => 4,
            Backend::Postgres => 8,
        }
    }
}

/// How [`Registry::open_with`] connects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Pooled connections at most (at least 1); `None` for the engine's
    /// [default](Backend::default_max_connections).
    pub max_connections: Option<u32>,
    /// SQLite: bytes kept in a file beside the registry (`<file>-reserve`)
    /// and given back when a delete finds the disk full, so that it goes
    /// through (see `reserve.rs`); 0 for none. Unused on PostgreSQL.
    pub reserve_bytes: u64,
}

/// A version to register. The registry numbers it.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub model: String,
    /// How the version was trained (label, hyper-parameters, seed…).
    pub recipe: Value,
    /// The fitted preprocessing that turns raw records into network input.
    pub encoder: Value,
    /// Validation metrics.
    pub metrics: Value,
    /// Fingerprint and summary of the training data (never rows).
    pub dataset: Value,
    /// safetensors bytes.
    pub weights: Vec<u8>,
    /// Who registers it, for the audit log.
    pub actor: String,
}

/// A registered version's metadata (weights are read separately).
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    pub model: String,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    pub recipe: Value,
    pub encoder: Value,
    pub metrics: Value,
    pub dataset: Value,
    pub weights_sha256: String,
    pub weights_bytes: u64,
}

/// A model and all its versions, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRecord {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub versions: Vec<VersionRecord>,
}

/// Handle to the registry database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    /// The connection URL (PostgreSQL's change notifications need their own
    /// connection).
    pub(crate) url: String,
    /// How errors and logs name the database (see `storage.rs`).
    pub(crate) database: String,
    pub(crate) storage: Arc<StorageWatch>,
    pub(crate) reserve: Arc<Reserve>,
}

/// How every connection is set up, by the pool and for the first check.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Session {
    /// SQLite's `max_page_count`: a registry full at a chosen size, for
    /// tests (set only through `testing`).
    pub(crate) max_page_count: Option<u64>,
}

impl Session {
    async fn prepare(self, connection: &mut AnyConnection, backend: Backend) -> sqlx::Result<()> {
        if backend == Backend::Sqlite {
            // WAL lets readers (other servers on this host too) work beside
            // the writer; FULL sync: a version reported as registered
            // survives a power cut.
            connection
                .execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                )
                .await?;
            if let Some(pages) = self.max_page_count {
                connection
                    .execute(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {pages}")))
                    .await?;
            }
        }
        Ok(())
    }
}

const VERSION_COLUMNS: &str = "m.name, v.version, v.created_at_ms, v.recipe, v.encoder, v.metrics, \
     v.dataset, v.weights_sha256, v.weights_bytes";

impl Registry {
    /// Opens the registry at `location` and applies pending migrations:
    /// a `postgres://` (or `postgresql://`) URL selects PostgreSQL; a
    /// `sqlite:` URL or a file path selects SQLite, creating the file if
    /// needed.
    pub async fn open(location: &str) -> Result<Self> {
        Self::open_with(location, OpenOptions::default()).await
    }

    /// [`Registry::open`], with the pool's size set by `options`.
    pub async fn open_with(location: &str, options: OpenOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let open_error = |source| RegistryError::Open {
            location: redact_password(location),
            source,
        };
        let backend = if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        #[cfg(feature = "testing")]
        let (location, session) = crate::testing::session_settings(location);
        #[cfg(not(feature = "testing"))]
        let (location, session) = (location.to_string(), Session::default());
        let location = location.as_str();
        let (url, reserve) = match backend {
            Backend::Postgres => (location.to_string(), Reserve::default()),
            Backend::Sqlite => {
                let url = if location.starts_with("sqlite:") {
                    location.to_string()
                } else {
                    format!("sqlite://{location}")
                };
                let sqlite = SqliteConnectOptions::from_str(&url)
                    .map_err(open_error)?
                    .create_if_missing(true);
                let in_memory = location.contains(":memory:") || location.contains("mode=memory");
                let reserve_bytes = if in_memory { 0 } else { options.reserve_bytes };
                let reserve = Reserve::beside(sqlite.get_filename(), reserve_bytes);
                (sqlite.to_url_lossy().to_string(), reserve)
            }
        };
        // One plain connection first, set up as the pool's will be: a pool
        // that cannot connect (or set a connection up) retries until it
        // times out and then reports only that; this says why at once
        // (refused, unknown database, bad password, not a SQLite file).
        let mut first = AnyConnection::connect(&url).await.map_err(open_error)?;
        if backend == Backend::Sqlite {
            // Read-only, so a file that is something else is not written
            // to (the session's WAL pragma would be the first write).
            if let Err(source) = first.execute("SELECT COUNT(*) FROM sqlite_master").await {
                return Err(match &source {
                    sqlx::Error::Database(e) if e.code().as_deref() == Some(SQLITE_NOTADB) => {
                        RegistryError::NotSqlite {
                            location: location.to_string(),
                            source,
                        }
                    }
                    _ => open_error(source),
                });
            }
        }
        session.prepare(&mut first, backend).await.map_err(open_error)?;
        first.close().await.ok();
        let max_connections = options
            .max_connections
            .unwrap_or(backend.default_max_connections())
            .max(1);
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |connection, _| {
                Box::pin(async move { session.prepare(connection, backend).await })
            })
            .connect(&url)
            .await
            .map_err(open_error)?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATOR.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATOR.run(&pool).await?,
        }
        reserve.make().await;
        Ok(Self {
            pool,
            backend,
            database: crate::storage::describe_database(backend, location),
            storage: Arc::default(),
            reserve: Arc::new(reserve),
            url,
        })
    }

    /// The engine this registry runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Waits for open connections to finish and closes them.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Registers a new version of `new.model` (creating the model on its
    /// first version) in one transaction, and returns it with its number.
    /// On a full registry: [`RegistryError::StorageFull`], nothing stored.
    pub async fn register_version(&self, new: NewVersion) -> Result<VersionRecord> {
        let mut registered = self.insert_version(&new).await;
        if self.backend == Backend::Sqlite
            && matches!(&registered, Err(RegistryError::Database(e)) if is_storage_full(e))
        {
            // The log may have been unable to start over (a reader still
            // held it) and grown instead: with it checkpointed and started
            // over, the version may fit in room a delete freed.
            let _ = self.checkpoint().await;
            registered = self.insert_version(&new).await;
        }
        let registered = self.checked_write(registered, Room::Found)?;
        if let Err(error) = self.checkpoint().await {
            tracing::debug!(%error, "cannot checkpoint the registry's write-ahead log");
        }
        Ok(registered)
    }

    /// SQLite: copies what the write-ahead log holds into the database file
    /// now rather than after a thousand pages, and makes the next write
    /// start the log over, so that the log's room is reused instead of
    /// grown: on a disk that fills up, a delete then needs little new room.
    /// PostgreSQL checkpoints by itself.
    pub(crate) async fn checkpoint(&self) -> sqlx::Result<()> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn insert_version(&self, new: &NewVersion) -> Result<VersionRecord> {
        validate_model_name(&new.model)?;
        let now = Utc::now().timestamp_millis();
        let weights_sha256 = hex::encode(Sha256::digest(&new.weights));
        let weights_bytes = new.weights.len() as i64;

        // Correctness: the registry's write lock is taken before the
        // version number is read; concurrent registrations (from any server
        // sharing the database) queue on it and get distinct, consecutive
        // numbers.
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO models (name, created_at_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(&new.model)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let model_id: i64 = sqlx::query_scalar("SELECT id FROM models WHERE name = $1")
            .bind(&new.model)
            .fetch_one(&mut *tx)
            .await?;
        // Numbers come from the highest ever issued for this model name, not
        // from the versions stored now: a deleted version's number (or a
        // deleted model's) is never issued again.
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO version_numbers (model, highest_issued) VALUES ($1, 1) \
             ON CONFLICT (model) DO UPDATE SET highest_issued = version_numbers.highest_issued + 1 \
             RETURNING highest_issued",
        )
        .bind(&new.model)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO model_versions (model_id, version, created_at_ms, recipe, encoder, metrics, \
             dataset, weights_sha256, weights_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(model_id)
        .bind(version)
        .bind(now)
        .bind(new.recipe.to_string())
        .bind(new.encoder.to_string())
        .bind(new.metrics.to_string())
        .bind(new.dataset.to_string())
        .bind(&weights_sha256)
        .bind(weights_bytes)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO version_weights (model_id, version, safetensors) VALUES ($1, $2, $3)")
            .bind(model_id)
            .bind(version)
            .bind(&new.weights)
            .execute(&mut *tx)
            .await?;
        crate::rollout::append_audit(
            &mut tx,
            now,
            &new.actor,
            &new.model,
            "version_registered",
            &serde_json::Value::Null,
            &serde_json::json!({ "version": version, "weights_sha256": weights_sha256 }),
            "",
        )
        .await?;
        tx.commit().await?;

        Ok(VersionRecord {
            model: new.model.clone(),
            version: version as u32,
            created_at: timestamp(now),
            recipe: new.recipe.clone(),
            encoder: new.encoder.clone(),
            metrics: new.metrics.clone(),
            dataset: new.dataset.clone(),
            weights_sha256,
            weights_bytes: weights_bytes as u64,
        })
    }

    /// Every model (or only `only`, when given) with its versions.
    pub async fn list_models(&self, only: Option<&str>) -> Result<Vec<ModelRecord>> {
        let models = sqlx::query(
            "SELECT name, created_at_ms FROM models WHERE ($1 IS NULL OR name = $1) ORDER BY name",
        )
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        if let Some(name) = only
            && models.is_empty()
        {
            return Err(RegistryError::ModelNotFound(name.to_string()));
        }
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions v JOIN models m ON m.id = v.model_id \
             WHERE ($1 IS NULL OR m.name = $1) ORDER BY m.name, v.version"
        );
        let versions = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(only)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(version_from_row)
            .collect::<Result<Vec<_>>>()?;

        let mut records: Vec<ModelRecord> = models
            .iter()
            .map(|row| ModelRecord {
                name: row.get("name"),
                created_at: timestamp(row.get("created_at_ms")),
                versions: Vec::new(),
            })
            .collect();
        for version in versions {
            if let Some(model) = records.iter_mut().find(|m| m.name == version.model) {
                model.versions.push(version);
            }
        }
        Ok(records)
    }

    /// The metadata of `version` of `model`, or of its latest version.
    pub async fn version(&self, model: &str, version: Option<u32>) -> Result<VersionRecord> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions v JOIN models m ON m.id = v.model_id \
             WHERE m.name = $1 AND ($2 IS NULL OR v.version = $2) ORDER BY v.version DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(model)
            .bind(version.map(i64::from))
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => version_from_row(&row),
            None => Err(self.missing(model, version).await),
        }
    }

    /// The safetensors bytes of a version, verified against their SHA-256.
    pub async fn weights(&self, model: &str, version: u32) -> Result<Vec<u8>> {
        let row = sqlx::query(
            "SELECT w.safetensors, v.weights_sha256 FROM version_weights w \
             JOIN model_versions v ON v.model_id = w.model_id AND v.version = w.version \
             JOIN models m ON m.id = v.model_id WHERE m.name = $1 AND v.version = $2",
        )
        .bind(model)
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Err(self.missing(model, Some(version)).await);
        };
        let expected: String = row.get("weights_sha256");
        // A damaged row may not even hold bytes: report it as corrupt, not
        // as a database failure.
        let weights: Vec<u8> = match row.try_get("safetensors") {
            Ok(weights) => weights,
            Err(error) => {
                return Err(RegistryError::CorruptWeights {
                    model: model.to_string(),
                    version,
                    expected,
                    actual: format!("unreadable ({error})"),
                });
            }
        };
        let actual = hex::encode(Sha256::digest(&weights));
        if actual != expected {
            return Err(RegistryError::CorruptWeights {
                model: model.to_string(),
                version,
                expected,
                actual,
            });
        }
        Ok(weights)
    }

    /// Names what is missing: the model, or only the version.
    async fn missing(&self, model: &str, version: Option<u32>) -> RegistryError {
        let exists = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM models WHERE name = $1")
            .bind(model)
            .fetch_one(&self.pool)
            .await;
        match (exists, version) {
            (Ok(n), Some(version)) if n > 0 => RegistryError::VersionNotFound {
                model: model.to_string(),
                version,
            },
            (Err(e), _) => e.into(),
            _ => RegistryError::ModelNotFound(model.to_string()),
        }
    }

    /// The underlying pool, for tests that inspect or damage the database.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

pub(crate) fn timestamp(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn version_from_row(row: &AnyRow) -> Result<VersionRecord> {
    let model: String = row.get("name");
    let version = row.get::<i64, _>("version") as u32;
    let document = |field: &'static str| -> Result<Value> {
        let text: String = row.get(field);
        serde_json::from_str(&text).map_err(|source| RegistryError::CorruptDocument {
            model: model.clone(),
            version,
            field,
            source,
        })
    };
    Ok(VersionRecord {
        recipe: document("recipe")?,
        encoder: document("encoder")?,
        metrics: document("metrics")?,
        dataset: document("dataset")?,
        created_at: timestamp(row.get("created_at_ms")),
        weights_sha256: row.get("weights_sha256"),
        weights_bytes: row.get::<i64, _>("weights_bytes") as u64,
        model,
        version,
    })
}

/// `location` with any password in it replaced, for errors and logs.
pub fn redact_password(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => location.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn passwords_never_reach_errors_or_logs() {
        assert_eq!(
            redact_password("postgres://serval:s3cret@db.internal:5432/serval"),
            "postgres://serval:***@db.internal:5432/serval"
        );
        assert_eq!(
            redact_password("postgres://db.internal/serval"),
            "postgres://db.internal/serval"
        );
        assert_eq!(redact_password("/var/lib/serval.db"), "/var/lib/serval.db");
    }
}
