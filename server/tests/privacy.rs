//! What a server keeps and writes about its callers' data, checked against
//! a real server: identifier-like columns are refused at training and, once
//! dropped, no raw identifier is anywhere in the registry file; and a full
//! train, predict and rollout session leaves no feature value and no
//! routing key in clear in the debug logs or the `/metrics` text, while the
//! keyed hash of each routing key is logged.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use serval_client::proto as pb;
use serval_model::encoder::MAX_CATEGORIES;
use serval_server::privacy::routing_key_hash;
use tonic::Code;

/// Which of `markers` occur in `haystack`, in one pass per marker length.
fn occurring<'a>(haystack: &[u8], markers: &'a [String]) -> BTreeSet<&'a str> {
    let mut by_length: HashMap<usize, HashSet<&'a [u8]>> = HashMap::new();
    for marker in markers {
        by_length
            .entry(marker.len())
            .or_default()
            .insert(marker.as_bytes());
    }
    let mut found = BTreeSet::new();
    for (length, wanted) in by_length {
        for window in haystack.windows(length) {
            if let Some(marker) = wanted.get(window) {
                found.insert(std::str::from_utf8(marker).expect("markers are text"));
            }
        }
    }
    found
}

// ------------------------------------------------------------ identifiers --

/// Every cell of `column` in `csv`.
fn column_values(csv: &[u8], column: &str) -> Vec<String> {
    let mut reader = csv::Reader::from_reader(csv);
    let index = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("no column {column}"));
    reader
        .records()
        .map(|record| record.unwrap()[index].to_string())
        .collect()
}

/// Everything the registry holds: every column of every row of every table
/// (text, numbers and blobs, as bytes, so the stored encoder, recipe and
/// audit JSON are included), then the raw bytes of the database file and
/// its write-ahead log, free pages included.
async fn registry_bytes(database: &Path) -> Vec<u8> {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(database)
                .read_only(true),
        )
        .await
        .expect("the registry opens read-only");
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(tables.iter().any(|t| t == "model_versions"), "tables: {tables:?}");
    let mut bytes = Vec::new();
    for table in &tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(table)
            .fetch_all(&pool)
            .await
            .unwrap();
        for column in columns {
            // Names come from the schema and are quoted as identifiers.
            let select = format!(
                "SELECT CAST({} AS BLOB) FROM {}",
                identifier(&column),
                identifier(table)
            );
            let cells: Vec<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(select))
                .fetch_all(&pool)
                .await
                .unwrap();
            for cell in cells.into_iter().flatten() {
                bytes.extend_from_slice(&cell);
                bytes.push(b'\n');
            }
        }
    }
    pool.close().await;
    for suffix in ["", "-wal"] {
        let mut path = database.as_os_str().to_owned();
        path.push(suffix);
        if let Ok(file) = std::fs::read(&path) {
            bytes.extend_from_slice(&file);
        }
    }
    bytes
}

/// `name` as an SQL identifier.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quick_telco(model: &str) -> pb::TrainSpec {
    pb::TrainSpec {
        hyper_parameters: Some(pb::HyperParameters {
            epochs: Some(1),
            hidden_layers: vec![8],
            ..Default::default()
        }),
        ..spec(model, "Churn", "Yes")
    }
}

