//! What the ticket service does, between the gRPC adapter and the store: intake with customer
//! resolution, state changes, comments, follow-up, and the background work that reconciles
//! customers, watches SLA clocks and writes the customer's timeline.

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::customers::{Customers, Lookup};
use crate::domain::state::{CommentAuthor, Move, TransitionRequest};
use crate::domain::ticket::{
    self, Actor, ActorKind, CallerIdentity, Comment, CustomerLink, EventKind, FollowUpInput,
    Intake, MoveContext, NewEvent, Rules, Ticket, TicketId, Visibility,
};
use crate::error::{Error, Result};
use crate::store::{Created, Mutation, PgStore};

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
pub struct Tickets {
    store: PgStore,
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

impl Tickets {
    /// The operations over a store, the rules and the customer service.
    pub fn new(store: PgStore, rules: Arc<Rules>, customers: Customers) -> Self {
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
    pub fn store(&self) -> &PgStore {
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
}
