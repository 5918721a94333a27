//! [`TicketStore`] in one SQLite file, for the single-process dev mode. It behaves as
//! [`super::PgStore`] does (`tests/store.rs` runs the same tests on both); where PostgreSQL has
//! a feature SQLite lacks, this store uses an equivalent:
//!
//! - **Row locks.** SQLite has one writer at a time. Every write is a `BEGIN IMMEDIATE`
//!   transaction, which takes the write lock when it starts, so everything it reads is what it
//!   writes over: `SELECT … FOR UPDATE`, `FOR KEY SHARE`, idempotency keys and version checks
//!   need no locks of their own and cannot race. Writers of this process first queue on an
//!   async mutex, so they wait their turn in order rather than in SQLite's sleeping busy
//!   handler. This machinery, and [`Stamp`], are [`tierline_runtime::sqlite`].
//! - **Log positions.** One writer means transactions commit in the order they drew their
//!   sequences, so every read sees a gap-free prefix of the log, and the sequence is the
//!   position: what PostgreSQL's publishing pass ([`super::PUBLISH_LOCK`]) is for comes free.
//! - **LISTEN/NOTIFY.** SQLite has none. Every writer is in this process, so the store bumps its
//!   [`EventFeed`] itself after each commit that appended events.
//! - **The relay's row lock.** PostgreSQL holds a relay's cursor row `FOR UPDATE` in an open
//!   transaction for the whole pass. Here that would hold the write lock, and the relay changes
//!   tickets while it holds its claim: it would wait for itself. A claim is an in-process lock per
//!   relay name instead, and the cursor is written in a short write transaction on commit.
//! - **Snapshots.** Reads of more than one statement run in a deferred transaction, one
//!   snapshot; in WAL mode they do not wait for the writer.
//! - **Types.** Ids are 16-byte blobs (they order as PostgreSQL's uuid does), times are integer
//!   microseconds since the Unix epoch ([`Stamp`]), jsonb and text[] are JSON text, the event
//!   log's sequence is `INTEGER PRIMARY KEY AUTOINCREMENT`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, PoisonError};

use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::types::Json;
use sqlx::{FromRow, QueryBuilder, Sqlite};
use tierline_runtime::sqlite::{SqliteDb, Stamp, Write, opt_time};
use time::OffsetDateTime;
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use super::common::{self, CommentRecord, EventRecord, TicketRecord, ticket_columns};
use super::feed::EventFeed;
use super::{
    CommentCursor, Created, Mutation, PairWrites, RelayCursor, SlaOutcome, Snapshotter,
    TicketFilter, TicketOrder, TicketStore, TouchedTickets,
};
use crate::domain::sla::SlaClock;
use crate::domain::ticket::{
    Actor, Comment, Compensation, EventKind, Link, LinkKind, NewEvent, RecordedEvent,
    RecordedFollowUp, Ticket, TicketId, TicketNumber, Visibility,
};
use crate::error::{Error, Result};

/// The embedded SQLite migrations of the ticket service, applied by [`SqliteStore::open`] and
/// [`SqliteStore::in_memory`].
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations_sqlite");

/// How long a write waits for another process's write lock before the call is UNAVAILABLE.
pub use tierline_runtime::sqlite::BUSY_TIMEOUT;

/// Ticket numbers drawn before giving up, as in PostgreSQL.
const NUMBER_DRAWS: usize = 5;

