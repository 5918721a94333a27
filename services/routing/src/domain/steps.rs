//! Routing steps: the widening rings of agents a waiting ticket may be offered to.
//!
//! Steps are configuration, like TaskRouter workflow targets or Genesys bullseye rings. Each
//! starts a configured time after the ticket's enqueue time, and earlier steps' agents stay
//! eligible. The ladder of one ticket ([`StepsConfig::ladder`]):
//!
//! - a key-account ticket follows [`StepsConfig::key_account`], by default its account manager
//!   at once, the key-account team after 60 s, the whole department after 180 s;
//! - any other ticket goes to its whole department at once;
//! - a ticket with a preferred agent (the previous agent of a reopened or returned ticket) is
//!   first offered to that agent alone for [`StepsConfig::preferred_agent_window`]; the rest of
//!   its ladder starts that much later.
//!
//! An account manager or preferred agent who is not available (AVAILABLE and not disabled) is
//! left out of the ladder: the issue asks for the account manager "if online", and an agent who
//! is away cannot take the offer either, so waiting for them would only delay the customer. The
//! first remaining step then starts at once; later steps keep their configured start.
//!
//! Who a step reaches (proto `RoutingStepKind`): the named agent in PREFERRED_AGENT and
//! ACCOUNT_MANAGER steps, whatever their department and skills; the team's members with every
//! required skill in TEAM steps; the department's agents with every required skill in
//! DEPARTMENT steps. See [`crate::domain::agent::eligibility`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::queue::{TicketRef, add};

/// The longest team id (proto `Agent.team_id`).
pub const MAX_TEAM_ID_CHARS: usize = 64;

/// What a step adds (proto `RoutingStepKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// The previous agent of a reopened or returned ticket.
    PreferredAgent,
    /// The key-account customer's account manager.
    AccountManager,
    /// A team, such as the key-account team.
    Team,
    /// Every agent serving the ticket's department.
    Department,
}

impl StepKind {
    /// The name used in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::PreferredAgent => "preferred_agent",
            StepKind::AccountManager => "account_manager",
            StepKind::Team => "team",
            StepKind::Department => "department",
        }
    }

    /// Whether agents reached by this step must hold the ticket's required skills.
    pub fn requires_skills(self) -> bool {
        matches!(self, StepKind::Team | StepKind::Department)
    }
}

/// One step of one ticket's ladder (proto `RoutingStep`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The kind of step.
    pub kind: StepKind,
    /// Whom it adds: the agent id, the team id, or the department.
    pub target: String,
    /// When it starts, after the ticket's enqueue time.
    pub start_after: Duration,
}

impl Step {
    /// When the step starts for a ticket enqueued at `enqueue_time`; `None` beyond the
    /// representable range.
    pub fn start_time(&self, enqueue_time: OffsetDateTime) -> Option<OffsetDateTime> {
        add(enqueue_time, self.start_after)
    }
}

/// One configured key-account step: what it adds and when it starts.
///
/// ```toml
/// key_account = [
///   { target = "account_manager", after = "0s" },
///   { target = "team", team_id = "key-accounts", after = "60s" },
///   { target = "department", after = "180s" },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepConfig {
    /// The customer's account manager (skipped if the ticket has none or they are not
    /// available).
    AccountManager {
        /// When the step starts, after the enqueue time.
        #[serde(with = "humantime_serde")]
        after: Duration,
    },
    /// A team's members.
    Team {
        /// The team id (`Agent.team_id`).
        team_id: String,
        /// When the step starts, after the enqueue time.
        #[serde(with = "humantime_serde")]
        after: Duration,
    },
    /// The whole department.
    Department {
        /// When the step starts, after the enqueue time.
        #[serde(with = "humantime_serde")]
        after: Duration,
    },
}

impl StepConfig {
    /// When the step starts, after the enqueue time.
    pub fn after(&self) -> Duration {
        match self {
            StepConfig::AccountManager { after }
            | StepConfig::Team { after, .. }
            | StepConfig::Department { after } => *after,
        }
    }

