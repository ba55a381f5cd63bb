//! The server's integration tests as one test binary (one compile and link
//! instead of one per file). Every module drives real servers on loopback
//! ports with SQLite registries in temporary directories; `privacy` stays a
//! binary of its own because it installs a process-wide log subscriber.

#[path = "../common/mod.rs"]
mod common;

mod batching;
mod bounded;
mod delete;
mod device;
mod errors;
mod explain;
mod forms;
mod hostile;
mod jobs;
mod loading;
mod oip_grpc;
mod oip_http;
mod oip_rows;
mod operations;
mod otlp;
mod outcomes;
mod process;
mod quality;
mod replicas;
mod rollout;
mod sources;
mod storage;
mod uploads;
