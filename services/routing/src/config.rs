//! Configuration of the routing service. See `deploy/routing.toml` for every key.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tierline_runtime::config::{DatabaseConfig, ServerConfig, TelemetryConfig, Validate};

use crate::domain::config::RoutingConfig;

/// Everything the routing service reads at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC server.
    pub server: ServerConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// PostgreSQL (agent records).
    pub database: DatabaseConfig,
    /// Redis (live state).
    pub redis: RedisConfig,
    /// The ticket service (assignments, and the source of a rebuild).
    pub ticket_service: TicketServiceConfig,
    /// The routing rules.
    pub routing: RoutingConfig,
    /// Desktop sessions and the router's own timing.
    pub router: RouterSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::with_listen(std::net::SocketAddr::from(([127, 0, 0, 1], 50053))),
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig::default(),
            redis: RedisConfig::default(),
            ticket_service: TicketServiceConfig::default(),
            routing: RoutingConfig::default(),
            router: RouterSettings::default(),
        }
    }
}

/// Where the live state lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Every key starts with it (routers sharing a prefix share their state).
    pub key_prefix: String,
    /// Limit of one command.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "tierline:".into(),
            response_timeout: Duration::from_secs(1),
        }
    }
}

/// The ticket service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TicketServiceConfig {
    /// Its gRPC endpoint.
    pub endpoint: String,
    /// Deadline of each call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for TicketServiceConfig {
    fn default() -> Self {
        TicketServiceConfig {
            endpoint: "http://127.0.0.1:50052".into(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Timing of sessions and of the router's background work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterSettings {
    /// How long a desktop session survives a broken stream (`SessionStarted.resume_grace`).
    #[serde(with = "humantime_serde")]
    pub resume_grace: Duration,
    /// The longest the desktop stream stays silent; also how often a live session's lease is
    /// renewed.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How often offers are expired, sessions lapsed and every queue dispatched (routing steps
    /// start on time to within this).
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// How long an accept may hold an offer while the ticket service records it.
    #[serde(with = "humantime_serde")]
    pub accept_hold: Duration,
    /// A waiting ticket is "at risk" when its pickup is due within this.
    #[serde(with = "humantime_serde")]
    pub at_risk_window: Duration,
    /// Tickets a dispatch round considers per queue (its head).
    pub dispatch_tickets: usize,
    /// Ready agents a dispatch round reads per department or team at most: when a first,
    /// smaller window of them left a ticket without an agent (see `Router::dispatch_rounds`).
    pub dispatch_agents: usize,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            resume_grace: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            tick: Duration::from_millis(500),
            accept_hold: Duration::from_secs(30),
            at_risk_window: Duration::from_secs(5 * 60),
            dispatch_tickets: 64,
            dispatch_agents: 500,
        }
    }
}

fn is_url(endpoint: &str) -> bool {
    endpoint.starts_with("http://") || endpoint.starts_with("https://")
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.server.validate(problems);
        self.telemetry.validate(problems);
        self.database.validate(problems);
        if !(self.redis.url.starts_with("redis://") || self.redis.url.starts_with("rediss://")) {
            problems.push("redis.url: must be a redis:// or rediss:// URL".into());
        }
        if let Err(e) = crate::live::keys::Keys::new(self.redis.key_prefix.clone()) {
            problems.push(format!("redis.key_prefix: {e}"));
        }
        if self.redis.response_timeout.is_zero() {
            problems.push("redis.response_timeout: must be more than zero".into());
        }
        if !is_url(&self.ticket_service.endpoint) {
            problems.push("ticket_service.endpoint: must be an http:// or https:// URL".into());
        }
        if self.ticket_service.timeout.is_zero() {
            problems.push("ticket_service.timeout: must be more than zero".into());
        }
        for (field, problem) in self.routing.problems() {
            problems.push(format!("routing.{field}: {problem}"));
        }
        let r = &self.router;
        if r.resume_grace < Duration::from_secs(1) {
            problems.push("router.resume_grace: must be at least 1s".into());
        }
        if r.heartbeat_interval.is_zero() || r.heartbeat_interval * 2 > r.resume_grace {
            problems.push(
                "router.heartbeat_interval: must be more than zero and at most half of \
                 router.resume_grace (the lease is renewed on each heartbeat)"
                    .into(),
            );
        }
        if r.tick.is_zero() || r.tick > Duration::from_secs(10) {
            problems.push("router.tick: must be between 1ms and 10s".into());
        }
        if r.accept_hold < self.ticket_service.timeout {
            problems.push(
                "router.accept_hold: must be at least ticket_service.timeout, so an accept \
                 cannot lose its offer while the ticket service answers"
                    .into(),
            );
        }
        if !(1..=1000).contains(&r.dispatch_tickets) {
            problems.push("router.dispatch_tickets: must be 1-1000".into());
        }
        if !(1..=10_000).contains(&r.dispatch_agents) {
            problems.push("router.dispatch_agents: must be 1-10000".into());
        }
    }
}

impl tierline_runtime::process::ServiceConfig for Config {
    fn server(&self) -> &ServerConfig {
        &self.server
    }

    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults, with the one key that has none.
    fn config() -> Config {
        let mut config = Config::default();
        config.database.url = "postgres://postgres@127.0.0.1:5432/tierline_routing".into();
        config
    }

    #[test]
    fn the_defaults_are_valid() {
        let mut problems = Vec::new();
        config().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn the_deploy_file_is_valid() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/routing.toml");
        let config: Config =
            tierline_runtime::config::load(Some(std::path::Path::new(file))).expect("loads");
        assert_eq!(config.redis.key_prefix, "tierline:");
    }

    #[test]
    fn timing_that_would_lose_sessions_or_offers_is_rejected() {
        let mut config = config();
        config.router.heartbeat_interval = Duration::from_secs(20);
        config.router.accept_hold = Duration::from_millis(100);
        config.redis.key_prefix = "a{b".into();
        let mut problems = Vec::new();
        config.validate(&mut problems);
        let fields: Vec<&str> = problems
            .iter()
            .filter_map(|p| p.split(':').next())
            .collect();
        assert_eq!(
            fields,
            [
                "redis.key_prefix",
                "router.heartbeat_interval",
                "router.accept_hold"
            ]
        );
    }
}
