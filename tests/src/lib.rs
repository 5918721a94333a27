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
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = Command::new(binary(binary_name)?);
        command
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
