//! Storage of tickets. [`TicketStore`] is what the service needs from storage; [`pg`] keeps it
//! in PostgreSQL (the system of record), [`sqlite`] in one SQLite file (the single-process dev
//! mode). Both keep the append-only event log that is history and transactional outbox at once,
//! and `tests/store.rs` holds both to the same behaviour.

mod common;
pub mod feed;
pub mod pg;
pub mod sqlite;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tierline_types::Tier;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::sla::SlaStatus;
use crate::domain::state::TicketState;

use crate::domain::ticket::{
    Actor, Comment, Link, LinkKind, NewEvent, RecordedEvent, Ticket, TicketId, TicketNumber,
    Visibility,
};
use crate::error::{Error, Result};
use feed::EventFeed;

pub use pg::{MIGRATOR, PUBLISH_LOCK, PgStore};
pub use sqlite::{SQLITE_MIGRATOR, SqliteStore};

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

/// Link rows a pair mutation writes along with the two tickets.
#[derive(Debug, Default)]
pub struct PairWrites {
    /// Links to add: (kind from the first to the second, first, second); the inverse is added too.
    pub links: Vec<(LinkKind, TicketId, TicketId)>,
    /// Pairs to unlink, both ways.
    pub unlinks: Vec<(TicketId, TicketId)>,
}

/// The tickets a stretch of the event log touched, as they are now.
#[derive(Debug, Clone)]
pub struct TouchedTickets {
    /// Each ticket once, in the order of its first event in the stretch, with that event's
    /// sequence.
    pub tickets: Vec<(i64, Ticket)>,
    /// How many events the stretch holds.
    pub events: usize,
    /// The sequence of its last event; the starting cursor if it is empty.
    pub last_sequence: i64,
}

/// A finished SLA target, recorded once per ticket and target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaOutcome {
    /// `first_response` or `resolution`.
    pub target: &'static str,
    /// `met` or `breached`.
    pub outcome: &'static str,
    /// When it was due.
    pub due_at: OffsetDateTime,
    /// When it was achieved, if it was.
    pub achieved_at: Option<OffsetDateTime>,
}

/// Cursor of comment lists: (creation time, id) of the last comment.
pub type CommentCursor = (OffsetDateTime, Uuid);

/// A relay's cursor, held for one pass: while one holder has it, other claims of the same relay
/// get `None`, so one replica delivers at a time. Dropped without [`RelayCursor::commit`], it is
/// released unchanged.
pub trait RelayCursor: Send {
    /// The sequence of the last event the relay delivered.
    fn cursor(&self) -> i64;

    /// Moves the cursor to `through` (never backwards) and releases it.
    fn commit(self, through: i64) -> impl Future<Output = Result<()>> + Send;
}

