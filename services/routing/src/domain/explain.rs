//! ExplainTicket and ExplainAgent: why routing does what it does, from a [`Snapshot`].
//!
//! Both run the same dispatch round as the router ([`Snapshot::dispatch`]), so an explanation
//! says what the router would do now, not an approximation of it. An eligible agent who is not
//! offered a ticket is NOT_SELECTED (another agent comes first for it) or HIGHER_RANKED_TICKET
//! (the round gives them a ticket ranked ahead of it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use time::OffsetDateTime;

use super::agent::{AgentState, IneligibilityReason, Ineligible, ticket_blocks};
use super::queue::{TicketRef, elapsed};
use super::select::{Match, Snapshot, compare_agents};
use super::steps::{Step, StepKind};

/// One step of a ticket's ladder with its start time (proto `RoutingStep`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTiming {
    /// The step.
    pub step: Step,
    /// Enqueue time plus the step's start; `None` beyond the representable range.
    pub start_time: Option<OffsetDateTime>,
}

/// Whether one agent can be offered one ticket, and if not why (proto `AgentVerdict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentVerdict {
    /// The agent.
    pub agent_id: String,
    /// The agent's name.
    pub display_name: String,
    /// Whether the agent could be offered the ticket now.
    pub eligible: bool,
    /// For an eligible agent, the 1-based place in the selection order; 0 otherwise.
    pub selection_order: u32,
    /// Why the agent is not being offered the ticket. For an eligible agent at most
    /// NOT_SELECTED or HIGHER_RANKED_TICKET; empty for the agent who gets (or holds) the offer.
    pub reasons: Vec<IneligibilityReason>,
    /// For MISSING_SKILL, the required skills the agent lacks.
    pub missing_skills: Vec<String>,
}

/// Where a waiting ticket stands in routing (proto `TicketExplanation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketExplanation {
    /// The ticket.
    pub ticket_id: String,
    /// The 1-based rank in its department's queue.
    pub rank: u32,
    /// Tickets waiting in the queue.
    pub queue_length: u32,
    /// When an agent should have taken it.
    pub pickup_due: OffsetDateTime,
    /// The ladder, in order.
    pub steps: Vec<StepTiming>,
    /// The 0-based index of the current step; `None` if none has started.
    pub current_step_index: Option<usize>,
    /// When the next step starts; `None` if the current step is the last.
    pub next_step_time: Option<OffsetDateTime>,
    /// The agent holding the pending offer, if any.
    pub offered_to: Option<String>,
    /// The agent this round would offer it to, if no offer is pending.
    pub would_offer_to: Option<String>,
    /// How many agents could be offered the ticket now.
    pub eligible_agent_count: u32,
    /// Every agent the ticket could ever reach: eligible ones first in selection order, then
    /// the rest by id.
    pub agents: Vec<AgentVerdict>,
    /// When the explanation was computed.
    pub explain_time: OffsetDateTime,
}

/// One queue from one agent's point of view (proto `AgentQueueView`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentQueueView {
    /// The department.
    pub department: String,
    /// Tickets waiting in it.
    pub waiting_count: u32,
    /// Waiting tickets the agent could be offered now, ignoring agent-wide blocks (presence,
    /// disabled, reserved); tickets with another agent's pending offer do not count.
    pub eligible_waiting_count: u32,
    /// The best-ranked of those.
    pub next_ticket_id: Option<String>,
    /// Why the agent cannot be offered the queue's head ticket now; empty if they can or the
    /// queue is empty.
    pub head_ticket_reasons: Vec<IneligibilityReason>,
}

/// An agent's routing situation (proto `AgentExplanation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentExplanation {
    /// The agent.
    pub agent_id: String,
    /// Whether this round would offer the agent a ticket.
    pub receiving_offers: bool,
    /// The ticket it would offer, if any.
    pub next_ticket_id: Option<String>,
    /// What keeps the agent from receiving offers, every reason that applies; empty if
    /// `receiving_offers`.
    pub reasons: Vec<IneligibilityReason>,
    /// One entry per department the agent serves, by department.
    pub queues: Vec<AgentQueueView>,
    /// How long the agent has been idle; `None` while a ticket is active.
    pub idle_for: Option<Duration>,
    /// When the explanation was computed.
    pub explain_time: OffsetDateTime,
}

