//! Agent records in one SQLite file (table `agents`, see
//! `migrations_sqlite/20261128000001_agents.sql`), for the single-process dev mode. It behaves
//! as [`super::PgAgents`] does (`tests/agents_store.rs` runs the same tests on both); where
//! PostgreSQL has a feature SQLite lacks, this store uses an equivalent:
//!
//! - **Locks.** An upsert is one `BEGIN IMMEDIATE` transaction ([`SqliteDb::write`]): it holds
//!   SQLite's one write lock from the start, so the row it reads is the row it writes over.
//!   Concurrent upserts of one new id take turns; the first creates, the rest update, with no
//!   `FOR UPDATE` and no `ON CONFLICT` round.
//! - **Times.** The transaction's time ([`Write::now`]) is taken under the write lock, so it
//!   follows commit order as `clock_timestamp()` does; `max(.., update_time)` is PostgreSQL's
//!   `greatest()`, so update times never go backwards.
//! - **Types.** text[] and jsonb are JSON text; the department filter is `json_each` where
//!   PostgreSQL has `@>` and a GIN index; `id = ANY($1)` is `id IN (SELECT value FROM
//!   json_each($1))`.

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::sqlite::SqliteConnection;
use sqlx::types::Json;
use sqlx::{FromRow, QueryBuilder, Sqlite};
use tierline_runtime::sqlite::{SqliteDb, Stamp, Write};

use super::record::{AgentFields, AgentFilter, AgentRecord, AgentUpsert};
use super::store::{
    AgentStore, absent, capacities_json, capacity_from_json, check_version, sorted,
};
use crate::error::Result;

/// The embedded SQLite migrations of the agent records, applied by [`SqliteAgents::open`] and
/// [`SqliteAgents::in_memory`].
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations_sqlite");

const COLUMNS: &str = "id, display_name, departments, team_id, skills, capacities, disabled, \
    version, create_time, update_time";

/// Agent records in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteAgents {
    db: SqliteDb,
}

#[derive(FromRow)]
struct AgentRow {
    id: String,
    display_name: String,
    departments: Json<Vec<String>>,
    team_id: Option<String>,
    skills: Json<Vec<String>>,
    capacities: Json<BTreeMap<String, i64>>,
    disabled: bool,
    version: i64,
    create_time: Stamp,
    update_time: Stamp,
}

impl AgentRow {
    fn into_record(self) -> Result<AgentRecord> {
        let capacity = capacity_from_json(&self.id, &self.capacities.0)?;
        Ok(AgentRecord {
            id: self.id,
            display_name: self.display_name,
            departments: self.departments.0.into_iter().collect(),
            team_id: self.team_id,
            skills: self.skills.0.into_iter().collect(),
            capacity,
            disabled: self.disabled,
            version: self.version,
            created_at: self.create_time.to_time()?,
            updated_at: self.update_time.to_time()?,
        })
    }
}

impl SqliteAgents {
    /// Opens (creating it if missing) the database file at `path` and applies
    /// [`SQLITE_MIGRATOR`] (see [`SqliteDb::open`]).
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteAgents> {
        Ok(SqliteAgents {
            db: SqliteDb::open(path, &SQLITE_MIGRATOR).await?,
        })
    }

    /// A fresh private database in memory, for tests and a dev mode that keeps nothing.
    pub async fn in_memory() -> Result<SqliteAgents> {
        Ok(SqliteAgents {
            db: SqliteDb::in_memory(&SQLITE_MIGRATOR).await?,
        })
    }

    /// Waits for in-flight calls and closes the database, checkpointing the WAL into the file.
    pub async fn close(&self) {
        self.db.close().await;
    }
}

#[tonic::async_trait]
impl AgentStore for SqliteAgents {
    async fn upsert(&self, upsert: &AgentUpsert) -> Result<AgentRecord> {
        let mut w = self.db.write().await?;
        let record = match fetch(w.conn(), &upsert.id).await? {
            Some(current) => {
                check_version(upsert, current.version)?;
                let before = current.fields();
                let after = upsert.apply(&before);
                if after == before {
                    // Nothing to write: the dropped transaction ends without a change.
                    return Ok(current);
                }
                update(&mut w, &current.id, &after).await?
            }
            None => {
                if let Some(expected) = upsert.expected_version {
                    return Err(absent(upsert, expected));
                }
                insert(&mut w, &upsert.id, &upsert.creation()?).await?
            }
        };
        w.commit().await?;
        Ok(record)
    }

