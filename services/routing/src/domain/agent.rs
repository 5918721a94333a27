//! Agents as the router sees them, and whether one agent may be offered one ticket.
//!
//! [`AgentState`] joins the durable record (departments, team, skills, capacity per channel,
//! disabled) with live status (presence, connection, active tickets, idle since, pending offer).
//! [`eligibility`] answers for one agent, one ticket and the ticket's current step, with every
//! [`IneligibilityReason`] that applies.
//!
//! Capacity: each channel has its own limit (a channel not listed has none). A voice call takes
//! all of it: a voice ticket is offered only to an agent with no active ticket, and while one is
//! active the agent gets no other offers. Only ACTIVE tickets count; parked ones do not.
//!
//! Idle time counts from the end of the agent's last active ticket ([`AgentState::release`]).
//! Offers do not touch it, so an agent who declines or ignores an offer stays as idle as before.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use tierline_types::Channel;
use time::OffsetDateTime;

use super::queue::TicketRef;
use super::steps::{Step, StepKind};

/// Why an agent is away (proto `AwayReason`, without UNSPECIFIED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AwayReason {
    /// A short break.
    Break,
    /// A meal break.
    Meal,
    /// A meeting or coaching session.
    Meeting,
    /// Training.
    Training,
    /// Finishing work on a contact.
    WrapUp,
    /// Set by the router: offers expired unanswered.
    NotResponding,
    /// Any other reason.
    Other,
    /// Signed in, not yet ready.
    NotReady,
}

/// Whether an agent takes work (proto `AgentPresence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Presence {
    /// Ready for offers, capacity allowing.
    Available,
    /// Signed in, taking no new offers.
    Away(AwayReason),
    /// Signed out, or the desktop session lapsed.
    Offline,
}

/// A count per channel: capacities or active tickets. Missing channels count zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ChannelCounts([u32; 6]);

impl ChannelCounts {
    /// Counts from (channel, count) pairs; a repeated channel keeps the last count.
    pub fn of(pairs: &[(Channel, u32)]) -> ChannelCounts {
        let mut counts = ChannelCounts::default();
        for &(channel, n) in pairs {
            counts.set(channel, n);
        }
        counts
    }

    /// The count of `channel`.
    pub fn get(&self, channel: Channel) -> u32 {
        self.0[slot(channel)]
    }

    /// Sets the count of `channel`.
    pub fn set(&mut self, channel: Channel, n: u32) {
        self.0[slot(channel)] = n;
    }

    /// The sum over all channels.
    pub fn total(&self) -> u32 {
        self.0.iter().fold(0u32, |sum, n| sum.saturating_add(*n))
    }
}

fn slot(channel: Channel) -> usize {
    match channel {
        Channel::Voice => 0,
        Channel::Web => 1,
        Channel::Email => 2,
        Channel::Chat => 3,
        Channel::Counter => 4,
        Channel::Api => 5,
    }
}

/// An agent's record and live routing status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentState {
    /// The agent id (free text, at most 128 characters elsewhere in the system).
    pub id: String,
    /// Name shown to supervisors.
    pub display_name: String,
    /// Departments (queues) served.
    pub departments: BTreeSet<String>,
    /// The team id, e.g. "key-accounts".
    pub team_id: Option<String>,
    /// Skills held, `<kind>:<value>`, compared exactly (the proto has them in lower case).
    pub skills: BTreeSet<String>,
    /// Tickets of each channel the agent works at once.
    pub capacity: ChannelCounts,
    /// A disabled agent gets no offers.
    pub disabled: bool,
    /// Presence.
    pub presence: Presence,
    /// Whether a desktop session is connected now (false within a resume grace period).
    pub connected: bool,
    /// ACTIVE tickets per channel.
    pub active: ChannelCounts,
    /// Since when the agent has had no active ticket; `None` while they have one.
    pub idle_since: Option<OffsetDateTime>,
    /// When the agent was last assigned a ticket; `None` if never. Breaks ties between agents
    /// who are equally occupied but not idle (see [`crate::domain::select`]).
    pub last_assigned: Option<OffsetDateTime>,
    /// Tickets assigned in the current counting period (the live-state layer resets it, e.g.
    /// daily). Breaks exact ties, so equal agents assigned at the same instant still take turns.
    pub assigned_count: u32,
    /// The ticket of the agent's pending offer, if any.
    pub pending_offer: Option<String>,
    /// Offers in a row that expired unanswered.
    pub missed_offers_in_row: u32,
}

