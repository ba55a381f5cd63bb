//! [`StatsSnapshot`]: one version's live figures over some seconds on some
//! replicas — counts and histograms only, so that snapshots merge by
//! addition (seconds into a window, replicas into the fleet) and travel as
//! JSON through the registry. Percentiles and means are read off a merged
//! snapshot, never averaged. New figures join as new fields (with a serde
//! default, so snapshots written before them still read) and in `merge`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::Code;

/// Latency buckets: the first upper bound, and the ratio between bounds
/// (so percentiles are within 20 %).
const FIRST_BOUND_US: f64 = 10.0;
const RATIO: f64 = 1.2;
pub(crate) const LATENCY_BUCKETS: usize = 90;

/// Equal bins of the predicted probability over [0, 1].
pub const SCORE_BINS: usize = 10;

pub(crate) fn latency_bucket(latency: Duration) -> usize {
    let us = latency.as_secs_f64() * 1e6;
    if us <= FIRST_BOUND_US {
        return 0;
    }
    (((us / FIRST_BOUND_US).ln() / RATIO.ln()).ceil() as usize).min(LATENCY_BUCKETS - 1)
}

fn bucket_upper_ms(index: usize) -> f64 {
    FIRST_BOUND_US * RATIO.powi(index as i32) / 1000.0
}

pub(crate) fn score_bin(score: f32) -> usize {
    ((score.clamp(0.0, 1.0) * SCORE_BINS as f32) as usize).min(SCORE_BINS - 1)
}

/// One version's figures, mergeable by addition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub requests: u64,
    /// Failed calls by gRPC code number.
    #[serde(default)]
    pub errors: BTreeMap<i32, u64>,
    /// Calls by latency bucket (see `latency_bucket`), written sparsely.
    #[serde(default = "no_latency", with = "sparse")]
    pub latency: Vec<u64>,
    #[serde(default)]
    pub score_sum: f64,
    #[serde(default)]
    pub scored_rows: u64,
    /// Successful rows by score bin (see `score_bin`).
    #[serde(default)]
    pub scores: [u64; SCORE_BINS],
}

fn no_latency() -> Vec<u64> {
    vec![0; LATENCY_BUCKETS]
}

impl Default for StatsSnapshot {
    fn default() -> Self {
        StatsSnapshot {
            requests: 0,
            errors: BTreeMap::new(),
            latency: no_latency(),
            score_sum: 0.0,
            scored_rows: 0,
            scores: [0; SCORE_BINS],
        }
    }
}

/// One version's figures over a window, read off a snapshot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowSummary {
    pub requests: u64,
    pub errors: u64,
    pub errors_by_code: Vec<(Code, u64)>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_score: f64,
    pub score_histogram: [u64; SCORE_BINS],
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

