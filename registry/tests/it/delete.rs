//! Deleting versions and models on both engines: refusals while
//! something routes to them, what goes and what stays, the audit event,
//! version numbers never reused, the file shrinking, and an existing
//! database migrating to the numbering table.

use serde_json::json;
use serval_registry::testing::TestDatabase;
use serval_registry::{AuditFilter, Backend, ChangeContext, Registry, RegistryError, TrafficChange};

use super::new_version;

/// A registry with `n` versions of model "m", each with `weight_bytes` of
/// weights.
async fn with_versions(backend: Backend, n: usize, weight_bytes: usize) -> (TestDatabase, Registry) {
    let dir = TestDatabase::new(backend).await;
    let registry = dir.open().await;
    for i in 0..n {
        registry
            .register_version(new_version("m", &vec![i as u8; weight_bytes]))
            .await
            .unwrap();
    }
    (dir, registry)
}

fn alice(reason: &str) -> ChangeContext {
    ChangeContext {
        actor: "alice".into(),
        reason: reason.into(),
    }
}

async fn versions_of(registry: &Registry, model: &str) -> Vec<u32> {
    match registry.list_models(Some(model)).await {
        Ok(models) => models[0].versions.iter().map(|v| v.version).collect(),
        Err(RegistryError::ModelNotFound(_)) => Vec::new(),
        Err(error) => panic!("{error}"),
    }
}

fn refusal(error: RegistryError) -> String {
    match error {
        RegistryError::InvalidChange(message) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn deleting_a_version_removes_it_and_its_weights_and_audits_it(backend: Backend) {
    let (_dir, registry) = with_versions(backend, 3, 64).await;
    let deletion = registry.delete("m", Some(2), &alice("bad data")).await.unwrap();
    assert_eq!(deletion.versions, vec![2]);
    assert!(!deletion.model_deleted);
    assert_eq!(versions_of(&registry, "m").await, vec![1, 3]);
    assert!(matches!(
        registry.weights("m", 2).await,
        Err(RegistryError::VersionNotFound { version: 2, .. })
    ));
    let orphans: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM version_weights WHERE version = 2")
        .fetch_one(registry.pool())
        .await
        .unwrap();
    assert_eq!(orphans, 0);
    assert_eq!(registry.weights("m", 3).await.unwrap(), vec![2u8; 64]);

    let events = registry.audit_events(&AuditFilter::default()).await.unwrap();
    let event = events.last().unwrap();
    assert_eq!(event.kind, "version_deleted");
    assert_eq!(
        (event.actor.as_str(), event.reason.as_str()),
        ("alice", "bad data")
    );
    assert_eq!(event.before["version"], 2);
    assert_eq!(event.after, serde_json::Value::Null);
    assert_eq!(event.deleted_versions(), vec![2]);
    // Events of other kinds deleted nothing.
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|e| e.deleted_versions().is_empty())
    );
}

async fn unknown_models_and_versions_are_not_found(backend: Backend) {
    let (_dir, registry) = with_versions(backend, 1, 8).await;
    assert!(matches!(
        registry.delete("ghost", None, &alice("")).await,
        Err(RegistryError::ModelNotFound(_))
    ));
    assert!(matches!(
        registry.delete("m", Some(9), &alice("")).await,
        Err(RegistryError::VersionNotFound { version: 9, .. })
    ));
    assert_eq!(versions_of(&registry, "m").await, vec![1]);
}

