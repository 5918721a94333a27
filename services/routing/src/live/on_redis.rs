//! [`RedisLive`]: the live state on Redis, each operation one script call (plus, where a
//! script must name a department's keys it cannot know, one read before it).

use std::collections::BTreeMap;

use futures::StreamExt;
use futures::stream::BoxStream;
use redis::aio::ConnectionManager;
use serde::Serialize;
use tierline_types::Tier;
use time::OffsetDateTime;

use super::LiveError;
use super::keys::Keys;
use super::model::{LiveAgent, LiveDeptStats, LiveOffer, LiveRecord, LiveTicket, time_to_ms};
use super::scripts::{self, APPLIED, IGNORED, MISSING, MOVED, NOT_PENDING, NOT_YOURS};
use super::state::{
    AgentRead, Claim, DeptWaiting, ENDED_OFFER_TTL_MS, Ended, LiveState, NewOffer, Outcome, Peeked,
    PreparedSync, PresenceSet, RoutingState, Synced, TOMBSTONE_TTL_MS, TicketSync, TierWaiting,
};
use crate::domain::queue::RankKey;

/// How many times a call is re-sent after finding the ticket under other keys than named.
const MOVED_RETRIES: usize = 4;

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
pub struct RedisLive {
    /// For the pub/sub connection (subscribing takes a connection over).
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
}

impl std::fmt::Debug for RedisLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLive")
            .field("keys", &self.keys)
            .finish()
    }
}

const TIERS: [Tier; 3] = [Tier::A, Tier::B, Tier::C];

impl RedisLive {
    /// The live state under `keys`, over `conn`; `client` opens the pub/sub connection.
    pub fn new(client: redis::Client, conn: ConnectionManager, keys: Keys) -> RedisLive {
        RedisLive { client, conn, keys }
    }

    /// The key names in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Agent ids of `department` in a set of "department\0agent" members (`key`), up to
    /// `limit`, by id: one ZRANGEBYLEX over the department's range.
    async fn agents_under(
        &self,
        key: &str,
        department: &str,
        limit: usize,
    ) -> Result<Vec<String>, LiveError> {
        let prefix = format!("{department}\0");
        let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(key)
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

    /// The SYNC script call for `s`, naming the keys of where the caller believes the ticket
    /// is (`at`).
    fn sync_call(
        &self,
        s: &TicketSync,
        prepared: &PreparedSync,
        at: &Where,
        now: OffsetDateTime,
        quiet: bool,
    ) -> redis::ScriptInvocation<'static> {
        let k = &self.keys;
        let tier = s.tier.as_str();
        let mut call = scripts::SYNC.prepare_invoke();
        call.key(k.tickets())
            .key(k.agents())
            .key(k.offers())
            .key(k.offer_expiry())
            .key(k.offer_ended())
            .key(k.ready())
            .key(k.staff())
            .key(k.gone())
            .key(k.departments())
            .key(k.queue(&s.department))
            .key(k.queue(&at.dept))
            .key(k.waiting(&s.department, tier))
            .key(k.due(&s.department, tier))
            .key(k.waiting(&at.dept, &at.tier))
            .key(k.due(&at.dept, &at.tier))
            .key(k.department_stats())
            .arg(time_to_ms(now))
            .arg(&s.id)
            .arg(s.version)
            .arg(s.state.as_str())
            .arg(&s.department)
            .arg(tier)
            .arg(s.channel.as_str())
            .arg(prepared.score)
            .arg(&prepared.member)
            .arg(&prepared.data)
            .arg(time_to_ms(s.data.enqueue_time))
            .arg(s.agent_id.as_deref().unwrap_or(""))
            .arg(s.reservation_id.as_deref().unwrap_or(""))
            .arg(&at.dept)
            .arg(k.events())
            .arg(&at.tier)
            .arg(time_to_ms(s.data.pickup_due))
            .arg(if quiet { "1" } else { "0" });
        call
    }
}

