//! Server settings: every flag has an environment variable and a default.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

use crate::service::ServiceLimits;
use crate::training::TrainingLimits;

/// Serval's model server: trains behaviour models from CSV, keeps every
/// version in a registry, and serves predictions over gRPC.
#[derive(Debug, Clone, Parser)]
#[command(name = "serval-server", version)]
pub struct ServerConfig {
    /// Address the gRPC server listens on.
    #[arg(long, env = "SERVAL_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Registry database: a SQLite file path or a `sqlite://` URL; created
    /// and migrated on first start.
    #[arg(long, env = "SERVAL_DATABASE", default_value = "serval.db")]
    pub database: String,

    /// Rows one Predict call may carry.
    #[arg(long, env = "SERVAL_MAX_PREDICT_ROWS", default_value_t = 10_000)]
    pub max_predict_rows: usize,

    /// Largest decoded request message, in bytes (Train uploads are chunked
    /// and never need more than the default).
    #[arg(long, env = "SERVAL_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,

    /// Training runs allowed at once; more are refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "SERVAL_MAX_TRAINING_JOBS", default_value_t = 2)]
    pub max_training_jobs: usize,

    /// Data rows one training upload may hold.
    #[arg(long, env = "SERVAL_MAX_TRAINING_ROWS", default_value_t = 5_000_000)]
    pub max_training_rows: usize,

    /// Bytes one training upload may hold.
    #[arg(long, env = "SERVAL_MAX_TRAINING_BYTES", default_value_t = 2 << 30)]
    pub max_training_bytes: usize,

    /// Epochs one training run may ask for.
    #[arg(long, env = "SERVAL_MAX_EPOCHS", default_value_t = 1000)]
    pub max_epochs: u32,

    /// Log line format.
    #[arg(long, env = "SERVAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServerConfig {
    /// Defaults for `database`, listening on an ephemeral loopback port.
    pub fn for_database(database: impl Into<String>) -> Self {
        let mut config = ServerConfig::parse_from(["serval-server"]);
        config.listen = "127.0.0.1:0".parse().expect("valid address");
        config.database = database.into();
        config
    }

    pub fn service_limits(&self) -> ServiceLimits {
        ServiceLimits {
            training: TrainingLimits {
                max_epochs: self.max_epochs,
                max_rows: self.max_training_rows,
                max_upload_bytes: self.max_training_bytes,
            },
            max_predict_rows: self.max_predict_rows,
            max_training_jobs: self.max_training_jobs,
        }
    }
}
