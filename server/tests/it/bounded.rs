//! Training within --training-memory, on the server binary: data whose
//! in-memory form outgrows the budget (set by flag or environment) is
//! streamed — an upload or a source's objects larger than an eighth of the
//! budget are read from temporary files — and the version says so; a
//! budget too small for even that is refused with FAILED_PRECONDITION
//! naming the flag, and registers nothing. A streamed preparation reports
//! its phases before the first epoch, and a cancel during it ends the job
//! cancelled with nothing registered.

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

/// Every event of a Train call to its end, and how it ended.
async fn all_events(
    mut events: serval_client::TrainUpload,
) -> (Vec<pb::train_event::Event>, Result<(), tonic::Status>) {
    let mut seen = Vec::new();
    loop {
        match events.message().await {
            Ok(Some(event)) => seen.extend(event.event),
            Ok(None) => return (seen, Ok(())),
            Err(status) => return (seen, Err(status)),
        }
    }
}

fn chunks_of(csv: Vec<u8>) -> impl futures::Stream<Item = Vec<u8>> + Send + 'static {
    let chunks: Vec<Vec<u8>> = csv.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    futures::stream::iter(chunks)
}

#[tokio::test]
async fn a_streamed_training_reports_its_preparation_before_the_first_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_with_env(dir.path(), &["--training-memory", "3MiB"], &[]).await;
    let mut client = server.client().await;
    let spec = pb::TrainSpec {
        hyper_parameters: Some(pb::HyperParameters {
            epochs: Some(2),
            ..Default::default()
        }),
        ..spec("shoppers", "Revenue", "TRUE")
    };
    let events = client
        .train_stream(spec, chunks_of(dataset(SHOPPERS)))
        .await
        .unwrap();
    let (events, end) = all_events(events).await;
    end.unwrap();
    use pb::train_event::Event;
    let Some(Event::Preparing(first)) = events.first() else {
        panic!("the stream starts with the preparation: {events:?}");
    };
    assert!(first.job_id.starts_with("job-"), "{first:?}");
    let accepted = events
        .iter()
        .position(|e| matches!(e, Event::Accepted(_)))
        .expect("accepted");
    let first_epoch = events
        .iter()
        .position(|e| matches!(e, Event::Epoch(_)))
        .expect("an epoch");
    assert!(accepted < first_epoch);
    let preparation: Vec<&pb::PreparationProgress> = events[..accepted]
        .iter()
        .map(|e| match e {
            Event::Preparing(p) => p,
            other => panic!("only preparation before Accepted, got {other:?}"),
        })
        .collect();
    assert!(
        events[accepted..]
            .iter()
            .all(|e| !matches!(e, Event::Preparing(_)))
    );
    // Each phase's start is kept, so every subscriber sees them all, in
    // order, with the rows once they are counted.
    let phases: Vec<(&str, u64)> = preparation
        .iter()
        .filter(|p| p.rows_read == 0)
        .map(|p| (p.phase.as_str(), p.rows_total))
        .collect();
    assert_eq!(
        phases,
        [
            ("starting", 0),
            ("sizing the data", 0),
            ("counting rows", 0),
            ("sampling for the encoder", 12_330),
            ("fitting the encoder", 12_330),
            ("encoding rows", 12_330),
        ]
    );
    assert!(preparation.iter().all(|p| p.job_id == first.job_id));
    let Event::Accepted(accepted) = &events[accepted] else {
        unreachable!()
    };
    assert_eq!(accepted.job_id, first.job_id);
    assert!(matches!(events.last(), Some(Event::Completed(v)) if v.version == 1));
}

#[tokio::test]
async fn a_cancel_while_the_data_is_prepared_ends_the_job_cancelled_and_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_with_env(dir.path(), &["--training-memory", "8MiB"], &[]).await;
    let mut client = server.client().await;
    // Shoppers twenty times over: 246,600 rows to count, sample and encode
    // while the cancel comes back from the first event.
    let csv = String::from_utf8(dataset(SHOPPERS)).unwrap();
    let (header, rows) = csv.split_once('\n').unwrap();
    let mut large = format!("{header}\n");
    for _ in 0..20 {
        large.push_str(rows.trim_end());
        large.push('\n');
    }
    let mut events = client
        .train_stream(spec("shoppers", "Revenue", "TRUE"), chunks_of(large.into_bytes()))
        .await
        .unwrap();
    let first = events.message().await.unwrap().and_then(|e| e.event);
    let Some(pb::train_event::Event::Preparing(first)) = first else {
        panic!("the stream starts with the preparation: {first:?}");
    };
    let answered = client.cancel_job(&first.job_id).await.unwrap();
    assert_eq!(answered.id, first.job_id);
    assert_eq!(answered.model, "shoppers");

    let (rest, end) = all_events(events).await;
    let status = end.expect_err("the job ends cancelled");
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");
    assert!(
        rest.iter()
            .all(|e| matches!(e, pb::train_event::Event::Preparing(_))),
        "stopped while preparing: {rest:?}"
    );
    assert!(client.list_models(None).await.unwrap().is_empty());
    let jobs = client.list_jobs(None, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].id, first.job_id);
    assert_eq!(jobs[0].state, pb::JobState::Cancelled as i32, "{jobs:?}");
    assert_eq!(jobs[0].version, 0);
}
