//! Where the machine's CPU went during the measurement window, by process name (Linux
//! `/proc`): everything (services, PostgreSQL, Redis, this tool) shares the same cores, so this
//! is the first answer to "what dominates the cost".

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// Clock ticks per second of `/proc/<pid>/stat` times: USER_HZ, 100 on every Linux ABI this
/// runs on (reading sysconf would need unsafe code).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU ticks used so far by each live process: pid → (name, ticks).
pub type Snapshot = HashMap<u32, (String, u64)>;

/// Reads every process's CPU time now; empty where `/proc` is missing.
pub fn snapshot() -> Snapshot {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit between listing and reading: skip it.
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat"))
            && let Some(parsed) = parse_stat(&stat)
        {
            out.insert(pid, parsed);
        }
    }
    out
}

/// The name and user+system ticks from the text of `/proc/<pid>/stat`.
pub fn parse_stat(stat: &str) -> Option<(String, u64)> {
    // The name is in parentheses and may itself hold spaces and parentheses: it ends at the
    // last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state (field 3), ..., utime (14), stime (15).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// CPU used by the processes of one name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuUse {
    /// Process name (`comm`, at most 15 characters).
    pub process: String,
    /// CPU seconds used in the interval.
    pub cpu_seconds: f64,
    /// Those seconds over the interval's length times the CPUs: the share of the machine.
    pub machine_share: f64,
}

/// CPU used between two snapshots `seconds` apart on `cpus` CPUs, by process name, largest
/// first; names under 1% of the machine are summed as "(others)". A process that started in
/// between counts in full; one that ended is missed.
pub fn usage(before: &Snapshot, after: &Snapshot, seconds: f64, cpus: usize) -> Vec<CpuUse> {
    let mut by_name: BTreeMap<&str, u64> = BTreeMap::new();
    for (pid, (name, ticks)) in after {
        let earlier = before
            .get(pid)
            .filter(|(n, _)| n == name)
            .map_or(0, |(_, t)| *t);
        *by_name.entry(name.as_str()).or_default() += ticks.saturating_sub(earlier);
    }
    let capacity = seconds * cpus.max(1) as f64;
    let mut out: Vec<CpuUse> = Vec::new();
    let mut others = 0.0;
    for (name, ticks) in by_name {
        let cpu_seconds = ticks as f64 / TICKS_PER_SECOND;
        let share = if capacity > 0.0 {
            cpu_seconds / capacity
        } else {
            0.0
        };
        if share >= 0.01 {
            out.push(CpuUse {
                process: name.to_owned(),
                cpu_seconds,
                machine_share: share,
            });
        } else {
            others += cpu_seconds;
        }
    }
    out.sort_by(|a, b| b.cpu_seconds.total_cmp(&a.cpu_seconds));
    if others > 0.0 {
        out.push(CpuUse {
            process: "(others)".into(),
            cpu_seconds: others,
            machine_share: if capacity > 0.0 {
                others / capacity
            } else {
                0.0
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_name_and_ticks() {
        let line = "4242 (tierline-ticket) S 1 4242 4242 0 -1 4194560 9000 0 0 0 1500 250 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat(line), Some(("tierline-ticket".into(), 1750)));
        let odd = "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 0 0";
        assert_eq!(parse_stat(odd), Some(("a) b (c)".into(), 7)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn usage_is_the_difference_by_name_largest_first() {
        let before: Snapshot = [
            (1, ("postgres".to_owned(), 100)),
            (2, ("postgres".to_owned(), 50)),
            (3, ("redis-server".to_owned(), 10)),
        ]
        .into();
        let after: Snapshot = [
            (1, ("postgres".to_owned(), 300)),
            (2, ("postgres".to_owned(), 150)),
            (3, ("redis-server".to_owned(), 60)),
            // Started during the interval: all of it counts.
            (4, ("tierline-ticket".to_owned(), 500)),
            (5, ("sleep".to_owned(), 1)),
        ]
        .into();
        let u = usage(&before, &after, 10.0, 2);
        assert_eq!(u[0].process, "tierline-ticket");
        assert_eq!(u[0].cpu_seconds, 5.0);
        assert_eq!(u[0].machine_share, 0.25);
        assert_eq!(u[1].process, "postgres");
        assert_eq!(u[1].cpu_seconds, 3.0);
        assert_eq!(u[2].process, "redis-server");
        assert_eq!(u[3].process, "(others)");
        assert_eq!(u[3].cpu_seconds, 0.01);
    }
}
