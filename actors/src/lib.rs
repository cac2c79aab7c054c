//! The actors of the portcullis pipeline, one module each, with their
//! messages, configuration, errors and tests:
//!
//! - [`bridge`]: brings the fanotify reader thread into the actor system;
//! - [`enforcer`]: holds pending permission decisions until a verdict or a
//!   deadline;
//! - [`scanner`]: YARA-X workers on a `SyncArbiter`;
//! - [`journal`]: the append-only sled journal with group commit;
//! - [`actions`]: actions on detected objects (block, remove with
//!   quarantine, terminate);
//! - [`policy`]: runtime policies and scan scopes.
pub mod actions;
pub mod bridge;
pub mod enforcer;
pub mod journal;
pub mod policy;
pub mod scanner;
