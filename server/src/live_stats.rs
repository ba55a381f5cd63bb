//! Per-version live statistics over a sliding window: requests, errors by
//! status code, latency and score histograms, kept in one-second buckets
//! so the rollout tool can compare a canary with its stable version. The
//! buckets are read as mergeable [`StatsSnapshot`]s: merged over a window
//! here, and published to the registry (`fleet_stats`) so that any replica
//! can answer for the fleet.

mod snapshot;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::Code;

use snapshot::{LATENCY_BUCKETS, latency_bucket, score_bin};
pub use snapshot::{SCORE_BINS, StatsSnapshot, WindowSummary};

/// Seconds of history kept (the longest window one can ask for).
pub const MAX_WINDOW_SECONDS: u32 = 600;

/// One second of one version's calls, compact: it is what the window
/// holds, up to [`MAX_WINDOW_SECONDS`] of them per version.
#[derive(Clone)]
struct SecondBucket {
    second: u64,
    requests: u64,
    errors: HashMap<Code, u64>,
    latency: [u32; LATENCY_BUCKETS],
    score_sum: f64,
    scored_rows: u64,
    scores: [u32; SCORE_BINS],
}

impl SecondBucket {
    fn new(second: u64) -> Self {
        SecondBucket {
            second,
            requests: 0,
            errors: HashMap::new(),
            latency: [0; LATENCY_BUCKETS],
            score_sum: 0.0,
            scored_rows: 0,
            scores: [0; SCORE_BINS],
        }
    }

    fn add_to(&self, snapshot: &mut StatsSnapshot) {
        snapshot.requests += self.requests;
        for (code, n) in &self.errors {
            *snapshot.errors.entry(*code as i32).or_default() += n;
        }
        for (total, n) in snapshot.latency.iter_mut().zip(self.latency) {
            *total += u64::from(n);
        }
        snapshot.score_sum += self.score_sum;
        snapshot.scored_rows += self.scored_rows;
        for (total, n) in snapshot.scores.iter_mut().zip(self.scores) {
            *total += u64::from(n);
        }
    }
}

/// One second of one version's figures, as published.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondSnapshot {
    pub model: String,
    pub version: u32,
    pub second: u64,
    pub snapshot: StatsSnapshot,
}

#[derive(Default)]
struct Window {
    seconds: VecDeque<SecondBucket>,
}

/// Every version's window, and the versions forgotten.
#[derive(Default)]
struct Windows {
    /// Model → version → its window.
    by_model: HashMap<String, HashMap<u32, Arc<Mutex<Window>>>>,
    /// Model → versions forgotten after their deletion. Correctness:
    /// version numbers are never reused, so a call still in flight across
    /// the delete must not bring its version back. One entry per version
    /// deleted while this server ran.
    forgotten: HashMap<String, HashSet<u32>>,
}

/// The statistics of every version this server answered for.
#[derive(Default)]
pub struct LiveStats {
    windows: RwLock<Windows>,
}

/// One version's window: records calls without a map lookup.
pub struct VersionStats(Arc<Mutex<Window>>);

impl VersionStats {
    /// Records one call answered by this version.
    pub fn record(&self, code: Code, latency: Duration, scores: &[f32]) {
        let mut window = self.0.lock().expect("stats lock poisoned");
        // Correctness: the second is read under the lock, so a publisher
        // that read the window in second S sees every later call in S or
        // after, which it publishes next time.
        let second = now_second();
        if window.seconds.back().is_none_or(|b| b.second != second) {
            window.seconds.push_back(SecondBucket::new(second));
        }
        while window
            .seconds
            .front()
            .is_some_and(|b| b.second + u64::from(MAX_WINDOW_SECONDS) <= second)
        {
            window.seconds.pop_front();
        }
        let bucket = window.seconds.back_mut().expect("just pushed");
        bucket.requests += 1;
        if code != Code::Ok {
            *bucket.errors.entry(code).or_default() += 1;
        }
        bucket.latency[latency_bucket(latency)] += 1;
        bucket.score_sum += scores.iter().map(|&s| f64::from(s)).sum::<f64>();
        bucket.scored_rows += scores.len() as u64;
        for &score in scores {
            bucket.scores[score_bin(score)] += 1;
        }
    }
}

