//! Queue statistics, explanations and wait estimates ([`insight`]) against the real Redis at
//! 127.0.0.1:6379 (`TIERLINE_TEST_REDIS_URL` overrides) and PostgreSQL (`#[sqlx::test]`, needs
//! `DATABASE_URL`), through a [`Router`] whose background loop runs on a manual clock.
//!
//! Each test works under its own Redis prefix `test:<uuid>:` and deletes its keys at the end.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use redis::AsyncCommands;
use sqlx::PgPool;
use tierline_proto::common as pbc;
use tierline_proto::prost_types;
use tierline_proto::routing as pb;
use tierline_routing::agents::{AgentRecord, PgAgents, parse_upsert};
use tierline_routing::api::insight;
use tierline_routing::config::RouterSettings;
use tierline_routing::domain::config::RoutingConfig;
use tierline_routing::domain::queue::TierTargets;
use tierline_routing::error::Error;
use tierline_routing::live::keys::Keys;
use tierline_routing::live::model::TicketData;
use tierline_routing::live::on_redis::RedisLive;
use tierline_routing::live::state::{LiveState, Outcome, RoutingState, TicketSync};
use tierline_routing::live::{self, RedisSettings};
use tierline_routing::router::{ManualClock, ROUND_AGENTS_AT_LEAST, Router, live_record};
use tierline_routing::tickets::Tickets;
use tierline_runtime::ServiceError;
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;
use time::macros::datetime;
use tonic::Code;

const T0: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);
const MIN: Duration = Duration::from_secs(60);

fn url() -> String {
    std::env::var("TIERLINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

struct Fixture {
    router: Router,
    stop: tokio::sync::watch::Sender<bool>,
    /// This test's key prefix pattern, for cleanup.
    pattern: String,
}

impl Fixture {
    /// A router on a fresh prefix, its live state marked complete and its loop running (so it
    /// answers, rather than UNAVAILABLE while "rebuilding").
    async fn new(pool: PgPool) -> Fixture {
        Fixture::start(pool, true).await
    }

    /// The same router with no loop: nothing dispatches, expires or ticks unless the test
    /// calls it, so no periodic round can stand in for the one under test.
    async fn without_loop(pool: PgPool) -> Fixture {
        Fixture::start(pool, false).await
    }

    async fn start(pool: PgPool, run_loop: bool) -> Fixture {
        let conn = live::connect(&RedisSettings::new(url()))
            .await
            .expect("redis at 127.0.0.1:6379");
        let keys = Keys::new(format!("test:{}:", uuid::Uuid::new_v4())).expect("valid prefix");
        let pattern = keys.pattern();
        let live = Arc::new(RedisLive::new(
            redis::Client::open(url()).expect("url"),
            conn,
            keys,
        ));
        live.mark_built(T0).await.expect("mark built");
        let router = Router::new(
            live,
            Arc::new(PgAgents::new(pool)),
            Tickets::new("http://127.0.0.1:1", Duration::from_millis(200)).expect("endpoint"),
            RoutingConfig::default(),
            RouterSettings::default(),
            Arc::new(ManualClock::new(T0)),
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        if !run_loop {
            return Fixture {
                router,
                stop,
                pattern,
            };
        }
        tokio::spawn(router.clone().run(stopped));
        for _ in 0..200 {
            if router.check_built().is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        router.check_built().expect("the loop saw the built marker");
        Fixture {
            router,
            stop,
            pattern,
        }
    }

    async fn cleanup(self) {
        let _ = self.stop.send(true);
        let mut conn = live::connect(&RedisSettings::new(url()))
            .await
            .expect("redis");
        let mut found: Vec<String> = Vec::new();
        {
            let mut iter = conn
                .scan_match::<_, String>(self.pattern.clone())
                .await
                .expect("scan");
            while let Some(key) = iter.next().await {
                found.push(key.expect("key"));
            }
        }
        for key in &found {
            let _: () = conn.del(key).await.expect("del");
        }
    }

    /// Creates an agent record (chat capacity, optional skills), mirrored into the live state
    /// if `publish`.
    async fn agent(
        &self,
        id: &str,
        departments: &[&str],
        skills: &[&str],
        disabled: bool,
        publish: bool,
    ) -> AgentRecord {
        let upsert = parse_upsert(&pb::UpsertAgentRequest {
            agent: Some(pb::Agent {
                id: id.into(),
                display_name: format!("Agent {id}"),
                departments: departments.iter().map(|d| (*d).to_owned()).collect(),
                skills: skills.iter().map(|s| (*s).to_owned()).collect(),
                capacities: vec![pb::ChannelCapacity {
                    channel: pbc::Channel::Chat as i32,
                    max_active_tickets: 1,
                }],
                disabled,
                ..Default::default()
            }),
            update_mask: None,
            expected_version: None,
        })
        .expect("valid agent");
        let record = self.router.agents().upsert(&upsert).await.expect("upsert");
        if publish {
            self.router.publish_record(&record).await.expect("mirror");
        }
        record
    }

    /// Opens the agent's desktop session (`available` or `away`).
    async fn connect(&self, record: &AgentRecord, presence: &str) {
        self.router
            .live()
            .open_session(
                &record.id,
                &live_record(record),
                None,
                &format!("s-{}", record.id),
                presence,
                T0,
                T0 + time::Duration::seconds(30),
            )
            .await
            .expect("session");
    }

    async fn sync(&self, sync: &TicketSync) {
        let synced = self.router.sync_ticket(sync).await.expect("sync");
        assert!(synced.applied);
    }
}

fn waiting(tier: Tier, arrived_min_ago: i64, skills: &[&str]) -> TicketSync {
    let id = uuid::Uuid::new_v4().to_string();
    let arrival = T0 - time::Duration::minutes(arrived_min_ago);
    TicketSync {
        id: id.clone(),
        version: 1,
        state: RoutingState::Waiting,
        department: "support".into(),
        channel: Channel::Chat,
        tier,
        data: TicketData {
            number: format!("T-{}", &id[..8]),
            key_account: false,
            account_manager_id: None,
            preferred_agent_id: None,
            required_skills: skills.iter().map(|s| (*s).to_owned()).collect(),
            escalation_level: 0,
            enqueue_time: arrival,
            pickup_due: TierTargets::default()
                .pickup_due(tier, arrival)
                .expect("in range"),
            subject: "No signal".into(),
            category: "outage".into(),
            priority: 2,
            customer_id: String::new(),
            customer_name: "Acme".into(),
        },
        agent_id: None,
        reservation_id: None,
    }
}

fn assigned(ticket: &TicketSync, agent: &str) -> TicketSync {
    TicketSync {
        version: ticket.version + 1,
        state: RoutingState::Active,
        agent_id: Some(agent.into()),
        ..ticket.clone()
    }
}

fn wait(d: Duration) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).expect("small"),
        nanos: 0,
    })
}

