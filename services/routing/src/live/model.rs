//! The JSON shapes the scripts keep in the `tickets`, `agents` and `offers` hashes, and their
//! conversion to the domain's [`TicketRef`] and [`AgentState`].
//!
//! Field names are short because every script decodes and re-encodes them. Numbers written by
//! Lua come back as doubles (times in Unix ms are exact below 2^53); versions and scores travel
//! as strings (see [`super::scripts`]). A Lua table that is empty encodes as `{}`, so every
//! collection here is a map, never a list.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;

use super::LiveError;
use crate::domain::agent::{AgentState, AwayReason, ChannelCounts, Presence};
use crate::domain::queue::TicketRef;
use crate::domain::steps::StepKind;

/// The fields of a ticket the scripts carry but never read (`d`): what offers show and what the
/// domain ranks by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketData {
    /// The human number.
    pub number: String,
    /// Whether the customer is a key account.
    pub key_account: bool,
    /// The account manager.
    pub account_manager_id: Option<String>,
    /// The agent to try first.
    pub preferred_agent_id: Option<String>,
    /// Skills required.
    pub required_skills: BTreeSet<String>,
    /// Escalations so far.
    pub escalation_level: u32,
    /// When the ticket entered the queue (RFC 3339 keeps nanoseconds).
    #[serde(with = "time::serde::rfc3339")]
    pub enqueue_time: OffsetDateTime,
    /// When an agent should have taken it.
    #[serde(with = "time::serde::rfc3339")]
    pub pickup_due: OffsetDateTime,
    /// The subject, for offers.
    pub subject: String,
    /// The category, for offers.
    pub category: String,
    /// The priority, for offers.
    pub priority: i32,
    /// The customer, if resolved.
    pub customer_id: String,
    /// The customer's name.
    pub customer_name: String,
}

/// A ticket's entry in the `tickets` hash.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LiveTicket {
    /// The ticket version held.
    pub v: String,
    /// `queued`, `offered`, `active`, `parked` or `removed`.
    pub st: String,
    /// The department.
    pub dept: Option<String>,
    /// The tier (`a`, `b`, `c`).
    pub tier: Option<String>,
    /// The channel.
    pub chan: Option<String>,
    /// [`TicketData`] as JSON.
    pub d: Option<String>,
    /// The queue member while waiting.
    pub member: Option<String>,
    /// The pending offer's reservation.
    pub offer: Option<String>,
    /// Agents who declined or let an offer expire since it was queued.
    #[serde(default, deserialize_with = "map_or_empty")]
    pub dec: BTreeMap<String, bool>,
    /// The assigned agent (active, parked).
    pub agent: Option<String>,
    /// The reservation it was assigned under.
    pub rid: Option<String>,
    /// When it was assigned (Unix ms).
    pub at: Option<f64>,
}

impl LiveTicket {
    /// The version held.
    pub fn version(&self) -> Result<i64, LiveError> {
        self.v
            .parse()
            .map_err(|_| LiveError::Corrupt(format!("ticket version {:?}", self.v)))
    }

    /// The data, parsed.
    pub fn data(&self, id: &str) -> Result<Option<TicketData>, LiveError> {
        self.d
            .as_deref()
            .map(|d| {
                serde_json::from_str(d)
                    .map_err(|e| LiveError::Corrupt(format!("ticket {id:?} data: {e}")))
            })
            .transpose()
    }

    /// The ticket as the domain sees it, if it is waiting (queued or offered). `offered_to` is
    /// the holder of its pending offer, which the caller passes in (offers are kept apart).
    pub fn to_ref(&self, id: &str, offered_to: Option<String>) -> Result<TicketRef, LiveError> {
        let corrupt = |what: &str| LiveError::Corrupt(format!("ticket {id:?}: {what}"));
        let data = self.data(id)?.ok_or_else(|| corrupt("no data"))?;
        let department = self.dept.clone().ok_or_else(|| corrupt("no department"))?;
        let channel = self
            .chan
            .as_deref()
            .and_then(Channel::from_db)
            .ok_or_else(|| corrupt("channel"))?;
        let tier = self
            .tier
            .as_deref()
            .and_then(Tier::from_db)
            .ok_or_else(|| corrupt("tier"))?;
        let mut t = TicketRef::new(
            id,
            department,
            channel,
            tier,
            data.enqueue_time,
            data.pickup_due,
        );
        t.key_account = data.key_account;
        t.account_manager_id = data.account_manager_id;
        t.preferred_agent_id = data.preferred_agent_id;
        t.required_skills = data.required_skills;
        t.escalation_level = data.escalation_level;
        t.declined_by = self.dec.keys().cloned().collect();
        t.offered_to = offered_to;
        Ok(t)
    }
}

