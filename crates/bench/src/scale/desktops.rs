//! `desktops`: many agent desktops connected to one routing process.
//!
//! 1. UpsertAgent `--desktops` agents (voice, one at a time) with `--upsert-in-flight` calls
//!    at once. The routing process's resident memory (VmRSS) and Redis are read.
//! 2. Open every agent's OpenSession stream as AVAILABLE, `--per-connection` streams per
//!    HTTP/2 connection (as desktops on many machines would be), `--open-in-flight` at once;
//!    each stream is then read to its end by a task of its own. The time to connect them all
//!    is taken; after `--settle` the memory is read again: memory per connection.
//! 3. With all connected, `--tickets` waiting tickets are synced one at a time: the time from
//!    sending SyncTicket to the offer reaching a desktop's stream (enqueue to offer). Each
//!    ticket is then synced DONE, which withdraws the offer and frees the agent, so the next
//!    ticket meets the same state.
//! 4. Then `--rate` waiting tickets a second for `--rate-for` (open loop: each is sent at its
//!    scheduled time whatever the earlier ones are doing), each synced DONE as soon as its offer
//!    arrives, so there is always a free agent: enqueue to offer at that rate, against issue 6's
//!    p99 under 5 ms at 1,000 new tickets a second.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use tokio::sync::{Mutex, mpsc};

use super::client::{self, EventKind, Routing};
use super::probe::{self, RedisProbe};
use super::report::{Figure, Goal, Report, latency_figures};
use super::{Common, positive_usize};
use crate::cpu;
use crate::stats::Latency;

/// Options of `desktops`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Agent desktops to connect.
    #[arg(long, default_value = "10000", value_parser = positive_usize)]
    pub desktops: usize,
    /// Desktop streams per HTTP/2 connection.
    #[arg(long, default_value = "100", value_parser = positive_usize)]
    pub per_connection: usize,
    /// UpsertAgent calls in flight.
    #[arg(long, default_value = "32", value_parser = positive_usize)]
    pub upsert_in_flight: usize,
    /// OpenSession calls in flight.
    #[arg(long, default_value = "64", value_parser = positive_usize)]
    pub open_in_flight: usize,
    /// Time to let the router settle after the last stream opened, before memory is read.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Tickets synced one at a time with every desktop connected, for enqueue-to-offer.
    #[arg(long, default_value = "200", value_parser = positive_usize)]
    pub tickets: usize,
    /// New waiting tickets a second in the open-loop probe (0 leaves it out).
    #[arg(long, default_value = "1000")]
    pub rate: u32,
    /// How long the open-loop probe sends.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub rate_for: Duration,
}

