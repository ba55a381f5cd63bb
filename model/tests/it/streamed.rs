//! Training in bounded memory: a budget the data outgrows streams it from
//! a compact store (spilled to disk when even that outgrows the budget),
//! learns about as well as holding every row, is deterministic, keeps a
//! split key's rows together, a budget too small is refused by name, and
//! the preparation reports its phases and rows and stops when cancelled.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serval_model::ModelError;
use serval_model::dataset::{DataFormat, SharedFile};
use serval_model::training::{
    PreparationProgress, PreparationWatch, Recipe, TrainedVersion, TrainingLimits, preparation,
    prepare_shared, train,
};

use super::formats::{batch_of, example, parquet_of};

fn shared(bytes: Vec<u8>) -> Vec<SharedFile> {
    vec![SharedFile::in_memory("the upload", Bytes::from(bytes))]
}

fn trained(recipe: &Recipe, files: &[SharedFile], memory: u64) -> Result<TrainedVersion, ModelError> {
    let limits = TrainingLimits {
        memory,
        ..TrainingLimits::default()
    };
    let prepared = prepare_shared(recipe.clone(), files, &limits, &mut PreparationWatch::unwatched())?;
    train(prepared, &AtomicBool::new(false), |_| {})
}

fn shoppers(format: DataFormat) -> (Recipe, Vec<SharedFile>) {
    let csv = example("online_shoppers_intention.csv");
    let mut recipe = Recipe::new("Revenue", "TRUE");
    recipe.format = format;
    let bytes = match format {
        DataFormat::Csv => csv,
        _ => parquet_of(&batch_of(&csv)),
    };
    (recipe, shared(bytes))
}

#[test]
fn a_budget_the_data_outgrows_streams_it_and_learns_about_as_well() {
    let (recipe, csv) = shoppers(DataFormat::Csv);
    let in_memory = trained(&recipe, &csv, 1 << 30).unwrap();
    assert_eq!(in_memory.dataset.streamed, None);
    for format in [DataFormat::Csv, DataFormat::Parquet] {
        let (recipe, files) = shoppers(format);
        let streamed = trained(&recipe, &files, 3 << 20).unwrap();
        let how = streamed.dataset.streamed.clone().expect("streamed");
        assert_eq!(how.memory_budget, 3 << 20);
        assert!(!how.spilled);
        assert_eq!(streamed.dataset.rows, in_memory.dataset.rows);
        assert_eq!(streamed.dataset.train_rows, in_memory.dataset.train_rows);
        assert!(streamed.dataset.validation_rows < streamed.dataset.train_rows);
        assert!(
            (streamed.test.auc - in_memory.test.auc).abs() < 0.03,
            "{format:?}: {} vs {}",
            streamed.test.auc,
            in_memory.test.auc
        );
    }
}

#[test]
fn spilled_rows_train_deterministically() {
    let (recipe, files) = shoppers(DataFormat::Csv);
    let in_memory = trained(&recipe, &files, 1 << 30).unwrap();
    let a = trained(&recipe, &files, 768 << 10).unwrap();
    let how = a.dataset.streamed.clone().expect("streamed");
    assert!(how.spilled, "{how:?}");
    assert!(how.store_bytes > 384 << 10);
    assert!(
        (a.test.auc - in_memory.test.auc).abs() < 0.03,
        "{} vs {}",
        a.test.auc,
        in_memory.test.auc
    );
    let b = trained(&recipe, &files, 768 << 10).unwrap();
    assert_eq!(
        a.weights, b.weights,
        "the same data, seed and budget give the same weights"
    );
    let figures = |v: &TrainedVersion| -> Vec<(f64, f64)> {
        v.history
            .iter()
            .map(|e| (e.train_loss, e.validation_auc))
            .collect()
    };
    assert_eq!(figures(&a), figures(&b));

    // The same data read from a file on disk trains the same version.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shoppers.csv");
    std::fs::write(&path, example("online_shoppers_intention.csv")).unwrap();
    let on_disk = trained(&recipe, &[SharedFile::on_disk("the upload", &path)], 768 << 10).unwrap();
    assert_eq!(on_disk.weights, a.weights);
    assert_eq!(on_disk.dataset.sha256, a.dataset.sha256);
}

