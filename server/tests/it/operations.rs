//! What an operator relies on, against real servers on loopback ports:
//! health and its drain, reflection in both protocols, Prometheus metrics,
//! request ids, token auth with roles, TLS and mutual TLS, the training-job
//! limit, and a graceful shutdown that cancels training cleanly.

use std::time::Duration;

use crate::common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use serval_client::{CallMetadata, ClientError, ConnectOptions, ServalClient, proto as pb};
use serval_server::{Server, ServerConfig};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

fn config(dir: &tempfile::TempDir) -> ServerConfig {
    ServerConfig::for_database(dir.path().join("serval.db").to_string_lossy())
}

#[tokio::test]
async fn health_serves_then_drains() {
    let test = TestServer::start().await;
    let mut health = HealthClient::new(test.client.channel().clone());
    for service in ["", "serval.v1.ModelService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "serval.v1.ModelService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    let stopping = tokio::spawn(test.server.shutdown());
    let drained = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .unwrap();
    if let Ok(Some(update)) = drained {
        assert_eq!(update.status(), ServingStatus::NotServing);
    }
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn reflection_lists_every_service_in_both_protocols() {
    let test = TestServer::start().await;
    let channel = test.client.channel().clone();

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient as V1;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest as V1Request;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse as V1Response;
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(V1Request::ListServices(String::new())),
    };
    let mut answers = V1::new(channel.clone())
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(V1Response::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["serval.v1.ModelService", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as V1Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol(
            "serval.v1.ModelService".into(),
        )),
    };
    let mut answers = V1Alpha::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match answers.message().await.unwrap().unwrap().message_response {
        Some(AlphaResponse::FileDescriptorResponse(files)) => {
            assert!(!files.file_descriptor_proto.is_empty())
        }
        other => panic!("expected file descriptors, got {other:?}"),
    }
}

#[tokio::test]
async fn metrics_count_calls_batches_versions_and_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut test =
        TestServer::start_in(dir, |c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    test.client.train(small_spec("small"), small_csv()).await.unwrap();
    for x in [1.0, 15.0] {
        test.client
            .predict(pb::PredictRequest {
                model: "small".into(),
                records: vec![small_record(x, "red", true)],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let _ = test.client.list_models(Some("ghost")).await;
    let text = http_get(test.server.metrics_addr().unwrap(), "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for expected in [
        "serval_grpc_requests_total{code=\"OK\",rpc=\"Predict\"} 2",
        "serval_grpc_requests_total{code=\"NOT_FOUND\",rpc=\"ListModels\"} 1",
        "serval_grpc_request_duration_seconds_bucket{rpc=\"Predict\"",
        "serval_predict_requests_total{code=\"OK\",model=\"small\",version=\"1\"} 2",
        "serval_predict_duration_seconds_count{code=\"OK\",model=\"small\",version=\"1\"} 2",
        "serval_predict_rows_total{model=\"small\",version=\"1\"} 2",
        "serval_batches_total{model=\"small\",version=\"1\"} 2",
        "serval_batch_rows_bucket",
        "serval_batch_queue_wait_seconds_bucket",
        "serval_batch_queued_rows{model=\"small\",version=\"1\"} 0",
        "serval_loaded_versions 1",
        "serval_training_jobs_running 0",
        "serval_training_jobs_finished_total{state=\"succeeded\"} 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(
        http_get(test.server.metrics_addr().unwrap(), "/other")
            .await
            .starts_with("HTTP/1.1 404")
    );
}

#[tokio::test]
async fn request_ids_are_returned_and_generated() {
    let mut test = TestServer::start().await;
    test.client.train(small_spec("small"), small_csv()).await.unwrap();
    let mut request = tonic::Request::new(pb::ListModelsRequest::default());
    request
        .metadata_mut()
        .insert("x-request-id", "req-1234".parse().unwrap());
    let response = test.client.raw().list_models(request).await.unwrap();
    assert_eq!(response.metadata().get("x-request-id").unwrap(), "req-1234");
    let generated = test
        .client
        .raw()
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap();
    let id = generated
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 16, "{id}");
}

#[tokio::test]
async fn tokens_authenticate_and_roles_authorise() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# who may call\nadmin:alice:alice-admin-token\n").unwrap();
    let mut config = config(&dir);
    config.tokens_file = Some(tokens);
    config.tokens = Some("predict:checkout:checkout-predict-token".into());
    let server = Server::start(&config).await.unwrap();
    let connect = |token: Option<&'static str>| {
        let url = server.url();
        async move {
            let mut metadata = CallMetadata::default();
            if let Some(token) = token {
                metadata = metadata.with_token(token).unwrap();
            }
            ServalClient::connect_with(&url, metadata).await.unwrap()
        }
    };
    let mut anonymous = connect(None).await;
    let mut wrong = connect(Some("not-a-real-token")).await;
    let mut predictor = connect(Some("checkout-predict-token")).await;
    let mut admin = connect(Some("alice-admin-token")).await;

    let status = status_of(anonymous.list_models(None).await);
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("authorization"), "{status:?}");
    assert_eq!(
        status_of(wrong.list_models(None).await).code(),
        tonic::Code::Unauthenticated
    );
    let denied = status_of(predictor.train(small_spec("small"), small_csv()).await);
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(
        denied.message().contains("Train needs an admin token"),
        "{denied:?}"
    );

    admin.train(small_spec("small"), small_csv()).await.unwrap();
    let answer = predictor
        .predict(pb::PredictRequest {
            model: "small".into(),
            records: vec![small_record(3.0, "red", true)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(answer.scores.len(), 1);
    assert_eq!(predictor.list_models(None).await.unwrap().len(), 1);
    let change = pb::update_traffic_request::Change::Rollback(pb::RollbackChange { to_version: Some(1) });
    assert_eq!(
        status_of(predictor.update_traffic("small", change, "").await).code(),
        tonic::Code::PermissionDenied
    );
    admin.update_traffic("small", change, "pin").await.unwrap();
    let history = predictor.rollout_history("small", None).await.unwrap();
    assert!(
        history.events.iter().all(|e| e.actor == "alice"),
        "{:?}",
        history.events
    );

    // Health stays open for probes.
    let health = HealthClient::new(anonymous.channel().clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(health.into_inner().status(), ServingStatus::Serving);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn non_loopback_addresses_need_tokens_or_an_explicit_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.listen = "0.0.0.0:0".parse().unwrap();
    let refused = Server::start(&config).await.err().expect("refused");
    assert!(refused.to_string().contains("without access tokens"), "{refused}");
    config.insecure = true;
    Server::start(&config).await.unwrap().shutdown().await.unwrap();
    config.insecure = false;
    config.tokens = Some("admin:ops:a-long-admin-token".into());
    Server::start(&config).await.unwrap().shutdown().await.unwrap();
    config.tokens = Some("root:ops:a-long-admin-token".into());
    let bad = Server::start(&config).await.err().expect("bad token entry");
    assert!(bad.to_string().contains("unknown role"), "{bad}");
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for "localhost" and a client certificate.
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, san) in [("server", "localhost"), ("client", "client.serval")] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![san.to_string()])
                .unwrap()
                .signed_by(&key, &*ca)
                .unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    fn options(&self, with_client_certificate: bool) -> ConnectOptions {
        let identity = with_client_certificate.then(|| (self.read("client.pem"), self.read("client.key")));
        ConnectOptions::default().with_tls(Some(self.read("ca.pem")), identity, Some("localhost".into()))
    }
}

#[tokio::test]
async fn tls_and_mutual_tls() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.tls_cert = Some(pki.path("server.pem"));
    config.tls_key = Some(pki.path("server.key"));
    let server = Server::start(&config).await.unwrap();
    let url = format!("https://127.0.0.1:{}", server.local_addr().port());
    let mut client = ServalClient::connect_using(&url, pki.options(false))
        .await
        .unwrap();
    assert!(client.list_models(None).await.unwrap().is_empty());
    // Plain text to a TLS port fails.
    let plain = format!("http://127.0.0.1:{}", server.local_addr().port());
    let refused = match ServalClient::connect(&plain).await {
        Ok(mut c) => c.list_models(None).await.is_err(),
        Err(_) => true,
    };
    assert!(refused);
    server.shutdown().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut config = self::config(&dir);
    config.tls_cert = Some(pki.path("server.pem"));
    config.tls_key = Some(pki.path("server.key"));
    config.tls_client_ca = Some(pki.path("ca.pem"));
    let server = Server::start(&config).await.unwrap();
    let url = format!("https://127.0.0.1:{}", server.local_addr().port());
    let without = match ServalClient::connect_using(&url, pki.options(false)).await {
        Ok(mut c) => c.list_models(None).await.is_err(),
        Err(_) => true,
    };
    assert!(without, "a client without a certificate must be refused");
    let mut with = ServalClient::connect_using(&url, pki.options(true))
        .await
        .unwrap();
    assert!(with.list_models(None).await.unwrap().is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn excess_training_jobs_are_refused_and_shutdown_cancels_training() {
    let dir = tempfile::tempdir().unwrap();
    let mut test = TestServer::start_in(dir, |c| c.max_training_jobs = 1).await;
    let (_, _events) = start_long_training(&mut test.client).await;
    let busy = status_of(test.client.train(small_spec("small"), small_csv()).await);
    assert_eq!(busy.code(), tonic::Code::ResourceExhausted);
    assert!(busy.message().contains("training job"), "{busy:?}");

    let database = test.database_path();
    let started = std::time::Instant::now();
    test.server.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    let registry = serval_registry::Registry::open(database.to_str().unwrap())
        .await
        .unwrap();
    let jobs = registry.jobs(None, 10).await.unwrap();
    assert_eq!(jobs[0].state, serval_registry::JobState::Cancelled, "{jobs:?}");
    assert!(
        registry.list_models(None).await.unwrap().is_empty(),
        "no partial version"
    );
}

#[tokio::test]
async fn calls_beyond_the_per_connection_limit_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut test = TestServer::start_in(dir, |config| {
        config.max_calls_per_connection = 1;
        // One compute thread and a delay, so calls overlap.
        config.max_batch_delay = Duration::from_millis(20);
    })
    .await;
    test.client.train(small_spec("small"), small_csv()).await.unwrap();
    // One connection (the client's channel), many calls at once.
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let mut client = test.client.clone();
            tokio::spawn(async move {
                client
                    .predict(pb::PredictRequest {
                        model: "small".into(),
                        records: vec![small_record(f64::from(i), "red", true)],
                        ..Default::default()
                    })
                    .await
            })
        })
        .collect();
    let (mut answered, mut refused) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(response) => {
                assert_eq!(response.scores.len(), 1);
                answered += 1;
            }
            Err(ClientError::Status(status)) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().contains("Too many active requests"),
                    "{status:?}"
                );
                refused += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(
        answered >= 1 && refused >= 1,
        "{answered} answered, {refused} refused"
    );
    // The connection is still good afterwards.
    test.client
        .predict(pb::PredictRequest {
            model: "small".into(),
            records: vec![small_record(1.0, "red", true)],
            ..Default::default()
        })
        .await
        .unwrap();
}
