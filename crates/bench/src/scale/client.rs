//! Calls to the routing service as its real clients make them: SyncTicket as the ticket service
//! sends it (synthetic tickets: a valid RoutingTicket needs a UUID, a version, a department,
//! channel, tier, and enqueue and pickup due times for WAITING), UpsertAgent, and desktop
//! sessions whose events are forwarded to the scenario.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use tierline_proto::common::{Channel, Tier};
use tierline_proto::routing as rpb;
use tierline_proto::routing::agent_desktop_service_client::AgentDesktopServiceClient;
use tierline_proto::routing::agent_service_client::AgentServiceClient;
use tierline_proto::routing::open_session_response::Event as WireEvent;
use tierline_proto::routing::routing_service_client::RoutingServiceClient;
use tokio::sync::mpsc;
use tonic::codec::Streaming;
use tonic::transport::{Channel as GrpcChannel, Endpoint};

use crate::stats::Latency;

/// Tier targets of the default configuration (deploy/routing.toml): pickup due = enqueue +
/// target, which is what the ticket service sends.
const TARGETS: [(Tier, Duration); 3] = [
    (Tier::A, Duration::from_secs(15 * 60)),
    (Tier::B, Duration::from_secs(60 * 60)),
    (Tier::C, Duration::from_secs(4 * 60 * 60)),
];

/// `http://` in front of a bare host:port.
pub fn endpoint_url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// One HTTP/2 connection to `addr`.
pub async fn connect(addr: &str, timeout: Duration) -> Result<GrpcChannel> {
    let url = endpoint_url(addr);
    let endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("address {addr:?}"))?
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    tokio::time::timeout(timeout, endpoint.connect())
        .await
        .with_context(|| format!("{url} did not answer within {timeout:?}"))?
        .with_context(|| format!("cannot connect to {url}"))
}

/// Clients of the routing service over a few connections, so that many calls in flight are
/// not all multiplexed on one.
#[derive(Clone)]
pub struct Routing {
    channels: Vec<GrpcChannel>,
    next: Arc<AtomicU64>,
    /// Deadline of each call.
    pub timeout: Duration,
}

impl Routing {
    /// `connections` connections to `addr`; waits until the router has built its live state.
    pub async fn connect(addr: &str, connections: usize, timeout: Duration) -> Result<Routing> {
        let mut channels = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            channels.push(connect(addr, timeout).await?);
        }
        let routing = Routing {
            channels,
            next: Arc::new(AtomicU64::new(0)),
            timeout,
        };
        routing.wait_built(Duration::from_secs(120)).await?;
        Ok(routing)
    }

    fn channel(&self) -> GrpcChannel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize % self.channels.len();
        self.channels[i].clone()
    }

    /// RoutingService on the next connection.
    pub fn routing(&self) -> RoutingServiceClient<GrpcChannel> {
        RoutingServiceClient::new(self.channel())
    }

    /// AgentService on the next connection.
    pub fn agents(&self) -> AgentServiceClient<GrpcChannel> {
        AgentServiceClient::new(self.channel())
    }

    /// AgentDesktopService on the next connection.
    pub fn desktop(&self) -> AgentDesktopServiceClient<GrpcChannel> {
        AgentDesktopServiceClient::new(self.channel())
    }

    /// Waits until GetQueueStats answers (the router answers UNAVAILABLE while it rebuilds).
    pub async fn wait_built(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            match self
                .routing()
                .get_queue_stats(rpb::GetQueueStatsRequest::default())
                .await
            {
                Ok(_) => return Ok(()),
                Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => bail!("the routing service is not ready: {s}"),
            }
        }
    }

    /// SyncTicket, as the ticket service calls it.
    pub async fn sync(
        &self,
        ticket: rpb::RoutingTicket,
    ) -> Result<rpb::SyncTicketResponse, tonic::Status> {
        let request = request(
            rpb::SyncTicketRequest {
                ticket: Some(ticket),
            },
            "service:tierline-scale",
            self.timeout,
        );
        Ok(self.routing().sync_ticket(request).await?.into_inner())
    }

    /// The queue statistics of `department` (GetQueueStats).
    async fn queue_stats(&self, department: &str) -> Result<Vec<rpb::QueueStats>> {
        Ok(self
            .routing()
            .get_queue_stats(rpb::GetQueueStatsRequest {
                departments: vec![department.to_owned()],
            })
            .await
            .context("GetQueueStats")?
            .into_inner()
            .queues)
    }

    /// Waiting tickets of all tiers in `department` (GetQueueStats).
    pub async fn waiting(&self, department: &str) -> Result<u64> {
        Ok(self
            .queue_stats(department)
            .await?
            .iter()
            .filter_map(|q| q.total.as_ref())
            .map(|t| u64::try_from(t.waiting_count).unwrap_or(0))
            .sum())
    }

    /// Offers made in `department` within the router's counter window (GetQueueStats).
    pub async fn offers_counted(&self, department: &str) -> Result<u64> {
        Ok(self
            .queue_stats(department)
            .await?
            .iter()
            .filter_map(|q| q.offers.as_ref())
            .map(|o| u64::try_from(o.offered).unwrap_or(0))
            .sum())
    }
}

