//! Predict's three request forms — records, columns and dense rows — carry
//! the same rows to the same scores: the shoppers dataset's rows sent each
//! way score identically, explain identically, and the server's allocation-
//! free reading of the request gives what the public message would.

use std::collections::HashMap;

use crate::common::*;
use serval_client::proto as pb;
use serval_client::records::{ColumnTable, records_from_csv};
use serval_model::encoder::Encoder;

/// Rows of the shoppers CSV sent in each call (below the server's limit).
const ROWS: usize = 400;

async fn scores(test: &mut TestServer, request: pb::PredictRequest) -> pb::PredictResponse {
    test.client
        .predict(pb::PredictRequest {
            model: "shoppers".into(),
            version: Some(1),
            ..request
        })
        .await
        .expect("scored")
}

#[tokio::test]
async fn records_columns_and_dense_rows_give_identical_scores() {
    let mut test = TestServer::start().await;
    test.client
        .train(spec("shoppers", "Revenue", "TRUE"), dataset(SHOPPERS))
        .await
        .unwrap();
    let csv = dataset(SHOPPERS);
    let records = records_from_csv(csv.as_slice(), b',').unwrap();
    let table = ColumnTable::from_csv(csv.as_slice(), b',').unwrap();
    // Typed where the CSV's text is exactly a number, text elsewhere: both
    // kinds travel.
    let columns = table.columns(0..ROWS);
    assert!(columns.iter().any(|c| !c.numbers.is_empty()));
    assert!(columns.iter().any(|c| !c.strings.is_empty()));

    // Dense: the rows encoded in process with the stored encoder.
    let registry = serval_registry::Registry::open(test.database_path().to_str().unwrap())
        .await
        .unwrap();
    let docs =
        serval_server::catalog::documents(&registry.version("shoppers", Some(1)).await.unwrap()).unwrap();
    registry.close().await;
    let encoder = Encoder::new(docs.encoder);
    let mut encoded = Vec::new();
    for (i, record) in records[..ROWS].iter().enumerate() {
        serval_server::encoding::encode_record(&encoder, i, record, &mut encoded).unwrap();
    }
    let dense_rows = encoded
        .chunks(encoder.width())
        .map(|values| pb::DenseRow {
            values: values.to_vec(),
        })
        .collect();

    let by_records = scores(
        &mut test,
        pb::PredictRequest {
            records: records[..ROWS].to_vec(),
            ..Default::default()
        },
    )
    .await;
    let by_columns = scores(
        &mut test,
        pb::PredictRequest {
            columns: columns.clone(),
            ..Default::default()
        },
    )
    .await;
    let by_dense = scores(
        &mut test,
        pb::PredictRequest {
            dense_rows,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_records.scores.len(), ROWS);
    assert_eq!(by_columns.scores, by_records.scores, "columns vs records");
    assert_eq!(by_dense.scores, by_records.scores, "dense vs records");
    assert_eq!(by_columns.labels, by_records.labels);

    // The same rows as columns of text only (as a CSV spells every cell).
    let text_columns = columns
        .iter()
        .enumerate()
        .map(|(c, column)| pb::Column {
            name: column.name.clone(),
            strings: records[..ROWS]
                .iter()
                .map(|r| match &r.fields[&column.name].kind {
                    Some(pb::value::Kind::StringValue(s)) => s.clone(),
                    other => panic!("column {c}: {other:?}"),
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let by_text = scores(
        &mut test,
        pb::PredictRequest {
            columns: text_columns,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_text.scores, by_records.scores, "text columns vs records");

    // Explanations: the same attributions and the same values shown.
    let explained = |request: pb::PredictRequest| pb::PredictRequest {
        explain: true,
        top_k: 100,
        ..request
    };
    let records_explained = scores(
        &mut test,
        explained(pb::PredictRequest {
            records: records[..5].to_vec(),
            ..Default::default()
        }),
    )
    .await;
    let columns_explained = scores(
        &mut test,
        explained(pb::PredictRequest {
            columns: table.columns(0..5),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(records_explained.explanations.len(), 5);
    assert_eq!(columns_explained.explanations, records_explained.explanations);
    assert!(
        columns_explained.explanations[0]
            .attributions
            .iter()
            .any(|a| !a.value.is_empty())
    );
}

#[tokio::test]
async fn missing_values_and_typed_values_mean_the_same_in_both_forms() {
    let mut test = TestServer::start().await;
    test.client.train(small_spec("small"), small_csv()).await.unwrap();
    let null = pb::Value {
        kind: Some(pb::value::Kind::NullValue(true)),
    };
    let record = |x: pb::Value, colour: pb::Value, member: pb::Value| pb::Record {
        fields: HashMap::from([
            ("x".to_string(), x),
            ("colour".to_string(), colour),
            ("member".to_string(), member),
        ]),
    };
    let records = vec![
        record(number(3.5), text("red"), boolean(true)),
        record(null.clone(), text("green"), boolean(false)),
        record(number(12.0), null.clone(), null.clone()),
        record(text("7"), text(""), text("yes")),
    ];
    let columns = vec![
        pb::Column {
            name: "x".into(),
            numbers: vec![3.5, 0.0, 12.0, 7.0],
            missing: vec![1],
            ..Default::default()
        },
        pb::Column {
            name: "colour".into(),
            strings: vec!["red".into(), "green".into(), "ignored".into(), String::new()],
            missing: vec![2],
            ..Default::default()
        },
        pb::Column {
            name: "member".into(),
            bools: vec![true, false, false, true],
            missing: vec![2],
            ..Default::default()
        },
    ];
    let predict = |request: pb::PredictRequest| {
        let mut client = test.client.clone();
        async move {
            client
                .predict(pb::PredictRequest {
                    model: "small".into(),
                    ..request
                })
                .await
                .unwrap()
                .scores
        }
    };
    let by_records = predict(pb::PredictRequest {
        records,
        ..Default::default()
    })
    .await;
    let mut unmarked = columns.clone();
    unmarked[0].missing.clear();
    let by_columns = predict(pb::PredictRequest {
        columns,
        ..Default::default()
    })
    .await;
    assert_eq!(by_records.len(), 4);
    assert_eq!(by_columns, by_records);
    // Unmarked, row 1's placeholder 0.0 is read as a value and scores
    // otherwise than the imputed median: the mark is what made it missing.
    let by_unmarked = predict(pb::PredictRequest {
        columns: unmarked,
        ..Default::default()
    })
    .await;
    assert_ne!(by_unmarked[1], by_columns[1]);
    assert_eq!(by_unmarked[0], by_columns[0]);
}
