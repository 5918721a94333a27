//! Wire (proto) ↔ routing types: parsing requests at the boundary, and building replies from
//! the live state. Pure functions, no I/O.

use std::collections::BTreeSet;

use tierline_proto::common as pbc;
use tierline_proto::routing as pb;
use tierline_runtime::Violations;
use tierline_runtime::wire::{self, text};
use tierline_types::{Channel, Tier};

use crate::agents::convert::agent_id;
use crate::domain::agent::{AwayReason, Presence};
use crate::domain::steps::StepKind;
use crate::error::{Error, Result};
use crate::live::model::{
    LiveAgent, LiveOffer, LiveTicket, TicketData, away_reason_str, ms_to_time,
};
use crate::live::state::{RoutingState, TicketSync};

/// Longest subject or customer name carried in an offer.
pub const MAX_SHOWN_TEXT: usize = 200;
/// Most required skills of a ticket.
pub const MAX_REQUIRED_SKILLS: usize = 20;

/// Parses a `RoutingTicket` (SyncTicket, or a rebuild) into a [`TicketSync`].
pub fn parse_routing_ticket(t: &pb::RoutingTicket) -> Result<TicketSync> {
    let mut v = Violations::default();
    let id = v.take("ticket.ticket_id", wire::uuid(&t.ticket_id));
    if t.ticket_version < 1 {
        v.add("ticket.ticket_version", "must be at least 1");
    }
    let state = match pb::TicketRoutingState::try_from(t.state) {
        Ok(pb::TicketRoutingState::Waiting) => Some(RoutingState::Waiting),
        Ok(pb::TicketRoutingState::Active) => Some(RoutingState::Active),
        Ok(pb::TicketRoutingState::Parked) => Some(RoutingState::Parked),
        Ok(pb::TicketRoutingState::Done) => Some(RoutingState::Done),
        _ => {
            v.add("ticket.state", "required: WAITING, ACTIVE, PARKED or DONE");
            None
        }
    };
    let done = state == Some(RoutingState::Done);
    let department = if done && t.department.is_empty() {
        Some(String::new())
    } else {
        v.take(
            "ticket.department",
            agent_id(&t.department).map_err(|e| format!("{e} (a department id)")),
        )
    };
    let channel = match Channel::from_wire(t.channel) {
        Ok(Some(c)) => Some(c),
        Ok(None) if done => Some(Channel::Api),
        Ok(None) => {
            v.add("ticket.channel", "required");
            None
        }
        Err(e) => {
            v.add("ticket.channel", e);
            None
        }
    };
    let tier = match Tier::from_wire(t.tier) {
        Ok(Some(tier)) => Some(tier),
        Ok(None) if done => Some(Tier::C),
        Ok(None) => {
            v.add("ticket.tier", "required");
            None
        }
        Err(e) => {
            v.add("ticket.tier", e);
            None
        }
    };
    let waiting = state == Some(RoutingState::Waiting);
    let time =
        |field: &str, ts: &Option<tierline_proto::prost_types::Timestamp>, v: &mut Violations| {
            match ts {
                Some(ts) => v.take(field, wire::time_from(ts)),
                None if waiting => {
                    v.add(field, "required for WAITING");
                    None
                }
                None => Some(time::OffsetDateTime::UNIX_EPOCH),
            }
        };
    let enqueue_time = time("ticket.enqueue_time", &t.enqueue_time, &mut v);
    let pickup_due = time("ticket.pickup_due_time", &t.pickup_due_time, &mut v);
    if t.required_skills.len() > MAX_REQUIRED_SKILLS {
        v.add(
            "ticket.required_skills",
            format!("at most {MAX_REQUIRED_SKILLS}"),
        );
    }
    let required_skills: BTreeSet<String> = t.required_skills.iter().cloned().collect();
    let assigned = matches!(state, Some(RoutingState::Active | RoutingState::Parked));
    let agent = if assigned {
        v.take("ticket.assigned_agent_id", agent_id(&t.assigned_agent_id))
    } else {
        None
    };
    let optional_agent = |raw: &str| (!raw.is_empty()).then(|| raw.to_owned());
    let escalation_level = u32::try_from(t.escalation_level).unwrap_or(0);
    let subject = shown(&t.subject);
    let customer_name = shown(&t.customer_display_name);
    if !v.is_empty() {
        return Err(Error::InvalidArgument(v));
    }
    match (
        id,
        state,
        department,
        channel,
        tier,
        enqueue_time,
        pickup_due,
    ) {
        (
            Some(id),
            Some(state),
            Some(department),
            Some(channel),
            Some(tier),
            Some(enqueue_time),
            Some(pickup_due),
        ) => Ok(TicketSync {
            id: id.to_string(),
            version: t.ticket_version,
            state,
            department,
            channel,
            tier,
            data: TicketData {
                number: t.ticket_number.clone(),
                key_account: t.key_account,
                account_manager_id: optional_agent(&t.account_manager_id),
                preferred_agent_id: optional_agent(&t.preferred_agent_id),
                required_skills,
                escalation_level,
                enqueue_time,
                pickup_due,
                subject,
                category: t.category.clone(),
                priority: t.priority,
                customer_id: t.customer_id.clone(),
                customer_name,
            },
            agent_id: agent,
            reservation_id: optional_agent(&t.reservation_id),
        }),
        _ => Err(Error::invalid("ticket", "incomplete")),
    }
}

