//! The stratified train/validation split.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::ModelError;

/// Row indices of each side, ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

/// Holds back `validation_fraction` of each class (at least one row of
/// each), chosen by a seeded shuffle, so both sides keep the class balance.
pub fn stratified_split(labels: &[f32], validation_fraction: f64, seed: u64) -> Result<Split, ModelError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut train = Vec::with_capacity(labels.len());
    let mut validation = Vec::new();
    for (class, name) in [(1.0f32, "positive"), (0.0, "negative")] {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        if rows.len() < 2 {
            return Err(ModelError::InvalidData(format!(
                "only {} {name} row(s): at least 2 of each class are needed to train and validate",
                rows.len()
            )));
        }
        rows.shuffle(&mut rng);
        let held = ((rows.len() as f64 * validation_fraction).round() as usize).clamp(1, rows.len() - 1);
        validation.extend_from_slice(&rows[..held]);
        train.extend_from_slice(&rows[held..]);
    }
    train.sort_unstable();
    validation.sort_unstable();
    Ok(Split { train, validation })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_class_balance_and_is_seeded() {
        let labels: Vec<f32> = (0..1000).map(|i| if i % 5 == 0 { 1.0 } else { 0.0 }).collect();
        let split = stratified_split(&labels, 0.2, 7).unwrap();
        assert_eq!(split.validation.len(), 200);
        assert_eq!(split.train.len(), 800);
        let positives = split.validation.iter().filter(|&&i| labels[i] == 1.0).count();
        assert_eq!(positives, 40);
        assert_eq!(split, stratified_split(&labels, 0.2, 7).unwrap());
        assert_ne!(split, stratified_split(&labels, 0.2, 8).unwrap());
    }

    #[test]
    fn needs_two_rows_of_each_class() {
        let err = stratified_split(&[1.0, 0.0, 0.0], 0.2, 1).unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
    }
}
