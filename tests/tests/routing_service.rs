//! The router as an operator runs it: two routing processes sharing one Redis and one agent
//! database, and the ticket service handing tickets to one of them. An agent whose desktop is
//! connected to the other process gets the offer and takes the ticket through it.

use std::time::Duration;

use anyhow::{Context, Result};
use tierline_proto::common::{Channel, IdentityKind, IdentityRef};
use tierline_proto::routing as rpb;
use tierline_proto::routing::agent_desktop_service_client::AgentDesktopServiceClient;
use tierline_proto::routing::agent_service_client::AgentServiceClient;
use tierline_proto::ticket as tpb;
use tierline_proto::ticket::ticket_service_client::TicketServiceClient;
use tierline_tests::{RunningService, TestDatabase, free_port};
use tokio_stream::StreamExt as _;

fn redis_url() -> String {
    std::env::var("TIERLINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test]
async fn an_offer_made_by_one_routing_process_is_taken_through_another() -> Result<()> {
    let ticket_db = TestDatabase::create().await?;
    let routing_db = TestDatabase::create().await?;
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let ports = [free_port()?, free_port()?];
    let ticket_port = free_port()?;
    let routing_env = || {
        vec![
            ("TIERLINE_DATABASE__URL", routing_db.url.clone()),
            ("TIERLINE_REDIS__URL", redis_url()),
            ("TIERLINE_REDIS__KEY_PREFIX", prefix.clone()),
            (
                "TIERLINE_TICKET_SERVICE__ENDPOINT",
                format!("http://127.0.0.1:{ticket_port}"),
            ),
        ]
    };
    let first = RunningService::start_on("tierline-routing", ports[0], &routing_env()).await?;
    let second = RunningService::start_on("tierline-routing", ports[1], &routing_env()).await?;
    let tickets = RunningService::start_on(
        "tierline-ticket",
        ticket_port,
        &[
            ("TIERLINE_DATABASE__URL", ticket_db.url.clone()),
            // No customer service: intake resolves the caller later.
            (
                "TIERLINE_CUSTOMER_SERVICE__ENDPOINT",
                "http://127.0.0.1:1".into(),
            ),
            ("TIERLINE_CUSTOMER_SERVICE__TIMEOUT", "100ms".into()),
            // Tickets go to the first router only.
            (
                "TIERLINE_ROUTING_SERVICE__ENDPOINT",
                format!("http://{}", first.addr),
            ),
        ],
    )
    .await?;

    AgentServiceClient::new(first.channel().await?)
        .upsert_agent(rpb::UpsertAgentRequest {
            agent: Some(rpb::Agent {
                id: "bo".into(),
                display_name: "Bo".into(),
                departments: vec!["customer_service".into()],
                capacities: vec![rpb::ChannelCapacity {
                    channel: Channel::Voice as i32,
                    max_active_tickets: 1,
                }],
                ..Default::default()
            }),
            update_mask: None,
            expected_version: None,
        })
        .await?;
    // Bo's desktop is on the second process.
    let mut desk = AgentDesktopServiceClient::new(second.channel().await?);
    let mut stream = loop {
        match desk
            .open_session(rpb::OpenSessionRequest {
                agent_id: "bo".into(),
                session_id: String::new(),
                initial_presence: rpb::AgentPresenceState::Available as i32,
            })
            .await
        {
            Ok(stream) => break stream.into_inner(),
            // Each router builds its live state at start.
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => return Err(s.into()),
        }
    };

    let mut intake = TicketServiceClient::new(tickets.channel().await?);
    let created = intake
        .create_ticket(tpb::CreateTicketRequest {
            idempotency_key: "ivr-call-routing-e2e".into(),
            customer: Some(tpb::create_ticket_request::Customer::CallerIdentity(
                IdentityRef {
                    kind: IdentityKind::Phone as i32,
                    value: "020 7946 0018".into(),
                    region_code: String::new(),
                },
            )),
            channel: Channel::Voice as i32,
            category: "billing".into(),
            description: "charged twice".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let ticket_id = created.ticket.context("ticket")?.id;

    let offer = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(message) = stream.next().await {
            if let Some(rpb::open_session_response::Event::Offer(offer)) = message?.event {
                return Ok::<_, tonic::Status>(Some(offer));
            }
        }
        Ok(None)
    })
    .await
    .context("no offer within 15 s")??
    .context("stream ended without an offer")?;
    assert_eq!(offer.ticket_id, ticket_id);
    let assignment = desk
        .accept_offer(rpb::AcceptOfferRequest {
            agent_id: "bo".into(),
            reservation_id: offer.reservation_id,
        })
        .await?
        .into_inner();
    assert_eq!(assignment.ticket_id, ticket_id);
    let ticket = intake
        .get_ticket(tpb::GetTicketRequest {
            key: Some(tpb::get_ticket_request::Key::TicketId(ticket_id.clone())),
        })
        .await?
        .into_inner();
    assert_eq!(ticket.state, tpb::TicketState::Assigned as i32);
    assert_eq!(ticket.assigned_agent_id, "bo");

    assert!(tickets.terminate().await?.success());
    assert!(first.terminate().await?.success());
    assert!(second.terminate().await?.success());
    ticket_db.drop_now().await?;
    routing_db.drop_now().await?;
    Ok(())
}
