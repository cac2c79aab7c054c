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
//!   `portcullis events --format jsonl`;
//! - [`ocsf`]: JSON in OCSF 1.3.0 classes (File System Activity, Detection
//!   Finding) for the events that have an OCSF home;
//! - [`cef`]: ArcSight CEF lines, with the signature id table SIEM rules
//!   key on.
//!
//! [`json_schema`] generates the JSON Schemas of the ECS and OCSF shapes
//! (checked in under `schemas/json/`), and [`SourcePosition`] says where an
//! exported event was read from.

pub mod cef;
pub mod codec;
pub mod ecs;
mod envelope;
mod events;
pub mod json_schema;
pub mod ocsf;
mod path;
pub mod render;
mod source;
pub mod wire;

pub use envelope::Envelope;
pub use envelope::{EventId, NodeId, Timestamp, TraceContext, SCHEMA_VERSION};
pub use events::*;
pub use path::FilePath;
pub use source::{ParseSourcePositionError, SourcePosition};