fn reasons(rs: &[pb::IneligibilityReason]) -> Vec<i32> {
    rs.iter().map(|r| *r as i32).collect()
}

type Verdict = (String, bool, i32, Vec<i32>, Vec<String>);

fn verdicts(e: &pb::TicketExplanation) -> Vec<Verdict> {
    e.agents
        .iter()
        .map(|v| {
            (
                v.agent_id.clone(),
                v.eligible,
                v.selection_order,
                v.reasons.clone(),
                v.missing_skills.clone(),
            )
        })
        .collect()
}

fn verdict(
    id: &str,
    eligible: bool,
    order: i32,
    rs: &[pb::IneligibilityReason],
    missing: &[&str],
) -> Verdict {
    (
        id.into(),
        eligible,
        order,
        reasons(rs),
        missing.iter().map(|s| (*s).to_owned()).collect(),
    )
}

fn field_of(err: &Error) -> Vec<String> {
    err.field_violations()
        .iter()
        .map(|f| f.field.clone())
        .collect()
}

fn tier_row(t: &pb::TierQueueStats) -> (i32, i32, i32, i32, i32, i64) {
    (
        t.tier,
        t.waiting_count,
        t.offered_count,
        t.at_risk_count,
        t.past_due_count,
        t.oldest_wait.as_ref().map_or(-1, |d| d.seconds),
    )
}

