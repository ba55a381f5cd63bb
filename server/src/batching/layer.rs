//! [`BatchLayer`]: the batching settings, and the tower `Layer` that wraps a
//! predictor in a [`Batcher`].

use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::{BatchMetrics, BatchScorer, Batcher, ComputePool};

/// When batches are cut and how much may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Rows in a batch at most (a single larger request runs alone); 1
    /// turns batching off.
    pub max_batch_rows: usize,
    /// Longest a row waits for company while a compute slot is free. A row
    /// never waits when the compute thread is idle; 0 means never wait.
    pub max_batch_delay: Duration,
    /// Rows waiting at most; beyond it calls fail fast with
    /// RESOURCE_EXHAUSTED.
    pub max_queued_rows: usize,
    /// Batches of one version computing at once.
    pub max_in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch_rows: 256,
            max_batch_delay: Duration::from_micros(500),
            max_queued_rows: 8192,
            max_in_flight: 1,
        }
    }
}

/// Wraps a predictor in a [`Batcher`] whose worker runs on a thread of its
/// own and computes on `pool`.
#[derive(Clone)]
pub struct BatchLayer {
    config: BatchConfig,
    pool: ComputePool,
    metrics: BatchMetrics,
}

impl BatchLayer {
    pub fn new(config: BatchConfig, pool: ComputePool, metrics: BatchMetrics) -> Self {
        BatchLayer {
            config,
            pool,
            metrics,
        }
    }
}

impl<S: BatchScorer> Layer<Arc<S>> for BatchLayer {
    type Service = Batcher<S::Explanation>;

    fn layer(&self, scorer: Arc<S>) -> Batcher<S::Explanation> {
        let (batcher, worker) = Batcher::pair(scorer, self.config, self.pool.clone(), self.metrics.clone());
        spawn_worker(worker);
        batcher
    }
}

/// Runs `worker` on a thread of its own (with a small runtime for its
/// channels and timer) until its last [`Batcher`] handle is gone.
///
/// Why not a task on the server's runtime: measured at 4096 callers, the
/// worker then waited behind every runnable call task each time it woke,
/// so batches were cut every ~30 ms instead of back to back and goodput
/// collapsed to ~8k rows/s while the refusals churned. On its own thread
/// it is woken by the operating system as soon as a pass ends, or rows
/// arrive while a compute slot is free.
fn spawn_worker<S: BatchScorer>(worker: super::Worker<S>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build();
    let spawned = match runtime {
        Ok(runtime) => std::thread::Builder::new()
            .name("serval-batcher".into())
            .spawn(move || runtime.block_on(worker.run()))
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    if let Err(error) = spawned {
        // The worker went with the failed thread; its callers are answered
        // UNAVAILABLE when their queue closes.
        tracing::error!(%error, "cannot start a batching thread");
    }
}
