//! Parquet and Arrow training data: the example datasets converted to each
//! (numbers as floats, TRUE/FALSE as booleans, the rest as text, blanks as
//! nulls) train to the same model as the CSV, and broken or unusable files
//! are refused by name.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use serval_model::ModelError;
use serval_model::dataset::{DataFormat, boolean_token};
use serval_model::training::{Recipe, TrainedVersion, TrainingLimits, prepare, train};

pub(crate) fn example(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../examples/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A CSV as one record batch, typed as the CSV's own inference types it: a
/// column of two boolean spellings (TRUE/FALSE, 0/1) becomes Boolean, one of
/// numbers Float64, any other Utf8; blank cells are nulls.
pub(crate) fn batch_of(csv: &[u8]) -> RecordBatch {
    let mut reader = csv::Reader::from_reader(csv);
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(|c| c.trim().to_string()).collect())
        .collect();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (c, name) in header.iter().enumerate() {
        let cells: Vec<&str> = rows.iter().map(|r| r[c].as_str()).collect();
        let present = || cells.iter().filter(|c| !c.is_empty());
        let distinct: BTreeSet<&str> = present().copied().collect();
        let textual = present().any(|c| c.parse::<f64>().is_err());
        if distinct.len() <= 2 && distinct.iter().all(|c| boolean_token(c).is_some()) && !textual {
            let values: BooleanArray = cells.iter().map(|c| boolean_token(c)).collect();
            fields.push(Field::new(name, DataType::Boolean, true));
            columns.push(Arc::new(values));
        } else if !textual {
            let values: Float64Array = cells.iter().map(|c| c.parse::<f64>().ok()).collect();
            fields.push(Field::new(name, DataType::Float64, true));
            columns.push(Arc::new(values));
        } else if distinct.len() <= 2
            && distinct
                .iter()
                .all(|c| c.eq_ignore_ascii_case("true") || c.eq_ignore_ascii_case("false"))
        {
            let values: BooleanArray = cells.iter().map(|c| boolean_token(c)).collect();
            fields.push(Field::new(name, DataType::Boolean, true));
            columns.push(Arc::new(values));
        } else {
            let values: StringArray = cells.iter().map(|c| (!c.is_empty()).then_some(*c)).collect();
            fields.push(Field::new(name, DataType::Utf8, true));
            columns.push(Arc::new(values));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

pub(crate) fn parquet_of(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    // Several row groups, as a real export has.
    for start in (0..batch.num_rows()).step_by(4000) {
        writer
            .write(&batch.slice(start, 4000.min(batch.num_rows() - start)))
            .unwrap();
        writer.flush().unwrap();
    }
    writer.close().unwrap();
    out
}

fn arrow_of(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::FileWriter::try_new(&mut out, &batch.schema()).unwrap();
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    out
}

fn trained(recipe: &Recipe, data: &[u8]) -> Result<TrainedVersion, ModelError> {
    let prepared = prepare(recipe.clone(), data, &TrainingLimits::default())?;
    train(prepared, &AtomicBool::new(false), |_| {})
}

fn recipe(label: &str, positive: &str, drop: &[&str], format: DataFormat) -> Recipe {
    let mut recipe = Recipe::new(label, positive);
    recipe.drop_columns = drop.iter().map(|d| d.to_string()).collect();
    recipe.format = format;
    recipe
}

#[test]
fn parquet_and_arrow_train_the_same_model_as_the_csv() {
    for (file, label, positive, drop) in [
        ("online_shoppers_intention.csv", "Revenue", "TRUE", vec![]),
        ("Telco-Customer-Churn.csv", "Churn", "Yes", vec!["customerID"]),
    ] {
        let csv = example(file);
        let from_csv = trained(&recipe(label, positive, &drop, DataFormat::Csv), &csv).unwrap();
        let batch = batch_of(&csv);
        for (format, bytes) in [
            (DataFormat::Parquet, parquet_of(&batch)),
            (DataFormat::Arrow, arrow_of(&batch)),
        ] {
            let other = trained(&recipe(label, positive, &drop, format), &bytes).unwrap();
            for (a, b) in [
                (from_csv.validation.auc, other.validation.auc),
                (from_csv.test.auc, other.test.auc),
                (from_csv.test.f1, other.test.f1),
                (from_csv.validation.log_loss, other.validation.log_loss),
            ] {
                assert!((a - b).abs() < 1e-6, "{file} as {format:?}: {a} vs {b}");
            }
            assert_eq!(from_csv.dataset.rows, other.dataset.rows);
            assert_eq!(other.recipe.format, format);
            assert_eq!(
                from_csv.weights, other.weights,
                "{file} as {format:?}: the same rows and seed give the same weights"
            );
        }
    }
}

#[test]
fn unusable_columns_and_broken_files_are_refused_by_name() {
    let values = ListArray::from_iter_primitive::<arrow_array::types::Int64Type, _, _>(
        (0..40).map(|i| Some(vec![Some(i), Some(i + 1)])),
    );
    let labels: Int64Array = (0..40).map(|i| Some(i % 2)).collect();
    let schema = Schema::new(vec![
        Field::new("clicks", values.data_type().clone(), true),
        Field::new("bought", DataType::Int64, true),
    ]);
    let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(values), Arc::new(labels)]).unwrap();
    let error = trained(
        &recipe("bought", "1", &[], DataFormat::Parquet),
        &parquet_of(&batch),
    )
    .err()
    .unwrap();
    assert!(matches!(error, ModelError::InvalidData(_)), "{error:?}");
    assert!(
        error.to_string().contains("column \"clicks\" has type List"),
        "{error}"
    );

    // Dropped, the nested column is no obstacle (it was the only feature).
    let error = trained(
        &recipe("bought", "1", &["clicks"], DataFormat::Parquet),
        &parquet_of(&batch),
    )
    .err()
    .unwrap();
    assert!(error.to_string().contains("no feature columns left"), "{error}");

    let mut truncated = parquet_of(&batch_of(&example("Telco-Customer-Churn.csv")));
    truncated.truncate(truncated.len() / 2);
    let error = trained(
        &recipe("Churn", "Yes", &["customerID"], DataFormat::Parquet),
        &truncated,
    )
    .err()
    .unwrap();
    assert!(
        error.to_string().contains("the Parquet file cannot be read"),
        "{error}"
    );
    let error = trained(
        &recipe("Churn", "Yes", &[], DataFormat::Arrow),
        b"not arrow at all",
    )
    .err()
    .unwrap();
    assert!(
        error.to_string().contains("the Arrow file cannot be read"),
        "{error}"
    );

    let error = trained(&recipe("missing", "1", &[], DataFormat::Arrow), &arrow_of(&batch))
        .err()
        .unwrap();
    assert!(
        error
            .to_string()
            .contains("label column \"missing\" is not in the Arrow header"),
        "{error}"
    );
}

#[test]
fn a_numeric_label_matches_its_positive_value_as_a_number() {
    let x: Float64Array = (0..200).map(|i| Some(f64::from(i % 17))).collect();
    let y: Int64Array = (0..200).map(|i| Some(i64::from(i % 17 > 8))).collect();
    let schema = Schema::new(vec![
        Field::new("x", DataType::Float64, true),
        Field::new("y", DataType::Int64, true),
    ]);
    let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(x), Arc::new(y)]).unwrap();
    let mut recipe = recipe("y", "1.0", &[], DataFormat::Arrow);
    recipe.epochs = 2;
    let version = trained(&recipe, &arrow_of(&batch)).unwrap();
    assert!(
        (version.dataset.positive_rate - 0.47).abs() < 0.01,
        "{}",
        version.dataset.positive_rate
    );
}

