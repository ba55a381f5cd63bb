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
        // Visitors in a seeded random order: the file runs month by month,
        // and any stretch of it must stand for the whole.
        let mut visitors: Vec<usize> = (0..records.len()).collect();
        visitors.shuffle(&mut rand::rngs::StdRng::seed_from_u64(5));
        for &i in visitors.iter().cycle() {
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
    println!("online AUC: canary {canary_auc:.4}, stable {stable_auc:.4}: {online}");
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

/// The AUC by comparing every positive with every negative.
fn exact_auc(scores: &[f32], labels: &[bool]) -> f64 {
    let positives: Vec<f32> = scores
        .iter()
        .zip(labels)
        .filter(|&(_, &l)| l)
        .map(|(&s, _)| s)
        .collect();
    let negatives: Vec<f32> = scores
        .iter()
        .zip(labels)
        .filter(|&(_, &l)| !l)
        .map(|(&s, _)| s)
        .collect();
    let mut wins = 0.0;
    for p in &positives {
        for n in &negatives {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (positives.len() * negatives.len()) as f64
}

/// `serval_shadow_rows_total` by result, from `/metrics`.
async fn shadow_rows(metrics: std::net::SocketAddr) -> (u64, u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(metrics).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: serval\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let count = |result: &str| {
        let prefix = format!("serval_shadow_rows_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    (count("scored"), count("shed") + count("failed"))
}

#[tokio::test]
async fn a_shadow_version_is_judged_by_the_outcomes_of_rows_it_never_answered() {
    let fx = Fixture::start_with(|config, _| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = fx.server.metrics_addr().unwrap();
    // The rows in a seeded random order: versions train on the first ones,
    // and the last 3000, which no version saw, are replayed as traffic.
    let rows = 3000;
    let (mut records, mut labels) = shoppers();
    let text = std::fs::read_to_string(example("online_shoppers_intention.csv")).unwrap();
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let header = lines.remove(0);
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(3));
    let seen = order.len() - rows;
    let training: Vec<&str> = order[..seen].iter().map(|&i| lines[i]).collect();
    let training = fx.write("training.csv", &format!("{header}\n{}\n", training.join("\n")));
    records = order[seen..].iter().map(|&i| records[i].clone()).collect();
    labels = order[seen..].iter().map(|&i| labels[i]).collect();
    for seed in ["1", "7"] {
        fx.ok(&[
            "train",
            "--model",
            "shoppers",
            "--data",
            &training,
            "--label",
            "Revenue",
            "--positive",
            "TRUE",
            "--epochs",
            "4",
            "--seed",
            seed,
        ])
        .await;
    }
    fx.ok(&["rollout", "rollback", "--model", "shoppers", "--to", "1"])
        .await;
    let state = last_json_line(
        &fx.ok(&[
            "rollout",
            "shadow",
            "--model",
            "shoppers",
            "--version",
            "2",
            "--percent",
            "100",
            "--json",
        ])
        .await,
    );
    assert_eq!(state["policy"]["shadow_version"], 2, "{state}");
    assert_eq!(state["policy"]["stable_version"], 1, "{state}");

    let mut client = ServalClient::connect(&fx.server.url()).await.unwrap();
    let mut outcomes = Vec::new();
    for i in 0..rows {
        let answer = client
            .predict(pb::PredictRequest {
                model: "shoppers".into(),
                records: vec![records[i].clone()],
                routing_key: format!("visitor-{i}"),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(answer.version, 1, "the shadow never answers");
        outcomes.push(pb::OutcomeReport {
            prediction_id: answer.prediction_ids[0].clone(),
            label: labels[i],
            observed_at: None,
        });
    }
    // Shadow work runs after the answers: wait until every row is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (scored, not_scored) = loop {
        let (scored, not_scored) = shadow_rows(metrics).await;
        if scored + not_scored >= rows as u64 || std::time::Instant::now() > deadline {
            break (scored, not_scored);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        scored + not_scored,
        rows as u64,
        "every row shadowed or counted as shed"
    );
    assert!(
        scored >= 2900,
        "{scored} scored, {not_scored} shed at this light load"
    );
    let counts = client.report_outcomes(outcomes).await.unwrap();
    assert_eq!(counts.matched, rows as u64);

    // What version 2 would have scored for the same rows, asked directly.
    let mut offline = Vec::new();
    for chunk in records[..rows].chunks(500) {
        let answer = client
            .predict(pb::PredictRequest {
                model: "shoppers".into(),
                version: Some(2),
                records: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        offline.extend(answer.scores);
    }
    let offline_auc = exact_auc(&offline, &labels[..rows]);
    let stats = client.live_stats("shoppers", 60).await.unwrap();
    let v1 = stats.versions.iter().find(|v| v.version == 1).unwrap();
    let v2 = stats.versions.iter().find(|v| v.version == 2).unwrap();
    assert_eq!(v1.online.as_ref().unwrap().outcomes, rows as u64);
    assert!(v1.shadow.is_none() && v2.online.is_none(), "{stats:?}");
    let shadow = v2.shadow.as_ref().expect("the shadow's online quality");
    assert_eq!(shadow.outcomes, scored);
    let online_auc = shadow.auc.unwrap();
    assert!(
        (online_auc - offline_auc).abs() < 0.005,
        "online {online_auc} vs offline {offline_auc}"
    );
    let test_auc = client.list_models(Some("shoppers")).await.unwrap()[0].versions[1]
        .test_metrics
        .as_ref()
        .unwrap()
        .auc;
    assert!(
        (online_auc - test_auc).abs() < 0.01,
        "online {online_auc} vs the version's test AUC {test_auc}"
    );
    println!(
        "shadow online AUC {online_auc:.4} on {scored} rows; same rows offline {offline_auc:.4}; test split {test_auc:.4}"
    );

    let state = last_json_line(
        &fx.ok(&["rollout", "shadow", "--model", "shoppers", "--off", "--json"])
            .await,
    );
    assert!(state["policy"]["shadow_version"].is_null(), "{state}");
    for record in records.iter().take(20) {
        client
            .predict(pb::PredictRequest {
                model: "shoppers".into(),
                records: vec![record.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(
        shadow_rows(metrics).await,
        (scored, not_scored),
        "no shadow once off"
    );
}
