//! The ticket service through its gRPC contract: the real server in-process on a fresh database,
//! talking to a real customer service (in-process too, on a database of its own).

use std::time::Duration;

use futures::StreamExt as _;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tierline_proto::common::{Channel, IdentityKind, IdentityRef, Tier};
use tierline_proto::customer::customer_service_client::CustomerServiceClient;
use tierline_proto::customer::{ListInteractionsRequest, ListSatisfactionRecordsRequest};
use tierline_proto::ticket as pb;
use tierline_proto::ticket::ticket_service_client::TicketServiceClient;
use tierline_proto::tonic::transport::Channel as GrpcChannel;
use tierline_proto::tonic::{Code, Request, Status};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic_types::StatusExt as _;

/// A server running in this process until dropped.
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

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// A database of its own for the customer service, dropped by the next run's cleanup at worst.
async fn customer_database() -> PgPool {
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL (run scripts/test)");
    let name = format!("tl_test_customer_{}", uuid::Uuid::now_v7().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("admin connection");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let pool = PgPool::connect(&format!("{base}/{name}"))
        .await
        .expect("connect");
    tierline_customer::store::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate");
    pool
}

async fn start_customer_service(pool: PgPool, on: TcpListener) -> Running {
    let addr = on.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(tierline_customer::serve_with_pool(
        on,
        tierline_customer::config::Config::default(),
        pool,
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        addr,
        stop: Some(stop),
    }
}

async fn start_ticket_service(pool: PgPool, customer_addr: std::net::SocketAddr) -> Running {
    // No router: these tests see tickets stay NEW, whatever runs on the default router port.
    start_ticket_service_routing_to(pool, customer_addr, String::new()).await
}

async fn start_ticket_service_routing_to(
    pool: PgPool,
    customer_addr: std::net::SocketAddr,
    routing_endpoint: String,
) -> Running {
    let on = listener().await;
    let addr = on.local_addr().expect("addr");
    let mut config = tierline_ticket::config::Config::default();
    config.customer_service.endpoint = format!("http://{customer_addr}");
    config.customer_service.timeout = Duration::from_millis(300);
    config.routing_service.endpoint = routing_endpoint;
    config.routing_service.timeout = Duration::from_millis(300);
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
    for _ in 0..50 {
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
    customers: CustomerServiceClient<GrpcChannel>,
    _ticket_service: Running,
    _customer_service: Running,
}

async fn world(pool: PgPool) -> World {
    let customer_service =
        start_customer_service(customer_database().await, listener().await).await;
    let ticket_service = start_ticket_service(pool, customer_service.addr).await;
    World {
        tickets: TicketServiceClient::new(channel(ticket_service.addr).await),
        customers: CustomerServiceClient::new(channel(customer_service.addr).await),
        _ticket_service: ticket_service,
        _customer_service: customer_service,
    }
}

fn caller(phone: &str) -> pb::create_ticket_request::Customer {
    pb::create_ticket_request::Customer::CallerIdentity(IdentityRef {
        kind: IdentityKind::Phone as i32,
        value: phone.into(),
        region_code: String::new(),
    })
}

fn complaint(key: &str, phone: &str) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        idempotency_key: key.into(),
        customer: Some(caller(phone)),
        channel: Channel::Voice as i32,
        category: "product_quality".into(),
        description: "the kettle leaks".into(),
        ..Default::default()
    }
}

fn as_agent<T>(message: T, agent: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "tierline-actor",
        format!("agent:{agent}").parse().expect("metadata"),
    );
    request
}

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(found) = probe().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn an_ivr_call_becomes_one_ticket_for_the_resolved_caller_however_often_it_is_retried(
    pool: PgPool,
) {
    let mut w = world(pool).await;
    let first = w
        .tickets
        .create_ticket(complaint("call-1001", "020 7946 0018"))
        .await
        .expect("create")
        .into_inner();
    let ticket = first.ticket.expect("ticket");
    assert!(!first.replayed);
    assert_eq!(
        ticket.customer_resolution,
        pb::CustomerResolution::Resolved as i32
    );
    assert_eq!(ticket.department, "quality_assurance");
    assert_eq!(ticket.state, pb::TicketState::New as i32);
    assert!(
        ticket.number.starts_with("T-") && ticket.number.len() == 11,
        "{}",
        ticket.number
    );
    assert_eq!(
        ticket.customer.as_ref().map(|c| c.tier),
        Some(Tier::C as i32)
    );

    // The IVR retries the same call many times at once: one ticket.
    let mut retries = Vec::new();
    for _ in 0..12 {
        let mut client = w.tickets.clone();
        retries.push(tokio::spawn(async move {
            client
                .create_ticket(complaint("call-1001", "020 7946 0018"))
                .await
        }));
    }
    for retry in retries {
        let reply = retry.await.expect("join").expect("replay").into_inner();
        assert!(reply.replayed);
        assert_eq!(reply.ticket.map(|t| t.id), Some(ticket.id.clone()));
    }
    // The same call id with a different complaint is refused, not a second ticket.
    let mut other = complaint("call-1001", "020 7946 0018");
    other.description = "something else".into();
    let status = w.tickets.create_ticket(other).await.expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "IDEMPOTENCY_KEY_REUSED");

    // The ticket can be read back by the number the IVR reads out.
    let by_number = w
        .tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Number(
                ticket.number.replace('-', " "),
            )),
        })
        .await
        .expect("by number")
        .into_inner();
    assert_eq!(by_number.id, ticket.id);

    // The call lands on the customer's timeline.
    let customer_id = ticket.customer_id.clone();
    let mut customers = w.customers.clone();
    eventually("the intake on the timeline", || {
        let mut c = customers.clone();
        let id = customer_id.clone();
        async move {
            let page = c
                .list_interactions(ListInteractionsRequest {
                    customer_id: id,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            page.interactions
                .into_iter()
                .find(|i| !i.ticket_id.is_empty())
        }
    })
    .await;
    let _ = &mut customers;
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn a_complaint_is_taken_while_the_customer_service_is_down_and_reconciled_when_it_is_back(
    pool: PgPool,
) {
    // Reserve the customer service's address but do not serve on it yet.
    let reserved = listener().await;
    let customer_addr = reserved.local_addr().expect("addr");
    let first_instance = start_ticket_service(pool.clone(), customer_addr).await;
    let mut tickets = TicketServiceClient::new(channel(first_instance.addr).await);

    let created = tickets
        .create_ticket(complaint("call-down-1", "+44 20 7946 0999"))
        .await
        .expect("accepted although the customer service is down")
        .into_inner()
        .ticket
        .expect("ticket");
    assert_eq!(
        created.customer_resolution,
        pb::CustomerResolution::Pending as i32
    );
    assert!(created.customer_id.is_empty());

    // The ticket service restarts (its relays with it) before the customer service is back.
    drop(first_instance);
    let second_instance = start_ticket_service(pool, customer_addr).await;
    let mut tickets = TicketServiceClient::new(channel(second_instance.addr).await);

    // The customer service comes back on the same address.
    let customer_service = start_customer_service(customer_database().await, reserved).await;
    let id = created.id.clone();
    let resolved = eventually("reconciliation", || {
        let mut t = tickets.clone();
        let id = id.clone();
        async move {
            let ticket = t
                .get_ticket(pb::GetTicketRequest {
                    key: Some(pb::get_ticket_request::Key::TicketId(id)),
                })
                .await
                .ok()?
                .into_inner();
            (ticket.customer_resolution == pb::CustomerResolution::Resolved as i32)
                .then_some(ticket)
        }
    })
    .await;
    assert!(!resolved.customer_id.is_empty());
    let history = tickets
        .list_ticket_history(pb::ListTicketHistoryRequest {
            ticket_id: created.id.clone(),
            ..Default::default()
        })
        .await
        .expect("history")
        .into_inner();
    assert!(
        history
            .events
            .iter()
            .any(|e| e.kind == pb::TicketEventKind::CustomerResolved as i32)
    );

    // The call reaches the customer's timeline, once, although two relays and two events
    // (CREATED, CUSTOMER_RESOLVED) could each have delivered it.
    let customers = CustomerServiceClient::new(channel(customer_service.addr).await);
    let customer_id = resolved.customer_id.clone();
    eventually("the intake on the timeline", || {
        let mut c = customers.clone();
        let id = customer_id.clone();
        async move {
            let page = c
                .list_interactions(ListInteractionsRequest {
                    customer_id: id,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            (!page.interactions.is_empty()).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let page = customers
        .clone()
        .list_interactions(ListInteractionsRequest {
            customer_id: resolved.customer_id.clone(),
            ..Default::default()
        })
        .await
        .expect("timeline")
        .into_inner();
    assert_eq!(
        page.interactions.len(),
        1,
        "delivered at least once, recorded exactly once"
    );
    drop(second_instance);
    drop(customer_service);
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn the_state_machine_is_enforced_with_clear_errors_and_every_step_is_in_the_history(
    pool: PgPool,
) {
    let mut w = world(pool).await;
    let t = w
        .tickets
        .create_ticket(complaint("call-2", "020 7946 0018"))
        .await
        .expect("create")
        .into_inner()
        .ticket
        .expect("ticket");
    let transition = |target: pb::TicketState| pb::TransitionTicketRequest {
        ticket_id: t.id.clone(),
        target_state: target as i32,
        ..Default::default()
    };

    // NEW cannot be resolved or put on hold.
    let status = w
        .tickets
        .transition_ticket(transition(pb::TicketState::InProgress))
        .await
        .expect_err("illegal");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "ILLEGAL_TRANSITION");

    // The router records the assignment; repeating it is harmless.
    let reservation = uuid::Uuid::now_v7().to_string();
    let assign = pb::AssignTicketRequest {
        ticket_id: t.id.clone(),
        agent_id: "agent-7".into(),
        reservation_id: reservation.clone(),
        expected_version: None,
    };
    let assigned = w
        .tickets
        .assign_ticket(assign.clone())
        .await
        .expect("assign")
        .into_inner();
    assert_eq!(assigned.state, pb::TicketState::Assigned as i32);
    assert!(
        assigned
            .sla
            .as_ref()
            .and_then(|s| s.first_response_time)
            .is_some(),
        "voice answer"
    );
    let again = w
        .tickets
        .assign_ticket(assign)
        .await
        .expect("repeat")
        .into_inner();
    assert_eq!(again.version, assigned.version);

    // A stale version is ABORTED; the current one works.
    let mut start = transition(pb::TicketState::InProgress);
    start.expected_version = Some(assigned.version - 1);
    let status = w
        .tickets
        .transition_ticket(start.clone())
        .await
        .expect_err("stale");
    assert_eq!(status.code(), Code::Aborted);
    start.expected_version = Some(assigned.version);
    w.tickets.transition_ticket(start).await.expect("start");

    // Hold needs its reason; resolve needs a summary.
    let status = w
        .tickets
        .transition_ticket(transition(pb::TicketState::OnHold))
        .await
        .expect_err("reason");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["hold_reason"]);
    let status = w
        .tickets
        .transition_ticket(transition(pb::TicketState::Resolved))
        .await
        .expect_err("summary");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(violated_fields(&status).contains(&"resolution_summary".to_string()));
    let mut resolve = transition(pb::TicketState::Resolved);
    resolve.resolution_summary = "replaced the kettle".into();
    let resolved = w
        .tickets
        .transition_ticket(resolve)
        .await
        .expect("resolve")
        .into_inner();
    assert_eq!(resolved.state, pb::TicketState::Resolved as i32);
    assert!(
        resolved
            .follow_up
            .as_ref()
            .and_then(|f| f.due_time)
            .is_some()
    );

    // The handler may not judge their own work; a supervisor records C = b / a.
    let follow_up = |agent: &str| pb::RecordFollowUpRequest {
        ticket_id: t.id.clone(),
        expected: 8.0,
        perceived: 6.0,
        agent_id: agent.into(),
        close_ticket: true,
        ..Default::default()
    };
    let status = w
        .tickets
        .record_follow_up(follow_up("agent-7"))
        .await
        .expect_err("own");
    assert_eq!(reason(&status), "OWN_FOLLOW_UP");
    let closed = w
        .tickets
        .record_follow_up(follow_up("supervisor-1"))
        .await
        .expect("follow-up")
        .into_inner();
    assert_eq!(closed.state, pb::TicketState::Closed as i32);
    assert_eq!(
        closed.follow_up.as_ref().map(|f| f.satisfaction),
        Some(0.75)
    );

    // A closed ticket stays closed.
    let status = w
        .tickets
        .transition_ticket(transition(pb::TicketState::InProgress))
        .await
        .expect_err("closed");
    assert_eq!(status.code(), Code::FailedPrecondition);

    let history = w
        .tickets
        .list_ticket_history(pb::ListTicketHistoryRequest {
            ticket_id: t.id.clone(),
            ..Default::default()
        })
        .await
        .expect("history")
        .into_inner();
    let states: Vec<i32> = history.events.iter().map(|e| e.to_state).collect();
    for expected in [
        pb::TicketState::New,
        pb::TicketState::Assigned,
        pb::TicketState::InProgress,
        pb::TicketState::Resolved,
        pb::TicketState::Closed,
    ] {
        assert!(
            states.contains(&(expected as i32)),
            "{expected:?} in history"
        );
    }

    // The satisfaction reaches the customer's profile.
    let customer_id = t.customer_id.clone();
    let customers = w.customers.clone();
    eventually("satisfaction on the profile", || {
        let mut c = customers.clone();
        let id = customer_id.clone();
        async move {
            let records = c
                .list_satisfaction_records(ListSatisfactionRecordsRequest {
                    customer_id: id,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .records;
            records
                .into_iter()
                .find(|r| (r.satisfaction - 0.75).abs() < 1e-9)
        }
    })
    .await;
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn a_watcher_resumes_from_its_cursor_and_misses_nothing(pool: PgPool) {
    let mut w = world(pool).await;
    let mut stream = w
        .tickets
        .watch_ticket_events(pb::WatchTicketEventsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let t = w
        .tickets
        .create_ticket(complaint("call-3", "020 7946 0018"))
        .await
        .expect("create")
        .into_inner()
        .ticket
        .expect("ticket");
    let created = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("event");
    assert_eq!(created.kind, pb::TicketEventKind::Created as i32);
    assert_eq!(
        created.ticket.as_ref().map(|x| x.id.clone()),
        Some(t.id.clone())
    );
    let cursor = created.sequence;
    drop(stream);

    // While disconnected the ticket changes twice.
    w.tickets
        .assign_ticket(pb::AssignTicketRequest {
            ticket_id: t.id.clone(),
            agent_id: "agent-1".into(),
            reservation_id: uuid::Uuid::now_v7().to_string(),
            expected_version: None,
        })
        .await
        .expect("assign");
    w.tickets
        .add_comment(as_agent(
            pb::AddCommentRequest {
                ticket_id: t.id.clone(),
                comment: Some(pb::Comment {
                    visibility: pb::CommentVisibility::Public as i32,
                    author: Some(pb::Actor {
                        kind: pb::ActorKind::Agent as i32,
                        id: "agent-1".into(),
                    }),
                    body: "We are sending a replacement.".into(),
                    ..Default::default()
                }),
                idempotency_key: "mail-1".into(),
            },
            "agent-1",
        ))
        .await
        .expect("comment");

    let mut resumed = w
        .tickets
        .watch_ticket_events(pb::WatchTicketEventsRequest {
            after_sequence: Some(cursor),
            ticket_ids: vec![t.id.clone()],
            ..Default::default()
        })
        .await
        .expect("resume")
        .into_inner();
    let mut kinds = Vec::new();
    let mut last = cursor;
    while kinds.len() < 3 {
        let e = tokio::time::timeout(Duration::from_secs(10), resumed.next())
            .await
            .expect("event in time")
            .expect("open")
            .expect("event");
        assert!(e.sequence > last, "in order");
        last = e.sequence;
        kinds.push(e.kind);
    }
    assert_eq!(
        kinds,
        [
            pb::TicketEventKind::Assigned as i32,
            pb::TicketEventKind::CommentAdded as i32,
            pb::TicketEventKind::StateChanged as i32,
        ]
    );

    // A cursor from the future is refused.
    let status = w
        .tickets
        .watch_ticket_events(pb::WatchTicketEventsRequest {
            after_sequence: Some(last + 1_000),
            ..Default::default()
        })
        .await
        .expect_err("future cursor");
    assert_eq!(status.code(), Code::OutOfRange);
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn bad_input_names_every_offending_field(pool: PgPool) {
    let mut w = world(pool).await;
    let status = w
        .tickets
        .create_ticket(pb::CreateTicketRequest {
            category: "no such category".into(),
            ..Default::default()
        })
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields = violated_fields(&status);
    for field in ["idempotency_key", "customer_id", "channel"] {
        assert!(fields.contains(&field.to_string()), "{field} in {fields:?}");
    }
    let status = w
        .tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::TicketId("nope".into())),
        })
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = w
        .tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::TicketId(
                uuid::Uuid::now_v7().to_string(),
            )),
        })
        .await
        .expect_err("missing");
    assert_eq!(status.code(), Code::NotFound);
    let categories = w
        .tickets
        .list_categories(pb::ListCategoriesRequest::default())
        .await
        .expect("categories")
        .into_inner();
    assert!(
        categories
            .categories
            .iter()
            .any(|c| c.id == "staff_conduct" && c.department == "hr")
    );
}

#[sqlx::test(migrator = "tierline_ticket::store::MIGRATOR")]
async fn intake_waits_no_longer_than_the_deadline_for_a_router_that_does_not_answer(pool: PgPool) {
    // Not a router: a socket that takes connections and never says a word.
    let hole = listener().await;
    let hole_addr = hole.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hole.accept().await {
            held.push(socket);
        }
    });
    let customer_service =
        start_customer_service(customer_database().await, listener().await).await;
    let ticket_service =
        start_ticket_service_routing_to(pool, customer_service.addr, format!("http://{hole_addr}"))
            .await;
    let mut tickets = TicketServiceClient::new(channel(ticket_service.addr).await);

    let started = std::time::Instant::now();
    let created = tickets
        .create_ticket(complaint("call-no-router", "020 7946 0018"))
        .await
        .expect("accepted although the router does not answer")
        .into_inner();
    // The customer and the router each get at most their 300 ms deadline.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "intake took {:?}",
        started.elapsed()
    );
    assert_eq!(created.queue_position, 0);
    assert_eq!(created.estimated_wait, None);
    let ticket = created.ticket.expect("ticket");
    assert_eq!(ticket.state, pb::TicketState::New as i32);

    // The relay keeps trying; the ticket waits as NEW and the service keeps serving.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::TicketId(ticket.id.clone())),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(later.state, pb::TicketState::New as i32);
    assert_eq!(later.version, ticket.version);
}
