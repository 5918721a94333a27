//! The behaviour every implementation of the live state must show, run against both: each test
//! body is an `async fn name(fx: Fixture)` written once, and [`conformance!`] instantiates it as
//! `on_redis::name` (the real Redis at 127.0.0.1:6379; `TIERLINE_TEST_REDIS_URL`, set by
//! scripts/test, overrides) and `in_memory::name` (a fresh [`InMemoryLive`]).
//!
//! Each Redis test works under its own prefix `test:<uuid>:` and deletes that prefix's keys at
//! the end, so tests run in parallel and leave nothing behind.
//!
//! At the end, Redis-only tests: the two implementations replay the same random histories and
//! must answer every call and read alike.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use redis::AsyncCommands;
use tierline_routing::domain::agent::{AwayReason, Presence};
use tierline_routing::domain::queue::TierTargets;
use tierline_routing::domain::steps::StepKind;
use tierline_routing::live::in_memory::InMemoryLive;
use tierline_routing::live::keys::Keys;
use tierline_routing::live::model::{
    LiveAgent, LiveOffer, LiveRecord, LiveTicket, OutcomeCounts, TicketData,
};
use tierline_routing::live::on_redis::RedisLive;
use tierline_routing::live::state::{
    AgentRead, Claim, Ended, LiveState, NewOffer, Outcome, PresenceSet, RoutingState, Synced,
    TicketSync,
};
use tierline_routing::live::{self, RedisSettings};
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);

fn client() -> redis::Client {
    redis::Client::open(url()).expect("redis url")
}

