//! `serval bench`: a load generator for the predict path. C callers keep
//! one unary call each in flight over a few HTTP/2 connections for a fixed
//! time, and the tool reports throughput, latency percentiles and errors by
//! status code. The same rows go as `serval.v1` Predict, or as the Open
//! Inference Protocol over gRPC or HTTP/JSON (`bench_oip`; one HTTP/1.1
//! connection per caller).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use prost::Message;
use rand::Rng;
use serde_json::json;
use serval_client::records::ColumnTable;
use serval_client::{ConnectOptions, ServalClient, code_name, proto as pb};
use tonic_health::pb::HealthCheckRequest;

use super::CliError;
use super::bench_oip;
use super::http_call::HttpCaller;
use super::raw_call::RawCaller;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Rpc {
    /// serval.v1.ModelService/Predict.
    Predict,
    /// grpc.health.v1.Health/Check: an empty call, the ceiling for Predict.
    Health,
}

/// Which API the calls use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// serval.v1.ModelService/Predict.
    Serval,
    /// The Open Inference Protocol over gRPC: ModelInfer.
    OipGrpc,
    /// The Open Inference Protocol over HTTP/JSON: POST /v2/models/…/infer.
    OipHttp,
}

/// How Predict calls carry their rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Form {
    /// `records`: one map of column name to value per row (needs --data).
    Records,
    /// `columns`: each column named once, then a typed array of its values
    /// (needs --data).
    Columns,
    /// `dense_rows`: already-encoded rows, random values of the model's
    /// input width.
    Dense,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model to call (not needed with --rpc health).
    #[arg(long, required_if_eq("rpc", "predict"))]
    model: Option<String>,
    /// Spread the calls evenly over N models, named MODEL-1 … MODEL-N, of
    /// the same input columns (each caller takes them in turn).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    spread: Option<u32>,
    /// Version [default: the latest].
    #[arg(long)]
    version: Option<u32>,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// How long to measure (after the warm-up).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before measuring, not counted.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Rows per Predict call.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rows_per_request: u32,
    /// Which call to make.
    #[arg(long, value_enum, default_value_t = Rpc::Predict)]
    rpc: Rpc,
    /// How Predict calls carry their rows [default: records with --data,
    /// dense without].
    #[arg(long, value_enum)]
    form: Option<Form>,
    /// CSV whose rows are sent (as records or columns); without it, random
    /// dense rows of the model's input width are sent.
    #[arg(long)]
    data: Option<PathBuf>,
    /// HTTP/2 connections the callers share, taking turns over the
    /// --server addresses.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    connections: u32,
    /// Which API Predict calls use: `oip-grpc` and `oip-http` send the
    /// rows as the Open Inference Protocol's tensors (--form dense: one
    /// FP32 [N, width] tensor; --form columns: one input per column).
    #[arg(long, value_enum, default_value_t = Protocol::Serval)]
    protocol: Protocol,
    /// The server's HTTP address (host:port), for --protocol oip-http.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_address: String,
    /// Send a W3C `traceparent` with every call (each caller its own
    /// trace).
    #[arg(long)]
    traceparent: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// What one caller saw.
struct CallerReport {
    /// Latency of successful calls.
    latency_us: Histogram<u64>,
    /// Latency of failed calls (how promptly overload is refused).
    error_latency_us: Histogram<u64>,
    requests: u64,
    errors: BTreeMap<&'static str, u64>,
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// What the callers send: encoded requests they cycle through.
#[derive(Clone)]
enum Load {
    Grpc {
        path: &'static str,
        requests: Arc<[Bytes]>,
    },
    /// JSON bodies, each with the path it is posted to.
    Http { requests: Arc<[(String, Bytes)]> },
}

/// One caller's client.
enum Caller {
    Grpc(Box<RawCaller>, Arc<[Bytes]>),
    Http(HttpCaller, Arc<[(String, Bytes)]>),
}

impl Caller {
    fn requests(&self) -> usize {
        match self {
            Caller::Grpc(_, requests) => requests.len(),
            Caller::Http(_, requests) => requests.len(),
        }
    }

