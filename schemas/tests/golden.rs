//! Golden fixtures: the deterministic samples (`samples/mod.rs`) encoded
//! with the binary codec (`fixtures/v1/<name>.bin`) and rendered as ECS
//! JSON (`fixtures/ecs/<name>.json`).
//!
//! The binary fixtures pin the wire format of schema version 1: a change
//! that alters them breaks every journal and topic already written. Only
//! re-bless them for a deliberate format change (with a version bump).
//!
//! To (re)write the fixture files instead of comparing:
//!
//! ```sh
//! PORTCULLIS_BLESS=1 cargo test --release -p portcullis-schemas --test golden
//! ```
#![allow(clippy::unwrap_used)]

mod samples;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use portcullis_schemas::{codec, ecs, *};
use serde_json::Value;

fn bless() -> bool {
    std::env::var_os("PORTCULLIS_BLESS").is_some_and(|v| v == "1")
}

fn fixture_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// File names (without extension) in `dir` that have no sample.
fn stale_fixtures(dir: &Path, ext: &str) -> Vec<String> {
    let names: BTreeSet<&str> = samples::all().iter().map(|(n, _)| *n).collect();
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if path.extension().and_then(|e| e.to_str()) != Some(ext) || !names.contains(stem) {
            stale.push(path.display().to_string());
        }
    }
    stale
}

#[test]
fn samples_have_unique_names_and_cover_every_event_kind() {
    let all = samples::all();
    let names: BTreeSet<&str> = all.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), all.len(), "duplicate sample names");
    let kinds: BTreeSet<EventKind> = all.iter().map(|(_, e)| e.body.kind()).collect();
    for k in EventKind::ALL {
        assert!(
            kinds.contains(&k),
            "no sample (and so no golden fixture) for {k}"
        );
    }
    assert!(
        all.iter().any(|(_, e)| matches!(&e.body,
            EventBody::FileAccessed(f) if !f.file.path.is_utf8())),
        "no non-UTF-8 path among the samples"
    );
    for (name, e) in &all {
        assert_eq!(e.schema, SCHEMA_VERSION, "{name}");
    }
}

#[test]
fn binary_fixtures_v1() {
    assert_eq!(
        SCHEMA_VERSION, 1,
        "new schema version: add fixtures/v{SCHEMA_VERSION}, keep v1"
    );
    let dir = fixture_dir("v1");
    let mut failures = String::new();
    for (name, env) in samples::all() {
        let path = dir.join(format!("{name}.bin"));
        let bytes = codec::encode(&env).unwrap();
        if bless() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let Ok(golden) = std::fs::read(&path) else {
            writeln!(
                failures,
                "{name}: missing {} (run with PORTCULLIS_BLESS=1)",
                path.display()
            )
            .unwrap();
            continue;
        };
        if golden != bytes {
            writeln!(
                failures,
                "{name}: encoding differs from {} (first difference at offset {}, {} vs {} bytes)",
                path.display(),
                first_difference(&golden, &bytes),
                golden.len(),
                bytes.len(),
            )
            .unwrap();
        }
        match codec::decode(&golden) {
            Ok(decoded) if decoded == env => {}
            Ok(decoded) => writeln!(
                failures,
                "{name}: fixture decodes to {decoded:#?}\nexpected {env:#?}"
            )
            .unwrap(),
            Err(e) => writeln!(failures, "{name}: fixture does not decode: {e}").unwrap(),
        }
    }
    if !bless() {
        for stale in stale_fixtures(&dir, "bin") {
            writeln!(failures, "{stale}: fixture without a sample").unwrap();
        }
    }
    assert!(failures.is_empty(), "golden binary fixtures:\n{failures}");
}

#[test]
fn ecs_fixtures() {
    let dir = fixture_dir("ecs");
    let mut failures = String::new();
    for (name, env) in samples::all() {
        let path = dir.join(format!("{name}.json"));
        let doc = ecs::to_ecs(&env);
        if bless() {
            std::fs::create_dir_all(&dir).unwrap();
            let mut text = serde_json::to_string_pretty(&doc).unwrap();
            text.push('\n');
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            writeln!(
                failures,
                "{name}: missing {} (run with PORTCULLIS_BLESS=1)",
                path.display()
            )
            .unwrap();
            continue;
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(golden) if golden == doc => {}
            Ok(_) => writeln!(
                failures,
                "{name}: ECS output differs from {}; now:\n{}",
                path.display(),
                serde_json::to_string_pretty(&doc).unwrap()
            )
            .unwrap(),
            Err(e) => writeln!(failures, "{name}: {} is not JSON: {e}", path.display()).unwrap(),
        }
        // The one-line form is the same document.
        let line: Value = serde_json::from_str(&ecs::to_ecs_line(&env)).unwrap();
        if line != doc {
            writeln!(failures, "{name}: to_ecs_line differs from to_ecs").unwrap();
        }
    }
    if !bless() {
        for stale in stale_fixtures(&dir, "json") {
            writeln!(failures, "{stale}: fixture without a sample").unwrap();
        }
    }
    assert!(failures.is_empty(), "golden ECS fixtures:\n{failures}");
}

