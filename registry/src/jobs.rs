//! Training jobs: one row per training run, from start to its end state.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

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
}

fn job_from_row(row: &SqliteRow) -> JobRecord {
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
    }
}

impl Registry {
    /// Records a job that has just started.
    pub async fn start_job(
        &self,
        id: &str,
        model: &str,
        actor: &str,
        rows: u64,
        epochs: u32,
    ) -> Result<JobRecord> {
        sqlx::query(
            "INSERT INTO training_jobs (id, model, actor, state, started_at_ms, rows, epochs) \
             VALUES (?, ?, ?, 'running', ?, ?, ?)",
        )
        .bind(id)
        .bind(model)
        .bind(actor)
        .bind(Utc::now().timestamp_millis())
        .bind(rows as i64)
        .bind(i64::from(epochs))
        .execute(&self.pool)
        .await?;
        self.job(id).await
    }

    /// Records the epochs a running job has finished.
    pub async fn job_progress(&self, id: &str, epochs_done: u32) -> Result<()> {
        sqlx::query("UPDATE training_jobs SET epochs_done = ? WHERE id = ? AND state = 'running'")
            .bind(i64::from(epochs_done))
            .bind(id)
            .execute(&self.pool)
            .await?;
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
            "UPDATE training_jobs SET state = ?, finished_at_ms = ?, version = ?, error = ? \
             WHERE id = ? AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(Utc::now().timestamp_millis())
        .bind(version.map(i64::from))
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.job(id).await
    }

    /// Marks jobs left running by a server that stopped as failed; returns
    /// how many.
    pub async fn fail_abandoned_jobs(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE training_jobs SET state = 'failed', finished_at_ms = ?, \
             error = 'the server stopped while this job was running' WHERE state = 'running'",
        )
        .bind(Utc::now().timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn job(&self, id: &str) -> Result<JobRecord> {
        sqlx::query("SELECT * FROM training_jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| job_from_row(&row))
            .ok_or_else(|| RegistryError::JobNotFound(id.to_string()))
    }

    /// The newest jobs first (of `model`, when given).
    pub async fn jobs(&self, model: Option<&str>, limit: u32) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM training_jobs WHERE (?1 IS NULL OR model = ?1) \
             ORDER BY started_at_ms DESC, id DESC LIMIT ?2",
        )
        .bind(model)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(job_from_row).collect())
    }
}
