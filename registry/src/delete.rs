//! Deleting a version, or a whole model, for good: the refusals while
//! something still routes traffic to it, the one transaction that removes
//! the rows (weights included) and appends the audit event, and the VACUUM
//! afterwards that gives the space back to the file system. On a full
//! storage the delete still goes through where the engine allows (with the
//! reserve's room on SQLite) and the VACUUM is deferred. Version numbers
//! are not freed (see `store.rs`); training job rows stay as history.

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::{Any, AnyConnection, Row, Transaction};

use crate::rollout::append_audit;
use crate::storage::{Room, is_storage_full};
use crate::store::Backend;
use crate::{AuditEvent, ChangeContext, Registry, RegistryError, Result};

/// The audit event of a one-version delete; `before` holds the version.
const VERSION_DELETED: &str = "version_deleted";
/// The audit event of a delete that took the model (a whole-model delete,
/// or its last version); `before` holds every version removed.
const MODEL_DELETED: &str = "model_deleted";

impl AuditEvent {
    /// The versions this event deleted; none for any other kind of event.
    pub fn deleted_versions(&self) -> Vec<u32> {
        let as_version = |value: &Value| value.as_u64().and_then(|v| u32::try_from(v).ok());
        match self.kind.as_str() {
            VERSION_DELETED => self
                .before
                .get("version")
                .and_then(as_version)
                .into_iter()
                .collect(),
            MODEL_DELETED => self
                .before
                .get("versions")
                .and_then(Value::as_array)
                .map(|versions| versions.iter().filter_map(as_version).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// What a delete removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Deletion {
    pub model: String,
    /// The versions removed, in order.
    pub versions: Vec<u32>,
    /// Whether the model itself went (a whole-model delete, or its last
    /// version).
    pub model_deleted: bool,
    /// How much the database file shrank once the space was reclaimed.
    pub bytes_reclaimed: u64,
    /// Why the file was not compacted after the delete, when it was not
    /// (e.g. its storage is full: compacting writes a copy). The rows are
    /// gone either way and new versions reuse their space; the next delete
    /// that finds room compacts.
    pub compaction_deferred: Option<String>,
}

/// Whether `error` says the storage has no room.
fn storage_full(error: &RegistryError) -> bool {
    matches!(error, RegistryError::Database(error) if is_storage_full(error))
}

/// A stored version about to be deleted, as its audit event records it.
struct DoomedVersion {
    version: u32,
    weights_sha256: String,
    weights_bytes: i64,
}

impl Registry {
    /// Deletes `version` of `model`, or the whole model when `version` is
    /// `None`, in one transaction with its audit event, then reclaims the
    /// space. Deleting a model's last version deletes the model.
    ///
    /// Refused ([`RegistryError::InvalidChange`]) with nothing deleted while
    /// an alias or the traffic policy points at a version that would go.
    ///
    /// A delete needs little room (SQLite: the pages it changes, in the
    /// write-ahead log). When even that is missing, the reserve kept beside
    /// a SQLite registry (see `reserve.rs`) is given back and the delete
    /// tried once more. Compacting afterwards needs room for a copy of the
    /// database, so on a full storage it is deferred and reported
    /// ([`Deletion::compaction_deferred`]) rather than failing the delete.
    pub async fn delete(
        &self,
        model: &str,
        version: Option<u32>,
        context: &ChangeContext,
    ) -> Result<Deletion> {
        let mut removed = self.remove_rows(model, version, context).await;
        let full = matches!(&removed, Err(RegistryError::Database(e)) if is_storage_full(e));
        let released = full && self.release_reserve().await;
        if released {
            removed = self.remove_rows(model, version, context).await;
        }
        let (versions, model_deleted) = self.checked_write(removed, Room::Found)?;
        // The rows are gone whatever happens next; failing to give the space
        // back only means the file stays as large as it was.
        let compacted = if released {
            // Correctness: the reserve's room is for the log, not for the
            // copy compacting writes, which would fill the disk again.
            Err(None)
        } else {
            self.reclaim_space().await.map_err(Some)
        };
        let (bytes_reclaimed, compaction_deferred) = match compacted {
            Ok(bytes) => {
                self.reserve.make().await;
                (bytes, None)
            }
            Err(error) if error.as_ref().is_none_or(storage_full) => {
                if let Some(error) = error {
                    tracing::warn!(model, %error, "deleted; compaction deferred: the registry's storage is full");
                }
                self.settle_log().await;
                let note = format!(
                    "the registry's storage is full ({}): compacting needs room for a copy of the \
                     database; new versions reuse the freed space, and the next delete that finds room \
                     compacts",
                    self.database
                );
                (0, Some(note))
            }
            Err(error) => {
                if let Some(error) = error {
                    tracing::warn!(model, %error, "deleted, but the registry file could not be compacted");
                }
                let note = "the registry file could not be compacted (see the server log)";
                (0, Some(note.to_string()))
            }
        };
        Ok(Deletion {
            model: model.to_string(),
            versions,
            model_deleted,
            bytes_reclaimed,
            compaction_deferred,
        })
    }

    /// After a delete on a full storage: checkpoints the write-ahead log
    /// so that new versions reuse the freed pages through the log's own
    /// room. When even that lacks room (the last registration's pages wait
    /// in the log for the file to grow), the reserve is given back first.
    async fn settle_log(&self) {
        let Err(error) = self.checkpoint().await else {
            return;
        };
        if !is_storage_full(&error) || !self.release_reserve().await {
            tracing::warn!(%error, "cannot checkpoint the registry's write-ahead log");
            return;
        }
        if let Err(error) = self.checkpoint().await {
            tracing::warn!(%error, "cannot checkpoint the registry's write-ahead log, even with the reserve's room");
        }
    }

    /// Gives the reserve back to the file system; true when there was one.
    async fn release_reserve(&self) -> bool {
        let released = self.reserve.release().await;
        if released {
            tracing::warn!(
                database = %self.database,
                "the registry's storage is full: gave back the reserve so that a delete can go through"
            );
        }
        released
    }

    /// The delete itself: checks, rows and audit event in one transaction.
    /// Returns the versions removed and whether the model went.
    async fn remove_rows(
        &self,
        model: &str,
        version: Option<u32>,
        context: &ChangeContext,
    ) -> Result<(Vec<u32>, bool)> {
        let now = Utc::now().timestamp_millis();
        // Correctness: BEGIN IMMEDIATE takes the write lock before the
        // checks read anything, so no alias or policy can be pointed at the
        // version between the check and the delete.
        let mut tx = self.begin_write().await?;
        let model_id = self.model_id(&mut tx, model).await?;
        let stored = stored_versions(&mut tx, model_id).await?;
        let doomed: Vec<&DoomedVersion> = match version {
            Some(version) => {
                let found = stored.iter().find(|v| v.version == version).ok_or_else(|| {
                    RegistryError::VersionNotFound {
                        model: model.to_string(),
                        version,
                    }
                })?;
                refuse_if_version_serves(&mut tx, model, model_id, version).await?;
                vec![found]
            }
            None => {
                refuse_if_model_serves(&mut tx, model, model_id).await?;
                stored.iter().collect()
            }
        };
        let model_deleted = doomed.len() == stored.len();
        let versions: Vec<u32> = doomed.iter().map(|v| v.version).collect();

        for version in &versions {
            for table in ["version_weights", "model_versions"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE model_id = $1 AND version = $2"
                )))
                .bind(model_id)
                .bind(i64::from(*version))
                .execute(&mut *tx)
                .await?;
            }
        }
        let (kind, before) = if model_deleted {
            sqlx::query("DELETE FROM models WHERE id = $1")
                .bind(model_id)
                .execute(&mut *tx)
                .await?;
            (MODEL_DELETED, json!({ "versions": versions }))
        } else {
            let only = doomed[0];
            (
                VERSION_DELETED,
                json!({
                    "version": only.version,
                    "weights_sha256": only.weights_sha256,
                    "weights_bytes": only.weights_bytes,
                }),
            )
        };
        append_audit(
            &mut tx,
            now,
            &context.actor,
            model,
            kind,
            &before,
            &Value::Null,
            &context.reason,
        )
        .await?;
        tx.commit().await?;
        Ok((versions, model_deleted))
    }

