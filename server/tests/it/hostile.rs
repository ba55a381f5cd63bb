//! Hostile and malformed inputs across every RPC, run against one real
//! server: each is refused with the exact status code and a message that
//! names the problem (field, column, line or limit), and afterwards the
//! server still answers with exactly the scores it gave before and the
//! registry holds what it held before.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::common::*;
use prost::Message as _;
use serval_client::{ClientError, ServalClient, proto as pb};
use tonic::{Code, Status};

use pb::update_traffic_request::Change;

/// Longest a single case may take; the slowest real case takes well under a
/// second.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest acceptable status message: a hostile 10 KB name must not be
/// echoed back whole.
const MAX_MESSAGE_BYTES: usize = 1024;

/// The server's default `--max-predict-rows` and `--max-message-bytes`.
const MAX_PREDICT_ROWS: usize = 4096;
const MAX_MESSAGE_SIZE: usize = 16 << 20;

// ------------------------------------------------------------------- cases --

/// What a call answered, when it was accepted.
enum Reply {
    Scores(Vec<f32>),
    Done,
}

type Call = Pin<Box<dyn Future<Output = Result<Reply, Status>> + Send>>;

enum Expect {
    /// Refused with this code; the message contains the needle.
    Refused { code: Code, needle: String },
    /// Answered with `rows` finite probabilities, equal to `equal_to` when
    /// given.
    Scores { rows: usize, equal_to: Option<Vec<f32>> },
    /// Answered (a call whose inputs are odd but legitimate).
    Answered,
}

struct Case {
    name: String,
    expect: Expect,
    call: Call,
}

impl Case {
    fn refused(name: impl Into<String>, code: Code, needle: impl Into<String>, call: Call) -> Self {
        Case {
            name: name.into(),
            expect: Expect::Refused {
                code,
                needle: needle.into(),
            },
            call,
        }
    }

    fn scores(name: impl Into<String>, rows: usize, equal_to: Option<Vec<f32>>, call: Call) -> Self {
        Case {
            name: name.into(),
            expect: Expect::Scores { rows, equal_to },
            call,
        }
    }

    fn answered(name: impl Into<String>, call: Call) -> Self {
        Case {
            name: name.into(),
            expect: Expect::Answered,
            call,
        }
    }
}

/// A message excerpt for reports: quoted and escaped, at most 120
/// characters of the original.
fn excerpt(message: &str) -> String {
    if message.chars().count() > 120 {
        let head: String = message.chars().take(120).collect();
        format!("{head:?}… ({} bytes)", message.len())
    } else {
        format!("{message:?}")
    }
}

/// Characters a status message must not carry raw: controls (a name with a
/// newline must not forge log lines) and bidirectional overrides.
fn unsafe_char(c: char) -> bool {
    c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Checks a case's outcome against its expectation: `Err` says how it
/// differs.
fn judge(expect: &Expect, outcome: &Result<Reply, Status>) -> Result<(), String> {
    match (expect, outcome) {
        (Expect::Refused { code, needle }, Err(status)) => {
            let message = status.message();
            let mut problems = Vec::new();
            if status.code() != *code {
                problems.push(format!("code {:?}, expected {code:?}", status.code()));
            }
            if !message.contains(needle.as_str()) {
                problems.push(format!("message does not contain {}", excerpt(needle)));
            }
            if message.len() > MAX_MESSAGE_BYTES {
                problems.push(format!(
                    "message is {} bytes, over {MAX_MESSAGE_BYTES}",
                    message.len()
                ));
            }
            if message.chars().any(unsafe_char) {
                problems.push("message carries raw control or bidi characters".to_string());
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(format!("{}; message: {}", problems.join("; "), excerpt(message)))
            }
        }
        (Expect::Refused { code, .. }, Ok(_)) => Err(format!("answered, expected {code:?}")),
        (Expect::Scores { rows, equal_to }, Ok(Reply::Scores(scores))) => {
            if scores.len() != *rows {
                return Err(format!("{} scores, expected {rows}", scores.len()));
            }
            if let Some(bad) = scores.iter().find(|s| !(0.0..=1.0).contains(*s)) {
                return Err(format!("score {bad} is not a probability"));
            }
            match equal_to {
                Some(expected) if expected != scores => {
                    Err(format!("scores {scores:?}, expected {expected:?}"))
                }
                _ => Ok(()),
            }
        }
        (Expect::Scores { .. }, Ok(Reply::Done)) => Err("answered without scores".to_string()),
        (Expect::Answered, Ok(_)) => Ok(()),
        (_, Err(status)) => Err(format!(
            "refused with {:?}: {}, expected an answer",
            status.code(),
            excerpt(status.message())
        )),
    }
}

fn as_status(error: ClientError) -> Status {
    match error {
        ClientError::Status(status) => status,
        other => Status::unknown(format!("client error: {other}")),
    }
}

// ------------------------------------------------------------------- calls --

/// Builds each RPC as a [`Call`] on its own clone of the client.
struct Calls {
    client: ServalClient,
}

impl Calls {
    fn predict(&self, request: pb::PredictRequest) -> Call {
        let mut client = self.client.clone();
        Box::pin(async move {
            let response = client.predict(request).await.map_err(as_status)?;
            Ok(Reply::Scores(response.scores))
        })
    }

    fn train(&self, spec: pb::TrainSpec, csv: Vec<u8>) -> Call {
        let mut client = self.client.clone();
        Box::pin(async move {
            client.train(spec, csv).await.map_err(as_status)?;
            Ok(Reply::Done)
        })
    }

    /// A Train call made of exactly these messages, read to its end.
    fn train_messages(&self, messages: Vec<pb::TrainRequest>) -> Call {
        let mut client = self.client.clone();
        Box::pin(async move {
            let mut events = client
                .raw()
                .train(futures::stream::iter(messages))
                .await?
                .into_inner();
            while events.message().await?.is_some() {}
            Ok(Reply::Done)
        })
    }

    fn list_models(&self, model: &str) -> Call {
        let mut client = self.client.clone();
        let model = model.to_string();
        Box::pin(async move {
            client.list_models(Some(&model)).await.map_err(as_status)?;
            Ok(Reply::Done)
        })
    }

    fn set_alias(&self, model: &str, alias: &str, version: u32) -> Call {
        let mut client = self.client.clone();
        let (model, alias) = (model.to_string(), alias.to_string());
        Box::pin(async move {
            client
                .set_alias(&model, &alias, version, "hostile")
                .await
                .map_err(as_status)?;
            Ok(Reply::Done)
        })
    }

    fn delete_alias(&self, model: &str, alias: &str) -> Call {
        let mut client = self.client.clone();
        let (model, alias) = (model.to_string(), alias.to_string());
        Box::pin(async move {
            client
                .delete_alias(&model, &alias, "hostile")
                .await
                .map_err(as_status)?;
            Ok(Reply::Done)
        })
    }

    fn update_traffic(&self, model: &str, change: Option<Change>, expected_revision: Option<u64>) -> Call {
        let mut client = self.client.clone();
        let request = pb::UpdateTrafficRequest {
            model: model.to_string(),
            change,
            reason: "hostile".into(),
            expected_revision,
        };
        Box::pin(async move {
            client.raw().update_traffic(request).await?;
            Ok(Reply::Done)
        })
    }

    fn rollout_state(&self, model: &str) -> Call {
        let mut client = self.client.clone();
        let model = model.to_string();
        Box::pin(async move {
            client.rollout_state(&model).await.map_err(as_status)?;
            Ok(Reply::Done)
        })
    }

    fn rollout_history(&self, model: &str, at: Option<prost_types::Timestamp>) -> Call {
        let mut client = self.client.clone();
        let model = model.to_string();
        Box::pin(async move {
            client.rollout_history(&model, at).await.map_err(as_status)?;
            Ok(Reply::Done)
        })
    }

    fn report_outcomes(&self, outcomes: Vec<pb::OutcomeReport>) -> Call {
        let mut client = self.client.clone();
        Box::pin(async move {
            client.report_outcomes(outcomes).await.map_err(as_status)?;
            Ok(Reply::Done)
        })
    }

    fn live_stats(&self, model: &str, window_seconds: u32) -> Call {
        let mut client = self.client.clone();
        let model = model.to_string();
        Box::pin(async move {
            client
                .live_stats(&model, window_seconds)
                .await
                .map_err(as_status)?;
            Ok(Reply::Done)
        })
    }

    /// Accepted when the server opens the change stream.
    fn watch_models(&self, model: &str) -> Call {
        let mut client = self.client.clone();
        let model = model.to_string();
        Box::pin(async move {
            client.watch(Some(&model), 0).await.map_err(as_status)?;
            Ok(Reply::Done)
        })
    }

    fn list_jobs(&self, model: &str, limit: u32) -> Call {
        let mut client = self.client.clone();
        let request = pb::ListJobsRequest {
            model: model.to_string(),
            limit,
        };
        Box::pin(async move {
            client.raw().list_jobs(request).await?;
            Ok(Reply::Done)
        })
    }

    fn watch_job(&self, job_id: &str) -> Call {
        let mut client = self.client.clone();
        let request = pb::WatchJobRequest {
            job_id: job_id.to_string(),
        };
        Box::pin(async move {
            let mut events = client.raw().watch_job(request).await?.into_inner();
            while events.message().await?.is_some() {}
            Ok(Reply::Done)
        })
    }

    fn cancel_job(&self, job_id: &str) -> Call {
        let mut client = self.client.clone();
        let request = pb::CancelJobRequest {
            job_id: job_id.to_string(),
        };
        Box::pin(async move {
            client.raw().cancel_job(request).await?;
            Ok(Reply::Done)
        })
    }

    fn version_report(&self, model: &str, version: Option<u32>) -> Call {
        let mut client = self.client.clone();
        let model = model.to_string();
        Box::pin(async move {
            client.version_report(&model, version).await.map_err(as_status)?;
            Ok(Reply::Done)
        })
    }
}

// ---------------------------------------------------------------- requests --

/// Names no model may have, by what makes them absurd.
fn absurd_names() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("path traversal", "../x".into()),
        ("path separator", "a/b".into()),
        ("SQL fragment", "x'; DROP TABLE models;--".into()),
        ("10 KB", "m".repeat(10 * 1024)),
        ("NUL", "a\u{0}b".into()),
        ("RTL override", "\u{202e}llams".into()),
        ("newline", "small\nx".into()),
        ("leading space", " small".into()),
    ]
}

