//! Agent records: who the agents are and what they can do (durable, in PostgreSQL).
//!
//! Reading order: [`record`] (the record and a parsed upsert, pure data and the mask rules),
//! [`convert`] (parsing `UpsertAgentRequest` and `ListAgentsRequest` at the boundary, and the
//! wire form of a record), then [`store`] (the `agents` table). Live status (presence,
//! sessions, active tickets) is in Redis and not kept here.

pub mod convert;
pub mod record;
pub mod store;

pub use convert::{ListAgentsQuery, agent_to_proto, parse_list_agents, parse_upsert};
pub use record::{AgentField, AgentFields, AgentFilter, AgentRecord, AgentUpsert, UpdateMask};
pub use store::{MIGRATOR, PgAgents};
