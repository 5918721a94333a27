//! The ticket and customer services as an operator runs them: two binaries, each with its own
//! database, the ticket service calling the customer service over gRPC.

use anyhow::Result;
use tierline_proto::common::{Channel, IdentityKind, IdentityRef};
use tierline_proto::ticket as pb;
use tierline_proto::ticket::ticket_service_client::TicketServiceClient;
use tierline_tests::{RunningService, TestDatabase};

#[tokio::test]
async fn an_ivr_complaint_becomes_a_ticket_for_the_caller_across_the_two_binaries() -> Result<()> {
    let customer_db = TestDatabase::create().await?;
    let ticket_db = TestDatabase::create().await?;
    let customers = RunningService::start(
        "tierline-customer",
        &[("TIERLINE_DATABASE__URL", customer_db.url.clone())],
    )
    .await?;
    let tickets = RunningService::start(
        "tierline-ticket",
        &[
            ("TIERLINE_DATABASE__URL", ticket_db.url.clone()),
            (
                "TIERLINE_CUSTOMER_SERVICE__ENDPOINT",
                format!("http://{}", customers.addr),
            ),
        ],
    )
    .await?;

    let mut client = TicketServiceClient::new(tickets.channel().await?);
    let request = pb::CreateTicketRequest {
        idempotency_key: "ivr-call-e2e-1".into(),
        customer: Some(pb::create_ticket_request::Customer::CallerIdentity(
            IdentityRef {
                kind: IdentityKind::Phone as i32,
                value: "020 7946 0018".into(),
                region_code: String::new(),
            },
        )),
        channel: Channel::Voice as i32,
        category: "billing".into(),
        description: "charged twice for one order".into(),
        ..Default::default()
    };
    let created = client.create_ticket(request.clone()).await?.into_inner();
    let ticket = created.ticket.clone().expect("ticket");
    assert_eq!(
        ticket.customer_resolution,
        pb::CustomerResolution::Resolved as i32
    );
    assert_eq!(ticket.department, "customer_service");
    // The IVR's retry of the same call is the same ticket.
    let again = client.create_ticket(request).await?.into_inner();
    assert!(again.replayed);
    assert_eq!(again.ticket.map(|t| t.id), Some(ticket.id.clone()));

    assert!(tickets.terminate().await?.success());
    assert!(customers.terminate().await?.success());
    ticket_db.drop_now().await?;
    customer_db.drop_now().await?;
    Ok(())
}
