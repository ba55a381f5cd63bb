//! `serval models delete` against a real server, on versions trained from
//! the real Telco churn dataset: the text and JSON summaries, the refusal
//! while an alias points at the model, NOT_FOUND, and the deletes in
//! `serval rollout history`.

use crate::common::*;

async fn train_telco(fx: &Fixture, seed: &str) {
    fx.ok(&[
        "train",
        "--model",
        "telco",
        "--data",
        &example("Telco-Customer-Churn.csv"),
        "--label",
        "Churn",
        "--positive",
        "Yes",
        "--drop",
        "customerID",
        "--epochs",
        "2",
        "--seed",
        seed,
    ])
    .await;
}

fn listed_versions(models_json: &str) -> Vec<u64> {
    last_json_line(models_json)["models"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["versions"].as_array().unwrap().clone())
        .map(|v| v["version"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn models_delete_removes_versions_refuses_while_aliased_and_is_audited() {
    let fx = Fixture::start().await;
    for seed in ["1", "2", "3"] {
        train_telco(&fx, seed).await;
    }

    let text = fx
        .ok(&[
            "--actor",
            "alice",
            "models",
            "delete",
            "telco",
            "--version",
            "1",
            "--reason",
            "bad export",
        ])
        .await;
    let line = text.trim_end();
    assert!(
        line.starts_with("Deleted telco version 1 (reclaimed ") && line.ends_with(" KiB)"),
        "{text}"
    );
    assert_eq!(listed_versions(&fx.ok(&["models", "--json"]).await), vec![2, 3]);

    let history = fx.ok(&["rollout", "history", "--model", "telco"]).await;
    let deleted = history.lines().last().unwrap();
    assert!(
        deleted.contains("telco version_deleted by alice") && deleted.ends_with("(bad export)"),
        "{history}"
    );

    fx.ok(&[
        "rollout",
        "alias",
        "--model",
        "telco",
        "--name",
        "production",
        "--version",
        "3",
    ])
    .await;
    let refused = fx.serval(&["models", "delete", "telco"]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("FAILED_PRECONDITION") && stderr.contains("alias \"production\" (version 3)"),
        "{stderr}"
    );
    assert_eq!(listed_versions(&fx.ok(&["models", "--json"]).await), vec![2, 3]);

    fx.ok(&[
        "rollout",
        "alias",
        "--model",
        "telco",
        "--name",
        "production",
        "--delete",
    ])
    .await;
    let whole = last_json_line(&fx.ok(&["models", "delete", "telco", "--json"]).await);
    assert_eq!(whole["model"], "telco");
    assert_eq!(whole["versions"], serde_json::json!([2, 3]));
    assert!(whole["bytes_reclaimed"].as_u64().unwrap() > 0, "{whole}");
    assert!(listed_versions(&fx.ok(&["models", "--json"]).await).is_empty());

    let missing = fx.serval(&["models", "delete", "telco", "--version", "2"]).await;
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("NOT_FOUND") && stderr.contains("telco"),
        "{stderr}"
    );

    // Trained again, the model takes the next number, not 1.
    train_telco(&fx, "4").await;
    assert_eq!(listed_versions(&fx.ok(&["models", "--json"]).await), vec![4]);
}