#[test]
fn several_csv_files_have_one_fingerprint_whether_held_or_streamed() {
    use serval_model::dataset::SharedFile;
    use serval_model::training::{PreparationWatch, prepare_shared};
    use sha2::{Digest, Sha256};

    let csv = example("online_shoppers_intention.csv");
    let text = String::from_utf8(csv).unwrap();
    let (header, body) = text.split_once('\n').unwrap();
    let rows: Vec<&str> = body.lines().collect();
    let (first, second) = rows.split_at(rows.len() / 2);
    let parts = [first, second].map(|rows| format!("{header}\n{}\n", rows.join("\n")).into_bytes());
    let files: Vec<SharedFile> = parts
        .iter()
        .enumerate()
        .map(|(i, part)| SharedFile::in_memory(format!("part-{i}.csv"), part.clone()))
        .collect();
    let recipe = recipe("Revenue", "TRUE", &[], DataFormat::Csv);
    let fingerprint = |memory: u64| {
        let limits = TrainingLimits {
            memory,
            ..TrainingLimits::default()
        };
        let prepared = prepare_shared(
            recipe.clone(),
            &files,
            &limits,
            &mut PreparationWatch::unwatched(),
        )
        .unwrap();
        (prepared.dataset.streamed.is_some(), prepared.dataset.sha256)
    };
    let (held_streamed, held) = fingerprint(1 << 30);
    let (streamed_streamed, streamed) = fingerprint(3 << 20);
    assert!(!held_streamed && streamed_streamed, "one of each path");
    let mut all = Sha256::new();
    parts.iter().for_each(|part| all.update(part));
    assert_eq!(held, hex::encode(all.finalize()), "the files' bytes, in order");
    assert_eq!(streamed, held);
}

