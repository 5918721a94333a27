//! `tierline-scale`: the scale and recovery scenarios of issue 6 (deep queues, many desktops,
//! routing capacity, rebuild after a Redis loss) against a running routing service. See
//! `--help`, `tierline_bench::scale` and docs/benchmarks.md.
#![forbid(unsafe_code)]

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = tierline_bench::scale::Cli::parse();
    match tierline_bench::scale::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tierline-scale: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
