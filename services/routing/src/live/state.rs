//! The live state's operations as a trait, [`LiveState`], and the types they take and give.
//!
//! Two implementations: [`super::on_redis::RedisLive`] (production: Lua scripts on Redis, shared
//! by every router process) and an in-process one for a single-process dev mode. Both must
//! behave the same; `tests/live.rs` holds the behaviour every implementation must show.
//!
//! Department keys (Redis): a ticket's department (and tier) decide which queue and statistics
//! keys a script touches, and only Redis knows them for sure. A call names the keys it believes
//! in; if the script finds the ticket elsewhere (a concurrent transfer) it changes nothing and
//! answers where, and the call is re-sent with those keys.

use futures::stream::BoxStream;
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;

use super::LiveError;
use super::model::{LiveAgent, LiveDeptStats, LiveOffer, LiveRecord, LiveTicket, TicketData};
use crate::domain::queue::RankKey;
use crate::domain::steps::StepKind;

/// How long a removed ticket's version is kept, so late older calls are ignored (the routing
/// contract promises at least 24 hours).
pub const TOMBSTONE_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// How long an ended offer can still be read (AcceptOffer answers NOT_FOUND after an hour).
pub const ENDED_OFFER_TTL_MS: i64 = 60 * 60 * 1000;

/// The largest ticket version the scripts compare exactly (2^53).
pub const MAX_VERSION: i64 = 1 << 53;

/// A ticket's routing state (proto `TicketRoutingState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingState {
    /// In its queue, perhaps with a pending offer.
    Waiting,
    /// Assigned, occupying the agent's capacity.
    Active,
    /// Assigned, not occupying capacity.
    Parked,
    /// Gone from routing.
    Done,
}

impl RoutingState {
    /// The name the scripts use.
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingState::Waiting => "waiting",
            RoutingState::Active => "active",
            RoutingState::Parked => "parked",
            RoutingState::Done => "done",
        }
    }
}

/// One SyncTicket: the routing state of a ticket as of a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketSync {
    /// The ticket id.
    pub id: String,
    /// The version the state comes from.
    pub version: i64,
    /// The routing state.
    pub state: RoutingState,
    /// The department (empty for DONE).
    pub department: String,
    /// The channel.
    pub channel: Channel,
    /// The tier.
    pub tier: Tier,
    /// Everything else.
    pub data: TicketData,
    /// For ACTIVE and PARKED, the assigned agent.
    pub agent_id: Option<String>,
    /// For ACTIVE and PARKED, the reservation.
    pub reservation_id: Option<String>,
}

impl TicketSync {
    /// Checks what every implementation requires of a sync and derives what each stores: the
    /// sorted-set score and member of its rank, and its data as JSON.
    pub fn prepare(&self) -> Result<PreparedSync, LiveError> {
        if self.id.is_empty() {
            return Err(LiveError::InvalidArgument("ticket id is empty".into()));
        }
        if !(1..=MAX_VERSION).contains(&self.version) {
            return Err(LiveError::InvalidArgument(format!(
                "ticket version {} is outside 1..=2^53",
                self.version
            )));
        }
        if self.state != RoutingState::Done && self.department.is_empty() {
            return Err(LiveError::InvalidArgument("department is empty".into()));
        }
        let rank = RankKey::new(
            self.data.escalation_level,
            self.data.pickup_due,
            self.data.enqueue_time,
            &self.id,
        );
        let data = serde_json::to_string(&self.data)
            .map_err(|e| LiveError::InvalidArgument(format!("ticket fields: {e}")))?;
        Ok(PreparedSync {
            // Exact: a rank key's score is an integer below 2^53 in magnitude.
            score: rank.score() as i64,
            member: rank.member(),
            data,
        })
    }
}

/// What [`TicketSync::prepare`] derives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedSync {
    /// The queue score.
    pub score: i64,
    /// The queue member.
    pub member: String,
    /// [`TicketData`] as JSON.
    pub data: String,
}

/// What a SyncTicket did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// False if ignored: Redis held this or a newer version.
    pub applied: bool,
    /// The version Redis holds now.
    pub version: i64,
    /// The 1-based position in its queue if it waits without an offer.
    pub position: Option<u64>,
    /// A pending offer the change withdrew.
    pub withdrawn_offer: Option<String>,
}

