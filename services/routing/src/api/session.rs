//! The desktop's OpenSession stream: one task per connected desktop.
//!
//! The task is level-triggered: on every change notice for its agent (and on every heartbeat,
//! in case a notice was lost) it reads the agent's live entry and sends what differs from what
//! it sent before: presence, the pending offer (or its cancellation), assignments. So a desktop
//! connected to this process sees offers made by any router on the same Redis.
//!
//! The task also keeps the session alive: it holds the session's lease, which the router
//! renews in batches while the stream is open (see `crate::leases`), and starts the resume
//! grace when the client goes away. If the live state was lost (Redis flushed) it registers
//! the agent again under the same session.

use std::collections::BTreeMap;
use std::time::Duration;

use tierline_proto::routing as pb;
use tierline_runtime::wire;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;

use super::convert::{assignment_to_proto, cancel_reason, offer_to_proto, presence_to_proto};
use crate::agents::AgentRecord;
use crate::live::model::{LiveAgent, time_to_ms};
use crate::router::{AgentNotices, Router, live_record};

/// What the stream has told the desktop so far.
#[derive(Debug, Default)]
struct Sent {
    presence: Option<(String, Option<String>, Option<String>)>,
    offer: Option<String>,
    /// Ticket id → (parked, version) of each assignment sent.
    assignments: BTreeMap<String, (bool, Option<String>)>,
}

type Tx = mpsc::Sender<Box<Result<pb::OpenSessionResponse, Status>>>;

/// Runs one session's stream until the client leaves, the session is replaced or signed out.
pub async fn run(
    router: Router,
    record: AgentRecord,
    session_id: String,
    resumed: bool,
    tx: Tx,
    mut notices: AgentNotices,
) {
    let settings = *router.settings();
    let agent_id = record.id.clone();
    let live = router.live();
    let status = match live.agent(&agent_id).await {
        Ok(Some(a)) => super::convert::status_to_proto(&a, time_to_ms(router.now())),
        _ => super::convert::offline_status(),
    };
    let started = pb::SessionStarted {
        session_id: session_id.clone(),
        resumed,
        resume_grace: Some(duration(settings.resume_grace)),
        heartbeat_interval: Some(duration(settings.heartbeat_interval)),
        agent: Some(crate::agents::agent_to_proto(&record, Some(status))),
    };
    let mut last_sent = Instant::now();
    if !send(
        &tx,
        pb::open_session_response::Event::SessionStarted(started),
        &router,
    )
    .await
    {
        return;
    }
    let mut sent = Sent::default();
    // The router renews the lease in its batches while this hold lives (see `crate::leases`);
    // it is dropped after the resume grace is started on the way out.
    let _lease = router.hold_lease(&agent_id, &session_id);
    // The first check at a random point of the period: desktops connect in bursts (a shift
    // starting, a router restarting), and checks that stay in step come in bursts too, which
    // 10,000 sessions turned into the tail of every other call's latency.
    let period = settings.heartbeat_interval / 2;
    let offset = period.mul_f64(fastrand::f64());
    let mut check = tokio::time::interval_at(Instant::now() + offset, period);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut presence_hint = "away";
    let mut stopping = router.stopping();
    loop {
        match refresh(
            &router,
            &record,
            &session_id,
            &tx,
            &mut sent,
            &mut presence_hint,
        )
        .await
        {
            Ok(Some(n)) => {
                if n > 0 {
                    last_sent = Instant::now();
                }
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(agent = %agent_id, error = %tierline_runtime::error::DisplayChain(&e), "session refresh failed");
            }
        }
        tokio::select! {
            () = stopped(&mut stopping) => {
                // The server is going away: end the stream so the desktop reconnects (to any
                // router) with its session id, within the grace period.
                let now = router.now();
                if let Err(e) = live
                    .touch_session(&agent_id, &session_id, false, now, now + settings.resume_grace)
                    .await
                {
                    tracing::warn!(agent = %agent_id, error = %e, "could not start the resume grace");
                }
                let _ = tx
                    .send(Box::new(Err(Status::unavailable(
                        "the router is shutting down; reconnect with your session_id",
                    ))))
                    .await;
                return;
            }
            _ = tx.closed() => {
                let now = router.now();
                if let Err(e) = live
                    .touch_session(&agent_id, &session_id, false, now, now + settings.resume_grace)
                    .await
                {
                    tracing::warn!(agent = %agent_id, error = %e, "could not start the resume grace");
                }
                return;
            }
            () = notices.changed() => {}
            _ = check.tick() => {
                if last_sent.elapsed() >= settings.heartbeat_interval {
                    if !send(&tx, pb::open_session_response::Event::Heartbeat(pb::Heartbeat {}), &router).await {
                        return;
                    }
                    last_sent = Instant::now();
                }
            }
        }
    }
}

