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
    /// Explain each row as well (integrated gradients).
    pub explain: bool,
}

impl PredictRows {
    /// Rows to score, without a deadline or explanations.
    pub fn scores_of(rows: Vec<f32>) -> Self {
        PredictRows {
            rows,
            deadline: None,
            explain: false,
        }
    }
}

/// What a caller gets back: one score per row, in order, and one
/// explanation (`E`, the scorer's kind) per row when it asked for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored<E> {
    pub scores: Vec<f32>,
    pub explanations: Vec<E>,
}

/// A request waiting in the queue.
#[derive(Debug)]
pub struct Message<E> {
    pub rows: Vec<f32>,
    pub row_count: usize,
    pub deadline: Option<Instant>,
    pub enqueued_at: Instant,
    pub explain: bool,
    pub respond: oneshot::Sender<Result<Scored<E>, ServalError>>,
    /// Correctness: the queue-room permit travels with the rows and is
    /// released when they leave the queue, so waiting rows never exceed
    /// `max_queued_rows`.
    pub permit: OwnedSemaphorePermit,
    /// The caller's span, so compute-thread logs about it carry its
    /// context and its exported batch spans have their parent.
    pub span: tracing::Span,
}

impl<E> Queued for Message<E> {
    fn rows(&self) -> usize {
        self.row_count
    }

    fn enqueued_at(&self) -> Instant {
        self.enqueued_at
    }
}
