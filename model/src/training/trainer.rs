//! The optimisation loop: cross-fitted members trained together. The rows
//! are split into `k` stratified folds and member `m` learns from every row
//! not in fold `m`, so each row has one member that never saw it. After
//! every epoch each row is scored by that member (out of fold), which
//! chooses the epoch to keep; the ensemble answers with the mean of its
//! members' logits.
//!
//! Mini-batch Adam on each member's binary cross-entropy over the rows it
//! learns from, inverted dropout after every hidden layer, and the
//! learning-rate schedule of the recipe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::device::Device;
use super::ensemble::{self, Batch, Shape};
use super::optimizer::Adam;
use super::selection::{HeldOut, HeldOutSelection};
use crate::error::ModelError;
use crate::evaluation::{ThresholdObjective, log_loss, roc_auc};
use crate::network::{Mlp, sigmoid};

/// The training rows in the form the loop reads.
pub struct TrainingRows {
    pub shape: Shape,
    /// `(rows, shape.numeric)`.
    pub numeric: Vec<f32>,
    /// `(rows, shape.categorical)`: each categorical column's hot slot.
    pub slots: Vec<u32>,
    /// 1.0 positive, 0.0 negative.
    pub labels: Vec<f32>,
    /// Each row's fold: the member that does not learn from it.
    pub folds: Vec<usize>,
    /// For each encoded input: `Ok(numeric input)` or `Err(one-hot slot)`.
    pub input_kind: Vec<Result<usize, usize>>,
}

impl TrainingRows {
    /// Rows to learn from.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// Row `row` as the encoder writes it.
    pub fn encoded_row(&self, row: usize) -> Vec<f32> {
        let (numeric, categorical) = (self.shape.numeric, self.shape.categorical);
        let hot = &self.slots[row * categorical..(row + 1) * categorical];
        self.input_kind
            .iter()
            .map(|kind| match *kind {
                Ok(i) => self.numeric[row * numeric + i],
                Err(slot) => f32::from(u8::from(hot.contains(&(slot as u32)))),
            })
            .collect()
    }

    /// The rows of each fold, ascending.
    pub fn rows_by_fold(&self) -> Vec<Vec<usize>> {
        let mut by_fold = vec![Vec::new(); self.shape.members];
        for (row, &fold) in self.folds.iter().enumerate() {
            by_fold[fold].push(row);
        }
        by_fold
    }

    fn gather(&self, rows: &[usize], numeric: &mut Vec<f32>, slots: &mut Vec<u32>) {
        let (n, c) = (self.shape.numeric, self.shape.categorical);
        numeric.clear();
        slots.clear();
        for &row in rows {
            numeric.extend_from_slice(&self.numeric[row * n..(row + 1) * n]);
            slots.extend_from_slice(&self.slots[row * c..(row + 1) * c]);
        }
    }
}

/// How the learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LearningRateSchedule {
    /// The same rate throughout.
    Constant,
    /// Cosine decay from the rate to a tenth of it over the epochs.
    #[default]
    Cosine,
}

/// Settings of one run of the loop.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub learning_rate: f64,
    pub batch_size: usize,
    /// Epochs at most.
    pub epochs: usize,
    pub seed: u64,
    /// Stop after this many epochs without a better out-of-fold AUC, and
    /// keep the best epoch's weights; 0 runs every epoch and keeps the last.
    pub patience: usize,
    /// L2 penalty on the parameters, added to the gradient.
    pub l2: f64,
    /// Share of hidden units dropped while training.
    pub dropout: f64,
    /// Weigh each class by the inverse of its frequency.
    pub class_weighting: bool,
    pub schedule: LearningRateSchedule,
    /// How the held-out figures' threshold is chosen.
    pub threshold: ThresholdObjective,
    /// Where the matrix products run.
    pub device: Device,
}

/// What one epoch achieved; validation figures are out of fold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub epochs: usize,
    pub train_loss: f64,
    pub validation_loss: f64,
    pub validation_auc: f64,
    pub elapsed_seconds: f64,
    #[serde(default)]
    pub learning_rate: f64,
}

