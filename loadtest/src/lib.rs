//! `portcullis-loadtest`: load tests of portcullis that a platform
//! engineer can size a deployment with, and the floor responder they
//! compare against.
//!
//! Three scenarios ([`scenario`]), one report shape ([`report`]):
//! - **pipeline**: synthetic accesses injected into the Enforcer, no
//!   kernel: actors, journal and scans alone;
//! - **node**: real fanotify on a private tmpfs, K opener processes
//!   reading and executing files, cold and warm, with an infected fraction
//!   and a size mix;
//! - **cluster**: the node scenario with the agent in distributed mode,
//!   scans through Kafka by N scanner services.
//!
//! Every run measures three targets with the same load: the **baseline**
//! (no agent), the **floor** (`portcullis-floor`, or a minimal actor,
//! answering ALLOW at once) and **portcullis**, and reports ratios against
//! the first two. It is bounded in time and count, stops by itself, talks
//! to loopback brokers only, and checks what must hold whatever the speed:
//! no hung open, every infected file denied, no clean file denied.
//!
//! See `docs/loadtest.md` for the command line and the report.

pub mod charts;
pub mod cli;
pub mod content;
pub mod error;
pub mod fileset;
pub mod interrupt;
pub mod kafka;
pub mod kafka_floor;
pub mod latency;
pub mod markdown;
pub mod opener;
pub mod output;
pub mod process;
pub mod progress;
pub mod report;
pub mod responder;
pub mod scenario;
pub mod telemetry;
pub mod window;

pub use error::{Error, Result};
