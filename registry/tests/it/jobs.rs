//! Training jobs shared by several servers: a restarting server fails only
//! its own leftovers; a job whose server is gone fails once its heartbeat
//! is stale; on both engines.

use std::time::Duration;

use serval_registry::testing::TestDatabase;
use serval_registry::{Backend, JobState, Registry};

async fn state(registry: &Registry, id: &str) -> JobState {
    registry.job(id).await.unwrap().state
}

async fn a_restart_fails_only_the_restarted_replicas_jobs(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let registry = database.open().await;
    registry
        .start_job("job-a", "m", "alice", 10, 5, "replica-a")
        .await
        .unwrap();
    registry
        .start_job("job-b", "m", "bob", 10, 5, "replica-b")
        .await
        .unwrap();
    assert_eq!(registry.job("job-b").await.unwrap().replica, "replica-b");

    let failed = registry
        .fail_abandoned_jobs(Some("replica-a"), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(failed, 1);
    assert_eq!(state(&registry, "job-a").await, JobState::Failed);
    assert_eq!(state(&registry, "job-b").await, JobState::Running);
}

async fn jobs_with_a_stale_heartbeat_are_failed_by_any_replica(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let registry = database.open().await;
    registry
        .start_job("job-old", "m", "alice", 10, 5, "gone")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    registry
        .start_job("job-new", "m", "bob", 10, 5, "alive")
        .await
        .unwrap();

    // A sweep by another replica: only the job silent for longer than the
    // threshold goes.
    let failed = registry
        .fail_abandoned_jobs(None, Duration::from_millis(150))
        .await
        .unwrap();
    assert_eq!(failed, 1);
    assert_eq!(state(&registry, "job-old").await, JobState::Failed);
    assert_eq!(state(&registry, "job-new").await, JobState::Running);

    // A heartbeat keeps a job alive past the threshold.
    tokio::time::sleep(Duration::from_millis(300)).await;
    registry.heartbeat_jobs("alive").await.unwrap();
    let failed = registry
        .fail_abandoned_jobs(None, Duration::from_millis(150))
        .await
        .unwrap();
    assert_eq!(failed, 0);
    assert_eq!(state(&registry, "job-new").await, JobState::Running);
}

on_both_backends!(
    a_restart_fails_only_the_restarted_replicas_jobs,
    jobs_with_a_stale_heartbeat_are_failed_by_any_replica
);
