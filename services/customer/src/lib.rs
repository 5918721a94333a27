//! The customer-profile service: one customer record for every channel and department.
//!
//! Reading order: [`domain`] (pure rules: identities, profile, tiering, satisfaction), [`store`]
//! (PostgreSQL, or SQLite for the single-process dev mode), [`api`] (the gRPC adapter), then
//! [`serve`] and [`serve_with_store`].
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use sqlx::PgPool;
use tierline_proto::customer::customer_service_server::CustomerServiceServer;
use tierline_runtime::server::{ServeError, ServiceHost};
use tokio::net::TcpListener;

use crate::api::{CustomerApi, convert::WireContext};
use crate::config::Config;
use crate::domain::RegionCode;
use crate::store::{CustomerStore, PgStore};

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
    /// The store could not be opened (a SQLite file that cannot be created or migrated).
    #[error("customer store: {0}")]
    Store(#[from] crate::error::Error),
}

/// Connects to PostgreSQL, applies migrations, and serves on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let pool = tierline_runtime::db::connect(&config.database, PgStore::migrator()).await?;
    serve_with_pool(listener, config, pool, shutdown).await
}

/// Serves on `listener` with an open pool whose database is migrated.
pub async fn serve_with_pool(
    listener: TcpListener,
    config: Config,
    pool: PgPool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    serve_with_store(listener, config, Arc::new(PgStore::new(pool)), shutdown).await
}

/// Serves on `listener` over `store` until `shutdown`: the service on any [`CustomerStore`],
/// for example a [`store::SqliteStore`] in the single-process dev mode. `config.database` is
/// not read; `config.server` and `config.customer` are (including the periodic tier
/// recomputation, which runs on `store`).
pub async fn serve_with_store<S: CustomerStore>(
    listener: TcpListener,
    config: Config,
    store: Arc<S>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let default_region = RegionCode::parse(&config.customer.default_region)
        .map_err(|e| StartError::Config(format!("customer.default_region: {e}")))?;
    // The phone-number metadata loads on first use (about a second); load it now rather than in
    // the first caller's IVR lookup.
    let _ = domain::PhoneNumber::parse("+442079460018", default_region);
    let api = CustomerApi::new(
        store.clone(),
        WireContext {
            default_region,
            reporting_currency: config.customer.reporting_currency.clone(),
        },
        config.customer.tiering,
    );
    let recompute = config.customer.tier_recompute_interval.map(|every| {
        let store = store.clone();
        let policy = config.customer.tiering;
        tokio::spawn(recompute_periodically(store, policy, every))
    });
    let result = ServiceHost::new(config.server.clone())
        .add_service(CustomerServiceServer::new(api))
        .serve(listener, shutdown)
        .await;
    if let Some(task) = recompute {
        task.abort();
    }
    Ok(result?)
}

/// Recomputes tiers every `every`, as the texts ask ("tiers are recomputed periodically").
async fn recompute_periodically<S: CustomerStore>(
    store: Arc<S>,
    policy: domain::TieringPolicy,
    every: std::time::Duration,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match store.recompute_tiers(policy, false).await {
            Ok(report) => tracing::info!(
                evaluated = report.evaluated,
                changed = report.changed,
                "tiers recomputed"
            ),
            Err(error) => tracing::warn!(%error, "periodic tier recomputation failed"),
        }
    }
}
