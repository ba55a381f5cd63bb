//! Outcomes waiting for the replica that issued their predictions: posted
//! by the replica a report reached, taken (read, handed over, deleted, in
//! one transaction) by the issuing replica, and pruned once their
//! predictions have left the outcome window. The registry does not read
//! the ids; the server says which tag each outcome is for.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Registry, Result};

/// Rows written per statement: far under either engine's limit on bound
/// parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// One outcome for another replica's prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxOutcome {
    /// The issuing replica's tag.
    pub replica_tag: u32,
    pub prediction_id: String,
    pub label: bool,
    /// Seconds since the Unix epoch.
    pub observed_at: u32,
}

impl Registry {
    /// Posts `outcomes` for their replicas, in one transaction.
    pub async fn post_outcomes(&self, outcomes: &[MailboxOutcome]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let now = Utc::now().timestamp_millis();
        let mut tx = self.pool.begin().await?;
        for chunk in outcomes.chunks(ROWS_PER_STATEMENT) {
            // `$N` placeholders, which both engines read.
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let n = i * 4;
                    format!("(${}, ${}, ${}, ${}, $1)", n + 2, n + 3, n + 4, n + 5)
                })
                .collect();
            let statement = format!(
                "INSERT INTO outcome_mailbox (replica_tag, prediction_id, label, observed_at, posted_at_ms) \
                 VALUES {}",
                values.join(", ")
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(statement)).bind(now);
            for outcome in chunk {
                insert = insert
                    .bind(i64::from(outcome.replica_tag))
                    .bind(outcome.prediction_id.as_str())
                    .bind(i64::from(outcome.label))
                    .bind(i64::from(outcome.observed_at));
            }
            insert.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes up to `limit` of the oldest outcomes posted for `replica_tag`:
    /// hands them to `take` and deletes them, in one transaction (if it
    /// fails, they stay for the next try). Returns how many were taken.
    pub async fn take_outcomes(
        &self,
        replica_tag: u32,
        limit: u32,
        take: impl FnOnce(&[MailboxOutcome]),
    ) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, prediction_id, label, observed_at FROM outcome_mailbox \
             WHERE replica_tag = $1 ORDER BY id LIMIT $2",
        )
        .bind(i64::from(replica_tag))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let Some(last_id) = rows.last().map(|row| row.get::<i64, _>("id")) else {
            return Ok(0);
        };
        let outcomes: Vec<MailboxOutcome> = rows
            .iter()
            .map(|row| MailboxOutcome {
                replica_tag,
                prediction_id: row.get("prediction_id"),
                label: row.get::<i64, _>("label") != 0,
                observed_at: u32::try_from(row.get::<i64, _>("observed_at")).unwrap_or(u32::MAX),
            })
            .collect();
        take(&outcomes);
        sqlx::query("DELETE FROM outcome_mailbox WHERE replica_tag = $1 AND id <= $2")
            .bind(i64::from(replica_tag))
            .bind(last_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(outcomes.len())
    }

    /// Removes outcomes posted before `posted_before` (their predictions
    /// have left the outcome window, or their replica is gone). Returns the
    /// rows removed.
    pub async fn prune_outcome_mailbox(&self, posted_before: DateTime<Utc>) -> Result<u64> {
        let removed = sqlx::query("DELETE FROM outcome_mailbox WHERE posted_at_ms < $1")
            .bind(posted_before.timestamp_millis())
            .execute(&self.pool)
            .await?;
        Ok(removed.rows_affected())
    }
}
