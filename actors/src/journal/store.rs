//! The synchronous store: sled trees, the seq counter, encoding.

use std::collections::HashSet;
use std::convert::Infallible;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_schemas::{codec, Envelope, EventId, NodeId, SCHEMA_VERSION};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::config::JournalConfig;
use super::error::JournalError;
use super::record::Record;

const EVENTS_TREE: &str = "events";
const BY_ID_TREE: &str = "by_id";
const META_TREE: &str = "meta";
const META_NODE_ID: &str = "node_id";
const META_SCHEMA_VERSION: &str = "schema_version";

/// How long [`JournalStore::open`] waits for a lock being released before
/// it reports [`JournalError::InUse`].
const LOCK_GRACE: Duration = Duration::from_secs(1);
const LOCK_RETRY_STEP: Duration = Duration::from_millis(5);

/// sled's page cache. Its default (1 GiB) is far too much for an agent on
/// a container node; the journal is append-mostly and read at its tail.
const CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// The append-only journal store. Usable without actix (CLI readers,
/// tests, benches).
///
/// While a `JournalStore` is open, sled holds an exclusive lock on its
/// directory: a second open, from this process or another, fails with
/// [`JournalError::InUse`].
pub struct JournalStore {
    dir: PathBuf,
    node_id: NodeId,
    created_schema: u16,
    db: sled::Db,
    events: sled::Tree,
    by_id: sled::Tree,
    meta: sled::Tree,
    last_seq: u64,
    /// Set when a write or flush failed: appends are refused until reopen.
    poisoned: Option<String>,
}

impl fmt::Debug for JournalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalStore")
            .field("dir", &self.dir)
            .field("node_id", &self.node_id)
            .field("last_seq", &self.last_seq)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// A failed append that hands the records back, so the caller can retry.
pub(crate) struct AppendFailure {
    pub(crate) error: JournalError,
    pub(crate) records: Vec<Record>,
}

impl JournalStore {
    /// Opens (or creates) the journal in `cfg.dir` for `cfg.node_id`.
    ///
    /// Fails with [`JournalError::InUse`] when another handle (a running
    /// agent) has it open (after waiting up to a second for a handle that
    /// is being closed: sled releases its lock a moment after the drop), and with [`JournalError::NodeMismatch`] when the
    /// directory was created for another node.
    pub fn open(cfg: &JournalConfig) -> Result<Self, JournalError> {
        cfg.validate()?;
        Self::open_inner(&cfg.dir, Some(&cfg.node_id))
    }

    /// Opens an existing journal for whichever node created it (readers
    /// that do not know the node id). Never creates one.
    pub fn open_existing(dir: &Path) -> Result<Self, JournalError> {
        // sled 0.34 keeps its log in `<dir>/db`.
        if !dir.join("db").is_file() {
            return Err(JournalError::NotFound {
                dir: dir.to_path_buf(),
            });
        }
        Self::open_inner(dir, None)
    }

    fn open_inner(dir: &Path, node: Option<&NodeId>) -> Result<Self, JournalError> {
        let db = open_db(dir)?;
        let storage = |op: &'static str| {
            move |source| JournalError::Storage {
                dir: dir.to_path_buf(),
                op,
                source,
            }
        };
        let events = db
            .open_tree(EVENTS_TREE)
            .map_err(storage("opening tree `events`"))?;
        let by_id = db
            .open_tree(BY_ID_TREE)
            .map_err(storage("opening tree `by_id`"))?;
        let meta = db
            .open_tree(META_TREE)
            .map_err(storage("opening tree `meta`"))?;

