//! Property tests: every envelope survives the binary codec unchanged, and
//! renders as an ECS document with the fields every SIEM consumer relies on.
#![allow(clippy::unwrap_used)]

mod strategies;

use std::collections::BTreeSet;

use portcullis_schemas::{codec, ecs, *};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::Value;

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

/// `doc[a][b]...` or `None`.
fn field<'a>(doc: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(doc, |v, k| v.get(k))
}

fn str_field<'a>(doc: &'a Value, dotted: &str) -> &'a str {
    field(doc, dotted)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("`{dotted}` missing or not a string in {doc:#}"))
}

/// Inverse of [`FilePath::escaped`] for paths that are not UTF-8.
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            match b.get(i + 1) {
                Some(b'\\') => {
                    out.push(b'\\');
                    i += 2;
                }
                Some(b'x') => {
                    let hex = s.get(i + 2..i + 4).expect("two hex digits after \\x");
                    out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                    i += 4;
                }
                other => panic!("lone backslash followed by {other:?} in {s:?}"),
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// JSON equality, except that floats may differ in the last digits: the
/// writer prints the shortest exact form, but serde_json's default parser
/// (without its `float_roundtrip` feature) reads some of them back a few
/// ULP off (e.g. `9.600487494840883e-213` comes back 2 ULP away).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    let d = (x - y).abs();
                    x == y || d <= 1e-12 * x.abs().max(y.abs()) || d < f64::MIN_POSITIVE
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn codec_round_trips(env in strategies::envelope()) {
        let bytes = codec::encode(&env).unwrap();
        prop_assert_eq!(&bytes[..2], &codec::MAGIC[..]);
        prop_assert_eq!(codec::peek_version(&bytes).unwrap(), SCHEMA_VERSION);
        let back = codec::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &env);
        // Deterministic: the decoded value encodes to the same bytes.
        prop_assert_eq!(codec::encode(&back).unwrap(), bytes);
    }

    #[test]
    fn encode_into_appends(env in strategies::envelope(), prefix in proptest::collection::vec(any::<u8>(), 0..16)) {
        let mut out = prefix.clone();
        codec::encode_into(&env, &mut out).unwrap();
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&out[prefix.len()..], &codec::encode(&env).unwrap()[..]);
        prop_assert_eq!(codec::decode(&out[prefix.len()..]).unwrap(), env);
    }

    #[test]
    fn ecs_has_the_required_fields(env in strategies::envelope()) {
        let doc = ecs::to_ecs(&env);
        prop_assert!(doc.is_object(), "not an object: {doc}");

        let ts = str_field(&doc, "@timestamp");
        prop_assert_eq!(Timestamp::parse_rfc3339(ts).unwrap(), env.timestamp, "@timestamp {}", ts);
        prop_assert_eq!(str_field(&doc, "host.name"), env.node_id.0.as_str());
        prop_assert_eq!(str_field(&doc, "event.id"), env.event_id.to_string());
        prop_assert_eq!(field(&doc, "event.sequence").and_then(Value::as_u64), Some(env.seq));
        prop_assert_eq!(str_field(&doc, "portcullis.kind"), env.body.kind().as_str());
        prop_assert_eq!(str_field(&doc, "trace.id"), hex::encode(env.trace.trace_id));
        prop_assert_eq!(str_field(&doc, "span.id"), hex::encode(env.trace.span_id));

        let infected = matches!(
            &env.body,
            EventBody::VerdictIssued(VerdictIssued {
                verdict: Verdict::Infected { .. } | Verdict::InfectedMember { .. },
                ..
            })
        );
        let kind = str_field(&doc, "event.kind");
        prop_assert_eq!(kind, if infected { "alert" } else { "event" });
        prop_assert!(!str_field(&doc, "event.action").is_empty());
        prop_assert!(["success", "failure", "unknown"].contains(&str_field(&doc, "event.outcome")));
        for list in ["event.category", "event.type"] {
            let values = field(&doc, list).and_then(Value::as_array);
            prop_assert!(
                values.is_some_and(|v| !v.is_empty() && v.iter().all(Value::is_string)),
                "`{}` is not a non-empty array of strings in {:#}", list, doc
            );
        }

        match env.body.access_id() {
            Some(id) => prop_assert_eq!(str_field(&doc, "portcullis.access_id"), id.to_string()),
            None => prop_assert!(field(&doc, "portcullis.access_id").is_none()),
        }

        if let Some(path) = env.body.path() {
            prop_assert_eq!(str_field(&doc, "file.path"), path.escaped());
            let hex = field(&doc, "file.path_hex").and_then(Value::as_str);
            if path.is_utf8() {
                prop_assert!(hex.is_none(), "path_hex on a UTF-8 path");
            } else {
                let want = hex::encode(path.as_bytes());
                prop_assert_eq!(hex, Some(want.as_str()));
            }
        } else {
            // EventBody::path names every event whose ECS form has a file.
            prop_assert!(field(&doc, "file.path").is_none(), "{doc:#}");
        }

        if let EventBody::VerdictIssued(v) = &env.body {
            let want = v.sha256.map(hex::encode);
            prop_assert_eq!(field(&doc, "file.hash.sha256").and_then(Value::as_str), want.as_deref());
        }

        // Absent values are left out, never written as null, except where a
        // metadata float had to become one (it cannot: floats are finite).
        fn no_nulls(v: &Value, at: &str) -> Result<(), TestCaseError> {
            match v {
                Value::Null => Err(TestCaseError::fail(format!("null at {at}"))),
                Value::Array(a) => a.iter().try_for_each(|x| no_nulls(x, at)),
                Value::Object(m) => m.iter().try_for_each(|(k, x)| no_nulls(x, &format!("{at}.{k}"))),
                _ => Ok(()),
            }
        }
        no_nulls(&doc, "")?;

        // One line, and the same document.
        let line = ecs::to_ecs_line(&env);
        prop_assert!(!line.contains('\n'));
        let reparsed: Value = serde_json::from_str(&line).unwrap();
        prop_assert!(same_json(&reparsed, &doc), "line {} differs from {}", line, doc);
    }

    #[test]
    fn access_id_points_at_the_access(env in strategies::envelope()) {
        let want = match &env.body {
            EventBody::FileAccessed(_) => Some(env.event_id),
            EventBody::ScanRequested(e) => Some(e.access),
            EventBody::VerdictIssued(e) => Some(e.access),
            EventBody::DecisionMade(e) => Some(e.access),
            EventBody::ActionTaken(e) => Some(e.access),
            EventBody::QuarantineRestored(e) => Some(e.entry.detection),
            EventBody::QuarantineDeleted(e) => Some(e.entry.detection),
            EventBody::AgentStarted(_)
            | EventBody::AgentStopped(_)
            | EventBody::RulesLoaded(_)
            | EventBody::QueueOverflowed(_)
            | EventBody::ContainerObserved(_)
            | EventBody::RulesRejected(_) => None,
        };
        prop_assert_eq!(env.access_id(), want);
    }

    #[test]
    fn timestamp_rfc3339_round_trips(ns in any::<i64>()) {
        let s = Timestamp(ns).to_rfc3339();
        prop_assert!(s.ends_with('Z'), "{}", s);
        prop_assert_eq!(Timestamp::parse_rfc3339(&s).unwrap(), Timestamp(ns), "{}", s);
    }

    #[test]
    fn event_id_text_round_trips(id in strategies::event_id()) {
        let s = id.to_string();
        prop_assert_eq!(s.len(), 36);
        prop_assert_eq!(s.parse::<EventId>().unwrap(), id);
        prop_assert_eq!(format!("{id:?}"), s);
    }

    #[test]
    fn traceparent_is_w3c_shaped(t in strategies::trace_context()) {
        let tp = t.traceparent();
        let parts: Vec<&str> = tp.split('-').collect();
        prop_assert_eq!(parts.len(), 4, "{}", tp);
        prop_assert_eq!(parts[0], "00");
        prop_assert_eq!(hex::decode(parts[1]).unwrap(), t.trace_id.to_vec());
        prop_assert_eq!(hex::decode(parts[2]).unwrap(), t.span_id.to_vec());
        prop_assert_eq!(u8::from_str_radix(parts[3], 16).unwrap(), t.flags);
        prop_assert_eq!(parts[3].len(), 2);
    }

    #[test]
    fn trace_children_stay_in_the_trace(a in strategies::event_id(), b in strategies::event_id()) {
        let root = TraceContext::root_for(&a);
        prop_assert_eq!(root.trace_id, *a.as_bytes());
        let child = root.child(&b);
        prop_assert_eq!(child.trace_id, root.trace_id);
        prop_assert_eq!(child.flags, root.flags);
        prop_assert_eq!(&child.span_id[..], &b.as_bytes()[8..]);
    }

    #[test]
    fn escaped_paths_map_back_to_their_bytes(p in strategies::file_path()) {
        let s = p.escaped();
        if p.is_utf8() {
            prop_assert_eq!(s.as_bytes(), p.as_bytes());
        } else {
            prop_assert!(s.contains("\\x"), "{}", s);
            prop_assert_eq!(unescape(&s), p.as_bytes().to_vec(), "{}", s);
        }
        prop_assert_eq!(format!("{p}"), s.clone());
        prop_assert_eq!(format!("{p:?}"), format!("{s:?}"));
        let name = p.file_name();
        prop_assert!(!name.contains(&b'/'));
        prop_assert!(p.as_bytes().ends_with(name));
        prop_assert_eq!(FilePath::from(p.to_path_buf().as_path()), p);
    }
}

