//! The one mapping from a ticket, as `TicketService` shows it, to what the router needs
//! (`RoutingService.SyncTicket`).
//!
//! Both sides use it: the ticket service when it hands a ticket over, and the router when it
//! rebuilds its live state from `TicketService.ListTickets`. It therefore reads nothing but the
//! wire `Ticket`, so the two can never disagree about what a ticket means to routing.

use crate::common::Tier;
use crate::routing::{RoutingTicket, TicketRoutingState};
use crate::ticket::{Ticket, TicketState};

/// Longest customer name and subject sent to the router, in characters (`RoutingTicket`).
pub const MAX_TEXT_CHARS: usize = 200;

/// The routing state of a ticket state: NEW, QUEUED → WAITING; ASSIGNED, IN_PROGRESS → ACTIVE;
/// PENDING_CUSTOMER, ON_HOLD → PARKED; RESOLVED, CLOSED, MERGED, CANCELLED → DONE. An unset
/// state has no routing state (UNSPECIFIED), which the router refuses.
pub fn routing_state(state: TicketState) -> TicketRoutingState {
    match state {
        TicketState::New | TicketState::Queued => TicketRoutingState::Waiting,
        TicketState::Assigned | TicketState::InProgress => TicketRoutingState::Active,
        TicketState::PendingCustomer | TicketState::OnHold => TicketRoutingState::Parked,
        TicketState::Resolved
        | TicketState::Closed
        | TicketState::Merged
        | TicketState::Cancelled => TicketRoutingState::Done,
        TicketState::Unspecified => TicketRoutingState::Unspecified,
    }
}

/// What the router needs to know about `ticket`: its routing state at `ticket.version`, the
/// queue (department), rank inputs (escalation level, pickup due and enqueue times), who may be
/// offered it (skills, key account and account manager, preferred agent) and what an offer shows.
///
/// Every field is filled whatever the state; the router reads what the state needs. The tier is
/// [`effective_tier`]. The customer's id is sent only once the customer is resolved (an id given
/// at intake is not yet confirmed).
pub fn routing_ticket(ticket: &Ticket) -> RoutingTicket {
    let state = TicketState::try_from(ticket.state).unwrap_or(TicketState::Unspecified);
    let snapshot = ticket.customer.as_ref();
    let routing = ticket.routing.as_ref();
    RoutingTicket {
        ticket_id: ticket.id.clone(),
        ticket_number: ticket.number.clone(),
        ticket_version: ticket.version,
        state: routing_state(state) as i32,
        department: ticket.department.clone(),
        channel: ticket.channel,
        tier: effective_tier(ticket) as i32,
        key_account: snapshot.is_some_and(|c| c.key_account),
        account_manager_id: snapshot
            .map(|c| c.account_manager_id.clone())
            .unwrap_or_default(),
        customer_id: if snapshot.is_some() {
            ticket.customer_id.clone()
        } else {
            String::new()
        },
        customer_display_name: snapshot
            .map(|c| truncate_chars(&c.display_name, MAX_TEXT_CHARS))
            .unwrap_or_default(),
        subject: truncate_chars(&ticket.subject, MAX_TEXT_CHARS),
        category: ticket.category.clone(),
        priority: ticket.priority,
        escalation_level: escalation_level(ticket),
        enqueue_time: routing.and_then(|r| r.enqueue_time),
        pickup_due_time: routing.and_then(|r| r.pickup_due_time),
        required_skills: ticket.required_skills.clone(),
        preferred_agent_id: routing
            .map(|r| r.preferred_agent_id.clone())
            .unwrap_or_default(),
        assigned_agent_id: ticket.assigned_agent_id.clone(),
        reservation_id: routing
            .map(|r| r.reservation_id.clone())
            .unwrap_or_default(),
    }
}

/// The tier routing uses for `ticket`: `routing.tier` (the customer's, or the configured default
/// while the customer is unresolved), else the customer snapshot's. UNSPECIFIED if neither is
/// set (the router refuses it, and the caller logs it).
pub fn effective_tier(ticket: &Ticket) -> Tier {
    let set = |raw: i32| Tier::try_from(raw).ok().filter(|t| *t != Tier::Unspecified);
    ticket
        .routing
        .as_ref()
        .and_then(|r| set(r.tier))
        .or_else(|| ticket.customer.as_ref().and_then(|c| set(c.tier)))
        .unwrap_or(Tier::Unspecified)
}

fn escalation_level(ticket: &Ticket) -> i32 {
    ticket.sla.as_ref().map_or(0, |s| s.escalation_level.max(0))
}

