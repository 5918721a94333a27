//! The behaviour of a ticket store, one suite for every store. Each test is an `async fn` over
//! any [`TicketStore`]; `conformance!` runs it on PostgreSQL (`pg::`, a fresh database per test
//! through `#[sqlx::test]`, needs `DATABASE_URL`), on SQLite in memory (`sqlite_memory::`, one
//! connection) and on a SQLite file (`sqlite_file::`, several connections on a multi-threaded
//! runtime, so concurrent calls really contend for the writer).
//!
//! What they hold the stores to: exactly-once intake under concurrent retries, history and
//! outbox written with every change, an event log that never lets a reader skip an event, and
//! every query the service makes. A few tests are about one store's machinery and run on it
//! alone (`pg_only`, `sqlite_only`).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tierline_ticket::customers::Customers;
use tierline_ticket::domain::catalog::Catalog;
use tierline_ticket::domain::sla::{HoldReason, SlaPolicies, SlaStatus};
use tierline_ticket::domain::state::{CancelReason, Move, TicketState};
use tierline_ticket::domain::ticket::{
    self, Actor, ActorKind, CallerIdentity, Comment, Compensation, CompensationKind,
    CustomerEmotion, CustomerLink, CustomerSnapshot, EventKind, Intake, LinkKind, MoveContext,
    NewEvent, RecordedFollowUp, Rules, Ticket, TicketId, TicketNumber, TriageLabel, Visibility,
};
use tierline_ticket::error::Error;
use tierline_ticket::service::Tickets;
use tierline_ticket::store::{
    Mutation, PairWrites, PgStore, RelayCursor, SlaOutcome, Snapshotter, SqliteStore, TicketFilter,
    TicketOrder, TicketStore, TouchedTickets,
};
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Runs each named test body on every store.
macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        mod pg {
            use sqlx::PgPool;
            use tierline_ticket::store::PgStore;
            $(
                #[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
                async fn $name(pool: PgPool) {
                    super::$name(&PgStore::new(pool, super::snapshotter())).await;
                }
            )+
        }

        mod sqlite_memory {
            use tierline_ticket::store::SqliteStore;
            $(
                #[tokio::test]
                async fn $name() {
                    let store = SqliteStore::in_memory(super::snapshotter())
                        .await
                        .expect("open in memory");
                    super::$name(&store).await;
                }
            )+
        }

        mod sqlite_file {
            use tierline_ticket::store::SqliteStore;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("temporary directory");
                    let store = SqliteStore::open(dir.path().join("ticket.db"), super::snapshotter())
                        .await
                        .expect("open a new file");
                    super::$name(&store).await;
                    store.close().await;
                }
            )+
        }
    };
}

conformance!(
    concurrent_retries_of_one_call_make_exactly_one_ticket,
    a_key_reused_for_a_different_request_is_refused,
    a_taken_number_is_drawn_again,
    a_ticket_reads_back_exactly_as_written,
    every_change_is_saved_with_its_history_in_order,
    a_reader_paging_during_concurrent_writes_sees_every_event,
    commits_that_append_events_wake_the_feed,
    unknown_tickets_are_not_found,
    list_filters_orders_and_pages_every_ticket_once,
    a_follow_up_links_both_ways_and_needs_the_ticket_it_follows,
    links_and_unlinks_change_both_tickets,
    comments_page_by_visibility_and_include_merged_tickets,
    a_comment_key_replays_the_first_comment_and_refuses_another_request,
    snapshots_are_pruned_oldest_first_and_history_stays,
    pending_customers_are_listed_oldest_first_until_resolved,
    timers_are_due_soonest_first_and_rescheduled_only_at_the_same_version,
    sla_outcomes_are_recorded_once_per_target,
    the_timer_escalates_a_missed_first_response_once_and_records_the_outcome_once,
    a_relay_claim_has_one_holder_who_may_change_tickets_meanwhile,
    the_routing_relay_sends_each_touched_ticket_once_and_resumes_after_what_was_delivered,
    a_ticket_the_router_has_is_queued_once_by_the_routing_service,
    while_the_router_is_down_the_relay_keeps_its_place_and_tickets_stay_new,
    a_change_to_a_known_ticket_is_written_only_at_the_version_known,
);

// ---- what a test needs from a store beyond the trait ------------------------------------------

/// Looks the trait does not offer, for assertions.
trait Inspect: TicketStore {
    /// The recorded SLA outcomes of `id`, as (target, outcome), by target.
    fn outcomes(&self, id: TicketId) -> impl Future<Output = Vec<(String, String)>> + Send;

    /// Connects the feed to every writer's commits, if the store needs that (PostgreSQL's
    /// LISTEN), and returns once connected.
    fn follow_feed(&self) -> impl Future<Output = Option<JoinHandle<()>>> + Send;
}

const OUTCOMES: &str =
    "SELECT target, outcome FROM ticket_sla_outcomes WHERE ticket_id = $1 ORDER BY target";

impl Inspect for PgStore {
    async fn outcomes(&self, id: TicketId) -> Vec<(String, String)> {
        sqlx::query_as(OUTCOMES)
            .bind(id.0)
            .fetch_all(self.pool())
            .await
            .expect("outcomes")
    }

    async fn follow_feed(&self) -> Option<JoinHandle<()>> {
        let mut connected = self.feed().subscribe();
        let task = self.spawn_log_tasks();
        // The listener bumps the feed once it listens.
        tokio::time::timeout(Duration::from_secs(10), connected.changed())
            .await
            .expect("listening")
            .expect("feed open");
        Some(task)
    }
}

impl Inspect for SqliteStore {
    async fn outcomes(&self, id: TicketId) -> Vec<(String, String)> {
        sqlx::query_as(OUTCOMES)
            .bind(id.0)
            .fetch_all(self.pool())
            .await
            .expect("outcomes")
    }

    async fn follow_feed(&self) -> Option<JoinHandle<()>> {
        // Every writer is this store: it bumps the feed itself.
        None
    }
}

// ---- helpers --------------------------------------------------------------------------------

fn rules() -> Rules {
    Rules {
        catalog: Catalog::default(),
        policies: SlaPolicies::default(),
        default_tier: Tier::C,
    }
}

/// The wire snapshot is the API's business; here the ticket's version stands in for it.
fn snapshotter() -> Snapshotter {
    Arc::new(|t: &Ticket| t.version.to_be_bytes().to_vec())
}

fn tickets<S: TicketStore>(store: &S) -> Tickets<S> {
    // The customer service is never called by these tests; a lazy client to nowhere suffices.
    let customers =
        Customers::new(&tierline_ticket::config::PeerConfig::default()).expect("client");
    Tickets::new(store.clone(), Arc::new(rules()), customers)
}

/// Now, to the microsecond: what both databases keep, so a ticket made at this time reads back
/// equal.
fn micros_now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .expect("valid nanoseconds")
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

fn resolved(id: Uuid, tier: Tier, key_account: bool, at: OffsetDateTime) -> CustomerLink {
    CustomerLink::Resolved {
        id,
        snapshot: CustomerSnapshot {
            tier,
            key_account,
            account_manager_id: None,
            display_name: "Ada".into(),
            taken_at: at,
        },
    }
}

fn customer() -> CustomerLink {
    resolved(Uuid::now_v7(), Tier::B, false, micros_now())
}

fn open(key: &str) -> Ticket {
    open_at(key, micros_now())
}

fn open_at(key: &str, at: OffsetDateTime) -> Ticket {
    ticket::open(
        intake(key),
        resolved(Uuid::now_v7(), Tier::B, false, at),
        &rules(),
        at,
    )
    .expect("open")
}