// ------------------------------------------------------------- ECS by hand
//
// The fixtures pin everything; these spell out the fields SIEM rules are
// written against, so a re-bless cannot silently change them.

fn ecs_of(name: &str) -> Value {
    ecs::to_ecs(&samples::by_name(name))
}

#[track_caller]
fn at<'a>(doc: &'a Value, pointer: &str) -> &'a Value {
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {doc:#}"))
}

#[test]
fn ecs_common_fields() {
    let env = samples::by_name("decision_allow");
    let doc = ecs::to_ecs(&env);
    assert_eq!(at(&doc, "/@timestamp"), "2025-11-28T20:33:04.142956789Z");
    assert_eq!(at(&doc, "/ecs/version"), ecs::ECS_VERSION);
    assert_eq!(at(&doc, "/host/name"), samples::NODE);
    assert_eq!(
        at(&doc, "/event/id"),
        &Value::from(env.event_id.to_string())
    );
    assert_eq!(at(&doc, "/event/sequence"), 13);
    assert_eq!(at(&doc, "/event/module"), "portcullis");
    assert_eq!(at(&doc, "/event/dataset"), "portcullis.events");
    assert_eq!(
        at(&doc, "/trace/id"),
        &Value::from(hex::encode(env.trace.trace_id))
    );
    // Same trace as the access it is about.
    let access = samples::by_name("file_accessed");
    assert_eq!(env.trace.trace_id, access.trace.trace_id);
    assert_eq!(
        at(&doc, "/portcullis/access_id"),
        &Value::from(access.event_id.to_string())
    );
}

#[test]
fn ecs_infected_verdict_is_an_alert() {
    let doc = ecs_of("verdict_infected");
    assert_eq!(at(&doc, "/event/kind"), "alert");
    assert_eq!(
        at(&doc, "/event/category"),
        &serde_json::json!(["malware", "intrusion_detection", "file"])
    );
    assert_eq!(at(&doc, "/event/action"), "scan");
    assert_eq!(at(&doc, "/event/duration"), 431_000);
    assert_eq!(at(&doc, "/rule/name"), "EICAR_Test_File");
    assert_eq!(at(&doc, "/rule/ruleset"), "default");
    assert_eq!(at(&doc, "/rule/version"), "a1b2c3d4e5f6");
    assert_eq!(
        at(&doc, "/rule/description"),
        "EICAR anti-malware test file"
    );
    assert_eq!(at(&doc, "/rule/author"), "portcullis");
    assert!(
        doc.pointer("/rule/severity").is_none(),
        "only ECS rule fields are lifted"
    );
    assert_eq!(at(&doc, "/file/hash/sha256"), samples::EICAR_SHA256);
    assert_eq!(at(&doc, "/file/size"), 68);
    assert_eq!(at(&doc, "/portcullis/verdict"), "infected");
    assert_eq!(
        at(&doc, "/portcullis/rule_names"),
        &serde_json::json!(["EICAR_Test_File", "Suspicious_PDF"])
    );
    let meta = at(&doc, "/portcullis/matches/0/metadata");
    assert_eq!(at(meta, "/severity"), -3);
    assert_eq!(at(meta, "/score"), 7.25);
    assert_eq!(at(meta, "/is_test"), true);
    assert_eq!(at(meta, "/magic"), "X5O!P%@AP");
    assert_eq!(
        at(&doc, "/portcullis/matches/1/tags"),
        &serde_json::json!([])
    );
}

