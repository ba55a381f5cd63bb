//! The batching layer's behaviour (not its speed): how many forward passes
//! run, which rows they hold, in which order versions sharing the compute
//! threads get their turns, and what callers get back — with the real
//! network, real compute threads, and a gate that holds a pass open so the
//! test controls what arrives while it runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use futures::future::join_all;
use serval_client::proto as pb;
use serval_model::network::Mlp;
use serval_model::{BatchScorer, ModelError};
use serval_server::ServalError;
use serval_server::batching::{BatchConfig, BatchLayer, BatchMetrics, Batcher, ComputePool, PredictRows};
use tower::{Layer, Service, ServiceExt};

const WIDTH: usize = 6;
/// A first value that makes the forward pass fail.
const POISON: f32 = 999.0;

/// The real network behind a gate: while the gate is closed, forward passes
/// wait; every pass records its size.
struct Gated {
    network: Mlp,
    closed: Mutex<bool>,
    opened: Condvar,
    started: AtomicUsize,
    sizes: Mutex<Vec<usize>>,
}

impl Gated {
    fn new() -> Arc<Self> {
        Arc::new(Gated {
            network: Mlp::random(WIDTH, &[16, 8], 1).unwrap(),
            closed: Mutex::new(false),
            opened: Condvar::new(),
            started: AtomicUsize::new(0),
            sizes: Mutex::new(Vec::new()),
        })
    }

    fn close(&self) {
        *self.closed.lock().unwrap() = true;
    }

    fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.opened.notify_all();
    }

    /// Waits until `n` passes have started.
    async fn wait_started(&self, n: usize) {
        while self.started.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn sizes(&self) -> Vec<usize> {
        self.sizes.lock().unwrap().clone()
    }
}

impl BatchScorer for Gated {
    type Explanation = ();

    fn width(&self) -> usize {
        WIDTH
    }

    fn score(&self, rows: &[f32]) -> Result<Vec<f32>, ModelError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let mut closed = self.closed.lock().unwrap();
        while *closed {
            closed = self.opened.wait(closed).unwrap();
        }
        drop(closed);
        self.sizes.lock().unwrap().push(rows.len() / WIDTH);
        if rows[0] == POISON {
            return Err(ModelError::ShapeMismatch("poisoned batch".into()));
        }
        self.network.predict(rows)
    }
}

fn config(max_batch_rows: usize, max_batch_delay: Duration, max_queued_rows: usize) -> BatchConfig {
    BatchConfig {
        max_batch_rows,
        max_batch_delay,
        max_queued_rows,
        max_in_flight: 1,
    }
}

fn layer(config: BatchConfig) -> (BatchLayer, BatchMetrics) {
    let metrics = BatchMetrics::unregistered();
    let layer = BatchLayer::new(config, ComputePool::new(1).unwrap(), metrics.clone());
    (layer, metrics)
}

fn rows(seed: usize, count: usize) -> Vec<f32> {
    (0..count * WIDTH)
        .map(|i| (((seed * 31 + i * 7) % 23) as f32 - 11.0) / 5.0)
        .collect()
}

fn call(
    batcher: &Batcher<()>,
    rows: Vec<f32>,
) -> impl Future<Output = Result<Vec<f32>, ServalError>> + use<> {
    let answer = batcher.submit(PredictRows::scores_of(rows));
    async move { answer.await.map(|scored| scored.scores) }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Guards tests whose failure mode would be waiting out a one-hour delay.
async fn soon<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("answered without waiting out the batch delay")
}

