//! `serval outcomes`: uploads observed outcomes of earlier predictions from
//! a CSV file (`prediction_id,label[,time]`) in batches through
//! ReportOutcomes, and prints what the server matched.

use std::path::PathBuf;

use chrono::DateTime;
use clap::Args;
use serde_json::json;
use serval_client::{ServalClient, proto as pb};

use super::CliError;

/// What a connection lost during `serval outcomes` means.
pub const IF_CONNECTION_LOST: &str = "the batches sent before the failure were counted; sending the file \
     again counts those outcomes as duplicates, which changes nothing";

#[derive(Debug, Args)]
pub struct OutcomesArgs {
    /// CSV file with a header and the columns prediction_id, label (1/0 or
    /// true/false) and, optionally, time (RFC 3339 or seconds since the
    /// Unix epoch: when the outcome was observed); `-` reads standard input.
    #[arg(long)]
    data: PathBuf,
    /// Outcomes sent per call (the server accepts up to 100 000).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_rows: u32,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Where each column is in the header.
struct Layout {
    id: usize,
    label: usize,
    time: Option<usize>,
}

fn layout(header: &csv::StringRecord) -> Result<Layout, CliError> {
    let find = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let missing = |name: &str| CliError::Input(format!("--data: the header has no {name} column"));
    Ok(Layout {
        id: find("prediction_id").ok_or_else(|| missing("prediction_id"))?,
        label: find("label").ok_or_else(|| missing("label"))?,
        time: find("time"),
    })
}

fn label(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Some(true),
        "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

fn time(text: &str) -> Option<prost_types::Timestamp> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Some(prost_types::Timestamp { seconds, nanos: 0 });
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: at.timestamp_subsec_nanos() as i32,
        })
}

/// Reads one data row; the error names its line.
fn outcome(record: &csv::StringRecord, layout: &Layout) -> Result<pb::OutcomeReport, CliError> {
    let line = record.position().map_or(0, |p| p.line());
    let field = |index: usize| record.get(index).unwrap_or("");
    let prediction_id = field(layout.id).trim().to_string();
    if prediction_id.is_empty() {
        return Err(CliError::Input(format!(
            "--data line {line}: empty prediction_id"
        )));
    }
    let label = label(field(layout.label)).ok_or_else(|| {
        CliError::Input(format!(
            "--data line {line}: label {:?} is not 1/0 or true/false",
            field(layout.label)
        ))
    })?;
    let observed_at = match layout.time.map(field).filter(|t| !t.trim().is_empty()) {
        None => None,
        Some(text) => Some(time(text).ok_or_else(|| {
            CliError::Input(format!(
                "--data line {line}: time {text:?} is neither RFC 3339 nor seconds since the epoch"
            ))
        })?),
    };
    Ok(pb::OutcomeReport {
        prediction_id,
        label,
        observed_at,
    })
}

pub async fn run(mut client: ServalClient, args: OutcomesArgs) -> Result<(), CliError> {
    let input: Box<dyn std::io::Read> = if args.data.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&args.data)
                .map_err(|e| CliError::Input(format!("cannot open {}: {e}", args.data.display())))?,
        )
    };
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header = reader
        .headers()
        .map_err(|e| CliError::Input(format!("--data: {e}")))?
        .clone();
    let layout = layout(&header)?;
    let mut totals = pb::ReportOutcomesResponse::default();
    let mut batch = Vec::with_capacity(args.batch_rows as usize);
    let mut rows = 0u64;
    let mut records = reader.records();
    loop {
        let next = records.next();
        if let Some(record) = &next {
            let record = record
                .as_ref()
                .map_err(|e| CliError::Input(format!("--data: {e}")))?;
            batch.push(outcome(record, &layout)?);
            rows += 1;
        }
        if batch.len() >= args.batch_rows as usize || (next.is_none() && !batch.is_empty()) {
            let counts = client.report_outcomes(std::mem::take(&mut batch)).await?;
            totals.matched += counts.matched;
            totals.unmatched += counts.unmatched;
            totals.expired += counts.expired;
            totals.duplicate += counts.duplicate;
            totals.other_replica += counts.other_replica;
            totals.forwarded += counts.forwarded;
        }
        if next.is_none() {
            break;
        }
    }
    if rows == 0 {
        return Err(CliError::Input("--data: no outcomes in the file".into()));
    }
    if args.json {
        println!(
            "{}",
            json!({
                "outcomes": rows,
                "matched": totals.matched,
                "unmatched": totals.unmatched,
                "expired": totals.expired,
                "duplicate": totals.duplicate,
                "other_replica": totals.other_replica,
                "forwarded": totals.forwarded,
            })
        );
    } else {
        println!(
            "{rows} outcomes: {} matched, {} forwarded to the replica that issued them, {} unmatched \
             ({} issued by a replica outside this registry), {} expired, {} duplicate",
            totals.matched,
            totals.forwarded,
            totals.unmatched,
            totals.other_replica,
            totals.expired,
            totals.duplicate
        );
    }
    Ok(())
}
