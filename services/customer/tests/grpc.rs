//! gRPC-level tests of the customer-profile service: the real server, in-process, each test on
//! its own fresh PostgreSQL database (`#[sqlx::test]`, needs `DATABASE_URL`).

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use common::*;
use futures::StreamExt as _;
use sqlx::PgPool;
use tierline_customer::domain::{TieringPolicy, classify};
use tierline_proto::common::{Channel as WireChannel, IdentityKind, IdentityRef, Tier as WireTier};
use tierline_proto::customer as pb;
use tierline_proto::prost_types::{FieldMask, Timestamp};
use tierline_proto::tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use uuid::Uuid;

const CUSTOMER_SERVICE: &str = "tierline.customer.v1.CustomerService";

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

fn ts(at: time::OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: at.unix_timestamp(),
        nanos: 0,
    }
}

fn interaction(summary: &str, occur_time: Option<Timestamp>) -> pb::Interaction {
    pb::Interaction {
        channel: WireChannel::Voice as i32,
        direction: pb::Direction::Inbound as i32,
        summary: summary.to_owned(),
        occur_time,
        ..Default::default()
    }
}

async fn record_interaction(
    client: &mut Client,
    customer_id: &str,
    summary: &str,
    occur_time: Option<Timestamp>,
    key: &str,
) -> pb::Interaction {
    client
        .record_interaction(pb::RecordInteractionRequest {
            customer_id: customer_id.to_owned(),
            interaction: Some(interaction(summary, occur_time)),
            idempotency_key: key.to_owned(),
        })
        .await
        .expect("RecordInteraction")
        .into_inner()
}

async fn list_interactions(client: &mut Client, customer_id: &str) -> Vec<pb::Interaction> {
    client
        .list_interactions(pb::ListInteractionsRequest {
            customer_id: customer_id.to_owned(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect("ListInteractions")
        .into_inner()
        .interactions
}

fn satisfaction(expected: f64, perceived: f64) -> pb::SatisfactionRecord {
    pb::SatisfactionRecord {
        expected,
        perceived,
        ..Default::default()
    }
}

async fn record_satisfaction(
    client: &mut Client,
    customer_id: &str,
    expected: f64,
    perceived: f64,
    key: &str,
) -> pb::SatisfactionRecord {
    client
        .record_satisfaction(pb::RecordSatisfactionRequest {
            customer_id: customer_id.to_owned(),
            record: Some(satisfaction(expected, perceived)),
            idempotency_key: key.to_owned(),
        })
        .await
        .expect("RecordSatisfaction")
        .into_inner()
}

async fn add_identity(
    client: &mut Client,
    customer_id: &str,
    identity: pb::Identity,
) -> Result<pb::Customer, tierline_proto::tonic::Status> {
    client
        .add_identity(pb::AddIdentityRequest {
            customer_id: customer_id.to_owned(),
            identity: Some(identity),
            region_code: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn remove_identity(
    client: &mut Client,
    customer_id: &str,
    identity: IdentityRef,
) -> Result<pb::Customer, tierline_proto::tonic::Status> {
    client
        .remove_identity(pb::RemoveIdentityRequest {
            customer_id: customer_id.to_owned(),
            identity: Some(identity),
        })
        .await
        .map(|r| r.into_inner())
}

async fn recompute(
    client: &mut Client,
    policy: Option<pb::TieringPolicy>,
    dry_run: bool,
) -> pb::RecomputeTiersResponse {
    client
        .recompute_tiers(pb::RecomputeTiersRequest { policy, dry_run })
        .await
        .expect("RecomputeTiers")
        .into_inner()
}

fn cumulative(a: f64, b: f64) -> pb::TieringPolicy {
    pb::TieringPolicy {
        method: Some(pb::tiering_policy::Method::Cumulative(
            pb::CumulativeThresholds {
                a_cumulative_share: a,
                b_cumulative_share: b,
            },
        )),
    }
}

fn identity_values(c: &pb::Customer) -> BTreeSet<String> {
    c.identities.iter().map(|i| i.value.clone()).collect()
}

fn ids(customers: &[pb::Customer]) -> Vec<String> {
    customers.iter().map(|c| c.id.clone()).collect()
}

// ---- 0. the server as infrastructure sees it ---------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn health_reports_serving_reflection_lists_every_service_and_shutdown_turns_health_off(
    pool: PgPool,
) {
    let mut server = Server::start_with(pool, |config| {
        config.server.shutdown_delay = Duration::from_millis(800);
    })
    .await;
    let mut health = HealthClient::new(server.channel());
    let status = health
        .check(HealthCheckRequest {
            service: CUSTOMER_SERVICE.into(),
        })
        .await
        .expect("Health.Check")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let unknown = health
        .check(HealthCheckRequest {
            service: "tierline.nosuch.v1.NoService".into(),
        })
        .await
        .expect_err("an unknown service has no health status");
    assert_eq!(unknown.code(), Code::NotFound);

    let mut reflection = ServerReflectionClient::new(server.channel());
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                CUSTOMER_SERVICE.into(),
            )),
        },
    ];
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("ServerReflectionInfo")
        .into_inner();
    let listed = responses
        .message()
        .await
        .expect("reflection answer")
        .expect("one answer per request")
        .message_response;
    let Some(MessageResponse::ListServicesResponse(list)) = listed else {
        panic!("expected a service list, got {listed:?}");
    };
    let names: HashSet<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        CUSTOMER_SERVICE,
        "tierline.ticket.v1.TicketService",
        "tierline.routing.v1.RoutingService",
        "tierline.routing.v1.AgentDesktopService",
        "tierline.routing.v1.AgentService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    let described = responses
        .message()
        .await
        .expect("reflection answer")
        .expect("one answer per request")
        .message_response;
    let Some(MessageResponse::FileDescriptorResponse(files)) = described else {
        panic!("expected file descriptors, got {described:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());

    // On the shutdown signal health turns NOT_SERVING for `shutdown_delay` before the listener
    // closes, so load balancers stop sending calls first.
    server.signal_shutdown();
    let mut turned_off = false;
    for _ in 0..30 {
        let status = health
            .check(HealthCheckRequest {
                service: CUSTOMER_SERVICE.into(),
            })
            .await
            .expect("health still answers during the shutdown delay")
            .into_inner()
            .status;
        if status == ServingStatus::NotServing as i32 {
            turned_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        turned_off,
        "health never reported NOT_SERVING after shutdown"
    );
    drop(health);
    drop(reflection);
    server.stop().await;
}

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]

async fn during_the_shutdown_delay_a_new_connection_reads_not_serving(pool: PgPool) {
    let mut server = Server::start_with(pool, |config| {
        config.server.shutdown_delay = Duration::from_millis(2000);
    })
    .await;
    let addr = server.addr;
    server.signal_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probe = async move {
        let channel =
            tierline_proto::tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect");
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: CUSTOMER_SERVICE.into(),
            })
            .await
            .map(|r| r.into_inner().status)
    };
    let status = tokio::time::timeout(Duration::from_millis(1000), probe)
        .await
        .expect("a new connection is answered during the shutdown delay")
        .expect("Health.Check");
    assert_eq!(status, ServingStatus::NotServing as i32);
    server.stop().await;
}

// ---- 1. create, get, identities normalised ----------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn a_created_customer_reads_back_with_its_local_phone_in_e164_and_is_found_by_any_format(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let mut p = profile("  Ada Lovelace ");
    p.form_of_address = "Countess".into();
    p.kind = pb::CustomerKind::Individual as i32;
    p.relationship = pb::Relationship::Reseller as i32;
    p.segment = "retail".into();
    p.preferences = vec!["calls after 18:00".into()];
    p.attributes.insert("loyalty_card".into(), "gold".into());
    p.credit_standing = pb::CreditStanding::Good as i32;
    p.lifetime_value = Some(eur_micros(1_234_500_000));
    p.postal_address = Some(pb::PostalAddress {
        lines: vec!["12 St James's Square".into()],
        locality: "London".into(),
        postal_code: "SW1Y 4LB".into(),
        region_code: "GB".into(),
        ..Default::default()
    });
    // A leap-day birthday with an unknown year is allowed.
    p.significant_dates = vec![pb::SignificantDate {
        kind: pb::SignificantDateKind::Birthday as i32,
        label: String::new(),
        year: 0,
        month: 2,
        day: 29,
    }];
    // Output-only fields are ignored on create.
    p.tier = WireTier::A as i32;
    p.version = 99;
    let created = create(
        &mut client,
        p,
        vec![phone("020 7946 0018"), email("Ada.Lovelace@Example.COM")],
    )
    .await;

    Uuid::parse_str(&created.id).expect("the id is a UUID");
    assert_eq!(created.display_name, "Ada Lovelace", "text is trimmed");
    assert_eq!(created.form_of_address, "Countess");
    assert_eq!(created.relationship, pb::Relationship::Reseller as i32);
    assert_eq!(created.lifecycle_stage, pb::LifecycleStage::Prospect as i32);
    assert_eq!(created.tier, WireTier::C as i32);
    assert_eq!(created.computed_tier, WireTier::C as i32);
    assert_eq!(created.version, 1);
    assert_eq!(micros(created.lifetime_value.as_ref()), 1_234_500_000);
    assert_eq!(
        created
            .lifetime_value
            .as_ref()
            .map(|m| m.currency_code.as_str()),
        Some("EUR")
    );
    assert!(created.delete_time.is_none());
    let identities: Vec<(i32, &str)> = created
        .identities
        .iter()
        .map(|i| (i.kind, i.value.as_str()))
        .collect();
    assert_eq!(
        identities,
        [
            (IdentityKind::Phone as i32, "+442079460018"),
            (IdentityKind::Email as i32, "ada.lovelace@example.com"),
        ]
    );

    let fetched = get(&mut client, &created.id).await;
    assert_eq!(
        fetched, created,
        "GetCustomer returns what CreateCustomer returned"
    );

    for written in [
        "+44 20 7946 0018",
        "020 7946 0018",
        "(020) 7946-0018",
        "+442079460018",
    ] {
        assert_eq!(
            lookup(&mut client, phone_ref(written)).await,
            [created.id.as_str()],
            "lookup by {written:?}"
        );
    }
    let mut explicit_region = phone_ref("020 7946 0018");
    explicit_region.region_code = "gb".into();
    assert_eq!(
        lookup(&mut client, explicit_region).await,
        [created.id.as_str()]
    );
    assert_eq!(
        lookup(&mut client, email_ref("ADA.LOVELACE@EXAMPLE.COM")).await,
        [created.id.as_str()],
        "email lookup ignores case"
    );
    assert!(
        lookup(&mut client, phone_ref("020 7946 0999"))
            .await
            .is_empty(),
        "an unknown identity finds nobody, without an error"
    );
    drop(client);
    server.stop().await;
}

