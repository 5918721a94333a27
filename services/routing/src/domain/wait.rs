//! EstimateWait: how long a new ticket would wait for an agent (for the IVR's announcement).
//!
//! The formula (proto `RoutingService.EstimateWait`):
//!
//! ```text
//! position = 1 + waiting tickets of the department that rank ahead of (or tie with) a new
//!            ticket due at now + target(tier)
//! wait     = 0                          if an eligible agent is free now
//!          = position × pickup interval otherwise
//! pickup interval = window / pickups in the window              if there were pickups
//!                 = average handle time / agents staffing it    otherwise, if both are known
//!                 = unknown                                      otherwise (no estimate)
//! ```
//!
//! The pickup interval is the department's recent throughput: one ticket leaves the queue every
//! interval. Falling back to handle time over staffed agents (signed in, not disabled, serving
//! the department with capacity for the channel) covers a quiet queue with no recent pickups.
//! A free eligible agent means zero: the router would offer the ticket at once, since any ticket
//! ahead of it is one that agent is not eligible for (or it would have been offered).

use std::collections::BTreeSet;
use std::time::Duration;

use tierline_types::{Channel, Tier};
use time::OffsetDateTime;

use super::agent::Presence;
use super::queue::{TicketRef, TierTargets, position_of_new};
use super::select::Snapshot;

/// What the caller asks about (proto `EstimateWaitRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitQuery {
    /// The department the ticket would go to.
    pub department: String,
    /// The caller's tier.
    pub tier: Tier,
    /// The channel (voice for the IVR).
    pub channel: Channel,
    /// Skills the ticket would require; agents without them are not counted.
    pub required_skills: BTreeSet<String>,
}

/// The department's recent pickups, kept by the live-state layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PickupHistory {
    /// Tickets of the department picked up (accepted) within `window`.
    pub pickups: u32,
    /// The rolling window the count covers.
    pub window: Duration,
    /// Recent average handle time (assignment to release), if known.
    pub average_handle_time: Option<Duration>,
}

/// The answer (proto `EstimateWaitResponse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitEstimate {
    /// The estimated wait; `None` if no estimate can be made.
    pub wait: Option<Duration>,
    /// The 1-based position the ticket would take in the queue.
    pub position: u32,
    /// Agents who could be offered the ticket right now.
    pub available_agents: u32,
}

/// The time between pickups: `window / pickups`, else `average handle time / staffed agents`,
/// else unknown.
pub fn pickup_interval(history: &PickupHistory, staffed_agents: u32) -> Option<Duration> {
    if history.pickups > 0 && !history.window.is_zero() {
        return Some(history.window / history.pickups);
    }
    match history.average_handle_time {
        Some(aht) if staffed_agents > 0 => Some(aht / staffed_agents),
        _ => None,
    }
}

/// The wait: zero with a free eligible agent, else `position × interval` (saturating), else
/// unknown.
pub fn wait_for(
    position: u32,
    available_agents: u32,
    interval: Option<Duration>,
) -> Option<Duration> {
    if available_agents > 0 {
        return Some(Duration::ZERO);
    }
    interval.map(|i| i.saturating_mul(position))
}

/// When a new ticket of `tier` arriving `now` is due for pickup (now if the tier has no
/// target): where it ranks among the waiting tickets.
pub fn pickup_due_of_new(targets: &TierTargets, tier: Tier, now: OffsetDateTime) -> OffsetDateTime {
    targets.pickup_due(tier, now).unwrap_or(now)
}

/// Estimates the wait of a new ticket described by `query` (see the module documentation),
/// with its position among the snapshot's queued tickets.
pub fn estimate_wait(
    snapshot: &Snapshot<'_>,
    query: &WaitQuery,
    history: &PickupHistory,
) -> WaitEstimate {
    let now = snapshot.now();
    let due = pickup_due_of_new(&snapshot.config().targets, query.tier, now);
    let keys: Vec<_> = snapshot
        .queue(&query.department)
        .map(TicketRef::rank_key)
        .collect();
    let position = position_of_new(&keys, due, now);
    estimate_wait_at(
        snapshot,
        query,
        history,
        u32::try_from(position).unwrap_or(u32::MAX),
    )
}

