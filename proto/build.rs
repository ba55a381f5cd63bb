//! Compiles `serval/v1/*.proto` and the Open Inference Protocol's
//! `inference/grpc_predict_v2.proto` in pure Rust (protox, no `protoc` binary) into
//! prost messages, tonic stubs, and a file descriptor set for reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["serval/v1/serval.proto", "inference/grpc_predict_v2.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("serval_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
