//! Storage of tickets. [`TicketStore`] is what the API needs from storage; [`pg`] keeps it in
//! PostgreSQL, with the append-only event log that is both history and transactional outbox.

pub mod feed;
pub mod pg;

use std::sync::Arc;

use tierline_types::Tier;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::sla::SlaStatus;
use crate::domain::state::TicketState;

use crate::domain::ticket::{NewEvent, Ticket};

pub use pg::{EVENT_APPEND_LOCK, MIGRATOR, PairWrites, PgStore, RelayClaim, TouchedTickets};

/// Encodes a ticket as the snapshot stored with each event (the wire form, so streams send it
/// as is). Given by the API layer, which owns the wire format.
pub type Snapshotter = Arc<dyn Fn(&Ticket) -> Vec<u8> + Send + Sync>;

/// Outcome of creating a ticket.
#[derive(Debug, Clone)]
pub struct Created {
    /// The ticket: new, or the one the key already made.
    pub ticket: Ticket,
    /// True if the key had already made it.
    pub replayed: bool,
}

/// What a mutation decided: the events to record (none means nothing changed) and a value to
/// return to the caller.
pub struct Mutation<T> {
    /// Events to append, in order.
    pub events: Vec<NewEvent>,
    /// What the caller gets back.
    pub value: T,
}

/// Order of ListTickets results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TicketOrder {
    /// Oldest first, by creation then id (the default).
    #[default]
    CreatedAsc,
    /// Newest first, by creation then id.
    CreatedDesc,
}

/// What ListTickets asks for. Filters combine with AND, values within one list with OR; an
/// empty list or `None` matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketFilter {
    /// States.
    pub states: Vec<TicketState>,
    /// Tiers from the customer snapshot (a ticket with an unresolved customer has none).
    pub tiers: Vec<Tier>,
    /// Departments.
    pub departments: Vec<String>,
    /// Category ids.
    pub categories: Vec<String>,
    /// Only tickets assigned to this agent.
    pub assigned_agent_id: Option<String>,
    /// Only tickets of this customer.
    pub customer_id: Option<Uuid>,
    /// SLA statuses (the stored status).
    pub sla_statuses: Vec<SlaStatus>,
    /// Created at or after.
    pub created_from: Option<OffsetDateTime>,
    /// Created before.
    pub created_before: Option<OffsetDateTime>,
    /// Key accounts only (`true`) or others only (`false`).
    pub key_account: Option<bool>,
    /// Result order.
    pub order: TicketOrder,
    /// Page size, 1-500.
    pub page_size: u32,
}