#[tokio::test]
async fn identifier_columns_are_refused_unless_allowed_and_never_stored_once_dropped() {
    let mut test = TestServer::start().await;
    let telco = dataset(TELCO);
    let customer_ids = column_values(&telco, "customerID");
    assert_eq!(customer_ids.len(), 7043);

    let refused = status_of(test.client.train(quick_telco("churn"), telco.clone()).await);
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let message = refused.message();
    for needle in [
        "column \"customerID\" looks like an identifier (7043 distinct values in 7043 rows)",
        "--drop customerID",
        "--allow-identifier-columns",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
    assert!(
        test.client.list_models(None).await.unwrap().is_empty(),
        "nothing stored"
    );
    assert_eq!(
        occurring(&registry_bytes(&test.database_path()).await, &customer_ids),
        BTreeSet::new()
    );

    let dropped = pb::TrainSpec {
        drop_columns: vec!["customerID".into()],
        ..quick_telco("churn")
    };
    test.client.train(dropped, telco.clone()).await.unwrap();
    let stored = registry_bytes(&test.database_path()).await;
    // The scan reads the stored encoder: its categories are there.
    let contracts = ["Month-to-month".to_string(), "Two year".to_string()];
    assert_eq!(
        occurring(&stored, &contracts).len(),
        2,
        "the encoder JSON was not scanned"
    );
    assert_eq!(occurring(&stored, &customer_ids), BTreeSet::new());

    // Kept on request: the column's most frequent values become categories,
    // and the same scan finds them.
    let allowed = pb::TrainSpec {
        allow_identifier_columns: true,
        ..quick_telco("churn-with-ids")
    };
    let version = test.client.train(allowed, telco).await.unwrap();
    assert_eq!(version.version, 1);
    let stored = registry_bytes(&test.database_path()).await;
    assert_eq!(occurring(&stored, &customer_ids).len(), MAX_CATEGORIES);
}

// ------------------------------------------------------------------- logs --

/// Log output of this test binary: the server's JSON format at debug level
/// for every crate, as `serval-server --log-format json` with
/// `RUST_LOG=debug` writes it.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(move || LogSink(sink.clone()))
            .try_init()
            .expect("the only subscriber of this test binary");
        logs
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PLANS: [&str; 3] = ["zebra-7731", "okapi-5519", "quokka-2287"];
const REGIONS: [&str; 2] = ["fjord-4410", "steppe-9083"];
/// Values sent only at Predict: an unseen category, an unseen number, and
/// the bad cell of a refused record.
const UNSEEN_PLAN: &str = "narwhal-6642";
const UNSEEN_AMOUNT: f64 = 61234.57;
const BAD_AMOUNT: &str = "walrus-3318";
const ROUTING_KEYS: [&str; 4] = ["user-99817263", "user-55120984", "user-31415926", "user-27182818"];

/// Amounts of the marker CSV: every one a distinctive `ddddd.dd` string.
fn amounts() -> Vec<String> {
    (0..120)
        .map(|i| format!("{:.2}", 48213.77 + f64::from(i) * 3.31))
        .collect()
}

/// A CSV whose categories repeat (so they are not identifiers) and whose
/// every value is a marker no log line could contain by chance.
fn marker_csv() -> Vec<u8> {
    let mut csv = String::from("plan,region,amount,member,label\n");
    for (i, amount) in amounts().iter().enumerate() {
        let label = u8::from((i % 3 == 0) ^ (i >= 60));
        let member = if i % 4 == 0 { "yes" } else { "no" };
        csv.push_str(&format!(
            "{},{},{amount},{member},{label}\n",
            PLANS[i % 3],
            REGIONS[i % 2]
        ));
    }
    csv.into_bytes()
}

/// Every raw value that must never reach a log line or a metric.
fn markers() -> Vec<String> {
    let mut markers: Vec<String> = PLANS.iter().chain(&REGIONS).map(|s| s.to_string()).collect();
    markers.extend(amounts());
    markers.extend([
        UNSEEN_PLAN.to_string(),
        format!("{UNSEEN_AMOUNT}"),
        BAD_AMOUNT.to_string(),
    ]);
    markers.extend(ROUTING_KEYS.iter().map(|s| s.to_string()));
    markers
}

fn record(plan: &str, region: &str, amount: pb::Value) -> pb::Record {
    pb::Record {
        fields: [
            ("plan".to_string(), text(plan)),
            ("region".to_string(), text(region)),
            ("amount".to_string(), amount),
            ("member".to_string(), boolean(true)),
        ]
        .into_iter()
        .collect(),
    }
}

fn keyed(key: &str, records: Vec<pb::Record>) -> pb::PredictRequest {
    pb::PredictRequest {
        model: "privacy".into(),
        records,
        routing_key: key.to_string(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_session_leaves_no_feature_value_or_routing_key_in_logs_or_metrics() {
    let logs = captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut test =
        TestServer::start_in(dir, |c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let client = &mut test.client;
    let quick = pb::TrainSpec {
        hyper_parameters: Some(pb::HyperParameters {
            epochs: Some(3),
            hidden_layers: vec![8],
            ..Default::default()
        }),
        ..spec("privacy", "label", "1")
    };
    client.train(quick.clone(), marker_csv()).await.unwrap();
    let second = pb::TrainSpec {
        seed: Some(7),
        ..quick
    };
    client.train(second, marker_csv()).await.unwrap();
    client
        .set_alias("privacy", "prod", 1, "first release")
        .await
        .unwrap();
    let canary = pb::update_traffic_request::Change::Canary(pb::CanaryChange {
        version: 2,
        percent: 50.0,
    });
    client.update_traffic("privacy", canary, "try v2").await.unwrap();

    let amounts = amounts();
    for (k, key) in ROUTING_KEYS.iter().take(3).enumerate() {
        let records = (0..5)
            .map(|i| {
                let row = k * 5 + i;
                let amount = number(amounts[row].parse().unwrap());
                record(PLANS[row % 3], REGIONS[row % 2], amount)
            })
            .collect();
        let answer = client.predict(keyed(key, records)).await.unwrap();
        assert_eq!(answer.scores.len(), 5);
    }
    let by_alias = pb::PredictRequest {
        alias: "prod".into(),
        ..keyed(
            ROUTING_KEYS[0],
            vec![record(UNSEEN_PLAN, REGIONS[0], number(UNSEEN_AMOUNT))],
        )
    };
    assert_eq!(client.predict(by_alias).await.unwrap().version, 1);
    let bad = keyed(
        ROUTING_KEYS[3],
        vec![
            record(PLANS[0], REGIONS[1], text(&amounts[7])),
            record(PLANS[1], REGIONS[0], text(BAD_AMOUNT)),
        ],
    );
    let refused = status_of(client.predict(bad).await);
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    // The caller is told the bad value; the logs must not be.
    assert!(refused.message().contains(BAD_AMOUNT), "{refused:?}");
    let promote = pb::update_traffic_request::Change::Promote(pb::PromoteChange {});
    client
        .update_traffic("privacy", promote, "v2 is good")
        .await
        .unwrap();
    let after = client
        .predict(keyed(
            ROUTING_KEYS[1],
            vec![record(PLANS[2], REGIONS[1], text(&amounts[42]))],
        ))
        .await
        .unwrap();
    assert_eq!(after.version, 2);

    let metrics = http_get(test.server.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        metrics.contains("serval_predict_requests_total{code=\"INVALID_ARGUMENT\",model=\"privacy\""),
        "{metrics}"
    );
    test.server.shutdown().await.unwrap();
    let logs = logs.lock().unwrap().clone();

    let markers = markers();
    assert_eq!(
        occurring(metrics.as_bytes(), &markers),
        BTreeSet::new(),
        "in /metrics"
    );
    let leaked = occurring(&logs, &markers);
    assert!(
        leaked.is_empty(),
        "raw values in the logs: {leaked:?}\n{}",
        String::from_utf8_lossy(&logs)
    );
    // Routing keys are logged, hashed with this process's key.
    let text = String::from_utf8_lossy(&logs);
    for key in ROUTING_KEYS {
        let field = format!("\"routing_key_hash\":\"{}\"", routing_key_hash(key));
        assert!(text.contains(&field), "no {field} for {key} in the logs");
    }
}
