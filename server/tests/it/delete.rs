//! DeleteModel through the real server, on versions trained from the real
//! online-shoppers dataset: a deleted version stops serving at once (also
//! when pinned and already loaded) while the others answer as before, the
//! registry file shrinks, the event is audited and streamed, refusals while
//! an alias or the traffic policy points at it, whole-model deletes,
//! version numbers never reused, NOT_FOUND, admin-only, and a second server
//! on the same registry following along.

use std::time::{Duration, Instant};

use crate::common::*;
use serval_client::{CallMetadata, ClientError, ServalClient, proto as pb};
use tonic::Code;

use pb::update_traffic_request::Change;

fn shoppers_spec(seed: u64) -> pb::TrainSpec {
    pb::TrainSpec {
        seed: Some(seed),
        hyper_parameters: Some(pb::HyperParameters {
            epochs: Some(2),
            ..Default::default()
        }),
        ..spec("shoppers", "Revenue", "TRUE")
    }
}

/// A server with `n` versions of "shoppers" (each from another seed), a
/// client that calls as "alice", and the first rows of the dataset.
async fn shoppers_versions(n: u64) -> (TestServer, ServalClient, Vec<pb::Record>) {
    let mut test = TestServer::start().await;
    let csv = dataset(SHOPPERS);
    for seed in 1..=n {
        test.client.train(shoppers_spec(seed), csv.clone()).await.unwrap();
    }
    let alice = ServalClient::connect_with(&test.server.url(), CallMetadata::default().with_actor("alice"))
        .await
        .unwrap();
    let mut records = serval_client::records::records_from_csv(&csv[..], b',').unwrap();
    records.truncate(50);
    (test, alice, records)
}

fn pinned(version: Option<u32>, records: &[pb::Record]) -> pb::PredictRequest {
    pb::PredictRequest {
        model: "shoppers".into(),
        version,
        records: records.to_vec(),
        ..Default::default()
    }
}

async fn versions_listed(client: &mut ServalClient) -> Vec<u32> {
    client
        .list_models(None)
        .await
        .unwrap()
        .iter()
        .flat_map(|m| m.versions.iter().map(|v| v.version))
        .collect()
}

/// The versions of `model` in the server's live statistics.
async fn live_versions(client: &mut ServalClient, model: &str) -> Vec<u32> {
    let stats = client.live_stats(model, 600).await.unwrap();
    stats.versions.iter().map(|v| v.version).collect()
}

/// The registry file and its write-ahead log together: what the registry
/// occupies on disk.
fn bytes_on_disk(test: &TestServer) -> u64 {
    let database = test.database_path();
    let wal = database.with_extension("db-wal");
    [database, wal]
        .iter()
        .map(|path| std::fs::metadata(path).map_or(0, |m| m.len()))
        .sum()
}

#[tokio::test]
async fn a_deleted_version_stops_serving_and_its_space_is_reclaimed() {
    let (mut test, mut alice, records) = shoppers_versions(3).await;
    let mut watch = test.client.watch(Some("shoppers"), 0).await.unwrap();
    // Every version loaded, the doomed one included.
    let mut before = Vec::new();
    for version in 1..=3 {
        before.push(
            test.client
                .predict(pinned(Some(version), &records))
                .await
                .unwrap()
                .scores,
        );
    }
    assert_ne!(before[0], before[2], "different seeds train different versions");
    // At least the f32 parameters of the default [128, 64] network.
    let input_width = u64::from(test.client.list_models(None).await.unwrap()[0].versions[1].input_width);
    let doomed_weights = 4 * (input_width * 128 + 128 + 128 * 64 + 64 + 64 + 1);
    let disk_before = bytes_on_disk(&test);
    assert_eq!(live_versions(&mut test.client, "shoppers").await, vec![1, 2, 3]);

    let deleted = alice
        .delete_model("shoppers", Some(2), "trained on a bad export")
        .await
        .unwrap();
    assert_eq!(
        (deleted.model.as_str(), deleted.versions.as_slice()),
        ("shoppers", &[2][..])
    );
    assert!(
        deleted.bytes_reclaimed + 4096 >= doomed_weights,
        "reclaimed {} bytes; the weights alone were over {doomed_weights}",
        deleted.bytes_reclaimed
    );
    let disk_after = bytes_on_disk(&test);
    assert!(
        disk_after < disk_before,
        "{disk_before} -> {disk_after} bytes on disk"
    );

    let gone = status_of(test.client.predict(pinned(Some(2), &records)).await);
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    assert!(gone.message().contains("version 2"), "{gone:?}");
    for (version, scores) in [(1, &before[0]), (3, &before[2])] {
        let again = test
            .client
            .predict(pinned(Some(version), &records))
            .await
            .unwrap();
        assert_eq!(&again.scores, scores, "version {version} answers as before");
    }
    let default = test.client.predict(pinned(None, &records)).await.unwrap();
    assert_eq!(default.version, 3);
    // The deleted version's live statistics went with it.
    assert_eq!(live_versions(&mut test.client, "shoppers").await, vec![1, 3]);
    assert_eq!(versions_listed(&mut test.client).await, vec![1, 3]);

    let history = test.client.rollout_history("shoppers", None).await.unwrap();
    let event = history.events.last().unwrap();
    assert_eq!(event.kind, "version_deleted");
    assert_eq!(
        (event.actor.as_str(), event.reason.as_str()),
        ("alice", "trained on a bad export")
    );
    assert!(event.before_json.contains("\"version\":2"), "{event:?}");
    // The change stream carries it too.
    let streamed = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the delete reaches WatchModels")
        .unwrap()
        .unwrap();
    assert_eq!(
        (streamed.kind.as_str(), streamed.actor.as_str()),
        ("version_deleted", "alice")
    );

    // Still gone after a restart.
    let mut test = test.restart().await;
    let gone = status_of(test.client.predict(pinned(Some(2), &records)).await);
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(versions_listed(&mut test.client).await, vec![1, 3]);
}