#[sqlx::test(migrator = "tierline_routing::agents::MIGRATOR")]
async fn statistics_explanations_and_estimates_follow_the_live_state(pool: PgPool) {
    use pb::IneligibilityReason as R;
    let fx = Fixture::new(pool).await;
    let router = &fx.router;

    // ana is available with room for one chat, bo is away, cy has never connected, dee is
    // disabled; fay has a record the live state has not seen.
    let ana = fx.agent("ana", &["support"], &[], false, true).await;
    let bo = fx.agent("bo", &["support"], &[], false, true).await;
    fx.agent("cy", &["support"], &[], false, true).await;
    fx.agent("dee", &["support"], &[], true, true).await;
    fx.agent("fay", &["support"], &["language:de"], false, false)
        .await;
    fx.connect(&bo, "away").await;

    // Queue order by due time: b (due 10 min ago), a (due in 3 min), de (55 min), c (4 h).
    let t_a = waiting(Tier::A, 12, &[]);
    let t_b = waiting(Tier::B, 70, &[]);
    let t_c = waiting(Tier::C, 1, &[]);
    let t_de = waiting(Tier::B, 5, &["language:de"]);
    for t in [&t_a, &t_b, &t_c, &t_de] {
        fx.sync(t).await;
    }
    // ana connects: the best-ranked ticket is offered to her (the loop may beat us to it).
    fx.connect(&ana, "available").await;
    router.dispatch("support").await.expect("dispatch");

    // ---- GetQueueStats
    let stats = insight::queue_stats(router, &[]).await.expect("stats");
    assert_eq!(
        stats.stats_time,
        Some(tierline_runtime::wire::timestamp(T0))
    );
    assert_eq!(stats.counter_window, wait(15 * MIN));
    assert_eq!(stats.queues.len(), 1, "only departments with tickets");
    let q = &stats.queues[0];
    assert_eq!(q.department, "support");
    let rows: Vec<_> = q.tiers.iter().map(tier_row).collect();
    assert_eq!(
        rows,
        [
            (pbc::Tier::A as i32, 1, 0, 1, 0, 12 * 60),
            (pbc::Tier::B as i32, 2, 1, 0, 1, 70 * 60),
            (pbc::Tier::C as i32, 1, 0, 0, 0, 60),
        ]
    );
    assert_eq!(
        tier_row(q.total.as_ref().expect("total")),
        (pbc::Tier::Unspecified as i32, 4, 1, 1, 1, 70 * 60)
    );
    assert_eq!(
        q.agents,
        Some(pb::AgentCounts {
            available: 1,
            busy: 0,
            away: 1,
            offline: 1
        }),
        "ana available (reserved, with room), bo away, cy offline; dee disabled and fay unknown"
    );
    assert_eq!(
        q.offers.as_ref().map(|o| (o.offered, o.accepted)),
        Some((1, 0))
    );
    let named = insight::queue_stats(router, &["support".into(), "nobody".into()])
        .await
        .expect("stats");
    let departments: Vec<&str> = named.queues.iter().map(|q| q.department.as_str()).collect();
    assert_eq!(departments, ["nobody", "support"]);
    assert_eq!(named.queues[0].tiers.len(), 3, "tiers are always present");
    let err = insight::queue_stats(router, &["bad dept".into()])
        .await
        .expect_err("invalid");
    assert_eq!(field_of(&err), ["departments[0]"]);

    // ---- ExplainTicket
    let offered = insight::explain_ticket(router, &t_b.id)
        .await
        .expect("explain");
    assert_eq!(offered.rank, 0, "offered: not in the queue proper");
    assert_eq!(offered.queue_length, 4);
    let offer = offered.pending_offer.as_ref().expect("pending offer");
    assert_eq!(
        (offer.agent_id.as_str(), offer.ticket_id.as_str()),
        ("ana", t_b.id.as_str())
    );
    assert_eq!(offer.status, pb::OfferStatus::Pending as i32);
    assert_eq!(offered.eligible_agent_count, 1);
    assert_eq!(
        verdicts(&offered),
        [
            verdict("ana", true, 1, &[], &[]),
            verdict("bo", false, 0, &[R::Away], &[]),
            verdict("cy", false, 0, &[R::Offline], &[]),
            verdict("dee", false, 0, &[R::Offline, R::Disabled], &[]),
        ]
    );
    let ticket = offered.ticket.as_ref().expect("ticket");
    assert_eq!(ticket.state, pb::TicketRoutingState::Waiting as i32);
    assert_eq!(
        (ticket.ticket_version, ticket.tier),
        (1, pbc::Tier::B as i32)
    );
    assert_eq!(ticket.ticket_number, t_b.data.number);

    let queued = insight::explain_ticket(router, &t_a.id)
        .await
        .expect("explain");
    assert_eq!((queued.rank, queued.queue_length), (1, 4));
    assert_eq!(queued.current_step_index, 0);
    assert_eq!(queued.next_step_time, None);
    assert_eq!(queued.steps.len(), 1);
    assert_eq!(queued.steps[0].kind, pb::RoutingStepKind::Department as i32);
    assert_eq!(queued.steps[0].target, "support");
    assert_eq!(
        queued.steps[0].start_time,
        Some(tierline_runtime::wire::timestamp(
            T0 - time::Duration::minutes(12)
        ))
    );
    assert_eq!(queued.pending_offer, None);
    assert_eq!(queued.eligible_agent_count, 0);
    assert_eq!(
        verdicts(&queued),
        [
            verdict("ana", false, 0, &[R::Reserved], &[]),
            verdict("bo", false, 0, &[R::Away], &[]),
            verdict("cy", false, 0, &[R::Offline], &[]),
            verdict("dee", false, 0, &[R::Offline, R::Disabled], &[]),
        ]
    );
    let skilled = insight::explain_ticket(router, &t_de.id)
        .await
        .expect("explain");
    assert_eq!(skilled.rank, 2);
    assert_eq!(
        skilled.agents[0],
        pb::AgentVerdict {
            agent_id: "ana".into(),
            display_name: "Agent ana".into(),
            eligible: false,
            selection_order: 0,
            reasons: reasons(&[R::Reserved, R::MissingSkill]),
            missing_skills: vec!["language:de".into()],
        }
    );
    let err = insight::explain_ticket(router, &uuid::Uuid::new_v4().to_string())
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::NotFound { what: "ticket", .. }));
    let err = insight::explain_ticket(router, "T-1")
        .await
        .expect_err("not a uuid");
    assert_eq!(field_of(&err), ["ticket_id"]);

    // ---- ExplainAgent
    let away = insight::explain_agent(router, "bo").await.expect("explain");
    assert!(!away.receiving_offers);
    assert_eq!(away.reasons, reasons(&[R::Away]));
    let presence = away
        .agent
        .as_ref()
        .and_then(|a| a.status.as_ref())
        .and_then(|s| s.presence.as_ref())
        .map(|p| p.state);
    assert_eq!(presence, Some(pb::AgentPresenceState::Away as i32));
    assert_eq!(
        away.queues,
        [pb::AgentQueueView {
            department: "support".into(),
            waiting_count: 4,
            eligible_waiting_count: 2,
            next_ticket_id: t_a.id.clone(),
            head_ticket_reasons: reasons(&[R::Away]),
        }],
        "bo could take a and c, not de (skill) nor b (offered to ana)"
    );
    let reserved = insight::explain_agent(router, "ana")
        .await
        .expect("explain");
    assert_eq!(reserved.reasons, reasons(&[R::Reserved]));
    assert_eq!(reserved.offers.as_ref().map(|o| o.offered), Some(1));
    assert_eq!(reserved.counter_window, wait(15 * MIN));
    let unseen = insight::explain_agent(router, "fay")
        .await
        .expect("explain");
    assert_eq!(unseen.reasons, reasons(&[R::Offline]));
    assert_eq!(unseen.queues.len(), 1);
    assert_eq!(
        unseen.queues[0].eligible_waiting_count, 3,
        "she has the skill for de"
    );
    let err = insight::explain_agent(router, "nobody")
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::NotFound { what: "agent", .. }));

    // ---- EstimateWait: nobody free and no pickups yet: no estimate.
    let req = pb::EstimateWaitRequest {
        department: "support".into(),
        tier: pbc::Tier::A as i32,
        channel: pbc::Channel::Chat as i32,
        required_skills: vec![],
    };
    let estimate = insight::estimate_wait(router, &req)
        .await
        .expect("estimate");
    assert_eq!(
        (
            estimate.estimated_wait,
            estimate.position,
            estimate.available_agents
        ),
        (None, 2, 0)
    );
    let err = insight::estimate_wait(
        router,
        &pb::EstimateWaitRequest {
            tier: 0,
            ..req.clone()
        },
    )
    .await
    .expect_err("tier required");
    assert_eq!(field_of(&err), ["tier"]);

    // ana takes b: one pickup in the window, so one ticket leaves the queue every 15 minutes.
    fx.sync(&assigned(&t_b, "ana")).await;
    let estimate = insight::estimate_wait(router, &req)
        .await
        .expect("estimate");
    assert_eq!(
        (
            estimate.estimated_wait,
            estimate.position,
            estimate.available_agents
        ),
        (wait(30 * MIN), 2, 0),
        "behind a: 2 x 15 min"
    );
    let own = insight::estimate_for(router, &t_c).await.expect("estimate");
    assert_eq!(
        own,
        wait(45 * MIN),
        "c is behind a and de, not behind itself"
    );
    let stats = insight::queue_stats(router, &["support".into()])
        .await
        .expect("stats");
    let q = &stats.queues[0];
    assert_eq!(
        q.total.as_ref().map(|t| (t.waiting_count, t.offered_count)),
        Some((3, 0))
    );
    assert_eq!(
        q.offers.as_ref().map(|o| (o.offered, o.accepted)),
        Some((1, 1))
    );
    assert_eq!(
        q.agents.as_ref().map(|a| (a.available, a.busy)),
        Some((0, 1)),
        "ana is full"
    );

    let active = insight::explain_ticket(router, &t_b.id)
        .await
        .expect("explain");
    let ticket = active.ticket.as_ref().expect("ticket");
    assert_eq!(ticket.state, pb::TicketRoutingState::Active as i32);
    assert_eq!(ticket.assigned_agent_id, "ana");
    assert_eq!(
        (active.rank, active.current_step_index, active.queue_length),
        (0, -1, 3)
    );
    assert!(active.agents.is_empty() && active.steps.is_empty());
    let busy = insight::explain_agent(router, "ana")
        .await
        .expect("explain");
    assert_eq!(busy.reasons, reasons(&[R::AtCapacity]));
    assert_eq!(
        busy.offers.as_ref().map(|o| (o.offered, o.accepted)),
        Some((1, 1))
    );

    fx.cleanup().await;
}

