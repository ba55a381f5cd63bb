//! `serval-server`: parses flags, sets up logging (and OTLP export) and
//! compute threads, and runs the server until Ctrl-C or SIGTERM.

use clap::Parser;
use serval_server::config::LogFormat;
use serval_server::otlp::OtlpExport;
use serval_server::{Server, ServerConfig};

/// Why not the system allocator: glibc hands freed blocks above its
/// thresholds (128 KiB to start with) back to the kernel and takes them again
/// on the next allocation, so a forward pass over a few hundred rows, whose
/// activations are such blocks, paid page faults on every pass: measured
/// with `cargo bench -p serval-server --bench forward`, 256 rows took
/// ~360 µs with glibc and ~150 µs with mimalloc, 1024 rows ~2.6 ms against
/// ~0.6 ms. Small passes and per-call work are unchanged within noise.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let config = ServerConfig::parse();
    limit_compute_threads();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("serval-server: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The exporter's connection lives on the runtime.
    let export = match &config.otlp_endpoint {
        None => None,
        Some(endpoint) => match runtime.block_on(async { OtlpExport::start(endpoint) }) {
            Ok(export) => Some(export),
            Err(error) => {
                eprintln!("serval-server: {error}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    init_logging(config.log_format, export.as_ref());
    let outcome = runtime.block_on(run(config));
    if let Some(export) = export {
        // Correctness: the last spans go out over the runtime's tasks, so
        // the flush waits off its threads while the runtime still runs.
        let _ = runtime.block_on(async { tokio::task::spawn_blocking(move || export.shutdown()).await });
    }
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "serval-server stopped");
            eprintln!("serval-server: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: ServerConfig) -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::start(&config).await?;
    announce(&server);
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await?;
    Ok(())
}

/// Prints where the server listens: the gRPC address first, on a line of
/// its own (scripts read its last word), then the HTTP address. One write,
/// whose failure is ignored: a reader that stops after the first line must
/// not stop the server.
fn announce(server: &Server) {
    use std::io::Write;
    let mut text = format!("serval-server listening on {}\n", server.local_addr());
    if let Some(http) = server.http_addr() {
        text.push_str(&format!(
            "serval-server listening for HTTP (Open Inference Protocol) on {http}\n"
        ));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// One forward pass or training step on this workload is a few small
/// matrix products; spreading each over every core costs more in
/// synchronisation than it gains (about 90 µs instead of 10 µs for a small
/// batch on 2 cores). Candle reads `RAYON_NUM_THREADS` on every product, so
/// unless the operator chose otherwise each product runs on the calling
/// thread, and parallelism comes from running calls side by side.
fn limit_compute_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: called before the runtime or any other thread starts.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). With OTLP
/// export, the OpenTelemetry layer is added beside the log layer, with its
/// own filter; without it, no such layer exists at all.
fn init_logging(format: LogFormat, export: Option<&OtlpExport>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let Some(export) = export else {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().init(),
        }
        return;
    };
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = match format {
        LogFormat::Text => log.boxed(),
        LogFormat::Json => log.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(export.layer())
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
