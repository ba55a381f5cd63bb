//! The `serval` command-line tool against a real server: the README's
//! quickstart, JSON output for scripts, and errors on stderr.

use crate::common::*;

#[tokio::test]
async fn quickstart_train_list_and_predict() {
    let fx = Fixture::start().await;
    let data = example("online_shoppers_intention.csv");

    let text = fx.train_shoppers(&[]).await;
    assert!(text.contains("Registered shoppers version 1"), "{text}");
    assert!(text.contains("AUC 0.9"), "{text}");

    let trained = last_json_line(&fx.train_shoppers(&["--json"]).await);
    assert_eq!(trained["model"], "shoppers");
    assert_eq!(trained["version"], 2);
    for key in ["auc", "accuracy", "precision", "recall", "f1", "log_loss"] {
        assert!(trained["metrics"][key].is_f64(), "{key} in {trained}");
    }
    assert!(trained["metrics"]["auc"].as_f64().unwrap() >= 0.90);

    let listed = last_json_line(&fx.ok(&["models", "--json"]).await);
    let versions = listed["models"][0]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1]["dataset"]["rows"], 12_330);
    assert!(versions[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let table = fx.ok(&["models"]).await;
    assert_eq!(
        table.lines().filter(|l| l.starts_with("shoppers")).count(),
        2,
        "{table}"
    );

    // A CSV with the training columns, label present: one score per row.
    let csv: String = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .take(21)
        .collect::<Vec<_>>()
        .join("\n");
    let some = fx.write("some.csv", &csv);
    let scored = last_json_line(
        &fx.ok(&["predict", "--model", "shoppers", "--data", &some, "--json"])
            .await,
    );
    assert_eq!(scored["model"], "shoppers");
    assert_eq!(scored["version"], 2);
    let scores = scored["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 20);
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(&s.as_f64().unwrap())));

    // Same rows without the label column, pinned to version 1, as CSV.
    let without_label: String = csv
        .lines()
        .map(|line| line.rsplit_once(',').unwrap().0.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let unlabeled = fx.write("unlabeled.csv", &without_label);
    let out = fx
        .ok(&[
            "predict",
            "--model",
            "shoppers",
            "--version",
            "1",
            "--data",
            &unlabeled,
        ])
        .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "score,label");
    assert_eq!(lines.len(), 21);

    // Inline JSON records.
    let record = r#"{"Administrative":0,"Administrative_Duration":0,"Informational":0,
        "Informational_Duration":0,"ProductRelated":20,"ProductRelated_Duration":600,
        "BounceRates":0.01,"ExitRates":0.02,"PageValues":40,"SpecialDay":0,"Month":"Nov",
        "OperatingSystems":2,"Browser":2,"Region":1,"TrafficType":2,
        "VisitorType":"Returning_Visitor","Weekend":false}"#;
    let inline = last_json_line(
        &fx.ok(&["predict", "--model", "shoppers", "--records", record, "--json"])
            .await,
    );
    assert_eq!(inline["scores"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn errors_are_reported_with_their_code_and_a_failing_exit() {
    let fx = Fixture::start().await;
    let output = fx
        .serval(&["predict", "--model", "ghost", "--records", r#"{"a": 1}"#])
        .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NOT_FOUND"), "{stderr}");
    assert!(stderr.contains("ghost"), "{stderr}");

    let bad = fx.write("bad.csv", "a,b\n1,2\n");
    let output = fx
        .serval(&[
            "train",
            "--model",
            "m",
            "--data",
            &bad,
            "--label",
            "y",
            "--positive",
            "1",
        ])
        .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("label column \"y\""), "{stderr}");

    let output = fx
        .serval(&[
            "train",
            "--model",
            "m",
            "--data",
            "/no/such.csv",
            "--label",
            "y",
            "--positive",
            "1",
        ])
        .await;
    assert!(String::from_utf8_lossy(&output.stderr).contains("/no/such.csv"));
}

#[tokio::test]
async fn bench_reports_throughput_latency_and_errors() {
    let fx = Fixture::start().await;
    let csv = "x,colour,y\n".to_string()
        + &(0..60)
            .map(|i| format!("{},{},{}\n", i, ["a", "b"][i % 2], i % 2))
            .collect::<String>();
    let data = fx.write("small.csv", &csv);
    fx.ok(&[
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
    ])
    .await;

    fn run<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "bench",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
            "--json",
            "--concurrency",
            "8",
        ];
        args.extend_from_slice(extra);
        args
    }
    let dense = last_json_line(&fx.ok(&run(&["--model", "m", "--rows-per-request", "3"])).await);
    assert!(dense["requests"].as_u64().unwrap() > 0, "{dense}");
    assert!(dense["rps"].as_f64().unwrap() > 0.0);
    assert!(
        (dense["rows_per_s"].as_f64().unwrap() - 3.0 * dense["rps"].as_f64().unwrap()).abs() < 1e-6,
        "{dense}"
    );
    assert!(dense["p50_ms"].as_f64().unwrap() <= dense["p99_ms"].as_f64().unwrap());
    assert_eq!(dense["errors"], serde_json::json!({}));

    let records = last_json_line(&fx.ok(&run(&["--model", "m", "--data", &data])).await);
    assert_eq!(records["errors"], serde_json::json!({}), "{records}");

    // The same rows over the Open Inference Protocol, gRPC and HTTP, as
    // a dense tensor and as one input per column, with trace context.
    let http = fx.server.http_addr().unwrap().to_string();
    for protocol in ["oip-grpc", "oip-http"] {
        for form in [
            &["--form", "dense"][..],
            &["--form", "columns", "--data", &data][..],
        ] {
            let mut extra = vec!["--model", "m", "--protocol", protocol, "--http-address", &http];
            extra.extend_from_slice(form);
            extra.extend_from_slice(&["--rows-per-request", "2", "--traceparent"]);
            let oip = last_json_line(&fx.ok(&run(&extra)).await);
            assert_eq!(oip["protocol"], protocol, "{oip}");
            assert!(oip["requests"].as_u64().unwrap() > 0, "{oip}");
            assert_eq!(oip["errors"], serde_json::json!({}), "{protocol} {form:?}: {oip}");
        }
        // Failures are counted by the protocol's status.
        let missing = last_json_line(
            &fx.ok(&run(&[
                "--model",
                "m",
                "--version",
                "7",
                "--protocol",
                protocol,
                "--http-address",
                &http,
                "--form",
                "columns",
                "--data",
                &data,
            ]))
            .await,
        );
        let code = if protocol == "oip-grpc" {
            "NOT_FOUND"
        } else {
            "HTTP_404"
        };
        assert!(missing["errors"][code].as_u64().unwrap() > 0, "{missing}");
    }
    // Records have no form in the Open Inference Protocol.
    let refused = fx
        .serval(&run(&["--model", "m", "--data", &data, "--protocol", "oip-grpc"]))
        .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--form columns"));

    let health = last_json_line(&fx.ok(&run(&["--rpc", "health"])).await);
    assert_eq!(health["rpc"], "health");
    assert!(health["requests"].as_u64().unwrap() > 0);

    // Calls that fail are counted by status code.
    let missing = last_json_line(
        &fx.ok(&run(&["--model", "m", "--version", "7", "--data", &data]))
            .await,
    );
    assert!(missing["errors"]["NOT_FOUND"].as_u64().unwrap() > 0, "{missing}");
    assert_eq!(missing["rps"], missing["requests"].as_f64().unwrap() / 0.5);
}
