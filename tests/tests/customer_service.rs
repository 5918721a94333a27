//! The customer service as an operator runs it: the real binary, configured from the
//! environment, against a real PostgreSQL database of its own.

use anyhow::Result;
use tierline_proto::common::{IdentityKind, IdentityRef, Money, Tier};
use tierline_proto::customer::customer_service_client::CustomerServiceClient;
use tierline_proto::customer::{
    CreateCustomerRequest, Customer, GetCustomerRequest, Identity, LookupCustomersRequest,
    RecomputeTiersRequest,
};
use tierline_tests::{RunningService, TestDatabase, binary};
use tokio_stream::StreamExt as _;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn listed_services(service: &RunningService) -> Result<Vec<String>> {
    let mut client = ServerReflectionClient::new(service.channel().await?);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let mut names = Vec::new();
    if let Some(reply) = stream.next().await
        && let Some(MessageResponse::ListServicesResponse(list)) = reply?.message_response
    {
        names = list.service.into_iter().map(|s| s.name).collect();
    }
    Ok(names)
}

fn customer(name: &str, ltv_units: i64) -> Customer {
    Customer {
        display_name: name.to_owned(),
        lifetime_value: Some(Money {
            currency_code: "EUR".into(),
            units: ltv_units,
            nanos: 0,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_binary_serves_creates_looks_up_by_local_number_and_tiers_customers() -> Result<()> {
    let db = TestDatabase::create().await?;
    let service = RunningService::start(
        "tierline-customer",
        &[("TIERLINE_DATABASE__URL", db.url.clone())],
    )
    .await?;

    let services = listed_services(&service).await?;
    for expected in [
        "tierline.customer.v1.CustomerService",
        "tierline.ticket.v1.TicketService",
        "tierline.routing.v1.RoutingService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|s| s == expected),
            "{expected} in {services:?}"
        );
    }

    let mut client = CustomerServiceClient::new(service.channel().await?);
    let big = client
        .create_customer(CreateCustomerRequest {
            customer: Some(customer("Okafor Holdings", 900_000)),
            identities: vec![Identity {
                kind: IdentityKind::Phone as i32,
                value: "020 7946 0018".into(),
                ..Default::default()
            }],
            idempotency_key: "e2e-okafor".into(),
        })
        .await?
        .into_inner();
    assert_eq!(big.identities[0].value, "+442079460018");
    for i in 0..20 {
        client
            .create_customer(CreateCustomerRequest {
                customer: Some(customer(&format!("Small {i}"), 100)),
                ..Default::default()
            })
            .await?;
    }

    // The IVR dials in with the number as the caller typed it, in local form.
    let found = client
        .lookup_customers(LookupCustomersRequest {
            identity: Some(IdentityRef {
                kind: IdentityKind::Phone as i32,
                value: "(020) 7946-0018".into(),
                region_code: String::new(),
            }),
        })
        .await?
        .into_inner();
    assert_eq!(found.customers.len(), 1);
    assert_eq!(found.customers[0].id, big.id);

    let report = client
        .recompute_tiers(RecomputeTiersRequest::default())
        .await?
        .into_inner();
    assert_eq!(report.customers_evaluated, 21);
    assert_eq!(report.tier_a_count, 1);
    assert_eq!(report.tier_c_count, 20);
    let tiered = client
        .get_customer(GetCustomerRequest { id: big.id.clone() })
        .await?
        .into_inner();
    assert_eq!(tiered.tier, Tier::A as i32);

    let status = service.terminate().await?;
    assert!(status.success(), "graceful stop on SIGTERM, got {status}");
    db.drop_now().await?;
    Ok(())
}

#[tokio::test]
async fn a_missing_database_url_stops_the_binary_with_a_clear_message_and_exit_78() -> Result<()> {
    let output = std::process::Command::new(binary("tierline-customer")?)
        .env_remove("TIERLINE_DATABASE__URL")
        .env_remove("TIERLINE_CONFIG")
        .output()?;
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("database.url"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn an_unknown_argument_is_a_usage_error() -> Result<()> {
    let output = std::process::Command::new(binary("tierline-customer")?)
        .arg("--port")
        .output()?;
    assert_eq!(output.status.code(), Some(64));
    Ok(())
}
