//! Global feature importance of a trained version: permutation importance
//! on the validation split, by original column, and the training mean row
//! that explanations start from.
//!
//! A column's importance is the drop in validation ROC AUC when its values
//! (all of its encoded slots together, so a one-hot group moves as one) are
//! shuffled across rows, averaged over [`REPEATS`] seeded shuffles: 0 means
//! the model does not use the column, negative values are noise.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::encoder::Encoder;
use crate::error::ModelError;
use crate::evaluation::roc_auc;
use crate::network::{Mlp, sigmoid};

/// Shuffles per column.
pub const REPEATS: usize = 3;

/// Validation rows used at most: enough for a stable AUC, and a bound on
/// the time importance adds to large trainings.
pub const MAX_ROWS: usize = 5000;

/// Permutation importance of every original column, most important first,
/// on the validation rows (a seeded sample of [`MAX_ROWS`] when there are
/// more). `after_column` runs after each column, for progress and
/// cancellation.
pub fn permutation_importance(
    network: &Mlp,
    encoder: &Encoder,
    x_validation: &[f32],
    y_validation: &[f32],
    seed: u64,
    mut after_column: impl FnMut() -> Result<(), ModelError>,
) -> Result<Vec<(String, f64)>, ModelError> {
    let width = encoder.width();
    if y_validation.is_empty() || x_validation.len() != y_validation.len() * width {
        return Ok(Vec::new());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_1A7E);
    let sampled;
    let (x_validation, y_validation) = if y_validation.len() > MAX_ROWS {
        let mut picked: Vec<usize> = (0..y_validation.len()).collect();
        picked.shuffle(&mut rng);
        picked.truncate(MAX_ROWS);
        picked.sort_unstable();
        sampled = (
            picked
                .iter()
                .flat_map(|&r| x_validation[r * width..(r + 1) * width].iter().copied())
                .collect::<Vec<f32>>(),
            picked.iter().map(|&r| y_validation[r]).collect::<Vec<f32>>(),
        );
        (sampled.0.as_slice(), sampled.1.as_slice())
    } else {
        (x_validation, y_validation)
    };
    let rows = y_validation.len();
    let reference = roc_auc(&network.predict(x_validation)?, y_validation);
    let first = FirstLayer::of(network, x_validation, rows)?;
    // Correctness: the shuffles are drawn column by column, repeat by
    // repeat, in the order a one-at-a-time loop would draw them, so the
    // figures do not depend on how passes are grouped.
    let mut order: Vec<usize> = (0..rows).collect();
    let mut importance = Vec::new();
    let spans: Vec<(&str, std::ops::Range<usize>)> = encoder.column_spans().collect();
    let columns_per_pass = (PASS_ROWS / (rows * REPEATS)).max(1);
    for group in spans.chunks(columns_per_pass) {
        let mut stacked = Vec::with_capacity(group.len() * REPEATS * rows * first.width);
        for (_, span) in group {
            for _ in 0..REPEATS {
                order.shuffle(&mut rng);
                first.shuffled_pre_activations(x_validation, width, span.clone(), &order, &mut stacked);
            }
        }
        let count = stacked.len() / first.width;
        let stacked = Tensor::from_vec(stacked, (count, first.width), &Device::Cpu)?;
        let logits = network
            .logits_after_first_layer(&stacked)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for ((name, _), column_logits) in group.iter().zip(logits.chunks(REPEATS * rows)) {
            let drop: f64 = column_logits
                .chunks(rows)
                .map(|shuffled| {
                    let scores: Vec<f32> = shuffled.iter().map(|&z| sigmoid(z)).collect();
                    reference - roc_auc(&scores, y_validation)
                })
                .sum();
            importance.push((name.to_string(), drop / REPEATS as f64));
            after_column()?;
        }
    }
    importance.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(importance)
}

/// Rows of one batched pass over shuffled copies of the validation rows:
/// several columns' shuffles share a pass, so a table of thousands of
/// narrow columns costs a few large passes rather than thousands of small
/// ones.
const PASS_ROWS: usize = 8192;

/// The first layer's weights and its pre-activations on the validation
/// rows. Performance: the first layer is linear, so shuffling one column
/// changes each row's pre-activations by (shuffled − original value) ×
/// that column's weights; computing that instead of a whole new first
/// layer costs rows × column width × hidden units, and importance grows
/// with the cells of the table, not with cells × columns.
struct FirstLayer {
    /// `(hidden, input)` row-major.
    weights: Vec<f32>,
    /// `(rows, hidden)` row-major.
    pre_activations: Vec<f32>,
    /// Hidden units.
    width: usize,
    inputs: usize,
}

impl FirstLayer {
    fn of(network: &Mlp, x: &[f32], rows: usize) -> Result<Self, ModelError> {
        let layer = &network.layers()[0];
        let (width, inputs) = layer.weight().dims2()?;
        let input = Tensor::from_slice(x, (rows, inputs), &Device::Cpu)?;
        Ok(FirstLayer {
            weights: layer.weight().flatten_all()?.to_vec1::<f32>()?,
            pre_activations: network
                .pre_activations(&input, 0)?
                .flatten_all()?
                .to_vec1::<f32>()?,
            width,
            inputs,
        })
    }

    /// Appends the pre-activations of `x` with the values of `span` taken
    /// from row `order[r]` for each row `r`.
    fn shuffled_pre_activations(
        &self,
        x: &[f32],
        row_width: usize,
        span: std::ops::Range<usize>,
        order: &[usize],
        out: &mut Vec<f32>,
    ) {
        debug_assert_eq!(row_width, self.inputs);
        for (row, &source) in order.iter().enumerate() {
            let start = out.len();
            out.extend_from_slice(&self.pre_activations[row * self.width..(row + 1) * self.width]);
            let unit = &mut out[start..];
            for input in span.clone() {
                let change = x[source * row_width + input] - x[row * row_width + input];
                if change != 0.0 {
                    for (h, value) in unit.iter_mut().enumerate() {
                        *value += change * self.weights[h * self.inputs + input];
                    }
                }
            }
        }
    }
}

