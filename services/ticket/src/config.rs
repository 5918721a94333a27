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

/// The ticket service's own settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TicketSettings {
    /// Tier assumed for SLA and priority while a ticket's customer is unresolved.
    pub default_tier: Tier,
    /// How often background work (customer reconciliation, SLA checks, timeline relay) runs.
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
