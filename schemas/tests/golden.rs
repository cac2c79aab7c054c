//! Golden fixtures: the deterministic samples (`samples/mod.rs`) encoded
//! with the binary codec (`fixtures/v2/<name>.bin`; the frozen
//! `fixtures/v1/` must still decode) and rendered as ECS
//! JSON (`fixtures/ecs/<name>.json`), OCSF JSON (`fixtures/ocsf/<name>.json`,
//! `null` for an event with no OCSF mapping) and CEF
//! (`fixtures/cef/<name>.cef`).
//!
//! The OCSF and CEF fixtures are rendered with a source position (the
//! journal's, a Kafka one for `file_accessed_escapes`), and carry the crate
//! version (OCSF `metadata.product.version`, the CEF header): a version bump
//! re-blesses them.
//!
//! The binary fixtures pin the wire format of schema version 2: a change
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

use portcullis_schemas::{cef, codec, ecs, ocsf, *};
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

/// Schema version 1 is frozen: its fixtures are never re-blessed. Each
/// must still decode, upgraded to the current types, to its sample.
#[test]
fn binary_fixtures_v1_still_decode_upgraded() {
    let dir = fixture_dir("v1");
    let samples = samples::all();
    let mut failures = String::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap()
            .to_owned();
        let Some((_, env)) = samples.iter().find(|(n, _)| *n == name) else {
            writeln!(failures, "{}: fixture without a sample", path.display()).unwrap();
            continue;
        };
        let golden = std::fs::read(&path).unwrap();
        assert_eq!(codec::peek_version(&golden).unwrap(), 1, "{name}");
        match codec::decode(&golden) {
            Ok(decoded) if &decoded == env => checked += 1,
            Ok(decoded) => writeln!(
                failures,
                "{name}: v1 fixture decodes to {decoded:#?}\nexpected {env:#?}"
            )
            .unwrap(),
            Err(e) => writeln!(failures, "{name}: v1 fixture does not decode: {e}").unwrap(),
        }
    }
    assert!(failures.is_empty(), "v1 fixtures:\n{failures}");
    assert_eq!(checked, 20, "the 20 samples of schema version 1");
}

#[test]
fn binary_fixtures_v2() {
    assert_eq!(
        SCHEMA_VERSION, 2,
        "new schema version: add fixtures/v{SCHEMA_VERSION}, keep v1 and v2"
    );
    let dir = fixture_dir("v2");
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

/// The source position the OCSF and CEF fixtures are rendered with.
fn fixture_source(name: &str, env: &Envelope) -> SourcePosition {
    if name == "file_accessed_escapes" {
        SourcePosition::Kafka {
            topic: "portcullis.events.v1".to_owned(),
            partition: 3,
            offset: 1234,
        }
    } else {
        SourcePosition::Journal { seq: env.seq }
    }
}

/// Compares (or with `PORTCULLIS_BLESS=1` writes) `fixtures/<sub>/<name>.<ext>`
/// for every sample; `same` decides whether the file content matches.
fn text_fixtures(
    sub: &str,
    ext: &str,
    render: impl Fn(&str, &Envelope) -> String,
    same: impl Fn(&str, &str) -> bool,
) {
    let dir = fixture_dir(sub);
    let mut failures = String::new();
    for (name, env) in samples::all() {
        let path = dir.join(format!("{name}.{ext}"));
        let mut text = render(name, &env);
        text.push('\n');
        if bless() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(golden) if same(&golden, &text) => {}
            Ok(_) => writeln!(
                failures,
                "{name}: {sub} output differs from {}; now:\n{text}",
                path.display()
            )
            .unwrap(),
            Err(_) => writeln!(
                failures,
                "{name}: missing {} (run with PORTCULLIS_BLESS=1)",
                path.display()
            )
            .unwrap(),
        }
    }
    if !bless() {
        for stale in stale_fixtures(&dir, ext) {
            writeln!(failures, "{stale}: fixture without a sample").unwrap();
        }
    }
    assert!(failures.is_empty(), "golden {sub} fixtures:\n{failures}");
}

#[test]
fn ocsf_fixtures() {
    text_fixtures(
        "ocsf",
        "json",
        |name, env| {
            let source = fixture_source(name, env);
            let doc = ocsf::to_ocsf(env, Some(&source)).map(|e| serde_json::to_value(e).unwrap());
            // The one-line form is the same document.
            let mut line = Vec::new();
            let mapped = ocsf::write_ocsf_line(env, Some(&source), &mut line).unwrap();
            assert_eq!(mapped, doc.is_some(), "{name}");
            if let Some(doc) = &doc {
                let back: Value = serde_json::from_slice(&line).unwrap();
                assert_eq!(&back, doc, "{name}: write_ocsf_line differs from to_ocsf");
            }
            serde_json::to_string_pretty(&doc.unwrap_or(Value::Null)).unwrap()
        },
        |golden, now| {
            serde_json::from_str::<Value>(golden).ok() == serde_json::from_str::<Value>(now).ok()
        },
    );
}

