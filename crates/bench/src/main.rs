//! `tierline-bench`: drives the running Tierline services as IVR callers and agent desktops
//! do, and reports each figure beside the raw PostgreSQL or Redis limit measured on the same
//! machine just before. See `--help` and docs/benchmarks.md.
#![forbid(unsafe_code)]

mod callers;
mod config;
mod desktops;
mod report;
mod run;
mod setup;

// Shared with tierline-scale through the library; `crate::stats` and the others still name them.
use tierline_bench::{cpu, limits, stats};

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = config::Args::parse();
    match run::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tierline-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
