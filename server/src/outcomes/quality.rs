//! [`QualitySummary`]: what online metrics need from a set of scored,
//! labelled predictions — score histograms per label, the log-loss and
//! score sums and the counts — and the metrics read from it (ROC AUC, log
//! loss, calibration, positive rate). Summaries add up: two replicas'
//! summaries merge into the fleet's, and a prediction leaving the outcome
//! window is taken out again, exactly.

/// Fine score bins: the AUC read from them is exact up to ties within one
/// bin (scores less than 0.001 apart).
pub const SCORE_BINS: usize = 1000;

/// Scores are clamped to this distance from 0 and 1 for the log loss.
const LOG_LOSS_EPSILON: f64 = 1e-7;

/// Label-conditioned score histograms and sums of labelled predictions.
/// Serialisable, so that replicas can publish theirs for the fleet's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QualitySummary {
    /// Positives per score bin.
    positive_bins: Vec<u64>,
    /// Negatives per score bin.
    negative_bins: Vec<u64>,
    positives: u64,
    negatives: u64,
    log_loss_sum: f64,
    score_sum: f64,
}

impl Default for QualitySummary {
    fn default() -> Self {
        QualitySummary {
            positive_bins: vec![0; SCORE_BINS],
            negative_bins: vec![0; SCORE_BINS],
            positives: 0,
            negatives: 0,
            log_loss_sum: 0.0,
            score_sum: 0.0,
        }
    }
}

fn bin_of(score: f32) -> usize {
    if score.is_nan() {
        return 0;
    }
    ((f64::from(score) * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1)
}

fn log_loss(score: f32, label: bool) -> f64 {
    let p = f64::from(score).clamp(LOG_LOSS_EPSILON, 1.0 - LOG_LOSS_EPSILON);
    if label { -p.ln() } else { -(1.0 - p).ln() }
}

/// One calibration bin: predictions whose score fell in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationBin {
    /// Mean score (from the fine bins' centres, within 0.0005).
    pub mean_predicted: f64,
    pub fraction_positive: f64,
    pub rows: u64,
}

impl QualitySummary {
    /// Adds one prediction with its observed label.
    pub fn add(&mut self, score: f32, label: bool) {
        let bin = bin_of(score);
        if label {
            self.positive_bins[bin] += 1;
            self.positives += 1;
        } else {
            self.negative_bins[bin] += 1;
            self.negatives += 1;
        }
        self.log_loss_sum += log_loss(score, label);
        self.score_sum += f64::from(score);
    }

    /// Takes out a prediction added before (when it leaves the window).
    pub fn remove(&mut self, score: f32, label: bool) {
        let bin = bin_of(score);
        let (bins, count) = if label {
            (&mut self.positive_bins, &mut self.positives)
        } else {
            (&mut self.negative_bins, &mut self.negatives)
        };
        if bins[bin] == 0 {
            debug_assert!(false, "removing a prediction that was not added");
            return;
        }
        bins[bin] -= 1;
        *count -= 1;
        if self.outcomes() == 0 {
            // Exactly zero again, whatever rounding the sums gathered.
            self.log_loss_sum = 0.0;
            self.score_sum = 0.0;
        } else {
            self.log_loss_sum -= log_loss(score, label);
            self.score_sum -= f64::from(score);
        }
    }

    /// Adds every prediction of `other` (another replica's, or another
    /// arm's): the result is what one summary of both would hold.
    pub fn merge(&mut self, other: &QualitySummary) {
        for (mine, theirs) in self.positive_bins.iter_mut().zip(&other.positive_bins) {
            *mine += theirs;
        }
        for (mine, theirs) in self.negative_bins.iter_mut().zip(&other.negative_bins) {
            *mine += theirs;
        }
        self.positives += other.positives;
        self.negatives += other.negatives;
        self.log_loss_sum += other.log_loss_sum;
        self.score_sum += other.score_sum;
    }