#[test]
fn cef_fixtures() {
    text_fixtures(
        "cef",
        "cef",
        |name, env| {
            let source = fixture_source(name, env);
            let line = cef::to_cef_line(env, Some(&source), &cef::CefHeader::default());
            let mut written = Vec::new();
            cef::write_cef(env, Some(&source), &cef::CefHeader::default(), &mut written).unwrap();
            assert_eq!(written, line.as_bytes(), "{name}");
            line
        },
        |golden, now| golden == now,
    );
}

// ------------------------------------------------------------- OCSF by hand

fn ocsf_of(name: &str) -> Value {
    ocsf::to_ocsf_value(&samples::by_name(name)).unwrap_or(Value::Null)
}

#[test]
fn ocsf_file_access_is_file_system_activity() {
    let doc = ocsf_of("file_accessed");
    assert_eq!(at(&doc, "/class_uid"), 1001);
    assert_eq!(at(&doc, "/category_uid"), 1);
    assert_eq!(at(&doc, "/activity_id"), 14);
    assert_eq!(at(&doc, "/activity_name"), "Open");
    assert_eq!(at(&doc, "/type_uid"), 100114);
    assert_eq!(at(&doc, "/type_name"), "File System Activity: Open");
    assert_eq!(at(&doc, "/time"), 1_764_361_984_129i64);
    assert_eq!(at(&doc, "/metadata/version"), "1.3.0");
    assert_eq!(at(&doc, "/metadata/sequence"), 4);
    assert_eq!(at(&doc, "/metadata/product/vendor_name"), "portcullis");
    assert_eq!(at(&doc, "/device/hostname"), samples::NODE);
    assert_eq!(at(&doc, "/actor/process/pid"), 31337);
    assert_eq!(at(&doc, "/actor/process/parent_process/pid"), 1000);
    assert_eq!(at(&doc, "/actor/process/user/uid"), "1001");
    assert_eq!(at(&doc, "/actor/process/file/path"), "/usr/bin/python3.12");
    assert_eq!(
        at(&doc, "/actor/process/container/uid"),
        samples::CONTAINER_ID
    );
    assert_eq!(at(&doc, "/file/path"), "/srv/upload/inv\\xffoice.pdf");
    assert_eq!(
        at(&doc, "/unmapped/path_hex"),
        &Value::from(hex::encode(samples::UPLOAD_PATH))
    );
    assert!(doc.pointer("/disposition_id").is_none());

    let exec = ocsf_of("file_accessed_escapes");
    assert_eq!(at(&exec, "/activity_id"), 99);
    assert_eq!(at(&exec, "/activity_name"), "Exec");
    assert_eq!(at(&exec, "/type_uid"), 100199);
    assert_eq!(at(&exec, "/type_name"), "File System Activity: Other");
    let written = ocsf_of("file_accessed_minimal");
    assert_eq!(at(&written, "/activity_id"), 3);
    assert_eq!(at(&written, "/type_uid"), 100103);
}

#[test]
fn ocsf_infected_verdict_is_a_detection_finding() {
    let doc = ocsf_of("verdict_infected");
    let access = samples::by_name("file_accessed");
    assert_eq!(at(&doc, "/class_uid"), 2004);
    assert_eq!(at(&doc, "/category_uid"), 2);
    assert_eq!(at(&doc, "/type_uid"), 200401);
    assert_eq!(at(&doc, "/severity_id"), 4);
    assert_eq!(at(&doc, "/status_id"), 1);
    assert_eq!(at(&doc, "/confidence_id"), 3);
    assert_eq!(at(&doc, "/finding_info/title"), "EICAR_Test_File");
    assert_eq!(at(&doc, "/finding_info/analytic/type_id"), 1);
    assert_eq!(
        at(&doc, "/finding_info/analytic/uid"),
        "default.EICAR_Test_File"
    );
    assert_eq!(
        at(&doc, "/evidences/0/file/hashes/0"),
        &serde_json::json!({"algorithm_id": 3, "algorithm": "SHA-256", "value": samples::EICAR_SHA256})
    );
    assert_eq!(at(&doc, "/malware/1/name"), "Suspicious_PDF");
    assert_eq!(
        at(&doc, "/malware/0/classification_ids"),
        &serde_json::json!([0])
    );
    assert_eq!(
        at(&doc, "/metadata/correlation_uid"),
        &Value::from(access.event_id.to_string())
    );
    for not_mapped in [
        "verdict_clean",
        "verdict_error",
        "verdict_skipped_too_large",
        "decision_deny",
    ] {
        assert_eq!(ocsf_of(not_mapped), Value::Null, "{not_mapped}");
    }
}