/// Runs the scenario.
pub async fn run(common: &Common, args: &Args) -> Result<Report> {
    let mut report = Report::new("desktops");
    let dept = &common.department;
    let run = client::run_id();
    let pid = probe::routing_pid(common.routing_pid)?;
    let redis = RedisProbe::connect(&common.redis_url, &common.redis_prefix).await?;
    let routing = Routing::connect(&common.routing_addr, 4, common.timeout).await?;
    let rss_start = probe::rss_bytes(pid)?;

    let agents: Vec<String> = (0..args.desktops)
        .map(|i| format!("scale-{run}-desk-{i:05}"))
        .collect();
    eprintln!("desktops: UpsertAgent x {}", agents.len());
    let began = Instant::now();
    client::upsert_agents(&routing, &agents, dept, args.upsert_in_flight).await?;
    let upsert_seconds = began.elapsed().as_secs_f64();

    // Let allocations from the upserts settle before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = probe::rss_bytes(pid)?;
    let used_before = redis.used_memory().await?;
    let keys_before = redis.key_memory().await?;

    let connections = args.desktops.div_ceil(args.per_connection);
    eprintln!(
        "desktops: opening {} sessions over {connections} connections",
        agents.len()
    );
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(client::connect(&common.routing_addr, common.timeout).await?);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let began = Instant::now();
    let readers = open_all(&agents, &channels, args, tx, common.timeout).await?;
    let connect_seconds = began.elapsed().as_secs_f64();
    eprintln!(
        "desktops: {} sessions open in {connect_seconds:.1} s",
        readers.len()
    );
    tokio::time::sleep(args.settle).await;
    let rss_after = probe::rss_bytes(pid)?;
    let used_after = redis.used_memory().await?;
    let keys_after = redis.key_memory().await?;
    // Offers made while connecting (none: the queue is empty) or stream ends so far.
    let mut early_ends = 0u64;
    let mut first_end: Option<String> = None;
    while let Ok(event) = rx.try_recv() {
        if let EventKind::Ended(why) = event.kind {
            early_ends += 1;
            first_end.get_or_insert(why);
        }
    }

    eprintln!(
        "desktops: {} tickets, one at a time, with every desktop connected",
        args.tickets
    );
    let cpu_before = cpu::snapshot();
    let probe_began = Instant::now();
    let probed = offers(&routing, dept, args.tickets, &mut rx).await?;
    let probe_seconds = probe_began.elapsed().as_secs_f64();
    let rss_end = probe::rss_bytes(pid)?;
    let at_rate = if args.rate > 0 {
        eprintln!(
            "desktops: {} tickets a second for {:?}, open loop",
            args.rate, args.rate_for
        );
        Some(offers_at_rate(&routing, dept, args.rate, args.rate_for, &mut rx).await?)
    } else {
        None
    };
    // CPU over both probes (the open-loop one is most of it).
    let cpu_seconds = probe_began.elapsed().as_secs_f64();
    let cpu_after = cpu::snapshot();
    report.cpu = cpu::usage(&cpu_before, &cpu_after, cpu_seconds, report.machine.cpus);
    report.cpu_seconds = cpu_seconds;
    let ends = early_ends + probed.ends + at_rate.as_ref().map_or(0, |r| r.ends);

    let n = args.desktops as f64;
    let agent_keys = ["agents", "ready", "staff", "leases"];
    let redis_per_agent_keys = probe::bytes_of(&keys_after, &agent_keys) as f64 / n;
    let redis_per_agent_used = used_after.saturating_sub(used_before) as f64 / n;
    let per_connection = rss_after.saturating_sub(rss_before) as f64 / n;
    let f = &mut report.figures;
    f.push(
        Figure::plain("desktops connected", readers.len() as f64, "")
            .target(Goal::AtLeast, args.desktops as f64),
    );
    f.push(Figure::plain(
        "time to connect them all",
        connect_seconds,
        "s",
    ));
    f.push(Figure::plain(
        "routing RSS before the sessions",
        rss_before as f64 / 1_048_576.0,
        "MiB",
    ));
    f.push(Figure::plain(
        "routing RSS with all connected",
        rss_after as f64 / 1_048_576.0,
        "MiB",
    ));
    f.push(Figure::plain(
        "routing memory per connection (RSS delta / desktops)",
        per_connection,
        "bytes",
    ));
    f.push(Figure::plain(
        "Redis bytes per agent (MEMORY USAGE of agent keys)",
        redis_per_agent_keys,
        "bytes",
    ));
    f.push(Figure::plain(
        "Redis bytes per connected agent (used_memory delta)",
        redis_per_agent_used,
        "bytes",
    ));
    f.push(
        Figure::plain("offers that reached a desktop", probed.offered as f64, "")
            .target(Goal::AtLeast, args.tickets as f64),
    );
    f.extend(latency_figures(
        &format!("enqueue to offer, {} connected,", readers.len()),
        &probed.enqueue_to_offer.summary(),
        None,
        None,
    ));
    f.extend(latency_figures(
        "SyncTicket (new waiting)",
        &probed.sync.summary(),
        None,
        None,
    ));
    if let Some(r) = &at_rate {
        let sent = r.offered + r.missed;
        f.push(
            Figure::plain(
                &format!("open loop: tickets synced at {}/s", args.rate),
                sent as f64 / args.rate_for.as_secs_f64(),
                "/s",
            )
            .target(Goal::AtLeast, f64::from(args.rate) * 0.95),
        );
        f.push(
            Figure::plain(
                "open loop: offers that reached a desktop",
                r.offered as f64,
                "",
            )
            .target(Goal::AtLeast, sent as f64),
        );
        let e2o = r.enqueue_to_offer.summary();
        f.push(Figure::plain(
            &format!("enqueue to offer at {}/s p50", args.rate),
            e2o.p50_ms,
            "ms",
        ));
        f.push(
            Figure::plain(
                &format!("enqueue to offer at {}/s p99", args.rate),
                e2o.p99_ms,
                "ms",
            )
            .target(Goal::AtMost, 5.0),
        );
        f.extend(latency_figures(
            &format!("SyncTicket (new waiting) at {}/s", args.rate),
            &r.sync.summary(),
            None,
            None,
        ));
        if let Some(e) = &r.first_error {
            report.notes.push(format!(
                "{} open-loop SyncTicket calls failed; first: {e}",
                r.errors
            ));
        }
    }
    f.push(
        Figure::plain("streams that ended during the run", ends as f64, "")
            .target(Goal::AtMost, 0.0),
    );
    if let Some(why) = first_end
        .or(probed.first_end)
        .or_else(|| at_rate.as_ref().and_then(|r| r.first_end.clone()))
    {
        report.notes.push(format!("first stream end: {why}"));
    }
    report.details = json!({
        "department": dept,
        "desktops": args.desktops,
        "per_connection": args.per_connection,
        "connections": connections,
        "routing_pid": pid,
        "upsert_seconds": upsert_seconds,
        "connect_seconds": connect_seconds,
        "rss": {
            "start": rss_start,
            "before_sessions": rss_before,
            "all_connected": rss_after,
            "after_offers": rss_end,
        },
        "redis": {
            "used_memory_before": used_before,
            "used_memory_after": used_after,
            "keys_before": keys_before,
            "keys_after": keys_after,
        },
        "offers": {
            "tickets": args.tickets,
            "offered": probed.offered,
            "missed": probed.missed,
            "enqueue_to_offer": probed.enqueue_to_offer.summary(),
            "sync": probed.sync.summary(),
            "seconds": probe_seconds,
        },
        "open_loop": at_rate.as_ref().map(|r| json!({
            "rate": args.rate,
            "seconds": args.rate_for.as_secs_f64(),
            "offered": r.offered,
            "missed": r.missed,
            "errors": r.errors,
            "enqueue_to_offer": r.enqueue_to_offer.summary(),
            "sync": r.sync.summary(),
        })),
        "stream_ends": ends,
    });
    // The streams close with the process; the router gives each session its resume grace.
    drop(readers);
    Ok(report)
}

