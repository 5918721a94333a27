//! The ticket state machine: every legal move, what it does, and why the others are refused.
//!
//! ```text
//! NEW -> QUEUED -> ASSIGNED -> IN_PROGRESS <-> PENDING_CUSTOMER / ON_HOLD -> RESOLVED -> CLOSED
//! ```
//!
//! Callers describe what they want as a [`Move`]: the targets of TransitionTicket (parsed from the
//! request by [`TransitionRequest::to_move`]) and the moves the service makes on its own
//! (routing accepted the ticket, an agent accepted it, a merge, a comment). [`apply`] answers
//! with the new state and its [`Change`] effects, [`Outcome::Unchanged`] when nothing changes, or
//! a [`TransitionError`] that says why not. [`available_transitions`] is derived from [`apply`],
//! so the two cannot disagree.

use std::fmt;

use serde::{Deserialize, Serialize};
use tierline_runtime::Violations;
use tierline_runtime::error::{ErrorKind, FieldViolation, ServiceError};

use super::sla::HoldReason;

/// Where a ticket is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    /// Created, not yet accepted by the routing service.
    New,
    /// Waiting in its department's routing queue.
    Queued,
    /// An agent accepted it but has not started.
    Assigned,
    /// The assigned agent is working on it.
    InProgress,
    /// Waiting for the customer; the resolution clock is paused.
    PendingCustomer,
    /// Parked for an internal or third-party reason.
    OnHold,
    /// Resolved; reopens when the customer replies, awaits follow-up.
    Resolved,
    /// Terminal: finished.
    Closed,
    /// Terminal: a tombstone merged into another ticket.
    Merged,
    /// Terminal: withdrawn.
    Cancelled,
}

impl TicketState {
    /// Every state, in life-cycle (wire number) order.
    pub const ALL: [TicketState; 10] = [
        TicketState::New,
        TicketState::Queued,
        TicketState::Assigned,
        TicketState::InProgress,
        TicketState::PendingCustomer,
        TicketState::OnHold,
        TicketState::Resolved,
        TicketState::Closed,
        TicketState::Merged,
        TicketState::Cancelled,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::New => "new",
            TicketState::Queued => "queued",
            TicketState::Assigned => "assigned",
            TicketState::InProgress => "in_progress",
            TicketState::PendingCustomer => "pending_customer",
            TicketState::OnHold => "on_hold",
            TicketState::Resolved => "resolved",
            TicketState::Closed => "closed",
            TicketState::Merged => "merged",
            TicketState::Cancelled => "cancelled",
        }
    }

    /// Reads a stored name.
    pub fn from_db(s: &str) -> Option<TicketState> {
        TicketState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
    }

    /// True for CLOSED, MERGED and CANCELLED: nothing moves a ticket out of them.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TicketState::Closed | TicketState::Merged | TicketState::Cancelled
        )
    }

    /// True while the ticket counts against its agent's routing capacity (ASSIGNED, IN_PROGRESS).
    /// Waiting and resolved tickets free the agent for new work.
    pub fn occupies_agent_capacity(self) -> bool {
        matches!(self, TicketState::Assigned | TicketState::InProgress)
    }

    /// What the resolution clock does while the ticket is in this state.
    pub fn resolution_clock(self) -> ResolutionClock {
        match self {
            TicketState::New
            | TicketState::Queued
            | TicketState::Assigned
            | TicketState::InProgress => ResolutionClock::Running,
            TicketState::PendingCustomer => ResolutionClock::Paused,
            TicketState::OnHold => ResolutionClock::DependsOnHoldReason,
            TicketState::Resolved => ResolutionClock::Stopped,
            TicketState::Closed | TicketState::Merged | TicketState::Cancelled => {
                ResolutionClock::Ended
            }
        }
    }

    /// True in the states where the ticket certainly has an assigned agent.
    fn has_owner(self) -> bool {
        matches!(
            self,
            TicketState::Assigned
                | TicketState::InProgress
                | TicketState::PendingCustomer
                | TicketState::OnHold
                | TicketState::Resolved
        )
    }
}

impl fmt::Display for TicketState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a ticket was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// A duplicate of another ticket (MergeTickets is preferred when the other should absorb it).
    Duplicate,
    /// Spam, junk or malicious feedback.
    Spam,
    /// Created for testing.
    Test,
}

impl CancelReason {
    /// Every reason.
    pub const ALL: [CancelReason; 3] = [
        CancelReason::Duplicate,
        CancelReason::Spam,
        CancelReason::Test,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::Duplicate => "duplicate",
            CancelReason::Spam => "spam",
            CancelReason::Test => "test",
        }
    }

    /// Reads a stored name.
    pub fn from_db(s: &str) -> Option<CancelReason> {
        CancelReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the resolution clock does in a state. The SLA module turns this into pauses and due times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolutionClock {
    /// Counting (NEW, QUEUED, ASSIGNED, IN_PROGRESS).
    Running,
    /// Paused whatever the policy says (PENDING_CUSTOMER).
    Paused,
    /// ON_HOLD: paused if the SLA policy pauses on the ticket's hold reason, else running.
    DependsOnHoldReason,
    /// RESOLVED: stopped; if the ticket reopens the clock runs again and the time spent resolved
    /// counts as paused.
    Stopped,
    /// Terminal: the clock never runs again.
    Ended,
}

/// Who wrote a comment, as far as the state machine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommentAuthor {
    /// The customer (always a public comment).
    Customer,
    /// The agent the ticket is assigned to (public or internal).
    AssignedAgent,
    /// Anyone else: another agent, a supervisor, an integration's note.
    Other,
}

