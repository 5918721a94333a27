//! Logs and traces: `tracing` for both, OpenTelemetry for traces across services.
//!
//! W3C trace context travels in gRPC metadata both ways: [`server_span`] continues the caller's
//! trace for every incoming call, and [`TraceContextInterceptor`] puts the current trace into
//! every outgoing call. Traces are exported over OTLP only when an endpoint is configured, so a
//! service without a collector stays quiet.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, filter::filter_fn, layer::SubscriberExt};

use crate::config::{LogFormat, TelemetryConfig};

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("telemetry.log_filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The OTLP exporter could not be built.
    #[error("telemetry.otlp_endpoint: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Flushes and stops trace export when dropped; hold it for the life of the process.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("trace export did not shut down cleanly: {error}");
        }
    }
}

/// Installs the global subscriber and propagator for `service_name`.
///
/// A second call in the same process (tests) keeps the first subscriber.
pub fn init(
    service_name: &str,
    config: &TelemetryConfig,
) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &config.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()?;
        provider = provider.with_batch_exporter(exporter);
    }
    // Without an exporter the provider still gives spans trace ids, so context propagates
    // through this service even when it exports nothing itself.
    let provider = provider.build();
    let tracer = provider.tracer(service_name.to_owned());

    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(&config.log_filter)?,
    };
    // The exporter's own gRPC client must not trace itself, or every export makes more spans.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter_fn(|meta| {
            let target = meta.target();
            !(target.starts_with("h2")
                || target.starts_with("hyper")
                || target.starts_with("tonic")
                || target.starts_with("tower")
                || target.starts_with("opentelemetry"))
        }));
    let fmt = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
    };
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        tracing::debug!("a global subscriber was already installed; keeping it");
    }
    Ok(TelemetryGuard { provider })
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The span of one incoming gRPC call, continuing the caller's trace from its `traceparent`.
pub fn server_span<B>(request: &http::Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc.server",
        otel.kind = "server",
        rpc.method = %request.uri().path(),
        otel.status_code = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    // Fails only when no OpenTelemetry layer is installed; then there is no trace to continue.
    let _ = span.set_parent(parent);
    span
}

/// Client interceptor that sends the current trace context with every outgoing call.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject_context(&tracing::Span::current(), request.metadata_mut());
        Ok(request)
    }
}

/// Writes the trace context of `span` into gRPC metadata.
pub fn inject_context(span: &tracing::Span, metadata: &mut tonic::metadata::MetadataMap) {
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt as _;

    #[test]
    fn trace_context_goes_out_and_comes_back_in() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            // A client call made inside a span carries that span's trace id.
            let outer = tracing::info_span!("client");
            let mut metadata = tonic::metadata::MetadataMap::new();
            inject_context(&outer, &mut metadata);
            let traceparent = metadata
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .expect("traceparent sent")
                .to_owned();
            let trace_id = outer.context().span().span_context().trace_id();
            assert!(traceparent.contains(&trace_id.to_string()));

            // The server continues the same trace.
            let request = http::Request::builder()
                .uri("/tierline.customer.v1.CustomerService/GetCustomer")
                .header("traceparent", traceparent)
                .body(())
                .expect("request");
            let server = server_span(&request);
            assert_eq!(server.context().span().span_context().trace_id(), trace_id);
        });
    }
}
