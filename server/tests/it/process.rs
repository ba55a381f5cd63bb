//! The server binary as a process: SIGTERM drains it cleanly, SIGKILL in
//! the middle of training or of rollout changes loses nothing that was
//! committed and leaves nothing half-written, a flipped byte in stored
//! weights is caught on load, and JSON logs carry each call's request id.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use futures::StreamExt;
use serval_client::{ClientError, ServalClient, proto as pb};
use serval_registry::{AuditFilter, JobState, Registry};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) struct Process {
    child: Child,
    pub(crate) url: String,
    /// The Open Inference Protocol's HTTP address.
    pub(crate) http: std::net::SocketAddr,
    log: PathBuf,
}

/// Starts `serval-server` on `dir/serval.db` on an ephemeral port and waits
/// for it to listen.
async fn spawn(dir: &Path, extra: &[&str]) -> Process {
    spawn_on(dir, &dir.join("serval.db").to_string_lossy(), extra).await
}

/// Starts `serval-server` on the registry `database`, logging into `dir`.
pub(crate) async fn spawn_on(dir: &Path, database: &str, extra: &[&str]) -> Process {
    spawn_configured(dir, database, extra, &[]).await
}

/// [`spawn`] with `env` added to the server's environment.
pub(crate) async fn spawn_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Process {
    spawn_configured(dir, &dir.join("serval.db").to_string_lossy(), extra, env).await
}

async fn spawn_configured(dir: &Path, database: &str, extra: &[&str], env: &[(&str, &str)]) -> Process {
    let log = dir.join(format!("server-{}.log", rand_suffix()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_serval-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--database",
            database,
        ])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the server starts")
        .unwrap()
        .unwrap_or_else(|| panic!("the server exited: {}", std::fs::read_to_string(&log).unwrap()));
    let address = line.rsplit(' ').next().unwrap().to_string();
    // The HTTP address follows on the next line, written at once with it.
    let http = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the HTTP address is announced")
        .unwrap()
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .expect("the HTTP address");
    Process {
        child,
        url: format!("http://{address}"),
        http,
        log,
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

impl Process {
    pub(crate) async fn client(&self) -> ServalClient {
        ServalClient::connect(&self.url).await.unwrap()
    }

    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server exits")
            .unwrap()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// Kills the server (SIGKILL) and waits until it has gone.
    async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.wait().await;
    }
}

/// A new server on the registry in `dir`, and a client of it.
async fn restart(dir: &Path) -> (Process, ServalClient) {
    let server = spawn(dir, &[]).await;
    let client = server.client().await;
    (server, client)
}

fn probe() -> pb::PredictRequest {
    pb::PredictRequest {
        model: "small".into(),
        version: Some(1),
        records: (0..10)
            .map(|i| small_record(f64::from(i) * 2.0, "green", i % 2 == 0))
            .collect(),
        ..Default::default()
    }
}

/// A server on `dir` with model "small" trained, its scores for `probe()`,
/// and a long training under way (its events, to keep the upload open).
async fn busy_server(dir: &Path) -> (Process, Vec<f32>, serval_client::TrainUpload) {
    let server = spawn(dir, &[]).await;
    let mut client = server.client().await;
    client.train(small_spec("small"), small_csv()).await.unwrap();
    let before = client.predict(probe()).await.unwrap().scores;
    let (_, events) = start_long_training(&mut client).await;
    (server, before, events)
}

#[tokio::test]
async fn sigterm_cancels_training_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, before, _events) = busy_server(dir.path()).await;

    server.signal("-TERM");
    assert!(server.wait().await.success(), "{}", server.log());

    let (_server, mut client) = restart(dir.path()).await;
    let jobs = client
        .raw()
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    let long = jobs.iter().find(|j| j.model == "shoppers").unwrap();
    assert_eq!(long.state(), pb::JobState::Cancelled, "{long:?}");
    assert_eq!(
        client.list_models(None).await.unwrap().len(),
        1,
        "no partial version"
    );
    assert_eq!(client.predict(probe()).await.unwrap().scores, before);
}

#[tokio::test]
async fn sigkill_during_training_leaves_no_partial_version() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, before, _events) = busy_server(dir.path()).await;
    server.kill().await;

    let (_server, mut client) = restart(dir.path()).await;
    let models = client.list_models(None).await.unwrap();
    assert_eq!(
        models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["small"]
    );
    assert_eq!(client.predict(probe()).await.unwrap().scores, before);
    let registry = Registry::open(dir.path().join("serval.db").to_str().unwrap())
        .await
        .unwrap();
    let job = registry.jobs(Some("shoppers"), 1).await.unwrap().remove(0);
    assert_eq!(job.state, JobState::Failed);
    // Every stored version still matches its checksum.
    registry.weights("small", 1).await.unwrap();
}

