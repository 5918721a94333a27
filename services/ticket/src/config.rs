//! Configuration of the ticket service. See `deploy/ticket.toml` for every key.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tierline_runtime::config::{DatabaseConfig, ServerConfig, TelemetryConfig, Validate};
use tierline_types::Tier;

use crate::domain::catalog::Catalog;
use crate::domain::sla::SlaPolicies;

/// Everything the ticket service reads at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC server.
    pub server: ServerConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// PostgreSQL.
    pub database: DatabaseConfig,
    /// The customer-profile service.
    pub customer_service: PeerConfig,
    /// The routing service, which tickets are handed to.
    pub routing_service: RoutingServiceConfig,
    /// Ticket rules.
    pub ticket: TicketSettings,
    /// Categories and root causes.
    pub catalog: Catalog,
    /// SLA policies and business calendars.
    pub sla: SlaPolicies,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::with_listen(std::net::SocketAddr::from(([127, 0, 0, 1], 50052))),
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig::default(),
            customer_service: PeerConfig::default(),
            routing_service: RoutingServiceConfig::default(),
            ticket: TicketSettings::default(),
            catalog: Catalog::default(),
            sla: SlaPolicies::default(),
        }
    }
}

/// Another Tierline service this one calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerConfig {
    /// Its gRPC endpoint (`http://127.0.0.1:50051`).
    pub endpoint: String,
    /// Deadline of each call. Intake waits at most this long before accepting a complaint with
    /// the customer to be resolved later.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            endpoint: "http://127.0.0.1:50051".into(),
            timeout: Duration::from_millis(500),
        }
    }
}

/// The routing service. Every change that matters to routing is sent to it
/// (`RoutingService.SyncTicket`) by a relay from the event log, and intake asks it once for the
/// new ticket's queue position and wait.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingServiceConfig {
    /// Its gRPC endpoint (`http://127.0.0.1:50053`). Empty disables the hand-over: tickets stay
    /// NEW and CreateTicket gives no queue position (for running without a router).
    pub endpoint: String,
    /// Deadline of each call. Intake waits at most this long for the queue position before
    /// answering without it; the relay retries an unanswered ticket later.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl RoutingServiceConfig {
    /// True when tickets are handed to a router.
    pub fn enabled(&self) -> bool {
        !self.endpoint.is_empty()
    }
}

impl Default for RoutingServiceConfig {
    fn default() -> Self {
        RoutingServiceConfig {
            endpoint: "http://127.0.0.1:50053".into(),
            timeout: Duration::from_millis(500),
        }
    }
}

/// The ticket service's own settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TicketSettings {
    /// Tier assumed for SLA and priority while a ticket's customer is unresolved.
    pub default_tier: Tier,
    /// How often background work (customer reconciliation, SLA checks, timeline relay) runs. The
    /// routing relay also wakes on every new event; at this interval (at most 1 s) it retries a
    /// router that did not answer.
    #[serde(with = "humantime_serde")]
    pub worker_interval: Duration,
    /// How long events keep their ticket snapshot for WatchTicketEvents; older cursors are
    /// OUT_OF_RANGE. History itself is kept for the ticket's life.
    #[serde(with = "humantime_serde")]
    pub event_retention: Duration,
}

impl Default for TicketSettings {
    fn default() -> Self {
        TicketSettings {
            default_tier: Tier::C,
            worker_interval: Duration::from_secs(5),
            event_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.server.validate(problems);
        self.telemetry.validate(problems);
        self.database.validate(problems);
        let peer = &self.customer_service;
        if !(peer.endpoint.starts_with("http://") || peer.endpoint.starts_with("https://")) {
            problems.push("customer_service.endpoint: must be an http:// or https:// URL".into());
        }
        if peer.timeout.is_zero() {
            problems.push("customer_service.timeout: must be more than zero".into());
        }
        let router = &self.routing_service;
        if router.enabled()
            && !(router.endpoint.starts_with("http://") || router.endpoint.starts_with("https://"))
        {
            problems.push(
                "routing_service.endpoint: must be an http:// or https:// URL, or empty to disable \
                 the hand-over to routing"
                    .into(),
            );
        }
        if router.timeout.is_zero() {
            problems.push("routing_service.timeout: must be more than zero".into());
        }
        if self.ticket.worker_interval.is_zero() {
            problems.push("ticket.worker_interval: must be more than zero".into());
        }
        for (field, problem) in self.catalog.problems() {
            problems.push(format!("catalog.{field}: {problem}"));
        }
        for (field, problem) in self.sla.problems() {
            problems.push(format!("sla.{field}: {problem}"));
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

    /// The problems found with the routing service's keys.
    fn problems(config: &Config) -> Vec<String> {
        let mut problems = Vec::new();
        config.validate(&mut problems);
        problems.retain(|p| p.starts_with("routing_service."));
        problems
    }

    #[test]
    fn the_routing_service_may_be_disabled_but_not_misnamed() {
        let mut config = Config::default();
        assert!(config.routing_service.enabled());
        assert_eq!(problems(&config), Vec::<String>::new());

        config.routing_service.endpoint = String::new();
        assert!(!config.routing_service.enabled());
        assert_eq!(problems(&config), Vec::<String>::new());

        config.routing_service.endpoint = "127.0.0.1:50053".into();
        config.routing_service.timeout = Duration::ZERO;
        let found = problems(&config);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("routing_service.endpoint:"));
        assert!(found[1].starts_with("routing_service.timeout:"));
    }
}
