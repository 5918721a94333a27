//! Queue order: how waiting tickets are ranked, and how that rank is stored in a sorted set.
//!
//! - [`TierTargets`]: the pickup (first-response) target of each tier, from the router's
//!   configuration. [`TierTargets::pickup_due`] is arrival plus target;
//!   [`TierTargets::overtake_window`] states how far a lower tier can be pushed back.
//! - [`RankKey`]: the total order of a queue (proto `RoutingService` comment, exactly):
//!   escalation level (higher first), pickup due time (earliest first), enqueue time (earlier
//!   first), ticket id. [`RankKey::score`] and [`RankKey::member`] encode it for a Redis sorted
//!   set, whose order (score, then member bytes) is the rank order.
//! - [`TicketRef`]: a waiting ticket as the routing rules see it.
//!
//! Why a higher tier is a head start and not absolute precedence: ranking by due time means a
//! tier-A ticket jumps ahead only of tickets due later than it. A ticket that arrived more than
//! `target(its tier) - target(best tier)` earlier is due first and stays ahead, so every
//! ticket's wait behind later arrivals is bounded (see [`TierTargets::overtake_window`]).
//!
//! Times in a rank key are whole Unix milliseconds (floored), because that is what the score
//! holds; two due times less than a millisecond apart compare by enqueue time, then id.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;

/// The highest escalation level a rank key distinguishes; higher levels rank as this one.
/// (The SLA clock escalates at most twice; the room is for future ladders.)
pub const MAX_ESCALATION: u32 = 1023;

/// The latest instant a rank key distinguishes, in Unix milliseconds (2109-05-15); later times,
/// and times before 1970, saturate to the ends of the range.
pub const MAX_TIME_MS: i64 = (1 << 42) - 1;

/// One escalation level is worth more than any span of due times, so the score orders by
/// escalation first. `MAX_ESCALATION * STRIDE + MAX_TIME_MS < 2^53`: every score is an exact f64.
const ESCALATION_STRIDE: i64 = 1 << 42;

/// Decimal digits of [`MAX_TIME_MS`]: the enqueue time is zero-padded to this width in a member,
/// so byte order of members is numeric order of enqueue times.
const MEMBER_TIME_DIGITS: usize = 13;

// ---------------------------------------------------------------------------------------------
// Tier targets
// ---------------------------------------------------------------------------------------------

/// Wall-clock pickup targets per tier: how soon after arrival an agent should take the ticket.
///
/// The defaults follow the ticket service's default first-response targets: A 15 min, B 1 h,
/// C 4 h.
///
/// ```toml
/// [routing.targets]
/// a = "15m"
/// b = "1h"
/// c = "4h"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierTargets {
    /// Tier A's target.
    #[serde(with = "humantime_serde")]
    pub a: Duration,
    /// Tier B's target.
    #[serde(with = "humantime_serde")]
    pub b: Duration,
    /// Tier C's target.
    #[serde(with = "humantime_serde")]
    pub c: Duration,
}

impl Default for TierTargets {
    fn default() -> Self {
        TierTargets {
            a: Duration::from_secs(15 * 60),
            b: Duration::from_secs(60 * 60),
            c: Duration::from_secs(4 * 60 * 60),
        }
    }
}

impl TierTargets {
    /// The target of `tier`.
    pub fn target(&self, tier: Tier) -> Duration {
        match tier {
            Tier::A => self.a,
            Tier::B => self.b,
            Tier::C => self.c,
        }
    }

