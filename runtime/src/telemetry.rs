//! Logs and traces for both processes.
//!
//! - Logs: JSON lines; `RUST_LOG` overrides the default filter, for logs only. A line written
//!   inside a traced span (an API request, a fan-out, a webhook attempt) carries that span's
//!   fields, among them `trace_id`.
//! - Traces: OpenTelemetry spans, exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, with the standard variables
//!   (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_PROTOCOL` = `http/protobuf` or `http/json`,
//!   `OTEL_BSP_*`, `OTEL_TRACES_SAMPLER`...). Unset, no OpenTelemetry layer is installed at all:
//!   spans stay plain `tracing` spans and no trace context is written anywhere.
//!
//! W3C trace context crosses every hop: see [`crate::trace_context`].

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// What must be flushed before the process exits.
#[must_use = "call shutdown() at exit, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn tracing(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered (at exit).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "could not flush the last spans");
        }
    }
}

/// Whether the environment asks for traces.
fn exporting(env: &dyn Fn(&str) -> Option<String>) -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| env(name).is_some_and(|v| !v.trim().is_empty()))
        && env("OTEL_SDK_DISABLED").as_deref() != Some("true")
}

/// Starts logging, and tracing if the environment asks for it. `service` names the process
/// unless `OTEL_SERVICE_NAME` does.
pub fn init(service: &str) -> Telemetry {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::FilterExt as _;
    let env = |name: &str| std::env::var(name).ok();
    let provider = if exporting(&env) {
        match provider(service, env("OTEL_SERVICE_NAME").is_none()) {
            Ok(provider) => Some(provider),
            Err(e) => {
                // Traces are for looking; a bad exporter setting must not stop payments.
                eprintln!(
                    "OpenTelemetry is configured but cannot start ({e}); running without traces"
                );
                None
            }
        }
    } else {
        None
    };
    // Each layer has its own filter: `RUST_LOG` chooses the log lines only. Traces keep the
    // default level whatever it says (`RUST_LOG=warn` must not silently turn tracing off),
    // and while tracing, the log layer sees the spans too, so a warning logged inside a
    // traced request still carries its `trace_id`.
    let json_lines = || {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
    };
    // Tracing off: the log filter alone, so every callsite keeps EnvFilter's cached answer
    // and the hot path pays nothing for tracing. Tracing on: the log layer also sees the
    // spans, so a warning inside a traced request still names its trace.
    type LogLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
    let logs: LogLayer = if provider.is_some() {
        let spans = tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && *meta.level() <= tracing::Level::INFO
        });
        Box::new(json_lines().with_filter(log_filter().or(spans)))
    } else {
        Box::new(json_lines().with_filter(log_filter()))
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("payrail"))
            .with_filter(tracing_subscriber::EnvFilter::new(DEFAULT_FILTER))
    });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .try_init();
    if provider.is_some() {
        tracing::info!(service, "exporting traces over OTLP");
    }
    Telemetry { provider }
}

/// What is logged and traced unless `RUST_LOG` says otherwise (for logs only).
const DEFAULT_FILTER: &str = "info,sqlx=warn,lapin=warn,sea_orm=warn";

fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER))
}

fn provider(service: &str, name_it: bool) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol())
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    if name_it {
        resource = resource.with_service_name(service.to_string());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`: `http/json`, else `http/protobuf` (the default).
fn protocol() -> opentelemetry_otlp::Protocol {
    let chosen = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    match chosen.trim() {
        "http/json" => opentelemetry_otlp::Protocol::HttpJson,
        "" | "http/protobuf" => opentelemetry_otlp::Protocol::HttpBinary,
        other => {
            eprintln!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported here (http/protobuf or http/json); using http/protobuf"
            );
            opentelemetry_otlp::Protocol::HttpBinary
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_exported_only_when_an_endpoint_is_set() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(!exporting(&env(&[])));
        assert!(!exporting(&env(&[("OTEL_SERVICE_NAME", "x")])));
        assert!(!exporting(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(exporting(&env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://c:4318"
        )])));
        assert!(exporting(&env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])));
        assert!(!exporting(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true")
        ])));
    }
}
