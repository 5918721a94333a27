//! The customer-profile service as the ticket service sees it: resolve a caller, take a
//! snapshot, write the timeline. Every call has a deadline; when the service is slow or down the
//! caller gets [`Unavailable`] and intake carries on with the customer to be resolved later.

use std::time::Duration;

use tierline_proto::common::{IdentityKind, IdentityRef};
use tierline_proto::customer as pb;
use tierline_proto::customer::customer_service_client::CustomerServiceClient;
use tierline_proto::tonic::codegen::InterceptedService;
use tierline_proto::tonic::transport::{Channel, Endpoint};
use tierline_proto::tonic::{Code, Request};
use tierline_runtime::telemetry::TraceContextInterceptor;
use tierline_types::Tier;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::PeerConfig;
use crate::domain::ticket::{CallerIdentity, CustomerLink, CustomerSnapshot};

/// The customer service could not answer in time; retry later.
#[derive(Debug, thiserror::Error)]
#[error("customer service unavailable: {0}")]
pub struct Unavailable(pub String);

/// The answer to a lookup.
#[derive(Debug)]
pub enum Lookup {
    /// Found (or created as a prospect): the customer and a snapshot.
    Found(CustomerLink),
    /// The service says no such customer (a wrong customer id).
    NotFound,
}

/// Client of the customer-profile service.
#[derive(Debug, Clone)]
pub struct Customers {
    client: CustomerServiceClient<InterceptedService<Channel, TraceContextInterceptor>>,
    timeout: Duration,
}

impl Customers {
    /// A client of `config.endpoint`. Connects lazily, so the ticket service starts (and takes
    /// complaints) while the customer service is down.
    pub fn new(config: &PeerConfig) -> Result<Self, String> {
        let channel = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| format!("customer_service.endpoint: {e}"))?
            .connect_timeout(config.timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Customers {
            client: CustomerServiceClient::with_interceptor(channel, TraceContextInterceptor),
            timeout: config.timeout,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Resolves a caller's identity, creating a prospect for an unknown caller.
    pub async fn resolve(&self, caller: &CallerIdentity) -> Result<Lookup, Unavailable> {
        let kind = match caller.kind.as_str() {
            "phone" => IdentityKind::Phone,
            "email" => IdentityKind::Email,
            _ => IdentityKind::ExternalId,
        };
        let reply = self
            .client
            .clone()
            .resolve_customer(self.request(pb::ResolveCustomerRequest {
                identity: Some(IdentityRef {
                    kind: kind as i32,
                    value: caller.value.clone(),
                    region_code: caller.region.clone(),
                }),
                display_name: String::new(),
            }))
            .await;
        match reply {
            Ok(reply) => match reply.into_inner().customer {
                Some(customer) => link(&customer).map(Lookup::Found),
                None => Err(Unavailable(
                    "ResolveCustomer answered without a customer".into(),
                )),
            },
            // The identity was already validated at intake; a refusal now is the service's
            // business, and the ticket is kept pending rather than lost.
            Err(status) => Err(Unavailable(format!(
                "{}: {}",
                status.code(),
                status.message()
            ))),
        }
    }

    /// Reads a customer by id.
    pub async fn get(&self, id: Uuid) -> Result<Lookup, Unavailable> {
        let reply = self
            .client
            .clone()
            .get_customer(self.request(pb::GetCustomerRequest { id: id.to_string() }))
            .await;
        match reply {
            Ok(reply) => link(&reply.into_inner()).map(Lookup::Found),
            Err(status) if status.code() == Code::NotFound => Ok(Lookup::NotFound),
            Err(status) => Err(Unavailable(format!(
                "{}: {}",
                status.code(),
                status.message()
            ))),
        }
    }

    /// Records a contact on the customer's timeline; idempotent by `key`.
    pub async fn record_interaction(
        &self,
        customer_id: Uuid,
        interaction: pb::Interaction,
        key: String,
    ) -> Result<(), Unavailable> {
        self.client
            .clone()
            .record_interaction(self.request(pb::RecordInteractionRequest {
                customer_id: customer_id.to_string(),
                interaction: Some(interaction),
                idempotency_key: key,
            }))
            .await
            .map(|_| ())
            .map_err(|s| Unavailable(format!("{}: {}", s.code(), s.message())))
    }

    /// Records a satisfaction measurement on the profile; idempotent by `key`.
    pub async fn record_satisfaction(
        &self,
        customer_id: Uuid,
        record: pb::SatisfactionRecord,
        key: String,
    ) -> Result<(), Unavailable> {
        self.client
            .clone()
            .record_satisfaction(self.request(pb::RecordSatisfactionRequest {
                customer_id: customer_id.to_string(),
                record: Some(record),
                idempotency_key: key,
            }))
            .await
            .map(|_| ())
            .map_err(|s| Unavailable(format!("{}: {}", s.code(), s.message())))
    }
}

/// The ticket's view of a customer profile.
fn link(c: &pb::Customer) -> Result<CustomerLink, Unavailable> {
    let id = Uuid::parse_str(&c.id)
        .map_err(|_| Unavailable(format!("customer service sent a malformed id {:?}", c.id)))?;
    let tier = Tier::from_wire(c.tier).ok().flatten().unwrap_or(Tier::C);
    let display_name = if c.form_of_address.is_empty() {
        c.display_name.clone()
    } else {
        c.form_of_address.clone()
    };
    Ok(CustomerLink::Resolved {
        id,
        snapshot: CustomerSnapshot {
            tier,
            key_account: c.key_account,
            account_manager_id: Some(c.account_manager_id.clone()).filter(|s| !s.is_empty()),
            display_name: display_name.chars().take(200).collect(),
            taken_at: OffsetDateTime::now_utc(),
        },
    })
}
