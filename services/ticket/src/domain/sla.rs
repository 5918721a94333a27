//! The SLA rules in one place: business-hours calendars, SLA policies, and the clock of one ticket.
//!
//! - [`BusinessCalendar`]: when the company counts as open (time zone, weekly hours, holidays).
//!   [`BusinessCalendar::add`] and [`BusinessCalendar::open_between`] do all business-time
//!   arithmetic.
//! - [`SlaPolicies`]: the targets for each tier, optionally per severity, and the named calendars
//!   they count in. [`SlaPolicies::select`] picks a ticket's policy.
//! - [`SlaClock`]: what is stored on a ticket, with the operations that move it (pause, resume,
//!   first response, resolve, reopen) and the questions the service asks of it (status, due
//!   times, when to look again).
//!
//! Everything here is pure: no I/O, no clock reads. Callers pass `now`.
//!
//! Conventions:
//! - Instants are [`OffsetDateTime`]; results are returned in UTC (they compare equal to the same
//!   instant in any offset). Time zones and civil dates are done with `jiff` inside.
//! - Targets and pauses are amounts of *open* time, as [`Duration`]: "2 business days" on a
//!   calendar open 10 hours a day is written `20h`.
//! - A due time is the first instant at which its target counts as missed: responding at exactly
//!   the due time is late. Time spans are half-open, `[from, to)`.
//! - The at-risk window is wall-clock time before a due time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use tierline_types::Tier;
use time::OffsetDateTime;

/// Name of the built-in calendar that is open around the clock, every day.
pub const ALWAYS_OPEN: &str = "24x7";

/// How far [`BusinessCalendar::add`] looks for open time before giving up: 10 years of days.
pub const SEARCH_LIMIT_DAYS: u32 = 3653;

const MINUTES_PER_DAY: u16 = 24 * 60;
const NANOS_PER_SECOND: i128 = 1_000_000_000;

static ALWAYS_OPEN_CALENDAR: LazyLock<BusinessCalendar> =
    LazyLock::new(BusinessCalendar::always_open);

/// Why a business-time computation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The calendar names a time zone the bundled database does not know.
    #[error("unknown time zone {0:?}")]
    UnknownTimeZone(String),
    /// A policy or clock names a calendar that is not configured.
    #[error("unknown calendar {0:?}")]
    UnknownCalendar(String),
    /// The calendar does not open long enough within [`SEARCH_LIMIT_DAYS`] of the start.
    #[error("not enough open time within 10 years")]
    NotEnoughOpenTime,
    /// An instant beyond what the time libraries represent (around the years -9999 and 9999).
    #[error("time out of range")]
    OutOfRange,
}

// ---------------------------------------------------------------------------------------------
// Severity and hold reasons
// ---------------------------------------------------------------------------------------------

/// How serious a ticket's matter is (proto `Severity`, without UNSPECIFIED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Minor; no real harm to the customer.
    Low,
    /// Ordinary.
    Medium,
    /// Significant harm or a customer at risk of leaving.
    High,
    /// Safety, legal or major financial harm; service down for the customer.
    Critical,
}

impl Severity {
    /// Every severity, least serious first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The name stored in the database and used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Reads a stored name.
    pub fn from_db(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Why a ticket is ON_HOLD (proto `HoldReason`, without UNSPECIFIED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// Waiting for an outside party (supplier, carrier, partner).
    ThirdParty,
    /// Waiting for another department of the company.
    Internal,
    /// A call-back or visit is scheduled.
    Scheduled,
    /// Waiting for a delivery, repair or replacement.
    Fulfilment,
    /// Any other reason.
    Other,
}

impl HoldReason {
    /// Every reason, in wire-number order.
    pub const ALL: [HoldReason; 5] = [
        HoldReason::ThirdParty,
        HoldReason::Internal,
        HoldReason::Scheduled,
        HoldReason::Fulfilment,
        HoldReason::Other,
    ];

    /// The name stored in the database and used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::ThirdParty => "third_party",
            HoldReason::Internal => "internal",
            HoldReason::Scheduled => "scheduled",
            HoldReason::Fulfilment => "fulfilment",
            HoldReason::Other => "other",
        }
    }

    /// Reads a stored name.
    pub fn from_db(s: &str) -> Option<HoldReason> {
        HoldReason::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

// ---------------------------------------------------------------------------------------------
// Business calendar
// ---------------------------------------------------------------------------------------------

/// One opening interval of a day, in local wall-clock time: `"08:00-12:00"` in configuration.
///
/// The end may be `24:00` (open until midnight). A wall-clock time that does not exist on a
/// spring-forward day counts as the instant the same distance after the jump (02:30 in a
/// 02:00→03:00 jump is 03:30); one that occurs twice on a fall-back day is its first occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OpeningHours {
    /// Opening, in minutes after local midnight (0-1439).
    pub start_minute: u16,
    /// Closing, in minutes after local midnight (1-1440); must be after `start_minute`.
    pub end_minute: u16,
}

/// Opening hours that are not of the form `HH:MM-HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected opening hours like 08:00-12:00, got {0:?}")]
pub struct BadOpeningHours(String);

impl OpeningHours {
    /// Whole hours, e.g. `OpeningHours::hours(8, 18)` for 08:00-18:00.
    pub const fn hours(start_hour: u16, end_hour: u16) -> OpeningHours {
        OpeningHours {
            start_minute: start_hour * 60,
            end_minute: end_hour * 60,
        }
    }

    fn is_well_formed(self) -> bool {
        self.start_minute < self.end_minute && self.end_minute <= MINUTES_PER_DAY
    }
}

impl FromStr for OpeningHours {
    type Err = BadOpeningHours;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadOpeningHours(s.to_owned());
        let (start, end) = s.split_once('-').ok_or_else(bad)?;
        let minute_of_day = |hm: &str| -> Option<u16> {
            let (h, m) = hm.trim().split_once(':')?;
            if h.is_empty() || h.len() > 2 || m.len() != 2 {
                return None;
            }
            let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
            let minute = h * 60 + m;
            (m < 60 && minute <= MINUTES_PER_DAY).then_some(minute)
        };
        Ok(OpeningHours {
            start_minute: minute_of_day(start).ok_or_else(bad)?,
            end_minute: minute_of_day(end).ok_or_else(bad)?,
        })
    }
}

impl TryFrom<String> for OpeningHours {
    type Error = BadOpeningHours;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for OpeningHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, e) = (self.start_minute, self.end_minute);
        write!(f, "{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60)
    }
}

impl From<OpeningHours> for String {
    fn from(hours: OpeningHours) -> String {
        hours.to_string()
    }
}

/// Opening hours for each day of the week. A day left out (or empty) is closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeeklyHours {
    /// Monday's intervals.
    pub monday: Vec<OpeningHours>,
    /// Tuesday's intervals.
    pub tuesday: Vec<OpeningHours>,
    /// Wednesday's intervals.
    pub wednesday: Vec<OpeningHours>,
    /// Thursday's intervals.
    pub thursday: Vec<OpeningHours>,
    /// Friday's intervals.
    pub friday: Vec<OpeningHours>,
    /// Saturday's intervals.
    pub saturday: Vec<OpeningHours>,
    /// Sunday's intervals.
    pub sunday: Vec<OpeningHours>,
}

impl WeeklyHours {
    /// The same intervals on every day of the week.
    pub fn every_day(hours: &[OpeningHours]) -> WeeklyHours {
        WeeklyHours {
            saturday: hours.to_vec(),
            sunday: hours.to_vec(),
            ..WeeklyHours::mon_to_fri(hours)
        }
    }

    /// The same intervals Monday to Friday; closed at weekends.
    pub fn mon_to_fri(hours: &[OpeningHours]) -> WeeklyHours {
        WeeklyHours {
            monday: hours.to_vec(),
            tuesday: hours.to_vec(),
            wednesday: hours.to_vec(),
            thursday: hours.to_vec(),
            friday: hours.to_vec(),
            saturday: Vec::new(),
            sunday: Vec::new(),
        }
    }

    /// The intervals of one weekday.
    pub fn on(&self, day: Weekday) -> &[OpeningHours] {
        match day {
            Weekday::Monday => &self.monday,
            Weekday::Tuesday => &self.tuesday,
            Weekday::Wednesday => &self.wednesday,
            Weekday::Thursday => &self.thursday,
            Weekday::Friday => &self.friday,
            Weekday::Saturday => &self.saturday,
            Weekday::Sunday => &self.sunday,
        }
    }

    fn days(&self) -> [(&'static str, &[OpeningHours]); 7] {
        [
            ("monday", &self.monday),
            ("tuesday", &self.tuesday),
            ("wednesday", &self.wednesday),
            ("thursday", &self.thursday),
            ("friday", &self.friday),
            ("saturday", &self.saturday),
            ("sunday", &self.sunday),
        ]
    }
}

/// When the company counts as open, for business-time targets.
///
/// Opening hours are local wall-clock times in `time_zone`, so a day with a DST change still
/// opens at 08:00 local time, and an interval spanning the change is an hour shorter or longer.
/// Holidays are closed all day.
///
/// ```toml
/// [calendars.berlin_office]
/// time_zone = "Europe/Berlin"
/// holidays = ["2025-12-25", "2025-12-26"]
/// hours.monday = ["08:00-12:00", "13:00-18:00"]
/// hours.friday = ["08:00-16:00"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessCalendar {
    /// IANA time zone name, e.g. "Europe/Berlin".
    pub time_zone: String,
    /// Weekly opening hours.
    #[serde(default)]
    pub hours: WeeklyHours,
    /// Local dates on which it is closed all day.
    #[serde(default)]
    pub holidays: BTreeSet<Date>,
}

impl BusinessCalendar {
    /// Open around the clock, every day, no holidays (the built-in [`ALWAYS_OPEN`] calendar).
    pub fn always_open() -> BusinessCalendar {
        BusinessCalendar {
            time_zone: "UTC".into(),
            hours: WeeklyHours::every_day(&[OpeningHours::hours(0, 24)]),
            holidays: BTreeSet::new(),
        }
    }

    /// Monday to Friday 08:00-18:00 local time in `time_zone`, no holidays.
    pub fn office_hours(time_zone: &str) -> BusinessCalendar {
        BusinessCalendar {
            time_zone: time_zone.into(),
            hours: WeeklyHours::mon_to_fri(&[OpeningHours::hours(8, 18)]),
            holidays: BTreeSet::new(),
        }
    }