#[test]
fn ecs_other_verdicts_are_events() {
    for name in [
        "verdict_clean",
        "verdict_skipped_too_large",
        "verdict_skipped_timeout",
        "verdict_skipped_excluded",
        "verdict_error",
    ] {
        assert_eq!(at(&ecs_of(name), "/event/kind"), "event", "{name}");
    }
    let clean = ecs_of("verdict_clean");
    assert_eq!(at(&clean, "/event/outcome"), "success");
    assert_eq!(
        at(&clean, "/file/hash/sha256"),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let big = ecs_of("verdict_skipped_too_large");
    assert_eq!(at(&big, "/event/reason"), "too_large");
    assert_eq!(at(&big, "/portcullis/verdict"), "skipped");
    assert_eq!(at(&big, "/portcullis/unprocessed/limit"), 104_857_600);
    assert!(big.pointer("/file/hash").is_none());
    let error = ecs_of("verdict_error");
    assert_eq!(at(&error, "/event/outcome"), "failure");
    assert_eq!(
        at(&error, "/error/message"),
        "read failed: Input/output error (os error 5)"
    );
}

#[test]
fn ecs_deny_decision_is_a_denied_failure() {
    let doc = ecs_of("decision_deny");
    let types = at(&doc, "/event/type").as_array().unwrap();
    assert!(types.contains(&Value::from("denied")), "{types:?}");
    assert_eq!(at(&doc, "/event/outcome"), "failure");
    assert_eq!(at(&doc, "/event/action"), "deny");
    assert_eq!(at(&doc, "/event/reason"), "verdict");
    assert_eq!(at(&doc, "/event/duration"), 512_000);

    let allow = ecs_of("decision_allow");
    let types = at(&allow, "/event/type").as_array().unwrap();
    assert!(types.contains(&Value::from("allowed")), "{types:?}");
    assert!(!types.contains(&Value::from("denied")), "{types:?}");
    assert_eq!(at(&allow, "/event/outcome"), "success");
    assert_eq!(at(&allow, "/event/reason"), "cache_hit");
}

#[test]
fn ecs_file_access_carries_process_container_and_escaped_path() {
    let doc = ecs_of("file_accessed");
    assert_eq!(at(&doc, "/event/kind"), "event");
    assert_eq!(at(&doc, "/event/category"), &serde_json::json!(["file"]));
    assert_eq!(at(&doc, "/event/action"), "open");
    assert_eq!(at(&doc, "/process/pid"), 31337);
    assert_eq!(at(&doc, "/process/parent/pid"), 1000);
    assert_eq!(at(&doc, "/process/executable"), "/usr/bin/python3.12");
    assert_eq!(at(&doc, "/process/name"), "python3");
    assert_eq!(at(&doc, "/user/id"), "1001");
    assert_eq!(at(&doc, "/group/id"), "1002");
    assert_eq!(at(&doc, "/container/id"), samples::CONTAINER_ID);
    assert_eq!(at(&doc, "/container/runtime"), "containerd");
    // Non-UTF-8 path: escaped text plus the exact bytes in hex.
    assert_eq!(at(&doc, "/file/path"), "/srv/upload/inv\\xffoice.pdf");
    assert_eq!(at(&doc, "/file/name"), "inv\\xffoice.pdf");
    assert_eq!(
        at(&doc, "/file/path_hex"),
        &Value::from(hex::encode(samples::UPLOAD_PATH))
    );
    assert_eq!(at(&doc, "/file/inode"), "1310722");
    assert_eq!(at(&doc, "/file/size"), 68);
    assert_eq!(at(&doc, "/portcullis/policy/name"), "uploads");
    assert_eq!(at(&doc, "/portcullis/blocking"), true);

    let minimal = ecs_of("file_accessed_minimal");
    assert_eq!(at(&minimal, "/event/action"), "close_write");
    assert_eq!(at(&minimal, "/file/path"), "/home/zoë/notes.txt");
    assert_eq!(
        at(&minimal, "/file/mtime"),
        "1969-12-31T23:59:59.999999999Z"
    );
    for absent in [
        "/file/path_hex",
        "/container",
        "/process/executable",
        "/process/name",
        "/portcullis/policy",
    ] {
        assert!(
            minimal.pointer(absent).is_none(),
            "{absent} present in {minimal:#}"
        );
    }
}

#[test]
fn ecs_actions() {
    let removed = ecs_of("action_taken_remove");
    assert_eq!(
        at(&removed, "/event/type"),
        &serde_json::json!(["deletion"])
    );
    assert_eq!(at(&removed, "/event/outcome"), "success");
    assert_eq!(at(&removed, "/portcullis/action/result"), "success");
    assert_eq!(
        at(&removed, "/portcullis/action/quarantine_id"),
        "q-019acc2b587b"
    );
    assert_eq!(
        at(&removed, "/file/path_hex"),
        &Value::from(hex::encode(samples::UPLOAD_PATH))
    );

    let failed = ecs_of("action_taken_terminate_failed");
    assert_eq!(at(&failed, "/event/outcome"), "failure");
    assert_eq!(at(&failed, "/portcullis/action/step"), "second");
    assert_eq!(
        at(&failed, "/portcullis/action/error"),
        "kill: No such process (os error 3)"
    );

    let not_possible = ecs_of("action_taken_disinfect_not_possible");
    assert_eq!(at(&not_possible, "/event/outcome"), "failure");
    assert_eq!(
        at(&not_possible, "/portcullis/action/result"),
        "not_possible"
    );
}

#[test]
fn ecs_lifecycle_and_overflow() {
    let started = ecs_of("agent_started");
    assert_eq!(at(&started, "/event/action"), "agent-started");
    assert_eq!(
        at(&started, "/portcullis/protected"),
        &serde_json::json!(["/srv/www", "/data/caf\\xe9"])
    );
    let stopped = ecs_of("agent_stopped");
    assert_eq!(at(&stopped, "/event/reason"), "SIGTERM");
    let overflow = ecs_of("queue_overflowed");
    assert_eq!(at(&overflow, "/event/outcome"), "failure");
    assert_eq!(at(&overflow, "/event/reason"), "kernel");
    assert_eq!(at(&overflow, "/portcullis/overflow_count"), 17);
}
