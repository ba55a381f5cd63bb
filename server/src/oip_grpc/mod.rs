//! The Open Inference Protocol (KServe v2) over gRPC:
//! `inference.GRPCInferenceService`, served on the same port as
//! `serval.v1.ModelService` and inside the same request-context layer.
//! Liveness, readiness and server metadata are open, like the health
//! service; model metadata, model readiness and inference need a token
//! (any role) when tokens are configured, checked by the same
//! [`AuthInterceptor`] as every other call. Inference goes through
//! `service::predict` (via `crate::oip::infer`), so its errors carry the
//! same codes as `serval.v1` Predict's; tensor errors are
//! INVALID_ARGUMENT naming the input.
//!
//! ModelInfer is decoded the server's own way (`call`, mounted through
//! `unary_route`), its tensors read in place and written straight into
//! Predict's encoded rows (`tensors`); the rest of the protocol is shared
//! with HTTP in `crate::oip`.

mod answer;
mod call;
mod tensors;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use answer::{AnswerHead, EncodedInferResponse};
use call::InferCall;
use prost::Message;

use serval_proto::inference as oip;
use serval_proto::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use tonic::server::UnaryService;
use tonic::service::Interceptor;
use tonic::{Request, Response, Status};

use crate::auth::AuthInterceptor;
use crate::oip::metadata::{PLATFORM, TensorMetadata};
use crate::oip::tensors::arm_name;
use crate::oip::{SERVER_NAME, parse_version};
use crate::service::ServiceState;
use crate::unary_route::UnaryRoute;

/// ModelInfer's path, as a client sends it.
pub const MODEL_INFER_PATH: &str = "/inference.GRPCInferenceService/ModelInfer";

/// The protocol's gRPC service.
#[derive(Clone)]
pub struct OipGrpc {
    state: Arc<ServiceState>,
    auth: AuthInterceptor,
}

/// The service as the server mounts it: ModelInfer read as [`InferCall`].
pub type OipGrpcRoute = UnaryRoute<GrpcInferenceServiceServer<OipGrpc>, OipGrpc, InferCall>;

impl OipGrpc {
    /// The service, ready to mount, with the server's message size limits.
    pub fn server(state: Arc<ServiceState>, auth: AuthInterceptor, max_message_bytes: usize) -> OipGrpcRoute {
        let service = OipGrpc { state, auth };
        UnaryRoute::new(
            GrpcInferenceServiceServer::new(service.clone())
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
            MODEL_INFER_PATH,
            service,
            max_message_bytes,
            max_message_bytes,
        )
    }

    /// The caller's identity, checked as the interceptor checks every
    /// other call's.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<http::Extensions, Status> {
        let check = Request::from_parts(request.metadata().clone(), http::Extensions::new(), ());
        let (_, extensions, ()) = self.auth.clone().call(check)?.into_parts();
        Ok(extensions)
    }
}

/// `model_version` or `version`: empty is the version the server chooses.
fn version(text: &str) -> Result<Option<u32>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    parse_version(text).map(Some).map_err(Status::invalid_argument)
}

fn tensor_metadata(tensors: Vec<TensorMetadata>) -> Vec<oip::model_metadata_response::TensorMetadata> {
    tensors
        .into_iter()
        .map(|t| oip::model_metadata_response::TensorMetadata {
            name: t.name,
            datatype: t.datatype.to_string(),
            shape: t.shape,
        })
        .collect()
}

