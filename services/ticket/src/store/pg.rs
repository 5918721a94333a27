//! Tickets in PostgreSQL.
//!
//! Every change is one transaction: lock the ticket row, let pure domain code change the loaded
//! ticket, write the row back and append its events (history and outbox in one table). After
//! commit a publishing pass gives the events their log positions and notifies readers (see
//! [`PUBLISH_LOCK`]). The hot path is one statement each: intake, and the NEW to QUEUED move
//! that follows it ([`TicketStore::mutate_known`]).

use std::collections::{BTreeMap, HashMap};
use std::convert::identity;
use std::sync::{Arc, LazyLock};

use sqlx::postgres::PgPool;
use sqlx::types::Json;
use sqlx::{FromRow, Postgres, QueryBuilder, Transaction};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::common::{self, CommentRecord, EventRecord, TicketRecord, ticket_columns};
use super::feed::EventFeed;
use super::{
    CommentCursor, Created, Mutation, PairWrites, RelayCursor, SlaOutcome, Snapshotter,
    TicketFilter, TicketOrder, TicketStore, TouchedTickets,
};
use crate::domain::sla::SlaClock;
use crate::domain::ticket::{
    Actor, Comment, Compensation, Link, LinkKind, NewEvent, RecordedEvent, RecordedFollowUp,
    Ticket, TicketId, TicketNumber, Visibility,
};
use crate::error::{Error, Result};

/// The embedded migrations of the ticket service, applied at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    snapshot: Snapshotter,
    feed: Arc<EventFeed>,
    /// Woken after every commit that appended events, so the sequencer publishes them.
    appended: Arc<Notify>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

const TICKET_COLUMNS: &str = ticket_columns!();

#[derive(FromRow)]
struct TicketRow {
    id: Uuid,
    number: String,
    idempotency_key: String,
    customer_id: Option<Uuid>,
    customer_resolution: String,
    caller_kind: Option<String>,
    caller_value: Option<String>,
    caller_region: Option<String>,
    snapshot_tier: Option<String>,
    snapshot_key_account: bool,
    snapshot_account_manager: Option<String>,
    snapshot_display_name: Option<String>,
    snapshot_at: Option<OffsetDateTime>,
    channel: String,
    #[sqlx(rename = "type")]
    ticket_type: String,
    category: String,
    department: String,
    severity: String,
    priority: i32,
    subject: String,
    description: String,
    language_code: String,
    customer_emotion: Option<String>,
    desired_outcome: String,
    compensation: Option<Json<Compensation>>,
    root_cause: Option<String>,
    triage_label: Option<String>,
    resolution_summary: String,
    tags: Vec<String>,
    attributes: Json<BTreeMap<String, String>>,
    required_skills: Vec<String>,
    own_skills: Vec<String>,
    state: String,
    state_reason: String,
    hold_reason: Option<String>,
    cancel_reason: Option<String>,
    assigned_agent_id: Option<String>,
    handler_agent_ids: Vec<String>,
    enqueue_at: OffsetDateTime,
    pickup_due_at: OffsetDateTime,
    preferred_agent_id: Option<String>,
    reservation_id: Option<Uuid>,
    merged_into: Option<Uuid>,
    sla: Json<SlaClock>,
    sla_status: String,
    follow_up: Option<Json<RecordedFollowUp>>,
    follow_up_due_at: Option<OffsetDateTime>,
    follow_up_due_raised: bool,
    auto_close_at: Option<OffsetDateTime>,
    version: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    resolved_at: Option<OffsetDateTime>,
    closed_at: Option<OffsetDateTime>,
}

impl TicketRow {
    fn into_domain(self) -> Result<Ticket> {
        TicketRecord {
            id: self.id,
            number: self.number,
            idempotency_key: self.idempotency_key,
            customer_id: self.customer_id,
            customer_resolution: self.customer_resolution,
            caller_kind: self.caller_kind,
            caller_value: self.caller_value,
            caller_region: self.caller_region,
            snapshot_tier: self.snapshot_tier,
            snapshot_key_account: self.snapshot_key_account,
            snapshot_account_manager: self.snapshot_account_manager,
            snapshot_display_name: self.snapshot_display_name,
            snapshot_at: self.snapshot_at,
            channel: self.channel,
            ticket_type: self.ticket_type,
            category: self.category,
            department: self.department,
            severity: self.severity,
            priority: self.priority,
            subject: self.subject,
            description: self.description,
            language_code: self.language_code,
            customer_emotion: self.customer_emotion,
            desired_outcome: self.desired_outcome,
            compensation: self.compensation.map(|j| j.0),
            root_cause: self.root_cause,
            triage_label: self.triage_label,
            resolution_summary: self.resolution_summary,
            tags: self.tags,
            attributes: self.attributes.0,
            required_skills: self.required_skills,
            own_skills: self.own_skills,
            state: self.state,
            state_reason: self.state_reason,
            hold_reason: self.hold_reason,
            cancel_reason: self.cancel_reason,
            assigned_agent_id: self.assigned_agent_id,
            handler_agent_ids: self.handler_agent_ids,
            enqueue_at: self.enqueue_at,
            pickup_due_at: self.pickup_due_at,
            preferred_agent_id: self.preferred_agent_id,
            reservation_id: self.reservation_id,
            merged_into: self.merged_into,
            sla: self.sla.0,
            sla_status: self.sla_status,
            follow_up: self.follow_up.map(|j| j.0),
            follow_up_due_at: self.follow_up_due_at,
            follow_up_due_raised: self.follow_up_due_raised,
            auto_close_at: self.auto_close_at,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            resolved_at: self.resolved_at,
            closed_at: self.closed_at,
        }
        .into_domain()
    }
}

