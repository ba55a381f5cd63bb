//! Training jobs: one row per training run, from start to its end state.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::timestamp;
use crate::{Registry, RegistryError, Result};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> JobState {
        match text {
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub model: String,
    pub actor: String,
    pub state: JobState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rows: u64,
    pub epochs_done: u32,
    pub epochs: u32,
    pub version: Option<u32>,
    pub error: Option<String>,
    /// The server that runs (or ran) the job.
    pub replica: String,
}

fn job_from_row(row: &AnyRow) -> JobRecord {
    JobRecord {
        id: row.get("id"),
        model: row.get("model"),
        actor: row.get("actor"),
        state: JobState::parse(&row.get::<String, _>("state")),
        started_at: timestamp(row.get("started_at_ms")),
        finished_at: row.get::<Option<i64>, _>("finished_at_ms").map(timestamp),
        rows: row.get::<i64, _>("rows") as u64,
        epochs_done: row.get::<i64, _>("epochs_done") as u32,
        epochs: row.get::<i64, _>("epochs") as u32,
        version: row.get::<Option<i64>, _>("version").map(|v| v as u32),
        error: row.get("error"),
        replica: row.get("replica"),
    }
}

impl Registry {
    /// Records a job that has just started on server `replica`.
    pub async fn start_job(
        &self,
        id: &str,
        model: &str,
        actor: &str,
        rows: u64,
        epochs: u32,
        replica: &str,
    ) -> Result<JobRecord> {
        let now = Utc::now().timestamp_millis();
        sqlx::query(
            "INSERT INTO training_jobs (id, model, actor, state, started_at_ms, rows, epochs, replica, \
             heartbeat_at_ms) VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $4)",
        )
        .bind(id)
        .bind(model)
        .bind(actor)
        .bind(now)
        .bind(rows as i64)
        .bind(i64::from(epochs))
        .bind(replica)
        .execute(&self.pool)
        .await
        .map_err(self.write_error())?;
        self.job(id).await
    }

    /// Records the epochs a running job has finished (a heartbeat too);
    /// answers whether someone has asked, through any server, to cancel it.
    pub async fn job_progress(&self, id: &str, epochs_done: u32) -> Result<bool> {
        let cancel_requested: Option<i64> = sqlx::query_scalar(
            "UPDATE training_jobs SET epochs_done = $1, heartbeat_at_ms = $2 WHERE id = $3 AND state = 'running' \
             RETURNING cancel_requested",
        )
        .bind(i64::from(epochs_done))
        .bind(Utc::now().timestamp_millis())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
            .map_err(self.write_error())?;
        Ok(cancel_requested.unwrap_or(0) != 0)
    }

    /// Asks the server running job `id` to cancel it (it sees the request
    /// when it records its next epoch). False when the job is not running.
    pub async fn request_job_cancel(&self, id: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE training_jobs SET cancel_requested = 1 WHERE id = $1 AND state = 'running'")
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(self.write_error())?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks every job running on `replica` as alive now.
    pub async fn heartbeat_jobs(&self, replica: &str) -> Result<()> {
        sqlx::query("UPDATE training_jobs SET heartbeat_at_ms = $1 WHERE state = 'running' AND replica = $2")
            .bind(Utc::now().timestamp_millis())
            .bind(replica)
            .execute(&self.pool)
            .await
            .map_err(self.write_error())?;
        Ok(())
    }

    /// Records how a job ended.
    pub async fn finish_job(
        &self,
        id: &str,
        state: JobState,
        version: Option<u32>,
        error: Option<&str>,
    ) -> Result<JobRecord> {
        sqlx::query(
            "UPDATE training_jobs SET state = $1, finished_at_ms = $2, version = $3, error = $4 \
             WHERE id = $5 AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(Utc::now().timestamp_millis())
        .bind(version.map(i64::from))
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(self.write_error())?;
        self.job(id).await
    }

    /// Marks as failed the jobs no server is running any more: those left
    /// running by `restarted` (a server calls this with its own name as it
    /// starts, so they are its leftovers) and those of any server whose
    /// heartbeat is older than `stale_after`. Returns how many.
    pub async fn fail_abandoned_jobs(
        &self,
        restarted: Option<&str>,
        stale_after: std::time::Duration,
    ) -> Result<u64> {
        let now = Utc::now().timestamp_millis();
        let stale_before = now - i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
        let done = sqlx::query(
            "UPDATE training_jobs SET state = 'failed', finished_at_ms = $1, \
             error = 'the server stopped while this job was running' \
             WHERE state = 'running' AND (replica = $2 OR COALESCE(heartbeat_at_ms, started_at_ms) < $3)",
        )
        .bind(now)
        .bind(restarted)
        .bind(stale_before)
        .execute(&self.pool)
        .await
        .map_err(self.write_error())?;
        Ok(done.rows_affected())
    }

    pub async fn job(&self, id: &str) -> Result<JobRecord> {
        sqlx::query("SELECT * FROM training_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| job_from_row(&row))
            .ok_or_else(|| RegistryError::JobNotFound(id.to_string()))
    }

    /// The newest jobs first (of `model`, when given).
    pub async fn jobs(&self, model: Option<&str>, limit: u32) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM training_jobs WHERE ($1 IS NULL OR model = $1) \
             ORDER BY started_at_ms DESC, id DESC LIMIT $2",
        )
        .bind(model)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(job_from_row).collect())
    }
}
