//! Background work, safe to run in every replica at once:
//! - reconciliation: tickets taken while the customer service was down get their customer;
//! - the timer: tickets due a change by themselves (an indexed range scan on `timer_at`) are
//!   escalated or marked at risk by the SLA clock (each outcome recorded once), raise
//!   FOLLOW_UP_DUE, or close when resolved and unanswered;
//! - the timeline relay: each ticket's intake and follow-up reach the customer's profile, at
//!   least once, through idempotency keys derived from the events;
//! - the routing relay: every ticket an event touched is handed to the routing service in its
//!   current state (`SyncTicket`), at least once and in order per ticket, woken by each new event;
//!   a NEW ticket the router has becomes QUEUED;
//! - pruning: event snapshots older than the retention period are cleared (history stays).
//!
//! Each ticket change takes the ticket's row lock, so replicas racing on one ticket serialise;
//! each relay holds its cursor row locked while it delivers, so one replica delivers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use tierline_proto::customer as pb;
use tierline_proto::routing_ticket::routing_ticket;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::convert::ticket_to_wire;
use crate::customers::Lookup;
use crate::domain::state::TicketState;
use crate::domain::ticket::{self, CustomerLink, EventKind, RecordedEvent, Ticket, TicketId};
use crate::error::{Error, Result};
use crate::routing::{Router, SyncError};
use crate::service::Tickets;
use crate::store::{Mutation, RelayCursor, TicketStore, TouchedTickets, sla_outcomes};

/// How many tickets or events one pass takes.
const BATCH: i64 = 200;

/// Starts the background loops; abort the handles to stop them.
pub fn spawn<S: TicketStore>(
    tickets: Tickets<S>,
    every: Duration,
    retention: Duration,
) -> Vec<JoinHandle<()>> {
    let reconcile = tickets.clone();
    let monitor = tickets.clone();
    let prune = tickets.clone();
    let relay = tickets;
    vec![
        tokio::spawn(repeat(
            "prune event snapshots",
            every.max(Duration::from_secs(60)),
            move || {
                let t = prune.clone();
                async move {
                    let cutoff = OffsetDateTime::now_utc()
                        - time::Duration::try_from(retention).unwrap_or(time::Duration::WEEK);
                    let pruned = t.store().prune_snapshots(cutoff, BATCH).await?;
                    Ok(pruned as usize)
                }
            },
        )),
        tokio::spawn(repeat("reconcile customers", every, move || {
            let t = reconcile.clone();
            async move { reconcile_customers(&t).await }
        })),
        tokio::spawn(repeat(
            "timers",
            every.min(Duration::from_secs(1)),
            move || {
                let t = monitor.clone();
                async move { run_timers(&t, OffsetDateTime::now_utc()).await }
            },
        )),
        tokio::spawn(repeat(
            "timeline relay",
            every.min(Duration::from_secs(1)),
            move || {
                let t = relay.clone();
                async move { relay_timeline(&t).await }
            },
        )),
    ]
}

async fn repeat<F, Fut>(name: &'static str, every: Duration, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // A full batch means more is waiting: go again at once.
        loop {
            match pass().await {
                Ok(n) if n as i64 >= BATCH => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(worker = name, %error, "background pass failed; retrying later");
                    break;
                }
            }
        }
    }
}

/// Resolves the customers of tickets accepted while the customer service was down. Returns how
/// many tickets it looked at.
pub async fn reconcile_customers<S: TicketStore>(tickets: &Tickets<S>) -> Result<usize> {
    let ids = tickets.store().pending_customers(BATCH).await?;
    let mut resolved = 0;
    for &id in &ids {
        let ticket = tickets.store().get(id).await?;
        let lookup = match (&ticket.customer, &ticket.caller) {
            (CustomerLink::Pending { id: Some(customer) }, _) => {
                tickets.customers().get(*customer).await
            }
            (CustomerLink::Pending { id: None }, Some(caller)) => {
                tickets.customers().resolve(caller).await
            }
            _ => continue,
        };
        let link = match lookup {
            Ok(Lookup::Found(link)) => link,
            Ok(Lookup::NotFound) => continue,
            // Still down: stop this pass, try again next time.
            Err(_) => break,
        };
        let rules = tickets.rules_arc();
        let at = OffsetDateTime::now_utc();
        tickets
            .store()
            .mutate(id, None, at, |t| {
                let events = ticket::resolve_customer(t, link, &rules, at)?;
                Ok(Mutation { events, value: () })
            })
            .await?;
        resolved += 1;
    }
    if resolved > 0 {
        tracing::info!(resolved, "customers of pending tickets resolved");
    }
    Ok(ids.len())
}

