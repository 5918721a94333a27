//! The agent records' store as a trait, [`AgentStore`], and what its implementations share.
//!
//! Two implementations: [`super::PgAgents`] (production: PostgreSQL) and
//! [`super::SqliteAgents`] (the single-process dev mode: one SQLite file). Both must behave the
//! same; `tests/agents_store.rs` runs one suite on both.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::types::Json;
use tierline_types::Channel;

use super::convert::ListAgentsQuery;
use super::record::{AgentFilter, AgentRecord, AgentUpsert, CHANNELS};
use crate::domain::agent::ChannelCounts;
use crate::error::{Error, Result};

/// Durable agent records: who the agents are and what they can do.
#[tonic::async_trait]
pub trait AgentStore: Send + Sync + std::fmt::Debug + 'static {
    /// Creates the agent, or updates the masked fields of an existing one.
    ///
    /// - Absent agent: created at version 1 with every field of the upsert (the mask is
    ///   ignored; the display name is required), create and update time equal. With
    ///   `expected_version` set it is [`Error::StaleVersion`] with `actual: 0` instead.
    /// - Existing agent: a stale `expected_version` is [`Error::StaleVersion`]; otherwise the
    ///   masked fields are applied, and version and update time move only if something changed,
    ///   so a repeated upsert returns the record as it is. The update time never goes
    ///   backwards, even if the clock does.
    ///
    /// Concurrent upserts of one id serialise: each sees the one before, none fails for the
    /// race.
    async fn upsert(&self, upsert: &AgentUpsert) -> Result<AgentRecord>;

    /// One agent, if it exists.
    async fn get(&self, id: &str) -> Result<Option<AgentRecord>>;

    /// The agents of `ids` that exist, by id; unknown ids are left out, repeated ones count once.
    async fn get_many(&self, ids: &[String]) -> Result<Vec<AgentRecord>>;

    /// Up to `limit` agents matching `filter` with ids after `after_id`, by id (byte order).
    async fn list(
        &self,
        filter: &AgentFilter,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AgentRecord>>;

    /// One page of a parsed ListAgents request: the agents and the next page token (empty on
    /// the last page). The caller filters the agents by presence; the token stays as returned.
    async fn list_page(&self, query: &ListAgentsQuery) -> Result<(Vec<AgentRecord>, String)> {
        // One more than the page tells whether another page follows.
        let mut agents = self
            .list(
                &query.filter,
                query.after_id.as_deref(),
                query.page_size.saturating_add(1),
            )
            .await?;
        let size = usize::try_from(query.page_size).unwrap_or(usize::MAX);
        let next = if agents.len() > size {
            agents.truncate(size);
            agents
                .last()
                .map(|last| query.next_page_token(&last.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((agents, next))
    }
}

/// Capacities as stored: `{"chat": 3, "voice": 1}`, channels without capacity left out.
pub(super) fn capacities_json(capacity: &ChannelCounts) -> Json<BTreeMap<&'static str, u32>> {
    Json(
        CHANNELS
            .into_iter()
            .filter(|c| capacity.get(*c) > 0)
            .map(|c| (c.as_str(), capacity.get(c)))
            .collect(),
    )
}

/// Stored capacities read back (the inverse of [`capacities_json`]); `agent` names the record
/// in the error.
pub(super) fn capacity_from_json(
    agent: &str,
    capacities: &BTreeMap<String, i64>,
) -> Result<ChannelCounts> {
    let mut capacity = ChannelCounts::default();
    for (name, n) in capacities {
        let channel = Channel::from_db(name)
            .ok_or_else(|| Error::Corrupt(format!("agent {agent}: capacity channel {name:?}")))?;
        let n = u32::try_from(*n)
            .map_err(|_| Error::Corrupt(format!("agent {agent}: capacity {n} for {name}")))?;
        capacity.set(channel, n);
    }
    Ok(capacity)
}

/// A set as stored: sorted and unique.
pub(super) fn sorted(set: &BTreeSet<String>) -> Vec<&str> {
    set.iter().map(String::as_str).collect()
}

/// The version check of an upsert of an existing agent at `current_version`.
pub(super) fn check_version(upsert: &AgentUpsert, current_version: i64) -> Result<()> {
    match upsert.expected_version {
        Some(expected) if expected != current_version => Err(Error::StaleVersion {
            what: "agent",
            id: upsert.id.clone(),
            expected,
            actual: current_version,
        }),
        _ => Ok(()),
    }
}

/// The error of an upsert with an expected version for an agent that does not exist.
pub(super) fn absent(upsert: &AgentUpsert, expected: i64) -> Error {
    Error::StaleVersion {
        what: "agent",
        id: upsert.id.clone(),
        expected,
        actual: 0,
    }
}
