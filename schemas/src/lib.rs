//! Typed events and commands of portcullis, and their encodings.
//!
//! Everything that happens in the pipeline is an immutable [`Envelope`]
//! carrying one [`EventBody`]. The body enum is append-only: new variants go
//! at the end, existing ones never change shape within a schema version.
//!
//! The encodings live here, none doing any I/O beyond writing to a caller's
//! `io::Write`:
//! - [`codec`]: the internal binary encoding (bincode 2, serde mode) with a
//!   version prefix that rejects unknown versions;
//! - [`ecs`]: JSON with Elastic Common Schema field names, for SIEMs and for
//!   `portcullis events --format jsonl`.
//!
//! [`SourcePosition`] says where an exported event was read from.

pub mod codec;
pub mod ecs;
mod envelope;
mod events;
mod path;
pub mod render;
mod source;
pub mod wire;

pub use envelope::Envelope;
pub use envelope::{EventId, NodeId, Timestamp, TraceContext, SCHEMA_VERSION};
pub use events::*;
pub use path::FilePath;
pub use source::{ParseSourcePositionError, SourcePosition};
