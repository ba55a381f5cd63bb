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
    /// Longest a row waits for company while one of its version's passes
    /// runs and another compute slot is free. A row never waits when none
    /// of its version's passes runs; 0 means never wait.
    pub max_batch_delay: Duration,
    /// Rows waiting at most; beyond it calls fail fast with
    /// RESOURCE_EXHAUSTED.
    pub max_queued_rows: usize,
    /// Batches of one version computing at once (on as many compute
    /// threads).
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

/// Wraps a predictor in a [`Batcher`] whose batches run on `pool`, the
/// compute threads every version shares.
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

    /// No thread per version: the version's queue joins the pool's
    /// rotation whenever it has a batch to cut. (Each version used to get
    /// a batching thread and a small runtime of its own: 60 loaded versions
    /// made 69 threads and ~1 MB of memory each.)
    fn layer(&self, scorer: Arc<S>) -> Batcher<S::Explanation> {
        Batcher::new(scorer, self.config, self.pool.clone(), self.metrics.clone())
    }
}
