//! ArcSight Common Event Format (CEF, rev. 25), one line per event:
//!
//! ```text
//! CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension
//! ```
//!
//! As in the model product (Kaspersky Container Security), file threat
//! protection events carry `FFTP-xxx` signature ids and file access events
//! `FM-xxx`; agent events here use `PC-xxx`. The whole table is
//! [`SIGNATURES`]; [`signature`] picks an envelope's entry.
//!
//! # Escaping
//!
//! - Header fields: `\` becomes `\\` and `|` becomes `\|`; a line break
//!   cannot appear in a header, so CR and LF become a space.
//! - Extension values: `\` becomes `\\`, `=` becomes `\=`, LF becomes `\n`
//!   and CR `\r` (two characters each). `|` needs no escape there.
//! - Extension keys are fixed names and never escaped.
//! - Paths that are not UTF-8 are first written in their `\xNN` form
//!   (`FilePath::escaped`), which the CEF escaping then protects like any
//!   other backslash.
//!
//! # Extension keys
//!
//! | key | label | value |
//! |---|---|---|
//! | `rt` | | event time, ms since the epoch |
//! | `dvchost` | | node id |
//! | `externalId` | | event id |
//! | `cn1` | `seq` | per-node sequence number |
//! | `cs1` | `rule` | matching rule names, comma-separated |
//! | `cs2` | `ruleset` | ruleset version |
//! | `cs3` | `verdict` | `clean`, `infected`, `skipped`, `error` |
//! | `cs4` | `accessId` | the file access the event is about (its own id for an access) |
//! | `cs5` | `sourcePosition` | where the event was read from (`journal:seq=42`, `kafka:topic/3@1234`) |
//! | `cs6` | `containerName` | the container's name, when the runtime said it |
//! | `cn2` | `latencyUs`, `rules` | decision latency (µs); number of rules loaded |
//! | `cn3` | `scanDurationUs` | scan time (µs) |
//! | `flexString1` | `policy`, `quarantinePath`, `interceptorMode` | runtime policy of an access; where a removed file was kept; the agent's mode |
//! | `flexString2` | `containerId` | container id |
//! | `dpid` / `spid` | | pid / ppid of the process |
//! | `duid` | | its uid |
//! | `dproc` | | its executable |
//! | `dvcpid` | | the agent's pid |
//! | `filePath` / `fname` / `fsize` / `fileHash` / `fileId` | | the file (`fileHash` = sha256; `fileId` = `device:inode`, or the quarantine id of a removed, restored or deleted object) |
//! | `oldFilePath` | | where a restored object was detected |
//! | `suid` / `spid` | | the operator of a quarantine restore or deletion: uid and pid |
//! | `act` | | `allow`/`deny`, or the action: `block`, `remove`, `terminate`, `disinfect`, or what happened to a container: `container_protected`, `container_described`, `container_gone`, `container_unprotected`, or `restore`/`delete` of a quarantine entry |
//! | `outcome` | | `success`, `failure`, `not_possible` |
//! | `reason` | | decision reason, skip reason, error text, stop signal, overflow source, why a container is unprotected, why a quarantine entry was deleted (`operator`, `max_age`, `max_size`) |
//! | `cnt` | | decisions answered at stop; overflows since the last report |

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io;

use crate::envelope::Envelope;
use crate::events::*;
use crate::path::FilePath;
use crate::render::Hex;
use crate::source::SourcePosition;

/// The constant part of every header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CefHeader {
    pub vendor: String,
    pub product: String,
    /// The agent's version.
    pub version: String,
}

