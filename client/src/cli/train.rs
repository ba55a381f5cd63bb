//! `serval train`: uploads a CSV in chunks and follows training epoch by
//! epoch with a progress bar.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serval_client::proto as pb;
use serval_client::{ServalClient, TrainUpload};

use super::{CliError, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Schedule {
    /// The same rate throughout.
    Constant,
    /// Cosine decay to a tenth of the rate.
    Cosine,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Model name; a new version is added to it.
    #[arg(long)]
    model: String,
    /// CSV file with a header row.
    #[arg(long)]
    data: PathBuf,
    /// Label column.
    #[arg(long)]
    label: String,
    /// Label value of the positive class.
    #[arg(long)]
    positive: String,
    /// Columns to leave out (e.g. ids), comma-separated.
    #[arg(long, value_delimiter = ',')]
    drop: Vec<String>,
    /// Columns to treat as categorical, comma-separated.
    #[arg(long, value_delimiter = ',')]
    categorical: Vec<String>,
    /// Columns to treat as numeric, comma-separated.
    #[arg(long, value_delimiter = ',')]
    numeric: Vec<String>,
    /// Columns to treat as boolean, comma-separated.
    #[arg(long, value_delimiter = ',')]
    boolean: Vec<String>,
    /// Keep categorical columns that look like identifiers (most values
    /// unique, e.g. a customer id) instead of refusing them; their values
    /// are then stored in the registry as categories.
    #[arg(long)]
    allow_identifier_columns: bool,
    /// Field delimiter.
    #[arg(long, default_value = ",")]
    delimiter: String,
    /// Hidden layer widths, comma-separated [default: 128,64].
    #[arg(long, value_delimiter = ',')]
    hidden: Vec<u32>,
    /// Passes over the training split at most [default: 20].
    #[arg(long)]
    epochs: Option<u32>,
    /// Rows per gradient step [default: 128].
    #[arg(long)]
    batch_size: Option<u32>,
    /// Adam learning rate [default: 0.003].
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Early stopping: epochs without a better validation loss before
    /// stopping (the best epoch's weights are kept); 0 turns it off
    /// [default: 3].
    #[arg(long)]
    patience: Option<u32>,
    /// L2 penalty on the weights [default: 0].
    #[arg(long)]
    l2: Option<f64>,
    /// Share of hidden units dropped while training [default: 0].
    #[arg(long)]
    dropout: Option<f64>,
    /// Weigh classes by inverse frequency (rare positives).
    #[arg(long)]
    class_weighting: bool,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
    schedule: Schedule,
    /// Choose the decision threshold reaching this precision (best recall)
    /// instead of maximising F1.
    #[arg(long, conflicts_with = "target_recall")]
    target_precision: Option<f64>,
    /// Choose the decision threshold reaching this recall (best precision).
    #[arg(long)]
    target_recall: Option<f64>,
    /// Share of rows held back for validation [default: 0.2].
    #[arg(long)]
    validation_fraction: Option<f64>,
    /// Seed for split, initial weights and shuffling [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object (the registered version) instead of text.
    #[arg(long)]
    json: bool,
}

impl TrainArgs {
    fn spec(&self) -> pb::TrainSpec {
        let mut column_types = HashMap::new();
        for (columns, kind) in [
            (&self.categorical, pb::ColumnType::Categorical),
            (&self.numeric, pb::ColumnType::Numeric),
            (&self.boolean, pb::ColumnType::Boolean),
        ] {
            for column in columns {
                column_types.insert(column.clone(), kind as i32);
            }
        }
        pb::TrainSpec {
            model: self.model.clone(),
            label_column: self.label.clone(),
            positive_label: self.positive.clone(),
            column_types,
            drop_columns: self.drop.clone(),
            delimiter: self.delimiter.clone(),
            hyper_parameters: Some(pb::HyperParameters {
                hidden_layers: self.hidden.clone(),
                learning_rate: self.learning_rate,
                batch_size: self.batch_size,
                epochs: self.epochs,
                validation_fraction: self.validation_fraction,
                patience: self.patience,
                l2: self.l2,
                dropout: self.dropout,
                class_weighting: self.class_weighting.then_some(true),
                learning_rate_schedule: match self.schedule {
                    Schedule::Constant => pb::LearningRateSchedule::Constant,
                    Schedule::Cosine => pb::LearningRateSchedule::Cosine,
                } as i32,
                target_precision: self.target_precision,
                target_recall: self.target_recall,
            }),
            seed: self.seed,
            allow_identifier_columns: self.allow_identifier_columns,
        }
    }
}

/// What a connection lost during `serval train` means.
pub fn if_connection_lost(args: &TrainArgs) -> String {
    format!(
        "the training may have started, and a started training goes on without this command: \
         `serval jobs --model {}` tells whether it runs, failed or registered a version",
        args.model
    )
}

pub async fn run(mut client: ServalClient, args: TrainArgs) -> Result<(), CliError> {
    let file = tokio::fs::File::open(&args.data)
        .await
        .map_err(|e| CliError::Input(format!("cannot open {}: {e}", args.data.display())))?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let upload = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(size)
    };
    upload.set_style(
        ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes}").expect("valid template"),
    );
    let read_bar = upload.clone();
    let events = client
        .train_from_reader(args.spec(), file, move |n| read_bar.inc(n as u64))
        .await?;
    follow(events, args.json, upload).await
}

