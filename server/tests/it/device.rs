//! `--device` on the server binary: the CPU (the default, or named) trains
//! the same model; CUDA in a build without the `cuda` feature stops the
//! server at start with how to get it, before the registry is touched; a
//! device that is not one is refused by name.

use std::time::Duration;

use serval_client::proto as pb;
use tokio::process::Command;

use crate::common::*;
use crate::process::spawn_with_env;

fn two_epochs_of_shoppers() -> pb::TrainSpec {
    pb::TrainSpec {
        hyper_parameters: Some(pb::HyperParameters {
            epochs: Some(2),
            ..Default::default()
        }),
        ..spec("shoppers", "Revenue", "TRUE")
    }
}

#[tokio::test]
async fn the_cpu_named_as_the_device_trains_the_same_model_as_the_default() {
    let mut versions = Vec::new();
    for (flags, env) in [
        (&[][..], &[][..]),
        (&["--device", "cpu"][..], &[][..]),
        (&[][..], &[("SERVAL_DEVICE", "cpu")][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = spawn_with_env(dir.path(), flags, env).await;
        let mut client = server.client().await;
        versions.push(
            client
                .train(two_epochs_of_shoppers(), dataset(SHOPPERS))
                .await
                .unwrap(),
        );
    }
    let figures = |version: &pb::ModelVersion| (version.metrics.unwrap(), version.test_metrics.unwrap());
    assert!(
        figures(&versions[0]).1.auc > 0.85,
        "{:?}",
        figures(&versions[0]).1
    );
    assert_eq!(figures(&versions[1]), figures(&versions[0]));
    assert_eq!(figures(&versions[2]), figures(&versions[0]));
}

/// Runs the server binary with `args` until it exits; its stderr.
async fn exits_with(dir: &std::path::Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(env!("CARGO_BIN_EXE_serval-server"))
            .args(["--listen", "127.0.0.1:0", "--http-listen", "off", "--database"])
            .arg(dir.join("serval.db"))
            .args(args)
            .output(),
    )
    .await
    .expect("the server exits")
    .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[cfg(not(feature = "cuda"))]
#[tokio::test]
async fn cuda_in_a_build_without_it_stops_the_server_with_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    for (asked, named) in [("cuda", "cuda:0"), ("cuda:1", "cuda:1")] {
        let (status, stderr) = exits_with(dir.path(), &["--device", asked]).await;
        assert!(!status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "--device {named}: this build has no CUDA support; rebuild with `cargo build --features cuda`"
            )),
            "{stderr}"
        );
    }
    assert!(
        !dir.path().join("serval.db").exists(),
        "the registry is not created"
    );
}

#[tokio::test]
async fn a_device_that_is_not_one_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = exits_with(dir.path(), &["--device", "gpu0"]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--device"), "{stderr}");
    assert!(stderr.contains("\"gpu0\" is not a device"), "{stderr}");
}
