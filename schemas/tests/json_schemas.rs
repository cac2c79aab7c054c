//! The checked-in JSON Schemas (`schemas/json/*.schema.json`) are the ones
//! the types generate, and every sample's ECS and OCSF output validates
//! against them.
//!
//! After changing an export shape, rewrite the files and review the diff:
//!
//! ```sh
//! PORTCULLIS_BLESS=1 cargo test --release -p portcullis-schemas --test json_schemas
//! ```
#![allow(clippy::unwrap_used)]

mod samples;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use portcullis_schemas::json_schema::{self, export_schemas};
use portcullis_schemas::{ecs, ocsf, EventBody, SourcePosition};
use serde_json::{json, Value};

fn bless() -> bool {
    std::env::var_os("PORTCULLIS_BLESS").is_some_and(|v| v == "1")
}

fn json_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("json")
}

fn validator(file: &str) -> jsonschema::Validator {
    let schema = export_schemas()
        .into_iter()
        .find(|(name, _)| *name == file)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no schema {file}"));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{file} is not a valid schema: {e}"))
}

#[track_caller]
fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not validate:\n{}\n{doc:#}",
        errors.join("\n")
    );
}

/// Only the files `export_schemas()` names are checked: other crates keep
/// the schemas of their own shapes in the same folder (the pipeline's
/// `investigation.schema.json`).
#[test]
fn checked_in_schemas_are_the_generated_ones() {
    let dir = json_dir();
    let mut failures = String::new();
    let generated = export_schemas();
    for (name, schema) in &generated {
        let path = dir.join(name);
        let mut text = serde_json::to_string_pretty(schema).unwrap();
        text.push('\n');
        if bless() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, text).unwrap();
            continue;
        }
        // Compared as JSON values, not text: whether serde_json keeps key
        // order (its `preserve_order` feature) depends on which crates the
        // build unifies features with (`-p portcullis-schemas` or the
        // whole workspace).
        match std::fs::read_to_string(&path) {
            Ok(on_disk)
                if serde_json::from_str::<serde_json::Value>(&on_disk)
                    .ok()
                    .as_ref()
                    == Some(schema) => {}
            Ok(_) => writeln!(
                failures,
                "{} differs from the generated schema",
                path.display()
            )
            .unwrap(),
            Err(e) => writeln!(failures, "{}: {e}", path.display()).unwrap(),
        }
    }
    assert!(
        failures.is_empty(),
        "the JSON Schemas under schemas/json/ are out of date:\n{failures}\
         run PORTCULLIS_BLESS=1 cargo test --release -p portcullis-schemas --test json_schemas \
         and review the diff"
    );
}

