//! Starting and stopping a server: open the registry, load what serves
//! traffic, bind the listener (TLS when configured), and serve ModelService,
//! the standard health service, server reflection and the Open Inference
//! Protocol's `inference.GRPCInferenceService` behind authentication and
//! the request-context layer, and the Open Inference Protocol over HTTP
//! on its own listener, until told to stop; then drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serval_proto::v1::model_service_server::ModelServiceServer;
use serval_registry::{OpenOptions, Registry};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::AuthInterceptor;
use crate::batching::ComputePool;
use crate::config::ServerConfig;
use crate::error::ServalError;
use crate::outcomes::OutcomeStore;
use crate::outcomes::metrics::OutcomeCollector;
use crate::registry_sync::{BackgroundSettings, JOB_STALE_AFTER, REGISTRY_HEALTH_SERVICE, RegistrySync};
use crate::request_context::RequestContextLayer;
use crate::routing::RoutingTable;
use crate::service::{ModelServiceImpl, ServiceState, predict_route};
use crate::serving::{BatchingSettings, ModelStore};
use crate::telemetry::ServerMetrics;

/// The health service's name for ModelService.
const MODEL_SERVICE: &str = "serval.v1.ModelService";

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    /// The HTTP listener; it ends once its connections have closed.
    http_task: Option<JoinHandle<()>>,
    stop_background: watch::Sender<bool>,
    metrics: ServerMetrics,
    state: Arc<ServiceState>,
    health: HealthReporter,
    grace: Duration,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Registry(#[from] serval_registry::RegistryError),
    #[error("cannot load the registry's serving state: {0}")]
    Serving(#[from] ServalError),
    #[error("cannot start compute threads: {0}")]
    Threads(std::io::Error),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] tonic::transport::Error),
}

fn read_pem(path: &std::path::Path, what: &str) -> Result<Vec<u8>, StartError> {
    std::fs::read(path).map_err(|e| StartError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

/// Makes ring the process's TLS provider, as tonic's `tls-ring` expects:
/// with more than one provider linked (object_store brings aws-lc-rs),
/// rustls will not choose by itself. A provider already installed stays.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn tls_config(config: &ServerConfig) -> Result<Option<ServerTlsConfig>, StartError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    install_tls_provider();
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read_pem(cert, "--tls-cert")?,
        read_pem(key, "--tls-key")?,
    ));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read_pem(ca, "--tls-client-ca")?));
    }
    Ok(Some(tls))
}

impl Server {
    /// Opens the registry, binds `config.listen` and starts serving in the
    /// background.
    pub async fn start(config: &ServerConfig) -> Result<Server, StartError> {
        let tokens = config.load_tokens().map_err(StartError::Config)?;
        if tokens.is_empty() && !config.listen.ip().is_loopback() && !config.insecure {
            return Err(StartError::Config(format!(
                "refusing to serve {} without access tokens: give --tokens-file or --tokens \
                 (or --insecure to allow anyone who can reach the port)",
                config.listen
            )));
        }
        let tls = tls_config(config)?;
        // Before anything is opened: a --device that cannot be used (or a
        // malformed --data-source-allow) stops the start here.
        let limits = config.service_limits().map_err(StartError::Config)?;

        let registry = Registry::open_with(
            &config.database,
            OpenOptions {
                max_connections: config.database_max_connections,
                reserve_bytes: config.registry_reserve_bytes,
            },
        )
        .await?;
        let abandoned = registry
            .fail_abandoned_jobs(Some(&config.replica_name), JOB_STALE_AFTER)
            .await?;
        if abandoned > 0 {
            tracing::warn!(
                jobs = abandoned,
                "marked jobs left running by a stopped server as failed"
            );
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                address: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            address: config.listen,
            source,
        })?;
        let metrics = ServerMetrics::new()?;
        metrics.watch_registry_storage(registry.clone())?;
        let outcomes = Arc::new(OutcomeStore::new(&config.replica_name, config.outcome_settings()));
        metrics
            .registry
            .register(Box::new(OutcomeCollector::new(outcomes.clone())?))?;
        let batching = BatchingSettings {
            config: config.batch_config(),
            pool: ComputePool::new(config.compute_threads as usize).map_err(StartError::Threads)?,
            metrics: metrics.batching.clone(),
            loaded_versions: metrics.loaded_versions.clone(),
            version_loads: metrics.version_loads.clone(),
            idle_unloads: metrics.idle_unloads.clone(),
        };
        // Background tasks (metrics endpoint, registry poller, change
        // streams) stop with the server.
        let (stop_background, background_stopped) = watch::channel(false);
        let models = Arc::new(ModelStore::new(registry.clone(), batching));
        let routing = Arc::new(RoutingTable::default());
        let sync = RegistrySync::start(registry.clone(), models.clone(), routing.clone()).await?;
        let state = ServiceState::new(
            registry,
            models,
            routing,
            sync.clone(),
            limits,
            stop_background.subscribe(),
            metrics.clone(),
            config.replica_name.clone(),
            outcomes.clone(),
        )
        .with_fleet(config.fleet_settings());
        let state = Arc::new(state);
        tokio::spawn(crate::outcomes::sweep_task(outcomes, stop_background.subscribe()));
        crate::service::spawn_deleted_version_follower(state.clone());
        crate::fleet_stats::spawn_publisher(state.clone());
        crate::outcomes::mailbox::spawn_mailbox(state.clone());
        if let Some(after) = config.unload_idle_after {
            tokio::spawn(crate::serving::unload_idle_task(
                state.models.clone(),
                after,
                stop_background.subscribe(),
            ));
        }

