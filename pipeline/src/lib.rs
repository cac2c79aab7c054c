//! Wiring, configuration and commands of the `portcullis` binary.
//!
//! - [`config`]: the configuration file, validated at load;
//! - [`agent`]: the node agent in embedded mode (every actor, one process);
//! - [`commands`]: one module per subcommand;
//! - [`rules`]: the ruleset (a directory, or the built-in one);
//! - [`forensics`]: replay, verification and investigation of event logs;
//! - [`render`]: the human-readable event table;
//! - [`siem`]: `siem-export`, the events topic to ECS/OCSF topics and CEF
//!   over syslog.

pub mod agent;
pub mod cli;
pub mod commands;
pub mod config;
pub mod containers;
pub mod distributed;
pub mod forensics;
pub mod kafka;
pub mod render;
pub mod rules;
pub mod siem;
