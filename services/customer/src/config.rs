//! Configuration of the customer service. See `deploy/customer.toml` for every key.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tierline_runtime::config::{DatabaseConfig, ServerConfig, TelemetryConfig, Validate};

use crate::domain::{RegionCode, TieringPolicy};

/// Everything the customer service reads at start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC server.
    pub server: ServerConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// PostgreSQL.
    pub database: DatabaseConfig,
    /// Customer rules.
    pub customer: CustomerSettings,
}

/// The customer service's own settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CustomerSettings {
    /// Region in which phone numbers without a country code are read ("GB").
    pub default_region: String,
    /// ISO 4217 currency of lifetime values.
    pub reporting_currency: String,
    /// The tiering thresholds.
    pub tiering: TieringPolicy,
    /// How often tiers are recomputed in the background; unset means only on request.
    #[serde(with = "humantime_serde")]
    pub tier_recompute_interval: Option<Duration>,
}

impl Default for CustomerSettings {
    fn default() -> Self {
        CustomerSettings {
            default_region: "GB".into(),
            reporting_currency: "EUR".into(),
            tiering: TieringPolicy::default(),
            tier_recompute_interval: None,
        }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.server.validate(problems);
        self.telemetry.validate(problems);
        self.database.validate(problems);
        if let Err(e) = RegionCode::parse(&self.customer.default_region) {
            problems.push(format!("customer.default_region: {e}"));
        }
        let currency = &self.customer.reporting_currency;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            problems.push("customer.reporting_currency: must be an ISO 4217 code like EUR".into());
        }
        for (field, problem) in self.customer.tiering.problems() {
            problems.push(format!("customer.tiering.{field}: {problem}"));
        }
        if self.customer.tier_recompute_interval == Some(Duration::ZERO) {
            problems.push("customer.tier_recompute_interval: must be more than zero".into());
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
