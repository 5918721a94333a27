//! What the simulated clients observe: latency histograms and counts inside the measurement
//! window, live counters for the progress line, errors by status code, and the matching of a
//! ticket's creation to its first offer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to one hour, to three significant digits.
const HIGHEST_US: u64 = 3_600_000_000;

/// A latency distribution.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty distribution.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts; a failure would be a bug here.
        let h = Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid histogram bounds");
        Latency(h)
    }

    /// Records one observation (saturating at an hour, never failing mid-run).
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.0.saturating_record(us.min(HIGHEST_US));
    }

    /// Adds another distribution's observations.
    pub fn merge(&mut self, other: &Latency) {
        // Both have the same bounds, which is all `add` checks, so it cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Observations recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Percentiles in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.0.len(),
            mean_ms: self.0.mean() / 1000.0,
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p95_ms: ms(self.0.value_at_quantile(0.95)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            max_ms: ms(self.0.max()),
        }
    }
}

/// A latency distribution reduced to what the report shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Observations.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest observation.
    pub max_ms: f64,
}

/// The steady-state window: only what completes inside it is counted in the report.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// End of the warm-up.
    pub start: Instant,
    /// End of the measurement.
    pub end: Instant,
}

impl Window {
    /// The window after `warmup` from `now`, lasting `duration`.
    pub fn after(now: Instant, warmup: Duration, duration: Duration) -> Window {
        Window {
            start: now + warmup,
            end: now + warmup + duration,
        }
    }

    /// Whether `at` falls inside.
    pub fn contains(&self, at: Instant) -> bool {
        at >= self.start && at < self.end
    }

    /// Its length in seconds.
    pub fn seconds(&self) -> f64 {
        self.end.duration_since(self.start).as_secs_f64()
    }
}

/// Running totals since the start, read once a second for the progress line.
#[derive(Debug, Default)]
pub struct Live {
    /// Tickets created (not replays).
    pub created: AtomicU64,
    /// Retried calls answered with the same ticket.
    pub replayed: AtomicU64,
    /// Offers received by the desktops.
    pub offers: AtomicU64,
    /// Offers accepted.
    pub accepted: AtomicU64,
    /// Offers declined.
    pub declined: AtomicU64,
    /// Tickets resolved.
    pub resolved: AtomicU64,
    /// Failed calls of any kind.
    pub errors: AtomicU64,
}

impl Live {
    /// A snapshot of the counters.
    pub fn snapshot(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            created: get(&self.created),
            replayed: get(&self.replayed),
            offers: get(&self.offers),
            accepted: get(&self.accepted),
            declined: get(&self.declined),
            resolved: get(&self.resolved),
            errors: get(&self.errors),
        }
    }
}

/// Plain values of [`Live`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// See [`Live::created`].
    pub created: u64,
    /// See [`Live::replayed`].
    pub replayed: u64,
    /// See [`Live::offers`].
    pub offers: u64,
    /// See [`Live::accepted`].
    pub accepted: u64,
    /// See [`Live::declined`].
    pub declined: u64,
    /// See [`Live::resolved`].
    pub resolved: u64,
    /// See [`Live::errors`].
    pub errors: u64,
}

/// What the measurement window saw.
#[derive(Debug, Default)]
pub struct Measured {
    /// CreateTicket of a new ticket, from (scheduled) start to answer.
    pub intake: Latency,
    /// CreateTicket sent again with the same key, start to answer.
    pub replay: Latency,
    /// Ticket create_time (from the CreateTicket reply) to the first offer on a stream.
    pub enqueue_to_offer: Latency,
    /// Offers accepted (AcceptOffer answered).
    pub assignments: u64,
    /// Offers declined.
    pub declines: u64,
    /// Tickets resolved.
    pub resolved: u64,
    /// Retried calls answered with another ticket or without `replayed`.
    pub replay_mismatches: u64,
    /// Open loop: calls that started later than scheduled because every caller was busy.
    pub late_starts: u64,
}

