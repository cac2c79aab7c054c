//! Trace context across Kafka: the W3C `traceparent` header of every scan
//! request, reply and event, and the `send <topic>` / `process <topic>`
//! spans of the OpenTelemetry messaging conventions
//! (docs/observability.md).
//!
//! With traces off (`portcullis_telemetry::trace::enabled()` false) the
//! span functions return disabled spans at the cost of one load; the
//! headers are written anyway (they carry the events' own trace context,
//! which exists without traces).

use portcullis_schemas::TraceContext;
use portcullis_telemetry::trace::{self, TARGET};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};

/// The W3C header name.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` header of `m`, if it has a valid one.
pub fn traceparent_of<M: Message>(m: &M) -> Option<TraceContext> {
    let headers = m.headers()?;
    headers.iter().find_map(|h| {
        (h.key == TRACEPARENT)
            .then(|| h.value.and_then(|v| std::str::from_utf8(v).ok()))
            .flatten()
            .and_then(TraceContext::parse_traceparent)
    })
}

/// `headers` with `traceparent` = `tc`.
pub fn with_traceparent(headers: OwnedHeaders, tc: &TraceContext) -> OwnedHeaders {
    let value = tc.traceparent();
    headers.insert(Header {
        key: TRACEPARENT,
        value: Some(value.as_bytes()),
    })
}

/// A `send <topic>` producer span, child of `parent` (disabled when traces
/// are off or `parent` is not sampled).
pub fn send_span(
    topic: &str,
    partition: Option<i32>,
    message_id: &str,
    parent: &TraceContext,
) -> tracing::Span {
    if !trace::exported(parent) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "send",
        otel.name = %format!("send {topic}"),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.operation.name = "send",
        messaging.destination.name = topic,
        messaging.destination.partition.id = tracing::field::Empty,
        messaging.message.id = message_id,
    );
    if let Some(p) = partition {
        span.record("messaging.destination.partition.id", p.to_string());
    }
    trace::set_parent(&span, parent);
    span
}

/// A `process <topic>` consumer span for `m`, child of its `traceparent`
/// header, else of `fallback` (disabled when traces are off or the parent
/// is not sampled).
pub fn process_span<M: Message>(
    m: &M,
    group: Option<&str>,
    message_id: &str,
    fallback: Option<&TraceContext>,
) -> tracing::Span {
    if !trace::enabled() {
        return tracing::Span::none();
    }
    let Some(parent) = traceparent_of(m).or_else(|| fallback.copied()) else {
        return tracing::Span::none();
    };
    if !trace::exported(&parent) {
        return tracing::Span::none();
    }
    let topic = m.topic();
    let span = tracing::info_span!(
        target: TARGET,
        "process",
        otel.name = %format!("process {topic}"),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = topic,
        messaging.destination.partition.id = %m.partition(),
        messaging.kafka.offset = m.offset(),
        messaging.consumer.group.name = tracing::field::Empty,
        messaging.message.id = message_id,
    );
    if let Some(g) = group {
        span.record("messaging.consumer.group.name", g);
    }
    trace::set_parent(&span, &parent);
    span
}