    /// Makes call `i`; its failure by status name.
    async fn call(&mut self, i: usize) -> Result<(), &'static str> {
        match self {
            Caller::Grpc(caller, requests) => caller
                .call(requests[i].clone())
                .await
                .map(drop)
                .map_err(|status| code_name(status.code())),
            Caller::Http(caller, requests) => {
                let (path, body) = &requests[i];
                match caller.post(path, body.clone()).await {
                    Ok(200) => Ok(()),
                    Ok(status) => Err(http_status_name(status)),
                    Err(_) => Err("HTTP_CONNECTION_FAILED"),
                }
            }
        }
    }
}

fn http_status_name(status: u16) -> &'static str {
    match status {
        400 => "HTTP_400",
        401 => "HTTP_401",
        403 => "HTTP_403",
        404 => "HTTP_404",
        429 => "HTTP_429",
        500 => "HTTP_500",
        503 => "HTTP_503",
        _ => "HTTP_OTHER",
    }
}

/// A `traceparent` of a new trace, sampled.
fn new_traceparent() -> String {
    let mut rng = rand::rng();
    format!(
        "00-{:032x}-{:016x}-01",
        rng.random::<u128>().max(1),
        rng.random::<u64>().max(1)
    )
}

pub async fn run(
    servers: &[String],
    options: &ConnectOptions,
    token: Option<&str>,
    args: BenchArgs,
) -> Result<(), CliError> {
    if args.protocol != Protocol::Serval {
        if args.rpc != Rpc::Predict {
            return Err(CliError::Input(
                "--protocol oip-grpc and oip-http take --rpc predict only".into(),
            ));
        }
        if form_name(&args) == "records" {
            return Err(CliError::Input(
                "the Open Inference Protocol has no records form: give --form columns (with --data) or --form dense"
                    .into(),
            ));
        }
    }
    // Connections take turns over the servers; every one must answer, so
    // that the load is what was asked for.
    let mut channels = Vec::new();
    for server in servers.iter().cycle().take(args.connections as usize) {
        channels.push(ServalClient::channel_to(server, options.tls.clone()).await?);
    }
    // Requests are encoded once; callers cycle through them.
    let load = match args.rpc {
        Rpc::Predict => {
            let requests = predict_requests(
                &args,
                ServalClient::with_metadata(channels[0].clone(), options.metadata.clone()),
            )
            .await?;
            match args.protocol {
                Protocol::Serval => Load::Grpc {
                    path: "/serval.v1.ModelService/Predict",
                    requests: requests.iter().map(|r| Bytes::from(r.encode_to_vec())).collect(),
                },
                Protocol::OipGrpc => Load::Grpc {
                    path: "/inference.GRPCInferenceService/ModelInfer",
                    requests: requests.iter().map(bench_oip::grpc_request).collect(),
                },
                Protocol::OipHttp => Load::Http {
                    requests: requests
                        .iter()
                        .map(|r| (bench_oip::http_path(r), bench_oip::json_request(r)))
                        .collect(),
                },
            }
        }
        Rpc::Health => Load::Grpc {
            path: "/grpc.health.v1.Health/Check",
            requests: Arc::new([Bytes::from(HealthCheckRequest::default().encode_to_vec())]),
        },
    };

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let mut callers = Vec::new();
    for caller in 0..args.concurrency as usize {
        let traceparent = args.traceparent.then(new_traceparent);
        let client = match &load {
            Load::Grpc { path, requests } => {
                let mut raw = RawCaller::new(
                    channels[caller % channels.len()].clone(),
                    options.metadata.clone(),
                    path,
                );
                if let Some(value) = &traceparent {
                    raw = raw.with_traceparent(value);
                }
                Caller::Grpc(Box::new(raw), requests.clone())
            }
            Load::Http { requests } => Caller::Http(
                HttpCaller::new(
                    args.http_address.clone(),
                    token.map(|token| format!("Bearer {token}")),
                    traceparent,
                ),
                requests.clone(),
            ),
        };
        callers.push(tokio::spawn(async move {
            call_until(client, caller, measure_from, end).await
        }));
    }
    let mut latency_us = latency_histogram();
    let mut error_latency_us = latency_histogram();
    let mut total = 0u64;
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    for caller in callers {
        let report = caller
            .await
            .map_err(|e| CliError::Failed(format!("a caller failed: {e}")))?;
        latency_us.add(&report.latency_us).expect("same bounds");
        error_latency_us
            .add(&report.error_latency_us)
            .expect("same bounds");
        total += report.requests;
        for (code, count) in report.errors {
            *errors.entry(code).or_default() += count;
        }
    }
    let seconds = args.duration.as_secs_f64();
    let ok = total - errors.values().sum::<u64>();
    let rps = total as f64 / seconds;
    let rows_per_s = match args.rpc {
        Rpc::Predict => ok as f64 * f64::from(args.rows_per_request) / seconds,
        Rpc::Health => 0.0,
    };
    // Percentiles are of successful calls; failures have their own p50.
    let ms = |q: f64| latency_us.value_at_quantile(q) as f64 / 1000.0;
    if args.json {
        let value = json!({
            "rpc": format!("{:?}", args.rpc).to_lowercase(),
            "protocol": protocol_name(args.protocol),
            "traceparent": args.traceparent,
            "model": args.model,
            "version": args.version,
            "concurrency": args.concurrency,
            "rows_per_request": args.rows_per_request,
            "form": (args.rpc == Rpc::Predict).then(|| form_name(&args)),
            "spread": args.spread,
            "connections": args.connections,
            "duration_s": seconds,
            "requests": total,
            "rps": rps,
            "rows_per_s": rows_per_s,
            "p50_ms": ms(0.5),
            "p90_ms": ms(0.9),
            "p99_ms": ms(0.99),
            "p999_ms": ms(0.999),
            "max_ms": latency_us.max() as f64 / 1000.0,
            "errors": errors,
            "error_p50_ms": (!error_latency_us.is_empty()).then(|| error_latency_us.value_at_quantile(0.5) as f64 / 1000.0),
        });
        println!("{value}");
    } else {
        let target = match args.rpc {
            Rpc::Predict => format!(
                "{} {}{} {} ({})",
                protocol_name(args.protocol),
                args.model.as_deref().unwrap_or_default(),
                args.spread.map_or(String::new(), |n| format!("-1…{n}")),
                args.version.map_or("latest".to_string(), |v| format!("v{v}")),
                form_name(&args)
            ),
            Rpc::Health => "health check".to_string(),
        };
        println!(
            "{target}: concurrency {}, {} row(s)/request, {} connection(s), {:.1} s",
            args.concurrency, args.rows_per_request, args.connections, seconds
        );
        println!("throughput: {rps:.0} requests/s, {rows_per_s:.0} rows/s ({total} requests)");
        println!(
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            latency_us.max() as f64 / 1000.0
        );
        if errors.is_empty() {
            println!("errors: none");
        } else {
            let listed: Vec<String> = errors.iter().map(|(code, n)| format!("{code} {n}")).collect();
            println!(
                "errors: {} (answered in p50 {:.3} ms)",
                listed.join(", "),
                error_latency_us.value_at_quantile(0.5) as f64 / 1000.0
            );
        }
    }
    Ok(())
}