// ---- 2. bad input -----------------------------------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn bad_input_is_invalid_argument_naming_each_offending_field_and_never_internal(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let create_req =
        |customer: pb::Customer, identities: Vec<pb::Identity>| pb::CreateCustomerRequest {
            customer: Some(customer),
            identities,
            idempotency_key: String::new(),
        };

    // Identities are checked with their index.
    assert_invalid(
        client
            .create_customer(create_req(
                profile("Ada"),
                vec![phone("not a phone number")],
            ))
            .await,
        "identities[0].value",
    );
    assert_invalid(
        client
            .create_customer(create_req(profile("Ada"), vec![phone("12")]))
            .await,
        "identities[0].value",
    );
    assert_invalid(
        client
            .create_customer(create_req(
                profile("Ada"),
                vec![phone("020 7946 0018"), email("no-at-sign.example.com")],
            ))
            .await,
        "identities[1].value",
    );
    let mut unknown_kind = phone("020 7946 0018");
    unknown_kind.kind = 77;
    assert_invalid(
        client
            .create_customer(create_req(profile("Ada"), vec![unknown_kind]))
            .await,
        "identities[0].kind",
    );
    // Every violation is reported at once.
    let both = assert_invalid(
        client
            .create_customer(create_req(profile(""), vec![email("nope")]))
            .await,
        "customer.display_name",
    );
    assert_eq!(
        violated_fields(&both),
        ["customer.display_name", "identities[0].value"]
    );

    // Profile fields.
    assert_invalid(
        client
            .create_customer(create_req(profile(&"x".repeat(201)), vec![]))
            .await,
        "customer.display_name",
    );
    let mut p = profile("Ada");
    p.kind = 42;
    assert_invalid(
        client.create_customer(create_req(p, vec![])).await,
        "customer.kind",
    );
    let mut p = profile("Ada");
    p.lifecycle_stage = 9;
    assert_invalid(
        client.create_customer(create_req(p, vec![])).await,
        "customer.lifecycle_stage",
    );
    let mut p = profile("Ada");
    p.lifetime_value = Some(tierline_proto::common::Money {
        currency_code: "USD".into(),
        units: 10,
        nanos: 0,
    });
    assert_invalid(
        client.create_customer(create_req(p, vec![])).await,
        "customer.lifetime_value",
    );
    let mut p = profile("Ada");
    p.lifetime_value = Some(eur(-1));
    assert_invalid(
        client.create_customer(create_req(p, vec![])).await,
        "customer.lifetime_value",
    );
    let mut p = profile("Ada");
    p.significant_dates = vec![pb::SignificantDate {
        kind: pb::SignificantDateKind::Anniversary as i32,
        label: String::new(),
        year: 2023,
        month: 2,
        day: 29,
    }];
    assert_invalid(
        client.create_customer(create_req(p, vec![])).await,
        "customer.significant_dates[0].day",
    );
    let mut p = profile("Ada");
    p.postal_address = Some(pb::PostalAddress {
        region_code: "GBR".into(),
        ..Default::default()
    });
    assert_invalid(
        client.create_customer(create_req(p, vec![])).await,
        "customer.postal_address.region_code",
    );
    let mut p = profile("Ada");
    p.observations = "bell\u{7}".into();
    assert_invalid(
        client.create_customer(create_req(p, vec![])).await,
        "customer.observations",
    );
    assert_invalid(
        client
            .create_customer(pb::CreateCustomerRequest {
                customer: None,
                identities: vec![],
                idempotency_key: String::new(),
            })
            .await,
        "customer",
    );
    assert_invalid(
        client
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(profile("Ada")),
                identities: vec![],
                idempotency_key: "k".repeat(129),
            })
            .await,
        "idempotency_key",
    );

    // Ids.
    assert_invalid(
        client
            .get_customer(pb::GetCustomerRequest {
                id: "not-a-uuid".into(),
            })
            .await,
        "id",
    );
    assert_invalid(
        client
            .get_customer(pb::GetCustomerRequest { id: String::new() })
            .await,
        "id",
    );
    let missing = client
        .get_customer(pb::GetCustomerRequest {
            id: Uuid::now_v7().to_string(),
        })
        .await
        .expect_err("unknown id");
    assert_eq!(missing.code(), Code::NotFound);

    // Update.
    let ada = create(&mut client, profile("Ada"), vec![]).await;
    assert_invalid(
        client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    id: ada.id.clone(),
                    display_name: "Ada B".into(),
                    ..Default::default()
                }),
                update_mask: None,
                expected_version: None,
            })
            .await,
        "update_mask",
    );
    assert_invalid(
        client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    id: "42".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                expected_version: None,
            })
            .await,
        "customer.id",
    );

    // Identity references, lists, timeline, tiers.
    assert_invalid(
        add_identity(&mut client, &ada.id, email("ada@@example")).await,
        "identity.value",
    );
    assert_invalid(
        client
            .lookup_customers(pb::LookupCustomersRequest { identity: None })
            .await,
        "identity",
    );
    assert_invalid(
        client
            .resolve_customer(pb::ResolveCustomerRequest {
                identity: Some(IdentityRef {
                    kind: IdentityKind::Unspecified as i32,
                    value: "020 7946 0018".into(),
                    region_code: String::new(),
                }),
                display_name: String::new(),
            })
            .await,
        "identity.kind",
    );
    let mut bad_region = phone_ref("020 7946 0018");
    bad_region.region_code = "XX".into();
    assert_invalid(
        client
            .lookup_customers(pb::LookupCustomersRequest {
                identity: Some(bad_region),
            })
            .await,
        "identity.region_code",
    );
    assert_invalid(
        client
            .list_customers(pb::ListCustomersRequest {
                tier: 9,
                ..Default::default()
            })
            .await,
        "tier",
    );
    assert_invalid(
        client
            .list_customers(pb::ListCustomersRequest {
                page_size: -1,
                ..Default::default()
            })
            .await,
        "page_size",
    );
    let mut no_summary = interaction("", None);
    no_summary.channel = 0;
    let status = assert_invalid(
        client
            .record_interaction(pb::RecordInteractionRequest {
                customer_id: ada.id.clone(),
                interaction: Some(no_summary),
                idempotency_key: String::new(),
            })
            .await,
        "interaction.summary",
    );
    assert!(violated_fields(&status).contains(&"interaction.channel".to_owned()));
    assert_invalid(
        client
            .set_tier_override(pb::SetTierOverrideRequest {
                customer_id: ada.id.clone(),
                tier: WireTier::A as i32,
                reason: "  ".into(),
                expected_version: None,
            })
            .await,
        "reason",
    );
    assert_invalid(
        client
            .recompute_tiers(pb::RecomputeTiersRequest {
                policy: Some(cumulative(0.8, 0.6)),
                dry_run: true,
            })
            .await,
        "policy.cumulative.b_cumulative_share",
    );

    // Nothing bad was written.
    let all = list_all(&mut client, pb::ListCustomersRequest::default()).await;
    assert_eq!(ids(&all), [ada.id.as_str()]);
    assert_eq!(get(&mut client, &ada.id).await.version, 1);
    drop(client);
    server.stop().await;
}

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]