fn url() -> String {
    std::env::var("TIERLINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// [`LiveState::peek_round`] reading up to `agents` ready agents per index from the start of
/// each, as (tickets, agents): what most tests look at.
trait PeekFromStart {
    async fn peek(
        &self,
        department: &str,
        tickets: usize,
        agents: usize,
        teams: &[&str],
    ) -> Result<(Vec<(String, LiveTicket)>, Vec<(String, LiveAgent)>), live::LiveError>;
}

impl<L: LiveState + ?Sized> PeekFromStart for L {
    async fn peek(
        &self,
        department: &str,
        tickets: usize,
        agents: usize,
        teams: &[&str],
    ) -> Result<(Vec<(String, LiveTicket)>, Vec<(String, LiveAgent)>), live::LiveError> {
        let peeked = self
            .peek_round(department, tickets, AgentRead::up_to(agents), teams)
            .await?;
        Ok((peeked.tickets, peeked.agents))
    }
}

/// One implementation of the live state, empty, for one test.
struct Fixture {
    live: Arc<dyn LiveState>,
    /// The prefix to delete at the end (Redis only).
    redis_keys: Option<Keys>,
}

impl Fixture {
    /// [`RedisLive`] under a fresh prefix.
    async fn redis() -> Fixture {
        let conn = live::connect(&RedisSettings::new(url()))
            .await
            .expect("redis at 127.0.0.1:6379");
        let keys = Keys::new(format!("test:{}:", uuid::Uuid::new_v4())).expect("valid prefix");
        Fixture {
            live: Arc::new(RedisLive::new(client(), conn, keys.clone())),
            redis_keys: Some(keys),
        }
    }

    /// A fresh [`InMemoryLive`].
    fn memory() -> Fixture {
        Fixture {
            live: Arc::new(InMemoryLive::new()),
            redis_keys: None,
        }
    }

    fn live(&self) -> &dyn LiveState {
        &*self.live
    }

    /// Another empty live state of the same implementation, to compare two histories.
    async fn sibling(&self) -> Fixture {
        if self.redis_keys.is_some() {
            Fixture::redis().await
        } else {
            Fixture::memory()
        }
    }

    /// Deletes the Redis prefix's keys; nothing to do in memory.
    async fn cleanup(mut self) {
        let Some(keys) = self.redis_keys.take() else {
            return;
        };
        let mut conn = live::connect(&RedisSettings::new(url()))
            .await
            .expect("redis");
        let mut found: Vec<String> = Vec::new();
        {
            let mut iter = conn
                .scan_match::<_, String>(keys.pattern())
                .await
                .expect("scan");
            while let Some(key) = futures::StreamExt::next(&mut iter).await {
                found.push(key.expect("key"));
            }
        }
        for key in &found {
            let _: () = conn.del(key).await.expect("del");
        }
    }
}

impl Drop for Fixture {
    /// A test that failed before its cleanup: delete its keys all the same (blocking, best
    /// effort), so failures leave nothing behind either.
    fn drop(&mut self) {
        let Some(keys) = self.redis_keys.take() else {
            return;
        };
        let Ok(mut conn) = client().get_connection() else {
            return;
        };
        let found: Vec<String> = match redis::Commands::scan_match(&mut conn, keys.pattern()) {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        for key in found {
            let _: redis::RedisResult<()> = redis::Commands::del(&mut conn, key);
        }
    }
}

/// Instantiates each named test body twice: `on_redis::<name>` and `in_memory::<name>`. A name
/// may carry the `#[tokio::test]` arguments in parentheses, and attributes (`#[ignore]`) before.
macro_rules! conformance {
    ($($(#[$meta:meta])* $name:ident $(($($args:tt)*))?),* $(,)?) => {
        mod on_redis {
            $(
                #[tokio::test$(($($args)*))?]
                $(#[$meta])*
                async fn $name() {
                    super::$name(super::Fixture::redis().await).await;
                }
            )*
        }
        mod in_memory {
            $(
                #[tokio::test$(($($args)*))?]
                $(#[$meta])*
                async fn $name() {
                    super::$name(super::Fixture::memory()).await;
                }
            )*
        }
    };
}

conformance! {
    a_round_reads_a_rotating_window_of_ready_agents_in_proportion_to_its_tickets,
    offer_decline_reoffer_accept_round_trip,
    the_queue_is_in_rank_order_whatever_the_arrival_order,
    a_done_tombstone_blocks_a_late_older_waiting,
    moving_a_ticket_to_another_department_moves_it_between_queues,
    a_batch_of_syncs_leaves_the_state_the_same_syncs_one_by_one_leave,
    peek_reads_nothing_while_no_agent_is_ready,
    reserve_allows_one_pending_offer_per_ticket_and_per_agent,
    reserve_refuses_an_agent_whose_session_is_disconnected,
    reserve_refuses_an_agent_at_capacity_and_respects_voice,
    reserve_refuses_a_ticket_the_agent_declined_and_a_changed_version,
    an_expired_offer_returns_the_ticket_at_its_rank_and_two_in_a_row_set_the_agent_away,
    a_decline_resets_the_missed_count,
    an_agent_set_away_for_missed_offers_counts_afresh_when_back,
    a_claimed_offer_does_not_expire_before_its_hold_and_unclaim_restores_it,
    active_for_the_offered_agent_accepts_the_offer,
    active_for_another_agent_cancels_the_pending_offer,
    a_department_change_cancels_the_offer_and_a_re_rank_keeps_it,
    a_channel_change_cancels_the_offer,
    a_department_with_agents_but_no_tickets_is_listed,
    parking_frees_capacity_and_resuming_takes_it_again,
    returning_to_the_queue_frees_the_agent,
    done_frees_everything_and_leaves_a_tombstone,
    a_new_session_starts_away_not_ready_unless_available_is_asked,
    resuming_keeps_presence_and_the_offer_and_a_new_session_replaces_the_old,
    resuming_as_away_sets_not_ready_and_gives_up_the_offer,
    set_presence_checks_the_session_and_returns_the_offer_to_withdraw,
    lapsed_sessions_sign_the_agent_out_and_return_the_offer,
    renewals_extend_only_current_connected_sessions,
    disabling_an_agent_returns_its_pending_offer,
    the_ready_index_lists_exactly_the_agents_that_could_take_an_offer,
    waiting_reports_tiers_and_offer_counters,
    purge_drops_day_old_tombstones_and_hour_old_offers,
    racing_reservations_never_double_book_a_ticket_or_an_agent(
        flavor = "multi_thread",
        worker_threads = 4
    ),
    a_skills_change_cancels_the_offer_of_an_agent_lacking_them,
    a_tier_change_moves_the_ticket_between_tier_statistics,
    a_record_change_moves_the_agent_between_department_indexes,
    // A held accept racing a close, a transfer or a re-tier (section 8).
    a_confirm_older_than_the_ticket_does_not_occupy_the_agent,
    a_confirm_after_a_transfer_leaves_no_queue_entry_behind,
    a_confirm_after_a_re_tier_leaves_no_waiting_entry_behind,
}

fn at(secs: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(secs)
}

fn waiting(id: &str, department: &str, tier: Tier, version: i64, arrival_min: i64) -> TicketSync {
    let arrival = T0 + time::Duration::minutes(arrival_min);
    let due = TierTargets::default()
        .pickup_due(tier, arrival)
        .expect("in range");
    TicketSync {
        id: id.into(),
        version,
        state: RoutingState::Waiting,
        department: department.into(),
        channel: Channel::Chat,
        tier,
        data: TicketData {
            number: format!("T-{id}"),
            key_account: false,
            account_manager_id: None,
            preferred_agent_id: None,
            required_skills: Default::default(),
            escalation_level: 0,
            enqueue_time: arrival,
            pickup_due: due,
            subject: "s".into(),
            category: "c".into(),
            priority: 3,
            customer_id: String::new(),
            customer_name: String::new(),
        },
        agent_id: None,
        reservation_id: None,
    }
}

fn record(departments: &[&str], chat: u32) -> LiveRecord {
    LiveRecord {
        name: "Agent".into(),
        depts: departments
            .iter()
            .map(|d| ((*d).to_owned(), true))
            .collect(),
        team: None,
        skills: BTreeMap::new(),
        cap: [("chat".to_owned(), f64::from(chat))].into_iter().collect(),
        dis: false,
    }
}

async fn offer_decline_reoffer_accept_round_trip(fx: Fixture) {
    let live = fx.live();
    let synced = live
        .sync(&waiting("t1", "support", Tier::B, 1, 0), at(0))
        .await
        .expect("sync");
    assert!(synced.applied);
    assert_eq!(synced.position, Some(1));
    for agent in ["ana", "bo"] {
        let (resumed, _, withdraw) = live
            .open_session(
                agent,
                &record(&["support"], 2),
                None,
                &format!("s-{agent}"),
                "available",
                at(0),
                at(30),
            )
            .await
            .expect("open");
        assert!(!resumed);
        assert!(withdraw.is_none());
    }
    let (tickets, agents) = live.peek("support", 10, 10, &[]).await.expect("peek");
    assert_eq!(tickets.len(), 1);
    assert_eq!(agents.len(), 2);
    let made = live
        .reserve(
            "support",
            &[NewOffer {
                ticket_id: "t1".into(),
                ticket_version: "1".into(),
                agent_id: "ana".into(),
                reservation_id: "r1".into(),
                step: StepKind::Department,
            }],
            at(1),
            at(21),
        )
        .await
        .expect("reserve");
    assert_eq!(made, ["r1"]);
    // The same ticket cannot be offered twice.
    let again = live
        .reserve(
            "support",
            &[NewOffer {
                ticket_id: "t1".into(),
                ticket_version: "1".into(),
                agent_id: "bo".into(),
                reservation_id: "r2".into(),
                step: StepKind::Department,
            }],
            at(1),
            at(21),
        )
        .await
        .expect("reserve");
    assert!(again.is_empty());
    let (tickets, agents) = live.peek("support", 10, 10, &[]).await.expect("peek");
    assert!(tickets.is_empty(), "an offered ticket leaves the queue");
    assert!(agents.is_empty(), "no tickets, no agents read");

    match live
        .end_offer("r1", Outcome::Declined, Some("ana"), &["pending"], 2, at(2))
        .await
        .expect("decline")
    {
        Ended::Ended(o) => assert_eq!(o.st, "declined"),
        other => panic!("{other:?}"),
    }
    let t = live.ticket("t1").await.expect("read").expect("known");
    assert_eq!(t.st, "queued");
    assert!(t.dec.contains_key("ana"));
    let (tickets, agents) = live.peek("support", 10, 10, &[]).await.expect("peek");
    assert_eq!(tickets.len(), 1);
    assert_eq!(agents.len(), 2);

    let made = live
        .reserve(
            "support",
            &[NewOffer {
                ticket_id: "t1".into(),
                ticket_version: "1".into(),
                agent_id: "bo".into(),
                reservation_id: "r3".into(),
                step: StepKind::Department,
            }],
            at(3),
            at(23),
        )
        .await
        .expect("reserve");
    assert_eq!(made, ["r3"]);
    let offer = match live.claim("r3", "bo", at(4), at(34)).await.expect("claim") {
        Claim::Claimed(o) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        live.claim("r3", "ana", at(4), at(34)).await.expect("claim"),
        Claim::NotYours
    );
    live.confirm("r3", &offer, 2, at(5)).await.expect("confirm");
    let t = live.ticket("t1").await.expect("read").expect("known");
    assert_eq!((t.st.as_str(), t.agent.as_deref()), ("active", Some("bo")));
    let bo = live.agent("bo").await.expect("read").expect("known");
    assert_eq!(bo.tk.len(), 1);
    assert!(bo.offer.is_none());
    assert!(matches!(
        live.claim("r3", "bo", at(6), at(36)).await.expect("claim"),
        Claim::AlreadyAccepted(_)
    ));

    // The relay's SyncTicket ACTIVE at the new version changes nothing.
    let mut active = waiting("t1", "support", Tier::B, 2, 0);
    active.state = RoutingState::Active;
    active.agent_id = Some("bo".into());
    active.reservation_id = Some("r3".into());
    let s = live.sync(&active, at(7)).await.expect("sync");
    assert!(!s.applied);
    // Resolved: capacity freed, tombstone kept.
    let mut done = active.clone();
    done.version = 3;
    done.state = RoutingState::Done;
    assert!(live.sync(&done, at(8)).await.expect("sync").applied);
    let bo = live.agent("bo").await.expect("read").expect("known");
    assert!(bo.tk.is_empty());
    assert_eq!(bo.idle, Some(time_ms(at(8))));
    assert!(
        !live
            .sync(&waiting("t1", "support", Tier::B, 2, 0), at(9))
            .await
            .expect("sync")
            .applied
    );
    let w = live
        .waiting(&["support".into()], at(9), 60_000)
        .await
        .expect("stats");
    assert_eq!(w[0].tiers[1].waiting, 0);
    fx.cleanup().await;
}

fn time_ms(t: OffsetDateTime) -> f64 {
    (t.unix_timestamp_nanos() / 1_000_000) as f64
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A lease far beyond any test's times, so sessions stay connected unless a test says otherwise.
const LEASE: i64 = 3600;

/// A record serving `departments` with the given capacity per channel name.
fn record_caps(departments: &[&str], caps: &[(&str, u32)]) -> LiveRecord {
    let mut r = record(departments, 0);
    r.cap = caps
        .iter()
        .map(|(c, n)| ((*c).to_owned(), f64::from(*n)))
        .collect();
    r
}

/// Opens a new session, AVAILABLE and connected until `at(LEASE)`; the session id is `s-<id>`.
async fn sign_in(live: &dyn LiveState, agent: &str, rec: &LiveRecord) {
    let (resumed, session, withdraw) = live
        .open_session(
            agent,
            rec,
            None,
            &format!("s-{agent}"),
            "available",
            at(0),
            at(LEASE),
        )
        .await
        .expect("open session");
    assert!(!resumed);
    assert_eq!(session, format!("s-{agent}"));
    assert!(withdraw.is_none());
}

fn offer(ticket: &str, version: i64, agent: &str, rid: &str) -> NewOffer {
    NewOffer {
        ticket_id: ticket.into(),
        ticket_version: version.to_string(),
        agent_id: agent.into(),
        reservation_id: rid.into(),
        step: StepKind::Department,
    }
}

/// Reserves one offer made at `at(secs)`, expiring 20 s later; whether it was made.
async fn reserve1(live: &dyn LiveState, o: NewOffer, secs: i64) -> bool {
    let rid = o.reservation_id.clone();
    let made = live
        .reserve("support", &[o], at(secs), at(secs + 20))
        .await
        .expect("reserve");
    assert!(made.is_empty() || made == [rid.clone()], "{made:?}");
    made == [rid]
}

async fn sync(live: &dyn LiveState, s: &TicketSync, secs: i64) -> Synced {
    live.sync(s, at(secs)).await.expect("sync")
}

/// `base` at `version` in `state`, assigned to `agent` (for ACTIVE and PARKED).
fn moved(base: &TicketSync, version: i64, state: RoutingState, agent: Option<&str>) -> TicketSync {
    let mut s = base.clone();
    s.version = version;
    s.state = state;
    s.agent_id = agent.map(str::to_owned);
    s.reservation_id = None;
    s
}

fn voice(mut s: TicketSync) -> TicketSync {
    s.channel = Channel::Voice;
    s
}

async fn head(live: &dyn LiveState, department: &str) -> Vec<String> {
    let (ids, len) = live.queue_head(department, 100).await.expect("queue head");
    assert_eq!(ids.len() as u64, len);
    ids
}

async fn agent(live: &dyn LiveState, id: &str) -> LiveAgent {
    live.agent(id)
        .await
        .expect("read agent")
        .expect("agent known")
}

async fn ticket(live: &dyn LiveState, id: &str) -> LiveTicket {
    live.ticket(id)
        .await
        .expect("read ticket")
        .expect("ticket known")
}

async fn offer_of(live: &dyn LiveState, rid: &str) -> LiveOffer {
    live.offer(rid)
        .await
        .expect("read offer")
        .expect("offer known")
}

/// The agents a dispatch round of `department` would read (ready ones, plus team members of
/// `teams`, plus agents the waiting tickets name); none while nobody is ready anywhere, when
/// `peek` reads nothing. Needs a waiting ticket in the department.
async fn peeked_agents(live: &dyn LiveState, department: &str, teams: &[&str]) -> BTreeSet<String> {
    let (tickets, agents) = live.peek(department, 10, 100, teams).await.expect("peek");
    if tickets.is_empty() {
        let (head, _) = live.queue_head(department, 1).await.expect("queue head");
        assert!(
            !head.is_empty(),
            "peek reads agents only with tickets waiting"
        );
        assert!(agents.is_empty());
    }
    agents.into_iter().map(|(id, _)| id).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn ended(e: Ended) -> LiveOffer {
    match e {
        Ended::Ended(o) => o,
        other => panic!("expected the offer to end, got {other:?}"),
    }
}

/// Expires `rid` at `at(secs)` as the expiry sweep does (away after 2 missed).
async fn expire(live: &dyn LiveState, rid: &str, secs: i64) -> Ended {
    live.end_offer(
        rid,
        Outcome::Expired,
        None,
        &["pending", "accepting"],
        2,
        at(secs),
    )
    .await
    .expect("expire")
}

async fn due(live: &dyn LiveState, secs: i64) -> Vec<String> {
    live.due_offers(at(secs), 100).await.expect("due offers")
}

// ---------------------------------------------------------------------------------------------
// 1. Queues and SyncTicket versions
// ---------------------------------------------------------------------------------------------

async fn the_queue_is_in_rank_order_whatever_the_arrival_order(fx: Fixture) {
    let live = fx.live();
    // (id, tier, arrival minutes) in arrival order, and the 1-based position each takes.
    // Default targets: A 15 min, B 60 min, C 4 h; the pickup due time decides, then enqueue.
    let arrivals = [
        ("c-new", Tier::C, 0, 1),      // due +240
        ("a-new", Tier::A, 30, 1),     // due +45
        ("b-late", Tier::B, -10, 2),   // due +50
        ("c-early", Tier::C, -200, 1), // due +40
        ("a-tie", Tier::A, 35, 4),     // due +50 like b-late, enqueued later: behind it
        ("a-old", Tier::A, 0, 1),      // due +15
        ("b-early", Tier::B, -30, 2),  // due +30
    ];
    for (id, tier, arrival, position) in arrivals {
        let s = sync(live, &waiting(id, "support", tier, 1, arrival), 0).await;
        assert!(s.applied, "{id}");
        assert_eq!(s.version, 1);
        assert_eq!(s.position, Some(position), "{id}");
        assert!(s.withdrawn_offer.is_none());
    }
    let order = [
        "a-old", "b-early", "c-early", "a-new", "b-late", "a-tie", "c-new",
    ];
    assert_eq!(head(live, "support").await, order);
    for (i, id) in order.iter().enumerate() {
        let t = ticket(live, id).await;
        assert_eq!(t.st, "queued");
        assert_eq!(live.rank(&t).await.expect("rank"), Some(i as u64 + 1));
    }
    let (first_two, len) = live.queue_head("support", 2).await.expect("head");
    assert_eq!(first_two, &order[..2]);
    assert_eq!(len, 7);

    // A newer version re-ranks: one escalation puts the last ticket first.
    let mut escalated = waiting("c-new", "support", Tier::C, 2, 0);
    escalated.data.escalation_level = 1;
    let s = sync(live, &escalated, 1).await;
    assert_eq!((s.applied, s.version, s.position), (true, 2, Some(1)));
    assert_eq!(head(live, "support").await[0], "c-new");
    assert_eq!(
        head(live, "support").await.len(),
        7,
        "re-ranked, not duplicated"
    );

    // An equal or older version is ignored and answers the version held (and the position).
    for version in [2, 1] {
        let s = sync(live, &waiting("c-new", "support", Tier::C, version, 0), 2).await;
        assert_eq!(
            (s.applied, s.version, s.position),
            (false, 2, Some(1)),
            "version {version}"
        );
    }
    assert_eq!(head(live, "support").await[0], "c-new");
    assert_eq!(ticket(live, "c-new").await.v, "2");
    fx.cleanup().await;
}

async fn a_done_tombstone_blocks_a_late_older_waiting(fx: Fixture) {
    let live = fx.live();
    let w = waiting("t1", "support", Tier::B, 1, 0);
    sync(live, &waiting("t0", "support", Tier::A, 1, 0), 0).await;
    assert_eq!(sync(live, &w, 0).await.position, Some(2));
    let s = sync(live, &moved(&w, 2, RoutingState::Done, None), 1).await;
    assert_eq!((s.applied, s.version, s.position), (true, 2, None));
    assert_eq!(head(live, "support").await, ["t0"]);
    let t = ticket(live, "t1").await;
    assert_eq!((t.st.as_str(), t.v.as_str()), ("removed", "2"));

    // The WAITING of version 1 arrives late: ignored.
    let s = sync(live, &w, 2).await;
    assert_eq!((s.applied, s.version, s.position), (false, 2, None));
    assert_eq!(head(live, "support").await, ["t0"]);
    assert_eq!(ticket(live, "t1").await.st, "removed");
    // A newer one (a reopened ticket) comes back.
    let s = sync(live, &moved(&w, 3, RoutingState::Waiting, None), 3).await;
    assert_eq!((s.applied, s.version, s.position), (true, 3, Some(2)));
    assert_eq!(head(live, "support").await, ["t0", "t1"]);
    fx.cleanup().await;
}

async fn moving_a_ticket_to_another_department_moves_it_between_queues(fx: Fixture) {
    let live = fx.live();
    for (id, arrival) in [("t1", 0), ("t2", 1), ("t3", 2)] {
        sync(live, &waiting(id, "support", Tier::B, 1, arrival), 0).await;
    }
    sync(live, &waiting("b1", "billing", Tier::B, 1, 5), 0).await;
    let s = sync(live, &waiting("t2", "billing", Tier::B, 2, 1), 1).await;
    assert_eq!((s.applied, s.position), (true, Some(1)));
    assert_eq!(head(live, "support").await, ["t1", "t3"]);
    assert_eq!(head(live, "billing").await, ["t2", "b1"]);
    assert_eq!(ticket(live, "t2").await.dept.as_deref(), Some("billing"));
    // An older call naming the old department is ignored, with the new department's position.
    let s = sync(live, &waiting("t2", "support", Tier::B, 1, 1), 2).await;
    assert_eq!((s.applied, s.version, s.position), (false, 2, Some(1)));
    assert_eq!(head(live, "support").await, ["t1", "t3"]);
    // The waiting statistics moved too.
    let w = live
        .waiting(&["support".into(), "billing".into()], at(2), 60_000)
        .await
        .expect("waiting");
    assert_eq!((w[0].tiers[1].waiting, w[1].tiers[1].waiting), (2, 2));
    assert_eq!(
        live.departments().await.expect("departments"),
        ["billing", "support"]
    );
    fx.cleanup().await;
}

/// A rebuild syncs a page of tickets at once (`sync_many`): each sync must answer and change
/// the state exactly as the same syncs sent one by one, stale versions included.
async fn a_batch_of_syncs_leaves_the_state_the_same_syncs_one_by_one_leave(fx: Fixture) {
    let batched = fx.sibling().await;
    for live in [fx.live(), batched.live()] {
        sign_in(live, "ana", &record(&["support", "billing"], 3)).await;
        for (id, dept, tier, arrival) in [
            ("t1", "support", Tier::B, 0),
            ("t2", "support", Tier::A, 5),
            ("t3", "billing", Tier::C, 0),
            ("t4", "support", Tier::B, 1),
        ] {
            sync(live, &waiting(id, dept, tier, 1, arrival), 0).await;
        }
        let gone = waiting("t5", "support", Tier::B, 3, 0);
        sync(live, &moved(&gone, 3, RoutingState::Done, None), 0).await;
        assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    }
    let mut escalated = waiting("t4", "support", Tier::B, 2, 1);
    escalated.data.escalation_level = 1;
    let mut invalid = waiting("t6", "support", Tier::B, 1, 0);
    invalid.version = 0;
    let page = vec![
        waiting("n1", "support", Tier::C, 1, 10),
        waiting("n2", "billing", Tier::A, 1, 12),
        // The version held already: ignored, with its position.
        waiting("t2", "support", Tier::A, 1, 5),
        escalated,
        // Older than the one just before it in the same page.
        waiting("t4", "support", Tier::B, 1, 1),
        // Older than the tombstone.
        waiting("t5", "support", Tier::B, 2, 0),
        // Closes the offered ticket: the offer is withdrawn.
        moved(
            &waiting("t1", "support", Tier::B, 2, 0),
            2,
            RoutingState::Done,
            None,
        ),
        invalid,
        waiting("n3", "support", Tier::B, 1, -30),
        // Moved away and back within the page: on Redis the second names the keys read before
        // the page (billing), finds the ticket in support and is re-sent.
        waiting("t3", "support", Tier::C, 2, 0),
        waiting("t3", "billing", Tier::C, 3, 0),
    ];
    let mut one_by_one = Vec::new();
    for s in &page {
        one_by_one.push(fx.live().sync(s, at(2)).await);
    }
    let batch = batched
        .live()
        .sync_many(&page, at(2))
        .await
        .expect("sync_many");
    assert_eq!(batch.len(), page.len());
    for (i, (single, many)) in one_by_one.iter().zip(&batch).enumerate() {
        match (single, many) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "sync {i} ({})", page[i].id),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("sync {i}: one by one {a:?}, in a batch {b:?}"),
        }
    }
    let answer = |i: usize| match &batch[i] {
        Ok(s) => (s.applied, s.version, s.position, s.withdrawn_offer.clone()),
        Err(e) => panic!("sync {i}: {e}"),
    };
    assert_eq!(answer(2), (false, 1, Some(1), None), "t2 held");
    assert_eq!(answer(3), (true, 2, Some(1), None), "t4 escalated");
    assert_eq!(answer(4), (false, 2, Some(1), None), "t4 stale");
    assert_eq!(answer(5), (false, 3, None, None), "t5 tombstone");
    assert_eq!(answer(6), (true, 2, None, Some("r1".into())), "t1 closed");
    assert!(batch[7].is_err(), "version 0 is refused");
    assert!(answer(10).0, "t3 back in billing");

    let ids: Vec<String> = ["t1", "t2", "t3", "t4", "t5", "t6", "n1", "n2", "n3"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let departments = vec!["billing".to_owned(), "support".to_owned()];
    let mut states = Vec::new();
    for live in [fx.live(), batched.live()] {
        let tickets = live.tickets(&ids).await.expect("tickets");
        let mut ranks = Vec::new();
        for (_, t) in &tickets {
            ranks.push(live.rank(t).await.expect("rank"));
        }
        states.push(format!(
            "{tickets:?}\n{ranks:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            live.queue_head("support", 100).await.expect("head"),
            live.queue_head("billing", 100).await.expect("head"),
            live.waiting(&departments, at(2), 60_000)
                .await
                .expect("waiting"),
            live.departments().await.expect("departments"),
            live.agent("ana").await.expect("agent"),
            live.offer("r1").await.expect("offer"),
        ));
    }
    assert_eq!(states[0], states[1], "one by one (left), batched (right)");
    assert_eq!(head(batched.live(), "billing").await, ["n2", "t3"]);
    assert_eq!(
        head(batched.live(), "support").await,
        ["t4", "t2", "n3", "n1"]
    );
    fx.cleanup().await;
    batched.cleanup().await;
}

/// A dispatch round reads `per_ticket` ready agents per ticket found (at least `least`, at
/// most `most`) from a window that starts at `rotation` modulo the index's size and wraps
/// round, so every ready agent gets its turn however many there are; it says when the index
/// held more than it read.
async fn a_round_reads_a_rotating_window_of_ready_agents_in_proportion_to_its_tickets(fx: Fixture) {
    let live = fx.live();
    let agents: Vec<String> = (0..10).map(|i| format!("agent-{i}")).collect();
    for agent in &agents {
        sign_in(live, agent, &record(&["support"], 1)).await;
    }
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    let read = |per_ticket, least, rotation| AgentRead {
        most: 6,
        per_ticket,
        least,
        rotation,
    };
    let ids = |p: &tierline_routing::live::state::Peeked| -> Vec<String> {
        p.agents.iter().map(|(id, _)| id.clone()).collect()
    };
    // One ticket, two agents a ticket, at least three: three, from the 8th, wrapping round.
    let p = live
        .peek_round("support", 10, read(2, 3, 7), &[])
        .await
        .expect("peek");
    assert_eq!(p.tickets.len(), 1);
    assert_eq!(ids(&p), ["agent-7", "agent-8", "agent-9"]);
    assert!(p.partial);
    let p = live
        .peek_round("support", 10, read(2, 3, 19), &[])
        .await
        .expect("peek");
    assert_eq!(ids(&p), ["agent-9", "agent-0", "agent-1"], "wraps round");
    // Two tickets at four a ticket: eight, capped at six.
    sync(live, &waiting("t2", "support", Tier::B, 1, 1), 0).await;
    let p = live
        .peek_round("support", 10, read(4, 1, 5), &[])
        .await
        .expect("peek");
    assert_eq!(
        ids(&p),
        [
            "agent-5", "agent-6", "agent-7", "agent-8", "agent-9", "agent-0"
        ]
    );
    // Every ready agent fits: all of them from the start, nothing left unread.
    let all = AgentRead {
        most: 20,
        per_ticket: 0,
        least: 1,
        rotation: 13,
    };
    let p = live
        .peek_round("support", 10, all, &[])
        .await
        .expect("peek");
    assert_eq!(ids(&p), agents);
    assert!(!p.partial);
}

/// A deep queue with every agent busy must not cost a read of its head on every change: with
/// nobody ready anywhere no offer can be made, so `peek` reads nothing. The estimate's reads
/// (ready agents, queued tickets up to a score) are O(log n) too.
async fn peek_reads_nothing_while_no_agent_is_ready(fx: Fixture) {
    let live = fx.live();
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    sync(live, &waiting("t2", "support", Tier::A, 1, 10), 0).await;
    let (tickets, agents) = live.peek("support", 10, 10, &[]).await.expect("peek");
    assert!(tickets.is_empty() && agents.is_empty(), "nobody ready");
    // Someone ready in another department: the head is read (a ticket may name them).
    sign_in(live, "ana", &record(&["billing"], 1)).await;
    let (tickets, agents) = live.peek("support", 10, 10, &[]).await.expect("peek");
    assert_eq!(tickets.len(), 2);
    assert!(agents.is_empty());
    assert_eq!(
        live.ready_agents("billing", 10).await.expect("ready"),
        ["ana"]
    );
    assert!(
        live.ready_agents("support", 10)
            .await
            .expect("ready")
            .is_empty()
    );
    // t2 (A, due at +25 min) ranks before t1 (B, due at +60 min).
    let score_of = |minutes: i64| {
        let t = T0 + time::Duration::minutes(minutes);
        tierline_routing::domain::queue::RankKey::new(0, t, t, "").score() as i64
    };
    for (minutes, ahead) in [(0, 0), (25, 1), (59, 1), (60, 2), (600, 2)] {
        assert_eq!(
            live.queued_before("support", score_of(minutes))
                .await
                .expect("count"),
            ahead,
            "due at +{minutes} min"
        );
    }
    assert_eq!(
        live.queued_before("billing", i64::MAX)
            .await
            .expect("count"),
        0
    );
    fx.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Offers: what `reserve` refuses
// ---------------------------------------------------------------------------------------------

async fn reserve_allows_one_pending_offer_per_ticket_and_per_agent(fx: Fixture) {
    let live = fx.live();
    for id in ["t1", "t2"] {
        sync(live, &waiting(id, "support", Tier::B, 1, 0), 0).await;
    }
    for a in ["ana", "bo"] {
        sign_in(live, a, &record(&["support"], 3)).await;
    }
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    assert!(
        !reserve1(live, offer("t1", 1, "bo", "r2"), 1).await,
        "the ticket has a pending offer"
    );
    assert!(
        !reserve1(live, offer("t2", 1, "ana", "r3"), 1).await,
        "the agent has a pending offer"
    );
    // Within one call as well: the second offer of the same ticket or agent is skipped.
    let made = live
        .reserve(
            "support",
            &[
                offer("t2", 1, "bo", "r4"),
                offer("t2", 1, "bo", "r5"),
                offer("t1", 1, "bo", "r6"),
            ],
            at(2),
            at(22),
        )
        .await
        .expect("reserve");
    assert_eq!(made, ["r4"]);
    assert!(live.offer("r2").await.expect("read").is_none());
    assert_eq!(agent(live, "ana").await.offer.as_deref(), Some("r1"));
    assert_eq!(ticket(live, "t1").await.offer.as_deref(), Some("r1"));
    let r1 = offer_of(live, "r1").await;
    assert_eq!(
        (r1.st.as_str(), r1.agent.as_str(), r1.ticket.as_str()),
        ("pending", "ana", "t1")
    );
    assert_eq!((r1.made, r1.exp), (time_ms(at(1)), time_ms(at(21))));
    assert_eq!(
        (r1.dept.as_str(), r1.tier.as_str(), r1.tv.as_str()),
        ("support", "B", "1")
    );
    assert!(head(live, "support").await.is_empty());
    fx.cleanup().await;
}

async fn reserve_refuses_an_agent_whose_session_is_disconnected(fx: Fixture) {
    let live = fx.live();
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    sign_in(live, "ana", &record(&["support"], 2)).await;
    // The stream broke: the session lives on for the grace period, disconnected.
    assert!(
        live.touch_session("ana", "s-ana", false, at(1), at(31))
            .await
            .expect("touch")
    );
    let a = agent(live, "ana").await;
    assert!(!a.conn && a.has_session(time_ms(at(2)) as i64));
    assert_eq!(a.pres, "available");
    assert!(!reserve1(live, offer("t1", 1, "ana", "r1"), 2).await);
    assert!(peeked_agents(live, "support", &[]).await.is_empty());
    // Reconnected: offers again.
    assert!(
        live.touch_session("ana", "s-ana", true, at(3), at(LEASE))
            .await
            .expect("touch")
    );
    assert_eq!(peeked_agents(live, "support", &[]).await, set(&["ana"]));
    assert!(reserve1(live, offer("t1", 1, "ana", "r2"), 4).await);
    // A session past its lease is not connected even if the flag says so.
    sync(live, &waiting("t2", "support", Tier::B, 1, 0), 5).await;
    sign_in(live, "bo", &record(&["support"], 2)).await;
    assert!(
        live.touch_session("bo", "s-bo", true, at(5), at(10))
            .await
            .expect("touch")
    );
    assert!(!reserve1(live, offer("t2", 1, "bo", "r3"), 10).await);
    fx.cleanup().await;
}

async fn reserve_refuses_an_agent_at_capacity_and_respects_voice(fx: Fixture) {
    let live = fx.live();
    let caps = record_caps(&["support"], &[("chat", 1), ("voice", 1)]);
    for a in ["ana", "bo", "cy"] {
        sign_in(live, a, &caps).await;
    }
    // ana works a chat (its whole chat capacity), cy a call.
    let chat = waiting("busy-chat", "support", Tier::B, 1, 0);
    sync(live, &moved(&chat, 1, RoutingState::Active, Some("ana")), 0).await;
    let call = voice(waiting("busy-call", "support", Tier::B, 1, 0));
    sync(live, &moved(&call, 1, RoutingState::Active, Some("cy")), 0).await;

    sync(live, &waiting("t-chat", "support", Tier::B, 1, 0), 0).await;
    sync(live, &voice(waiting("t-call", "support", Tier::B, 1, 0)), 0).await;
    assert!(
        !reserve1(live, offer("t-chat", 1, "ana", "r1"), 1).await,
        "at chat capacity"
    );
    assert!(
        !reserve1(live, offer("t-call", 1, "ana", "r2"), 1).await,
        "a call needs an agent with no active ticket"
    );
    assert!(
        !reserve1(live, offer("t-chat", 1, "cy", "r3"), 1).await,
        "a call takes all capacity"
    );
    assert!(!reserve1(live, offer("t-call", 1, "cy", "r4"), 1).await);
    assert_eq!(peeked_agents(live, "support", &[]).await, set(&["bo"]));
    assert!(reserve1(live, offer("t-call", 1, "bo", "r5"), 1).await);
    // Parking ana's chat frees the capacity.
    sync(live, &moved(&chat, 2, RoutingState::Parked, Some("ana")), 2).await;
    assert!(reserve1(live, offer("t-chat", 1, "ana", "r6"), 3).await);
    fx.cleanup().await;
}

async fn reserve_refuses_a_ticket_the_agent_declined_and_a_changed_version(fx: Fixture) {
    let live = fx.live();
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    sync(live, &waiting("t2", "support", Tier::B, 1, 1), 0).await;
    for a in ["ana", "bo"] {
        sign_in(live, a, &record(&["support"], 3)).await;
    }
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    ended(
        live.end_offer("r1", Outcome::Declined, Some("ana"), &["pending"], 2, at(2))
            .await
            .expect("decline"),
    );
    assert!(
        !reserve1(live, offer("t1", 1, "ana", "r2"), 3).await,
        "declined"
    );
    assert!(reserve1(live, offer("t1", 1, "bo", "r3"), 3).await);

    // The round read t2 at version 1; it was re-synced (escalated) before the reserve.
    let mut newer = waiting("t2", "support", Tier::B, 2, 1);
    newer.data.escalation_level = 1;
    sync(live, &newer, 4).await;
    assert!(
        !reserve1(live, offer("t2", 1, "ana", "r4"), 5).await,
        "version mismatch"
    );
    assert!(reserve1(live, offer("t2", 2, "ana", "r5"), 5).await);
    // Away and disabled agents get nothing either.
    sync(live, &waiting("t3", "support", Tier::B, 1, 2), 6).await;
    sign_in(live, "cy", &record(&["support"], 3)).await;
    sign_in(live, "di", &record(&["support"], 3)).await;
    assert!(matches!(
        live.set_presence("cy", "away", "break", "", at(6))
            .await
            .expect("presence"),
        PresenceSet::Set(_, None)
    ));
    let mut disabled = record(&["support"], 3);
    disabled.dis = true;
    assert_eq!(
        live.put_record("di", &disabled, at(6)).await.expect("put"),
        None
    );
    assert!(!reserve1(live, offer("t3", 1, "cy", "r6"), 7).await, "away");
    assert!(
        !reserve1(live, offer("t3", 1, "di", "r7"), 7).await,
        "disabled"
    );
    fx.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Expiry, declines and accept holds
// ---------------------------------------------------------------------------------------------

async fn an_expired_offer_returns_the_ticket_at_its_rank_and_two_in_a_row_set_the_agent_away(
    fx: Fixture,
) {
    let live = fx.live();
    for (id, tier) in [("t1", Tier::A), ("t2", Tier::B), ("t3", Tier::C)] {
        sync(live, &waiting(id, "support", tier, 1, 0), 0).await;
    }
    sign_in(live, "ana", &record(&["support"], 2)).await;
    assert!(reserve1(live, offer("t2", 1, "ana", "r1"), 1).await);
    assert_eq!(head(live, "support").await, ["t1", "t3"]);

    assert!(due(live, 20).await.is_empty());
    assert_eq!(
        expire(live, "r1", 20).await,
        Ended::NotPending("pending".into()),
        "not before its expiry"
    );
    assert_eq!(due(live, 21).await, ["r1"]);
    let o = ended(expire(live, "r1", 21).await);
    assert_eq!((o.st.as_str(), o.ended), ("expired", Some(time_ms(at(21)))));
    assert!(due(live, 21).await.is_empty());
    assert_eq!(
        head(live, "support").await,
        ["t1", "t2", "t3"],
        "original rank"
    );
    let t2 = ticket(live, "t2").await;
    assert_eq!((t2.st.as_str(), t2.offer.as_deref()), ("queued", None));
    assert!(t2.dec.contains_key("ana"), "not offered to ana again");
    assert_eq!(live.rank(&t2).await.expect("rank"), Some(2));
    let a = agent(live, "ana").await;
    assert_eq!(
        (a.missed, a.pres.as_str(), a.offer.as_deref()),
        (1.0, "available", None)
    );
    // Expiring again changes nothing.
    assert_eq!(
        expire(live, "r1", 22).await,
        Ended::NotPending("expired".into())
    );
    assert!(!reserve1(live, offer("t2", 1, "ana", "r2"), 22).await);

    // The second miss in a row: AWAY, NOT_RESPONDING.
    assert!(reserve1(live, offer("t1", 1, "ana", "r3"), 22).await);
    ended(expire(live, "r3", 42).await);
    let a = agent(live, "ana").await;
    assert_eq!(a.presence(), Presence::Away(AwayReason::NotResponding));
    assert_eq!(a.ps, Some(time_ms(at(42))));
    assert_eq!(a.missed, 0.0, "set away: the count starts afresh");
    assert!(!reserve1(live, offer("t3", 1, "ana", "r4"), 43).await);
    let counts = a.offer_counts(time_ms(at(43)) as i64);
    assert_eq!((counts.offered, counts.expired), (2, 2));
    assert_eq!(head(live, "support").await, ["t1", "t2", "t3"]);
    fx.cleanup().await;
}

async fn a_decline_resets_the_missed_count(fx: Fixture) {
    let live = fx.live();
    for (id, arrival) in [("t1", 0), ("t2", 1), ("t3", 2)] {
        sync(live, &waiting(id, "support", Tier::B, 1, arrival), 0).await;
    }
    sign_in(live, "bo", &record(&["support"], 2)).await;
    assert!(reserve1(live, offer("t1", 1, "bo", "r1"), 1).await);
    ended(expire(live, "r1", 21).await);
    assert_eq!(agent(live, "bo").await.missed, 1.0);
    assert!(reserve1(live, offer("t2", 1, "bo", "r2"), 22).await);
    let o = ended(
        live.end_offer("r2", Outcome::Declined, Some("bo"), &["pending"], 2, at(23))
            .await
            .expect("decline"),
    );
    assert_eq!(o.st, "declined");
    // Declining again answers the same offer; another agent may not decline it.
    assert!(matches!(
        live.end_offer("r2", Outcome::Declined, Some("bo"), &["pending"], 2, at(24))
            .await
            .expect("decline"),
        Ended::Unchanged(_)
    ));
    assert_eq!(agent(live, "bo").await.missed, 0.0);
    assert!(reserve1(live, offer("t3", 1, "bo", "r3"), 24).await);
    ended(expire(live, "r3", 44).await);
    let a = agent(live, "bo").await;
    assert_eq!((a.missed, a.pres.as_str()), (1.0, "available"));
    fx.cleanup().await;
}

async fn an_agent_set_away_for_missed_offers_counts_afresh_when_back(fx: Fixture) {
    let live = fx.live();
    for (id, arrival) in [("t1", 0), ("t2", 1), ("t3", 2)] {
        sync(live, &waiting(id, "support", Tier::B, 1, arrival), 0).await;
    }
    sign_in(live, "ana", &record(&["support"], 2)).await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    ended(expire(live, "r1", 21).await);
    assert!(reserve1(live, offer("t2", 1, "ana", "r2"), 22).await);
    ended(expire(live, "r2", 42).await);
    assert_eq!(
        agent(live, "ana").await.presence(),
        Presence::Away(AwayReason::NotResponding)
    );
    // The desktop reconnects within its lease asking AVAILABLE: the session resumes.
    let (resumed, _, _) = live
        .open_session(
            "ana",
            &record(&["support"], 2),
            Some("s-ana"),
            "s-new",
            "available",
            at(50),
            at(LEASE),
        )
        .await
        .expect("resume");
    assert!(resumed);
    assert_eq!(agent(live, "ana").await.pres, "available");
    // One miss is not two in a row.
    assert!(reserve1(live, offer("t3", 1, "ana", "r3"), 51).await);
    ended(expire(live, "r3", 71).await);
    let a = agent(live, "ana").await;
    assert_eq!((a.pres.as_str(), a.missed), ("available", 1.0));
    fx.cleanup().await;
}

async fn a_claimed_offer_does_not_expire_before_its_hold_and_unclaim_restores_it(fx: Fixture) {
    let live = fx.live();
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    sync(live, &waiting("t2", "support", Tier::B, 1, 1), 0).await;
    sign_in(live, "ana", &record(&["support"], 2)).await;
    sign_in(live, "bo", &record(&["support"], 2)).await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await); // expires at 21
    let claimed = match live.claim("r1", "ana", at(5), at(35)).await.expect("claim") {
        Claim::Claimed(o) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(claimed.st, "accepting");
    assert!(due(live, 25).await.is_empty(), "held past its expiry");
    assert_eq!(
        expire(live, "r1", 25).await,
        Ended::NotPending("accepting".into())
    );
    // The ticket service could not be reached: pending again, with its original expiry.
    live.unclaim("r1").await.expect("unclaim");
    let o = offer_of(live, "r1").await;
    assert_eq!((o.st.as_str(), o.exp), ("pending", time_ms(at(21))));
    assert_eq!(due(live, 25).await, ["r1"]);
    assert_eq!(
        live.claim("r1", "ana", at(25), at(55))
            .await
            .expect("claim"),
        Claim::NotPending("expired".into()),
        "a pending offer past its expiry cannot be claimed"
    );
    assert_eq!(ended(expire(live, "r1", 25).await).st, "expired");
    assert_eq!(head(live, "support").await, ["t1", "t2"]);
    // Unclaiming an offer that is not held does nothing.
    live.unclaim("r1").await.expect("unclaim");
    assert_eq!(offer_of(live, "r1").await.st, "expired");

    // A hold runs out too (a router that died mid-accept): then the offer expires.
    assert!(reserve1(live, offer("t2", 1, "bo", "r2"), 30).await); // expires at 50
    assert!(matches!(
        live.claim("r2", "bo", at(31), at(40)).await.expect("claim"),
        Claim::Claimed(_)
    ));
    assert_eq!(
        due(live, 40).await,
        ["r2"],
        "the hold is due before the expiry"
    );
    assert_eq!(ended(expire(live, "r2", 40).await).st, "expired");
    assert_eq!(
        live.claim("r9", "bo", at(41), at(50)).await.expect("claim"),
        Claim::Missing
    );
    fx.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// 4. SyncTicket transitions of assigned tickets
// ---------------------------------------------------------------------------------------------

async fn active_for_the_offered_agent_accepts_the_offer(fx: Fixture) {
    let live = fx.live();
    let w = waiting("t1", "support", Tier::A, 1, 0);
    sync(live, &w, 0).await;
    sync(live, &waiting("t0", "support", Tier::B, 1, 0), 0).await;
    sign_in(live, "ana", &record(&["support"], 2)).await;
    // One miss first, so the accept can reset it.
    assert!(reserve1(live, offer("t0", 1, "ana", "r0"), 0).await);
    ended(expire(live, "r0", 20).await);
    assert_eq!(agent(live, "ana").await.missed, 1.0);
    assert_eq!(agent(live, "ana").await.idle, Some(time_ms(at(0))));

    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 21).await);
    // The ticket service's SyncTicket for the assignment arrives before the router's confirm.
    let mut active = moved(&w, 2, RoutingState::Active, Some("ana"));
    active.reservation_id = Some("r1".into());
    let s = sync(live, &active, 22).await;
    assert_eq!(
        (s.applied, s.position, s.withdrawn_offer),
        (true, None, None)
    );
    let o = offer_of(live, "r1").await;
    assert_eq!(
        (o.st.as_str(), o.ended),
        ("accepted", Some(time_ms(at(22))))
    );
    assert!(due(live, 100).await.is_empty());
    let t = ticket(live, "t1").await;
    assert_eq!(
        (
            t.st.as_str(),
            t.agent.as_deref(),
            t.rid.as_deref(),
            t.offer.as_deref()
        ),
        ("active", Some("ana"), Some("r1"), None)
    );
    let a = agent(live, "ana").await;
    let tk = a.tk.get("t1").expect("assignment");
    assert_eq!(
        (tk.c.as_str(), tk.p, tk.rid.as_deref()),
        ("chat", false, Some("r1"))
    );
    assert_eq!(tk.at, time_ms(at(22)));
    assert_eq!((a.idle, a.la, a.cnt), (None, Some(time_ms(at(22))), 1.0));
    assert_eq!(a.offer, None);
    assert_eq!(a.missed, 0.0, "an accept is an answer");
    assert_eq!(a.offer_counts(time_ms(at(22)) as i64).accepted, 1);
    // The router's own confirm afterwards is a repeat.
    assert_eq!(
        live.confirm("r1", &o, 2, at(23)).await.expect("confirm"),
        time_ms(at(22)) as i64
    );
    assert_eq!(agent(live, "ana").await.cnt, 1.0);
    let w = live
        .waiting(&["support".into()], at(23), 60_000)
        .await
        .expect("waiting");
    assert_eq!((w[0].tiers[0].waiting, w[0].tiers[0].offered), (0, 0));
    let c = OutcomeCounts::sum(&w[0].stats.b, time_ms(at(23)) as i64);
    assert_eq!((c.offered, c.accepted, c.expired), (2, 1, 1));
    fx.cleanup().await;
}

async fn active_for_another_agent_cancels_the_pending_offer(fx: Fixture) {
    let live = fx.live();
    let w = waiting("t1", "support", Tier::B, 1, 0);
    sync(live, &w, 0).await;
    sync(live, &waiting("t2", "support", Tier::B, 1, 1), 0).await;
    sign_in(live, "ana", &record(&["support"], 2)).await;
    sign_in(live, "bo", &record(&["support"], 2)).await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    assert_eq!(peeked_agents(live, "support", &[]).await, set(&["bo"]));
    let s = sync(live, &moved(&w, 2, RoutingState::Active, Some("bo")), 2).await;
    assert_eq!(s.withdrawn_offer.as_deref(), Some("r1"));
    let o = offer_of(live, "r1").await;
    assert_eq!(
        (o.st.as_str(), o.why.as_deref(), o.ended),
        ("cancelled", Some("ticket_gone"), Some(time_ms(at(2))))
    );
    let a = agent(live, "ana").await;
    assert_eq!((a.offer.as_deref(), a.missed), (None, 0.0));
    assert!(a.tk.is_empty());
    assert_eq!(
        peeked_agents(live, "support", &[]).await,
        set(&["ana", "bo"])
    );
    let b = agent(live, "bo").await;
    assert!(b.tk.contains_key("t1"));
    assert_eq!(b.cnt, 1.0);
    let t = ticket(live, "t1").await;
    assert_eq!((t.st.as_str(), t.agent.as_deref()), ("active", Some("bo")));
    assert!(due(live, 100).await.is_empty());
    fx.cleanup().await;
}

/// A chat ticket turned into a call needs other capacity: the pending offer is withdrawn.
async fn a_channel_change_cancels_the_offer(fx: Fixture) {
    let live = fx.live();
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    sign_in(live, "ana", &record(&["support"], 2)).await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    let mut call = waiting("t1", "support", Tier::B, 2, 0);
    call.channel = Channel::Voice;
    let s = sync(live, &call, 2).await;
    assert_eq!(s.withdrawn_offer.as_deref(), Some("r1"));
    let o = offer_of(live, "r1").await;
    assert_eq!(
        (o.st.as_str(), o.why.as_deref()),
        ("cancelled", Some("ticket_changed"))
    );
    assert_eq!(ticket(live, "t1").await.st, "queued");
    fx.cleanup().await;
}

/// A department is known from its first agent, not only from its first ticket.
async fn a_department_with_agents_but_no_tickets_is_listed(fx: Fixture) {
    let live = fx.live();
    assert!(live.departments().await.expect("read").is_empty());
    live.put_record("ana", &record(&["returns"], 1), at(0))
        .await
        .expect("record");
    sign_in(live, "bo", &record(&["support"], 1)).await;
    assert_eq!(
        live.departments().await.expect("read"),
        ["returns", "support"]
    );
    fx.cleanup().await;
}

async fn a_department_change_cancels_the_offer_and_a_re_rank_keeps_it(fx: Fixture) {
    let live = fx.live();
    sync(live, &waiting("t0", "support", Tier::A, 1, 0), 0).await;
    let w = waiting("t1", "support", Tier::B, 1, 0);
    sync(live, &w, 0).await;
    sign_in(live, "ana", &record(&["support"], 2)).await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);

    // Escalated in the same department: the offer stands; the ticket stays out of the queue.
    let mut escalated = waiting("t1", "support", Tier::B, 2, 0);
    escalated.data.escalation_level = 1;
    let s = sync(live, &escalated, 2).await;
    assert_eq!(
        (s.applied, s.position, s.withdrawn_offer),
        (true, None, None)
    );
    assert_eq!(offer_of(live, "r1").await.st, "pending");
    assert_eq!(ticket(live, "t1").await.st, "offered");
    assert_eq!(head(live, "support").await, ["t0"]);
    // Declined, it comes back at its new rank.
    ended(
        live.end_offer("r1", Outcome::Declined, Some("ana"), &["pending"], 2, at(3))
            .await
            .expect("decline"),
    );
    assert_eq!(head(live, "support").await, ["t1", "t0"]);

    // Moved to billing while offered: the offer is withdrawn.
    sync(live, &waiting("t2", "support", Tier::B, 1, 5), 4).await;
    assert!(reserve1(live, offer("t2", 1, "ana", "r2"), 4).await);
    let s = sync(live, &waiting("t2", "billing", Tier::B, 2, 5), 5).await;
    assert_eq!(
        (s.applied, s.position, s.withdrawn_offer.as_deref()),
        (true, Some(1), Some("r2"))
    );
    let o = offer_of(live, "r2").await;
    assert_eq!(
        (o.st.as_str(), o.why.as_deref()),
        ("cancelled", Some("ticket_changed"))
    );
    assert_eq!(agent(live, "ana").await.offer, None);
    assert_eq!(head(live, "billing").await, ["t2"]);
    assert_eq!(head(live, "support").await, ["t1", "t0"]);
    let t = ticket(live, "t2").await;
    assert_eq!((t.st.as_str(), t.offer.as_deref()), ("queued", None));
    assert_eq!(peeked_agents(live, "support", &[]).await, set(&["ana"]));
    let w = live
        .waiting(&["support".into(), "billing".into()], at(6), 60_000)
        .await
        .expect("waiting");
    assert_eq!((w[0].tiers[1].offered, w[1].tiers[1].waiting), (0, 1));
    fx.cleanup().await;
}

async fn parking_frees_capacity_and_resuming_takes_it_again(fx: Fixture) {
    let live = fx.live();
    sign_in(live, "ana", &record(&["support"], 1)).await;
    sync(live, &waiting("other", "support", Tier::B, 1, 0), 0).await;
    let w = waiting("t1", "support", Tier::B, 1, 0);
    // Assigned outside the router: learnt from SyncTicket.
    sync(live, &moved(&w, 1, RoutingState::Active, Some("ana")), 1).await;
    let a = agent(live, "ana").await;
    assert_eq!((a.idle, a.cnt, a.la), (None, 1.0, Some(time_ms(at(1)))));
    assert!(
        peeked_agents(live, "support", &[]).await.is_empty(),
        "at capacity"
    );

    let s = sync(live, &moved(&w, 2, RoutingState::Parked, Some("ana")), 2).await;
    assert!(s.applied);
    let a = agent(live, "ana").await;
    assert!(a.tk["t1"].p);
    assert_eq!((a.idle, a.parked()), (Some(time_ms(at(2))), 1));
    assert_eq!(ticket(live, "t1").await.st, "parked");
    assert_eq!(peeked_agents(live, "support", &[]).await, set(&["ana"]));

    sync(live, &moved(&w, 3, RoutingState::Active, Some("ana")), 3).await;
    let a = agent(live, "ana").await;
    assert!(!a.tk["t1"].p);
    assert_eq!(a.tk["t1"].at, time_ms(at(1)), "the same assignment");
    assert_eq!((a.idle, a.cnt, a.la), (None, 1.0, Some(time_ms(at(1)))));
    assert!(peeked_agents(live, "support", &[]).await.is_empty());
    fx.cleanup().await;
}

async fn returning_to_the_queue_frees_the_agent(fx: Fixture) {
    let live = fx.live();
    sign_in(live, "ana", &record(&["support"], 1)).await;
    sync(live, &waiting("t0", "support", Tier::A, 1, 0), 0).await;
    let w = waiting("t1", "support", Tier::B, 1, 0);
    sync(live, &moved(&w, 1, RoutingState::Active, Some("ana")), 1).await;
    let s = sync(live, &moved(&w, 2, RoutingState::Waiting, None), 5).await;
    assert_eq!((s.applied, s.position), (true, Some(2)));
    let a = agent(live, "ana").await;
    assert!(a.tk.is_empty());
    assert_eq!(a.idle, Some(time_ms(at(5))));
    let t = ticket(live, "t1").await;
    assert_eq!((t.st.as_str(), t.agent.as_deref()), ("queued", None));
    assert!(t.dec.is_empty());
    assert_eq!(head(live, "support").await, ["t0", "t1"]);
    assert_eq!(peeked_agents(live, "support", &[]).await, set(&["ana"]));
    assert!(reserve1(live, offer("t1", 2, "ana", "r1"), 6).await);
    fx.cleanup().await;
}

async fn done_frees_everything_and_leaves_a_tombstone(fx: Fixture) {
    let live = fx.live();
    sign_in(live, "ana", &record(&["support"], 1)).await;
    sign_in(live, "bo", &record(&["support"], 1)).await;
    sync(live, &waiting("t0", "support", Tier::C, 1, 0), 0).await;
    let w1 = waiting("t1", "support", Tier::B, 1, 0);
    sync(live, &w1, 0).await;
    let w2 = waiting("t2", "support", Tier::B, 1, 0);
    sync(live, &moved(&w2, 1, RoutingState::Active, Some("bo")), 0).await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);

    let s = sync(live, &moved(&w1, 2, RoutingState::Done, None), 2).await;
    assert_eq!(
        (s.applied, s.withdrawn_offer.as_deref()),
        (true, Some("r1"))
    );
    let o = offer_of(live, "r1").await;
    assert_eq!(
        (o.st.as_str(), o.why.as_deref()),
        ("cancelled", Some("ticket_gone"))
    );
    assert_eq!(agent(live, "ana").await.offer, None);
    let s = sync(live, &moved(&w2, 2, RoutingState::Done, None), 3).await;
    assert_eq!((s.applied, s.withdrawn_offer), (true, None));
    let b = agent(live, "bo").await;
    assert!(b.tk.is_empty());
    assert_eq!(b.idle, Some(time_ms(at(3))));
    for id in ["t1", "t2"] {
        let t = ticket(live, id).await;
        assert_eq!((t.st.as_str(), t.v.as_str()), ("removed", "2"), "{id}");
        assert!(t.agent.is_none() && t.dept.is_none());
    }
    assert_eq!(head(live, "support").await, ["t0"]);
    assert_eq!(
        peeked_agents(live, "support", &[]).await,
        set(&["ana", "bo"])
    );
    let w = live
        .waiting(&["support".into()], at(3), 60_000)
        .await
        .expect("waiting");
    assert_eq!((w[0].tiers[1].waiting, w[0].tiers[1].offered), (0, 0));
    assert_eq!(w[0].tiers[2].waiting, 1);
    // Late, older calls change nothing.
    assert!(
        !sync(live, &moved(&w2, 1, RoutingState::Active, Some("bo")), 4)
            .await
            .applied
    );
    assert!(agent(live, "bo").await.tk.is_empty());
    assert!(!sync(live, &w1, 4).await.applied);
    assert_eq!(head(live, "support").await, ["t0"]);
    fx.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Sessions and presence
// ---------------------------------------------------------------------------------------------

async fn a_new_session_starts_away_not_ready_unless_available_is_asked(fx: Fixture) {
    let live = fx.live();
    let rec = record(&["support"], 2);
    let open =
        |asked: Option<&'static str>, new: &'static str, initial: &'static str, now, lease| {
            let rec = rec.clone();
            async move {
                live.open_session("ana", &rec, asked, new, initial, at(now), at(lease))
                    .await
                    .expect("open session")
            }
        };
    // UNSPECIFIED on a first session.
    let (resumed, session, _) = open(None, "s1", "keep", 0, 30).await;
    assert_eq!((resumed, session.as_str()), (false, "s1"));
    let a = agent(live, "ana").await;
    assert_eq!(a.presence(), Presence::Away(AwayReason::NotReady));
    assert_eq!(
        (a.sess.as_deref(), a.conn, a.lease),
        (Some("s1"), true, Some(time_ms(at(30))))
    );
    // An unknown id starts a new session; AVAILABLE asked.
    let (resumed, session, _) = open(Some("bogus"), "s2", "available", 1, 31).await;
    assert_eq!((resumed, session.as_str()), (false, "s2"));
    assert_eq!(agent(live, "ana").await.presence(), Presence::Available);
    // The current id, but lapsed (not yet swept): a new session, away and not ready again.
    let (resumed, session, _) = open(Some("s2"), "s3", "keep", 40, 70).await;
    assert_eq!((resumed, session.as_str()), (false, "s3"));
    assert_eq!(
        agent(live, "ana").await.presence(),
        Presence::Away(AwayReason::NotReady)
    );
    // A new session while the old one lives (no id given) replaces it, not ready too.
    open(None, "s4", "available", 41, 71).await;
    let (resumed, session, _) = open(None, "s5", "keep", 42, 72).await;
    assert_eq!((resumed, session.as_str()), (false, "s5"));
    assert_eq!(
        agent(live, "ana").await.presence(),
        Presence::Away(AwayReason::NotReady)
    );
    fx.cleanup().await;
}

async fn resuming_keeps_presence_and_the_offer_and_a_new_session_replaces_the_old(fx: Fixture) {
    let live = fx.live();
    let rec = record(&["support"], 2);
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    let (_, s1, _) = live
        .open_session("ana", &rec, None, "s1", "available", at(0), at(30))
        .await
        .expect("open");
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    assert!(
        live.touch_session("ana", &s1, false, at(2), at(32))
            .await
            .expect("touch")
    );
    // Back within the grace period, presence unspecified.
    let (resumed, session, withdraw) = live
        .open_session("ana", &rec, Some("s1"), "s-unused", "keep", at(10), at(40))
        .await
        .expect("resume");
    assert_eq!((resumed, session.as_str(), withdraw), (true, "s1", None));
    let a = agent(live, "ana").await;
    assert_eq!(a.presence(), Presence::Available);
    assert_eq!(a.ps, Some(time_ms(at(0))), "presence unchanged");
    assert_eq!(
        (a.conn, a.lease, a.offer.as_deref()),
        (true, Some(time_ms(at(40))), Some("r1"))
    );
    assert_eq!(offer_of(live, "r1").await.st, "pending");

    // Another desktop opens a new session: it replaces s1 and the pending offer must go.
    let (resumed, session, withdraw) = live
        .open_session("ana", &rec, None, "s2", "available", at(11), at(41))
        .await
        .expect("open");
    assert_eq!(
        (resumed, session.as_str(), withdraw.as_deref()),
        (false, "s2", Some("r1"))
    );
    assert_eq!(agent(live, "ana").await.sess.as_deref(), Some("s2"));
    assert!(
        !live
            .touch_session("ana", "s1", true, at(12), at(42))
            .await
            .expect("touch"),
        "the old session is gone"
    );
    assert_eq!(agent(live, "ana").await.lease, Some(time_ms(at(41))));
    fx.cleanup().await;
}

/// Resuming as AWAY (the desktop asks for NOT_READY) is going away: presence changes and the
/// pending offer is handed back for withdrawal; resuming AWAY when already away keeps the reason.
async fn resuming_as_away_sets_not_ready_and_gives_up_the_offer(fx: Fixture) {
    let live = fx.live();
    let rec = record(&["support"], 2);
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    let (_, s1, _) = live
        .open_session("ana", &rec, None, "s1", "available", at(0), at(30))
        .await
        .expect("open");
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    let (resumed, _, withdraw) = live
        .open_session("ana", &rec, Some(&s1), "s-unused", "away", at(5), at(35))
        .await
        .expect("resume");
    assert_eq!((resumed, withdraw.as_deref()), (true, Some("r1")));
    let a = agent(live, "ana").await;
    assert_eq!(a.presence(), Presence::Away(AwayReason::NotReady));
    assert_eq!(a.ps, Some(time_ms(at(5))));
    // Already away: nothing changes, nothing to withdraw.
    let (resumed, _, withdraw) = live
        .open_session("ana", &rec, Some(&s1), "s-unused", "away", at(6), at(36))
        .await
        .expect("resume");
    assert_eq!((resumed, withdraw), (true, None));
    assert_eq!(agent(live, "ana").await.ps, Some(time_ms(at(5))));
    fx.cleanup().await;
}

async fn set_presence_checks_the_session_and_returns_the_offer_to_withdraw(fx: Fixture) {
    let live = fx.live();
    let rec = record(&["support"], 2);
    assert_eq!(
        live.set_presence("nobody", "available", "", "", at(0))
            .await
            .expect("presence"),
        PresenceSet::Missing
    );
    // Known from its record, no session.
    assert_eq!(
        live.put_record("ana", &rec, at(0)).await.expect("put"),
        None
    );
    assert_eq!(agent(live, "ana").await.pres, "offline");
    assert_eq!(
        live.set_presence("ana", "available", "", "", at(0))
            .await
            .expect("presence"),
        PresenceSet::NoSession
    );
    let mut disabled = rec.clone();
    disabled.dis = true;
    live.put_record("bo", &disabled, at(0)).await.expect("put");
    assert_eq!(
        live.set_presence("bo", "available", "", "", at(0))
            .await
            .expect("presence"),
        PresenceSet::Disabled
    );

    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    sync(live, &waiting("t2", "support", Tier::B, 1, 1), 0).await;
    sign_in(live, "ana", &rec).await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    match live
        .set_presence("ana", "away", "break", "coffee", at(2))
        .await
        .expect("presence")
    {
        PresenceSet::Set(a, withdraw) => {
            assert_eq!(withdraw.as_deref(), Some("r1"));
            assert_eq!(a.presence(), Presence::Away(AwayReason::Break));
            assert_eq!(
                (a.note.as_deref(), a.ps),
                (Some("coffee"), Some(time_ms(at(2))))
            );
        }
        other => panic!("{other:?}"),
    }
    // The router withdraws it.
    ended(
        live.end_offer(
            "r1",
            Outcome::Cancelled("presence_changed"),
            None,
            &["pending"],
            0,
            at(2),
        )
        .await
        .expect("withdraw"),
    );
    assert!(peeked_agents(live, "support", &[]).await.is_empty());
    assert!(matches!(
        live.set_presence("ana", "available", "", "", at(3))
            .await
            .expect("presence"),
        PresenceSet::Set(_, None)
    ));
    assert_eq!(peeked_agents(live, "support", &[]).await, set(&["ana"]));
    assert!(reserve1(live, offer("t2", 1, "ana", "r2"), 4).await);
    match live
        .set_presence("ana", "offline", "", "", at(5))
        .await
        .expect("presence")
    {
        PresenceSet::Set(a, withdraw) => {
            assert_eq!(withdraw.as_deref(), Some("r2"));
            assert_eq!(
                (a.pres.as_str(), a.sess.as_deref(), a.conn),
                ("offline", None, false)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        live.set_presence("ana", "available", "", "", at(6))
            .await
            .expect("presence"),
        PresenceSet::NoSession
    );
    fx.cleanup().await;
}

async fn lapsed_sessions_sign_the_agent_out_and_return_the_offer(fx: Fixture) {
    let live = fx.live();
    let rec = record(&["support"], 2);
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    sync(live, &waiting("t2", "support", Tier::B, 1, 1), 0).await;
    let assigned = waiting("t3", "support", Tier::B, 1, 0);
    for a in ["ana", "bo"] {
        live.open_session(a, &rec, None, &format!("s-{a}"), "available", at(0), at(30))
            .await
            .expect("open");
    }
    sync(
        live,
        &moved(&assigned, 1, RoutingState::Active, Some("ana")),
        0,
    )
    .await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    // bo's desktop renews its lease; ana's broke.
    assert!(
        live.touch_session("bo", "s-bo", true, at(20), at(50))
            .await
            .expect("touch")
    );
    assert!(
        live.touch_session("ana", "s-ana", false, at(5), at(30))
            .await
            .expect("touch")
    );
    assert!(
        live.lapse_sessions(at(29), 10)
            .await
            .expect("lapse")
            .is_empty()
    );
    assert_eq!(agent(live, "ana").await.pres, "available");
    assert_eq!(
        live.lapse_sessions(at(30), 10).await.expect("lapse"),
        ["r1"]
    );
    let a = agent(live, "ana").await;
    assert_eq!(
        (a.pres.as_str(), a.sess.as_deref(), a.conn, a.lease),
        ("offline", None, false, None)
    );
    assert!(a.tk.contains_key("t3"), "assignments stay with the agent");
    assert_eq!(agent(live, "bo").await.pres, "available");
    assert!(
        live.lapse_sessions(at(31), 10)
            .await
            .expect("lapse")
            .is_empty()
    );
    assert_eq!(
        live.lapse_sessions(at(50), 10).await.expect("lapse"),
        Vec::<String>::new()
    );
    assert_eq!(agent(live, "bo").await.pres, "offline");
    fx.cleanup().await;
}

/// A batch renewal extends the leases of current, connected sessions only: a desktop that
/// went away keeps its resume grace (a renewal read before the disconnect must not bring it
/// back), and a replaced or unknown session is reported, not renewed.
async fn renewals_extend_only_current_connected_sessions(fx: Fixture) {
    let live = fx.live();
    let rec = record(&["support"], 2);
    for a in ["ana", "bo", "cy"] {
        live.open_session(a, &rec, None, &format!("s-{a}"), "available", at(0), at(30))
            .await
            .expect("open");
    }
    assert!(
        live.touch_session("bo", "s-bo", false, at(5), at(35))
            .await
            .expect("touch")
    );
    live.open_session("cy", &rec, None, "s-cy2", "available", at(6), at(36))
        .await
        .expect("replace");
    let batch: Vec<(String, String)> = [
        ("ana", "s-ana"),
        ("bo", "s-bo"),
        ("cy", "s-cy"),
        ("dan", "s-dan"),
    ]
    .iter()
    .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
    .collect();
    assert_eq!(
        live.renew_sessions(&batch, at(10), at(40))
            .await
            .expect("renew"),
        ["bo", "cy", "dan"]
    );
    let a = agent(live, "ana").await;
    assert_eq!((a.conn, a.lease), (true, Some(time_ms(at(40)))));
    let b = agent(live, "bo").await;
    assert_eq!((b.conn, b.lease), (false, Some(time_ms(at(35)))));
    assert_eq!(agent(live, "cy").await.lease, Some(time_ms(at(36))));
    assert!(
        live.renew_sessions(&[], at(10), at(40))
            .await
            .expect("renew")
            .is_empty()
    );
    // Past the old leases, only ana's renewed one holds.
    live.lapse_sessions(at(37), 10).await.expect("lapse");
    let states: Vec<(String, Option<String>)> = {
        let mut v = Vec::new();
        for id in ["ana", "bo", "cy"] {
            let a = agent(live, id).await;
            v.push((a.pres, a.sess));
        }
        v
    };
    assert_eq!(
        states,
        [
            ("available".to_owned(), Some("s-ana".to_owned())),
            ("offline".to_owned(), None),
            ("offline".to_owned(), None),
        ]
    );
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 37).await;
    assert_eq!(peeked_agents(live, "support", &[]).await, set(&["ana"]));
    fx.cleanup().await;
}

async fn disabling_an_agent_returns_its_pending_offer(fx: Fixture) {
    let live = fx.live();
    let rec = record(&["support"], 2);
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    sign_in(live, "ana", &rec).await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    // A record change that does not disable keeps the offer.
    let mut renamed = rec.clone();
    renamed.name = "Ana".into();
    assert_eq!(
        live.put_record("ana", &renamed, at(2)).await.expect("put"),
        None
    );
    let mut disabled = renamed.clone();
    disabled.dis = true;
    assert_eq!(
        live.put_record("ana", &disabled, at(3))
            .await
            .expect("put")
            .as_deref(),
        Some("r1")
    );
    ended(
        live.end_offer(
            "r1",
            Outcome::Cancelled("presence_changed"),
            None,
            &["pending"],
            0,
            at(3),
        )
        .await
        .expect("withdraw"),
    );
    let a = agent(live, "ana").await;
    assert!(a.rec.as_ref().is_some_and(|r| r.dis && r.name == "Ana"));
    assert!(peeked_agents(live, "support", &[]).await.is_empty());
    assert!(!reserve1(live, offer("t1", 1, "ana", "r2"), 4).await);
    // Enabled again: offers again (the session still runs).
    assert_eq!(
        live.put_record("ana", &renamed, at(5)).await.expect("put"),
        None
    );
    assert!(reserve1(live, offer("t1", 1, "ana", "r3"), 6).await);
    fx.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Indexes and statistics
// ---------------------------------------------------------------------------------------------

async fn the_ready_index_lists_exactly_the_agents_that_could_take_an_offer(fx: Fixture) {
    let live = fx.live();
    let chat_voice = record_caps(&["support"], &[("chat", 1), ("voice", 1)]);
    sync(live, &waiting("t0", "support", Tier::B, 1, 0), 0).await;
    sync(live, &waiting("t1", "support", Tier::B, 1, 1), 0).await;
    // Ready.
    sign_in(live, "ready", &chat_voice).await;
    // Full on chat but free for email: could take an email.
    sign_in(
        live,
        "email",
        &record_caps(&["support"], &[("chat", 1), ("email", 2)]),
    )
    .await;
    sync(
        live,
        &moved(
            &waiting("x-email", "support", Tier::B, 1, 0),
            1,
            RoutingState::Active,
            Some("email"),
        ),
        0,
    )
    .await;
    // Away.
    sign_in(live, "away", &chat_voice).await;
    live.set_presence("away", "away", "meal", "", at(0))
        .await
        .expect("away");
    // Disconnected.
    sign_in(live, "disc", &chat_voice).await;
    live.touch_session("disc", "s-disc", false, at(0), at(30))
        .await
        .expect("touch");
    // At capacity on every channel (voice: an active chat leaves no room for a call).
    sign_in(live, "full", &chat_voice).await;
    sync(
        live,
        &moved(
            &waiting("x-full", "support", Tier::B, 1, 0),
            1,
            RoutingState::Active,
            Some("full"),
        ),
        0,
    )
    .await;
    // On a call.
    sign_in(
        live,
        "call",
        &record_caps(&["support"], &[("chat", 3), ("voice", 1)]),
    )
    .await;
    sync(
        live,
        &moved(
            &voice(waiting("x-call", "support", Tier::B, 1, 0)),
            1,
            RoutingState::Active,
            Some("call"),
        ),
        0,
    )
    .await;
    // A pending offer.
    sign_in(live, "offered", &chat_voice).await;
    assert!(reserve1(live, offer("t0", 1, "offered", "r1"), 0).await);
    // Disabled.
    let mut disabled = chat_voice.clone();
    disabled.dis = true;
    sign_in(live, "disabled", &chat_voice).await;
    live.put_record("disabled", &disabled, at(0))
        .await
        .expect("put");
    // Offline (record only), and no capacity at all.
    live.put_record("offline", &chat_voice, at(0))
        .await
        .expect("put");
    sign_in(live, "nocap", &record_caps(&["support"], &[])).await;
    // Another department, and another department in a team.
    sign_in(live, "billing", &record(&["billing"], 2)).await;
    let mut teamed = record(&["billing"], 2);
    teamed.team = Some("key".into());
    sign_in(live, "teamed", &teamed).await;

    assert_eq!(
        peeked_agents(live, "support", &[]).await,
        set(&["ready", "email"])
    );
    assert_eq!(
        peeked_agents(live, "support", &["key"]).await,
        set(&["ready", "email", "teamed"])
    );
    assert_eq!(
        peeked_agents(live, "support", &["nobody"]).await,
        set(&["ready", "email"])
    );
    let staff = live.staff("support", 100).await.expect("staff");
    assert_eq!(staff.len(), 10, "{staff:?}");
    assert_eq!(
        live.staff("billing", 100).await.expect("staff"),
        ["billing", "teamed"]
    );

    // Agents a waiting ticket names are read even when busy (their steps depend on them).
    let mut named = waiting("t2", "support", Tier::B, 1, 2);
    named.data.account_manager_id = Some("full".into());
    named.data.preferred_agent_id = Some("away".into());
    sync(live, &named, 1).await;
    assert_eq!(
        peeked_agents(live, "support", &[]).await,
        set(&["ready", "email", "full", "away"])
    );
    let (tickets, _) = live.peek("support", 1, 10, &[]).await.expect("peek");
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].0, "t1");
    fx.cleanup().await;
}

async fn waiting_reports_tiers_and_offer_counters(fx: Fixture) {
    let live = fx.live();
    let now = 0;
    // (id, tier, arrival minutes): A targets 15 min, B 60 min, C 4 h.
    for (id, tier, arrival) in [
        ("a-late", Tier::A, -20), // due -5 min: past due
        ("a-soon", Tier::A, -10), // due +5 min: at risk within 10 min
        ("b-ok", Tier::B, 0),     // due +60 min
        ("b-off", Tier::B, -1),   // due +59 min; offered below
        ("c", Tier::C, -30),      // due +210 min
    ] {
        sync(live, &waiting(id, "support", tier, 1, arrival), now).await;
    }
    for a in ["ana", "bo"] {
        sign_in(live, a, &record(&["support"], 2)).await;
    }
    assert!(reserve1(live, offer("b-off", 1, "ana", "r1"), 1).await);
    ended(
        live.end_offer("r1", Outcome::Declined, Some("ana"), &["pending"], 2, at(2))
            .await
            .expect("decline"),
    );
    assert!(reserve1(live, offer("b-off", 1, "bo", "r2"), 3).await);
    assert!(reserve1(live, offer("c", 1, "ana", "r3"), 3).await);
    ended(expire(live, "r3", 23).await);

    let w = live
        .waiting(&["support".into(), "empty".into()], at(30), 10 * 60_000)
        .await
        .expect("waiting");
    let minute = |m: i64| time_ms(T0 + time::Duration::minutes(m)) as i64;
    let [a, b, c] = w[0].tiers;
    assert_eq!(
        (
            a.waiting,
            a.offered,
            a.past_due,
            a.at_risk,
            a.oldest_enqueue_ms
        ),
        (2, 0, 1, 1, Some(minute(-20)))
    );
    assert_eq!(
        (
            b.waiting,
            b.offered,
            b.past_due,
            b.at_risk,
            b.oldest_enqueue_ms
        ),
        (2, 1, 0, 0, Some(minute(-1)))
    );
    assert_eq!(
        (
            c.waiting,
            c.offered,
            c.past_due,
            c.at_risk,
            c.oldest_enqueue_ms
        ),
        (1, 0, 0, 0, Some(minute(-30)))
    );
    assert_eq!(
        OutcomeCounts::sum(&w[0].stats.b, time_ms(at(30)) as i64),
        OutcomeCounts {
            offered: 3,
            accepted: 0,
            declined: 1,
            expired: 1,
            cancelled: 0
        }
    );
    assert_eq!(w[0].stats.off.get("B"), Some(&1.0));
    // Outside the counter window, nothing counts.
    assert_eq!(
        OutcomeCounts::sum(&w[0].stats.b, time_ms(at(30 * 60)) as i64),
        OutcomeCounts::default()
    );
    assert_eq!(w[1].tiers, [Default::default(); 3]);
    assert!(w[1].stats.b.is_empty());
    // Later, more are past due.
    let w = live
        .waiting(&["support".into()], at(6 * 60), 10 * 60_000)
        .await
        .expect("waiting");
    assert_eq!((w[0].tiers[0].past_due, w[0].tiers[0].at_risk), (2, 0));
    fx.cleanup().await;
}

async fn purge_drops_day_old_tombstones_and_hour_old_offers(fx: Fixture) {
    let live = fx.live();
    let day = 24 * 3600;
    let w = waiting("t1", "support", Tier::B, 1, 0);
    sync(live, &w, 0).await;
    sync(live, &waiting("t2", "support", Tier::B, 1, 1), 0).await;
    sign_in(live, "ana", &record(&["support"], 2)).await;
    assert!(reserve1(live, offer("t2", 1, "ana", "r1"), 1).await);
    ended(
        live.end_offer("r1", Outcome::Declined, Some("ana"), &["pending"], 2, at(2))
            .await
            .expect("decline"),
    );
    sync(live, &moved(&w, 2, RoutingState::Done, None), 10).await;

    assert_eq!(live.purge(at(2 + 3599), 100).await.expect("purge"), 0);
    assert!(live.offer("r1").await.expect("read").is_some());
    assert_eq!(live.purge(at(2 + 3601), 100).await.expect("purge"), 1);
    assert!(live.offer("r1").await.expect("read").is_none());
    assert_eq!(ticket(live, "t1").await.st, "removed");
    assert!(
        !sync(live, &w, day).await.applied,
        "the tombstone still holds"
    );
    assert_eq!(live.purge(at(10 + day + 1), 100).await.expect("purge"), 1);
    assert!(live.ticket("t1").await.expect("read").is_none());
    assert_eq!(
        ticket(live, "t2").await.st,
        "queued",
        "waiting tickets stay"
    );
    assert_eq!(live.purge(at(10 + day + 2), 100).await.expect("purge"), 0);
    fx.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Concurrent reservations
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so no dependency is needed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

async fn racing_reservations_never_double_book_a_ticket_or_an_agent(fx: Fixture) {
    const TASKS: usize = 8;
    const ROUNDS: usize = 40;
    const TICKETS: usize = 20;
    const AGENTS: usize = 10;
    let live = fx.live();
    for t in 0..TICKETS {
        sync(
            live,
            &waiting(&format!("t{t}"), "support", Tier::B, 1, t as i64),
            0,
        )
        .await;
    }
    for a in 0..AGENTS {
        sign_in(live, &format!("a{a}"), &record(&["support"], 3)).await;
    }
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let live = Arc::clone(&fx.live);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((task as u64 + 1) * 0x1000_0001));
            let (mut generated, mut made_total) = (Vec::new(), 0);
            for round in 0..ROUNDS {
                let batch: Vec<NewOffer> = (0..6)
                    .map(|i| {
                        offer(
                            &format!("t{}", rng.below(TICKETS)),
                            1,
                            &format!("a{}", rng.below(AGENTS)),
                            &format!("r-{task}-{round}-{i}"),
                        )
                    })
                    .collect();
                generated.extend(batch.iter().map(|o| o.reservation_id.clone()));
                let made = live
                    .reserve("support", &batch, at(1), at(1000))
                    .await
                    .expect("reserve");
                made_total += made.len();
                // Withdraw about half of them so the race goes on.
                for rid in made {
                    if rng.below(2) == 0 {
                        live.end_offer(
                            &rid,
                            Outcome::Cancelled("ticket_changed"),
                            None,
                            &["pending"],
                            0,
                            at(2),
                        )
                        .await
                        .expect("withdraw");
                    }
                }
            }
            (generated, made_total)
        }));
    }
    let (mut generated, mut made_total) = (Vec::new(), 0);
    for t in tasks {
        let (g, m) = t.await.expect("task");
        generated.extend(g);
        made_total += m;
    }
    assert_eq!(generated.len(), TASKS * ROUNDS * 6);
    assert!(made_total > AGENTS, "the race made offers: {made_total}");

    let offers = live.offers(&generated).await.expect("offers");
    assert_eq!(
        offers.len(),
        made_total,
        "every offer made is stored, no other"
    );
    let mut by_ticket: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_agent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (rid, o) in &offers {
        assert!(o.st == "pending" || o.st == "cancelled", "{rid}: {}", o.st);
        if o.st == "pending" {
            by_ticket
                .entry(o.ticket.clone())
                .or_default()
                .push(rid.clone());
            by_agent
                .entry(o.agent.clone())
                .or_default()
                .push(rid.clone());
        }
    }
    for (t, rids) in &by_ticket {
        assert_eq!(rids.len(), 1, "ticket {t} has pending offers {rids:?}");
        assert_eq!(ticket(live, t).await.offer.as_ref(), Some(&rids[0]));
    }
    for (a, rids) in &by_agent {
        assert_eq!(rids.len(), 1, "agent {a} has pending offers {rids:?}");
        assert_eq!(agent(live, a).await.offer.as_ref(), Some(&rids[0]));
    }
    // The rest agrees: offered tickets are out of the queue, and the pending count is right.
    let ids: Vec<String> = (0..TICKETS).map(|t| format!("t{t}")).collect();
    let tickets = live.tickets(&ids).await.expect("tickets");
    let offered = tickets.iter().filter(|(_, t)| t.st == "offered").count();
    assert_eq!(offered, by_ticket.len());
    assert_eq!(head(live, "support").await.len(), TICKETS - offered);
    let w = live
        .waiting(&["support".into()], at(3), 60_000)
        .await
        .expect("waiting");
    assert_eq!(w[0].tiers[1].offered, offered as u64);
    let agent_ids: Vec<String> = (0..AGENTS).map(|a| format!("a{a}")).collect();
    for (id, a) in live.agents(&agent_ids).await.expect("agents") {
        if let Some(rid) = &a.offer {
            assert_eq!(by_agent.get(&id), Some(&vec![rid.clone()]));
        }
    }
    fx.cleanup().await;
}

async fn a_skills_change_cancels_the_offer_of_an_agent_lacking_them(fx: Fixture) {
    let live = fx.live();
    let mut german = record(&["support"], 2);
    german.skills.insert("language:de".into(), true);
    sign_in(live, "ana", &record(&["support"], 2)).await;
    sign_in(live, "bo", &german).await;
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    sync(live, &waiting("t2", "support", Tier::B, 1, 1), 0).await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    assert!(reserve1(live, offer("t2", 1, "bo", "r2"), 1).await);
    let needs_german = |id: &str, arrival| {
        let mut s = waiting(id, "support", Tier::B, 2, arrival);
        s.data.required_skills.insert("language:de".into());
        s
    };
    // ana lacks the skill now required: withdrawn, and the ticket is queued again.
    let s = sync(live, &needs_german("t1", 0), 2).await;
    assert_eq!(
        (s.withdrawn_offer.as_deref(), s.position),
        (Some("r1"), Some(1))
    );
    let o = offer_of(live, "r1").await;
    assert_eq!(
        (o.st.as_str(), o.why.as_deref()),
        ("cancelled", Some("ticket_changed"))
    );
    assert_eq!(agent(live, "ana").await.offer, None);
    // bo holds it: the offer stands.
    let s = sync(live, &needs_german("t2", 1), 2).await;
    assert_eq!((s.withdrawn_offer, s.position), (None, None));
    assert_eq!(offer_of(live, "r2").await.st, "pending");
    assert_eq!(head(live, "support").await, ["t1"]);
    fx.cleanup().await;
}

async fn a_tier_change_moves_the_ticket_between_tier_statistics(fx: Fixture) {
    let live = fx.live();
    sign_in(live, "ana", &record(&["support"], 2)).await;
    sync(live, &waiting("t1", "support", Tier::C, 1, 0), 0).await;
    sync(live, &waiting("t2", "support", Tier::C, 1, 0), 0).await;
    assert!(reserve1(live, offer("t2", 1, "ana", "r1"), 1).await);
    // The customers were resolved: both become tier A.
    for id in ["t1", "t2"] {
        assert!(
            sync(live, &waiting(id, "support", Tier::A, 2, 0), 2)
                .await
                .applied
        );
    }
    let w = live
        .waiting(&["support".into()], at(3), 60_000)
        .await
        .expect("waiting");
    let [a, _, c] = w[0].tiers;
    assert_eq!((a.waiting, a.offered, c.waiting, c.offered), (2, 1, 0, 0));
    assert_eq!(offer_of(live, "r1").await.tier, "A");
    // The offer ends in its new tier.
    ended(expire(live, "r1", 21).await);
    let w = live
        .waiting(&["support".into()], at(22), 60_000)
        .await
        .expect("waiting");
    assert_eq!((w[0].tiers[0].waiting, w[0].tiers[0].offered), (2, 0));
    assert_eq!(w[0].stats.off.get("C").copied().unwrap_or(0.0), 0.0);
    assert_eq!(head(live, "support").await, ["t1", "t2"]);
    fx.cleanup().await;
}

async fn a_record_change_moves_the_agent_between_department_indexes(fx: Fixture) {
    let live = fx.live();
    sync(live, &waiting("s1", "support", Tier::B, 1, 0), 0).await;
    sync(live, &waiting("b1", "billing", Tier::B, 1, 0), 0).await;
    sign_in(live, "ana", &record(&["support"], 2)).await;
    assert_eq!(peeked_agents(live, "support", &[]).await, set(&["ana"]));
    assert!(
        live.peek("billing", 10, 10, &[])
            .await
            .expect("peek")
            .1
            .is_empty()
    );
    let mut moved_rec = record(&["billing"], 2);
    moved_rec.team = Some("key".into());
    live.put_record("ana", &moved_rec, at(1))
        .await
        .expect("put");
    assert!(peeked_agents(live, "support", &[]).await.is_empty());
    assert_eq!(
        peeked_agents(live, "support", &["key"]).await,
        set(&["ana"])
    );
    assert_eq!(peeked_agents(live, "billing", &[]).await, set(&["ana"]));
    assert!(live.staff("support", 10).await.expect("staff").is_empty());
    assert_eq!(live.staff("billing", 10).await.expect("staff"), ["ana"]);
    // Leaving the team takes it out of the team index too.
    live.put_record("ana", &record(&["billing"], 2), at(2))
        .await
        .expect("put");
    assert!(peeked_agents(live, "support", &["key"]).await.is_empty());
    fx.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// 8. Accepts racing other changes: the ticket service decides, the live state stays clean
// ---------------------------------------------------------------------------------------------

/// The ticket closes (v3) after the assignment (v2) was recorded, and the relay delivers v3
/// before the router's confirm (SyncTicket may arrive out of order): the assignment is stale,
/// and the agent's capacity must not be taken by a removed ticket.
async fn a_confirm_older_than_the_ticket_does_not_occupy_the_agent(fx: Fixture) {
    let live = fx.live();
    let w = waiting("t1", "support", Tier::B, 1, 0);
    sync(live, &w, 0).await;
    sign_in(live, "ana", &record(&["support"], 1)).await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    let held = match live.claim("r1", "ana", at(2), at(32)).await.expect("claim") {
        Claim::Claimed(o) => o,
        other => panic!("{other:?}"),
    };
    // The ticket service assigned at v2 and the ticket was closed at v3; v3 arrives first.
    let s = sync(live, &moved(&w, 3, RoutingState::Done, None), 3).await;
    assert_eq!(s.withdrawn_offer.as_deref(), Some("r1"));
    live.confirm("r1", &held, 2, at(4)).await.expect("confirm");
    assert_eq!(ticket(live, "t1").await.st, "removed");
    let a = agent(live, "ana").await;
    assert!(a.tk.is_empty(), "stale assignment kept: {:?}", a.tk);
    sync(live, &waiting("t2", "support", Tier::B, 1, 1), 5).await;
    assert_eq!(peeked_agents(live, "support", &[]).await, set(&["ana"]));
    fx.cleanup().await;
}

/// While an accept is held, the ticket moves to billing (v2) and the ticket service then
/// records the assignment (v3; the router sends no expected version). The now active ticket
/// must leave billing's queue and waiting sets, not only the offer's department's.
async fn a_confirm_after_a_transfer_leaves_no_queue_entry_behind(fx: Fixture) {
    let live = fx.live();
    sync(live, &waiting("t1", "support", Tier::B, 1, 0), 0).await;
    sign_in(live, "ana", &record(&["support"], 2)).await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    let held = match live.claim("r1", "ana", at(2), at(32)).await.expect("claim") {
        Claim::Claimed(o) => o,
        other => panic!("{other:?}"),
    };
    let s = sync(live, &waiting("t1", "billing", Tier::B, 2, 0), 3).await;
    assert_eq!(s.withdrawn_offer.as_deref(), Some("r1"));
    live.confirm("r1", &held, 3, at(4)).await.expect("confirm");
    let t = ticket(live, "t1").await;
    assert_eq!(
        (t.st.as_str(), t.dept.as_deref()),
        ("active", Some("billing"))
    );
    assert!(head(live, "billing").await.is_empty(), "stale queue entry");
    let w = live
        .waiting(&["billing".into()], at(5), 60_000)
        .await
        .expect("waiting");
    assert_eq!(w[0].tiers[1].waiting, 0, "stale waiting entry");
    fx.cleanup().await;
}

/// The ticket is re-tiered (its offer kept) between the claim and the confirm: the caller's
/// offer names the old tier's keys; the ticket must still leave the new tier's waiting set.
async fn a_confirm_after_a_re_tier_leaves_no_waiting_entry_behind(fx: Fixture) {
    let live = fx.live();
    sync(live, &waiting("t1", "support", Tier::C, 1, 0), 0).await;
    sign_in(live, "ana", &record(&["support"], 2)).await;
    assert!(reserve1(live, offer("t1", 1, "ana", "r1"), 1).await);
    let held = match live.claim("r1", "ana", at(2), at(32)).await.expect("claim") {
        Claim::Claimed(o) => o,
        other => panic!("{other:?}"),
    };
    let s = sync(live, &waiting("t1", "support", Tier::A, 2, 0), 3).await;
    assert_eq!(s.withdrawn_offer, None, "a re-tier keeps the offer");
    assert_eq!(offer_of(live, "r1").await.tier, "A");
    live.confirm("r1", &held, 3, at(4)).await.expect("confirm");
    assert_eq!(ticket(live, "t1").await.st, "active");
    let w = live
        .waiting(&["support".into()], at(5), 60_000)
        .await
        .expect("waiting");
    assert_eq!(
        (w[0].tiers[0].waiting, w[0].tiers[2].waiting),
        (0, 0),
        "stale waiting entry"
    );
    fx.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// 9. Redis and memory side by side (Redis-only: it needs both)
// ---------------------------------------------------------------------------------------------

const TWIN_TICKETS: [&str; 8] = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"];
const TWIN_AGENTS: [&str; 6] = ["ana", "bo", "cy", "di", "ed", "flo"];
const TWIN_DEPTS: [&str; 2] = ["support", "billing"];
const TWIN_TEAM: &str = "key";

/// Both implementations answered alike; both failing counts as alike (the error variants
/// differ by design: no `Script` or `Unavailable` in memory).
fn alike<T: PartialEq + std::fmt::Debug>(
    what: &str,
    redis: Result<T, live::LiveError>,
    memory: Result<T, live::LiveError>,
) -> Option<T> {
    match (redis, memory) {
        (Ok(r), Ok(m)) => {
            assert_eq!(
                r, m,
                "{what}: redis (left) and memory (right) answer differently"
            );
            Some(r)
        }
        (Err(_), Err(_)) => None,
        (r, m) => panic!("{what}: redis answered {r:?}, memory {m:?}"),
    }
}

/// Calls the same method on both and checks they answer alike.
macro_rules! on_both {
    ($twin:ident, $what:expr, |$live:ident| $call:expr) => {{
        let redis = {
            let $live = $twin.redis.live();
            $call.await
        };
        let memory = {
            let $live = $twin.memory.live();
            $call.await
        };
        alike(&$what, redis, memory)
    }};
}

/// Everything a caller can read, as (what, value) pairs.
async fn readable(live: &dyn LiveState, secs: i64, rids: &[String]) -> Vec<(String, String)> {
    let owned = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut out = Vec::new();
    let tickets = live.tickets(&owned(&TWIN_TICKETS)).await.expect("tickets");
    for (id, t) in &tickets {
        out.push((format!("ticket {id}"), format!("{t:?}")));
        let rank = live.rank(t).await.expect("rank");
        out.push((format!("rank of {id}"), format!("{rank:?}")));
    }
    for (id, a) in live.agents(&owned(&TWIN_AGENTS)).await.expect("agents") {
        out.push((format!("agent {id}"), format!("{a:?}")));
    }
    for (id, o) in live.offers(rids).await.expect("offers") {
        out.push((format!("offer {id}"), format!("{o:?}")));
    }
    let team = format!("\u{1}{TWIN_TEAM}");
    for dept in TWIN_DEPTS.into_iter().chain([team.as_str()]) {
        let head = live.queue_head(dept, 100).await.expect("queue head");
        out.push((format!("queue {dept}"), format!("{head:?}")));
        let staff = live.staff(dept, 100).await.expect("staff");
        out.push((format!("staff {dept}"), format!("{staff:?}")));
        let ready = live.ready_agents(dept, 100).await.expect("ready agents");
        out.push((format!("ready {dept}"), format!("{ready:?}")));
        let due_in_an_hour =
            tierline_routing::domain::queue::RankKey::new(0, at(secs + 3600), at(secs), "").score()
                as i64;
        let before = live
            .queued_before(dept, due_in_an_hour)
            .await
            .expect("queued before");
        out.push((format!("queued before {dept}"), format!("{before}")));
        let stats = live.department_stats(dept).await.expect("department stats");
        out.push((format!("stats {dept}"), format!("{stats:?}")));
        let (tickets, mut agents) = live.peek(dept, 3, 10, &[TWIN_TEAM]).await.expect("peek");
        // The agents a ticket names come in Lua's `pairs` order from Redis: unspecified.
        agents.sort_by(|a, b| a.0.cmp(&b.0));
        out.push((format!("peek {dept}"), format!("{tickets:?} {agents:?}")));
    }
    let depts = live.departments().await.expect("departments");
    out.push(("departments".into(), format!("{depts:?}")));
    let w = live
        .waiting(&owned(&TWIN_DEPTS), at(secs), 10 * 60_000)
        .await
        .expect("waiting");
    out.push(("waiting".into(), format!("{w:?}")));
    let due = live.due_offers(at(secs), 100).await.expect("due");
    out.push(("due offers".into(), format!("{due:?}")));
    out
}

struct Twin {
    redis: Fixture,
    memory: Fixture,
    rng: Rng,
    secs: i64,
    /// The ticket service's version of each ticket.
    versions: BTreeMap<String, i64>,
    rids: Vec<String>,
}

impl Twin {
    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[self.rng.below(of.len())]
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.rng.below(one_in) == 0
    }

    fn next_version(&mut self, id: &str) -> i64 {
        let v = self.versions.entry(id.to_owned()).or_insert(0);
        *v += 1;
        *v
    }

    fn record(&mut self) -> LiveRecord {
        let depts: &[&str] = match self.rng.below(8) {
            0 => &["support"],
            1 => &["billing"],
            2 => &[],
            _ => &["support", "billing"],
        };
        let mut r = record(depts, 1 + self.rng.below(4) as u32);
        if self.chance(3) {
            r.cap.insert("voice".into(), 1.0);
        }
        if self.chance(4) {
            r.team = Some(TWIN_TEAM.into());
        }
        if self.chance(3) {
            r.skills.insert("de".into(), true);
        }
        r.dis = self.chance(20);
        r
    }

    fn ticket_sync(&mut self, state: RoutingState, stale: bool) -> TicketSync {
        let id = self.pick(&TWIN_TICKETS);
        let version = if stale {
            let held = self.versions.get(id).copied().unwrap_or(0);
            1 + self.rng.below(held.max(1) as usize) as i64
        } else {
            self.next_version(id)
        };
        let dept = self.pick(&TWIN_DEPTS);
        let tier = [Tier::A, Tier::B, Tier::C][self.rng.below(3)];
        let mut s = waiting(id, dept, tier, version, self.rng.below(120) as i64 - 60);
        s.state = state;
        s.data.escalation_level = u32::from(self.chance(5));
        if self.chance(10) {
            s.channel = Channel::Voice;
        }
        if self.chance(5) {
            s.data.required_skills.insert("de".into());
        }
        if self.chance(6) {
            s.data.account_manager_id = Some(self.pick(&TWIN_AGENTS).into());
        }
        if self.chance(6) {
            s.data.preferred_agent_id = Some(self.pick(&TWIN_AGENTS).into());
        }
        if matches!(state, RoutingState::Active | RoutingState::Parked) {
            s.agent_id = Some(self.pick(&TWIN_AGENTS).into());
            if !self.rids.is_empty() && self.chance(2) {
                s.reservation_id = Some(self.rids[self.rng.below(self.rids.len())].clone());
            }
        }
        if state == RoutingState::Done && self.chance(2) {
            s.department = String::new();
        }
        s
    }

    /// A reservation made before: mostly a pending or held one; now and then one never made.
    async fn rid(&mut self) -> Option<String> {
        if self.rids.is_empty() {
            return None;
        }
        if self.chance(15) {
            return Some("r-none".into());
        }
        let live: Vec<String> = self
            .memory
            .live()
            .offers(&self.rids)
            .await
            .expect("offers")
            .into_iter()
            .filter(|(_, o)| o.st == "pending" || o.st == "accepting")
            .map(|(rid, _)| rid)
            .collect();
        if !live.is_empty() && !self.chance(4) {
            return Some(live[self.rng.below(live.len())].clone());
        }
        Some(self.rids[self.rng.below(self.rids.len())].clone())
    }

    /// One random call on both; returns what it was.
    async fn step(&mut self, step: usize) -> String {
        self.secs += self.rng.below(4) as i64;
        if self.chance(100) {
            self.secs += 3_700;
        }
        if self.chance(200) {
            self.secs += 24 * 3600 + 60;
        }
        let secs = self.secs;
        let now = at(secs);
        match self.rng.below(26) {
            0..=3 => {
                let stale = self.chance(5);
                let s = self.ticket_sync(RoutingState::Waiting, stale);
                let what = format!("sync {s:?}");
                on_both!(self, what, |live| live.sync(&s, now));
                what
            }
            4 => {
                let state = if self.chance(3) {
                    RoutingState::Parked
                } else {
                    RoutingState::Active
                };
                let stale = self.chance(6);
                let s = self.ticket_sync(state, stale);
                let what = format!("sync {s:?}");
                on_both!(self, what, |live| live.sync(&s, now));
                what
            }
            6 => {
                let stale = self.chance(6);
                let s = self.ticket_sync(RoutingState::Done, stale);
                let what = format!("sync {s:?}");
                on_both!(self, what, |live| live.sync(&s, now));
                what
            }
            7 | 8 => {
                let agent = self.pick(&TWIN_AGENTS);
                let rec = self.record();
                let current = self
                    .memory
                    .live()
                    .agent(agent)
                    .await
                    .expect("agent")
                    .and_then(|a| a.sess);
                let asked = match self.rng.below(3) {
                    0 => None,
                    1 => current.or_else(|| Some("s-old".into())),
                    _ => Some("bogus".into()),
                };
                let initial = self.pick(&["available", "available", "keep", "away"]);
                let new = format!("s{step}");
                let lease = at(secs + 30 + self.rng.below(300) as i64);
                let what = format!("open_session {agent} {rec:?} {asked:?} {initial}");
                on_both!(self, what, |live| live.open_session(
                    agent,
                    &rec,
                    asked.as_deref(),
                    &new,
                    initial,
                    now,
                    lease
                ));
                what
            }
            9 => {
                let agent = self.pick(&TWIN_AGENTS);
                let rec = self.record();
                let what = format!("put_record {agent} {rec:?}");
                on_both!(self, what, |live| live.put_record(agent, &rec, now));
                what
            }
            10 => {
                let agent = self.pick(&TWIN_AGENTS);
                let current = self
                    .memory
                    .live()
                    .agent(agent)
                    .await
                    .expect("agent")
                    .and_then(|a| a.sess);
                let session = current
                    .filter(|_| !self.chance(5))
                    .unwrap_or_else(|| "bogus".into());
                let lease = at(secs + 5 + self.rng.below(300) as i64);
                if self.chance(2) {
                    // A router's batch renewal, with another agent's session beside it.
                    let other = self.pick(&TWIN_AGENTS);
                    let batch = vec![
                        (agent.to_owned(), session),
                        (
                            other.to_owned(),
                            format!("s{}", self.rng.below(step.max(1))),
                        ),
                    ];
                    let what = format!("renew_sessions {batch:?}");
                    on_both!(self, what, |live| live.renew_sessions(&batch, now, lease));
                    return what;
                }
                let connected = !self.chance(3);
                let what = format!("touch_session {agent} {session} {connected}");
                on_both!(self, what, |live| live
                    .touch_session(agent, &session, connected, now, lease));
                what
            }
            11 => {
                let agent = self.pick(&TWIN_AGENTS);
                let presence = self.pick(&["available", "available", "away", "offline"]);
                let reason = if presence == "away" {
                    self.pick(&["break", "meal", ""])
                } else {
                    ""
                };
                let note = self.pick(&["", "", "back soon"]);
                let what = format!("set_presence {agent} {presence} {reason} {note}");
                on_both!(self, what, |live| live
                    .set_presence(agent, presence, reason, note, now));
                what
            }
            12 => {
                let limit = 1 + self.rng.below(3);
                let what = format!("lapse_sessions {limit}");
                on_both!(self, what, |live| live.lapse_sessions(now, limit));
                what
            }
            13..=15 => {
                // Mostly what a dispatch round would offer: tickets and agents it peeked.
                let dept = self.pick(&TWIN_DEPTS);
                let (queued, ready) = self
                    .memory
                    .live()
                    .peek(dept, 5, 10, &[TWIN_TEAM])
                    .await
                    .expect("peek");
                let mut offers = Vec::new();
                for i in 0..1 + self.rng.below(3) {
                    let ticket = match queued.len() {
                        0 => self.pick(&TWIN_TICKETS).to_owned(),
                        n if !self.chance(5) => queued[self.rng.below(n)].0.clone(),
                        _ => self.pick(&TWIN_TICKETS).to_owned(),
                    };
                    let agent = match ready.len() {
                        0 => self.pick(&TWIN_AGENTS).to_owned(),
                        n if !self.chance(5) => ready[self.rng.below(n)].0.clone(),
                        _ => self.pick(&TWIN_AGENTS).to_owned(),
                    };
                    let held = self
                        .memory
                        .live()
                        .ticket(&ticket)
                        .await
                        .expect("ticket")
                        .map(|t| t.v);
                    let version = held
                        .filter(|_| !self.chance(8))
                        .unwrap_or_else(|| "1".into());
                    let kinds = [
                        StepKind::PreferredAgent,
                        StepKind::AccountManager,
                        StepKind::Team,
                        StepKind::Department,
                    ];
                    offers.push(NewOffer {
                        ticket_id: ticket,
                        ticket_version: version,
                        agent_id: agent,
                        reservation_id: format!("r{step}-{i}"),
                        step: kinds[self.rng.below(4)],
                    });
                }
                let expire = at(secs + 10 + self.rng.below(40) as i64);
                let what = format!("reserve {dept} {offers:?}");
                let made = on_both!(self, what, |live| live.reserve(dept, &offers, now, expire));
                self.rids.extend(made.unwrap_or_default());
                what
            }
            16 | 22 => {
                let Some(rid) = self.rid().await else {
                    return "nothing".into();
                };
                let holder = self
                    .memory
                    .live()
                    .offer(&rid)
                    .await
                    .expect("offer")
                    .map(|o| o.agent);
                let agent = match holder {
                    Some(a) if !self.chance(5) => a,
                    _ => self.pick(&TWIN_AGENTS).into(),
                };
                let hold = at(secs + 3 + self.rng.below(30) as i64);
                let what = format!("claim {rid} {agent}");
                on_both!(self, what, |live| live.claim(&rid, &agent, now, hold));
                what
            }
            17 => {
                let Some(rid) = self.rid().await else {
                    return "nothing".into();
                };
                let what = format!("unclaim {rid}");
                on_both!(self, what, |live| live.unclaim(&rid));
                what
            }
            18 => {
                // An accept as the router makes it: claim, then confirm with the held offer.
                let Some(rid) = self.rid().await else {
                    return "nothing".into();
                };
                let Some(offer) = self.memory.live().offer(&rid).await.expect("offer") else {
                    return format!("accept {rid}: no such offer");
                };
                let hold = at(secs + 30);
                let claimed = on_both!(self, format!("claim {rid} to accept"), |live| live.claim(
                    &rid,
                    &offer.agent,
                    now,
                    hold
                ));
                let offer = match claimed {
                    Some(Claim::Claimed(held)) => held,
                    _ if self.chance(2) => offer,
                    _ => return format!("accept {rid}: not claimed"),
                };
                let version = if self.chance(4) {
                    self.versions.get(&offer.ticket).copied().unwrap_or(1)
                } else {
                    self.next_version(&offer.ticket)
                };
                let what = format!("confirm {rid} at version {version}");
                on_both!(self, what, |live| live.confirm(&rid, &offer, version, now));
                what
            }
            19 | 20 | 24 => {
                let Some(rid) = self.rid().await else {
                    return "nothing".into();
                };
                let holder = self
                    .memory
                    .live()
                    .offer(&rid)
                    .await
                    .expect("offer")
                    .map(|o| o.agent);
                let (outcome, by) = match self.rng.below(3) {
                    0 => (
                        Outcome::Declined,
                        holder
                            .filter(|_| !self.chance(5))
                            .or_else(|| Some("zed".into())),
                    ),
                    1 => (Outcome::Expired, None),
                    _ => (Outcome::Cancelled("presence_changed"), None),
                };
                let from: &[&str] = match self.rng.below(3) {
                    0 => &["pending"],
                    1 => &["accepting"],
                    _ => &["pending", "accepting"],
                };
                let away = [0, 2][self.rng.below(2)];
                let what = format!("end_offer {rid} {outcome:?} {by:?} {from:?} {away}");
                on_both!(self, what, |live| live.end_offer(
                    &rid,
                    outcome,
                    by.as_deref(),
                    from,
                    away,
                    now
                ));
                what
            }
            23 | 25 => {
                // The expiry sweep.
                let due = on_both!(self, "due_offers", |live| live.due_offers(now, 10))
                    .unwrap_or_default();
                for rid in &due {
                    let what = format!("expire {rid}");
                    on_both!(self, what, |live| live.end_offer(
                        rid,
                        Outcome::Expired,
                        None,
                        &["pending", "accepting"],
                        2,
                        now
                    ));
                }
                format!("expire {due:?}")
            }
            _ => {
                let limit = 1 + self.rng.below(4);
                let what = format!("purge {limit}");
                on_both!(self, what, |live| live.purge(now, limit));
                on_both!(self, "is_built", |live| live.is_built());
                if self.chance(3) {
                    on_both!(self, "mark_built", |live| live.mark_built(now));
                }
                what
            }
        }
    }
}

/// The notices already published (in memory they are there as soon as the call returns;
/// unconstrained, as tokio's cooperative budget would answer Pending after about 128).
fn published(stream: &mut futures::stream::BoxStream<'static, String>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(Some(notice)) = futures::FutureExt::now_or_never(tokio::task::unconstrained(
        futures::StreamExt::next(stream),
    )) {
        out.push(notice);
    }
    out
}

/// The notices Redis published before `sentinel`, which the test publishes itself after each
/// call: pub/sub keeps the order, so everything the call's script published comes first.
async fn received_until(
    stream: &mut futures::stream::BoxStream<'static, String>,
    sentinel: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            futures::StreamExt::next(stream),
        )
        .await;
        match next {
            Ok(Some(notice)) if notice == sentinel => return out,
            Ok(Some(notice)) => out.push(notice),
            Ok(None) => panic!("the notice stream ended"),
            Err(_) => panic!("no sentinel {sentinel} within 5 s; got {out:?}"),
        }
    }
}

