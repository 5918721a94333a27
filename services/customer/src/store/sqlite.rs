//! [`CustomerStore`] in one SQLite file, for the single-process dev mode. It behaves as
//! [`super::PgStore`] does (`tests/store.rs` runs the same tests on both); where PostgreSQL has
//! a feature SQLite lacks, this store uses an equivalent:
//!
//! - **Locks.** SQLite has one writer at a time. Every write is a `BEGIN IMMEDIATE`
//!   transaction, which takes the write lock when it starts, so everything it reads is what it
//!   writes over: identity claims, resolves, idempotency keys and version checks need neither
//!   advisory nor row locks, and cannot race. Writers of this process first queue on an async
//!   mutex, so they wait their turn in order rather than in SQLite's sleeping busy handler; the
//!   busy timeout then only matters when another process holds the file. This machinery, and
//!   [`Stamp`], are [`tierline_runtime::sqlite`], shared by every service's SQLite store.
//! - **Snapshots.** Reads of more than one statement run in a deferred transaction, one
//!   snapshot; in WAL mode they do not wait for the writer.
//! - **Types.** Ids are 16-byte blobs (they order as PostgreSQL's uuid does), times are integer
//!   microseconds since the Unix epoch ([`Stamp`]: PostgreSQL's precision, and they order as
//!   numbers), jsonb and text[] are JSON text.
//! - **Functions.** `customer_survivor()` is [`survivor`]; the set-based tier recomputation is
//!   one read, the pure [`classify`], and an update of each row that changes, in one
//!   transaction; sums that PostgreSQL saturates through `numeric` saturate in Rust.

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::sqlite::SqliteConnection;
use sqlx::types::Json;
use sqlx::{FromRow, QueryBuilder, Sqlite, Transaction};
use tierline_runtime::sqlite::{SqliteDb, Stamp, Write, opt_time};
use tierline_types::{Channel, Tier};
use uuid::Uuid;

use super::common::{self, CustomerRecord, IdentityJson, corrupt, resolved_from};
use super::{CustomerStore, Merge, NewCustomer, Page, RecomputeReport, Resolved, TimeCursor};
use crate::domain::{
    Customer, CustomerFilter, CustomerId, Direction, Identity, IdentityValue, Interaction,
    NewInteraction, NewSatisfaction, PostalAddress, Profile, ProfilePatch, Satisfaction,
    SatisfactionRecord, SignificantDate, TieringPolicy, classify,
};
use crate::error::{Error, Result};

/// The embedded SQLite migrations of the customer service, applied by [`SqliteStore::open`] and
/// [`SqliteStore::in_memory`].
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations_sqlite");

/// How long a write waits for another process's write lock before the call is UNAVAILABLE.
pub use tierline_runtime::sqlite::BUSY_TIMEOUT;

/// The customer columns every read returns, with identities as a JSON array (booleans made
/// JSON booleans: SQLite keeps them as 0 and 1).
macro_rules! customer_columns {
    () => {
        "c.id, c.display_name, c.form_of_address, c.kind, c.relationship, c.segment, \
         c.postal_address, c.significant_dates, c.preferences, c.observations, c.attributes, \
         c.credit_standing, c.lifecycle_stage, c.churn_reason, c.account_manager_id, \
         c.key_account, c.unreasonable, c.unreasonable_note, c.lifetime_value_micros, \
         c.computed_tier, c.override_tier, c.override_reason, c.override_set_at, \
         c.sat_count, c.sat_sum_c, c.sat_sum_expected, c.sat_sum_perceived, c.sat_last_c, \
         c.sat_last_at, c.merged_into, c.version, c.created_at, c.updated_at, c.deleted_at, \
         (SELECT json_group_array(json_object('kind', i.kind, 'value', i.value, \
                  'label', i.label, 'shared', json(CASE WHEN i.shared THEN 'true' ELSE 'false' END)) \
                  ORDER BY i.created_at, i.id) \
            FROM customer_identities i WHERE i.customer_id = c.id) AS identities"
    };
}

#[derive(FromRow)]
struct CustomerRow {
    id: Uuid,
    display_name: String,
    form_of_address: String,
    kind: String,
    relationship: String,
    segment: String,
    postal_address: Option<Json<PostalAddress>>,
    significant_dates: Json<Vec<SignificantDate>>,
    preferences: Json<Vec<String>>,
    observations: String,
    attributes: Json<BTreeMap<String, String>>,
    credit_standing: String,
    lifecycle_stage: String,
    churn_reason: String,
    account_manager_id: Option<String>,
    key_account: bool,
    unreasonable: bool,
    unreasonable_note: String,
    lifetime_value_micros: i64,
    computed_tier: String,
    override_tier: Option<String>,
    override_reason: Option<String>,
    override_set_at: Option<Stamp>,
    sat_count: i64,
    sat_sum_c: f64,
    sat_sum_expected: f64,
    sat_sum_perceived: f64,
    sat_last_c: Option<f64>,
    sat_last_at: Option<Stamp>,
    merged_into: Option<Uuid>,
    version: i64,
    created_at: Stamp,
    updated_at: Stamp,
    deleted_at: Option<Stamp>,
    identities: Json<Vec<IdentityJson>>,
}

