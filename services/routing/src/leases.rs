//! The leases of this process's desktop sessions, renewed in batches.
//!
//! A desktop's session lives while its lease does (the live state signs out an agent whose
//! lease ran out: a desktop gone longer than the resume grace, or a router that died holding
//! the stream). Each session task used to renew its own lease every half heartbeat: with
//! 10,000 desktops that was 2,000 script calls a second on the router's one Redis connection,
//! queued in front of dispatch's calls. Instead, each session holds a [`LeaseHold`] here, and
//! the router ([`crate::router::Router::run`]) renews them in slots: every [`TICK`] the
//! sessions of the next slot, so each is renewed once per half heartbeat, spread evenly over
//! it, [`BATCH`] per script call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a slot of sessions is renewed.
pub const TICK: Duration = Duration::from_millis(50);

/// Sessions renewed per script call: small enough that one call holds Redis for well under a
/// millisecond (each renewal rewrites one agent entry).
pub const BATCH: usize = 50;

/// The sessions of this process, spread over slots; renewing slot after slot, one per
/// [`TICK`], renews every session once per period.
#[derive(Debug)]
pub struct SessionLeases {
    slots: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    /// Per slot: session id → agent id.
    sessions: Vec<HashMap<String, String>>,
    /// The slot the next session joins (round robin, so slots stay even).
    next: usize,
}

impl SessionLeases {
    /// Leases renewed every `period`: as many slots as ticks fit in it.
    pub fn new(period: Duration) -> Arc<SessionLeases> {
        let slots = usize::try_from(period.as_millis() / TICK.as_millis())
            .unwrap_or(1)
            .max(1);
        Arc::new(SessionLeases {
            slots: Mutex::new(Slots {
                sessions: vec![HashMap::new(); slots],
                next: 0,
            }),
        })
    }

    /// How many slots there are (ticks per period).
    pub fn slot_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Renews `session` of `agent` from now on, until the hold is dropped.
    pub fn hold(self: &Arc<Self>, agent: &str, session: &str) -> LeaseHold {
        let mut slots = self.lock();
        let slot = slots.next;
        slots.next = (slot + 1) % slots.sessions.len();
        slots.sessions[slot].insert(session.to_owned(), agent.to_owned());
        LeaseHold {
            session: session.to_owned(),
            slot,
            leases: Arc::clone(self),
        }
    }

    /// The (agent, session) pairs of `slot` (modulo the slot count).
    pub fn slot(&self, slot: usize) -> Vec<(String, String)> {
        let slots = self.lock();
        let n = slots.sessions.len();
        slots.sessions[slot % n]
            .iter()
            .map(|(session, agent)| (agent.clone(), session.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // The map stays consistent whatever panicked while holding it: inserts and removes only.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A session whose lease this process renews; dropping it stops the renewals.
#[derive(Debug)]
pub struct LeaseHold {
    session: String,
    slot: usize,
    leases: Arc<SessionLeases>,
}

impl Drop for LeaseHold {
    fn drop(&mut self) {
        self.leases.lock().sessions[self.slot].remove(&self.session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_spread_evenly_over_the_slots_and_leave_when_dropped() {
        let leases = SessionLeases::new(Duration::from_millis(200));
        assert_eq!(leases.slot_count(), 4);
        let holds: Vec<LeaseHold> = (0..10)
            .map(|i| leases.hold(&format!("agent-{i}"), &format!("s{i}")))
            .collect();
        let sizes: Vec<usize> = (0..4).map(|s| leases.slot(s).len()).collect();
        assert_eq!(sizes, [3, 3, 2, 2]);
        assert_eq!(leases.slot(4), leases.slot(0), "slots wrap round");
        assert!(leases.slot(1).contains(&("agent-1".into(), "s1".into())));
        drop(holds);
        assert!((0..4).all(|s| leases.slot(s).is_empty()));
    }

    #[test]
    fn a_period_shorter_than_a_tick_is_one_slot() {
        let leases = SessionLeases::new(Duration::from_millis(10));
        assert_eq!(leases.slot_count(), 1);
        let _hold = leases.hold("ana", "s1");
        assert_eq!(leases.slot(7), [("ana".to_owned(), "s1".to_owned())]);
    }
}
