//! Generated code for Serval's gRPC contract (`proto/serval/v1`): messages,
//! client and server stubs, and the encoded file descriptor set that server
//! reflection serves. Nothing here is written by hand but this module.

/// Package `serval.v1`.
#[allow(clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("serval.v1");
}

/// The file descriptor set of every `.proto` file above (imports included),
/// for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/serval_descriptor.bin"));
