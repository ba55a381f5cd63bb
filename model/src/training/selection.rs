//! What the held-out (test) figures score each row with, chosen epoch by
//! epoch while the loop runs: for each fold, the epoch whose out-of-fold
//! scores have the best AUC on the *other* folds, and the threshold chosen
//! on those other folds at that epoch. Only the chosen epoch's scores are
//! kept (one per row), so memory does not grow with the epochs.

use crate::evaluation::{ThresholdObjective, choose_threshold, roc_auc};
use crate::network::sigmoid;

/// Scores and predicted labels of rows that chose nothing: each row's
/// score at the epoch its fold's others chose, and whether it reaches the
/// threshold they chose.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOut {
    pub scores: Vec<f32>,
    pub positive: Vec<bool>,
}

/// Keeps, per fold, the best epoch seen so far by the other folds' AUC.
pub struct HeldOutSelection<'a> {
    labels: &'a [f32],
    folds: &'a [usize],
    objective: ThresholdObjective,
    /// The best AUC the other folds have seen for each fold; `None` until
    /// the first epoch (which is kept whatever its AUC, so a fold always
    /// has scores).
    best_auc: Vec<Option<f64>>,
    held_out: HeldOut,
}

impl<'a> HeldOutSelection<'a> {
    /// A selection over `members` folds; `folds[row]` is each row's fold.
    pub fn new(labels: &'a [f32], folds: &'a [usize], members: usize, objective: ThresholdObjective) -> Self {
        HeldOutSelection {
            labels,
            folds,
            objective,
            best_auc: vec![None; members],
            held_out: HeldOut {
                scores: vec![0.0; labels.len()],
                positive: vec![false; labels.len()],
            },
        }
    }

    /// Sees one epoch's out-of-fold logits (one per row); the first epoch
    /// with a strictly better AUC on a fold's others replaces that fold's
    /// rows.
    pub fn observe(&mut self, logits: &[f32]) {
        let probabilities: Vec<f32> = logits.iter().map(|&z| sigmoid(z)).collect();
        let (mut other_scores, mut other_labels) = (Vec::new(), Vec::new());
        for fold in 0..self.best_auc.len() {
            other_scores.clear();
            other_labels.clear();
            for (row, &of) in self.folds.iter().enumerate() {
                if of != fold {
                    other_scores.push(probabilities[row]);
                    other_labels.push(self.labels[row]);
                }
            }
            let auc = roc_auc(&other_scores, &other_labels);
            let better = match self.best_auc[fold] {
                None => true,
                Some(best) => auc > best,
            };
            if !better {
                continue;
            }
            // NaN never counts as seen: a later epoch with a real AUC wins.
            let seen = self.best_auc[fold].unwrap_or(f64::NEG_INFINITY);
            self.best_auc[fold] = Some(if auc > seen { auc } else { seen });
            let threshold = choose_threshold(&other_scores, &other_labels, self.objective);
            for (row, &of) in self.folds.iter().enumerate() {
                if of == fold {
                    let score = probabilities[row];
                    self.held_out.scores[row] = score;
                    self.held_out.positive[row] = f64::from(score) >= threshold;
                }
            }
        }
    }

    /// The scores and labels chosen over every epoch seen.
    pub fn finish(self) -> HeldOut {
        self.held_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The selection as it was made once all epochs were kept: for each
    /// fold, the first epoch with the best AUC on the others.
    fn chosen_after_all_epochs(
        epochs: &[Vec<f32>],
        labels: &[f32],
        folds: &[usize],
        members: usize,
        objective: ThresholdObjective,
    ) -> HeldOut {
        let probabilities: Vec<Vec<f32>> = epochs
            .iter()
            .map(|logits| logits.iter().map(|&z| sigmoid(z)).collect())
            .collect();
        let mut scores = vec![0f32; labels.len()];
        let mut positive = vec![false; labels.len()];
        for fold in 0..members {
            let others: Vec<usize> = (0..labels.len()).filter(|&r| folds[r] != fold).collect();
            let other_labels: Vec<f32> = others.iter().map(|&r| labels[r]).collect();
            let of_others = |epoch: &Vec<f32>| -> Vec<f32> { others.iter().map(|&r| epoch[r]).collect() };
            let mut chosen = 0;
            let mut best_auc = f64::NEG_INFINITY;
            for (epoch, epoch_scores) in probabilities.iter().enumerate() {
                let auc = roc_auc(&of_others(epoch_scores), &other_labels);
                if auc > best_auc {
                    (chosen, best_auc) = (epoch, auc);
                }
            }
            let threshold = choose_threshold(&of_others(&probabilities[chosen]), &other_labels, objective);
            for row in (0..labels.len()).filter(|&r| folds[r] == fold) {
                scores[row] = probabilities[chosen][row];
                positive[row] = f64::from(scores[row]) >= threshold;
            }
        }
        HeldOut { scores, positive }
    }

    #[test]
    fn choosing_as_epochs_arrive_equals_choosing_after_all_of_them() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let rows = 400;
        let members = 4;
        let labels: Vec<f32> = (0..rows)
            .map(|_| f32::from(u8::from(rng.random_bool(0.3))))
            .collect();
        let folds: Vec<usize> = (0..rows).map(|r| r % members).collect();
        // Epochs whose signal first grows then fades, differently per fold,
        // so folds choose different epochs.
        let epochs: Vec<Vec<f32>> = (0..8)
            .map(|epoch| {
                (0..rows)
                    .map(|r| {
                        let strength = 1.0 - ((epoch as f32) - (2 + r % members) as f32).abs() * 0.3;
                        labels[r] * strength + rng.random_range(-1.0..1.0)
                    })
                    .collect()
            })
            .collect();
        for objective in [
            ThresholdObjective::MaxF1,
            ThresholdObjective::Precision(0.5),
            ThresholdObjective::Recall(0.8),
        ] {
            let mut selection = HeldOutSelection::new(&labels, &folds, members, objective);
            for logits in &epochs {
                selection.observe(logits);
            }
            let streamed = selection.finish();
            let expected = chosen_after_all_epochs(&epochs, &labels, &folds, members, objective);
            assert_eq!(streamed, expected);
        }
        // The folds did not all choose the same epoch.
        let chosen: Vec<usize> = (0..members)
            .map(|fold| {
                let expected =
                    chosen_after_all_epochs(&epochs, &labels, &folds, members, ThresholdObjective::MaxF1);
                let row = fold;
                (0..epochs.len())
                    .find(|&e| sigmoid(epochs[e][row]) == expected.scores[row])
                    .unwrap()
            })
            .collect();
        assert!(chosen.iter().any(|&e| e != chosen[0]), "{chosen:?}");
    }

    #[test]
    fn a_fold_keeps_its_first_epoch_when_no_auc_is_defined() {
        // One class only: every AUC is undefined, so each fold keeps epoch 1.
        let labels = vec![1.0f32; 8];
        let folds: Vec<usize> = (0..8).map(|r| r % 2).collect();
        let mut selection = HeldOutSelection::new(&labels, &folds, 2, ThresholdObjective::MaxF1);
        selection.observe(&[0.5; 8]);
        selection.observe(&[2.0; 8]);
        assert!(selection.finish().scores.iter().all(|&s| s == sigmoid(0.5)));
    }
}