/// What the loop reports while it runs.
#[derive(Debug, Clone, Copy)]
pub enum LoopEvent<'a> {
    /// Partway through an epoch (at most every half second).
    Batch {
        epoch: usize,
        epochs: usize,
        rows_done: usize,
        rows_total: usize,
        elapsed_seconds: f64,
        /// Rows a second so far in this epoch.
        rows_per_second: f64,
        /// The epoch's whole length at that rate, in seconds (0 before the
        /// first batch).
        epoch_seconds: f64,
    },
    /// An epoch ended.
    Epoch(&'a EpochReport),
}

/// Least time between two [`LoopEvent::Batch`] reports.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The trained ensemble and what chose it.
pub struct LoopOutcome {
    pub network: Mlp,
    pub history: Vec<EpochReport>,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    /// Each row scored out of fold at the kept epoch.
    pub best_out_of_fold: Vec<f32>,
    /// What the held-out figures score each row with.
    pub held_out: HeldOut,
    /// Seconds spent reading rows, in forward and backward passes, and
    /// scoring out of fold, over all epochs: where the time went.
    pub phases: Vec<(&'static str, f64)>,
}

/// Binary cross-entropy of one logit `z` against a label `y`, computed as
/// `max(z, 0) - z·y + log(1 + e^-|z|)`, which never takes the log of 0 and
/// so stays finite when the sigmoid saturates.
fn bce_of_logit(z: f32, y: f32) -> f32 {
    z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()
}

/// Each row scored by the member that did not learn from it.
fn out_of_fold_logits(
    device: &Device,
    parameters: &[Vec<f32>],
    data: &TrainingRows,
    rows_by_fold: &[Vec<usize>],
) -> Result<Vec<f32>, ModelError> {
    let single = Shape {
        members: 1,
        ..data.shape.clone()
    };
    let mut logits = vec![0.0f32; data.rows()];
    let (mut numeric, mut slots) = (Vec::new(), Vec::new());
    let mut unused = ChaCha8Rng::seed_from_u64(0);
    for (member, rows) in rows_by_fold.iter().enumerate() {
        let alone = ensemble::member(parameters, &data.shape, member);
        for chunk in rows.chunks(4096) {
            data.gather(chunk, &mut numeric, &mut slots);
            let batch = Batch {
                rows: chunk.len(),
                numeric: &numeric,
                slots: &slots,
            };
            let (scores, _) = ensemble::forward(device, &alone, &single, &batch, 0.0, &mut unused)?;
            for (&row, z) in chunk.iter().zip(scores) {
                logits[row] = z;
            }
        }
    }
    Ok(logits)
}

/// The epoch whose weights are kept so far.
struct KeptEpoch {
    /// Its out-of-fold AUC.
    auc: f64,
    epoch: usize,
    weights: Vec<Vec<f32>>,
    out_of_fold: Vec<f32>,
}

/// One mini-batch of training rows: their inputs, labels and folds.
pub struct TrainingBatch<'a> {
    pub rows: usize,
    /// `(rows, shape.numeric)`.
    pub numeric: &'a [f32],
    /// `(rows, shape.categorical)`.
    pub slots: &'a [u32],
    pub labels: &'a [f32],
    pub folds: &'a [usize],
}

/// Where the loop's training rows come from: every epoch visits each row
/// once, in an order drawn from the loop's shuffling generator.
pub trait TrainingStream {
    /// Rows an epoch visits.
    fn rows(&self) -> usize;
    /// Per member: (positive rows, rows) among the rows it learns from.
    fn member_counts(&self, members: usize) -> Vec<(usize, usize)>;
    /// Calls `visit` with every row once, in mini-batches of at most
    /// `batch_size` rows, in an order drawn from `rng`.
    fn epoch(
        &mut self,
        batch_size: usize,
        rng: &mut ChaCha8Rng,
        visit: &mut dyn FnMut(&TrainingBatch<'_>) -> Result<(), ModelError>,
    ) -> Result<(), ModelError>;
}

/// Rows held in memory, shuffled row by row each epoch.
struct InMemoryStream<'a> {
    data: &'a TrainingRows,
    order: Vec<usize>,
}

