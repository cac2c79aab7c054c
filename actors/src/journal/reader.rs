//! A second handle on an open journal, for readers that run beside the
//! Journal actor in the same process (the Kafka outbox). It shares the sled
//! database (sled allows one process per directory, and is safe to use from
//! many threads), reads committed records, and keeps named cursors in the
//! `meta` tree.

use std::fmt;
use std::path::PathBuf;

use super::error::JournalError;

/// Reads records and keeps cursors; cheap to clone.
#[derive(Clone)]
pub struct JournalReader {
    pub(super) dir: PathBuf,
    pub(super) db: sled::Db,
    pub(super) events: sled::Tree,
    pub(super) meta: sled::Tree,
}

impl fmt::Debug for JournalReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalReader")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn cursor_key(name: &str) -> Vec<u8> {
    format!("cursor.{name}").into_bytes()
}

impl JournalReader {
    fn storage(&self, op: &'static str) -> impl FnOnce(sled::Error) -> JournalError + '_ {
        move |source| JournalError::Storage {
            dir: self.dir.clone(),
            op,
            source,
        }
    }

    /// Up to `max` encoded records with seq ≥ `from`, in seq order, exactly
    /// as stored (the codec's bytes).
    pub fn raw_from(&self, from: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        let mut out = Vec::with_capacity(max.min(1024));
        for item in self.events.range(from.to_be_bytes()..).take(max) {
            let (k, v) = item.map_err(self.storage("reading events"))?;
            let key: [u8; 8] = k
                .as_ref()
                .try_into()
                .map_err(|_| JournalError::BadKey { key: k.to_vec() })?;
            out.push((u64::from_be_bytes(key), v.to_vec()));
        }
        Ok(out)
    }

    /// The last committed seq (0 when empty).
    pub fn last_seq(&self) -> Result<u64, JournalError> {
        match self
            .events
            .last()
            .map_err(self.storage("reading the last event"))?
        {
            None => Ok(0),
            Some((k, _)) => {
                let key: [u8; 8] = k
                    .as_ref()
                    .try_into()
                    .map_err(|_| JournalError::BadKey { key: k.to_vec() })?;
                Ok(u64::from_be_bytes(key))
            }
        }
    }

    /// A named cursor: the last seq its owner finished with (0 if never set).
    pub fn cursor(&self, name: &str) -> Result<u64, JournalError> {
        match self
            .meta
            .get(cursor_key(name))
            .map_err(self.storage("reading a cursor"))?
        {
            None => Ok(0),
            Some(v) => {
                let b: [u8; 8] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| JournalError::BadKey { key: v.to_vec() })?;
                Ok(u64::from_be_bytes(b))
            }
        }
    }

    /// Stores a named cursor durably (flushed before returning).
    pub fn set_cursor(&self, name: &str, seq: u64) -> Result<(), JournalError> {
        self.meta
            .insert(cursor_key(name), &seq.to_be_bytes())
            .map_err(self.storage("writing a cursor"))?;
        self.db.flush().map_err(self.storage("flushing a cursor"))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use portcullis_schemas::{codec, EventBody, NodeId, OverflowSource, QueueOverflowed};

    use super::super::{JournalConfig, JournalStore, Record};

    #[test]
    fn reads_committed_records_and_keeps_cursors_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig::new(dir.path(), NodeId("n".into()));
        {
            let mut store = JournalStore::open(&cfg).unwrap();
            let reader = store.reader();
            assert_eq!(reader.last_seq().unwrap(), 0);
            let body = |count| {
                EventBody::QueueOverflowed(QueueOverflowed {
                    source: OverflowSource::Kernel,
                    count,
                })
            };
            let stored = store
                .append_batch((1..=5).map(|n| Record::new(body(n))).collect())
                .unwrap();
            let raw = reader.raw_from(2, 2).unwrap();
            assert_eq!(raw.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![2, 3]);
            assert_eq!(codec::decode(&raw[0].1).unwrap(), stored[1]);
            assert_eq!(reader.last_seq().unwrap(), 5);
            assert_eq!(reader.cursor("outbox").unwrap(), 0);
            reader.set_cursor("outbox", 3).unwrap();
        }
        let store = JournalStore::open(&cfg).unwrap();
        assert_eq!(store.reader().cursor("outbox").unwrap(), 3);
        assert_eq!(store.reader().cursor("other").unwrap(), 0);
    }
}
