//! Traces: the spans of [`crate::catalog::SPANS`], exported over OTLP.
//!
//! Spans are `tracing` spans with the target [`TARGET`]; only the
//! OpenTelemetry layer sees them (the log output never does), and it is
//! installed only when `[telemetry.traces]` is enabled. With traces off,
//! [`enabled`] is false and the code creates no span at all: an access
//! costs one relaxed load more.
//!
//! The W3C trace context of a span is what events and Kafka messages carry
//! (`Envelope::trace`, `ScanRequest::trace`, the `traceparent` header):
//! with traces on, the trace id an event shows is the trace id in the
//! tracing backend.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use portcullis_schemas::TraceContext;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `tracing` target of every exported span.
pub const TARGET: &str = "portcullis_trace";

static ENABLED: AtomicBool = AtomicBool::new(false);
/// `sampling_ratio` as f64 bits.
static RATIO: AtomicU64 = AtomicU64::new(0x3ff0_0000_0000_0000); // 1.0

/// Whether spans are exported (`[telemetry.traces] enabled`).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns span creation on: only [`crate::Telemetry::start`] (after the
/// OpenTelemetry layer is installed) and tests that install one.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The share of new traces kept (`[telemetry.traces] sampling_ratio`).
pub fn set_ratio(ratio: f64) {
    RATIO.store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
}

/// Whether the trace of the access `id` is kept: decided before any span
/// exists, from the last 32 bits of its UUIDv7 (random; the bits before
/// them hold the uuid crate's monotonic counter), so an access that is not
/// sampled costs no span at all (a tracer's sampler would decide only
/// after the span's attributes were built).
pub fn sample(id: &portcullis_schemas::EventId) -> bool {
    let ratio = f64::from_bits(RATIO.load(Ordering::Relaxed));
    if ratio >= 1.0 {
        return true;
    }
    let mut tail = [0u8; 4];
    tail.copy_from_slice(&id.as_bytes()[12..16]);
    f64::from(u32::from_be_bytes(tail)) < ratio * 4_294_967_296.0
}

/// Whether `tc` says its trace is sampled.
pub fn sampled(tc: &TraceContext) -> bool {
    tc.flags & 1 == 1
}

/// Whether spans under `tc` belong in a trace: traces are on, `tc` is
/// sampled, and it names a span a tracer exported (not a context derived
/// from an event id: agent lifecycle events, or anything from a process
/// with traces off), so that no span points at a parent nobody exported.
pub fn exported(tc: &TraceContext) -> bool {
    enabled() && sampled(tc) && !tc.is_derived()
}

fn span_context(tc: &TraceContext) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(tc.trace_id),
        SpanId::from_bytes(tc.span_id),
        TraceFlags::new(tc.flags),
        true,
        TraceState::default(),
    )
}

/// `tc` as a remote parent.
pub fn remote_parent(tc: &TraceContext) -> opentelemetry::Context {
    opentelemetry::Context::new().with_remote_span_context(span_context(tc))
}

/// Makes `tc` the parent of `span` (created, not yet entered).
pub fn set_parent(span: &tracing::Span, tc: &TraceContext) {
    if span.is_disabled() {
        return;
    }
    if let Err(e) = span.set_parent(remote_parent(tc)) {
        tracing::debug!(error = %e, "span parent not set");
    }
}

/// The trace context of `span`, as events and messages carry it; `None`
/// when the span is disabled (traces off).
pub fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| TraceContext {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        flags: sc.trace_flags().to_u8(),
    })
}

/// Adds a link from `span` to `tc`.
pub fn add_link(span: &tracing::Span, tc: &TraceContext) {
    if span.is_disabled() {
        return;
    }
    span.add_link(span_context(tc));
}

/// Sets an attribute recorded after the span's creation.
pub fn set_attribute(
    span: &tracing::Span,
    key: &'static str,
    value: impl Into<opentelemetry::Value>,
) {
    if !span.is_disabled() {
        span.set_attribute(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_about_the_ratio_of_accesses() {
        set_ratio(0.01);
        let kept = (0..100_000)
            .filter(|_| sample(&portcullis_schemas::EventId::new()))
            .count();
        assert!(
            (700..1300).contains(&kept),
            "{kept} of 100,000 kept at 0.01"
        );
        set_ratio(0.0);
        assert!(!(0..1000).any(|_| sample(&portcullis_schemas::EventId::new())));
        set_ratio(1.0);
        assert!((0..1000).all(|_| sample(&portcullis_schemas::EventId::new())));
    }
}
