//! Row explanations: integrated gradients of the network's logit with
//! respect to its encoded inputs, from the training mean, and the network
//! scorer the batching layer runs (scores, plus explanations when asked).
//!
//! Integrated gradients (Sundararajan et al., 2017) attribute
//! `logit(x) - logit(baseline)` to the inputs: `(x - b) * mean over the
//! straight path from b to x of the gradient`. The baseline is the training
//! split's mean encoded row, so an attribution reads "this value moves the
//! score away from that of an average user". The path integral is a
//! midpoint Riemann sum; a ReLU network's gradient is piecewise constant
//! along the path, so the sum is exact between kinks and the error comes
//! from the few segments containing one. Rows start with
//! [`STEP_SCHEDULE`]`[0]` steps; a row whose attributions miss completeness
//! (sum = logit difference) by more than [`completeness_tolerance`] is
//! integrated again with more steps, up to the last entry. All rows of a
//! batch at one step count are one tensor computation.

use candle_core::{DType, Device, Tensor};

use crate::batching::BatchPredictor;
use crate::error::ServalError;
use crate::mlp::Mlp;

/// Interpolated rows evaluated in one tensor computation at most (rows ×
/// steps), which bounds an explanation pass's memory.
const PATH_POINTS: usize = 16_384;

/// Integration steps tried in turn for rows that miss completeness.
pub const STEP_SCHEDULE: [usize; 3] = [64, 256, 1024];

/// Largest acceptable |sum of attributions - (logit - baseline logit)|:
/// 1 % of the logit difference, and never below 1e-3 (f32 rounding over a
/// row that sits at the baseline).
pub fn completeness_tolerance(logit_difference: f32) -> f32 {
    (0.01 * logit_difference.abs()).max(1e-3)
}

/// One row's explanation in the encoded space.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedExplanation {
    /// One attribution per encoded input.
    pub attributions: Vec<f32>,
    pub logit: f32,
    pub baseline_logit: f32,
    /// sum(attributions) - (logit - baseline_logit).
    pub completeness_gap: f32,
    pub steps: u32,
}

impl Mlp {
    /// The gradient of each row's logit with respect to its inputs, shape
    /// `(rows, input_width)`: the forward pass keeps each hidden layer's
    /// ReLU mask, and the backward pass multiplies through the weights.
    pub fn input_gradients(&self, input: &Tensor) -> candle_core::Result<Tensor> {
        let layers = self.layers();
        let last = layers.len() - 1;
        let mut masks = Vec::with_capacity(last);
        let mut x = input.clone();
        for (i, layer) in layers.iter().enumerate() {
            let z = candle_nn::Module::forward(layer, &x)?;
            if i < last {
                masks.push(z.gt(0f32)?.to_dtype(DType::F32)?);
                x = z.relu()?;
            }
        }
        let rows = input.dim(0)?;
        let mut gradient = Tensor::ones((rows, 1), DType::F32, &Device::Cpu)?;
        for (i, layer) in layers.iter().enumerate().rev() {
            // (rows, out) × (out, in): the gradient with respect to this
            // layer's input.
            gradient = gradient.matmul(layer.weight())?;
            if i > 0 {
                gradient = (gradient * &masks[i - 1])?;
            }
        }
        Ok(gradient)
    }

