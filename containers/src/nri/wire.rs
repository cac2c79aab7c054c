//! NRI's transport: one Unix stream carrying two logical connections
//! (containerd/nri `pkg/net/multiplex`), each a ttrpc byte stream
//! (containerd/ttrpc `channel.go`).
//!
//! - mux frame: 4-byte connection id, 4-byte payload length (big endian),
//!   payload. A connection's bytes may be cut anywhere across frames.
//! - ttrpc message: 4-byte length, 4-byte stream id (big endian), 1-byte
//!   type (1 request, 2 response, 3 data), 1-byte flags, payload (a
//!   protobuf `Request` or `Response`).
//!
//! Connection 1 carries the runtime's requests to the plugin's service;
//! connection 2 the plugin's requests to the runtime's service.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

/// The runtime calls the plugin on this connection.
pub const PLUGIN_CONN: u32 = 1;
/// The plugin calls the runtime on this connection.
pub const RUNTIME_CONN: u32 = 2;

const MUX_HEADER: usize = 8;
const TTRPC_HEADER: usize = 10;
/// ttrpc's largest message payload.
pub const TTRPC_MAX: usize = 4 << 20;
/// The largest mux frame payload (a ttrpc header and its largest payload).
const MUX_MAX: usize = TTRPC_HEADER + TTRPC_MAX;

pub const TYPE_REQUEST: u8 = 1;
pub const TYPE_RESPONSE: u8 = 2;

/// A ttrpc message on one of the mux connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub conn: u32,
    pub stream: u32,
    pub kind: u8,
    pub flags: u8,
    pub payload: Vec<u8>,
}

/// A violation of the framing: the session cannot continue.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("mux frame of {len} bytes on connection {conn} (at most {MUX_MAX})")]
    FrameTooLarge { conn: u32, len: usize },
    #[error("ttrpc message of {len} bytes on connection {conn} (at most {TTRPC_MAX})")]
    MessageTooLarge { conn: u32, len: usize },
    #[error("the runtime closed the connection")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reassembles ttrpc messages from mux frames read off a stream.
#[derive(Debug, Default)]
pub struct Demux {
    /// Bytes read from the trunk, not yet a whole frame.
    raw: Vec<u8>,
    /// Per connection: bytes of a ttrpc message not yet whole.
    conns: HashMap<u32, Vec<u8>>,
}

impl Demux {
    /// Reads what the stream has (a read timeout returns `Ok(false)`).
    pub fn fill(&mut self, r: &mut impl Read) -> Result<bool, WireError> {
        let mut buf = [0u8; 64 * 1024];
        match r.read(&mut buf) {
            Ok(0) => Err(WireError::Closed),
            Ok(n) => {
                self.feed(&buf[..n])?;
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes bytes of the trunk: whole frames move to their connection.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.raw.extend_from_slice(bytes);
        let mut at = 0;
        while self.raw.len() - at >= MUX_HEADER {
            let conn = be32(&self.raw[at..]);
            let len = be32(&self.raw[at + 4..]) as usize;
            if len > MUX_MAX {
                return Err(WireError::FrameTooLarge { conn, len });
            }
            if self.raw.len() - at - MUX_HEADER < len {
                break;
            }
            let start = at + MUX_HEADER;
            self.conns
                .entry(conn)
                .or_default()
                .extend_from_slice(&self.raw[start..start + len]);
            at = start + len;
        }
        self.raw.drain(..at);
        Ok(())
    }

    /// The next whole ttrpc message, of any connection.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        for (&conn, buf) in self.conns.iter_mut() {
            if buf.len() < TTRPC_HEADER {
                continue;
            }
            let len = be32(buf) as usize;
            if len > TTRPC_MAX {
                return Err(WireError::MessageTooLarge { conn, len });
            }
            if buf.len() < TTRPC_HEADER + len {
                continue;
            }
            let stream = be32(&buf[4..]);
            let kind = buf[8];
            let flags = buf[9];
            let payload = buf[TTRPC_HEADER..TTRPC_HEADER + len].to_vec();
            buf.drain(..TTRPC_HEADER + len);
            return Ok(Some(Message {
                conn,
                stream,
                kind,
                flags,
                payload,
            }));
        }
        Ok(None)
    }
}