/// The department and tier whose keys a SYNC call names as the ticket's current ones.
#[derive(Debug, Clone)]
struct Where {
    dept: String,
    tier: String,
}

/// Where a ticket is now if it waits, else where the sync puts it.
fn guess(s: &TicketSync, held: Option<LiveTicket>) -> Where {
    match held {
        Some(t) if t.st == "queued" || t.st == "offered" => Where {
            dept: t.dept.unwrap_or_default(),
            tier: t.tier.unwrap_or_else(|| s.tier.as_str().to_owned()),
        },
        _ => Where {
            dept: s.department.clone(),
            tier: s.tier.as_str().to_owned(),
        },
    }
}

/// SYNC's reply: status, version (or department if moved), 0-based rank, withdrawn offer, tier
/// if moved.
type SyncReply = (i64, String, Option<i64>, Option<String>, Option<String>);

/// What one SYNC call came to.
enum SyncOutcome {
    /// Applied or ignored.
    Done(Synced),
    /// The ticket is elsewhere: send again naming these keys.
    Moved(Where),
}

fn sync_outcome(
    (status, held, rank, withdrawn, moved_tier): SyncReply,
    s: &TicketSync,
) -> Result<SyncOutcome, LiveError> {
    match status {
        MOVED => Ok(SyncOutcome::Moved(Where {
            dept: held,
            tier: moved_tier.unwrap_or_else(|| s.tier.as_str().to_owned()),
        })),
        APPLIED | IGNORED => Ok(SyncOutcome::Done(Synced {
            applied: status == APPLIED,
            version: parse_version(&held)?,
            position: rank.map(one_based).transpose()?,
            withdrawn_offer: withdrawn,
        })),
        other => Err(unexpected_status(other)),
    }
}

fn contended(s: &TicketSync) -> LiveError {
    LiveError::Contended(format!(
        "ticket {:?} kept moving between queues during the call",
        s.id
    ))
}

#[tonic::async_trait]
impl LiveState for RedisLive {
    /// SyncTicket (see the proto): versioned, idempotent and order-tolerant. The call names
    /// the keys of the department and tier it carries: right for a new ticket and for most
    /// changes; after a transfer or a re-tier the script answers where the ticket is, and the
    /// call is sent again (one round trip more then, one less every other time than reading
    /// first).
    async fn sync(&self, s: &TicketSync, now: OffsetDateTime) -> Result<Synced, LiveError> {
        let prepared = s.prepare()?;
        let mut at = guess(s, None);
        for _ in 0..=MOVED_RETRIES {
            let reply: SyncReply = self
                .sync_call(s, &prepared, &at, now, false)
                .invoke_async(&mut self.conn())
                .await?;
            match sync_outcome(reply, s)? {
                SyncOutcome::Done(synced) => return Ok(synced),
                SyncOutcome::Moved(moved) => at = moved,
            }
        }
        Err(contended(s))
    }

