//! The routing rules' configuration, in one struct.

use serde::{Deserialize, Serialize};

use super::offer::OfferConfig;
use super::queue::TierTargets;
use super::select::SelectionPolicy;
use super::steps::StepsConfig;

/// Everything the routing rules are configured with. Every part has a default.
///
/// ```toml
/// [routing]
/// selection = "least_occupied"
/// targets = { a = "15m", b = "1h", c = "4h" }
/// offers = { timeout = "20s", away_after_missed = 2 }
/// steps.preferred_agent_window = "30s"
/// steps.key_account = [
///   { target = "account_manager", after = "0s" },
///   { target = "team", team_id = "key-accounts", after = "60s" },
///   { target = "department", after = "180s" },
/// ]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Pickup targets per tier (queue order and EstimateWait).
    pub targets: TierTargets,
    /// Routing steps (key accounts, preferred agents).
    pub steps: StepsConfig,
    /// How the agent for a ticket is chosen among eligible ones.
    pub selection: SelectionPolicy,
    /// Offer timeout and the not-responding rule.
    pub offers: OfferConfig,
}

impl RoutingConfig {
    /// Problems with the configuration, as (field path, description). Empty means usable.
    pub fn problems(&self) -> Vec<(String, String)> {
        let prefixed = |prefix: &str, problems: Vec<(String, String)>| {
            problems
                .into_iter()
                .map(move |(field, problem)| (format!("{prefix}.{field}"), problem))
                .collect::<Vec<_>>()
        };
        let mut problems = prefixed("targets", self.targets.problems());
        problems.extend(prefixed("steps", self.steps.problems()));
        problems.extend(prefixed("offers", self.offers.problems()));
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_default_configuration_is_usable() {
        assert!(RoutingConfig::default().problems().is_empty());
    }

    #[test]
    fn problems_are_reported_with_their_full_path() {
        let mut config = RoutingConfig::default();
        config.targets.a = Duration::from_secs(7_200);
        config.offers.timeout = Duration::ZERO;
        config.steps.key_account.clear();
        let fields: Vec<String> = config.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["targets.b", "steps.key_account", "offers.timeout"]);
    }

    #[test]
    fn a_partial_configuration_fills_in_the_defaults() {
        let config: RoutingConfig =
            serde_json::from_str(r#"{"selection": "longest_idle", "offers": {"timeout": "30s"}}"#)
                .expect("parses");
        assert_eq!(config.selection, SelectionPolicy::LongestIdle);
        assert_eq!(config.offers.timeout, Duration::from_secs(30));
        assert_eq!(config.offers.away_after_missed, 2);
        assert_eq!(config.targets, TierTargets::default());
        assert!(serde_json::from_str::<RoutingConfig>(r#"{"selecton": "x"}"#).is_err());
    }
}
