//! `serval rollout` against three replicas on one PostgreSQL registry, the
//! CLI talking to one of them only: a canary that fails on another replica
//! is still rolled back, and the audit reason names where it fails; a
//! replica that stops drops out of the fleet's figures and shows as stale;
//! online quality is the fleet's on every replica.

use std::collections::BTreeSet;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;
use serval_client::{ServalClient, proto as pb};
use serval_registry::testing::{TestDatabase, postgres_available};
use serval_server::{Server, ServerConfig};

/// Replica `name` on `database`, its config adjusted by `configure`.
async fn replica(database: &str, name: &str, configure: impl FnOnce(&mut ServerConfig)) -> Server {
    let mut config = ServerConfig::for_database(database);
    config.replica_name = name.to_string();
    configure(&mut config);
    Server::start(&config).await.expect("replica starts")
}

/// Replicas a, b and c on `database`, each stale to the others two seconds
/// after its last publication, with "m" trained through a.
async fn three_replicas_going_stale(database: &str) -> (Server, Server, Server) {
    let stale_after = |config: &mut ServerConfig| config.live_stats_stale_after = Duration::from_secs(2);
    let a = replica(database, "replica-a", stale_after).await;
    let b = replica(database, "replica-b", stale_after).await;
    let c = replica(database, "replica-c", stale_after).await;
    let dir = tempfile::tempdir().unwrap();
    train(&a.url(), &dir).await;
    (a, b, c)
}

/// Runs `serval` against the replica at `url` only.
async fn serval(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_serval"))
        .args(args)
        .env("SERVAL_SERVER", url)
        .output()
        .await
        .expect("serval runs")
}

async fn ok(url: &str, args: &[&str]) -> String {
    let output = serval(url, args).await;
    assert!(
        output.status.success(),
        "serval {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Trains model "m" through `url` on rows where y follows x.
async fn train(url: &str, dir: &tempfile::TempDir) {
    let mut text = String::from("x,colour,y\n");
    for i in 0..120 {
        let colour = ["red", "blue", "green"][i % 3];
        text.push_str(&format!("{},{colour},{}\n", i % 40, u8::from(i % 40 > 20)));
    }
    let path = dir.path().join("train.csv");
    std::fs::write(&path, text).unwrap();
    let path = path.to_string_lossy();
    ok(
        url,
        &[
            "train",
            "--model",
            "m",
            "--data",
            &path,
            "--label",
            "y",
            "--positive",
            "1",
            "--epochs",
            "2",
        ],
    )
    .await;
}

/// A Predict call of two rows, keyed by `key`.
fn two_rows(key: usize) -> pb::PredictRequest {
    let record = |x: usize| pb::Record {
        fields: [
            ("x".to_string(), text((x % 40).to_string())),
            ("colour".to_string(), text("red".to_string())),
        ]
        .into_iter()
        .collect(),
    };
    pb::PredictRequest {
        model: "m".into(),
        records: vec![record(key), record(key + 1)],
        routing_key: format!("user-{key}"),
        ..Default::default()
    }
}

fn text(s: String) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::StringValue(s)),
    }
}

/// Keyed Predict calls to `url` until stopped.
fn load(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = ServalClient::connect(&url).await.unwrap();
        let mut key = 0;
        while !stop.load(Ordering::Relaxed) {
            let _ = client.predict(two_rows(key)).await;
            key += 1;
        }
    })
}

/// Polls `url`'s live statistics of "m" until `check` holds (within 30 s).
async fn until(url: &str, check: impl Fn(&pb::GetLiveStatsResponse) -> bool) -> pb::GetLiveStatsResponse {
    let mut client = ServalClient::connect(url).await.unwrap();
    let start = Instant::now();
    loop {
        let stats = client.live_stats("m", 60).await.unwrap();
        if check(&stats) {
            return stats;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never held: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn replica_named<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["live"]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["replica"] == name)
        .unwrap_or_else(|| panic!("{name} in {status}"))
}

fn version(versions: &Value, version: u64) -> &Value {
    versions
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == version)
        .unwrap_or_else(|| panic!("v{version} in {versions}"))
}

