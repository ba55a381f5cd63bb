//! Command-line parsing and dispatch for `serval`.

mod json;
mod models;
mod predict;
mod train;

use clap::{Parser, Subcommand};
use serval_client::{ClientError, ServalClient};

#[derive(Debug, Parser)]
#[command(
    name = "serval",
    version,
    about = "Train, list and score behaviour models on a Serval server"
)]
pub struct Cli {
    /// Server URL.
    #[arg(
        long,
        global = true,
        env = "SERVAL_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a new version of a model from a CSV file.
    Train(Box<train::TrainArgs>),
    /// List models, their versions and metrics.
    Models(models::ModelsArgs),
    /// Score rows from a CSV file or JSON records.
    Predict(predict::PredictArgs),
}

/// What a command can fail with; printed as `error: …`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let client = ServalClient::connect(&cli.server).await?;
    match cli.command {
        Command::Train(args) => train::run(client, *args).await,
        Command::Models(args) => models::run(client, args).await,
        Command::Predict(args) => predict::run(client, args).await,
    }
}