    /// Problems with the calendar, as (field, description). Empty means usable.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if TimeZone::get(&self.time_zone).is_err() {
            problems.push((
                "time_zone".into(),
                format!(
                    "unknown time zone {:?}, expected an IANA name such as Europe/Berlin",
                    self.time_zone
                ),
            ));
        }
        let mut open_somewhen = false;
        for (day, hours) in self.hours.days() {
            for (i, interval) in hours.iter().enumerate() {
                if !interval.is_well_formed() {
                    problems.push((
                        format!("hours.{day}[{i}]"),
                        format!("{interval} must start before it ends"),
                    ));
                }
            }
            let mut valid: Vec<OpeningHours> = hours
                .iter()
                .copied()
                .filter(|h| h.is_well_formed())
                .collect();
            valid.sort();
            open_somewhen |= !valid.is_empty();
            for pair in valid.windows(2) {
                if let [earlier, later] = pair
                    && later.start_minute < earlier.end_minute
                {
                    problems.push((
                        format!("hours.{day}"),
                        format!("{earlier} overlaps {later}"),
                    ));
                }
            }
        }
        if !open_somewhen {
            problems.push((
                "hours".into(),
                "no opening hours on any day, so the calendar never opens".into(),
            ));
        }
        problems
    }

    /// The instant at which `business` of open time has elapsed after `start`.
    ///
    /// If `start` is outside opening hours the count starts at the next opening. The result is the
    /// earliest such instant, so it can be a closing time (Monday 08:00 plus 10 hours on an
    /// 08:00-18:00 calendar is Monday 18:00, not Tuesday 08:00). Zero returns `start`.
    ///
    /// Walks day by day (closed days cost a weekday lookup), for at most [`SEARCH_LIMIT_DAYS`]
    /// days: a calendar that does not open long enough in that span (one that never opens, or a
    /// target of decades) fails with [`CalendarError::NotEnoughOpenTime`] instead of looping.
    pub fn add(
        &self,
        start: OffsetDateTime,
        business: Duration,
    ) -> Result<OffsetDateTime, CalendarError> {
        let start_ns = start.unix_timestamp_nanos();
        let mut remaining = duration_to_nanos(business);
        if remaining == 0 {
            return Ok(start);
        }
        if self.is_always_open() {
            return instant(
                start_ns
                    .checked_add(remaining)
                    .ok_or(CalendarError::OutOfRange)?,
            );
        }
        let zone = self.zone()?;
        let mut date = local_date(&zone, start_ns)?;
        for _ in 0..SEARCH_LIMIT_DAYS {
            for (open, close) in self.open_intervals(&zone, date)? {
                let open = open.max(start_ns);
                if close <= open {
                    continue;
                }
                if close - open >= remaining {
                    return instant(open + remaining);
                }
                remaining -= close - open;
            }
            date = date.tomorrow().map_err(out_of_range)?;
        }
        Err(CalendarError::NotEnoughOpenTime)
    }

    /// Open time in `[from, to)`; zero if `to` is not after `from`.
    ///
    /// Walks the local days of the span, so its cost grows with the span, not with the result.
    pub fn open_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Duration, CalendarError> {
        let (from_ns, to_ns) = (from.unix_timestamp_nanos(), to.unix_timestamp_nanos());
        if to_ns <= from_ns {
            return Ok(Duration::ZERO);
        }
        if self.is_always_open() {
            return Ok(nanos_to_duration(to_ns - from_ns));
        }
        let zone = self.zone()?;
        let mut date = local_date(&zone, from_ns)?;
        let last = local_date(&zone, to_ns)?;
        let mut total: i128 = 0;
        while date <= last {
            for (open, close) in self.open_intervals(&zone, date)? {
                let (open, close) = (open.max(from_ns), close.min(to_ns));
                if close > open {
                    total += close - open;
                }
            }
            date = date.tomorrow().map_err(out_of_range)?;
        }
        Ok(nanos_to_duration(total))
    }

    /// Open all day every day with no holidays: business time is wall-clock time, in any zone.
    fn is_always_open(&self) -> bool {
        self.holidays.is_empty()
            && self.hours.days().iter().all(|(_, hours)| {
                hours
                    .iter()
                    .any(|h| h.start_minute == 0 && h.end_minute == MINUTES_PER_DAY)
            })
    }

    fn zone(&self) -> Result<TimeZone, CalendarError> {
        TimeZone::get(&self.time_zone)
            .map_err(|_| CalendarError::UnknownTimeZone(self.time_zone.clone()))
    }

    /// The open intervals of one local date as Unix nanoseconds, sorted and disjoint.
    ///
    /// Clipped to the date's own instants and merged, so even a calendar that was never
    /// validated (overlaps, a zone that skipped a whole day) is never counted twice.
    fn open_intervals(
        &self,
        zone: &TimeZone,
        date: Date,
    ) -> Result<Vec<(i128, i128)>, CalendarError> {
        let hours = self.hours.on(date.weekday());
        if hours.is_empty() || self.holidays.contains(&date) {
            return Ok(Vec::new());
        }
        let day_start = local_instant(zone, date, 0)?;
        let day_end = local_instant(zone, date, MINUTES_PER_DAY)?;
        let mut intervals = Vec::with_capacity(hours.len());
        for h in hours.iter().filter(|h| h.is_well_formed()) {
            let open = local_instant(zone, date, h.start_minute)?.clamp(day_start, day_end);
            let close = local_instant(zone, date, h.end_minute)?.clamp(day_start, day_end);
            if open < close {
                intervals.push((open, close));
            }
        }
        intervals.sort_unstable();
        let mut merged: Vec<(i128, i128)> = Vec::with_capacity(intervals.len());
        for (open, close) in intervals {
            match merged.last_mut() {
                Some(last) if open <= last.1 => last.1 = last.1.max(close),
                _ => merged.push((open, close)),
            }
        }
        Ok(merged)
    }
}

fn out_of_range<E>(_: E) -> CalendarError {
    CalendarError::OutOfRange
}

fn duration_to_nanos(d: Duration) -> i128 {
    i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)
}

fn nanos_to_duration(nanos: i128) -> Duration {
    if nanos <= 0 {
        return Duration::ZERO;
    }
    let secs = u64::try_from(nanos / NANOS_PER_SECOND).unwrap_or(u64::MAX);
    let subsec = u32::try_from(nanos % NANOS_PER_SECOND).unwrap_or(0);
    Duration::new(secs, subsec)
}

fn instant(unix_nanos: i128) -> Result<OffsetDateTime, CalendarError> {
    OffsetDateTime::from_unix_timestamp_nanos(unix_nanos).map_err(out_of_range)
}

fn local_date(zone: &TimeZone, unix_nanos: i128) -> Result<Date, CalendarError> {
    let ts = Timestamp::from_nanosecond(unix_nanos).map_err(out_of_range)?;
    Ok(zone.to_datetime(ts).date())
}

/// The instant of a local wall-clock minute of `date` (1440 is the next day's midnight), with
/// jiff's "compatible" rule for times in a DST gap or fold.
fn local_instant(zone: &TimeZone, date: Date, minute: u16) -> Result<i128, CalendarError> {
    let datetime = if minute >= MINUTES_PER_DAY {
        date.tomorrow()
            .map_err(out_of_range)?
            .to_datetime(Time::midnight())
    } else {
        let hour = i8::try_from(minute / 60).map_err(out_of_range)?;
        let min = i8::try_from(minute % 60).map_err(out_of_range)?;
        date.to_datetime(Time::new(hour, min, 0, 0).map_err(out_of_range)?)
    };
    Ok(zone
        .to_timestamp(datetime)
        .map_err(out_of_range)?
        .as_nanosecond())
}

// ---------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------

/// The service level for one tier (and optionally one severity).
///
/// Targets count open time on the named calendar; the at-risk window, follow-up and auto-close
/// delays are wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    /// Stable id, stored on tickets, e.g. "tier-a-critical".
    pub id: String,
    /// Name for people.
    pub display_name: String,
    /// The calendar the targets count in: a key of [`SlaPolicies::calendars`] or
    /// [`ALWAYS_OPEN`].
    pub calendar: String,
    /// Open time from creation to the first response.
    #[serde(with = "humantime_serde")]
    pub first_response_target: Duration,
    /// Open time from creation to resolution, not counting paused time.
    #[serde(with = "humantime_serde")]
    pub resolution_target: Duration,
    /// How long (wall-clock) before a due time the ticket is AT_RISK; zero means never.
    #[serde(with = "humantime_serde")]
    pub at_risk_window: Duration,
    /// Hold reasons that pause the resolution clock. PENDING_CUSTOMER always pauses.
    #[serde(default)]
    pub pause_on_hold_reasons: Vec<HoldReason>,
    /// Time from resolution to the customer follow-up; zero means no follow-up.
    #[serde(default, with = "humantime_serde")]
    pub follow_up_delay: Duration,
    /// A RESOLVED ticket with no customer reply closes this long after resolution; zero means
    /// only explicitly.
    #[serde(default, with = "humantime_serde")]
    pub auto_close_delay: Duration,
}

impl SlaPolicy {
    /// Whether ON_HOLD for `reason` stops the resolution clock. (PENDING_CUSTOMER always does.)
    pub fn pauses_on_hold(&self, reason: HoldReason) -> bool {
        self.pause_on_hold_reasons.contains(&reason)
    }
}

/// The policies of one tier: one for any severity, and optional tighter (or looser) ones for
/// exact severities, which win.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierPolicies {
    /// Applies when no policy is given for the ticket's severity.
    pub any_severity: SlaPolicy,
    /// For LOW tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<SlaPolicy>,
    /// For MEDIUM tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<SlaPolicy>,
    /// For HIGH tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<SlaPolicy>,
    /// For CRITICAL tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<SlaPolicy>,
}

impl TierPolicies {
    /// The policy for `severity`: its own if given, else the any-severity one.
    pub fn get(&self, severity: Severity) -> &SlaPolicy {
        self.exact(severity).unwrap_or(&self.any_severity)
    }

    fn exact(&self, severity: Severity) -> Option<&SlaPolicy> {
        match severity {
            Severity::Low => self.low.as_ref(),
            Severity::Medium => self.medium.as_ref(),
            Severity::High => self.high.as_ref(),
            Severity::Critical => self.critical.as_ref(),
        }
    }
}

/// Every SLA policy in force, and the calendars they count in.
///
/// Each tier must have an any-severity policy; the configuration's shape makes that so (a
/// missing `tier_b` or `tier_b.any_severity` fails to deserialize), so [`SlaPolicies::select`]
/// always has an answer.
///
/// The [`Default`] set is a product decision (the customer-service texts set no numbers):
///
/// | policy              | calendar       | first response | resolution        | at risk | follow-up |
/// |---------------------|----------------|----------------|-------------------|---------|-----------|
/// | `tier-a`            | business_hours | 15 min         | 8 h (~1 day)      | 5 min   | 1 day     |
/// | `tier-a-critical`   | 24x7           | 5 min          | 4 h               | 2 min   | 1 day     |
/// | `tier-b`            | business_hours | 1 h            | 20 h (2 days)     | 15 min  | 2 days    |
/// | `tier-b-critical`   | 24x7           | 15 min         | 8 h               | 5 min   | 2 days    |
/// | `tier-c`            | business_hours | 4 h            | 50 h (5 days)     | 1 h     | 3 days    |
/// | `tier-c-critical`   | 24x7           | 30 min         | 24 h              | 10 min  | 3 days    |
///
/// `business_hours` is Monday to Friday 08:00-18:00 (a 10-hour business day) in UTC;
/// [`SlaPolicies::office_hours_in`] gives the same set in another zone. Critical tickets (safety,
/// legal, service down) count around the clock whatever the tier. Every policy pauses on hold
/// for third-party, scheduled and fulfilment reasons (waiting on others), not for internal or
/// other ones (the company's own delays), and auto-closes 7 days after resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicies {
    /// Named business calendars. [`ALWAYS_OPEN`] ("24x7") is built in and needs no entry.
    #[serde(default)]
    pub calendars: BTreeMap<String, BusinessCalendar>,
    /// Policies for tier A customers.
    pub tier_a: TierPolicies,
    /// Policies for tier B customers.
    pub tier_b: TierPolicies,
    /// Policies for tier C customers.
    pub tier_c: TierPolicies,
}

