//! The routing service as the ticket service sees it: one call, `SyncTicket`, that tells the
//! router a ticket's current routing state. Every call has a deadline; a router that is down or
//! slow is [`SyncError::Unavailable`] and the relay tries again later, so nothing the ticket
//! service does waits on the router for longer than the deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use tierline_proto::routing as pb;
use tierline_proto::routing::routing_service_client::RoutingServiceClient;
use tierline_proto::tonic::codegen::InterceptedService;
use tierline_proto::tonic::transport::{Channel, Endpoint};
use tierline_proto::tonic::{Code, Request, Status};
use tierline_runtime::telemetry::TraceContextInterceptor;

use crate::config::RoutingServiceConfig;

/// Why a ticket did not reach the router.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The router is down, overloaded or did not answer within the deadline: try again later.
    #[error("routing service unavailable: {0}")]
    Unavailable(String),
    /// The router refused the ticket as malformed (INVALID_ARGUMENT). The mapping or the ticket
    /// is wrong, so sending it again cannot help: a bug, to be logged loudly.
    #[error("routing service refused the ticket: {0}")]
    Rejected(String),
    /// Any other answer, which SyncTicket does not document (UNIMPLEMENTED from a router that is
    /// not ready, a permission problem, an internal error): try again later, and log it.
    #[error("routing service failed: {0}")]
    Failed(String),
}

impl SyncError {
    /// Sorts a gRPC status into what the caller does about it.
    pub fn from_status(status: &Status) -> SyncError {
        let what = format!("{}: {}", status.code(), status.message());
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled => SyncError::Unavailable(what),
            Code::InvalidArgument => SyncError::Rejected(what),
            _ => SyncError::Failed(what),
        }
    }

    /// True if sending the same ticket again later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SyncError::Rejected(_))
    }
}

/// Client of the routing service.
#[derive(Debug, Clone)]
pub struct Router {
    client: RoutingServiceClient<InterceptedService<Channel, TraceContextInterceptor>>,
    timeout: Duration,
    queued_at_intake: Arc<QueuedAtIntake>,
}

/// Tickets this process queued (NEW to QUEUED) right after handing them to the router at intake,
/// with the version that move made. The router already has that version in substance: NEW and
/// QUEUED route alike, and queueing a NEW ticket keeps its enqueue and pickup due times. So the
/// routing relay, which sees the move as an event, skips exactly that version instead of sending
/// it again; any later change has a higher version and is sent as usual. Per process and bounded:
/// an entry another replica's relay got to first is only a missed saving.
#[derive(Debug, Default)]
struct QueuedAtIntake {
    versions: Mutex<HashMap<Uuid, i64>>,
}

impl QueuedAtIntake {
    fn versions(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, i64>> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still a
        // valid cache.
        self.versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Entries kept at most; past it the memo starts again (the relay then sends a few extra calls).
const QUEUED_AT_INTAKE_MAX: usize = 10_000;

impl Router {
    /// A client of `config.endpoint`, or `None` when the endpoint is empty (hand-over disabled).
    /// Connects lazily, so the ticket service starts, and takes complaints, while the router is
    /// down.
    pub fn new(config: &RoutingServiceConfig) -> Result<Option<Self>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        let channel = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| format!("routing_service.endpoint: {e}"))?
            .connect_timeout(config.timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Some(Router {
            client: RoutingServiceClient::with_interceptor(channel, TraceContextInterceptor),
            timeout: config.timeout,
            queued_at_intake: Arc::default(),
        }))
    }

    /// Notes that intake handed ticket `id` over and then queued it, making `version`.
    pub fn note_queued_at_intake(&self, id: Uuid, version: i64) {
        let mut versions = self.queued_at_intake.versions();
        if versions.len() >= QUEUED_AT_INTAKE_MAX {
            versions.clear();
        }
        versions.insert(id, version);
    }