impl AgentState {
    /// An agent with no departments, team, skills or capacity, OFFLINE, idle since `idle_since`.
    pub fn new(
        id: impl Into<String>,
        display_name: impl Into<String>,
        idle_since: OffsetDateTime,
    ) -> AgentState {
        AgentState {
            id: id.into(),
            display_name: display_name.into(),
            departments: BTreeSet::new(),
            team_id: None,
            skills: BTreeSet::new(),
            capacity: ChannelCounts::default(),
            disabled: false,
            presence: Presence::Offline,
            connected: false,
            active: ChannelCounts::default(),
            idle_since: Some(idle_since),
            last_assigned: None,
            assigned_count: 0,
            pending_offer: None,
            missed_offers_in_row: 0,
        }
    }

    /// Whether the agent could take an offer as far as presence goes: AVAILABLE and not
    /// disabled (a brief disconnection within the grace period does not count against it).
    pub fn is_available(&self) -> bool {
        !self.disabled && self.presence == Presence::Available
    }

    /// Whether the agent has an active voice ticket (which takes all capacity).
    pub fn on_voice(&self) -> bool {
        self.active.get(Channel::Voice) > 0
    }

    /// Occupancy on `channel` as (active, capacity).
    pub fn occupancy(&self, channel: Channel) -> (u32, u32) {
        (self.active.get(channel), self.capacity.get(channel))
    }

    /// The required skills the agent lacks, in order.
    pub fn missing_skills<'a>(&self, required: &'a BTreeSet<String>) -> Vec<&'a str> {
        required
            .iter()
            .filter(|skill| !self.skills.contains(*skill))
            .map(String::as_str)
            .collect()
    }

    /// What keeps the agent from any offer, whatever the ticket: disabled, offline,
    /// disconnected, away, or reserved by a pending offer (other than one of `for_ticket`).
    pub fn agent_blocks(&self, for_ticket: Option<&str>) -> Vec<IneligibilityReason> {
        let mut reasons = Vec::new();
        match self.presence {
            Presence::Offline => reasons.push(IneligibilityReason::Offline),
            Presence::Away(_) => reasons.push(IneligibilityReason::Away),
            Presence::Available => {}
        }
        if self.presence != Presence::Offline && !self.connected {
            reasons.push(IneligibilityReason::Disconnected);
        }
        if self.disabled {
            reasons.push(IneligibilityReason::Disabled);
        }
        if let Some(pending) = &self.pending_offer
            && Some(pending.as_str()) != for_ticket
        {
            reasons.push(IneligibilityReason::Reserved);
        }
        reasons.sort();
        reasons
    }

    /// What keeps the agent from a ticket of `channel` for capacity.
    pub fn capacity_blocks(&self, channel: Channel) -> Vec<IneligibilityReason> {
        let mut reasons = Vec::new();
        let (active, capacity) = self.occupancy(channel);
        if capacity == 0 {
            reasons.push(IneligibilityReason::NoChannelCapacity);
            return reasons;
        }
        if active >= capacity {
            reasons.push(IneligibilityReason::AtCapacity);
        }
        if self.on_voice() || (channel == Channel::Voice && self.active.total() > 0) {
            reasons.push(IneligibilityReason::VoiceTakesAll);
        }
        reasons
    }

    /// Whether every channel the agent has capacity for is full (or a voice call blocks all):
    /// the agent-wide AT_CAPACITY of ExplainAgent.
    pub fn fully_occupied(&self) -> bool {
        self.on_voice()
            || self
                .capacity
                .0
                .iter()
                .zip(self.active.0.iter())
                .all(|(cap, act)| act >= cap)
    }

    /// Records the start of an offer: reserves the agent. Idle time is not touched.
    pub fn offer(&mut self, ticket_id: impl Into<String>) {
        self.pending_offer = Some(ticket_id.into());
    }

    /// Records that a ticket of `channel` was assigned to the agent at `at` (an accepted offer,
    /// or an assignment learnt from the ticket service): it becomes active and counts as an
    /// assignment.
    pub fn assign(&mut self, channel: Channel, at: OffsetDateTime) {
        self.activate(channel);
        self.last_assigned = Some(at);
        self.assigned_count = self.assigned_count.saturating_add(1);
    }

    /// Records that an already assigned ticket of `channel` became active again (a parked
    /// ticket resumed; it may exceed capacity, which only stops new offers). Ends idleness.
    pub fn activate(&mut self, channel: Channel) {
        self.active
            .set(channel, self.active.get(channel).saturating_add(1));
        self.idle_since = None;
    }

    /// Records that a ticket of `channel` stopped being active at `at` (done, parked or
    /// returned). The agent is idle from `at` once no ticket is active.
    pub fn release(&mut self, channel: Channel, at: OffsetDateTime) {
        self.active
            .set(channel, self.active.get(channel).saturating_sub(1));
        if self.active.total() == 0 && self.idle_since.is_none() {
            self.idle_since = Some(at);
        }
    }
}