/// Opens every agent's session, spread over `channels`, `--open-in-flight` at once; each
/// stream is forwarded to `tx` by a task of its own. Returns the readers.
async fn open_all(
    agents: &[String],
    channels: &[tonic::transport::Channel],
    args: &Args,
    tx: mpsc::UnboundedSender<client::Event>,
    timeout: Duration,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let next = Arc::new(AtomicU64::new(0));
    let agents = Arc::new(agents.to_vec());
    let channels = Arc::new(channels.to_vec());
    let readers = Arc::new(Mutex::new(Vec::with_capacity(agents.len())));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.open_in_flight {
        let (next, agents, channels, readers, tx) = (
            Arc::clone(&next),
            Arc::clone(&agents),
            Arc::clone(&channels),
            Arc::clone(&readers),
            tx.clone(),
        );
        let per = args.per_connection;
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(agent) = agents.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let channel = channels[(i / per) % channels.len()].clone();
                let mut desktop =
                    tierline_proto::routing::agent_desktop_service_client::AgentDesktopServiceClient::new(channel);
                let session = client::open_session(&mut desktop, agent, timeout)
                    .await
                    .map_err(|s| anyhow::anyhow!("OpenSession {agent}: {s}"))?;
                let reader = client::forward(i, session.stream, tx.clone());
                readers.lock().await.push(reader);
                if (i + 1).is_multiple_of(1000) {
                    eprintln!("  {} sessions open", i + 1);
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("an OpenSession task failed")??;
    }
    let readers = std::mem::take(&mut *readers.lock().await);
    Ok(readers)
}

/// What the offer probe saw.
struct Offers {
    offered: u64,
    missed: u64,
    enqueue_to_offer: Latency,
    sync: Latency,
    ends: u64,
    first_end: Option<String>,
}

/// Syncs `count` waiting tickets one at a time; each is timed from sending SyncTicket to its
/// offer on a stream, then synced DONE (withdrawing the offer).
async fn offers(
    routing: &Routing,
    dept: &str,
    count: usize,
    rx: &mut mpsc::UnboundedReceiver<client::Event>,
) -> Result<Offers> {
    let mut out = Offers {
        offered: 0,
        missed: 0,
        enqueue_to_offer: Latency::new(),
        sync: Latency::new(),
        ends: 0,
        first_end: None,
    };
    // Offers that arrive for a ticket not being waited for (late ones) are only counted.
    let mut seen: HashMap<String, Instant> = HashMap::new();
    for i in 0..count as u64 {
        let id = uuid::Uuid::new_v4().to_string();
        let ticket = client::waiting_ticket(&id, i, dept, client::tier_of(i), SystemTime::now());
        let began = Instant::now();
        routing
            .sync(ticket)
            .await
            .map_err(|s| anyhow::anyhow!("SyncTicket: {s}"))?;
        out.sync.record(began.elapsed());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let arrived = loop {
            if let Some(at) = seen.remove(&id) {
                break Some(at);
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(event)) => match event.kind {
                    EventKind::Offer { ticket_id, .. } => {
                        seen.insert(ticket_id, event.at);
                    }
                    EventKind::Ended(why) => {
                        out.ends += 1;
                        out.first_end.get_or_insert(why);
                    }
                    EventKind::Presence(_) => {}
                },
                Ok(None) => bail!("every stream reader stopped"),
                Err(_) => break None,
            }
        };
        match arrived {
            Some(at) => {
                out.offered += 1;
                out.enqueue_to_offer.record(at.duration_since(began));
            }
            None => out.missed += 1,
        }
        routing
            .sync(client::done_ticket(&id, 2))
            .await
            .map_err(|s| anyhow::anyhow!("SyncTicket DONE: {s}"))?;
    }
    Ok(out)
}

