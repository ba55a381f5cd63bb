//! [`Worker`]: the loop that owns one version's queue. It gathers arrivals,
//! asks the queue rules when to cut, stacks each batch into one input, runs
//! ONE forward pass per batch on a compute thread, and hands each caller
//! its own rows back.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::message::{Message, Scored};
use super::queue::{BatchQueue, Decision};
use super::{BatchConfig, BatchMetrics, BatchScorer, ComputePool};
use crate::error::ServalError;

/// Who waits for which rows of a batch.
struct Responder<E> {
    respond: oneshot::Sender<Result<Scored<E>, ServalError>>,
    rows: usize,
    explain: bool,
    /// The caller's own input buffer, which comes back to it holding its
    /// scores (a row has at least one value, so they fit without growing it).
    /// Performance: the buffer was allocated on the caller's runtime
    /// thread; handing it back means no allocation for the scores, and
    /// neither buffer is freed on a thread other than the one that
    /// allocated it (mimalloc's cross-thread frees showed as ~1 µs a call).
    buffer: Vec<f32>,
}

/// A batch's scores, and the explanations of its rows whose callers asked.
type BatchOutput<E> = (Vec<f32>, Vec<E>);

/// A batch handed to a compute thread, and who waits for which rows.
struct Running<E> {
    responders: Vec<Responder<E>>,
    output: oneshot::Receiver<Result<BatchOutput<E>, String>>,
}

pub struct Worker<S: BatchScorer> {
    inbox: mpsc::UnboundedReceiver<Message<S::Explanation>>,
    queue: BatchQueue<Message<S::Explanation>>,
    scorer: Arc<S>,
    pool: ComputePool,
    metrics: BatchMetrics,
}

impl<S: BatchScorer> Worker<S> {
    pub(super) fn new(
        inbox: mpsc::UnboundedReceiver<Message<S::Explanation>>,
        scorer: Arc<S>,
        config: BatchConfig,
        pool: ComputePool,
        metrics: BatchMetrics,
    ) -> Self {
        Worker {
            inbox,
            queue: BatchQueue::new(config),
            scorer,
            pool,
            metrics,
        }
    }

    /// Runs until every [`Batcher`](super::Batcher) handle is gone and all
    /// queued work is answered.
    pub async fn run(mut self) {
        let mut running = FuturesUnordered::new();
        let mut open = true;
        loop {
            open &= self.take_arrivals();
            let mut wake_at = None;
            loop {
                match self.queue.decide(Instant::now(), running.len()) {
                    Decision::Cut => {
                        let batch = self.queue.cut();
                        if let Some(run) = self.start(batch) {
                            running.push(finish(run));
                        }
                    }
                    Decision::WaitUntil(at) => {
                        wake_at = Some(at);
                        break;
                    }
                    Decision::Idle => break,
                }
            }
            if !open && self.queue.is_empty() && running.is_empty() {
                return;
            }
            // Arrivals can only change the decision while a compute slot is
            // free. While none is, the inbox is not listened to, so callers
            // queue their rows without waking this thread (measured at 256
            // callers: that wake was ~4 % of the server's CPU); the rows are
            // taken when a batch finishes.
            let listening = open && self.queue.has_free_slot(running.len());
            tokio::select! {
                arrival = self.inbox.recv(), if listening => match arrival {
                    Some(message) => self.queue.push(message),
                    None => open = false,
                },
                Some(()) = running.next(), if !running.is_empty() => {}
                () = sleep_until(wake_at), if wake_at.is_some() => {}
            }
        }
    }