    /// Rewrites the database without its free pages (VACUUM, which cannot
    /// run inside a transaction) and folds the write-ahead log back into the
    /// file, so the file itself shrinks. Returns the bytes given back.
    async fn reclaim_space(&self) -> Result<u64> {
        if self.backend == Backend::Postgres {
            // PostgreSQL's autovacuum reclaims the rows' space in the
            // background; VACUUM FULL would lock the tables every replica
            // reads.
            return Ok(0);
        }
        let mut connection = self.pool.acquire().await?;
        let before = database_bytes(&mut connection).await?;
        sqlx::query("VACUUM").execute(&mut *connection).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *connection)
            .await?;
        let after = database_bytes(&mut connection).await?;
        Ok(before.saturating_sub(after))
    }
}

/// Every stored version of a model, oldest first.
async fn stored_versions(tx: &mut Transaction<'_, Any>, model_id: i64) -> Result<Vec<DoomedVersion>> {
    let rows = sqlx::query(
        "SELECT version, weights_sha256, weights_bytes FROM model_versions WHERE model_id = $1 ORDER BY version",
    )
    .bind(model_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .iter()
        .map(|row| DoomedVersion {
            version: row.get::<i64, _>("version") as u32,
            weights_sha256: row.get("weights_sha256"),
            weights_bytes: row.get("weights_bytes"),
        })
        .collect())
}

