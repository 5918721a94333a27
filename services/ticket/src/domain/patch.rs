//! UpdateTicket on the domain side: a [`DetailsPatch`] of descriptive fields and the rules for
//! applying it to a ticket.
//!
//! The adapter parses the request's `update_mask` into a patch (checking each value's form:
//! lengths, tags, skills, language codes); [`DetailsPatch::apply`] checks what needs the ticket
//! and the configuration: which fields the ticket's state still allows, that a new category or
//! root cause is in the catalog, that required fields are not cleared. It then recomputes what
//! follows (department, skills, priority, the SLA policy on a severity change) and says which
//! fields changed.
//!
//! `customer_id` is not part of the patch: changing the customer means resolving the new one
//! through the customer service and taking a new snapshot, which is the store's business. The
//! store checks the state rule for it with [`check_updatable`] before calling out.

use std::collections::BTreeMap;

use tierline_runtime::Violations;
use tierline_runtime::error::{ErrorKind, FieldViolation, ServiceError};
use time::OffsetDateTime;

use super::catalog::{self, TicketType};
use super::sla::{CalendarError, Severity, SlaClock};
use super::state::TicketState;
use super::ticket::{
    Actor, Compensation, CustomerEmotion, EventKind, NewEvent, Rules, Ticket, TriageLabel,
    refresh_derived, refresh_sla_status,
};

/// The fields a CLOSED ticket still accepts: the analysis done after closing (root cause,
/// triage, labels, attributes, compensation paid late).
pub const CLOSED_UPDATABLE: [&str; 5] = [
    "root_cause",
    "triage_label",
    "tags",
    "attributes",
    "compensation",
];

/// New values for the descriptive fields an UpdateTicket names. `None` leaves a field alone.
///
/// Values are expected in their checked, normalised form (the adapter's parse does that): tags
/// and skills sorted and unique, the language code in BCP-47 case, texts trimmed and within
/// their limits. For the nullable fields `Some(None)` clears the field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetailsPatch {
    /// `type`. `Some(None)` (the wire's UNSPECIFIED) resets it to the category's default type,
    /// as at creation.
    pub ticket_type: Option<Option<TicketType>>,
    /// `category`: a category id. Empty is refused (a ticket always has a category).
    pub category: Option<String>,
    /// `severity`. `Some(None)` resets it to the category's default severity (else MEDIUM).
    pub severity: Option<Option<Severity>>,
    /// `subject`. Empty is refused (a ticket always has a subject).
    pub subject: Option<String>,
    /// `description`; empty clears it.
    pub description: Option<String>,
    /// `language_code`, normalised; empty clears it (the deployment's default language).
    pub language_code: Option<String>,
    /// `customer_emotion`; `Some(None)` clears it.
    pub customer_emotion: Option<Option<CustomerEmotion>>,
    /// `desired_outcome`; empty clears it.
    pub desired_outcome: Option<String>,
    /// `compensation`; `Some(None)` removes it.
    pub compensation: Option<Option<Compensation>>,
    /// `root_cause`: a root-cause id; `Some(None)` clears it.
    pub root_cause: Option<Option<String>>,
    /// `triage_label`; `Some(None)` clears it (not triaged).
    pub triage_label: Option<Option<TriageLabel>>,
    /// `resolution_summary`; empty clears it, except on a RESOLVED ticket.
    pub resolution_summary: Option<String>,
    /// `tags`, sorted and unique; replaces the list.
    pub tags: Option<Vec<String>>,
    /// `attributes`; replaces the map as a whole.
    pub attributes: Option<BTreeMap<String, String>>,
    /// `required_skills` as the client sent them; replaces the ticket's own skills. Skills the
    /// category or the language add are dropped (see [`catalog::own_skills`]), so sending back
    /// the effective list read from the ticket does not freeze them into it.
    pub required_skills: Option<Vec<String>>,
}

