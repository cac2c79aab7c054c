//! Property tests of the SIEM encodings, for any envelope: ECS and OCSF
//! lines are JSON that validates against the generated schemas, and CEF
//! lines keep their structure (seven unescaped `|` in the header, no raw
//! line break) with every value recoverable.
#![allow(clippy::unwrap_used)]

mod strategies;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use portcullis_schemas::cef::{self, CefHeader, Field};
use portcullis_schemas::json_schema::{self, export_schemas};
use portcullis_schemas::{ecs, ocsf};
use proptest::prelude::*;
use serde_json::Value;

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

fn validator(file: &'static str) -> &'static jsonschema::Validator {
    static CACHE: OnceLock<BTreeMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        export_schemas()
            .into_iter()
            .map(|(name, schema)| {
                let v = jsonschema::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .unwrap();
                (name, v)
            })
            .collect()
    });
    &all[file]
}

fn check(file: &'static str, doc: &Value) -> Result<(), TestCaseError> {
    let errors: Vec<String> = validator(file)
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    prop_assert!(errors.is_empty(), "{file}: {errors:?}\n{doc:#}");
    Ok(())
}

/// Splits a CEF line into its 7 header fields (unescaped) and the
/// extension, or says why it cannot.
fn split_cef(line: &str) -> Result<(Vec<String>, &str), String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('\\' | '|'))) => field.push(e),
                other => return Err(format!("bad header escape {other:?} at {i}")),
            },
            '|' => {
                fields.push(std::mem::take(&mut field));
                if fields.len() == 7 {
                    return Ok((fields, &line[i + 1..]));
                }
            }
            c => field.push(c),
        }
    }
    Err(format!("only {} unescaped | in {line:?}", fields.len()))
}

fn unescape_value(v: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('=') => out.push('='),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            other => return Err(format!("bad extension escape {other:?} in {v:?}")),
        }
    }
    Ok(out)
}

/// `key=value` pairs of an extension, values unescaped. A key is the word
/// before an unescaped `=`; a value runs to the space before the next key.
fn parse_extension(ext: &str) -> Result<Vec<(String, String)>, String> {
    let b = ext.as_bytes();
    let mut eqs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'=' => {
                eqs.push(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    let mut keys = Vec::new(); // (key start, '=' position)
    for &eq in &eqs {
        let start = ext[..eq].rfind(' ').map_or(0, |s| s + 1);
        let key = &ext[start..eq];
        if key.is_empty() || !key.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("unescaped = after {key:?} in {ext:?}"));
        }
        keys.push((start, eq));
    }
    if keys.first().is_some_and(|(s, _)| *s != 0) {
        return Err(format!("extension does not start with a key: {ext:?}"));
    }
    let mut pairs = Vec::new();
    for (n, &(start, eq)) in keys.iter().enumerate() {
        let end = keys.get(n + 1).map_or(ext.len(), |(next, _)| next - 1);
        pairs.push((
            ext[start..eq].to_owned(),
            unescape_value(&ext[eq + 1..end])?,
        ));
    }
    Ok(pairs)
}

