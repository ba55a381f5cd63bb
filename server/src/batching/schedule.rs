//! The compute threads' rotation as plain data: which version's queue (or
//! one-off job) a free compute thread takes next, and when a thread with
//! nothing to do must wake. No threads, locks or clocks of its own; the
//! pool asks, passing `now`, under its lock.
//!
//! Fairness: work is taken in the order it became ready, one batch per
//! turn, and a queue that still has rows after its turn joins the back of
//! the rotation (a version's queue rejoins when its pass ends, or, with
//! passes of one version side by side, when its batch is cut). So a lone
//! call for one version waits for at most the batches already running and
//! one batch of each version ahead of it, however busy they are.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

/// Why an item got its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// It was made ready.
    Ready,
    /// Its timer, set for this instant, came due.
    Timer(Instant),
}

/// What a compute thread should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// Take this item's turn.
    Run(T, Wake),
    /// Nothing to do: sleep until this instant (a timer) or, without one,
    /// until woken.
    Sleep(Option<Instant>),
    /// The pool is stopping and nothing is left.
    Stop,
}

/// Items ready for a turn, oldest first, and items waiting for a time.
#[derive(Debug)]
pub struct Schedule<T> {
    ready: VecDeque<(T, Wake)>,
    timers: BinaryHeap<Timer<T>>,
    next_timer: u64,
    /// Threads asleep for lack of work.
    idle: usize,
    stopping: bool,
}

impl<T> Default for Schedule<T> {
    fn default() -> Self {
        Schedule {
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            next_timer: 0,
            idle: 0,
            stopping: false,
        }
    }
}

impl<T> Schedule<T> {
    /// Puts `item` at the back of the rotation. True when a sleeping thread
    /// should be woken for it.
    pub fn ready(&mut self, item: T) -> bool {
        self.ready.push_back((item, Wake::Ready));
        self.idle > 0
    }

    /// Gives `item` a turn at `at`. True when a sleeping thread should be
    /// woken to sleep less (it is the earliest timer now).
    pub fn at(&mut self, at: Instant, item: T) -> bool {
        let earliest = self.timers.peek().is_none_or(|first| at < first.at);
        self.timers.push(Timer {
            at,
            order: self.next_timer,
            item,
        });
        self.next_timer += 1;
        self.idle > 0 && earliest
    }

    /// The next turn at `now`: timers that came due join the back of the
    /// rotation first. Once stopping, every timer counts as due, so that
    /// nothing queued is left behind.
    pub fn next(&mut self, now: Instant) -> Next<T> {
        while self
            .timers
            .peek()
            .is_some_and(|first| first.at <= now || self.stopping)
        {
            let timer = self.timers.pop().expect("peeked");
            self.ready.push_back((timer.item, Wake::Timer(timer.at)));
        }
        if let Some((item, wake)) = self.ready.pop_front() {
            return Next::Run(item, wake);
        }
        if self.stopping {
            return Next::Stop;
        }
        Next::Sleep(self.timers.peek().map(|first| first.at))
    }

    /// Whether a sleeping thread should be woken: something is ready and
    /// nobody is awake to take it.
    pub fn wants_a_thread(&self) -> bool {
        self.idle > 0 && !self.ready.is_empty()
    }

    /// A thread goes to sleep (`true`) or wakes (`false`).
    pub fn set_sleeping(&mut self, sleeping: bool) {
        if sleeping {
            self.idle += 1;
        } else {
            self.idle = self.idle.saturating_sub(1);
        }
    }

    /// No new work is coming: threads finish what is queued, then stop.
    pub fn stop(&mut self) {
        self.stopping = true;
    }
}

/// A turn promised at an instant; ordered earliest first (and, at the same
/// instant, in the order promised).
#[derive(Debug)]
struct Timer<T> {
    at: Instant,
    order: u64,
    item: T,
}

impl<T> PartialEq for Timer<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl<T> Eq for Timer<T> {}

impl<T> PartialOrd for Timer<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Timer<T> {
    /// Reversed, so that the max-heap yields the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ready_items_take_turns_in_order_and_a_requeued_one_goes_to_the_back() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        assert_eq!(schedule.next(t0), Next::Sleep(None));
        schedule.ready("busy");
        schedule.ready("lone");
        assert_eq!(schedule.next(t0), Next::Run("busy", Wake::Ready));
        // The busy queue still has rows after its turn: it rejoins behind
        // the lone call, which therefore waits for one batch at most.
        schedule.ready("busy");
        assert_eq!(schedule.next(t0), Next::Run("lone", Wake::Ready));
        assert_eq!(schedule.next(t0), Next::Run("busy", Wake::Ready));
        assert_eq!(schedule.next(t0), Next::Sleep(None));
    }

    #[test]
    fn timers_come_due_in_time_order_behind_what_is_ready() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        schedule.at(t0 + ms(5), "late");
        schedule.at(t0 + ms(2), "early");
        assert_eq!(schedule.next(t0), Next::Sleep(Some(t0 + ms(2))));
        schedule.ready("now");
        assert_eq!(schedule.next(t0 + ms(3)), Next::Run("now", Wake::Ready));
        assert_eq!(
            schedule.next(t0 + ms(3)),
            Next::Run("early", Wake::Timer(t0 + ms(2)))
        );
        assert_eq!(schedule.next(t0 + ms(3)), Next::Sleep(Some(t0 + ms(5))));
        assert_eq!(
            schedule.next(t0 + ms(9)),
            Next::Run("late", Wake::Timer(t0 + ms(5)))
        );
    }

    #[test]
    fn sleeping_threads_are_woken_only_when_there_is_something_for_them() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        // Nobody asleep: nobody to wake.
        assert!(!schedule.ready(1));
        assert!(!schedule.wants_a_thread());
        schedule.set_sleeping(true);
        assert!(schedule.wants_a_thread());
        assert!(schedule.ready(2));
        // A later timer than one already set does not shorten any sleep.
        assert!(schedule.at(t0 + ms(2), 3));
        assert!(!schedule.at(t0 + ms(4), 4));
        assert!(schedule.at(t0 + ms(1), 5));
        schedule.set_sleeping(false);
        assert!(!schedule.at(t0, 6));
    }

    #[test]
    fn stopping_runs_everything_left_then_stops() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        schedule.at(t0 + Duration::from_secs(3600), "timer");
        schedule.ready("ready");
        schedule.stop();
        assert_eq!(schedule.next(t0), Next::Run("ready", Wake::Ready));
        assert!(matches!(schedule.next(t0), Next::Run("timer", Wake::Timer(_))));
        assert_eq!(schedule.next(t0), Next::Stop);
    }
}
