//! Training on the example datasets through the real server: quality floors
//! on held-out rows (ROC AUC and F1 at the stored threshold on a stratified
//! fifth of each file that training never sees), the stored test metrics,
//! bit-identical retraining, and Predict (records and dense rows) agreeing
//! with the model evaluated in-process, before and after a restart.

use crate::common::*;
use serval_client::proto as pb;
use serval_model::dataset::{IngestOptions, ingest_csv};
use serval_model::encoder::Encoder;
use serval_model::evaluation::{evaluate, roc_auc};
use serval_model::network::Mlp;
use serval_registry::Registry;
use serval_server::catalog::documents;

/// SHA-256 of the weights the default recipe trains on four fifths of the
/// Telco example (seed 42, customerID dropped), recorded on an x86-64
/// machine with AVX-512: candle's matrix kernels are chosen by CPU features,
/// so another instruction set may round differently.
const TELCO_DEFAULT_WEIGHTS_SHA256: &str = "8677e60f090ca16b8744fdc2a56e46495b6bd8bc4236f78293402b7d916419ef";

/// Held-out ROC AUC floors. LightGBM and CatBoost with their defaults reach
/// 0.928 / 0.833 / 0.818 and 0.928 / 0.843 / 0.831 on an 80/20 split of the
/// same files (docs/user-guide.md "Quality"); the floors sit a little below
/// what the default recipe reaches on this split, so a regression of the
/// model fails here, not a change of seed.
const SHOPPERS_AUC_FLOOR: f64 = 0.92;
const TELCO_AUC_FLOOR: f64 = 0.83;
const COUPON_AUC_FLOOR: f64 = 0.82;

/// Scores every row of `csv` in-process with the stored version: the
/// training-time encoding path (`encode_table`) and the stored network.
async fn in_process_scores(database: &std::path::Path, model: &str, version: u32, csv: &[u8]) -> Vec<f32> {
    let registry = Registry::open(database.to_str().unwrap()).await.unwrap();
    let record = registry.version(model, Some(version)).await.unwrap();
    let docs = documents(&record).unwrap();
    let network = Mlp::from_safetensors(&registry.weights(model, version).await.unwrap()).unwrap();
    registry.close().await;
    let column_types = docs.recipe.column_types.clone().into_iter().collect();
    let table = ingest_csv(
        csv,
        &IngestOptions {
            delimiter: docs.recipe.delimiter as u8,
            label_column: &docs.recipe.label_column,
            positive_label: &docs.recipe.positive_label,
            drop_columns: &docs.recipe.drop_columns,
            column_types: &column_types,
            max_rows: usize::MAX,
            max_columns: usize::MAX,
        },
    )
    .unwrap();
    let encoder = Encoder::new(docs.encoder);
    let rows: Vec<usize> = (0..table.labels.len()).collect();
    network.predict(&encoder.encode_table(&table, &rows)).unwrap()
}

fn csv_records(csv: &[u8]) -> Vec<pb::Record> {
    serval_client::records::records_from_csv(csv, b',').unwrap()
}

async fn predict_in_chunks(
    client: &mut serval_client::ServalClient,
    model: &str,
    records: &[pb::Record],
) -> Vec<f32> {
    let mut scores = Vec::new();
    for chunk in records.chunks(4000) {
        let response = client
            .predict(pb::PredictRequest {
                model: model.into(),
                records: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(response.version, 1);
        scores.extend(response.scores);
    }
    scores
}

async fn models_threshold(test: &mut TestServer) -> f64 {
    test.client.list_models(Some("shoppers")).await.unwrap()[0].versions[0]
        .metrics
        .unwrap()
        .threshold
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-5, "{what}: row {i}: {x} vs {y}");
    }
}

/// A file's rows split in two, stratified by `label`: every fifth row of
/// each class is held out. Both parts keep the header and the cell text.
fn held_out_split(csv: &[u8], label: &str) -> (Vec<u8>, Vec<u8>) {
    let mut reader = csv::Reader::from_reader(csv);
    let header = reader.byte_headers().unwrap().clone();
    let label_index = header.iter().position(|h| h == label.as_bytes()).unwrap();
    let mut seen: std::collections::HashMap<Vec<u8>, usize> = Default::default();
    let mut train = csv::Writer::from_writer(Vec::new());
    let mut test = csv::Writer::from_writer(Vec::new());
    train.write_byte_record(&header).unwrap();
    test.write_byte_record(&header).unwrap();
    for record in reader.byte_records() {
        let record = record.unwrap();
        let count = seen.entry(record[label_index].to_vec()).or_default();
        let part = if count.is_multiple_of(5) {
            &mut test
        } else {
            &mut train
        };
        *count += 1;
        part.write_byte_record(&record).unwrap();
    }
    (train.into_inner().unwrap(), test.into_inner().unwrap())
}

