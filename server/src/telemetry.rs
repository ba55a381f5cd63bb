//! The server's metrics registry: every metric family the server keeps,
//! registered once per server so that several servers can share a process.
//! Labels are RPC names, status codes, model names, versions and job
//! states: never request contents, feature values or routing keys.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::batching::BatchMetricsFamily;

/// Latency buckets in seconds, 100 µs to 30 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// Every gRPC call, by RPC and final status code.
#[derive(Clone)]
pub struct GrpcMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl GrpcMetrics {
    pub fn observe(&self, rpc: &str, code: &str, seconds: f64) {
        self.requests.with_label_values(&[rpc, code]).inc();
        self.duration.with_label_values(&[rpc]).observe(seconds);
    }
}

/// Every HTTP request (`oip_http`), by route and HTTP status.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    /// `route` is one of the server's fixed route names, never a path.
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.duration.with_label_values(&[route]).observe(seconds);
    }
}

/// Predict calls by model, version and status code.
#[derive(Clone)]
pub struct PredictMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    rows: IntCounterVec,
    /// Model → versions whose series were removed after their deletion.
    /// Correctness: version numbers are never reused, so a call still in
    /// flight across the delete must not bring a series back. One entry per
    /// version deleted while this server ran.
    deleted: Arc<RwLock<HashMap<String, HashSet<u32>>>>,
}

impl PredictMetrics {
    /// Counts a call, unless its version was deleted.
    pub fn observe(&self, model: &str, version: u32, code: &str, seconds: f64, rows: usize) {
        // Held while counting, so that a removal cannot come in between.
        let deleted = self.deleted.read().expect("metrics lock poisoned");
        if is_deleted(&deleted, model, version) {
            return;
        }
        let version = version.to_string();
        self.requests.with_label_values(&[model, &version, code]).inc();
        self.duration
            .with_label_values(&[model, &version, code])
            .observe(seconds);
        self.rows
            .with_label_values(&[model, &version])
            .inc_by(rows as u64);
    }

    /// Removes every series of `version` of `model` (after it is deleted),
    /// whatever status codes it answered with.
    pub fn remove_version(&self, model: &str, version: u32) {
        let mut deleted = self.deleted.write().expect("metrics lock poisoned");
        deleted.entry(model.to_string()).or_default().insert(version);
        let version = version.to_string();
        let _ = self.rows.remove_label_values(&[model, &version]);
        for code in (0..=16).map(tonic::Code::from) {
            let labels = [model, &version, serval_proto::code_name(code)];
            let _ = self.requests.remove_label_values(&labels);
            let _ = self.duration.remove_label_values(&labels);
        }
    }

    /// The series of `version` of `model`, looked up once: a loaded
    /// version keeps them, so a successful call costs no label lookups.
    pub fn for_version(&self, model: &str, version: u32) -> VersionPredictMetrics {
        let deleted = self.deleted.read().expect("metrics lock poisoned");
        let ok_series = (!is_deleted(&deleted, model, version)).then(|| {
            let label = version.to_string();
            let ok = serval_proto::code_name(tonic::Code::Ok);
            OkSeries {
                requests: self.requests.with_label_values(&[model, &label, ok]),
                duration: self.duration.with_label_values(&[model, &label, ok]),
                rows: self.rows.with_label_values(&[model, &label]),
            }
        });
        VersionPredictMetrics {
            ok: ok_series,
            all: self.clone(),
            model: model.to_string(),
            version,
        }
    }
}

fn is_deleted(deleted: &HashMap<String, HashSet<u32>>, model: &str, version: u32) -> bool {
    deleted
        .get(model)
        .is_some_and(|versions| versions.contains(&version))
}

/// One version's Predict series (see [`PredictMetrics::for_version`]).
pub struct VersionPredictMetrics {
    /// None when the version was deleted before its first call here ended.
    ok: Option<OkSeries>,
    /// For the other status codes, which are rare.
    all: PredictMetrics,
    model: String,
    version: u32,
}