async fn create<S: TicketStore>(store: &S, t: Ticket) -> Ticket {
    let created = store
        .create(t, b"r", None, Actor::system())
        .await
        .expect("create");
    assert!(!created.replayed);
    created.ticket
}

fn routing_actor() -> Actor {
    Actor {
        kind: ActorKind::Service,
        id: "routing".into(),
    }
}

/// Applies `mv` through the store, as the service would.
async fn apply<S: TicketStore>(store: &S, id: TicketId, mv: Move, ctx: MoveContext) -> Ticket {
    let rules = rules();
    let now = OffsetDateTime::now_utc();
    store
        .mutate(id, None, now, |t| {
            let events = ticket::apply_move(t, mv, ctx, &routing_actor(), &rules, now)
                .map_err(|e| Error::Corrupt(e.to_string()))?;
            Ok(Mutation { events, value: () })
        })
        .await
        .expect("move")
        .0
}

/// A change that records one UPDATED event, as the service's updates do.
async fn touch<S: TicketStore>(
    store: &S,
    id: TicketId,
    change: impl FnOnce(&mut Ticket) + Send,
) -> Ticket {
    // To the microsecond, so the returned ticket equals the stored one.
    let now = micros_now();
    store
        .mutate(id, None, now, |t| {
            change(t);
            ticket::touch(t, now);
            let mut event = NewEvent::on(t, EventKind::Updated, Actor::system(), "test");
            event.changed_fields = vec!["subject".into(), "tags".into()];
            Ok(Mutation {
                events: vec![event],
                value: (),
            })
        })
        .await
        .expect("change")
        .0
}

fn no_change(_: &mut Ticket) -> tierline_ticket::error::Result<Mutation<()>> {
    Ok(Mutation {
        events: vec![],
        value: (),
    })
}

fn everything(page_size: u32) -> TicketFilter {
    TicketFilter {
        states: vec![],
        tiers: vec![],
        departments: vec![],
        categories: vec![],
        assigned_agent_id: None,
        customer_id: None,
        sla_statuses: vec![],
        created_from: None,
        created_before: None,
        key_account: None,
        order: TicketOrder::CreatedAsc,
        page_size,
    }
}

/// Every ticket `filter` matches, page by page through the keyset cursor.
async fn list_all<S: TicketStore>(store: &S, filter: &TicketFilter) -> Vec<Ticket> {
    let size = filter.page_size as usize;
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let mut page = store.list(filter, after).await.expect("list");
        assert!(page.len() <= size + 1, "at most one more than a page");
        let more = page.len() > size;
        page.truncate(size);
        if let Some(last) = page.last() {
            after = Some((last.created_at, last.id.0));
        }
        all.extend(page);
        if !more {
            return all;
        }
    }
}

/// The latest position, once everything committed is published.
async fn latest_published<S: TicketStore>(store: &S) -> i64 {
    store.publish().await.expect("publish");
    store.latest_sequence().await.expect("latest")
}

async fn all_events<S: TicketStore>(
    store: &S,
) -> Vec<tierline_ticket::domain::ticket::RecordedEvent> {
    store.publish().await.expect("publish");
    store
        .events_after(0, 100_000)
        .await
        .expect("events")
        .into_iter()
        .map(|(e, _)| e)
        .collect()
}

fn comment(ticket: TicketId, body: &str, visibility: Visibility, at: OffsetDateTime) -> Comment {
    Comment {
        id: Uuid::now_v7(),
        ticket_id: ticket,
        visibility,
        author: Actor {
            kind: ActorKind::Agent,
            id: "agent-1".into(),
        },
        body: body.into(),
        channel: Channel::Email,
        first_response: false,
        created_at: at,
    }
}

/// Adds a comment that records a COMMENT_ADDED event, as the service's do.
async fn add_comment<S: TicketStore>(
    store: &S,
    c: Comment,
    key: Option<(&str, &[u8])>,
) -> tierline_ticket::error::Result<Comment> {
    let at = c.created_at;
    store
        .add_comment(
            c,
            key.map(|(k, f)| (k.to_owned(), f.to_vec())),
            at,
            |t, c| {
                let mut added =
                    NewEvent::on(t, EventKind::CommentAdded, c.author.clone(), "public");
                added.comment_id = Some(c.id);
                Ok(vec![added])
            },
        )
        .await
}

/// Reads the tickets touched after `cursor` once `events` events are readable.
async fn touched_after<S: TicketStore>(store: &S, cursor: i64, events: usize) -> TouchedTickets {
    for _ in 0..100 {
        store.publish().await.expect("publish");
        let batch = store
            .tickets_touched_after(cursor, 200)
            .await
            .expect("touched");
        if batch.events >= events {
            return batch;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{events} events after {cursor} never became readable");
}

/// Claims `name`, waiting for a released claim to be free: PostgreSQL ends a dropped claim's
/// transaction in the background.
async fn claim_when_free<S: TicketStore>(store: &S, name: &str) -> S::Claim {
    for _ in 0..100 {
        if let Some(claim) = store.claim_relay(name).await.expect("claim") {
            return claim;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("relay {name} never became free");
}

fn ids(tickets: &[Ticket]) -> Vec<TicketId> {
    tickets.iter().map(|t| t.id).collect()
}

// ---- intake ---------------------------------------------------------------------------------

async fn concurrent_retries_of_one_call_make_exactly_one_ticket<S: TicketStore>(store: &S) {
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create(open("call-42"), b"same request", None, Actor::system())
                .await
        }));
    }
    let mut seen = HashSet::new();
    let mut fresh = 0;
    for task in tasks {
        let created = task.await.expect("join").expect("create");
        seen.insert(created.ticket.id);
        if !created.replayed {
            fresh += 1;
        }
    }
    assert_eq!(seen.len(), 1, "every retry sees the same ticket");
    assert_eq!(fresh, 1, "exactly one call created it");
    assert_eq!(list_all(store, &everything(100)).await.len(), 1);
    let created = all_events(store)
        .await
        .into_iter()
        .filter(|e| e.event.kind == EventKind::Created)
        .count();
    assert_eq!(created, 1, "one CREATED event, not one per retry");
}

async fn a_key_reused_for_a_different_request_is_refused<S: TicketStore>(store: &S) {
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
    // The same request again is a replay of the stored ticket.
    let again = store
        .create(open("call-7"), b"request one", None, Actor::system())
        .await
        .expect("replay");
    assert!(again.replayed);
    assert_eq!(again.ticket, first.ticket);
    assert_eq!(all_events(store).await.len(), 1);
}

async fn a_taken_number_is_drawn_again<S: TicketStore>(store: &S) {
    let first = create(store, open("call-n1")).await;
    let mut second = open("call-n2");
    second.number = first.number.clone();
    let second = create(store, second).await;
    assert_ne!(second.number, first.number, "a new number was drawn");
    assert_eq!(
        store
            .get_by_number(&second.number)
            .await
            .expect("by number")
            .id,
        second.id
    );
    assert_eq!(
        store
            .get_by_number(&first.number)
            .await
            .expect("by number")
            .id,
        first.id
    );
}

