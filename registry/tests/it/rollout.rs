//! Aliases, traffic policies and the audit log, on both engines.

use serval_registry::testing::TestDatabase;
use serval_registry::{AuditFilter, Backend, ChangeContext, Registry, RegistryError, TrafficChange};

use super::new_version;

async fn registry_with_versions(backend: Backend, n: usize) -> (TestDatabase, Registry) {
    let dir = TestDatabase::new(backend).await;
    let registry = dir.open().await;
    for i in 0..n {
        registry
            .register_version(new_version("m", &[i as u8]))
            .await
            .unwrap();
    }
    (dir, registry)
}

fn context(reason: &str) -> ChangeContext {
    ChangeContext {
        actor: "alice".into(),
        reason: reason.into(),
    }
}

async fn concurrent_changes_are_serialised_and_all_audited(backend: Backend) {
    let (_dir, registry) = registry_with_versions(backend, 3).await;
    registry
        .update_traffic(
            "m",
            &TrafficChange::Rollback { to: Some(1) },
            None,
            &context("pin"),
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let registry = registry.clone();
            tokio::spawn(async move {
                let change = TrafficChange::Canary {
                    version: 2 + (i % 2),
                    percent: f64::from(i),
                };
                registry
                    .update_traffic("m", &change, None, &context("race"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let state = registry.rollout_state("m").await.unwrap();
    assert_eq!(state.policy.unwrap().revision, 21);
    let events = registry
        .audit_events(&AuditFilter {
            model: Some("m".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let traffic: Vec<_> = events.iter().filter(|e| e.kind == "traffic_changed").collect();
    assert_eq!(traffic.len(), 21);
    // Each change's "before" is the previous change's "after": none lost.
    for pair in traffic.windows(2) {
        assert_eq!(pair[1].before, pair[0].after);
    }
}

async fn stale_revisions_are_refused(backend: Backend) {
    let (_dir, registry) = registry_with_versions(backend, 2).await;
    let canary = TrafficChange::Canary {
        version: 2,
        percent: 5.0,
    };
    let first = registry
        .update_traffic("m", &canary, Some(0), &context(""))
        .await
        .unwrap();
    assert_eq!(first.policy.as_ref().unwrap().revision, 1);
    let err = registry
        .update_traffic("m", &TrafficChange::Promote, Some(0), &context(""))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Conflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{err}"
    );
    registry
        .update_traffic("m", &TrafficChange::Promote, Some(1), &context(""))
        .await
        .unwrap();
}

async fn the_audit_log_is_append_only(backend: Backend) {
    let (_dir, registry) = registry_with_versions(backend, 1).await;
    registry
        .set_alias("m", "production", 1, &context("ship"))
        .await
        .unwrap();
    for statement in [
        "UPDATE audit_events SET actor = 'mallory'",
        "DELETE FROM audit_events",
    ] {
        let err = sqlx::query(statement).execute(registry.pool()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(registry.latest_audit_id().await.unwrap(), 2);
}

async fn a_shadow_is_kept_with_the_policy_until_it_serves_or_stops(backend: Backend) {
    let (_dir, registry) = registry_with_versions(backend, 3).await;
    let shadow = |version: Option<u32>, percent: f64| TrafficChange::Shadow { version, percent };
    // Without a policy, the newest other version becomes stable.
    let state = registry
        .update_traffic("m", &shadow(Some(3), 25.0), None, &context("try v3"))
        .await
        .unwrap();
    let policy = state.policy.unwrap();
    assert_eq!(
        (
            policy.stable_version,
            policy.shadow_version,
            policy.shadow_percent
        ),
        (2, Some(3), 25.0)
    );
    // Other changes keep it; it cannot shadow a version that serves.
    let state = registry
        .update_traffic(
            "m",
            &TrafficChange::Canary {
                version: 1,
                percent: 10.0,
            },
            None,
            &context("c"),
        )
        .await
        .unwrap();
    assert_eq!(state.policy.as_ref().unwrap().shadow_version, Some(3));
    for (version, percent) in [(2, 5.0), (1, 5.0)] {
        let refused = registry
            .update_traffic("m", &shadow(Some(version), percent), None, &context("x"))
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("already serves"), "{refused}");
    }
    for (version, percent) in [(Some(3), 101.0), (Some(9), 5.0)] {
        assert!(
            registry
                .update_traffic("m", &shadow(version, percent), None, &context("x"))
                .await
                .is_err()
        );
    }
    // Deleting it is refused while it shadows.
    let refused = registry.delete("m", Some(3), &context("rm")).await.unwrap_err();
    assert!(refused.to_string().contains("shadows"), "{refused}");
    // Once it serves, it shadows no more.
    registry
        .update_traffic(
            "m",
            &TrafficChange::Canary {
                version: 3,
                percent: 10.0,
            },
            None,
            &context("c"),
        )
        .await
        .unwrap();
    let policy = registry.rollout_state("m").await.unwrap().policy.unwrap();
    assert_eq!(
        (
            policy.canary_version,
            policy.shadow_version,
            policy.shadow_percent
        ),
        (Some(3), None, 0.0)
    );
    // Stopping a shadow keeps the rest; the audit log has every step.
    registry
        .update_traffic("m", &shadow(Some(1), 50.0), None, &context("s"))
        .await
        .unwrap();
    let state = registry
        .update_traffic("m", &shadow(None, 0.0), None, &context("stop"))
        .await
        .unwrap();
    let policy = state.policy.unwrap();
    assert_eq!(
        (
            policy.stable_version,
            policy.canary_version,
            policy.shadow_version
        ),
        (2, Some(3), None)
    );
    let events = registry
        .audit_events(&AuditFilter {
            model: Some("m".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.before["shadow_version"], 1);
    assert!(last.after.get("shadow_version").is_none(), "{}", last.after);
    // A policy recorded before shadows (no such fields) still reads.
    let old: serval_registry::TrafficPolicy = serde_json::from_value(serde_json::json!({
        "stable_version": 1, "canary_version": null, "canary_percent": 0.0, "revision": 1,
        "updated_at": "2026-11-28T09:30:00Z"
    }))
    .unwrap();
    assert_eq!((old.shadow_version, old.shadow_percent), (None, 0.0));
}

on_both_backends!(
    a_shadow_is_kept_with_the_policy_until_it_serves_or_stops,
    concurrent_changes_are_serialised_and_all_audited,
    stale_revisions_are_refused,
    the_audit_log_is_append_only
);
