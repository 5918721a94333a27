//! Department queues against the real Redis at 127.0.0.1:6379 (`TIERLINE_TEST_REDIS_URL`, set
//! by scripts/test, overrides).
//!
//! Each test works under its own prefix `test:<uuid>:` and deletes that prefix's keys at the
//! end, so tests run in parallel and leave nothing behind.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use tierline_routing::domain::queue::{RankKey, TicketRef, TierTargets};
use tierline_routing::live::keys::Keys;
use tierline_routing::live::queue::{Held, Queues, Synced};
use tierline_routing::live::{self, LiveError, RedisSettings};
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);

fn url() -> String {
    std::env::var("TIERLINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Queues under a fresh prefix; call [`Fixture::cleanup`] at the end.
struct Fixture {
    queues: Queues,
}

impl Fixture {
    async fn new() -> Fixture {
        let conn = live::connect(&RedisSettings::new(url()))
            .await
            .expect("redis at 127.0.0.1:6379");
        let keys = Keys::new(format!("test:{}:", uuid::Uuid::new_v4())).expect("valid prefix");
        Fixture {
            queues: Queues::new(conn, keys),
        }
    }

    async fn conn(&self) -> redis::aio::ConnectionManager {
        live::connect(&RedisSettings::new(url()))
            .await
            .expect("redis")
    }

    /// Deletes every key under this test's prefix.
    async fn cleanup(self) {
        let mut conn = self.conn().await;
        let mut found: Vec<String> = Vec::new();
        {
            let mut iter = conn
                .scan_match::<_, String>(self.queues.keys().pattern())
                .await
                .expect("scan");
            while let Some(key) = futures::StreamExt::next(&mut iter).await {
                found.push(key.expect("key"));
            }
        }
        for key in &found {
            let _: () = conn.del(key).await.expect("del");
        }
        let mut left = conn
            .scan_match::<_, String>(self.queues.keys().pattern())
            .await
            .expect("scan");
        assert!(
            futures::StreamExt::next(&mut left).await.is_none(),
            "cleanup left keys"
        );
    }
}

/// A tier-`tier` ticket arriving `arrival_min` minutes after T0, due by the default targets.
fn ticket(id: &str, department: &str, tier: Tier, arrival_min: i64) -> TicketRef {
    let arrival = T0 + time::Duration::minutes(arrival_min);
    let due = TierTargets::default()
        .pickup_due(tier, arrival)
        .expect("in range");
    TicketRef::new(id, department, Channel::Chat, tier, arrival, due)
}

fn ids(keys: &[RankKey]) -> Vec<&str> {
    keys.iter().map(RankKey::ticket_id).collect()
}

fn applied(version: i64, position: u64) -> Synced {
    Synced {
        applied: true,
        version,
        position: Some(position),
    }
}

#[tokio::test]
async fn queue_order_is_rank_order_whatever_the_arrival_order() {
    let fx = Fixture::new().await;
    let q = &fx.queues;
    // Arrivals 0..6 min of mixed tiers; with targets A 15m, B 1h, C 4h the due times decide.
    let tickets = [
        ticket("c-early", "support", Tier::C, 0),
        ticket("b-early", "support", Tier::B, 1),
        ticket("a-late", "support", Tier::A, 6),
        ticket("c-late", "support", Tier::C, 5),
        ticket("a-early", "support", Tier::A, 2),
        ticket("b-late", "support", Tier::B, 4),
    ];
    // Enqueue in an order unrelated to both arrival and rank.
    for i in [3, 0, 5, 2, 4, 1] {
        let synced = q.enqueue(&tickets[i], 1).await.expect("enqueue");
        assert!(synced.applied);
    }
    let mut expected: Vec<RankKey> = tickets.iter().map(TicketRef::rank_key).collect();
    expected.sort();
    let head = q.head("support", 10).await.expect("head");
    assert_eq!(
        head, expected,
        "decoded entries equal the rank keys, in order"
    );
    assert_eq!(
        ids(&head),
        [
            "a-early", "a-late", "b-early", "b-late", "c-early", "c-late"
        ]
    );
    assert_eq!(
        ids(&q.head("support", 2).await.expect("head")),
        ["a-early", "a-late"]
    );
    assert!(q.head("support", 0).await.expect("head").is_empty());
    assert_eq!(q.depth("support").await.expect("depth"), 6);
    assert_eq!(q.depth("billing").await.expect("depth"), 0);
    fx.cleanup().await;
}

#[tokio::test]
async fn positions_are_one_based_and_follow_the_order() {
    let fx = Fixture::new().await;
    let q = &fx.queues;
    let c = ticket("c", "support", Tier::C, 0);
    let b = ticket("b", "support", Tier::B, 0);
    let a = ticket("a", "support", Tier::A, 0);
    assert_eq!(q.enqueue(&c, 1).await.expect("enqueue"), applied(1, 1));
    assert_eq!(q.enqueue(&b, 1).await.expect("enqueue"), applied(1, 1));
    assert_eq!(q.enqueue(&a, 1).await.expect("enqueue"), applied(1, 1));
    for (id, position) in [("a", 1), ("b", 2), ("c", 3)] {
        assert_eq!(q.position(id).await.expect("position"), Some(position));
    }
    let head = q.head("support", 3).await.expect("head");
    for (i, key) in head.iter().enumerate() {
        let position = q.position(key.ticket_id()).await.expect("position");
        assert_eq!(position, Some(i as u64 + 1));
    }
    assert_eq!(q.position("unknown").await.expect("position"), None);
    fx.cleanup().await;
}

#[tokio::test]
async fn a_newer_version_with_an_escalation_re_ranks_the_ticket() {
    let fx = Fixture::new().await;
    let q = &fx.queues;
    let mut c = ticket("c", "support", Tier::C, 0);
    q.enqueue(&ticket("a", "support", Tier::A, 0), 1)
        .await
        .expect("enqueue");
    q.enqueue(&c, 1).await.expect("enqueue");
    assert_eq!(q.position("c").await.expect("position"), Some(2));

    c.escalation_level = 1;
    assert_eq!(q.enqueue(&c, 2).await.expect("enqueue"), applied(2, 1));
    let head = q.head("support", 10).await.expect("head");
    assert_eq!(
        ids(&head),
        ["c", "a"],
        "one entry per ticket, escalated first"
    );
    assert_eq!(head[0].escalation_level(), 1);
    assert_eq!(
        q.ticket("c").await.expect("ticket"),
        Some(Held::Queued {
            version: 2,
            ticket: Box::new(c.clone())
        })
    );
    fx.cleanup().await;
}

#[tokio::test]
async fn an_older_or_equal_version_is_ignored() {
    let fx = Fixture::new().await;
    let q = &fx.queues;
    let mut t = ticket("t", "support", Tier::B, 0);
    t.escalation_level = 2;
    q.enqueue(&t, 5).await.expect("enqueue");
    let key_at_5 = t.rank_key();

    let mut older = t.clone();
    older.escalation_level = 0;
    older.tier = Tier::C;
    let synced = q.enqueue(&older, 4).await.expect("enqueue");
    assert_eq!(
        synced,
        Synced {
            applied: false,
            version: 5,
            position: Some(1)
        }
    );
    assert_eq!(q.head("support", 10).await.expect("head"), [key_at_5]);
    assert_eq!(
        q.ticket("t").await.expect("ticket"),
        Some(Held::Queued {
            version: 5,
            ticket: Box::new(t)
        })
    );
    fx.cleanup().await;
}

#[tokio::test]
async fn enqueue_is_idempotent() {
    let fx = Fixture::new().await;
    let q = &fx.queues;
    let t = ticket("t", "support", Tier::A, 0);
    assert_eq!(q.enqueue(&t, 1).await.expect("enqueue"), applied(1, 1));
    let again = q.enqueue(&t, 1).await.expect("enqueue");
    assert_eq!(
        again,
        Synced {
            applied: false,
            version: 1,
            position: Some(1)
        }
    );
    assert_eq!(q.depth("support").await.expect("depth"), 1);
    fx.cleanup().await;
}

#[tokio::test]
async fn a_removed_ticket_is_not_revived_by_a_late_older_enqueue() {
    let fx = Fixture::new().await;
    let q = &fx.queues;
    let t = ticket("t", "support", Tier::A, 0);
    q.enqueue(&t, 3).await.expect("enqueue");
    let removed = q.remove("t", 4).await.expect("remove");
    assert_eq!(
        removed,
        Synced {
            applied: true,
            version: 4,
            position: None
        }
    );
    assert_eq!(q.depth("support").await.expect("depth"), 0);

    // Late calls from before the removal, and a repeated removal.
    for version in [3, 4] {
        let late = q.enqueue(&t, version).await.expect("enqueue");
        assert!(!late.applied);
        assert_eq!((late.version, late.position), (4, None));
    }
    assert!(!q.remove("t", 4).await.expect("remove").applied);
    assert_eq!(q.depth("support").await.expect("depth"), 0);
    assert_eq!(q.position("t").await.expect("position"), None);
    assert_eq!(
        q.ticket("t").await.expect("ticket"),
        Some(Held::Removed { version: 4 })
    );

    // The tombstone expires in 24 hours.
    let mut conn = fx.conn().await;
    let ttl: i64 = conn.ttl(q.keys().ticket("t")).await.expect("ttl");
    assert!((86_000..=86_400).contains(&ttl), "ttl {ttl}");

    // A newer version (the ticket reopened) queues it again, without the tombstone's expiry.
    assert_eq!(q.enqueue(&t, 5).await.expect("enqueue"), applied(5, 1));
    let ttl: i64 = conn.ttl(q.keys().ticket("t")).await.expect("ttl");
    assert_eq!(ttl, -1);
    fx.cleanup().await;
}

#[tokio::test]
async fn a_removal_that_overtakes_the_enqueue_wins() {
    let fx = Fixture::new().await;
    let q = &fx.queues;
    assert!(q.remove("t", 2).await.expect("remove").applied);
    let late = q
        .enqueue(&ticket("t", "support", Tier::A, 0), 1)
        .await
        .expect("enqueue");
    assert!(!late.applied);
    assert_eq!(q.depth("support").await.expect("depth"), 0);
    fx.cleanup().await;
}

#[tokio::test]
async fn a_department_transfer_moves_the_entry() {
    let fx = Fixture::new().await;
    let q = &fx.queues;
    let mut t = ticket("t", "support", Tier::B, 0);
    q.enqueue(&t, 1).await.expect("enqueue");
    t.department = "billing".into();
    assert_eq!(q.enqueue(&t, 2).await.expect("enqueue"), applied(2, 1));
    assert_eq!(q.depth("support").await.expect("depth"), 0);
    assert_eq!(ids(&q.head("billing", 5).await.expect("head")), ["t"]);
    // An older sync naming the old department finds the ticket where it is now.
    let mut old = t.clone();
    old.department = "support".into();
    let late = q.enqueue(&old, 1).await.expect("enqueue");
    assert_eq!((late.applied, late.position), (false, Some(1)));
    assert!(q.remove("t", 3).await.expect("remove").applied);
    assert_eq!(q.depth("billing").await.expect("depth"), 0);
    fx.cleanup().await;
}

#[tokio::test]
async fn concurrent_enqueues_end_consistent() {
    let fx = Fixture::new().await;
    // 32 tasks: 8 tickets, each synced by 4 tasks with versions 1..=4 in racing order; every
    // version changes the escalation level and odd versions move the ticket to "billing".
    let mut tasks = Vec::new();
    for task in 0..32_i64 {
        let q = fx.queues.clone();
        tasks.push(tokio::spawn(async move {
            let n = task % 8;
            let version = task / 8 + 1;
            let department = if version % 2 == 1 {
                "billing"
            } else {
                "support"
            };
            let mut t = ticket(&format!("t{n}"), department, Tier::ALL[(n % 3) as usize], n);
            t.escalation_level = (version % 3) as u32;
            q.enqueue(&t, version).await.expect("enqueue");
            // Keep one more racing call per task: a stale repeat.
            q.enqueue(&t, 1).await.expect("stale enqueue");
        }));
    }
    for task in futures::future::join_all(tasks).await {
        task.expect("task");
    }

    let q = &fx.queues;
    // Version 4 won for every ticket: in "support", escalation level 1, once.
    assert_eq!(q.depth("billing").await.expect("depth"), 0);
    let head = q.head("support", 100).await.expect("head");
    let mut expected: Vec<RankKey> = (0..8_i64)
        .map(|n| {
            let mut t = ticket(&format!("t{n}"), "support", Tier::ALL[(n % 3) as usize], n);
            t.escalation_level = 1;
            t.rank_key()
        })
        .collect();
    expected.sort();
    assert_eq!(head, expected);
    for (i, key) in head.iter().enumerate() {
        let position = q.position(key.ticket_id()).await.expect("position");
        assert_eq!(position, Some(i as u64 + 1));
        match q.ticket(key.ticket_id()).await.expect("ticket") {
            Some(Held::Queued { version, .. }) => assert_eq!(version, 4),
            other => panic!("{other:?}"),
        }
    }
    fx.cleanup().await;
}

#[tokio::test]
async fn bad_input_is_rejected_before_redis() {
    let fx = Fixture::new().await;
    let q = &fx.queues;
    let t = ticket("t", "support", Tier::A, 0);
    for version in [0, -1, (1 << 53) + 1] {
        let err = q.enqueue(&t, version).await.expect_err("out of range");
        assert!(matches!(err, LiveError::InvalidArgument(_)), "{err}");
    }
    let err = q
        .enqueue(&ticket("t", "", Tier::A, 0), 1)
        .await
        .expect_err("empty department");
    assert!(matches!(err, LiveError::InvalidArgument(_)), "{err}");
    assert!(matches!(
        q.remove("", 1).await,
        Err(LiveError::InvalidArgument(_))
    ));
    fx.cleanup().await;
}

fn down_settings() -> RedisSettings {
    RedisSettings {
        connection_timeout: Duration::from_millis(300),
        response_timeout: Duration::from_millis(300),
        reconnect_retries: 1,
        max_reconnect_delay: Duration::from_millis(100),
        ..RedisSettings::new("redis://127.0.0.1:1")
    }
}

#[tokio::test]
async fn a_redis_that_is_down_is_unavailable_quickly() {
    let started = Instant::now();
    let err = live::connect(&down_settings())
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A service started while Redis is down gets the same error from each call.
    let conn = live::connect_lazy(&down_settings()).expect("lazy manager");
    let q = Queues::new(conn, Keys::new("test:down:").expect("prefix"));
    let started = Instant::now();
    let err = q
        .enqueue(&ticket("t", "support", Tier::A, 0), 1)
        .await
        .expect_err("down");
    assert!(err.is_unavailable(), "{err:?}");
    let err = q.depth("support").await.expect_err("down");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
