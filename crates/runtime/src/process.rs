//! What every service binary does, written once so each `main` is one line: read the
//! configuration (exit 64 on bad usage, 78 on bad configuration), start telemetry, bind, serve
//! until SIGTERM or SIGINT, and exit non-zero on failure.

use std::future::Future;
use std::process::ExitCode;

use serde::{Serialize, de::DeserializeOwned};
use tokio::net::TcpListener;

use crate::config::{self, ConfigError, EXIT_CONFIG, ServerConfig, TelemetryConfig, Validate};
use crate::error::DisplayChain;

/// The parts of a service's configuration the process needs.
pub trait ServiceConfig: Default + Serialize + DeserializeOwned + Validate {
    /// Where and how to serve.
    fn server(&self) -> &ServerConfig;
    /// Logs and traces.
    fn telemetry(&self) -> &TelemetryConfig;
}

/// Runs service `name`: `serve` gets the bound listener, the configuration and the shutdown
/// signal, and returns when the service has stopped.
pub async fn run<C, F, Fut, E>(name: &'static str, serve: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(TcpListener, C, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error,
{
    let loaded = config::file_from_args(std::env::args())
        .and_then(|file| config::load::<C>(file.as_deref()));
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{name}: {error}");
            return match error {
                ConfigError::Usage(_) => ExitCode::from(64),
                _ => ExitCode::from(EXIT_CONFIG as u8),
            };
        }
    };
    let _telemetry = match crate::telemetry::init(name, config.telemetry()) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{name}: {error}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let listener = match crate::server::bind(config.server()).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    match serve(listener, config, Box::pin(crate::shutdown::signal())).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %DisplayChain(&error), "stopped with an error");
            ExitCode::FAILURE
        }
    }
}
