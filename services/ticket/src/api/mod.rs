//! The gRPC adapter: wire request → domain types → service → wire response. No rules live here.

pub mod convert;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tierline_proto::routing::TicketRoutingState;
use tierline_proto::routing_ticket::routing_ticket;
use tierline_proto::ticket as pb;
use tierline_proto::ticket::ticket_service_server::TicketService;
use tierline_proto::tonic::{self, Request, Response, Status};
use tierline_runtime::Violations;
use tierline_runtime::wire;
use time::OffsetDateTime;
use tokio_stream::Stream;
use uuid::Uuid;

use crate::domain::state::TicketState;
use crate::domain::ticket::{Actor, ActorKind, Comment, FollowUpInput, Ticket, TicketId};
use crate::error::Error;
use crate::routing::{Router, SyncError};
use crate::service::{CustomerRef, Tickets, TransitionInput};
use crate::store::TicketStore;
use convert::{TicketKey, ticket_to_wire};

/// How often an idle event stream gets a heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(30);
/// How often a stream looks for events without being woken (see `store::feed`).
const POLL: Duration = Duration::from_millis(500);

/// The ticket service's gRPC handlers.
pub struct TicketApi<S> {
    tickets: Tickets<S>,
    router: Option<Router>,
}

impl<S: TicketStore> TicketApi<S> {
    /// Handlers over the service's operations.
    pub fn new(tickets: Tickets<S>) -> Self {
        TicketApi {
            tickets,
            router: None,
        }
    }

    /// The same handlers, with CreateTicket asking `router` for the new ticket's queue position
    /// and estimated wait.
    pub fn with_router(self, router: Router) -> Self {
        TicketApi {
            router: Some(router),
            ..self
        }
    }

    /// Hands a waiting ticket to the router at once, for the intake reply: its queue position
    /// and estimated wait. Never fails and waits at most the router's deadline: without an answer
    /// the reply goes without them, and the routing relay delivers the ticket anyway.
    /// Hands a waiting ticket to the router now; returns its queue position and wait, or
    /// `None` if the router did not take it (the relay will).
    async fn queue_estimate(
        &self,
        ticket: &pb::Ticket,
    ) -> Option<(i32, Option<prost_types::Duration>)> {
        let router = self.router.as_ref()?;
        let sent = routing_ticket(ticket);
        if sent.state != TicketRoutingState::Waiting as i32 {
            return None;
        }
        match router.sync(sent).await {
            Ok(reply) => Some((reply.queue_position.max(0), reply.estimated_wait)),
            Err(error @ SyncError::Rejected(_)) => {
                tracing::error!(ticket_id = %ticket.id, %error, "routing service refused a new ticket as malformed");
                None
            }
            Err(error) => {
                tracing::debug!(ticket_id = %ticket.id, %error, "no queue estimate for a new ticket");
                None
            }
        }
    }

    async fn wire(&self, t: &Ticket) -> Result<pb::Ticket, Error> {
        let links = self.tickets.store().links(t.id).await?;
        Ok(ticket_to_wire(
            t,
            &links,
            self.tickets.rules(),
            OffsetDateTime::now_utc(),
        ))
    }
}

/// The snapshot stored with each event: the ticket's wire form (links are not part of it).
pub fn snapshotter(rules: Arc<crate::domain::ticket::Rules>) -> crate::store::Snapshotter {
    Arc::new(move |t: &Ticket| {
        ticket_to_wire(t, &[], &rules, OffsetDateTime::now_utc()).encode_to_vec()
    })
}

/// Who is calling. Until authentication arrives (an interceptor in the runtime's guard slot),
/// callers say so in the `tierline-actor` metadata as `agent:<id>`, `customer:<id>`,
/// `service:<name>` or `system`; without it the caller is an unnamed integration.
fn actor<T>(request: &Request<T>) -> Actor {
    let raw = request
        .metadata()
        .get("tierline-actor")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("service:api");
    let (kind, id) = raw.split_once(':').unwrap_or((raw, ""));
    let kind = match kind {
        "agent" => ActorKind::Agent,
        "customer" => ActorKind::Customer,
        "system" => ActorKind::System,
        _ => ActorKind::Service,
    };
    Actor {
        kind,
        id: id.chars().take(128).collect(),
    }
}

