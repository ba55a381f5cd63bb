//! The servers one client talks to: connecting to each, the round-robin
//! order calls take through them, and resting a replica that just failed.
//! What is retried, and on what failure, is the retry policy's business.
//!
//! Why our own round robin over one channel per replica rather than
//! tonic's `Channel::balance_list`: measured with one of three replicas
//! stopped, `balance_list` kept sending about a quarter of all calls to the
//! dead replica, seconds later as much as at once, and a fresh balanced
//! channel did the same. Its per-endpoint reconnect reports itself ready
//! after a failed connect (the error is handed to the next call), so the
//! balancer never learns the endpoint is gone; and a retry through it may
//! land on the dead endpoint again. With a channel per replica a retry can
//! go to a replica not yet tried, at most one try each, and a replica that
//! failed is tried last for a short while.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::client::{ClientError, ConnectOptions, RawClient, raw_client};

/// How long to wait for one replica's TCP connection (at start and on
/// every reconnect), so that a host that drops packets is given up on.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a replica that failed is tried only after the others.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// One server: its URL, channel and the generated client over it.
#[derive(Debug, Clone)]
pub(crate) struct Replica {
    pub url: Arc<str>,
    pub channel: Channel,
    pub models: RawClient,
}

/// Every replica of one client; clones share the rotation and the rests.
#[derive(Debug, Clone)]
pub(crate) struct Replicas {
    members: Vec<Replica>,
    rotation: Arc<Rotation>,
}

#[derive(Debug)]
struct Rotation {
    /// The replica the next call starts at (modulo their number).
    next: AtomicUsize,
    /// Per replica: tried after the others until this instant.
    resting_until: Mutex<Vec<Option<Instant>>>,
}

impl Replicas {
    /// Connects to every URL at once. Succeeds when at least one answers;
    /// the others get a channel that connects on first use and start out
    /// resting, so calls go to them only when nothing else answers.
    pub async fn connect<S: AsRef<str>>(urls: &[S], options: ConnectOptions) -> Result<Self, ClientError> {
        if urls.is_empty() {
            return Err(ClientError::NoServer);
        }
        let mut endpoints = Vec::with_capacity(urls.len());
        for url in urls {
            endpoints.push(endpoint(url.as_ref(), options.tls.clone())?);
        }
        let connected = futures::future::join_all(endpoints.iter().map(Endpoint::connect)).await;
        let mut failures = Vec::new();
        let mut members = Vec::with_capacity(urls.len());
        for ((url, endpoint), outcome) in urls.iter().zip(&endpoints).zip(connected) {
            let channel = match outcome {
                Ok(channel) => channel,
                Err(source) => {
                    failures.push((members.len(), url.as_ref().to_string(), source));
                    endpoint.connect_lazy()
                }
            };
            members.push(replica(url.as_ref(), channel, &options));
        }
        if failures.len() == members.len() {
            let mut failures: Vec<(String, tonic::transport::Error)> = failures
                .into_iter()
                .map(|(_, url, source)| (url, source))
                .collect();
            return Err(if failures.len() == 1 {
                let (url, source) = failures.remove(0);
                ClientError::Connect { url, source }
            } else {
                ClientError::Unreachable { failures }
            });
        }
        let replicas = Self::new(members);
        for (index, _, _) in failures {
            replicas.failed(index);
        }
        Ok(replicas)
    }

    /// One replica reached through an existing channel.
    pub fn single(url: &str, channel: Channel, options: &ConnectOptions) -> Self {
        Self::new(vec![replica(url, channel, options)])
    }

    fn new(members: Vec<Replica>) -> Self {
        // Each client starts the rotation somewhere else, so that many
        // short-lived clients (one per CLI command) spread over the
        // replicas too.
        let start = rand::random_range(0..members.len());
        let rotation = Rotation {
            next: AtomicUsize::new(start),
            resting_until: Mutex::new(vec![None; members.len()]),
        };
        Replicas {
            members,
            rotation: Arc::new(rotation),
        }
    }

    pub fn get(&self, index: usize) -> &Replica {
        &self.members[index]
    }

    pub fn get_mut(&mut self, index: usize) -> &mut Replica {
        &mut self.members[index]
    }

    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|member| &*member.url)
    }

    /// The order one call tries the replicas in: every replica once,
    /// starting one further round than the previous call, replicas that are
    /// resting after a failure last.
    pub fn attempt_order(&self) -> Vec<usize> {
        let count = self.members.len();
        let start = self.rotation.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let resting = self.rotation.resting();
        let (mut order, tired): (Vec<usize>, Vec<usize>) = (0..count)
            .map(|step| (start + step) % count)
            .partition(|&index| resting[index].is_none_or(|until| until <= now));
        order.extend(tired);
        order
    }

    /// The replica the next call would go to first.
    pub fn next(&self) -> usize {
        self.attempt_order()[0]
    }

    /// `index` failed: try it after the others for a while.
    pub fn failed(&self, index: usize) {
        self.rotation.resting()[index] = Some(Instant::now() + REST_AFTER_FAILURE);
    }

    /// `index` answered: it takes its turn again.
    pub fn answered(&self, index: usize) {
        let mut resting = self.rotation.resting();
        if resting[index].is_some() {
            resting[index] = None;
        }
    }
}

impl Rotation {
    fn resting(&self) -> std::sync::MutexGuard<'_, Vec<Option<Instant>>> {
        // Correctness: the lock guards plain instants and is never held
        // across an await, so a poisoned lock still holds valid data.
        self.resting_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn replica(url: &str, channel: Channel, options: &ConnectOptions) -> Replica {
    Replica {
        url: url.into(),
        models: raw_client(channel.clone(), options.metadata.clone()),
        channel,
    }
}

/// An endpoint for `url`, over TLS when `tls` is given.
pub(crate) fn endpoint(url: &str, tls: Option<ClientTlsConfig>) -> Result<Endpoint, ClientError> {
    let connect_error = |source| ClientError::Connect {
        url: url.to_string(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(connect_error)?
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(tls) = tls {
        // Ring, as tonic's `tls-ring` expects: rustls will not choose a
        // provider by itself when a program links two. One already
        // installed stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        endpoint = endpoint.tls_config(tls).map_err(connect_error)?;
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(count: usize) -> Replicas {
        let members = (0..count)
            .map(|i| {
                let url = format!("http://127.0.0.1:{}", 1 + i);
                let channel = Endpoint::from_shared(url.clone()).unwrap().connect_lazy();
                replica(&url, channel, &ConnectOptions::default())
            })
            .collect();
        Replicas::new(members)
    }

    #[tokio::test]
    async fn calls_take_turns_and_each_tries_every_replica_once() {
        let replicas = replicas(3);
        let firsts: Vec<usize> = (0..6).map(|_| replicas.attempt_order()[0]).collect();
        for window in firsts.windows(2) {
            assert_eq!(window[1], (window[0] + 1) % 3, "{firsts:?}");
        }
        let mut order = replicas.attempt_order();
        order.sort();
        assert_eq!(order, [0, 1, 2]);
    }

    #[tokio::test]
    async fn a_replica_that_failed_goes_last_until_it_answers() {
        let replicas = replicas(3);
        replicas.failed(1);
        for _ in 0..6 {
            let order = replicas.attempt_order();
            assert_eq!(order.len(), 3);
            assert_eq!(order[2], 1, "{order:?}");
        }
        replicas.answered(1);
        let firsts: Vec<usize> = (0..3).map(|_| replicas.attempt_order()[0]).collect();
        assert!(firsts.contains(&1), "{firsts:?}");
    }
}