/// The transaction-level advisory lock a publishing pass holds until it commits, so one pass at
/// a time gives out positions (see [`TicketStore::publish`] and the event-positions migration).
///
/// Why not a lock around every append: a lock held through each writer's commit made every
/// ticket change in the service wait for the one before it, one WAL flush each (about 60
/// tickets a second on the benchmark machine). Writers now commit concurrently and share WAL
/// flushes; only the publishing step, which handles whatever has committed since the last pass,
/// is serialised.
pub const PUBLISH_LOCK: i64 = 0x7469_6572_6c6e_7075; // "tierlnpu"

/// Positions given out by one publishing pass at most; a pass that fills it runs again.
const PUBLISH_BATCH: i64 = 5_000;

/// How often the sequencer publishes without being woken: catches events committed by a
/// replica that stopped before publishing them.
const PUBLISH_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// How long the sequencer waits after a wake before its pass, so commits that land meanwhile
/// share it. Without it, intake ran about one pass (a transaction and a notification to every
/// reader) per commit: 8,878 passes for 15,129 tickets in one benchmark run.
const PUBLISH_GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// Binds an [`EventColumns`]' arrays, in order, to a query or scalar query.
macro_rules! bind_event_columns {
    ($q:expr, $c:expr) => {
        $q.bind(&$c.ids)
            .bind(&$c.kinds)
            .bind(&$c.actor_kinds)
            .bind(&$c.actor_ids)
            .bind(&$c.froms)
            .bind(&$c.tos)
            .bind(&$c.reasons)
            .bind(&$c.changed)
            .bind(&$c.comments)
            .bind(&$c.related)
    };
}

/// Events as the columns UNNEST binds, one array each.
struct EventColumns<'a> {
    ids: Vec<Uuid>,
    kinds: Vec<&'a str>,
    actor_kinds: Vec<&'a str>,
    actor_ids: Vec<&'a str>,
    froms: Vec<&'a str>,
    tos: Vec<&'a str>,
    reasons: Vec<&'a str>,
    // Arrays of arrays do not bind; changed fields travel as one comma-joined string each.
    changed: Vec<String>,
    comments: Vec<Option<Uuid>>,
    related: Vec<Option<Uuid>>,
}

impl<'a> EventColumns<'a> {
    fn of(events: &'a [NewEvent]) -> Self {
        EventColumns {
            ids: events.iter().map(|_| Uuid::now_v7()).collect(),
            kinds: events.iter().map(|e| e.kind.as_str()).collect(),
            actor_kinds: events.iter().map(|e| e.actor.kind.as_str()).collect(),
            actor_ids: events.iter().map(|e| e.actor.id.as_str()).collect(),
            froms: events.iter().map(|e| e.from.as_str()).collect(),
            tos: events.iter().map(|e| e.to.as_str()).collect(),
            reasons: events.iter().map(|e| e.reason.as_str()).collect(),
            changed: events.iter().map(|e| e.changed_fields.join(",")).collect(),
            comments: events.iter().map(|e| e.comment_id).collect(),
            related: events.iter().map(|e| e.related_ticket_id).collect(),
        }
    }
}

/// Appends events for `ticket` (already at its new version) in one statement. They become
/// readable in the log once published, after commit (the caller wakes the sequencer).
async fn append_events(
    tx: &mut Transaction<'_, Postgres>,
    ticket: &Ticket,
    events: &[NewEvent],
    snapshot: &[u8],
    now: OffsetDateTime,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let columns = EventColumns::of(events);
    let q = sqlx::query(
        "INSERT INTO ticket_events (event_id, ticket_id, ticket_version, kind, actor_kind, actor_id, \
           from_state, to_state, reason, changed_fields, comment_id, related_ticket_id, event_at, snapshot) \
         SELECT e.id, $1, $2, e.kind, e.actor_kind, e.actor_id, e.from_state, e.to_state, e.reason, \
           CASE WHEN e.changed = '' THEN '{}'::text[] ELSE string_to_array(e.changed, ',') END, \
           e.comment_id, e.related, $3, $4 \
         FROM UNNEST($5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
                     $11::text[], $12::text[], $13::uuid[], $14::uuid[]) WITH ORDINALITY \
           AS e(id, kind, actor_kind, actor_id, from_state, to_state, reason, changed, comment_id, related, ord) \
         ORDER BY e.ord",
    )
    .bind(ticket.id.0)
    .bind(ticket.version)
    .bind(now)
    .bind(snapshot);
    bind_event_columns!(q, columns).execute(&mut **tx).await?;
    Ok(())
}

impl PgStore {
    /// A store on a migrated database. Its feed wakes only on this process's writes until
    /// [`PgStore::listen`] connects it to every writer's notifications.
    pub fn new(pool: PgPool, snapshot: Snapshotter) -> Self {
        PgStore {
            pool,
            snapshot,
            feed: EventFeed::new(),
            appended: Arc::new(Notify::new()),
        }
    }

    /// The pool, for tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs the event log's background work until the task is aborted: the sequencer, which
    /// publishes this process's appends as soon as they commit (and everyone's, every second),
    /// and the listener that wakes this process's readers on every replica's publications.
    pub fn spawn_log_tasks(&self) -> JoinHandle<()> {
        let listener = self.feed.clone().listen_forever(self.pool.clone());
        let sequencer = self.clone().sequence_forever();
        tokio::spawn(async move {
            tokio::join!(listener, sequencer);
        })
    }

