//! What the ticket service does, between the gRPC adapter and the store: intake with customer
//! resolution, state changes, comments, follow-up, and the background work that reconciles
//! customers, watches SLA clocks and writes the customer's timeline.

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::customers::{Customers, Lookup};
use crate::domain::patch::{DetailsPatch, check_updatable, update_event};
use crate::domain::state::{CommentAuthor, Move, TicketState, TransitionRequest};
use crate::domain::ticket::{
    self, Actor, ActorKind, CallerIdentity, Comment, CustomerLink, EventKind, FollowUpInput,
    Intake, LinkKind, MoveContext, NewEvent, Rules, Ticket, TicketId, Visibility,
};
use crate::error::{Error, Result};
use crate::store::{Created, Mutation, TicketStore};

/// Who a new ticket is for, as the request said.
#[derive(Debug, Clone)]
pub enum CustomerRef {
    /// By id.
    Id(Uuid),
    /// By an identity to resolve.
    Identity(CallerIdentity),
}

/// A state change asked for by TransitionTicket.
#[derive(Debug, Clone)]
pub struct TransitionInput {
    /// The state-machine request.
    pub request: TransitionRequest,
    /// New resolution summary, if given.
    pub resolution_summary: Option<String>,
    /// Note for people and history.
    pub note: String,
    /// The version the caller read.
    pub expected_version: Option<i64>,
}

