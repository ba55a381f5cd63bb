//! Row explanations: integrated gradients of the network's logit with
//! respect to its encoded inputs, from the training mean, and the network
//! [`Scorer`] a batching layer runs (scores, plus explanations when asked).
//!
//! Integrated gradients (Sundararajan et al., 2017) attribute
//! `logit(x) - logit(baseline)` to the inputs: `(x - b) * mean over the
//! straight path from b to x of the gradient`. The baseline is the training
//! split's mean encoded row, so an attribution reads "this value moves the
//! score away from that of an average user".
//!
//! The network is a ReLU MLP, so along the path its logit is piecewise
//! linear and its gradient piecewise constant: it changes only where a
//! hidden unit's pre-activation crosses zero. Instead of a Riemann sum
//! (whose error sits in the segments holding such a kink, and which missed
//! completeness by a few per cent on real rows), the path is cut at every
//! crossing, layer by layer — a first-layer unit is linear along the whole
//! path; a deeper unit is linear within each segment the earlier layers
//! leave — and the gradient at each segment's midpoint is weighted by the
//! segment's length. The integral is then exact, and completeness holds up
//! to f32 rounding. Every stage evaluates all points of a group of rows in
//! one tensor computation.

use candle_core::{DType, Device, Tensor};

use crate::BatchScorer;
use crate::error::ModelError;
use crate::network::Mlp;

/// Rows whose paths are cut and integrated together; bounds the size of
/// one tensor computation (each row's path typically has a few hundred
/// points).
const ROWS_PER_GROUP: usize = 32;

/// Largest acceptable |sum of attributions - (logit - baseline logit)|:
/// 1 % of the logit difference, and never below 1e-3 (f32 rounding over a
/// row that sits at the baseline). The exact integration stays far inside
/// it; tests hold results to it.
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
    /// Linear segments the path was cut into.
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
            let z = layer.forward(&x)?;
            if i < last {
                masks.push(z.gt(0f32)?.to_dtype(DType::F32)?);
                x = z.relu()?;
            }
        }
        let rows = input.dim(0)?;
        // The logit is the mean of the members' logits.
        let members = self.members();
        let mut gradient = (Tensor::ones((rows, members), DType::F32, &Device::Cpu)? / members as f64)?;
        for (i, layer) in layers.iter().enumerate().rev() {
            // The gradient with respect to this layer's input.
            gradient = layer.input_gradient(&gradient)?;
            if i > 0 {
                gradient = (gradient * &masks[i - 1])?;
            }
        }
        Ok(gradient)
    }

    /// Pre-activations (before ReLU) of layer `layer` for each input row.
    pub fn pre_activations(&self, input: &Tensor, layer: usize) -> candle_core::Result<Tensor> {
        let mut x = input.clone();
        for (i, l) in self.layers()[..=layer].iter().enumerate() {
            x = l.forward(&x)?;
            if i < layer {
                x = x.relu()?;
            }
        }
        Ok(x)
    }

    /// Logits of row-major `rows`.
    pub fn logits_of(&self, rows: &[f32]) -> Result<Vec<f32>, ModelError> {
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
) -> Result<Vec<EncodedExplanation>, ModelError> {
    let width = network.input_width();
    if baseline.len() != width || !rows.len().is_multiple_of(width) {
        return Err(ModelError::ShapeMismatch(format!(
            "explaining rows of {width} values with a baseline of {} and {} values",
            baseline.len(),
            rows.len()
        )));
    }
    let logits = network.logits_of(rows)?;
    let baseline_logit = network.logits_of(baseline)?[0];
    let mut explanations = Vec::with_capacity(logits.len());
    for (group, chunk) in rows.chunks(ROWS_PER_GROUP * width).enumerate() {
        let chunk_rows: Vec<&[f32]> = chunk.chunks_exact(width).collect();
        let cuts = linear_segments(network, baseline, &chunk_rows)?;
        let attributions = exact_path_integral(network, baseline, &chunk_rows, &cuts)?;
        for (i, (attributions, cuts)) in attributions.into_iter().zip(&cuts).enumerate() {
            let logit = logits[group * ROWS_PER_GROUP + i];
            let total: f64 = attributions.iter().map(|&a| f64::from(a)).sum();
            explanations.push(EncodedExplanation {
                attributions,
                logit,
                baseline_logit,
                completeness_gap: (total - f64::from(logit - baseline_logit)) as f32,
                steps: (cuts.len() - 1) as u32,
            });
        }
    }
    Ok(explanations)
}

/// Points on the path `b + α (x - b)`, one per `alphas` entry, row-major.
fn path_points(baseline: &[f32], row: &[f32], alphas: impl Iterator<Item = f32>, out: &mut Vec<f32>) {
    for alpha in alphas {
        out.extend(baseline.iter().zip(row).map(|(&b, &x)| b + alpha * (x - b)));
    }
}