/// An agent record as the live state holds it (`rec`), mirrored from PostgreSQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveRecord {
    /// Display name.
    pub name: String,
    /// Departments served.
    #[serde(default, deserialize_with = "map_or_empty")]
    pub depts: BTreeMap<String, bool>,
    /// Team.
    pub team: Option<String>,
    /// Skills held.
    #[serde(default, deserialize_with = "map_or_empty")]
    pub skills: BTreeMap<String, bool>,
    /// Capacity per channel name.
    #[serde(default, deserialize_with = "map_or_empty")]
    pub cap: BTreeMap<String, f64>,
    /// Disabled.
    #[serde(default)]
    pub dis: bool,
}

/// One ticket assigned to an agent (`tk`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LiveAssignment {
    /// The channel.
    pub c: String,
    /// Parked (not occupying capacity).
    #[serde(default)]
    pub p: bool,
    /// The reservation, if assigned through an offer.
    pub rid: Option<String>,
    /// When it was assigned (Unix ms).
    pub at: f64,
    /// The ticket version of the assignment as last synced.
    pub v: Option<String>,
}

/// An agent's entry in the `agents` hash.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LiveAgent {
    /// The record; absent for an agent known only from a ticket's assignment.
    pub rec: Option<LiveRecord>,
    /// `available`, `away` or `offline`.
    pub pres: String,
    /// Away reason (snake case).
    pub why: Option<String>,
    /// Presence note.
    pub note: Option<String>,
    /// Since when the presence holds (Unix ms).
    pub ps: Option<f64>,
    /// The desktop session.
    pub sess: Option<String>,
    /// Whether the session's stream is connected now.
    #[serde(default)]
    pub conn: bool,
    /// Until when the session lives without renewal (Unix ms).
    pub lease: Option<f64>,
    /// Idle since (Unix ms); absent while the agent has an active ticket.
    pub idle: Option<f64>,
    /// Last assignment (Unix ms).
    pub la: Option<f64>,
    /// Assignments counted.
    #[serde(default)]
    pub cnt: f64,
    /// The pending offer's reservation.
    pub offer: Option<String>,
    /// Offers missed in a row.
    #[serde(default)]
    pub missed: f64,
    /// Assigned tickets.
    #[serde(default, deserialize_with = "map_or_empty")]
    pub tk: BTreeMap<String, LiveAssignment>,
    /// Offer outcome counters per minute.
    #[serde(default, deserialize_with = "map_or_empty")]
    pub oc: BTreeMap<String, BTreeMap<String, f64>>,
}

impl LiveAgent {
    /// Whether the desktop session is alive at `now_ms`: its lease runs (renewed while the
    /// stream is connected, the resume grace after it broke).
    pub fn has_session(&self, now_ms: i64) -> bool {
        self.sess.is_some() && self.lease.is_some_and(|l| l as i64 > now_ms)
    }

    /// Whether the desktop's stream is connected at `now_ms`.
    pub fn is_connected(&self, now_ms: i64) -> bool {
        self.conn && self.has_session(now_ms)
    }

    /// The presence as the domain sees it.
    pub fn presence(&self) -> Presence {
        match self.pres.as_str() {
            "available" => Presence::Available,
            "away" => Presence::Away(
                self.why
                    .as_deref()
                    .and_then(away_reason_from_str)
                    .unwrap_or(AwayReason::Other),
            ),
            _ => Presence::Offline,
        }
    }

    /// The agent as the domain sees it at `now_ms`. The pending offer's ticket is looked up by
    /// the caller (`offer_ticket`).
    pub fn to_state(&self, id: &str, offer_ticket: Option<String>, now_ms: i64) -> AgentState {
        let mut a = AgentState::new(id, id, ms_to_time(0));
        a.idle_since = self.idle.map(|ms| ms_to_time(ms as i64));
        a.last_assigned = self.la.map(|ms| ms_to_time(ms as i64));
        a.assigned_count = self.cnt as u32;
        a.missed_offers_in_row = self.missed as u32;
        a.presence = self.presence();
        a.connected = self.is_connected(now_ms);
        if let Some(rec) = &self.rec {
            a.display_name = rec.name.clone();
            a.departments = rec.depts.keys().cloned().collect();
            a.team_id = rec.team.clone();
            a.skills = rec.skills.keys().cloned().collect();
            a.disabled = rec.dis;
            a.capacity = ChannelCounts::of(
                &rec.cap
                    .iter()
                    .filter_map(|(c, n)| Channel::from_db(c).map(|c| (c, *n as u32)))
                    .collect::<Vec<_>>(),
            );
        } else {
            // Known only from an assignment: not routable until the desktop registers.
            a.disabled = true;
        }
        for assignment in self.tk.values().filter(|t| !t.p) {
            if let Some(channel) = Channel::from_db(&assignment.c) {
                a.active
                    .set(channel, a.active.get(channel).saturating_add(1));
            }
        }
        a.pending_offer = offer_ticket;
        a
    }