/// Shown text, cut to [`MAX_SHOWN_TEXT`] characters.
fn shown(raw: &str) -> String {
    raw.chars().take(MAX_SHOWN_TEXT).collect()
}

/// Parses an agent id field, as INVALID_ARGUMENT naming `field`.
pub fn parse_agent_id(field: &str, raw: &str) -> Result<String> {
    agent_id(raw).map_err(|e| Error::invalid(field, e))
}

/// Parses a reservation id (a UUID) field.
pub fn parse_reservation_id(field: &str, raw: &str) -> Result<String> {
    wire::uuid(raw)
        .map(|u| u.to_string())
        .map_err(|e| Error::invalid(field, e))
}

/// Parses a note (at most 200 characters).
pub fn parse_note(field: &str, raw: &str) -> Result<String> {
    text(raw, 200, false).map_err(|e| Error::invalid(field, e))
}

/// A step kind on the wire.
pub fn step_to_wire(step: StepKind) -> pb::RoutingStepKind {
    match step {
        StepKind::PreferredAgent => pb::RoutingStepKind::PreferredAgent,
        StepKind::AccountManager => pb::RoutingStepKind::AccountManager,
        StepKind::Team => pb::RoutingStepKind::Team,
        StepKind::Department => pb::RoutingStepKind::Department,
    }
}

/// An offer's status on the wire.
pub fn offer_status(state: &str) -> pb::OfferStatus {
    match state {
        "pending" | "accepting" => pb::OfferStatus::Pending,
        "accepted" => pb::OfferStatus::Accepted,
        "declined" => pb::OfferStatus::Declined,
        "expired" => pb::OfferStatus::Expired,
        "cancelled" => pb::OfferStatus::Cancelled,
        _ => pb::OfferStatus::Unspecified,
    }
}

/// Why an offer was withdrawn, on the wire.
pub fn cancel_reason(offer: &LiveOffer) -> pb::OfferCancelReason {
    match (offer.st.as_str(), offer.why.as_deref()) {
        ("expired", _) => pb::OfferCancelReason::Expired,
        (_, Some("ticket_gone")) => pb::OfferCancelReason::TicketGone,
        (_, Some("ticket_changed")) => pb::OfferCancelReason::TicketChanged,
        (_, Some("presence_changed")) => pb::OfferCancelReason::PresenceChanged,
        (_, Some("assignment_refused")) => pb::OfferCancelReason::AssignmentRefused,
        _ => pb::OfferCancelReason::Unspecified,
    }
}

fn tier_wire(raw: &str) -> i32 {
    Tier::from_db(raw).map_or(0, |t| t.to_wire() as i32)
}

fn channel_wire(raw: &str) -> i32 {
    Channel::from_db(raw).map_or(0, |c| c.to_wire() as i32)
}

/// An offer on the wire.
pub fn offer_to_proto(reservation_id: &str, o: &LiveOffer) -> pb::Offer {
    let data = o.data().ok().flatten();
    let d = data.as_ref();
    pb::Offer {
        reservation_id: reservation_id.to_owned(),
        agent_id: o.agent.clone(),
        ticket_id: o.ticket.clone(),
        ticket_number: d.map(|d| d.number.clone()).unwrap_or_default(),
        channel: channel_wire(&o.chan),
        department: o.dept.clone(),
        subject: d.map(|d| d.subject.clone()).unwrap_or_default(),
        category: d.map(|d| d.category.clone()).unwrap_or_default(),
        priority: d.map_or(0, |d| d.priority),
        customer: Some(pb::CustomerSummary {
            customer_id: d.map(|d| d.customer_id.clone()).unwrap_or_default(),
            display_name: d.map(|d| d.customer_name.clone()).unwrap_or_default(),
            tier: tier_wire(&o.tier),
            key_account: d.is_some_and(|d| d.key_account),
            account_manager_id: d
                .and_then(|d| d.account_manager_id.clone())
                .unwrap_or_default(),
        }),
        pickup_due_time: d.map(|d| wire::timestamp(d.pickup_due)),
        step_kind: step_to_wire(o.step_kind()) as i32,
        status: offer_status(&o.st) as i32,
        offer_time: Some(wire::timestamp(ms_to_time(o.made as i64))),
        expire_time: Some(wire::timestamp(ms_to_time(o.exp as i64))),
    }
}