    /// Predictions with an outcome.
    pub fn outcomes(&self) -> u64 {
        self.positives + self.negatives
    }

    pub fn positives(&self) -> u64 {
        self.positives
    }

    /// ROC AUC: the chance that a positive scores above a negative, ties
    /// (the same bin) counting one half. None until both labels are seen.
    pub fn auc(&self) -> Option<f64> {
        if self.positives == 0 || self.negatives == 0 {
            return None;
        }
        let mut negatives_below = 0u64;
        let mut wins = 0.0;
        for (positives, negatives) in self.positive_bins.iter().zip(&self.negative_bins) {
            wins += *positives as f64 * (negatives_below as f64 + 0.5 * *negatives as f64);
            negatives_below += negatives;
        }
        Some(wins / (self.positives as f64 * self.negatives as f64))
    }

    /// Mean log loss; 0 without outcomes.
    pub fn log_loss(&self) -> f64 {
        self.mean(self.log_loss_sum)
    }

    pub fn mean_score(&self) -> f64 {
        self.mean(self.score_sum)
    }

    pub fn positive_rate(&self) -> f64 {
        self.mean(self.positives as f64)
    }

    fn mean(&self, sum: f64) -> f64 {
        match self.outcomes() {
            0 => 0.0,
            n => sum / n as f64,
        }
    }

