//! Selection: which eligible agent gets a ticket, and which ticket a free agent gets.
//!
//! **Agent for a ticket** ([`compare_agents`]). By [`SelectionPolicy`]:
//! - `least_occupied` (default, the proto's rule): lowest occupancy on the ticket's channel
//!   (active over capacity), then longest idle;
//! - `longest_idle`: longest idle, then lowest occupancy;
//!
//! then, under both, least recently assigned, fewest assignments, and lowest id.
//!
//! "Longest idle" compares [`AgentState::idle_since`], which starts at the end of the agent's
//! last active ticket and is not reset by offers; an agent with an active ticket is not idle and
//! comes after every idle one. Busy agents would then tie, and falling straight to the id (as
//! the proto's comment has it) hands every such tie to the same agent. "Least recently
//! assigned" breaks it instead, and "fewest assignments" breaks the exact ties left (agents
//! assigned at the same instant in one dispatch round), so equal agents take turns: the property
//! test below checks that assignment counts never differ by more than one. The id makes the
//! order total and deterministic.
//!
//! **Ticket for an agent** ([`Snapshot::next_ticket_for`]). An agent serving several
//! departments takes the best-ranked ticket it is eligible for across all of its queues, by the
//! same [`RankKey`] order as within one queue: escalation level, pickup due time, enqueue time,
//! id. Due times are absolute instants, so they compare across departments: the agent serves
//! whichever customer is due first, and no department starves another for longer than its
//! tickets take to fall due.
//!
//! **A dispatch round** ([`Snapshot::dispatch`]). Waiting tickets without a pending offer are
//! taken in rank order across all queues; each goes to the first agent in selection order who is
//! eligible and not yet matched in the round. Every agent thus gets the best-ranked ticket left
//! for it, and every ticket the best agent left for it.
//!
//! **Which agents a round sees** (`Router::dispatch_rounds`). Up to 64 ready agents per
//! department or team, every one is read and the choice above is exact. With more, a round
//! reads 8 per ticket it found (at least 64) from a window that starts at a random place in the
//! ready index, and widens to `router.dispatch_agents` only if a ticket found no agent in the
//! window. The choice is then the best in the window: every ready agent is as likely to be in
//! it, so load stays even, and a round costs in proportion to its tickets rather than to the
//! agents signed in.
//!
//! [`RankKey`]: crate::domain::queue::RankKey

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tierline_types::Channel;
use time::OffsetDateTime;

use super::agent::{AgentState, Ineligible, eligibility, first_reaching_step, is_eligible};
use super::config::RoutingConfig;
use super::queue::TicketRef;
use super::steps::{Step, StepKind, current_step, next_step};

/// How the agent for a ticket is chosen among eligible agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionPolicy {
    /// Lowest occupancy first, then longest idle (the proto's rule).
    #[default]
    LeastOccupied,
    /// Longest idle first, then lowest occupancy.
    LongestIdle,
}

/// The selection order of two agents for a ticket of `channel`: `Less` if `a` comes first.
pub fn compare_agents(
    a: &AgentState,
    b: &AgentState,
    channel: Channel,
    policy: SelectionPolicy,
) -> Ordering {
    let occupancy = || compare_occupancy(a.occupancy(channel), b.occupancy(channel));
    let idle = || compare_idle(a.idle_since, b.idle_since);
    let first = match policy {
        SelectionPolicy::LeastOccupied => occupancy().then_with(idle),
        SelectionPolicy::LongestIdle => idle().then_with(occupancy),
    };
    first
        .then_with(|| compare_last_assigned(a.last_assigned, b.last_assigned))
        .then_with(|| a.assigned_count.cmp(&b.assigned_count))
        .then_with(|| a.id.cmp(&b.id))
}

/// Occupancy `active / capacity`, compared exactly by cross-multiplication; no capacity counts
/// as full.
fn compare_occupancy((a_active, a_cap): (u32, u32), (b_active, b_cap): (u32, u32)) -> Ordering {
    match (a_cap, b_cap) {
        (0, 0) => Ordering::Equal,
        (0, _) => Ordering::Greater,
        (_, 0) => Ordering::Less,
        _ => {
            (u64::from(a_active) * u64::from(b_cap)).cmp(&(u64::from(b_active) * u64::from(a_cap)))
        }
    }
}

