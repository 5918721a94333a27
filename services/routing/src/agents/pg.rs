//! Agent records in PostgreSQL (table `agents`, see `migrations/20261128000001_agents.sql`).
//!
//! An upsert is one transaction: lock the row, check the expected version, apply the masked
//! fields, and write only if something changed. Creation is `INSERT ... ON CONFLICT DO
//! NOTHING`, so concurrent upserts of the same new id never surface a unique violation: the
//! losers find the winner's row and update it like any other.

use std::collections::BTreeMap;

use sqlx::postgres::PgPool;
use sqlx::types::Json;
use sqlx::{FromRow, Postgres, QueryBuilder, Transaction};
use time::OffsetDateTime;

use super::record::{AgentFields, AgentFilter, AgentRecord, AgentUpsert};
use super::store::{
    AgentStore, absent, capacities_json, capacity_from_json, check_version, sorted,
};
use crate::error::{Error, Result};

/// The embedded migrations of the agent records, applied at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const COLUMNS: &str = "id, display_name, departments, team_id, skills, capacities, disabled, \
    version, create_time, update_time";

/// Agent records in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgAgents {
    pool: PgPool,
}

#[derive(FromRow)]
struct AgentRow {
    id: String,
    display_name: String,
    departments: Vec<String>,
    team_id: Option<String>,
    skills: Vec<String>,
    capacities: Json<BTreeMap<String, i64>>,
    disabled: bool,
    version: i64,
    create_time: OffsetDateTime,
    update_time: OffsetDateTime,
}

impl TryFrom<AgentRow> for AgentRecord {
    type Error = Error;

    fn try_from(row: AgentRow) -> Result<AgentRecord> {
        let capacity = capacity_from_json(&row.id, &row.capacities.0)?;
        Ok(AgentRecord {
            id: row.id,
            display_name: row.display_name,
            departments: row.departments.into_iter().collect(),
            team_id: row.team_id,
            skills: row.skills.into_iter().collect(),
            capacity,
            disabled: row.disabled,
            version: row.version,
            created_at: row.create_time,
            updated_at: row.update_time,
        })
    }
}

impl PgAgents {
    /// The store over `pool` (migrated with [`MIGRATOR`]).
    pub fn new(pool: PgPool) -> PgAgents {
        PgAgents { pool }
    }
}

#[tonic::async_trait]
impl AgentStore for PgAgents {
    async fn upsert(&self, upsert: &AgentUpsert) -> Result<AgentRecord> {
        let mut tx = self.pool.begin().await?;
        // Two rounds at most: if the agent is absent but a concurrent upsert creates it first,
        // our insert does nothing and the second round updates the winner's row.
        for _ in 0..2 {
            let current = lock(&mut tx, &upsert.id).await?;
            let record = match current {
                Some(current) => update(&mut tx, upsert, current).await?,
                None => {
                    if let Some(expected) = upsert.expected_version {
                        return Err(absent(upsert, expected));
                    }
                    match insert(&mut tx, &upsert.id, &upsert.creation()?).await? {
                        Some(created) => created,
                        None => continue,
                    }
                }
            };
            tx.commit().await?;
            return Ok(record);
        }
        // Rows are never deleted, so a row that blocked our insert is there to lock.
        Err(Error::Corrupt(format!(
            "agent {} neither inserted nor found",
            upsert.id
        )))
    }

    async fn get(&self, id: &str) -> Result<Option<AgentRecord>> {
        let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(AgentRecord::try_from).transpose()
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<AgentRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE id = ANY($1) ORDER BY id"
        )))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AgentRecord::try_from).collect()
    }

    /// Keyset pagination on the primary key; the department filter uses the GIN index on
    /// `departments`, the team filter the `(team_id, id)` index.
    async fn list(
        &self,
        filter: &AgentFilter,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AgentRecord>> {
        // Only the conditions in use go into the SQL (every value bound), so each combination
        // gets its own plan: `($1 IS NULL OR ...)` would let a cached generic plan skip the
        // indexes.
        let mut q = QueryBuilder::<Postgres>::new("SELECT ");
        q.push(COLUMNS).push(" FROM agents WHERE true");
        if let Some(after) = after_id {
            q.push(" AND id > ").push_bind(after.to_owned());
        }
        if let Some(department) = &filter.department {
            // `@>` is what the GIN index serves; `$1 = ANY(departments)` would scan.
            q.push(" AND departments @> ARRAY[")
                .push_bind(department.clone())
                .push("]::text[]");
        }
        if let Some(team) = &filter.team_id {
            q.push(" AND team_id = ").push_bind(team.clone());
        }
        if !filter.include_disabled {
            q.push(" AND NOT disabled");
        }
        q.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
        let rows: Vec<AgentRow> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(AgentRecord::try_from).collect()
    }
}

async fn lock(tx: &mut Transaction<'_, Postgres>, id: &str) -> Result<Option<AgentRecord>> {
    let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM agents WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(AgentRecord::try_from).transpose()
}

/// Inserts a new agent at version 1; `None` if the id exists (a concurrent creator won).
async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    fields: &AgentFields,
) -> Result<Option<AgentRecord>> {
    // clock_timestamp(), not now(): now() is when our transaction began, which can be before a
    // concurrent creator's, and would let a later update carry an earlier time. Read once (in
    // FROM): each call differs, and a new record's create and update times must be equal.
    let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO agents (id, display_name, departments, team_id, skills, capacities, \
             disabled, version, create_time, update_time) \
         SELECT $1, $2, $3, $4, $5, $6, $7, 1, at, at FROM clock_timestamp() AS at \
         ON CONFLICT (id) DO NOTHING \
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(&fields.display_name)
    .bind(sorted(&fields.departments))
    .bind(fields.team_id.as_deref())
    .bind(sorted(&fields.skills))
    .bind(capacities_json(&fields.capacity))
    .bind(fields.disabled)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(AgentRecord::try_from).transpose()
}

/// Applies `upsert` to the locked `current` row; writes only if a field changes.
async fn update(
    tx: &mut Transaction<'_, Postgres>,
    upsert: &AgentUpsert,
    current: AgentRecord,
) -> Result<AgentRecord> {
    check_version(upsert, current.version)?;
    let before = current.fields();
    let after = upsert.apply(&before);
    if after == before {
        return Ok(current);
    }
    // greatest(): update times never go backwards, even if the clock does.
    let row: AgentRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE agents SET display_name = $2, departments = $3, team_id = $4, skills = $5, \
             capacities = $6, disabled = $7, version = version + 1, \
             update_time = greatest(clock_timestamp(), update_time) \
         WHERE id = $1 \
         RETURNING {COLUMNS}"
    )))
    .bind(&current.id)
    .bind(&after.display_name)
    .bind(sorted(&after.departments))
    .bind(after.team_id.as_deref())
    .bind(sorted(&after.skills))
    .bind(capacities_json(&after.capacity))
    .bind(after.disabled)
    .fetch_one(&mut **tx)
    .await?;
    AgentRecord::try_from(row)
}
