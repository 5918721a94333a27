//! `tierline-ticket`: runs the ticket service. Configuration: see `deploy/ticket.toml`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use tierline_runtime::config::{self, ConfigError, EXIT_CONFIG};
use tierline_ticket::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let loaded = config::file_from_args(std::env::args())
        .and_then(|file| config::load::<Config>(file.as_deref()));
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tierline-ticket: {error}");
            return match error {
                ConfigError::Usage(_) => ExitCode::from(64),
                _ => ExitCode::from(EXIT_CONFIG as u8),
            };
        }
    };
    let _telemetry = match tierline_runtime::telemetry::init("tierline-ticket", &config.telemetry) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("tierline-ticket: {error}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let listener = match tierline_runtime::server::bind(&config.server).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    match tierline_ticket::serve(listener, config, tierline_runtime::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %tierline_runtime::error::DisplayChain(&error), "stopped with an error");
            ExitCode::FAILURE
        }
    }
}