#[tokio::test]
async fn sigkill_during_rollout_changes_keeps_policy_and_audit_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path(), &[]).await;
    let mut client = server.client().await;
    train_two_small_versions(&mut client).await;
    let mut changer = client.clone();
    let changes = tokio::spawn(async move {
        let mut made = 0u32;
        loop {
            let change = if made.is_multiple_of(2) {
                pb::update_traffic_request::Change::Canary(pb::CanaryChange {
                    version: 2,
                    percent: f64::from(made % 100),
                })
            } else {
                pb::update_traffic_request::Change::Rollback(pb::RollbackChange { to_version: Some(1) })
            };
            if changer.update_traffic("small", change, "churn").await.is_err() {
                return made;
            }
            made += 1;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill().await;
    let made = changes.await.unwrap();
    assert!(made > 0);

    let (_server, mut client) = restart(dir.path()).await;
    let state = client.rollout_state("small").await.unwrap();
    let policy = state.policy.expect("a policy was committed");
    let registry = Registry::open(dir.path().join("serval.db").to_str().unwrap())
        .await
        .unwrap();
    let traffic: Vec<_> = registry
        .audit_events(&AuditFilter {
            model: Some("small".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "traffic_changed")
        .collect();
    // Each committed change has exactly one audit event, and the policy is
    // the last one's "after".
    assert_eq!(policy.revision as usize, traffic.len());
    assert!(
        traffic.len() as u32 >= made,
        "{} events, {made} acknowledged",
        traffic.len()
    );
    let last = &traffic.last().unwrap().after;
    assert_eq!(last["stable_version"], policy.stable_version);
    assert_eq!(
        last["canary_version"].as_u64().map(|v| v as u32),
        policy.canary_version
    );
    let answer = client.predict(probe()).await.unwrap();
    assert_eq!(answer.scores.len(), 10);
}

/// Flips one byte inside the stored weights of `model` `version` in the
/// database file.
async fn flip_stored_weights(database: &Path, model: &str, version: u32) {
    let registry = Registry::open(database.to_str().unwrap()).await.unwrap();
    let weights = registry.weights(model, version).await.unwrap();
    registry.close().await;
    let mut file = std::fs::read(database).unwrap();
    for start in (weights.len() / 2..weights.len() - 32).step_by(97) {
        let needle = &weights[start..start + 32];
        if let Some(at) = file.windows(32).position(|w| w == needle) {
            file[at + 16] ^= 0x40;
            std::fs::write(database, file).unwrap();
            return;
        }
    }
    panic!("the weights were not found in the database file");
}

#[tokio::test]
async fn a_flipped_byte_in_stored_weights_is_caught_and_other_versions_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path(), &[]).await;
    let mut client = server.client().await;
    train_two_small_versions(&mut client).await;
    server.signal("-TERM");
    server.wait().await;
    flip_stored_weights(&dir.path().join("serval.db"), "small", 1).await;

    let (_server, mut client) = restart(dir.path()).await;
    let broken = match client.predict(probe()).await {
        Err(ClientError::Status(status)) => status,
        other => panic!("expected a failure, got {other:?}"),
    };
    assert_eq!(broken.code(), tonic::Code::FailedPrecondition, "{broken:?}");
    assert!(
        broken.message().contains("corrupt") && broken.message().contains("SHA-256"),
        "{broken:?}"
    );
    let healthy = client
        .predict(pb::PredictRequest {
            version: Some(2),
            ..probe()
        })
        .await
        .unwrap();
    assert_eq!(healthy.scores.len(), 10);
    let latest = client
        .predict(pb::PredictRequest {
            version: None,
            ..probe()
        })
        .await
        .unwrap();
    assert_eq!(latest.version, 2);
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_the_callers_trace() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path(), &["--log-format", "json"]).await;
    let mut client = server.client().await;
    let chunks: Vec<Vec<u8>> = vec![small_csv()];
    let first = futures::stream::once(async {
        pb::TrainRequest {
            payload: Some(pb::train_request::Payload::Spec(small_spec("small"))),
        }
    });
    let rest = futures::stream::iter(chunks).map(|chunk| pb::TrainRequest {
        payload: Some(pb::train_request::Payload::CsvChunk(chunk)),
    });
    let mut request = tonic::Request::new(first.chain(rest));
    request
        .metadata_mut()
        .insert("x-request-id", "train-req-7".parse().unwrap());
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
        .metadata_mut()
        .insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
    let response = client.raw().train(request).await.unwrap();
    assert_eq!(
        response.metadata().get("tracestate").unwrap(),
        "congo=t61rcWkgMzE"
    );
    // The call joins the caller's trace with a span of its own.
    let returned = response
        .metadata()
        .get("traceparent")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        returned.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && returned.ends_with("-01"),
        "{returned}"
    );
    assert_ne!(returned, traceparent);
    let mut events = response.into_inner();
    while events.message().await.unwrap().is_some() {}
    server.signal("-TERM");
    server.wait().await;
    let log = server.log();
    // The caller's vendors' tracestate is returned, never logged.
    assert!(!log.contains("t61rcWkgMzE"), "{log}");
    let started = log
        .lines()
        .find(|l| l.contains("training started"))
        .unwrap_or_else(|| panic!("no training log line in {log}"));
    let line: serde_json::Value = serde_json::from_str(started).unwrap();
    assert_eq!(line["span"]["request_id"], "train-req-7", "{line}");
    assert_eq!(
        line["span"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{line}"
    );
    assert_eq!(line["span"]["parent_id"], "00f067aa0ba902b7", "{line}");
    assert_eq!(
        returned.split('-').nth(2),
        line["span"]["span_id"].as_str(),
        "the span id returned is the one logged: {line}"
    );
    let registered = log.lines().find(|l| l.contains("version registered")).unwrap();
    assert!(registered.contains("train-req-7"), "{registered}");
}

#[tokio::test]
async fn a_database_that_is_not_sqlite_stops_the_server_at_once_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    // Anything but SQLite's header: here, bytes that look like nothing.
    let bytes: Vec<u8> = (0..16_384u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();

    let started = std::time::Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(env!("CARGO_BIN_EXE_serval-server"))
            .args(["--listen", "127.0.0.1:0", "--http-listen", "off", "--database"])
            .arg(&path)
            .output(),
    )
    .await
    .expect("the server exits")
    .unwrap();
    let took = started.elapsed();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} is not a SQLite database", path.display())),
        "{stderr}"
    );
    // Before, a pool retried the connection until its 5-second acquire
    // timeout and then said only "pool timed out"; now nothing retries, so
    // the server cannot take that long.
    assert!(!stderr.contains("pool timed out"), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file is untouched");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(files, ["corrupt.db"], "nothing written beside it");
}