    /// Problems with the targets, as (field, description). Empty means usable.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        // A more valuable tier with a longer target would be served later: never intended.
        if self.b < self.a {
            problems.push((
                "b".into(),
                "tier b's target must not be shorter than tier a's".into(),
            ));
        }
        if self.c < self.b {
            problems.push((
                "c".into(),
                "tier c's target must not be shorter than tier b's".into(),
            ));
        }
        for (field, target) in [("a", self.a), ("b", self.b), ("c", self.c)] {
            if target > Duration::from_secs(366 * 24 * 60 * 60) {
                problems.push((field.into(), "target must be at most a year".into()));
            }
        }
        problems
    }

    /// When a ticket of `tier` arriving at `arrival` should be picked up: arrival plus target.
    /// `None` beyond the representable range.
    pub fn pickup_due(&self, tier: Tier, arrival: OffsetDateTime) -> Option<OffsetDateTime> {
        add(arrival, self.target(tier))
    }

    /// The bounded-wait statement: how long after a ticket of `tier` arrives can another ticket
    /// still arrive and be ranked ahead of it (at equal escalation level).
    ///
    /// It is `target(tier) - min(targets)`: with targets A < B < C, a C ticket is overtaken
    /// only by tickets arriving less than `target_C - target_A` after it; once it has waited
    /// that long, every newcomer queues behind it. A ticket of the best tier has window zero:
    /// nothing that arrives later overtakes it (ties go to the earlier arrival).
    ///
    /// Escalations are outside the statement: an escalated ticket goes ahead by design.
    pub fn overtake_window(&self, tier: Tier) -> Duration {
        let best = self.a.min(self.b).min(self.c);
        self.target(tier).saturating_sub(best)
    }
}

// ---------------------------------------------------------------------------------------------
// Rank key
// ---------------------------------------------------------------------------------------------

/// A waiting ticket's place in its queue; smaller ranks first ([`Ord`]).
///
/// Order: escalation level (higher first), pickup due time (earliest first), enqueue time
/// (earlier first), ticket id (byte order). Fields are private so the saturation described in
/// the module documentation holds for every key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RankKey {
    escalation_level: u32,
    pickup_due_ms: i64,
    enqueue_ms: i64,
    ticket_id: String,
}

impl RankKey {
    /// The key of a ticket. Times are floored to milliseconds and saturate to
    /// `[0, MAX_TIME_MS]`; the level saturates at [`MAX_ESCALATION`].
    pub fn new(
        escalation_level: u32,
        pickup_due: OffsetDateTime,
        enqueue_time: OffsetDateTime,
        ticket_id: impl Into<String>,
    ) -> RankKey {
        RankKey {
            escalation_level: escalation_level.min(MAX_ESCALATION),
            pickup_due_ms: unix_ms(pickup_due),
            enqueue_ms: unix_ms(enqueue_time),
            ticket_id: ticket_id.into(),
        }
    }

    /// The same ticket re-ranked at another escalation level (an SLA escalation); due and
    /// enqueue times are kept, so it keeps its place among tickets of its new level.
    pub fn with_escalation(&self, escalation_level: u32) -> RankKey {
        RankKey {
            escalation_level: escalation_level.min(MAX_ESCALATION),
            ..self.clone()
        }
    }

    /// The escalation level (saturated).
    pub fn escalation_level(&self) -> u32 {
        self.escalation_level
    }

    /// The pickup due time in Unix milliseconds (floored, saturated).
    pub fn pickup_due_ms(&self) -> i64 {
        self.pickup_due_ms
    }

    /// The enqueue time in Unix milliseconds (floored, saturated).
    pub fn enqueue_ms(&self) -> i64 {
        self.enqueue_ms
    }

    /// The ticket id.
    pub fn ticket_id(&self) -> &str {
        &self.ticket_id
    }

    /// The sorted-set score: `pickup_due_ms - escalation_level * 2^42`. Lower scores rank
    /// first; every value is an integer below 2^53 in magnitude, so the f64 is exact.
    pub fn score(&self) -> f64 {
        let score = self.pickup_due_ms - i64::from(self.escalation_level) * ESCALATION_STRIDE;
        // Exact: |score| < 2^53 (see ESCALATION_STRIDE).
        score as f64
    }

    /// The sorted-set member: the enqueue time zero-padded to 13 digits, `:`, the ticket id.
    /// Redis orders equal scores by member bytes, which is enqueue time, then id.
    pub fn member(&self) -> String {
        format!(
            "{:0width$}:{}",
            self.enqueue_ms,
            self.ticket_id,
            width = MEMBER_TIME_DIGITS
        )
    }

    /// The ticket id in a member made by [`RankKey::member`].
    pub fn id_of_member(member: &str) -> Option<&str> {
        member
            .split_at_checked(MEMBER_TIME_DIGITS)
            .and_then(|(_, rest)| rest.strip_prefix(':'))
    }

