//! Storage of tickets. [`TicketStore`] is what the API needs from storage; [`pg`] keeps it in
//! PostgreSQL, with the append-only event log that is both history and transactional outbox.

pub mod feed;
pub mod pg;

use std::sync::Arc;

use crate::domain::ticket::{NewEvent, Ticket};

pub use pg::{MIGRATOR, PgStore};

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
