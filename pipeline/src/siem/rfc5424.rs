//! Syslog messages (RFC 5424) and their framing (RFC 6587, RFC 5426).
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG
//! <164>1 2025-11-28T20:33:04.123456Z node-a portcullis - FFTP-001 - CEF:0|...
//! ```
//!
//! - PRI = facility × 8 + severity; the severity comes from the CEF
//!   severity ([`Severity::of_cef`]).
//! - TIMESTAMP: when the event happened (not when it was exported), UTC,
//!   microseconds (RFC 5424 allows at most six fraction digits).
//! - HOSTNAME: the node the event happened on; APP-NAME `portcullis`;
//!   PROCID `-` (the exporter's pid says nothing about the event); MSGID:
//!   the CEF signature id; STRUCTURED-DATA `-`.
//! - MSG: the CEF line, without a BOM (RFC 5424 MSG-ANY: CEF collectors
//!   expect the line to start with `CEF:`).
//!
//! Header fields are PRINTUSASCII (33..=126) of bounded length: other
//! bytes become `_`, longer values are cut, empty ones are `-`.

use portcullis_schemas::Timestamp;

use super::config::Facility;

/// APP-NAME of every message.
pub const APP_NAME: &str = "portcullis";
/// The RFC 5424 NILVALUE.
const NIL: &str = "-";

/// Syslog severities (RFC 5424 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Emergency = 0,
    Alert = 1,
    Critical = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Informational = 6,
    Debug = 7,
}

impl Severity {
    /// The syslog severity of a CEF severity (0-10): 9-10 (very high)
    /// critical, 7-8 (high) error, 4-6 (medium) warning, 1-3 (low) notice,
    /// 0 informational.
    pub fn of_cef(cef: u8) -> Self {
        match cef {
            9.. => Severity::Critical,
            7..=8 => Severity::Error,
            4..=6 => Severity::Warning,
            1..=3 => Severity::Notice,
            0 => Severity::Informational,
        }
    }
}

/// The header of one message.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub facility: Facility,
    pub severity: Severity,
    pub timestamp: Timestamp,
    pub hostname: &'a str,
    pub msgid: &'a str,
}

/// One RFC 5424 message (no framing).
pub fn message(h: &Header<'_>, msg: &[u8]) -> Vec<u8> {
    let pri = u16::from(h.facility.code()) * 8 + h.severity as u16;
    let mut out = Vec::with_capacity(96 + msg.len());
    out.extend_from_slice(format!("<{pri}>1 ").as_bytes());
    out.extend_from_slice(timestamp(h.timestamp).as_bytes());
    for (value, max) in [(h.hostname, 255), (APP_NAME, 48), (NIL, 128), (h.msgid, 32)] {
        out.push(b' ');
        field(&mut out, value, max);
    }
    out.extend_from_slice(b" - ");
    out.extend_from_slice(msg);
    out
}

/// `YYYY-MM-DDThh:mm:ss.ffffffZ`; `-` for a time outside what `time`
/// can represent.
fn timestamp(t: Timestamp) -> String {
    let Ok(dt) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0)) else {
        return NIL.to_string();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.microsecond()
    )
}

/// A header field: PRINTUSASCII only, at most `max` bytes, `-` if empty.
fn field(out: &mut Vec<u8>, value: &str, max: usize) {
    let start = out.len();
    out.extend(
        value
            .bytes()
            .take(max)
            .map(|b| if (33..=126).contains(&b) { b } else { b'_' }),
    );
    if out.len() == start {
        out.push(b'-');
    }
}

/// Octet-counting framing (RFC 6587 §3.4.1, RFC 5425 §4.3): `LEN SP MSG`.
pub fn octet_counted(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

/// Cuts a message to at most `max` bytes for one datagram: at a UTF-8
/// character boundary (the message is UTF-8), and never inside a CEF
/// escape (an odd run of trailing backslashes loses one). Returns whether
/// it cut.
pub fn truncate(msg: &mut Vec<u8>, max: usize) -> bool {
    if msg.len() <= max {
        return false;
    }
    let mut end = max;
    // Back up over continuation bytes (10xxxxxx) to a character start.
    while end > 0 && (msg[end] & 0b1100_0000) == 0b1000_0000 {
        end -= 1;
    }
    msg.truncate(end);
    let backslashes = msg.iter().rev().take_while(|&&b| b == b'\\').count();
    if backslashes % 2 == 1 {
        msg.pop();
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header<'a>(hostname: &'a str, msgid: &'a str) -> Header<'a> {
        Header {
            facility: Facility::Local4,
            severity: Severity::of_cef(8),
            // 2025-11-28T20:33:04.123456789Z
            timestamp: Timestamp(1_764_361_984_123_456_789),
            hostname,
            msgid,
        }
    }

    #[test]
    fn a_message_has_every_field() {
        let m = message(&header("node-a", "FFTP-001"), b"CEF:0|x");
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "<163>1 2025-11-28T20:33:04.123456Z node-a portcullis - FFTP-001 - CEF:0|x"
        );
    }

    #[test]
    fn header_fields_are_printable_and_bounded() {
        let long = "h".repeat(300);
        let m = message(&header(&long, ""), b"x");
        let text = String::from_utf8(m).unwrap();
        let parts: Vec<&str> = text.split(' ').collect();
        assert_eq!(parts[2].len(), 255);
        assert_eq!(parts[5], "-", "an empty MSGID is NILVALUE");
        let m = message(&header("node a\u{e9}", "FM 1"), b"x");
        let text = String::from_utf8_lossy(&m).into_owned();
        assert!(text.contains(" node_a__ portcullis - FM_1 - x"), "{text}");
    }

    #[test]
    fn severities_follow_the_cef_bands() {
        assert_eq!(Severity::of_cef(10), Severity::Critical);
        assert_eq!(Severity::of_cef(9), Severity::Critical);
        assert_eq!(Severity::of_cef(7), Severity::Error);
        assert_eq!(Severity::of_cef(5), Severity::Warning);
        assert_eq!(Severity::of_cef(3), Severity::Notice);
        assert_eq!(Severity::of_cef(0), Severity::Informational);
        let pri = |f: Facility, s: Severity| u16::from(f.code()) * 8 + s as u16;
        assert_eq!(pri(Facility::Auth, Severity::Critical), 34);
        assert_eq!(pri(Facility::Local7, Severity::Debug), 191);
    }

    #[test]
    fn octet_counting_counts_bytes() {
        let mut out = Vec::new();
        octet_counted("é1".as_bytes(), &mut out);
        octet_counted(b"", &mut out);
        assert_eq!(out, "3 é10 ".as_bytes());
    }

    #[test]
    fn truncation_keeps_characters_and_escapes_whole() {
        let mut m = b"abc".to_vec();
        assert!(!truncate(&mut m, 3));
        let mut m = "aé".as_bytes().to_vec();
        assert!(truncate(&mut m, 2));
        assert_eq!(m, b"a");
        let mut m = br"ab\=cd".to_vec();
        assert!(truncate(&mut m, 3));
        assert_eq!(m, b"ab", "a lone backslash would escape nothing");
        let mut m = br"ab\\cd".to_vec();
        assert!(truncate(&mut m, 4));
        assert_eq!(m, br"ab\\");
    }
}