async fn a_ticket_reads_back_exactly_as_written<S: TicketStore>(store: &S) {
    let at = micros_now();
    let survivor = create(store, open_at("call-survivor", at)).await;
    let mut t = ticket::open(
        Intake {
            customer_emotion: Some(CustomerEmotion::Angry),
            desired_outcome: "a refund".into(),
            tags: vec!["refund".into(), "vip".into()],
            attributes: BTreeMap::from([("order".into(), "42".into()), ("sku".into(), "X".into())]),
            own_skills: vec!["german".into()],
            language_code: "de".into(),
            caller: Some(CallerIdentity {
                kind: "phone".into(),
                value: "+442079460000".into(),
                region: "GB".into(),
            }),
            ..intake("call-every-field")
        },
        CustomerLink::Resolved {
            id: Uuid::now_v7(),
            snapshot: CustomerSnapshot {
                tier: Tier::A,
                key_account: true,
                account_manager_id: Some("manager-1".into()),
                display_name: "Ada Lovelace".into(),
                taken_at: at - time::Duration::minutes(3),
            },
        },
        &rules(),
        at,
    )
    .expect("open");
    t.details.compensation = Some(Compensation {
        kind: CompensationKind::Refund,
        currency: "EUR".into(),
        micros: 12_500_000,
        note: "goodwill".into(),
    });
    t.details.root_cause = Some("billing_error".into());
    t.details.triage_label = Some(TriageLabel::Valid);
    let created = create(store, t).await;
    assert_eq!(store.get(created.id).await.expect("get"), created);
    assert_eq!(
        store
            .get_by_number(&created.number)
            .await
            .expect("by number"),
        created
    );

    // Every column a change writes, set at once (the store checks no rules).
    let later = at + time::Duration::hours(2);
    let changed = store
        .mutate(created.id, Some(1), later, |t| {
            t.state = TicketState::Cancelled;
            t.state_reason = "customer withdrew".into();
            t.hold_reason = Some(HoldReason::ThirdParty);
            t.cancel_reason = Some(CancelReason::Duplicate);
            t.assigned_agent_id = Some("agent-9".into());
            t.handler_agent_ids = vec!["agent-1".into(), "agent-9".into()];
            t.routing.preferred_agent_id = Some("agent-1".into());
            t.routing.reservation_id = Some(Uuid::now_v7());
            t.routing.enqueue_at = later;
            t.merged_into = Some(survivor.id);
            t.sla_status = SlaStatus::Breached;
            t.details.resolution_summary = "refunded".into();
            t.follow_up = Some(RecordedFollowUp {
                at: later,
                expected: 4.0,
                perceived: 3.5,
                comment: "fine".into(),
                handling_agent_id: Some("agent-9".into()),
                recorded_by: "agent-2".into(),
                on_profile: false,
            });
            t.follow_up_due_at = Some(later + time::Duration::days(3));
            t.follow_up_due_raised = true;
            t.auto_close_at = Some(later + time::Duration::days(7));
            t.resolved_at = Some(later);
            t.closed_at = Some(later);
            t.customer = CustomerLink::Pending {
                id: Some(Uuid::now_v7()),
            };
            ticket::touch(t, later);
            Ok(Mutation {
                events: vec![NewEvent::on(t, EventKind::Updated, Actor::system(), "all")],
                value: 7,
            })
        })
        .await
        .expect("change");
    assert_eq!(changed.1, 7, "the change's value comes back");
    let changed = changed.0;
    assert_eq!(changed.version, 2);
    assert_eq!(store.get(created.id).await.expect("get"), changed);
    let listed = store
        .list(
            &TicketFilter {
                states: vec![TicketState::Cancelled],
                ..everything(10)
            },
            None,
        )
        .await
        .expect("list");
    assert_eq!(listed, std::slice::from_ref(&changed));
    store.publish().await.expect("publish");
    let touched = store.tickets_touched_after(0, 100).await.expect("touched");
    assert_eq!(touched.tickets.last().map(|(_, t)| t), Some(&changed));
}

// ---- changes and the event log --------------------------------------------------------------

async fn every_change_is_saved_with_its_history_in_order<S: TicketStore>(store: &S) {
    let rules = rules();
    let id = create(store, open("call-1")).await.id;
    let now = OffsetDateTime::now_utc();
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
                let events = ticket::apply_move(t, mv, ctx, &routing_actor(), &rules, now)
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
    assert_eq!(history[1].event.actor, routing_actor());
    assert_eq!(
        (history[1].event.from, history[1].event.to),
        (TicketState::New, TicketState::Queued)
    );
    // Paging: after the first, at most one.
    let page = store
        .history(id, history[0].sequence, 1)
        .await
        .expect("page");
    assert_eq!(page, history[1..2]);
    assert!(
        store
            .history(id, history[2].sequence, 10)
            .await
            .expect("past the end")
            .is_empty()
    );

    // Each event carries the snapshot of the ticket after its change, and its changed fields.
    let touched = touch(store, id, |t| t.details.subject = "new subject".into()).await;
    assert_eq!(touched.version, 4);
    store.publish().await.expect("publish");
    let log = store.events_after(0, 100).await.expect("log");
    let snapshots: Vec<Option<Vec<u8>>> = log.iter().map(|(_, s)| s.clone()).collect();
    assert_eq!(
        snapshots,
        [1i64, 2, 3, 4].map(|v| Some(v.to_be_bytes().to_vec()))
    );
    let (last, _) = &log[3];
    assert_eq!(last.event.changed_fields, ["subject", "tags"]);
    assert_eq!(last.ticket_id, id);
    assert_eq!(latest_published(store).await, last.sequence);

    // A stale version is refused and changes nothing.
    let err = store
        .mutate(id, Some(2), now, no_change)
        .await
        .expect_err("stale");
    assert!(
        matches!(err, Error::StaleVersion { actual: 4, .. }),
        "{err:?}"
    );
    // A change that decides nothing writes nothing, even if it changed the loaded ticket.
    let (same, ()) = store
        .mutate(id, Some(4), now, |t| {
            t.details.subject = "not saved".into();
            no_change(t)
        })
        .await
        .expect("no-op");
    assert_eq!(same.version, 4);
    assert_eq!(
        store.get(id).await.expect("get").details.subject,
        "new subject"
    );
    assert_eq!(store.history(id, 0, 100).await.expect("history").len(), 4);
    // A change that fails writes nothing either.
    let err = store
        .mutate(
            id,
            None,
            now,
            |t| -> tierline_ticket::error::Result<Mutation<()>> {
                t.details.subject = "not saved".into();
                Err(Error::invalid("subject", "refused"))
            },
        )
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::InvalidArgument(_)));
    assert_eq!(store.get(id).await.expect("get"), touched);
}

async fn a_reader_paging_during_concurrent_writes_sees_every_event<S: TicketStore>(store: &S) {
    let writers: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = create(&store, open(&format!("w{i}"))).await.id;
                if i % 3 == 0 {
                    touch(&store, id, |_| {}).await;
                }
            })
        })
        .collect();
    // Page through the log while the writers commit in whatever order they finish.
    let mut seen = Vec::new();
    let mut cursor = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 54 && std::time::Instant::now() < deadline {
        // As a relay does: publish what has committed, then read.
        store.publish().await.expect("publish");
        for (event, _) in store.events_after(cursor, 7).await.expect("read") {
            cursor = event.sequence;
            seen.push(event.sequence);
        }
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.expect("writer");
    }
    let all: Vec<i64> = all_events(store).await.iter().map(|e| e.sequence).collect();
    assert_eq!(all.len(), 54);
    assert_eq!(seen, all, "no event passed over");
}

