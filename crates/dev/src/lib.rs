//! Dev mode: the customer-profile, ticket and routing services in one process, on embedded
//! storage, so Tierline runs on a laptop with nothing else installed.
//!
//! - Customer and ticket stores and the agent records are SQLite files in one data directory
//!   (or in memory): the same `CustomerStore`, `TicketStore` and `AgentStore` traits the
//!   PostgreSQL stores implement, held to the same test suites.
//! - The router's live state is `InMemoryLive`, held to the same tests as the Redis one. It is
//!   lost when the process stops; at the next start the router rebuilds it from the ticket
//!   service, as it does after Redis loses its data.
//! - Each service is served by the same `serve_*` entry its own binary uses, on its usual port,
//!   and the three are wired to each other's actual addresses.
//!
//! The services' own binaries (PostgreSQL and Redis) remain the production path; nothing here
//! is used by them.
#![forbid(unsafe_code)]

pub mod demo;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tierline_proto::routing::GetQueueStatsRequest;
use tierline_proto::routing::routing_service_client::RoutingServiceClient;
use tierline_routing::agents::{AgentStore, SqliteAgents};
use tierline_routing::live::in_memory::InMemoryLive;
use tierline_routing::router::SystemClock;
use tierline_runtime::config::{TelemetryConfig, Validate};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The configuration of dev mode: each service's own configuration, under its name, with the
/// same keys as the service's file (`[routing.routing.steps]` is the routing service's
/// `[routing.steps]`). Storage, Redis and the services' addresses of each other are dev mode's
/// own and their settings are ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DevConfig {
    /// Logs and traces of the whole process.
    pub telemetry: TelemetryConfig,
    /// The customer-profile service.
    pub customer: tierline_customer::config::Config,
    /// The ticket service.
    pub ticket: tierline_ticket::config::Config,
    /// The routing service.
    pub routing: tierline_routing::config::Config,
}

impl Default for DevConfig {
    fn default() -> Self {
        let mut ticket = tierline_ticket::config::Config::default();
        // Background work (timeline, reconciliation) every second rather than every five, so
        // what a developer does shows at once; a laptop has the capacity.
        ticket.ticket.worker_interval = Duration::from_secs(1);
        let mut routing = tierline_routing::config::Config::default();
        // Routing steps and offer expiries to a tenth of a second.
        routing.router.tick = Duration::from_millis(100);
        DevConfig {
            telemetry: TelemetryConfig {
                log_filter: "warn,tierline=info".into(),
                ..TelemetryConfig::default()
            },
            customer: tierline_customer::config::Config::default(),
            ticket,
            routing,
        }
    }
}

impl Validate for DevConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        self.telemetry.validate(problems);
        let mut each = |name: &str, check: &dyn Fn(&mut Vec<String>)| {
            let mut found = Vec::new();
            check(&mut found);
            // Dev mode has its own storage: the services' database and Redis settings are
            // not used, so what they lack does not matter.
            problems.extend(
                found
                    .into_iter()
                    .filter(|p| !p.starts_with("database.") && !p.starts_with("redis."))
                    .map(|p| format!("{name}.{p}")),
            );
        };
        each("customer", &|p| self.customer.validate(p));
        each("ticket", &|p| self.ticket.validate(p));
        each("routing", &|p| self.routing.validate(p));
    }
}

/// Where dev mode keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// SQLite files in this directory (created if missing): kept across restarts.
    Directory(PathBuf),
    /// In memory: gone when the process stops.
    Memory,
}

impl Storage {
    /// True if nothing has been stored yet: a new directory, or memory.
    pub fn is_fresh(&self) -> bool {
        match self {
            Storage::Memory => true,
            Storage::Directory(dir) => !FILES.iter().any(|f| dir.join(f).exists()),
        }
    }
}

/// The database files of a data directory.
const FILES: [&str; 3] = ["customer.sqlite", "ticket.sqlite", "routing.sqlite"];

/// Where each service listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// `tierline.customer.v1.CustomerService`.
    pub customer: SocketAddr,
    /// `tierline.ticket.v1.TicketService`.
    pub ticket: SocketAddr,
    /// `tierline.routing.v1.RoutingService`, `AgentService` and `AgentDesktopService`.
    pub routing: SocketAddr,
}

