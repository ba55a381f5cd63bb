//! The batching layer: concurrent Predict calls for one model version join
//! one queue and run as few, large forward passes on a compute thread.
//!
//! One concern per file, as tower's own middleware does it:
//! `layer` (settings), `service` (the cloneable [`Batcher`] handle),
//! `future` (what a caller awaits), `message` (a queued request), `queue`
//! (the batching rules as plain data), `worker` (the loop), `compute` (the
//! compute threads) and `metrics`.
//!
//! It does not encode records or choose versions: callers hand it rows
//! already encoded and checked, so one bad request never spoils a batch.

mod compute;
mod future;
mod layer;
mod message;
mod metrics;
mod queue;
mod service;
mod worker;

pub use compute::ComputePool;
pub use future::BatchFuture;
pub use layer::{BatchConfig, BatchLayer};
pub use message::{PredictRows, Scored};
pub use metrics::{BatchMetrics, BatchMetricsFamily};
pub use queue::{BatchQueue, Decision, Queued};
pub use service::Batcher;
pub use worker::Worker;

use crate::error::ServalError;
use crate::explain::EncodedExplanation;

/// What the layer wraps: something that scores a stacked batch of encoded
/// rows in one pass. Called on a compute thread, never on the runtime.
pub trait BatchPredictor: Send + Sync + 'static {
    /// Values per row.
    fn width(&self) -> usize;
    /// Scores `rows` (row-major, a whole number of rows): one per row.
    fn predict_batch(&self, rows: &[f32]) -> Result<Vec<f32>, ServalError>;
    /// Explains `rows`: one explanation per row. Runs in the same compute
    /// job as the batch's forward pass, over the rows whose callers asked.
    fn explain_batch(&self, rows: &[f32]) -> Result<Vec<EncodedExplanation>, ServalError> {
        let _ = rows;
        Err(ServalError::InvalidArgument(
            "this predictor cannot explain its scores".into(),
        ))
    }
}

impl BatchPredictor for crate::mlp::Mlp {
    fn width(&self) -> usize {
        self.input_width()
    }

    fn predict_batch(&self, rows: &[f32]) -> Result<Vec<f32>, ServalError> {
        self.predict(rows)
    }
}