#[tokio::test]
async fn versions_that_serve_traffic_are_refused_and_kept() {
    let (mut test, mut alice, records) = shoppers_versions(3).await;
    alice.set_alias("shoppers", "production", 2, "").await.unwrap();
    alice
        .update_traffic(
            "shoppers",
            Change::Rollback(pb::RollbackChange { to_version: Some(1) }),
            "",
        )
        .await
        .unwrap();
    alice
        .update_traffic(
            "shoppers",
            Change::Canary(pb::CanaryChange {
                version: 3,
                percent: 10.0,
            }),
            "",
        )
        .await
        .unwrap();
    let events_before = test
        .client
        .rollout_history("shoppers", None)
        .await
        .unwrap()
        .events
        .len();

    let refusals = [
        (Some(2), "version 2 is still the target of alias \"production\""),
        (Some(1), "version 1 is still the stable version"),
        (Some(3), "version 3 is still the canary"),
        (None, "still has alias \"production\" (version 2)"),
    ];
    for (version, expected) in refusals {
        let refused = status_of(alice.delete_model("shoppers", version, "tidy up").await);
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains(expected), "{refused:?}");
    }
    alice.delete_alias("shoppers", "production", "").await.unwrap();
    let refused = status_of(alice.delete_model("shoppers", None, "").await);
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("traffic policy (stable version 1, canary version 3)"),
        "{refused:?}"
    );

    // Nothing was deleted, nothing but the alias removal was audited, and
    // every version still serves.
    assert_eq!(versions_listed(&mut test.client).await, vec![1, 2, 3]);
    let history = test.client.rollout_history("shoppers", None).await.unwrap();
    let new_kinds: Vec<&str> = history.events[events_before..]
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(new_kinds, vec!["alias_deleted"]);
    for version in 1..=3 {
        test.client
            .predict(pinned(Some(version), &records))
            .await
            .unwrap();
    }

    // Rolled back, the canary is free to go, and its weights leave the
    // database file itself.
    let registry = serval_registry::Registry::open(test.database_path().to_str().unwrap())
        .await
        .unwrap();
    let weights = registry.weights("shoppers", 3).await.unwrap();
    registry.close().await;
    let probe = &weights[weights.len() / 2..weights.len() / 2 + 64];
    let on_disk = |test: &TestServer| -> Vec<u8> {
        let mut bytes = std::fs::read(test.database_path()).unwrap();
        let wal = test.database_path().with_extension("db-wal");
        bytes.extend(std::fs::read(wal).unwrap_or_default());
        bytes
    };
    assert!(
        on_disk(&test).windows(64).any(|w| w == probe),
        "the probe must be findable before"
    );
    alice
        .update_traffic(
            "shoppers",
            Change::Rollback(pb::RollbackChange { to_version: None }),
            "",
        )
        .await
        .unwrap();
    let deleted = alice
        .delete_model("shoppers", Some(3), "canary failed")
        .await
        .unwrap();
    assert_eq!(deleted.versions, vec![3]);
    assert!(
        !on_disk(&test).windows(64).any(|w| w == probe),
        "version 3's weights are still in the file"
    );
    assert_eq!(versions_listed(&mut test.client).await, vec![1, 2]);
}

