//! Aliases, traffic policies and the audit log through the real server:
//! the split and its stickiness, zero failed requests while changes fly,
//! survival across restarts, time queries, refusals, the change stream,
//! live statistics, and a second server on the same registry following
//! along.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serval_client::{ServalClient, proto as pb};
use tonic::Code;

use pb::update_traffic_request::Change;

fn canary(version: u32, percent: f64) -> Change {
    Change::Canary(pb::CanaryChange { version, percent })
}

fn rollback(to: Option<u32>) -> Change {
    Change::Rollback(pb::RollbackChange { to_version: to })
}

fn promote() -> Change {
    Change::Promote(pb::PromoteChange {})
}

/// A server with versions 1 and 2 of model "small".
async fn two_versions() -> TestServer {
    let mut test = TestServer::start().await;
    train_two_small_versions(&mut test.client).await;
    test
}

fn keyed(key: &str) -> pb::PredictRequest {
    pb::PredictRequest {
        model: "small".into(),
        records: vec![small_record(3.0, "red", true)],
        routing_key: key.to_string(),
        ..Default::default()
    }
}

/// The arm each of `keys` reaches, asked concurrently.
async fn arms(client: &ServalClient, keys: &[String]) -> HashMap<String, (u32, pb::Arm)> {
    let mut tasks = Vec::new();
    for chunk in keys.chunks(keys.len().div_ceil(16)) {
        let mut client = client.clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for key in chunk {
                let answer = client.predict(keyed(&key)).await.unwrap();
                seen.push((key, (answer.version, answer.arm())));
            }
            seen
        }));
    }
    let mut all = HashMap::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

#[tokio::test]
async fn keyed_split_is_within_three_points_and_keys_only_move_to_the_canary() {
    let mut test = two_versions().await;
    let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    test.client
        .update_traffic("small", canary(2, 10.0), "try v2")
        .await
        .unwrap();

    let at_ten = arms(&test.client, &keys).await;
    let canaries = at_ten.values().filter(|(_, arm)| *arm == pb::Arm::Canary).count();
    let share = canaries as f64 / keys.len() as f64 * 100.0;
    assert!((share - 10.0).abs() <= 3.0, "canary share {share}%");
    for (version, arm) in at_ten.values() {
        assert_eq!(*version, if *arm == pb::Arm::Canary { 2 } else { 1 });
    }
    // The same key keeps its arm.
    let again = arms(&test.client, &keys[..500]).await;
    for (key, arm) in &again {
        assert_eq!(arm, &at_ten[key], "{key} changed arm");
    }

    let mut previous = at_ten;
    for percent in [25.0, 60.0] {
        test.client
            .update_traffic("small", canary(2, percent), "raise")
            .await
            .unwrap();
        let now = arms(&test.client, &keys[..2000]).await;
        for (key, (_, arm)) in &now {
            if previous[key].1 == pb::Arm::Canary {
                assert_eq!(*arm, pb::Arm::Canary, "{key} moved back to stable at {percent}%");
            }
        }
        previous.extend(now);
    }
}