    async fn sequence_forever(self) {
        let mut failing = false;
        loop {
            match self.publish().await {
                Ok(_) if failing => {
                    tracing::info!("event log publishing again");
                    failing = false;
                }
                Ok(_) => {}
                Err(error) if !failing => {
                    tracing::warn!(%error, "event log not published; retrying every second");
                    failing = true;
                }
                Err(_) => {}
            }
            // A wake that arrives while a pass runs is kept (Notify stores one permit), so an
            // append committed during a pass is published by the next one.
            if tokio::time::timeout(PUBLISH_POLL, self.appended.notified())
                .await
                .is_ok()
            {
                tokio::time::sleep(PUBLISH_GATHER).await;
            }
        }
    }

    /// One publishing pass: positions up to [`PUBLISH_BATCH`] committed, unpositioned events in
    /// `sequence` order after the highest position, and notifies every replica's readers.
    async fn publish_batch(&self) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        // Taken in its own statement, so the next one's snapshot (read committed) is taken
        // after the previous pass committed and sees all its positions.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PUBLISH_LOCK)
            .execute(&mut *tx)
            .await?;
        let published: i64 = sqlx::query_scalar(
            "WITH next AS ( \
               SELECT sequence, row_number() OVER (ORDER BY sequence) AS n FROM ( \
                 SELECT sequence FROM ticket_events WHERE position IS NULL \
                 ORDER BY sequence LIMIT $1) c), \
             base AS (SELECT coalesce(max(position), 0) AS p FROM ticket_events), \
             u AS (UPDATE ticket_events e SET position = base.p + next.n \
                   FROM next, base WHERE e.sequence = next.sequence RETURNING 1), \
             n AS (SELECT pg_notify($2, '') WHERE EXISTS (SELECT 1 FROM u)) \
             SELECT (SELECT count(*) FROM u) + 0 * (SELECT count(*) FROM n)",
        )
        .bind(PUBLISH_BATCH)
        .bind(super::feed::CHANNEL)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        if published > 0 {
            self.feed.bump();
        }
        Ok(u64::try_from(published).unwrap_or(0))
    }

    async fn replay(&self, key: &str, fingerprint: &[u8]) -> Result<Created> {
        let row: Option<(Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT id, request_fingerprint FROM tickets WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, stored)) = row else {
            return Err(Error::Corrupt(format!(
                "idempotency key {key:?} conflicted but is gone"
            )));
        };
        if stored != fingerprint {
            return Err(Error::FailedPrecondition {
                reason: "IDEMPOTENCY_KEY_REUSED",
                subject: format!("tickets/{id}"),
                message: format!(
                    "idempotency_key {key:?} already created ticket {id} from a different request"
                ),
            });
        }
        Ok(Created {
            ticket: self.get(TicketId(id)).await?,
            replayed: true,
        })
    }

    async fn comment_by_key(&self, key: &str, fingerprint: &[u8]) -> Result<Option<Comment>> {
        let row: Option<(CommentRow, Option<Vec<u8>>)> = sqlx::query_as::<_, CommentRow>(
            "SELECT id, ticket_id, visibility, author_kind, author_id, body, channel, first_response, \
               created_at, request_fingerprint FROM ticket_comments WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            let f = r.request_fingerprint.clone();
            (r, f)
        });
        match row {
            None => Ok(None),
            Some((row, stored)) if stored.as_deref() == Some(fingerprint) => {
                row.into_domain().map(Some)
            }
            Some((row, _)) => Err(Error::FailedPrecondition {
                reason: "IDEMPOTENCY_KEY_REUSED",
                subject: format!("tickets/{}", row.ticket_id),
                message: format!("idempotency_key {key:?} already added a different comment"),
            }),
        }
    }
}

impl TicketStore for PgStore {
    type Claim = PgRelayClaim;

    fn feed(&self) -> &Arc<EventFeed> {
        &self.feed
    }