/// Follows a training job's events to its registered version: an epoch
/// progress bar and a summary, or one JSON line with `json`. `upload` is
/// cleared when the server accepts the job.
pub async fn follow(mut events: TrainUpload, json: bool, upload: ProgressBar) -> Result<(), CliError> {
    let mut epochs_bar = ProgressBar::hidden();
    while let Some(event) = events.message().await.map_err(serval_client::ClientError::from)? {
        match event.event {
            Some(pb::train_event::Event::Accepted(accepted)) => {
                upload.finish_and_clear();
                let d = accepted.dataset.unwrap_or_default();
                if !json {
                    println!(
                        "Training {} on {} rows ({} train / {} validation, {:.1}% positive, {} skipped), input width {}",
                        accepted.model,
                        d.rows - d.skipped_rows,
                        d.train_rows,
                        d.validation_rows,
                        d.positive_rate * 100.0,
                        d.skipped_rows,
                        accepted.input_width
                    );
                    if !accepted.job_id.is_empty() {
                        println!(
                            "Job {id}: it goes on if you disconnect; `serval jobs watch {id}` re-attaches",
                            id = accepted.job_id
                        );
                    }
                    epochs_bar = ProgressBar::new(u64::from(accepted.epochs));
                    epochs_bar.set_style(
                        ProgressStyle::with_template("epoch {pos}/{len} {bar:30} {msg} [{elapsed}]")
                            .expect("valid template"),
                    );
                    epochs_bar.enable_steady_tick(Duration::from_millis(200));
                }
            }
            Some(pb::train_event::Event::Progress(progress)) => {
                let done = progress.rows_done as f64 / progress.rows_total.max(1) as f64;
                epochs_bar.set_message(format!("epoch {} {:.0}% …", progress.epoch, done * 100.0));
            }
            Some(pb::train_event::Event::Epoch(epoch)) => {
                epochs_bar.set_position(u64::from(epoch.epoch));
                epochs_bar.set_message(format!(
                    "loss {:.4}  val_loss {:.4}  val_auc {:.4}",
                    epoch.train_loss, epoch.validation_loss, epoch.validation_auc
                ));
            }
            Some(pb::train_event::Event::Completed(version)) => {
                epochs_bar.finish();
                if json {
                    println!("{}", json::version(&version));
                } else {
                    print_version(&version);
                }
                return Ok(());
            }
            None => {}
        }
    }
    Err(CliError::Failed(
        "the server ended training without registering a version".into(),
    ))
}

fn print_version(v: &pb::ModelVersion) {
    let m = v.metrics.unwrap_or_default();
    println!(
        "Registered {} version {} (best epoch {} of {})",
        v.model, v.version, m.best_epoch, m.epochs_run
    );
    println!(
        "  validation: AUC {:.4}  accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  log loss {:.4}  (threshold {})",
        m.auc, m.accuracy, m.precision, m.recall, m.f1, m.log_loss, m.threshold
    );
}
