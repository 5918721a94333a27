//! `depth`: routing latency with a deep queue.
//!
//! 1. The raw Redis limit (unless `--no-limit`), as `tierline-bench` measures it.
//! 2. Fill the department's queue to `--base` (1,000) waiting tickets with SyncTicket, then
//!    probe: (b) offer latency: a desktop declines its offer and the time until its next offer
//!    reaches its stream is taken; (a) SyncTicket latency of a new waiting ticket (which
//!    computes its queue position), one call at a time.
//! 3. Fill to `--depth` (1,000,000) with `--fill-in-flight` calls at once: the fill rate is
//!    SyncTicket throughput. Redis memory before and after gives bytes per queued ticket.
//! 4. Probe again at that depth, and compare.
//!
//! Probe agents: a ticket an agent declined is never offered to that agent again while it
//! waits, and a dispatch round reads only the head of the queue (`router.dispatch_tickets`,
//! 64), so one agent declining more than that would find only tickets it declined in the head
//! and get no more offers. Each probe agent therefore declines `--declines-per-agent` (40)
//! offers, then signs out (its pending offer goes back) and the next one takes over.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use tierline_proto::routing as rpb;
use tokio::sync::mpsc;

use super::client::{self, EventKind, Routing};
use super::probe::{self, RedisProbe};
use super::report::{Figure, Report, latency_figures};
use super::{Common, positive_usize};
use crate::cpu;
use crate::limits;
use crate::stats::{Latency, LatencySummary};

/// Options of `depth`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Waiting tickets to fill the queue to.
    #[arg(long, default_value = "1000000", value_parser = positive_usize)]
    pub depth: usize,
    /// The shallow queue the deep one is compared with.
    #[arg(long, default_value = "1000", value_parser = positive_usize)]
    pub base: usize,
    /// SyncTicket calls in flight while filling.
    #[arg(long, default_value = "64", value_parser = positive_usize)]
    pub fill_in_flight: usize,
    /// HTTP/2 connections the fill spreads its calls over.
    #[arg(long, default_value = "4", value_parser = positive_usize)]
    pub connections: usize,
    /// New tickets timed one at a time at each depth.
    #[arg(long, default_value = "200", value_parser = positive_usize)]
    pub sync_samples: usize,
    /// Declines timed at each depth.
    #[arg(long, default_value = "200", value_parser = positive_usize)]
    pub offer_samples: usize,
    /// Declines by one probe agent before the next takes over (keep it below the router's
    /// dispatch_tickets, 64).
    #[arg(long, default_value = "40", value_parser = positive_usize)]
    pub declines_per_agent: usize,
    /// Pause before each probe, so the fill's backlog (notices, Redis's incremental rehash)
    /// does not count as depth.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Skip the raw Redis limit.
    #[arg(long)]
    pub no_limit: bool,
    /// Only probe the queue as it is (no fill, no comparison): to look again at a queue a
    /// previous run filled.
    #[arg(long)]
    pub probe_only: bool,
    /// How long the raw Redis limit is measured (after 2 s of warm-up).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub limit_duration: Duration,
    /// Operations in flight in the raw Redis limit (tierline-bench uses 8).
    #[arg(long, default_value = "8", value_parser = positive_usize)]
    pub limit_concurrency: usize,
}

/// What one probe measured.
#[derive(Debug, Clone, serde::Serialize)]
struct Probed {
    /// Waiting tickets when the probe started.
    depth: u64,
    /// A declined offer to the next offer on the stream.
    offer: LatencySummary,
    /// OpenSession (AVAILABLE) to the first offer, per probe agent.
    first_offer: LatencySummary,
    /// SyncTicket of a new waiting ticket.
    sync: LatencySummary,
    /// The queue position the last new ticket was given.
    last_position: i32,
}