impl Default for CefHeader {
    /// `portcullis|portcullis|<this crate's version>`: the schemas crate
    /// shares the workspace version with the agent.
    fn default() -> Self {
        Self {
            vendor: "portcullis".to_owned(),
            product: "portcullis".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// One row of the signature table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CefSignature {
    /// The header's SignatureID.
    pub id: &'static str,
    /// The header's Name.
    pub name: &'static str,
    /// The header's Severity, 0 (lowest) to 10.
    pub severity: u8,
    /// Which events carry it.
    pub events: &'static str,
}

const fn sig(
    id: &'static str,
    name: &'static str,
    severity: u8,
    events: &'static str,
) -> CefSignature {
    CefSignature {
        id,
        name,
        severity,
        events,
    }
}

const FFTP_001: CefSignature = sig("FFTP-001", "Malware detected", 8, "VerdictIssued: infected");
const FFTP_002: CefSignature = sig(
    "FFTP-002",
    "Access blocked",
    7,
    "DecisionMade: deny on a verdict or a cached verdict; ActionTaken: block, succeeded",
);
const FFTP_003: CefSignature = sig(
    "FFTP-003",
    "Object removed",
    7,
    "ActionTaken: remove, succeeded (kept in quarantine when fileId is set)",
);
const FFTP_004: CefSignature = sig(
    "FFTP-004",
    "Process terminated",
    7,
    "ActionTaken: terminate, succeeded",
);
const FFTP_005: CefSignature = sig(
    "FFTP-005",
    "Action failed",
    9,
    "ActionTaken: any action, failed (the threat is still there)",
);
const FFTP_006: CefSignature = sig(
    "FFTP-006",
    "Action not possible",
    6,
    "ActionTaken: not possible (disinfection with YARA rules); the second action follows",
);
const FFTP_007: CefSignature = sig(
    "FFTP-007",
    "Object restored from quarantine",
    6,
    "QuarantineRestored (an operator put a detected object back)",
);
const FFTP_008: CefSignature = sig(
    "FFTP-008",
    "Quarantine entry deleted",
    3,
    "QuarantineDeleted (by an operator, or by the retention settings: see reason)",
);
const FFTP_010: CefSignature = sig("FFTP-010", "Scan error", 5, "VerdictIssued: error");
const FFTP_011: CefSignature = sig(
    "FFTP-011",
    "Object not scanned",
    3,
    "VerdictIssued: skipped (unprocessed: too large, scan timeout, excluded)",
);
const FFTP_012: CefSignature = sig("FFTP-012", "Object is clean", 1, "VerdictIssued: clean");
const FFTP_020: CefSignature = sig("FFTP-020", "Scan requested", 1, "ScanRequested");
const FM_001: CefSignature = sig("FM-001", "File opened", 1, "FileAccessed: open");
const FM_002: CefSignature = sig("FM-002", "File executed", 1, "FileAccessed: exec");
const FM_003: CefSignature = sig("FM-003", "File written", 1, "FileAccessed: close_write");
const FM_010: CefSignature = sig("FM-010", "Access allowed", 1, "DecisionMade: allow");
const FM_011: CefSignature = sig(
    "FM-011",
    "Access denied without a verdict",
    6,
    "DecisionMade: deny for any other reason (deadline, overload, shutdown: the fail-closed answers)",
);
const PC_001: CefSignature = sig("PC-001", "Agent started", 3, "AgentStarted");
const PC_002: CefSignature = sig("PC-002", "Agent stopped", 5, "AgentStopped");
const PC_003: CefSignature = sig("PC-003", "Rules loaded", 2, "RulesLoaded");
const PC_004: CefSignature = sig(
    "PC-004",
    "Rules rejected",
    6,
    "RulesRejected (a reload refused; the rules in force stay)",
);
const PC_010: CefSignature = sig(
    "PC-010",
    "Event queue overflowed",
    8,
    "QueueOverflowed (accesses may have gone unscanned)",
);

const PC_020: CefSignature = sig(
    "PC-020",
    "Container protected",
    2,
    "ContainerObserved: protected (root overlay and volumes marked)",
);
const PC_021: CefSignature = sig(
    "PC-021",
    "Container described",
    1,
    "ContainerObserved: described (metadata arrived after protection)",
);
const PC_022: CefSignature = sig("PC-022", "Container gone", 1, "ContainerObserved: gone");
const PC_023: CefSignature = sig(
    "PC-023",
    "Container unprotected",
    7,
    "ContainerObserved: unprotected (refused by the agent, or started while the agent was unavailable)",
);

/// Every signature portcullis writes. Ids are stable: a SIEM rule keyed on
/// one keeps working across versions; new events get new ids.
pub const SIGNATURES: &[CefSignature] = &[
    FFTP_001, FFTP_002, FFTP_003, FFTP_004, FFTP_005, FFTP_006, FFTP_007, FFTP_008, FFTP_010,
    FFTP_011, FFTP_012, FFTP_020, FM_001, FM_002, FM_003, FM_010, FM_011, PC_001, PC_002, PC_003,
    PC_004, PC_010, PC_020, PC_021, PC_022, PC_023,
];

/// The table row of an envelope.
pub fn signature_of(env: &Envelope) -> &'static CefSignature {
    match &env.body {
        EventBody::AgentStarted(_) => &PC_001,
        EventBody::AgentStopped(_) => &PC_002,
        EventBody::RulesLoaded(_) => &PC_003,
        EventBody::RulesRejected(_) => &PC_004,
        EventBody::QuarantineRestored(_) => &FFTP_007,
        EventBody::QuarantineDeleted(_) => &FFTP_008,
        EventBody::QueueOverflowed(_) => &PC_010,
        EventBody::ContainerObserved(e) => match e.change {
            ContainerChange::Protected { .. } => &PC_020,
            ContainerChange::Described => &PC_021,
            ContainerChange::Gone => &PC_022,
            ContainerChange::Unprotected { .. } => &PC_023,
        },
        EventBody::FileAccessed(e) => match e.kind {
            AccessKind::Open => &FM_001,
            AccessKind::Exec => &FM_002,
            AccessKind::CloseWrite => &FM_003,
        },
        EventBody::ScanRequested(_) => &FFTP_020,
        EventBody::VerdictIssued(e) => match e.verdict {
            Verdict::Clean => &FFTP_012,
            Verdict::Infected { .. } | Verdict::InfectedMember { .. } => &FFTP_001,
            Verdict::Skipped { .. } => &FFTP_011,
            Verdict::Error { .. } => &FFTP_010,
        },
        EventBody::DecisionMade(e) => match (e.decision, e.reason) {
            (Decision::Allow, _) => &FM_010,
            (
                Decision::Deny,
                DecisionReason::Verdict | DecisionReason::CacheHit | DecisionReason::KnownBadHash,
            ) => &FFTP_002,
            (Decision::Deny, _) => &FM_011,
        },
        EventBody::ActionTaken(e) => match (&e.outcome, e.action) {
            (ActionOutcome::Failed { .. }, _) => &FFTP_005,
            (ActionOutcome::NotPossible { .. }, _) => &FFTP_006,
            (ActionOutcome::Succeeded, ActionKind::Block) => &FFTP_002,
            (ActionOutcome::Succeeded, ActionKind::Remove) => &FFTP_003,
            (ActionOutcome::Succeeded, ActionKind::Terminate) => &FFTP_004,
            // Disinfection never succeeds with YARA rules; should it one
            // day, it removes the threat like a removal does.
            (ActionOutcome::Succeeded, ActionKind::Disinfect) => &FFTP_003,
        },
    }
}

/// `(SignatureID, Name, Severity)` of an envelope.
pub fn signature(env: &Envelope) -> (&'static str, &'static str, u8) {
    let s = signature_of(env);
    (s.id, s.name, s.severity)
}

/// One CEF line (no trailing newline).
pub fn to_cef_line(env: &Envelope, source: Option<&SourcePosition>, header: &CefHeader) -> String {
    let mut buf = Vec::with_capacity(512);
    // Writing to a Vec cannot fail; every value written is UTF-8.
    let _ = write_cef(env, source, header, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Writes the CEF line of `env`, **without** a trailing newline (syslog
/// and Kafka framing are the caller's).
pub fn write_cef(
    env: &Envelope,
    source: Option<&SourcePosition>,
    header: &CefHeader,
    w: &mut impl io::Write,
) -> io::Result<()> {
    let sig = signature_of(env);
    w.write_all(b"CEF:0|")?;
    for field in [&header.vendor, &header.product, &header.version] {
        write_escaped(w, field, Field::Header)?;
        w.write_all(b"|")?;
    }
    write_escaped(w, sig.id, Field::Header)?;
    w.write_all(b"|")?;
    write_escaped(w, sig.name, Field::Header)?;
    write!(w, "|{}|", sig.severity)?;

    let mut x = Ext { w, first: true };
    x.num("rt", env.timestamp.0.div_euclid(1_000_000))?;
    x.text("dvchost", &env.node_id.0)?;
    x.display("externalId", env.event_id)?;
    x.labeled_num("cn1", "seq", env.seq)?;
    if let Some(access) = env.access_id() {
        x.labeled("cs4", "accessId", access)?;
    }
    if let Some(s) = source {
        x.labeled("cs5", "sourcePosition", s)?;
    }

    match &env.body {
        EventBody::AgentStarted(e) => {
            x.num("dvcpid", e.pid)?;
            x.labeled(
                "flexString1",
                "interceptorMode",
                e.interceptor_mode.as_str(),
            )?;
        }
        EventBody::AgentStopped(e) => {
            if let Some(signal) = &e.signal {
                x.text("reason", signal)?;
            }
            x.num("cnt", e.answered_pending)?;
        }
        EventBody::RulesLoaded(e) => {
            x.labeled("cs2", "ruleset", &e.ruleset.0)?;
            x.labeled_num("cn2", "rules", e.rules)?;
        }
        EventBody::RulesRejected(e) => {
            x.labeled("cs2", "ruleset", &e.kept.0)?;
            x.text("reason", &e.error)?;
            if let Some(file) = &e.file {
                x.text("fname", file)?;
            }
        }
        EventBody::FileAccessed(e) => {
            let p = &e.process;
            x.num("dpid", p.pid)?;
            x.num("spid", p.ppid)?;
            x.num("duid", p.uid)?;
            if let Some(exe) = &p.executable {
                x.text("dproc", &exe.to_text())?;
            }
            x.file(&e.file.path)?;
            x.num("fsize", e.file.size)?;
            x.display("fileId", format_args!("{}:{}", e.file.device, e.file.inode))?;
            if let Some(p) = &e.policy {
                x.labeled("flexString1", "policy", &p.name)?;
            }
            if let Some(c) = &e.container {
                x.container(c)?;
            }
        }
        EventBody::ScanRequested(e) => {
            x.num("fsize", e.size)?;
            x.labeled("cs2", "ruleset", &e.ruleset.0)?;
        }
        EventBody::VerdictIssued(e) => {
            match e.verdict.member() {
                // The archive's path; its name with the member:
                // `outer.tar.gz!dir/inner.zip!evil.sh`.
                Some(member) => {
                    x.text("filePath", &e.path.to_text())?;
                    x.text("fname", &format!("{}!{member}", e.path.file_name_text()))?;
                }
                None => x.file(&e.path)?,
            }
            x.num("fsize", e.size)?;
            if let Some(h) = &e.sha256 {
                x.display("fileHash", Hex(h))?;
            }
            if let Some(matches) = e.verdict.matches() {
                x.labeled("cs1", "rule", RuleList(matches))?;
            }
            x.labeled("cs2", "ruleset", &e.ruleset.0)?;
            x.labeled("cs3", "verdict", e.verdict.class().as_str())?;
            x.labeled_num("cn3", "scanDurationUs", e.scan_duration_us)?;
            match &e.verdict {
                Verdict::Skipped { reason } => x.text("reason", reason.as_str())?,
                Verdict::Error { message } => {
                    x.text("outcome", "failure")?;
                    x.text("reason", message)?;
                }
                Verdict::Clean | Verdict::Infected { .. } | Verdict::InfectedMember { .. } => {}
            }
        }
        EventBody::DecisionMade(e) => {
            x.text("act", e.decision.as_str())?;
            x.text(
                "outcome",
                match e.decision {
                    Decision::Allow => "success",
                    Decision::Deny => "failure",
                },
            )?;
            x.text("reason", e.reason.as_str())?;
            x.labeled_num("cn2", "latencyUs", e.latency_us)?;
        }
        EventBody::ActionTaken(e) => {
            x.text("act", e.action.as_str())?;
            x.text("outcome", e.outcome.as_str())?;
            match &e.outcome {
                ActionOutcome::Failed { error } => x.text("reason", error)?,
                ActionOutcome::NotPossible { why } => x.text("reason", why)?,
                ActionOutcome::Succeeded => {}
            }
            x.num("dpid", e.pid)?;
            x.file(&e.path)?;
            if let Some(q) = &e.quarantine {
                x.text("fileId", &q.id)?;
                x.labeled("flexString1", "quarantinePath", q.stored_at.to_text())?;
            }
        }
        EventBody::QuarantineRestored(e) => {
            x.text("act", "restore")?;
            x.text("outcome", "success")?;
            x.file(&e.restored_to)?;
            x.text("oldFilePath", &e.entry.original_path.to_text())?;
            x.quarantined(&e.entry, e.operator.as_ref())?;
        }
        EventBody::QuarantineDeleted(e) => {
            x.text("act", "delete")?;
            x.text("outcome", "success")?;
            x.text("reason", e.reason.as_str())?;
            x.file(&e.entry.original_path)?;
            x.quarantined(&e.entry, e.operator.as_ref())?;
        }
        EventBody::QueueOverflowed(e) => {
            x.text("reason", e.source.as_str())?;
            x.num("cnt", e.count)?;
        }
        EventBody::ContainerObserved(e) => {
            x.text("act", e.change.action())?;
            x.container(&e.container)?;
            match &e.change {
                ContainerChange::Protected { pid, .. } => {
                    x.num("dpid", *pid)?;
                    x.text("outcome", "success")?;
                }
                ContainerChange::Unprotected { pid, reason, .. } => {
                    if let Some(pid) = pid {
                        x.num("dpid", *pid)?;
                    }
                    x.text("outcome", "failure")?;
                    x.text("reason", reason)?;
                }
                ContainerChange::Described | ContainerChange::Gone => {}
            }
        }
    }
    Ok(())
}

/// Matching rule names, comma-separated.
struct RuleList<'a>(&'a [RuleMatch]);

impl fmt::Display for RuleList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            f.write_str(&m.rule)?;
        }
        Ok(())
    }
}