async fn create_reports_a_bad_idempotency_key_together_with_the_other_violations(pool: PgPool) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let status = client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(profile("")),
            identities: vec![phone("not a phone")],
            idempotency_key: "k".repeat(129),
        })
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "customer.display_name",
            "identities[0].value",
            "idempotency_key"
        ]
    );
    drop(client);
    server.stop().await;
}

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]

async fn cross_field_violations_are_named_by_their_request_path(pool: PgPool) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let mut churned = profile("Ada");
    churned.lifecycle_stage = pb::LifecycleStage::Churned as i32;
    assert_invalid(
        client
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(churned),
                identities: vec![],
                idempotency_key: String::new(),
            })
            .await,
        "customer.churn_reason",
    );
    let ada = create(&mut client, profile("Ada"), vec![]).await;
    assert_invalid(
        client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    id: ada.id.clone(),
                    unreasonable: true,
                    ..Default::default()
                }),
                update_mask: mask(&["unreasonable"]),
                expected_version: None,
            })
            .await,
        "customer.unreasonable_note",
    );
    drop(client);
    server.stop().await;
}

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]

async fn an_occur_time_outside_the_storable_range_is_invalid_argument_not_internal(pool: PgPool) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let ada = create(&mut client, profile("Ada"), vec![]).await;
    // About 6000 BC: representable in the time crate, not in PostgreSQL.
    let ancient = Timestamp {
        seconds: -250_000_000_000,
        nanos: 0,
    };
    let result = client
        .record_interaction(pb::RecordInteractionRequest {
            customer_id: ada.id.clone(),
            interaction: Some(interaction("call", Some(ancient))),
            idempotency_key: String::new(),
        })
        .await;
    assert_invalid(result, "interaction.occur_time");
    drop(client);
    server.stop().await;
}

// ---- 3. identity ownership --------------------------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn an_identity_held_by_one_customer_cannot_be_added_to_another_unless_both_mark_it_shared(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let switchboard = "020 7946 0101";
    let a = create(&mut client, profile("Acme Ltd"), vec![phone(switchboard)]).await;
    let b = create(&mut client, profile("Acme Trading"), vec![]).await;

    let taken = assert_error(
        add_identity(&mut client, &b.id, phone("+44 20 7946 0101")).await,
        Code::AlreadyExists,
        "IDENTITY_TAKEN",
    );
    assert!(taken.message().contains("+442079460101"), "{taken:?}");
    // B marking it shared is not enough while A holds it unshared.
    assert_error(
        add_identity(&mut client, &b.id, shared(phone(switchboard))).await,
        Code::AlreadyExists,
        "IDENTITY_TAKEN",
    );
    // Nor can a new customer be created with it; the create is all or nothing.
    assert_error(
        client
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(profile("Acme Holdings")),
                identities: vec![email("info@acme.example"), phone(switchboard)],
                idempotency_key: String::new(),
            })
            .await,
        Code::AlreadyExists,
        "IDENTITY_TAKEN",
    );
    assert!(
        lookup(&mut client, email_ref("info@acme.example"))
            .await
            .is_empty()
    );
    assert_eq!(
        list_all(&mut client, pb::ListCustomersRequest::default())
            .await
            .len(),
        2
    );

    // Once A marks it shared too, B may hold it.
    let a = add_identity(&mut client, &a.id, shared(phone(switchboard)))
        .await
        .expect("A marks its own number shared");
    assert_eq!(a.identities.len(), 1);
    assert!(a.identities[0].shared);
    let b = add_identity(&mut client, &b.id, shared(phone("+442079460101")))
        .await
        .expect("both mark it shared");
    let holders: BTreeSet<String> = lookup(&mut client, phone_ref(switchboard))
        .await
        .into_iter()
        .collect();
    assert_eq!(holders, BTreeSet::from([a.id.clone(), b.id.clone()]));
    let resolved = client
        .resolve_customer(pb::ResolveCustomerRequest {
            identity: Some(phone_ref(switchboard)),
            display_name: String::new(),
        })
        .await
        .expect("ResolveCustomer")
        .into_inner();
    assert!(!resolved.created);
    assert_eq!(
        resolved.customer.map(|c| c.id),
        Some(b.id.clone()),
        "the most recently updated holder"
    );
    assert_eq!(resolved.other_customer_ids, [a.id.as_str()]);

    // A third customer still cannot take it unshared, and A cannot unshare it while B holds it.
    let c = create(&mut client, profile("Someone"), vec![]).await;
    assert_error(
        add_identity(&mut client, &c.id, phone(switchboard)).await,
        Code::AlreadyExists,
        "IDENTITY_TAKEN",
    );
    assert_error(
        add_identity(&mut client, &a.id, phone(switchboard)).await,
        Code::AlreadyExists,
        "IDENTITY_TAKEN",
    );

    // Removing it from B leaves A the only holder.
    let b = remove_identity(&mut client, &b.id, phone_ref("+44 20 7946 0101"))
        .await
        .expect("RemoveIdentity");
    assert!(b.identities.is_empty());
    assert_eq!(
        lookup(&mut client, phone_ref(switchboard)).await,
        [a.id.as_str()]
    );
    assert_error(
        remove_identity(&mut client, &b.id, phone_ref(switchboard)).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    drop(client);
    server.stop().await;
}

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]

async fn concurrent_claims_of_one_identity_give_one_owner_and_already_exists_to_the_rest(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let mut customers = Vec::new();
    for i in 0..16 {
        customers.push(create(&mut client, profile(&format!("Caller {i}")), vec![]).await);
    }
    // The race is timing-dependent: several rounds, each on a fresh number.
    for round in 0..8 {
        let number = format!("020 7946 02{round:02}");
        let claims = customers.iter().map(|c| {
            let mut client = server.client();
            let id = c.id.clone();
            let identity = phone(&number);
            async move { add_identity(&mut client, &id, identity).await }
        });
        let results = futures::future::join_all(claims).await;
        let mut codes: HashMap<String, usize> = HashMap::new();
        for r in &results {
            let key = match r {
                Ok(_) => "OK".to_owned(),
                Err(s) => format!("{:?}", s.code()),
            };
            *codes.entry(key).or_default() += 1;
        }
        assert_eq!(
            codes,
            HashMap::from([("OK".to_owned(), 1), ("AlreadyExists".to_owned(), 15)]),
            "round {round}: one claim wins, the others are told the number is taken"
        );
        assert_eq!(lookup(&mut client, phone_ref(&number)).await.len(), 1);
    }
    drop(client);
    server.stop().await;
}

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]

async fn an_unshared_claim_racing_shared_claims_never_leaves_an_unshared_identity_with_two_holders(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let mut customers = Vec::new();
    for i in 0..16 {
        customers.push(create(&mut client, profile(&format!("Caller {i}")), vec![]).await);
    }
    // The race is timing-dependent: several rounds, each on a fresh number.
    for round in 0..8 {
        let number = format!("020 7946 03{round:02}");
        // Every fourth claim is unshared; the rest shared.
        let claims = customers.iter().enumerate().map(|(i, c)| {
            let mut client = server.client();
            let id = c.id.clone();
            let identity = if i % 4 == 0 {
                phone(&number)
            } else {
                shared(phone(&number))
            };
            async move { add_identity(&mut client, &id, identity).await }
        });
        let results = futures::future::join_all(claims).await;
        let codes: Vec<Code> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(|s| s.code()))
            .collect();
        assert!(
            codes.iter().all(|c| *c == Code::AlreadyExists),
            "round {round}: only OK or ALREADY_EXISTS: {codes:?}"
        );
        let holders = client
            .lookup_customers(pb::LookupCustomersRequest {
                identity: Some(phone_ref(&number)),
            })
            .await
            .expect("LookupCustomers")
            .into_inner()
            .customers;
        let unshared = holders
            .iter()
            .filter(|c| {
                c.identities
                    .iter()
                    .any(|i| i.value == holders_value(&number) && !i.shared)
            })
            .count();
        assert!(
            holders.len() == 1 || unshared == 0,
            "round {round}: {} holders, {unshared} of them holding it unshared",
            holders.len()
        );
    }
    drop(client);
    server.stop().await;
}

/// The E.164 form of a London number written locally ("020 7946 0300" → "+442079460300").
fn holders_value(local: &str) -> String {
    format!("+44{}", local.trim_start_matches('0').replace(' ', ""))
}