/// Runs the timers of tickets due by `now` (SLA, follow-up due, automatic close).
pub async fn run_timers<S: TicketStore>(
    tickets: &Tickets<S>,
    now: OffsetDateTime,
) -> Result<usize> {
    let ids = tickets.store().timers_due(now, BATCH).await?;
    for &id in &ids {
        let rules = tickets.rules_arc();
        let (t, changed) = tickets
            .store()
            .mutate(id, None, now, |t| {
                let events = ticket::on_timer(t, &rules, now)?;
                let changed = !events.is_empty();
                Ok(Mutation {
                    events,
                    value: changed,
                })
            })
            .await?;
        if !changed {
            // Nothing happened yet (a window the clock's pause moved, say): look again when
            // something can, or the ticket would be picked up on every pass.
            tickets
                .store()
                .reschedule_timer(
                    t.id,
                    t.version,
                    // Never in the past: a clock that keeps asking for now is looked at once a
                    // minute rather than in a busy loop.
                    ticket::next_timer(&t, now).map(|at| at.max(now + time::Duration::MINUTE)),
                )
                .await?;
        }
        // `t` is the ticket as this pass left it; a reschedule changes only its timer.
        tickets
            .store()
            .record_sla_outcomes(id, &sla_outcomes(&t))
            .await?;
    }
    Ok(ids.len())
}

const TIMELINE: &str = "customer_timeline";

/// Timeline calls one pass has in flight at once. One at a time, the relay fell behind intake
/// (about 300 entries a second against 600 tickets a second in a benchmark run) and its backlog
/// grew without end.
const TIMELINE_CONCURRENCY: usize = 8;

/// The events the customer timeline is written from.
fn concerns_timeline(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Created | EventKind::CustomerResolved | EventKind::FollowUpRecorded
    )
}

/// What became of one event for the timeline.
enum Delivery {
    /// Written, or nothing to write.
    Done,
    /// The customer service did not answer: the pass stops before this event.
    Unreachable,
}

/// Writes tickets' intake and follow-ups to the customers' timelines, from the event log.
pub async fn relay_timeline<S: TicketStore>(tickets: &Tickets<S>) -> Result<usize> {
    // One replica at a time delivers; the others skip this pass.
    let Some(claim) = tickets.store().claim_relay(TIMELINE).await? else {
        return Ok(0);
    };
    let cursor = claim.cursor();
    let events = tickets.store().events_after(cursor, BATCH).await?;
    // The tickets the page concerns, in one read rather than one per event.
    let ids: Vec<TicketId> = events
        .iter()
        .filter(|(e, _)| concerns_timeline(e.event.kind))
        .map(|(e, _)| e.ticket_id)
        .collect();
    let current = tickets.store().get_many(&ids).await?;
    // Several calls in flight, their outcomes taken in log order: the cursor moves past an
    // event only when it and everything before it were delivered. Entries are idempotent by
    // key, so a call that went through after one that failed is harmless when sent again.
    let calls: Vec<_> = events
        .iter()
        .map(|(event, _)| delivery(tickets, event, &current))
        .collect();
    let mut deliveries = futures::stream::iter(calls).buffered(TIMELINE_CONCURRENCY);
    let mut delivered = cursor;
    while let Some((sequence, outcome)) = deliveries.next().await {
        match outcome? {
            Delivery::Done => delivered = sequence,
            Delivery::Unreachable => break,
        }
    }
    drop(deliveries);
    claim.commit(delivered).await?;
    Ok(events.len())
}

/// [`deliver_to_timeline`] with the event's sequence.
async fn delivery<S: TicketStore>(
    tickets: &Tickets<S>,
    event: &RecordedEvent,
    current: &HashMap<TicketId, Ticket>,
) -> (i64, Result<Delivery>) {
    (
        event.sequence,
        deliver_to_timeline(tickets, event, current).await,
    )
}

