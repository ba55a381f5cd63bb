//! Opening something that is not a registry, and a registry whose storage
//! is full: the error names the cause and the database (never
//! credentials), is counted, and a delete still goes through; on both
//! engines. SQLite is made full with `max_page_count`; PostgreSQL, which
//! has no such limit, answers with its real `disk_full` error raised by a
//! trigger.

use serval_registry::testing::{TestDatabase, limited_to_pages};
use serval_registry::{Backend, ChangeContext, Registry, RegistryError, StorageStatus};
use sqlx::{Connection, Executor};

use super::new_version;

/// A version big enough (256 KiB of weights) to need pages of its own.
fn big_version(fill: u8) -> serval_registry::NewVersion {
    new_version("full", &vec![fill; 256 * 1024])
}

/// The registry of `database`, full from now on: SQLite a few pages above
/// its present size (room for an audit event, none for a version's
/// weights), PostgreSQL answering `disk_full` to every new version.
async fn make_full(database: &TestDatabase, registry: Registry) -> Registry {
    match database.backend() {
        Backend::Sqlite => {
            let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
                .fetch_one(registry.pool())
                .await
                .unwrap();
            registry.close().await;
            Registry::open(&limited_to_pages(database.location(), pages as u64 + 4))
                .await
                .unwrap()
        }
        Backend::Postgres => {
            registry
                .pool()
                .execute(
                    "CREATE FUNCTION no_room() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                     RAISE EXCEPTION 'could not extend file: No space left on device' \
                     USING ERRCODE = 'disk_full'; END $$; \
                     CREATE TRIGGER no_room BEFORE INSERT ON model_versions \
                     FOR EACH ROW EXECUTE FUNCTION no_room();",
                )
                .await
                .unwrap();
            registry
        }
    }
}

/// Room again after a delete: SQLite finds it by itself; the PostgreSQL
/// trigger has to go.
async fn room_after_delete(database: &TestDatabase, registry: &Registry) {
    if database.backend() == Backend::Postgres {
        registry
            .pool()
            .execute("DROP TRIGGER no_room ON model_versions")
            .await
            .unwrap();
    }
}

async fn a_full_storage_is_named_counted_and_a_delete_goes_through(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let registry = database.open().await;
    registry.register_version(big_version(1)).await.unwrap();
    registry.register_version(big_version(2)).await.unwrap();
    let registry = make_full(&database, registry).await;
    assert_eq!(registry.storage_status(), StorageStatus::default());

    let error = registry.register_version(big_version(3)).await.unwrap_err();
    let RegistryError::StorageFull { database: named, .. } = &error else {
        panic!("expected StorageFull, got {error:?}");
    };
    let message = error.to_string();
    assert!(
        message.starts_with("the registry's storage is full ("),
        "{message}"
    );
    match backend {
        Backend::Sqlite => assert_eq!(named, &format!("SQLite file {}", database.location())),
        Backend::Postgres => {
            assert!(named.starts_with("PostgreSQL database \""), "{named}");
            assert!(
                !named.contains('@') && !message.contains("postgres://"),
                "{message}"
            );
        }
    }
    assert!(!error.is_unreachable());
    assert_eq!(
        registry.storage_status(),
        StorageStatus {
            full: true,
            full_errors: 1,
            reserve_bytes: 0,
        }
    );
    // What was stored is still there.
    let versions = &registry.list_models(Some("full")).await.unwrap()[0].versions;
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(registry.weights("full", 2).await.unwrap(), vec![2; 256 * 1024]);

    let deletion = registry
        .delete("full", Some(1), &ChangeContext::default())
        .await
        .unwrap();
    assert_eq!(deletion.versions, [1]);
    assert_eq!(deletion.compaction_deferred, None);
    assert!(!registry.storage_status().full, "a delete finds room");
    room_after_delete(&database, &registry).await;
    let third = registry.register_version(big_version(3)).await.unwrap();
    assert_eq!(third.version, 3);
    assert_eq!(registry.storage_status().full_errors, 1);
    assert_eq!(registry.weights("full", 3).await.unwrap(), vec![3; 256 * 1024]);
}

on_both_backends!(a_full_storage_is_named_counted_and_a_delete_goes_through);

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_at_once_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    let bytes = b"not a database, whatever its name says\n".repeat(400);
    std::fs::write(&path, &bytes).unwrap();

    let error = Registry::open(&path.to_string_lossy()).await.unwrap_err();
    assert!(matches!(error, RegistryError::NotSqlite { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&format!("{} is not a SQLite database", path.display())),
        "{message}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file is untouched");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(files, ["corrupt.db"], "nothing written beside it");
    // A SQLite connection of its own agrees.
    let mut plain = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(plain.execute("SELECT COUNT(*) FROM sqlite_master").await.is_err());
}
