//! `serval predict`: scores every row of a CSV file (sent column by column)
//! or JSON records, and prints one probability per row; `--explain` adds
//! each row's feature attributions.

use std::ops::Range;
use std::path::PathBuf;

use clap::Args;
use serval_client::records::{ColumnTable, records_from_json};
use serval_client::{ServalClient, proto as pb};

use super::CliError;

/// Rows sent per Predict call when scoring a large file.
const ROWS_PER_CALL: usize = 1000;

/// Rows per call when explaining: the server's limit for explanations.
const EXPLAINED_ROWS_PER_CALL: usize = 256;

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model name.
    #[arg(long)]
    model: String,
    /// Version to use [default: the model's traffic policy, or its latest
    /// version].
    #[arg(long, conflicts_with = "alias")]
    version: Option<u32>,
    /// Alias to use (e.g. production).
    #[arg(long)]
    alias: Option<String>,
    /// Routing key (e.g. a user id) for a sticky stable/canary choice.
    #[arg(long)]
    routing_key: Option<String>,
    /// CSV file with the training columns (the label may be present); `-`
    /// reads standard input.
    #[arg(long, conflicts_with = "records", required_unless_present = "records")]
    data: Option<PathBuf>,
    /// Records inline as JSON: one object or an array of objects, e.g.
    /// '{"PageValues": 12.5, "Month": "Nov", "Weekend": true}'.
    #[arg(long)]
    records: Option<String>,
    /// Field delimiter of the CSV.
    #[arg(long, default_value = ",")]
    delimiter: char,
    /// Explain each score: the columns that moved it most away from the
    /// training average (integrated gradients on the logit).
    #[arg(long)]
    explain: bool,
    /// Columns listed per row with --explain.
    #[arg(long, default_value_t = 5, requires = "explain")]
    top_k: u32,
    /// Add each row's prediction id (a `prediction_id` column), to report
    /// its outcome later with `serval outcomes`.
    #[arg(long, conflicts_with = "explain")]
    ids: bool,
    /// Print one JSON object instead of CSV (with the prediction ids).
    #[arg(long)]
    json: bool,
}

/// The rows to score, as read.
enum Rows {
    /// From `--data`: sent as columns.
    Table(ColumnTable),
    /// From `--records`.
    Records(Vec<pb::Record>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Table(table) => table.rows(),
            Rows::Records(records) => records.len(),
        }
    }

    /// A request carrying `rows` of them.
    fn request(&self, rows: Range<usize>) -> pb::PredictRequest {
        match self {
            Rows::Table(table) => pb::PredictRequest {
                columns: table.columns(rows),
                ..Default::default()
            },
            Rows::Records(records) => pb::PredictRequest {
                records: records[rows].to_vec(),
                ..Default::default()
            },
        }
    }
}

