//! Command-line parsing and dispatch for `serval`.

mod bench;
mod bench_oip;
pub mod exit;
mod http_call;
mod jobs;
mod json;
mod models;
mod outcomes;
mod predict;
mod raw_call;
mod report;
mod rollout;
mod train;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

use serval_client::{CallMetadata, ClientError, ConnectOptions, ServalClient};

#[derive(Debug, Parser)]
#[command(
    name = "serval",
    version,
    about = "Train, list and score behaviour models on a Serval server",
    after_help = exit::HELP
)]
pub struct Cli {
    /// Server URL, or several replicas of one registry as a comma-separated
    /// list (http://a:50051,http://b:50051): calls take turns over them, and
    /// predict and reads move on to another replica when one is unreachable
    /// (changes such as train, rollout, delete and cancel are never retried).
    #[arg(
        long,
        global = true,
        value_name = "URL[,URL...]",
        env = "SERVAL_SERVER",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50051"
    )]
    server: Vec<String>,

    /// Who you are, for the audit log [default: $USER].
    #[arg(long, global = true, env = "SERVAL_ACTOR")]
    actor: Option<String>,

    /// Access token, sent as `authorization: Bearer <token>`.
    #[arg(long, global = true, env = "SERVAL_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// PEM CA certificate that signed the server's certificate (use an
    /// https:// server URL); the system roots when not given.
    #[arg(long, global = true, env = "SERVAL_TLS_CA")]
    tls_ca: Option<PathBuf>,

    /// PEM client certificate, for servers that require one (mutual TLS).
    #[arg(long, global = true, env = "SERVAL_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, global = true, env = "SERVAL_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Server name to verify in its certificate [default: the URL's host].
    #[arg(long, global = true, env = "SERVAL_TLS_DOMAIN")]
    tls_domain: Option<String>,

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
    /// Training jobs: list them, re-attach to one, cancel one.
    Jobs(jobs::JobsArgs),
    /// Write a self-contained HTML report of a version, or two side by side.
    Report(report::ReportArgs),
    /// Report observed outcomes of earlier predictions from a CSV file
    /// (prediction_id,label[,time]).
    Outcomes(outcomes::OutcomesArgs),
}

/// What a command can fail with; printed as `error: …`, with the exit code
/// of its kind (see `exit`).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Bad flags, arguments or input files.
    #[error("{0}")]
    Input(String),
    /// The server's error answer, with what the command adds about it.
    #[error("{0}")]
    Refused(String),
    /// A rollout gate failed (the canary was rolled back).
    #[error("{0}")]
    GateFailed(String),
    /// The connection was lost during the call; `then` says whether the
    /// command may have taken effect and how to find out.
    #[error("{error}; {then}")]
    ConnectionLost { error: ClientError, then: String },
    /// Anything else that went wrong here.
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// This error, with a lost connection explained by `then`.
    fn explained(self, then: String) -> Self {
        match self {
            CliError::Client(error @ ClientError::ConnectionLost(_)) => {
                CliError::ConnectionLost { error, then }
            }
            other => other,
        }
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Input(format!("cannot read {what} {}: {e}", path.display())))
}

/// Token, actor and TLS settings from the global flags.
fn connect_options(cli: &Cli) -> Result<ConnectOptions, CliError> {
    let actor = cli
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "serval-cli".to_string());
    let mut metadata = CallMetadata::default().with_actor(&actor);
    if let Some(token) = &cli.token {
        metadata = metadata
            .with_token(token)
            .map_err(|e| CliError::Input(format!("--token: {e}")))?;
    }
    let mut options = ConnectOptions { metadata, tls: None };
    let https = cli.server.iter().any(|url| url.trim().starts_with("https://"));
    if cli.tls_ca.is_some() || cli.tls_cert.is_some() || https {
        let ca = cli.tls_ca.as_deref().map(|p| read(p, "--tls-ca")).transpose()?;
        let identity = match (&cli.tls_cert, &cli.tls_key) {
            (Some(cert), Some(key)) => Some((read(cert, "--tls-cert")?, read(key, "--tls-key")?)),
            _ => None,
        };
        options = options.with_tls(ca, identity, cli.tls_domain.clone());
    }
    Ok(options)
}

/// The --server addresses, without blanks ("a, b" and a trailing comma
/// are forgiven).
fn servers(cli: &Cli) -> Result<Vec<String>, CliError> {
    let servers: Vec<String> = cli
        .server
        .iter()
        .map(|url| url.trim())
        .filter(|url| !url.is_empty())
        .map(str::to_string)
        .collect();
    if servers.is_empty() {
        return Err(CliError::Input("--server: give at least one server URL".into()));
    }
    Ok(servers)
}

impl Command {
    /// What a connection lost during this command means: whether it may
    /// have taken effect, and how to find out.
    fn if_connection_lost(&self) -> String {
        match self {
            Command::Train(args) => train::if_connection_lost(args),
            Command::Models(args) => models::if_connection_lost(args),
            Command::Rollout(command) => rollout::if_connection_lost(command),
            Command::Jobs(args) => jobs::if_connection_lost(args),
            Command::Predict(_) | Command::Bench(_) | Command::Report(_) => NOTHING_CHANGED.to_string(),
            Command::Outcomes(_) => outcomes::IF_CONNECTION_LOST.to_string(),
        }
    }
}

/// What a lost connection means for a command that only reads.
const NOTHING_CHANGED: &str = "this command changes nothing on the server; run it again";

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let then = cli.command.if_connection_lost();
    run_command(cli).await.map_err(|error| error.explained(then))
}

async fn run_command(cli: Cli) -> Result<(), CliError> {
    let servers = servers(&cli)?;
    let server = servers.as_slice();
    let options = connect_options(&cli)?;
    let connect = || ServalClient::connect_many(server, options.clone());
    match cli.command {
        Command::Train(args) => train::run(connect().await?, *args).await,
        Command::Models(args) => models::run(connect().await?, args).await,
        Command::Predict(args) => predict::run(connect().await?, args).await,
        Command::Bench(args) => bench::run(server, &options, cli.token.as_deref(), args).await,
        Command::Rollout(command) => rollout::run(connect().await?, command).await,
        Command::Jobs(args) => jobs::run(connect().await?, args).await,
        Command::Report(args) => report::run(connect().await?, args).await,
        Command::Outcomes(args) => outcomes::run(connect().await?, args).await,
    }
}
