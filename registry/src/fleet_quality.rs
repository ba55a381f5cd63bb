//! Online quality published by every replica sharing the registry: one row
//! per model version and replica holding the server's current summary of
//! that version (opaque JSON text here), and its pruning. The server merges
//! the summaries; the registry only keeps them. Staleness is read from the
//! replicas' heartbeats (`fleet_stats`).

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::store::timestamp;
use crate::{Registry, Result};

/// Rows written per statement: far under either engine's limit on bound
/// parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// One version's online quality on the publishing replica.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedQuality {
    pub model: String,
    pub version: u32,
    /// The server's summary, as JSON text.
    pub summary: String,
}

/// One version's online quality, and the replica that published it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaQuality {
    pub replica: String,
    pub version: u32,
    pub summary: String,
    pub published_at: DateTime<Utc>,
}

impl Registry {
    /// Writes `summaries` as `replica`'s online quality, replacing what it
    /// wrote before for the same versions; with `replace_all`, everything
    /// it wrote before goes (a replica starting again under the same name),
    /// in the same transaction.
    pub async fn publish_online_quality(
        &self,
        replica: &str,
        summaries: &[PublishedQuality],
        replace_all: bool,
    ) -> Result<()> {
        if summaries.is_empty() && !replace_all {
            return Ok(());
        }
        let now = Utc::now().timestamp_millis();
        let mut tx = self.pool.begin().await?;
        if replace_all {
            sqlx::query("DELETE FROM fleet_online_quality WHERE replica = $1")
                .bind(replica)
                .execute(&mut *tx)
                .await?;
        }
        for chunk in summaries.chunks(ROWS_PER_STATEMENT) {
            // `$N` placeholders, which both engines read.
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let n = i * 3;
                    format!("(${}, ${}, $1, ${}, $2)", n + 3, n + 4, n + 5)
                })
                .collect();
            let statement = format!(
                "INSERT INTO fleet_online_quality (model, version, replica, summary, published_at_ms) \
                 VALUES {} ON CONFLICT (model, version, replica) DO UPDATE SET \
                 summary = excluded.summary, published_at_ms = excluded.published_at_ms",
                values.join(", ")
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(statement))
                .bind(replica)
                .bind(now);
            for published in chunk {
                insert = insert
                    .bind(published.model.as_str())
                    .bind(i64::from(published.version))
                    .bind(published.summary.as_str());
            }
            insert.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every replica's online quality for `model`, of versions that still
    /// exist (a deleted version's quality is gone at once, whoever
    /// published it).
    pub async fn online_quality_published(&self, model: &str) -> Result<Vec<ReplicaQuality>> {
        let rows = sqlx::query(
            "SELECT q.replica, q.version, q.summary, q.published_at_ms FROM fleet_online_quality q \
             WHERE q.model = $1 AND EXISTS (SELECT 1 FROM model_versions v \
             JOIN models m ON m.id = v.model_id WHERE m.name = q.model AND v.version = q.version) \
             ORDER BY q.replica, q.version",
        )
        .bind(model)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| ReplicaQuality {
                replica: row.get("replica"),
                version: row.get::<i64, _>("version") as u32,
                summary: row.get("summary"),
                published_at: timestamp(row.get("published_at_ms")),
            })
            .collect())
    }

    /// Removes the online quality of replicas without a heartbeat (pruned
    /// by [`Registry::prune_live_stats`]) and of deleted versions. Returns
    /// the rows removed.
    pub async fn prune_online_quality(&self) -> Result<u64> {
        let removed = sqlx::query(
            "DELETE FROM fleet_online_quality WHERE NOT EXISTS (SELECT 1 FROM fleet_replicas r \
             WHERE r.replica = fleet_online_quality.replica) OR NOT EXISTS (SELECT 1 FROM \
             model_versions v JOIN models m ON m.id = v.model_id WHERE m.name = \
             fleet_online_quality.model AND v.version = fleet_online_quality.version)",
        )
        .execute(&self.pool)
        .await?;
        Ok(removed.rows_affected())
    }
}
