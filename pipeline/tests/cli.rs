//! The command-line contract: exit codes, formats and error messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use portcullis_actors::journal::{JournalConfig, JournalStore, Record};
use portcullis_schemas::{
    EventBody, EventId, FilePath, NodeId, RuleMatch, RulesetVersion, Timestamp, Verdict,
    VerdictIssued,
};
use predicates::prelude::*;

const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn portcullis() -> Command {
    let mut c = Command::cargo_bin("portcullis").unwrap();
    c.env("PORTCULLIS_LOG", "error")
        .timeout(std::time::Duration::from_secs(60));
    c
}

fn repo_rules() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

#[test]
fn scan_exit_codes_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/clean.txt"), b"hello").unwrap();
    portcullis()
        .arg("scan")
        .arg(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("clean.txt: clean"));

    std::fs::write(dir.path().join("sub/eicar.com"), EICAR).unwrap();
    portcullis()
        .args(["scan", "--rules"])
        .arg(repo_rules())
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "eicar.com: INFECTED eicar:eicar_test_file",
        ));

    portcullis()
        .arg("scan")
        .arg(dir.path().join("missing"))
        .assert()
        .code(2)
        .stdout(predicate::str::contains("missing: error"));
}

#[test]
fn scan_jsonl_is_one_object_per_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.com"), EICAR).unwrap();
    std::fs::write(dir.path().join("b.txt"), b"fine").unwrap();
    let out = portcullis()
        .args(["scan", "--format", "jsonl"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["verdict"], "infected");
    assert_eq!(lines[0]["rules"][0]["rule"], "eicar_test_file");
    assert_eq!(lines[0]["size"], 68);
    assert_eq!(lines[1]["verdict"], "clean");
    assert_eq!(lines[1]["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn scan_reports_oversized_files_as_unprocessed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big"), vec![0u8; 2 * 1024 * 1024]).unwrap();
    portcullis()
        .args(["scan", "--max-size-mb", "1"])
        .arg(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("big: unprocessed (too_large)"));
}

#[test]
fn rules_check_reports_counts_or_the_failing_file_and_line() {
    portcullis()
        .args(["rules", "check"])
        .arg(repo_rules())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("ok: ").and(predicate::str::contains("eicar.yar")));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.yar"),
        "rule good { condition: true }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.yar"),
        "rule broken {\n  strings:\n    $a = \"x\"\n  condition:\n    $a and nope\n}\n",
    )
    .unwrap();
    portcullis()
        .args(["rules", "check"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("broken.yar:5"));
}

#[test]
fn bad_config_names_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("portcullis.toml");
    std::fs::write(
        &cfg,
        "[enforcer]\ndeadline = \"1s\"\n[scan]\ntimeout = \"5s\"\n",
    )
    .unwrap();
    portcullis()
        .args(["run", "--protect", "/nonexistent", "--config"])
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(cfg.display().to_string())
                .and(predicate::str::contains("scan.timeout")),
        );

    std::fs::write(&cfg, "[scan]\nmode = \"sometimes\"\n").unwrap();
    portcullis()
        .args(["run", "--config"])
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("portcullis.toml").and(predicate::str::contains("line 2")),
        );
}

#[test]
fn run_refuses_to_start_with_nothing_to_protect() {
    portcullis()
        .arg("run")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nothing to protect"));
}

#[test]
fn run_refuses_a_path_that_is_not_a_mount_point() {
    let dir = tempfile::tempdir().unwrap();
    portcullis()
        .args(["run", "--journal"])
        .arg(dir.path().join("journal"))
        .arg("--protect")
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("mount point"));
}

fn journal_with_events(dir: &std::path::Path) -> EventId {
    let mut store = JournalStore::open(&JournalConfig::new(dir, NodeId("node-a".into()))).unwrap();
    let access = EventId::new();
    let verdict = |a: EventId, v: Verdict| {
        EventBody::VerdictIssued(VerdictIssued {
            access: a,
            path: FilePath::from_bytes(&b"/srv/x"[..]),
            verdict: v,
            sha256: Some([3; 32]),
            size: 68,
            ruleset: RulesetVersion("v1".into()),
            scan_duration_us: 12,
        })
    };
    let infected = Verdict::Infected {
        matches: vec![RuleMatch {
            rule: "eicar_test_file".into(),
            namespace: "eicar".into(),
            tags: vec![],
            metadata: vec![],
        }],
    };
    store
        .append_batch(vec![
            Record::new(verdict(EventId::new(), Verdict::Clean)),
            Record::new(verdict(access, infected)),
        ])
        .unwrap();
    access
}

