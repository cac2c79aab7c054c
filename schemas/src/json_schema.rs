//! JSON Schemas (draft 2020-12) of the JSON shapes portcullis exports,
//! generated from the Rust types that write them.
//!
//! The files are checked in under `schemas/json/`; the test
//! `schemas/tests/json_schemas.rs` fails when they drift from the types
//! (`PORTCULLIS_BLESS=1 cargo test --release -p portcullis-schemas --test
//! json_schemas` rewrites them) and validates every sample against them.
//!
//! The schemas describe what is *written* (serde's serialize side): a field
//! that is left out when absent is optional, every other field is
//! required, objects are closed (`additionalProperties: false`) and
//! nothing is `null` except a YARA metadata float that is not finite.

use schemars::generate::SchemaSettings;
use schemars::transform::{transform_subschemas, Transform};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value};

use crate::ecs::EcsDocument;
use crate::ocsf::{DetectionFinding, FileActivity, OcsfEvent};
use crate::source::SourcePosition;

/// `schemas/json/ecs.schema.json`: one ECS document ([`crate::ecs`]).
pub const ECS: &str = "ecs.schema.json";
/// `schemas/json/ocsf.schema.json`: any OCSF event portcullis writes
/// (either class; `class_uid` tells which).
pub const OCSF: &str = "ocsf.schema.json";
/// `schemas/json/ocsf-file-activity.schema.json`: OCSF File System
/// Activity (class 1001).
pub const OCSF_FILE_ACTIVITY: &str = "ocsf-file-activity.schema.json";
/// `schemas/json/ocsf-detection-finding.schema.json`: OCSF Detection
/// Finding (class 2004).
pub const OCSF_DETECTION_FINDING: &str = "ocsf-detection-finding.schema.json";
/// `schemas/json/source-position.schema.json`: a [`SourcePosition`].
pub const SOURCE_POSITION: &str = "source-position.schema.json";

/// Every schema, by file name, in a stable order.
pub fn export_schemas() -> Vec<(&'static str, Value)> {
    vec![
        (ECS, schema_value::<EcsDocument<'static>>()),
        (OCSF, schema_value::<OcsfEvent<'static>>()),
        (OCSF_FILE_ACTIVITY, schema_value::<FileActivity<'static>>()),
        (
            OCSF_DETECTION_FINDING,
            schema_value::<DetectionFinding<'static>>(),
        ),
        (SOURCE_POSITION, schema_value::<SourcePosition>()),
    ]
}

/// The schema of `T` as portcullis generates them (see the module docs).
pub fn schema_value<T: JsonSchema>() -> Value {
    generator().into_root_schema_for::<T>().to_value()
}

/// A generator with portcullis's settings: draft 2020-12, describing the
/// serialized form, with `null` taken out of optional fields.
pub fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .for_serialize()
        .with_transform(NoNull)
        .into_generator()
}

/// Optional fields are left out when absent, never written as `null`, so
/// the `null` that schemars allows for every `Option` is taken out again.
#[derive(Clone, Copy, Debug)]
struct NoNull;

fn is_null_type(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && o.get("type") == Some(&Value::from("null")))
}

impl Transform for NoNull {
    fn transform(&mut self, schema: &mut Schema) {
        if let Some(obj) = schema.as_object_mut() {
            // {"type": ["string", "null"]} -> {"type": "string"}
            if let Some(Value::Array(types)) = obj.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    obj.insert("type".into(), only);
                }
            }
            // {"enum": [..., null]} -> {"enum": [...]}
            if let Some(Value::Array(values)) = obj.get_mut("enum") {
                values.retain(|v| !v.is_null());
            }
            // {"anyOf": [X, {"type": "null"}], ...} -> {...X, ...}
            let wrapped = obj
                .get("anyOf")
                .and_then(Value::as_array)
                .is_some_and(|a| a.len() == 2 && a.iter().any(is_null_type));
            if wrapped {
                if let Some(Value::Array(any_of)) = obj.remove("anyOf") {
                    if let Some(Value::Object(inner)) =
                        any_of.into_iter().find(|v| !is_null_type(v))
                    {
                        let outer: Map<String, Value> = std::mem::take(obj);
                        *obj = inner;
                        obj.extend(outer);
                    }
                }
            }
        }
        transform_subschemas(self, schema);
    }
}