fn absurd(label: &str) -> String {
    absurd_names()
        .into_iter()
        .find(|(l, _)| *l == label)
        .map(|(_, name)| name)
        .unwrap_or_else(|| panic!("no absurd name {label:?}"))
}

/// Records the baseline model is probed with before and after the cases.
fn probe_records() -> Vec<pb::Record> {
    vec![
        small_record(19.0, "red", true),
        small_record(1.0, "purple", false),
        small_record(10.5, "blue", false),
    ]
}

/// `probe_records()` as columns.
fn probe_columns() -> pb::PredictRequest {
    pb::PredictRequest {
        model: "small".into(),
        columns: vec![
            numbers_column("x", &[19.0, 1.0, 10.5]),
            strings_column("colour", &["red", "purple", "blue"]),
            bools_column("member", &[true, false, false]),
        ],
        ..Default::default()
    }
}

fn numbers_column(name: &str, values: &[f64]) -> pb::Column {
    pb::Column {
        name: name.into(),
        numbers: values.to_vec(),
        ..Default::default()
    }
}

fn strings_column(name: &str, values: &[&str]) -> pb::Column {
    pb::Column {
        name: name.into(),
        strings: values.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

fn bools_column(name: &str, values: &[bool]) -> pb::Column {
    pb::Column {
        name: name.into(),
        bools: values.to_vec(),
        ..Default::default()
    }
}

fn records(model: &str, records: Vec<pb::Record>) -> pb::PredictRequest {
    pb::PredictRequest {
        model: model.to_string(),
        records,
        ..Default::default()
    }
}

/// Two good records and `bad` as records[2].
fn third_record_is(bad: pb::Record) -> pb::PredictRequest {
    records(
        "small",
        vec![
            small_record(3.0, "red", true),
            small_record(15.0, "green", false),
            bad,
        ],
    )
}

fn with_field(name: &str, value: pb::Value) -> pb::Record {
    let mut record = small_record(12.0, "green", true);
    record.fields.insert(name.to_string(), value);
    record
}

fn without_field(name: &str) -> pb::Record {
    let mut record = small_record(12.0, "green", true);
    record.fields.remove(name);
    record
}

fn dense(rows: Vec<Vec<f32>>) -> pb::PredictRequest {
    pb::PredictRequest {
        model: "small".into(),
        dense_rows: rows.into_iter().map(|values| pb::DenseRow { values }).collect(),
        ..Default::default()
    }
}

/// One change to a spec, or to its hyper-parameters.
type SpecEdit = fn(&mut pb::TrainSpec);
type HyperEdit = fn(&mut pb::HyperParameters);

/// `small_spec("small")` with its hyper-parameters changed by `change`.
fn hyper(change: HyperEdit) -> pb::TrainSpec {
    let mut spec = small_spec("small");
    change(spec.hyper_parameters.get_or_insert_with(Default::default));
    spec
}

/// The small CSV as text, to edit.
fn small_text() -> String {
    String::from_utf8(small_csv()).expect("UTF-8")
}

/// The small CSV with line `line` (1-based, the header is line 1) replaced.
fn replace_line(line: usize, with: &str) -> Vec<u8> {
    let mut lines: Vec<String> = small_text().lines().map(str::to_string).collect();
    lines[line - 1] = with.to_string();
    (lines.join("\n") + "\n").into_bytes()
}

/// The small CSV with the label of data row `i` (0-based) set by `label`.
fn csv_with_labels(label: impl Fn(usize) -> &'static str) -> Vec<u8> {
    let text = small_text();
    let mut lines = text.lines();
    let mut csv = format!("{}\n", lines.next().expect("a header"));
    for (i, line) in lines.enumerate() {
        let (features, _) = line.rsplit_once(',').expect("a label column");
        writeln!(csv, "{features},{}", label(i)).expect("write to a string");
    }
    csv.into_bytes()
}

/// Seeded, reproducible bytes that are not UTF-8 (the first is 0xFF).
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    bytes[0] = 0xff;
    bytes
}

fn spec_message(spec: pb::TrainSpec) -> pb::TrainRequest {
    pb::TrainRequest {
        payload: Some(pb::train_request::Payload::Spec(spec)),
    }
}

fn chunk_message(chunk: Vec<u8>) -> pb::TrainRequest {
    pb::TrainRequest {
        payload: Some(pb::train_request::Payload::CsvChunk(chunk)),
    }
}

/// What tonic answers for a request message over the server's limit.
fn too_large(encoded_len: usize) -> String {
    format!(
        "decoded message length too large: found {encoded_len} bytes, the limit is: {MAX_MESSAGE_SIZE} bytes"
    )
}

fn canary(version: u32, percent: f64) -> Option<Change> {
    Some(Change::Canary(pb::CanaryChange { version, percent }))
}

fn rollback(to_version: Option<u32>) -> Option<Change> {
    Some(Change::Rollback(pb::RollbackChange { to_version }))
}

fn promote() -> Option<Change> {
    Some(Change::Promote(pb::PromoteChange {}))
}

/// A name no model can have, looked up: refused as Train refuses it.
fn absurd_name_lookup(rpc: &str, label: &str, call: Call) -> Case {
    Case::refused(
        format!("{rpc}: model name {label}"),
        Code::InvalidArgument,
        "invalid model name",
        call,
    )
}

// ------------------------------------------------------------------- table --
/// Every hostile case, RPC by RPC. `width` is the baseline's input width,
/// `probe` its scores for `probe_records()`.
fn hostile_cases(calls: &Calls, width: usize, probe: &[f32]) -> Vec<Case> {
    let mut cases = predict_cases(calls, width, probe);
    cases.extend(train_spec_cases(calls));
    cases.extend(train_upload_cases(calls));
    cases.extend(registry_read_cases(calls));
    cases.extend(rollout_change_cases(calls));
    cases.extend(job_cases(calls));
    cases.extend(outcome_cases(calls));
    cases
}

/// Predict: names, versions, aliases, record values, row counts and dense rows.
fn predict_cases(calls: &Calls, width: usize, probe: &[f32]) -> Vec<Case> {
    let mut cases = Vec::new();
    let invalid = Code::InvalidArgument;
    let not_found = Code::NotFound;

    // Predict: names, versions and aliases.
    cases.push(Case::refused(
        "Predict: empty model",
        invalid,
        "model: invalid model name \"\": must not be empty",
        calls.predict(records("", probe_records())),
    ));
    for label in ["path traversal", "10 KB", "NUL", "RTL override"] {
        let mut request = records(&absurd(label), probe_records());
        request.version = Some(1);
        cases.push(absurd_name_lookup(
            "Predict",
            &format!("{label}, version 1"),
            calls.predict(request),
        ));
    }
    cases.push(Case::refused(
        "Predict: unknown model",
        not_found,
        "model \"ghost\" not found",
        calls.predict(records("ghost", probe_records())),
    ));
    for version in [0, 9, u32::MAX] {
        cases.push(Case::refused(
            format!("Predict: unknown version {version}"),
            not_found,
            format!("has no version {version}"),
            calls.predict(pb::PredictRequest {
                version: Some(version),
                ..records("small", probe_records())
            }),
        ));
    }
    cases.push(Case::refused(
        "Predict: unknown alias",
        not_found,
        "has no alias \"production\"",
        calls.predict(pb::PredictRequest {
            alias: "production".into(),
            ..records("small", probe_records())
        }),
    ));
    cases.push(Case::refused(
        "Predict: alias name path traversal",
        invalid,
        "invalid alias name",
        calls.predict(pb::PredictRequest {
            alias: "../production".into(),
            ..records("small", probe_records())
        }),
    ));
    cases.push(Case::refused(
        "Predict: version and an unknown alias both set",
        invalid,
        "alias",
        calls.predict(pb::PredictRequest {
            version: Some(1),
            alias: "nope".into(),
            ..records("small", probe_records())
        }),
    ));
    cases.push(Case::scores(
        "Predict: 64 KB routing key with controls is only hashed",
        3,
        Some(probe.to_vec()),
        calls.predict(pb::PredictRequest {
            routing_key: "k\u{0}\n\u{202e}".repeat(16 * 1024),
            ..records("small", probe_records())
        }),
    ));

    // Predict: record values.
    for (label, x) in [
        ("NaN", f64::NAN),
        ("inf", f64::INFINITY),
        ("-inf", f64::NEG_INFINITY),
    ] {
        cases.push(Case::refused(
            format!("Predict: numeric column {label}"),
            invalid,
            format!("records[2]: column \"x\": {label} is not a finite number"),
            calls.predict(third_record_is(with_field("x", number(x)))),
        ));
    }
    cases.push(Case::refused(
        "Predict: categorical column NaN",
        invalid,
        "records[2]: column \"colour\": NaN is not a finite number",
        calls.predict(third_record_is(with_field("colour", number(f64::NAN)))),
    ));
    cases.push(Case::refused(
        "Predict: boolean column inf",
        invalid,
        "records[2]: column \"member\": expected a boolean (or 1/0), got inf",
        calls.predict(third_record_is(with_field("member", number(f64::INFINITY)))),
    ));
    cases.push(Case::refused(
        "Predict: boolean column 2",
        invalid,
        "records[2]: column \"member\": expected a boolean (or 1/0), got 2",
        calls.predict(third_record_is(with_field("member", number(2.0)))),
    ));
    for x in [1e308, -1e308, f64::MAX, f64::MIN_POSITIVE] {
        cases.push(Case::scores(
            format!("Predict: numeric column {x:e} gives a finite score"),
            1,
            None,
            calls.predict(records("small", vec![with_field("x", number(x))])),
        ));
    }
    cases.push(Case::scores(
        "Predict: numeric text \"1e308\" gives a finite score",
        1,
        None,
        calls.predict(records("small", vec![with_field("x", text("1e308"))])),
    ));
    for spelled in ["1e309", "NaN", "-inf"] {
        cases.push(Case::refused(
            format!("Predict: numeric text {spelled:?}"),
            invalid,
            format!("records[2]: column \"x\": expected a number, got {spelled:?}"),
            calls.predict(third_record_is(with_field("x", text(spelled)))),
        ));
    }
    cases.push(Case::refused(
        "Predict: numeric column 10 KB of text with controls",
        invalid,
        "records[2]: column \"x\": expected a number",
        calls.predict(third_record_is(with_field(
            "x",
            text(&"\u{0}\u{202e}z\n".repeat(2560)),
        ))),
    ));
    cases.push(Case::refused(
        "Predict: numeric column given a bool",
        invalid,
        "records[2]: column \"x\": expected a number, got a bool",
        calls.predict(third_record_is(with_field("x", boolean(true)))),
    ));
    cases.push(Case::refused(
        "Predict: record missing a column",
        invalid,
        "records[2]: missing column \"colour\"",
        calls.predict(third_record_is(without_field("colour"))),
    ));
    cases.push(Case::refused(
        "Predict: empty record",
        invalid,
        "records[2]: missing column \"x\"",
        calls.predict(third_record_is(pb::Record::default())),
    ));
    cases.push(Case::refused(
        "Predict: value with kind None",
        invalid,
        "records[2]: column \"member\" has no value",
        calls.predict(third_record_is(with_field("member", pb::Value { kind: None }))),
    ));
    cases.push(Case::scores(
        "Predict: 100 KB category with controls falls in the other bucket",
        1,
        None,
        calls.predict(records(
            "small",
            vec![with_field("colour", text(&"\u{0}\u{202e}".repeat(50 * 1024)))],
        )),
    ));

    cases.extend(predict_column_cases(calls, probe));

    // Predict: row counts and dense rows.
    cases.push(Case::refused(
        "Predict: no rows",
        invalid,
        "no rows: set records, columns or dense_rows",
        calls.predict(records("small", Vec::new())),
    ));
    cases.push(Case::refused(
        "Predict: records and dense rows both set",
        invalid,
        "set one of records, columns and dense_rows, not several",
        calls.predict(pb::PredictRequest {
            records: probe_records(),
            ..dense(vec![vec![0.0; width]])
        }),
    ));
    cases.push(Case::refused(
        "Predict: records and columns both set",
        invalid,
        "set one of records, columns and dense_rows, not several",
        calls.predict(pb::PredictRequest {
            records: probe_records(),
            ..probe_columns()
        }),
    ));
    cases.push(Case::refused(
        "Predict: 4097 records",
        invalid,
        "4097 rows in one call; the server accepts at most 4096",
        calls.predict(records(
            "small",
            vec![small_record(1.0, "red", true); MAX_PREDICT_ROWS + 1],
        )),
    ));
    cases.push(Case::refused(
        "Predict: 4097 dense rows",
        invalid,
        "4097 rows in one call; the server accepts at most 4096",
        calls.predict(dense(vec![vec![0.0; width]; MAX_PREDICT_ROWS + 1])),
    ));
    cases.push(Case::scores(
        "Predict: 4096 dense rows (the limit) are scored",
        MAX_PREDICT_ROWS,
        None,
        calls.predict(dense(vec![vec![0.0; width]; MAX_PREDICT_ROWS])),
    ));
    for values in [0, width - 1, width + 1, 10_000] {
        cases.push(Case::refused(
            format!("Predict: dense row of {values} values"),
            invalid,
            format!("dense_rows[1]: has {values} values, the model expects {width}"),
            calls.predict(dense(vec![vec![0.0; width], vec![0.0; values]])),
        ));
    }
    for (label, bad) in [
        ("NaN", f32::NAN),
        ("inf", f32::INFINITY),
        ("-inf", f32::NEG_INFINITY),
    ] {
        let mut row = vec![0.0; width];
        row[width - 1] = bad;
        cases.push(Case::refused(
            format!("Predict: dense row with {label}"),
            invalid,
            format!(
                "dense_rows[0]: value {} is {label}, not a finite number",
                width - 1
            ),
            calls.predict(dense(vec![row])),
        ));
    }
    cases.push(Case::scores(
        "Predict: dense rows of ±f32::MAX give finite scores",
        2,
        None,
        calls.predict(dense(vec![vec![f32::MAX; width], vec![f32::MIN; width]])),
    ));
    let oversize = dense(vec![vec![0.5; 5_000_000]]);
    cases.push(Case::refused(
        "Predict: 20 MB message (one dense row of 5 M floats)",
        Code::OutOfRange,
        too_large(oversize.encoded_len()),
        calls.predict(oversize),
    ));
    cases
}

/// Predict with rows as columns: the same checks and messages as records
/// (by row and column), plus the columns' own shape — one typed array each,
/// all of one length, each name once.
fn predict_column_cases(calls: &Calls, probe: &[f32]) -> Vec<Case> {
    let mut cases = Vec::new();
    let invalid = Code::InvalidArgument;
    let with = |edit: fn(&mut Vec<pb::Column>)| {
        let mut request = probe_columns();
        edit(&mut request.columns);
        calls.predict(request)
    };

    cases.push(Case::scores(
        "Predict: the probe rows as columns score as the records do",
        3,
        Some(probe.to_vec()),
        calls.predict(probe_columns()),
    ));
    cases.push(Case::scores(
        "Predict: columns in another order, and one the model does not use, score the same",
        3,
        Some(probe.to_vec()),
        with(|c| {
            c.reverse();
            c.push(strings_column("label", &["1", "0", "1"]));
        }),
    ));
    cases.push(Case::scores(
        "Predict: missing values in columns are scored (imputed)",
        3,
        None,
        with(|c| c[0].missing = vec![0, 2]),
    ));
    cases.push(Case::refused(
        "Predict: ragged columns",
        invalid,
        "columns[1] (\"colour\") has 2 values, but columns[0] has 3: every column needs one value per row",
        with(|c| {
            c[1].strings.pop();
        }),
    ));
    cases.push(Case::refused(
        "Predict: a misspelt column in place of one the model uses",
        invalid,
        "columns: missing column \"member\"",
        with(|c| c[2].name = "membr".into()),
    ));
    cases.push(Case::refused(
        "Predict: a column named twice",
        invalid,
        "columns[3]: column \"x\" appears twice",
        with(|c| c.push(numbers_column("x", &[1.0, 2.0, 3.0]))),
    ));
    cases.push(Case::refused(
        "Predict: a column the model does not use, named twice",
        invalid,
        "columns[4]: column \"extra\" appears twice",
        with(|c| {
            c.push(numbers_column("extra", &[1.0, 2.0, 3.0]));
            c.push(numbers_column("extra", &[1.0, 2.0, 3.0]));
        }),
    ));
    cases.push(Case::refused(
        "Predict: a column without a name",
        invalid,
        "columns[1]: no name",
        with(|c| c[1].name.clear()),
    ));
    cases.push(Case::refused(
        "Predict: a column without values",
        invalid,
        "columns[2] (\"member\"): no values (set numbers, strings or bools, one per row)",
        with(|c| c[2].bools.clear()),
    ));
    cases.push(Case::refused(
        "Predict: a column with two typed arrays",
        invalid,
        "columns[0] (\"x\"): set one of numbers, strings and bools, not several",
        with(|c| c[0].strings = vec!["1".into(), "2".into(), "3".into()]),
    ));
    cases.push(Case::refused(
        "Predict: a numeric column given bools",
        invalid,
        "row 0, column \"x\": expected a number, got a bool",
        with(|c| c[0] = bools_column("x", &[true, false, true])),
    ));
    cases.push(Case::refused(
        "Predict: a numeric column given text that is not a number",
        invalid,
        "row 1, column \"x\": expected a number, got \"abc\"",
        with(|c| c[0] = strings_column("x", &["1", "abc", "2"])),
    ));
    for (label, x) in [
        ("NaN", f64::NAN),
        ("inf", f64::INFINITY),
        ("-inf", f64::NEG_INFINITY),
    ] {
        cases.push(Case::refused(
            format!("Predict: numeric column {label} in columns"),
            invalid,
            format!("row 2, column \"x\": {label} is not a finite number"),
            calls.predict(pb::PredictRequest {
                columns: vec![
                    numbers_column("x", &[1.0, 2.0, x]),
                    strings_column("colour", &["red", "red", "red"]),
                    bools_column("member", &[true, true, true]),
                ],
                ..records("small", Vec::new())
            }),
        ));
    }
    cases.push(Case::refused(
        "Predict: categorical column NaN in columns",
        invalid,
        "row 1, column \"colour\": NaN is not a finite number",
        with(|c| c[1] = numbers_column("colour", &[1.0, f64::NAN, 2.0])),
    ));
    cases.push(Case::refused(
        "Predict: boolean column 2 in columns",
        invalid,
        "row 0, column \"member\": expected a boolean (or 1/0), got 2",
        with(|c| c[2] = numbers_column("member", &[2.0, 1.0, 0.0])),
    ));
    cases.push(Case::scores(
        "Predict: NaN where a row's value is marked missing is not read",
        3,
        None,
        with(|c| {
            c[0].numbers[1] = f64::NAN;
            c[0].missing = vec![1];
        }),
    ));
    cases.push(Case::refused(
        "Predict: a missing row beyond the rows",
        invalid,
        "columns[0] (\"x\"): missing row 3, but the call has 3 rows",
        with(|c| c[0].missing = vec![0, 3]),
    ));
    cases.push(Case::refused(
        "Predict: 4097 rows as columns",
        invalid,
        "4097 rows in one call; the server accepts at most 4096",
        with(|c| {
            let rows = MAX_PREDICT_ROWS + 1;
            c[0] = numbers_column("x", &vec![1.0; rows]);
            c[1] = strings_column("colour", &vec!["red"; rows]);
            c[2] = bools_column("member", &vec![true; rows]);
        }),
    ));
    cases
}

/// Train: model names, the rest of the spec, hyper-parameters.
fn train_spec_cases(calls: &Calls) -> Vec<Case> {
    let mut cases = Vec::new();
    let invalid = Code::InvalidArgument;

    // Train: model names.
    for (label, name) in absurd_names() {
        cases.push(Case::refused(
            format!("Train: model name {label}"),
            invalid,
            "model: invalid model name",
            calls.train(small_spec(&name), small_csv()),
        ));
    }

    // Train: the rest of the spec.
    let spec = |change: SpecEdit| {
        let mut spec = small_spec("small");
        change(&mut spec);
        spec
    };
    let spec_cases: [(&str, SpecEdit, &str); 8] = [
        (
            "blank label column",
            |s| s.label_column = "  ".into(),
            "label_column: must name the label column",
        ),
        (
            "empty positive label",
            |s| s.positive_label.clear(),
            "positive_label: must name the positive class value",
        ),
        (
            "two-character delimiter",
            |s| s.delimiter = ";;".into(),
            "delimiter: \";;\" is not one ASCII character",
        ),
        (
            "quote as delimiter",
            |s| s.delimiter = "\"".into(),
            "delimiter: \"\\\"\"",
        ),
        (
            "non-ASCII delimiter",
            |s| s.delimiter = "é".into(),
            "delimiter: \"é\"",
        ),
        (
            "unknown column type",
            |s| {
                s.column_types.insert("x".into(), 99);
            },
            "column_types[\"x\"]: unknown column type 99",
        ),
        (
            "unknown learning-rate schedule",
            |s| {
                if let Some(hp) = s.hyper_parameters.as_mut() {
                    hp.learning_rate_schedule = 7;
                }
            },
            "hyper_parameters.learning_rate_schedule: unknown value 7",
        ),
        (
            "label column also dropped",
            |s| s.drop_columns.push("label".into()),
            "drop_columns: cannot drop the label column \"label\"",
        ),
    ];
    for (label, change, needle) in spec_cases {
        cases.push(Case::refused(
            format!("Train: {label}"),
            invalid,
            needle,
            calls.train(spec(change), small_csv()),
        ));
    }

    // Train: hyper-parameters.
    let hyper_cases: [(&str, HyperEdit, &str); 22] = [
        (
            "epochs 0",
            |h| h.epochs = Some(0),
            "hyper_parameters.epochs: 0 is outside 1..=1000",
        ),
        (
            "epochs 10^9",
            |h| h.epochs = Some(1_000_000_000),
            "hyper_parameters.epochs: 1000000000 is outside 1..=1000",
        ),
        (
            "batch size 0",
            |h| h.batch_size = Some(0),
            "hyper_parameters.batch_size: 0 is outside 1..=65536",
        ),
        (
            "batch size 10^9",
            |h| h.batch_size = Some(1_000_000_000),
            "hyper_parameters.batch_size: 1000000000 is outside 1..=65536",
        ),
        (
            "learning rate NaN",
            |h| h.learning_rate = Some(f64::NAN),
            "hyper_parameters.learning_rate: NaN is outside (0, 10]",
        ),
        (
            "learning rate -0.1",
            |h| h.learning_rate = Some(-0.1),
            "hyper_parameters.learning_rate: -0.1 is outside (0, 10]",
        ),
        (
            "learning rate 100",
            |h| h.learning_rate = Some(100.0),
            "hyper_parameters.learning_rate: 100 is outside (0, 10]",
        ),
        (
            "learning rate inf",
            |h| h.learning_rate = Some(f64::INFINITY),
            "hyper_parameters.learning_rate: inf is outside (0, 10]",
        ),
        (
            "hidden layer width 0",
            |h| h.hidden_layers = vec![8, 0],
            "hyper_parameters.hidden_layers: width 0 is outside 1..=4096",
        ),
        (
            "hidden layer width 100 000",
            |h| h.hidden_layers = vec![100_000],
            "hyper_parameters.hidden_layers: width 100000 is outside 1..=4096",
        ),
        (
            "9 hidden layers",
            |h| h.hidden_layers = vec![4; 9],
            "hyper_parameters.hidden_layers: at most 8 layers",
        ),
        (
            "validation fraction 0",
            |h| h.validation_fraction = Some(0.0),
            "hyper_parameters.validation_fraction: 0 is outside (0, 1)",
        ),
        (
            "validation fraction 1",
            |h| h.validation_fraction = Some(1.0),
            "hyper_parameters.validation_fraction: 1 is outside (0, 1)",
        ),
        (
            "validation fraction NaN",
            |h| h.validation_fraction = Some(f64::NAN),
            "hyper_parameters.validation_fraction: NaN is outside (0, 1)",
        ),
        (
            "dropout 1.0",
            |h| h.dropout = Some(1.0),
            "hyper_parameters.dropout: 1 is outside [0, 0.95)",
        ),
        (
            "dropout NaN",
            |h| h.dropout = Some(f64::NAN),
            "hyper_parameters.dropout: NaN is outside [0, 0.95)",
        ),
        (
            "l2 inf",
            |h| h.l2 = Some(f64::INFINITY),
            "hyper_parameters.l2: inf is outside [0, 1]",
        ),
        (
            "l2 negative",
            |h| h.l2 = Some(-1.0),
            "hyper_parameters.l2: -1 is outside [0, 1]",
        ),
        (
            "target precision and recall both set",
            |h| {
                h.target_precision = Some(0.9);
                h.target_recall = Some(0.9);
            },
            "hyper_parameters: set target_precision or target_recall, not both",
        ),
        (
            "target precision 0",
            |h| h.target_precision = Some(0.0),
            "hyper_parameters.target_precision: 0 is outside (0, 1]",
        ),
        (
            "target recall NaN",
            |h| h.target_recall = Some(f64::NAN),
            "hyper_parameters.target_recall: NaN is outside (0, 1]",
        ),
        (
            "target recall 1.5",
            |h| h.target_recall = Some(1.5),
            "hyper_parameters.target_recall: 1.5 is outside (0, 1]",
        ),
    ];
    for (label, change, needle) in hyper_cases {
        cases.push(Case::refused(
            format!("Train: {label}"),
            invalid,
            needle,
            calls.train(hyper(change), small_csv()),
        ));
    }
    cases
}

/// Train: CSV contents and the shape of the request stream.
fn train_upload_cases(calls: &Calls) -> Vec<Case> {
    let mut cases = Vec::new();
    let invalid = Code::InvalidArgument;

    // Train: CSV contents.
    let header_absent_label = small_text().replacen("label\n", "outcome\n", 1).into_bytes();
    let csv_cases: Vec<(&str, pb::TrainSpec, Vec<u8>, String)> = vec![
        (
            "whitespace-only CSV",
            small_spec("small"),
            b"\n \r\n\t\n".to_vec(),
            "the CSV is empty".into(),
        ),
        (
            "CSV of only a byte-order mark",
            small_spec("small"),
            b"\xEF\xBB\xBF".to_vec(),
            "the CSV is empty".into(),
        ),
        (
            "header only",
            small_spec("small"),
            b"id,x,colour,member,label\n".to_vec(),
            "the CSV has a header but no data rows".into(),
        ),
        (
            "binary garbage",
            small_spec("small"),
            garbage(64 * 1024, 0x5eed),
            "header, column 1: not valid UTF-8 text".into(),
        ),
        (
            "binary garbage after a good header",
            small_spec("small"),
            [b"id,x,colour,member,label\n".to_vec(), garbage(4096, 7)].concat(),
            "line 2, column".into(),
        ),
        (
            "non-UTF-8 cell on line 50",
            small_spec("small"),
            replace_line(50, "48,1.5,r\u{0}ed,no,0")
                .into_iter()
                .map(|b| if b == 0 { 0xff } else { b })
                .collect(),
            "line 50, column \"colour\": not valid UTF-8 text".into(),
        ),
        (
            "a row of 6 columns on line 100",
            small_spec("small"),
            replace_line(100, "98,1.5,red,no,0,extra"),
            "line 100: 6 fields, but the header has 5".into(),
        ),
        (
            "a row of 3 columns on line 150",
            small_spec("small"),
            replace_line(150, "148,1.5,red"),
            "line 150: 3 fields, but the header has 5".into(),
        ),
        (
            "unterminated quote on line 60",
            small_spec("small"),
            replace_line(60, "58,\"1.5,red,no,0"),
            "line 60".into(),
        ),
        (
            "duplicate header column",
            small_spec("small"),
            replace_line(1, "id,x,colour,x,label"),
            "header: column \"x\" appears more than once".into(),
        ),
        (
            "blank header name",
            small_spec("small"),
            replace_line(1, "id,x, ,member,label"),
            "header, column 3: empty column name".into(),
        ),
        (
            "label column absent",
            small_spec("small"),
            header_absent_label,
            "label column \"label\" is not in the CSV header".into(),
        ),
        (
            "other delimiter than the file's",
            pb::TrainSpec {
                delimiter: ";".into(),
                ..small_spec("small")
            },
            small_csv(),
            "label column \"label\" is not in the CSV header".into(),
        ),
        (
            "label with one class",
            small_spec("small"),
            csv_with_labels(|_| "1"),
            "label column \"label\" has only one class".into(),
        ),
        (
            "positive label never present",
            pb::TrainSpec {
                positive_label: "yes".into(),
                ..small_spec("small")
            },
            small_csv(),
            "positive label \"yes\" never occurs in label column \"label\"".into(),
        ),
        (
            "a single positive row",
            small_spec("small"),
            csv_with_labels(|i| if i == 0 { "1" } else { "0" }),
            "only 1 positive row(s)".into(),
        ),
        (
            "every label blank",
            small_spec("small"),
            csv_with_labels(|_| ""),
            "every row has a blank label in column \"label\"".into(),
        ),
        (
            "drop_columns names an unknown column",
            pb::TrainSpec {
                drop_columns: vec!["id".into(), "nope".into()],
                ..small_spec("small")
            },
            small_csv(),
            "drop_columns: column \"nope\" is not in the CSV header".into(),
        ),
        (
            "every feature dropped",
            pb::TrainSpec {
                drop_columns: vec!["id".into(), "x".into(), "colour".into(), "member".into()],
                ..small_spec("small")
            },
            small_csv(),
            "no feature columns left".into(),
        ),
        (
            "column_types names an unknown column",
            pb::TrainSpec {
                column_types: [("nope".to_string(), pb::ColumnType::Numeric as i32)].into(),
                ..small_spec("small")
            },
            small_csv(),
            "column_types: column \"nope\" is not in the CSV header".into(),
        ),
        (
            "column_types forces boolean on a categorical column",
            pb::TrainSpec {
                column_types: [("colour".to_string(), pb::ColumnType::Boolean as i32)].into(),
                ..small_spec("small")
            },
            small_csv(),
            "column \"colour\" is boolean but holds \"red\"".into(),
        ),
        (
            "column_types names the label",
            pb::TrainSpec {
                column_types: [("label".to_string(), pb::ColumnType::Numeric as i32)].into(),
                ..small_spec("small")
            },
            small_csv(),
            "column_types: \"label\" is the label column".into(),
        ),
    ];
    for (label, spec, csv, needle) in csv_cases {
        cases.push(Case::refused(
            format!("Train: {label}"),
            invalid,
            needle,
            calls.train(spec, csv),
        ));
    }

    // Train: the shape of the request stream.
    let spec = || spec_message(small_spec("small"));
    let empty = pb::TrainRequest { payload: None };
    let oversize = chunk_message(vec![b'1'; 17 << 20]);
    let oversize_needle = too_large(oversize.encoded_len());
    let stream_cases: Vec<(&str, Vec<pb::TrainRequest>, Code, String)> = vec![
        (
            "stream ends before any message",
            Vec::new(),
            invalid,
            "the request stream ended before the TrainSpec".into(),
        ),
        (
            "stream ends after the spec",
            vec![spec()],
            invalid,
            "no CSV data followed the TrainSpec".into(),
        ),
        (
            "stream sends only empty chunks",
            vec![spec(), chunk_message(Vec::new()), chunk_message(Vec::new())],
            invalid,
            "no CSV data followed the TrainSpec".into(),
        ),
        (
            "stream starts with a CSV chunk",
            vec![chunk_message(small_csv()), spec()],
            invalid,
            "the first message must carry the TrainSpec".into(),
        ),
        (
            "stream starts with an empty message",
            vec![empty.clone(), spec(), chunk_message(small_csv())],
            invalid,
            "the first message must carry the TrainSpec".into(),
        ),
        (
            "stream sends a second spec",
            vec![spec(), chunk_message(small_csv()), spec()],
            invalid,
            "only the first message may carry a TrainSpec".into(),
        ),
        (
            "stream sends a message with no payload",
            vec![spec(), chunk_message(small_csv()), empty],
            invalid,
            "a message carried neither a spec nor a csv_chunk".into(),
        ),
        (
            "a 17 MiB CSV chunk",
            vec![spec(), oversize],
            Code::OutOfRange,
            oversize_needle,
        ),
    ];
    for (label, messages, code, needle) in stream_cases {
        cases.push(Case::refused(
            format!("Train: {label}"),
            code,
            needle,
            calls.train_messages(messages),
        ));
    }
    cases
}

/// ListModels, GetRolloutState, GetRolloutHistory, GetLiveStats, WatchModels, ListJobs, GetVersionReport.
fn registry_read_cases(calls: &Calls) -> Vec<Case> {
    let mut cases = Vec::new();
    let invalid = Code::InvalidArgument;
    let not_found = Code::NotFound;

    // ListModels.
    for label in ["SQL fragment", "10 KB", "RTL override"] {
        cases.push(absurd_name_lookup(
            "ListModels",
            label,
            calls.list_models(&absurd(label)),
        ));
    }
    cases.push(Case::refused(
        "ListModels: unknown model",
        not_found,
        "model \"ghost\" not found",
        calls.list_models("ghost"),
    ));

    // GetRolloutState.
    for label in ["empty", "RTL override", "newline"] {
        cases.push(absurd_name_lookup(
            "GetRolloutState",
            label,
            calls.rollout_state(&absurd(label)),
        ));
    }
    cases.push(Case::refused(
        "GetRolloutState: unknown model",
        not_found,
        "model \"ghost\" not found",
        calls.rollout_state("ghost"),
    ));

    // GetRolloutHistory.
    cases.push(Case::refused(
        "GetRolloutHistory: unknown model",
        not_found,
        "model \"ghost\" not found",
        calls.rollout_history("ghost", None),
    ));
    cases.push(Case::refused(
        "GetRolloutHistory: time beyond any calendar",
        invalid,
        "at: not a valid timestamp",
        calls.rollout_history(
            "small",
            Some(prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            }),
        ),
    ));
    for label in ["path traversal", "10 KB"] {
        cases.push(absurd_name_lookup(
            "GetRolloutHistory",
            label,
            calls.rollout_history(&absurd(label), None),
        ));
    }

    // GetLiveStats.
    for window in [601, u32::MAX] {
        cases.push(Case::refused(
            format!("GetLiveStats: window of {window} s"),
            invalid,
            "window_seconds: at most 600",
            calls.live_stats("small", window),
        ));
    }
    cases.push(Case::answered(
        "GetLiveStats: window of 600 s (the limit) answers",
        calls.live_stats("small", 600),
    ));
    cases.push(Case::refused(
        "GetLiveStats: unknown model",
        not_found,
        "model \"ghost\" not found",
        calls.live_stats("ghost", 60),
    ));
    for label in ["path separator", "SQL fragment"] {
        cases.push(absurd_name_lookup(
            "GetLiveStats",
            label,
            calls.live_stats(&absurd(label), 60),
        ));
    }

    // WatchModels.
    cases.push(Case::refused(
        "WatchModels: model name path traversal",
        invalid,
        "invalid model name",
        calls.watch_models(&absurd("path traversal")),
    ));

    // ListJobs.
    cases.push(Case::answered(
        "ListJobs: limit u32::MAX answers",
        calls.list_jobs("", u32::MAX),
    ));

    // GetVersionReport.
    for version in [0, 9, u32::MAX] {
        cases.push(Case::refused(
            format!("GetVersionReport: unknown version {version}"),
            not_found,
            format!("model \"small\" has no version {version}"),
            calls.version_report("small", Some(version)),
        ));
    }
    cases.push(Case::refused(
        "GetVersionReport: unknown model",
        not_found,
        "model \"ghost\" not found",
        calls.version_report("ghost", None),
    ));
    for label in ["empty", "10 KB", "NUL"] {
        cases.push(absurd_name_lookup(
            "GetVersionReport",
            label,
            calls.version_report(&absurd(label), Some(1)),
        ));
    }
    cases
}

