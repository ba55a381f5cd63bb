//! One batch's forward pass, on the compute thread that cut it: callers
//! who left or ran out of time are dropped, the rest are stacked into one
//! input, scored (and, for rows whose callers asked, explained) in ONE
//! pass, and each caller gets its own rows back. A failed or panicking pass
//! fails only its own callers; the thread goes on. With OTLP export on,
//! each caller's queue wait and forward pass become spans (`otlp`).

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use tokio::sync::oneshot;

use super::message::{Message, Scored};
use super::{BatchMetrics, BatchScorer};
use crate::error::ServalError;
use crate::otlp::{self, BatchTimes, BatchedCall};

/// Who waits for which rows of a batch.
struct Responder<E> {
    respond: oneshot::Sender<Result<Scored<E>, ServalError>>,
    rows: usize,
    explain: bool,
    /// The caller's own input buffer, which comes back to it holding its
    /// scores (a row has at least one value, so they fit without growing
    /// it). Performance: it was allocated on the caller's runtime thread;
    /// handing it back means no allocation for the scores, and no buffer is
    /// freed on a thread other than the one that allocated it (mimalloc's
    /// cross-thread frees showed as ~1 µs a call).
    buffer: Vec<f32>,
    /// The caller's span (`Span::none()` unless logged at DEBUG or
    /// exported), and when its rows joined the queue.
    span: tracing::Span,
    enqueued_at: Instant,
}

/// A batch's scores, and the explanations of its rows whose callers asked.
type BatchOutput<E> = (Vec<f32>, Vec<E>);

/// Runs `batch` and answers its callers.
pub(super) fn run<S: BatchScorer>(scorer: &S, metrics: &BatchMetrics, batch: Vec<Message<S::Explanation>>) {
    let cut_at = Instant::now();
    let mut responders = admit(metrics, batch, cut_at);
    if responders.is_empty() {
        return;
    }
    let rows: usize = responders.iter().map(|r| r.rows).sum();
    metrics.batches.inc();
    metrics.batch_rows.observe(rows as f64);
    // Read only when exported: the clock is not read for nothing.
    let exporting = otlp::is_exporting();
    let pass_started = exporting.then(Instant::now);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| compute(scorer, &responders)))
        .unwrap_or_else(|_| Err("the forward pass panicked".to_string()));
    let Some(pass_started) = pass_started else {
        answer(responders, outcome);
        return;
    };
    let times = BatchTimes {
        cut_at,
        pass_started,
        pass_ended: Instant::now(),
    };
    let calls: Vec<BatchedCall> = responders
        .iter_mut()
        .map(|r| BatchedCall {
            span: std::mem::replace(&mut r.span, tracing::Span::none()),
            enqueued_at: r.enqueued_at,
            rows: r.rows,
        })
        .collect();
    let failed = outcome.is_err();
    answer(responders, outcome);
    // After the answers: the callers do not wait for their spans.
    otlp::record_batch(calls, &times, failed);
}

/// Takes the batch out of the queue's accounts and drops callers who left
/// or whose deadline passed.
fn admit<E>(metrics: &BatchMetrics, batch: Vec<Message<E>>, now: Instant) -> Vec<Responder<E>> {
    let mut responders = Vec::with_capacity(batch.len());
    for message in batch {
        metrics.queued_rows.sub(message.row_count as i64);
        // Correctness: the permit is released here, as the rows leave the
        // queue, whatever happens to them next.
        drop(message.permit);
        if message.respond.is_closed() {
            metrics.dropped.inc();
            message
                .span
                .in_scope(|| tracing::debug!("caller left before its batch ran"));
            continue;
        }
        if message.deadline.is_some_and(|deadline| deadline <= now) {
            metrics.dropped.inc();
            message
                .span
                .in_scope(|| tracing::debug!("deadline passed before its batch ran"));
            let _ = message.respond.send(Err(ServalError::DeadlineExceeded(
                "the call's deadline passed while it waited for a batch".into(),
            )));
            continue;
        }
        metrics
            .queue_wait
            .observe(now.duration_since(message.enqueued_at).as_secs_f64());
        responders.push(Responder {
            respond: message.respond,
            rows: message.row_count,
            explain: message.explain,
            buffer: message.rows,
            span: message.span,
            enqueued_at: message.enqueued_at,
        });
    }
    responders
}

/// ONE forward pass over every responder's rows (a lone caller's rows are
/// scored where they lie), plus one explanation pass over the rows of
/// callers who asked.
fn compute<S: BatchScorer>(
    scorer: &S,
    responders: &[Responder<S::Explanation>],
) -> Result<BatchOutput<S::Explanation>, String> {
    let stack = |wanted: &dyn Fn(&Responder<S::Explanation>) -> bool| {
        let mut rows = Vec::with_capacity(
            responders
                .iter()
                .filter(|r| wanted(r))
                .map(|r| r.buffer.len())
                .sum(),
        );
        for responder in responders.iter().filter(|r| wanted(r)) {
            rows.extend_from_slice(&responder.buffer);
        }
        rows
    };
    let scores = match responders {
        [alone] => scorer.score(&alone.buffer),
        _ => scorer.score(&stack(&|_| true)),
    }
    .map_err(|e| e.to_string())?;
    let explanations = match responders {
        _ if responders.iter().all(|r| !r.explain) => Vec::new(),
        [alone] => scorer.explain(&alone.buffer).map_err(|e| e.to_string())?,
        _ => scorer
            .explain(&stack(&|r| r.explain))
            .map_err(|e| e.to_string())?,
    };
    Ok((scores, explanations))
}

/// Answers each caller with its own rows; a failed pass fails only this
/// batch's callers.
fn answer<E>(responders: Vec<Responder<E>>, outcome: Result<BatchOutput<E>, String>) {
    let total: usize = responders.iter().map(|r| r.rows).sum();
    let explained: usize = responders.iter().filter(|r| r.explain).map(|r| r.rows).sum();
    let outcome = match outcome {
        Ok((scores, explanations)) if scores.len() == total && explanations.len() == explained => {
            Ok((scores, explanations))
        }
        Ok((scores, explanations)) => Err(format!(
            "the forward pass returned {} scores and {} explanations for {total} rows ({explained} to explain)",
            scores.len(),
            explanations.len()
        )),
        Err(error) => Err(error),
    };
    match outcome {
        Ok((scores, explanations)) => {
            let mut rest = scores.as_slice();
            let mut explanations = explanations.into_iter();
            for responder in responders {
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
            for responder in responders {
                let _ = responder.respond.send(Err(ServalError::Internal(format!(
                    "forward pass failed: {error}"
                ))));
            }
        }
    }
}