#[test]
fn a_budget_too_small_is_refused_by_name() {
    let (recipe, files) = shoppers(DataFormat::Csv);
    let error = trained(&recipe, &files, 64 << 10).err().unwrap();
    assert!(matches!(error, ModelError::MemoryBudget(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("--training-memory (64.0 KiB) is too small"),
        "{error}"
    );
}

#[test]
fn a_split_key_keeps_each_user_on_one_side_when_streamed() {
    let csv = shared(super::splits::users_csv(false));
    let budget = 256 << 10;
    let mut by_row = Recipe::new("converted", "yes");
    by_row.drop_columns = vec!["user_id".into()];
    let by_row = trained(&by_row, &csv, budget).unwrap();
    let mut by_user = Recipe::new("converted", "yes");
    by_user.split_key = "user_id".into();
    let by_user = trained(&by_user, &csv, budget).unwrap();
    assert!(by_row.dataset.streamed.is_some() && by_user.dataset.streamed.is_some());
    assert!(by_user.encoder.columns.iter().all(|c| c.name != "user_id"));
    // As in memory: folding rows, the fingerprint looks decisive; by user,
    // every member is tested on users it never met.
    assert!(by_row.test.auc > 0.9, "by row: {:?}", by_row.test);
    assert!(by_user.test.auc < 0.7, "by user: {:?}", by_user.test);
}

/// Shoppers six times over (73,980 rows): more rows than one report's
/// stride, streamed within 3 MiB.
fn six_shoppers() -> (Recipe, Vec<SharedFile>) {
    let csv = String::from_utf8(example("online_shoppers_intention.csv")).unwrap();
    let (header, rows) = csv.split_once('\n').unwrap();
    let mut bytes = format!("{header}\n");
    for _ in 0..6 {
        bytes.push_str(rows.trim_end());
        bytes.push('\n');
    }
    (Recipe::new("Revenue", "TRUE"), shared(bytes.into_bytes()))
}

/// Prepares `files` within 3 MiB, cancelling once `cancel_at` says so of
/// a report; the outcome and every report.
fn prepared_with_reports(
    recipe: &Recipe,
    files: &[SharedFile],
    cancel_at: impl Fn(&PreparationProgress) -> bool,
) -> (Result<(), ModelError>, Vec<PreparationProgress>) {
    let limits = TrainingLimits {
        memory: 3 << 20,
        ..TrainingLimits::default()
    };
    let cancel = AtomicBool::new(false);
    let mut reports = Vec::new();
    let outcome = {
        let mut watch = PreparationWatch::new(&cancel, |progress: &PreparationProgress| {
            reports.push(progress.clone());
            if cancel_at(progress) {
                cancel.store(true, Ordering::Relaxed);
            }
        });
        prepare_shared(recipe.clone(), files, &limits, &mut watch).map(|_| ())
    };
    (outcome, reports)
}

#[test]
fn a_streamed_preparation_reports_each_phase_and_its_rows() {
    let (recipe, files) = six_shoppers();
    let (outcome, reports) = prepared_with_reports(&recipe, &files, |_| false);
    outcome.unwrap();
    let starts: Vec<(&str, u64)> = reports
        .iter()
        .filter(|p| p.rows_read == 0)
        .map(|p| (p.phase, p.rows_total))
        .collect();
    assert_eq!(
        starts,
        [
            (preparation::SIZING, 0),
            (preparation::COUNTING, 0),
            (preparation::SAMPLING, 73_980),
            (preparation::FITTING, 73_980),
            (preparation::ENCODING, 73_980),
        ]
    );
    // Within the counting, sampling and encoding passes: rows as read.
    for phase in [
        preparation::COUNTING,
        preparation::SAMPLING,
        preparation::ENCODING,
    ] {
        let rows: Vec<u64> = reports
            .iter()
            .filter(|p| p.phase == phase && p.rows_read > 0)
            .map(|p| p.rows_read)
            .collect();
        assert!(!rows.is_empty(), "{phase}: {reports:?}");
        assert!(
            rows.windows(2).all(|w| w[0] < w[1]) && rows[rows.len() - 1] <= 73_980,
            "{phase}: {rows:?}"
        );
    }
}

#[test]
fn a_cancel_stops_a_streamed_preparation_between_chunks() {
    let (recipe, files) = six_shoppers();
    for phase in [
        preparation::COUNTING,
        preparation::SAMPLING,
        preparation::ENCODING,
    ] {
        let (outcome, reports) =
            prepared_with_reports(&recipe, &files, |p| p.phase == phase && p.rows_read > 0);
        assert!(
            matches!(outcome, Err(ModelError::Cancelled)),
            "{phase}: {outcome:?}"
        );
        // Nothing is reported after the report that cancelled.
        let last = reports.last().unwrap();
        assert!(last.phase == phase && last.rows_read > 0, "{phase}: {reports:?}");
    }
}
