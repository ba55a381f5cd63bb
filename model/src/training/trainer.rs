//! The optimisation loop: mini-batch Adam on a numerically stable binary
//! cross-entropy, one validation pass per epoch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::optimizer::Adam;
use crate::error::ModelError;
use crate::evaluation::{log_loss, roc_auc};
use crate::network::{Mlp, MlpParameters, sigmoid};

/// Encoded training and validation rows.
pub struct EncodedData {
    pub width: usize,
    pub x_train: Vec<f32>,
    pub y_train: Vec<f32>,
    pub x_validation: Vec<f32>,
    pub y_validation: Vec<f32>,
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
    pub hidden_layers: Vec<usize>,
    pub learning_rate: f64,
    pub batch_size: usize,
    /// Epochs at most.
    pub epochs: usize,
    pub seed: u64,
    /// Stop after this many epochs without a better validation loss, and
    /// keep the best epoch's weights; 0 runs every epoch and keeps the last.
    pub patience: usize,
    /// L2 penalty on the parameters, added to the gradient.
    pub l2: f64,
    /// Share of hidden units dropped while training.
    pub dropout: f64,
    /// Weigh each class by the inverse of its frequency.
    pub class_weighting: bool,
    pub schedule: LearningRateSchedule,
}

/// What one epoch achieved.
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
    },
    /// An epoch ended.
    Epoch(&'a EpochReport),
}

/// Least time between two [`LoopEvent::Batch`] reports.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The trained network, its history and its validation scores.
pub struct LoopOutcome {
    pub network: Mlp,
    pub history: Vec<EpochReport>,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    pub validation_scores: Vec<f32>,
}

/// Binary cross-entropy of one logit `z` against a label `y`, computed as
/// `max(z, 0) - z·y + log(1 + e^-|z|)`, which never takes the log of 0 and
/// so stays finite when the sigmoid saturates (the naive
/// sigmoid-then-log form gives NaN there).
fn bce_of_logit(z: f32, y: f32) -> f32 {
    z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()
}

