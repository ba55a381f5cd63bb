//! The CLI's integration tests as one test binary (one compile and link
//! instead of one per file): each module runs the `serval` binary against a
//! real server on a loopback port.

#[path = "../common/mod.rs"]
mod common;

mod balancing;
mod cli;
mod delete;
mod exit_codes;
mod explain;
mod fleet;
mod formats;
mod jobs;
mod outcomes;
mod quickstart;
mod report;
mod rollout;
mod upload;
