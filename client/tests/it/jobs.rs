//! `serval jobs` against a real server: a running job is listed, followed
//! from a second process and cancelled without leaving a version; a finished
//! job is listed with its version and can be re-attached to.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

async fn jobs_json(fx: &Fixture) -> Vec<Value> {
    last_json_line(&fx.ok(&["jobs", "--json"]).await)["jobs"]
        .as_array()
        .unwrap()
        .clone()
}

fn serval_process(fx: &Fixture, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_serval"))
        .args(args)
        .env("SERVAL_SERVER", fx.server.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("serval starts")
}

#[tokio::test]
async fn a_running_job_is_watched_and_cancelled_and_a_finished_one_is_listed() {
    let fx = Fixture::start().await;
    let coupons = example("in-vehicle-coupon-recommendation.csv");
    // Long enough to be caught running: many epochs of a wide network.
    let training = serval_process(
        &fx,
        &[
            "train",
            "--model",
            "coupons",
            "--data",
            &coupons,
            "--label",
            "Y",
            "--positive",
            "1",
            "--epochs",
            "500",
            "--patience",
            "0",
            "--hidden",
            "256,256",
        ],
    );

    let started = Instant::now();
    let job = loop {
        let jobs = jobs_json(&fx).await;
        if let Some(job) = jobs.first().filter(|j| j["epochs_done"].as_u64() >= Some(1)) {
            break job.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no running job: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["state"], "running", "{job}");
    assert_eq!(job["model"], "coupons");
    assert_eq!(job["epochs"], 500);
    assert_eq!(job["rows"], 12_684);
    assert!(job["version"].is_null(), "{job}");
    let id = job["id"].as_str().unwrap().to_string();

    let table = fx.ok(&["jobs"]).await;
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("coupons") && row.contains("running"), "{row}");

    // A second client re-attaches while the first is still connected.
    let watcher = serval_process(&fx, &["jobs", "watch", &id, "--json"]);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let cancelled = fx.ok(&["jobs", "cancel", &id]).await;
    assert!(
        cancelled.contains(&format!("Cancel requested for job {id}")),
        "{cancelled}"
    );

    for (what, child) in [("train", training), ("jobs watch", watcher)] {
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{what} still running after the cancel"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what} succeeded after a cancel");
        assert!(stderr.contains("cancel"), "{what}: {stderr}");
    }

    let job = jobs_json(&fx).await[0].clone();
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(job["version"].is_null(), "{job}");
    assert!(job["finished_at"].is_string(), "{job}");
    let models = last_json_line(&fx.ok(&["models", "--json"]).await);
    assert_eq!(models["models"].as_array().unwrap().len(), 0, "{models}");

    // A job that finished: listed with its version; watch prints it; cancel
    // is refused.
    fx.train_shoppers(&["--epochs", "2"]).await;
    let jobs = jobs_json(&fx).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let done = &jobs[0];
    assert_eq!(done["model"], "shoppers");
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["version"], 1);
    assert_eq!(done["epochs_done"], 2);
    // The server that ran it (its --replica-name, the host name here).
    assert!(done["replica"].as_str().is_some_and(|r| !r.is_empty()), "{done}");
    assert!(done["duration_seconds"].as_f64().unwrap() > 0.0);
    let done_id = done["id"].as_str().unwrap();

    let watched = last_json_line(&fx.ok(&["jobs", "watch", done_id, "--json"]).await);
    assert_eq!(watched["model"], "shoppers");
    assert_eq!(watched["version"], 1);

    let refused = fx.serval(&["jobs", "cancel", done_id]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("already ended (succeeded)"), "{stderr}");

    let only_coupons = last_json_line(&fx.ok(&["jobs", "--model", "coupons", "--json"]).await);
    assert_eq!(
        only_coupons["jobs"].as_array().unwrap().len(),
        1,
        "{only_coupons}"
    );

    let unknown = fx.serval(&["jobs", "watch", "job-0000"]).await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));
}
