//! `ispcert`: the operator and its command line (see `ispcert --help`).

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ispcert::cli::main(ispcert::cli::Cli::parse()).await
}
