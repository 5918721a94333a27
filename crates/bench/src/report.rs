//! The report: figures beside their raw limits, as a table for people and as JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::TierMix;
use crate::cpu::CpuUse;
use crate::limits::Limits;
use crate::stats::{Counts, ErrorCount, LatencySummary};

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The tool's version.
    pub tool_version: String,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// Where it ran.
    pub machine: Machine,
    /// How it was driven.
    pub config: RunConfig,
    /// The raw limits, measured just before the load.
    pub limits: Option<Limits>,
    /// What the load measured; absent with --limits-only.
    pub load: Option<Load>,
    /// Each Tierline figure against its limit.
    pub comparisons: Vec<Comparison>,
}

/// The machine, as far as it can be read from inside.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    /// CPUs available to the process.
    pub cpus: usize,
    /// The CPU model (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Total memory in GiB (`/proc/meminfo`).
    pub memory_gib: f64,
}

impl Machine {
    /// Reads this machine.
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
            memory_gib: memory_kib(&meminfo).map_or(0.0, |kib| kib as f64 / 1024.0 / 1024.0),
        }
    }
}

/// The first `model name` of `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// `MemTotal` of `/proc/meminfo`, in KiB.
pub fn memory_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The settings of the run that shape its figures.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// Calls in flight at once (and the raw limits' concurrency).
    pub callers: usize,
    /// Open-loop rate, if any.
    pub rate_per_second: Option<f64>,
    /// Agent desktops.
    pub agents: usize,
    /// Customers created at setup.
    pub customers: usize,
    /// Their tiers.
    pub tier_mix: TierMix,
    /// Complaint category and its department.
    pub category: String,
    /// The category's department.
    pub department: String,
    /// Warm-up, seconds.
    pub warmup_seconds: f64,
    /// Measurement window, seconds.
    pub duration_seconds: f64,
    /// Agent handling time, seconds.
    pub handle_time_seconds: f64,
    /// Share of offers declined.
    pub decline_share: f64,
    /// Share of calls retried with the same key.
    pub retry_share: f64,
    /// Share of calls from returning customers.
    pub returning_share: f64,
    /// Each raw limit's measurement, seconds.
    pub limit_seconds: f64,
}

/// What the measurement window saw.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    /// Length of the window, seconds.
    pub window_seconds: f64,
    /// Setup time, seconds.
    pub setup_seconds: f64,
    /// New tickets created in the window.
    pub tickets_created: u64,
    /// New tickets per second.
    pub intake_per_second: f64,
    /// CreateTicket latency of new tickets (from the scheduled start in open loop).
    pub intake_latency: LatencySummary,
    /// Retried calls answered with the same ticket.
    pub replays: u64,
    /// Their latency.
    pub replay_latency: LatencySummary,
    /// Retried calls that did not come back as the same ticket (must be 0).
    pub replay_mismatches: u64,
    /// Ticket create_time to its first offer on a desktop stream.
    pub enqueue_to_offer: LatencySummary,
    /// Offers accepted in the window.
    pub assignments: u64,
    /// Accepted offers per second.
    pub assignments_per_second: f64,
    /// Offers declined in the window.
    pub declines: u64,
    /// Tickets resolved in the window.
    pub resolved: u64,
    /// Open loop: calls that started late because every caller was busy.
    pub late_starts: u64,
    /// Open loop: calls scheduled in the run that had not started when it ended.
    pub not_started: u64,
    /// Waiting tickets in the department when the load stopped (a growing queue means agents
    /// could not keep up, and enqueue-to-offer then includes queueing).
    pub waiting_at_end: Option<i64>,
    /// CPU used during the window by process name (services, PostgreSQL, Redis, this tool and
    /// anything else on the machine).
    pub cpu: Vec<CpuUse>,
    /// Totals over the whole run, warm-up included.
    pub totals: Totals,
    /// Failed calls over the whole run (setup excluded: it stops the run), by code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// The same by operation, with a sample message each.
    pub errors: Vec<ErrorCount>,
}

/// Whole-run totals, for the record.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    /// Tickets created.
    pub created: u64,
    /// Retries replayed.
    pub replayed: u64,
    /// Offers received.
    pub offers: u64,
    /// Offers accepted.
    pub accepted: u64,
    /// Offers declined.
    pub declined: u64,
    /// Tickets resolved.
    pub resolved: u64,
    /// Failed calls.
    pub errors: u64,
}