impl Default for SlaPolicies {
    fn default() -> Self {
        SlaPolicies::office_hours_in("UTC")
    }
}

impl SlaPolicies {
    /// The default policies (see the table on [`SlaPolicies`]) with the business-hours calendar
    /// in `time_zone`.
    pub fn office_hours_in(time_zone: &str) -> SlaPolicies {
        const MINUTE: u64 = 60;
        const HOUR: u64 = 60 * MINUTE;
        const DAY: u64 = 24 * HOUR;
        let policy = |id: &str, name: &str, calendar: &str, targets: [u64; 3], follow_up: u64| {
            let [first_response, resolution, at_risk] = targets;
            SlaPolicy {
                id: id.into(),
                display_name: name.into(),
                calendar: calendar.into(),
                first_response_target: Duration::from_secs(first_response),
                resolution_target: Duration::from_secs(resolution),
                at_risk_window: Duration::from_secs(at_risk),
                pause_on_hold_reasons: vec![
                    HoldReason::ThirdParty,
                    HoldReason::Scheduled,
                    HoldReason::Fulfilment,
                ],
                follow_up_delay: Duration::from_secs(follow_up),
                auto_close_delay: Duration::from_secs(7 * DAY),
            }
        };
        let office = "business_hours";
        SlaPolicies {
            calendars: BTreeMap::from([(
                office.to_owned(),
                BusinessCalendar::office_hours(time_zone),
            )]),
            tier_a: TierPolicies {
                any_severity: policy(
                    "tier-a",
                    "Tier A",
                    office,
                    [15 * MINUTE, 8 * HOUR, 5 * MINUTE],
                    DAY,
                ),
                critical: Some(policy(
                    "tier-a-critical",
                    "Tier A, critical",
                    ALWAYS_OPEN,
                    [5 * MINUTE, 4 * HOUR, 2 * MINUTE],
                    DAY,
                )),
                low: None,
                medium: None,
                high: None,
            },
            tier_b: TierPolicies {
                any_severity: policy(
                    "tier-b",
                    "Tier B",
                    office,
                    [HOUR, 20 * HOUR, 15 * MINUTE],
                    2 * DAY,
                ),
                critical: Some(policy(
                    "tier-b-critical",
                    "Tier B, critical",
                    ALWAYS_OPEN,
                    [15 * MINUTE, 8 * HOUR, 5 * MINUTE],
                    2 * DAY,
                )),
                low: None,
                medium: None,
                high: None,
            },
            tier_c: TierPolicies {
                any_severity: policy(
                    "tier-c",
                    "Tier C",
                    office,
                    [4 * HOUR, 50 * HOUR, HOUR],
                    3 * DAY,
                ),
                critical: Some(policy(
                    "tier-c-critical",
                    "Tier C, critical",
                    ALWAYS_OPEN,
                    [30 * MINUTE, 24 * HOUR, 10 * MINUTE],
                    3 * DAY,
                )),
                low: None,
                medium: None,
                high: None,
            },
        }
    }

    /// The policy for a ticket: the tier's policy for the exact severity if there is one, else
    /// the tier's any-severity policy.
    pub fn select(&self, tier: Tier, severity: Severity) -> &SlaPolicy {
        self.tier(tier).get(severity)
    }

    /// The policy with this id (the one stored on a ticket), if it is still configured.
    pub fn by_id(&self, id: &str) -> Option<&SlaPolicy> {
        self.iter().map(|(_, _, p)| p).find(|p| p.id == id)
    }

    /// A calendar by name; [`ALWAYS_OPEN`] is built in.
    pub fn calendar(&self, name: &str) -> Result<&BusinessCalendar, CalendarError> {
        if name == ALWAYS_OPEN {
            return Ok(&ALWAYS_OPEN_CALENDAR);
        }
        self.calendars
            .get(name)
            .ok_or_else(|| CalendarError::UnknownCalendar(name.to_owned()))
    }

    /// Every policy with the tier and severity it applies to (`None`: any severity), tier A
    /// first, the any-severity policy before the exact ones.
    pub fn iter(&self) -> impl Iterator<Item = (Tier, Option<Severity>, &SlaPolicy)> {
        Tier::ALL.into_iter().flat_map(move |tier| {
            let policies = self.tier(tier);
            std::iter::once((tier, None, &policies.any_severity)).chain(
                Severity::ALL
                    .into_iter()
                    .filter_map(move |s| policies.exact(s).map(|p| (tier, Some(s), p))),
            )
        })
    }

    /// Problems with the policies and calendars, as (field, description). Empty means usable.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (name, calendar) in &self.calendars {
            if name == ALWAYS_OPEN {
                problems.push((
                    format!("calendars.{name}"),
                    format!("{ALWAYS_OPEN} is built in and cannot be redefined"),
                ));
            }
            for (field, problem) in calendar.problems() {
                problems.push((format!("calendars.{name}.{field}"), problem));
            }
        }
        let mut seen_ids = BTreeSet::new();
        for (tier, severity, policy) in self.iter() {
            let tier_field = match tier {
                Tier::A => "tier_a",
                Tier::B => "tier_b",
                Tier::C => "tier_c",
            };
            let at = format!(
                "{tier_field}.{}",
                severity.map_or("any_severity", Severity::as_str)
            );
            let mut push = |field: &str, problem: String| {
                problems.push((format!("{at}.{field}"), problem));
            };
            if policy.id.trim().is_empty() {
                push("id", "must not be empty".into());
            } else if !seen_ids.insert(policy.id.as_str()) {
                push("id", format!("duplicate policy id {:?}", policy.id));
            }
            if policy.display_name.trim().is_empty() {
                push("display_name", "must not be empty".into());
            }
            if policy.calendar != ALWAYS_OPEN && !self.calendars.contains_key(&policy.calendar) {
                push(
                    "calendar",
                    format!(
                        "unknown calendar {:?}: define it under calendars or use {ALWAYS_OPEN}",
                        policy.calendar
                    ),
                );
            }
            if policy.first_response_target.is_zero() {
                push("first_response_target", "must be more than zero".into());
            }
            if policy.resolution_target.is_zero() {
                push("resolution_target", "must be more than zero".into());
            }
        }
        problems
    }

    fn tier(&self, tier: Tier) -> &TierPolicies {
        match tier {
            Tier::A => &self.tier_a,
            Tier::B => &self.tier_b,
            Tier::C => &self.tier_c,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The clock of one ticket
// ---------------------------------------------------------------------------------------------

/// Combined status of a ticket's targets (proto `SlaStatus`, without UNSPECIFIED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaStatus {
    /// Every pending target is further away than the at-risk window.
    OnTrack,
    /// A pending target falls due within the at-risk window (wall-clock).
    AtRisk,
    /// A target was missed. Stays so for the life of the ticket.
    Breached,
    /// Resolved with every target met. Final unless the ticket reopens.
    Met,
    /// The resolution clock is paused and no target has been missed.
    Paused,
}

/// One of a policy's two targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Creation to first response. Never paused.
    FirstResponse,
    /// Creation to resolution, minus paused open time.
    Resolution,
}

/// The SLA clock of one ticket: what is stored on it.
///
/// Fields are public so the store can save and load them; change them only through the
/// operations, which keep them consistent. Every operation takes the instant it happens at and:
/// - first records any target missed by then (see [`SlaClock::record_breaches`]) and returns
///   those newly missed targets: for each one the caller escalates the ticket once and raises
///   SLA_BREACHED. A target is returned at most once in the life of the clock.
/// - is idempotent: pausing a paused clock, resuming a running one, a second first response,
///   resolving a resolved clock or reopening an unresolved one change nothing. Pause, resume
///   and first response do nothing on a resolved clock.
///
/// Instants are expected in order; an earlier instant than the last change counts as no time.
///
/// First response is never paused: the proto pauses only the resolution clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaClock {
    /// The [`SlaPolicy`] applied.
    pub policy_id: String,
    /// The calendar the targets count in (look it up with [`SlaPolicies::calendar`]).
    pub calendar: String,
    /// When the ticket was created; both clocks start here.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The policy's at-risk window when the clock started.
    #[serde(with = "humantime_serde")]
    pub at_risk_window: Duration,
    /// created_at + the first-response target in open time.
    #[serde(with = "time::serde::rfc3339")]
    pub first_response_due: OffsetDateTime,
    /// When the customer first got a response.
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_response_at: Option<OffsetDateTime>,
    /// The policy's resolution target, in open time.
    #[serde(with = "humantime_serde")]
    pub resolution_target: Duration,
    /// created_at + resolution_target + `paused_total`, in open time. While paused the real due
    /// time keeps moving: see [`SlaClock::resolution_due`].
    #[serde(with = "time::serde::rfc3339")]
    pub resolution_due: OffsetDateTime,
    /// Open time spent paused in finished pauses (time resolved before a reopen included).
    #[serde(with = "humantime_serde")]
    pub paused_total: Duration,
    /// Start of the current pause, if paused now.
    #[serde(with = "time::serde::rfc3339::option")]
    pub paused_since: Option<OffsetDateTime>,
    /// When resolved, if resolved now.
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    /// The first-response target was missed and that has been recorded (escalated).
    pub first_response_breached: bool,
    /// The resolution target was missed and that has been recorded (escalated).
    pub resolution_breached: bool,
}

impl SlaClock {
    /// Starts the clock of a ticket created at `created_at` under `policy`, counting in
    /// `calendar` (the one named by `policy.calendar`).
    pub fn start(
        policy: &SlaPolicy,
        calendar: &BusinessCalendar,
        created_at: OffsetDateTime,
    ) -> Result<SlaClock, CalendarError> {
        Ok(SlaClock {
            policy_id: policy.id.clone(),
            calendar: policy.calendar.clone(),
            created_at,
            at_risk_window: policy.at_risk_window,
            first_response_due: calendar.add(created_at, policy.first_response_target)?,
            first_response_at: None,
            resolution_target: policy.resolution_target,
            resolution_due: calendar.add(created_at, policy.resolution_target)?,
            paused_total: Duration::ZERO,
            paused_since: None,
            resolved_at: None,
            first_response_breached: false,
            resolution_breached: false,
        })
    }

