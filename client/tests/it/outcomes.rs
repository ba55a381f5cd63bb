//! Outcome feedback against a real server: the online-shoppers example
//! replayed as live traffic, outcomes reported from its real labels, and
//! the online AUC gate of `serval rollout start` rolling back a canary
//! trained on shuffled labels while a good canary passes; and `serval
//! predict --ids` with `serval outcomes` uploading a file of outcomes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serval_client::{ServalClient, proto as pb};

use crate::common::*;

/// The example's rows as records (every column but the label, as text the
/// way a CSV carries them) with their labels.
fn shoppers() -> (Vec<pb::Record>, Vec<bool>) {
    let mut reader = csv::Reader::from_path(example("online_shoppers_intention.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let label = header.iter().position(|h| h == "Revenue").unwrap();
    let (mut records, mut labels) = (Vec::new(), Vec::new());
    for row in reader.records() {
        let row = row.unwrap();
        labels.push(&row[label] == "TRUE");
        let fields = header
            .iter()
            .zip(row.iter())
            .enumerate()
            .filter(|(i, _)| *i != label)
            .map(|(_, (name, value))| {
                let value = pb::Value {
                    kind: Some(pb::value::Kind::StringValue(value.to_string())),
                };
                (name.to_string(), value)
            })
            .collect();
        records.push(pb::Record { fields });
    }
    (records, labels)
}

/// The example with its labels shuffled among the rows: a model trained on
/// it learns nothing true.
fn shuffled_labels_csv() -> String {
    let text = std::fs::read_to_string(example("online_shoppers_intention.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<(&str, &str)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.rsplit_once(',').unwrap())
        .collect();
    let mut labels: Vec<&str> = rows.iter().map(|(_, label)| *label).collect();
    labels.shuffle(&mut rand::rngs::StdRng::seed_from_u64(22));
    let mut csv = format!("{header}\n");
    for ((features, _), label) in rows.iter().zip(labels) {
        csv.push_str(&format!("{features},{label}\n"));
    }
    csv
}

/// Replays the example as keyed Predict calls, one visitor a call, and
/// reports each visitor's real label as its outcome, until stopped.
fn live_traffic(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let (records, labels) = shoppers();
        let mut client = ServalClient::connect(&url).await.unwrap();
        let mut outcomes = Vec::new();
        let mut matched = 0;
        for i in (0..records.len()).cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok(answer) = client
                .predict(pb::PredictRequest {
                    model: "shoppers".into(),
                    records: vec![records[i].clone()],
                    routing_key: format!("visitor-{i}"),
                    ..Default::default()
                })
                .await
            else {
                continue;
            };
            assert_eq!(answer.prediction_ids.len(), 1, "one id per row");
            outcomes.push(pb::OutcomeReport {
                prediction_id: answer.prediction_ids[0].clone(),
                label: labels[i],
                observed_at: None,
            });
            if outcomes.len() == 100 {
                let counts = client
                    .report_outcomes(std::mem::take(&mut outcomes))
                    .await
                    .unwrap();
                assert_eq!(counts.matched, 100, "{counts:?}");
                matched += counts.matched;
            }
        }
        matched
    })
}

#[tokio::test]
async fn the_online_auc_gate_rolls_back_a_canary_trained_on_shuffled_labels_and_passes_a_good_one() {
    let fx = Fixture::start().await;
    let shuffled = fx.write("shuffled.csv", &shuffled_labels_csv());
    fx.train_shoppers(&["--epochs", "4"]).await;
    fx.ok(&[
        "train",
        "--model",
        "shoppers",
        "--data",
        &shuffled,
        "--label",
        "Revenue",
        "--positive",
        "TRUE",
        "--epochs",
        "4",
    ])
    .await;
    fx.train_shoppers(&["--epochs", "4", "--seed", "7"]).await;
    fx.ok(&["rollout", "rollback", "--model", "shoppers", "--to", "1"])
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = live_traffic(fx.server.url(), stop.clone());
    let gate = |version: &'static str, delta: &'static str, outcomes: &'static str| {
        [
            "rollout",
            "start",
            "--model",
            "shoppers",
            "--version",
            version,
            "--steps",
            "50,100",
            "--interval",
            "1s",
            "--max-p99-ms",
            "5000",
            "--min-online-auc-delta",
            delta,
            "--min-outcomes",
            outcomes,
            "--outcome-timeout",
            "5m",
            "--json",
        ]
    };
    let bad = fx.serval(&gate("2", "-0.01", "500")).await;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(6), "the gate's exit code: {stderr}");
    assert!(stderr.contains("online AUC of v2"), "{stderr}");
    let report = last_json_line(&String::from_utf8_lossy(&bad.stdout));
    assert_eq!(report["outcome"], "rolled_back");
    let online = &report["steps"][0]["online"];
    let (canary_auc, stable_auc) = (
        online["canary_auc"].as_f64().unwrap(),
        online["stable_auc"].as_f64().unwrap(),
    );
    assert!(canary_auc < 0.65, "shuffled labels teach nothing: {online}");
    assert!(stable_auc > 0.85, "the real model ranks buyers first: {online}");
    assert!(online["canary_outcomes"].as_u64().unwrap() >= 500, "{online}");
    assert!(online["stable_outcomes"].as_u64().unwrap() >= 500, "{online}");

    // The audit log says why, with both AUCs and both counts.
    let history = last_json_line(
        &fx.ok(&["rollout", "history", "--model", "shoppers", "--json"])
            .await,
    );
    let events = history["events"].as_array().unwrap();
    let rollback = events.last().unwrap();
    let reason = rollback["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("rollout start: gate failed: online AUC of v2"),
        "{reason}"
    );
    for expected in [
        format!("{canary_auc:.4} ({} outcomes)", online["canary_outcomes"]),
        format!(
            "stable v1's {stable_auc:.4} ({} outcomes)",
            online["stable_outcomes"]
        ),
    ] {
        assert!(reason.contains(&expected), "{reason} lacks {expected}");
    }
    let state = last_json_line(
        &fx.ok(&["rollout", "status", "--model", "shoppers", "--json"])
            .await,
    );
    assert!(state["policy"]["canary_version"].is_null(), "{state}");
    let versions = state["live"]["versions"].as_array().unwrap();
    let v2 = versions.iter().find(|v| v["version"] == 2).unwrap();
    assert!(v2["online"]["outcomes"].as_u64().unwrap() >= 500, "{v2}");

    // A canary as good as the stable version passes and is promoted.
    let good = last_json_line(&fx.ok(&gate("3", "-0.05", "1000")).await);
    assert_eq!(good["outcome"], "promoted", "{good}");
    for step in good["steps"].as_array().unwrap() {
        let online = &step["online"];
        assert!(online["canary_auc"].as_f64().unwrap() > 0.85, "{online}");
        assert!(online["canary_outcomes"].as_u64().unwrap() >= 1000, "{online}");
    }
    let state = last_json_line(
        &fx.ok(&["rollout", "status", "--model", "shoppers", "--json"])
            .await,
    );
    assert_eq!(state["policy"]["stable_version"], 3);

    stop.store(true, Ordering::Relaxed);
    assert!(traffic.await.unwrap() >= 3000);
    let text = fx.ok(&["rollout", "status", "--model", "shoppers"]).await;
    assert!(text.contains("online quality"), "{text}");
}