/// Why a patch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// A value the configuration or the ticket does not allow (unknown category, clearing a
    /// required field): INVALID_ARGUMENT, with paths as in UpdateTicketRequest (`ticket.category`).
    #[error("invalid request: {0}")]
    Invalid(Violations),
    /// The ticket is MERGED or CANCELLED: nothing about it changes any more.
    #[error("a {state} ticket cannot be changed")]
    Finished {
        /// The ticket's state.
        state: TicketState,
    },
    /// The ticket is CLOSED and the update names fields other than [`CLOSED_UPDATABLE`].
    #[error(
        "a closed ticket accepts changes to root_cause, triage_label, tags, attributes and \
         compensation only, not {}",
        .paths.join(", ")
    )]
    Closed {
        /// The refused paths, in the order given.
        paths: Vec<String>,
    },
    /// Re-selecting the SLA policy failed (a misconfigured calendar; validated at start).
    #[error("sla calendar: {0}")]
    Calendar(#[from] CalendarError),
}

impl ServiceError for PatchError {
    fn domain(&self) -> &'static str {
        "tierline.ticket"
    }

    fn kind(&self) -> ErrorKind {
        match self {
            PatchError::Invalid(_) => ErrorKind::InvalidArgument,
            PatchError::Finished { .. } | PatchError::Closed { .. } => {
                ErrorKind::FailedPrecondition
            }
            PatchError::Calendar(_) => ErrorKind::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            PatchError::Invalid(_) => "INVALID_ARGUMENT",
            PatchError::Finished { .. } => "TICKET_FINISHED",
            PatchError::Closed { .. } => "TICKET_CLOSED",
            PatchError::Calendar(_) => "INTERNAL",
        }
    }

    fn field_violations(&self) -> &[FieldViolation] {
        match self {
            PatchError::Invalid(v) => v.as_slice(),
            _ => &[],
        }
    }

    fn precondition(&self) -> Option<(&'static str, String)> {
        match self {
            PatchError::Finished { state } => Some((self.reason(), format!("state {state}"))),
            PatchError::Closed { paths } => Some((
                self.reason(),
                format!("state closed; fields {}", paths.join(", ")),
            )),
            _ => None,
        }
    }
}

/// Whether a ticket in `state` accepts an update of `paths` (top-level field names, including
/// `customer_id`): MERGED and CANCELLED tickets accept nothing, CLOSED ones only
/// [`CLOSED_UPDATABLE`].
pub fn check_updatable<S: AsRef<str>>(state: TicketState, paths: &[S]) -> Result<(), PatchError> {
    match state {
        TicketState::Merged | TicketState::Cancelled => Err(PatchError::Finished { state }),
        TicketState::Closed => {
            let refused: Vec<String> = paths
                .iter()
                .map(AsRef::as_ref)
                .filter(|p| !CLOSED_UPDATABLE.contains(p))
                .map(str::to_owned)
                .collect();
            if refused.is_empty() {
                Ok(())
            } else {
                Err(PatchError::Closed { paths: refused })
            }
        }
        _ => Ok(()),
    }
}

/// The UPDATED event for `changed` fields (see [`DetailsPatch::apply`]).
pub fn update_event(ticket: &Ticket, actor: Actor, changed: Vec<String>) -> NewEvent {
    let mut event = NewEvent::on(ticket, EventKind::Updated, actor, "update");
    event.changed_fields = changed;
    event
}

impl DetailsPatch {
    /// True when the patch names no field.
    pub fn is_empty(&self) -> bool {
        self.paths().is_empty()
    }

