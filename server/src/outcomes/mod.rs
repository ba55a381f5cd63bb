//! Outcome feedback: the predictions that may still get an outcome, and
//! each version's online quality from the outcomes reported for them.
//!
//! [`OutcomeStore`] keeps, per prediction this server answered within the
//! outcome window, only its score, version and time, and the score of a
//! shadow version when one scored the row too (the shadow arm) — never
//! feature values or routing keys — keyed by the secret part of its prediction id
//! (`ids`), in 64 shards so that calls on different cores rarely meet (one
//! call's rows share a shard: one lock per call). The store is bounded by a
//! count (oldest dropped first, counted) and swept of predictions older than
//! the window once a second.
//!
//! A reported outcome labels its prediction; the prediction stays until it
//! leaves the window (so a second report is a duplicate), and while it is
//! labelled it counts in its version's [`QualitySummary`]. A version's
//! online quality is therefore that of its predictions made within the
//! outcome window that got an outcome: a sliding window over prediction
//! time, taken out exactly as predictions expire.

pub mod ids;
pub mod mailbox;
pub mod metrics;
pub mod quality;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ids::{ParsedId, ReplicaTag, SHARDS, Secret};
pub use quality::{CalibrationBin, QualitySummary};

/// Outcome tracking settings.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeSettings {
    /// Off: Predict answers no prediction ids and ReportOutcomes is refused.
    pub enabled: bool,
    /// How long a prediction may wait for its outcome.
    pub window: Duration,
    /// Predictions kept at most; the oldest are dropped first.
    pub max_tracked: usize,
}

impl Default for OutcomeSettings {
    fn default() -> Self {
        OutcomeSettings {
            enabled: true,
            window: Duration::from_secs(24 * 3600),
            max_tracked: 1_000_000,
        }
    }
}

/// One version's outcomes on this server.
#[derive(Default)]
pub struct VersionOutcomes {
    live: Mutex<QualitySummary>,
    shadow: Mutex<QualitySummary>,
    /// Predictions tracked and not labelled yet.
    awaiting: AtomicU64,
}

impl VersionOutcomes {
    fn summary(&self, shadow: bool) -> &Mutex<QualitySummary> {
        if shadow { &self.shadow } else { &self.live }
    }
}

/// One version's online quality, as read for a report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionQuality {
    pub version: u32,
    pub live: QualitySummary,
    pub shadow: QualitySummary,
    pub awaiting: u64,
}

/// A prediction waiting for (or holding) its outcome.
struct Tracked {
    version: Arc<VersionOutcomes>,
    check: u64,
    score: f32,
    issued: u32,
    label: Option<bool>,
    /// The same row as scored by a shadow version, when it was (boxed:
    /// most rows have none, and each costs a pointer only).
    shadow: Option<Box<ShadowScore>>,
}

/// A shadow version's score of a tracked row (never answered with).
struct ShadowScore {
    version: Arc<VersionOutcomes>,
    score: f32,
}

impl Tracked {
    /// Adds (or, with `remove`, takes out) this labelled prediction in its
    /// versions' summaries.
    fn count(&self, label: bool, remove: bool) {
        let apply = |summary: &Mutex<QualitySummary>, score: f32| {
            let mut summary = summary.lock().expect("outcome lock poisoned");
            if remove {
                summary.remove(score, label);
            } else {
                summary.add(score, label);
            }
        };
        apply(self.version.summary(false), self.score);
        if let Some(shadow) = &self.shadow {
            apply(shadow.version.summary(true), shadow.score);
        }
    }
}

#[derive(Default)]
struct Shard {
    entries: HashMap<u64, Tracked>,
    /// Keys in the order they were stored (and so by time).
    order: VecDeque<(u64, u32)>,
    /// Issue time of the newest prediction dropped to bound memory.
    dropped_until: u32,
}

