//! [`PredictRoute`]: the model service as the server mounts it. Predict
//! calls are decoded as [`PredictCall`], the server's allocation-free
//! reading of `serval.v1.PredictRequest` (same bytes, see `wire`), and
//! handled by `predict`; every other method goes to the generated service
//! unchanged (see `unary_route`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serval_proto::v1 as pb;
use tonic::server::UnaryService;
use tonic::{Request, Response, Status};

use super::ServiceState;
use crate::unary_route::UnaryRoute;
use crate::wire::PredictCall;

/// The method's path, as a client sends it.
pub const PREDICT_PATH: &str = "/serval.v1.ModelService/Predict";

/// The generated model service `S` with Predict read as [`PredictCall`].
pub type PredictRoute<S> = UnaryRoute<S, PredictHandler, PredictCall>;

/// `inner` (the generated `ModelServiceServer`) with Predict routed to
/// [`PredictCall`] decoding; the message size limits are the ones it was
/// given.
pub fn predict_route<S>(
    inner: S,
    state: Arc<ServiceState>,
    max_decoding_message_size: usize,
    max_encoding_message_size: usize,
) -> PredictRoute<S> {
    UnaryRoute::new(
        inner,
        PREDICT_PATH,
        PredictHandler(state),
        max_decoding_message_size,
        max_encoding_message_size,
    )
}

#[derive(Clone)]
pub struct PredictHandler(Arc<ServiceState>);

impl UnaryService<PredictCall> for PredictHandler {
    type Response = pb::PredictResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<pb::PredictResponse>, Status>> + Send>>;

    fn call(&mut self, request: Request<PredictCall>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move { super::predict::predict(&state, request).await })
    }
}
