//! `serval models show`: one version in detail — quality, data, training
//! settings, input columns and which columns the model relies on.

use clap::Args;
use serde_json::json;
use serval_client::{ServalClient, proto as pb};

use crate::cli::{CliError, json};

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Model name.
    model: String,
    /// Version [default: the latest].
    #[arg(long)]
    version: Option<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(mut client: ServalClient, args: ShowArgs) -> Result<(), CliError> {
    let report = client.version_report(&args.model, args.version).await?;
    let version = report.version.clone().unwrap_or_default();
    if args.json {
        let mut value = json::version(&version);
        value["importance"] = report
            .importance
            .iter()
            .map(|f| json!({ "column": f.column, "importance": f.importance }))
            .collect();
        value["confusion"] = report.confusion.map_or(serde_json::Value::Null, |c| {
            json!({
                "true_positives": c.true_positives,
                "false_positives": c.false_positives,
                "true_negatives": c.true_negatives,
                "false_negatives": c.false_negatives,
            })
        });
        println!("{value}");
        return Ok(());
    }
    print_report(&report, &version);
    Ok(())
}

fn print_report(report: &pb::VersionReport, v: &pb::ModelVersion) {
    let m = v.metrics.unwrap_or_default();
    let d = v.dataset.clone().unwrap_or_default();
    let hp = v.hyper_parameters.clone().unwrap_or_default();
    let created = json::timestamp(v.created_at.as_ref());
    println!("{} version {}", v.model, v.version);
    println!("  created     {}", created.as_str().unwrap_or("-"));
    println!(
        "  label       {} = {:?} (positive), decision threshold {:.4}",
        v.label_column, v.positive_label, m.threshold
    );
    if let Some(t) = v.test_metrics {
        println!(
            "  test        AUC {:.4}  accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  log loss {:.4}  (rows that chose nothing)",
            t.auc, t.accuracy, t.precision, t.recall, t.f1, t.log_loss
        );
    }
    println!(
        "  validation  AUC {:.4}  accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  log loss {:.4}  ({})",
        m.auc,
        m.accuracy,
        m.precision,
        m.recall,
        m.f1,
        m.log_loss,
        validation_rows(v.dataset.as_ref())
    );
    if let Some(c) = report.confusion {
        println!(
            "  confusion   {} true positives, {} false positives, {} true negatives, {} false negatives",
            c.true_positives, c.false_positives, c.true_negatives, c.false_negatives
        );
    }
    println!(
        "  data        {} rows ({} train, {}, {:.1}% positive, {} skipped), sha256 {}",
        d.rows,
        d.train_rows,
        validation_rows(Some(&d)),
        d.positive_rate * 100.0,
        d.skipped_rows,
        d.sha256
    );
    let hidden: Vec<String> = hp.hidden_layers.iter().map(u32::to_string).collect();
    println!(
        "  training    hidden {}, learning rate {}, batch {}, best epoch {} of {} run, seed {}",
        hidden.join(","),
        hp.learning_rate.unwrap_or_default(),
        hp.batch_size.unwrap_or_default(),
        m.best_epoch,
        m.epochs_run,
        v.seed
    );
    println!("  weights     sha256 {}", v.weights_sha256);
    println!(
        "  columns     {} inputs from {} columns:",
        v.input_width,
        v.columns.len()
    );
    for c in &v.columns {
        let kind = pb::ColumnType::try_from(c.column_type)
            .map(|t| t.as_str_name().trim_start_matches("COLUMN_TYPE_").to_lowercase())
            .unwrap_or_else(|_| "unknown".into());
        let detail = if c.categories.is_empty() || kind != "categorical" {
            String::new()
        } else {
            format!(" ({} categories + other)", c.categories.len())
        };
        println!("    {:<28} {kind}{detail}", c.name);
    }
    if report.importance.is_empty() {
        println!("  importance  not computed for this version");
        return;
    }
    println!("  importance  drop in validation AUC when the column is shuffled:");
    let top = report.importance.iter().map(|f| f.importance).fold(0.0, f64::max);
    for f in &report.importance {
        let bar = if top > 0.0 && f.importance > 0.0 {
            "#".repeat(((f.importance / top) * 30.0).round() as usize)
        } else {
            String::new()
        };
        println!(
            "{}",
            format!("    {:<28} {:>8.4}  {bar}", f.column, f.importance).trim_end()
        );
    }
}

/// Which rows the validation metrics, the kept epoch and the threshold come
/// from, in words.
pub fn validation_rows(d: Option<&pb::DatasetSummary>) -> String {
    match d {
        Some(d) if d.folds > 0 => format!(
            "{} rows out of fold over {} members, which chose the epoch and threshold",
            d.validation_rows, d.folds
        ),
        Some(d) => format!(
            "{} held-back validation rows, which chose the epoch and threshold",
            d.validation_rows
        ),
        None => "validation rows".to_string(),
    }
}
