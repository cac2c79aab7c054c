//! JSON with Elastic Common Schema field names.
//!
//! One envelope becomes one flat-ish JSON object: `@timestamp`, `event.*`,
//! `file.*`, `process.*`, `user.*`, `container.*`, `host.*`, `rule.*`,
//! `trace.id`/`span.id`, and portcullis-specific fields under `portcullis.*`.
//! Absent values are left out rather than written as `null`.

use serde_json::{json, Map, Value};

use crate::envelope::Envelope;
use crate::events::*;
use crate::path::FilePath;

/// The ECS version the output follows.
pub const ECS_VERSION: &str = "8.11.0";

/// The ECS document for one envelope.
pub fn to_ecs(env: &Envelope) -> Value {
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), json!(env.timestamp.to_rfc3339()));
    doc.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    doc.insert(
        "host".into(),
        json!({ "name": env.node_id.0, "hostname": env.node_id.0 }),
    );
    doc.insert(
        "trace".into(),
        json!({ "id": hex::encode(env.trace.trace_id) }),
    );
    doc.insert(
        "span".into(),
        json!({ "id": hex::encode(env.trace.span_id) }),
    );

    let mut event = Map::new();
    event.insert("id".into(), json!(env.event_id.to_string()));
    event.insert("sequence".into(), json!(env.seq));
    event.insert("module".into(), json!("portcullis"));
    event.insert("dataset".into(), json!("portcullis.events"));
    event.insert("provider".into(), json!(env.body.kind().as_str()));

    let mut pc = Map::new();
    pc.insert("schema".into(), json!(env.schema));
    pc.insert("kind".into(), json!(env.body.kind().as_str()));
    if let Some(access) = env.body.access_id() {
        pc.insert("access_id".into(), json!(access.to_string()));
    }

    match &env.body {
        EventBody::AgentStarted(e) => {
            set_event(
                &mut event,
                "event",
                &["host", "process"],
                &["start"],
                "agent-started",
                "success",
            );
            doc.insert(
                "agent".into(),
                json!({ "type": "portcullis", "version": e.version }),
            );
            doc.insert("process".into(), json!({ "pid": e.pid }));
            pc.insert(
                "interceptor_mode".into(),
                json!(e.interceptor_mode.as_str()),
            );
            pc.insert(
                "protected".into(),
                Value::Array(e.protected.iter().map(|p| json!(p.escaped())).collect()),
            );
        }
        EventBody::AgentStopped(e) => {
            set_event(
                &mut event,
                "event",
                &["host", "process"],
                &["end"],
                "agent-stopped",
                "success",
            );
            pc.insert("answered_pending".into(), json!(e.answered_pending));
            if let Some(sig) = &e.signal {
                event.insert("reason".into(), json!(sig));
            }
        }
        EventBody::RulesLoaded(e) => {
            set_event(
                &mut event,
                "event",
                &["configuration"],
                &["change"],
                "rules-loaded",
                "success",
            );
            doc.insert("rule".into(), json!({ "version": e.ruleset.0 }));
            pc.insert("rules".into(), json!(e.rules));
            pc.insert("rule_files".into(), json!(e.files));
        }
        EventBody::FileAccessed(e) => {
            set_event(
                &mut event,
                "event",
                &["file"],
                &["access"],
                e.kind.as_str(),
                "unknown",
            );
            doc.insert("file".into(), file_info(&e.file));
            doc.insert("process".into(), process(&e.process));
            doc.insert("user".into(), json!({ "id": e.process.uid.to_string() }));
            doc.insert("group".into(), json!({ "id": e.process.gid.to_string() }));
            if let Some(c) = &e.container {
                doc.insert(
                    "container".into(),
                    json!({ "id": c.id, "runtime": c.runtime.as_str() }),
                );
            }
            pc.insert(
                "interceptor_mode".into(),
                json!(e.interceptor_mode.as_str()),
            );
            pc.insert("blocking".into(), json!(e.blocking));
            if let Some(p) = &e.policy {
                pc.insert(
                    "policy".into(),
                    json!({ "name": p.name, "mode": p.mode.as_str() }),
                );
            }
        }
        EventBody::ScanRequested(e) => {
            set_event(
                &mut event,
                "event",
                &["file"],
                &["info"],
                "scan-requested",
                "unknown",
            );
            doc.insert("file".into(), json!({ "size": e.size }));
            doc.insert("rule".into(), json!({ "version": e.ruleset.0 }));
        }
        EventBody::VerdictIssued(e) => verdict(&mut doc, &mut event, &mut pc, e),
        EventBody::DecisionMade(e) => {
            let ty = match e.decision {
                Decision::Allow => "allowed",
                Decision::Deny => "denied",
            };
            let outcome = match e.decision {
                Decision::Allow => "success",
                Decision::Deny => "failure",
            };
            set_event(
                &mut event,
                "event",
                &["file"],
                &["access", ty],
                e.decision.as_str(),
                outcome,
            );
            event.insert("reason".into(), json!(e.reason.as_str()));
            event.insert("duration".into(), json!(e.latency_us.saturating_mul(1000)));
            pc.insert("decision".into(), json!(e.decision.as_str()));
        }
        EventBody::ActionTaken(e) => {
            let ty = match e.action {
                ActionKind::Remove => "deletion",
                ActionKind::Terminate => "end",
                ActionKind::Block => "denied",
                ActionKind::Disinfect => "change",
            };
            let outcome = match e.outcome {
                ActionOutcome::Succeeded => "success",
                _ => "failure",
            };
            set_event(
                &mut event,
                "event",
                &["malware", "file"],
                &[ty],
                e.action.as_str(),
                outcome,
            );
            doc.insert("file".into(), path_only(&e.path));
            doc.insert("process".into(), json!({ "pid": e.pid }));
            let mut action = Map::new();
            action.insert(
                "step".into(),
                json!(match e.step {
                    ActionStep::First => "first",
                    ActionStep::Second => "second",
                }),
            );
            action.insert("result".into(), json!(e.outcome.as_str()));
            match &e.outcome {
                ActionOutcome::Failed { error } => {
                    action.insert("error".into(), json!(error));
                }
                ActionOutcome::NotPossible { why } => {
                    action.insert("error".into(), json!(why));
                }
                ActionOutcome::Succeeded => {}
            }
            if let Some(q) = &e.quarantine {
                action.insert("quarantine_id".into(), json!(q.id));
                action.insert("quarantine_path".into(), json!(q.stored_at.escaped()));
            }
            pc.insert("action".into(), Value::Object(action));
        }
        EventBody::QueueOverflowed(e) => {
            set_event(
                &mut event,
                "event",
                &["host"],
                &["info"],
                "queue-overflowed",
                "failure",
            );
            event.insert("reason".into(), json!(e.source.as_str()));
            pc.insert("overflow_count".into(), json!(e.count));
        }
    }
    doc.insert("event".into(), Value::Object(event));
    doc.insert("portcullis".into(), Value::Object(pc));
    Value::Object(doc)
}

