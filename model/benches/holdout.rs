//! Held-out quality of the default recipe on a train/test pair of CSVs.
//! `cargo bench -p serval-model --bench holdout -- TRAIN TEST LABEL POSITIVE [DROP,…] [SEED]`
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serval_model::dataset::{IngestOptions, ingest_csv};
use serval_model::encoder::Encoder;
use serval_model::evaluation::{evaluate, roc_auc};
use serval_model::training::{Recipe, TrainingLimits, prepare, train};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (train_path, test_path, label, positive) = (&args[0], &args[1], &args[2], &args[3]);
    let drop: Vec<String> = args
        .get(4)
        .filter(|d| !d.is_empty() && *d != "-")
        .map(|d| d.split(',').map(String::from).collect())
        .unwrap_or_default();
    let mut recipe = Recipe::new(label, positive);
    recipe.drop_columns = drop.clone();
    if let Some(seed) = args.get(5) {
        recipe.seed = seed.parse().unwrap();
    }
    if let Ok(json) = std::env::var("HYPER") {
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        if let Some(x) = v.get("epochs") {
            recipe.epochs = x.as_u64().unwrap() as usize;
        }
        if let Some(x) = v.get("patience") {
            recipe.patience = x.as_u64().unwrap() as usize;
        }
        if let Some(x) = v.get("dropout") {
            recipe.dropout = x.as_f64().unwrap();
        }
        if let Some(x) = v.get("lr") {
            recipe.learning_rate = x.as_f64().unwrap();
        }
    }
    let csv = std::fs::read(train_path).unwrap();
    let limits = TrainingLimits::default();
    let started = Instant::now();
    let prepared = prepare(recipe.clone(), &csv, &limits).unwrap();
    let trained = train(prepared, &AtomicBool::new(false), |_| {}).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let test = std::fs::read(test_path).unwrap();
    let table = ingest_csv(
        &test,
        &IngestOptions {
            delimiter: b',',
            label_column: label,
            positive_label: positive,
            drop_columns: &drop,
            column_types: &HashMap::new(),
            max_rows: usize::MAX,
            max_columns: usize::MAX,
        },
    )
    .unwrap();
    // Encode by the trained encoder: the test table's own dictionaries differ, so go by names.
    let encoder = Encoder::new(trained.encoder.clone());
    let rows: Vec<usize> = (0..table.labels.len()).collect();
    // Columns in the same order (same header): encode_table maps dictionary values through the encoder.
    let x = encoder.encode_table(&table, &rows);
    let scores = trained.network.predict(&x).unwrap();
    let held = evaluate(&scores, &table.labels, trained.validation.threshold);
    println!(
        "{train_path}: seed {} external test AUC {:.4} F1 {:.4} | internal test AUC {:.4} validation AUC {:.4} | epochs {} best {} | {:.2} s",
        recipe.seed,
        roc_auc(&scores, &table.labels),
        held.f1,
        trained.test.auc,
        trained.validation.auc,
        trained.history.len(),
        trained.best_epoch,
        seconds
    );
}
