//! The CLI tests' fixture: a real server on a loopback port with a temporary
//! registry, and a runner for the `serval` binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use serval_server::{Server, ServerConfig};

pub struct Fixture {
    pub server: Server,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn start() -> Self {
        Self::start_with(|_, _| {}).await
    }

    /// Starts with the server's config adjusted by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig, &std::path::Path)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::for_database(dir.path().join("serval.db").to_string_lossy());
        configure(&mut config, dir.path());
        let server = Server::start(&config).await.unwrap();
        Fixture { server, dir }
    }

    pub async fn serval(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_serval"))
            .args(args)
            .env("SERVAL_SERVER", self.server.url())
            .output()
            .await
            .expect("serval runs")
    }

    /// Runs `serval`, asserts success and returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let output = self.serval(args).await;
        assert!(
            output.status.success(),
            "serval {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `serval train` of model "shoppers" on the online-shoppers example,
    /// with `extra` flags; asserts success and returns stdout.
    pub async fn train_shoppers(&self, extra: &[&str]) -> String {
        let data = example("online_shoppers_intention.csv");
        let mut args = vec![
            "train",
            "--model",
            "shoppers",
            "--data",
            &data,
            "--label",
            "Revenue",
            "--positive",
            "TRUE",
        ];
        args.extend_from_slice(extra);
        self.ok(&args).await
    }

    pub fn write(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }
}

pub fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/data")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

pub fn last_json_line(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().expect("output")).expect("JSON")
}
