//! Wire (proto) ↔ domain conversions of the ticket service. Pure functions, no I/O.
//!
//! Parsing collects every field violation with its path as the client sees it (`ticket.subject`,
//! `caller_identity.value`, `tags[2]`), never stopping at the first. Enum numbers the proto does
//! not know are errors ("42 is not a severity"); what UNSPECIFIED means is decided per field, as
//! the proto documents it.

use std::collections::{BTreeMap, HashMap};

use tierline_proto::common;
use tierline_proto::prost::Message as _;
use tierline_proto::prost_types;
use tierline_proto::ticket as pb;
use tierline_runtime::Violations;
use tierline_runtime::wire::{self, text};
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::catalog::{
    Category, MAX_ID_LEN, RootCause, TicketType, normalize_language_code, normalize_skills,
    normalize_tags,
};
use crate::domain::patch::DetailsPatch;
use crate::domain::sla::{HoldReason, Severity, SlaPolicy, SlaStatus};
use crate::domain::state::{
    self, CancelReason, CommentAuthor, Move, TicketState, TransitionError, TransitionRequest,
};
use crate::domain::ticket::{
    Actor, ActorKind, CallerIdentity, Comment, Compensation, CompensationKind, CustomerEmotion,
    CustomerLink, EventKind, Intake, Link, LinkKind, MoveContext, RecordedEvent, Rules, Ticket,
    TicketId, TicketNumber, TriageLabel, Visibility,
};

// ---------------------------------------------------------------------------------------------
// Limits from the proto comments
// ---------------------------------------------------------------------------------------------

/// Longest idempotency key (printable ASCII).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Longest subject, in characters.
pub const MAX_SUBJECT_LEN: usize = 200;
/// Longest description or comment body, in characters.
pub const MAX_BODY_LEN: usize = 20_000;
/// Longest desired outcome, in characters.
pub const MAX_DESIRED_OUTCOME_LEN: usize = 2_000;
/// Longest resolution summary, in characters.
pub const MAX_RESOLUTION_SUMMARY_LEN: usize = 5_000;
/// Longest transition or merge note, and compensation note, in characters.
pub const MAX_NOTE_LEN: usize = 1_000;
/// Most attributes on a ticket.
pub const MAX_ATTRIBUTES: usize = 50;
/// Longest attribute key.
pub const MAX_ATTRIBUTE_KEY_LEN: usize = 64;
/// Longest attribute value, in characters.
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 1_024;
/// Longest identity value, in characters.
pub const MAX_IDENTITY_VALUE_LEN: usize = 256;
/// Longest actor id (agent id, service name), in characters.
pub const MAX_ACTOR_ID_LEN: usize = 128;
/// ListTickets page size when the request gives 0.
pub const DEFAULT_TICKET_PAGE_SIZE: u32 = 50;
/// Largest ListTickets page size.
pub const MAX_TICKET_PAGE_SIZE: u32 = 500;

/// The paths UpdateTicketRequest.update_mask accepts, in proto field order.
pub const UPDATABLE_FIELDS: [&str; 16] = [
    "customer_id",
    "type",
    "category",
    "severity",
    "subject",
    "description",
    "language_code",
    "customer_emotion",
    "desired_outcome",
    "compensation",
    "root_cause",
    "triage_label",
    "resolution_summary",
    "tags",
    "attributes",
    "required_skills",
];

/// The other fields of Ticket: output only, or changed by another rpc.
const NOT_UPDATABLE_FIELDS: [&str; 27] = [
    "id",
    "number",
    "idempotency_key",
    "customer_resolution",
    "caller_identity",
    "customer",
    "channel",
    "department",
    "priority",
    "state",
    "state_reason",
    "hold_reason",
    "cancel_reason",
    "available_transitions",
    "assigned_agent_id",
    "handler_agent_ids",
    "routing",
    "merged_into_ticket_id",
    "links",
    "sla",
    "follow_up",
    "version",
    "create_time",
    "update_time",
    "resolve_time",
    "close_time",
    "ticket",
];

// ---------------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------------

/// Generates `$from(raw) -> Result<Option<Domain>, String>` (`None` for UNSPECIFIED, an error
/// for a number the proto does not know) and `$to(Domain) -> pb::Wire`.
macro_rules! wire_enum {
    (
        $from:ident, $to:ident, $domain:ident, $wire:ident, $thing:literal,
        { $($d:ident => $w:ident),+ $(,)? }
    ) => {
        #[doc = concat!(
            "Reads a wire ", $thing, ": `None` for UNSPECIFIED, an error for an unknown number."
        )]
        pub fn $from(raw: i32) -> Result<Option<$domain>, String> {
            match pb::$wire::try_from(raw) {
                Ok(pb::$wire::Unspecified) => Ok(None),
                $(Ok(pb::$wire::$w) => Ok(Some($domain::$d)),)+
                #[allow(unreachable_patterns)]
                Ok(_) | Err(_) => Err(format!(concat!("{} is not a ", $thing), raw)),
            }
        }

        #[doc = concat!("The wire form of a ", $thing, ".")]
        pub fn $to(value: $domain) -> pb::$wire {
            match value {
                $($domain::$d => pb::$wire::$w,)+
            }
        }
    };
}

wire_enum!(ticket_state_from_wire, ticket_state_to_wire, TicketState, TicketState, "ticket state", {
    New => New,
    Queued => Queued,
    Assigned => Assigned,
    InProgress => InProgress,
    PendingCustomer => PendingCustomer,
    OnHold => OnHold,
    Resolved => Resolved,
    Closed => Closed,
    Merged => Merged,
    Cancelled => Cancelled,
});
wire_enum!(ticket_type_from_wire, ticket_type_to_wire, TicketType, TicketType, "ticket type", {
    Complaint => Complaint,
    Inquiry => Inquiry,
    Request => Request,
});
wire_enum!(severity_from_wire, severity_to_wire, Severity, Severity, "severity", {
    Low => Low,
    Medium => Medium,
    High => High,
    Critical => Critical,
});
wire_enum!(emotion_from_wire, emotion_to_wire, CustomerEmotion, CustomerEmotion, "customer emotion", {
    Calm => Calm,
    Confused => Confused,
    Anxious => Anxious,
    Frustrated => Frustrated,
    Angry => Angry,
    Distressed => Distressed,
});
wire_enum!(triage_label_from_wire, triage_label_to_wire, TriageLabel, TriageLabel, "triage label", {
    Valid => Valid,
    Junk => Junk,
    Malicious => Malicious,
});
wire_enum!(hold_reason_from_wire, hold_reason_to_wire, HoldReason, HoldReason, "hold reason", {
    ThirdParty => ThirdParty,
    Internal => Internal,
    Scheduled => Scheduled,
    Fulfilment => Fulfilment,
    Other => Other,
});
wire_enum!(cancel_reason_from_wire, cancel_reason_to_wire, CancelReason, CancelReason, "cancel reason", {
    Duplicate => Duplicate,
    Spam => Spam,
    Test => Test,
});
wire_enum!(compensation_kind_from_wire, compensation_kind_to_wire, CompensationKind, CompensationKind, "compensation kind", {
    Discount => Discount,
    Voucher => Voucher,
    Refund => Refund,
});
wire_enum!(sla_status_from_wire, sla_status_to_wire, SlaStatus, SlaStatus, "sla status", {
    OnTrack => OnTrack,
    AtRisk => AtRisk,
    Breached => Breached,
    Met => Met,
    Paused => Paused,
});
wire_enum!(link_kind_from_wire, link_kind_to_wire, LinkKind, LinkKind, "link kind", {
    Related => Related,
    FollowUpOf => FollowUpOf,
    HasFollowUp => HasFollowUp,
    DuplicateOf => DuplicateOf,
    HasDuplicate => HasDuplicate,
    MergedFrom => MergedFrom,
});
wire_enum!(actor_kind_from_wire, actor_kind_to_wire, ActorKind, ActorKind, "actor kind", {
    Agent => Agent,
    Customer => Customer,
    Service => Service,
    System => System,
});
wire_enum!(visibility_from_wire, visibility_to_wire, Visibility, CommentVisibility, "comment visibility", {
    Public => Public,
    Internal => Internal,
});
wire_enum!(event_kind_from_wire, event_kind_to_wire, EventKind, TicketEventKind, "recorded ticket event kind", {
    Created => Created,
    Updated => Updated,
    StateChanged => StateChanged,
    Assigned => Assigned,
    CommentAdded => CommentAdded,
    CustomerResolved => CustomerResolved,
    SlaAtRisk => SlaAtRisk,
    SlaBreached => SlaBreached,
    FollowUpDue => FollowUpDue,
    FollowUpRecorded => FollowUpRecorded,
    Merged => Merged,
    Linked => Linked,
    Unlinked => Unlinked,
});
// HEARTBEAT has no domain kind (it is never recorded), so `event_kind_from_wire` reports it as
// "14 is not a recorded ticket event kind"; a WatchTicketEvents filter should skip it first.

/// Whether a ticket's customer is known. (Output only: the domain's [`CustomerLink`] is the
/// other direction.)
pub fn customer_resolution_to_wire(customer: &CustomerLink) -> pb::CustomerResolution {
    match customer {
        CustomerLink::Resolved { .. } => pb::CustomerResolution::Resolved,
        CustomerLink::Pending { .. } => pb::CustomerResolution::Pending,
    }
}

/// The wire number of an optional domain value: UNSPECIFIED for `None`.
fn opt<T>(value: Option<T>, to_wire: impl Fn(T) -> i32) -> i32 {
    value.map_or(0, to_wire)
}

/// A required enum: UNSPECIFIED is "required".
fn required<T>(parsed: Result<Option<T>, String>) -> Result<T, String> {
    parsed?.ok_or_else(|| "required".to_string())
}

// ---------------------------------------------------------------------------------------------
// Small shared parsers
// ---------------------------------------------------------------------------------------------

/// Parses a ticket id field.
pub fn ticket_id(raw: &str) -> Result<TicketId, String> {
    wire::uuid(raw).map(TicketId)
}

/// Parses an `expected_version`: unset is `None`; versions start at 1.
pub fn expected_version(raw: Option<i64>) -> Result<Option<i64>, String> {
    match raw {
        Some(v) if v < 1 => Err("versions start at 1".into()),
        other => Ok(other),
    }
}

/// Parses an idempotency key: 1-128 printable ASCII characters, compared exactly (not
/// trimmed). Empty is `None`, or "required" when `required`.
pub fn idempotency_key(raw: &str, required: bool) -> Result<Option<String>, String> {
    if raw.is_empty() {
        return if required {
            Err("required".into())
        } else {
            Ok(None)
        };
    }
    if raw.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(format!(
            "at most {MAX_IDEMPOTENCY_KEY_LEN} characters, got {}",
            raw.chars().count()
        ));
    }
    if !raw.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err("must be printable ASCII".into());
    }
    Ok(Some(raw.to_owned()))
}

/// Checks the form of a category or root-cause id: 1-64 characters of a-z, 0-9 and _,
/// starting with a letter. Whether it exists is the catalog's business.
fn catalog_id(raw: &str) -> Result<String, String> {
    let starts_with_letter = raw.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    let charset = raw
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if raw.is_empty() {
        Err("required".into())
    } else if starts_with_letter && charset && raw.len() <= MAX_ID_LEN {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "must be 1-{MAX_ID_LEN} characters of a-z, 0-9 and _, starting with a letter"
        ))
    }
}

