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
enum Format {
    Csv,
    Parquet,
    /// Arrow IPC, file or stream form.
    Arrow,
}

impl Format {
    /// The format `path`'s extension names: .parquet/.pq, .arrow/.ipc/
    /// .feather/.arrows, anything else CSV.
    fn of_path(path: &std::path::Path) -> Self {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match extension.as_str() {
            "parquet" | "pq" => Format::Parquet,
            "arrow" | "ipc" | "feather" | "arrows" => Format::Arrow,
            _ => Format::Csv,
        }
    }

    fn proto(self) -> pb::DataFormat {
        match self {
            Format::Csv => pb::DataFormat::Csv,
            Format::Parquet => pb::DataFormat::Parquet,
            Format::Arrow => pb::DataFormat::Arrow,
        }
    }
}

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
    /// The training data: a CSV file with a header row, a Parquet file or an
    /// Arrow IPC file (see --format), uploaded to the server.
    #[arg(long, required_unless_present = "source", conflicts_with = "source")]
    data: Option<PathBuf>,
    /// Data the server reads itself, e.g. 's3://bucket/clicks/date=2026-11-*/*.parquet'
    /// (also gs://, az://, file://); the server's operator must allow the
    /// prefix (--data-source-allow).
    #[arg(long)]
    source: Option<String>,
    /// The data's format [default: from the file's extension: .parquet,
    /// .arrow (.ipc, .feather), else CSV].
    #[arg(long, value_enum)]
    format: Option<Format>,
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
    /// A column (e.g. user_id) that keeps all rows with one value on one
    /// side of every split, so the held-out figures say what a new user
    /// would get; the key is not an input.
    #[arg(long)]
    split_key: Option<String>,
    /// Field delimiter.
    #[arg(long, default_value = ",")]
    delimiter: String,
    /// Hidden layer widths of each member, comma-separated [default: 64,32].
    #[arg(long, value_delimiter = ',')]
    hidden: Vec<u32>,
    /// Passes over the rows at most [default: 20].
    #[arg(long)]
    epochs: Option<u32>,
    /// Rows per gradient step [default: 256].
    #[arg(long)]
    batch_size: Option<u32>,
    /// Adam learning rate [default: 0.01].
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Early stopping: epochs without a better out-of-fold AUC before
    /// stopping (the best epoch's weights are kept); 0 turns it off
    /// [default: 6].
    #[arg(long)]
    patience: Option<u32>,
    /// L2 penalty on the weights [default: 0].
    #[arg(long)]
    l2: Option<f64>,
    /// Share of hidden units dropped while training [default: 0.2].
    #[arg(long)]
    dropout: Option<f64>,
    /// Weigh classes by inverse frequency (rare positives).
    #[arg(long)]
    class_weighting: bool,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
    schedule: Schedule,
    /// Choose the decision threshold (on the out-of-fold scores) reaching
    /// this precision (best recall) instead of maximising F1.
    #[arg(long, conflicts_with = "target_recall")]
    target_precision: Option<f64>,
    /// Choose the decision threshold reaching this recall (best precision).
    #[arg(long)]
    target_recall: Option<f64>,
    /// Share of rows each member of the ensemble holds out: round(1 /
    /// share) members, from 2 to 8 [default: 0.25, four members].
    #[arg(long)]
    validation_fraction: Option<f64>,
    /// Seed for folds, initial weights, shuffling and dropout [default: 42].
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
            split_key: self.split_key.clone().unwrap_or_default(),
            format: self
                .format
                .or_else(|| self.data.as_deref().map(Format::of_path))
                .or_else(|| {
                    self.source
                        .as_deref()
                        .map(|s| Format::of_path(std::path::Path::new(s)))
                })
                .unwrap_or(Format::Csv)
                .proto() as i32,
            source: self.source.clone().unwrap_or_default(),
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
    let Some(path) = &args.data else {
        // A server-side source: nothing to upload.
        let events = client.train_stream(args.spec(), futures::stream::empty()).await?;
        return follow(events, args.json, ProgressBar::hidden()).await;
    };
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| CliError::Input(format!("cannot open {}: {e}", path.display())))?;
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

