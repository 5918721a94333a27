//! Wire (proto) ↔ agent record conversions: parsing `UpsertAgentRequest` and
//! `ListAgentsRequest` at the boundary, and [`agent_to_proto`]. Pure functions, no I/O.
//!
//! Parsing collects every field violation with its path as the client sees it
//! (`agent.display_name`, `agent.capacities[1].max_active_tickets`), never stopping at the first.

use std::collections::BTreeSet;

use tierline_proto::prost_types;
use tierline_proto::routing as pb;
use tierline_runtime::Violations;
use tierline_runtime::wire::{self, text};
use tierline_types::Channel;

use super::record::{
    AgentField, AgentFields, AgentFilter, AgentRecord, AgentUpsert, CHANNELS, UpdateMask,
};
use crate::domain::agent::ChannelCounts;
use crate::error::{Error, Result};

// ---------------------------------------------------------------------------------------------
// Limits from the proto comments
// ---------------------------------------------------------------------------------------------

/// Longest agent id, in characters (the same bound as agent ids in the ticket service).
pub const MAX_AGENT_ID_LEN: usize = 128;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_LEN: usize = 200;
/// Most departments of one agent.
pub const MAX_DEPARTMENTS: usize = 20;
/// Longest department id, in characters.
pub const MAX_DEPARTMENT_LEN: usize = 64;
/// Longest team id, in characters.
pub const MAX_TEAM_ID_LEN: usize = 64;
/// Most skills of one agent.
pub const MAX_SKILLS: usize = 50;
/// Longest skill, in characters.
pub const MAX_SKILL_LEN: usize = 64;
/// Most tickets of one channel an agent works at once.
pub const MAX_ACTIVE_TICKETS: u32 = 50;
/// ListAgents page size when the request gives 0.
pub const DEFAULT_AGENT_PAGE_SIZE: u32 = 100;
/// Largest ListAgents page size.
pub const MAX_AGENT_PAGE_SIZE: u32 = 500;

// ---------------------------------------------------------------------------------------------
// Small parsers
// ---------------------------------------------------------------------------------------------