impl Shard {
    /// Takes the oldest prediction out; false when there is none.
    fn pop_oldest(&mut self) -> bool {
        let Some((key, _)) = self.order.pop_front() else {
            return false;
        };
        if let Some(tracked) = self.entries.remove(&key) {
            match tracked.label {
                Some(label) => tracked.count(label, true),
                None => {
                    tracked.version.awaiting.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        true
    }
}

/// What one ReportOutcomes call found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    pub matched: u64,
    pub unmatched: u64,
    pub expired: u64,
    pub duplicate: u64,
    /// Of the unmatched: ids of another replica.
    pub other_replica: u64,
}

/// Counts since start, for Prometheus.
#[derive(Default)]
pub struct OutcomeTotals {
    pub matched: AtomicU64,
    pub unmatched: AtomicU64,
    pub expired: AtomicU64,
    pub duplicate: AtomicU64,
    pub other_replica: AtomicU64,
    /// Outcomes posted to the replica that issued their predictions.
    pub forwarded: AtomicU64,
    /// Predictions dropped before their window ended, to bound memory.
    pub dropped: AtomicU64,
    /// Predictions that left the window without an outcome.
    pub expired_unlabelled: AtomicU64,
    /// Rows scored by a shadow version, and joined to their live rows.
    pub shadow_scored: AtomicU64,
    /// Rows not shadowed because the compute queues were busy.
    pub shadow_shed: AtomicU64,
    /// Rows the shadow version could not score (e.g. a column it needs).
    pub shadow_failed: AtomicU64,
}

/// One outcome as reported.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub prediction_id: &'a str,
    pub label: bool,
    /// Seconds since the Unix epoch; None: now.
    pub observed_at: Option<u32>,
}

/// Every tracked prediction and every version's online quality.
pub struct OutcomeStore {
    settings: OutcomeSettings,
    tag: ReplicaTag,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// Model → version → its outcomes.
    versions: RwLock<HashMap<String, HashMap<u32, Arc<VersionOutcomes>>>>,
    /// Model → versions deleted while this server ran (never reported again).
    forgotten: RwLock<HashMap<String, HashSet<u32>>>,
    pub totals: OutcomeTotals,
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

impl OutcomeStore {
    pub fn new(replica_name: &str, settings: OutcomeSettings) -> Self {
        OutcomeStore {
            tag: ReplicaTag::of(replica_name),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: settings.max_tracked.div_ceil(SHARDS).max(1),
            settings,
            versions: RwLock::default(),
            forgotten: RwLock::default(),
            totals: OutcomeTotals::default(),
        }
    }