/// The current Unix second.
pub fn now_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl LiveStats {
    /// The window of `version` of `model`, to record its calls into; a
    /// loaded version keeps the handle, so a call needs no lookup.
    pub fn for_version(&self, model: &str, version: u32) -> VersionStats {
        let window = {
            let windows = self.windows.read().expect("stats lock poisoned");
            windows.by_model.get(model).and_then(|v| v.get(&version)).cloned()
        };
        if let Some(window) = window {
            return VersionStats(window);
        }
        let mut windows = self.windows.write().expect("stats lock poisoned");
        if windows.forgotten.get(model).is_some_and(|v| v.contains(&version)) {
            // A window no summary reads: the version is deleted.
            return VersionStats(Arc::default());
        }
        let window = windows
            .by_model
            .entry(model.to_string())
            .or_default()
            .entry(version)
            .or_default()
            .clone();
        VersionStats(window)
    }

    /// Every version of `model` seen within the last `window_seconds`.
    pub fn summary(&self, model: &str, window_seconds: u32) -> Vec<(u32, WindowSummary)> {
        let since = window_start(window_seconds);
        self.merged(model, since)
            .into_iter()
            .map(|(version, snapshot)| (version, snapshot.summary()))
            .collect()
    }

    /// Every version of `model` seen from `since_second` on, its seconds
    /// merged into one snapshot; by version.
    pub fn merged(&self, model: &str, since_second: u64) -> Vec<(u32, StatsSnapshot)> {
        let versions: Vec<(u32, Arc<Mutex<Window>>)> = {
            let windows = self.windows.read().expect("stats lock poisoned");
            windows
                .by_model
                .get(model)
                .map(|v| v.iter().map(|(k, w)| (*k, w.clone())).collect())
                .unwrap_or_default()
        };
        let mut merged: Vec<(u32, StatsSnapshot)> = versions
            .into_iter()
            .filter_map(|(version, window)| {
                let window = window.lock().expect("stats lock poisoned");
                let mut snapshot = StatsSnapshot::default();
                let mut seen = false;
                for bucket in window.seconds.iter().filter(|b| b.second >= since_second) {
                    bucket.add_to(&mut snapshot);
                    seen = true;
                }
                seen.then_some((version, snapshot))
            })
            .collect();
        merged.sort_by_key(|(version, _)| *version);
        merged
    }

    /// Every version's seconds from `since_second` on, one snapshot per
    /// version and second, for publishing. Each window is locked only
    /// while its few newest buckets are copied.
    pub fn seconds_since(&self, since_second: u64) -> Vec<SecondSnapshot> {
        let versions: Vec<(String, u32, Arc<Mutex<Window>>)> = {
            let windows = self.windows.read().expect("stats lock poisoned");
            windows
                .by_model
                .iter()
                .flat_map(|(model, versions)| {
                    versions
                        .iter()
                        .map(|(version, window)| (model.clone(), *version, window.clone()))
                })
                .collect()
        };
        let mut seconds = BTreeMap::new();
        for (model, version, window) in versions {
            let window = window.lock().expect("stats lock poisoned");
            for bucket in window
                .seconds
                .iter()
                .rev()
                .take_while(|b| b.second >= since_second)
            {
                // A bucket per second, but should the clock step back, two
                // with one second merge here.
                let snapshot = seconds
                    .entry((model.clone(), version, bucket.second))
                    .or_insert_with(StatsSnapshot::default);
                bucket.add_to(snapshot);
            }
        }
        seconds
            .into_iter()
            .map(|((model, version, second), snapshot)| SecondSnapshot {
                model,
                version,
                second,
                snapshot,
            })
            .collect()
    }

    /// Forgets a version (after it is deleted), and the model once it has
    /// no version left. Calls of that version still in flight record
    /// nowhere that is reported.
    pub fn forget(&self, model: &str, version: u32) {
        let mut windows = self.windows.write().expect("stats lock poisoned");
        if let Some(versions) = windows.by_model.get_mut(model) {
            versions.remove(&version);
            if versions.is_empty() {
                windows.by_model.remove(model);
            }
        }
        windows
            .forgotten
            .entry(model.to_string())
            .or_default()
            .insert(version);
    }
}

