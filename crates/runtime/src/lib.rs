//! The shared service runtime of Tierline: everything a service needs that is not its domain.
//!
//! - [`config`]: typed configuration, layered defaults → file → environment, validated at start.
//! - [`telemetry`]: tracing with OpenTelemetry and W3C trace context across gRPC calls.
//! - [`server`]: server start-up with health, reflection, timeouts, load shedding, an interceptor
//!   slot and graceful shutdown.
//! - [`error`]: the one mapping from domain errors to gRPC statuses with `google.rpc` details.
//! - [`db`]: PostgreSQL pool and embedded migrations.
//! - [`sqlite`]: SQLite for the single-process dev mode: one writer, times as [`sqlite::Stamp`].
//! - [`process`]: what every service binary does, so each `main` is one line.
//! - [`wire`]: conversions between wire types (timestamps, page tokens) and domain types.
#![forbid(unsafe_code)]

pub mod config;
pub mod db;
pub mod error;
pub mod process;
pub mod server;
pub mod shutdown;
pub mod sqlite;
pub mod telemetry;
pub mod wire;

pub use error::{ErrorKind, FieldViolation, ServiceError, Violations};
