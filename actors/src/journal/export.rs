//! Journal exports: a consistent copy of a journal's records that readers
//! can take while the agent runs.
//!
//! sled allows one process per database, and a second open of a live
//! journal would fail (or, worse, race the writer if forced). So a running
//! agent serves its journal on a Unix socket, `<journal dir>/export.sock`
//! (mode 0600), and readers (`portcullis replay`, `investigate`) ask it for
//! an export instead of opening the database. The same stream, written to a
//! file (`portcullis replay --format export`), is a portable snapshot.
//!
//! # Format (version 1, all integers big-endian)
//!
//! ```text
//! request (client → agent):  "PCJR" u16 version  u64 from_seq  u8 follow
//! header:                    "PCJX" u16 version  u16 node_len  node_id  u64 from_seq  u64 last_seq
//! record (repeated):         u64 seq  u32 len  len bytes (the codec's encoding, as stored)
//! end:                       u64 0    u32 0
//! ```
//!
//! `last_seq` is the journal's last committed seq when the export began:
//! a snapshot export carries exactly the records `from_seq..=last_seq`
//! (records are immutable and committed in seq order, so that prefix is
//! consistent) and then the end marker. A follow export (`follow = 1`) has
//! no end: after `last_seq` it goes on with records as they are committed.
//! A stream that stops without the end marker was cut short, and the reader
//! says so.

use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use portcullis_schemas::NodeId;

use super::error::JournalError;
use super::reader::JournalReader;

/// The socket's file name inside the journal directory.
pub const EXPORT_SOCKET: &str = "export.sock";
/// The format version this build writes and reads.
pub const EXPORT_VERSION: u16 = 1;
const REQUEST_MAGIC: &[u8; 4] = b"PCJR";
const HEADER_MAGIC: &[u8; 4] = b"PCJX";
/// Exports served at once; more connections are refused.
pub const MAX_CLIENTS: usize = 8;
/// Records read from sled per batch.
const BATCH: usize = 4096;
/// How often a follow export looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// A client that does not send its request in this time is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A write to a reader that does not read fails after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A record longer than this is refused by readers (matches the codec's
/// decode limit).
const MAX_RECORD: u32 = 16 << 20;

/// The path of a journal's export socket.
pub fn socket_path(journal_dir: &Path) -> PathBuf {
    journal_dir.join(EXPORT_SOCKET)
}

/// What an export reader learns first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportHeader {
    pub node_id: NodeId,
    pub from_seq: u64,
    /// The last committed seq when the export began.
    pub last_seq: u64,
}

/// Problems reading an export, each naming where.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{origin}: {source}")]
    Io {
        origin: String,
        #[source]
        source: io::Error,
    },
    #[error("{origin}: not a portcullis journal export (bad magic at offset {offset})")]
    BadMagic { origin: String, offset: u64 },
    #[error("{origin}: export format version {found} is not supported (this build reads {EXPORT_VERSION})")]
    Version { origin: String, found: u16 },
    #[error("{origin}: record at offset {offset} claims {len} bytes (limit {MAX_RECORD})")]
    TooLong {
        origin: String,
        offset: u64,
        len: u32,
    },
    #[error("{origin}: the export ends at offset {offset} without its end marker (cut short)")]
    Truncated { origin: String, offset: u64 },
    #[error("{origin}: the agent refused the export: {message}")]
    Refused { origin: String, message: String },
}

fn write_request(w: &mut impl Write, from_seq: u64, follow: bool) -> io::Result<()> {
    w.write_all(REQUEST_MAGIC)?;
    w.write_all(&EXPORT_VERSION.to_be_bytes())?;
    w.write_all(&from_seq.to_be_bytes())?;
    w.write_all(&[u8::from(follow)])?;
    w.flush()
}

fn read_request(r: &mut impl Read) -> io::Result<(u64, bool)> {
    let mut buf = [0u8; 15];
    r.read_exact(&mut buf)?;
    if &buf[..4] != REQUEST_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request magic",
        ));
    }
    let version = u16::from_be_bytes([buf[4], buf[5]]);
    if version != EXPORT_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("request version {version}, this agent speaks {EXPORT_VERSION}"),
        ));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&buf[6..14]);
    Ok((u64::from_be_bytes(seq), buf[14] != 0))
}

/// Writes the header of an export.
pub fn write_header(w: &mut impl Write, h: &ExportHeader) -> io::Result<()> {
    let node = h.node_id.0.as_bytes();
    let len = u16::try_from(node.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "node id longer than 65535"))?;
    w.write_all(HEADER_MAGIC)?;
    w.write_all(&EXPORT_VERSION.to_be_bytes())?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(node)?;
    w.write_all(&h.from_seq.to_be_bytes())?;
    w.write_all(&h.last_seq.to_be_bytes())
}