pub async fn run(mut client: ServalClient, args: PredictArgs) -> Result<(), CliError> {
    let rows = match (&args.data, &args.records) {
        (_, Some(json)) => Rows::Records(records_from_json(json).map_err(CliError::Input)?),
        (Some(path), None) => {
            if !args.delimiter.is_ascii() {
                return Err(CliError::Input(format!(
                    "--delimiter {:?} is not ASCII",
                    args.delimiter
                )));
            }
            let result = if path.as_os_str() == "-" {
                ColumnTable::from_csv(std::io::stdin().lock(), args.delimiter as u8)
            } else {
                let file = std::fs::File::open(path)
                    .map_err(|e| CliError::Input(format!("cannot open {}: {e}", path.display())))?;
                ColumnTable::from_csv(std::io::BufReader::new(file), args.delimiter as u8)
            };
            Rows::Table(result.map_err(CliError::Input)?)
        }
        (None, None) => return Err(CliError::Input("give --data FILE or --records JSON".into())),
    };
    if rows.len() == 0 {
        return Err(CliError::Input("no rows to score".into()));
    }

    // Every chunk is scored by the same version: the first answer pins it.
    let mut version = args.version;
    let mut arm = "";
    let mut scores = Vec::with_capacity(rows.len());
    let mut labels = Vec::with_capacity(rows.len());
    let mut threshold = 0.0;
    let mut explanations = Vec::new();
    let mut prediction_ids = Vec::with_capacity(rows.len());
    let rows_per_call = if args.explain {
        EXPLAINED_ROWS_PER_CALL
    } else {
        ROWS_PER_CALL
    };
    for offset in (0..rows.len()).step_by(rows_per_call) {
        let chunk = offset..(offset + rows_per_call).min(rows.len());
        let response = client
            .predict(pb::PredictRequest {
                model: args.model.clone(),
                version,
                alias: if version.is_some() {
                    String::new()
                } else {
                    args.alias.clone().unwrap_or_default()
                },
                routing_key: args.routing_key.clone().unwrap_or_default(),
                explain: args.explain,
                top_k: args.top_k,
                ..rows.request(chunk)
            })
            .await
            .map_err(|e| match e {
                serval_client::ClientError::Status(status) if offset > 0 => CliError::Refused(format!(
                    "{}: {} (rows numbered from row {offset} of the input)",
                    serval_client::code_name(status.code()),
                    status.message()
                )),
                other => other.into(),
            })?;
        version = Some(response.version);
        arm = super::json::arm_name(response.arm);
        scores.extend(response.scores);
        labels.extend(response.labels);
        explanations.extend(response.explanations);
        prediction_ids.extend(response.prediction_ids);
        threshold = response.threshold;
    }

    if args.json {
        let mut value = serde_json::json!({
            "model": args.model,
            "version": version,
            "arm": arm,
            "threshold": threshold,
            "scores": scores,
            "labels": labels,
            "prediction_ids": prediction_ids,
        });
        if args.explain {
            value["explanations"] = explanations.iter().map(explanation_json).collect();
        }
        println!("{value}");
    } else if args.explain {
        for (i, ((score, label), e)) in scores.iter().zip(&labels).zip(&explanations).enumerate() {
            print_explanation(i + 1, *score, *label, e);
        }
    } else if args.ids {
        if prediction_ids.len() != scores.len() {
            return Err(CliError::Failed(
                "--ids: the server answered no prediction ids (outcome tracking is off there)".into(),
            ));
        }
        println!("score,label,prediction_id");
        for ((score, label), id) in scores.iter().zip(&labels).zip(&prediction_ids) {
            println!("{score},{},{id}", u8::from(*label));
        }
    } else {
        println!("score,label");
        for (score, label) in scores.iter().zip(&labels) {
            println!("{score},{}", u8::from(*label));
        }
    }
    Ok(())
}

fn explanation_json(e: &pb::RowExplanation) -> serde_json::Value {
    serde_json::json!({
        "logit": e.logit,
        "baseline_logit": e.baseline_logit,
        "attributions": e.attributions.iter().map(|a| serde_json::json!({
            "column": a.column,
            "value": a.value,
            "attribution": a.attribution,
        })).collect::<Vec<_>>(),
        "other": e.other,
        "completeness_gap": e.completeness_gap,
        "steps": e.steps,
    })
}

/// One row's score and the columns that moved its logit, e.g.
/// `  PageValues = 38.3        +2.134`.
fn print_explanation(row: usize, score: f32, label: bool, e: &pb::RowExplanation) {
    println!(
        "row {row}: score {score:.4} (label {}), logit {:+.3} = average {:+.3} plus:",
        u8::from(label),
        e.logit,
        e.baseline_logit
    );
    let shown: Vec<String> = e
        .attributions
        .iter()
        .map(|a| {
            if a.value.is_empty() {
                a.column.clone()
            } else {
                format!("{} = {}", a.column, a.value)
            }
        })
        .collect();
    let width = shown.iter().map(|s| s.chars().count()).max().unwrap_or(0).max(13);
    for (label, a) in shown.iter().zip(&e.attributions) {
        println!("  {label:<width$}  {:+.3}", a.attribution);
    }
    if e.other != 0.0 {
        println!("  {:<width$}  {:+.3}", "other columns", e.other);
    }
}