async fn commits_that_append_events_wake_the_feed<S: TicketStore + Inspect>(store: &S) {
    let listener = store.follow_feed().await;
    let mut feed = store.feed().subscribe();
    let id = create(store, open("call-feed")).await.id;
    tokio::time::timeout(Duration::from_secs(10), feed.changed())
        .await
        .expect("woken by the creation")
        .expect("feed open");
    touch(store, id, |_| {}).await;
    tokio::time::timeout(Duration::from_secs(10), feed.changed())
        .await
        .expect("woken by the change")
        .expect("feed open");
    // PostgreSQL's publisher wakes its own process at once and every replica by NOTIFY, which
    // echoes back here: let the echo pass before watching for silence.
    tokio::time::sleep(Duration::from_millis(300)).await;
    feed.borrow_and_update();
    // Writes without events wake nobody.
    store
        .mutate(id, None, OffsetDateTime::now_utc(), no_change)
        .await
        .expect("no-op");
    store
        .reschedule_timer(id, 2, None)
        .await
        .expect("reschedule");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !feed.has_changed().expect("feed open"),
        "no events, no wake-up"
    );
    if let Some(listener) = listener {
        listener.abort();
        let _ = listener.await;
    }
}

async fn unknown_tickets_are_not_found<S: TicketStore>(store: &S) {
    let missing = TicketId(Uuid::now_v7());
    let not_found = |r: tierline_ticket::error::Result<_>| matches!(r, Err(Error::NotFound { .. }));
    assert!(not_found(store.get(missing).await.map(|_| ())));
    assert!(not_found(store.history(missing, 0, 10).await.map(|_| ())));
    assert!(not_found(
        store.comments(missing, None, None, 10).await.map(|_| ())
    ));
    assert!(not_found(
        store
            .mutate(missing, None, OffsetDateTime::now_utc(), no_change)
            .await
            .map(|_| ())
    ));
    let number = TicketNumber::parse("T-0000-0001").expect("n");
    assert!(not_found(store.get_by_number(&number).await.map(|_| ())));
    let known = create(store, open("call-known")).await;
    assert!(not_found(
        store
            .mutate_pair(known.id, missing, OffsetDateTime::now_utc(), |_, _, _| {
                Ok((vec![], vec![], ()))
            })
            .await
            .map(|_| ())
    ));
    assert!(not_found(
        add_comment(
            store,
            comment(missing, "hello", Visibility::Public, micros_now()),
            None
        )
        .await
        .map(|_| ())
    ));
    // Nothing for an unknown ticket is an empty answer, not an error.
    assert!(store.links(missing).await.expect("links").is_empty());
    assert_eq!(
        store.link_between(known.id, missing).await.expect("link"),
        None
    );
    assert!(store.links_of_many(&[]).await.expect("no ids").is_empty());
    // A batch read answers the known tickets, as they read one by one, and leaves out the rest.
    assert!(store.get_many(&[]).await.expect("no ids").is_empty());
    let other = create(store, open("call-other")).await;
    let many = store
        .get_many(&[known.id, missing, other.id])
        .await
        .expect("get many");
    assert_eq!(many.len(), 2);
    assert_eq!(
        many.get(&known.id),
        Some(&store.get(known.id).await.expect("known"))
    );
    assert_eq!(
        many.get(&other.id),
        Some(&store.get(other.id).await.expect("other"))
    );
    assert!(!many.contains_key(&missing));
}

// ---- queries --------------------------------------------------------------------------------

/// What the filter asks, in Rust: the oracle of the list test.
fn matches(f: &TicketFilter, t: &Ticket) -> bool {
    let key_account =
        matches!(&t.customer, CustomerLink::Resolved { snapshot, .. } if snapshot.key_account);
    (f.states.is_empty() || f.states.contains(&t.state))
        && (f.tiers.is_empty() || t.customer.tier().is_some_and(|x| f.tiers.contains(&x)))
        && (f.departments.is_empty() || f.departments.contains(&t.department))
        && (f.categories.is_empty() || f.categories.contains(&t.details.category))
        && f.assigned_agent_id
            .as_ref()
            .is_none_or(|a| t.assigned_agent_id.as_ref() == Some(a))
        && f.customer_id.is_none_or(|c| t.customer.id() == Some(c))
        && (f.sla_statuses.is_empty() || f.sla_statuses.contains(&t.sla_status))
        && f.created_from.is_none_or(|from| t.created_at >= from)
        && f.created_before.is_none_or(|before| t.created_at < before)
        && f.key_account.is_none_or(|k| k == key_account)
}

async fn list_filters_orders_and_pages_every_ticket_once<S: TicketStore>(store: &S) {
    let base = micros_now() - time::Duration::hours(1);
    let customers = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let categories = [
        "billing",
        "delivery",
        "staff_conduct",
        "product_quality",
        "general",
    ];
    let states = [
        TicketState::New,
        TicketState::Queued,
        TicketState::Assigned,
        TicketState::InProgress,
    ];
    let statuses = [
        SlaStatus::OnTrack,
        SlaStatus::AtRisk,
        SlaStatus::Breached,
        SlaStatus::Paused,
        SlaStatus::Met,
    ];
    let mut all = Vec::new();
    for i in 0..17usize {
        // Two tickets to a minute, created out of id order: pages must break ties by id.
        let at = base + time::Duration::minutes(((i * 7) % 17 / 2) as i64);
        let link = if i % 4 == 3 {
            CustomerLink::Pending { id: None }
        } else {
            resolved(
                customers[i % 3],
                [Tier::A, Tier::B, Tier::C][i % 3],
                i % 2 == 0,
                at,
            )
        };
        let mut t = ticket::open(
            Intake {
                category: categories[i % 5].into(),
                ..intake(&format!("list-{i}"))
            },
            link,
            &rules(),
            at,
        )
        .expect("open");
        t.state = states[i % 4];
        if matches!(t.state, TicketState::Assigned | TicketState::InProgress) {
            t.assigned_agent_id = Some(format!("agent-{}", i % 2));
        }
        t.sla_status = statuses[(i / 2) % 5];
        all.push(create(store, t).await);
    }
    let filters = [
        everything(4),
        TicketFilter {
            order: TicketOrder::CreatedDesc,
            ..everything(3)
        },
        TicketFilter {
            states: vec![TicketState::Queued, TicketState::Assigned],
            ..everything(2)
        },
        TicketFilter {
            tiers: vec![Tier::A],
            ..everything(2)
        },
        TicketFilter {
            tiers: vec![Tier::B, Tier::C],
            order: TicketOrder::CreatedDesc,
            ..everything(2)
        },
        TicketFilter {
            departments: vec!["hr".into(), "quality_assurance".into()],
            ..everything(1)
        },
        TicketFilter {
            categories: vec!["billing".into(), "delivery".into()],
            ..everything(2)
        },
        TicketFilter {
            assigned_agent_id: Some("agent-1".into()),
            ..everything(2)
        },
        TicketFilter {
            customer_id: Some(customers[1]),
            order: TicketOrder::CreatedDesc,
            ..everything(2)
        },
        TicketFilter {
            sla_statuses: vec![SlaStatus::AtRisk, SlaStatus::Breached],
            ..everything(2)
        },
        TicketFilter {
            created_from: Some(base + time::Duration::minutes(2)),
            created_before: Some(base + time::Duration::minutes(5)),
            ..everything(2)
        },
        TicketFilter {
            key_account: Some(true),
            ..everything(2)
        },
        TicketFilter {
            key_account: Some(false),
            order: TicketOrder::CreatedDesc,
            ..everything(5)
        },
        TicketFilter {
            departments: vec!["customer_service".into()],
            states: vec![TicketState::New, TicketState::InProgress],
            key_account: Some(false),
            order: TicketOrder::CreatedDesc,
            ..everything(1)
        },
        TicketFilter {
            customer_id: Some(Uuid::now_v7()),
            ..everything(2)
        },
    ];
    for filter in filters {
        let mut expected: Vec<&Ticket> = all.iter().filter(|t| matches(&filter, t)).collect();
        expected.sort_by_key(|t| (t.created_at, t.id));
        if filter.order == TicketOrder::CreatedDesc {
            expected.reverse();
        }
        let expected: Vec<TicketId> = expected.iter().map(|t| t.id).collect();
        let listed = list_all(store, &filter).await;
        assert_eq!(ids(&listed), expected, "{filter:?}");
    }
    // The tickets read back as created.
    let listed = list_all(store, &everything(500)).await;
    for t in &listed {
        let made = all.iter().find(|m| m.id == t.id).expect("one of ours");
        assert_eq!(t, made);
    }
}

