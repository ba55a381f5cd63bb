//! [`Batcher`]: the cloneable handle callers use. `call` admits a request
//! to the queue (or refuses it at once) and returns a [`BatchFuture`].

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tower::Service;

use super::message::{Message, Scored};
use super::{BatchConfig, BatchFuture, BatchMetrics, BatchScorer, ComputePool, PredictRows, Worker};
use crate::error::ServalError;

/// Handle to one version's batching queue; clones share the queue. `E` is
/// what an explanation of one row is.
pub struct Batcher<E> {
    queue: mpsc::UnboundedSender<Message<E>>,
    room: Arc<Semaphore>,
    width: usize,
    config: BatchConfig,
    metrics: BatchMetrics,
}

impl<E> Clone for Batcher<E> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
            room: self.room.clone(),
            width: self.width,
            config: self.config,
            metrics: self.metrics.clone(),
        }
    }
}

impl<E: Send + 'static> Batcher<E> {
    /// The handle and its worker, separately, so tests can hold the worker
    /// back and fill the queue first. Run the worker with `worker.run()`.
    pub fn pair<S: BatchScorer<Explanation = E>>(
        scorer: Arc<S>,
        config: BatchConfig,
        pool: ComputePool,
        metrics: BatchMetrics,
    ) -> (Batcher<E>, Worker<S>) {
        let config = BatchConfig {
            max_batch_rows: config.max_batch_rows.max(1),
            max_in_flight: config.max_in_flight.max(1),
            ..config
        };
        let (queue, inbox) = mpsc::unbounded_channel();
        let batcher = Batcher {
            queue,
            room: Arc::new(Semaphore::new(config.max_queued_rows)),
            width: scorer.width(),
            config,
            metrics: metrics.clone(),
        };
        (batcher, Worker::new(inbox, scorer, config, pool, metrics))
    }

    pub fn metrics(&self) -> &BatchMetrics {
        &self.metrics
    }

    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// Queues `request` (or refuses it at once) without needing `&mut`:
    /// what `Service::call` does, for callers sharing one handle.
    pub fn submit(&self, request: PredictRows) -> BatchFuture<E> {
        match self.admit(request) {
            Ok(answer) => BatchFuture::Queued(answer),
            Err(error) => BatchFuture::Refused(Some(error)),
        }
    }

    fn admit(
        &self,
        request: PredictRows,
    ) -> Result<oneshot::Receiver<Result<Scored<E>, ServalError>>, ServalError> {
        if request.rows.is_empty() || !request.rows.len().is_multiple_of(self.width) {
            return Err(ServalError::InvalidArgument(format!(
                "{} values are not a whole number of rows of {}",
                request.rows.len(),
                self.width
            )));
        }
        let row_count = request.rows.len() / self.width;
        let refused = |metrics: &BatchMetrics| {
            metrics.rejected.inc();
            ServalError::ResourceExhausted(format!(
                "the prediction queue is full ({} rows waiting at most); retry later",
                self.config.max_queued_rows
            ))
        };
        let permits = u32::try_from(row_count).map_err(|_| refused(&self.metrics))?;
        let permit = self
            .room
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| refused(&self.metrics))?;
        let (respond, answer) = oneshot::channel();
        self.metrics.queued_rows.add(row_count as i64);
        let message = Message {
            rows: request.rows,
            row_count,
            deadline: request.deadline,
            enqueued_at: Instant::now(),
            explain: request.explain,
            respond,
            permit,
            // The span only carries the worker's debug lines about this
            // caller; capturing it costs a registry lookup per call.
            span: if tracing::enabled!(tracing::Level::DEBUG) {
                tracing::Span::current()
            } else {
                tracing::Span::none()
            },
        };
        self.queue.send(message).map_err(|_| {
            self.metrics.queued_rows.sub(row_count as i64);
            ServalError::Unavailable("the model version is shutting down; retry".into())
        })?;
        Ok(answer)
    }
}

impl<E: Send + 'static> Service<PredictRows> for Batcher<E> {
    type Response = Scored<E>;
    type Error = ServalError;
    type Future = BatchFuture<E>;

    /// Always ready: admission is decided in `call`, which fails fast when
    /// the queue is full instead of making callers wait for room.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ServalError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: PredictRows) -> BatchFuture<E> {
        self.submit(request)
    }
}