// ---- 4. resolve under concurrency -------------------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn twenty_concurrent_resolves_of_one_unknown_number_create_exactly_one_customer(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let written = [
        "020 7946 0400",
        "+44 20 7946 0400",
        "+442079460400",
        "(020) 7946-0400",
    ];
    let addr = server.addr;
    let shared_client = server.client();
    let calls = (0..20).map(|i| {
        let value = written[i % written.len()];
        let shared_client = shared_client.clone();
        async move {
            // Half the callers come on their own connection, like separate IVR nodes.
            let mut client = if i % 2 == 0 {
                tierline_proto::customer::customer_service_client::CustomerServiceClient::connect(
                    format!("http://{addr}"),
                )
                .await
                .expect("connect")
            } else {
                shared_client
            };
            client
                .resolve_customer(pb::ResolveCustomerRequest {
                    identity: Some(phone_ref(value)),
                    display_name: String::new(),
                })
                .await
                .expect("ResolveCustomer")
                .into_inner()
        }
    });
    let results = futures::future::join_all(calls).await;
    let ids: HashSet<String> = results
        .iter()
        .map(|r| r.customer.as_ref().expect("customer").id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "every caller gets the same customer: {ids:?}");
    assert_eq!(
        results.iter().filter(|r| r.created).count(),
        1,
        "exactly one call created it"
    );
    let id = ids.into_iter().next().expect("one id");

    let mut client = server.client();
    assert_eq!(
        lookup(&mut client, phone_ref("020 7946 0400")).await,
        [id.as_str()]
    );
    let created = get(&mut client, &id).await;
    assert_eq!(
        created.display_name, "+442079460400",
        "named after the number"
    );
    assert_eq!(created.lifecycle_stage, pb::LifecycleStage::Prospect as i32);
    assert_eq!(
        identity_values(&created),
        BTreeSet::from(["+442079460400".to_owned()])
    );
    assert_eq!(
        list_all(&mut client, pb::ListCustomersRequest::default())
            .await
            .len(),
        1
    );
    let again = client
        .resolve_customer(pb::ResolveCustomerRequest {
            identity: Some(phone_ref("+44 20 7946 0400")),
            display_name: "Named".into(),
        })
        .await
        .expect("ResolveCustomer")
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.customer.map(|c| c.id), Some(id));
    drop(client);
    server.stop().await;
}

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]

async fn a_prospect_named_after_a_long_identity_still_has_a_valid_display_name(pool: PgPool) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let member_id = format!("M-{}", "7".repeat(250));
    let resolved = client
        .resolve_customer(pb::ResolveCustomerRequest {
            identity: Some(IdentityRef {
                kind: IdentityKind::ExternalId as i32,
                value: member_id.clone(),
                region_code: String::new(),
            }),
            display_name: String::new(),
        })
        .await
        .expect("ResolveCustomer")
        .into_inner();
    let customer = resolved.customer.expect("customer");
    assert!(
        customer.display_name.chars().count() <= 200,
        "display_name has {} characters",
        customer.display_name.chars().count()
    );
    drop(client);
    server.stop().await;
}

// ---- 5. update ----------------------------------------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn update_changes_only_masked_fields_and_refuses_stale_versions_and_output_only_paths(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let mut p = profile("Ada");
    p.segment = "retail".into();
    p.observations = "prefers email".into();
    p.account_manager_id = "agent-1".into();
    let ada = create(&mut client, p, vec![phone("020 7946 0500")]).await;

    let updated = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: ada.id.clone(),
                display_name: "not masked, must not apply".into(),
                segment: "smb".into(),
                observations: String::new(),
                key_account: true,
                ..Default::default()
            }),
            update_mask: mask(&["segment", "observations"]),
            expected_version: Some(1),
        })
        .await
        .expect("UpdateCustomer")
        .into_inner();
    assert_eq!(updated.segment, "smb");
    assert_eq!(updated.observations, "", "a masked empty field is cleared");
    assert_eq!(updated.display_name, "Ada");
    assert!(!updated.key_account);
    assert_eq!(updated.account_manager_id, "agent-1");
    assert_eq!(identity_values(&updated), identity_values(&ada));
    assert_eq!(updated.version, 2);
    assert_eq!(updated.create_time, ada.create_time);
    assert_eq!(get(&mut client, &ada.id).await, updated);

    // A stale version is ABORTED and changes nothing.
    let stale = assert_error(
        client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    id: ada.id.clone(),
                    segment: "public-sector".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["segment"]),
                expected_version: Some(1),
            })
            .await,
        Code::Aborted,
        "STALE_VERSION",
    );
    assert!(stale.message().contains("version 2"), "{stale:?}");
    assert_eq!(get(&mut client, &ada.id).await.segment, "smb");
    assert_invalid(
        client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    id: ada.id.clone(),
                    segment: "x".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["segment"]),
                expected_version: Some(0),
            })
            .await,
        "expected_version",
    );

    // Churned needs a reason; the violation is named by its request path.
    let churned = pb::Customer {
        id: ada.id.clone(),
        lifecycle_stage: pb::LifecycleStage::Churned as i32,
        ..Default::default()
    };
    let status = assert_invalid(
        client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(churned.clone()),
                update_mask: mask(&["lifecycle_stage"]),
                expected_version: Some(2),
            })
            .await,
        "customer.churn_reason",
    );
    assert_eq!(violated_fields(&status), ["customer.churn_reason"]);
    let left = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                churn_reason: "competitor price".into(),
                ..churned
            }),
            update_mask: mask(&["lifecycle_stage", "churn_reason"]),
            expected_version: Some(2),
        })
        .await
        .expect("churned with a reason")
        .into_inner();
    assert_eq!(left.lifecycle_stage, pb::LifecycleStage::Churned as i32);
    assert_eq!(left.churn_reason, "competitor price");
    let back = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: ada.id.clone(),
                lifecycle_stage: pb::LifecycleStage::Active as i32,
                ..Default::default()
            }),
            update_mask: mask(&["lifecycle_stage"]),
            expected_version: None,
        })
        .await
        .expect("back to active")
        .into_inner();
    assert_eq!(back.churn_reason, "", "leaving churned clears the reason");
    assert_eq!(back.version, 4);

    // Output-only and unknown paths.
    for path in ["tier", "identities", "version", "satisfaction", "nickname"] {
        let status = assert_invalid(
            client
                .update_customer(pb::UpdateCustomerRequest {
                    customer: Some(pb::Customer {
                        id: ada.id.clone(),
                        tier: WireTier::A as i32,
                        ..Default::default()
                    }),
                    update_mask: mask(&[path]),
                    expected_version: None,
                })
                .await,
            "update_mask",
        );
        assert!(status.message().contains(path), "{status:?}");
    }
    let unchanged = get(&mut client, &ada.id).await;
    assert_eq!(unchanged.tier, WireTier::C as i32);
    assert_eq!(unchanged.version, 4);

    // Ten writers racing against the same version: exactly one wins, the rest are ABORTED.
    let racing = (0..10).map(|i| {
        let mut client = server.client();
        let id = ada.id.clone();
        async move {
            client
                .update_customer(pb::UpdateCustomerRequest {
                    customer: Some(pb::Customer {
                        id,
                        segment: format!("writer-{i}"),
                        ..Default::default()
                    }),
                    update_mask: mask(&["segment"]),
                    expected_version: Some(4),
                })
                .await
        }
    });
    let results = futures::future::join_all(racing).await;
    let winners: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|c| c.get_ref().segment.clone()))
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|s| s.code() == Code::Aborted),
        "{results:?}"
    );
    let after = get(&mut client, &ada.id).await;
    assert_eq!(
        (after.version, after.segment.clone()),
        (5, winners[0].clone())
    );

    let unknown = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: Uuid::now_v7().to_string(),
                segment: "x".into(),
                ..Default::default()
            }),
            update_mask: mask(&["segment"]),
            expected_version: None,
        })
        .await
        .expect_err("unknown customer");
    assert_eq!(unknown.code(), Code::NotFound);
    drop(client);
    server.stop().await;
}