impl CustomerRow {
    fn into_domain(self) -> Result<Customer> {
        CustomerRecord {
            id: self.id,
            display_name: self.display_name,
            form_of_address: self.form_of_address,
            kind: self.kind,
            relationship: self.relationship,
            segment: self.segment,
            postal_address: self.postal_address.map(|j| j.0),
            significant_dates: self.significant_dates.0,
            preferences: self.preferences.0,
            observations: self.observations,
            attributes: self.attributes.0,
            credit_standing: self.credit_standing,
            lifecycle_stage: self.lifecycle_stage,
            churn_reason: self.churn_reason,
            account_manager_id: self.account_manager_id,
            key_account: self.key_account,
            unreasonable: self.unreasonable,
            unreasonable_note: self.unreasonable_note,
            lifetime_value_micros: self.lifetime_value_micros,
            computed_tier: self.computed_tier,
            override_tier: self.override_tier,
            override_reason: self.override_reason,
            override_set_at: opt_time(self.override_set_at)?,
            sat_count: self.sat_count,
            sat_sum_c: self.sat_sum_c,
            sat_sum_expected: self.sat_sum_expected,
            sat_sum_perceived: self.sat_sum_perceived,
            sat_last_c: self.sat_last_c,
            sat_last_at: opt_time(self.sat_last_at)?,
            merged_into: self.merged_into,
            version: self.version,
            created_at: self.created_at.to_time()?,
            updated_at: self.updated_at.to_time()?,
            deleted_at: opt_time(self.deleted_at)?,
            identities: self.identities.0,
        }
        .into_domain()
    }
}

const INTERACTION_COLUMNS: &str = "id, customer_id, channel, direction, summary, promised, given, ticket_id, agent_id, occurred_at, created_at";

#[derive(FromRow)]
struct InteractionRow {
    id: Uuid,
    customer_id: Uuid,
    channel: String,
    direction: String,
    summary: String,
    promised: String,
    given: String,
    ticket_id: Option<Uuid>,
    agent_id: Option<String>,
    occurred_at: Stamp,
    created_at: Stamp,
}

impl InteractionRow {
    fn into_domain(self) -> Result<Interaction> {
        let occurred_at = self.occurred_at.to_time()?;
        Ok(Interaction {
            id: self.id,
            customer_id: CustomerId(self.customer_id),
            details: NewInteraction {
                channel: Channel::from_db(&self.channel)
                    .ok_or_else(|| corrupt("channel", &self.channel))?,
                direction: Direction::from_db(&self.direction)
                    .ok_or_else(|| corrupt("direction", &self.direction))?,
                summary: self.summary,
                promised: self.promised,
                given: self.given,
                ticket_id: self.ticket_id,
                agent_id: self.agent_id,
                occurred_at: Some(occurred_at),
            },
            occurred_at,
            created_at: self.created_at.to_time()?,
        })
    }
}

const SATISFACTION_COLUMNS: &str =
    "id, customer_id, ticket_id, agent_id, expected, perceived, comment, created_at";

#[derive(FromRow)]
struct SatisfactionRow {
    id: Uuid,
    customer_id: Uuid,
    ticket_id: Option<Uuid>,
    agent_id: Option<String>,
    expected: f64,
    perceived: f64,
    comment: String,
    created_at: Stamp,
}

impl SatisfactionRow {
    fn into_domain(self) -> Result<SatisfactionRecord> {
        let measurement = Satisfaction::new(self.expected, self.perceived)
            .map_err(|_| Error::Corrupt(format!("satisfaction record {}", self.id)))?;
        Ok(SatisfactionRecord {
            id: self.id,
            customer_id: CustomerId(self.customer_id),
            details: NewSatisfaction {
                measurement,
                ticket_id: self.ticket_id,
                agent_id: self.agent_id,
                comment: self.comment,
            },
            created_at: self.created_at.to_time()?,
        })
    }
}

#[derive(FromRow)]
struct MergeRow {
    id: Uuid,
    survivor_id: Uuid,
    merged_id: Uuid,
    reason: String,
    identities_moved: i64,
    interactions_moved: i64,
    satisfaction_moved: i64,
    created_at: Stamp,
    undone_at: Option<Stamp>,
}

impl MergeRow {
    fn into_domain(self) -> Result<Merge> {
        Ok(Merge {
            id: self.id,
            survivor: CustomerId(self.survivor_id),
            merged: CustomerId(self.merged_id),
            reason: self.reason,
            identities_moved: self.identities_moved,
            interactions_moved: self.interactions_moved,
            satisfaction_moved: self.satisfaction_moved,
            created_at: self.created_at.to_time()?,
            undone_at: opt_time(self.undone_at)?,
        })
    }
}

/// The state of a customer row that decides whether a change may proceed.
#[derive(FromRow)]
struct RowState {
    version: i64,
    deleted_at: Option<Stamp>,
    merged_into: Option<Uuid>,
    lifetime_value_micros: i64,
}

impl RowState {
    fn check_writable(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
        allow_deleted: bool,
    ) -> Result<()> {
        common::check_writable(
            id,
            self.version,
            self.deleted_at.is_some(),
            self.merged_into,
            expected_version,
            allow_deleted,
        )
    }
}

