//! Training within --training-memory, on the server binary: data whose
//! in-memory form outgrows the budget (set by flag or environment) is
//! streamed — an upload or a source's objects larger than an eighth of the
//! budget are read from temporary files — and the version says so; a
//! budget too small for even that is refused with FAILED_PRECONDITION
//! naming the flag, and registers nothing.

use serval_client::proto as pb;

use crate::common::*;
use crate::process::spawn_with_env;

#[tokio::test]
async fn a_server_with_little_training_memory_streams_the_rows_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_with_env(dir.path(), &["--training-memory", "3MiB"], &[]).await;
    let mut client = server.client().await;
    let version = client
        .train(spec("shoppers", "Revenue", "TRUE"), dataset(SHOPPERS))
        .await
        .unwrap();
    let summary = version.dataset.unwrap();
    let streamed = summary.streamed.expect("streamed within the budget");
    assert_eq!(streamed.memory_budget, 3 << 20);
    assert!(streamed.encoder_sample_rows > 0 && streamed.encoder_sample_rows < summary.rows);
    assert_eq!(summary.train_rows, 12_330);
    assert!(summary.validation_rows < summary.train_rows, "{summary:?}");
    let test = version.test_metrics.unwrap();
    assert!(test.auc > 0.9, "{test:?}");

    // The default budget holds this data in memory.
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_with_env(dir.path(), &[], &[]).await;
    let mut client = server.client().await;
    let version = client
        .train(spec("shoppers", "Revenue", "TRUE"), dataset(SHOPPERS))
        .await
        .unwrap();
    let summary = version.dataset.unwrap();
    assert_eq!(summary.streamed, None);
    assert_eq!(summary.validation_rows, summary.train_rows);
}

#[tokio::test]
async fn a_training_memory_too_small_is_refused_by_name_and_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_with_env(dir.path(), &[], &[("SERVAL_TRAINING_MEMORY", "64KiB")]).await;
    let mut client = server.client().await;
    let status = status_of(
        client
            .train(spec("shoppers", "Revenue", "TRUE"), dataset(SHOPPERS))
            .await,
    );
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("the server's --training-memory (64.0 KiB) is too small"),
        "{status:?}"
    );
    assert!(client.list_models(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_source_larger_than_the_budget_allows_in_memory_streams_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    let csv = String::from_utf8(dataset(SHOPPERS)).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    for (part, half) in rows.chunks(rows.len().div_ceil(2)).enumerate() {
        std::fs::write(
            lake.join(format!("part-{part}.csv")),
            format!("{header}\n{}\n", half.join("\n")),
        )
        .unwrap();
    }
    let allowed = format!("file://{}/", lake.display());
    let server = spawn_with_env(
        dir.path(),
        &["--training-memory", "3MiB", "--data-source-allow", &allowed],
        &[],
    )
    .await;
    let mut client = server.client().await;
    let version = client
        .train(
            pb::TrainSpec {
                source: format!("{allowed}*.csv"),
                ..spec("lake", "Revenue", "TRUE")
            },
            Vec::new(),
        )
        .await
        .unwrap();
    let summary = version.dataset.unwrap();
    assert_eq!(summary.objects.len(), 2);
    assert_eq!(summary.rows, 12_330);
    assert!(summary.streamed.is_some(), "{summary:?}");
    assert!(version.test_metrics.unwrap().auc > 0.9);
}
