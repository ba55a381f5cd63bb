//! Stratified folds: each row's fold, so every fold keeps the class
//! balance of the whole.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::ModelError;

/// Assigns each row one of `folds` folds: per class, the rows in a seeded
/// shuffle go to folds 0, 1, 2, … in turn. Each fold needs a row of each
/// class, so each class needs at least `folds` rows.
pub fn stratified_folds(labels: &[f32], folds: usize, seed: u64) -> Result<Vec<usize>, ModelError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold_of = vec![0; labels.len()];
    for (class, name) in [(1.0f32, "positive"), (0.0, "negative")] {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        if rows.len() < folds {
            return Err(ModelError::InvalidData(format!(
                "only {} {name} row(s): at least {folds} of each class are needed, one for each of \
                 the {folds} folds the members hold out (see validation_fraction)",
                rows.len()
            )));
        }
        rows.shuffle(&mut rng);
        for (j, row) in rows.into_iter().enumerate() {
            fold_of[row] = j % folds;
        }
    }
    Ok(fold_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_keep_the_class_balance_and_are_seeded() {
        let labels: Vec<f32> = (0..1000).map(|i| if i % 5 == 0 { 1.0 } else { 0.0 }).collect();
        let folds = stratified_folds(&labels, 4, 7).unwrap();
        for fold in 0..4 {
            let rows: Vec<usize> = (0..1000).filter(|&i| folds[i] == fold).collect();
            assert_eq!(rows.len(), 250);
            assert_eq!(rows.iter().filter(|&&i| labels[i] == 1.0).count(), 50);
        }
        assert_eq!(folds, stratified_folds(&labels, 4, 7).unwrap());
        assert_ne!(folds, stratified_folds(&labels, 4, 8).unwrap());
    }

    #[test]
    fn each_fold_needs_a_row_of_each_class() {
        let err = stratified_folds(&[1.0, 1.0, 0.0, 0.0, 0.0], 3, 1).unwrap_err();
        assert!(
            err.to_string().contains("only 2 positive row(s): at least 3"),
            "{err}"
        );
    }
}
