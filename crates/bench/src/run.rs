//! One run, phase by phase: raw limits, setup, desktops signed in, callers through warm-up and
//! measurement, then the report.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result};
use tierline_proto::routing as rpb;
use tokio::sync::watch;

use crate::callers::{self, Plan};
use crate::config::Args;
use crate::cpu;
use crate::desktops::{self, Desk};
use crate::limits::{self, per_second};
use crate::report::{self, Load, Machine, Report, RunConfig};
use crate::setup::{self, Clients};
use crate::stats::{Stats, Window, errors_by_code};

/// Runs the phases `args` asks for and prints (and writes) the report.
pub async fn run(args: Args) -> Result<()> {
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let limits = if args.no_limits {
        None
    } else {
        Some(
            limits::measure(
                &args.database_url,
                &args.redis_url,
                args.callers,
                args.limit_duration,
            )
            .await,
        )
    };
    let (load, department) = if args.limits_only {
        (None, String::new())
    } else {
        let (load, department) = load(&args, &run_id).await?;
        (Some(load), department)
    };
    let comparisons = match (&load, &limits) {
        (Some(load), Some(limits)) => report::comparisons(load, limits),
        _ => Vec::new(),
    };
    let report = Report {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        started_at,
        machine: Machine::read(),
        config: RunConfig {
            callers: args.callers,
            rate_per_second: args.rate,
            agents: args.agents,
            customers: args.customers,
            tier_mix: args.tier_mix,
            category: args.category.clone(),
            department,
            warmup_seconds: args.warmup.as_secs_f64(),
            duration_seconds: args.duration.as_secs_f64(),
            handle_time_seconds: args.handle_time.as_secs_f64(),
            decline_share: args.decline_share,
            retry_share: args.retry_share,
            returning_share: args.returning_share,
            limit_seconds: args.limit_duration.as_secs_f64(),
        },
        limits,
        load,
        comparisons,
    };
    println!("{}", report::format_summary(&report));
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// Setup, desktops, callers, and what the window saw.
async fn load(args: &Args, run_id: &str) -> Result<(Load, String)> {
    let clients = setup::clients(args).await?;
    let made = setup::run(args, &clients, run_id).await?;
    eprintln!("setup: done in {:.1}s", made.seconds);

    // Every desktop signs in before the clock starts, so the warm-up begins with agents ready.
    let mut sign_ins = tokio::task::JoinSet::new();
    for (i, agent) in made.agents.iter().enumerate() {
        let desk = Desk {
            agent: agent.clone(),
            desktop: clients.desktop(i),
            tickets: clients.tickets.clone(),
            handle_time: args.handle_time,
            decline_share: args.decline_share,
            timeout: args.timeout,
        };
        sign_ins.spawn(desktops::sign_in(desk));
    }
    let mut signed_in = Vec::with_capacity(made.agents.len());
    while let Some(done) = sign_ins.join_next().await {
        signed_in.push(
            done.context("a sign-in task failed")?
                .context("OpenSession")?,
        );
    }
    eprintln!("setup: {} desktops signed in", signed_in.len());

    let stats = Arc::new(Stats::new(Window::after(
        Instant::now(),
        args.warmup,
        args.duration,
    )));
    let (stop_tx, stop_rx) = watch::channel(false);
    let desks: Vec<_> = signed_in
        .into_iter()
        .map(|d| tokio::spawn(desktops::run(d, Arc::clone(&stats), stop_rx.clone())))
        .collect();
    let plan = Arc::new(Plan {
        phones: Arc::clone(&made.phones),
        returning_share: args.returning_share,
        retry_share: args.retry_share,
        category: args.category.clone(),
        timeout: args.timeout,
    });
    let progress = tokio::spawn(progress(Arc::clone(&stats)));
    let cpu = tokio::spawn(cpu_in(stats.window));
    // Callers stop starting calls at the window's end; calls still in flight then are not
    // counted.
    let not_started = callers::run(
        clients.tickets.clone(),
        plan,
        Arc::clone(&stats),
        args.callers,
        args.rate,
        stats.window.end,
    )
    .await;
    progress.abort();
    let waiting_at_end = waiting(&clients, &made.department).await;
    let _ = stop_tx.send(true);
    for d in desks {
        // A desktop signs out within one call's deadline.
        let _ = tokio::time::timeout(args.timeout + Duration::from_secs(1), d).await;
    }

    let cpu = cpu.await.unwrap_or_default();
    let m = stats.measured();
    let seconds = stats.window.seconds();
    let errors = stats.errors();
    let load = Load {
        window_seconds: seconds,
        setup_seconds: made.seconds,
        tickets_created: m.intake.count(),
        intake_per_second: per_second(m.intake.count(), seconds),
        intake_latency: m.intake.summary(),
        replays: m.replay.count(),
        replay_latency: m.replay.summary(),
        replay_mismatches: m.replay_mismatches,
        enqueue_to_offer: m.enqueue_to_offer.summary(),
        assignments: m.assignments,
        assignments_per_second: per_second(m.assignments, seconds),
        declines: m.declines,
        resolved: m.resolved,
        late_starts: m.late_starts,
        not_started,
        waiting_at_end,
        cpu,
        totals: stats.live.snapshot().into(),
        errors_by_code: errors_by_code(&errors),
        errors,
    };
    Ok((load, made.department))
}

/// CPU used by each process name during `window` (the task ends with it).
async fn cpu_in(window: Window) -> Vec<cpu::CpuUse> {
    tokio::time::sleep_until(window.start.into()).await;
    let before = cpu::snapshot();
    tokio::time::sleep_until(window.end.into()).await;
    let after = cpu::snapshot();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    cpu::usage(&before, &after, window.seconds(), cpus)
}

/// Waiting tickets of `department` now, if the router says.
async fn waiting(clients: &Clients, department: &str) -> Option<i64> {
    let mut routing = clients.routing.clone();
    let snapshot = routing
        .get_queue_stats(rpb::GetQueueStatsRequest {
            departments: vec![department.to_owned()],
        })
        .await
        .ok()?
        .into_inner();
    snapshot
        .queues
        .iter()
        .find(|q| q.department == department)
        .and_then(|q| q.total.as_ref())
        .map(|t| i64::from(t.waiting_count))
}

/// Prints a progress line every second until aborted.
async fn progress(stats: Arc<Stats>) {
    let start = Instant::now();
    let mut before = stats.live.snapshot();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let total = stats.live.snapshot();
        let phase = if now < stats.window.start {
            "warm-up"
        } else if now < stats.window.end {
            "measure"
        } else {
            "drain"
        };
        eprintln!(
            "{}",
            report::progress_line(
                now.duration_since(start).as_secs(),
                phase,
                &report::delta(&total, &before),
                &total
            )
        );
        before = total;
    }
}