/// A request with the caller named in `tierline-actor` and a deadline.
pub fn request<T>(message: T, actor: &str, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    // Actors made here are ASCII, so this always parses.
    if let Ok(v) = actor.parse() {
        request.metadata_mut().insert("tierline-actor", v);
    }
    request
}

/// The tier of the `i`-th synthetic ticket: A 10 %, B 30 %, C 60 %, as the intake load.
pub fn tier_of(i: u64) -> Tier {
    match i % 10 {
        0 => Tier::A,
        1..=3 => Tier::B,
        _ => Tier::C,
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A new WAITING voice ticket of `tier`, enqueued `enqueued`, with the fields an offer shows
/// filled as the ticket service fills them (so each entry has a realistic size).
pub fn waiting_ticket(
    id: &str,
    i: u64,
    department: &str,
    tier: Tier,
    enqueued: SystemTime,
) -> rpb::RoutingTicket {
    let target = TARGETS
        .iter()
        .find(|(t, _)| *t == tier)
        .map_or(Duration::from_secs(3600), |(_, d)| *d);
    rpb::RoutingTicket {
        ticket_id: id.to_owned(),
        ticket_number: format!("T-{:04}-{:04}", (i / 10_000) % 10_000, i % 10_000),
        ticket_version: 1,
        state: rpb::TicketRoutingState::Waiting as i32,
        department: department.to_owned(),
        channel: Channel::Voice as i32,
        tier: tier as i32,
        customer_id: uuid::Uuid::new_v4().to_string(),
        customer_display_name: format!("Scale Customer {i}"),
        subject: "Billing and payments".into(),
        category: "billing".into(),
        priority: 222,
        enqueue_time: Some(timestamp(enqueued)),
        pickup_due_time: Some(timestamp(enqueued + target)),
        ..Default::default()
    }
}

/// The ticket at `version`, DONE (resolved, cancelled): it leaves routing.
pub fn done_ticket(id: &str, version: i64) -> rpb::RoutingTicket {
    rpb::RoutingTicket {
        ticket_id: id.to_owned(),
        ticket_number: "T-0000-0000".into(),
        ticket_version: version,
        state: rpb::TicketRoutingState::Done as i32,
        ..Default::default()
    }
}

/// What a fill did.
#[derive(Debug, Default)]
pub struct Filled {
    /// Tickets the router took.
    pub tickets: u64,
    /// Wall time.
    pub seconds: f64,
    /// Latency of each SyncTicket.
    pub latency: Latency,
    /// Failed calls, with the first message.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
}

/// Puts `count` new waiting tickets in `department` with `in_flight` SyncTicket calls at
/// once; prints progress every 5 s. Numbering starts at `first`.
pub async fn fill(
    routing: &Routing,
    department: &str,
    first: u64,
    count: u64,
    in_flight: usize,
) -> Filled {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(first));
    let done = Arc::new(AtomicU64::new(0));
    let end = first + count;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight.max(1) {
        let routing = routing.clone();
        let next = Arc::clone(&next);
        let done = Arc::clone(&done);
        let department = department.to_owned();
        tasks.spawn(async move {
            let mut out = Filled::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let id = uuid::Uuid::new_v4().to_string();
                let ticket = waiting_ticket(&id, i, &department, tier_of(i), SystemTime::now());
                let began = Instant::now();
                match routing.sync(ticket).await {
                    Ok(_) => {
                        out.latency.record(began.elapsed());
                        out.tickets += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(s) => {
                        out.errors += 1;
                        out.first_error
                            .get_or_insert_with(|| format!("{:?}: {}", s.code(), s.message()));
                    }
                }
            }
            out
        });
    }
    let progress = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.tick().await;
            let mut last = 0;
            loop {
                tick.tick().await;
                let now = done.load(Ordering::Relaxed);
                eprintln!(
                    "  fill: {now}/{count} tickets, {:.0}/s",
                    (now - last) as f64 / 5.0
                );
                last = now;
            }
        })
    };
    let mut total = Filled::default();
    while let Some(part) = tasks.join_next().await {
        match part {
            Ok(part) => {
                total.tickets += part.tickets;
                total.latency.merge(&part.latency);
                total.errors += part.errors;
                if total.first_error.is_none() {
                    total.first_error = part.first_error;
                }
            }
            Err(e) => {
                total.errors += 1;
                total.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    progress.abort();
    total.seconds = started.elapsed().as_secs_f64();
    total
}

/// Creates (or updates) agents serving `department` with one voice call at a time,
/// `in_flight` UpsertAgent calls at once.
pub async fn upsert_agents(
    routing: &Routing,
    ids: &[String],
    department: &str,
    in_flight: usize,
) -> Result<()> {
    let ids = Arc::new(ids.to_vec());
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight.max(1) {
        let routing = routing.clone();
        let ids = Arc::clone(&ids);
        let next = Arc::clone(&next);
        let department = department.to_owned();
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(id) = ids.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let agent = rpb::Agent {
                    id: id.clone(),
                    display_name: format!("Scale agent {i}"),
                    departments: vec![department.clone()],
                    capacities: vec![rpb::ChannelCapacity {
                        channel: Channel::Voice as i32,
                        max_active_tickets: 1,
                    }],
                    ..Default::default()
                };
                routing
                    .agents()
                    .upsert_agent(request(
                        rpb::UpsertAgentRequest {
                            agent: Some(agent),
                            update_mask: None,
                            expected_version: None,
                        },
                        "service:tierline-scale",
                        routing.timeout,
                    ))
                    .await
                    .with_context(|| format!("UpsertAgent {id}"))?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("an UpsertAgent task failed")??;
    }
    Ok(())
}

/// What a desktop's stream brought, forwarded to the scenario.
#[derive(Debug, Clone)]
pub struct Event {
    /// The desktop's index.
    pub desk: usize,
    /// When it arrived.
    pub at: Instant,
    /// What it was.
    pub kind: EventKind,
}

/// The events the scenarios look at.
#[derive(Debug, Clone)]
pub enum EventKind {
    /// A pending offer.
    Offer {
        /// The ticket.
        ticket_id: String,
        /// The reservation.
        reservation_id: String,
    },
    /// The agent's presence changed (AVAILABLE, AWAY, OFFLINE).
    Presence(i32),
    /// The stream ended or broke, with why.
    Ended(String),
}

/// An agent's open session.
pub struct Session {
    /// The stream, after SessionStarted.
    pub stream: Streaming<rpb::OpenSessionResponse>,
    /// The session id.
    pub session_id: String,
}

/// Opens the agent's session as AVAILABLE over `desktop`, and waits for SessionStarted.
pub async fn open_session(
    desktop: &mut AgentDesktopServiceClient<GrpcChannel>,
    agent: &str,
    timeout: Duration,
) -> Result<Session, tonic::Status> {
    let deadline = Instant::now() + timeout;
    loop {
        let req = request(
            rpb::OpenSessionRequest {
                agent_id: agent.to_owned(),
                session_id: String::new(),
                initial_presence: rpb::AgentPresenceState::Available as i32,
            },
            &format!("agent:{agent}"),
            timeout,
        );
        match desktop.open_session(req).await {
            Ok(reply) => {
                let mut stream = reply.into_inner();
                let first = tokio::time::timeout(timeout, stream.message())
                    .await
                    .map_err(|_| tonic::Status::deadline_exceeded("no SessionStarted"))??;
                return match first.and_then(|m| m.event) {
                    Some(WireEvent::SessionStarted(s)) => Ok(Session {
                        stream,
                        session_id: s.session_id,
                    }),
                    other => Err(tonic::Status::internal(format!(
                        "the first message is not SessionStarted: {other:?}"
                    ))),
                };
            }
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => return Err(s),
        }
    }
}

/// Reads `stream` until it ends, forwarding offers, presence changes and the end to `tx`.
pub fn forward(
    desk: usize,
    mut stream: Streaming<rpb::OpenSessionResponse>,
    tx: mpsc::UnboundedSender<Event>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let kind = match stream.message().await {
                Ok(Some(m)) => match m.event {
                    Some(WireEvent::Offer(o)) if o.status == rpb::OfferStatus::Pending as i32 => {
                        EventKind::Offer {
                            ticket_id: o.ticket_id,
                            reservation_id: o.reservation_id,
                        }
                    }
                    Some(WireEvent::Presence(p)) => EventKind::Presence(p.state),
                    Some(WireEvent::SessionClosed(c)) => {
                        EventKind::Ended(format!("SessionClosed reason {}", c.reason))
                    }
                    _ => continue,
                },
                Ok(None) => EventKind::Ended("the stream ended".into()),
                Err(s) => EventKind::Ended(format!("{:?}: {}", s.code(), s.message())),
            };
            let end = matches!(kind, EventKind::Ended(_));
            if tx
                .send(Event {
                    desk,
                    at: Instant::now(),
                    kind,
                })
                .is_err()
                || end
            {
                return;
            }
        }
    })
}