fn invalid(v: Violations) -> Status {
    Error::InvalidArgument(v).into()
}

fn field(name: &str, raw: Result<impl Sized, String>) -> Result<(), Status> {
    raw.map(|_| ()).map_err(|e| Error::invalid(name, e).into())
}

type Reply<T> = Result<Response<T>, Status>;
type EventStream = Pin<Box<dyn Stream<Item = Result<pb::TicketEvent, Status>> + Send>>;

#[tonic::async_trait]
impl<S: TicketStore> TicketService for TicketApi<S> {
    async fn create_ticket(
        &self,
        request: Request<pb::CreateTicketRequest>,
    ) -> Reply<pb::CreateTicketResponse> {
        let who = actor(&request);
        let req = request.into_inner();
        let parsed = convert::parse_create(&req).map_err(invalid)?;
        let customer = match parsed.customer {
            convert::CustomerRef::Id(id) => CustomerRef::Id(id),
            convert::CustomerRef::Identity(c) => CustomerRef::Identity(c),
        };
        let follow_up = parsed.intake.follow_up_of.is_some();
        let created = self
            .tickets
            .create(parsed.intake, customer, convert::fingerprint(&req), who)
            .await?;
        // A ticket just created without a follow-up link has no links: the intake reply spends
        // no round trip looking for them.
        let ticket = if created.replayed || follow_up {
            self.wire(&created.ticket).await?
        } else {
            ticket_to_wire(
                &created.ticket,
                &[],
                self.tickets.rules(),
                OffsetDateTime::now_utc(),
            )
        };
        // The router ranks the ticket now rather than when the relay reaches it, so the IVR can
        // read the position back; an IVR's retry (a replay) asks again and hears the current one.
        let (queue_position, estimated_wait, ticket) = match self.queue_estimate(&ticket).await {
            // The router has it: record that now (NEW -> QUEUED), so the reply's state says
            // what the caller's position does. Should this fail, the relay queues it later.
            Some((position, wait)) if ticket.state == pb::TicketState::New as i32 => {
                let enqueued = self.tickets.enqueue_created(&created.ticket).await;
                if let (Ok(queued), Some(router)) = (&enqueued, &self.router)
                    && queued.state == TicketState::Queued
                    && queued.version == created.ticket.version + 1
                {
                    // Nothing changed it between the hand-over and the move.
                    router.note_queued_at_intake(queued.id.0, queued.version);
                }
                match enqueued {
                    Ok(queued) if follow_up => (position, wait, self.wire(&queued).await?),
                    Ok(queued) => (
                        position,
                        wait,
                        ticket_to_wire(
                            &queued,
                            &[],
                            self.tickets.rules(),
                            OffsetDateTime::now_utc(),
                        ),
                    ),
                    Err(error) => {
                        tracing::debug!(ticket_id = %ticket.id, %error, "new ticket not marked queued at intake; the relay will");
                        (position, wait, ticket)
                    }
                }
            }
            Some((position, wait)) => (position, wait, ticket),
            None => (0, None, ticket),
        };
        Ok(Response::new(pb::CreateTicketResponse {
            ticket: Some(ticket),
            replayed: created.replayed,
            estimated_wait,
            queue_position,
        }))
    }

    async fn get_ticket(&self, request: Request<pb::GetTicketRequest>) -> Reply<pb::Ticket> {
        let ticket = match convert::parse_get(request.get_ref()).map_err(invalid)? {
            TicketKey::Id(id) => self.tickets.store().get(id).await?,
            TicketKey::Number(number) => self.tickets.store().get_by_number(&number).await?,
        };
        Ok(Response::new(self.wire(&ticket).await?))
    }