#[tokio::test]
async fn concurrent_calls_share_few_passes_and_get_their_own_rows() {
    let predictor = Gated::new();
    let max_batch_rows = 256;
    let metrics = BatchMetrics::unregistered();
    let (mut batcher, hold) = Batcher::held(
        predictor.clone(),
        config(max_batch_rows, HOUR, 100_000),
        ComputePool::new(1).unwrap(),
        metrics.clone(),
    );
    // Queue every call before the compute thread may take any.
    let mut calls = Vec::new();
    let mut inputs = Vec::new();
    let mut total_rows = 0;
    for caller in 0..500 {
        let count = 1 + caller % 3;
        total_rows += count;
        let input = rows(caller, count);
        inputs.push(input.clone());
        calls.push(batcher.ready().await.unwrap().call(PredictRows::scores_of(input)));
    }
    hold.release();
    let answers = soon(join_all(calls)).await;

    let passes = predictor.sizes().len();
    assert!(
        passes <= total_rows.div_ceil(max_batch_rows),
        "{passes} passes for {total_rows} rows"
    );
    assert_eq!(metrics.batches.get() as usize, passes);
    assert_eq!(metrics.rows_computed() as usize, total_rows);
    for (input, answer) in inputs.iter().zip(answers) {
        let scored = answer.unwrap();
        assert!(scored.explanations.is_empty());
        let scores = scored.scores;
        assert_eq!(scores.len(), input.len() / WIDTH);
        for (row, score) in input.chunks(WIDTH).zip(scores) {
            let alone = predictor.network.predict(row).unwrap()[0];
            assert!((alone - score).abs() <= 1e-5, "{alone} vs {score}");
        }
    }
}

#[tokio::test]
async fn a_lone_call_does_not_wait_out_the_delay() {
    let predictor = Gated::new();
    let (layer, metrics) = layer(config(256, HOUR, 1000));
    let batcher = layer.layer(predictor.clone());
    let started = Instant::now();
    let scores = soon(call(&batcher, rows(1, 1))).await.unwrap();
    assert_eq!(scores.len(), 1);
    assert_eq!(metrics.batches.get(), 1);
    // It waited far less than the one-hour delay.
    assert!(metrics.queue_wait.get_sample_sum() < started.elapsed().as_secs_f64() + 1.0);
}