/// Explains a waiting ticket; `None` if the snapshot has no waiting ticket with that id.
pub fn explain_ticket(snapshot: &Snapshot<'_>, ticket_id: &str) -> Option<TicketExplanation> {
    let ticket = snapshot.ticket(ticket_id)?;
    let now = snapshot.now();
    let ladder = snapshot.ladder(ticket);
    let queue: Vec<&TicketRef> = snapshot.queue(&ticket.department).collect();
    let rank = queue
        .iter()
        .position(|t| t.id == ticket.id)
        .map_or(0, |i| i + 1);
    let round = snapshot.dispatch();
    let by_agent: BTreeMap<&str, &Match> = round.iter().map(|m| (m.agent_id.as_str(), m)).collect();
    let would_offer_to = round
        .iter()
        .find(|m| m.ticket_id == ticket.id)
        .map(|m| m.agent_id.clone());
    let rank_key = ticket.rank_key();

    let mut eligible: Vec<&AgentState> = Vec::new();
    let mut ineligible: Vec<(&AgentState, Ineligible)> = Vec::new();
    for agent in reachable_agents(snapshot, ticket, &ladder.steps) {
        match snapshot.eligibility(agent, ticket, &ladder) {
            Ok(()) => eligible.push(agent),
            Err(why) => ineligible.push((agent, why)),
        }
    }
    let policy = snapshot.config().selection;
    eligible.sort_by(|a, b| compare_agents(a, b, ticket.channel, policy));

    let mut agents = Vec::with_capacity(eligible.len() + ineligible.len());
    for (i, agent) in eligible.iter().enumerate() {
        let offered_here = ticket.offered_to.as_deref() == Some(agent.id.as_str())
            || would_offer_to.as_deref() == Some(agent.id.as_str());
        let reasons = if offered_here {
            Vec::new()
        } else {
            let elsewhere_ahead = by_agent.get(agent.id.as_str()).is_some_and(|m| {
                snapshot
                    .ticket(&m.ticket_id)
                    .is_some_and(|other| other.rank_key() < rank_key)
            });
            if elsewhere_ahead {
                vec![IneligibilityReason::HigherRankedTicket]
            } else {
                vec![IneligibilityReason::NotSelected]
            }
        };
        agents.push(AgentVerdict {
            agent_id: agent.id.clone(),
            display_name: agent.display_name.clone(),
            eligible: true,
            selection_order: u32::try_from(i + 1).unwrap_or(u32::MAX),
            reasons,
            missing_skills: Vec::new(),
        });
    }
    for (agent, why) in ineligible {
        agents.push(AgentVerdict {
            agent_id: agent.id.clone(),
            display_name: agent.display_name.clone(),
            eligible: false,
            selection_order: 0,
            reasons: why.reasons,
            missing_skills: why.missing_skills,
        });
    }

    let age = ticket.age(now);
    Some(TicketExplanation {
        ticket_id: ticket.id.clone(),
        rank: count(rank),
        queue_length: count(queue.len()),
        pickup_due: ticket.pickup_due,
        steps: ladder
            .steps
            .iter()
            .map(|step| StepTiming {
                step: step.clone(),
                start_time: step.start_time(ticket.enqueue_time),
            })
            .collect(),
        current_step_index: ladder.current,
        next_step_time: ladder
            .next(age)
            .and_then(|step| step.start_time(ticket.enqueue_time)),
        offered_to: ticket.offered_to.clone(),
        would_offer_to,
        eligible_agent_count: count(eligible.len()),
        agents,
        explain_time: now,
    })
}

/// Explains an agent; `None` if the snapshot has no agent with that id.
pub fn explain_agent(snapshot: &Snapshot<'_>, agent_id: &str) -> Option<AgentExplanation> {
    let agent = snapshot.agent(agent_id)?;
    let now = snapshot.now();
    let mut reasons = agent.agent_blocks(None);
    if agent.capacity.total() == 0 {
        reasons.push(IneligibilityReason::NoChannelCapacity);
    } else if agent.on_voice() {
        reasons.push(IneligibilityReason::VoiceTakesAll);
    } else if agent.fully_occupied() {
        reasons.push(IneligibilityReason::AtCapacity);
    }

    let queues: Vec<AgentQueueView> = agent
        .departments
        .iter()
        .map(|department| queue_view(snapshot, agent, department))
        .collect();

    let next_ticket_id = snapshot
        .dispatch()
        .into_iter()
        .find(|m| m.agent_id == agent.id)
        .map(|m| m.ticket_id);
    let receiving_offers = reasons.is_empty() && next_ticket_id.is_some();
    if !receiving_offers && reasons.is_empty() {
        reasons = unblocked_agent_reasons(snapshot, agent, &queues);
    }
    reasons.sort();
    reasons.dedup();

    Some(AgentExplanation {
        agent_id: agent.id.clone(),
        receiving_offers,
        next_ticket_id,
        reasons,
        queues,
        idle_for: agent.idle_since.map(|since| elapsed(since, now)),
        explain_time: now,
    })
}