async fn a_follow_up_links_both_ways_and_needs_the_ticket_it_follows<S: TicketStore>(store: &S) {
    let first = create(store, open("call-first")).await;
    let other = create(store, open("call-other")).await;
    let follow_up = store
        .create(open("call-again"), b"r", Some(first.id), Actor::system())
        .await
        .expect("follow-up")
        .ticket;
    let links = store.links(follow_up.id).await.expect("links");
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].linked_ticket_id, first.id);
    assert_eq!(links[0].linked_number, first.number);
    assert_eq!(links[0].kind, LinkKind::FollowUpOf);
    let back = store.links(first.id).await.expect("links");
    assert_eq!(
        back.iter()
            .map(|l| (l.linked_ticket_id, l.kind))
            .collect::<Vec<_>>(),
        [(follow_up.id, LinkKind::HasFollowUp)]
    );
    assert_eq!(
        store
            .link_between(follow_up.id, first.id)
            .await
            .expect("link"),
        Some(LinkKind::FollowUpOf)
    );
    assert_eq!(
        store
            .link_between(first.id, follow_up.id)
            .await
            .expect("link"),
        Some(LinkKind::HasFollowUp)
    );
    let many = store
        .links_of_many(&[first.id, follow_up.id, other.id])
        .await
        .expect("many");
    assert_eq!(many.len(), 2, "a ticket without links has no entry");
    assert_eq!(many.get(&first.id), Some(&back));
    assert_eq!(many.get(&follow_up.id), Some(&links));

    // A follow-up of a ticket that does not exist is NOT_FOUND and stores nothing.
    let latest = latest_published(store).await;
    let orphan = open("call-orphan");
    let refused = store
        .create(
            orphan.clone(),
            b"r",
            Some(TicketId(Uuid::now_v7())),
            Actor::system(),
        )
        .await
        .expect_err("no such ticket");
    assert!(matches!(refused, Error::NotFound { .. }), "{refused:?}");
    assert!(matches!(
        store.get(orphan.id).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(latest_published(store).await, latest);
    // The key is still free.
    let retried = store
        .create(orphan, b"r", Some(other.id), Actor::system())
        .await
        .expect("retry");
    assert!(!retried.replayed);
}

async fn links_and_unlinks_change_both_tickets<S: TicketStore>(store: &S) {
    let service = tickets(store);
    let a = create(store, open("call-a")).await;
    let b = create(store, open("call-b")).await;
    let linked = service
        .link(a.id, b.id, LinkKind::DuplicateOf, Some(1), Actor::system())
        .await
        .expect("link");
    assert_eq!(linked.version, 2);
    assert_eq!(store.get(b.id).await.expect("b").version, 2, "both change");
    assert_eq!(
        store.link_between(a.id, b.id).await.expect("link"),
        Some(LinkKind::DuplicateOf)
    );
    assert_eq!(
        store.link_between(b.id, a.id).await.expect("link"),
        Some(LinkKind::HasDuplicate)
    );
    let events: Vec<(TicketId, EventKind, Option<Uuid>)> = all_events(store)
        .await
        .iter()
        .skip(2)
        .map(|e| (e.ticket_id, e.event.kind, e.event.related_ticket_id))
        .collect();
    assert_eq!(
        events,
        [
            (a.id, EventKind::Linked, Some(b.id.0)),
            (b.id, EventKind::Linked, Some(a.id.0))
        ]
    );

    service
        .unlink(b.id, a.id, None, Actor::system())
        .await
        .expect("unlink");
    assert_eq!(store.link_between(a.id, b.id).await.expect("link"), None);
    assert_eq!(store.link_between(b.id, a.id).await.expect("link"), None);
    // Unlinking what is not linked is refused by the store too, and changes nothing.
    let latest = latest_published(store).await;
    let err = store
        .mutate_pair(a.id, b.id, OffsetDateTime::now_utc(), |x, y, writes| {
            writes.unlinks.push((x.id, y.id));
            let event = NewEvent::on(x, EventKind::Unlinked, Actor::system(), "unlinked");
            Ok((vec![event], vec![], ()))
        })
        .await
        .expect_err("no link");
    assert!(
        matches!(err, Error::NotFound { what: "link", .. }),
        "{err:?}"
    );
    assert_eq!(latest_published(store).await, latest);
    assert_eq!(store.get(a.id).await.expect("a").version, 3);

    // A pair change without events writes its links all the same (PairWrites are writes).
    let (_, _, ()) = store
        .mutate_pair(a.id, b.id, OffsetDateTime::now_utc(), |x, y, writes| {
            *writes = PairWrites {
                links: vec![(LinkKind::Related, x.id, y.id)],
                unlinks: vec![],
            };
            Ok((vec![], vec![], ()))
        })
        .await
        .expect("link without events");
    assert_eq!(
        store.link_between(b.id, a.id).await.expect("link"),
        Some(LinkKind::Related)
    );
    assert_eq!(latest_published(store).await, latest);
}

async fn comments_page_by_visibility_and_include_merged_tickets<S: TicketStore>(store: &S) {
    let service = tickets(store);
    let survivor = create(store, open("call-survivor")).await;
    let source = create(store, open("call-source")).await;
    let at = micros_now();
    let mut made = Vec::new();
    for (i, (ticket, visibility)) in [
        (survivor.id, Visibility::Public),
        (source.id, Visibility::Internal),
        (survivor.id, Visibility::Internal),
        (source.id, Visibility::Public),
        (survivor.id, Visibility::Public),
    ]
    .into_iter()
    .enumerate()
    {
        // Two at the same instant: the cursor breaks ties by id.
        let c = comment(
            ticket,
            &format!("comment {i}"),
            visibility,
            at + time::Duration::seconds((i / 2) as i64),
        );
        made.push(add_comment(store, c, None).await.expect("comment"));
    }
    let bodies = |cs: &[Comment]| cs.iter().map(|c| c.body.clone()).collect::<Vec<_>>();
    let own = store
        .comments(source.id, None, None, 10)
        .await
        .expect("comments");
    assert_eq!(bodies(&own), ["comment 1", "comment 3"]);

    service
        .merge(
            source.id,
            survivor.id,
            "same issue".into(),
            (None, None),
            Actor::system(),
        )
        .await
        .expect("merge");
    let links = store.links(survivor.id).await.expect("links");
    assert_eq!(
        links
            .iter()
            .map(|l| (l.linked_ticket_id, l.kind))
            .collect::<Vec<_>>(),
        [(source.id, LinkKind::MergedFrom)]
    );
    assert!(
        store.links(source.id).await.expect("links").is_empty(),
        "only the survivor shows a merge"
    );
    assert_eq!(
        store.get(source.id).await.expect("source").merged_into,
        Some(survivor.id)
    );

    // The survivor's comments include the source's, in order; pages of two.
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .comments(survivor.id, None, after, 2)
            .await
            .expect("page");
        let last = page.last().map(|c| (c.created_at, c.id));
        let full = page.len() == 2;
        all.extend(page);
        match (full, last) {
            (true, Some(last)) => after = Some(last),
            _ => break,
        }
    }
    assert_eq!(
        bodies(&all),
        [
            "comment 0",
            "comment 1",
            "comment 2",
            "comment 3",
            "comment 4"
        ]
    );
    assert_eq!(all[3].ticket_id, source.id, "a comment keeps its ticket");
    assert_eq!(
        all.iter().map(|c| c.id).collect::<Vec<_>>(),
        made.iter().map(|c| c.id).collect::<Vec<_>>()
    );
    assert_eq!(all[0].author, made[0].author);
    assert_eq!(all[0].created_at, made[0].created_at);
    let public = store
        .comments(survivor.id, Some(Visibility::Public), None, 10)
        .await
        .expect("public");
    assert_eq!(bodies(&public), ["comment 0", "comment 3", "comment 4"]);
    let internal = store
        .comments(
            survivor.id,
            Some(Visibility::Internal),
            Some((all[1].created_at, all[1].id)),
            10,
        )
        .await
        .expect("internal");
    assert_eq!(bodies(&internal), ["comment 2"]);
    // A ticket without comments has none; past the end is empty.
    let quiet = create(store, open("call-quiet")).await;
    assert!(
        store
            .comments(quiet.id, None, None, 10)
            .await
            .expect("none")
            .is_empty()
    );
    assert!(
        store
            .comments(survivor.id, None, Some((all[4].created_at, all[4].id)), 10)
            .await
            .expect("past the end")
            .is_empty()
    );
}

