//! The internal binary encoding: `b"PC"`, the schema version (u16, big
//! endian), then the envelope in bincode 2 (serde mode, standard config).
//!
//! The prefix lets a reader reject a record from an unknown schema version
//! with a clear error before trying to decode it.

use crate::envelope::{Envelope, SCHEMA_VERSION};

/// Magic bytes at the start of every encoded envelope.
pub const MAGIC: [u8; 2] = *b"PC";
const HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("bincode encoding failed: {0}")]
    Bincode(#[from] bincode::error::EncodeError),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("record is {len} bytes, shorter than the {HEADER_LEN}-byte header")]
    Truncated { len: usize },
    #[error("bad magic {found:02x?} at offset 0 (expected {MAGIC:02x?}): not a portcullis event")]
    BadMagic { found: [u8; 2] },
    #[error(
        "unsupported schema version {found} at offset 2 (this build reads versions 1 to {supported})"
    )]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("undecodable body after offset {HEADER_LEN}: {source}")]
    Body {
        #[source]
        source: bincode::error::DecodeError,
    },
    #[error("{extra} trailing bytes after the envelope at offset {offset}")]
    TrailingBytes { offset: usize, extra: usize },
    #[error("envelope at offset {HEADER_LEN} says schema {inner} but the header says {header}")]
    VersionMismatch { header: u16, inner: u16 },
}

/// The most a record may claim to hold once decoded (bincode counts the
/// in-memory size of what it decodes). Real envelopes are well under a
/// kilobyte; the cap exists so that a corrupted length prefix becomes an
/// error instead of an attempt to allocate whatever it says (which aborts
/// the process).
pub const DECODE_LIMIT: usize = 16 * 1024 * 1024;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

fn decode_config() -> impl bincode::config::Config {
    config().with_limit::<DECODE_LIMIT>()
}

/// Encodes one envelope.
pub fn encode(env: &Envelope) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    encode_into(env, &mut out)?;
    Ok(out)
}

/// Encodes one envelope, appending to `out`.
pub fn encode_into(env: &Envelope, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&env.schema.to_be_bytes());
    bincode::serde::encode_into_std_write(env, out, config())?;
    Ok(())
}

/// Reads only the header: the schema version of an encoded envelope.
pub fn peek_version(bytes: &[u8]) -> Result<u16, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated { len: bytes.len() });
    }
    let magic = [bytes[0], bytes[1]];
    if magic != MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    Ok(u16::from_be_bytes([bytes[2], bytes[3]]))
}

/// Decodes one envelope, rejecting unknown schema versions. A record of an
/// older version is upgraded to the current types (its `schema` becomes
/// [`SCHEMA_VERSION`]).
pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let version = peek_version(bytes)?;
    let (env, inner) = match version {
        SCHEMA_VERSION => {
            let env: Envelope = decode_body(bytes)?;
            let inner = env.schema;
            (env, inner)
        }
        1 => {
            let env: v1::Envelope = decode_body(bytes)?;
            let inner = env.schema;
            (env.upgrade(), inner)
        }
        found => {
            return Err(DecodeError::UnsupportedVersion {
                found,
                supported: SCHEMA_VERSION,
            })
        }
    };
    if inner != version {
        return Err(DecodeError::VersionMismatch {
            header: version,
            inner,
        });
    }
    Ok(env)
}

fn decode_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (env, used): (T, usize) =
        bincode::serde::decode_from_slice(&bytes[HEADER_LEN..], decode_config())
            .map_err(|source| DecodeError::Body { source })?;
    let end = HEADER_LEN + used;
    if end != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            offset: end,
            extra: bytes.len() - end,
        });
    }
    Ok(env)
}

/// Schema version 1, as it was encoded: only what changed since is
/// spelled out; the rest is today's types (bincode encodes by position, so
/// the variant order is the old one).
mod v1 {
    use serde::Deserialize;

    use crate::envelope::{EventId, NodeId, Timestamp, TraceContext, SCHEMA_VERSION};
    use crate::events::{self as now, ContainerRuntime};

    #[derive(Deserialize)]
    pub struct Envelope {
        pub schema: u16,
        event_id: EventId,
        node_id: NodeId,
        seq: u64,
        timestamp: Timestamp,
        trace: TraceContext,
        body: EventBody,
    }

    #[derive(Deserialize)]
    enum EventBody {
        AgentStarted(now::AgentStarted),
        AgentStopped(now::AgentStopped),
        RulesLoaded(now::RulesLoaded),
        FileAccessed(FileAccessed),
        ScanRequested(now::ScanRequested),
        VerdictIssued(now::VerdictIssued),
        DecisionMade(now::DecisionMade),
        ActionTaken(now::ActionTaken),
        QueueOverflowed(now::QueueOverflowed),
    }

    #[derive(Deserialize)]
    struct FileAccessed {
        kind: now::AccessKind,
        file: now::FileInfo,
        process: now::ProcessInfo,
        container: Option<ContainerRef>,
        interceptor_mode: now::Mode,
        policy: Option<now::PolicyRef>,
        blocking: bool,
    }

    #[derive(Deserialize)]
    struct ContainerRef {
        runtime: ContainerRuntime,
        id: String,
    }

    impl Envelope {
        pub fn upgrade(self) -> crate::Envelope {
            use now::EventBody as B;
            let body = match self.body {
                EventBody::AgentStarted(e) => B::AgentStarted(e),
                EventBody::AgentStopped(e) => B::AgentStopped(e),
                EventBody::RulesLoaded(e) => B::RulesLoaded(e),
                EventBody::FileAccessed(e) => B::FileAccessed(now::FileAccessed {
                    kind: e.kind,
                    file: e.file,
                    process: e.process,
                    container: e.container.map(|c| now::ContainerRef::new(c.runtime, c.id)),
                    interceptor_mode: e.interceptor_mode,
                    policy: e.policy,
                    blocking: e.blocking,
                }),
                EventBody::ScanRequested(e) => B::ScanRequested(e),
                EventBody::VerdictIssued(e) => B::VerdictIssued(e),
                EventBody::DecisionMade(e) => B::DecisionMade(e),
                EventBody::ActionTaken(e) => B::ActionTaken(e),
                EventBody::QueueOverflowed(e) => B::QueueOverflowed(e),
            };
            crate::Envelope {
                schema: SCHEMA_VERSION,
                event_id: self.event_id,
                node_id: self.node_id,
                seq: self.seq,
                timestamp: self.timestamp,
                trace: self.trace,
                body,
            }
        }
    }
}