    /// Whether ticket `id` at `version` is one intake queued after handing it over (so the
    /// router has it already). Forgets the ticket either way: only the relay's first look at it
    /// can match.
    pub fn has_from_intake(&self, id: Uuid, version: i64) -> bool {
        let mut versions = self.queued_at_intake.versions();
        versions.remove(&id) == Some(version)
    }

    /// Tells the router `ticket`'s current routing state. Idempotent and versioned on the
    /// router's side, so a repeat (or a stale version) is harmless: it answers `applied = false`.
    pub async fn sync(
        &self,
        ticket: pb::RoutingTicket,
    ) -> Result<pb::SyncTicketResponse, SyncError> {
        let mut request = Request::new(pb::SyncTicketRequest {
            ticket: Some(ticket),
        });
        // The deadline travels to the router; the timer holds it here too, whether the time goes
        // on connecting or on a router that accepted the call and never answers.
        request.set_timeout(self.timeout);
        let mut client = self.client.clone();
        match tokio::time::timeout(self.timeout, client.sync_ticket(request)).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(SyncError::from_status(&status)),
            Err(_) => Err(SyncError::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_sorted_into_retry_and_refusal() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Cancelled,
        ] {
            let e = SyncError::from_status(&Status::new(code, "down"));
            assert!(matches!(e, SyncError::Unavailable(_)), "{code:?}");
            assert!(e.is_retryable());
        }
        let e = SyncError::from_status(&Status::invalid_argument("tier: required"));
        assert_eq!(
            e,
            SyncError::Rejected("Client specified an invalid argument: tier: required".into())
        );
        assert!(!e.is_retryable());
        for code in [Code::Unimplemented, Code::Internal, Code::PermissionDenied] {
            let e = SyncError::from_status(&Status::new(code, "?"));
            assert!(matches!(e, SyncError::Failed(_)), "{code:?}");
            assert!(e.is_retryable());
        }
    }

    fn router() -> Router {
        let config = RoutingServiceConfig {
            endpoint: "http://127.0.0.1:1".into(),
            ..Default::default()
        };
        Router::new(&config).expect("valid").expect("enabled")
    }

    // A lazy channel needs a runtime to exist, not to connect.
    #[tokio::test]
    async fn the_relay_skips_only_the_version_intake_queued_and_only_once() {
        let router = router();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        router.note_queued_at_intake(a, 2);
        router.note_queued_at_intake(b, 2);
        // A clone shares the memo: the API and the relay hold clones of one client.
        let relay = router.clone();
        assert!(relay.has_from_intake(a, 2));
        assert!(
            !relay.has_from_intake(a, 2),
            "forgotten after the first look"
        );
        assert!(!relay.has_from_intake(b, 3), "changed since: sent as usual");
        assert!(
            !relay.has_from_intake(b, 2),
            "forgotten by the look at version 3"
        );
        assert!(!relay.has_from_intake(Uuid::now_v7(), 1), "never noted");
    }

    #[tokio::test]
    async fn the_memo_is_bounded() {
        let router = router();
        let first = Uuid::now_v7();
        router.note_queued_at_intake(first, 2);
        for _ in 0..QUEUED_AT_INTAKE_MAX {
            router.note_queued_at_intake(Uuid::now_v7(), 2);
        }
        assert!(!router.has_from_intake(first, 2), "started again when full");
    }

    #[test]
    fn an_empty_endpoint_disables_the_hand_over() {
        let config = RoutingServiceConfig {
            endpoint: String::new(),
            ..Default::default()
        };
        assert!(matches!(Router::new(&config), Ok(None)));
    }

    #[tokio::test]
    async fn a_router_nobody_runs_is_unavailable_within_the_deadline() {
        // A port just released: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = RoutingServiceConfig {
            endpoint: format!("http://127.0.0.1:{port}"),
            timeout: Duration::from_millis(300),
        };
        let router = Router::new(&config).expect("valid").expect("enabled");
        let started = std::time::Instant::now();
        let result = router.sync(pb::RoutingTicket::default()).await;
        assert!(
            matches!(result, Err(SyncError::Unavailable(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