/// Writes one record frame.
pub fn write_record(w: &mut impl Write, seq: u64, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record longer than 4 GiB"))?;
    w.write_all(&seq.to_be_bytes())?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(bytes)
}

/// Writes the end marker of a snapshot export.
pub fn write_end(w: &mut impl Write) -> io::Result<()> {
    w.write_all(&0u64.to_be_bytes())?;
    w.write_all(&0u32.to_be_bytes())
}

/// Reads an export: from a file, from stdin, or from an agent's socket.
pub struct ExportReader<R> {
    inner: BufReader<R>,
    origin: String,
    offset: u64,
    header: ExportHeader,
    ended: bool,
}

impl<R> fmt::Debug for ExportReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportReader")
            .field("origin", &self.origin)
            .field("offset", &self.offset)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl ExportReader<UnixStream> {
    /// Asks the agent that owns `journal_dir` for an export from `from_seq`
    /// (1 = everything); with `follow`, the stream goes on with new records.
    /// Fails with an `Io` error of kind `NotFound`/`ConnectionRefused` when
    /// no agent serves the journal.
    pub fn connect(journal_dir: &Path, from_seq: u64, follow: bool) -> Result<Self, ExportError> {
        let path = socket_path(journal_dir);
        let origin = path.display().to_string();
        let io = |source| ExportError::Io {
            origin: origin.clone(),
            source,
        };
        let mut stream = UnixStream::connect(&path).map_err(io)?;
        stream
            .set_write_timeout(Some(REQUEST_TIMEOUT))
            .map_err(io)?;
        write_request(&mut stream, from_seq.max(1), follow).map_err(io)?;
        Self::new(stream, origin)
    }
}

impl<R: Read> ExportReader<R> {
    /// Reads the header from `inner`; `origin` names it in errors.
    pub fn new(inner: R, origin: impl Into<String>) -> Result<Self, ExportError> {
        let origin = origin.into();
        let mut inner = BufReader::with_capacity(1 << 16, inner);
        let io = |source| ExportError::Io {
            origin: origin.clone(),
            source,
        };
        let mut magic = [0u8; 4];
        inner.read_exact(&mut magic).map_err(io)?;
        if &magic == b"PCJE" {
            // The agent's refusal: "PCJE" u16 len message.
            let mut len = [0u8; 2];
            inner.read_exact(&mut len).map_err(io)?;
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            inner.read_exact(&mut msg).map_err(io)?;
            return Err(ExportError::Refused {
                origin,
                message: String::from_utf8_lossy(&msg).into_owned(),
            });
        }
        if &magic != HEADER_MAGIC {
            return Err(ExportError::BadMagic { origin, offset: 0 });
        }
        let mut fixed = [0u8; 4];
        inner.read_exact(&mut fixed).map_err(io)?;
        let version = u16::from_be_bytes([fixed[0], fixed[1]]);
        if version != EXPORT_VERSION {
            return Err(ExportError::Version {
                origin,
                found: version,
            });
        }
        let node_len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        let mut node = vec![0u8; node_len];
        inner.read_exact(&mut node).map_err(io)?;
        let mut seqs = [0u8; 16];
        inner.read_exact(&mut seqs).map_err(io)?;
        let (a, b) = seqs.split_at(8);
        let header = ExportHeader {
            node_id: NodeId(String::from_utf8_lossy(&node).into_owned()),
            from_seq: u64::from_be_bytes(a.try_into().unwrap_or_default()),
            last_seq: u64::from_be_bytes(b.try_into().unwrap_or_default()),
        };
        let offset = (4 + 4 + node_len + 16) as u64;
        Ok(Self {
            inner,
            origin,
            offset,
            header,
            ended: false,
        })
    }

    pub fn header(&self) -> &ExportHeader {
        &self.header
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// True when nothing is buffered: the next record needs a read that
    /// may block (a follow stream waiting for new records).
    pub fn is_idle(&self) -> bool {
        self.inner.buffer().is_empty()
    }

    /// A read that failed at the current record: the end of the input
    /// there means the export was cut short.
    fn read_error(&self, e: io::Error) -> ExportError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ExportError::Truncated {
                origin: self.origin.clone(),
                offset: self.offset,
            }
        } else {
            ExportError::Io {
                origin: self.origin.clone(),
                source: e,
            }
        }
    }

    /// The next record `(seq, bytes)`, or `None` at the end marker. A
    /// stream that ends without the marker is [`ExportError::Truncated`].
    pub fn next_record(&mut self) -> Result<Option<(u64, Vec<u8>)>, ExportError> {
        if self.ended {
            return Ok(None);
        }
        let mut head = [0u8; 12];
        self.inner
            .read_exact(&mut head)
            .map_err(|e| self.read_error(e))?;
        let (s, l) = head.split_at(8);
        let seq = u64::from_be_bytes(s.try_into().unwrap_or_default());
        let len = u32::from_be_bytes(l.try_into().unwrap_or_default());
        if seq == 0 && len == 0 {
            self.ended = true;
            return Ok(None);
        }
        if len > MAX_RECORD {
            return Err(ExportError::TooLong {
                origin: self.origin.clone(),
                offset: self.offset,
                len,
            });
        }
        let mut bytes = vec![0u8; len as usize];
        self.inner
            .read_exact(&mut bytes)
            .map_err(|e| self.read_error(e))?;
        self.offset += 12 + u64::from(len);
        Ok(Some((seq, bytes)))
    }
}

