//! The ticket service as the router sees it: record an accepted offer (AssignTicket) and list
//! the open tickets to rebuild the live state after a loss. Every call has a deadline.

use std::time::Duration;

use tierline_proto::ticket as pb;
use tierline_proto::ticket::ticket_service_client::TicketServiceClient;
use tierline_proto::tonic::codegen::InterceptedService;
use tierline_proto::tonic::transport::{Channel, Endpoint};
use tierline_proto::tonic::{Code, Request};
use tierline_runtime::telemetry::TraceContextInterceptor;

/// How an AssignTicket call failed.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// The ticket service refused: the ticket is no longer NEW or QUEUED, is gone, or was
    /// assigned under another reservation.
    #[error("assignment refused: {0}")]
    Refused(String),
    /// No answer in time, or the service is down; the call may be retried.
    #[error("ticket service unavailable: {0}")]
    Unavailable(String),
}

/// Client of the ticket service.
#[derive(Debug, Clone)]
pub struct Tickets {
    client: TicketServiceClient<InterceptedService<Channel, TraceContextInterceptor>>,
    timeout: Duration,
}

impl Tickets {
    /// A client of `endpoint`, connecting lazily so the router starts while the ticket service
    /// is down.
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Tickets, String> {
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| format!("ticket_service.endpoint: {e}"))?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Tickets {
            client: TicketServiceClient::with_interceptor(channel, TraceContextInterceptor),
            timeout,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request.metadata_mut().insert(
            "tierline-actor",
            tierline_proto::tonic::metadata::MetadataValue::from_static("service:routing"),
        );
        request
    }

    /// Records that `agent_id` accepted `reservation_id`; returns the ticket after it.
    pub async fn assign(
        &self,
        ticket_id: &str,
        agent_id: &str,
        reservation_id: &str,
    ) -> Result<pb::Ticket, AssignError> {
        let reply = self
            .client
            .clone()
            .assign_ticket(self.request(pb::AssignTicketRequest {
                ticket_id: ticket_id.to_owned(),
                agent_id: agent_id.to_owned(),
                reservation_id: reservation_id.to_owned(),
                expected_version: None,
            }))
            .await;
        match reply {
            Ok(reply) => Ok(reply.into_inner()),
            Err(status) => match status.code() {
                Code::FailedPrecondition | Code::NotFound | Code::Aborted => {
                    Err(AssignError::Refused(status.message().to_owned()))
                }
                _ => Err(AssignError::Unavailable(format!(
                    "{:?}: {}",
                    status.code(),
                    status.message()
                ))),
            },
        }
    }

    /// One page of the tickets routing cares about (NEW to ON_HOLD), oldest first.
    pub async fn open_tickets(
        &self,
        page_token: String,
    ) -> Result<(Vec<pb::Ticket>, String), String> {
        use pb::TicketState as S;
        let reply = self
            .client
            .clone()
            .list_tickets(
                self.request(pb::ListTicketsRequest {
                    page_size: 500,
                    page_token,
                    states: [
                        S::New,
                        S::Queued,
                        S::Assigned,
                        S::InProgress,
                        S::PendingCustomer,
                        S::OnHold,
                    ]
                    .into_iter()
                    .map(|s| s as i32)
                    .collect(),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        Ok((reply.tickets, reply.next_page_token))
    }
}
