//! The server's threads do not grow with the number of loaded versions:
//! every version's queue shares the fixed compute pool. A binary of its
//! own, so that the process's thread count is this test's alone.

#[path = "common/mod.rs"]
mod common;

use common::*;
use serval_client::proto as pb;

/// Threads of this process now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").expect("Linux /proc").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_many_versions_starts_no_thread() {
    const VERSIONS: u32 = 40;
    let mut test = TestServer::start().await;
    for seed in 0..VERSIONS {
        let spec = pb::TrainSpec {
            seed: Some(u64::from(seed)),
            ..small_spec("small")
        };
        test.client.train(spec, small_csv()).await.unwrap();
    }
    // Only the latest version serves traffic, so only it is loaded; the
    // rest load on their first pinned call.
    let predict = |version: u32| {
        let mut client = test.client.clone();
        async move {
            client
                .predict(pb::PredictRequest {
                    model: "small".into(),
                    version: Some(version),
                    records: vec![small_record(4.0, "blue", false)],
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    };
    // A first pinned load, so that whatever a load needs once (registry
    // connections, their threads) is there before counting.
    predict(1).await;
    let before = threads();
    for version in 2..VERSIONS {
        assert_eq!(predict(version).await.version, version);
    }
    let loaded = test.server.metrics().loaded_versions.get();
    assert_eq!(loaded, i64::from(VERSIONS), "every version is loaded");
    let after = threads();
    // A little slack for threads the runtime or the registry's pool may
    // start on their own; a thread per version would be 38 more.
    assert!(
        after <= before + 4,
        "{before} threads before loading {} more versions, {after} after",
        VERSIONS - 2
    );
}