#[test]
fn a_bad_row_is_named_by_its_file_and_line_held_or_streamed() {
    use serval_model::dataset::SharedFile;
    use serval_model::training::{PreparationWatch, prepare_shared};

    let csv = example("online_shoppers_intention.csv");
    let text = String::from_utf8(csv).unwrap();
    let (header, body) = text.split_once('\n').unwrap();
    let mut rows: Vec<Vec<u8>> = body.lines().map(|row| row.as_bytes().to_vec()).collect();
    // Data row 9,998 (line 10,000 of the file) gets a first cell that is
    // not UTF-8: past the first chunks of a streamed read.
    let bad = &mut rows[9_998];
    let comma = bad.iter().position(|&b| b == b',').unwrap();
    bad.splice(..comma, [0xff, 0xfe]);
    let file_of = |rows: &[Vec<u8>]| {
        let mut bytes = format!("{header}\n").into_bytes();
        for row in rows {
            bytes.extend_from_slice(row);
            bytes.push(b'\n');
        }
        bytes
    };
    let whole = vec![SharedFile::in_memory("shoppers.csv", file_of(&rows))];
    let (first, second) = rows.split_at(6_000);
    let parts = vec![
        SharedFile::in_memory("part-0.csv", file_of(first)),
        SharedFile::in_memory("part-1.csv", file_of(second)),
    ];
    let recipe = recipe("Revenue", "TRUE", &[], DataFormat::Csv);
    let error = |files: &[SharedFile], memory: u64| {
        let limits = TrainingLimits {
            memory,
            ..TrainingLimits::default()
        };
        match prepare_shared(recipe.clone(), files, &limits, &mut PreparationWatch::unwatched()) {
            Ok(_) => panic!("the bad row is refused"),
            Err(error) => error.to_string(),
        }
    };
    let held = error(&whole, 1 << 30);
    assert!(
        held.contains("line 10000, column \"Administrative\": not valid UTF-8"),
        "{held}"
    );
    let streamed = error(&whole, 3 << 20);
    assert!(
        streamed.contains("shoppers.csv: line 10000, column \"Administrative\": not valid UTF-8"),
        "{streamed}"
    );
    // In the second file the row is its 3,998th data row: line 4,000.
    for memory in [1 << 30, 3 << 20] {
        let message = error(&parts, memory);
        assert!(
            message.contains("part-1.csv: line 4000, column \"Administrative\": not valid UTF-8"),
            "{memory}: {message}"
        );
    }
}
