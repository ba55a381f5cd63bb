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

/// Evaluates `scores` (probabilities) against `labels` (1.0 / 0.0),
/// labelling a row positive when its score is at least `threshold`.
pub fn evaluate(scores: &[f32], labels: &[f32], threshold: f64) -> Evaluation {
    let (mut tp, mut fp, mut tn, mut r#fn) = (0f64, 0f64, 0f64, 0f64);
    for (&score, &label) in scores.iter().zip(labels) {
        match (f64::from(score) >= threshold, label == 1.0) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, false) => tn += 1.0,
            (false, true) => r#fn += 1.0,
        }
    }
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
    fn log_loss_is_finite_at_saturation() {
        assert!(log_loss(&[1.0, 0.0], &[0.0, 1.0]).is_finite());
    }
}