// ---- 6. list ------------------------------------------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn list_filters_by_tier_segment_stage_manager_and_key_account_and_pages_every_customer_once(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let segments = ["retail", "smb", "public-sector"];
    let stages = [
        pb::LifecycleStage::Prospect,
        pb::LifecycleStage::New,
        pb::LifecycleStage::Active,
        pb::LifecycleStage::Loyal,
    ];
    let mut created = Vec::new();
    for i in 0..25usize {
        let mut p = profile(&format!("Customer {i:02}"));
        p.segment = segments[i % 3].into();
        p.lifecycle_stage = stages[i % 4] as i32;
        if i % 5 == 0 {
            p.account_manager_id = "agent-7".into();
        }
        p.key_account = i % 6 == 0;
        created.push(create(&mut client, p, vec![]).await);
    }
    let all_ids = ids(&created);
    let expect = |pred: &dyn Fn(usize) -> bool| -> Vec<String> {
        (0..25)
            .filter(|i| pred(*i))
            .map(|i| all_ids[i].clone())
            .collect()
    };

    // Three pages of 10, 10, 5, oldest first, each customer once.
    let first = client
        .list_customers(pb::ListCustomersRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(first.customers.len(), 10);
    assert!(!first.next_page_token.is_empty());
    let second = client
        .list_customers(pb::ListCustomersRequest {
            page_size: 10,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(second.customers.len(), 10);
    let third = client
        .list_customers(pb::ListCustomersRequest {
            page_size: 10,
            page_token: second.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .expect("page 3")
        .into_inner();
    assert_eq!(third.customers.len(), 5);
    assert!(
        third.next_page_token.is_empty(),
        "the last page has no token"
    );
    let paged: Vec<String> = [first.customers, second.customers, third.customers]
        .iter()
        .flat_map(|page| ids(page))
        .collect();
    assert_eq!(
        paged, all_ids,
        "every customer exactly once, in creation order"
    );
    // A page size that divides the total.
    let by_five = list_all(
        &mut client,
        pb::ListCustomersRequest {
            page_size: 5,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&by_five), all_ids);

    let lister = client.clone();
    let filtered = |request: pb::ListCustomersRequest| {
        let mut client = lister.clone();
        async move { ids(&list_all(&mut client, request).await) }
    };
    assert_eq!(
        filtered(pb::ListCustomersRequest {
            segment: "smb".into(),
            page_size: 3,
            ..Default::default()
        })
        .await,
        expect(&|i| i % 3 == 1)
    );
    assert_eq!(
        filtered(pb::ListCustomersRequest {
            lifecycle_stage: pb::LifecycleStage::Loyal as i32,
            ..Default::default()
        })
        .await,
        expect(&|i| i % 4 == 3)
    );
    assert_eq!(
        filtered(pb::ListCustomersRequest {
            account_manager_id: "agent-7".into(),
            page_size: 2,
            ..Default::default()
        })
        .await,
        expect(&|i| i % 5 == 0)
    );
    assert_eq!(
        filtered(pb::ListCustomersRequest {
            key_accounts_only: true,
            ..Default::default()
        })
        .await,
        expect(&|i| i % 6 == 0)
    );
    assert_eq!(
        filtered(pb::ListCustomersRequest {
            segment: "retail".into(),
            key_accounts_only: true,
            lifecycle_stage: pb::LifecycleStage::Prospect as i32,
            ..Default::default()
        })
        .await,
        expect(&|i| i % 3 == 0 && i % 6 == 0 && i % 4 == 0)
    );
    assert!(
        filtered(pb::ListCustomersRequest {
            segment: "nobody".into(),
            ..Default::default()
        })
        .await
        .is_empty()
    );

    // Tier in force: overrides count.
    for i in [3, 17] {
        client
            .set_tier_override(pb::SetTierOverrideRequest {
                customer_id: all_ids[i].clone(),
                tier: WireTier::A as i32,
                reason: "strategic account".into(),
                expected_version: None,
            })
            .await
            .expect("SetTierOverride");
    }
    assert_eq!(
        filtered(pb::ListCustomersRequest {
            tier: tier(WireTier::A),
            ..Default::default()
        })
        .await,
        expect(&|i| i == 3 || i == 17)
    );
    assert_eq!(
        filtered(pb::ListCustomersRequest {
            tier: tier(WireTier::C),
            page_size: 7,
            ..Default::default()
        })
        .await,
        expect(&|i| i != 3 && i != 17)
    );
    assert!(
        filtered(pb::ListCustomersRequest {
            tier: tier(WireTier::B),
            ..Default::default()
        })
        .await
        .is_empty()
    );

    for token in ["not a token!", "AAAA", "%%%"] {
        assert_invalid(
            client
                .list_customers(pb::ListCustomersRequest {
                    page_token: token.into(),
                    ..Default::default()
                })
                .await,
            "page_token",
        );
    }
    assert_invalid(
        client
            .list_customers(pb::ListCustomersRequest {
                lifecycle_stage: 99,
                ..Default::default()
            })
            .await,
        "lifecycle_stage",
    );
    drop(client);
    server.stop().await;
}

// ---- 7. soft delete -----------------------------------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn a_deleted_customer_vanishes_from_lookups_frees_its_phone_and_undeletes_once_it_is_free_again(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let number = "020 7946 0700";
    let a = create(&mut client, profile("Ada"), vec![phone(number)]).await;
    let b = create(&mut client, profile("Bea"), vec![]).await;

    assert_error(
        client
            .delete_customer(pb::DeleteCustomerRequest {
                id: a.id.clone(),
                expected_version: Some(7),
            })
            .await,
        Code::Aborted,
        "STALE_VERSION",
    );
    let deleted = client
        .delete_customer(pb::DeleteCustomerRequest {
            id: a.id.clone(),
            expected_version: Some(1),
        })
        .await
        .expect("DeleteCustomer")
        .into_inner();
    assert!(deleted.delete_time.is_some());
    assert_eq!(deleted.version, 2);

    assert!(lookup(&mut client, phone_ref(number)).await.is_empty());
    let listed = list_all(&mut client, pb::ListCustomersRequest::default()).await;
    assert_eq!(ids(&listed), [b.id.as_str()]);
    let with_deleted = list_all(
        &mut client,
        pb::ListCustomersRequest {
            show_deleted: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&with_deleted), [a.id.clone(), b.id.clone()]);
    let fetched = get(&mut client, &a.id).await;
    assert_eq!(fetched.id, a.id);
    assert!(
        fetched.delete_time.is_some(),
        "Get still returns it, marked deleted"
    );
    assert_eq!(
        identity_values(&fetched),
        BTreeSet::from(["+442079460700".to_owned()])
    );

    // A deleted customer takes no changes and no new contacts.
    assert_error(
        client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    id: a.id.clone(),
                    segment: "smb".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["segment"]),
                expected_version: None,
            })
            .await,
        Code::FailedPrecondition,
        "CUSTOMER_DELETED",
    );
    assert_error(
        client
            .record_interaction(pb::RecordInteractionRequest {
                customer_id: a.id.clone(),
                interaction: Some(interaction("call", None)),
                idempotency_key: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        "CUSTOMER_DELETED",
    );

    // Its number is free for someone else.
    add_identity(&mut client, &b.id, phone("+44 20 7946 0700"))
        .await
        .expect("the freed number can be claimed");
    assert_eq!(
        lookup(&mut client, phone_ref(number)).await,
        [b.id.as_str()]
    );

    let blocked = assert_error(
        client
            .undelete_customer(pb::UndeleteCustomerRequest { id: a.id.clone() })
            .await,
        Code::FailedPrecondition,
        "IDENTITY_CLAIMED",
    );
    assert_eq!(precondition_types(&blocked), ["IDENTITY_CLAIMED"]);
    assert!(get(&mut client, &a.id).await.delete_time.is_some());

    remove_identity(&mut client, &b.id, phone_ref(number))
        .await
        .expect("RemoveIdentity");
    let restored = client
        .undelete_customer(pb::UndeleteCustomerRequest { id: a.id.clone() })
        .await
        .expect("UndeleteCustomer")
        .into_inner();
    assert!(restored.delete_time.is_none());
    assert_eq!(
        lookup(&mut client, phone_ref(number)).await,
        [a.id.as_str()]
    );
    let listed = list_all(&mut client, pb::ListCustomersRequest::default()).await;
    assert_eq!(ids(&listed), [a.id.clone(), b.id.clone()]);
    assert_error(
        client
            .undelete_customer(pb::UndeleteCustomerRequest { id: a.id.clone() })
            .await,
        Code::FailedPrecondition,
        "CUSTOMER_NOT_DELETED",
    );
    drop(client);
    server.stop().await;
}

// ---- 8. timeline --------------------------------------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn the_timeline_lists_interactions_newest_first_in_pages_and_replays_an_idempotency_key(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let ada = create(&mut client, profile("Ada"), vec![]).await;
    let t0 = time::OffsetDateTime::now_utc() - time::Duration::days(3);
    let middle = record_interaction(
        &mut client,
        &ada.id,
        "billing question",
        Some(ts(t0 + time::Duration::hours(1))),
        "",
    )
    .await;
    let oldest = record_interaction(&mut client, &ada.id, "broken router", Some(ts(t0)), "").await;
    let newest = record_interaction(
        &mut client,
        &ada.id,
        "complaint about the wait",
        Some(ts(t0 + time::Duration::hours(2))),
        "",
    )
    .await;
    assert_eq!(middle.customer_id, ada.id);
    assert_eq!(oldest.occur_time, Some(ts(t0)));
    assert_eq!(newest.channel, WireChannel::Voice as i32);

    let page1 = client
        .list_interactions(pb::ListInteractionsRequest {
            customer_id: ada.id.clone(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(
        ids_of(&page1.interactions),
        [newest.id.clone(), middle.id.clone()]
    );
    assert!(!page1.next_page_token.is_empty());
    let page2 = client
        .list_interactions(pb::ListInteractionsRequest {
            customer_id: ada.id.clone(),
            page_size: 2,
            page_token: page1.next_page_token.clone(),
        })
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(ids_of(&page2.interactions), [oldest.id.as_str()]);
    assert!(page2.next_page_token.is_empty());

    // Replaying a key returns the first interaction and records nothing new.
    let first = record_interaction(&mut client, &ada.id, "follow-up call", None, "call-42").await;
    let replay = record_interaction(&mut client, &ada.id, "follow-up call", None, "call-42").await;
    assert_eq!(replay.id, first.id);
    assert_eq!(replay, first);
    let all = list_interactions(&mut client, &ada.id).await;
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].id, first.id, "no occur_time means now, the newest");

    // The same key for another customer is refused.
    let bea = create(&mut client, profile("Bea"), vec![]).await;
    assert_error(
        client
            .record_interaction(pb::RecordInteractionRequest {
                customer_id: bea.id.clone(),
                interaction: Some(interaction("follow-up call", None)),
                idempotency_key: "call-42".into(),
            })
            .await,
        Code::FailedPrecondition,
        "IDEMPOTENCY_KEY_REUSED",
    );
    assert!(list_interactions(&mut client, &bea.id).await.is_empty());

    // Unknown customers.
    let nobody = Uuid::now_v7().to_string();
    for key in ["", "call-43"] {
        assert_error(
            client
                .record_interaction(pb::RecordInteractionRequest {
                    customer_id: nobody.clone(),
                    interaction: Some(interaction("call", None)),
                    idempotency_key: key.into(),
                })
                .await,
            Code::NotFound,
            "NOT_FOUND",
        );
    }
    assert_error(
        client
            .list_interactions(pb::ListInteractionsRequest {
                customer_id: nobody,
                page_size: 0,
                page_token: String::new(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_invalid(
        client
            .list_interactions(pb::ListInteractionsRequest {
                customer_id: ada.id.clone(),
                page_size: 0,
                page_token: "garbage!".into(),
            })
            .await,
        "page_token",
    );
    drop(client);
    server.stop().await;
}

fn ids_of(interactions: &[pb::Interaction]) -> Vec<String> {
    interactions.iter().map(|i| i.id.clone()).collect()
}

// ---- 9. satisfaction ----------------------------------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn satisfaction_is_perceived_over_expected_and_the_profile_summary_counts_each_record_once(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let ada = create(&mut client, profile("Ada"), vec![]).await;
    let summary = ada.satisfaction.expect("summary");
    assert_eq!(summary.count, 0);
    assert_eq!(summary.mean_satisfaction, 0.0);

    let first = record_satisfaction(&mut client, &ada.id, 8.0, 6.0, "followup-1").await;
    assert_eq!(first.satisfaction, 0.75);
    assert_eq!(first.expected, 8.0);
    assert_eq!(first.perceived, 6.0);
    assert_eq!(first.customer_id, ada.id);
    let after_one = get(&mut client, &ada.id).await;
    let s = after_one.satisfaction.expect("summary");
    assert_eq!(s.count, 1);
    assert_eq!(s.mean_satisfaction, 0.75);
    assert_eq!(s.mean_expected, 8.0);
    assert_eq!(s.mean_perceived, 6.0);
    assert_eq!(s.last_satisfaction, 0.75);
    assert!(s.last_record_time.is_some());
    assert!(after_one.version > ada.version);

    // Replays count once.
    let replay = record_satisfaction(&mut client, &ada.id, 8.0, 6.0, "followup-1").await;
    assert_eq!(replay.id, first.id);
    assert_eq!(
        get(&mut client, &ada.id)
            .await
            .satisfaction
            .expect("summary")
            .count,
        1
    );

    let second = record_satisfaction(&mut client, &ada.id, 5.0, 7.5, "").await;
    assert_eq!(second.satisfaction, 1.5, "expectations exceeded");
    let s = get(&mut client, &ada.id)
        .await
        .satisfaction
        .expect("summary");
    assert_eq!(s.count, 2);
    assert!((s.mean_satisfaction - 1.125).abs() < 1e-12);
    assert!((s.mean_expected - 6.5).abs() < 1e-12);
    assert!((s.mean_perceived - 6.75).abs() < 1e-12);
    assert_eq!(s.last_satisfaction, 1.5);

    // Concurrent follow-ups are all counted.
    let concurrent = (0..10).map(|_| {
        let mut client = server.client();
        let id = ada.id.clone();
        async move { record_satisfaction(&mut client, &id, 10.0, 5.0, "").await }
    });
    futures::future::join_all(concurrent).await;
    let s = get(&mut client, &ada.id)
        .await
        .satisfaction
        .expect("summary");
    assert_eq!(s.count, 12);
    assert!((s.mean_satisfaction - (0.75 + 1.5 + 10.0 * 0.5) / 12.0).abs() < 1e-12);
    assert!((s.mean_expected - (8.0 + 5.0 + 100.0) / 12.0).abs() < 1e-12);

    let records = client
        .list_satisfaction_records(pb::ListSatisfactionRecordsRequest {
            customer_id: ada.id.clone(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect("ListSatisfactionRecords")
        .into_inner()
        .records;
    assert_eq!(records.len(), 12);
    let record_ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        record_ids[10..],
        [second.id.clone(), first.id.clone()],
        "newest first"
    );
    let page = client
        .list_satisfaction_records(pb::ListSatisfactionRecordsRequest {
            customer_id: ada.id.clone(),
            page_size: 5,
            page_token: String::new(),
        })
        .await
        .expect("ListSatisfactionRecords")
        .into_inner();
    let rest = client
        .list_satisfaction_records(pb::ListSatisfactionRecordsRequest {
            customer_id: ada.id.clone(),
            page_size: 100,
            page_token: page.next_page_token.clone(),
        })
        .await
        .expect("ListSatisfactionRecords")
        .into_inner();
    let paged: Vec<String> = page
        .records
        .iter()
        .chain(&rest.records)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(paged, record_ids, "pages continue where the last one ended");

    // a = 0 would make C undefined.
    for (a, b, field) in [
        (0.0, 5.0, "record.expected"),
        (-1.0, 5.0, "record.expected"),
        (11.0, 5.0, "record.expected"),
        (f64::NAN, 5.0, "record.expected"),
        (5.0, 10.5, "record.perceived"),
    ] {
        assert_invalid(
            client
                .record_satisfaction(pb::RecordSatisfactionRequest {
                    customer_id: ada.id.clone(),
                    record: Some(satisfaction(a, b)),
                    idempotency_key: String::new(),
                })
                .await,
            field,
        );
    }
    assert_invalid(
        client
            .record_satisfaction(pb::RecordSatisfactionRequest {
                customer_id: ada.id.clone(),
                record: None,
                idempotency_key: String::new(),
            })
            .await,
        "record",
    );
    assert_eq!(
        get(&mut client, &ada.id)
            .await
            .satisfaction
            .expect("summary")
            .count,
        12
    );
    assert_error(
        client
            .record_satisfaction(pb::RecordSatisfactionRequest {
                customer_id: Uuid::now_v7().to_string(),
                record: Some(satisfaction(8.0, 8.0)),
                idempotency_key: String::new(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    drop(client);
    server.stop().await;
}

// ---- 10. tiers ----------------------------------------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn recompute_assigns_abc_tiers_by_lifetime_value_and_overrides_survive_it(pool: PgPool) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    // Total 10,000 EUR: A above 200 (2%), C below 50 (0.5%).
    let with_value = |name: &str, units: i64| {
        let mut p = profile(name);
        p.lifetime_value = Some(eur(units));
        p
    };
    let whale = create(&mut client, with_value("Whale", 9000), vec![]).await;
    let big = create(&mut client, with_value("Big", 300), vec![]).await;
    let mid = create(&mut client, with_value("Mid", 100), vec![]).await;
    let mut small = Vec::new();
    for i in 0..30 {
        small.push(
            create(
                &mut client,
                with_value(&format!("Small {i:02}"), 20),
                vec![],
            )
            .await,
        );
    }

    // A dry run reports without changing anyone.
    let dry = recompute(&mut client, None, true).await;
    assert_eq!(dry.customers_evaluated, 33);
    assert_eq!(dry.customers_changed, 3);
    assert_eq!(
        (dry.tier_a_count, dry.tier_b_count, dry.tier_c_count),
        (2, 1, 30)
    );
    assert_eq!(micros(dry.total_lifetime_value.as_ref()), 10_000_000_000);
    let unchanged = get(&mut client, &whale.id).await;
    assert_eq!(unchanged.computed_tier, WireTier::C as i32);
    assert_eq!(unchanged.version, whale.version);

    // An override set before the run keeps the tier in force.
    let overridden = client
        .set_tier_override(pb::SetTierOverrideRequest {
            customer_id: mid.id.clone(),
            tier: WireTier::A as i32,
            reason: "strategic partner".into(),
            expected_version: Some(1),
        })
        .await
        .expect("SetTierOverride")
        .into_inner();
    assert_eq!(overridden.tier, WireTier::A as i32);
    assert_eq!(overridden.computed_tier, WireTier::C as i32);
    let o = overridden.tier_override.clone().expect("override");
    assert_eq!(o.reason, "strategic partner");
    assert_eq!(o.tier, WireTier::A as i32);
    assert!(o.set_time.is_some());

    let report = recompute(&mut client, None, false).await;
    assert_eq!(report.customers_evaluated, 33);
    assert_eq!(report.customers_changed, 3);
    assert_eq!(
        (
            report.tier_a_count,
            report.tier_b_count,
            report.tier_c_count
        ),
        (3, 0, 30),
        "counts are of the tier in force"
    );
    assert_eq!(report.overridden_count, 1);
    let Some(pb::tiering_policy::Method::Share(share)) = report.policy.and_then(|p| p.method)
    else {
        panic!("the configured policy is the share method");
    };
    assert_eq!((share.a_min_share, share.c_max_share), (0.02, 0.005));

    let tiers = |c: &pb::Customer| (c.tier, c.computed_tier);
    assert_eq!(
        tiers(&get(&mut client, &whale.id).await),
        (WireTier::A as i32, WireTier::A as i32)
    );
    assert_eq!(
        tiers(&get(&mut client, &big.id).await),
        (WireTier::A as i32, WireTier::A as i32)
    );
    let mid_now = get(&mut client, &mid.id).await;
    assert_eq!(
        tiers(&mid_now),
        (WireTier::A as i32, WireTier::B as i32),
        "the override survives; the computed tier moves"
    );
    assert!(mid_now.tier_override.is_some());
    for s in &small {
        assert_eq!(
            tiers(&get(&mut client, &s.id).await),
            (WireTier::C as i32, WireTier::C as i32)
        );
    }
    let again = recompute(&mut client, None, false).await;
    assert_eq!(again.customers_changed, 0, "a second run changes nothing");

    let cleared = client
        .clear_tier_override(pb::ClearTierOverrideRequest {
            customer_id: mid.id.clone(),
            expected_version: Some(mid_now.version),
        })
        .await
        .expect("ClearTierOverride")
        .into_inner();
    assert_eq!(tiers(&cleared), (WireTier::B as i32, WireTier::B as i32));
    assert!(cleared.tier_override.is_none());

    // Cumulative shares from the request: A while the customers before make under 50%, B under
    // 95.5%. Before Whale 0% (A), before Big 90% (B), before Mid 93% (B), then the 20s from 94%
    // in steps of 0.2%: the first eight (ties broken by id, so the first created) are B.
    let cum = recompute(&mut client, Some(cumulative(0.5, 0.955)), false).await;
    assert_eq!(
        (cum.tier_a_count, cum.tier_b_count, cum.tier_c_count),
        (1, 10, 22)
    );
    assert_eq!(cum.customers_changed, 1 + 8, "Big A→B, eight smalls C→B");
    assert_eq!(
        tiers(&get(&mut client, &big.id).await),
        (WireTier::B as i32, WireTier::B as i32)
    );
    for (i, s) in small.iter().enumerate() {
        let expected = if i < 8 { WireTier::B } else { WireTier::C };
        assert_eq!(
            get(&mut client, &s.id).await.computed_tier,
            expected as i32,
            "small {i}"
        );
    }
    drop(client);
    server.stop().await;
}

/// xorshift64: reproducible pseudo-random values without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn recompute_in_sql_agrees_with_the_domain_classifier_on_two_hundred_random_customers(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let values: Vec<i64> = (0..200)
        .map(|i| {
            if i % 23 == 0 {
                0
            } else if i % 11 == 0 {
                // A group of ties, to exercise the id tie-break.
                250_000_000
            } else {
                // Log-uniform from 1 to 10,000 EUR, in micro-units.
                (1e6 * 10f64.powf(4.0 * rng.unit())) as i64
            }
        })
        .collect();
    let creates = values.iter().enumerate().map(|(i, v)| {
        let mut client = server.client();
        let mut p = profile(&format!("Random {i:03}"));
        p.lifetime_value = Some(eur_micros(*v));
        async move { create(&mut client, p, vec![]).await }
    });
    let created: Vec<pb::Customer> = futures::stream::iter(creates)
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(created.len(), 200);

    let mut client = server.client();
    let share = TieringPolicy::default();
    let cumulative_policy = TieringPolicy::Cumulative {
        a_cumulative_share: 0.6,
        b_cumulative_share: 0.9,
    };
    let mut previous: Option<HashMap<String, i32>> = None;
    for (policy, wire) in [
        (share, None),
        (cumulative_policy, Some(cumulative(0.6, 0.9))),
    ] {
        let report = recompute(&mut client, wire, false).await;
        let listed = list_all(&mut client, pb::ListCustomersRequest::default()).await;
        assert_eq!(listed.len(), 200);
        let pairs: Vec<(Uuid, i64)> = listed
            .iter()
            .map(|c| {
                (
                    Uuid::parse_str(&c.id).expect("uuid"),
                    micros(c.lifetime_value.as_ref()),
                )
            })
            .collect();
        let expected = classify(&pairs, &policy);
        let mut counts = [0i64; 3];
        let mut now: HashMap<String, i32> = HashMap::new();
        for (c, want) in listed.iter().zip(&expected) {
            assert_eq!(
                c.computed_tier,
                want.to_wire() as i32,
                "{policy:?}: customer {} with {} micros",
                c.id,
                micros(c.lifetime_value.as_ref())
            );
            assert_eq!(c.tier, c.computed_tier);
            counts[*want as usize] += 1;
            now.insert(c.id.clone(), c.computed_tier);
        }
        assert!(
            counts.iter().all(|n| *n > 0),
            "the data set exercises every tier under {policy:?}: {counts:?}"
        );
        assert_eq!(
            [
                report.tier_a_count,
                report.tier_b_count,
                report.tier_c_count
            ],
            counts
        );
        assert_eq!(report.customers_evaluated, 200);
        assert_eq!(
            micros(report.total_lifetime_value.as_ref()),
            values.iter().sum::<i64>()
        );
        let changed = match &previous {
            None => now.values().filter(|t| **t != WireTier::C as i32).count(),
            Some(before) => now.iter().filter(|(id, t)| before[*id] != **t).count(),
        };
        assert_eq!(report.customers_changed, changed as i64);
        previous = Some(now);
    }
    drop(client);
    server.stop().await;
}

// ---- 11. merge ----------------------------------------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn merging_moves_the_timeline_and_value_to_the_survivor_and_undo_puts_everything_back(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let mut pa = profile("Ada Lovelace");
    pa.lifetime_value = Some(eur(100));
    let a = create(&mut client, pa, vec![phone("020 7946 0501")]).await;
    let mut pb_ = profile("A. Lovelace");
    pb_.lifetime_value = Some(eur_micros(50_500_000));
    let b = create(
        &mut client,
        pb_,
        vec![phone("020 7946 0502"), email("ada@example.com")],
    )
    .await;
    let a_call = record_interaction(&mut client, &a.id, "a's call", None, "").await;
    let b_calls = [
        record_interaction(&mut client, &b.id, "b's first call", None, "").await,
        record_interaction(&mut client, &b.id, "b's second call", None, "").await,
    ];
    record_satisfaction(&mut client, &a.id, 10.0, 10.0, "").await;
    record_satisfaction(&mut client, &b.id, 8.0, 6.0, "").await;

    let merge = client
        .merge_customers(pb::MergeCustomersRequest {
            survivor_id: a.id.clone(),
            merged_id: b.id.clone(),
            reason: "same person, two sign-ups".into(),
        })
        .await
        .expect("MergeCustomers")
        .into_inner();
    assert_eq!(
        (merge.survivor_id.as_str(), merge.merged_id.as_str()),
        (a.id.as_str(), b.id.as_str())
    );
    assert_eq!(merge.identities_moved, 2);
    assert_eq!(merge.interactions_moved, 2);
    assert_eq!(merge.satisfaction_records_moved, 1);
    assert!(merge.undo_time.is_none());

    let survivor = get(&mut client, &a.id).await;
    assert_eq!(
        identity_values(&survivor),
        BTreeSet::from([
            "+442079460501".to_owned(),
            "+442079460502".to_owned(),
            "ada@example.com".to_owned()
        ])
    );
    assert_eq!(micros(survivor.lifetime_value.as_ref()), 150_500_000);
    let s = survivor.satisfaction.expect("summary");
    assert_eq!(s.count, 2);
    assert!((s.mean_satisfaction - 0.875).abs() < 1e-12);
    assert_eq!(
        get(&mut client, &b.id).await,
        survivor,
        "the merged id reads as the survivor"
    );
    assert_eq!(
        lookup(&mut client, phone_ref("020 7946 0502")).await,
        [a.id.as_str()]
    );
    assert_eq!(
        lookup(&mut client, email_ref("ADA@example.com")).await,
        [a.id.as_str()]
    );
    let timeline: BTreeSet<String> = ids_of(&list_interactions(&mut client, &a.id).await)
        .into_iter()
        .collect();
    assert_eq!(
        timeline,
        BTreeSet::from([
            a_call.id.clone(),
            b_calls[0].id.clone(),
            b_calls[1].id.clone()
        ])
    );
    assert_eq!(list_interactions(&mut client, &b.id).await.len(), 3);
    assert_eq!(
        ids(&list_all(&mut client, pb::ListCustomersRequest::default()).await),
        [a.id.as_str()]
    );
    // The merged id keeps working for new contacts (they land on the survivor) but takes no edits.
    let late = record_interaction(&mut client, &b.id, "called on the old number", None, "").await;
    assert_eq!(late.customer_id, a.id);
    assert_error(
        client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    id: b.id.clone(),
                    segment: "smb".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["segment"]),
                expected_version: None,
            })
            .await,
        Code::FailedPrecondition,
        "CUSTOMER_MERGED",
    );

    let undone = client
        .undo_merge(pb::UndoMergeRequest {
            merge_id: merge.id.clone(),
        })
        .await
        .expect("UndoMerge")
        .into_inner();
    assert!(undone.undo_time.is_some());
    let b_back = get(&mut client, &b.id).await;
    assert_eq!(b_back.id, b.id);
    assert!(b_back.merged_into_id.is_empty());
    assert_eq!(identity_values(&b_back), identity_values(&b));
    assert_eq!(micros(b_back.lifetime_value.as_ref()), 50_500_000);
    let bs = b_back.satisfaction.expect("summary");
    assert_eq!((bs.count, bs.mean_satisfaction), (1, 0.75));
    let a_back = get(&mut client, &a.id).await;
    assert_eq!(identity_values(&a_back), identity_values(&a));
    assert_eq!(micros(a_back.lifetime_value.as_ref()), 100_000_000);
    let as_ = a_back.satisfaction.expect("summary");
    assert_eq!((as_.count, as_.mean_satisfaction), (1, 1.0));
    let b_timeline: BTreeSet<String> = ids_of(&list_interactions(&mut client, &b.id).await)
        .into_iter()
        .collect();
    assert_eq!(
        b_timeline,
        BTreeSet::from([b_calls[0].id.clone(), b_calls[1].id.clone()])
    );
    let a_timeline: BTreeSet<String> = ids_of(&list_interactions(&mut client, &a.id).await)
        .into_iter()
        .collect();
    assert_eq!(
        a_timeline,
        BTreeSet::from([a_call.id.clone(), late.id.clone()]),
        "what arrived after the merge stays with the survivor"
    );
    assert_eq!(
        lookup(&mut client, phone_ref("020 7946 0502")).await,
        [b.id.as_str()]
    );
    assert_eq!(
        ids(&list_all(&mut client, pb::ListCustomersRequest::default()).await),
        [a.id.clone(), b.id.clone()]
    );

    assert_error(
        client
            .undo_merge(pb::UndoMergeRequest {
                merge_id: merge.id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "MERGE_ALREADY_UNDONE",
    );
    let status = assert_invalid(
        client
            .merge_customers(pb::MergeCustomersRequest {
                survivor_id: a.id.clone(),
                merged_id: a.id.to_uppercase(),
                reason: "oops".into(),
            })
            .await,
        "merged_id",
    );
    assert_eq!(violated_fields(&status), ["merged_id"]);
    assert_error(
        client
            .merge_customers(pb::MergeCustomersRequest {
                survivor_id: a.id.clone(),
                merged_id: Uuid::now_v7().to_string(),
                reason: "typo".into(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_error(
        client
            .undo_merge(pb::UndoMergeRequest {
                merge_id: Uuid::now_v7().to_string(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );

    // A merge whose survivor was merged on cannot be undone until that later merge is.
    let c = create(&mut client, profile("Countess Lovelace"), vec![]).await;
    let b_into_a = client
        .merge_customers(pb::MergeCustomersRequest {
            survivor_id: a.id.clone(),
            merged_id: b.id.clone(),
            reason: "again".into(),
        })
        .await
        .expect("merge B into A")
        .into_inner();
    let a_into_c = client
        .merge_customers(pb::MergeCustomersRequest {
            survivor_id: c.id.clone(),
            merged_id: a.id.clone(),
            reason: "and again".into(),
        })
        .await
        .expect("merge A into C")
        .into_inner();
    assert_eq!(get(&mut client, &b.id).await.id, c.id, "merges chain");
    assert_eq!(
        lookup(&mut client, phone_ref("020 7946 0502")).await,
        [c.id.as_str()]
    );
    assert_error(
        client
            .undo_merge(pb::UndoMergeRequest {
                merge_id: b_into_a.id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "SURVIVOR_MERGED_SINCE",
    );
    for m in [&a_into_c, &b_into_a] {
        client
            .undo_merge(pb::UndoMergeRequest {
                merge_id: m.id.clone(),
            })
            .await
            .expect("undo in reverse order");
    }
    assert_eq!(
        lookup(&mut client, phone_ref("020 7946 0502")).await,
        [b.id.as_str()]
    );
    assert_eq!(
        micros(get(&mut client, &c.id).await.lifetime_value.as_ref()),
        0
    );
    assert_eq!(
        micros(get(&mut client, &a.id).await.lifetime_value.as_ref()),
        100_000_000
    );
    drop(client);
    server.stop().await;
}

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]

async fn undoing_a_merge_into_a_since_deleted_survivor_gives_back_findable_identities(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let a = create(&mut client, profile("Ada"), vec![]).await;
    let b = create(&mut client, profile("Bea"), vec![phone("020 7946 0601")]).await;
    let merge = client
        .merge_customers(pb::MergeCustomersRequest {
            survivor_id: a.id.clone(),
            merged_id: b.id.clone(),
            reason: "duplicate".into(),
        })
        .await
        .expect("merge")
        .into_inner();
    client
        .delete_customer(pb::DeleteCustomerRequest {
            id: a.id.clone(),
            expected_version: None,
        })
        .await
        .expect("delete the survivor");
    let undo = client
        .undo_merge(pb::UndoMergeRequest {
            merge_id: merge.id.clone(),
        })
        .await;
    if undo.is_ok() {
        let restored = get(&mut client, &b.id).await;
        assert!(restored.delete_time.is_none(), "B is live again");
        assert_eq!(
            lookup(&mut client, phone_ref("020 7946 0601")).await,
            [b.id.as_str()],
            "a live customer is found by its restored phone"
        );
    } else {
        // Refusing the undo while the survivor is deleted would also be consistent.
        let status = undo.expect_err("refused");
        assert_eq!(status.code(), Code::FailedPrecondition);
    }
    drop(client);
    server.stop().await;
}

// ---- 12. idempotent create ----------------------------------------------------------------------

#[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
async fn creating_twice_with_one_idempotency_key_returns_the_first_customer_even_concurrently(
    pool: PgPool,
) {
    let server = Server::start(pool).await;
    let mut client = server.client();
    let request = |name: &str, key: &str| pb::CreateCustomerRequest {
        customer: Some(profile(name)),
        identities: vec![],
        idempotency_key: key.to_owned(),
    };
    let first = client
        .create_customer(request("Ada", "import-42"))
        .await
        .expect("create")
        .into_inner();
    let retry = client
        .create_customer(request("Ada (retry)", "import-42"))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retry.id, first.id);
    assert_eq!(retry.display_name, "Ada", "the first call's customer");
    let other = client
        .create_customer(request("Ada", "import-43"))
        .await
        .expect("another key")
        .into_inner();
    assert_ne!(other.id, first.id);

    let racing = (0..10).map(|i| {
        let mut client = server.client();
        let req = request(&format!("Racer {i}"), "import-44");
        async move {
            client
                .create_customer(req)
                .await
                .expect("concurrent create")
                .into_inner()
                .id
        }
    });
    let racing_ids: HashSet<String> = futures::future::join_all(racing)
        .await
        .into_iter()
        .collect();
    assert_eq!(racing_ids.len(), 1, "{racing_ids:?}");
    assert_eq!(
        list_all(&mut client, pb::ListCustomersRequest::default())
            .await
            .len(),
        3
    );
    drop(client);
    server.stop().await;
}

// ---- 13. the same service on SQLite (the single-process dev mode) ------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_on_a_sqlite_file_creates_resolves_and_looks_up_customers() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = tierline_customer::store::SqliteStore::open(dir.path().join("customer.db"))
        .await
        .expect("open a new SQLite file");
    let server = Server::start_on_store(std::sync::Arc::new(store)).await;
    let mut client = server.client();

    let ada = create(
        &mut client,
        profile("Ada Okafor"),
        vec![phone("020 7946 0018")],
    )
    .await;
    let known = client
        .resolve_customer(pb::ResolveCustomerRequest {
            identity: Some(phone_ref("+44 20 7946 0018")),
            display_name: String::new(),
        })
        .await
        .expect("ResolveCustomer")
        .into_inner();
    assert!(!known.created);
    assert_eq!(known.customer.map(|c| c.id), Some(ada.id.clone()));

    let unknown = client
        .resolve_customer(pb::ResolveCustomerRequest {
            identity: Some(phone_ref("(020) 7946-0019")),
            display_name: String::new(),
        })
        .await
        .expect("ResolveCustomer")
        .into_inner();
    assert!(unknown.created);
    let prospect = unknown.customer.expect("customer");
    assert_eq!(prospect.display_name, "+442079460019");
    assert_eq!(
        prospect.lifecycle_stage,
        pb::LifecycleStage::Prospect as i32
    );

    assert_eq!(
        lookup(&mut client, phone_ref("020 7946 0018")).await,
        [ada.id.as_str()]
    );
    assert_eq!(
        lookup(&mut client, phone_ref("+442079460019")).await,
        [prospect.id.as_str()]
    );
    assert!(
        lookup(&mut client, phone_ref("020 7946 0020"))
            .await
            .is_empty()
    );
    assert_eq!(get(&mut client, &ada.id).await, ada);
    drop(client);
    server.stop().await;
}
