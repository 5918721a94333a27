//! [`Live`]: the operations on the router's live state, each one script call (plus, where a
//! script must name a department's keys it cannot know, one read before it).
//!
//! Department keys: a ticket's department (and tier) decide which queue and statistics keys a
//! script touches, and only Redis knows them for sure. A call names the keys it believes in;
//! if the script finds the ticket elsewhere (a concurrent transfer) it changes nothing and
//! answers where, and the call is re-sent with those keys.

use std::collections::BTreeMap;

use redis::aio::ConnectionManager;
use serde::Serialize;
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;

use super::LiveError;
use super::keys::Keys;
use super::model::{
    LiveAgent, LiveDeptStats, LiveOffer, LiveRecord, LiveTicket, TicketData, time_to_ms,
};
use super::scripts::{self, APPLIED, IGNORED, MISSING, MOVED, NOT_PENDING, NOT_YOURS};
use crate::domain::queue::RankKey;
use crate::domain::steps::StepKind;

/// How long a removed ticket's version is kept, so late older calls are ignored (the routing
/// contract promises at least 24 hours).
pub const TOMBSTONE_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// How long an ended offer can still be read (AcceptOffer answers NOT_FOUND after an hour).
pub const ENDED_OFFER_TTL_MS: i64 = 60 * 60 * 1000;

/// The largest ticket version the scripts compare exactly (2^53).
pub const MAX_VERSION: i64 = 1 << 53;

/// How many times a call is re-sent after finding the ticket under other keys than named.
const MOVED_RETRIES: usize = 4;

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
    fn as_str(self) -> &'static str {
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

/// The routing record fields the live state mirrors, as the scripts read them.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct RecordJson<'a> {
    name: &'a str,
    depts: BTreeMap<&'a str, bool>,
    // Lua reads JSON null as a userdata, not nil: leave the field out instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    team: Option<&'a str>,
    skills: BTreeMap<&'a str, bool>,
    cap: BTreeMap<&'a str, u32>,
    dis: bool,
}

/// The router's live state in Redis. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct Live {
    conn: ConnectionManager,
    keys: Keys,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("keys", &self.keys).finish()
    }
}

const TIERS: [Tier; 3] = [Tier::A, Tier::B, Tier::C];

impl Live {
    /// The live state under `keys`, over `conn`.
    pub fn new(conn: ConnectionManager, keys: Keys) -> Live {
        Live { conn, keys }
    }