/// SetAlias, DeleteAlias, UpdateTraffic.
fn rollout_change_cases(calls: &Calls) -> Vec<Case> {
    let mut cases = Vec::new();
    let invalid = Code::InvalidArgument;
    let not_found = Code::NotFound;
    let precondition = Code::FailedPrecondition;

    // SetAlias.
    for (label, alias) in [
        ("empty", String::new()),
        ("path traversal", "../production".to_string()),
        ("path separator", "prod/eu".to_string()),
        ("SQL fragment", "p'; DELETE FROM aliases;--".to_string()),
        ("10 KB", "a".repeat(10 * 1024)),
        ("RTL override", "prod\u{202e}".to_string()),
        ("leading dash", "-production".to_string()),
    ] {
        cases.push(Case::refused(
            format!("SetAlias: alias name {label}"),
            invalid,
            "alias: invalid alias name",
            calls.set_alias("small", &alias, 1),
        ));
    }
    for label in ["path separator", "newline"] {
        cases.push(absurd_name_lookup(
            "SetAlias",
            label,
            calls.set_alias(&absurd(label), "production", 1),
        ));
    }
    for version in [0, 9] {
        cases.push(Case::refused(
            format!("SetAlias: missing version {version}"),
            precondition,
            format!("model \"small\" has no version {version}"),
            calls.set_alias("small", "production", version),
        ));
    }
    cases.push(Case::refused(
        "SetAlias: unknown model",
        not_found,
        "model \"ghost\" not found",
        calls.set_alias("ghost", "production", 1),
    ));

    // DeleteAlias.
    cases.push(Case::refused(
        "DeleteAlias: unknown alias",
        not_found,
        "model \"small\" has no alias \"production\"",
        calls.delete_alias("small", "production"),
    ));
    cases.push(Case::refused(
        "DeleteAlias: alias name 10 KB",
        invalid,
        "invalid alias name",
        calls.delete_alias("small", &"a".repeat(10 * 1024)),
    ));
    for label in ["empty", "path traversal"] {
        cases.push(absurd_name_lookup(
            "DeleteAlias",
            label,
            calls.delete_alias(&absurd(label), "production"),
        ));
    }

    // UpdateTraffic.
    for (label, percent) in [
        ("-5", -5.0),
        ("100.5", 100.5),
        ("NaN", f64::NAN),
        ("inf", f64::INFINITY),
        ("-inf", f64::NEG_INFINITY),
    ] {
        cases.push(Case::refused(
            format!("UpdateTraffic: canary percent {label}"),
            invalid,
            format!("canary.percent: {label} is outside 0-100"),
            calls.update_traffic("small", canary(1, percent), None),
        ));
    }
    cases.push(Case::refused(
        "UpdateTraffic: no change set",
        invalid,
        "change: set canary, promote, rollback, clear or shadow",
        calls.update_traffic("small", None, None),
    ));
    let shadow =
        |version: Option<u32>, percent: f64| Some(Change::Shadow(pb::ShadowChange { version, percent }));
    cases.push(Case::refused(
        "UpdateTraffic: shadow percent 101",
        invalid,
        "shadow.percent: 101 is outside 0-100",
        calls.update_traffic("small", shadow(Some(1), 101.0), None),
    ));
    cases.push(Case::refused(
        "UpdateTraffic: shadow version missing",
        precondition,
        "model \"small\" has no version 9",
        calls.update_traffic("small", shadow(Some(9), 10.0), None),
    ));
    cases.push(Case::refused(
        "UpdateTraffic: shadow of the only version",
        precondition,
        "has no other version to keep as stable",
        calls.update_traffic("small", shadow(Some(1), 10.0), None),
    ));
    cases.push(Case::refused(
        "UpdateTraffic: stop a shadow without a policy",
        precondition,
        "has no traffic policy, so no shadow to stop",
        calls.update_traffic("small", shadow(None, 0.0), None),
    ));
    cases.push(Case::refused(
        "UpdateTraffic: canary version missing",
        precondition,
        "model \"small\" has no version 9",
        calls.update_traffic("small", canary(9, 10.0), None),
    ));
    cases.push(Case::refused(
        "UpdateTraffic: canary of the only version",
        precondition,
        "has no other version to keep as stable",
        calls.update_traffic("small", canary(1, 10.0), None),
    ));
    cases.push(Case::refused(
        "UpdateTraffic: promote without a canary",
        precondition,
        "model \"small\" has no canary to promote",
        calls.update_traffic("small", promote(), None),
    ));
    cases.push(Case::refused(
        "UpdateTraffic: roll back without a canary",
        precondition,
        "model \"small\" has no canary to roll back",
        calls.update_traffic("small", rollback(None), None),
    ));
    cases.push(Case::refused(
        "UpdateTraffic: roll back to a missing version",
        precondition,
        "model \"small\" has no version 0",
        calls.update_traffic("small", rollback(Some(0)), None),
    ));
    cases.push(Case::refused(
        "UpdateTraffic: stale expected_revision",
        Code::Aborted,
        "at revision 0, not 5",
        calls.update_traffic("small", rollback(Some(1)), Some(5)),
    ));
    cases.push(Case::refused(
        "UpdateTraffic: expected_revision u64::MAX",
        Code::Aborted,
        format!("at revision 0, not {}", u64::MAX),
        calls.update_traffic("small", rollback(Some(1)), Some(u64::MAX)),
    ));
    for (label, change) in [
        ("SQL fragment", promote()),
        ("NUL", canary(1, 10.0)),
        ("10 KB", rollback(None)),
    ] {
        cases.push(absurd_name_lookup(
            "UpdateTraffic",
            label,
            calls.update_traffic(&absurd(label), change, None),
        ));
    }
    cases.push(Case::refused(
        "UpdateTraffic: unknown model",
        not_found,
        "model \"ghost\" not found",
        calls.update_traffic("ghost", promote(), None),
    ));
    cases
}