#[sqlx::test(migrator = "tierline_routing::agents::MIGRATOR")]
async fn watching_streams_a_snapshot_at_once_then_every_interval(pool: PgPool) {
    let fx = Fixture::new(pool.clone()).await;
    fx.sync(&waiting(Tier::A, 1, &[])).await;
    let err = insight::watch_queue_stats(
        fx.router.clone(),
        pb::WatchQueueStatsRequest {
            departments: vec![],
            interval: Some(prost_types::Duration {
                seconds: 0,
                nanos: 500_000_000,
            }),
        },
    )
    .err()
    .expect("too short");
    assert_eq!(field_of(&err), ["interval"]);

    let stream = insight::watch_queue_stats(
        fx.router.clone(),
        pb::WatchQueueStatsRequest {
            departments: vec!["support".into()],
            interval: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
        },
    )
    .expect("valid");
    let mut stream = Box::pin(stream);
    let started = std::time::Instant::now();
    let first = tokio::time::timeout(Duration::from_millis(500), stream.next())
        .await
        .expect("at once")
        .expect("an item")
        .expect("a snapshot");
    assert_eq!(first.queues.len(), 1);
    assert_eq!(
        first.queues[0].total.as_ref().map(|t| t.waiting_count),
        Some(1)
    );
    let second = tokio::time::timeout(Duration::from_secs(3), stream.next())
        .await
        .expect("within the interval")
        .expect("an item")
        .expect("a snapshot");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the interval"
    );
    assert_eq!(second.queues[0].department, "support");
    drop(stream);
    fx.cleanup().await;

    // A router that cannot answer (never built: Redis unreachable) ends the stream with the
    // error.
    let conn = live::connect_lazy(&RedisSettings::new("redis://127.0.0.1:1")).expect("lazy");
    let down = Router::new(
        Arc::new(RedisLive::new(
            redis::Client::open("redis://127.0.0.1:1").expect("url"),
            conn,
            Keys::new("test:down:").expect("prefix"),
        )),
        Arc::new(PgAgents::new(pool)),
        Tickets::new("http://127.0.0.1:1", Duration::from_millis(200)).expect("endpoint"),
        RoutingConfig::default(),
        RouterSettings::default(),
        Arc::new(ManualClock::new(T0)),
    );
    let mut stream = Box::pin(
        insight::watch_queue_stats(down, pb::WatchQueueStatsRequest::default()).expect("valid"),
    );
    let status = stream
        .next()
        .await
        .expect("an item")
        .expect_err("unavailable");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        stream.next().await.is_none(),
        "the stream ends after the error"
    );
}