async fn a_comment_key_replays_the_first_comment_and_refuses_another_request<S: TicketStore>(
    store: &S,
) {
    let t = create(store, open("call-c")).await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let c = comment(t.id, &format!("try {i}"), Visibility::Public, micros_now());
                add_comment(&store, c, Some(("comment-1", b"fingerprint")))
                    .await
                    .expect("comment")
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for task in tasks {
        seen.insert(task.await.expect("join").id);
    }
    assert_eq!(seen.len(), 1, "every retry gets the first comment");
    let stored = store
        .comments(t.id, None, None, 10)
        .await
        .expect("comments");
    assert_eq!(stored.len(), 1);
    assert!(seen.contains(&stored[0].id));
    let added = all_events(store)
        .await
        .into_iter()
        .filter(|e| e.event.kind == EventKind::CommentAdded)
        .collect::<Vec<_>>();
    assert_eq!(added.len(), 1, "one event, not one per retry");
    assert_eq!(added[0].event.comment_id, Some(stored[0].id));
    assert_eq!(store.history(t.id, 0, 10).await.expect("history").len(), 2);

    let err = add_comment(
        store,
        comment(t.id, "other", Visibility::Public, micros_now()),
        Some(("comment-1", b"another request")),
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(
            err,
            Error::FailedPrecondition {
                reason: "IDEMPOTENCY_KEY_REUSED",
                ..
            }
        ),
        "{err:?}"
    );
    // Comments without keys are each their own.
    for body in ["a", "b"] {
        add_comment(
            store,
            comment(t.id, body, Visibility::Internal, micros_now()),
            None,
        )
        .await
        .expect("comment");
    }
    assert_eq!(
        store
            .comments(t.id, None, None, 10)
            .await
            .expect("comments")
            .len(),
        3
    );
}

async fn snapshots_are_pruned_oldest_first_and_history_stays<S: TicketStore>(store: &S) {
    assert_eq!(latest_published(store).await, 0);
    assert_eq!(
        store.oldest_retained_sequence().await.expect("oldest"),
        None
    );
    let now = micros_now();
    let mut made = Vec::new();
    for (key, age) in [("old", 3), ("older", 4), ("new", 0)] {
        made.push(create(store, open_at(key, now - time::Duration::days(age))).await);
    }
    store.publish().await.expect("publish");
    let log = store.events_after(0, 10).await.expect("log");
    let sequences: Vec<i64> = log.iter().map(|(e, _)| e.sequence).collect();
    assert_eq!(
        store.oldest_retained_sequence().await.expect("oldest"),
        Some(sequences[0])
    );
    assert_eq!(latest_published(store).await, sequences[2]);

    // Oldest event first: "older" (four days), though it came second.
    let cutoff = now - time::Duration::days(1);
    assert_eq!(store.prune_snapshots(cutoff, 1).await.expect("prune"), 1);
    store.publish().await.expect("publish");
    let log = store.events_after(0, 10).await.expect("log");
    let kept: Vec<bool> = log.iter().map(|(_, s)| s.is_some()).collect();
    assert_eq!(kept, [true, false, true]);
    assert_eq!(
        store.oldest_retained_sequence().await.expect("oldest"),
        Some(sequences[0])
    );
    assert_eq!(store.prune_snapshots(cutoff, 10).await.expect("prune"), 1);
    assert_eq!(store.prune_snapshots(cutoff, 10).await.expect("prune"), 0);
    assert_eq!(
        store.oldest_retained_sequence().await.expect("oldest"),
        Some(sequences[2])
    );
    store.publish().await.expect("publish");
    let log = store.events_after(0, 10).await.expect("log");
    assert_eq!(log.len(), 3, "the events stay");
    assert_eq!(log[2].1, Some(1i64.to_be_bytes().to_vec()));
    assert_eq!(
        store
            .history(made[0].id, 0, 10)
            .await
            .expect("history")
            .len(),
        1
    );
    assert_eq!(latest_published(store).await, sequences[2]);
}

async fn pending_customers_are_listed_oldest_first_until_resolved<S: TicketStore>(store: &S) {
    let now = micros_now();
    let mut pending = Vec::new();
    for (i, age) in [2, 5, 1].into_iter().enumerate() {
        let at = now - time::Duration::minutes(age);
        let t = ticket::open(
            intake(&format!("pending-{i}")),
            CustomerLink::Pending {
                id: (i == 0).then(Uuid::now_v7),
            },
            &rules(),
            at,
        )
        .expect("open");
        pending.push(create(store, t).await.id);
    }
    create(store, open("resolved")).await;
    assert_eq!(
        store.pending_customers(10).await.expect("pending"),
        [pending[1], pending[0], pending[2]]
    );
    assert_eq!(
        store.pending_customers(1).await.expect("pending"),
        [pending[1]]
    );
    touch(store, pending[1], |t| {
        t.customer = resolved(Uuid::now_v7(), Tier::A, true, now);
    })
    .await;
    assert_eq!(
        store.pending_customers(10).await.expect("pending"),
        [pending[0], pending[2]]
    );
}

async fn timers_are_due_soonest_first_and_rescheduled_only_at_the_same_version<S: TicketStore>(
    store: &S,
) {
    let now = micros_now();
    let a = create(store, open("timer-a")).await;
    let b = create(store, open("timer-b")).await;
    let c = create(store, open("timer-c")).await;
    // A new ticket's timer is its next SLA check, as the domain computes it.
    let first = ticket::next_timer(&a, a.created_at).expect("an SLA check");
    let due = store.timers_due(first, 10).await.expect("due");
    assert!(due.contains(&a.id), "{due:?}");
    assert!(
        store
            .timers_due(now - time::Duration::days(1), 10)
            .await
            .expect("due")
            .is_empty()
    );

    for (t, minutes) in [(&a, 3), (&b, 1), (&c, 2)] {
        store
            .reschedule_timer(t.id, 1, Some(now + time::Duration::minutes(minutes)))
            .await
            .expect("reschedule");
    }
    let at = now + time::Duration::minutes(2);
    assert_eq!(store.timers_due(at, 10).await.expect("due"), [b.id, c.id]);
    assert_eq!(store.timers_due(at, 1).await.expect("due"), [b.id]);
    // The ticket changed meanwhile (version 2): the worker's reschedule is ignored.
    touch(store, b.id, |_| {}).await;
    let after_change = ticket::next_timer(&store.get(b.id).await.expect("b"), now);
    store
        .reschedule_timer(b.id, 1, None)
        .await
        .expect("reschedule");
    let due = store
        .timers_due(now + time::Duration::days(365), 10)
        .await
        .expect("due");
    assert_eq!(due.contains(&b.id), after_change.is_some());
    // At its version, clearing it takes it off the list.
    store
        .reschedule_timer(c.id, 1, None)
        .await
        .expect("reschedule");
    let due = store
        .timers_due(now + time::Duration::days(365), 10)
        .await
        .expect("due");
    assert!(!due.contains(&c.id), "{due:?}");
    assert!(due.contains(&a.id));
}

