//! Department queues: enqueue, remove, head, position and depth of waiting tickets.
//!
//! Writes are Lua scripts (sent as EVALSHA by [`redis::Script`], loaded on a NOSCRIPT), so the
//! version check and every change of a call are one atomic step. Each script names all its keys
//! in KEYS. A ticket's current queue is only known inside Redis, so a write names the queue the
//! caller believes holds the ticket; if the script finds it in another one (a concurrent
//! department transfer) it changes nothing and answers `moved`, and the call is re-sent with
//! that queue. Enqueue guesses the ticket's new department, which is right unless the ticket
//! is being transferred, so the usual cost is one round trip.
//!
//! Versions: the scripts compare versions as Lua numbers (doubles), so versions are limited to
//! `1..=2^53`, far above any ticket's edit count.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use redis::Script;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;

use super::LiveError;
use super::keys::Keys;
use crate::domain::queue::{RankKey, TicketRef};

/// How long a removed ticket's version is kept, so late older calls are ignored (the routing
/// contract promises at least 24 hours).
pub const TOMBSTONE_TTL_SECS: u64 = 24 * 60 * 60;

/// The largest ticket version the scripts compare exactly (2^53).
pub const MAX_VERSION: i64 = 1 << 53;

/// How many times a write is re-sent after finding the ticket in another queue than named.
/// Each retry names the queue the script just reported, so more are only needed while other
/// calls keep moving the same ticket.
const MOVED_RETRIES: usize = 4;

/// Script answer: the call changed the state.
const APPLIED: i64 = 1;
/// Script answer: the call's version was not newer; nothing changed.
const IGNORED: i64 = 0;
/// Script answer: the ticket is queued elsewhere than named; the second element is its
/// department.
const MOVED: i64 = -1;

/// KEYS: ticket hash, new queue, queue named as the current one.
/// ARGV: version, department, score, member, data, department of the named current queue.
/// Returns {status, version or department, 0-based rank or nil}.
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('HMGET', KEYS[1], 'v', 'state', 'dept', 'member')
local queued = held[2] == 'queued'
if queued and held[3] ~= ARGV[6] then
  return {-1, held[3], false}
end
if held[1] and tonumber(held[1]) >= tonumber(ARGV[1]) then
  local rank = false
  if queued then rank = redis.call('ZRANK', KEYS[3], held[4]) end
  return {0, held[1], rank}
end
if queued and (held[3] ~= ARGV[2] or held[4] ~= ARGV[4]) then
  redis.call('ZREM', KEYS[3], held[4])
end
-- DEL first: drops a tombstone's expiry and any field of an older layout.
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'state', 'queued', 'dept', ARGV[2],
  'member', ARGV[4], 'data', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return {1, ARGV[1], redis.call('ZRANK', KEYS[2], ARGV[4])}
",
    )
});

/// KEYS: ticket hash, then the queue named as the current one if there is a guess.
/// ARGV: version, department of the named queue ('' for none), tombstone TTL in seconds.
/// Returns {status, version or department}.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('HMGET', KEYS[1], 'v', 'state', 'dept', 'member')
local queued = held[2] == 'queued'
if queued and held[3] ~= ARGV[2] then
  return {-1, held[3]}
end
if held[1] and tonumber(held[1]) >= tonumber(ARGV[1]) then
  return {0, held[1]}
end
if queued then
  redis.call('ZREM', KEYS[2], held[4])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'state', 'removed')
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, ARGV[1]}
",
    )
});

/// What a versioned write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// False if the call was ignored because Redis held this or a newer version.
    pub applied: bool,
    /// The ticket version Redis holds now.
    pub version: i64,
    /// The ticket's 1-based position in its queue if it is waiting; `None` otherwise.
    pub position: Option<u64>,
}

/// What Redis holds for a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Waiting in its department's queue.
    Queued {
        /// The version the state comes from.
        version: i64,
        /// The routing fields as enqueued; `declined_by` and `offered_to` are empty (offers are
        /// live state of their own, not part of a ticket sync). Boxed: far larger than the
        /// tombstone.
        ticket: Box<TicketRef>,
    },
    /// Removed; the tombstone keeps the version for [`TOMBSTONE_TTL_SECS`].
    Removed {
        /// The version of the removal.
        version: i64,
    },
}

