//! Demo data, loaded through the services' own gRPC APIs (so it is exactly what a client could
//! create): customers whose lifetime values put them in every tier, a key account with its
//! account manager, and agents in several departments and a key-account team. Every call is
//! idempotent (keys and upserts), so loading twice changes nothing.

use tierline_proto::common::{Channel, IdentityKind, Money, Tier};
use tierline_proto::customer as cpb;
use tierline_proto::customer::customer_service_client::CustomerServiceClient;
use tierline_proto::routing as rpb;
use tierline_proto::routing::agent_service_client::AgentServiceClient;
use tonic::transport::Channel as GrpcChannel;

use crate::{Addresses, DevError, http};

/// A demo customer: name, phone, lifetime value in whole units, account manager.
struct DemoCustomer {
    name: &'static str,
    phone: &'static str,
    value: i64,
    manager: Option<&'static str>,
}

/// Lifetime values chosen so the default policy (A above a 2% share of the total, C below
/// 0.5%) gives two A, three B and three C customers.
const CUSTOMERS: [DemoCustomer; 8] = [
    DemoCustomer {
        name: "Okafor Holdings",
        phone: "+442079460101",
        value: 400_000,
        manager: Some("maria"),
    },
    DemoCustomer {
        name: "Brightwater Ltd",
        phone: "+442079460102",
        value: 250_000,
        manager: None,
    },
    DemoCustomer {
        name: "Ada Lovelace",
        phone: "+442079460103",
        value: 12_000,
        manager: None,
    },
    DemoCustomer {
        name: "Grace Hopper",
        phone: "+442079460104",
        value: 9_000,
        manager: None,
    },
    DemoCustomer {
        name: "Alan Turing",
        phone: "+442079460105",
        value: 6_000,
        manager: None,
    },
    DemoCustomer {
        name: "Katherine Johnson",
        phone: "+442079460106",
        value: 1_500,
        manager: None,
    },
    DemoCustomer {
        name: "Tim Berners-Lee",
        phone: "+442079460107",
        value: 800,
        manager: None,
    },
    DemoCustomer {
        name: "Margaret Hamilton",
        phone: "+442079460108",
        value: 300,
        manager: None,
    },
];

/// A demo agent: id, name, departments, team, capacities (voice, chat, email).
struct DemoAgent {
    id: &'static str,
    name: &'static str,
    departments: &'static [&'static str],
    team: &'static str,
    capacity: [i32; 3],
}

const AGENTS: [DemoAgent; 6] = [
    DemoAgent {
        id: "maria",
        name: "Maria Santos",
        departments: &["customer_service"],
        team: "key-accounts",
        capacity: [1, 2, 3],
    },
    DemoAgent {
        id: "lee",
        name: "Lee Chen",
        departments: &["customer_service"],
        team: "key-accounts",
        capacity: [1, 2, 3],
    },
    DemoAgent {
        id: "sam",
        name: "Sam Patel",
        departments: &["customer_service", "quality_assurance"],
        team: "",
        capacity: [1, 2, 3],
    },
    DemoAgent {
        id: "priya",
        name: "Priya Nair",
        departments: &["quality_assurance"],
        team: "",
        capacity: [1, 0, 3],
    },
    DemoAgent {
        id: "omar",
        name: "Omar Haddad",
        departments: &["hr"],
        team: "",
        capacity: [1, 0, 2],
    },
    DemoAgent {
        id: "jun",
        name: "Jun Park",
        departments: &["r_and_d"],
        team: "",
        capacity: [0, 2, 3],
    },
];

/// One line per demo customer or agent, for the start-up banner.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// "Okafor Holdings  +442079460101  tier A  key account (manager maria)".
    pub customers: Vec<String>,
    /// "maria  Maria Santos  customer_service  team key-accounts".
    pub agents: Vec<String>,
}

fn failed(what: &str) -> impl Fn(tonic::Status) -> DevError + '_ {
    move |status| DevError::Demo(format!("{what}: {}", status.message()))
}

fn tier_letter(tier: i32) -> &'static str {
    match Tier::try_from(tier) {
        Ok(Tier::A) => "A",
        Ok(Tier::B) => "B",
        Ok(Tier::C) => "C",
        _ => "?",
    }
}

/// Loads the demo data into the services at `addresses`.
pub async fn load(addresses: &Addresses) -> Result<Loaded, DevError> {
    let connect_error = |e: tonic::transport::Error| DevError::Demo(e.to_string());
    let mut customers = CustomerServiceClient::new(
        GrpcChannel::from_shared(http(addresses.customer))
            .map_err(|e| DevError::Demo(e.to_string()))?
            .connect()
            .await
            .map_err(connect_error)?,
    );
    let mut agents = AgentServiceClient::new(
        GrpcChannel::from_shared(http(addresses.routing))
            .map_err(|e| DevError::Demo(e.to_string()))?
            .connect()
            .await
            .map_err(connect_error)?,
    );
    let mut ids = Vec::new();
    for c in &CUSTOMERS {
        let created = customers
            .create_customer(cpb::CreateCustomerRequest {
                customer: Some(cpb::Customer {
                    display_name: c.name.into(),
                    key_account: c.manager.is_some(),
                    account_manager_id: c.manager.unwrap_or_default().into(),
                    lifetime_value: Some(Money {
                        units: c.value,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                identities: vec![cpb::Identity {
                    kind: IdentityKind::Phone as i32,
                    value: c.phone.into(),
                    ..Default::default()
                }],
                idempotency_key: format!("demo-customer-{}", c.phone),
            })
            .await
            .map_err(failed(c.name))?
            .into_inner();
        ids.push(created.id);
    }
    // Tiers follow from the lifetime values under the configured policy, as in production.
    customers
        .recompute_tiers(cpb::RecomputeTiersRequest::default())
        .await
        .map_err(failed("RecomputeTiers"))?;
    let mut loaded = Loaded::default();
    for (c, id) in CUSTOMERS.iter().zip(ids) {
        let customer = customers
            .get_customer(cpb::GetCustomerRequest { id })
            .await
            .map_err(failed(c.name))?
            .into_inner();
        let key_account = c
            .manager
            .map(|m| format!("  key account (manager {m})"))
            .unwrap_or_default();
        loaded.customers.push(format!(
            "{:<18} {}  tier {}{key_account}",
            c.name,
            c.phone,
            tier_letter(customer.tier)
        ));
    }
    for a in &AGENTS {
        let capacities = [Channel::Voice, Channel::Chat, Channel::Email]
            .into_iter()
            .zip(a.capacity)
            .filter(|(_, n)| *n > 0)
            .map(|(channel, n)| rpb::ChannelCapacity {
                channel: channel as i32,
                max_active_tickets: n,
            })
            .collect();
        agents
            .upsert_agent(rpb::UpsertAgentRequest {
                agent: Some(rpb::Agent {
                    id: a.id.into(),
                    display_name: a.name.into(),
                    departments: a.departments.iter().map(|d| (*d).to_owned()).collect(),
                    team_id: a.team.into(),
                    capacities,
                    ..Default::default()
                }),
                update_mask: None,
                expected_version: None,
            })
            .await
            .map_err(failed(a.id))?;
        let team = if a.team.is_empty() {
            String::new()
        } else {
            format!("  team {}", a.team)
        };
        loaded.agents.push(format!(
            "{:<6} {:<13} {}{team}",
            a.id,
            a.name,
            a.departments.join(", ")
        ));
    }
    Ok(loaded)
}