/// An assignment on the wire, from the agent's entry and the ticket's (for its number).
pub fn assignment_to_proto(
    agent_id: &str,
    ticket_id: &str,
    assignment: Option<&crate::live::model::LiveAssignment>,
    ticket: Option<&LiveTicket>,
) -> pb::Assignment {
    let number = ticket
        .and_then(|t| t.data(ticket_id).ok().flatten())
        .map(|d| d.number)
        .unwrap_or_default();
    let status = match assignment {
        Some(a) if a.p => pb::AssignmentStatus::Parked,
        Some(_) => pb::AssignmentStatus::Active,
        None => pb::AssignmentStatus::Ended,
    };
    pb::Assignment {
        reservation_id: assignment.and_then(|a| a.rid.clone()).unwrap_or_default(),
        agent_id: agent_id.to_owned(),
        ticket_id: ticket_id.to_owned(),
        ticket_number: number,
        channel: assignment.map_or(0, |a| channel_wire(&a.c)),
        status: status as i32,
        assign_time: assignment.map(|a| wire::timestamp(ms_to_time(a.at as i64))),
        ticket_version: assignment
            .and_then(|a| a.v.as_deref())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    }
}

/// A presence on the wire.
pub fn presence_to_proto(a: &LiveAgent) -> pb::AgentPresence {
    let (state, reason) = match a.presence() {
        Presence::Available => (pb::AgentPresenceState::Available, None),
        Presence::Away(r) => (pb::AgentPresenceState::Away, Some(r)),
        Presence::Offline => (pb::AgentPresenceState::Offline, None),
    };
    pb::AgentPresence {
        state: state as i32,
        away_reason: reason.map_or(0, |r| away_reason_to_wire(r) as i32),
        note: a.note.clone().unwrap_or_default(),
        since_time: a.ps.map(|ms| wire::timestamp(ms_to_time(ms as i64))),
    }
}

/// An agent's live status on the wire.
pub fn status_to_proto(a: &LiveAgent, now_ms: i64) -> pb::AgentStatus {
    let state = a.to_state("", None, now_ms);
    let loads = Channel::ALL
        .iter()
        .filter(|c| state.capacity.get(**c) > 0 || state.active.get(**c) > 0)
        .map(|c| pb::ChannelLoad {
            channel: c.to_wire() as i32,
            active_tickets: i32::try_from(state.active.get(*c)).unwrap_or(i32::MAX),
            max_active_tickets: i32::try_from(state.capacity.get(*c)).unwrap_or(i32::MAX),
        })
        .collect();
    pb::AgentStatus {
        presence: Some(presence_to_proto(a)),
        connected: a.is_connected(now_ms),
        loads,
        parked_ticket_count: i32::try_from(a.parked()).unwrap_or(i32::MAX),
        idle_since_time: a.idle.map(|ms| wire::timestamp(ms_to_time(ms as i64))),
        pending_reservation_id: a.offer.clone().unwrap_or_default(),
    }
}

