//! [`InMemoryLive`]: the live state in one process, for a single-process dev mode without Redis.
//!
//! The Lua in [`super::scripts`] is the specification: each operation here is the port of one
//! script (or of the one Redis command [`super::on_redis::RedisLive`] sends), run as one
//! synchronous critical section under one [`std::sync::Mutex`]. No lock is held across an
//! `.await` (every trait method locks, changes, unlocks, and only then returns), so each
//! operation is atomic exactly as a script is, and the same tests (`tests/live.rs`) hold for both.
//!
//! # Shapes
//!
//! Redis keeps JSON; this keeps Rust structs and converts them to the model types on every read
//! ([`LiveTicket`], [`LiveAgent`], [`LiveOffer`], [`LiveDeptStats`]), with the fields the scripts
//! would have written: times as Unix ms, versions as strings, `idle` absent while busy, an
//! absent `note` distinct from an empty one, a reservation id of `""` kept as `Some("")`. Fields
//! the scripts store but nobody reads back (a ticket's `enq` and `due`; they live in the
//! waiting sets) are not kept.
//!
//! | Redis key                     | here                                                      |
//! |-------------------------------|-----------------------------------------------------------|
//! | `tickets`, `agents`, `offers` | `BTreeMap<id, struct>`                                    |
//! | `queue:<dept>`                | a sorted set per department: (score, member bytes) order  |
//! | `waiting:…`, `due:…`          | a sorted set per (department, tier)                       |
//! | `gone`, `leases`, `offer_*`   | one sorted set each                                       |
//! | `ready`, `staff`              | `BTreeSet<(index name, agent)>`: a lex range, a tuple one |
//! | `depts`, `dstats`, `built`    | a set, a map, an `Option`                                 |
//! | `rebuild`                     | owner and [`Instant`] deadline (`lock_rebuild`: no `now`) |
//! | pub/sub `events`              | a [`broadcast`] channel                                   |
//!
//! A sorted set (`ZSet`) keeps scores (all integers: Unix ms and rank scores below 2^53 in
//! magnitude, which Redis holds exactly as doubles) and the order `(score, member)`, the order
//! of a Redis sorted set; ranks are counted (O(rank)), fine for a dev mode.
//!
//! The port is faithful to the scripts' known shortcomings too (CONFIRM's, see the ignored
//! tests in `tests/live.rs`), so both keep answering alike: fix them in both places at once.
//!
//! # A panic inside an operation
//!
//! A panic while the lock is held poisons the mutex and may have left the state half changed
//! (a ticket marked offered but still queued, say). Every later call then fails with
//! [`LiveError::Corrupt`] instead of routing on broken invariants; restart the process. (A
//! Redis script that fails midway also keeps its partial writes, but Redis carries on; here
//! failing loudly is the safer choice for a state nobody else can repair.)
//!
//! # Where this differs from Redis
//!
//! - Notices go to subscribers in the order the operations ran; a subscriber that falls more
//!   than [`NOTICE_CAPACITY`] behind misses the oldest (as a slow pub/sub client can). The
//!   stream ends only when the [`InMemoryLive`] is dropped, not on a lost connection. Within one
//!   operation, the `a:` notices of several agents and the `d:` notices of a record's
//!   departments come in name order (Lua's `pairs` order is unspecified), and so do the agents
//!   the tickets name in `peek`.
//! - No [`LiveError::Unavailable`] or [`LiveError::Script`]: nothing is remote. A zero rebuild
//!   lock TTL (an error reply from Redis) is [`LiveError::InvalidArgument`].
//! - Times are kept exactly; Redis's cjson prints 14 significant digits, which would round Unix
//!   ms from 10^14 on (the year 5138).
//! - The rebuild lock expires by the monotonic clock of this process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use tierline_types::Tier;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::LiveError;
use super::model::{
    LiveAgent, LiveAssignment, LiveDeptStats, LiveOffer, LiveRecord, LiveTicket, time_to_ms,
};
use super::scripts::WINDOW_MINUTES;
use super::state::{
    AgentRead, Claim, DeptWaiting, ENDED_OFFER_TTL_MS, Ended, LiveState, NewOffer, Outcome, Peeked,
    PreparedSync, PresenceSet, RoutingState, Synced, TOMBSTONE_TTL_MS, TicketSync, TierWaiting,
};
use crate::domain::queue::RankKey;

/// Notices a subscriber may fall behind by before it misses the oldest.
pub const NOTICE_CAPACITY: usize = 4096;

const TIERS: [Tier; 3] = [Tier::A, Tier::B, Tier::C];

/// The router's live state in this process. Every operation is one critical section.
pub struct InMemoryLive {
    state: Mutex<Inner>,
    events: broadcast::Sender<String>,
}

impl std::fmt::Debug for InMemoryLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryLive").finish_non_exhaustive()
    }
}

impl Default for InMemoryLive {
    fn default() -> Self {
        InMemoryLive::new()
    }
}

