//! Simulated IVR callers: each call is a CreateTicket for a voice complaint, from a returning
//! customer's number or a new one, with the call's id as idempotency key; some calls are sent
//! again with the same key, as an IVR does after a timeout, and must come back as the same
//! ticket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tierline_proto::common::{Channel, IdentityKind, IdentityRef};
use tierline_proto::ticket as tpb;
use tierline_proto::ticket::ticket_service_client::TicketServiceClient;
use tokio::sync::{Mutex, mpsc};
use tonic::transport::Channel as GrpcChannel;

use crate::setup::phone;
use crate::stats::Stats;

/// What every caller shares.
pub struct Plan {
    /// Numbers of the customers created at setup.
    pub phones: Arc<Vec<String>>,
    /// Share of calls from those numbers.
    pub returning_share: f64,
    /// Share of calls sent twice with the same key.
    pub retry_share: f64,
    /// Category of the complaints.
    pub category: String,
    /// Deadline of each call.
    pub timeout: Duration,
}

/// A call that started late, when every caller was busy: its scheduled start.
type Scheduled = Instant;

/// Runs `callers` callers until `stop`: closed loop, or open loop at `rate` calls per second.
/// Returns, for the open loop, the calls scheduled before `stop` that no caller had started
/// by then (the backlog of a service that could not keep up).
pub async fn run(
    client: TicketServiceClient<GrpcChannel>,
    plan: Arc<Plan>,
    stats: Arc<Stats>,
    callers: usize,
    rate: Option<f64>,
    stop: Instant,
) -> u64 {
    let not_started = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    match rate {
        None => {
            for _ in 0..callers {
                let (client, plan, stats) = (client.clone(), Arc::clone(&plan), Arc::clone(&stats));
                tasks.spawn(async move {
                    while Instant::now() < stop {
                        let began = Instant::now();
                        call(client.clone(), &plan, &stats, began).await;
                    }
                });
            }
        }
        Some(rate) => {
            // A generous buffer: a backlog this deep means the service fell far behind, and
            // every queued call's wait is counted anyway.
            let (tx, rx) = mpsc::channel::<Scheduled>(100_000);
            let rx = Arc::new(Mutex::new(rx));
            tasks.spawn(schedule(tx, rate, stop));
            for _ in 0..callers {
                let (client, plan, stats) = (client.clone(), Arc::clone(&plan), Arc::clone(&stats));
                let rx = Arc::clone(&rx);
                let not_started = Arc::clone(&not_started);
                tasks.spawn(async move {
                    loop {
                        let next = rx.lock().await.recv().await;
                        let Some(scheduled) = next else { break };
                        let now = Instant::now();
                        if now >= stop {
                            // The run is over: what is left is counted, not called.
                            not_started.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if now.duration_since(scheduled) > Duration::from_millis(1) {
                            stats.in_window(now, |m| m.late_starts += 1);
                        }
                        // Latency from the scheduled start: waiting for a free caller is part
                        // of what a client would see (no coordinated omission).
                        call(client.clone(), &plan, &stats, scheduled).await;
                    }
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    not_started.load(Ordering::Relaxed)
}

/// Sends the scheduled start of each call at `rate` per second until `stop`.
async fn schedule(tx: mpsc::Sender<Scheduled>, rate: f64, stop: Instant) {
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= stop {
            return;
        }
        // Every call due by now, each with its own exact scheduled instant.
        let due = calls_due(now.duration_since(start), rate);
        while sent < due {
            let at = start + Duration::from_secs_f64(sent as f64 / rate);
            if tx.send(at).await.is_err() {
                return;
            }
            sent += 1;
        }
    }
}

/// Calls due `elapsed` after the start at `rate` per second (the first at once).
pub fn calls_due(elapsed: Duration, rate: f64) -> u64 {
    (elapsed.as_secs_f64() * rate).floor() as u64 + 1
}

/// The caller's number: a returning customer's, or a new one.
fn pick_phone(plan: &Plan) -> String {
    if !plan.phones.is_empty() && fastrand::f64() < plan.returning_share {
        plan.phones[fastrand::usize(..plan.phones.len())].clone()
    } else {
        phone(fastrand::u64(..), false)
    }
}

/// One call, timed from `began`, and possibly its retry.
async fn call(
    mut client: TicketServiceClient<GrpcChannel>,
    plan: &Plan,
    stats: &Stats,
    began: Instant,
) {
    let request = tpb::CreateTicketRequest {
        // Unique per call and per run: a call id.
        idempotency_key: format!("bench-{}", uuid::Uuid::new_v4()),
        customer: Some(tpb::create_ticket_request::Customer::CallerIdentity(
            IdentityRef {
                kind: IdentityKind::Phone as i32,
                value: pick_phone(plan),
                region_code: "GB".into(),
            },
        )),
        channel: Channel::Voice as i32,
        category: plan.category.clone(),
        description: "charged twice for one order; the refund promised has not arrived".into(),
        ..Default::default()
    };
    let reply = match create(&mut client, request.clone(), plan.timeout).await {
        Ok(r) => r,
        Err(status) => {
            stats.error("CreateTicket", &status);
            return;
        }
    };
    let done = Instant::now();
    let Some(ticket) = reply.ticket else {
        stats.error_code("CreateTicket", "NO_TICKET", "answered without a ticket");
        return;
    };
    if reply.replayed {
        // A fresh key must make a new ticket.
        stats.error_code(
            "CreateTicket",
            "REPLAYED_NEW_KEY",
            &format!("a new call id came back as existing ticket {}", ticket.id),
        );
        return;
    }
    stats.live.created.fetch_add(1, Ordering::Relaxed);
    stats.in_window(done, |m| m.intake.record(done.duration_since(began)));
    if let Some(created) = ticket
        .create_time
        .and_then(|t| SystemTime::try_from(t).ok())
    {
        stats.ticket_created(&ticket.id, created);
    }
    if fastrand::f64() < plan.retry_share {
        let again = Instant::now();
        match create(&mut client, request, plan.timeout).await {
            Ok(r) => {
                let done = Instant::now();
                let same = r.ticket.as_ref().map(|t| t.id.as_str()) == Some(ticket.id.as_str());
                if r.replayed && same {
                    stats.live.replayed.fetch_add(1, Ordering::Relaxed);
                    stats.in_window(done, |m| m.replay.record(done.duration_since(again)));
                } else {
                    stats.in_window(done, |m| m.replay_mismatches += 1);
                    stats.error_code(
                        "CreateTicket (retry)",
                        "NOT_REPLAYED",
                        &format!(
                            "the same call id came back as {:?} (replayed {}), not {}",
                            r.ticket.map(|t| t.id),
                            r.replayed,
                            ticket.id
                        ),
                    );
                }
            }
            Err(status) => stats.error("CreateTicket (retry)", &status),
        }
    }
}

async fn create(
    client: &mut TicketServiceClient<GrpcChannel>,
    request: tpb::CreateTicketRequest,
    timeout: Duration,
) -> Result<tpb::CreateTicketResponse, tonic::Status> {
    let mut request = tonic::Request::new(request);
    request.set_timeout(timeout);
    // The IVR speaks for the caller, as `tierline ivr call` does.
    request.metadata_mut().insert(
        "tierline-actor",
        tonic::metadata::MetadataValue::from_static("customer"),
    );
    match tokio::time::timeout(timeout, client.create_ticket(request)).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {timeout:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_loop_schedule_is_exact() {
        assert_eq!(calls_due(Duration::ZERO, 100.0), 1);
        assert_eq!(calls_due(Duration::from_millis(9), 100.0), 1);
        assert_eq!(calls_due(Duration::from_millis(10), 100.0), 2);
        assert_eq!(calls_due(Duration::from_secs(1), 100.0), 101);
        assert_eq!(calls_due(Duration::from_secs(2), 0.5), 2);
    }

    #[test]
    fn returning_callers_use_setup_numbers_and_new_ones_do_not() {
        let plan = |share| Plan {
            phones: Arc::new(vec!["+44 7400 000001".into()]),
            returning_share: share,
            retry_share: 0.0,
            category: "billing".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(pick_phone(&plan(1.0)), "+44 7400 000001");
        let new = pick_phone(&plan(0.0));
        assert!((b'6'..=b'9').contains(&new.as_bytes()[6]), "{new}");
    }
}
