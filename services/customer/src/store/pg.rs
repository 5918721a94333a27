//! [`CustomerStore`] in PostgreSQL.
//!
//! Every read of a customer is one query (identities come back aggregated as JSON in the same
//! row). Claims of an identity serialise on a transaction-scoped advisory lock keyed by the
//! identity, which makes ResolveCustomer and AddIdentity race-free without retry loops; the
//! unique index on owners is the backstop.

use std::collections::BTreeMap;

use sqlx::postgres::PgPool;
use sqlx::types::Json;
use sqlx::{FromRow, Postgres, QueryBuilder, Transaction};
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;
use uuid::Uuid;

use super::common::{self, CustomerRecord, IdentityJson, corrupt, resolved_from};
use super::{CustomerStore, Merge, NewCustomer, Page, RecomputeReport, Resolved, TimeCursor};
use crate::domain::{
    Customer, CustomerFilter, CustomerId, Direction, Identity, IdentityValue, Interaction,
    NewInteraction, NewSatisfaction, PostalAddress, Profile, ProfilePatch, Satisfaction,
    SatisfactionRecord, SignificantDate, TieringPolicy,
};
use crate::error::{Error, Result};

/// The customer columns every read returns, with identities as a JSON array.
macro_rules! customer_columns {
    () => {
        "c.id, c.display_name, c.form_of_address, c.kind, c.relationship, c.segment, \
         c.postal_address, c.significant_dates, c.preferences, c.observations, c.attributes, \
         c.credit_standing, c.lifecycle_stage, c.churn_reason, c.account_manager_id, \
         c.key_account, c.unreasonable, c.unreasonable_note, c.lifetime_value_micros, \
         c.computed_tier, c.override_tier, c.override_reason, c.override_set_at, \
         c.sat_count, c.sat_sum_c, c.sat_sum_expected, c.sat_sum_perceived, c.sat_last_c, \
         c.sat_last_at, c.merged_into, c.version, c.created_at, c.updated_at, c.deleted_at, \
         (SELECT COALESCE(jsonb_agg(jsonb_build_object('kind', i.kind, 'value', i.value, \
                  'label', i.label, 'shared', i.shared) ORDER BY i.created_at, i.id), '[]'::jsonb) \
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
    preferences: Vec<String>,
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
    override_set_at: Option<OffsetDateTime>,
    sat_count: i64,
    sat_sum_c: f64,
    sat_sum_expected: f64,
    sat_sum_perceived: f64,
    sat_last_c: Option<f64>,
    sat_last_at: Option<OffsetDateTime>,
    merged_into: Option<Uuid>,
    version: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    deleted_at: Option<OffsetDateTime>,
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
            preferences: self.preferences,
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
            override_set_at: self.override_set_at,
            sat_count: self.sat_count,
            sat_sum_c: self.sat_sum_c,
            sat_sum_expected: self.sat_sum_expected,
            sat_sum_perceived: self.sat_sum_perceived,
            sat_last_c: self.sat_last_c,
            sat_last_at: self.sat_last_at,
            merged_into: self.merged_into,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
            identities: self.identities.0,
        }
        .into_domain()
    }
}

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
    occurred_at: OffsetDateTime,
    created_at: OffsetDateTime,
}

impl InteractionRow {
    fn into_domain(self) -> Result<Interaction> {
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
                occurred_at: Some(self.occurred_at),
            },
            occurred_at: self.occurred_at,
            created_at: self.created_at,
        })
    }
}

#[derive(FromRow)]
struct SatisfactionRow {
    id: Uuid,
    customer_id: Uuid,
    ticket_id: Option<Uuid>,
    agent_id: Option<String>,
    expected: f64,
    perceived: f64,
    comment: String,
    created_at: OffsetDateTime,
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
            created_at: self.created_at,
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
    created_at: OffsetDateTime,
    undone_at: Option<OffsetDateTime>,
}

impl From<MergeRow> for Merge {
    fn from(r: MergeRow) -> Self {
        Merge {
            id: r.id,
            survivor: CustomerId(r.survivor_id),
            merged: CustomerId(r.merged_id),
            reason: r.reason,
            identities_moved: r.identities_moved,
            interactions_moved: r.interactions_moved,
            satisfaction_moved: r.satisfaction_moved,
            created_at: r.created_at,
            undone_at: r.undone_at,
        }
    }
}

/// The state of a customer row, read under lock to decide whether a change may proceed.
#[derive(FromRow)]
struct RowState {
    version: i64,
    deleted_at: Option<OffsetDateTime>,
    merged_into: Option<Uuid>,
}