/// A few distinct requests the callers cycle through (per model, with
/// --spread, the models taking turns).
async fn predict_requests(
    args: &BenchArgs,
    mut client: ServalClient,
) -> Result<Vec<pb::PredictRequest>, CliError> {
    let model = args.model.clone().unwrap_or_default();
    let models: Vec<String> = match args.spread {
        Some(n) => (1..=n).map(|i| format!("{model}-{i}")).collect(),
        None => vec![model.clone()],
    };
    let rows = args.rows_per_request as usize;
    const DISTINCT: usize = 64;
    let form = args.form.unwrap_or(if args.data.is_some() {
        Form::Records
    } else {
        Form::Dense
    });
    let bodies: Vec<pb::PredictRequest> = match form {
        Form::Records | Form::Columns => {
            let Some(path) = &args.data else {
                return Err(CliError::Input(format!(
                    "--form {} needs --data FILE (a CSV with the model's columns)",
                    if form == Form::Records {
                        "records"
                    } else {
                        "columns"
                    }
                )));
            };
            let file = std::fs::File::open(path)
                .map(std::io::BufReader::new)
                .map_err(|e| CliError::Input(format!("cannot open {}: {e}", path.display())))?;
            let table = ColumnTable::from_csv(file, b',').map_err(CliError::Input)?;
            let total = table.rows();
            if total == 0 {
                return Err(CliError::Input(format!("{} has no rows", path.display())));
            }
            // The same rows in either form: request i holds rows i*rows…
            // of the file, wrapping around.
            let ranges = (0..DISTINCT).map(|i| {
                let first = (i * rows) % total;
                (first..first + rows).map(move |r| r % total)
            });
            // Records carry the same typed values as columns (numbers
            // where the CSV's text is exactly one), as a service holding
            // typed rows sends them.
            if form == Form::Records {
                ranges
                    .map(|rows| pb::PredictRequest {
                        records: table.records(rows),
                        ..Default::default()
                    })
                    .collect()
            } else {
                ranges
                    .map(|rows| pb::PredictRequest {
                        columns: table.columns(rows),
                        ..Default::default()
                    })
                    .collect()
            }
        }
        Form::Dense => {
            let listed = client.list_models(Some(&models[0])).await?;
            let version = listed
                .first()
                .and_then(|m| match args.version {
                    Some(v) => m.versions.iter().find(|x| x.version == v),
                    None => m.versions.last(),
                })
                .ok_or_else(|| {
                    CliError::Refused(format!("NOT_FOUND: model {:?} has no such version", models[0]))
                })?;
            let width = version.input_width as usize;
            let mut rng = rand::rng();
            (0..DISTINCT)
                .map(|_| pb::PredictRequest {
                    dense_rows: (0..rows)
                        .map(|_| pb::DenseRow {
                            values: (0..width).map(|_| rng.random_range(-1.0..1.0)).collect(),
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect()
        }
    };
    // Each model gets every body in turn; with one model, the bodies.
    let count = models.len().max(DISTINCT);
    Ok((0..count)
        .map(|i| pb::PredictRequest {
            model: models[i % models.len()].clone(),
            version: args.version,
            ..bodies[i % bodies.len()].clone()
        })
        .collect())
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Serval => "serval",
        Protocol::OipGrpc => "oip-grpc",
        Protocol::OipHttp => "oip-http",
    }
}

fn form_name(args: &BenchArgs) -> &'static str {
    match args.form {
        Some(Form::Records) => "records",
        Some(Form::Columns) => "columns",
        Some(Form::Dense) => "dense",
        None if args.data.is_some() => "records",
        None => "dense",
    }
}

async fn call_until(mut caller: Caller, first: usize, measure_from: Instant, end: Instant) -> CallerReport {
    let mut report = CallerReport {
        latency_us: latency_histogram(),
        error_latency_us: latency_histogram(),
        requests: 0,
        errors: BTreeMap::new(),
    };
    let mut next = first;
    loop {
        let sent = Instant::now();
        if sent >= end {
            return report;
        }
        next = (next + 1) % caller.requests();
        let outcome = caller.call(next).await;
        if sent < measure_from {
            continue;
        }
        let elapsed_us = sent.elapsed().as_micros().max(1) as u64;
        report.requests += 1;
        match outcome {
            Ok(_) => report.latency_us.saturating_record(elapsed_us),
            Err(code) => {
                report.error_latency_us.saturating_record(elapsed_us);
                *report.errors.entry(code).or_default() += 1;
            }
        }
    }
}