#[tokio::test]
async fn arrivals_during_a_pass_form_the_next_batch_and_full_batches_go_at_once() {
    let predictor = Gated::new();
    let (layer, _) = layer(config(4, HOUR, 1000));
    let batcher = layer.layer(predictor.clone());

    predictor.close();
    let first = tokio::spawn(call(&batcher, rows(0, 1)));
    predictor.wait_started(1).await;
    // Nine rows arrive while the first pass runs: two full batches of four,
    // then one lone row that goes as soon as the compute thread is free.
    let later: Vec<_> = (1..10)
        .map(|i| tokio::spawn(call(&batcher, rows(i, 1))))
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    predictor.open();
    soon(first).await.unwrap().unwrap();
    for answer in soon(join_all(later)).await {
        assert_eq!(answer.unwrap().unwrap().len(), 1);
    }
    assert_eq!(predictor.sizes(), vec![1, 4, 4, 1]);
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_recovers() {
    let predictor = Gated::new();
    let (layer, metrics) = layer(config(256, Duration::ZERO, 4));
    let batcher = layer.layer(predictor.clone());

    predictor.close();
    let running = tokio::spawn(call(&batcher, rows(0, 1)));
    predictor.wait_started(1).await;
    let queued = tokio::spawn(call(&batcher, rows(1, 4)));
    tokio::time::sleep(Duration::from_millis(20)).await;
    for request in [rows(2, 1), rows(3, 5)] {
        match call(&batcher, request).await {
            Err(ServalError::ResourceExhausted(message)) => {
                assert!(message.contains("queue is full"), "{message}")
            }
            other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
        }
    }
    assert_eq!(metrics.rejected.get(), 2);
    predictor.open();
    soon(running).await.unwrap().unwrap();
    assert_eq!(soon(queued).await.unwrap().unwrap().len(), 4);
    // Room again.
    assert_eq!(soon(call(&batcher, rows(4, 1))).await.unwrap().len(), 1);
}

#[tokio::test]
async fn callers_that_left_or_ran_out_of_time_are_not_computed() {
    let predictor = Gated::new();
    let (layer, metrics) = layer(config(256, Duration::ZERO, 100));
    let batcher = layer.layer(predictor.clone());

    predictor.close();
    let running = tokio::spawn(call(&batcher, rows(0, 1)));
    predictor.wait_started(1).await;
    let kept = tokio::spawn(call(&batcher, rows(1, 2)));
    let abandoned = tokio::spawn(call(&batcher, rows(2, 3)));
    let expired = tokio::spawn(batcher.submit(PredictRows {
        rows: rows(3, 5),
        deadline: Some(Instant::now()),
        explain: false,
    }));
    tokio::time::sleep(Duration::from_millis(20)).await;
    abandoned.abort();
    let _ = abandoned.await;
    predictor.open();

    soon(running).await.unwrap().unwrap();
    assert_eq!(soon(kept).await.unwrap().unwrap().len(), 2);
    assert!(matches!(
        soon(expired).await.unwrap(),
        Err(ServalError::DeadlineExceeded(_))
    ));
    assert_eq!(predictor.sizes(), vec![1, 2]);
    assert_eq!(metrics.rows_computed(), 3);
    assert_eq!(metrics.dropped.get(), 2);
}

#[tokio::test]
async fn a_failed_pass_fails_only_its_own_callers() {
    let predictor = Gated::new();
    let (layer, _) = layer(config(256, Duration::ZERO, 100));
    let batcher = layer.layer(predictor.clone());

    predictor.close();
    let mut poisoned = rows(0, 1);
    poisoned[0] = POISON;
    let failing = tokio::spawn(call(&batcher, poisoned));
    predictor.wait_started(1).await;
    let fine: Vec<_> = (1..4).map(|i| tokio::spawn(call(&batcher, rows(i, 1)))).collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    predictor.open();

    match soon(failing).await.unwrap() {
        Err(ServalError::Internal(message)) => assert!(message.contains("poisoned batch"), "{message}"),
        other => panic!("expected INTERNAL, got {other:?}"),
    }
    for answer in soon(join_all(fine)).await {
        assert_eq!(answer.unwrap().unwrap().len(), 1);
    }
    assert_eq!(predictor.sizes(), vec![1, 3]);
    // The compute thread carries on.
    assert_eq!(soon(call(&batcher, rows(9, 2))).await.unwrap().len(), 2);
}

#[tokio::test]
async fn versions_batch_separately_through_the_server() {
    let mut test = TestServer::start().await;
    train_two_small_versions(&mut test.client).await;

    let request = |version: u32, x: f64| pb::PredictRequest {
        model: "small".into(),
        version: Some(version),
        records: vec![small_record(x, "red", x > 5.0)],
        ..Default::default()
    };
    // Each version's single-call answers are the reference.
    let mut expected = Vec::new();
    for i in 0..120 {
        let version = 1 + (i % 2) as u32;
        let x = i as f64 / 6.0;
        let alone = test.client.predict(request(version, x)).await.unwrap();
        assert_eq!(alone.version, version);
        expected.push(alone.scores[0]);
    }
    let calls: Vec<_> = (0..120)
        .map(|i| {
            let mut client = test.client.clone();
            let request = request(1 + (i % 2) as u32, i as f64 / 6.0);
            tokio::spawn(async move { client.predict(request).await.unwrap() })
        })
        .collect();
    for (i, answer) in join_all(calls).await.into_iter().enumerate() {
        let answer = answer.unwrap();
        assert_eq!(answer.version, 1 + (i % 2) as u32);
        assert!((answer.scores[0] - expected[i]).abs() <= 1e-5);
    }
    let family = &test.server.metrics().batching;
    assert_eq!(family.for_version("small", 1).rows_computed(), 120);
    assert_eq!(family.for_version("small", 2).rows_computed(), 120);
}

#[tokio::test]
async fn explaining_callers_share_the_batch_and_only_they_get_explanations() {
    let network = Arc::new(Mlp::random_ensemble(WIDTH, &[16, 8], 4, 3).unwrap());
    let baseline = vec![0.25; WIDTH];
    let scorer = Arc::new(serval_model::explain::Scorer {
        network: network.clone(),
        baseline: baseline.clone(),
    });
    let metrics = BatchMetrics::unregistered();
    let (batcher, hold) = Batcher::held(
        scorer,
        config(256, HOUR, 10_000),
        ComputePool::new(1).unwrap(),
        metrics.clone(),
    );
    // Queued before the compute thread may take any, so they form one batch.
    let mut calls = Vec::new();
    for caller in 0..6 {
        let explain = caller % 2 == 0;
        let input = rows(caller, 1 + caller % 3);
        calls.push((
            input.clone(),
            explain,
            batcher.submit(PredictRows {
                rows: input,
                deadline: None,
                explain,
            }),
        ));
    }
    hold.release();
    for (input, explain, answer) in calls {
        let scored = soon(answer).await.unwrap();
        assert_eq!(scored.scores, network.predict(&input).unwrap());
        if !explain {
            assert!(scored.explanations.is_empty());
            continue;
        }
        let alone = serval_model::explain::integrated_gradients(&network, &baseline, &input).unwrap();
        assert_eq!(scored.explanations.len(), input.len() / WIDTH);
        for (batched, alone) in scored.explanations.iter().zip(&alone) {
            assert_eq!(batched.steps, alone.steps);
            for (a, b) in batched.attributions.iter().zip(&alone.attributions) {
                assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
            }
        }
    }
    assert_eq!(metrics.batches.get(), 1, "one forward pass for all six callers");
}

/// Batches are cut and computed on the compute threads: calls are answered
/// even while every thread of the runtime that made the batcher is busy
/// (under overload, call tasks would otherwise queue ahead of the batching
/// each time it wakes), and even after that runtime is gone.
#[test]
fn batching_needs_no_thread_of_the_servers_runtime() {
    let predictor = Gated::new();
    let (layer, metrics) = layer(config(256, Duration::ZERO, 1024));
    let server_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let batcher = server_runtime.block_on(async { layer.layer(predictor.clone()) });
    // The runtime's only thread is taken by a task that never yields.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let hog = std::thread::spawn(move || {
        server_runtime.block_on(async move {
            let _ = released.recv();
        });
        server_runtime
    });

    let callers = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let input = rows(3, 2);
    let answer = callers
        .block_on(async { soon(call(&batcher, input.clone())).await })
        .unwrap();
    assert_eq!(answer, predictor.network.predict(&input).unwrap());

    release.send(()).unwrap();
    drop(hog.join().unwrap());
    let after = callers.block_on(async { soon(call(&batcher, rows(4, 1))).await });
    assert_eq!(after.unwrap().len(), 1);
    assert_eq!(metrics.batches.get(), 2);
}

