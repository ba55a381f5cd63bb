//! [`ServalClient`]: a thin, typed layer over the generated gRPC client that
//! handles connection set-up (to one server or several replicas), call
//! metadata (who is calling), the chunked Train upload and the rollout
//! calls. Calls are spread over the replicas; reads and Predict are retried
//! on another replica when one is unreachable (see `retry` and `replicas`).

use std::future::Future;

use futures::{Stream, StreamExt};
use serval_proto::v1 as pb;
use serval_proto::v1::model_service_client::ModelServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::replicas::{Replicas, endpoint};
use crate::retry;

/// Bytes per Train upload message: far below any message limit.
pub const UPLOAD_CHUNK_BYTES: usize = 256 * 1024;

/// Largest response the client accepts (Predict of many rows).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {url}: {}", causes(.source))]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    /// None of several servers could be reached.
    #[error("cannot connect to any of the {} servers: {}", .failures.len(), unreachable(.failures))]
    Unreachable {
        failures: Vec<(String, tonic::transport::Error)>,
    },
    #[error("no server address given")]
    NoServer,
    /// The server's answer (or a status this process made that is not a
    /// lost connection, such as the call's own deadline running out).
    #[error("{}: {}", serval_proto::code_name(.0.code()), .0.message())]
    Status(tonic::Status),
    /// The connection broke during the call (the server stopped, or the
    /// network dropped it) before the answer came, so the server may or
    /// may not have carried the call out. The transport reports this as
    /// UNKNOWN or CANCELLED; it is UNAVAILABLE here, the status it wraps
    /// being the transport's.
    #[error(
        "UNAVAILABLE: the connection to the server was lost during the call ({})",
        transport_detail(.0)
    )]
    ConnectionLost(tonic::Status),
    #[error("{0}")]
    Protocol(String),
    /// Reading the training data failed part-way; the call was cancelled
    /// before the upload ended, so the server trains and registers nothing.
    #[error(
        "reading the training data failed after {bytes_sent} bytes: {source}; the upload was cancelled and nothing was trained"
    )]
    UploadRead { bytes_sent: u64, source: std::io::Error },
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        if retry::connection_lost(&status) {
            ClientError::ConnectionLost(status)
        } else {
            ClientError::Status(status)
        }
    }
}

impl ClientError {
    /// The gRPC code of the failure, where the call got that far: the
    /// server's answer, or UNAVAILABLE for a connection lost during the
    /// call.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(status) => Some(status.code()),
            ClientError::ConnectionLost(_) => Some(tonic::Code::Unavailable),
            _ => None,
        }
    }

    /// Whether no server could be reached, so nothing was sent: the
    /// connection could not be made, or a server said it is unavailable.
    /// A call that fails so may be sent again as it is.
    pub fn is_unavailable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Unreachable { .. } | ClientError::NoServer => true,
            ClientError::Status(status) => status.code() == tonic::Code::Unavailable,
            _ => false,
        }
    }
}

/// The chunks of `reader`, up to [`UPLOAD_CHUNK_BYTES`] each. On a read
/// error the stream sends the error and the bytes read before it on
/// `failed` and then stays pending, never ending.
fn read_chunks<R>(
    reader: R,
    on_read: impl Fn(usize) + Send + 'static,
    failed: tokio::sync::oneshot::Sender<(u64, std::io::Error)>,
) -> impl Stream<Item = Vec<u8>> + Send + 'static
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let state = (reader, on_read, 0u64, Some(failed));
    futures::stream::unfold(state, |(mut reader, on_read, sent, mut failed)| async move {
        let mut chunk = vec![0u8; UPLOAD_CHUNK_BYTES];
        match reader.read(&mut chunk).await {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                on_read(n);
                Some((chunk, (reader, on_read, sent + n as u64, failed)))
            }
            Err(error) => {
                if let Some(failed) = failed.take() {
                    let _ = failed.send((sent, error));
                }
                std::future::pending().await
            }
        }
    })
}

/// `error` and its causes, each once: "transport error: tcp connect error:
/// Connection refused (os error 111)". A cause whose text is already said
/// (tonic repeats hyper's message in its own) is left out.
fn causes(error: &dyn std::error::Error) -> String {
    with_causes(error.to_string(), error.source())
}

