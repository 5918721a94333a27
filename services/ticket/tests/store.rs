//! The ticket store against a real PostgreSQL, each test on a fresh database (`#[sqlx::test]`,
//! needs `DATABASE_URL`): exactly-once intake under concurrent retries, history and outbox
//! written with every change, and an event log that never lets a reader skip an event.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sqlx::PgPool;
use tierline_ticket::domain::catalog::Catalog;
use tierline_ticket::domain::sla::SlaPolicies;
use tierline_ticket::domain::state::Move;
use tierline_ticket::domain::ticket::{
    self, Actor, ActorKind, CustomerLink, CustomerSnapshot, EventKind, Intake, MoveContext, Rules,
    Ticket,
};
use tierline_ticket::error::Error;
use tierline_ticket::store::{Mutation, PgStore};
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;
use uuid::Uuid;

fn rules() -> Rules {
    Rules {
        catalog: Catalog::default(),
        policies: SlaPolicies::default(),
        default_tier: Tier::C,
    }
}

fn store(pool: PgPool) -> PgStore {
    // The wire snapshot is the API's business; here the ticket's version stands in for it.
    PgStore::new(
        pool,
        Arc::new(|t: &Ticket| t.version.to_be_bytes().to_vec()),
    )
}

fn intake(key: &str) -> Intake {
    Intake {
        idempotency_key: key.into(),
        channel: Channel::Voice,
        ticket_type: None,
        category: "billing".into(),
        severity: None,
        subject: String::new(),
        description: "charged twice".into(),
        language_code: String::new(),
        customer_emotion: None,
        desired_outcome: String::new(),
        tags: vec![],
        attributes: BTreeMap::new(),
        own_skills: vec![],
        caller: None,
        follow_up_of: None,
    }
}

fn customer() -> CustomerLink {
    CustomerLink::Resolved {
        id: Uuid::now_v7(),
        snapshot: CustomerSnapshot {
            tier: Tier::B,
            key_account: false,
            account_manager_id: None,
            display_name: "Ada".into(),
            taken_at: OffsetDateTime::now_utc(),
        },
    }
}

