//! The ticket domain: pure types and rules, no I/O.
//!
//! - [`state`]: the ticket state machine: every legal move and why the others are refused.
//! - [`sla`]: the SLA clock: business-hours calendars, pauses, due times and status.
//! - [`priority`]: the priority rule.
//! - [`catalog`]: categories (which department owns what), root causes, skills and tags.
//! - [`ticket`]: the ticket aggregate: intake, and what each move does to a ticket.

pub mod catalog;
pub mod patch;
pub mod priority;
pub mod sla;
pub mod state;
pub mod ticket;