/// [`estimate_wait`] with the position given: the caller counted it over the whole queue
/// (the snapshot then needs no tickets, only the agents).
pub fn estimate_wait_at(
    snapshot: &Snapshot<'_>,
    query: &WaitQuery,
    history: &PickupHistory,
    position: u32,
) -> WaitEstimate {
    let now = snapshot.now();
    let due = pickup_due_of_new(&snapshot.config().targets, query.tier, now);
    let hypothetical = TicketRef {
        required_skills: query.required_skills.clone(),
        ..TicketRef::new(
            String::new(),
            query.department.clone(),
            query.channel,
            query.tier,
            now,
            due,
        )
    };
    let ladder = snapshot.ladder(&hypothetical);
    let available_agents = snapshot
        .agents()
        .filter(|a| snapshot.is_eligible(a, &hypothetical, &ladder))
        .count();
    let staffed_agents = snapshot
        .agents()
        .filter(|a| {
            !a.disabled
                && a.presence != Presence::Offline
                && a.departments.contains(&query.department)
                && a.capacity.get(query.channel) > 0
                && a.missing_skills(&query.required_skills).is_empty()
        })
        .count();
    let available_agents = u32::try_from(available_agents).unwrap_or(u32::MAX);
    let staffed_agents = u32::try_from(staffed_agents).unwrap_or(u32::MAX);
    WaitEstimate {
        wait: wait_for(
            position,
            available_agents,
            pickup_interval(history, staffed_agents),
        ),
        position,
        available_agents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::agent::{AgentState, AwayReason, ChannelCounts};
    use crate::domain::config::RoutingConfig;
    use time::OffsetDateTime;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2025-03-03 09:00 UTC);
    const MIN: Duration = Duration::from_secs(60);

    fn at_min(m: i64) -> OffsetDateTime {
        T0 + time::Duration::minutes(m)
    }

    fn agent(id: &str, presence: Presence) -> AgentState {
        AgentState {
            departments: BTreeSet::from(["support".to_owned()]),
            capacity: ChannelCounts::of(&[(Channel::Voice, 1)]),
            presence,
            connected: true,
            ..AgentState::new(id, id, T0)
        }
    }

    fn on_call(id: &str) -> AgentState {
        let mut a = agent(id, Presence::Available);
        a.assign(Channel::Voice, T0);
        a
    }

    fn waiting(id: &str, tier: Tier, arrived_min: i64) -> TicketRef {
        let targets = RoutingConfig::default().targets;
        let arrival = at_min(arrived_min);
        TicketRef::new(
            id,
            "support",
            Channel::Voice,
            tier,
            arrival,
            targets.pickup_due(tier, arrival).expect("in range"),
        )
    }

    fn query(tier: Tier) -> WaitQuery {
        WaitQuery {
            department: "support".into(),
            tier,
            channel: Channel::Voice,
            required_skills: BTreeSet::new(),
        }
    }

    const TEN_PER_HOUR: PickupHistory = PickupHistory {
        pickups: 10,
        window: Duration::from_secs(3_600),
        average_handle_time: None,
    };

    #[test]
    fn a_free_eligible_agent_means_no_wait() {
        let config = RoutingConfig::default();
        let agents = [agent("a", Presence::Available)];
        let tickets = [waiting("c1", Tier::C, 0)];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at_min(1));
        let estimate = estimate_wait(&snapshot, &query(Tier::B), &TEN_PER_HOUR);
        assert_eq!(
            estimate,
            WaitEstimate {
                wait: Some(Duration::ZERO),
                position: 1,
                available_agents: 1
            }
        );
    }

    #[test]
    fn without_a_free_agent_the_wait_is_position_times_the_pickup_interval() {
        let config = RoutingConfig::default();
        let agents = [on_call("a"), on_call("b")];
        let tickets = [
            waiting("a1", Tier::A, 0),
            waiting("b1", Tier::B, 0),
            waiting("c1", Tier::C, 0),
        ];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at_min(1));
        let a = estimate_wait(&snapshot, &query(Tier::A), &TEN_PER_HOUR);
        assert_eq!((a.position, a.available_agents), (2, 0));
        assert_eq!(a.wait, Some(12 * MIN));
        let c = estimate_wait(&snapshot, &query(Tier::C), &TEN_PER_HOUR);
        assert_eq!(c.position, 4);
        assert_eq!(c.wait, Some(24 * MIN));
    }

    #[test]
    fn a_quiet_queue_falls_back_to_handle_time_over_staffed_agents() {
        let config = RoutingConfig::default();
        let agents = [
            on_call("a"),
            agent("b", Presence::Away(AwayReason::WrapUp)),
            agent("c", Presence::Offline),
        ];
        let snapshot = Snapshot::new(&config, &agents, &[], T0);
        let history = PickupHistory {
            pickups: 0,
            window: Duration::from_secs(900),
            average_handle_time: Some(8 * MIN),
        };
        let estimate = estimate_wait(&snapshot, &query(Tier::B), &history);
        assert_eq!(
            estimate.wait,
            Some(4 * MIN),
            "8 min over 2 signed-in agents"
        );
        let unknown = estimate_wait(&snapshot, &query(Tier::B), &PickupHistory::default());
        assert_eq!(unknown.wait, None);
        assert_eq!(unknown.position, 1);
    }

    #[test]
    fn agents_without_the_required_skills_are_not_counted() {
        let config = RoutingConfig::default();
        let agents = [agent("a", Presence::Available)];
        let snapshot = Snapshot::new(&config, &agents, &[], T0);
        let german = WaitQuery {
            required_skills: BTreeSet::from(["language:de".to_owned()]),
            ..query(Tier::A)
        };
        let estimate = estimate_wait(&snapshot, &german, &TEN_PER_HOUR);
        assert_eq!(estimate.available_agents, 0);
        assert_eq!(estimate.wait, Some(6 * MIN));
        let history = PickupHistory {
            average_handle_time: Some(MIN),
            ..PickupHistory::default()
        };
        assert_eq!(
            estimate_wait(&snapshot, &german, &history).wait,
            None,
            "nobody staffs it"
        );
    }

    #[test]
    fn the_formula_saturates_instead_of_overflowing() {
        assert_eq!(
            wait_for(u32::MAX, 0, Some(Duration::MAX)),
            Some(Duration::MAX)
        );
        assert_eq!(wait_for(3, 0, None), None);
        assert_eq!(wait_for(3, 2, None), Some(Duration::ZERO));
        let zero_window = PickupHistory {
            pickups: 4,
            ..PickupHistory::default()
        };
        assert_eq!(pickup_interval(&zero_window, 0), None);
    }
}