/// What a caller asks of the state machine.
///
/// The first seven are TransitionTicket's targets; one target can be several steps depending
/// on where the ticket is (QUEUED is "return to queue" from a working state and "reopen" from
/// RESOLVED), and [`Change::step`] says which it was. The rest are moves the service makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Move {
    /// To IN_PROGRESS: start work (from ASSIGNED) or resume it (from PENDING_CUSTOMER, ON_HOLD).
    Work,
    /// To PENDING_CUSTOMER: wait for the customer to reply or act.
    WaitForCustomer,
    /// To ON_HOLD, for this reason.
    Hold(HoldReason),
    /// To RESOLVED. `has_summary`: a resolution summary is given with the request or is already
    /// on the ticket; resolving needs one.
    Resolve {
        /// Whether a resolution summary is available.
        has_summary: bool,
    },
    /// To QUEUED: return to the queue (the agent is removed), or reopen a RESOLVED ticket.
    Requeue,
    /// To CLOSED.
    Close,
    /// To CANCELLED, for this reason.
    Cancel(CancelReason),
    /// NEW to QUEUED: the routing service accepted the ticket into its queue.
    Enqueue,
    /// NEW or QUEUED to ASSIGNED: an agent accepted the routing offer (AssignTicket).
    Assign,
    /// To MERGED: the ticket is merged into another (MergeTickets, on the source).
    Merge,
    /// A comment was added (AddComment). A customer's reply resumes a PENDING_CUSTOMER ticket and
    /// reopens a RESOLVED one; the assigned agent's comment starts an ASSIGNED one; otherwise the
    /// state stays.
    Comment(CommentAuthor),
}

impl Move {
    /// The state the move aims at; `None` for a comment, whose effect depends on the state.
    pub fn target(self) -> Option<TicketState> {
        Some(match self {
            Move::Work => TicketState::InProgress,
            Move::WaitForCustomer => TicketState::PendingCustomer,
            Move::Hold(_) => TicketState::OnHold,
            Move::Resolve { .. } => TicketState::Resolved,
            Move::Requeue | Move::Enqueue => TicketState::Queued,
            Move::Close => TicketState::Closed,
            Move::Cancel(_) => TicketState::Cancelled,
            Move::Assign => TicketState::Assigned,
            Move::Merge => TicketState::Merged,
            Move::Comment(_) => return None,
        })
    }

    /// True for the moves a TransitionTicket request can ask for.
    pub fn is_transition(self) -> bool {
        matches!(
            self,
            Move::Work
                | Move::WaitForCustomer
                | Move::Hold(_)
                | Move::Resolve { .. }
                | Move::Requeue
                | Move::Close
                | Move::Cancel(_)
        )
    }
}

/// Which step a change was, for history (`TicketEvent.reason` when no note is given) and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// NEW to QUEUED.
    Enqueue,
    /// NEW or QUEUED to ASSIGNED.
    Assign,
    /// ASSIGNED to IN_PROGRESS.
    Start,
    /// PENDING_CUSTOMER or ON_HOLD to IN_PROGRESS.
    Resume,
    /// To PENDING_CUSTOMER.
    WaitForCustomer,
    /// To ON_HOLD.
    Hold,
    /// To RESOLVED.
    Resolve,
    /// From a working state back to QUEUED.
    ReturnToQueue,
    /// RESOLVED to QUEUED.
    Reopen,
    /// RESOLVED to CLOSED.
    Close,
    /// To CANCELLED.
    Cancel,
    /// To MERGED.
    Merge,
}

