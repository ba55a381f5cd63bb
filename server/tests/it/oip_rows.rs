//! What the Open Inference Protocol tests share: the small model's rows
//! in serval.v1's forms (records, and dense rows encoded by the stored
//! version's encoder), a server with it trained, and scores compared.

use serval_client::proto as pb;
use serval_model::encoder::Encoder;

use crate::common::*;

/// Rows for the small model: x, colour and member, one with x missing.
pub(crate) fn small_rows() -> Vec<(Option<f64>, &'static str, bool)> {
    (0..24)
        .map(|i| {
            let x = (i != 5).then_some(i as f64 * 0.9 - 1.0);
            (x, ["red", "green", "blue", "purple"][i % 4], i % 3 == 0)
        })
        .collect()
}

/// The rows as serval.v1 records (a missing x as null).
pub(crate) fn as_records(rows: &[(Option<f64>, &str, bool)]) -> Vec<pb::Record> {
    rows.iter()
        .map(|&(x, colour, member)| {
            let mut record = small_record(0.0, colour, member);
            record.fields.insert(
                "x".into(),
                match x {
                    Some(x) => number(x),
                    None => pb::Value {
                        kind: Some(pb::value::Kind::NullValue(true)),
                    },
                },
            );
            record
        })
        .collect()
}

/// [`small_rows`] encoded by version 1 of "small" as stored, and the
/// scores dense Predict gives them.
pub(crate) struct DensePredicted {
    pub dense: Vec<pb::DenseRow>,
    /// The encoded width of a row.
    pub width: usize,
    /// Every row's values, row after row.
    pub flat: Vec<f32>,
    pub scores: Vec<f64>,
}

pub(crate) async fn dense_predicted(test: &mut TestServer) -> DensePredicted {
    let registry = serval_registry::Registry::open(test.database_path().to_str().unwrap())
        .await
        .unwrap();
    let docs = serval_server::catalog::documents(&registry.version("small", Some(1)).await.unwrap()).unwrap();
    registry.close().await;
    let encoder = Encoder::new(docs.encoder);
    let mut flat = Vec::new();
    for (i, record) in as_records(&small_rows()).iter().enumerate() {
        serval_server::encoding::encode_record(&encoder, i, record, &mut flat).unwrap();
    }
    let width = encoder.width();
    let dense: Vec<pb::DenseRow> = flat
        .chunks(width)
        .map(|values| pb::DenseRow {
            values: values.to_vec(),
        })
        .collect();
    let answer = test
        .client
        .predict(pb::PredictRequest {
            model: "small".into(),
            dense_rows: dense.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    DensePredicted {
        dense,
        width,
        flat,
        scores: answer.scores.iter().map(|&s| f64::from(s)).collect(),
    }
}

/// A server with "small" trained.
pub(crate) async fn trained_small() -> TestServer {
    let mut test = TestServer::start().await;
    test.client.train(small_spec("small"), small_csv()).await.unwrap();
    test
}

/// Scores through the protocol (`oip`) against Predict's for the same
/// rows (`predict`), row by row.
pub(crate) fn assert_close(oip: &[f64], predict: &[f64], tolerance: f64, what: &str) {
    assert_eq!(oip.len(), predict.len(), "{what}: row count");
    for (i, (a, b)) in oip.iter().zip(predict).enumerate() {
        assert!(
            (a - b).abs() <= tolerance,
            "{what}, row {i}: the protocol's {a} vs Predict's {b}"
        );
    }
}
