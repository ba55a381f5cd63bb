//! Training uploads from a reader: a read error part-way through the CSV
//! fails the call, and the server trains and registers nothing.

use std::pin::Pin;
use std::task::{Context, Poll};

use serval_client::proto as pb;
use serval_client::{ClientError, ServalClient};
use tokio::io::{AsyncRead, ReadBuf};

use crate::common::*;

/// Yields `data` a few kilobytes at a time, then fails.
struct FailsPartWay {
    data: Vec<u8>,
    at: usize,
}

impl AsyncRead for FailsPartWay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at == self.data.len() {
            return Poll::Ready(Err(std::io::Error::other("the disk went away")));
        }
        let end = (self.at + 4096)
            .min(self.data.len())
            .min(self.at + buf.remaining());
        buf.put_slice(&self.data[self.at..end]);
        self.at = end;
        Poll::Ready(Ok(()))
    }
}

fn spec(model: &str) -> pb::TrainSpec {
    pb::TrainSpec {
        model: model.into(),
        label_column: "Revenue".into(),
        positive_label: "TRUE".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_read_error_mid_file_fails_the_upload_and_registers_nothing() {
    let fx = Fixture::start().await;
    let mut client = ServalClient::connect(&fx.server.url()).await.unwrap();
    let csv = std::fs::read(example("online_shoppers_intention.csv")).unwrap();
    // Whole lines of a valid CSV: were the upload ended here, the server
    // would train on them.
    let cut = csv[..20_000].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let reader = FailsPartWay {
        data: csv[..cut].to_vec(),
        at: 0,
    };

    let error = client
        .train_from_reader(spec("truncated"), reader, |_| {})
        .await
        .expect_err("a failed read fails the call");
    match &error {
        ClientError::UploadRead { bytes_sent, source } => {
            assert_eq!(*bytes_sent, cut as u64);
            assert!(source.to_string().contains("the disk went away"));
        }
        other => panic!("expected an upload read error, got {other:?}"),
    }
    assert!(error.to_string().contains("nothing was trained"), "{error}");

    // The same connection then trains a whole file; by the time it has,
    // a truncated upload would have trained too.
    let whole = client
        .train_from_reader(spec("whole"), std::io::Cursor::new(csv), |_| {})
        .await
        .unwrap();
    let mut events = whole;
    let mut registered = None;
    while let Some(event) = events.message().await.unwrap() {
        if let Some(pb::train_event::Event::Completed(version)) = event.event {
            registered = Some(version);
        }
    }
    assert_eq!(
        registered.expect("the whole file trains").dataset.unwrap().rows,
        12_330
    );
    let models = client.list_models(None).await.unwrap();
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["whole"], "only the complete upload registered a model");
    let jobs = client.list_jobs(None, 100).await.unwrap();
    assert!(jobs.iter().all(|job| job.model != "truncated"), "{jobs:?}");
}