/// The store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The pool and this process's queue of writers (see [`tierline_runtime::sqlite`]).
    db: SqliteDb,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path`, in WAL mode with foreign
    /// keys on and a busy timeout of [`BUSY_TIMEOUT`], and applies [`SQLITE_MIGRATOR`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(SqliteStore {
            db: SqliteDb::open(path, &SQLITE_MIGRATOR).await?,
        })
    }

    /// A fresh private database in memory, for tests. It lives in one connection, which the
    /// pool never closes (closing it would lose the data), so calls take turns.
    pub async fn in_memory() -> Result<Self> {
        Ok(SqliteStore {
            db: SqliteDb::in_memory(&SQLITE_MIGRATOR).await?,
        })
    }

    /// The embedded migrations of this store.
    pub fn migrator() -> &'static sqlx::migrate::Migrator {
        &SQLITE_MIGRATOR
    }

    /// Waits for in-flight calls and closes the database, checkpointing the WAL into the file.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Starts a write transaction (see [`Write`]).
    async fn write(&self) -> Result<Write> {
        Ok(self.db.write().await?)
    }

    /// Starts a read transaction: one snapshot for reads of several statements.
    async fn read(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.db.read().await?)
    }
}

/// The live profile `id` stands for: itself, or the survivor of the merges it went through;
/// `None` for an unknown id. PostgreSQL's `customer_survivor()`, with the same depth limit.
async fn survivor(conn: &mut SqliteConnection, id: CustomerId) -> Result<Option<Uuid>> {
    let mut current = id.0;
    for _ in 0..=32 {
        let next: Option<Option<Uuid>> =
            sqlx::query_scalar("SELECT merged_into FROM customers WHERE id = $1")
                .bind(current)
                .fetch_optional(&mut *conn)
                .await?;
        match next {
            None => return Ok(None),
            Some(None) => return Ok(Some(current)),
            Some(Some(next)) => current = next,
        }
    }
    Ok(None)
}

/// The customer `id` stands for, following merges.
async fn fetch(conn: &mut SqliteConnection, id: CustomerId) -> Result<Customer> {
    let live = survivor(conn, id)
        .await?
        .ok_or_else(|| Error::customer_not_found(id))?;
    sqlx::query_as::<_, CustomerRow>(concat!(
        "SELECT ",
        customer_columns!(),
        " FROM customers c WHERE c.id = $1"
    ))
    .bind(live)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::customer_not_found(id))?
    .into_domain()
}

/// The row of `id` itself (not its survivor), as PostgreSQL's `SELECT … FOR UPDATE` reads it;
/// the write lock is already held.
async fn row_state(conn: &mut SqliteConnection, id: CustomerId) -> Result<RowState> {
    sqlx::query_as::<_, RowState>(
        "SELECT version, deleted_at, merged_into, lifetime_value_micros FROM customers WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::customer_not_found(id))
}

async fn bump_version(w: &mut Write, id: CustomerId) -> Result<()> {
    let now = w.now;
    sqlx::query("UPDATE customers SET version = version + 1, updated_at = $2 WHERE id = $1")
        .bind(id.0)
        .bind(now)
        .execute(w.conn())
        .await?;
    Ok(())
}

/// The current live holders of an identity, given as its kind's name and normalised value, as
/// (customer, shared). Holders are what a lookup lists: a merged profile's tombstone holds
/// nothing (see common::claim_conflicts).
async fn holders(
    conn: &mut SqliteConnection,
    kind: &str,
    value: &str,
) -> Result<Vec<(Uuid, bool)>> {
    Ok(sqlx::query_as(
        "SELECT i.customer_id, i.shared FROM customer_identities i \
           JOIN customers c ON c.id = i.customer_id \
         WHERE i.kind = $1 AND i.value = $2 AND NOT i.released \
           AND c.deleted_at IS NULL AND c.merged_into IS NULL",
    )
    .bind(kind)
    .bind(value)
    .fetch_all(conn)
    .await?)
}

/// Refuses, for `restoring`, to let the identities stored on `id` count as its holdings again
/// if a live customer has claimed one meanwhile. The write lock is held: nobody can claim one
/// between this check and the restore. Checked in (kind, value) order, as in PostgreSQL.
async fn check_restorable(
    w: &mut Write,
    id: CustomerId,
    restoring: common::Restoring,
) -> Result<()> {
    let mine: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT kind, value, shared FROM customer_identities WHERE customer_id = $1 \
         ORDER BY kind, value",
    )
    .bind(id.0)
    .fetch_all(w.conn())
    .await?;
    for (kind, value, shared) in &mine {
        let holders = holders(w.conn(), kind, value).await?;
        common::check_restorable(restoring, id, kind, value, *shared, &holders)?;
    }
    Ok(())
}

/// Claims `identity` for `customer`, refusing one another customer holds.
async fn claim_identity(w: &mut Write, customer: CustomerId, identity: &Identity) -> Result<()> {
    // The write lock is held: nobody can claim the identity between this read and the insert.
    let holders = holders(
        w.conn(),
        identity.value.kind().as_str(),
        identity.value.as_str(),
    )
    .await?;
    if common::claim_conflicts(customer.0, identity.shared, &holders) {
        return Err(common::identity_taken(&identity.value));
    }
    let now = w.now;
    sqlx::query(
        "INSERT INTO customer_identities (id, customer_id, kind, value, label, shared, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (customer_id, kind, value) \
         DO UPDATE SET label = excluded.label, shared = excluded.shared, released = 0",
    )
    .bind(Uuid::now_v7())
    .bind(customer.0)
    .bind(identity.value.kind().as_str())
    .bind(identity.value.as_str())
    .bind(&identity.label)
    .bind(identity.shared)
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| {
        // The owners index is the backstop, as in PostgreSQL; the check above means it is not
        // reached, but if it were, the claim lost to another owner.
        if is_unique_violation(&e) {
            common::identity_taken(&identity.value)
        } else {
            Error::from(e)
        }
    })?;
    Ok(())
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

async fn insert_customer(
    w: &mut Write,
    id: CustomerId,
    p: &Profile,
    idempotency_key: Option<&str>,
) -> Result<()> {
    let now = w.now;
    sqlx::query(
        "INSERT INTO customers (id, display_name, form_of_address, kind, relationship, segment, \
           postal_address, significant_dates, preferences, observations, attributes, \
           credit_standing, lifecycle_stage, churn_reason, account_manager_id, key_account, \
           unreasonable, unreasonable_note, lifetime_value_micros, idempotency_key, \
           created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
           $18, $19, $20, $21, $21)",
    )
    .bind(id.0)
    .bind(&p.display_name)
    .bind(&p.form_of_address)
    .bind(p.kind.as_str())
    .bind(p.relationship.as_str())
    .bind(&p.segment)
    .bind(p.postal_address.as_ref().map(Json))
    .bind(Json(&p.significant_dates))
    .bind(Json(&p.preferences))
    .bind(&p.observations)
    .bind(Json(&p.attributes))
    .bind(p.credit_standing.as_str())
    .bind(p.lifecycle_stage.as_str())
    .bind(&p.churn_reason)
    .bind(p.account_manager_id.as_deref())
    .bind(p.key_account)
    .bind(p.unreasonable)
    .bind(&p.unreasonable_note)
    .bind(p.lifetime_value.micros())
    .bind(idempotency_key)
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(())
}

/// Recomputes the running satisfaction figures of `id` from its records.
async fn refresh_satisfaction(w: &mut Write, id: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE customers SET sat_count = s.n, sat_sum_c = s.sum_c, \
           sat_sum_expected = s.sum_a, sat_sum_perceived = s.sum_b, \
           sat_last_c = s.last_c, sat_last_at = s.last_at \
         FROM (SELECT count(*) AS n, COALESCE(sum(satisfaction), 0.0) AS sum_c, \
                 COALESCE(sum(expected), 0.0) AS sum_a, COALESCE(sum(perceived), 0.0) AS sum_b, \
                 (SELECT satisfaction FROM customer_satisfaction WHERE customer_id = $1 \
                    ORDER BY created_at DESC, id DESC LIMIT 1) AS last_c, \
                 max(created_at) AS last_at \
               FROM customer_satisfaction WHERE customer_id = $1) AS s \
         WHERE customers.id = $1",
    )
    .bind(id)
    .execute(w.conn())
    .await?;
    Ok(())
}

async fn lookup_with(conn: &mut SqliteConnection, value: &IdentityValue) -> Result<Vec<Customer>> {
    let rows: Vec<CustomerRow> = sqlx::query_as(concat!(
        "SELECT ",
        customer_columns!(),
        " FROM customer_identities h JOIN customers c ON c.id = h.customer_id \
          WHERE h.kind = $1 AND h.value = $2 AND NOT h.released \
            AND c.deleted_at IS NULL AND c.merged_into IS NULL \
          ORDER BY c.updated_at DESC, c.id LIMIT 50"
    ))
    .bind(value.kind().as_str())
    .bind(value.as_str())
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(CustomerRow::into_domain).collect()
}

/// A replay of an idempotent write: the same key must be for the same customer.
async fn replayed<T>(
    existing: T,
    asked: CustomerId,
    conn: &mut SqliteConnection,
    owner: impl Fn(&T) -> CustomerId,
) -> Result<T> {
    let asked_live = fetch(conn, asked).await?.id;
    if owner(&existing) == asked_live {
        Ok(existing)
    } else {
        Err(common::idempotency_key_reused(asked))
    }
}

/// The live customer a timeline write to `id` lands on: its survivor, refused if deleted.
async fn timeline_owner(conn: &mut SqliteConnection, id: CustomerId) -> Result<Uuid> {
    let live = survivor(conn, id)
        .await?
        .ok_or_else(|| Error::customer_not_found(id))?;
    let deleted: Option<Option<Stamp>> =
        sqlx::query_scalar("SELECT deleted_at FROM customers WHERE id = $1")
            .bind(live)
            .fetch_optional(&mut *conn)
            .await?;
    match deleted {
        Some(None) => Ok(live),
        Some(Some(_)) => Err(common::timeline_of_deleted(id)),
        None => Err(Error::customer_not_found(id)),
    }
}

/// Keeps a page of `limit` items out of `limit + 1` fetched, and the cursor of the next.
fn page<T, C>(mut items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> C) -> Page<T, C> {
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(cursor)
    } else {
        None
    };
    Page { items, next }
}

async fn fetch_merge(conn: &mut SqliteConnection, id: Uuid) -> Result<Option<Merge>> {
    sqlx::query_as::<_, MergeRow>(
        "SELECT id, survivor_id, merged_id, reason, identities_moved, interactions_moved, \
           satisfaction_moved, created_at, undone_at FROM customer_merges WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?
    .map(MergeRow::into_domain)
    .transpose()
}

/// Moves back (or on) the rows of one kind that merge `merge_id` moved, from `from` to `to`;
/// returns how many.
async fn move_recorded(
    w: &mut Write,
    table: Moved,
    merge_id: Uuid,
    from: Uuid,
    to: Uuid,
) -> Result<i64> {
    let sql = match table {
        Moved::Identity => {
            "UPDATE customer_identities SET customer_id = $3 WHERE customer_id = $2 \
             AND id IN (SELECT row_id FROM customer_merge_moves WHERE merge_id = $1 AND kind = 'identity')"
        }
        Moved::Interaction => {
            "UPDATE customer_interactions SET customer_id = $3 WHERE customer_id = $2 \
             AND id IN (SELECT row_id FROM customer_merge_moves WHERE merge_id = $1 AND kind = 'interaction')"
        }
        Moved::Satisfaction => {
            "UPDATE customer_satisfaction SET customer_id = $3 WHERE customer_id = $2 \
             AND id IN (SELECT row_id FROM customer_merge_moves WHERE merge_id = $1 AND kind = 'satisfaction')"
        }
    };
    let moved = sqlx::query(sql)
        .bind(merge_id)
        .bind(from)
        .bind(to)
        .execute(w.conn())
        .await?
        .rows_affected();
    Ok(i64::try_from(moved).unwrap_or(i64::MAX))
}

/// The kinds of row a merge moves.
#[derive(Clone, Copy)]
enum Moved {
    Identity,
    Interaction,
    Satisfaction,
}

impl CustomerStore for SqliteStore {
    async fn create(&self, new: NewCustomer, idempotency_key: Option<String>) -> Result<Customer> {
        let mut w = self.write().await?;
        if let Some(key) = &idempotency_key {
            let existing: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM customers WHERE idempotency_key = $1")
                    .bind(key)
                    .fetch_optional(w.conn())
                    .await?;
            if let Some(id) = existing {
                let customer = fetch(w.conn(), CustomerId(id)).await?;
                w.commit().await?;
                return Ok(customer);
            }
        }
        let id = CustomerId::new();
        insert_customer(&mut w, id, &new.profile, idempotency_key.as_deref()).await?;
        for identity in &new.identities {
            // A refused claim drops `w`: the customer is not created, the key not used.
            claim_identity(&mut w, id, identity).await?;
        }
        let customer = fetch(w.conn(), id).await?;
        w.commit().await?;
        Ok(customer)
    }

    async fn get(&self, id: CustomerId) -> Result<Customer> {
        let mut tx = self.read().await?;
        let customer = fetch(&mut tx, id).await?;
        tx.commit().await?;
        Ok(customer)
    }

    async fn update(
        &self,
        id: CustomerId,
        patch: ProfilePatch,
        expected_version: Option<i64>,
    ) -> Result<Customer> {
        let mut w = self.write().await?;
        row_state(w.conn(), id)
            .await?
            .check_writable(id, expected_version, false)?;
        let current = fetch(w.conn(), id).await?;
        let p = patch.apply(&current.profile)?;
        let now = w.now;
        sqlx::query(
            "UPDATE customers SET display_name = $2, form_of_address = $3, kind = $4, \
               relationship = $5, segment = $6, postal_address = $7, significant_dates = $8, \
               preferences = $9, observations = $10, attributes = $11, credit_standing = $12, \
               lifecycle_stage = $13, churn_reason = $14, account_manager_id = $15, \
               key_account = $16, unreasonable = $17, unreasonable_note = $18, \
               lifetime_value_micros = $19, version = version + 1, updated_at = $20 \
             WHERE id = $1",
        )
        .bind(id.0)
        .bind(&p.display_name)
        .bind(&p.form_of_address)
        .bind(p.kind.as_str())
        .bind(p.relationship.as_str())
        .bind(&p.segment)
        .bind(p.postal_address.as_ref().map(Json))
        .bind(Json(&p.significant_dates))
        .bind(Json(&p.preferences))
        .bind(&p.observations)
        .bind(Json(&p.attributes))
        .bind(p.credit_standing.as_str())
        .bind(p.lifecycle_stage.as_str())
        .bind(&p.churn_reason)
        .bind(p.account_manager_id.as_deref())
        .bind(p.key_account)
        .bind(p.unreasonable)
        .bind(&p.unreasonable_note)
        .bind(p.lifetime_value.micros())
        .bind(now)
        .execute(w.conn())
        .await?;
        let customer = fetch(w.conn(), id).await?;
        w.commit().await?;
        Ok(customer)
    }

    async fn list(
        &self,
        filter: CustomerFilter,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<Customer, Uuid>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers c WHERE c.merged_into IS NULL"
        ));
        if !filter.show_deleted {
            q.push(" AND c.deleted_at IS NULL");
        }
        if let Some(tier) = filter.tier {
            q.push(" AND c.tier = ").push_bind(tier.as_str());
        }
        if let Some(segment) = filter.segment {
            q.push(" AND c.segment = ").push_bind(segment);
        }
        if let Some(stage) = filter.lifecycle_stage {
            q.push(" AND c.lifecycle_stage = ")
                .push_bind(stage.as_str());
        }
        if let Some(manager) = filter.account_manager_id {
            q.push(" AND c.account_manager_id = ").push_bind(manager);
        }
        if filter.key_accounts_only {
            q.push(" AND c.key_account");
        }
        if let Some(after) = after {
            q.push(" AND c.id > ").push_bind(after);
        }
        q.push(" ORDER BY c.id LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows: Vec<CustomerRow> = q.build_query_as().fetch_all(self.db.pool()).await?;
        let items = rows
            .into_iter()
            .map(CustomerRow::into_domain)
            .collect::<Result<Vec<_>>>()?;
        Ok(page(items, limit, |c| c.id.0))
    }

    async fn delete(&self, id: CustomerId, expected_version: Option<i64>) -> Result<Customer> {
        let mut w = self.write().await?;
        let state = row_state(w.conn(), id).await?;
        state.check_writable(id, expected_version, true)?;
        if state.deleted_at.is_none() {
            let now = w.now;
            sqlx::query(
                "UPDATE customers SET deleted_at = $2, version = version + 1, updated_at = $2 \
                 WHERE id = $1",
            )
            .bind(id.0)
            .bind(now)
            .execute(w.conn())
            .await?;
            sqlx::query("UPDATE customer_identities SET released = 1 WHERE customer_id = $1")
                .bind(id.0)
                .execute(w.conn())
                .await?;
        }
        let customer = fetch(w.conn(), id).await?;
        w.commit().await?;
        Ok(customer)
    }

    async fn undelete(&self, id: CustomerId) -> Result<Customer> {
        let mut w = self.write().await?;
        let state = row_state(w.conn(), id).await?;
        state.check_writable(id, None, true)?;
        if state.deleted_at.is_none() {
            return Err(common::customer_not_deleted(id));
        }
        // None of its identities may have been claimed by someone else meanwhile.
        check_restorable(&mut w, id, common::Restoring::Undelete).await?;
        sqlx::query("UPDATE customer_identities SET released = 0 WHERE customer_id = $1")
            .bind(id.0)
            .execute(w.conn())
            .await?;
        let now = w.now;
        sqlx::query(
            "UPDATE customers SET deleted_at = NULL, version = version + 1, updated_at = $2 \
             WHERE id = $1",
        )
        .bind(id.0)
        .bind(now)
        .execute(w.conn())
        .await?;
        let customer = fetch(w.conn(), id).await?;
        w.commit().await?;
        Ok(customer)
    }

    async fn add_identity(&self, id: CustomerId, identity: Identity) -> Result<Customer> {
        let mut w = self.write().await?;
        row_state(w.conn(), id)
            .await?
            .check_writable(id, None, false)?;
        claim_identity(&mut w, id, &identity).await?;
        bump_version(&mut w, id).await?;
        let customer = fetch(w.conn(), id).await?;
        w.commit().await?;
        Ok(customer)
    }

    async fn remove_identity(&self, id: CustomerId, value: IdentityValue) -> Result<Customer> {
        let mut w = self.write().await?;
        row_state(w.conn(), id)
            .await?
            .check_writable(id, None, false)?;
        let removed = sqlx::query(
            "DELETE FROM customer_identities WHERE customer_id = $1 AND kind = $2 AND value = $3",
        )
        .bind(id.0)
        .bind(value.kind().as_str())
        .bind(value.as_str())
        .execute(w.conn())
        .await?;
        if removed.rows_affected() == 0 {
            return Err(common::identity_not_found(id, &value));
        }
        bump_version(&mut w, id).await?;
        let customer = fetch(w.conn(), id).await?;
        w.commit().await?;
        Ok(customer)
    }

    async fn lookup(&self, value: &IdentityValue) -> Result<Vec<Customer>> {
        let mut conn = self.db.pool().acquire().await?;
        lookup_with(&mut conn, value).await
    }

    async fn resolve(&self, value: IdentityValue, display_name: String) -> Result<Resolved> {
        // Known callers, the common case, cost one query and no turn at writing.
        let found = self.lookup(&value).await?;
        if let Some(resolved) = resolved_from(found) {
            return Ok(resolved);
        }
        let mut w = self.write().await?;
        // Under the write lock nobody else can be creating this identity's holder.
        let found = lookup_with(w.conn(), &value).await?;
        if let Some(resolved) = resolved_from(found) {
            w.commit().await?;
            return Ok(resolved);
        }
        let id = CustomerId::new();
        insert_customer(&mut w, id, &Profile::prospect(display_name), None).await?;
        claim_identity(
            &mut w,
            id,
            &Identity {
                value,
                label: String::new(),
                shared: false,
            },
        )
        .await?;
        let customer = fetch(w.conn(), id).await?;
        w.commit().await?;
        Ok(Resolved {
            customer,
            created: true,
            others: Vec::new(),
        })
    }

    async fn record_interaction(
        &self,
        id: CustomerId,
        new: NewInteraction,
        idempotency_key: Option<String>,
    ) -> Result<Interaction> {
        let mut w = self.write().await?;
        if let Some(key) = &idempotency_key {
            let existing: Option<InteractionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {INTERACTION_COLUMNS} FROM customer_interactions WHERE idempotency_key = $1"
            )))
            .bind(key)
            .fetch_optional(w.conn())
            .await?;
            if let Some(existing) = existing {
                let replay =
                    replayed(existing.into_domain()?, id, w.conn(), |i| i.customer_id).await?;
                w.commit().await?;
                return Ok(replay);
            }
        }
        let owner = timeline_owner(w.conn(), id).await?;
        let now = w.now;
        let row: InteractionRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO customer_interactions (id, customer_id, channel, direction, summary, \
               promised, given, ticket_id, agent_id, occurred_at, created_at, idempotency_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, $11), $11, $12) \
             RETURNING {INTERACTION_COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(owner)
        .bind(new.channel.as_str())
        .bind(new.direction.as_str())
        .bind(&new.summary)
        .bind(&new.promised)
        .bind(&new.given)
        .bind(new.ticket_id)
        .bind(new.agent_id.as_deref())
        .bind(new.occurred_at.map(Stamp::from_time))
        .bind(now)
        .bind(idempotency_key.as_deref())
        .fetch_one(w.conn())
        .await?;
        w.commit().await?;
        row.into_domain()
    }

    async fn list_interactions(
        &self,
        id: CustomerId,
        after: Option<TimeCursor>,
        limit: u32,
    ) -> Result<Page<Interaction, TimeCursor>> {
        let mut tx = self.read().await?;
        let Some(owner) = survivor(&mut tx, id).await? else {
            // As PostgreSQL: an unknown customer is NOT_FOUND on the first page, and a page
            // after a cursor is just empty.
            return match after {
                None => Err(Error::customer_not_found(id)),
                Some(_) => Ok(Page {
                    items: Vec::new(),
                    next: None,
                }),
            };
        };
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT ");
        q.push(INTERACTION_COLUMNS)
            .push(" FROM customer_interactions WHERE customer_id = ")
            .push_bind(owner);
        if let Some((at, last)) = after {
            q.push(" AND (occurred_at, id) < (")
                .push_bind(Stamp::from_time(at))
                .push(", ")
                .push_bind(last)
                .push(")");
        }
        q.push(" ORDER BY occurred_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows: Vec<InteractionRow> = q.build_query_as().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let items = rows
            .into_iter()
            .map(InteractionRow::into_domain)
            .collect::<Result<Vec<_>>>()?;
        Ok(page(items, limit, |i| (i.occurred_at, i.id)))
    }

    async fn record_satisfaction(
        &self,
        id: CustomerId,
        new: NewSatisfaction,
        idempotency_key: Option<String>,
    ) -> Result<SatisfactionRecord> {
        let mut w = self.write().await?;
        if let Some(key) = &idempotency_key {
            let existing: Option<SatisfactionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SATISFACTION_COLUMNS} FROM customer_satisfaction WHERE idempotency_key = $1"
            )))
            .bind(key)
            .fetch_optional(w.conn())
            .await?;
            if let Some(existing) = existing {
                let replay =
                    replayed(existing.into_domain()?, id, w.conn(), |r| r.customer_id).await?;
                w.commit().await?;
                return Ok(replay);
            }
        }
        let owner = timeline_owner(w.conn(), id).await?;
        let now = w.now;
        let m = new.measurement;
        // The record and the running figures change together, in this transaction.
        let row: SatisfactionRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO customer_satisfaction (id, customer_id, ticket_id, agent_id, expected, \
               perceived, satisfaction, comment, created_at, idempotency_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             RETURNING {SATISFACTION_COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(owner)
        .bind(new.ticket_id)
        .bind(new.agent_id.as_deref())
        .bind(m.expected())
        .bind(m.perceived())
        .bind(m.c())
        .bind(&new.comment)
        .bind(now)
        .bind(idempotency_key.as_deref())
        .fetch_one(w.conn())
        .await?;
        sqlx::query(
            "UPDATE customers SET sat_count = sat_count + 1, sat_sum_c = sat_sum_c + $2, \
               sat_sum_expected = sat_sum_expected + $3, sat_sum_perceived = sat_sum_perceived + $4, \
               sat_last_c = $2, sat_last_at = $5, version = version + 1, updated_at = $5 \
             WHERE id = $1",
        )
        .bind(owner)
        .bind(m.c())
        .bind(m.expected())
        .bind(m.perceived())
        .bind(now)
        .execute(w.conn())
        .await?;
        w.commit().await?;
        row.into_domain()
    }

    async fn list_satisfaction(
        &self,
        id: CustomerId,
        after: Option<TimeCursor>,
        limit: u32,
    ) -> Result<Page<SatisfactionRecord, TimeCursor>> {
        let mut tx = self.read().await?;
        let Some(owner) = survivor(&mut tx, id).await? else {
            return match after {
                None => Err(Error::customer_not_found(id)),
                Some(_) => Ok(Page {
                    items: Vec::new(),
                    next: None,
                }),
            };
        };
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT ");
        q.push(SATISFACTION_COLUMNS)
            .push(" FROM customer_satisfaction WHERE customer_id = ")
            .push_bind(owner);
        if let Some((at, last)) = after {
            q.push(" AND (created_at, id) < (")
                .push_bind(Stamp::from_time(at))
                .push(", ")
                .push_bind(last)
                .push(")");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows: Vec<SatisfactionRow> = q.build_query_as().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let items = rows
            .into_iter()
            .map(SatisfactionRow::into_domain)
            .collect::<Result<Vec<_>>>()?;
        Ok(page(items, limit, |r| (r.created_at, r.id)))
    }

    async fn set_tier_override(
        &self,
        id: CustomerId,
        tier_override: Option<(Tier, String)>,
        expected_version: Option<i64>,
    ) -> Result<Customer> {
        let mut w = self.write().await?;
        row_state(w.conn(), id)
            .await?
            .check_writable(id, expected_version, false)?;
        let now = w.now;
        let (tier, reason, set_at) = match tier_override {
            Some((tier, reason)) => (Some(tier.as_str()), Some(reason), Some(now)),
            None => (None, None, None),
        };
        sqlx::query(
            "UPDATE customers SET override_tier = $2, override_reason = $3, override_set_at = $4, \
               version = version + 1, updated_at = $5 \
             WHERE id = $1",
        )
        .bind(id.0)
        .bind(tier)
        .bind(reason)
        .bind(set_at)
        .bind(now)
        .execute(w.conn())
        .await?;
        let customer = fetch(w.conn(), id).await?;
        w.commit().await?;
        Ok(customer)
    }

    async fn recompute_tiers(
        &self,
        policy: TieringPolicy,
        dry_run: bool,
    ) -> Result<RecomputeReport> {
        // The write lock makes this one recomputation at a time, over values nobody changes
        // until it commits: what PostgreSQL's advisory lock and single statement give.
        let mut w = self.write().await?;
        let live: Vec<(Uuid, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT id, lifetime_value_micros, computed_tier, override_tier FROM customers \
             WHERE deleted_at IS NULL AND merged_into IS NULL",
        )
        .fetch_all(w.conn())
        .await?;
        let values: Vec<(Uuid, i64)> = live.iter().map(|(id, v, _, _)| (*id, *v)).collect();
        let tiers = classify(&values, &policy);
        let now = w.now;
        let mut changed = 0i64;
        let mut per_tier = [0i64; 3];
        let mut overridden = 0i64;
        let mut total: i128 = 0;
        for ((id, value, stored, override_tier), tier) in live.iter().zip(tiers) {
            total += i128::from(*value);
            let in_force = match override_tier {
                Some(o) => common::tier_from_db(o)?,
                None => tier,
            };
            per_tier[in_force as usize] += 1;
            if override_tier.is_some() && in_force != tier {
                overridden += 1;
            }
            if common::tier_from_db(stored)? == tier {
                continue;
            }
            changed += 1;
            if !dry_run {
                // One statement per changed row: a prepared UPDATE by primary key, in the one
                // transaction, which SQLite runs in microseconds.
                sqlx::query(
                    "UPDATE customers SET computed_tier = $2, version = version + 1, \
                       updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(tier.as_str())
                .bind(now)
                .execute(w.conn())
                .await?;
            }
        }
        w.commit().await?;
        Ok(RecomputeReport {
            evaluated: i64::try_from(live.len()).unwrap_or(i64::MAX),
            changed,
            per_tier,
            overridden,
            total_value_micros: i64::try_from(total).unwrap_or(i64::MAX),
        })
    }

    async fn merge(
        &self,
        survivor: CustomerId,
        merged: CustomerId,
        reason: String,
    ) -> Result<Merge> {
        let mut w = self.write().await?;
        // Read and checked in id order, as PostgreSQL locks them, so the same error wins.
        let (first, second) = if survivor.0 < merged.0 {
            (survivor, merged)
        } else {
            (merged, survivor)
        };
        let first_state = row_state(w.conn(), first).await?;
        let second_state = row_state(w.conn(), second).await?;
        first_state.check_writable(first, None, false)?;
        second_state.check_writable(second, None, false)?;
        let (survivor_state, merged_state) = if first == survivor {
            (&first_state, &second_state)
        } else {
            (&second_state, &first_state)
        };
        let merged_value = merged_state.lifetime_value_micros;
        let survivor_value = survivor_state
            .lifetime_value_micros
            .saturating_add(merged_value);

        let merge_id = Uuid::now_v7();
        let now = w.now;
        sqlx::query(
            "INSERT INTO customer_merges (id, survivor_id, merged_id, reason, identities_moved, \
               interactions_moved, satisfaction_moved, merged_value_micros, created_at) \
             VALUES ($1, $2, $3, $4, 0, 0, 0, $5, $6)",
        )
        .bind(merge_id)
        .bind(survivor.0)
        .bind(merged.0)
        .bind(&reason)
        .bind(merged_value)
        .bind(now)
        .execute(w.conn())
        .await?;
        // Record what moves, then move exactly that (the same statements undo uses).
        // Identities the survivor holds already (a shared one) stay on the tombstone, inert: a
        // tombstone holds nothing (see common::claim_conflicts) until the merge is undone.
        for sql in [
            "INSERT INTO customer_merge_moves (merge_id, kind, row_id) \
             SELECT $1, 'identity', i.id FROM customer_identities i \
             WHERE i.customer_id = $3 AND NOT EXISTS (SELECT 1 FROM customer_identities s \
               WHERE s.customer_id = $2 AND s.kind = i.kind AND s.value = i.value)",
            "INSERT INTO customer_merge_moves (merge_id, kind, row_id) \
             SELECT $1, 'interaction', id FROM customer_interactions WHERE customer_id = $3",
            "INSERT INTO customer_merge_moves (merge_id, kind, row_id) \
             SELECT $1, 'satisfaction', id FROM customer_satisfaction WHERE customer_id = $3",
        ] {
            sqlx::query(sql)
                .bind(merge_id)
                .bind(survivor.0)
                .bind(merged.0)
                .execute(w.conn())
                .await?;
        }
        let identities =
            move_recorded(&mut w, Moved::Identity, merge_id, merged.0, survivor.0).await?;
        let interactions =
            move_recorded(&mut w, Moved::Interaction, merge_id, merged.0, survivor.0).await?;
        let satisfaction =
            move_recorded(&mut w, Moved::Satisfaction, merge_id, merged.0, survivor.0).await?;
        sqlx::query(
            "UPDATE customer_merges SET identities_moved = $2, interactions_moved = $3, \
               satisfaction_moved = $4 WHERE id = $1",
        )
        .bind(merge_id)
        .bind(identities)
        .bind(interactions)
        .bind(satisfaction)
        .execute(w.conn())
        .await?;
        sqlx::query(
            "UPDATE customers SET merged_into = $2, version = version + 1, updated_at = $3 WHERE id = $1",
        )
        .bind(merged.0)
        .bind(survivor.0)
        .bind(now)
        .execute(w.conn())
        .await?;
        // The merged profile was the same customer: their value adds to the survivor's.
        sqlx::query(
            "UPDATE customers SET lifetime_value_micros = $2, version = version + 1, \
               updated_at = $3 WHERE id = $1",
        )
        .bind(survivor.0)
        .bind(survivor_value)
        .bind(now)
        .execute(w.conn())
        .await?;
        refresh_satisfaction(&mut w, survivor.0).await?;
        refresh_satisfaction(&mut w, merged.0).await?;
        let merge = fetch_merge(w.conn(), merge_id)
            .await?
            .ok_or_else(|| common::merge_not_found(merge_id))?;
        w.commit().await?;
        Ok(merge)
    }

    async fn undo_merge(&self, merge_id: Uuid) -> Result<Merge> {
        let mut w = self.write().await?;
        let merge = fetch_merge(w.conn(), merge_id)
            .await?
            .ok_or_else(|| common::merge_not_found(merge_id))?;
        if merge.undone_at.is_some() {
            return Err(common::merge_already_undone(merge_id));
        }
        let (first, second) = if merge.survivor.0 < merge.merged.0 {
            (merge.survivor, merge.merged)
        } else {
            (merge.merged, merge.survivor)
        };
        let first_state = row_state(w.conn(), first).await?;
        let second_state = row_state(w.conn(), second).await?;
        let survivor_state = if first == merge.survivor {
            &first_state
        } else {
            &second_state
        };
        common::check_survivor_unchanged(
            merge_id,
            merge.survivor,
            survivor_state.merged_into,
            survivor_state.deleted_at.is_some(),
        )?;
        // What stayed inert on the tombstone (identities the survivor held too) counts again
        // once it is live, unless a live customer has claimed it meanwhile. What the merge
        // moved is held by the survivor until now, so no claim can conflict with it.
        check_restorable(&mut w, merge.merged, common::Restoring::UndoMerge(merge_id)).await?;
        let merged_value: i64 =
            sqlx::query_scalar("SELECT merged_value_micros FROM customer_merges WHERE id = $1")
                .bind(merge_id)
                .fetch_one(w.conn())
                .await?;
        let survivor_value = survivor_state
            .lifetime_value_micros
            .saturating_sub(merged_value)
            .max(0);
        for kind in [Moved::Identity, Moved::Interaction, Moved::Satisfaction] {
            move_recorded(&mut w, kind, merge_id, merge.survivor.0, merge.merged.0).await?;
        }
        let now = w.now;
        sqlx::query(
            "UPDATE customers SET merged_into = NULL, version = version + 1, updated_at = $2 \
             WHERE id = $1",
        )
        .bind(merge.merged.0)
        .bind(now)
        .execute(w.conn())
        .await?;
        sqlx::query(
            "UPDATE customers SET lifetime_value_micros = $2, version = version + 1, \
               updated_at = $3 WHERE id = $1",
        )
        .bind(merge.survivor.0)
        .bind(survivor_value)
        .bind(now)
        .execute(w.conn())
        .await?;
        refresh_satisfaction(&mut w, merge.survivor.0).await?;
        refresh_satisfaction(&mut w, merge.merged.0).await?;
        sqlx::query("UPDATE customer_merges SET undone_at = $2 WHERE id = $1")
            .bind(merge_id)
            .bind(now)
            .execute(w.conn())
            .await?;
        let merge = fetch_merge(w.conn(), merge_id)
            .await?
            .ok_or_else(|| common::merge_not_found(merge_id))?;
        w.commit().await?;
        Ok(merge)
    }
}
