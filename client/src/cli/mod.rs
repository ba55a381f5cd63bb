//! Command-line parsing and dispatch for `serval`.

mod bench;
mod json;
mod models;
mod predict;
mod raw_call;
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
    /// Load-test the predict path: throughput, latency, errors.
    Bench(bench::BenchArgs),
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
    let server = cli.server.as_str();
    match cli.command {
        Command::Train(args) => train::run(ServalClient::connect(server).await?, *args).await,
        Command::Models(args) => models::run(ServalClient::connect(server).await?, args).await,
        Command::Predict(args) => predict::run(ServalClient::connect(server).await?, args).await,
        Command::Bench(args) => bench::run(server, args).await,
    }
}