/// What the open-loop probe saw.
struct RateOffers {
    offered: u64,
    missed: u64,
    errors: u64,
    first_error: Option<String>,
    enqueue_to_offer: Latency,
    sync: Latency,
    ends: u64,
    first_end: Option<String>,
}

/// Syncs `rate` waiting tickets a second for `duration`, each at its scheduled time in a task
/// of its own; each is timed from sending SyncTicket to its offer on a stream and then synced
/// DONE, which frees the agent. Offers still missing 10 s after the last send are missed.
async fn offers_at_rate(
    routing: &Routing,
    dept: &str,
    rate: u32,
    duration: Duration,
    rx: &mut mpsc::UnboundedReceiver<client::Event>,
) -> Result<RateOffers> {
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    // Ticket id -> when its SyncTicket was sent; entered before the call, so an offer can
    // never arrive for an id not there yet.
    let sent: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let sync_times: Arc<std::sync::Mutex<(Latency, u64, Option<String>)>> = Arc::default();
    let sender = {
        let (routing, dept, sent, sync_times) = (
            routing.clone(),
            dept.to_owned(),
            Arc::clone(&sent),
            Arc::clone(&sync_times),
        );
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut calls = tokio::task::JoinSet::new();
            for i in 0..total {
                tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
                let id = uuid::Uuid::new_v4().to_string();
                let ticket =
                    client::waiting_ticket(&id, i, &dept, client::tier_of(i), SystemTime::now());
                let (routing, sent, sync_times) =
                    (routing.clone(), Arc::clone(&sent), Arc::clone(&sync_times));
                calls.spawn(async move {
                    let began = Instant::now();
                    lock(&sent).insert(id, began);
                    let result = routing.sync(ticket).await;
                    let mut times = lock(&sync_times);
                    match result {
                        Ok(_) => times.0.record(began.elapsed()),
                        Err(status) => {
                            times.1 += 1;
                            times.2.get_or_insert_with(|| status.to_string());
                        }
                    }
                });
                // Reap finished calls as we go, so the set stays small.
                while calls.try_join_next().is_some() {}
            }
            while calls.join_next().await.is_some() {}
        })
    };
    let mut out = RateOffers {
        offered: 0,
        missed: 0,
        errors: 0,
        first_error: None,
        enqueue_to_offer: Latency::new(),
        sync: Latency::new(),
        ends: 0,
        first_end: None,
    };
    let deadline = tokio::time::Instant::now() + duration + Duration::from_secs(10);
    let mut dones = tokio::task::JoinSet::new();
    while out.offered < total {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => match event.kind {
                EventKind::Offer { ticket_id, .. } => {
                    let Some(began) = lock(&sent).remove(&ticket_id) else {
                        continue;
                    };
                    out.offered += 1;
                    out.enqueue_to_offer
                        .record(event.at.saturating_duration_since(began));
                    let routing = routing.clone();
                    dones.spawn(
                        async move { routing.sync(client::done_ticket(&ticket_id, 2)).await },
                    );
                    while dones.try_join_next().is_some() {}
                }
                EventKind::Ended(why) => {
                    out.ends += 1;
                    out.first_end.get_or_insert(why);
                }
                EventKind::Presence(_) => {}
            },
            Ok(None) => bail!("every stream reader stopped"),
            Err(_) => break,
        }
    }
    sender.await.context("the open-loop sender failed")?;
    while let Some(done) = dones.join_next().await {
        done.context("a DONE sync task failed")?
            .map_err(|s| anyhow::anyhow!("SyncTicket DONE: {s}"))?;
    }
    let (sync, errors, first_error) = std::mem::take(&mut *lock(&sync_times));
    out.sync = sync;
    out.errors = errors;
    out.first_error = first_error;
    out.missed = total.saturating_sub(out.offered);
    Ok(out)
}

/// A std mutex's guard, poisoned or not (the data are counters and timestamps).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
