//! Helpers for end-to-end tests: a fresh database per test and the real service binaries started
//! as child processes, the way an operator runs them.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::{Connection, Executor, PgConnection};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Superuser URL of the PostgreSQL the tests use; `scripts/test` sets `DATABASE_URL`.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database made for one test and dropped when the test calls [`TestDatabase::drop_now`].
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// URL to connect to it.
    pub url: String,
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    pub async fn create() -> Result<Self> {
        let admin = admin_url();
        let name = format!("tierline_e2e_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&admin).await.with_context(|| {
            format!("cannot connect to PostgreSQL at {admin}; run scripts/test")
        })?;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Ok(TestDatabase {
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// Drops the database, disconnecting anyone still on it.
    pub async fn drop_now(self) -> Result<()> {
        let mut conn = PgConnection::connect(&admin_url()).await?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .await?;
        Ok(())
    }
}

/// Path of a workspace binary, built by `cargo build --workspace --bins` (scripts/test does).
pub fn binary(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("TIERLINE_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // target/<profile>/deps/<test binary> → target/<profile>
            let exe = std::env::current_exe()?;
            exe.parent()
                .and_then(|deps| deps.parent())
                .map(PathBuf::from)
                .context("cannot find the target directory")?
        }
    };
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it first with `cargo build --workspace --bins` (scripts/test does)",
            path.display()
        );
    }
    Ok(path)
}

/// A free local port (there is a small window in which another process could take it).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A service binary running as a child process.
pub struct RunningService {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl RunningService {
    /// Starts `binary` with `env` and waits until its health check answers SERVING.
    pub async fn start(binary_name: &str, env: &[(&str, String)]) -> Result<Self> {
        Self::start_on(binary_name, free_port()?, env).await
    }

    /// Like [`RunningService::start`] on a given port (for services that must know each
    /// other's address before either runs).
    pub async fn start_on(binary_name: &str, port: u16, env: &[(&str, String)]) -> Result<Self> {
        Self::start_with_args(binary_name, port, env, &[]).await
    }

    /// Like [`RunningService::start_on`], with command-line arguments (`--config FILE`).
    pub async fn start_with_args(
        binary_name: &str,
        port: u16,
        env: &[(&str, String)],
        args: &[&std::ffi::OsStr],
    ) -> Result<Self> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = Command::new(binary(binary_name)?);
        command
            .args(args)
            .env("TIERLINE_SERVER__LISTEN", addr.to_string())
            .env("TIERLINE_TELEMETRY__LOG_FILTER", "warn")
            .stdin(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {binary_name}"))?;
        let mut service = RunningService { child, addr };
        service.wait_serving(Duration::from_secs(30)).await?;
        Ok(service)
    }

    /// A channel to the service.
    pub async fn channel(&self) -> Result<Channel> {
        Ok(Channel::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await?)
    }

