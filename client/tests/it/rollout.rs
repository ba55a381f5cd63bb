//! `serval rollout` against a real server: every subcommand's JSON, and
//! progressive delivery that rolls back a failing canary and promotes a
//! healthy one, with every action in the audit history.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::*;
use serval_client::{ServalClient, proto as pb};

/// Rows where y follows x; with `extra`, one more column the other
/// versions do not have.
fn csv(extra: bool) -> String {
    let mut text = String::from(if extra {
        "x,colour,extra,y\n"
    } else {
        "x,colour,y\n"
    });
    for i in 0..120 {
        let colour = ["red", "blue", "green"][i % 3];
        let extra = if extra {
            format!("{},", i % 7)
        } else {
            String::new()
        };
        text.push_str(&format!("{},{colour},{extra}{}\n", i % 40, u8::from(i % 40 > 20)));
    }
    text
}

fn record(i: usize) -> pb::Record {
    let text = |s: String| pb::Value {
        kind: Some(pb::value::Kind::StringValue(s)),
    };
    pb::Record {
        fields: [
            ("x".to_string(), text((i % 40).to_string())),
            ("colour".to_string(), text("red".to_string())),
        ]
        .into_iter()
        .collect(),
    }
}

/// Keyed Predict calls until stopped.
fn load(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = ServalClient::connect(&url).await.unwrap();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let _ = client
                .predict(pb::PredictRequest {
                    model: "m".into(),
                    records: vec![record(i)],
                    routing_key: format!("user-{i}"),
                    ..Default::default()
                })
                .await;
            i += 1;
        }
    })
}

#[tokio::test]
async fn progressive_delivery_rolls_back_a_failing_canary_and_promotes_a_healthy_one() {
    let fx = Fixture::start().await;
    let plain = fx.write("plain.csv", &csv(false));
    let wider = fx.write("wider.csv", &csv(true));
    for data in [&plain, &wider, &plain] {
        fx.ok(&[
            "train",
            "--model",
            "m",
            "--data",
            data,
            "--label",
            "y",
            "--positive",
            "1",
            "--epochs",
            "2",
        ])
        .await;
    }
    // Version 1 serves; version 2 expects a column callers do not send.
    let state = last_json_line(
        &fx.ok(&["rollout", "rollback", "--model", "m", "--to", "1", "--json"])
            .await,
    );
    assert_eq!(state["policy"]["stable_version"], 1);

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(fx.server.url(), stop.clone());
    let failing = fx
        .serval(&[
            "rollout",
            "start",
            "--model",
            "m",
            "--version",
            "2",
            "--steps",
            "50,100",
            "--interval",
            "1s",
            "--max-error-rate",
            "0.01",
            "--max-p99-ms",
            "1000",
            "--json",
        ])
        .await;
    assert_eq!(
        failing.status.code(),
        Some(6),
        "a failing canary must fail the rollout with the gate's exit code"
    );
    let stderr = String::from_utf8_lossy(&failing.stderr);
    assert!(stderr.contains("error rate"), "{stderr}");
    let report = last_json_line(&String::from_utf8_lossy(&failing.stdout));
    assert_eq!(report["outcome"], "rolled_back");
    let status = last_json_line(&fx.ok(&["rollout", "status", "--model", "m", "--json"]).await);
    assert_eq!(status["policy"]["stable_version"], 1);
    assert_eq!(status["policy"]["canary_version"], serde_json::Value::Null);
    let v2 = status["live"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == 2)
        .expect("the canary's statistics");
    assert!(
        v2["errors_by_code"]["INVALID_ARGUMENT"].as_u64().unwrap() > 0,
        "{v2}"
    );

    let healthy = last_json_line(
        &fx.ok(&[
            "rollout",
            "start",
            "--model",
            "m",
            "--version",
            "3",
            "--steps",
            "50,100",
            "--interval",
            "1s",
            "--max-error-rate",
            "0.01",
            "--max-p99-ms",
            "1000",
            "--json",
        ])
        .await,
    );
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(healthy["outcome"], "promoted");
    assert_eq!(healthy["steps"].as_array().unwrap().len(), 2);
    let status = last_json_line(&fx.ok(&["rollout", "status", "--model", "m", "--json"]).await);
    assert_eq!(status["policy"]["stable_version"], 3);

    // Every action is in the audit history, with its reason.
    let history = last_json_line(&fx.ok(&["rollout", "history", "--model", "m", "--json"]).await);
    let reasons: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "traffic_changed")
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 1 + 2 + 3, "{reasons:?}");
    assert!(
        reasons[2].starts_with("rollout start: gate failed: error rate"),
        "{reasons:?}"
    );
    assert_eq!(reasons[5], "rollout start: all gates passed");
    assert!(
        history["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"].as_str().is_some_and(|a| !a.is_empty()))
    );
}

