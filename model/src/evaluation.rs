//! Binary classification metrics on a validation split: ROC AUC, log loss,
//! and the confusion-matrix metrics at a decision threshold.

use serde::{Deserialize, Serialize};

/// Quality of a model on held-back rows, as stored with each version.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Evaluation {
    pub auc: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub log_loss: f64,
    pub threshold: f64,
}

/// How the decision threshold is chosen on the validation split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "objective", content = "target")]
pub enum ThresholdObjective {
    /// Maximise F1.
    #[default]
    MaxF1,
    /// The lowest threshold reaching this precision (best recall).
    Precision(f64),
    /// The highest threshold reaching this recall (best precision).
    Recall(f64),
}

/// One candidate threshold of the sweep: predicting positive at or above
/// `threshold` gives these counts.
#[derive(Debug, Clone, Copy)]
struct Cut {
    threshold: f64,
    true_positives: f64,
    false_positives: f64,
}

/// Every distinct score as a threshold, highest first, with the counts it
/// gives.
fn sweep(scores: &[f32], labels: &[f32]) -> (Vec<Cut>, f64, f64) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let positives = labels.iter().filter(|&&l| l == 1.0).count() as f64;
    let negatives = labels.len() as f64 - positives;
    let mut cuts = Vec::new();
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let score = scores[order[i]];
        while i < order.len() && scores[order[i]] == score {
            if labels[order[i]] == 1.0 {
                tp += 1.0
            } else {
                fp += 1.0
            }
            i += 1;
        }
        cuts.push(Cut {
            threshold: f64::from(score),
            true_positives: tp,
            false_positives: fp,
        });
    }
    (cuts, positives, negatives)
}

/// The decision threshold for `objective` on validation scores.
pub fn choose_threshold(scores: &[f32], labels: &[f32], objective: ThresholdObjective) -> f64 {
    let (cuts, positives, _) = sweep(scores, labels);
    let precision = |c: &Cut| c.true_positives / (c.true_positives + c.false_positives).max(1.0);
    let recall = |c: &Cut| c.true_positives / positives.max(1.0);
    let f1 = |c: &Cut| {
        let (p, r) = (precision(c), recall(c));
        if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 }
    };
    let best = match objective {
        ThresholdObjective::MaxF1 => cuts.iter().max_by(|a, b| f1(a).total_cmp(&f1(b))),
        ThresholdObjective::Precision(target) => cuts
            .iter()
            .filter(|c| precision(c) >= target)
            .max_by(|a, b| recall(a).total_cmp(&recall(b)))
            .or_else(|| cuts.iter().max_by(|a, b| precision(a).total_cmp(&precision(b)))),
        ThresholdObjective::Recall(target) => cuts
            .iter()
            .filter(|c| recall(c) >= target)
            .max_by(|a, b| precision(a).total_cmp(&precision(b)))
            .or(cuts.last()),
    };
    best.map_or(0.5, |c| c.threshold)
}

/// The validation curves a report draws, downsampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Curves {
    /// (false positive rate, true positive rate, threshold), from (0, 0).
    pub roc: Vec<[f64; 3]>,
    /// (recall, precision, threshold).
    pub precision_recall: Vec<[f64; 3]>,
    /// Ten equal-width bins of predicted probability: (mean predicted,
    /// fraction positive, rows).
    pub calibration: Vec<[f64; 3]>,
    /// At the stored threshold.
    pub confusion: Confusion,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Confusion {
    pub true_positives: u64,
    pub false_positives: u64,
    pub true_negatives: u64,
    pub false_negatives: u64,
}

/// Points kept per curve.
const CURVE_POINTS: usize = 200;

/// The curves of `scores` against `labels`, and the confusion matrix of
/// the predicted labels `positive`.
pub fn curves(scores: &[f32], labels: &[f32], positive: &[bool]) -> Curves {
    let (cuts, positives, negatives) = sweep(scores, labels);
    let stride = cuts.len().div_ceil(CURVE_POINTS).max(1);
    let mut sampled: Vec<&Cut> = cuts.iter().step_by(stride).collect();
    if let Some(last) = cuts.last()
        && sampled.last().is_none_or(|c| c.threshold != last.threshold)
    {
        sampled.push(last);
    }
    let mut roc = vec![[0.0, 0.0, 1.0]];
    roc.extend(sampled.iter().map(|c| {
        [
            c.false_positives / negatives.max(1.0),
            c.true_positives / positives.max(1.0),
            c.threshold,
        ]
    }));
    let precision_recall = sampled
        .iter()
        .map(|c| {
            [
                c.true_positives / positives.max(1.0),
                c.true_positives / (c.true_positives + c.false_positives).max(1.0),
                c.threshold,
            ]
        })
        .collect();
    let mut bins = [(0.0f64, 0.0f64, 0u64); 10];
    for (&score, &label) in scores.iter().zip(labels) {
        let bin = ((f64::from(score) * 10.0) as usize).min(9);
        bins[bin].0 += f64::from(score);
        bins[bin].1 += f64::from(label);
        bins[bin].2 += 1;
    }
    let calibration = bins
        .iter()
        .filter(|(_, _, n)| *n > 0)
        .map(|(sum, hits, n)| [sum / *n as f64, hits / *n as f64, *n as f64])
        .collect();
    Curves {
        roc,
        precision_recall,
        calibration,
        confusion: Confusion::of(labels, positive),
    }
}

