//! Training within --training-memory, on the server binary: data whose
//! in-memory form outgrows the budget (set by flag or environment) is
//! streamed and the version says so; a budget too small for even that is
//! refused with FAILED_PRECONDITION naming the flag, and registers nothing.

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
