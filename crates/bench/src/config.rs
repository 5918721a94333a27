//! The command line: what to drive, how hard, for how long, and where the raw limits are
//! measured.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Drives the running Tierline services the way real clients do (IVR callers creating
/// complaints, agent desktops taking and resolving them) and reports intake throughput and
/// latency, enqueue-to-offer latency, assignments per second and errors by status code, each
/// beside the raw PostgreSQL or Redis limit measured on the same machine just before the load.
///
/// Phases: raw limits (unless --no-limits), setup (customers and agents), warm-up, measurement,
/// drain. A progress line is printed every second; a summary table at the end, and the same
/// report as JSON with --out.
#[derive(Debug, Clone, Parser)]
#[command(name = "tierline-bench", version, args_override_self = true)]
pub struct Args {
    /// Address of the customer-profile service (host:port or http://host:port).
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "ADDR")]
    pub customer_addr: String,
    /// Address of the ticket service.
    #[arg(long, default_value = "127.0.0.1:50052", value_name = "ADDR")]
    pub ticket_addr: String,
    /// Address of the routing service.
    #[arg(long, default_value = "127.0.0.1:50053", value_name = "ADDR")]
    pub routing_addr: String,

    /// Simulated IVR callers: calls in flight at once. Closed loop (each caller places its next
    /// call as soon as the last one is answered) unless --rate is given; also the concurrency of
    /// the raw limits.
    #[arg(long, default_value_t = 8, value_parser = positive_usize)]
    pub callers: usize,
    /// Open loop: start this many calls per second on a fixed schedule, whatever the answers
    /// take (latency is counted from each call's scheduled start, so a slow service is not
    /// hidden by callers waiting for it). At most --callers calls are in flight; calls that
    /// cannot start on time queue and their wait counts.
    #[arg(long, value_name = "PER_SECOND", value_parser = positive_f64)]
    pub rate: Option<f64>,
    /// Simulated agent desktops: each holds an OpenSession stream open and takes one voice call
    /// at a time. 0 measures intake alone: tickets wait in the queue, and no agent's work
    /// competes with the callers for the machine.
    #[arg(long, default_value_t = 50)]
    pub agents: usize,
    /// Customers created at setup, spread over the tiers by --tier-mix; returning callers call
    /// from their numbers.
    #[arg(long, default_value_t = 500, value_parser = positive_usize)]
    pub customers: usize,
    /// Shares of tiers A, B and C among the customers, in percent ("10,30,60").
    #[arg(long, default_value = "10,30,60", value_parser = parse_tier_mix)]
    pub tier_mix: TierMix,
    /// Category of the complaints; the agents serve its department.
    #[arg(long, default_value = "billing")]
    pub category: String,

    /// Length of the measurement window, after the warm-up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Load before the measurement window starts; nothing in it is counted.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// How long an agent works a ticket between accepting it and resolving it.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub handle_time: Duration,
    /// Share of offers the agents decline (0-1); a declined ticket is offered to another agent.
    #[arg(long, default_value_t = 0.05, value_parser = share)]
    pub decline_share: f64,
    /// Share of calls the IVR sends again with the same idempotency key, as after a timeout
    /// (0-1); each must come back as the same ticket with `replayed` set.
    #[arg(long, default_value_t = 0.02, value_parser = share)]
    pub retry_share: f64,
    /// Share of calls from a customer created at setup (0-1); the others come from new numbers
    /// and get a new prospect profile.
    #[arg(long, default_value_t = 0.7, value_parser = share)]
    pub returning_share: f64,
    /// Deadline of each call to the services.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// PostgreSQL superuser URL for the raw limit: a scratch database is created there and
    /// dropped afterwards.
    #[arg(
        long,
        env = "TIERLINE_PG_ADMIN_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Redis URL for the raw limit, on a key prefix of its own that is deleted afterwards.
    #[arg(
        long,
        env = "TIERLINE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// How long each raw limit is measured (after a short warm-up of its own).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub limit_duration: Duration,
    /// Skip the raw limits (the report then has no ratios).
    #[arg(long, conflicts_with = "limits_only")]
    pub no_limits: bool,
    /// Measure the raw limits only; no services are needed.
    #[arg(long)]
    pub limits_only: bool,

    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Shares of the tiers among the customers created at setup, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TierMix {
    /// Tier A.
    pub a: u32,
    /// Tier B.
    pub b: u32,
    /// Tier C.
    pub c: u32,
}

