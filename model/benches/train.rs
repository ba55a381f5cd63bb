//! Training speed and quality on the three example datasets with default
//! settings: wall time of data preparation and of the training loop, epochs
//! run, validation AUC and F1. Run with `cargo bench -p serval-model --bench
//! train` (add a dataset name to run only that one).
//!
//! `cargo bench -p serval-model --bench train -- scale 20` instead trains on
//! online_shoppers grown 20 times (rows resampled with jittered numbers) and
//! reports the peak memory and the longest gap between progress reports.
//!
//! `cargo bench -p serval-model --bench train -- wide 60 20000` trains on a
//! generated numeric CSV of that many rows and columns (one column carries
//! the signal) and reports where the time goes: preparation, the training
//! loop, and importance with the rest.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serval_model::training::{LearningRateSchedule, Recipe, TrainingLimits, prepare, train};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if args.first().map(String::as_str) == Some("scale") {
        let factor = args.get(1).and_then(|f| f.parse().ok()).unwrap_or(20);
        return scaled(factor);
    }
    if args.first().map(String::as_str) == Some("wide") {
        let rows = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(60);
        let columns = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(20_000);
        return wide(rows, columns);
    }
    let only = args.first().cloned();
    let datasets = [
        ("online_shoppers_intention.csv", "Revenue", "TRUE", vec![]),
        (
            "Telco-Customer-Churn.csv",
            "Churn",
            "Yes",
            vec!["customerID".to_string()],
        ),
        ("in-vehicle-coupon-recommendation.csv", "Y", "1", vec![]),
    ];
    println!(
        "RAYON_NUM_THREADS={}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    for (file, label, positive, drop) in datasets {
        if only.as_deref().is_some_and(|o| !file.contains(o)) {
            continue;
        }
        let path = format!("{}/../examples/data/{file}", env!("CARGO_MANIFEST_DIR"));
        let csv = std::fs::read(&path).expect("dataset");
        // Hyper-parameters may be overridden for measurement, as JSON in
        // SERVAL_BENCH_HYPER (e.g. {"epochs": 20, "l2": 0.0001}).
        let overrides: serde_json::Value = std::env::var("SERVAL_BENCH_HYPER")
            .ok()
            .map(|text| serde_json::from_str(&text).expect("SERVAL_BENCH_HYPER is JSON"))
            .unwrap_or_default();
        let number = |key: &str| overrides.get(key).and_then(|v| v.as_f64());
        let mut recipe = Recipe::new(label, positive);
        recipe.drop_columns = drop;
        if let Some(epochs) = number("epochs") {
            recipe.epochs = epochs as usize;
        }
        if let Some(batch_size) = number("batch_size") {
            recipe.batch_size = batch_size as usize;
        }
        if let Some(patience) = number("patience") {
            recipe.patience = patience as usize;
        }
        recipe.learning_rate = number("learning_rate").unwrap_or(recipe.learning_rate);
        recipe.l2 = number("l2").unwrap_or(recipe.l2);
        recipe.dropout = number("dropout").unwrap_or(recipe.dropout);
        if let Some(weighting) = overrides.get("class_weighting").and_then(|v| v.as_bool()) {
            recipe.class_weighting = weighting;
        }
        if overrides.get("schedule").and_then(|v| v.as_str()) == Some("constant") {
            recipe.learning_rate_schedule = LearningRateSchedule::Constant;
        }
        if let Some(hidden) = overrides.get("hidden").and_then(|v| v.as_array()) {
            recipe.hidden_layers = hidden
                .iter()
                .filter_map(|w| w.as_u64())
                .map(|w| w as usize)
                .collect();
        }
        let limits = TrainingLimits::default();
        let started = Instant::now();
        recipe.check(&limits).unwrap();
        let prepared = prepare(recipe, &csv, &limits).unwrap();
        let prepared_in = started.elapsed();
        let trained = train(prepared, &AtomicBool::new(false), |_| {}).unwrap();
        let total = started.elapsed();
        println!(
            "{file:<40} prepare {:>6.3} s  train {:>6.3} s  epochs {:>3} (best {:>2})  \
             validation AUC {:.4}  test AUC {:.4}  test F1 {:.4} (threshold {:.3})",
            prepared_in.as_secs_f64(),
            (total - prepared_in).as_secs_f64(),
            trained.history.len(),
            trained.best_epoch,
            trained.validation.auc,
            trained.test.auc,
            trained.test.f1,
            trained.validation.threshold,
        );
    }
}