    // The hot path, intake without a follow-up link, is one statement: ticket, CREATED event
    // and notification, atomic on its own.
    async fn create(
        &self,
        mut ticket: Ticket,
        fingerprint: &[u8],
        follow_up_of: Option<TicketId>,
        actor: Actor,
    ) -> Result<Created> {
        for _ in 0..5 {
            let snapshot = (self.snapshot)(&ticket);
            let inserted = match follow_up_of {
                // The hot path: ticket, CREATED event and notification in one statement, one
                // round trip, atomic on its own.
                None => {
                    let inserted =
                        insert_new(&self.pool, &ticket, fingerprint, &actor, &snapshot).await;
                    if matches!(inserted, Ok(true)) {
                        self.appended.notify_one();
                    }
                    inserted
                }
                Some(other) => {
                    let mut tx = self.pool.begin().await?;
                    // The links' foreign key will share-lock the other ticket; take that lock
                    // now, before the event append lock, so a concurrent change of the other
                    // ticket (row lock, then append lock) cannot deadlock with this one.
                    let exists: Option<i32> =
                        sqlx::query_scalar("SELECT 1 FROM tickets WHERE id = $1 FOR KEY SHARE")
                            .bind(other.0)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if exists.is_none() {
                        return Err(Error::ticket_not_found(other));
                    }
                    let inserted =
                        insert_new(&mut *tx, &ticket, fingerprint, &actor, &snapshot).await;
                    if matches!(inserted, Ok(true)) {
                        link_pair(
                            &mut tx,
                            ticket.id,
                            other,
                            LinkKind::FollowUpOf,
                            ticket.created_at,
                        )
                        .await?;
                        tx.commit().await?;
                        self.appended.notify_one();
                    }
                    inserted
                }
            };
            match inserted {
                Ok(true) => {
                    return Ok(Created {
                        ticket,
                        replayed: false,
                    });
                }
                Ok(false) => return self.replay(&ticket.idempotency_key, fingerprint).await,
                Err(err)
                    if tierline_runtime::db::is_unique_violation(&err, "tickets_number_key") =>
                {
                    // One in a hundred million per live ticket: draw again.
                    ticket.number = TicketNumber::random();
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(Error::Corrupt(
            "no free ticket number after five draws".into(),
        ))
    }

    /// A ticket by id.
    async fn get(&self, id: TicketId) -> Result<Ticket> {
        fetch(&self.pool, id).await
    }

    /// Several tickets by id, in one read.
    async fn get_many(&self, ids: &[TicketId]) -> Result<HashMap<TicketId, Ticket>> {
        let raw: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
        let rows: Vec<TicketRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ANY($1)"
        )))
        .bind(&raw)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| row.into_domain().map(|t| (t.id, t)))
            .collect()
    }

    /// A ticket by its number.
    async fn get_by_number(&self, number: &TicketNumber) -> Result<Ticket> {
        let row: Option<TicketRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE number = $1"
        )))
        .bind(number.digits())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| Error::ticket_not_found(number))?
            .into_domain()
    }

    /// The links of a ticket, oldest first, with the other tickets' numbers.
    async fn links(&self, id: TicketId) -> Result<Vec<Link>> {
        links_of(&self.pool, id).await
    }

    /// The links of many tickets in one query.
    async fn links_of_many(&self, ids: &[TicketId]) -> Result<HashMap<TicketId, Vec<Link>>> {
        let raw: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
        let rows: Vec<(Uuid, Uuid, String, String, OffsetDateTime)> = sqlx::query_as(
            "SELECT l.ticket_id, l.linked_ticket_id, t.number, l.kind, l.created_at FROM ticket_links l \
             JOIN tickets t ON t.id = l.linked_ticket_id WHERE l.ticket_id = ANY($1) \
             ORDER BY l.created_at, l.linked_ticket_id",
        )
        .bind(&raw)
        .fetch_all(&self.pool)
        .await?;
        let mut map: HashMap<TicketId, Vec<Link>> = HashMap::new();
        for (owner, other, number, kind, at) in rows {
            map.entry(TicketId(owner))
                .or_default()
                .push(common::link_from(other, number, &kind, at)?);
        }
        Ok(map)
    }

    /// Changes a ticket under its row lock: `change` gets the loaded ticket and decides the
    /// events; no events means nothing changed and nothing is written.
    async fn mutate<T, F>(
        &self,
        id: TicketId,
        expected_version: Option<i64>,
        now: OffsetDateTime,
        change: F,
    ) -> Result<(Ticket, T)>
    where
        T: Send,
        F: FnOnce(&mut Ticket) -> Result<Mutation<T>> + Send,
    {
        let mut tx = self.pool.begin().await?;
        let mut ticket = fetch_for_update(&mut tx, id).await?;
        common::check_version(id, expected_version, ticket.version)?;
        let Mutation { events, value } = change(&mut ticket)?;
        if events.is_empty() {
            tx.rollback().await?;
            return Ok((ticket, value));
        }
        save(&mut tx, &ticket, now).await?;
        let snapshot = (self.snapshot)(&ticket);
        append_events(&mut tx, &ticket, &events, &snapshot, now).await?;
        tx.commit().await?;
        self.appended.notify_one();
        Ok((ticket, value))
    }

    /// One statement, atomic on its own: the write-back and the events, only if the stored
    /// ticket is still at `known`'s version.
    async fn mutate_known<T, F>(
        &self,
        known: Ticket,
        now: OffsetDateTime,
        change: F,
    ) -> Result<Option<(Ticket, T)>>
    where
        T: Send,
        F: FnOnce(&mut Ticket) -> Result<Mutation<T>> + Send,
    {
        let from_version = known.version;
        let mut ticket = known;
        let Mutation { events, value } = change(&mut ticket)?;
        if events.is_empty() {
            return Ok(Some((ticket, value)));
        }
        let snapshot = (self.snapshot)(&ticket);
        let written =
            save_and_append_if_at(&self.pool, &ticket, from_version, &events, &snapshot, now)
                .await?;
        if !written {
            return Ok(None);
        }
        self.appended.notify_one();
        Ok(Some((ticket, value)))
    }

    /// A page of tickets matching `filter`, in its order, after the (created_at, id) cursor.
    async fn list(
        &self,
        filter: &TicketFilter,
        after: Option<(OffsetDateTime, Uuid)>,
    ) -> Result<Vec<Ticket>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        q.push(TICKET_COLUMNS).push(" FROM tickets WHERE TRUE");
        let strs = |v: Vec<&'static str>| v.into_iter().map(str::to_owned).collect::<Vec<String>>();
        if !filter.states.is_empty() {
            q.push(" AND state = ANY(")
                .push_bind(strs(filter.states.iter().map(|s| s.as_str()).collect()))
                .push(")");
        }
        if !filter.tiers.is_empty() {
            q.push(" AND snapshot_tier = ANY(")
                .push_bind(strs(filter.tiers.iter().map(|t| t.as_str()).collect()))
                .push(")");
        }
        if !filter.departments.is_empty() {
            q.push(" AND department = ANY(")
                .push_bind(filter.departments.clone())
                .push(")");
        }
        if !filter.categories.is_empty() {
            q.push(" AND category = ANY(")
                .push_bind(filter.categories.clone())
                .push(")");
        }
        if let Some(agent) = &filter.assigned_agent_id {
            q.push(" AND assigned_agent_id = ").push_bind(agent.clone());
        }
        if let Some(customer) = filter.customer_id {
            q.push(" AND customer_id = ").push_bind(customer);
        }
        if !filter.sla_statuses.is_empty() {
            q.push(" AND sla_status = ANY(")
                .push_bind(strs(
                    filter
                        .sla_statuses
                        .iter()
                        .map(|s| common::sla_status_str(*s))
                        .collect(),
                ))
                .push(")");
        }
        if let Some(from) = filter.created_from {
            q.push(" AND created_at >= ").push_bind(from);
        }
        if let Some(before) = filter.created_before {
            q.push(" AND created_at < ").push_bind(before);
        }
        if let Some(key_account) = filter.key_account {
            q.push(" AND snapshot_key_account = ")
                .push_bind(key_account);
        }
        let (cmp, dir) = match filter.order {
            TicketOrder::CreatedAsc => (">", "ASC"),
            TicketOrder::CreatedDesc => ("<", "DESC"),
        };
        if let Some((at, id)) = after {
            q.push(" AND (created_at, id) ")
                .push(cmp)
                .push(" (")
                .push_bind(at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        q.push(" ORDER BY created_at ")
            .push(dir)
            .push(", id ")
            .push(dir)
            .push(" LIMIT ")
            .push_bind(i64::from(filter.page_size) + 1);
        let rows: Vec<TicketRow> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(TicketRow::into_domain).collect()
    }

    /// Changes two tickets under both row locks (taken in id order, so opposite pairs cannot
    /// deadlock): merges and links.
    async fn mutate_pair<T, F>(
        &self,
        first: TicketId,
        second: TicketId,
        now: OffsetDateTime,
        change: F,
    ) -> Result<(Ticket, Ticket, T)>
    where
        T: Send,
        F: FnOnce(
                &mut Ticket,
                &mut Ticket,
                &mut PairWrites,
            ) -> Result<(Vec<NewEvent>, Vec<NewEvent>, T)>
            + Send,
    {
        let mut tx = self.pool.begin().await?;
        let (mut a, mut b) = if first.0 <= second.0 {
            let a = fetch_for_update(&mut tx, first).await?;
            let b = fetch_for_update(&mut tx, second).await?;
            (a, b)
        } else {
            let b = fetch_for_update(&mut tx, second).await?;
            let a = fetch_for_update(&mut tx, first).await?;
            (a, b)
        };
        let mut writes = PairWrites::default();
        let (events_a, events_b, value) = change(&mut a, &mut b, &mut writes)?;
        for (kind, x, y) in writes.links {
            link_pair(&mut tx, x, y, kind, now).await?;
        }
        for (x, y) in writes.unlinks {
            let removed = sqlx::query(
                "DELETE FROM ticket_links WHERE (ticket_id = $1 AND linked_ticket_id = $2) \
                   OR (ticket_id = $2 AND linked_ticket_id = $1)",
            )
            .bind(x.0)
            .bind(y.0)
            .execute(&mut *tx)
            .await?;
            if removed.rows_affected() == 0 {
                return Err(Error::NotFound {
                    what: "link",
                    id: format!("{x} - {y}"),
                });
            }
        }
        for (ticket, events) in [(&a, &events_a), (&b, &events_b)] {
            if !events.is_empty() {
                save(&mut tx, ticket, now).await?;
                let snapshot = (self.snapshot)(ticket);
                append_events(&mut tx, ticket, events, &snapshot, now).await?;
            }
        }
        tx.commit().await?;
        self.appended.notify_one();
        Ok((a, b, value))
    }

    /// The existing link from `a` to `b`, if any.
    async fn link_between(&self, a: TicketId, b: TicketId) -> Result<Option<LinkKind>> {
        let kind: Option<String> = sqlx::query_scalar(
            "SELECT kind FROM ticket_links WHERE ticket_id = $1 AND linked_ticket_id = $2",
        )
        .bind(a.0)
        .bind(b.0)
        .fetch_optional(&self.pool)
        .await?;
        kind.as_deref().map(common::link_kind_from).transpose()
    }

    /// Sets when the timer worker looks at a ticket next, unless the ticket changed meanwhile.
    async fn reschedule_timer(
        &self,
        id: TicketId,
        version: i64,
        at: Option<OffsetDateTime>,
    ) -> Result<()> {
        sqlx::query("UPDATE tickets SET timer_at = $3 WHERE id = $1 AND version = $2")
            .bind(id.0)
            .bind(version)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn timers_due(&self, now: OffsetDateTime, limit: i64) -> Result<Vec<TicketId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM tickets WHERE timer_at <= $1 ORDER BY timer_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(TicketId).collect())
    }

    async fn pending_customers(&self, limit: i64) -> Result<Vec<TicketId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM tickets WHERE customer_resolution = 'pending' \
             ORDER BY created_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(TicketId).collect())
    }

    async fn record_sla_outcomes(&self, id: TicketId, outcomes: &[SlaOutcome]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        // One statement for all of a ticket's outcomes.
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO ticket_sla_outcomes (ticket_id, target, outcome, due_at, achieved_at) ",
        );
        q.push_values(outcomes, |mut row, o| {
            row.push_bind(id.0)
                .push_bind(o.target)
                .push_bind(o.outcome)
                .push_bind(o.due_at)
                .push_bind(o.achieved_at);
        });
        q.push(" ON CONFLICT (ticket_id, target) DO NOTHING");
        q.build().execute(&self.pool).await?;
        Ok(())
    }

    /// Publishes everything committed so far, in passes of [`PUBLISH_BATCH`].
    async fn publish(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let published = self.publish_batch().await?;
            total += published;
            if published < PUBLISH_BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }

    /// Published events after position `after`, oldest first. Positions become visible in
    /// order (see [`PUBLISH_LOCK`]), so a reader that pages by them misses none.
    async fn events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(RecordedEvent, Option<Vec<u8>>)>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT position AS sequence, event_id, ticket_id, ticket_version, kind, actor_kind, \
               actor_id, from_state, to_state, reason, changed_fields, comment_id, \
               related_ticket_id, event_at, snapshot \
             FROM ticket_events \
             WHERE position > $1 \
             ORDER BY position LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let snapshot = r.snapshot.clone();
                r.into_domain().map(|e| (e, snapshot))
            })
            .collect()
    }

    /// The lowest sequence a stream may still start from (its snapshot is retained), if any.
    async fn oldest_retained_sequence(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT min(position) FROM ticket_events \
                 WHERE snapshot IS NOT NULL AND position IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Clears the snapshots of events older than `before` (history stays); returns how many.
    async fn prune_snapshots(&self, before: OffsetDateTime, limit: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE ticket_events SET snapshot = NULL WHERE sequence IN ( \
               SELECT sequence FROM ticket_events WHERE snapshot IS NOT NULL AND event_at < $1 \
               ORDER BY event_at LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The highest position published so far (0 if none).
    async fn latest_sequence(&self) -> Result<i64> {
        let latest: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM ticket_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(latest.unwrap_or(0))
    }

    /// A ticket's history, oldest first, after `after`.
    async fn history(&self, id: TicketId, after: i64, limit: i64) -> Result<Vec<RecordedEvent>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT sequence, event_id, ticket_id, ticket_version, kind, actor_kind, actor_id, \
               from_state, to_state, reason, changed_fields, comment_id, related_ticket_id, \
               event_at, NULL::bytea AS snapshot \
             FROM ticket_events WHERE ticket_id = $1 AND sequence > $2 \
             ORDER BY sequence LIMIT $3",
        )
        .bind(id.0)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() && after == 0 {
            fetch(&self.pool, id).await?;
        }
        rows.into_iter().map(EventRow::into_domain).collect()
    }

    /// Adds a comment and applies what it does to the ticket, in one transaction.
    async fn add_comment<F>(
        &self,
        comment: Comment,
        idempotency: Option<(String, Vec<u8>)>,
        now: OffsetDateTime,
        change: F,
    ) -> Result<Comment>
    where
        F: FnOnce(&mut Ticket, &mut Comment) -> Result<Vec<NewEvent>> + Send,
    {
        if let Some((key, fingerprint)) = &idempotency
            && let Some(existing) = self.comment_by_key(key, fingerprint).await?
        {
            return Ok(existing);
        }
        let mut tx = self.pool.begin().await?;
        let mut ticket = fetch_for_update(&mut tx, comment.ticket_id).await?;
        let mut comment = comment;
        let events = change(&mut ticket, &mut comment)?;
        let inserted = sqlx::query(
            "INSERT INTO ticket_comments (id, ticket_id, visibility, author_kind, author_id, body, \
               channel, first_response, created_at, idempotency_key, request_fingerprint) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(comment.id)
        .bind(comment.ticket_id.0)
        .bind(comment.visibility.as_str())
        .bind(comment.author.kind.as_str())
        .bind(&comment.author.id)
        .bind(&comment.body)
        .bind(comment.channel.as_str())
        .bind(comment.first_response)
        .bind(comment.created_at)
        .bind(idempotency.as_ref().map(|(k, _)| k.as_str()))
        .bind(idempotency.as_ref().map(|(_, f)| f.as_slice()))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // A concurrent retry with the same key won.
            tx.rollback().await?;
            if let Some((key, fingerprint)) = &idempotency
                && let Some(existing) = self.comment_by_key(key, fingerprint).await?
            {
                return Ok(existing);
            }
            return Err(Error::Corrupt("comment key conflicted but is gone".into()));
        }
        if !events.is_empty() {
            save(&mut tx, &ticket, now).await?;
            let snapshot = (self.snapshot)(&ticket);
            append_events(&mut tx, &ticket, &events, &snapshot, now).await?;
        }
        tx.commit().await?;
        self.appended.notify_one();
        Ok(comment)
    }

    /// A ticket's comments, oldest first, including those of tickets merged into it.
    async fn comments(
        &self,
        id: TicketId,
        visibility: Option<Visibility>,
        after: Option<CommentCursor>,
        limit: i64,
    ) -> Result<Vec<Comment>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT id, ticket_id, visibility, author_kind, author_id, body, channel, first_response, \
               created_at, request_fingerprint FROM ticket_comments \
             WHERE ticket_id IN (SELECT id FROM tickets WHERE id = ",
        );
        q.push_bind(id.0)
            .push(" OR merged_into = ")
            .push_bind(id.0)
            .push(")");
        if let Some(v) = visibility {
            q.push(" AND visibility = ").push_bind(v.as_str());
        }
        if let Some((at, last)) = after {
            q.push(" AND (created_at, id) > (")
                .push_bind(at)
                .push(", ")
                .push_bind(last)
                .push(")");
        }
        q.push(" ORDER BY created_at, id LIMIT ").push_bind(limit);
        let rows: Vec<CommentRow> = q.build_query_as().fetch_all(&self.pool).await?;
        if rows.is_empty() && after.is_none() {
            fetch(&self.pool, id).await?;
        }
        rows.into_iter().map(CommentRow::into_domain).collect()
    }
    /// Locks the cursor of the relay `name` for one pass; `None` if another replica holds it.
    /// The first claim of a name creates its cursor at 0 (the start of the log).
    async fn claim_relay(&self, name: &str) -> Result<Option<PgRelayClaim>> {
        const LOCK: &str =
            "SELECT sequence FROM relay_cursors WHERE name = $1 FOR UPDATE SKIP LOCKED";
        let mut tx = self.pool.begin().await?;
        // A relay delivers at least once and its consumers are idempotent, so a cursor update
        // lost in a crash only sends a few events again: its commit need not wait for the WAL
        // flush, which would otherwise cost one per pass.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        let mut held: Option<i64> = sqlx::query_scalar(LOCK)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if held.is_none() {
            // Locked by another replica, or no cursor yet. Created on its own (inserting it in
            // this transaction would make other replicas wait for the whole pass), then locked
            // if still free.
            sqlx::query("INSERT INTO relay_cursors (name) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(name)
                .execute(&self.pool)
                .await?;
            held = sqlx::query_scalar(LOCK)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        }
        Ok(held.map(|cursor| PgRelayClaim {
            tx,
            name: name.to_owned(),
            cursor,
        }))
    }

    /// The tickets touched by up to `limit` events after `after`, each once and as it is now,
    /// in one query. Each ticket is read by its key (the LATERAL ... LIMIT 1): planned for a
    /// full batch, a plain join read the whole tickets table on every pass, which is most
    /// passes under load, each touching a few tickets. The events are those [`PgStore::events_after`] would return.
    async fn tickets_touched_after(&self, after: i64, limit: i64) -> Result<TouchedTickets> {
        let rows: Vec<TouchedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH e AS ( \
               SELECT position AS sequence, ticket_id FROM ticket_events \
               WHERE position > $1 \
               ORDER BY position LIMIT $2), \
             f AS (SELECT ticket_id, min(sequence) AS first_sequence FROM e GROUP BY ticket_id), \
             s AS (SELECT count(*) AS events, max(sequence) AS last_sequence FROM e) \
             SELECT s.events, s.last_sequence, f.first_sequence, t.* \
             FROM s CROSS JOIN f CROSS JOIN LATERAL ( \
               SELECT {TICKET_COLUMNS} FROM tickets WHERE tickets.id = f.ticket_id LIMIT 1) t \
             ORDER BY f.first_sequence"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let (events, last_sequence) = rows
            .first()
            .map_or((0, after), |r| (r.events, r.last_sequence));
        let tickets = rows
            .into_iter()
            .map(|r| Ok((r.first_sequence, r.ticket.into_domain()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(TouchedTickets {
            tickets,
            events: usize::try_from(events).unwrap_or(0),
            last_sequence,
        })
    }
}

/// A relay's cursor row, held locked (FOR UPDATE) by an open transaction until committed or
/// dropped: while one replica holds it, the others' `SKIP LOCKED` claims find nothing.
pub struct PgRelayClaim {
    tx: Transaction<'static, Postgres>,
    name: String,
    cursor: i64,
}

impl std::fmt::Debug for PgRelayClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClaim")
            .field("name", &self.name)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl RelayCursor for PgRelayClaim {
    fn cursor(&self) -> i64 {
        self.cursor
    }

    async fn commit(mut self, through: i64) -> Result<()> {
        if through > self.cursor {
            sqlx::query("UPDATE relay_cursors SET sequence = $2 WHERE name = $1")
                .bind(&self.name)
                .bind(through)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

#[derive(FromRow)]
struct TouchedRow {
    events: i64,
    last_sequence: i64,
    first_sequence: i64,
    #[sqlx(flatten)]
    ticket: TicketRow,
}

/// Inserts a new ticket with its CREATED event, in one statement. `false`
/// when the idempotency key already has a ticket (nothing is written then).
async fn insert_new(
    executor: impl sqlx::PgExecutor<'_>,
    t: &Ticket,
    fingerprint: &[u8],
    actor: &Actor,
    snapshot: &[u8],
) -> std::result::Result<bool, sqlx::Error> {
    let columns = common::TicketColumns::of(t, t.created_at);
    let q = sqlx::query_scalar(concat!(
        "WITH t AS (",
        common::insert_ticket!(),
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, version, state), \
         e AS (INSERT INTO ticket_events (event_id, ticket_id, ticket_version, kind, actor_kind, \
             actor_id, from_state, to_state, reason, event_at, snapshot) \
           SELECT $57, t.id, t.version, 'created', $58, $59, t.state, t.state, 'created', $9, $60 \
           FROM t RETURNING 1) \
         SELECT count(*) FROM t"
    ));
    let q = common::bind_intake!(q, columns, fingerprint, time = identity);
    let inserted: i64 = common::bind_mutable!(q, columns, time = identity, list = identity)
        .bind(Uuid::now_v7())
        .bind(actor.kind.as_str())
        .bind(&actor.id)
        .bind(snapshot)
        .fetch_one(executor)
        .await?;
    Ok(inserted == 1)
}

/// [`common::UPDATE_TICKET`] and [`append_events`] in one statement, when the stored ticket is
/// still at `from_version`; whether it was.
static SAVE_AND_APPEND_IF_AT: LazyLock<String> = LazyLock::new(|| {
    let update = common::UPDATE_TICKET
        .strip_suffix("WHERE id = $1")
        .unwrap_or(common::UPDATE_TICKET);
    format!(
        "WITH u AS ({update} WHERE id = $1 AND version = $49 RETURNING id, version), \
         e AS (INSERT INTO ticket_events (event_id, ticket_id, ticket_version, kind, actor_kind, \
             actor_id, from_state, to_state, reason, changed_fields, comment_id, \
             related_ticket_id, event_at, snapshot) \
           SELECT e.id, u.id, u.version, e.kind, e.actor_kind, e.actor_id, e.from_state, \
             e.to_state, e.reason, \
             CASE WHEN e.changed = '' THEN '{{}}'::text[] ELSE string_to_array(e.changed, ',') END, \
             e.comment_id, e.related, $50, $51 \
           FROM u, UNNEST($52::uuid[], $53::text[], $54::text[], $55::text[], $56::text[], \
                $57::text[], $58::text[], $59::text[], $60::uuid[], $61::uuid[]) WITH ORDINALITY \
             AS e(id, kind, actor_kind, actor_id, from_state, to_state, reason, changed, \
                  comment_id, related, ord) \
           ORDER BY e.ord \
           RETURNING 1) \
         SELECT count(*) FROM u"
    )
});

async fn save_and_append_if_at(
    pool: &PgPool,
    ticket: &Ticket,
    from_version: i64,
    events: &[NewEvent],
    snapshot: &[u8],
    now: OffsetDateTime,
) -> Result<bool> {
    let columns = EventColumns::of(events);
    let q =
        sqlx::query_scalar(sqlx::AssertSqlSafe(SAVE_AND_APPEND_IF_AT.as_str())).bind(ticket.id.0);
    let q = common::bind_mutable!(
        q,
        common::TicketColumns::of(ticket, now),
        time = identity,
        list = identity
    )
    .bind(from_version)
    .bind(now)
    .bind(snapshot);
    let written: i64 = bind_event_columns!(q, columns).fetch_one(pool).await?;
    Ok(written == 1)
}

async fn save(tx: &mut Transaction<'_, Postgres>, t: &Ticket, now: OffsetDateTime) -> Result<()> {
    let q = sqlx::query(common::UPDATE_TICKET).bind(t.id.0);
    common::bind_mutable!(
        q,
        common::TicketColumns::of(t, now),
        time = identity,
        list = identity
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn fetch(executor: impl sqlx::PgExecutor<'_>, id: TicketId) -> Result<Ticket> {
    let row: Option<TicketRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1"
    )))
    .bind(id.0)
    .fetch_optional(executor)
    .await?;
    row.ok_or_else(|| Error::ticket_not_found(id))?
        .into_domain()
}

async fn fetch_for_update(tx: &mut Transaction<'_, Postgres>, id: TicketId) -> Result<Ticket> {
    let row: Option<TicketRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1 FOR UPDATE"
    )))
    .bind(id.0)
    .fetch_optional(&mut **tx)
    .await?;
    row.ok_or_else(|| Error::ticket_not_found(id))?
        .into_domain()
}