/// Why an agent is not being offered a ticket (proto `IneligibilityReason`, without
/// UNSPECIFIED); declared in wire order, which is the order reasons are listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IneligibilityReason {
    /// OFFLINE.
    Offline,
    /// The desktop is disconnected (within the resume grace period).
    Disconnected,
    /// AWAY.
    Away,
    /// Disabled.
    Disabled,
    /// No free capacity for the ticket's channel.
    AtCapacity,
    /// An active voice ticket, or a voice ticket while other tickets are active.
    VoiceTakesAll,
    /// No capacity at all for the ticket's channel.
    NoChannelCapacity,
    /// Already holds a pending offer.
    Reserved,
    /// Does not serve the ticket's department.
    NotInDepartment,
    /// Lacks a required skill.
    MissingSkill,
    /// The ticket's current step does not include the agent yet.
    NotInStep,
    /// Declined an offer of this ticket, or let one expire, since it was queued.
    DeclinedBefore,
    /// Eligible, but another eligible agent comes first.
    NotSelected,
    /// Eligible, but will be offered a higher-ranked ticket first.
    HigherRankedTicket,
    /// ExplainAgent only: no ticket waits in the agent's queues.
    NoWaitingTickets,
    /// ExplainAgent only: the agent serves no department.
    NoDepartments,
}

impl IneligibilityReason {
    /// The name used in logs and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            IneligibilityReason::Offline => "offline",
            IneligibilityReason::Disconnected => "disconnected",
            IneligibilityReason::Away => "away",
            IneligibilityReason::Disabled => "disabled",
            IneligibilityReason::AtCapacity => "at_capacity",
            IneligibilityReason::VoiceTakesAll => "voice_takes_all",
            IneligibilityReason::NoChannelCapacity => "no_channel_capacity",
            IneligibilityReason::Reserved => "reserved",
            IneligibilityReason::NotInDepartment => "not_in_department",
            IneligibilityReason::MissingSkill => "missing_skill",
            IneligibilityReason::NotInStep => "not_in_step",
            IneligibilityReason::DeclinedBefore => "declined_before",
            IneligibilityReason::NotSelected => "not_selected",
            IneligibilityReason::HigherRankedTicket => "higher_ranked_ticket",
            IneligibilityReason::NoWaitingTickets => "no_waiting_tickets",
            IneligibilityReason::NoDepartments => "no_departments",
        }
    }
}

impl fmt::Display for IneligibilityReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an agent may not be offered a ticket: every reason that applies, in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ineligible {
    /// The reasons, sorted, without repeats.
    pub reasons: Vec<IneligibilityReason>,
    /// For [`IneligibilityReason::MissingSkill`], the required skills the agent lacks.
    pub missing_skills: Vec<String>,
}