impl Step {
    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Enqueue => "enqueue",
            Step::Assign => "assign",
            Step::Start => "start",
            Step::Resume => "resume",
            Step::WaitForCustomer => "wait_for_customer",
            Step::Hold => "hold",
            Step::Resolve => "resolve",
            Step::ReturnToQueue => "return_to_queue",
            Step::Reopen => "reopen",
            Step::Close => "close",
            Step::Cancel => "cancel",
            Step::Merge => "merge",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to `Ticket.assigned_agent_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentEffect {
    /// Stays as it is (kept through RESOLVED and CLOSED: the agent who resolved it).
    Keep,
    /// Set to the agent who accepted the offer, with its routing reservation; the agent joins
    /// `handler_agent_ids` if new.
    Assign,
    /// Cleared, with the routing reservation: the ticket is back in the queue.
    Clear,
}

/// What happens to the agent's routing capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapacityEffect {
    /// No change.
    Unchanged,
    /// The ticket now counts against the agent's capacity.
    Taken,
    /// The ticket no longer counts against the agent's capacity.
    Freed,
}

/// A state change and everything that goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Change {
    /// The state before.
    pub from: TicketState,
    /// The state after.
    pub to: TicketState,
    /// Which step this was.
    pub step: Step,
    /// What happens to the assigned agent.
    pub agent: AgentEffect,
    /// What happens to the agent's routing capacity.
    pub capacity: CapacityEffect,
    /// The resolution clock in the new state.
    pub clock: ResolutionClock,
    /// `Ticket.hold_reason` after the change: set in ON_HOLD, cleared elsewhere.
    pub hold_reason: Option<HoldReason>,
    /// `Ticket.cancel_reason` after the change: set in CANCELLED, cleared elsewhere.
    pub cancel_reason: Option<CancelReason>,
    /// The ticket enters the routing queue: set `routing.enqueue_time` and pickup due time and
    /// hand it to the router.
    pub enters_queue: bool,
    /// The router should offer the ticket to its previous agent first
    /// (`routing.preferred_agent_id` becomes the agent assigned before the change).
    pub prefer_previous_agent: bool,
    /// A RESOLVED ticket was reopened: the SLA clock runs again and counts the time spent
    /// resolved as paused.
    pub reopens: bool,
    /// Set `resolve_time` to now.
    pub sets_resolve_time: bool,
    /// Set `close_time` to now (the ticket reached a terminal state).
    pub sets_close_time: bool,
}

impl Change {
    /// The effects of moving from `from` to `to`. Every effect follows from the two states, so
    /// no step can forget one.
    fn between(
        from: TicketState,
        to: TicketState,
        step: Step,
        hold_reason: Option<HoldReason>,
        cancel_reason: Option<CancelReason>,
    ) -> Change {
        let back_to_queue = to == TicketState::Queued && from.has_owner();
        Change {
            from,
            to,
            step,
            agent: if to == TicketState::Assigned {
                AgentEffect::Assign
            } else if back_to_queue {
                AgentEffect::Clear
            } else {
                AgentEffect::Keep
            },
            capacity: match (from.occupies_agent_capacity(), to.occupies_agent_capacity()) {
                (false, true) => CapacityEffect::Taken,
                (true, false) => CapacityEffect::Freed,
                _ => CapacityEffect::Unchanged,
            },
            clock: to.resolution_clock(),
            hold_reason: hold_reason.filter(|_| to == TicketState::OnHold),
            cancel_reason: cancel_reason.filter(|_| to == TicketState::Cancelled),
            enters_queue: to == TicketState::Queued,
            prefer_previous_agent: back_to_queue,
            reopens: from == TicketState::Resolved && to == TicketState::Queued,
            sets_resolve_time: to == TicketState::Resolved,
            sets_close_time: to.is_terminal(),
        }
    }
}

/// The answer to a legal move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Nothing changes (a move to the current state, or a comment that moves nothing): no new
    /// version, no state event.
    Unchanged,
    /// The state changes.
    Changed(Change),
}

impl Outcome {
    /// The change, if there is one.
    pub fn change(&self) -> Option<&Change> {
        match self {
            Outcome::Unchanged => None,
            Outcome::Changed(change) => Some(change),
        }
    }
}

/// Why a move was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The request is malformed (missing or superfluous reason, missing resolution summary,
    /// target never allowed): INVALID_ARGUMENT, naming each field.
    #[error("invalid request: {0}")]
    Invalid(Violations),
    /// The move is not legal from the ticket's current state: FAILED_PRECONDITION.
    #[error("{}", illegal_message(.from, .target, .reason))]
    Illegal {
        /// The ticket's state.
        from: TicketState,
        /// Where the move would have taken it; `None` for a comment.
        target: Option<TicketState>,
        /// Why not, for people.
        reason: &'static str,
    },
}

fn illegal_message(from: &TicketState, target: &Option<TicketState>, reason: &str) -> String {
    match target {
        Some(target) => format!("cannot move a {from} ticket to {target}: {reason}"),
        None => format!("cannot comment on a {from} ticket: {reason}"),
    }
}

impl TransitionError {
    fn invalid(field: &str, description: &str) -> TransitionError {
        TransitionError::Invalid(FieldViolation::new(field, description).into())
    }

    fn illegal(from: TicketState, mv: Move, reason: &'static str) -> TransitionError {
        TransitionError::Illegal {
            from,
            target: mv.target(),
            reason,
        }
    }
}

impl ServiceError for TransitionError {
    fn domain(&self) -> &'static str {
        "tierline.ticket"
    }

    fn kind(&self) -> ErrorKind {
        match self {
            TransitionError::Invalid(_) => ErrorKind::InvalidArgument,
            TransitionError::Illegal { .. } => ErrorKind::FailedPrecondition,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            TransitionError::Invalid(_) => "INVALID_ARGUMENT",
            TransitionError::Illegal {
                target: Some(_), ..
            } => "ILLEGAL_TRANSITION",
            // A comment refused on a finished ticket is not a transition.
            TransitionError::Illegal { target: None, .. } => "TICKET_FINISHED",
        }
    }

    fn field_violations(&self) -> &[FieldViolation] {
        match self {
            TransitionError::Invalid(v) => v.as_slice(),
            TransitionError::Illegal { .. } => &[],
        }
    }

    fn precondition(&self) -> Option<(&'static str, String)> {
        match self {
            TransitionError::Invalid(_) => None,
            TransitionError::Illegal { from, target, .. } => Some((
                self.reason(),
                match target {
                    Some(target) => format!("state {from} -> {target}"),
                    None => format!("state {from}"),
                },
            )),
        }
    }
}

/// Applies `mv` to a ticket in state `from`: the new state and its effects, no change, or why not.
///
/// Checks, in order: a TransitionTicket move to the current state (or a repeated Enqueue)
/// succeeds without change, so retries are safe even without a summary or with another reason;
/// terminal states refuse everything else; then the table of legal moves; a legal move to
/// RESOLVED needs a summary.
pub fn apply(from: TicketState, mv: Move) -> Result<Outcome, TransitionError> {
    use TicketState as S;

    const UNASSIGNED: &str = "nobody has taken the ticket yet; it must be assigned first";
    const NOT_STARTED: &str = "work has not started; move it to in_progress first";
    const RESOLVED_REOPEN: &str = "a resolved ticket is reopened by moving it to queued";
    let refuse = |reason| Err(TransitionError::illegal(from, mv, reason));

    // Order matters: no-ops first, then terminal states, then each move's sources; the match
    // is exhaustive, so the compiler checks that every pair is decided.
    let (to, step) = match (mv, from) {
        // A request to be where the ticket already is succeeds without change, so retries are
        // safe (the router may also report an acceptance twice).
        (Move::Work, S::InProgress)
        | (Move::WaitForCustomer, S::PendingCustomer)
        | (Move::Hold(_), S::OnHold)
        | (Move::Resolve { .. }, S::Resolved)
        | (Move::Requeue | Move::Enqueue, S::Queued)
        | (Move::Close, S::Closed)
        | (Move::Cancel(_), S::Cancelled) => return Ok(Outcome::Unchanged),
        (_, S::Closed) => return refuse("a closed ticket stays closed; create a follow-up ticket"),
        (_, S::Merged) => {
            return refuse("a merged ticket is a tombstone; work on the surviving ticket");
        }
        (_, S::Cancelled) => {
            return refuse("a cancelled ticket stays cancelled; create a new ticket");
        }

        (Move::Work, S::Assigned) => (S::InProgress, Step::Start),
        (Move::Work, S::PendingCustomer | S::OnHold) => (S::InProgress, Step::Resume),
        (Move::WaitForCustomer, S::InProgress | S::OnHold) => {
            (S::PendingCustomer, Step::WaitForCustomer)
        }
        (Move::Hold(_), S::InProgress | S::PendingCustomer) => (S::OnHold, Step::Hold),
        (Move::Work | Move::WaitForCustomer | Move::Hold(_), S::New | S::Queued) => {
            return refuse(UNASSIGNED);
        }
        (Move::WaitForCustomer | Move::Hold(_), S::Assigned) => return refuse(NOT_STARTED),
        (Move::Work | Move::WaitForCustomer | Move::Hold(_), S::Resolved) => {
            return refuse(RESOLVED_REOPEN);
        }

        (
            Move::Resolve { has_summary },
            S::Assigned | S::InProgress | S::PendingCustomer | S::OnHold,
        ) => {
            if !has_summary {
                return Err(TransitionError::invalid(
                    "resolution_summary",
                    "required to resolve a ticket that has none",
                ));
            }
            (S::Resolved, Step::Resolve)
        }
        (Move::Resolve { .. }, S::New | S::Queued) => return refuse(UNASSIGNED),

        (Move::Requeue, S::Assigned | S::InProgress | S::PendingCustomer | S::OnHold) => {
            (S::Queued, Step::ReturnToQueue)
        }
        (Move::Requeue, S::Resolved) => (S::Queued, Step::Reopen),
        (Move::Requeue, S::New) => {
            return refuse("a new ticket is queued when the routing service accepts it");
        }

        (Move::Close, S::Resolved) => (S::Closed, Step::Close),
        (Move::Close, _) => {
            return refuse("only a resolved ticket can be closed; resolve or cancel it first");
        }

        (Move::Cancel(_), S::Resolved) => {
            return refuse("a resolved ticket is closed, not cancelled");
        }
        (Move::Cancel(_), _) => (S::Cancelled, Step::Cancel),

        (Move::Enqueue, S::New) => (S::Queued, Step::Enqueue),
        (Move::Enqueue, _) => {
            return refuse("only a new ticket is handed to the routing service");
        }

        (Move::Assign, S::New | S::Queued) => (S::Assigned, Step::Assign),
        (Move::Assign, S::Resolved) => {
            return refuse("a resolved ticket must be reopened to the queue before it is assigned");
        }
        (Move::Assign, _) => return refuse("the ticket is already assigned"),

        (Move::Merge, _) => (S::Merged, Step::Merge),

        (Move::Comment(CommentAuthor::Customer), S::PendingCustomer) => {
            (S::InProgress, Step::Resume)
        }
        (Move::Comment(CommentAuthor::Customer), S::Resolved) => (S::Queued, Step::Reopen),
        (Move::Comment(CommentAuthor::AssignedAgent), S::Assigned) => (S::InProgress, Step::Start),
        (Move::Comment(_), _) => return Ok(Outcome::Unchanged),
    };

    let (hold_reason, cancel_reason) = match mv {
        Move::Hold(reason) => (Some(reason), None),
        Move::Cancel(reason) => (None, Some(reason)),
        _ => (None, None),
    };
    Ok(Outcome::Changed(Change::between(
        from,
        to,
        step,
        hold_reason,
        cancel_reason,
    )))
}

/// The targets TransitionTicket accepts from `state` (`Ticket.available_transitions`), in wire
/// order. The current state is not listed: moving there changes nothing.
pub fn available_transitions(state: TicketState) -> Vec<TicketState> {
    // Any reason and a summary will do: they decide whether a request is complete, not whether
    // the target is reachable.
    let moves = [
        Move::Requeue,
        Move::Work,
        Move::WaitForCustomer,
        Move::Hold(HoldReason::Other),
        Move::Resolve { has_summary: true },
        Move::Close,
        Move::Cancel(CancelReason::Test),
    ];
    moves
        .into_iter()
        .filter(|mv| matches!(apply(state, *mv), Ok(Outcome::Changed(_))))
        .filter_map(Move::target)
        .collect()
}

/// A TransitionTicket request, as far as the state machine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransitionRequest {
    /// The requested state; `None` when the request left it unspecified.
    pub target_state: Option<TicketState>,
    /// The hold reason given, if any.
    pub hold_reason: Option<HoldReason>,
    /// The cancel reason given, if any.
    pub cancel_reason: Option<CancelReason>,
    /// Whether the request carries a (non-empty) resolution summary.
    pub resolution_summary_given: bool,
}

impl TransitionRequest {
    /// The move the request asks for, or every field violation at once. A reason is required
    /// exactly when the target needs it, a summary is allowed only for RESOLVED, and NEW,
    /// ASSIGNED and MERGED are never requestable. `ticket_has_summary`: the ticket already
    /// carries a resolution summary (a RESOLVED request needs one, here or there).
    pub fn to_move(&self, ticket_has_summary: bool) -> Result<Move, TransitionError> {
        let mut v = Violations::new();
        let target = self.target_state;
        match target {
            None => v.add("target_state", "required"),
            Some(TicketState::New) => v.add(
                "target_state",
                "new is only where tickets start; it is never a target",
            ),
            Some(TicketState::Assigned) => v.add(
                "target_state",
                "assigned is set when an agent accepts the ticket, never requested",
            ),
            Some(TicketState::Merged) => v.add(
                "target_state",
                "merged is set by merging the ticket into another",
            ),
            Some(_) => {}
        }
        let on_hold = target == Some(TicketState::OnHold);
        match (on_hold, self.hold_reason) {
            (true, None) => v.add("hold_reason", "required when target_state is on_hold"),
            (false, Some(_)) => v.add(
                "hold_reason",
                "must be unset unless target_state is on_hold",
            ),
            _ => {}
        }
        let cancelling = target == Some(TicketState::Cancelled);
        match (cancelling, self.cancel_reason) {
            (true, None) => v.add("cancel_reason", "required when target_state is cancelled"),
            (false, Some(_)) => v.add(
                "cancel_reason",
                "must be unset unless target_state is cancelled",
            ),
            _ => {}
        }
        if self.resolution_summary_given && target != Some(TicketState::Resolved) {
            v.add(
                "resolution_summary",
                "must be empty unless target_state is resolved",
            );
        }
        if !v.is_empty() {
            return Err(TransitionError::Invalid(v));
        }
        let has_summary = self.resolution_summary_given || ticket_has_summary;
        match (target, self.hold_reason, self.cancel_reason) {
            (Some(TicketState::Queued), _, _) => Ok(Move::Requeue),
            (Some(TicketState::InProgress), _, _) => Ok(Move::Work),
            (Some(TicketState::PendingCustomer), _, _) => Ok(Move::WaitForCustomer),
            (Some(TicketState::OnHold), Some(reason), _) => Ok(Move::Hold(reason)),
            (Some(TicketState::Resolved), _, _) => Ok(Move::Resolve { has_summary }),
            (Some(TicketState::Closed), _, _) => Ok(Move::Close),
            (Some(TicketState::Cancelled), _, Some(reason)) => Ok(Move::Cancel(reason)),
            // Every other combination was reported above.
            _ => Err(TransitionError::invalid(
                "target_state",
                "not a legal target",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TicketState as S;

    /// The moves the tables below cover, in column order.
    const MOVES: [Move; 13] = [
        Move::Work,
        Move::WaitForCustomer,
        Move::Hold(HoldReason::ThirdParty),
        Move::Resolve { has_summary: true },
        Move::Requeue,
        Move::Close,
        Move::Cancel(CancelReason::Spam),
        Move::Enqueue,
        Move::Assign,
        Move::Merge,
        Move::Comment(CommentAuthor::Customer),
        Move::Comment(CommentAuthor::AssignedAgent),
        Move::Comment(CommentAuthor::Other),
    ];

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Expect {
        To(TicketState),
        Same,
        Illegal,
    }
    use Expect::{Illegal as X, Same as Z};
    const QUE: Expect = Expect::To(S::Queued);
    const ASG: Expect = Expect::To(S::Assigned);
    const WRK: Expect = Expect::To(S::InProgress);
    const PND: Expect = Expect::To(S::PendingCustomer);
    const HLD: Expect = Expect::To(S::OnHold);
    const RES: Expect = Expect::To(S::Resolved);
    const CLO: Expect = Expect::To(S::Closed);
    const MRG: Expect = Expect::To(S::Merged);
    const CAN: Expect = Expect::To(S::Cancelled);

    /// Every (state, move): the proto's TransitionTicket table, AssignTicket, MergeTickets and
    /// AddComment's effects.
    #[rustfmt::skip]
    const TABLE: [(TicketState, [Expect; 13]); 10] = [
        //                   Work Wait Hold Resolv Requeue Close Cancel Enqueue Assign Merge Cust Agent Other
        (S::New,             [X,   X,   X,   X,     X,      X,    CAN,   QUE,    ASG,   MRG,  Z,   Z,    Z]),
        (S::Queued,          [X,   X,   X,   X,     Z,      X,    CAN,   Z,      ASG,   MRG,  Z,   Z,    Z]),
        (S::Assigned,        [WRK, X,   X,   RES,   QUE,    X,    CAN,   X,      X,     MRG,  Z,   WRK,  Z]),
        (S::InProgress,      [Z,   PND, HLD, RES,   QUE,    X,    CAN,   X,      X,     MRG,  Z,   Z,    Z]),
        (S::PendingCustomer, [WRK, Z,   HLD, RES,   QUE,    X,    CAN,   X,      X,     MRG,  WRK, Z,    Z]),
        (S::OnHold,          [WRK, PND, Z,   RES,   QUE,    X,    CAN,   X,      X,     MRG,  Z,   Z,    Z]),
        (S::Resolved,        [X,   X,   X,   Z,     QUE,    CLO,  X,     X,      X,     MRG,  QUE, Z,    Z]),
        (S::Closed,          [X,   X,   X,   X,     X,      Z,    X,     X,      X,     X,    X,   X,    X]),
        (S::Merged,          [X,   X,   X,   X,     X,      X,    X,     X,      X,     X,    X,   X,    X]),
        (S::Cancelled,       [X,   X,   X,   X,     X,      X,    Z,     X,      X,     X,    X,   X,    X]),
    ];

    fn got(from: TicketState, mv: Move) -> Expect {
        match apply(from, mv) {
            Ok(Outcome::Changed(change)) => {
                assert_eq!(change.from, from);
                Expect::To(change.to)
            }
            Ok(Outcome::Unchanged) => Expect::Same,
            Err(TransitionError::Illegal {
                from: f, target, ..
            }) => {
                assert_eq!(f, from);
                assert_eq!(target, mv.target());
                Expect::Illegal
            }
            Err(e) => panic!("{from} {mv:?}: unexpected {e}"),
        }
    }

    #[test]
    fn every_state_and_move_gives_what_the_table_says() {
        let mut seen = Vec::new();
        for (from, row) in TABLE {
            seen.push(from);
            for (mv, expected) in MOVES.into_iter().zip(row) {
                assert_eq!(got(from, mv), expected, "{from} {mv:?}");
            }
        }
        assert_eq!(seen, TicketState::ALL, "the table covers every state once");
    }

    use AgentEffect::{Assign as SET, Clear as CLR, Keep as KEEP};
    use CapacityEffect::{Freed as FREE, Taken as TAKE, Unchanged as SAME};
    use ResolutionClock::{
        DependsOnHoldReason as HOLD, Ended as END, Paused as PAUSE, Running as RUN, Stopped as STOP,
    };

    /// (from, move, to, step, agent, capacity, clock, flags).
    type EffectRow = (
        TicketState,
        Move,
        TicketState,
        Step,
        AgentEffect,
        CapacityEffect,
        ResolutionClock,
        &'static str,
    );

    /// Every legal change with its effects. Flags: q enters the queue, p prefers the previous
    /// agent, o reopens, r sets resolve_time, c sets close_time.
    #[rustfmt::skip]
    const EFFECTS: [EffectRow; 36] = [
        (S::New, Move::Cancel(CancelReason::Spam), S::Cancelled, Step::Cancel, KEEP, SAME, END, "c"),
        (S::New, Move::Enqueue, S::Queued, Step::Enqueue, KEEP, SAME, RUN, "q"),
        (S::New, Move::Assign, S::Assigned, Step::Assign, SET, TAKE, RUN, ""),
        (S::New, Move::Merge, S::Merged, Step::Merge, KEEP, SAME, END, "c"),
        (S::Queued, Move::Cancel(CancelReason::Spam), S::Cancelled, Step::Cancel, KEEP, SAME, END, "c"),
        (S::Queued, Move::Assign, S::Assigned, Step::Assign, SET, TAKE, RUN, ""),
        (S::Queued, Move::Merge, S::Merged, Step::Merge, KEEP, SAME, END, "c"),
        (S::Assigned, Move::Work, S::InProgress, Step::Start, KEEP, SAME, RUN, ""),
        (S::Assigned, Move::Resolve { has_summary: true }, S::Resolved, Step::Resolve, KEEP, FREE, STOP, "r"),
        (S::Assigned, Move::Requeue, S::Queued, Step::ReturnToQueue, CLR, FREE, RUN, "qp"),
        (S::Assigned, Move::Cancel(CancelReason::Spam), S::Cancelled, Step::Cancel, KEEP, FREE, END, "c"),
        (S::Assigned, Move::Merge, S::Merged, Step::Merge, KEEP, FREE, END, "c"),
        (S::Assigned, Move::Comment(CommentAuthor::AssignedAgent), S::InProgress, Step::Start, KEEP, SAME, RUN, ""),
        (S::InProgress, Move::WaitForCustomer, S::PendingCustomer, Step::WaitForCustomer, KEEP, FREE, PAUSE, ""),
        (S::InProgress, Move::Hold(HoldReason::ThirdParty), S::OnHold, Step::Hold, KEEP, FREE, HOLD, ""),
        (S::InProgress, Move::Resolve { has_summary: true }, S::Resolved, Step::Resolve, KEEP, FREE, STOP, "r"),
        (S::InProgress, Move::Requeue, S::Queued, Step::ReturnToQueue, CLR, FREE, RUN, "qp"),
        (S::InProgress, Move::Cancel(CancelReason::Spam), S::Cancelled, Step::Cancel, KEEP, FREE, END, "c"),
        (S::InProgress, Move::Merge, S::Merged, Step::Merge, KEEP, FREE, END, "c"),
        (S::PendingCustomer, Move::Work, S::InProgress, Step::Resume, KEEP, TAKE, RUN, ""),
        (S::PendingCustomer, Move::Hold(HoldReason::ThirdParty), S::OnHold, Step::Hold, KEEP, SAME, HOLD, ""),
        (S::PendingCustomer, Move::Resolve { has_summary: true }, S::Resolved, Step::Resolve, KEEP, SAME, STOP, "r"),
        (S::PendingCustomer, Move::Requeue, S::Queued, Step::ReturnToQueue, CLR, SAME, RUN, "qp"),
        (S::PendingCustomer, Move::Cancel(CancelReason::Spam), S::Cancelled, Step::Cancel, KEEP, SAME, END, "c"),
        (S::PendingCustomer, Move::Merge, S::Merged, Step::Merge, KEEP, SAME, END, "c"),
        (S::PendingCustomer, Move::Comment(CommentAuthor::Customer), S::InProgress, Step::Resume, KEEP, TAKE, RUN, ""),
        (S::OnHold, Move::Work, S::InProgress, Step::Resume, KEEP, TAKE, RUN, ""),
        (S::OnHold, Move::WaitForCustomer, S::PendingCustomer, Step::WaitForCustomer, KEEP, SAME, PAUSE, ""),
        (S::OnHold, Move::Resolve { has_summary: true }, S::Resolved, Step::Resolve, KEEP, SAME, STOP, "r"),
        (S::OnHold, Move::Requeue, S::Queued, Step::ReturnToQueue, CLR, SAME, RUN, "qp"),
        (S::OnHold, Move::Cancel(CancelReason::Spam), S::Cancelled, Step::Cancel, KEEP, SAME, END, "c"),
        (S::OnHold, Move::Merge, S::Merged, Step::Merge, KEEP, SAME, END, "c"),
        (S::Resolved, Move::Requeue, S::Queued, Step::Reopen, CLR, SAME, RUN, "qpo"),
        (S::Resolved, Move::Close, S::Closed, Step::Close, KEEP, SAME, END, "c"),
        (S::Resolved, Move::Merge, S::Merged, Step::Merge, KEEP, SAME, END, "c"),
        (S::Resolved, Move::Comment(CommentAuthor::Customer), S::Queued, Step::Reopen, CLR, SAME, RUN, "qpo"),
    ];

    #[test]
    fn every_legal_move_has_the_effects_the_table_says() {
        for (from, mv, to, step, agent, capacity, clock, flags) in EFFECTS {
            let Ok(Outcome::Changed(change)) = apply(from, mv) else {
                panic!("{from} {mv:?} should be legal");
            };
            let expected = Change {
                from,
                to,
                step,
                agent,
                capacity,
                clock,
                hold_reason: (to == S::OnHold).then_some(HoldReason::ThirdParty),
                cancel_reason: (to == S::Cancelled).then_some(CancelReason::Spam),
                enters_queue: flags.contains('q'),
                prefer_previous_agent: flags.contains('p'),
                reopens: flags.contains('o'),
                sets_resolve_time: flags.contains('r'),
                sets_close_time: flags.contains('c'),
            };
            assert_eq!(change, expected, "{from} {mv:?}");
        }
    }

    #[test]
    fn the_effects_table_lists_every_legal_move_of_the_state_table() {
        let legal: Vec<(TicketState, Move)> = TABLE
            .into_iter()
            .flat_map(|(from, row)| {
                MOVES
                    .into_iter()
                    .zip(row)
                    .filter(|(_, e)| matches!(e, Expect::To(_)))
                    .map(move |(mv, _)| (from, mv))
            })
            .collect();
        let listed: Vec<(TicketState, Move)> =
            EFFECTS.into_iter().map(|row| (row.0, row.1)).collect();
        assert_eq!(legal, listed);
    }

    #[test]
    fn terminal_states_refuse_everything_but_a_retry_of_the_move_that_ended_them() {
        for from in TicketState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for mv in MOVES {
                let retry = mv.is_transition() && mv.target() == Some(from);
                match apply(from, mv) {
                    Ok(Outcome::Unchanged) if retry => {}
                    Err(TransitionError::Illegal { reason, .. }) if !retry => {
                        assert!(!reason.is_empty());
                    }
                    other => panic!("{from} {mv:?}: {other:?}"),
                }
            }
        }
        assert_eq!(
            TicketState::ALL.iter().filter(|s| s.is_terminal()).count(),
            3
        );
    }

    #[test]
    fn a_transition_to_the_current_state_changes_nothing_whatever_it_carries() {
        let requests = [
            (S::InProgress, Move::Work),
            (S::PendingCustomer, Move::WaitForCustomer),
            (S::OnHold, Move::Hold(HoldReason::Internal)),
            (S::Resolved, Move::Resolve { has_summary: false }),
            (S::Queued, Move::Requeue),
            (S::Closed, Move::Close),
            (S::Cancelled, Move::Cancel(CancelReason::Duplicate)),
        ];
        for (state, mv) in requests {
            assert_eq!(apply(state, mv), Ok(Outcome::Unchanged), "{state} {mv:?}");
        }
    }

    #[test]
    fn the_service_moves_other_than_enqueue_are_not_no_ops_in_their_target_state() {
        assert_eq!(apply(S::Queued, Move::Enqueue), Ok(Outcome::Unchanged));
        assert!(matches!(
            apply(S::Assigned, Move::Assign),
            Err(TransitionError::Illegal { .. })
        ));
        assert!(matches!(
            apply(S::Merged, Move::Merge),
            Err(TransitionError::Illegal { .. })
        ));
    }

    #[test]
    fn resolving_without_a_summary_is_invalid_and_names_the_field() {
        for from in [S::Assigned, S::InProgress, S::PendingCustomer, S::OnHold] {
            let err = apply(from, Move::Resolve { has_summary: false })
                .expect_err("a summary is required");
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
            let fields: Vec<_> = err
                .field_violations()
                .iter()
                .map(|v| v.field.as_str())
                .collect();
            assert_eq!(fields, ["resolution_summary"]);
        }
        // Legality is checked first: a queued ticket cannot be resolved, summary or not.
        assert!(matches!(
            apply(S::Queued, Move::Resolve { has_summary: false }),
            Err(TransitionError::Illegal { .. })
        ));
    }

    #[test]
    fn illegal_moves_say_why_in_words_and_as_a_precondition() {
        let err = apply(S::Closed, Move::Requeue).expect_err("closed stays closed");
        assert_eq!(
            err.to_string(),
            "cannot move a closed ticket to queued: a closed ticket stays closed; create a follow-up ticket"
        );
        assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(err.reason(), "ILLEGAL_TRANSITION");
        assert_eq!(
            err.precondition(),
            Some(("ILLEGAL_TRANSITION", "state closed -> queued".to_string()))
        );
        let err = apply(S::Cancelled, Move::Comment(CommentAuthor::Customer))
            .expect_err("no comments on cancelled tickets");
        assert_eq!(
            err.to_string(),
            "cannot comment on a cancelled ticket: a cancelled ticket stays cancelled; create a new ticket"
        );
        assert_eq!(err.reason(), "TICKET_FINISHED");
        let err = apply(S::Queued, Move::Work).expect_err("not assigned");
        assert!(err.to_string().contains("must be assigned first"), "{err}");
    }

    #[test]
    fn every_illegal_message_is_lower_case_without_trailing_punctuation() {
        for (from, _) in TABLE {
            for mv in MOVES {
                if let Err(e) = apply(from, mv) {
                    let text = e.to_string();
                    assert!(!text.ends_with('.'), "{text}");
                    assert_eq!(text, text.to_lowercase(), "{text}");
                }
            }
        }
    }

    #[test]
    fn hold_and_cancel_reasons_are_kept_only_in_their_states() {
        let held = apply(S::InProgress, Move::Hold(HoldReason::Fulfilment)).expect("legal");
        assert_eq!(
            held.change().and_then(|c| c.hold_reason),
            Some(HoldReason::Fulfilment)
        );
        let resumed = apply(S::OnHold, Move::Work).expect("legal");
        assert_eq!(resumed.change().and_then(|c| c.hold_reason), None);
        let cancelled = apply(S::New, Move::Cancel(CancelReason::Test)).expect("legal");
        assert_eq!(
            cancelled.change().and_then(|c| c.cancel_reason),
            Some(CancelReason::Test)
        );
    }

    #[test]
    fn available_transitions_follow_the_proto_table() {
        let expected: [(TicketState, &[TicketState]); 10] = [
            (S::New, &[S::Cancelled]),
            (S::Queued, &[S::Cancelled]),
            (
                S::Assigned,
                &[S::Queued, S::InProgress, S::Resolved, S::Cancelled],
            ),
            (
                S::InProgress,
                &[
                    S::Queued,
                    S::PendingCustomer,
                    S::OnHold,
                    S::Resolved,
                    S::Cancelled,
                ],
            ),
            (
                S::PendingCustomer,
                &[
                    S::Queued,
                    S::InProgress,
                    S::OnHold,
                    S::Resolved,
                    S::Cancelled,
                ],
            ),
            (
                S::OnHold,
                &[
                    S::Queued,
                    S::InProgress,
                    S::PendingCustomer,
                    S::Resolved,
                    S::Cancelled,
                ],
            ),
            (S::Resolved, &[S::Queued, S::Closed]),
            (S::Closed, &[]),
            (S::Merged, &[]),
            (S::Cancelled, &[]),
        ];
        for (state, targets) in expected {
            assert_eq!(available_transitions(state), targets, "{state}");
        }
    }

    #[test]
    fn requests_carry_a_reason_exactly_when_their_target_needs_one() {
        let req = |target, hold, cancel, summary| TransitionRequest {
            target_state: Some(target),
            hold_reason: hold,
            cancel_reason: cancel,
            resolution_summary_given: summary,
        };
        let ok = |r: TransitionRequest, has: bool| r.to_move(has).expect("valid request");
        assert_eq!(ok(req(S::Queued, None, None, false), false), Move::Requeue);
        assert_eq!(ok(req(S::InProgress, None, None, false), false), Move::Work);
        assert_eq!(
            ok(req(S::PendingCustomer, None, None, false), false),
            Move::WaitForCustomer
        );
        assert_eq!(
            ok(
                req(S::OnHold, Some(HoldReason::Scheduled), None, false),
                false
            ),
            Move::Hold(HoldReason::Scheduled)
        );
        assert_eq!(
            ok(req(S::Resolved, None, None, true), false),
            Move::Resolve { has_summary: true }
        );
        assert_eq!(
            ok(req(S::Resolved, None, None, false), true),
            Move::Resolve { has_summary: true },
            "the ticket's own summary will do"
        );
        assert_eq!(
            ok(req(S::Resolved, None, None, false), false),
            Move::Resolve { has_summary: false }
        );
        assert_eq!(ok(req(S::Closed, None, None, false), false), Move::Close);
        assert_eq!(
            ok(
                req(S::Cancelled, None, Some(CancelReason::Duplicate), false),
                false
            ),
            Move::Cancel(CancelReason::Duplicate)
        );

        let fields = |r: TransitionRequest| -> Vec<String> {
            match r.to_move(false) {
                Err(TransitionError::Invalid(v)) => {
                    v.as_slice().iter().map(|f| f.field.clone()).collect()
                }
                other => panic!("expected invalid, got {other:?}"),
            }
        };
        assert_eq!(fields(req(S::OnHold, None, None, false)), ["hold_reason"]);
        assert_eq!(
            fields(req(S::Cancelled, None, None, false)),
            ["cancel_reason"]
        );
        assert_eq!(
            fields(req(
                S::Closed,
                Some(HoldReason::Other),
                Some(CancelReason::Spam),
                true
            )),
            ["hold_reason", "cancel_reason", "resolution_summary"]
        );
        assert_eq!(
            fields(req(S::OnHold, None, Some(CancelReason::Spam), false)),
            ["hold_reason", "cancel_reason"]
        );
        assert_eq!(fields(TransitionRequest::default()), ["target_state"]);
    }

    #[test]
    fn new_assigned_and_merged_are_never_requestable_targets() {
        for target in [S::New, S::Assigned, S::Merged] {
            let req = TransitionRequest {
                target_state: Some(target),
                ..TransitionRequest::default()
            };
            let err = req.to_move(true).expect_err("never a target");
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{target}");
            assert_eq!(err.field_violations()[0].field, "target_state");
        }
    }

    #[test]
    fn the_resolution_clock_follows_the_state() {
        let expected = [
            (S::New, RUN),
            (S::Queued, RUN),
            (S::Assigned, RUN),
            (S::InProgress, RUN),
            (S::PendingCustomer, PAUSE),
            (S::OnHold, HOLD),
            (S::Resolved, STOP),
            (S::Closed, END),
            (S::Merged, END),
            (S::Cancelled, END),
        ];
        for (state, clock) in expected {
            assert_eq!(state.resolution_clock(), clock, "{state}");
        }
    }

    #[test]
    fn only_assigned_and_in_progress_tickets_occupy_an_agent() {
        let busy: Vec<_> = TicketState::ALL
            .into_iter()
            .filter(|s| s.occupies_agent_capacity())
            .collect();
        assert_eq!(busy, [S::Assigned, S::InProgress]);
    }

    #[test]
    fn stored_names_round_trip_and_unknown_names_are_rejected() {
        for state in TicketState::ALL {
            assert_eq!(TicketState::from_db(state.as_str()), Some(state));
        }
        for reason in CancelReason::ALL {
            assert_eq!(CancelReason::from_db(reason.as_str()), Some(reason));
        }
        assert_eq!(S::PendingCustomer.as_str(), "pending_customer");
        assert_eq!(TicketState::from_db("IN_PROGRESS"), None);
        assert_eq!(CancelReason::from_db("junk"), None);
    }

    #[test]
    fn serde_names_match_the_stored_names() {
        for state in TicketState::ALL {
            let json = serde_json::to_string(&state).expect("serialises");
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        for reason in CancelReason::ALL {
            let json = serde_json::to_string(&reason).expect("serialises");
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
        }
    }

    #[test]
    fn step_names_are_snake_case() {
        let steps: Vec<_> = EFFECTS.iter().map(|row| row.3.as_str()).collect();
        for name in steps {
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
        assert_eq!(Step::ReturnToQueue.to_string(), "return_to_queue");
    }
}