    /// Stops the resolution clock (PENDING_CUSTOMER, or ON_HOLD for a pausing reason).
    #[must_use = "newly breached targets must be escalated"]
    pub fn pause(&mut self, at: OffsetDateTime) -> Vec<Target> {
        let newly = self.record_breaches(at);
        if self.paused_since.is_none() && self.resolved_at.is_none() {
            self.paused_since = Some(at);
        }
        newly
    }

    /// Restarts the resolution clock; its due time moves later by the open time spent paused.
    pub fn resume(
        &mut self,
        calendar: &BusinessCalendar,
        at: OffsetDateTime,
    ) -> Result<Vec<Target>, CalendarError> {
        let Some(since) = self.paused_since else {
            return Ok(self.record_breaches(at));
        };
        // Compute before changing anything, so an error leaves the clock as it was.
        let (paused_total, due) = self.after_pause(calendar, since, at)?;
        // Record before the due time moves: a miss before the pause must stick.
        let newly = self.record_breaches(at);
        self.paused_total = paused_total;
        self.resolution_due = due;
        self.paused_since = None;
        Ok(newly)
    }

    /// Records the first response (the first public agent comment, or the assignment of a voice
    /// or counter ticket). Later responses change nothing.
    #[must_use = "newly breached targets must be escalated"]
    pub fn first_response(&mut self, at: OffsetDateTime) -> Vec<Target> {
        let newly = self.record_breaches(at);
        if self.first_response_at.is_none() && self.resolved_at.is_none() {
            self.first_response_at = Some(at);
        }
        newly
    }

    /// Stops both clocks: a current pause ends, and the status becomes MET unless a target was
    /// missed (then it stays BREACHED).
    pub fn resolve(
        &mut self,
        calendar: &BusinessCalendar,
        at: OffsetDateTime,
    ) -> Result<Vec<Target>, CalendarError> {
        if self.resolved_at.is_some() {
            return Ok(Vec::new());
        }
        let (paused_total, due) = match self.paused_since {
            Some(since) => self.after_pause(calendar, since, at)?,
            None => (self.paused_total, self.resolution_due),
        };
        let newly = self.record_breaches(at);
        self.paused_total = paused_total;
        self.resolution_due = due;
        self.paused_since = None;
        self.resolved_at = Some(at);
        Ok(newly)
    }

    /// Restarts the clocks of a resolved ticket; the time spent resolved counts as paused. A
    /// breach recorded before stays.
    pub fn reopen(
        &mut self,
        calendar: &BusinessCalendar,
        at: OffsetDateTime,
    ) -> Result<Vec<Target>, CalendarError> {
        let Some(resolved) = self.resolved_at else {
            return Ok(self.record_breaches(at));
        };
        let (paused_total, due) = self.after_pause(calendar, resolved, at)?;
        let newly = self.record_breaches(at);
        self.paused_total = paused_total;
        self.resolution_due = due;
        self.resolved_at = None;
        Ok(newly)
    }

    /// Records every target missed by `now` that was not recorded yet, and returns those. The
    /// breach monitor calls it at [`SlaClock::next_check`]; the other operations call it too.
    #[must_use = "newly breached targets must be escalated"]
    pub fn record_breaches(&mut self, now: OffsetDateTime) -> Vec<Target> {
        let mut newly = Vec::new();
        for target in [Target::FirstResponse, Target::Resolution] {
            if !self.recorded(target) && self.missed_by(target, now) {
                match target {
                    Target::FirstResponse => self.first_response_breached = true,
                    Target::Resolution => self.resolution_breached = true,
                }
                newly.push(target);
            }
        }
        newly
    }

    /// The status at `now`: BREACHED if any target was missed (recorded or not), else MET if
    /// resolved, PAUSED if paused, AT_RISK if a pending target falls due within the at-risk
    /// window, else ON_TRACK.
    pub fn status(&self, now: OffsetDateTime) -> SlaStatus {
        if self.missed(Target::FirstResponse, now) || self.missed(Target::Resolution, now) {
            return SlaStatus::Breached;
        }
        if self.resolved_at.is_some() {
            return SlaStatus::Met;
        }
        if self.paused_since.is_some() {
            return SlaStatus::Paused;
        }
        let mut pending = Vec::with_capacity(2);
        if self.first_response_at.is_none() {
            pending.push(self.first_response_due);
        }
        pending.push(self.resolution_due);
        let at_risk = pending
            .into_iter()
            .any(|due| self.at_risk_from(due).is_none_or(|from| now >= from));
        if at_risk {
            SlaStatus::AtRisk
        } else {
            SlaStatus::OnTrack
        }
    }

    /// Whether the resolution clock is stopped now (true even if BREACHED).
    pub fn is_paused(&self) -> bool {
        self.paused_since.is_some()
    }

    /// How many targets were missed and escalated: 0, 1 or 2.
    pub fn escalation_level(&self) -> u32 {
        u32::from(self.first_response_breached) + u32::from(self.resolution_breached)
    }

