//! The router's dispatch rounds against Redis (under a prefix of their own), driven directly
//! rather than through the router's loop, so that no periodic round can stand in for the
//! one under test.

use std::sync::Arc;
use std::time::Duration;

use tierline_routing::agents::SqliteAgents;
use tierline_routing::config::RouterSettings;
use tierline_routing::domain::config::RoutingConfig;
use tierline_routing::domain::queue::TierTargets;
use tierline_routing::live::keys::Keys;
use tierline_routing::live::model::{LiveRecord, TicketData};
use tierline_routing::live::on_redis::RedisLive;
use tierline_routing::live::state::{LiveState, RoutingState, TicketSync};
use tierline_routing::live::{self, RedisSettings};
use tierline_routing::router::{ManualClock, ROUND_AGENTS_AT_LEAST, Router};
use tierline_routing::tickets::Tickets;
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);

fn url() -> String {
    std::env::var("TIERLINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn record(skills: &[&str]) -> LiveRecord {
    LiveRecord {
        name: "Agent".into(),
        depts: [("support".to_owned(), true)].into_iter().collect(),
        team: None,
        skills: skills.iter().map(|s| ((*s).to_owned(), true)).collect(),
        cap: [("chat".to_owned(), 1.0)].into_iter().collect(),
        dis: false,
    }
}

fn waiting(id: &str, required_skills: &[&str]) -> TicketSync {
    TicketSync {
        id: id.into(),
        version: 1,
        state: RoutingState::Waiting,
        department: "support".into(),
        channel: Channel::Chat,
        tier: Tier::B,
        data: TicketData {
            number: format!("T-{id}"),
            key_account: false,
            account_manager_id: None,
            preferred_agent_id: None,
            required_skills: required_skills.iter().map(|s| (*s).to_owned()).collect(),
            escalation_level: 0,
            enqueue_time: T0,
            pickup_due: TierTargets::default()
                .pickup_due(Tier::B, T0)
                .expect("in range"),
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

/// A round reads only a window of the ready index when it holds many agents; a ticket that
/// none in the window can take must still be offered, in the same dispatch, to the one ready
/// agent who can.
#[tokio::test]
async fn a_ticket_no_agent_in_the_window_can_take_is_offered_to_one_outside_it() {
    let keys = Keys::new(format!("test:{}:", uuid::Uuid::new_v4())).expect("valid prefix");
    let conn = live::connect(&RedisSettings::new(url()))
        .await
        .expect("redis at 127.0.0.1:6379");
    let redis = RedisLive::new(
        redis::Client::open(url()).expect("url"),
        conn.clone(),
        keys.clone(),
    );
    let live: Arc<dyn LiveState> = Arc::new(redis);
    let router = Router::new(
        Arc::clone(&live),
        Arc::new(SqliteAgents::in_memory().await.expect("sqlite")),
        Tickets::new("http://127.0.0.1:1", Duration::from_millis(200)).expect("endpoint"),
        RoutingConfig::default(),
        RouterSettings::default(),
        Arc::new(ManualClock::new(T0)),
    );
    // Far more ready agents than a first round reads for one ticket; the one who speaks
    // Finnish sorts in the middle of the index.
    let count = ROUND_AGENTS_AT_LEAST * 8;
    let skilled = format!("agent-{:04}", count / 2);
    for i in 0..count {
        let id = format!("agent-{i:04}");
        let skills: &[&str] = if id == skilled { &["language:fi"] } else { &[] };
        live.open_session(
            &id,
            &record(skills),
            None,
            &format!("s-{id}"),
            "available",
            T0,
            T0 + time::Duration::hours(1),
        )
        .await
        .expect("open session");
    }
    for attempt in 0..5 {
        let id = format!("t{attempt}");
        live.sync(&waiting(&id, &["language:fi"]), T0)
            .await
            .expect("sync");
        // Each dispatch draws a new window; every one must find the agent.
        assert_eq!(router.dispatch("support").await.expect("dispatch"), 1);
        let agent = live.agent(&skilled).await.expect("read").expect("known");
        let offer = agent.offer.clone().expect("offered to the skilled agent");
        let held = live.offer(&offer).await.expect("read").expect("offer");
        assert_eq!(held.ticket, id);
        live.end_offer(
            &offer,
            tierline_routing::live::state::Outcome::Cancelled("test"),
            None,
            &["pending"],
            2,
            T0,
        )
        .await
        .expect("withdraw");
        live.sync(
            &TicketSync {
                state: RoutingState::Done,
                version: 2,
                ..waiting(&id, &[])
            },
            T0,
        )
        .await
        .expect("done");
    }
    let mut conn = conn;
    let found: Vec<String> = redis::cmd("KEYS")
        .arg(keys.pattern())
        .query_async(&mut conn)
        .await
        .expect("keys");
    if !found.is_empty() {
        let _: () = redis::cmd("UNLINK")
            .arg(&found)
            .query_async(&mut conn)
            .await
            .expect("unlink");
    }
}
