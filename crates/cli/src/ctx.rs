//! What every command works with: the connections to the three services (made when first
//! needed), the call deadline, the caller's name in metadata, and where output goes.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tierline_proto::customer::customer_service_client::CustomerServiceClient;
use tierline_proto::routing::agent_desktop_service_client::AgentDesktopServiceClient;
use tierline_proto::routing::agent_service_client::AgentServiceClient;
use tierline_proto::routing::routing_service_client::RoutingServiceClient;
use tierline_proto::ticket::ticket_service_client::TicketServiceClient;
use tokio::sync::OnceCell;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::args::Global;
use crate::error::{CliError, Service, error_chain};

/// The metadata key in which a caller names itself to the ticket service (until
/// authentication arrives): `agent:<id>`, `customer:<id>`, `service:<name>`.
pub const ACTOR_HEADER: &str = "tierline-actor";

/// Connections and settings shared by the commands.
pub struct Ctx {
    /// Print JSON instead of text.
    pub json: bool,
    /// Deadline of each call.
    pub timeout: Duration,
    addrs: [String; 3],
    channels: [OnceCell<Channel>; 3],
}

fn index(service: Service) -> usize {
    match service {
        Service::Customer => 0,
        Service::Ticket => 1,
        Service::Routing => 2,
    }
}

impl Ctx {
    /// Settings from the global flags; nothing is connected yet.
    pub fn new(global: &Global) -> Ctx {
        Ctx {
            json: global.json,
            timeout: global.timeout,
            addrs: [
                global.customer_addr.clone(),
                global.ticket_addr.clone(),
                global.routing_addr.clone(),
            ],
            channels: [OnceCell::new(), OnceCell::new(), OnceCell::new()],
        }
    }

    /// Where a service is.
    pub fn addr(&self, service: Service) -> &str {
        &self.addrs[index(service)]
    }

    /// The connection to a service, made on first use. A service that cannot be reached is
    /// [`CliError::Unreachable`]. The channel reconnects by itself afterwards.
    pub async fn channel(&self, service: Service) -> Result<Channel, CliError> {
        let addr = self.addr(service).to_owned();
        let timeout = self.timeout;
        self.channels[index(service)]
            .get_or_try_init(|| async move {
                let endpoint = Endpoint::from_shared(addr.clone())
                    .map_err(|e| CliError::Usage(format!("{} {addr:?}: {e}", service.flag())))?
                    .connect_timeout(timeout)
                    .tcp_nodelay(true);
                match tokio::time::timeout(timeout, endpoint.connect()).await {
                    Ok(Ok(channel)) => Ok(channel),
                    Ok(Err(e)) => Err(CliError::Unreachable {
                        service,
                        addr,
                        detail: error_chain(&e),
                    }),
                    Err(_) => Err(CliError::Unreachable {
                        service,
                        addr,
                        detail: format!(
                            "no connection within {}",
                            humantime::format_duration(timeout)
                        ),
                    }),
                }
            })
            .await
            .cloned()
    }

    /// CustomerService.
    pub async fn customers(&self) -> Result<CustomerServiceClient<Channel>, CliError> {
        Ok(CustomerServiceClient::new(
            self.channel(Service::Customer).await?,
        ))
    }

    /// TicketService.
    pub async fn tickets(&self) -> Result<TicketServiceClient<Channel>, CliError> {
        Ok(TicketServiceClient::new(
            self.channel(Service::Ticket).await?,
        ))
    }

    /// RoutingService.
    pub async fn routing(&self) -> Result<RoutingServiceClient<Channel>, CliError> {
        Ok(RoutingServiceClient::new(
            self.channel(Service::Routing).await?,
        ))
    }

    /// AgentService.
    pub async fn agents(&self) -> Result<AgentServiceClient<Channel>, CliError> {
        Ok(AgentServiceClient::new(
            self.channel(Service::Routing).await?,
        ))
    }

    /// AgentDesktopService.
    pub async fn desktop(&self) -> Result<AgentDesktopServiceClient<Channel>, CliError> {
        Ok(AgentDesktopServiceClient::new(
            self.channel(Service::Routing).await?,
        ))
    }

    /// Awaits one call with the deadline and turns its failure into a [`CliError`].
    pub async fn call<T>(
        &self,
        service: Service,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, CliError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(CliError::from_status(service, self.addr(service), status)),
            Err(_) => Err(CliError::Call {
                service,
                status: Box::new(Status::deadline_exceeded(format!(
                    "the {service} service did not answer within {} (see --timeout)",
                    humantime::format_duration(self.timeout)
                ))),
            }),
        }
    }

    /// Prints a result: `human` normally, `json` (pretty) with `--json`.
    pub fn print(&self, human: impl FnOnce() -> String, json: impl FnOnce() -> Value) {
        if self.json {
            line(&pretty(&json()));
        } else {
            let text = human();
            if !text.is_empty() {
                line(&text);
            }
        }
    }

    /// Prints one event of a stream: `human` normally, `json` on one line with `--json`.
    pub fn event(&self, human: impl FnOnce() -> String, json: impl FnOnce() -> Value) {
        if self.json {
            line(&json().to_string());
        } else {
            line(&human());
        }
    }

    /// Prints a remark for people on standard error (never with `--json` on standard output,
    /// so scripts read only documents there).
    pub fn note(&self, text: impl AsRef<str>) {
        eprintln!("{}", text.as_ref());
    }
}

/// Writes a line to standard output. When the reader has gone (`tierline ... | head`), there is
/// nobody left to tell anything: the process ends quietly rather than panicking as `println!`
/// would.
pub fn line(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A request carrying the caller's name (`agent:<id>`, `customer:<id>`) in [`ACTOR_HEADER`].
pub fn as_actor<T>(message: T, actor: &str) -> Result<Request<T>, CliError> {
    let mut request = Request::new(message);
    let value = MetadataValue::try_from(actor).map_err(|_| {
        CliError::Usage(format!(
            "{actor:?} cannot be sent as {ACTOR_HEADER} metadata: use printable ASCII ids"
        ))
    })?;
    request.metadata_mut().insert(ACTOR_HEADER, value);
    Ok(request)
}

/// The actor of an agent's action.
pub fn agent_actor(agent_id: &str) -> String {
    format!("agent:{agent_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_goes_in_metadata() {
        let r = as_actor((), &agent_actor("agent-7")).expect("ascii");
        assert_eq!(
            r.metadata().get(ACTOR_HEADER).and_then(|v| v.to_str().ok()),
            Some("agent:agent-7")
        );
        assert!(matches!(
            as_actor((), "agent:ågot\n"),
            Err(CliError::Usage(_))
        ));
    }
}
