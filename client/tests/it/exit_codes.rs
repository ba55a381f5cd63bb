//! `serval`'s exit codes, one per kind of failure, and what it says when
//! the connection to the server is lost in the middle of a call: a usage
//! error, a server's refusal, no server to reach, and connections cut by a
//! forwarder between the CLI and a real server (as a network or a dying
//! server would cut them).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serval_client::{ServalClient, proto as pb};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::*;

/// How long the tests wait for what must happen (never a pass condition).
const PATIENCE: Duration = Duration::from_secs(120);

fn code(output: &std::process::Output) -> Option<i32> {
    output.status.code()
}

/// A TCP forwarder to a server whose connections can all be cut at once.
struct Forwarder {
    address: SocketAddr,
    accepting: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Forwarder {
    async fn to(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted = connections.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut server = TcpStream::connect(target).await.unwrap();
                accepted.lock().unwrap().push(tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }));
            }
        });
        Forwarder {
            address,
            accepting,
            connections,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Closes every connection, both ways, and takes no new ones.
    fn cut(&self) {
        self.accepting.abort();
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

/// `serval args` through `forwarder`, its stdout read line by line; the
/// connections are cut once a line contains `cut_after`. Returns the exit
/// code and stderr.
async fn cut_during(forwarder: &Forwarder, args: &[&str], cut_after: &str) -> (Option<i32>, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_serval"))
        .args(args)
        .env("SERVAL_SERVER", forwarder.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(cut_after) {
                return;
            }
        }
        panic!("serval ended before printing {cut_after:?}");
    })
    .await
    .expect("the call gets under way");
    forwarder.cut();
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("serval exits once its connection is gone")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn each_kind_of_failure_has_its_own_exit_code() {
    let fx = Fixture::start().await;

    // Usage: a missing flag (clap), and input the CLI refuses before
    // sending anything.
    let usage = fx.serval(&["train", "--model", "m"]).await;
    assert_eq!(code(&usage), Some(2), "{usage:?}");
    let usage = fx
        .serval(&["predict", "--model", "m", "--data", "/no/such/file.csv"])
        .await;
    assert_eq!(code(&usage), Some(2), "{usage:?}");
    assert!(
        String::from_utf8_lossy(&usage.stderr).contains("cannot open"),
        "{usage:?}"
    );

    // The server's refusal.
    let refused = fx
        .serval(&["predict", "--model", "missing", "--records", r#"{"x": 1}"#])
        .await;
    assert_eq!(code(&refused), Some(3), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("error: NOT_FOUND"),
        "{refused:?}"
    );

    // No server to reach: a port nobody listens on any more.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = tokio::process::Command::new(env!("CARGO_BIN_EXE_serval"))
        .args(["--server", &format!("http://{closed}"), "models"])
        .output()
        .await
        .unwrap();
    assert_eq!(code(&unreachable), Some(4), "{unreachable:?}");
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).contains("cannot connect"),
        "{unreachable:?}"
    );

    // All of them, as `serval --help` lists them.
    let help = fx.ok(&["--help"]).await;
    for line in [
        "  2  usage",
        "  3  the server refused",
        "  4  unavailable",
        "  5  the connection was lost",
        "  6  serval rollout start",
    ] {
        assert!(help.contains(line), "{line:?} missing from\n{help}");
    }
}

#[tokio::test]
async fn a_connection_lost_during_training_says_the_job_may_run_and_exits_5() {
    let fx = Fixture::start().await;
    let forwarder = Forwarder::to(fx.server.local_addr()).await;
    let data = example("online_shoppers_intention.csv");
    // A training that runs for minutes; the connection goes once the
    // server has accepted it.
    let (exit, stderr) = cut_during(
        &forwarder,
        &[
            "train",
            "--model",
            "shoppers",
            "--data",
            &data,
            "--label",
            "Revenue",
            "--positive",
            "TRUE",
            "--epochs",
            "500",
            "--patience",
            "0",
            "--batch-size",
            "32",
        ],
        "serval jobs watch",
    )
    .await;
    assert_eq!(exit, Some(5), "{stderr}");
    assert!(
        stderr.contains("UNAVAILABLE: the connection to the server was lost during the call"),
        "{stderr}"
    );
    assert!(stderr.contains("the training may have started"), "{stderr}");
    assert!(
        stderr.contains("`serval jobs --model shoppers` tells"),
        "{stderr}"
    );
    assert!(!stderr.contains("UNKNOWN"), "{stderr}");

    // And so it did: the job goes on without the CLI.
    let mut client = ServalClient::connect(&fx.server.url()).await.unwrap();
    let jobs = client.list_jobs(Some("shoppers"), 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].state(), pb::JobState::Running, "{jobs:?}");
    client.cancel_job(&jobs[0].id).await.unwrap();
}

#[tokio::test]
async fn a_connection_lost_during_a_read_says_nothing_changed_and_exits_5() {
    let fx = Fixture::start().await;
    fx.train_shoppers(&["--epochs", "1"]).await;
    let forwarder = Forwarder::to(fx.server.local_addr()).await;
    // Changes keep coming until the change feed has printed one.
    let mut client = ServalClient::connect(&fx.server.url()).await.unwrap();
    let changes = tokio::spawn(async move {
        loop {
            client
                .set_alias("shoppers", "production", 1, "poke")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (exit, stderr) = cut_during(&forwarder, &["rollout", "watch"], "alias").await;
    changes.abort();
    assert_eq!(exit, Some(5), "{stderr}");
    assert!(
        stderr.contains("the connection to the server was lost during the call"),
        "{stderr}"
    );
    assert!(
        stderr.contains("changes nothing on the server; run it again"),
        "{stderr}"
    );
}
