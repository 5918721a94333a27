//! The routing service: which agent gets which ticket, and when.
//!
//! Reading order: [`domain`] first: the routing algorithm as pure code; then [`live`]: the live
//! state in Redis (queues, agents and offers, changed only by atomic Lua scripts); [`router`]:
//! the domain's decisions applied to the live state, and the background loop; [`api`]: the gRPC
//! adapters; [`agents`]: the durable agent records.
//!
//! [`serve`] runs on PostgreSQL and Redis; [`serve_with_parts`] on any agent store and live
//! state, such as SQLite and the in-process live state of the single-process dev mode.
#![forbid(unsafe_code)]

pub mod agents;
pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod leases;
pub mod live;
pub mod router;
pub mod tickets;

use std::future::Future;
use std::sync::Arc;

use sqlx::PgPool;
use tierline_proto::routing::agent_desktop_service_server::AgentDesktopServiceServer;
use tierline_proto::routing::agent_service_server::AgentServiceServer;
use tierline_proto::routing::routing_service_server::RoutingServiceServer;
use tierline_runtime::server::{ServeError, ServiceHost};
use tokio::net::TcpListener;

use crate::agents::{AgentStore, PgAgents};
use crate::config::Config;
use crate::live::RedisSettings;
use crate::live::keys::Keys;
use crate::live::on_redis::RedisLive;
use crate::live::state::LiveState;
use crate::router::{Clock, Router, SystemClock};
use crate::tickets::Tickets;

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

/// Connects to PostgreSQL (applying migrations) and Redis, and serves on `listener` until
/// `shutdown`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let pool = tierline_runtime::db::connect(&config.database, &agents::MIGRATOR).await?;
    serve_with(listener, config, pool, Arc::new(SystemClock), shutdown).await
}

/// Serves with an open, migrated pool and the given clock (tests pass a manual one). Redis is
/// connected lazily: the service starts while Redis is down and answers UNAVAILABLE until it
/// is back.
pub async fn serve_with(
    listener: TcpListener,
    config: Config,
    pool: PgPool,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let mut settings = RedisSettings::new(config.redis.url.clone());
    settings.response_timeout = config.redis.response_timeout;
    let conn = live::connect_lazy(&settings).map_err(|e| StartError::Config(e.to_string()))?;
    let client = redis::Client::open(config.redis.url.as_str())
        .map_err(|e| StartError::Config(format!("redis.url: {e}")))?;
    let keys = Keys::new(config.redis.key_prefix.clone())
        .map_err(|e| StartError::Config(e.to_string()))?;
    serve_with_parts(
        listener,
        config,
        Arc::new(PgAgents::new(pool)),
        Arc::new(RedisLive::new(client, conn, keys)),
        clock,
        shutdown,
    )
    .await
}

/// Serves with the given agent store, live state and clock until `shutdown`: what [`serve`]
/// and [`serve_with`] do once they have connected, and what the single-process dev mode calls
/// with [`agents::SqliteAgents`] and [`live::in_memory::InMemoryLive`]. `config.database` and
/// `config.redis` are not read; the ticket service is `config.ticket_service`, as always.
pub async fn serve_with_parts(
    listener: TcpListener,
    config: Config,
    agents: Arc<dyn AgentStore>,
    live: Arc<dyn LiveState>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let tickets = Tickets::new(
        &config.ticket_service.endpoint,
        config.ticket_service.timeout,
    )
    .map_err(StartError::Config)?;
    let router = Router::new(
        live,
        agents,
        tickets,
        config.routing.clone(),
        config.router,
        clock,
    );
    let background = tokio::spawn(router.clone().run(router.stopping()));
    let stopping = router.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.stop();
    };
    let result = ServiceHost::new(config.server.clone())
        .add_service(RoutingServiceServer::new(api::RoutingApi::new(
            router.clone(),
        )))
        .add_service(AgentDesktopServiceServer::new(api::DesktopApi::new(
            router.clone(),
        )))
        .add_service(AgentServiceServer::new(api::AgentApi::new(router.clone())))
        .serve(listener, shutdown)
        .await;
    router.stop();
    background.abort();
    Ok(result?)
}