#[tokio::test]
async fn every_subcommand_speaks_json() {
    let fx = Fixture::start().await;
    let plain = fx.write("plain.csv", &csv(false));
    for _ in 0..2 {
        fx.ok(&[
            "train",
            "--model",
            "m",
            "--data",
            &plain,
            "--label",
            "y",
            "--positive",
            "1",
            "--epochs",
            "1",
        ])
        .await;
    }
    let json = |out: String| last_json_line(&out);
    let run = |args: Vec<&'static str>| {
        let mut all = vec!["--actor", "oncall-alice"];
        all.extend(args);
        all
    };

    let alias = json(
        fx.ok(&run(vec![
            "rollout",
            "alias",
            "--model",
            "m",
            "--name",
            "production",
            "--version",
            "1",
            "--json",
        ]))
        .await,
    );
    assert_eq!(alias["aliases"][0]["name"], "production");
    let canary = json(
        fx.ok(&run(vec![
            "rollout",
            "canary",
            "--model",
            "m",
            "--version",
            "2",
            "--percent",
            "10",
            "--reason",
            "try",
            "--json",
        ]))
        .await,
    );
    assert_eq!(
        (
            canary["policy"]["stable_version"].as_u64(),
            canary["policy"]["canary_percent"].as_f64()
        ),
        (Some(1), Some(10.0))
    );
    let between = chrono::Utc::now().to_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let promoted = json(
        fx.ok(&run(vec!["rollout", "promote", "--model", "m", "--json"]))
            .await,
    );
    assert_eq!(promoted["policy"]["stable_version"], 2);
    let rolled = json(
        fx.ok(&run(vec![
            "rollout", "rollback", "--model", "m", "--to", "1", "--json",
        ]))
        .await,
    );
    assert_eq!(rolled["policy"]["stable_version"], 1);

    let at = json(
        fx.ok(&["rollout", "history", "--model", "m", "--at", &between, "--json"])
            .await,
    );
    assert_eq!(at["serving_at"]["policy"]["canary_version"], 2);
    assert_eq!(at["serving_at"]["default_version"], 1);
    let events = at["events"].as_array().unwrap();
    assert_eq!(events.last().unwrap()["actor"], "oncall-alice");

    // Predict by alias names the arm.
    let scored = json(
        fx.ok(&[
            "predict",
            "--model",
            "m",
            "--alias",
            "production",
            "--records",
            r#"{"x": 30, "colour": "red"}"#,
            "--json",
        ])
        .await,
    );
    assert_eq!(
        (scored["version"].as_u64(), scored["arm"].as_str()),
        (Some(1), Some("alias"))
    );

    // watch --count 1 ends after the next change; --after replays from the
    // last event seen, so the change cannot slip past before it connects.
    let everything = json(fx.ok(&["rollout", "history", "--model", "m", "--json"]).await);
    let last_id = everything["events"].as_array().unwrap().last().unwrap()["id"]
        .as_u64()
        .unwrap()
        .to_string();
    let watcher = {
        let url = fx.server.url();
        tokio::spawn(async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_serval"))
                .args([
                    "--server", &url, "rollout", "watch", "--model", "m", "--count", "1", "--after",
                    &last_id, "--json",
                ])
                .output()
                .await
                .unwrap()
        })
    };
    fx.ok(&[
        "rollout",
        "alias",
        "--model",
        "m",
        "--name",
        "production",
        "--delete",
    ])
    .await;
    let watched = tokio::time::timeout(std::time::Duration::from_secs(20), watcher)
        .await
        .unwrap()
        .unwrap();
    assert!(watched.status.success());
    let event = last_json_line(&String::from_utf8_lossy(&watched.stdout));
    assert_eq!(event["kind"], "alias_deleted");

    let refused = fx
        .serval(&[
            "rollout",
            "canary",
            "--model",
            "m",
            "--version",
            "9",
            "--percent",
            "5",
        ])
        .await;
    assert_eq!(refused.status.code(), Some(3), "a refusal's exit code");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("FAILED_PRECONDITION"));
}
