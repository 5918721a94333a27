//! The router's live state in Redis: department queues as sorted sets, changed by Lua scripts.
//!
//! Reading order: [`keys`] (names and the hash tag), then [`queue`] (the operations).
//!
//! # Key layout
//!
//! Every key is `<prefix>{<prefix>rt}:<kind>:<id>`, where `<prefix>` is configured
//! (`tierline:` in production, `test:<uuid>:` in each test):
//!
//! | key                     | type       | holds                                                   |
//! |-------------------------|------------|---------------------------------------------------------|
//! | `…:queue:<department>`  | sorted set | one member per waiting ticket: [`RankKey::member`] with |
//! |                         |            | score [`RankKey::score`]; set order is rank order       |
//! | `…:ticket:<ticket id>`  | hash       | `v` (ticket version held), `state` (`queued` or         |
//! |                         |            | `removed`), `dept`, `member` (its entry in the queue),  |
//! |                         |            | `data` (routing fields, JSON)                           |
//!
//! Why this shape:
//! - The sorted set's own order (score, then member bytes) is the rank order, so the head of a
//!   queue is `ZRANGE 0 n-1` and a position is `ZRANK`, both O(log n); nothing is sorted in Rust.
//! - The ticket hash remembers the member the ticket was queued under, so a re-rank (escalation)
//!   or a department transfer removes exactly the old entry, and the version check (a call whose
//!   ticket version is not newer is ignored, as `SyncTicket` requires) happens in the same script
//!   as the write: no read-modify-write race between routers.
//! - A removed ticket's hash stays for 24 hours as a tombstone holding its version, so a late,
//!   older enqueue cannot bring it back.
//! - The prefix leads every key so ACL key patterns (`~tierline:*`) and `SCAN MATCH <prefix>*`
//!   cover exactly one router's state. The same prefix sits inside the hash tag so two routers
//!   sharing a cluster do not share a slot (see [`keys`] for the one-slot trade-off).
//!
//! [`RankKey::member`]: crate::domain::queue::RankKey::member
//! [`RankKey::score`]: crate::domain::queue::RankKey::score

pub mod keys;
pub mod queue;

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
