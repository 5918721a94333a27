//! The agent record and a parsed upsert, as pure data: no wire types, no I/O.

use std::collections::BTreeSet;
use std::fmt;

use tierline_types::Channel;
use time::OffsetDateTime;

use crate::domain::agent::ChannelCounts;
use crate::error::{Error, Result};

/// Every channel, in wire order (the order capacities are listed in).
pub const CHANNELS: [Channel; 6] = [
    Channel::Voice,
    Channel::Web,
    Channel::Email,
    Channel::Chat,
    Channel::Counter,
    Channel::Api,
];

/// A durable agent record: who the agent is and what they can do. Live status (presence,
/// sessions, active tickets) is not part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The agent id, free text shared with the ticket service ("agent-7", a UUID).
    pub id: String,
    /// Name shown to supervisors.
    pub display_name: String,
    /// Departments (queues) served.
    pub departments: BTreeSet<String>,
    /// The team id, e.g. "key-accounts".
    pub team_id: Option<String>,
    /// Skills held, `<kind>:<value>` in lower case.
    pub skills: BTreeSet<String>,
    /// Tickets of each channel the agent works at once; 0 for a channel not offered.
    pub capacity: ChannelCounts,
    /// A disabled agent gets no offers.
    pub disabled: bool,
    /// Raised by one on every change; 1 at creation.
    pub version: i64,
    /// When the record was created.
    pub created_at: OffsetDateTime,
    /// When the record last changed.
    pub updated_at: OffsetDateTime,
}

impl AgentRecord {
    /// The fields an upsert can change, as they are now.
    pub fn fields(&self) -> AgentFields {
        AgentFields {
            display_name: self.display_name.clone(),
            departments: self.departments.clone(),
            team_id: self.team_id.clone(),
            skills: self.skills.clone(),
            capacity: self.capacity,
            disabled: self.disabled,
        }
    }
}

/// The fields of an agent record that callers set (everything but id, version and times).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFields {
    /// Name shown to supervisors. Empty in an [`AgentUpsert`] only when the mask leaves it out
    /// (then it cannot create the agent).
    pub display_name: String,
    /// Departments (queues) served.
    pub departments: BTreeSet<String>,
    /// The team id.
    pub team_id: Option<String>,
    /// Skills held.
    pub skills: BTreeSet<String>,
    /// Capacity per channel.
    pub capacity: ChannelCounts,
    /// Whether the agent is disabled.
    pub disabled: bool,
}

/// A field of the agent record an update may name (`UpsertAgentRequest.update_mask` paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AgentField {
    /// `display_name`.
    DisplayName,
    /// `departments`.
    Departments,
    /// `team_id`.
    TeamId,
    /// `skills`.
    Skills,
    /// `capacities`.
    Capacities,
    /// `disabled`.
    Disabled,
}

impl AgentField {
    /// Every field, in proto order.
    pub const ALL: [AgentField; 6] = [
        AgentField::DisplayName,
        AgentField::Departments,
        AgentField::TeamId,
        AgentField::Skills,
        AgentField::Capacities,
        AgentField::Disabled,
    ];

    /// The mask path (proto field name).
    pub fn path(self) -> &'static str {
        match self {
            AgentField::DisplayName => "display_name",
            AgentField::Departments => "departments",
            AgentField::TeamId => "team_id",
            AgentField::Skills => "skills",
            AgentField::Capacities => "capacities",
            AgentField::Disabled => "disabled",
        }
    }

    /// Reads a mask path; `None` for anything not updatable.
    pub fn from_path(path: &str) -> Option<AgentField> {
        AgentField::ALL.into_iter().find(|f| f.path() == path)
    }
}

impl fmt::Display for AgentField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// Which fields an update changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateMask {
    /// Every field (an empty or absent mask).
    All,
    /// Only these (never empty).
    Fields(BTreeSet<AgentField>),
}

impl UpdateMask {
    /// Whether the mask names `field`.
    pub fn contains(&self, field: AgentField) -> bool {
        match self {
            UpdateMask::All => true,
            UpdateMask::Fields(fields) => fields.contains(&field),
        }
    }
}

/// A parsed `UpsertAgentRequest`: create the agent, or update the masked fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUpsert {
    /// The agent id.
    pub id: String,
    /// The values from the request, all validated (a create uses all of them).
    pub fields: AgentFields,
    /// What an update changes; ignored when creating.
    pub mask: UpdateMask,
    /// The version the caller read; a mismatch (or any value for an absent agent) is ABORTED.
    pub expected_version: Option<i64>,
}

