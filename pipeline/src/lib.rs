//! Wiring, configuration and commands of the `portcullis` binary.
//!
//! - [`config`]: the configuration file, validated at load;
//! - [`agent`]: the node agent in embedded mode (every actor, one process);
//! - [`commands`]: one module per subcommand;
//! - [`rules`]: the ruleset (a directory, or the built-in one);
//! - [`render`]: the human-readable event table.

pub mod agent;
pub mod cli;
pub mod commands;
pub mod config;
pub mod distributed;
pub mod kafka;
pub mod render;
pub mod rules;