/// An offer a dispatch round decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOffer {
    /// The ticket.
    pub ticket_id: String,
    /// The ticket version the round saw.
    pub ticket_version: String,
    /// The agent.
    pub agent_id: String,
    /// A fresh reservation id.
    pub reservation_id: String,
    /// The step that reached the agent.
    pub step: StepKind,
}

/// How the first step of an accept went.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Held for this accept.
    Claimed(LiveOffer),
    /// Accepted before (a repeated AcceptOffer).
    AlreadyAccepted(LiveOffer),
    /// No such offer (or forgotten after an hour).
    Missing,
    /// Another agent's offer.
    NotYours,
    /// Not pending: its state (`expired`, `declined`, `cancelled`).
    NotPending(String),
}

/// How ending an offer went.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Ended now.
    Ended(LiveOffer),
    /// Already ended this way (a repeated decline).
    Unchanged(LiveOffer),
    /// No such offer.
    Missing,
    /// Another agent's offer.
    NotYours,
    /// Not in a state it may end from: its state.
    NotPending(String),
}

/// How an offer ends without acceptance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The agent declined.
    Declined,
    /// Not answered in time.
    Expired,
    /// Withdrawn by the router, for a reason (proto `OfferCancelReason`, snake case).
    Cancelled(&'static str),
}

/// How a presence change went.
#[derive(Debug, Clone, PartialEq)]
pub enum PresenceSet {
    /// Set; with the pending offer the caller must now withdraw.
    Set(Box<LiveAgent>, Option<String>),
    /// Unknown agent.
    Missing,
    /// AVAILABLE without a live session.
    NoSession,
    /// AVAILABLE for a disabled agent.
    Disabled,
}

/// Waiting tickets of one tier in one department.
/// How many ready agents a dispatch round reads per index (its department, each team), and
/// from where: the PEEK script's rule (see `scripts::PEEK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentRead {
    /// Never more than this many per index.
    pub most: usize,
    /// This many per ticket found (0: `most` whatever the tickets).
    pub per_ticket: usize,
    /// At least this many (when `per_ticket` is not 0).
    pub least: usize,
    /// Where the window starts, modulo the index's size, when it holds more than are read.
    pub rotation: u32,
}

impl AgentRead {
    /// Up to `most` per index, from its start.
    pub fn up_to(most: usize) -> AgentRead {
        AgentRead {
            most,
            per_ticket: 0,
            least: most,
            rotation: 0,
        }
    }

    /// How many to read from an index of `count` ready agents, for `tickets` tickets found,
    /// and from which position.
    pub fn window(&self, count: usize, tickets: usize) -> (usize, usize) {
        let most = self.most.max(1);
        let want = if self.per_ticket == 0 {
            most
        } else {
            most.min(
                self.least
                    .max(1)
                    .max(self.per_ticket.saturating_mul(tickets)),
            )
        };
        let from = if count > want {
            self.rotation as usize % count
        } else {
            0
        };
        (want, from)
    }
}

/// What [`LiveState::peek_round`] read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peeked {
    /// The queue's head, best first.
    pub tickets: Vec<(String, LiveTicket)>,
    /// The agents read, ready or named by a ticket.
    pub agents: Vec<(String, LiveAgent)>,
    /// Whether an index had more ready agents than were read.
    pub partial: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierWaiting {
    /// Waiting, pending offers included.
    pub waiting: u64,
    /// With a pending offer.
    pub offered: u64,
    /// The earliest enqueue time (Unix ms), if any wait.
    pub oldest_enqueue_ms: Option<i64>,
    /// Due within the at-risk window.
    pub at_risk: u64,
    /// Past due.
    pub past_due: u64,
}

/// One department's waiting tickets per tier, and its statistics entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeptWaiting {
    /// Per tier, A, B, C.
    pub tiers: [TierWaiting; 3],
    /// Counters.
    pub stats: LiveDeptStats,
}

/// The live state's operations. Every method is one atomic step (one script on Redis, one
/// critical section in process); `now` always comes from the caller, so tests control time.
#[tonic::async_trait]
pub trait LiveState: Send + Sync + std::fmt::Debug {
    /// SyncTicket (see the proto): versioned, idempotent and order-tolerant.
    async fn sync(&self, s: &TicketSync, now: OffsetDateTime) -> Result<Synced, LiveError>;

