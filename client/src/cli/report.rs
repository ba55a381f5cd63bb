//! `serval report`: a version's training and validation report as one self-contained HTML file.

use std::path::PathBuf;

use clap::Args;
use serval_client::ServalClient;
use serval_client::report::render_report;

use super::CliError;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Model name.
    #[arg(long)]
    model: String,
    /// Version to report [default: the latest].
    #[arg(long)]
    version: Option<u32>,
    /// Another version to show side by side with it.
    #[arg(long)]
    compare: Option<u32>,
    /// HTML file to write.
    #[arg(long, default_value = "report.html")]
    out: PathBuf,
}

pub async fn run(mut client: ServalClient, args: ReportArgs) -> Result<(), CliError> {
    let mut reports = vec![client.version_report(&args.model, args.version).await?];
    if let Some(other) = args.compare {
        reports.push(client.version_report(&args.model, Some(other)).await?);
    }
    let html = render_report(&reports);
    std::fs::write(&args.out, html)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", args.out.display())))?;
    println!("{}", args.out.display());
    Ok(())
}
