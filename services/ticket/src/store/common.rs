//! What both stores share: the ticket columns, turning stored values into domain types, and
//! the values a ticket is written with. Kept in one place so that [`super::PgStore`] and
//! [`super::SqliteStore`] cannot drift apart in what they store or what clients observe; each
//! store keeps only its own encodings (PostgreSQL's native types, SQLite's [`Stamp`] times and
//! JSON text).
//!
//! [`Stamp`]: tierline_runtime::sqlite::Stamp

use std::collections::BTreeMap;

use tierline_types::{Channel, Tier};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::catalog::TicketType;
use crate::domain::sla::{HoldReason, Severity, SlaClock, SlaStatus};
use crate::domain::state::{CancelReason, TicketState};
use crate::domain::ticket::{
    Actor, ActorKind, CallerIdentity, Comment, Compensation, CustomerEmotion, CustomerLink,
    CustomerSnapshot, Details, EventKind, Link, LinkKind, NewEvent, RecordedEvent,
    RecordedFollowUp, Routing, Ticket, TicketId, TicketNumber, TriageLabel, Visibility,
};
use crate::error::{Error, Result};

/// The ticket columns every read of a whole ticket returns, in the order of the stores'
/// `TicketRow`s.
macro_rules! ticket_columns {
    () => {
        "id, number, idempotency_key, customer_id, customer_resolution, \
         caller_kind, caller_value, caller_region, snapshot_tier, snapshot_key_account, \
         snapshot_account_manager, snapshot_display_name, snapshot_at, channel, type, category, \
         department, severity, priority, subject, description, language_code, customer_emotion, \
         desired_outcome, compensation, root_cause, triage_label, resolution_summary, tags, \
         attributes, required_skills, own_skills, state, state_reason, hold_reason, cancel_reason, \
         assigned_agent_id, handler_agent_ids, enqueue_at, pickup_due_at, preferred_agent_id, \
         reservation_id, merged_into, sla, sla_status, follow_up, follow_up_due_at, \
         follow_up_due_raised, auto_close_at, version, created_at, updated_at, resolved_at, \
         closed_at"
    };
}
pub(crate) use ticket_columns;

/// The insert of a new ticket row, placeholders `$1` to `$56` bound by [`bind_intake!`] then
/// [`bind_mutable!`]. PostgreSQL wraps it in the statement that also appends the CREATED event.
macro_rules! insert_ticket {
    () => {
        "INSERT INTO tickets (id, number, idempotency_key, request_fingerprint, \
           caller_kind, caller_value, caller_region, channel, created_at, \
           customer_id, customer_resolution, snapshot_tier, snapshot_key_account, \
           snapshot_account_manager, snapshot_display_name, snapshot_at, type, category, department, \
           severity, priority, subject, description, language_code, customer_emotion, \
           desired_outcome, compensation, root_cause, triage_label, resolution_summary, tags, \
           attributes, required_skills, own_skills, state, state_reason, hold_reason, cancel_reason, \
           assigned_agent_id, handler_agent_ids, enqueue_at, pickup_due_at, preferred_agent_id, \
           reservation_id, merged_into, sla, sla_status, timer_at, follow_up, \
           follow_up_due_at, follow_up_due_raised, auto_close_at, version, updated_at, resolved_at, \
           closed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
           $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, \
           $37, $38, $39, $40, $41, $42, $43, $44, $45, $46, $47, $48, $49, $50, $51, $52, $53, $54, \
           $55, $56)"
    };
}
pub(crate) use insert_ticket;