/// Parses attributes: at most 50; keys 1-64 characters of a-z, 0-9, `_ . -`; values at most
/// 1,024 characters (trimmed). A bad entry is reported as `field["key"]`, in key order.
fn attributes(
    field: &str,
    raw: &HashMap<String, String>,
    v: &mut Violations,
) -> BTreeMap<String, String> {
    if raw.len() > MAX_ATTRIBUTES {
        v.add(
            field,
            format!("at most {MAX_ATTRIBUTES} entries, got {}", raw.len()),
        );
    }
    let sorted: BTreeMap<&String, &String> = raw.iter().collect();
    let mut out = BTreeMap::new();
    for (key, value) in sorted {
        let at = format!("{field}[{key:?}]");
        let key_ok = !key.is_empty()
            && key.len() <= MAX_ATTRIBUTE_KEY_LEN
            && key.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            });
        if !key_ok {
            v.add(
                &at,
                format!("key must be 1-{MAX_ATTRIBUTE_KEY_LEN} characters of a-z, 0-9, _ . and -"),
            );
            continue;
        }
        if let Some(value) = v.take(&at, text(value, MAX_ATTRIBUTE_VALUE_LEN, false)) {
            out.insert(key.clone(), value);
        }
    }
    out
}

/// Merges violations whose fields are already full paths.
fn merge<T>(v: &mut Violations, parsed: Result<T, Violations>) -> Option<T> {
    v.take_nested("", parsed)
}

/// A language code: empty stays empty (the deployment's default), else normalised.
fn language_code(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        Ok(String::new())
    } else {
        normalize_language_code(trimmed)
    }
}

/// The stored name of an identity kind ("phone", "email", "external_id").
fn identity_kind_from_wire(raw: i32) -> Result<&'static str, String> {
    match common::IdentityKind::try_from(raw) {
        Ok(common::IdentityKind::Phone) => Ok("phone"),
        Ok(common::IdentityKind::Email) => Ok("email"),
        Ok(common::IdentityKind::ExternalId) => Ok("external_id"),
        Ok(common::IdentityKind::Unspecified) => Err("required".into()),
        Err(_) => Err(format!("{raw} is not an identity kind")),
    }
}

fn identity_kind_to_wire(kind: &str) -> common::IdentityKind {
    match kind {
        "phone" => common::IdentityKind::Phone,
        "email" => common::IdentityKind::Email,
        "external_id" => common::IdentityKind::ExternalId,
        _ => common::IdentityKind::Unspecified,
    }
}

/// Parses an identity to resolve: fields relative to the identity (`kind`, `value`,
/// `region_code`). The value is kept as given (trimmed); the customer service parses it.
fn caller_identity(r: &common::IdentityRef) -> Result<CallerIdentity, Violations> {
    let mut v = Violations::new();
    let kind = v.take("kind", identity_kind_from_wire(r.kind));
    let value = v.take("value", text(&r.value, MAX_IDENTITY_VALUE_LEN, true));
    let region = r.region_code.trim();
    let region_ok =
        region.is_empty() || (region.len() == 2 && region.bytes().all(|b| b.is_ascii_alphabetic()));
    if !region_ok {
        v.add(
            "region_code",
            "must be an ISO 3166-1 alpha-2 region such as GB or DE",
        );
    }
    match (kind, value) {
        (Some(kind), Some(value)) if v.is_empty() => Ok(CallerIdentity {
            kind: kind.to_owned(),
            value,
            region: region.to_ascii_uppercase(),
        }),
        _ => Err(v),
    }
}

fn caller_identity_to_wire(c: &CallerIdentity) -> common::IdentityRef {
    common::IdentityRef {
        kind: identity_kind_to_wire(&c.kind) as i32,
        value: c.value.clone(),
        region_code: c.region.clone(),
    }
}

/// Parses an amount of money into (currency, millionths); fields relative to the Money.
fn money(m: &common::Money) -> Result<(String, i64), Violations> {
    let mut v = Violations::new();
    let currency = m.currency_code.as_str();
    if !(currency.is_empty()
        || (currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())))
    {
        v.add(
            "currency_code",
            "must be an ISO 4217 code of three upper-case letters, such as EUR",
        );
    }
    if !(-999_999_999..=999_999_999).contains(&m.nanos) {
        v.add("nanos", "must be between -999,999,999 and 999,999,999");
    } else if m.nanos % 1_000 != 0 {
        v.add(
            "nanos",
            "must be a multiple of 1,000: amounts are kept to millionths",
        );
    } else if (m.units > 0 && m.nanos < 0) || (m.units < 0 && m.nanos > 0) {
        v.add("nanos", "must have the same sign as units");
    }
    if !v.is_empty() {
        return Err(v);
    }
    match m
        .units
        .checked_mul(1_000_000)
        .and_then(|u| u.checked_add(i64::from(m.nanos / 1_000)))
    {
        None => v.add("units", "too large"),
        Some(micros) if micros <= 0 => v.add("", "must be positive"),
        Some(micros) => return Ok((currency.to_owned(), micros)),
    }
    Err(v)
}

fn money_to_wire(currency: &str, micros: i64) -> common::Money {
    // Truncating division keeps units and nanos of the same sign, as Money requires.
    let nanos = i32::try_from((micros % 1_000_000) * 1_000).unwrap_or(0);
    common::Money {
        currency_code: currency.to_owned(),
        units: micros / 1_000_000,
        nanos,
    }
}

/// Parses a compensation; fields relative to it (`kind`, `amount.units`, `note`).
fn compensation(c: &pb::Compensation) -> Result<Compensation, Violations> {
    let mut v = Violations::new();
    let kind = v.take("kind", required(compensation_kind_from_wire(c.kind)));
    let amount = match &c.amount {
        None => {
            v.add("amount", "required");
            None
        }
        Some(m) => v.take_nested("amount", money(m)),
    };
    let note = v.take("note", text(&c.note, MAX_NOTE_LEN, false));
    match (kind, amount, note) {
        (Some(kind), Some((currency, micros)), Some(note)) if v.is_empty() => Ok(Compensation {
            kind,
            currency,
            micros,
            note,
        }),
        _ => Err(v),
    }
}

fn compensation_to_wire(c: &Compensation) -> pb::Compensation {
    pb::Compensation {
        kind: compensation_kind_to_wire(c.kind) as i32,
        amount: Some(money_to_wire(&c.currency, c.micros)),
        note: c.note.clone(),
    }
}

