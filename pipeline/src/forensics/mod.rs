//! Forensics: reading event logs back (`portcullis replay`), looking at a
//! detection with the events around it (`portcullis investigate`).
//!
//! - [`source`]: a journal (live through the agent's export socket, or at
//!   rest), an export file, or the Kafka events topic;
//! - [`filter`]: what to keep, with the correlation that carries an
//!   access's process, container and verdict to its later events;
//! - [`verify`]: gaps, duplicates and undecodable records per node;
//! - [`output`]: ECS, OCSF, CEF, a table, or an export;
//! - [`progress`]: progress on stderr for long replays;
//! - [`investigate`]: the timeline around one event, as text, JSON or a
//!   self-contained HTML report.

pub mod filter;
pub mod investigate;
pub mod output;
pub mod progress;
pub mod source;
pub mod verify;

use anyhow::Context as _;
use portcullis_schemas::Timestamp;

/// A time argument: RFC 3339, or an age such as `15m` (that long ago).
pub fn parse_time(flag: &str, s: &str) -> anyhow::Result<Timestamp> {
    if let Ok(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    let age = humantime::parse_duration(s)
        .with_context(|| format!("{flag}: `{s}` is neither RFC 3339 nor an age like `10m`"))?;
    let age_ns = i64::try_from(age.as_nanos()).unwrap_or(i64::MAX);
    Ok(Timestamp(Timestamp::now().0.saturating_sub(age_ns)))
}
