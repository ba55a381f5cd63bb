//! [`ServalClient`]: a thin, typed layer over the generated gRPC client that
//! handles connection set-up and the chunked Train upload.

use futures::{Stream, StreamExt};
use serval_proto::v1 as pb;
use serval_proto::v1::model_service_client::ModelServiceClient;
use tonic::transport::{Channel, Endpoint};

/// Bytes per Train upload message: far below any message limit.
pub const UPLOAD_CHUNK_BYTES: usize = 256 * 1024;

/// Largest response the client accepts (Predict of many rows).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(#[from] tonic::Status),
    #[error("{0}")]
    Protocol(String),
}

/// The canonical upper-case name of a status code, as gRPC documents it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A connection to one Serval server; cheap to clone.
#[derive(Debug, Clone)]
pub struct ServalClient {
    channel: Channel,
    models: ModelServiceClient<Channel>,
}

/// A Train upload in progress: the server's events, in order.
pub type TrainUpload = tonic::Streaming<pb::TrainEvent>;

impl ServalClient {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        let connect_error = |source| ClientError::Connect {
            url: url.to_string(),
            source,
        };
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(connect_error)?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(connect_error)?;
        Ok(Self::from_channel(channel))
    }

    /// Wraps an existing channel.
    pub fn from_channel(channel: Channel) -> Self {
        let models = ModelServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        ServalClient { channel, models }
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The generated client, for calls this type does not wrap.
    pub fn raw(&mut self) -> &mut ModelServiceClient<Channel> {
        &mut self.models
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
        Ok(self.models.train(first.chain(rest)).await?.into_inner())
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
        Ok(self.models.predict(request).await?.into_inner())
    }

    /// Every model, or only `model`.
    pub async fn list_models(&mut self, model: Option<&str>) -> Result<Vec<pb::Model>, ClientError> {
        let request = pb::ListModelsRequest {
            model: model.unwrap_or_default().to_string(),
        };
        Ok(self.models.list_models(request).await?.into_inner().models)
    }
}