/// A ticket's routing fields as stored in its hash (`data`), besides id, department and
/// version, which have fields or keys of their own.
#[derive(Debug, Serialize, Deserialize)]
struct StoredFields {
    channel: String,
    tier: Tier,
    key_account: bool,
    account_manager_id: Option<String>,
    preferred_agent_id: Option<String>,
    required_skills: BTreeSet<String>,
    escalation_level: u32,
    // RFC 3339 keeps nanoseconds, so the ticket reads back exactly; the rank key floors to ms.
    #[serde(with = "time::serde::rfc3339")]
    enqueue_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pickup_due: OffsetDateTime,
}

/// The department queues of one router, over a shared, self-reconnecting connection.
///
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Queues {
    conn: ConnectionManager,
    keys: Keys,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues").field("keys", &self.keys).finish()
    }
}

impl Queues {
    /// Queues under `keys`, over `conn`.
    pub fn new(conn: ConnectionManager, keys: Keys) -> Queues {
        Queues { conn, keys }
    }

    /// The key names in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Queues `ticket` (or re-ranks it, or moves it to its new department) as of `version`.
    ///
    /// Ignored if Redis holds this or a newer version of the ticket, queued or removed, so
    /// repeated and out-of-order calls are harmless. O(log n) in the queue's length.
    pub async fn enqueue(&self, ticket: &TicketRef, version: i64) -> Result<Synced, LiveError> {
        check_id("ticket id", &ticket.id)?;
        check_id("department", &ticket.department)?;
        check_version(version)?;
        let rank = ticket.rank_key();
        // Exact: a rank key's score is an integer below 2^53 in magnitude.
        let score = rank.score() as i64;
        let member = rank.member();
        let data = serde_json::to_string(&StoredFields {
            channel: ticket.channel.as_str().to_owned(),
            tier: ticket.tier,
            key_account: ticket.key_account,
            account_manager_id: ticket.account_manager_id.clone(),
            preferred_agent_id: ticket.preferred_agent_id.clone(),
            required_skills: ticket.required_skills.clone(),
            escalation_level: ticket.escalation_level,
            enqueue_time: ticket.enqueue_time,
            pickup_due: ticket.pickup_due,
        })
        .map_err(|e| LiveError::InvalidArgument(format!("ticket fields: {e}")))?;

        let ticket_key = self.keys.ticket(&ticket.id);
        let new_queue = self.keys.queue(&ticket.department);
        let mut current = ticket.department.clone();
        for _ in 0..=MOVED_RETRIES {
            let (status, held, rank): (i64, String, Option<i64>) = ENQUEUE
                .key(&ticket_key)
                .key(&new_queue)
                .key(self.keys.queue(&current))
                .arg(version)
                .arg(&ticket.department)
                .arg(score)
                .arg(&member)
                .arg(&data)
                .arg(&current)
                .invoke_async(&mut self.conn.clone())
                .await?;
            match status {
                MOVED => current = held,
                APPLIED | IGNORED => {
                    return Ok(Synced {
                        applied: status == APPLIED,
                        version: parse_version(&held)?,
                        position: rank.map(one_based).transpose()?,
                    });
                }
                other => return Err(unexpected_status(other)),
            }
        }
        Err(contended(&ticket.id))
    }

    /// Takes the ticket out of its queue as of `version` and keeps a tombstone with that
    /// version for [`TOMBSTONE_TTL_SECS`], so a late, older enqueue cannot revive it.
    ///
    /// Ignored if Redis holds this or a newer version. Also records the tombstone for a ticket
    /// it never saw (a removal that overtook the enqueue).
    pub async fn remove(&self, ticket_id: &str, version: i64) -> Result<Synced, LiveError> {
        check_id("ticket id", ticket_id)?;
        check_version(version)?;
        let ticket_key = self.keys.ticket(ticket_id);
        let mut current: Option<String> = redis::cmd("HGET")
            .arg(&ticket_key)
            .arg("dept")
            .query_async(&mut self.conn.clone())
            .await?;
        for _ in 0..=MOVED_RETRIES {
            let mut call = REMOVE.key(&ticket_key);
            if let Some(department) = &current {
                call.key(self.keys.queue(department));
            }
            let (status, held): (i64, String) = call
                .arg(version)
                .arg(current.as_deref().unwrap_or(""))
                .arg(TOMBSTONE_TTL_SECS)
                .invoke_async(&mut self.conn.clone())
                .await?;
            match status {
                MOVED => current = Some(held),
                APPLIED | IGNORED => {
                    return Ok(Synced {
                        applied: status == APPLIED,
                        version: parse_version(&held)?,
                        position: None,
                    });
                }
                other => return Err(unexpected_status(other)),
            }
        }
        Err(contended(ticket_id))
    }

