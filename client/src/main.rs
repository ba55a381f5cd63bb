//! `serval`: the command-line tool for training, listing and scoring models
//! on a Serval server.

mod cli;

use clap::Parser;

/// Performance: `serval bench` shares the machine with the server it
/// measures, so every microsecond it spends is taken from the server. With
/// the system allocator, freeing and coalescing small blocks was ~4 µs of
/// its ~45 µs a call at 256 callers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::from(cli::exit::OTHER);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}
