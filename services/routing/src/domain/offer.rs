//! Offers: a reservation of one ticket for one agent, with a timeout.
//!
//! [`make_offer`] reserves both sides. [`end_offer`] applies how it ended:
//! - accepted: the ticket becomes active for the agent (it leaves the queue; the caller removes
//!   it);
//! - declined or expired: the ticket stays in its queue at its original rank (its rank key has
//!   no offer in it) and is not offered to that agent again while it waits;
//! - cancelled by the router: both are simply released.
//!
//! Expired offers in a row are counted on the agent; reaching
//! [`OfferConfig::away_after_missed`] sets the agent AWAY with reason NOT_RESPONDING. Any answer
//! (accept or decline) resets the count: the agent is evidently at the desk. Router
//! cancellations neither count nor reset.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::agent::{AgentState, AwayReason, Presence};
use super::queue::{TicketRef, add};

/// The longest offer timeout accepted in configuration.
pub const MAX_OFFER_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Offer configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfferConfig {
    /// How long an agent has to answer an offer. Default 20 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Expired offers in a row after which the agent is set AWAY (NOT_RESPONDING); zero never.
    /// Default 2.
    pub away_after_missed: u32,
}

impl Default for OfferConfig {
    fn default() -> Self {
        OfferConfig {
            timeout: Duration::from_secs(20),
            away_after_missed: 2,
        }
    }
}

impl OfferConfig {
    /// Problems with the configuration, as (field, description). Empty means usable.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.timeout < Duration::from_secs(1) || self.timeout > MAX_OFFER_TIMEOUT {
            problems.push(("timeout".into(), "must be between 1s and 10m".into()));
        }
        problems
    }

    /// When an offer made at `offered_at` expires; `None` beyond the representable range.
    pub fn expire_time(&self, offered_at: OffsetDateTime) -> Option<OffsetDateTime> {
        add(offered_at, self.timeout)
    }
}

/// How an offer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OfferOutcome {
    /// The agent accepted: the ticket is assigned.
    Accepted,
    /// The agent declined.
    Declined,
    /// Not answered in time.
    Expired,
    /// Withdrawn by the router (ticket gone or changed, presence changed).
    Cancelled,
}

/// What ending an offer did beyond releasing the reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferEnded {
    /// The agent was set AWAY with reason NOT_RESPONDING.
    pub set_away: bool,
}

/// Reserves `ticket` for `agent`. The agent's idle time is not touched.
pub fn make_offer(agent: &mut AgentState, ticket: &mut TicketRef) {
    agent.offer(ticket.id.clone());
    ticket.offered_to = Some(agent.id.clone());
}

