//! The `tierline` command-line client of the Tierline services, as a library: one module per
//! command group, each with pure formatting functions beside the calls, and a thin `main`.
//!
//! - [`args`]: the command line (clap).
//! - [`ctx`]: connections, deadlines, the caller's name in metadata, output.
//! - [`error`]: failures, how they are shown, exit statuses.
//! - [`ivr`], [`agent`], [`desktop`], [`customer`], [`ticket`], [`queue`], [`explain`]: the
//!   commands.
//! - [`dev`]: `tierline dev`, the three services in this process (crate `tierline-dev`).
#![forbid(unsafe_code)]

pub mod agent;
pub mod args;
pub mod ctx;
pub mod customer;
pub mod desktop;
pub mod dev;
pub mod error;
pub mod explain;
pub mod fmt;
pub mod ivr;
pub mod json;
pub mod queue;
pub mod ticket;

use args::{Cli, Command};
use ctx::Ctx;
use error::CliError;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let ctx = Ctx::new(&cli.global);
    match cli.command {
        Command::Ivr(c) => ivr::run(&ctx, c).await,
        Command::Agent(c) => agent::run(&ctx, c).await,
        Command::Customer(c) => customer::run(&ctx, c).await,
        Command::Ticket(c) => ticket::run(&ctx, c).await,
        Command::Queue(c) => queue::run(&ctx, c).await,
        Command::Explain(c) => explain::run(&ctx, c).await,
        Command::Dev(args) => dev::run(args).await,
    }
}