/// Whether `agent` may be offered `ticket` now, given the ticket's ladder and current step
/// (`None`: no step started). `Ok` or every reason against.
///
/// Rules (proto `RoutingService` comment): connected, AVAILABLE, not disabled, no pending offer
/// of another ticket, free capacity for the channel (voice takes all), reached by a started
/// step (which also decides whether the department and skills are needed), and not having
/// declined or let expire an offer of this ticket since it was queued.
pub fn eligibility(
    agent: &AgentState,
    ticket: &TicketRef,
    steps: &[Step],
    current: Option<usize>,
) -> Result<(), Ineligible> {
    let mut verdict = ticket_blocks(agent, ticket, steps, current);
    verdict
        .reasons
        .extend(agent.agent_blocks(Some(ticket.id.as_str())));
    verdict.reasons.sort();
    verdict.reasons.dedup();
    if verdict.reasons.is_empty() {
        Ok(())
    } else {
        Err(verdict)
    }
}

/// Whether [`eligibility`] is `Ok`, without building its reasons: a dispatch round asks it
/// for every ticket and agent it reads (64 × hundreds), and only explanations need the reasons.
pub fn is_eligible(
    agent: &AgentState,
    ticket: &TicketRef,
    steps: &[Step],
    current: Option<usize>,
) -> bool {
    // What agent_blocks would list.
    if agent.presence != Presence::Available || !agent.connected || agent.disabled {
        return false;
    }
    if agent
        .pending_offer
        .as_deref()
        .is_some_and(|pending| pending != ticket.id)
    {
        return false;
    }
    // What capacity_blocks would list.
    let (active, capacity) = agent.occupancy(ticket.channel);
    if capacity == 0
        || active >= capacity
        || agent.on_voice()
        || (ticket.channel == Channel::Voice && agent.active.total() > 0)
    {
        return false;
    }
    // A step reaching the agent has started (without one, ticket_blocks always lists a reason).
    let in_step = first_reaching_step(agent, ticket, steps)
        .is_some_and(|i| current.is_some_and(|current| i <= current));
    in_step && !ticket.declined_by.contains(&agent.id)
}

/// The ticket-specific part of [`eligibility`]: capacity for its channel, steps, department,
/// skills, earlier declines. Agent-wide blocks (presence, disabled, reserved) are left out, as
/// ExplainAgent's per-queue counts need.
pub fn ticket_blocks(
    agent: &AgentState,
    ticket: &TicketRef,
    steps: &[Step],
    current: Option<usize>,
) -> Ineligible {
    let mut reasons = agent.capacity_blocks(ticket.channel);
    let mut missing_skills = Vec::new();
    match first_reaching_step(agent, ticket, steps) {
        Some(i) if current.is_some_and(|current| i <= current) => {}
        Some(_) => reasons.push(IneligibilityReason::NotInStep),
        None => {
            // No step will ever reach the agent: say what the department step lacks.
            let missing = agent.missing_skills(&ticket.required_skills);
            let in_department = agent.departments.contains(&ticket.department);
            if !in_department {
                reasons.push(IneligibilityReason::NotInDepartment);
            }
            if !missing.is_empty() {
                reasons.push(IneligibilityReason::MissingSkill);
                missing_skills = missing.iter().map(|s| (*s).to_owned()).collect();
            }
            if in_department && missing.is_empty() {
                // Only a ladder without this department's step gets here.
                reasons.push(IneligibilityReason::NotInStep);
            }
        }
    }
    if ticket.declined_by.contains(&agent.id) {
        reasons.push(IneligibilityReason::DeclinedBefore);
    }
    reasons.sort();
    reasons.dedup();
    Ineligible {
        reasons,
        missing_skills,
    }
}