/// Everything the run records. Shared by every simulated client.
#[derive(Debug)]
pub struct Stats {
    /// The measurement window.
    pub window: Window,
    /// Totals for the progress line.
    pub live: Live,
    measured: Mutex<Measured>,
    /// Failed calls over the whole run (warm-up and drain included, so nothing is hidden), by
    /// operation and gRPC status code.
    errors: Mutex<BTreeMap<(String, String), u64>>,
    /// First sample message of each (operation, code), to say what went wrong.
    error_samples: Mutex<BTreeMap<(String, String), String>>,
    offers: OfferClock,
}

impl Stats {
    /// Empty statistics for `window`.
    pub fn new(window: Window) -> Stats {
        Stats {
            window,
            live: Live::default(),
            measured: Mutex::new(Measured::default()),
            errors: Mutex::new(BTreeMap::new()),
            error_samples: Mutex::new(BTreeMap::new()),
            offers: OfferClock::default(),
        }
    }

    /// Runs `f` on the window's figures if `at` is inside it.
    pub fn in_window(&self, at: Instant, f: impl FnOnce(&mut Measured)) {
        if self.window.contains(at) {
            // A poisoned lock only means another task panicked while recording; the figures
            // are still plain numbers, so keep counting.
            let mut m = self.measured.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut m);
        }
    }

    /// Records a failed call of `op`.
    pub fn error(&self, op: &str, status: &tonic::Status) {
        self.error_code(op, code_name(status.code()), status.message());
    }

    /// Records a failure that is not a gRPC status (a broken stream, a wrong answer), under
    /// `code`.
    pub fn error_code(&self, op: &str, code: &str, message: &str) {
        self.live.errors.fetch_add(1, Ordering::Relaxed);
        let key = (op.to_owned(), code.to_owned());
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default() += 1;
        self.error_samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert_with(|| message.chars().take(200).collect());
    }

    /// A ticket was created at `create_time` (server clock, from the reply).
    pub fn ticket_created(&self, ticket_id: &str, create_time: SystemTime) {
        if let Some((latency, arrived)) = self.offers.created(ticket_id, create_time) {
            self.in_window(arrived, |m| m.enqueue_to_offer.record(latency));
        }
    }

    /// An offer of `ticket_id` reached a desktop now.
    pub fn offer_arrived(&self, ticket_id: &str) {
        self.live.offers.fetch_add(1, Ordering::Relaxed);
        let arrived = Instant::now();
        if let Some(latency) = self.offers.offered(ticket_id, SystemTime::now(), arrived) {
            self.in_window(arrived, |m| m.enqueue_to_offer.record(latency));
        }
    }

    /// The window's figures so far.
    pub fn measured(&self) -> std::sync::MutexGuard<'_, Measured> {
        self.measured.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Errors by (operation, code), with a sample message each.
    pub fn errors(&self) -> Vec<ErrorCount> {
        let samples = self
            .error_samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((op, code), count)| ErrorCount {
                operation: op.clone(),
                code: code.clone(),
                count: *count,
                sample: samples
                    .get(&(op.clone(), code.clone()))
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// Failed calls of one operation with one status code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    /// The rpc (or step) that failed.
    pub operation: String,
    /// The gRPC status code name, or what else went wrong.
    pub code: String,
    /// How often.
    pub count: u64,
    /// The first message seen.
    pub sample: String,
}

/// Errors summed by code, across operations.
pub fn errors_by_code(errors: &[ErrorCount]) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    for e in errors {
        *by.entry(e.code.clone()).or_default() += e.count;
    }
    by
}

/// The canonical upper-case name of a gRPC status code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Where a ticket is between creation and its first offer. The offer can reach a desktop
/// before the CreateTicket answer reaches the caller (intake waits for the router, which may
/// offer at once), so whichever side comes second computes the latency.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Created(SystemTime),
    Offered(SystemTime, Instant),
    /// Measured; later offers (after a decline) are not enqueue-to-offer.
    Done,
}

/// Matches ticket creations to first offers by ticket id.
#[derive(Debug, Default)]
struct OfferClock {
    marks: Mutex<HashMap<String, Mark>>,
}