async fn versions_an_alias_or_the_policy_points_at_are_refused_and_kept(backend: Backend) {
    let (_dir, registry) = with_versions(backend, 4, 8).await;
    registry
        .set_alias("m", "production", 2, &alice(""))
        .await
        .unwrap();
    registry
        .update_traffic("m", &TrafficChange::Rollback { to: Some(1) }, None, &alice(""))
        .await
        .unwrap();
    registry
        .update_traffic(
            "m",
            &TrafficChange::Canary {
                version: 3,
                percent: 10.0,
            },
            None,
            &alice(""),
        )
        .await
        .unwrap();
    let audit_before = registry.latest_audit_id().await.unwrap();

    let message = refusal(registry.delete("m", Some(2), &alice("")).await.unwrap_err());
    assert!(
        message.contains("version 2") && message.contains("alias \"production\""),
        "{message}"
    );
    let message = refusal(registry.delete("m", Some(1), &alice("")).await.unwrap_err());
    assert!(
        message.contains("version 1") && message.contains("stable"),
        "{message}"
    );
    let message = refusal(registry.delete("m", Some(3), &alice("")).await.unwrap_err());
    assert!(
        message.contains("version 3") && message.contains("canary"),
        "{message}"
    );
    let message = refusal(registry.delete("m", None, &alice("")).await.unwrap_err());
    assert!(message.contains("\"production\" (version 2)"), "{message}");

    registry
        .delete_alias("m", "production", &alice(""))
        .await
        .unwrap();
    let message = refusal(registry.delete("m", None, &alice("")).await.unwrap_err());
    assert!(
        message.contains("traffic policy (stable version 1, canary version 3)"),
        "{message}"
    );

    assert_eq!(versions_of(&registry, "m").await, vec![1, 2, 3, 4]);
    let kinds: Vec<String> = registry
        .audit_events(&AuditFilter {
            after_id: Some(audit_before),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["alias_deleted"]);
    // Version 4 is not referenced by anything, so it can go.
    registry.delete("m", Some(4), &alice("")).await.unwrap();
    assert_eq!(versions_of(&registry, "m").await, vec![1, 2, 3]);
}

async fn version_numbers_are_never_reused(backend: Backend) {
    let (_dir, registry) = with_versions(backend, 3, 8).await;
    registry.delete("m", Some(3), &alice("")).await.unwrap();
    let next = registry.register_version(new_version("m", &[9])).await.unwrap();
    assert_eq!(next.version, 4);

    let whole = registry.delete("m", None, &alice("retired")).await.unwrap();
    assert_eq!(whole.versions, vec![1, 2, 4]);
    assert!(whole.model_deleted);
    assert!(matches!(
        registry.list_models(Some("m")).await,
        Err(RegistryError::ModelNotFound(_))
    ));
    let event = registry
        .audit_events(&AuditFilter::default())
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (event.kind.as_str(), event.reason.as_str()),
        ("model_deleted", "retired")
    );
    assert_eq!(event.before, json!({ "versions": [1, 2, 4] }));
    assert_eq!(event.deleted_versions(), vec![1, 2, 4]);

    let reborn = registry.register_version(new_version("m", &[1])).await.unwrap();
    assert_eq!(reborn.version, 5);
    let other = registry
        .register_version(new_version("other", &[1]))
        .await
        .unwrap();
    assert_eq!(other.version, 1);
}

async fn deleting_the_last_version_deletes_the_model(backend: Backend) {
    let (_dir, registry) = with_versions(backend, 1, 8).await;
    let deletion = registry.delete("m", Some(1), &alice("")).await.unwrap();
    assert!(deletion.model_deleted);
    assert!(registry.list_models(None).await.unwrap().is_empty());
    let event = registry
        .audit_events(&AuditFilter::default())
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(event.kind, "model_deleted");
    assert_eq!(event.deleted_versions(), vec![1]);
}

/// SQLite only: PostgreSQL leaves reclaiming space to autovacuum.
#[tokio::test]
async fn the_file_shrinks_by_the_bytes_reported() {
    let (dir, registry) = with_versions(Backend::Sqlite, 3, 512 * 1024).await;
    let path = std::path::PathBuf::from(dir.location());
    // Fold the log into the file first, so its size says what is stored.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(registry.pool())
        .await
        .unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    let deletion = registry.delete("m", Some(2), &alice("")).await.unwrap();
    let after = std::fs::metadata(&path).unwrap().len();
    // The weights' pages come back, less the page or two the delete's own
    // audit event and the rewritten tables may take (which depends on how
    // the schema's tables happen to lie in the file).
    assert!(deletion.bytes_reclaimed + 8192 >= 512 * 1024, "{deletion:?}");
    assert!(after + 512 * 1024 <= before + 8192, "{before} -> {after}");
    // What the registry reports is what the file lost, give or take the
    // page the audit event went into.
    assert!(
        (before - after).abs_diff(deletion.bytes_reclaimed) <= 8192,
        "{before} -> {after}: {deletion:?}"
    );
}

/// SQLite only: PostgreSQL support began with the numbering table.
#[tokio::test]
async fn a_database_from_before_deletes_keeps_numbering_after_migrating() {
    let dir = TestDatabase::sqlite();
    let registry = dir.open().await;
    for _ in 0..3 {
        registry.register_version(new_version("m", &[1])).await.unwrap();
    }
    // Back to the state before the numbering table existed, as an older
    // release left the file.
    for statement in [
        "DROP TABLE version_numbers",
        "DELETE FROM _sqlx_migrations WHERE description = 'deleted versions'",
    ] {
        sqlx::query(statement).execute(registry.pool()).await.unwrap();
    }
    registry.close().await;

    let reopened = dir.open().await;
    reopened.delete("m", Some(3), &alice("")).await.unwrap();
    let next = reopened.register_version(new_version("m", &[2])).await.unwrap();
    assert_eq!(next.version, 4);
}

on_both_backends!(
    deleting_a_version_removes_it_and_its_weights_and_audits_it,
    unknown_models_and_versions_are_not_found,
    versions_an_alias_or_the_policy_points_at_are_refused_and_kept,
    version_numbers_are_never_reused,
    deleting_the_last_version_deletes_the_model
);