#[test]
fn every_schema_is_valid_draft_2020_12() {
    for (name, schema) in export_schemas() {
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

fn sources() -> [Option<SourcePosition>; 3] {
    [
        None,
        Some(SourcePosition::Journal { seq: 42 }),
        Some(SourcePosition::Kafka {
            topic: "portcullis.events.v1".into(),
            partition: 3,
            offset: 1234,
        }),
    ]
}

#[test]
fn every_sample_validates() {
    let ecs_schema = validator(json_schema::ECS);
    let ocsf_any = validator(json_schema::OCSF);
    let file_activity = validator(json_schema::OCSF_FILE_ACTIVITY);
    let finding = validator(json_schema::OCSF_DETECTION_FINDING);
    let mut classes = BTreeSet::new();
    for (name, env) in samples::all() {
        for source in sources() {
            let mut line = Vec::new();
            ecs::write_ecs_line(&env, source.as_ref(), &mut line).unwrap();
            let doc: Value = serde_json::from_slice(&line).unwrap();
            assert_valid(&ecs_schema, &doc, &format!("ECS of {name}"));

            let mut line = Vec::new();
            if !ocsf::write_ocsf_line(&env, source.as_ref(), &mut line).unwrap() {
                assert!(line.is_empty(), "{name}: wrote without a mapping");
                continue;
            }
            let doc: Value = serde_json::from_slice(&line).unwrap();
            assert_valid(&ocsf_any, &doc, &format!("OCSF of {name}"));
            let class = doc["class_uid"].as_u64().unwrap();
            classes.insert(class);
            let (own, other) = match class {
                1001 => (&file_activity, &finding),
                2004 => (&finding, &file_activity),
                c => panic!("{name}: unexpected class {c}"),
            };
            assert_valid(own, &doc, &format!("OCSF of {name}"));
            assert!(!other.is_valid(&doc), "{name} validates as the other class");
        }
    }
    assert_eq!(classes, BTreeSet::from([1001, 2004]));
}

/// A named change that makes a document wrong.
type Mutation = (&'static str, fn(&mut Value));

/// The schemas are tight enough to catch a wrong document.
#[test]
fn the_schemas_reject_what_portcullis_never_writes() {
    let ecs_schema = validator(json_schema::ECS);
    let good = ecs::to_ecs(&samples::by_name("verdict_infected"));
    assert!(ecs_schema.is_valid(&good));
    let mutations: [Mutation; 9] = [
        ("unknown top-level field", |d| d["extra"] = json!(1)),
        ("unknown nested field", |d| {
            d["file"]["owner"] = json!("root")
        }),
        ("missing event.id", |d| {
            d["event"].as_object_mut().unwrap().remove("id");
        }),
        ("null instead of absent", |d| d["error"] = Value::Null),
        ("bad event.kind", |d| d["event"]["kind"] = json!("incident")),
        ("empty event.category", |d| {
            d["event"]["category"] = json!([])
        }),
        ("short sha256", |d| {
            d["file"]["hash"]["sha256"] = json!("abc")
        }),
        ("numeric event kind", |d| d["portcullis"]["kind"] = json!(7)),
        ("bad timestamp", |d| d["@timestamp"] = json!("yesterday")),
    ];
    for (what, mutate) in mutations {
        let mut doc = good.clone();
        mutate(&mut doc);
        assert!(!ecs_schema.is_valid(&doc), "ECS schema accepts {what}");
    }

    let ocsf_schema = validator(json_schema::OCSF);
    let good = ocsf::to_ocsf_value(&samples::by_name("verdict_infected")).unwrap();
    assert!(ocsf_schema.is_valid(&good));
    let mutations: [Mutation; 6] = [
        ("unknown field", |d| d["extra"] = json!(1)),
        ("wrong class_uid", |d| d["class_uid"] = json!(2005)),
        ("type_uid of another activity", |d| {
            d["type_uid"] = json!(200402)
        }),
        ("unknown severity_id", |d| d["severity_id"] = json!(42)),
        ("missing finding_info", |d| {
            d.as_object_mut().unwrap().remove("finding_info");
        }),
        ("wrong OCSF version", |d| {
            d["metadata"]["version"] = json!("1.1.0")
        }),
    ];
    for (what, mutate) in mutations {
        let mut doc = good.clone();
        mutate(&mut doc);
        assert!(!ocsf_schema.is_valid(&doc), "OCSF schema accepts {what}");
    }
}

#[test]
fn source_position_schema_matches_its_json() {
    let v = validator(json_schema::SOURCE_POSITION);
    for p in sources().into_iter().flatten() {
        assert_valid(&v, &serde_json::to_value(&p).unwrap(), &p.to_string());
    }
    assert!(!v.is_valid(&json!({"journal": {"seq": 1}, "kafka": {}})));
    assert!(!v.is_valid(&json!({"journal": {"seq": -1}})));
    assert!(!v.is_valid(&json!({"journal": {}})));
}

/// Only the events the OCSF module documents are mapped.
#[test]
fn ocsf_maps_exactly_the_documented_events() {
    for (name, env) in samples::all() {
        let mapped = ocsf::to_ocsf(&env, None).is_some();
        let want = match &env.body {
            EventBody::FileAccessed(_) | EventBody::ActionTaken(_) => true,
            EventBody::VerdictIssued(v) => v.verdict.matches().is_some(),
            _ => false,
        };
        assert_eq!(mapped, want, "{name}");
    }
}