    /// Offer outcomes within the counter window ending at `now_ms`: (o, a, d, e, c).
    pub fn offer_counts(&self, now_ms: i64) -> OutcomeCounts {
        OutcomeCounts::sum(&self.oc, now_ms)
    }

    /// Parked tickets.
    pub fn parked(&self) -> usize {
        self.tk.values().filter(|t| t.p).count()
    }
}

/// Offer outcomes within the counter window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// Offers made.
    pub offered: u32,
    /// Accepted.
    pub accepted: u32,
    /// Declined.
    pub declined: u32,
    /// Expired.
    pub expired: u32,
    /// Withdrawn by the router.
    pub cancelled: u32,
}

impl OutcomeCounts {
    /// Sums per-minute buckets within the window ending at `now_ms`.
    pub fn sum(buckets: &BTreeMap<String, BTreeMap<String, f64>>, now_ms: i64) -> OutcomeCounts {
        let current = now_ms.div_euclid(60_000);
        let mut c = OutcomeCounts::default();
        for (minute, counts) in buckets {
            let Ok(minute) = minute.parse::<i64>() else {
                continue;
            };
            if minute <= current - super::scripts::WINDOW_MINUTES || minute > current {
                continue;
            }
            for (kind, n) in counts {
                let n = *n as u32;
                match kind.as_str() {
                    "o" => c.offered += n,
                    "a" => c.accepted += n,
                    "d" => c.declined += n,
                    "e" => c.expired += n,
                    "c" => c.cancelled += n,
                    _ => {}
                }
            }
        }
        c
    }
}

/// A department's entry in the `dstats` hash.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LiveDeptStats {
    /// Offer outcome counters per minute.
    #[serde(default, deserialize_with = "map_or_empty")]
    pub b: BTreeMap<String, BTreeMap<String, f64>>,
    /// Pending offers per tier.
    #[serde(default, deserialize_with = "map_or_empty")]
    pub off: BTreeMap<String, f64>,
}

/// An offer's entry in the `offers` hash.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LiveOffer {
    /// The agent offered to.
    pub agent: String,
    /// The ticket.
    pub ticket: String,
    /// `pending`, `accepting`, `accepted`, `declined`, `expired`, `cancelled`.
    pub st: String,
    /// Why it was cancelled (snake case of `OfferCancelReason`).
    pub why: Option<String>,
    /// Made at (Unix ms).
    pub made: f64,
    /// Expires at (Unix ms).
    pub exp: f64,
    /// The step it was made in.
    pub step: String,
    /// The ticket's department.
    pub dept: String,
    /// The ticket's channel.
    pub chan: String,
    /// The ticket's tier.
    pub tier: String,
    /// The ticket version offered.
    pub tv: String,
    /// The ticket's [`TicketData`] as JSON.
    pub d: Option<String>,
    /// Ended at (Unix ms).
    #[serde(rename = "end")]
    pub ended: Option<f64>,
}

impl LiveOffer {
    /// The ticket data shown with the offer.
    pub fn data(&self) -> Result<Option<TicketData>, LiveError> {
        self.d
            .as_deref()
            .map(|d| {
                serde_json::from_str(d).map_err(|e| {
                    LiveError::Corrupt(format!("offer data of {:?}: {e}", self.ticket))
                })
            })
            .transpose()
    }

    /// The step kind.
    pub fn step_kind(&self) -> StepKind {
        match self.step.as_str() {
            "preferred_agent" => StepKind::PreferredAgent,
            "account_manager" => StepKind::AccountManager,
            "team" => StepKind::Team,
            _ => StepKind::Department,
        }
    }
}