async fn sla_outcomes_are_recorded_once_per_target<S: TicketStore + Inspect>(store: &S) {
    let t = create(store, open("call-sla")).await;
    let due = t.sla.first_response_due;
    store
        .record_sla_outcomes(
            t.id,
            &[SlaOutcome {
                target: "first_response",
                outcome: "met",
                due_at: due,
                achieved_at: Some(t.created_at),
            }],
        )
        .await
        .expect("record");
    store
        .record_sla_outcomes(
            t.id,
            &[
                SlaOutcome {
                    target: "first_response",
                    outcome: "breached",
                    due_at: due,
                    achieved_at: None,
                },
                SlaOutcome {
                    target: "resolution",
                    outcome: "breached",
                    due_at: t.sla.resolution_due,
                    achieved_at: None,
                },
            ],
        )
        .await
        .expect("record");
    store.record_sla_outcomes(t.id, &[]).await.expect("nothing");
    assert_eq!(
        store.outcomes(t.id).await,
        [
            ("first_response".to_owned(), "met".to_owned()),
            ("resolution".to_owned(), "breached".to_owned())
        ]
    );
}

async fn the_timer_escalates_a_missed_first_response_once_and_records_the_outcome_once<
    S: TicketStore + Inspect,
>(
    store: &S,
) {
    let service = tickets(store);
    let rules = rules();
    let mut email = intake("mail-1");
    email.channel = Channel::Email;
    let opened = ticket::open(email, customer(), &rules, OffsetDateTime::now_utc()).expect("open");
    let before = opened.priority;
    let id = create(store, opened).await.id;

    // Nothing is due now.
    tierline_ticket::workers::run_timers(&service, OffsetDateTime::now_utc())
        .await
        .expect("timers");
    assert_eq!(store.get(id).await.expect("get").priority, before);

    // A week later the first response is long overdue: escalated once.
    let later = OffsetDateTime::now_utc() + time::Duration::days(7);
    for _ in 0..3 {
        tierline_ticket::workers::run_timers(&service, later)
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
    let breaches = store
        .history(id, 0, 100)
        .await
        .expect("history")
        .into_iter()
        .filter(|e| {
            e.event.kind == EventKind::SlaBreached
                && e.event.reason == "sla_first_response_breached"
        })
        .count();
    assert_eq!(breaches, 1, "one escalation per missed target");
    assert!(
        store
            .outcomes(id)
            .await
            .contains(&("first_response".into(), "breached".into()))
    );
}

// ---- relays ---------------------------------------------------------------------------------

async fn a_relay_claim_has_one_holder_who_may_change_tickets_meanwhile<S: TicketStore>(store: &S) {
    let claim = store
        .claim_relay("relay-x")
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(
        claim.cursor(),
        0,
        "a new relay starts at the start of the log"
    );
    assert!(
        store.claim_relay("relay-x").await.expect("claim").is_none(),
        "one holder at a time"
    );
    let other = store
        .claim_relay("relay-y")
        .await
        .expect("claim")
        .expect("other relays are free");
    drop(other);

    // The holder changes tickets while it holds the claim (the routing relay queues them).
    let changed = tokio::time::timeout(Duration::from_secs(10), async {
        let id = create(store, open("call-held")).await.id;
        apply(store, id, Move::Enqueue, MoveContext::default()).await
    })
    .await
    .expect("a claim does not block writers");
    assert_eq!(changed.state, TicketState::Queued);
    store.publish().await.expect("publish");
    let latest = latest_published(store).await;

    // Dropped without a commit: released, the cursor unchanged.
    drop(claim);
    let claim = claim_when_free(store, "relay-x").await;
    assert_eq!(claim.cursor(), 0);
    claim.commit(latest).await.expect("commit");
    let claim = store
        .claim_relay("relay-x")
        .await
        .expect("claim")
        .expect("released by the commit");
    assert_eq!(claim.cursor(), latest);
    claim.commit(1).await.expect("commit");
    let claim = store
        .claim_relay("relay-x")
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(claim.cursor(), latest, "a cursor never goes back");
    let y = claim_when_free(store, "relay-y").await;
    assert_eq!(y.cursor(), 0, "each relay has its own cursor");
}

async fn the_routing_relay_sends_each_touched_ticket_once_and_resumes_after_what_was_delivered<
    S: TicketStore,
>(
    store: &S,
) {
    use tierline_ticket::workers::{ROUTING_RELAY, cursor_after};

    let a = create(store, open("call-a")).await.id;
    let b = create(store, open("call-b")).await.id;
    apply(store, a, Move::Enqueue, MoveContext::default()).await;

    // The first claim starts at the start of the log; one replica holds it.
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
    let batch = touched_after(store, claim.cursor(), 3).await;
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
    // A limit counts events, not tickets.
    let two = store
        .tickets_touched_after(claim.cursor(), 2)
        .await
        .expect("touched");
    assert_eq!((two.events, two.tickets.len()), (2, 2));
    assert_eq!(two.last_sequence, *first_b);

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
    let again = touched_after(store, claim.cursor(), 2).await;
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

async fn a_ticket_the_router_has_is_queued_once_by_the_routing_service<S: TicketStore>(store: &S) {
    let service = tickets(store);
    let id = create(store, open("call-q")).await.id;

    let queued = service.enqueue(id).await.expect("enqueue");
    assert_eq!(queued.state.as_str(), "queued");
    assert_eq!(queued.version, 2);
    // A repeat (the relay sending the ticket again) changes nothing.
    let again = service.enqueue(id).await.expect("repeat");
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
    let assigned = service
        .assign(id, "agent-1".into(), Uuid::now_v7(), None, routing_actor())
        .await
        .expect("assign");
    let after = service.enqueue(id).await.expect("late answer");
    assert_eq!(after.version, assigned.version);
    assert_eq!(after.state.as_str(), "assigned");
}

async fn while_the_router_is_down_the_relay_keeps_its_place_and_tickets_stay_new<S: TicketStore>(
    store: &S,
) {
    use tierline_ticket::config::RoutingServiceConfig;
    use tierline_ticket::routing::{Router, SyncError};
    use tierline_ticket::workers::{ROUTING_RELAY, relay_routing};

    let service = tickets(store);
    // No router: a port just released, nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let router = Router::new(&RoutingServiceConfig {
        endpoint: format!("http://127.0.0.1:{port}"),
        timeout: Duration::from_millis(300),
    })
    .expect("config")
    .expect("enabled");
    let id = create(store, open("call-down")).await.id;
    touched_after(store, 0, 1).await;

    let pass = relay_routing(&service, &router).await.expect("pass");
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

// ---- one store's machinery --------------------------------------------------------------------

/// PostgreSQL's publishing of positions after commit: writers take no global lock, so a
/// transaction can commit after one that drew a higher sequence. SQLite does not need this (its
/// single writer commits in sequence order; `a_reader_paging_during_concurrent_writes_…` holds
/// both stores to the outcome).
mod pg_only {
    use std::time::Duration;

    use sqlx::PgPool;
    use tierline_ticket::domain::ticket::Actor;
    use tierline_ticket::store::{PgStore, TicketStore};

    use super::{open, snapshotter};

    #[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
    async fn an_event_committed_late_is_published_after_what_readers_have_seen(pool: PgPool) {
        let store = PgStore::new(pool.clone(), snapshotter());
        let early = store
            .create(open("early"), b"r", None, Actor::system())
            .await
            .expect("create")
            .ticket;
        assert!(
            store.events_after(0, 100).await.expect("read").is_empty(),
            "nothing is readable before it is published"
        );
        assert_eq!(store.publish().await.expect("publish"), 1);
        let first = store.events_after(0, 100).await.expect("read");
        assert_eq!(first.len(), 1);
        let cursor = first[0].0.sequence;
        assert_eq!(
            first[0].1.as_deref(),
            Some(1i64.to_be_bytes().as_slice()),
            "snapshot kept"
        );

        // A writer that has drawn its event's sequence but not committed...
        let mut slow = pool.begin().await.expect("begin");
        let slow_sequence: i64 = sqlx::query_scalar(
            "INSERT INTO ticket_events (event_id, ticket_id, ticket_version, kind, actor_kind, \
               from_state, to_state, event_at, snapshot) \
             VALUES (gen_random_uuid(), $1, 2, 'updated', 'system', 'new', 'new', now(), '\\x00') \
             RETURNING sequence",
        )
        .bind(early.id.0)
        .fetch_one(&mut *slow)
        .await
        .expect("append");
        // ...does not hold up a later writer, whose event has a higher sequence...
        let late = tokio::time::timeout(
            Duration::from_secs(5),
            store.create(open("late"), b"r", None, Actor::system()),
        )
        .await
        .expect("a later writer does not wait for an uncommitted one")
        .expect("create")
        .ticket;
        assert_eq!(store.publish().await.expect("publish"), 1);
        let next = store.events_after(cursor, 100).await.expect("read");
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].0.ticket_id, late.id);
        let late_position = next[0].0.sequence;
        assert_eq!(
            store.latest_sequence().await.expect("latest"),
            late_position
        );

        // ...and once the slow one commits, its event comes after what readers have seen,
        // though it drew the lower sequence.
        slow.commit().await.expect("commit");
        assert_eq!(store.publish().await.expect("publish"), 1);
        let last = store.events_after(late_position, 100).await.expect("read");
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].0.ticket_id, early.id);
        assert!(last[0].0.sequence > late_position);
        let late_sequence: i64 =
            sqlx::query_scalar("SELECT sequence FROM ticket_events WHERE ticket_id = $1")
                .bind(late.id.0)
                .fetch_one(&pool)
                .await
                .expect("sequence");
        assert!(
            slow_sequence < late_sequence,
            "drawn before, committed after"
        );
        assert_eq!(store.publish().await.expect("publish"), 0, "all published");
    }
}