/// WatchJob and CancelJob.
fn job_cases(calls: &Calls) -> Vec<Case> {
    let mut cases = Vec::new();
    let invalid = Code::InvalidArgument;
    let not_found = Code::NotFound;

    // WatchJob and CancelJob.
    for (label, id) in [
        ("unknown", "job-0123456789abcdef".to_string()),
        ("empty", String::new()),
        ("SQL fragment", "j'; DROP TABLE training_jobs;--".to_string()),
        ("path traversal", "../../etc/passwd".to_string()),
        ("10 KB", "j".repeat(10 * 1024)),
        ("NUL and RTL override", "job-\u{0}\u{202e}".to_string()),
    ] {
        // Job ids are opaque but bounded: a well-formed id that names no
        // job is NOT_FOUND; anything that cannot be an id is refused without
        // being echoed whole.
        let well_formed = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic());
        let (code, needle) = if well_formed {
            (not_found, format!("training job {id:?} not found"))
        } else {
            (invalid, "is not a job id".to_string())
        };
        cases.push(Case::refused(
            format!("WatchJob: {label} id"),
            code,
            needle.clone(),
            calls.watch_job(&id),
        ));
        cases.push(Case::refused(
            format!("CancelJob: {label} id"),
            code,
            needle,
            calls.cancel_job(&id),
        ));
    }
    cases
}