/// Checks an identifier compared exactly (agent, department, team ids): 1-`max` characters, no
/// whitespace or control characters. Not trimmed: a stray space would make an id that never
/// matches the same id elsewhere.
fn identifier(raw: &str, max: usize) -> Result<String, String> {
    let chars = raw.chars().count();
    if chars == 0 {
        return Err("required".into());
    }
    if chars > max {
        return Err(format!("at most {max} characters, got {chars}"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    Ok(raw.to_owned())
}

/// Parses an agent id: 1-128 characters, no whitespace or control characters.
pub fn agent_id(raw: &str) -> Result<String, String> {
    identifier(raw, MAX_AGENT_ID_LEN)
}

/// Parses an optional team id: empty is `None`.
fn team_id(raw: &str) -> Result<Option<String>, String> {
    if raw.is_empty() {
        Ok(None)
    } else {
        identifier(raw, MAX_TEAM_ID_LEN).map(Some)
    }
}

/// Checks one skill: `<kind>:<value>` in lower case, kind of a-z, 0-9, `_ -`, value of a-z,
/// 0-9, `_ . -`, at most 64 characters. The ticket service checks required skills the same way,
/// so the two compare exactly.
pub fn check_skill(skill: &str) -> Result<(), String> {
    let part_ok = |part: &str, extra: &[u8]| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
    };
    let well_formed = skill
        .split_once(':')
        .is_some_and(|(kind, value)| part_ok(kind, b"_-") && part_ok(value, b"_.-"));
    if well_formed && skill.len() <= MAX_SKILL_LEN {
        Ok(())
    } else {
        Err(format!(
            "must be <kind>:<value> in lower case (a-z, 0-9, _ . -), at most {MAX_SKILL_LEN} characters"
        ))
    }
}

/// Parses a repeated id field into a set; a bad entry is `field[i]`, too many distinct entries
/// is `field`.
fn id_set(
    v: &mut Violations,
    field: &str,
    raw: &[String],
    max_len: usize,
    max_count: usize,
) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for (i, item) in raw.iter().enumerate() {
        if let Some(id) = v.take(&format!("{field}[{i}]"), identifier(item, max_len)) {
            set.insert(id);
        }
    }
    if set.len() > max_count {
        v.add(field, format!("at most {max_count}, got {}", set.len()));
    }
    set
}

fn skill_set(v: &mut Violations, field: &str, raw: &[String]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for (i, skill) in raw.iter().enumerate() {
        if v.take(&format!("{field}[{i}]"), check_skill(skill))
            .is_some()
        {
            set.insert(skill.clone());
        }
    }
    if set.len() > MAX_SKILLS {
        v.add(field, format!("at most {MAX_SKILLS}, got {}", set.len()));
    }
    set
}

/// Parses capacities: a valid channel each (not UNSPECIFIED), at most once; 1-50 tickets,
/// exactly 1 for voice (a call takes all of an agent's capacity).
fn capacities(v: &mut Violations, field: &str, raw: &[pb::ChannelCapacity]) -> ChannelCounts {
    let mut counts = ChannelCounts::default();
    let mut seen: Vec<Channel> = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let channel = match Channel::from_wire(entry.channel) {
            Ok(Some(channel)) if seen.contains(&channel) => {
                v.add(
                    format!("{at}.channel"),
                    format!("{} is listed more than once", channel.as_str()),
                );
                None
            }
            Ok(Some(channel)) => {
                seen.push(channel);
                Some(channel)
            }
            Ok(None) => {
                v.add(format!("{at}.channel"), "required");
                None
            }
            Err(e) => {
                v.add(format!("{at}.channel"), e);
                None
            }
        };
        let max = entry.max_active_tickets;
        let n = match (channel, u32::try_from(max)) {
            (Some(Channel::Voice), Ok(1)) => Some(1),
            (Some(Channel::Voice), _) => {
                v.add(
                    format!("{at}.max_active_tickets"),
                    format!("must be 1 for voice (a call takes all capacity), got {max}"),
                );
                None
            }
            (_, Ok(n)) if (1..=MAX_ACTIVE_TICKETS).contains(&n) => Some(n),
            _ => {
                v.add(
                    format!("{at}.max_active_tickets"),
                    format!("must be 1-{MAX_ACTIVE_TICKETS}, got {max}"),
                );
                None
            }
        };
        if let (Some(channel), Some(n)) = (channel, n) {
            counts.set(channel, n);
        }
    }
    counts
}

/// Parses `update_mask`: absent or empty is every field; otherwise top-level paths among the
/// updatable fields, each violation reported on `update_mask.paths`.
fn update_mask(v: &mut Violations, mask: Option<&prost_types::FieldMask>) -> UpdateMask {
    let paths = match mask {
        Some(mask) if !mask.paths.is_empty() => &mask.paths,
        _ => return UpdateMask::All,
    };
    let mut fields = BTreeSet::new();
    for path in paths {
        match AgentField::from_path(path) {
            Some(field) => {
                fields.insert(field);
            }
            None => v.add(
                "update_mask.paths",
                format!(
                    "{path:?} cannot be updated; updatable: display_name, departments, team_id, \
                     skills, capacities, disabled"
                ),
            ),
        }
    }
    UpdateMask::Fields(fields)
}

// ---------------------------------------------------------------------------------------------
// UpsertAgent
// ---------------------------------------------------------------------------------------------