/// The write-back of a loaded ticket: `$1` is its id, `$2` to `$48` bound by [`bind_mutable!`].
pub(crate) const UPDATE_TICKET: &str = "UPDATE tickets SET customer_id = $2, \
       customer_resolution = $3, snapshot_tier = $4, \
       snapshot_key_account = $5, snapshot_account_manager = $6, snapshot_display_name = $7, \
       snapshot_at = $8, type = $9, category = $10, department = $11, severity = $12, \
       priority = $13, subject = $14, description = $15, language_code = $16, \
       customer_emotion = $17, desired_outcome = $18, compensation = $19, root_cause = $20, \
       triage_label = $21, resolution_summary = $22, tags = $23, attributes = $24, \
       required_skills = $25, own_skills = $26, state = $27, state_reason = $28, \
       hold_reason = $29, cancel_reason = $30, assigned_agent_id = $31, handler_agent_ids = $32, \
       enqueue_at = $33, pickup_due_at = $34, preferred_agent_id = $35, reservation_id = $36, \
       merged_into = $37, sla = $38, sla_status = $39, timer_at = $40, follow_up = $41, \
       follow_up_due_at = $42, follow_up_due_raised = $43, auto_close_at = $44, version = $45, \
       updated_at = $46, resolved_at = $47, closed_at = $48 \
     WHERE id = $1";

/// Stored data that does not parse.
pub(crate) fn corrupt(what: &str, value: &str) -> Error {
    Error::Corrupt(format!("{what} {value:?}"))
}

/// A stored optional enumeration: `None` stays `None`, a value must parse.
pub(crate) fn opt_enum<T>(
    raw: Option<String>,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>> {
    raw.map(|s| parse(&s).ok_or_else(|| corrupt(what, &s)))
        .transpose()
}

/// How an SLA status is stored.
pub(crate) fn sla_status_str(s: SlaStatus) -> &'static str {
    match s {
        SlaStatus::OnTrack => "on_track",
        SlaStatus::AtRisk => "at_risk",
        SlaStatus::Breached => "breached",
        SlaStatus::Met => "met",
        SlaStatus::Paused => "paused",
    }
}

/// A stored SLA status.
pub(crate) fn sla_status_from(s: &str) -> Result<SlaStatus> {
    Ok(match s {
        "on_track" => SlaStatus::OnTrack,
        "at_risk" => SlaStatus::AtRisk,
        "breached" => SlaStatus::Breached,
        "met" => SlaStatus::Met,
        "paused" => SlaStatus::Paused,
        other => return Err(corrupt("sla status", other)),
    })
}

/// A stored link kind.
pub(crate) fn link_kind_from(kind: &str) -> Result<LinkKind> {
    LinkKind::from_db(kind).ok_or_else(|| corrupt("link kind", kind))
}

/// A stored link to the ticket `other`, whose number is `number`.
pub(crate) fn link_from(
    other: Uuid,
    number: String,
    kind: &str,
    created_at: OffsetDateTime,
) -> Result<Link> {
    Ok(Link {
        linked_ticket_id: TicketId(other),
        linked_number: TicketNumber::from_stored(number),
        kind: link_kind_from(kind)?,
        created_at,
    })
}