    /// The key names in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// SyncTicket (see the proto): versioned, idempotent and order-tolerant.
    pub async fn sync(&self, s: &TicketSync, now: OffsetDateTime) -> Result<Synced, LiveError> {
        if s.id.is_empty() {
            return Err(LiveError::InvalidArgument("ticket id is empty".into()));
        }
        if !(1..=MAX_VERSION).contains(&s.version) {
            return Err(LiveError::InvalidArgument(format!(
                "ticket version {} is outside 1..=2^53",
                s.version
            )));
        }
        if s.state != RoutingState::Done && s.department.is_empty() {
            return Err(LiveError::InvalidArgument("department is empty".into()));
        }
        let rank = RankKey::new(
            s.data.escalation_level,
            s.data.pickup_due,
            s.data.enqueue_time,
            &s.id,
        );
        // Exact: a rank key's score is an integer below 2^53 in magnitude.
        let score = rank.score() as i64;
        let data = serde_json::to_string(&s.data)
            .map_err(|e| LiveError::InvalidArgument(format!("ticket fields: {e}")))?;
        let tier = s.tier.as_str();
        // The guess: where the ticket is now, else where it goes.
        let (mut dept, mut cur_tier) = match self.ticket(&s.id).await? {
            Some(t) if t.st == "queued" || t.st == "offered" => (
                t.dept.unwrap_or_default(),
                t.tier.unwrap_or_else(|| tier.to_owned()),
            ),
            _ => (s.department.clone(), tier.to_owned()),
        };
        let k = &self.keys;
        for _ in 0..=MOVED_RETRIES {
            let (status, held, rank, withdrawn, moved_tier): (
                i64,
                String,
                Option<i64>,
                Option<String>,
                Option<String>,
            ) = scripts::SYNC
                .key(k.tickets())
                .key(k.agents())
                .key(k.offers())
                .key(k.offer_expiry())
                .key(k.offer_ended())
                .key(k.ready())
                .key(k.staff())
                .key(k.gone())
                .key(k.departments())
                .key(k.queue(&s.department))
                .key(k.queue(&dept))
                .key(k.waiting(&s.department, tier))
                .key(k.due(&s.department, tier))
                .key(k.waiting(&dept, &cur_tier))
                .key(k.due(&dept, &cur_tier))
                .key(k.department_stats())
                .arg(time_to_ms(now))
                .arg(&s.id)
                .arg(s.version)
                .arg(s.state.as_str())
                .arg(&s.department)
                .arg(tier)
                .arg(s.channel.as_str())
                .arg(score)
                .arg(rank.member())
                .arg(&data)
                .arg(time_to_ms(s.data.enqueue_time))
                .arg(s.agent_id.as_deref().unwrap_or(""))
                .arg(s.reservation_id.as_deref().unwrap_or(""))
                .arg(&dept)
                .arg(k.events())
                .arg(&cur_tier)
                .arg(time_to_ms(s.data.pickup_due))
                .invoke_async(&mut self.conn())
                .await?;
            match status {
                MOVED => {
                    dept = held;
                    cur_tier = moved_tier.unwrap_or_else(|| tier.to_owned());
                }
                APPLIED | IGNORED => {
                    return Ok(Synced {
                        applied: status == APPLIED,
                        version: parse_version(&held)?,
                        position: rank.map(one_based).transpose()?,
                        withdrawn_offer: withdrawn,
                    });
                }
                other => return Err(unexpected_status(other)),
            }
        }
        Err(LiveError::Contended(format!(
            "ticket {:?} kept moving between queues during the call",
            s.id
        )))
    }

    /// What a dispatch round of `department` needs: the best `tickets` waiting tickets without
    /// an offer; up to `agents` ready agents serving it and as many of each of `teams`; and
    /// the agents the tickets name. One round trip.
    #[allow(clippy::type_complexity)]
    pub async fn peek(
        &self,
        department: &str,
        tickets: usize,
        agents: usize,
        teams: &[&str],
    ) -> Result<(Vec<(String, LiveTicket)>, Vec<(String, LiveAgent)>), LiveError> {
        let k = &self.keys;
        let mut call = scripts::PEEK.prepare_invoke();
        call.key(k.queue(department))
            .key(k.tickets())
            .key(k.ready())
            .key(k.agents())
            .arg(department)
            .arg(tickets.max(1))
            .arg(agents.max(1));
        for team in teams {
            call.arg(*team);
        }
        let (t, a): (Vec<String>, Vec<String>) = call.invoke_async(&mut self.conn()).await?;
        Ok((decode_pairs(t)?, decode_pairs(a)?))
    }

    /// Makes the offers of a dispatch round in `department`; returns the reservations made
    /// (offers whose ticket or agent changed since the round's read are skipped).
    pub async fn reserve(
        &self,
        department: &str,
        offers: &[NewOffer],
        now: OffsetDateTime,
        expire: OffsetDateTime,
    ) -> Result<Vec<String>, LiveError> {
        if offers.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        let mut call = scripts::RESERVE.prepare_invoke();
        call.key(k.tickets())
            .key(k.agents())
            .key(k.offers())
            .key(k.offer_expiry())
            .key(k.ready())
            .key(k.staff())
            .key(k.queue(department))
            .key(k.department_stats())
            .arg(time_to_ms(now))
            .arg(time_to_ms(expire))
            .arg(department)
            .arg(k.events());
        for o in offers {
            call.arg(&o.ticket_id)
                .arg(&o.ticket_version)
                .arg(&o.agent_id)
                .arg(&o.reservation_id)
                .arg(o.step.as_str());
        }
        Ok(call.invoke_async(&mut self.conn()).await?)
    }

