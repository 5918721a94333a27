//! Pure formatting helpers shared by every command: enum names, times, durations, tables.
//!
//! Nothing here does I/O; each function takes what it shows (and `now` where the answer is
//! relative), so the output is unit-tested.

use prost_types::{Duration, Timestamp};
use tierline_proto::common::{Channel, Tier};
use time::OffsetDateTime;

/// The short lower-case name of a proto enum value: `TICKET_STATE_IN_PROGRESS` → `in_progress`
/// with `prefix` `TICKET_STATE_`. `-` for the unspecified value, `?<n>` for an unknown number.
pub fn enum_name(full: Option<&str>, prefix: &str, raw: i32) -> String {
    match full {
        _ if raw == 0 => "-".to_owned(),
        Some(name) => name
            .strip_prefix(prefix)
            .unwrap_or(name)
            .to_ascii_lowercase(),
        None => format!("?{raw}"),
    }
}

/// "A", "B", "C", or "-" when not set.
pub fn tier(raw: i32) -> String {
    match Tier::try_from(raw) {
        Ok(Tier::A) => "A".into(),
        Ok(Tier::B) => "B".into(),
        Ok(Tier::C) => "C".into(),
        Ok(Tier::Unspecified) => "-".into(),
        Err(_) => format!("?{raw}"),
    }
}

/// "voice", "web", ... or "-" when not set.
pub fn channel(raw: i32) -> String {
    enum_name(
        Channel::try_from(raw).ok().map(|c| c.as_str_name()),
        "CHANNEL_",
        raw,
    )
}

/// Shorthand for the generated enums: `enum_of!(TicketState, raw, "TICKET_STATE_")`.
#[macro_export]
macro_rules! enum_of {
    ($ty:ty, $raw:expr, $prefix:literal) => {{
        let raw: i32 = $raw;
        $crate::fmt::enum_name(
            <$ty>::try_from(raw).ok().map(|v| v.as_str_name()),
            $prefix,
            raw,
        )
    }};
}

/// The ticket state in capitals, as agents say it: "QUEUED", "IN_PROGRESS".
pub fn ticket_state(raw: i32) -> String {
    enum_of!(tierline_proto::ticket::TicketState, raw, "TICKET_STATE_").to_ascii_uppercase()
}

/// A duration for people: "0s", "45s", "4m 05s", "2h 10m", "3d 4h". Sub-second parts are
/// rounded down, except that a positive duration under a second shows as "<1s".
pub fn duration(d: &Duration) -> String {
    let secs = d.seconds.max(0);
    if secs == 0 && d.nanos > 0 && d.seconds >= 0 {
        return "<1s".into();
    }
    seconds(secs)
}

/// Whole seconds for people, as [`duration`].
pub fn seconds(secs: i64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// An optional duration, "-" when unset.
pub fn opt_duration(d: Option<&Duration>) -> String {
    d.map_or_else(|| "-".into(), duration)
}

/// A timestamp as UTC to the second: "2026-11-28 17:03:12Z"; "-" when unset or out of range.
pub fn time(t: Option<&Timestamp>) -> String {
    let Some(dt) = t.and_then(to_datetime) else {
        return "-".into();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// A timestamp relative to `now`: "in 19s", "3m 05s ago", "now"; "-" when unset.
pub fn relative(t: Option<&Timestamp>, now: OffsetDateTime) -> String {
    let Some(dt) = t.and_then(to_datetime) else {
        return "-".into();
    };
    let diff = (dt - now).whole_seconds();
    match diff {
        0 => "now".into(),
        d if d > 0 => format!("in {}", seconds(d)),
        d => format!("{} ago", seconds(-d)),
    }
}

/// A timestamp with its relative form: "17:03:32Z (in 19s)".
pub fn time_and_relative(t: Option<&Timestamp>, now: OffsetDateTime) -> String {
    if t.is_none() {
        return "-".into();
    }
    format!("{} ({})", time(t), relative(t, now))
}

fn to_datetime(t: &Timestamp) -> Option<OffsetDateTime> {
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// `s`, or "-" when empty.
pub fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// `s` cut to `max` characters, with "…" when cut; line breaks become spaces.
pub fn clip(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Left-aligned columns separated by two spaces, with a header row; trailing spaces trimmed.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(width) => *width = (*width).max(w),
                None => widths.push(w),
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.trim_end().to_owned()
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// Label/value lines with the values aligned: `label  value`.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(l, v)| format!("{l:<width$}  {v}").trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierline_proto::ticket::TicketState;

    fn ts(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    #[test]
    fn enum_names_lose_their_prefix_and_unspecified_is_a_dash() {
        assert_eq!(
            enum_of!(
                TicketState,
                TicketState::PendingCustomer as i32,
                "TICKET_STATE_"
            ),
            "pending_customer"
        );
        assert_eq!(enum_of!(TicketState, 0, "TICKET_STATE_"), "-");
        assert_eq!(enum_of!(TicketState, 99, "TICKET_STATE_"), "?99");
        assert_eq!(ticket_state(TicketState::Resolved as i32), "RESOLVED");
        assert_eq!(channel(Channel::Voice as i32), "voice");
        assert_eq!(tier(Tier::A as i32), "A");
        assert_eq!(tier(0), "-");
    }

    #[test]
    fn durations_read_like_a_clock() {
        let d = |seconds, nanos| Duration { seconds, nanos };
        assert_eq!(duration(&d(0, 0)), "0s");
        assert_eq!(duration(&d(0, 5)), "<1s");
        assert_eq!(duration(&d(45, 0)), "45s");
        assert_eq!(duration(&d(245, 500)), "4m 05s");
        assert_eq!(duration(&d(7_800, 0)), "2h 10m");
        assert_eq!(duration(&d(3 * 86_400 + 4 * 3_600, 0)), "3d 4h");
        assert_eq!(duration(&d(-5, 0)), "0s");
        assert_eq!(opt_duration(None), "-");
    }

    #[test]
    fn times_are_utc_to_the_second_and_relative_to_now() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("in range");
        assert_eq!(time(Some(&ts(1_800_000_000))), "2027-01-15 08:00:00Z");
        assert_eq!(time(None), "-");
        assert_eq!(relative(Some(&ts(1_800_000_019)), now), "in 19s");
        assert_eq!(relative(Some(&ts(1_800_000_000 - 185)), now), "3m 05s ago");
        assert_eq!(relative(Some(&ts(1_800_000_000)), now), "now");
        assert_eq!(
            time_and_relative(Some(&ts(1_800_000_020)), now),
            "2027-01-15 08:00:20Z (in 20s)"
        );
    }

    #[test]
    fn tables_align_columns_by_characters() {
        let t = table(
            &["NUMBER", "STATE"],
            &[
                vec!["T-1".into(), "QUEUED".into()],
                vec!["T-1234-5678".into(), "RESOLVED".into()],
            ],
        );
        assert_eq!(
            t,
            "NUMBER       STATE\nT-1          QUEUED\nT-1234-5678  RESOLVED"
        );
    }

    #[test]
    fn fields_align_values_and_clip_cuts_long_text() {
        assert_eq!(
            fields(&[("id", "x".into()), ("state", "QUEUED".into())]),
            "id     x\nstate  QUEUED"
        );
        assert_eq!(clip("the kettle\nleaks", 40), "the kettle leaks");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(or_dash(""), "-");
    }
}
