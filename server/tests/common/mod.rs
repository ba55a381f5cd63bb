//! One helper for the server's integration tests: a real server on an
//! ephemeral loopback port with a SQLite registry in a temporary directory,
//! and the project's example datasets.
#![allow(dead_code)]

use std::path::PathBuf;

use serval_client::{ClientError, ServalClient, proto as pb};
use serval_server::{Server, ServerConfig};

pub struct TestServer {
    pub server: Server,
    pub client: ServalClient,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        Self::start_in(dir, |_| {}).await
    }

    /// Starts on `dir/serval.db` with the config adjusted by `configure`.
    pub async fn start_in(dir: tempfile::TempDir, configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig::for_database(dir.path().join("serval.db").to_string_lossy());
        configure(&mut config);
        let server = Server::start(&config).await.expect("server starts");
        let client = ServalClient::connect(&server.url())
            .await
            .expect("client connects");
        TestServer { server, client, dir }
    }

    /// Stops the server and starts a new one on the same database file.
    pub async fn restart(self) -> Self {
        let TestServer { server, dir, .. } = self;
        server.shutdown().await.expect("clean shutdown");
        Self::start_in(dir, |_| {}).await
    }

    pub fn database_path(&self) -> PathBuf {
        self.dir.path().join("serval.db")
    }
}

/// Bytes of a dataset under `examples/data/`.
pub fn dataset(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub const SHOPPERS: &str = "online_shoppers_intention.csv";
pub const TELCO: &str = "Telco-Customer-Churn.csv";
pub const COUPON: &str = "in-vehicle-coupon-recommendation.csv";

pub fn spec(model: &str, label: &str, positive: &str) -> pb::TrainSpec {
    pb::TrainSpec {
        model: model.to_string(),
        label_column: label.to_string(),
        positive_label: positive.to_string(),
        ..Default::default()
    }
}

/// A small, quick-to-train CSV: the label is positive when `x` is large,
/// with a categorical and a boolean column.
pub fn small_csv() -> Vec<u8> {
    let mut csv = String::from("id,x,colour,member,label\n");
    for i in 0..200 {
        let x = (i * 37 % 200) as f64 / 10.0;
        let colour = ["red", "green", "blue"][i % 3];
        let member = if i % 4 == 0 { "yes" } else { "no" };
        let label = if x > 10.0 { "1" } else { "0" };
        csv.push_str(&format!("{i},{x},{colour},{member},{label}\n"));
    }
    csv.into_bytes()
}

pub fn small_spec(model: &str) -> pb::TrainSpec {
    pb::TrainSpec {
        drop_columns: vec!["id".into()],
        hyper_parameters: Some(pb::HyperParameters {
            epochs: Some(3),
            hidden_layers: vec![8],
            ..Default::default()
        }),
        ..spec(model, "label", "1")
    }
}

/// Trains versions 1 and 2 of model "small" (other seeds, so other
/// weights) through `client`.
pub async fn train_two_small_versions(client: &mut ServalClient) {
    client
        .train(small_spec("small"), small_csv())
        .await
        .expect("version 1");
    let second = pb::TrainSpec {
        seed: Some(7),
        ..small_spec("small")
    };
    client.train(second, small_csv()).await.expect("version 2");
}

pub fn number(x: f64) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::NumberValue(x)),
    }
}

pub fn text(s: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::StringValue(s.to_string())),
    }
}

pub fn boolean(b: bool) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::BoolValue(b)),
    }
}

/// A record for the small model.
pub fn small_record(x: f64, colour: &str, member: bool) -> pb::Record {
    pb::Record {
        fields: [
            ("x".to_string(), number(x)),
            ("colour".to_string(), text(colour)),
            ("member".to_string(), boolean(member)),
        ]
        .into_iter()
        .collect(),
    }
}

/// One plain HTTP/1.1 GET (the metrics endpoint): the whole response,
/// status line and headers included.
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: serval\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// The status a call failed with.
///
/// # Panics
/// When the call succeeded or failed without a status (a transport error).
pub fn status_of<T: std::fmt::Debug>(result: Result<T, ClientError>) -> tonic::Status {
    match result {
        Err(ClientError::Status(status)) => status,
        other => panic!("expected a status, got {other:?}"),
    }
}

/// A training of shoppers that runs for minutes (500 epochs of small
/// batches, no early stopping), for tests that need one under way.
pub fn long_shoppers_spec(model: &str) -> pb::TrainSpec {
    pb::TrainSpec {
        hyper_parameters: Some(pb::HyperParameters {
            epochs: Some(500),
            patience: Some(0),
            batch_size: Some(32),
            ..Default::default()
        }),
        ..spec(model, "Revenue", "TRUE")
    }
}

/// Starts training `spec` on `csv` and returns the job's id and its events
/// once the server has accepted it.
pub async fn start_training(
    client: &mut ServalClient,
    spec: pb::TrainSpec,
    csv: Vec<u8>,
) -> (String, serval_client::TrainUpload) {
    let chunks: Vec<Vec<u8>> = csv.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    let mut events = client
        .train_stream(spec, futures::stream::iter(chunks))
        .await
        .expect("training starts");
    loop {
        match events
            .message()
            .await
            .expect("an event")
            .expect("not ended")
            .event
        {
            Some(pb::train_event::Event::Preparing(_)) => continue,
            Some(pb::train_event::Event::Accepted(accepted)) => return (accepted.job_id, events),
            other => panic!("expected Accepted after the preparation, got {other:?}"),
        }
    }
}

/// Starts a [`long_shoppers_spec`] training of model "shoppers" and returns
/// its job id and events once its first epoch has ended.
pub async fn start_long_training(client: &mut ServalClient) -> (String, serval_client::TrainUpload) {
    let (id, mut events) = start_training(client, long_shoppers_spec("shoppers"), dataset(SHOPPERS)).await;
    loop {
        let event = events.message().await.expect("an event").expect("not ended");
        if let Some(pb::train_event::Event::Epoch(_)) = event.event {
            return (id, events);
        }
    }
}