    /// Moves every waiting arrival into the queue, so a burst forms one
    /// batch. False once every handle is gone and the inbox is empty.
    fn take_arrivals(&mut self) -> bool {
        loop {
            match self.inbox.try_recv() {
                Ok(message) => self.queue.push(message),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Drops callers who left or whose deadline passed, stacks the rest into
    /// one input and submits one forward pass (plus one explanation pass
    /// over the rows of callers who asked for explanations).
    fn start(&self, batch: Vec<Message<S::Explanation>>) -> Option<Running<S::Explanation>> {
        let now = Instant::now();
        let mut rows = Vec::with_capacity(batch.iter().map(|m| m.rows.len()).sum());
        let mut explain_rows = Vec::new();
        let mut responders = Vec::with_capacity(batch.len());
        for message in batch {
            self.metrics.queued_rows.sub(message.row_count as i64);
            // Correctness: the permit is released here, as the rows leave
            // the queue, whatever happens to them next.
            drop(message.permit);
            if message.respond.is_closed() {
                self.metrics.dropped.inc();
                message
                    .span
                    .in_scope(|| tracing::debug!("caller left before its batch ran"));
                continue;
            }
            if message.deadline.is_some_and(|deadline| deadline <= now) {
                self.metrics.dropped.inc();
                message
                    .span
                    .in_scope(|| tracing::debug!("deadline passed before its batch ran"));
                let _ = message.respond.send(Err(ServalError::DeadlineExceeded(
                    "the call's deadline passed while it waited for a batch".into(),
                )));
                continue;
            }
            self.metrics
                .queue_wait
                .observe(now.duration_since(message.enqueued_at).as_secs_f64());
            rows.extend_from_slice(&message.rows);
            if message.explain {
                explain_rows.extend_from_slice(&message.rows);
            }
            responders.push(Responder {
                respond: message.respond,
                rows: message.row_count,
                explain: message.explain,
                buffer: message.rows,
            });
        }
        if responders.is_empty() {
            return None;
        }
        let row_count: usize = responders.iter().map(|r| r.rows).sum();
        self.metrics.batches.inc();
        self.metrics.batch_rows.observe(row_count as f64);

        let (send_output, output) = oneshot::channel();
        let scorer = self.scorer.clone();
        let submitted = self.pool.submit(move || {
            let compute = || -> Result<BatchOutput<S::Explanation>, String> {
                let scores = scorer.score(&rows).map_err(|e| e.to_string())?;
                let explanations = if explain_rows.is_empty() {
                    Vec::new()
                } else {
                    scorer.explain(&explain_rows).map_err(|e| e.to_string())?
                };
                Ok((scores, explanations))
            };
            let result = std::panic::catch_unwind(AssertUnwindSafe(compute))
                .unwrap_or_else(|_| Err("the forward pass panicked".to_string()));
            let _ = send_output.send(result);
        });
        if !submitted {
            for responder in responders {
                let _ = responder.respond.send(Err(ServalError::Unavailable(
                    "the compute threads have stopped".into(),
                )));
            }
            return None;
        }
        Some(Running { responders, output })
    }
}

/// Waits for a batch's scores and answers each caller with its own rows;
/// a failed pass fails only this batch's callers.
async fn finish<E>(run: Running<E>) {
    let total: usize = run.responders.iter().map(|r| r.rows).sum();
    let explained: usize = run.responders.iter().filter(|r| r.explain).map(|r| r.rows).sum();
    let outcome = match run.output.await {
        Ok(Ok((scores, explanations))) if scores.len() == total && explanations.len() == explained => {
            Ok((scores, explanations))
        }
        Ok(Ok((scores, explanations))) => Err(format!(
            "the forward pass returned {} scores and {} explanations for {total} rows ({explained} to explain)",
            scores.len(),
            explanations.len()
        )),
        Ok(Err(error)) => Err(error),
        Err(_) => Err("the compute thread stopped".to_string()),
    };
    match outcome {
        Ok((scores, explanations)) => {
            let mut rest = scores.as_slice();
            let mut explanations = explanations.into_iter();
            for responder in run.responders {
                let (mine, others) = rest.split_at(responder.rows);
                rest = others;
                let explanations = if responder.explain {
                    explanations.by_ref().take(responder.rows).collect()
                } else {
                    Vec::new()
                };
                let mut scores = responder.buffer;
                scores.clear();
                scores.extend_from_slice(mine);
                let _ = responder.respond.send(Ok(Scored { scores, explanations }));
            }
        }
        Err(error) => {
            tracing::error!(%error, rows = total, "forward pass failed");
            for responder in run.responders {
                let _ = responder.respond.send(Err(ServalError::Internal(format!(
                    "forward pass failed: {error}"
                ))));
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}