/// One line of JSON (no trailing newline).
pub fn to_ecs_line(env: &Envelope) -> String {
    to_ecs(env).to_string()
}

fn set_event(
    event: &mut Map<String, Value>,
    kind: &str,
    category: &[&str],
    ty: &[&str],
    action: &str,
    outcome: &str,
) {
    event.insert("kind".into(), json!(kind));
    event.insert("category".into(), json!(category));
    event.insert("type".into(), json!(ty));
    event.insert("action".into(), json!(action));
    event.insert("outcome".into(), json!(outcome));
}

fn path_only(path: &FilePath) -> Value {
    let mut f = Map::new();
    f.insert("path".into(), json!(path.escaped()));
    f.insert(
        "name".into(),
        json!(FilePath::from_bytes(path.file_name()).escaped()),
    );
    if !path.is_utf8() {
        f.insert("path_hex".into(), json!(hex::encode(path.as_bytes())));
    }
    Value::Object(f)
}

fn file_info(info: &FileInfo) -> Value {
    let mut f = match path_only(&info.path) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    f.insert("inode".into(), json!(info.inode.to_string()));
    f.insert("device".into(), json!(info.device.to_string()));
    f.insert("size".into(), json!(info.size));
    f.insert(
        "mtime".into(),
        json!(crate::Timestamp(info.mtime_ns).to_rfc3339()),
    );
    f.insert(
        "ctime".into(),
        json!(crate::Timestamp(info.ctime_ns).to_rfc3339()),
    );
    Value::Object(f)
}