/// A new ticket's position counts the whole queue, not only the head a dispatch round reads
/// (64 tickets).
#[sqlx::test(migrator = "tierline_routing::agents::MIGRATOR")]
async fn a_position_counts_the_whole_of_a_deep_queue(pool: PgPool) {
    let fx = Fixture::new(pool).await;
    let router = &fx.router;
    // 150 tickets that arrived before now; each is due before a new one of its tier.
    let mut last = None;
    for i in 0..150 {
        let t = waiting(Tier::B, 1 + i % 50, &[]);
        fx.sync(&t).await;
        last = Some(t);
    }
    let req = pb::EstimateWaitRequest {
        department: "support".into(),
        tier: pbc::Tier::B as i32,
        channel: pbc::Channel::Chat as i32,
        required_skills: vec![],
    };
    let estimate = insight::estimate_wait(router, &req)
        .await
        .expect("estimate");
    assert_eq!((estimate.position, estimate.available_agents), (151, 0));
    // A tier A caller is due in 15 min; B tickets are due 60 min after they arrived, 10 to
    // 59 min from now.
    let a = insight::estimate_wait(
        router,
        &pb::EstimateWaitRequest {
            tier: pbc::Tier::A as i32,
            ..req.clone()
        },
    )
    .await
    .expect("estimate");
    // Those that arrived 45-50 min ago (3 each) are due within 15 min: ahead of it (at the
    // same due time, the earlier arrival goes first).
    assert_eq!(a.position, 1 + 6 * 3);
    // SyncTicket's estimate in a deep queue: no pickups yet and nobody free, so none.
    let own = insight::estimate_for(router, &last.expect("a ticket"))
        .await
        .expect("estimate");
    assert_eq!(own, None, "no pickups and nobody free: no estimate");
    fx.cleanup().await;
}