/// Encodes `m` as mux frames (one, unless the message is larger than a
/// frame may be).
pub fn encode(m: &Message) -> Result<Vec<u8>, WireError> {
    if m.payload.len() > TTRPC_MAX {
        return Err(WireError::MessageTooLarge {
            conn: m.conn,
            len: m.payload.len(),
        });
    }
    let mut body = Vec::with_capacity(TTRPC_HEADER + m.payload.len());
    body.extend_from_slice(&(m.payload.len() as u32).to_be_bytes());
    body.extend_from_slice(&m.stream.to_be_bytes());
    body.push(m.kind);
    body.push(m.flags);
    body.extend_from_slice(&m.payload);
    let mut out = Vec::with_capacity(body.len() + MUX_HEADER);
    for chunk in body.chunks(MUX_MAX) {
        out.extend_from_slice(&m.conn.to_be_bytes());
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    Ok(out)
}

/// Writes `m` to the trunk.
pub fn send(w: &mut impl Write, m: &Message) -> Result<(), WireError> {
    w.write_all(&encode(m)?)?;
    w.flush()?;
    Ok(())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn msg(conn: u32, stream: u32, payload: &[u8]) -> Message {
        Message {
            conn,
            stream,
            kind: TYPE_REQUEST,
            flags: 0,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn a_message_round_trips_through_the_mux() {
        let m = msg(PLUGIN_CONN, 7, b"hello");
        let bytes = encode(&m).unwrap();
        // mux header: conn 1, 15 bytes; ttrpc header: 5 bytes, stream 7,
        // request, no flags.
        assert_eq!(
            &bytes[..18],
            &[0, 0, 0, 1, 0, 0, 0, 15, 0, 0, 0, 5, 0, 0, 0, 7, 1, 0]
        );
        let mut d = Demux::default();
        d.feed(&bytes).unwrap();
        assert_eq!(d.next_message().unwrap(), Some(m));
        assert_eq!(d.next_message().unwrap(), None);
    }

    #[test]
    fn messages_cut_anywhere_and_interleaved_are_reassembled() {
        let a = msg(PLUGIN_CONN, 1, &[0xaa; 300]);
        let b = msg(RUNTIME_CONN, 3, &[0xbb; 50]);
        // The ttrpc stream of `a` split over two mux frames, with a frame
        // of connection 2 between them.
        let ea = encode(&a).unwrap();
        let ttrpc_a = &ea[MUX_HEADER..];
        let (a1, a2) = ttrpc_a.split_at(7);
        let mut trunk = Vec::new();
        for (conn, part) in [
            (PLUGIN_CONN, a1),
            (RUNTIME_CONN, &encode(&b).unwrap()[8..]),
            (PLUGIN_CONN, a2),
        ] {
            trunk.extend_from_slice(&conn.to_be_bytes());
            trunk.extend_from_slice(&(part.len() as u32).to_be_bytes());
            trunk.extend_from_slice(part);
        }
        let mut d = Demux::default();
        let mut got = Vec::new();
        // Fed one byte at a time: frame boundaries are found, not assumed.
        for byte in &trunk {
            d.feed(std::slice::from_ref(byte)).unwrap();
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        got.sort_by_key(|m| m.conn);
        assert_eq!(got, vec![a, b]);
    }

    #[test]
    fn oversized_frames_and_messages_are_errors() {
        let mut d = Demux::default();
        let mut bad = Vec::new();
        bad.extend_from_slice(&1u32.to_be_bytes());
        bad.extend_from_slice(&(MUX_MAX as u32 + 1).to_be_bytes());
        assert!(matches!(
            d.feed(&bad),
            Err(WireError::FrameTooLarge { conn: 1, .. })
        ));

        let mut d = Demux::default();
        let mut frame = Vec::new();
        frame.extend_from_slice(&2u32.to_be_bytes());
        frame.extend_from_slice(&10u32.to_be_bytes());
        frame.extend_from_slice(&(TTRPC_MAX as u32 + 1).to_be_bytes());
        frame.extend_from_slice(&[0; 6]);
        d.feed(&frame).unwrap();
        assert!(matches!(
            d.next_message(),
            Err(WireError::MessageTooLarge { conn: 2, .. })
        ));
    }

    #[test]
    fn a_closed_stream_is_reported() {
        let mut d = Demux::default();
        assert!(matches!(
            d.fill(&mut std::io::empty()),
            Err(WireError::Closed)
        ));
    }
}