    async fn list_tickets(
        &self,
        request: Request<pb::ListTicketsRequest>,
    ) -> Reply<pb::ListTicketsResponse> {
        let req = request.into_inner();
        let filter = convert::list_filter(&req).map_err(invalid)?;
        let after = wire::decode_time_id_cursor(&req.page_token)
            .map_err(|e| Status::from(Error::invalid("page_token", e)))?;
        let mut page = self.tickets.store().list(&filter, after).await?;
        let next = if page.len() > filter.page_size as usize {
            page.truncate(filter.page_size as usize);
            page.last()
                .map(|t| wire::encode_time_id_cursor(t.created_at, t.id.0))
        } else {
            None
        };
        let ids: Vec<TicketId> = page.iter().map(|t| t.id).collect();
        let links = self.tickets.store().links_of_many(&ids).await?;
        let now = OffsetDateTime::now_utc();
        Ok(Response::new(pb::ListTicketsResponse {
            tickets: page
                .iter()
                .map(|t| {
                    let l = links.get(&t.id).map_or(&[][..], Vec::as_slice);
                    ticket_to_wire(t, l, self.tickets.rules(), now)
                })
                .collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn update_ticket(&self, request: Request<pb::UpdateTicketRequest>) -> Reply<pb::Ticket> {
        let who = actor(&request);
        let (id, customer_id, patch, expected) =
            convert::parse_update(request.get_ref()).map_err(invalid)?;
        let ticket = self
            .tickets
            .update(id, customer_id, patch, expected, who)
            .await?;
        Ok(Response::new(self.wire(&ticket).await?))
    }

    async fn transition_ticket(
        &self,
        request: Request<pb::TransitionTicketRequest>,
    ) -> Reply<pb::Ticket> {
        let who = actor(&request);
        let p = convert::parse_transition(request.get_ref()).map_err(invalid)?;
        let input = TransitionInput {
            request: crate::domain::state::TransitionRequest {
                target_state: Some(p.target),
                hold_reason: p.hold_reason,
                cancel_reason: p.cancel_reason,
                resolution_summary_given: !p.resolution_summary.is_empty(),
            },
            resolution_summary: Some(p.resolution_summary.clone()).filter(|s| !s.is_empty()),
            note: p.note.clone(),
            expected_version: p.expected_version,
        };
        let ticket = self.tickets.transition(p.ticket_id, input, who).await?;
        Ok(Response::new(self.wire(&ticket).await?))
    }

    async fn assign_ticket(&self, request: Request<pb::AssignTicketRequest>) -> Reply<pb::Ticket> {
        let who = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.take("ticket_id", convert::ticket_id(&req.ticket_id));
        let agent = v.take("agent_id", wire::text(&req.agent_id, 128, true));
        let reservation = v.take("reservation_id", wire::uuid(&req.reservation_id));
        let expected = v.take(
            "expected_version",
            convert::expected_version(req.expected_version),
        );
        let (Some(id), Some(agent), Some(reservation), Some(expected)) =
            (id, agent, reservation, expected)
        else {
            return Err(invalid(v));
        };
        let ticket = self
            .tickets
            .assign(id, agent, reservation, expected, who)
            .await?;
        Ok(Response::new(self.wire(&ticket).await?))
    }

    async fn merge_tickets(
        &self,
        request: Request<pb::MergeTicketsRequest>,
    ) -> Reply<pb::MergeTicketsResponse> {
        let who = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let source = v.take("ticket_id", convert::ticket_id(&req.ticket_id));
        let survivor = v.take(
            "surviving_ticket_id",
            convert::ticket_id(&req.surviving_ticket_id),
        );
        let note = v.take("note", wire::text(&req.note, convert::MAX_NOTE_LEN, false));
        let e1 = v.take(
            "expected_version",
            convert::expected_version(req.expected_version),
        );
        let e2 = v.take(
            "surviving_expected_version",
            convert::expected_version(req.surviving_expected_version),
        );
        if source.is_some() && source == survivor {
            v.add("surviving_ticket_id", "must differ from ticket_id");
        }
        let (Some(source), Some(survivor), Some(note), Some(e1), Some(e2)) =
            (source, survivor, note, e1, e2)
        else {
            return Err(invalid(v));
        };
        if !v.is_empty() {
            return Err(invalid(v));
        }
        let (merged, kept) = self
            .tickets
            .merge(source, survivor, note, (e1, e2), who)
            .await?;
        Ok(Response::new(pb::MergeTicketsResponse {
            merged_ticket: Some(self.wire(&merged).await?),
            surviving_ticket: Some(self.wire(&kept).await?),
        }))
    }

    async fn link_tickets(&self, request: Request<pb::LinkTicketsRequest>) -> Reply<pb::Ticket> {
        use crate::domain::ticket::LinkKind;
        let who = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let a = v.take("ticket_id", convert::ticket_id(&req.ticket_id));
        let b = v.take(
            "linked_ticket_id",
            convert::ticket_id(&req.linked_ticket_id),
        );
        let kind = match convert::link_kind_from_wire(req.kind) {
            Ok(Some(k @ (LinkKind::Related | LinkKind::FollowUpOf | LinkKind::DuplicateOf))) => {
                Some(k)
            }
            Ok(Some(_)) => {
                v.add(
                    "kind",
                    "only RELATED, FOLLOW_UP_OF and DUPLICATE_OF can be set",
                );
                None
            }
            Ok(None) => {
                v.add("kind", "required");
                None
            }
            Err(e) => {
                v.add("kind", e);
                None
            }
        };
        let expected = v.take(
            "expected_version",
            convert::expected_version(req.expected_version),
        );
        if a.is_some() && a == b {
            v.add("linked_ticket_id", "must differ from ticket_id");
        }
        let (Some(a), Some(b), Some(kind), Some(expected)) = (a, b, kind, expected) else {
            return Err(invalid(v));
        };
        if !v.is_empty() {
            return Err(invalid(v));
        }
        let ticket = self.tickets.link(a, b, kind, expected, who).await?;
        Ok(Response::new(self.wire(&ticket).await?))
    }

    async fn unlink_tickets(
        &self,
        request: Request<pb::UnlinkTicketsRequest>,
    ) -> Reply<pb::Ticket> {
        let who = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let a = v.take("ticket_id", convert::ticket_id(&req.ticket_id));
        let b = v.take(
            "linked_ticket_id",
            convert::ticket_id(&req.linked_ticket_id),
        );
        let expected = v.take(
            "expected_version",
            convert::expected_version(req.expected_version),
        );
        let (Some(a), Some(b), Some(expected)) = (a, b, expected) else {
            return Err(invalid(v));
        };
        let ticket = self.tickets.unlink(a, b, expected, who).await?;
        Ok(Response::new(self.wire(&ticket).await?))
    }

    async fn add_comment(&self, request: Request<pb::AddCommentRequest>) -> Reply<pb::Comment> {
        let req = request.into_inner();
        let parsed = convert::parse_comment(&req).map_err(invalid)?;
        let fingerprint = convert::comment_fingerprint(&req);
        let ticket = self.tickets.store().get(parsed.ticket_id).await?;
        let comment = Comment {
            id: Uuid::now_v7(),
            ticket_id: parsed.ticket_id,
            visibility: parsed.visibility,
            author: parsed.author,
            body: parsed.body,
            channel: parsed.channel.unwrap_or(ticket.channel),
            first_response: false,
            created_at: OffsetDateTime::now_utc(),
        };
        let idempotency = parsed.idempotency_key.map(|k| (k, fingerprint));
        let added = self
            .tickets
            .comment(parsed.ticket_id, comment, idempotency)
            .await?;
        Ok(Response::new(convert::comment_to_wire(&added)))
    }

    async fn list_comments(
        &self,
        request: Request<pb::ListCommentsRequest>,
    ) -> Reply<pb::ListCommentsResponse> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.take("ticket_id", convert::ticket_id(&req.ticket_id));
        let size = v.take("page_size", page_size(req.page_size));
        let after = v.take("page_token", wire::decode_time_id_cursor(&req.page_token));
        let visibility = v.take("visibility", convert::visibility_from_wire(req.visibility));
        let (Some(id), Some(size), Some(after), Some(visibility)) = (id, size, after, visibility)
        else {
            return Err(invalid(v));
        };
        let mut page = self
            .tickets
            .store()
            .comments(id, visibility, after, i64::from(size) + 1)
            .await?;
        let next = if page.len() > size as usize {
            page.truncate(size as usize);
            page.last()
                .map(|c| wire::encode_time_id_cursor(c.created_at, c.id))
        } else {
            None
        };
        Ok(Response::new(pb::ListCommentsResponse {
            comments: page.iter().map(convert::comment_to_wire).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn list_ticket_history(
        &self,
        request: Request<pb::ListTicketHistoryRequest>,
    ) -> Reply<pb::ListTicketHistoryResponse> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.take("ticket_id", convert::ticket_id(&req.ticket_id));
        let size = v.take("page_size", page_size(req.page_size));
        let after = v.take("page_token", sequence_token(&req.page_token));
        let (Some(id), Some(size), Some(after)) = (id, size, after) else {
            return Err(invalid(v));
        };
        let mut events = self
            .tickets
            .store()
            .history(id, after, i64::from(size) + 1)
            .await?;
        let next = if events.len() > size as usize {
            events.truncate(size as usize);
            events
                .last()
                .map(|e| wire::encode_page_token(&e.sequence.to_be_bytes()))
        } else {
            None
        };
        Ok(Response::new(pb::ListTicketHistoryResponse {
            events: events
                .iter()
                .map(|e| convert::event_to_wire(e, None))
                .collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn record_follow_up(
        &self,
        request: Request<pb::RecordFollowUpRequest>,
    ) -> Reply<pb::Ticket> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.take("ticket_id", convert::ticket_id(&req.ticket_id));
        if !(req.expected.is_finite() && req.expected > 0.0 && req.expected <= 10.0) {
            v.add("expected", "must be above 0 and at most 10");
        }
        if !(req.perceived.is_finite() && (0.0..=10.0).contains(&req.perceived)) {
            v.add("perceived", "must be from 0 to 10");
        }
        let comment = v.take("comment", wire::text(&req.comment, 2000, false));
        let agent = v.take("agent_id", wire::text(&req.agent_id, 128, true));
        let expected = v.take(
            "expected_version",
            convert::expected_version(req.expected_version),
        );
        let (Some(id), Some(comment), Some(agent), Some(expected_version)) =
            (id, comment, agent, expected)
        else {
            return Err(invalid(v));
        };
        if !v.is_empty() {
            return Err(invalid(v));
        }
        let input = FollowUpInput {
            expected: req.expected,
            perceived: req.perceived,
            comment,
            agent_id: agent,
            close: req.close_ticket,
        };
        let ticket = self.tickets.follow_up(id, input, expected_version).await?;
        Ok(Response::new(self.wire(&ticket).await?))
    }

    type WatchTicketEventsStream = EventStream;

    async fn watch_ticket_events(
        &self,
        request: Request<pb::WatchTicketEventsRequest>,
    ) -> Reply<Self::WatchTicketEventsStream> {
        let req = request.into_inner();
        let filter = WatchFilter::parse(&req).map_err(invalid)?;
        let store = self.tickets.store().clone();
        let latest = store.latest_sequence().await?;
        let start = match req.after_sequence {
            None => latest,
            Some(n) if n < 0 => {
                return Err(Error::invalid("after_sequence", "must not be negative").into());
            }
            Some(n) if n > latest => {
                return Err(Error::OutOfRange(format!(
                    "after_sequence {n} is beyond the latest event {latest}"
                ))
                .into());
            }
            Some(0) => store
                .oldest_retained_sequence()
                .await?
                .map_or(latest, |s| s - 1),
            Some(n) => {
                let oldest = store
                    .oldest_retained_sequence()
                    .await?
                    .unwrap_or(latest + 1);
                if n + 1 < oldest && n < latest {
                    return Err(Error::OutOfRange(format!(
                        "after_sequence {n} is older than the oldest event kept ({oldest}); \
                         resynchronise with ListTickets and watch from now"
                    ))
                    .into());
                }
                n
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let mut wake = store.feed().subscribe();
        tokio::spawn(async move {
            let mut cursor = start;
            let mut last_sent = tokio::time::Instant::now();
            loop {
                let batch = match store.events_after(cursor, 500).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        let _ = tx.send(Err(Status::from(error))).await;
                        return;
                    }
                };
                let empty = batch.is_empty();
                for (event, snapshot) in batch {
                    cursor = event.sequence;
                    let ticket =
                        snapshot.and_then(|bytes| pb::Ticket::decode(bytes.as_slice()).ok());
                    if !filter.matches(&event, ticket.as_ref()) {
                        continue;
                    }
                    if tx
                        .send(Ok(convert::event_to_wire(&event, ticket)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    last_sent = tokio::time::Instant::now();
                }
                if !empty {
                    continue;
                }
                if last_sent.elapsed() >= HEARTBEAT {
                    if tx
                        .send(Ok(convert::heartbeat(cursor, OffsetDateTime::now_utc())))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    last_sent = tokio::time::Instant::now();
                }
                tokio::select! {
                    _ = wake.changed() => {}
                    () = tokio::time::sleep(POLL) => {}
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_sla_policies(
        &self,
        request: Request<pb::ListSlaPoliciesRequest>,
    ) -> Reply<pb::ListSlaPoliciesResponse> {
        let req = request.into_inner();
        let mut all: Vec<pb::SlaPolicy> = self
            .tickets
            .rules()
            .policies
            .iter()
            .map(|(tier, severity, p)| convert::sla_policy_to_wire(tier, severity, p))
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let (page, next) = config_page(all, req.page_size, &req.page_token, |p| p.id.clone())?;
        Ok(Response::new(pb::ListSlaPoliciesResponse {
            sla_policies: page,
            next_page_token: next,
        }))
    }

    async fn list_categories(
        &self,
        request: Request<pb::ListCategoriesRequest>,
    ) -> Reply<pb::ListCategoriesResponse> {
        let req = request.into_inner();
        let all: Vec<pb::Category> = self
            .tickets
            .rules()
            .catalog
            .categories(req.include_inactive)
            .into_iter()
            .map(convert::category_to_wire)
            .collect();
        let (page, next) = config_page(all, req.page_size, &req.page_token, |c| c.id.clone())?;
        Ok(Response::new(pb::ListCategoriesResponse {
            categories: page,
            next_page_token: next,
        }))
    }

    async fn list_root_causes(
        &self,
        request: Request<pb::ListRootCausesRequest>,
    ) -> Reply<pb::ListRootCausesResponse> {
        let req = request.into_inner();
        let all: Vec<pb::RootCause> = self
            .tickets
            .rules()
            .catalog
            .root_causes(req.include_inactive)
            .into_iter()
            .map(convert::root_cause_to_wire)
            .collect();
        let (page, next) = config_page(all, req.page_size, &req.page_token, |r| r.id.clone())?;
        Ok(Response::new(pb::ListRootCausesResponse {
            root_causes: page,
            next_page_token: next,
        }))
    }
}

fn page_size(raw: i32) -> Result<u32, String> {
    match raw {
        0 => Ok(100),
        1..=500 => Ok(raw as u32),
        _ => Err("must be from 1 to 500".into()),
    }
}

fn sequence_token(token: &str) -> Result<i64, String> {
    match wire::decode_page_token(token)? {
        None => Ok(0),
        Some(bytes) => bytes
            .try_into()
            .map(i64::from_be_bytes)
            .map_err(|_| "not a page token from this list".into()),
    }
}

/// A page of a configuration list, sorted by id; the token is the last id served.
fn config_page<T>(
    all: Vec<T>,
    raw_size: i32,
    token: &str,
    id: impl Fn(&T) -> String,
) -> Result<(Vec<T>, String), Status> {
    let size = page_size(raw_size).map_err(|e| Status::from(Error::invalid("page_size", e)))?;
    let after = wire::decode_page_token(token)
        .map_err(|e| Status::from(Error::invalid("page_token", e)))?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut rest: Vec<T> = all
        .into_iter()
        .filter(|item| after.as_ref().is_none_or(|a| id(item) > *a))
        .collect();
    let next = if rest.len() > size as usize {
        rest.truncate(size as usize);
        rest.last()
            .map(|l| wire::encode_page_token(id(l).as_bytes()))
    } else {
        None
    };
    Ok((rest, next.unwrap_or_default()))
}

/// WatchTicketEvents filters, matched against the ticket after the change.
struct WatchFilter {
    ticket_ids: Vec<String>,
    kinds: Vec<crate::domain::ticket::EventKind>,
    departments: Vec<String>,
    customer_id: String,
    assigned_agent_id: String,
}

impl WatchFilter {
    fn parse(req: &pb::WatchTicketEventsRequest) -> Result<WatchFilter, Violations> {
        let mut v = Violations::new();
        if req.ticket_ids.len() > 100 {
            v.add("ticket_ids", "at most 100");
        }
        for (i, id) in req.ticket_ids.iter().enumerate() {
            let _ = v.take(&format!("ticket_ids[{i}]"), convert::ticket_id(id));
        }
        let mut kinds = Vec::new();
        for (i, k) in req.kinds.iter().enumerate() {
            if *k == pb::TicketEventKind::Heartbeat as i32 {
                continue; // Heartbeats are always sent.
            }
            match convert::event_kind_from_wire(*k) {
                Ok(Some(kind)) => kinds.push(kind),
                Ok(None) => v.add(format!("kinds[{i}]"), "must not be unspecified"),
                Err(e) => v.add(format!("kinds[{i}]"), e),
            }
        }
        if !req.customer_id.is_empty() {
            let _ = v.take("customer_id", wire::uuid(&req.customer_id));
        }
        let _ = field(
            "assigned_agent_id",
            wire::text(&req.assigned_agent_id, 128, false),
        );
        v.finish(|| WatchFilter {
            ticket_ids: req.ticket_ids.iter().map(|s| s.to_lowercase()).collect(),
            kinds,
            departments: req.departments.clone(),
            customer_id: req.customer_id.to_lowercase(),
            assigned_agent_id: req.assigned_agent_id.clone(),
        })
    }

    fn matches(
        &self,
        event: &crate::domain::ticket::RecordedEvent,
        ticket: Option<&pb::Ticket>,
    ) -> bool {
        let id = event.ticket_id.to_string();
        (self.ticket_ids.is_empty() || self.ticket_ids.contains(&id))
            && (self.kinds.is_empty() || self.kinds.contains(&event.event.kind))
            && (self.departments.is_empty()
                || ticket.is_some_and(|t| self.departments.contains(&t.department)))
            && (self.customer_id.is_empty()
                || ticket.is_some_and(|t| t.customer_id == self.customer_id))
            && (self.assigned_agent_id.is_empty()
                || ticket.is_some_and(|t| t.assigned_agent_id == self.assigned_agent_id))
    }
}
