//! `decisions`: routing capacity, independent of intake.
//!
//! 1. The raw Redis limit, measured first in the same run (`limits::redis`, the script
//!    `tierline-bench` uses: one enqueue and one offer of the assignment scripts' shape per
//!    call).
//! 2. A queue of `--queue` waiting tickets (SyncTicket, many in flight).
//! 3. `--agents` desktops connect AVAILABLE and decline every offer at once. A declined ticket
//!    goes back to its rank and the agent, free again, gets its next offer: every offer is one
//!    routing decision (read the queue head and ready agents, choose, reserve), with no ticket
//!    service in the loop. Accepting would call the ticket service's AssignTicket, which
//!    refuses synthetic tickets; declining is the clean way to measure routing alone.
//!    Declines do not count against an agent: only expired offers do (two in a row set the
//!    agent AWAY), and these offers never expire. So no configuration is needed.
//! 4. A ticket an agent declined is never offered to that agent again while it waits, and a
//!    dispatch round reads only the queue's head (64). So a ticket declined
//!    `--declines-per-ticket` times is retired (synced DONE) and a new one synced in, keeping
//!    the head fresh and the depth constant. Those SyncTicket calls are routing work too, done
//!    in the same router during the window; they are counted and reported.
//! 5. After `--warmup`, offers reaching the desktops are counted for `--duration`: offers per
//!    second, beside the raw rate. The router's own offer counter (GetQueueStats) is read at
//!    both ends of the window as a cross-check.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use serde_json::json;
use tokio::sync::mpsc;

use super::client::{self, EventKind, Routing};
use super::report::{Figure, Goal, Report, latency_figures};
use super::{Common, positive_usize};
use crate::cpu;
use crate::limits;
use crate::stats::{Latency, Window};

/// Options of `decisions`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Waiting tickets in the queue.
    #[arg(long, default_value = "20000", value_parser = positive_usize)]
    pub queue: usize,
    /// Agents declining every offer.
    #[arg(long, default_value = "200", value_parser = positive_usize)]
    pub agents: usize,
    /// Declines after which a ticket is replaced by a new one (well below --agents, so a free
    /// agent always finds a ticket it has not declined in the head of the queue; high enough
    /// that replacing costs the router little next to the decisions).
    #[arg(long, default_value = "40", value_parser = positive_usize)]
    pub declines_per_ticket: usize,
    /// Load before the window; not counted.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// The measured window.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// SyncTicket calls in flight while filling the queue.
    #[arg(long, default_value = "64", value_parser = positive_usize)]
    pub fill_in_flight: usize,
    /// HTTP/2 connections for the desktops (streams and their calls).
    #[arg(long, default_value = "4", value_parser = positive_usize)]
    pub connections: usize,
    /// How long the raw Redis limit is measured (after 2 s of warm-up).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub limit_duration: Duration,
    /// Operations in flight in the raw Redis limit (tierline-bench uses 8).
    #[arg(long, default_value = "8", value_parser = positive_usize)]
    pub limit_concurrency: usize,
}

/// Counters shared by the desktops.
#[derive(Default)]
struct Counters {
    offers: AtomicU64,
    offers_in_window: AtomicU64,
    declines: AtomicU64,
    retired: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, what: &str, status: &tonic::Status) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| format!("{what}: {:?}: {}", status.code(), status.message()));
    }
}

