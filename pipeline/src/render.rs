//! Human-readable rendering of events (the `table` format).

use portcullis_schemas::{
    ActionOutcome, ContainerChange, ContainerDiscovery, ContainerRef, Envelope, EventBody,
    HookOutcome, Verdict,
};

/// The header line of the table.
pub const HEADER: &str = "SEQ     TIME (UTC)                KIND            DETAILS";

/// One line for one event.
pub fn row(env: &Envelope) -> String {
    let time = env.timestamp.to_rfc3339();
    // Millisecond precision is enough on screen.
    let time = match (time.find('.'), time.ends_with('Z')) {
        (Some(dot), true) if time.len() > dot + 4 => format!("{}Z", &time[..dot + 4]),
        _ => time,
    };
    format!(
        "{:<7} {:<25} {:<15} {}",
        env.seq,
        time,
        env.body.kind().as_str(),
        printable(&details(&env.body))
    )
}

/// `s` with control characters (newlines, escape sequences) written as
/// `\u{..}`: a file or container name never moves the terminal's cursor
/// or starts a line of its own.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// The first 12 characters: ids are hex, but a container id in a decoded
/// event is any string, and a byte index inside a character would panic.
fn short(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(end, _)| &id[..end])
}

/// The details column.
pub fn details(body: &EventBody) -> String {
    match body {
        EventBody::AgentStarted(e) => format!(
            "agent {} started, pid {}, mode {}, protecting {}",
            e.version,
            e.pid,
            e.interceptor_mode,
            e.protected
                .iter()
                .map(|p| p.escaped())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        EventBody::AgentStopped(e) => {
            format!(
                "agent stopped ({}), answered {} pending",
                e.signal.as_deref().unwrap_or("requested"),
                e.answered_pending
            )
        }
        EventBody::RulesLoaded(e) => {
            format!(
                "ruleset {} loaded: {} rules from {}",
                e.ruleset,
                e.rules,
                e.files.join(", ")
            )
        }
        EventBody::RulesRejected(e) => {
            format!("rules rejected, ruleset {} stays: {}", e.kept, e.error)
        }
        EventBody::FileAccessed(e) => {
            let mut s = format!(
                "{} {} by pid {} ({}) uid {}",
                e.kind.as_str(),
                e.file.path,
                e.process.pid,
                e.process.command.as_deref().unwrap_or("?"),
                e.process.uid
            );
            if let Some(c) = &e.container {
                s.push_str(&format!(" container {}", container(c)));
            }
            if let Some(p) = &e.policy {
                s.push_str(&format!(" policy {}({})", p.name, p.mode));
            }
            s.push_str(&format!(" mode {}", e.interceptor_mode));
            s
        }
        EventBody::ScanRequested(e) => format!("scan of {} bytes, ruleset {}", e.size, e.ruleset),
        EventBody::VerdictIssued(e) => {
            let what = verdict_text(&e.verdict);
            let hash = e
                .sha256
                .map(|h| format!(" sha256 {}", short(&hex::encode(h))))
                .unwrap_or_default();
            format!("{what} {}{hash} in {} µs", e.path, e.scan_duration_us)
        }
        EventBody::DecisionMade(e) => format!(
            "{} ({}) after {} µs, access {}",
            e.decision.as_str().to_uppercase(),
            e.reason.as_str(),
            e.latency_us,
            e.access
        ),
        EventBody::ActionTaken(e) => {
            let outcome = match &e.outcome {
                ActionOutcome::Succeeded => "succeeded".to_string(),
                ActionOutcome::Failed { error } => format!("failed: {error}"),
                ActionOutcome::NotPossible { why } => format!("not possible: {why}"),
            };
            let q = e
                .quarantine
                .as_ref()
                .map(|q| format!(", backup {}", q.stored_at))
                .unwrap_or_default();
            format!(
                "{:?} action {} on {} (pid {}) {outcome}{q}",
                e.step,
                e.action.as_str(),
                e.path,
                e.pid
            )
        }
        EventBody::QuarantineRestored(e) => format!(
            "quarantine {} restored to {}{}{}",
            e.entry.id,
            e.restored_to,
            if e.replaced { " (replaced a file)" } else { "" },
            operator(e.operator.as_ref())
        ),
        EventBody::QuarantineDeleted(e) => format!(
            "quarantine {} ({}) deleted: {}{}",
            e.entry.id,
            e.entry.original_path,
            e.reason.as_str(),
            operator(e.operator.as_ref())
        ),
        EventBody::QueueOverflowed(e) => {
            format!("{} overflowed {} time(s)", e.source.as_str(), e.count)
        }
        EventBody::ContainerObserved(e) => {
            let what = match &e.change {
                ContainerChange::Protected {
                    pid, via, volumes, ..
                } => format!(
                    "protected (pid {pid}, by {}, {} volume(s))",
                    match via {
                        ContainerDiscovery::Hook => "hook",
                        ContainerDiscovery::Scan => "scan",
                    },
                    volumes.len()
                ),
                ContainerChange::Described => "described".to_string(),
                ContainerChange::Gone => "gone".to_string(),
                ContainerChange::Unprotected { reason, hook, .. } => match hook {
                    Some(HookOutcome::Allowed) => {
                        format!("UNPROTECTED start (hook allowed it: {reason})")
                    }
                    Some(HookOutcome::Refused) => format!("start refused by the hook ({reason})"),
                    None => format!("UNPROTECTED: {reason}"),
                },
            };
            format!("container {} {what}", container(&e.container))
        }
    }
}

/// `podman:0123456789ab name=web image=nginx:1 pod=shop/web-1`.
pub fn container(c: &ContainerRef) -> String {
    let mut s = format!("{}:{}", c.runtime.as_str(), short(&c.id));
    if let Some(n) = &c.name {
        s.push_str(&format!(" name={n}"));
    }
    if let Some(i) = &c.image {
        s.push_str(&format!(" image={i}"));
    }
    if let Some(p) = &c.pod {
        s.push_str(&format!(" pod={}/{}", p.namespace, p.name));
    }
    s
}

/// `ns:rule, ns:rule`.
pub fn rule_list(matches: &[portcullis_schemas::RuleMatch]) -> String {
    matches
        .iter()
        .map(|m| format!("{}:{}", m.namespace, m.rule))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A verdict in one line: `clean`, `INFECTED [ns:rule, ...]` (with `in
/// MEMBER` for an archive member), `unprocessed (reason)`, `error: ...`.
pub fn verdict_text(v: &Verdict) -> String {
    let rules = rule_list;
    match v {
        Verdict::Clean => "clean".to_string(),
        Verdict::Infected { matches } => format!("INFECTED [{}]", rules(matches)),
        Verdict::InfectedMember { member, matches } => {
            format!("INFECTED [{}] in {member}", rules(matches))
        }
        Verdict::Skipped {
            reason:
                portcullis_schemas::SkipReason::ArchiveLimit {
                    limit,
                    value,
                    member,
                },
        } => format!("unprocessed (archive_limit: {limit} {value} at `{member}`)"),
        Verdict::Skipped { reason } => format!("unprocessed ({})", reason.as_str()),
        Verdict::Error { message } => format!("error: {message}"),
    }
}

/// `, by uid U (login uid L) pid P` of a quarantine change.
fn operator(op: Option<&portcullis_schemas::Operator>) -> String {
    match op {
        None => String::new(),
        Some(o) => {
            let login = o
                .login_uid
                .map(|l| format!(" (login uid {l})"))
                .unwrap_or_default();
            format!(", by uid {}{login} pid {}", o.uid, o.pid)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use portcullis_schemas::{
        EventId, FilePath, NodeId, QuarantineDeleted, QuarantineDeletion, QuarantinedObject,
        Timestamp, TraceContext,
    };

    use super::*;

    #[test]
    fn a_file_name_never_drives_the_terminal() {
        // An escape sequence that would clear the screen, and a newline that
        // would forge a row of its own.
        let name = "/srv/a\u{1b}[2J\nSEQ 1 forged\u{7}.txt";
        let id = EventId::new();
        let env = Envelope {
            schema: portcullis_schemas::SCHEMA_VERSION,
            event_id: id,
            node_id: NodeId("n".into()),
            seq: 1,
            timestamp: Timestamp(0),
            trace: TraceContext::root_for(&id),
            body: EventBody::QuarantineDeleted(QuarantineDeleted {
                entry: QuarantinedObject {
                    id: id.to_string(),
                    detection: id,
                    original_path: FilePath::from_bytes(name.as_bytes()),
                    sha256: None,
                    size: 1,
                    container: None,
                },
                reason: QuarantineDeletion::Operator,
                operator: None,
            }),
        };
        let line = row(&env);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.contains("\\u{1b}[2J\\u{a}SEQ 1 forged\\u{7}.txt"),
            "{line}"
        );
        assert_eq!(printable("plain /path"), "plain /path");
    }

    #[test]
    fn short_ids_cut_on_characters_not_bytes() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
        // A container id from an event anyone could write to the topic.
        assert_eq!(short("aéééééééééééééé"), "aééééééééééé");
    }
}