impl TierMix {
    /// The tier of the `i`-th of `n` customers: the first `a` percent are A, and so on, so the
    /// counts are exact rather than drawn.
    pub fn tier_of(&self, i: usize, n: usize) -> Tier {
        let total = u64::from(self.a + self.b + self.c).max(1);
        let i = i as u64;
        let n = n as u64;
        // The boundary of tier A at i < n * a / total, without floating point.
        if i * total < n * u64::from(self.a) {
            Tier::A
        } else if i * total < n * u64::from(self.a + self.b) {
            Tier::B
        } else {
            Tier::C
        }
    }
}

/// The customer tiers (the protos' `Tier` without UNSPECIFIED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The most valuable customers.
    A,
    /// The middle.
    B,
    /// Everyone else.
    C,
}

impl Tier {
    /// Wire value of `tierline.common.v1.Tier`.
    pub fn wire(self) -> i32 {
        use tierline_proto::common::Tier as Pb;
        match self {
            Tier::A => Pb::A as i32,
            Tier::B => Pb::B as i32,
            Tier::C => Pb::C as i32,
        }
    }
}

fn parse_tier_mix(raw: &str) -> Result<TierMix, String> {
    let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
    let [a, b, c] = parts.as_slice() else {
        return Err(format!(
            "expected three percentages A,B,C such as 10,30,60, got {raw:?}"
        ));
    };
    let num = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("{s:?} is not a whole percentage"))
    };
    let mix = TierMix {
        a: num(a)?,
        b: num(b)?,
        c: num(c)?,
    };
    if mix.a + mix.b + mix.c != 100 {
        return Err(format!(
            "the shares must add up to 100, got {}",
            mix.a + mix.b + mix.c
        ));
    }
    Ok(mix)
}

fn share(raw: &str) -> Result<f64, String> {
    let v: f64 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("a share is between 0 and 1, got {v}"))
    }
}

fn positive_f64(raw: &str) -> Result<f64, String> {
    let v: f64 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a number"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("must be above 0, got {raw}"))
    }
}

fn positive_usize(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("{raw:?} is not a whole number")),
    }
}

/// A service address as a URL tonic connects to: `host:port` gets `http://`.
pub fn endpoint_url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("tierline-bench").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_need_no_flags() {
        let a = parse(&[]).expect("defaults");
        assert_eq!(a.ticket_addr, "127.0.0.1:50052");
        assert_eq!(a.callers, 8);
        assert_eq!(a.rate, None);
        assert_eq!(a.duration, Duration::from_secs(60));
        assert_eq!(a.warmup, Duration::from_secs(10));
        assert_eq!(
            a.tier_mix,
            TierMix {
                a: 10,
                b: 30,
                c: 60
            }
        );
        assert!(!a.no_limits && !a.limits_only);
    }

    #[test]
    fn flags_are_read_and_checked() {
        let a = parse(&[
            "--callers",
            "32",
            "--rate",
            "250.5",
            "--duration",
            "2m",
            "--handle-time",
            "1s 500ms",
            "--decline-share",
            "0.1",
            "--tier-mix",
            "20, 30, 50",
            "--out",
            "r.json",
        ])
        .expect("valid");
        assert_eq!(a.callers, 32);
        assert_eq!(a.rate, Some(250.5));
        assert_eq!(a.duration, Duration::from_secs(120));
        assert_eq!(a.handle_time, Duration::from_millis(1500));
        assert_eq!(a.decline_share, 0.1);
        assert_eq!(a.tier_mix.a, 20);
        assert_eq!(a.out, Some(PathBuf::from("r.json")));

        for bad in [
            &["--callers", "0"][..],
            &["--rate", "0"],
            &["--rate", "-3"],
            &["--decline-share", "1.5"],
            &["--retry-share", "x"],
            &["--tier-mix", "10,30"],
            &["--tier-mix", "10,30,50"],
            &["--duration", "soon"],
            &["--no-limits", "--limits-only"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn tiers_are_spread_exactly_by_the_mix() {
        let mix = TierMix {
            a: 10,
            b: 30,
            c: 60,
        };
        let n = 200;
        let count = |t: Tier| (0..n).filter(|&i| mix.tier_of(i, n) == t).count();
        assert_eq!(
            (count(Tier::A), count(Tier::B), count(Tier::C)),
            (20, 60, 120)
        );
        let all_c = TierMix { a: 0, b: 0, c: 100 };
        assert!((0..7).all(|i| all_c.tier_of(i, 7) == Tier::C));
    }

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(endpoint_url("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(endpoint_url("http://h:1"), "http://h:1");
    }
}