/// Forward pass for training: like [`Mlp::logits`], with inverted dropout
/// on the hidden layers drawn from the seeded generator.
fn training_logits(
    parameters: &MlpParameters,
    input: &Tensor,
    dropout: f64,
    rng: &mut ChaCha8Rng,
) -> candle_core::Result<Tensor> {
    let layers = parameters.vars.len() / 2;
    let mut x = input.clone();
    for (i, pair) in parameters.vars.chunks(2).enumerate() {
        x = x
            .matmul(&pair[0].as_tensor().t()?)?
            .broadcast_add(pair[1].as_tensor())?;
        if i + 1 < layers {
            x = x.relu()?;
            if dropout > 0.0 {
                let keep = 1.0 - dropout;
                let count = x.elem_count();
                let mask: Vec<f32> = (0..count)
                    .map(|_| {
                        if rng.random::<f64>() < keep {
                            (1.0 / keep) as f32
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
                x = (x * mask)?;
            }
        }
    }
    Ok(x)
}

/// Runs the loop. `on_event` sees progress within epochs and each epoch's
/// report as it ends; `cancel` stops the run between batches with
/// [`ModelError::Cancelled`].
pub fn run_loop(
    data: &EncodedData,
    settings: &LoopSettings,
    cancel: &AtomicBool,
    mut on_event: impl FnMut(LoopEvent<'_>),
) -> Result<LoopOutcome, ModelError> {
    let started = Instant::now();
    let width = data.width;
    let rows = data.y_train.len();
    let parameters = MlpParameters::init(width, &settings.hidden_layers, settings.seed)?;
    let network = parameters.network();
    let mut optimizer = Adam::new(parameters.vars.clone(), settings.learning_rate, settings.l2)?;
    let validation_input =
        Tensor::from_slice(&data.x_validation, (data.y_validation.len(), width), &Device::Cpu)?;
    let positives = data.y_train.iter().filter(|&&y| y == 1.0).count().max(1) as f32;
    let negatives = (rows as f32 - positives).max(1.0);
    let (positive_weight, negative_weight) = if settings.class_weighting {
        (rows as f32 / (2.0 * positives), rows as f32 / (2.0 * negatives))
    } else {
        (1.0, 1.0)
    };

    let mut shuffle_rng = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_add(1));
    let mut dropout_rng = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_add(2));
    let mut order: Vec<usize> = (0..rows).collect();
    let mut batch_x = Vec::with_capacity(settings.batch_size * width);
    let mut batch_y = Vec::with_capacity(settings.batch_size);
    let mut batch_w = Vec::with_capacity(settings.batch_size);
    let mut history = Vec::with_capacity(settings.epochs);
    let steps_per_epoch = rows.div_ceil(settings.batch_size);
    let total_steps = (steps_per_epoch * settings.epochs).max(1);
    let mut step = 0usize;
    let mut best: Option<BestEpoch> = None;

    for epoch in 1..=settings.epochs {
        order.shuffle(&mut shuffle_rng);
        let mut loss_sum = 0.0;
        let mut last_report = Instant::now();
        for (index, batch) in order.chunks(settings.batch_size).enumerate() {
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                on_event(LoopEvent::Batch {
                    epoch,
                    epochs: settings.epochs,
                    rows_done: index * settings.batch_size,
                    rows_total: rows,
                    elapsed_seconds: started.elapsed().as_secs_f64(),
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
            batch_x.clear();
            batch_y.clear();
            batch_w.clear();
            for &row in batch {
                batch_x.extend_from_slice(&data.x_train[row * width..(row + 1) * width]);
                let y = data.y_train[row];
                batch_y.push(y);
                batch_w.push(if y == 1.0 {
                    positive_weight
                } else {
                    negative_weight
                });
            }
            let x = Tensor::from_slice(&batch_x, (batch.len(), width), &Device::Cpu)?;
            let logits = training_logits(&parameters, &x, settings.dropout, &mut dropout_rng)?;
            let values = logits.flatten_all()?.to_vec1::<f32>()?;
            let weight_sum: f32 = batch_w.iter().sum();
            let mut slopes = Vec::with_capacity(values.len());
            for ((&z, &y), &w) in values.iter().zip(&batch_y).zip(&batch_w) {
                loss_sum += f64::from(w * bce_of_logit(z, y) / weight_sum) * batch.len() as f64;
                slopes.push(w * (sigmoid(z) - y) / weight_sum);
            }
            // The gradient of sum(z · dL/dz), with dL/dz held constant, is
            // the loss gradient: one product instead of a graph of a dozen
            // element-wise operations for the loss itself.
            let surrogate =
                (&logits * Tensor::from_vec(slopes, (batch.len(), 1), &Device::Cpu)?)?.sum_all()?;
            optimizer.step(&surrogate.backward()?)?;
        }
        let train_loss = loss_sum / rows as f64;
        if !train_loss.is_finite() {
            return Err(ModelError::Diverged {
                epoch,
                loss: train_loss,
            });
        }

        let logits = network
            .logits(&validation_input)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let scores: Vec<f32> = logits.into_iter().map(sigmoid).collect();
        let report = EpochReport {
            epoch,
            epochs: settings.epochs,
            train_loss,
            validation_loss: log_loss(&scores, &data.y_validation),
            validation_auc: roc_auc(&scores, &data.y_validation),
            elapsed_seconds: started.elapsed().as_secs_f64(),
            learning_rate: optimizer.learning_rate,
        };
        on_event(LoopEvent::Epoch(&report));
        history.push(report);
        let improved = best
            .as_ref()
            .is_none_or(|best| report.validation_loss < best.validation_loss);
        if improved || settings.patience == 0 {
            best = Some(BestEpoch {
                validation_loss: report.validation_loss,
                epoch,
                weights: optimizer.values().to_vec(),
                validation_scores: scores,
            });
        } else if best
            .as_ref()
            .is_some_and(|best| epoch - best.epoch >= settings.patience)
        {
            break;
        }
    }
    let best = best.expect("at least one epoch ran");
    Ok(LoopOutcome {
        network: parameters.snapshot_of(&best.weights)?,
        history,
        best_epoch: best.epoch,
        validation_scores: best.validation_scores,
    })
}

/// The epoch early stopping would restore: its loss, weights and scores.
struct BestEpoch {
    validation_loss: f64,
    epoch: usize,
    weights: Vec<Vec<f32>>,
    validation_scores: Vec<f32>,
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

    fn toy_data() -> EncodedData {
        // Positive exactly when x0 + x1 > 0.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut make = |n: usize| {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for _ in 0..n {
                let a: f32 = rand::Rng::random_range(&mut rng, -1.0..1.0);
                let b: f32 = rand::Rng::random_range(&mut rng, -1.0..1.0);
                x.extend([a, b]);
                y.push(if a + b > 0.0 { 1.0 } else { 0.0 });
            }
            (x, y)
        };
        let (x_train, y_train) = make(800);
        let (x_validation, y_validation) = make(200);
        EncodedData {
            width: 2,
            x_train,
            y_train,
            x_validation,
            y_validation,
        }
    }

    fn settings() -> LoopSettings {
        LoopSettings {
            hidden_layers: vec![16],
            learning_rate: 0.01,
            batch_size: 32,
            epochs: 5,
            seed: 9,
            patience: 0,
            l2: 0.0,
            dropout: 0.0,
            class_weighting: false,
            schedule: LearningRateSchedule::Constant,
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
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        assert!(a.history.last().unwrap().validation_auc > 0.97);
        let b = run_loop(&data, &settings(), &AtomicBool::new(false), |_| {}).unwrap();
        assert_eq!(
            a.network.to_safetensors().unwrap(),
            b.network.to_safetensors().unwrap()
        );
    }

    #[test]
    fn cancellation_stops_the_loop() {
        let err = run_loop(&toy_data(), &settings(), &AtomicBool::new(true), |_| {})
            .err()
            .unwrap();
        assert!(matches!(err, ModelError::Cancelled));
    }
}