/// Writes what `event` means for its customer's timeline, if anything.
async fn deliver_to_timeline<S: TicketStore>(
    tickets: &Tickets<S>,
    event: &RecordedEvent,
    current: &HashMap<TicketId, Ticket>,
) -> Result<Delivery> {
    let kind = event.event.kind;
    if !concerns_timeline(kind) {
        return Ok(Delivery::Done);
    }
    let t = current
        .get(&event.ticket_id)
        .ok_or_else(|| Error::ticket_not_found(event.ticket_id))?;
    let CustomerLink::Resolved { id: customer, .. } = &t.customer else {
        // Written when the customer is resolved (CUSTOMER_RESOLVED comes later).
        return Ok(Delivery::Done);
    };
    let customer = *customer;
    let sent = match kind {
        EventKind::Created | EventKind::CustomerResolved => {
            let interaction = pb::Interaction {
                channel: t.channel.to_wire() as i32,
                direction: pb::Direction::Inbound as i32,
                summary: format!("{} {}: {}", t.number, t.details.category, t.details.subject),
                ticket_id: t.id.to_string(),
                occur_time: Some(tierline_runtime::wire::timestamp(t.created_at)),
                ..Default::default()
            };
            // One interaction per ticket, whichever event delivers it.
            tickets
                .customers()
                .record_interaction(customer, interaction, format!("ticket-intake:{}", t.id))
                .await
        }
        _ => match &t.follow_up {
            Some(f) => {
                let record = pb::SatisfactionRecord {
                    ticket_id: t.id.to_string(),
                    agent_id: f.handling_agent_id.clone().unwrap_or_default(),
                    expected: f.expected,
                    perceived: f.perceived,
                    comment: f.comment.clone(),
                    ..Default::default()
                };
                tickets
                    .customers()
                    .record_satisfaction(customer, record, format!("ticket-follow-up:{}", t.id))
                    .await
            }
            None => Ok(()),
        },
    };
    if let Err(error) = sent {
        tracing::debug!(%error, "customer timeline not reachable; will retry");
        return Ok(Delivery::Unreachable);
    }
    if kind == EventKind::FollowUpRecorded {
        mark_on_profile(tickets, event.ticket_id).await?;
    }
    Ok(Delivery::Done)
}

async fn mark_on_profile<S: TicketStore>(tickets: &Tickets<S>, id: TicketId) -> Result<()> {
    let at = OffsetDateTime::now_utc();
    tickets
        .store()
        .mutate(id, None, at, |t| {
            let Some(f) = t.follow_up.as_mut().filter(|f| !f.on_profile) else {
                return Ok(Mutation {
                    events: vec![],
                    value: (),
                });
            };
            f.on_profile = true;
            ticket::touch(t, at);
            let mut event = ticket::NewEvent::on(
                t,
                EventKind::Updated,
                ticket::Actor::system(),
                "follow_up_on_profile",
            );
            event.changed_fields = vec!["follow_up.recorded_on_profile".into()];
            Ok(Mutation {
                events: vec![event],
                value: (),
            })
        })
        .await?;
    Ok(())
}

/// The routing relay's name in `relay_cursors`.
pub const ROUTING_RELAY: &str = "routing";

/// SyncTicket calls one pass has in flight at once. The relay's cursor transaction is open while
/// it calls, and event readers wait for it (see `PgStore::events_after`), so a pass is kept short;
/// each call that succeeds for a NEW ticket also takes a pool connection to queue it.
const SYNC_CONCURRENCY: usize = 8;

/// How long the routing relay waits after a wake-up before its pass, to take what is published
/// meanwhile in the same pass. New tickets do not wait for it (intake hands them over itself);
/// later changes reach the router this much later.
const RELAY_GATHER: Duration = Duration::from_millis(10);

