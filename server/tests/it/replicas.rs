//! Several replicas on one PostgreSQL registry: a version trained through
//! one serves on all; a traffic change made through one reaches the others'
//! routing and change streams well before the next poll (announced, not
//! polled);
//! concurrent trainings get distinct numbers; a balanced client loses no
//! calls when a replica is killed; and a replica rides out the database
//! going away and coming back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::jobs::stream_end;
use crate::process::spawn_on;
use serval_client::{ClientError, ConnectOptions, ServalClient, proto as pb};
use serval_registry::testing::{TestCluster, TestDatabase, postgres_available};
use serval_server::{Server, ServerConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Replica `name` on `database`. The poll interval is long, so anything
/// seen within [`ANNOUNCED_WITHIN`] came through PostgreSQL's announcements.
async fn replica(database: &str, name: &str) -> (Server, ServalClient) {
    replica_with(database, name, |_| {}).await
}

/// How long a replica may take to see a change made through another: a
/// quarter of the poll interval (60 s), so a change seen in time was
/// announced, with room for a test machine running the suite on two busy
/// cores (announcements arrive in milliseconds on an idle one).
const ANNOUNCED_WITHIN: Duration = Duration::from_secs(15);

/// [`replica`], with its config adjusted by `configure`.
async fn replica_with(
    database: &str,
    name: &str,
    configure: impl FnOnce(&mut ServerConfig),
) -> (Server, ServalClient) {
    let mut config = ServerConfig::for_database(database);
    config.replica_name = name.to_string();
    config.registry_poll_interval = Duration::from_secs(60);
    configure(&mut config);
    let server = Server::start(&config).await.expect("replica starts");
    let client = ServalClient::connect(&server.url()).await.unwrap();
    (server, client)
}

/// Trains model "small" through every client at once (a different seed
/// each); returns the version numbers they got, sorted.
async fn train_on_each<'a>(clients: impl IntoIterator<Item = &'a ServalClient>) -> Vec<u32> {
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let spec = pb::TrainSpec {
                    seed: Some(i as u64),
                    ..small_spec("small")
                };
                client.train(spec, small_csv()).await.unwrap().version
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    versions.sort();
    versions
}

fn probe(version: Option<u32>) -> pb::PredictRequest {
    pb::PredictRequest {
        model: "small".into(),
        version,
        records: vec![small_record(3.0, "red", true)],
        ..Default::default()
    }
}

fn canary(version: u32, percent: f64) -> pb::update_traffic_request::Change {
    pb::update_traffic_request::Change::Canary(pb::CanaryChange { version, percent })
}

/// Polls `check` every 10 ms until it holds; fails after `limit`.
async fn within<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_version_trained_on_one_replica_serves_on_all_and_traffic_changes_reach_every_replica() {
    if !postgres_available() {
        return;
    }
    let database = TestDatabase::postgres().await;
    let (_a, mut a) = replica(database.location(), "a").await;
    let (_b, mut b) = replica(database.location(), "b").await;
    let (_c, mut c) = replica(database.location(), "c").await;

    let v1 = a.train(small_spec("small"), small_csv()).await.unwrap();
    for client in [&mut b, &mut c] {
        let answer = client.predict(probe(None)).await.unwrap();
        assert_eq!(answer.version, v1.version);
    }

    let second = pb::TrainSpec {
        seed: Some(7),
        ..small_spec("small")
    };
    let v2 = b.train(second, small_csv()).await.unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));

    // Change streams on A and B, opened before the change made on C.
    let after = a
        .rollout_history("small", None)
        .await
        .unwrap()
        .events
        .last()
        .unwrap()
        .id;
    let mut stream_a = a.watch(Some("small"), after).await.unwrap();
    let mut stream_b = b.watch(Some("small"), after).await.unwrap();
    c.update_traffic("small", canary(2, 100.0), "all to v2")
        .await
        .unwrap();

    // Every default request now goes to v2: routing on A and B follows
    // the change on C, announced.
    for client in [&a, &b] {
        let mut client = client.clone();
        within(ANNOUNCED_WITHIN, || {
            let mut client = client.clone();
            async move { client.predict(probe(None)).await.unwrap().version == 2 }
        })
        .await;
        let _ = client.predict(probe(Some(1))).await.unwrap();
    }
    for stream in [&mut stream_a, &mut stream_b] {
        let event = tokio::time::timeout(ANNOUNCED_WITHIN, stream.message())
            .await
            .expect("the change is streamed before the next poll")
            .unwrap()
            .unwrap();
        assert_eq!(event.kind, "traffic_changed");
    }

    // Half the keys to the canary: each key gets the same arm everywhere.
    a.update_traffic("small", canary(2, 50.0), "half").await.unwrap();
    tokio::time::timeout(ANNOUNCED_WITHIN, stream_b.message())
        .await
        .expect("the change is streamed before the next poll")
        .unwrap()
        .unwrap();
    let mut versions_seen = std::collections::BTreeSet::new();
    for key in 0..40 {
        let keyed = pb::PredictRequest {
            routing_key: format!("visitor-{key}"),
            ..probe(None)
        };
        let on_a = a.predict(keyed.clone()).await.unwrap().version;
        let on_b = b.predict(keyed.clone()).await.unwrap().version;
        let on_c = c.predict(keyed).await.unwrap().version;
        assert!(
            on_a == on_b && on_b == on_c,
            "visitor-{key}: {on_a} {on_b} {on_c}"
        );
        versions_seen.insert(on_a);
    }
    assert_eq!(versions_seen.len(), 2, "both arms are used: {versions_seen:?}");
}

