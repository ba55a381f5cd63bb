//! Every bad input named in the contract gets the right status code, a
//! message naming the problem, and leaves the registry as it was.

use crate::common::*;
use serval_client::{ClientError, ServalClient, proto as pb};
use tonic::Code;

fn assert_status(result: Result<impl std::fmt::Debug, ClientError>, code: Code, needle: &str) {
    let status = status_of(result);
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "message {:?} does not mention {needle:?}",
        status.message()
    );
}

async fn predict_records(
    client: &mut ServalClient,
    records: Vec<pb::Record>,
) -> Result<pb::PredictResponse, ClientError> {
    client
        .predict(pb::PredictRequest {
            model: "small".into(),
            records,
            ..Default::default()
        })
        .await
}

#[tokio::test]
async fn bad_predict_calls_are_refused_with_named_problems() {
    let mut test = TestServer::start().await;
    let version = test.client.train(small_spec("small"), small_csv()).await.unwrap();
    let width = version.input_width as usize;
    let before = test.client.list_models(None).await.unwrap();
    let client = &mut test.client;

    // The good call works, with records and booleans given in several forms.
    let good = predict_records(
        client,
        vec![
            small_record(19.0, "red", true),
            small_record(1.0, "purple", false),
        ],
    )
    .await
    .unwrap();
    assert_eq!(good.scores.len(), 2);
    assert!(good.scores[0] > good.scores[1], "{:?}", good.scores);

    let unknown_model = client
        .predict(pb::PredictRequest {
            model: "nope".into(),
            records: vec![small_record(1.0, "red", true)],
            ..Default::default()
        })
        .await;
    assert_status(unknown_model, Code::NotFound, "\"nope\"");
    let unknown_version = client
        .predict(pb::PredictRequest {
            model: "small".into(),
            version: Some(9),
            records: vec![small_record(1.0, "red", true)],
            ..Default::default()
        })
        .await;
    assert_status(unknown_version, Code::NotFound, "version 9");

    let mut missing = small_record(1.0, "red", true);
    missing.fields.remove("x");
    assert_status(
        predict_records(client, vec![small_record(1.0, "red", true), missing]).await,
        Code::InvalidArgument,
        "records[1]: missing column \"x\"",
    );

    let mut wrong_type = small_record(1.0, "red", true);
    wrong_type.fields.insert("x".into(), text("lots"));
    assert_status(
        predict_records(client, vec![wrong_type]).await,
        Code::InvalidArgument,
        "\"x\": expected a number",
    );

    let mut wrong_bool = small_record(1.0, "red", true);
    wrong_bool.fields.insert("member".into(), text("perhaps"));
    assert_status(
        predict_records(client, vec![wrong_bool]).await,
        Code::InvalidArgument,
        "\"member\"",
    );

    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut record = small_record(1.0, "red", true);
        record.fields.insert("x".into(), number(bad));
        assert_status(
            predict_records(client, vec![record]).await,
            Code::InvalidArgument,
            "not a finite number",
        );
    }

    let mut empty_value = small_record(1.0, "red", true);
    empty_value.fields.insert("x".into(), pb::Value { kind: None });
    assert_status(
        predict_records(client, vec![empty_value]).await,
        Code::InvalidArgument,
        "has no value",
    );

    let dense = |values: Vec<f32>| pb::PredictRequest {
        model: "small".into(),
        dense_rows: vec![pb::DenseRow { values }],
        ..Default::default()
    };
    assert_status(
        client.predict(dense(vec![0.0; width + 1])).await,
        Code::InvalidArgument,
        &format!(
            "dense_rows[0]: has {} values, the model expects {width}",
            width + 1
        ),
    );
    let mut with_nan = vec![0.0; width];
    with_nan[1] = f32::NAN;
    assert_status(
        client.predict(dense(with_nan)).await,
        Code::InvalidArgument,
        "value 1 is NaN",
    );
    assert_eq!(
        client
            .predict(dense(vec![0.0; width]))
            .await
            .unwrap()
            .scores
            .len(),
        1
    );

    assert_status(
        predict_records(client, vec![]).await,
        Code::InvalidArgument,
        "no rows",
    );
    let both = pb::PredictRequest {
        model: "small".into(),
        records: vec![small_record(1.0, "red", true)],
        dense_rows: vec![pb::DenseRow {
            values: vec![0.0; width],
        }],
        ..Default::default()
    };
    assert_status(client.predict(both).await, Code::InvalidArgument, "not several");
    let too_many = pb::PredictRequest {
        model: "small".into(),
        records: vec![small_record(1.0, "red", true); 4097],
        ..Default::default()
    };
    assert_status(
        client.predict(too_many).await,
        Code::InvalidArgument,
        "at most 4096",
    );

    assert_eq!(client.list_models(None).await.unwrap(), before);
}