/// Peak resident memory of this process so far, in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// online_shoppers with `factor` times the rows: each row resampled from
/// the original, its numeric cells jittered by up to ±10 %.
fn grown_shoppers(factor: usize) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let path = format!(
        "{}/../examples/data/online_shoppers_intention.csv",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).expect("dataset");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let rows: Vec<&str> = lines.collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20);
    let mut out = String::with_capacity(text.len() * factor);
    out.push_str(header);
    out.push('\n');
    for _ in 0..rows.len() * factor {
        let row = rows[rng.random_range(0..rows.len())];
        let cells: Vec<String> = row
            .split(',')
            .map(|cell| match cell.parse::<f64>() {
                Ok(x) if cell.contains('.') => format!("{:.6}", x * rng.random_range(0.9..1.1)),
                _ => cell.to_string(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

fn scaled(factor: usize) {
    let before = peak_rss_mib();
    let csv = grown_shoppers(factor);
    let limits = TrainingLimits::default();
    let started = Instant::now();
    let prepared = prepare(Recipe::new("Revenue", "TRUE"), &csv, &limits).unwrap();
    let rows = prepared.dataset.rows;
    let mut last = Instant::now();
    let mut longest_gap = std::time::Duration::ZERO;
    let trained = train(prepared, &AtomicBool::new(false), |_| {
        longest_gap = longest_gap.max(last.elapsed());
        last = Instant::now();
    })
    .unwrap();
    // The wait from the last report to the finished version counts too.
    longest_gap = longest_gap.max(last.elapsed());
    println!(
        "online_shoppers x{factor}: {rows} rows, {:.1} MB of CSV; {:.1} s, {} epochs, AUC {:.4}; \
         peak RSS {:.0} MiB (before loading {:.0} MiB); longest gap between progress reports {:.2} s",
        csv.len() as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        trained.history.len(),
        trained.validation.auc,
        peak_rss_mib(),
        before,
        longest_gap.as_secs_f64(),
    );
}

/// A numeric CSV of `rows` × `columns` features and a label that follows
/// the first column, with values of 1 to 3 characters like a sparse export.
fn wide_csv(rows: usize, columns: usize) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut out = String::new();
    for c in 0..columns {
        out.push_str(&format!("x{c},"));
    }
    out.push_str("label\n");
    for r in 0..rows {
        let signal = r % 2;
        for c in 0..columns {
            let value: u32 = if c == 0 {
                signal as u32 * 5 + rng.random_range(0..5)
            } else {
                rng.random_range(0..100)
            };
            out.push_str(&value.to_string());
            out.push(',');
        }
        out.push_str(&format!("{signal}\n"));
    }
    out.into_bytes()
}

fn wide(rows: usize, columns: usize) {
    let csv = wide_csv(rows, columns);
    let limits = TrainingLimits {
        max_columns: columns + 1,
        ..TrainingLimits::default()
    };
    let started = Instant::now();
    let prepared = prepare(Recipe::new("label", "1"), &csv, &limits).unwrap();
    let prepared_in = started.elapsed();
    let trained = train(prepared, &AtomicBool::new(false), |_| {}).unwrap();
    let total = started.elapsed();
    let loop_seconds = trained.history.last().map_or(0.0, |e| e.elapsed_seconds);
    println!(
        "wide {rows} x {columns} ({:.1} MB of CSV): prepare {:.2} s, training loop {:.2} s ({} epochs), \
         importance and the rest {:.2} s, total {:.2} s; peak RSS {:.0} MiB",
        csv.len() as f64 / 1e6,
        prepared_in.as_secs_f64(),
        loop_seconds,
        trained.history.len(),
        (total - prepared_in).as_secs_f64() - loop_seconds,
        total.as_secs_f64(),
        peak_rss_mib(),
    );
}