    /// The tag of the ids this server issues.
    pub fn tag(&self) -> ReplicaTag {
        self.tag
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// How long a prediction may wait for its outcome.
    pub fn window(&self) -> Duration {
        self.settings.window
    }

    fn window_seconds(&self) -> u32 {
        u32::try_from(self.settings.window.as_secs()).unwrap_or(u32::MAX)
    }

    /// The outcomes of `version` of `model`, to track its predictions in; a
    /// loaded version keeps the handle, so a call needs no lookup.
    pub fn for_version(&self, model: &str, version: u32) -> Arc<VersionOutcomes> {
        if let Some(found) = self
            .versions
            .read()
            .expect("outcome lock poisoned")
            .get(model)
            .and_then(|v| v.get(&version))
        {
            return found.clone();
        }
        let forgotten = self.forgotten.read().expect("outcome lock poisoned");
        if forgotten.get(model).is_some_and(|v| v.contains(&version)) {
            // Outcomes no report reads: the version is deleted.
            return Arc::default();
        }
        self.versions
            .write()
            .expect("outcome lock poisoned")
            .entry(model.to_string())
            .or_default()
            .entry(version)
            .or_default()
            .clone()
    }

    /// Tracks one call's scores; answers their prediction ids, in order
    /// (none when tracking is off).
    pub fn track(&self, version: &Arc<VersionOutcomes>, scores: &[f32]) -> Vec<String> {
        if !self.settings.enabled || scores.is_empty() {
            return Vec::new();
        }
        self.track_at(version, scores, now_seconds())
    }

    fn track_at(&self, version: &Arc<VersionOutcomes>, scores: &[f32], now: u32) -> Vec<String> {
        let (shard_index, secrets) = ids::fresh_secrets(scores.len());
        let mut ids = Vec::with_capacity(scores.len());
        let mut shard = self.shards[shard_index].lock().expect("outcome lock poisoned");
        for (&score, mut secret) in scores.iter().zip(secrets) {
            while shard.entries.contains_key(&secret.key) {
                // A 1-in-2^58 collision: draw again within the shard.
                secret = Secret {
                    key: (rand::random::<u64>() & !(SHARDS as u64 - 1)) | shard_index as u64,
                    ..secret
                };
            }
            while shard.entries.len() >= self.per_shard {
                let dropped = shard.order.front().map_or(0, |(_, issued)| *issued);
                shard.pop_oldest();
                shard.dropped_until = shard.dropped_until.max(dropped);
                self.totals.dropped.fetch_add(1, Ordering::Relaxed);
            }
            shard.entries.insert(
                secret.key,
                Tracked {
                    version: version.clone(),
                    check: secret.check,
                    score,
                    issued: now,
                    label: None,
                    shadow: None,
                },
            );
            shard.order.push_back((secret.key, now));
            ids.push(ids::format(self.tag, now, secret));
        }
        drop(shard);
        version.awaiting.fetch_add(scores.len() as u64, Ordering::Relaxed);
        ids
    }

    /// Joins outcomes to their predictions.
    pub fn report(&self, outcomes: &[Outcome<'_>]) -> OutcomeCounts {
        self.report_at(outcomes, now_seconds())
    }

    fn report_at(&self, outcomes: &[Outcome<'_>], now: u32) -> OutcomeCounts {
        let mut counts = OutcomeCounts::default();
        let window = self.window_seconds();
        for outcome in outcomes {
            let Some(id) = ids::parse(outcome.prediction_id) else {
                counts.unmatched += 1;
                continue;
            };
            if id.tag != self.tag {
                counts.unmatched += 1;
                counts.other_replica += 1;
                continue;
            }
            let observed = outcome.observed_at.unwrap_or(now).max(id.issued);
            if observed.saturating_sub(id.issued) >= window || now.saturating_sub(id.issued) >= window {
                counts.expired += 1;
                continue;
            }
            match self.label(id, outcome.label) {
                Labelled::Matched => counts.matched += 1,
                Labelled::Duplicate => counts.duplicate += 1,
                Labelled::Dropped => counts.expired += 1,
                Labelled::Unknown => counts.unmatched += 1,
            }
        }
        let totals = &self.totals;
        totals.matched.fetch_add(counts.matched, Ordering::Relaxed);
        totals.unmatched.fetch_add(counts.unmatched, Ordering::Relaxed);
        totals.expired.fetch_add(counts.expired, Ordering::Relaxed);
        totals.duplicate.fetch_add(counts.duplicate, Ordering::Relaxed);
        totals
            .other_replica
            .fetch_add(counts.other_replica, Ordering::Relaxed);
        counts
    }

    fn label(&self, id: ParsedId, label: bool) -> Labelled {
        let mut shard = self.shards[id.secret.shard()]
            .lock()
            .expect("outcome lock poisoned");
        let dropped_until = shard.dropped_until;
        let Some(tracked) = shard
            .entries
            .get_mut(&id.secret.key)
            .filter(|t| t.check == id.secret.check && t.issued == id.issued)
        else {
            return if id.issued <= dropped_until {
                Labelled::Dropped
            } else {
                Labelled::Unknown
            };
        };
        if tracked.label.is_some() {
            return Labelled::Duplicate;
        }
        tracked.label = Some(label);
        tracked.version.awaiting.fetch_sub(1, Ordering::Relaxed);
        tracked.count(label, false);
        Labelled::Matched
    }

    /// Adds a shadow version's scores of the rows answered with `ids` (one
    /// call's, so one shard); rows that already have their outcome, or have
    /// left the store, are skipped. Answers how many were added.
    pub fn attach_shadow(&self, ids: &[String], shadow: &Arc<VersionOutcomes>, scores: &[f32]) -> usize {
        let parsed: Vec<ParsedId> = ids.iter().filter_map(|id| ids::parse(id)).collect();
        let Some(first) = parsed.first() else {
            return 0;
        };
        let mut shard = self.shards[first.secret.shard()]
            .lock()
            .expect("outcome lock poisoned");
        let mut attached = 0;
        for (id, &score) in parsed.iter().zip(scores) {
            if id.secret.shard() != first.secret.shard() {
                continue;
            }
            if let Some(tracked) = shard
                .entries
                .get_mut(&id.secret.key)
                .filter(|t| t.check == id.secret.check && t.label.is_none() && t.shadow.is_none())
            {
                tracked.shadow = Some(Box::new(ShadowScore {
                    version: shadow.clone(),
                    score,
                }));
                attached += 1;
            }
        }
        attached
    }

    /// Drops the predictions that left the window; run once a second.
    pub fn sweep(&self) {
        self.sweep_at(now_seconds());
    }

    fn sweep_at(&self, now: u32) {
        let oldest_kept = now.saturating_sub(self.window_seconds());
        for shard in self.shards.iter() {
            let mut shard = shard.lock().expect("outcome lock poisoned");
            while shard
                .order
                .front()
                .is_some_and(|(_, issued)| *issued <= oldest_kept)
            {
                let unlabelled = shard
                    .order
                    .front()
                    .and_then(|(key, _)| shard.entries.get(key))
                    .is_some_and(|t| t.label.is_none());
                shard.pop_oldest();
                if unlabelled {
                    self.totals.expired_unlabelled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Predictions tracked now.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("outcome lock poisoned").entries.len())
            .sum()
    }

    /// Every version of `model` with predictions tracked or labelled here.
    pub fn quality(&self, model: &str) -> Vec<VersionQuality> {
        let versions: Vec<(u32, Arc<VersionOutcomes>)> = self
            .versions
            .read()
            .expect("outcome lock poisoned")
            .get(model)
            .map(|v| v.iter().map(|(k, o)| (*k, o.clone())).collect())
            .unwrap_or_default();
        let mut qualities: Vec<VersionQuality> = versions
            .into_iter()
            .map(|(version, outcomes)| VersionQuality {
                version,
                live: outcomes.live.lock().expect("outcome lock poisoned").clone(),
                shadow: outcomes.shadow.lock().expect("outcome lock poisoned").clone(),
                awaiting: outcomes.awaiting.load(Ordering::Relaxed),
            })
            .filter(|q| q.awaiting > 0 || q.live.outcomes() > 0 || q.shadow.outcomes() > 0)
            .collect();
        qualities.sort_by_key(|q| q.version);
        qualities
    }

    /// Every model with versions tracked here.
    pub fn models(&self) -> Vec<String> {
        let mut models: Vec<String> = self
            .versions
            .read()
            .expect("outcome lock poisoned")
            .keys()
            .cloned()
            .collect();
        models.sort();
        models
    }

    /// Forgets a deleted version's outcomes (its predictions still waiting
    /// expire unreported).
    pub fn forget(&self, model: &str, version: u32) {
        self.forgotten
            .write()
            .expect("outcome lock poisoned")
            .entry(model.to_string())
            .or_default()
            .insert(version);
        let mut versions = self.versions.write().expect("outcome lock poisoned");
        if let Some(of_model) = versions.get_mut(model) {
            of_model.remove(&version);
            if of_model.is_empty() {
                versions.remove(model);
            }
        }
    }
}

enum Labelled {
    Matched,
    Duplicate,
    /// Dropped to bound memory before its window ended.
    Dropped,
    Unknown,
}

/// Sweeps `store` once a second until `stopping` turns true.
pub async fn sweep_task(store: Arc<OutcomeStore>, mut stopping: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => store.sweep(),
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u32 = 1_800_000_000;

    fn store(window_seconds: u64, max_tracked: usize) -> OutcomeStore {
        OutcomeStore::new(
            "replica-a",
            OutcomeSettings {
                enabled: true,
                window: Duration::from_secs(window_seconds),
                max_tracked,
            },
        )
    }

    fn outcome(id: &str, label: bool) -> Outcome<'_> {
        Outcome {
            prediction_id: id,
            label,
            observed_at: None,
        }
    }

    #[test]
    fn outcomes_join_their_predictions_once_in_any_order() {
        let store = store(3600, 1000);
        let v1 = store.for_version("m", 1);
        let ids = store.track_at(&v1, &[0.9, 0.2, 0.7], NOW);
        assert_eq!(store.quality("m")[0].awaiting, 3);
        let counts = store.report_at(&[outcome(&ids[2], false), outcome(&ids[0], true)], NOW + 5);
        assert_eq!(
            counts,
            OutcomeCounts {
                matched: 2,
                ..Default::default()
            }
        );
        let again = store.report_at(&[outcome(&ids[0], false), outcome(&ids[1], false)], NOW + 9);
        assert_eq!((again.matched, again.duplicate), (1, 1));
        let quality = &store.quality("m")[0];
        assert_eq!((quality.version, quality.awaiting), (1, 0));
        assert_eq!((quality.live.outcomes(), quality.live.positives()), (3, 1));
        assert_eq!(quality.live.auc(), Some(1.0));
        assert_eq!(quality.shadow.outcomes(), 0);
    }

    #[test]
    fn unknown_foreign_malformed_and_expired_ids_are_counted() {
        let store = store(100, 1000);
        let other = OutcomeStore::new("replica-b", OutcomeSettings::default());
        let v1 = store.for_version("m", 1);
        let ours = store.track_at(&v1, &[0.5, 0.5], NOW);
        let theirs = other.track_at(&other.for_version("m", 1), &[0.5], NOW);
        // Our tag and a fresh time, but a secret never issued.
        let forged = format!("{}{}", &ours[0][..18], "0".repeat(32));
        let counts = store.report_at(
            &[
                outcome(&theirs[0], true),
                outcome("not-an-id", true),
                outcome(&forged, true),
                Outcome {
                    prediction_id: &ours[0],
                    label: true,
                    observed_at: Some(NOW + 100),
                },
            ],
            NOW + 10,
        );
        assert_eq!(
            counts,
            OutcomeCounts {
                matched: 0,
                unmatched: 3,
                expired: 1,
                duplicate: 0,
                other_replica: 1
            }
        );
        // Past the window: expired whether or not swept yet.
        assert_eq!(store.report_at(&[outcome(&ours[1], true)], NOW + 100).expired, 1);
        store.sweep_at(NOW + 100);
        assert_eq!(store.tracked(), 0);
        assert_eq!(store.totals.expired_unlabelled.load(Ordering::Relaxed), 2);
        assert_eq!(store.report_at(&[outcome(&ours[1], true)], NOW + 100).expired, 1);
        assert!(store.quality("m").is_empty(), "nothing left to report");
    }

    #[test]
    fn predictions_leaving_the_window_leave_the_quality_exactly() {
        let store = store(60, 1000);
        let v1 = store.for_version("m", 1);
        let v2 = store.for_version("m", 2);
        let early = store.track_at(&v1, &[0.9, 0.1], NOW);
        let late = store.track_at(&v1, &[0.2, 0.8], NOW + 30);
        // Version 2 scored the late rows in the shadow, in reverse.
        assert_eq!(store.attach_shadow(&late, &v2, &[0.8, 0.2]), 2);
        store.report_at(
            &[
                outcome(&early[0], true),
                outcome(&early[1], false),
                outcome(&late[0], true),
                outcome(&late[1], false),
            ],
            NOW + 31,
        );
        let quality = store.quality("m");
        assert_eq!(quality[0].live.auc(), Some(0.75));
        assert_eq!(quality[0].live.outcomes(), 4);
        assert_eq!(quality[0].shadow.outcomes(), 0);
        assert_eq!((quality[1].version, quality[1].live.outcomes()), (2, 0));
        assert_eq!(quality[1].shadow.auc(), Some(1.0));
        store.sweep_at(NOW + 60);
        let quality = store.quality("m");
        assert_eq!(quality[0].live.auc(), Some(0.0), "the early pair left");
        assert_eq!(quality[0].live.outcomes(), 2);
        assert_eq!(quality[1].shadow.outcomes(), 2);
        store.sweep_at(NOW + 90);
        assert!(store.quality("m").is_empty());
        assert_eq!(store.totals.expired_unlabelled.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_shadow_score_arriving_after_the_outcome_is_left_out() {
        let store = store(3600, 1000);
        let (v1, v2) = (store.for_version("m", 1), store.for_version("m", 2));
        let ids = store.track_at(&v1, &[0.9, 0.1], NOW);
        store.report_at(&[outcome(&ids[0], true)], NOW + 1);
        assert_eq!(store.attach_shadow(&ids, &v2, &[0.3, 0.4]), 1);
        assert_eq!(store.attach_shadow(&ids, &v2, &[0.3, 0.4]), 0, "once");
        store.report_at(&[outcome(&ids[1], false)], NOW + 2);
        let quality = store.quality("m");
        assert_eq!(quality[0].live.outcomes(), 2);
        assert_eq!(quality[1].shadow.outcomes(), 1);
        store.sweep_at(NOW + 3600);
        assert!(store.quality("m").is_empty(), "both summaries emptied exactly");
    }

    #[test]
    fn memory_is_bounded_by_dropping_the_oldest_first() {
        // One shard's room: 2 predictions.
        let store = store(3600, 2 * SHARDS);
        let v1 = store.for_version("m", 1);
        let first = store.track_at(&v1, &[0.1, 0.2], NOW);
        let second = store.track_at(&v1, &[0.3, 0.4, 0.5], NOW + 1);
        let kept = store.tracked();
        let dropped = store.totals.dropped.load(Ordering::Relaxed);
        assert_eq!(kept as u64 + dropped, 5);
        assert!(kept <= 2 * SHARDS);
        // The newest predictions are always kept.
        let counts = store.report_at(&[outcome(&second[2], true)], NOW + 2);
        assert_eq!(counts.matched, 1);
        if dropped > 0 {
            // Whatever was dropped reads as expired, not unknown.
            let counts = store.report_at(
                &first
                    .iter()
                    .chain(&second[..2])
                    .map(|id| outcome(id, true))
                    .collect::<Vec<_>>(),
                NOW + 2,
            );
            assert_eq!(counts.expired, dropped);
        }
        // All in one shard: certainly dropped.
        let crowded = store.track_at(&v1, &[0.5; 4], NOW + 3);
        assert_eq!(store.report_at(&[outcome(&crowded[0], true)], NOW + 4).expired, 1);
        assert_eq!(store.report_at(&[outcome(&crowded[3], true)], NOW + 4).matched, 1);
    }

    #[test]
    fn a_tracked_prediction_is_small() {
        // The map entry (key and value) and the order entry: what
        // docs/performance.md counts per prediction, before the map's slack.
        assert_eq!(std::mem::size_of::<(u64, Tracked)>(), 48);
        assert_eq!(std::mem::size_of::<(u64, u32)>(), 16);
    }

    #[test]
    fn a_forgotten_version_is_not_reported_again() {
        let store = store(3600, 1000);
        let v1 = store.for_version("m", 1);
        let ids = store.track_at(&v1, &[0.5], NOW);
        store.forget("m", 1);
        assert_eq!(store.report_at(&[outcome(&ids[0], true)], NOW + 1).matched, 1);
        assert!(store.quality("m").is_empty());
        let late = store.for_version("m", 1);
        store.track_at(&late, &[0.5], NOW + 2);
        assert!(store.quality("m").is_empty());
        assert!(store.models().is_empty());
    }
}