/// Writes an export of `reader` from `from_seq` to `out`: a snapshot up to
/// the last committed seq, or with `follow` every record as it commits
/// for as long as `follow` returns true (it is asked whenever there is
/// nothing new) and the writer works. Returns the records written.
pub fn export_to(
    reader: &JournalReader,
    node_id: &NodeId,
    from_seq: u64,
    follow: Option<&dyn Fn() -> bool>,
    out: &mut impl Write,
) -> Result<u64, ExportStreamError> {
    let from_seq = from_seq.max(1);
    let last_seq = reader.last_seq()?;
    write_header(
        out,
        &ExportHeader {
            node_id: node_id.clone(),
            from_seq,
            last_seq,
        },
    )?;
    let mut next = from_seq;
    let mut written = 0u64;
    loop {
        let limit = match follow {
            Some(_) => u64::MAX,
            None => last_seq,
        };
        if next > limit {
            break;
        }
        let want = usize::try_from((limit - next).saturating_add(1))
            .unwrap_or(BATCH)
            .min(BATCH);
        let batch = reader.raw_from(next, want)?;
        if batch.is_empty() {
            match follow {
                Some(go_on) if go_on() => {
                    out.flush()?;
                    std::thread::sleep(FOLLOW_POLL);
                    continue;
                }
                _ => break,
            }
        }
        for (seq, bytes) in batch {
            if seq > limit {
                break;
            }
            write_record(out, seq, &bytes)?;
            written += 1;
            next = seq + 1;
        }
    }
    write_end(out)?;
    out.flush()?;
    Ok(written)
}

/// Why an export stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ExportStreamError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("writing the export: {0}")]
    Io(#[from] io::Error),
}

/// The agent's side: serves exports of its journal on
/// `<journal dir>/export.sock` until dropped.
pub struct ExportServer(portcullis_interceptor::local_socket::Served);

impl fmt::Debug for ExportServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportServer")
            .field("path", &self.0.path())
            .finish_non_exhaustive()
    }
}