impl AgentUpsert {
    /// The fields of the agent this upsert creates. The mask is ignored; the display name is
    /// required (parsing let it be empty only because an update need not name it).
    pub fn creation(&self) -> Result<AgentFields> {
        if self.fields.display_name.is_empty() {
            return Err(Error::invalid(
                "agent.display_name",
                "required when creating an agent",
            ));
        }
        Ok(self.fields.clone())
    }

    /// The fields after applying this upsert's masked values to `current`. Equal to `current`
    /// when the upsert changes nothing.
    pub fn apply(&self, current: &AgentFields) -> AgentFields {
        let mut next = current.clone();
        let from = &self.fields;
        for field in AgentField::ALL {
            if !self.mask.contains(field) {
                continue;
            }
            match field {
                AgentField::DisplayName => next.display_name.clone_from(&from.display_name),
                AgentField::Departments => next.departments.clone_from(&from.departments),
                AgentField::TeamId => next.team_id.clone_from(&from.team_id),
                AgentField::Skills => next.skills.clone_from(&from.skills),
                AgentField::Capacities => next.capacity = from.capacity,
                AgentField::Disabled => next.disabled = from.disabled,
            }
        }
        next
    }
}

/// Filters of [`crate::agents::AgentStore::list`]; they combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Only agents serving this department.
    pub department: Option<String>,
    /// Only agents of this team.
    pub team_id: Option<String>,
    /// Include disabled agents (left out by default).
    pub include_disabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn current() -> AgentFields {
        AgentFields {
            display_name: "Ada".into(),
            departments: set(&["billing"]),
            team_id: Some("key-accounts".into()),
            skills: set(&["language:de"]),
            capacity: ChannelCounts::of(&[(Channel::Voice, 1)]),
            disabled: false,
        }
    }

    fn upsert(mask: UpdateMask) -> AgentUpsert {
        AgentUpsert {
            id: "agent-7".into(),
            fields: AgentFields {
                display_name: String::new(),
                departments: set(&["sales", "support"]),
                team_id: None,
                skills: BTreeSet::new(),
                capacity: ChannelCounts::of(&[(Channel::Chat, 3)]),
                disabled: true,
            },
            mask,
            expected_version: None,
        }
    }

    #[test]
    fn a_mask_changes_only_the_fields_it_names() {
        let mask = UpdateMask::Fields([AgentField::Departments, AgentField::Disabled].into());
        let next = upsert(mask).apply(&current());
        assert_eq!(
            next,
            AgentFields {
                departments: set(&["sales", "support"]),
                disabled: true,
                ..current()
            }
        );
    }

    #[test]
    fn every_field_can_be_masked_alone() {
        for field in AgentField::ALL {
            let u = upsert(UpdateMask::Fields([field].into()));
            let next = u.apply(&current());
            let mut expected = current();
            match field {
                AgentField::DisplayName => expected.display_name = String::new(),
                AgentField::Departments => expected.departments = u.fields.departments.clone(),
                AgentField::TeamId => expected.team_id = None,
                AgentField::Skills => expected.skills = BTreeSet::new(),
                AgentField::Capacities => expected.capacity = u.fields.capacity,
                AgentField::Disabled => expected.disabled = true,
            }
            assert_eq!(next, expected, "{field}");
        }
    }

    #[test]
    fn the_full_mask_replaces_everything() {
        let u = upsert(UpdateMask::All);
        assert_eq!(u.apply(&current()), u.fields);
    }

    #[test]
    fn an_upsert_of_the_current_values_changes_nothing() {
        let u = AgentUpsert {
            fields: current(),
            ..upsert(UpdateMask::All)
        };
        assert_eq!(u.apply(&current()), current());
    }

    #[test]
    fn creating_needs_a_display_name_whatever_the_mask() {
        let u = upsert(UpdateMask::Fields([AgentField::Disabled].into()));
        let Err(Error::InvalidArgument(v)) = u.creation() else {
            panic!("a nameless agent was created");
        };
        assert_eq!(v.as_slice()[0].field, "agent.display_name");
        let named = AgentUpsert {
            fields: AgentFields {
                display_name: "Bo".into(),
                ..u.fields.clone()
            },
            ..u
        };
        assert_eq!(
            named.creation().map(|f| f.departments).ok(),
            Some(set(&["sales", "support"])),
            "the mask is ignored when creating"
        );
    }

    #[test]
    fn mask_paths_round_trip() {
        for field in AgentField::ALL {
            assert_eq!(AgentField::from_path(field.path()), Some(field));
        }
        assert_eq!(AgentField::from_path("id"), None);
        assert_eq!(AgentField::from_path("version"), None);
    }
}
