//! [`Lane`]: one version's queue on the shared compute pool. Callers push
//! their rows in (on their own task, under a short lock); when the queue
//! rules (`queue`) say a batch may be cut, the lane joins the pool's
//! rotation, and the compute thread whose turn it is cuts the batch, runs
//! the pass (`pass`) and answers the callers. While the version's passes
//! fill its compute slots, arrivals only queue, waking no thread; the lane
//! looks again when a pass ends, so rows that arrived during a pass form
//! the next batch.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use super::compute::Turn;
use super::message::Message;
use super::queue::{BatchQueue, Decision};
use super::schedule::Wake;
use super::{BatchConfig, BatchMetrics, BatchScorer, ComputePool};

/// One version's queue and scorer.
pub(super) struct Lane<S: BatchScorer> {
    state: Mutex<LaneState<S::Explanation>>,
    scorer: Arc<S>,
    metrics: BatchMetrics,
    pool: ComputePool,
    /// This lane, to put in the pool's rotation.
    me: Weak<Lane<S>>,
}

struct LaneState<E> {
    queue: BatchQueue<Message<E>>,
    /// This version's passes running now.
    in_flight: usize,
    /// In the pool's rotation now (at most once).
    ready: bool,
    /// The instant of the latest timer set for it, if it has not fired.
    timer: Option<Instant>,
    /// Held back from the pool (tests fill the queue first).
    held: bool,
}

impl<S: BatchScorer> Lane<S> {
    pub(super) fn new(
        scorer: Arc<S>,
        config: BatchConfig,
        pool: ComputePool,
        metrics: BatchMetrics,
        held: bool,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Lane {
            state: Mutex::new(LaneState {
                queue: BatchQueue::new(config),
                in_flight: 0,
                ready: false,
                timer: None,
                held,
            }),
            scorer,
            metrics,
            pool,
            me: me.clone(),
        })
    }

    fn state(&self) -> MutexGuard<'_, LaneState<S::Explanation>> {
        // Correctness: nothing panics while holding the lock (passes run
        // without it), so a poisoned lock still guards a whole queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a caller's rows (their room in the queue is already taken).
    /// With `quietly`, a sleeping compute thread is not woken for them: the
    /// result says whether the caller must see to it (with
    /// [`ComputePool::wake_if_needed`]).
    pub(super) fn push(&self, message: Message<S::Explanation>, quietly: bool) -> bool {
        // The message was stamped a moment ago: as good as reading the
        // clock again, for the one case (a timer to set) that needs it.
        let now = message.enqueued_at;
        let mut state = self.state();
        state.queue.push(message);
        self.schedule(&mut state, now, quietly)
    }

    /// Lets a held lane's queue be computed.
    pub(super) fn release(&self) {
        let mut state = self.state();
        state.held = false;
        self.schedule(&mut state, Instant::now(), false);
    }

    /// Puts the lane in the pool's rotation when the rules say a batch may
    /// be cut now, or sets a timer for when they will. With `quietly`, a
    /// sleeping thread is not woken: returns whether one should be.
    fn schedule(&self, state: &mut LaneState<S::Explanation>, now: Instant, quietly: bool) -> bool {
        if state.held || state.ready {
            return false;
        }
        match state.queue.decide(now, state.in_flight) {
            Decision::Cut => {
                if let Some(me) = self.me.upgrade() {
                    state.ready = true;
                    if quietly {
                        return self.pool.ready_quietly(me, now);
                    }
                    self.pool.ready(me);
                }
            }
            Decision::WaitUntil(at) if state.timer != Some(at) => {
                if let Some(me) = self.me.upgrade() {
                    state.timer = Some(at);
                    self.pool.at(at, me);
                }
            }
            Decision::WaitUntil(_) | Decision::Idle => {}
        }
        false
    }
}

impl<S: BatchScorer> Turn for Lane<S> {
    fn take_turn(self: Arc<Self>, wake: Wake) {
        let batch = {
            let mut state = self.state();
            match wake {
                Wake::Ready => state.ready = false,
                Wake::Timer(at) if state.timer == Some(at) => state.timer = None,
                Wake::Timer(_) => {}
            }
            let now = Instant::now();
            if state.held || state.queue.decide(now, state.in_flight) != Decision::Cut {
                self.schedule(&mut state, now, false);
                return;
            }
            let batch = state.queue.cut();
            state.in_flight += 1;
            // With room for more passes of this version, the rest may go
            // to another thread meanwhile.
            self.schedule(&mut state, now, false);
            batch
        };
        super::pass::run(&*self.scorer, &self.metrics, batch);
        let mut state = self.state();
        state.in_flight -= 1;
        self.schedule(&mut state, Instant::now(), false);
    }
}