#[test]
fn ocsf_actions_carry_the_security_control_outcome() {
    let removed = ocsf_of("action_taken_remove");
    assert_eq!(at(&removed, "/activity_id"), 4);
    assert_eq!(at(&removed, "/action_id"), 2);
    assert_eq!(at(&removed, "/disposition_id"), 3);
    assert_eq!(at(&removed, "/disposition"), "Quarantined");
    assert_eq!(at(&removed, "/status_id"), 1);
    assert_eq!(at(&removed, "/unmapped/quarantine_id"), "q-019acc2b587b");
    let blocked = ocsf_of("action_taken_block");
    assert_eq!(at(&blocked, "/activity_id"), 14);
    assert_eq!(at(&blocked, "/disposition_id"), 2);
    let failed = ocsf_of("action_taken_terminate_failed");
    assert_eq!(at(&failed, "/status_id"), 2);
    assert_eq!(at(&failed, "/disposition_id"), 27);
    assert_eq!(
        at(&failed, "/status_detail"),
        "kill: No such process (os error 3)"
    );
    let not_possible = ocsf_of("action_taken_disinfect_not_possible");
    assert_eq!(at(&not_possible, "/disposition_id"), 13);
    assert_eq!(at(&not_possible, "/activity_name"), "Disinfect");
}

// -------------------------------------------------------------- CEF by hand

fn cef_of(name: &str) -> String {
    cef::to_cef_line(&samples::by_name(name), None, &cef::CefHeader::default())
}

#[test]
fn cef_header_and_signatures() {
    let line = cef_of("verdict_infected");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        line.starts_with(&format!(
            "CEF:0|portcullis|portcullis|{version}|FFTP-001|Malware detected|8|rt="
        )),
        "{line}"
    );
    for (name, id) in [
        ("file_accessed", "FM-001"),
        ("file_accessed_escapes", "FM-002"),
        ("file_accessed_minimal", "FM-003"),
        ("decision_allow", "FM-010"),
        ("decision_deny", "FFTP-002"),
        ("action_taken_block", "FFTP-002"),
        ("action_taken_remove", "FFTP-003"),
        ("action_taken_terminate_failed", "FFTP-005"),
        ("action_taken_disinfect_not_possible", "FFTP-006"),
        ("verdict_error", "FFTP-010"),
        ("verdict_skipped_timeout", "FFTP-011"),
        ("verdict_clean", "FFTP-012"),
        ("agent_started", "PC-001"),
        ("queue_overflowed", "PC-010"),
    ] {
        assert_eq!(cef::signature(&samples::by_name(name)).0, id, "{name}");
        assert!(cef_of(name).contains(&format!("|{id}|")), "{name}");
    }
    // Every signature written is in the documented table.
    for (name, env) in samples::all() {
        let (id, title, severity) = cef::signature(&env);
        assert!(
            cef::SIGNATURES
                .iter()
                .any(|s| (s.id, s.name, s.severity) == (id, title, severity)),
            "{name}: {id} is not in SIGNATURES"
        );
    }
}

#[test]
fn cef_extension_fields() {
    let line = cef_of("file_accessed");
    for field in [
        "rt=1764361984129 ",
        "dvchost=node-a.example.internal ",
        "cn1=4 cn1Label=seq",
        "dpid=31337 spid=1000 duid=1001 ",
        "dproc=/usr/bin/python3.12 ",
        "filePath=/srv/upload/inv\\\\xffoice.pdf fname=inv\\\\xffoice.pdf ",
        "fsize=68 fileId=2049:1310722 ",
        "flexString1=uploads flexString1Label=policy",
    ] {
        assert!(line.contains(field), "no {field:?} in {line}");
    }
    assert!(
        line.ends_with(&format!(
            "flexString2={} flexString2Label=containerId",
            samples::CONTAINER_ID
        )),
        "{line}"
    );
    assert!(
        !line.contains("cs6"),
        "portcullis knows no container names: {line}"
    );

    let infected = cef_of("verdict_infected");
    let hash = format!("fileHash={}", samples::EICAR_SHA256);
    for field in [
        hash.as_str(),
        "cs1=EICAR_Test_File,Suspicious_PDF cs1Label=rule",
        "cs2=a1b2c3d4e5f6 cs2Label=ruleset",
        "cs3=infected cs3Label=verdict",
    ] {
        assert!(infected.contains(field), "no {field:?} in {infected}");
    }
    let deny = cef_of("decision_deny");
    assert!(
        deny.contains("act=deny outcome=failure reason=verdict"),
        "{deny}"
    );

    let escapes = cef_of("file_accessed_escapes");
    assert!(
        !escapes.contains('\n') && !escapes.contains('\r'),
        "{escapes}"
    );
    // The path is not UTF-8, so its `\` was already doubled by
    // FilePath::escaped (and 0xfe written `\xfe`); CEF doubles every
    // backslash again and writes the newline and CR as `\n` and `\r`.
    assert!(
        escapes.contains(r"filePath=/srv/up|load/a\=b\\\\c\nd\re\\xfe\\xc3|f.txt "),
        "{escapes}"
    );
    assert!(escapes.contains(r"dproc=/opt/a|b\=c\\d/run "), "{escapes}");
    assert!(
        escapes.contains(r"flexString1=web|prod\=1\\\nnext flexString1Label=policy"),
        "{escapes}"
    );
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