/// Dev mode could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A service's address is taken or not ours.
    #[error(
        "{service}: cannot listen on {addr}: {source} (is Tierline already running? change {service}.server.listen)"
    )]
    Bind {
        /// The service.
        service: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A store could not be opened.
    #[error("{service}: cannot open its store at {location}: {message}")]
    Storage {
        /// The service.
        service: &'static str,
        /// The file or "memory".
        location: String,
        /// Why.
        message: String,
    },
    /// A service failed to start or stopped with an error.
    #[error("{service}: {message}")]
    Service {
        /// The service.
        service: &'static str,
        /// Why.
        message: String,
    },
    /// The demo data could not be loaded.
    #[error("demo data: {0}")]
    Demo(String),
}

/// The running services. Stop them with [`Dev::stop`]; dropping it stops them too, without
/// waiting.
pub struct Dev {
    addresses: Addresses,
    stop: watch::Sender<bool>,
    services: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
    closers: Vec<Closer>,
}

type Closer = Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>;

impl std::fmt::Debug for Dev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dev")
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn bind(service: &'static str, addr: SocketAddr) -> Result<TcpListener, DevError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DevError::Bind {
            service,
            addr,
            source,
        })
}

fn local(listener: &TcpListener, service: &'static str) -> Result<SocketAddr, DevError> {
    listener.local_addr().map_err(|e| DevError::Service {
        service,
        message: e.to_string(),
    })
}

fn storage_error(service: &'static str, at: &Option<PathBuf>) -> impl Fn(String) -> DevError {
    let location = at
        .as_ref()
        .map_or_else(|| "memory".to_owned(), |p| p.display().to_string());
    move |message| DevError::Storage {
        service,
        location: location.clone(),
        message,
    }
}

fn file(storage: &Storage, name: &str) -> Option<PathBuf> {
    match storage {
        Storage::Directory(dir) => Some(dir.join(name)),
        Storage::Memory => None,
    }
}