/// Evaluates `scores` (probabilities) against `labels` (1.0 / 0.0),
/// labelling a row positive when its score is at least `threshold`.
pub fn evaluate(scores: &[f32], labels: &[f32], threshold: f64) -> Evaluation {
    let positive: Vec<bool> = scores.iter().map(|&s| f64::from(s) >= threshold).collect();
    evaluate_labelled(scores, labels, &positive, threshold)
}

impl Confusion {
    /// The counts of `positive` (predicted labels) against `labels`.
    pub fn of(labels: &[f32], positive: &[bool]) -> Self {
        let mut c = Confusion::default();
        for (&label, &predicted) in labels.iter().zip(positive) {
            match (predicted, label == 1.0) {
                (true, true) => c.true_positives += 1,
                (true, false) => c.false_positives += 1,
                (false, false) => c.true_negatives += 1,
                (false, true) => c.false_negatives += 1,
            }
        }
        c
    }
}

/// Evaluates `scores` against `labels` with each row's predicted label
/// given (`positive`); `threshold` is reported as the one in use.
pub fn evaluate_labelled(scores: &[f32], labels: &[f32], positive: &[bool], threshold: f64) -> Evaluation {
    let c = Confusion::of(labels, positive);
    let (tp, fp, tn, r#fn) = (
        c.true_positives as f64,
        c.false_positives as f64,
        c.true_negatives as f64,
        c.false_negatives as f64,
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + r#fn);
    Evaluation {
        auc: roc_auc(scores, labels),
        accuracy: ratio(tp + tn, tp + tn + fp + r#fn),
        precision,
        recall,
        f1: ratio(2.0 * precision * recall, precision + recall),
        log_loss: log_loss(scores, labels),
        threshold,
    }
}

/// Area under the ROC curve: the probability that a random positive scores
/// above a random negative, ties counting half (Mann–Whitney U).
pub fn roc_auc(scores: &[f32], labels: &[f32]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels.iter().filter(|&&l| l == 1.0).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] == 1.0 {
                rank_sum += average_rank;
            }
        }
        i = j + 1;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Mean binary cross-entropy of probabilities, clipped away from 0 and 1.
pub fn log_loss(scores: &[f32], labels: &[f32]) -> f64 {
    const EPS: f64 = 1e-7;
    let total: f64 = scores
        .iter()
        .zip(labels)
        .map(|(&s, &l)| {
            let p = f64::from(s).clamp(EPS, 1.0 - EPS);
            if l == 1.0 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / scores.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_tied_scores() {
        let labels = [0.0, 0.0, 1.0, 1.0];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &labels), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &labels), 0.0);
        assert_eq!(roc_auc(&[0.5, 0.5, 0.5, 0.5], &labels), 0.5);
        // One positive above one negative, below the other: 0.5 + ties.
        assert!((roc_auc(&[0.1, 0.6, 0.5, 0.9], &labels) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn confusion_metrics_at_threshold() {
        let e = evaluate(&[0.9, 0.8, 0.3, 0.6], &[1.0, 0.0, 1.0, 0.0], 0.5);
        assert_eq!(e.accuracy, 0.25);
        assert_eq!(e.precision, 1.0 / 3.0);
        assert_eq!(e.recall, 0.5);
        assert!((e.f1 - 0.4).abs() < 1e-12);
        assert!(e.log_loss > 0.0);
    }

    #[test]
    fn thresholds_follow_the_objective() {
        let scores = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1];
        let labels = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0];
        // F1 is best down to 0.3: all 4 positives found, 4 of 6 right (0.8).
        assert_eq!(
            choose_threshold(&scores, &labels, ThresholdObjective::MaxF1),
            0.30000001192092896
        );
        assert_eq!(
            choose_threshold(&scores, &labels, ThresholdObjective::Precision(1.0)),
            0.800000011920929
        );
        assert_eq!(
            choose_threshold(&scores, &labels, ThresholdObjective::Recall(1.0)),
            0.30000001192092896
        );
        let positive: Vec<bool> = scores.iter().map(|&s| s >= 0.6).collect();
        let c = curves(&scores, &labels, &positive);
        assert_eq!(c.roc.first(), Some(&[0.0, 0.0, 1.0]));
        assert_eq!(c.roc.last().map(|p| [p[0], p[1]]), Some([1.0, 1.0]));
        assert_eq!(
            (
                c.confusion.true_positives,
                c.confusion.false_positives,
                c.confusion.false_negatives
            ),
            (3, 1, 1)
        );
        let rows: f64 = c.calibration.iter().map(|b| b[2]).sum();
        assert_eq!(rows, 8.0);
    }

    #[test]
    fn predicted_labels_may_come_from_a_threshold_per_row() {
        let scores = [0.2, 0.4, 0.6, 0.8];
        let labels = [0.0, 1.0, 0.0, 1.0];
        // Rows 0-1 cut at 0.3, rows 2-3 at 0.7.
        let positive = [false, true, false, true];
        let e = evaluate_labelled(&scores, &labels, &positive, 0.5);
        assert_eq!(
            (e.accuracy, e.precision, e.recall, e.threshold),
            (1.0, 1.0, 1.0, 0.5)
        );
        assert_eq!(e.auc, roc_auc(&scores, &labels));
        assert_eq!(evaluate(&scores, &labels, 0.5).accuracy, 0.5);
    }

    #[test]
    fn log_loss_is_finite_at_saturation() {
        assert!(log_loss(&[1.0, 0.0], &[0.0, 1.0]).is_finite());
    }
}
