//! A record: an event before the journal gives it a seq.

use portcullis_schemas::{EventBody, EventId, Timestamp, TraceContext};

/// One event to append. The journal wraps it into an
/// [`portcullis_schemas::Envelope`] with this node's id and the next seq.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub event_id: EventId,
    pub timestamp: Timestamp,
    pub trace: TraceContext,
    pub body: EventBody,
}

impl Record {
    /// A fresh UUIDv7 id, the current time and a new root trace.
    pub fn new(body: EventBody) -> Self {
        let event_id = EventId::new();
        Self {
            event_id,
            timestamp: Timestamp::now(),
            trace: TraceContext::root_for(&event_id),
            body,
        }
    }

    /// Like [`Record::new`], but in the trace of `parent` (a child span).
    pub fn child_of(parent: &TraceContext, body: EventBody) -> Self {
        let event_id = EventId::new();
        Self {
            event_id,
            timestamp: Timestamp::now(),
            trace: parent.child(&event_id),
            body,
        }
    }
}