/// `s` cut to at most `max` characters, on a character boundary.
fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => s.get(..end).unwrap_or(s).to_owned(),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::Channel;
    use crate::ticket::{CustomerResolution, CustomerSnapshot, Sla, TicketRouting};
    use prost_types::Timestamp;

    const EVERY_STATE: [(TicketState, TicketRoutingState); 11] = [
        (TicketState::Unspecified, TicketRoutingState::Unspecified),
        (TicketState::New, TicketRoutingState::Waiting),
        (TicketState::Queued, TicketRoutingState::Waiting),
        (TicketState::Assigned, TicketRoutingState::Active),
        (TicketState::InProgress, TicketRoutingState::Active),
        (TicketState::PendingCustomer, TicketRoutingState::Parked),
        (TicketState::OnHold, TicketRoutingState::Parked),
        (TicketState::Resolved, TicketRoutingState::Done),
        (TicketState::Closed, TicketRoutingState::Done),
        (TicketState::Merged, TicketRoutingState::Done),
        (TicketState::Cancelled, TicketRoutingState::Done),
    ];

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    /// A resolved key-account customer's ticket, assigned, escalated once.
    fn ticket(state: TicketState) -> Ticket {
        Ticket {
            id: "0191d3a0-0000-7000-8000-000000000001".into(),
            number: "T-4821-7730".into(),
            customer_id: "0191d3a0-0000-7000-8000-0000000000c1".into(),
            customer_resolution: CustomerResolution::Resolved as i32,
            customer: Some(CustomerSnapshot {
                tier: Tier::A as i32,
                key_account: true,
                account_manager_id: "agent-am".into(),
                display_name: "Ada Okafor".into(),
                snapshot_time: at(1),
            }),
            channel: Channel::Chat as i32,
            category: "billing".into(),
            department: "customer_service".into(),
            priority: 430,
            subject: "charged twice".into(),
            required_skills: vec!["language:de".into(), "product:fibre".into()],
            state: state as i32,
            assigned_agent_id: "agent-7".into(),
            routing: Some(TicketRouting {
                enqueue_time: at(100),
                pickup_due_time: at(400),
                preferred_agent_id: "agent-3".into(),
                reservation_id: "0191d3a0-0000-7000-8000-0000000000f1".into(),
                tier: Tier::A as i32,
            }),
            sla: Some(Sla {
                escalation_level: 1,
                ..Default::default()
            }),
            version: 7,
            ..Default::default()
        }
    }

    #[test]
    fn every_ticket_state_has_its_routing_state() {
        for (state, expected) in EVERY_STATE {
            assert_eq!(routing_state(state), expected, "{state:?}");
            // Only the state differs: every other field is filled whatever the state.
            let reference = routing_ticket(&ticket(TicketState::InProgress));
            assert_eq!(
                routing_ticket(&ticket(state)),
                RoutingTicket {
                    state: expected as i32,
                    ..reference
                },
                "{state:?}"
            );
        }
    }

    #[test]
    fn a_state_the_mapping_does_not_know_is_unspecified() {
        let mut t = ticket(TicketState::New);
        t.state = 99;
        assert_eq!(
            routing_ticket(&t).state,
            TicketRoutingState::Unspecified as i32
        );
    }

    #[test]
    fn every_field_comes_from_the_ticket() {
        let sent = routing_ticket(&ticket(TicketState::Assigned));
        assert_eq!(
            sent,
            RoutingTicket {
                ticket_id: "0191d3a0-0000-7000-8000-000000000001".into(),
                ticket_number: "T-4821-7730".into(),
                ticket_version: 7,
                state: TicketRoutingState::Active as i32,
                department: "customer_service".into(),
                channel: Channel::Chat as i32,
                tier: Tier::A as i32,
                key_account: true,
                account_manager_id: "agent-am".into(),
                customer_id: "0191d3a0-0000-7000-8000-0000000000c1".into(),
                customer_display_name: "Ada Okafor".into(),
                subject: "charged twice".into(),
                category: "billing".into(),
                priority: 430,
                escalation_level: 1,
                enqueue_time: at(100),
                pickup_due_time: at(400),
                required_skills: vec!["language:de".into(), "product:fibre".into()],
                preferred_agent_id: "agent-3".into(),
                assigned_agent_id: "agent-7".into(),
                reservation_id: "0191d3a0-0000-7000-8000-0000000000f1".into(),
            }
        );
    }

    #[test]
    fn an_unresolved_customer_gets_the_tier_the_ticket_service_routes_by() {
        let mut t = ticket(TicketState::New);
        t.customer = None;
        t.customer_resolution = CustomerResolution::Pending as i32;
        if let Some(r) = t.routing.as_mut() {
            r.tier = Tier::C as i32;
        }
        let sent = routing_ticket(&t);
        assert_eq!(sent.tier, Tier::C as i32);
        // No snapshot: no key account, manager, name, nor an unconfirmed customer id.
        assert!(!sent.key_account);
        assert_eq!(sent.account_manager_id, "");
        assert_eq!(sent.customer_display_name, "");
        assert_eq!(sent.customer_id, "");
    }

    #[test]
    fn without_a_routing_tier_the_snapshot_tier_is_used_and_else_none() {
        let mut t = ticket(TicketState::Queued);
        if let Some(r) = t.routing.as_mut() {
            r.tier = Tier::Unspecified as i32;
        }
        t.customer = Some(CustomerSnapshot {
            tier: Tier::B as i32,
            ..Default::default()
        });
        assert_eq!(effective_tier(&t), Tier::B);
        t.customer = None;
        assert_eq!(effective_tier(&t), Tier::Unspecified);
    }

    #[test]
    fn long_texts_are_cut_to_200_characters_on_a_character_boundary() {
        let mut t = ticket(TicketState::New);
        t.subject = "ü".repeat(150) + &"ß".repeat(100);
        if let Some(c) = t.customer.as_mut() {
            c.display_name = "名".repeat(201);
        }
        let sent = routing_ticket(&t);
        assert_eq!(sent.subject.chars().count(), 200);
        assert_eq!(sent.subject, "ü".repeat(150) + &"ß".repeat(50));
        assert_eq!(sent.customer_display_name, "名".repeat(200));
        // Short texts are unchanged.
        assert_eq!(truncate_chars("kettle", 200), "kettle");
        assert_eq!(truncate_chars(&"x".repeat(200), 200), "x".repeat(200));
        assert_eq!(truncate_chars("", 200), "");
    }

    #[test]
    fn a_ticket_without_routing_fields_maps_to_empty_ones() {
        let t = Ticket {
            state: TicketState::Closed as i32,
            ..Default::default()
        };
        let sent = routing_ticket(&t);
        assert_eq!(sent.state, TicketRoutingState::Done as i32);
        assert_eq!(sent.enqueue_time, None);
        assert_eq!(sent.preferred_agent_id, "");
        assert_eq!(sent.reservation_id, "");
    }
}
