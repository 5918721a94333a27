//! The ticket aggregate: its fields, how intake opens one, and how a move changes it.
//!
//! Everything here is pure: the store loads a ticket, calls these functions, and saves the
//! ticket with the events they return, in one transaction.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use tierline_types::stored_enum;
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;
use uuid::Uuid;

use super::catalog::{Catalog, Category, TicketType, effective_skills};
use super::priority::{PriorityInputs, priority};
use super::sla::{CalendarError, HoldReason, Severity, SlaClock, SlaPolicies, SlaStatus, Target};
use super::state::{self, CancelReason, Change, Move, Outcome, ResolutionClock, TicketState};

/// Id of a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketId(pub Uuid);

impl TicketId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        TicketId(Uuid::now_v7())
    }
}

impl Default for TicketId {
    fn default() -> Self {
        TicketId::new()
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The short number agents read out: eight digits, shown as `T-4821-7730`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TicketNumber(String);

impl TicketNumber {
    /// A random number. Random rather than sequential so numbers reveal no volumes; the store
    /// retries on the rare collision.
    pub fn random() -> Self {
        let n = Uuid::new_v4().as_u128() % 100_000_000;
        TicketNumber(format!("{n:08}"))
    }

    /// Reads "T-4821-7730", "48217730", "T 4821 7730" (case, dashes and spaces ignored).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let compact: String = raw.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
        let digits = compact
            .strip_prefix(['T', 't'])
            .unwrap_or(&compact)
            .to_owned();
        if digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(TicketNumber(digits))
        } else {
            Err(format!("{raw:?} is not a ticket number like T-4821-7730"))
        }
    }

    /// Rebuilds a stored number.
    pub fn from_stored(digits: String) -> Self {
        TicketNumber(digits)
    }

    /// The eight digits, as stored.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TicketNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = self.0.split_at(4.min(self.0.len()));
        write!(f, "T-{a}-{b}")
    }
}

/// The customer as they were when the ticket took them on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSnapshot {
    /// Tier.
    pub tier: Tier,
    /// Key account.
    pub key_account: bool,
    /// Account manager (agent id).
    pub account_manager_id: Option<String>,
    /// Name to show agents.
    pub display_name: String,
    /// When taken.
    pub taken_at: OffsetDateTime,
}

/// Whether the ticket's customer is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerLink {
    /// Known, with a snapshot.
    Resolved {
        /// Customer id.
        id: Uuid,
        /// The snapshot.
        snapshot: CustomerSnapshot,
    },
    /// The customer service was down at intake; resolved later. `id` is set when the caller
    /// named the customer by id.
    Pending {
        /// Customer id, if the caller gave one.
        id: Option<Uuid>,
    },
}

impl CustomerLink {
    /// The tier in the snapshot, if resolved.
    pub fn tier(&self) -> Option<Tier> {
        match self {
            CustomerLink::Resolved { snapshot, .. } => Some(snapshot.tier),
            CustomerLink::Pending { .. } => None,
        }
    }

    /// The customer id, if known.
    pub fn id(&self) -> Option<Uuid> {
        match self {
            CustomerLink::Resolved { id, .. } => Some(*id),
            CustomerLink::Pending { id } => *id,
        }
    }
}

/// The identity a ticket was created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// "phone", "email" or "external_id".
    pub kind: String,
    /// As given.
    pub value: String,
    /// Region to read a local phone number in; may be empty.
    pub region: String,
}

stored_enum!(
    /// The customer's emotional state.
    CustomerEmotion { Calm = "calm", Confused = "confused", Anxious = "anxious", Frustrated = "frustrated", Angry = "angry", Distressed = "distressed" }
);
stored_enum!(
    /// Triage verdict.
    TriageLabel { Valid = "valid", Junk = "junk", Malicious = "malicious" }
);
stored_enum!(
    /// Kind of compensation.
    CompensationKind { Discount = "discount", Voucher = "voucher", Refund = "refund" }
);
stored_enum!(
    /// Kind of change an event records.
    EventKind {
        Created = "created",
        Updated = "updated",
        StateChanged = "state_changed",
        Assigned = "assigned",
        CommentAdded = "comment_added",
        CustomerResolved = "customer_resolved",
        SlaAtRisk = "sla_at_risk",
        SlaBreached = "sla_breached",
        FollowUpDue = "follow_up_due",
        FollowUpRecorded = "follow_up_recorded",
        Merged = "merged",
        Linked = "linked",
        Unlinked = "unlinked",
    }
);
stored_enum!(
    /// Who acted.
    ActorKind { Agent = "agent", Customer = "customer", Service = "service", System = "system" }
);

/// Compensation given to the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compensation {
    /// What kind.
    pub kind: CompensationKind,
    /// ISO 4217 currency.
    pub currency: String,
    /// Amount in millionths; positive.
    pub micros: i64,
    /// Details.
    pub note: String,
}

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// What kind of party.
    pub kind: ActorKind,
    /// Its id (agent id, customer id, service name); empty for the system.
    pub id: String,
}

impl Actor {
    /// The ticket service itself.
    pub fn system() -> Self {
        Actor {
            kind: ActorKind::System,
            id: String::new(),
        }
    }

    /// The routing service, which queues tickets (named "routing", as it names itself).
    pub fn routing_service() -> Self {
        Actor {
            kind: ActorKind::Service,
            id: "routing".into(),
        }
    }
}