#[tonic::async_trait]
impl GrpcInferenceService for OipGrpc {
    async fn server_live(
        &self,
        _request: Request<oip::ServerLiveRequest>,
    ) -> Result<Response<oip::ServerLiveResponse>, Status> {
        Ok(Response::new(oip::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: Request<oip::ServerReadyRequest>,
    ) -> Result<Response<oip::ServerReadyResponse>, Status> {
        let ready = !*self.state.stopping.borrow();
        Ok(Response::new(oip::ServerReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _request: Request<oip::ServerMetadataRequest>,
    ) -> Result<Response<oip::ServerMetadataResponse>, Status> {
        Ok(Response::new(oip::ServerMetadataResponse {
            name: SERVER_NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: Vec::new(),
        }))
    }

    /// Ready when the version loads; an unknown model or version is not
    /// ready (as Triton answers), other errors are errors.
    async fn model_ready(
        &self,
        request: Request<oip::ModelReadyRequest>,
    ) -> Result<Response<oip::ModelReadyResponse>, Status> {
        self.authenticate(&request)?;
        let request = request.into_inner();
        let version = version(&request.version)?;
        let ready = match crate::oip::metadata::ready(&self.state, &request.name, version).await {
            Ok(_) => true,
            Err(status) if status.code() == tonic::Code::NotFound => false,
            Err(status) => return Err(status),
        };
        Ok(Response::new(oip::ModelReadyResponse { ready }))
    }

    async fn model_metadata(
        &self,
        request: Request<oip::ModelMetadataRequest>,
    ) -> Result<Response<oip::ModelMetadataResponse>, Status> {
        self.authenticate(&request)?;
        let request = request.into_inner();
        let metadata =
            crate::oip::metadata::metadata(&self.state, &request.name, version(&request.version)?).await?;
        Ok(Response::new(oip::ModelMetadataResponse {
            name: metadata.name,
            versions: metadata.versions,
            platform: PLATFORM.to_string(),
            inputs: tensor_metadata(metadata.inputs),
            outputs: tensor_metadata(metadata.outputs),
        }))
    }

    /// Reached only by a caller holding the public message: the server
    /// routes ModelInfer to [`OipGrpc::infer`] (see [`OipGrpcRoute`]).
    async fn model_infer(
        &self,
        request: Request<oip::ModelInferRequest>,
    ) -> Result<Response<oip::ModelInferResponse>, Status> {
        let (metadata, extensions, request) = request.into_parts();
        let call = InferCall::decode(request.encode_to_vec().as_slice())
            .map_err(|e| Status::internal(format!("re-reading the request: {e}")))?;
        let answer = self
            .infer(Request::from_parts(metadata, extensions, call))
            .await?;
        let (metadata, answer, extensions) = answer.into_parts();
        let answer = oip::ModelInferResponse::decode(answer.0)
            .map_err(|e| Status::internal(format!("re-reading the answer: {e}")))?;
        Ok(Response::from_parts(metadata, answer, extensions))
    }
}

impl OipGrpc {
    /// ModelInfer: the token check, then Predict with the request's rows.
    async fn infer(&self, request: Request<InferCall>) -> Result<Response<EncodedInferResponse>, Status> {
        // The call's metadata is moved through the token check, not
        // cloned: this is the hot method.
        let (metadata, _, request) = request.into_parts();
        let checked = Request::from_parts(metadata, http::Extensions::new(), ());
        let (metadata, extensions, ()) = self.auth.clone().call(checked)?.into_parts();
        let version = version(&request.model_version)?;
        let options = tensors::options(&request.parameters).map_err(Status::invalid_argument)?;
        let asked = tensors::asked_outputs(&request, options.explain).map_err(Status::invalid_argument)?;
        let rows = tensors::rows(&request).map_err(Status::invalid_argument)?;
        let inference = crate::oip::infer(
            &self.state,
            metadata,
            extensions,
            request.model_name.clone(),
            version,
            rows,
            &options,
        )
        .await?;
        let answer = inference.answer;
        let outputs = crate::oip::tensors::outputs(&answer, &inference.columns, asked.as_deref())
            .map_err(Status::invalid_argument)?;
        let head = AnswerHead {
            model: &answer.model,
            version: answer.version,
            id: &request.id,
            arm: arm_name(answer.arm),
            threshold: answer.threshold,
        };
        Ok(Response::new(answer::encode(&head, &outputs)))
    }
}

impl UnaryService<InferCall> for OipGrpc {
    type Response = EncodedInferResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EncodedInferResponse>, Status>> + Send>>;

    fn call(&mut self, request: Request<InferCall>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move { service.infer(request).await })
    }
}