/// ReportOutcomes: malformed rows are refused by their index; ids that
/// name no prediction are counted, not refused.
fn outcome_cases(calls: &Calls) -> Vec<Case> {
    let invalid = Code::InvalidArgument;
    let outcome = |id: &str| pb::OutcomeReport {
        prediction_id: id.to_string(),
        label: true,
        observed_at: None,
    };
    let mut cases = vec![
        Case::refused(
            "ReportOutcomes: empty id in row 2",
            invalid,
            "outcomes[2].prediction_id: empty",
            calls.report_outcomes(vec![outcome("a"), outcome("b"), outcome("")]),
        ),
        Case::refused(
            "ReportOutcomes: 10 KB id",
            invalid,
            "outcomes[0].prediction_id: 10240 bytes",
            calls.report_outcomes(vec![outcome(&"i".repeat(10 * 1024))]),
        ),
        Case::refused(
            "ReportOutcomes: 100 001 rows",
            invalid,
            "100001 in one call; the server accepts at most 100000",
            calls.report_outcomes(vec![outcome("x"); 100_001]),
        ),
        Case::refused(
            "ReportOutcomes: time before 1970",
            invalid,
            "outcomes[0].observed_at",
            calls.report_outcomes(vec![pb::OutcomeReport {
                observed_at: Some(prost_types::Timestamp {
                    seconds: -5,
                    nanos: 0,
                }),
                ..outcome("x")
            }]),
        ),
    ];
    for (label, id) in [
        ("unknown id", "not-a-prediction".to_string()),
        ("SQL fragment", "p'; DROP TABLE models;--".to_string()),
        ("NUL and RTL override", "p\u{0}\u{202e}".to_string()),
        ("no outcomes", String::new()),
    ] {
        let outcomes = if id.is_empty() { vec![] } else { vec![outcome(&id)] };
        cases.push(Case::answered(
            format!("ReportOutcomes: {label}"),
            calls.report_outcomes(outcomes),
        ));
    }
    cases
}