/// A wire duration from a domain one (saturating at the wire's range).
pub fn duration_to_wire(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

// ---------------------------------------------------------------------------------------------
// Ticket, links, comments, events to the wire
// ---------------------------------------------------------------------------------------------

/// The wire form of a ticket with its `links`, as seen at `now`.
///
/// The SLA block reports the stored status (the one ListTickets filters on, kept current by
/// the breach monitor) and computes the moving parts at `now`: the paused duration and the
/// resolution due time, which keeps moving while paused. For a terminal ticket those are taken
/// at its close time, so a ticket cancelled while paused does not go on accruing pause. If the
/// ticket's calendar is no longer configured the stored values are shown.
pub fn ticket_to_wire(
    t: &Ticket,
    links: &[Link],
    rules: &Rules,
    now: OffsetDateTime,
) -> pb::Ticket {
    let d = &t.details;
    let terminal = t.state.is_terminal();
    let clock_now = match t.closed_at {
        Some(closed) if terminal => closed.min(now),
        _ => now,
    };
    let calendar = rules.policies.calendar(&t.sla.calendar).ok();
    let paused_duration = calendar
        .and_then(|c| t.sla.paused_time(c, clock_now).ok())
        .unwrap_or(t.sla.paused_total);
    let resolution_due = calendar
        .and_then(|c| t.sla.resolution_due(c, clock_now).ok())
        .unwrap_or(t.sla.resolution_due);
    let snapshot = match &t.customer {
        CustomerLink::Resolved { snapshot, .. } => Some(pb::CustomerSnapshot {
            tier: snapshot.tier.to_wire() as i32,
            key_account: snapshot.key_account,
            account_manager_id: snapshot.account_manager_id.clone().unwrap_or_default(),
            display_name: snapshot.display_name.clone(),
            snapshot_time: Some(wire::timestamp(snapshot.taken_at)),
        }),
        CustomerLink::Pending { .. } => None,
    };
    let follow_up = pb::FollowUp {
        due_time: t.follow_up_due_at.map(wire::timestamp),
        record_time: t.follow_up.as_ref().map(|f| wire::timestamp(f.at)),
        expected: t.follow_up.as_ref().map_or(0.0, |f| f.expected),
        perceived: t.follow_up.as_ref().map_or(0.0, |f| f.perceived),
        satisfaction: t.follow_up.as_ref().map_or(0.0, |f| f.satisfaction()),
        comment: t
            .follow_up
            .as_ref()
            .map(|f| f.comment.clone())
            .unwrap_or_default(),
        handling_agent_id: t
            .follow_up
            .as_ref()
            .and_then(|f| f.handling_agent_id.clone())
            .unwrap_or_default(),
        recorded_by_agent_id: t
            .follow_up
            .as_ref()
            .map(|f| f.recorded_by.clone())
            .unwrap_or_default(),
        recorded_on_profile: t.follow_up.as_ref().is_some_and(|f| f.on_profile),
    };
    pb::Ticket {
        id: t.id.to_string(),
        number: t.number.to_string(),
        idempotency_key: t.idempotency_key.clone(),
        customer_id: t.customer.id().map(|id| id.to_string()).unwrap_or_default(),
        customer_resolution: customer_resolution_to_wire(&t.customer) as i32,
        caller_identity: t.caller.as_ref().map(caller_identity_to_wire),
        customer: snapshot,
        channel: t.channel.to_wire() as i32,
        r#type: ticket_type_to_wire(d.ticket_type) as i32,
        category: d.category.clone(),
        department: t.department.clone(),
        severity: severity_to_wire(d.severity) as i32,
        priority: t.priority,
        subject: d.subject.clone(),
        description: d.description.clone(),
        language_code: d.language_code.clone(),
        customer_emotion: opt(d.customer_emotion, |e| emotion_to_wire(e) as i32),
        desired_outcome: d.desired_outcome.clone(),
        compensation: d.compensation.as_ref().map(compensation_to_wire),
        root_cause: d.root_cause.clone().unwrap_or_default(),
        triage_label: opt(d.triage_label, |l| triage_label_to_wire(l) as i32),
        resolution_summary: d.resolution_summary.clone(),
        tags: d.tags.clone(),
        attributes: d
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        required_skills: t.required_skills.clone(),
        state: ticket_state_to_wire(t.state) as i32,
        state_reason: t.state_reason.clone(),
        hold_reason: opt(t.hold_reason, |r| hold_reason_to_wire(r) as i32),
        cancel_reason: opt(t.cancel_reason, |r| cancel_reason_to_wire(r) as i32),
        available_transitions: state::available_transitions(t.state)
            .into_iter()
            .map(|s| ticket_state_to_wire(s) as i32)
            .collect(),
        assigned_agent_id: t.assigned_agent_id.clone().unwrap_or_default(),
        handler_agent_ids: t.handler_agent_ids.clone(),
        routing: Some(pb::TicketRouting {
            enqueue_time: Some(wire::timestamp(t.routing.enqueue_at)),
            pickup_due_time: Some(wire::timestamp(t.routing.pickup_due_at)),
            preferred_agent_id: t.routing.preferred_agent_id.clone().unwrap_or_default(),
            reservation_id: t
                .routing
                .reservation_id
                .map(|r| r.to_string())
                .unwrap_or_default(),
            tier: t.customer.tier().unwrap_or(rules.default_tier).to_wire() as i32,
        }),
        merged_into_ticket_id: t.merged_into.map(|m| m.to_string()).unwrap_or_default(),
        links: links.iter().map(link_to_wire).collect(),
        sla: Some(pb::Sla {
            policy_id: t.sla.policy_id.clone(),
            first_response_due_time: Some(wire::timestamp(t.sla.first_response_due)),
            first_response_time: t.sla.first_response_at.map(wire::timestamp),
            resolution_due_time: Some(wire::timestamp(resolution_due)),
            status: sla_status_to_wire(t.sla_status) as i32,
            paused: t.sla.is_paused() && !terminal,
            paused_duration: Some(duration_to_wire(paused_duration)),
            escalation_level: i32::try_from(t.sla.escalation_level()).unwrap_or(i32::MAX),
        }),
        follow_up: Some(follow_up),
        version: t.version,
        create_time: Some(wire::timestamp(t.created_at)),
        update_time: Some(wire::timestamp(t.updated_at)),
        resolve_time: t.resolved_at.map(wire::timestamp),
        close_time: t.closed_at.map(wire::timestamp),
    }
}

/// The wire form of a link.
pub fn link_to_wire(l: &Link) -> pb::TicketLink {
    pb::TicketLink {
        linked_ticket_id: l.linked_ticket_id.to_string(),
        linked_ticket_number: l.linked_number.to_string(),
        kind: link_kind_to_wire(l.kind) as i32,
        create_time: Some(wire::timestamp(l.created_at)),
    }
}

/// The wire form of an actor.
pub fn actor_to_wire(a: &Actor) -> pb::Actor {
    pb::Actor {
        kind: actor_kind_to_wire(a.kind) as i32,
        id: a.id.clone(),
    }
}

/// The wire form of a comment.
pub fn comment_to_wire(c: &Comment) -> pb::Comment {
    pb::Comment {
        id: c.id.to_string(),
        ticket_id: c.ticket_id.to_string(),
        visibility: visibility_to_wire(c.visibility) as i32,
        author: Some(actor_to_wire(&c.author)),
        body: c.body.clone(),
        channel: c.channel.to_wire() as i32,
        first_response: c.first_response,
        create_time: Some(wire::timestamp(c.created_at)),
    }
}

/// The wire form of a recorded event; `snapshot` is the ticket after the change
/// (WatchTicketEvents), `None` in history.
pub fn event_to_wire(e: &RecordedEvent, snapshot: Option<pb::Ticket>) -> pb::TicketEvent {
    let ev = &e.event;
    pb::TicketEvent {
        sequence: e.sequence,
        event_id: e.event_id.to_string(),
        kind: event_kind_to_wire(ev.kind) as i32,
        ticket_id: e.ticket_id.to_string(),
        ticket_version: e.ticket_version,
        event_time: Some(wire::timestamp(e.at)),
        actor: Some(actor_to_wire(&ev.actor)),
        from_state: ticket_state_to_wire(ev.from) as i32,
        to_state: ticket_state_to_wire(ev.to) as i32,
        reason: ev.reason.clone(),
        changed_fields: (!ev.changed_fields.is_empty()).then(|| prost_types::FieldMask {
            paths: ev.changed_fields.clone(),
        }),
        comment_id: ev.comment_id.map(|c| c.to_string()).unwrap_or_default(),
        related_ticket_id: ev
            .related_ticket_id
            .map(|r| r.to_string())
            .unwrap_or_default(),
        ticket: snapshot,
    }
}

/// A HEARTBEAT for a stream that has examined events up to `sequence`.
pub fn heartbeat(sequence: i64, now: OffsetDateTime) -> pb::TicketEvent {
    pb::TicketEvent {
        sequence,
        kind: pb::TicketEventKind::Heartbeat as i32,
        event_time: Some(wire::timestamp(now)),
        ..pb::TicketEvent::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration to the wire
// ---------------------------------------------------------------------------------------------

/// The wire form of a category.
pub fn category_to_wire(c: &Category) -> pb::Category {
    pb::Category {
        id: c.id.clone(),
        display_name: c.display_name.clone(),
        department: c.department.clone(),
        default_type: ticket_type_to_wire(c.default_type) as i32,
        default_severity: severity_to_wire(c.default_severity) as i32,
        priority_boost: i32::from(c.priority_boost),
        required_skills: c.required_skills.clone(),
        active: c.active,
    }
}

/// The wire form of a root cause.
pub fn root_cause_to_wire(r: &RootCause) -> pb::RootCause {
    pb::RootCause {
        id: r.id.clone(),
        display_name: r.display_name.clone(),
        description: r.description.clone(),
        active: r.active,
    }
}

/// The wire form of an SLA policy, as [`crate::domain::sla::SlaPolicies::iter`] yields it
/// (`severity` `None`: any severity, UNSPECIFIED on the wire).
pub fn sla_policy_to_wire(tier: Tier, severity: Option<Severity>, p: &SlaPolicy) -> pb::SlaPolicy {
    pb::SlaPolicy {
        id: p.id.clone(),
        display_name: p.display_name.clone(),
        tier: tier.to_wire() as i32,
        severity: opt(severity, |s| severity_to_wire(s) as i32),
        first_response_target: Some(duration_to_wire(p.first_response_target)),
        resolution_target: Some(duration_to_wire(p.resolution_target)),
        at_risk_window: Some(duration_to_wire(p.at_risk_window)),
        pause_on_hold_reasons: p
            .pause_on_hold_reasons
            .iter()
            .map(|r| hold_reason_to_wire(*r) as i32)
            .collect(),
        follow_up_delay: Some(duration_to_wire(p.follow_up_delay)),
        auto_close_delay: Some(duration_to_wire(p.auto_close_delay)),
    }
}

// ---------------------------------------------------------------------------------------------
// CreateTicket
// ---------------------------------------------------------------------------------------------

/// Who a new ticket is for, as the request named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerRef {
    /// By id (`customer_id`).
    Id(Uuid),
    /// By an identity to resolve through the customer service (`caller_identity`).
    Identity(CallerIdentity),
}

/// A parsed CreateTicketRequest.
#[derive(Debug, Clone)]
pub struct ParsedCreate {
    /// What intake needs; `intake.caller` is set when the customer was given by identity.
    pub intake: Intake,
    /// Who the ticket is for.
    pub customer: CustomerRef,
}

/// Parses a CreateTicketRequest, checking every field; violations name the request's fields
/// (`idempotency_key`, `customer_id`, `caller_identity.value`, `tags[3]`, `attributes["k"]`).
///
/// Whether the category exists is checked when the ticket is opened (the catalog answers with
/// a violation of `category`); here only its form.
pub fn parse_create(req: &pb::CreateTicketRequest) -> Result<ParsedCreate, Violations> {
    use pb::create_ticket_request::Customer;

    let mut v = Violations::new();
    let key = v
        .take(
            "idempotency_key",
            idempotency_key(&req.idempotency_key, true),
        )
        .flatten();
    let customer = match &req.customer {
        None => {
            v.add(
                "customer_id",
                "required: give customer_id or caller_identity",
            );
            None
        }
        Some(Customer::CustomerId(raw)) => {
            v.take("customer_id", wire::uuid(raw)).map(CustomerRef::Id)
        }
        Some(Customer::CallerIdentity(r)) => v
            .take_nested("caller_identity", caller_identity(r))
            .map(CustomerRef::Identity),
    };
    let channel = v.take("channel", required(Channel::from_wire(req.channel)));
    let ticket_type = v.take("type", ticket_type_from_wire(req.r#type));
    let category = if req.category.is_empty() {
        Some(String::new())
    } else {
        v.take("category", catalog_id(&req.category))
    };
    let severity = v.take("severity", severity_from_wire(req.severity));
    let subject = v.take("subject", text(&req.subject, MAX_SUBJECT_LEN, false));
    let description = v.take("description", text(&req.description, MAX_BODY_LEN, false));
    let language = v.take("language_code", language_code(&req.language_code));
    let emotion = v.take("customer_emotion", emotion_from_wire(req.customer_emotion));
    let desired_outcome = v.take(
        "desired_outcome",
        text(&req.desired_outcome, MAX_DESIRED_OUTCOME_LEN, false),
    );
    let tags = merge(&mut v, normalize_tags("tags", &req.tags));
    let attrs = attributes("attributes", &req.attributes, &mut v);
    let skills = merge(
        &mut v,
        normalize_skills("required_skills", &req.required_skills),
    );
    let follow_up_of = v.take(
        "follow_up_of_ticket_id",
        wire::optional_uuid(&req.follow_up_of_ticket_id),
    );

    match (
        key,
        customer,
        channel,
        ticket_type,
        category,
        severity,
        subject,
        description,
        language,
        emotion,
        desired_outcome,
        tags,
        skills,
        follow_up_of,
    ) {
        (
            Some(key),
            Some(customer),
            Some(channel),
            Some(ticket_type),
            Some(category),
            Some(severity),
            Some(subject),
            Some(description),
            Some(language_code),
            Some(customer_emotion),
            Some(desired_outcome),
            Some(tags),
            Some(own_skills),
            Some(follow_up_of),
        ) if v.is_empty() => {
            let caller = match &customer {
                CustomerRef::Identity(identity) => Some(identity.clone()),
                CustomerRef::Id(_) => None,
            };
            Ok(ParsedCreate {
                intake: Intake {
                    idempotency_key: key,
                    channel,
                    ticket_type,
                    category,
                    severity,
                    subject,
                    description,
                    language_code,
                    customer_emotion,
                    desired_outcome,
                    tags,
                    attributes: attrs,
                    own_skills,
                    caller,
                    follow_up_of: follow_up_of.map(TicketId),
                },
                customer,
            })
        }
        _ => Err(v),
    }
}

/// Bytes that are equal exactly when two CreateTicketRequests are the same request: what an
/// idempotency key is bound to. Compare them (or a hash of them) on a replay.
///
/// The protobuf encoding of the request is deterministic except for the `attributes` map
/// (prost keeps it in a `HashMap`, whose order varies between processes), so the request is
/// encoded without the map and the map's entries follow in key order, each length-prefixed.
/// The request is compared as sent, not normalised: the same tags in another order are another
/// request. Fields added to the proto later do not change the bytes of requests that leave
/// them unset.
pub fn fingerprint(req: &pb::CreateTicketRequest) -> Vec<u8> {
    let mut canonical = req.clone();
    let attributes = std::mem::take(&mut canonical.attributes);
    let mut bytes = vec![1u8]; // format version
    let encoded = canonical.encode_to_vec();
    push_len_prefixed(&mut bytes, &encoded);
    let sorted: BTreeMap<&String, &String> = attributes.iter().collect();
    for (key, value) in sorted {
        push_len_prefixed(&mut bytes, key.as_bytes());
        push_len_prefixed(&mut bytes, value.as_bytes());
    }
    bytes
}

fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

// ---------------------------------------------------------------------------------------------
// GetTicket
// ---------------------------------------------------------------------------------------------

/// How GetTicket names the ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketKey {
    /// By id.
    Id(TicketId),
    /// By human number.
    Number(TicketNumber),
}

/// Parses a GetTicketRequest's key.
pub fn parse_get(req: &pb::GetTicketRequest) -> Result<TicketKey, Violations> {
    use pb::get_ticket_request::Key;

    let mut v = Violations::new();
    let key = match &req.key {
        None => {
            v.add("ticket_id", "required: give ticket_id or number");
            None
        }
        Some(Key::TicketId(raw)) => v.take("ticket_id", ticket_id(raw)).map(TicketKey::Id),
        Some(Key::Number(raw)) => v
            .take("number", TicketNumber::parse(raw))
            .map(TicketKey::Number),
    };
    match key {
        Some(key) if v.is_empty() => Ok(key),
        _ => Err(v),
    }
}

// ---------------------------------------------------------------------------------------------
// UpdateTicket
// ---------------------------------------------------------------------------------------------

/// A parsed UpdateTicketRequest: the ticket, a new customer id if `customer_id` is in the mask,
/// the patch of the other fields, and the expected version.
pub type ParsedUpdate = (TicketId, Option<Uuid>, DetailsPatch, Option<i64>);

/// Parses an UpdateTicketRequest.
///
/// The mask is required, with top-level paths only; "*" is refused; a path that is not a
/// field of Ticket, or not updatable, is a violation of `update_mask` naming it. The values of
/// the named fields are read from `ticket` and reported as `ticket.<field>`. An empty value
/// clears a field; `customer_id`, `category` and `subject` cannot be cleared; UNSPECIFIED
/// `type` and `severity` mean the category's defaults again (see [`DetailsPatch`]). A path
/// named twice counts once.
pub fn parse_update(req: &pb::UpdateTicketRequest) -> Result<ParsedUpdate, Violations> {
    let mut v = Violations::new();
    let version = v.take("expected_version", expected_version(req.expected_version));
    let paths: Vec<&str> = match &req.update_mask {
        Some(mask) if !mask.paths.is_empty() => mask.paths.iter().map(String::as_str).collect(),
        _ => {
            v.add("update_mask", "required: name the fields to change");
            Vec::new()
        }
    };
    let Some(t) = &req.ticket else {
        v.add("ticket", "required");
        return Err(v);
    };
    let id = v.take("ticket.id", ticket_id(&t.id));

    let mut patch = DetailsPatch::default();
    let mut customer_id = None;
    let mut seen: Vec<&str> = Vec::new();
    for path in paths {
        if seen.contains(&path) {
            continue;
        }
        seen.push(path);
        let at = format!("ticket.{path}");
        match path {
            "*" => v.add(
                "update_mask",
                "\"*\" is not accepted: name the fields to change",
            ),
            "customer_id" => customer_id = v.take(&at, wire::uuid(&t.customer_id)),
            "type" => patch.ticket_type = v.take(&at, ticket_type_from_wire(t.r#type)),
            "category" => patch.category = v.take(&at, catalog_id(&t.category)),
            "severity" => patch.severity = v.take(&at, severity_from_wire(t.severity)),
            "subject" => patch.subject = v.take(&at, text(&t.subject, MAX_SUBJECT_LEN, true)),
            "description" => {
                patch.description = v.take(&at, text(&t.description, MAX_BODY_LEN, false))
            }
            "language_code" => patch.language_code = v.take(&at, language_code(&t.language_code)),
            "customer_emotion" => {
                patch.customer_emotion = v.take(&at, emotion_from_wire(t.customer_emotion))
            }
            "desired_outcome" => {
                patch.desired_outcome = v.take(
                    &at,
                    text(&t.desired_outcome, MAX_DESIRED_OUTCOME_LEN, false),
                )
            }
            "compensation" => {
                patch.compensation = match &t.compensation {
                    None => Some(None),
                    Some(c) => v.take_nested(&at, compensation(c)).map(Some),
                }
            }
            "root_cause" => {
                patch.root_cause = if t.root_cause.is_empty() {
                    Some(None)
                } else {
                    v.take(&at, catalog_id(&t.root_cause)).map(Some)
                }
            }
            "triage_label" => {
                patch.triage_label = v.take(&at, triage_label_from_wire(t.triage_label))
            }
            "resolution_summary" => {
                patch.resolution_summary = v.take(
                    &at,
                    text(&t.resolution_summary, MAX_RESOLUTION_SUMMARY_LEN, false),
                )
            }
            "tags" => patch.tags = merge(&mut v, normalize_tags(&at, &t.tags)),
            "attributes" => patch.attributes = Some(attributes(&at, &t.attributes, &mut v)),
            "required_skills" => {
                patch.required_skills = merge(&mut v, normalize_skills(&at, &t.required_skills))
            }
            other if other.contains('.') => v.add(
                "update_mask",
                format!("{other}: top-level paths only; name the whole field"),
            ),
            other if NOT_UPDATABLE_FIELDS.contains(&other) => v.add(
                "update_mask",
                format!(
                    "{other} cannot be changed by UpdateTicket (output only, or changed by \
                     TransitionTicket, AssignTicket, MergeTickets or LinkTickets)"
                ),
            ),
            other => v.add("update_mask", format!("{other} is not a field of Ticket")),
        }
    }
    match (id, version) {
        (Some(id), Some(version)) if v.is_empty() => Ok((id, customer_id, patch, version)),
        _ => Err(v),
    }
}

// ---------------------------------------------------------------------------------------------
// TransitionTicket
// ---------------------------------------------------------------------------------------------

/// A parsed TransitionTicketRequest. The move itself needs the ticket (does it already carry a
/// resolution summary?): build it with [`ParsedTransition::to_move`] once the ticket is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTransition {
    /// The ticket.
    pub ticket_id: TicketId,
    /// The requested state.
    pub target: TicketState,
    /// The hold reason given.
    pub hold_reason: Option<HoldReason>,
    /// The cancel reason given.
    pub cancel_reason: Option<CancelReason>,
    /// The resolution summary given, trimmed; empty if none.
    pub resolution_summary: String,
    /// The note, trimmed (becomes `state_reason`).
    pub note: String,
    /// The version the caller read.
    pub expected_version: Option<i64>,
}

/// Parses a TransitionTicketRequest and checks everything that does not need the ticket: the
/// fields' forms, and which reasons and summary go with the target (all reported at once, on
/// the request's fields `target_state`, `hold_reason`, `cancel_reason`, `resolution_summary`).
pub fn parse_transition(req: &pb::TransitionTicketRequest) -> Result<ParsedTransition, Violations> {
    let mut v = Violations::new();
    let id = v.take("ticket_id", ticket_id(&req.ticket_id));
    let target = v.take("target_state", ticket_state_from_wire(req.target_state));
    let hold = v.take("hold_reason", hold_reason_from_wire(req.hold_reason));
    let cancel = v.take("cancel_reason", cancel_reason_from_wire(req.cancel_reason));
    let summary = v.take(
        "resolution_summary",
        text(&req.resolution_summary, MAX_RESOLUTION_SUMMARY_LEN, false),
    );
    let note = v.take("note", text(&req.note, MAX_NOTE_LEN, false));
    let version = v.take("expected_version", expected_version(req.expected_version));

    // Which reasons and summary go with the target. The summary on the ticket is not known
    // yet: assume there is one, so only the request's own completeness is judged here. A field
    // already reported (an unknown enum number) is not reported twice.
    let request = TransitionRequest {
        target_state: target.flatten(),
        hold_reason: hold.flatten(),
        cancel_reason: cancel.flatten(),
        resolution_summary_given: summary.as_ref().is_some_and(|s| !s.is_empty()),
    };
    if let Err(e) = request.to_move(true) {
        for f in transition_violations(e).as_slice() {
            if !v.as_slice().iter().any(|seen| seen.field == f.field) {
                v.add(f.field.clone(), f.description.clone());
            }
        }
    }
    match (id, target.flatten(), hold, cancel, summary, note, version) {
        (
            Some(ticket_id),
            Some(target),
            Some(hold_reason),
            Some(cancel_reason),
            Some(resolution_summary),
            Some(note),
            Some(expected_version),
        ) if v.is_empty() => Ok(ParsedTransition {
            ticket_id,
            target,
            hold_reason,
            cancel_reason,
            resolution_summary,
            note,
            expected_version,
        }),
        _ => Err(v),
    }
}

/// The violations of a refused transition request, on TransitionTicketRequest's fields. The
/// state machine names them as the request does (`target_state`, `hold_reason`,
/// `cancel_reason`, `resolution_summary`); an illegal move has none.
pub fn transition_violations(e: TransitionError) -> Violations {
    match e {
        TransitionError::Invalid(v) => v,
        TransitionError::Illegal { .. } => Violations::new(),
    }
}

impl ParsedTransition {
    /// The move, now that the ticket is known: `ticket_has_summary` says whether it already
    /// carries a resolution summary (RESOLVED needs one, here or there).
    pub fn to_move(&self, ticket_has_summary: bool) -> Result<Move, TransitionError> {
        TransitionRequest {
            target_state: Some(self.target),
            hold_reason: self.hold_reason,
            cancel_reason: self.cancel_reason,
            resolution_summary_given: !self.resolution_summary.is_empty(),
        }
        .to_move(ticket_has_summary)
    }

    /// What [`crate::domain::ticket::apply_move`] needs besides the move.
    pub fn context(&self) -> MoveContext {
        MoveContext {
            note: self.note.clone(),
            resolution_summary: (!self.resolution_summary.is_empty())
                .then(|| self.resolution_summary.clone()),
            ..MoveContext::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AddComment
// ---------------------------------------------------------------------------------------------

/// A parsed AddCommentRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedComment {
    /// The ticket to comment on.
    pub ticket_id: TicketId,
    /// Public reply or internal note.
    pub visibility: Visibility,
    /// The author. A CUSTOMER author with an empty id stands for the ticket's customer: fill it
    /// in from the ticket.
    pub author: Actor,
    /// The text, trimmed, 1-20,000 characters.
    pub body: String,
    /// The channel; `None` means the ticket's channel.
    pub channel: Option<Channel>,
    /// The idempotency key, if given.
    pub idempotency_key: Option<String>,
}

impl ParsedComment {
    /// Who wrote it, as the state machine cares: the customer, the ticket's assigned agent, or
    /// anyone else.
    pub fn state_author(&self, assigned_agent_id: Option<&str>) -> CommentAuthor {
        match self.author.kind {
            ActorKind::Customer => CommentAuthor::Customer,
            ActorKind::Agent if assigned_agent_id == Some(self.author.id.as_str()) => {
                CommentAuthor::AssignedAgent
            }
            _ => CommentAuthor::Other,
        }
    }
}

/// Parses an AddCommentRequest. Rules from the proto: visibility, author kind and body are
/// required; an AGENT author needs an id; a CUSTOMER's comment must be PUBLIC (reported on
/// `comment.visibility`) and its id, if given, is a customer id (UUID).
pub fn parse_comment(req: &pb::AddCommentRequest) -> Result<ParsedComment, Violations> {
    let mut v = Violations::new();
    let id = v.take("ticket_id", ticket_id(&req.ticket_id));
    let key = v.take(
        "idempotency_key",
        idempotency_key(&req.idempotency_key, false),
    );
    let Some(c) = &req.comment else {
        v.add("comment", "required");
        return Err(v);
    };
    let visibility = v.take(
        "comment.visibility",
        required(visibility_from_wire(c.visibility)),
    );
    let author = match &c.author {
        None => {
            v.add("comment.author", "required");
            None
        }
        Some(a) => {
            let kind = v.take(
                "comment.author.kind",
                required(actor_kind_from_wire(a.kind)),
            );
            let author_id = v.take("comment.author.id", text(&a.id, MAX_ACTOR_ID_LEN, false));
            match (kind, author_id) {
                (Some(ActorKind::Agent), Some(author_id)) if author_id.is_empty() => {
                    v.add("comment.author.id", "required: the agent's id");
                    None
                }
                (Some(ActorKind::Customer), Some(author_id)) if !author_id.is_empty() => v
                    .take("comment.author.id", wire::uuid(&author_id))
                    .map(|id| Actor {
                        kind: ActorKind::Customer,
                        id: id.to_string(),
                    }),
                (Some(kind), Some(id)) => Some(Actor { kind, id }),
                _ => None,
            }
        }
    };
    if author.as_ref().map(|a| a.kind) == Some(ActorKind::Customer)
        && visibility == Some(Visibility::Internal)
    {
        v.add("comment.visibility", "a customer's comment must be public");
    }
    let body = v.take("comment.body", text(&c.body, MAX_BODY_LEN, true));
    let channel = v.take("comment.channel", Channel::from_wire(c.channel));
    match (id, key, visibility, author, body, channel) {
        (
            Some(ticket_id),
            Some(idempotency_key),
            Some(visibility),
            Some(author),
            Some(body),
            Some(channel),
        ) if v.is_empty() => Ok(ParsedComment {
            ticket_id,
            visibility,
            author,
            body,
            channel,
            idempotency_key,
        }),
        _ => Err(v),
    }
}

/// Bytes equal exactly when two AddCommentRequests are the same request (the message has no
/// map, so its protobuf encoding is deterministic).
pub fn comment_fingerprint(req: &pb::AddCommentRequest) -> Vec<u8> {
    req.encode_to_vec()
}

// ---------------------------------------------------------------------------------------------
// ListTickets
// ---------------------------------------------------------------------------------------------

pub use crate::store::{TicketFilter, TicketOrder};

/// Parses a ListTicketsRequest's filters and page size (the page token is the store's).
///
/// UNSPECIFIED is invalid among `states` and `sla_statuses`; among `tiers` it means "any tier",
/// as the common proto says, so the tier filter is dropped. Values are deduplicated and sorted.
pub fn list_filter(req: &pb::ListTicketsRequest) -> Result<TicketFilter, Violations> {
    let mut v = Violations::new();
    let page_size = match req.page_size {
        0 => Some(DEFAULT_TICKET_PAGE_SIZE),
        n => match u32::try_from(n) {
            Ok(n) if n <= MAX_TICKET_PAGE_SIZE => Some(n),
            _ => {
                v.add(
                    "page_size",
                    format!(
                        "must be 1-{MAX_TICKET_PAGE_SIZE}, or 0 for {DEFAULT_TICKET_PAGE_SIZE}"
                    ),
                );
                None
            }
        },
    };
    let mut states = Vec::new();
    for (i, raw) in req.states.iter().enumerate() {
        if let Some(s) = v.take(
            &format!("states[{i}]"),
            required(ticket_state_from_wire(*raw)),
        ) {
            states.push(s);
        }
    }
    let mut tiers = Vec::new();
    let mut any_tier = false;
    for (i, raw) in req.tiers.iter().enumerate() {
        match v.take(&format!("tiers[{i}]"), Tier::from_wire(*raw)) {
            Some(Some(t)) => tiers.push(t),
            Some(None) => any_tier = true,
            None => {}
        }
    }
    if any_tier {
        tiers.clear();
    }
    let mut names = |field: &str, raw: &[String]| -> Vec<String> {
        raw.iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let at = format!("{field}[{i}]");
                if s.is_empty() || s.len() > MAX_ID_LEN {
                    v.add(at, format!("must be 1-{MAX_ID_LEN} characters"));
                    None
                } else {
                    Some(s.clone())
                }
            })
            .collect()
    };
    let mut departments = names("departments", &req.departments);
    let mut categories = names("categories", &req.categories);
    let agent = v
        .take(
            "assigned_agent_id",
            text(&req.assigned_agent_id, MAX_ACTOR_ID_LEN, false),
        )
        .filter(|a| !a.is_empty());
    let customer_id = v
        .take("customer_id", wire::optional_uuid(&req.customer_id))
        .flatten();
    let mut sla_statuses = Vec::new();
    for (i, raw) in req.sla_statuses.iter().enumerate() {
        if let Some(s) = v.take(
            &format!("sla_statuses[{i}]"),
            required(sla_status_from_wire(*raw)),
        ) {
            sla_statuses.push(s);
        }
    }
    let from = req
        .create_time_from
        .as_ref()
        .and_then(|ts| v.take("create_time_from", wire::time_from(ts)));
    let before = req
        .create_time_to
        .as_ref()
        .and_then(|ts| v.take("create_time_to", wire::time_from(ts)));
    if let (Some(from), Some(before)) = (from, before)
        && before <= from
    {
        v.add("create_time_to", "must be after create_time_from");
    }
    let order = match pb::TicketOrder::try_from(req.order) {
        Ok(pb::TicketOrder::Unspecified | pb::TicketOrder::CreateTimeAsc) => {
            Some(TicketOrder::CreatedAsc)
        }
        Ok(pb::TicketOrder::CreateTimeDesc) => Some(TicketOrder::CreatedDesc),
        Err(_) => {
            v.add("order", format!("{} is not a ticket order", req.order));
            None
        }
    };

    states.sort_by_key(|s| ticket_state_to_wire(*s) as i32);
    states.dedup();
    tiers.sort();
    tiers.dedup();
    departments.sort();
    departments.dedup();
    categories.sort();
    categories.dedup();
    sla_statuses.sort_by_key(|s| sla_status_to_wire(*s) as i32);
    sla_statuses.dedup();
    match (page_size, order) {
        (Some(page_size), Some(order)) if v.is_empty() => Ok(TicketFilter {
            states,
            tiers,
            departments,
            categories,
            assigned_agent_id: agent,
            customer_id,
            sla_statuses,
            created_from: from,
            created_before: before,
            key_account: req.key_account,
            order,
            page_size,
        }),
        _ => Err(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::Catalog;
    use crate::domain::sla::SlaPolicies;
    use crate::domain::ticket::{CustomerSnapshot, NewEvent, RecordedFollowUp, open};
    use pb::create_ticket_request::Customer;

    fn rules() -> Rules {
        Rules {
            catalog: Catalog::default(),
            policies: SlaPolicies::default(),
            default_tier: Tier::C,
        }
    }

    fn monday_morning() -> OffsetDateTime {
        time::macros::datetime!(2026-11-30 09:00 UTC)
    }

    fn fields(v: &Violations) -> Vec<&str> {
        v.as_slice().iter().map(|f| f.field.as_str()).collect()
    }

    fn create_request() -> pb::CreateTicketRequest {
        pb::CreateTicketRequest {
            idempotency_key: "call-4711".into(),
            customer: Some(Customer::CallerIdentity(common::IdentityRef {
                kind: common::IdentityKind::Phone as i32,
                value: " 020 7946 0018 ".into(),
                region_code: "gb".into(),
            })),
            channel: common::Channel::Voice as i32,
            r#type: pb::TicketType::Complaint as i32,
            category: "product_quality".into(),
            severity: pb::Severity::High as i32,
            subject: "  Kettle leaks ".into(),
            description: "It leaks from the base.".into(),
            language_code: "PT-br".into(),
            customer_emotion: pb::CustomerEmotion::Angry as i32,
            desired_outcome: "A replacement".into(),
            tags: vec!["vip".into(), "kettle".into(), "vip".into()],
            attributes: HashMap::from([
                ("batch".to_string(), "B-42".to_string()),
                ("order.id".to_string(), "9001".to_string()),
            ]),
            required_skills: vec!["product:kettle".into()],
            follow_up_of_ticket_id: String::new(),
        }
    }

    fn ticket(request: &pb::CreateTicketRequest) -> Ticket {
        let parsed = parse_create(request).expect("valid request");
        let customer = CustomerLink::Resolved {
            id: Uuid::now_v7(),
            snapshot: CustomerSnapshot {
                tier: Tier::A,
                key_account: true,
                account_manager_id: Some("agent-1".into()),
                display_name: "Ada Lovelace".into(),
                taken_at: monday_morning(),
            },
        };
        open(parsed.intake, customer, &rules(), monday_morning()).expect("open")
    }

    // --- enums -------------------------------------------------------------------------------

    #[test]
    fn every_enum_round_trips_and_unknown_numbers_are_errors() {
        for s in TicketState::ALL {
            assert_eq!(
                ticket_state_from_wire(ticket_state_to_wire(s) as i32),
                Ok(Some(s))
            );
        }
        for t in TicketType::ALL {
            assert_eq!(
                ticket_type_from_wire(ticket_type_to_wire(t) as i32),
                Ok(Some(t))
            );
        }
        for s in Severity::ALL {
            assert_eq!(severity_from_wire(severity_to_wire(s) as i32), Ok(Some(s)));
        }
        for r in HoldReason::ALL {
            assert_eq!(
                hold_reason_from_wire(hold_reason_to_wire(r) as i32),
                Ok(Some(r))
            );
        }
        for r in CancelReason::ALL {
            assert_eq!(
                cancel_reason_from_wire(cancel_reason_to_wire(r) as i32),
                Ok(Some(r))
            );
        }
        use CustomerEmotion as E;
        for e in [
            E::Calm,
            E::Confused,
            E::Anxious,
            E::Frustrated,
            E::Angry,
            E::Distressed,
        ] {
            assert_eq!(emotion_from_wire(emotion_to_wire(e) as i32), Ok(Some(e)));
        }
        for l in [
            TriageLabel::Valid,
            TriageLabel::Junk,
            TriageLabel::Malicious,
        ] {
            assert_eq!(
                triage_label_from_wire(triage_label_to_wire(l) as i32),
                Ok(Some(l))
            );
        }
        use CompensationKind as C;
        for k in [C::Discount, C::Voucher, C::Refund] {
            assert_eq!(
                compensation_kind_from_wire(compensation_kind_to_wire(k) as i32),
                Ok(Some(k))
            );
        }
        use SlaStatus as S;
        for s in [S::OnTrack, S::AtRisk, S::Breached, S::Met, S::Paused] {
            assert_eq!(
                sla_status_from_wire(sla_status_to_wire(s) as i32),
                Ok(Some(s))
            );
        }
        use LinkKind as L;
        for k in [
            L::Related,
            L::FollowUpOf,
            L::HasFollowUp,
            L::DuplicateOf,
            L::HasDuplicate,
            L::MergedFrom,
        ] {
            assert_eq!(
                link_kind_from_wire(link_kind_to_wire(k) as i32),
                Ok(Some(k))
            );
        }
        use ActorKind as A;
        for k in [A::Agent, A::Customer, A::Service, A::System] {
            assert_eq!(
                actor_kind_from_wire(actor_kind_to_wire(k) as i32),
                Ok(Some(k))
            );
        }
        for k in [Visibility::Public, Visibility::Internal] {
            assert_eq!(
                visibility_from_wire(visibility_to_wire(k) as i32),
                Ok(Some(k))
            );
        }
        use EventKind as K;
        let kinds = [
            K::Created,
            K::Updated,
            K::StateChanged,
            K::Assigned,
            K::CommentAdded,
            K::CustomerResolved,
            K::SlaAtRisk,
            K::SlaBreached,
            K::FollowUpDue,
            K::FollowUpRecorded,
            K::Merged,
            K::Linked,
            K::Unlinked,
        ];
        for k in kinds {
            assert_eq!(
                event_kind_from_wire(event_kind_to_wire(k) as i32),
                Ok(Some(k))
            );
        }

        assert_eq!(ticket_state_from_wire(0), Ok(None));
        assert_eq!(severity_from_wire(0), Ok(None));
        assert_eq!(
            ticket_state_from_wire(42),
            Err("42 is not a ticket state".into())
        );
        assert_eq!(severity_from_wire(-1), Err("-1 is not a severity".into()));
        assert_eq!(
            visibility_from_wire(9),
            Err("9 is not a comment visibility".into())
        );
        assert!(event_kind_from_wire(pb::TicketEventKind::Heartbeat as i32).is_err());
    }

    #[test]
    fn ticket_states_keep_their_wire_numbers() {
        let numbers: Vec<i32> = TicketState::ALL
            .into_iter()
            .map(|s| ticket_state_to_wire(s) as i32)
            .collect();
        assert_eq!(numbers, (1..=10).collect::<Vec<_>>());
    }

    // --- CreateTicket ------------------------------------------------------------------------

    #[test]
    fn a_good_create_request_becomes_an_intake() {
        let parsed = parse_create(&create_request()).expect("valid");
        let i = &parsed.intake;
        assert_eq!(i.idempotency_key, "call-4711");
        assert_eq!(i.channel, Channel::Voice);
        assert_eq!(i.ticket_type, Some(TicketType::Complaint));
        assert_eq!(i.severity, Some(Severity::High));
        assert_eq!(i.subject, "Kettle leaks");
        assert_eq!(i.language_code, "pt-BR");
        assert_eq!(i.customer_emotion, Some(CustomerEmotion::Angry));
        assert_eq!(i.tags, ["kettle", "vip"]);
        assert_eq!(i.attributes.len(), 2);
        assert_eq!(i.own_skills, ["product:kettle"]);
        let identity = CallerIdentity {
            kind: "phone".into(),
            value: "020 7946 0018".into(),
            region: "GB".into(),
        };
        assert_eq!(parsed.customer, CustomerRef::Identity(identity.clone()));
        assert_eq!(i.caller, Some(identity));
        assert_eq!(i.follow_up_of, None);
    }

    #[test]
    fn unspecified_optional_fields_mean_the_defaults() {
        let id = Uuid::now_v7();
        let follow_up_of = Uuid::now_v7();
        let req = pb::CreateTicketRequest {
            idempotency_key: "k".into(),
            customer: Some(Customer::CustomerId(id.to_string())),
            channel: common::Channel::Web as i32,
            follow_up_of_ticket_id: follow_up_of.to_string(),
            ..pb::CreateTicketRequest::default()
        };
        let parsed = parse_create(&req).expect("valid");
        assert_eq!(parsed.customer, CustomerRef::Id(id));
        let i = parsed.intake;
        assert_eq!(
            (i.ticket_type, i.severity, i.customer_emotion),
            (None, None, None)
        );
        assert_eq!(i.category, "");
        assert_eq!(i.subject, "");
        assert_eq!(i.language_code, "");
        assert_eq!(i.caller, None);
        assert_eq!(i.follow_up_of, Some(TicketId(follow_up_of)));
    }

    #[test]
    fn a_bad_create_request_reports_every_field_at_once() {
        let req = pb::CreateTicketRequest {
            idempotency_key: "call\u{7}".into(),
            customer: Some(Customer::CallerIdentity(common::IdentityRef {
                kind: 0,
                value: " ".into(),
                region_code: "GBR".into(),
            })),
            channel: 0,
            r#type: 9,
            category: "Product Quality".into(),
            severity: 17,
            subject: "s".repeat(201),
            description: "d".repeat(20_001),
            language_code: "pt_BR".into(),
            customer_emotion: 99,
            desired_outcome: "o".repeat(2_001),
            tags: vec!["ok".into(), "Not OK".into()],
            attributes: HashMap::from([
                ("Bad Key".to_string(), "v".to_string()),
                ("long".to_string(), "v".repeat(1_025)),
                ("fine".to_string(), "v".to_string()),
            ]),
            required_skills: vec!["skill".into()],
            follow_up_of_ticket_id: "T-1".into(),
        };
        let err = parse_create(&req).expect_err("invalid");
        assert_eq!(
            fields(&err),
            [
                "idempotency_key",
                "caller_identity.kind",
                "caller_identity.value",
                "caller_identity.region_code",
                "channel",
                "type",
                "category",
                "severity",
                "subject",
                "description",
                "language_code",
                "customer_emotion",
                "desired_outcome",
                "tags[1]",
                "attributes[\"Bad Key\"]",
                "attributes[\"long\"]",
                "required_skills[0]",
                "follow_up_of_ticket_id",
            ]
        );
        for f in err.as_slice() {
            assert!(!f.description.is_empty(), "{f}");
        }
    }

    #[test]
    fn the_customer_is_required_and_checked() {
        let mut req = create_request();
        req.customer = None;
        assert_eq!(
            fields(&parse_create(&req).expect_err("no customer")),
            ["customer_id"]
        );
        req.customer = Some(Customer::CustomerId("nope".into()));
        assert_eq!(
            fields(&parse_create(&req).expect_err("bad id")),
            ["customer_id"]
        );
        req.idempotency_key = String::new();
        assert_eq!(
            fields(&parse_create(&req).expect_err("no key")),
            ["idempotency_key", "customer_id"]
        );
    }

    #[test]
    fn idempotency_keys_are_one_to_128_printable_ascii_characters() {
        assert_eq!(idempotency_key("a b~", true), Ok(Some("a b~".into())));
        assert_eq!(
            idempotency_key(&"k".repeat(128), true).map(|k| k.map(|k| k.len())),
            Ok(Some(128))
        );
        assert!(idempotency_key(&"k".repeat(129), true).is_err());
        assert!(idempotency_key("ключ", true).is_err());
        assert!(idempotency_key("a\tb", true).is_err());
        assert!(idempotency_key("", true).is_err());
        assert_eq!(idempotency_key("", false), Ok(None));
    }

    #[test]
    fn too_many_attributes_are_refused() {
        let mut req = create_request();
        req.attributes = (0..51)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert_eq!(fields(&parse_create(&req).expect_err("51")), ["attributes"]);
        req.attributes.remove("k0");
        assert!(parse_create(&req).is_ok());
    }

    #[test]
    fn the_fingerprint_is_stable_and_tells_requests_apart() {
        let a = create_request();
        let mut b = create_request();
        // Same entries, inserted in another order (and a HashMap of another seed).
        b.attributes = HashMap::from([
            ("order.id".to_string(), "9001".to_string()),
            ("batch".to_string(), "B-42".to_string()),
        ]);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let mut c = create_request();
        c.subject = "Kettle leaks!".into();
        assert_ne!(fingerprint(&a), fingerprint(&c));
        let mut d = create_request();
        d.attributes.insert("batch".into(), "B-43".into());
        assert_ne!(fingerprint(&a), fingerprint(&d));
        // An entry's key and value do not run into the next one.
        let mut e = create_request();
        e.attributes = HashMap::from([("ab".to_string(), "c".to_string())]);
        let mut f = create_request();
        f.attributes = HashMap::from([("a".to_string(), "bc".to_string())]);
        assert_ne!(fingerprint(&e), fingerprint(&f));
    }

    // --- Ticket to the wire ------------------------------------------------------------------

    #[test]
    fn a_ticket_on_the_wire_has_every_block_filled() {
        let t = ticket(&create_request());
        let linked = TicketId::new();
        let links = [Link {
            linked_ticket_id: linked,
            linked_number: TicketNumber::parse("12345678").expect("number"),
            kind: LinkKind::FollowUpOf,
            created_at: monday_morning(),
        }];
        let w = ticket_to_wire(&t, &links, &rules(), monday_morning());
        assert_eq!(w.id, t.id.to_string());
        let digits = t.number.digits();
        assert_eq!(w.number, format!("T-{}-{}", &digits[..4], &digits[4..]));
        assert_eq!(
            w.customer_resolution,
            pb::CustomerResolution::Resolved as i32
        );
        let snapshot = w.customer.expect("snapshot");
        assert_eq!(snapshot.tier, common::Tier::A as i32);
        assert!(snapshot.key_account);
        assert_eq!(snapshot.account_manager_id, "agent-1");
        let caller = w.caller_identity.expect("caller identity");
        assert_eq!(caller.kind, common::IdentityKind::Phone as i32);
        assert_eq!(caller.region_code, "GB");
        assert_eq!(w.channel, common::Channel::Voice as i32);
        assert_eq!(w.r#type, pb::TicketType::Complaint as i32);
        assert_eq!(w.department, "quality_assurance");
        assert_eq!(w.severity, pb::Severity::High as i32);
        assert_eq!(w.priority, t.priority);
        assert_eq!(w.language_code, "pt-BR");
        assert_eq!(w.customer_emotion, pb::CustomerEmotion::Angry as i32);
        assert_eq!(w.triage_label, pb::TriageLabel::Unspecified as i32);
        assert_eq!(w.compensation, None);
        assert_eq!(w.attributes.get("batch").map(String::as_str), Some("B-42"));
        assert_eq!(w.required_skills, ["language:pt-br", "product:kettle"]);
        assert_eq!(w.state, pb::TicketState::New as i32);
        assert_eq!(w.available_transitions, [pb::TicketState::Cancelled as i32]);
        let routing = w.routing.expect("routing");
        assert_eq!(
            routing.pickup_due_time,
            Some(wire::timestamp(t.sla.first_response_due))
        );
        assert_eq!(routing.reservation_id, "");
        assert_eq!(w.links.len(), 1);
        assert_eq!(w.links[0].linked_ticket_number, "T-1234-5678");
        assert_eq!(w.links[0].kind, pb::LinkKind::FollowUpOf as i32);
        let sla = w.sla.expect("sla");
        assert_eq!(sla.policy_id, "tier-a");
        assert_eq!(sla.status, pb::SlaStatus::OnTrack as i32);
        assert!(!sla.paused);
        assert_eq!(sla.paused_duration, Some(prost_types::Duration::default()));
        assert_eq!(sla.first_response_time, None);
        assert_eq!(sla.escalation_level, 0);
        let follow_up = w.follow_up.expect("follow-up block");
        assert_eq!(follow_up.record_time, None);
        assert_eq!(w.version, 1);
        assert_eq!(w.create_time, Some(wire::timestamp(monday_morning())));
        assert_eq!(w.close_time, None);
    }

    #[test]
    fn a_paused_clock_shows_the_pause_so_far_and_the_moving_due_time() {
        let mut t = ticket(&create_request());
        t.state = TicketState::PendingCustomer;
        let _ = t.sla.pause(monday_morning());
        let later = monday_morning() + time::Duration::hours(2);
        let sla = ticket_to_wire(&t, &[], &rules(), later).sla.expect("sla");
        assert!(sla.paused);
        assert_eq!(
            sla.paused_duration,
            Some(prost_types::Duration {
                seconds: 7_200,
                nanos: 0
            })
        );
        // 8 business hours from Monday 09:00 plus the 2 paused: 9 on Monday (to 18:00) and 1
        // on Tuesday (from 08:00).
        assert_eq!(
            t.sla.resolution_due,
            monday_morning() + time::Duration::hours(8)
        );
        assert_eq!(
            sla.resolution_due_time,
            Some(wire::timestamp(
                monday_morning() + time::Duration::hours(24)
            ))
        );

        // Cancelled while paused: the clock stops at the close time.
        t.state = TicketState::Cancelled;
        t.closed_at = Some(monday_morning() + time::Duration::hours(1));
        let sla = ticket_to_wire(&t, &[], &rules(), later).sla.expect("sla");
        assert!(!sla.paused);
        assert_eq!(
            sla.paused_duration,
            Some(prost_types::Duration {
                seconds: 3_600,
                nanos: 0
            })
        );

        // A calendar no longer configured: the stored values.
        let mut r = rules();
        r.policies.calendars.clear();
        let sla = ticket_to_wire(&t, &[], &r, later).sla.expect("sla");
        assert_eq!(sla.paused_duration, Some(prost_types::Duration::default()));
        assert_eq!(
            sla.resolution_due_time,
            Some(wire::timestamp(t.sla.resolution_due))
        );
    }

    #[test]
    fn pending_customers_follow_ups_and_compensation_reach_the_wire() {
        let mut t = ticket(&create_request());
        t.customer = CustomerLink::Pending { id: None };
        t.details.compensation = Some(Compensation {
            kind: CompensationKind::Refund,
            currency: "EUR".into(),
            micros: 12_500_000,
            note: "refund ref 7".into(),
        });
        t.follow_up = Some(RecordedFollowUp {
            at: monday_morning(),
            expected: 8.0,
            perceived: 6.0,
            comment: "ok".into(),
            handling_agent_id: Some("agent-7".into()),
            recorded_by: "agent-9".into(),
            on_profile: true,
        });
        let w = ticket_to_wire(&t, &[], &rules(), monday_morning());
        assert_eq!(w.customer_id, "");
        assert_eq!(w.customer, None);
        assert_eq!(
            w.customer_resolution,
            pb::CustomerResolution::Pending as i32
        );
        let c = w.compensation.expect("compensation");
        assert_eq!(c.kind, pb::CompensationKind::Refund as i32);
        assert_eq!(
            c.amount,
            Some(common::Money {
                currency_code: "EUR".into(),
                units: 12,
                nanos: 500_000_000
            })
        );
        let f = w.follow_up.expect("follow-up");
        assert_eq!(f.satisfaction, 0.75);
        assert_eq!(f.handling_agent_id, "agent-7");
        assert_eq!(f.recorded_by_agent_id, "agent-9");
        assert!(f.recorded_on_profile);
    }

    // --- UpdateTicket ------------------------------------------------------------------------

    fn update(mask: &[&str], t: pb::Ticket) -> pb::UpdateTicketRequest {
        pb::UpdateTicketRequest {
            ticket: Some(t),
            update_mask: Some(prost_types::FieldMask {
                paths: mask.iter().map(|p| p.to_string()).collect(),
            }),
            expected_version: Some(3),
        }
    }

    #[test]
    fn an_update_parses_only_the_masked_fields() {
        let id = TicketId::new();
        let customer = Uuid::now_v7();
        let wire_ticket = pb::Ticket {
            id: id.to_string(),
            customer_id: customer.to_string(),
            subject: " New subject ".into(),
            description: "ignored: not in the mask".into(),
            severity: pb::Severity::Critical as i32,
            r#type: 0,
            root_cause: String::new(),
            tags: vec!["b".into(), "a".into()],
            compensation: Some(pb::Compensation {
                kind: pb::CompensationKind::Voucher as i32,
                amount: Some(common::Money {
                    currency_code: "EUR".into(),
                    units: 5,
                    nanos: 0,
                }),
                note: String::new(),
            }),
            ..pb::Ticket::default()
        };
        let mask = [
            "customer_id",
            "subject",
            "severity",
            "type",
            "root_cause",
            "tags",
            "compensation",
            "subject",
        ];
        let (got_id, got_customer, patch, version) =
            parse_update(&update(&mask, wire_ticket)).expect("valid");
        assert_eq!(got_id, id);
        assert_eq!(got_customer, Some(customer));
        assert_eq!(version, Some(3));
        assert_eq!(
            patch,
            DetailsPatch {
                subject: Some("New subject".into()),
                severity: Some(Some(Severity::Critical)),
                ticket_type: Some(None),
                root_cause: Some(None),
                tags: Some(vec!["a".into(), "b".into()]),
                compensation: Some(Some(Compensation {
                    kind: CompensationKind::Voucher,
                    currency: "EUR".into(),
                    micros: 5_000_000,
                    note: String::new(),
                })),
                ..DetailsPatch::default()
            }
        );
        assert_eq!(
            patch.paths(),
            [
                "type",
                "severity",
                "subject",
                "compensation",
                "root_cause",
                "tags"
            ]
        );
    }

    #[test]
    fn the_mask_is_required_and_names_only_updatable_top_level_fields() {
        let t = pb::Ticket {
            id: TicketId::new().to_string(),
            ..pb::Ticket::default()
        };
        let mut req = update(&[], t.clone());
        assert_eq!(
            fields(&parse_update(&req).expect_err("empty mask")),
            ["update_mask"]
        );
        req.update_mask = None;
        assert_eq!(
            fields(&parse_update(&req).expect_err("no mask")),
            ["update_mask"]
        );

        let req = update(&["*", "sla.status", "state", "colour", "tags"], t);
        let err = parse_update(&req).expect_err("bad paths");
        assert_eq!(fields(&err), ["update_mask"; 4]);
        let descriptions: Vec<&str> = err
            .as_slice()
            .iter()
            .map(|f| f.description.as_str())
            .collect();
        assert!(descriptions[0].contains("\"*\""));
        assert!(descriptions[1].starts_with("sla.status"));
        assert!(descriptions[2].starts_with("state cannot be changed"));
        assert!(descriptions[3].contains("colour is not a field"));
    }

    #[test]
    fn bad_update_values_are_reported_under_ticket() {
        let t = pb::Ticket {
            id: "not-a-uuid".into(),
            customer_id: String::new(),
            category: String::new(),
            subject: String::new(),
            severity: 12,
            language_code: "x".into(),
            root_cause: "Bad Luck".into(),
            tags: vec!["UPPER".into()],
            attributes: HashMap::from([("K".to_string(), "v".to_string())]),
            required_skills: vec!["nope".into()],
            compensation: Some(pb::Compensation {
                kind: 0,
                amount: Some(common::Money {
                    currency_code: "eur".into(),
                    units: 1,
                    nanos: 1,
                }),
                note: String::new(),
            }),
            ..pb::Ticket::default()
        };
        let mut req = update(
            &[
                "customer_id",
                "category",
                "subject",
                "severity",
                "language_code",
                "root_cause",
                "tags",
                "attributes",
                "required_skills",
                "compensation",
            ],
            t,
        );
        req.expected_version = Some(0);
        let err = parse_update(&req).expect_err("invalid");
        assert_eq!(
            fields(&err),
            [
                "expected_version",
                "ticket.id",
                "ticket.customer_id",
                "ticket.category",
                "ticket.subject",
                "ticket.severity",
                "ticket.language_code",
                "ticket.root_cause",
                "ticket.tags[0]",
                "ticket.attributes[\"K\"]",
                "ticket.required_skills[0]",
                "ticket.compensation.kind",
                "ticket.compensation.amount.currency_code",
                "ticket.compensation.amount.nanos",
            ]
        );
    }

    #[test]
    fn money_must_be_positive_and_kept_to_millionths() {
        let m = |units, nanos| common::Money {
            currency_code: String::new(),
            units,
            nanos,
        };
        assert_eq!(money(&m(0, 500_000_000)), Ok((String::new(), 500_000)));
        assert_eq!(fields(&money(&m(0, 0)).expect_err("zero")), [""]);
        assert_eq!(fields(&money(&m(-1, 0)).expect_err("negative")), [""]);
        assert_eq!(fields(&money(&m(1, -5_000)).expect_err("signs")), ["nanos"]);
        assert_eq!(
            fields(&money(&m(i64::MAX, 0)).expect_err("overflow")),
            ["units"]
        );
        let c = pb::Compensation {
            kind: 1,
            amount: Some(m(0, 0)),
            note: String::new(),
        };
        assert_eq!(fields(&compensation(&c).expect_err("zero")), ["amount"]);
        assert_eq!(
            money_to_wire("EUR", 1_000_001),
            common::Money {
                currency_code: "EUR".into(),
                units: 1,
                nanos: 1_000,
            }
        );
    }

    #[test]
    fn an_update_without_a_ticket_is_refused() {
        let req = pb::UpdateTicketRequest {
            ticket: None,
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["subject".into()],
            }),
            expected_version: None,
        };
        assert_eq!(
            fields(&parse_update(&req).expect_err("no ticket")),
            ["ticket"]
        );
    }

    // --- TransitionTicket --------------------------------------------------------------------

    fn transition(target: pb::TicketState) -> pb::TransitionTicketRequest {
        pb::TransitionTicketRequest {
            ticket_id: TicketId::new().to_string(),
            target_state: target as i32,
            ..pb::TransitionTicketRequest::default()
        }
    }

    #[test]
    fn a_transition_is_parsed_and_becomes_a_move_once_the_ticket_is_known() {
        let mut req = transition(pb::TicketState::Resolved);
        req.note = " replaced it ".into();
        let parsed = parse_transition(&req).expect("valid");
        assert_eq!(parsed.target, TicketState::Resolved);
        assert_eq!(parsed.note, "replaced it");
        assert_eq!(
            parsed.to_move(true),
            Ok(Move::Resolve { has_summary: true })
        );
        // No summary in the request nor on the ticket: the state machine refuses the move,
        // naming the request's field.
        let mv = parsed.to_move(false).expect("a move");
        assert_eq!(mv, Move::Resolve { has_summary: false });
        let err = state::apply(TicketState::InProgress, mv).expect_err("no summary anywhere");
        assert_eq!(fields(&transition_violations(err)), ["resolution_summary"]);
        assert_eq!(parsed.context().resolution_summary, None);

        req.resolution_summary = "replaced the kettle".into();
        let parsed = parse_transition(&req).expect("valid");
        assert_eq!(
            parsed.to_move(false),
            Ok(Move::Resolve { has_summary: true })
        );
        let ctx = parsed.context();
        assert_eq!(
            ctx.resolution_summary.as_deref(),
            Some("replaced the kettle")
        );
        assert_eq!(ctx.note, "replaced it");

        let mut hold = transition(pb::TicketState::OnHold);
        hold.hold_reason = pb::HoldReason::ThirdParty as i32;
        hold.expected_version = Some(4);
        let parsed = parse_transition(&hold).expect("valid");
        assert_eq!(
            parsed.to_move(false),
            Ok(Move::Hold(HoldReason::ThirdParty))
        );
        assert_eq!(parsed.expected_version, Some(4));
    }

    #[test]
    fn a_bad_transition_reports_every_field_on_the_request() {
        let mut req = transition(pb::TicketState::OnHold);
        req.cancel_reason = pb::CancelReason::Spam as i32;
        req.resolution_summary = "done".into();
        req.note = "n".repeat(1_001);
        let err = parse_transition(&req).expect_err("invalid");
        assert_eq!(
            fields(&err),
            ["note", "hold_reason", "cancel_reason", "resolution_summary"]
        );

        let mut req = transition(pb::TicketState::Assigned);
        req.ticket_id = String::new();
        req.hold_reason = 77;
        let err = parse_transition(&req).expect_err("invalid");
        assert_eq!(fields(&err), ["ticket_id", "hold_reason", "target_state"]);

        let req = transition(pb::TicketState::Merged);
        assert_eq!(
            fields(&parse_transition(&req).expect_err("merged")),
            ["target_state"]
        );
        let req = transition(pb::TicketState::Unspecified);
        assert_eq!(
            fields(&parse_transition(&req).expect_err("unset")),
            ["target_state"]
        );
    }

    // --- Comments ----------------------------------------------------------------------------

    fn comment(
        kind: pb::ActorKind,
        id: &str,
        visibility: pb::CommentVisibility,
    ) -> pb::AddCommentRequest {
        pb::AddCommentRequest {
            ticket_id: TicketId::new().to_string(),
            comment: Some(pb::Comment {
                visibility: visibility as i32,
                author: Some(pb::Actor {
                    kind: kind as i32,
                    id: id.into(),
                }),
                body: " We are sending a new kettle. ".into(),
                ..pb::Comment::default()
            }),
            idempotency_key: String::new(),
        }
    }

    #[test]
    fn comments_are_parsed_with_their_author() {
        let req = comment(
            pb::ActorKind::Agent,
            "agent-7",
            pb::CommentVisibility::Public,
        );
        let parsed = parse_comment(&req).expect("valid");
        assert_eq!(parsed.visibility, Visibility::Public);
        assert_eq!(
            parsed.author,
            Actor {
                kind: ActorKind::Agent,
                id: "agent-7".into()
            }
        );
        assert_eq!(parsed.body, "We are sending a new kettle.");
        assert_eq!(parsed.channel, None);
        assert_eq!(parsed.idempotency_key, None);
        assert_eq!(
            parsed.state_author(Some("agent-7")),
            CommentAuthor::AssignedAgent
        );
        assert_eq!(parsed.state_author(Some("agent-8")), CommentAuthor::Other);

        let mut req = comment(pb::ActorKind::Customer, "", pb::CommentVisibility::Public);
        req.idempotency_key = "<msg-1@example.com>".into();
        if let Some(c) = req.comment.as_mut() {
            c.channel = common::Channel::Email as i32;
        }
        let parsed = parse_comment(&req).expect("valid");
        assert_eq!(parsed.author.kind, ActorKind::Customer);
        assert_eq!(parsed.author.id, "");
        assert_eq!(parsed.channel, Some(Channel::Email));
        assert_eq!(
            parsed.idempotency_key.as_deref(),
            Some("<msg-1@example.com>")
        );
        assert_eq!(parsed.state_author(None), CommentAuthor::Customer);
        assert_eq!(comment_fingerprint(&req), comment_fingerprint(&req.clone()));
    }

    #[test]
    fn comment_rules_from_the_proto_are_enforced() {
        let req = comment(pb::ActorKind::Customer, "", pb::CommentVisibility::Internal);
        assert_eq!(
            fields(&parse_comment(&req).expect_err("internal")),
            ["comment.visibility"]
        );
        let req = comment(pb::ActorKind::Agent, "", pb::CommentVisibility::Internal);
        assert_eq!(
            fields(&parse_comment(&req).expect_err("no agent")),
            ["comment.author.id"]
        );
        let req = comment(
            pb::ActorKind::Customer,
            "bob",
            pb::CommentVisibility::Public,
        );
        assert_eq!(
            fields(&parse_comment(&req).expect_err("bad id")),
            ["comment.author.id"]
        );

        let mut req = comment(
            pb::ActorKind::Unspecified,
            "",
            pb::CommentVisibility::Unspecified,
        );
        req.ticket_id = String::new();
        req.idempotency_key = "\n".into();
        if let Some(c) = req.comment.as_mut() {
            c.body = "   ".into();
            c.channel = 40;
        }
        assert_eq!(
            fields(&parse_comment(&req).expect_err("invalid")),
            [
                "ticket_id",
                "idempotency_key",
                "comment.visibility",
                "comment.author.kind",
                "comment.body",
                "comment.channel",
            ]
        );
        let mut req = comment(pb::ActorKind::System, "", pb::CommentVisibility::Internal);
        req.comment = None;
        assert_eq!(
            fields(&parse_comment(&req).expect_err("no comment")),
            ["comment"]
        );
    }

    #[test]
    fn comments_and_events_reach_the_wire() {
        let ticket_id = TicketId::new();
        let c = Comment {
            id: Uuid::now_v7(),
            ticket_id,
            visibility: Visibility::Internal,
            author: Actor {
                kind: ActorKind::Service,
                id: "routing".into(),
            },
            body: "note".into(),
            channel: Channel::Api,
            first_response: false,
            created_at: monday_morning(),
        };
        let w = comment_to_wire(&c);
        assert_eq!(w.ticket_id, ticket_id.to_string());
        assert_eq!(w.visibility, pb::CommentVisibility::Internal as i32);
        assert_eq!(
            w.author,
            Some(pb::Actor {
                kind: pb::ActorKind::Service as i32,
                id: "routing".into()
            })
        );
        assert_eq!(w.channel, common::Channel::Api as i32);

        let related = Uuid::now_v7();
        let e = RecordedEvent {
            sequence: 42,
            event_id: Uuid::now_v7(),
            ticket_id,
            ticket_version: 7,
            event: NewEvent {
                kind: EventKind::Updated,
                actor: Actor::system(),
                from: TicketState::InProgress,
                to: TicketState::InProgress,
                reason: "update".into(),
                changed_fields: vec!["subject".into(), "tags".into()],
                comment_id: None,
                related_ticket_id: Some(related),
            },
            at: monday_morning(),
        };
        let w = event_to_wire(&e, None);
        assert_eq!(w.sequence, 42);
        assert_eq!(w.kind, pb::TicketEventKind::Updated as i32);
        assert_eq!(w.ticket_version, 7);
        assert_eq!(w.from_state, pb::TicketState::InProgress as i32);
        assert_eq!(
            w.changed_fields.map(|m| m.paths),
            Some(vec!["subject".to_string(), "tags".to_string()])
        );
        assert_eq!(w.comment_id, "");
        assert_eq!(w.related_ticket_id, related.to_string());
        assert_eq!(w.ticket, None);
        let snapshot = pb::Ticket {
            id: ticket_id.to_string(),
            ..pb::Ticket::default()
        };
        assert_eq!(
            event_to_wire(&e, Some(snapshot.clone())).ticket,
            Some(snapshot)
        );

        let hb = heartbeat(99, monday_morning());
        assert_eq!(
            (hb.sequence, hb.kind),
            (99, pb::TicketEventKind::Heartbeat as i32)
        );
        assert_eq!(hb.event_id, "");
    }

    // --- Configuration -----------------------------------------------------------------------

    #[test]
    fn configuration_reaches_the_wire() {
        let r = rules();
        let quality = r.catalog.find_category("product_quality").expect("seeded");
        let w = category_to_wire(quality);
        assert_eq!(w.department, "quality_assurance");
        assert_eq!(w.default_type, pb::TicketType::Complaint as i32);
        assert_eq!(w.default_severity, pb::Severity::Medium as i32);
        assert_eq!(w.priority_boost, 4);
        assert!(w.active);

        let cause = r.catalog.find_root_cause("slow_service").expect("seeded");
        assert_eq!(root_cause_to_wire(cause).display_name, "Slow service");

        let policies: Vec<pb::SlaPolicy> = r
            .policies
            .iter()
            .map(|(tier, severity, p)| sla_policy_to_wire(tier, severity, p))
            .collect();
        assert_eq!(policies.len(), 6);
        assert_eq!(policies[0].id, "tier-a");
        assert_eq!(policies[0].severity, pb::Severity::Unspecified as i32);
        assert_eq!(policies[1].id, "tier-a-critical");
        assert_eq!(policies[1].severity, pb::Severity::Critical as i32);
        assert_eq!(policies[1].tier, common::Tier::A as i32);
        assert_eq!(
            policies[0].first_response_target,
            Some(prost_types::Duration {
                seconds: 900,
                nanos: 0
            })
        );
        assert_eq!(
            policies[0].pause_on_hold_reasons,
            [
                pb::HoldReason::ThirdParty as i32,
                pb::HoldReason::Scheduled as i32,
                pb::HoldReason::Fulfilment as i32
            ]
        );
    }

    // --- ListTickets and GetTicket -----------------------------------------------------------

    #[test]
    fn an_empty_list_request_matches_everything_fifty_at_a_time() {
        let f = list_filter(&pb::ListTicketsRequest::default()).expect("valid");
        assert_eq!(f.page_size, 50);
        assert_eq!(f.order, TicketOrder::CreatedAsc);
        assert!(f.states.is_empty() && f.tiers.is_empty() && f.sla_statuses.is_empty());
        assert_eq!(
            (f.customer_id, f.assigned_agent_id, f.key_account),
            (None, None, None)
        );
    }

    #[test]
    fn list_filters_are_parsed_sorted_and_deduplicated() {
        let customer = Uuid::now_v7();
        let req = pb::ListTicketsRequest {
            page_size: 500,
            states: vec![
                pb::TicketState::Queued as i32,
                pb::TicketState::New as i32,
                pb::TicketState::Queued as i32,
            ],
            tiers: vec![common::Tier::B as i32, common::Tier::A as i32],
            departments: vec!["hr".into()],
            categories: vec!["billing".into(), "billing".into()],
            assigned_agent_id: "agent-7".into(),
            customer_id: customer.to_string(),
            sla_statuses: vec![pb::SlaStatus::Breached as i32],
            create_time_from: Some(wire::timestamp(monday_morning())),
            create_time_to: Some(wire::timestamp(monday_morning() + time::Duration::days(1))),
            key_account: Some(false),
            order: pb::TicketOrder::CreateTimeDesc as i32,
            ..pb::ListTicketsRequest::default()
        };
        let f = list_filter(&req).expect("valid");
        assert_eq!(f.page_size, 500);
        assert_eq!(f.states, [TicketState::New, TicketState::Queued]);
        assert_eq!(f.tiers, [Tier::A, Tier::B]);
        assert_eq!(f.categories, ["billing"]);
        assert_eq!(f.assigned_agent_id.as_deref(), Some("agent-7"));
        assert_eq!(f.customer_id, Some(customer));
        assert_eq!(f.sla_statuses, [SlaStatus::Breached]);
        assert_eq!(f.created_from, Some(monday_morning()));
        assert_eq!(f.key_account, Some(false));
        assert_eq!(f.order, TicketOrder::CreatedDesc);

        let any = pb::ListTicketsRequest {
            tiers: vec![common::Tier::A as i32, common::Tier::Unspecified as i32],
            ..pb::ListTicketsRequest::default()
        };
        assert!(
            list_filter(&any).expect("valid").tiers.is_empty(),
            "unspecified is any tier"
        );
    }

    #[test]
    fn bad_list_filters_are_all_reported() {
        let req = pb::ListTicketsRequest {
            page_size: 501,
            states: vec![pb::TicketState::New as i32, 0, 99],
            tiers: vec![7],
            departments: vec![String::new()],
            customer_id: "someone".into(),
            sla_statuses: vec![0],
            create_time_from: Some(wire::timestamp(monday_morning())),
            create_time_to: Some(wire::timestamp(monday_morning())),
            order: 5,
            ..pb::ListTicketsRequest::default()
        };
        assert_eq!(
            fields(&list_filter(&req).expect_err("invalid")),
            [
                "page_size",
                "states[1]",
                "states[2]",
                "tiers[0]",
                "departments[0]",
                "customer_id",
                "sla_statuses[0]",
                "create_time_to",
                "order",
            ]
        );
        let negative = pb::ListTicketsRequest {
            page_size: -1,
            ..pb::ListTicketsRequest::default()
        };
        assert_eq!(
            fields(&list_filter(&negative).expect_err("negative")),
            ["page_size"]
        );
    }

    #[test]
    fn get_takes_an_id_or_a_number() {
        use pb::get_ticket_request::Key;
        let id = TicketId::new();
        let by_id = pb::GetTicketRequest {
            key: Some(Key::TicketId(id.to_string())),
        };
        assert_eq!(parse_get(&by_id), Ok(TicketKey::Id(id)));
        let by_number = pb::GetTicketRequest {
            key: Some(Key::Number("4821 7730".into())),
        };
        assert_eq!(
            parse_get(&by_number),
            Ok(TicketKey::Number(
                TicketNumber::parse("T-4821-7730").expect("number")
            ))
        );
        let bad = pb::GetTicketRequest {
            key: Some(Key::Number("T-1".into())),
        };
        assert_eq!(fields(&parse_get(&bad).expect_err("bad")), ["number"]);
        let none = pb::GetTicketRequest { key: None };
        assert_eq!(fields(&parse_get(&none).expect_err("none")), ["ticket_id"]);
    }
}