#[tokio::test]
async fn fifty_changes_under_load_fail_no_request() {
    let test = two_versions().await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut load = Vec::new();
    for caller in 0..6 {
        let mut client = test.client.clone();
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let sent = started.elapsed();
                let result = client.predict(keyed(&format!("caller-{caller}-{n}"))).await;
                answers.push((sent, started.elapsed(), result.map(|r| r.version)));
                n += 1;
            }
            answers
        }));
    }

    // Each change's window: when its call was made and when it returned.
    let mut client = test.client.clone();
    let mut changes: Vec<(Duration, Duration, &'static [u32])> = Vec::new();
    for _ in 0..17 {
        for (change, allowed) in [
            (canary(2, 50.0), &[1u32, 2][..]),
            (promote(), &[2u32][..]),
            (rollback(Some(1)), &[1u32][..]),
        ] {
            let made = started.elapsed();
            client.update_traffic("small", change, "churn").await.unwrap();
            changes.push((made, started.elapsed(), allowed));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for task in load {
        for (sent, answered, result) in task.await.unwrap() {
            total += 1;
            let version = result.unwrap_or_else(|e| panic!("request failed during changes: {e}"));
            // Versions allowed by any policy in force while the call ran:
            // the one before it was sent, and any made before it returned.
            let before = changes.iter().rev().find(|(_, returned, _)| *returned <= sent);
            let during = changes.iter().filter(|(made, _, _)| *made < answered);
            let mut allowed: Vec<u32> = vec![];
            match before {
                Some((_, _, versions)) => allowed.extend_from_slice(versions),
                None => allowed.push(2), // no policy yet: the latest version
            }
            for (made, _, versions) in during {
                if before.is_none_or(|(b, _, _)| made >= b) {
                    allowed.extend_from_slice(versions);
                }
            }
            assert!(
                allowed.contains(&version),
                "v{version} answered at {sent:?}..{answered:?}"
            );
        }
    }
    assert!(changes.len() >= 50);
    assert!(total > 100, "only {total} requests ran");
}

#[tokio::test]
async fn policy_and_aliases_survive_a_restart() {
    let mut test = two_versions().await;
    test.client
        .set_alias("small", "production", 1, "ship")
        .await
        .unwrap();
    test.client.set_alias("small", "staging", 2, "try").await.unwrap();
    let state = test
        .client
        .update_traffic("small", canary(2, 30.0), "try")
        .await
        .unwrap();
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    let before = arms(&test.client, &keys).await;

    let mut test = test.restart().await;
    assert_eq!(test.client.rollout_state("small").await.unwrap(), state);
    assert_eq!(arms(&test.client, &keys).await, before);
    let by_alias = test
        .client
        .predict(pb::PredictRequest {
            alias: "staging".into(),
            ..keyed("x")
        })
        .await
        .unwrap();
    assert_eq!((by_alias.version, by_alias.arm()), (2, pb::Arm::Alias));
}

#[tokio::test]
async fn history_says_what_served_at_a_time() {
    let mut test = two_versions().await;
    let client = &mut test.client;
    let pause = || tokio::time::sleep(Duration::from_millis(30));
    let ts = |at: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    };
    pause().await;
    let before_policy = chrono::Utc::now();
    pause().await;
    client
        .update_traffic("small", canary(2, 20.0), "try v2")
        .await
        .unwrap();
    pause().await;
    let during_canary = chrono::Utc::now();
    pause().await;
    client
        .update_traffic("small", promote(), "v2 is good")
        .await
        .unwrap();
    pause().await;
    let after_promote = chrono::Utc::now();

    let at = |history: pb::GetRolloutHistoryResponse| history.serving_at.unwrap();
    let early = at(client
        .rollout_history("small", Some(ts(before_policy)))
        .await
        .unwrap());
    assert_eq!((early.policy, early.default_version), (None, 2));
    let canary_time = at(client
        .rollout_history("small", Some(ts(during_canary)))
        .await
        .unwrap());
    let policy = canary_time.policy.unwrap();
    assert_eq!(
        (
            policy.stable_version,
            policy.canary_version,
            policy.canary_percent
        ),
        (1, Some(2), 20.0)
    );
    let late = at(client
        .rollout_history("small", Some(ts(after_promote)))
        .await
        .unwrap());
    assert_eq!(
        (late.default_version, late.policy.unwrap().canary_version),
        (2, None)
    );

    let history = client.rollout_history("small", None).await.unwrap();
    let kinds: Vec<&str> = history.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "version_registered",
            "version_registered",
            "traffic_changed",
            "traffic_changed"
        ]
    );
    assert_eq!(history.events[3].reason, "v2 is good");
    assert!(history.events[3].before_json.contains("\"canary_version\":2"));
}

#[tokio::test]
async fn changes_naming_missing_versions_are_refused_and_store_nothing() {
    let mut test = two_versions().await;
    let client = &mut test.client;
    let events = client.rollout_history("small", None).await.unwrap().events.len();

    let refusals = [
        (
            status_of(client.set_alias("small", "production", 9, "").await),
            Code::FailedPrecondition,
            "version 9",
        ),
        (
            status_of(client.update_traffic("small", canary(9, 10.0), "").await),
            Code::FailedPrecondition,
            "version 9",
        ),
        (
            status_of(client.update_traffic("small", rollback(Some(9)), "").await),
            Code::FailedPrecondition,
            "version 9",
        ),
        (
            status_of(client.update_traffic("small", promote(), "").await),
            Code::FailedPrecondition,
            "no canary",
        ),
        (
            status_of(client.update_traffic("small", rollback(None), "").await),
            Code::FailedPrecondition,
            "no canary",
        ),
        (
            status_of(client.update_traffic("small", canary(2, -5.0), "").await),
            Code::InvalidArgument,
            "percent",
        ),
        (
            status_of(client.update_traffic("small", canary(2, 100.5), "").await),
            Code::InvalidArgument,
            "percent",
        ),
        (
            status_of(client.set_alias("small", "../prod", 1, "").await),
            Code::InvalidArgument,
            "alias",
        ),
        (
            status_of(client.set_alias("ghost", "production", 1, "").await),
            Code::NotFound,
            "ghost",
        ),
        (
            status_of(client.delete_alias("small", "nope", "").await),
            Code::NotFound,
            "nope",
        ),
        (
            status_of(client.rollout_state("ghost").await),
            Code::NotFound,
            "ghost",
        ),
    ];
    for (status, code, needle) in refusals {
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(needle),
            "{status:?} should mention {needle}"
        );
    }
    let unknown_alias = client
        .predict(pb::PredictRequest {
            alias: "production".into(),
            ..keyed("k")
        })
        .await;
    assert_eq!(status_of(unknown_alias).code(), Code::NotFound);
    assert_eq!(
        client.rollout_history("small", None).await.unwrap().events.len(),
        events
    );
    assert_eq!(client.rollout_state("small").await.unwrap().policy, None);
}