/// For each row, the sorted α in [0, 1] that cut its path into pieces on
/// which every hidden unit keeps its sign, so the network is linear on each.
fn linear_segments(network: &Mlp, baseline: &[f32], rows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
    let width = baseline.len();
    let mut cuts: Vec<Vec<f32>> = vec![vec![0.0, 1.0]; rows.len()];
    for layer in 0..network.layers().len() - 1 {
        let mut points = Vec::new();
        for (row, alphas) in rows.iter().zip(&cuts) {
            path_points(baseline, row, alphas.iter().copied(), &mut points);
        }
        let count = points.len() / width;
        let input = Tensor::from_vec(points, (count, width), &Device::Cpu)?;
        let z = network.pre_activations(&input, layer)?.to_vec2::<f32>()?;
        let mut at = 0;
        for alphas in &mut cuts {
            let mut refined = Vec::with_capacity(alphas.len() * 2);
            for (i, pair) in alphas.windows(2).enumerate() {
                let (a, b) = (pair[0], pair[1]);
                let (za, zb) = (&z[at + i], &z[at + i + 1]);
                refined.push(a);
                let start = refined.len();
                // Within (a, b) this layer's pre-activations are linear in α
                // (earlier layers keep their signs there): each sign change
                // is one crossing.
                for (&u, &v) in za.iter().zip(zb) {
                    if (u > 0.0) != (v > 0.0) {
                        let crossing = a + (b - a) * (u / (u - v));
                        if crossing > a && crossing < b {
                            refined.push(crossing);
                        }
                    }
                }
                refined[start..].sort_by(f32::total_cmp);
            }
            refined.push(*alphas.last().expect("a path has two ends"));
            refined.dedup();
            at += alphas.len();
            *alphas = refined;
        }
    }
    Ok(cuts)
}

/// `(x - b) * Σ length × gradient at the midpoint`, over each row's linear
/// segments: the path integral, exactly.
fn exact_path_integral(
    network: &Mlp,
    baseline: &[f32],
    rows: &[&[f32]],
    cuts: &[Vec<f32>],
) -> Result<Vec<Vec<f32>>, ModelError> {
    let width = baseline.len();
    let mut points = Vec::new();
    for (row, alphas) in rows.iter().zip(cuts) {
        path_points(
            baseline,
            row,
            alphas.windows(2).map(|p| (p[0] + p[1]) / 2.0),
            &mut points,
        );
    }
    let count = points.len() / width;
    let input = Tensor::from_vec(points, (count, width), &Device::Cpu)?;
    let gradients = network.input_gradients(&input)?.flatten_all()?.to_vec1::<f32>()?;
    let mut at = 0;
    Ok(rows
        .iter()
        .zip(cuts)
        .map(|(row, alphas)| {
            let mut sums = vec![0f64; width];
            for pair in alphas.windows(2) {
                let length = f64::from(pair[1] - pair[0]);
                for (sum, &g) in sums.iter_mut().zip(&gradients[at * width..(at + 1) * width]) {
                    *sum += length * f64::from(g);
                }
                at += 1;
            }
            sums.iter()
                .zip(*row)
                .zip(baseline)
                .map(|((&sum, &x), &b)| ((f64::from(x) - f64::from(b)) * sum) as f32)
                .collect()
        })
        .collect())
}

/// What a batching layer runs for a loaded version: the network, and the
/// baseline its explanations start from.
pub struct Scorer {
    pub network: std::sync::Arc<Mlp>,
    pub baseline: Vec<f32>,
}

impl BatchScorer for Scorer {
    type Explanation = EncodedExplanation;

    fn width(&self) -> usize {
        self.network.input_width()
    }

    fn score(&self, rows: &[f32]) -> Result<Vec<f32>, ModelError> {
        self.network.predict(rows)
    }

    fn explain(&self, rows: &[f32]) -> Result<Vec<EncodedExplanation>, ModelError> {
        integrated_gradients(&self.network, &self.baseline, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(count: usize, width: usize, seed: usize) -> Vec<f32> {
        (0..count * width)
            .map(|i| (((seed * 131 + i * 37) % 41) as f32 - 20.0) / 6.0)
            .collect()
    }

    #[test]
    fn input_gradients_match_finite_differences() {
        for network in [
            Mlp::random(6, &[16, 8], 5).unwrap(),
            Mlp::random_ensemble(6, &[8, 4], 4, 5).unwrap(),
        ] {
            input_gradients_match_finite_differences_of(&network);
        }
    }

    fn input_gradients_match_finite_differences_of(network: &Mlp) {
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
        for network in [
            Mlp::random(10, &[32, 16], 9).unwrap(),
            Mlp::random_ensemble(10, &[16, 8], 4, 9).unwrap(),
        ] {
            attributions_add_up_to_the_logit_difference_of(&network);
        }
    }

    fn attributions_add_up_to_the_logit_difference_of(network: &Mlp) {
        let baseline = vec![0.1; 10];
        let x = rows(40, 10, 3);
        let explanations = integrated_gradients(network, &baseline, &x).unwrap();
        assert_eq!(explanations.len(), 40);
        for (r, e) in explanations.iter().enumerate() {
            let difference = e.logit - e.baseline_logit;
            let total: f32 = e.attributions.iter().sum();
            // Exact integration: only f32 rounding separates the two.
            assert!(
                (total - difference).abs() <= 1e-4 * difference.abs().max(1.0),
                "row {r}: attributions sum to {total}, logit difference {difference}, steps {}",
                e.steps
            );
            assert!((e.completeness_gap - (total - difference)).abs() < 1e-4);
        }
    }

    #[test]
    fn a_row_at_the_baseline_gets_zero_attributions_and_unused_inputs_get_none() {
        let network = Mlp::random(4, &[8], 2).unwrap();
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
        let network = Mlp::random(5, &[], 4).unwrap();
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
        assert_eq!(e.steps, 1, "no hidden unit, no cut: one linear segment");
    }
}