/// Parses an `UpsertAgentRequest`, reporting every violation at once.
///
/// Every field of `agent` is checked whatever the mask, since the mask is ignored when the call
/// creates the agent. `display_name` is required when the mask names it (or is empty, meaning
/// all fields); otherwise it may be empty, and [`AgentUpsert::creation`] refuses it if the agent
/// turns out not to exist. Output-only fields are ignored.
pub fn parse_upsert(req: &pb::UpsertAgentRequest) -> Result<AgentUpsert> {
    let mut v = Violations::new();
    let mask = update_mask(&mut v, req.update_mask.as_ref());
    let expected_version = match req.expected_version {
        Some(n) if n < 1 => {
            v.add("expected_version", "versions start at 1");
            None
        }
        other => other,
    };
    let Some(agent) = &req.agent else {
        v.add("agent", "required");
        return Err(Error::InvalidArgument(v));
    };
    let id = v.take("agent.id", agent_id(&agent.id));
    let name_required = mask.contains(AgentField::DisplayName);
    let display_name = v.take(
        "agent.display_name",
        text(&agent.display_name, MAX_DISPLAY_NAME_LEN, name_required),
    );
    let departments = id_set(
        &mut v,
        "agent.departments",
        &agent.departments,
        MAX_DEPARTMENT_LEN,
        MAX_DEPARTMENTS,
    );
    let team = v.take("agent.team_id", team_id(&agent.team_id));
    let skills = skill_set(&mut v, "agent.skills", &agent.skills);
    let capacity = capacities(&mut v, "agent.capacities", &agent.capacities);
    match (id, display_name, team) {
        (Some(id), Some(display_name), Some(team_id)) if v.is_empty() => Ok(AgentUpsert {
            id,
            fields: AgentFields {
                display_name,
                departments,
                team_id,
                skills,
                capacity,
                disabled: agent.disabled,
            },
            mask,
            expected_version,
        }),
        _ => Err(Error::InvalidArgument(v)),
    }
}

// ---------------------------------------------------------------------------------------------
// Agent
// ---------------------------------------------------------------------------------------------

/// The wire form of an agent record, with its live status if known. Capacities are listed in
/// channel order, only channels with capacity.
pub fn agent_to_proto(record: &AgentRecord, status: Option<pb::AgentStatus>) -> pb::Agent {
    pb::Agent {
        id: record.id.clone(),
        display_name: record.display_name.clone(),
        departments: record.departments.iter().cloned().collect(),
        team_id: record.team_id.clone().unwrap_or_default(),
        skills: record.skills.iter().cloned().collect(),
        capacities: CHANNELS
            .into_iter()
            .filter_map(|channel| {
                let n = record.capacity.get(channel);
                (n > 0).then(|| pb::ChannelCapacity {
                    channel: channel.to_wire() as i32,
                    max_active_tickets: i32::try_from(n).unwrap_or(i32::MAX),
                })
            })
            .collect(),
        disabled: record.disabled,
        status,
        version: record.version,
        create_time: Some(wire::timestamp(record.created_at)),
        update_time: Some(wire::timestamp(record.updated_at)),
    }
}

// ---------------------------------------------------------------------------------------------
// ListAgents
// ---------------------------------------------------------------------------------------------

/// A parsed `ListAgentsRequest`.
///
/// The store applies [`ListAgentsQuery::filter`] and the paging; the caller filters the page by
/// [`ListAgentsQuery::presence_states`] from live state. A page may therefore come back shorter
/// than `page_size`, even empty, with a next page token, which AIP-158 allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAgentsQuery {
    /// Filters on the durable record.
    pub filter: AgentFilter,
    /// Only agents in one of these presence states (sorted, unique); empty means any.
    pub presence_states: Vec<pb::AgentPresenceState>,
    /// Agents to read from the store for this page, 1-500.
    pub page_size: u32,
    /// Continue after this id (from the page token); `None` for the first page.
    pub after_id: Option<String>,
}

/// Page-token format version, first byte of every token.
const TOKEN_VERSION: u8 = 1;

impl ListAgentsQuery {
    /// The token of the page after the one ending at `last_id` (the last agent the store
    /// returned, before any presence filtering). It binds the filters: a request with other
    /// filters and this token is INVALID_ARGUMENT.
    pub fn next_page_token(&self, last_id: &str) -> String {
        let mut bytes = Vec::with_capacity(9 + last_id.len());
        bytes.push(TOKEN_VERSION);
        bytes.extend_from_slice(&self.fingerprint().to_be_bytes());
        bytes.extend_from_slice(last_id.as_bytes());
        wire::encode_page_token(&bytes)
    }

