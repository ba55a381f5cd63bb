//! Live statistics published by several replicas: each replica's seconds
//! are kept apart and replaced when published again, a deleted version's
//! figures are gone at once, and pruning removes old seconds and silent
//! replicas; the same for their online quality; posted outcomes are taken
//! once by their replica; on both engines.

use chrono::{Duration, Utc};
use serval_registry::testing::TestDatabase;
use serval_registry::{Backend, ChangeContext, MailboxOutcome, PublishedQuality, PublishedSecond};

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

fn quality(model: &str, version: u32, summary: &str) -> PublishedQuality {
    PublishedQuality {
        model: model.to_string(),
        version,
        summary: summary.to_string(),
    }
}

async fn replicas_publish_their_online_quality_apart_and_silent_ones_are_pruned(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let registry = database.open().await;
    for weights in [b"one".as_slice(), b"two"] {
        registry
            .register_version(crate::new_version("m", weights))
            .await
            .unwrap();
    }
    registry.publish_live_stats("a", &[]).await.unwrap();
    registry.publish_live_stats("b", &[]).await.unwrap();
    registry
        .publish_online_quality("a", &[quality("m", 1, "gone")], false)
        .await
        .unwrap();
    // A replica starting again replaces all it wrote before.
    registry
        .publish_online_quality("a", &[quality("m", 2, "a2")], true)
        .await
        .unwrap();
    registry
        .publish_online_quality("a", &[quality("m", 1, "a1")], false)
        .await
        .unwrap();
    registry
        .publish_online_quality("b", &[quality("m", 1, "b1")], false)
        .await
        .unwrap();
    // Publishing a version again replaces it; nothing to publish writes nothing.
    registry
        .publish_online_quality("a", &[quality("m", 2, "a2 later")], false)
        .await
        .unwrap();
    registry.publish_online_quality("a", &[], false).await.unwrap();

    let read = |rows: Vec<serval_registry::ReplicaQuality>| -> Vec<(String, u32, String)> {
        rows.into_iter()
            .map(|q| (q.replica, q.version, q.summary))
            .collect()
    };
    assert_eq!(
        read(registry.online_quality_published("m").await.unwrap()),
        vec![
            ("a".to_string(), 1, "a1".to_string()),
            ("a".to_string(), 2, "a2 later".to_string()),
            ("b".to_string(), 1, "b1".to_string()),
        ]
    );
    assert!(
        registry
            .online_quality_published("m")
            .await
            .unwrap()
            .iter()
            .all(|q| q.published_at > Utc::now() - Duration::minutes(1))
    );
    assert!(
        registry
            .online_quality_published("other")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        registry.prune_online_quality().await.unwrap(),
        0,
        "all replicas alive"
    );

    // A deleted version's quality is not read, and pruning removes it.
    let context = ChangeContext {
        actor: "alice".into(),
        reason: "bad".into(),
    };
    registry.delete("m", Some(1), &context).await.unwrap();
    assert_eq!(
        read(registry.online_quality_published("m").await.unwrap()),
        vec![("a".to_string(), 2, "a2 later".to_string())]
    );
    assert_eq!(
        registry.prune_online_quality().await.unwrap(),
        2,
        "a's and b's version 1"
    );

    // A replica whose heartbeat is pruned loses its rows.
    registry
        .prune_live_stats(0, Utc::now() + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(registry.prune_online_quality().await.unwrap(), 1);
    assert!(registry.online_quality_published("m").await.unwrap().is_empty());
}

on_both_backends!(replicas_publish_their_online_quality_apart_and_silent_ones_are_pruned);

fn posted(tag: u32, id: &str) -> MailboxOutcome {
    MailboxOutcome {
        replica_tag: tag,
        prediction_id: id.to_string(),
        label: id.ends_with('1'),
        observed_at: 1_800_000_000,
    }
}

async fn posted_outcomes_are_taken_by_their_replica_once_and_old_ones_pruned(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let registry = database.open().await;
    registry
        .post_outcomes(&[
            posted(7, "a-1"),
            posted(9, "b-0"),
            posted(7, "a-2"),
            posted(7, "a-3"),
        ])
        .await
        .unwrap();
    registry.post_outcomes(&[]).await.unwrap();
    let mut taken = Vec::new();
    let n = registry
        .take_outcomes(7, 2, |outcomes| taken.extend_from_slice(outcomes))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        taken,
        vec![posted(7, "a-1"), posted(7, "a-2")],
        "oldest first, at most 2"
    );
    let mut rest = Vec::new();
    registry
        .take_outcomes(7, 10, |outcomes| rest.extend_from_slice(outcomes))
        .await
        .unwrap();
    assert_eq!(rest, vec![posted(7, "a-3")], "taken ones are gone");
    assert_eq!(registry.take_outcomes(7, 10, |_| {}).await.unwrap(), 0);
    // Pruning removes old posts, whoever they wait for.
    assert_eq!(
        registry
            .prune_outcome_mailbox(Utc::now() - Duration::minutes(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        registry
            .prune_outcome_mailbox(Utc::now() + Duration::minutes(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(registry.take_outcomes(9, 10, |_| {}).await.unwrap(), 0);
}

on_both_backends!(posted_outcomes_are_taken_by_their_replica_once_and_old_ones_pruned);