/// The first step of `steps` that reaches `agent` for `ticket`, started or not: the named agent
/// of a PREFERRED_AGENT or ACCOUNT_MANAGER step; a member of a TEAM step's team, or an agent of
/// the ticket's department in a DEPARTMENT step, holding every required skill.
pub fn first_reaching_step(
    agent: &AgentState,
    ticket: &TicketRef,
    steps: &[Step],
) -> Option<usize> {
    let skilled = ticket
        .required_skills
        .iter()
        .all(|skill| agent.skills.contains(skill));
    steps.iter().position(|step| match step.kind {
        StepKind::PreferredAgent | StepKind::AccountManager => step.target == agent.id,
        StepKind::Team => skilled && agent.team_id.as_deref() == Some(step.target.as_str()),
        StepKind::Department => {
            skilled && step.target == ticket.department && agent.departments.contains(&step.target)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::steps::{StepsConfig, current_step};
    use proptest::prelude::*;
    use std::time::Duration;
    use tierline_types::Tier;
    use time::macros::datetime;

    use IneligibilityReason as R;

    const T0: OffsetDateTime = datetime!(2025-03-03 09:00 UTC);

    fn available(id: &str, departments: &[&str]) -> AgentState {
        AgentState {
            departments: departments.iter().map(|d| (*d).to_owned()).collect(),
            capacity: ChannelCounts::of(&[(Channel::Voice, 1), (Channel::Chat, 3)]),
            presence: Presence::Available,
            connected: true,
            ..AgentState::new(id, id.to_uppercase(), T0)
        }
    }

    fn ticket(channel: Channel) -> TicketRef {
        TicketRef::new("t", "billing", channel, Tier::B, T0, T0)
    }

    fn check(agent: &AgentState, ticket: &TicketRef, age: Duration) -> Result<(), Ineligible> {
        let steps = StepsConfig::default().ladder(ticket, |_| true);
        eligibility(agent, ticket, &steps, current_step(&steps, age))
    }

    fn reasons(agent: &AgentState, ticket: &TicketRef) -> Vec<IneligibilityReason> {
        check(agent, ticket, Duration::ZERO)
            .err()
            .map(|e| e.reasons)
            .unwrap_or_default()
    }

    #[test]
    fn an_available_agent_of_the_department_with_free_capacity_is_eligible() {
        assert_eq!(
            check(
                &available("a", &["billing"]),
                &ticket(Channel::Chat),
                Duration::ZERO
            ),
            Ok(())
        );
    }

    #[test]
    fn presence_and_connection_block_with_their_own_reasons() {
        let mut agent = available("a", &["billing"]);
        agent.presence = Presence::Offline;
        agent.connected = false;
        assert_eq!(reasons(&agent, &ticket(Channel::Chat)), [R::Offline]);
        agent.presence = Presence::Away(AwayReason::Meal);
        assert_eq!(
            reasons(&agent, &ticket(Channel::Chat)),
            [R::Disconnected, R::Away]
        );
        agent.presence = Presence::Available;
        agent.connected = true;
        agent.disabled = true;
        assert_eq!(reasons(&agent, &ticket(Channel::Chat)), [R::Disabled]);
    }

    #[test]
    fn a_pending_offer_of_another_ticket_reserves_the_agent() {
        let mut agent = available("a", &["billing"]);
        agent.offer("other");
        assert_eq!(reasons(&agent, &ticket(Channel::Chat)), [R::Reserved]);
        agent.offer("t");
        assert_eq!(reasons(&agent, &ticket(Channel::Chat)), []);
    }

    #[test]
    fn a_channel_without_capacity_is_never_offered() {
        let agent = available("a", &["billing"]);
        assert_eq!(
            reasons(&agent, &ticket(Channel::Email)),
            [R::NoChannelCapacity]
        );
    }

    #[test]
    fn a_full_channel_blocks_only_that_channel() {
        let mut agent = available("a", &["billing"]);
        agent.capacity.set(Channel::Email, 2);
        for _ in 0..3 {
            agent.assign(Channel::Chat, T0);
        }
        assert_eq!(reasons(&agent, &ticket(Channel::Chat)), [R::AtCapacity]);
        assert_eq!(reasons(&agent, &ticket(Channel::Email)), []);
    }

    #[test]
    fn a_voice_call_takes_all_capacity() {
        let mut agent = available("a", &["billing"]);
        agent.assign(Channel::Voice, T0);
        assert_eq!(reasons(&agent, &ticket(Channel::Chat)), [R::VoiceTakesAll]);
        assert_eq!(
            reasons(&agent, &ticket(Channel::Voice)),
            [R::AtCapacity, R::VoiceTakesAll]
        );
        assert!(agent.fully_occupied());
    }

    #[test]
    fn a_voice_ticket_needs_an_agent_with_no_active_ticket() {
        let mut agent = available("a", &["billing"]);
        agent.assign(Channel::Chat, T0);
        assert_eq!(reasons(&agent, &ticket(Channel::Voice)), [R::VoiceTakesAll]);
        agent.release(Channel::Chat, T0);
        assert_eq!(reasons(&agent, &ticket(Channel::Voice)), []);
    }

    #[test]
    fn an_agent_of_another_department_is_not_in_department() {
        let agent = available("a", &["sales"]);
        assert_eq!(
            reasons(&agent, &ticket(Channel::Chat)),
            [R::NotInDepartment]
        );
    }

    #[test]
    fn every_missing_skill_is_listed() {
        let agent = AgentState {
            skills: BTreeSet::from(["language:de".to_owned()]),
            ..available("a", &["billing"])
        };
        let t = TicketRef {
            required_skills: ["language:de", "product:fibre", "language:fr"]
                .map(str::to_owned)
                .into(),
            ..ticket(Channel::Chat)
        };
        let verdict = check(&agent, &t, Duration::ZERO).expect_err("lacks skills");
        assert_eq!(verdict.reasons, [R::MissingSkill]);
        assert_eq!(verdict.missing_skills, ["language:fr", "product:fibre"]);
    }

    #[test]
    fn a_declined_agent_is_not_offered_the_ticket_again() {
        let agent = available("a", &["billing"]);
        let t = TicketRef {
            declined_by: BTreeSet::from(["a".to_owned()]),
            ..ticket(Channel::Chat)
        };
        assert_eq!(reasons(&agent, &t), [R::DeclinedBefore]);
    }

    fn key_account() -> TicketRef {
        TicketRef {
            key_account: true,
            account_manager_id: Some("manager".into()),
            required_skills: BTreeSet::from(["language:de".to_owned()]),
            ..ticket(Channel::Chat)
        }
    }

    #[test]
    fn the_account_manager_needs_neither_department_nor_skills() {
        let manager = available("manager", &[]);
        assert_eq!(check(&manager, &key_account(), Duration::ZERO), Ok(()));
    }

    #[test]
    fn department_agents_wait_for_their_step_of_a_key_account_ticket() {
        let agent = AgentState {
            skills: BTreeSet::from(["language:de".to_owned()]),
            ..available("a", &["billing"])
        };
        let early = check(&agent, &key_account(), Duration::from_secs(179));
        assert_eq!(early.map_err(|e| e.reasons), Err(vec![R::NotInStep]));
        assert_eq!(
            check(&agent, &key_account(), Duration::from_secs(180)),
            Ok(())
        );
    }

    #[test]
    fn team_members_need_the_skills_but_not_the_department() {
        let member = AgentState {
            team_id: Some("key-accounts".into()),
            skills: BTreeSet::from(["language:de".to_owned()]),
            ..available("m", &[])
        };
        let early = check(&member, &key_account(), Duration::from_secs(59));
        assert_eq!(early.map_err(|e| e.reasons), Err(vec![R::NotInStep]));
        assert_eq!(
            check(&member, &key_account(), Duration::from_secs(60)),
            Ok(())
        );
        let unskilled = AgentState {
            skills: BTreeSet::new(),
            ..member
        };
        let verdict = check(&unskilled, &key_account(), Duration::from_secs(600))
            .expect_err("lacks the skill");
        assert_eq!(verdict.reasons, [R::NotInDepartment, R::MissingSkill]);
    }

    #[test]
    fn an_empty_ladder_reaches_nobody() {
        let agent = available("a", &["billing"]);
        let t = ticket(Channel::Chat);
        let verdict = eligibility(&agent, &t, &[], None).expect_err("no steps");
        assert_eq!(verdict.reasons, [R::NotInStep]);
        let steps = [Step {
            kind: StepKind::Department,
            target: "billing".into(),
            start_after: Duration::ZERO,
        }];
        assert_eq!(eligibility(&agent, &t, &steps, Some(0)), Ok(()));
    }

    #[test]
    fn idle_time_starts_when_the_last_active_ticket_ends_and_offers_leave_it_alone() {
        let mut agent = available("a", &["billing"]);
        agent.offer("t1");
        assert_eq!(agent.idle_since, Some(T0));
        let t1 = T0 + time::Duration::minutes(1);
        agent.assign(Channel::Chat, t1);
        agent.activate(Channel::Chat);
        assert_eq!(agent.idle_since, None);
        assert_eq!(agent.last_assigned, Some(t1));
        assert_eq!(
            agent.assigned_count, 1,
            "a resumed ticket is not a new assignment"
        );
        let t2 = T0 + time::Duration::minutes(5);
        agent.release(Channel::Chat, t2);
        assert_eq!(agent.idle_since, None, "one ticket still active");
        agent.release(Channel::Chat, t2);
        assert_eq!(agent.idle_since, Some(t2));
        agent.release(Channel::Chat, t2 + time::Duration::minutes(1));
        assert_eq!(
            agent.idle_since,
            Some(t2),
            "an extra release changes nothing"
        );
    }

    fn arb_channel() -> impl Strategy<Value = Channel> {
        prop_oneof![
            Just(Channel::Voice),
            Just(Channel::Web),
            Just(Channel::Email),
            Just(Channel::Chat),
            Just(Channel::Counter),
            Just(Channel::Api),
        ]
    }

    proptest! {
        /// The dispatch round's quick check agrees with the explained verdict everywhere.
        #[test]
        fn is_eligible_is_eligibility_without_the_reasons(
            presence in 0u8..3,
            connected in any::<bool>(),
            disabled in any::<bool>(),
            pending in 0u8..3,
            active in proptest::collection::vec((arb_channel(), 0u32..3), 0..3),
            chat_capacity in 0u32..3,
            channel in arb_channel(),
            in_department in any::<bool>(),
            skills in proptest::collection::btree_set("[ab]", 0..3),
            required in proptest::collection::btree_set("[ab]", 0..3),
            declined in any::<bool>(),
            key_account in any::<bool>(),
            manager in any::<bool>(),
            age_s in 0u64..400,
        ) {
            let mut agent = available("a", if in_department { &["billing"] } else { &["hr"] });
            agent.presence = match presence {
                0 => Presence::Available,
                1 => Presence::Away(AwayReason::Break),
                _ => Presence::Offline,
            };
            agent.connected = connected;
            agent.disabled = disabled;
            agent.pending_offer = match pending {
                0 => None,
                1 => Some("t".into()),
                _ => Some("r-other".into()),
            };
            agent.capacity.set(Channel::Chat, chat_capacity);
            agent.active = ChannelCounts::of(&active);
            agent.skills = skills.iter().map(|s| format!("language:{s}")).collect();
            agent.team_id = Some("key-accounts".into());
            let mut t = ticket(channel);
            t.required_skills = required.iter().map(|s| format!("language:{s}")).collect();
            t.key_account = key_account;
            if manager {
                t.account_manager_id = Some("a".into());
            }
            if declined {
                t.declined_by.insert("a".into());
            }
            let steps = StepsConfig::default().ladder(&t, |_| true);
            let current = current_step(&steps, Duration::from_secs(age_s));
            prop_assert_eq!(
                is_eligible(&agent, &t, &steps, current),
                eligibility(&agent, &t, &steps, current).is_ok()
            );
        }

        #[test]
        fn voice_capacity_excludes_other_work(
            active in proptest::collection::vec((arb_channel(), 0u32..3), 0..6),
            offered in arb_channel(),
        ) {
            let mut agent = available("a", &["billing"]);
            for channel in [Channel::Web, Channel::Email, Channel::Chat, Channel::Counter, Channel::Api] {
                agent.capacity.set(channel, 5);
            }
            agent.active = ChannelCounts::of(&active);
            let verdict = check(&agent, &ticket(offered), Duration::ZERO);
            if agent.on_voice() {
                prop_assert!(verdict.is_err(), "an active call blocks every offer");
            }
            if offered == Channel::Voice && agent.active.total() > 0 {
                prop_assert!(verdict.is_err(), "a call needs an agent with nothing active");
            }
            if agent.active.total() == 0 {
                prop_assert_eq!(verdict, Ok(()));
            }
            // Once a call is accepted nothing else is offered.
            agent.assign(Channel::Voice, T0);
            for channel in [Channel::Voice, Channel::Web, Channel::Chat] {
                let blocked = reasons(&agent, &ticket(channel));
                prop_assert!(blocked.contains(&R::VoiceTakesAll));
            }
        }
    }
}
