//! Global feature importance of a trained version: permutation importance
//! on the validation split, by original column, and the training mean row
//! that explanations start from.
//!
//! A column's importance is the drop in validation ROC AUC when its values
//! (all of its encoded slots together, so a one-hot group moves as one) are
//! shuffled across rows, averaged over [`REPEATS`] seeded shuffles: 0 means
//! the model does not use the column, negative values are noise.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::encoder::Encoder;
use crate::error::ModelError;
use crate::evaluation::roc_auc;
use crate::network::Mlp;

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
    let mut order: Vec<usize> = (0..rows).collect();
    let mut shuffled = x_validation.to_vec();
    let mut importance = Vec::new();
    for (name, span) in encoder.column_spans() {
        let mut drop = 0.0;
        for _ in 0..REPEATS {
            order.shuffle(&mut rng);
            for (row, &source) in order.iter().enumerate() {
                shuffled[row * width + span.start..row * width + span.end]
                    .copy_from_slice(&x_validation[source * width + span.start..source * width + span.end]);
            }
            drop += reference - roc_auc(&network.predict(&shuffled)?, y_validation);
        }
        // Put the column back before the next one is shuffled.
        for row in 0..rows {
            shuffled[row * width + span.start..row * width + span.end]
                .copy_from_slice(&x_validation[row * width + span.start..row * width + span.end]);
        }
        importance.push((name.to_string(), drop / REPEATS as f64));
        after_column()?;
    }
    importance.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(importance)
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

    #[test]
    fn mean_row_averages_each_input() {
        assert_eq!(mean_row(&[1.0, 10.0, 3.0, 20.0], 2), vec![2.0, 15.0]);
    }
}
