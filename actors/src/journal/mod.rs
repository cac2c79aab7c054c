//! The journal: an append-only sled store of encoded [`Envelope`]s with a
//! per-node sequence number, contiguous from 1.
//!
//! Two layers:
//! - [`JournalStore`]: the synchronous store. It works without actix, so CLI
//!   readers, tests and benches use it directly.
//! - [`Journal`]: the actor. It runs on its own `Arbiter` thread, so a
//!   blocking fsync never stalls another actor's executor. It does group
//!   commit: every record that arrives while a commit is due goes into the
//!   same batch, with the same fsync.
//!
//! # Storage layout (sled 0.34)
//!
//! | tree     | key                           | value                          |
//! |----------|-------------------------------|--------------------------------|
//! | `events` | seq, `u64` big-endian         | [`codec::encode`] of the envelope |
//! | `by_id`  | event id, 16 bytes            | seq, `u64` big-endian          |
//! | `meta`   | `node_id`                     | the node id, UTF-8             |
//! | `meta`   | `schema_version`              | `u16` big-endian: the schema version of the build that created the journal (informational; every record carries its own version) |
//!
//! Keys are big-endian, so sled's byte order is seq order. The journal keeps
//! its own seq counter and recovers it at open from the last key of
//! `events`. It does not use sled's `generate_id`, which skips numbers after
//! a crash.
//!
//! A batch goes into `events` and `by_id` in one sled transaction, which sled
//! recovers atomically. Then the database is flushed (fsync). A record is
//! *acknowledged* only after that: when [`JournalStore::append_batch`] or the
//! actor's [`Sync`] returns.
//!
//! # Node identity
//!
//! A journal belongs to one node. Its seq space is per node. Opening a
//! directory that was created for another node id fails with
//! [`JournalError::NodeMismatch`]; the stored node id never silently wins.
//! Readers that do not know the node id use [`JournalStore::open_existing`],
//! which adopts the stored one.
//!
//! [`Envelope`]: portcullis_schemas::Envelope
//! [`codec::encode`]: portcullis_schemas::codec::encode

mod actor;
mod config;
mod error;
pub mod export;
mod reader;
mod record;
mod store;

pub use actor::{Append, Committed, Journal, Subscribe, Sync};
pub use config::{JournalConfig, DEFAULT_COMMIT_INTERVAL, DEFAULT_MAX_BATCH};
pub use error::JournalError;
pub use export::{ExportReader, ExportServer};
pub use reader::JournalReader;
pub use record::Record;
pub use store::JournalStore;