#[tokio::test]
async fn whole_models_go_and_version_numbers_are_never_reused() {
    let mut test = TestServer::start().await;
    train_two_small_versions(&mut test.client).await;
    let record = small_record(3.0, "red", true);
    let predict = |version: Option<u32>| pb::PredictRequest {
        model: "small".into(),
        version,
        records: vec![record.clone()],
        ..Default::default()
    };
    // The latest version goes; the next one does not take its number.
    test.client.delete_model("small", Some(2), "").await.unwrap();
    assert_eq!(test.client.predict(predict(None)).await.unwrap().version, 1);
    let third = test
        .client
        .train(small_spec_seeded(3), small_csv())
        .await
        .unwrap();
    assert_eq!(third.version, 3);

    test.client.predict(predict(Some(1))).await.unwrap();
    let deleted = test.client.delete_model("small", None, "retired").await.unwrap();
    assert_eq!(deleted.versions, vec![1, 3]);
    assert!(test.client.list_models(None).await.unwrap().is_empty());
    for version in [None, Some(1), Some(3)] {
        let gone = status_of(test.client.predict(predict(version)).await);
        assert_eq!(gone.code(), Code::NotFound, "{version:?}: {gone:?}");
    }
    // The model's history outlives it in the change stream (replayed from
    // the first event on).
    let mut watch = test.client.watch(Some("small"), 1).await.unwrap();
    let deleted_event = loop {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("the replay reaches the delete")
            .unwrap()
            .unwrap();
        if event.kind == "model_deleted" {
            break event;
        }
    };
    assert_eq!(deleted_event.reason, "retired");
    // The audit log still answers for the deleted model.
    let history = test.client.rollout_history("small", None).await.unwrap();
    assert_eq!(history.events.last().unwrap().kind, "model_deleted");
    let never = status_of(test.client.rollout_history("never-existed", None).await);
    assert_eq!(never.code(), Code::NotFound, "{never:?}");
    assert_eq!(deleted_event.before_json, r#"{"versions":[1,3]}"#);

    // Trained again, the model goes on numbering after its old versions.
    let reborn = test
        .client
        .train(small_spec_seeded(4), small_csv())
        .await
        .unwrap();
    assert_eq!(reborn.version, 4);
    assert_eq!(test.client.predict(predict(None)).await.unwrap().version, 4);
}

fn small_spec_seeded(seed: u64) -> pb::TrainSpec {
    pb::TrainSpec {
        seed: Some(seed),
        ..small_spec("small")
    }
}

#[tokio::test]
async fn unknown_models_and_versions_are_not_found() {
    let mut test = TestServer::start().await;
    test.client.train(small_spec("small"), small_csv()).await.unwrap();
    let missing_model = status_of(test.client.delete_model("ghost", None, "").await);
    assert_eq!(missing_model.code(), Code::NotFound);
    assert!(missing_model.message().contains("ghost"), "{missing_model:?}");
    let missing_version = status_of(test.client.delete_model("small", Some(7), "").await);
    assert_eq!(missing_version.code(), Code::NotFound);
    assert!(
        missing_version.message().contains("version 7"),
        "{missing_version:?}"
    );
    let malformed = status_of(test.client.delete_model("../small", None, "").await);
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(versions_listed(&mut test.client).await, vec![1]);
}

#[tokio::test]
async fn only_admin_tokens_delete() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestServer::start_in(dir, |config| {
        config.tokens = Some("admin:alice:alice-admin-token,predict:checkout:checkout-predict-token".into());
    })
    .await;
    let connect = |token: &'static str| {
        let url = test.server.url();
        async move {
            let metadata = CallMetadata::default().with_token(token).unwrap();
            ServalClient::connect_with(&url, metadata).await.unwrap()
        }
    };
    let mut admin = connect("alice-admin-token").await;
    let mut predictor = connect("checkout-predict-token").await;
    admin.train(small_spec("small"), small_csv()).await.unwrap();
    admin.train(small_spec("small"), small_csv()).await.unwrap();

    let denied = status_of(predictor.delete_model("small", Some(1), "").await);
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("DeleteModel"), "{denied:?}");
    assert_eq!(versions_listed(&mut admin).await, vec![1, 2]);

    admin.delete_model("small", Some(1), "").await.unwrap();
    let event = admin
        .rollout_history("small", None)
        .await
        .unwrap()
        .events
        .pop()
        .unwrap();
    assert_eq!(
        (event.kind.as_str(), event.actor.as_str()),
        ("version_deleted", "alice")
    );
}

