//! Server settings: every flag has an environment variable and a default.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::batching::BatchConfig;
use crate::service::{ServiceLimits, UploadLimits};
use serval_model::training::{TrainingDevice, TrainingLimits};

use crate::sources::DataSources;

/// Serval's model server: trains behaviour models from CSV, keeps every
/// version in a registry, and serves predictions over gRPC.
#[derive(Debug, Clone, Parser)]
#[command(name = "serval-server", version)]
pub struct ServerConfig {
    /// Address the gRPC server listens on.
    #[arg(long, env = "SERVAL_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Registry database: a SQLite file path or `sqlite://` URL (one host;
    /// created on first start), or a `postgres://user:pass@host/db` URL
    /// (replicas on many hosts). Migrated on start.
    #[arg(
        long,
        env = "SERVAL_DATABASE",
        default_value = "serval.db",
        hide_env_values = true
    )]
    pub database: String,

    /// Registry connections this server opens at most. Default: 4 for
    /// SQLite, 8 for PostgreSQL. Replicas sharing a PostgreSQL server need
    /// replicas × (this + 1 for change announcements) connections there;
    /// lower it when that would pass the server's `max_connections`.
    #[arg(long, env = "SERVAL_DATABASE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: Option<u32>,

    /// SQLite: bytes kept in a file beside the registry (`<file>-reserve`)
    /// and given back when a delete finds the disk full, so that deleting
    /// versions can free room; made again after a delete that compacts.
    /// Keep it above the largest version's size. 0: no reserve.
    #[arg(long, env = "SERVAL_REGISTRY_RESERVE_BYTES", default_value_t = 8 << 20)]
    pub registry_reserve_bytes: u64,

    /// This server's name among the replicas sharing the registry; its
    /// training jobs carry it, and on start it fails the jobs it left
    /// running. Default: the host name (a Kubernetes pod's name).
    #[arg(long, env = "SERVAL_REPLICA_NAME", default_value_t = default_replica_name())]
    pub replica_name: String,

    /// A replica whose live statistics have not reached the registry for
    /// this long (stopped, or cut off from it) is shown as stale and left
    /// out of the fleet's figures (`GetLiveStats`, rollout gates). Every
    /// replica publishes once a second; give all of them the same value.
    #[arg(long, env = "SERVAL_LIVE_STATS_STALE_AFTER", default_value = "5s", value_parser = humantime::parse_duration)]
    pub live_stats_stale_after: Duration,

    /// Address for Prometheus metrics over HTTP (`GET /metrics`); off
    /// when not set.
    #[arg(long, env = "SERVAL_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Address for the Open Inference Protocol (KServe v2) over HTTP/JSON:
    /// health, server and model metadata, and inference, with the same
    /// tokens, routing and limits as gRPC Predict. `off` disables it.
    #[arg(long, env = "SERVAL_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: OptionalAddress,

    /// Rows one Predict call may carry.
    #[arg(long, env = "SERVAL_MAX_PREDICT_ROWS", default_value_t = 4096)]
    pub max_predict_rows: usize,

    /// Rows in one batched forward pass at most; 1 turns batching off.
    #[arg(long, env = "SERVAL_MAX_BATCH_ROWS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch_rows: u32,

    /// Longest a row waits for company while a compute thread is free (e.g.
    /// `500us`, `2ms`, `0`). A row never waits when the compute thread is
    /// idle.
    #[arg(long, env = "SERVAL_MAX_BATCH_DELAY", default_value = "500us", value_parser = humantime::parse_duration)]
    pub max_batch_delay: Duration,

    /// Rows waiting for a forward pass, per model version, at most; beyond
    /// it Predict fails fast with RESOURCE_EXHAUSTED.
    #[arg(long, env = "SERVAL_MAX_QUEUED_ROWS", default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queued_rows: u32,

    /// Threads that run forward passes (each product on one thread), shared
    /// by every loaded version: the server's threads do not grow with the
    /// number of versions loaded.
    #[arg(long, env = "SERVAL_COMPUTE_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub compute_threads: u32,

    /// Unload a loaded version once no call has used it for this long
    /// (e.g. `10m`); its next call loads it again (counted in
    /// `serval_version_loads_total`). Off when not set: loaded versions stay
    /// until no rollout state sends them traffic.
    #[arg(long, env = "SERVAL_UNLOAD_IDLE_AFTER", value_parser = humantime::parse_duration)]
    pub unload_idle_after: Option<Duration>,

    /// Largest decoded request message, in bytes (Train uploads are chunked
    /// and never need more than the default).
    #[arg(long, env = "SERVAL_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,

    /// Calls one client connection may have in progress; more are refused
    /// with RESOURCE_EXHAUSTED before their request is decoded. 0 (the
    /// default) means no limit: measured at 4096 callers on 2 cores, a
    /// limit of 512 refused half the calls yet answered the refusals no
    /// sooner (p50 115-230 ms, HTTP/2 and runtime queueing), so it is
    /// opt-in, for servers whose clients multiplex many calls per connection.
    #[arg(long, env = "SERVAL_MAX_CALLS_PER_CONNECTION", default_value_t = 0)]
    pub max_calls_per_connection: usize,

    /// Trainings allowed at once, each from the end of its upload to its
    /// registered version; more are refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "SERVAL_MAX_TRAINING_JOBS", default_value_t = 2)]
    pub max_training_jobs: usize,

    /// A prefix of object-store URLs (s3://, gs://, az://, file://) that
    /// training may read from (`serval train --source`); repeatable, or
    /// comma-separated in the environment. None by default: the server
    /// reads no source, and local paths only under a file:// prefix given
    /// here. Credentials come from the server's environment (AWS_*,
    /// GOOGLE_*, AZURE_*).
    #[arg(
        long = "data-source-allow",
        env = "SERVAL_DATA_SOURCE_ALLOW",
        value_delimiter = ','
    )]
    pub data_source_allow: Vec<String>,

    /// Training uploads in progress at once; more are refused
    /// (RESOURCE_EXHAUSTED). An upload holds no training slot: one is taken
    /// when its data is complete. An upload is held in memory up to an
    /// eighth of --training-memory and written to a temporary file beyond.
    #[arg(long, env = "SERVAL_MAX_UPLOADS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_uploads: u32,

    /// A training upload that sends no data for this long is ended with
    /// DEADLINE_EXCEEDED (e.g. `30s`, `2m`).
    #[arg(long, env = "SERVAL_UPLOAD_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub upload_idle_timeout: Duration,

    /// Longest a whole training upload may take before it is ended with
    /// DEADLINE_EXCEEDED (e.g. `10m`); no bound when not set.
    #[arg(long, env = "SERVAL_MAX_UPLOAD_DURATION", value_parser = humantime::parse_duration)]
    pub max_upload_duration: Option<Duration>,

    /// Data rows one training may read (an upload or a source); no bound
    /// when not set: --training-memory bounds what training holds.
    #[arg(long, env = "SERVAL_MAX_TRAINING_ROWS")]
    pub max_training_rows: Option<usize>,

    /// Memory one training may hold of what it builds from the data (e.g.
    /// `512MiB`, `2GiB`): data whose in-memory form would need more is
    /// streamed from a compact store of encoded rows, spilled to a
    /// temporary file (in TMPDIR) when it outgrows the budget too. The data
    /// as received is held besides (see docs/performance.md "Larger data").
    #[arg(long, env = "SERVAL_TRAINING_MEMORY", default_value = "1GiB", value_parser = parse_bytes)]
    pub training_memory: u64,

    /// Where training's matrix products run: `cpu`, or a CUDA GPU as
    /// `cuda` (device 0) or `cuda:N`. CUDA needs a build with the `cuda`
    /// feature (`cargo build --release --features cuda`); the server
    /// refuses to start when the device cannot be opened. Predict's
    /// forward passes run on the CPU either way.
    #[arg(long, env = "SERVAL_DEVICE", default_value = "cpu", value_parser = parse_device)]
    pub device: TrainingDevice,

    /// Columns one training upload may have (label and dropped columns
    /// included); wider uploads are refused with INVALID_ARGUMENT. Training
    /// cost grows with rows × columns; see docs/performance.md "Wide data".
    #[arg(long, env = "SERVAL_MAX_TRAINING_COLUMNS", default_value_t = 32_768, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_training_columns: u32,

    /// Bytes one training upload may hold.
    #[arg(long, env = "SERVAL_MAX_TRAINING_BYTES", default_value_t = 2 << 30)]
    pub max_training_bytes: usize,

    /// Bytes the objects of one server-side source may hold in all (e.g.
    /// `500GiB`); a larger source is refused before anything is read.
    /// Unset, no bound: training streams within --training-memory, and
    /// the objects are copied to temporary files, so the temporary
    /// directory's disk is the limit.
    #[arg(long, env = "SERVAL_MAX_SOURCE_BYTES", value_parser = parse_bytes)]
    pub max_source_bytes: Option<u64>,

    /// Epochs one training run may ask for.
    #[arg(long, env = "SERVAL_MAX_EPOCHS", default_value_t = 1000)]
    pub max_epochs: u32,

    /// How often the server re-reads the registry for changes made by other
    /// servers sharing it (changes made through this server apply at once).
    #[arg(long, env = "SERVAL_REGISTRY_POLL_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub registry_poll_interval: Duration,

    /// File of access tokens, one `role:name:token` per line (role `admin`
    /// or `predict`; `#` starts a comment).
    #[arg(long, env = "SERVAL_TOKENS_FILE")]
    pub tokens_file: Option<std::path::PathBuf>,

    /// Access tokens inline, `role:name:token` entries separated by commas.
    #[arg(long, env = "SERVAL_TOKENS", hide_env_values = true)]
    pub tokens: Option<String>,

    /// Serve a non-loopback address without tokens (anyone who can reach the
    /// port may train and change traffic).
    #[arg(long, env = "SERVAL_INSECURE")]
    pub insecure: bool,

    /// PEM certificate chain: serve gRPC over TLS (needs --tls-key).
    #[arg(long, env = "SERVAL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "SERVAL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// PEM CA certificate(s): require client certificates signed by them.
    #[arg(long, env = "SERVAL_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// On SIGTERM / Ctrl-C: how long in-flight calls may take to finish
    /// before the server exits anyway.
    #[arg(long, env = "SERVAL_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Outcome tracking: `on` answers a prediction id per Predict row and
    /// keeps each row's score, version, arm and time (never its values) for
    /// --outcome-window, so that ReportOutcomes can join observed labels to
    /// them; `off` answers no ids and refuses ReportOutcomes.
    #[arg(long, env = "SERVAL_OUTCOME_TRACKING", value_enum, default_value_t = Switch::On)]
    pub outcome_tracking: Switch,

    /// How long a prediction may wait for its outcome (e.g. `24h`, `30m`);
    /// online quality covers the predictions made within it.
    #[arg(long, env = "SERVAL_OUTCOME_WINDOW", default_value = "24h", value_parser = parse_outcome_window)]
    pub outcome_window: Duration,

    /// Predictions tracked at most (about 100 bytes each); beyond it the
    /// oldest are dropped first (counted in
    /// `serval_tracked_predictions_dropped_total`).
    #[arg(long, env = "SERVAL_MAX_TRACKED_PREDICTIONS", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tracked_predictions: u64,

    /// Log line format.
    #[arg(long, env = "SERVAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// OTLP/gRPC collector to export trace spans to (e.g.
    /// `http://otel-collector:4317`): each call, its time queued for a
    /// batch and its forward pass, and training jobs. Off when not set.
    #[arg(long, env = "SERVAL_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// The host name, or `serval-server` where it cannot be read.
