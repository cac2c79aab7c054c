//! Errors of the journal.

use std::path::PathBuf;

use portcullis_schemas::codec::{DecodeError, EncodeError};
use portcullis_schemas::{EventId, NodeId};

/// Everything that can go wrong in the journal. Errors about the journal as
/// a whole name its directory; errors about one record name its seq.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {}: config field `{field}` {problem}", .dir.display())]
    Config {
        dir: PathBuf,
        field: &'static str,
        problem: String,
    },

    #[error(
        "journal {} is in use: another process (probably a running agent) holds its lock; \
         stop it, or read a copy of the directory",
        .dir.display()
    )]
    InUse { dir: PathBuf },

    #[error("cannot open journal {}: {source}", .dir.display())]
    Open {
        dir: PathBuf,
        #[source]
        source: sled::Error,
    },

    #[error("no journal in {} (there is no sled database there)", .dir.display())]
    NotFound { dir: PathBuf },

    #[error(
        "journal {} belongs to node `{stored}`, not to the configured node `{configured}`; \
         use another directory or the node id it was created with",
        .dir.display()
    )]
    NodeMismatch {
        dir: PathBuf,
        stored: NodeId,
        configured: NodeId,
    },

    #[error("journal {}: corrupt metadata `{key}`: {problem}", .dir.display())]
    CorruptMeta {
        dir: PathBuf,
        key: &'static str,
        problem: String,
    },

    #[error("journal {}: storage error while {op}: {source}", .dir.display())]
    Storage {
        dir: PathBuf,
        op: &'static str,
        #[source]
        source: sled::Error,
    },

    /// A write or flush failed earlier. What is on disk is unknown until the
    /// journal is reopened, so this handle refuses to append.
    #[error(
        "journal {}: refusing to append after an earlier storage failure ({cause}); reopen it",
        .dir.display()
    )]
    Poisoned { dir: PathBuf, cause: String },

    #[error("cannot encode event {event_id}: {source}")]
    Encode {
        event_id: EventId,
        #[source]
        source: EncodeError,
    },

    /// The event id is already in the journal (or twice in one batch).
    #[error("event {event_id} is already journaled at seq {seq}")]
    DuplicateId { event_id: EventId, seq: u64 },

    #[error("journal record seq {seq} is undecodable: {source}")]
    Decode {
        seq: u64,
        #[source]
        source: DecodeError,
    },

    #[error("journal record seq {seq} holds an envelope with seq {found}")]
    SeqMismatch { seq: u64, found: u64 },

    #[error("journal key {key:02x?} in tree `events` is not an 8-byte seq")]
    BadKey { key: Vec<u8> },

    #[error("journal index: event {event_id} {problem}")]
    BadIndex { event_id: EventId, problem: String },

    #[error("journal {}: seq space exhausted", .dir.display())]
    SeqExhausted { dir: PathBuf },
}
