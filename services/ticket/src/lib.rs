//! The ticket service: the system of record for every complaint, question and request.
//!
//! Reading order: [`domain`] first: the state machine (`domain/state.rs`), the SLA clock
//! (`domain/sla.rs`), the priority rule and the catalog of categories and root causes.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod customers;
pub mod domain;
pub mod error;
pub mod routing;
pub mod service;
pub mod store;
pub mod workers;

use std::future::Future;
use std::sync::Arc;

use sqlx::PgPool;
use tierline_proto::ticket::ticket_service_server::TicketServiceServer;
use tierline_runtime::server::{ServeError, ServiceHost};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::customers::Customers;
use crate::domain::ticket::Rules;
use crate::routing::Router;
use crate::service::Tickets;
use crate::store::{PgStore, TicketStore};

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Db(#[from] tierline_runtime::db::DbError),
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Connects to PostgreSQL, applies migrations, and serves on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let pool = tierline_runtime::db::connect(&config.database, &store::MIGRATOR).await?;
    serve_with_pool(listener, config, pool, shutdown).await
}

/// Serves on `listener` with an open pool whose database is migrated, and runs the background
/// workers until `shutdown`.
pub async fn serve_with_pool(
    listener: TcpListener,
    config: Config,
    pool: PgPool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let store = PgStore::new(pool, api::snapshotter(Arc::new(rules(&config))));
    // The sequencer publishes this replica's appends; LISTEN/NOTIFY wakes its streams and
    // relays on every replica's publications.
    let log_tasks = store.spawn_log_tasks();
    let result = serve_with_store(listener, config, store, shutdown).await;
    log_tasks.abort();
    result
}

/// The rules the configuration sets.
fn rules(config: &Config) -> Rules {
    Rules {
        catalog: config.catalog.clone(),
        policies: config.sla.clone(),
        default_tier: config.ticket.default_tier,
    }
}

/// The wire encoding of the event snapshots a store built for `config` keeps.
pub fn snapshotter(config: &Config) -> store::Snapshotter {
    api::snapshotter(Arc::new(rules(config)))
}

/// Serves on `listener` over any store (PostgreSQL in production, SQLite in dev mode), and runs
/// the background workers until `shutdown`.
pub async fn serve_with_store<S: TicketStore>(
    listener: TcpListener,
    config: Config,
    store: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let rules = Arc::new(rules(&config));
    let customers = Customers::new(&config.customer_service).map_err(StartError::Config)?;
    let router = Router::new(&config.routing_service).map_err(StartError::Config)?;
    let feed = store.feed().clone();
    let tickets = Tickets::new(store, rules, customers);
    let mut background = Vec::new();
    background.extend(workers::spawn(
        tickets.clone(),
        config.ticket.worker_interval,
        config.ticket.event_retention,
    ));
    let mut api = api::TicketApi::new(tickets.clone());
    match router {
        Some(router) => {
            background.push(workers::spawn_routing_relay(
                tickets,
                router.clone(),
                feed.subscribe(),
                config.ticket.worker_interval,
            ));
            api = api.with_router(router);
        }
        None => tracing::warn!(
            "routing_service.endpoint is empty: tickets are not handed to routing and stay NEW"
        ),
    }
    let result = ServiceHost::new(config.server.clone())
        .add_service(TicketServiceServer::new(api))
        .serve(listener, shutdown)
        .await;
    for task in background {
        task.abort();
    }
    Ok(result?)
}
