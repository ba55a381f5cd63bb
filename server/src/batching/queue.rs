//! The batching rules as plain data: when to cut a batch and what goes in
//! it. No runtime, no clocks of its own; the worker asks, passing `now`.

use std::collections::VecDeque;
use std::time::Instant;

use super::BatchConfig;

/// Anything that waits in the queue.
pub trait Queued {
    fn rows(&self) -> usize;
    fn enqueued_at(&self) -> Instant;
}

/// What the worker should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Cut a batch now.
    Cut,
    /// Nothing to cut before this instant (unless something arrives or a
    /// batch finishes).
    WaitUntil(Instant),
    /// Nothing to do until something arrives or a batch finishes.
    Idle,
}

/// Requests waiting to be batched, oldest first.
#[derive(Debug)]
pub struct BatchQueue<T> {
    items: VecDeque<T>,
    rows: usize,
    config: BatchConfig,
}

impl<T: Queued> BatchQueue<T> {
    pub fn new(config: BatchConfig) -> Self {
        BatchQueue {
            items: VecDeque::new(),
            rows: 0,
            config,
        }
    }

    pub fn push(&mut self, item: T) {
        self.rows += item.rows();
        self.items.push_back(item);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Rows waiting.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether another batch may start while `in_flight` are computing.
    pub fn has_free_slot(&self, in_flight: usize) -> bool {
        in_flight < self.config.max_in_flight
    }

    /// The rules, given `in_flight` batches computing:
    /// - no free compute slot: wait for one;
    /// - the compute thread idle: cut now, since waiting would only add
    ///   latency (rows arriving meanwhile form the next batch);
    /// - a full batch waiting: cut now;
    /// - otherwise cut once the oldest row has waited `max_batch_delay`.
    pub fn decide(&self, now: Instant, in_flight: usize) -> Decision {
        let Some(oldest) = self.items.front() else {
            return Decision::Idle;
        };
        if !self.has_free_slot(in_flight) {
            return Decision::Idle;
        }
        if in_flight == 0 || self.rows >= self.config.max_batch_rows {
            return Decision::Cut;
        }
        let due = oldest.enqueued_at() + self.config.max_batch_delay;
        if now >= due {
            Decision::Cut
        } else {
            Decision::WaitUntil(due)
        }
    }

    /// Takes the oldest requests whose rows fit in `max_batch_rows` (always
    /// at least one: a larger request runs alone). Requests are never split.
    pub fn cut(&mut self) -> Vec<T> {
        let mut batch = Vec::new();
        let mut rows = 0;
        while let Some(next) = self.items.front() {
            if !batch.is_empty() && rows + next.rows() > self.config.max_batch_rows {
                break;
            }
            rows += next.rows();
            batch.push(self.items.pop_front().expect("front exists"));
        }
        self.rows -= rows;
        batch
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    struct Item(usize, Instant);

    impl Queued for Item {
        fn rows(&self) -> usize {
            self.0
        }
        fn enqueued_at(&self) -> Instant {
            self.1
        }
    }

    fn config(max_batch_rows: usize, max_in_flight: usize) -> BatchConfig {
        BatchConfig {
            max_batch_rows,
            max_batch_delay: Duration::from_millis(2),
            max_queued_rows: 1000,
            max_in_flight,
        }
    }

    #[test]
    fn an_idle_compute_thread_takes_rows_at_once() {
        let t0 = Instant::now();
        let mut queue = BatchQueue::new(config(8, 2));
        assert_eq!(queue.decide(t0, 0), Decision::Idle);
        queue.push(Item(1, t0));
        assert_eq!(queue.decide(t0, 0), Decision::Cut);
    }

    #[test]
    fn a_busy_slot_waits_for_company_up_to_the_delay() {
        let t0 = Instant::now();
        let mut queue = BatchQueue::new(config(8, 2));
        queue.push(Item(1, t0));
        let due = t0 + Duration::from_millis(2);
        assert_eq!(queue.decide(t0, 1), Decision::WaitUntil(due));
        assert_eq!(queue.decide(due, 1), Decision::Cut);
        // A full batch does not wait.
        queue.push(Item(7, t0));
        assert_eq!(queue.decide(t0, 1), Decision::Cut);
        // No free slot: wait for a batch to finish.
        assert_eq!(queue.decide(due, 2), Decision::Idle);
    }

    #[test]
    fn batches_hold_whole_requests_up_to_the_row_limit() {
        let t0 = Instant::now();
        let mut queue = BatchQueue::new(config(4, 1));
        for rows in [1, 2, 2, 9, 1] {
            queue.push(Item(rows, t0));
        }
        let sizes = |batch: Vec<Item>| batch.iter().map(|i| i.0).collect::<Vec<_>>();
        assert_eq!(sizes(queue.cut()), vec![1, 2]);
        assert_eq!(sizes(queue.cut()), vec![2]);
        assert_eq!(sizes(queue.cut()), vec![9]);
        assert_eq!(sizes(queue.cut()), vec![1]);
        assert!(queue.is_empty());
        assert_eq!(queue.rows(), 0);
    }

    #[test]
    fn one_row_batches_when_batching_is_off() {
        let t0 = Instant::now();
        let mut queue = BatchQueue::new(config(1, 1));
        queue.push(Item(1, t0));
        queue.push(Item(1, t0));
        assert_eq!(queue.cut().len(), 1);
        assert_eq!(queue.cut().len(), 1);
    }
}