/// Resolves once `stopping` is true; never if the router is dropped without stopping.
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stopping.borrow_and_update() {
            return;
        }
        if stopping.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Sends what changed; `None` when the stream must end.
async fn refresh(
    router: &Router,
    record: &AgentRecord,
    session_id: &str,
    tx: &Tx,
    sent: &mut Sent,
    presence_hint: &mut &'static str,
) -> crate::error::Result<Option<usize>> {
    use pb::open_session_response::Event;
    let live = router.live();
    let agent_id = &record.id;
    let agent = match live.agent(agent_id).await? {
        Some(a) if a.rec.is_some() => a,
        _ => {
            // The live state was lost (or never had this agent): register again, same session.
            let now = router.now();
            let current = router.record(agent_id).await?;
            live.open_session(
                agent_id,
                &live_record(&current),
                Some(session_id),
                session_id,
                presence_hint,
                now,
                now + router.settings().resume_grace,
            )
            .await?;
            match live.agent(agent_id).await? {
                Some(a) => a,
                None => return Ok(Some(0)),
            }
        }
    };
    if agent.rec.as_ref().is_some_and(|r| r.dis) {
        close(tx, pb::SessionCloseReason::AgentDisabled, router).await;
        return Ok(None);
    }
    if agent.sess.as_deref() != Some(session_id) {
        let reason = if agent.sess.is_none() {
            pb::SessionCloseReason::SignedOut
        } else {
            pb::SessionCloseReason::Replaced
        };
        close(tx, reason, router).await;
        return Ok(None);
    }
    *presence_hint = if agent.pres == "available" {
        "available"
    } else {
        "away"
    };
    let mut events: Vec<Event> = Vec::new();
    let presence = (agent.pres.clone(), agent.why.clone(), agent.note.clone());
    if sent.presence.as_ref() != Some(&presence) {
        events.push(Event::Presence(presence_to_proto(&agent)));
        sent.presence = Some(presence);
    }
    if agent.offer != sent.offer {
        if let Some(old) = sent.offer.take()
            && let Some(o) = live.offer(&old).await?
            && (o.st == "expired" || o.st == "cancelled")
        {
            events.push(Event::OfferCancelled(pb::OfferCancelled {
                reservation_id: old.clone(),
                ticket_id: o.ticket.clone(),
                reason: cancel_reason(&o) as i32,
            }));
        }
        if let Some(new) = &agent.offer
            && let Some(o) = live.offer(new).await?
        {
            events.push(Event::Offer(offer_to_proto(new, &o)));
        }
        sent.offer = agent.offer.clone();
    }
    assignment_events(router, agent_id, &agent, sent, &mut events).await?;
    let n = events.len();
    for event in events {
        if !send(tx, event, router).await {
            return Ok(None);
        }
    }
    Ok(Some(n))
}

async fn assignment_events(
    router: &Router,
    agent_id: &str,
    agent: &LiveAgent,
    sent: &mut Sent,
    events: &mut Vec<pb::open_session_response::Event>,
) -> crate::error::Result<()> {
    let current: BTreeMap<String, (bool, Option<String>)> = agent
        .tk
        .iter()
        .map(|(id, a)| (id.clone(), (a.p, a.v.clone())))
        .collect();
    let changed: Vec<String> = current
        .iter()
        .filter(|(id, state)| sent.assignments.get(*id) != Some(state))
        .map(|(id, _)| id.clone())
        .chain(
            sent.assignments
                .keys()
                .filter(|id| !current.contains_key(*id))
                .cloned(),
        )
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let tickets: BTreeMap<String, _> = router.live().tickets(&changed).await?.into_iter().collect();
    for id in &changed {
        events.push(pb::open_session_response::Event::Assignment(
            assignment_to_proto(agent_id, id, agent.tk.get(id), tickets.get(id)),
        ));
    }
    sent.assignments = current;
    Ok(())
}

async fn close(tx: &Tx, reason: pb::SessionCloseReason, router: &Router) {
    let _ = send(
        tx,
        pb::open_session_response::Event::SessionClosed(pb::SessionClosed {
            reason: reason as i32,
        }),
        router,
    )
    .await;
}

async fn send(tx: &Tx, event: pb::open_session_response::Event, router: &Router) -> bool {
    tx.send(Box::new(Ok(pb::OpenSessionResponse {
        event_time: Some(wire::timestamp(router.now())),
        event: Some(event),
    })))
    .await
    .is_ok()
}

fn duration(d: Duration) -> tierline_proto::prost_types::Duration {
    tierline_proto::prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