    fn kind(&self) -> StepKind {
        match self {
            StepConfig::AccountManager { .. } => StepKind::AccountManager,
            StepConfig::Team { .. } => StepKind::Team,
            StepConfig::Department { .. } => StepKind::Department,
        }
    }
}

/// The routing-step configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepsConfig {
    /// How long a ticket with a preferred agent is offered to that agent alone; zero skips the
    /// preferred agent. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub preferred_agent_window: Duration,
    /// The ladder of key-account tickets, in order. It must start at `0s`, start strictly
    /// later at each step, and end with the department. Default: account manager at 0 s,
    /// team `key-accounts` at 60 s, department at 180 s.
    pub key_account: Vec<StepConfig>,
}

impl Default for StepsConfig {
    fn default() -> Self {
        StepsConfig {
            preferred_agent_window: Duration::from_secs(30),
            key_account: vec![
                StepConfig::AccountManager {
                    after: Duration::ZERO,
                },
                StepConfig::Team {
                    team_id: "key-accounts".into(),
                    after: Duration::from_secs(60),
                },
                StepConfig::Department {
                    after: Duration::from_secs(180),
                },
            ],
        }
    }
}

impl StepsConfig {
    /// The teams the steps name, in step order (a dispatch round reads their ready members).
    pub fn team_ids(&self) -> Vec<&str> {
        self.key_account
            .iter()
            .filter_map(|s| match s {
                StepConfig::Team { team_id, .. } => Some(team_id.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Problems with the configuration, as (field, description). Empty means usable.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let steps = &self.key_account;
        match steps.last() {
            None => problems.push((
                "key_account".into(),
                "must have at least the department step".into(),
            )),
            Some(last) if last.kind() != StepKind::Department => problems.push((
                "key_account".into(),
                "must end with the department step, so every ticket can reach its department"
                    .into(),
            )),
            Some(_) => {}
        }
        if let Some(first) = steps.first()
            && !first.after().is_zero()
        {
            problems.push((
                "key_account[0].after".into(),
                "the first step must start at 0s".into(),
            ));
        }
        for (i, pair) in steps.windows(2).enumerate() {
            if let [earlier, later] = pair
                && later.after() <= earlier.after()
            {
                problems.push((
                    format!("key_account[{}].after", i + 1),
                    "each step must start later than the one before".into(),
                ));
            }
        }
        let mut managers = 0;
        for (i, step) in steps.iter().enumerate() {
            match step {
                StepConfig::AccountManager { .. } => {
                    managers += 1;
                    if managers > 1 {
                        problems.push((
                            format!("key_account[{i}]"),
                            "the account manager step may appear only once".into(),
                        ));
                    }
                }
                StepConfig::Team { team_id, .. } => {
                    let chars = team_id.chars().count();
                    if chars == 0 || chars > MAX_TEAM_ID_CHARS {
                        problems.push((
                            format!("key_account[{i}].team_id"),
                            format!("must be 1-{MAX_TEAM_ID_CHARS} characters"),
                        ));
                    }
                }
                StepConfig::Department { .. } if i + 1 != steps.len() => problems.push((
                    format!("key_account[{i}]"),
                    "the department step must be the last".into(),
                )),
                StepConfig::Department { .. } => {}
            }
        }
        problems
    }

    /// The ladder of `ticket`: its steps in order, the first starting at once.
    /// `is_available(agent_id)` says whether a named agent (account manager, preferred agent)
    /// could take an offer; unavailable ones are left out (see the module documentation).
    ///
    /// Never empty, and always ends with the ticket's department, even with an unvalidated
    /// configuration.
    pub fn ladder(&self, ticket: &TicketRef, is_available: impl Fn(&str) -> bool) -> Vec<Step> {
        let named = |id: &Option<String>| -> Option<String> {
            id.as_deref()
                .filter(|id| !id.is_empty() && is_available(id))
                .map(str::to_owned)
        };
        let mut steps: Vec<Step> = Vec::new();
        if ticket.key_account {
            for config in &self.key_account {
                let target = match config {
                    StepConfig::AccountManager { .. } => match named(&ticket.account_manager_id) {
                        Some(manager) => manager,
                        None => continue,
                    },
                    StepConfig::Team { team_id, .. } => team_id.clone(),
                    StepConfig::Department { .. } => ticket.department.clone(),
                };
                steps.push(Step {
                    kind: config.kind(),
                    target,
                    start_after: config.after(),
                });
            }
        }
        if steps.last().is_none_or(|s| s.kind != StepKind::Department) {
            let start_after = steps.last().map_or(Duration::ZERO, |s| s.start_after);
            steps.push(Step {
                kind: StepKind::Department,
                target: ticket.department.clone(),
                start_after,
            });
        }
        // The first remaining step starts at once: nobody is left to wait for before it.
        if let Some(first) = steps.first_mut() {
            first.start_after = Duration::ZERO;
        }
        if !self.preferred_agent_window.is_zero()
            && let Some(preferred) = named(&ticket.preferred_agent_id)
        {
            for step in &mut steps {
                step.start_after = step.start_after.saturating_add(self.preferred_agent_window);
            }
            steps.insert(
                0,
                Step {
                    kind: StepKind::PreferredAgent,
                    target: preferred,
                    start_after: Duration::ZERO,
                },
            );
        }
        steps
    }
}

/// The index of the step current for a ticket of `age`: the last one started. `None` if no
/// step has started (only for an empty ladder or one not starting at zero).
pub fn current_step(steps: &[Step], age: Duration) -> Option<usize> {
    steps.iter().rposition(|s| s.start_after <= age)
}

/// The first step not yet started for a ticket of `age`, if any.
pub fn next_step(steps: &[Step], age: Duration) -> Option<&Step> {
    steps.iter().find(|s| s.start_after > age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierline_types::{Channel, Tier};
    use time::macros::datetime;

    const SEC: Duration = Duration::from_secs(1);
    const T0: OffsetDateTime = datetime!(2025-03-03 09:00 UTC);

    fn key_account_ticket() -> TicketRef {
        TicketRef {
            key_account: true,
            account_manager_id: Some("manager".into()),
            ..TicketRef::new("t", "billing", Channel::Chat, Tier::A, T0, T0)
        }
    }

    fn shape(steps: &[Step]) -> Vec<(StepKind, &str, u64)> {
        steps
            .iter()
            .map(|s| (s.kind, s.target.as_str(), s.start_after.as_secs()))
            .collect()
    }

    #[test]
    fn a_key_account_ticket_widens_from_manager_to_team_to_department() {
        let steps = StepsConfig::default().ladder(&key_account_ticket(), |_| true);
        assert_eq!(
            shape(&steps),
            [
                (StepKind::AccountManager, "manager", 0),
                (StepKind::Team, "key-accounts", 60),
                (StepKind::Department, "billing", 180),
            ]
        );
        assert_eq!(current_step(&steps, Duration::ZERO), Some(0));
        assert_eq!(current_step(&steps, 59 * SEC), Some(0));
        assert_eq!(current_step(&steps, 60 * SEC), Some(1));
        assert_eq!(current_step(&steps, 3_600 * SEC), Some(2));
        assert_eq!(
            next_step(&steps, 61 * SEC).map(|s| s.kind),
            Some(StepKind::Department)
        );
        assert_eq!(next_step(&steps, 180 * SEC), None);
        assert_eq!(steps[2].start_time(T0), Some(T0 + 180 * SEC));
    }

    #[test]
    fn an_unavailable_account_manager_is_skipped_and_the_team_starts_at_once() {
        let steps = StepsConfig::default().ladder(&key_account_ticket(), |id| id != "manager");
        assert_eq!(
            shape(&steps),
            [
                (StepKind::Team, "key-accounts", 0),
                (StepKind::Department, "billing", 180),
            ]
        );
    }

    #[test]
    fn a_key_account_without_a_manager_starts_with_the_team() {
        let ticket = TicketRef {
            account_manager_id: None,
            ..key_account_ticket()
        };
        let steps = StepsConfig::default().ladder(&ticket, |_| true);
        assert_eq!(steps[0].kind, StepKind::Team);
        assert_eq!(steps[0].start_after, Duration::ZERO);
    }

    #[test]
    fn an_ordinary_ticket_goes_to_its_department_at_once() {
        let ticket = TicketRef {
            key_account: false,
            ..key_account_ticket()
        };
        let steps = StepsConfig::default().ladder(&ticket, |_| true);
        assert_eq!(shape(&steps), [(StepKind::Department, "billing", 0)]);
    }

    #[test]
    fn a_preferred_agent_gets_a_head_start_and_the_ladder_moves_back() {
        let ticket = TicketRef {
            preferred_agent_id: Some("previous".into()),
            ..key_account_ticket()
        };
        let steps = StepsConfig::default().ladder(&ticket, |_| true);
        assert_eq!(
            shape(&steps),
            [
                (StepKind::PreferredAgent, "previous", 0),
                (StepKind::AccountManager, "manager", 30),
                (StepKind::Team, "key-accounts", 90),
                (StepKind::Department, "billing", 210),
            ]
        );
        let no_window = StepsConfig {
            preferred_agent_window: Duration::ZERO,
            ..StepsConfig::default()
        };
        assert_eq!(no_window.ladder(&ticket, |_| true).len(), 3);
        let away = StepsConfig::default().ladder(&ticket, |id| id != "previous");
        assert_eq!(away[0].kind, StepKind::AccountManager);
    }

    #[test]
    fn a_ladder_from_a_broken_configuration_still_reaches_the_department() {
        let broken = StepsConfig {
            preferred_agent_window: Duration::ZERO,
            key_account: vec![StepConfig::Team {
                team_id: "vip".into(),
                after: 45 * SEC,
            }],
        };
        let steps = broken.ladder(&key_account_ticket(), |_| true);
        assert_eq!(
            shape(&steps),
            [
                (StepKind::Team, "vip", 0),
                (StepKind::Department, "billing", 45)
            ]
        );
        let empty = StepsConfig {
            key_account: vec![],
            ..broken
        };
        assert_eq!(
            shape(&empty.ladder(&key_account_ticket(), |_| true)),
            [(StepKind::Department, "billing", 0)]
        );
    }

    #[test]
    fn the_default_configuration_has_no_problems() {
        assert!(StepsConfig::default().problems().is_empty());
    }

    #[test]
    fn misordered_and_malformed_steps_are_reported() {
        let config = StepsConfig {
            preferred_agent_window: Duration::ZERO,
            key_account: vec![
                StepConfig::AccountManager { after: 5 * SEC },
                StepConfig::Department { after: 60 * SEC },
                StepConfig::AccountManager { after: 60 * SEC },
                StepConfig::Team {
                    team_id: String::new(),
                    after: 90 * SEC,
                },
            ],
        };
        let fields: Vec<String> = config.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "key_account",
                "key_account[0].after",
                "key_account[2].after",
                "key_account[1]",
                "key_account[2]",
                "key_account[3].team_id",
            ]
        );
        let empty = StepsConfig {
            key_account: vec![],
            ..StepsConfig::default()
        };
        assert_eq!(empty.problems().len(), 1);
    }

    #[test]
    fn steps_read_from_configuration_as_tagged_entries() {
        let config: StepsConfig = serde_json::from_str(
            r#"{
                "preferred_agent_window": "1m",
                "key_account": [
                    {"target": "account_manager", "after": "0s"},
                    {"target": "team", "team_id": "vip", "after": "2m"},
                    {"target": "department", "after": "5m"}
                ]
            }"#,
        )
        .expect("parses");
        assert!(config.problems().is_empty());
        assert_eq!(config.preferred_agent_window, 60 * SEC);
        assert_eq!(
            config.key_account[1],
            StepConfig::Team {
                team_id: "vip".into(),
                after: 120 * SEC
            }
        );
        let typo = r#"{"key_account": [{"target": "department", "afer": "0s"}]}"#;
        assert!(serde_json::from_str::<StepsConfig>(typo).is_err());
        let defaults: StepsConfig = serde_json::from_str("{}").expect("parses");
        assert_eq!(defaults, StepsConfig::default());
    }
}
