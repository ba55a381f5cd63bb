//! Cost of one forward pass of the default network (30 → 128 → 64 → 1) by
//! batch size, on the calling thread: the numbers behind the batching
//! layer's thread arrangement. Run with `cargo bench -p serval-model`.

use std::time::Instant;

use serval_model::network::MlpParameters;

/// The server's allocator, so these figures are the server's (see
/// `serval-server`'s main.rs for why it matters above ~100 rows).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let network = MlpParameters::init(30, &[128, 64], 1)
        .unwrap()
        .snapshot()
        .unwrap();
    println!("RAYON_NUM_THREADS={:?}", std::env::var("RAYON_NUM_THREADS").ok());
    for rows in [1usize, 4, 16, 64, 256, 1024] {
        let input: Vec<f32> = (0..rows * 30).map(|i| (i % 17) as f32 / 17.0).collect();
        for _ in 0..50 {
            network.predict(&input).unwrap();
        }
        let iterations = (20_000 / rows).max(50);
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(network.predict(std::hint::black_box(&input)).unwrap());
        }
        let per_pass = start.elapsed().as_secs_f64() / iterations as f64;
        println!(
            "rows {rows:>5}: {:>8.1} µs per pass, {:>6.2} µs per row",
            per_pass * 1e6,
            per_pass * 1e6 / rows as f64
        );
    }
}
