//! Agent records: who the agents are and what they can do (durable: PostgreSQL, or SQLite in
//! the single-process dev mode).
//!
//! Reading order: [`record`] (the record and a parsed upsert, pure data and the mask rules),
//! [`convert`] (parsing `UpsertAgentRequest` and `ListAgentsRequest` at the boundary, and the
//! wire form of a record), [`store`] (the [`AgentStore`] trait), then its implementations:
//! [`pg`] (the `agents` table in PostgreSQL) and [`sqlite`] (the same in SQLite). Live status
//! (presence, sessions, active tickets) is in the live state and not kept here.

pub mod convert;
pub mod pg;
pub mod record;
pub mod sqlite;
pub mod store;

pub use convert::{ListAgentsQuery, agent_to_proto, parse_list_agents, parse_upsert};
pub use pg::{MIGRATOR, PgAgents};
pub use record::{AgentField, AgentFields, AgentFilter, AgentRecord, AgentUpsert, UpdateMask};
pub use sqlite::{SQLITE_MIGRATOR, SqliteAgents};
pub use store::AgentStore;
