//! Simulated agent desktops: each holds its agent's OpenSession stream open, AVAILABLE, and
//! answers every offer as `tierline agent desktop` would: decline (a share of them), or accept,
//! work the ticket for the handling time and resolve it (IN_PROGRESS, then RESOLVED).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tierline_proto::routing as rpb;
use tierline_proto::routing::agent_desktop_service_client::AgentDesktopServiceClient;
use tierline_proto::routing::open_session_response::Event;
use tierline_proto::ticket as tpb;
use tierline_proto::ticket::ticket_service_client::TicketServiceClient;
use tokio::sync::watch;
use tonic::codec::Streaming;
use tonic::transport::Channel as GrpcChannel;

use crate::stats::Stats;

/// What a desktop needs.
pub struct Desk {
    /// The agent.
    pub agent: String,
    /// AgentDesktopService.
    pub desktop: AgentDesktopServiceClient<GrpcChannel>,
    /// TicketService, to work and resolve tickets.
    pub tickets: TicketServiceClient<GrpcChannel>,
    /// Time between accepting and resolving.
    pub handle_time: Duration,
    /// Share of offers declined.
    pub decline_share: f64,
    /// Deadline of each call.
    pub timeout: Duration,
}

/// A desktop whose session is open.
pub struct SignedIn {
    desk: Desk,
    stream: Streaming<rpb::OpenSessionResponse>,
    session_id: String,
}

/// Opens the agent's session, AVAILABLE.
pub async fn sign_in(desk: Desk) -> Result<SignedIn, tonic::Status> {
    let (stream, session_id) = open(&desk, "").await?;
    Ok(SignedIn {
        desk,
        stream,
        session_id,
    })
}

/// Runs a signed-in desktop until `stop` changes, then signs the agent out.
pub async fn run(signed_in: SignedIn, stats: Arc<Stats>, mut stop: watch::Receiver<bool>) {
    let SignedIn {
        desk,
        stream,
        mut session_id,
    } = signed_in;
    let mut current = Some(stream);
    'session: loop {
        let mut stream = match current.take() {
            Some(stream) => stream,
            None => match open(&desk, &session_id).await {
                Ok((stream, id)) => {
                    session_id = id;
                    stream
                }
                Err(status) => {
                    stats.error("OpenSession", &status);
                    // Try again shortly, unless the run is over.
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(250)) => continue 'session,
                        _ = stop.changed() => break 'session,
                    }
                }
            },
        };
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                _ = stop.changed() => break 'session,
            };
            let event = match message {
                Ok(Some(m)) => m.event,
                Ok(None) => {
                    stats.error_code("OpenSession", "STREAM_ENDED", "the router ended the stream");
                    continue 'session;
                }
                Err(status) => {
                    stats.error("OpenSession (stream)", &status);
                    continue 'session;
                }
            };
            match event {
                Some(Event::Offer(offer)) if offer.status == rpb::OfferStatus::Pending as i32 => {
                    stats.offer_arrived(&offer.ticket_id);
                    if !answer(&desk, &stats, &offer, &mut stop).await {
                        break 'session;
                    }
                }
                Some(Event::Presence(p)) if p.state == rpb::AgentPresenceState::Away as i32 => {
                    // Only the router sets this agent away (missed offers): say so, and come
                    // back, as an agent told off by a supervisor would.
                    stats.error_code(
                        "OpenSession",
                        "AGENT_SET_AWAY",
                        &format!("{} set away (reason {})", desk.agent, p.away_reason),
                    );
                    set_presence(&desk, &stats, rpb::AgentPresenceState::Available).await;
                }
                Some(Event::SessionClosed(c)) => {
                    stats.error_code(
                        "OpenSession",
                        "SESSION_CLOSED",
                        &format!("closed by the router, reason {}", c.reason),
                    );
                    session_id.clear();
                    continue 'session;
                }
                _ => {}
            }
        }
    }
    // Sign out, so the router stops offering to a desktop that is gone.
    set_presence(&desk, &stats, rpb::AgentPresenceState::Offline).await;
}