impl From<Counts> for Totals {
    fn from(c: Counts) -> Totals {
        Totals {
            created: c.created,
            replayed: c.replayed,
            offers: c.offers,
            accepted: c.accepted,
            declined: c.declined,
            resolved: c.resolved,
            errors: c.errors,
        }
    }
}

/// How a figure relates to its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RatioKind {
    /// A rate: the figure as a share of the limit (higher is better, 1 is the limit).
    Throughput,
    /// A latency: the figure as a multiple of the raw operation's (lower is better).
    Latency,
}

/// One Tierline figure beside its raw limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// What the figure is.
    pub figure: String,
    /// Its value.
    pub value: f64,
    /// Unit of value and limit ("/s", "ms").
    pub unit: String,
    /// Which limit it is compared with.
    pub limit_name: String,
    /// The limit's value.
    pub limit: f64,
    /// value / limit; absent if the limit is zero.
    pub ratio: Option<f64>,
    /// How to read the ratio.
    pub kind: RatioKind,
}

/// `value / limit`, if that means something.
pub fn ratio(value: f64, limit: f64) -> Option<f64> {
    (limit > 0.0 && value.is_finite() && limit.is_finite()).then(|| value / limit)
}

/// The figures of `load` beside the limits that bound them: intake against raw PostgreSQL,
/// assignments and enqueue-to-offer against raw Redis.
pub fn comparisons(load: &Load, limits: &Limits) -> Vec<Comparison> {
    // (figure, its value, unit, limit name, the limit's value)
    let mut rows: Vec<(&str, f64, &str, &str, f64)> = Vec::new();
    if let Some(pg) = &limits.postgres {
        let (i, l) = (&load.intake_latency, &pg.latency);
        rows.extend([
            (
                "intake",
                load.intake_per_second,
                "/s",
                "raw PostgreSQL",
                pg.per_second,
            ),
            (
                "intake latency p50",
                i.p50_ms,
                "ms",
                "raw PostgreSQL p50",
                l.p50_ms,
            ),
            (
                "intake latency p95",
                i.p95_ms,
                "ms",
                "raw PostgreSQL p95",
                l.p95_ms,
            ),
            (
                "intake latency p99",
                i.p99_ms,
                "ms",
                "raw PostgreSQL p99",
                l.p99_ms,
            ),
            (
                "intake latency max",
                i.max_ms,
                "ms",
                "raw PostgreSQL max",
                l.max_ms,
            ),
        ]);
    }
    if let Some(r) = &limits.redis {
        let (e, l) = (&load.enqueue_to_offer, &r.latency);
        rows.extend([
            (
                "assignments",
                load.assignments_per_second,
                "/s",
                "raw Redis",
                r.per_second,
            ),
            (
                "enqueue-to-offer p50",
                e.p50_ms,
                "ms",
                "raw Redis p50",
                l.p50_ms,
            ),
            (
                "enqueue-to-offer p99",
                e.p99_ms,
                "ms",
                "raw Redis p99",
                l.p99_ms,
            ),
        ]);
    }
    rows.into_iter()
        .map(|(figure, value, unit, limit_name, limit)| Comparison {
            figure: figure.into(),
            value,
            unit: unit.into(),
            limit_name: limit_name.into(),
            limit,
            ratio: ratio(value, limit),
            kind: if unit == "/s" {
                RatioKind::Throughput
            } else {
                RatioKind::Latency
            },
        })
        .collect()
}

/// A ratio for people: a rate as a percentage of its limit, a latency as a multiple.
pub fn format_ratio(ratio: Option<f64>, kind: RatioKind) -> String {
    match (ratio, kind) {
        (None, _) => "n/a".into(),
        (Some(r), RatioKind::Throughput) => format!("{:.1}%", r * 100.0),
        (Some(r), RatioKind::Latency) => format!("{r:.1}x"),
    }
}

/// A value with its unit: rates with one decimal, latencies to three significant digits.
pub fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "ms" => format_ms(value),
        "/s" => format!("{value:.1}/s"),
        other => format!("{value} {other}"),
    }
}

/// Milliseconds to three significant digits ("0.412 ms", "12.3 ms", "1.25 s").
pub fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

