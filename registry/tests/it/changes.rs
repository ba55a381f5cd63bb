//! Change announcements: a change committed through one handle reaches a
//! listener on another handle of the same database without polling.

use std::time::Duration;

use serval_registry::testing::{TestDatabase, postgres_available};
use serval_registry::{Announcement, Backend, ChangeContext};

use super::new_version;

#[tokio::test]
async fn postgres_announces_each_committed_event_to_other_handles() {
    if !postgres_available() {
        return;
    }
    let database = TestDatabase::postgres().await;
    let writer = database.open().await;
    let reader = database.open().await;
    let mut listener = reader
        .listen_for_changes()
        .await
        .unwrap()
        .expect("postgres listens");

    writer.register_version(new_version("m", &[7])).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), listener.next())
        .await
        .expect("announced within 5 s")
        .unwrap();
    let context = ChangeContext {
        actor: "alice".into(),
        reason: "ship".into(),
    };
    writer.set_alias("m", "production", 1, &context).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), listener.next())
        .await
        .expect("announced within 5 s")
        .unwrap();

    let latest = reader.latest_audit_id().await.unwrap();
    assert_eq!(first, Announcement::Event(latest - 1));
    assert_eq!(second, Announcement::Event(latest));
}

#[tokio::test]
async fn sqlite_has_no_announcements() {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let registry = database.open().await;
    assert!(registry.listen_for_changes().await.unwrap().is_none());
}