#[tokio::test]
async fn concurrent_trainings_on_different_replicas_get_distinct_versions() {
    if !postgres_available() {
        return;
    }
    let database = TestDatabase::postgres().await;
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        replicas.push(replica(database.location(), name).await);
    }
    let versions = train_on_each(replicas.iter().map(|(_, client)| client)).await;
    assert_eq!(versions, vec![1, 2, 3]);
    let mut events = replicas[0].1.rollout_history("small", None).await.unwrap().events;
    events.retain(|e| e.kind == "version_registered");
    assert_eq!(events.len(), 3, "every registration is audited");
}

/// Nothing in the registry takes a second pooled connection while it holds
/// one, so replicas limited to one each still train concurrently, roll
/// out, delete and serve (work only queues for the connection; a nested
/// acquire would fail these calls after the pool's acquire timeout).
#[tokio::test]
async fn replicas_with_one_pooled_connection_each_train_roll_out_delete_and_serve() {
    if !postgres_available() {
        return;
    }
    let database = TestDatabase::postgres().await;
    let one_connection = |config: &mut ServerConfig| config.database_max_connections = Some(1);
    let (server_a, mut a) = replica_with(database.location(), "a", one_connection).await;
    let (server_b, mut b) = replica_with(database.location(), "b", one_connection).await;
    for server in [&server_a, &server_b] {
        let pool = server.state().registry.pool();
        assert_eq!(pool.options().get_max_connections(), 1);
    }

    assert_eq!(train_on_each([&a, &b]).await, vec![1, 2]);

    a.update_traffic("small", canary(2, 50.0), "half").await.unwrap();
    b.update_traffic(
        "small",
        pb::update_traffic_request::Change::Promote(pb::PromoteChange {}),
        "all",
    )
    .await
    .unwrap();
    let deleted = b.delete_model("small", Some(1), "superseded").await.unwrap();
    assert_eq!(deleted.versions, vec![1]);
    for client in [&a, &b] {
        let mut client = client.clone();
        within(Duration::from_secs(5), || {
            let mut client = client.clone();
            async move { client.predict(probe(None)).await.unwrap().version == 2 }
        })
        .await;
        let gone = client.predict(probe(Some(1))).await.unwrap_err();
        assert!(
            matches!(&gone, ClientError::Status(status) if status.code() == tonic::Code::NotFound),
            "{gone}"
        );
    }
    let kinds: Vec<String> = a
        .rollout_history("small", None)
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|event| event.kind)
        .collect();
    assert!(kinds.contains(&"version_deleted".to_string()), "{kinds:?}");
}

#[tokio::test]
async fn a_job_running_on_one_replica_is_cancelled_through_another() {
    if !postgres_available() {
        return;
    }
    let database = TestDatabase::postgres().await;
    let (_a, mut a) = replica(database.location(), "a").await;
    let (_b, mut b) = replica(database.location(), "b").await;
    // Until the first epoch: the job is under way on A.
    let (job_id, mut events) = start_long_training(&mut a).await;

    let asked = b.cancel_job(&job_id).await.unwrap();
    // Answered at once by B: A sees the request at its next epoch, which
    // may already have come.
    assert!(
        matches!(asked.state(), pb::JobState::Running | pb::JobState::Cancelled),
        "{asked:?}"
    );
    let end = stream_end(&mut events).await;
    assert_eq!(end.unwrap_err().code(), tonic::Code::Cancelled);
    let job = b.list_jobs(None, 10).await.unwrap().remove(0);
    assert_eq!(
        (job.id.as_str(), job.state()),
        (job_id.as_str(), pb::JobState::Cancelled)
    );
    assert!(job.epochs_done < 400, "{job:?}");
    assert_eq!(job.replica, "a", "listed through B, run by A");
    assert!(
        b.list_models(Some("shoppers")).await.is_err(),
        "no version registered"
    );
    // Cancelling an ended job is refused, wherever it is asked.
    assert!(b.cancel_job(&job_id).await.is_err());
}

