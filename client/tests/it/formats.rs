//! `serval train` beyond CSV: a Parquet file picked by its extension, a
//! server-side source with its lineage in the JSON output, a source
//! outside the server's allowed prefixes refused with the "refused" exit
//! code, a split key recorded with the version, and a training streamed
//! within the server's --training-memory said so.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;

use crate::common::*;

/// Rows `range` of a small dataset (the label follows `x`) as Parquet.
fn parquet_rows(range: std::ops::Range<usize>) -> Vec<u8> {
    let xs: Vec<f64> = range.clone().map(|i| (i * 37 % 200) as f64 / 10.0).collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("x", Arc::new(Float64Array::from(xs.clone()))),
        (
            "colour",
            Arc::new(StringArray::from_iter_values(
                range.clone().map(|i| ["red", "green", "blue"][i % 3]),
            )),
        ),
        (
            "member",
            Arc::new(BooleanArray::from_iter(range.map(|i| Some(i % 4 == 0)))),
        ),
        (
            "label",
            Arc::new(Int64Array::from_iter_values(
                xs.iter().map(|&x| i64::from(x > 10.0)),
            )),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}

const TRAIN: [&str; 7] = ["train", "--label", "label", "--positive", "1", "--epochs", "3"];

#[tokio::test]
async fn parquet_trains_from_a_file_and_from_an_allowed_source() {
    let fx = Fixture::start_with(|config, dir| {
        config.data_source_allow = vec![format!("file://{}/lake/", dir.display())];
    })
    .await;
    let file = fx.dir.path().join("small.parquet");
    std::fs::write(&file, parquet_rows(0..200)).unwrap();
    let mut args = TRAIN.to_vec();
    args.extend(["--model", "file", "--json", "--data", file.to_str().unwrap()]);
    let trained = last_json_line(&fx.ok(&args).await);
    assert_eq!(trained["dataset"]["format"], "parquet", "{trained}");
    assert_eq!(trained["dataset"]["rows"], 200);
    assert_eq!(trained["dataset"]["source"], "");

    let lake = fx.dir.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    std::fs::write(lake.join("part-0.parquet"), parquet_rows(0..100)).unwrap();
    std::fs::write(lake.join("part-1.parquet"), parquet_rows(100..200)).unwrap();
    let source = format!("file://{}/*.parquet", lake.display());
    let mut args = TRAIN.to_vec();
    args.extend(["--model", "lake", "--source", &source]);
    let text = fx.ok(&args).await;
    assert!(
        text.contains(&format!("read from {source} (2 objects)")),
        "{text}"
    );
    let listed = last_json_line(&fx.ok(&["models", "--model", "lake", "--json"]).await);
    let dataset = &listed["models"][0]["versions"][0]["dataset"];
    assert_eq!(dataset["rows"], 200, "{listed}");
    assert_eq!(dataset["source"], source.as_str());
    let objects = dataset["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 2);
    assert!(
        objects[1]["path"]
            .as_str()
            .unwrap()
            .ends_with("lake/part-1.parquet"),
        "{objects:?}"
    );

    let mut args = TRAIN.to_vec();
    args.extend(["--model", "outside", "--source", "file:///etc/*.parquet"]);
    let refused = fx.serval(&args).await;
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("outside the prefixes this server's operator allowed"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_split_key_is_sent_recorded_and_refused_when_it_is_the_label() {
    let fx = Fixture::start().await;
    let file = fx.dir.path().join("small.parquet");
    std::fs::write(&file, parquet_rows(0..200)).unwrap();
    let mut args = TRAIN.to_vec();
    args.extend([
        "--model",
        "keyed",
        "--split-key",
        "x",
        "--data",
        file.to_str().unwrap(),
    ]);
    let text = fx.ok(&args).await;
    assert!(text.contains("folded by x"), "{text}");
    let listed = last_json_line(&fx.ok(&["models", "--model", "keyed", "--json"]).await);
    let version = &listed["models"][0]["versions"][0];
    assert_eq!(version["dataset"]["split_key"], "x", "{listed}");
    // The key is not an input.
    let columns: Vec<&str> = version["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["colour", "member"], "{listed}");

    let mut args = TRAIN.to_vec();
    args.extend([
        "--model",
        "keyed",
        "--split-key",
        "label",
        "--data",
        file.to_str().unwrap(),
    ]);
    let refused = fx.serval(&args).await;
    assert!(!refused.status.success(), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("split_key: \"label\" is the label column"), "{err}");
}

#[tokio::test]
async fn a_training_streamed_within_the_servers_memory_says_so() {
    let fx = Fixture::start_with(|config, _| config.training_memory = 3 << 20).await;
    let data = example("online_shoppers_intention.csv");
    let args = [
        "train",
        "--label",
        "Revenue",
        "--positive",
        "TRUE",
        "--model",
        "shoppers",
        "--data",
        &data,
    ];
    let text = fx.ok(&args).await;
    assert!(
        text.contains("streamed within 3 MiB of training memory"),
        "{text}"
    );
    let listed = last_json_line(&fx.ok(&["models", "--model", "shoppers", "--json"]).await);
    let streamed = &listed["models"][0]["versions"][0]["dataset"]["streamed"];
    assert_eq!(streamed["memory_budget"], 3 << 20, "{listed}");
    assert_eq!(streamed["spilled"], false);
}
