//! The batching layer: concurrent Predict calls for one model version join
//! that version's queue and run as few, large forward passes on the
//! compute threads, which every loaded version shares.
//!
//! One concern per file, as tower's own middleware does it:
//! `layer` (settings), `service` (the cloneable [`Batcher`] handle),
//! `future` (what a caller awaits), `message` (a queued request), `queue`
//! (the batching rules as plain data), `lane` (one version's queue on the
//! pool), `schedule` (the pool's rotation as plain data), `compute` (the
//! fixed set of compute threads), `pass` (one batch's forward pass) and
//! `metrics`.
//!
//! A call's rows cross threads once each way: the caller's task pushes
//! them into its version's queue and, when the queue's rules say a batch
//! may be cut, puts the queue in the pool's rotation (waking a sleeping
//! compute thread); the compute thread whose turn it is cuts the batch,
//! runs ONE forward pass and answers each caller from there.
//!
//! It does not encode records or choose versions: callers hand it rows
//! already encoded and checked, so one bad request never spoils a batch. It
//! is generic over the model crate's [`BatchScorer`], so it knows nothing of
//! networks or of what an explanation holds.

mod compute;
mod future;
mod lane;
mod layer;
mod message;
mod metrics;
mod pass;
mod queue;
mod schedule;
mod service;

pub use compute::ComputePool;
pub use future::BatchFuture;
pub use layer::{BatchConfig, BatchLayer};
pub use message::{PredictRows, Scored};
pub use metrics::{BatchMetrics, BatchMetricsFamily};
pub use queue::{BatchQueue, Decision, Queued};
pub use service::{Batcher, Hold, WakeLater};

pub use serval_model::BatchScorer;
