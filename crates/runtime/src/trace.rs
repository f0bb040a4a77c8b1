//! The W3C trace context (`traceparent`, `tracestate`) of the span a request is made in,
//! for HTTP calls and worker tasks to carry (the worker joins it: `worker::app`). Empty
//! unless the binary installed a propagator (it does when OpenTelemetry traces are on),
//! so nothing is sent otherwise.

use std::collections::HashMap;

use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace headers of the current span.
pub fn headers() -> Vec<(String, String)> {
    let span = tracing::Span::current();
    // Without traces the engine's spans are never created: nothing to carry.
    if span.is_none() {
        return Vec::new();
    }
    let context = span.context();
    let mut map = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut map));
    map.into_iter().collect()
}