fn default_replica_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "serval-server".to_string())
}

/// A listener's address, or `off` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddress(pub Option<SocketAddr>);

impl std::str::FromStr for OptionalAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(OptionalAddress(None));
        }
        text.parse()
            .map(|address| OptionalAddress(Some(address)))
            .map_err(|e| format!("{text:?} is neither an address (host:port) nor `off`: {e}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// A window of one second to about 136 years (prediction times are kept
/// in 32-bit seconds).
fn parse_outcome_window(text: &str) -> Result<Duration, String> {
    let window = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if window < Duration::from_secs(1) || window.as_secs() > u64::from(u32::MAX / 2) {
        return Err(format!("{text:?}: give a window from 1s to 60y"));
    }
    Ok(window)
}

/// A size in bytes as people write it: `1GiB`, `512MiB`, `64KiB`, `2G`
/// (K, M, G, T and their KiB forms are powers of 1024; KB, MB, GB, TB
/// powers of 1000), or a plain number of bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 512MiB or 2GiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)"
            ));
        }
    };
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?}: give a size of at least one byte"));
    }
    Ok(bytes as u64)
}

/// A training device as `--device` takes it: `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(text: &str) -> Result<TrainingDevice, String> {
    let refused =
        || format!("{text:?} is not a device: give cpu, cuda or cuda:N (N the GPU's ordinal, e.g. cuda:0)");
    match text.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok(TrainingDevice::Cpu),
        "cuda" => Ok(TrainingDevice::Cuda(0)),
        other => {
            let ordinal = other.strip_prefix("cuda:").ok_or_else(refused)?;
            if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refused());
            }
            ordinal.parse().map(TrainingDevice::Cuda).map_err(|_| refused())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServerConfig {
    /// Defaults for `database`, listening on ephemeral loopback ports (gRPC
    /// and HTTP), so that servers side by side never collide.
    pub fn for_database(database: impl Into<String>) -> Self {
        let mut config = ServerConfig::parse_from(["serval-server"]);
        config.listen = "127.0.0.1:0".parse().expect("valid address");
        config.http_listen = OptionalAddress(Some("127.0.0.1:0".parse().expect("valid address")));
        config.database = database.into();
        config
    }

    /// How this replica shares live statistics with the others.
    pub fn fleet_settings(&self) -> crate::fleet_stats::FleetSettings {
        crate::fleet_stats::FleetSettings {
            stale_after: self.live_stats_stale_after,
        }
    }

    /// Largest HTTP request body: four times --max-message-bytes (64 MiB by
    /// default), as a JSON number takes two to three times the bytes of a
    /// protobuf double, so both protocols carry about the same rows.
    pub fn max_http_body_bytes(&self) -> usize {
        self.max_message_bytes.saturating_mul(4)
    }

    /// The configured tokens (file and inline together).
    pub fn load_tokens(&self) -> Result<crate::auth::Tokens, String> {
        let mut text = String::new();
        if let Some(path) = &self.tokens_file {
            text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --tokens-file {}: {e}", path.display()))?;
        }
        if let Some(inline) = &self.tokens {
            text.push('\n');
            text.push_str(inline);
        }
        crate::auth::Tokens::parse(&text)
    }

    pub fn batch_config(&self) -> BatchConfig {
        BatchConfig {
            max_batch_rows: self.max_batch_rows as usize,
            max_batch_delay: self.max_batch_delay,
            max_queued_rows: self.max_queued_rows as usize,
            max_in_flight: self.compute_threads as usize,
        }
    }

    pub fn outcome_settings(&self) -> crate::outcomes::OutcomeSettings {
        crate::outcomes::OutcomeSettings {
            enabled: self.outcome_tracking == Switch::On,
            window: self.outcome_window,
            max_tracked: usize::try_from(self.max_tracked_predictions).unwrap_or(usize::MAX),
        }
    }

    /// The limits of every call; an error names a malformed
    /// --data-source-allow prefix, or a --device that cannot be opened.
    pub fn service_limits(&self) -> Result<ServiceLimits, String> {
        let device = self
            .device
            .open()
            .map_err(|error| format!("--device {}: {error}", self.device))?;
        Ok(ServiceLimits {
            sources: DataSources::new(&self.data_source_allow)?.with_max_bytes(self.max_source_bytes),
            training: TrainingLimits {
                max_epochs: self.max_epochs,
                max_rows: self.max_training_rows.unwrap_or(usize::MAX),
                memory: self.training_memory,
                max_columns: self.max_training_columns as usize,
                device,
            },
            upload: UploadLimits {
                max_bytes: self.max_training_bytes,
                idle_timeout: self.upload_idle_timeout,
                max_duration: self.max_upload_duration,
                spill_after: usize::try_from(self.training_memory / 8).unwrap_or(usize::MAX),
            },
            max_predict_rows: self.max_predict_rows,
            max_training_jobs: self.max_training_jobs,
            max_uploads: self.max_uploads as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_pool_size_is_optional_and_at_least_one() {
        let parse = |args: &[&str]| {
            ServerConfig::try_parse_from(["serval-server"].iter().chain(args))
                .map(|config| config.database_max_connections)
        };
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&["--database-max-connections", "3"]).unwrap(), Some(3));
        let refused = parse(&["--database-max-connections", "0"])
            .unwrap_err()
            .to_string();
        assert!(refused.contains("--database-max-connections"), "{refused}");
    }

    #[test]
    fn the_http_listener_defaults_to_8080_and_can_be_turned_off() {
        let parse = |args: &[&str]| {
            ServerConfig::try_parse_from(["serval-server"].iter().chain(args))
                .map(|config| config.http_listen)
        };
        assert_eq!(
            parse(&[]).unwrap(),
            OptionalAddress(Some("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(parse(&["--http-listen", "off"]).unwrap(), OptionalAddress(None));
        assert_eq!(
            parse(&["--http-listen", "0.0.0.0:9000"]).unwrap(),
            OptionalAddress(Some("0.0.0.0:9000".parse().unwrap()))
        );
        let refused = parse(&["--http-listen", "nowhere"]).unwrap_err().to_string();
        assert!(refused.contains("off"), "{refused}");
        assert_eq!(
            ServerConfig::for_database("x.db").http_listen,
            OptionalAddress(Some("127.0.0.1:0".parse().unwrap()))
        );
    }

    #[test]
    fn outcome_tracking_is_on_for_a_day_by_default() {
        let settings = ServerConfig::parse_from(["serval-server"]).outcome_settings();
        assert!(settings.enabled);
        assert_eq!(settings.window, Duration::from_secs(24 * 3600));
        assert_eq!(settings.max_tracked, 1_000_000);
        let settings = ServerConfig::parse_from([
            "serval-server",
            "--outcome-tracking",
            "off",
            "--outcome-window",
            "30m",
        ])
        .outcome_settings();
        assert!(!settings.enabled);
        assert_eq!(settings.window, Duration::from_secs(1800));
        for bad in ["0s", "500ms", "soon"] {
            let refused = ServerConfig::try_parse_from(["serval-server", "--outcome-window", bad])
                .unwrap_err()
                .to_string();
            assert!(refused.contains("--outcome-window"), "{refused}");
        }
    }

    #[test]
    fn uploads_stall_for_30s_at_most_by_default_and_have_slots_of_their_own() {
        let limits = ServerConfig::parse_from(["serval-server"])
            .service_limits()
            .unwrap();
        assert_eq!(limits.upload.idle_timeout, Duration::from_secs(30));
        assert_eq!(limits.upload.max_duration, None);
        assert_eq!((limits.max_uploads, limits.max_training_jobs), (4, 2));
        let limits = ServerConfig::parse_from([
            "serval-server",
            "--upload-idle-timeout",
            "5s",
            "--max-upload-duration",
            "10m",
            "--max-uploads",
            "1",
        ])
        .service_limits()
        .unwrap();
        assert_eq!(limits.upload.idle_timeout, Duration::from_secs(5));
        assert_eq!(limits.upload.max_duration, Some(Duration::from_secs(600)));
        assert_eq!(limits.max_uploads, 1);
        assert!(ServerConfig::try_parse_from(["serval-server", "--max-uploads", "0"]).is_err());
    }

    #[test]
    fn training_memory_is_a_gibibyte_by_default_and_rows_are_unbounded() {
        let limits = ServerConfig::parse_from(["serval-server"])
            .service_limits()
            .unwrap();
        assert_eq!(limits.training.memory, 1 << 30);
        assert_eq!(limits.training.max_rows, usize::MAX);
        let limits = ServerConfig::parse_from([
            "serval-server",
            "--training-memory",
            "512MiB",
            "--max-training-rows",
            "1000",
        ])
        .service_limits()
        .unwrap();
        assert_eq!(limits.training.memory, 512 << 20);
        assert_eq!(limits.training.max_rows, 1000);
        assert!(ServerConfig::try_parse_from(["serval-server", "--training-memory", "lots"]).is_err());
    }

    #[test]
    fn the_device_is_the_cpu_by_default_or_a_named_cuda_device() {
        let parse = |args: &[&str]| {
            ServerConfig::try_parse_from(["serval-server"].iter().chain(args)).map(|config| config.device)
        };
        assert_eq!(parse(&[]).unwrap(), TrainingDevice::Cpu);
        assert_eq!(parse(&["--device", "cpu"]).unwrap(), TrainingDevice::Cpu);
        assert_eq!(parse(&["--device", "cuda"]).unwrap(), TrainingDevice::Cuda(0));
        assert_eq!(parse(&["--device", "cuda:3"]).unwrap(), TrainingDevice::Cuda(3));
        assert_eq!(parse(&["--device", "CUDA:1"]).unwrap(), TrainingDevice::Cuda(1));
        for bad in [
            "gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1:2", "metal", "cpu:0", "",
        ] {
            let refused = parse(&["--device", bad]).unwrap_err().to_string();
            assert!(refused.contains("--device"), "{bad}: {refused}");
            assert!(
                refused.contains(&format!("{bad:?} is not a device")),
                "{bad}: {refused}"
            );
        }
        // The CPU opens in every build; CUDA only in one with the feature.
        assert!(
            ServerConfig::parse_from(["serval-server"])
                .service_limits()
                .is_ok()
        );
        #[cfg(not(feature = "cuda"))]
        {
            let refused = ServerConfig::parse_from(["serval-server", "--device", "cuda:2"])
                .service_limits()
                .unwrap_err();
            assert_eq!(
                refused,
                "--device cuda:2: this build has no CUDA support; rebuild with `cargo build --features cuda`"
            );
        }
    }

    #[test]
    fn sizes_are_read_as_people_write_them() {
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5 MiB"), Ok(3 << 19));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("12 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("MiB").is_err());
    }
}