    async fn get(&self, id: &str) -> Result<Option<AgentRecord>> {
        let mut conn = self.db.pool().acquire().await?;
        fetch(&mut conn, id).await
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<AgentRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One bound JSON array, whatever the number of ids (SQLite limits bound parameters).
        let rows: Vec<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE id IN (SELECT value FROM json_each($1)) \
             ORDER BY id"
        )))
        .bind(Json(ids))
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter().map(AgentRow::into_record).collect()
    }

    /// Keyset pagination on the primary key (the table is kept in id order); the team filter
    /// uses the `(team_id, id)` index; the department filter looks into each row's JSON
    /// array, in id order until the page is full.
    async fn list(
        &self,
        filter: &AgentFilter,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AgentRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        q.push(COLUMNS).push(" FROM agents WHERE 1");
        if let Some(after) = after_id {
            q.push(" AND id > ").push_bind(after.to_owned());
        }
        if let Some(department) = &filter.department {
            q.push(" AND EXISTS (SELECT 1 FROM json_each(departments) WHERE value = ")
                .push_bind(department.clone())
                .push(")");
        }
        if let Some(team) = &filter.team_id {
            q.push(" AND team_id = ").push_bind(team.clone());
        }
        if !filter.include_disabled {
            q.push(" AND NOT disabled");
        }
        q.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
        let rows: Vec<AgentRow> = q.build_query_as().fetch_all(self.db.pool()).await?;
        rows.into_iter().map(AgentRow::into_record).collect()
    }
}

async fn fetch(conn: &mut SqliteConnection, id: &str) -> Result<Option<AgentRecord>> {
    let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM agents WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(AgentRow::into_record).transpose()
}

/// Inserts a new agent at version 1, created and updated at the transaction's time.
async fn insert(w: &mut Write, id: &str, fields: &AgentFields) -> Result<AgentRecord> {
    let now = w.now;
    let row: AgentRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO agents (id, display_name, departments, team_id, skills, capacities, \
             disabled, version, create_time, update_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8) \
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(&fields.display_name)
    .bind(Json(sorted(&fields.departments)))
    .bind(fields.team_id.as_deref())
    .bind(Json(sorted(&fields.skills)))
    .bind(capacities_json(&fields.capacity))
    .bind(fields.disabled)
    .bind(now)
    .fetch_one(w.conn())
    .await?;
    row.into_record()
}

/// Writes the changed fields `after` over agent `id`, raising its version.
async fn update(w: &mut Write, id: &str, after: &AgentFields) -> Result<AgentRecord> {
    let now = w.now;
    // max(): update times never go backwards, even if the clock does.
    let row: AgentRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE agents SET display_name = $2, departments = $3, team_id = $4, skills = $5, \
             capacities = $6, disabled = $7, version = version + 1, \
             update_time = max($8, update_time) \
         WHERE id = $1 \
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(&after.display_name)
    .bind(Json(sorted(&after.departments)))
    .bind(after.team_id.as_deref())
    .bind(Json(sorted(&after.skills)))
    .bind(capacities_json(&after.capacity))
    .bind(after.disabled)
    .bind(now)
    .fetch_one(w.conn())
    .await?;
    row.into_record()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10,000 agents in 50 departments (two each), 100 teams, every 10th disabled, as the
    /// PostgreSQL index test seeds them.
    async fn seeded() -> SqliteAgents {
        let store = SqliteAgents::in_memory().await.expect("open");
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) \
             INSERT INTO agents (id, display_name, departments, team_id, skills, capacities, \
                 disabled, version, create_time, update_time) \
             SELECT printf('agent-%05d', i), 'Agent ' || i, \
                 json_array('dept-' || (i % 50), 'dept-' || ((i + 1) % 50)), 'team-' || (i % 100), \
                 '[]', '{\"chat\": 3}', i % 10 = 0, 1, 0, 0 \
             FROM n",
        )
        .execute(store.db.pool())
        .await
        .expect("seed");
        sqlx::query("ANALYZE")
            .execute(store.db.pool())
            .await
            .expect("analyze");
        store
    }

    #[tokio::test]
    async fn keyset_and_team_lists_search_an_index_at_10000_agents() {
        let store = seeded().await;
        // The predicates SqliteAgents::list writes for the filters an index serves.
        for (predicate, value, index) in [
            ("team_id = $1", "team-7", "agents_team_idx"),
            ("id > $1", "agent-05000", "PRIMARY KEY"),
        ] {
            let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN SELECT {COLUMNS} FROM agents \
                 WHERE {predicate} AND NOT disabled ORDER BY id LIMIT 101"
            )))
            .bind(value)
            .fetch_all(store.db.pool())
            .await
            .expect("explain");
            let plan: Vec<String> = plan.into_iter().map(|row| row.3).collect();
            let plan = plan.join("\n");
            assert!(
                plan.contains("SEARCH") && plan.contains(index),
                "{predicate}:\n{plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "sorted again:\n{plan}");
        }
        let page = store
            .list(
                &AgentFilter {
                    department: Some("dept-0".into()),
                    ..Default::default()
                },
                None,
                500,
            )
            .await
            .expect("list");
        // dept-0 has i % 50 == 0 (all disabled, i % 10 == 0) and i % 50 == 49: 200 enabled.
        assert_eq!(page.len(), 200);
    }
}
