//! The gRPC adapters: proto → domain types → router → live state and records → proto.
//!
//! - [`RoutingApi`]: RoutingService (SyncTicket from the ticket service; statistics and
//!   explanations in [`insight`]).
//! - [`DesktopApi`]: AgentDesktopService (the OpenSession stream in [`session`], offers,
//!   presence).
//! - [`AgentApi`]: AgentService (durable records, with live status).

pub mod convert;
pub mod insight;
pub mod session;

use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use tierline_proto::routing as pb;
use tierline_proto::routing::agent_desktop_service_server::AgentDesktopService;
use tierline_proto::routing::agent_service_server::AgentService;
use tierline_proto::routing::routing_service_server::RoutingService;
use tierline_runtime::wire;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::agents::{agent_to_proto, parse_list_agents, parse_upsert};
use crate::error::Error;
use crate::live::model::{LiveAgent, ms_to_time, time_to_ms};
use crate::live::state::PresenceSet;
use crate::router::Router;
use convert::{
    offer_to_proto, offline_status, parse_agent_id, parse_initial_presence, parse_note,
    parse_presence, parse_reservation_id, parse_routing_ticket, presence_to_proto, status_to_proto,
};

type Reply<T> = Result<Response<T>, Status>;

/// RoutingService.
#[derive(Debug, Clone)]
pub struct RoutingApi {
    router: Router,
}

impl RoutingApi {
    /// The service over `router`.
    pub fn new(router: Router) -> RoutingApi {
        RoutingApi { router }
    }
}

type StatsStream = Pin<Box<dyn Stream<Item = Result<pb::QueueStatsSnapshot, Status>> + Send>>;

