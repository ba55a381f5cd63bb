//! Explanations through the real server on a real dataset: integrated
//! gradients add up to each row's logit difference from the baseline
//! (completeness within 1 %), are reported by original CSV column with the
//! value sent, cut to top_k with the rest summed, leave scores unchanged,
//! and work for dense rows; permutation importance is stored with the
//! version.

use std::collections::HashMap;

use crate::common::*;
use serval_client::proto as pb;
use serval_model::explain::completeness_tolerance;

fn shoppers_records(count: usize) -> Vec<pb::Record> {
    let records = serval_client::records::records_from_csv(dataset(SHOPPERS).as_slice(), b',').unwrap();
    // Spread over the file, so both classes and many months appear.
    records
        .iter()
        .step_by(records.len() / count)
        .take(count)
        .cloned()
        .collect()
}

fn explain(records: Vec<pb::Record>, top_k: u32) -> pb::PredictRequest {
    pb::PredictRequest {
        model: "shoppers".into(),
        records,
        explain: true,
        top_k,
        ..Default::default()
    }
}

#[tokio::test]
async fn attributions_add_up_by_original_column_and_leave_scores_unchanged() {
    let mut test = TestServer::start().await;
    let trained = test
        .client
        .train(spec("shoppers", "Revenue", "TRUE"), dataset(SHOPPERS))
        .await
        .unwrap();
    let columns: Vec<String> = trained.columns.iter().map(|c| c.name.clone()).collect();
    assert!(columns.contains(&"Month".to_string()) && columns.contains(&"PageValues".to_string()));

    let records = shoppers_records(200);
    let plain = test
        .client
        .predict(pb::PredictRequest {
            model: "shoppers".into(),
            records: records.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(plain.explanations.is_empty(), "no explanations unless asked");

    // Every column, so completeness can be checked on the listed values.
    let full = test.client.predict(explain(records.clone(), 1000)).await.unwrap();
    assert_eq!(full.scores, plain.scores, "explaining does not change scores");
    assert_eq!(full.explanations.len(), records.len());
    let mut top_columns: HashMap<String, usize> = HashMap::new();
    for (i, (e, record)) in full.explanations.iter().zip(&records).enumerate() {
        assert_eq!(
            e.attributions.len(),
            columns.len(),
            "row {i}: one attribution per original column"
        );
        assert_eq!(e.other, 0.0, "row {i}: nothing left out");
        let mut seen: Vec<&str> = e.attributions.iter().map(|a| a.column.as_str()).collect();
        seen.sort_unstable();
        let mut expected: Vec<&str> = columns.iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(seen, expected, "row {i}");
        for pair in e.attributions.windows(2) {
            assert!(
                pair[0].attribution.abs() >= pair[1].attribution.abs(),
                "row {i}: not sorted"
            );
        }
        // Completeness: attributions add up to logit(row) - logit(baseline).
        let difference = e.logit - e.baseline_logit;
        let total: f64 = e.attributions.iter().map(|a| a.attribution).sum();
        assert!(
            (total - difference).abs() <= f64::from(completeness_tolerance(difference as f32)) * 1.001,
            "row {i}: attributions sum to {total}, logit difference {difference} ({} steps)",
            e.steps
        );
        assert!(
            (e.completeness_gap - (total - difference)).abs() < 1e-3,
            "row {i}"
        );
        // The logit is the row's score.
        let score = 1.0 / (1.0 + (-e.logit).exp());
        assert!((score - f64::from(full.scores[i])).abs() < 1e-5, "row {i}");
        // Values are the record's, as sent.
        for a in &e.attributions {
            let sent = match &record.fields[&a.column].kind {
                Some(pb::value::Kind::StringValue(s)) => s.clone(),
                other => panic!("CSV records carry text, got {other:?}"),
            };
            assert_eq!(a.value, sent, "row {i} column {}", a.column);
        }
        if full.scores[i] > 0.5 {
            *top_columns.entry(e.attributions[0].column.clone()).or_default() += 1;
        }
    }
    // On this dataset the page value of the session drives purchases.
    let leader = top_columns
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(c, _)| c.as_str());
    assert_eq!(leader, Some("PageValues"), "{top_columns:?}");

    // top_k cuts the list and sums the rest; the default is 5.
    let short = test
        .client
        .predict(explain(records[..20].to_vec(), 3))
        .await
        .unwrap();
    let default = test
        .client
        .predict(explain(records[..20].to_vec(), 0))
        .await
        .unwrap();
    for i in 0..20 {
        let all = &full.explanations[i];
        let cut = &short.explanations[i];
        assert_eq!(cut.attributions.len(), 3);
        assert_eq!(default.explanations[i].attributions.len(), 5);
        assert_eq!(cut.attributions[..], all.attributions[..3], "row {i}");
        let rest: f64 = all.attributions[3..].iter().map(|a| a.attribution).sum();
        assert!((cut.other - rest).abs() < 1e-6, "row {i}");
    }

    // Dense rows: explained the same way, without values.
    let registry = serval_registry::Registry::open(test.database_path().to_str().unwrap())
        .await
        .unwrap();
    let docs =
        serval_server::catalog::documents(&registry.version("shoppers", Some(1)).await.unwrap()).unwrap();
    registry.close().await;
    assert_eq!(
        docs.encoder.baseline.len(),
        trained.input_width as usize,
        "the training mean is stored"
    );
    let encoder = serval_model::encoder::Encoder::new(docs.encoder);
    let mut dense = Vec::new();
    serval_server::encoding::encode_record(&encoder, 7, &records[7], &mut dense).unwrap();
    let dense_answer = test
        .client
        .predict(pb::PredictRequest {
            model: "shoppers".into(),
            dense_rows: vec![pb::DenseRow { values: dense }],
            explain: true,
            top_k: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let from_dense = &dense_answer.explanations[0];
    assert!(from_dense.attributions.iter().all(|a| a.value.is_empty()));
    let by_column = |e: &pb::RowExplanation| -> HashMap<String, f64> {
        e.attributions
            .iter()
            .map(|a| (a.column.clone(), a.attribution))
            .collect()
    };
    let (a, b) = (by_column(from_dense), by_column(&full.explanations[7]));
    for (column, value) in &a {
        assert!(
            (value - b[column]).abs() < 1e-5,
            "{column}: {value} vs {}",
            b[column]
        );
    }

    // Explaining is bounded per call.
    let too_many = test.client.predict(explain(shoppers_records(300), 0)).await;
    let status = match too_many {
        Err(serval_client::ClientError::Status(status)) => status,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("explanations are limited to 256 rows"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn permutation_importance_is_stored_by_original_column() {
    let mut test = TestServer::start().await;
    let trained = test
        .client
        .train(spec("shoppers", "Revenue", "TRUE"), dataset(SHOPPERS))
        .await
        .unwrap();
    let report = test.client.version_report("shoppers", None).await.unwrap();
    let importance = &report.importance;
    assert_eq!(importance.len(), trained.columns.len(), "{importance:?}");
    assert_eq!(importance[0].column, "PageValues", "{importance:?}");
    assert!(importance[0].importance > 0.05, "{importance:?}");
    for pair in importance.windows(2) {
        assert!(pair[0].importance >= pair[1].importance, "{importance:?}");
    }
    // Importance is a drop in AUC: bounded by the AUC itself.
    let auc = trained.metrics.unwrap().auc;
    assert!(
        importance.iter().all(|f| f.importance.abs() <= auc),
        "{importance:?}"
    );
}

/// `csv` with two columns appended that never change: a number and a
/// category.
fn with_constant_columns(csv: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(csv.to_vec()).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        out.push_str(line);
        out.push_str(if i == 0 {
            ",ConstantNumber,ConstantChannel\n"
        } else {
            ",1,web\n"
        });
    }
    out.into_bytes()
}

#[tokio::test]
async fn attributions_are_complete_on_every_shared_dataset_and_zero_for_ignored_columns() {
    let mut test = TestServer::start().await;
    let telco = pb::TrainSpec {
        drop_columns: vec!["customerID".into()],
        ..spec("churn", "Churn", "Yes")
    };
    let cases = [
        (SHOPPERS, spec("shoppers", "Revenue", "TRUE")),
        (TELCO, telco),
        (COUPON, spec("coupon", "Y", "1")),
    ];
    for (file, spec) in cases {
        let model = spec.model.clone();
        let csv = with_constant_columns(&dataset(file));
        test.client.train(spec, csv.clone()).await.unwrap();
        let all = serval_client::records::records_from_csv(csv.as_slice(), b',').unwrap();
        let records: Vec<pb::Record> = all.iter().step_by(all.len() / 250).take(250).cloned().collect();
        let answer = test
            .client
            .predict(pb::PredictRequest {
                model: model.clone(),
                records,
                explain: true,
                top_k: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut worst_gap: f64 = 0.0;
        let mut most_segments = 0;
        for (i, e) in answer.explanations.iter().enumerate() {
            let difference = e.logit - e.baseline_logit;
            let total: f64 = e.attributions.iter().map(|a| a.attribution).sum();
            assert!(
                (total - difference).abs() <= f64::from(completeness_tolerance(difference as f32)) * 1.001,
                "{model} row {i}: attributions sum to {total}, logit difference {difference} ({} steps)",
                e.steps
            );
            for a in &e.attributions {
                if a.column.starts_with("Constant") {
                    assert_eq!(
                        a.attribution, 0.0,
                        "{model} row {i}: {} is ignored by the model",
                        a.column
                    );
                }
            }
            worst_gap = worst_gap.max(e.completeness_gap.abs() / difference.abs().max(1e-3));
            most_segments = most_segments.max(e.steps);
        }
        println!(
            "{model}: worst relative completeness gap {worst_gap:.2e}, at most {most_segments} linear segments"
        );
        // Importance agrees: shuffling a constant column changes nothing.
        let report = test.client.version_report(&model, None).await.unwrap();
        for f in report
            .importance
            .iter()
            .filter(|f| f.column.starts_with("Constant"))
        {
            assert_eq!(f.importance, 0.0, "{model}: {f:?}");
        }
    }
}