/// The store.
#[derive(Clone)]
pub struct SqliteStore {
    /// The pool and this process's queue of writers (see [`tierline_runtime::sqlite`]).
    db: SqliteDb,
    snapshot: Snapshotter,
    feed: Arc<EventFeed>,
    /// One lock per relay name: who holds a relay's claim (see [`SqliteRelayClaim`]).
    relays: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path`, in WAL mode with foreign
    /// keys on and a busy timeout of [`BUSY_TIMEOUT`], and applies [`SQLITE_MIGRATOR`].
    pub async fn open(path: impl AsRef<Path>, snapshot: Snapshotter) -> Result<Self> {
        Ok(Self::with(
            SqliteDb::open(path, &SQLITE_MIGRATOR).await?,
            snapshot,
        ))
    }

    /// A fresh private database in memory, for tests. It lives in one connection, which the
    /// pool never closes (closing it would lose the data), so calls take turns.
    pub async fn in_memory(snapshot: Snapshotter) -> Result<Self> {
        Ok(Self::with(
            SqliteDb::in_memory(&SQLITE_MIGRATOR).await?,
            snapshot,
        ))
    }

    fn with(db: SqliteDb, snapshot: Snapshotter) -> Self {
        SqliteStore {
            db,
            snapshot,
            feed: EventFeed::new(),
            relays: Arc::default(),
        }
    }

    /// The pool, for tests. Writes through it bypass the queue of writers.
    pub fn pool(&self) -> &SqlitePool {
        self.db.pool()
    }

    /// Waits for in-flight calls and closes the database, checkpointing the WAL into the file.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Starts a write transaction (see [`Write`]).
    async fn write(&self) -> Result<Write> {
        Ok(self.db.write().await?)
    }

    /// Commits `w` and, if it appended events, wakes the readers of the log. After the commit,
    /// so a woken reader finds them.
    async fn commit(&self, w: Write, appended: bool) -> Result<()> {
        w.commit().await?;
        if appended {
            self.feed.bump();
        }
        Ok(())
    }
}

fn stamp(at: OffsetDateTime) -> Stamp {
    Stamp::from_time(at)
}

fn opt_stamp(at: Option<OffsetDateTime>) -> Option<Stamp> {
    at.map(Stamp::from_time)
}

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
    snapshot_at: Option<Stamp>,
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
    tags: Json<Vec<String>>,
    attributes: Json<BTreeMap<String, String>>,
    required_skills: Json<Vec<String>>,
    own_skills: Json<Vec<String>>,
    state: String,
    state_reason: String,
    hold_reason: Option<String>,
    cancel_reason: Option<String>,
    assigned_agent_id: Option<String>,
    handler_agent_ids: Json<Vec<String>>,
    enqueue_at: Stamp,
    pickup_due_at: Stamp,
    preferred_agent_id: Option<String>,
    reservation_id: Option<Uuid>,
    merged_into: Option<Uuid>,
    sla: Json<SlaClock>,
    sla_status: String,
    follow_up: Option<Json<RecordedFollowUp>>,
    follow_up_due_at: Option<Stamp>,
    follow_up_due_raised: bool,
    auto_close_at: Option<Stamp>,
    version: i64,
    created_at: Stamp,
    updated_at: Stamp,
    resolved_at: Option<Stamp>,
    closed_at: Option<Stamp>,
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
            snapshot_at: opt_time(self.snapshot_at)?,
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
            tags: self.tags.0,
            attributes: self.attributes.0,
            required_skills: self.required_skills.0,
            own_skills: self.own_skills.0,
            state: self.state,
            state_reason: self.state_reason,
            hold_reason: self.hold_reason,
            cancel_reason: self.cancel_reason,
            assigned_agent_id: self.assigned_agent_id,
            handler_agent_ids: self.handler_agent_ids.0,
            enqueue_at: self.enqueue_at.to_time()?,
            pickup_due_at: self.pickup_due_at.to_time()?,
            preferred_agent_id: self.preferred_agent_id,
            reservation_id: self.reservation_id,
            merged_into: self.merged_into,
            sla: self.sla.0,
            sla_status: self.sla_status,
            follow_up: self.follow_up.map(|j| j.0),
            follow_up_due_at: opt_time(self.follow_up_due_at)?,
            follow_up_due_raised: self.follow_up_due_raised,
            auto_close_at: opt_time(self.auto_close_at)?,
            version: self.version,
            created_at: self.created_at.to_time()?,
            updated_at: self.updated_at.to_time()?,
            resolved_at: opt_time(self.resolved_at)?,
            closed_at: opt_time(self.closed_at)?,
        }
        .into_domain()
    }
}

/// Inserts a new ticket row (its CREATED event is appended separately). The write lock is held.
async fn insert_ticket(conn: &mut SqliteConnection, t: &Ticket, fingerprint: &[u8]) -> Result<()> {
    let columns = common::TicketColumns::of(t, t.created_at);
    let q = common::bind_intake!(
        sqlx::query(common::insert_ticket!()),
        columns,
        fingerprint,
        time = stamp
    );
    common::bind_mutable!(q, columns, time = stamp, list = Json)
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes a loaded ticket back. The write lock is held.
async fn save(conn: &mut SqliteConnection, t: &Ticket, now: OffsetDateTime) -> Result<()> {
    let q = sqlx::query(common::UPDATE_TICKET).bind(t.id.0);
    common::bind_mutable!(
        q,
        common::TicketColumns::of(t, now),
        time = stamp,
        list = Json
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends events for `ticket` (already at its new version), in order. The write lock is held,
/// so their sequences follow every committed one and precede every later one: readers paging
/// by sequence see a gap-free prefix (PostgreSQL publishes positions after commit for this).
async fn append_events(
    conn: &mut SqliteConnection,
    ticket: &Ticket,
    events: &[NewEvent],
    snapshot: &[u8],
    now: OffsetDateTime,
) -> Result<()> {
    for e in events {
        sqlx::query(
            "INSERT INTO ticket_events (event_id, ticket_id, ticket_version, kind, actor_kind, \
               actor_id, from_state, to_state, reason, changed_fields, comment_id, \
               related_ticket_id, event_at, snapshot) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(Uuid::now_v7())
        .bind(ticket.id.0)
        .bind(ticket.version)
        .bind(e.kind.as_str())
        .bind(e.actor.kind.as_str())
        .bind(&e.actor.id)
        .bind(e.from.as_str())
        .bind(e.to.as_str())
        .bind(&e.reason)
        .bind(Json(&e.changed_fields))
        .bind(e.comment_id)
        .bind(e.related_ticket_id)
        .bind(stamp(now))
        .bind(snapshot)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn fetch(executor: impl sqlx::SqliteExecutor<'_>, id: TicketId) -> Result<Ticket> {
    let row: Option<TicketRow> = sqlx::query_as(concat!(
        "SELECT ",
        ticket_columns!(),
        " FROM tickets WHERE id = $1"
    ))
    .bind(id.0)
    .fetch_optional(executor)
    .await?;
    row.ok_or_else(|| Error::ticket_not_found(id))?
        .into_domain()
}

fn link(other: Uuid, number: String, kind: &str, at: Stamp) -> Result<Link> {
    common::link_from(other, number, kind, at.to_time()?)
}

/// Links `a` to `b` as `kind`, and `b` to `a` as its inverse. The write lock is held; a missing
/// ticket fails the foreign key, as in PostgreSQL.
async fn link_pair(
    conn: &mut SqliteConnection,
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
        .bind(stamp(now))
        .execute(conn)
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
    .bind(stamp(now))
    .execute(conn)
    .await?;
    Ok(())
}

const EVENT_COLUMNS: &str = "sequence, event_id, ticket_id, ticket_version, kind, actor_kind, \
    actor_id, from_state, to_state, reason, changed_fields, comment_id, related_ticket_id, \
    event_at";

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
    changed_fields: Json<Vec<String>>,
    comment_id: Option<Uuid>,
    related_ticket_id: Option<Uuid>,
    event_at: Stamp,
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
            changed_fields: self.changed_fields.0,
            comment_id: self.comment_id,
            related_ticket_id: self.related_ticket_id,
            event_at: self.event_at.to_time()?,
        }
        .into_domain()
    }
}

#[derive(FromRow)]
struct EventWithSnapshot {
    #[sqlx(flatten)]
    event: EventRow,
    snapshot: Option<Vec<u8>>,
}

const COMMENT_COLUMNS: &str = "id, ticket_id, visibility, author_kind, author_id, body, channel, \
    first_response, created_at, request_fingerprint";

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
    created_at: Stamp,
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
            created_at: self.created_at.to_time()?,
        }
        .into_domain()
    }
}

/// The comment an idempotency key already added: `None` if none, refused if it came from
/// another request.
async fn comment_by_key(
    conn: &mut SqliteConnection,
    key: &str,
    fingerprint: &[u8],
) -> Result<Option<Comment>> {
    let row: Option<CommentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COMMENT_COLUMNS} FROM ticket_comments WHERE idempotency_key = $1"
    )))
    .bind(key)
    .fetch_optional(conn)
    .await?;
    match row {
        None => Ok(None),
        Some(row) if row.request_fingerprint.as_deref() == Some(fingerprint) => {
            row.into_domain().map(Some)
        }
        Some(row) => Err(Error::FailedPrecondition {
            reason: "IDEMPOTENCY_KEY_REUSED",
            subject: format!("tickets/{}", row.ticket_id),
            message: format!("idempotency_key {key:?} already added a different comment"),
        }),
    }
}

/// `AND column IN (…)` over `values`; nothing if there are none (no filter).
fn push_in(q: &mut QueryBuilder<Sqlite>, column: &str, values: Vec<String>) {
    if values.is_empty() {
        return;
    }
    q.push(" AND ").push(column).push(" IN (");
    let mut list = q.separated(", ");
    for v in values {
        list.push_bind(v);
    }
    q.push(")");
}

impl TicketStore for SqliteStore {
    type Claim = SqliteRelayClaim;

    fn feed(&self) -> &Arc<EventFeed> {
        &self.feed
    }

    async fn create(
        &self,
        mut ticket: Ticket,
        fingerprint: &[u8],
        follow_up_of: Option<TicketId>,
        actor: Actor,
    ) -> Result<Created> {
        let mut w = self.write().await?;
        // The write lock is held: no other request can take the key or the number between
        // these reads and the insert (PostgreSQL's ON CONFLICT and unique-violation retry).
        let existing: Option<(Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT id, request_fingerprint FROM tickets WHERE idempotency_key = $1",
        )
        .bind(&ticket.idempotency_key)
        .fetch_optional(w.conn())
        .await?;
        if let Some((id, stored)) = existing {
            if stored != fingerprint {
                return Err(Error::FailedPrecondition {
                    reason: "IDEMPOTENCY_KEY_REUSED",
                    subject: format!("tickets/{id}"),
                    message: format!(
                        "idempotency_key {:?} already created ticket {id} from a different request",
                        ticket.idempotency_key
                    ),
                });
            }
            let stored = fetch(w.conn(), TicketId(id)).await?;
            return Ok(Created {
                ticket: stored,
                replayed: true,
            });
        }
        if let Some(other) = follow_up_of {
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tickets WHERE id = $1")
                .bind(other.0)
                .fetch_optional(w.conn())
                .await?;
            if exists.is_none() {
                return Err(Error::ticket_not_found(other));
            }
        }
        let mut draws = 1;
        loop {
            let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tickets WHERE number = $1")
                .bind(ticket.number.digits())
                .fetch_optional(w.conn())
                .await?;
            if taken.is_none() {
                break;
            }
            if draws == NUMBER_DRAWS {
                return Err(Error::Corrupt(
                    "no free ticket number after five draws".into(),
                ));
            }
            // One in a hundred million per live ticket: draw again.
            ticket.number = TicketNumber::random();
            draws += 1;
        }
        insert_ticket(w.conn(), &ticket, fingerprint).await?;
        let created = NewEvent::on(&ticket, EventKind::Created, actor, "created");
        let snapshot = (self.snapshot)(&ticket);
        append_events(w.conn(), &ticket, &[created], &snapshot, ticket.created_at).await?;
        if let Some(other) = follow_up_of {
            link_pair(
                w.conn(),
                ticket.id,
                other,
                LinkKind::FollowUpOf,
                ticket.created_at,
            )
            .await?;
        }
        self.commit(w, true).await?;
        Ok(Created {
            ticket,
            replayed: false,
        })
    }

    async fn get(&self, id: TicketId) -> Result<Ticket> {
        fetch(self.db.pool(), id).await
    }

    async fn get_many(&self, ids: &[TicketId]) -> Result<HashMap<TicketId, Ticket>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        // No arrays to bind: one placeholder per id (callers pass a page of at most 500).
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE id IN ("
        ));
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id.0);
        }
        q.push(")");
        let rows: Vec<TicketRow> = q.build_query_as().fetch_all(self.db.pool()).await?;
        rows.into_iter()
            .map(|row| row.into_domain().map(|t| (t.id, t)))
            .collect()
    }

    async fn get_by_number(&self, number: &TicketNumber) -> Result<Ticket> {
        let row: Option<TicketRow> = sqlx::query_as(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE number = $1"
        ))
        .bind(number.digits())
        .fetch_optional(self.db.pool())
        .await?;
        row.ok_or_else(|| Error::ticket_not_found(number))?
            .into_domain()
    }

    async fn links(&self, id: TicketId) -> Result<Vec<Link>> {
        let rows: Vec<(Uuid, String, String, Stamp)> = sqlx::query_as(
            "SELECT l.linked_ticket_id, t.number, l.kind, l.created_at FROM ticket_links l \
             JOIN tickets t ON t.id = l.linked_ticket_id WHERE l.ticket_id = $1 \
             ORDER BY l.created_at, l.linked_ticket_id",
        )
        .bind(id.0)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|(other, number, kind, at)| link(other, number, &kind, at))
            .collect()
    }

    async fn links_of_many(&self, ids: &[TicketId]) -> Result<HashMap<TicketId, Vec<Link>>> {
        let mut map: HashMap<TicketId, Vec<Link>> = HashMap::new();
        if ids.is_empty() {
            return Ok(map);
        }
        // No arrays to bind: one placeholder per id (a page holds at most 500).
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT l.ticket_id, l.linked_ticket_id, t.number, l.kind, l.created_at \
             FROM ticket_links l JOIN tickets t ON t.id = l.linked_ticket_id \
             WHERE l.ticket_id IN (",
        );
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id.0);
        }
        q.push(") ORDER BY l.created_at, l.linked_ticket_id");
        let rows: Vec<(Uuid, Uuid, String, String, Stamp)> =
            q.build_query_as().fetch_all(self.db.pool()).await?;
        for (owner, other, number, kind, at) in rows {
            map.entry(TicketId(owner))
                .or_default()
                .push(link(other, number, &kind, at)?);
        }
        Ok(map)
    }

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
        // The write lock stands in for PostgreSQL's row lock: nobody changes the ticket between
        // this read and the commit.
        let mut w = self.write().await?;
        let mut ticket = fetch(w.conn(), id).await?;
        common::check_version(id, expected_version, ticket.version)?;
        let Mutation { events, value } = change(&mut ticket)?;
        if events.is_empty() {
            // Dropping the write rolls it back; nothing was written.
            return Ok((ticket, value));
        }
        save(w.conn(), &ticket, now).await?;
        let snapshot = (self.snapshot)(&ticket);
        append_events(w.conn(), &ticket, &events, &snapshot, now).await?;
        self.commit(w, true).await?;
        Ok((ticket, value))
    }

    async fn list(
        &self,
        filter: &TicketFilter,
        after: Option<(OffsetDateTime, Uuid)>,
    ) -> Result<Vec<Ticket>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE 1"
        ));
        let strs = |v: Vec<&'static str>| v.into_iter().map(str::to_owned).collect::<Vec<String>>();
        push_in(
            &mut q,
            "state",
            strs(filter.states.iter().map(|s| s.as_str()).collect()),
        );
        push_in(
            &mut q,
            "snapshot_tier",
            strs(filter.tiers.iter().map(|t| t.as_str()).collect()),
        );
        push_in(&mut q, "department", filter.departments.clone());
        push_in(&mut q, "category", filter.categories.clone());
        if let Some(agent) = &filter.assigned_agent_id {
            q.push(" AND assigned_agent_id = ").push_bind(agent.clone());
        }
        if let Some(customer) = filter.customer_id {
            q.push(" AND customer_id = ").push_bind(customer);
        }
        push_in(
            &mut q,
            "sla_status",
            strs(
                filter
                    .sla_statuses
                    .iter()
                    .map(|s| common::sla_status_str(*s))
                    .collect(),
            ),
        );
        if let Some(from) = filter.created_from {
            q.push(" AND created_at >= ").push_bind(stamp(from));
        }
        if let Some(before) = filter.created_before {
            q.push(" AND created_at < ").push_bind(stamp(before));
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
                .push_bind(stamp(at))
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
        let rows: Vec<TicketRow> = q.build_query_as().fetch_all(self.db.pool()).await?;
        rows.into_iter().map(TicketRow::into_domain).collect()
    }

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
        let mut w = self.write().await?;
        // Read in id order, as PostgreSQL locks them, so the same missing ticket is reported.
        let (mut a, mut b) = if first.0 <= second.0 {
            let a = fetch(w.conn(), first).await?;
            let b = fetch(w.conn(), second).await?;
            (a, b)
        } else {
            let b = fetch(w.conn(), second).await?;
            let a = fetch(w.conn(), first).await?;
            (a, b)
        };
        let mut writes = PairWrites::default();
        let (events_a, events_b, value) = change(&mut a, &mut b, &mut writes)?;
        for (kind, x, y) in writes.links {
            link_pair(w.conn(), x, y, kind, now).await?;
        }
        for (x, y) in writes.unlinks {
            let removed = sqlx::query(
                "DELETE FROM ticket_links WHERE (ticket_id = $1 AND linked_ticket_id = $2) \
                   OR (ticket_id = $2 AND linked_ticket_id = $1)",
            )
            .bind(x.0)
            .bind(y.0)
            .execute(w.conn())
            .await?;
            if removed.rows_affected() == 0 {
                return Err(Error::NotFound {
                    what: "link",
                    id: format!("{x} - {y}"),
                });
            }
        }
        let mut appended = false;
        for (ticket, events) in [(&a, &events_a), (&b, &events_b)] {
            if !events.is_empty() {
                save(w.conn(), ticket, now).await?;
                let snapshot = (self.snapshot)(ticket);
                append_events(w.conn(), ticket, events, &snapshot, now).await?;
                appended = true;
            }
        }
        self.commit(w, appended).await?;
        Ok((a, b, value))
    }

    async fn link_between(&self, a: TicketId, b: TicketId) -> Result<Option<LinkKind>> {
        let kind: Option<String> = sqlx::query_scalar(
            "SELECT kind FROM ticket_links WHERE ticket_id = $1 AND linked_ticket_id = $2",
        )
        .bind(a.0)
        .bind(b.0)
        .fetch_optional(self.db.pool())
        .await?;
        kind.as_deref().map(common::link_kind_from).transpose()
    }

    async fn reschedule_timer(
        &self,
        id: TicketId,
        version: i64,
        at: Option<OffsetDateTime>,
    ) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query("UPDATE tickets SET timer_at = $3 WHERE id = $1 AND version = $2")
            .bind(id.0)
            .bind(version)
            .bind(opt_stamp(at))
            .execute(w.conn())
            .await?;
        self.commit(w, false).await
    }

    async fn timers_due(&self, now: OffsetDateTime, limit: i64) -> Result<Vec<TicketId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM tickets WHERE timer_at <= $1 ORDER BY timer_at LIMIT $2",
        )
        .bind(stamp(now))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(ids.into_iter().map(TicketId).collect())
    }

    async fn pending_customers(&self, limit: i64) -> Result<Vec<TicketId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM tickets WHERE customer_resolution = 'pending' \
             ORDER BY created_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(ids.into_iter().map(TicketId).collect())
    }

    async fn record_sla_outcomes(&self, id: TicketId, outcomes: &[SlaOutcome]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut w = self.write().await?;
        let now = w.now;
        // One statement for all of a ticket's outcomes.
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO ticket_sla_outcomes (ticket_id, target, outcome, due_at, achieved_at, \
               recorded_at) ",
        );
        q.push_values(outcomes, |mut row, o| {
            row.push_bind(id.0)
                .push_bind(o.target)
                .push_bind(o.outcome)
                .push_bind(stamp(o.due_at))
                .push_bind(opt_stamp(o.achieved_at))
                .push_bind(now);
        });
        q.push(" ON CONFLICT (ticket_id, target) DO NOTHING");
        q.build().execute(w.conn()).await?;
        self.commit(w, false).await
    }

    async fn events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(RecordedEvent, Option<Vec<u8>>)>> {
        // One statement, one snapshot. Every committed sequence is below every uncommitted one
        // (one writer; see the module doc), so the page is a gap-free prefix after `after`.
        let rows: Vec<EventWithSnapshot> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS}, snapshot FROM ticket_events \
             WHERE sequence > $1 ORDER BY sequence LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|r| r.event.into_domain().map(|e| (e, r.snapshot)))
            .collect()
    }

    async fn oldest_retained_sequence(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar(
                "SELECT min(sequence) FROM ticket_events WHERE snapshot IS NOT NULL",
            )
            .fetch_one(self.db.pool())
            .await?,
        )
    }

    async fn prune_snapshots(&self, before: OffsetDateTime, limit: i64) -> Result<u64> {
        let mut w = self.write().await?;
        let done = sqlx::query(
            "UPDATE ticket_events SET snapshot = NULL WHERE sequence IN ( \
               SELECT sequence FROM ticket_events WHERE snapshot IS NOT NULL AND event_at < $1 \
               ORDER BY event_at LIMIT $2)",
        )
        .bind(stamp(before))
        .bind(limit)
        .execute(w.conn())
        .await?;
        self.commit(w, false).await?;
        Ok(done.rows_affected())
    }

    async fn latest_sequence(&self) -> Result<i64> {
        let latest: Option<i64> = sqlx::query_scalar("SELECT max(sequence) FROM ticket_events")
            .fetch_one(self.db.pool())
            .await?;
        Ok(latest.unwrap_or(0))
    }

    async fn history(&self, id: TicketId, after: i64, limit: i64) -> Result<Vec<RecordedEvent>> {
        // One snapshot for the events and the existence check.
        let mut tx = self.db.read().await?;
        let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM ticket_events WHERE ticket_id = $1 AND sequence > $2 \
             ORDER BY sequence LIMIT $3"
        )))
        .bind(id.0)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() && after == 0 {
            fetch(&mut *tx, id).await?;
        }
        tx.commit().await?;
        rows.into_iter().map(EventRow::into_domain).collect()
    }

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
        let mut w = self.write().await?;
        // The write lock is held: a concurrent retry with the same key waits, then finds this
        // comment (PostgreSQL's ON CONFLICT and second look).
        if let Some((key, fingerprint)) = &idempotency
            && let Some(existing) = comment_by_key(w.conn(), key, fingerprint).await?
        {
            return Ok(existing);
        }
        let mut ticket = fetch(w.conn(), comment.ticket_id).await?;
        let mut comment = comment;
        let events = change(&mut ticket, &mut comment)?;
        sqlx::query(
            "INSERT INTO ticket_comments (id, ticket_id, visibility, author_kind, author_id, body, \
               channel, first_response, created_at, idempotency_key, request_fingerprint) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(comment.id)
        .bind(comment.ticket_id.0)
        .bind(comment.visibility.as_str())
        .bind(comment.author.kind.as_str())
        .bind(&comment.author.id)
        .bind(&comment.body)
        .bind(comment.channel.as_str())
        .bind(comment.first_response)
        .bind(stamp(comment.created_at))
        .bind(idempotency.as_ref().map(|(k, _)| k.as_str()))
        .bind(idempotency.as_ref().map(|(_, f)| f.as_slice()))
        .execute(w.conn())
        .await?;
        if !events.is_empty() {
            save(w.conn(), &ticket, now).await?;
            let snapshot = (self.snapshot)(&ticket);
            append_events(w.conn(), &ticket, &events, &snapshot, now).await?;
        }
        self.commit(w, !events.is_empty()).await?;
        Ok(comment)
    }

    async fn comments(
        &self,
        id: TicketId,
        visibility: Option<Visibility>,
        after: Option<CommentCursor>,
        limit: i64,
    ) -> Result<Vec<Comment>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT ");
        q.push(COMMENT_COLUMNS)
            .push(
                " FROM ticket_comments \
                 WHERE ticket_id IN (SELECT id FROM tickets WHERE id = ",
            )
            .push_bind(id.0)
            .push(" OR merged_into = ")
            .push_bind(id.0)
            .push(")");
        if let Some(v) = visibility {
            q.push(" AND visibility = ").push_bind(v.as_str());
        }
        if let Some((at, last)) = after {
            q.push(" AND (created_at, id) > (")
                .push_bind(stamp(at))
                .push(", ")
                .push_bind(last)
                .push(")");
        }
        q.push(" ORDER BY created_at, id LIMIT ").push_bind(limit);
        // One snapshot for the comments and the existence check.
        let mut tx = self.db.read().await?;
        let rows: Vec<CommentRow> = q.build_query_as().fetch_all(&mut *tx).await?;
        if rows.is_empty() && after.is_none() {
            fetch(&mut *tx, id).await?;
        }
        tx.commit().await?;
        rows.into_iter().map(CommentRow::into_domain).collect()
    }

    /// Claims the relay `name` for one pass, without holding the write lock: the relay changes
    /// tickets while it holds the claim, and a claim holding the write lock would wait for
    /// itself. One holder at a time is an in-process lock per name, which is enough for the
    /// single-process dev mode (a second process on the same file would run its own relays).
    async fn claim_relay(&self, name: &str) -> Result<Option<SqliteRelayClaim>> {
        let lock = self
            .relays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_owned())
            .or_default()
            .clone();
        let Ok(held) = lock.try_lock_owned() else {
            return Ok(None);
        };
        // No row yet means the start of the log; the first commit creates it.
        let cursor: Option<i64> =
            sqlx::query_scalar("SELECT sequence FROM relay_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(Some(SqliteRelayClaim {
            db: self.db.clone(),
            name: name.to_owned(),
            cursor: cursor.unwrap_or(0),
            _held: held,
        }))
    }

    async fn tickets_touched_after(&self, after: i64, limit: i64) -> Result<TouchedTickets> {
        // One statement, one snapshot: the events and the tickets as they are after them.
        let rows: Vec<TouchedRow> = sqlx::query_as(concat!(
            "WITH e AS ( \
               SELECT sequence, ticket_id FROM ticket_events \
               WHERE sequence > $1 \
               ORDER BY sequence LIMIT $2), \
             f AS (SELECT ticket_id, min(sequence) AS first_sequence FROM e GROUP BY ticket_id), \
             s AS (SELECT count(*) AS events, max(sequence) AS last_sequence FROM e) \
             SELECT s.events, s.last_sequence, f.first_sequence, ",
            ticket_columns!(),
            " FROM s CROSS JOIN f JOIN tickets ON tickets.id = f.ticket_id \
             ORDER BY f.first_sequence"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
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

#[derive(FromRow)]
struct TouchedRow {
    events: i64,
    last_sequence: i64,
    first_sequence: i64,
    #[sqlx(flatten)]
    ticket: TicketRow,
}

/// A relay's cursor, held by this process's lock for the relay's name until committed or
/// dropped: while one holder has it, other claims of the name get `None`. It holds no
/// connection and no SQLite lock, so the relay may change tickets meanwhile.
pub struct SqliteRelayClaim {
    db: SqliteDb,
    name: String,
    cursor: i64,
    _held: OwnedMutexGuard<()>,
}

impl std::fmt::Debug for SqliteRelayClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClaim")
            .field("name", &self.name)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl RelayCursor for SqliteRelayClaim {
    fn cursor(&self) -> i64 {
        self.cursor
    }

    async fn commit(self, through: i64) -> Result<()> {
        if through > self.cursor {
            // A short write of its own; `max` keeps the cursor from going back whatever is
            // stored (only the holder writes it, so it is what the claim read).
            let mut w = self.db.write().await?;
            sqlx::query(
                "INSERT INTO relay_cursors (name, sequence) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET sequence = max(sequence, excluded.sequence)",
            )
            .bind(&self.name)
            .bind(through)
            .execute(w.conn())
            .await?;
            w.commit().await?;
        }
        // Dropping the guard releases the claim, after the cursor is written.
        Ok(())
    }
}
