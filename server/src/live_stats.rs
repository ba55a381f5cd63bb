//! Per-version live statistics over a sliding window: requests, errors by
//! status code, latency percentiles and mean score, kept in one-second
//! buckets so the rollout tool can compare a canary with its stable
//! version.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::Code;

/// Seconds of history kept (the longest window one can ask for).
pub const MAX_WINDOW_SECONDS: u32 = 600;

/// Latency buckets: the first upper bound, and the ratio between bounds
/// (so percentiles are within 20 %).
const FIRST_BOUND_US: f64 = 10.0;
const RATIO: f64 = 1.2;
const LATENCY_BUCKETS: usize = 90;

#[derive(Clone)]
struct SecondBucket {
    second: u64,
    requests: u64,
    errors: HashMap<Code, u64>,
    latency: [u32; LATENCY_BUCKETS],
    score_sum: f64,
    scored_rows: u64,
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
        }
    }
}

fn latency_bucket(latency: Duration) -> usize {
    let us = latency.as_secs_f64() * 1e6;
    if us <= FIRST_BOUND_US {
        return 0;
    }
    (((us / FIRST_BOUND_US).ln() / RATIO.ln()).ceil() as usize).min(LATENCY_BUCKETS - 1)
}

fn bucket_upper_ms(index: usize) -> f64 {
    FIRST_BOUND_US * RATIO.powi(index as i32) / 1000.0
}

#[derive(Default)]
struct Window {
    seconds: VecDeque<SecondBucket>,
}

/// One version's figures over a window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowSummary {
    pub requests: u64,
    pub errors: u64,
    pub errors_by_code: Vec<(Code, u64)>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_score: f64,
}

impl WindowSummary {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
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
        let second = now_second();
        let mut window = self.0.lock().expect("stats lock poisoned");
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
    }
}

fn now_second() -> u64 {
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
        let window_seconds = u64::from(window_seconds.clamp(1, MAX_WINDOW_SECONDS));
        let versions: Vec<(u32, Arc<Mutex<Window>>)> = {
            let windows = self.windows.read().expect("stats lock poisoned");
            windows
                .by_model
                .get(model)
                .map(|v| v.iter().map(|(k, w)| (*k, w.clone())).collect())
                .unwrap_or_default()
        };
        let since = now_second().saturating_sub(window_seconds - 1);
        let mut summaries: Vec<(u32, WindowSummary)> = versions
            .into_iter()
            .filter_map(|(version, window)| {
                let window = window.lock().expect("stats lock poisoned");
                let recent: Vec<&SecondBucket> =
                    window.seconds.iter().filter(|b| b.second >= since).collect();
                if recent.is_empty() {
                    return None;
                }
                Some((version, summarise(&recent)))
            })
            .collect();
        summaries.sort_by_key(|(version, _)| *version);
        summaries
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

fn summarise(buckets: &[&SecondBucket]) -> WindowSummary {
    let mut latency = [0u64; LATENCY_BUCKETS];
    let mut summary = WindowSummary::default();
    let mut errors: HashMap<Code, u64> = HashMap::new();
    let (mut score_sum, mut scored) = (0.0, 0u64);
    for bucket in buckets {
        summary.requests += bucket.requests;
        for (code, n) in &bucket.errors {
            *errors.entry(*code).or_default() += n;
            summary.errors += n;
        }
        for (total, n) in latency.iter_mut().zip(bucket.latency) {
            *total += u64::from(n);
        }
        score_sum += bucket.score_sum;
        scored += bucket.scored_rows;
    }
    let percentile = |q: f64| {
        let target = (q * summary.requests as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in latency.iter().enumerate() {
            seen += n;
            if seen >= target {
                return bucket_upper_ms(i);
            }
        }
        0.0
    };
    summary.p50_ms = percentile(0.5);
    summary.p99_ms = percentile(0.99);
    summary.mean_score = if scored == 0 {
        0.0
    } else {
        score_sum / scored as f64
    };
    let mut errors: Vec<(Code, u64)> = errors.into_iter().collect();
    errors.sort_by_key(|(code, _)| *code as i32);
    summary.errors_by_code = errors;
    summary
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