fn header() -> impl Strategy<Value = CefHeader> {
    (strategies::text(), strategies::text(), strategies::text()).prop_map(
        |(vendor, product, version)| CefHeader {
            vendor,
            product,
            version,
        },
    )
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn ecs_lines_validate(env in strategies::envelope(), source in strategies::source_position()) {
        let mut line = Vec::new();
        ecs::write_ecs_line(&env, source.as_ref(), &mut line).unwrap();
        prop_assert!(!line.contains(&b'\n'));
        let doc: Value = serde_json::from_slice(&line).unwrap();
        check(json_schema::ECS, &doc)?;
        let want = source.as_ref().map(|s| serde_json::to_value(s).unwrap());
        prop_assert_eq!(doc.pointer("/portcullis/source"), want.as_ref());
        prop_assert_eq!(doc.pointer("/event/sequence").and_then(Value::as_u64), Some(env.seq));
    }

    #[test]
    fn ocsf_lines_validate(env in strategies::envelope(), source in strategies::source_position()) {
        let mut line = Vec::new();
        let mapped = ocsf::write_ocsf_line(&env, source.as_ref(), &mut line).unwrap();
        prop_assert_eq!(mapped, ocsf::to_ocsf(&env, None).is_some());
        if !mapped {
            prop_assert!(line.is_empty());
            return Ok(());
        }
        prop_assert!(!line.contains(&b'\n'));
        let doc: Value = serde_json::from_slice(&line).unwrap();
        check(json_schema::OCSF, &doc)?;
        let class = doc["class_uid"].as_u64().unwrap();
        let activity = doc["activity_id"].as_u64().unwrap();
        prop_assert_eq!(doc["type_uid"].as_u64(), Some(class * 100 + activity));
        check(
            if class == 1001 { json_schema::OCSF_FILE_ACTIVITY } else { json_schema::OCSF_DETECTION_FINDING },
            &doc,
        )?;
        let want = source.as_ref().map(|s| serde_json::to_value(s).unwrap());
        prop_assert_eq!(doc.pointer("/unmapped/source"), want.as_ref());
        prop_assert_eq!(doc.pointer("/metadata/sequence").and_then(Value::as_u64), Some(env.seq));
        let uid = env.event_id.to_string();
        prop_assert_eq!(doc.pointer("/metadata/uid").and_then(Value::as_str), Some(uid.as_str()));
    }

    #[test]
    fn cef_lines_keep_their_structure(
        env in strategies::envelope(),
        source in strategies::source_position(),
        header in header(),
    ) {
        let line = cef::to_cef_line(&env, source.as_ref(), &header);
        prop_assert!(!line.contains(['\n', '\r']), "raw line break in {:?}", line);
        let (fields, ext) = split_cef(&line).map_err(TestCaseError::fail)?;
        let (id, name, severity) = cef::signature(&env);
        let flat = |s: &str| s.replace(['\n', '\r'], " ");
        prop_assert_eq!(&fields[0], "CEF:0");
        prop_assert_eq!(&fields[1], &flat(&header.vendor));
        prop_assert_eq!(&fields[2], &flat(&header.product));
        prop_assert_eq!(&fields[3], &flat(&header.version));
        prop_assert_eq!(&fields[4], id);
        prop_assert_eq!(&fields[5], name);
        prop_assert_eq!(&fields[6], &severity.to_string());

        let pairs = parse_extension(ext).map_err(TestCaseError::fail)?;
        let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let (id, seq, rt) = (
            env.event_id.to_string(),
            env.seq.to_string(),
            env.timestamp.0.div_euclid(1_000_000).to_string(),
        );
        prop_assert_eq!(get("externalId"), Some(id.as_str()));
        prop_assert_eq!(get("cn1"), Some(seq.as_str()));
        prop_assert_eq!(get("rt"), Some(rt.as_str()));
        if !env.node_id.0.is_empty() {
            prop_assert_eq!(get("dvchost"), Some(env.node_id.0.as_str()));
        }
        let want = source.as_ref().map(ToString::to_string);
        prop_assert_eq!(get("cs5"), want.as_deref());
        if let Some(path) = env.body.path() {
            let text = path.escaped();
            if !text.is_empty() {
                prop_assert_eq!(get("filePath"), Some(text.as_str()));
            }
        }
        // Every key is written once.
        let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        prop_assert_eq!(before, keys.len(), "duplicate keys in {}", line);
    }

    #[test]
    fn cef_escapes_round_trip(s in strategies::text()) {
        let ext = cef::escape(&s, Field::Extension);
        prop_assert!(!ext.contains(['\n', '\r']));
        prop_assert_eq!(unescape_value(&ext).map_err(TestCaseError::fail)?, s.clone());
        let head = cef::escape(&s, Field::Header);
        prop_assert!(!head.contains(['\n', '\r']));
        let line = format!("{head}|{head}|{head}|{head}|{head}|{head}|{head}|x");
        let (fields, rest) = split_cef(&line).map_err(TestCaseError::fail)?;
        prop_assert_eq!(rest, "x");
        prop_assert_eq!(&fields[3], &s.replace(['\n', '\r'], " "));
    }
}

#[test]
fn the_cef_parser_in_this_test_finds_what_it_should() {
    let (fields, ext) = split_cef(r"CEF:0|a\|b|c\\|1|FM-001|n|1|k=v\=w x y=a\\b\nc").unwrap();
    assert_eq!(fields[1], "a|b");
    assert_eq!(fields[2], "c\\");
    let pairs = parse_extension(ext).unwrap();
    assert_eq!(
        pairs,
        vec![
            ("k".to_owned(), "v=w x".to_owned()),
            ("y".to_owned(), "a\\b\nc".to_owned())
        ]
    );
    assert!(split_cef("CEF:0|a|b").is_err());
    assert!(parse_extension("k=a=b").is_err());
}
