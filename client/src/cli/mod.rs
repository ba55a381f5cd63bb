//! Command-line parsing and dispatch for `serval`.

mod bench;
mod json;
mod models;
mod predict;
mod raw_call;
mod rollout;
mod train;

use clap::{Parser, Subcommand};
use serval_client::{CallMetadata, ClientError, ServalClient};

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

    /// Who you are, for the audit log [default: $USER].
    #[arg(long, global = true, env = "SERVAL_ACTOR")]
    actor: Option<String>,

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
    /// Move traffic between versions: aliases, canary, promote, rollback.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
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
    let actor = cli
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "serval-cli".to_string());
    let connect = || ServalClient::connect_with(server, CallMetadata::default().with_actor(&actor));
    match cli.command {
        Command::Train(args) => train::run(connect().await?, *args).await,
        Command::Models(args) => models::run(connect().await?, args).await,
        Command::Predict(args) => predict::run(connect().await?, args).await,
        Command::Bench(args) => bench::run(server, args).await,
        Command::Rollout(command) => rollout::run(connect().await?, command).await,
    }
}
