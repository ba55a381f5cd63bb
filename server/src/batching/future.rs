//! [`BatchFuture`]: what a caller awaits — its own scores, or why not.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::Scored;
use crate::error::ServalError;

/// Resolves to the caller's scores (and explanations, when asked), in the
/// order of its rows.
#[derive(Debug)]
pub enum BatchFuture<E> {
    /// Refused before queueing (full queue, bad shape, worker gone).
    Refused(Option<ServalError>),
    /// Queued; the worker answers on the channel.
    Queued(oneshot::Receiver<Result<Scored<E>, ServalError>>),
}

impl<E> Future for BatchFuture<E> {
    type Output = Result<Scored<E>, ServalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            BatchFuture::Refused(error) => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| ServalError::Internal("batch future polled after completion".into())))),
            BatchFuture::Queued(answer) => Pin::new(answer).poll(cx).map(|answer| {
                answer.unwrap_or_else(|_| {
                    Err(ServalError::Unavailable(
                        "the model version was unloaded before answering; retry".into(),
                    ))
                })
            }),
        }
    }
}