/// Why an agent with no agent-wide block gets no offer in this round.
fn unblocked_agent_reasons(
    snapshot: &Snapshot<'_>,
    agent: &AgentState,
    queues: &[AgentQueueView],
) -> Vec<IneligibilityReason> {
    let mut reasons = Vec::new();
    if agent.departments.is_empty() {
        reasons.push(IneligibilityReason::NoDepartments);
    }
    let eligible_somewhere = snapshot.tickets().iter().any(|t| {
        t.offered_to.is_none() && snapshot.eligibility(agent, t, &snapshot.ladder(t)).is_ok()
    });
    if eligible_somewhere {
        // Every ticket it could take goes to an agent ahead of it in selection order.
        reasons.push(IneligibilityReason::NotSelected);
    } else if queues.iter().all(|q| q.waiting_count == 0) {
        reasons.push(IneligibilityReason::NoWaitingTickets);
    } else {
        reasons.extend(
            queues
                .iter()
                .flat_map(|q| q.head_ticket_reasons.iter().copied()),
        );
    }
    reasons
}

fn queue_view(snapshot: &Snapshot<'_>, agent: &AgentState, department: &str) -> AgentQueueView {
    let queue: Vec<&TicketRef> = snapshot.queue(department).collect();
    let mut eligible = queue.iter().filter(|t| {
        let free = t
            .offered_to
            .as_deref()
            .is_none_or(|holder| holder == agent.id);
        let ladder = snapshot.ladder(t);
        free && ticket_blocks(agent, t, &ladder.steps, ladder.current)
            .reasons
            .is_empty()
    });
    let next_ticket_id = eligible.next().map(|t| t.id.clone());
    let eligible_waiting_count = count(usize::from(next_ticket_id.is_some()) + eligible.count());
    let head_ticket_reasons = queue
        .first()
        .and_then(|head| {
            snapshot
                .eligibility(agent, head, &snapshot.ladder(head))
                .err()
        })
        .map(|why| why.reasons)
        .unwrap_or_default();
    AgentQueueView {
        department: department.to_owned(),
        waiting_count: count(queue.len()),
        eligible_waiting_count,
        next_ticket_id,
        head_ticket_reasons,
    }
}