#[tokio::test]
async fn a_second_server_stops_serving_a_version_deleted_through_the_first() {
    let mut first = TestServer::start().await;
    train_two_small_versions(&mut first.client).await;
    let mut config = serval_server::ServerConfig::for_database(first.database_path().to_string_lossy());
    config.registry_poll_interval = Duration::from_millis(100);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let second = serval_server::Server::start(&config).await.unwrap();
    let mut second_client = ServalClient::connect(&second.url()).await.unwrap();
    let pinned_to_one = pb::PredictRequest {
        model: "small".into(),
        version: Some(1),
        records: vec![small_record(3.0, "red", true)],
        ..Default::default()
    };
    // Loaded on the second server before the delete, and answered once
    // with an error, so it has a series for a second status code.
    second_client.predict(pinned_to_one.clone()).await.unwrap();
    let mut bad = pinned_to_one.clone();
    bad.records[0].fields.remove("x");
    assert!(second_client.predict(bad).await.is_err());
    let version_one = "model=\"small\",version=\"1\"";
    let metrics = metrics_text(&second).await;
    for series in [
        "serval_predict_requests_total{code=\"OK\",",
        "serval_predict_requests_total{code=\"INVALID_ARGUMENT\",",
        "serval_predict_rows_total{",
    ] {
        assert!(
            metrics.contains(&format!("{series}{version_one}")),
            "missing {series} in\n{metrics}"
        );
    }
    assert_eq!(live_versions(&mut second_client, "small").await, vec![1]);

    first.client.delete_model("small", Some(1), "").await.unwrap();
    let deleted_at = Instant::now();
    loop {
        match second_client.predict(pinned_to_one.clone()).await {
            Err(ClientError::Status(status)) if status.code() == Code::NotFound => break,
            answer => assert!(
                deleted_at.elapsed() < Duration::from_secs(5),
                "still answered 5 s after the delete: {answer:?}"
            ),
        }
        tokio::task::yield_now().await;
    }
    // Its live statistics and Predict series go too, once the second
    // server has applied the event.
    loop {
        let live = live_versions(&mut second_client, "small").await;
        let metrics = metrics_text(&second).await;
        if live.is_empty() && !metrics.contains(version_one) {
            break;
        }
        assert!(
            deleted_at.elapsed() < Duration::from_secs(5),
            "still kept 5 s after the delete: {live:?}\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.shutdown().await.unwrap();
}

async fn metrics_text(server: &serval_server::Server) -> String {
    let response = http_get(server.metrics_addr().unwrap(), "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test]
async fn a_cleared_traffic_policy_frees_the_model_for_deletion() {
    let mut test = TestServer::start().await;
    train_two_small_versions(&mut test.client).await;
    let canary = Change::Canary(pb::CanaryChange {
        version: 2,
        percent: 50.0,
    });
    test.client
        .update_traffic("small", canary, "try v2")
        .await
        .unwrap();
    let refused = status_of(test.client.delete_model("small", None, "").await);
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("traffic policy"), "{refused:?}");

    // Clearing the policy: default traffic goes back to the latest version.
    let cleared = test
        .client
        .update_traffic("small", Change::Clear(pb::ClearChange {}), "done with the test")
        .await
        .unwrap();
    assert!(cleared.policy.is_none(), "{cleared:?}");
    let started = Instant::now();
    loop {
        let answer = test
            .client
            .predict(pb::PredictRequest {
                model: "small".into(),
                records: vec![small_record(1.0, "red", false)],
                ..Default::default()
            })
            .await
            .unwrap();
        if answer.arm == pb::Arm::Latest as i32 {
            assert_eq!(answer.version, 2);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still routed by the policy: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let history = test.client.rollout_history("small", None).await.unwrap().events;
    let last = history.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.after_json.as_str()),
        ("traffic_changed", "null")
    );
    assert_eq!(last.reason, "done with the test");

    // A second clear has nothing to clear.
    let again = status_of(
        test.client
            .update_traffic("small", Change::Clear(pb::ClearChange {}), "")
            .await,
    );
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    let deleted = test.client.delete_model("small", None, "").await.unwrap();
    assert_eq!(deleted.versions, vec![1, 2]);
}
