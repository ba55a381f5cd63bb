//! Reading a Train upload after its spec: the CSV chunks gathered up to the
//! byte limit, ended with DEADLINE_EXCEEDED when the client sends no data
//! for the idle timeout or takes longer than the whole-upload bound. It
//! holds no training slot (see `train.rs` for when one is taken).

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use serval_proto::v1 as pb;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::{Status, Streaming};

use super::invalid;
use crate::error::ServalError;
use crate::spool::{Spool, Spooled};

/// How long and how large one upload may be.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    /// Bytes one upload may hold.
    pub max_bytes: usize,
    /// Longest time without data before the upload is ended.
    pub idle_timeout: Duration,
    /// Longest a whole upload may take; `None` for no bound.
    pub max_duration: Option<Duration>,
    /// Bytes of an upload held in memory; beyond them it is written to a
    /// temporary file (an eighth of --training-memory).
    pub spill_after: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_bytes: 2 << 30,
            idle_timeout: Duration::from_secs(30),
            max_duration: None,
            spill_after: (serval_model::training::DEFAULT_TRAINING_MEMORY / 8) as usize,
        }
    }
}

/// One upload's place among those in progress, counted in the uploads
/// gauge while it is held.
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
    gauge: IntGauge,
}

impl UploadSlot {
    /// A free slot of `slots`, or `None` when every one is taken.
    pub fn take(slots: &Arc<Semaphore>, gauge: &IntGauge) -> Option<Self> {
        let permit = slots.clone().try_acquire_owned().ok()?;
        gauge.inc();
        Some(UploadSlot {
            _permit: permit,
            gauge: gauge.clone(),
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The data that follows the spec on `stream`, once the client ends the
/// stream: in memory, or in a temporary file past `limits.spill_after`.
pub async fn gather(
    stream: &mut Streaming<pb::TrainRequest>,
    limits: &UploadLimits,
) -> Result<Spooled, Status> {
    let bound = limits.max_duration.map(|longest| Instant::now() + longest);
    let mut idle_until = Instant::now() + limits.idle_timeout;
    let mut csv = Spool::new(limits.spill_after);
    loop {
        let message = tokio::select! {
            message = stream.message() => message?,
            () = tokio::time::sleep_until(idle_until) => {
                return Err(ended(format!(
                    "the upload sent no data for {} (the server's --upload-idle-timeout)",
                    humantime::format_duration(limits.idle_timeout)
                ), csv.len()));
            }
            () = sleep_until_bound(bound) => {
                return Err(ended(format!(
                    "the upload took longer than {} (the server's --max-upload-duration)",
                    humantime::format_duration(limits.max_duration.unwrap_or_default())
                ), csv.len()));
            }
        };
        let Some(message) = message else {
            return Ok(csv.finish().await?);
        };
        match message.payload {
            Some(pb::train_request::Payload::CsvChunk(chunk)) => {
                if csv.len() + chunk.len() as u64 > limits.max_bytes as u64 {
                    return Err(invalid(format!(
                        "the CSV exceeds {} bytes, the server's upload limit",
                        limits.max_bytes
                    )));
                }
                if !chunk.is_empty() {
                    idle_until = Instant::now() + limits.idle_timeout;
                }
                csv.write(&chunk).await?;
            }
            Some(pb::train_request::Payload::Spec(_)) => {
                return Err(invalid("only the first message may carry a TrainSpec"));
            }
            None => return Err(invalid("a message carried neither a spec nor a csv_chunk")),
        }
    }
}

/// The error that ends an upload the server gave up on.
fn ended(why: String, bytes: u64) -> Status {
    tracing::warn!(bytes, "{why}; upload ended");
    ServalError::DeadlineExceeded(format!(
        "{why}: the upload was ended after {bytes} bytes and nothing was trained"
    ))
    .into()
}

async fn sleep_until_bound(bound: Option<Instant>) {
    match bound {
        Some(bound) => tokio::time::sleep_until(bound).await,
        None => std::future::pending().await,
    }
}
