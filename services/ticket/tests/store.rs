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

    // A writer that has drawn its event's sequence but not committed holds the append lock...
    let mut slow = pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(tierline_ticket::store::EVENT_APPEND_LOCK)
        .execute(&mut *slow)
        .await
        .expect("lock");
    // ...so a later ticket cannot draw a higher sequence and commit before it.
    let later = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .create(open("late"), b"r", None, Actor::system())
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!later.is_finished(), "the later append waits");
    assert!(
        store
            .events_after(cursor, 100)
            .await
            .expect("read")
            .is_empty()
    );
    slow.commit().await.expect("commit");
    later.await.expect("task").expect("create");
    let next = store.events_after(cursor, 100).await.expect("read");
    assert_eq!(next.len(), 1);
    assert!(next[0].0.sequence > cursor);
    assert_eq!(
        store.latest_sequence().await.expect("latest"),
        next[0].0.sequence
    );
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn a_reader_paging_during_concurrent_writes_sees_every_event(pool: PgPool) {
    let store = store(pool.clone());
    let writers: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create(open(&format!("w{i}")), b"r", None, Actor::system())
                    .await
                    .expect("create");
            })
        })
        .collect();
    // Page through the log while the writers commit in whatever order they finish.
    let mut seen = Vec::new();
    let mut cursor = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.len() < 40 && std::time::Instant::now() < deadline {
        for (event, _) in store.events_after(cursor, 7).await.expect("read") {
            cursor = event.sequence;
            seen.push(event.sequence);
        }
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.expect("writer");
    }
    let all: Vec<i64> = sqlx::query_scalar("SELECT sequence FROM ticket_events ORDER BY sequence")
        .fetch_all(&pool)
        .await
        .expect("all");
    assert_eq!(seen, all, "no event passed over");
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

