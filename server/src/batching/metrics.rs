//! What the batching layer counts: batches run, rows per batch, time rows
//! wait in the queue, rows waiting now, and calls turned away.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The metric families, registered once per server, labelled by model and
/// version.
#[derive(Clone)]
pub struct BatchMetricsFamily {
    batches: IntCounterVec,
    batch_rows: HistogramVec,
    queue_wait: HistogramVec,
    queued_rows: IntGaugeVec,
    rejected: IntCounterVec,
    dropped: IntCounterVec,
}

/// One version's metrics.
#[derive(Clone)]
pub struct BatchMetrics {
    /// Forward passes run.
    pub batches: IntCounter,
    /// Rows per forward pass.
    pub batch_rows: Histogram,
    /// Seconds from enqueue to the start of the row's forward pass.
    pub queue_wait: Histogram,
    /// Rows waiting now.
    pub queued_rows: IntGauge,
    /// Calls refused because the queue was full.
    pub rejected: IntCounter,
    /// Calls dropped before computing: the caller left or its deadline
    /// passed.
    pub dropped: IntCounter,
}

impl BatchMetricsFamily {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let labels = &["model", "version"];
        let family = BatchMetricsFamily {
            batches: IntCounterVec::new(
                Opts::new("serval_batches_total", "Forward passes run by the batching layer"),
                labels,
            )?,
            batch_rows: HistogramVec::new(
                HistogramOpts::new("serval_batch_rows", "Rows per forward pass").buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
                ]),
                labels,
            )?,
            queue_wait: HistogramVec::new(
                HistogramOpts::new(
                    "serval_batch_queue_wait_seconds",
                    "Time a request waits in the batching queue before its forward pass",
                )
                .buckets(vec![
                    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                    0.05, 0.1, 0.25, 1.0,
                ]),
                labels,
            )?,
            queued_rows: IntGaugeVec::new(
                Opts::new("serval_batch_queued_rows", "Rows waiting in the batching queue"),
                labels,
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "serval_batch_rejected_total",
                    "Predict calls refused because the batching queue was full",
                ),
                labels,
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "serval_batch_dropped_total",
                    "Queued Predict calls dropped before computing (caller gone or deadline passed)",
                ),
                labels,
            )?,
        };
        registry.register(Box::new(family.batches.clone()))?;
        registry.register(Box::new(family.batch_rows.clone()))?;
        registry.register(Box::new(family.queue_wait.clone()))?;
        registry.register(Box::new(family.queued_rows.clone()))?;
        registry.register(Box::new(family.rejected.clone()))?;
        registry.register(Box::new(family.dropped.clone()))?;
        Ok(family)
    }

    /// The metrics of one version.
    pub fn for_version(&self, model: &str, version: u32) -> BatchMetrics {
        let version = version.to_string();
        let labels = [model, version.as_str()];
        BatchMetrics {
            batches: self.batches.with_label_values(&labels),
            batch_rows: self.batch_rows.with_label_values(&labels),
            queue_wait: self.queue_wait.with_label_values(&labels),
            queued_rows: self.queued_rows.with_label_values(&labels),
            rejected: self.rejected.with_label_values(&labels),
            dropped: self.dropped.with_label_values(&labels),
        }
    }

    /// Forgets a version's series once it is unloaded.
    pub fn remove_version(&self, model: &str, version: u32) {
        let version = version.to_string();
        let labels = [model, version.as_str()];
        let _ = self.batches.remove_label_values(&labels);
        let _ = self.batch_rows.remove_label_values(&labels);
        let _ = self.queue_wait.remove_label_values(&labels);
        let _ = self.queued_rows.remove_label_values(&labels);
        let _ = self.rejected.remove_label_values(&labels);
        let _ = self.dropped.remove_label_values(&labels);
    }
}

impl BatchMetrics {
    /// Metrics registered nowhere, for tests and tools.
    pub fn unregistered() -> Self {
        BatchMetricsFamily::register(&Registry::new())
            .expect("fresh registry")
            .for_version("unregistered", 0)
    }

    /// Rows computed so far (sum of batch sizes).
    pub fn rows_computed(&self) -> u64 {
        self.batch_rows.get_sample_sum() as u64
    }
}