/// Every agent the ticket could ever reach: the department's agents, the account manager, the
/// members of the ladder's teams, the preferred agent, and agents offered it before. By id.
fn reachable_agents<'a>(
    snapshot: &Snapshot<'a>,
    ticket: &TicketRef,
    steps: &[Step],
) -> Vec<&'a AgentState> {
    let mut named: BTreeSet<&str> = ticket.declined_by.iter().map(String::as_str).collect();
    named.extend(ticket.offered_to.as_deref());
    named.extend(ticket.preferred_agent_id.as_deref());
    if ticket.key_account {
        named.extend(ticket.account_manager_id.as_deref());
    }
    let teams: BTreeSet<&str> = steps
        .iter()
        .filter(|s| s.kind == StepKind::Team)
        .map(|s| s.target.as_str())
        .collect();
    snapshot
        .agents()
        .filter(|a| {
            a.departments.contains(&ticket.department)
                || named.contains(a.id.as_str())
                || a.team_id.as_deref().is_some_and(|t| teams.contains(t))
        })
        .collect()
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::agent::{AwayReason, ChannelCounts, Presence};
    use crate::domain::config::RoutingConfig;
    use tierline_types::{Channel, Tier};
    use time::macros::datetime;

    use IneligibilityReason as R;

    const T0: OffsetDateTime = datetime!(2025-03-03 09:00 UTC);

    fn at(secs: i64) -> OffsetDateTime {
        T0 + time::Duration::seconds(secs)
    }

    fn agent(id: &str, departments: &[&str]) -> AgentState {
        AgentState {
            departments: departments.iter().map(|d| (*d).to_owned()).collect(),
            capacity: ChannelCounts::of(&[(Channel::Chat, 2)]),
            presence: Presence::Available,
            connected: true,
            ..AgentState::new(id, format!("Agent {id}"), T0)
        }
    }

    fn ticket(id: &str, due: i64) -> TicketRef {
        TicketRef::new(id, "billing", Channel::Chat, Tier::B, T0, at(due))
    }

    fn verdicts(e: &TicketExplanation) -> Vec<(&str, bool, u32, Vec<R>)> {
        e.agents
            .iter()
            .map(|v| {
                (
                    v.agent_id.as_str(),
                    v.eligible,
                    v.selection_order,
                    v.reasons.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn a_ticket_explanation_gives_rank_steps_and_a_verdict_per_agent() {
        let config = RoutingConfig::default();
        let mut later = agent("later", &["billing"]);
        later.idle_since = Some(at(30));
        let agents = [
            agent("zed", &["billing"]),
            later,
            AgentState {
                presence: Presence::Away(AwayReason::Meal),
                ..agent("away", &["billing"])
            },
            AgentState {
                idle_since: Some(at(40)),
                ..agent("declined", &["billing"])
            },
            agent("elsewhere", &["sales"]),
        ];
        let mut t = ticket("t", 600);
        t.declined_by.insert("declined".into());
        let tickets = [ticket("ahead", 300), t];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at(60));
        let e = explain_ticket(&snapshot, "t").expect("waiting");
        assert_eq!((e.rank, e.queue_length), (2, 2));
        assert_eq!(e.pickup_due, at(600));
        assert_eq!(e.steps.len(), 1);
        assert_eq!(e.steps[0].start_time, Some(T0));
        assert_eq!((e.current_step_index, e.next_step_time), (Some(0), None));
        assert_eq!(e.eligible_agent_count, 2);
        assert_eq!(e.would_offer_to.as_deref(), Some("later"));
        assert_eq!(
            verdicts(&e),
            [
                ("zed", true, 1, vec![R::HigherRankedTicket]),
                ("later", true, 2, vec![]),
                ("away", false, 0, vec![R::Away]),
                ("declined", false, 0, vec![R::DeclinedBefore]),
            ]
        );
        assert_eq!(e.explain_time, at(60));
    }

    #[test]
    fn with_a_pending_offer_the_holder_has_no_reason_and_the_others_are_not_selected() {
        let config = RoutingConfig::default();
        let mut holder = agent("b", &["billing"]);
        holder.offer("t");
        let agents = [agent("a", &["billing"]), holder];
        let t = TicketRef {
            offered_to: Some("b".into()),
            ..ticket("t", 600)
        };
        let tickets = [t];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at(0));
        let e = explain_ticket(&snapshot, "t").expect("waiting");
        assert_eq!(e.offered_to.as_deref(), Some("b"));
        assert_eq!(e.would_offer_to, None);
        assert_eq!(
            verdicts(&e),
            [("a", true, 1, vec![R::NotSelected]), ("b", true, 2, vec![])]
        );
    }

    #[test]
    fn a_key_account_explanation_shows_the_ladder_and_who_waits_for_a_step() {
        let config = RoutingConfig::default();
        let agents = [
            agent("manager", &[]),
            AgentState {
                team_id: Some("key-accounts".into()),
                ..agent("member", &[])
            },
            agent("dept", &["billing"]),
            AgentState {
                skills: BTreeSet::from(["language:de".to_owned()]),
                ..agent("skilled", &["billing"])
            },
        ];
        let t = TicketRef {
            key_account: true,
            account_manager_id: Some("manager".into()),
            required_skills: BTreeSet::from(["language:de".to_owned()]),
            ..ticket("t", 600)
        };
        let tickets = [t];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at(10));
        let e = explain_ticket(&snapshot, "t").expect("waiting");
        let kinds: Vec<StepKind> = e.steps.iter().map(|s| s.step.kind).collect();
        assert_eq!(
            kinds,
            [
                StepKind::AccountManager,
                StepKind::Team,
                StepKind::Department
            ]
        );
        assert_eq!(e.current_step_index, Some(0));
        assert_eq!(e.next_step_time, Some(at(60)));
        assert_eq!(
            verdicts(&e),
            [
                ("manager", true, 1, vec![]),
                ("dept", false, 0, vec![R::MissingSkill]),
                (
                    "member",
                    false,
                    0,
                    vec![R::NotInDepartment, R::MissingSkill]
                ),
                ("skilled", false, 0, vec![R::NotInStep]),
            ]
        );
        assert_eq!(e.agents[1].missing_skills, ["language:de"]);
    }

    #[test]
    fn an_unknown_ticket_or_agent_has_no_explanation() {
        let config = RoutingConfig::default();
        let snapshot = Snapshot::new(&config, &[], &[], T0);
        assert_eq!(explain_ticket(&snapshot, "nope"), None);
        assert_eq!(explain_agent(&snapshot, "nope"), None);
    }

    #[test]
    fn an_agent_who_would_get_a_ticket_is_receiving_offers() {
        let config = RoutingConfig::default();
        let agents = [agent("a", &["billing", "sales"])];
        let tickets = [ticket("t", 600)];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at(90));
        let e = explain_agent(&snapshot, "a").expect("known");
        assert!(e.receiving_offers);
        assert_eq!(e.next_ticket_id.as_deref(), Some("t"));
        assert!(e.reasons.is_empty());
        assert_eq!(e.idle_for, Some(Duration::from_secs(90)));
        let departments: Vec<(&str, u32, u32)> = e
            .queues
            .iter()
            .map(|q| {
                (
                    q.department.as_str(),
                    q.waiting_count,
                    q.eligible_waiting_count,
                )
            })
            .collect();
        assert_eq!(departments, [("billing", 1, 1), ("sales", 0, 0)]);
    }

    #[test]
    fn an_away_agent_sees_the_tickets_they_could_take() {
        let config = RoutingConfig::default();
        let agents = [AgentState {
            presence: Presence::Away(AwayReason::Break),
            ..agent("a", &["billing"])
        }];
        let tickets = [ticket("t1", 600), ticket("t2", 900)];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at(0));
        let e = explain_agent(&snapshot, "a").expect("known");
        assert!(!e.receiving_offers);
        assert_eq!(e.reasons, [R::Away]);
        assert_eq!(e.queues[0].eligible_waiting_count, 2);
        assert_eq!(e.queues[0].next_ticket_id.as_deref(), Some("t1"));
        assert_eq!(e.queues[0].head_ticket_reasons, [R::Away]);
    }

    #[test]
    fn agent_wide_capacity_reasons_are_reported() {
        let config = RoutingConfig::default();
        let mut full = agent("full", &["billing"]);
        full.assign(Channel::Chat, T0);
        full.assign(Channel::Chat, T0);
        let mut on_call = agent("call", &["billing"]);
        on_call.capacity.set(Channel::Voice, 1);
        on_call.assign(Channel::Voice, T0);
        let none = AgentState {
            capacity: ChannelCounts::default(),
            ..agent("none", &["billing"])
        };
        let agents = [full, on_call, none];
        let tickets = [ticket("t", 600)];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at(0));
        let reasons = |id: &str| explain_agent(&snapshot, id).expect("known").reasons;
        assert_eq!(reasons("full"), [R::AtCapacity]);
        assert_eq!(reasons("call"), [R::VoiceTakesAll]);
        assert_eq!(reasons("none"), [R::NoChannelCapacity]);
    }

    #[test]
    fn an_idle_agent_without_work_is_told_why() {
        let config = RoutingConfig::default();
        let agents = [
            agent("a", &["billing"]),
            agent("b", &["billing"]),
            agent("loner", &[]),
            AgentState {
                skills: BTreeSet::new(),
                ..agent("unskilled", &["sales"])
            },
        ];
        let skilled_sale = TicketRef {
            department: "sales".into(),
            required_skills: BTreeSet::from(["product:fibre".to_owned()]),
            ..ticket("s", 600)
        };
        let tickets = [ticket("t", 600), skilled_sale];
        let snapshot = Snapshot::new(&config, &agents, &tickets, at(0));
        let reasons = |id: &str| explain_agent(&snapshot, id).expect("known").reasons;
        assert_eq!(reasons("a"), Vec::<R>::new());
        assert_eq!(reasons("b"), [R::NotSelected]);
        assert_eq!(reasons("loner"), [R::NoWaitingTickets, R::NoDepartments]);
        assert_eq!(reasons("unskilled"), [R::MissingSkill]);
    }
}
