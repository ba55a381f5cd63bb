//! Outcome feedback through real servers: prediction ids on every row,
//! ReportOutcomes for a `predict` token, ids of another replica counted
//! apart, the online quality in GetLiveStats and `/metrics`, and tracking
//! turned off.

use serval_client::{CallMetadata, ServalClient, proto as pb};

use crate::common::*;

fn outcome(id: &str, label: bool) -> pb::OutcomeReport {
    pb::OutcomeReport {
        prediction_id: id.to_string(),
        label,
        observed_at: None,
    }
}

fn small_rows() -> pb::PredictRequest {
    pb::PredictRequest {
        model: "small".into(),
        records: (0..20)
            .map(|i| small_record(f64::from(i), ["red", "blue"][i as usize % 2], i % 3 == 0))
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn outcomes_join_predictions_of_this_replica_and_show_as_online_quality() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestServer::start_in(dir, |config| {
        config.replica_name = "replica-a".into();
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        config.tokens = Some("admin:ops:ops-admin-token,predict:shop:shop-predict-token".into());
    })
    .await;
    let url = test.server.url();
    let connect = |token: &'static str| {
        let url = url.clone();
        async move {
            let metadata = CallMetadata::default().with_token(token).unwrap();
            ServalClient::connect_with(&url, metadata).await.unwrap()
        }
    };
    let mut admin = connect("ops-admin-token").await;
    let mut shop = connect("shop-predict-token").await;
    admin.train(small_spec("small"), small_csv()).await.unwrap();

    let answer = shop.predict(small_rows()).await.unwrap();
    let ids = &answer.prediction_ids;
    assert_eq!(ids.len(), 20);
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 20, "{ids:?}");
    // The scores a perfect ranking would have: positive where the score is
    // high.
    let labels: Vec<bool> = answer.scores.iter().map(|&s| s >= 0.5).collect();
    let reports: Vec<pb::OutcomeReport> = ids
        .iter()
        .zip(&labels)
        .rev()
        .map(|(id, &label)| outcome(id, label))
        .collect();
    let counts = shop.report_outcomes(reports.clone()).await.unwrap();
    assert_eq!((counts.matched, counts.unmatched, counts.duplicate), (20, 0, 0));
    let again = shop.report_outcomes(reports[..5].to_vec()).await.unwrap();
    assert_eq!((again.matched, again.duplicate), (0, 5));
    assert_eq!(
        status_of(
            test.client
                .clone()
                .report_outcomes(vec![outcome(&ids[0], true)])
                .await
        )
        .code(),
        tonic::Code::Unauthenticated
    );

    // Another replica's ids are counted apart, not matched.
    let other = TestServer::start_in(tempfile::tempdir().unwrap(), |config| {
        config.replica_name = "replica-b".into();
    })
    .await;
    let mut other_client = other.client.clone();
    other_client
        .train(small_spec("small"), small_csv())
        .await
        .unwrap();
    let theirs = other_client.predict(small_rows()).await.unwrap().prediction_ids;
    let counts = shop
        .report_outcomes(theirs.iter().map(|id| outcome(id, true)).collect())
        .await
        .unwrap();
    assert_eq!(
        (counts.matched, counts.unmatched, counts.other_replica),
        (0, 20, 20)
    );
    assert_ne!(theirs[0][..8], ids[0][..8], "the tag names the replica");

    let stats = shop.live_stats("small", 60).await.unwrap();
    let online = stats.versions[0].online.clone().expect("online quality");
    let positives = labels.iter().filter(|&&l| l).count() as u64;
    assert_eq!((online.outcomes, online.positives), (20, positives));
    if positives > 0 && positives < 20 {
        assert_eq!(online.auc, Some(1.0));
    }
    assert_eq!(stats.versions[0].awaiting_outcomes, 0);
    assert!(stats.versions[0].shadow.is_none());

    let metrics = http_get(test.server.metrics_addr().unwrap(), "/metrics").await;
    for line in [
        "serval_outcomes_reported_total{result=\"matched\"} 20",
        "serval_outcomes_reported_total{result=\"duplicate\"} 5",
        "serval_outcomes_reported_total{result=\"other_replica\"} 20",
        "serval_online_outcomes{arm=\"live\",model=\"small\",version=\"1\"} 20",
        "serval_tracked_predictions 20",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    assert!(
        !metrics.contains(&ids[0][18..]),
        "no prediction id in the metrics"
    );
    other.server.shutdown().await.unwrap();
    test.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn with_tracking_off_predict_answers_no_ids_and_outcomes_are_refused() {
    let test = TestServer::start_in(tempfile::tempdir().unwrap(), |config| {
        config.outcome_tracking = serval_server::config::Switch::Off;
    })
    .await;
    let mut client = test.client.clone();
    client.train(small_spec("small"), small_csv()).await.unwrap();
    let answer = client.predict(small_rows()).await.unwrap();
    assert_eq!(answer.scores.len(), 20);
    assert!(answer.prediction_ids.is_empty());
    let refused = status_of(client.report_outcomes(vec![outcome("x", true)]).await);
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("--outcome-tracking off"),
        "{refused:?}"
    );
}
