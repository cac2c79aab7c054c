//! Commands the scanner workers answer.

use portcullis_schemas::{EventId, TraceContext};

use super::content::ScanContent;
use super::engine::ScanOutcome;

/// Scan the content of one file access.
///
/// Answered by [`super::ScannerWorker`] with the [`ScanOutcome`]; limits and
/// errors are reported in the outcome's verdict, never as a failed reply.
#[derive(Debug, actix::Message)]
#[rtype(result = "ScanOutcome")]
pub struct ScanFile {
    /// The `FileAccessed` event this scan is for.
    pub access: EventId,
    pub content: ScanContent,
    /// The trace context of the scan (its span's, with traces on): a
    /// remote scanner continues the trace from it.
    pub trace: TraceContext,
}
