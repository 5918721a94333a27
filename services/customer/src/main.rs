//! `tierline-customer`: runs the customer-profile service. Configuration: see `deploy/customer.toml`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use tierline_customer::config::Config;
use tierline_runtime::config::{self, ConfigError, EXIT_CONFIG};

#[tokio::main]
async fn main() -> ExitCode {
    let loaded = config::file_from_args(std::env::args())
        .and_then(|file| config::load::<Config>(file.as_deref()));
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tierline-customer: {error}");
            return match error {
                ConfigError::Usage(_) => ExitCode::from(64),
                _ => ExitCode::from(EXIT_CONFIG as u8),
            };
        }
    };
    let _telemetry = match tierline_runtime::telemetry::init("tierline-customer", &config.telemetry)
    {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("tierline-customer: {error}");
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
    match tierline_customer::serve(listener, config, tierline_runtime::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %tierline_runtime::error::DisplayChain(&error), "stopped with an error");
            ExitCode::FAILURE
        }
    }
}
