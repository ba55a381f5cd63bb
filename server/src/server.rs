//! Starting and stopping a server: open the registry, bind the listener,
//! serve ModelService and the standard health service until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use serval_proto::v1::model_service_server::ModelServiceServer;
use serval_registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::batching::ComputePool;
use crate::config::ServerConfig;
use crate::error::ServalError;
use crate::registry_sync::RegistrySync;
use crate::routing::RoutingTable;
use crate::service::{ModelServiceImpl, ServiceState};
use crate::serving::{BatchingSettings, ModelStore};
use crate::telemetry::ServerMetrics;

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    stop_background: watch::Sender<bool>,
    metrics: ServerMetrics,
    state: Arc<ServiceState>,
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
}

impl Server {
    /// Opens the registry, binds `config.listen` and starts serving in the
    /// background.
    pub async fn start(config: &ServerConfig) -> Result<Server, StartError> {
        let registry = Registry::open(&config.database).await?;
        let abandoned = registry.fail_abandoned_jobs().await?;
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
        let batching = BatchingSettings {
            config: config.batch_config(),
            pool: ComputePool::new(config.compute_threads as usize).map_err(StartError::Threads)?,
            metrics: metrics.batching.clone(),
        };
        // Background tasks (metrics endpoint, registry poller, change
        // streams) stop with the server.
        let (stop_background, metrics_stopped) = watch::channel(false);
        let models = Arc::new(ModelStore::new(registry.clone(), batching));
        let routing = Arc::new(RoutingTable::default());
        let sync = RegistrySync::start(registry.clone(), models.clone(), routing.clone()).await?;
        let state = Arc::new(ServiceState::new(
            registry,
            models,
            routing,
            sync.clone(),
            config.service_limits(),
            stop_background.subscribe(),
        ));

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<ModelServiceServer<ModelServiceImpl>>()
            .await;
        let model_service = ModelServiceServer::new(ModelServiceImpl::new(state.clone()))
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes);

        // Small gRPC frames must leave at once: without TCP_NODELAY, Nagle's
        // algorithm and delayed ACKs add ~40 ms to larger answers.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let metrics_addr = match config.metrics_listen {
            Some(address) => {
                let listener = crate::metrics_http::bind(address)
                    .await
                    .map_err(|source| StartError::Bind { address, source })?;
                let bound = listener.local_addr().ok();
                tokio::spawn(crate::metrics_http::serve_metrics(
                    listener,
                    metrics.clone(),
                    metrics_stopped,
                ));
                bound
            }
            None => None,
        };
        sync.spawn_poller(config.registry_poll_interval, stop_background.subscribe());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(model_service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        tracing::info!(address = %local_addr, database = %config.database, "serving");
        Ok(Server {
            local_addr,
            metrics_addr,
            stop_background,
            metrics,
            state,
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

    pub fn metrics(&self) -> &ServerMetrics {
        &self.metrics
    }

    pub fn state(&self) -> &Arc<ServiceState> {
        &self.state
    }

    /// Stops accepting calls, lets in-flight calls finish, closes the
    /// registry.
    pub async fn shutdown(mut self) -> Result<(), ServalError> {
        let _ = self.stop_background.send(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = (&mut self.task)
            .await
            .map_err(|e| ServalError::Internal(format!("server task failed: {e}")))?;
        self.state.registry.close().await;
        served.map_err(|e| ServalError::Internal(format!("server failed: {e}")))
    }
}
