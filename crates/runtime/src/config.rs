//! Typed configuration, layered: built-in defaults, then a TOML file, then the environment.
//!
//! A service's configuration is one `serde` struct with a `Default`. The file is the one named by
//! `--config <path>` on the command line or by `TIERLINE_CONFIG`; environment variables are
//! `TIERLINE_` followed by the field path in upper case with `__` between levels, for example
//! `TIERLINE_SERVER__LISTEN=0.0.0.0:50051` or `TIERLINE_DATABASE__URL=postgres://...`.
//! The result is validated before the service starts; a bad configuration is a clear message and
//! exit status 78 (EX_CONFIG), never a panic at the first request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Exit status for a bad configuration (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;

/// The configuration could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// Values were read but do not make sense together.
    #[error("configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The command line is not understood.
    #[error("usage: {0}")]
    Usage(String),
}

/// What a configuration checks about itself once loaded.
pub trait Validate {
    /// Every problem found, each naming its key (`server.listen: ...`).
    fn validate(&self, problems: &mut Vec<String>);
}

/// Loads `T` from defaults, the optional file, and the environment, and validates it.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    // Every setting lives in a section, so only `TIERLINE_<SECTION>__<KEY>` variables are
    // settings; others sharing the prefix (TIERLINE_CONFIG, scripts' own) are left alone.
    load_from(
        file,
        Env::prefixed("TIERLINE_")
            .filter(|key| key.as_str().contains("__"))
            .split("__"),
    )
}

fn load_from<T>(file: Option<&Path>, env: Env) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::Usage(format!(
                "configuration file {} does not exist",
                path.display()
            )));
        }
        figment = figment.merge(Toml::file(path));
    }
    let config: T = figment.merge(env).extract().map_err(Box::new)?;
    let mut problems = Vec::new();
    config.validate(&mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// The configuration file named on the command line (`--config PATH`) or by `TIERLINE_CONFIG`.
pub fn file_from_args(
    args: impl IntoIterator<Item = String>,
) -> Result<Option<PathBuf>, ConfigError> {
    let mut args = args.into_iter().skip(1);
    let mut file = std::env::var_os("TIERLINE_CONFIG").map(PathBuf::from);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => match args.next() {
                Some(path) => file = Some(PathBuf::from(path)),
                None => return Err(ConfigError::Usage("--config needs a file path".into())),
            },
            other => {
                if let Some(path) = other.strip_prefix("--config=") {
                    file = Some(PathBuf::from(path));
                } else {
                    return Err(ConfigError::Usage(format!(
                        "unknown argument {other:?}; the only argument is --config <file>"
                    )));
                }
            }
        }
    }
    Ok(file)
}

/// How a service's gRPC server listens and protects itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Longest a unary call (or the start of a stream) may take before DEADLINE_EXCEEDED; a
    /// shorter client deadline wins.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Calls handled at once across all connections; beyond it calls are shed with UNAVAILABLE
    /// rather than queued.
    pub max_concurrent_requests: usize,
    /// After a shutdown signal, how long health reports NOT_SERVING before the listener closes,
    /// so load balancers stop sending new calls first.
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// How long in-flight calls may drain after the listener closes.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl ServerConfig {
    /// Defaults listening on `listen`.
    pub fn with_listen(listen: SocketAddr) -> Self {
        ServerConfig {
            listen,
            ..ServerConfig::default()
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 2048,
            shutdown_delay: Duration::ZERO,
            drain_timeout: Duration::from_secs(20),
        }
    }
}

impl Validate for ServerConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.request_timeout.is_zero() {
            problems.push("server.request_timeout: must be more than zero".into());
        }
        if self.max_concurrent_requests == 0 {
            problems.push("server.max_concurrent_requests: must be at least 1".into());
        }
    }
}

/// Where a service's PostgreSQL database is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connection URL (`postgres://user@host:5432/db`).
    pub url: String,
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long to wait for a connection from the pool before UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Apply the embedded migrations at start.
    pub migrate: bool,
}

impl DatabaseConfig {
    /// Defaults pointing at `url`.
    pub fn with_url(url: impl Into<String>) -> Self {
        DatabaseConfig {
            url: url.into(),
            ..DatabaseConfig::default()
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: String::new(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            migrate: true,
        }
    }
}

impl Validate for DatabaseConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.url.is_empty() {
            problems.push(
                "database.url: required (set TIERLINE_DATABASE__URL or [database] url in the file)"
                    .into(),
            );
        } else if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            problems.push("database.url: must be a postgres:// URL".into());
        }
        if self.max_connections == 0 {
            problems.push("database.max_connections: must be at least 1".into());
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log shippers.
    Json,
}

/// Logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `tracing` filter directives (`info,tierline_customer=debug`); `RUST_LOG` overrides it.
    pub log_filter: String,
    /// Log output format.
    pub log_format: LogFormat,
    /// OTLP/gRPC collector endpoint (`http://127.0.0.1:4317`). Traces are exported only when it
    /// is set.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_filter: "info".into(),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
        }
    }
}

impl Validate for TelemetryConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            problems.push("telemetry.otlp_endpoint: must be an http:// or https:// URL".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct TestConfig {
        server: ServerConfig,
        database: DatabaseConfig,
    }

    impl Validate for TestConfig {
        fn validate(&self, problems: &mut Vec<String>) {
            self.server.validate(problems);
            self.database.validate(problems);
        }
    }

    fn no_env() -> Env {
        Env::prefixed("TIERLINE_TEST_UNSET_").split("__")
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the error type.
    fn environment_overrides_file_and_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("svc.toml", "[database]\nurl = \"postgres://file/db\"\n")?;
            jail.set_env("TIERLINE_DATABASE__URL", "postgres://env/db");
            jail.set_env("TIERLINE_SERVER__MAX_CONCURRENT_REQUESTS", "7");
            // Not a setting: no section.
            jail.set_env("TIERLINE_TEST_REDIS_URL", "redis://elsewhere");
            let config: TestConfig =
                load(Some(Path::new("svc.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.database.url, "postgres://env/db");
            assert_eq!(config.server.max_concurrent_requests, 7);
            Ok(())
        });
    }

    #[test]
    fn layers_file_over_defaults_and_validates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("svc.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:6000\"\nrequest_timeout = \"3s\"\n[database]\nurl = \"postgres://x@y/z\"\n",
        )
        .expect("write");
        let config: TestConfig = load_from(Some(&path), no_env()).expect("valid config");
        assert_eq!(config.server.listen.port(), 6000);
        assert_eq!(config.server.request_timeout, Duration::from_secs(3));
        assert_eq!(config.server.max_concurrent_requests, 2048);
    }

    #[test]
    fn missing_database_url_is_a_clear_problem() {
        let err = load_from::<TestConfig>(None, no_env()).expect_err("invalid");
        let text = err.to_string();
        assert!(text.contains("database.url"), "{text}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("svc.toml");
        std::fs::write(&path, "[server]\nlisten = \"not an address\"\n").expect("write");
        let err = load_from::<TestConfig>(Some(&path), no_env()).expect_err("invalid");
        assert!(err.to_string().contains("listen"), "{err}");
    }

    #[test]
    fn unknown_arguments_are_usage_errors() {
        let err = file_from_args(["bin".to_string(), "--port".to_string()]).expect_err("usage");
        assert!(matches!(err, ConfigError::Usage(_)));
        let file = file_from_args(["bin".into(), "--config".into(), "a.toml".into()]).expect("ok");
        assert_eq!(file, Some(PathBuf::from("a.toml")));
    }
}
