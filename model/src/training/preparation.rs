//! What a training's preparation tells its caller while it reads the data
//! (the phase, rows read so far), and the cancel flag it checks between
//! chunks. The preparation itself is in `pipeline.rs` and `streamed.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::error::ModelError;

/// The job exists and its preparation is about to start (reported by the
/// server that runs it, not by the preparation).
pub const STARTING: &str = "starting";
/// Every training first: the data's in-memory size estimated, to choose
/// between holding and streaming it.
pub const SIZING: &str = "sizing the data";
/// The data held in memory: read, typed, folded and encoded at once.
pub const READING: &str = "reading";
/// Streamed data: rows counted (Parquet's from its footers).
pub const COUNTING: &str = "counting rows";
/// Streamed data: the encoder's seeded sample read.
pub const SAMPLING: &str = "sampling for the encoder";
/// Streamed data: the encoder fitted on the sample.
pub const FITTING: &str = "fitting the encoder";
/// Streamed data: every row encoded into the row store.
pub const ENCODING: &str = "encoding rows";

/// Rows between two checks of the cancel flag.
const CHECK_EVERY_ROWS: u64 = 4096;
/// Rows between two reports within a phase.
const REPORT_EVERY_ROWS: u64 = 65_536;

/// Where a preparation stands.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparationProgress {
    pub phase: &'static str,
    /// Data rows read so far in this phase (0 as it starts).
    pub rows_read: u64,
    /// Data rows in all, once counted (0 before).
    pub rows_total: u64,
    /// Since the preparation started.
    pub elapsed_seconds: f64,
}

/// The caller's view of a preparation: reports as phases start and every
/// [`REPORT_EVERY_ROWS`] rows within one, and a cancel flag checked as each
/// phase starts and every [`CHECK_EVERY_ROWS`] rows.
pub struct PreparationWatch<'a> {
    cancel: &'a AtomicBool,
    report: Box<dyn FnMut(&PreparationProgress) + 'a>,
    started: Instant,
    phase: &'static str,
    rows_total: u64,
    next_check: u64,
    next_report: u64,
}

static NEVER_CANCELLED: AtomicBool = AtomicBool::new(false);

impl<'a> PreparationWatch<'a> {
    pub fn new(cancel: &'a AtomicBool, report: impl FnMut(&PreparationProgress) + 'a) -> Self {
        PreparationWatch {
            cancel,
            report: Box::new(report),
            started: Instant::now(),
            phase: READING,
            rows_total: 0,
            next_check: 0,
            next_report: 0,
        }
    }

    /// A preparation nobody follows or cancels.
    pub fn unwatched() -> PreparationWatch<'static> {
        PreparationWatch::new(&NEVER_CANCELLED, |_| {})
    }

    /// `Cancelled` once the caller has asked.
    pub(super) fn check(&self) -> Result<(), ModelError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(ModelError::Cancelled);
        }
        Ok(())
    }

    /// A phase starts, over `rows_total` rows when known (else 0).
    pub(super) fn phase(&mut self, phase: &'static str, rows_total: u64) -> Result<(), ModelError> {
        self.check()?;
        self.phase = phase;
        self.rows_total = rows_total;
        self.next_check = CHECK_EVERY_ROWS;
        self.next_report = REPORT_EVERY_ROWS;
        self.send(0);
        Ok(())
    }

    /// `rows_read` rows of the phase are read: reported and checked when
    /// enough have gone by since the last time.
    pub(super) fn rows(&mut self, rows_read: u64) -> Result<(), ModelError> {
        if rows_read < self.next_check {
            return Ok(());
        }
        self.next_check = rows_read + CHECK_EVERY_ROWS;
        self.check()?;
        if rows_read >= self.next_report {
            self.next_report = rows_read + REPORT_EVERY_ROWS;
            self.send(rows_read);
        }
        Ok(())
    }

    fn send(&mut self, rows_read: u64) {
        let progress = PreparationProgress {
            phase: self.phase,
            rows_read,
            rows_total: self.rows_total,
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
        };
        (self.report)(&progress);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_report_as_they_start_and_rows_now_and_then_until_cancelled() {
        let cancel = AtomicBool::new(false);
        let mut seen = Vec::new();
        {
            let mut watch = PreparationWatch::new(&cancel, |p: &PreparationProgress| {
                seen.push((p.phase, p.rows_read, p.rows_total))
            });
            watch.phase(ENCODING, 200_000).unwrap();
            for rows in (0..=140_000).step_by(1000) {
                watch.rows(rows).unwrap();
            }
            cancel.store(true, Ordering::Relaxed);
            watch.rows(140_100).unwrap(); // not yet checked again
            assert!(matches!(watch.rows(150_000), Err(ModelError::Cancelled)));
            assert!(matches!(watch.phase(FITTING, 0), Err(ModelError::Cancelled)));
        }
        assert_eq!(
            seen,
            [
                (ENCODING, 0, 200_000),
                (ENCODING, 70_000, 200_000),
                (ENCODING, 140_000, 200_000)
            ]
        );
    }
}