    /// The best `n` waiting tickets of `department`, best first.
    pub async fn head(&self, department: &str, n: usize) -> Result<Vec<RankKey>, LiveError> {
        if n == 0 {
            // ZRANGE 0 -1 would be the whole queue.
            return Ok(Vec::new());
        }
        let last = isize::try_from(n - 1).unwrap_or(isize::MAX);
        let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.keys.queue(department))
            .arg(0)
            .arg(last)
            .arg("WITHSCORES")
            .query_async(&mut self.conn.clone())
            .await?;
        entries
            .into_iter()
            .map(|(member, score)| {
                RankKey::from_entry(score, &member).ok_or_else(|| {
                    LiveError::Corrupt(format!(
                        "queue {department:?} entry {member:?} with score {score}"
                    ))
                })
            })
            .collect()
    }

    /// The ticket's 1-based position in its queue; `None` if it is not waiting.
    ///
    /// Two reads (its hash, then its rank); if it was re-ranked or moved in between, reads
    /// again.
    pub async fn position(&self, ticket_id: &str) -> Result<Option<u64>, LiveError> {
        let ticket_key = self.keys.ticket(ticket_id);
        for _ in 0..=MOVED_RETRIES {
            let (state, department, member): (Option<String>, Option<String>, Option<String>) =
                redis::cmd("HMGET")
                    .arg(&ticket_key)
                    .arg("state")
                    .arg("dept")
                    .arg("member")
                    .query_async(&mut self.conn.clone())
                    .await?;
            let (Some("queued"), Some(department), Some(member)) =
                (state.as_deref(), department, member)
            else {
                return Ok(None);
            };
            let rank: Option<i64> = redis::cmd("ZRANK")
                .arg(self.keys.queue(&department))
                .arg(&member)
                .query_async(&mut self.conn.clone())
                .await?;
            if let Some(rank) = rank {
                return one_based(rank).map(Some);
            }
        }
        Err(contended(ticket_id))
    }

    /// How many tickets wait in `department`'s queue.
    pub async fn depth(&self, department: &str) -> Result<u64, LiveError> {
        Ok(redis::cmd("ZCARD")
            .arg(self.keys.queue(department))
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// What Redis holds for the ticket; `None` if nothing (never seen, or tombstone expired).
    pub async fn ticket(&self, ticket_id: &str) -> Result<Option<Held>, LiveError> {
        let (version, state, department, data): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = redis::cmd("HMGET")
            .arg(self.keys.ticket(ticket_id))
            .arg("v")
            .arg("state")
            .arg("dept")
            .arg("data")
            .query_async(&mut self.conn.clone())
            .await?;
        let Some(version) = version else {
            return Ok(None);
        };
        let version = parse_version(&version)?;
        match (state.as_deref(), department, data) {
            (Some("removed"), _, _) => Ok(Some(Held::Removed { version })),
            (Some("queued"), Some(department), Some(data)) => {
                let f: StoredFields = serde_json::from_str(&data)
                    .map_err(|e| LiveError::Corrupt(format!("ticket {ticket_id:?} data: {e}")))?;
                let channel = Channel::from_db(&f.channel).ok_or_else(|| {
                    LiveError::Corrupt(format!("ticket {ticket_id:?} channel {:?}", f.channel))
                })?;
                let mut ticket = TicketRef::new(
                    ticket_id,
                    department,
                    channel,
                    f.tier,
                    f.enqueue_time,
                    f.pickup_due,
                );
                ticket.key_account = f.key_account;
                ticket.account_manager_id = f.account_manager_id;
                ticket.preferred_agent_id = f.preferred_agent_id;
                ticket.required_skills = f.required_skills;
                ticket.escalation_level = f.escalation_level;
                Ok(Some(Held::Queued {
                    version,
                    ticket: Box::new(ticket),
                }))
            }
            (state, _, _) => Err(LiveError::Corrupt(format!(
                "ticket {ticket_id:?} in state {state:?}"
            ))),
        }
    }
}

fn check_id(what: &str, id: &str) -> Result<(), LiveError> {
    if id.is_empty() {
        return Err(LiveError::InvalidArgument(format!("{what} is empty")));
    }
    Ok(())
}

fn check_version(version: i64) -> Result<(), LiveError> {
    if !(1..=MAX_VERSION).contains(&version) {
        return Err(LiveError::InvalidArgument(format!(
            "ticket version {version} is outside 1..=2^53"
        )));
    }
    Ok(())
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

fn contended(ticket_id: &str) -> LiveError {
    LiveError::Contended(format!(
        "ticket {ticket_id:?} kept moving between queues during the call"
    ))
}
