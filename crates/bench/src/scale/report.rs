//! A scenario's report: figures, each beside its target or limit with the ratio, and the
//! scenario's details; printed as a table, written as JSON.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::probe::Machine;
use crate::cpu::CpuUse;
use crate::stats::LatencySummary;

/// How a figure compares with what it is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Met when value / against >= the bound.
    AtLeast,
    /// Met when value / against <= the bound.
    AtMost,
    /// Shown for information, no verdict.
    None,
}

/// One figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What it is.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit ("/s", "ms", "bytes", "s").
    pub unit: String,
    /// What it is compared with ("raw Redis script rate", "at 1,000 queued"), if anything.
    pub against: Option<String>,
    /// That value, in the same unit.
    pub against_value: Option<f64>,
    /// value / against_value.
    pub ratio: Option<f64>,
    /// The target on the ratio (or on the value itself when there is no `against`).
    pub goal: Goal,
    /// The bound of the target.
    pub bound: Option<f64>,
    /// Whether the target is met.
    pub met: Option<bool>,
}

impl Figure {
    /// A figure without a comparison.
    pub fn plain(name: &str, value: f64, unit: &str) -> Figure {
        Figure {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            against: None,
            against_value: None,
            ratio: None,
            goal: Goal::None,
            bound: None,
            met: None,
        }
    }

    /// A figure beside `against` (same unit), with the ratio.
    pub fn versus(name: &str, value: f64, unit: &str, against: &str, against_value: f64) -> Figure {
        Figure {
            against: Some(against.to_owned()),
            against_value: Some(against_value),
            ratio: (against_value > 0.0).then(|| value / against_value),
            ..Figure::plain(name, value, unit)
        }
    }

    /// Holds the ratio (or, without a comparison, the value) to `goal` `bound`.
    pub fn target(mut self, goal: Goal, bound: f64) -> Figure {
        self.goal = goal;
        self.bound = Some(bound);
        let x = if self.against.is_some() {
            self.ratio
        } else {
            Some(self.value)
        };
        self.met = x.map(|x| match goal {
            Goal::AtLeast => x >= bound,
            Goal::AtMost => x <= bound,
            Goal::None => true,
        });
        self
    }
}

/// A scenario's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// depth, desktops, decisions, rebuild.
    pub scenario: String,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// The machine then.
    pub machine: Machine,
    /// The figures.
    pub figures: Vec<Figure>,
    /// CPU by process during the measured part.
    pub cpu: Vec<CpuUse>,
    /// Seconds the CPU figures cover.
    pub cpu_seconds: f64,
    /// Everything else the scenario measured or was run with.
    pub details: serde_json::Value,
    /// Notes (errors, caveats).
    pub notes: Vec<String>,
}

impl Report {
    /// An empty report of `scenario`, started now.
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_owned(),
            started_at: now_rfc3339(),
            machine: Machine::read(),
            figures: Vec::new(),
            cpu: Vec::new(),
            cpu_seconds: 0.0,
            details: serde_json::Value::Null,
            notes: Vec::new(),
        }
    }

    /// The report as a text table.
    pub fn table(&self) -> String {
        let mut rows = Vec::new();
        for f in &self.figures {
            rows.push(vec![
                f.name.clone(),
                format_value(f.value, &f.unit),
                f.against.clone().unwrap_or_default(),
                f.against_value
                    .map(|v| format_value(v, &f.unit))
                    .unwrap_or_default(),
                f.ratio.map(format_ratio).unwrap_or_default(),
                target_text(f),
            ]);
        }
        let mut out = format!(
            "\n{} (started {}, {} CPUs, load {:.2} {:.2} {:.2})\n\n",
            self.scenario,
            self.started_at,
            self.machine.cpus,
            self.machine.load_average[0],
            self.machine.load_average[1],
            self.machine.load_average[2]
        );
        out.push_str(&table(
            &[
                "figure",
                "value",
                "compared with",
                "its value",
                "ratio",
                "target",
            ],
            &rows,
        ));
        if !self.cpu.is_empty() {
            out.push_str(&format!(
                "\nCPU during the measured part ({:.1} s, {:.0} CPU-seconds available):\n\n",
                self.cpu_seconds,
                self.cpu_seconds * self.machine.cpus as f64
            ));
            let rows: Vec<Vec<String>> = self
                .cpu
                .iter()
                .map(|c| {
                    vec![
                        c.process.clone(),
                        format!("{:.1}", c.cpu_seconds),
                        format!("{:.1} %", c.machine_share * 100.0),
                    ]
                })
                .collect();
            out.push_str(&table(&["process", "CPU s", "share of machine"], &rows));
        }
        for n in &self.notes {
            out.push_str(&format!("\nnote: {n}"));
        }
        out.push('\n');
        out
    }

    /// Writes the report as JSON.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).context("encoding the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

