//! Live statistics published by every replica sharing the registry: one row
//! per replica, model version and second holding the server's snapshot of
//! that second (opaque JSON text here), a heartbeat per replica, and the
//! pruning of both. The server merges the snapshots; the registry only
//! keeps them.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::store::timestamp;
use crate::{Registry, Result};

/// Rows written per statement: far under either engine's limit on bound
/// parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// One second of one version's figures on the publishing replica.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedSecond {
    pub model: String,
    pub version: u32,
    /// The Unix second the figures cover.
    pub second: u64,
    /// The server's snapshot, as JSON text.
    pub snapshot: String,
}

/// One second of one version's figures, and the replica that published it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSecond {
    pub replica: String,
    pub version: u32,
    pub second: u64,
    pub snapshot: String,
}

/// When a replica last published.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaHeartbeat {
    pub replica: String,
    pub published_at: DateTime<Utc>,
}

impl Registry {
    /// Writes `seconds` as `replica`'s figures (replacing what it wrote
    /// before for the same version and second) and its heartbeat, in one
    /// transaction.
    pub async fn publish_live_stats(&self, replica: &str, seconds: &[PublishedSecond]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO fleet_replicas (replica, published_at_ms) VALUES ($1, $2) \
             ON CONFLICT (replica) DO UPDATE SET published_at_ms = excluded.published_at_ms",
        )
        .bind(replica)
        .bind(Utc::now().timestamp_millis())
        .execute(&mut *tx)
        .await?;
        for chunk in seconds.chunks(ROWS_PER_STATEMENT) {
            // `$N` placeholders, which both engines read (the Any driver's
            // query builder writes `?`, which PostgreSQL does not).
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let n = i * 4;
                    format!("(${}, ${}, ${}, $1, ${})", n + 2, n + 3, n + 4, n + 5)
                })
                .collect();
            let statement = format!(
                "INSERT INTO fleet_live_stats (model, version, second, replica, snapshot) VALUES {} \
                 ON CONFLICT (model, second, version, replica) DO UPDATE SET snapshot = excluded.snapshot",
                values.join(", ")
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(statement)).bind(replica);
            for published in chunk {
                insert = insert
                    .bind(published.model.as_str())
                    .bind(i64::from(published.version))
                    .bind(published.second as i64)
                    .bind(published.snapshot.as_str());
            }
            insert.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every replica's figures for `model` from `since_second` on, of
    /// versions that still exist (a deleted version's figures are gone at
    /// once, whoever published them).
    pub async fn live_stats_since(&self, model: &str, since_second: u64) -> Result<Vec<ReplicaSecond>> {
        let rows = sqlx::query(
            "SELECT s.replica, s.version, s.second, s.snapshot FROM fleet_live_stats s \
             WHERE s.model = $1 AND s.second >= $2 AND EXISTS (SELECT 1 FROM model_versions v \
             JOIN models m ON m.id = v.model_id WHERE m.name = s.model AND v.version = s.version) \
             ORDER BY s.replica, s.version, s.second",
        )
        .bind(model)
        .bind(since_second as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| ReplicaSecond {
                replica: row.get("replica"),
                version: row.get::<i64, _>("version") as u32,
                second: row.get::<i64, _>("second") as u64,
                snapshot: row.get("snapshot"),
            })
            .collect())
    }

    /// Every replica that has published, and when it last did.
    pub async fn replica_heartbeats(&self) -> Result<Vec<ReplicaHeartbeat>> {
        let rows = sqlx::query("SELECT replica, published_at_ms FROM fleet_replicas ORDER BY replica")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| ReplicaHeartbeat {
                replica: row.get("replica"),
                published_at: timestamp(row.get("published_at_ms")),
            })
            .collect())
    }

    /// Removes figures of seconds before `before_second`, and the heartbeats
    /// of replicas silent since before `silent_since`. Returns the rows
    /// removed.
    pub async fn prune_live_stats(&self, before_second: u64, silent_since: DateTime<Utc>) -> Result<u64> {
        let stats = sqlx::query("DELETE FROM fleet_live_stats WHERE second < $1")
            .bind(before_second as i64)
            .execute(&self.pool)
            .await?;
        let replicas = sqlx::query("DELETE FROM fleet_replicas WHERE published_at_ms < $1")
            .bind(silent_since.timestamp_millis())
            .execute(&self.pool)
            .await?;
        Ok(stats.rows_affected() + replicas.rows_affected())
    }
}
