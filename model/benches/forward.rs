//! Cost of one forward pass by batch size, on the calling thread: the
//! default ensemble (four members of 64-32) against the single 128-64
//! network that was the default before, at the encoded widths of the three
//! example datasets (30, 52 and 138 inputs). The rounds alternate the two
//! networks, and each figure is the best of its rounds. Run with
//! `cargo bench -p serval-model --bench forward`.

use std::time::Instant;

use serval_model::network::Mlp;

/// The server's allocator, so these figures are the server's (see
/// `serval-server`'s main.rs for why it matters above ~100 rows).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 5;

/// Seconds per pass of `network` over `rows` rows, over one round.
fn per_pass(network: &Mlp, rows: usize) -> f64 {
    let width = network.input_width();
    let input: Vec<f32> = (0..rows * width).map(|i| (i % 17) as f32 / 17.0).collect();
    for _ in 0..20 {
        network.predict(&input).unwrap();
    }
    let iterations = (10_000 / rows).max(40);
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(network.predict(std::hint::black_box(&input)).unwrap());
    }
    start.elapsed().as_secs_f64() / iterations as f64
}

fn main() {
    println!("RAYON_NUM_THREADS={:?}", std::env::var("RAYON_NUM_THREADS").ok());
    println!("| inputs | rows | 128-64 µs/row | 4 × 64-32 µs/row | ratio |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for width in [30usize, 52, 138] {
        let single = Mlp::random(width, &[128, 64], 1).unwrap();
        let ensemble = Mlp::random_ensemble(width, &[64, 32], 4, 1).unwrap();
        for rows in [1usize, 16, 64, 256] {
            let (mut a, mut b) = (f64::INFINITY, f64::INFINITY);
            for _ in 0..ROUNDS {
                a = a.min(per_pass(&single, rows));
                b = b.min(per_pass(&ensemble, rows));
            }
            let per_row = |s: f64| s * 1e6 / rows as f64;
            println!(
                "| {width} | {rows} | {:.2} | {:.2} | {:.2}× |",
                per_row(a),
                per_row(b),
                b / a
            );
        }
    }
}