impl TrainingStream for InMemoryStream<'_> {
    fn rows(&self) -> usize {
        self.data.rows()
    }

    fn member_counts(&self, members: usize) -> Vec<(usize, usize)> {
        (0..members)
            .map(|m| {
                let (mut positives, mut count) = (0usize, 0usize);
                for (row, &fold) in self.data.folds.iter().enumerate() {
                    if fold != m {
                        count += 1;
                        positives += usize::from(self.data.labels[row] == 1.0);
                    }
                }
                (positives, count)
            })
            .collect()
    }

    fn epoch(
        &mut self,
        batch_size: usize,
        rng: &mut ChaCha8Rng,
        visit: &mut dyn FnMut(&TrainingBatch<'_>) -> Result<(), ModelError>,
    ) -> Result<(), ModelError> {
        self.order.shuffle(rng);
        let (mut numeric, mut slots, mut labels, mut folds) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for batch_rows in self.order.chunks(batch_size) {
            self.data.gather(batch_rows, &mut numeric, &mut slots);
            labels.clear();
            folds.clear();
            labels.extend(batch_rows.iter().map(|&r| self.data.labels[r]));
            folds.extend(batch_rows.iter().map(|&r| self.data.folds[r]));
            visit(&TrainingBatch {
                rows: batch_rows.len(),
                numeric: &numeric,
                slots: &slots,
                labels: &labels,
                folds: &folds,
            })?;
        }
        Ok(())
    }
}