    /// Several SyncTickets at once, for a rebuild's page: each is applied as [`Self::sync`]
    /// applies it (its own atomic step, in order) and gets its own result, so one bad ticket
    /// does not fail the others. On Redis the page costs two round trips (one read of where
    /// the tickets are, one pipeline of scripts), plus one per round of re-sends for tickets
    /// that a concurrent call moved meanwhile (those are applied after the rest of the page).
    /// The read is what keeps a ticket synced twice in one page in page order: without it, a
    /// sync naming stale keys would be re-sent after a later one of the same ticket.
    /// Waiting tickets' department notices go out once per department for the page, after
    /// it, not once per ticket. The outer error is Redis being unreachable.
    async fn sync_many(
        &self,
        syncs: &[TicketSync],
        now: OffsetDateTime,
    ) -> Result<Vec<Result<Synced, LiveError>>, LiveError>;

    /// What a dispatch round of `department` needs: the best `tickets` waiting tickets without
    /// an offer; ready agents serving it and each of `teams`, as many as `read` says; and the
    /// agents the tickets name. Nothing at all while no agent is ready anywhere (no offer
    /// could be made), so a deep queue with every agent busy is not read on every change.
    async fn peek_round(
        &self,
        department: &str,
        tickets: usize,
        read: AgentRead,
        teams: &[&str],
    ) -> Result<Peeked, LiveError>;

    /// Makes the offers of a dispatch round in `department`; returns the reservations made
    /// (offers whose ticket or agent changed since the round's read are skipped).
    async fn reserve(
        &self,
        department: &str,
        offers: &[NewOffer],
        now: OffsetDateTime,
        expire: OffsetDateTime,
    ) -> Result<Vec<String>, LiveError>;

    /// Holds a pending offer for an accept until `hold_until`.
    async fn claim(
        &self,
        reservation_id: &str,
        agent_id: &str,
        now: OffsetDateTime,
        hold_until: OffsetDateTime,
    ) -> Result<Claim, LiveError>;

    /// Gives back a held offer (the ticket service could not be reached).
    async fn unclaim(&self, reservation_id: &str) -> Result<(), LiveError>;

    /// Completes an accept the ticket service recorded at `ticket_version`; returns when the
    /// assignment was made (Unix ms).
    async fn confirm(
        &self,
        reservation_id: &str,
        offer: &LiveOffer,
        ticket_version: i64,
        now: OffsetDateTime,
    ) -> Result<i64, LiveError>;

    /// Ends an offer without acceptance. `by_agent` is the declining agent (checked); `from`
    /// the states it may end from.
    async fn end_offer(
        &self,
        reservation_id: &str,
        outcome: Outcome,
        by_agent: Option<&str>,
        from: &[&str],
        away_after_missed: u32,
        now: OffsetDateTime,
    ) -> Result<Ended, LiveError>;

    /// Mirrors an agent record; returns the pending offer to withdraw if it became disabled.
    async fn put_record(
        &self,
        agent_id: &str,
        record: &LiveRecord,
        now: OffsetDateTime,
    ) -> Result<Option<String>, LiveError>;

