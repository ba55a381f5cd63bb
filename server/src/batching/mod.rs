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
//! already encoded and checked, so one bad request never spoils a batch. It
//! is generic over the model crate's [`BatchScorer`], so it knows nothing of
//! networks or of what an explanation holds.

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

pub use serval_model::BatchScorer;