/// What only a file has: it outlives the process, and another process can hold its lock.
mod sqlite_only {
    use std::time::Duration;

    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
    use tierline_runtime::error::{ErrorKind, ServiceError};
    use tierline_ticket::error::Error;
    use tierline_ticket::store::{RelayCursor, SqliteStore, TicketStore};

    use super::{create, open, snapshotter, touch};

    #[tokio::test]
    async fn a_reopened_file_keeps_tickets_events_and_cursors_and_sequences_go_on() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("ticket.db");
        let store = SqliteStore::open(&path, snapshotter()).await.expect("open");
        let t = create(&store, open("call-1")).await;
        let t = touch(&store, t.id, |t| t.details.subject = "kept".into()).await;
        let latest = store.latest_sequence().await.expect("latest");
        store
            .claim_relay("relay")
            .await
            .expect("claim")
            .expect("free")
            .commit(latest)
            .await
            .expect("commit");
        store.close().await;

        let store = SqliteStore::open(&path, snapshotter())
            .await
            .expect("reopen");
        assert_eq!(store.get(t.id).await.expect("get"), t);
        assert_eq!(store.latest_sequence().await.expect("latest"), latest);
        let claim = store
            .claim_relay("relay")
            .await
            .expect("claim")
            .expect("free");
        assert_eq!(claim.cursor(), latest);
        drop(claim);
        create(&store, open("call-2")).await;
        let log = store.events_after(latest, 10).await.expect("log");
        assert_eq!(log.len(), 1);
        assert!(log[0].0.sequence > latest);
        store.close().await;
    }

    #[tokio::test]
    async fn a_file_another_process_holds_is_unavailable_and_so_is_a_closed_store() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("ticket.db");
        let store = SqliteStore::open(&path, snapshotter()).await.expect("open");
        // Another process: its own connection, holding the write lock.
        let mut other =
            SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
                .await
                .expect("other connection");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("take the write lock");
        let err = store
            .create(
                open("call-locked"),
                b"r",
                None,
                tierline_ticket::domain::ticket::Actor::system(),
            )
            .await
            .expect_err("locked past the busy timeout");
        assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        // Reads do not wait for the writer.
        assert_eq!(store.latest_sequence().await.expect("read"), 0);
        sqlx::query("ROLLBACK")
            .execute(&mut other)
            .await
            .expect("release");
        other.close().await.expect("close");
        create(&store, open("call-free")).await;

        store.close().await;
        let err = tokio::time::timeout(Duration::from_secs(10), store.latest_sequence())
            .await
            .expect("answers at once")
            .expect_err("closed");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    }
}

/// Intake's NEW to QUEUED writes the ticket as it holds it, without reading it again: the
/// change and its event are stored exactly as the locking path stores them, and not at all if
/// the ticket moved on since.
async fn a_change_to_a_known_ticket_is_written_only_at_the_version_known<S: TicketStore>(
    store: &S,
) {
    let rules = rules();
    let enqueue = |now: OffsetDateTime| {
        let rules = rules.clone();
        move |t: &mut Ticket| {
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
        }
    };
    let created = create(store, open("call-known-write")).await;
    let now = micros_now();
    let (queued, ()) = store
        .mutate_known(created.clone(), now, enqueue(now))
        .await
        .expect("write")
        .expect("at the version known");
    assert_eq!(queued.state, TicketState::Queued);
    assert_eq!(queued.version, created.version + 1);
    assert_eq!(store.get(created.id).await.expect("read"), queued);
    let history = store.history(created.id, 0, 10).await.expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].event.kind, EventKind::StateChanged);
    assert_eq!(history[1].ticket_version, queued.version);
    assert!(
        all_events(store)
            .await
            .iter()
            .any(|e| e.ticket_id == created.id && e.ticket_version == queued.version),
        "the event is in the log"
    );
    // Held at the old version: nothing is written.
    let stale = store
        .mutate_known(created.clone(), now, enqueue(now))
        .await
        .expect("no error");
    assert!(stale.is_none());
    assert_eq!(store.get(created.id).await.expect("read"), queued);
    assert_eq!(
        store
            .history(created.id, 0, 10)
            .await
            .expect("history")
            .len(),
        2
    );
    // No events: nothing to write, the ticket as changed is returned.
    let (same, ()) = store
        .mutate_known(queued.clone(), now, no_change)
        .await
        .expect("no change")
        .expect("no write needed");
    assert_eq!(same, queued);
}