    /// The wire paths the patch names, in proto field order.
    pub fn paths(&self) -> Vec<&'static str> {
        let named = [
            ("type", self.ticket_type.is_some()),
            ("category", self.category.is_some()),
            ("severity", self.severity.is_some()),
            ("subject", self.subject.is_some()),
            ("description", self.description.is_some()),
            ("language_code", self.language_code.is_some()),
            ("customer_emotion", self.customer_emotion.is_some()),
            ("desired_outcome", self.desired_outcome.is_some()),
            ("compensation", self.compensation.is_some()),
            ("root_cause", self.root_cause.is_some()),
            ("triage_label", self.triage_label.is_some()),
            ("resolution_summary", self.resolution_summary.is_some()),
            ("tags", self.tags.is_some()),
            ("attributes", self.attributes.is_some()),
            ("required_skills", self.required_skills.is_some()),
        ];
        named
            .into_iter()
            .filter_map(|(path, set)| set.then_some(path))
            .collect()
    }

    /// Applies the patch to `ticket` at `now` and returns the paths whose value changed, in
    /// proto field order (empty: nothing changed, and the ticket is untouched).
    ///
    /// Checks, all before changing anything:
    /// - the state: see [`check_updatable`] (on the paths named, changed or not, so a client
    ///   learns the rule even when resending the current value);
    /// - a changed category must exist and be active; keeping an inactive one is fine;
    /// - a changed root cause must exist and be active (inactive causes stay valid on the
    ///   tickets that carry them); clearing it is fine;
    /// - `subject` and `category` cannot be cleared, nor the `resolution_summary` of a RESOLVED
    ///   ticket (resolving required it).
    ///
    /// Then it recomputes department, effective skills and priority
    /// ([`refresh_derived`]) and the SLA status.
    ///
    /// SLA on a severity change (the proto: "changing it recomputes priority and the SLA due
    /// times"): while the ticket is not resolved, the policy is selected again for the
    /// customer's tier and the new severity. If it is another policy the clock restarts under
    /// it from the ticket's creation (`created_at` kept), keeping what already happened: the
    /// first response and its due time (a target already met or missed is not judged again),
    /// pauses, and recorded breaches (BREACHED stays for the life of the ticket). Paused time
    /// carries over as counted on the old calendar, an approximation when the policies count
    /// in different calendars. A target the new policy makes already missed is not escalated
    /// here: [`crate::domain::ticket::next_sla_check`] is then in the past and the breach
    /// monitor records it and raises SLA_BREACHED. A NEW or QUEUED ticket's pickup due time
    /// follows the new targets. A RESOLVED ticket keeps its policy (its clock has stopped).
    ///
    /// Not done here: the version and update time ([`crate::domain::ticket::touch`], once for
    /// the whole update, `customer_id` included), the UPDATED event ([`update_event`]), and
    /// returning an assigned ticket to the queue when its department changed (compare
    /// `ticket.department` before and after).
    pub fn apply(
        self,
        ticket: &mut Ticket,
        rules: &Rules,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, PatchError> {
        check_updatable(ticket.state, &self.paths())?;
        let old = &ticket.details;
        let mut v = Violations::new();

        let category_id = match &self.category {
            Some(id) if id.trim().is_empty() => {
                v.add(
                    "ticket.category",
                    "required: a ticket always has a category",
                );
                old.category.clone()
            }
            Some(id) if *id != old.category => match rules.catalog.category(id) {
                Ok(category) => category.id.clone(),
                Err(e) => {
                    v.add("ticket.category", e.description);
                    old.category.clone()
                }
            },
            _ => old.category.clone(),
        };
        if self.subject.as_ref().is_some_and(|s| s.trim().is_empty()) {
            v.add("ticket.subject", "required: a ticket always has a subject");
        }
        let root_cause = match self.root_cause.clone() {
            Some(Some(id)) if id.is_empty() => Some(None),
            Some(Some(id)) if Some(&id) != old.root_cause.as_ref() => {
                match rules.catalog.root_cause(&id) {
                    Ok(_) => Some(Some(id)),
                    Err(e) => {
                        v.add("ticket.root_cause", e.description);
                        None
                    }
                }
            }
            other => other,
        };
        if ticket.state == TicketState::Resolved
            && self
                .resolution_summary
                .as_ref()
                .is_some_and(|s| s.trim().is_empty())
        {
            v.add(
                "ticket.resolution_summary",
                "required while the ticket is resolved",
            );
        }
        if !v.is_empty() {
            return Err(PatchError::Invalid(v));
        }

        let old_category = rules.catalog.find_category(&old.category);
        let new_category = rules.catalog.find_category(&category_id);
        let mut new = old.clone();
        new.category = category_id;
        if let Some(t) = self.ticket_type {
            new.ticket_type = t
                .or(new_category.map(|c| c.default_type))
                .unwrap_or(old.ticket_type);
        }
        if let Some(s) = self.severity {
            new.severity =
                s.unwrap_or(new_category.map_or(Severity::Medium, |c| c.default_severity));
        }
        if let Some(s) = self.subject {
            new.subject = s;
        }
        if let Some(s) = self.description {
            new.description = s;
        }
        if let Some(s) = self.language_code {
            new.language_code = s;
        }
        if let Some(e) = self.customer_emotion {
            new.customer_emotion = e;
        }
        if let Some(s) = self.desired_outcome {
            new.desired_outcome = s;
        }
        if let Some(c) = self.compensation {
            new.compensation = c;
        }
        if let Some(r) = root_cause {
            new.root_cause = r;
        }
        if let Some(t) = self.triage_label {
            new.triage_label = t;
        }
        if let Some(s) = self.resolution_summary {
            new.resolution_summary = s;
        }
        if let Some(t) = self.tags {
            new.tags = t;
        }
        if let Some(a) = self.attributes {
            new.attributes = a;
        }
        if let Some(skills) = self.required_skills {
            // Strip what the old and the new category and language add: a client that changes
            // the category and sends back the list it read must not keep the old category's
            // skills as the ticket's own.
            let skills_of = |c: Option<&catalog::Category>| {
                c.map(|c| c.required_skills.clone()).unwrap_or_default()
            };
            let without_old = catalog::own_skills(
                &skills,
                &skills_of(old_category),
                Some(old.language_code.as_str()),
            );
            new.own_skills = catalog::own_skills(
                &without_old,
                &skills_of(new_category),
                Some(new.language_code.as_str()),
            );
        }

        let changed = changed_paths(old, &new);
        if changed.is_empty() {
            return Ok(changed);
        }
        let reselected = if new.severity == old.severity {
            None
        } else {
            reselect_sla(ticket, new.severity, rules)?
        };

        ticket.details = new;
        if let Some((clock, pickup_due)) = reselected {
            ticket.sla = clock;
            if let Some(due) = pickup_due {
                ticket.routing.pickup_due_at = due;
            }
        }
        refresh_derived(ticket, rules);
        refresh_sla_status(ticket, now);
        Ok(changed)
    }
}