impl RowState {
    /// Refuses changes to merged or deleted profiles and stale versions.
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

/// The embedded migrations of the customer service, applied at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// A store on `pool`, whose database has the migrations applied.
    pub fn new(pool: PgPool) -> Self {
        PgStore { pool }
    }

    /// The embedded migrations of this service.
    pub fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }
}

async fn lock_row(tx: &mut Transaction<'_, Postgres>, id: CustomerId) -> Result<RowState> {
    sqlx::query_as::<_, RowState>(
        "SELECT version, deleted_at, merged_into FROM customers WHERE id = $1 FOR UPDATE",
    )
    .bind(id.0)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| Error::customer_not_found(id))
}

async fn fetch(executor: impl sqlx::PgExecutor<'_>, id: CustomerId) -> Result<Customer> {
    sqlx::query_as::<_, CustomerRow>(concat!(
        "SELECT ",
        customer_columns!(),
        " FROM customers c WHERE c.id = customer_survivor($1)"
    ))
    .bind(id.0)
    .fetch_optional(executor)
    .await?
    .ok_or_else(|| Error::customer_not_found(id))?
    .into_domain()
}

async fn bump_version(tx: &mut Transaction<'_, Postgres>, id: CustomerId) -> Result<()> {
    sqlx::query("UPDATE customers SET version = version + 1, updated_at = now() WHERE id = $1")
        .bind(id.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes the identity's advisory lock and returns its current live holders as (customer, shared).
async fn lock_identity(
    tx: &mut Transaction<'_, Postgres>,
    value: &IdentityValue,
) -> Result<Vec<(Uuid, bool)>> {
    lock_identity_stored(tx, value.kind().as_str(), value.as_str()).await
}

/// [`lock_identity`] of an identity as stored: its kind's name and normalised value.
async fn lock_identity_stored(
    tx: &mut Transaction<'_, Postgres>,
    kind: &str,
    value: &str,
) -> Result<Vec<(Uuid, bool)>> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("{kind}:{value}"))
        .execute(&mut **tx)
        .await?;
    // A statement of its own: under READ COMMITTED it sees what committed while we waited for
    // the lock, which a read in the locking statement would not. Holders are what a lookup
    // lists: a merged profile's tombstone holds nothing (see common::claim_conflicts).
    let rows: Vec<(Uuid, bool)> = sqlx::query_as(
        "SELECT i.customer_id, i.shared FROM customer_identities i \
           JOIN customers c ON c.id = i.customer_id \
         WHERE i.kind = $1 AND i.value = $2 AND NOT i.released \
           AND c.deleted_at IS NULL AND c.merged_into IS NULL",
    )
    .bind(kind)
    .bind(value)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows)
}

/// Refuses, for `restoring`, to let the identities stored on `id` count as its holdings again
/// if a live customer has claimed one meanwhile. Each identity is checked under its advisory
/// lock, taken in (kind, value) order so that two restores cannot deadlock, and kept until
/// commit, so nobody can claim it between this check and the restore.
async fn check_restorable(
    tx: &mut Transaction<'_, Postgres>,
    id: CustomerId,
    restoring: common::Restoring,
) -> Result<()> {
    let mine: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT kind, value, shared FROM customer_identities WHERE customer_id = $1 \
         ORDER BY kind COLLATE \"C\", value COLLATE \"C\"",
    )
    .bind(id.0)
    .fetch_all(&mut **tx)
    .await?;
    for (kind, value, shared) in &mine {
        let holders = lock_identity_stored(tx, kind, value).await?;
        common::check_restorable(restoring, id, kind, value, *shared, &holders)?;
    }
    Ok(())
}