#[tokio::test]
async fn a_canary_failing_on_one_replica_is_rolled_back_through_another_naming_that_replica() {
    if !postgres_available() {
        return;
    }
    let database = TestDatabase::postgres().await;
    let a = replica(database.location(), "replica-a", |_| {}).await;
    let b = replica(database.location(), "replica-b", |_| {}).await;
    // Room for one queued row: every two-row call there is refused
    // (RESOURCE_EXHAUSTED), whichever version it goes to.
    let c = replica(database.location(), "replica-c", |config| {
        config.max_queued_rows = 1
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cli = b.url();
    train(&cli, &dir).await;
    train(&cli, &dir).await;
    ok(&cli, &["rollout", "rollback", "--model", "m", "--to", "1"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let traffic: Vec<_> = [&a, &b, &c]
        .into_iter()
        .map(|replica| load(replica.url(), stop.clone()))
        .collect();
    let failing = serval(
        &cli,
        &[
            "rollout",
            "start",
            "--model",
            "m",
            "--version",
            "2",
            "--steps",
            "50,100",
            "--interval",
            "3s",
            "--max-error-rate",
            "0.01",
            "--max-p99-ms",
            "1000",
            "--json",
        ],
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in traffic {
        task.await.unwrap();
    }
    let stderr = String::from_utf8_lossy(&failing.stderr);
    assert_eq!(failing.status.code(), Some(6), "the gate fails: {stderr}");
    let report = last_json_line(&String::from_utf8_lossy(&failing.stdout));
    assert_eq!(report["outcome"], "rolled_back");

    // The audit reason names the replica where the canary fails, and only
    // that one, though the CLI never talked to it.
    let history = last_json_line(&ok(&cli, &["rollout", "history", "--model", "m", "--json"]).await);
    let reason = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .find(|r| r.starts_with("rollout start: gate failed"))
        .expect("the rollback's audit event");
    assert!(
        reason.starts_with("rollout start: gate failed: error rate")
            && reason.contains("at 50%; failing on replica-c (error rate 1.0000 over"),
        "{reason}"
    );
    assert!(
        !reason.contains("replica-a") && !reason.contains("replica-b"),
        "{reason}"
    );

    // `rollout status` through the same replica shows the fleet and each
    // replica: the canary's errors are all on replica-c.
    let status = last_json_line(&ok(&cli, &["rollout", "status", "--model", "m", "--json"]).await);
    assert_eq!(status["policy"]["stable_version"], 1);
    assert_eq!(status["policy"]["canary_version"], Value::Null);
    let names: BTreeSet<&str> = status["live"]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["replica"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["replica-a", "replica-b", "replica-c"]));
    assert_eq!(status["live"]["replicas"][0]["replica"], "replica-b");
    assert_eq!(status["live"]["replicas"][0]["answering"], true);
    let on_c = version(&replica_named(&status, "replica-c")["versions"], 2);
    assert_eq!(on_c["error_rate"], 1.0, "{on_c}");
    assert!(on_c["errors_by_code"]["RESOURCE_EXHAUSTED"].as_u64().unwrap() > 0);
    for healthy in ["replica-a", "replica-b"] {
        let replica = replica_named(&status, healthy);
        assert_eq!(replica["stale"], false);
        let canary = version(&replica["versions"], 2);
        assert!(canary["requests"].as_u64().unwrap() > 0, "{canary}");
        assert_eq!(canary["errors"], 0, "{canary}");
    }
    let fleet = version(&status["live"]["versions"], 2);
    assert_eq!(fleet["replicas"], 3);
    let per_replica: u64 = status["live"]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| version(&r["versions"], 2)["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(fleet["requests"].as_u64().unwrap(), per_replica);
    for server in [a, b, c] {
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_replica_that_stops_drops_out_of_the_fleet_and_shows_as_stale() {
    if !postgres_available() {
        return;
    }
    let database = TestDatabase::postgres().await;
    let (a, b, c) = three_replicas_going_stale(database.location()).await;
    // 3, 4 and 5 calls on the three replicas.
    for (server, calls) in [(&a, 3), (&b, 4), (&c, 5)] {
        let mut client = ServalClient::connect(&server.url()).await.unwrap();
        for key in 0..calls {
            client.predict(two_rows(key)).await.unwrap();
        }
    }
    let requests = |stats: &pb::GetLiveStatsResponse| stats.versions.first().map_or(0, |v| v.requests);
    let all = until(&a.url(), |stats| requests(stats) == 12).await;
    assert_eq!(all.versions[0].replicas, 3);
    assert!(all.replicas.iter().all(|r| !r.stale), "{all:?}");
    assert_eq!(all.stale_after_seconds, 2.0);

    c.shutdown().await.unwrap();
    let without_c = until(&a.url(), |stats| {
        stats.replicas.iter().any(|r| r.replica == "replica-c" && r.stale)
    })
    .await;
    assert_eq!(
        requests(&without_c),
        3 + 4,
        "replica-c's calls left the fleet's figures"
    );
    assert_eq!(without_c.versions[0].replicas, 2);

    // The CLI shows it: stale, with its figures, outside the fleet's.
    let status = last_json_line(&ok(&a.url(), &["rollout", "status", "--model", "m", "--json"]).await);
    let on_c = replica_named(&status, "replica-c");
    assert_eq!(on_c["stale"], true);
    assert_eq!(version(&on_c["versions"], 1)["requests"], 5);
    assert!(on_c["last_published"].is_string(), "{on_c}");
    assert_eq!(version(&status["live"]["versions"], 1)["requests"], 7);
    let text = ok(&a.url(), &["rollout", "status", "--model", "m"]).await;
    assert!(
        text.contains("fleet of 2 replicas")
            && text.contains("replica replica-a (answering)")
            && text.contains("replica replica-c (STALE: published"),
        "{text}"
    );
    for server in [a, b] {
        server.shutdown().await.unwrap();
    }
}

/// `calls` Predict calls to `url`, and the outcome of every row answered,
/// labelled alternately.
async fn predict_for_outcomes(url: &str, calls: usize) -> Vec<pb::OutcomeReport> {
    let mut client = ServalClient::connect(url).await.unwrap();
    let mut outcomes = Vec::new();
    for key in 0..calls {
        let answer = client.predict(two_rows(key)).await.unwrap();
        assert_eq!(answer.prediction_ids.len(), 2);
        for id in answer.prediction_ids {
            outcomes.push(pb::OutcomeReport {
                prediction_id: id,
                label: outcomes.len() % 2 == 0,
                observed_at: None,
            });
        }
    }
    outcomes
}

fn online_outcomes(versions: &[pb::VersionStats]) -> u64 {
    versions
        .iter()
        .filter_map(|v| v.online.as_ref())
        .map(|online| online.outcomes)
        .sum()
}

#[tokio::test]
async fn online_quality_is_the_fleets_on_every_replica_and_a_stopped_replicas_drops_out() {
    if !postgres_available() {
        return;
    }
    let database = TestDatabase::postgres().await;
    let (a, b, c) = three_replicas_going_stale(database.location()).await;
    // 6, 8 and 10 rows answered by the three replicas; each one's outcomes
    // reported to it.
    for (server, calls) in [(&a, 3), (&b, 4), (&c, 5)] {
        let outcomes = predict_for_outcomes(&server.url(), calls).await;
        let mut client = ServalClient::connect(&server.url()).await.unwrap();
        let counts = client.report_outcomes(outcomes).await.unwrap();
        assert_eq!(counts.matched, 2 * calls as u64, "{counts:?}");
    }
    for server in [&a, &b, &c] {
        let all = until(&server.url(), |stats| online_outcomes(&stats.versions) == 24).await;
        let online = all.versions[0].online.as_ref().unwrap();
        assert_eq!(online.positives, 12, "{all:?}");
        // Each replica's row shows its own.
        for (name, outcomes) in [("replica-a", 6), ("replica-b", 8), ("replica-c", 10)] {
            let row = all.replicas.iter().find(|r| r.replica == name).unwrap();
            assert_eq!(online_outcomes(&row.versions), outcomes, "{name} in {all:?}");
        }
    }

    c.shutdown().await.unwrap();
    let without_c = until(&a.url(), |stats| {
        stats.replicas.iter().any(|r| r.replica == "replica-c" && r.stale)
    })
    .await;
    assert_eq!(
        online_outcomes(&without_c.versions),
        6 + 8,
        "replica-c's outcomes left the fleet's online quality"
    );
    for server in [a, b] {
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn outcomes_reported_to_another_replica_reach_the_one_that_issued_the_predictions() {
    if !postgres_available() {
        return;
    }
    let database = TestDatabase::postgres().await;
    let a = replica(database.location(), "replica-a", |_| {}).await;
    let b = replica(database.location(), "replica-b", |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    train(&a.url(), &dir).await;
    let mut outcomes = predict_for_outcomes(&a.url(), 10).await;
    // B must know A (its heartbeat) before it forwards A's ids.
    until(&b.url(), |stats| {
        stats.replicas.iter().any(|r| r.replica == "replica-a")
    })
    .await;
    // An id of a replica outside this registry stays unmatched.
    let stranger = outcomes[0]
        .prediction_id
        .replacen(&outcomes[0].prediction_id[..8], "00000000", 1);
    outcomes.push(pb::OutcomeReport {
        prediction_id: stranger,
        label: true,
        observed_at: None,
    });
    let mut to_b = ServalClient::connect(&b.url()).await.unwrap();
    let counts = to_b.report_outcomes(outcomes).await.unwrap();
    assert_eq!(counts.forwarded, 20, "{counts:?}");
    assert_eq!(
        (counts.matched, counts.unmatched, counts.other_replica),
        (0, 1, 1)
    );

    // A joins them: its own figures and the fleet's, read on either replica.
    let on_a = until(&a.url(), |stats| online_outcomes(&stats.versions) == 20).await;
    let a_row = on_a.replicas.iter().find(|r| r.replica == "replica-a").unwrap();
    assert_eq!(online_outcomes(&a_row.versions), 20);
    assert_eq!(on_a.versions[0].online.as_ref().unwrap().positives, 10);
    assert_eq!(on_a.versions[0].awaiting_outcomes, 0, "{on_a:?}");
    until(&b.url(), |stats| online_outcomes(&stats.versions) == 20).await;

    // The CLI says where they went.
    let again = tempfile::NamedTempFile::new().unwrap();
    let ids = predict_for_outcomes(&a.url(), 1).await;
    let mut file = String::from("prediction_id,label\n");
    for outcome in &ids {
        file.push_str(&format!(
            "{},{}\n",
            outcome.prediction_id,
            u8::from(outcome.label)
        ));
    }
    std::fs::write(again.path(), file).unwrap();
    let counts = last_json_line(
        &ok(
            &b.url(),
            &["outcomes", "--data", &again.path().to_string_lossy(), "--json"],
        )
        .await,
    );
    assert_eq!(counts["forwarded"], 2, "{counts}");
    assert_eq!(counts["unmatched"], 0, "{counts}");
    until(&a.url(), |stats| online_outcomes(&stats.versions) == 22).await;
    for server in [a, b] {
        server.shutdown().await.unwrap();
    }
}
