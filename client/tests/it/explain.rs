//! `serval predict --explain` and `serval models show` against a real
//! server: attributions readable as text and complete in JSON, and a
//! version's details with its feature importance.

use crate::common::*;

#[tokio::test]
async fn predict_explains_rows_and_models_show_lists_importance() {
    let fx = Fixture::start().await;
    fx.train_shoppers(&[]).await;
    let record = r#"{"Administrative": 3, "Administrative_Duration": 80, "Informational": 0,
        "Informational_Duration": 0, "ProductRelated": 40, "ProductRelated_Duration": 1500,
        "BounceRates": 0.0, "ExitRates": 0.01, "PageValues": 45.5, "SpecialDay": 0,
        "Month": "Nov", "OperatingSystems": 2, "Browser": 2, "Region": 1, "TrafficType": 2,
        "VisitorType": "Returning_Visitor", "Weekend": false}"#;

    let text = fx
        .ok(&[
            "predict",
            "--model",
            "shoppers",
            "--records",
            record,
            "--explain",
            "--top-k",
            "3",
        ])
        .await;
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("row 1: score 0."), "{text}");
    assert!(lines[0].contains("= average"), "{text}");
    assert!(
        lines[1].trim_start().starts_with("PageValues = 45.5"),
        "the page value leads this purchase: {text}"
    );
    assert_eq!(lines.len(), 1 + 3 + 1, "three columns and the rest: {text}");
    assert!(lines[4].trim_start().starts_with("other columns"), "{text}");

    let json = last_json_line(
        &fx.ok(&[
            "predict",
            "--model",
            "shoppers",
            "--records",
            record,
            "--explain",
            "--json",
        ])
        .await,
    );
    let e = &json["explanations"][0];
    let attributions = e["attributions"].as_array().unwrap();
    assert_eq!(attributions.len(), 5, "top 5 by default: {e}");
    assert_eq!(attributions[0]["column"], "PageValues");
    assert_eq!(attributions[0]["value"], "45.5");
    let total: f64 = attributions
        .iter()
        .map(|a| a["attribution"].as_f64().unwrap())
        .sum::<f64>()
        + e["other"].as_f64().unwrap();
    let difference = e["logit"].as_f64().unwrap() - e["baseline_logit"].as_f64().unwrap();
    assert!(
        (total - difference).abs() <= 0.01 * difference.abs() + 1e-3,
        "{total} vs {difference}"
    );
    let score = json["scores"][0].as_f64().unwrap();
    assert!((score - 1.0 / (1.0 + (-e["logit"].as_f64().unwrap()).exp())).abs() < 1e-5);

    let plain = last_json_line(
        &fx.ok(&["predict", "--model", "shoppers", "--records", record, "--json"])
            .await,
    );
    assert!(plain.get("explanations").is_none());
    assert_eq!(plain["scores"][0], json["scores"][0]);

    let shown = fx.ok(&["models", "show", "shoppers"]).await;
    assert!(shown.starts_with("shoppers version 1"), "{shown}");
    assert!(shown.contains("validation  AUC 0.9"), "{shown}");
    assert!(shown.contains("importance  drop in validation AUC"), "{shown}");
    let importance_lines: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.contains("importance  drop"))
        .skip(1)
        .collect();
    assert_eq!(importance_lines.len(), 17, "{shown}");
    assert!(
        importance_lines[0].trim_start().starts_with("PageValues"),
        "{shown}"
    );

    let shown = last_json_line(
        &fx.ok(&["models", "show", "shoppers", "--version", "1", "--json"])
            .await,
    );
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["importance"].as_array().unwrap().len(), 17);
    assert_eq!(shown["importance"][0]["column"], "PageValues");
    assert!(shown["confusion"]["true_positives"].as_u64().unwrap() > 0);

    let missing = fx.serval(&["models", "show", "shoppers", "--version", "9"]).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has no version 9"));
}