/// DeclineOffer by `agent`.
pub async fn decline(
    desktop: &mut AgentDesktopServiceClient<GrpcChannel>,
    agent: &str,
    reservation_id: &str,
    timeout: Duration,
) -> Result<(), tonic::Status> {
    desktop
        .decline_offer(request(
            rpb::DeclineOfferRequest {
                agent_id: agent.to_owned(),
                reservation_id: reservation_id.to_owned(),
                reason: rpb::DeclineReason::NotReady as i32,
                note: String::new(),
            },
            &format!("agent:{agent}"),
            timeout,
        ))
        .await?;
    Ok(())
}

/// SetPresence of `agent`.
pub async fn set_presence(
    desktop: &mut AgentDesktopServiceClient<GrpcChannel>,
    agent: &str,
    state: rpb::AgentPresenceState,
    timeout: Duration,
) -> Result<(), tonic::Status> {
    let away_reason = if state == rpb::AgentPresenceState::Away {
        rpb::AwayReason::Break as i32
    } else {
        0
    };
    desktop
        .set_presence(request(
            rpb::SetPresenceRequest {
                agent_id: agent.to_owned(),
                state: state as i32,
                away_reason,
                note: String::new(),
            },
            &format!("agent:{agent}"),
            timeout,
        ))
        .await?;
    Ok(())
}