/// Runs the scenario.
pub async fn run(common: &Common, args: &Args) -> Result<Report> {
    if args.base >= args.depth {
        bail!(
            "--base ({}) must be below --depth ({})",
            args.base,
            args.depth
        );
    }
    let mut report = Report::new("depth");
    let dept = &common.department;
    let run = client::run_id();
    let redis = RedisProbe::connect(&common.redis_url, &common.redis_prefix).await?;
    let routing = Routing::connect(&common.routing_addr, args.connections, common.timeout).await?;
    if args.probe_only {
        let mut seq = u64::from(u32::MAX);
        let at = probe_at(&routing, dept, &run, "again", args, &mut seq).await?;
        report.figures.extend(latency_figures(
            &format!("offer after a decline at {}", at.depth),
            &at.offer,
            None,
            None,
        ));
        report.figures.extend(latency_figures(
            &format!("SyncTicket (new waiting) at {}", at.depth),
            &at.sync,
            None,
            None,
        ));
        report.details = json!({ "department": dept, "probe": at });
        return Ok(report);
    }
    let already = routing.waiting(dept).await?;
    if already > args.base as u64 {
        bail!("{dept} already has {already} waiting tickets, more than --base; use a fresh router");
    }

    let raw = if args.no_limit {
        None
    } else {
        eprintln!(
            "depth: raw Redis limit, {} at once, {}",
            args.limit_concurrency,
            humantime::format_duration(args.limit_duration)
        );
        Some(
            super::raw_redis_limit(
                &common.redis_url,
                args.limit_concurrency,
                args.limit_duration,
            )
            .await?,
        )
    };

    let mut seq = 0u64;
    eprintln!("depth: filling {dept} to {} waiting tickets", args.base);
    let small = client::fill(
        &routing,
        dept,
        seq,
        args.base as u64 - already,
        args.fill_in_flight,
    )
    .await;
    seq += small.tickets + small.errors;
    check_fill(&small, "the fill to --base")?;
    let shallow = probe_at(&routing, dept, &run, "base", args, &mut seq).await?;
    eprintln!(
        "depth: at {}: offer p50 {:.2} ms p99 {:.2} ms, SyncTicket p50 {:.2} ms p99 {:.2} ms",
        shallow.depth,
        shallow.offer.p50_ms,
        shallow.offer.p99_ms,
        shallow.sync.p50_ms,
        shallow.sync.p99_ms
    );

    let now_waiting = routing.waiting(dept).await?;
    let to_add = (args.depth as u64).saturating_sub(now_waiting);
    let used_before = redis.used_memory().await?;
    let keys_before = redis.key_memory().await?;
    eprintln!(
        "depth: filling {dept} from {now_waiting} to {} waiting tickets, {} calls in flight",
        args.depth, args.fill_in_flight
    );
    let cpu_before = cpu::snapshot();
    let big = client::fill(&routing, dept, seq, to_add, args.fill_in_flight).await;
    let cpu_after = cpu::snapshot();
    seq += big.tickets + big.errors;
    check_fill(&big, "the fill to --depth")?;
    let used_after = redis.used_memory().await?;
    let keys_after = redis.key_memory().await?;
    report.cpu = cpu::usage(&cpu_before, &cpu_after, big.seconds, report.machine.cpus);
    report.cpu_seconds = big.seconds;

    let deep = probe_at(&routing, dept, &run, "deep", args, &mut seq).await?;
    eprintln!(
        "depth: at {}: offer p50 {:.2} ms p99 {:.2} ms, SyncTicket p50 {:.2} ms p99 {:.2} ms",
        deep.depth, deep.offer.p50_ms, deep.offer.p99_ms, deep.sync.p50_ms, deep.sync.p99_ms
    );

    // Memory: the whole server's used_memory moved by the fill, and the exact size of the
    // ticket keys (the tickets hash and the queue, waiting and due sorted sets).
    let ticket_keys = ["tickets", "queue:", "waiting:", "due:"];
    let tickets_held = keys_after
        .iter()
        .find(|k| k.key == "tickets")
        .map_or(0, |k| k.entries);
    let used_per_ticket = used_after.saturating_sub(used_before) as f64 / big.tickets.max(1) as f64;
    let keys_per_ticket =
        probe::bytes_of(&keys_after, &ticket_keys) as f64 / tickets_held.max(1) as f64;
    let fill_rate = limits::per_second(big.tickets, big.seconds);

    let base_label = format!("at {} queued", shallow.depth);
    let f = &mut report.figures;
    match &raw {
        Some(raw) => f.push(Figure::versus(
            "fill: SyncTicket/s (new waiting tickets)",
            fill_rate,
            "/s",
            &format!("raw Redis script, {} at once", raw.concurrency),
            raw.per_second,
        )),
        None => f.push(Figure::plain("fill: SyncTicket/s", fill_rate, "/s")),
    }
    f.push(Figure::plain(
        &format!("fill: {} tickets took", big.tickets),
        big.seconds,
        "s",
    ));
    f.extend(latency_figures(
        &format!(
            "fill: SyncTicket latency, {} in flight,",
            args.fill_in_flight
        ),
        &big.latency.summary(),
        None,
        None,
    ));
    f.extend(latency_figures(
        &format!("offer after a decline at {}", deep.depth),
        &deep.offer,
        Some((&base_label, &shallow.offer)),
        Some(1.5),
    ));
    f.extend(latency_figures(
        &format!("SyncTicket (new waiting) at {}", deep.depth),
        &deep.sync,
        Some((&base_label, &shallow.sync)),
        Some(1.5),
    ));
    f.push(Figure::plain(
        "bytes per queued ticket (used_memory delta)",
        used_per_ticket,
        "bytes",
    ));
    f.push(Figure::plain(
        "bytes per queued ticket (MEMORY USAGE of ticket keys)",
        keys_per_ticket,
        "bytes",
    ));
    if big.errors + small.errors > 0 {
        report.notes.push(format!(
            "{} SyncTicket calls failed while filling; first: {}",
            big.errors + small.errors,
            big.first_error.or(small.first_error).unwrap_or_default()
        ));
    }
    report.details = json!({
        "department": dept,
        "depth": args.depth,
        "base": args.base,
        "fill_in_flight": args.fill_in_flight,
        "connections": args.connections,
        "raw_redis_limit": raw,
        "fill": {
            "tickets": big.tickets,
            "seconds": big.seconds,
            "per_second": fill_rate,
            "latency": big.latency.summary(),
            "errors": big.errors,
        },
        "at_base": shallow,
        "at_depth": deep,
        "redis": {
            "used_memory_before": used_before,
            "used_memory_after": used_after,
            "tickets_in_hash": tickets_held,
            "keys_before": keys_before,
            "keys_after": keys_after,
            "bytes_by_kind_after": probe::by_kind(&keys_after),
        },
        "tickets_synced": seq,
    });
    Ok(report)
}