/// Runs the loop on rows held in memory, which are also the rows scored
/// out of fold. `on_event` sees progress within epochs and each epoch's
/// report as it ends; `cancel` stops the run between batches with
/// [`ModelError::Cancelled`].
pub fn run_loop(
    data: &TrainingRows,
    settings: &LoopSettings,
    cancel: &AtomicBool,
    on_event: impl FnMut(LoopEvent<'_>),
) -> Result<LoopOutcome, ModelError> {
    let mut stream = InMemoryStream {
        data,
        order: (0..data.rows()).collect(),
    };
    run_streamed_loop(&mut stream, data, settings, cancel, on_event)
}

/// Runs the loop on the rows of `stream`; each epoch scores the rows of
/// `scored` (which must share the stream's shape and fold rule) out of
/// fold, and they choose the epoch and the held-out figures.
pub fn run_streamed_loop(
    stream: &mut dyn TrainingStream,
    scored: &TrainingRows,
    settings: &LoopSettings,
    cancel: &AtomicBool,
    mut on_event: impl FnMut(LoopEvent<'_>),
) -> Result<LoopOutcome, ModelError> {
    let started = Instant::now();
    let shape = &scored.shape;
    let members = shape.members;
    let rows = stream.rows();
    let rows_by_fold = scored.rows_by_fold();
    let mut optimizer = Adam::new(
        ensemble::init(shape, settings.seed),
        settings.learning_rate,
        settings.l2,
    );

    // Each member's weight for a positive and a negative row it learns from.
    let class_weights: Vec<(f32, f32)> = stream
        .member_counts(members)
        .into_iter()
        .map(|(positives, count)| {
            if !settings.class_weighting {
                return (1.0, 1.0);
            }
            let positives = positives.max(1) as f32;
            let negatives = (count as f32 - positives).max(1.0);
            (count as f32 / (2.0 * positives), count as f32 / (2.0 * negatives))
        })
        .collect();

    let mut shuffle_rng = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_add(1));
    let mut dropout_rng = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_add(2));
    let mut history = Vec::with_capacity(settings.epochs);
    let mut held_out = HeldOutSelection::new(&scored.labels, &scored.folds, members, settings.threshold);
    let steps_per_epoch = rows.div_ceil(settings.batch_size);
    let total_steps = (steps_per_epoch * settings.epochs).max(1);
    let mut step = 0usize;
    let mut best: Option<KeptEpoch> = None;
    let (mut reading_seconds, mut learning_seconds, mut scoring_seconds) = (0.0, 0.0, 0.0);

    for epoch in 1..=settings.epochs {
        let mut loss_sum = 0.0;
        let mut last_report = Instant::now();
        let epoch_started = Instant::now();
        let mut rows_done = 0usize;
        stream.epoch(
            settings.batch_size,
            &mut shuffle_rng,
            &mut |batch: &TrainingBatch<'_>| {
                let batch_started = Instant::now();
                if last_report.elapsed() >= PROGRESS_EVERY {
                    last_report = Instant::now();
                    let seconds = epoch_started.elapsed().as_secs_f64();
                    let rows_per_second = rows_done as f64 / seconds.max(1e-9);
                    on_event(LoopEvent::Batch {
                        epoch,
                        epochs: settings.epochs,
                        rows_done,
                        rows_total: rows,
                        elapsed_seconds: started.elapsed().as_secs_f64(),
                        rows_per_second,
                        epoch_seconds: if rows_done > 0 {
                            rows as f64 / rows_per_second
                        } else {
                            0.0
                        },
                    });
                }
                if cancel.load(Ordering::Relaxed) {
                    return Err(ModelError::Cancelled);
                }
                optimizer.learning_rate = match settings.schedule {
                    LearningRateSchedule::Constant => settings.learning_rate,
                    LearningRateSchedule::Cosine => {
                        let progress = step as f64 / total_steps as f64;
                        settings.learning_rate
                            * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
                    }
                };
                step += 1;
                rows_done += batch.rows;
                let inputs = Batch {
                    rows: batch.rows,
                    numeric: batch.numeric,
                    slots: batch.slots,
                };
                let (logits, activations) = ensemble::forward(
                    &settings.device,
                    optimizer.values(),
                    shape,
                    &inputs,
                    settings.dropout,
                    &mut dropout_rng,
                )?;
                // Member m's loss is its weighted mean over the rows it learns
                // from: the slope of each logit, and the loss for the report.
                let mut slopes = vec![0.0f32; logits.len()];
                let mut batch_loss = 0.0f64;
                for m in 0..members {
                    let (mut weight_sum, mut loss) = (0.0f32, 0.0f32);
                    for i in 0..batch.rows {
                        if batch.folds[i] == m {
                            continue;
                        }
                        let y = batch.labels[i];
                        let w = if y == 1.0 {
                            class_weights[m].0
                        } else {
                            class_weights[m].1
                        };
                        let z = logits[m * batch.rows + i];
                        slopes[m * batch.rows + i] = w * (sigmoid(z) - y);
                        loss += w * bce_of_logit(z, y);
                        weight_sum += w;
                    }
                    if weight_sum > 0.0 {
                        for slope in &mut slopes[m * batch.rows..(m + 1) * batch.rows] {
                            *slope /= weight_sum;
                        }
                        batch_loss += f64::from(loss / weight_sum);
                    }
                }
                loss_sum += batch_loss / members as f64 * batch.rows as f64;
                let gradients = ensemble::backward(
                    &settings.device,
                    optimizer.values(),
                    shape,
                    &inputs,
                    &activations,
                    &slopes,
                )?;
                optimizer.step(&gradients);
                learning_seconds += batch_started.elapsed().as_secs_f64();
                Ok(())
            },
        )?;
        reading_seconds += epoch_started.elapsed().as_secs_f64();
        let train_loss = loss_sum / rows as f64;
        if !train_loss.is_finite() {
            return Err(ModelError::Diverged {
                epoch,
                loss: train_loss,
            });
        }

        let scoring_started = Instant::now();
        let logits = out_of_fold_logits(&settings.device, optimizer.values(), scored, &rows_by_fold)?;
        let scores: Vec<f32> = logits.iter().map(|&z| sigmoid(z)).collect();
        let report = EpochReport {
            epoch,
            epochs: settings.epochs,
            train_loss,
            validation_loss: log_loss(&scores, &scored.labels),
            validation_auc: roc_auc(&scores, &scored.labels),
            elapsed_seconds: started.elapsed().as_secs_f64(),
            learning_rate: optimizer.learning_rate,
        };
        on_event(LoopEvent::Epoch(&report));
        history.push(report);
        held_out.observe(&logits);
        scoring_seconds += scoring_started.elapsed().as_secs_f64();
        let improved = best.as_ref().is_none_or(|kept| report.validation_auc > kept.auc);
        if improved || settings.patience == 0 {
            best = Some(KeptEpoch {
                auc: report.validation_auc,
                epoch,
                weights: optimizer.values().to_vec(),
                out_of_fold: logits,
            });
        } else if best
            .as_ref()
            .is_some_and(|kept| epoch - kept.epoch >= settings.patience)
        {
            break;
        }
    }
    let kept = best.expect("at least one epoch ran");
    Ok(LoopOutcome {
        network: ensemble::network(&kept.weights, shape, &scored.input_kind)?,
        history,
        best_epoch: kept.epoch,
        best_out_of_fold: kept.out_of_fold,
        held_out: held_out.finish(),
        phases: vec![
            ("reading rows", reading_seconds - learning_seconds),
            ("forward and backward", learning_seconds),
            ("scoring out of fold", scoring_seconds),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_loss_matches_the_textbook_formula_and_survives_saturation() {
        let p = |z: f32| 1.0 / (1.0 + (-z).exp());
        for (z, y) in [(2.0f32, 1.0f32), (-1.0, 0.0), (0.0, 1.0), (0.7, 0.0)] {
            let textbook = -(y * p(z).ln() + (1.0 - y) * (1.0 - p(z)).ln());
            assert!((bce_of_logit(z, y) - textbook).abs() < 1e-6, "{z} {y}");
        }
        assert!((bce_of_logit(200.0, 0.0) - 200.0).abs() < 1e-3);
        assert!((bce_of_logit(-200.0, 1.0) - 200.0).abs() < 1e-3);
        assert!(bce_of_logit(200.0, 1.0).abs() < 1e-6);
    }

    /// Positive exactly when x0 + x1 > 0 (or, for the categorical column,
    /// when its slot is 1); four folds.
    fn toy_data() -> TrainingRows {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let rows = 1000;
        let (mut numeric, mut slots, mut labels, mut folds) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in 0..rows {
            let a: f32 = rng.random_range(-1.0..1.0);
            let b: f32 = rng.random_range(-1.0..1.0);
            let slot = rng.random_range(0..3u32);
            numeric.extend([a, b]);
            slots.push(slot);
            labels.push(if a + b + if slot == 1 { 0.5 } else { 0.0 } > 0.0 {
                1.0
            } else {
                0.0
            });
            folds.push(row % 4);
        }
        TrainingRows {
            shape: Shape {
                numeric: 2,
                slots: 3,
                categorical: 1,
                members: 4,
                hidden: vec![16, 8],
            },
            numeric,
            slots,
            labels,
            folds,
            input_kind: vec![Ok(0), Ok(1), Err(0), Err(1), Err(2)],
        }
    }

    fn settings() -> LoopSettings {
        LoopSettings {
            learning_rate: 0.01,
            batch_size: 64,
            epochs: 6,
            seed: 9,
            patience: 0,
            l2: 0.0,
            dropout: 0.1,
            class_weighting: false,
            schedule: LearningRateSchedule::Cosine,
            threshold: ThresholdObjective::MaxF1,
            device: Device::Cpu,
        }
    }

    #[test]
    fn learns_a_separable_problem_deterministically() {
        let data = toy_data();
        let mut seen = Vec::new();
        let a = run_loop(&data, &settings(), &AtomicBool::new(false), |event| {
            if let LoopEvent::Epoch(report) = event {
                seen.push(report.epoch)
            }
        })
        .unwrap();
        assert_eq!(seen, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(a.history.len(), 6);
        assert_eq!(a.best_out_of_fold.len(), data.rows());
        assert_eq!(a.held_out.scores.len(), data.rows());
        assert!(
            a.history.last().unwrap().validation_auc > 0.97,
            "{:?}",
            a.history.last()
        );
        assert_eq!(a.network.members(), 4);
        // The ensemble scores the encoded rows well too.
        let encoded: Vec<f32> = (0..data.rows()).flat_map(|r| data.encoded_row(r)).collect();
        let scores = a.network.predict(&encoded).unwrap();
        assert!(roc_auc(&scores, &data.labels) > 0.97);
        let b = run_loop(&data, &settings(), &AtomicBool::new(false), |_| {}).unwrap();
        assert_eq!(
            a.network.to_safetensors().unwrap(),
            b.network.to_safetensors().unwrap()
        );
    }

    #[test]
    fn each_row_is_scored_by_the_member_that_did_not_learn_from_it() {
        let data = toy_data();
        let outcome = run_loop(&data, &settings(), &AtomicBool::new(false), |_| {}).unwrap();
        // Without patience the last epoch is kept.
        let last = &outcome.best_out_of_fold;
        for row in [0, 1, 2, 3, 500, 999] {
            let member = outcome.network.member(data.folds[row]).unwrap();
            let z = member.logits_of(&data.encoded_row(row)).unwrap()[0];
            assert!((z - last[row]).abs() < 1e-4, "row {row}: {z} vs {}", last[row]);
        }
    }

    #[test]
    fn cancellation_stops_the_loop() {
        let err = run_loop(&toy_data(), &settings(), &AtomicBool::new(true), |_| {})
            .err()
            .unwrap();
        assert!(matches!(err, ModelError::Cancelled));
    }
}