async fn links_of(executor: impl sqlx::PgExecutor<'_>, id: TicketId) -> Result<Vec<Link>> {
    let rows: Vec<(Uuid, String, String, OffsetDateTime)> = sqlx::query_as(
        "SELECT l.linked_ticket_id, t.number, l.kind, l.created_at FROM ticket_links l \
         JOIN tickets t ON t.id = l.linked_ticket_id WHERE l.ticket_id = $1 \
         ORDER BY l.created_at, l.linked_ticket_id",
    )
    .bind(id.0)
    .fetch_all(executor)
    .await?;
    rows.into_iter()
        .map(|(other, number, kind, at)| common::link_from(other, number, &kind, at))
        .collect()
}

/// Links `a` to `b` as `kind`, and `b` to `a` as its inverse.
async fn link_pair(
    tx: &mut Transaction<'_, Postgres>,
    a: TicketId,
    b: TicketId,
    kind: LinkKind,
    now: OffsetDateTime,
) -> Result<()> {
    if kind == LinkKind::MergedFrom {
        // Only the survivor shows the link; the source names it in merged_into.
        sqlx::query(
            "INSERT INTO ticket_links (ticket_id, linked_ticket_id, kind, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(a.0)
        .bind(b.0)
        .bind(kind.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO ticket_links (ticket_id, linked_ticket_id, kind, created_at) \
         VALUES ($1, $2, $3, $5), ($2, $1, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(a.0)
    .bind(b.0)
    .bind(kind.as_str())
    .bind(kind.inverse().as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(FromRow)]
struct EventRow {
    sequence: i64,
    event_id: Uuid,
    ticket_id: Uuid,
    ticket_version: i64,
    kind: String,
    actor_kind: String,
    actor_id: String,
    from_state: String,
    to_state: String,
    reason: String,
    changed_fields: Vec<String>,
    comment_id: Option<Uuid>,
    related_ticket_id: Option<Uuid>,
    event_at: OffsetDateTime,
    snapshot: Option<Vec<u8>>,
}

impl EventRow {
    fn into_domain(self) -> Result<RecordedEvent> {
        EventRecord {
            sequence: self.sequence,
            event_id: self.event_id,
            ticket_id: self.ticket_id,
            ticket_version: self.ticket_version,
            kind: self.kind,
            actor_kind: self.actor_kind,
            actor_id: self.actor_id,
            from_state: self.from_state,
            to_state: self.to_state,
            reason: self.reason,
            changed_fields: self.changed_fields,
            comment_id: self.comment_id,
            related_ticket_id: self.related_ticket_id,
            event_at: self.event_at,
        }
        .into_domain()
    }
}

#[derive(FromRow)]
struct CommentRow {
    id: Uuid,
    ticket_id: Uuid,
    visibility: String,
    author_kind: String,
    author_id: String,
    body: String,
    channel: String,
    first_response: bool,
    created_at: OffsetDateTime,
    request_fingerprint: Option<Vec<u8>>,
}

impl CommentRow {
    fn into_domain(self) -> Result<Comment> {
        CommentRecord {
            id: self.id,
            ticket_id: self.ticket_id,
            visibility: self.visibility,
            author_kind: self.author_kind,
            author_id: self.author_id,
            body: self.body,
            channel: self.channel,
            first_response: self.first_response,
            created_at: self.created_at,
        }
        .into_domain()
    }
}