impl StatsSnapshot {
    /// Adds `other`'s figures to these: other seconds, or another replica.
    pub fn merge(&mut self, other: &StatsSnapshot) {
        self.requests += other.requests;
        for (code, n) in &other.errors {
            *self.errors.entry(*code).or_default() += n;
        }
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (total, n) in self.latency.iter_mut().zip(&other.latency) {
            *total += n;
        }
        self.score_sum += other.score_sum;
        self.scored_rows += other.scored_rows;
        for (total, n) in self.scores.iter_mut().zip(other.scores) {
            *total += n;
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a snapshot serialises")
    }

    pub fn from_json(text: &str) -> Result<StatsSnapshot, serde_json::Error> {
        let mut snapshot: StatsSnapshot = serde_json::from_str(text)?;
        snapshot.latency.resize(LATENCY_BUCKETS, 0);
        Ok(snapshot)
    }

    /// The window's figures: totals, latency percentiles (upper bounds of
    /// their buckets), mean score.
    pub fn summary(&self) -> WindowSummary {
        let errors: u64 = self.errors.values().sum();
        let percentile = |q: f64| {
            let target = (q * self.requests as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in self.latency.iter().enumerate() {
                seen += n;
                if seen >= target {
                    return bucket_upper_ms(i);
                }
            }
            0.0
        };
        WindowSummary {
            requests: self.requests,
            errors,
            errors_by_code: self
                .errors
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(code, n)| (Code::from_i32(*code), *n))
                .collect(),
            p50_ms: percentile(0.5),
            p99_ms: percentile(0.99),
            mean_score: if self.scored_rows == 0 {
                0.0
            } else {
                self.score_sum / self.scored_rows as f64
            },
            score_histogram: self.scores,
        }
    }
}

/// A mostly-empty histogram as `[[index, count], …]`, its non-zero buckets.
mod sparse {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(counts: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (i, *n)),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
        let pairs: Vec<(usize, u64)> = Vec::deserialize(deserializer)?;
        let mut counts = vec![0; super::LATENCY_BUCKETS];
        for (i, n) in pairs {
            if i >= counts.len() {
                return Err(serde::de::Error::custom(format!(
                    "latency bucket {i} is beyond the last, {}",
                    super::LATENCY_BUCKETS - 1
                )));
            }
            counts[i] += n;
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` calls of `latency` answered with `code`, each scoring `score`.
    fn calls(n: u64, code: Code, latency: Duration, score: f32) -> StatsSnapshot {
        let mut snapshot = StatsSnapshot {
            requests: n,
            ..Default::default()
        };
        snapshot.latency[latency_bucket(latency)] = n;
        if code == Code::Ok {
            snapshot.score_sum = f64::from(score) * n as f64;
            snapshot.scored_rows = n;
            snapshot.scores[score_bin(score)] = n;
        } else {
            snapshot.errors.insert(code as i32, n);
        }
        snapshot
    }

    #[test]
    fn merging_adds_every_figure_and_the_summary_reads_the_merged_histograms() {
        // Three replicas: two healthy and fast, one failing and slow.
        let healthy = calls(495, Code::Ok, Duration::from_millis(1), 0.25);
        let other = calls(495, Code::Ok, Duration::from_millis(1), 0.75);
        let failing = calls(10, Code::ResourceExhausted, Duration::from_millis(80), 0.0);
        let mut fleet = StatsSnapshot::default();
        for snapshot in [&healthy, &other, &failing] {
            fleet.merge(snapshot);
        }
        let summary = fleet.summary();
        assert_eq!((summary.requests, summary.errors), (1000, 10));
        assert_eq!(summary.error_rate(), 0.01);
        assert_eq!(summary.errors_by_code, vec![(Code::ResourceExhausted, 10)]);
        assert_eq!(summary.mean_score, 0.5);
        assert!((0.9..1.3).contains(&summary.p50_ms), "{}", summary.p50_ms);
        // 1 % of calls took 80 ms: the merged p99 still sits at 1 ms, the
        // next call up is slow — percentiles come from the merged counts.
        assert!(summary.p99_ms < 1.3, "{}", summary.p99_ms);
        let mut histogram = [0; SCORE_BINS];
        histogram[2] = 495;
        histogram[7] = 495;
        assert_eq!(summary.score_histogram, histogram);

        // Merging is order-free, and the empty snapshot changes nothing.
        let mut reversed = StatsSnapshot::default();
        for snapshot in [&failing, &other, &healthy, &StatsSnapshot::default()] {
            reversed.merge(snapshot);
        }
        assert_eq!(reversed, fleet);
        assert_eq!(StatsSnapshot::default().summary(), WindowSummary::default());
    }

    #[test]
    fn a_snapshot_travels_as_json_and_reads_back_the_same() {
        let mut snapshot = calls(7, Code::Ok, Duration::from_micros(300), 0.95);
        snapshot.merge(&calls(2, Code::Unavailable, Duration::from_secs(20), 0.0));
        let text = snapshot.to_json();
        assert!(text.len() < 200, "sparse: {text}");
        assert_eq!(StatsSnapshot::from_json(&text).unwrap(), snapshot);
        // Only what a writer knew: later fields take their defaults.
        let old = StatsSnapshot::from_json(r#"{"requests": 3, "latency": [[5, 3]]}"#).unwrap();
        assert_eq!((old.requests, old.latency[5], old.scored_rows), (3, 3, 0));
        assert!(StatsSnapshot::from_json(r#"{"requests": 1, "latency": [[90, 1]]}"#).is_err());
    }

    #[test]
    fn scores_fall_in_ten_bins_with_one_in_the_last() {
        assert_eq!(score_bin(0.0), 0);
        assert_eq!(score_bin(0.099), 0);
        assert_eq!(score_bin(0.1), 1);
        assert_eq!(score_bin(0.95), 9);
        assert_eq!(score_bin(1.0), 9);
        assert_eq!(score_bin(f32::NAN), 0);
    }
}