/// The status of an agent with no live entry: offline, idle, nothing pending.
pub fn offline_status() -> pb::AgentStatus {
    pb::AgentStatus {
        presence: Some(pb::AgentPresence {
            state: pb::AgentPresenceState::Offline as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An away reason on the wire.
pub fn away_reason_to_wire(r: AwayReason) -> pb::AwayReason {
    match r {
        AwayReason::Break => pb::AwayReason::Break,
        AwayReason::Meal => pb::AwayReason::Meal,
        AwayReason::Meeting => pb::AwayReason::Meeting,
        AwayReason::Training => pb::AwayReason::Training,
        AwayReason::WrapUp => pb::AwayReason::WrapUp,
        AwayReason::NotResponding => pb::AwayReason::NotResponding,
        AwayReason::Other => pb::AwayReason::Other,
        AwayReason::NotReady => pb::AwayReason::NotReady,
    }
}

/// Parses SetPresence's state and reason into the stored (presence, reason) names.
pub fn parse_presence(state: i32, reason: i32) -> Result<(&'static str, &'static str)> {
    let mut v = Violations::default();
    let reason = match pb::AwayReason::try_from(reason) {
        Ok(pb::AwayReason::Unspecified) => None,
        Ok(r) => Some(match r {
            pb::AwayReason::Break => AwayReason::Break,
            pb::AwayReason::Meal => AwayReason::Meal,
            pb::AwayReason::Meeting => AwayReason::Meeting,
            pb::AwayReason::Training => AwayReason::Training,
            pb::AwayReason::WrapUp => AwayReason::WrapUp,
            pb::AwayReason::NotResponding => AwayReason::NotResponding,
            pb::AwayReason::NotReady => AwayReason::NotReady,
            _ => AwayReason::Other,
        }),
        Err(_) => {
            v.add("away_reason", format!("{reason} is not an away reason"));
            None
        }
    };
    let out = match pb::AgentPresenceState::try_from(state) {
        Ok(pb::AgentPresenceState::Available) => {
            if reason.is_some() {
                v.add("away_reason", "must be unset unless the state is AWAY");
            }
            ("available", "")
        }
        Ok(pb::AgentPresenceState::Away) => match reason {
            Some(r) => ("away", away_reason_str(r)),
            None => {
                v.add("away_reason", "required when the state is AWAY");
                ("away", "")
            }
        },
        Ok(pb::AgentPresenceState::Offline) => {
            if reason.is_some() {
                v.add("away_reason", "must be unset unless the state is AWAY");
            }
            ("offline", "")
        }
        _ => {
            v.add("state", "required: AVAILABLE, AWAY or OFFLINE");
            ("", "")
        }
    };
    if !v.is_empty() {
        return Err(Error::InvalidArgument(v));
    }
    Ok(out)
}

/// Parses OpenSession's initial presence: `available`, or `away` (not ready) for a new session;
/// UNSPECIFIED keeps a resumed session's presence (`keep`).
pub fn parse_initial_presence(state: i32) -> Result<&'static str> {
    match pb::AgentPresenceState::try_from(state) {
        Ok(pb::AgentPresenceState::Unspecified) => Ok("keep"),
        Ok(pb::AgentPresenceState::Available) => Ok("available"),
        Ok(pb::AgentPresenceState::Away) => Ok("away"),
        Ok(pb::AgentPresenceState::Offline) => Err(Error::invalid(
            "initial_presence",
            "OFFLINE is not a way to start a session",
        )),
        Err(_) => Err(Error::invalid(
            "initial_presence",
            format!("{state} is not a presence state"),
        )),
    }
}

/// A tier on the wire, for statistics.
pub fn tier_to_wire(tier: Option<Tier>) -> i32 {
    tier.map_or(pbc::Tier::Unspecified as i32, |t| t.to_wire() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierline_proto::prost_types::Timestamp;

    fn waiting() -> pb::RoutingTicket {
        pb::RoutingTicket {
            ticket_id: "0192f000-0000-7000-8000-000000000001".into(),
            ticket_number: "T-1".into(),
            ticket_version: 3,
            state: pb::TicketRoutingState::Waiting as i32,
            department: "support".into(),
            channel: pbc::Channel::Chat as i32,
            tier: pbc::Tier::A as i32,
            enqueue_time: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            pickup_due_time: Some(Timestamp {
                seconds: 1_700_000_900,
                nanos: 0,
            }),
            subject: "x".repeat(300),
            ..Default::default()
        }
    }

    #[test]
    fn a_waiting_ticket_parses_with_its_text_cut_to_size() {
        let s = parse_routing_ticket(&waiting()).expect("valid");
        assert_eq!(s.state, RoutingState::Waiting);
        assert_eq!(s.tier, Tier::A);
        assert_eq!(s.data.subject.chars().count(), MAX_SHOWN_TEXT);
    }

    #[test]
    fn missing_fields_are_named() {
        let mut t = waiting();
        t.ticket_id = "nope".into();
        t.ticket_version = 0;
        t.department.clear();
        t.enqueue_time = None;
        t.state = pb::TicketRoutingState::Active as i32;
        let Err(Error::InvalidArgument(v)) = parse_routing_ticket(&t) else {
            panic!("invalid");
        };
        let fields: Vec<&str> = v.as_slice().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "ticket.ticket_id",
                "ticket.ticket_version",
                "ticket.department",
                "ticket.assigned_agent_id"
            ]
        );
    }

    #[test]
    fn a_done_ticket_needs_only_id_version_and_state() {
        let t = pb::RoutingTicket {
            ticket_id: "0192f000-0000-7000-8000-000000000001".into(),
            ticket_version: 9,
            state: pb::TicketRoutingState::Done as i32,
            ..Default::default()
        };
        assert_eq!(
            parse_routing_ticket(&t).expect("valid").state,
            RoutingState::Done
        );
    }

    #[test]
    fn away_needs_a_reason_and_nothing_else_takes_one() {
        assert_eq!(
            parse_presence(
                pb::AgentPresenceState::Away as i32,
                pb::AwayReason::Meal as i32
            )
            .expect("valid"),
            ("away", "meal")
        );
        assert!(parse_presence(pb::AgentPresenceState::Away as i32, 0).is_err());
        assert!(
            parse_presence(
                pb::AgentPresenceState::Available as i32,
                pb::AwayReason::Meal as i32
            )
            .is_err()
        );
        assert!(parse_presence(0, 0).is_err());
    }
}
