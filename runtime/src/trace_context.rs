//! W3C trace context (`traceparent`) across Payrail's hops: the API request, the event row
//! (the outbox), the bus message, the worker's fan-out and attempts, and the HTTP calls out
//! (merchants' webhooks, providers). One payment is one trace from API call to merchant
//! receipt.
//!
//! With tracing off (no exporter configured) spans carry no OpenTelemetry context: every
//! function here then returns `None` or does nothing, at the cost of a lookup.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header (and column, and message field) name.
pub const TRACEPARENT: &str = "traceparent";

/// `span`'s context as a `traceparent` value, if it is being traced.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The current span's `traceparent`.
pub fn current() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// Makes `span` a child of the context in `traceparent` (a caller's, or one stored with the
/// work), and records its trace id in the span's `trace_id` field for the log lines. A
/// missing or malformed value leaves the span a root of its own trace.
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(value) = traceparent {
        let carrier = HashMap::from([(TRACEPARENT.to_string(), value.to_string())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string());
    }
}

/// Keeps `span` the root of its own trace and records the context in `traceparent` only as
/// a link: for callers who did not say who they are, so that nobody outside can pick our
/// trace ids, join our traces to theirs, or turn our sampling off with a `-00` flag.
pub fn link_from(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(value) = traceparent {
        let carrier = HashMap::from([(TRACEPARENT.to_string(), value.to_string())]);
        let theirs = TraceContextPropagator::new().extract(&carrier);
        let theirs = theirs.span().span_context().clone();
        if theirs.is_valid() {
            span.add_link(theirs);
        }
    }
    continue_from(span, None);
}

/// Renames `span` in its trace: an HTTP span once its route template is known (its
/// OpenTelemetry span exists by then, so the `otel.name` field would no longer apply).
pub fn rename(span: &tracing::Span, name: String) {
    span.context().span().update_name(name);
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_span_continues_its_callers_trace_hands_it_on_and_names_it_in_log_lines() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(move || writer.clone()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("work", trace_id = tracing::field::Empty);
            continue_from(&span, Some(CALLER));
            span.in_scope(|| {
                tracing::info!("inside");
                let handed_on = current().expect("a traceparent to hand on");
                let parts: Vec<&str> = handed_on.split('-').collect();
                assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
                assert_ne!(
                    parts[2], "00f067aa0ba902b7",
                    "its own span, child of the caller's"
                );
            });
            // A malformed value starts a trace of its own rather than failing.
            let other = tracing::info_span!("other", trace_id = tracing::field::Empty);
            continue_from(&other, Some("00-zz-yy-01"));
            let own = traceparent_of(&other).expect("a trace of its own");
            assert!(!own.contains("4bf92f35"), "{own}");
        });
        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf-8");
        assert!(
            text.contains(r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736""#),
            "{text}"
        );
    }

    /// Keeps every finished span.
    #[derive(Clone, Debug, Default)]
    struct Finished(Arc<Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Finished {
        async fn export(
            &self,
            batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.lock().expect("lock").extend(batch);
            Ok(())
        }
    }

    #[test]
    fn an_anonymous_callers_context_is_linked_never_joined_or_obeyed() {
        let finished = Finished::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(finished.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        // Their trace id, and a flag asking us not to record.
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("anonymous", trace_id = tracing::field::Empty);
            link_from(&span, Some(unsampled));
            let ours = traceparent_of(&span).expect("a trace of our own");
            assert!(!ours.contains("4bf92f35"), "not the caller's trace: {ours}");
            assert!(ours.ends_with("-01"), "still recorded: {ours}");
            drop(span);
        });
        let spans = finished.0.lock().expect("lock").clone();
        let span = spans
            .iter()
            .find(|s| s.name == "anonymous")
            .expect("the span was exported");
        assert_eq!(span.parent_span_id, opentelemetry::trace::SpanId::INVALID);
        let linked: Vec<String> = span
            .links
            .links
            .iter()
            .map(|l| l.span_context.trace_id().to_string())
            .collect();
        assert_eq!(linked, vec!["4bf92f3577b34da6a3ce929d0e0e4736".to_string()]);
    }

    #[test]
    fn without_an_exporter_nothing_is_handed_on() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("work", trace_id = tracing::field::Empty);
            continue_from(&span, Some(CALLER));
            let _entered = span.enter();
            assert_eq!(current(), None);
        });
    }
}