/// Rows as an aligned text table under `header`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(header.to_vec())];
    out.push(line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

fn latency_row(name: &str, l: &LatencySummary) -> Vec<String> {
    vec![
        name.into(),
        l.count.to_string(),
        format_ms(l.p50_ms),
        format_ms(l.p95_ms),
        format_ms(l.p99_ms),
        format_ms(l.max_ms),
    ]
}

/// The summary for people.
pub fn format_summary(r: &Report) -> String {
    let mut out = Vec::new();
    out.push(format!(
        "tierline-bench {} · {} · {} CPUs ({}) · {:.0} GiB",
        r.tool_version, r.started_at, r.machine.cpus, r.machine.cpu_model, r.machine.memory_gib
    ));
    let c = &r.config;
    out.push(format!(
        "callers {} ({}) · agents {} · customers {} · handle time {}s · decline {:.0}% · retry {:.0}% · returning {:.0}%",
        c.callers,
        c.rate_per_second
            .map_or_else(|| "closed loop".to_owned(), |r| format!("open loop {r}/s")),
        c.agents,
        c.customers,
        c.handle_time_seconds,
        c.decline_share * 100.0,
        c.retry_share * 100.0,
        c.returning_share * 100.0,
    ));
    if let Some(limits) = &r.limits {
        out.push(String::new());
        out.push("RAW LIMITS".into());
        let rows: Vec<Vec<String>> = [&limits.postgres, &limits.redis]
            .into_iter()
            .flatten()
            .map(|l| {
                vec![
                    l.what.clone(),
                    l.concurrency.to_string(),
                    format!("{:.1}/s", l.per_second),
                    format_ms(l.latency.p50_ms),
                    format_ms(l.latency.p99_ms),
                    l.errors.values().sum::<u64>().to_string(),
                ]
            })
            .collect();
        out.push(table(
            &["limit", "concurrency", "rate", "p50", "p99", "errors"],
            &rows,
        ));
        for p in &limits.problems {
            out.push(format!("! {p}"));
        }
    }
    if let Some(load) = &r.load {
        out.push(String::new());
        out.push(format!(
            "LOAD (steady state: {:.0} s after {:.0} s warm-up)",
            load.window_seconds, c.warmup_seconds
        ));
        out.push(table(
            &["latency", "count", "p50", "p95", "p99", "max"],
            &[
                latency_row("intake (CreateTicket)", &load.intake_latency),
                latency_row("retried call (replay)", &load.replay_latency),
                latency_row("enqueue-to-offer", &load.enqueue_to_offer),
            ],
        ));
        out.push(format!(
            "intake {:.1}/s ({} tickets) · assignments {:.1}/s ({}) · declined {} · resolved {} · replays {} (mismatched {}){}{}",
            load.intake_per_second,
            load.tickets_created,
            load.assignments_per_second,
            load.assignments,
            load.declines,
            load.resolved,
            load.replays,
            load.replay_mismatches,
            if c.rate_per_second.is_some() {
                format!(
                    " · late starts {} · not started by the end {}",
                    load.late_starts, load.not_started
                )
            } else {
                String::new()
            },
            load.waiting_at_end
                .map_or_else(String::new, |w| format!(" · waiting at end {w}")),
        ));
    }
    if let Some(load) = r.load.as_ref().filter(|l| !l.cpu.is_empty()) {
        out.push(String::new());
        out.push("CPU DURING THE WINDOW (by process name; the machine is shared by all)".into());
        let rows: Vec<Vec<String>> = load
            .cpu
            .iter()
            .map(|c| {
                vec![
                    c.process.clone(),
                    format!("{:.1}", c.cpu_seconds),
                    format!("{:.1}%", c.machine_share * 100.0),
                ]
            })
            .collect();
        out.push(table(
            &["process", "cpu seconds", "share of machine"],
            &rows,
        ));
    }
    if !r.comparisons.is_empty() {
        out.push(String::new());
        out.push("TIERLINE AGAINST THE RAW LIMITS".into());
        let rows: Vec<Vec<String>> = r
            .comparisons
            .iter()
            .map(|c| {
                vec![
                    c.figure.clone(),
                    format_value(c.value, &c.unit),
                    c.limit_name.clone(),
                    format_value(c.limit, &c.unit),
                    format_ratio(c.ratio, c.kind),
                ]
            })
            .collect();
        out.push(table(
            &["figure", "tierline", "limit", "limit value", "ratio"],
            &rows,
        ));
    }
    if let Some(load) = &r.load {
        out.push(String::new());
        if load.errors.is_empty() {
            out.push("ERRORS: none".into());
        } else {
            out.push(format!(
                "ERRORS: {} failed calls over the whole run, by code: {}",
                load.errors.iter().map(|e| e.count).sum::<u64>(),
                load.errors_by_code
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let rows: Vec<Vec<String>> = load
                .errors
                .iter()
                .map(|e| {
                    vec![
                        e.operation.clone(),
                        e.code.clone(),
                        e.count.to_string(),
                        e.sample.clone(),
                    ]
                })
                .collect();
            out.push(table(
                &["operation", "code", "count", "first message"],
                &rows,
            ));
        }
    }
    out.join("\n")
}

/// The progress line printed every second.
pub fn progress_line(elapsed_s: u64, phase: &str, per_s: &Counts, total: &Counts) -> String {
    format!(
        "[{elapsed_s:>4}s {phase:<7}] intake {:>6}/s  replays {:>4}/s  offers {:>6}/s  assigned {:>6}/s  resolved {:>6}/s  | created {:>8}  errors {}",
        per_s.created,
        per_s.replayed,
        per_s.offers,
        per_s.accepted,
        per_s.resolved,
        total.created,
        total.errors
    )
}

/// Counter increase from `before` to `after`.
pub fn delta(after: &Counts, before: &Counts) -> Counts {
    Counts {
        created: after.created.saturating_sub(before.created),
        replayed: after.replayed.saturating_sub(before.replayed),
        offers: after.offers.saturating_sub(before.offers),
        accepted: after.accepted.saturating_sub(before.accepted),
        declined: after.declined.saturating_sub(before.declined),
        resolved: after.resolved.saturating_sub(before.resolved),
        errors: after.errors.saturating_sub(before.errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::RawLimit;

    fn limit(what: &str, per_second: f64, p50: f64, p99: f64) -> RawLimit {
        RawLimit {
            what: what.into(),
            concurrency: 8,
            seconds: 10.0,
            operations: (per_second * 10.0) as u64,
            per_second,
            latency: LatencySummary {
                count: 10,
                mean_ms: p50,
                p50_ms: p50,
                p95_ms: p99,
                p99_ms: p99,
                max_ms: p99,
            },
            errors: BTreeMap::new(),
        }
    }

    fn load() -> Load {
        Load {
            window_seconds: 60.0,
            setup_seconds: 3.0,
            tickets_created: 30_000,
            intake_per_second: 500.0,
            intake_latency: LatencySummary {
                count: 30_000,
                mean_ms: 12.0,
                p50_ms: 10.0,
                p95_ms: 20.0,
                p99_ms: 30.0,
                max_ms: 80.0,
            },
            replays: 0,
            replay_latency: LatencySummary::default(),
            replay_mismatches: 0,
            enqueue_to_offer: LatencySummary {
                count: 29_000,
                mean_ms: 2.0,
                p50_ms: 2.0,
                p95_ms: 3.0,
                p99_ms: 4.0,
                max_ms: 9.0,
            },
            assignments: 27_000,
            assignments_per_second: 450.0,
            declines: 1_000,
            resolved: 26_900,
            late_starts: 0,
            not_started: 0,
            waiting_at_end: Some(3),
            cpu: vec![CpuUse {
                process: "postgres".into(),
                cpu_seconds: 30.0,
                machine_share: 0.25,
            }],
            totals: Totals::default(),
            errors_by_code: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn ratios_are_shares_of_rates_and_multiples_of_latencies() {
        assert_eq!(ratio(500.0, 2000.0), Some(0.25));
        assert_eq!(ratio(5.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        assert_eq!(format_ratio(Some(0.25), RatioKind::Throughput), "25.0%");
        assert_eq!(format_ratio(Some(4.0), RatioKind::Latency), "4.0x");
        assert_eq!(format_ratio(None, RatioKind::Latency), "n/a");
    }

    #[test]
    fn each_figure_is_set_beside_its_limit() {
        let limits = Limits {
            postgres: Some(limit("PostgreSQL: ticket", 2000.0, 2.5, 10.0)),
            redis: Some(limit("Redis: script", 9000.0, 0.5, 1.0)),
            problems: vec![],
        };
        let c = comparisons(&load(), &limits);
        assert_eq!(c.len(), 8);
        assert_eq!(c[0].figure, "intake");
        assert_eq!(c[0].ratio, Some(0.25));
        assert_eq!(c[0].kind, RatioKind::Throughput);
        assert_eq!(c[0].limit_name, "raw PostgreSQL");
        assert_eq!(c[1].ratio, Some(4.0), "p50 10 ms against 2.5 ms");
        assert_eq!(c[3].ratio, Some(3.0), "p99 30 ms against 10 ms");
        assert_eq!(c[5].figure, "assignments");
        assert_eq!(c[5].ratio, Some(0.05));
        assert_eq!(c[7].ratio, Some(4.0), "e2o p99 4 ms against 1 ms");
        // A missing limit leaves its figures out rather than inventing one.
        let only_pg = Limits {
            redis: None,
            ..limits
        };
        assert_eq!(comparisons(&load(), &only_pg).len(), 5);
    }

    #[test]
    fn latencies_print_to_three_significant_digits() {
        assert_eq!(format_ms(0.4123), "0.412 ms");
        assert_eq!(format_ms(4.123), "4.12 ms");
        assert_eq!(format_ms(12.34), "12.3 ms");
        assert_eq!(format_ms(123.4), "123 ms");
        assert_eq!(format_ms(1250.0), "1.25 s");
        assert_eq!(format_value(512.04, "/s"), "512.0/s");
    }

    #[test]
    fn tables_align_their_columns() {
        let t = table(
            &["a", "bb"],
            &[
                vec!["long cell".into(), "x".into()],
                vec!["y".into(), "zz".into()],
            ],
        );
        assert_eq!(
            t,
            "a          bb\n---------  --\nlong cell  x\ny          zz"
        );
    }

    #[test]
    fn the_summary_shows_limits_figures_ratios_and_errors() {
        let limits = Limits {
            postgres: Some(limit("PostgreSQL: ticket", 2000.0, 2.5, 10.0)),
            redis: None,
            problems: vec!["raw Redis limit not measured: refused".into()],
        };
        let mut l = load();
        l.errors = vec![ErrorCount {
            operation: "CreateTicket".into(),
            code: "UNAVAILABLE".into(),
            count: 3,
            sample: "router down".into(),
        }];
        l.errors_by_code.insert("UNAVAILABLE".into(), 3);
        let r = Report {
            tool_version: "0.1.0".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            machine: Machine {
                cpus: 2,
                cpu_model: "Test CPU".into(),
                memory_gib: 24.0,
            },
            config: RunConfig {
                callers: 8,
                rate_per_second: None,
                agents: 50,
                customers: 500,
                tier_mix: TierMix {
                    a: 10,
                    b: 30,
                    c: 60,
                },
                category: "billing".into(),
                department: "customer_service".into(),
                warmup_seconds: 10.0,
                duration_seconds: 60.0,
                handle_time_seconds: 0.05,
                decline_share: 0.05,
                retry_share: 0.02,
                returning_share: 0.7,
                limit_seconds: 10.0,
            },
            comparisons: comparisons(&l, &limits),
            limits: Some(limits),
            load: Some(l),
        };
        let text = format_summary(&r);
        assert!(text.contains("2 CPUs (Test CPU)"), "{text}");
        assert!(
            text.contains("! raw Redis limit not measured: refused"),
            "{text}"
        );
        assert!(text.contains("intake 500.0/s (30000 tickets)"), "{text}");
        assert!(text.contains("25.0%"), "{text}");
        assert!(
            text.contains("ERRORS: 3 failed calls over the whole run, by code: UNAVAILABLE 3"),
            "{text}"
        );
        assert!(text.contains("router down"), "{text}");
        assert!(text.contains("postgres  30.0         25.0%"), "{text}");
        let json = serde_json::to_value(&r).expect("serialises");
        assert_eq!(json["comparisons"][0]["kind"], "throughput");
        assert_eq!(json["load"]["errors_by_code"]["UNAVAILABLE"], 3);
    }

    #[test]
    fn machine_facts_are_read_from_proc() {
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n").as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(
            memory_kib("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24_576_000)
        );
        assert_eq!(cpu_model(""), None);
    }

    #[test]
    fn progress_shows_rates_and_totals() {
        let before = Counts {
            created: 100,
            ..Default::default()
        };
        let after = Counts {
            created: 612,
            errors: 1,
            ..Default::default()
        };
        let line = progress_line(12, "measure", &delta(&after, &before), &after);
        assert!(line.starts_with("[  12s measure]"), "{line}");
        assert!(line.contains("intake    512/s"), "{line}");
        assert!(line.ends_with("errors 1"), "{line}");
    }
}
