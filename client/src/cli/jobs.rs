//! `serval jobs`: list training jobs, re-attach to one, cancel one.

use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use serde_json::{Value, json};
use serval_client::ServalClient;
use serval_client::proto as pb;

use super::{CliError, json as render, train};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct JobsArgs {
    #[command(subcommand)]
    command: Option<JobsCommand>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// List training jobs, newest first (the default).
    List(ListArgs),
    /// Re-attach to a job's progress, or print how it ended.
    Watch {
        /// Job id, as `serval train` and `serval jobs` print it.
        id: String,
        /// Print the registered version as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Stop a running job; no version is registered.
    Cancel {
        /// Job id.
        id: String,
        /// Print the job as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only this model's jobs.
    #[arg(long)]
    model: Option<String>,
    /// Newest jobs at most.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// What a connection lost during `serval jobs …` means.
pub fn if_connection_lost(args: &JobsArgs) -> String {
    match &args.command {
        Some(JobsCommand::Cancel { id, .. }) => format!(
            "the cancel may or may not have reached the server: `serval jobs` tells whether job {id} still runs"
        ),
        _ => super::NOTHING_CHANGED.to_string(),
    }
}

pub async fn run(mut client: ServalClient, args: JobsArgs) -> Result<(), CliError> {
    match args.command {
        None => list(&mut client, args.list).await,
        Some(JobsCommand::List(list_args)) => list(&mut client, list_args).await,
        Some(JobsCommand::Watch { id, json }) => {
            let events = client.watch_job(&id).await?;
            train::follow(events, json, ProgressBar::hidden()).await
        }
        Some(JobsCommand::Cancel { id, json }) => {
            let job = client.cancel_job(&id).await?;
            if json {
                println!("{}", job_json(&job));
            } else {
                println!(
                    "Cancel requested for job {} ({}): it stops at the next batch and registers no version",
                    job.id, job.model
                );
            }
            Ok(())
        }
    }
}

async fn list(client: &mut ServalClient, args: ListArgs) -> Result<(), CliError> {
    let jobs = client.list_jobs(args.model.as_deref(), args.limit).await?;
    if args.json {
        println!(
            "{}",
            json!({ "jobs": jobs.iter().map(job_json).collect::<Vec<_>>() })
        );
        return Ok(());
    }
    if jobs.is_empty() {
        println!("No training jobs yet.");
        return Ok(());
    }
    println!(
        "{:<22} {:<20} {:<10} {:<24} {:>9} {:>9} {:>7} {:>7}  {:<16} ERROR",
        "JOB", "MODEL", "STATE", "STARTED", "DURATION", "ROWS", "EPOCHS", "VERSION", "REPLICA"
    );
    for job in &jobs {
        let started = render::timestamp(job.started_at.as_ref());
        println!(
            "{:<22} {:<20} {:<10} {:<24} {:>8.1}s {:>9} {:>7} {:>7}  {:<16} {}",
            job.id,
            job.model,
            state_name(job.state),
            started.as_str().unwrap_or("-"),
            job.duration_seconds,
            job.rows,
            format!("{}/{}", job.epochs_done, job.epochs),
            if job.version == 0 {
                "-".to_string()
            } else {
                job.version.to_string()
            },
            job.replica,
            job.error
        );
    }
    Ok(())
}

fn state_name(state: i32) -> &'static str {
    match pb::JobState::try_from(state).unwrap_or(pb::JobState::Unspecified) {
        pb::JobState::Unspecified => "unknown",
        pb::JobState::Running => "running",
        pb::JobState::Succeeded => "succeeded",
        pb::JobState::Failed => "failed",
        pb::JobState::Cancelled => "cancelled",
    }
}

fn job_json(job: &pb::TrainingJob) -> Value {
    json!({
        "id": job.id,
        "model": job.model,
        "state": state_name(job.state),
        "started_at": render::timestamp(job.started_at.as_ref()),
        "finished_at": render::timestamp(job.finished_at.as_ref()),
        "duration_seconds": job.duration_seconds,
        "rows": job.rows,
        "epochs_done": job.epochs_done,
        "epochs": job.epochs,
        "version": (job.version != 0).then_some(job.version),
        "error": (!job.error.is_empty()).then_some(&job.error),
        "actor": job.actor,
        "replica": job.replica,
    })
}
