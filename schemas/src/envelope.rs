use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::EventBody;

/// The current schema version. Bumped when an existing body changes shape;
/// appending a new [`EventBody`] variant does not bump it.
///
/// - 1: the first.
/// - 2: [`crate::ContainerRef`] carries the container's name, image, image
///   digest and pod. Version 1 records still decode (upgraded, with those
///   fields empty).
pub const SCHEMA_VERSION: u16 = 2;

/// A UUIDv7: unique, and ordered by creation time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventId(pub Uuid);

impl EventId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl schemars::JsonSchema for EventId {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EventId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "uuid",
            "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        })
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(Uuid::parse_str(s)?))
    }
}

/// The node (host) an event was recorded on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// RFC 3339 with nanoseconds, e.g. `2026-11-28T20:33:04.123456789Z`.
    pub fn to_rfc3339(self) -> String {
        crate::render::Rfc3339(self.0).to_string()
    }

    /// Parses RFC 3339.
    pub fn parse_rfc3339(s: &str) -> Result<Self, time::error::Parse> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)?;
        Ok(Self(
            i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX),
        ))
    }
}

/// W3C trace context, so a decision can be followed across processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceContext {
    /// A new root context. The trace id is derived from the event id (both
    /// are unique and time-ordered); the span id from its random tail.
    pub fn root_for(id: &EventId) -> Self {
        let b = id.as_bytes();
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&b[8..16]);
        Self {
            trace_id: *b,
            span_id,
            flags: 1,
        }
    }

    /// Whether this context was derived from an event id by
    /// [`root_for`](Self::root_for) (its span id is its trace id's tail)
    /// rather than taken from a span a tracer exported. An exported span id
    /// equals the tail of its trace id with a chance of 2^-64.
    pub fn is_derived(&self) -> bool {
        self.span_id[..] == self.trace_id[8..16]
    }

    /// The same context, marked as not sampled (W3C `trace-flags` 00).
    pub fn unsampled(self) -> Self {
        Self {
            flags: self.flags & !1,
            ..self
        }
    }

    /// A child span in the same trace (sampled as its parent).
    pub fn child(&self, id: &EventId) -> Self {
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&id.as_bytes()[8..16]);
        Self {
            trace_id: self.trace_id,
            span_id,
            flags: self.flags,
        }
    }

    /// Parses a W3C `traceparent` (version 00; later versions are read as
    /// 00, as the specification asks). `None` for anything malformed, an
    /// all-zero trace or span id.
    pub fn parse_traceparent(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let hex_of = |h: &str, out: &mut [u8]| {
            h.len() == out.len() * 2
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && hex::decode_to_slice(h, out).is_ok()
        };
        let (mut trace_id, mut span_id, mut f) = ([0u8; 16], [0u8; 8], [0u8; 1]);
        if !hex_of(version, &mut [0u8; 1])
            || !hex_of(trace, &mut trace_id)
            || !hex_of(span, &mut span_id)
            || !hex_of(flags, &mut f)
            || trace_id == [0; 16]
            || span_id == [0; 8]
        {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags: f[0],
        })
    }

    /// The `traceparent` header form.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }
}

/// One immutable fact, as stored in the journal and published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub schema: u16,
    pub event_id: EventId,
    pub node_id: NodeId,
    /// Per-node sequence number, contiguous from 1, assigned by the journal.
    pub seq: u64,
    pub timestamp: Timestamp,
    pub trace: TraceContext,
    pub body: EventBody,
}

impl Envelope {
    /// The event id of the file access this event is about, if any.
    pub fn access_id(&self) -> Option<EventId> {
        self.body.access_id().or(match self.body {
            EventBody::FileAccessed(_) => Some(self.event_id),
            _ => None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_what_w3c_rejects() {
        let tc = TraceContext::root_for(&EventId::new());
        assert!(tc.is_derived());
        assert!(!tc.child(&EventId::new()).is_derived());
        let s = tc.traceparent();
        assert_eq!(TraceContext::parse_traceparent(&s), Some(tc));
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = TraceContext::parse_traceparent(ok).unwrap();
        assert_eq!(p.flags, 1);
        assert_eq!(p.traceparent(), ok);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse_traceparent(bad), None, "{bad:?}");
        }
        // A later version with more fields is read as version 00.
        assert!(TraceContext::parse_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what"
        )
        .is_some());
    }
}
