//! Folds: each row's fold, either stratified (every fold keeps the class
//! balance of the whole) or by a key column (all rows with one key value,
//! such as one user's, share a fold).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use sha2::{Digest, Sha256};

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

/// Assigns each row the fold of its key: `key_ids[row]` indexes
/// `dictionary`, and a key's fold is a seeded SHA-256 of its text, so the
/// same key lands in the same fold on every run and whatever other rows
/// the data holds. Each fold needs a row of each class.
pub fn keyed_folds(
    key_column: &str,
    key_ids: &[u32],
    dictionary: &[String],
    labels: &[f32],
    folds: usize,
    seed: u64,
) -> Result<Vec<usize>, ModelError> {
    if dictionary.len() < folds {
        return Err(ModelError::InvalidData(format!(
            "split_key {key_column:?} has {} distinct value(s): at least {folds} are needed, one \
             for each of the {folds} folds the members hold out",
            dictionary.len()
        )));
    }
    let fold_of_key: Vec<usize> = dictionary
        .iter()
        .map(|key| fold_of_key(key, folds, seed))
        .collect();
    let fold_of: Vec<usize> = key_ids.iter().map(|&id| fold_of_key[id as usize]).collect();
    for fold in 0..folds {
        for (class, name) in [(1.0f32, "positive"), (0.0, "negative")] {
            let present = fold_of
                .iter()
                .zip(labels)
                .any(|(&f, &label)| f == fold && label == class);
            if !present {
                return Err(ModelError::InvalidData(format!(
                    "split_key {key_column:?}: fold {} of {folds} holds no {name} row; the key's \
                     values are too few or too one-sided to split by (use more distinct keys, \
                     or fewer folds with a larger validation_fraction)",
                    fold + 1
                )));
            }
        }
    }
    Ok(fold_of)
}

/// The fold of a split key's value: a seeded SHA-256 of its text.
pub fn fold_of_key(key: &str, folds: usize, seed: u64) -> usize {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    let first = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
    (first % folds as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_stays_in_one_fold_whatever_else_the_data_holds() {
        let dictionary: Vec<String> = (0..200).map(|u| format!("user-{u}")).collect();
        let key_ids: Vec<u32> = (0..2000).map(|r| (r * 7 % 200) as u32).collect();
        let labels: Vec<f32> = (0..2000).map(|r| f32::from(u8::from(r % 3 == 0))).collect();
        let folds = keyed_folds("user", &key_ids, &dictionary, &labels, 4, 42).unwrap();
        for key in 0..200u32 {
            let mut of_key = key_ids
                .iter()
                .zip(&folds)
                .filter(|(k, _)| **k == key)
                .map(|(_, f)| *f);
            let first = of_key.next().unwrap();
            assert!(of_key.all(|f| f == first), "key {key} is split");
        }
        // Every fold is used, roughly evenly.
        for fold in 0..4 {
            let rows = folds.iter().filter(|&&f| f == fold).count();
            assert!((300..700).contains(&rows), "fold {fold}: {rows} rows");
        }
        // A key's fold depends on the key and the seed, not on the other
        // rows: half the data, with its own dictionary order, agrees.
        let half_dictionary: Vec<String> = dictionary.iter().rev().cloned().collect();
        let half_ids: Vec<u32> = key_ids[..1000].iter().map(|&k| 199 - k).collect();
        let half = keyed_folds("user", &half_ids, &half_dictionary, &labels[..1000], 4, 42).unwrap();
        assert_eq!(&half[..], &folds[..1000]);
        assert_ne!(
            folds,
            keyed_folds("user", &key_ids, &dictionary, &labels, 4, 43).unwrap()
        );
    }

    #[test]
    fn too_few_keys_or_a_one_sided_fold_is_named() {
        let dictionary = vec!["a".to_string(), "b".to_string()];
        let err = keyed_folds("user", &[0, 1], &dictionary, &[1.0, 0.0], 4, 1).unwrap_err();
        assert!(
            err.to_string()
                .contains("split_key \"user\" has 2 distinct value(s)"),
            "{err}"
        );
        let dictionary: Vec<String> = (0..8).map(|u| u.to_string()).collect();
        let key_ids: Vec<u32> = (0..8).collect();
        let err = keyed_folds("user", &key_ids, &dictionary, &[1.0; 8], 2, 1).unwrap_err();
        assert!(err.to_string().contains("holds no negative row"), "{err}");
    }

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
