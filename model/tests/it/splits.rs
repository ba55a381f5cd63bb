//! Splitting by a key column: when one user's rows share what decides the
//! label, folding rows one by one lets each member see the user it is
//! tested on, and the held-out figures flatter the model; `split_key`
//! keeps each user's rows on one side, so the held-out figures say what a
//! new user would get.

use std::sync::atomic::AtomicBool;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serval_model::training::{Recipe, TrainedVersion, TrainingLimits, prepare, train};

/// 200 users with 10 rows each. Whether a user converts is a coin flip
/// per user, and a per-user device fingerprint identifies the user: it
/// predicts the label perfectly for users already seen and not at all for
/// new ones. The other columns are noise.
pub(crate) fn users_csv(numeric_ids: bool) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut csv = String::from("user_id,device,visits,minutes,converted\n");
    let converts: Vec<bool> = (0..200).map(|_| rng.random_bool(0.5)).collect();
    for row in 0..2000 {
        let user = (row * 37) % 200;
        let id = if numeric_ids {
            format!("{}", 100_000 + user)
        } else {
            format!("u{user:04}")
        };
        csv.push_str(&format!(
            "{id},dev-{:x},{},{:.2},{}\n",
            user * 7919 + 13,
            rng.random_range(0..30),
            rng.random_range(0.0..90.0),
            if converts[user] { "yes" } else { "no" }
        ));
    }
    csv.into_bytes()
}

fn trained(recipe: Recipe) -> TrainedVersion {
    trained_on(recipe, &users_csv(false))
}

fn trained_on(recipe: Recipe, csv: &[u8]) -> TrainedVersion {
    let prepared = prepare(recipe, csv, &TrainingLimits::default()).unwrap();
    train(prepared, &AtomicBool::new(false), |_| {}).unwrap()
}

#[test]
fn a_split_key_keeps_each_user_on_one_side_and_the_held_out_figures_honest() {
    let mut by_row = Recipe::new("converted", "yes");
    by_row.drop_columns = vec!["user_id".into()];
    let by_row = trained(by_row);

    let mut by_user = Recipe::new("converted", "yes");
    by_user.split_key = "user_id".into();
    let by_user = trained(by_user);

    // The key is not an input.
    assert!(by_user.encoder.columns.iter().all(|c| c.name != "user_id"));
    assert!(by_user.encoder.columns.iter().any(|c| c.name == "device"));
    // Folding rows, every member met the users it is tested on: the
    // fingerprint looks decisive. By user, it is worth nothing on new users.
    assert!(by_row.test.auc > 0.9, "by row: {:?}", by_row.test);
    assert!(by_user.test.auc < 0.7, "by user: {:?}", by_user.test);
    // The same key and seed give the same version.
    let mut again = Recipe::new("converted", "yes");
    again.split_key = "user_id".into();
    assert_eq!(trained(again).weights, by_user.weights);
}

#[test]
fn a_numeric_key_splits_by_user_too() {
    let mut recipe = Recipe::new("converted", "yes");
    recipe.split_key = "user_id".into();
    let by_user = trained_on(recipe, &users_csv(true));
    assert!(by_user.encoder.columns.iter().all(|c| c.name != "user_id"));
    assert!(by_user.test.auc < 0.7, "by user: {:?}", by_user.test);
}

#[test]
fn a_split_key_the_data_lacks_is_named() {
    let mut recipe = Recipe::new("converted", "yes");
    recipe.split_key = "account".into();
    let err = prepare(recipe, &users_csv(false), &TrainingLimits::default())
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("split_key: the data has no column named \"account\""),
        "{err}"
    );
}