/// Refuses to change ticket `id`, stored at version `actual`, when the caller expected another.
pub(crate) fn check_version(
    id: TicketId,
    expected_version: Option<i64>,
    actual: i64,
) -> Result<()> {
    if let Some(expected) = expected_version
        && expected != actual
    {
        return Err(Error::StaleVersion {
            id: id.to_string(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// A ticket as stored, with the database's encodings (JSON, arrays, times) already decoded;
/// [`TicketRecord::into_domain`] checks the enumerations and the customer link.
pub(crate) struct TicketRecord {
    pub id: Uuid,
    pub number: String,
    pub idempotency_key: String,
    pub customer_id: Option<Uuid>,
    pub customer_resolution: String,
    pub caller_kind: Option<String>,
    pub caller_value: Option<String>,
    pub caller_region: Option<String>,
    pub snapshot_tier: Option<String>,
    pub snapshot_key_account: bool,
    pub snapshot_account_manager: Option<String>,
    pub snapshot_display_name: Option<String>,
    pub snapshot_at: Option<OffsetDateTime>,
    pub channel: String,
    pub ticket_type: String,
    pub category: String,
    pub department: String,
    pub severity: String,
    pub priority: i32,
    pub subject: String,
    pub description: String,
    pub language_code: String,
    pub customer_emotion: Option<String>,
    pub desired_outcome: String,
    pub compensation: Option<Compensation>,
    pub root_cause: Option<String>,
    pub triage_label: Option<String>,
    pub resolution_summary: String,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub required_skills: Vec<String>,
    pub own_skills: Vec<String>,
    pub state: String,
    pub state_reason: String,
    pub hold_reason: Option<String>,
    pub cancel_reason: Option<String>,
    pub assigned_agent_id: Option<String>,
    pub handler_agent_ids: Vec<String>,
    pub enqueue_at: OffsetDateTime,
    pub pickup_due_at: OffsetDateTime,
    pub preferred_agent_id: Option<String>,
    pub reservation_id: Option<Uuid>,
    pub merged_into: Option<Uuid>,
    pub sla: SlaClock,
    pub sla_status: String,
    pub follow_up: Option<RecordedFollowUp>,
    pub follow_up_due_at: Option<OffsetDateTime>,
    pub follow_up_due_raised: bool,
    pub auto_close_at: Option<OffsetDateTime>,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub resolved_at: Option<OffsetDateTime>,
    pub closed_at: Option<OffsetDateTime>,
}

impl TicketRecord {
    /// The domain ticket, or [`Error::Corrupt`] naming the first value that does not parse.
    pub(crate) fn into_domain(self) -> Result<Ticket> {
        let customer = match (self.customer_resolution.as_str(), self.customer_id) {
            ("resolved", Some(id)) => CustomerLink::Resolved {
                id,
                snapshot: CustomerSnapshot {
                    tier: self
                        .snapshot_tier
                        .as_deref()
                        .and_then(Tier::from_db)
                        .ok_or_else(|| {
                            corrupt("snapshot tier", &format!("{:?}", self.snapshot_tier))
                        })?,
                    key_account: self.snapshot_key_account,
                    account_manager_id: self.snapshot_account_manager,
                    display_name: self.snapshot_display_name.unwrap_or_default(),
                    taken_at: self.snapshot_at.unwrap_or(self.created_at),
                },
            },
            ("pending", id) => CustomerLink::Pending { id },
            (other, _) => return Err(corrupt("customer resolution", other)),
        };
        let caller = match (self.caller_kind, self.caller_value) {
            (Some(kind), Some(value)) => Some(CallerIdentity {
                kind,
                value,
                region: self.caller_region.unwrap_or_default(),
            }),
            _ => None,
        };
        Ok(Ticket {
            id: TicketId(self.id),
            number: TicketNumber::from_stored(self.number),
            idempotency_key: self.idempotency_key,
            customer,
            caller,
            channel: Channel::from_db(&self.channel)
                .ok_or_else(|| corrupt("channel", &self.channel))?,
            details: Details {
                ticket_type: TicketType::from_db(&self.ticket_type)
                    .ok_or_else(|| corrupt("type", &self.ticket_type))?,
                category: self.category,
                severity: Severity::from_db(&self.severity)
                    .ok_or_else(|| corrupt("severity", &self.severity))?,
                subject: self.subject,
                description: self.description,
                language_code: self.language_code,
                customer_emotion: opt_enum(
                    self.customer_emotion,
                    "emotion",
                    CustomerEmotion::from_db,
                )?,
                desired_outcome: self.desired_outcome,
                compensation: self.compensation,
                root_cause: self.root_cause,
                triage_label: opt_enum(self.triage_label, "triage label", TriageLabel::from_db)?,
                resolution_summary: self.resolution_summary,
                tags: self.tags,
                attributes: self.attributes,
                own_skills: self.own_skills,
            },
            department: self.department,
            priority: self.priority,
            required_skills: self.required_skills,
            state: TicketState::from_db(&self.state)
                .ok_or_else(|| corrupt("state", &self.state))?,
            state_reason: self.state_reason,
            hold_reason: opt_enum(self.hold_reason, "hold reason", HoldReason::from_db)?,
            cancel_reason: opt_enum(self.cancel_reason, "cancel reason", CancelReason::from_db)?,
            assigned_agent_id: self.assigned_agent_id,
            handler_agent_ids: self.handler_agent_ids,
            routing: Routing {
                enqueue_at: self.enqueue_at,
                pickup_due_at: self.pickup_due_at,
                preferred_agent_id: self.preferred_agent_id,
                reservation_id: self.reservation_id,
            },
            merged_into: self.merged_into.map(TicketId),
            sla: self.sla,
            sla_status: sla_status_from(&self.sla_status)?,
            follow_up_due_at: self.follow_up_due_at,
            follow_up_due_raised: self.follow_up_due_raised,
            auto_close_at: self.auto_close_at,
            follow_up: self.follow_up,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            resolved_at: self.resolved_at,
            closed_at: self.closed_at,
        })
    }
}

/// An event as stored, decoded as [`TicketRecord`] is.
pub(crate) struct EventRecord {
    pub sequence: i64,
    pub event_id: Uuid,
    pub ticket_id: Uuid,
    pub ticket_version: i64,
    pub kind: String,
    pub actor_kind: String,
    pub actor_id: String,
    pub from_state: String,
    pub to_state: String,
    pub reason: String,
    pub changed_fields: Vec<String>,
    pub comment_id: Option<Uuid>,
    pub related_ticket_id: Option<Uuid>,
    pub event_at: OffsetDateTime,
}

impl EventRecord {
    /// The recorded event, or [`Error::Corrupt`] naming the first value that does not parse.
    pub(crate) fn into_domain(self) -> Result<RecordedEvent> {
        Ok(RecordedEvent {
            sequence: self.sequence,
            event_id: self.event_id,
            ticket_id: TicketId(self.ticket_id),
            ticket_version: self.ticket_version,
            event: NewEvent {
                kind: EventKind::from_db(&self.kind)
                    .ok_or_else(|| corrupt("event kind", &self.kind))?,
                actor: Actor {
                    kind: ActorKind::from_db(&self.actor_kind)
                        .ok_or_else(|| corrupt("actor kind", &self.actor_kind))?,
                    id: self.actor_id,
                },
                from: TicketState::from_db(&self.from_state)
                    .ok_or_else(|| corrupt("state", &self.from_state))?,
                to: TicketState::from_db(&self.to_state)
                    .ok_or_else(|| corrupt("state", &self.to_state))?,
                reason: self.reason,
                changed_fields: self.changed_fields,
                comment_id: self.comment_id,
                related_ticket_id: self.related_ticket_id,
            },
            at: self.event_at,
        })
    }
}

/// A comment as stored, decoded as [`TicketRecord`] is.
pub(crate) struct CommentRecord {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub visibility: String,
    pub author_kind: String,
    pub author_id: String,
    pub body: String,
    pub channel: String,
    pub first_response: bool,
    pub created_at: OffsetDateTime,
}

impl CommentRecord {
    /// The comment, or [`Error::Corrupt`] naming the first value that does not parse.
    pub(crate) fn into_domain(self) -> Result<Comment> {
        Ok(Comment {
            id: self.id,
            ticket_id: TicketId(self.ticket_id),
            visibility: Visibility::from_db(&self.visibility)
                .ok_or_else(|| corrupt("visibility", &self.visibility))?,
            author: Actor {
                kind: ActorKind::from_db(&self.author_kind)
                    .ok_or_else(|| corrupt("author kind", &self.author_kind))?,
                id: self.author_id,
            },
            body: self.body,
            channel: Channel::from_db(&self.channel)
                .ok_or_else(|| corrupt("channel", &self.channel))?,
            first_response: self.first_response,
            created_at: self.created_at,
        })
    }
}

/// The values a ticket's row is written with, computed once from the ticket: each store binds
/// them with [`bind_intake!`] and [`bind_mutable!`], encoding times and lists its own way.
#[derive(Clone, Copy)]
pub(crate) struct TicketColumns<'a> {
    // Written once, at intake.
    pub id: Uuid,
    pub number: &'a str,
    pub idempotency_key: &'a str,
    pub caller_kind: Option<&'a str>,
    pub caller_value: Option<&'a str>,
    pub caller_region: Option<&'a str>,
    pub channel: &'static str,
    pub created_at: OffsetDateTime,
    // Written at intake and by every change.
    pub customer_id: Option<Uuid>,
    pub customer_resolution: &'static str,
    pub snapshot_tier: Option<&'static str>,
    pub snapshot_key_account: bool,
    pub snapshot_account_manager: Option<&'a str>,
    pub snapshot_display_name: Option<&'a str>,
    pub snapshot_at: Option<OffsetDateTime>,
    pub ticket_type: &'static str,
    pub category: &'a str,
    pub department: &'a str,
    pub severity: &'static str,
    pub priority: i32,
    pub subject: &'a str,
    pub description: &'a str,
    pub language_code: &'a str,
    pub customer_emotion: Option<&'static str>,
    pub desired_outcome: &'a str,
    pub compensation: Option<&'a Compensation>,
    pub root_cause: Option<&'a str>,
    pub triage_label: Option<&'static str>,
    pub resolution_summary: &'a str,
    pub tags: &'a [String],
    pub attributes: &'a BTreeMap<String, String>,
    pub required_skills: &'a [String],
    pub own_skills: &'a [String],
    pub state: &'static str,
    pub state_reason: &'a str,
    pub hold_reason: Option<&'static str>,
    pub cancel_reason: Option<&'static str>,
    pub assigned_agent_id: Option<&'a str>,
    pub handler_agent_ids: &'a [String],
    pub enqueue_at: OffsetDateTime,
    pub pickup_due_at: OffsetDateTime,
    pub preferred_agent_id: Option<&'a str>,
    pub reservation_id: Option<Uuid>,
    pub merged_into: Option<Uuid>,
    pub sla: &'a SlaClock,
    pub sla_status: &'static str,
    pub timer_at: Option<OffsetDateTime>,
    pub follow_up: Option<&'a RecordedFollowUp>,
    pub follow_up_due_at: Option<OffsetDateTime>,
    pub follow_up_due_raised: bool,
    pub auto_close_at: Option<OffsetDateTime>,
    pub version: i64,
    pub updated_at: OffsetDateTime,
    pub resolved_at: Option<OffsetDateTime>,
    pub closed_at: Option<OffsetDateTime>,
}

impl<'a> TicketColumns<'a> {
    /// The columns of `t` written at `now` (which decides when the timer worker looks next).
    pub(crate) fn of(t: &'a Ticket, now: OffsetDateTime) -> Self {
        let (customer_resolution, snapshot) = match &t.customer {
            CustomerLink::Resolved { snapshot, .. } => ("resolved", Some(snapshot)),
            CustomerLink::Pending { .. } => ("pending", None),
        };
        TicketColumns {
            id: t.id.0,
            number: t.number.digits(),
            idempotency_key: &t.idempotency_key,
            caller_kind: t.caller.as_ref().map(|c| c.kind.as_str()),
            caller_value: t.caller.as_ref().map(|c| c.value.as_str()),
            caller_region: t.caller.as_ref().map(|c| c.region.as_str()),
            channel: t.channel.as_str(),
            created_at: t.created_at,
            customer_id: t.customer.id(),
            customer_resolution,
            snapshot_tier: snapshot.map(|s| s.tier.as_str()),
            snapshot_key_account: snapshot.is_some_and(|s| s.key_account),
            snapshot_account_manager: snapshot.and_then(|s| s.account_manager_id.as_deref()),
            snapshot_display_name: snapshot.map(|s| s.display_name.as_str()),
            snapshot_at: snapshot.map(|s| s.taken_at),
            ticket_type: t.details.ticket_type.as_str(),
            category: &t.details.category,
            department: &t.department,
            severity: t.details.severity.as_str(),
            priority: t.priority,
            subject: &t.details.subject,
            description: &t.details.description,
            language_code: &t.details.language_code,
            customer_emotion: t.details.customer_emotion.map(|e| e.as_str()),
            desired_outcome: &t.details.desired_outcome,
            compensation: t.details.compensation.as_ref(),
            root_cause: t.details.root_cause.as_deref(),
            triage_label: t.details.triage_label.map(|l| l.as_str()),
            resolution_summary: &t.details.resolution_summary,
            tags: &t.details.tags,
            attributes: &t.details.attributes,
            required_skills: &t.required_skills,
            own_skills: &t.details.own_skills,
            state: t.state.as_str(),
            state_reason: &t.state_reason,
            hold_reason: t.hold_reason.map(|r| r.as_str()),
            cancel_reason: t.cancel_reason.map(|r| r.as_str()),
            assigned_agent_id: t.assigned_agent_id.as_deref(),
            handler_agent_ids: &t.handler_agent_ids,
            enqueue_at: t.routing.enqueue_at,
            pickup_due_at: t.routing.pickup_due_at,
            preferred_agent_id: t.routing.preferred_agent_id.as_deref(),
            reservation_id: t.routing.reservation_id,
            merged_into: t.merged_into.map(|m| m.0),
            sla: &t.sla,
            sla_status: sla_status_str(t.sla_status),
            timer_at: crate::domain::ticket::next_timer(t, now),
            follow_up: t.follow_up.as_ref(),
            follow_up_due_at: t.follow_up_due_at,
            follow_up_due_raised: t.follow_up_due_raised,
            auto_close_at: t.auto_close_at,
            version: t.version,
            updated_at: t.updated_at,
            resolved_at: t.resolved_at,
            closed_at: t.closed_at,
        }
    }
}

/// Binds the intake-only columns of [`TicketColumns`] `$c`, `id` to `created_at` with
/// `$fingerprint` as `request_fingerprint`: placeholders `$1` to `$9` of [`insert_ticket!`].
/// `$time` encodes a time as the store stores it.
macro_rules! bind_intake {
    ($q:expr, $c:expr, $fingerprint:expr, time = $time:expr) => {{
        let c: $crate::store::common::TicketColumns<'_> = $c;
        $q.bind(c.id)
            .bind(c.number)
            .bind(c.idempotency_key)
            .bind($fingerprint)
            .bind(c.caller_kind)
            .bind(c.caller_value)
            .bind(c.caller_region)
            .bind(c.channel)
            .bind(($time)(c.created_at))
    }};
}
pub(crate) use bind_intake;

/// Binds the columns of [`TicketColumns`] `$c` that intake and every change write, from
/// `customer_id` on: the next 48 placeholders, `$10` to `$56` of [`insert_ticket!`] and `$2` to
/// `$48` of [`UPDATE_TICKET`]. `$time` encodes a time and `$list` a list of strings as the store
/// stores them; JSON columns are [`sqlx::types::Json`] in both stores.
macro_rules! bind_mutable {
    ($q:expr, $c:expr, time = $time:expr, list = $list:expr) => {{
        use ::sqlx::types::Json;
        let c: $crate::store::common::TicketColumns<'_> = $c;
        $q.bind(c.customer_id)
            .bind(c.customer_resolution)
            .bind(c.snapshot_tier)
            .bind(c.snapshot_key_account)
            .bind(c.snapshot_account_manager)
            .bind(c.snapshot_display_name)
            .bind(c.snapshot_at.map($time))
            .bind(c.ticket_type)
            .bind(c.category)
            .bind(c.department)
            .bind(c.severity)
            .bind(c.priority)
            .bind(c.subject)
            .bind(c.description)
            .bind(c.language_code)
            .bind(c.customer_emotion)
            .bind(c.desired_outcome)
            .bind(c.compensation.map(Json))
            .bind(c.root_cause)
            .bind(c.triage_label)
            .bind(c.resolution_summary)
            .bind(($list)(c.tags))
            .bind(Json(c.attributes))
            .bind(($list)(c.required_skills))
            .bind(($list)(c.own_skills))
            .bind(c.state)
            .bind(c.state_reason)
            .bind(c.hold_reason)
            .bind(c.cancel_reason)
            .bind(c.assigned_agent_id)
            .bind(($list)(c.handler_agent_ids))
            .bind(($time)(c.enqueue_at))
            .bind(($time)(c.pickup_due_at))
            .bind(c.preferred_agent_id)
            .bind(c.reservation_id)
            .bind(c.merged_into)
            .bind(Json(c.sla))
            .bind(c.sla_status)
            .bind(c.timer_at.map($time))
            .bind(c.follow_up.map(Json))
            .bind(c.follow_up_due_at.map($time))
            .bind(c.follow_up_due_raised)
            .bind(c.auto_close_at.map($time))
            .bind(c.version)
            .bind(($time)(c.updated_at))
            .bind(c.resolved_at.map($time))
            .bind(c.closed_at.map($time))
    }};
}
pub(crate) use bind_mutable;