/// The series a successful call counts in. Once removed from their
/// families they are no longer exported, so a late call counts nowhere.
struct OkSeries {
    requests: IntCounter,
    duration: Histogram,
    rows: IntCounter,
}

impl VersionPredictMetrics {
    pub fn observe(&self, code: tonic::Code, seconds: f64, rows: usize) {
        if code == tonic::Code::Ok {
            if let Some(ok) = &self.ok {
                ok.requests.inc();
                ok.duration.observe(seconds);
                ok.rows.inc_by(rows as u64);
            }
        } else {
            let name = serval_proto::code_name(code);
            self.all.observe(&self.model, self.version, name, seconds, rows);
        }
    }
}

/// Training jobs, and the uploads before them.
#[derive(Clone)]
pub struct JobMetrics {
    pub running: IntGauge,
    pub finished: IntCounterVec,
    /// Training uploads in progress (each holding an upload slot).
    pub uploads: IntGauge,
}

/// Metric families of one server.
#[derive(Clone)]
pub struct ServerMetrics {
    pub registry: Registry,
    pub batching: BatchMetricsFamily,
    pub grpc: GrpcMetrics,
    pub http: HttpMetrics,
    pub predict: PredictMetrics,
    pub jobs: JobMetrics,
    pub loaded_versions: IntGauge,
    /// Version loads, reloads after an idle unload included.
    pub version_loads: IntCounter,
    /// Versions unloaded for serving no call for `--unload-idle-after`.
    pub idle_unloads: IntCounter,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: T,
) -> prometheus::Result<T> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

impl ServerMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let batching = BatchMetricsFamily::register(&registry)?;
        let grpc = GrpcMetrics {
            requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "serval_grpc_requests_total",
                        "gRPC calls by RPC and final status code",
                    ),
                    &["rpc", "code"],
                )?,
            )?,
            duration: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new("serval_grpc_request_duration_seconds", "gRPC call latency by RPC")
                        .buckets(LATENCY_BUCKETS.to_vec()),
                    &["rpc"],
                )?,
            )?,
        };
        let http = HttpMetrics {
            requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "serval_http_requests_total",
                        "HTTP requests (Open Inference Protocol) by route and status",
                    ),
                    &["route", "status"],
                )?,
            )?,
            duration: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "serval_http_request_duration_seconds",
                        "HTTP request latency (Open Inference Protocol) by route",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["route"],
                )?,
            )?,
        };
        let predict = PredictMetrics {
            requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "serval_predict_requests_total",
                        "Predict calls by model, answering version and status code",
                    ),
                    &["model", "version", "code"],
                )?,
            )?,
            duration: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "serval_predict_duration_seconds",
                        "Predict latency in the server (from the call's start to its answer) by model, version \
                         and status code",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["model", "version", "code"],
                )?,
            )?,
            rows: register(
                &registry,
                IntCounterVec::new(
                    Opts::new("serval_predict_rows_total", "Rows scored by model and version"),
                    &["model", "version"],
                )?,
            )?,
            deleted: Arc::default(),
        };
        let jobs = JobMetrics {
            running: register(
                &registry,
                IntGauge::new("serval_training_jobs_running", "Training jobs running now")?,
            )?,
            finished: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "serval_training_jobs_finished_total",
                        "Training jobs ended, by outcome",
                    ),
                    &["state"],
                )?,
            )?,
            uploads: register(
                &registry,
                IntGauge::new(
                    "serval_training_uploads",
                    "Training uploads in progress (not yet holding a training slot)",
                )?,
            )?,
        };
        let loaded_versions = register(
            &registry,
            IntGauge::new("serval_loaded_versions", "Model versions loaded and serving")?,
        )?;
        let version_loads = register(
            &registry,
            IntCounter::new(
                "serval_version_loads_total",
                "Model versions loaded (a reload after an idle unload counts again)",
            )?,
        )?;
        let idle_unloads = register(
            &registry,
            IntCounter::new(
                "serval_versions_unloaded_idle_total",
                "Model versions unloaded after serving no call for --unload-idle-after",
            )?,
        )?;
        Ok(ServerMetrics {
            registry,
            batching,
            grpc,
            http,
            predict,
            jobs,
            loaded_versions,
            version_loads,
            idle_unloads,
        })
    }

    /// Adds the registry's storage series, read from `registry` at every
    /// scrape: `serval_registry_storage_full_total`,
    /// `serval_registry_storage_full` and `serval_registry_reserve_bytes`.
    pub fn watch_registry_storage(&self, registry: serval_registry::Registry) -> prometheus::Result<()> {
        let collector = RegistryStorageCollector {
            registry,
            full_errors: IntCounter::new(
                "serval_registry_storage_full_total",
                "Registry writes refused because the registry's storage is full",
            )?,
            full: IntGauge::new(
                "serval_registry_storage_full",
                "1 while the registry's storage is full (the last write that needed room found none)",
            )?,
            reserve: IntGauge::new(
                "serval_registry_reserve_bytes",
                "Bytes held in the SQLite registry's reserve (0: none, or given back to a delete on a full disk)",
            )?,
            scraping: Mutex::new(()),
        };
        self.registry.register(Box::new(collector))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(error) = encoder.encode_utf8(&self.registry.gather(), &mut text) {
            tracing::error!(%error, "cannot encode metrics");
        }
        text
    }
}