/// The wire paths whose value differs between two sets of details, in proto field order.
fn changed_paths(old: &super::ticket::Details, new: &super::ticket::Details) -> Vec<String> {
    let compared = [
        ("type", old.ticket_type != new.ticket_type),
        ("category", old.category != new.category),
        ("severity", old.severity != new.severity),
        ("subject", old.subject != new.subject),
        ("description", old.description != new.description),
        ("language_code", old.language_code != new.language_code),
        (
            "customer_emotion",
            old.customer_emotion != new.customer_emotion,
        ),
        (
            "desired_outcome",
            old.desired_outcome != new.desired_outcome,
        ),
        ("compensation", old.compensation != new.compensation),
        ("root_cause", old.root_cause != new.root_cause),
        ("triage_label", old.triage_label != new.triage_label),
        (
            "resolution_summary",
            old.resolution_summary != new.resolution_summary,
        ),
        ("tags", old.tags != new.tags),
        ("attributes", old.attributes != new.attributes),
        ("required_skills", old.own_skills != new.own_skills),
    ];
    compared
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(path, _)| path.to_owned())
        .collect()
}

/// The clock under the policy for `severity`, and the new pickup due time of a waiting ticket;
/// `None` when the policy stays (same policy, or the clock has stopped).
fn reselect_sla(
    ticket: &Ticket,
    severity: Severity,
    rules: &Rules,
) -> Result<Option<(SlaClock, Option<OffsetDateTime>)>, CalendarError> {
    let old = &ticket.sla;
    if old.resolved_at.is_some() || ticket.state.is_terminal() {
        return Ok(None);
    }
    let tier = ticket.customer.tier().unwrap_or(rules.default_tier);
    let policy = rules.policies.select(tier, severity);
    if policy.id == old.policy_id {
        return Ok(None);
    }
    let calendar = rules.policies.calendar(&policy.calendar)?;
    let mut clock = SlaClock::start(policy, calendar, old.created_at)?;
    if old.first_response_at.is_some() {
        // Already met or missed under the old policy: not judged again.
        clock.first_response_due = old.first_response_due;
    }
    clock.first_response_at = old.first_response_at;
    clock.first_response_breached = old.first_response_breached;
    clock.resolution_breached = old.resolution_breached;
    clock.paused_total = old.paused_total;
    clock.paused_since = old.paused_since;
    clock.resolution_due = calendar.add(
        old.created_at,
        policy.resolution_target.saturating_add(old.paused_total),
    )?;
    let pickup_due = match ticket.state {
        TicketState::New | TicketState::Queued if ticket.handler_agent_ids.is_empty() => {
            // First queueing: the pickup target is the first-response due time.
            Some(clock.first_response_due)
        }
        TicketState::New | TicketState::Queued => {
            Some(calendar.add(ticket.routing.enqueue_at, policy.first_response_target)?)
        }
        _ => None,
    };
    Ok(Some((clock, pickup_due)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::Catalog;
    use crate::domain::sla::{SlaPolicies, SlaStatus};
    use crate::domain::ticket::{CompensationKind, CustomerLink, CustomerSnapshot, Intake, open};
    use tierline_types::{Channel, Tier};
    use uuid::Uuid;

    fn rules() -> Rules {
        let mut catalog = Catalog::default();
        if let Some(c) = catalog.categories.iter_mut().find(|c| c.id == "billing") {
            c.required_skills = vec!["product:billing".into()];
        }
        if let Some(c) = catalog.categories.iter_mut().find(|c| c.id == "delivery") {
            c.active = false;
        }
        if let Some(r) = catalog
            .root_causes
            .iter_mut()
            .find(|r| r.id == "staff_mood")
        {
            r.active = false;
        }
        Rules {
            catalog,
            policies: SlaPolicies::default(),
            default_tier: Tier::C,
        }
    }

    fn monday_morning() -> OffsetDateTime {
        time::macros::datetime!(2026-11-30 09:00 UTC)
    }

    fn ticket_in(category: &str) -> Ticket {
        let intake = Intake {
            idempotency_key: "call-1".into(),
            channel: Channel::Email,
            ticket_type: None,
            category: category.into(),
            severity: None,
            subject: String::new(),
            description: "the kettle leaks".into(),
            language_code: "de".into(),
            customer_emotion: None,
            desired_outcome: String::new(),
            tags: vec!["vip".into()],
            attributes: BTreeMap::new(),
            own_skills: vec!["device:kettle".into()],
            caller: None,
            follow_up_of: None,
        };
        let customer = CustomerLink::Resolved {
            id: Uuid::now_v7(),
            snapshot: CustomerSnapshot {
                tier: Tier::A,
                key_account: false,
                account_manager_id: None,
                display_name: "Ada".into(),
                taken_at: monday_morning(),
            },
        };
        open(intake, customer, &rules(), monday_morning()).expect("open")
    }

    fn ticket() -> Ticket {
        ticket_in("product_quality")
    }

    fn fields(err: &PatchError) -> Vec<&str> {
        match err {
            PatchError::Invalid(v) => v.as_slice().iter().map(|f| f.field.as_str()).collect(),
            other => panic!("expected violations, got {other}"),
        }
    }

    #[test]
    fn only_fields_whose_value_changes_are_reported() {
        let mut t = ticket();
        let before = t.clone();
        let patch = DetailsPatch {
            subject: Some(t.details.subject.clone()),
            description: Some("the kettle leaks badly".into()),
            tags: Some(vec!["vip".into()]),
            customer_emotion: Some(Some(CustomerEmotion::Angry)),
            ..DetailsPatch::default()
        };
        let later = monday_morning() + time::Duration::minutes(1);
        let changed = patch.apply(&mut t, &rules(), later).expect("apply");
        assert_eq!(changed, ["description", "customer_emotion"]);
        assert_eq!(t.details.description, "the kettle leaks badly");
        assert_eq!(t.details.customer_emotion, Some(CustomerEmotion::Angry));
        assert_eq!(t.version, before.version, "the caller touches the ticket");
    }

    #[test]
    fn a_patch_that_changes_nothing_leaves_the_ticket_as_it_was() {
        let mut t = ticket();
        let before = t.clone();
        let patch = DetailsPatch {
            category: Some("product_quality".into()),
            root_cause: Some(None),
            ..DetailsPatch::default()
        };
        assert_eq!(patch.apply(&mut t, &rules(), monday_morning()), Ok(vec![]));
        assert_eq!(t, before);
    }

    #[test]
    fn a_new_category_moves_the_department_and_recomputes_skills_and_priority() {
        let mut t = ticket();
        let before = t.priority;
        let patch = DetailsPatch {
            category: Some("billing".into()),
            ..DetailsPatch::default()
        };
        let changed = patch
            .apply(&mut t, &rules(), monday_morning())
            .expect("apply");
        assert_eq!(changed, ["category"]);
        assert_eq!(t.department, "customer_service");
        assert!(t.required_skills.contains(&"product:billing".to_string()));
        // Product quality boosts by 4, billing by 2.
        assert_eq!(t.priority, before - 2);
    }

    #[test]
    fn unknown_or_inactive_categories_and_root_causes_are_refused_all_at_once() {
        let mut t = ticket();
        let before = t.clone();
        let patch = DetailsPatch {
            category: Some("weather".into()),
            root_cause: Some(Some("bad_luck".into())),
            ..DetailsPatch::default()
        };
        let err = patch
            .apply(&mut t, &rules(), monday_morning())
            .expect_err("refused");
        assert_eq!(fields(&err), ["ticket.category", "ticket.root_cause"]);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(t, before, "nothing changed");

        let patch = DetailsPatch {
            category: Some("delivery".into()),
            root_cause: Some(Some("staff_mood".into())),
            ..DetailsPatch::default()
        };
        let err = patch
            .apply(&mut t, &rules(), monday_morning())
            .expect_err("inactive");
        assert_eq!(fields(&err), ["ticket.category", "ticket.root_cause"]);
    }

    #[test]
    fn a_ticket_keeps_its_inactive_category_and_root_cause() {
        let mut t = ticket_in("billing");
        let mut r = rules();
        for c in &mut r.catalog.categories {
            if c.id == "billing" {
                c.active = false;
            }
        }
        t.details.root_cause = Some("staff_mood".into());
        let patch = DetailsPatch {
            category: Some("billing".into()),
            root_cause: Some(Some("staff_mood".into())),
            subject: Some("Wrong invoice".into()),
            ..DetailsPatch::default()
        };
        assert_eq!(
            patch.apply(&mut t, &r, monday_morning()),
            Ok(vec!["subject".to_string()])
        );
    }

    #[test]
    fn root_causes_are_set_and_cleared() {
        let mut t = ticket();
        let set = DetailsPatch {
            root_cause: Some(Some("process_not_followed".into())),
            ..DetailsPatch::default()
        };
        assert_eq!(
            set.apply(&mut t, &rules(), monday_morning()),
            Ok(vec!["root_cause".to_string()])
        );
        assert_eq!(
            t.details.root_cause.as_deref(),
            Some("process_not_followed")
        );
        let clear = DetailsPatch {
            root_cause: Some(Some(String::new())),
            ..DetailsPatch::default()
        };
        assert_eq!(
            clear.apply(&mut t, &rules(), monday_morning()),
            Ok(vec!["root_cause".to_string()])
        );
        assert_eq!(t.details.root_cause, None);
    }

    #[test]
    fn required_fields_cannot_be_cleared() {
        let mut t = ticket();
        let patch = DetailsPatch {
            category: Some(String::new()),
            subject: Some("  ".into()),
            ..DetailsPatch::default()
        };
        let err = patch
            .apply(&mut t, &rules(), monday_morning())
            .expect_err("refused");
        assert_eq!(fields(&err), ["ticket.category", "ticket.subject"]);

        t.state = TicketState::Resolved;
        t.details.resolution_summary = "replaced".into();
        let patch = DetailsPatch {
            resolution_summary: Some(String::new()),
            ..DetailsPatch::default()
        };
        let err = patch
            .apply(&mut t, &rules(), monday_morning())
            .expect_err("refused");
        assert_eq!(fields(&err), ["ticket.resolution_summary"]);
    }

    #[test]
    fn a_closed_ticket_accepts_only_the_analysis_fields() {
        let mut t = ticket();
        t.state = TicketState::Closed;
        let analysis = DetailsPatch {
            root_cause: Some(Some("product_quality".into())),
            triage_label: Some(Some(TriageLabel::Valid)),
            tags: Some(vec!["recall".into()]),
            attributes: Some(BTreeMap::from([("batch".into(), "42".into())])),
            compensation: Some(Some(Compensation {
                kind: CompensationKind::Voucher,
                currency: "EUR".into(),
                micros: 10_000_000,
                note: String::new(),
            })),
            ..DetailsPatch::default()
        };
        let changed = analysis
            .apply(&mut t, &rules(), monday_morning())
            .expect("analysis fields");
        assert_eq!(
            changed,
            [
                "compensation",
                "root_cause",
                "triage_label",
                "tags",
                "attributes"
            ]
        );

        let before = t.clone();
        let other = DetailsPatch {
            subject: Some(t.details.subject.clone()),
            tags: Some(vec![]),
            severity: Some(Some(Severity::High)),
            ..DetailsPatch::default()
        };
        let err = other
            .apply(&mut t, &rules(), monday_morning())
            .expect_err("closed");
        assert_eq!(
            err,
            PatchError::Closed {
                paths: vec!["severity".into(), "subject".into()]
            }
        );
        assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(err.reason(), "TICKET_CLOSED");
        assert_eq!(t, before);
        assert!(check_updatable(TicketState::Closed, &["customer_id"]).is_err());
        assert!(check_updatable(TicketState::Closed, &["tags"]).is_ok());
    }

    #[test]
    fn merged_and_cancelled_tickets_accept_nothing() {
        for state in [TicketState::Merged, TicketState::Cancelled] {
            let mut t = ticket();
            t.state = state;
            let patch = DetailsPatch {
                tags: Some(vec!["late".into()]),
                ..DetailsPatch::default()
            };
            let err = patch
                .apply(&mut t, &rules(), monday_morning())
                .expect_err("finished");
            assert_eq!(err, PatchError::Finished { state });
            assert_eq!(err.reason(), "TICKET_FINISHED");
            assert!(check_updatable::<&str>(state, &[]).is_err());
        }
        assert!(check_updatable(TicketState::InProgress, &["customer_id", "subject"]).is_ok());
    }

    #[test]
    fn unspecified_type_and_severity_reset_to_the_category_defaults() {
        let mut t = ticket();
        t.details.ticket_type = TicketType::Request;
        t.details.severity = Severity::Low;
        let patch = DetailsPatch {
            ticket_type: Some(None),
            severity: Some(None),
            category: Some("staff_conduct".into()),
            ..DetailsPatch::default()
        };
        let changed = patch
            .apply(&mut t, &rules(), monday_morning())
            .expect("apply");
        assert_eq!(changed, ["type", "category", "severity"]);
        assert_eq!(t.details.ticket_type, TicketType::Complaint);
        assert_eq!(t.details.severity, Severity::High);
        assert_eq!(t.department, "hr");
    }

    #[test]
    fn a_critical_severity_switches_to_the_critical_policy_from_creation() {
        let mut t = ticket();
        assert_eq!(t.sla.policy_id, "tier-a");
        let before = t.priority;
        let patch = DetailsPatch {
            severity: Some(Some(Severity::Critical)),
            ..DetailsPatch::default()
        };
        let now = monday_morning() + time::Duration::minutes(1);
        assert_eq!(
            patch.apply(&mut t, &rules(), now),
            Ok(vec!["severity".to_string()])
        );
        assert_eq!(t.sla.policy_id, "tier-a-critical");
        assert_eq!(t.sla.created_at, monday_morning());
        assert_eq!(
            t.sla.first_response_due,
            monday_morning() + time::Duration::minutes(5)
        );
        assert_eq!(
            t.sla.resolution_due,
            monday_morning() + time::Duration::hours(4)
        );
        assert_eq!(t.routing.pickup_due_at, t.sla.first_response_due);
        assert_eq!(t.priority, before + 20, "critical 40 instead of medium 20");
        assert_eq!(t.sla_status, SlaStatus::OnTrack);
    }

    #[test]
    fn a_severity_change_does_not_judge_a_given_first_response_again() {
        let mut t = ticket();
        let responded = monday_morning() + time::Duration::minutes(10);
        let _ = t.sla.first_response(responded);
        let due = t.sla.first_response_due;
        let patch = DetailsPatch {
            severity: Some(Some(Severity::Critical)),
            ..DetailsPatch::default()
        };
        patch.apply(&mut t, &rules(), responded).expect("apply");
        assert_eq!(t.sla.policy_id, "tier-a-critical");
        assert_eq!(t.sla.first_response_due, due, "kept");
        assert_eq!(t.sla.first_response_at, Some(responded));
        assert_ne!(t.sla_status, SlaStatus::Breached);
    }

    #[test]
    fn a_resolved_ticket_keeps_its_policy_when_the_severity_changes() {
        let mut t = ticket();
        t.state = TicketState::Resolved;
        t.sla.resolved_at = Some(monday_morning() + time::Duration::hours(1));
        let patch = DetailsPatch {
            severity: Some(Some(Severity::Critical)),
            ..DetailsPatch::default()
        };
        patch
            .apply(&mut t, &rules(), monday_morning())
            .expect("apply");
        assert_eq!(t.sla.policy_id, "tier-a");
        assert_eq!(t.details.severity, Severity::Critical);
    }

    #[test]
    fn sent_back_skills_drop_what_the_category_and_language_add() {
        let mut t = ticket_in("billing");
        assert_eq!(
            t.required_skills,
            ["device:kettle", "language:de", "product:billing"]
        );
        // A client moves the ticket to product quality and sends back the list it read, plus
        // one skill of its own.
        let patch = DetailsPatch {
            category: Some("product_quality".into()),
            language_code: Some("fr".into()),
            required_skills: Some(vec![
                "device:kettle".into(),
                "language:de".into(),
                "product:billing".into(),
                "region:eu".into(),
            ]),
            ..DetailsPatch::default()
        };
        let changed = patch
            .apply(&mut t, &rules(), monday_morning())
            .expect("apply");
        assert_eq!(changed, ["category", "language_code", "required_skills"]);
        assert_eq!(t.details.own_skills, ["device:kettle", "region:eu"]);
        assert_eq!(
            t.required_skills,
            ["device:kettle", "language:fr", "region:eu"]
        );
    }

    #[test]
    fn the_update_event_lists_the_changed_fields() {
        let t = ticket();
        let e = update_event(&t, Actor::system(), vec!["subject".into()]);
        assert_eq!(e.kind, EventKind::Updated);
        assert_eq!(e.changed_fields, ["subject"]);
        assert_eq!((e.from, e.to), (t.state, t.state));
    }
}