/// Runs the scenario.
pub async fn run(common: &Common, args: &Args) -> Result<Report> {
    let mut report = Report::new("decisions");
    let dept = common.department.clone();
    let run = client::run_id();
    let routing = Routing::connect(&common.routing_addr, args.connections, common.timeout).await?;

    eprintln!(
        "decisions: raw Redis limit, {} at once, {}",
        args.limit_concurrency,
        humantime::format_duration(args.limit_duration)
    );
    let raw = super::raw_redis_limit(
        &common.redis_url,
        args.limit_concurrency,
        args.limit_duration,
    )
    .await?;

    eprintln!(
        "decisions: filling {dept} with {} waiting tickets",
        args.queue
    );
    let filled = client::fill(&routing, &dept, 0, args.queue as u64, args.fill_in_flight).await;
    let agents: Vec<String> = (0..args.agents)
        .map(|i| format!("scale-{run}-decider-{i:04}"))
        .collect();
    client::upsert_agents(&routing, &agents, &dept, 16).await?;

    let counters = Arc::new(Counters::default());
    let window = Window::after(Instant::now(), args.warmup, args.duration);
    let stop = Arc::new(AtomicBool::new(false));
    let (retire_tx, retire_rx) = mpsc::unbounded_channel::<String>();
    let retirer = tokio::spawn(retire(
        routing.clone(),
        dept.clone(),
        args.queue as u64,
        retire_rx,
        Arc::clone(&counters),
        Arc::clone(&stop),
    ));
    let declined: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
    let mut desks = tokio::task::JoinSet::new();
    for agent in &agents {
        let mut desktop = routing.desktop();
        let session = client::open_session(&mut desktop, agent, common.timeout)
            .await
            .map_err(|s| anyhow::anyhow!("OpenSession {agent}: {s}"))?;
        let (agent, counters, stop, declined, retire_tx) = (
            agent.clone(),
            Arc::clone(&counters),
            Arc::clone(&stop),
            Arc::clone(&declined),
            retire_tx.clone(),
        );
        let limit = args.declines_per_ticket;
        let timeout = common.timeout;
        desks.spawn(async move {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let reader = client::forward(0, session.stream, tx);
            let mut latency = Latency::new();
            let mut declined_at: Option<Instant> = None;
            while !stop.load(Ordering::Relaxed) {
                let event = match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
                {
                    Ok(Some(e)) => e,
                    Ok(None) => break,
                    Err(_) => continue,
                };
                let (ticket_id, reservation_id) = match event.kind {
                    EventKind::Offer {
                        ticket_id,
                        reservation_id,
                    } => (ticket_id, reservation_id),
                    EventKind::Ended(_) => break,
                    EventKind::Presence(_) => continue,
                };
                counters.offers.fetch_add(1, Ordering::Relaxed);
                if window.contains(event.at) {
                    counters.offers_in_window.fetch_add(1, Ordering::Relaxed);
                    if let Some(at) = declined_at {
                        latency.record(event.at.duration_since(at));
                    }
                }
                declined_at = Some(Instant::now());
                match client::decline(&mut desktop, &agent, &reservation_id, timeout).await {
                    Ok(()) => {
                        counters.declines.fetch_add(1, Ordering::Relaxed);
                        let times = {
                            let mut d = declined.lock().unwrap_or_else(|e| e.into_inner());
                            let n = d.entry(ticket_id.clone()).or_default();
                            *n += 1;
                            *n
                        };
                        if times == limit {
                            let _ = retire_tx.send(ticket_id);
                        }
                    }
                    Err(s) => {
                        // An offer the replacement withdrew meanwhile is not pending any more.
                        counters.error("DeclineOffer", &s);
                        declined_at = None;
                    }
                }
            }
            reader.abort();
            latency
        });
    }
    drop(retire_tx);
    eprintln!(
        "decisions: {} agents declining every offer; warm-up {}, window {}",
        agents.len(),
        humantime::format_duration(args.warmup),
        humantime::format_duration(args.duration)
    );
    tokio::time::sleep_until(window.start.into()).await;
    let cpu_before = cpu::snapshot();
    let counted_before = routing.offers_counted(&dept).await.ok();
    let retired_before = counters.retired.load(Ordering::Relaxed);
    let declines_before = counters.declines.load(Ordering::Relaxed);
    let mut last = counters.offers.load(Ordering::Relaxed);
    while Instant::now() < window.end {
        tokio::time::sleep(Duration::from_secs(1).min(window.end - Instant::now())).await;
        let now = counters.offers.load(Ordering::Relaxed);
        eprintln!("  {} offers/s", now - last);
        last = now;
    }
    let cpu_after = cpu::snapshot();
    let counted_after = routing.offers_counted(&dept).await.ok();
    let retired = counters.retired.load(Ordering::Relaxed) - retired_before;
    let declines = counters.declines.load(Ordering::Relaxed) - declines_before;
    stop.store(true, Ordering::Relaxed);
    let mut latency = Latency::new();
    while let Some(done) = desks.join_next().await {
        if let Ok(l) = done {
            latency.merge(&l);
        }
    }
    retirer.abort();
    let seconds = window.seconds();
    report.cpu = cpu::usage(&cpu_before, &cpu_after, seconds, report.machine.cpus);
    report.cpu_seconds = seconds;

    let offers = counters.offers_in_window.load(Ordering::Relaxed);
    let rate = limits::per_second(offers, seconds);
    let f = &mut report.figures;
    f.push(
        Figure::versus(
            "offers made (routing decisions)",
            rate,
            "/s",
            &format!("raw Redis script, {} at once", raw.concurrency),
            raw.per_second,
        )
        .target(Goal::AtLeast, 0.3),
    );
    f.extend(latency_figures(
        "decline to next offer",
        &latency.summary(),
        Some(("raw Redis script", &raw.latency)),
        None,
    ));
    f.push(Figure::plain(
        "declines in the window",
        limits::per_second(declines, seconds),
        "/s",
    ));
    f.push(Figure::plain(
        "tickets replaced in the window (2 SyncTicket each)",
        limits::per_second(retired, seconds),
        "/s",
    ));
    if let (Some(a), Some(b)) = (counted_before, counted_after) {
        f.push(Figure::plain(
            "offers counted by the router (GetQueueStats)",
            limits::per_second(b.saturating_sub(a), seconds),
            "/s",
        ));
    }
    let errors = counters.errors.load(Ordering::Relaxed);
    if errors > 0 {
        let first = counters
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        report.notes.push(format!(
            "{errors} DeclineOffer or replacement SyncTicket calls failed; first: {first}"
        ));
    }
    if filled.errors > 0 {
        report.notes.push(format!(
            "{} SyncTicket calls failed while filling; first: {}",
            filled.errors,
            filled.first_error.clone().unwrap_or_default()
        ));
    }
    report.details = json!({
        "department": dept,
        "queue": args.queue,
        "agents": args.agents,
        "declines_per_ticket": args.declines_per_ticket,
        "warmup_seconds": args.warmup.as_secs_f64(),
        "window_seconds": seconds,
        "offers_in_window": offers,
        "declines_in_window": declines,
        "retired_in_window": retired,
        "router_offer_counter": [counted_before, counted_after],
        "raw_redis_limit": raw,
        "fill": {
            "tickets": filled.tickets,
            "seconds": filled.seconds,
            "per_second": limits::per_second(filled.tickets, filled.seconds),
            "latency": filled.latency.summary(),
        },
        "decline_to_offer": latency.summary(),
    });
    Ok(report)
}

/// Replaces each ticket sent here: DONE at version 2 (withdrawing an offer it may have got
/// meanwhile), and a new waiting ticket in its place; up to 32 replacements at once, so they
/// keep up with the declines.
async fn retire(
    routing: Routing,
    dept: String,
    first: u64,
    mut rx: mpsc::UnboundedReceiver<String>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    let mut seq = first;
    while let Some(id) = rx.recv().await {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (routing, dept, counters) = (routing.clone(), dept.clone(), Arc::clone(&counters));
        tokio::spawn(async move {
            let done = routing.sync(client::done_ticket(&id, 2)).await;
            let new = uuid::Uuid::new_v4().to_string();
            let added = routing
                .sync(client::waiting_ticket(
                    &new,
                    seq,
                    &dept,
                    client::tier_of(seq),
                    SystemTime::now(),
                ))
                .await;
            match done.and(added) {
                Ok(_) => {
                    counters.retired.fetch_add(1, Ordering::Relaxed);
                }
                Err(s) => counters.error("SyncTicket (replacement)", &s),
            }
            drop(permit);
        });
        seq += 1;
    }
}
