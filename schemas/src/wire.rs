//! Messages between node agents and scanner services (distributed mode).
//!
//! Commands are imperative ([`ScanRequest`]), replies and shared facts are
//! past tense ([`ScanReplied`], [`VerdictShared`]). Each is framed like an
//! envelope: two magic bytes naming the message kind, the wire version
//! (u16, big endian), then bincode 2 (serde, standard config, bounded
//! decode). A reader rejects a message of another kind or an unknown
//! version with an error naming what it found.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::DECODE_LIMIT;
use crate::envelope::{EventId, NodeId, Timestamp, TraceContext};
use crate::events::{RulesetVersion, Verdict};

/// The wire version of every message kind below.
pub const WIRE_VERSION: u16 = 1;

/// Scan this content and send the verdict to the named reply partition.
/// Keyed by the content's sha256 on the scan-requests topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanRequest {
    /// The access (its `FileAccessed` event id): the correlation id.
    pub request: EventId,
    pub node_id: NodeId,
    pub reply_topic: String,
    pub reply_partition: i32,
    pub sha256: [u8; 32],
    pub size: u64,
    #[serde(with = "serde_bytes")]
    pub content: Vec<u8>,
    pub trace: TraceContext,
    pub sent_at: Timestamp,
}

/// The verdict for one [`ScanRequest`], sent to its reply partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanReplied {
    pub request: EventId,
    pub node_id: NodeId,
    pub sha256: [u8; 32],
    pub size: u64,
    pub verdict: Verdict,
    pub ruleset: RulesetVersion,
    /// The scanner instance that produced it.
    pub scanner: String,
    pub scan_duration_us: u64,
}

/// A verdict shared across the cluster (compacted topic keyed by
/// [`shared_verdict_key`]). Only clean and infected verdicts are shared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictShared {
    pub sha256: [u8; 32],
    pub ruleset: RulesetVersion,
    pub verdict: Verdict,
    pub scanned_at: Timestamp,
}

/// The key of a shared verdict: sha256, then the ruleset version.
pub fn shared_verdict_key(sha256: &[u8; 32], ruleset: &RulesetVersion) -> Vec<u8> {
    let mut k = Vec::with_capacity(32 + 1 + ruleset.0.len());
    k.extend_from_slice(sha256);
    k.push(b':');
    k.extend_from_slice(ruleset.0.as_bytes());
    k
}

/// A message kind with its magic bytes.
pub trait WireMessage: Serialize + DeserializeOwned {
    const MAGIC: [u8; 2];
    const NAME: &'static str;
}

impl WireMessage for ScanRequest {
    const MAGIC: [u8; 2] = *b"PQ";
    const NAME: &'static str = "ScanRequest";
}

impl WireMessage for ScanReplied {
    const MAGIC: [u8; 2] = *b"PR";
    const NAME: &'static str = "ScanReplied";
}

impl WireMessage for VerdictShared {
    const MAGIC: [u8; 2] = *b"PV";
    const NAME: &'static str = "VerdictShared";
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{kind}: {len} bytes is shorter than the 4-byte header")]
    Truncated { kind: &'static str, len: usize },
    #[error("{kind}: magic {found:02x?} at offset 0, expected {expected:02x?}")]
    BadMagic {
        kind: &'static str,
        found: [u8; 2],
        expected: [u8; 2],
    },
    #[error("{kind}: unsupported wire version {found} at offset 2 (this build reads {supported})")]
    UnsupportedVersion {
        kind: &'static str,
        found: u16,
        supported: u16,
    },
    #[error("{kind}: undecodable body after offset 4: {source}")]
    Body {
        kind: &'static str,
        #[source]
        source: bincode::error::DecodeError,
    },
    #[error("{kind}: {extra} trailing bytes at offset {offset}")]
    TrailingBytes {
        kind: &'static str,
        offset: usize,
        extra: usize,
    },
    #[error("{kind}: encoding failed: {source}")]
    Encode {
        kind: &'static str,
        #[source]
        source: bincode::error::EncodeError,
    },
}

/// Encodes a message with its header.
pub fn encode<M: WireMessage>(msg: &M) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&M::MAGIC);
    out.extend_from_slice(&WIRE_VERSION.to_be_bytes());
    bincode::serde::encode_into_std_write(msg, &mut out, bincode::config::standard()).map_err(
        |source| WireError::Encode {
            kind: M::NAME,
            source,
        },
    )?;
    Ok(out)
}

/// Decodes a message, checking its kind and version.
pub fn decode<M: WireMessage>(bytes: &[u8]) -> Result<M, WireError> {
    if bytes.len() < 4 {
        return Err(WireError::Truncated {
            kind: M::NAME,
            len: bytes.len(),
        });
    }
    let found = [bytes[0], bytes[1]];
    if found != M::MAGIC {
        return Err(WireError::BadMagic {
            kind: M::NAME,
            found,
            expected: M::MAGIC,
        });
    }
    let version = u16::from_be_bytes([bytes[2], bytes[3]]);
    if version != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion {
            kind: M::NAME,
            found: version,
            supported: WIRE_VERSION,
        });
    }
    let cfg = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (msg, used): (M, usize) =
        bincode::serde::decode_from_slice(&bytes[4..], cfg).map_err(|source| WireError::Body {
            kind: M::NAME,
            source,
        })?;
    if 4 + used != bytes.len() {
        return Err(WireError::TrailingBytes {
            kind: M::NAME,
            offset: 4 + used,
            extra: bytes.len() - 4 - used,
        });
    }
    Ok(msg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request() -> ScanRequest {
        ScanRequest {
            request: EventId::new(),
            node_id: NodeId("n1".into()),
            reply_topic: "portcullis.verdicts.v1".into(),
            reply_partition: 3,
            sha256: [9; 32],
            size: 4,
            content: b"abcd".to_vec(),
            trace: TraceContext::default(),
            sent_at: Timestamp(1),
        }
    }

    #[test]
    fn messages_round_trip() {
        let r = request();
        assert_eq!(decode::<ScanRequest>(&encode(&r).unwrap()).unwrap(), r);
        let v = VerdictShared {
            sha256: [1; 32],
            ruleset: RulesetVersion("abc".into()),
            verdict: Verdict::Clean,
            scanned_at: Timestamp(5),
        };
        assert_eq!(decode::<VerdictShared>(&encode(&v).unwrap()).unwrap(), v);
    }

    #[test]
    fn the_wrong_kind_or_version_is_rejected_by_name() {
        let bytes = encode(&request()).unwrap();
        let err = decode::<ScanReplied>(&bytes).unwrap_err().to_string();
        assert!(err.starts_with("ScanReplied: magic"), "{err}");
        let mut v2 = bytes.clone();
        v2[3] = 2;
        let err = decode::<ScanRequest>(&v2).unwrap_err().to_string();
        assert!(err.contains("unsupported wire version 2"), "{err}");
        assert!(matches!(
            decode::<ScanRequest>(b"PQ"),
            Err(WireError::Truncated { .. })
        ));
        let mut long = bytes;
        long.push(0);
        assert!(matches!(
            decode::<ScanRequest>(&long),
            Err(WireError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn shared_verdict_keys_differ_by_ruleset() {
        let a = shared_verdict_key(&[1; 32], &RulesetVersion("a".into()));
        let b = shared_verdict_key(&[1; 32], &RulesetVersion("b".into()));
        assert_ne!(a, b);
        assert_eq!(&a[..32], &[1; 32]);
    }
}
