//! A registry whose storage is full (SQLite's `max_page_count` set to the
//! file's size, so no file system needs filling): Train answers
//! RESOURCE_EXHAUSTED naming the database, the refusal is counted and shows
//! on health, predictions and reads go on, a delete frees room for the
//! next version, and nothing stored is lost or damaged.

use std::path::Path;
use std::time::Duration;

use serval_client::{ServalClient, proto as pb};
use serval_registry::testing::limited_to_pages;
use sqlx::{Connection, Row, SqliteConnection};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::common::*;

/// How long the test waits for what must happen (never a pass condition).
const PATIENCE: Duration = Duration::from_secs(60);

/// A small model with wide hidden layers: each version's weights (about
/// 270 KB) need pages of their own.
fn wide_spec(seed: u64) -> pb::TrainSpec {
    pb::TrainSpec {
        seed: Some(seed),
        hyper_parameters: Some(pb::HyperParameters {
            epochs: Some(2),
            hidden_layers: vec![256, 256],
            ..Default::default()
        }),
        ..small_spec("wide")
    }
}

async fn sqlite(path: &Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

async fn registry_health(client: &ServalClient) -> ServingStatus {
    HealthClient::new(client.channel().clone())
        .check(HealthCheckRequest {
            service: "serval.registry".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

async fn wait_for_health(client: &ServalClient, wanted: ServingStatus) {
    tokio::time::timeout(PATIENCE, async {
        while registry_health(client).await != wanted {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("serval.registry never turned {wanted:?}"));
}

fn metric(test: &TestServer, name: &str) -> String {
    let text = test.server.metrics().render();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Scores of one row from each listed version.
async fn score_every_version(client: &mut ServalClient, versions: &[u32]) {
    for &version in versions {
        let answer = client
            .predict(pb::PredictRequest {
                model: "wide".into(),
                version: Some(version),
                records: vec![small_record(12.0, "red", true)],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("version {version} serves: {e}"));
        assert_eq!((answer.version, answer.scores.len()), (version, 1));
    }
}

async fn listed_versions(client: &mut ServalClient) -> Vec<u32> {
    client.list_models(Some("wide")).await.unwrap()[0]
        .versions
        .iter()
        .map(|v| v.version)
        .collect()
}

#[tokio::test]
async fn a_full_registry_refuses_new_versions_by_name_deletes_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serval.db");
    let mut test = TestServer::start_in(dir, |_| {}).await;
    for seed in [1, 2] {
        test.client.train(wide_spec(seed), small_csv()).await.unwrap();
    }
    let TestServer { server, dir, .. } = test;
    server.shutdown().await.unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut sqlite(&path).await)
        .await
        .unwrap();

    // The same registry, full a few pages above its present size: room
    // for an audit event, none for a version.
    let location = limited_to_pages(&path.to_string_lossy(), pages as u64 + 4);
    let mut test = TestServer::start_in(dir, |config| {
        config.database = location;
        config.registry_poll_interval = Duration::from_millis(50);
    })
    .await;
    assert_eq!(registry_health(&test.client).await, ServingStatus::Serving);
    let refused = status_of(test.client.train(wide_spec(3), small_csv()).await);
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("the registry's storage is full")
            && refused
                .message()
                .contains(&format!("SQLite file {}", path.display())),
        "{refused:?}"
    );
    assert_eq!(metric(&test, "serval_registry_storage_full"), "1");
    assert_ne!(metric(&test, "serval_registry_storage_full_total"), "0");
    wait_for_health(&test.client, ServingStatus::NotServing).await;
    // Reads and predictions go on.
    assert_eq!(listed_versions(&mut test.client).await, [1, 2]);
    score_every_version(&mut test.client, &[1, 2]).await;

    // The way out through Serval: a delete, which frees room for the next
    // version.
    let deleted = test
        .client
        .delete_model("wide", Some(1), "the disk is full")
        .await
        .unwrap();
    assert_eq!(deleted.versions, [1]);
    let version = test
        .client
        .train(wide_spec(3), small_csv())
        .await
        .expect("a version fits once one is deleted");
    assert_eq!(version.version, 3);
    assert_eq!(metric(&test, "serval_registry_storage_full"), "0");
    wait_for_health(&test.client, ServingStatus::Serving).await;

    // Nothing stored was lost or damaged.
    let TestServer { server, dir, .. } = test;
    server.shutdown().await.unwrap();
    let check = sqlx::query("PRAGMA integrity_check")
        .fetch_all(&mut sqlite(&path).await)
        .await
        .unwrap();
    let check: Vec<String> = check.iter().map(|row| row.get(0)).collect();
    assert_eq!(check, ["ok"]);
    let mut test = TestServer::start_in(dir, |_| {}).await;
    assert_eq!(listed_versions(&mut test.client).await, [2, 3]);
    score_every_version(&mut test.client, &[2, 3]).await;
}
