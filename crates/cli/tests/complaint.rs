//! The real `tierline` binary against the real services, started in-process (customer-profile,
//! ticket and routing, each on a fresh database, the router on a Redis key prefix of its own):
//! a complaint walked from the IVR to the agent's desktop to resolution and follow-up.
//!
//! Needs `DATABASE_URL` (a superuser URL; scripts/test sets it) and Redis at
//! `TIERLINE_TEST_REDIS_URL` (default redis://127.0.0.1:6379).

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection, PgPool};
use tierline_proto::common::{IdentityKind, Tier};
use tierline_proto::customer as cpb;
use tierline_proto::customer::customer_service_client::CustomerServiceClient;
use tierline_proto::routing::GetQueueStatsRequest;
use tierline_proto::routing::routing_service_client::RoutingServiceClient;
use tierline_proto::tonic::transport::Channel;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::oneshot;

use support::{Desktop, Finished, field};

/// Stops a service when dropped.
struct Running(Option<oneshot::Sender<()>>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

fn stopper() -> (Running, impl Future<Output = ()> + Send + 'static) {
    let (tx, rx) = oneshot::channel::<()>();
    (Running(Some(tx)), async move {
        let _ = rx.await;
    })
}

async fn database(service: &str) -> PgPool {
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL (run scripts/test)");
    let name = format!("tl_test_cli_{service}_{}", uuid::Uuid::now_v7().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("admin connection");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    PgPool::connect(&format!("{base}/{name}"))
        .await
        .expect("connect")
}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = format!("http://{}", l.local_addr().expect("addr"));
    (l, addr)
}

async fn channel(addr: &str) -> Channel {
    for _ in 0..100 {
        if let Ok(ch) = Channel::from_shared(addr.to_owned())
            .expect("uri")
            .connect()
            .await
        {
            return ch;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} did not come up");
}

/// The three services, and where they listen.
struct World {
    customer: String,
    ticket: String,
    routing: String,
    _running: Vec<Running>,
}

async fn world() -> World {
    let (customer_on, customer) = listener().await;
    let (ticket_on, ticket) = listener().await;
    let (routing_on, routing) = listener().await;
    let customer_pool = database("customer").await;
    tierline_customer::store::MIGRATOR
        .run(&customer_pool)
        .await
        .expect("migrate customer");
    let ticket_pool = database("ticket").await;
    tierline_ticket::store::MIGRATOR
        .run(&ticket_pool)
        .await
        .expect("migrate ticket");
    let routing_pool = database("routing").await;
    tierline_routing::agents::MIGRATOR
        .run(&routing_pool)
        .await
        .expect("migrate routing");

    let mut running = Vec::new();
    let (stop, stopped) = stopper();
    tokio::spawn(tierline_customer::serve_with_pool(
        customer_on,
        tierline_customer::config::Config::default(),
        customer_pool,
        stopped,
    ));
    running.push(stop);

    let mut config = tierline_ticket::config::Config::default();
    config.customer_service.endpoint = customer.clone();
    config.customer_service.timeout = Duration::from_secs(2);
    config.routing_service.endpoint = routing.clone();
    config.routing_service.timeout = Duration::from_secs(2);
    config.ticket.worker_interval = Duration::from_millis(100);
    let (stop, stopped) = stopper();
    tokio::spawn(tierline_ticket::serve_with_pool(
        ticket_on,
        config,
        ticket_pool,
        stopped,
    ));
    running.push(stop);

    let mut config = tierline_routing::config::Config::default();
    config.redis.url = std::env::var("TIERLINE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    config.redis.key_prefix = format!("test:cli:{}:", uuid::Uuid::new_v4());
    config.ticket_service.endpoint = ticket.clone();
    config.router.tick = Duration::from_millis(100);
    let (stop, stopped) = stopper();
    tokio::spawn(tierline_routing::serve_with(
        routing_on,
        config,
        routing_pool,
        Arc::new(tierline_routing::router::SystemClock),
        stopped,
    ));
    running.push(stop);

    // The router answers UNAVAILABLE until it has built its live state.
    let mut stats = RoutingServiceClient::new(channel(&routing).await);
    let mut ready = false;
    for _ in 0..100 {
        if stats
            .get_queue_stats(GetQueueStatsRequest::default())
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the router did not become ready");
    channel(&customer).await;
    channel(&ticket).await;
    World {
        customer,
        ticket,
        routing,
        _running: running,
    }
}

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl World {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tierline"));
        c.args(args)
            .env("TIERLINE_CUSTOMER_ADDR", &self.customer)
            .env("TIERLINE_TICKET_ADDR", &self.ticket)
            .env("TIERLINE_ROUTING_ADDR", &self.routing)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> Run {
        let out = tokio::time::timeout(Duration::from_secs(20), self.command(args).output())
            .await
            .expect("tierline finished in time")
            .expect("tierline ran");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and expects success.
    async fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args).await;
        assert_eq!(
            r.code, 0,
            "tierline {args:?} failed:\n{}\n{}",
            r.stdout, r.stderr
        );
        r.stdout
    }
}

/// Ada Okafor, tier A by hand, holding the number the IVR will see.
async fn known_caller(w: &World) -> String {
    let mut customers = CustomerServiceClient::new(channel(&w.customer).await);
    let created = customers
        .create_customer(cpb::CreateCustomerRequest {
            customer: Some(cpb::Customer {
                display_name: "Ada Okafor".into(),
                ..Default::default()
            }),
            identities: vec![cpb::Identity {
                kind: IdentityKind::Phone as i32,
                value: "020 7946 0018".into(),
                label: "mobile".into(),
                shared: false,
            }],
            idempotency_key: String::new(),
        })
        .await
        .expect("create customer")
        .into_inner();
    customers
        .set_tier_override(cpb::SetTierOverrideRequest {
            customer_id: created.id.clone(),
            tier: Tier::A as i32,
            reason: "long-standing customer".into(),
            expected_version: None,
        })
        .await
        .expect("tier override");
    customers
        .record_interaction(cpb::RecordInteractionRequest {
            customer_id: created.id.clone(),
            interaction: Some(cpb::Interaction {
                channel: tierline_proto::common::Channel::Counter as i32,
                direction: cpb::Direction::Inbound as i32,
                summary: "bought a kettle, asked about the warranty".into(),
                ..Default::default()
            }),
            idempotency_key: String::new(),
        })
        .await
        .expect("earlier contact");
    created.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_complaint_goes_from_the_ivr_to_the_desktop_to_resolution_and_follow_up() {
    let w = world().await;
    let customer_id = known_caller(&w).await;

    // An agent with a voice line in the department that owns product quality.
    let out = w
        .ok(&[
            "agent",
            "upsert",
            "--id",
            "agent-7",
            "--name",
            "Ana Silva",
            "--department",
            "quality_assurance",
            "--capacity",
            "voice=1",
        ])
        .await;
    assert!(out.contains("created agent agent-7"), "{out}");

    // The desktop, with its commands piped in before anything was offered.
    let desktop = Desktop::start(
        w.command(&["agent", "desktop", "agent-7", "--available"]),
        b"accept\nresolve Replaced the kettle under warranty\nquit\n",
    )
    .await;

    // The IVR takes the call: it names the caller, then reads back the ticket.
    let call_id = format!("call-{}", uuid::Uuid::new_v4());
    let call = w
        .ok(&[
            "ivr",
            "call",
            "--from",
            "020 7946 0018",
            "--region",
            "GB",
            "--category",
            "product_quality",
            "--call-id",
            &call_id,
            "the kettle leaks",
        ])
        .await;
    assert!(
        call.contains("caller      Ada Okafor · tier A"),
        "the caller is named: {call}"
    );
    let number = field(&call, "ticket").expect("ticket number").to_owned();
    assert!(number.starts_with("T-"), "{call}");
    assert_eq!(field(&call, "department"), Some("quality_assurance"));
    assert_eq!(field(&call, "tier"), Some("A"));
    assert_eq!(field(&call, "call id"), Some(call_id.as_str()));

    // The desktop is offered it, accepts, resolves, and quits with status 0.
    let Finished {
        status,
        shown,
        errors,
    } = desktop.finish().await;
    assert_eq!(status.code(), Some(0), "desktop:\n{shown}\n{errors}");
    assert!(
        shown.contains(&format!("offer     {number}  Product quality")),
        "the offer is shown: {shown}"
    );
    assert!(
        shown.contains("customer Ada Okafor · tier A"),
        "with the customer: {shown}"
    );
    assert!(
        shown.contains("profile   Ada Okafor · tier A"),
        "and their profile: {shown}"
    );
    assert!(
        shown.contains("timeline  ") && shown.contains("bought a kettle"),
        "and their timeline: {shown}"
    );
    assert!(
        shown.contains(&format!("accepted  assigned {number} to agent-7")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "resolved  {number} RESOLVED by agent-7: Replaced the kettle under warranty"
        )),
        "{shown}"
    );
    assert!(errors.contains("signed out agent-7"), "{errors}");

    // The ticket service has it RESOLVED, by the agent (the actor travelled in metadata).
    let got = w.ok(&["ticket", "get", &number, "--history"]).await;
    assert_eq!(
        field(&got, "state").map(|s| s.starts_with("RESOLVED")),
        Some(true),
        "{got}"
    );
    assert!(got.contains("agent:agent-7"), "{got}");

    // --json gives the reply message itself.
    let json: serde_json::Value =
        serde_json::from_str(&w.ok(&["--json", "ticket", "get", &number]).await)
            .expect("ticket get --json parses");
    assert_eq!(json["state"], "TICKET_STATE_RESOLVED");
    assert_eq!(json["customer_id"], customer_id.as_str());
    assert_eq!(json["assigned_agent_id"], "agent-7");
    // Retrying the call with its id returns the same ticket.
    let replay: serde_json::Value = serde_json::from_str(
        &w.ok(&[
            "ivr",
            "call",
            "--json",
            "--from",
            "020 7946 0018",
            "--region",
            "GB",
            "--category",
            "product_quality",
            "--call-id",
            &call_id,
            "the kettle leaks",
        ])
        .await,
    )
    .expect("ivr call --json parses");
    assert_eq!(replay["reply"]["replayed"], true);
    assert_eq!(replay["reply"]["ticket"]["number"], number.as_str());
    assert_eq!(replay["callers"][0]["display_name"], "Ada Okafor");

    // A bad follow-up fails with status 1 and names the field.
    let bad = w
        .run(&[
            "ticket",
            "follow-up",
            &number,
            "--agent",
            "agent-9",
            "--expected",
            "0",
            "--perceived",
            "5",
        ])
        .await;
    assert_eq!(bad.code, 1, "{}\n{}", bad.stdout, bad.stderr);
    assert!(
        bad.stderr.starts_with("error: INVALID_ARGUMENT: "),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("\n  expected: "), "{}", bad.stderr);
    // With --json the error is a document too.
    let bad = w
        .run(&[
            "--json",
            "ticket",
            "follow-up",
            &number,
            "--agent",
            "agent-9",
            "--expected",
            "0",
            "--perceived",
            "5",
        ])
        .await;
    let err: serde_json::Value = serde_json::from_str(&bad.stderr).expect("error parses");
    assert_eq!(err["error"]["field_violations"][0]["field"], "expected");
    // The handling agent may not follow up their own ticket; another agent may.
    let own = w
        .run(&[
            "ticket",
            "follow-up",
            &number,
            "--agent",
            "agent-7",
            "--expected",
            "5",
            "--perceived",
            "6",
        ])
        .await;
    assert_eq!(own.code, 1, "{}", own.stderr);
    assert!(own.stderr.contains("FAILED_PRECONDITION"), "{}", own.stderr);
    let followed = w
        .ok(&[
            "ticket",
            "follow-up",
            &number,
            "--agent",
            "agent-9",
            "--expected",
            "5",
            "--perceived",
            "6",
            "--close",
        ])
        .await;
    assert!(followed.contains("satisfaction 1.20"), "{followed}");

    // Look-ups, lists, statistics and explanations answer.
    let lookup = w
        .ok(&[
            "customer",
            "lookup",
            "--phone",
            "020 7946 0018",
            "--region",
            "GB",
        ])
        .await;
    assert!(lookup.contains("Ada Okafor"), "{lookup}");
    let listed = w.ok(&["ticket", "list", "--agent", "agent-7"]).await;
    assert!(listed.contains(&number), "{listed}");
    let stats = w.ok(&["queue", "stats"]).await;
    assert!(stats.contains("quality_assurance"), "{stats}");
    let why = w.ok(&["explain", "agent", "agent-7"]).await;
    assert!(why.contains("receiving offers: no"), "{why}");
    let why = w.ok(&["explain", "ticket", &number]).await;
    assert!(why.contains("CLOSED"), "{why}");
    let agents = w.ok(&["agent", "list"]).await;
    assert!(agents.contains("agent-7"), "{agents}");

    // A usage error is status 2, an unreachable service 3.
    assert_eq!(w.run(&["ivr", "call", "no caller given"]).await.code, 2);
    let down = w
        .run(&["--routing-addr", "http://127.0.0.1:1", "queue", "stats"])
        .await;
    assert_eq!(down.code, 3, "{}", down.stderr);
    assert!(
        down.stderr.contains("cannot reach the routing service"),
        "{}",
        down.stderr
    );
}