    async fn wait_serving(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("service exited during start-up with {status}");
            }
            if let Ok(channel) = self.channel().await {
                let status = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                if let Ok(reply) = status
                    && reply.into_inner().status == ServingStatus::Serving as i32
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("service did not report SERVING within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn terminate(mut self) -> Result<ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("service did not stop within 30s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        // A failed test must not leave a server running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// URL of the Redis the tests use; `scripts/test` sets `TIERLINE_TEST_REDIS_URL`.
pub fn redis_url() -> String {
    std::env::var("TIERLINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// How [`Stack::start`] configures the three services beyond what it sets itself.
///
/// Each `*_config` is the text of a TOML configuration file (empty: no file), for what the
/// environment cannot express, such as the routing service's `[routing.steps] key_account` list.
/// The environment wins over the file, so the keys the stack sets in the environment (see
/// [`Stack::start`]) are changed with the `*_env` lists instead, whose entries win over the
/// stack's.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// Configuration file of `tierline-customer`.
    pub customer_config: String,
    /// Configuration file of `tierline-ticket`.
    pub ticket_config: String,
    /// Configuration file of `tierline-routing`.
    pub routing_config: String,
    /// Extra environment of `tierline-customer`.
    pub customer_env: Vec<(&'static str, String)>,
    /// Extra environment of `tierline-ticket`.
    pub ticket_env: Vec<(&'static str, String)>,
    /// Extra environment of `tierline-routing`.
    pub routing_env: Vec<(&'static str, String)>,
}

/// How a [`Stack`] runs the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The production layout: three binaries, PostgreSQL and Redis.
    Production,
    /// `tierline dev`: one process, SQLite files and the in-process routing state.
    Dev,
}

/// The processes behind a [`Stack`].
#[expect(
    clippy::large_enum_variant,
    reason = "one per stack, moved once: boxing buys nothing"
)]
enum Processes {
    Production {
        customer: RunningService,
        ticket: RunningService,
        router: RunningService,
        databases: [TestDatabase; 3],
    },
    Dev {
        process: RunningService,
        _data: tempfile::TempDir,
    },
}

/// The three services wired to each other, with a client of every gRPC service: in production
/// layout (each binary on a fresh database, the router on a Redis key prefix of its own) or in
/// dev mode (`tierline dev` on a fresh data directory). Stop it with [`Stack::stop`], which also
/// checks that every process exits cleanly on SIGTERM (a stack that is dropped instead kills its
/// processes).
pub struct Stack {
    /// `tierline.customer.v1.CustomerService`.
    pub customers:
        tierline_proto::customer::customer_service_client::CustomerServiceClient<Channel>,
    /// `tierline.ticket.v1.TicketService`.
    pub tickets: tierline_proto::ticket::ticket_service_client::TicketServiceClient<Channel>,
    /// `tierline.routing.v1.RoutingService`.
    pub routing: tierline_proto::routing::routing_service_client::RoutingServiceClient<Channel>,
    /// `tierline.routing.v1.AgentService`.
    pub agents: tierline_proto::routing::agent_service_client::AgentServiceClient<Channel>,
    /// `tierline.routing.v1.AgentDesktopService`.
    pub desktops:
        tierline_proto::routing::agent_desktop_service_client::AgentDesktopServiceClient<Channel>,
    /// The router's Redis key prefix (`test:<uuid>:`); empty in dev mode.
    pub redis_prefix: String,
    processes: Processes,
    _config_dir: tempfile::TempDir,
}

impl Stack {
    /// Starts `tierline-customer`, `tierline-ticket` and `tierline-routing`, each on a database
    /// of its own, and waits until the router has built its live state.
    ///
    /// Set in the environment (override with the options' `*_env`): every service's
    /// `database.url`, `server.listen` and `telemetry.log_filter` (`warn`); the ticket service's
    /// `customer_service.endpoint`, `routing_service.endpoint`, both peers' `timeout` (`2s`, so a
    /// loaded test machine does not push intake onto its degraded paths) and
    /// `ticket.worker_interval` (`200ms`, so the timeline relay and reconciliation run often);
    /// the router's `redis.url` ([`redis_url`]), `redis.key_prefix`, `ticket_service.endpoint`
    /// and `router.tick` (`100ms`, so routing steps and expiries are punctual).
    pub async fn start(options: StackOptions) -> Result<Self> {
        Self::start_in(Mode::Production, options).await
    }

    /// Starts the services in `mode`. In dev mode the options' files go into `tierline dev`'s
    /// configuration under each service's name, and the `*_env` entries are renamed likewise
    /// (`TIERLINE_ROUTER__TICK` of the routing service becomes `TIERLINE_ROUTING__ROUTER__TICK`).
    pub async fn start_in(mode: Mode, options: StackOptions) -> Result<Self> {
        match mode {
            Mode::Production => Self::start_production(options).await,
            Mode::Dev => Self::start_dev(options).await,
        }
    }

    async fn start_dev(options: StackOptions) -> Result<Self> {
        let config_dir = tempfile::tempdir()?;
        let data = tempfile::tempdir()?;
        let ports = distinct_ports(3)?;
        let mut root = toml::Table::new();
        for (name, text, port) in [
            ("customer", &options.customer_config, ports[0]),
            ("ticket", &options.ticket_config, ports[1]),
            ("routing", &options.routing_config, ports[2]),
        ] {
            let mut table: toml::Table = toml::from_str(text)
                .with_context(|| format!("the {name} configuration of the options"))?;
            let server = table
                .entry("server")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(server) = server {
                server.insert("listen".into(), format!("127.0.0.1:{port}").into());
            }
            root.insert(name.into(), toml::Value::Table(table));
        }
        let path = config_dir.path().join("dev.toml");
        std::fs::write(&path, toml::to_string(&root)?)?;
        let mut env: Vec<(String, String)> = vec![
            // As in production layout: background work and routing steps run often.
            (
                "TIERLINE_TICKET__TICKET__WORKER_INTERVAL".into(),
                "200ms".into(),
            ),
            ("TIERLINE_TELEMETRY__LOG_FILTER".into(), "warn".into()),
        ];
        for (service, extra) in [
            ("CUSTOMER", &options.customer_env),
            ("TICKET", &options.ticket_env),
            ("ROUTING", &options.routing_env),
        ] {
            for (key, value) in extra.iter() {
                let rest = key.strip_prefix("TIERLINE_").unwrap_or(key);
                env.push((format!("TIERLINE_{service}__{rest}"), value.clone()));
            }
        }
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let data_dir = data.path().join("data");
        let args: Vec<&std::ffi::OsStr> = vec![
            "dev".as_ref(),
            "--no-demo".as_ref(),
            "--config".as_ref(),
            path.as_os_str(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
        ];
        // The routing service's address: its health answers once all three serve.
        let process = RunningService::start_with_args("tierline", ports[2], &env, &args)
            .await
            .context("starting tierline dev")?;
        let addr = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
        Self::connect(
            [addr(ports[0]), addr(ports[1]), addr(ports[2])],
            String::new(),
            Processes::Dev {
                process,
                _data: data,
            },
            config_dir,
        )
        .await
    }

    async fn start_production(options: StackOptions) -> Result<Self> {
        let customer_db = TestDatabase::create().await?;
        let ticket_db = TestDatabase::create().await?;
        let routing_db = TestDatabase::create().await?;
        let config_dir = tempfile::tempdir()?;
        let config_args = |name: &str, toml: &str| -> Result<Vec<std::ffi::OsString>> {
            if toml.trim().is_empty() {
                return Ok(Vec::new());
            }
            let path = config_dir.path().join(format!("{name}.toml"));
            std::fs::write(&path, toml)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(vec!["--config".into(), path.into_os_string()])
        };
        let with = |mut base: Vec<(&'static str, String)>, extra: &[(&'static str, String)]| {
            base.extend(extra.iter().cloned());
            base
        };
        let redis_prefix = format!("test:{}:", uuid::Uuid::new_v4());
        let ticket_port = free_port()?;
        let routing_port = loop {
            let port = free_port()?;
            if port != ticket_port {
                break port;
            }
        };

        let args = config_args("customer", &options.customer_config)?;
        let customer = start_configured(
            "tierline-customer",
            free_port()?,
            &with(
                vec![("TIERLINE_DATABASE__URL", customer_db.url.clone())],
                &options.customer_env,
            ),
            &args,
        )
        .await?;
        // The ticket service first: the router rebuilds its live state from it at start. The
        // ticket service connects to the router lazily and hands tickets over once it is up.
        let args = config_args("ticket", &options.ticket_config)?;
        let ticket = start_configured(
            "tierline-ticket",
            ticket_port,
            &with(
                vec![
                    ("TIERLINE_DATABASE__URL", ticket_db.url.clone()),
                    (
                        "TIERLINE_CUSTOMER_SERVICE__ENDPOINT",
                        format!("http://{}", customer.addr),
                    ),
                    ("TIERLINE_CUSTOMER_SERVICE__TIMEOUT", "2s".into()),
                    (
                        "TIERLINE_ROUTING_SERVICE__ENDPOINT",
                        format!("http://127.0.0.1:{routing_port}"),
                    ),
                    ("TIERLINE_ROUTING_SERVICE__TIMEOUT", "2s".into()),
                    ("TIERLINE_TICKET__WORKER_INTERVAL", "200ms".into()),
                ],
                &options.ticket_env,
            ),
            &args,
        )
        .await?;
        let args = config_args("routing", &options.routing_config)?;
        let router = start_configured(
            "tierline-routing",
            routing_port,
            &with(
                vec![
                    ("TIERLINE_DATABASE__URL", routing_db.url.clone()),
                    ("TIERLINE_REDIS__URL", redis_url()),
                    ("TIERLINE_REDIS__KEY_PREFIX", redis_prefix.clone()),
                    (
                        "TIERLINE_TICKET_SERVICE__ENDPOINT",
                        format!("http://{}", ticket.addr),
                    ),
                    ("TIERLINE_ROUTER__TICK", "100ms".into()),
                ],
                &options.routing_env,
            ),
            &args,
        )
        .await?;

        let addrs = [customer.addr, ticket.addr, router.addr];
        Self::connect(
            addrs,
            redis_prefix,
            Processes::Production {
                customer,
                ticket,
                router,
                databases: [customer_db, ticket_db, routing_db],
            },
            config_dir,
        )
        .await
    }

    /// Connects clients to the services at `addrs` (customer, ticket, routing) and waits until
    /// the router has built its live state.
    async fn connect(
        addrs: [SocketAddr; 3],
        redis_prefix: String,
        processes: Processes,
        config_dir: tempfile::TempDir,
    ) -> Result<Self> {
        let channel = |addr: SocketAddr| async move {
            Ok::<_, anyhow::Error>(
                Channel::from_shared(format!("http://{addr}"))?
                    .connect()
                    .await?,
            )
        };
        let customers =
            tierline_proto::customer::customer_service_client::CustomerServiceClient::new(
                channel(addrs[0]).await?,
            );
        let tickets = tierline_proto::ticket::ticket_service_client::TicketServiceClient::new(
            channel(addrs[1]).await?,
        );
        let router_channel = channel(addrs[2]).await?;
        let mut routing =
            tierline_proto::routing::routing_service_client::RoutingServiceClient::new(
                router_channel.clone(),
            );
        // The router answers UNAVAILABLE until it has built its live state.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match routing
                .get_queue_stats(tierline_proto::routing::GetQueueStatsRequest::default())
                .await
            {
                Ok(_) => break,
                Err(status)
                    if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => bail!("the router did not become ready: {status:?}"),
            }
        }
        Ok(Stack {
            customers,
            tickets,
            routing,
            agents: tierline_proto::routing::agent_service_client::AgentServiceClient::new(
                router_channel.clone(),
            ),
            desktops:
                tierline_proto::routing::agent_desktop_service_client::AgentDesktopServiceClient::new(
                    router_channel,
                ),
            redis_prefix,
            processes,
            _config_dir: config_dir,
        })
    }

    /// Sends SIGTERM to the three processes, fails unless each exits successfully, and drops the
    /// databases. Close the desktop streams first: the router ends them at shutdown, but a
    /// client still reading one keeps the connection busy until it notices.
    pub async fn stop(self) -> Result<()> {
        let Stack {
            customers,
            tickets,
            routing,
            agents,
            desktops,
            processes,
            ..
        } = self;
        drop((customers, tickets, routing, agents, desktops));
        let (customer, ticket, router, databases) = match processes {
            Processes::Production {
                customer,
                ticket,
                router,
                databases,
            } => (customer, ticket, router, databases),
            Processes::Dev { process, _data } => {
                let status = process.terminate().await?;
                if !status.success() {
                    bail!("tierline dev exited with {status} on SIGTERM");
                }
                return Ok(());
            }
        };
        // The ticket service first: its relay calls the router all the time and would log the
        // router's going away as an error.
        let t = ticket.terminate().await;
        let (r, c) = tokio::join!(router.terminate(), customer.terminate());
        let mut problems = Vec::new();
        for (name, exit) in [
            ("tierline-ticket", t),
            ("tierline-routing", r),
            ("tierline-customer", c),
        ] {
            match exit {
                Ok(status) if status.success() => {}
                Ok(status) => problems.push(format!("{name} exited with {status} on SIGTERM")),
                Err(error) => problems.push(format!("{name}: {error:#}")),
            }
        }
        let [a, b, c] = databases;
        let (a, b, c) = tokio::join!(a.drop_now(), b.drop_now(), c.drop_now());
        a.and(b).and(c)?;
        if !problems.is_empty() {
            bail!("unclean stop: {}", problems.join("; "));
        }
        Ok(())
    }
}

/// `n` free local ports, all different.
fn distinct_ports(n: usize) -> Result<Vec<u16>> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let port = free_port()?;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

async fn start_configured(
    binary_name: &str,
    port: u16,
    env: &[(&'static str, String)],
    args: &[std::ffi::OsString],
) -> Result<RunningService> {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    RunningService::start_with_args(binary_name, port, env, &args)
        .await
        .with_context(|| format!("starting {binary_name}"))
}