        let metrics_addr = match config.metrics_listen {
            Some(address) => {
                let listener = crate::metrics_http::bind(address)
                    .await
                    .map_err(|source| StartError::Bind { address, source })?;
                let bound = listener.local_addr().ok();
                tokio::spawn(crate::metrics_http::serve_metrics(
                    listener,
                    metrics.clone(),
                    background_stopped,
                ));
                bound
            }
            None => None,
        };
        // The registry is open and what serves traffic is loaded: SERVING.
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", ServingStatus::Serving).await;
        health
            .set_service_status(MODEL_SERVICE, ServingStatus::Serving)
            .await;
        health
            .set_service_status(REGISTRY_HEALTH_SERVICE, ServingStatus::Serving)
            .await;
        sync.spawn_background(
            BackgroundSettings {
                poll_interval: config.registry_poll_interval,
                replica_name: config.replica_name.clone(),
                health: health.clone(),
            },
            stop_background.subscribe(),
        );

        let auth = AuthInterceptor::new(tokens);
        let (http_addr, http_task) = match config.http_listen.0 {
            Some(address) => {
                let listener = crate::oip_http::bind(address)
                    .await
                    .map_err(|source| StartError::Bind { address, source })?;
                let bound = listener.local_addr().ok();
                let http = crate::oip_http::OipHttp::new(
                    state.clone(),
                    auth.clone(),
                    metrics.http.clone(),
                    config.max_http_body_bytes(),
                );
                let task = tokio::spawn(http.serve(listener, stop_background.subscribe()));
                (bound, Some(task))
            }
            None => (None, None),
        };
        let model_service = InterceptedService::new(
            predict_route(
                ModelServiceServer::new(ModelServiceImpl::new(state.clone()))
                    .max_decoding_message_size(config.max_message_bytes)
                    .max_encoding_message_size(config.max_message_bytes),
                state.clone(),
                config.max_message_bytes,
                config.max_message_bytes,
            ),
            auth.clone(),
        );
        // The Open Inference Protocol over gRPC checks tokens itself: its
        // liveness, readiness and server metadata are open, like health.
        let oip_grpc =
            crate::oip_grpc::OipGrpc::server(state.clone(), auth.clone(), config.max_message_bytes);
        // Server reflection in both protocols (grpcurl and older tools
        // speak only v1alpha).
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(serval_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_error =
            |e: tonic_reflection::server::Error| StartError::Config(format!("reflection: {e}"));
        let reflection_v1 =
            InterceptedService::new(reflection().build_v1().map_err(reflection_error)?, auth.clone());
        let reflection_v1alpha =
            InterceptedService::new(reflection().build_v1alpha().map_err(reflection_error)?, auth);

        // Small gRPC frames must leave at once: without TCP_NODELAY, Nagle's
        // algorithm and delayed ACKs add ~40 ms to larger answers.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut builder = tonic::transport::Server::builder();
        if config.max_calls_per_connection > 0 {
            // Load shedding turns "not ready" at the limit into an
            // immediate RESOURCE_EXHAUSTED instead of a queue.
            builder = builder
                .concurrency_limit_per_connection(config.max_calls_per_connection)
                .load_shed(true);
        }
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            builder
                .layer(RequestContextLayer::new(metrics.grpc.clone()))
                .add_service(health_service)
                .add_service(model_service)
                .add_service(oip_grpc)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        tracing::info!(
            address = %local_addr,
            http = ?http_addr,
            database = %serval_registry::redact_password(&config.database),
            replica = %config.replica_name,
            tls = config.tls_cert.is_some(),
            tokens = !config.load_tokens().map(|t| t.is_empty()).unwrap_or(true),
            "serving"
        );
        Ok(Server {
            local_addr,
            metrics_addr,
            http_addr,
            http_task,
            stop_background,
            metrics,
            state,
            health,
            grace: config.shutdown_grace,
            stop: Some(stop),
            task,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://` URL of the server, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Where `/metrics` is served, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where the Open Inference Protocol is served over HTTP, if enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub fn metrics(&self) -> &ServerMetrics {
        &self.metrics
    }

    pub fn state(&self) -> &Arc<ServiceState> {
        &self.state
    }

    /// Drains and stops: health goes NOT_SERVING, long-lived streams end,
    /// running training jobs are cancelled (no partial version), no new
    /// calls are accepted (gRPC or HTTP), in-flight calls (and their
    /// batches) finish within the grace period, and the registry is closed.
    pub async fn shutdown(mut self) -> Result<(), ServalError> {
        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.health
            .set_service_status(MODEL_SERVICE, ServingStatus::NotServing)
            .await;
        let _ = self.stop_background.send(true);
        for job in self.state.jobs.all() {
            tracing::info!(job = %job.id, "cancelling training job for shutdown");
            job.cancel();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // One grace period for both listeners, which drain side by side.
        let grace_ends = tokio::time::Instant::now() + self.grace;
        let served = match tokio::time::timeout_at(grace_ends, &mut self.task).await {
            Ok(joined) => joined.map_err(|e| ServalError::Internal(format!("server task failed: {e}")))?,
            Err(_) => {
                tracing::warn!(grace = ?self.grace, "calls still running after the grace period; stopping anyway");
                self.task.abort();
                Ok(())
            }
        };
        if let Some(mut http) = self.http_task.take()
            && tokio::time::timeout_at(grace_ends, &mut http).await.is_err()
        {
            tracing::warn!(grace = ?self.grace, "HTTP requests still running after the grace period; stopping anyway");
            http.abort();
        }
        // Cancelled jobs record their end before the registry closes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.state.jobs.all().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.state.registry.close().await;
        served.map_err(|e| ServalError::Internal(format!("server failed: {e}")))
    }
}
