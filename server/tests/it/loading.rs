//! Loaded versions over time: with `--unload-idle-after`, a version that
//! serves no call for that long is unloaded and its next call loads it
//! again, both counted in metrics; without it (the default), loaded
//! versions stay.

use std::time::{Duration, Instant};

use crate::common::*;
use serval_client::proto as pb;

/// Waits (up to a minute) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn idle_versions_are_unloaded_and_loaded_again_by_their_next_call() {
    let mut idle = TestServer::start_in(tempfile::tempdir().unwrap(), |config| {
        config.unload_idle_after = Some(Duration::from_millis(300));
    })
    .await;
    let mut kept = TestServer::start().await;
    for test in [&mut kept, &mut idle] {
        test.client.train(small_spec("small"), small_csv()).await.unwrap();
    }
    let request = || pb::PredictRequest {
        model: "small".into(),
        records: vec![small_record(12.0, "red", true)],
        ..Default::default()
    };
    let first = idle.client.predict(request()).await.unwrap().scores;
    let metrics = idle.server.metrics().clone();
    // Counted from here: on a slow machine the version may already have
    // idled out once between its training and this call.
    let (loads, unloads) = (metrics.version_loads.get(), metrics.idle_unloads.get());
    assert!(loads >= 1);

    until("the idle version is unloaded", || {
        metrics.loaded_versions.get() == 0
    })
    .await;
    assert_eq!(metrics.idle_unloads.get(), unloads + 1);
    // Off by default: the other server, as idle, keeps its version.
    assert_eq!(kept.server.metrics().loaded_versions.get(), 1);
    assert_eq!(kept.server.metrics().idle_unloads.get(), 0);

    // The next call loads it again and scores as before.
    let again = idle.client.predict(request()).await.unwrap().scores;
    assert_eq!(again, first);
    assert_eq!(metrics.version_loads.get(), loads + 1);
    assert_eq!(metrics.loaded_versions.get(), 1);
    let text = metrics.render();
    for line in [
        format!("serval_version_loads_total {}", loads + 1),
        format!("serval_versions_unloaded_idle_total {}", unloads + 1),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in {text}");
    }
}