/// The descriptive fields, which UpdateTicket may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    /// Complaint, inquiry or request.
    pub ticket_type: TicketType,
    /// Category id.
    pub category: String,
    /// Severity.
    pub severity: Severity,
    /// One-line summary.
    pub subject: String,
    /// The customer's account.
    pub description: String,
    /// BCP-47 language, or empty.
    pub language_code: String,
    /// The customer's emotional state.
    pub customer_emotion: Option<CustomerEmotion>,
    /// What the customer wants.
    pub desired_outcome: String,
    /// Compensation given.
    pub compensation: Option<Compensation>,
    /// Root-cause id.
    pub root_cause: Option<String>,
    /// Triage verdict.
    pub triage_label: Option<TriageLabel>,
    /// What was done.
    pub resolution_summary: String,
    /// Labels, sorted and unique.
    pub tags: Vec<String>,
    /// Domain attributes.
    pub attributes: BTreeMap<String, String>,
    /// Skills the ticket itself requires (the category's and the language's are added).
    pub own_skills: Vec<String>,
}

/// What the router needs to rank the ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// When the ticket last entered the queue.
    pub enqueue_at: OffsetDateTime,
    /// When an agent should have taken it; the queue's order.
    pub pickup_due_at: OffsetDateTime,
    /// Offer to this agent first (a reopened or returned ticket's previous agent).
    pub preferred_agent_id: Option<String>,
    /// The reservation the current agent accepted.
    pub reservation_id: Option<Uuid>,
}

/// A follow-up as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedFollowUp {
    /// When recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// a.
    pub expected: f64,
    /// b.
    pub perceived: f64,
    /// The customer's words.
    pub comment: String,
    /// The agent who resolved the ticket.
    pub handling_agent_id: Option<String>,
    /// The agent who made the follow-up.
    pub recorded_by: String,
    /// Stored on the customer's profile yet.
    pub on_profile: bool,
}

impl RecordedFollowUp {
    /// C = b / a.
    pub fn satisfaction(&self) -> f64 {
        self.perceived / self.expected
    }
}

/// A ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    /// Id.
    pub id: TicketId,
    /// Human number.
    pub number: TicketNumber,
    /// The key it was created with.
    pub idempotency_key: String,
    /// The customer.
    pub customer: CustomerLink,
    /// The identity it was created with.
    pub caller: Option<CallerIdentity>,
    /// Channel of the contact.
    pub channel: Channel,
    /// Descriptive fields.
    pub details: Details,
    /// Owning department, from the category.
    pub department: String,
    /// Priority, from the rule.
    pub priority: i32,
    /// Effective required skills.
    pub required_skills: Vec<String>,
    /// State.
    pub state: TicketState,
    /// Note of the last state change.
    pub state_reason: String,
    /// Why on hold.
    pub hold_reason: Option<HoldReason>,
    /// Why cancelled.
    pub cancel_reason: Option<CancelReason>,
    /// The owning agent.
    pub assigned_agent_id: Option<String>,
    /// Every agent ever assigned, in order.
    pub handler_agent_ids: Vec<String>,
    /// Routing fields.
    pub routing: Routing,
    /// For a MERGED ticket, the survivor.
    pub merged_into: Option<TicketId>,
    /// The SLA clock.
    pub sla: SlaClock,
    /// SLA status as last computed.
    pub sla_status: SlaStatus,
    /// When the follow-up is due.
    pub follow_up_due_at: Option<OffsetDateTime>,
    /// FOLLOW_UP_DUE was raised for the current due time.
    pub follow_up_due_raised: bool,
    /// When a RESOLVED ticket closes by itself if the customer does not reply.
    pub auto_close_at: Option<OffsetDateTime>,
    /// The follow-up, once recorded.
    pub follow_up: Option<RecordedFollowUp>,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Created (arrival).
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
    /// Last resolved.
    pub resolved_at: Option<OffsetDateTime>,
    /// Reached a terminal state.
    pub closed_at: Option<OffsetDateTime>,
}

/// A change to record in the history and outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// Who did it.
    pub actor: Actor,
    /// State before.
    pub from: TicketState,
    /// State after.
    pub to: TicketState,
    /// Why.
    pub reason: String,
    /// For UPDATED, the fields changed.
    pub changed_fields: Vec<String>,
    /// For COMMENT_ADDED, the comment.
    pub comment_id: Option<Uuid>,
    /// For MERGED, LINKED, UNLINKED, the other ticket.
    pub related_ticket_id: Option<Uuid>,
}

impl NewEvent {
    /// An event of `kind` with no state change.
    pub fn on(ticket: &Ticket, kind: EventKind, actor: Actor, reason: impl Into<String>) -> Self {
        NewEvent {
            kind,
            actor,
            from: ticket.state,
            to: ticket.state,
            reason: reason.into(),
            changed_fields: Vec::new(),
            comment_id: None,
            related_ticket_id: None,
        }
    }
}

/// An event as recorded: the history entry and the outbox message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The cursor: increasing in delivery order.
    pub sequence: i64,
    /// Id of the event.
    pub event_id: Uuid,
    /// The ticket.
    pub ticket_id: TicketId,
    /// The ticket's version after the change.
    pub ticket_version: i64,
    /// What was recorded.
    pub event: NewEvent,
    /// When.
    pub at: OffsetDateTime,
}

stored_enum!(
    /// Who can see a comment.
    Visibility { Public = "public", Internal = "internal" }
);
stored_enum!(
    /// How a ticket relates to a linked one ("this ticket is <kind> the other").
    LinkKind {
        Related = "related",
        FollowUpOf = "follow_up_of",
        HasFollowUp = "has_follow_up",
        DuplicateOf = "duplicate_of",
        HasDuplicate = "has_duplicate",
        MergedFrom = "merged_from",
    }
);

