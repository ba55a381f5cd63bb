//! Server-side training sources: a glob over Parquet parts in an
//! S3-compatible store on loopback (the `s3s-fs` server) and in local
//! files trains on exactly the matching objects, in path order, with their
//! lineage stored; a source outside the operator's prefixes is refused
//! before anything is read, and a corrupt object registers nothing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use serval_client::{ServalClient, proto as pb};
use tonic::Code;

use crate::common::*;
use crate::process::spawn_with_env;

/// Rows `range` of the small dataset as one Parquet file, typed as Spark
/// would write them: integers, doubles and strings.
fn small_parquet(range: std::ops::Range<usize>) -> Vec<u8> {
    let rows: Vec<(i64, f64, &str, &str, i64)> = range
        .map(|i| {
            let x = (i * 37 % 200) as f64 / 10.0;
            let colour = ["red", "green", "blue"][i % 3];
            let member = if i % 4 == 0 { "yes" } else { "no" };
            (i as i64, x, colour, member, i64::from(x > 10.0))
        })
        .collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        ),
        (
            "x",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ),
        (
            "colour",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
        ),
        (
            "member",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3))),
        ),
        (
            "label",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}

/// Writes a day-partitioned export under `root/clicks/`: rows 0..200 in
/// three parts for 2026-11-01..03 (with Spark's `_SUCCESS` markers), and a
/// corrupt part for 2026-10-31 that no glob of November may touch.
fn write_partitions(root: &Path) {
    for (day, range) in [("01", 0..70), ("02", 70..140), ("03", 140..200)] {
        let folder = root.join(format!("clicks/date=2026-11-{day}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("part-00000.parquet"), small_parquet(range)).unwrap();
        std::fs::write(folder.join("_SUCCESS"), "").unwrap();
    }
    let october = root.join("clicks/date=2026-10-31");
    std::fs::create_dir_all(&october).unwrap();
    let mut corrupt = small_parquet(0..50);
    let middle = corrupt.len() / 2;
    corrupt[middle..].fill(0xAB);
    std::fs::write(october.join("part-00000.parquet"), corrupt).unwrap();
    let secret = root.join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("part-00000.parquet"), small_parquet(0..200)).unwrap();
}

fn source_spec(model: &str, source: &str) -> pb::TrainSpec {
    pb::TrainSpec {
        source: source.to_string(),
        format: pb::DataFormat::Parquet as i32,
        ..small_spec(model)
    }
}

/// Scores of a few rows from `model`'s latest version.
async fn scores(client: &mut ServalClient, model: &str) -> Vec<f32> {
    let records = (0..6)
        .map(|i| {
            small_record(
                f64::from(i) * 3.5,
                ["red", "green", "blue"][i as usize % 3],
                i % 2 == 0,
            )
        })
        .collect();
    client
        .predict(pb::PredictRequest {
            model: model.into(),
            records,
            ..Default::default()
        })
        .await
        .unwrap()
        .scores
}

async fn model_names(client: &mut ServalClient) -> Vec<String> {
    client
        .list_models(None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect()
}

/// The same rows as one uploaded Parquet file, for comparison.
async fn train_uploaded(client: &mut ServalClient, model: &str) -> pb::ModelVersion {
    let spec = pb::TrainSpec {
        format: pb::DataFormat::Parquet as i32,
        ..small_spec(model)
    };
    client.train(spec, small_parquet(0..200)).await.unwrap()
}

#[tokio::test]
async fn a_local_glob_trains_on_the_matching_parts_in_path_order() {
    let data = tempfile::tempdir().unwrap();
    write_partitions(data.path());
    let allowed = format!("file://{}/clicks/", data.path().display());
    let mut t = TestServer::start_in(tempfile::tempdir().unwrap(), |c| {
        c.data_source_allow = vec![allowed.clone()];
    })
    .await;

    let asked = format!("{allowed}date=2026-11-*/*.parquet");
    let version = t
        .client
        .train(source_spec("clicks", &asked), Vec::new())
        .await
        .unwrap();
    let dataset = version.dataset.unwrap();
    assert_eq!((dataset.rows, dataset.source.as_str()), (200, asked.as_str()));
    let paths: Vec<&str> = dataset.objects.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(
        paths,
        ["01", "02", "03"].map(|day| format!("{allowed}date=2026-11-{day}/part-00000.parquet"))
    );
    for object in &dataset.objects {
        let local = object.path.strip_prefix("file://").unwrap();
        assert_eq!(object.size, std::fs::metadata(local).unwrap().len());
    }

    // The same rows uploaded as one file train the same model.
    train_uploaded(&mut t.client, "uploaded").await;
    assert_eq!(
        scores(&mut t.client, "clicks").await,
        scores(&mut t.client, "uploaded").await
    );

    // A local path outside the allowed prefix, a pattern that could reach
    // outside it, and a file the server could read are all refused.
    for refused in [
        format!("file://{}/secret/*.parquet", data.path().display()),
        format!("file://{}/cl*/date=2026-11-01/*.parquet", data.path().display()),
        "file:///etc/passwd".to_string(),
    ] {
        let status = status_of(t.client.train(source_spec("refused", &refused), Vec::new()).await);
        assert_eq!(status.code(), Code::PermissionDenied, "{refused}: {status:?}");
        assert!(status.message().contains("outside the prefixes"), "{status:?}");
    }

    // A corrupt object names itself and registers nothing.
    let corrupt = format!("{allowed}date=2026-10-31/*.parquet");
    let status = status_of(t.client.train(source_spec("corrupt", &corrupt), Vec::new()).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("date=2026-10-31/part-00000.parquet")
            && status.message().contains("cannot be read"),
        "{status:?}"
    );
    // A source and an upload at once, and a glob that matches nothing.
    let both = status_of(
        t.client
            .train(source_spec("both", &asked), small_parquet(0..10))
            .await,
    );
    assert_eq!(both.code(), Code::InvalidArgument, "{both:?}");
    let nothing = format!("{allowed}date=2025-*/*.parquet");
    let status = status_of(t.client.train(source_spec("nothing", &nothing), Vec::new()).await);
    assert!(status.message().contains("no object matches"), "{status:?}");
    assert_eq!(model_names(&mut t.client).await, ["clicks", "uploaded"]);
}

#[tokio::test]
async fn a_source_is_bounded_by_max_source_bytes_not_by_the_upload_limit() {
    let data = tempfile::tempdir().unwrap();
    write_partitions(data.path());
    let allowed = format!("file://{}/clicks/", data.path().display());
    let asked = format!("{allowed}date=2026-11-*/*.parquet");
    let held: u64 = ["01", "02", "03"]
        .iter()
        .map(|day| {
            let path = data
                .path()
                .join(format!("clicks/date=2026-11-{day}/part-00000.parquet"));
            std::fs::metadata(path).unwrap().len()
        })
        .sum();

    // Uploads are held to 1 KiB; the source, several times that, trains.
    let mut t = TestServer::start_in(tempfile::tempdir().unwrap(), |c| {
        c.data_source_allow = vec![allowed.clone()];
        c.max_training_bytes = 1024;
    })
    .await;
    assert!(held > 1024, "the parts hold {held} bytes");
    let version = t
        .client
        .train(source_spec("clicks", &asked), Vec::new())
        .await
        .unwrap();
    assert_eq!(version.dataset.unwrap().rows, 200);

    // With a bound below what the parts hold, the source is refused by
    // name and nothing is registered.
    let mut t = TestServer::start_in(tempfile::tempdir().unwrap(), |c| {
        c.data_source_allow = vec![allowed.clone()];
        c.max_source_bytes = Some(held - 1);
    })
    .await;
    let status = status_of(t.client.train(source_spec("clicks", &asked), Vec::new()).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(&format!(
            "3 objects hold {held} bytes, more than the server's limit of {}",
            held - 1
        )) && status.message().contains("--max-source-bytes"),
        "{status:?}"
    );
    assert!(model_names(&mut t.client).await.is_empty());
}

#[tokio::test]
async fn a_server_without_allowed_prefixes_reads_no_source() {
    let mut t = TestServer::start().await;
    let status = status_of(
        t.client
            .train(source_spec("clicks", "s3://bucket/clicks/*.parquet"), Vec::new())
            .await,
    );
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("--data-source-allow"), "{status:?}");
    assert!(model_names(&mut t.client).await.is_empty());
}

/// An `s3s-fs` server (an S3-compatible server over a directory, whose
/// top-level folders are buckets) on a free loopback port, killed on drop.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
    log: PathBuf,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ACCESS_KEY: &str = "serval-test-access";
const SECRET_KEY: &str = "serval-test-secret";

/// The `s3s-fs` binary: on `PATH` or in Cargo's bin folder. Without it the
/// S3 test is skipped with a line saying how to install it, unless
/// `SERVAL_REQUIRE_S3=1` (set by CI) makes that a failure.
fn s3s_fs_binary() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(cargo_home.map(|h| h.join("bin")))
        .map(|dir| dir.join("s3s-fs"))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        let why = "s3s-fs is not installed (cargo install s3s-fs@0.14.1 --locked --features binary)";
        if std::env::var("SERVAL_REQUIRE_S3").is_ok_and(|v| v == "1") {
            panic!("SERVAL_REQUIRE_S3=1 but {why}");
        }
        eprintln!("skipping the S3 source test: {why}");
    }
    found
}

