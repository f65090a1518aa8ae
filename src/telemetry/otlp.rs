//! OTLP trace export (feature `otlp`): the request span and its upstream-attempt spans, sent
//! in batches over OTLP/HTTP by the OpenTelemetry SDK's own thread.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;

use super::BoxedLayer;
use crate::config::{TraceExport, TraceProtocol};

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces to {endpoint}: {reason}")]
pub struct TraceInitError {
    endpoint: String,
    reason: String,
}

/// Keeps the exporter alive; dropping it sends the spans still queued (waiting at most
/// [`FLUSH_TIMEOUT`]) and stops the export thread.
pub struct Exporting {
    provider: SdkTracerProvider,
}

const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

impl Drop for Exporting {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            // The subscriber may be gone by now: standard error is the one sure place.
            eprintln!("qwen2api: flushing traces failed: {e}");
        }
    }
}

/// The layer that turns spans into OTLP spans, and the guard that flushes them at exit.
/// `OTEL_SERVICE_NAME` names the service (`qwen2api` when unset); `OTEL_EXPORTER_OTLP_HEADERS`,
/// `OTEL_EXPORTER_OTLP_TIMEOUT` and `OTEL_BSP_*` are read by the SDK itself.
pub fn layer(export: &TraceExport) -> Result<(BoxedLayer, Exporting), TraceInitError> {
    let protocol = match export.protocol {
        TraceProtocol::Protobuf => Protocol::HttpBinary,
        TraceProtocol::Json => Protocol::HttpJson,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(export.endpoint.clone())
        .with_protocol(protocol)
        .build()
        .map_err(|e| TraceInitError {
            endpoint: export.endpoint.clone(),
            reason: e.to_string(),
        })?;
    let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("qwen2api");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("qwen2api");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).boxed();
    Ok((layer, Exporting { provider }))
}