#[tokio::test]
async fn watchers_see_every_change_in_order() {
    let mut test = two_versions().await;
    let mut stream = test.client.watch(Some("small"), 0).await.unwrap();
    test.client.set_alias("small", "production", 1, "").await.unwrap();
    test.client
        .update_traffic("small", canary(2, 5.0), "")
        .await
        .unwrap();
    test.client.train(small_spec("small"), small_csv()).await.unwrap();
    test.client.train(small_spec("other"), small_csv()).await.unwrap();
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("event within 10 s")
            .unwrap()
            .unwrap();
        assert_eq!(event.model, "small");
        kinds.push(event.kind);
    }
    assert_eq!(kinds, ["alias_set", "traffic_changed", "version_registered"]);

    // Replay after event 1.
    let mut from_start = test.client.watch(None, 1).await.unwrap();
    let first = from_start.message().await.unwrap().unwrap();
    assert_eq!((first.id, first.kind.as_str()), (2, "version_registered"));
}

#[tokio::test]
async fn live_stats_compare_the_arms() {
    let mut test = two_versions().await;
    test.client
        .update_traffic("small", canary(2, 50.0), "")
        .await
        .unwrap();
    for i in 0..200 {
        test.client.predict(keyed(&format!("u{i}"))).await.unwrap();
    }
    let mut bad = keyed("u1");
    bad.records[0].fields.remove("x");
    assert!(test.client.predict(bad).await.is_err());
    let stats = test.client.live_stats("small", 60).await.unwrap();
    assert_eq!(stats.versions.len(), 2);
    let total: u64 = stats.versions.iter().map(|v| v.requests).sum();
    assert_eq!(total, 201);
    let errors: u64 = stats.versions.iter().map(|v| v.errors).sum();
    assert_eq!(errors, 1);
    for v in &stats.versions {
        assert_eq!(
            v.arm(),
            if v.version == 2 {
                pb::Arm::Canary
            } else {
                pb::Arm::Stable
            }
        );
        assert!(v.requests > 50, "{v:?}");
        assert!(v.p50_ms > 0.0 && v.p99_ms >= v.p50_ms, "{v:?}");
        assert!((0.0..=1.0).contains(&v.mean_score));
    }
    let with_error = stats.versions.iter().find(|v| v.errors == 1).unwrap();
    assert_eq!(with_error.errors_by_code.get("INVALID_ARGUMENT"), Some(&1));
}

#[tokio::test]
async fn a_second_server_on_the_same_registry_follows_by_polling() {
    let mut first = two_versions().await;
    let database = first.database_path();
    let mut config = serval_server::ServerConfig::for_database(database.to_string_lossy());
    config.registry_poll_interval = Duration::from_millis(200);
    let second = serval_server::Server::start(&config).await.unwrap();
    let mut second_client = ServalClient::connect(&second.url()).await.unwrap();
    let mut watch = second_client.watch(Some("small"), 0).await.unwrap();

    first
        .client
        .update_traffic("small", canary(2, 100.0), "all in")
        .await
        .unwrap();
    // Polled every 200 ms; the bound leaves room for a busy test machine,
    // and without polling the event would never come.
    let event = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("the change reached the second server by polling")
        .unwrap()
        .unwrap();
    assert_eq!(event.kind, "traffic_changed");
    // The second server swaps its routing before it streams the event, so
    // the next call already takes the new arm.
    let answer = second_client.predict(keyed("anyone")).await.unwrap();
    assert_eq!((answer.version, answer.arm()), (2, pb::Arm::Canary));
    second.shutdown().await.unwrap();
}