async fn open(
    desk: &Desk,
    session_id: &str,
) -> Result<(Streaming<rpb::OpenSessionResponse>, String), tonic::Status> {
    let mut client = desk.desktop.clone();
    let deadline = Instant::now() + desk.timeout;
    loop {
        let request = rpb::OpenSessionRequest {
            agent_id: desk.agent.clone(),
            session_id: session_id.to_owned(),
            initial_presence: rpb::AgentPresenceState::Available as i32,
        };
        match client.open_session(request).await {
            Ok(reply) => {
                let mut stream = reply.into_inner();
                let first = tokio::time::timeout(desk.timeout, stream.message())
                    .await
                    .map_err(|_| tonic::Status::deadline_exceeded("no SessionStarted"))??;
                return match first.and_then(|m| m.event) {
                    Some(Event::SessionStarted(s)) => Ok((stream, s.session_id)),
                    other => Err(tonic::Status::internal(format!(
                        "the first message is not SessionStarted: {other:?}"
                    ))),
                };
            }
            // A router rebuilding its live state answers UNAVAILABLE for a moment.
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => return Err(s),
        }
    }
}

/// Declines or accepts and works one offer. False if the run ended meanwhile.
async fn answer(
    desk: &Desk,
    stats: &Stats,
    offer: &rpb::Offer,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut client = desk.desktop.clone();
    if fastrand::f64() < desk.decline_share {
        let request = with_actor(
            rpb::DeclineOfferRequest {
                agent_id: desk.agent.clone(),
                reservation_id: offer.reservation_id.clone(),
                reason: rpb::DeclineReason::NotReady as i32,
                note: String::new(),
            },
            &desk.agent,
            desk.timeout,
        );
        match client.decline_offer(request).await {
            Ok(_) => {
                stats.live.declined.fetch_add(1, Ordering::Relaxed);
                stats.in_window(Instant::now(), |m| m.declines += 1);
            }
            Err(s) => stats.error("DeclineOffer", &s),
        }
        return true;
    }
    let request = with_actor(
        rpb::AcceptOfferRequest {
            agent_id: desk.agent.clone(),
            reservation_id: offer.reservation_id.clone(),
        },
        &desk.agent,
        desk.timeout,
    );
    if let Err(s) = client.accept_offer(request).await {
        stats.error("AcceptOffer", &s);
        return true;
    }
    stats.live.accepted.fetch_add(1, Ordering::Relaxed);
    stats.in_window(Instant::now(), |m| m.assignments += 1);
    tokio::select! {
        () = tokio::time::sleep(desk.handle_time) => {}
        _ = stop.changed() => return false,
    }
    let mut tickets = desk.tickets.clone();
    for (target, summary) in [
        (tpb::TicketState::InProgress, ""),
        (tpb::TicketState::Resolved, "refunded the second charge"),
    ] {
        let request = with_actor(
            tpb::TransitionTicketRequest {
                ticket_id: offer.ticket_id.clone(),
                target_state: target as i32,
                resolution_summary: summary.into(),
                ..Default::default()
            },
            &desk.agent,
            desk.timeout,
        );
        if let Err(s) = tickets.transition_ticket(request).await {
            stats.error(
                match target {
                    tpb::TicketState::InProgress => "TransitionTicket (IN_PROGRESS)",
                    _ => "TransitionTicket (RESOLVED)",
                },
                &s,
            );
            return true;
        }
    }
    stats.live.resolved.fetch_add(1, Ordering::Relaxed);
    stats.in_window(Instant::now(), |m| m.resolved += 1);
    true
}

async fn set_presence(desk: &Desk, stats: &Stats, state: rpb::AgentPresenceState) {
    let mut client = desk.desktop.clone();
    let request = with_actor(
        rpb::SetPresenceRequest {
            agent_id: desk.agent.clone(),
            state: state as i32,
            away_reason: 0,
            note: String::new(),
        },
        &desk.agent,
        desk.timeout,
    );
    if let Err(s) = client.set_presence(request).await {
        stats.error("SetPresence", &s);
    }
}

/// A request by the agent (`tierline-actor: agent:<id>`), with the call deadline.
fn with_actor<T>(message: T, agent: &str, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    // Agent ids made by setup are ASCII, so this always parses; a value that did not would only
    // lose the actor name, not the call.
    if let Ok(v) = format!("agent:{agent}").parse() {
        request.metadata_mut().insert("tierline-actor", v);
    }
    request
}