/// Writes `key=value` pairs, space-separated, values escaped.
struct Ext<'w, W: io::Write> {
    w: &'w mut W,
    first: bool,
}

impl<W: io::Write> Ext<'_, W> {
    fn key(&mut self, key: &str) -> io::Result<()> {
        if !self.first {
            self.w.write_all(b" ")?;
        }
        self.first = false;
        self.w.write_all(key.as_bytes())?;
        self.w.write_all(b"=")
    }

    /// A number: nothing to escape.
    fn num(&mut self, key: &str, value: impl Into<i128>) -> io::Result<()> {
        self.key(key)?;
        write!(self.w, "{}", value.into())
    }

    /// Text; an empty value is left out rather than written `key=`.
    fn text(&mut self, key: &str, value: &str) -> io::Result<()> {
        if value.is_empty() {
            return Ok(());
        }
        self.key(key)?;
        write_escaped(self.w, value, Field::Extension)
    }

    fn display(&mut self, key: &str, value: impl fmt::Display) -> io::Result<()> {
        self.key(key)?;
        let mut esc = Escaper {
            w: &mut *self.w,
            field: Field::Extension,
            error: None,
        };
        if write!(esc, "{value}").is_err() {
            return Err(esc
                .error
                .unwrap_or_else(|| io::Error::other("formatting a CEF value failed")));
        }
        Ok(())
    }

    /// A custom field and its label (`cs1=... cs1Label=rule`).
    fn labeled(&mut self, key: &str, label: &str, value: impl fmt::Display) -> io::Result<()> {
        self.display(key, value)?;
        self.label(key, label)
    }

    /// `flexString2` (the id) and `cs6` (the name, as the model product
    /// puts it).
    fn container(&mut self, c: &ContainerRef) -> io::Result<()> {
        if let Some(name) = &c.name {
            self.labeled("cs6", "containerName", name)?;
        }
        self.labeled("flexString2", "containerId", &c.id)
    }

    fn labeled_num(&mut self, key: &str, label: &str, value: impl Into<i128>) -> io::Result<()> {
        self.num(key, value)?;
        self.label(key, label)
    }

    fn label(&mut self, key: &str, label: &str) -> io::Result<()> {
        self.w.write_all(b" ")?;
        self.w.write_all(key.as_bytes())?;
        self.w.write_all(b"Label=")?;
        self.w.write_all(label.as_bytes())
    }

    /// The quarantine entry of a restore or a deletion, and who asked.
    fn quarantined(&mut self, o: &QuarantinedObject, by: Option<&Operator>) -> io::Result<()> {
        self.text("fileId", &o.id)?;
        self.num("fsize", o.size)?;
        if let Some(h) = &o.sha256 {
            self.display("fileHash", Hex(h))?;
        }
        if let Some(c) = &o.container {
            self.container(c)?;
        }
        if let Some(op) = by {
            self.num("suid", op.uid)?;
            self.num("spid", op.pid)?;
        }
        Ok(())
    }

    /// `filePath` and `fname`.
    fn file(&mut self, path: &FilePath) -> io::Result<()> {
        self.text("filePath", &path.to_text())?;
        self.text("fname", &path.file_name_text())
    }
}

