//! What a caller hands the batcher, and the queued message built from it.

use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::queue::Queued;
use crate::error::ServalError;

/// A request to the batcher: encoded rows, and when the caller stops
/// caring.
#[derive(Debug, Clone)]
pub struct PredictRows {
    /// Row-major, a whole number of rows of the predictor's width.
    pub rows: Vec<f32>,
    /// The caller's deadline, if it has one.
    pub deadline: Option<Instant>,
}

/// A request waiting in the queue.
#[derive(Debug)]
pub struct Message {
    pub rows: Vec<f32>,
    pub row_count: usize,
    pub deadline: Option<Instant>,
    pub enqueued_at: Instant,
    pub respond: oneshot::Sender<Result<Vec<f32>, ServalError>>,
    /// Correctness: the queue-room permit travels with the rows and is
    /// released when they leave the queue, so waiting rows never exceed
    /// `max_queued_rows`.
    pub permit: OwnedSemaphorePermit,
    /// The caller's span, so worker logs about it carry its context.
    pub span: tracing::Span,
}

impl Queued for Message {
    fn rows(&self) -> usize {
        self.row_count
    }

    fn enqueued_at(&self) -> Instant {
        self.enqueued_at
    }
}
