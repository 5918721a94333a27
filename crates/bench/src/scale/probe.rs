//! Measuring from outside: Redis memory (INFO memory, MEMORY USAGE of the run's keys), the
//! routing process's resident memory (`/proc/<pid>/status`), and the machine's load.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use redis::aio::ConnectionManager;
use serde::Serialize;

/// Redis, for measuring the keys under one prefix.
#[derive(Clone)]
pub struct RedisProbe {
    conn: ConnectionManager,
    prefix: String,
}

/// One key's memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyMemory {
    /// The key's name after `<prefix>{<prefix>rt}:` (`tickets`, `queue:customer_service`).
    pub key: String,
    /// Entries (HLEN, ZCARD, SCARD; 1 for a string).
    pub entries: u64,
    /// MEMORY USAGE with every entry counted (SAMPLES 0).
    pub bytes: u64,
}

impl RedisProbe {
    /// Connects to `url` for the keys under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisProbe> {
        if prefix.is_empty() || prefix.contains(['*', '?', '[']) {
            bail!("--redis-prefix {prefix:?} must be a plain, non-empty prefix");
        }
        let client = redis::Client::open(url).with_context(|| format!("redis url {url:?}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(30)));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .with_context(|| format!("cannot connect to Redis at {url}"))?;
        Ok(RedisProbe {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    /// The name of one of the router's keys: `<prefix>{<prefix>rt}:<name>` (see the routing
    /// service's live/keys.rs).
    pub fn key(&self, name: &str) -> String {
        format!("{p}{{{p}rt}}:{name}", p = self.prefix)
    }

    /// `used_memory` from INFO memory, in bytes: the whole server's, so other work on the
    /// same Redis shows in it.
    pub async fn used_memory(&self) -> Result<u64> {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.conn.clone())
            .await
            .context("INFO memory")?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .context("INFO memory has no used_memory")
    }

    /// Every key under the prefix.
    pub async fn keys(&self) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .context("SCAN")?;
            out.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// MEMORY USAGE (exact) and entry count of every key under the prefix, largest first.
    pub async fn key_memory(&self) -> Result<Vec<KeyMemory>> {
        let mut conn = self.conn.clone();
        let base = self.key("");
        let mut out = Vec::new();
        for key in self.keys().await? {
            let (kind, bytes): (String, Option<u64>) = redis::pipe()
                .cmd("TYPE")
                .arg(&key)
                .cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut conn)
                .await
                .with_context(|| format!("MEMORY USAGE {key}"))?;
            let count = match kind.as_str() {
                "hash" => "HLEN",
                "zset" => "ZCARD",
                "set" => "SCARD",
                _ => "",
            };
            let entries: u64 = if count.is_empty() {
                1
            } else {
                redis::cmd(count)
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .with_context(|| format!("{count} {key}"))?
            };
            out.push(KeyMemory {
                key: key.strip_prefix(&base).unwrap_or(&key).to_owned(),
                entries,
                bytes: bytes.unwrap_or(0),
            });
        }
        out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.key.cmp(&b.key)));
        Ok(out)
    }

    /// Deletes every key under the prefix in one UNLINK (atomic: the router never sees half
    /// of its state), as a lost or flushed Redis would leave it. Only this prefix: the Redis
    /// is shared. Returns how many keys went.
    pub async fn delete_all(&self) -> Result<usize> {
        let keys = self.keys().await?;
        if keys.is_empty() {
            return Ok(0);
        }
        let _: u64 = redis::cmd("UNLINK")
            .arg(&keys)
            .query_async(&mut self.conn.clone())
            .await
            .context("UNLINK")?;
        Ok(keys.len())
    }

    /// Whether the key `<prefix>{<prefix>rt}:<name>` exists.
    pub async fn exists(&self, name: &str) -> Result<bool> {
        let n: u64 = redis::cmd("EXISTS")
            .arg(self.key(name))
            .query_async(&mut self.conn.clone())
            .await
            .context("EXISTS")?;
        Ok(n > 0)
    }

    /// ZCARD of `<prefix>{<prefix>rt}:<name>`.
    pub async fn zcard(&self, name: &str) -> Result<u64> {
        redis::cmd("ZCARD")
            .arg(self.key(name))
            .query_async(&mut self.conn.clone())
            .await
            .context("ZCARD")
    }
}

/// The bytes of the keys whose names start with one of `names` (`queue:`, `tickets`).
pub fn bytes_of(keys: &[KeyMemory], names: &[&str]) -> u64 {
    keys.iter()
        .filter(|k| names.iter().any(|n| k.key.starts_with(n)))
        .map(|k| k.bytes)
        .sum()
}

/// Resident memory of a process in bytes (VmRSS in `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// VmRSS of a `/proc/<pid>/status` text, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The routing process: `given`, else the one process whose command is tierline-routing.
pub fn routing_pid(given: Option<u32>) -> Result<u32> {
    if let Some(pid) = given {
        return Ok(pid);
    }
    let mut found: Vec<u32> = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .context("reading /proc")?
        .flatten()
    {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // comm is cut to 15 characters: "tierline-routin".
        if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm"))
            && comm.trim_end() == "tierline-routin"
        {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no tierline-routing process found; pass --routing-pid"),
        many => bail!("several tierline-routing processes ({many:?}); pass --routing-pid"),
    }
}

/// The machine when the scenario started.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs available.
    pub cpus: usize,
    /// 1-, 5- and 15-minute load averages (`/proc/loadavg`).
    pub load_average: [f64; 3],
}

impl Machine {
    /// Reads it now.
    pub fn read() -> Machine {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let mut it = load.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_average: [
                it.next().unwrap_or(0.0),
                it.next().unwrap_or(0.0),
                it.next().unwrap_or(0.0),
            ],
        }
    }
}

/// Sums of key memory by kind of key, for the report.
pub fn by_kind(keys: &[KeyMemory]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for k in keys {
        let kind = k.key.split(':').next().unwrap_or("").to_owned();
        *out.entry(kind).or_default() += k.bytes;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status =
            "Name:\ttierline-routin\nVmPeak:\t  200000 kB\nVmRSS:\t   51234 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(51234 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn key_memory_is_summed_by_kind() {
        let keys = vec![
            KeyMemory {
                key: "queue:customer_service".into(),
                entries: 10,
                bytes: 100,
            },
            KeyMemory {
                key: "waiting:customer_service:A".into(),
                entries: 1,
                bytes: 10,
            },
            KeyMemory {
                key: "waiting:customer_service:B".into(),
                entries: 2,
                bytes: 20,
            },
            KeyMemory {
                key: "tickets".into(),
                entries: 12,
                bytes: 1000,
            },
        ];
        assert_eq!(bytes_of(&keys, &["queue:", "tickets"]), 1100);
        let kinds = by_kind(&keys);
        assert_eq!(kinds.get("waiting"), Some(&30));
        assert_eq!(kinds.get("tickets"), Some(&1000));
    }

    #[test]
    fn the_machine_is_read_from_proc() {
        let m = Machine::read();
        assert!(m.cpus >= 1);
    }
}