// -------------------------------------------------------------------- test --

async fn scores(client: &mut ServalClient, request: pb::PredictRequest) -> Vec<f32> {
    client.predict(request).await.expect("baseline predicts").scores
}

async fn jobs(client: &mut ServalClient) -> Vec<pb::TrainingJob> {
    client
        .raw()
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .expect("jobs listed")
        .into_inner()
        .jobs
}

#[tokio::test]
async fn hostile_inputs_are_refused_by_name_and_change_nothing() {
    let started = Instant::now();
    let test = TestServer::start().await;
    let mut client = test.client.clone();
    let baseline = client.train(small_spec("small"), small_csv()).await.unwrap();
    let width = baseline.input_width as usize;
    assert!(width > 2, "{baseline:?}");

    let probe = scores(&mut client, records("small", probe_records())).await;
    let dense_probe = dense(vec![vec![0.25; width], vec![-1.0; width]]);
    let dense_before = scores(&mut client, dense_probe.clone()).await;
    let models_before = client.list_models(None).await.unwrap();
    let rollout_before = client.rollout_state("small").await.unwrap();
    let events_before = client.rollout_history("small", None).await.unwrap().events;
    let jobs_before = jobs(&mut client).await;
    assert_eq!(jobs_before.len(), 1, "{jobs_before:?}");

    let calls = Calls {
        client: client.clone(),
    };
    let cases = hostile_cases(&calls, width, &probe);
    let total = cases.len();
    assert!(total >= 45, "only {total} cases");

    let mut failures = Vec::new();
    for case in cases {
        let outcome = match tokio::time::timeout(CASE_TIMEOUT, case.call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {CASE_TIMEOUT:?}"
            ))),
        };
        if let Err(problem) = judge(&case.expect, &outcome) {
            failures.push(format!("{}: {problem}", case.name));
        }
    }

    // The server still answers exactly as before.
    let mut after = Vec::new();
    let probe_after = scores(&mut client, records("small", probe_records())).await;
    if probe_after != probe {
        after.push(format!("record scores {probe_after:?}, before {probe:?}"));
    }
    let dense_after = scores(&mut client, dense_probe).await;
    if dense_after != dense_before {
        after.push(format!("dense scores {dense_after:?}, before {dense_before:?}"));
    }
    // Nothing was stored: no model, version, alias, policy, audit event or
    // training job (every refused Train failed before a job started).
    let models_after = client.list_models(None).await.unwrap();
    if models_after != models_before {
        after.push(format!("models changed: {models_after:#?}"));
    }
    let rollout_after = client.rollout_state("small").await.unwrap();
    if rollout_after != rollout_before {
        after.push(format!("rollout state changed: {rollout_after:#?}"));
    }
    let events_after = client.rollout_history("small", None).await.unwrap().events;
    if events_after != events_before {
        after.push(format!(
            "audit log has {} events, before {}: {:#?}",
            events_after.len(),
            events_before.len(),
            &events_after[events_before.len().min(events_after.len())..]
        ));
    }
    let jobs_after = jobs(&mut client).await;
    if jobs_after != jobs_before {
        after.push(format!("training jobs changed: {jobs_after:#?}"));
    }
    failures.extend(
        after
            .into_iter()
            .map(|problem| format!("after the cases: {problem}")),
    );

    // Refused calls leave nothing behind in the server either: only the
    // baseline's version 1 is loaded, and no unknown model has a slot.
    let mut leaks = Vec::new();
    let mut loaded = test.server.state().models.loaded_versions("small");
    loaded.sort_unstable();
    if loaded != [1] {
        leaks.push(format!(
            "model \"small\" has slots for versions {loaded:?}, expected [1]"
        ));
    }
    let unknown = ["ghost".to_string()]
        .into_iter()
        .chain(absurd_names().into_iter().map(|(_, name)| name));
    for name in unknown {
        let loaded = test.server.state().models.loaded_versions(&name);
        if !loaded.is_empty() {
            leaks.push(format!("unknown model {} has slots {loaded:?}", excerpt(&name)));
        }
    }
    if !leaks.is_empty() {
        failures.push(format!("after the cases: {}", leaks.join("; ")));
    }

    let mut report = format!(
        "{total} hostile cases in {:.1} s: {} failed\n",
        started.elapsed().as_secs_f64(),
        failures.len(),
    );
    for line in &failures {
        let _ = writeln!(report, "  FAILED: {line}");
    }
    eprintln!("{report}");
    assert!(failures.is_empty(), "{report}");
}