impl LinkKind {
    /// The kind recorded on the other ticket.
    pub fn inverse(self) -> LinkKind {
        match self {
            LinkKind::Related => LinkKind::Related,
            LinkKind::FollowUpOf => LinkKind::HasFollowUp,
            LinkKind::HasFollowUp => LinkKind::FollowUpOf,
            LinkKind::DuplicateOf => LinkKind::HasDuplicate,
            LinkKind::HasDuplicate => LinkKind::DuplicateOf,
            // The source of a merge is a tombstone pointing at the survivor by merged_into.
            LinkKind::MergedFrom => LinkKind::Related,
        }
    }
}

/// A comment on a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// Id.
    pub id: Uuid,
    /// The ticket it belongs to.
    pub ticket_id: TicketId,
    /// Public reply or internal note.
    pub visibility: Visibility,
    /// Who wrote it.
    pub author: Actor,
    /// The text.
    pub body: String,
    /// Channel it was sent or received on.
    pub channel: Channel,
    /// Whether it was the ticket's first response.
    pub first_response: bool,
    /// When added.
    pub created_at: OffsetDateTime,
}

/// A link from one ticket to another, as shown on the ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The other ticket.
    pub linked_ticket_id: TicketId,
    /// Its number.
    pub linked_number: TicketNumber,
    /// How this ticket relates to it.
    pub kind: LinkKind,
    /// When linked.
    pub created_at: OffsetDateTime,
}

/// What intake knows about a new ticket once its request is parsed.
#[derive(Debug, Clone)]
pub struct Intake {
    /// The idempotency key.
    pub idempotency_key: String,
    /// Channel.
    pub channel: Channel,
    /// Type, if given.
    pub ticket_type: Option<TicketType>,
    /// Category id; empty means the default category.
    pub category: String,
    /// Severity, if given.
    pub severity: Option<Severity>,
    /// Subject; empty means the category's name.
    pub subject: String,
    /// Description.
    pub description: String,
    /// Language code (normalised).
    pub language_code: String,
    /// Emotion.
    pub customer_emotion: Option<CustomerEmotion>,
    /// What the customer wants.
    pub desired_outcome: String,
    /// Tags (normalised).
    pub tags: Vec<String>,
    /// Attributes.
    pub attributes: BTreeMap<String, String>,
    /// Extra skills (normalised).
    pub own_skills: Vec<String>,
    /// The identity to resolve, if the customer was given by identity.
    pub caller: Option<CallerIdentity>,
    /// Make it a follow-up of this ticket.
    pub follow_up_of: Option<TicketId>,
}

/// What the rules need from configuration.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Categories and root causes.
    pub catalog: Catalog,
    /// SLA policies and calendars.
    pub policies: SlaPolicies,
    /// Tier assumed while the customer is unresolved.
    pub default_tier: Tier,
}