/// Longer idle first: an earlier `idle_since` first; not idle (`None`) last.
fn compare_idle(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// Least recently assigned first: never assigned (`None`) first, then the earliest.
fn compare_last_assigned(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
}

/// `agents` in selection order for a ticket of `channel`.
pub fn selection_order<'a>(
    agents: impl IntoIterator<Item = &'a AgentState>,
    channel: Channel,
    policy: SelectionPolicy,
) -> Vec<&'a AgentState> {
    let mut agents: Vec<&AgentState> = agents.into_iter().collect();
    agents.sort_by(|a, b| compare_agents(a, b, channel, policy));
    agents
}

/// The ladder of one ticket at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The index of the current step; `None` if none has started.
    pub current: Option<usize>,
}

impl Ladder {
    /// The first step not yet started, if any.
    pub fn next(&self, age: std::time::Duration) -> Option<&Step> {
        next_step(&self.steps, age)
    }
}

/// One offer a dispatch round would make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The ticket.
    pub ticket_id: String,
    /// The agent to offer it to.
    pub agent_id: String,
    /// The step that reaches the agent (proto `Offer.step_kind`).
    pub step_kind: StepKind,
}

impl Match {
    /// `ticket` to `agent`, named by the first step of `ladder` that reaches the agent.
    fn of(agent: &AgentState, ticket: &TicketRef, ladder: &Ladder) -> Match {
        let step_kind = first_reaching_step(agent, ticket, &ladder.steps)
            .and_then(|i| ladder.steps.get(i))
            .map_or(StepKind::Department, |s| s.kind);
        Match {
            ticket_id: ticket.id.clone(),
            agent_id: agent.id.clone(),
            step_kind,
        }
    }
}

/// The routing state at one moment: configuration, agents, waiting tickets and the clock.
/// Every routing question (selection, explanations, wait estimates) is asked of a snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    config: &'a RoutingConfig,
    agents: BTreeMap<&'a str, &'a AgentState>,
    tickets: Vec<&'a TicketRef>,
    now: OffsetDateTime,
}

impl<'a> Snapshot<'a> {
    /// A snapshot of `agents` and the waiting `tickets` of every queue at `now`. A repeated
    /// agent id keeps the last entry.
    pub fn new(
        config: &'a RoutingConfig,
        agents: &'a [AgentState],
        tickets: &'a [TicketRef],
        now: OffsetDateTime,
    ) -> Snapshot<'a> {
        let mut ranked: Vec<&TicketRef> = tickets.iter().collect();
        ranked.sort_by_cached_key(|t| t.rank_key());
        Snapshot {
            config,
            agents: agents.iter().map(|a| (a.id.as_str(), a)).collect(),
            tickets: ranked,
            now,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &'a RoutingConfig {
        self.config
    }

    /// The moment of the snapshot.
    pub fn now(&self) -> OffsetDateTime {
        self.now
    }

    /// Every agent, by id.
    pub fn agents(&self) -> impl Iterator<Item = &'a AgentState> + '_ {
        self.agents.values().copied()
    }

    /// Every waiting ticket, in rank order across all queues.
    pub fn tickets(&self) -> &[&'a TicketRef] {
        &self.tickets
    }

    /// The waiting tickets of one department, in rank order.
    pub fn queue(&self, department: &str) -> impl Iterator<Item = &'a TicketRef> + '_ {
        let department = department.to_owned();
        self.tickets
            .iter()
            .copied()
            .filter(move |t| t.department == department)
    }