    /// Holds a pending offer for an accept until `hold_until`.
    pub async fn claim(
        &self,
        reservation_id: &str,
        agent_id: &str,
        now: OffsetDateTime,
        hold_until: OffsetDateTime,
    ) -> Result<Claim, LiveError> {
        let k = &self.keys;
        let (status, body): (i64, Option<String>) = scripts::CLAIM
            .key(k.offers())
            .key(k.offer_expiry())
            .arg(reservation_id)
            .arg(agent_id)
            .arg(time_to_ms(now))
            .arg(time_to_ms(hold_until))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match status {
            APPLIED => Claim::Claimed(decode(&body.unwrap_or_default())?),
            IGNORED => Claim::AlreadyAccepted(decode(&body.unwrap_or_default())?),
            MISSING => Claim::Missing,
            NOT_YOURS => Claim::NotYours,
            NOT_PENDING => Claim::NotPending(body.unwrap_or_default()),
            other => return Err(unexpected_status(other)),
        })
    }

    /// Gives back a held offer (the ticket service could not be reached).
    pub async fn unclaim(&self, reservation_id: &str) -> Result<(), LiveError> {
        let k = &self.keys;
        let _: i64 = scripts::UNCLAIM
            .key(k.offers())
            .key(k.offer_expiry())
            .arg(reservation_id)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Completes an accept the ticket service recorded at `ticket_version`; returns when the
    /// assignment was made (Unix ms).
    pub async fn confirm(
        &self,
        reservation_id: &str,
        offer: &LiveOffer,
        ticket_version: i64,
        now: OffsetDateTime,
    ) -> Result<i64, LiveError> {
        let k = &self.keys;
        let (status, at): (i64, Option<f64>) = scripts::CONFIRM
            .key(k.tickets())
            .key(k.agents())
            .key(k.offers())
            .key(k.offer_expiry())
            .key(k.offer_ended())
            .key(k.ready())
            .key(k.staff())
            .key(k.queue(&offer.dept))
            .key(k.waiting(&offer.dept, &offer.tier))
            .key(k.due(&offer.dept, &offer.tier))
            .key(k.department_stats())
            .arg(reservation_id)
            .arg(time_to_ms(now))
            .arg(ticket_version)
            .arg(k.events())
            .invoke_async(&mut self.conn())
            .await?;
        match status {
            APPLIED | IGNORED => Ok(at.map_or_else(|| time_to_ms(now), |ms| ms as i64)),
            MISSING => Err(LiveError::Corrupt(format!(
                "offer {reservation_id:?} vanished during its accept"
            ))),
            other => Err(unexpected_status(other)),
        }
    }

    /// Ends an offer without acceptance. `by_agent` is the declining agent (checked); `from`
    /// the states it may end from.
    pub async fn end_offer(
        &self,
        reservation_id: &str,
        outcome: Outcome,
        by_agent: Option<&str>,
        from: &[&str],
        away_after_missed: u32,
        now: OffsetDateTime,
    ) -> Result<Ended, LiveError> {
        let Some(offer) = self.offer(reservation_id).await? else {
            return Ok(Ended::Missing);
        };
        let (name, reason) = match outcome {
            Outcome::Declined => ("declined", ""),
            Outcome::Expired => ("expired", ""),
            Outcome::Cancelled(reason) => ("cancelled", reason),
        };
        let k = &self.keys;
        let (status, body): (i64, Option<String>) = scripts::END_OFFER
            .key(k.tickets())
            .key(k.agents())
            .key(k.offers())
            .key(k.offer_expiry())
            .key(k.offer_ended())
            .key(k.ready())
            .key(k.staff())
            .key(k.queue(&offer.dept))
            .key(k.department_stats())
            .arg(reservation_id)
            .arg(time_to_ms(now))
            .arg(name)
            .arg(reason)
            .arg(by_agent.unwrap_or(""))
            .arg(away_after_missed)
            .arg(k.events())
            .arg(from.join(","))
            .arg(&offer.dept)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match status {
            APPLIED => Ended::Ended(decode(&body.unwrap_or_default())?),
            IGNORED => Ended::Unchanged(decode(&body.unwrap_or_default())?),
            MISSING => Ended::Missing,
            NOT_YOURS => Ended::NotYours,
            NOT_PENDING => Ended::NotPending(body.unwrap_or_default()),
            // An offer never changes department; a mismatch means it was rewritten meanwhile.
            MOVED => Ended::NotPending("changed".into()),
            other => return Err(unexpected_status(other)),
        })
    }

    /// Mirrors an agent record; returns the pending offer to withdraw if it became disabled.
    pub async fn put_record(
        &self,
        agent_id: &str,
        record: &LiveRecord,
        now: OffsetDateTime,
    ) -> Result<Option<String>, LiveError> {
        let k = &self.keys;
        Ok(scripts::PUT_RECORD
            .key(k.agents())
            .key(k.ready())
            .key(k.staff())
            .arg(agent_id)
            .arg(record_json(record)?)
            .arg(time_to_ms(now))
            .arg(k.events())
            .invoke_async(&mut self.conn())
            .await?)
    }

    /// Opens or resumes a session; returns (resumed, session id, offer to withdraw).
    #[allow(clippy::too_many_arguments)]
    pub async fn open_session(
        &self,
        agent_id: &str,
        record: &LiveRecord,
        asked: Option<&str>,
        new_session: &str,
        initial: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<(bool, String, Option<String>), LiveError> {
        let k = &self.keys;
        let (resumed, session, withdraw): (i64, String, Option<String>) = scripts::OPEN_SESSION
            .key(k.agents())
            .key(k.ready())
            .key(k.staff())
            .key(k.leases())
            .arg(agent_id)
            .arg(record_json(record)?)
            .arg(asked.unwrap_or(""))
            .arg(new_session)
            .arg(time_to_ms(now))
            .arg(time_to_ms(lease_until))
            .arg(initial)
            .arg(k.events())
            .invoke_async(&mut self.conn())
            .await?;
        Ok((resumed == 1, session, withdraw))
    }

    /// Renews a session (connected) or starts its resume grace (disconnected). False if the
    /// session is no longer the agent's current one.
    pub async fn touch_session(
        &self,
        agent_id: &str,
        session: &str,
        connected: bool,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<bool, LiveError> {
        let k = &self.keys;
        let ok: i64 = scripts::TOUCH_SESSION
            .key(k.agents())
            .key(k.ready())
            .key(k.staff())
            .key(k.leases())
            .arg(agent_id)
            .arg(session)
            .arg(time_to_ms(now))
            .arg(time_to_ms(lease_until))
            .arg(if connected { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await?;
        Ok(ok == 1)
    }

    /// Sets presence (`available`, `away`, `offline`) with an away reason and note.
    pub async fn set_presence(
        &self,
        agent_id: &str,
        presence: &str,
        reason: &str,
        note: &str,
        now: OffsetDateTime,
    ) -> Result<PresenceSet, LiveError> {
        let k = &self.keys;
        let (status, body, withdraw): (i64, Option<String>, Option<String>) = scripts::SET_PRESENCE
            .key(k.agents())
            .key(k.ready())
            .key(k.staff())
            .key(k.leases())
            .arg(agent_id)
            .arg(presence)
            .arg(reason)
            .arg(note)
            .arg(time_to_ms(now))
            .arg(k.events())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match (status, body.as_deref()) {
            (APPLIED, Some(body)) => PresenceSet::Set(Box::new(decode(body)?), withdraw),
            (MISSING, _) => PresenceSet::Missing,
            (NOT_PENDING, Some("disabled")) => PresenceSet::Disabled,
            (NOT_PENDING, _) => PresenceSet::NoSession,
            (other, _) => return Err(unexpected_status(other)),
        })
    }

    /// Signs out agents whose session lease ran out; returns their pending offers to withdraw.
    pub async fn lapse_sessions(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<String>, LiveError> {
        let k = &self.keys;
        Ok(scripts::LAPSE_SESSIONS
            .key(k.agents())
            .key(k.ready())
            .key(k.staff())
            .key(k.leases())
            .arg(time_to_ms(now))
            .arg(limit.max(1))
            .arg(k.events())
            .invoke_async(&mut self.conn())
            .await?)
    }

    /// Offers whose expiry (or accept hold) has passed, at most `limit`.
    pub async fn due_offers(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<String>, LiveError> {
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.offer_expiry())
            .arg("-inf")
            .arg(time_to_ms(now))
            .arg("LIMIT")
            .arg(0)
            .arg(limit.max(1))
            .query_async(&mut self.conn())
            .await?)
    }

    /// Drops tombstones older than a day and offers ended more than an hour ago.
    pub async fn purge(&self, now: OffsetDateTime, limit: usize) -> Result<u64, LiveError> {
        let k = &self.keys;
        let now = time_to_ms(now);
        Ok(scripts::PURGE
            .key(k.tickets())
            .key(k.gone())
            .key(k.offers())
            .key(k.offer_ended())
            .arg(now - TOMBSTONE_TTL_MS)
            .arg(now - ENDED_OFFER_TTL_MS)
            .arg(limit.max(1))
            .invoke_async(&mut self.conn())
            .await?)
    }

    /// A ticket's entry.
    pub async fn ticket(&self, ticket_id: &str) -> Result<Option<LiveTicket>, LiveError> {
        self.hget(&self.keys.tickets(), ticket_id).await
    }

    /// An agent's entry.
    pub async fn agent(&self, agent_id: &str) -> Result<Option<LiveAgent>, LiveError> {
        self.hget(&self.keys.agents(), agent_id).await
    }

    /// An offer's entry.
    pub async fn offer(&self, reservation_id: &str) -> Result<Option<LiveOffer>, LiveError> {
        self.hget(&self.keys.offers(), reservation_id).await
    }

    /// Several agents' entries, in one command; unknown ones are left out.
    pub async fn agents(&self, ids: &[String]) -> Result<Vec<(String, LiveAgent)>, LiveError> {
        self.hmget(&self.keys.agents(), ids).await
    }

    /// Several offers, in one command; unknown ones are left out.
    pub async fn offers(&self, ids: &[String]) -> Result<Vec<(String, LiveOffer)>, LiveError> {
        self.hmget(&self.keys.offers(), ids).await
    }

    /// Several tickets, in one command; unknown ones are left out.
    pub async fn tickets(&self, ids: &[String]) -> Result<Vec<(String, LiveTicket)>, LiveError> {
        self.hmget(&self.keys.tickets(), ids).await
    }

    /// The agents of `department` in the live state (up to `limit`), by id.
    pub async fn staff(&self, department: &str, limit: usize) -> Result<Vec<String>, LiveError> {
        let prefix = format!("{department}\0");
        let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(self.keys.staff())
            .arg(format!("[{prefix}"))
            .arg(format!("({department}\u{1}"))
            .arg("LIMIT")
            .arg(0)
            .arg(limit.max(1))
            .query_async(&mut self.conn())
            .await?;
        Ok(members
            .into_iter()
            .filter_map(|m| m.strip_prefix(&prefix).map(str::to_owned))
            .collect())
    }

    /// Departments that had waiting tickets, by name.
    pub async fn departments(&self) -> Result<Vec<String>, LiveError> {
        let mut d: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.departments())
            .query_async(&mut self.conn())
            .await?;
        d.sort();
        Ok(d)
    }

    /// The first `n` waiting tickets of `department` without an offer, best first, with
    /// queue length: (ids, length).
    pub async fn queue_head(
        &self,
        department: &str,
        n: usize,
    ) -> Result<(Vec<String>, u64), LiveError> {
        let last = isize::try_from(n.max(1) - 1).unwrap_or(isize::MAX);
        let (members, len): (Vec<String>, u64) = redis::pipe()
            .cmd("ZRANGE")
            .arg(self.keys.queue(department))
            .arg(0)
            .arg(last)
            .cmd("ZCARD")
            .arg(self.keys.queue(department))
            .query_async(&mut self.conn())
            .await?;
        Ok((
            members
                .into_iter()
                .filter_map(|m| RankKey::id_of_member(&m).map(str::to_owned))
                .collect(),
            len,
        ))
    }

    /// The 1-based rank of a queued ticket (no pending offer) in its queue.
    pub async fn rank(&self, ticket: &LiveTicket) -> Result<Option<u64>, LiveError> {
        let (Some(dept), Some(member)) = (&ticket.dept, &ticket.member) else {
            return Ok(None);
        };
        let rank: Option<i64> = redis::cmd("ZRANK")
            .arg(self.keys.queue(dept))
            .arg(member)
            .query_async(&mut self.conn())
            .await?;
        rank.map(one_based).transpose()
    }

    /// Waiting tickets per tier and statistics of each of `departments`, one round trip.
    pub async fn waiting(
        &self,
        departments: &[String],
        now: OffsetDateTime,
        at_risk_window_ms: i64,
    ) -> Result<Vec<DeptWaiting>, LiveError> {
        if departments.is_empty() {
            return Ok(Vec::new());
        }
        let now = time_to_ms(now);
        let mut pipe = redis::pipe();
        for d in departments {
            for tier in TIERS {
                let w = self.keys.waiting(d, tier.as_str());
                let due = self.keys.due(d, tier.as_str());
                pipe.cmd("ZCARD").arg(&w);
                pipe.cmd("ZRANGE").arg(&w).arg(0).arg(0).arg("WITHSCORES");
                pipe.cmd("ZCOUNT").arg(&due).arg("-inf").arg(now);
                pipe.cmd("ZCOUNT")
                    .arg(&due)
                    .arg(format!("({now}"))
                    .arg(now.saturating_add(at_risk_window_ms));
            }
            pipe.cmd("HGET").arg(self.keys.department_stats()).arg(d);
        }
        let values: Vec<redis::Value> = pipe.query_async(&mut self.conn()).await?;
        let mut it = values.into_iter();
        let mut out = Vec::with_capacity(departments.len());
        for _ in departments {
            let mut dw = DeptWaiting::default();
            for slot in &mut dw.tiers {
                let waiting: u64 = from_value(it.next())?;
                let oldest: Vec<(String, f64)> = from_value(it.next())?;
                let past_due: u64 = from_value(it.next())?;
                let at_risk: u64 = from_value(it.next())?;
                *slot = TierWaiting {
                    waiting,
                    offered: 0,
                    oldest_enqueue_ms: oldest.first().map(|(_, s)| *s as i64),
                    at_risk,
                    past_due,
                };
            }
            let stats: Option<String> = from_value(it.next())?;
            if let Some(stats) = stats {
                dw.stats = decode(&stats)?;
            }
            for (slot, tier) in dw.tiers.iter_mut().zip(TIERS) {
                let offered = dw.stats.off.get(tier.as_str()).copied().unwrap_or(0.0);
                slot.offered = (offered as u64).min(slot.waiting);
            }
            out.push(dw);
        }
        Ok(out)
    }

    /// Whether the live state is complete (not lost since it was last built).
    pub async fn is_built(&self) -> Result<bool, LiveError> {
        let n: i64 = redis::cmd("EXISTS")
            .arg(self.keys.built())
            .query_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Marks the live state complete.
    pub async fn mark_built(&self, now: OffsetDateTime) -> Result<(), LiveError> {
        let _: () = redis::cmd("SET")
            .arg(self.keys.built())
            .arg(time_to_ms(now))
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Takes the rebuild lock for `ttl_ms` as `owner`; false if another router holds it.
    pub async fn lock_rebuild(&self, owner: &str, ttl_ms: u64) -> Result<bool, LiveError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.rebuild_lock())
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.conn())
            .await?;
        Ok(set.is_some())
    }

    /// Releases the rebuild lock if `owner` still holds it.
    pub async fn unlock_rebuild(&self, owner: &str) -> Result<(), LiveError> {
        let _: i64 = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        )
        .key(self.keys.rebuild_lock())
        .arg(owner)
        .invoke_async(&mut self.conn())
        .await?;
        Ok(())
    }

    async fn hget<T: serde::de::DeserializeOwned>(
        &self,
        hash: &str,
        field: &str,
    ) -> Result<Option<T>, LiveError> {
        let raw: Option<String> = redis::cmd("HGET")
            .arg(hash)
            .arg(field)
            .query_async(&mut self.conn())
            .await?;
        raw.as_deref().map(decode).transpose()
    }

    async fn hmget<T: serde::de::DeserializeOwned>(
        &self,
        hash: &str,
        ids: &[String],
    ) -> Result<Vec<(String, T)>, LiveError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(hash)
            .arg(ids)
            .query_async(&mut self.conn())
            .await?;
        ids.iter()
            .zip(raw)
            .filter_map(|(id, raw)| raw.map(|r| decode(&r).map(|v| (id.clone(), v))))
            .collect()
    }
}

