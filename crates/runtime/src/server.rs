//! Server start-up, written once for every service.
//!
//! [`ServiceHost`] wraps a service's gRPC services with what every Tierline server has:
//! `grpc.health.v1` health and server reflection (grpcurl, grpcui and Postman work against any
//! service), a per-call timeout, server-wide load shedding that answers UNAVAILABLE, a trace span
//! per call continuing the caller's trace, an interceptor slot for authentication, HTTP/2
//! keep-alives for long-lived desktop streams, and graceful shutdown: on the shutdown signal
//! health goes NOT_SERVING, the listener closes after `shutdown_delay`, and in-flight calls drain
//! for up to `drain_timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::{InterceptorLayer, Routes, RoutesBuilder};
use tonic_health::ServingStatus;
use tower::{BoxError, Service, ServiceBuilder};
use tower_http::classify::GrpcFailureClass;
use tower_http::trace::TraceLayer;

use crate::config::ServerConfig;
use crate::telemetry::server_span;

/// Checks every incoming call before it reaches a service: the slot where authentication and
/// role checks go. It sees the metadata and extensions, and may add extensions (the caller's
/// identity) or refuse the call with a status.
pub type RequestGuard =
    Arc<dyn Fn(tonic::Request<()>) -> Result<tonic::Request<()>, Status> + Send + Sync>;

/// The server could not start or failed while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Reflection could not be built from the descriptor sets.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A gRPC server being put together.
pub struct ServiceHost {
    config: ServerConfig,
    routes: RoutesBuilder,
    names: Vec<&'static str>,
    guard: RequestGuard,
}

impl ServiceHost {
    /// A host with no services yet and a guard that lets every call through.
    pub fn new(config: ServerConfig) -> Self {
        ServiceHost {
            config,
            routes: Routes::builder(),
            names: Vec::new(),
            guard: Arc::new(Ok),
        }
    }

    /// Adds a generated gRPC service; health reports it by its full name.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        self.names.push(S::NAME);
        self
    }

    /// Replaces the guard every call passes through.
    pub fn with_guard(mut self, guard: RequestGuard) -> Self {
        self.guard = guard;
        self
    }

    /// Serves on `listener` until `shutdown` resolves, then drains.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let local_addr = listener.local_addr().ok();
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in &self.names {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tierline_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        // Older grpcurl and Postman versions only speak the v1alpha reflection protocol.
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tierline_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let guard = self.guard.clone();
        let layers = ServiceBuilder::new()
            .layer(
                TraceLayer::new_for_grpc()
                    .make_span_with(|request: &http::Request<Body>| server_span(request))
                    .on_failure(
                        |failure: GrpcFailureClass, latency: Duration, span: &tracing::Span| {
                            // Client mistakes are not server errors; log them quietly.
                            span.record("otel.status_code", "ERROR");
                            tracing::debug!(%failure, ?latency, "call failed");
                        },
                    ),
            )
            .map_err(error_to_status)
            .load_shed()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                self.config.max_concurrent_requests,
            ))
            // Our own timeout rather than tonic's, which answers CANCELLED: a server-side
            // deadline is DEADLINE_EXCEEDED. A client's shorter deadline cancels the call anyway.
            .timeout(self.config.request_timeout)
            .layer(InterceptorLayer::new(move |request| guard(request)))
            .into_inner();

        let incoming = TcpListenerStream::new(listener).map(|stream| {
            if let Ok(stream) = &stream {
                // Small gRPC frames must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
            }
            stream
        });

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .layer(layers)
            .add_routes(self.routes.routes())
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            });
        tokio::pin!(server);
        log_listening(local_addr, &self.names);

        tokio::select! {
            result = &mut server => return result.map_err(ServeError::from),
            () = shutdown => {}
        }

        tracing::info!("shutting down: health NOT_SERVING");
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in &self.names {
            health
                .set_service_status(*name, ServingStatus::NotServing)
                .await;
        }
        // Keep accepting during the delay, so probes on new connections read NOT_SERVING.
        tokio::select! {
            result = &mut server => return result.map_err(ServeError::from),
            () = tokio::time::sleep(self.config.shutdown_delay) => {}
        }
        let _ = stop_tx.send(());
        match tokio::time::timeout(self.config.drain_timeout, &mut server).await {
            Ok(result) => {
                tracing::info!("drained; stopped");
                result.map_err(ServeError::from)
            }
            Err(_) => {
                tracing::warn!(
                    drain_timeout = ?self.config.drain_timeout,
                    "calls still in flight after the drain timeout; stopping anyway"
                );
                Ok(())
            }
        }
    }
}

fn log_listening(addr: Option<SocketAddr>, names: &[&str]) {
    match addr {
        Some(addr) => tracing::info!(%addr, services = ?names, "listening"),
        None => tracing::info!(services = ?names, "listening"),
    }
}

/// Middleware errors become proper statuses: shedding is UNAVAILABLE (clients retry with
/// backoff), the server's timeout DEADLINE_EXCEEDED. Anything else passes through to tonic.
fn error_to_status(error: BoxError) -> BoxError {
    if error.is::<tower::load_shed::error::Overloaded>() {
        Box::new(Status::unavailable(
            "server is at its concurrent call limit; retry with backoff",
        ))
    } else if error.is::<tower::timeout::error::Elapsed>() {
        Box::new(Status::deadline_exceeded(
            "the call took longer than the server's request timeout",
        ))
    } else {
        error
    }
}

/// Binds a listener for `config.listen`, naming the address when it cannot.
pub async fn bind(config: &ServerConfig) -> std::io::Result<TcpListener> {
    TcpListener::bind(config.listen).await.map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!("cannot listen on {}: {error}", config.listen),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(error: BoxError) -> tonic::Code {
        match error.downcast::<Status>() {
            Ok(status) => status.code(),
            Err(_) => tonic::Code::Unknown,
        }
    }

    #[test]
    fn shedding_and_timeouts_answer_with_grpc_statuses() {
        assert_eq!(
            code_of(error_to_status(Box::new(
                tower::load_shed::error::Overloaded::new()
            ))),
            tonic::Code::Unavailable
        );
        assert_eq!(
            code_of(error_to_status(Box::new(
                tower::timeout::error::Elapsed::new()
            ))),
            tonic::Code::DeadlineExceeded
        );
    }
}
