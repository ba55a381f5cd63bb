//! Versions: numbering, reading back, missing names, corrupt and immutable
//! weights; on both engines.

use serval_registry::testing::TestDatabase;
use serval_registry::{Backend, ChangeContext, OpenOptions, Registry, RegistryError};
use sqlx::Row;

use super::new_version;

async fn open_temp(backend: Backend) -> (TestDatabase, Registry) {
    let database = TestDatabase::new(backend).await;
    let registry = database.open().await;
    (database, registry)
}

async fn versions_are_numbered_per_model_and_survive_reopening(backend: Backend) {
    let (dir, registry) = open_temp(backend).await;
    let v1 = registry.register_version(new_version("a", b"one")).await.unwrap();
    let v2 = registry.register_version(new_version("a", b"two")).await.unwrap();
    let b1 = registry.register_version(new_version("b", b"bee")).await.unwrap();
    assert_eq!((v1.version, v2.version, b1.version), (1, 2, 1));
    registry.close().await;

    let reopened = dir.open().await;
    let models = reopened.list_models(None).await.unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0].name, "a");
    assert_eq!(models[0].versions, vec![v1.clone(), v2.clone()]);
    assert_eq!(reopened.version("a", None).await.unwrap(), v2);
    assert_eq!(reopened.version("a", Some(1)).await.unwrap(), v1);
    assert_eq!(reopened.weights("a", 1).await.unwrap(), b"one");
    assert_eq!(
        reopened.list_models(Some("b")).await.unwrap()[0].versions,
        vec![b1]
    );
}

async fn concurrent_registrations_get_distinct_numbers(backend: Backend) {
    let (_dir, registry) = open_temp(backend).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let registry = registry.clone();
            tokio::spawn(async move {
                registry
                    .register_version(new_version("busy", &[i]))
                    .await
                    .unwrap()
                    .version
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (1..=8).collect::<Vec<u32>>());
}

async fn missing_models_and_versions_are_named(backend: Backend) {
    let (_dir, registry) = open_temp(backend).await;
    registry.register_version(new_version("a", b"w")).await.unwrap();
    assert!(matches!(
        registry.version("nope", None).await,
        Err(RegistryError::ModelNotFound(name)) if name == "nope"
    ));
    assert!(matches!(
        registry.version("a", Some(7)).await,
        Err(RegistryError::VersionNotFound { version: 7, .. })
    ));
    assert!(matches!(
        registry.weights("a", 2).await,
        Err(RegistryError::VersionNotFound { version: 2, .. })
    ));
    assert!(matches!(
        registry.list_models(Some("nope")).await,
        Err(RegistryError::ModelNotFound(_))
    ));
}

async fn invalid_names_store_nothing(backend: Backend) {
    let (_dir, registry) = open_temp(backend).await;
    let err = registry
        .register_version(new_version("../evil", b"w"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::InvalidModelName { .. }));
    assert!(registry.list_models(None).await.unwrap().is_empty());
}

async fn corrupt_weights_are_detected_on_load(backend: Backend) {
    let (_dir, registry) = open_temp(backend).await;
    registry
        .register_version(new_version("a", b"weights"))
        .await
        .unwrap();
    // Bypass the immutability trigger as a disk fault would.
    let drop_trigger = match backend {
        Backend::Sqlite => "DROP TRIGGER version_weights_immutable",
        Backend::Postgres => "DROP TRIGGER version_weights_immutable ON version_weights",
    };
    sqlx::query(drop_trigger).execute(registry.pool()).await.unwrap();
    let flip_first_byte = match backend {
        Backend::Sqlite => "UPDATE version_weights SET safetensors = X'00' || substr(safetensors, 2)",
        Backend::Postgres => "UPDATE version_weights SET safetensors = set_byte(safetensors, 0, 0)",
    };
    sqlx::query(flip_first_byte)
        .execute(registry.pool())
        .await
        .unwrap();
    let err = registry.weights("a", 1).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::CorruptWeights { version: 1, .. }),
        "{err}"
    );
}

async fn versions_cannot_be_rewritten(backend: Backend) {
    let (_dir, registry) = open_temp(backend).await;
    registry
        .register_version(new_version("a", b"weights"))
        .await
        .unwrap();
    let err = sqlx::query("UPDATE model_versions SET metrics = '{}'")
        .execute(registry.pool())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
}

/// The pool holds the engine's default number of connections, or the
/// number asked for; with one, nothing needs a second connection while it
/// holds the first (a nested acquire would time out).
async fn the_pool_is_sized_as_asked_and_one_connection_is_enough(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let default = database.open().await;
    assert_eq!(
        default.pool().options().get_max_connections(),
        backend.default_max_connections()
    );
    default.close().await;

    let options = OpenOptions {
        max_connections: Some(1),
        ..OpenOptions::default()
    };
    let registry = Registry::open_with(database.location(), options).await.unwrap();
    assert_eq!(registry.pool().options().get_max_connections(), 1);
    let context = ChangeContext {
        actor: "alice".into(),
        reason: "one connection".into(),
    };
    for weights in [b"one", b"two"] {
        registry
            .register_version(new_version("a", weights))
            .await
            .unwrap();
    }
    registry.set_alias("a", "production", 2, &context).await.unwrap();
    let deletion = registry.delete("a", Some(1), &context).await.unwrap();
    assert_eq!(deletion.versions, vec![1]);
    assert_eq!(registry.weights("a", 2).await.unwrap(), b"two");
    let kinds: Vec<String> = registry
        .audit_events(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect();
    assert_eq!(
        kinds.len(),
        4,
        "two registrations, the alias, the delete: {kinds:?}"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("version_deleted"));
}

on_both_backends!(
    the_pool_is_sized_as_asked_and_one_connection_is_enough,
    versions_are_numbered_per_model_and_survive_reopening,
    concurrent_registrations_get_distinct_numbers,
    missing_models_and_versions_are_named,
    invalid_names_store_nothing,
    corrupt_weights_are_detected_on_load,
    versions_cannot_be_rewritten
);

/// SQLite only: every pooled connection is set up for durability and
/// sharing (the pragmas are per connection, so check several at once).
#[tokio::test]
async fn sqlite_connections_are_durable_shared_and_checked() {
    let (_dir, registry) = open_temp(Backend::Sqlite).await;
    let mut connections = Vec::new();
    for _ in 0..3 {
        connections.push(registry.pool().acquire().await.unwrap());
    }
    for connection in &mut connections {
        let mut read = async |pragma: &str| -> String {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM pragma_{pragma}()")))
                .fetch_one(&mut **connection)
                .await
                .unwrap();
            match row.try_get::<String, _>(0) {
                Ok(text) => text,
                Err(_) => row.get::<i64, _>(0).to_string(),
            }
        };
        assert_eq!(read("journal_mode").await, "wal");
        assert_eq!(read("synchronous").await, "2", "FULL");
        assert_eq!(read("foreign_keys").await, "1");
        assert_eq!(read("busy_timeout").await, "10000");
    }
}

/// An unreachable PostgreSQL server is named with the reason, never with
/// the password.
#[tokio::test]
async fn an_unreachable_database_is_named_with_its_cause_and_no_password() {
    let error = Registry::open("postgres://serval:hunter2@127.0.0.1:1/serval")
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, RegistryError::Open { .. }), "{error:?}");
    assert!(error.is_unreachable(), "{error:?}");
    assert!(
        message.contains("postgres://serval:***@127.0.0.1:1/serval"),
        "{message}"
    );
    assert!(message.contains("refused"), "{message}");
    assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
}
