//! `tierline-scale`: the scale and recovery scenarios of issue 6, against a running routing
//! service, through its public gRPC API as the ticket service and agent desktops call it.
//! Redis is read directly only to measure (INFO memory, MEMORY USAGE of the run's key prefix),
//! and, in `rebuild`, to delete the run's keys as a lost Redis would.
//!
//! - [`depth`]: a queue filled to D tickets; SyncTicket and offer latency at 1,000 and at D;
//!   bytes per queued ticket; the fill rate.
//! - [`desktops`]: N agent desktops connected at once; routing-process memory per connection,
//!   Redis bytes per agent, time to connect, and enqueue-to-offer latency with all connected.
//! - [`decisions`]: routing capacity: a deep queue and free agents who decline every offer;
//!   offers made per second beside the raw Redis script rate measured just before.
//! - [`rebuild`]: recovery: the live state deleted under 100,000 queued tickets, and the time
//!   until the router has rebuilt it from the ticket service.
//!
//! Reading order: this file (the command line), [`client`] (calls and synthetic tickets),
//! [`probe`] (Redis memory, process memory), [`report`] (tables and JSON), then the scenarios.

pub mod client;
pub mod decisions;
pub mod depth;
pub mod desktops;
pub mod probe;
pub mod rebuild;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Runs one scale scenario against a running routing service (and, for `rebuild`, the ticket
/// and customer services and the ticket database) and prints a table of figures beside their
/// targets or limits; `--out` writes the same report as JSON.
#[derive(Debug, Clone, Parser)]
#[command(name = "tierline-scale", version)]
pub struct Cli {
    /// Options every scenario takes.
    #[command(flatten)]
    pub common: Common,
    /// The scenario.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Options every scenario takes (before or after the scenario's name).
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Address of the routing service (host:port or http://host:port).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:50053",
        value_name = "ADDR"
    )]
    pub routing_addr: String,
    /// Address of the ticket service (rebuild only).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:50052",
        value_name = "ADDR"
    )]
    pub ticket_addr: String,
    /// Redis the router uses: read for memory figures, and for the raw limit.
    #[arg(
        long,
        global = true,
        env = "TIERLINE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// The router's Redis key prefix (its `redis.key_prefix`): the keys measured, and the only
    /// keys `rebuild` deletes.
    #[arg(long, global = true, default_value = "tierline:")]
    pub redis_prefix: String,
    /// The routing process, for its memory (VmRSS); by default the only process named
    /// tierline-routing.
    #[arg(long, global = true)]
    pub routing_pid: Option<u32>,
    /// The department (queue) the scenario works in.
    #[arg(long, global = true, default_value = "customer_service")]
    pub department: String,
    /// Deadline of each call.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Write the report as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// The scenarios.
#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// A queue filled to --depth waiting tickets: routing latency at 1,000 and at that depth,
    /// bytes per queued ticket, and the fill rate (SyncTicket/s).
    Depth(depth::Args),
    /// --desktops agent desktops connected to one routing process: memory per connection, time
    /// to connect, and enqueue-to-offer latency with all of them connected.
    Desktops(desktops::Args),
    /// Routing capacity: offers made per second to agents who decline every offer, from a deep
    /// queue, beside the raw Redis script rate measured just before.
    Decisions(decisions::Args),
    /// Recovery: --tickets open tickets in the ticket service, the router's Redis keys deleted,
    /// and the time until the live state is rebuilt.
    Rebuild(rebuild::Args),
}

/// Runs the scenario the command line names.
pub async fn run(cli: Cli) -> Result<()> {
    let common = cli.common;
    let report = match cli.scenario {
        Scenario::Depth(args) => depth::run(&common, &args).await?,
        Scenario::Desktops(args) => desktops::run(&common, &args).await?,
        Scenario::Decisions(args) => decisions::run(&common, &args).await?,
        Scenario::Rebuild(args) => rebuild::run(&common, &args).await?,
    };
    print!("{}", report.table());
    if let Some(path) = &common.out {
        report.write(path)?;
        eprintln!("tierline-scale: report written to {}", path.display());
    }
    Ok(())
}

/// The raw Redis limit ([`crate::limits::redis`]), tried a second time if the first fails:
/// its clean-up (one UNLINK, under the client's default reply timeout) can time out while another
/// client of the shared Redis blocks it, which loses a measurement that went well.
pub async fn raw_redis_limit(
    url: &str,
    concurrency: usize,
    duration: Duration,
) -> Result<crate::limits::RawLimit> {
    match crate::limits::redis(url, concurrency, duration).await {
        Ok(limit) => Ok(limit),
        Err(e) => {
            eprintln!("tierline-scale: raw Redis limit failed ({e:#}); once more");
            tokio::time::sleep(Duration::from_secs(2)).await;
            crate::limits::redis(url, concurrency, duration).await
        }
    }
}

/// Accepts 1 and more.
pub fn positive_usize(s: &str) -> Result<usize, String> {
    match s.replace('_', "").parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive whole number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn common_options_go_before_or_after_the_scenario() {
        let a = Cli::try_parse_from(["tierline-scale", "--redis-prefix", "p:", "depth"])
            .expect("before");
        let b = Cli::try_parse_from(["tierline-scale", "depth", "--redis-prefix", "p:"])
            .expect("after");
        assert_eq!(a.common.redis_prefix, "p:");
        assert_eq!(b.common.redis_prefix, "p:");
        let c = Cli::try_parse_from(["tierline-scale", "depth", "--depth", "1_000"]).expect("d");
        match c.scenario {
            Scenario::Depth(d) => assert_eq!(d.depth, 1000),
            other => panic!("{other:?}"),
        }
        assert!(positive_usize("0").is_err());
    }
}
