//! Starting and stopping a server: open the registry, bind the listener,
//! serve ModelService and the standard health service until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use serval_proto::v1::model_service_server::ModelServiceServer;
use serval_registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::ServerConfig;
use crate::error::ServalError;
use crate::service::{ModelServiceImpl, ServiceState};

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    state: Arc<ServiceState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Registry(#[from] serval_registry::RegistryError),
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
        let state = Arc::new(ServiceState::new(registry, config.service_limits()));

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<ModelServiceServer<ModelServiceImpl>>()
            .await;
        let model_service = ModelServiceServer::new(ModelServiceImpl::new(state.clone()))
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes);

        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(model_service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        tracing::info!(address = %local_addr, database = %config.database, "serving");
        Ok(Server {
            local_addr,
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

    pub fn state(&self) -> &Arc<ServiceState> {
        &self.state
    }

    /// Stops accepting calls, lets in-flight calls finish, closes the
    /// registry.
    pub async fn shutdown(mut self) -> Result<(), ServalError> {
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