impl InMemoryLive {
    /// An empty live state (not built).
    pub fn new() -> InMemoryLive {
        let (events, _) = broadcast::channel(NOTICE_CAPACITY);
        InMemoryLive {
            state: Mutex::new(Inner::default()),
            events,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, LiveError> {
        self.state.lock().map_err(|_| {
            LiveError::Corrupt(
                "in-memory live state: an earlier operation panicked midway; restart".into(),
            )
        })
    }

    /// Runs `f` as one critical section, then publishes the notices it queued (still under the
    /// lock, so subscribers see them in the order the operations ran).
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T, LiveError>) -> Result<T, LiveError> {
        let mut inner = self.lock()?;
        let out = f(&mut inner);
        for notice in inner.out.drain(..) {
            // No subscriber is fine: nobody listens, as with PUBLISH.
            let _ = self.events.send(notice);
        }
        out
    }

    /// `lock_rebuild` at a given instant (the trait method passes [`Instant::now`]).
    fn lock_rebuild_at(&self, owner: &str, ttl_ms: u64, now: Instant) -> Result<bool, LiveError> {
        if ttl_ms == 0 {
            return Err(LiveError::InvalidArgument(
                "rebuild lock ttl must be positive".into(),
            ));
        }
        let until = now
            .checked_add(Duration::from_millis(ttl_ms))
            .ok_or_else(|| LiveError::InvalidArgument(format!("rebuild lock ttl {ttl_ms} ms")))?;
        self.with(|s| {
            if s.rebuild.as_ref().is_some_and(|(_, exp)| *exp > now) {
                return Ok(false);
            }
            s.rebuild = Some((owner.to_owned(), until));
            Ok(true)
        })
    }

    /// `unlock_rebuild` at a given instant.
    fn unlock_rebuild_at(&self, owner: &str, now: Instant) -> Result<(), LiveError> {
        self.with(|s| {
            // An expired lock is as good as absent (Redis dropped the key), whoever held it.
            if s.rebuild
                .as_ref()
                .is_some_and(|(held, exp)| held == owner || *exp <= now)
            {
                s.rebuild = None;
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Sorted sets
// ---------------------------------------------------------------------------------------------

/// A Redis sorted set with integer scores: ordered by score, then member bytes.
#[derive(Debug, Default, Clone)]
struct ZSet {
    score_of: BTreeMap<String, i64>,
    order: BTreeSet<(i64, String)>,
}

impl ZSet {
    /// ZADD (a member present moves to its new score).
    fn add(&mut self, score: i64, member: &str) {
        if let Some(old) = self.score_of.insert(member.to_owned(), score) {
            self.order.remove(&(old, member.to_owned()));
        }
        self.order.insert((score, member.to_owned()));
    }

    /// ZREM.
    fn remove(&mut self, member: &str) {
        if let Some(old) = self.score_of.remove(member) {
            self.order.remove(&(old, member.to_owned()));
        }
    }

    /// ZRANK (0-based).
    fn rank(&self, member: &str) -> Option<u64> {
        let score = *self.score_of.get(member)?;
        Some(self.order.range(..(score, member.to_owned())).count() as u64)
    }

    /// ZCARD.
    fn len(&self) -> u64 {
        self.order.len() as u64
    }

    /// ZRANGE 0 n-1.
    fn head(&self, n: usize) -> impl Iterator<Item = &str> {
        self.order.iter().take(n).map(|(_, m)| m.as_str())
    }

    /// The lowest score.
    fn first_score(&self) -> Option<i64> {
        self.order.first().map(|(s, _)| *s)
    }

    /// ZRANGEBYSCORE -inf max LIMIT 0 limit.
    fn up_to(&self, max: i64, limit: usize) -> Vec<String> {
        self.order
            .iter()
            .take_while(|(s, _)| *s <= max)
            .take(limit)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// ZCOUNT min max, both inclusive.
    fn count(&self, min: i64, max: i64) -> u64 {
        if min > max {
            return 0;
        }
        self.order
            .range((min, String::new())..)
            .take_while(|(s, _)| *s <= max)
            .count() as u64
    }
}

// ---------------------------------------------------------------------------------------------
// Entries
// ---------------------------------------------------------------------------------------------

/// A ticket's routing state (`t.st`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum TicketSt {
    Queued,
    Offered,
    Active,
    Parked,
    #[default]
    Removed,
}

impl TicketSt {
    fn as_str(self) -> &'static str {
        match self {
            TicketSt::Queued => "queued",
            TicketSt::Offered => "offered",
            TicketSt::Active => "active",
            TicketSt::Parked => "parked",
            TicketSt::Removed => "removed",
        }
    }

    fn waiting(self) -> bool {
        matches!(self, TicketSt::Queued | TicketSt::Offered)
    }
}

/// A ticket's entry, the fields the scripts keep (see [`LiveTicket`]).
#[derive(Debug, Clone, Default)]
struct Ticket {
    v: String,
    st: TicketSt,
    dept: Option<String>,
    tier: Option<String>,
    chan: Option<String>,
    d: Option<String>,
    /// The queue score (while waiting).
    score: Option<i64>,
    member: Option<String>,
    offer: Option<String>,
    dec: BTreeSet<String>,
    agent: Option<String>,
    rid: Option<String>,
    at: Option<i64>,
}

impl Ticket {
    fn version(&self) -> Result<i64, LiveError> {
        self.v
            .parse()
            .map_err(|_| LiveError::Corrupt(format!("ticket version {:?}", self.v)))
    }

    fn to_live(&self) -> LiveTicket {
        LiveTicket {
            v: self.v.clone(),
            st: self.st.as_str().to_owned(),
            dept: self.dept.clone(),
            tier: self.tier.clone(),
            chan: self.chan.clone(),
            d: self.d.clone(),
            member: self.member.clone(),
            offer: self.offer.clone(),
            dec: self.dec.iter().map(|a| (a.clone(), true)).collect(),
            agent: self.agent.clone(),
            rid: self.rid.clone(),
            at: self.at.map(|ms| ms as f64),
        }
    }
}

/// Per-minute outcome counters (`bump`): minute → kind → count.
type Buckets = BTreeMap<i64, BTreeMap<&'static str, i64>>;

fn bump(buckets: &mut Buckets, now: i64, kind: &'static str) {
    let m = now.div_euclid(60_000);
    *buckets.entry(m).or_default().entry(kind).or_insert(0) += 1;
    buckets.retain(|k, _| *k >= m - WINDOW_MINUTES);
}

fn buckets_to_live(buckets: &Buckets) -> BTreeMap<String, BTreeMap<String, f64>> {
    buckets
        .iter()
        .map(|(m, counts)| {
            (
                m.to_string(),
                counts
                    .iter()
                    .map(|(k, n)| ((*k).to_owned(), *n as f64))
                    .collect(),
            )
        })
        .collect()
}

/// One assigned ticket (`tk`).
#[derive(Debug, Clone)]
struct Assignment {
    c: String,
    p: bool,
    rid: String,
    at: i64,
    v: String,
}

/// An agent's entry, the fields the scripts keep (see [`LiveAgent`]).
#[derive(Debug, Clone)]
struct Agent {
    /// As the scripts hold it: departments and skills mapped to `true`, capacities whole.
    rec: Option<LiveRecord>,
    pres: String,
    why: Option<String>,
    note: Option<String>,
    ps: Option<i64>,
    sess: Option<String>,
    conn: bool,
    lease: Option<i64>,
    idle: Option<i64>,
    la: Option<i64>,
    cnt: i64,
    offer: Option<String>,
    missed: i64,
    tk: BTreeMap<String, Assignment>,
    oc: Buckets,
}

impl Agent {
    /// `new_agent`.
    fn new() -> Agent {
        Agent {
            rec: None,
            pres: "offline".into(),
            why: None,
            note: None,
            ps: None,
            sess: None,
            conn: false,
            lease: None,
            idle: None,
            la: None,
            cnt: 0,
            offer: None,
            missed: 0,
            tk: BTreeMap::new(),
            oc: Buckets::new(),
        }
    }

    /// `load_of`: active (not parked) tickets per channel, whether one is a call, the total.
    fn load(&self) -> (BTreeMap<&str, i64>, bool, i64) {
        let mut act: BTreeMap<&str, i64> = BTreeMap::new();
        let (mut voice, mut total) = (false, 0);
        for e in self.tk.values().filter(|e| !e.p) {
            *act.entry(e.c.as_str()).or_insert(0) += 1;
            total += 1;
            voice |= e.c == "voice";
        }
        (act, voice, total)
    }

    fn has_session(&self, now: i64) -> bool {
        self.sess.is_some() && self.lease.unwrap_or(0) > now
    }

    fn connected(&self, now: i64) -> bool {
        self.conn && self.has_session(now)
    }

    fn free_for(&self, chan: &str) -> bool {
        let (act, voice, total) = self.load();
        if voice {
            return false;
        }
        let cap = self
            .rec
            .as_ref()
            .and_then(|r| r.cap.get(chan))
            .copied()
            .unwrap_or(0.0);
        if chan == "voice" {
            return cap > 0.0 && total == 0;
        }
        (act.get(chan).copied().unwrap_or(0) as f64) < cap
    }

    fn ready(&self, now: i64) -> bool {
        let Some(rec) = &self.rec else {
            return false;
        };
        if rec.dis || self.pres != "available" || self.offer.is_some() || !self.connected(now) {
            return false;
        }
        rec.cap.keys().any(|chan| self.free_for(chan))
    }

    /// `depts_of`: the index names the agent is listed under (departments, `\1<team>`).
    fn index_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        if let Some(rec) = &self.rec {
            names.extend(rec.depts.keys().cloned());
            if let Some(team) = &rec.team {
                names.insert(format!("\u{1}{team}"));
            }
        }
        names
    }

    fn idle_check(&mut self, now: i64) {
        let (_, _, total) = self.load();
        if total == 0 {
            if self.idle.is_none() {
                self.idle = Some(now);
            }
        } else {
            self.idle = None;
        }
    }

    fn to_live(&self) -> LiveAgent {
        LiveAgent {
            rec: self.rec.clone(),
            pres: self.pres.clone(),
            why: self.why.clone(),
            note: self.note.clone(),
            ps: self.ps.map(|ms| ms as f64),
            sess: self.sess.clone(),
            conn: self.conn,
            lease: self.lease.map(|ms| ms as f64),
            idle: self.idle.map(|ms| ms as f64),
            la: self.la.map(|ms| ms as f64),
            cnt: self.cnt as f64,
            offer: self.offer.clone(),
            missed: self.missed as f64,
            tk: self
                .tk
                .iter()
                .map(|(id, e)| {
                    (
                        id.clone(),
                        LiveAssignment {
                            c: e.c.clone(),
                            p: e.p,
                            rid: Some(e.rid.clone()),
                            at: e.at as f64,
                            v: Some(e.v.clone()),
                        },
                    )
                })
                .collect(),
            oc: buckets_to_live(&self.oc),
        }
    }
}

/// A record as the scripts hold it after the JSON round trip of `on_redis::record_json`.
fn normalized(record: &LiveRecord) -> LiveRecord {
    LiveRecord {
        name: record.name.clone(),
        depts: record.depts.keys().map(|d| (d.clone(), true)).collect(),
        team: record.team.clone(),
        skills: record.skills.keys().map(|s| (s.clone(), true)).collect(),
        cap: record
            .cap
            .iter()
            .map(|(c, n)| (c.clone(), f64::from(*n as u32)))
            .collect(),
        dis: record.dis,
    }
}

/// An offer's entry (see [`LiveOffer`]).
#[derive(Debug, Clone)]
struct Offer {
    agent: String,
    ticket: String,
    st: String,
    why: Option<String>,
    made: i64,
    exp: i64,
    step: String,
    dept: String,
    chan: String,
    tier: String,
    tv: String,
    d: Option<String>,
    end: Option<i64>,
    /// Until when an accept holds it (`accepting`).
    hold: Option<i64>,
}

impl Offer {
    fn to_live(&self) -> LiveOffer {
        LiveOffer {
            agent: self.agent.clone(),
            ticket: self.ticket.clone(),
            st: self.st.clone(),
            why: self.why.clone(),
            made: self.made as f64,
            exp: self.exp as f64,
            step: self.step.clone(),
            dept: self.dept.clone(),
            chan: self.chan.clone(),
            tier: self.tier.clone(),
            tv: self.tv.clone(),
            d: self.d.clone(),
            ended: self.end.map(|ms| ms as f64),
        }
    }
}

/// A department's statistics entry (see [`LiveDeptStats`]).
#[derive(Debug, Clone, Default)]
struct DeptStats {
    b: Buckets,
    off: BTreeMap<String, i64>,
}

impl DeptStats {
    fn to_live(&self) -> LiveDeptStats {
        LiveDeptStats {
            b: buckets_to_live(&self.b),
            off: self
                .off
                .iter()
                .map(|(t, n)| (t.clone(), *n as f64))
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The state and the scripts' logic
// ---------------------------------------------------------------------------------------------

/// Everything Redis would hold under one prefix.
#[derive(Debug, Default)]
struct Inner {
    tickets: BTreeMap<String, Ticket>,
    agents: BTreeMap<String, Agent>,
    offers: BTreeMap<String, Offer>,
    queues: BTreeMap<String, ZSet>,
    /// Per (department, tier), by enqueue time.
    waiting: BTreeMap<(String, String), ZSet>,
    /// Per (department, tier), by pickup due time.
    due: BTreeMap<(String, String), ZSet>,
    gone: ZSet,
    ready: BTreeSet<(String, String)>,
    staff: BTreeSet<(String, String)>,
    leases: ZSet,
    offer_exp: ZSet,
    offer_end: ZSet,
    depts: BTreeSet<String>,
    dstats: BTreeMap<String, DeptStats>,
    built: Option<i64>,
    rebuild: Option<(String, Instant)>,
    /// Notices queued by the running operation (`PUBLISH`), sent when it ends.
    out: Vec<String>,
}

/// The arguments of SYNC, prepared outside the lock.
struct SyncArgs<'a> {
    /// Leave out the department notice of a waiting ticket (a batch sends one per department).
    quiet: bool,
    id: &'a str,
    v: String,
    version: i64,
    st: RoutingState,
    dept: &'a str,
    tier: &'static str,
    chan: &'static str,
    score: i64,
    member: String,
    data: String,
    required_skills: &'a BTreeSet<String>,
    enq: i64,
    due: i64,
    agent: &'a str,
    rid: &'a str,
}

/// What SYNC answers: applied, the version held, the 0-based rank, the withdrawn offer.
type SyncReply = (bool, String, Option<u64>, Option<String>);

fn key(dept: &str, tier: &str) -> (String, String) {
    (dept.to_owned(), tier.to_owned())
}

impl Inner {
    fn publish(&mut self, notice: String) {
        self.out.push(notice);
    }

    fn queue(&mut self, dept: &str) -> &mut ZSet {
        self.queues.entry(dept.to_owned()).or_default()
    }

    fn waiting_set(&mut self, dept: &str, tier: &str) -> &mut ZSet {
        self.waiting.entry(key(dept, tier)).or_default()
    }

    fn due_set(&mut self, dept: &str, tier: &str) -> &mut ZSet {
        self.due.entry(key(dept, tier)).or_default()
    }

    /// `save_agent`: writes the agent and keeps the staff and ready indexes true.
    fn save_agent(&mut self, id: &str, a: Agent, before: &BTreeSet<String>, now: i64) {
        let names = a.index_names();
        for d in before.difference(&names) {
            let entry = (d.clone(), id.to_owned());
            self.staff.remove(&entry);
            self.ready.remove(&entry);
        }
        let ready = a.ready(now);
        for d in names {
            let entry = (d, id.to_owned());
            self.staff.insert(entry.clone());
            if ready {
                self.ready.insert(entry);
            } else {
                self.ready.remove(&entry);
            }
        }
        self.agents.insert(id.to_owned(), a);
    }

    /// `save_agent` for an agent whose index names did not change.
    fn save_agent_same(&mut self, id: &str, a: Agent, now: i64) {
        let names = a.index_names();
        self.save_agent(id, a, &names, now);
    }

    /// `dstat`.
    fn dstat(&mut self, dept: &str, now: i64, kind: Option<&'static str>, tier: &str, delta: i64) {
        let s = self.dstats.entry(dept.to_owned()).or_default();
        if let Some(kind) = kind {
            bump(&mut s.b, now, kind);
        }
        if delta != 0 {
            let off = s.off.entry(tier.to_owned()).or_insert(0);
            *off = (*off + delta).max(0);
        }
    }

    /// [`LiveState::sync`] of a prepared sync: the SYNC script and its reply.
    fn sync_one(
        &mut self,
        s: &TicketSync,
        prepared: PreparedSync,
        now: i64,
        quiet: bool,
    ) -> Result<Synced, LiveError> {
        let args = SyncArgs {
            quiet,
            id: &s.id,
            v: s.version.to_string(),
            version: s.version,
            st: s.state,
            dept: &s.department,
            tier: s.tier.as_str(),
            chan: s.channel.as_str(),
            score: prepared.score,
            member: prepared.member,
            data: prepared.data,
            required_skills: &s.data.required_skills,
            enq: time_to_ms(s.data.enqueue_time),
            due: time_to_ms(s.data.pickup_due),
            agent: s.agent_id.as_deref().unwrap_or(""),
            rid: s.reservation_id.as_deref().unwrap_or(""),
        };
        let (applied, held, rank, withdrawn) = self.sync(&args, now)?;
        Ok(Synced {
            applied,
            version: held
                .parse()
                .map_err(|_| LiveError::Corrupt(format!("ticket version {held:?}")))?,
            position: rank.map(one_based),
            withdrawn_offer: withdrawn,
        })
    }

    /// The SYNC script.
    fn sync(&mut self, s: &SyncArgs<'_>, now: i64) -> Result<SyncReply, LiveError> {
        let t = self.tickets.get(s.id).cloned();
        // Redis answers MOVED when the caller named other keys than the ticket's; here the
        // ticket's own keys are always used.
        if let Some(t) = &t
            && t.version()? >= s.version
        {
            let rank = match (&t.st, &t.dept, &t.member) {
                (TicketSt::Queued, Some(dept), Some(member)) => {
                    self.queues.get(dept).and_then(|q| q.rank(member))
                }
                _ => None,
            };
            return Ok((false, t.v.clone(), rank, None));
        }
        let waiting_before = t.as_ref().is_some_and(|t| t.st.waiting());
        let old = t.unwrap_or_default();
        let assigned = matches!(s.st, RoutingState::Active | RoutingState::Parked);
        let mut notify: BTreeSet<String> = BTreeSet::new();
        let mut cancelled: Option<String> = None;
        // A pending offer survives a re-rank within its department; an offer to the agent the
        // ticket is now assigned to counts as accepted; any other is withdrawn.
        let mut keep_offer = false;
        if old.st == TicketSt::Offered {
            let rid = old.offer.clone().unwrap_or_default();
            let o = self.offers.get(&rid).cloned();
            // A channel change changes the capacity the ticket needs: the offer goes too.
            keep_offer = o.as_ref().is_some_and(|o| o.chan == s.chan)
                && s.st == RoutingState::Waiting
                && old.dept.as_deref() == Some(s.dept);
            if let Some(o) = &o
                && keep_offer
                && (o.step == "team" || o.step == "department")
            {
                let held = self
                    .agents
                    .get(&o.agent)
                    .and_then(|b| b.rec.as_ref())
                    .map(|r| &r.skills);
                if s.required_skills
                    .iter()
                    .any(|skill| !held.is_some_and(|h| h.contains_key(skill)))
                {
                    keep_offer = false;
                }
            }
            if let Some(mut o) = o {
                if keep_offer {
                    if o.tier != s.tier {
                        let dept = o.dept.clone();
                        self.dstat(&dept, now, None, &o.tier, -1);
                        self.dstat(&dept, now, None, s.tier, 1);
                    }
                    o.tier = s.tier.to_owned();
                    o.d = Some(s.data.clone());
                    self.offers.insert(rid, o);
                } else {
                    let mut a = self.agents.get(&o.agent).cloned();
                    if assigned && o.agent == s.agent {
                        o.st = "accepted".into();
                        self.dstat(&o.dept, now, Some("a"), &o.tier, -1);
                        // An accept is an answer: the missed count starts again (as CONFIRM).
                        if let Some(a) = &mut a {
                            bump(&mut a.oc, now, "a");
                            a.missed = 0;
                        }
                    } else {
                        o.st = "cancelled".into();
                        o.why = Some(
                            if s.st == RoutingState::Waiting {
                                "ticket_changed"
                            } else {
                                "ticket_gone"
                            }
                            .into(),
                        );
                        cancelled = Some(rid.clone());
                        self.dstat(&o.dept, now, Some("c"), &o.tier, -1);
                        if let Some(a) = &mut a {
                            bump(&mut a.oc, now, "c");
                        }
                    }
                    o.end = Some(now);
                    let agent = o.agent.clone();
                    self.offers.insert(rid.clone(), o);
                    self.offer_exp.remove(&rid);
                    self.offer_end.add(now, &rid);
                    if let Some(mut a) = a {
                        if a.offer.as_deref() == Some(rid.as_str()) {
                            a.offer = None;
                        }
                        self.save_agent_same(&agent, a, now);
                    }
                    notify.insert(agent);
                }
            }
        }
        if old.st == TicketSt::Queued
            && let (Some(dept), Some(member)) = (&old.dept, &old.member)
        {
            self.queue(dept).remove(member);
        }
        if waiting_before && let (Some(dept), Some(tier)) = (&old.dept, &old.tier) {
            self.waiting_set(dept, tier).remove(s.id);
            self.due_set(dept, tier).remove(s.id);
        }
        // The previous assignment ends unless the same agent keeps the ticket.
        if let Some(prev) = &old.agent
            && !(assigned && prev == s.agent)
        {
            if let Some(mut a) = self.agents.get(prev).cloned() {
                a.tk.remove(s.id);
                a.idle_check(now);
                self.save_agent_same(prev, a, now);
            }
            notify.insert(prev.clone());
        }
        let mut rank = None;
        let mut n = Ticket {
            v: s.v.clone(),
            dept: Some(s.dept.to_owned()),
            tier: Some(s.tier.to_owned()),
            chan: Some(s.chan.to_owned()),
            d: Some(s.data.clone()),
            ..Ticket::default()
        };
        match s.st {
            RoutingState::Waiting => {
                n.score = Some(s.score);
                n.member = Some(s.member.clone());
                if keep_offer {
                    n.st = TicketSt::Offered;
                    n.offer = old.offer.clone();
                    n.dec = old.dec.clone();
                } else {
                    n.st = TicketSt::Queued;
                    if waiting_before && old.dept.as_deref() == Some(s.dept) {
                        n.dec = old.dec.clone();
                    }
                    let queue = self.queue(s.dept);
                    queue.add(s.score, &s.member);
                    rank = queue.rank(&s.member);
                }
                self.waiting_set(s.dept, s.tier).add(s.enq, s.id);
                self.due_set(s.dept, s.tier).add(s.due, s.id);
                self.depts.insert(s.dept.to_owned());
                if !s.quiet {
                    self.publish(format!("d:{}", s.dept));
                }
            }
            RoutingState::Active | RoutingState::Parked => {
                n.st = if s.st == RoutingState::Active {
                    TicketSt::Active
                } else {
                    TicketSt::Parked
                };
                n.agent = Some(s.agent.to_owned());
                n.rid = Some(s.rid.to_owned());
                let mut a = self.agents.get(s.agent).cloned().unwrap_or_else(Agent::new);
                let before = a.index_names();
                let prior_at = a.tk.get(s.id).map(|e| e.at);
                if prior_at.is_none() {
                    a.la = Some(now);
                    a.cnt += 1;
                }
                let at = prior_at.unwrap_or(now);
                n.at = Some(at);
                a.tk.insert(
                    s.id.to_owned(),
                    Assignment {
                        c: s.chan.to_owned(),
                        p: s.st == RoutingState::Parked,
                        rid: s.rid.to_owned(),
                        at,
                        v: s.v.clone(),
                    },
                );
                if old.st == TicketSt::Offered && a.offer.is_some() && a.offer == old.offer {
                    a.offer = None;
                }
                a.idle_check(now);
                self.save_agent(s.agent, a, &before, now);
                notify.insert(s.agent.to_owned());
            }
            RoutingState::Done => {
                n = Ticket {
                    v: s.v.clone(),
                    st: TicketSt::Removed,
                    ..Ticket::default()
                };
                self.gone.add(now, s.id);
            }
        }
        if s.st != RoutingState::Done {
            self.gone.remove(s.id);
        }
        self.tickets.insert(s.id.to_owned(), n);
        for agent in notify {
            self.publish(format!("a:{agent}"));
        }
        if cancelled.is_some()
            && let Some(dept) = &old.dept
        {
            self.publish(format!("d:{dept}"));
        }
        Ok((true, s.v.clone(), rank, cancelled))
    }

    /// The PEEK script.
    #[allow(clippy::type_complexity)]
    fn peek(&self, department: &str, tickets: usize, read: AgentRead, teams: &[&str]) -> Peeked {
        // Nobody ready anywhere: no offer could be made, as in the script.
        if self.ready.is_empty() {
            return Peeked::default();
        }
        let mut found = Vec::new();
        let mut named = BTreeSet::new();
        if let Some(queue) = self.queues.get(department) {
            for member in queue.head(tickets) {
                // string.sub(m, 15): after the 13-digit enqueue time and ':'.
                let id = member.get(14..).unwrap_or("");
                let Some(t) = self.tickets.get(id) else {
                    continue;
                };
                found.push((id.to_owned(), t.to_live()));
                let d =
                    t.d.as_deref()
                        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok());
                if let Some(d) = d.as_ref().and_then(|d| d.as_object()) {
                    for field in ["account_manager_id", "preferred_agent_id"] {
                        if let Some(agent) = d.get(field).and_then(|v| v.as_str()) {
                            named.insert(agent.to_owned());
                        }
                    }
                }
            }
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let mut add_agent = |id: &str| {
            if !seen.insert(id.to_owned()) {
                return;
            }
            if let Some(a) = self.agents.get(id) {
                out.push((id.to_owned(), a.to_live()));
            }
        };
        let mut partial = false;
        if !found.is_empty() {
            let names = std::iter::once(department.to_owned())
                .chain(teams.iter().map(|team| format!("\u{1}{team}")));
            for name in names {
                let count = index_range(&self.ready, &name).count();
                let (want, from) = read.window(count, found.len());
                partial |= count > want;
                // The window from `from`, wrapping round to the start.
                let window = index_range(&self.ready, &name)
                    .skip(from)
                    .chain(index_range(&self.ready, &name).take(from))
                    .take(want);
                for (_, id) in window {
                    add_agent(id);
                }
            }
            for id in &named {
                add_agent(id);
            }
        }
        Peeked {
            tickets: found,
            agents: out,
            partial,
        }
    }

    /// The RESERVE script.
    fn reserve(&mut self, dept: &str, offers: &[NewOffer], now: i64, exp: i64) -> Vec<String> {
        let mut made = Vec::new();
        for new in offers {
            let (tid, aid, rid) = (&new.ticket_id, &new.agent_id, &new.reservation_id);
            let (Some(mut t), Some(mut a)) = (
                self.tickets.get(tid).cloned(),
                self.agents.get(aid).cloned(),
            ) else {
                continue;
            };
            if !(t.st == TicketSt::Queued
                && t.v == new.ticket_version
                && t.dept.as_deref() == Some(dept)
                && !t.dec.contains(aid)
                && a.ready(now)
                && a.free_for(t.chan.as_deref().unwrap_or("")))
            {
                continue;
            }
            let tier = t.tier.clone().unwrap_or_default();
            let o = Offer {
                agent: aid.clone(),
                ticket: tid.clone(),
                st: "pending".into(),
                why: None,
                made: now,
                exp,
                step: new.step.as_str().to_owned(),
                dept: dept.to_owned(),
                chan: t.chan.clone().unwrap_or_default(),
                tier: tier.clone(),
                tv: t.v.clone(),
                d: t.d.clone(),
                end: None,
                hold: None,
            };
            self.offers.insert(rid.clone(), o);
            self.offer_exp.add(exp, rid);
            if let Some(member) = &t.member {
                self.queue(dept).remove(member);
            }
            t.st = TicketSt::Offered;
            t.offer = Some(rid.clone());
            self.tickets.insert(tid.clone(), t);
            a.offer = Some(rid.clone());
            bump(&mut a.oc, now, "o");
            self.dstat(dept, now, Some("o"), &tier, 1);
            self.save_agent_same(aid, a, now);
            self.publish(format!("a:{aid}"));
            made.push(rid.clone());
        }
        made
    }

    /// The CLAIM script.
    fn claim(&mut self, rid: &str, agent: &str, now: i64, hold: i64) -> Claim {
        let Some(mut o) = self.offers.get(rid).cloned() else {
            return Claim::Missing;
        };
        if o.agent != agent {
            return Claim::NotYours;
        }
        if o.st == "accepted" {
            return Claim::AlreadyAccepted(o.to_live());
        }
        // A repeated accept re-takes its own hold while it runs; once the hold ran out the
        // offer is as good as expired, like a pending one past its expiry.
        if (o.st == "accepting" && o.hold.unwrap_or(0) > now) || (o.st == "pending" && o.exp > now)
        {
            o.st = "accepting".into();
            o.hold = Some(hold);
            let live = o.to_live();
            self.offers.insert(rid.to_owned(), o);
            self.offer_exp.add(hold, rid);
            return Claim::Claimed(live);
        }
        if o.st == "pending" || o.st == "accepting" {
            return Claim::NotPending("expired".into());
        }
        Claim::NotPending(o.st)
    }

    /// The UNCLAIM script.
    fn unclaim(&mut self, rid: &str) {
        let Some(mut o) = self.offers.get(rid).cloned() else {
            return;
        };
        if o.st != "accepting" {
            return;
        }
        o.st = "pending".into();
        o.hold = None;
        let exp = o.exp;
        self.offers.insert(rid.to_owned(), o);
        self.offer_exp.add(exp, rid);
    }

    /// The CONFIRM script. `keys` is the offer as the caller read it: like RedisLive, which
    /// names the queue, waiting and due keys after it, the queue and sets cleaned are the
    /// caller's offer's department and tier (the same as the stored offer's unless its tier
    /// changed since the caller read it).
    fn confirm(&mut self, rid: &str, av: i64, now: i64) -> Result<i64, LiveError> {
        let Some(mut o) = self.offers.get(rid).cloned() else {
            return Err(LiveError::Corrupt(format!(
                "offer {rid:?} vanished during its accept"
            )));
        };
        if o.st == "accepted" {
            return Ok(o.end.unwrap_or(now));
        }
        let av_s = av.to_string();
        let was_pending = o.st == "pending" || o.st == "accepting";
        o.st = "accepted".into();
        o.end = Some(now);
        o.hold = None;
        self.offers.insert(rid.to_owned(), o.clone());
        self.offer_exp.remove(rid);
        self.offer_end.add(now, rid);
        let delta = if was_pending { -1 } else { 0 };
        self.dstat(&o.dept, now, Some("a"), &o.tier, delta);
        // Only a ticket still held at or below the assigned version becomes active: one the
        // ticket service closed later must not take the agent's capacity.
        let current = self.tickets.get(&o.ticket).cloned();
        let assign = match &current {
            Some(t) => t.st != TicketSt::Removed && t.version()? <= av,
            None => false,
        };
        if assign && let Some(t) = current {
            if t.st == TicketSt::Offered
                && t.offer.as_deref() != Some(rid)
                && let Some(other_id) = &t.offer
                && let Some(mut other) = self.offers.get(other_id).cloned()
            {
                other.st = "cancelled".into();
                other.why = Some("ticket_gone".into());
                other.end = Some(now);
                let (odept, otier, oagent) =
                    (other.dept.clone(), other.tier.clone(), other.agent.clone());
                self.offers.insert(other_id.clone(), other);
                self.dstat(&odept, now, Some("c"), &otier, -1);
                self.offer_exp.remove(other_id);
                self.offer_end.add(now, other_id);
                if let Some(mut b) = self.agents.get(&oagent).cloned()
                    && b.offer == t.offer
                {
                    b.offer = None;
                    self.save_agent_same(&oagent, b, now);
                }
                self.publish(format!("a:{oagent}"));
            }
            // It leaves the queue and statistics of wherever it waits now (it may have moved
            // department or tier since the offer).
            let dept = t.dept.clone().unwrap_or_default();
            let tier = t.tier.clone().unwrap_or_default();
            if t.st == TicketSt::Queued
                && let Some(member) = &t.member
            {
                self.queue(&dept).remove(member);
            }
            if t.st.waiting() {
                self.waiting_set(&dept, &tier).remove(&o.ticket);
                self.due_set(&dept, &tier).remove(&o.ticket);
            }
            if let Some(prev) = &t.agent
                && *prev != o.agent
                && let Some(mut b) = self.agents.get(prev).cloned()
            {
                b.tk.remove(&o.ticket);
                b.idle_check(now);
                self.save_agent_same(prev, b, now);
                self.publish(format!("a:{prev}"));
            }
            let n = Ticket {
                v: av_s.clone(),
                st: TicketSt::Active,
                dept: t.dept.clone().or_else(|| Some(o.dept.clone())),
                tier: t.tier.clone().or_else(|| Some(o.tier.clone())),
                chan: Some(o.chan.clone()),
                d: t.d.clone().or_else(|| o.d.clone()),
                agent: Some(o.agent.clone()),
                rid: Some(rid.to_owned()),
                at: Some(now),
                ..Ticket::default()
            };
            self.tickets.insert(o.ticket.clone(), n);
        }
        let mut a = self
            .agents
            .get(&o.agent)
            .cloned()
            .unwrap_or_else(Agent::new);
        let before = a.index_names();
        if a.offer.as_deref() == Some(rid) {
            a.offer = None;
        }
        a.missed = 0;
        bump(&mut a.oc, now, "a");
        if assign && !a.tk.contains_key(&o.ticket) {
            a.tk.insert(
                o.ticket.clone(),
                Assignment {
                    c: o.chan.clone(),
                    p: false,
                    rid: rid.to_owned(),
                    at: now,
                    v: av_s,
                },
            );
            a.la = Some(now);
            a.cnt += 1;
        }
        a.idle_check(now);
        self.save_agent(&o.agent, a, &before, now);
        self.publish(format!("a:{}", o.agent));
        Ok(now)
    }

    /// The END_OFFER script.
    fn end_offer(
        &mut self,
        rid: &str,
        outcome: Outcome,
        by_agent: &str,
        from: &[&str],
        away_after_missed: u32,
        now: i64,
    ) -> Ended {
        let Some(mut o) = self.offers.get(rid).cloned() else {
            return Ended::Missing;
        };
        let (name, kind, reason) = match outcome {
            Outcome::Declined => ("declined", "d", ""),
            Outcome::Expired => ("expired", "e", ""),
            Outcome::Cancelled(reason) => ("cancelled", "c", reason),
        };
        // (Redis's MOVED, the offer's department differing from the caller's read, cannot
        // happen within one critical section.)
        if !by_agent.is_empty() && o.agent != by_agent {
            return Ended::NotYours;
        }
        if o.st == name && name == "declined" {
            return Ended::Unchanged(o.to_live());
        }
        // string.find(',' .. from .. ',', ',' .. st .. ',', 1, true)
        if !format!(",{},", from.join(",")).contains(&format!(",{},", o.st)) {
            return Ended::NotPending(o.st);
        }
        if name == "expired" && o.st == "pending" && o.exp > now {
            return Ended::NotPending("pending".into());
        }
        if name == "expired" && o.st == "accepting" && o.hold.unwrap_or(0) > now {
            return Ended::NotPending("accepting".into());
        }
        o.st = name.to_owned();
        o.end = Some(now);
        o.hold = None;
        if name == "cancelled" {
            o.why = Some(reason.to_owned());
        }
        self.offers.insert(rid.to_owned(), o.clone());
        self.offer_exp.remove(rid);
        self.offer_end.add(now, rid);
        self.dstat(&o.dept, now, Some(kind), &o.tier, -1);
        if let Some(mut t) = self.tickets.get(&o.ticket).cloned()
            && t.st == TicketSt::Offered
            && t.offer.as_deref() == Some(rid)
        {
            t.st = TicketSt::Queued;
            t.offer = None;
            if name != "cancelled" {
                t.dec.insert(o.agent.clone());
            }
            let entry = t.score.zip(t.member.clone());
            self.tickets.insert(o.ticket.clone(), t);
            if let Some((score, member)) = entry {
                self.queue(&o.dept).add(score, &member);
            }
            self.publish(format!("d:{}", o.dept));
        }
        if let Some(mut a) = self.agents.get(&o.agent).cloned() {
            if a.offer.as_deref() == Some(rid) {
                a.offer = None;
            }
            bump(&mut a.oc, now, kind);
            if name == "declined" {
                a.missed = 0;
            }
            if name == "expired" {
                a.missed += 1;
                let limit = i64::from(away_after_missed);
                if limit > 0 && a.missed >= limit && a.pres == "available" {
                    a.pres = "away".into();
                    a.why = Some("not_responding".into());
                    a.note = Some(String::new());
                    a.ps = Some(now);
                    a.missed = 0;
                }
            }
            self.save_agent_same(&o.agent, a, now);
            self.publish(format!("a:{}", o.agent));
        }
        Ended::Ended(o.to_live())
    }

    /// Lists the record's departments and publishes `a:<agent>` and `d:<department>` of each.
    fn publish_agent(&mut self, id: &str, rec: &LiveRecord) {
        self.publish(format!("a:{id}"));
        // A department with agents is a department (statistics list it before its first
        // ticket).
        for d in rec.depts.keys() {
            self.depts.insert(d.clone());
            self.publish(format!("d:{d}"));
        }
    }

    /// The PUT_RECORD script.
    fn put_record(&mut self, id: &str, record: &LiveRecord, now: i64) -> Option<String> {
        let mut a = self.agents.get(id).cloned().unwrap_or_else(Agent::new);
        let before = a.index_names();
        let rec = normalized(record);
        let withdraw = if rec.dis { a.offer.clone() } else { None };
        a.rec = Some(rec.clone());
        if a.idle.is_none() {
            a.idle_check(now);
        }
        self.save_agent(id, a, &before, now);
        self.publish_agent(id, &rec);
        withdraw
    }

    /// The OPEN_SESSION script.
    #[allow(clippy::too_many_arguments)]
    fn open_session(
        &mut self,
        id: &str,
        record: &LiveRecord,
        asked: &str,
        new_session: &str,
        initial: &str,
        now: i64,
        lease: i64,
    ) -> (bool, String, Option<String>) {
        let mut a = self.agents.get(id).cloned().unwrap_or_else(Agent::new);
        let before = a.index_names();
        let rec = normalized(record);
        a.rec = Some(rec.clone());
        let resumed = !asked.is_empty() && a.sess.as_deref() == Some(asked) && a.has_session(now);
        let mut withdraw = None;
        if !resumed {
            withdraw = a.offer.clone();
            a.sess = Some(new_session.to_owned());
            // 'keep' (UNSPECIFIED) keeps only a resumed session's presence.
            if initial == "available" {
                a.pres = "available".into();
                a.why = None;
            } else {
                a.pres = "away".into();
                a.why = Some("not_ready".into());
            }
            a.note = Some(String::new());
            a.ps = Some(now);
            a.missed = 0;
        } else if initial == "available" && a.pres != "available" {
            a.pres = "available".into();
            a.why = None;
            a.note = Some(String::new());
            a.ps = Some(now);
        } else if initial == "away" && a.pres != "away" {
            // Resuming as AWAY (NOT_READY) is going away: the pending offer goes to someone
            // else.
            a.pres = "away".into();
            a.why = Some("not_ready".into());
            a.note = Some(String::new());
            a.ps = Some(now);
            withdraw = a.offer.clone();
        }
        a.conn = true;
        a.lease = Some(lease);
        if a.idle.is_none() {
            a.idle_check(now);
        }
        let session = a.sess.clone().unwrap_or_default();
        self.save_agent(id, a, &before, now);
        self.leases.add(lease, id);
        self.publish_agent(id, &rec);
        (resumed, session, withdraw)
    }

    /// The TOUCH_SESSION script.
    fn touch_session(
        &mut self,
        id: &str,
        session: &str,
        connected: bool,
        now: i64,
        lease: i64,
    ) -> bool {
        let Some(mut a) = self.agents.get(id).cloned() else {
            return false;
        };
        if a.sess.as_deref() != Some(session) {
            return false;
        }
        a.conn = connected;
        a.lease = Some(lease);
        self.save_agent_same(id, a, now);
        self.leases.add(lease, id);
        true
    }

    /// The RENEW_SESSIONS script.
    fn renew_sessions(
        &mut self,
        sessions: &[(String, String)],
        now: i64,
        lease: i64,
    ) -> Vec<String> {
        let mut stale = Vec::new();
        for (id, session) in sessions {
            match self.agents.get(id) {
                Some(a) if a.sess.as_deref() == Some(session.as_str()) && a.conn => {
                    let mut a = a.clone();
                    a.lease = Some(lease);
                    self.save_agent_same(id, a, now);
                    self.leases.add(lease, id);
                }
                _ => stale.push(id.clone()),
            }
        }
        stale
    }

    /// The SET_PRESENCE script.
    fn set_presence(
        &mut self,
        id: &str,
        presence: &str,
        reason: &str,
        note: &str,
        now: i64,
    ) -> PresenceSet {
        let Some(mut a) = self.agents.get(id).cloned() else {
            return PresenceSet::Missing;
        };
        let Some(rec) = a.rec.clone() else {
            return PresenceSet::Missing;
        };
        if presence == "available" {
            if rec.dis {
                return PresenceSet::Disabled;
            }
            if !a.connected(now) {
                return PresenceSet::NoSession;
            }
        }
        let withdraw = if presence != "available" {
            a.offer.clone()
        } else {
            None
        };
        if a.pres != presence
            || a.why.as_deref().unwrap_or("") != reason
            || a.note.as_deref().unwrap_or("") != note
        {
            a.pres = presence.to_owned();
            a.ps = Some(now);
            a.why = (!reason.is_empty()).then(|| reason.to_owned());
            a.note = Some(note.to_owned());
        }
        if presence == "available" {
            a.missed = 0;
        }
        if presence == "offline" {
            a.sess = None;
            a.conn = false;
            a.lease = None;
            self.leases.remove(id);
        }
        let live = a.to_live();
        self.save_agent_same(id, a, now);
        self.publish_agent(id, &rec);
        PresenceSet::Set(Box::new(live), withdraw)
    }

    /// The LAPSE_SESSIONS script.
    fn lapse_sessions(&mut self, now: i64, limit: usize) -> Vec<String> {
        let mut withdraw = Vec::new();
        for id in self.leases.up_to(now, limit) {
            self.leases.remove(&id);
            let Some(mut a) = self.agents.get(&id).cloned() else {
                continue;
            };
            if a.sess.is_some() && !a.has_session(now) {
                a.sess = None;
                a.conn = false;
                a.lease = None;
                a.pres = "offline".into();
                a.why = None;
                a.note = Some(String::new());
                a.ps = Some(now);
                if let Some(offer) = &a.offer {
                    withdraw.push(offer.clone());
                }
                self.save_agent_same(&id, a, now);
                self.publish(format!("a:{id}"));
            } else if let Some(lease) = a.lease {
                self.leases.add(lease, &id);
            }
        }
        withdraw
    }

    /// The PURGE script.
    fn purge(&mut self, tombstones_before: i64, offers_before: i64, limit: usize) -> u64 {
        let mut n = 0;
        for id in self.gone.up_to(tombstones_before, limit) {
            if self
                .tickets
                .get(&id)
                .is_some_and(|t| t.st == TicketSt::Removed)
            {
                self.tickets.remove(&id);
            }
            self.gone.remove(&id);
            n += 1;
        }
        for rid in self.offer_end.up_to(offers_before, limit) {
            self.offers.remove(&rid);
            self.offer_end.remove(&rid);
            n += 1;
        }
        n
    }

    /// The `waiting` reads of one department.
    fn dept_waiting(&self, dept: &str, now: i64, at_risk_window_ms: i64) -> DeptWaiting {
        let mut dw = DeptWaiting::default();
        let empty = ZSet::default();
        for (slot, tier) in dw.tiers.iter_mut().zip(TIERS) {
            let k = key(dept, tier.as_str());
            let w = self.waiting.get(&k).unwrap_or(&empty);
            let due = self.due.get(&k).unwrap_or(&empty);
            *slot = TierWaiting {
                waiting: w.len(),
                offered: 0,
                oldest_enqueue_ms: w.first_score(),
                at_risk: due.count(now.saturating_add(1), now.saturating_add(at_risk_window_ms)),
                past_due: due.count(i64::MIN, now),
            };
        }
        if let Some(stats) = self.dstats.get(dept) {
            dw.stats = stats.to_live();
        }
        for (slot, tier) in dw.tiers.iter_mut().zip(TIERS) {
            let offered = dw.stats.off.get(tier.as_str()).copied().unwrap_or(0.0);
            slot.offered = (offered as u64).min(slot.waiting);
        }
        dw
    }
}

/// The agents of `name` in a lex index (`ZRANGEBYLEX [name\0 (name\1`), in agent order.
fn index_range<'a>(
    index: &'a BTreeSet<(String, String)>,
    name: &'a str,
) -> impl Iterator<Item = &'a (String, String)> + 'a {
    index
        .range((name.to_owned(), String::new())..)
        .take_while(move |(n, _)| n == name)
}

fn one_based(rank: u64) -> u64 {
    rank + 1
}

// ---------------------------------------------------------------------------------------------
// The trait
// ---------------------------------------------------------------------------------------------

#[tonic::async_trait]
impl LiveState for InMemoryLive {
    async fn sync(&self, s: &TicketSync, now: OffsetDateTime) -> Result<Synced, LiveError> {
        let prepared = s.prepare()?;
        self.with(|st| st.sync_one(s, prepared, time_to_ms(now), false))
    }

    async fn sync_many(
        &self,
        syncs: &[TicketSync],
        now: OffsetDateTime,
    ) -> Result<Vec<Result<Synced, LiveError>>, LiveError> {
        let now = time_to_ms(now);
        // One critical section for the page; each sync is still applied on its own, and one
        // department notice goes out per department, as on Redis.
        self.with(|st| {
            let out = syncs
                .iter()
                .map(|s| s.prepare().and_then(|p| st.sync_one(s, p, now, true)))
                .collect();
            let departments: BTreeSet<&str> = syncs
                .iter()
                .filter(|s| s.state == RoutingState::Waiting)
                .map(|s| s.department.as_str())
                .collect();
            for d in departments {
                st.publish(format!("d:{d}"));
            }
            Ok(out)
        })
    }

    #[allow(clippy::type_complexity)]
    async fn peek_round(
        &self,
        department: &str,
        tickets: usize,
        read: AgentRead,
        teams: &[&str],
    ) -> Result<Peeked, LiveError> {
        self.with(|s| Ok(s.peek(department, tickets.max(1), read, teams)))
    }

    async fn reserve(
        &self,
        department: &str,
        offers: &[NewOffer],
        now: OffsetDateTime,
        expire: OffsetDateTime,
    ) -> Result<Vec<String>, LiveError> {
        if offers.is_empty() {
            return Ok(Vec::new());
        }
        self.with(|s| Ok(s.reserve(department, offers, time_to_ms(now), time_to_ms(expire))))
    }

    async fn claim(
        &self,
        reservation_id: &str,
        agent_id: &str,
        now: OffsetDateTime,
        hold_until: OffsetDateTime,
    ) -> Result<Claim, LiveError> {
        self.with(|s| {
            Ok(s.claim(
                reservation_id,
                agent_id,
                time_to_ms(now),
                time_to_ms(hold_until),
            ))
        })
    }

    async fn unclaim(&self, reservation_id: &str) -> Result<(), LiveError> {
        self.with(|s| {
            s.unclaim(reservation_id);
            Ok(())
        })
    }

    async fn confirm(
        &self,
        reservation_id: &str,
        offer: &LiveOffer,
        ticket_version: i64,
        now: OffsetDateTime,
    ) -> Result<i64, LiveError> {
        // The offer as the caller read it names Redis keys; in memory the state knows where
        // the ticket is.
        let _ = offer;
        self.with(|s| s.confirm(reservation_id, ticket_version, time_to_ms(now)))
    }

    async fn end_offer(
        &self,
        reservation_id: &str,
        outcome: Outcome,
        by_agent: Option<&str>,
        from: &[&str],
        away_after_missed: u32,
        now: OffsetDateTime,
    ) -> Result<Ended, LiveError> {
        self.with(|s| {
            Ok(s.end_offer(
                reservation_id,
                outcome,
                by_agent.unwrap_or(""),
                from,
                away_after_missed,
                time_to_ms(now),
            ))
        })
    }

    async fn put_record(
        &self,
        agent_id: &str,
        record: &LiveRecord,
        now: OffsetDateTime,
    ) -> Result<Option<String>, LiveError> {
        self.with(|s| Ok(s.put_record(agent_id, record, time_to_ms(now))))
    }

    async fn open_session(
        &self,
        agent_id: &str,
        record: &LiveRecord,
        asked: Option<&str>,
        new_session: &str,
        initial: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<(bool, String, Option<String>), LiveError> {
        self.with(|s| {
            Ok(s.open_session(
                agent_id,
                record,
                asked.unwrap_or(""),
                new_session,
                initial,
                time_to_ms(now),
                time_to_ms(lease_until),
            ))
        })
    }

    async fn touch_session(
        &self,
        agent_id: &str,
        session: &str,
        connected: bool,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<bool, LiveError> {
        self.with(|s| {
            Ok(s.touch_session(
                agent_id,
                session,
                connected,
                time_to_ms(now),
                time_to_ms(lease_until),
            ))
        })
    }

    async fn renew_sessions(
        &self,
        sessions: &[(String, String)],
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<Vec<String>, LiveError> {
        self.with(|s| Ok(s.renew_sessions(sessions, time_to_ms(now), time_to_ms(lease_until))))
    }

    async fn set_presence(
        &self,
        agent_id: &str,
        presence: &str,
        reason: &str,
        note: &str,
        now: OffsetDateTime,
    ) -> Result<PresenceSet, LiveError> {
        self.with(|s| Ok(s.set_presence(agent_id, presence, reason, note, time_to_ms(now))))
    }

    async fn lapse_sessions(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<String>, LiveError> {
        self.with(|s| Ok(s.lapse_sessions(time_to_ms(now), limit.max(1))))
    }

    async fn due_offers(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<String>, LiveError> {
        self.with(|s| Ok(s.offer_exp.up_to(time_to_ms(now), limit.max(1))))
    }

    async fn purge(&self, now: OffsetDateTime, limit: usize) -> Result<u64, LiveError> {
        let now = time_to_ms(now);
        self.with(|s| {
            Ok(s.purge(
                now - TOMBSTONE_TTL_MS,
                now - ENDED_OFFER_TTL_MS,
                limit.max(1),
            ))
        })
    }

    async fn ticket(&self, ticket_id: &str) -> Result<Option<LiveTicket>, LiveError> {
        self.with(|s| Ok(s.tickets.get(ticket_id).map(Ticket::to_live)))
    }

    async fn agent(&self, agent_id: &str) -> Result<Option<LiveAgent>, LiveError> {
        self.with(|s| Ok(s.agents.get(agent_id).map(Agent::to_live)))
    }

    async fn offer(&self, reservation_id: &str) -> Result<Option<LiveOffer>, LiveError> {
        self.with(|s| Ok(s.offers.get(reservation_id).map(Offer::to_live)))
    }

    async fn agents(&self, ids: &[String]) -> Result<Vec<(String, LiveAgent)>, LiveError> {
        self.with(|s| {
            Ok(ids
                .iter()
                .filter_map(|id| s.agents.get(id).map(|a| (id.clone(), a.to_live())))
                .collect())
        })
    }

    async fn offers(&self, ids: &[String]) -> Result<Vec<(String, LiveOffer)>, LiveError> {
        self.with(|s| {
            Ok(ids
                .iter()
                .filter_map(|id| s.offers.get(id).map(|o| (id.clone(), o.to_live())))
                .collect())
        })
    }

    async fn tickets(&self, ids: &[String]) -> Result<Vec<(String, LiveTicket)>, LiveError> {
        self.with(|s| {
            Ok(ids
                .iter()
                .filter_map(|id| s.tickets.get(id).map(|t| (id.clone(), t.to_live())))
                .collect())
        })
    }

    async fn staff(&self, department: &str, limit: usize) -> Result<Vec<String>, LiveError> {
        self.with(|s| {
            Ok(index_range(&s.staff, department)
                .take(limit.max(1))
                .map(|(_, id)| id.clone())
                .collect())
        })
    }

    async fn ready_agents(&self, department: &str, limit: usize) -> Result<Vec<String>, LiveError> {
        self.with(|s| {
            Ok(index_range(&s.ready, department)
                .take(limit.max(1))
                .map(|(_, id)| id.clone())
                .collect())
        })
    }

    async fn department_stats(&self, department: &str) -> Result<LiveDeptStats, LiveError> {
        self.with(|s| {
            Ok(s.dstats
                .get(department)
                .map(DeptStats::to_live)
                .unwrap_or_default())
        })
    }

    async fn queued_before(&self, department: &str, score: i64) -> Result<u64, LiveError> {
        self.with(|s| {
            Ok(s.queues
                .get(department)
                .map_or(0, |q| q.count(i64::MIN, score)))
        })
    }

    async fn departments(&self) -> Result<Vec<String>, LiveError> {
        self.with(|s| Ok(s.depts.iter().cloned().collect()))
    }

    async fn queue_head(
        &self,
        department: &str,
        n: usize,
    ) -> Result<(Vec<String>, u64), LiveError> {
        self.with(|s| {
            let Some(queue) = s.queues.get(department) else {
                return Ok((Vec::new(), 0));
            };
            let ids = queue
                .head(n.max(1))
                .filter_map(|m| RankKey::id_of_member(m).map(str::to_owned))
                .collect();
            Ok((ids, queue.len()))
        })
    }

    async fn rank(&self, ticket: &LiveTicket) -> Result<Option<u64>, LiveError> {
        let (Some(dept), Some(member)) = (&ticket.dept, &ticket.member) else {
            return Ok(None);
        };
        self.with(|s| {
            Ok(s.queues
                .get(dept)
                .and_then(|q| q.rank(member))
                .map(one_based))
        })
    }

    async fn waiting(
        &self,
        departments: &[String],
        now: OffsetDateTime,
        at_risk_window_ms: i64,
    ) -> Result<Vec<DeptWaiting>, LiveError> {
        let now = time_to_ms(now);
        self.with(|s| {
            Ok(departments
                .iter()
                .map(|d| s.dept_waiting(d, now, at_risk_window_ms))
                .collect())
        })
    }

    async fn is_built(&self) -> Result<bool, LiveError> {
        self.with(|s| Ok(s.built.is_some()))
    }

    async fn mark_built(&self, now: OffsetDateTime) -> Result<(), LiveError> {
        self.with(|s| {
            s.built = Some(time_to_ms(now));
            Ok(())
        })
    }

    async fn lock_rebuild(&self, owner: &str, ttl_ms: u64) -> Result<bool, LiveError> {
        self.lock_rebuild_at(owner, ttl_ms, Instant::now())
    }

    async fn unlock_rebuild(&self, owner: &str) -> Result<(), LiveError> {
        self.unlock_rebuild_at(owner, Instant::now())
    }

    async fn notices(&self) -> Result<BoxStream<'static, String>, LiveError> {
        let rx = self.events.subscribe();
        Ok(BroadcastStream::new(rx)
            .filter_map(|n| std::future::ready(n.ok()))
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use futures::StreamExt;

    use super::*;

    fn ms(ms: i64) -> OffsetDateTime {
        super::super::model::ms_to_time(1_772_442_000_000 + ms)
    }

    fn record(departments: &[&str]) -> LiveRecord {
        LiveRecord {
            name: "Agent".into(),
            depts: departments
                .iter()
                .map(|d| ((*d).to_owned(), true))
                .collect(),
            team: None,
            skills: BTreeMap::new(),
            cap: [("chat".to_owned(), 2.0)].into_iter().collect(),
            dis: false,
        }
    }

    /// What a subscriber has received so far (unconstrained: tokio's cooperative budget would
    /// answer Pending after about 128 receives in one poll).
    fn received(stream: &mut BoxStream<'static, String>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Some(n)) =
            futures::FutureExt::now_or_never(tokio::task::unconstrained(stream.next()))
        {
            out.push(n);
        }
        out
    }

    #[test]
    fn the_rebuild_lock_is_exclusive_until_its_ttl_runs_out() {
        let live = InMemoryLive::new();
        let t0 = Instant::now();
        let after = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(live.lock_rebuild_at("a", 100, t0).expect("lock"));
        assert!(!live.lock_rebuild_at("b", 100, after(50)).expect("lock"));
        assert!(
            !live.lock_rebuild_at("a", 100, after(99)).expect("lock"),
            "NX: not even its holder takes it again"
        );
        // Expired: anyone takes it.
        assert!(live.lock_rebuild_at("b", 100, after(100)).expect("lock"));
        // Only the holder releases it.
        live.unlock_rebuild_at("a", after(120)).expect("unlock");
        assert!(!live.lock_rebuild_at("c", 100, after(150)).expect("lock"));
        live.unlock_rebuild_at("b", after(150)).expect("unlock");
        assert!(live.lock_rebuild_at("c", 100, after(150)).expect("lock"));
        assert!(matches!(
            live.lock_rebuild_at("d", 0, after(300)),
            Err(LiveError::InvalidArgument(_))
        ));
    }

    #[tokio::test]
    async fn the_rebuild_lock_expires_by_the_clock() {
        let live = InMemoryLive::new();
        assert!(live.lock_rebuild("a", 40).await.expect("lock"));
        assert!(!live.lock_rebuild("b", 40).await.expect("lock"));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(live.lock_rebuild("b", 40_000).await.expect("lock"));
        live.unlock_rebuild("a").await.expect("unlock");
        assert!(
            !live.lock_rebuild("a", 40).await.expect("lock"),
            "b holds it"
        );
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_notice_in_order() {
        let live = InMemoryLive::new();
        // Nobody listens yet: the changes are made all the same.
        live.put_record("early", &record(&["sales"]), ms(0))
            .await
            .expect("put");
        let mut first = live.notices().await.expect("notices");
        let mut second = live.notices().await.expect("notices");
        live.put_record("ana", &record(&["support", "billing"]), ms(1))
            .await
            .expect("put");
        live.set_presence("ana", "away", "break", "", ms(2))
            .await
            .expect("presence");
        // A change that publishes nothing.
        live.touch_session("ana", "none", true, ms(3), ms(4))
            .await
            .expect("touch");
        let expected = [
            "a:ana",
            "d:billing",
            "d:support",
            "a:ana",
            "d:billing",
            "d:support",
        ];
        assert_eq!(received(&mut first), expected);
        assert_eq!(received(&mut second), expected);
        // A later subscriber sees only what comes after it.
        let mut third = live.notices().await.expect("notices");
        live.put_record("bo", &record(&[]), ms(5))
            .await
            .expect("put");
        assert_eq!(received(&mut third), ["a:bo"]);
        assert_eq!(received(&mut first), ["a:bo"]);
        // The stream ends with the state.
        drop(live);
        assert_eq!(second.next().await.as_deref(), Some("a:bo"));
        assert_eq!(second.next().await, None);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_misses_the_oldest_and_goes_on() {
        let live = InMemoryLive::new();
        let mut slow = live.notices().await.expect("notices");
        for i in 0..NOTICE_CAPACITY + 10 {
            live.put_record(&format!("a{i}"), &record(&[]), ms(0))
                .await
                .expect("put");
        }
        let got = received(&mut slow);
        assert_eq!(got.len(), NOTICE_CAPACITY);
        assert_eq!(got.first().map(String::as_str), Some("a:a10"));
        live.put_record("last", &record(&[]), ms(1))
            .await
            .expect("put");
        assert_eq!(received(&mut slow), ["a:last"]);
    }

    #[tokio::test]
    async fn a_panic_inside_an_operation_fails_every_later_call() {
        let live = std::sync::Arc::new(InMemoryLive::new());
        live.put_record("ana", &record(&["support"]), ms(0))
            .await
            .expect("put");
        let poisoner = std::sync::Arc::clone(&live);
        let panicked = std::thread::spawn(move || {
            let _guard = poisoner.state.lock();
            panic!("a bug midway through an operation");
        })
        .join();
        assert!(panicked.is_err());
        assert!(matches!(
            live.agent("ana").await,
            Err(LiveError::Corrupt(_))
        ));
        assert!(matches!(
            live.put_record("bo", &record(&[]), ms(1)).await,
            Err(LiveError::Corrupt(_))
        ));
    }

    #[test]
    fn a_zset_orders_by_score_then_member_bytes_like_redis() {
        let mut z = ZSet::default();
        for (score, member) in [
            (5, "b"),
            (-3, "z"),
            (5, "B"),
            (5, "a\u{e9}"),
            (5, "a"),
            (1 << 52, "big"),
            (-(1 << 52), "small"),
        ] {
            z.add(score, member);
        }
        let order: Vec<&str> = z.head(100).collect();
        assert_eq!(order, ["small", "z", "B", "a", "a\u{e9}", "b", "big"]);
        assert_eq!(z.rank("a\u{e9}"), Some(4));
        assert_eq!(z.rank("nope"), None);
        // Re-adding moves a member; removing forgets it.
        z.add(-10, "b");
        assert_eq!(z.rank("b"), Some(1));
        z.remove("small");
        assert_eq!((z.len(), z.first_score()), (6, Some(-10)));
        assert_eq!(z.up_to(5, 3), ["b", "z", "B"]);
        assert_eq!(z.up_to(-11, 10), Vec::<String>::new());
        assert_eq!(z.count(-3, 5), 4);
        assert_eq!(z.count(6, 5), 0);
        assert_eq!(z.count(i64::MIN, i64::MAX), 6);
    }

    #[tokio::test]
    async fn a_record_is_held_as_the_scripts_hold_it() {
        let live = InMemoryLive::new();
        let mut rec = record(&["support"]);
        rec.depts.insert("billing".into(), false);
        rec.skills.insert("de".into(), false);
        rec.cap.insert("voice".into(), 1.9);
        live.put_record("ana", &rec, ms(0)).await.expect("put");
        let a = live.agent("ana").await.expect("read").expect("known");
        let held = a.rec.expect("record");
        assert_eq!(
            held.depts.get("billing"),
            Some(&true),
            "present means served"
        );
        assert_eq!(held.skills.get("de"), Some(&true));
        assert_eq!(held.cap.get("voice"), Some(&1.0), "whole capacities");
        assert_eq!(
            (a.pres.as_str(), a.note, a.idle),
            ("offline", None, Some(1_772_442_000_000.0))
        );
        assert_eq!(live.staff("billing", 10).await.expect("staff"), ["ana"]);
    }
}