/// Replays one random history on both implementations; after every call, every read and the
/// notices it published must agree.
async fn replay(seed: u64, steps: usize) {
    let mut twin = Twin {
        redis: Fixture::redis().await,
        memory: Fixture::memory(),
        rng: Rng(seed),
        secs: 0,
        versions: BTreeMap::new(),
        rids: Vec::new(),
    };
    let mut redis_notices = twin.redis.live().notices().await.expect("notices");
    let events = twin.redis.redis_keys.as_ref().expect("redis keys").events();
    let mut conn = live::connect(&RedisSettings::new(url()))
        .await
        .expect("redis");
    let mut memory_notices = twin.memory.live().notices().await.expect("notices");
    for step in 0..steps {
        let what = twin.step(step).await;
        let context = |label: &str| format!("seed {seed:#x}, step {step} ({what}): {label}");
        let mut m = published(&mut memory_notices);
        let sentinel = format!("#{step}");
        let _: i64 = conn.publish(&events, &sentinel).await.expect("publish");
        let mut r = received_until(&mut redis_notices, &sentinel).await;
        // Lua's `pairs` order (the agents SYNC notifies, a record's departments) is unspecified.
        r.sort();
        m.sort();
        assert_eq!(r, m, "{}", context("notices"));
        let r = readable(twin.redis.live(), twin.secs, &twin.rids).await;
        let m = readable(twin.memory.live(), twin.secs, &twin.rids).await;
        for (r, m) in r.iter().zip(&m) {
            assert_eq!(r.0, m.0, "{}", context("what is there"));
            assert_eq!(r.1, m.1, "{}", context(&r.0));
        }
        assert_eq!(r.len(), m.len(), "{}", context("entries"));
    }
    twin.redis.cleanup().await;
}

#[tokio::test]
async fn redis_and_memory_agree_on_random_histories() {
    for seed in [0x5EED_0001, 0x5EED_0002, 0x5EED_0003, 0x5EED_0004] {
        replay(seed, 400).await;
    }
}
