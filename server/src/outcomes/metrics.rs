//! The outcome store as Prometheus series, read at every scrape: reported
//! outcomes by result, predictions tracked and dropped, and each version's
//! online quality (AUC, log loss, mean score, positive rate, outcomes,
//! predictions awaiting an outcome) by model, version and arm (`live` or
//! `shadow`). Labels are names and numbers, never prediction ids.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts};

use super::{OutcomeStore, QualitySummary};

/// One figure of a summary (None: not defined yet).
type ReadQuality = fn(&QualitySummary) -> Option<f64>;

/// Reads an [`OutcomeStore`] when scraped.
pub struct OutcomeCollector {
    store: Arc<OutcomeStore>,
    reported: IntCounterVec,
    shadow_rows: IntCounterVec,
    tracked: IntGauge,
    dropped: IntCounter,
    expired_unlabelled: IntCounter,
    quality: Vec<(GaugeVec, ReadQuality)>,
    awaiting: GaugeVec,
    descs: Vec<Desc>,
    /// Held while the counters catch up with the store's totals.
    scraping: Mutex<()>,
}

impl OutcomeCollector {
    pub fn new(store: Arc<OutcomeStore>) -> prometheus::Result<Self> {
        let reported = IntCounterVec::new(
            Opts::new(
                "serval_outcomes_reported_total",
                "Outcomes reported, by result: matched, unmatched, expired, duplicate, other_replica \
                 (also counted in unmatched), forwarded (posted to the issuing replica)",
            ),
            &["result"],
        )?;
        let shadow_rows = IntCounterVec::new(
            Opts::new(
                "serval_shadow_rows_total",
                "Rows of live calls for the shadow version, by result: scored (and joined to the live row), \
                 shed (compute queues busy) or failed",
            ),
            &["result"],
        )?;
        let tracked = IntGauge::new(
            "serval_tracked_predictions",
            "Predictions held awaiting (or holding) an outcome within the outcome window",
        )?;
        let dropped = IntCounter::new(
            "serval_tracked_predictions_dropped_total",
            "Predictions dropped before their outcome window ended, to stay within --max-tracked-predictions",
        )?;
        let expired_unlabelled = IntCounter::new(
            "serval_tracked_predictions_expired_total",
            "Predictions that left the outcome window without an outcome",
        )?;
        let labels = ["model", "version", "arm"];
        let gauge = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &labels);
        let quality: Vec<(GaugeVec, ReadQuality)> = vec![
            (
                gauge("serval_online_auc", "ROC AUC of the predictions with an outcome")?,
                QualitySummary::auc,
            ),
            (
                gauge(
                    "serval_online_log_loss",
                    "Mean log loss of the predictions with an outcome",
                )?,
                |q| (q.outcomes() > 0).then(|| q.log_loss()),
            ),
            (
                gauge(
                    "serval_online_mean_score",
                    "Mean score of the predictions with an outcome",
                )?,
                |q| (q.outcomes() > 0).then(|| q.mean_score()),
            ),
            (
                gauge(
                    "serval_online_positive_rate",
                    "Observed positive rate of the predictions with an outcome",
                )?,
                |q| (q.outcomes() > 0).then(|| q.positive_rate()),
            ),
            (
                gauge(
                    "serval_online_outcomes",
                    "Predictions within the outcome window that have an outcome",
                )?,
                |q| Some(q.outcomes() as f64),
            ),
        ];
        let awaiting = GaugeVec::new(
            Opts::new(
                "serval_online_awaiting_outcomes",
                "Predictions within the outcome window still awaiting an outcome",
            ),
            &["model", "version"],
        )?;
        let mut descs: Vec<Desc> = Vec::new();
        let mut add = |collector: &dyn Collector| descs.extend(collector.desc().into_iter().cloned());
        add(&reported);
        add(&shadow_rows);
        add(&tracked);
        add(&dropped);
        add(&expired_unlabelled);
        for (gauge, _) in &quality {
            add(gauge);
        }
        add(&awaiting);
        Ok(OutcomeCollector {
            store,
            reported,
            shadow_rows,
            tracked,
            dropped,
            expired_unlabelled,
            quality,
            awaiting,
            descs,
            scraping: Mutex::new(()),
        })
    }
}

impl Collector for OutcomeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Correctness: the store's totals only grow and only this collector
        // moves the counters, one scrape at a time, so each catches up once.
        let _catching_up = self.scraping.lock().expect("metrics lock poisoned");
        let totals = &self.store.totals;
        let catch_up = |counter: &IntCounter, total: u64| counter.inc_by(total.saturating_sub(counter.get()));
        for (result, counter) in [
            ("matched", &totals.matched),
            ("unmatched", &totals.unmatched),
            ("expired", &totals.expired),
            ("duplicate", &totals.duplicate),
            ("other_replica", &totals.other_replica),
            ("forwarded", &totals.forwarded),
        ] {
            catch_up(
                &self.reported.with_label_values(&[result]),
                counter.load(Ordering::Relaxed),
            );
        }
        for (result, counter) in [
            ("scored", &totals.shadow_scored),
            ("shed", &totals.shadow_shed),
            ("failed", &totals.shadow_failed),
        ] {
            catch_up(
                &self.shadow_rows.with_label_values(&[result]),
                counter.load(Ordering::Relaxed),
            );
        }
        self.tracked
            .set(i64::try_from(self.store.tracked()).unwrap_or(i64::MAX));
        catch_up(&self.dropped, totals.dropped.load(Ordering::Relaxed));
        catch_up(
            &self.expired_unlabelled,
            totals.expired_unlabelled.load(Ordering::Relaxed),
        );
        // Rebuilt at every scrape: deleted versions simply stop appearing.
        for (gauge, _) in &self.quality {
            gauge.reset();
        }
        self.awaiting.reset();
        for model in self.store.models() {
            for quality in self.store.quality(&model) {
                let version = quality.version.to_string();
                self.awaiting
                    .with_label_values(&[model.as_str(), &version])
                    .set(quality.awaiting as f64);
                for (arm, summary) in [("live", &quality.live), ("shadow", &quality.shadow)] {
                    if summary.outcomes() == 0 {
                        continue;
                    }
                    for (gauge, read) in &self.quality {
                        if let Some(value) = read(summary) {
                            gauge
                                .with_label_values(&[model.as_str(), &version, arm])
                                .set(value);
                        }
                    }
                }
            }
        }
        let mut families = self.reported.collect();
        families.extend(self.shadow_rows.collect());
        families.extend(self.tracked.collect());
        families.extend(self.dropped.collect());
        families.extend(self.expired_unlabelled.collect());
        for (gauge, _) in &self.quality {
            families.extend(gauge.collect());
        }
        families.extend(self.awaiting.collect());
        families
    }
}
