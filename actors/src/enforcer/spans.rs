//! The Enforcer's spans (docs/observability.md): `access`, the root of
//! every access, and `scan`, its child from the scan request to the
//! verdict. Created only with traces on; otherwise every function here is
//! a load and a branch, and the events carry the trace context derived
//! from the access's event id as before.

use portcullis_schemas::{
    AccessKind, ContainerRef, Decision, DecisionReason, EventId, FilePath, Mode, TraceContext,
    Verdict,
};
use portcullis_telemetry::trace::{self, TARGET};
use tracing::field::Empty;

/// The root span of an access and the trace context its events carry.
pub(super) fn access(
    access: EventId,
    kind: AccessKind,
    mode: Mode,
    path: &FilePath,
    pid: u32,
    container: Option<&ContainerRef>,
    received: std::time::Instant,
) -> (Option<tracing::Span>, TraceContext) {
    if !trace::enabled() {
        return (None, TraceContext::root_for(&access));
    }
    if !trace::sample(&access) {
        // Left out by sampling: the context says so (W3C flags 00), so that
        // nothing downstream — the journal, the actions, the scanner
        // service, siem-export — makes a span for this trace, whatever
        // child contexts are derived from it.
        return (None, TraceContext::root_for(&access).unsampled());
    }
    let span = tracing::info_span!(
        target: TARGET,
        parent: None,
        "access",
        portcullis.event_id = %access,
        portcullis.access.kind = kind.as_str(),
        portcullis.interceptor_mode = %mode,
        file.path = %path,
        process.pid = pid,
        container.id = Empty,
        portcullis.policy = Empty,
        portcullis.queue_us = u64::try_from(received.elapsed().as_micros()).unwrap_or(u64::MAX),
        portcullis.coalesced = Empty,
        portcullis.decision = Empty,
        portcullis.decision.reason = Empty,
    );
    if let Some(c) = container {
        span.record("container.id", c.id.as_str());
    }
    let tc = trace::context_of(&span).unwrap_or_else(|| TraceContext::root_for(&access));
    (Some(span), tc)
}

/// The context of an event produced under `parent`: with traces on, the
/// producing span's own (so that the journal's and the consumers' spans
/// hang under it); otherwise a child derived from the event id.
pub(super) fn child_context(parent: &TraceContext, id: &EventId) -> TraceContext {
    if trace::enabled() {
        *parent
    } else {
        parent.child(id)
    }
}

pub(super) fn policy(span: Option<&tracing::Span>, policy: Option<&str>) {
    if let (Some(s), Some(p)) = (span, policy) {
        s.record("portcullis.policy", p);
    }
}

pub(super) fn decided(span: Option<&tracing::Span>, decision: Decision, reason: DecisionReason) {
    if let Some(s) = span {
        s.record("portcullis.decision", decision.as_str());
        s.record("portcullis.decision.reason", reason.as_str());
    }
}

pub(super) fn coalesced(span: Option<&tracing::Span>) {
    if let Some(s) = span {
        s.record("portcullis.coalesced", true);
    }
}

/// The `scan` span under an access, and the trace context of the scan's
/// events and request.
pub(super) fn scan(
    parent: Option<&tracing::Span>,
    access_trace: &TraceContext,
    scan_id: EventId,
    location: &'static str,
    size: u64,
    ruleset: &str,
) -> (Option<tracing::Span>, TraceContext) {
    let Some(parent) = parent else {
        return (None, *access_trace);
    };
    let span = tracing::info_span!(
        target: TARGET,
        parent: parent,
        "scan",
        portcullis.event_id = %scan_id,
        portcullis.scan.location = location,
        portcullis.ruleset = ruleset,
        file.size = size,
        portcullis.verdict = Empty,
        portcullis.rule = Empty,
    );
    let tc = trace::context_of(&span).unwrap_or(*access_trace);
    (Some(span), tc)
}

pub(super) fn verdict(span: Option<&tracing::Span>, v: &Verdict) {
    if let Some(s) = span {
        s.record("portcullis.verdict", v.class().as_str());
        if let Some(matches) = v.matches() {
            if let Some(m) = matches.first() {
                s.record("portcullis.rule", m.rule.as_str());
            }
        }
    }
}