    /// An agent by id.
    pub fn agent(&self, id: &str) -> Option<&'a AgentState> {
        self.agents.get(id).copied()
    }

    /// A waiting ticket by id.
    pub fn ticket(&self, id: &str) -> Option<&'a TicketRef> {
        self.tickets.iter().copied().find(|t| t.id == id)
    }

    /// The ticket's ladder now: named agents count as available if they are known and
    /// [`AgentState::is_available`].
    pub fn ladder(&self, ticket: &TicketRef) -> Ladder {
        let steps = self.config.steps.ladder(ticket, |id| {
            self.agent(id).is_some_and(AgentState::is_available)
        });
        let current = current_step(&steps, ticket.age(self.now));
        Ladder { steps, current }
    }

    /// Whether `agent` may be offered `ticket` now, with its ladder.
    pub fn eligibility(
        &self,
        agent: &AgentState,
        ticket: &TicketRef,
        ladder: &Ladder,
    ) -> Result<(), Ineligible> {
        eligibility(agent, ticket, &ladder.steps, ladder.current)
    }

    /// Whether [`Snapshot::eligibility`] is `Ok`, without its reasons (cheap).
    pub fn is_eligible(&self, agent: &AgentState, ticket: &TicketRef, ladder: &Ladder) -> bool {
        is_eligible(agent, ticket, &ladder.steps, ladder.current)
    }

    /// The agents who may be offered `ticket` now, in selection order.
    pub fn eligible_agents(&self, ticket: &TicketRef) -> Vec<&'a AgentState> {
        let ladder = self.ladder(ticket);
        selection_order(
            self.agents()
                .filter(|a| self.is_eligible(a, ticket, &ladder)),
            ticket.channel,
            self.config.selection,
        )
    }

    /// The agent `ticket` would be offered to if it were alone: first in selection order.
    pub fn choose_agent(&self, ticket: &TicketRef) -> Option<&'a AgentState> {
        self.eligible_agents(ticket).into_iter().next()
    }

    /// The ticket `agent` takes next (see the module documentation): the best-ranked waiting
    /// ticket without a pending offer that the agent may be offered, across all queues.
    pub fn next_ticket_for(&self, agent: &AgentState) -> Option<&'a TicketRef> {
        self.tickets
            .iter()
            .copied()
            .find(|t| t.offered_to.is_none() && self.is_eligible(agent, t, &self.ladder(t)))
    }

    /// The offers one dispatch round makes (see the module documentation), in ticket rank
    /// order. The caller makes them and runs another round after any change.
    ///
    /// The agents are put in selection order once per channel (the order is total and does not
    /// change within a round), and each ticket takes the first eligible agent not yet matched:
    /// the same choice as the best of all eligible agents, without checking every agent for
    /// every ticket (a round of 64 tickets and 500 agents checked 32,000 pairs).
    pub fn dispatch(&self) -> Vec<Match> {
        let mut matched: BTreeSet<&str> = BTreeSet::new();
        let mut matches = Vec::new();
        // A handful of channels: a list is enough.
        let mut orders: Vec<(Channel, Vec<&AgentState>)> = Vec::new();
        for ticket in self.tickets.iter().filter(|t| t.offered_to.is_none()) {
            let ladder = self.ladder(ticket);
            let at = match orders.iter().position(|(c, _)| *c == ticket.channel) {
                Some(i) => i,
                None => {
                    let order =
                        selection_order(self.agents(), ticket.channel, self.config.selection);
                    orders.push((ticket.channel, order));
                    orders.len() - 1
                }
            };
            let order = &orders[at].1;
            let best = order
                .iter()
                .copied()
                .find(|a| !matched.contains(a.id.as_str()) && self.is_eligible(a, ticket, &ladder));
            if let Some(agent) = best {
                matched.insert(agent.id.as_str());
                matches.push(Match::of(agent, ticket, &ladder));
            }
        }
        matches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::agent::{ChannelCounts, Presence};
    use crate::domain::offer::{OfferConfig, OfferOutcome, end_offer, make_offer};
    use proptest::prelude::*;
    use tierline_types::Tier;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2025-03-03 09:00 UTC);

    fn at(secs: i64) -> OffsetDateTime {
        T0 + time::Duration::seconds(secs)
    }

    fn agent(id: &str, departments: &[&str], chat: u32) -> AgentState {
        AgentState {
            departments: departments.iter().map(|d| (*d).to_owned()).collect(),
            capacity: ChannelCounts::of(&[(Channel::Chat, chat), (Channel::Voice, 1)]),
            presence: Presence::Available,
            connected: true,
            ..AgentState::new(id, id, T0)
        }
    }

    fn ticket(id: &str, department: &str, due: i64) -> TicketRef {
        TicketRef::new(id, department, Channel::Chat, Tier::B, T0, at(due))
    }

    fn ids(agents: &[&AgentState]) -> Vec<String> {
        agents.iter().map(|a| a.id.clone()).collect()
    }

    #[test]
    fn the_least_occupied_agent_comes_first_then_the_longest_idle() {
        let mut busy = agent("a", &["d"], 4);
        busy.assign(Channel::Chat, at(0));
        let mut recently_idle = agent("b", &["d"], 4);
        recently_idle.idle_since = Some(at(100));
        let long_idle = agent("c", &["d"], 4);
        let order = selection_order(
            [&busy, &recently_idle, &long_idle],
            Channel::Chat,
            SelectionPolicy::LeastOccupied,
        );
        assert_eq!(ids(&order), ["c", "b", "a"]);
    }

    #[test]
    fn occupancy_is_compared_as_a_fraction_of_capacity() {
        let mut half = agent("a", &["d"], 2);
        half.assign(Channel::Chat, at(0));
        let mut third = agent("b", &["d"], 3);
        third.assign(Channel::Chat, at(0));
        let order = selection_order(
            [&half, &third],
            Channel::Chat,
            SelectionPolicy::LeastOccupied,
        );
        assert_eq!(ids(&order), ["b", "a"]);
    }

    #[test]
    fn longest_idle_policy_prefers_idle_time_over_occupancy() {
        let mut one_of_four = agent("a", &["d"], 4);
        one_of_four.assign(Channel::Chat, at(0));
        one_of_four.release(Channel::Chat, at(10));
        one_of_four.assign(Channel::Chat, at(20));
        let mut idle_late = agent("b", &["d"], 4);
        idle_late.idle_since = Some(at(50));
        let idle_early = agent("c", &["d"], 4);
        let order = selection_order(
            [&one_of_four, &idle_late, &idle_early],
            Channel::Chat,
            SelectionPolicy::LongestIdle,
        );
        assert_eq!(ids(&order), ["c", "b", "a"]);
    }

    #[test]
    fn busy_agents_who_tie_take_turns_by_last_assignment_then_id() {
        let mut a = agent("a", &["d"], 3);
        a.assign(Channel::Chat, at(20));
        let mut b = agent("b", &["d"], 3);
        b.assign(Channel::Chat, at(10));
        let order = selection_order([&a, &b], Channel::Chat, SelectionPolicy::LeastOccupied);
        assert_eq!(ids(&order), ["b", "a"]);
        let c = agent("c", &["d"], 3);
        let d = agent("d", &["d"], 3);
        let order = selection_order([&d, &c], Channel::Chat, SelectionPolicy::LongestIdle);
        assert_eq!(ids(&order), ["c", "d"]);
    }

    #[test]
    fn an_agent_in_several_departments_takes_the_best_ranked_head() {
        let config = RoutingConfig::default();
        let agents = [agent("a", &["billing", "sales"], 2)];
        let tickets = [
            ticket("billing-late", "billing", 600),
            ticket("sales-soon", "sales", 300),
            ticket("returns", "returns", 10),
        ];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at(0));
        let next = snapshot.next_ticket_for(&agents[0]).map(|t| t.id.as_str());
        assert_eq!(next, Some("sales-soon"));
    }

    #[test]
    fn an_escalated_ticket_is_taken_before_an_earlier_due_one_in_another_queue() {
        let config = RoutingConfig::default();
        let agents = [agent("a", &["billing", "sales"], 2)];
        let escalated = TicketRef {
            escalation_level: 1,
            ..ticket("escalated", "billing", 3_600)
        };
        let tickets = [ticket("due", "sales", 60), escalated];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at(0));
        let next = snapshot.next_ticket_for(&agents[0]).map(|t| t.id.as_str());
        assert_eq!(next, Some("escalated"));
    }

    #[test]
    fn a_ticket_with_a_pending_offer_is_not_offered_again() {
        let config = RoutingConfig::default();
        let agents = [agent("a", &["d"], 2), agent("b", &["d"], 2)];
        let offered = TicketRef {
            offered_to: Some("a".into()),
            ..ticket("t", "d", 60)
        };
        let tickets = [offered];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at(0));
        assert_eq!(snapshot.next_ticket_for(&agents[1]), None);
        assert!(snapshot.dispatch().is_empty());
    }

    #[test]
    fn a_dispatch_round_gives_each_ticket_the_best_agent_left() {
        let config = RoutingConfig::default();
        let mut busy = agent("busy", &["d"], 2);
        busy.assign(Channel::Chat, at(0));
        let agents = [agent("x", &["d"], 2), busy, agent("y", &["e"], 2)];
        let tickets = [
            ticket("first", "d", 10),
            ticket("second", "d", 20),
            ticket("third", "d", 30),
            ticket("other", "e", 40),
        ];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at(0));
        let pairs: Vec<(String, String)> = snapshot
            .dispatch()
            .into_iter()
            .map(|m| (m.ticket_id, m.agent_id))
            .collect();
        assert_eq!(
            pairs,
            [
                ("first".to_owned(), "x".to_owned()),
                ("second".to_owned(), "busy".to_owned()),
                ("other".to_owned(), "y".to_owned()),
            ]
        );
    }

    #[test]
    fn a_dispatch_names_the_step_that_reached_the_agent() {
        let config = RoutingConfig::default();
        let agents = [agent("manager", &[], 2), agent("a", &["d"], 2)];
        let key_account = TicketRef {
            key_account: true,
            account_manager_id: Some("manager".into()),
            ..ticket("t", "d", 60)
        };
        let tickets = [key_account];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at(0));
        let matches = snapshot.dispatch();
        assert_eq!(matches.len(), 1);
        assert_eq!(matches[0].agent_id, "manager");
        assert_eq!(matches[0].step_kind, StepKind::AccountManager);
        // Once the department step starts, the department agent is the less occupied choice
        // only if the manager is busier.
        let later = Snapshot::new(&config, &agents, &tickets, at(200));
        assert_eq!(later.eligible_agents(&tickets[0]).len(), 2);
    }

    /// Runs a queue of equal chat tickets through `agents` equal agents; each ticket takes
    /// `handle` seconds. Returns the assignment count of each agent after every assignment.
    fn simulate(
        agents: usize,
        capacity: u32,
        policy: SelectionPolicy,
        gaps: &[i64],
        handle: i64,
    ) -> Vec<Vec<u32>> {
        let config = RoutingConfig {
            selection: policy,
            ..RoutingConfig::default()
        };
        let mut states: Vec<AgentState> = (0..agents)
            .map(|i| agent(&format!("agent-{i}"), &["d"], capacity))
            .collect();
        let mut counts = vec![0u32; agents];
        let mut history = Vec::new();
        let mut arrivals: Vec<i64> = gaps
            .iter()
            .scan(0, |t, gap| {
                *t += gap;
                Some(*t)
            })
            .collect();
        arrivals.reverse();
        let mut ends: Vec<(i64, usize)> = Vec::new();
        let mut waiting: Vec<TicketRef> = Vec::new();
        let mut next_id = 0;
        loop {
            // The next event: an end first when it ties with an arrival.
            let next_end = ends.iter().map(|(t, _)| *t).min();
            let now = match (next_end, arrivals.last()) {
                (None, None) => break,
                (Some(e), Some(a)) if e <= *a => e,
                (Some(e), None) => e,
                (_, Some(a)) => *a,
            };
            ends.retain(|&(t, i)| {
                if t == now {
                    states[i].release(Channel::Chat, at(now));
                }
                t != now
            });
            while arrivals.last() == Some(&now) {
                arrivals.pop();
                waiting.push(TicketRef::new(
                    format!("t{next_id:05}"),
                    "d",
                    Channel::Chat,
                    Tier::B,
                    at(now),
                    at(now + 3_600),
                ));
                next_id += 1;
            }
            let matches = Snapshot::new(&config, &states, &waiting, at(now)).dispatch();
            for m in matches {
                let i = states
                    .iter()
                    .position(|a| a.id == m.agent_id)
                    .expect("known agent");
                states[i].assign(Channel::Chat, at(now));
                ends.push((now + handle, i));
                waiting.retain(|t| t.id != m.ticket_id);
                counts[i] += 1;
                history.push(counts.clone());
            }
        }
        history
    }

    fn spread(counts: &[u32]) -> u32 {
        let max = counts.iter().max().copied().unwrap_or(0);
        let min = counts.iter().min().copied().unwrap_or(0);
        max - min
    }

    #[test]
    fn single_capacity_agents_take_turns() {
        let history = simulate(3, 1, SelectionPolicy::LongestIdle, &[1; 9], 2);
        assert_eq!(history.last().map(Vec::as_slice), Some(&[3, 3, 3][..]));
    }

    fn arb_policy() -> impl Strategy<Value = SelectionPolicy> {
        prop_oneof![
            Just(SelectionPolicy::LeastOccupied),
            Just(SelectionPolicy::LongestIdle)
        ]
    }

    /// [`Snapshot::dispatch`] as first written: every eligible agent compared for every
    /// ticket. The property test below holds the sorted version to it.
    fn dispatch_by_comparing_all(snapshot: &Snapshot<'_>) -> Vec<Match> {
        let mut matched: BTreeSet<&str> = BTreeSet::new();
        let mut matches = Vec::new();
        for ticket in snapshot.tickets.iter().filter(|t| t.offered_to.is_none()) {
            let ladder = snapshot.ladder(ticket);
            let best = snapshot
                .agents()
                .filter(|a| !matched.contains(a.id.as_str()))
                .filter(|a| snapshot.eligibility(a, ticket, &ladder).is_ok())
                .min_by(|a, b| compare_agents(a, b, ticket.channel, snapshot.config.selection));
            if let Some(agent) = best {
                matched.insert(agent.id.as_str());
                matches.push(Match::of(agent, ticket, &ladder));
            }
        }
        matches
    }

    fn arb_channel() -> impl Strategy<Value = Channel> {
        prop_oneof![
            Just(Channel::Chat),
            Just(Channel::Voice),
            Just(Channel::Web)
        ]
    }

    proptest! {
        #[test]
        fn a_round_matches_as_comparing_every_eligible_agent_would(
            policy in arb_policy(),
            agents in proptest::collection::vec(
                (0u32..3, 0u32..3, 0i64..200, any::<bool>(), 0u8..3, any::<bool>()),
                0..12,
            ),
            tickets in proptest::collection::vec(
                (arb_channel(), 0i64..600, any::<bool>(), 0u8..3),
                0..10,
            ),
        ) {
            let config = RoutingConfig { selection: policy, ..RoutingConfig::default() };
            let departments = ["d", "e"];
            let states: Vec<AgentState> = agents
                .iter()
                .enumerate()
                .map(|(i, &(chat, active, idle, skilled, dept, available))| {
                    let mut a = agent(&format!("agent-{i:02}"), &[departments[usize::from(dept) % 2]], chat);
                    if dept == 2 {
                        a.departments.insert("e".to_owned());
                    }
                    a.idle_since = Some(at(idle));
                    for _ in 0..active.min(chat) {
                        a.assign(Channel::Chat, at(idle));
                    }
                    if skilled {
                        a.skills.insert("language:fi".to_owned());
                    }
                    if !available {
                        a.presence = Presence::Offline;
                    }
                    a
                })
                .collect();
            let refs: Vec<TicketRef> = tickets
                .iter()
                .enumerate()
                .map(|(i, &(channel, due, needs_skill, dept))| {
                    let mut t = TicketRef::new(
                        format!("t-{i:02}"),
                        departments[usize::from(dept) % 2],
                        channel,
                        Tier::B,
                        T0,
                        at(due),
                    );
                    if needs_skill {
                        t.required_skills.insert("language:fi".to_owned());
                    }
                    t
                })
                .collect();
            let snapshot = Snapshot::new(&config, &states, &refs, at(100));
            prop_assert_eq!(snapshot.dispatch(), dispatch_by_comparing_all(&snapshot));
        }

        #[test]
        fn assignments_spread_evenly_across_equal_agents(
            agents in 2usize..6,
            capacity in 1u32..4,
            policy in arb_policy(),
            gaps in proptest::collection::vec(0i64..30, 1..80),
            handle in 1i64..120,
        ) {
            for counts in simulate(agents, capacity, policy, &gaps, handle) {
                prop_assert!(spread(&counts) <= 1, "counts {:?}", counts);
            }
        }

        #[test]
        fn a_declined_agent_is_never_chosen_again_for_that_ticket(
            agents in 1usize..6,
            answers in proptest::collection::vec(any::<bool>(), 1..10),
            idle in proptest::collection::vec(0i64..100, 6),
        ) {
            let config = RoutingConfig {
                offers: OfferConfig { away_after_missed: 0, ..OfferConfig::default() },
                ..RoutingConfig::default()
            };
            let mut states: Vec<AgentState> = (0..agents)
                .map(|i| AgentState {
                    idle_since: Some(at(idle[i])),
                    ..agent(&format!("agent-{i}"), &["d"], 1)
                })
                .collect();
            let mut t = ticket("t", "d", 60);
            let mut refused: Vec<String> = Vec::new();
            for declined in answers {
                let tickets = [t.clone()];
                let snapshot = Snapshot::new(&config, &states, &tickets, at(100));
                let Some(m) = snapshot.dispatch().into_iter().next() else {
                    prop_assert_eq!(refused.len(), agents, "only when everyone refused");
                    break;
                };
                prop_assert!(!refused.contains(&m.agent_id));
                let i = states.iter().position(|a| a.id == m.agent_id).expect("known");
                make_offer(&mut states[i], &mut t);
                let outcome = if declined { OfferOutcome::Declined } else { OfferOutcome::Expired };
                let _ = end_offer(&mut states[i], &mut t, outcome, at(100), &config.offers);
                refused.push(m.agent_id);
            }
        }
    }
}
