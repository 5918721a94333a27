//! The routing service on the parts of the single-process dev mode: agent records in SQLite
//! (in memory) and the live state in process, started through `serve_with_parts`, with no
//! PostgreSQL and no Redis. One UpsertAgent and one ListAgents over gRPC prove the wiring.

use std::sync::Arc;
use std::time::Duration;

use tierline_proto::common::Channel;
use tierline_proto::routing as rpb;
use tierline_proto::routing::agent_service_client::AgentServiceClient;
use tierline_proto::tonic::transport::Channel as GrpcChannel;
use tierline_routing::agents::SqliteAgents;
use tierline_routing::live::in_memory::InMemoryLive;
use tierline_routing::router::SystemClock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

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

#[tokio::test]
async fn agents_upsert_and_list_on_sqlite_and_the_in_process_live_state() {
    let on = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = on.local_addr().expect("addr");
    let mut config = tierline_routing::config::Config::default();
    // Neither is read by serve_with_parts: nothing listens there, and nothing may need to.
    config.database.url = "postgres://127.0.0.1:1/none".into();
    config.redis.url = "redis://127.0.0.1:1".into();
    // Nothing listens there either: agent records need no ticket service.
    config.ticket_service.endpoint = "http://127.0.0.1:1".into();
    let agents = SqliteAgents::in_memory().await.expect("sqlite in memory");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(tierline_routing::serve_with_parts(
        on,
        config,
        Arc::new(agents),
        Arc::new(InMemoryLive::new()),
        Arc::new(SystemClock),
        async {
            let _ = stopped.await;
        },
    ));

    let mut client = AgentServiceClient::new(channel(addr).await);
    let created = client
        .upsert_agent(rpb::UpsertAgentRequest {
            agent: Some(rpb::Agent {
                id: "agent-7".into(),
                display_name: "Ana Silva".into(),
                departments: vec!["quality_assurance".into()],
                capacities: vec![rpb::ChannelCapacity {
                    channel: Channel::Voice as i32,
                    max_active_tickets: 1,
                }],
                ..Default::default()
            }),
            update_mask: None,
            expected_version: None,
        })
        .await
        .expect("upsert agent")
        .into_inner();
    assert_eq!(created.version, 1);
    assert_eq!(created.display_name, "Ana Silva");

    let listed = client
        .list_agents(rpb::ListAgentsRequest {
            department: "quality_assurance".into(),
            ..Default::default()
        })
        .await
        .expect("list agents")
        .into_inner();
    // The record as created; the live status is the router's to compute at each read.
    let records: Vec<rpb::Agent> = listed
        .agents
        .into_iter()
        .map(|a| rpb::Agent { status: None, ..a })
        .collect();
    assert_eq!(
        records,
        [rpb::Agent {
            status: None,
            ..created
        }]
    );
    assert!(listed.next_page_token.is_empty());

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .expect("task")
        .expect("served without error");
}
