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
use crate::store::PgStore;
use crate::store::feed::EventFeed;

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
    let rules = Arc::new(Rules {
        catalog: config.catalog.clone(),
        policies: config.sla.clone(),
        default_tier: config.ticket.default_tier,
    });
    let customers = Customers::new(&config.customer_service).map_err(StartError::Config)?;
    let router = Router::new(&config.routing_service).map_err(StartError::Config)?;
    let store = PgStore::new(pool.clone(), api::snapshotter(rules.clone()));
    let tickets = Tickets::new(store, rules, customers);
    let feed = EventFeed::new();
    let mut background = vec![feed.listen(pool)];
    background.extend(workers::spawn(
        tickets.clone(),
        config.ticket.worker_interval,
        config.ticket.event_retention,
    ));
    let mut api = api::TicketApi::new(tickets.clone(), feed.clone());
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