/// The registry's storage state as metrics, read when scraped.
struct RegistryStorageCollector {
    registry: serval_registry::Registry,
    full_errors: IntCounter,
    full: IntGauge,
    reserve: IntGauge,
    /// Held while the series catch up with the registry.
    scraping: Mutex<()>,
}

impl Collector for RegistryStorageCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.full_errors
            .desc()
            .into_iter()
            .chain(self.full.desc())
            .chain(self.reserve.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Correctness: the registry's count only grows and only this
        // collector moves the counter, one scrape at a time, so the counter
        // catches up exactly once.
        let _catching_up = self.scraping.lock().expect("metrics lock poisoned");
        let status = self.registry.storage_status();
        self.full_errors
            .inc_by(status.full_errors.saturating_sub(self.full_errors.get()));
        self.full.set(i64::from(status.full));
        self.reserve
            .set(i64::try_from(status.reserve_bytes).unwrap_or(i64::MAX));
        let mut families = self.full_errors.collect();
        families.extend(self.full.collect());
        families.extend(self.reserve.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    /// The exported Predict series of `version` of model "m".
    fn series(metrics: &ServerMetrics, version: u32) -> Vec<String> {
        let label = format!("version=\"{version}\"");
        metrics
            .render()
            .lines()
            .filter(|line| line.starts_with("serval_predict_") && line.contains("model=\"m\""))
            .filter(|line| line.contains(&label))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_call_in_flight_across_the_delete_does_not_bring_its_series_back() {
        let metrics = ServerMetrics::new().unwrap();
        let one = metrics.predict.for_version("m", 1);
        one.observe(Code::Ok, 0.001, 1);
        one.observe(Code::InvalidArgument, 0.001, 0);
        metrics.predict.for_version("m", 2).observe(Code::Ok, 0.001, 1);
        assert!(series(&metrics, 1).iter().any(|s| s.contains("INVALID_ARGUMENT")));

        metrics.predict.remove_version("m", 1);
        assert_eq!(series(&metrics, 1), Vec::<String>::new());
        // Calls that held the version before the delete end after it, with
        // any status code...
        one.observe(Code::Ok, 0.001, 1);
        one.observe(Code::Unavailable, 0.001, 0);
        // ...and so does the version's first call on this server.
        let first = metrics.predict.for_version("m", 1);
        first.observe(Code::Ok, 0.001, 1);
        first.observe(Code::Internal, 0.001, 0);
        assert_eq!(series(&metrics, 1), Vec::<String>::new());

        // The model's other versions are kept and still count.
        let two = series(&metrics, 2);
        assert!(
            two.iter()
                .any(|s| s.starts_with("serval_predict_requests_total") && s.ends_with(" 1")),
            "{two:?}"
        );
    }
}
