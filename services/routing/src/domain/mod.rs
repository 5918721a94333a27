//! The routing domain: pure rules, no I/O, no clock reads (callers pass `now`).
//!
//! Reading order:
//! - [`queue`]: tier targets, the rank key of a waiting ticket and its sorted-set encoding, the
//!   bounded-wait statement, [`queue::TicketRef`].
//! - [`steps`]: the ladder of routing steps (preferred agent, account manager, team,
//!   department).
//! - [`agent`]: agents, presence, capacity per channel, and eligibility with its reasons.
//! - [`offer`]: offers as reservations with a timeout; declines, expiries, NOT_RESPONDING.
//! - [`select`]: choosing the agent for a ticket and the ticket for an agent; a dispatch round
//!   over a [`select::Snapshot`].
//! - [`explain`]: ExplainTicket and ExplainAgent, built from a dispatch round.
//! - [`wait`]: EstimateWait, the wait of a new ticket.
//! - [`config`]: all of the above's configuration, with `problems()`.

pub mod agent;
pub mod config;
pub mod explain;
pub mod offer;
pub mod queue;
pub mod select;
pub mod steps;
pub mod wait;
