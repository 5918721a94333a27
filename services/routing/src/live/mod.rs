//! The router's live state in Redis: queues, agents, offers, changed only by Lua scripts.
//!
//! Reading order: [`state`] (the operations, as the [`state::LiveState`] trait), [`keys`]
//! (names and the one hash tag), [`scripts`] (every change, atomic), [`model`] (the JSON each
//! script keeps), [`on_redis`] (the trait on Redis).
//!
//! # Key layout
//!
//! Every key is `<prefix>{<prefix>rt}:<name>`, where `<prefix>` is configured (`tierline:` in
//! production, `test:<uuid>:` in each test):
//!
//! | key                        | type       | holds                                               |
//! |----------------------------|------------|-----------------------------------------------------|
//! | `tickets`                  | hash       | ticket id → routing state (version, queued/offered/ |
//! |                            |            | active/parked/removed, rank, declined-by, agent)    |
//! | `queue:<dept>`             | sorted set | waiting tickets without an offer, in rank order     |
//! |                            |            | ([`RankKey::member`] scored by [`RankKey::score`])  |
//! | `waiting:<dept>:<tier>`    | sorted set | waiting tickets (offers included) by enqueue time   |
//! | `due:<dept>:<tier>`        | sorted set | the same by pickup due time (at risk, past due)     |
//! | `gone`                     | sorted set | removed tickets by removal time (tombstone age)     |
//! | `agents`                   | hash       | agent id → record copy, presence, session, load,    |
//! |                            |            | idle since, pending offer, missed offers, counters  |
//! | `ready`                    | sorted set | `<dept>\0<agent>` (and `\1<team>\0<agent>`) of     |
//! |                            |            | agents who could take an offer now (lex ranges)     |
//! | `staff`                    | sorted set | the same for every agent in the live state          |
//! | `leases`                   | sorted set | agents by session lease expiry                      |
//! | `offers`                   | hash       | reservation id → offer (agent, ticket, state, times)|
//! | `offer_exp`, `offer_end`   | sorted set | pending offers by expiry; ended ones by end time    |
//! | `depts`, `dstats`          | set, hash  | departments; per-department counters                |
//! | `built`, `rebuild`         | string     | the state is complete; the rebuild lock             |
//!
//! Why this shape:
//! - Tickets, agents and offers each live in one hash, so every script names its keys in KEYS
//!   without first reading where an entry lives; only department queues are per-key, and a
//!   script that finds a ticket in another department than named answers where (see
//!   [`state`]).
//! - The queue's own order (score, then member bytes) is rank order: the head is `ZRANGE 0 n`,
//!   a position `ZRANK`, O(log n); nothing is sorted in Rust. A declined or expired offer puts
//!   the ticket back with its stored member and score: its original rank.
//! - `ready` answers "who could take a ticket of this department now" with one lex range, so a
//!   dispatch round reads only ready agents, not every agent.
//! - Versions are checked inside the scripts, so SyncTicket calls can arrive late, twice or out
//!   of order; a removed ticket's version is kept for a day so a late call cannot revive it.
//!
//! [`RankKey::member`]: crate::domain::queue::RankKey::member
//! [`RankKey::score`]: crate::domain::queue::RankKey::score

pub mod in_memory;
pub mod keys;
pub mod model;
pub mod on_redis;
pub mod scripts;
pub mod state;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// A failure of a live-state operation.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Redis could not be reached or is not serving (refused, timed out, dropped, loading,
    /// failing over). Transient: the gRPC layer answers UNAVAILABLE.
    #[error("redis unavailable: {0}")]
    Unavailable(#[source] RedisError),
    /// Redis answered with an error: a script error, a wrong type, a cross-slot call, an
    /// unexpected reply shape. A bug or a misconfiguration, not a transient state.
    #[error("redis script or protocol error: {0}")]
    Script(#[source] RedisError),
    /// Redis holds data this code did not write (an entry that does not decode).
    #[error("unexpected data in redis: {0}")]
    Corrupt(String),
    /// The caller's input cannot be stored (empty id, version out of range, bad prefix).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Concurrent changes to the same ticket kept moving it between queues while this call
    /// retried; safe to retry later.
    #[error("contended: {0}")]
    Contended(String),
}

impl LiveError {
    /// Whether the error is Redis being unreachable (UNAVAILABLE), as opposed to a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LiveError::Unavailable(_))
    }
}

impl From<RedisError> for LiveError {
    fn from(err: RedisError) -> Self {
        let transient = match err.kind() {
            // Refused, reset, timed out (connect and response timeouts are I/O errors).
            ErrorKind::Io | ErrorKind::ClusterConnectionNotFound => true,
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly,
            ) => true,
            // BUSY: another script is running past its time limit; it ends or gets killed.
            _ => err.code() == Some("BUSY") || err.is_timeout() || err.is_connection_dropped(),
        };
        if transient {
            LiveError::Unavailable(err)
        } else {
            LiveError::Script(err)
        }
    }
}

/// How to reach Redis, and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://host:port/db`.
    pub url: String,
    /// Limit of one connection attempt.
    pub connection_timeout: Duration,
    /// Limit of one command. Fine for the scripts here; a blocking command (XREAD BLOCK) needs
    /// its own connection with a longer limit.
    pub response_timeout: Duration,
    /// Connection attempts after the first, with exponential back-off, before a call fails.
    pub reconnect_retries: usize,
    /// The longest back-off between attempts.
    pub max_reconnect_delay: Duration,
}

impl RedisSettings {
    /// Settings for `url` with the defaults: 1 s to connect, 1 s per command, 2 retries at most
    /// 500 ms apart, so an unreachable Redis fails a call in about 4 s, not the crate's ~minute.
    pub fn new(url: impl Into<String>) -> RedisSettings {
        RedisSettings {
            url: url.into(),
            connection_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            reconnect_retries: 2,
            max_reconnect_delay: Duration::from_millis(500),
        }
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(self.reconnect_retries)
            .set_max_delay(self.max_reconnect_delay)
    }
}

/// Connects now; fails with [`LiveError::Unavailable`] if Redis cannot be reached.
///
/// The [`ConnectionManager`] reconnects by itself after a lost connection, and is cheap to
/// clone (one multiplexed connection shared by all clones).
pub async fn connect(settings: &RedisSettings) -> Result<ConnectionManager, LiveError> {
    let client = client(settings)?;
    Ok(ConnectionManager::new_with_config(client, settings.manager_config()).await?)
}

/// Like [`connect`], but connects on first use, so a service can start while Redis is down
/// (its calls fail with [`LiveError::Unavailable`] until Redis is back).
pub fn connect_lazy(settings: &RedisSettings) -> Result<ConnectionManager, LiveError> {
    let client = client(settings)?;
    Ok(ConnectionManager::new_lazy_with_config(
        client,
        settings.manager_config(),
    )?)
}

fn client(settings: &RedisSettings) -> Result<redis::Client, LiveError> {
    redis::Client::open(settings.url.as_str())
        .map_err(|e| LiveError::InvalidArgument(format!("redis url: {e}")))
}