/// Starts the routing relay; abort the handle to stop it. It runs a pass whenever `wake` says
/// new events may be readable (so a ticket reaches the router milliseconds after its change), and
/// on a tick every `every` (at most 1 s) for events that become readable without a notification.
/// After a pass the router did not answer (or the database failed), it waits for the tick rather
/// than the next event, so a router that is down is asked about once a tick, not once per event.
pub fn spawn_routing_relay<S: TicketStore>(
    tickets: Tickets<S>,
    router: Router,
    mut wake: watch::Receiver<u64>,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every.min(Duration::from_secs(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut back_off = false;
        let mut feed_open = true;
        // Why the router last failed, so a long outage is logged when it starts and ends, not
        // once a tick.
        let mut outage: Option<SyncError> = None;
        loop {
            if back_off || !feed_open {
                ticker.tick().await;
            } else {
                tokio::select! {
                    _ = ticker.tick() => {}
                    changed = wake.changed() => {
                        feed_open = changed.is_ok();
                        // Under load events are published every millisecond or two; gathering
                        // them for a moment makes one pass (a claim, a read and a cursor
                        // update) carry many tickets instead of one each.
                        tokio::time::sleep(RELAY_GATHER).await;
                    }
                }
            }
            loop {
                match relay_routing(&tickets, &router).await {
                    Ok(pass) => {
                        back_off = pass.stalled.is_some();
                        match (&outage, pass.stalled) {
                            (None, Some(error @ SyncError::Failed(_))) => {
                                tracing::error!(%error, "routing service answered unexpectedly; tickets wait for it");
                                outage = Some(error);
                            }
                            (None, Some(error)) => {
                                tracing::warn!(%error, "routing service not reachable; tickets wait for it");
                                outage = Some(error);
                            }
                            (Some(_), None) if pass.delivered > 0 => {
                                tracing::info!(
                                    "routing service reachable again; handing tickets over"
                                );
                                outage = None;
                            }
                            _ => {}
                        }
                        // A full batch means more is waiting: go again at once.
                        if !back_off && pass.events as i64 >= BATCH {
                            continue;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(worker = "routing relay", %error, "background pass failed; retrying later");
                        back_off = true;
                    }
                }
                break;
            }
        }
    })
}

/// What one pass of the routing relay did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoutingPass {
    /// Events read; a full batch means more are waiting.
    pub events: usize,
    /// Tickets the router accepted.
    pub delivered: usize,
    /// Why the pass stopped early, if it did: the router did not answer (or answered
    /// unexpectedly) and the rest of the batch waits for a later pass.
    pub stalled: Option<SyncError>,
}

/// What became of one ticket of a pass.
#[derive(Debug)]
enum Handover {
    /// The router has it (and a NEW ticket was queued).
    Delivered,
    /// The router refused it as malformed; sending it again cannot help.
    Refused,
    /// Not sent, because an earlier ticket was not delivered: it is sent again next pass.
    NotSent,
    /// The router did not take it: it is sent again next pass.
    Unreachable(SyncError),
    /// The router has it but it could not be marked queued: both are done again next pass.
    StoreFailed(Error),
}

impl Handover {
    /// True if the ticket needs no further sending for the events read.
    fn is_done(&self) -> bool {
        matches!(self, Handover::Delivered | Handover::Refused)
    }
}

/// Hands the tickets the next events touched to the router: each ticket once per batch, in the
/// order of its first event, in its current state (the call is level-triggered and versioned,
/// so the latest state stands for every event before it). A NEW ticket the router accepted
/// becomes QUEUED. The cursor moves past every event whose ticket was delivered; when the router
/// does not answer, it stops before the first event of the first ticket not delivered, and that
/// ticket and every one after it are sent again next pass: at least once, in order per ticket.
/// A ticket the router refuses as malformed is logged as an error and passed over (its next
/// change sends it again), so one bad ticket cannot hold up routing for all.
pub async fn relay_routing<S: TicketStore>(
    tickets: &Tickets<S>,
    router: &Router,
) -> Result<RoutingPass> {
    let store = tickets.store();
    // One replica at a time delivers; the others skip this pass.
    let Some(claim) = store.claim_relay(ROUTING_RELAY).await? else {
        return Ok(RoutingPass::default());
    };
    let batch = store.tickets_touched_after(claim.cursor(), BATCH).await?;
    if batch.tickets.is_empty() {
        claim.commit(batch.last_sequence).await?;
        return Ok(RoutingPass::default());
    }
    let now = OffsetDateTime::now_utc();
    // Set by the first ticket the router does not take, so calls not started yet are not made
    // (they would be sent again next pass anyway).
    let stop = AtomicBool::new(false);
    // Built up front: a lazily mapped iterator would make the future not provably Send.
    let calls: Vec<_> = batch
        .tickets
        .iter()
        .map(|(_, t)| hand_over(tickets, router, t, now, &stop))
        .collect();
    let outcomes: Vec<Handover> = futures::stream::iter(calls)
        .buffered(SYNC_CONCURRENCY)
        .collect()
        .await;
    let done: Vec<bool> = outcomes.iter().map(Handover::is_done).collect();
    claim.commit(cursor_after(&batch, &done)).await?;
    let delivered = outcomes
        .iter()
        .filter(|o| matches!(o, Handover::Delivered))
        .count();
    let mut stalled = None;
    for outcome in outcomes {
        match outcome {
            Handover::StoreFailed(error) => return Err(error),
            Handover::Unreachable(error) if stalled.is_none() => stalled = Some(error),
            _ => {}
        }
    }
    Ok(RoutingPass {
        events: batch.events,
        delivered,
        stalled,
    })
}

