//! Connections to the services, and what a run needs before the load: the complaint
//! category's department, customers spread over the tiers, and agents serving that department.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tierline_proto::common::{Channel, IdentityKind};
use tierline_proto::customer as cpb;
use tierline_proto::customer::customer_service_client::CustomerServiceClient;
use tierline_proto::routing as rpb;
use tierline_proto::routing::agent_desktop_service_client::AgentDesktopServiceClient;
use tierline_proto::routing::agent_service_client::AgentServiceClient;
use tierline_proto::routing::routing_service_client::RoutingServiceClient;
use tierline_proto::ticket as tpb;
use tierline_proto::ticket::ticket_service_client::TicketServiceClient;
use tonic::transport::{Channel as GrpcChannel, Endpoint};

use crate::config::{Args, TierMix, endpoint_url};

/// Desktop streams per HTTP/2 connection: a contact centre's desktops come from many
/// machines, so they are spread over several connections rather than one.
const DESKTOPS_PER_CONNECTION: usize = 100;

/// Clients of the three services.
#[derive(Clone)]
pub struct Clients {
    /// CustomerService.
    pub customers: CustomerServiceClient<GrpcChannel>,
    /// TicketService.
    pub tickets: TicketServiceClient<GrpcChannel>,
    /// RoutingService.
    pub routing: RoutingServiceClient<GrpcChannel>,
    /// AgentService.
    pub agents: AgentServiceClient<GrpcChannel>,
    /// Connections to the routing service for the desktops.
    pub desktop_channels: Vec<GrpcChannel>,
}

impl Clients {
    /// The desktop client of the `i`-th agent.
    pub fn desktop(&self, i: usize) -> AgentDesktopServiceClient<GrpcChannel> {
        let n = self.desktop_channels.len().max(1);
        let channel = self.desktop_channels[(i / DESKTOPS_PER_CONNECTION) % n].clone();
        AgentDesktopServiceClient::new(channel)
    }
}

async fn connect(addr: &str, what: &str, timeout: Duration) -> Result<GrpcChannel> {
    let url = endpoint_url(addr);
    let endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("{what} address {addr:?}"))?
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    tokio::time::timeout(timeout, endpoint.connect())
        .await
        .with_context(|| format!("the {what} service at {url} did not answer within {timeout:?}"))?
        .with_context(|| format!("cannot connect to the {what} service at {url}"))
}