/// Where a value goes: the rules differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Vendor, Product, Version, SignatureID, Name.
    Header,
    /// An extension value.
    Extension,
}

/// `value` with the CEF escapes of `field` applied.
pub fn escape(value: &str, field: Field) -> Cow<'_, str> {
    if !value.bytes().any(|b| needs_escape(b, field)) {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len() + 8);
    // Writing to a Vec cannot fail.
    let _ = write_escaped(&mut out, value, field);
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn needs_escape(b: u8, field: Field) -> bool {
    match field {
        Field::Header => matches!(b, b'\\' | b'|' | b'\n' | b'\r'),
        Field::Extension => matches!(b, b'\\' | b'=' | b'\n' | b'\r'),
    }
}

fn write_escaped(w: &mut impl io::Write, value: &str, field: Field) -> io::Result<()> {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b, field) {
            continue;
        }
        w.write_all(&bytes[start..i])?;
        w.write_all(match (b, field) {
            (b'\\', _) => b"\\\\",
            (b'|', _) => b"\\|",
            (b'=', _) => b"\\=",
            (b'\n' | b'\r', Field::Header) => b" ",
            (b'\n', Field::Extension) => b"\\n",
            _ => b"\\r",
        })?;
        start = i + 1;
    }
    w.write_all(&bytes[start..])
}

