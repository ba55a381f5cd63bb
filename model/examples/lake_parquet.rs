//! Writes a generated training dataset as Parquet, for the data-lake scale
//! benchmark (`scripts/bench-lake.sh`): `rows` rows of 29 features — 18
//! decimal numbers, 4 counts, 6 text categories of 5 to 1,000 values and a
//! boolean — and a 0/1 label drawn from a logistic model of some of them,
//! in row groups of 262,144 rows, Snappy-compressed, from a fixed seed.
//!
//!   cargo run --release -p serval-model --example lake_parquet -- ROWS PATH

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BATCH_ROWS: usize = 65_536;
const ROW_GROUP_ROWS: usize = 262_144;
const CATEGORIES: [usize; 6] = [5, 20, 100, 1000, 50, 12];

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args.next().and_then(|r| r.parse().ok()).expect("rows");
    let path = args.next().expect("path");
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    // Each category's effect on the label's log-odds.
    let effects: Vec<Vec<f64>> = CATEGORIES
        .iter()
        .map(|&n| (0..n).map(|_| normal(&mut rng) * 0.5).collect())
        .collect();
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    let mut written = 0;
    while written < rows {
        let n = BATCH_ROWS.min(rows - written);
        let mut decimals: Vec<Vec<f64>> = (0..18).map(|_| Vec::with_capacity(n)).collect();
        let mut counts: Vec<Vec<i64>> = (0..4).map(|_| Vec::with_capacity(n)).collect();
        let mut categories: Vec<Vec<String>> = (0..6).map(|_| Vec::with_capacity(n)).collect();
        let mut flags = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let x: Vec<f64> = (0..18)
                .map(|_| (normal(&mut rng) * 100.0).round() / 100.0)
                .collect();
            let c: Vec<i64> = (0..4)
                .map(|i| (rng.random::<f64>().powi(3) * 200.0 * (i + 1) as f64) as i64)
                .collect();
            let k: Vec<usize> = CATEGORIES
                .iter()
                .map(|&n| ((rng.random::<f64>().powi(2)) * n as f64) as usize)
                .collect();
            let flag = rng.random_bool(0.3);
            let logit = 0.9 * x[0] - 0.7 * x[1]
                + 0.5 * x[2] * x[3]
                + 0.4 * x[4].abs()
                + effects[0][k[0]]
                + effects[1][k[1]]
                + effects[3][k[3]]
                + 0.004 * (c[0] as f64 - 50.0)
                + if flag { 0.7 } else { 0.0 }
                - 1.6;
            let label = rng.random::<f64>() < 1.0 / (1.0 + (-logit).exp());
            for (column, value) in decimals.iter_mut().zip(x) {
                column.push(value);
            }
            for (column, value) in counts.iter_mut().zip(c) {
                column.push(value);
            }
            for (i, (column, value)) in categories.iter_mut().zip(k).enumerate() {
                column.push(format!("c{i}-{value}"));
            }
            flags.push(flag);
            labels.push(i64::from(label));
        }
        let mut columns: Vec<(String, ArrayRef)> = Vec::new();
        for (i, values) in decimals.into_iter().enumerate() {
            columns.push((format!("x{i}"), Arc::new(Float64Array::from(values))));
        }
        for (i, values) in counts.into_iter().enumerate() {
            columns.push((format!("count{i}"), Arc::new(Int64Array::from(values))));
        }
        for (i, values) in categories.into_iter().enumerate() {
            columns.push((format!("category{i}"), Arc::new(StringArray::from(values))));
        }
        columns.push(("flag".into(), Arc::new(BooleanArray::from(flags))));
        columns.push(("label".into(), Arc::new(Int64Array::from(labels))));
        let batch = RecordBatch::try_from_iter(columns).expect("a batch");
        let writer = writer.get_or_insert_with(|| {
            let properties = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .build();
            ArrowWriter::try_new(
                std::fs::File::create(&path).expect("the output file"),
                batch.schema(),
                Some(properties),
            )
            .expect("a Parquet writer")
        });
        writer.write(&batch).expect("rows written");
        written += n;
    }
    writer
        .expect("at least one row")
        .close()
        .expect("the file closed");
}