    /// A stable digest of the filters (FNV-1a over a length-prefixed encoding). Not a secret:
    /// it only has to notice a changed filter, and must not change between releases, which
    /// rules out `std`'s hasher.
    fn fingerprint(&self) -> u64 {
        let mut canonical = Vec::new();
        for part in [
            self.filter.department.as_deref(),
            self.filter.team_id.as_deref(),
        ] {
            match part {
                None => canonical.push(0),
                Some(s) => {
                    canonical.push(1);
                    canonical.extend_from_slice(&(s.len() as u64).to_be_bytes());
                    canonical.extend_from_slice(s.as_bytes());
                }
            }
        }
        canonical.push(u8::from(self.filter.include_disabled));
        for state in &self.presence_states {
            canonical.extend_from_slice(&(*state as i32).to_be_bytes());
        }
        canonical
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
            })
    }

    /// Reads a page token made by [`ListAgentsQuery::next_page_token`] for these filters.
    fn after_id_from(&self, token: &str) -> Result<Option<String>, String> {
        let Some(bytes) = wire::decode_page_token(token)? else {
            return Ok(None);
        };
        let foreign = || "not a page token from ListAgents".to_string();
        let (head, id) = bytes.split_at_checked(9).ok_or_else(foreign)?;
        let (version, fingerprint) = head.split_first().ok_or_else(foreign)?;
        if *version != TOKEN_VERSION {
            return Err(foreign());
        }
        let fingerprint = u64::from_be_bytes(fingerprint.try_into().map_err(|_| foreign())?);
        if fingerprint != self.fingerprint() {
            return Err(
                "the filters differ from the request that returned this token; keep them \
                 unchanged, or start again without a page token"
                    .into(),
            );
        }
        let id = String::from_utf8(id.to_vec()).map_err(|_| foreign())?;
        if id.is_empty() {
            return Err(foreign());
        }
        Ok(Some(id))
    }
}