    /// Reads a key back from its score and member; `None` if they were not made by
    /// [`RankKey::score`] and [`RankKey::member`].
    pub fn from_entry(score: f64, member: &str) -> Option<RankKey> {
        if !score.is_finite() || score.fract() != 0.0 {
            return None;
        }
        // In range by the check below, so the cast is exact.
        let min = -(i64::from(MAX_ESCALATION) * ESCALATION_STRIDE);
        if score < min as f64 || score > MAX_TIME_MS as f64 {
            return None;
        }
        let score = score as i64;
        let pickup_due_ms = score.rem_euclid(ESCALATION_STRIDE);
        let escalation_level = u32::try_from((pickup_due_ms - score) / ESCALATION_STRIDE).ok()?;
        let (time, ticket_id) = member.split_at_checked(MEMBER_TIME_DIGITS)?;
        let ticket_id = ticket_id.strip_prefix(':')?;
        if !time.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let enqueue_ms: i64 = time.parse().ok()?;
        if enqueue_ms > MAX_TIME_MS {
            return None;
        }
        Some(RankKey {
            escalation_level,
            pickup_due_ms,
            enqueue_ms,
            ticket_id: ticket_id.to_owned(),
        })
    }

    /// The order without the id: `Less` if this key ranks ahead of any ticket with `other`'s
    /// level and times.
    fn cmp_times(&self, other: &RankKey) -> Ordering {
        other
            .escalation_level
            .cmp(&self.escalation_level)
            .then(self.pickup_due_ms.cmp(&other.pickup_due_ms))
            .then(self.enqueue_ms.cmp(&other.enqueue_ms))
    }
}

impl Ord for RankKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_times(other)
            .then_with(|| self.ticket_id.cmp(&other.ticket_id))
    }
}

impl PartialOrd for RankKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The 1-based position a new, unescalated ticket would take in a queue: after every ticket that
/// ranks ahead of it or ties with it on times (those arrived first in practice, so the newcomer
/// goes behind them whatever its id).
pub fn position_of_new<'a>(
    queue: impl IntoIterator<Item = &'a RankKey>,
    pickup_due: OffsetDateTime,
    enqueue_time: OffsetDateTime,
) -> usize {
    let candidate = RankKey::new(0, pickup_due, enqueue_time, String::new());
    1 + queue
        .into_iter()
        .filter(|key| key.cmp_times(&candidate) != Ordering::Greater)
        .count()
}

// ---------------------------------------------------------------------------------------------
// Tickets
// ---------------------------------------------------------------------------------------------

/// A waiting ticket as the routing rules see it (from proto `RoutingTicket` and live state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRef {
    /// The ticket id.
    pub id: String,
    /// The owning department: the queue.
    pub department: String,
    /// The channel, which decides the capacity it uses.
    pub channel: Channel,
    /// The effective tier.
    pub tier: Tier,
    /// Whether the customer is a key account (adds the key-account steps).
    pub key_account: bool,
    /// The customer's account manager (agent id).
    pub account_manager_id: Option<String>,
    /// The agent to try first (previous agent of a reopened or returned ticket).
    pub preferred_agent_id: Option<String>,
    /// Skills an agent must hold, `<kind>:<value>`.
    pub required_skills: BTreeSet<String>,
    /// How many times the ticket was escalated.
    pub escalation_level: u32,
    /// When the ticket entered the queue; steps are timed from it.
    pub enqueue_time: OffsetDateTime,
    /// When an agent should have taken it.
    pub pickup_due: OffsetDateTime,
    /// Agents who declined an offer of it, or let one expire, since it was queued.
    pub declined_by: BTreeSet<String>,
    /// The agent holding its pending offer, if any.
    pub offered_to: Option<String>,
}

impl TicketRef {
    /// A plain ticket: not a key account, no preferred agent, skills, escalation or offers.
    pub fn new(
        id: impl Into<String>,
        department: impl Into<String>,
        channel: Channel,
        tier: Tier,
        enqueue_time: OffsetDateTime,
        pickup_due: OffsetDateTime,
    ) -> TicketRef {
        TicketRef {
            id: id.into(),
            department: department.into(),
            channel,
            tier,
            key_account: false,
            account_manager_id: None,
            preferred_agent_id: None,
            required_skills: BTreeSet::new(),
            escalation_level: 0,
            enqueue_time,
            pickup_due,
            declined_by: BTreeSet::new(),
            offered_to: None,
        }
    }