/// Unix ms to a time, clamped to the representable range.
pub fn ms_to_time(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A time as Unix ms.
pub fn time_to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

/// The snake-case name of an away reason, as the scripts store it.
pub fn away_reason_str(reason: AwayReason) -> &'static str {
    match reason {
        AwayReason::Break => "break",
        AwayReason::Meal => "meal",
        AwayReason::Meeting => "meeting",
        AwayReason::Training => "training",
        AwayReason::WrapUp => "wrap_up",
        AwayReason::NotResponding => "not_responding",
        AwayReason::Other => "other",
        AwayReason::NotReady => "not_ready",
    }
}

/// The away reason of a stored name.
pub fn away_reason_from_str(s: &str) -> Option<AwayReason> {
    Some(match s {
        "break" => AwayReason::Break,
        "meal" => AwayReason::Meal,
        "meeting" => AwayReason::Meeting,
        "training" => AwayReason::Training,
        "wrap_up" => AwayReason::WrapUp,
        "not_responding" => AwayReason::NotResponding,
        "other" => AwayReason::Other,
        "not_ready" => AwayReason::NotReady,
        _ => return None,
    })
}

/// Lua encodes an empty table as `{}` but, after some edits, may also produce `[]`; both mean
/// an empty map. A visitor of its own rather than an untagged enum: serde buffers an untagged
/// value before trying each variant, and these maps are in every agent entry a dispatch round
/// decodes (the buffering showed in the router's profile).
fn map_or_empty<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    use serde::de::{Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

    struct MapOrEmpty<V>(std::marker::PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for MapOrEmpty<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map, or an empty list")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry()? {
                out.insert(key, value);
            }
            Ok(out)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            match seq.next_element::<IgnoredAny>()? {
                None => Ok(BTreeMap::new()),
                Some(_) => Err(A::Error::custom("expected a map")),
            }
        }
    }

    deserializer.deserialize_any(MapOrEmpty(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_as_lua_writes_it_reads_back() {
        let json = r#"{"rec":{"name":"Ana","depts":{"billing":true},"skills":{},"cap":{"chat":3,"voice":1},"dis":false},
            "pres":"away","why":"not_responding","sess":"s1","conn":true,"lease":1700000030000,
            "idle":1700000000000,"cnt":4,"missed":2,"tk":{"t1":{"c":"chat","p":false,"at":1700000000000}},"oc":{}}"#;
        let a: LiveAgent = serde_json::from_str(json).expect("parses");
        let state = a.to_state("ana", None, 1_700_000_010_000);
        assert_eq!(state.presence, Presence::Away(AwayReason::NotResponding));
        assert!(state.connected, "connected while the lease runs");
        assert_eq!(state.active.get(Channel::Chat), 1);
        assert_eq!(state.capacity.get(Channel::Voice), 1);
        assert_eq!(state.assigned_count, 4);
        assert!(!a.to_state("ana", None, 1_700_000_040_000).connected);
    }

    #[test]
    fn empty_lua_tables_read_as_empty_maps_either_way() {
        let a: LiveAgent =
            serde_json::from_str(r#"{"pres":"offline","tk":[],"oc":{}}"#).expect("parses");
        assert!(a.tk.is_empty());
        assert!(a.to_state("x", None, 0).disabled, "no record: not routable");
        let r: LiveRecord =
            serde_json::from_str(r#"{"name":"Ana","depts":[],"skills":{},"cap":{"chat":3}}"#)
                .expect("parses");
        assert!(r.depts.is_empty() && r.skills.is_empty());
        assert_eq!(r.cap.get("chat"), Some(&3.0));
        let listed = serde_json::from_str::<LiveRecord>(r#"{"name":"Ana","skills":["fi"]}"#);
        assert!(listed.is_err(), "a non-empty list is not a map");
        let absent: LiveRecord = serde_json::from_str(r#"{"name":"Ana"}"#).expect("parses");
        assert!(absent.depts.is_empty() && absent.cap.is_empty());
    }

    #[test]
    fn counters_outside_the_window_do_not_count() {
        let now = 100 * 60_000;
        let buckets: BTreeMap<String, BTreeMap<String, f64>> = serde_json::from_str(
            r#"{"100":{"o":2,"a":1},"86":{"d":1},"85":{"e":5},"101":{"c":9}}"#,
        )
        .expect("parses");
        let c = OutcomeCounts::sum(&buckets, now);
        assert_eq!(
            c,
            OutcomeCounts {
                offered: 2,
                accepted: 1,
                declined: 1,
                expired: 0,
                cancelled: 0
            }
        );
    }

    #[test]
    fn ms_round_trip() {
        let t = ms_to_time(1_700_000_000_123);
        assert_eq!(time_to_ms(t), 1_700_000_000_123);
    }
}