fn http(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Starts the three services: binds every address first (so a taken port fails before anything
/// runs), opens the stores, wires the services to each other's actual addresses and serves.
/// Returns once they accept calls; [`Dev::ready`] waits for the router's live state.
pub async fn start(config: DevConfig, storage: Storage) -> Result<Dev, DevError> {
    let DevConfig {
        customer: customer_config,
        ticket: mut ticket_config,
        routing: mut routing_config,
        ..
    } = config;
    let customer_on = bind("customer", customer_config.server.listen).await?;
    let ticket_on = bind("ticket", ticket_config.server.listen).await?;
    let routing_on = bind("routing", routing_config.server.listen).await?;
    let addresses = Addresses {
        customer: local(&customer_on, "customer")?,
        ticket: local(&ticket_on, "ticket")?,
        routing: local(&routing_on, "routing")?,
    };
    ticket_config.customer_service.endpoint = http(addresses.customer);
    ticket_config.routing_service.endpoint = http(addresses.routing);
    routing_config.ticket_service.endpoint = http(addresses.ticket);

    if let Storage::Directory(dir) = &storage {
        std::fs::create_dir_all(dir).map_err(|e| DevError::Storage {
            service: "dev",
            location: dir.display().to_string(),
            message: e.to_string(),
        })?;
    }
    let at = file(&storage, FILES[0]);
    let customers = match &at {
        Some(path) => tierline_customer::store::SqliteStore::open(path).await,
        None => tierline_customer::store::SqliteStore::in_memory().await,
    }
    .map_err(|e| storage_error("customer", &at)(e.to_string()))?;
    let at = file(&storage, FILES[1]);
    let snapshot = tierline_ticket::snapshotter(&ticket_config);
    let tickets = match &at {
        Some(path) => tierline_ticket::store::SqliteStore::open(path, snapshot).await,
        None => tierline_ticket::store::SqliteStore::in_memory(snapshot).await,
    }
    .map_err(|e| storage_error("ticket", &at)(e.to_string()))?;
    let at = file(&storage, FILES[2]);
    let agents = match &at {
        Some(path) => SqliteAgents::open(path).await,
        None => SqliteAgents::in_memory().await,
    }
    .map_err(|e| storage_error("routing", &at)(e.to_string()))?;

    let (stop, stopping) = watch::channel(false);
    let signal = move || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    };
    let customers = Arc::new(customers);
    let mut closers: Vec<Closer> = Vec::new();
    {
        let customers = customers.clone();
        closers.push(Box::new(move || {
            Box::pin(async move { customers.close().await })
        }));
        let tickets = tickets.clone();
        closers.push(Box::new(move || {
            Box::pin(async move { tickets.close().await })
        }));
        let agents = agents.clone();
        closers.push(Box::new(move || {
            Box::pin(async move { agents.close().await })
        }));
    }
    let services = vec![
        (
            "customer",
            spawn(tierline_customer::serve_with_store(
                customer_on,
                customer_config,
                customers,
                signal(),
            )),
        ),
        (
            "ticket",
            spawn(tierline_ticket::serve_with_store(
                ticket_on,
                ticket_config,
                tickets,
                signal(),
            )),
        ),
        (
            "routing",
            spawn(tierline_routing::serve_with_parts(
                routing_on,
                routing_config,
                Arc::new(agents) as Arc<dyn AgentStore>,
                Arc::new(InMemoryLive::new()),
                Arc::new(SystemClock),
                signal(),
            )),
        ),
    ];
    Ok(Dev {
        addresses,
        stop,
        services,
        closers,
    })
}

fn spawn<E: std::fmt::Display>(
    serve: impl Future<Output = Result<(), E>> + Send + 'static,
) -> JoinHandle<Result<(), String>> {
    tokio::spawn(async move { serve.await.map_err(|e| e.to_string()) })
}

impl Dev {
    /// Where each service listens.
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// Waits until the router has built its live state (it answers UNAVAILABLE until then), at
    /// most `within`.
    pub async fn ready(&self, within: Duration) -> Result<(), DevError> {
        let deadline = tokio::time::Instant::now() + within;
        let not_ready = |message: String| DevError::Service {
            service: "routing",
            message: format!("not ready after {within:?}: {message}"),
        };
        loop {
            let answer = match RoutingServiceClient::connect(http(self.addresses.routing)).await {
                Ok(mut client) => client
                    .get_queue_stats(GetQueueStatsRequest::default())
                    .await
                    .map(drop)
                    .map_err(|s| s.message().to_owned()),
                Err(e) => Err(e.to_string()),
            };
            match answer {
                Ok(()) => return Ok(()),
                Err(message) if tokio::time::Instant::now() >= deadline => {
                    return Err(not_ready(message));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Resolves when a service stops by itself (it failed), naming it and why.
    pub async fn failed(&mut self) -> DevError {
        let watched = self
            .services
            .iter_mut()
            .map(|(name, task)| Box::pin(async move { (*name, task.await) }));
        let ((service, outcome), _, _) = futures::future::select_all(watched).await;
        let message = match outcome {
            Ok(Ok(())) => "stopped unexpectedly".to_owned(),
            Ok(Err(message)) => message,
            Err(join) => format!("crashed: {join}"),
        };
        DevError::Service { service, message }
    }

    /// Stops the services (each drains its calls and ends its streams), then closes the stores
    /// so the SQLite files are checkpointed. The first service error, if any, is returned.
    pub async fn stop(mut self) -> Result<(), DevError> {
        self.stop.send_replace(true);
        let mut first_error = None;
        for (service, task) in std::mem::take(&mut self.services) {
            let message = match task.await {
                Ok(Ok(())) => continue,
                Ok(Err(message)) => message,
                Err(join) => format!("crashed: {join}"),
            };
            first_error.get_or_insert(DevError::Service { service, message });
        }
        for close in std::mem::take(&mut self.closers) {
            close().await;
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The data directory used when none is given: `.tierline-dev` in the working directory,
/// beside the checkout a newcomer runs it from, and easy to delete.
pub fn default_data_dir() -> PathBuf {
    Path::new(".tierline-dev").to_path_buf()
}