/// Reads the tickets touched after `cursor` once the events are readable: transactions of other
/// tests on this server hold the horizon back for a moment.
async fn touched_after(
    store: &PgStore,
    cursor: i64,
    events: usize,
) -> tierline_ticket::store::TouchedTickets {
    for _ in 0..100 {
        let batch = store
            .tickets_touched_after(cursor, 200)
            .await
            .expect("touched");
        if batch.events >= events {
            return batch;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{events} events after {cursor} never became readable");
}

fn routing_actor() -> Actor {
    Actor {
        kind: ActorKind::Service,
        id: "routing".into(),
    }
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn the_routing_relay_sends_each_touched_ticket_once_and_resumes_after_what_was_delivered(
    pool: PgPool,
) {
    use tierline_ticket::workers::{ROUTING_RELAY, cursor_after};

    let store = store(pool);
    let rules = rules();
    let a = store
        .create(open("call-a"), b"r", None, Actor::system())
        .await
        .expect("create a")
        .ticket
        .id;
    let b = store
        .create(open("call-b"), b"r", None, Actor::system())
        .await
        .expect("create b")
        .ticket
        .id;
    let now = OffsetDateTime::now_utc();
    store
        .mutate(a, None, now, |t| {
            let events = ticket::apply_move(
                t,
                Move::Enqueue,
                MoveContext::default(),
                &routing_actor(),
                &rules,
                now,
            )
            .map_err(|e| Error::Corrupt(e.to_string()))?;
            Ok(Mutation { events, value: () })
        })
        .await
        .expect("enqueue a");

    // The first claim creates the cursor at the start of the log; one replica holds it.
    let first = store
        .claim_relay(ROUTING_RELAY)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(first.cursor(), 0);
    first.commit(0).await.expect("release");
    let claim = store
        .claim_relay(ROUTING_RELAY)
        .await
        .expect("claim")
        .expect("free");
    assert!(
        store
            .claim_relay(ROUTING_RELAY)
            .await
            .expect("claim")
            .is_none(),
        "another replica skips its pass"
    );

    // Three events (a created, b created, a queued): two tickets, each once, by first event,
    // each as it is now.
    let batch = touched_after(&store, claim.cursor(), 3).await;
    assert_eq!(batch.events, 3);
    let order: Vec<_> = batch.tickets.iter().map(|(_, t)| t.id).collect();
    assert_eq!(order, [a, b]);
    let (first_a, ticket_a) = &batch.tickets[0];
    let (first_b, _) = &batch.tickets[1];
    assert!(first_a < first_b && *first_b < batch.last_sequence);
    assert_eq!(
        ticket_a.version, 2,
        "the current state, not the first event's"
    );
    assert_eq!(ticket_a.state.as_str(), "queued");

    // a reached the router, b did not: the cursor stops just before b's first event.
    let resume = cursor_after(&batch, &[true, false]);
    assert_eq!(resume, first_b - 1);
    claim.commit(resume).await.expect("commit");

    // Next pass: b's creation and a's queueing again, so b first this time.
    let claim = store
        .claim_relay(ROUTING_RELAY)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(claim.cursor(), resume);
    let again = touched_after(&store, claim.cursor(), 2).await;
    assert_eq!(again.events, 2);
    let order: Vec<_> = again.tickets.iter().map(|(_, t)| t.id).collect();
    assert_eq!(order, [b, a]);
    let end = cursor_after(&again, &[true, true]);
    assert_eq!(end, batch.last_sequence);
    claim.commit(end).await.expect("commit");

    // Everything delivered: nothing to send, the cursor stays.
    let claim = store
        .claim_relay(ROUTING_RELAY)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(claim.cursor(), end);
    let empty = store
        .tickets_touched_after(claim.cursor(), 200)
        .await
        .expect("touched");
    assert_eq!((empty.events, empty.tickets.len()), (0, 0));
    assert_eq!(empty.last_sequence, end);
    // A cursor never goes back.
    claim.commit(0).await.expect("commit");
    let claim = store
        .claim_relay(ROUTING_RELAY)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(claim.cursor(), end);
    // Other relays keep their own cursors.
    let timeline = store
        .claim_relay("customer_timeline")
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(timeline.cursor(), 0);
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn a_ticket_the_router_has_is_queued_once_by_the_routing_service(pool: PgPool) {
    let rules = Arc::new(rules());
    let store = store(pool);
    let customers =
        tierline_ticket::customers::Customers::new(&tierline_ticket::config::PeerConfig::default())
            .expect("client");
    let tickets = tierline_ticket::service::Tickets::new(store.clone(), rules, customers);
    let id = store
        .create(open("call-q"), b"r", None, Actor::system())
        .await
        .expect("create")
        .ticket
        .id;

    let queued = tickets.enqueue(id).await.expect("enqueue");
    assert_eq!(queued.state.as_str(), "queued");
    assert_eq!(queued.version, 2);
    // A repeat (the relay sending the ticket again) changes nothing.
    let again = tickets.enqueue(id).await.expect("repeat");
    assert_eq!(again.version, 2);
    let history = store.history(id, 0, 100).await.expect("history");
    assert_eq!(history.len(), 2);
    let step = &history[1];
    assert_eq!(step.event.kind, EventKind::StateChanged);
    assert_eq!(step.event.actor, routing_actor());
    assert_eq!(
        (step.event.from.as_str(), step.event.to.as_str()),
        ("new", "queued")
    );

    // An assigned ticket (the router answered after an agent took it) stays as it is.
    let assigned = tickets
        .assign(id, "agent-1".into(), Uuid::now_v7(), None, routing_actor())
        .await
        .expect("assign");
    let after = tickets.enqueue(id).await.expect("late answer");
    assert_eq!(after.version, assigned.version);
    assert_eq!(after.state.as_str(), "assigned");
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn while_the_router_is_down_the_relay_keeps_its_place_and_tickets_stay_new(pool: PgPool) {
    use tierline_ticket::config::RoutingServiceConfig;
    use tierline_ticket::routing::{Router, SyncError};
    use tierline_ticket::workers::{ROUTING_RELAY, relay_routing};

    let rules = Arc::new(rules());
    let store = store(pool);
    let customers =
        tierline_ticket::customers::Customers::new(&tierline_ticket::config::PeerConfig::default())
            .expect("client");
    let tickets = tierline_ticket::service::Tickets::new(store.clone(), rules, customers);
    // No router: a port just released, nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let router = Router::new(&RoutingServiceConfig {
        endpoint: format!("http://127.0.0.1:{port}"),
        timeout: std::time::Duration::from_millis(300),
    })
    .expect("config")
    .expect("enabled");
    let id = store
        .create(open("call-down"), b"r", None, Actor::system())
        .await
        .expect("create")
        .ticket
        .id;
    touched_after(&store, 0, 1).await;

    let pass = relay_routing(&tickets, &router).await.expect("pass");
    assert_eq!(pass.events, 1);
    assert_eq!(pass.delivered, 0);
    assert!(
        matches!(pass.stalled, Some(SyncError::Unavailable(_))),
        "{pass:?}"
    );
    assert_eq!(store.get(id).await.expect("get").state.as_str(), "new");
    let claim = store
        .claim_relay(ROUTING_RELAY)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(claim.cursor(), 0, "the undelivered event is read again");
}