/// A rule could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The move is not legal, or its request is malformed.
    #[error(transparent)]
    Transition(#[from] state::TransitionError),
    /// The category is unknown or inactive.
    #[error("{0}")]
    Category(tierline_runtime::FieldViolation),
    /// A calendar computation failed (misconfiguration: validated at start).
    #[error("sla calendar: {0}")]
    Calendar(#[from] CalendarError),
    /// The ticket refers to an SLA policy no longer configured.
    #[error("sla policy {0:?} is not configured")]
    UnknownPolicy(String),
}

impl Rules {
    fn category(&self, id: &str) -> Result<&Category, RuleError> {
        self.catalog.category(id).map_err(RuleError::Category)
    }

    fn category_of(&self, ticket: &Ticket) -> Option<&Category> {
        self.catalog.find_category(&ticket.details.category)
    }
}

/// Opens a ticket from intake: state NEW, SLA clock started, priority and skills computed.
pub fn open(
    intake: Intake,
    customer: CustomerLink,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<Ticket, RuleError> {
    let category = rules.category(&intake.category)?;
    let severity = intake.severity.unwrap_or(category.default_severity);
    let tier = customer.tier().unwrap_or(rules.default_tier);
    let policy = rules.policies.select(tier, severity);
    let calendar = rules.policies.calendar(&policy.calendar)?;
    let sla = SlaClock::start(policy, calendar, now)?;
    let details = Details {
        ticket_type: intake.ticket_type.unwrap_or(category.default_type),
        category: category.id.clone(),
        severity,
        subject: if intake.subject.is_empty() {
            category.display_name.clone()
        } else {
            intake.subject
        },
        description: intake.description,
        language_code: intake.language_code,
        customer_emotion: intake.customer_emotion,
        desired_outcome: intake.desired_outcome,
        compensation: None,
        root_cause: None,
        triage_label: None,
        resolution_summary: String::new(),
        tags: intake.tags,
        attributes: intake.attributes,
        own_skills: intake.own_skills,
    };
    let mut ticket = Ticket {
        id: TicketId::new(),
        number: TicketNumber::random(),
        idempotency_key: intake.idempotency_key,
        customer,
        caller: intake.caller,
        channel: intake.channel,
        department: category.department.clone(),
        priority: 0,
        required_skills: Vec::new(),
        details,
        state: TicketState::New,
        state_reason: String::new(),
        hold_reason: None,
        cancel_reason: None,
        assigned_agent_id: None,
        handler_agent_ids: Vec::new(),
        routing: Routing {
            enqueue_at: now,
            pickup_due_at: sla.first_response_due,
            preferred_agent_id: None,
            reservation_id: None,
        },
        merged_into: None,
        sla_status: sla.status(now),
        sla,
        follow_up_due_at: None,
        follow_up_due_raised: false,
        auto_close_at: None,
        follow_up: None,
        version: 1,
        created_at: now,
        updated_at: now,
        resolved_at: None,
        closed_at: None,
    };
    refresh_derived(&mut ticket, rules);
    Ok(ticket)
}

/// Recomputes what follows from other fields: department, skills, priority.
pub fn refresh_derived(ticket: &mut Ticket, rules: &Rules) {
    let category = rules.category_of(ticket);
    if let Some(category) = category {
        ticket.department = category.department.clone();
    }
    let category_skills: &[String] = category.map_or(&[], |c| c.required_skills.as_slice());
    ticket.required_skills = effective_skills(
        category_skills,
        Some(ticket.details.language_code.as_str()),
        &ticket.details.own_skills,
    );
    ticket.priority = priority(
        &PriorityInputs {
            tier: ticket.customer.tier(),
            severity: ticket.details.severity,
            priority_boost: category.map_or(0, |c| c.priority_boost),
            escalation_level: ticket.sla.escalation_level(),
        },
        rules.default_tier,
    );
}

/// Extra facts a move needs besides the move itself.
#[derive(Debug, Clone, Default)]
pub struct MoveContext {
    /// Note for people and history.
    pub note: String,
    /// For Assign: the agent.
    pub agent_id: Option<String>,
    /// For Assign: the reservation.
    pub reservation_id: Option<Uuid>,
    /// For Resolve: a summary replacing the ticket's.
    pub resolution_summary: Option<String>,
}

/// Applies a move at `now` and returns the events to record (none if nothing changed).
pub fn apply_move(
    ticket: &mut Ticket,
    mv: Move,
    ctx: MoveContext,
    actor: &Actor,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<Vec<NewEvent>, RuleError> {
    let change = match state::apply(ticket.state, mv)? {
        Outcome::Unchanged => return Ok(Vec::new()),
        Outcome::Changed(change) => change,
    };
    let previous_agent = ticket.assigned_agent_id.clone();
    let mut events = Vec::new();

    match change.agent {
        state::AgentEffect::Keep => {}
        state::AgentEffect::Assign => {
            let agent = ctx.agent_id.clone().unwrap_or_default();
            if !ticket.handler_agent_ids.contains(&agent) {
                ticket.handler_agent_ids.push(agent.clone());
            }
            ticket.assigned_agent_id = Some(agent);
            ticket.routing.reservation_id = ctx.reservation_id;
            ticket.routing.preferred_agent_id = None;
        }
        state::AgentEffect::Clear => {
            ticket.assigned_agent_id = None;
            ticket.routing.reservation_id = None;
        }
    }
    if change.prefer_previous_agent {
        ticket.routing.preferred_agent_id = previous_agent;
    }
    // A NEW ticket keeps the enqueue and pickup due times it was opened with: the caller has
    // waited since the complaint was taken, and the router ranked it by them at intake, so the
    // QUEUED ticket is the one the router already has. A later queueing starts a fresh wait,
    // with a fresh pickup target from the policy.
    if change.enters_queue && ticket.state != TicketState::New {
        ticket.routing.enqueue_at = now;
        let policy = policy_of(ticket, rules)?;
        let calendar = rules.policies.calendar(&policy.calendar)?;
        ticket.routing.pickup_due_at = calendar.add(now, policy.first_response_target)?;
    }
    if let Some(summary) = ctx.resolution_summary.filter(|s| !s.is_empty()) {
        ticket.details.resolution_summary = summary;
    }

    let breached = run_clock(ticket, &change, rules, now)?;
    if change.step == state::Step::Assign
        && matches!(ticket.channel, Channel::Voice | Channel::Counter)
    {
        // On a call or at a counter, the agent answering is the first response.
        let mut more = ticket.sla.first_response(now);
        events.extend(breach_events(ticket, &mut more, now));
    }

    ticket.state = change.to;
    ticket.hold_reason = change.hold_reason;
    ticket.cancel_reason = change.cancel_reason;
    ticket.state_reason = ctx.note.clone();
    if change.sets_resolve_time {
        ticket.resolved_at = Some(now);
        ticket.follow_up_due_at = follow_up_due(ticket, rules, now)?;
        ticket.follow_up_due_raised = false;
        let delay = policy_of(ticket, rules)?.auto_close_delay;
        ticket.auto_close_at = (!delay.is_zero())
            .then(|| now + time::Duration::try_from(delay).unwrap_or(time::Duration::WEEK));
    }
    if change.to != TicketState::Resolved {
        ticket.auto_close_at = None;
    }
    if change.reopens {
        ticket.follow_up_due_at = None;
    }
    if change.sets_close_time {
        ticket.closed_at = Some(now);
        ticket.follow_up_due_at = None;
    }

    let kind = match change.step {
        state::Step::Assign => EventKind::Assigned,
        state::Step::Merge => EventKind::Merged,
        _ => EventKind::StateChanged,
    };
    let reason = if ctx.note.is_empty() {
        change.step.as_str().to_owned()
    } else {
        ctx.note
    };
    events.insert(
        0,
        NewEvent {
            kind,
            actor: actor.clone(),
            from: change.from,
            to: change.to,
            reason,
            changed_fields: Vec::new(),
            comment_id: None,
            related_ticket_id: None,
        },
    );
    let mut breached = breached;
    events.extend(breach_events(ticket, &mut breached, now));
    refresh_derived(ticket, rules);
    refresh_sla_status(ticket, now);
    touch(ticket, now);
    Ok(events)
}

fn policy_of<'r>(
    ticket: &Ticket,
    rules: &'r Rules,
) -> Result<&'r super::sla::SlaPolicy, RuleError> {
    rules
        .policies
        .by_id(&ticket.sla.policy_id)
        .ok_or_else(|| RuleError::UnknownPolicy(ticket.sla.policy_id.clone()))
}

fn follow_up_due(
    ticket: &Ticket,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, RuleError> {
    let policy = policy_of(ticket, rules)?;
    if policy.follow_up_delay.is_zero() || ticket.follow_up.is_some() {
        return Ok(None);
    }
    let delay = time::Duration::try_from(policy.follow_up_delay).unwrap_or(time::Duration::days(1));
    Ok(Some(now + delay))
}

/// Runs the SLA clock for the state the change leads to; returns newly breached targets.
fn run_clock(
    ticket: &mut Ticket,
    change: &Change,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<Vec<Target>, RuleError> {
    let policy = policy_of(ticket, rules)?;
    let calendar = rules.policies.calendar(&ticket.sla.calendar)?;
    let clock = &mut ticket.sla;
    let breached = match change.clock {
        ResolutionClock::Running => {
            if change.reopens {
                clock.reopen(calendar, now)?
            } else {
                clock.resume(calendar, now)?
            }
        }
        ResolutionClock::Paused => clock.pause(now),
        ResolutionClock::DependsOnHoldReason => match change.hold_reason {
            Some(reason) if policy.pauses_on_hold(reason) => clock.pause(now),
            _ => clock.resume(calendar, now)?,
        },
        ResolutionClock::Stopped => clock.resolve(calendar, now)?,
        ResolutionClock::Ended => clock.record_breaches(now),
    };
    Ok(breached)
}

fn breach_events(
    ticket: &Ticket,
    breached: &mut Vec<Target>,
    _now: OffsetDateTime,
) -> Vec<NewEvent> {
    breached
        .drain(..)
        .map(|target| {
            NewEvent::on(
                ticket,
                EventKind::SlaBreached,
                Actor::system(),
                match target {
                    Target::FirstResponse => "sla_first_response_breached",
                    Target::Resolution => "sla_resolution_breached",
                },
            )
        })
        .collect()
}

/// Brings the stored SLA status up to date.
pub fn refresh_sla_status(ticket: &mut Ticket, now: OffsetDateTime) {
    ticket.sla_status = ticket.sla.status(now);
}

/// When the breach monitor must look at the ticket next; `None` when nothing can change by
/// itself (terminal, or paused with first response done).
pub fn next_sla_check(ticket: &Ticket, now: OffsetDateTime) -> Option<OffsetDateTime> {
    if ticket.state.is_terminal() {
        None
    } else {
        ticket.sla.next_check(now)
    }
}

/// The next instant something happens to the ticket by itself: an SLA status change, the
/// follow-up falling due, an automatic close. The timer worker finds tickets by it.
pub fn next_timer(ticket: &Ticket, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let follow_up = ticket
        .follow_up_due_at
        .filter(|_| !ticket.follow_up_due_raised && ticket.follow_up.is_none());
    [next_sla_check(ticket, now), follow_up, ticket.auto_close_at]
        .into_iter()
        .flatten()
        .min()
}

/// What the timer worker does when a ticket's time has come: the SLA clock (see [`check_sla`]),
/// FOLLOW_UP_DUE once when the follow-up falls due, and the automatic close of a resolved
/// ticket the customer did not answer.
pub fn on_timer(
    ticket: &mut Ticket,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<Vec<NewEvent>, RuleError> {
    let mut events = check_sla(ticket, rules, now);
    if ticket.follow_up.is_none()
        && !ticket.follow_up_due_raised
        && ticket.follow_up_due_at.is_some_and(|due| due <= now)
    {
        ticket.follow_up_due_raised = true;
        if events.is_empty() {
            touch(ticket, now);
        }
        events.push(NewEvent::on(
            ticket,
            EventKind::FollowUpDue,
            Actor::system(),
            "follow_up_due",
        ));
    }
    if ticket.state == TicketState::Resolved && ticket.auto_close_at.is_some_and(|at| at <= now) {
        if !events.is_empty() {
            // One change: apply_move raises the version once more.
            ticket.version -= 1;
        }
        let ctx = MoveContext {
            note: "auto_closed".into(),
            ..Default::default()
        };
        events.extend(apply_move(
            ticket,
            Move::Close,
            ctx,
            &Actor::system(),
            rules,
            now,
        )?);
    }
    Ok(events)
}

/// What the breach monitor does to a ticket whose check time has come: records breaches
/// (escalating), notices the at-risk window, and returns the events. Nothing if nothing changed.
pub fn check_sla(ticket: &mut Ticket, rules: &Rules, now: OffsetDateTime) -> Vec<NewEvent> {
    let before = ticket.sla_status;
    let mut breached = ticket.sla.record_breaches(now);
    let mut events = breach_events(ticket, &mut breached, now);
    refresh_sla_status(ticket, now);
    if ticket.sla_status == SlaStatus::AtRisk && before != SlaStatus::AtRisk {
        events.push(NewEvent::on(
            ticket,
            EventKind::SlaAtRisk,
            Actor::system(),
            "sla_at_risk",
        ));
    }
    if !events.is_empty() || before != ticket.sla_status {
        refresh_derived(ticket, rules);
        touch(ticket, now);
    }
    events
}

/// Takes the customer on once the customer service has answered for a ticket accepted while it
/// was down: the snapshot, and the priority and SLA due times of the customer's tier.
pub fn resolve_customer(
    ticket: &mut Ticket,
    customer: CustomerLink,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<Vec<NewEvent>, RuleError> {
    if matches!(ticket.customer, CustomerLink::Resolved { .. }) {
        return Ok(Vec::new());
    }
    let tier = customer.tier().unwrap_or(rules.default_tier);
    ticket.customer = customer;
    let policy = rules.policies.select(tier, ticket.details.severity);
    let calendar = rules.policies.calendar(&policy.calendar)?;
    // Restart the clock under the tier's policy from the ticket's arrival, keeping what has
    // already happened to it.
    let old = ticket.sla.clone();
    let mut clock = SlaClock::start(policy, calendar, ticket.created_at)?;
    clock.first_response_at = old.first_response_at;
    clock.paused_total = old.paused_total;
    clock.paused_since = old.paused_since;
    clock.resolved_at = old.resolved_at;
    clock.first_response_breached = old.first_response_breached;
    clock.resolution_breached = old.resolution_breached;
    clock.resolution_due = calendar.add(
        ticket.created_at,
        clock.resolution_target.saturating_add(clock.paused_total),
    )?;
    ticket.sla = clock;
    if ticket.state == TicketState::New || ticket.state == TicketState::Queued {
        ticket.routing.pickup_due_at = ticket.sla.first_response_due;
    }
    let mut breached = ticket.sla.record_breaches(now);
    let mut events = vec![NewEvent::on(
        ticket,
        EventKind::CustomerResolved,
        Actor::system(),
        "customer_resolved",
    )];
    events.extend(breach_events(ticket, &mut breached, now));
    refresh_derived(ticket, rules);
    refresh_sla_status(ticket, now);
    touch(ticket, now);
    Ok(events)
}

/// A follow-up to record: what the customer expected (a) and perceived (b).
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUpInput {
    /// a, above 0, at most 10.
    pub expected: f64,
    /// b, 0 to 10.
    pub perceived: f64,
    /// The customer's words.
    pub comment: String,
    /// The agent making the follow-up.
    pub agent_id: String,
    /// Also close a RESOLVED ticket.
    pub close: bool,
}

/// Why a follow-up cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowUpError {
    /// Only RESOLVED and CLOSED tickets are followed up.
    #[error("a ticket is followed up once it is resolved; this one is {0}")]
    NotResolved(TicketState),
    /// An agent who handled the ticket may not judge their own work.
    #[error("agent {0} handled this ticket and cannot record its follow-up")]
    OwnFollowUp(String),
    /// A different follow-up is already recorded.
    #[error("the follow-up is already recorded with other values")]
    AlreadyRecorded,
}

/// Records the follow-up (C = b / a) on the ticket, and closes it if asked.
pub fn record_follow_up(
    ticket: &mut Ticket,
    input: FollowUpInput,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<Vec<NewEvent>, FollowUpOrRule> {
    if !matches!(ticket.state, TicketState::Resolved | TicketState::Closed) {
        return Err(FollowUpError::NotResolved(ticket.state).into());
    }
    if ticket.handler_agent_ids.contains(&input.agent_id) {
        return Err(FollowUpError::OwnFollowUp(input.agent_id).into());
    }
    if let Some(existing) = &ticket.follow_up {
        let same = existing.expected == input.expected
            && existing.perceived == input.perceived
            && existing.comment == input.comment
            && existing.recorded_by == input.agent_id;
        return if same {
            Ok(Vec::new())
        } else {
            Err(FollowUpError::AlreadyRecorded.into())
        };
    }
    let agent = Actor {
        kind: ActorKind::Agent,
        id: input.agent_id.clone(),
    };
    ticket.follow_up = Some(RecordedFollowUp {
        at: now,
        expected: input.expected,
        perceived: input.perceived,
        comment: input.comment,
        handling_agent_id: ticket.assigned_agent_id.clone(),
        recorded_by: input.agent_id,
        on_profile: false,
    });
    ticket.follow_up_due_at = None;
    let mut events = vec![NewEvent::on(
        ticket,
        EventKind::FollowUpRecorded,
        agent.clone(),
        "follow_up_recorded",
    )];
    touch(ticket, now);
    if input.close && ticket.state == TicketState::Resolved {
        // One change: the version rises once for both.
        ticket.version -= 1;
        events.extend(apply_move(
            ticket,
            Move::Close,
            MoveContext::default(),
            &agent,
            rules,
            now,
        )?);
    }
    Ok(events)
}

/// A follow-up refused by its own rule or by the state machine.
#[derive(Debug, thiserror::Error)]
pub enum FollowUpOrRule {
    /// The follow-up rule.
    #[error(transparent)]
    FollowUp(#[from] FollowUpError),
    /// A state-machine or configuration rule.
    #[error(transparent)]
    Rule(#[from] RuleError),
}

/// Marks a change: version up, update time now.
pub fn touch(ticket: &mut Ticket, now: OffsetDateTime) {
    ticket.version += 1;
    ticket.updated_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::state::CommentAuthor;

    fn rules() -> Rules {
        Rules {
            catalog: Catalog::default(),
            policies: SlaPolicies::default(),
            default_tier: Tier::C,
        }
    }

    fn intake() -> Intake {
        Intake {
            idempotency_key: "call-1".into(),
            channel: Channel::Voice,
            ticket_type: None,
            category: "product_quality".into(),
            severity: None,
            subject: String::new(),
            description: "the kettle leaks".into(),
            language_code: "de".into(),
            customer_emotion: Some(CustomerEmotion::Angry),
            desired_outcome: "a replacement".into(),
            tags: vec![],
            attributes: BTreeMap::new(),
            own_skills: vec![],
            caller: None,
            follow_up_of: None,
        }
    }

    fn resolved(tier: Tier) -> CustomerLink {
        CustomerLink::Resolved {
            id: Uuid::now_v7(),
            snapshot: CustomerSnapshot {
                tier,
                key_account: false,
                account_manager_id: None,
                display_name: "Ada".into(),
                taken_at: OffsetDateTime::UNIX_EPOCH,
            },
        }
    }

    // A Monday, 09:00 UTC: inside the default office hours.
    fn monday_morning() -> OffsetDateTime {
        time::macros::datetime!(2026-11-30 09:00 UTC)
    }

    #[test]
    fn numbers_read_in_every_spoken_form_and_print_grouped() {
        let n = TicketNumber::parse("T-4821-7730").expect("number");
        assert_eq!(n.digits(), "48217730");
        assert_eq!(n.to_string(), "T-4821-7730");
        assert_eq!(TicketNumber::parse("4821 7730"), Ok(n.clone()));
        assert_eq!(TicketNumber::parse(" t-48217730 "), Ok(n.clone()));
        assert_eq!(TicketNumber::parse("T 4821 7730"), Ok(n));
        assert!(TicketNumber::parse("T-4821-773").is_err());
        assert!(TicketNumber::parse("T-4821-77x0").is_err());
        assert_eq!(TicketNumber::random().digits().len(), 8);
    }

    #[test]
    fn intake_routes_by_category_and_ranks_by_tier() {
        let r = rules();
        let a = open(intake(), resolved(Tier::A), &r, monday_morning()).expect("open");
        let c = open(intake(), resolved(Tier::C), &r, monday_morning()).expect("open");
        assert_eq!(a.department, "quality_assurance");
        assert_eq!(a.state, TicketState::New);
        assert!(a.priority > c.priority);
        assert!(
            a.routing.pickup_due_at < c.routing.pickup_due_at,
            "A gets a head start"
        );
        assert!(a.required_skills.contains(&"language:de".to_string()));
        assert_eq!(a.details.subject, "Product quality");
    }

    #[test]
    fn an_unresolved_customer_is_served_at_the_default_tier() {
        let r = rules();
        let pending = open(
            intake(),
            CustomerLink::Pending { id: None },
            &r,
            monday_morning(),
        )
        .expect("open");
        let c = open(intake(), resolved(Tier::C), &r, monday_morning()).expect("open");
        assert_eq!(pending.priority, c.priority);
        assert_eq!(pending.sla.first_response_due, c.sla.first_response_due);
    }

    #[test]
    fn unknown_categories_are_refused() {
        let mut i = intake();
        i.category = "nonsense".into();
        assert!(matches!(
            open(i, resolved(Tier::A), &rules(), monday_morning()),
            Err(RuleError::Category(_))
        ));
    }

    #[test]
    fn a_voice_assignment_is_the_first_response_and_waiting_pauses_the_clock() {
        let r = rules();
        let now = monday_morning();
        let mut t = open(intake(), resolved(Tier::B), &r, now).expect("open");
        let system = Actor::system();
        apply_move(
            &mut t,
            Move::Enqueue,
            MoveContext::default(),
            &system,
            &r,
            now,
        )
        .expect("enqueue");
        let events = apply_move(
            &mut t,
            Move::Assign,
            MoveContext {
                agent_id: Some("agent-7".into()),
                reservation_id: Some(Uuid::now_v7()),
                ..Default::default()
            },
            &system,
            &r,
            now + time::Duration::minutes(1),
        )
        .expect("assign");
        assert_eq!(events[0].kind, EventKind::Assigned);
        assert_eq!(t.assigned_agent_id.as_deref(), Some("agent-7"));
        assert!(t.sla.first_response_at.is_some());
        assert_eq!(t.version, 3);

        let agent = Actor {
            kind: ActorKind::Agent,
            id: "agent-7".into(),
        };
        apply_move(
            &mut t,
            Move::Work,
            MoveContext::default(),
            &agent,
            &r,
            now + time::Duration::minutes(2),
        )
        .expect("start");
        apply_move(
            &mut t,
            Move::WaitForCustomer,
            MoveContext::default(),
            &agent,
            &r,
            now + time::Duration::minutes(3),
        )
        .expect("wait");
        assert_eq!(t.sla_status, SlaStatus::Paused);
        let due_before = t.sla.resolution_due;
        // The customer replies a business hour later: the resolution due time moves by it.
        apply_move(
            &mut t,
            Move::Comment(CommentAuthor::Customer),
            MoveContext::default(),
            &Actor {
                kind: ActorKind::Customer,
                id: String::new(),
            },
            &r,
            now + time::Duration::minutes(63),
        )
        .expect("reply");
        assert_eq!(t.state, TicketState::InProgress);
        assert_eq!(t.sla.resolution_due - due_before, time::Duration::hours(1));
    }

    #[test]
    fn resolving_needs_a_summary_and_schedules_the_follow_up() {
        let r = rules();
        let now = monday_morning();
        let mut t = open(intake(), resolved(Tier::A), &r, now).expect("open");
        let system = Actor::system();
        apply_move(
            &mut t,
            Move::Assign,
            MoveContext {
                agent_id: Some("a1".into()),
                ..Default::default()
            },
            &system,
            &r,
            now,
        )
        .expect("assign");
        assert!(
            apply_move(
                &mut t,
                Move::Resolve { has_summary: false },
                MoveContext::default(),
                &system,
                &r,
                now
            )
            .is_err()
        );
        apply_move(
            &mut t,
            Move::Resolve { has_summary: true },
            MoveContext {
                resolution_summary: Some("replaced the kettle".into()),
                ..Default::default()
            },
            &system,
            &r,
            now + time::Duration::minutes(30),
        )
        .expect("resolve");
        assert_eq!(t.state, TicketState::Resolved);
        assert_eq!(t.details.resolution_summary, "replaced the kettle");
        assert!(t.follow_up_due_at.is_some());
        assert_eq!(t.sla_status, SlaStatus::Met);
        // The customer replies: reopened, back in the queue, the previous agent preferred.
        apply_move(
            &mut t,
            Move::Comment(CommentAuthor::Customer),
            MoveContext::default(),
            &system,
            &r,
            now + time::Duration::minutes(40),
        )
        .expect("reopen");
        assert_eq!(t.state, TicketState::Queued);
        assert_eq!(t.routing.preferred_agent_id.as_deref(), Some("a1"));
        assert_eq!(t.assigned_agent_id, None);
        assert_eq!(t.follow_up_due_at, None);
    }

    #[test]
    fn the_monitor_escalates_a_missed_first_response_once() {
        let r = rules();
        let now = monday_morning();
        let mut i = intake();
        i.channel = Channel::Email;
        let mut t = open(i, resolved(Tier::A), &r, now).expect("open");
        let before = t.priority;
        let late = t.sla.first_response_due + time::Duration::seconds(1);
        assert!(next_sla_check(&t, now).is_some_and(|at| at <= late));
        let events = check_sla(&mut t, &r, late);
        assert!(events.iter().any(|e| e.kind == EventKind::SlaBreached));
        assert_eq!(t.sla_status, SlaStatus::Breached);
        assert_eq!(t.priority, before + 100);
        assert!(
            check_sla(&mut t, &r, late + time::Duration::seconds(1))
                .iter()
                .all(|e| e.kind != EventKind::SlaBreached)
        );
    }

    fn resolved_ticket(r: &Rules) -> Ticket {
        let now = monday_morning();
        let mut t = open(intake(), resolved(Tier::B), r, now).expect("open");
        let system = Actor::system();
        apply_move(
            &mut t,
            Move::Assign,
            MoveContext {
                agent_id: Some("handler".into()),
                ..Default::default()
            },
            &system,
            r,
            now,
        )
        .expect("assign");
        apply_move(
            &mut t,
            Move::Resolve { has_summary: true },
            MoveContext {
                resolution_summary: Some("fixed".into()),
                ..Default::default()
            },
            &system,
            r,
            now,
        )
        .expect("resolve");
        t
    }

    fn follow_up(agent: &str, close: bool) -> FollowUpInput {
        FollowUpInput {
            expected: 8.0,
            perceived: 6.0,
            comment: "slow but fine".into(),
            agent_id: agent.into(),
            close,
        }
    }

    #[test]
    fn the_agent_who_handled_a_ticket_cannot_record_its_follow_up() {
        let r = rules();
        let mut t = resolved_ticket(&r);
        let err = record_follow_up(&mut t, follow_up("handler", false), &r, monday_morning())
            .expect_err("own follow-up");
        assert!(matches!(
            err,
            FollowUpOrRule::FollowUp(FollowUpError::OwnFollowUp(_))
        ));
    }

    #[test]
    fn a_follow_up_stores_c_once_and_can_close_the_ticket_in_the_same_change() {
        let r = rules();
        let mut t = resolved_ticket(&r);
        let version = t.version;
        let events = record_follow_up(&mut t, follow_up("supervisor", true), &r, monday_morning())
            .expect("recorded");
        assert_eq!(events[0].kind, EventKind::FollowUpRecorded);
        assert_eq!(t.state, TicketState::Closed);
        assert_eq!(t.version, version + 1, "one change, one version");
        let recorded = t.follow_up.clone().expect("follow-up");
        assert_eq!(recorded.satisfaction(), 0.75);
        assert_eq!(recorded.handling_agent_id.as_deref(), Some("handler"));
        // The identical call again changes nothing; different values are refused.
        assert!(
            record_follow_up(&mut t, follow_up("supervisor", true), &r, monday_morning())
                .expect("replay")
                .is_empty()
        );
        let mut other = follow_up("supervisor", false);
        other.perceived = 9.0;
        assert!(record_follow_up(&mut t, other, &r, monday_morning()).is_err());
    }

    #[test]
    fn a_ticket_not_yet_resolved_is_not_followed_up() {
        let r = rules();
        let mut t = open(intake(), resolved(Tier::B), &r, monday_morning()).expect("open");
        assert!(
            record_follow_up(&mut t, follow_up("supervisor", false), &r, monday_morning()).is_err()
        );
    }

    #[test]
    fn resolving_a_pending_customer_later_applies_their_tier() {
        let r = rules();
        let now = monday_morning();
        let mut t = open(intake(), CustomerLink::Pending { id: None }, &r, now).expect("open");
        let c_due = t.sla.first_response_due;
        let events = resolve_customer(
            &mut t,
            resolved(Tier::A),
            &r,
            now + time::Duration::minutes(1),
        )
        .expect("resolved");
        assert_eq!(events[0].kind, EventKind::CustomerResolved);
        assert!(t.sla.first_response_due < c_due, "tier A's tighter target");
        assert_eq!(t.routing.pickup_due_at, t.sla.first_response_due);
        assert_eq!(t.customer.tier(), Some(Tier::A));
        // Once resolved, a second answer changes nothing.
        assert!(
            resolve_customer(&mut t, resolved(Tier::C), &r, now)
                .expect("noop")
                .is_empty()
        );
    }

    #[test]
    fn a_resolved_ticket_raises_its_follow_up_once_and_closes_by_itself() {
        let r = rules();
        let mut t = resolved_ticket(&r);
        let due = t.follow_up_due_at.expect("follow-up scheduled");
        let close_at = t.auto_close_at.expect("auto-close scheduled");
        assert!(due < close_at);
        assert_eq!(next_timer(&t, monday_morning()), Some(due));

        let events = on_timer(&mut t, &r, due).expect("timer");
        assert!(events.iter().any(|e| e.kind == EventKind::FollowUpDue));
        assert!(
            on_timer(&mut t, &r, due)
                .expect("again")
                .iter()
                .all(|e| e.kind != EventKind::FollowUpDue)
        );
        assert_eq!(next_timer(&t, due), Some(close_at));

        let events = on_timer(&mut t, &r, close_at).expect("close");
        assert!(events.iter().any(|e| e.to == TicketState::Closed));
        assert_eq!(t.state, TicketState::Closed);
        assert_eq!(t.state_reason, "auto_closed");
        assert_eq!(next_timer(&t, close_at), None);
    }
}