fn target_text(f: &Figure) -> String {
    let Some(bound) = f.bound else {
        return String::new();
    };
    let on = if f.against.is_some() {
        format_ratio(bound)
    } else {
        format_value(bound, &f.unit)
    };
    let verdict = match f.met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "?",
    };
    match f.goal {
        Goal::AtLeast => format!(">= {on}: {verdict}"),
        Goal::AtMost => format!("<= {on}: {verdict}"),
        Goal::None => String::new(),
    }
}

/// A ratio: a percentage below 2, a multiple from 2.
pub fn format_ratio(r: f64) -> String {
    if r < 2.0 {
        format!("{:.1} %", r * 100.0)
    } else {
        format!("{r:.2}x")
    }
}

/// A value with its unit, to three significant digits for small ones.
pub fn format_value(v: f64, unit: &str) -> String {
    let n = if v.abs() >= 1000.0 {
        group(v.round() as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    };
    match unit {
        "" => n,
        "/s" => format!("{n}/s"),
        u => format!("{n} {u}"),
    }
}

fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A plain text table with aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            s.push_str(&format!("{cell:<w$}"));
            if i + 1 < cells.len() {
                s.push_str("  ");
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// p50 and p99 latency figures of `what`, each beside `base` (same percentiles) if given.
pub fn latency_figures(
    what: &str,
    l: &LatencySummary,
    base: Option<(&str, &LatencySummary)>,
    bound: Option<f64>,
) -> Vec<Figure> {
    [
        ("p50", l.p50_ms, base.map(|(_, b)| b.p50_ms)),
        ("p99", l.p99_ms, base.map(|(_, b)| b.p99_ms)),
    ]
    .into_iter()
    .map(|(p, v, b)| {
        let name = format!("{what} {p}");
        let f = match (base, b) {
            (Some((against, _)), Some(b)) => {
                Figure::versus(&name, v, "ms", &format!("{against} {p}"), b)
            }
            _ => Figure::plain(&name, v, "ms"),
        };
        match bound {
            Some(bound) => f.target(Goal::AtMost, bound),
            None => f,
        }
    })
    .collect()
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's algorithm), so no date crate is needed for one timestamp.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_carry_ratio_and_verdict() {
        let f = Figure::versus("offers", 3000.0, "/s", "raw Redis", 10_000.0)
            .target(Goal::AtLeast, 0.3);
        assert_eq!(f.ratio, Some(0.3));
        assert_eq!(f.met, Some(true));
        let f = Figure::versus("p99", 4.0, "ms", "at 1,000", 2.0).target(Goal::AtMost, 1.5);
        assert_eq!(f.met, Some(false));
        let f = Figure::plain("rebuild", 12.0, "s").target(Goal::AtMost, 10.0);
        assert_eq!(f.met, Some(false));
        assert_eq!(target_text(&f), "<= 10.0 s: MISSED");
    }

    #[test]
    fn values_and_ratios_print_readably() {
        assert_eq!(format_value(1_234_567.0, ""), "1,234,567");
        assert_eq!(format_value(12.345, "ms"), "12.3 ms");
        assert_eq!(format_value(0.4321, "ms"), "0.432 ms");
        assert_eq!(format_value(250.0, "/s"), "250/s");
        assert_eq!(format_ratio(0.123), "12.3 %");
        assert_eq!(format_ratio(2.5), "2.50x");
    }

    #[test]
    fn tables_align() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\n---  --\nxxx  y\n");
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }
}