fn record_json(record: &LiveRecord) -> Result<String, LiveError> {
    let json = RecordJson {
        name: &record.name,
        depts: record.depts.keys().map(|d| (d.as_str(), true)).collect(),
        team: record.team.as_deref(),
        skills: record.skills.keys().map(|s| (s.as_str(), true)).collect(),
        cap: record
            .cap
            .iter()
            .map(|(c, n)| (c.as_str(), *n as u32))
            .collect(),
        dis: record.dis,
    };
    serde_json::to_string(&json).map_err(|e| LiveError::InvalidArgument(format!("record: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, LiveError> {
    serde_json::from_str(raw).map_err(|e| LiveError::Corrupt(format!("{e}: {raw:.200}")))
}

fn decode_pairs<T: serde::de::DeserializeOwned>(
    flat: Vec<String>,
) -> Result<Vec<(String, T)>, LiveError> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(id), Some(raw)) = (it.next(), it.next()) {
        out.push((id, decode(&raw)?));
    }
    Ok(out)
}

fn from_value<T: redis::FromRedisValue>(v: Option<redis::Value>) -> Result<T, LiveError> {
    let v = v.ok_or_else(|| LiveError::Corrupt("short pipeline reply".into()))?;
    redis::from_redis_value(v).map_err(|e| LiveError::Corrupt(format!("pipeline reply: {e}")))
}

fn parse_version(held: &str) -> Result<i64, LiveError> {
    held.parse()
        .map_err(|_| LiveError::Corrupt(format!("ticket version {held:?}")))
}

fn one_based(rank: i64) -> Result<u64, LiveError> {
    u64::try_from(rank)
        .map(|r| r + 1)
        .map_err(|_| LiveError::Corrupt(format!("rank {rank}")))
}

fn unexpected_status(status: i64) -> LiveError {
    LiveError::Corrupt(format!("script answered status {status}"))
}