    /// The ticket's rank key. Offers do not enter it, so a declined or expired offer leaves the
    /// ticket at its original rank.
    pub fn rank_key(&self) -> RankKey {
        RankKey::new(
            self.escalation_level,
            self.pickup_due,
            self.enqueue_time,
            self.id.clone(),
        )
    }

    /// How long the ticket has waited at `now` (zero if `now` is before its enqueue time).
    pub fn age(&self, now: OffsetDateTime) -> Duration {
        elapsed(self.enqueue_time, now)
    }
}

// ---------------------------------------------------------------------------------------------
// Time helpers
// ---------------------------------------------------------------------------------------------

/// `at + d`, or `None` beyond the representable range.
pub(crate) fn add(at: OffsetDateTime, d: Duration) -> Option<OffsetDateTime> {
    at.checked_add(time::Duration::try_from(d).ok()?)
}

/// Time from `from` to `to`; zero if `to` is not after `from`.
pub(crate) fn elapsed(from: OffsetDateTime, to: OffsetDateTime) -> Duration {
    Duration::try_from(to - from).unwrap_or(Duration::ZERO)
}

/// Unix milliseconds, floored and saturated to `[0, MAX_TIME_MS]`.
fn unix_ms(at: OffsetDateTime) -> i64 {
    let ms = at.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(ms.clamp(0, i128::from(MAX_TIME_MS))).unwrap_or(MAX_TIME_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const MIN: Duration = Duration::from_secs(60);
    const T0: OffsetDateTime = datetime!(2025-03-03 09:00 UTC);

    fn at(ms: i64) -> OffsetDateTime {
        T0 + time::Duration::milliseconds(ms)
    }

    fn key(level: u32, due_ms: i64, enqueue_ms: i64, id: &str) -> RankKey {
        RankKey::new(level, at(due_ms), at(enqueue_ms), id)
    }

    /// How Redis orders two sorted-set entries: by score, then by member bytes.
    fn redis_order(a: &RankKey, b: &RankKey) -> Ordering {
        a.score()
            .total_cmp(&b.score())
            .then_with(|| a.member().as_bytes().cmp(b.member().as_bytes()))
    }

    #[test]
    fn an_earlier_due_time_ranks_first_whatever_the_arrival() {
        let late_arrival_due_soon = key(0, 1_000, 500, "b");
        let early_arrival_due_later = key(0, 2_000, 0, "a");
        assert!(late_arrival_due_soon < early_arrival_due_later);
    }

    #[test]
    fn an_escalated_ticket_ranks_ahead_of_every_unescalated_one() {
        let escalated = key(1, 10 * 3_600_000, 0, "z");
        let due_now = key(0, 0, 0, "a");
        assert!(escalated < due_now);
        assert!(key(2, 50, 0, "x") < key(1, 0, 0, "y"));
    }

    #[test]
    fn equal_due_times_go_to_the_earlier_arrival_then_the_lower_id() {
        assert!(key(0, 1_000, 10, "b") < key(0, 1_000, 20, "a"));
        assert!(key(0, 1_000, 10, "a") < key(0, 1_000, 10, "b"));
    }

    #[test]
    fn re_ranking_on_escalation_keeps_the_times() {
        let original = key(0, 1_000, 10, "t");
        let escalated = original.with_escalation(1);
        assert_eq!(escalated.escalation_level(), 1);
        assert_eq!(escalated.pickup_due_ms(), original.pickup_due_ms());
        assert_eq!(escalated.enqueue_ms(), original.enqueue_ms());
        assert!(escalated < key(0, 0, 0, "a"));
    }

    #[test]
    fn the_pickup_due_time_is_arrival_plus_the_tier_target() {
        let targets = TierTargets::default();
        assert_eq!(targets.pickup_due(Tier::A, T0), Some(T0 + 15 * MIN));
        assert_eq!(targets.pickup_due(Tier::B, T0), Some(T0 + 60 * MIN));
        assert_eq!(targets.pickup_due(Tier::C, T0), Some(T0 + 240 * MIN));
        assert_eq!(
            targets.pickup_due(Tier::C, datetime!(9999-12-31 23:00 UTC)),
            None
        );
    }

    #[test]
    fn the_overtake_window_is_the_target_gap_to_the_best_tier() {
        let targets = TierTargets::default();
        assert_eq!(targets.overtake_window(Tier::A), Duration::ZERO);
        assert_eq!(targets.overtake_window(Tier::B), 45 * MIN);
        assert_eq!(targets.overtake_window(Tier::C), 225 * MIN);
    }

    #[test]
    fn a_c_ticket_is_overtaken_by_an_a_ticket_arriving_inside_the_window_only() {
        let targets = TierTargets::default();
        let c = TicketRef::new(
            "c",
            "support",
            Channel::Chat,
            Tier::C,
            T0,
            targets.pickup_due(Tier::C, T0).expect("in range"),
        );
        let a_at = |arrival: OffsetDateTime| {
            TicketRef::new(
                "a",
                "support",
                Channel::Chat,
                Tier::A,
                arrival,
                targets.pickup_due(Tier::A, arrival).expect("in range"),
            )
        };
        let inside = a_at(T0 + 224 * MIN);
        let at_edge = a_at(T0 + 225 * MIN);
        assert!(inside.rank_key() < c.rank_key());
        assert!(
            c.rank_key() < at_edge.rank_key(),
            "a tie goes to the earlier arrival"
        );
    }

    #[test]
    fn targets_that_favour_a_lower_tier_are_reported() {
        assert!(TierTargets::default().problems().is_empty());
        let inverted = TierTargets {
            a: 60 * MIN,
            b: 30 * MIN,
            c: 20 * MIN,
        };
        let fields: Vec<String> = inverted.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["b", "c"]);
        let huge = TierTargets {
            c: Duration::from_secs(400 * 24 * 3600),
            ..TierTargets::default()
        };
        assert_eq!(huge.problems().len(), 1);
    }

    #[test]
    fn targets_read_from_configuration_with_human_durations() {
        let targets: TierTargets =
            serde_json::from_str(r#"{"a": "5m", "b": "30m", "c": "2h"}"#).expect("parses");
        assert_eq!(targets.a, 5 * MIN);
        assert_eq!(targets.c, 120 * MIN);
        assert!(serde_json::from_str::<TierTargets>(r#"{"a": "5m", "b": "30m"}"#).is_err());
    }

    #[test]
    fn the_score_and_member_round_trip() {
        let k = key(3, 1_234, 99, "0b3c-uuid");
        assert_eq!(RankKey::from_entry(k.score(), &k.member()), Some(k.clone()));
        assert_eq!(&k.member()[..13], "1740992400099");
    }

    #[test]
    fn entries_not_made_by_the_encoding_are_rejected() {
        assert_eq!(RankKey::from_entry(f64::NAN, "0000000000000:x"), None);
        assert_eq!(RankKey::from_entry(1.5, "0000000000000:x"), None);
        assert_eq!(RankKey::from_entry(1.0, "123:x"), None);
        assert_eq!(RankKey::from_entry(1.0, "000000000000a:x"), None);
        assert_eq!(RankKey::from_entry(1.0, "0000000000000-x"), None);
        assert_eq!(RankKey::from_entry(1e300, "0000000000000:x"), None);
    }

    #[test]
    fn times_outside_the_encodable_range_saturate() {
        let before_1970 = RankKey::new(0, datetime!(1960-01-01 0:00 UTC), T0, "x");
        assert_eq!(before_1970.pickup_due_ms(), 0);
        let far_future = RankKey::new(5_000, datetime!(2200-01-01 0:00 UTC), T0, "x");
        assert_eq!(far_future.pickup_due_ms(), MAX_TIME_MS);
        assert_eq!(far_future.escalation_level(), MAX_ESCALATION);
        assert_eq!(
            RankKey::from_entry(far_future.score(), &far_future.member()),
            Some(far_future)
        );
    }

    #[test]
    fn a_new_ticket_goes_behind_tickets_that_tie_with_it() {
        let queue = [
            key(0, 100, 0, "a"),
            key(0, 200, 0, "b"),
            key(1, 900, 0, "c"),
        ];
        assert_eq!(position_of_new(&queue, at(50), at(0)), 2);
        assert_eq!(position_of_new(&queue, at(100), at(0)), 3);
        assert_eq!(position_of_new(&queue, at(1_000), at(10)), 4);
        assert_eq!(position_of_new([], at(0), at(0)), 1);
    }

    #[test]
    fn an_offer_does_not_change_a_tickets_rank() {
        let mut t = TicketRef::new("t", "d", Channel::Chat, Tier::B, at(0), at(1_000));
        let before = t.rank_key();
        t.offered_to = Some("agent".into());
        t.declined_by.insert("other".into());
        assert_eq!(t.rank_key(), before);
    }

    fn arb_key() -> impl Strategy<Value = RankKey> {
        (
            prop_oneof![0u32..3, Just(MAX_ESCALATION), Just(u32::MAX)],
            prop_oneof![0i64..5, -1_000_000_000_000i64..4_000_000_000_000],
            0i64..5,
            "[a-c]{0,3}",
        )
            .prop_map(|(level, due, enq, id)| {
                RankKey::new(
                    level,
                    OffsetDateTime::UNIX_EPOCH
                        + time::Duration::milliseconds(due + 1_741_000_000_000),
                    OffsetDateTime::UNIX_EPOCH
                        + time::Duration::milliseconds(enq + 1_741_000_000_000),
                    id,
                )
            })
    }

    fn arb_targets() -> impl Strategy<Value = TierTargets> {
        (0u64..10_000, 0u64..10_000, 0u64..10_000).prop_map(|(a, db, dc)| TierTargets {
            a: Duration::from_millis(a),
            b: Duration::from_millis(a + db),
            c: Duration::from_millis(a + db + dc),
        })
    }

    fn arb_tier() -> impl Strategy<Value = Tier> {
        prop_oneof![Just(Tier::A), Just(Tier::B), Just(Tier::C)]
    }

    proptest! {
        #[test]
        fn score_then_member_order_is_rank_order(a in arb_key(), b in arb_key()) {
            prop_assert_eq!(redis_order(&a, &b), a.cmp(&b));
        }

        #[test]
        fn every_key_decodes_from_its_entry(k in arb_key()) {
            prop_assert_eq!(RankKey::from_entry(k.score(), &k.member()), Some(k));
        }

        #[test]
        fn within_equal_escalation_rank_order_is_due_time_order(
            level in 0u32..4,
            a in (0i64..1_000, 0i64..1_000, "[a-c]{1,2}"),
            b in (0i64..1_000, 0i64..1_000, "[a-c]{1,2}"),
        ) {
            let ka = key(level, a.0, a.1, &a.2);
            let kb = key(level, b.0, b.1, &b.2);
            if a.0 < b.0 {
                prop_assert!(ka < kb);
            }
            if ka < kb {
                prop_assert!(a.0 <= b.0);
            }
        }

        #[test]
        fn a_later_arrival_overtakes_only_within_the_overtake_window(
            targets in arb_targets(),
            (first_tier, later_tier) in (arb_tier(), arb_tier()),
            gap_ms in 1i64..20_000,
        ) {
            let arrive = |tier: Tier, ms: i64, id: &str| {
                let arrival = at(ms);
                let due = targets.pickup_due(tier, arrival).expect("in range");
                RankKey::new(0, due, arrival, id)
            };
            let first = arrive(first_tier, 0, "first");
            let later = arrive(later_tier, gap_ms, "later");
            let window = targets.overtake_window(first_tier);
            if later < first {
                prop_assert!(Duration::from_millis(gap_ms.unsigned_abs()) < window);
            }
            // The bound is tight: the best tier arriving just inside the window overtakes.
            let best = Tier::ALL
                .into_iter()
                .min_by_key(|t| targets.target(*t))
                .expect("three tiers");
            let window_ms = i64::try_from(window.as_millis()).expect("small");
            if window_ms > 0 {
                prop_assert!(arrive(best, window_ms - 1, "edge") < first);
            }
            // At or after the window, a later arrival stays behind (a tie goes to the earlier).
            prop_assert!(first < arrive(best, window_ms.max(1), "edge"));
        }
    }
}
