//! Generated code for Serval's gRPC contract (`proto/serval/v1`) and the
//! Open Inference Protocol's (`proto/inference`): messages,
//! client and server stubs, and the encoded file descriptor set that server
//! reflection serves. Nothing here is written by hand but this module.

/// Package `serval.v1`.
#[allow(clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("serval.v1");
}

/// Package `inference`: the Open Inference Protocol (KServe v2 / Triton),
/// `inference.GRPCInferenceService`.
pub mod inference {
    tonic::include_proto!("inference");
}

/// The file descriptor set of every `.proto` file above (imports included),
/// for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/serval_descriptor.bin"));

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
