//! [`Batcher`]: the cloneable handle callers use. `call` admits a request
//! to its version's queue (or refuses it at once) and returns a
//! [`BatchFuture`]; the queue's batches run on the shared compute pool.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::{Semaphore, oneshot};
use tower::Service;

use super::lane::Lane;
use super::message::{Message, Scored};
use super::{BatchConfig, BatchFuture, BatchMetrics, BatchScorer, ComputePool, PredictRows};
use crate::error::ServalError;

/// Where a queued caller's answer comes.
type Answer<E> = oneshot::Receiver<Result<Scored<E>, ServalError>>;

/// Where a [`Batcher`] queues rows: its version's lane, whatever the
/// scorer's type.
trait Queue<E>: Send + Sync {
    /// See [`Lane::push`].
    fn push(&self, message: Message<E>, quietly: bool) -> bool;
}

impl<S: BatchScorer> Queue<S::Explanation> for Lane<S> {
    fn push(&self, message: Message<S::Explanation>, quietly: bool) -> bool {
        Lane::push(self, message, quietly)
    }
}

/// Handle to one version's batching queue; clones share the queue. `E` is
/// what an explanation of one row is.
pub struct Batcher<E> {
    queue: Arc<dyn Queue<E>>,
    pool: ComputePool,
    room: Arc<Semaphore>,
    width: usize,
    config: BatchConfig,
    metrics: BatchMetrics,
}

impl<E> Clone for Batcher<E> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
            pool: self.pool.clone(),
            room: self.room.clone(),
            width: self.width,
            config: self.config,
            metrics: self.metrics.clone(),
        }
    }
}

/// Holds a new queue back from the compute threads until released, so
/// that tests can fill it first. Dropping it releases the queue too.
pub struct Hold {
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl Hold {
    /// Lets the compute threads take the queue's batches.
    pub fn release(mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl<E: Send + 'static> Batcher<E> {
    /// A queue for `scorer` on `pool`'s compute threads.
    pub fn new<S: BatchScorer<Explanation = E>>(
        scorer: Arc<S>,
        config: BatchConfig,
        pool: ComputePool,
        metrics: BatchMetrics,
    ) -> Batcher<E> {
        Self::make(scorer, config, pool, metrics, false).0
    }

    /// A queue held back from the compute threads until the [`Hold`] is
    /// released: calls queue meanwhile, and are answered after.
    pub fn held<S: BatchScorer<Explanation = E>>(
        scorer: Arc<S>,
        config: BatchConfig,
        pool: ComputePool,
        metrics: BatchMetrics,
    ) -> (Batcher<E>, Hold) {
        let (batcher, lane) = Self::make(scorer, config, pool, metrics, true);
        let hold = Hold {
            release: Some(Box::new(move || lane.release())),
        };
        (batcher, hold)
    }

    fn make<S: BatchScorer<Explanation = E>>(
        scorer: Arc<S>,
        config: BatchConfig,
        pool: ComputePool,
        metrics: BatchMetrics,
        held: bool,
    ) -> (Batcher<E>, Arc<Lane<S>>) {
        let config = BatchConfig {
            max_batch_rows: config.max_batch_rows.max(1),
            max_in_flight: config.max_in_flight.max(1),
            ..config
        };
        let width = scorer.width();
        let lane = Lane::new(scorer, config, pool.clone(), metrics.clone(), held);
        let batcher = Batcher {
            queue: lane.clone(),
            pool,
            room: Arc::new(Semaphore::new(config.max_queued_rows)),
            width,
            config,
            metrics,
        };
        (batcher, lane)
    }

    pub fn metrics(&self) -> &BatchMetrics {
        &self.metrics
    }

    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// Rows queued or in a pass now (holding room in the queue).
    pub fn queued_rows(&self) -> usize {
        self.config
            .max_queued_rows
            .saturating_sub(self.room.available_permits())
    }

    /// Queues `request` (or refuses it at once) without needing `&mut`:
    /// what `Service::call` does, for callers sharing one handle.
    pub fn submit(&self, request: PredictRows) -> BatchFuture<E> {
        match self.admit(request, false) {
            Ok((answer, _)) => BatchFuture::Queued(answer),
            Err(error) => BatchFuture::Refused(Some(error)),
        }
    }

    /// [`Batcher::submit`], but when the rows need a sleeping compute
    /// thread woken, the caller is handed that job ([`WakeLater`]) to do
    /// once its runtime thread has run what else is ready: the other calls
    /// it decoded meanwhile then join the same batch and the same wake.
    ///
    /// Performance: measured at 256 one-row callers on 2 cores, waking the
    /// compute thread at once for each call that found it asleep made
    /// batches of ~4 rows and cost ~0.6 context switches a call (the woken
    /// thread preempts the runtime thread that woke it).
    ///
    /// The wake is put off at most `max_batch_delay`: later calls to this
    /// version that find it overdue wake a thread themselves (under
    /// overload, the caller's task may wait behind thousands of others
    /// before it runs again). With a delay of 0, the wake is never put off.
    pub fn submit_deferring_wake(&self, request: PredictRows) -> (BatchFuture<E>, Option<WakeLater>) {
        let defer = !self.config.max_batch_delay.is_zero();
        match self.admit(request, defer) {
            Ok((answer, wake)) => (
                BatchFuture::Queued(answer),
                wake.then(|| WakeLater(Some(self.pool.clone()))),
            ),
            Err(error) => (BatchFuture::Refused(Some(error)), None),
        }
    }

    fn admit(&self, request: PredictRows, deferring_wake: bool) -> Result<(Answer<E>, bool), ServalError> {
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
            // The span carries the compute thread's debug lines about this
            // caller, and its exported queue and forward-pass spans;
            // capturing it costs a registry lookup per call.
            span: if tracing::enabled!(tracing::Level::DEBUG) || crate::otlp::is_exporting() {
                tracing::Span::current()
            } else {
                tracing::Span::none()
            },
        };
        let now = message.enqueued_at;
        let wake = self.queue.push(message, deferring_wake);
        if deferring_wake && !wake {
            self.pool.wake_if_overdue(now, self.config.max_batch_delay);
        }
        Ok((answer, wake))
    }
}

/// A compute thread to wake for queued rows: now, or at the latest when
/// dropped (a caller that leaves first still wakes it, so that rows queued
/// behind its own are not left waiting).
#[must_use = "the rows wait until a compute thread is woken"]
pub struct WakeLater(Option<ComputePool>);

impl WakeLater {
    pub fn now(mut self) {
        if let Some(pool) = self.0.take() {
            pool.wake_if_needed();
        }
    }
}

impl Drop for WakeLater {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            pool.wake_if_needed();
        }
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