/// Connects to the three services and waits until the router has built its live state (it
/// answers UNAVAILABLE until then).
pub async fn clients(args: &Args) -> Result<Clients> {
    let customer = connect(&args.customer_addr, "customer-profile", args.timeout).await?;
    let ticket = connect(&args.ticket_addr, "ticket", args.timeout).await?;
    let routing = connect(&args.routing_addr, "routing", args.timeout).await?;
    let mut desktop_channels = vec![routing.clone()];
    for _ in 1..args.agents.div_ceil(DESKTOPS_PER_CONNECTION) {
        desktop_channels.push(connect(&args.routing_addr, "routing", args.timeout).await?);
    }
    let clients = Clients {
        customers: CustomerServiceClient::new(customer),
        tickets: TicketServiceClient::new(ticket),
        routing: RoutingServiceClient::new(routing.clone()),
        agents: AgentServiceClient::new(routing),
        desktop_channels,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut routing = clients.routing.clone();
    loop {
        match routing
            .get_queue_stats(rpb::GetQueueStatsRequest::default())
            .await
        {
            Ok(_) => break,
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => bail!("the routing service is not ready: {s}"),
        }
    }
    Ok(clients)
}

/// The department owning `category` (ListCategories).
pub async fn department_of(clients: &Clients, category: &str) -> Result<String> {
    let mut tickets = clients.tickets.clone();
    let mut token = String::new();
    loop {
        let page = tickets
            .list_categories(tpb::ListCategoriesRequest {
                page_size: 500,
                page_token: token,
                include_inactive: false,
            })
            .await
            .context("ListCategories")?
            .into_inner();
        if let Some(c) = page.categories.iter().find(|c| c.id == category) {
            return Ok(c.department.clone());
        }
        if page.next_page_token.is_empty() {
            bail!("the ticket service has no active category {category:?} (see --category)");
        }
        token = page.next_page_token;
    }
}

/// A UK mobile number (07400 000000 to 07449 999999, a block the numbering plan assigns to
/// mobiles, so the customer service accepts it). Customers created at setup get numbers with
/// a third digit 0-4, new callers 6-9, so the two never meet.
pub fn phone(n: u64, setup: bool) -> String {
    const SETUP: [u64; 5] = [0, 1, 2, 3, 4];
    const NEW: [u64; 4] = [6, 7, 8, 9];
    let (digits, span) = if setup {
        (&SETUP[..], SETUP.len() as u64 * 10_000_000)
    } else {
        (&NEW[..], NEW.len() as u64 * 10_000_000)
    };
    let n = n % span;
    let third = digits[(n / 10_000_000) as usize];
    format!("+44 74{third}{} {:06}", (n / 1_000_000) % 10, n % 1_000_000)
}

/// What setup made.
pub struct Setup {
    /// The department of the complaint category: the agents' queue.
    pub department: String,
    /// Phone numbers of the customers created, for returning callers.
    pub phones: Arc<Vec<String>>,
    /// The agents' ids.
    pub agents: Vec<String>,
    /// How long setup took.
    pub seconds: f64,
}

/// Creates the customers (each with a phone and a manual tier) and the agents.
pub async fn run(args: &Args, clients: &Clients, run: &str) -> Result<Setup> {
    let started = Instant::now();
    let department = department_of(clients, &args.category).await?;
    // A random block per run, so runs against the same services do not claim each other's
    // numbers.
    let base = fastrand::u64(..);
    let phones: Vec<String> = (0..args.customers as u64)
        .map(|i| phone(base.wrapping_add(i), true))
        .collect();
    let phones = Arc::new(phones);
    eprintln!(
        "setup: {} customers (tiers A/B/C {}%/{}%/{}%), {} agents in {department}",
        args.customers, args.tier_mix.a, args.tier_mix.b, args.tier_mix.c, args.agents
    );
    let workers = args.callers.clamp(4, 32);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let clients = clients.clone();
        let phones = Arc::clone(&phones);
        let mix = args.tier_mix;
        let run = run.to_owned();
        tasks.spawn(async move {
            let mut i = w;
            while i < phones.len() {
                customer(&clients, &run, i, &phones, mix).await?;
                i += workers;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a setup task failed")??;
    }
    let agents: Vec<String> = (0..args.agents)
        .map(|i| format!("bench-{}-agent-{i:05}", &run[..8.min(run.len())]))
        .collect();
    for id in &agents {
        let mut client = clients.agents.clone();
        client
            .upsert_agent(rpb::UpsertAgentRequest {
                agent: Some(rpb::Agent {
                    id: id.clone(),
                    display_name: format!("Bench agent {id}"),
                    departments: vec![department.clone()],
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
            .with_context(|| format!("UpsertAgent {id}"))?;
    }
    Ok(Setup {
        department,
        phones,
        agents,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn customer(
    clients: &Clients,
    run: &str,
    i: usize,
    phones: &[String],
    mix: TierMix,
) -> Result<()> {
    let mut customers = clients.customers.clone();
    let created = customers
        .create_customer(cpb::CreateCustomerRequest {
            customer: Some(cpb::Customer {
                display_name: format!("Bench Customer {i}"),
                ..Default::default()
            }),
            identities: vec![cpb::Identity {
                kind: IdentityKind::Phone as i32,
                value: phones[i].clone(),
                ..Default::default()
            }],
            idempotency_key: format!("bench-{run}-customer-{i}"),
        })
        .await
        .with_context(|| format!("CreateCustomer {i} ({})", phones[i]))?
        .into_inner();
    customers
        .set_tier_override(cpb::SetTierOverrideRequest {
            customer_id: created.id.clone(),
            tier: mix.tier_of(i, phones.len()).wire(),
            reason: "tierline-bench: customers spread over the tiers".into(),
            expected_version: None,
        })
        .await
        .with_context(|| format!("SetTierOverride {}", created.id))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_valid_uk_mobiles_and_setup_and_new_never_meet() {
        for (n, setup) in [
            (0, true),
            (49_999_999, true),
            (u64::MAX, true),
            (0, false),
            (39_999_999, false),
            (12_345_678, false),
        ] {
            let p = phone(n, setup);
            let parsed = phonenumber::parse(None, &p).expect("parses");
            assert!(phonenumber::is_valid(&parsed), "{p} must be valid");
            let third = p.as_bytes()[6];
            assert_eq!(setup, (b'0'..=b'4').contains(&third), "{p}");
        }
        assert_ne!(phone(1, true), phone(2, true));
    }
}
