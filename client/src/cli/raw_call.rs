//! Unary gRPC calls with pre-encoded request bytes, for the load generator:
//! every call sends the same bytes without re-encoding them and only checks
//! the status of the answer, so the generator spends its CPU on calls, not
//! on (de)serialising, and the server's cost is what the figures show.

use bytes::{Buf, BufMut, Bytes};
use serval_client::CallMetadata;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A client that sends pre-encoded messages to one method.
#[derive(Clone)]
pub struct RawCaller {
    grpc: tonic::client::Grpc<InterceptedService<Channel, CallMetadata>>,
    path: PathAndQuery,
    /// Sent with every call when set (W3C trace context).
    traceparent: Option<MetadataValue<Ascii>>,
}

impl RawCaller {
    pub fn new(channel: Channel, metadata: CallMetadata, path: &'static str) -> Self {
        RawCaller {
            grpc: tonic::client::Grpc::new(InterceptedService::new(channel, metadata))
                .max_decoding_message_size(64 << 20),
            path: PathAndQuery::from_static(path),
            traceparent: None,
        }
    }

    /// Sends `traceparent: value` with every call.
    pub fn with_traceparent(mut self, value: &str) -> Self {
        self.traceparent = value.parse().ok();
        self
    }

    fn request(&self, message: Bytes) -> Request<Bytes> {
        let mut request = Request::new(message);
        if let Some(value) = &self.traceparent {
            request.metadata_mut().insert("traceparent", value.clone());
        }
        request
    }

    /// Sends `message` (an encoded request) and returns the encoded answer.
    pub async fn call(&mut self, message: Bytes) -> Result<Bytes, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
        Ok(self
            .grpc
            .unary(self.request(message), self.path.clone(), RawCodec)
            .await?
            .into_inner())
    }
}
