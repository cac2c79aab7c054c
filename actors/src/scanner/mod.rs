//! The Scanner: YARA-X workers on a `SyncArbiter`.
//!
//! - [`Ruleset`] compiles a directory of rule files (one namespace per file)
//!   and names the result with a [`portcullis_schemas::RulesetVersion`], a
//!   hash of the sources, so verdicts can be cached by
//!   `sha256 + ruleset version`.
//! - [`ScanEngine`] is one thread's scanner: it reads content through the
//!   event fd with `pread` (never a reopened path, never `mmap`), applies the
//!   [`ScanLimits`], hashes the content and turns YARA-X matches into a
//!   [`portcullis_schemas::Verdict`].
//! - [`ScannerWorker`] wraps an engine in an actor answering [`ScanFile`];
//!   [`start_scanners`] starts a pool of them.
//!
//! Detection only: YARA rules describe content, they cannot repair it, so
//! disinfection is never possible here (the Actions fall through to the
//! second action).

mod actor;
mod config;
mod content;
mod engine;
mod errors;
pub mod hashes;
mod live;
mod messages;
mod rules;

pub use actor::{start_scanners, ScannerWorker};
pub use config::{ArchiveScan, ScanLimits};
pub use content::{Loaded, ScanContent};
pub use engine::{hash_list_verdict, MemberVerdict, ScanEngine, ScanOutcome};
pub use errors::RulesError;
pub use hashes::{HashListHit, HashListKind, HashLists};
pub use live::LiveRules;
pub use messages::ScanFile;
pub use rules::{source_files, Ruleset, SourceFiles, RULE_EXTENSIONS};

#[cfg(test)]
mod tests;