/// Everything the ticket service needs from storage. Each method is one transaction; every
/// change of a ticket appends its events to the log in the same transaction and wakes the
/// [`EventFeed`] once committed.
pub trait TicketStore: Clone + Send + Sync + 'static {
    /// A claimed relay cursor.
    type Claim: RelayCursor;

    /// Wakes readers of the event log (WatchTicketEvents streams, relays) after commits.
    fn feed(&self) -> &Arc<EventFeed>;

    /// Stores a new ticket and its CREATED event (and, for a follow-up, the link to the ticket
    /// it follows). The same idempotency key with the same fingerprint returns the stored ticket;
    /// with another fingerprint it is refused.
    fn create(
        &self,
        ticket: Ticket,
        fingerprint: &[u8],
        follow_up_of: Option<TicketId>,
        actor: Actor,
    ) -> impl Future<Output = Result<Created>> + Send;

    /// A ticket by id.
    fn get(&self, id: TicketId) -> impl Future<Output = Result<Ticket>> + Send;

    /// Several tickets by id, in one read; unknown ids are left out.
    fn get_many(
        &self,
        ids: &[TicketId],
    ) -> impl Future<Output = Result<HashMap<TicketId, Ticket>>> + Send;

    /// A ticket by its number.
    fn get_by_number(&self, number: &TicketNumber) -> impl Future<Output = Result<Ticket>> + Send;

    /// The links of a ticket, oldest first, with the other tickets' numbers.
    fn links(&self, id: TicketId) -> impl Future<Output = Result<Vec<Link>>> + Send;

    /// The links of many tickets in one query.
    fn links_of_many(
        &self,
        ids: &[TicketId],
    ) -> impl Future<Output = Result<HashMap<TicketId, Vec<Link>>>> + Send;

    /// Changes a ticket under its lock: `change` gets the loaded ticket and decides the events;
    /// no events means nothing changed and nothing is written.
    fn mutate<T, F>(
        &self,
        id: TicketId,
        expected_version: Option<i64>,
        now: OffsetDateTime,
        change: F,
    ) -> impl Future<Output = Result<(Ticket, T)>> + Send
    where
        T: Send,
        F: FnOnce(&mut Ticket) -> Result<Mutation<T>> + Send;

    /// [`TicketStore::mutate`] of a ticket the caller holds as it was just written (`known`),
    /// without reading it again: `None`, and nothing written, if the stored ticket is no longer
    /// at `known`'s version. By default the locking path with that version expected;
    /// PostgreSQL writes the change and its events in one statement instead of five round
    /// trips (the intake's NEW to QUEUED, right after the ticket was created).
    fn mutate_known<T, F>(
        &self,
        known: Ticket,
        now: OffsetDateTime,
        change: F,
    ) -> impl Future<Output = Result<Option<(Ticket, T)>>> + Send
    where
        T: Send,
        F: FnOnce(&mut Ticket) -> Result<Mutation<T>> + Send,
    {
        async move {
            match self
                .mutate(known.id, Some(known.version), now, change)
                .await
            {
                Ok(done) => Ok(Some(done)),
                Err(Error::StaleVersion { .. }) => Ok(None),
                Err(other) => Err(other),
            }
        }
    }

    /// A page of tickets matching `filter`, in its order, after the (created_at, id) cursor; up
    /// to one more than the page size, which tells whether another page follows.
    fn list(
        &self,
        filter: &TicketFilter,
        after: Option<(OffsetDateTime, Uuid)>,
    ) -> impl Future<Output = Result<Vec<Ticket>>> + Send;

    /// Changes two tickets under both locks (merges and links).
    fn mutate_pair<T, F>(
        &self,
        first: TicketId,
        second: TicketId,
        now: OffsetDateTime,
        change: F,
    ) -> impl Future<Output = Result<(Ticket, Ticket, T)>> + Send
    where
        T: Send,
        F: FnOnce(
                &mut Ticket,
                &mut Ticket,
                &mut PairWrites,
            ) -> Result<(Vec<NewEvent>, Vec<NewEvent>, T)>
            + Send;

    /// The existing link from `a` to `b`, if any.
    fn link_between(
        &self,
        a: TicketId,
        b: TicketId,
    ) -> impl Future<Output = Result<Option<LinkKind>>> + Send;

    /// Sets when the timer worker looks at a ticket next, unless the ticket changed meanwhile.
    fn reschedule_timer(
        &self,
        id: TicketId,
        version: i64,
        at: Option<OffsetDateTime>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Tickets whose timer is due by `now`, soonest first.
    fn timers_due(
        &self,
        now: OffsetDateTime,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<TicketId>>> + Send;

    /// Tickets taken while the customer service was down, oldest first.
    fn pending_customers(&self, limit: i64) -> impl Future<Output = Result<Vec<TicketId>>> + Send;

    /// Records each outcome unless that target's outcome is recorded already.
    fn record_sla_outcomes(
        &self,
        id: TicketId,
        outcomes: &[SlaOutcome],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Makes the events committed so far readable by the log's readers ([`Self::events_after`],
    /// [`Self::tickets_touched_after`], [`Self::latest_sequence`]) and returns how many it made
    /// readable. PostgreSQL writers commit concurrently, so their events are given log
    /// positions after commit, one pass at a time; its store's sequencer task does this after
    /// every commit (see `PgStore::spawn_log_tasks`) and wakes the readers. SQLite commits one
    /// writer at a time in sequence order: nothing to do.
    fn publish(&self) -> impl Future<Output = Result<u64>> + Send {
        async { Ok(0) }
    }

    /// Published events after `after`, oldest first, with their snapshots while retained. Every
    /// read sees a gap-free prefix of the log, so a reader that pages by sequence misses none.
    fn events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(RecordedEvent, Option<Vec<u8>>)>>> + Send;

    /// The lowest sequence a stream may still start from (its snapshot is retained), if any.
    fn oldest_retained_sequence(&self) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// Clears the snapshots of up to `limit` events older than `before` (history stays);
    /// returns how many.
    fn prune_snapshots(
        &self,
        before: OffsetDateTime,
        limit: i64,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// The highest sequence written so far (0 if none).
    fn latest_sequence(&self) -> impl Future<Output = Result<i64>> + Send;

    /// A ticket's history, oldest first, after `after`.
    fn history(
        &self,
        id: TicketId,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send;

    /// Adds a comment and applies what it does to the ticket, in one transaction. A repeated
    /// idempotency key with the same fingerprint returns the first comment.
    fn add_comment<F>(
        &self,
        comment: Comment,
        idempotency: Option<(String, Vec<u8>)>,
        now: OffsetDateTime,
        change: F,
    ) -> impl Future<Output = Result<Comment>> + Send
    where
        F: FnOnce(&mut Ticket, &mut Comment) -> Result<Vec<NewEvent>> + Send;

    /// A ticket's comments, oldest first, including those of tickets merged into it.
    fn comments(
        &self,
        id: TicketId,
        visibility: Option<Visibility>,
        after: Option<CommentCursor>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Comment>>> + Send;

    /// Claims the cursor of the relay `name` for one pass; `None` if another holder has it.
    /// The first claim of a name starts at 0 (the start of the log).
    fn claim_relay(&self, name: &str) -> impl Future<Output = Result<Option<Self::Claim>>> + Send;

    /// The tickets touched by up to `limit` events after `after`, each once and as it is now.
    /// The events are those [`TicketStore::events_after`] would return.
    fn tickets_touched_after(
        &self,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = Result<TouchedTickets>> + Send;
}

/// The outcomes of a ticket's finished SLA targets, as its clock says.
pub fn sla_outcomes(t: &Ticket) -> Vec<SlaOutcome> {
    let clock = &t.sla;
    let mut rows = Vec::new();
    if clock.first_response_breached {
        rows.push(SlaOutcome {
            target: "first_response",
            outcome: "breached",
            due_at: clock.first_response_due,
            achieved_at: clock.first_response_at,
        });
    } else if let Some(at) = clock.first_response_at {
        rows.push(SlaOutcome {
            target: "first_response",
            outcome: "met",
            due_at: clock.first_response_due,
            achieved_at: Some(at),
        });
    }
    if clock.resolution_breached {
        rows.push(SlaOutcome {
            target: "resolution",
            outcome: "breached",
            due_at: clock.resolution_due,
            achieved_at: clock.resolved_at,
        });
    } else if let Some(at) = clock.resolved_at {
        rows.push(SlaOutcome {
            target: "resolution",
            outcome: "met",
            due_at: clock.resolution_due,
            achieved_at: Some(at),
        });
    }
    rows
}