    /// The resolution due time as of `now`. While paused it keeps moving with the open time
    /// paused so far: created_at + target + all paused open time, including the current pause.
    pub fn resolution_due(
        &self,
        calendar: &BusinessCalendar,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, CalendarError> {
        match self.paused_since {
            Some(since) => Ok(self.after_pause(calendar, since, now)?.1),
            None => Ok(self.resolution_due),
        }
    }

    /// Open time the resolution clock has been paused, including the current pause up to `now`.
    pub fn paused_time(
        &self,
        calendar: &BusinessCalendar,
        now: OffsetDateTime,
    ) -> Result<Duration, CalendarError> {
        match self.paused_since {
            Some(since) => Ok(self
                .paused_total
                .saturating_add(calendar.open_between(since, now)?)),
            None => Ok(self.paused_total),
        }
    }

    /// The next instant at which the status can change, or a breach must be recorded, without
    /// any operation: a pending target's at-risk start or due time. The breach monitor stores it
    /// in an indexed column and looks at tickets where it is not after now.
    ///
    /// It is in the past when a breach has happened but is not recorded yet (look now). `None`
    /// when nothing can happen on its own: resolved, every target met or recorded as breached,
    /// or paused with the first response given. (While paused without a first response, that
    /// target can still be missed, so its due time is returned.)
    pub fn next_check(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        // At-risk starts matter only while the status could still show them.
        let at_risk_can_show = self.paused_since.is_none()
            && !self.missed(Target::FirstResponse, now)
            && !self.missed(Target::Resolution, now);
        [Target::FirstResponse, Target::Resolution]
            .into_iter()
            .filter_map(|target| self.watched_due(target, now))
            .map(|due| match self.at_risk_from(due) {
                Some(from) if at_risk_can_show && from > now => from,
                _ => due,
            })
            .min()
    }

    /// The due time of a target whose breach may still need recording: missed but unrecorded,
    /// or still running.
    fn watched_due(&self, target: Target, now: OffsetDateTime) -> Option<OffsetDateTime> {
        if self.recorded(target) {
            return None;
        }
        let (due, running) = match target {
            Target::FirstResponse => (
                self.first_response_due,
                self.first_response_at.is_none() && self.resolved_at.is_none(),
            ),
            Target::Resolution => (
                self.resolution_due,
                self.resolved_at.is_none() && self.paused_since.is_none(),
            ),
        };
        (running || self.missed_by(target, now)).then_some(due)
    }

    fn recorded(&self, target: Target) -> bool {
        match target {
            Target::FirstResponse => self.first_response_breached,
            Target::Resolution => self.resolution_breached,
        }
    }

    fn missed(&self, target: Target, now: OffsetDateTime) -> bool {
        self.recorded(target) || self.missed_by(target, now)
    }

    /// Whether the target's due time passed while its clock was running, up to `now`.
    fn missed_by(&self, target: Target, now: OffsetDateTime) -> bool {
        // A clock counts until it stops (or until now, if earlier).
        let until = |stopped: Option<OffsetDateTime>| stopped.map_or(now, |s| s.min(now));
        match target {
            Target::FirstResponse => match self.first_response_at {
                Some(at) => at >= self.first_response_due,
                None => until(self.resolved_at) >= self.first_response_due,
            },
            // `resolution_due` is exact up to the start of a current pause, and a resolve
            // recomputes it first.
            Target::Resolution => {
                until(self.resolved_at.or(self.paused_since)) >= self.resolution_due
            }
        }
    }

    /// When the at-risk window before `due` starts; `None` if before the representable range.
    fn at_risk_from(&self, due: OffsetDateTime) -> Option<OffsetDateTime> {
        let window = time::Duration::try_from(self.at_risk_window).ok()?;
        due.checked_sub(window)
    }

    /// Paused total and resolution due time if a pause from `since` ends at `until`.
    fn after_pause(
        &self,
        calendar: &BusinessCalendar,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<(Duration, OffsetDateTime), CalendarError> {
        let paused = self
            .paused_total
            .saturating_add(calendar.open_between(since, until)?);
        let due = calendar.add(
            self.created_at,
            self.resolution_target.saturating_add(paused),
        )?;
        Ok((paused, due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    fn hours(list: &[&str]) -> Vec<OpeningHours> {
        list.iter()
            .map(|s| s.parse().expect("valid opening hours"))
            .collect()
    }

    fn date(s: &str) -> Date {
        s.parse().expect("valid date")
    }

    fn berlin() -> BusinessCalendar {
        BusinessCalendar::office_hours("Europe/Berlin")
    }

    fn new_york() -> BusinessCalendar {
        BusinessCalendar::office_hours("America/New_York")
    }

    /// Open only on Sundays, for DST days (which are Sundays in Europe and the US).
    fn sundays(zone: &str, list: &[&str]) -> BusinessCalendar {
        BusinessCalendar {
            time_zone: zone.into(),
            hours: WeeklyHours {
                sunday: hours(list),
                ..WeeklyHours::default()
            },
            holidays: BTreeSet::new(),
        }
    }

    fn add(cal: &BusinessCalendar, start: OffsetDateTime, d: Duration) -> OffsetDateTime {
        cal.add(start, d).expect("add succeeds")
    }

    fn open(cal: &BusinessCalendar, from: OffsetDateTime, to: OffsetDateTime) -> Duration {
        cal.open_between(from, to).expect("open_between succeeds")
    }

    fn field_names(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(f, _)| f.as_str()).collect()
    }

    // Dates used (2025): Mon 3 Mar, Fri 7 Mar, Sat 8 Mar, Mon 10 Mar; Berlin springs forward on
    // Sun 30 Mar and falls back on Sun 26 Oct; New York on Sun 9 Mar and Sun 2 Nov.

    // --- business calendar ------------------------------------------------------------------

    #[test]
    fn adding_within_a_day_counts_wall_clock_time() {
        let start = datetime!(2025-03-03 09:00 +01:00);
        assert_eq!(
            add(&berlin(), start, 2 * HOUR),
            datetime!(2025-03-03 11:00 +01:00)
        );
    }

    #[test]
    fn adding_past_closing_continues_at_the_next_opening() {
        let start = datetime!(2025-03-03 17:00 +01:00);
        assert_eq!(
            add(&berlin(), start, 3 * HOUR),
            datetime!(2025-03-04 10:00 +01:00)
        );
    }

    #[test]
    fn a_friday_afternoon_target_skips_the_weekend() {
        let start = datetime!(2025-03-07 16:00 +01:00);
        assert_eq!(
            add(&berlin(), start, 4 * HOUR),
            datetime!(2025-03-10 10:00 +01:00)
        );
    }

    #[test]
    fn outside_hours_the_clock_starts_at_the_next_opening() {
        let cal = berlin();
        let saturday_noon = datetime!(2025-03-08 12:00 +01:00);
        let monday_dawn = datetime!(2025-03-10 06:00 +01:00);
        let monday_night = datetime!(2025-03-10 19:00 +01:00);
        assert_eq!(
            add(&cal, saturday_noon, HOUR),
            datetime!(2025-03-10 09:00 +01:00)
        );
        assert_eq!(
            add(&cal, monday_dawn, HOUR),
            datetime!(2025-03-10 09:00 +01:00)
        );
        assert_eq!(
            add(&cal, monday_night, HOUR),
            datetime!(2025-03-11 09:00 +01:00)
        );
    }

    #[test]
    fn a_target_that_uses_up_the_day_falls_due_at_closing_not_next_morning() {
        let start = datetime!(2025-03-03 08:00 +01:00);
        assert_eq!(
            add(&berlin(), start, 10 * HOUR),
            datetime!(2025-03-03 18:00 +01:00)
        );
        assert_eq!(
            add(&berlin(), start, 10 * HOUR + MIN),
            datetime!(2025-03-04 08:01 +01:00)
        );
    }

    #[test]
    fn adding_nothing_returns_the_start_even_outside_hours() {
        let saturday = datetime!(2025-03-08 12:00 +01:00);
        assert_eq!(add(&berlin(), saturday, Duration::ZERO), saturday);
    }

    #[test]
    fn five_business_days_span_a_week() {
        let start = datetime!(2025-03-03 08:00 +01:00);
        assert_eq!(
            add(&berlin(), start, 50 * HOUR),
            datetime!(2025-03-07 18:00 +01:00)
        );
        assert_eq!(
            add(&berlin(), start, 51 * HOUR),
            datetime!(2025-03-10 09:00 +01:00)
        );
    }

    #[test]
    fn a_lunch_break_is_not_counted() {
        let cal = BusinessCalendar {
            hours: WeeklyHours::mon_to_fri(&hours(&["08:00-12:00", "13:00-18:00"])),
            ..berlin()
        };
        let start = datetime!(2025-03-03 11:00 +01:00);
        assert_eq!(
            add(&cal, start, 2 * HOUR),
            datetime!(2025-03-03 14:00 +01:00)
        );
        assert_eq!(
            open(&cal, start, datetime!(2025-03-03 14:00 +01:00)),
            2 * HOUR
        );
        let at_lunch = datetime!(2025-03-03 12:30 +01:00);
        assert_eq!(add(&cal, at_lunch, MIN), datetime!(2025-03-03 13:01 +01:00));
    }

    #[test]
    fn intervals_may_be_listed_in_any_order() {
        let cal = BusinessCalendar {
            hours: WeeklyHours::mon_to_fri(&hours(&["13:00-18:00", "08:00-12:00"])),
            ..berlin()
        };
        assert!(cal.problems().is_empty());
        let start = datetime!(2025-03-03 07:00 +01:00);
        assert_eq!(
            add(&cal, start, 5 * HOUR),
            datetime!(2025-03-03 14:00 +01:00)
        );
    }

    #[test]
    fn holidays_are_closed_all_day() {
        let cal = BusinessCalendar {
            holidays: BTreeSet::from([date("2025-03-10")]),
            ..berlin()
        };
        let friday = datetime!(2025-03-07 16:00 +01:00);
        assert_eq!(
            add(&cal, friday, 4 * HOUR),
            datetime!(2025-03-11 10:00 +01:00)
        );
        assert_eq!(
            open(&cal, friday, datetime!(2025-03-11 10:00 +01:00)),
            4 * HOUR
        );
    }

    #[test]
    fn open_between_counts_only_open_time_in_a_half_open_span() {
        let cal = berlin();
        let friday = datetime!(2025-03-07 17:00 +01:00);
        let monday = datetime!(2025-03-10 09:00 +01:00);
        assert_eq!(open(&cal, friday, monday), 2 * HOUR);
        assert_eq!(open(&cal, monday, friday), Duration::ZERO, "reversed span");
        assert_eq!(open(&cal, friday, friday), Duration::ZERO, "empty span");
        let saturday = datetime!(2025-03-08 10:00 +01:00);
        let sunday = datetime!(2025-03-09 10:00 +01:00);
        assert_eq!(open(&cal, saturday, sunday), Duration::ZERO, "weekend");
    }

    #[test]
    fn open_between_undoes_add() {
        let cal = BusinessCalendar {
            hours: WeeklyHours::mon_to_fri(&hours(&["08:00-12:00", "13:00-18:00"])),
            holidays: BTreeSet::from([date("2025-03-26")]),
            ..berlin()
        };
        let starts = [
            datetime!(2025-03-21 07:13 +01:00),
            datetime!(2025-03-21 12:30 +01:00),
            datetime!(2025-03-22 12:00 +01:00),
            datetime!(2025-03-28 17:59 +01:00),
        ];
        for start in starts {
            for minutes in [1, 59, 240, 600, 601, 3000, 10_000] {
                let d = MIN * minutes;
                let end = add(&cal, start, d);
                assert_eq!(open(&cal, start, end), d, "{start} + {minutes} min = {end}");
            }
        }
    }

    #[test]
    fn office_hours_keep_local_time_across_the_berlin_spring_forward_weekend() {
        // Friday is CET (+01:00), Monday CEST (+02:00): 09:00 local, not 08:00 local.
        let friday = datetime!(2025-03-28 17:00 +01:00);
        assert_eq!(
            add(&berlin(), friday, 2 * HOUR),
            datetime!(2025-03-31 09:00 +02:00)
        );
        assert_eq!(
            open(&berlin(), friday, datetime!(2025-03-31 09:00 +02:00)),
            2 * HOUR
        );
    }

    #[test]
    fn office_hours_keep_local_time_across_the_berlin_fall_back_weekend() {
        let friday = datetime!(2025-10-24 17:00 +02:00);
        assert_eq!(
            add(&berlin(), friday, 2 * HOUR),
            datetime!(2025-10-27 09:00 +01:00)
        );
    }

    #[test]
    fn a_berlin_day_is_23_hours_at_spring_forward_and_25_at_fall_back() {
        let cal = sundays("Europe/Berlin", &["00:00-24:00"]);
        let spring = open(
            &cal,
            datetime!(2025-03-29 12:00 +01:00),
            datetime!(2025-03-31 12:00 +02:00),
        );
        assert_eq!(spring, 23 * HOUR);
        let fall = open(
            &cal,
            datetime!(2025-10-25 12:00 +02:00),
            datetime!(2025-10-27 12:00 +01:00),
        );
        assert_eq!(fall, 25 * HOUR);
        let morning = sundays("Europe/Berlin", &["00:00-12:00"]);
        let spring_start = datetime!(2025-03-30 00:00 +01:00);
        assert_eq!(
            add(&morning, spring_start, 11 * HOUR),
            datetime!(2025-03-30 12:00 +02:00)
        );
        assert_eq!(
            add(&morning, spring_start, 11 * HOUR + MIN),
            datetime!(2025-04-06 00:01 +02:00),
            "the spring-forward morning holds only 11 hours"
        );
        let fall_start = datetime!(2025-10-26 00:00 +02:00);
        assert_eq!(
            add(&morning, fall_start, 13 * HOUR),
            datetime!(2025-10-26 12:00 +01:00)
        );
    }

    #[test]
    fn new_york_fall_back_repeats_an_hour_that_counts_twice() {
        let cal = sundays("America/New_York", &["00:00-06:00"]);
        let midnight = datetime!(2025-11-02 00:00 -04:00);
        assert_eq!(
            open(&cal, midnight, datetime!(2025-11-02 12:00 -05:00)),
            7 * HOUR
        );
        assert_eq!(
            add(&cal, midnight, 6 * HOUR),
            datetime!(2025-11-02 05:00 -05:00)
        );
    }

    #[test]
    fn new_york_spring_forward_shortens_an_interval_across_the_jump() {
        let cal = sundays("America/New_York", &["01:00-04:00"]);
        let one_am = datetime!(2025-03-09 01:00 -05:00);
        assert_eq!(
            add(&cal, one_am, 2 * HOUR),
            datetime!(2025-03-09 04:00 -04:00)
        );
        assert_eq!(
            add(&cal, one_am, 2 * HOUR + MIN),
            datetime!(2025-03-16 01:01 -04:00),
            "only two hours open that Sunday"
        );
    }

    #[test]
    fn an_opening_inside_the_spring_forward_gap_counts_from_after_the_jump() {
        // 02:30 does not exist on that day; it is read as 03:30 EDT.
        let cal = sundays("America/New_York", &["02:30-05:00"]);
        let day = open(
            &cal,
            datetime!(2025-03-09 00:00 -05:00),
            datetime!(2025-03-10 00:00 -04:00),
        );
        assert_eq!(day, 90 * MIN);
    }

    #[test]
    fn the_same_instant_falls_due_at_different_times_in_different_zones() {
        // Monday 16:00 UTC is 17:00 in Berlin (one hour left) and 11:00 in New York.
        let instant = datetime!(2025-03-03 16:00 UTC);
        assert_eq!(
            add(&berlin(), instant, 4 * HOUR),
            datetime!(2025-03-04 10:00 UTC)
        );
        assert_eq!(
            add(&new_york(), instant, 4 * HOUR),
            datetime!(2025-03-03 20:00 UTC)
        );
    }

    #[test]
    fn results_are_in_utc_and_equal_the_same_instant_in_any_offset() {
        let due = add(&berlin(), datetime!(2025-03-03 09:00 +01:00), HOUR);
        assert_eq!(due.offset(), time::UtcOffset::UTC);
        assert_eq!(due, datetime!(2025-03-03 09:00 UTC));
    }

    #[test]
    fn the_24x7_calendar_counts_every_hour() {
        let cal = BusinessCalendar::always_open();
        let saturday = datetime!(2025-03-08 22:00 +01:00);
        assert_eq!(
            add(&cal, saturday, 8 * HOUR),
            datetime!(2025-03-09 06:00 +01:00)
        );
        let later = datetime!(2025-03-30 22:00 +02:00);
        assert_eq!(open(&cal, saturday, later), 22 * 24 * HOUR - HOUR);
        assert!(cal.problems().is_empty());
    }

    #[test]
    fn a_calendar_that_never_opens_gives_up_after_ten_years_instead_of_looping() {
        let never = BusinessCalendar {
            hours: WeeklyHours::default(),
            ..berlin()
        };
        let start = datetime!(2025-03-03 09:00 +01:00);
        assert_eq!(never.add(start, MIN), Err(CalendarError::NotEnoughOpenTime));
        assert_eq!(
            open(&never, start, datetime!(2026-03-03 09:00 +01:00)),
            Duration::ZERO
        );
        // 10,000 business days of 10 hours need about 38 years.
        assert_eq!(
            berlin().add(start, 100_000 * HOUR),
            Err(CalendarError::NotEnoughOpenTime)
        );
        // Nine years of business time is still found.
        assert!(berlin().add(start, 9 * 250 * 10 * HOUR).is_ok());
    }

    #[test]
    fn an_unknown_time_zone_is_an_error_not_a_guess() {
        let cal = BusinessCalendar::office_hours("Europe/Atlantis");
        let start = datetime!(2025-03-03 09:00 UTC);
        assert_eq!(
            cal.add(start, HOUR),
            Err(CalendarError::UnknownTimeZone("Europe/Atlantis".into()))
        );
        assert!(cal.open_between(start, start + HOUR).is_err());
    }

    // --- calendar validation and configuration ----------------------------------------------

    #[test]
    fn the_built_in_calendars_have_no_problems() {
        assert!(berlin().problems().is_empty());
        assert!(new_york().problems().is_empty());
        assert!(BusinessCalendar::always_open().problems().is_empty());
    }

    #[test]
    fn validation_names_an_unknown_zone_inverted_and_overlapping_intervals() {
        let cal = BusinessCalendar {
            time_zone: "Europe/Berlinn".into(),
            hours: WeeklyHours {
                monday: hours(&["18:00-08:00"]),
                tuesday: hours(&["08:00-12:00", "11:00-13:00"]),
                wednesday: hours(&["08:00-12:00", "12:00-13:00"]),
                thursday: hours(&["09:00-09:00"]),
                ..WeeklyHours::default()
            },
            holidays: BTreeSet::new(),
        };
        let problems = cal.problems();
        assert_eq!(
            field_names(&problems),
            [
                "time_zone",
                "hours.monday[0]",
                "hours.tuesday",
                "hours.thursday[0]"
            ],
            "touching intervals are fine: {problems:?}"
        );
        assert!(
            problems[0]
                .1
                .contains("unknown time zone \"Europe/Berlinn\"")
        );
        assert_eq!(problems[1].1, "18:00-08:00 must start before it ends");
        assert_eq!(problems[2].1, "08:00-12:00 overlaps 11:00-13:00");
    }

    #[test]
    fn validation_rejects_a_calendar_with_no_open_time() {
        let never = BusinessCalendar {
            hours: WeeklyHours {
                friday: hours(&["18:00-08:00"]),
                ..WeeklyHours::default()
            },
            ..berlin()
        };
        let problems = never.problems();
        assert_eq!(field_names(&problems), ["hours.friday[0]", "hours"]);
        assert!(problems[1].1.contains("never opens"));
    }

    #[test]
    fn opening_hours_parse_from_and_print_as_hh_mm_ranges() {
        let h: OpeningHours = "08:30-24:00".parse().expect("valid");
        assert_eq!((h.start_minute, h.end_minute), (510, 1440));
        assert_eq!(h.to_string(), "08:30-24:00");
        assert_eq!("8:00 - 12:00".parse(), Ok(OpeningHours::hours(8, 12)));
        for bad in [
            "",
            "08:00",
            "08:00-25:00",
            "24:30-24:40",
            "08:60-09:00",
            "8-12",
            "08:00-12:0",
        ] {
            assert!(bad.parse::<OpeningHours>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_calendar_deserializes_from_configuration() {
        let json = r#"{
            "time_zone": "Europe/Berlin",
            "hours": { "monday": ["08:00-12:00", "13:00-18:00"], "saturday": ["10:00-14:00"] },
            "holidays": ["2025-12-25"]
        }"#;
        let cal: BusinessCalendar = serde_json::from_str(json).expect("valid calendar");
        assert_eq!(cal.hours.monday, hours(&["08:00-12:00", "13:00-18:00"]));
        assert!(cal.hours.tuesday.is_empty());
        assert!(cal.holidays.contains(&date("2025-12-25")));
        assert!(cal.problems().is_empty());
        let round_trip: BusinessCalendar =
            serde_json::from_str(&serde_json::to_string(&cal).expect("serialises"))
                .expect("deserialises");
        assert_eq!(round_trip, cal);
        let bad = r#"{ "time_zone": "UTC", "hours": { "monday": ["8 to 12"] } }"#;
        let err = serde_json::from_str::<BusinessCalendar>(bad).expect_err("malformed hours");
        assert!(
            err.to_string()
                .contains("expected opening hours like 08:00-12:00")
        );
        let typo = r#"{ "time_zone": "UTC", "hours": { "mondey": [] } }"#;
        assert!(serde_json::from_str::<BusinessCalendar>(typo).is_err());
    }

    // --- policies ---------------------------------------------------------------------------

    #[test]
    fn the_default_policies_have_no_problems_in_any_zone() {
        assert!(SlaPolicies::default().problems().is_empty());
        assert!(
            SlaPolicies::office_hours_in("Asia/Shanghai")
                .problems()
                .is_empty()
        );
        let bad = SlaPolicies::office_hours_in("Mars/Olympus");
        assert_eq!(
            field_names(&bad.problems()),
            ["calendars.business_hours.time_zone"]
        );
    }

    #[test]
    fn an_exact_severity_policy_wins_over_the_tiers_any_severity_policy() {
        let policies = SlaPolicies::default();
        assert_eq!(
            policies.select(Tier::A, Severity::Critical).id,
            "tier-a-critical"
        );
        assert_eq!(policies.select(Tier::A, Severity::High).id, "tier-a");
        assert_eq!(policies.select(Tier::B, Severity::Low).id, "tier-b");
        assert_eq!(
            policies.select(Tier::C, Severity::Critical).id,
            "tier-c-critical"
        );
    }

    #[test]
    fn the_default_targets_tighten_from_tier_c_to_a_and_for_critical_tickets() {
        let p = SlaPolicies::default();
        let a = p.select(Tier::A, Severity::Medium);
        let b = p.select(Tier::B, Severity::Medium);
        let c = p.select(Tier::C, Severity::Medium);
        assert_eq!(a.first_response_target, 15 * MIN);
        assert_eq!(a.resolution_target, 8 * HOUR);
        assert_eq!(
            (b.first_response_target, b.resolution_target),
            (HOUR, 20 * HOUR)
        );
        assert_eq!(
            (c.first_response_target, c.resolution_target),
            (4 * HOUR, 50 * HOUR)
        );
        for tier in Tier::ALL {
            let normal = p.select(tier, Severity::Medium);
            let critical = p.select(tier, Severity::Critical);
            assert!(critical.first_response_target < normal.first_response_target);
            assert_eq!(critical.calendar, ALWAYS_OPEN);
            assert_eq!(normal.calendar, "business_hours");
        }
    }

    #[test]
    fn pending_customer_is_the_callers_rule_and_hold_reasons_pause_per_policy() {
        let policy = SlaPolicies::default()
            .select(Tier::B, Severity::Medium)
            .clone();
        assert!(policy.pauses_on_hold(HoldReason::ThirdParty));
        assert!(policy.pauses_on_hold(HoldReason::Fulfilment));
        assert!(policy.pauses_on_hold(HoldReason::Scheduled));
        assert!(!policy.pauses_on_hold(HoldReason::Internal));
        assert!(!policy.pauses_on_hold(HoldReason::Other));
    }

    #[test]
    fn policies_are_listed_with_their_tier_and_severity_and_found_by_id() {
        let p = SlaPolicies::default();
        let listed: Vec<_> = p
            .iter()
            .map(|(t, s, pol)| (t, s, pol.id.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                (Tier::A, None, "tier-a"),
                (Tier::A, Some(Severity::Critical), "tier-a-critical"),
                (Tier::B, None, "tier-b"),
                (Tier::B, Some(Severity::Critical), "tier-b-critical"),
                (Tier::C, None, "tier-c"),
                (Tier::C, Some(Severity::Critical), "tier-c-critical"),
            ]
        );
        assert_eq!(
            p.by_id("tier-b-critical").map(|x| x.resolution_target),
            Some(8 * HOUR)
        );
        assert!(p.by_id("tier-z").is_none());
    }

    #[test]
    fn calendars_are_found_by_name_with_24x7_built_in() {
        let p = SlaPolicies::default();
        assert_eq!(
            p.calendar(ALWAYS_OPEN),
            Ok(&BusinessCalendar::always_open())
        );
        assert_eq!(
            p.calendar("business_hours"),
            Ok(&BusinessCalendar::office_hours("UTC"))
        );
        assert_eq!(
            p.calendar("night_shift"),
            Err(CalendarError::UnknownCalendar("night_shift".into()))
        );
    }

    #[test]
    fn policy_validation_names_zero_targets_unknown_calendars_and_duplicate_ids() {
        let mut p = SlaPolicies::default();
        p.tier_a.any_severity.first_response_target = Duration::ZERO;
        p.tier_a.any_severity.resolution_target = Duration::ZERO;
        p.tier_b.any_severity.calendar = "night_shift".into();
        p.tier_c.high = Some(SlaPolicy {
            id: "tier-c".into(),
            ..p.tier_c.any_severity.clone()
        });
        p.tier_c.any_severity.display_name = " ".into();
        p.calendars
            .insert(ALWAYS_OPEN.into(), BusinessCalendar::always_open());
        let problems = p.problems();
        assert_eq!(
            field_names(&problems),
            [
                "calendars.24x7",
                "tier_a.any_severity.first_response_target",
                "tier_a.any_severity.resolution_target",
                "tier_b.any_severity.calendar",
                "tier_c.any_severity.display_name",
                "tier_c.high.id",
            ],
            "{problems:?}"
        );
        assert!(
            problems[3]
                .1
                .starts_with("unknown calendar \"night_shift\"")
        );
        assert_eq!(problems[5].1, "duplicate policy id \"tier-c\"");
        for (_, message) in &problems {
            assert!(!message.ends_with('.'), "{message}");
        }
    }

    #[test]
    fn policies_deserialize_from_configuration_and_every_tier_needs_an_any_severity_policy() {
        let tier = |name: &str| {
            format!(
                r#"{{ "any_severity": {{ "id": "{name}", "display_name": "{name}",
                    "calendar": "office", "first_response_target": "30m",
                    "resolution_target": "2days", "at_risk_window": "10m",
                    "pause_on_hold_reasons": ["third_party"], "follow_up_delay": "1day" }},
                  "critical": {{ "id": "{name}-critical", "display_name": "{name} critical",
                    "calendar": "24x7", "first_response_target": "5m",
                    "resolution_target": "4h", "at_risk_window": "1m" }} }}"#
            )
        };
        let calendar =
            r#"{ "time_zone": "Europe/Berlin", "hours": { "monday": ["08:00-18:00"] } }"#;
        let json = format!(
            r#"{{ "calendars": {{ "office": {calendar} }}, "tier_a": {}, "tier_b": {}, "tier_c": {} }}"#,
            tier("a"),
            tier("b"),
            tier("c")
        );
        let p: SlaPolicies = serde_json::from_str(&json).expect("valid policies");
        assert!(p.problems().is_empty(), "{:?}", p.problems());
        let b = p.select(Tier::B, Severity::Low);
        assert_eq!(b.resolution_target, 48 * HOUR);
        assert_eq!(b.follow_up_delay, 24 * HOUR);
        assert_eq!(
            b.auto_close_delay,
            Duration::ZERO,
            "defaults to only explicitly"
        );
        assert_eq!(b.pause_on_hold_reasons, [HoldReason::ThirdParty]);
        assert_eq!(p.select(Tier::C, Severity::Critical).id, "c-critical");

        let missing_tier = format!(r#"{{ "tier_a": {}, "tier_c": {} }}"#, tier("a"), tier("c"));
        let err = serde_json::from_str::<SlaPolicies>(&missing_tier).expect_err("no tier_b");
        assert!(err.to_string().contains("tier_b"), "{err}");
        let only_critical = r#"{ "critical": { "id": "x", "display_name": "x", "calendar": "24x7",
            "first_response_target": "5m", "resolution_target": "4h", "at_risk_window": "1m" } }"#;
        let err = serde_json::from_str::<TierPolicies>(only_critical).expect_err("no default");
        assert!(err.to_string().contains("any_severity"), "{err}");
    }

    #[test]
    fn severity_and_hold_reason_names_round_trip() {
        for s in Severity::ALL {
            assert_eq!(Severity::from_db(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).expect("serialises");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        for r in HoldReason::ALL {
            assert_eq!(HoldReason::from_db(r.as_str()), Some(r));
            let json = serde_json::to_string(&r).expect("serialises");
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert_eq!(HoldReason::from_db("THIRD_PARTY"), None);
    }

    // --- the clock of one ticket ------------------------------------------------------------

    /// Tier B on Berlin office hours: first response 1 h, resolution 20 h, at risk 15 min.
    fn policy() -> SlaPolicy {
        SlaPolicies::office_hours_in("Europe/Berlin")
            .select(Tier::B, Severity::Medium)
            .clone()
    }

    /// A clock started Monday 3 March 2025 09:00 Berlin: first response due 10:00, resolution
    /// due Wednesday 09:00 (9 h Monday, 10 h Tuesday, 1 h Wednesday).
    fn monday_clock() -> SlaClock {
        SlaClock::start(&policy(), &berlin(), datetime!(2025-03-03 09:00 +01:00)).expect("starts")
    }

    #[test]
    fn starting_computes_both_due_times_in_business_time() {
        let clock = monday_clock();
        assert_eq!(clock.policy_id, "tier-b");
        assert_eq!(clock.calendar, "business_hours");
        assert_eq!(clock.first_response_due, datetime!(2025-03-03 10:00 +01:00));
        // 9 h Monday + 10 h Tuesday + 1 h Wednesday.
        assert_eq!(clock.resolution_due, datetime!(2025-03-05 09:00 +01:00));
        assert_eq!(
            clock.status(datetime!(2025-03-03 09:00 +01:00)),
            SlaStatus::OnTrack
        );
        assert_eq!(clock.escalation_level(), 0);
    }

    #[test]
    fn a_ticket_created_at_night_is_due_from_the_next_opening() {
        let clock = SlaClock::start(&policy(), &berlin(), datetime!(2025-03-07 22:00 +01:00))
            .expect("starts");
        assert_eq!(clock.first_response_due, datetime!(2025-03-10 09:00 +01:00));
    }

    #[test]
    fn a_pending_target_within_the_window_is_at_risk() {
        let clock = monday_clock();
        assert_eq!(
            clock.status(datetime!(2025-03-03 09:44 +01:00)),
            SlaStatus::OnTrack
        );
        assert_eq!(
            clock.status(datetime!(2025-03-03 09:45 +01:00)),
            SlaStatus::AtRisk
        );
        assert_eq!(
            clock.status(datetime!(2025-03-03 09:59 +01:00)),
            SlaStatus::AtRisk
        );
        assert_eq!(
            clock.status(datetime!(2025-03-03 10:00 +01:00)),
            SlaStatus::Breached
        );
    }

    #[test]
    fn the_at_risk_window_is_wall_clock_time_before_the_due_time() {
        // Resolution due Wednesday 09:00; 15 minutes before is 08:45, though only 08:00-09:00
        // of it is open.
        let mut clock = monday_clock();
        let _ = clock.first_response(datetime!(2025-03-03 09:30 +01:00));
        assert_eq!(
            clock.status(datetime!(2025-03-05 08:44 +01:00)),
            SlaStatus::OnTrack
        );
        assert_eq!(
            clock.status(datetime!(2025-03-05 08:45 +01:00)),
            SlaStatus::AtRisk
        );
    }

    #[test]
    fn responding_and_resolving_in_time_is_met() {
        let mut clock = monday_clock();
        assert!(
            clock
                .first_response(datetime!(2025-03-03 09:30 +01:00))
                .is_empty()
        );
        let resolved = clock.resolve(&berlin(), datetime!(2025-03-04 12:00 +01:00));
        assert_eq!(resolved, Ok(vec![]));
        assert_eq!(
            clock.status(datetime!(2025-03-20 12:00 +01:00)),
            SlaStatus::Met
        );
        assert_eq!(clock.next_check(datetime!(2025-03-04 12:00 +01:00)), None);
    }

    #[test]
    fn a_response_at_exactly_the_due_time_is_late() {
        let mut clock = monday_clock();
        let newly = clock.first_response(datetime!(2025-03-03 10:00 +01:00));
        assert_eq!(newly, [Target::FirstResponse]);
        assert_eq!(
            clock.status(datetime!(2025-03-03 10:00 +01:00)),
            SlaStatus::Breached
        );
    }

    #[test]
    fn a_breach_sticks_after_the_late_response_and_an_in_time_resolution() {
        let mut clock = monday_clock();
        let late = clock.first_response(datetime!(2025-03-03 11:00 +01:00));
        assert_eq!(late, [Target::FirstResponse]);
        let resolved = clock.resolve(&berlin(), datetime!(2025-03-03 12:00 +01:00));
        assert_eq!(resolved, Ok(vec![]));
        assert_eq!(
            clock.status(datetime!(2025-03-03 12:00 +01:00)),
            SlaStatus::Breached
        );
        assert_eq!(clock.escalation_level(), 1);
    }

    #[test]
    fn a_missed_first_response_is_breached_even_before_the_monitor_records_it() {
        let clock = monday_clock();
        assert_eq!(
            clock.status(datetime!(2025-03-03 10:30 +01:00)),
            SlaStatus::Breached
        );
        assert!(!clock.first_response_breached);
    }

    #[test]
    fn each_breached_target_is_recorded_and_escalated_exactly_once() {
        let mut clock = monday_clock();
        assert!(
            clock
                .record_breaches(datetime!(2025-03-03 09:59 +01:00))
                .is_empty()
        );
        let first = clock.record_breaches(datetime!(2025-03-03 10:00 +01:00));
        assert_eq!(first, [Target::FirstResponse]);
        assert!(
            clock
                .record_breaches(datetime!(2025-03-03 10:01 +01:00))
                .is_empty()
        );
        assert!(
            clock
                .first_response(datetime!(2025-03-03 10:05 +01:00))
                .is_empty()
        );
        assert_eq!(clock.escalation_level(), 1);
        let second = clock.record_breaches(datetime!(2025-03-05 09:00 +01:00));
        assert_eq!(second, [Target::Resolution]);
        assert_eq!(clock.escalation_level(), 2);
        assert!(
            clock
                .record_breaches(datetime!(2025-03-06 09:00 +01:00))
                .is_empty()
        );
        assert_eq!(
            clock.resolve(&berlin(), datetime!(2025-03-06 09:00 +01:00)),
            Ok(vec![])
        );
        assert_eq!(clock.escalation_level(), 2);
    }

    #[test]
    fn an_operation_after_a_missed_due_time_returns_the_breach_it_finds() {
        let mut clock = monday_clock();
        let _ = clock.first_response(datetime!(2025-03-03 09:30 +01:00));
        let newly = clock.resolve(&berlin(), datetime!(2025-03-05 10:00 +01:00));
        assert_eq!(newly, Ok(vec![Target::Resolution]));
        assert_eq!(
            clock.status(datetime!(2025-03-05 10:00 +01:00)),
            SlaStatus::Breached
        );
        assert_eq!(clock.escalation_level(), 1);
    }

    #[test]
    fn a_pause_moves_the_resolution_due_time_by_the_open_time_paused() {
        let mut clock = monday_clock();
        let _ = clock.first_response(datetime!(2025-03-03 09:30 +01:00));
        assert!(clock.pause(datetime!(2025-03-03 14:00 +01:00)).is_empty());
        let resumed = clock.resume(&berlin(), datetime!(2025-03-03 16:00 +01:00));
        assert_eq!(resumed, Ok(vec![]));
        assert_eq!(clock.paused_total, 2 * HOUR);
        assert_eq!(clock.resolution_due, datetime!(2025-03-05 11:00 +01:00));
        assert!(!clock.is_paused());
    }

    #[test]
    fn a_pause_over_a_weekend_adds_no_business_time() {
        let cal = berlin();
        let mut clock =
            SlaClock::start(&policy(), &cal, datetime!(2025-03-06 09:00 +01:00)).expect("starts");
        // 9 h Thursday, 10 h Friday, 1 h Monday.
        assert_eq!(clock.resolution_due, datetime!(2025-03-10 09:00 +01:00));
        let _ = clock.first_response(datetime!(2025-03-06 09:10 +01:00));
        let _ = clock.pause(datetime!(2025-03-07 18:00 +01:00));
        let _ = clock
            .resume(&cal, datetime!(2025-03-10 08:00 +01:00))
            .expect("resumes");
        assert_eq!(clock.paused_total, Duration::ZERO);
        assert_eq!(clock.resolution_due, datetime!(2025-03-10 09:00 +01:00));

        // Friday 17:00 to Monday 09:00 is two open hours.
        let mut clock =
            SlaClock::start(&policy(), &cal, datetime!(2025-03-06 09:00 +01:00)).expect("starts");
        let _ = clock.pause(datetime!(2025-03-07 17:00 +01:00));
        let _ = clock
            .resume(&cal, datetime!(2025-03-10 09:00 +01:00))
            .expect("resumes");
        assert_eq!(clock.paused_total, 2 * HOUR);
        assert_eq!(clock.resolution_due, datetime!(2025-03-10 11:00 +01:00));
    }

    #[test]
    fn while_paused_the_due_time_keeps_moving_and_the_status_is_paused() {
        let cal = berlin();
        let mut clock = monday_clock();
        let _ = clock.first_response(datetime!(2025-03-03 09:30 +01:00));
        let _ = clock.pause(datetime!(2025-03-04 17:00 +01:00));
        // Past the original due time, yet not breached: the clock is stopped.
        let wednesday = datetime!(2025-03-05 12:00 +01:00);
        assert_eq!(clock.status(wednesday), SlaStatus::Paused);
        // Paused 1 h Tuesday + 4 h Wednesday.
        assert_eq!(clock.paused_time(&cal, wednesday), Ok(5 * HOUR));
        assert_eq!(
            clock.resolution_due(&cal, wednesday),
            Ok(datetime!(2025-03-05 14:00 +01:00))
        );
        assert_eq!(
            clock.resolution_due,
            datetime!(2025-03-05 09:00 +01:00),
            "stored unchanged"
        );
        assert_eq!(clock.next_check(wednesday), None);
        let _ = clock.resume(&cal, wednesday).expect("resumes");
        assert_eq!(clock.resolution_due, datetime!(2025-03-05 14:00 +01:00));
        assert_eq!(clock.status(wednesday), SlaStatus::OnTrack);
    }

    #[test]
    fn pausing_twice_keeps_the_first_pause_and_resuming_a_running_clock_changes_nothing() {
        let cal = berlin();
        let mut clock = monday_clock();
        let _ = clock.pause(datetime!(2025-03-03 09:10 +01:00));
        let _ = clock.pause(datetime!(2025-03-03 11:00 +01:00));
        assert_eq!(clock.paused_since, Some(datetime!(2025-03-03 09:10 +01:00)));
        let _ = clock
            .resume(&cal, datetime!(2025-03-03 12:00 +01:00))
            .expect("resumes");
        let after_resume = clock.clone();
        let _ = clock
            .resume(&cal, datetime!(2025-03-03 13:00 +01:00))
            .expect("no-op");
        assert_eq!(clock, after_resume);
        assert_eq!(clock.paused_total, 2 * HOUR + 50 * MIN);
    }

    #[test]
    fn a_miss_before_a_pause_stays_breached_when_the_due_time_moves() {
        let cal = berlin();
        let mut clock = monday_clock();
        let _ = clock.first_response(datetime!(2025-03-03 09:30 +01:00));
        // Due Wednesday 09:00; paused at 10:00 without the monitor having looked.
        let _ = clock.pause(datetime!(2025-03-05 10:00 +01:00));
        assert!(clock.resolution_breached, "recorded when paused");
        assert_eq!(
            clock.status(datetime!(2025-03-05 11:00 +01:00)),
            SlaStatus::Breached
        );
        let _ = clock
            .resume(&cal, datetime!(2025-03-06 10:00 +01:00))
            .expect("resumes");
        assert_eq!(
            clock.status(datetime!(2025-03-06 10:00 +01:00)),
            SlaStatus::Breached
        );
        assert_eq!(clock.escalation_level(), 1);
    }

    #[test]
    fn the_first_response_can_still_be_missed_while_the_resolution_clock_is_paused() {
        let mut clock = monday_clock();
        let _ = clock.pause(datetime!(2025-03-03 09:05 +01:00));
        assert_eq!(
            clock.status(datetime!(2025-03-03 09:50 +01:00)),
            SlaStatus::Paused
        );
        assert_eq!(
            clock.next_check(datetime!(2025-03-03 09:50 +01:00)),
            Some(datetime!(2025-03-03 10:00 +01:00))
        );
        assert_eq!(
            clock.status(datetime!(2025-03-03 10:00 +01:00)),
            SlaStatus::Breached
        );
    }

    #[test]
    fn resolving_a_paused_ticket_ends_the_pause() {
        let cal = berlin();
        let mut clock = monday_clock();
        let _ = clock.first_response(datetime!(2025-03-03 09:30 +01:00));
        let _ = clock.pause(datetime!(2025-03-04 17:00 +01:00));
        let _ = clock
            .resolve(&cal, datetime!(2025-03-05 12:00 +01:00))
            .expect("resolves");
        assert!(!clock.is_paused());
        assert_eq!(clock.paused_total, 5 * HOUR);
        assert_eq!(clock.resolution_due, datetime!(2025-03-05 14:00 +01:00));
        assert_eq!(
            clock.status(datetime!(2025-03-05 12:00 +01:00)),
            SlaStatus::Met
        );
        // Pausing a resolved clock does nothing.
        let _ = clock.pause(datetime!(2025-03-05 13:00 +01:00));
        assert!(!clock.is_paused());
    }

    #[test]
    fn reopening_counts_the_time_spent_resolved_as_paused() {
        let cal = berlin();
        let mut clock = monday_clock();
        let _ = clock.first_response(datetime!(2025-03-03 09:30 +01:00));
        let _ = clock
            .resolve(&cal, datetime!(2025-03-03 15:00 +01:00))
            .expect("resolves");
        assert_eq!(
            clock.status(datetime!(2025-03-04 10:00 +01:00)),
            SlaStatus::Met
        );
        // Resolved Monday 15:00 to Tuesday 10:00: 3 h + 2 h open.
        let _ = clock
            .reopen(&cal, datetime!(2025-03-04 10:00 +01:00))
            .expect("reopens");
        assert_eq!(clock.resolved_at, None);
        assert_eq!(clock.paused_total, 5 * HOUR);
        assert_eq!(clock.resolution_due, datetime!(2025-03-05 14:00 +01:00));
        assert_eq!(
            clock.status(datetime!(2025-03-04 10:00 +01:00)),
            SlaStatus::OnTrack
        );
        assert_eq!(
            clock.next_check(datetime!(2025-03-04 10:00 +01:00)),
            Some(datetime!(2025-03-05 13:45 +01:00))
        );
        // Reopening again, or resolving twice, is a no-op.
        let before = clock.clone();
        let _ = clock
            .reopen(&cal, datetime!(2025-03-04 11:00 +01:00))
            .expect("no-op");
        assert_eq!(clock, before);
    }

    #[test]
    fn a_breach_recorded_before_resolution_survives_a_reopen() {
        let cal = berlin();
        let mut clock = monday_clock();
        let late = clock.first_response(datetime!(2025-03-03 12:00 +01:00));
        assert_eq!(late, [Target::FirstResponse]);
        let _ = clock
            .resolve(&cal, datetime!(2025-03-03 13:00 +01:00))
            .expect("resolves");
        let _ = clock
            .reopen(&cal, datetime!(2025-03-04 13:00 +01:00))
            .expect("reopens");
        assert_eq!(
            clock.status(datetime!(2025-03-04 13:00 +01:00)),
            SlaStatus::Breached
        );
        assert_eq!(
            clock.next_check(datetime!(2025-03-04 13:00 +01:00)),
            Some(clock.resolution_due),
            "the resolution can still breach and escalate; no at-risk step once breached"
        );
    }

    #[test]
    fn next_check_steps_through_at_risk_and_due_times() {
        let mut clock = monday_clock();
        // First response due 10:00, at risk from 09:45.
        assert_eq!(
            clock.next_check(datetime!(2025-03-03 09:00 +01:00)),
            Some(datetime!(2025-03-03 09:45 +01:00))
        );
        assert_eq!(
            clock.next_check(datetime!(2025-03-03 09:45 +01:00)),
            Some(datetime!(2025-03-03 10:00 +01:00))
        );
        // Responded: next is the resolution's at-risk start, Wednesday 08:45.
        let _ = clock.first_response(datetime!(2025-03-03 09:50 +01:00));
        assert_eq!(
            clock.next_check(datetime!(2025-03-03 09:50 +01:00)),
            Some(datetime!(2025-03-05 08:45 +01:00))
        );
        assert_eq!(
            clock.next_check(datetime!(2025-03-05 08:50 +01:00)),
            Some(datetime!(2025-03-05 09:00 +01:00))
        );
        // Missed but not yet recorded: the due time, in the past, so the monitor looks now.
        assert_eq!(
            clock.next_check(datetime!(2025-03-05 10:00 +01:00)),
            Some(datetime!(2025-03-05 09:00 +01:00))
        );
        let _ = clock.record_breaches(datetime!(2025-03-05 10:00 +01:00));
        assert_eq!(clock.next_check(datetime!(2025-03-05 10:00 +01:00)), None);
    }

    #[test]
    fn next_check_is_the_earlier_of_two_pending_targets() {
        // On 24x7 with a 1 h first response and a 30 min resolution target, resolution comes first.
        let policy = SlaPolicy {
            calendar: ALWAYS_OPEN.into(),
            first_response_target: HOUR,
            resolution_target: 30 * MIN,
            at_risk_window: 10 * MIN,
            ..policy()
        };
        let created = datetime!(2025-03-08 12:00 UTC);
        let clock =
            SlaClock::start(&policy, &BusinessCalendar::always_open(), created).expect("starts");
        assert_eq!(
            clock.next_check(created),
            Some(datetime!(2025-03-08 12:20 UTC))
        );
        assert_eq!(
            clock.next_check(datetime!(2025-03-08 12:20 UTC)),
            Some(datetime!(2025-03-08 12:30 UTC))
        );
        assert_eq!(
            clock.status(datetime!(2025-03-08 12:20 UTC)),
            SlaStatus::AtRisk
        );
    }

    #[test]
    fn a_24x7_clock_counts_nights_and_weekends() {
        let p = SlaPolicies::office_hours_in("Europe/Berlin");
        let policy = p.select(Tier::A, Severity::Critical);
        let calendar = p.calendar(&policy.calendar).expect("built in");
        let saturday_night = datetime!(2025-03-08 23:00 +01:00);
        let clock = SlaClock::start(policy, calendar, saturday_night).expect("starts");
        assert_eq!(clock.first_response_due, datetime!(2025-03-08 23:05 +01:00));
        assert_eq!(clock.resolution_due, datetime!(2025-03-09 03:00 +01:00));
    }

    #[test]
    fn a_zero_at_risk_window_never_reports_at_risk() {
        let policy = SlaPolicy {
            at_risk_window: Duration::ZERO,
            ..policy()
        };
        let clock = SlaClock::start(&policy, &berlin(), datetime!(2025-03-03 09:00 +01:00))
            .expect("starts");
        assert_eq!(
            clock.status(datetime!(2025-03-03 09:59 +01:00)),
            SlaStatus::OnTrack
        );
        assert_eq!(
            clock.next_check(datetime!(2025-03-03 09:00 +01:00)),
            Some(datetime!(2025-03-03 10:00 +01:00))
        );
    }

    #[test]
    fn a_failing_calendar_leaves_the_clock_unchanged() {
        let mut clock = monday_clock();
        let _ = clock.pause(datetime!(2025-03-03 09:30 +01:00));
        let before = clock.clone();
        let broken = BusinessCalendar::office_hours("Nowhere/Nothing");
        let result = clock.resume(&broken, datetime!(2025-03-03 11:00 +01:00));
        assert_eq!(
            result,
            Err(CalendarError::UnknownTimeZone("Nowhere/Nothing".into()))
        );
        assert_eq!(clock, before);
    }
}
