//! Live statistics published by several replicas: each replica's seconds
//! are kept apart and replaced when published again, a deleted version's
//! figures are gone at once, and pruning removes old seconds and silent
//! replicas; on both engines.

use chrono::{Duration, Utc};
use serval_registry::testing::TestDatabase;
use serval_registry::{Backend, ChangeContext, PublishedSecond};

fn second(model: &str, version: u32, second: u64, snapshot: &str) -> PublishedSecond {
    PublishedSecond {
        model: model.to_string(),
        version,
        second,
        snapshot: snapshot.to_string(),
    }
}

async fn replicas_publish_their_seconds_apart_and_old_ones_are_pruned(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let registry = database.open().await;
    for weights in [b"one".as_slice(), b"two"] {
        registry
            .register_version(crate::new_version("m", weights))
            .await
            .unwrap();
    }
    registry
        .publish_live_stats("a", &[second("m", 1, 100, "a1"), second("m", 2, 101, "a2")])
        .await
        .unwrap();
    registry
        .publish_live_stats("b", &[second("m", 1, 100, "b1")])
        .await
        .unwrap();
    // Publishing a second again replaces it (its calls went on).
    registry
        .publish_live_stats("a", &[second("m", 2, 101, "a2 later"), second("m", 2, 102, "a3")])
        .await
        .unwrap();
    // Nothing to publish is still a heartbeat.
    registry.publish_live_stats("c", &[]).await.unwrap();

    let found: Vec<(String, u32, u64, String)> = registry
        .live_stats_since("m", 101)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.replica, s.version, s.second, s.snapshot))
        .collect();
    assert_eq!(
        found,
        vec![
            ("a".to_string(), 2, 101, "a2 later".to_string()),
            ("a".to_string(), 2, 102, "a3".to_string()),
        ]
    );
    assert_eq!(registry.live_stats_since("m", 0).await.unwrap().len(), 4);
    assert!(registry.live_stats_since("other", 0).await.unwrap().is_empty());
    let heartbeats = registry.replica_heartbeats().await.unwrap();
    let names: Vec<&str> = heartbeats.iter().map(|h| h.replica.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(
        heartbeats
            .iter()
            .all(|h| h.published_at > Utc::now() - Duration::minutes(1))
    );

    // A deleted version's figures are not read, whoever published them.
    let context = ChangeContext {
        actor: "alice".into(),
        reason: "bad".into(),
    };
    registry.delete("m", Some(1), &context).await.unwrap();
    let versions: Vec<u32> = registry
        .live_stats_since("m", 0)
        .await
        .unwrap()
        .iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(versions, [2, 2]);

    // Pruning: seconds before 102 go; heartbeats all fresh, so none go.
    let removed = registry
        .prune_live_stats(102, Utc::now() - Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(removed, 3, "a's two older seconds and b's");
    assert_eq!(registry.live_stats_since("m", 0).await.unwrap().len(), 1);
    assert_eq!(registry.replica_heartbeats().await.unwrap().len(), 3);
    registry
        .prune_live_stats(0, Utc::now() + Duration::minutes(1))
        .await
        .unwrap();
    assert!(registry.replica_heartbeats().await.unwrap().is_empty());
}

on_both_backends!(replicas_publish_their_seconds_apart_and_old_ones_are_pruned);