/// The strategies reach every variant of every enum and both sides of
/// every `Option`, so the properties above really cover the whole model.
#[test]
fn strategies_cover_every_variant() {
    fn tag(seen: &mut BTreeSet<String>, s: impl Into<String>) {
        seen.insert(s.into());
    }
    fn path(seen: &mut BTreeSet<String>, p: &FilePath) {
        tag(
            seen,
            if p.is_utf8() {
                "path:utf8"
            } else {
                "path:non_utf8"
            },
        );
    }
    fn opt<T>(seen: &mut BTreeSet<String>, name: &str, o: &Option<T>) {
        tag(
            seen,
            format!("{name}:{}", if o.is_some() { "some" } else { "none" }),
        );
    }

    let mut runner = TestRunner::deterministic();
    let strategy = strategies::envelope();
    let mut seen = BTreeSet::new();
    for _ in 0..4000 {
        let env = strategy.new_tree(&mut runner).unwrap().current();
        tag(&mut seen, format!("body:{}", env.body.kind()));
        match &env.body {
            EventBody::AgentStarted(e) => {
                tag(&mut seen, format!("mode:{}", e.interceptor_mode));
                e.protected.iter().for_each(|p| path(&mut seen, p));
            }
            EventBody::AgentStopped(e) => opt(&mut seen, "signal", &e.signal),
            EventBody::RulesLoaded(_) => {}
            EventBody::RulesRejected(e) => {
                tag(&mut seen, "rules_rejected".to_owned());
                opt(&mut seen, "rule_file", &e.file);
            }
            EventBody::FileAccessed(e) => {
                tag(&mut seen, format!("access:{}", e.kind.as_str()));
                path(&mut seen, &e.file.path);
                opt(&mut seen, "executable", &e.process.executable);
                opt(&mut seen, "command", &e.process.command);
                opt(&mut seen, "container", &e.container);
                opt(&mut seen, "policy", &e.policy);
                if let Some(c) = &e.container {
                    tag(&mut seen, format!("runtime:{}", c.runtime.as_str()));
                    opt(&mut seen, "container_name", &c.name);
                    opt(&mut seen, "pod", &c.pod);
                }
                if let Some(p) = &e.policy {
                    tag(&mut seen, format!("policy_mode:{}", p.mode));
                }
                tag(&mut seen, format!("blocking:{}", e.blocking));
            }
            EventBody::ScanRequested(_) => {}
            EventBody::VerdictIssued(e) => {
                tag(&mut seen, format!("verdict:{}", e.verdict.class().as_str()));
                opt(&mut seen, "sha256", &e.sha256);
                path(&mut seen, &e.path);
                match &e.verdict {
                    Verdict::Infected { matches } | Verdict::InfectedMember { matches, .. } => {
                        if let Some(member) = e.verdict.member() {
                            tag(&mut seen, format!("member_empty:{}", member.is_empty()));
                        }
                        tag(&mut seen, format!("infected_empty:{}", matches.is_empty()));
                        for (_, v) in matches.iter().flat_map(|m| &m.metadata) {
                            tag(
                                &mut seen,
                                match v {
                                    MetaValue::Int(_) => "meta:int",
                                    MetaValue::Float(_) => "meta:float",
                                    MetaValue::Bool(_) => "meta:bool",
                                    MetaValue::Str(_) => "meta:str",
                                    MetaValue::Bytes(_) => "meta:bytes",
                                },
                            );
                        }
                    }
                    Verdict::Skipped { reason } => {
                        tag(&mut seen, format!("skip:{}", reason.as_str()))
                    }
                    Verdict::Clean | Verdict::Error { .. } => {}
                }
            }
            EventBody::DecisionMade(e) => {
                tag(&mut seen, format!("decision:{}", e.decision.as_str()));
                tag(&mut seen, format!("reason:{}", e.reason.as_str()));
            }
            EventBody::ActionTaken(e) => {
                tag(&mut seen, format!("action:{}", e.action.as_str()));
                tag(&mut seen, format!("step:{:?}", e.step));
                tag(&mut seen, format!("outcome:{}", e.outcome.as_str()));
                opt(&mut seen, "quarantine", &e.quarantine);
            }
            EventBody::QueueOverflowed(e) => {
                tag(&mut seen, format!("overflow:{}", e.source.as_str()))
            }
            EventBody::QuarantineRestored(e) => {
                path(&mut seen, &e.entry.original_path);
                tag(&mut seen, format!("replaced:{}", e.replaced));
                opt(&mut seen, "operator", &e.operator);
                opt(&mut seen, "quarantine_container", &e.entry.container);
            }
            EventBody::QuarantineDeleted(e) => {
                tag(&mut seen, format!("deletion:{}", e.reason.as_str()));
                opt(&mut seen, "operator", &e.operator);
            }
            EventBody::ContainerObserved(e) => {
                tag(&mut seen, format!("container_change:{}", e.change.action()));
                if let ContainerChange::Unprotected { hook, .. } = &e.change {
                    opt(&mut seen, "hook", hook);
                }
            }
        }
    }

    let mut want: Vec<String> = EventKind::ALL.iter().map(|k| format!("body:{k}")).collect();
    want.extend(
        [
            "mode:enforce",
            "mode:audit",
            "path:utf8",
            "path:non_utf8",
            "signal:some",
            "signal:none",
            "access:open",
            "access:exec",
            "access:close_write",
            "executable:some",
            "executable:none",
            "command:some",
            "command:none",
            "container:some",
            "container:none",
            "policy:some",
            "policy:none",
            "runtime:docker",
            "runtime:containerd",
            "runtime:cri-o",
            "runtime:podman",
            "container_name:some",
            "container_name:none",
            "pod:some",
            "pod:none",
            "container_change:container_protected",
            "container_change:container_described",
            "container_change:container_gone",
            "container_change:container_unprotected",
            "hook:some",
            "hook:none",
            "policy_mode:enforce",
            "policy_mode:audit",
            "blocking:true",
            "blocking:false",
            "verdict:clean",
            "verdict:infected",
            "verdict:skipped",
            "verdict:error",
            "sha256:some",
            "sha256:none",
            "infected_empty:true",
            "infected_empty:false",
            "meta:int",
            "meta:float",
            "meta:bool",
            "meta:str",
            "meta:bytes",
            "skip:too_large",
            "skip:scan_timeout",
            "skip:excluded",
            "skip:archive_limit",
            "member_empty:false",
            "decision:allow",
            "decision:deny",
            "reason:verdict",
            "reason:cache_hit",
            "reason:deadline",
            "reason:audit_mode",
            "reason:overload",
            "reason:not_in_scope",
            "reason:own_process",
            "reason:shutdown",
            "reason:trusted_hash",
            "reason:known_bad_hash",
            "action:block",
            "action:remove",
            "action:terminate",
            "action:disinfect",
            "step:First",
            "step:Second",
            "outcome:success",
            "outcome:failure",
            "outcome:not_possible",
            "quarantine:some",
            "quarantine:none",
            "replaced:true",
            "replaced:false",
            "operator:some",
            "operator:none",
            "quarantine_container:some",
            "quarantine_container:none",
            "deletion:operator",
            "deletion:max_age",
            "deletion:max_size",
            "overflow:kernel",
            "overflow:mailbox",
            "overflow:pending_set",
        ]
        .map(str::to_owned),
    );
    let missing: Vec<&String> = want.iter().filter(|w| !seen.contains(*w)).collect();
    assert!(missing.is_empty(), "strategies never produced: {missing:?}");
}