/// Claims `identity` for `customer` inside `tx`, refusing one another customer holds.
async fn claim_identity(
    tx: &mut Transaction<'_, Postgres>,
    customer: CustomerId,
    identity: &Identity,
) -> Result<()> {
    let holders = lock_identity(tx, &identity.value).await?;
    if common::claim_conflicts(customer.0, identity.shared, &holders) {
        return Err(common::identity_taken(&identity.value));
    }
    sqlx::query(
        "INSERT INTO customer_identities (id, customer_id, kind, value, label, shared) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (customer_id, kind, value) \
         DO UPDATE SET label = EXCLUDED.label, shared = EXCLUDED.shared, released = false",
    )
    .bind(Uuid::now_v7())
    .bind(customer.0)
    .bind(identity.value.kind().as_str())
    .bind(identity.value.as_str())
    .bind(&identity.label)
    .bind(identity.shared)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_customer(
    tx: &mut Transaction<'_, Postgres>,
    id: CustomerId,
    p: &Profile,
    idempotency_key: Option<&str>,
) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO customers (id, display_name, form_of_address, kind, relationship, segment, \
           postal_address, significant_dates, preferences, observations, attributes, \
           credit_standing, lifecycle_stage, churn_reason, account_manager_id, key_account, \
           unreasonable, unreasonable_note, lifetime_value_micros, idempotency_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(id.0)
    .bind(&p.display_name)
    .bind(&p.form_of_address)
    .bind(p.kind.as_str())
    .bind(p.relationship.as_str())
    .bind(&p.segment)
    .bind(p.postal_address.as_ref().map(Json))
    .bind(Json(&p.significant_dates))
    .bind(&p.preferences)
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
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Recomputes the running satisfaction figures of `id` from its records.
async fn refresh_satisfaction(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE customers c SET sat_count = s.n, sat_sum_c = s.sum_c, \
           sat_sum_expected = s.sum_a, sat_sum_perceived = s.sum_b, \
           sat_last_c = s.last_c, sat_last_at = s.last_at \
         FROM (SELECT count(*) AS n, COALESCE(sum(satisfaction), 0) AS sum_c, \
                 COALESCE(sum(expected), 0) AS sum_a, COALESCE(sum(perceived), 0) AS sum_b, \
                 (array_agg(satisfaction ORDER BY created_at DESC, id DESC))[1] AS last_c, \
                 max(created_at) AS last_at \
               FROM customer_satisfaction WHERE customer_id = $1) s \
         WHERE c.id = $1",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const INTERACTION_COLUMNS: &str = "id, customer_id, channel, direction, summary, promised, given, ticket_id, agent_id, occurred_at, created_at";

impl CustomerStore for PgStore {
    async fn create(&self, new: NewCustomer, idempotency_key: Option<String>) -> Result<Customer> {
        if let Some(key) = &idempotency_key {
            let existing: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM customers WHERE idempotency_key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some(id) = existing {
                return fetch(&self.pool, CustomerId(id)).await;
            }
        }
        let id = CustomerId::new();
        let mut tx = self.pool.begin().await?;
        if !insert_customer(&mut tx, id, &new.profile, idempotency_key.as_deref()).await? {
            // A concurrent retry with the same key won the insert.
            tx.rollback().await?;
            let existing: Uuid =
                sqlx::query_scalar("SELECT id FROM customers WHERE idempotency_key = $1")
                    .bind(idempotency_key.as_deref())
                    .fetch_one(&self.pool)
                    .await?;
            return fetch(&self.pool, CustomerId(existing)).await;
        }
        // Locks are taken first in one global order, (kind, value) byte order, as restores
        // take theirs, so two transactions claiming overlapping numbers cannot deadlock; the
        // claims then go in request order (the order the identities are listed in), re-taking
        // locks this transaction already holds.
        if new.identities.len() > 1 {
            let mut order: Vec<&Identity> = new.identities.iter().collect();
            order.sort_by(|a, b| {
                (a.value.kind().as_str(), a.value.as_str())
                    .cmp(&(b.value.kind().as_str(), b.value.as_str()))
            });
            for identity in order {
                lock_identity(&mut tx, &identity.value).await?;
            }
        }
        for identity in &new.identities {
            claim_identity(&mut tx, id, identity).await?;
        }
        let customer = fetch(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(customer)
    }

    async fn get(&self, id: CustomerId) -> Result<Customer> {
        fetch(&self.pool, id).await
    }

    async fn update(
        &self,
        id: CustomerId,
        patch: ProfilePatch,
        expected_version: Option<i64>,
    ) -> Result<Customer> {
        let mut tx = self.pool.begin().await?;
        lock_row(&mut tx, id)
            .await?
            .check_writable(id, expected_version, false)?;
        let current = fetch(&mut *tx, id).await?;
        let p = patch.apply(&current.profile)?;
        sqlx::query(
            "UPDATE customers SET display_name = $2, form_of_address = $3, kind = $4, \
               relationship = $5, segment = $6, postal_address = $7, significant_dates = $8, \
               preferences = $9, observations = $10, attributes = $11, credit_standing = $12, \
               lifecycle_stage = $13, churn_reason = $14, account_manager_id = $15, \
               key_account = $16, unreasonable = $17, unreasonable_note = $18, \
               lifetime_value_micros = $19, version = version + 1, updated_at = now() \
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
        .bind(&p.preferences)
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
        .execute(&mut *tx)
        .await?;
        let customer = fetch(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(customer)
    }

    async fn list(
        &self,
        filter: CustomerFilter,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<Customer, Uuid>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(concat!(
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
        let rows: Vec<CustomerRow> = q.build_query_as().fetch_all(&self.pool).await?;
        let mut items = rows
            .into_iter()
            .map(CustomerRow::into_domain)
            .collect::<Result<Vec<_>>>()?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|c| c.id.0)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn delete(&self, id: CustomerId, expected_version: Option<i64>) -> Result<Customer> {
        let mut tx = self.pool.begin().await?;
        let state = lock_row(&mut tx, id).await?;
        state.check_writable(id, expected_version, true)?;
        if state.deleted_at.is_none() {
            sqlx::query(
                "UPDATE customers SET deleted_at = now(), version = version + 1, updated_at = now() \
                 WHERE id = $1",
            )
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE customer_identities SET released = true WHERE customer_id = $1")
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        let customer = fetch(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(customer)
    }

    async fn undelete(&self, id: CustomerId) -> Result<Customer> {
        let mut tx = self.pool.begin().await?;
        let state = lock_row(&mut tx, id).await?;
        state.check_writable(id, None, true)?;
        if state.deleted_at.is_none() {
            return Err(common::customer_not_deleted(id));
        }
        // None of its identities may have been claimed by someone else meanwhile.
        check_restorable(&mut tx, id, common::Restoring::Undelete).await?;
        sqlx::query("UPDATE customer_identities SET released = false WHERE customer_id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE customers SET deleted_at = NULL, version = version + 1, updated_at = now() \
             WHERE id = $1",
        )
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        let customer = fetch(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(customer)
    }

    async fn add_identity(&self, id: CustomerId, identity: Identity) -> Result<Customer> {
        let mut tx = self.pool.begin().await?;
        lock_row(&mut tx, id)
            .await?
            .check_writable(id, None, false)?;
        claim_identity(&mut tx, id, &identity).await?;
        bump_version(&mut tx, id).await?;
        let customer = fetch(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(customer)
    }

    async fn remove_identity(&self, id: CustomerId, value: IdentityValue) -> Result<Customer> {
        let mut tx = self.pool.begin().await?;
        lock_row(&mut tx, id)
            .await?
            .check_writable(id, None, false)?;
        let removed = sqlx::query(
            "DELETE FROM customer_identities WHERE customer_id = $1 AND kind = $2 AND value = $3",
        )
        .bind(id.0)
        .bind(value.kind().as_str())
        .bind(value.as_str())
        .execute(&mut *tx)
        .await?;
        if removed.rows_affected() == 0 {
            return Err(common::identity_not_found(id, &value));
        }
        bump_version(&mut tx, id).await?;
        let customer = fetch(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(customer)
    }

    async fn lookup(&self, value: &IdentityValue) -> Result<Vec<Customer>> {
        lookup_with(&self.pool, value).await
    }

    async fn resolve(&self, value: IdentityValue, display_name: String) -> Result<Resolved> {
        // Known callers, the common case, cost one query and no lock.
        let found = lookup_with(&self.pool, &value).await?;
        if let Some(resolved) = resolved_from(found) {
            return Ok(resolved);
        }
        let mut tx = self.pool.begin().await?;
        lock_identity(&mut tx, &value).await?;
        // Under the lock nobody else can be creating this identity's holder.
        let found = lookup_with(&mut *tx, &value).await?;
        if let Some(resolved) = resolved_from(found) {
            tx.commit().await?;
            return Ok(resolved);
        }
        let id = CustomerId::new();
        insert_customer(&mut tx, id, &Profile::prospect(display_name), None).await?;
        claim_identity(
            &mut tx,
            id,
            &Identity {
                value,
                label: String::new(),
                shared: false,
            },
        )
        .await?;
        let customer = fetch(&mut *tx, id).await?;
        tx.commit().await?;
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
        let row: Option<InteractionRow> = sqlx::query_as(
            "INSERT INTO customer_interactions (id, customer_id, channel, direction, summary, \
               promised, given, ticket_id, agent_id, occurred_at, idempotency_key) \
             SELECT $1, c.id, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, now()), $11 \
             FROM customers c WHERE c.id = customer_survivor($2) AND c.deleted_at IS NULL \
             ON CONFLICT (idempotency_key) DO NOTHING \
             RETURNING id, customer_id, channel, direction, summary, promised, given, ticket_id, \
               agent_id, occurred_at, created_at",
        )
        .bind(Uuid::now_v7())
        .bind(id.0)
        .bind(new.channel.as_str())
        .bind(new.direction.as_str())
        .bind(&new.summary)
        .bind(&new.promised)
        .bind(&new.given)
        .bind(new.ticket_id)
        .bind(new.agent_id.as_deref())
        .bind(new.occurred_at)
        .bind(idempotency_key.as_deref())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return row.into_domain();
        }
        if let Some(key) = idempotency_key {
            let existing: Option<InteractionRow> = sqlx::query_as(
                "SELECT id, customer_id, channel, direction, summary, promised, given, ticket_id, \
                   agent_id, occurred_at, created_at \
                 FROM customer_interactions WHERE idempotency_key = $1",
            )
            .bind(&key)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(existing) = existing {
                return replayed(existing.into_domain()?, id, &self.pool, |i| i.customer_id).await;
            }
        }
        Err(not_live(&self.pool, id).await)
    }

    async fn list_interactions(
        &self,
        id: CustomerId,
        after: Option<TimeCursor>,
        limit: u32,
    ) -> Result<Page<Interaction, TimeCursor>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        q.push(INTERACTION_COLUMNS)
            .push(" FROM customer_interactions WHERE customer_id = customer_survivor(")
            .push_bind(id.0)
            .push(")");
        if let Some((at, last)) = after {
            q.push(" AND (occurred_at, id) < (")
                .push_bind(at)
                .push(", ")
                .push_bind(last)
                .push(")");
        }
        q.push(" ORDER BY occurred_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows: Vec<InteractionRow> = q.build_query_as().fetch_all(&self.pool).await?;
        let mut items = rows
            .into_iter()
            .map(InteractionRow::into_domain)
            .collect::<Result<Vec<_>>>()?;
        if items.is_empty() && after.is_none() {
            // Tell an unknown customer from one with an empty timeline.
            fetch(&self.pool, id).await?;
        }
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|i| (i.occurred_at, i.id))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn record_satisfaction(
        &self,
        id: CustomerId,
        new: NewSatisfaction,
        idempotency_key: Option<String>,
    ) -> Result<SatisfactionRecord> {
        // One statement: the record and the running figures change together or not at all.
        let row: Option<SatisfactionRow> = sqlx::query_as(
            "WITH ins AS ( \
               INSERT INTO customer_satisfaction (id, customer_id, ticket_id, agent_id, expected, \
                 perceived, satisfaction, comment, idempotency_key) \
               SELECT $1, c.id, $3, $4, $5, $6, $7, $8, $9 \
               FROM customers c WHERE c.id = customer_survivor($2) AND c.deleted_at IS NULL \
               ON CONFLICT (idempotency_key) DO NOTHING \
               RETURNING id, customer_id, ticket_id, agent_id, expected, perceived, satisfaction, \
                 comment, created_at), \
             upd AS ( \
               UPDATE customers c SET sat_count = c.sat_count + 1, \
                 sat_sum_c = c.sat_sum_c + ins.satisfaction, \
                 sat_sum_expected = c.sat_sum_expected + ins.expected, \
                 sat_sum_perceived = c.sat_sum_perceived + ins.perceived, \
                 sat_last_c = ins.satisfaction, sat_last_at = ins.created_at, \
                 version = c.version + 1, updated_at = now() \
               FROM ins WHERE c.id = ins.customer_id RETURNING c.id) \
             SELECT id, customer_id, ticket_id, agent_id, expected, perceived, comment, created_at \
             FROM ins",
        )
        .bind(Uuid::now_v7())
        .bind(id.0)
        .bind(new.ticket_id)
        .bind(new.agent_id.as_deref())
        .bind(new.measurement.expected())
        .bind(new.measurement.perceived())
        .bind(new.measurement.c())
        .bind(&new.comment)
        .bind(idempotency_key.as_deref())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return row.into_domain();
        }
        if let Some(key) = idempotency_key {
            let existing: Option<SatisfactionRow> = sqlx::query_as(
                "SELECT id, customer_id, ticket_id, agent_id, expected, perceived, comment, created_at \
                 FROM customer_satisfaction WHERE idempotency_key = $1",
            )
            .bind(&key)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(existing) = existing {
                return replayed(existing.into_domain()?, id, &self.pool, |r| r.customer_id).await;
            }
        }
        Err(not_live(&self.pool, id).await)
    }

    async fn list_satisfaction(
        &self,
        id: CustomerId,
        after: Option<TimeCursor>,
        limit: u32,
    ) -> Result<Page<SatisfactionRecord, TimeCursor>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT id, customer_id, ticket_id, agent_id, expected, perceived, comment, created_at \
             FROM customer_satisfaction WHERE customer_id = customer_survivor(",
        );
        q.push_bind(id.0).push(")");
        if let Some((at, last)) = after {
            q.push(" AND (created_at, id) < (")
                .push_bind(at)
                .push(", ")
                .push_bind(last)
                .push(")");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows: Vec<SatisfactionRow> = q.build_query_as().fetch_all(&self.pool).await?;
        let mut items = rows
            .into_iter()
            .map(SatisfactionRow::into_domain)
            .collect::<Result<Vec<_>>>()?;
        if items.is_empty() && after.is_none() {
            fetch(&self.pool, id).await?;
        }
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|r| (r.created_at, r.id))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn set_tier_override(
        &self,
        id: CustomerId,
        tier_override: Option<(Tier, String)>,
        expected_version: Option<i64>,
    ) -> Result<Customer> {
        let mut tx = self.pool.begin().await?;
        lock_row(&mut tx, id)
            .await?
            .check_writable(id, expected_version, false)?;
        let (tier, reason) = match tier_override {
            Some((tier, reason)) => (Some(tier.as_str()), Some(reason)),
            None => (None, None),
        };
        sqlx::query(
            "UPDATE customers SET override_tier = $2, override_reason = $3, \
               override_set_at = CASE WHEN $2::text IS NULL THEN NULL ELSE now() END, \
               version = version + 1, updated_at = now() \
             WHERE id = $1",
        )
        .bind(id.0)
        .bind(tier)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        let customer = fetch(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(customer)
    }

    async fn recompute_tiers(
        &self,
        policy: TieringPolicy,
        dry_run: bool,
    ) -> Result<RecomputeReport> {
        let mut tx = self.pool.begin().await?;
        // One recomputation at a time, across every replica of the service.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('tierline.customer.recompute_tiers', 0))")
            .execute(&mut *tx)
            .await?;
        let changed = match policy {
            TieringPolicy::Share {
                a_min_share,
                c_max_share,
            } => {
                sqlx::query(
                    "WITH live AS (SELECT id, lifetime_value_micros AS v FROM customers \
                                   WHERE deleted_at IS NULL AND merged_into IS NULL), \
                          total AS (SELECT COALESCE(sum(v), 0)::numeric AS t FROM live), \
                          classified AS ( \
                            SELECT live.id, CASE \
                              WHEN total.t = 0 THEN 'C' \
                              WHEN live.v > $1::numeric * total.t THEN 'A' \
                              WHEN live.v < $2::numeric * total.t THEN 'C' \
                              ELSE 'B' END AS tier \
                            FROM live, total) \
                     UPDATE customers c SET computed_tier = classified.tier, \
                       version = c.version + 1, updated_at = now() \
                     FROM classified WHERE c.id = classified.id AND c.computed_tier <> classified.tier",
                )
                .bind(a_min_share)
                .bind(c_max_share)
                .execute(&mut *tx)
                .await?
            }
            TieringPolicy::Cumulative {
                a_cumulative_share,
                b_cumulative_share,
            } => {
                sqlx::query(
                    "WITH live AS (SELECT id, lifetime_value_micros AS v FROM customers \
                                   WHERE deleted_at IS NULL AND merged_into IS NULL), \
                          total AS (SELECT COALESCE(sum(v), 0)::numeric AS t FROM live), \
                          ranked AS ( \
                            SELECT id, COALESCE(sum(v) OVER (ORDER BY v DESC, id \
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)::numeric AS before \
                            FROM live), \
                          classified AS ( \
                            SELECT ranked.id, CASE \
                              WHEN total.t = 0 THEN 'C' \
                              WHEN ranked.before < $1::numeric * total.t THEN 'A' \
                              WHEN ranked.before < $2::numeric * total.t THEN 'B' \
                              ELSE 'C' END AS tier \
                            FROM ranked, total) \
                     UPDATE customers c SET computed_tier = classified.tier, \
                       version = c.version + 1, updated_at = now() \
                     FROM classified WHERE c.id = classified.id AND c.computed_tier <> classified.tier",
                )
                .bind(a_cumulative_share)
                .bind(b_cumulative_share)
                .execute(&mut *tx)
                .await?
            }
        }
        .rows_affected();
        let (evaluated, a, b, c, overridden, total): (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE tier = 'A'), count(*) FILTER (WHERE tier = 'B'), \
               count(*) FILTER (WHERE tier = 'C'), \
               count(*) FILTER (WHERE override_tier IS NOT NULL AND override_tier <> computed_tier), \
               LEAST(COALESCE(sum(lifetime_value_micros), 0), 9223372036854775807)::bigint \
             FROM customers WHERE deleted_at IS NULL AND merged_into IS NULL",
        )
        .fetch_one(&mut *tx)
        .await?;
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(RecomputeReport {
            evaluated,
            changed: i64::try_from(changed).unwrap_or(i64::MAX),
            per_tier: [a, b, c],
            overridden,
            total_value_micros: total,
        })
    }

    async fn merge(
        &self,
        survivor: CustomerId,
        merged: CustomerId,
        reason: String,
    ) -> Result<Merge> {
        let mut tx = self.pool.begin().await?;
        // Lock both in id order so two opposite merges cannot deadlock.
        let (first, second) = if survivor.0 < merged.0 {
            (survivor, merged)
        } else {
            (merged, survivor)
        };
        let first_state = lock_row(&mut tx, first).await?;
        let second_state = lock_row(&mut tx, second).await?;
        first_state.check_writable(first, None, false)?;
        second_state.check_writable(second, None, false)?;

        let merge_id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO customer_merges (id, survivor_id, merged_id, reason, identities_moved, \
               interactions_moved, satisfaction_moved, merged_value_micros) \
             SELECT $1, $2, $3, $4, 0, 0, 0, lifetime_value_micros FROM customers WHERE id = $3",
        )
        .bind(merge_id)
        .bind(survivor.0)
        .bind(merged.0)
        .bind(&reason)
        .execute(&mut *tx)
        .await?;
        // Identities the survivor holds already (a shared one) stay on the tombstone, inert: a
        // tombstone holds nothing (see common::claim_conflicts) until the merge is undone.
        let (identities, interactions, satisfaction): (i64, i64, i64) = sqlx::query_as(
            "WITH mi AS (INSERT INTO customer_merge_moves (merge_id, kind, row_id) \
                 SELECT $1, 'identity', i.id FROM customer_identities i \
                 WHERE i.customer_id = $3 AND NOT EXISTS (SELECT 1 FROM customer_identities s \
                   WHERE s.customer_id = $2 AND s.kind = i.kind AND s.value = i.value) \
                 RETURNING row_id), \
               ui AS (UPDATE customer_identities SET customer_id = $2 \
                 WHERE id IN (SELECT row_id FROM mi) RETURNING 1), \
               mt AS (INSERT INTO customer_merge_moves (merge_id, kind, row_id) \
                 SELECT $1, 'interaction', id FROM customer_interactions WHERE customer_id = $3 \
                 RETURNING row_id), \
               ut AS (UPDATE customer_interactions SET customer_id = $2 \
                 WHERE id IN (SELECT row_id FROM mt) RETURNING 1), \
               ms AS (INSERT INTO customer_merge_moves (merge_id, kind, row_id) \
                 SELECT $1, 'satisfaction', id FROM customer_satisfaction WHERE customer_id = $3 \
                 RETURNING row_id), \
               us AS (UPDATE customer_satisfaction SET customer_id = $2 \
                 WHERE id IN (SELECT row_id FROM ms) RETURNING 1) \
             SELECT (SELECT count(*) FROM ui), (SELECT count(*) FROM ut), (SELECT count(*) FROM us)",
        )
        .bind(merge_id)
        .bind(survivor.0)
        .bind(merged.0)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE customer_merges SET identities_moved = $2, interactions_moved = $3, \
               satisfaction_moved = $4 WHERE id = $1",
        )
        .bind(merge_id)
        .bind(identities)
        .bind(interactions)
        .bind(satisfaction)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE customers SET merged_into = $2, version = version + 1, updated_at = now() WHERE id = $1",
        )
        .bind(merged.0)
        .bind(survivor.0)
        .execute(&mut *tx)
        .await?;
        // The merged profile was the same customer: their value adds to the survivor's.
        sqlx::query(
            "UPDATE customers s SET lifetime_value_micros = \
               LEAST(s.lifetime_value_micros::numeric + m.lifetime_value_micros, 9223372036854775807)::bigint, \
               version = s.version + 1, updated_at = now() \
             FROM customers m WHERE s.id = $1 AND m.id = $2",
        )
        .bind(survivor.0)
        .bind(merged.0)
        .execute(&mut *tx)
        .await?;
        refresh_satisfaction(&mut tx, survivor.0).await?;
        refresh_satisfaction(&mut tx, merged.0).await?;
        let merge = fetch_merge(&mut *tx, merge_id).await?;
        tx.commit().await?;
        Ok(merge)
    }

    async fn undo_merge(&self, merge_id: Uuid) -> Result<Merge> {
        let mut tx = self.pool.begin().await?;
        let merge: Merge = sqlx::query_as::<_, MergeRow>(
            "SELECT id, survivor_id, merged_id, reason, identities_moved, interactions_moved, \
               satisfaction_moved, created_at, undone_at FROM customer_merges WHERE id = $1 FOR UPDATE",
        )
        .bind(merge_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| common::merge_not_found(merge_id))?
        .into();
        if merge.undone_at.is_some() {
            return Err(common::merge_already_undone(merge_id));
        }
        let (first, second) = if merge.survivor.0 < merge.merged.0 {
            (merge.survivor, merge.merged)
        } else {
            (merge.merged, merge.survivor)
        };
        let first_state = lock_row(&mut tx, first).await?;
        let second_state = lock_row(&mut tx, second).await?;
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
        check_restorable(
            &mut tx,
            merge.merged,
            common::Restoring::UndoMerge(merge_id),
        )
        .await?;
        sqlx::query(
            "WITH ui AS (UPDATE customer_identities SET customer_id = $3 WHERE customer_id = $2 \
                 AND id IN (SELECT row_id FROM customer_merge_moves WHERE merge_id = $1 AND kind = 'identity') \
                 RETURNING 1), \
               ut AS (UPDATE customer_interactions SET customer_id = $3 WHERE customer_id = $2 \
                 AND id IN (SELECT row_id FROM customer_merge_moves WHERE merge_id = $1 AND kind = 'interaction') \
                 RETURNING 1), \
               us AS (UPDATE customer_satisfaction SET customer_id = $3 WHERE customer_id = $2 \
                 AND id IN (SELECT row_id FROM customer_merge_moves WHERE merge_id = $1 AND kind = 'satisfaction') \
                 RETURNING 1) \
             SELECT (SELECT count(*) FROM ui) + (SELECT count(*) FROM ut) + (SELECT count(*) FROM us)",
        )
        .bind(merge_id)
        .bind(merge.survivor.0)
        .bind(merge.merged.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE customers SET merged_into = NULL, version = version + 1, updated_at = now() WHERE id = $1",
        )
        .bind(merge.merged.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE customers s SET lifetime_value_micros = GREATEST(s.lifetime_value_micros - m.merged_value_micros, 0), \
               version = s.version + 1, updated_at = now() \
             FROM customer_merges m WHERE s.id = $1 AND m.id = $2",
        )
        .bind(merge.survivor.0)
        .bind(merge_id)
        .execute(&mut *tx)
        .await?;
        refresh_satisfaction(&mut tx, merge.survivor.0).await?;
        refresh_satisfaction(&mut tx, merge.merged.0).await?;
        sqlx::query("UPDATE customer_merges SET undone_at = now() WHERE id = $1")
            .bind(merge_id)
            .execute(&mut *tx)
            .await?;
        let merge = fetch_merge(&mut *tx, merge_id).await?;
        tx.commit().await?;
        Ok(merge)
    }
}

async fn fetch_merge(executor: impl sqlx::PgExecutor<'_>, id: Uuid) -> Result<Merge> {
    let row: MergeRow = sqlx::query_as(
        "SELECT id, survivor_id, merged_id, reason, identities_moved, interactions_moved, \
           satisfaction_moved, created_at, undone_at FROM customer_merges WHERE id = $1",
    )
    .bind(id)
    .fetch_one(executor)
    .await?;
    Ok(row.into())
}

async fn lookup_with(
    executor: impl sqlx::PgExecutor<'_>,
    value: &IdentityValue,
) -> Result<Vec<Customer>> {
    let rows: Vec<CustomerRow> = sqlx::query_as(concat!(
        "SELECT ",
        customer_columns!(),
        // The identity drives and each holder is read by its key: a value has a handful of
        // holders at most. Left to itself, the planner's generic plan merge-joined them with
        // every live customer (about 300 index entries read per call with 500 customers in the
        // benchmark).
        " FROM customer_identities h CROSS JOIN LATERAL ( \
            SELECT * FROM customers c \
            WHERE c.id = h.customer_id AND c.deleted_at IS NULL AND c.merged_into IS NULL \
            LIMIT 1) c \
          WHERE h.kind = $1 AND h.value = $2 AND NOT h.released \
          ORDER BY c.updated_at DESC, c.id LIMIT 50"
    ))
    .bind(value.kind().as_str())
    .bind(value.as_str())
    .fetch_all(executor)
    .await?;
    rows.into_iter().map(CustomerRow::into_domain).collect()
}

/// A replay of an idempotent write: the same key must be for the same customer.
async fn replayed<T>(
    existing: T,
    asked: CustomerId,
    pool: &PgPool,
    owner: impl Fn(&T) -> CustomerId,
) -> Result<T> {
    let asked_live = fetch(pool, asked).await?.id;
    if owner(&existing) == asked_live {
        Ok(existing)
    } else {
        Err(common::idempotency_key_reused(asked))
    }
}

/// Why a write to a customer's timeline found no live customer.
async fn not_live(pool: &PgPool, id: CustomerId) -> Error {
    match fetch(pool, id).await {
        Ok(c) if c.deleted_at.is_some() => common::timeline_of_deleted(id),
        Ok(_) => Error::customer_not_found(id),
        Err(e) => e,
    }
}
