//! Global feature importance of a trained version: permutation importance
//! on rows scored out of fold, by original column.
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

/// Rows scored by one network: out of fold, the rows of one fold and the
/// member that did not learn from them.
pub struct ScoredRows {
    pub network: Mlp,
    /// Encoded rows, row-major.
    pub x: Vec<f32>,
    pub y: Vec<f32>,
}

/// Permutation importance of every original column, most important first:
/// the drop in the AUC of all parts' scores pooled when the column is
/// shuffled among each part's rows. `after_column` runs after each column,
/// for progress and cancellation.
pub fn permutation_importance(
    parts: &[ScoredRows],
    encoder: &Encoder,
    seed: u64,
    mut after_column: impl FnMut() -> Result<(), ModelError>,
) -> Result<Vec<(String, f64)>, ModelError> {
    let width = encoder.width();
    let parts: Vec<&ScoredRows> = parts.iter().filter(|p| !p.y.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|p| p.x.len() != p.y.len() * width) {
        return Ok(Vec::new());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_1A7E);
    let labels: Vec<f32> = parts.iter().flat_map(|p| p.y.iter().copied()).collect();
    let mut pooled = Vec::with_capacity(labels.len());
    for part in &parts {
        pooled.extend(part.network.predict(&part.x)?);
    }
    let reference = roc_auc(&pooled, &labels);
    let firsts = parts
        .iter()
        .map(|p| FirstLayer::of(&p.network, &p.x, p.y.len()))
        .collect::<Result<Vec<_>, _>>()?;
    let largest = parts.iter().map(|p| p.y.len()).max().unwrap_or(1);
    let columns_per_pass = (PASS_ROWS / (largest * REPEATS)).max(1);
    let spans: Vec<(&str, std::ops::Range<usize>)> = encoder.column_spans().collect();
    let mut orders: Vec<Vec<usize>> = parts.iter().map(|p| (0..p.y.len()).collect()).collect();
    let mut importance = Vec::new();
    for group in spans.chunks(columns_per_pass) {
        // Correctness: the shuffles are drawn column by column, repeat by
        // repeat, part by part, whatever the grouping into passes.
        let mut drawn = Vec::with_capacity(group.len() * REPEATS * parts.len());
        for _ in group {
            for _ in 0..REPEATS {
                for order in orders.iter_mut() {
                    order.shuffle(&mut rng);
                    drawn.push(order.clone());
                }
            }
        }
        // Per part, one pass over all the group's shuffled copies.
        let mut logits_by_part = Vec::with_capacity(parts.len());
        for (p, (part, first)) in parts.iter().zip(&firsts).enumerate() {
            let mut stacked = Vec::with_capacity(group.len() * REPEATS * part.y.len() * first.width);
            for (c, (_, span)) in group.iter().enumerate() {
                for repeat in 0..REPEATS {
                    let order = &drawn[(c * REPEATS + repeat) * parts.len() + p];
                    first.shuffled_pre_activations(&part.x, width, span.clone(), order, &mut stacked);
                }
            }
            let count = stacked.len() / first.width;
            let stacked = Tensor::from_vec(stacked, (count, first.width), &Device::Cpu)?;
            logits_by_part.push(
                part.network
                    .logits_after_first_layer(&stacked)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
        }
        for (c, (name, _)) in group.iter().enumerate() {
            let mut drop = 0.0;
            for repeat in 0..REPEATS {
                let mut scores = Vec::with_capacity(labels.len());
                for (part, logits) in parts.iter().zip(&logits_by_part) {
                    let rows = part.y.len();
                    let at = (c * REPEATS + repeat) * rows;
                    scores.extend(logits[at..at + rows].iter().map(|&z| sigmoid(z)));
                }
                drop += reference - roc_auc(&scores, &labels);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::{ColumnState, EncoderState, Transform};
    use crate::network::Layer;

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
        let network = Mlp::new(vec![
            Layer::dense(
                Tensor::from_vec(vec![3.0f32, 0.0, 0.2], (1, 3), &Device::Cpu).unwrap(),
                Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap(),
            )
            .unwrap(),
        ])
        .unwrap();
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
        let parts = [ScoredRows { network, x, y }];
        let importance = permutation_importance(&parts, &encoder, 7, || {
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
    /// of each part's rows, and each part's whole network run on it.
    fn shuffling_the_inputs(parts: &[ScoredRows], encoder: &Encoder, seed: u64) -> Vec<(String, f64)> {
        let width = encoder.width();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_1A7E);
        let labels: Vec<f32> = parts.iter().flat_map(|p| p.y.clone()).collect();
        let scores = |xs: &[Vec<f32>]| -> Vec<f32> {
            parts
                .iter()
                .zip(xs)
                .flat_map(|(p, x)| p.network.predict(x).unwrap())
                .collect()
        };
        let originals: Vec<Vec<f32>> = parts.iter().map(|p| p.x.clone()).collect();
        let reference = roc_auc(&scores(&originals), &labels);
        let mut orders: Vec<Vec<usize>> = parts.iter().map(|p| (0..p.y.len()).collect()).collect();
        let mut importance = Vec::new();
        for (name, span) in encoder.column_spans() {
            let mut drop = 0.0;
            for _ in 0..REPEATS {
                let mut shuffled = originals.clone();
                for ((order, copy), part) in orders.iter_mut().zip(&mut shuffled).zip(parts) {
                    order.shuffle(&mut rng);
                    for (row, &source) in order.iter().enumerate() {
                        copy[row * width + span.start..row * width + span.end]
                            .copy_from_slice(&part.x[source * width + span.start..source * width + span.end]);
                    }
                }
                drop += reference - roc_auc(&scores(&shuffled), &labels);
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
        let ensemble = Mlp::random_ensemble(encoder.width(), &[16, 8], 2, 5).unwrap();
        // Two parts of 600 and 400 rows, each scored by one member, as out
        // of fold: two columns' shuffles share each stacked pass.
        let mut parts: Vec<ScoredRows> = (0..2)
            .map(|m| ScoredRows {
                network: ensemble.member(m).unwrap(),
                x: Vec::new(),
                y: Vec::new(),
            })
            .collect();
        for i in 0..1000 {
            let a = ((i * 37) % 101) as f32 / 50.0 - 1.0;
            let slot = i % 3;
            let b = ((i * 53) % 97) as f32 / 48.0 - 1.0;
            let part = &mut parts[usize::from(i % 5 < 2)];
            part.x.extend([
                a,
                f32::from(u8::from(slot == 0)),
                f32::from(u8::from(slot == 1)),
                f32::from(u8::from(slot == 2)),
                b,
            ]);
            part.y.push(f32::from(u8::from(
                a + b + slot as f32 / 2.0 + (i % 7) as f32 / 7.0 > 0.8,
            )));
        }
        let fast = permutation_importance(&parts, &encoder, 11, || Ok(())).unwrap();
        let reference = shuffling_the_inputs(&parts, &encoder, 11);
        assert_eq!(fast.len(), reference.len());
        for ((name, value), (reference_name, expected)) in fast.iter().zip(&reference) {
            assert_eq!(name, reference_name);
            assert!((value - expected).abs() < 1e-4, "{name}: {value} vs {expected}");
        }
        assert!(reference.iter().any(|(_, v)| v.abs() > 1e-3), "{reference:?}");
    }
}
