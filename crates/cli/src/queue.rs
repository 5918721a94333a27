//! `tierline queue stats`: a compact table per department and tier, once or as a wallboard.

use std::time::Duration;

use tierline_proto::routing::{
    GetQueueStatsRequest, QueueStats, QueueStatsSnapshot, WatchQueueStatsRequest,
};
use tokio::time::Instant;

use crate::args::QueueCommand;
use crate::ctx::Ctx;
use crate::error::{CliError, Service, is_transport_failure};
use crate::fmt;
use crate::json::to_json;

/// Runs a `queue` subcommand.
pub async fn run(ctx: &Ctx, command: QueueCommand) -> Result<(), CliError> {
    let QueueCommand::Stats {
        department,
        watch: watching,
        interval,
    } = command;
    if watching {
        return watch(ctx, department, interval).await;
    }
    let mut client = ctx.routing().await?;
    let snapshot = ctx
        .call(
            Service::Routing,
            client.get_queue_stats(GetQueueStatsRequest {
                departments: department,
            }),
        )
        .await?;
    ctx.print(|| format_snapshot(&snapshot), || to_json(&snapshot));
    Ok(())
}

/// WatchQueueStats until Ctrl-C; a broken stream is opened again (the contract says the
/// stream may end with UNAVAILABLE at any time).
async fn watch(
    ctx: &Ctx,
    departments: Vec<String>,
    interval: Option<Duration>,
) -> Result<(), CliError> {
    let interval = interval.map(|d| prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(60),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    });
    let mut failures_since_success = 0u32;
    loop {
        let mut client = ctx.routing().await?;
        let opened = ctx
            .call(
                Service::Routing,
                client.watch_queue_stats(WatchQueueStatsRequest {
                    departments: departments.clone(),
                    interval,
                }),
            )
            .await;
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) if failures_since_success < 5 && e.code() == Some(tonic::Code::Unavailable) => {
                failures_since_success += 1;
                ctx.note(format!("{}; retrying", e.render()));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        loop {
            let next = tokio::select! {
                m = stream.message() => m,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            match next {
                Ok(Some(snapshot)) => {
                    failures_since_success = 0;
                    ctx.event(
                        || format!("{}\n", format_snapshot(&snapshot)),
                        || to_json(&snapshot),
                    );
                }
                Ok(None) => break,
                Err(status)
                    if is_transport_failure(&status)
                        || status.code() == tonic::Code::Unavailable =>
                {
                    break;
                }
                Err(status) => {
                    return Err(CliError::from_status(
                        Service::Routing,
                        ctx.addr(Service::Routing),
                        status,
                    ));
                }
            }
        }
        failures_since_success += 1;
        if failures_since_success > 5 {
            return Err(CliError::Failed(
                "the queue statistics stream keeps breaking; giving up".into(),
            ));
        }
        ctx.note("the statistics stream ended; opening it again");
        let pause = Instant::now() + Duration::from_secs(1);
        tokio::time::sleep_until(pause).await;
    }
}

/// One snapshot: a line per department and tier, then agents and offers per department.
pub fn format_snapshot(s: &QueueStatsSnapshot) -> String {
    if s.queues.is_empty() {
        return format!(
            "{}: no department has agents or tickets",
            fmt::time(s.stats_time.as_ref())
        );
    }
    let mut rows = Vec::new();
    for q in &s.queues {
        rows.extend(queue_rows(q));
    }
    let mut out = format!(
        "queues at {} (offers over the last {})\n",
        fmt::time(s.stats_time.as_ref()),
        fmt::opt_duration(s.counter_window.as_ref())
    );
    out.push_str(&fmt::table(
        &[
            "DEPARTMENT",
            "TIER",
            "WAITING",
            "OFFERED",
            "OLDEST",
            "AT RISK",
            "PAST DUE",
            "AGENTS free/busy/away/off",
            "OFFERS made/acc/dec/exp/canc",
        ],
        &rows,
    ));
    out
}

fn queue_rows(q: &QueueStats) -> Vec<Vec<String>> {
    let agents = q.agents.as_ref().map_or_else(
        || "-".to_owned(),
        |a| format!("{}/{}/{}/{}", a.available, a.busy, a.away, a.offline),
    );
    let offers = q.offers.as_ref().map_or_else(
        || "-".to_owned(),
        |o| {
            format!(
                "{}/{}/{}/{}/{}",
                o.offered, o.accepted, o.declined, o.expired, o.cancelled
            )
        },
    );
    let mut rows = Vec::new();
    let tier_row = |department: &str, tier: String, t: &tierline_proto::routing::TierQueueStats| {
        vec![
            department.to_owned(),
            tier,
            t.waiting_count.to_string(),
            t.offered_count.to_string(),
            fmt::opt_duration(t.oldest_wait.as_ref()),
            t.at_risk_count.to_string(),
            t.past_due_count.to_string(),
        ]
    };
    let mut first = match &q.total {
        Some(total) => tier_row(&q.department, "all".into(), total),
        None => vec![q.department.clone(), "all".into()],
    };
    first.resize(7, "-".into());
    first.push(agents);
    first.push(offers);
    rows.push(first);
    for t in &q.tiers {
        rows.push(tier_row("", fmt::tier(t.tier), t));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierline_proto::common::Tier;
    use tierline_proto::routing::{AgentCounts, OfferCounts, TierQueueStats};

    #[test]
    fn a_snapshot_is_one_table_with_a_line_per_tier() {
        let tier = |t: Tier, waiting| TierQueueStats {
            tier: t as i32,
            waiting_count: waiting,
            oldest_wait: Some(prost_types::Duration {
                seconds: if waiting > 0 { 130 } else { 0 },
                nanos: 0,
            }),
            ..Default::default()
        };
        let s = QueueStatsSnapshot {
            queues: vec![QueueStats {
                department: "quality_assurance".into(),
                total: Some(tier(Tier::Unspecified, 3)),
                tiers: vec![tier(Tier::A, 1), tier(Tier::B, 0), tier(Tier::C, 2)],
                agents: Some(AgentCounts {
                    available: 2,
                    busy: 1,
                    away: 0,
                    offline: 4,
                }),
                offers: Some(OfferCounts {
                    offered: 5,
                    accepted: 3,
                    declined: 1,
                    expired: 1,
                    cancelled: 0,
                }),
            }],
            stats_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            counter_window: Some(prost_types::Duration {
                seconds: 900,
                nanos: 0,
            }),
        };
        let text = format_snapshot(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "queues at 1970-01-01 00:00:00Z (offers over the last 15m 00s)"
        );
        assert!(
            lines[1].starts_with("DEPARTMENT         TIER  WAITING"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("quality_assurance  all   3        0        2m 10s"),
            "{text}"
        );
        assert!(
            lines[2].ends_with("2/1/0/4                    5/3/1/1/0"),
            "{text}"
        );
        assert!(lines[3].starts_with("                   A     1"), "{text}");
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn an_empty_snapshot_says_so() {
        let s = QueueStatsSnapshot::default();
        assert_eq!(
            format_snapshot(&s),
            "-: no department has agents or tickets"
        );
    }
}
