//! Conversions between what travels on the wire and domain types, shared by every adapter.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use uuid::Uuid;

/// Page size used when a request leaves `page_size` at 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size served; larger requests are clamped to it, as AIP-158 asks.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Reads a `page_size`: 0 is the default, negative is an error, above the maximum is clamped.
pub fn page_size(raw: i32) -> Result<u32, String> {
    match raw {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err("must not be negative".into()),
        n => Ok((n as u32).min(MAX_PAGE_SIZE)),
    }
}

/// Encodes a cursor as an opaque page token.
pub fn encode_page_token(cursor: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(cursor)
}

/// Decodes a page token made by [`encode_page_token`]; empty means the first page.
pub fn decode_page_token(token: &str) -> Result<Option<Vec<u8>>, String> {
    if token.is_empty() {
        return Ok(None);
    }
    URL_SAFE_NO_PAD
        .decode(token)
        .map(Some)
        .map_err(|_| "not a page token from this service".into())
}

/// A page cursor of (time, id), the keyset of lists ordered by time then id.
pub fn encode_time_id_cursor(at: OffsetDateTime, id: Uuid) -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(&at.unix_timestamp_nanos().to_be_bytes());
    bytes.extend_from_slice(id.as_bytes());
    encode_page_token(&bytes)
}

/// Decodes a cursor made by [`encode_time_id_cursor`].
pub fn decode_time_id_cursor(token: &str) -> Result<Option<(OffsetDateTime, Uuid)>, String> {
    let Some(bytes) = decode_page_token(token)? else {
        return Ok(None);
    };
    let invalid = || "not a page token from this list".to_string();
    if bytes.len() != 32 {
        return Err(invalid());
    }
    let (nanos, id) = bytes.split_at(16);
    let nanos = i128::from_be_bytes(nanos.try_into().map_err(|_| invalid())?);
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .filter(in_timestamp_range)
        .ok_or_else(invalid)?;
    let id = Uuid::from_slice(id).map_err(|_| invalid())?;
    Ok(Some((at, id)))
}

/// A page cursor of one id, for lists ordered by a time-ordered (v7) id.
pub fn encode_id_cursor(id: Uuid) -> String {
    encode_page_token(id.as_bytes())
}

/// Decodes a cursor made by [`encode_id_cursor`].
pub fn decode_id_cursor(token: &str) -> Result<Option<Uuid>, String> {
    match decode_page_token(token)? {
        None => Ok(None),
        Some(bytes) => Uuid::from_slice(&bytes)
            .map(Some)
            .map_err(|_| "not a page token from this list".into()),
    }
}

/// Parses a required UUID field.
pub fn uuid(raw: &str) -> Result<Uuid, String> {
    if raw.is_empty() {
        return Err("required".into());
    }
    Uuid::parse_str(raw).map_err(|_| format!("{raw:?} is not a UUID"))
}

/// Parses an optional UUID field: empty is `None`.
pub fn optional_uuid(raw: &str) -> Result<Option<Uuid>, String> {
    if raw.is_empty() {
        Ok(None)
    } else {
        uuid(raw).map(Some)
    }
}

/// A wire timestamp from a domain time.
pub fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    let nanos = at.unix_timestamp_nanos();
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000) as i64,
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

/// A domain time from a wire timestamp.
pub fn time_from(ts: &prost_types::Timestamp) -> Result<OffsetDateTime, String> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err("nanos must be between 0 and 999,999,999".into());
    }
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .filter(in_timestamp_range)
        .ok_or_else(|| "must be between 0001-01-01 and 9999-12-31 UTC".into())
}

/// The range google.protobuf.Timestamp allows, which PostgreSQL can also store.
fn in_timestamp_range(at: &OffsetDateTime) -> bool {
    (1..=9999).contains(&at.year())
}

/// Checks a text field's length in characters and returns it trimmed.
pub fn text(raw: &str, max_chars: usize, required: bool) -> Result<String, String> {
    let trimmed = raw.trim();
    if required && trimmed.is_empty() {
        return Err("required".into());
    }
    let chars = trimmed.chars().count();
    if chars > max_chars {
        return Err(format!("at most {max_chars} characters, got {chars}"));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_defaults_clamps_and_rejects_negative() {
        assert_eq!(page_size(0), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(5), Ok(5));
        assert_eq!(page_size(1_000_000), Ok(MAX_PAGE_SIZE));
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn time_id_cursor_round_trips_and_rejects_garbage() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).expect("t");
        let id = Uuid::now_v7();
        let token = encode_time_id_cursor(at, id);
        assert_eq!(decode_time_id_cursor(&token), Ok(Some((at, id))));
        assert_eq!(decode_time_id_cursor(""), Ok(None));
        assert!(decode_time_id_cursor("%%%").is_err());
        assert!(decode_time_id_cursor(&encode_page_token(b"short")).is_err());
    }

    #[test]
    fn timestamps_round_trip_including_before_1970() {
        for nanos in [0i128, 1_700_000_000_000_000_001, -1_500_000_000] {
            let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("t");
            assert_eq!(time_from(&timestamp(at)), Ok(at));
        }
        assert!(
            time_from(&prost_types::Timestamp {
                seconds: 0,
                nanos: -1
            })
            .is_err()
        );
        // Before year 1 cannot be a google.protobuf.Timestamp.
        let year_one = -62_135_596_800;
        assert!(
            time_from(&prost_types::Timestamp {
                seconds: year_one - 1,
                nanos: 0
            })
            .is_err()
        );
        assert!(
            time_from(&prost_types::Timestamp {
                seconds: year_one,
                nanos: 0
            })
            .is_ok()
        );
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(text("  hi ", 5, true), Ok("hi".into()));
        assert!(text("   ", 5, true).is_err());
        assert_eq!(text("", 5, false), Ok(String::new()));
        assert!(text("abcdef", 5, false).is_err());
        assert!(text("a\u{0}b", 5, false).is_err());
    }
}