/// What the transport said of a broken connection: the status's message
/// and its causes ("h2 protocol error: error reading a body from
/// connection: stream closed because of a broken pipe").
fn transport_detail(status: &tonic::Status) -> String {
    with_causes(status.message().to_string(), std::error::Error::source(status))
}

fn with_causes(mut text: String, mut cause: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(error) = cause {
        let message = error.to_string();
        if !message.is_empty() && !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = error.source();
    }
    text
}

fn unreachable(failures: &[(String, tonic::transport::Error)]) -> String {
    failures
        .iter()
        .map(|(url, error)| format!("{url} ({})", causes(error)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Metadata sent with every call: the access token, and who is calling
/// (for the audit log when the server runs without tokens).
#[derive(Debug, Clone, Default)]
pub struct CallMetadata {
    actor: Option<MetadataValue<Ascii>>,
    authorization: Option<MetadataValue<Ascii>>,
}

impl CallMetadata {
    /// Names the caller in the audit log; non-ASCII names are dropped.
    pub fn with_actor(mut self, actor: &str) -> Self {
        self.actor = actor.parse().ok();
        self
    }

    /// Sends `authorization: Bearer <token>`.
    pub fn with_token(mut self, token: &str) -> Result<Self, ClientError> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Protocol("the token must be printable ASCII".into()))?;
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(self)
    }
}

impl Interceptor for CallMetadata {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(actor) = &self.actor {
            request.metadata_mut().insert("x-serval-actor", actor.clone());
        }
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        Ok(request)
    }
}

/// How to reach a server: call metadata, and TLS for `https://` URLs.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub metadata: CallMetadata,
    pub tls: Option<ClientTlsConfig>,
}

impl ConnectOptions {
    /// TLS trusting `ca_pem` (the system roots when `None`), presenting a
    /// client certificate when given (mutual TLS), checking the server's
    /// name as `domain` when given.
    pub fn with_tls(
        mut self,
        ca_pem: Option<Vec<u8>>,
        client_identity: Option<(Vec<u8>, Vec<u8>)>,
        domain: Option<String>,
    ) -> Self {
        let mut tls = ClientTlsConfig::new();
        tls = match ca_pem {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
            None => tls.with_native_roots(),
        };
        if let Some((cert, key)) = client_identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        if let Some(domain) = domain {
            tls = tls.domain_name(domain);
        }
        self.tls = Some(tls);
        self
    }
}

/// The generated client with [`CallMetadata`] on every call.
pub type RawClient = ModelServiceClient<InterceptedService<Channel, CallMetadata>>;

