//! Background work, safe to run in every replica at once:
//! - reconciliation: tickets taken while the customer service was down get their customer;
//! - the timer: tickets due a change by themselves (an indexed range scan on `timer_at`) are
//!   escalated or marked at risk by the SLA clock (each outcome recorded once), raise
//!   FOLLOW_UP_DUE, or close when resolved and unanswered;
//! - the timeline relay: each ticket's intake and follow-up reach the customer's profile, at
//!   least once, through idempotency keys derived from the events;
//! - pruning: event snapshots older than the retention period are cleared (history stays).
//!
//! Each ticket change takes the ticket's row lock, so replicas racing on one ticket serialise;
//! the timeline relay holds its cursor row locked while it delivers, so one replica delivers.

use std::time::Duration;

use sqlx::Row;
use tierline_proto::customer as pb;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::customers::Lookup;
use crate::domain::ticket::{self, CustomerLink, EventKind, TicketId};
use crate::error::Result;
use crate::service::Tickets;
use crate::store::Mutation;

/// How many tickets or events one pass takes.
const BATCH: i64 = 200;

/// Starts the background loops; abort the handles to stop them.
pub fn spawn(tickets: Tickets, every: Duration, retention: Duration) -> Vec<JoinHandle<()>> {
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
pub async fn reconcile_customers(tickets: &Tickets) -> Result<usize> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM tickets WHERE customer_resolution = 'pending' ORDER BY created_at LIMIT $1",
    )
    .bind(BATCH)
    .fetch_all(tickets.store().pool())
    .await?;
    let mut resolved = 0;
    for id in &ids {
        let ticket = tickets.store().get(TicketId(*id)).await?;
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
            .mutate(TicketId(*id), None, at, |t| {
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
pub async fn run_timers(tickets: &Tickets, now: OffsetDateTime) -> Result<usize> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM tickets WHERE timer_at <= $1 ORDER BY timer_at LIMIT $2",
    )
    .bind(now)
    .bind(BATCH)
    .fetch_all(tickets.store().pool())
    .await?;
    for id in &ids {
        let rules = tickets.rules_arc();
        let (t, changed) = tickets
            .store()
            .mutate(TicketId(*id), None, now, |t| {
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
        record_outcomes(tickets, TicketId(*id)).await?;
    }
    Ok(ids.len())
}

/// Records each finished SLA target's outcome once.
async fn record_outcomes(tickets: &Tickets, id: TicketId) -> Result<()> {
    let t = tickets.store().get(id).await?;
    let clock = &t.sla;
    let mut rows: Vec<(&str, &str, OffsetDateTime, Option<OffsetDateTime>)> = Vec::new();
    if clock.first_response_breached {
        rows.push((
            "first_response",
            "breached",
            clock.first_response_due,
            clock.first_response_at,
        ));
    } else if let Some(at) = clock.first_response_at {
        rows.push(("first_response", "met", clock.first_response_due, Some(at)));
    }
    if clock.resolution_breached {
        rows.push((
            "resolution",
            "breached",
            clock.resolution_due,
            clock.resolved_at,
        ));
    } else if let Some(at) = clock.resolved_at {
        rows.push(("resolution", "met", clock.resolution_due, Some(at)));
    }
    for (target, outcome, due, achieved) in rows {
        sqlx::query(
            "INSERT INTO ticket_sla_outcomes (ticket_id, target, outcome, due_at, achieved_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ticket_id, target) DO NOTHING",
        )
        .bind(id.0)
        .bind(target)
        .bind(outcome)
        .bind(due)
        .bind(achieved)
        .execute(tickets.store().pool())
        .await?;
    }
    Ok(())
}

const TIMELINE: &str = "customer_timeline";

/// Writes tickets' intake and follow-ups to the customers' timelines, from the event log.
pub async fn relay_timeline(tickets: &Tickets) -> Result<usize> {
    let pool = tickets.store().pool();
    sqlx::query("INSERT INTO relay_cursors (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(TIMELINE)
        .execute(pool)
        .await?;
    let mut tx = pool.begin().await?;
    // One replica at a time delivers; the others skip this pass.
    let Some(row) =
        sqlx::query("SELECT sequence FROM relay_cursors WHERE name = $1 FOR UPDATE SKIP LOCKED")
            .bind(TIMELINE)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(0);
    };
    let cursor: i64 = row.try_get("sequence")?;
    let events = tickets.store().events_after(cursor, BATCH).await?;
    let mut delivered = cursor;
    for (event, _) in &events {
        let kind = event.event.kind;
        if matches!(
            kind,
            EventKind::Created | EventKind::CustomerResolved | EventKind::FollowUpRecorded
        ) {
            let t = tickets.store().get(event.ticket_id).await?;
            let Some(customer) = (match &t.customer {
                CustomerLink::Resolved { id, .. } => Some(*id),
                CustomerLink::Pending { .. } => None,
            }) else {
                // Written when the customer is resolved (CUSTOMER_RESOLVED comes later).
                delivered = event.sequence;
                continue;
            };
            let sent = match kind {
                EventKind::Created | EventKind::CustomerResolved => {
                    let interaction = pb::Interaction {
                        channel: t.channel.to_wire() as i32,
                        direction: pb::Direction::Inbound as i32,
                        summary: format!(
                            "{} {}: {}",
                            t.number, t.details.category, t.details.subject
                        ),
                        ticket_id: t.id.to_string(),
                        occur_time: Some(tierline_runtime::wire::timestamp(t.created_at)),
                        ..Default::default()
                    };
                    // One interaction per ticket, whichever event delivers it.
                    tickets
                        .customers()
                        .record_interaction(
                            customer,
                            interaction,
                            format!("ticket-intake:{}", t.id),
                        )
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
                            .record_satisfaction(
                                customer,
                                record,
                                format!("ticket-follow-up:{}", t.id),
                            )
                            .await
                    }
                    None => Ok(()),
                },
            };
            if let Err(error) = sent {
                tracing::debug!(%error, "customer timeline not reachable; will retry");
                break;
            }
            if kind == EventKind::FollowUpRecorded {
                mark_on_profile(tickets, event.ticket_id).await?;
            }
        }
        delivered = event.sequence;
    }
    sqlx::query("UPDATE relay_cursors SET sequence = $2 WHERE name = $1")
        .bind(TIMELINE)
        .bind(delivered)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(events.len())
}

async fn mark_on_profile(tickets: &Tickets, id: TicketId) -> Result<()> {
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
