//! [`PredictRoute`]: the model service as the server mounts it. Predict
//! calls are decoded as [`PredictCall`], the server's allocation-free
//! reading of `serval.v1.PredictRequest` (same bytes, see `wire`), and
//! handled by `predict`; every other method goes to the generated service
//! unchanged. Authentication and the request context wrap both alike.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serval_proto::v1 as pb;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use tower::Service;

use super::ServiceState;
use crate::wire::PredictCall;

/// The method's path, as a client sends it.
pub const PREDICT_PATH: &str = "/serval.v1.ModelService/Predict";

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

/// Routes Predict to [`PredictCall`] decoding, and the rest to `inner`.
#[derive(Clone)]
pub struct PredictRoute<S> {
    inner: S,
    state: Arc<ServiceState>,
    max_decoding_message_size: usize,
    max_encoding_message_size: usize,
}

impl<S> PredictRoute<S> {
    /// `inner` is the generated `ModelServiceServer`; the message size
    /// limits are the ones it was given.
    pub fn new(
        inner: S,
        state: Arc<ServiceState>,
        max_decoding_message_size: usize,
        max_encoding_message_size: usize,
    ) -> Self {
        PredictRoute {
            inner,
            state,
            max_decoding_message_size,
            max_encoding_message_size,
        }
    }
}

impl<S> NamedService for PredictRoute<S> {
    const NAME: &'static str = "serval.v1.ModelService";
}

impl<S, B> Service<http::Request<B>> for PredictRoute<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>, Error = Infallible>,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != PREDICT_PATH {
            return Box::pin(self.inner.call(request));
        }
        let handler = PredictHandler(self.state.clone());
        let (decoding, encoding) = (self.max_decoding_message_size, self.max_encoding_message_size);
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::<pb::PredictResponse, PredictCall>::default())
                .apply_max_message_size_config(Some(decoding), Some(encoding));
            Ok(grpc.unary(handler, request).await)
        })
    }
}

struct PredictHandler(Arc<ServiceState>);

impl UnaryService<PredictCall> for PredictHandler {
    type Response = pb::PredictResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<pb::PredictResponse>, Status>> + Send>>;

    fn call(&mut self, request: Request<PredictCall>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move { super::predict::predict(&state, request).await })
    }
}
