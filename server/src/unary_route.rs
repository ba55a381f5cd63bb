//! [`UnaryRoute`]: a generated gRPC service with one unary method taken
//! out and decoded the server's own way — a message with the public one's
//! bytes whose rows stay slices of the request (`wire::PredictCall`,
//! `oip_grpc`'s `InferCall`) — and handled by a handler of its own; every
//! other method goes to the generated service unchanged. Layers around the
//! route (authentication, the request context) wrap both alike.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::server::{Grpc, NamedService, UnaryService};
use tonic_prost::ProstCodec;
use tower::Service;

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

/// Routes calls to `path` to `handler`, decoded as `M`, and the rest to
/// `inner`.
pub struct UnaryRoute<S, H, M> {
    inner: S,
    path: &'static str,
    handler: H,
    max_decoding_message_size: usize,
    max_encoding_message_size: usize,
    message: PhantomData<fn() -> M>,
}

impl<S, H, M> UnaryRoute<S, H, M> {
    /// `inner` is the generated service; the message size limits are the
    /// ones it was given.
    pub fn new(
        inner: S,
        path: &'static str,
        handler: H,
        max_decoding_message_size: usize,
        max_encoding_message_size: usize,
    ) -> Self {
        UnaryRoute {
            inner,
            path,
            handler,
            max_decoding_message_size,
            max_encoding_message_size,
            message: PhantomData,
        }
    }
}

impl<S: Clone, H: Clone, M> Clone for UnaryRoute<S, H, M> {
    fn clone(&self) -> Self {
        UnaryRoute {
            inner: self.inner.clone(),
            path: self.path,
            handler: self.handler.clone(),
            max_decoding_message_size: self.max_decoding_message_size,
            max_encoding_message_size: self.max_encoding_message_size,
            message: PhantomData,
        }
    }
}

impl<S: NamedService, H, M> NamedService for UnaryRoute<S, H, M> {
    const NAME: &'static str = S::NAME;
}

impl<S, H, M, B> Service<http::Request<B>> for UnaryRoute<S, H, M>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>, Error = Infallible>,
    S::Future: Send + 'static,
    H: UnaryService<M> + Clone + Send + 'static,
    H::Response: prost::Message + Send + 'static,
    H::Future: Send + 'static,
    M: prost::Message + Default + Send + 'static,
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
        if request.uri().path() != self.path {
            return Box::pin(self.inner.call(request));
        }
        let handler = self.handler.clone();
        let (decoding, encoding) = (self.max_decoding_message_size, self.max_encoding_message_size);
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::<H::Response, M>::default())
                .apply_max_message_size_config(Some(decoding), Some(encoding));
            Ok(grpc.unary(handler, request).await)
        })
    }
}
