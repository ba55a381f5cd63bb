//! The optimisation loop: mini-batch Adam on a numerically stable binary
//! cross-entropy, one validation pass per epoch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::ServalError;
use crate::metrics::{log_loss, roc_auc};
use crate::mlp::{Mlp, MlpParameters, sigmoid};

/// Encoded training and validation rows.
pub struct EncodedData {
    pub width: usize,
    pub x_train: Vec<f32>,
    pub y_train: Vec<f32>,
    pub x_validation: Vec<f32>,
    pub y_validation: Vec<f32>,
}

/// Settings of one run of the loop.
pub struct LoopSettings {
    pub hidden_layers: Vec<usize>,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub epochs: usize,
    pub seed: u64,
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
}

/// The trained network, its history and its validation scores.
pub struct LoopOutcome {
    pub network: Mlp,
    pub history: Vec<EpochReport>,
    pub validation_scores: Vec<f32>,
}

/// Mean binary cross-entropy of `logits` against `targets`, computed as
/// `max(z, 0) - z·y + log(1 + e^-|z|)`, which never takes the log of 0 and
/// so stays finite when the sigmoid saturates.
pub fn stable_bce_with_logits(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let softplus_neg_abs = logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    (logits.relu()? - (logits * targets)?)?
        .add(&softplus_neg_abs)?
        .mean_all()
}

/// Runs the loop. `on_epoch` sees each epoch's report as it ends; `cancel`
/// stops the run between batches with [`ServalError::Cancelled`].
pub fn run_loop(
    data: &EncodedData,
    settings: &LoopSettings,
    cancel: &AtomicBool,
    mut on_epoch: impl FnMut(&EpochReport),
) -> Result<LoopOutcome, ServalError> {
    let started = Instant::now();
    let width = data.width;
    let rows = data.y_train.len();
    let parameters = MlpParameters::init(width, &settings.hidden_layers, settings.seed)?;
    let network = parameters.network();
    let mut optimizer = AdamW::new(
        parameters.vars.clone(),
        ParamsAdamW {
            lr: settings.learning_rate,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let validation_input =
        Tensor::from_slice(&data.x_validation, (data.y_validation.len(), width), &Device::Cpu)?;

    let mut shuffle_rng = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_add(1));
    let mut order: Vec<usize> = (0..rows).collect();
    let mut batch_x = Vec::with_capacity(settings.batch_size * width);
    let mut batch_y = Vec::with_capacity(settings.batch_size);
    let mut history = Vec::with_capacity(settings.epochs);
    let mut validation_scores = Vec::new();

    for epoch in 1..=settings.epochs {
        order.shuffle(&mut shuffle_rng);
        let mut loss_sum = 0.0;
        for batch in order.chunks(settings.batch_size) {
            if cancel.load(Ordering::Relaxed) {
                return Err(ServalError::Cancelled("training was cancelled".into()));
            }
            batch_x.clear();
            batch_y.clear();
            for &row in batch {
                batch_x.extend_from_slice(&data.x_train[row * width..(row + 1) * width]);
                batch_y.push(data.y_train[row]);
            }
            let x = Tensor::from_slice(&batch_x, (batch.len(), width), &Device::Cpu)?;
            let y = Tensor::from_slice(&batch_y, (batch.len(), 1), &Device::Cpu)?;
            let loss = stable_bce_with_logits(&network.logits(&x)?, &y)?;
            optimizer.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * batch.len() as f64;
        }
        let train_loss = loss_sum / rows as f64;
        if !train_loss.is_finite() {
            return Err(ServalError::InvalidArgument(format!(
                "training diverged in epoch {epoch} (loss {train_loss}); lower the learning rate"
            )));
        }

        let logits = network
            .logits(&validation_input)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        validation_scores = logits.into_iter().map(sigmoid).collect();
        let report = EpochReport {
            epoch,
            epochs: settings.epochs,
            train_loss,
            validation_loss: log_loss(&validation_scores, &data.y_validation),
            validation_auc: roc_auc(&validation_scores, &data.y_validation),
            elapsed_seconds: started.elapsed().as_secs_f64(),
        };
        on_epoch(&report);
        history.push(report);
    }
    Ok(LoopOutcome {
        network: parameters.snapshot()?,
        history,
        validation_scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_loss_matches_the_textbook_formula_and_survives_saturation() {
        let logits = Tensor::new(&[[2.0f32], [-1.0], [0.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[[1.0f32], [0.0], [1.0]], &Device::Cpu).unwrap();
        let loss = stable_bce_with_logits(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let p = |z: f32| 1.0 / (1.0 + (-z).exp());
        let expected = -((p(2.0)).ln() + (1.0 - p(-1.0)).ln() + p(0.0).ln()) / 3.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");

        let saturated = Tensor::new(&[[200.0f32], [-200.0]], &Device::Cpu).unwrap();
        let wrong = Tensor::new(&[[0.0f32], [1.0]], &Device::Cpu).unwrap();
        let loss = stable_bce_with_logits(&saturated, &wrong)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(loss.is_finite() && (loss - 200.0).abs() < 1e-3, "{loss}");
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
        }
    }

    #[test]
    fn learns_a_separable_problem_deterministically() {
        let data = toy_data();
        let mut seen = Vec::new();
        let a = run_loop(&data, &settings(), &AtomicBool::new(false), |r| {
            seen.push(r.epoch)
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
        assert!(matches!(err, ServalError::Cancelled(_)));
    }
}