/// A preparation event as a line: `encoding rows: 1200000 of 10000000
/// rows (12%)`.
pub fn preparation_text(progress: &pb::PreparationProgress) -> String {
    let mut text = progress.phase.clone();
    if progress.rows_total > 0 {
        text.push_str(&format!(
            ": {} of {} rows ({:.0}%)",
            progress.rows_read,
            progress.rows_total,
            progress.rows_read as f64 * 100.0 / progress.rows_total as f64
        ));
    } else if progress.rows_read > 0 {
        text.push_str(&format!(": {} rows", progress.rows_read));
    }
    text
}

/// Follows a training job's events to its registered version: an epoch
/// progress bar and a summary, or one JSON line with `json`. `upload` is
/// cleared when the server accepts the job.
pub async fn follow(mut events: TrainUpload, json: bool, upload: ProgressBar) -> Result<(), CliError> {
    let mut epochs_bar = ProgressBar::hidden();
    let mut preparing_bar: Option<ProgressBar> = None;
    while let Some(event) = events.message().await.map_err(serval_client::ClientError::from)? {
        match event.event {
            Some(pb::train_event::Event::Preparing(progress)) => {
                upload.finish_and_clear();
                if json {
                    continue;
                }
                let bar = preparing_bar.get_or_insert_with(|| {
                    println!(
                        "Job {id}: preparing the data; `serval jobs cancel {id}` stops it",
                        id = progress.job_id
                    );
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"),
                    );
                    bar.enable_steady_tick(Duration::from_millis(200));
                    bar
                });
                bar.set_message(preparation_text(&progress));
            }
            Some(pb::train_event::Event::Accepted(accepted)) => {
                upload.finish_and_clear();
                if let Some(bar) = preparing_bar.take() {
                    bar.finish_and_clear();
                }
                let d = accepted.dataset.unwrap_or_default();
                if !json {
                    println!(
                        "Training {} on {} rows ({} members, each holding out one of {} folds; {:.1}% positive, {} skipped), input width {}",
                        accepted.model,
                        d.rows - d.skipped_rows,
                        d.folds,
                        d.folds,
                        d.positive_rate * 100.0,
                        d.skipped_rows,
                        accepted.input_width
                    );
                    if !d.source.is_empty() {
                        println!("  read from {} ({} objects)", d.source, d.objects.len());
                    }
                    if !d.split_key.is_empty() {
                        println!("  folded by {}: all rows with one value on one side", d.split_key);
                    }
                    if let Some(s) = &d.streamed {
                        println!(
                            "  streamed within {:.0} MiB of training memory: encoder fitted on {} sampled rows, {:.1} MiB of encoded rows {}, {} rows scored out of fold",
                            s.memory_budget as f64 / (1u64 << 20) as f64,
                            s.encoder_sample_rows,
                            s.store_bytes as f64 / (1u64 << 20) as f64,
                            if s.spilled {
                                "spilled to a temporary file"
                            } else {
                                "in memory"
                            },
                            d.validation_rows
                        );
                    }
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
                if progress.rows_per_second > 0.0 {
                    epochs_bar.set_message(format!(
                        "epoch {} {:.0}% … {:.0} rows/s, ~{:.0} s an epoch",
                        progress.epoch,
                        done * 100.0,
                        progress.rows_per_second,
                        progress.estimated_epoch_seconds
                    ));
                } else {
                    epochs_bar.set_message(format!("epoch {} {:.0}% …", progress.epoch, done * 100.0));
                }
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
    if let Some(t) = v.test_metrics {
        println!(
            "  test:       AUC {:.4}  accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  log loss {:.4}  (rows that chose nothing)",
            t.auc, t.accuracy, t.precision, t.recall, t.f1, t.log_loss
        );
    }
    println!(
        "  validation: AUC {:.4}  accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  log loss {:.4}  (threshold {}, chosen here)",
        m.auc, m.accuracy, m.precision, m.recall, m.f1, m.log_loss, m.threshold
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preparation_reads_as_its_phase_and_rows() {
        let progress = |phase: &str, rows_read, rows_total| pb::PreparationProgress {
            job_id: "job-1".into(),
            phase: phase.into(),
            rows_read,
            rows_total,
            elapsed_seconds: 1.0,
        };
        assert_eq!(preparation_text(&progress("starting", 0, 0)), "starting");
        assert_eq!(
            preparation_text(&progress("counting rows", 65_536, 0)),
            "counting rows: 65536 rows"
        );
        assert_eq!(
            preparation_text(&progress("encoding rows", 1_200_000, 10_000_000)),
            "encoding rows: 1200000 of 10000000 rows (12%)"
        );
    }
}