/// Trains `spec` on four fifths of `file` and checks the version on the
/// held-out fifth: ROC AUC and F1 at the stored threshold above the floors,
/// stored test metrics (rows that chose nothing) kept and sensible, and
/// Predict agreeing with the stored version evaluated in-process. Returns
/// the held-out records, their served scores and the version.
async fn train_and_check(
    test: &mut TestServer,
    file: &str,
    spec: pb::TrainSpec,
    auc_floor: f64,
    f1_floor: f64,
) -> (Vec<pb::Record>, Vec<f32>, pb::ModelVersion) {
    let (train_csv, held_out_csv) = held_out_split(&dataset(file), &spec.label_column);
    let model = spec.model.clone();
    let positive = spec.positive_label.clone();
    let label = spec.label_column.clone();
    let version = test.client.train(spec, train_csv).await.unwrap();
    assert_eq!(version.version, 1);
    let stored_test = version.test_metrics.expect("test metrics are stored");
    let validation = version.metrics.unwrap();
    println!("{file}: test {stored_test:?}, validation {validation:?}");
    for m in [stored_test, validation] {
        for value in [m.auc, m.accuracy, m.precision, m.recall, m.f1] {
            assert!((0.0..=1.0).contains(&value), "{m:?}");
        }
        assert!(m.log_loss > 0.0 && m.log_loss < 0.6, "{m:?}");
        assert_eq!(m.threshold, validation.threshold);
    }
    let dataset = version.dataset.clone().unwrap();
    assert_eq!(dataset.folds, 4);
    assert_eq!(dataset.train_rows, dataset.rows - dataset.skipped_rows);
    assert_eq!(dataset.validation_rows, dataset.train_rows);

    // The held-out fifth, as the CLI sends it (CSV text, label included).
    let records = csv_records(&held_out_csv);
    let served = predict_in_chunks(&mut test.client, &model, &records).await;
    let labels: Vec<f32> = records
        .iter()
        .map(|r| match &r.fields[&label].kind {
            Some(pb::value::Kind::StringValue(s)) => f32::from(u8::from(s.trim() == positive)),
            other => panic!("label cell {other:?}"),
        })
        .collect();
    let auc = roc_auc(&served, &labels);
    let at_threshold = evaluate(&served, &labels, validation.threshold);
    println!("{file}: held-out AUC {auc:.4}, F1 {:.4}", at_threshold.f1);
    assert!(auc >= auc_floor, "{file}: held-out AUC {auc} below {auc_floor}");
    assert!(
        at_threshold.f1 >= f1_floor,
        "{file}: held-out F1 {} at the stored threshold below {f1_floor}",
        at_threshold.f1
    );
    let expected = in_process_scores(&test.database_path(), &model, 1, &held_out_csv).await;
    assert_close(&served, &expected, "records vs in-process");
    (records, served, version)
}

#[tokio::test]
async fn online_shoppers_meets_the_floor_and_predicts_identically_after_restart() {
    let mut test = TestServer::start().await;
    let (records, served, _) = train_and_check(
        &mut test,
        SHOPPERS,
        spec("shoppers", "Revenue", "TRUE"),
        SHOPPERS_AUC_FLOOR,
        0.63,
    )
    .await;

    // Dense rows: the in-process encoding of the first rows, sent as is.
    let registry = Registry::open(test.database_path().to_str().unwrap())
        .await
        .unwrap();
    let docs = documents(&registry.version("shoppers", Some(1)).await.unwrap()).unwrap();
    registry.close().await;
    let encoder = Encoder::new(docs.encoder);
    let mut dense = Vec::new();
    for record in &records[..300] {
        serval_server::encoding::encode_record(&encoder, 0, record, &mut dense).unwrap();
    }
    let dense_rows: Vec<pb::DenseRow> = dense
        .chunks(encoder.width())
        .map(|values| pb::DenseRow {
            values: values.to_vec(),
        })
        .collect();
    let by_dense = test
        .client
        .predict(pb::PredictRequest {
            model: "shoppers".into(),
            version: Some(1),
            dense_rows,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_close(&by_dense.scores, &served[..300], "dense vs records");
    // Labels follow the stored threshold.
    let threshold = models_threshold(&mut test).await;
    assert_eq!(by_dense.threshold, threshold);
    for (score, label) in by_dense.scores.iter().zip(&by_dense.labels) {
        assert_eq!(*label, f64::from(*score) >= threshold);
    }
    assert!(by_dense.labels.iter().any(|l| *l) && by_dense.labels.iter().any(|l| !*l));

    let models = test.client.list_models(None).await.unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].versions.len(), 1);
    assert_eq!(models[0].versions[0].dataset.as_ref().unwrap().rows, 9_863);

    let mut test = test.restart().await;
    let after = predict_in_chunks(&mut test.client, "shoppers", &records).await;
    assert_eq!(after, served, "scores changed across a restart");
    assert_eq!(test.client.list_models(None).await.unwrap(), models);
}

#[tokio::test]
async fn telco_churn_meets_the_floor() {
    let mut test = TestServer::start().await;
    let spec = pb::TrainSpec {
        drop_columns: vec!["customerID".into()],
        ..spec("churn", "Churn", "Yes")
    };
    let (_, _, first) = train_and_check(&mut test, TELCO, spec.clone(), TELCO_AUC_FLOOR, 0.60).await;

    // Same data and seed: bit-identical weights, and the very weights this
    // recipe trains on these rows (a change to the defaults or the
    // arithmetic records a new digest here, on purpose).
    let (train_csv, _) = held_out_split(&dataset(TELCO), "Churn");
    let again = test.client.train(spec, train_csv).await.unwrap();
    assert_eq!(again.version, 2);
    assert_eq!(again.weights_sha256, first.weights_sha256);
    assert_eq!(first.weights_sha256, TELCO_DEFAULT_WEIGHTS_SHA256);
}

#[tokio::test]
async fn coupon_acceptance_meets_the_floor() {
    let mut test = TestServer::start().await;
    train_and_check(
        &mut test,
        COUPON,
        spec("coupon", "Y", "1"),
        COUPON_AUC_FLOOR,
        0.77,
    )
    .await;
}