    /// Several SyncTickets: one HMGET for where the tickets are, then one pipeline of SYNC
    /// scripts (each still atomic on its own), then a pipeline per round of re-sends for the
    /// tickets a concurrent call moved meanwhile.
    async fn sync_many(
        &self,
        syncs: &[TicketSync],
        now: OffsetDateTime,
    ) -> Result<Vec<Result<Synced, LiveError>>, LiveError> {
        let mut out: Vec<Option<Result<Synced, LiveError>>> = Vec::with_capacity(syncs.len());
        // (index, prepared) of each sync that can be sent.
        let mut pending: Vec<(usize, PreparedSync)> = Vec::with_capacity(syncs.len());
        for (i, s) in syncs.iter().enumerate() {
            match s.prepare() {
                Ok(p) => {
                    pending.push((i, p));
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        let ids: Vec<String> = pending.iter().map(|(i, _)| syncs[*i].id.clone()).collect();
        let current: Vec<Option<String>> = if ids.is_empty() {
            Vec::new()
        } else {
            redis::cmd("HMGET")
                .arg(self.keys.tickets())
                .arg(&ids)
                .query_async(&mut self.conn())
                .await?
        };
        let mut sends: Vec<(usize, PreparedSync, Where)> = Vec::with_capacity(pending.len());
        for ((i, p), raw) in pending.into_iter().zip(current) {
            match raw.as_deref().map(decode::<LiveTicket>).transpose() {
                Ok(held) => sends.push((i, p, guess(&syncs[i], held))),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        for _ in 0..=MOVED_RETRIES {
            if sends.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            // EVALSHA fails with NOSCRIPT after a Redis restart; loading first makes the page
            // one round trip whatever the script cache holds.
            pipe.ignore_errors().load_script(&scripts::SYNC).ignore();
            let mut departments = std::collections::BTreeSet::new();
            for (i, p, at) in &sends {
                pipe.invoke_script(&self.sync_call(&syncs[*i], p, at, now, true));
                if syncs[*i].state == RoutingState::Waiting {
                    departments.insert(syncs[*i].department.as_str());
                }
            }
            // One notice per department for the whole page, not one per ticket.
            for d in departments {
                pipe.cmd("PUBLISH")
                    .arg(self.keys.events())
                    .arg(format!("d:{d}"))
                    .ignore();
            }
            let replies: Vec<redis::RedisResult<SyncReply>> =
                pipe.query_async(&mut self.conn()).await?;
            if replies.len() != sends.len() {
                return Err(LiveError::Corrupt(format!(
                    "{} replies to a pipeline of {} syncs",
                    replies.len(),
                    sends.len()
                )));
            }
            let mut again = Vec::new();
            for ((i, p, _), reply) in sends.into_iter().zip(replies) {
                let s = &syncs[i];
                match reply
                    .map_err(LiveError::from)
                    .and_then(|r| sync_outcome(r, s))
                {
                    Ok(SyncOutcome::Done(synced)) => out[i] = Some(Ok(synced)),
                    Ok(SyncOutcome::Moved(moved)) => again.push((i, p, moved)),
                    Err(e) => out[i] = Some(Err(e)),
                }
            }
            sends = again;
        }
        for (i, _, _) in &sends {
            out[*i] = Some(Err(contended(&syncs[*i])));
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(LiveError::Corrupt("sync left unanswered".into()))))
            .collect())
    }

    /// What a dispatch round of `department` needs: the best `tickets` waiting tickets without
    /// an offer; up to `agents` ready agents serving it and as many of each of `teams`; and
    /// the agents the tickets name. One round trip.
    #[allow(clippy::type_complexity)]
    async fn peek_round(
        &self,
        department: &str,
        tickets: usize,
        read: AgentRead,
        teams: &[&str],
    ) -> Result<Peeked, LiveError> {
        let k = &self.keys;
        let mut call = scripts::PEEK.prepare_invoke();
        call.key(k.queue(department))
            .key(k.tickets())
            .key(k.ready())
            .key(k.agents())
            .arg(department)
            .arg(tickets.max(1))
            .arg(read.most.max(1))
            .arg(read.per_ticket)
            .arg(read.least.max(1))
            .arg(read.rotation);
        for team in teams {
            call.arg(*team);
        }
        let (t, a, partial): (Vec<String>, Vec<String>, i64) =
            call.invoke_async(&mut self.conn()).await?;
        Ok(Peeked {
            tickets: decode_pairs(t)?,
            agents: decode_pairs(a)?,
            partial: partial == 1,
        })
    }

    /// Makes the offers of a dispatch round in `department`; returns the reservations made
    /// (offers whose ticket or agent changed since the round's read are skipped).
    async fn reserve(
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
    async fn claim(
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
    async fn unclaim(&self, reservation_id: &str) -> Result<(), LiveError> {
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
    async fn confirm(
        &self,
        reservation_id: &str,
        offer: &LiveOffer,
        ticket_version: i64,
        now: OffsetDateTime,
    ) -> Result<i64, LiveError> {
        let k = &self.keys;
        // The guess: where the ticket waits now, else where it was offered.
        let (mut dept, mut tier) = match self.ticket(&offer.ticket).await? {
            Some(t) if t.st == "queued" || t.st == "offered" => (
                t.dept.unwrap_or_else(|| offer.dept.clone()),
                t.tier.unwrap_or_else(|| offer.tier.clone()),
            ),
            _ => (offer.dept.clone(), offer.tier.clone()),
        };
        for _ in 0..=MOVED_RETRIES {
            let (status, at, moved_tier): (i64, Option<redis::Value>, Option<String>) =
                scripts::CONFIRM
                    .key(k.tickets())
                    .key(k.agents())
                    .key(k.offers())
                    .key(k.offer_expiry())
                    .key(k.offer_ended())
                    .key(k.ready())
                    .key(k.staff())
                    .key(k.queue(&dept))
                    .key(k.waiting(&dept, &tier))
                    .key(k.due(&dept, &tier))
                    .key(k.department_stats())
                    .arg(reservation_id)
                    .arg(time_to_ms(now))
                    .arg(ticket_version)
                    .arg(k.events())
                    .arg(&dept)
                    .arg(&tier)
                    .invoke_async(&mut self.conn())
                    .await?;
            match status {
                APPLIED | IGNORED => {
                    let at: Option<i64> = at
                        .map(redis::from_redis_value)
                        .transpose()
                        .map_err(|e| LiveError::Corrupt(format!("confirm reply: {e}")))?;
                    return Ok(at.unwrap_or_else(|| time_to_ms(now)));
                }
                MOVED => {
                    let moved: Option<String> = at
                        .map(redis::from_redis_value)
                        .transpose()
                        .map_err(|e| LiveError::Corrupt(format!("confirm reply: {e}")))?;
                    dept = moved.unwrap_or_default();
                    tier = moved_tier.unwrap_or_default();
                }
                MISSING => {
                    return Err(LiveError::Corrupt(format!(
                        "offer {reservation_id:?} vanished during its accept"
                    )));
                }
                other => return Err(unexpected_status(other)),
            }
        }
        Err(LiveError::Contended(format!(
            "ticket {:?} kept moving between queues during an accept",
            offer.ticket
        )))
    }

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
    async fn put_record(
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
            .key(k.departments())
            .arg(agent_id)
            .arg(record_json(record)?)
            .arg(time_to_ms(now))
            .arg(k.events())
            .invoke_async(&mut self.conn())
            .await?)
    }

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
    ) -> Result<(bool, String, Option<String>), LiveError> {
        let k = &self.keys;
        let (resumed, session, withdraw): (i64, String, Option<String>) = scripts::OPEN_SESSION
            .key(k.agents())
            .key(k.ready())
            .key(k.staff())
            .key(k.leases())
            .key(k.departments())
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
    async fn touch_session(
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

    /// Renews the leases of several connected sessions in one script call.
    async fn renew_sessions(
        &self,
        sessions: &[(String, String)],
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<Vec<String>, LiveError> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        let mut call = scripts::RENEW_SESSIONS.prepare_invoke();
        call.key(k.agents())
            .key(k.ready())
            .key(k.staff())
            .key(k.leases())
            .arg(time_to_ms(now))
            .arg(time_to_ms(lease_until));
        for (agent, session) in sessions {
            call.arg(agent).arg(session);
        }
        Ok(call.invoke_async(&mut self.conn()).await?)
    }

    /// Sets presence (`available`, `away`, `offline`) with an away reason and note.
    async fn set_presence(
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
    async fn lapse_sessions(
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
    async fn due_offers(
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
    async fn purge(&self, now: OffsetDateTime, limit: usize) -> Result<u64, LiveError> {
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
    async fn ticket(&self, ticket_id: &str) -> Result<Option<LiveTicket>, LiveError> {
        self.hget(&self.keys.tickets(), ticket_id).await
    }

    /// An agent's entry.
    async fn agent(&self, agent_id: &str) -> Result<Option<LiveAgent>, LiveError> {
        self.hget(&self.keys.agents(), agent_id).await
    }

    /// An offer's entry.
    async fn offer(&self, reservation_id: &str) -> Result<Option<LiveOffer>, LiveError> {
        self.hget(&self.keys.offers(), reservation_id).await
    }

    /// Several agents' entries, in one command; unknown ones are left out.
    async fn agents(&self, ids: &[String]) -> Result<Vec<(String, LiveAgent)>, LiveError> {
        self.hmget(&self.keys.agents(), ids).await
    }

    /// Several offers, in one command; unknown ones are left out.
    async fn offers(&self, ids: &[String]) -> Result<Vec<(String, LiveOffer)>, LiveError> {
        self.hmget(&self.keys.offers(), ids).await
    }

    /// Several tickets, in one command; unknown ones are left out.
    async fn tickets(&self, ids: &[String]) -> Result<Vec<(String, LiveTicket)>, LiveError> {
        self.hmget(&self.keys.tickets(), ids).await
    }

    /// The agents of `department` in the live state (up to `limit`), by id.
    async fn staff(&self, department: &str, limit: usize) -> Result<Vec<String>, LiveError> {
        self.agents_under(&self.keys.staff(), department, limit)
            .await
    }

    /// The agents listed as ready under `department`, up to `limit`, by id.
    async fn ready_agents(&self, department: &str, limit: usize) -> Result<Vec<String>, LiveError> {
        self.agents_under(&self.keys.ready(), department, limit)
            .await
    }

    /// Queued tickets of `department` scored at or below `score` (ZCOUNT).
    async fn queued_before(&self, department: &str, score: i64) -> Result<u64, LiveError> {
        Ok(redis::cmd("ZCOUNT")
            .arg(self.keys.queue(department))
            .arg("-inf")
            .arg(score)
            .query_async(&mut self.conn())
            .await?)
    }

    /// Departments that had waiting tickets, by name.
    async fn departments(&self) -> Result<Vec<String>, LiveError> {
        let mut d: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.departments())
            .query_async(&mut self.conn())
            .await?;
        d.sort();
        Ok(d)
    }

    /// The first `n` waiting tickets of `department` without an offer, best first, with
    /// queue length: (ids, length).
    async fn queue_head(
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
    async fn rank(&self, ticket: &LiveTicket) -> Result<Option<u64>, LiveError> {
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

    /// The statistics entry of `department`, one HGET.
    async fn department_stats(&self, department: &str) -> Result<LiveDeptStats, LiveError> {
        let raw: Option<String> = redis::cmd("HGET")
            .arg(self.keys.department_stats())
            .arg(department)
            .query_async(&mut self.conn())
            .await?;
        Ok(raw.as_deref().map(decode).transpose()?.unwrap_or_default())
    }

    /// Waiting tickets per tier and statistics of each of `departments`, one round trip.
    async fn waiting(
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
    async fn is_built(&self) -> Result<bool, LiveError> {
        let n: i64 = redis::cmd("EXISTS")
            .arg(self.keys.built())
            .query_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Marks the live state complete.
    async fn mark_built(&self, now: OffsetDateTime) -> Result<(), LiveError> {
        let _: () = redis::cmd("SET")
            .arg(self.keys.built())
            .arg(time_to_ms(now))
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Takes the rebuild lock for `ttl_ms` as `owner`; false if another router holds it.
    async fn lock_rebuild(&self, owner: &str, ttl_ms: u64) -> Result<bool, LiveError> {
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
    async fn unlock_rebuild(&self, owner: &str) -> Result<(), LiveError> {
        let _: i64 = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        )
        .key(self.keys.rebuild_lock())
        .arg(owner)
        .invoke_async(&mut self.conn())
        .await?;
        Ok(())
    }

    async fn notices(&self) -> Result<BoxStream<'static, String>, LiveError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(self.keys.events()).await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|m| async move { m.get_payload::<String>().ok() })
            .boxed())
    }
}

impl RedisLive {
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