/// Refuses while an alias, or the traffic policy's stable, canary or
/// shadow version, is `version`.
async fn refuse_if_version_serves(
    tx: &mut Transaction<'_, Any>,
    model: &str,
    model_id: i64,
    version: u32,
) -> Result<()> {
    let aliases: Vec<String> =
        sqlx::query_scalar("SELECT name FROM aliases WHERE model_id = $1 AND version = $2 ORDER BY name")
            .bind(model_id)
            .bind(i64::from(version))
            .fetch_all(&mut **tx)
            .await?;
    if !aliases.is_empty() {
        let (noun, pronoun) = if aliases.len() == 1 {
            ("alias", "it")
        } else {
            ("aliases", "them")
        };
        return Err(RegistryError::InvalidChange(format!(
            "model {model:?} version {version} is still the target of {noun} {}; move or delete {pronoun} first",
            quoted_list(&aliases)
        )));
    }
    let policy = sqlx::query(
        "SELECT stable_version, canary_version, canary_percent, shadow_version FROM traffic_policies WHERE model_id = $1",
    )
    .bind(model_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(policy) = policy {
        let version = i64::from(version);
        if policy.get::<i64, _>("stable_version") == version {
            return Err(RegistryError::InvalidChange(format!(
                "model {model:?} version {version} is still the stable version of the traffic policy; \
                 roll back to another version first"
            )));
        }
        if policy.get::<Option<i64>, _>("canary_version") == Some(version) {
            return Err(RegistryError::InvalidChange(format!(
                "model {model:?} version {version} is still the canary of the traffic policy (at {}%); \
                 promote it or roll it back first",
                policy.get::<f64, _>("canary_percent")
            )));
        }
        if policy.get::<Option<i64>, _>("shadow_version") == Some(version) {
            return Err(RegistryError::InvalidChange(format!(
                "model {model:?} version {version} still shadows the traffic policy; \
                 stop it first (rollout shadow --off)"
            )));
        }
    }
    Ok(())
}

/// Refuses while the model has any alias or a traffic policy.
async fn refuse_if_model_serves(tx: &mut Transaction<'_, Any>, model: &str, model_id: i64) -> Result<()> {
    let aliases = sqlx::query("SELECT name, version FROM aliases WHERE model_id = $1 ORDER BY name")
        .bind(model_id)
        .fetch_all(&mut **tx)
        .await?;
    if !aliases.is_empty() {
        let named: Vec<String> = aliases
            .iter()
            .map(|row| {
                format!(
                    "{:?} (version {})",
                    row.get::<String, _>("name"),
                    row.get::<i64, _>("version")
                )
            })
            .collect();
        let noun = if named.len() == 1 { "alias" } else { "aliases" };
        return Err(RegistryError::InvalidChange(format!(
            "model {model:?} still has {noun} {}; delete the aliases first",
            named.join(", ")
        )));
    }
    let policy =
        sqlx::query("SELECT stable_version, canary_version FROM traffic_policies WHERE model_id = $1")
            .bind(model_id)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some(policy) = policy {
        let canary = policy
            .get::<Option<i64>, _>("canary_version")
            .map(|v| format!(", canary version {v}"))
            .unwrap_or_default();
        return Err(RegistryError::InvalidChange(format!(
            "model {model:?} still has a traffic policy (stable version {}{canary}); \
             a model whose traffic is managed by a policy cannot be deleted",
            policy.get::<i64, _>("stable_version")
        )));
    }
    Ok(())
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The database's size in bytes as this connection sees it (pages in use
/// and free, including those still in the write-ahead log).
async fn database_bytes(connection: &mut AnyConnection) -> Result<u64> {
    let bytes: i64 =
        sqlx::query_scalar("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
            .fetch_one(&mut *connection)
            .await?;
    Ok(bytes.max(0) as u64)
}