/// The mean of each encoded input over `x` (row-major, `width` wide).
pub fn mean_row(x: &[f32], width: usize) -> Vec<f32> {
    let rows = x.len() / width.max(1);
    let mut sums = vec![0f64; width];
    for row in x.chunks_exact(width) {
        for (sum, &value) in sums.iter_mut().zip(row) {
            *sum += f64::from(value);
        }
    }
    sums.iter().map(|&s| (s / rows.max(1) as f64) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::{ColumnState, EncoderState, Transform};
    use crate::network::MlpParameters;

    fn numeric(name: &str) -> ColumnState {
        ColumnState {
            name: name.into(),
            transform: Transform::Numeric {
                median: 0.0,
                log1p: false,
                mean: 0.0,
                std: 1.0,
            },
        }
    }

    #[test]
    fn an_unused_column_has_no_importance_and_a_decisive_one_has_most() {
        // A linear network reading only input 0 (weights 3, 0, 0.2).
        let params = MlpParameters::init(3, &[], 1).unwrap();
        let weights = vec![vec![3.0, 0.0, 0.2], vec![0.0]];
        let network = params.snapshot_of(&weights).unwrap();
        let encoder = Encoder::new(EncoderState {
            columns: vec![numeric("decisive"), numeric("unused"), numeric("weak")],
            baseline: Vec::new(),
        });
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..400 {
            let a = ((i * 37) % 101) as f32 / 50.0 - 1.0;
            let b = ((i * 53) % 97) as f32 / 48.0 - 1.0;
            let c = ((i * 71) % 89) as f32 / 44.0 - 1.0;
            x.extend([a, b, c]);
            y.push(if 3.0 * a + 0.2 * c > 0.0 { 1.0 } else { 0.0 });
        }
        let mut columns_done = 0;
        let importance = permutation_importance(&network, &encoder, &x, &y, 7, || {
            columns_done += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(columns_done, 3);
        let names: Vec<&str> = importance.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["decisive", "weak", "unused"], "{importance:?}");
        assert!(importance[0].1 > 0.3, "{importance:?}");
        assert_eq!(importance[2].1, 0.0, "{importance:?}");
    }

    /// The reference computation: each column's slots shuffled in a copy
    /// of the rows, and the whole network run on it.
    fn shuffling_the_inputs(
        network: &Mlp,
        encoder: &Encoder,
        x: &[f32],
        y: &[f32],
        seed: u64,
    ) -> Vec<(String, f64)> {
        let width = encoder.width();
        let rows = y.len();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_1A7E);
        let reference = roc_auc(&network.predict(x).unwrap(), y);
        let mut order: Vec<usize> = (0..rows).collect();
        let mut importance = Vec::new();
        for (name, span) in encoder.column_spans() {
            let mut drop = 0.0;
            for _ in 0..REPEATS {
                order.shuffle(&mut rng);
                let mut shuffled = x.to_vec();
                for (row, &source) in order.iter().enumerate() {
                    shuffled[row * width + span.start..row * width + span.end]
                        .copy_from_slice(&x[source * width + span.start..source * width + span.end]);
                }
                drop += reference - roc_auc(&network.predict(&shuffled).unwrap(), y);
            }
            importance.push((name.to_string(), drop / REPEATS as f64));
        }
        importance.sort_by(|a, b| b.1.total_cmp(&a.1));
        importance
    }

    #[test]
    fn shifting_the_first_layer_matches_shuffling_the_inputs() {
        let encoder = Encoder::new(EncoderState {
            columns: vec![
                numeric("a"),
                ColumnState {
                    name: "colour".into(),
                    transform: Transform::Categorical {
                        categories: vec!["red".into(), "blue".into()],
                    },
                },
                numeric("b"),
            ],
            baseline: Vec::new(),
        });
        let network = MlpParameters::init(encoder.width(), &[16, 8], 5)
            .unwrap()
            .snapshot()
            .unwrap();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..1000 {
            let a = ((i * 37) % 101) as f32 / 50.0 - 1.0;
            let slot = i % 3;
            let b = ((i * 53) % 97) as f32 / 48.0 - 1.0;
            x.extend([
                a,
                (slot == 0) as u8 as f32,
                (slot == 1) as u8 as f32,
                (slot == 2) as u8 as f32,
                b,
            ]);
            y.push(((a + b + slot as f32 / 2.0 + (i % 7) as f32 / 7.0) > 0.8) as u8 as f32);
        }
        // 1000 rows: two columns' shuffles share each stacked pass.
        let fast = permutation_importance(&network, &encoder, &x, &y, 11, || Ok(())).unwrap();
        let reference = shuffling_the_inputs(&network, &encoder, &x, &y, 11);
        assert_eq!(fast.len(), reference.len());
        for ((name, value), (reference_name, expected)) in fast.iter().zip(&reference) {
            assert_eq!(name, reference_name);
            assert!((value - expected).abs() < 1e-4, "{name}: {value} vs {expected}");
        }
        assert!(reference.iter().any(|(_, v)| v.abs() > 1e-3), "{reference:?}");
    }

    #[test]
    fn mean_row_averages_each_input() {
        assert_eq!(mean_row(&[1.0, 10.0, 3.0, 20.0], 2), vec![2.0, 15.0]);
    }
}