        let corrupt = |key: &'static str, problem: String| JournalError::CorruptMeta {
            dir: dir.to_path_buf(),
            key,
            problem,
        };
        let stored_node = meta
            .get(META_NODE_ID)
            .map_err(storage("reading metadata"))?;
        let (node_id, created_schema) = match stored_node {
            Some(raw) => {
                let stored = String::from_utf8(raw.to_vec())
                    .map(NodeId)
                    .map_err(|e| corrupt(META_NODE_ID, format!("not UTF-8: {e}")))?;
                if let Some(configured) = node {
                    if *configured != stored {
                        return Err(JournalError::NodeMismatch {
                            dir: dir.to_path_buf(),
                            stored,
                            configured: configured.clone(),
                        });
                    }
                }
                let raw_version = meta
                    .get(META_SCHEMA_VERSION)
                    .map_err(storage("reading metadata"))?
                    .ok_or_else(|| corrupt(META_SCHEMA_VERSION, "missing".to_owned()))?;
                let version = <[u8; 2]>::try_from(raw_version.as_ref())
                    .map(u16::from_be_bytes)
                    .map_err(|_| {
                        corrupt(
                            META_SCHEMA_VERSION,
                            format!("{} bytes, not 2", raw_version.len()),
                        )
                    })?;
                (stored, version)
            }
            None => {
                let Some(configured) = node else {
                    return Err(corrupt(
                        META_NODE_ID,
                        "missing: not a portcullis journal".to_owned(),
                    ));
                };
                let mut batch = sled::Batch::default();
                batch.insert(META_NODE_ID, configured.0.as_bytes());
                batch.insert(META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes()[..]);
                meta.apply_batch(batch)
                    .map_err(storage("writing metadata"))?;
                db.flush().map_err(storage("flushing metadata"))?;
                (configured.clone(), SCHEMA_VERSION)
            }
        };

        let last_seq = match events.last().map_err(storage("reading the last seq"))? {
            Some((key, _)) => seq_of_key(&key)?,
            None => 0,
        };
        tracing::debug!(dir = %dir.display(), node_id = %node_id, last_seq, "journal opened");
        Ok(Self {
            dir: dir.to_path_buf(),
            node_id,
            created_schema,
            db,
            events,
            by_id,
            meta,
            last_seq,
            poisoned: None,
        })
    }

    /// The directory of this journal.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node this journal belongs to.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// The schema version of the build that created this journal.
    pub fn created_schema_version(&self) -> u16 {
        self.created_schema
    }

    /// True after a failed write or flush; appends are refused until the
    /// journal is reopened.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Wraps the records into envelopes with this node's id and the next
    /// contiguous seqs (the first record of a journal gets seq 1), and
    /// writes them as ONE atomic sled batch (both trees in one
    /// transaction), then flushes (fsync). Returns the envelopes as stored.
    ///
    /// All or nothing: on error no seq is used. A record whose event id is
    /// already journaled is refused ([`JournalError::DuplicateId`]). After a
    /// storage error the handle is poisoned ([`JournalError::Poisoned`]):
    /// reopen before appending again.
    pub fn append_batch(&mut self, records: Vec<Record>) -> Result<Vec<Envelope>, JournalError> {
        self.try_append(records).map_err(|f| f.error)
    }

    /// [`Self::append_batch`], but a failure gives the records back.
    pub(crate) fn try_append(
        &mut self,
        records: Vec<Record>,
    ) -> Result<Vec<Envelope>, AppendFailure> {
        if let Some(cause) = &self.poisoned {
            let error = JournalError::Poisoned {
                dir: self.dir.clone(),
                cause: cause.clone(),
            };
            return Err(AppendFailure { error, records });
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let count = records.len() as u64;
        let Some(new_last) = self.last_seq.checked_add(count) else {
            let error = JournalError::SeqExhausted {
                dir: self.dir.clone(),
            };
            return Err(AppendFailure { error, records });
        };

        let envelopes: Vec<Envelope> = (self.last_seq + 1..=new_last)
            .zip(records)
            .map(|(seq, r)| Envelope {
                schema: SCHEMA_VERSION,
                event_id: r.event_id,
                node_id: self.node_id.clone(),
                seq,
                timestamp: r.timestamp,
                trace: r.trace,
                body: r.body,
            })
            .collect();

        let (events_batch, index_batch) = match self.prepare(&envelopes) {
            Ok(batches) => batches,
            Err(error) => {
                return Err(AppendFailure {
                    error,
                    records: into_records(envelopes),
                })
            }
        };

        let written = (&self.events, &self.by_id).transaction(|(events, by_id)| {
            events.apply_batch(&events_batch)?;
            by_id.apply_batch(&index_batch)?;
            Ok::<(), ConflictableTransactionError<Infallible>>(())
        });
        let failed = match written {
            Ok(()) => self.db.flush().err().map(|e| ("flushing a batch", e)),
            Err(TransactionError::Storage(e)) => Some(("writing a batch", e)),
            Err(TransactionError::Abort(never)) => match never {},
        };
        if let Some((op, source)) = failed {
            // What reached the disk is unknown now: refuse appends until a
            // reopen recovers the truth from disk.
            self.poisoned = Some(format!("{op}: {source}"));
            let error = JournalError::Storage {
                dir: self.dir.clone(),
                op,
                source,
            };
            return Err(AppendFailure {
                error,
                records: into_records(envelopes),
            });
        }

        tracing::debug!(
            first_seq = self.last_seq + 1,
            last_seq = new_last,
            count,
            "journal batch committed"
        );
        self.last_seq = new_last;
        Ok(envelopes)
    }

    /// Checks ids for duplicates and encodes: the two sled batches.
    fn prepare(&self, envelopes: &[Envelope]) -> Result<(sled::Batch, sled::Batch), JournalError> {
        let mut events_batch = sled::Batch::default();
        let mut index_batch = sled::Batch::default();
        let mut seen = HashSet::with_capacity(if envelopes.len() > 1 {
            envelopes.len()
        } else {
            0
        });
        for env in envelopes {
            if let Some(seq) = self.seq_of_id(&env.event_id)? {
                return Err(JournalError::DuplicateId {
                    event_id: env.event_id,
                    seq,
                });
            }
            if envelopes.len() > 1 && !seen.insert(env.event_id) {
                return Err(JournalError::DuplicateId {
                    event_id: env.event_id,
                    seq: env.seq,
                });
            }
            let bytes = codec::encode(env).map_err(|source| JournalError::Encode {
                event_id: env.event_id,
                source,
            })?;
            let key = env.seq.to_be_bytes();
            events_batch.insert(&key[..], bytes);
            index_batch.insert(&env.event_id.as_bytes()[..], &key[..]);
        }
        Ok((events_batch, index_batch))
    }

    /// The last seq written and flushed (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The envelope at `seq`, if there is one.
    pub fn get_by_seq(&self, seq: u64) -> Result<Option<Envelope>, JournalError> {
        match self
            .events
            .get(seq.to_be_bytes())
            .map_err(self.storage("reading a record"))?
        {
            Some(raw) => decode_at(seq, &raw).map(Some),
            None => Ok(None),
        }
    }

    /// The envelope with this event id, through the `by_id` index.
    pub fn get_by_id(&self, id: EventId) -> Result<Option<Envelope>, JournalError> {
        let Some(seq) = self.seq_of_id(&id)? else {
            return Ok(None);
        };
        match self.get_by_seq(seq)? {
            Some(env) if env.event_id == id => Ok(Some(env)),
            Some(env) => Err(JournalError::BadIndex {
                event_id: id,
                problem: format!("points at seq {seq}, which holds event {}", env.event_id),
            }),
            None => Err(JournalError::BadIndex {
                event_id: id,
                problem: format!("points at seq {seq}, which is missing"),
            }),
        }
    }

    /// The seq of an event id, from the index alone.
    pub fn seq_of_id(&self, id: &EventId) -> Result<Option<u64>, JournalError> {
        match self
            .by_id
            .get(id.as_bytes())
            .map_err(self.storage("reading the id index"))?
        {
            Some(raw) => <[u8; 8]>::try_from(raw.as_ref())
                .map(|b| Some(u64::from_be_bytes(b)))
                .map_err(|_| JournalError::BadIndex {
                    event_id: *id,
                    problem: format!("has a {}-byte seq, not 8", raw.len()),
                }),
            None => Ok(None),
        }
    }

    /// Iterates in seq order from `from` (inclusive). An undecodable record
    /// is yielded as an `Err` naming its seq, and iteration goes on; a sled
    /// storage error is yielded once and ends the iteration.
    pub fn iter_from(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<Envelope, JournalError>> + '_ {
        Iter {
            inner: self.events.range(from.to_be_bytes()..),
            dir: &self.dir,
            done: false,
        }
    }

    /// A reader sharing this journal's database (see [`super::JournalReader`]).
    pub fn reader(&self) -> super::JournalReader {
        super::JournalReader {
            dir: self.dir.clone(),
            db: self.db.clone(),
            events: self.events.clone(),
            meta: self.meta.clone(),
        }
    }

    fn storage(&self, op: &'static str) -> impl FnOnce(sled::Error) -> JournalError + '_ {
        move |source| JournalError::Storage {
            dir: self.dir.clone(),
            op,
            source,
        }
    }

    /// The raw `events` tree, for tests that plant damaged records.
    #[cfg(test)]
    pub(crate) fn events_tree(&self) -> &sled::Tree {
        &self.events
    }

    /// Marks the handle as failed, as a storage error would.
    #[cfg(test)]
    pub(crate) fn poison_for_test(&mut self) {
        self.poisoned = Some("poisoned by a test".to_owned());
    }

    /// The raw `by_id` tree, for tests that plant damaged index entries.
    #[cfg(test)]
    pub(crate) fn by_id_tree(&self) -> &sled::Tree {
        &self.by_id
    }
}

struct Iter<'a> {
    inner: sled::Iter,
    dir: &'a Path,
    done: bool,
}