#[test]
fn events_reads_the_journal_as_a_table_or_ecs_jsonl_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let access = journal_with_events(dir.path());
    portcullis()
        .args(["events", "--journal"])
        .arg(dir.path())
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("SEQ")
                .and(predicate::str::contains("INFECTED [eicar:eicar_test_file]")),
        );

    let out = portcullis()
        .args([
            "events",
            "--format",
            "jsonl",
            "--verdict",
            "infected",
            "--journal",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "only the infected verdict's access");
    assert_eq!(lines[0]["portcullis"]["access_id"], access.to_string());
    assert_eq!(lines[0]["event"]["kind"], "alert");
    assert_eq!(lines[0]["host"]["name"], "node-a");

    let future = Timestamp(Timestamp::now().0 + 3_600_000_000_000).to_rfc3339();
    let out = portcullis()
        .args([
            "events",
            "--format",
            "jsonl",
            "--since",
            &future,
            "--journal",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());

    portcullis()
        .args(["events", "--since", "yesterday-ish", "--journal"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("yesterday-ish"));
    portcullis()
        .args(["events", "--journal"])
        .arg(dir.path().join("nope"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope"));
}

#[test]
fn demo_shows_enforce_and_audit_end_to_end() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("\n!!!!!!!! SKIPPED privileged test `demo_shows_enforce_and_audit_end_to_end`: not root !!!!!!!!\n");
        return;
    }
    if let Err(why) = portcullis_interceptor::sandbox::fanotify_permission_available() {
        eprintln!("\n!!!!!!!! SKIPPED privileged test `demo_shows_enforce_and_audit_end_to_end`: {why} !!!!!!!!\n");
        return;
    }
    portcullis().arg("demo").assert().code(0).stdout(
        predicate::str::contains("All demo checks passed")
            .and(predicate::str::contains("Operation not permitted"))
            .and(predicate::str::contains("INFECTED [eicar:eicar_test_file]")),
    );
}

#[test]
fn help_says_what_portcullis_is_for() {
    let out = portcullis()
        .arg("--help")
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(out).unwrap();
    assert!(
        help.starts_with("On-access file threat protection for container nodes."),
        "{help}"
    );
    assert!(!help.contains("Wiring, configuration"), "{help}");
    for needle in [
        "enforce mode",
        "audit mode",
        "--log-format",
        "portcullis demo",
    ] {
        assert!(
            help.contains(needle),
            "`{needle}` missing from --help:\n{help}"
        );
    }
}

#[test]
fn logs_are_plain_text_off_a_terminal_and_json_lines_on_request() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.txt"), b"fine").unwrap();
    let text = portcullis()
        .env("PORTCULLIS_LOG", "info")
        .args(["scan", "--rules"])
        .arg(repo_rules())
        .arg(dir.path())
        .assert()
        .code(0)
        .get_output()
        .stderr
        .clone();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("compiled rules"), "{text}");
    assert!(!text.contains('\u{1b}'), "colours on a pipe: {text:?}");

    let json = portcullis()
        .env("PORTCULLIS_LOG", "info")
        .args(["--log-format", "json", "scan", "--rules"])
        .arg(repo_rules())
        .arg(dir.path())
        .assert()
        .code(0)
        .get_output()
        .stderr
        .clone();
    let json = String::from_utf8(json).unwrap();
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let compiled = lines
        .iter()
        .find(|l| l["fields"]["message"] == "compiled rules")
        .unwrap_or_else(|| panic!("no `compiled rules` line in {json}"));
    assert_eq!(compiled["level"], "INFO");
    assert!(
        compiled["fields"]["rules"].as_u64().unwrap() > 0,
        "{compiled}"
    );
    assert!(compiled["timestamp"].is_string(), "{compiled}");
}

#[test]
fn a_bad_log_filter_is_an_error_naming_the_flag() {
    portcullis()
        .args(["--log", "portcullis=loud", "scan", "/nonexistent"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--log: `portcullis=loud` is not a log filter",
        ));
}