    /// Logits of row-major `rows`.
    pub fn logits_of(&self, rows: &[f32]) -> Result<Vec<f32>, ServalError> {
        let width = self.input_width();
        let input = Tensor::from_slice(rows, (rows.len() / width, width), &Device::Cpu)?;
        Ok(self.logits(&input)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// Integrated gradients of every row of `rows` (row-major) from `baseline`.
pub fn integrated_gradients(
    network: &Mlp,
    baseline: &[f32],
    rows: &[f32],
) -> Result<Vec<EncodedExplanation>, ServalError> {
    let width = network.input_width();
    if baseline.len() != width || !rows.len().is_multiple_of(width) {
        return Err(ServalError::Internal(format!(
            "explaining rows of {width} values with a baseline of {} and {} values",
            baseline.len(),
            rows.len()
        )));
    }
    let count = rows.len() / width;
    let logits = network.logits_of(rows)?;
    let baseline_logit = network.logits_of(baseline)?[0];
    let mut explanations: Vec<Option<EncodedExplanation>> = vec![None; count];
    let mut pending: Vec<usize> = (0..count).collect();
    for (attempt, &steps) in STEP_SCHEDULE.iter().enumerate() {
        let selected: Vec<&[f32]> = pending
            .iter()
            .map(|&r| &rows[r * width..(r + 1) * width])
            .collect();
        // Bounded memory: at most PATH_POINTS interpolated rows at a time.
        let mut attributions = Vec::with_capacity(selected.len());
        for chunk in selected.chunks((PATH_POINTS / steps).max(1)) {
            attributions.extend(path_integral(network, baseline, chunk, steps)?);
        }
        let last_attempt = attempt + 1 == STEP_SCHEDULE.len();
        let mut still_pending = Vec::new();
        for (&row, attributions) in pending.iter().zip(attributions) {
            let difference = logits[row] - baseline_logit;
            let total: f64 = attributions.iter().map(|&a| f64::from(a)).sum();
            let gap = (total - f64::from(difference)) as f32;
            if gap.abs() > completeness_tolerance(difference) && !last_attempt {
                still_pending.push(row);
                continue;
            }
            explanations[row] = Some(EncodedExplanation {
                attributions,
                logit: logits[row],
                baseline_logit,
                completeness_gap: gap,
                steps: steps as u32,
            });
        }
        pending = still_pending;
        if pending.is_empty() {
            break;
        }
    }
    Ok(explanations
        .into_iter()
        .map(|e| e.expect("every row is explained by the last attempt"))
        .collect())
}

/// `(x - b) * mean gradient` over `steps` midpoints of the path from `b` to
/// each `x`, for all rows in one tensor computation.
fn path_integral(
    network: &Mlp,
    baseline: &[f32],
    rows: &[&[f32]],
    steps: usize,
) -> Result<Vec<Vec<f32>>, ServalError> {
    let width = baseline.len();
    let mut path = Vec::with_capacity(rows.len() * steps * width);
    for row in rows {
        for k in 0..steps {
            let alpha = (k as f32 + 0.5) / steps as f32;
            path.extend(baseline.iter().zip(*row).map(|(&b, &x)| b + alpha * (x - b)));
        }
    }
    let input = Tensor::from_vec(path, (rows.len() * steps, width), &Device::Cpu)?;
    let gradients = network.input_gradients(&input)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(rows
        .iter()
        .enumerate()
        .map(|(r, row)| {
            let mut sums = vec![0f64; width];
            for k in 0..steps {
                let at = (r * steps + k) * width;
                for (sum, &g) in sums.iter_mut().zip(&gradients[at..at + width]) {
                    *sum += f64::from(g);
                }
            }
            sums.iter()
                .zip(*row)
                .zip(baseline)
                .map(|((&sum, &x), &b)| ((f64::from(x) - f64::from(b)) * sum / steps as f64) as f32)
                .collect()
        })
        .collect())
}

/// What the batching layer runs for a loaded version: the network, and the
/// baseline its explanations start from.
pub struct Scorer {
    pub network: std::sync::Arc<Mlp>,
    pub baseline: Vec<f32>,
}

impl BatchPredictor for Scorer {
    fn width(&self) -> usize {
        self.network.input_width()
    }

    fn predict_batch(&self, rows: &[f32]) -> Result<Vec<f32>, ServalError> {
        self.network.predict(rows)
    }

    fn explain_batch(&self, rows: &[f32]) -> Result<Vec<EncodedExplanation>, ServalError> {
        integrated_gradients(&self.network, &self.baseline, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::MlpParameters;

    fn rows(count: usize, width: usize, seed: usize) -> Vec<f32> {
        (0..count * width)
            .map(|i| (((seed * 131 + i * 37) % 41) as f32 - 20.0) / 6.0)
            .collect()
    }

    #[test]
    fn input_gradients_match_finite_differences() {
        let network = MlpParameters::init(6, &[16, 8], 5).unwrap().snapshot().unwrap();
        let x = rows(3, 6, 1);
        let input = Tensor::from_slice(&x, (3, 6), &Device::Cpu).unwrap();
        let gradients = network.input_gradients(&input).unwrap().to_vec2::<f32>().unwrap();
        let h = 1e-3f32;
        for r in 0..3 {
            for j in 0..6 {
                let mut up = x[r * 6..(r + 1) * 6].to_vec();
                let mut down = up.clone();
                up[j] += h;
                down[j] -= h;
                let numeric =
                    (network.logits_of(&up).unwrap()[0] - network.logits_of(&down).unwrap()[0]) / (2.0 * h);
                assert!(
                    (numeric - gradients[r][j]).abs() < 1e-2,
                    "row {r} input {j}: numeric {numeric} vs analytic {}",
                    gradients[r][j]
                );
            }
        }
    }

    #[test]
    fn attributions_add_up_to_the_logit_difference() {
        let network = MlpParameters::init(10, &[32, 16], 9).unwrap().snapshot().unwrap();
        let baseline = vec![0.1; 10];
        let x = rows(40, 10, 3);
        let explanations = integrated_gradients(&network, &baseline, &x).unwrap();
        assert_eq!(explanations.len(), 40);
        for (r, e) in explanations.iter().enumerate() {
            let difference = e.logit - e.baseline_logit;
            let total: f32 = e.attributions.iter().sum();
            assert!(
                (total - difference).abs() <= completeness_tolerance(difference) * 1.01,
                "row {r}: attributions sum to {total}, logit difference {difference}, steps {}",
                e.steps
            );
            assert!((e.completeness_gap - (total - difference)).abs() < 1e-4);
        }
    }

    #[test]
    fn a_row_at_the_baseline_gets_zero_attributions_and_unused_inputs_get_none() {
        let network = MlpParameters::init(4, &[8], 2).unwrap().snapshot().unwrap();
        let baseline = vec![0.5, -0.5, 1.0, 0.0];
        let explanations = integrated_gradients(&network, &baseline, &baseline).unwrap();
        assert!(explanations[0].attributions.iter().all(|&a| a == 0.0));
        // A row that differs from the baseline only in input 2: every other
        // attribution is exactly zero.
        let mut x = baseline.clone();
        x[2] = 3.0;
        let e = &integrated_gradients(&network, &baseline, &x).unwrap()[0];
        for (j, &a) in e.attributions.iter().enumerate() {
            if j != 2 {
                assert_eq!(a, 0.0, "input {j}");
            }
        }
        assert!(
            (e.attributions[2] - (e.logit - e.baseline_logit)).abs() <= 1e-3 + 0.01 * e.attributions[2].abs()
        );
    }

    #[test]
    fn a_linear_network_is_explained_exactly_by_weights_times_distance() {
        // No hidden layer: logit = w·x + b, so attribution j = w_j (x_j - b_j).
        let network = MlpParameters::init(5, &[], 4).unwrap().snapshot().unwrap();
        let baseline = vec![0.0; 5];
        let x = vec![1.0, -2.0, 0.5, 3.0, -1.0];
        let e = &integrated_gradients(&network, &baseline, &x).unwrap()[0];
        let weights = network.layers()[0]
            .weight()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for j in 0..5 {
            assert!((e.attributions[j] - weights[j] * x[j]).abs() < 1e-5, "input {j}");
        }
        assert_eq!(e.steps, STEP_SCHEDULE[0] as u32);
    }
}
