//! Training uploads that stall or crawl: they end with DEADLINE_EXCEEDED
//! naming the server's limit, and hold no training slot while they last,
//! so a training whose data is complete runs meanwhile; uploads in
//! progress are limited on their own.

use std::time::Duration;

use futures::{Stream, StreamExt};
use serval_client::proto as pb;
use serval_client::{RawClient, ServalClient};

use crate::common::*;

/// How long the tests wait for what must happen (never a pass condition).
const PATIENCE: Duration = Duration::from_secs(60);

fn spec_message(model: &str) -> pb::TrainRequest {
    pb::TrainRequest {
        payload: Some(pb::train_request::Payload::Spec(small_spec(model))),
    }
}

fn chunk(bytes: &[u8]) -> pb::TrainRequest {
    pb::TrainRequest {
        payload: Some(pb::train_request::Payload::CsvChunk(bytes.to_vec())),
    }
}

/// Sends `requests` as one Train call and returns the status it ends with
/// (an upload that never ends cannot succeed).
fn upload(
    mut raw: RawClient,
    requests: impl Stream<Item = pb::TrainRequest> + Send + 'static,
) -> tokio::task::JoinHandle<tonic::Status> {
    tokio::spawn(async move {
        match raw.train(requests).await {
            Ok(_) => panic!("an upload that never ends was accepted"),
            Err(status) => status,
        }
    })
}

/// The spec and 5 kB of CSV, then silence with the stream kept open: a
/// client on a bad network, or a stuck script.
fn stalled(client: &mut ServalClient, model: &str) -> tokio::task::JoinHandle<tonic::Status> {
    let head = dataset(SHOPPERS)[..5_000].to_vec();
    let requests =
        futures::stream::iter([spec_message(model), chunk(&head)]).chain(futures::stream::pending());
    upload(client.raw().clone(), requests)
}

/// Waits until the server counts `uploads` uploads in progress.
async fn uploads_in_progress(test: &TestServer, uploads: u32) {
    let line = format!("serval_training_uploads {uploads}");
    tokio::time::timeout(PATIENCE, async {
        while !test.server.metrics().render().lines().any(|l| l == line) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never saw {line:?}"));
}

async fn ended(call: tokio::task::JoinHandle<tonic::Status>) -> tonic::Status {
    tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the server ends the upload")
        .unwrap()
}

#[tokio::test]
async fn stalled_uploads_end_with_an_error_and_never_block_a_training() {
    let dir = tempfile::tempdir().unwrap();
    let mut test = TestServer::start_in(dir, |config| {
        config.max_training_jobs = 2;
        config.upload_idle_timeout = Duration::from_secs(2);
    })
    .await;
    let stalls = [
        stalled(&mut test.client, "stalled-a"),
        stalled(&mut test.client, "stalled-b"),
    ];
    uploads_in_progress(&test, 2).await;

    // As many stalled uploads as training slots, and a training whose data
    // is complete still runs.
    let version = test
        .client
        .train(small_spec("ready"), small_csv())
        .await
        .expect("a training runs while uploads stall");
    assert_eq!(version.version, 1);

    for stall in stalls {
        let status = ended(stall).await;
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(
            status.message().contains("sent no data for 2s")
                && status.message().contains("--upload-idle-timeout")
                && status.message().contains("nothing was trained"),
            "{status:?}"
        );
    }
    // Their upload slots are free again, and nothing of theirs was stored.
    uploads_in_progress(&test, 0).await;
    test.client
        .train(small_spec("ready"), small_csv())
        .await
        .expect("a training after the stalled uploads ended");
    let models: Vec<String> = test
        .client
        .list_models(None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(models, ["ready"]);
}

#[tokio::test]
async fn uploads_beyond_the_limit_are_refused_and_a_crawling_one_ends_at_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut test = TestServer::start_in(dir, |config| {
        config.max_uploads = 1;
        config.max_upload_duration = Some(Duration::from_secs(2));
    })
    .await;
    // A few bytes every 50 ms: never idle for long, never done.
    let trickle = futures::stream::once(async { spec_message("crawling") }).chain(futures::stream::unfold(
        (),
        |()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((chunk(b"1,red,no,0\n"), ()))
        },
    ));
    let crawling = upload(test.client.raw().clone(), trickle);
    uploads_in_progress(&test, 1).await;

    let refused = status_of(test.client.train(small_spec("second"), small_csv()).await);
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("1 upload(s) already in progress"),
        "{refused:?}"
    );

    let status = ended(crawling).await;
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("took longer than 2s")
            && status.message().contains("--max-upload-duration"),
        "{status:?}"
    );
    uploads_in_progress(&test, 0).await;
    test.client
        .train(small_spec("second"), small_csv())
        .await
        .expect("the slot is free again");
}