    /// Opens or resumes a session; returns (resumed, session id, offer to withdraw).
    #[allow(clippy::too_many_arguments)]
    async fn open_session(
        &self,
        agent_id: &str,
        record: &LiveRecord,
        asked: Option<&str>,
        new_session: &str,
        initial: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<(bool, String, Option<String>), LiveError>;

    /// Renews a session (connected) or starts its resume grace (disconnected). False if the
    /// session is no longer the agent's current one.
    async fn touch_session(
        &self,
        agent_id: &str,
        session: &str,
        connected: bool,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<bool, LiveError>;

    /// Renews the leases of several connected sessions, given as (agent, session), to
    /// `lease_until`; returns the agents whose session was not renewed because it is no longer
    /// current or no longer connected (replaced, signed out, disconnected, or the live state
    /// was lost). Never marks a session connected: a renewal read before a disconnect and
    /// applied after it must not bring a gone desktop back.
    async fn renew_sessions(
        &self,
        sessions: &[(String, String)],
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<Vec<String>, LiveError>;

    /// Sets presence (`available`, `away`, `offline`) with an away reason and note.
    async fn set_presence(
        &self,
        agent_id: &str,
        presence: &str,
        reason: &str,
        note: &str,
        now: OffsetDateTime,
    ) -> Result<PresenceSet, LiveError>;

    /// Signs out agents whose session lease ran out; returns their pending offers to withdraw.
    async fn lapse_sessions(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<String>, LiveError>;

    /// Offers whose expiry (or accept hold) has passed, at most `limit`.
    async fn due_offers(&self, now: OffsetDateTime, limit: usize)
    -> Result<Vec<String>, LiveError>;

    /// Drops tombstones older than a day and offers ended more than an hour ago.
    async fn purge(&self, now: OffsetDateTime, limit: usize) -> Result<u64, LiveError>;

    /// A ticket's entry.
    async fn ticket(&self, ticket_id: &str) -> Result<Option<LiveTicket>, LiveError>;

    /// An agent's entry.
    async fn agent(&self, agent_id: &str) -> Result<Option<LiveAgent>, LiveError>;

    /// An offer's entry.
    async fn offer(&self, reservation_id: &str) -> Result<Option<LiveOffer>, LiveError>;

    /// Several agents' entries at once; unknown ones are left out.
    async fn agents(&self, ids: &[String]) -> Result<Vec<(String, LiveAgent)>, LiveError>;

    /// Several offers at once; unknown ones are left out.
    async fn offers(&self, ids: &[String]) -> Result<Vec<(String, LiveOffer)>, LiveError>;

    /// Several tickets at once; unknown ones are left out.
    async fn tickets(&self, ids: &[String]) -> Result<Vec<(String, LiveTicket)>, LiveError>;

    /// The agents listed under `department` (or `\u{1}<team>`), up to `limit`, by id.
    async fn staff(&self, department: &str, limit: usize) -> Result<Vec<String>, LiveError>;

    /// The agents listed as ready under `department` (or `\u{1}<team>`), up to `limit`, by id:
    /// the only ones who could be offered a ticket now (and a superset of them: a lease may
    /// have run out since).
    async fn ready_agents(&self, department: &str, limit: usize) -> Result<Vec<String>, LiveError>;

    /// How many tickets of `department`'s queue (waiting, without an offer) have a rank score
    /// at or below `score` ([`RankKey::score`]): O(log n) however deep the queue.
    async fn queued_before(&self, department: &str, score: i64) -> Result<u64, LiveError>;

    /// Departments that had waiting tickets, by name.
    async fn departments(&self) -> Result<Vec<String>, LiveError>;

    /// The first `n` waiting tickets of `department` without an offer, best first, with the
    /// queue's length.
    async fn queue_head(&self, department: &str, n: usize)
    -> Result<(Vec<String>, u64), LiveError>;

    /// The 1-based rank of a queued ticket (no pending offer) in its queue.
    async fn rank(&self, ticket: &LiveTicket) -> Result<Option<u64>, LiveError>;

    /// The statistics entry of `department` (offer counters, pending offers); empty if none.
    async fn department_stats(&self, department: &str) -> Result<LiveDeptStats, LiveError>;

    /// Waiting tickets per tier and statistics of each of `departments`.
    async fn waiting(
        &self,
        departments: &[String],
        now: OffsetDateTime,
        at_risk_window_ms: i64,
    ) -> Result<Vec<DeptWaiting>, LiveError>;

    /// Whether the live state is complete (not lost since it was last built).
    async fn is_built(&self) -> Result<bool, LiveError>;

    /// Marks the live state complete.
    async fn mark_built(&self, now: OffsetDateTime) -> Result<(), LiveError>;

    /// Takes the rebuild lock for `ttl_ms` as `owner`; false if another router holds it.
    async fn lock_rebuild(&self, owner: &str, ttl_ms: u64) -> Result<bool, LiveError>;

    /// Releases the rebuild lock if `owner` still holds it.
    async fn unlock_rebuild(&self, owner: &str) -> Result<(), LiveError>;

    /// Change notices from every router sharing this state (`d:<department>`, `a:<agent>`),
    /// as every script publishes them. The stream ends when the connection is lost; call again.
    async fn notices(&self) -> Result<BoxStream<'static, String>, LiveError>;
}
