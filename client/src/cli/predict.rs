//! `serval predict`: scores every row of a CSV file, or JSON records, and
//! prints one probability per row.

use std::path::PathBuf;

use clap::Args;
use serval_client::records::{records_from_csv, records_from_json};
use serval_client::{ServalClient, proto as pb};

use super::CliError;

/// Rows sent per Predict call when scoring a large file.
const ROWS_PER_CALL: usize = 1000;

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
    /// Print one JSON object instead of CSV.
    #[arg(long)]
    json: bool,
}

pub async fn run(mut client: ServalClient, args: PredictArgs) -> Result<(), CliError> {
    let records = match (&args.data, &args.records) {
        (_, Some(json)) => records_from_json(json).map_err(CliError::Input)?,
        (Some(path), None) => {
            if !args.delimiter.is_ascii() {
                return Err(CliError::Input(format!(
                    "--delimiter {:?} is not ASCII",
                    args.delimiter
                )));
            }
            let result = if path.as_os_str() == "-" {
                records_from_csv(std::io::stdin().lock(), args.delimiter as u8)
            } else {
                let file = std::fs::File::open(path)
                    .map_err(|e| CliError::Input(format!("cannot open {}: {e}", path.display())))?;
                records_from_csv(std::io::BufReader::new(file), args.delimiter as u8)
            };
            result.map_err(CliError::Input)?
        }
        (None, None) => return Err(CliError::Input("give --data FILE or --records JSON".into())),
    };
    if records.is_empty() {
        return Err(CliError::Input("no rows to score".into()));
    }

    // Every chunk is scored by the same version: the first answer pins it.
    let mut version = args.version;
    let mut arm = "";
    let mut scores = Vec::with_capacity(records.len());
    let mut labels = Vec::with_capacity(records.len());
    let mut threshold = 0.0;
    let mut offset = 0;
    for chunk in records.chunks(ROWS_PER_CALL) {
        let response = client
            .predict(pb::PredictRequest {
                model: args.model.clone(),
                version,
                records: chunk.to_vec(),
                dense_rows: Vec::new(),
                alias: if version.is_some() {
                    String::new()
                } else {
                    args.alias.clone().unwrap_or_default()
                },
                routing_key: args.routing_key.clone().unwrap_or_default(),
            })
            .await
            .map_err(|e| match e {
                serval_client::ClientError::Status(status) if offset > 0 => CliError::Input(format!(
                    "{}: {} (records numbered from row {offset} of the input)",
                    serval_client::code_name(status.code()),
                    status.message()
                )),
                other => other.into(),
            })?;
        version = Some(response.version);
        arm = super::json::arm_name(response.arm);
        scores.extend(response.scores);
        labels.extend(response.labels);
        threshold = response.threshold;
        offset += chunk.len();
    }

    if args.json {
        let value = serde_json::json!({
            "model": args.model,
            "version": version,
            "arm": arm,
            "threshold": threshold,
            "scores": scores,
            "labels": labels,
        });
        println!("{value}");
    } else {
        println!("score,label");
        for (score, label) in scores.iter().zip(&labels) {
            println!("{score},{}", u8::from(*label));
        }
    }
    Ok(())
}