fn start_s3(binary: &Path, root: &Path, log: PathBuf) -> S3Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root)
        // Every request, with its path, in the log.
        .env("RUST_LOG", "s3s=debug")
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "s3s-fs did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        log,
    }
}

#[tokio::test]
async fn an_s3_glob_reads_the_matching_parts_and_nothing_outside_the_prefix() {
    let Some(binary) = s3s_fs_binary() else { return };
    let store = tempfile::tempdir().unwrap();
    write_partitions(&store.path().join("lake"));
    let scratch = tempfile::tempdir().unwrap();
    let s3 = start_s3(&binary, store.path(), scratch.path().join("s3.log"));
    // Credentials and endpoint as the AWS tools read them, in the server's
    // environment only.
    let env = [
        ("AWS_ENDPOINT", s3.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
        ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
    ];
    let server = spawn_with_env(
        scratch.path(),
        &["--data-source-allow", "s3://lake/clicks/"],
        &env,
    )
    .await;
    let mut client = ServalClient::connect(&server.url).await.unwrap();

    let asked = "s3://lake/clicks/date=2026-11-*/*.parquet";
    let version = client
        .train(source_spec("clicks", asked), Vec::new())
        .await
        .unwrap();
    let dataset = version.dataset.unwrap();
    assert_eq!((dataset.rows, dataset.source.as_str()), (200, asked));
    let paths: Vec<&str> = dataset.objects.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(
        paths,
        ["01", "02", "03"].map(|day| format!("s3://lake/clicks/date=2026-11-{day}/part-00000.parquet"))
    );
    for object in &dataset.objects {
        assert!(!object.e_tag.is_empty(), "{object:?}");
        let local = store.path().join(object.path.strip_prefix("s3://").unwrap());
        assert_eq!(object.size, std::fs::metadata(local).unwrap().len());
    }
    train_uploaded(&mut client, "uploaded").await;
    assert_eq!(
        scores(&mut client, "clicks").await,
        scores(&mut client, "uploaded").await
    );

    // Outside the prefix: refused, and the store sees no request for it.
    let log = std::fs::read_to_string(&s3.log).unwrap();
    assert!(
        log.contains("date=2026-11-01"),
        "the store logs the objects asked for: {log}"
    );
    let requests_before = log.len();
    for refused in [
        "s3://lake/secret/*.parquet",
        "s3://lake/secret/part-00000.parquet",
        "s3://other/clicks/x.parquet",
    ] {
        let status = status_of(client.train(source_spec("refused", refused), Vec::new()).await);
        assert_eq!(status.code(), Code::PermissionDenied, "{refused}: {status:?}");
    }
    let log = std::fs::read_to_string(&s3.log).unwrap();
    assert!(
        !log[requests_before..].contains("secret"),
        "the store was asked: {log}"
    );

    let corrupt = "s3://lake/clicks/date=2026-10-31/part-00000.parquet";
    let status = status_of(client.train(source_spec("corrupt", corrupt), Vec::new()).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(corrupt), "{status:?}");
    assert_eq!(model_names(&mut client).await, ["clicks", "uploaded"]);
}

#[tokio::test]
async fn a_malformed_allowed_prefix_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (prefix, why) in [
        ("ftp://host/data/", "is not one of s3://"),
        ("s3://lake/clicks/*/", "holds no glob pattern"),
        ("lake/clicks", "not a URL"),
    ] {
        let mut config =
            serval_server::ServerConfig::for_database(dir.path().join("serval.db").to_string_lossy());
        config.data_source_allow = vec![prefix.to_string()];
        let error = match serval_server::Server::start(&config).await {
            Ok(_) => panic!("{prefix} was accepted"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains("--data-source-allow") && error.contains(why),
            "{prefix}: {error}"
        );
    }
}