impl ExportServer {
    /// Binds the socket (replacing a stale one: the caller holds the
    /// journal's lock, so no other agent serves this directory) and starts
    /// the accepting thread.
    pub fn start(journal_dir: &Path, reader: JournalReader, node_id: NodeId) -> io::Result<Self> {
        portcullis_interceptor::local_socket::Served::spawn(
            &socket_path(journal_dir),
            "journal-export",
            move |listener, stop| serve(listener, reader, node_id, stop),
        )
        .map(Self)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

fn serve(listener: UnixListener, reader: JournalReader, node_id: NodeId, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut clients: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                clients.retain(|c| !c.is_finished());
                if active.load(Ordering::Relaxed) >= MAX_CLIENTS {
                    refuse(stream, "too many exports at once; try again");
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let (reader, node_id, stop, done) = (
                    reader.clone(),
                    node_id.clone(),
                    stop.clone(),
                    active.clone(),
                );
                let spawned = std::thread::Builder::new()
                    .name("journal-export-client".into())
                    .spawn(move || {
                        client(stream, &reader, &node_id, &stop);
                        done.fetch_sub(1, Ordering::Relaxed);
                    });
                match spawned {
                    Ok(h) => clients.push(h),
                    Err(e) => {
                        active.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "journal export: cannot start a thread");
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::warn!(error = %e, "journal export: accept");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    for c in clients {
        let _ = c.join();
    }
}

fn refuse(mut stream: UnixStream, why: &str) {
    let msg = why.as_bytes();
    let len = u16::try_from(msg.len()).unwrap_or(0);
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream
        .write_all(b"PCJE")
        .and_then(|()| stream.write_all(&len.to_be_bytes()))
        .and_then(|()| stream.write_all(&msg[..usize::from(len)]));
}

fn client(stream: UnixStream, reader: &JournalReader, node_id: &NodeId, stop: &AtomicBool) {
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(REQUEST_TIMEOUT)))
        // A reader that stops reading cannot hold the agent's shutdown
        // (which joins this thread) for longer than this.
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    let input = match setup.and_then(|()| stream.try_clone()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "journal export: socket setup");
            return;
        }
    };
    let (from, follow) = match read_request(&mut &input) {
        Ok(r) => r,
        Err(e) => {
            refuse(stream, &format!("bad request: {e}"));
            return;
        }
    };
    // While following, the client's side of the socket says when it went
    // away (a read of 0 bytes), even when no record comes to fail a write.
    let go_on = || {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let mut probe = [0u8; 1];
        // SAFETY: a valid fd owned by `input` and a 1-byte buffer we own.
        let n = unsafe {
            libc::recv(
                input.as_raw_fd(),
                probe.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => false,
            n if n > 0 => true,
            _ => io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock,
        }
    };
    let mut out = BufWriter::with_capacity(1 << 16, stream);
    let following: Option<&dyn Fn() -> bool> = if follow { Some(&go_on) } else { None };
    match export_to(reader, node_id, from, following, &mut out) {
        Ok(n) => tracing::debug!(records = n, from, follow, "journal export served"),
        // A reader that goes away (broken pipe) is the normal end of a
        // follow export.
        Err(ExportStreamError::Io(e)) => {
            tracing::debug!(error = %e, "journal export: reader went away")
        }
        Err(e) => tracing::warn!(error = %e, "journal export failed"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use portcullis_schemas::{codec, EventBody, OverflowSource, QueueOverflowed};

    use super::super::{JournalConfig, JournalStore, Record};
    use super::*;

    fn body(count: u64) -> EventBody {
        EventBody::QueueOverflowed(QueueOverflowed {
            source: OverflowSource::Kernel,
            count,
        })
    }

    #[test]
    fn snapshot_over_the_socket_while_the_store_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig::new(dir.path(), NodeId("node-a".into()));
        let mut store = JournalStore::open(&cfg).unwrap();
        store
            .append_batch((1..=10).map(|n| Record::new(body(n))).collect())
            .unwrap();
        let server =
            ExportServer::start(dir.path(), store.reader(), NodeId("node-a".into())).unwrap();
        let mut r = ExportReader::connect(dir.path(), 4, false).unwrap();
        assert_eq!(r.header().node_id.0, "node-a");
        assert_eq!((r.header().from_seq, r.header().last_seq), (4, 10));
        // Records committed after the export began are not in the snapshot.
        store.append_batch(vec![Record::new(body(11))]).unwrap();
        let mut seqs = vec![];
        while let Some((seq, bytes)) = r.next_record().unwrap() {
            assert_eq!(codec::decode(&bytes).unwrap().seq, seq);
            seqs.push(seq);
        }
        assert_eq!(seqs, (4..=10).collect::<Vec<_>>());
        drop(server);
        assert!(!socket_path(dir.path()).exists());
        assert!(ExportReader::connect(dir.path(), 1, false).is_err());
    }

    #[test]
    fn follow_streams_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig::new(dir.path(), NodeId("n".into()));
        let mut store = JournalStore::open(&cfg).unwrap();
        store.append_batch(vec![Record::new(body(1))]).unwrap();
        let _server = ExportServer::start(dir.path(), store.reader(), NodeId("n".into())).unwrap();
        let mut r = ExportReader::connect(dir.path(), 1, true).unwrap();
        assert_eq!(r.next_record().unwrap().unwrap().0, 1);
        store.append_batch(vec![Record::new(body(2))]).unwrap();
        assert_eq!(r.next_record().unwrap().unwrap().0, 2);
    }

    #[test]
    fn a_cut_short_export_is_reported_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig::new(dir.path(), NodeId("n".into()));
        let mut store = JournalStore::open(&cfg).unwrap();
        store
            .append_batch((1..=3).map(|n| Record::new(body(n))).collect())
            .unwrap();
        let mut buf = Vec::new();
        assert_eq!(
            export_to(&store.reader(), &NodeId("n".into()), 1, None, &mut buf).unwrap(),
            3
        );
        let whole = buf.len();
        let mut r = ExportReader::new(&buf[..], "x.export").unwrap();
        let mut n = 0;
        while r.next_record().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
        let mut r = ExportReader::new(&buf[..whole - 12 - 5], "x.export").unwrap();
        let err = loop {
            match r.next_record() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a cut export must not end cleanly"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, ExportError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("x.export"), "{err}");
        let bad = ExportReader::new(&b"nope-not-an-export"[..], "y").unwrap_err();
        assert!(matches!(bad, ExportError::BadMagic { .. }));
    }
}