impl OfferClock {
    /// Returns the latency and the offer's arrival if the offer came first.
    fn created(&self, id: &str, create_time: SystemTime) -> Option<(Duration, Instant)> {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        match marks.get(id).copied() {
            Some(Mark::Offered(at, arrived)) => {
                marks.insert(id.to_owned(), Mark::Done);
                Some((at.duration_since(create_time).unwrap_or_default(), arrived))
            }
            Some(Mark::Done | Mark::Created(_)) => None,
            None => {
                marks.insert(id.to_owned(), Mark::Created(create_time));
                None
            }
        }
    }

    /// Returns the latency if the creation is known and this is the ticket's first offer.
    fn offered(&self, id: &str, at: SystemTime, arrived: Instant) -> Option<Duration> {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        match marks.get(id).copied() {
            Some(Mark::Created(created)) => {
                marks.insert(id.to_owned(), Mark::Done);
                Some(at.duration_since(created).unwrap_or_default())
            }
            Some(Mark::Offered(..) | Mark::Done) => None,
            None => {
                marks.insert(id.to_owned(), Mark::Offered(at, arrived));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_values() {
        let mut l = Latency::new();
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        // Three significant digits: within 0.1% of the exact value.
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(near(s.p50_ms, 50.0), "{s:?}");
        assert!(near(s.p95_ms, 95.0), "{s:?}");
        assert!(near(s.p99_ms, 99.0), "{s:?}");
        assert!(near(s.max_ms, 100.0), "{s:?}");
        assert!(near(s.mean_ms, 50.5), "{s:?}");
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }

    #[test]
    fn extreme_latencies_saturate_instead_of_failing() {
        let mut l = Latency::new();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(7200));
        let s = l.summary();
        assert_eq!(s.count, 2);
        assert!(s.max_ms >= 3_599_000.0, "{s:?}");
        let mut other = Latency::new();
        other.record(Duration::from_millis(3));
        l.merge(&other);
        assert_eq!(l.count(), 3);
    }

    #[test]
    fn only_the_window_is_counted() {
        let t0 = Instant::now();
        let stats = Stats::new(Window::after(
            t0,
            Duration::from_secs(10),
            Duration::from_secs(5),
        ));
        stats.in_window(t0, |m| m.assignments += 1);
        stats.in_window(t0 + Duration::from_secs(10), |m| m.assignments += 1);
        stats.in_window(t0 + Duration::from_secs(15), |m| m.assignments += 1);
        assert_eq!(stats.measured().assignments, 1);
        assert_eq!(stats.window.seconds(), 5.0);
    }

    #[test]
    fn errors_are_counted_by_operation_and_code() {
        let stats = Stats::new(Window::after(
            Instant::now(),
            Duration::ZERO,
            Duration::ZERO,
        ));
        stats.error("CreateTicket", &tonic::Status::unavailable("router down"));
        stats.error("CreateTicket", &tonic::Status::unavailable("again"));
        stats.error(
            "AcceptOffer",
            &tonic::Status::failed_precondition("expired"),
        );
        let errors = stats.errors();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[1].operation, "CreateTicket");
        assert_eq!(errors[1].count, 2);
        assert_eq!(errors[1].sample, "router down");
        let by = errors_by_code(&errors);
        assert_eq!(by.get("UNAVAILABLE"), Some(&2));
        assert_eq!(by.get("FAILED_PRECONDITION"), Some(&1));
        assert_eq!(stats.live.snapshot().errors, 3);
    }

    #[test]
    fn an_offer_is_matched_to_its_creation_whichever_comes_first() {
        let clock = OfferClock::default();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let now = Instant::now();
        // Creation answered first.
        assert!(clock.created("a", t).is_none());
        assert_eq!(
            clock.offered("a", t + Duration::from_millis(4), now),
            Some(Duration::from_millis(4))
        );
        // A second offer (after a decline) is not enqueue-to-offer.
        assert!(
            clock
                .offered("a", t + Duration::from_secs(1), now)
                .is_none()
        );
        // The offer reached the desktop before the caller had its answer.
        assert!(
            clock
                .offered("b", t + Duration::from_millis(2), now)
                .is_none()
        );
        assert_eq!(clock.created("b", t), Some((Duration::from_millis(2), now)));
        assert!(clock.created("b", t).is_none());
    }
}
