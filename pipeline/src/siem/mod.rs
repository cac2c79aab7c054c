//! `portcullis siem-export`: the events topic to SIEMs.
//!
//! ```text
//! <prefix>.events.v1 ──consumer group──► transform ──one transaction──► <prefix>.siem.ecs.v1  (ECS JSON)
//!   (read_committed)                        │                           <prefix>.siem.ocsf.v1 (OCSF JSON, optional)
//!                                           │                           <prefix>.events.v1.dlq (undecodable)
//!                                           │                           + the consumed offsets
//!                                           └─ CEF in RFC 5424 ─► syslog collector (udp, tcp, tls),
//!                                              written and flushed before the commit
//! ```
//!
//! - [`config`]: the `[siem]` section and its validated form;
//! - [`export`]: the transform, run by [`ctp`](crate::kafka::ctp) (the loop
//!   shared with the scanner service);
//! - [`rfc5424`]: syslog messages and framing;
//! - [`transport`]: the UDP/TCP/TLS connection to the collector.
//!
//! Guarantees (docs/siem.md): exactly once per committed input on the SIEM
//! topics; at least once to syslog over TCP/TLS (a batch is written before
//! its transaction commits; a failure aborts and retries it, so a
//! collector may see duplicates, never a gap); best effort over UDP.

pub mod config;
pub mod export;
pub mod rfc5424;
pub mod transport;

pub use config::{Facility, SiemSection, SiemSettings, SyslogSection, SyslogSettings};
pub use export::{run, ExportOptions, ExportStats};