fn open(key: &str) -> Ticket {
    ticket::open(intake(key), customer(), &rules(), OffsetDateTime::now_utc()).expect("open")
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn concurrent_retries_of_one_call_make_exactly_one_ticket(pool: PgPool) {
    let store = store(pool.clone());
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create(open("call-42"), b"same request", None, Actor::system())
                .await
        }));
    }
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for task in tasks {
        let created = task.await.expect("join").expect("create");
        ids.insert(created.ticket.id);
        if !created.replayed {
            fresh += 1;
        }
    }
    assert_eq!(ids.len(), 1, "every retry sees the same ticket");
    assert_eq!(fresh, 1, "exactly one call created it");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ticket_events WHERE kind = 'created'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(events, 1, "one CREATED event, not one per retry");
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn a_key_reused_for_a_different_request_is_refused(pool: PgPool) {
    let store = store(pool);
    let first = store
        .create(open("call-7"), b"request one", None, Actor::system())
        .await
        .expect("create");
    let err = store
        .create(open("call-7"), b"request two", None, Actor::system())
        .await
        .expect_err("refused");
    match err {
        Error::FailedPrecondition {
            reason, message, ..
        } => {
            assert_eq!(reason, "IDEMPOTENCY_KEY_REUSED");
            assert!(message.contains(&first.ticket.id.to_string()));
        }
        other => panic!("expected FAILED_PRECONDITION, got {other:?}"),
    }
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn every_change_is_saved_with_its_history_in_order(pool: PgPool) {
    let store = store(pool);
    let rules = rules();
    let created = store
        .create(open("call-1"), b"r", None, Actor::system())
        .await
        .expect("create");
    let id = created.ticket.id;
    let now = OffsetDateTime::now_utc();
    let routing = Actor {
        kind: ActorKind::Service,
        id: "routing".into(),
    };
    for (mv, ctx) in [
        (Move::Enqueue, MoveContext::default()),
        (
            Move::Assign,
            MoveContext {
                agent_id: Some("agent-1".into()),
                reservation_id: Some(Uuid::now_v7()),
                ..Default::default()
            },
        ),
    ] {
        store
            .mutate(id, None, now, |t| {
                let events = ticket::apply_move(t, mv, ctx, &routing, &rules, now)
                    .map_err(|e| Error::Corrupt(e.to_string()))?;
                Ok(Mutation { events, value: () })
            })
            .await
            .expect("move");
    }
    let stored = store.get(id).await.expect("get");
    assert_eq!(stored.state.as_str(), "assigned");
    assert_eq!(stored.assigned_agent_id.as_deref(), Some("agent-1"));
    assert_eq!(stored.version, 3);
    assert!(
        stored.sla.first_response_at.is_some(),
        "a voice answer is the first response"
    );

    let history = store.history(id, 0, 100).await.expect("history");
    let kinds: Vec<EventKind> = history.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Created,
            EventKind::StateChanged,
            EventKind::Assigned
        ]
    );
    let versions: Vec<i64> = history.iter().map(|e| e.ticket_version).collect();
    assert_eq!(versions, [1, 2, 3]);
    assert!(history.windows(2).all(|w| w[0].sequence < w[1].sequence));

    // A stale version is refused and changes nothing.
    let err = store
        .mutate(id, Some(2), now, |_| {
            Ok(Mutation {
                events: vec![],
                value: (),
            })
        })
        .await
        .expect_err("stale");
    assert!(matches!(err, Error::StaleVersion { actual: 3, .. }));
    // A change that decides nothing writes nothing.
    let (same, ()) = store
        .mutate(id, Some(3), now, |_| {
            Ok(Mutation {
                events: vec![],
                value: (),
            })
        })
        .await
        .expect("no-op");
    assert_eq!(same.version, 3);
    assert_eq!(store.history(id, 0, 100).await.expect("history").len(), 3);
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn a_reader_never_skips_an_event_committed_late(pool: PgPool) {
    let store = store(pool.clone());
    store
        .create(open("early"), b"r", None, Actor::system())
        .await
        .expect("create");
    let first = store.events_after(0, 100).await.expect("read");
    assert_eq!(first.len(), 1);
    let cursor = first[0].0.sequence;
    assert_eq!(
        first[0].1.as_deref(),
        Some(1i64.to_be_bytes().as_slice()),
        "snapshot kept"
    );

    // A transaction that has written but not committed...
    let mut slow = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO relay_cursors (name) VALUES ('held')")
        .execute(&mut *slow)
        .await
        .expect("write");
    // ...then a later ticket commits first.
    store
        .create(open("late"), b"r", None, Actor::system())
        .await
        .expect("create");
    // Its event is held back while an older transaction could still add events before it.
    assert!(
        store
            .events_after(cursor, 100)
            .await
            .expect("read")
            .is_empty()
    );
    slow.commit().await.expect("commit");
    // Transactions of other tests on this server hold the horizon back too; wait them out.
    let mut next = Vec::new();
    for _ in 0..100 {
        next = store.events_after(cursor, 100).await.expect("read");
        if !next.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(next.len(), 1);
    assert!(next[0].0.sequence > cursor);
    assert_eq!(
        store.latest_sequence().await.expect("latest"),
        next[0].0.sequence
    );
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn unknown_tickets_are_not_found(pool: PgPool) {
    let store = store(pool);
    let missing = tierline_ticket::domain::ticket::TicketId(Uuid::now_v7());
    assert!(matches!(
        store.get(missing).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.history(missing, 0, 10).await,
        Err(Error::NotFound { .. })
    ));
    let number = tierline_ticket::domain::ticket::TicketNumber::parse("T-0000-0001").expect("n");
    assert!(matches!(
        store.get_by_number(&number).await,
        Err(Error::NotFound { .. })
    ));
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn the_timer_escalates_a_missed_first_response_once_and_records_the_outcome_once(
    pool: PgPool,
) {
    let rules = Arc::new(rules());
    let store = PgStore::new(
        pool.clone(),
        Arc::new(|t: &Ticket| t.version.to_be_bytes().to_vec()),
    );
    // The customer service is never called by the timer; a lazy client to nowhere suffices.
    let customers =
        tierline_ticket::customers::Customers::new(&tierline_ticket::config::PeerConfig::default())
            .expect("client");
    let tickets = tierline_ticket::service::Tickets::new(store.clone(), rules.clone(), customers);
    let mut email = intake("mail-1");
    email.channel = Channel::Email;
    let opened = ticket::open(email, customer(), &rules, OffsetDateTime::now_utc()).expect("open");
    let before = opened.priority;
    let id = store
        .create(opened, b"r", None, Actor::system())
        .await
        .expect("create")
        .ticket
        .id;

    // Nothing is due now.
    tierline_ticket::workers::run_timers(&tickets, OffsetDateTime::now_utc())
        .await
        .expect("timers");
    assert_eq!(store.get(id).await.expect("get").priority, before);

    // A week later the first response is long overdue: escalated once.
    let later = OffsetDateTime::now_utc() + time::Duration::days(7);
    for _ in 0..3 {
        tierline_ticket::workers::run_timers(&tickets, later)
            .await
            .expect("timers");
    }
    let t = store.get(id).await.expect("get");
    assert!(
        t.priority >= before + 100,
        "escalated: {} -> {}",
        before,
        t.priority
    );
    let breaches: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ticket_events WHERE ticket_id = $1 AND kind = 'sla_breached' \
         AND reason = 'sla_first_response_breached'",
    )
    .bind(id.0)
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(breaches, 1, "one escalation per missed target");
    let outcomes: Vec<(String, String)> =
        sqlx::query_as("SELECT target, outcome FROM ticket_sla_outcomes WHERE ticket_id = $1")
            .bind(id.0)
            .fetch_all(&pool)
            .await
            .expect("outcomes");
    assert!(outcomes.contains(&("first_response".into(), "breached".into())));
}