/// The generated client over `channel`, sending `metadata` with every call.
pub(crate) fn raw_client(channel: Channel, metadata: CallMetadata) -> RawClient {
    ModelServiceClient::with_interceptor(channel, metadata)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A connection to one Serval server, or to several replicas of one
/// registry; cheap to clone (clones share the replicas' rotation).
///
/// With several replicas, calls take turns over them. Predict and the
/// reads (models, rollout state and history, live statistics, jobs,
/// reports, opening a watch) are tried on the next replica when one is
/// unavailable or its connection breaks before an answer, each replica at
/// most once, and the last error is returned when none answers. Changes
/// (Train, aliases, traffic, delete, cancel) are sent once and never
/// retried, so that none is applied twice; they, too, go first to a
/// replica that has not just failed.
#[derive(Debug, Clone)]
pub struct ServalClient {
    replicas: Replicas,
}

/// A Train upload in progress: the server's events, in order.
pub type TrainUpload = tonic::Streaming<pb::TrainEvent>;

impl ServalClient {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_with(url, CallMetadata::default()).await
    }

    /// Connects to `url`, sending `metadata` with every call.
    pub async fn connect_with(url: &str, metadata: CallMetadata) -> Result<Self, ClientError> {
        Self::connect_using(url, ConnectOptions { metadata, tls: None }).await
    }

    /// Connects to `url` with `options` (TLS, token, actor).
    pub async fn connect_using(url: &str, options: ConnectOptions) -> Result<Self, ClientError> {
        Self::connect_many(&[url], options).await
    }

    /// Connects to every one of `urls`, replicas serving the same registry,
    /// with the same `options` (TLS, token, actor) for each. Succeeds when
    /// at least one answers; a replica that does not is connected to again
    /// when a call needs it. Fails naming every URL when none answers.
    pub async fn connect_many<S: AsRef<str>>(
        urls: &[S],
        options: ConnectOptions,
    ) -> Result<Self, ClientError> {
        Ok(ServalClient {
            replicas: Replicas::connect(urls, options).await?,
        })
    }

    /// An HTTP/2 channel to `url`, over TLS when `tls` is given.
    pub async fn channel_to(url: &str, tls: Option<ClientTlsConfig>) -> Result<Channel, ClientError> {
        let endpoint = endpoint(url, tls)?;
        endpoint.connect().await.map_err(|source| ClientError::Connect {
            url: url.to_string(),
            source,
        })
    }

    /// Wraps an existing channel.
    pub fn from_channel(channel: Channel) -> Self {
        Self::with_metadata(channel, CallMetadata::default())
    }

    /// Wraps an existing channel, sending `metadata` with every call.
    pub fn with_metadata(channel: Channel, metadata: CallMetadata) -> Self {
        let options = ConnectOptions { metadata, tls: None };
        ServalClient {
            replicas: Replicas::single("(channel)", channel, &options),
        }
    }

    /// The URLs of the replicas, in the order given.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.replicas.urls()
    }

    /// The channel to one replica, the one whose turn it is (this takes
    /// the turn).
    pub fn channel(&self) -> &Channel {
        &self.replicas.get(self.replicas.next()).channel
    }

    /// The generated client, for calls this type does not wrap, of the
    /// replica whose turn it is (this takes the turn). Calls through it are
    /// neither spread over the replicas nor retried.
    pub fn raw(&mut self) -> &mut RawClient {
        let next = self.replicas.next();
        &mut self.replicas.get_mut(next).models
    }

    /// A read or Predict: sent to the replicas in turn, each at most once,
    /// until one answers or the failure is not worth another replica (see
    /// `retry`); the last error when none answers.
    async fn read<Req, T, F, Fut>(&self, request: Req, mut call: F) -> Result<T, ClientError>
    where
        Req: Clone,
        F: FnMut(RawClient, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let order = self.replicas.attempt_order();
        let mut request = Some(request);
        let mut last_error = ClientError::NoServer;
        for (attempt, &index) in order.iter().enumerate() {
            // The last try sends the request itself, earlier ones a copy.
            let this_request = if attempt + 1 == order.len() {
                request.take()
            } else {
                request.clone()
            };
            let Some(this_request) = this_request else { break };
            let outcome = call(self.replicas.get(index).models.clone(), this_request).await;
            match self.note(index, outcome) {
                Err(status) if retry::worth_another_replica(&status) => last_error = status.into(),
                outcome => return outcome.map_err(ClientError::from),
            }
        }
        Err(last_error)
    }

    /// A change: sent once, to the replica whose turn it is, and never
    /// retried, so that a change applied by a replica that died before
    /// answering is not applied twice.
    async fn change<Req, T, F, Fut>(&self, request: Req, call: F) -> Result<T, ClientError>
    where
        F: FnOnce(RawClient, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let index = self.replicas.next();
        let outcome = call(self.replicas.get(index).models.clone(), request).await;
        Ok(self.note(index, outcome)?)
    }

    /// Notes how replica `index` did: one that failed rests for a while.
    fn note<T>(
        &self,
        index: usize,
        outcome: Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T, tonic::Status> {
        match outcome {
            Ok(response) => {
                self.replicas.answered(index);
                Ok(response.into_inner())
            }
            Err(status) => {
                if retry::replica_failed(&status) {
                    self.replicas.failed(index);
                }
                Err(status)
            }
        }
    }

    /// Starts training: sends `spec`, then the CSV from `chunks`, and returns
    /// the server's event stream.
    pub async fn train_stream<S>(
        &mut self,
        spec: pb::TrainSpec,
        chunks: S,
    ) -> Result<TrainUpload, ClientError>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        let first = futures::stream::once(async move {
            pb::TrainRequest {
                payload: Some(pb::train_request::Payload::Spec(spec)),
            }
        });
        let rest = chunks.map(|chunk| pb::TrainRequest {
            payload: Some(pb::train_request::Payload::CsvChunk(chunk)),
        });
        self.change(first.chain(rest), |mut models, request| async move {
            models.train(request).await
        })
        .await
    }

    /// Starts training from `reader` (the CSV), calling `on_read` with the
    /// size of each chunk read, and returns the server's event stream.
    ///
    /// A read error fails the call with [`ClientError::UploadRead`].
    /// Correctness: the upload then never ends normally (an ended upload is
    /// a complete CSV to the server); the call is dropped instead, which
    /// resets its stream, so the server sees an aborted upload.
    pub async fn train_from_reader<R>(
        &mut self,
        spec: pb::TrainSpec,
        reader: R,
        on_read: impl Fn(usize) + Send + 'static,
    ) -> Result<TrainUpload, ClientError>
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
    {
        let (failed, read_error) = tokio::sync::oneshot::channel();
        let chunks = read_chunks(reader, on_read, failed);
        tokio::select! {
            upload = self.train_stream(spec, chunks) => upload,
            Ok((bytes_sent, source)) = read_error => Err(ClientError::UploadRead { bytes_sent, source }),
        }
    }

    /// Trains on an in-memory CSV and waits for the registered version.
    pub async fn train(
        &mut self,
        spec: pb::TrainSpec,
        csv: Vec<u8>,
    ) -> Result<pb::ModelVersion, ClientError> {
        let chunks: Vec<Vec<u8>> = csv.chunks(UPLOAD_CHUNK_BYTES).map(<[u8]>::to_vec).collect();
        let mut events = self.train_stream(spec, futures::stream::iter(chunks)).await?;
        while let Some(event) = events.message().await? {
            if let Some(pb::train_event::Event::Completed(version)) = event.event {
                return Ok(version);
            }
        }
        Err(ClientError::Protocol(
            "the server ended the Train stream without a registered version".into(),
        ))
    }

    pub async fn predict(&mut self, request: pb::PredictRequest) -> Result<pb::PredictResponse, ClientError> {
        self.read(request, |mut models, request| async move {
            models.predict(request).await
        })
        .await
    }

    /// Every model, or only `model`.
    pub async fn list_models(&mut self, model: Option<&str>) -> Result<Vec<pb::Model>, ClientError> {
        let request = pb::ListModelsRequest {
            model: model.unwrap_or_default().to_string(),
        };
        Ok(self
            .read(request, |mut models, request| async move {
                models.list_models(request).await
            })
            .await?
            .models)
    }

    pub async fn rollout_state(&mut self, model: &str) -> Result<pb::RolloutState, ClientError> {
        let request = pb::GetRolloutStateRequest {
            model: model.to_string(),
        };
        self.read(request, |mut models, request| async move {
            models.get_rollout_state(request).await
        })
        .await
    }

    pub async fn set_alias(
        &mut self,
        model: &str,
        alias: &str,
        version: u32,
        reason: &str,
    ) -> Result<pb::RolloutState, ClientError> {
        let request = pb::SetAliasRequest {
            model: model.to_string(),
            alias: alias.to_string(),
            version,
            reason: reason.to_string(),
        };
        self.change(request, |mut models, request| async move {
            models.set_alias(request).await
        })
        .await
    }

    pub async fn delete_alias(
        &mut self,
        model: &str,
        alias: &str,
        reason: &str,
    ) -> Result<pb::RolloutState, ClientError> {
        let request = pb::DeleteAliasRequest {
            model: model.to_string(),
            alias: alias.to_string(),
            reason: reason.to_string(),
        };
        self.change(request, |mut models, request| async move {
            models.delete_alias(request).await
        })
        .await
    }

    /// Applies one traffic change.
    pub async fn update_traffic(
        &mut self,
        model: &str,
        change: pb::update_traffic_request::Change,
        reason: &str,
    ) -> Result<pb::RolloutState, ClientError> {
        let request = pb::UpdateTrafficRequest {
            model: model.to_string(),
            change: Some(change),
            reason: reason.to_string(),
            expected_revision: None,
        };
        self.change(request, |mut models, request| async move {
            models.update_traffic(request).await
        })
        .await
    }

    pub async fn live_stats(
        &mut self,
        model: &str,
        window_seconds: u32,
    ) -> Result<pb::GetLiveStatsResponse, ClientError> {
        let request = pb::GetLiveStatsRequest {
            model: model.to_string(),
            window_seconds,
        };
        self.read(request, |mut models, request| async move {
            models.get_live_stats(request).await
        })
        .await
    }

    pub async fn rollout_history(
        &mut self,
        model: &str,
        at: Option<prost_types::Timestamp>,
    ) -> Result<pb::GetRolloutHistoryResponse, ClientError> {
        let request = pb::GetRolloutHistoryRequest {
            model: model.to_string(),
            at,
            limit: 0,
        };
        self.read(request, |mut models, request| async move {
            models.get_rollout_history(request).await
        })
        .await
    }

    /// Registry changes as they happen (after `after_id`, when not 0).
    pub async fn watch(
        &mut self,
        model: Option<&str>,
        after_id: u64,
    ) -> Result<tonic::Streaming<pb::AuditEvent>, ClientError> {
        let request = pb::WatchModelsRequest {
            model: model.unwrap_or_default().to_string(),
            after_id,
        };
        self.read(request, |mut models, request| async move {
            models.watch_models(request).await
        })
        .await
    }

    /// The newest training jobs (all models, or only `model`), newest first.
    pub async fn list_jobs(
        &mut self,
        model: Option<&str>,
        limit: u32,
    ) -> Result<Vec<pb::TrainingJob>, ClientError> {
        let request = pb::ListJobsRequest {
            model: model.unwrap_or_default().to_string(),
            limit,
        };
        Ok(self
            .read(request, |mut models, request| async move {
                models.list_jobs(request).await
            })
            .await?
            .jobs)
    }

    /// Re-attaches to a training job: its events from the start while it
    /// runs, or its outcome once it has ended. A replica that is not
    /// running the job answers UNAVAILABLE, so the others are asked in turn.
    pub async fn watch_job(&mut self, job_id: &str) -> Result<TrainUpload, ClientError> {
        let request = pb::WatchJobRequest {
            job_id: job_id.to_string(),
        };
        self.read(request, |mut models, request| async move {
            models.watch_job(request).await
        })
        .await
    }

    /// Asks the server to stop a running job; it ends CANCELLED without
    /// registering a version.
    pub async fn cancel_job(&mut self, job_id: &str) -> Result<pb::TrainingJob, ClientError> {
        let request = pb::CancelJobRequest {
            job_id: job_id.to_string(),
        };
        self.change(request, |mut models, request| async move {
            models.cancel_job(request).await
        })
        .await
    }

    /// Everything a report draws about `version` of `model` (the latest
    /// when `None`).
    pub async fn version_report(
        &mut self,
        model: &str,
        version: Option<u32>,
    ) -> Result<pb::VersionReport, ClientError> {
        let request = pb::GetVersionReportRequest {
            model: model.to_string(),
            version,
        };
        self.read(request, |mut models, request| async move {
            models.get_version_report(request).await
        })
        .await
    }

    /// Deletes `version` of `model`, or the whole model when `None`, for
    /// good (refused while an alias or the traffic policy points at it).
    pub async fn delete_model(
        &mut self,
        model: &str,
        version: Option<u32>,
        reason: &str,
    ) -> Result<pb::DeleteModelResponse, ClientError> {
        let request = pb::DeleteModelRequest {
            model: model.to_string(),
            version,
            reason: reason.to_string(),
        };
        self.change(request, |mut models, request| async move {
            models.delete_model(request).await
        })
        .await
    }

    /// Reports observed outcomes of earlier predictions. Sent once to the
    /// replica whose turn it is: outcomes of another replica sharing its
    /// registry are forwarded to that one (`forwarded` in the answer); ids
    /// of replicas it does not know count as `other_replica`.
    pub async fn report_outcomes(
        &mut self,
        outcomes: Vec<pb::OutcomeReport>,
    ) -> Result<pb::ReportOutcomesResponse, ClientError> {
        let request = pb::ReportOutcomesRequest { outcomes };
        self.change(request, |mut models, request| async move {
            models.report_outcomes(request).await
        })
        .await
    }
}