/// The ticket service's operations.
#[derive(Clone)]
pub struct Tickets<S> {
    store: S,
    rules: Arc<Rules>,
    customers: Customers,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Names the ticket in a refusal built without it.
fn about(id: TicketId) -> impl Fn(Error) -> Error {
    move |err| match err {
        Error::FailedPrecondition {
            reason, message, ..
        } => Error::FailedPrecondition {
            reason,
            subject: format!("tickets/{id}"),
            message,
        },
        other => other,
    }
}

impl<S: TicketStore> Tickets<S> {
    /// The operations over a store, the rules and the customer service.
    pub fn new(store: S, rules: Arc<Rules>, customers: Customers) -> Self {
        Tickets {
            store,
            rules,
            customers,
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The rules in force, shared.
    pub fn rules_arc(&self) -> Arc<Rules> {
        self.rules.clone()
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The customer-service client.
    pub fn customers(&self) -> &Customers {
        &self.customers
    }

    /// Takes a complaint: resolves the customer (or marks them pending when the customer service
    /// cannot answer in time), opens the ticket and stores it exactly once per idempotency key.
    pub async fn create(
        &self,
        intake: Intake,
        customer: CustomerRef,
        fingerprint: Vec<u8>,
        actor: Actor,
    ) -> Result<Created> {
        let link = match &customer {
            CustomerRef::Id(id) => match self.customers.get(*id).await {
                Ok(Lookup::Found(link)) => link,
                Ok(Lookup::NotFound) => {
                    return Err(Error::NotFound {
                        what: "customer",
                        id: id.to_string(),
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "customer service unavailable at intake; resolving later");
                    CustomerLink::Pending { id: Some(*id) }
                }
            },
            CustomerRef::Identity(caller) => match self.customers.resolve(caller).await {
                Ok(Lookup::Found(link)) => link,
                Ok(Lookup::NotFound) => CustomerLink::Pending { id: None },
                Err(error) => {
                    tracing::warn!(%error, "customer service unavailable at intake; resolving later");
                    CustomerLink::Pending { id: None }
                }
            },
        };
        let follow_up_of = intake.follow_up_of;
        if let Some(of) = follow_up_of {
            self.store.get(of).await.map_err(|e| match e {
                Error::NotFound { .. } => Error::NotFound {
                    what: "ticket",
                    id: of.to_string(),
                },
                other => other,
            })?;
        }
        let ticket = ticket::open(intake, link, &self.rules, now())?;
        let created = self
            .store
            .create(ticket, &fingerprint, follow_up_of, actor)
            .await?;
        if !created.replayed {
            tracing::info!(ticket_id = %created.ticket.id, number = %created.ticket.number, "ticket created");
        }
        Ok(created)
    }

    /// Moves a ticket as TransitionTicket asks.
    pub async fn transition(
        &self,
        id: TicketId,
        input: TransitionInput,
        actor: Actor,
    ) -> Result<Ticket> {
        let rules = self.rules.clone();
        let at = now();
        let (ticket, ()) = self
            .store
            .mutate(id, None, at, |t| {
                let mv = input
                    .request
                    .to_move(!t.details.resolution_summary.is_empty())
                    .map_err(|e| Error::from(ticket::RuleError::from(e)))?;
                // A move to the state the ticket is in succeeds whatever the version, so retries
                // are safe; anything else must be made against the current version.
                let no_op = mv.target() == Some(t.state);
                if let Some(expected) = input.expected_version
                    && expected != t.version
                    && !no_op
                {
                    return Err(Error::StaleVersion {
                        id: id.to_string(),
                        expected,
                        actual: t.version,
                    });
                }
                let ctx = MoveContext {
                    note: input.note,
                    resolution_summary: input.resolution_summary,
                    ..Default::default()
                };
                let events = ticket::apply_move(t, mv, ctx, &actor, &rules, at)?;
                Ok(Mutation { events, value: () })
            })
            .await
            .map_err(about(id))?;
        Ok(ticket)
    }

    /// Records that the routing service has the ticket in its queue: NEW becomes QUEUED, with its
    /// history and event, as the routing service's change. A ticket that is no longer NEW (the
    /// router answered after an agent already took it, or a repeat) is left as it is.
    pub async fn enqueue(&self, id: TicketId) -> Result<Ticket> {
        let at = now();
        let (ticket, ()) = self
            .store
            .mutate(id, None, at, self.enqueue_move(at))
            .await
            .map_err(about(id))?;
        Ok(ticket)
    }

    /// [`Tickets::enqueue`] of a ticket just created, as `created` holds it: written without
    /// reading it again unless it changed meanwhile (intake's hot path).
    pub async fn enqueue_created(&self, created: &Ticket) -> Result<Ticket> {
        let at = now();
        match self
            .store
            .mutate_known(created.clone(), at, self.enqueue_move(at))
            .await
            .map_err(about(created.id))?
        {
            Some((ticket, ())) => Ok(ticket),
            None => self.enqueue(created.id).await,
        }
    }

    /// NEW to QUEUED at `at`; nothing for a ticket in any other state.
    fn enqueue_move(
        &self,
        at: OffsetDateTime,
    ) -> impl FnOnce(&mut Ticket) -> Result<Mutation<()>> + Send + use<S> {
        let rules = self.rules.clone();
        move |t| {
            if t.state != TicketState::New {
                return Ok(Mutation {
                    events: vec![],
                    value: (),
                });
            }
            let events = ticket::apply_move(
                t,
                Move::Enqueue,
                MoveContext::default(),
                &Actor::routing_service(),
                &rules,
                at,
            )?;
            Ok(Mutation { events, value: () })
        }
    }

    /// Records that an agent accepted the routing offer for the ticket. Repeating it with the
    /// same reservation and agent returns the ticket unchanged.
    pub async fn assign(
        &self,
        id: TicketId,
        agent_id: String,
        reservation_id: Uuid,
        expected_version: Option<i64>,
        actor: Actor,
    ) -> Result<Ticket> {
        let rules = self.rules.clone();
        let at = now();
        let (ticket, ()) = self
            .store
            .mutate(id, expected_version, at, |t| {
                if t.routing.reservation_id == Some(reservation_id)
                    && t.assigned_agent_id.as_deref() == Some(agent_id.as_str())
                {
                    return Ok(Mutation {
                        events: vec![],
                        value: (),
                    });
                }
                let ctx = MoveContext {
                    agent_id: Some(agent_id),
                    reservation_id: Some(reservation_id),
                    ..Default::default()
                };
                let events = ticket::apply_move(t, Move::Assign, ctx, &actor, &rules, at)?;
                Ok(Mutation { events, value: () })
            })
            .await
            .map_err(about(id))?;
        Ok(ticket)
    }

    /// Adds a comment and applies its effects: the first public agent reply is the first
    /// response, the assigned agent's comment starts an assigned ticket, a customer's reply
    /// resumes or reopens. A comment on a merged ticket goes to the survivor.
    pub async fn comment(
        &self,
        id: TicketId,
        mut comment: Comment,
        idempotency: Option<(String, Vec<u8>)>,
    ) -> Result<Comment> {
        let target = self.survivor_of(id).await?;
        comment.ticket_id = target;
        let rules = self.rules.clone();
        let at = now();
        comment.created_at = at;
        self.store
            .add_comment(comment, idempotency, at, |t, c| {
                let author = match c.author.kind {
                    ActorKind::Customer => CommentAuthor::Customer,
                    ActorKind::Agent
                        if t.assigned_agent_id.as_deref() == Some(c.author.id.as_str()) =>
                    {
                        CommentAuthor::AssignedAgent
                    }
                    _ => CommentAuthor::Other,
                };
                if c.author.kind == ActorKind::Customer && c.author.id.is_empty() {
                    c.author.id = t.customer.id().map(|u| u.to_string()).unwrap_or_default();
                }
                let state_before = t.state;
                let version_before = t.version;
                let mut events = ticket::apply_move(
                    t,
                    Move::Comment(author),
                    MoveContext::default(),
                    &c.author,
                    &rules,
                    at,
                )?;
                if c.visibility == Visibility::Public
                    && c.author.kind == ActorKind::Agent
                    && t.sla.first_response_at.is_none()
                {
                    let breached = t.sla.first_response(at);
                    c.first_response = true;
                    if events.is_empty() {
                        ticket::touch(t, at);
                    }
                    for target in breached {
                        let _ = target;
                        events.push(NewEvent::on(
                            t,
                            EventKind::SlaBreached,
                            Actor::system(),
                            "sla_first_response_breached",
                        ));
                    }
                    ticket::refresh_sla_status(t, at);
                }
                let mut added = NewEvent::on(
                    t,
                    EventKind::CommentAdded,
                    c.author.clone(),
                    c.visibility.as_str(),
                );
                added.from = state_before;
                added.to = state_before;
                added.comment_id = Some(c.id);
                if events.is_empty() {
                    // The comment changed nothing else: the event still records it, at the
                    // ticket's current version.
                    debug_assert_eq!(t.version, version_before);
                }
                events.insert(0, added);
                Ok(events)
            })
            .await
            .map_err(about(id))
    }

    async fn survivor_of(&self, id: TicketId) -> Result<TicketId> {
        let mut current = self.store.get(id).await?;
        for _ in 0..16 {
            match current.merged_into {
                Some(next) => current = self.store.get(next).await?,
                None => return Ok(current.id),
            }
        }
        Err(Error::Corrupt(format!(
            "merge chain of ticket {id} too long"
        )))
    }

    /// Records the follow-up; the customer's profile gets it from the event.
    pub async fn follow_up(
        &self,
        id: TicketId,
        input: FollowUpInput,
        expected_version: Option<i64>,
    ) -> Result<Ticket> {
        let rules = self.rules.clone();
        let at = now();
        let (ticket, ()) = self
            .store
            .mutate(id, expected_version, at, |t| {
                let events = ticket::record_follow_up(t, input, &rules, at)?;
                Ok(Mutation { events, value: () })
            })
            .await
            .map_err(about(id))?;
        Ok(ticket)
    }

    /// Changes descriptive fields (and, through the customer service, the customer).
    pub async fn update(
        &self,
        id: TicketId,
        customer_id: Option<Uuid>,
        patch: DetailsPatch,
        expected_version: Option<i64>,
        actor: Actor,
    ) -> Result<Ticket> {
        let link = match customer_id {
            None => None,
            Some(cid) => match self.customers.get(cid).await {
                Ok(Lookup::Found(link)) => Some(link),
                Ok(Lookup::NotFound) => {
                    return Err(Error::NotFound {
                        what: "customer",
                        id: cid.to_string(),
                    });
                }
                Err(e) => return Err(Error::DependencyUnavailable(e.to_string())),
            },
        };
        let rules = self.rules.clone();
        let at = now();
        let (ticket, ()) = self
            .store
            .mutate(id, None, at, |t| {
                let mut paths: Vec<&str> = patch.paths();
                if link.is_some() {
                    paths.push("customer_id");
                }
                check_updatable(t.state, &paths)?;
                if let Some(expected) = expected_version
                    && expected != t.version
                {
                    return Err(Error::StaleVersion {
                        id: id.to_string(),
                        expected,
                        actual: t.version,
                    });
                }
                let department_before = t.department.clone();
                let mut changed = patch.apply(t, &rules, at)?;
                if let Some(link) = link
                    && t.customer.id() != link.id()
                {
                    t.customer = link;
                    ticket::refresh_derived(t, &rules);
                    changed.insert(0, "customer_id".to_owned());
                }
                if changed.is_empty() {
                    return Ok(Mutation {
                        events: vec![],
                        value: (),
                    });
                }
                ticket::touch(t, at);
                let mut events = vec![update_event(t, actor.clone(), changed)];
                let held_by_agent = matches!(
                    t.state,
                    TicketState::Assigned
                        | TicketState::InProgress
                        | TicketState::PendingCustomer
                        | TicketState::OnHold
                );
                if t.department != department_before && held_by_agent {
                    // Another department owns it now: back to the queue, as one change.
                    t.version -= 1;
                    let ctx = MoveContext {
                        note: "department_changed".into(),
                        ..Default::default()
                    };
                    events.extend(ticket::apply_move(
                        t,
                        Move::Requeue,
                        ctx,
                        &actor,
                        &rules,
                        at,
                    )?);
                }
                Ok(Mutation { events, value: () })
            })
            .await
            .map_err(about(id))?;
        Ok(ticket)
    }

    /// Merges `source` into `survivor`.
    pub async fn merge(
        &self,
        source: TicketId,
        survivor: TicketId,
        note: String,
        versions: (Option<i64>, Option<i64>),
        actor: Actor,
    ) -> Result<(Ticket, Ticket)> {
        let rules = self.rules.clone();
        let at = now();
        let (merged, kept, ()) = self
            .store
            .mutate_pair(source, survivor, at, |s, v, writes| {
                check_version(s, versions.0)?;
                check_version(v, versions.1)?;
                if v.state.is_terminal() {
                    return Err(Error::FailedPrecondition {
                        reason: "SURVIVOR_FINISHED",
                        subject: format!("tickets/{}", v.id),
                        message: format!(
                            "ticket {} is {} and cannot absorb another",
                            v.number, v.state
                        ),
                    });
                }
                let ctx = MoveContext {
                    note: note.clone(),
                    ..Default::default()
                };
                let mut source_events = ticket::apply_move(s, Move::Merge, ctx, &actor, &rules, at)
                    .map_err(|e| about(s.id)(e.into()))?;
                s.merged_into = Some(v.id);
                for e in &mut source_events {
                    e.related_ticket_id = Some(v.id.0);
                }
                writes.links.push((LinkKind::MergedFrom, v.id, s.id));
                ticket::touch(v, at);
                let mut absorbed = NewEvent::on(v, EventKind::Merged, actor.clone(), "absorbed");
                absorbed.related_ticket_id = Some(s.id.0);
                Ok((source_events, vec![absorbed], ()))
            })
            .await?;
        Ok((merged, kept))
    }

    /// Links `a` to `b` as `kind` (and `b` to `a` as its inverse).
    pub async fn link(
        &self,
        a: TicketId,
        b: TicketId,
        kind: LinkKind,
        expected_version: Option<i64>,
        actor: Actor,
    ) -> Result<Ticket> {
        match self.store.link_between(a, b).await? {
            Some(existing) if existing == kind => return self.store.get(a).await,
            Some(existing) => {
                return Err(Error::FailedPrecondition {
                    reason: "ALREADY_LINKED",
                    subject: format!("tickets/{a}"),
                    message: format!("the tickets are already linked as {}", existing.as_str()),
                });
            }
            None => {}
        }
        let at = now();
        let (ticket, _, ()) = self
            .store
            .mutate_pair(a, b, at, |x, y, writes| {
                check_version(x, expected_version)?;
                writes.links.push((kind, x.id, y.id));
                Ok((
                    vec![linked(x, y.id, &actor, at, EventKind::Linked)],
                    vec![linked(y, x.id, &actor, at, EventKind::Linked)],
                    (),
                ))
            })
            .await?;
        Ok(ticket)
    }

    /// Removes the link between `a` and `b`.
    pub async fn unlink(
        &self,
        a: TicketId,
        b: TicketId,
        expected_version: Option<i64>,
        actor: Actor,
    ) -> Result<Ticket> {
        let forward = self.store.link_between(a, b).await?;
        let backward = self.store.link_between(b, a).await?;
        if forward.is_none() && backward.is_none() {
            return Err(Error::NotFound {
                what: "link",
                id: format!("{a} - {b}"),
            });
        }
        if forward == Some(LinkKind::MergedFrom) || backward == Some(LinkKind::MergedFrom) {
            return Err(Error::FailedPrecondition {
                reason: "MERGE_LINK",
                subject: format!("tickets/{a}"),
                message: "the link records a merge and cannot be removed".into(),
            });
        }
        let at = now();
        let (ticket, _, ()) = self
            .store
            .mutate_pair(a, b, at, |x, y, writes| {
                check_version(x, expected_version)?;
                writes.unlinks.push((x.id, y.id));
                Ok((
                    vec![linked(x, y.id, &actor, at, EventKind::Unlinked)],
                    vec![linked(y, x.id, &actor, at, EventKind::Unlinked)],
                    (),
                ))
            })
            .await?;
        Ok(ticket)
    }
}

fn check_version(t: &Ticket, expected: Option<i64>) -> Result<()> {
    match expected {
        Some(v) if v != t.version => Err(Error::StaleVersion {
            id: t.id.to_string(),
            expected: v,
            actual: t.version,
        }),
        _ => Ok(()),
    }
}

fn linked(
    t: &mut Ticket,
    other: TicketId,
    actor: &Actor,
    at: OffsetDateTime,
    kind: EventKind,
) -> NewEvent {
    ticket::touch(t, at);
    let mut event = NewEvent::on(t, kind, actor.clone(), kind.as_str());
    event.related_ticket_id = Some(other.0);
    event
}