/// Parses a `ListAgentsRequest`: page size 1-500 (0 means 100), department and team filters
/// (empty: no filter), presence states (UNSPECIFIED is invalid), and the page token, which must
/// come from a request with the same filters.
pub fn parse_list_agents(req: &pb::ListAgentsRequest) -> Result<ListAgentsQuery> {
    let mut v = Violations::new();
    let page_size = match req.page_size {
        0 => Some(DEFAULT_AGENT_PAGE_SIZE),
        n => match u32::try_from(n) {
            Ok(n) if n <= MAX_AGENT_PAGE_SIZE => Some(n),
            _ => {
                v.add(
                    "page_size",
                    format!(
                        "must be 1-{MAX_AGENT_PAGE_SIZE}, or 0 for {DEFAULT_AGENT_PAGE_SIZE}; \
                         got {n}"
                    ),
                );
                None
            }
        },
    };
    let department = if req.department.is_empty() {
        None
    } else {
        v.take(
            "department",
            identifier(&req.department, MAX_DEPARTMENT_LEN),
        )
    };
    let team = if req.team_id.is_empty() {
        None
    } else {
        v.take("team_id", identifier(&req.team_id, MAX_TEAM_ID_LEN))
    };
    let mut presence_states = Vec::new();
    for (i, raw) in req.presence_states.iter().enumerate() {
        match pb::AgentPresenceState::try_from(*raw) {
            Ok(pb::AgentPresenceState::Unspecified) => {
                v.add(format!("presence_states[{i}]"), "must not be UNSPECIFIED")
            }
            Ok(state) => presence_states.push(state),
            Err(_) => v.add(
                format!("presence_states[{i}]"),
                format!("{raw} is not a presence state"),
            ),
        }
    }
    presence_states.sort();
    presence_states.dedup();
    if !v.is_empty() {
        // The token is checked against the filters, so only once they parse.
        return Err(Error::InvalidArgument(v));
    }
    let mut query = ListAgentsQuery {
        filter: AgentFilter {
            department,
            team_id: team,
            include_disabled: req.include_disabled,
        },
        presence_states,
        page_size: page_size.unwrap_or(DEFAULT_AGENT_PAGE_SIZE),
        after_id: None,
    };
    query.after_id = query
        .after_id_from(&req.page_token)
        .map_err(|e| Error::invalid("page_token", e))?;
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierline_proto::common;
    use time::macros::datetime;

    fn fields(err: Error) -> Vec<String> {
        match err {
            Error::InvalidArgument(v) => v.as_slice().iter().map(|f| f.field.clone()).collect(),
            other => panic!("not INVALID_ARGUMENT: {other}"),
        }
    }

    fn cap(channel: common::Channel, n: i32) -> pb::ChannelCapacity {
        pb::ChannelCapacity {
            channel: channel as i32,
            max_active_tickets: n,
        }
    }

    fn agent() -> pb::Agent {
        pb::Agent {
            id: "agent-7".into(),
            display_name: "  Ada Okafor ".into(),
            departments: vec!["billing".into(), "sales".into(), "billing".into()],
            team_id: "key-accounts".into(),
            skills: vec!["language:de".into(), "product:fibre".into()],
            capacities: vec![
                cap(common::Channel::Voice, 1),
                cap(common::Channel::Chat, 3),
            ],
            disabled: false,
            ..Default::default()
        }
    }

    fn request(agent: pb::Agent) -> pb::UpsertAgentRequest {
        pb::UpsertAgentRequest {
            agent: Some(agent),
            update_mask: None,
            expected_version: None,
        }
    }

    fn masked(paths: &[&str], agent: pb::Agent) -> pb::UpsertAgentRequest {
        pb::UpsertAgentRequest {
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            ..request(agent)
        }
    }

    fn invalid(req: pb::UpsertAgentRequest) -> Vec<String> {
        fields(parse_upsert(&req).expect_err("invalid"))
    }

    #[test]
    fn a_valid_agent_parses_normalised() {
        let u = parse_upsert(&request(agent())).expect("valid");
        assert_eq!(u.id, "agent-7");
        assert_eq!(u.fields.display_name, "Ada Okafor");
        assert_eq!(
            u.fields.departments,
            BTreeSet::from(["billing".to_owned(), "sales".to_owned()])
        );
        assert_eq!(u.fields.team_id.as_deref(), Some("key-accounts"));
        assert_eq!(u.fields.skills.len(), 2);
        assert_eq!(u.fields.capacity.get(Channel::Voice), 1);
        assert_eq!(u.fields.capacity.get(Channel::Chat), 3);
        assert_eq!(u.fields.capacity.get(Channel::Email), 0);
        assert_eq!(u.mask, UpdateMask::All);
        assert_eq!(u.expected_version, None);
    }

    #[test]
    fn a_uuid_is_an_agent_id_and_output_only_fields_are_ignored() {
        let u = parse_upsert(&request(pb::Agent {
            id: "0192d3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d".into(),
            version: 99,
            create_time: Some(prost_types::Timestamp::default()),
            ..agent()
        }))
        .expect("valid");
        assert_eq!(u.id, "0192d3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d");
    }

    #[test]
    fn the_agent_is_required() {
        let req = pb::UpsertAgentRequest {
            agent: None,
            update_mask: None,
            expected_version: None,
        };
        assert_eq!(fields(parse_upsert(&req).expect_err("no agent")), ["agent"]);
    }

    #[test]
    fn agent_ids_are_1_to_128_characters_without_whitespace_or_control_characters() {
        for bad in [
            "",
            "agent 7",
            " agent-7",
            "agent-7\n",
            "a\u{0}b",
            "a\u{a0}b",
        ] {
            let req = request(pb::Agent {
                id: bad.into(),
                ..agent()
            });
            assert_eq!(invalid(req), ["agent.id"], "{bad:?}");
        }
        let longest = "é".repeat(128);
        assert!(
            parse_upsert(&request(pb::Agent {
                id: longest.clone(),
                ..agent()
            }))
            .is_ok()
        );
        let req = request(pb::Agent {
            id: longest + "x",
            ..agent()
        });
        assert_eq!(invalid(req), ["agent.id"]);
    }

    #[test]
    fn display_name_is_1_to_200_characters() {
        for bad in ["", "   ", "bad\u{7}bell"] {
            let req = request(pb::Agent {
                display_name: bad.into(),
                ..agent()
            });
            assert_eq!(invalid(req), ["agent.display_name"], "{bad:?}");
        }
        let req = request(pb::Agent {
            display_name: "x".repeat(201),
            ..agent()
        });
        assert_eq!(invalid(req), ["agent.display_name"]);
        assert!(
            parse_upsert(&request(pb::Agent {
                display_name: "x".repeat(200),
                ..agent()
            }))
            .is_ok()
        );
    }

    #[test]
    fn display_name_may_be_left_out_of_a_mask_that_does_not_name_it() {
        let nameless = pb::Agent {
            display_name: String::new(),
            ..agent()
        };
        let u = parse_upsert(&masked(&["disabled"], nameless.clone())).expect("valid");
        assert_eq!(u.fields.display_name, "");
        assert!(u.creation().is_err(), "but it cannot create the agent");
        assert_eq!(
            invalid(masked(&["display_name", "disabled"], nameless)),
            ["agent.display_name"]
        );
    }

    #[test]
    fn departments_are_at_most_20_each_1_to_64_characters() {
        let req = request(pb::Agent {
            departments: vec![
                "billing".into(),
                String::new(),
                "d".repeat(65),
                "with space".into(),
                "d".repeat(64),
            ],
            ..agent()
        });
        assert_eq!(
            invalid(req),
            [
                "agent.departments[1]",
                "agent.departments[2]",
                "agent.departments[3]"
            ]
        );
        let twenty_one = (0..21).map(|i| format!("d{i}")).collect::<Vec<_>>();
        let req = request(pb::Agent {
            departments: twenty_one[..20].to_vec(),
            ..agent()
        });
        assert!(parse_upsert(&req).is_ok());
        let req = request(pb::Agent {
            departments: twenty_one,
            ..agent()
        });
        assert_eq!(invalid(req), ["agent.departments"]);
    }

    #[test]
    fn team_id_is_empty_or_1_to_64_characters() {
        let none = parse_upsert(&request(pb::Agent {
            team_id: String::new(),
            ..agent()
        }))
        .expect("valid");
        assert_eq!(none.fields.team_id, None);
        for bad in ["t".repeat(65), "key accounts".into()] {
            let req = request(pb::Agent {
                team_id: bad.clone(),
                ..agent()
            });
            assert_eq!(invalid(req), ["agent.team_id"], "{bad:?}");
        }
    }

    #[test]
    fn skills_are_at_most_50_lower_case_kind_value_pairs() {
        let req = request(pb::Agent {
            skills: vec![
                "language:de".into(),
                "Language:DE".into(),
                "nokind".into(),
                ":de".into(),
                "language:".into(),
                format!("language:{}", "x".repeat(56)),
                format!("language:{}", "x".repeat(55)),
            ],
            ..agent()
        });
        assert_eq!(
            invalid(req),
            [
                "agent.skills[1]",
                "agent.skills[2]",
                "agent.skills[3]",
                "agent.skills[4]",
                "agent.skills[5]"
            ]
        );
        let many = (0..51).map(|i| format!("skill:s{i}")).collect::<Vec<_>>();
        let req = request(pb::Agent {
            skills: many[..50].to_vec(),
            ..agent()
        });
        assert!(parse_upsert(&req).is_ok());
        let req = request(pb::Agent {
            skills: many,
            ..agent()
        });
        assert_eq!(invalid(req), ["agent.skills"]);
    }

    #[test]
    fn capacities_name_a_channel_once_with_1_to_50_tickets_and_1_for_voice() {
        use common::Channel as C;
        let req = request(pb::Agent {
            capacities: vec![
                cap(C::Chat, 3),
                cap(C::Unspecified, 2),
                pb::ChannelCapacity {
                    channel: 42,
                    max_active_tickets: 2,
                },
                cap(C::Chat, 4),
                cap(C::Voice, 2),
                cap(C::Email, 0),
                cap(C::Web, 51),
                cap(C::Counter, -1),
                cap(C::Api, 50),
            ],
            ..agent()
        });
        assert_eq!(
            invalid(req),
            [
                "agent.capacities[1].channel",
                "agent.capacities[2].channel",
                "agent.capacities[3].channel",
                "agent.capacities[4].max_active_tickets",
                "agent.capacities[5].max_active_tickets",
                "agent.capacities[6].max_active_tickets",
                "agent.capacities[7].max_active_tickets",
            ]
        );
        let u = parse_upsert(&request(pb::Agent {
            capacities: vec![],
            ..agent()
        }))
        .expect("no capacities is valid");
        assert_eq!(u.fields.capacity.total(), 0);
    }

    #[test]
    fn mask_paths_must_be_updatable_fields() {
        let u = parse_upsert(&masked(&["skills", "disabled", "skills"], agent())).expect("valid");
        assert_eq!(
            u.mask,
            UpdateMask::Fields([AgentField::Skills, AgentField::Disabled].into())
        );
        let u = parse_upsert(&masked(&[], agent())).expect("valid");
        assert_eq!(u.mask, UpdateMask::All);
        for bad in ["id", "version", "status", "capacities.channel", "*", "name"] {
            assert_eq!(
                invalid(masked(&["skills", bad], agent())),
                ["update_mask.paths"],
                "{bad}"
            );
        }
    }

    #[test]
    fn expected_version_starts_at_1() {
        let req = pb::UpsertAgentRequest {
            expected_version: Some(0),
            ..request(agent())
        };
        assert_eq!(invalid(req), ["expected_version"]);
        let req = pb::UpsertAgentRequest {
            expected_version: Some(3),
            ..request(agent())
        };
        assert_eq!(parse_upsert(&req).expect("valid").expected_version, Some(3));
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let req = pb::UpsertAgentRequest {
            agent: Some(pb::Agent {
                id: String::new(),
                display_name: String::new(),
                departments: vec![String::new()],
                team_id: "a b".into(),
                skills: vec!["X".into()],
                capacities: vec![cap(common::Channel::Voice, 3)],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["bogus".into()],
            }),
            expected_version: Some(-1),
        };
        assert_eq!(
            invalid(req),
            [
                "update_mask.paths",
                "expected_version",
                "agent.id",
                "agent.departments[0]",
                "agent.team_id",
                "agent.skills[0]",
                "agent.capacities[0].max_active_tickets",
            ]
        );
    }

    #[test]
    fn records_convert_to_the_wire_with_capacities_in_channel_order() {
        let at = datetime!(2026-03-02 09:00:00.5 UTC);
        let record = AgentRecord {
            id: "agent-7".into(),
            display_name: "Ada".into(),
            departments: BTreeSet::from(["billing".to_owned()]),
            team_id: None,
            skills: BTreeSet::from(["language:de".to_owned()]),
            capacity: ChannelCounts::of(&[(Channel::Chat, 3), (Channel::Voice, 1)]),
            disabled: true,
            version: 4,
            created_at: at,
            updated_at: at + time::Duration::minutes(1),
        };
        let status = pb::AgentStatus {
            connected: true,
            ..Default::default()
        };
        let wire = agent_to_proto(&record, Some(status.clone()));
        assert_eq!(wire.id, "agent-7");
        assert_eq!(wire.team_id, "");
        assert_eq!(wire.departments, ["billing"]);
        assert_eq!(
            wire.capacities,
            [
                cap(common::Channel::Voice, 1),
                cap(common::Channel::Chat, 3)
            ]
        );
        assert!(wire.disabled);
        assert_eq!(wire.status, Some(status));
        assert_eq!(wire.version, 4);
        assert_eq!(
            wire.create_time,
            Some(prost_types::Timestamp {
                seconds: at.unix_timestamp(),
                nanos: 500_000_000
            })
        );
        assert_eq!(
            wire.update_time.map(|t| t.seconds),
            Some(at.unix_timestamp() + 60)
        );
        // Back through parsing, the record's fields come out the same.
        let parsed = parse_upsert(&request(wire)).expect("round trip");
        assert_eq!(parsed.fields, record.fields());
    }

    fn list(page_size: i32, token: &str) -> pb::ListAgentsRequest {
        pb::ListAgentsRequest {
            page_size,
            page_token: token.into(),
            department: "billing".into(),
            team_id: String::new(),
            presence_states: vec![pb::AgentPresenceState::Available as i32],
            include_disabled: false,
        }
    }

    #[test]
    fn page_size_is_1_to_500_and_0_means_100() {
        assert_eq!(parse_list_agents(&list(0, "")).expect("ok").page_size, 100);
        assert_eq!(parse_list_agents(&list(1, "")).expect("ok").page_size, 1);
        assert_eq!(
            parse_list_agents(&list(500, "")).expect("ok").page_size,
            500
        );
        for bad in [501, -1] {
            assert_eq!(
                fields(parse_list_agents(&list(bad, "")).expect_err("bad size")),
                ["page_size"]
            );
        }
    }

    #[test]
    fn list_filters_are_parsed() {
        let q = parse_list_agents(&pb::ListAgentsRequest {
            team_id: "key-accounts".into(),
            presence_states: vec![
                pb::AgentPresenceState::Offline as i32,
                pb::AgentPresenceState::Available as i32,
                pb::AgentPresenceState::Offline as i32,
            ],
            include_disabled: true,
            ..list(10, "")
        })
        .expect("valid");
        assert_eq!(
            q.filter,
            AgentFilter {
                department: Some("billing".into()),
                team_id: Some("key-accounts".into()),
                include_disabled: true,
            }
        );
        assert_eq!(
            q.presence_states,
            [
                pb::AgentPresenceState::Available,
                pb::AgentPresenceState::Offline
            ]
        );
        assert_eq!(q.after_id, None);
        let none = parse_list_agents(&pb::ListAgentsRequest::default()).expect("valid");
        assert_eq!(none.filter, AgentFilter::default());
        assert!(none.presence_states.is_empty());
    }

    #[test]
    fn bad_list_filters_are_named() {
        let req = pb::ListAgentsRequest {
            department: "d".repeat(65),
            team_id: "a b".into(),
            presence_states: vec![0, 9],
            ..list(10, "")
        };
        assert_eq!(
            fields(parse_list_agents(&req).expect_err("bad filters")),
            [
                "department",
                "team_id",
                "presence_states[0]",
                "presence_states[1]"
            ]
        );
    }

    #[test]
    fn a_page_token_continues_the_same_query_only() {
        let first = parse_list_agents(&list(10, "")).expect("valid");
        let token = first.next_page_token("agent-7");
        let next = parse_list_agents(&list(10, &token)).expect("same filters");
        assert_eq!(next.after_id.as_deref(), Some("agent-7"));
        // The page size may change between pages (AIP-158).
        let resized = parse_list_agents(&list(50, &token)).expect("page size may change");
        assert_eq!(resized.after_id.as_deref(), Some("agent-7"));

        let changed = [
            pb::ListAgentsRequest {
                department: "sales".into(),
                ..list(10, &token)
            },
            pb::ListAgentsRequest {
                department: String::new(),
                ..list(10, &token)
            },
            pb::ListAgentsRequest {
                team_id: "billing".into(),
                ..list(10, &token)
            },
            pb::ListAgentsRequest {
                include_disabled: true,
                ..list(10, &token)
            },
            pb::ListAgentsRequest {
                presence_states: vec![],
                ..list(10, &token)
            },
        ];
        for req in changed {
            assert_eq!(
                fields(parse_list_agents(&req).expect_err("changed filter")),
                ["page_token"],
                "{req:?}"
            );
        }
    }

    #[test]
    fn foreign_page_tokens_are_refused() {
        for token in [
            "%%%".to_owned(),
            wire::encode_page_token(b"short"),
            wire::encode_page_token(&[2, 0, 0, 0, 0, 0, 0, 0, 0, b'a']),
            wire::encode_id_cursor(uuid::Uuid::now_v7()),
        ] {
            assert_eq!(
                fields(parse_list_agents(&list(10, &token)).expect_err("foreign")),
                ["page_token"],
                "{token}"
            );
        }
    }
}