/// Escapes what is formatted into it (all specials are ASCII, so escaping
/// chunk by chunk is the same as escaping the whole).
struct Escaper<'w, W: io::Write> {
    w: &'w mut W,
    field: Field,
    error: Option<io::Error>,
}

impl<W: io::Write> fmt::Write for Escaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(self.w, s, self.field).map_err(|e| {
            self.error = Some(e);
            fmt::Error
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn header_escapes_pipe_and_backslash_and_flattens_line_breaks() {
        assert_eq!(escape("plain", Field::Header), "plain");
        assert!(matches!(escape("plain", Field::Header), Cow::Borrowed(_)));
        assert_eq!(escape("a|b", Field::Header), "a\\|b");
        assert_eq!(escape("a\\b", Field::Header), "a\\\\b");
        assert_eq!(escape("a\\|b", Field::Header), "a\\\\\\|b");
        assert_eq!(escape("a=b", Field::Header), "a=b");
        assert_eq!(escape("two\nlines\r\n", Field::Header), "two lines  ");
        assert_eq!(escape("|", Field::Header), "\\|");
        assert_eq!(escape("\\", Field::Header), "\\\\");
        assert_eq!(escape("", Field::Header), "");
    }

    #[test]
    fn extension_escapes_backslash_equals_and_line_breaks() {
        assert_eq!(escape("plain text", Field::Extension), "plain text");
        assert_eq!(escape("a=b", Field::Extension), "a\\=b");
        assert_eq!(escape("a\\b", Field::Extension), "a\\\\b");
        assert_eq!(escape("a|b", Field::Extension), "a|b");
        assert_eq!(escape("l1\nl2\rl3", Field::Extension), "l1\\nl2\\rl3");
        assert_eq!(escape("\\=", Field::Extension), "\\\\\\=");
        assert_eq!(escape("=", Field::Extension), "\\=");
        assert_eq!(escape("trailing\\", Field::Extension), "trailing\\\\");
        // Non-ASCII passes through untouched.
        assert_eq!(escape("zoë=ü", Field::Extension), "zoë\\=ü");
        // A non-UTF-8 path in its escaped form: the \xNN backslash doubles.
        let p = FilePath::from_bytes(&b"/srv/a=b\xff"[..]);
        assert_eq!(escape(&p.escaped(), Field::Extension), "/srv/a\\=b\\\\xff");
    }

    #[test]
    fn the_escaper_escapes_formatted_values() {
        let mut out = Vec::new();
        let mut e = Escaper {
            w: &mut out,
            field: Field::Extension,
            error: None,
        };
        let (k, v, n) = ("k", "v\n", 3);
        write!(e, "{k}={v}|{n}").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "k\\=v\\n|3");
    }

    #[test]
    fn signature_table_is_consistent() {
        let ids: BTreeSet<&str> = SIGNATURES.iter().map(|s| s.id).collect();
        assert_eq!(ids.len(), SIGNATURES.len(), "duplicate signature ids");
        for s in SIGNATURES {
            assert!(s.severity <= 10, "{}", s.id);
            assert!(
                ["FFTP-", "FM-", "PC-"].iter().any(|p| s.id.starts_with(p)),
                "{}",
                s.id
            );
            assert!(!s.name.contains(['|', '\\', '\n']), "{}", s.id);
            assert!(!s.events.is_empty(), "{}", s.id);
        }
    }

    #[test]
    fn default_header_is_this_version() {
        let h = CefHeader::default();
        assert_eq!(h.vendor, "portcullis");
        assert_eq!(h.product, "portcullis");
        assert_eq!(h.version, env!("CARGO_PKG_VERSION"));
    }
}
