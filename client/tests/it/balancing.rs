//! Several replicas on one SQLite registry: a client connected to all of
//! them spreads calls over every replica, keeps answering Predict when one
//! dies, sends changes once, and the CLI takes `--server a,b` with one
//! address down. Each replica runs on its own runtime so that it can be
//! killed: its tasks stop where they are and its sockets close without a
//! goodbye, as when a process dies.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serval_client::{ConnectOptions, ServalClient, proto as pb};
use serval_server::telemetry::ServerMetrics;
use serval_server::{Server, ServerConfig};
use tokio::sync::watch;

use crate::common::*;

/// Longest wait for anything in these tests; a hang fails instead.
const PATIENCE: Duration = Duration::from_secs(60);

/// A server on its own runtime and thread, until killed.
struct Replica {
    url: String,
    metrics: ServerMetrics,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    async fn start(database: &Path) -> Replica {
        let mut config = ServerConfig::for_database(database.to_string_lossy());
        config.registry_poll_interval = Duration::from_millis(100);
        let (started, answer) = tokio::sync::oneshot::channel();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            let server = runtime.block_on(Server::start(&config)).expect("replica starts");
            let _ = started.send((server.url(), server.metrics().clone()));
            // Killed, or the test is over (the sender is gone).
            let _ = killed.recv();
            runtime.shutdown_timeout(Duration::ZERO);
            drop(server);
        });
        let (url, metrics) = answer.await.expect("replica started");
        Replica {
            url,
            metrics,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// Stops the replica as a crash would: nothing is drained or answered.
    async fn kill(&mut self) {
        drop(self.kill.take());
        let thread = self.thread.take().expect("not killed yet");
        tokio::task::spawn_blocking(move || thread.join().expect("replica thread"))
            .await
            .unwrap();
    }

    /// Predict calls this replica answered successfully, from its own
    /// Prometheus counters (recorded before the answer is sent).
    fn predicts_answered(&self) -> u64 {
        self.metrics
            .render()
            .lines()
            .filter(|line| line.starts_with("serval_predict_requests_total{") && line.contains("code=\"OK\""))
            .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        drop(self.kill.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `count` replicas on one registry file in `dir`.
async fn replicas(dir: &tempfile::TempDir, count: usize) -> Vec<Replica> {
    let database = dir.path().join("serval.db");
    let mut replicas = Vec::new();
    for _ in 0..count {
        replicas.push(Replica::start(&database).await);
    }
    replicas
}

fn urls(replicas: &[Replica]) -> Vec<String> {
    replicas.iter().map(|r| r.url.clone()).collect()
}

/// Rows where y follows x, with a categorical column.
fn csv() -> Vec<u8> {
    let mut text = String::from("x,colour,y\n");
    for i in 0..120 {
        let colour = ["red", "blue", "green"][i % 3];
        text.push_str(&format!("{},{colour},{}\n", i % 40, u8::from(i % 40 > 20)));
    }
    text.into_bytes()
}

/// Trains model `m` once through the first replica and waits until every
/// other replica has picked the new version up.
async fn train_once(replicas: &[Replica]) {
    let mut watches = Vec::new();
    for replica in &replicas[1..] {
        let mut client = ServalClient::connect(&replica.url).await.unwrap();
        watches.push(client.watch(Some("m"), 0).await.unwrap());
    }
    let spec = pb::TrainSpec {
        model: "m".into(),
        label_column: "y".into(),
        positive_label: "1".into(),
        hyper_parameters: Some(pb::HyperParameters {
            epochs: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut client = ServalClient::connect(&replicas[0].url).await.unwrap();
    client.train(spec, csv()).await.unwrap();
    for mut watch in watches {
        loop {
            let event = tokio::time::timeout(PATIENCE, watch.message())
                .await
                .expect("the new version reached every replica")
                .unwrap()
                .expect("an event");
            if event.kind == "version_registered" {
                break;
            }
        }
    }
}

fn predict_request(i: usize) -> pb::PredictRequest {
    let text = |s: String| pb::Value {
        kind: Some(pb::value::Kind::StringValue(s)),
    };
    pb::PredictRequest {
        model: "m".into(),
        records: vec![pb::Record {
            fields: [
                ("x".to_string(), text((i % 40).to_string())),
                ("colour".to_string(), text("red".to_string())),
            ]
            .into_iter()
            .collect(),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn calls_take_turns_over_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let replicas = replicas(&dir, 3).await;
    train_once(&replicas).await;

    let mut client = ServalClient::connect_many(&urls(&replicas), ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(client.urls().collect::<Vec<_>>(), urls(&replicas));
    for i in 0..90 {
        let answer = client.predict(predict_request(i)).await.unwrap();
        assert_eq!((answer.model.as_str(), answer.version), ("m", 1));
    }
    // Round robin: each replica answered exactly its third.
    let answered: Vec<u64> = replicas.iter().map(Replica::predicts_answered).collect();
    assert_eq!(answered, [30, 30, 30]);
    // Reads go through the same turns and see the one registry.
    for _ in 0..3 {
        let models = client.list_models(None).await.unwrap();
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].versions.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn predict_keeps_answering_when_a_replica_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = replicas(&dir, 3).await;
    train_once(&replicas).await;
    let client = ServalClient::connect_many(&urls(&replicas), ConnectOptions::default())
        .await
        .unwrap();

    // A few callers send Predict calls back to back until told to stop,
    // counting successes and keeping every failure.
    let (answered_tx, mut answered) = watch::channel(0u64);
    let answered_tx = Arc::new(answered_tx);
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let (stop_tx, stop) = watch::channel(false);
    let mut callers = Vec::new();
    for caller in 0..4 {
        let mut client = client.clone();
        let (answered_tx, failures, stop) = (answered_tx.clone(), failures.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let mut i = caller;
            while !*stop.borrow() {
                match client.predict(predict_request(i)).await {
                    Ok(_) => answered_tx.send_modify(|n| *n += 1),
                    Err(error) => failures.lock().unwrap().push(error.to_string()),
                }
                i += 4;
            }
        }));
    }

    let wait_for = |answered: &mut watch::Receiver<u64>, at_least: u64| {
        let mut answered = answered.clone();
        async move {
            tokio::time::timeout(PATIENCE, answered.wait_for(|&n| n >= at_least))
                .await
                .expect("Predict calls keep being answered")
                .map(|n| *n)
                .unwrap()
        }
    };
    wait_for(&mut answered, 150).await;
    // Correctness: calls are in flight on every replica at this moment;
    // those on the victim fail UNKNOWN (connection broken) or CANCELLED
    // (queued on the closed connection), and are retried elsewhere.
    replicas[1].kill().await;
    let at_kill: Vec<u64> = replicas.iter().map(Replica::predicts_answered).collect();
    let answered_at_kill = *answered.borrow();
    wait_for(&mut answered, answered_at_kill + 300).await;
    stop_tx.send(true).unwrap();
    for caller in callers {
        caller.await.unwrap();
    }

    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed Predict calls: {failures:?}");
    let after: Vec<u64> = replicas.iter().map(Replica::predicts_answered).collect();
    assert!(at_kill[1] > 0, "the victim served before it died: {at_kill:?}");
    for live in [0, 2] {
        assert!(
            after[live] > at_kill[live],
            "replica {live} kept answering: {at_kill:?} → {after:?}"
        );
    }
    // Every success the callers saw was answered by some replica (the
    // victim may have answered calls whose answers it never sent).
    let total: u64 = after.iter().sum();
    assert!(total >= *answered.borrow(), "{after:?} vs {}", *answered.borrow());
}

#[tokio::test]
async fn changes_are_sent_once_and_reads_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = replicas(&dir, 2).await;
    train_once(&replicas).await;
    let urls = urls(&replicas);
    let mut writer = ServalClient::connect_many(&urls, ConnectOptions::default())
        .await
        .unwrap();
    let mut reader = ServalClient::connect_many(&urls, ConnectOptions::default())
        .await
        .unwrap();
    replicas[1].kill().await;

    // The first change whose turn falls on the dead replica fails, and is
    // not sent again; from then on the dead replica goes last.
    let mut outcomes = BTreeMap::new();
    for i in 0..4 {
        let alias = format!("a{i}");
        let outcome = writer.set_alias("m", &alias, 1, "test").await;
        outcomes.insert(alias, outcome.map_err(|e| e.to_string()));
    }
    let failed: Vec<&str> = outcomes
        .values()
        .filter_map(|o| o.as_ref().err())
        .map(String::as_str)
        .collect();
    assert_eq!(failed.len(), 1, "{outcomes:?}");
    // UNAVAILABLE when the client had noticed the closed connection,
    // UNKNOWN or CANCELLED when the call raced the close.
    assert!(
        ["UNAVAILABLE", "UNKNOWN", "CANCELLED"]
            .iter()
            .any(|code| failed[0].starts_with(code)),
        "{outcomes:?}"
    );
    let state = reader.rollout_state("m").await.unwrap();
    let aliases: Vec<&str> = state.aliases.iter().map(|a| a.name.as_str()).collect();
    let applied: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| o.is_ok())
        .map(|(alias, _)| alias.as_str())
        .collect();
    assert_eq!(aliases, applied, "exactly the answered changes were applied");

    // Reads whose turn falls on the dead replica are answered by the other.
    for _ in 0..4 {
        assert_eq!(reader.list_models(Some("m")).await.unwrap().len(), 1);
        assert_eq!(reader.list_jobs(Some("m"), 10).await.unwrap().len(), 1);
    }
}

/// A loopback address with nothing listening.
fn dead_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// Runs `serval` with `SERVAL_SERVER` set to `servers`.
async fn serval(servers: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_serval"))
        .args(args)
        .env("SERVAL_SERVER", servers)
        .output()
        .await
        .expect("serval runs")
}

fn succeeded(args: &[&str], output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "serval {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn the_cli_takes_several_servers_and_works_while_one_is_down() {
    let fx = Fixture::start().await;
    let live = fx.server.url();
    let dead = dead_address();
    let data = fx.write("m.csv", &String::from_utf8(csv()).unwrap());

    // The flag, with the dead address first; train is sent once, to the
    // replica that answered when the CLI connected.
    let both = format!("{dead},{live}");
    let train: &[&str] = &[
        "--server",
        &both,
        "train",
        "--model",
        "m",
        "--data",
        &data,
        "--label",
        "y",
        "--positive",
        "1",
        "--epochs",
        "2",
        "--json",
    ];
    let trained = last_json_line(&succeeded(train, &fx.serval(train).await));
    assert_eq!(trained["version"], 1);

    let record = r#"{"x": 30, "colour": "red"}"#;
    for servers in [format!("{dead},{live}"), format!("{live}, {dead}")] {
        // The environment variable takes the same list.
        let predict = ["predict", "--model", "m", "--records", record, "--json"];
        let scored = last_json_line(&succeeded(&predict, &serval(&servers, &predict).await));
        assert_eq!(scored["scores"].as_array().unwrap().len(), 1, "{scored}");
        let list = ["models", "list", "--json"];
        let listed = last_json_line(&succeeded(&list, &serval(&servers, &list).await));
        assert_eq!(listed["models"][0]["name"], "m", "{listed}");
    }

    // None reachable: one error naming every address.
    let other_dead = dead_address();
    let output = serval(&format!("{dead},{other_dead}"), &["models"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to any of the 2 servers"),
        "{stderr}"
    );
    assert!(stderr.contains(&dead) && stderr.contains(&other_dead), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
}
