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

    /// The sorted set of a department's waiting tickets.
    pub fn queue(&self, department: &str) -> String {
        format!("{}queue:{department}", self.base)
    }

    /// The hash of a ticket's routing state (or its tombstone).
    pub fn ticket(&self, ticket_id: &str) -> String {
        format!("{}ticket:{ticket_id}", self.base)
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
        let ticket = keys.ticket("0b3c");
        assert_eq!(queue, "tierline:{tierline:rt}:queue:billing {eu}");
        assert_eq!(ticket, "tierline:{tierline:rt}:ticket:0b3c");
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
