//! `serval models`: every model with its versions and metrics; `show` and
//! `delete` for one model or version.

mod delete;
mod show;

use clap::{Args, Subcommand};
use serval_client::ServalClient;

use super::{CliError, json};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: Option<ModelsCommand>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// List models, their versions and metrics (the default).
    List(ListArgs),
    /// One version in detail: metrics, data, encoding, feature importance.
    Show(show::ShowArgs),
    /// Delete a model, or one version, for good.
    Delete(delete::DeleteArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// What a connection lost during `serval models …` means.
pub fn if_connection_lost(args: &ModelsArgs) -> String {
    match &args.command {
        Some(ModelsCommand::Delete(delete)) => format!(
            "the delete may or may not have been applied: `serval models --model {}` tells",
            delete.model
        ),
        _ => super::NOTHING_CHANGED.to_string(),
    }
}

pub async fn run(client: ServalClient, args: ModelsArgs) -> Result<(), CliError> {
    match args.command {
        None => list(client, args.list).await,
        Some(ModelsCommand::List(list_args)) => list(client, list_args).await,
        Some(ModelsCommand::Show(show_args)) => show::run(client, show_args).await,
        Some(ModelsCommand::Delete(delete_args)) => delete::run(client, delete_args).await,
    }
}

async fn list(mut client: ServalClient, args: ListArgs) -> Result<(), CliError> {
    let models = client.list_models(args.model.as_deref()).await?;
    if args.json {
        let value = serde_json::json!({ "models": models.iter().map(json::model).collect::<Vec<_>>() });
        println!("{value}");
        return Ok(());
    }
    if models.is_empty() {
        println!("No models yet. Train one with `serval train`.");
        return Ok(());
    }
    // Test figures (rows that chose nothing) where the version has them;
    // versions trained before they were kept show "-".
    println!(
        "{:<24} {:>7}  {:<24} {:>9} {:>8} {:>7} {:>7} {:>8}",
        "MODEL", "VERSION", "CREATED", "ROWS", "TEST_AUC", "VAL_AUC", "TEST_F1", "LOG_LOSS"
    );
    let figure = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |x| format!("{x:.4}"));
    for model in &models {
        for v in &model.versions {
            let m = v.metrics.unwrap_or_default();
            let test = v.test_metrics;
            let created = json::timestamp(v.created_at.as_ref());
            println!(
                "{:<24} {:>7}  {:<24} {:>9} {:>8} {:>7.4} {:>7} {:>8}",
                model.name,
                v.version,
                created.as_str().unwrap_or("-"),
                v.dataset.as_ref().map_or(0, |d| d.rows),
                figure(test.map(|t| t.auc)),
                m.auc,
                figure(test.map(|t| t.f1)),
                figure(test.map(|t| t.log_loss)),
            );
        }
    }
    Ok(())
}
