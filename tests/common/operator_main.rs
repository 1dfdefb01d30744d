//! The operator's `main`, word for word what `crates/ispcert/src/main.rs` runs, built inside the
//! test crate: cargo builds a package's binaries before its integration tests, so tests that
//! start the operator as a process always run the current code.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ispcert::cli::main(ispcert::cli::Cli::parse()).await
}