#[test]
fn event_kinds_are_distinct_and_parse_back() {
    let names: BTreeSet<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), EventKind::ALL.len());
    for k in EventKind::ALL {
        assert_eq!(k.as_str().parse::<EventKind>().unwrap(), k);
        assert_eq!(k.to_string(), k.as_str());
        // The serde name (used in JSON config and filters) is the same text.
        assert_eq!(serde_json::to_value(k).unwrap(), Value::from(k.as_str()));
    }
    assert!("file-accessed".parse::<EventKind>().is_err());
    assert!("".parse::<EventKind>().is_err());
}

#[test]
fn verdict_classes_parse_back() {
    use VerdictClass::*;
    for c in [Clean, Infected, Skipped, Error] {
        assert_eq!(c.as_str().parse::<VerdictClass>().unwrap(), c);
        assert_eq!(serde_json::to_value(c).unwrap(), Value::from(c.as_str()));
    }
    assert_eq!("unprocessed".parse::<VerdictClass>().unwrap(), Skipped);
    let err = "dirty".parse::<VerdictClass>().unwrap_err();
    assert!(err.contains("dirty"), "{err}");
}

/// `as_str` (used in ECS output) and the serde name agree for the unit
/// enums, so filters written against either spelling match.
#[test]
fn unit_enum_names_match_serde_names() {
    fn check<T: serde::Serialize + std::fmt::Debug>(v: T, s: &str) {
        assert_eq!(serde_json::to_value(&v).unwrap(), Value::from(s), "{v:?}");
    }
    for m in [Mode::Enforce, Mode::Audit] {
        check(m, m.as_str());
    }
    for a in [AccessKind::Open, AccessKind::Exec, AccessKind::CloseWrite] {
        check(a, a.as_str());
    }
    for d in [Decision::Allow, Decision::Deny] {
        check(d, d.as_str());
    }
    use DecisionReason::*;
    for r in [
        Verdict, CacheHit, Deadline, AuditMode, Overload, NotInScope, OwnProcess, Shutdown,
    ] {
        check(r, r.as_str());
    }
    for a in [
        ActionKind::Block,
        ActionKind::Remove,
        ActionKind::Terminate,
        ActionKind::Disinfect,
    ] {
        check(a, a.as_str());
    }
    for o in [
        OverflowSource::Kernel,
        OverflowSource::Mailbox,
        OverflowSource::PendingSet,
    ] {
        check(o, o.as_str());
    }
}
