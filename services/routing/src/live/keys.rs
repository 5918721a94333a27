//! Key names of the live state, all under one configurable prefix and one hash tag.
//!
//! # One hash tag for the whole router state
//!
//! Every key holds `{<prefix>rt}`, so Redis Cluster puts them all in one hash slot. A Lua
//! script may only touch keys of one slot (else `CROSSSLOT`), and the router's scripts span a
//! ticket and its queue, a ticket moving between two department queues, and (later) agents and
//! offers. With one slot every script runs unchanged on a single Redis or a cluster.
//!
//! The cost: one router's live state lives on one cluster node, so a cluster adds failover but
//! not write throughput for it. That is the simplest correct choice now: the state is small
//! (waiting tickets and online agents) and one Redis node serves far more script calls than a
//! contact centre makes. To shard later, give each department group its own tag
//! (`{<prefix>rt:<group>}`), with the constraint that a ticket only moves, and an agent only
//! works, within a group; only this module and the scripts' key lists change.

use super::LiveError;

/// Builds the key names of one router's live state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    /// `<prefix>{<prefix>rt}:`, the start of every key.
    base: String,
}

impl Keys {
    /// Keys under `prefix` (e.g. `tierline:`, or `test:<uuid>:` in a test).
    ///
    /// The prefix may not hold `{` or `}` (they would move the hash tag) nor the glob
    /// characters `*?[]\` (so `SCAN MATCH <prefix>*` matches exactly this router's keys).
    pub fn new(prefix: impl Into<String>) -> Result<Keys, LiveError> {
        let prefix = prefix.into();
        if let Some(bad) = prefix.chars().find(|c| "{}*?[]\\".contains(*c)) {
            return Err(LiveError::InvalidArgument(format!(
                "key prefix {prefix:?} must not contain {bad:?}"
            )));
        }
        let base = format!("{prefix}{{{prefix}rt}}:");
        Ok(Keys { prefix, base })
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The pattern matching every key of this router (for `SCAN MATCH`).
    pub fn pattern(&self) -> String {
        format!("{}*", self.prefix)
    }

    /// The sorted set of a department's waiting tickets without a pending offer, in rank order.
    pub fn queue(&self, department: &str) -> String {
        format!("{}queue:{department}", self.base)
    }

    /// The sorted set of a department's waiting tickets of one tier (pending offers included),
    /// scored by enqueue time: count and oldest wait.
    pub fn waiting(&self, department: &str, tier: &str) -> String {
        format!("{}waiting:{department}:{tier}", self.base)
    }

    /// Like [`Keys::waiting`], scored by pickup due time: at risk and past due.
    pub fn due(&self, department: &str, tier: &str) -> String {
        format!("{}due:{department}:{tier}", self.base)
    }

    /// The hash of every known ticket's routing state (JSON per ticket id).
    pub fn tickets(&self) -> String {
        format!("{}tickets", self.base)
    }

    /// The sorted set of removed tickets by removal time (their tombstones' age).
    pub fn gone(&self) -> String {
        format!("{}gone", self.base)
    }

    /// The hash of every agent's live state (JSON per agent id).
    pub fn agents(&self) -> String {
        format!("{}agents", self.base)
    }

    /// The lexicographic index `<department>\0<agent>` of agents ready for an offer.
    pub fn ready(&self) -> String {
        format!("{}ready", self.base)
    }

    /// The lexicographic index `<department>\0<agent>` of every agent in the live state.
    pub fn staff(&self) -> String {
        format!("{}staff", self.base)
    }

    /// The sorted set of desktop session leases by expiry.
    pub fn leases(&self) -> String {
        format!("{}leases", self.base)
    }

    /// The hash of offers (JSON per reservation id).
    pub fn offers(&self) -> String {
        format!("{}offers", self.base)
    }

    /// The sorted set of pending (or held) offers by expiry.
    pub fn offer_expiry(&self) -> String {
        format!("{}offer_exp", self.base)
    }

    /// The sorted set of ended offers by end time (forgotten after an hour).
    pub fn offer_ended(&self) -> String {
        format!("{}offer_end", self.base)
    }

    /// The set of departments that ever had a waiting ticket.
    pub fn departments(&self) -> String {
        format!("{}depts", self.base)
    }

    /// The hash of per-department statistics (JSON per department).
    pub fn department_stats(&self) -> String {
        format!("{}dstats", self.base)
    }

    /// The marker that the live state is complete (built, or rebuilt after a loss).
    pub fn built(&self) -> String {
        format!("{}built", self.base)
    }

    /// The lock one router holds while rebuilding.
    pub fn rebuild_lock(&self) -> String {
        format!("{}rebuild", self.base)
    }

    /// The pub/sub channel of change notices (`d:<department>`, `a:<agent>`). Not a key.
    pub fn events(&self) -> String {
        format!("{}events", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of a key Redis Cluster hashes: the first `{...}` with something inside.
    fn hashed_part(key: &str) -> &str {
        let Some(open) = key.find('{') else {
            return key;
        };
        match key[open + 1..].find('}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        }
    }

    #[test]
    fn every_key_starts_with_the_prefix_and_hashes_on_the_tag() {
        let keys = Keys::new("tierline:").expect("valid prefix");
        let queue = keys.queue("billing {eu}");
        let ticket = keys.tickets();
        assert_eq!(queue, "tierline:{tierline:rt}:queue:billing {eu}");
        assert_eq!(ticket, "tierline:{tierline:rt}:tickets");
        assert_eq!(hashed_part(&queue), "tierline:rt");
        assert_eq!(hashed_part(&ticket), hashed_part(&queue));
        assert_eq!(keys.pattern(), "tierline:*");
    }

    #[test]
    fn a_prefix_that_would_move_the_tag_or_widen_the_pattern_is_rejected() {
        for bad in ["a{", "}", "x*", "q?", "[a]", "a\\b"] {
            assert!(Keys::new(bad).is_err(), "{bad}");
        }
        assert!(Keys::new("").is_ok());
    }
}
