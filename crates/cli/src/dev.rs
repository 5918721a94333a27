//! `tierline dev`: the three services in this process on embedded storage (see the
//! `tierline-dev` crate), a banner saying where they listen and what to try, and a clean stop on
//! Ctrl-C or SIGTERM.

use std::time::Duration;

use tierline_dev::{Addresses, DevConfig, Storage, demo};
use tierline_runtime::config::{self, ConfigError};

use crate::args::DevArgs;
use crate::error::CliError;

/// How long the router may take to build its live state at start.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Runs dev mode until a signal or a service failure.
pub async fn run(args: DevArgs) -> Result<(), CliError> {
    let config: DevConfig = config::load(args.config.as_deref()).map_err(|e| match e {
        ConfigError::Usage(m) => CliError::Usage(m),
        other => CliError::Failed(other.to_string()),
    })?;
    let _telemetry = tierline_runtime::telemetry::init("tierline-dev", &config.telemetry)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let storage = if args.in_memory {
        Storage::Memory
    } else {
        Storage::Directory(args.data_dir.clone())
    };
    let fresh = storage.is_fresh();
    let failed = |e: tierline_dev::DevError| CliError::Failed(e.to_string());
    let mut dev = tierline_dev::start(config, storage.clone())
        .await
        .map_err(failed)?;
    dev.ready(READY_WITHIN).await.map_err(failed)?;
    let loaded = if fresh && !args.no_demo {
        Some(demo::load(&dev.addresses()).await.map_err(failed)?)
    } else {
        None
    };
    println!(
        "{}",
        banner(&dev.addresses(), &storage, loaded.as_ref(), fresh)
    );
    let outcome = tokio::select! {
        () = tierline_runtime::shutdown::signal() => Ok(()),
        error = dev.failed() => Err(failed(error)),
    };
    eprintln!("stopping…");
    let stopped = dev.stop().await.map_err(failed);
    outcome.and(stopped)
}

/// What dev mode prints once it is ready.
pub fn banner(
    addresses: &Addresses,
    storage: &Storage,
    loaded: Option<&demo::Loaded>,
    fresh: bool,
) -> String {
    let mut out = String::from("Tierline dev mode: three services in this process\n");
    out.push_str(&format!(
        "  customer-profile  http://{}\n  ticket            http://{}\n  routing           http://{}\n",
        addresses.customer, addresses.ticket, addresses.routing
    ));
    match storage {
        Storage::Directory(dir) => out.push_str(&format!(
            "data: SQLite files in {} (delete it to start over); routing state in memory\n",
            dir.display()
        )),
        Storage::Memory => out.push_str("data: in memory, gone when this stops\n"),
    }
    match loaded {
        Some(loaded) => {
            out.push_str("\ndemo customers:\n");
            for line in &loaded.customers {
                out.push_str(&format!("  {line}\n"));
            }
            out.push_str("demo agents:\n");
            for line in &loaded.agents {
                out.push_str(&format!("  {line}\n"));
            }
        }
        None if fresh => out.push_str("no demo data (--no-demo)\n"),
        None => out.push_str("demo data: as left at the last run\n"),
    }
    out.push_str(
        "\ntry, in other terminals:\n  \
         tierline agent desktop sam --available\n  \
         tierline ivr call --from \"+44 20 7946 0103\" --category billing \"charged twice\"\n  \
         tierline queue stats\n\
         Ctrl-C stops.",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_names_every_address_and_where_the_data_is() {
        let addresses = Addresses {
            customer: "127.0.0.1:50051".parse().expect("addr"),
            ticket: "127.0.0.1:50052".parse().expect("addr"),
            routing: "127.0.0.1:50053".parse().expect("addr"),
        };
        let text = banner(
            &addresses,
            &Storage::Directory(".tierline-dev".into()),
            None,
            false,
        );
        assert!(text.contains("customer-profile  http://127.0.0.1:50051"));
        assert!(text.contains("ticket            http://127.0.0.1:50052"));
        assert!(text.contains("routing           http://127.0.0.1:50053"));
        assert!(text.contains("SQLite files in .tierline-dev"));
        assert!(text.contains("as left at the last run"));
        let text = banner(&addresses, &Storage::Memory, None, true);
        assert!(text.contains("in memory"));
        assert!(text.contains("--no-demo"));
    }
}