#[tonic::async_trait]
impl RoutingService for RoutingApi {
    async fn sync_ticket(
        &self,
        request: Request<pb::SyncTicketRequest>,
    ) -> Reply<pb::SyncTicketResponse> {
        let ticket = request
            .into_inner()
            .ticket
            .ok_or_else(|| Error::invalid("ticket", "required"))?;
        let sync = parse_routing_ticket(&ticket)?;
        let synced = self.router.sync_ticket(&sync).await?;
        let estimated_wait = match synced.position {
            Some(_) => insight::estimate_for(&self.router, &sync)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        Ok(Response::new(pb::SyncTicketResponse {
            applied: synced.applied,
            ticket_version: synced.version,
            queue_position: synced
                .position
                .map_or(0, |p| i32::try_from(p).unwrap_or(i32::MAX)),
            estimated_wait,
        }))
    }

    async fn estimate_wait(
        &self,
        request: Request<pb::EstimateWaitRequest>,
    ) -> Reply<pb::EstimateWaitResponse> {
        Ok(Response::new(
            insight::estimate_wait(&self.router, &request.into_inner()).await?,
        ))
    }

    async fn get_queue_stats(
        &self,
        request: Request<pb::GetQueueStatsRequest>,
    ) -> Reply<pb::QueueStatsSnapshot> {
        Ok(Response::new(
            insight::queue_stats(&self.router, &request.into_inner().departments).await?,
        ))
    }

    type WatchQueueStatsStream = StatsStream;

    async fn watch_queue_stats(
        &self,
        request: Request<pb::WatchQueueStatsRequest>,
    ) -> Reply<Self::WatchQueueStatsStream> {
        let stream = insight::watch_queue_stats(self.router.clone(), request.into_inner())?;
        Ok(Response::new(Box::pin(stream)))
    }

    async fn explain_ticket(
        &self,
        request: Request<pb::ExplainTicketRequest>,
    ) -> Reply<pb::TicketExplanation> {
        Ok(Response::new(
            insight::explain_ticket(&self.router, &request.into_inner().ticket_id).await?,
        ))
    }

    async fn explain_agent(
        &self,
        request: Request<pb::ExplainAgentRequest>,
    ) -> Reply<pb::AgentExplanation> {
        Ok(Response::new(
            insight::explain_agent(&self.router, &request.into_inner().agent_id).await?,
        ))
    }
}

/// AgentDesktopService.
#[derive(Debug, Clone)]
pub struct DesktopApi {
    router: Router,
}

impl DesktopApi {
    /// The service over `router`.
    pub fn new(router: Router) -> DesktopApi {
        DesktopApi { router }
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::OpenSessionResponse, Status>> + Send>>;

/// Longest session id a client may send back.
const MAX_SESSION_ID_LEN: usize = 64;

#[tonic::async_trait]
impl AgentDesktopService for DesktopApi {
    type OpenSessionStream = SessionStream;

    async fn open_session(
        &self,
        request: Request<pb::OpenSessionRequest>,
    ) -> Reply<Self::OpenSessionStream> {
        let req = request.into_inner();
        let agent_id = parse_agent_id("agent_id", &req.agent_id)?;
        let asked = wire::text(&req.session_id, MAX_SESSION_ID_LEN, false)
            .map_err(|e| Error::invalid("session_id", e))?;
        let initial = parse_initial_presence(req.initial_presence)?;
        self.router.check_built()?;
        let record = self.router.record(&agent_id).await?;
        if record.disabled {
            return Err(Error::precondition(
                "AGENT_DISABLED",
                format!("agents/{agent_id}"),
                format!("agent {agent_id} is disabled"),
            )
            .into());
        }
        let notices = self.router.notices_of(&agent_id);
        let now = self.router.now();
        let (resumed, session_id, withdraw) = self
            .router
            .live()
            .open_session(
                &agent_id,
                &crate::router::live_record(&record),
                (!asked.is_empty()).then_some(asked.as_str()),
                &uuid::Uuid::new_v4().to_string(),
                initial,
                now,
                now + self.router.settings().resume_grace,
            )
            .await
            .map_err(Error::from)?;
        if let Some(rid) = withdraw {
            self.router.withdraw(&rid, "presence_changed").await?;
        }
        // Boxed messages: the channel allocates its slots in blocks of 32 whatever its bound,
        // and a message inline is several hundred bytes, most of a session's memory.
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(session::run(
            self.router.clone(),
            record,
            session_id,
            resumed,
            tx,
            notices,
        ));
        Ok(Response::new(Box::pin(
            ReceiverStream::new(rx).map(|message: Box<_>| *message),
        )))
    }

    async fn accept_offer(
        &self,
        request: Request<pb::AcceptOfferRequest>,
    ) -> Reply<pb::Assignment> {
        let req = request.into_inner();
        let agent_id = parse_agent_id("agent_id", &req.agent_id)?;
        let rid = parse_reservation_id("reservation_id", &req.reservation_id)?;
        self.router.check_built()?;
        let accepted = self.router.accept(&agent_id, &rid).await?;
        let data = accepted.offer.data().ok().flatten();
        Ok(Response::new(pb::Assignment {
            reservation_id: rid,
            agent_id,
            ticket_id: accepted.offer.ticket.clone(),
            ticket_number: data.map(|d| d.number).unwrap_or_default(),
            channel: tierline_types::Channel::from_db(&accepted.offer.chan)
                .map_or(0, |c| c.to_wire() as i32),
            status: pb::AssignmentStatus::Active as i32,
            assign_time: Some(wire::timestamp(ms_to_time(accepted.assigned_ms))),
            ticket_version: accepted.ticket_version,
        }))
    }

    async fn decline_offer(&self, request: Request<pb::DeclineOfferRequest>) -> Reply<pb::Offer> {
        let req = request.into_inner();
        let agent_id = parse_agent_id("agent_id", &req.agent_id)?;
        let rid = parse_reservation_id("reservation_id", &req.reservation_id)?;
        parse_note("note", &req.note)?;
        if pb::DeclineReason::try_from(req.reason).is_err() {
            return Err(Error::invalid(
                "reason",
                format!("{} is not a decline reason", req.reason),
            )
            .into());
        }
        self.router.check_built()?;
        let offer = self.router.decline(&agent_id, &rid).await?;
        Ok(Response::new(offer_to_proto(&rid, &offer)))
    }

    async fn set_presence(
        &self,
        request: Request<pb::SetPresenceRequest>,
    ) -> Reply<pb::AgentPresence> {
        let req = request.into_inner();
        let agent_id = parse_agent_id("agent_id", &req.agent_id)?;
        let (state, reason) = parse_presence(req.state, req.away_reason)?;
        let note = parse_note("note", &req.note)?;
        self.router.check_built()?;
        let live = self.router.live();
        let mut result = live
            .set_presence(&agent_id, state, reason, &note, self.router.now())
            .await
            .map_err(Error::from)?;
        if result == PresenceSet::Missing {
            // Known to the records but not (yet) to the live state: mirror it, then retry.
            let record = self.router.record(&agent_id).await?;
            self.router.publish_record(&record).await?;
            result = live
                .set_presence(&agent_id, state, reason, &note, self.router.now())
                .await
                .map_err(Error::from)?;
        }
        let subject = format!("agents/{agent_id}");
        match result {
            PresenceSet::Set(agent, withdraw) => {
                if let Some(rid) = withdraw {
                    self.router.withdraw(&rid, "presence_changed").await?;
                }
                Ok(Response::new(presence_to_proto(&agent)))
            }
            PresenceSet::Missing => Err(Error::agent_not_found(&agent_id).into()),
            PresenceSet::NoSession => Err(Error::precondition(
                "NO_SESSION",
                subject,
                "AVAILABLE needs a connected desktop session (OpenSession)",
            )
            .into()),
            PresenceSet::Disabled => Err(Error::precondition(
                "AGENT_DISABLED",
                subject,
                format!("agent {agent_id} is disabled"),
            )
            .into()),
        }
    }
}

/// AgentService.
#[derive(Debug, Clone)]
pub struct AgentApi {
    router: Router,
}

impl AgentApi {
    /// The service over `router`.
    pub fn new(router: Router) -> AgentApi {
        AgentApi { router }
    }

    fn status(&self, live: Option<&LiveAgent>) -> pb::AgentStatus {
        live.map_or_else(offline_status, |a| {
            status_to_proto(a, time_to_ms(self.router.now()))
        })
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn upsert_agent(&self, request: Request<pb::UpsertAgentRequest>) -> Reply<pb::Agent> {
        let upsert = parse_upsert(&request.into_inner())?;
        let record = self.router.agents().upsert(&upsert).await?;
        // The record is durable now; the live copy follows (a desktop connecting reloads it
        // anyway, so a Redis hiccup here only delays the change).
        if let Err(e) = self.router.publish_record(&record).await {
            tracing::warn!(agent = %record.id, error = %tierline_runtime::error::DisplayChain(&e), "agent record not mirrored to the live state");
        }
        let live = self.router.live_agent(&record.id).await.ok().flatten();
        Ok(Response::new(agent_to_proto(
            &record,
            Some(self.status(live.as_ref())),
        )))
    }

    async fn get_agent(&self, request: Request<pb::GetAgentRequest>) -> Reply<pb::Agent> {
        let agent_id = parse_agent_id("agent_id", &request.into_inner().agent_id)?;
        let record = self.router.record(&agent_id).await?;
        let live = self.router.live_agent(&agent_id).await?;
        Ok(Response::new(agent_to_proto(
            &record,
            Some(self.status(live.as_ref())),
        )))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Reply<pb::ListAgentsResponse> {
        let req = request.into_inner();
        let query = parse_list_agents(&req)?;
        let (records, next_page_token) = self.router.agents().list_page(&query).await?;
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let live: std::collections::BTreeMap<String, LiveAgent> = self
            .router
            .live()
            .agents(&ids)
            .await
            .map_err(Error::from)?
            .into_iter()
            .collect();
        let wanted: Vec<i32> = req.presence_states.clone();
        let agents = records
            .iter()
            .map(|r| agent_to_proto(r, Some(self.status(live.get(&r.id)))))
            // The presence filter applies within the page (presence is live state, not
            // indexed with the records), so a filtered page may be short; follow the token.
            .filter(|a| {
                wanted.is_empty()
                    || a.status
                        .as_ref()
                        .and_then(|s| s.presence.as_ref())
                        .is_some_and(|p| wanted.contains(&p.state))
            })
            .collect();
        Ok(Response::new(pb::ListAgentsResponse {
            agents,
            next_page_token,
        }))
    }
}