fn process(p: &ProcessInfo) -> Value {
    let mut m = Map::new();
    m.insert("pid".into(), json!(p.pid));
    m.insert("parent".into(), json!({ "pid": p.ppid }));
    m.insert("user".into(), json!({ "id": p.uid.to_string() }));
    m.insert("group".into(), json!({ "id": p.gid.to_string() }));
    if let Some(exe) = &p.executable {
        m.insert("executable".into(), json!(exe.escaped()));
    }
    if let Some(name) = &p.command {
        m.insert("name".into(), json!(name));
    }
    Value::Object(m)
}

fn meta_value(v: &MetaValue) -> Value {
    match v {
        MetaValue::Int(i) => json!(i),
        MetaValue::Float(f) => json!(f),
        MetaValue::Bool(b) => json!(b),
        MetaValue::Str(s) => json!(s),
        MetaValue::Bytes(b) => json!(String::from_utf8_lossy(b)),
    }
}

fn verdict(
    doc: &mut Map<String, Value>,
    event: &mut Map<String, Value>,
    pc: &mut Map<String, Value>,
    e: &VerdictIssued,
) {
    let mut file = match path_only(&e.path) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    file.insert("size".into(), json!(e.size));
    if let Some(h) = &e.sha256 {
        file.insert("hash".into(), json!({ "sha256": hex::encode(h) }));
    }
    doc.insert("file".into(), Value::Object(file));
    event.insert(
        "duration".into(),
        json!(e.scan_duration_us.saturating_mul(1000)),
    );
    pc.insert("verdict".into(), json!(e.verdict.class().as_str()));
    match &e.verdict {
        Verdict::Clean => {
            set_event(event, "event", &["file"], &["info"], "scan", "success");
            doc.insert("rule".into(), json!({ "version": e.ruleset.0 }));
        }
        Verdict::Infected { matches } => {
            set_event(
                event,
                "alert",
                &["malware", "intrusion_detection", "file"],
                &["info", "indicator"],
                "scan",
                "success",
            );
            let names: Vec<&str> = matches.iter().map(|m| m.rule.as_str()).collect();
            let mut rule = Map::new();
            rule.insert("version".into(), json!(e.ruleset.0));
            if let Some(first) = matches.first() {
                rule.insert("name".into(), json!(first.rule));
                rule.insert("ruleset".into(), json!(first.namespace));
                for (k, v) in &first.metadata {
                    if matches!(
                        k.as_str(),
                        "description"
                            | "author"
                            | "reference"
                            | "category"
                            | "license"
                            | "uuid"
                            | "id"
                    ) {
                        rule.insert(k.clone(), meta_value(v));
                    }
                }
            }
            doc.insert("rule".into(), Value::Object(rule));
            doc.insert(
                "threat".into(),
                json!({ "indicator": { "type": "file" }, "enrichments": [] }),
            );
            pc.insert("rule_names".into(), json!(names));
            pc.insert(
                "matches".into(),
                Value::Array(
                    matches
                        .iter()
                        .map(|m| {
                            let meta: Map<String, Value> = m
                                .metadata
                                .iter()
                                .map(|(k, v)| (k.clone(), meta_value(v)))
                                .collect();
                            json!({
                                "rule": m.rule,
                                "namespace": m.namespace,
                                "tags": m.tags,
                                "metadata": meta,
                            })
                        })
                        .collect(),
                ),
            );
        }
        Verdict::Skipped { reason } => {
            set_event(event, "event", &["file"], &["info"], "scan", "unknown");
            event.insert("reason".into(), json!(reason.as_str()));
            let detail = match reason {
                SkipReason::TooLarge { size, limit } => json!({ "size": size, "limit": limit }),
                SkipReason::ScanTimeout { after_ms } => json!({ "after_ms": after_ms }),
                SkipReason::Excluded { rule } => json!({ "rule": rule }),
            };
            pc.insert("unprocessed".into(), detail);
        }
        Verdict::Error { message } => {
            set_event(event, "event", &["file"], &["info"], "scan", "failure");
            doc.insert("error".into(), json!({ "message": message }));
        }
    }
}