#[tokio::test]
async fn bad_training_calls_are_refused_and_store_nothing() {
    let mut test = TestServer::start().await;
    test.client.train(small_spec("small"), small_csv()).await.unwrap();
    let before = test.client.list_models(None).await.unwrap();
    let client = &mut test.client;

    assert_status(
        client.train(small_spec("small"), Vec::new()).await,
        Code::InvalidArgument,
        "no CSV data",
    );
    assert_status(
        client
            .train(small_spec("small"), b"id,x,colour,member,label\n".to_vec())
            .await,
        Code::InvalidArgument,
        "no data rows",
    );
    assert_status(
        client
            .train(small_spec("small"), b"a,b\n1,2\n3,4\n".to_vec())
            .await,
        Code::InvalidArgument,
        "label column \"label\" is not in the CSV header",
    );
    let one_class: Vec<u8> = String::from_utf8(small_csv())
        .unwrap()
        .replace(",0\n", ",1\n")
        .into_bytes();
    assert_status(
        client.train(small_spec("small"), one_class).await,
        Code::InvalidArgument,
        "only one class",
    );
    let mut ragged = small_csv();
    ragged.extend_from_slice(b"1,2,3\n");
    assert_status(
        client.train(small_spec("small"), ragged).await,
        Code::InvalidArgument,
        "line 202",
    );
    assert_status(
        client
            .train(small_spec("small"), vec![0xff, 0xfe, 0x00, 0x81, b'\n', 0x9c])
            .await,
        Code::InvalidArgument,
        "",
    );
    for name in ["", "../etc", "a b", "x'; DROP TABLE models; --"] {
        assert_status(
            client.train(small_spec(name), small_csv()).await,
            Code::InvalidArgument,
            "model",
        );
    }
    let zero_epochs = pb::TrainSpec {
        hyper_parameters: Some(pb::HyperParameters {
            epochs: Some(0),
            ..Default::default()
        }),
        ..small_spec("small")
    };
    assert_status(
        client.train(zero_epochs, small_csv()).await,
        Code::InvalidArgument,
        "epochs",
    );

    // A stream that ends before the spec, or whose first message is data.
    let empty = client
        .raw()
        .train(futures::stream::empty::<pb::TrainRequest>())
        .await;
    let status = empty.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("before the TrainSpec"), "{status:?}");
    let data_first = client
        .raw()
        .train(futures::stream::iter([pb::TrainRequest {
            payload: Some(pb::train_request::Payload::CsvChunk(small_csv())),
        }]))
        .await;
    let status = data_first.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("first message"), "{status:?}");

    assert_eq!(client.list_models(None).await.unwrap(), before);
    assert_status(client.list_models(Some("nope")).await, Code::NotFound, "\"nope\"");
}

#[tokio::test]
async fn records_accept_csv_text_json_kinds_and_nulls_alike() {
    let mut test = TestServer::start().await;
    test.client.train(small_spec("small"), small_csv()).await.unwrap();
    let typed = small_record(12.5, "green", true);
    let as_text = pb::Record {
        fields: [
            ("x".to_string(), text(" 12.5")),
            ("colour".to_string(), text("green")),
            ("member".to_string(), text("YES")),
            ("label".to_string(), text("1")),
            ("id".to_string(), text("ignored")),
        ]
        .into_iter()
        .collect(),
    };
    let scores = predict_records(&mut test.client, vec![typed, as_text])
        .await
        .unwrap()
        .scores;
    assert_eq!(scores[0], scores[1]);

    // A null is imputed like a blank CSV cell.
    let null = pb::Value {
        kind: Some(pb::value::Kind::NullValue(true)),
    };
    let mut with_null = small_record(12.5, "green", true);
    with_null.fields.insert("x".into(), null);
    let mut with_blank = small_record(12.5, "green", true);
    with_blank.fields.insert("x".into(), text("  "));
    let scores = predict_records(&mut test.client, vec![with_null, with_blank])
        .await
        .unwrap()
        .scores;
    assert_eq!(scores[0], scores[1]);
}

/// A numeric CSV of `rows` rows, `features` feature columns and a label
/// that follows the first feature.
fn wide_csv(rows: usize, features: usize) -> Vec<u8> {
    let mut csv: String = (0..features).map(|c| format!("x{c},")).collect();
    csv.push_str("label\n");
    for r in 0..rows {
        let label = r % 2;
        csv.push_str(&format!("{},", label * 5 + r % 5));
        for c in 1..features {
            csv.push_str(&format!("{},", (r * 31 + c * 17) % 23));
        }
        csv.push_str(&format!("{label}\n"));
    }
    csv.into_bytes()
}

#[tokio::test]
async fn wide_uploads_train_within_the_column_limit_and_are_refused_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut test = TestServer::start_in(dir, |config| config.max_training_columns = 4001).await;

    // 60 rows × 4,000 columns: 240,000 cells, as quick to train as any
    // table of that many cells (importance was quadratic in columns).
    let started = std::time::Instant::now();
    let version = test
        .client
        .train(spec("wide", "label", "1"), wide_csv(60, 4000))
        .await
        .unwrap();
    println!("60 x 4000 trained in {:?}", started.elapsed());
    assert_eq!(version.columns.len(), 4000);
    assert_eq!(version.input_width, 4000);

    assert_status(
        test.client
            .train(spec("wider", "label", "1"), wide_csv(60, 4001))
            .await,
        Code::InvalidArgument,
        "the CSV has 4002 columns, more than the server's limit of 4001 columns per training upload",
    );
    let names: Vec<String> = test
        .client
        .list_models(None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["wide"]);
}