/// Ends the offer of `ticket` to `agent` at `at` (see the module documentation).
pub fn end_offer(
    agent: &mut AgentState,
    ticket: &mut TicketRef,
    outcome: OfferOutcome,
    at: OffsetDateTime,
    config: &OfferConfig,
) -> OfferEnded {
    if agent.pending_offer.as_deref() == Some(ticket.id.as_str()) {
        agent.pending_offer = None;
    }
    if ticket.offered_to.as_deref() == Some(agent.id.as_str()) {
        ticket.offered_to = None;
    }
    let mut set_away = false;
    match outcome {
        OfferOutcome::Accepted => {
            agent.missed_offers_in_row = 0;
            agent.assign(ticket.channel, at);
        }
        OfferOutcome::Declined => {
            agent.missed_offers_in_row = 0;
            ticket.declined_by.insert(agent.id.clone());
        }
        OfferOutcome::Expired => {
            agent.missed_offers_in_row = agent.missed_offers_in_row.saturating_add(1);
            ticket.declined_by.insert(agent.id.clone());
            if config.away_after_missed > 0
                && agent.missed_offers_in_row >= config.away_after_missed
                && agent.presence == Presence::Available
            {
                agent.presence = Presence::Away(AwayReason::NotResponding);
                agent.missed_offers_in_row = 0;
                set_away = true;
            }
        }
        OfferOutcome::Cancelled => {}
    }
    OfferEnded { set_away }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::agent::ChannelCounts;
    use tierline_types::{Channel, Tier};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2025-03-03 09:00 UTC);

    fn agent() -> AgentState {
        AgentState {
            capacity: ChannelCounts::of(&[(Channel::Chat, 2)]),
            presence: Presence::Available,
            connected: true,
            ..AgentState::new("a", "A", T0)
        }
    }

    fn ticket(id: &str) -> TicketRef {
        TicketRef::new(id, "billing", Channel::Chat, Tier::B, T0, T0)
    }

    #[test]
    fn an_offer_expires_after_the_configured_timeout() {
        let config = OfferConfig::default();
        assert_eq!(
            config.expire_time(T0),
            Some(T0 + time::Duration::seconds(20))
        );
    }

    #[test]
    fn a_declined_ticket_keeps_its_rank_and_remembers_the_agent() {
        let (mut a, mut t) = (agent(), ticket("t"));
        let rank = t.rank_key();
        make_offer(&mut a, &mut t);
        assert_eq!(t.offered_to.as_deref(), Some("a"));
        let ended = end_offer(
            &mut a,
            &mut t,
            OfferOutcome::Declined,
            T0,
            &OfferConfig::default(),
        );
        assert!(!ended.set_away);
        assert_eq!(t.rank_key(), rank);
        assert!(t.declined_by.contains("a"));
        assert_eq!((a.pending_offer, t.offered_to), (None, None));
        assert_eq!(a.idle_since, Some(T0), "an offer does not reset idle time");
    }

    #[test]
    fn two_expired_offers_in_a_row_set_the_agent_away() {
        let config = OfferConfig::default();
        let mut a = agent();
        let (mut t1, mut t2) = (ticket("t1"), ticket("t2"));
        make_offer(&mut a, &mut t1);
        assert!(!end_offer(&mut a, &mut t1, OfferOutcome::Expired, T0, &config).set_away);
        make_offer(&mut a, &mut t2);
        assert!(end_offer(&mut a, &mut t2, OfferOutcome::Expired, T0, &config).set_away);
        assert_eq!(a.presence, Presence::Away(AwayReason::NotResponding));
        assert!(t2.declined_by.contains("a"));
    }

    #[test]
    fn an_answer_between_misses_resets_the_count_and_a_cancellation_does_not() {
        let config = OfferConfig::default();
        let mut a = agent();
        let mut t = ticket("t");
        let _ = end_offer(&mut a, &mut t, OfferOutcome::Expired, T0, &config);
        let _ = end_offer(&mut a, &mut t, OfferOutcome::Declined, T0, &config);
        assert_eq!(a.missed_offers_in_row, 0);
        let _ = end_offer(&mut a, &mut t, OfferOutcome::Expired, T0, &config);
        let _ = end_offer(&mut a, &mut t, OfferOutcome::Cancelled, T0, &config);
        assert_eq!(a.missed_offers_in_row, 1);
        assert!(end_offer(&mut a, &mut t, OfferOutcome::Expired, T0, &config).set_away);
    }

    #[test]
    fn zero_missed_offers_never_sets_an_agent_away() {
        let config = OfferConfig {
            away_after_missed: 0,
            ..OfferConfig::default()
        };
        let mut a = agent();
        for i in 0..5 {
            let mut t = ticket(&format!("t{i}"));
            assert!(!end_offer(&mut a, &mut t, OfferOutcome::Expired, T0, &config).set_away);
        }
        assert_eq!(a.presence, Presence::Available);
    }

    #[test]
    fn accepting_makes_the_ticket_active_and_ends_idleness() {
        let (mut a, mut t) = (agent(), ticket("t"));
        make_offer(&mut a, &mut t);
        let at = T0 + time::Duration::minutes(3);
        let _ = end_offer(
            &mut a,
            &mut t,
            OfferOutcome::Accepted,
            at,
            &OfferConfig::default(),
        );
        assert_eq!(a.active.get(Channel::Chat), 1);
        assert_eq!((a.idle_since, a.last_assigned), (None, Some(at)));
        assert!(t.declined_by.is_empty());
    }

    #[test]
    fn timeouts_outside_one_second_to_ten_minutes_are_reported() {
        assert!(OfferConfig::default().problems().is_empty());
        for timeout in [Duration::ZERO, Duration::from_secs(601)] {
            let config = OfferConfig {
                timeout,
                ..OfferConfig::default()
            };
            assert_eq!(config.problems().len(), 1);
        }
    }
}