async fn hand_over<S: TicketStore>(
    tickets: &Tickets<S>,
    router: &Router,
    t: &Ticket,
    now: OffsetDateTime,
    stop: &AtomicBool,
) -> Handover {
    if stop.load(Ordering::Relaxed) {
        return Handover::NotSent;
    }
    if router.has_from_intake(t.id.0, t.version) {
        return Handover::Delivered;
    }
    // The wire ticket, then the one mapping the router also uses on its own.
    let sent = routing_ticket(&ticket_to_wire(t, &[], tickets.rules(), now));
    match router.sync(sent).await {
        Ok(_) => {}
        Err(error @ SyncError::Rejected(_)) => {
            tracing::error!(
                ticket_id = %t.id,
                version = t.version,
                state = %t.state,
                %error,
                "routing service refused a ticket as malformed; passed over until it changes \
                 (a bug in the ticket or in routing_ticket)"
            );
            return Handover::Refused;
        }
        Err(error) => {
            stop.store(true, Ordering::Relaxed);
            tracing::debug!(ticket_id = %t.id, %error, "ticket not handed to routing; will retry");
            return Handover::Unreachable(error);
        }
    }
    if t.state == TicketState::New {
        match tickets.enqueue(t.id).await {
            Ok(_) => {}
            // The router has the ticket; queueing it here is retried next pass (the repeated
            // call is harmless, the router answers applied = false).
            Err(error @ (Error::Unavailable(_) | Error::Database(_))) => {
                stop.store(true, Ordering::Relaxed);
                return Handover::StoreFailed(error);
            }
            // The ticket cannot move (say its SLA policy is no longer configured); trying again
            // would fail the same way and hold up every ticket after it.
            Err(error) => {
                tracing::error!(ticket_id = %t.id, %error, "routing service has the ticket but it cannot be marked queued");
            }
        }
    }
    Handover::Delivered
}

/// Where a relay's cursor may go after a pass over `batch`, given for each of its tickets (in
/// order) whether it needs no further sending (delivered, or refused for good; tickets without
/// an entry were not sent): past every event if all were, else to just before the first event of
/// the first ticket that was not, so it and every ticket after it are read again.
pub fn cursor_after(batch: &TouchedTickets, delivered: &[bool]) -> i64 {
    resume_after(
        batch.tickets.iter().map(|(first, _)| *first),
        batch.last_sequence,
        delivered,
    )
}

/// [`cursor_after`] on the tickets' first sequences.
fn resume_after(firsts: impl Iterator<Item = i64>, last: i64, delivered: &[bool]) -> i64 {
    firsts
        .zip(delivered.iter().copied().chain(std::iter::repeat(false)))
        .find(|(_, done)| !done)
        .map_or(last, |(first, _)| first - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_stops_before_the_first_ticket_not_delivered() {
        // Tickets first touched by events 11, 12 and 15 of a batch ending at 17.
        let firsts = [11, 12, 15];
        let at = |delivered: &[bool]| resume_after(firsts.into_iter(), 17, delivered);
        assert_eq!(at(&[true, true, true]), 17, "all delivered: past the batch");
        assert_eq!(
            at(&[true, false, true]),
            11,
            "the second and all after it again"
        );
        assert_eq!(at(&[false, true, true]), 10, "nothing passed");
        assert_eq!(at(&[true, true, false]), 14);
        assert_eq!(at(&[true]), 11, "tickets without an outcome were not sent");
        assert_eq!(
            resume_after(std::iter::empty(), 10, &[]),
            10,
            "an empty batch"
        );
    }
}