/// A version's scorer that logs, in a log shared with other versions, the
/// size of each pass as it starts; passes wait on a shared gate.
struct Logged {
    name: &'static str,
    gate: Arc<Gated>,
    log: Arc<Mutex<Vec<(&'static str, usize)>>>,
}

impl BatchScorer for Logged {
    type Explanation = ();

    fn width(&self) -> usize {
        WIDTH
    }

    fn score(&self, rows: &[f32]) -> Result<Vec<f32>, ModelError> {
        self.log.lock().unwrap().push((self.name, rows.len() / WIDTH));
        self.gate.score(rows)
    }
}

/// Waits until `rows` rows wait in the queue `metrics` counts.
async fn queued(metrics: &BatchMetrics, rows: i64) {
    soon(async {
        while metrics.queued_rows.get() != rows {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_busy_version_delays_another_versions_lone_call_by_one_batch_at_most() {
    let gate = Gated::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    // One compute thread for both versions.
    let pool = ComputePool::new(1).unwrap();
    let version = |name: &'static str| {
        let metrics = BatchMetrics::unregistered();
        let scorer = Arc::new(Logged {
            name,
            gate: gate.clone(),
            log: log.clone(),
        });
        let layer = BatchLayer::new(config(4, HOUR, 1000), pool.clone(), metrics.clone());
        (layer.layer(scorer), metrics)
    };
    let (busy, busy_metrics) = version("busy");
    let (lone, lone_metrics) = version("lone");

    gate.close();
    let first = tokio::spawn(call(&busy, rows(0, 1)));
    gate.wait_started(1).await;
    // 40 rows for the busy version queue behind its running pass: ten
    // batches' worth. Then one call for the other version.
    let flood: Vec<_> = (1..=40).map(|i| tokio::spawn(call(&busy, rows(i, 1)))).collect();
    queued(&busy_metrics, 40).await;
    let alone = tokio::spawn(call(&lone, rows(99, 1)));
    queued(&lone_metrics, 1).await;
    gate.open();

    soon(first).await.unwrap().unwrap();
    assert_eq!(soon(alone).await.unwrap().unwrap().len(), 1);
    for answer in soon(join_all(flood)).await {
        assert_eq!(answer.unwrap().unwrap().len(), 1);
    }
    let log = log.lock().unwrap().clone();
    // The lone call waited only for the pass already running.
    assert_eq!(log[..2], [("busy", 1), ("lone", 1)], "{log:?}");
    assert_eq!(log[2..], [("busy", 4); 10], "{log:?}");
}

#[tokio::test]
async fn versions_take_turns_on_the_shared_threads_one_batch_each() {
    let gate = Gated::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let pool = ComputePool::new(1).unwrap();
    let names = ["a", "b", "c"];
    let versions: Vec<_> = names
        .iter()
        .map(|&name| {
            let metrics = BatchMetrics::unregistered();
            let scorer = Arc::new(Logged {
                name,
                gate: gate.clone(),
                log: log.clone(),
            });
            let layer = BatchLayer::new(config(2, HOUR, 1000), pool.clone(), metrics.clone());
            (layer.layer(scorer), metrics)
        })
        .collect();

    gate.close();
    // A pass of an unrelated version holds the thread while the three
    // queues fill with three batches each.
    let (blocker, _) = {
        let metrics = BatchMetrics::unregistered();
        let scorer = Arc::new(Logged {
            name: "blocker",
            gate: gate.clone(),
            log: log.clone(),
        });
        (
            BatchLayer::new(config(2, HOUR, 1000), pool.clone(), metrics.clone()).layer(scorer),
            metrics,
        )
    };
    let held = tokio::spawn(call(&blocker, rows(0, 1)));
    gate.wait_started(1).await;
    let mut calls = Vec::new();
    for (batcher, metrics) in &versions {
        for i in 0..6 {
            calls.push(tokio::spawn(call(batcher, rows(i, 1))));
        }
        queued(metrics, 6).await;
    }
    gate.open();
    soon(held).await.unwrap().unwrap();
    for answer in soon(join_all(calls)).await {
        assert_eq!(answer.unwrap().unwrap().len(), 1);
    }
    let order: Vec<&str> = log.lock().unwrap().iter().map(|(name, _)| *name).collect();
    assert_eq!(
        order,
        ["blocker", "a", "b", "c", "a", "b", "c", "a", "b", "c"],
        "round robin, one batch of two rows per turn"
    );
}

#[tokio::test]
async fn a_deferred_wake_leaves_the_rows_waiting_until_it_is_done_or_dropped() {
    let predictor = Gated::new();
    let (layer, _) = layer(config(256, HOUR, 1000));
    let batcher = layer.layer(predictor.clone());
    // Until the compute thread is found asleep: a call that finds it awake
    // is taken without a wake.
    let (answer, wake) = soon(async {
        loop {
            let (answer, wake) = batcher.submit_deferring_wake(PredictRows::scores_of(rows(1, 1)));
            if let Some(wake) = wake {
                return (answer, wake);
            }
            answer.await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let passes = predictor.sizes().len();
    // Nobody wakes the sleeping thread meanwhile.
    let mut answer = Box::pin(answer);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut answer)
            .await
            .is_err(),
        "answered before the wake"
    );
    assert_eq!(predictor.sizes().len(), passes);
    // A caller that leaves before doing it still wakes the thread.
    drop(wake);
    assert_eq!(soon(answer).await.unwrap().scores.len(), 1);
}