/// The first second of a window of `window_seconds` ending now.
pub fn window_start(window_seconds: u32) -> u64 {
    let window_seconds = u64::from(window_seconds.clamp(1, MAX_WINDOW_SECONDS));
    now_second().saturating_sub(window_seconds - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_latency_and_scores_per_version() {
        let stats = LiveStats::default();
        let (one, two) = (stats.for_version("m", 1), stats.for_version("m", 2));
        for i in 0..98 {
            one.record(Code::Ok, Duration::from_micros(1000 + i), &[0.25, 0.75]);
        }
        one.record(Code::Internal, Duration::from_millis(40), &[]);
        one.record(Code::InvalidArgument, Duration::from_millis(80), &[]);
        two.record(Code::Ok, Duration::from_micros(50), &[1.0]);
        let summary = stats.summary("m", 60);
        assert_eq!(summary.len(), 2);
        let (version, one) = &summary[0];
        assert_eq!(*version, 1);
        assert_eq!((one.requests, one.errors), (100, 2));
        assert_eq!(one.error_rate(), 0.02);
        assert_eq!(
            one.errors_by_code,
            vec![(Code::InvalidArgument, 1), (Code::Internal, 1)]
        );
        assert!((0.9..1.3).contains(&one.p50_ms), "{}", one.p50_ms);
        assert!((35.0..50.0).contains(&one.p99_ms), "{}", one.p99_ms);
        assert_eq!(one.mean_score, 0.5);
        assert_eq!(summary[1].1.mean_score, 1.0);
        assert!(stats.summary("other", 60).is_empty());
    }

    #[test]
    fn the_seconds_published_merge_into_the_window_read_here() {
        let stats = LiveStats::default();
        let (one, other) = (stats.for_version("m", 1), stats.for_version("n", 4));
        for i in 0..20 {
            one.record(Code::Ok, Duration::from_micros(200 + i), &[0.05, 0.95]);
        }
        one.record(Code::ResourceExhausted, Duration::from_micros(30), &[]);
        other.record(Code::Ok, Duration::from_micros(900), &[0.5]);
        let seconds = stats.seconds_since(0);
        let mut published = StatsSnapshot::default();
        for second in seconds
            .iter()
            .filter(|s| (s.model.as_str(), s.version) == ("m", 1))
        {
            published.merge(&second.snapshot);
        }
        let merged = stats.merged("m", 0);
        assert_eq!(merged, vec![(1, published.clone())]);
        assert_eq!(published.requests, 21);
        assert_eq!(published.errors.get(&(Code::ResourceExhausted as i32)), Some(&1));
        assert_eq!((published.scores[0], published.scores[9]), (20, 20));
        assert!(seconds.iter().any(|s| (s.model.as_str(), s.version) == ("n", 4)));
        assert!(stats.seconds_since(now_second() + 1).is_empty());
    }

    #[test]
    fn a_forgotten_version_leaves_the_summary_and_an_empty_model_the_map() {
        let stats = LiveStats::default();
        let one = stats.for_version("m", 1);
        let two = stats.for_version("m", 2);
        one.record(Code::Ok, Duration::from_micros(100), &[0.5]);
        two.record(Code::Ok, Duration::from_micros(100), &[0.5]);
        stats.forget("m", 1);
        let versions: Vec<u32> = stats.summary("m", 60).iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, vec![2]);
        // A late call through a handle taken before the delete changes
        // nothing that is reported.
        one.record(Code::Ok, Duration::from_micros(100), &[0.5]);
        assert_eq!(stats.summary("m", 60).len(), 1);
        stats.forget("m", 2);
        assert!(stats.summary("m", 60).is_empty());
        assert!(
            stats.windows.read().unwrap().by_model.is_empty(),
            "the model's entry is gone too"
        );
        // Forgetting what is not there is a no-op.
        stats.forget("m", 2);
        stats.forget("ghost", 1);
        assert!(stats.windows.read().unwrap().by_model.is_empty());
    }

    #[test]
    fn a_call_in_flight_across_the_delete_does_not_bring_its_version_back() {
        let stats = LiveStats::default();
        stats
            .for_version("m", 1)
            .record(Code::Ok, Duration::from_micros(100), &[0.5]);
        stats.forget("m", 1);
        // The version's first call on this server ends after the delete:
        // its window is made only now, and is not listed.
        let late = stats.for_version("m", 1);
        late.record(Code::Unavailable, Duration::from_micros(100), &[]);
        assert!(stats.summary("m", 60).is_empty());
        assert!(stats.windows.read().unwrap().by_model.is_empty());
        // Other versions of the model are kept as before.
        stats
            .for_version("m", 2)
            .record(Code::Ok, Duration::from_micros(100), &[0.5]);
        let versions: Vec<u32> = stats.summary("m", 60).iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, vec![2]);
    }
}