impl Iterator for Iter<'_> {
    type Item = Result<Envelope, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.inner.next() {
            None => {
                self.done = true;
                None
            }
            Some(Err(source)) => {
                self.done = true;
                Some(Err(JournalError::Storage {
                    dir: self.dir.to_path_buf(),
                    op: "iterating records",
                    source,
                }))
            }
            Some(Ok((key, raw))) => Some(seq_of_key(&key).and_then(|seq| decode_at(seq, &raw))),
        }
    }
}

fn seq_of_key(key: &[u8]) -> Result<u64, JournalError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| JournalError::BadKey { key: key.to_vec() })
}

fn decode_at(seq: u64, raw: &[u8]) -> Result<Envelope, JournalError> {
    let env = codec::decode(raw).map_err(|source| JournalError::Decode { seq, source })?;
    if env.seq != seq {
        return Err(JournalError::SeqMismatch {
            seq,
            found: env.seq,
        });
    }
    Ok(env)
}

fn into_records(envelopes: Vec<Envelope>) -> Vec<Record> {
    envelopes
        .into_iter()
        .map(|e| Record {
            event_id: e.event_id,
            timestamp: e.timestamp,
            trace: e.trace,
            body: e.body,
        })
        .collect()
}

/// Opens sled, waiting up to [`LOCK_GRACE`] for a lock that is being
/// released.
///
/// sled 0.34 does not release its directory lock when the last handle is
/// dropped, but when its background I/O threads drop theirs, a moment
/// later. Without this grace, closing and reopening a journal in one
/// process (the actor after a storage failure, tests) fails at random.
fn open_db(dir: &Path) -> Result<sled::Db, JournalError> {
    let deadline = Instant::now() + LOCK_GRACE;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_CAPACITY_BYTES)
            // Every append flushes explicitly; no background flusher thread.
            .flush_every_ms(None)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_error(&e) => {
                if Instant::now() >= deadline {
                    return Err(JournalError::InUse {
                        dir: dir.to_path_buf(),
                    });
                }
                std::thread::sleep(LOCK_RETRY_STEP);
            }
            Err(source) => {
                return Err(JournalError::Open {
                    dir: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// sled 0.34 reports a held lock only as an `Io` error of kind `Other` with
/// this text (from `Config::try_lock`).
fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use portcullis_schemas::{EventBody, OverflowSource, QueueOverflowed};

    fn body(n: u64) -> EventBody {
        EventBody::QueueOverflowed(QueueOverflowed {
            source: OverflowSource::Kernel,
            count: n,
        })
    }

    fn records(range: std::ops::Range<u64>) -> Vec<Record> {
        range.map(|n| Record::new(body(n))).collect()
    }

    fn cfg(dir: &Path) -> JournalConfig {
        JournalConfig::new(dir, NodeId("node-a".into()))
    }

    fn seqs(store: &JournalStore, from: u64) -> Vec<u64> {
        store.iter_from(from).map(|r| r.unwrap().seq).collect()
    }

    #[test]
    fn journal_seq_is_contiguous_across_batches_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = JournalStore::open(&cfg(tmp.path())).unwrap();
        assert_eq!(store.last_seq(), 0);
        let a = store.append_batch(records(0..3)).unwrap();
        let b = store.append_batch(records(3..4)).unwrap();
        assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(b[0].seq, 4);
        assert!(a
            .iter()
            .chain(&b)
            .all(|e| e.node_id.0 == "node-a" && e.schema == SCHEMA_VERSION));
        assert_eq!(store.last_seq(), 4);
        drop(store);

        let mut store = JournalStore::open(&cfg(tmp.path())).unwrap();
        assert_eq!(store.last_seq(), 4);
        let c = store.append_batch(records(4..6)).unwrap();
        assert_eq!(c.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(seqs(&store, 0), [1, 2, 3, 4, 5, 6]);
        assert_eq!(store.get_by_seq(2).unwrap().unwrap(), a[1]);
        assert_eq!(store.get_by_seq(6).unwrap().unwrap(), c[1]);
    }

    #[test]
    fn journal_empty_batch_is_a_no_op() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = JournalStore::open(&cfg(tmp.path())).unwrap();
        assert!(store.append_batch(Vec::new()).unwrap().is_empty());
        assert_eq!(store.last_seq(), 0);
        assert_eq!(store.iter_from(0).count(), 0);
    }

    #[test]
    fn journal_get_by_id_and_by_seq() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = JournalStore::open(&cfg(tmp.path())).unwrap();
        let stored = store.append_batch(records(0..5)).unwrap();
        for env in &stored {
            assert_eq!(store.get_by_id(env.event_id).unwrap().as_ref(), Some(env));
            assert_eq!(store.seq_of_id(&env.event_id).unwrap(), Some(env.seq));
        }
        assert_eq!(store.get_by_id(EventId::new()).unwrap(), None);
        assert_eq!(store.get_by_seq(0).unwrap(), None);
        assert_eq!(store.get_by_seq(6).unwrap(), None);
    }

    #[test]
    fn journal_iter_from_is_inclusive_and_ordered() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = JournalStore::open(&cfg(tmp.path())).unwrap();
        // More than 255 records: big-endian keys keep seq order past a byte.
        store.append_batch(records(0..300)).unwrap();
        assert_eq!(seqs(&store, 0), (1..=300).collect::<Vec<_>>());
        assert_eq!(seqs(&store, 1).len(), 300);
        assert_eq!(seqs(&store, 255), (255..=300).collect::<Vec<_>>());
        assert_eq!(seqs(&store, 300), [300]);
        assert!(seqs(&store, 301).is_empty());
    }

    #[test]
    fn journal_undecodable_record_is_an_error_naming_its_seq() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = JournalStore::open(&cfg(tmp.path())).unwrap();
        let stored = store.append_batch(records(0..3)).unwrap();
        store
            .events_tree()
            .insert(2u64.to_be_bytes(), &b"garbage!"[..])
            .unwrap();

        let items: Vec<_> = store.iter_from(1).collect();
        assert_eq!(items.len(), 3, "iteration goes on past the bad record");
        assert_eq!(items[0].as_ref().unwrap(), &stored[0]);
        match &items[1] {
            Err(e @ JournalError::Decode { seq: 2, .. }) => {
                assert!(e.to_string().contains("seq 2"), "{e}");
            }
            other => panic!("expected a decode error at seq 2, got {other:?}"),
        }
        assert_eq!(items[2].as_ref().unwrap(), &stored[2]);
        assert!(matches!(
            store.get_by_seq(2),
            Err(JournalError::Decode { seq: 2, .. })
        ));
        assert!(matches!(
            store.get_by_id(stored[1].event_id),
            Err(JournalError::Decode { seq: 2, .. })
        ));
    }

    #[test]
    fn journal_record_under_the_wrong_key_is_a_seq_mismatch() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = JournalStore::open(&cfg(tmp.path())).unwrap();
        let stored = store.append_batch(records(0..2)).unwrap();
        let moved = codec::encode(&stored[0]).unwrap();
        store
            .events_tree()
            .insert(2u64.to_be_bytes(), moved)
            .unwrap();
        assert!(matches!(
            store.get_by_seq(2),
            Err(JournalError::SeqMismatch { seq: 2, found: 1 })
        ));
        assert!(matches!(
            store.get_by_id(stored[1].event_id),
            Err(JournalError::SeqMismatch { .. })
        ));
    }

    #[test]
    fn journal_dangling_index_entry_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = JournalStore::open(&cfg(tmp.path())).unwrap();
        store.append_batch(records(0..1)).unwrap();
        let ghost = EventId::new();
        store
            .by_id_tree()
            .insert(ghost.as_bytes(), &9u64.to_be_bytes()[..])
            .unwrap();
        let err = store.get_by_id(ghost).unwrap_err();
        assert!(matches!(err, JournalError::BadIndex { .. }), "{err}");
        assert!(err.to_string().contains("seq 9"), "{err}");
    }

    #[test]
    fn journal_duplicate_ids_are_refused_without_using_a_seq() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = JournalStore::open(&cfg(tmp.path())).unwrap();
        let stored = store.append_batch(records(0..2)).unwrap();

        let mut again = Record::new(body(9));
        again.event_id = stored[1].event_id;
        let err = store
            .append_batch(vec![Record::new(body(8)), again])
            .unwrap_err();
        assert!(
            matches!(err, JournalError::DuplicateId { seq: 2, .. }),
            "{err}"
        );

        let twin = Record::new(body(7));
        let err = store.append_batch(vec![twin.clone(), twin]).unwrap_err();
        assert!(matches!(err, JournalError::DuplicateId { .. }), "{err}");

        assert_eq!(store.last_seq(), 2);
        assert!(!store.is_poisoned());
        assert_eq!(store.append_batch(records(0..1)).unwrap()[0].seq, 3);
        assert_eq!(seqs(&store, 0), [1, 2, 3]);
    }

    #[test]
    fn journal_second_open_says_in_use_and_names_the_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = JournalStore::open(&cfg(tmp.path())).unwrap();
        let err = JournalStore::open(&cfg(tmp.path())).unwrap_err();
        assert!(matches!(err, JournalError::InUse { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("in use"), "{msg}");
        assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
    }

    #[test]
    fn journal_of_another_node_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        drop(JournalStore::open(&cfg(tmp.path())).unwrap());
        let other = JournalConfig::new(tmp.path(), NodeId("node-b".into()));
        let err = JournalStore::open(&other).unwrap_err();
        assert!(matches!(err, JournalError::NodeMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("node-a") && msg.contains("node-b"), "{msg}");
        assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
    }

    #[test]
    fn journal_open_existing_adopts_the_stored_node() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nothing-here");
        assert!(matches!(
            JournalStore::open_existing(&missing),
            Err(JournalError::NotFound { .. })
        ));
        assert!(!missing.exists(), "open_existing never creates a journal");

        let mut store = JournalStore::open(&cfg(tmp.path())).unwrap();
        store.append_batch(records(0..2)).unwrap();
        drop(store);
        let reader = JournalStore::open_existing(tmp.path()).unwrap();
        assert_eq!(reader.node_id().0, "node-a");
        assert_eq!(reader.created_schema_version(), SCHEMA_VERSION);
        assert_eq!(reader.last_seq(), 2);
    }
}
