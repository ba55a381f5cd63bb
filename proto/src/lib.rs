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

#[cfg(test)]
mod tests {
    use prost::Message;

    /// Field numbers of the Open Inference Protocol's messages that
    /// clients depend on; they are the published spec's and must never
    /// change.
    #[test]
    fn inference_field_numbers_match_the_kserve_v2_spec() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let file = set
            .file
            .iter()
            .find(|f| f.package() == "inference")
            .expect("the inference package");
        let service = &file.service[0];
        assert_eq!(service.name(), "GRPCInferenceService");
        let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        assert_eq!(
            methods,
            [
                "ServerLive",
                "ServerReady",
                "ModelReady",
                "ServerMetadata",
                "ModelMetadata",
                "ModelInfer"
            ]
        );
        let number = |message: &str, field: &str| {
            let message = file
                .message_type
                .iter()
                .find(|m| m.name() == message)
                .unwrap_or_else(|| panic!("no message {message}"));
            message
                .field
                .iter()
                .find(|f| f.name() == field)
                .unwrap_or_else(|| panic!("no field {field}"))
                .number()
        };
        for (message, field, expected) in [
            ("ModelInferRequest", "model_name", 1),
            ("ModelInferRequest", "model_version", 2),
            ("ModelInferRequest", "parameters", 4),
            ("ModelInferRequest", "inputs", 5),
            ("ModelInferRequest", "outputs", 6),
            ("ModelInferRequest", "raw_input_contents", 7),
            ("ModelInferResponse", "outputs", 5),
            ("ModelInferResponse", "raw_output_contents", 6),
            ("InferParameter", "string_param", 3),
            ("InferParameter", "uint64_param", 5),
            ("InferTensorContents", "fp32_contents", 6),
            ("InferTensorContents", "bytes_contents", 8),
        ] {
            assert_eq!(number(message, field), expected, "{message}.{field}");
        }
    }
}
