//! The router end to end, through its gRPC contract: real routing services (two of them, sharing
//! one Redis) and a real ticket service in-process, each on a database of its own, with agent
//! desktops on OpenSession streams. The customer service is left out: intake accepts the
//! complaints with the customer to be resolved later, which is part of the contract.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tierline_proto::common::{Channel, IdentityKind, IdentityRef};
use tierline_proto::routing as rpb;
use tierline_proto::routing::agent_desktop_service_client::AgentDesktopServiceClient;
use tierline_proto::routing::agent_service_client::AgentServiceClient;
use tierline_proto::ticket as tpb;
use tierline_proto::ticket::ticket_service_client::TicketServiceClient;
use tierline_proto::tonic::transport::Channel as GrpcChannel;
use tierline_routing::router::{Clock, ManualClock, SystemClock};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn database(prefix: &str) -> PgPool {
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL (run scripts/test)");
    let name = format!("tl_test_{prefix}_{}", uuid::Uuid::now_v7().simple());
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

fn redis_url() -> String {
    std::env::var("TIERLINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn start_router(
    pool: PgPool,
    on: TcpListener,
    ticket_addr: std::net::SocketAddr,
    prefix: &str,
    clock: Arc<dyn Clock>,
    resume_grace: Duration,
) -> Running {
    let addr = on.local_addr().expect("addr");
    let mut config = tierline_routing::config::Config::default();
    config.redis.url = redis_url();
    config.redis.key_prefix = prefix.to_owned();
    config.ticket_service.endpoint = format!("http://{ticket_addr}");
    config.router.tick = Duration::from_millis(100);
    config.router.resume_grace = resume_grace;
    config.router.heartbeat_interval = config.router.heartbeat_interval.min(resume_grace / 2);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(tierline_routing::serve_with(
        on,
        config,
        pool,
        clock,
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        addr,
        stop: Some(stop),
    }
}

async fn start_ticket_service(
    pool: PgPool,
    on: TcpListener,
    router_addr: std::net::SocketAddr,
) -> Running {
    let addr = on.local_addr().expect("addr");
    let mut config = tierline_ticket::config::Config::default();
    // Nothing listens there: intake carries on without the customer service.
    config.customer_service.endpoint = "http://127.0.0.1:1".into();
    config.customer_service.timeout = Duration::from_millis(100);
    config.routing_service.endpoint = format!("http://{router_addr}");
    config.ticket.worker_interval = Duration::from_millis(100);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(tierline_ticket::serve_with_pool(on, config, pool, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
    }
}

async fn channel(addr: std::net::SocketAddr) -> GrpcChannel {
    for _ in 0..100 {
        if let Ok(ch) = GrpcChannel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
        {
            return ch;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {addr} did not come up");
}

struct World {
    tickets: TicketServiceClient<GrpcChannel>,
    routers: Vec<GrpcChannel>,
    /// The shared Redis key prefix.
    prefix: String,
    _running: Vec<Running>,
}

/// A ticket service and `routers` routing services sharing one Redis prefix and one agent
/// database, on the system clock.
async fn world(routers: usize) -> World {
    world_with_clock(routers, Arc::new(SystemClock)).await
}

/// As [`world`], the routers on `clock`.
async fn world_with_clock(routers: usize, clock: Arc<dyn Clock>) -> World {
    // Tests move manual clocks by minutes at once; sessions must outlive such jumps (they are
    // renewed in real time).
    world_with(routers, clock, Duration::from_secs(600)).await
}

/// As [`world`], the routers on `clock`, sessions with `resume_grace`.
async fn world_with(routers: usize, clock: Arc<dyn Clock>, resume_grace: Duration) -> World {
    let ticket_on = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ticket_addr = ticket_on.local_addr().expect("addr");
    let router_ons: Vec<TcpListener> =
        futures::future::join_all((0..routers).map(|_| TcpListener::bind("127.0.0.1:0")))
            .await
            .into_iter()
            .map(|l| l.expect("bind"))
            .collect();
    let first_router = router_ons[0].local_addr().expect("addr");
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let agents_pool = database("routing").await;
    tierline_routing::agents::MIGRATOR
        .run(&agents_pool)
        .await
        .expect("migrate");
    let ticket_pool = database("ticket").await;
    tierline_ticket::store::MIGRATOR
        .run(&ticket_pool)
        .await
        .expect("migrate");
    let mut running = Vec::new();
    let mut channels = Vec::new();
    for on in router_ons {
        let r = start_router(
            agents_pool.clone(),
            on,
            ticket_addr,
            &prefix,
            clock.clone(),
            resume_grace,
        )
        .await;
        channels.push(channel(r.addr).await);
        running.push(r);
    }
    let t = start_ticket_service(ticket_pool, ticket_on, first_router).await;
    let tickets = TicketServiceClient::new(channel(t.addr).await);
    running.push(t);
    World {
        tickets,
        routers: channels,
        prefix,
        _running: running,
    }
}

async fn upsert_agent(ch: GrpcChannel, id: &str, department: &str, web_capacity: i32) {
    AgentServiceClient::new(ch)
        .upsert_agent(rpb::UpsertAgentRequest {
            agent: Some(rpb::Agent {
                id: id.into(),
                display_name: format!("Agent {id}"),
                departments: vec![department.into()],
                capacities: vec![rpb::ChannelCapacity {
                    channel: Channel::Web as i32,
                    max_active_tickets: web_capacity,
                }],
                ..Default::default()
            }),
            update_mask: None,
            expected_version: None,
        })
        .await
        .expect("upsert agent");
}

fn complaint(key: &str) -> tpb::CreateTicketRequest {
    tpb::CreateTicketRequest {
        idempotency_key: key.into(),
        customer: Some(tpb::create_ticket_request::Customer::CallerIdentity(
            IdentityRef {
                kind: IdentityKind::Email as i32,
                value: format!("{key}@example.com"),
                region_code: String::new(),
            },
        )),
        channel: Channel::Web as i32,
        category: "billing".into(),
        description: "charged twice".into(),
        ..Default::default()
    }
}

/// What the desktops saw and did.
#[derive(Debug, Default)]
struct Log {
    /// (agent, ticket) of every offer received.
    offers: Vec<(String, String)>,
    /// (agent, ticket) of every declined offer.
    declined: Vec<(String, String)>,
    /// Ticket → agents whose AcceptOffer succeeded.
    accepted: BTreeMap<String, Vec<String>>,
}

/// A desktop: opens its session AVAILABLE and answers every offer, declining the tickets
/// `decline` picks and accepting the rest.
fn desktop(
    ch: GrpcChannel,
    agent: String,
    log: Arc<Mutex<Log>>,
    decline: impl Fn(&str, &str) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = AgentDesktopServiceClient::new(ch);
        // UNAVAILABLE while a fresh router builds its live state: retry, as desktops do.
        let mut stream = loop {
            match client
                .open_session(rpb::OpenSessionRequest {
                    agent_id: agent.clone(),
                    session_id: String::new(),
                    initial_presence: rpb::AgentPresenceState::Available as i32,
                })
                .await
            {
                Ok(stream) => break stream.into_inner(),
                Err(status) if status.code() == tierline_proto::tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => panic!("open session: {status:?}"),
            }
        };
        while let Some(Ok(message)) = stream.next().await {
            let Some(rpb::open_session_response::Event::Offer(offer)) = message.event else {
                continue;
            };
            log.lock()
                .expect("log")
                .offers
                .push((agent.clone(), offer.ticket_id.clone()));
            if decline(&agent, &offer.ticket_id) {
                client
                    .decline_offer(rpb::DeclineOfferRequest {
                        agent_id: agent.clone(),
                        reservation_id: offer.reservation_id.clone(),
                        reason: rpb::DeclineReason::NotReady as i32,
                        note: String::new(),
                    })
                    .await
                    .expect("decline");
                log.lock()
                    .expect("log")
                    .declined
                    .push((agent.clone(), offer.ticket_id.clone()));
            } else if let Ok(a) = client
                .accept_offer(rpb::AcceptOfferRequest {
                    agent_id: agent.clone(),
                    reservation_id: offer.reservation_id.clone(),
                })
                .await
            {
                let a = a.into_inner();
                log.lock()
                    .expect("log")
                    .accepted
                    .entry(a.ticket_id)
                    .or_default()
                    .push(agent.clone());
            }
        }
    })
}

async fn assigned_tickets(tickets: &mut TicketServiceClient<GrpcChannel>) -> Vec<tpb::Ticket> {
    tickets
        .list_tickets(tpb::ListTicketsRequest {
            page_size: 500,
            states: vec![tpb::TicketState::Assigned as i32],
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .tickets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tickets_from_intake_are_assigned_exactly_once_across_two_routers() {
    let mut w = world(2).await;
    let agents: Vec<String> = (0..6).map(|i| format!("agent-{i}")).collect();
    for a in &agents {
        upsert_agent(w.routers[0].clone(), a, "customer_service", 4).await;
    }
    let log = Arc::new(Mutex::new(Log::default()));
    // Each agent declines about a third of what it is offered, by a fixed rule, so every ticket
    // is still taken by someone.
    let decline = |agent: &str, ticket: &str| {
        let h = agent
            .bytes()
            .chain(ticket.bytes())
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        h % 3 == 0
    };
    let desktops: Vec<_> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            desktop(
                w.routers[i % w.routers.len()].clone(),
                a.clone(),
                log.clone(),
                decline,
            )
        })
        .collect();
    // Twenty complaints at once, each sent twice (a retried call): twenty tickets.
    let creates = (0..20).flat_map(|i| {
        let client = w.tickets.clone();
        let key = format!("call-{i}");
        [0, 1].map(move |_| {
            let mut client = client.clone();
            let key = key.clone();
            async move { client.create_ticket(complaint(&key)).await }
        })
    });
    let created: BTreeSet<String> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| r.expect("create").into_inner().ticket.expect("ticket").id)
        .collect();
    assert_eq!(created.len(), 20);
    let mut assigned = Vec::new();
    for _ in 0..300 {
        assigned = assigned_tickets(&mut w.tickets).await;
        if assigned.len() == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(assigned.len(), 20, "every ticket assigned");
    // Let late stream events settle, then check the log against the system of record.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = log.lock().expect("log");
    for t in &assigned {
        let acceptors = log.accepted.get(&t.id).cloned().unwrap_or_default();
        assert_eq!(
            acceptors.len(),
            1,
            "ticket {} accepted by {acceptors:?}",
            t.id
        );
        assert_eq!(
            acceptors[0], t.assigned_agent_id,
            "the ticket service agrees"
        );
    }
    // A declined ticket is never offered to the same agent again.
    for (agent, ticket) in &log.declined {
        let times = log
            .offers
            .iter()
            .filter(|(a, t)| a == agent && t == ticket)
            .count();
        assert_eq!(
            times, 1,
            "{ticket} offered to {agent} again after a decline"
        );
    }
    assert!(!log.declined.is_empty(), "the rule declined some offers");
    // The load is spread: 20 tickets over 6 equal agents, at most 4 each.
    let mut per_agent: BTreeMap<&str, usize> = BTreeMap::new();
    for acceptors in log.accepted.values() {
        *per_agent.entry(acceptors[0].as_str()).or_default() += 1;
    }
    assert!(per_agent.values().all(|n| *n <= 4), "{per_agent:?}");
    for d in desktops {
        d.abort();
    }
}

/// The next event on a session stream of the given kind, skipping others (heartbeats, presence,
/// assignments), within `within`.
async fn next_event<T>(
    stream: &mut tierline_proto::tonic::Streaming<rpb::OpenSessionResponse>,
    within: Duration,
    pick: impl Fn(rpb::open_session_response::Event) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(within, async {
        while let Some(Ok(message)) = stream.next().await {
            if let Some(found) = message.event.and_then(&pick) {
                return Some(found);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

fn offer_of(e: rpb::open_session_response::Event) -> Option<rpb::Offer> {
    match e {
        rpb::open_session_response::Event::Offer(o) => Some(o),
        _ => None,
    }
}

fn cancelled_of(e: rpb::open_session_response::Event) -> Option<rpb::OfferCancelled> {
    match e {
        rpb::open_session_response::Event::OfferCancelled(c) => Some(c),
        _ => None,
    }
}

async fn open(
    ch: GrpcChannel,
    agent: &str,
    session_id: &str,
) -> (
    String,
    bool,
    tierline_proto::tonic::Streaming<rpb::OpenSessionResponse>,
) {
    let mut client = AgentDesktopServiceClient::new(ch);
    loop {
        match client
            .open_session(rpb::OpenSessionRequest {
                agent_id: agent.into(),
                session_id: session_id.into(),
                initial_presence: rpb::AgentPresenceState::Available as i32,
            })
            .await
        {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                let started = next_event(&mut stream, Duration::from_secs(5), |e| match e {
                    rpb::open_session_response::Event::SessionStarted(s) => Some(s),
                    _ => None,
                })
                .await
                .expect("SessionStarted first");
                return (started.session_id, started.resumed, stream);
            }
            Err(status) if status.code() == tierline_proto::tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("open session: {status:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unanswered_offer_expires_to_the_next_agent_and_a_reconnect_resumes_the_session() {
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let mut w = world_with_clock(1, Arc::new(clock.clone())).await;
    upsert_agent(w.routers[0].clone(), "ana", "customer_service", 2).await;
    upsert_agent(w.routers[0].clone(), "bo", "customer_service", 2).await;
    let (_, _, mut ana) = open(w.routers[0].clone(), "ana", "").await;
    w.tickets
        .create_ticket(complaint("expiry-1"))
        .await
        .expect("create");
    let first = next_event(&mut ana, Duration::from_secs(10), offer_of)
        .await
        .expect("offered to the only agent");
    // Bo signs in; the offer stays with Ana until it expires.
    let (bo_session, resumed, mut bo) = open(w.routers[0].clone(), "bo", "").await;
    assert!(!resumed);
    clock.advance(Duration::from_secs(21));
    let cancelled = next_event(&mut ana, Duration::from_secs(10), cancelled_of)
        .await
        .expect("Ana told the offer expired");
    assert_eq!(cancelled.reservation_id, first.reservation_id);
    assert_eq!(cancelled.reason, rpb::OfferCancelReason::Expired as i32);
    let second = next_event(&mut bo, Duration::from_secs(10), offer_of)
        .await
        .expect("then offered to Bo");
    assert_eq!(second.ticket_id, first.ticket_id);
    // Accepting Ana's expired offer is refused.
    let late = AgentDesktopServiceClient::new(w.routers[0].clone())
        .accept_offer(rpb::AcceptOfferRequest {
            agent_id: "ana".into(),
            reservation_id: first.reservation_id.clone(),
        })
        .await
        .expect_err("expired");
    assert_eq!(late.code(), tierline_proto::tonic::Code::FailedPrecondition);
    // Bo's desktop drops and comes back within the grace period: same session, same offer.
    drop(bo);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (again, resumed, mut bo) = open(w.routers[0].clone(), "bo", &bo_session).await;
    assert_eq!(again, bo_session);
    assert!(resumed, "resumed within the grace period");
    let resent = next_event(&mut bo, Duration::from_secs(10), offer_of)
        .await
        .expect("the pending offer is sent again");
    assert_eq!(resent.reservation_id, second.reservation_id);
    let assignment = AgentDesktopServiceClient::new(w.routers[0].clone())
        .accept_offer(rpb::AcceptOfferRequest {
            agent_id: "bo".into(),
            reservation_id: second.reservation_id.clone(),
        })
        .await
        .expect("accept")
        .into_inner();
    assert_eq!(assignment.ticket_id, first.ticket_id);
    let ticket = w
        .tickets
        .get_ticket(tpb::GetTicketRequest {
            key: Some(tpb::get_ticket_request::Key::TicketId(
                first.ticket_id.clone(),
            )),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(ticket.state, tpb::TicketState::Assigned as i32);
    assert_eq!(ticket.assigned_agent_id, "bo");
}

/// The live status of `agent`, as GetAgent reports it.
async fn agent_status(ch: GrpcChannel, agent: &str) -> rpb::AgentStatus {
    AgentServiceClient::new(ch)
        .get_agent(rpb::GetAgentRequest {
            agent_id: agent.into(),
        })
        .await
        .expect("get agent")
        .into_inner()
        .status
        .expect("status")
}

/// The presence and connection of `agent`, as GetAgent reports them.
async fn presence(ch: GrpcChannel, agent: &str) -> (rpb::AgentPresenceState, bool) {
    let status = agent_status(ch, agent).await;
    let state = status
        .presence
        .map_or(rpb::AgentPresenceState::Unspecified, |p| p.state());
    (state, status.connected)
}

/// The router renews the leases of the sessions it holds, so a connected desktop outlives
/// many lease lengths; a desktop that left is signed out once its resume grace runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connected_desktop_outlives_its_lease_and_a_gone_one_is_signed_out_after_the_grace() {
    // Long enough that a loaded machine still sees the stream end well within it.
    let grace = Duration::from_secs(5);
    let w = world_with(1, Arc::new(SystemClock), grace).await;
    let router = w.routers[0].clone();
    upsert_agent(router.clone(), "ana", "customer_service", 2).await;
    upsert_agent(router.clone(), "bo", "customer_service", 2).await;
    let (_, _, _ana) = open(router.clone(), "ana", "").await;
    let (_, _, bo) = open(router.clone(), "bo", "").await;
    drop(bo);
    // The router sees the stream end a moment later (sooner than the grace).
    let noticed_by = tokio::time::Instant::now() + grace * 4 / 5;
    let mut seen = presence(router.clone(), "bo").await;
    while seen.1 && tokio::time::Instant::now() < noticed_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = presence(router.clone(), "bo").await;
    }
    assert_eq!(
        seen,
        (rpb::AgentPresenceState::Available, false),
        "within the grace, bo's session waits to be resumed"
    );
    // Two lease lengths.
    tokio::time::sleep(grace * 2).await;
    assert_eq!(
        presence(router.clone(), "ana").await,
        (rpb::AgentPresenceState::Available, true),
        "renewed by the router"
    );
    assert_eq!(
        presence(router.clone(), "bo").await,
        (rpb::AgentPresenceState::Offline, false),
        "signed out after the grace"
    );
}

/// Deletes every key of the router's state: what a Redis flush or failover without
/// persistence does to it.
async fn lose_live_state(prefix: &str) {
    use redis::AsyncCommands as _;
    let client = redis::Client::open(redis_url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = {
        let mut iter = conn
            .scan_match::<_, String>(format!("{prefix}*"))
            .await
            .expect("scan");
        let mut keys = Vec::new();
        while let Some(key) = iter.next().await {
            keys.push(key.expect("key"));
        }
        keys
    };
    assert!(!keys.is_empty());
    let _: () = conn.del(keys).await.expect("del");
}

async fn ticket(tickets: &mut TicketServiceClient<GrpcChannel>, id: &str) -> tpb::Ticket {
    tickets
        .get_ticket(tpb::GetTicketRequest {
            key: Some(tpb::get_ticket_request::Key::TicketId(id.into())),
        })
        .await
        .expect("get")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_live_state_is_rebuilt_from_the_ticket_service_without_losing_a_ticket() {
    let mut w = world(1).await;
    upsert_agent(w.routers[0].clone(), "ana", "customer_service", 1).await;
    upsert_agent(w.routers[0].clone(), "bo", "customer_service", 1).await;
    let (_, _, mut ana) = open(w.routers[0].clone(), "ana", "").await;
    let desk = AgentDesktopServiceClient::new(w.routers[0].clone());
    let t1 = w
        .tickets
        .create_ticket(complaint("flush-1"))
        .await
        .expect("create")
        .into_inner()
        .ticket
        .expect("ticket")
        .id;
    let offer = next_event(&mut ana, Duration::from_secs(10), offer_of)
        .await
        .expect("offer");
    assert_eq!(offer.ticket_id, t1);
    desk.clone()
        .accept_offer(rpb::AcceptOfferRequest {
            agent_id: "ana".into(),
            reservation_id: offer.reservation_id,
        })
        .await
        .expect("accept");
    // Ana is full; the second ticket waits.
    let t2 = w
        .tickets
        .create_ticket(complaint("flush-2"))
        .await
        .expect("create")
        .into_inner()
        .ticket
        .expect("ticket")
        .id;
    let mut queued = false;
    for _ in 0..100 {
        if ticket(&mut w.tickets, &t2).await.state == tpb::TicketState::Queued as i32 {
            queued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        queued,
        "the second ticket reached the router: {:?}",
        ticket(&mut w.tickets, &t2).await
    );

    lose_live_state(&w.prefix).await;

    // Ana's open desktop re-registers; the rebuild gives her back her ticket's load, so the
    // waiting ticket is not offered to her; Bo signs in and gets it.
    assert!(
        next_event(&mut ana, Duration::from_secs(2), offer_of)
            .await
            .is_none(),
        "no offer to an agent at capacity after the rebuild"
    );
    let (_, _, mut bo) = open(w.routers[0].clone(), "bo", "").await;
    let offer = next_event(&mut bo, Duration::from_secs(10), offer_of)
        .await
        .expect("the waiting ticket survived the loss");
    assert_eq!(offer.ticket_id, t2);
    desk.clone()
        .accept_offer(rpb::AcceptOfferRequest {
            agent_id: "bo".into(),
            reservation_id: offer.reservation_id,
        })
        .await
        .expect("accept");
    assert_eq!(ticket(&mut w.tickets, &t1).await.assigned_agent_id, "ana");
    assert_eq!(ticket(&mut w.tickets, &t2).await.assigned_agent_id, "bo");
    let status = agent_status(w.routers[0].clone(), "ana").await;
    assert!(status.connected, "the open desktop re-registered");
    let web = status
        .loads
        .iter()
        .find(|l| l.channel == Channel::Web as i32)
        .expect("web load");
    assert_eq!(web.active_tickets, 1, "her ticket counts again");
}

/// A key-account ticket as the ticket service would sync it (the customer service, which knows
/// key accounts, is not part of these tests).
fn key_account_ticket(id: &str, enqueued: OffsetDateTime, manager: &str) -> rpb::RoutingTicket {
    let ts = |t: OffsetDateTime| tierline_proto::prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: 0,
    };
    rpb::RoutingTicket {
        ticket_id: id.into(),
        ticket_number: "T-0000-0001".into(),
        ticket_version: 1,
        state: rpb::TicketRoutingState::Waiting as i32,
        department: "customer_service".into(),
        channel: Channel::Web as i32,
        tier: tierline_proto::common::Tier::A as i32,
        key_account: true,
        account_manager_id: manager.into(),
        enqueue_time: Some(ts(enqueued)),
        pickup_due_time: Some(ts(enqueued + Duration::from_secs(900))),
        ..Default::default()
    }
}

async fn upsert_team_agent(ch: GrpcChannel, id: &str, department: &str, team: &str) {
    AgentServiceClient::new(ch)
        .upsert_agent(rpb::UpsertAgentRequest {
            agent: Some(rpb::Agent {
                id: id.into(),
                display_name: format!("Agent {id}"),
                departments: vec![department.into()],
                team_id: team.into(),
                capacities: vec![rpb::ChannelCapacity {
                    channel: Channel::Web as i32,
                    max_active_tickets: 2,
                }],
                ..Default::default()
            }),
            update_mask: None,
            expected_version: None,
        })
        .await
        .expect("upsert agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_account_ticket_climbs_its_steps_on_the_routers_clock() {
    let start = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("valid");
    let clock = ManualClock::new(start);
    let w = world_with_clock(1, Arc::new(clock.clone())).await;
    let r = w.routers[0].clone();
    // The account manager serves another department; the team member too; the department agent
    // serves customer_service.
    upsert_team_agent(r.clone(), "manager", "sales", "").await;
    upsert_team_agent(r.clone(), "teammate", "sales", "key-accounts").await;
    upsert_team_agent(r.clone(), "generalist", "customer_service", "").await;
    let (_, _, mut manager) = open(r.clone(), "manager", "").await;
    let (_, _, mut teammate) = open(r.clone(), "teammate", "").await;
    let (_, _, mut generalist) = open(r.clone(), "generalist", "").await;
    let id = uuid::Uuid::now_v7().to_string();
    let mut routing =
        tierline_proto::routing::routing_service_client::RoutingServiceClient::new(r.clone());
    routing
        .sync_ticket(rpb::SyncTicketRequest {
            ticket: Some(key_account_ticket(&id, start, "manager")),
        })
        .await
        .expect("sync");
    let desk = AgentDesktopServiceClient::new(r.clone());
    // Step 1 (0 s): the account manager alone.
    let offer = next_event(&mut manager, Duration::from_secs(5), offer_of)
        .await
        .expect("offered to the account manager first");
    assert_eq!(offer.step_kind, rpb::RoutingStepKind::AccountManager as i32);
    desk.clone()
        .decline_offer(rpb::DeclineOfferRequest {
            agent_id: "manager".into(),
            reservation_id: offer.reservation_id,
            reason: 0,
            note: String::new(),
        })
        .await
        .expect("decline");
    // Declined, but the team step has not started: nobody else is offered it yet.
    assert!(
        next_event(&mut teammate, Duration::from_millis(600), offer_of)
            .await
            .is_none()
    );
    // Step 2 (60 s): the key-account team, from any department.
    clock.advance(Duration::from_secs(61));
    let offer = next_event(&mut teammate, Duration::from_secs(5), offer_of)
        .await
        .expect("the team's turn");
    assert_eq!(offer.step_kind, rpb::RoutingStepKind::Team as i32);
    desk.clone()
        .decline_offer(rpb::DeclineOfferRequest {
            agent_id: "teammate".into(),
            reservation_id: offer.reservation_id,
            reason: 0,
            note: String::new(),
        })
        .await
        .expect("decline");
    assert!(
        next_event(&mut generalist, Duration::from_millis(600), offer_of)
            .await
            .is_none(),
        "the department waits for its step"
    );
    // Step 3 (180 s): the whole department.
    clock.advance(Duration::from_secs(120));
    let offer = next_event(&mut generalist, Duration::from_secs(5), offer_of)
        .await
        .expect("the department's turn");
    assert_eq!(offer.step_kind, rpb::RoutingStepKind::Department as i32);
    assert_eq!(offer.ticket_id, id);
}

fn waiting_ticket(
    department: &str,
    tier: tierline_proto::common::Tier,
    due_in: Duration,
) -> rpb::RoutingTicket {
    let now = OffsetDateTime::now_utc();
    let ts = |t: OffsetDateTime| tierline_proto::prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: 0,
    };
    rpb::RoutingTicket {
        ticket_id: uuid::Uuid::now_v7().to_string(),
        ticket_number: "T-0000-0002".into(),
        ticket_version: 1,
        state: rpb::TicketRoutingState::Waiting as i32,
        department: department.into(),
        channel: Channel::Web as i32,
        tier: tier as i32,
        enqueue_time: Some(ts(now)),
        pickup_due_time: Some(ts(now + due_in)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_of_two_departments_is_offered_the_best_ranked_ticket_across_both() {
    let w = world(1).await;
    let r = w.routers[0].clone();
    AgentServiceClient::new(r.clone())
        .upsert_agent(rpb::UpsertAgentRequest {
            agent: Some(rpb::Agent {
                id: "both".into(),
                display_name: "Both".into(),
                // "billing" sorts first: a router dispatching queue by queue would offer its
                // ticket first.
                departments: vec!["billing".into(), "sales".into()],
                capacities: vec![rpb::ChannelCapacity {
                    channel: Channel::Web as i32,
                    max_active_tickets: 1,
                }],
                ..Default::default()
            }),
            update_mask: None,
            expected_version: None,
        })
        .await
        .expect("upsert");
    let mut routing =
        tierline_proto::routing::routing_service_client::RoutingServiceClient::new(r.clone());
    let later = waiting_ticket(
        "billing",
        tierline_proto::common::Tier::C,
        Duration::from_secs(4 * 3600),
    );
    let sooner = waiting_ticket(
        "sales",
        tierline_proto::common::Tier::A,
        Duration::from_secs(900),
    );
    for t in [&later, &sooner] {
        loop {
            match routing
                .sync_ticket(rpb::SyncTicketRequest {
                    ticket: Some(t.clone()),
                })
                .await
            {
                Ok(_) => break,
                Err(s) if s.code() == tierline_proto::tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => panic!("sync: {s:?}"),
            }
        }
    }
    let (_, _, mut stream) = open(r.clone(), "both", "").await;
    let offer = next_event(&mut stream, Duration::from_secs(5), offer_of)
        .await
        .expect("an offer");
    assert_eq!(
        offer.ticket_id, sooner.ticket_id,
        "the earlier due ticket, across queues"
    );
    assert_eq!(offer.department, "sales");
}

fn reason(status: &tierline_proto::tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

fn violated_fields(status: &tierline_proto::tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_calls_get_the_contracts_errors() {
    use tierline_proto::tonic::Code;
    let mut w = world(1).await;
    let r = w.routers[0].clone();
    upsert_agent(r.clone(), "ana", "customer_service", 1).await;
    upsert_agent(r.clone(), "bo", "customer_service", 1).await;
    let (_, _, mut ana) = open(r.clone(), "ana", "").await;
    w.tickets
        .create_ticket(complaint("errors-1"))
        .await
        .expect("create");
    let offer = next_event(&mut ana, Duration::from_secs(10), offer_of)
        .await
        .expect("offer");
    let mut desk = AgentDesktopServiceClient::new(r.clone());
    let mut agents = AgentServiceClient::new(r.clone());

    let e = agents
        .get_agent(rpb::GetAgentRequest {
            agent_id: "nobody".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    let e = desk
        .open_session(rpb::OpenSessionRequest {
            agent_id: "nobody".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    let e = desk
        .accept_offer(rpb::AcceptOfferRequest {
            agent_id: "bo".into(),
            reservation_id: offer.reservation_id.clone(),
        })
        .await
        .expect_err("not bo's");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "OFFER_NOT_YOURS")
    );
    {
        use tonic_types::StatusExt as _;
        assert_eq!(
            e.get_error_details().error_info().map(|i| i.domain.clone()),
            Some("tierline.routing".to_owned()),
            "the reason belongs to the routing service's domain"
        );
    }
    let e = desk
        .accept_offer(rpb::AcceptOfferRequest {
            agent_id: "ana".into(),
            reservation_id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .expect_err("unknown reservation");
    assert_eq!(e.code(), Code::NotFound);
    let e = desk
        .accept_offer(rpb::AcceptOfferRequest {
            agent_id: "ana has spaces".into(),
            reservation_id: "x".into(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), ["agent_id"]);
    let e = desk
        .set_presence(rpb::SetPresenceRequest {
            agent_id: "ana".into(),
            state: rpb::AgentPresenceState::Away as i32,
            ..Default::default()
        })
        .await
        .expect_err("away needs a reason");
    assert_eq!(violated_fields(&e), ["away_reason"]);
    let e = desk
        .set_presence(rpb::SetPresenceRequest {
            agent_id: "bo".into(),
            state: rpb::AgentPresenceState::Available as i32,
            ..Default::default()
        })
        .await
        .expect_err("no desktop");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "NO_SESSION")
    );
    let e = agents
        .upsert_agent(rpb::UpsertAgentRequest {
            agent: Some(rpb::Agent {
                id: "ana".into(),
                display_name: "Ana".into(),
                ..Default::default()
            }),
            update_mask: None,
            expected_version: Some(99),
        })
        .await
        .expect_err("stale");
    assert_eq!(e.code(), Code::Aborted);
    // Going away withdraws the pending offer, which the desktop hears about.
    desk.set_presence(rpb::SetPresenceRequest {
        agent_id: "ana".into(),
        state: rpb::AgentPresenceState::Away as i32,
        away_reason: rpb::AwayReason::Break as i32,
        note: String::new(),
    })
    .await
    .expect("away");
    let cancelled = next_event(&mut ana, Duration::from_secs(5), cancelled_of)
        .await
        .expect("withdrawn");
    assert_eq!(
        cancelled.reason,
        rpb::OfferCancelReason::PresenceChanged as i32
    );
    let e = desk
        .accept_offer(rpb::AcceptOfferRequest {
            agent_id: "ana".into(),
            reservation_id: offer.reservation_id.clone(),
        })
        .await
        .expect_err("withdrawn");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "OFFER_NOT_PENDING")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_down_calls_answer_unavailable_quickly() {
    use tierline_proto::tonic::Code;
    let pool = database("routing").await;
    tierline_routing::agents::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate");
    let on = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = on.local_addr().expect("addr");
    let mut config = tierline_routing::config::Config::default();
    // Nothing listens on port 1.
    config.redis.url = "redis://127.0.0.1:1".into();
    config.ticket_service.endpoint = "http://127.0.0.1:1".into();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(tierline_routing::serve_with(
        on,
        config,
        pool,
        Arc::new(SystemClock),
        async {
            let _ = stopped.await;
        },
    ));
    let _running = Running {
        addr,
        stop: Some(stop),
    };
    let ch = channel(addr).await;
    upsert_agent(ch.clone(), "ana", "customer_service", 1).await;
    let started = std::time::Instant::now();
    let e = AgentServiceClient::new(ch.clone())
        .get_agent(rpb::GetAgentRequest {
            agent_id: "ana".into(),
        })
        .await
        .expect_err("no live state");
    assert_eq!(e.code(), Code::Unavailable);
    let e = tierline_proto::routing::routing_service_client::RoutingServiceClient::new(ch.clone())
        .get_queue_stats(rpb::GetQueueStatsRequest::default())
        .await
        .expect_err("no live state");
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn equal_agents_get_equal_shares() {
    let mut w = world(1).await;
    let agents: Vec<String> = (0..6).map(|i| format!("even-{i}")).collect();
    for a in &agents {
        // Capacity well above the share, so it is selection, not capacity, that spreads load.
        upsert_agent(w.routers[0].clone(), a, "customer_service", 12).await;
    }
    let log = Arc::new(Mutex::new(Log::default()));
    let desktops: Vec<_> = agents
        .iter()
        .map(|a| desktop(w.routers[0].clone(), a.clone(), log.clone(), |_, _| false))
        .collect();
    // One at a time, each taken before the next arrives: the selection rule alone decides
    // (with tickets arriving together, whoever answers offers fastest is free more often).
    for i in 0..36 {
        w.tickets
            .create_ticket(complaint(&format!("even-{i}")))
            .await
            .expect("create");
        let mut taken = false;
        for _ in 0..200 {
            if assigned_tickets(&mut w.tickets).await.len() == i + 1 {
                taken = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(taken, "ticket {i} assigned");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = log.lock().expect("log");
    let mut per_agent: BTreeMap<&str, usize> = agents.iter().map(|a| (a.as_str(), 0)).collect();
    for acceptors in log.accepted.values() {
        *per_agent.entry(acceptors[0].as_str()).or_default() += 1;
    }
    let total: usize = per_agent.values().sum();
    let (min, max) = (
        per_agent.values().min().copied().unwrap_or(0),
        per_agent.values().max().copied().unwrap_or(0),
    );
    println!("assignments per agent: {per_agent:?}");
    assert_eq!(total, 36);
    assert!(max - min <= 1, "uneven: {per_agent:?}");
    for d in desktops {
        d.abort();
    }
}

async fn transition(
    tickets: &mut TicketServiceClient<GrpcChannel>,
    id: &str,
    target: tpb::TicketState,
    agent: &str,
) {
    let mut request = tierline_proto::tonic::Request::new(tpb::TransitionTicketRequest {
        ticket_id: id.into(),
        target_state: target as i32,
        resolution_summary: if target == tpb::TicketState::Resolved {
            "refunded the second charge".into()
        } else {
            String::new()
        },
        hold_reason: if target == tpb::TicketState::OnHold {
            tpb::HoldReason::ThirdParty as i32
        } else {
            0
        },
        ..Default::default()
    });
    request.metadata_mut().insert(
        "tierline-actor",
        format!("agent:{agent}").parse().expect("metadata"),
    );
    tickets
        .transition_ticket(request)
        .await
        .expect("transition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parking_or_resolving_a_ticket_frees_the_agent_for_the_next() {
    let mut w = world(1).await;
    upsert_agent(w.routers[0].clone(), "ana", "customer_service", 1).await;
    let (_, _, mut ana) = open(w.routers[0].clone(), "ana", "").await;
    let mut desk = AgentDesktopServiceClient::new(w.routers[0].clone());
    let mut take =
        async |stream: &mut tierline_proto::tonic::Streaming<rpb::OpenSessionResponse>| {
            let offer = next_event(stream, Duration::from_secs(10), offer_of)
                .await
                .expect("offer");
            desk.accept_offer(rpb::AcceptOfferRequest {
                agent_id: "ana".into(),
                reservation_id: offer.reservation_id,
            })
            .await
            .expect("accept");
            offer.ticket_id
        };
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            w.tickets
                .create_ticket(complaint(&format!("free-{i}")))
                .await
                .expect("create")
                .into_inner()
                .ticket
                .expect("ticket")
                .id,
        );
    }
    let first = take(&mut ana).await;
    // At capacity: nothing more until the first ticket stops occupying her.
    assert!(
        next_event(&mut ana, Duration::from_millis(800), offer_of)
            .await
            .is_none()
    );
    transition(&mut w.tickets, &first, tpb::TicketState::InProgress, "ana").await;
    transition(&mut w.tickets, &first, tpb::TicketState::OnHold, "ana").await;
    let second = take(&mut ana).await;
    assert_ne!(second, first, "parked: her capacity is free");
    transition(&mut w.tickets, &second, tpb::TicketState::InProgress, "ana").await;
    transition(&mut w.tickets, &second, tpb::TicketState::Resolved, "ana").await;
    let third = take(&mut ana).await;
    let mut taken = vec![first, second, third];
    taken.sort();
    ids.sort();
    assert_eq!(taken, ids, "each ticket once");
}