    /// `bins` equal-width bins of the score (empty ones left out).
    pub fn calibration(&self, bins: usize) -> Vec<CalibrationBin> {
        let per_bin = SCORE_BINS / bins.max(1);
        (0..SCORE_BINS)
            .step_by(per_bin.max(1))
            .filter_map(|start| {
                let end = (start + per_bin).min(SCORE_BINS);
                let (mut rows, mut positives, mut score_sum) = (0u64, 0u64, 0.0);
                for bin in start..end {
                    let n = self.positive_bins[bin] + self.negative_bins[bin];
                    rows += n;
                    positives += self.positive_bins[bin];
                    score_sum += n as f64 * (bin as f64 + 0.5) / SCORE_BINS as f64;
                }
                (rows > 0).then(|| CalibrationBin {
                    mean_predicted: score_sum / rows as f64,
                    fraction_positive: positives as f64 / rows as f64,
                    rows,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The AUC by comparing every positive with every negative.
    fn exact_auc(rows: &[(f32, bool)]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for &(p, _) in rows.iter().filter(|r| r.1) {
            for &(n, _) in rows.iter().filter(|r| !r.1) {
                pairs += 1.0;
                wins += if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
        wins / pairs
    }

    fn noisy_rows(seed: u64, n: usize, signal: f32) -> Vec<(f32, bool)> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let label = rng.random_bool(0.3);
                let centre = if label { 0.5 + signal } else { 0.5 - signal };
                let score = (centre + rng.random_range(-0.4f32..0.4)).clamp(0.0, 1.0);
                (score, label)
            })
            .collect()
    }

    fn summary_of(rows: &[(f32, bool)]) -> QualitySummary {
        let mut summary = QualitySummary::default();
        for &(score, label) in rows {
            summary.add(score, label);
        }
        summary
    }

    #[test]
    fn the_auc_from_histograms_matches_the_pairwise_auc() {
        for (seed, signal) in [(1, 0.0), (2, 0.1), (3, 0.3), (4, -0.2)] {
            let rows = noisy_rows(seed, 2000, signal);
            let exact = exact_auc(&rows);
            let binned = summary_of(&rows).auc().unwrap();
            // Only pairs within one 0.001-wide bin can differ.
            assert!((exact - binned).abs() < 1e-3, "{seed}: {exact} vs {binned}");
        }
        // Scores on distinct bins: exactly the same.
        let rows: Vec<(f32, bool)> = (0..500)
            .map(|i| ((i as f32 + 0.5) / 1000.0, (i * 7919) % 3 == 0))
            .collect();
        assert_eq!(summary_of(&rows).auc().unwrap(), exact_auc(&rows));
    }

    #[test]
    fn perfect_inverted_and_one_sided_outcomes() {
        let perfect = summary_of(&[(0.9, true), (0.8, true), (0.1, false), (0.2, false)]);
        assert_eq!(perfect.auc(), Some(1.0));
        let inverted = summary_of(&[(0.1, true), (0.9, false)]);
        assert_eq!(inverted.auc(), Some(0.0));
        let tie = summary_of(&[(0.5, true), (0.5, false)]);
        assert_eq!(tie.auc(), Some(0.5));
        assert_eq!(summary_of(&[(0.5, true)]).auc(), None);
        assert_eq!(QualitySummary::default().auc(), None);
        assert_eq!(QualitySummary::default().log_loss(), 0.0);
    }

    #[test]
    fn log_loss_calibration_and_rates() {
        let summary = summary_of(&[(0.8, true), (0.2, false), (0.6, false), (1.0, true)]);
        let expected = (-(0.8f64.ln()) - 0.8f64.ln() - 0.4f64.ln() - (1.0 - LOG_LOSS_EPSILON).ln()) / 4.0;
        assert!(
            (summary.log_loss() - expected).abs() < 1e-6,
            "{}",
            summary.log_loss()
        );
        assert!((summary.mean_score() - 0.65).abs() < 1e-6);
        assert_eq!(summary.positive_rate(), 0.5);
        assert_eq!((summary.outcomes(), summary.positives()), (4, 2));
        let bins = summary.calibration(10);
        let rows: Vec<u64> = bins.iter().map(|b| b.rows).collect();
        assert_eq!(rows, vec![1, 1, 1, 1]);
        assert_eq!(
            bins[3].fraction_positive, 1.0,
            "the score of 1.0 falls in the last bin"
        );
        assert!((bins[0].mean_predicted - 0.2005).abs() < 1e-9);
        assert_eq!(bins[1].fraction_positive, 0.0);
    }

    #[test]
    fn merging_equals_summarising_together_and_removing_undoes_adding() {
        let first = noisy_rows(7, 700, 0.2);
        let second = noisy_rows(8, 300, 0.05);
        let mut merged = summary_of(&first);
        merged.merge(&summary_of(&second));
        let together = summary_of(&[first.clone(), second.clone()].concat());
        assert_eq!(merged.positive_bins, together.positive_bins);
        assert_eq!(merged.negative_bins, together.negative_bins);
        assert_eq!(merged.auc(), together.auc());
        assert!((merged.log_loss() - together.log_loss()).abs() < 1e-12);

        let mut shrinking = together;
        for &(score, label) in &second {
            shrinking.remove(score, label);
        }
        let alone = summary_of(&first);
        assert_eq!(shrinking.auc(), alone.auc());
        assert_eq!(shrinking.outcomes(), alone.outcomes());
        assert!((shrinking.log_loss() - alone.log_loss()).abs() < 1e-9);
        for &(score, label) in &first {
            shrinking.remove(score, label);
        }
        assert_eq!(shrinking, QualitySummary::default(), "empty again, sums included");
    }

    #[test]
    fn a_published_summary_reads_back_and_merges() {
        let mine = summary_of(&noisy_rows(9, 300, 0.2));
        let text = serde_json::to_string(&mine).unwrap();
        let theirs: QualitySummary = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (&theirs.positive_bins, &theirs.negative_bins, theirs.outcomes()),
            (&mine.positive_bins, &mine.negative_bins, mine.outcomes())
        );
        // JSON keeps the sums to their last bit or so.
        assert!((theirs.log_loss() - mine.log_loss()).abs() < 1e-12);
        let mut fleet = QualitySummary::default();
        fleet.merge(&mine);
        fleet.merge(&theirs);
        assert_eq!(fleet.outcomes(), 2 * mine.outcomes());
        assert_eq!(
            fleet.auc(),
            mine.auc(),
            "the same predictions twice rank the same"
        );
    }
}
