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
        "unsupported schema version {found} at offset 2 (this build reads version {supported})"
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

/// Decodes one envelope, rejecting unknown schema versions.
pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let version = peek_version(bytes)?;
    if version != SCHEMA_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let (env, used): (Envelope, usize) =
        bincode::serde::decode_from_slice(&bytes[HEADER_LEN..], decode_config())
            .map_err(|source| DecodeError::Body { source })?;
    let end = HEADER_LEN + used;
    if end != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            offset: end,
            extra: bytes.len() - end,
        });
    }
    if env.schema != version {
        return Err(DecodeError::VersionMismatch {
            header: version,
            inner: env.schema,
        });
    }
    Ok(env)
}