#[tokio::test]
async fn predict_ids_and_an_outcomes_file_join_on_the_server() {
    let fx = Fixture::start().await;
    fx.train_shoppers(&["--epochs", "1"]).await;
    let data = example("online_shoppers_intention.csv");
    let text = std::fs::read_to_string(&data).unwrap();
    let rows: Vec<&str> = text.lines().take(201).collect();
    let some = fx.write("some.csv", &format!("{}\n", rows.join("\n")));
    let scored = fx
        .ok(&["predict", "--model", "shoppers", "--data", &some, "--ids"])
        .await;
    let lines: Vec<&str> = scored.lines().collect();
    assert_eq!(lines[0], "score,label,prediction_id");
    assert_eq!(lines.len(), 201);
    let mut outcomes = String::from("prediction_id,label,time\n");
    for (line, row) in lines[1..].iter().zip(&rows[1..]) {
        let id = line.rsplit(',').next().unwrap();
        let label = u8::from(row.ends_with(",TRUE"));
        outcomes.push_str(&format!("{id},{label},\n"));
    }
    // Unknown and stale ids are counted, not refused.
    let some_id = lines[1].rsplit(',').next().unwrap();
    outcomes.push_str("not-a-prediction,1,\n");
    outcomes.push_str(&format!(
        "{}{},0,2020-01-01T00:00:00Z\n",
        &some_id[..9],
        "00000001-0000000000000000ffffffffffffffff"
    ));
    let file = fx.write("outcomes.csv", &outcomes);
    let counts = last_json_line(
        &fx.ok(&["outcomes", "--data", &file, "--batch-rows", "64", "--json"])
            .await,
    );
    assert_eq!(counts["outcomes"], 202);
    assert_eq!(counts["matched"], 200, "{counts}");
    assert_eq!(counts["unmatched"], 1, "{counts}");
    assert_eq!(counts["expired"], 1, "{counts}");
    let again = fx.ok(&["outcomes", "--data", &file]).await;
    assert!(
        again.contains("0 matched") && again.contains("200 duplicate"),
        "{again}"
    );

    let state = last_json_line(
        &fx.ok(&["rollout", "status", "--model", "shoppers", "--json"])
            .await,
    );
    let online = &state["live"]["versions"][0]["online"];
    assert_eq!(online["outcomes"], 200, "{state}");
    let positives = rows[1..].iter().filter(|r| r.ends_with(",TRUE")).count();
    assert_eq!(online["positives"], positives as u64);

    // A malformed row is refused before anything is sent, by line.
    let bad = fx.write("bad.csv", "prediction_id,label\nabc,maybe\n");
    let refused = fx.serval(&["outcomes", "--data", &bad]).await;
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("line 2") && stderr.contains("maybe"), "{stderr}");
}