#[tokio::test]
async fn a_balanced_client_loses_no_calls_when_a_replica_is_killed() {
    if !postgres_available() {
        return;
    }
    let database = TestDatabase::postgres().await;
    let logs = tempfile::tempdir().unwrap();
    let mut processes = Vec::new();
    for name in ["a", "b", "c"] {
        processes.push(spawn_on(logs.path(), database.location(), &["--replica-name", name]).await);
    }
    let urls: Vec<String> = processes.iter().map(|p| p.url.clone()).collect();
    ServalClient::connect(&urls[0])
        .await
        .unwrap()
        .train(small_spec("small"), small_csv())
        .await
        .unwrap();
    let balanced = ServalClient::connect_many(&urls, ConnectOptions::default())
        .await
        .unwrap();
    // Every replica has the version before the load starts.
    for url in &urls {
        let mut client = ServalClient::connect(url).await.unwrap();
        within(Duration::from_secs(5), || {
            let mut client = client.clone();
            async move { client.predict(probe(None)).await.is_ok() }
        })
        .await;
        client.predict(probe(None)).await.unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let succeeded = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let mut client = balanced.clone();
        let stop = stop.clone();
        let succeeded = succeeded.clone();
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.predict(probe(None)).await {
                    Ok(_) => {
                        succeeded.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => failures.push(error.to_string()),
                }
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kill = succeeded.load(Ordering::Relaxed);
    processes[1].signal("-KILL");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.unwrap());
    }
    let after_kill = succeeded.load(Ordering::Relaxed) - before_kill;
    assert!(
        before_kill > 0 && after_kill > 100,
        "{before_kill} then {after_kill}"
    );
    assert!(
        failures.is_empty(),
        "{} failed calls: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

async fn registry_health(client: &ServalClient) -> ServingStatus {
    let mut health = HealthClient::new(client.channel().clone());
    let answer = health
        .check(HealthCheckRequest {
            service: "serval.registry".into(),
        })
        .await
        .unwrap()
        .into_inner();
    answer.status()
}

#[tokio::test]
async fn replicas_keep_serving_while_the_database_is_down_and_admin_calls_recover() {
    if !postgres_available() {
        return;
    }
    // A server of this test's own, which it stops and starts.
    let postgres = TestCluster::start().unwrap();
    let (_a, mut a) = replica(&postgres.url(), "a").await;
    let mut config = ServerConfig::for_database(postgres.url());
    config.replica_name = "b".into();
    config.registry_poll_interval = Duration::from_millis(200);
    let b_server = Server::start(&config).await.unwrap();
    let mut b = ServalClient::connect(&b_server.url()).await.unwrap();
    // C polls once a minute: what it learns after the outage comes through
    // its change listener, which must reconnect by itself.
    let (_c, c) = replica(&postgres.url(), "c").await;
    a.train(small_spec("small"), small_csv()).await.unwrap();
    for client in [&b, &c] {
        within(Duration::from_secs(2), || {
            let mut client = client.clone();
            async move { client.predict(probe(None)).await.is_ok_and(|p| p.version == 1) }
        })
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let clients = [a.clone(), b.clone()];
        tokio::spawn(async move {
            let (mut served, mut failures) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                for mut client in clients.clone() {
                    match client.predict(probe(None)).await {
                        Ok(_) => served += 1,
                        Err(error) => failures.push(error.to_string()),
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (served, failures)
        })
    };

    postgres.halt().unwrap();
    // Admin calls fail with a clear UNAVAILABLE, and the health service
    // says so, while predictions go on.
    let refused = b.list_models(None).await.unwrap_err();
    let ClientError::Status(status) = refused else {
        panic!("expected a status, got {refused:?}")
    };
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("registry database cannot be reached"),
        "{status:?}"
    );
    within(Duration::from_secs(10), || {
        let b = b.clone();
        async move { registry_health(&b).await == ServingStatus::NotServing }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    postgres.resume().unwrap();
    within(Duration::from_secs(20), || {
        let mut b = b.clone();
        async move { b.list_models(None).await.is_ok() }
    })
    .await;
    within(Duration::from_secs(10), || {
        let b = b.clone();
        async move { registry_health(&b).await == ServingStatus::Serving }
    })
    .await;
    // Changes flow between the replicas again.
    let second = pb::TrainSpec {
        seed: Some(7),
        ..small_spec("small")
    };
    a.train(second, small_csv()).await.unwrap();
    a.update_traffic("small", canary(2, 100.0), "after the outage")
        .await
        .unwrap();
    for client in [&b, &c] {
        within(Duration::from_secs(5), || {
            let mut client = client.clone();
            async move { client.predict(probe(None)).await.is_ok_and(|p| p.version == 2) }
        })
        .await;
    }

    stop.store(true, Ordering::Relaxed);
    let (served, failures) = load.await.unwrap();
    assert!(served > 100, "{served}");
    assert!(
        failures.is_empty(),
        "{} failed predictions: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    b_server.shutdown().await.unwrap();
}