fn check_fill(filled: &client::Filled, what: &str) -> Result<()> {
    if filled.tickets == 0 && filled.errors > 0 {
        bail!(
            "{what} failed: {}",
            filled.first_error.clone().unwrap_or_default()
        );
    }
    Ok(())
}

/// Probes offer latency, then SyncTicket latency, at the current depth.
async fn probe_at(
    routing: &Routing,
    dept: &str,
    run: &str,
    label: &str,
    args: &Args,
    seq: &mut u64,
) -> Result<Probed> {
    tokio::time::sleep(args.settle).await;
    let depth = routing.waiting(dept).await?;
    let (offer, first_offer) = offer_probe(routing, dept, run, label, args).await?;
    let mut sync = Latency::new();
    let mut last_position = 0;
    for _ in 0..args.sync_samples {
        let id = uuid::Uuid::new_v4().to_string();
        let ticket =
            client::waiting_ticket(&id, *seq, dept, client::tier_of(*seq), SystemTime::now());
        *seq += 1;
        let began = Instant::now();
        let reply = routing
            .sync(ticket)
            .await
            .map_err(|s| anyhow::anyhow!("SyncTicket: {s}"))?;
        sync.record(began.elapsed());
        last_position = reply.queue_position;
    }
    Ok(Probed {
        depth,
        offer: offer.summary(),
        first_offer: first_offer.summary(),
        sync: sync.summary(),
        last_position,
    })
}

/// Each probe agent opens its session AVAILABLE, takes its first offer, then declines
/// `--declines-per-agent` offers, timing each decline to the next offer; then signs out.
async fn offer_probe(
    routing: &Routing,
    dept: &str,
    run: &str,
    label: &str,
    args: &Args,
) -> Result<(Latency, Latency)> {
    let per_agent = args.declines_per_agent.min(args.offer_samples).max(1);
    let agents: Vec<String> = (0..args.offer_samples.div_ceil(per_agent))
        .map(|k| format!("scale-{run}-{label}-probe-{k}"))
        .collect();
    client::upsert_agents(routing, &agents, dept, 4).await?;
    let wait = Duration::from_secs(10);
    let mut declines = Latency::new();
    let mut first = Latency::new();
    let mut left = args.offer_samples;
    for agent in &agents {
        let mut desktop = routing.desktop();
        let opened = Instant::now();
        let session = client::open_session(&mut desktop, agent, routing.timeout)
            .await
            .with_context(|| format!("OpenSession {agent}"))?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let reader = client::forward(0, session.stream, tx);
        let mut current = next_offer(&mut rx, wait)
            .await
            .with_context(|| format!("{agent}: no first offer"))?;
        first.record(current.1.duration_since(opened));
        for _ in 0..per_agent.min(left) {
            let began = Instant::now();
            client::decline(&mut desktop, agent, &current.0, routing.timeout)
                .await
                .map_err(|s| anyhow::anyhow!("DeclineOffer: {s}"))?;
            current = next_offer(&mut rx, wait)
                .await
                .with_context(|| format!("{agent}: no offer after a decline"))?;
            declines.record(current.1.duration_since(began));
            left -= 1;
        }
        // Signing out withdraws the pending offer (not a decline: the ticket keeps no mark).
        client::set_presence(
            &mut desktop,
            agent,
            rpb::AgentPresenceState::Offline,
            routing.timeout,
        )
        .await
        .map_err(|s| anyhow::anyhow!("SetPresence OFFLINE: {s}"))?;
        reader.abort();
    }
    Ok((declines, first))
}

/// The next pending offer on the stream: (reservation id, arrival).
async fn next_offer(
    rx: &mut mpsc::UnboundedReceiver<client::Event>,
    within: Duration,
) -> Result<(String, Instant)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .context("timed out")?
            .context("the stream reader stopped")?;
        match event.kind {
            EventKind::Offer { reservation_id, .. } => return Ok((reservation_id, event.at)),
            EventKind::Ended(why) => bail!("the session ended: {why}"),
            EventKind::Presence(_) => {}
        }
    }
}