/// A round reads only a window of the ready index when it holds many agents; a ticket that
/// none in the window can take must still be offered, in the same dispatch, to the one ready
/// agent who can.
#[sqlx::test(migrator = "tierline_routing::agents::MIGRATOR")]
async fn a_ticket_no_agent_in_the_window_can_take_is_offered_to_one_outside_it(pool: PgPool) {
    let fx = Fixture::without_loop(pool).await;
    let live = fx.router.live();
    // Far more ready agents than a first round reads for one ticket, but no more than a
    // widened round reads (`router.dispatch_agents`, 500 by default): with more than that, a
    // widened round too reads a random window and may miss the one agent, so the test would
    // be a lottery. The one who speaks Finnish sorts in the middle of the index.
    let count = ROUND_AGENTS_AT_LEAST * 4;
    assert!(count <= RouterSettings::default().dispatch_agents);
    let skilled = format!("agent-{:04}", count / 2);
    for i in 0..count {
        let id = format!("agent-{i:04}");
        let skills: &[&str] = if id == skilled { &["language:fi"] } else { &[] };
        let record = fx.agent(&id, &["support"], skills, false, false).await;
        fx.connect(&record, "available").await;
    }
    for _ in 0..5 {
        let ticket = waiting(Tier::B, 0, &["language:fi"]);
        live.sync(&ticket, T0).await.expect("sync");
        // Each dispatch draws a new window; every one must find the agent.
        assert_eq!(fx.router.dispatch("support").await.expect("dispatch"), 1);
        let agent = live.agent(&skilled).await.expect("read").expect("known");
        let offer = agent.offer.clone().expect("offered to the skilled agent");
        let held = live.offer(&offer).await.expect("read").expect("offer");
        assert_eq!(held.ticket, ticket.id);
        live.end_offer(
            &offer,
            Outcome::Cancelled("test"),
            None,
            &["pending"],
            2,
            T0,
        )
        .await
        .expect("withdraw");
        let done = TicketSync {
            state: RoutingState::Done,
            version: 2,
            ..ticket
        };
        live.sync(&done, T0).await.expect("done");
    }
    fx.cleanup().await;
}