/// A short id for this run, so agents of runs against the same router never collide.
pub fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_are_spread_ten_thirty_sixty() {
        let mut n = [0; 3];
        for i in 0..1000 {
            match tier_of(i) {
                Tier::A => n[0] += 1,
                Tier::B => n[1] += 1,
                _ => n[2] += 1,
            }
        }
        assert_eq!(n, [100, 300, 600]);
    }

    #[test]
    fn a_waiting_ticket_has_what_the_router_requires() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t = waiting_ticket(
            "9b2f0b5e-8d1f-4a37-9d7e-0e6f1c2a3b4c",
            12_345,
            "customer_service",
            Tier::B,
            t0,
        );
        assert_eq!(t.ticket_version, 1);
        assert_eq!(t.state, rpb::TicketRoutingState::Waiting as i32);
        assert_eq!(t.ticket_number, "T-0001-2345");
        let enq = t.enqueue_time.expect("enqueue");
        let due = t.pickup_due_time.expect("due");
        assert_eq!(due.seconds - enq.seconds, 3600, "tier B: one hour");
        let done = done_ticket("x", 2);
        assert_eq!(done.state, rpb::TicketRoutingState::Done as i32);
        assert_eq!(endpoint_url("127.0.0.1:1"), "http://127.0.0.1:1");
    }
}
