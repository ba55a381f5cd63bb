//! Training jobs through the real server: listed with their outcome, they
//! outlive a client that disconnects, can be re-attached to and cancelled
//! (leaving no version), and are marked failed if a server stopped under
//! them.

use std::time::Duration;

use crate::common::*;
use serval_client::{ClientError, proto as pb};
use serval_registry::{JobState, Registry};

/// A long training run on the real dataset (early stopping off).
/// Reads a training stream to its end (at most 30 s between events): Ok
/// when it closed cleanly, otherwise the status it ended with.
pub(crate) async fn stream_end(events: &mut serval_client::TrainUpload) -> Result<(), tonic::Status> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.message())
            .await
            .expect("the training stream went quiet for 30 s")?
        {
            Some(_) => continue,
            None => return Ok(()),
        }
    }
}

async fn jobs(test: &mut TestServer) -> Vec<pb::TrainingJob> {
    test.client
        .raw()
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs
}

#[tokio::test]
async fn a_finished_job_is_listed_with_its_version() {
    let mut test = TestServer::start().await;
    let (id, mut events) = start_training(&mut test.client, small_spec("small"), small_csv()).await;
    assert!(id.starts_with("job-"), "{id}");
    let mut epochs = 0;
    let mut version = None;
    while let Some(event) = events.message().await.unwrap() {
        match event.event {
            Some(pb::train_event::Event::Epoch(_)) => epochs += 1,
            Some(pb::train_event::Event::Completed(v)) => version = Some(v.version),
            _ => {}
        }
    }
    assert_eq!(version, Some(1));
    let listed = jobs(&mut test).await;
    assert_eq!(listed.len(), 1);
    let job = &listed[0];
    assert_eq!(
        (job.id.as_str(), job.state(), job.version),
        (id.as_str(), pb::JobState::Succeeded, 1)
    );
    assert_eq!((job.rows, job.epochs_done), (200, epochs));
    assert!(job.finished_at.is_some() && job.duration_seconds >= 0.0);
}

#[tokio::test]
async fn a_job_outlives_its_client_and_can_be_reattached() {
    let mut test = TestServer::start().await;
    let spec = pb::TrainSpec {
        hyper_parameters: Some(pb::HyperParameters {
            epochs: Some(4),
            patience: Some(0),
            ..Default::default()
        }),
        ..spec("shoppers", "Revenue", "TRUE")
    };
    let (id, events) = start_training(&mut test.client, spec, dataset(SHOPPERS)).await;
    drop(events);

    let mut watched = test
        .client
        .raw()
        .watch_job(pb::WatchJobRequest { job_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    while let Some(event) = watched.message().await.unwrap() {
        kinds.push(match event.event {
            Some(pb::train_event::Event::Preparing(_)) => "preparing",
            Some(pb::train_event::Event::Accepted(_)) => "accepted",
            Some(pb::train_event::Event::Epoch(_)) => "epoch",
            Some(pb::train_event::Event::Progress(_)) => "progress",
            Some(pb::train_event::Event::Completed(_)) => "completed",
            None => "none",
        });
    }
    // The preparation's phases (those the job keeps), then Accepted.
    let accepted = kinds.iter().position(|k| *k == "accepted").expect("accepted");
    assert!(
        accepted > 0 && kinds[..accepted].iter().all(|k| *k == "preparing"),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"completed"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "epoch").count(), 4, "{kinds:?}");
    assert_eq!(
        test.client.list_models(Some("shoppers")).await.unwrap()[0]
            .versions
            .len(),
        1
    );

    // Watching an ended job gives its outcome.
    let mut again = test
        .client
        .raw()
        .watch_job(pb::WatchJobRequest { job_id: id })
        .await
        .unwrap()
        .into_inner();
    let only = again.message().await.unwrap().unwrap();
    assert!(matches!(only.event, Some(pb::train_event::Event::Completed(v)) if v.version == 1));
}

#[tokio::test]
async fn cancelling_a_job_leaves_no_version() {
    let mut test = TestServer::start().await;
    let (id, mut events) = start_long_training(&mut test.client).await;
    let cancelled = test
        .client
        .raw()
        .cancel_job(pb::CancelJobRequest { job_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.id, id);
    let end = stream_end(&mut events).await;
    let status = end.expect_err("the stream ends with the cancellation");
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");

    let job = jobs(&mut test).await.remove(0);
    assert_eq!((job.state(), job.version), (pb::JobState::Cancelled, 0));
    assert!(job.epochs_done >= 1 && job.epochs_done < 400, "{job:?}");
    assert!(matches!(
        test.client.list_models(Some("shoppers")).await,
        Err(ClientError::Status(s)) if s.code() == tonic::Code::NotFound
    ));
    let again = test
        .client
        .raw()
        .cancel_job(pb::CancelJobRequest { job_id: id })
        .await;
    assert_eq!(again.unwrap_err().code(), tonic::Code::FailedPrecondition);
    let unknown = test
        .client
        .raw()
        .cancel_job(pb::CancelJobRequest {
            job_id: "job-nope".into(),
        })
        .await;
    let unknown = unknown.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert!(
        unknown.message().contains("\"job-nope\" not found") && unknown.message().contains("cancel it there"),
        "{}",
        unknown.message()
    );
    let unwatched = test
        .client
        .raw()
        .watch_job(pb::WatchJobRequest {
            job_id: "job-nope".into(),
        })
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(unwatched.code(), tonic::Code::NotFound);
    assert!(
        unwatched.message().contains("\"job-nope\" not found")
            && unwatched.message().contains("watch it there"),
        "{}",
        unwatched.message()
    );
}

#[tokio::test]
async fn jobs_left_running_by_a_stopped_server_are_failed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("serval.db");
    let registry = Registry::open(database.to_str().unwrap()).await.unwrap();
    registry
        .start_job("job-orphan", "m", "someone", 10, 5, "replica-a")
        .await
        .unwrap();
    registry.close().await;

    let mut test = TestServer::start_in(dir, |config| config.replica_name = "replica-a".into()).await;
    let job = jobs(&mut test).await.remove(0);
    assert_eq!(
        (job.id.as_str(), job.state()),
        ("job-orphan", pb::JobState::Failed)
    );
    assert!(job.error.contains("server stopped"), "{}", job.error);
    let registry = Registry::open(database.to_str().unwrap()).await.unwrap();
    assert_eq!(registry.job("job-orphan").await.unwrap().state, JobState::Failed);
}
