//! `portcullis replay` and `portcullis investigate`: journals at rest,
//! exports, a live agent's journal (through its export socket), a journal
//! copied from a `kill -9`-ed agent, and the Kafka events topic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command as AssertCommand;
use portcullis_actors::journal::export;
use portcullis_actors::journal::{JournalConfig, JournalStore, Record};
use portcullis_pipeline::forensics::investigate::Investigation;
use portcullis_schemas::{
    codec, AccessKind, ContainerChange, ContainerObserved, ContainerRef, ContainerRuntime,
    Decision, DecisionMade, DecisionReason, EventBody, EventId, FileAccessed, FileInfo, FilePath,
    Mode, NodeId, ProcessInfo, RuleMatch, RulesetVersion, Timestamp, TraceContext, Verdict,
    VerdictIssued,
};
use predicates::prelude::PredicateBooleanExt as _;
use serde_json::Value;

use common::*;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

fn portcullis() -> AssertCommand {
    let mut c = AssertCommand::new(bin());
    c.timeout(Duration::from_secs(60));
    c
}

/// `portcullis replay ARGS --journal DIR`.
fn replay_journal(dir: &Path, args: &[&str]) -> std::process::Output {
    portcullis()
        .arg("replay")
        .args(args)
        .arg("--journal")
        .arg(dir)
        .output()
        .unwrap()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One access's story: access, verdict, decision.
fn story(container: Option<&str>, pid: u32, path: &str, infected: bool) -> Vec<EventBody> {
    let access = EventId::new();
    let verdict = if infected {
        Verdict::Infected {
            matches: vec![RuleMatch {
                rule: "eicar_test_file".into(),
                namespace: "eicar".into(),
                tags: vec![],
                metadata: vec![],
            }],
        }
    } else {
        Verdict::Clean
    };
    // The access must be journaled under the id the later events name
    // (see write_journal).
    vec![
        EventBody::FileAccessed(FileAccessed {
            kind: AccessKind::Open,
            file: FileInfo {
                path: FilePath::from_bytes(path.as_bytes()),
                size: 68,
                ..FileInfo::default()
            },
            process: ProcessInfo {
                pid,
                ppid: 1,
                command: Some("cat".into()),
                ..ProcessInfo::default()
            },
            container: container.map(|id| ContainerRef::new(ContainerRuntime::Docker, id)),
            interceptor_mode: Mode::Enforce,
            policy: None,
            blocking: true,
        }),
        EventBody::VerdictIssued(VerdictIssued {
            access,
            path: FilePath::from_bytes(path.as_bytes()),
            verdict,
            sha256: Some([9; 32]),
            size: 68,
            ruleset: RulesetVersion("r1".into()),
            scan_duration_us: 10,
        }),
        EventBody::DecisionMade(DecisionMade {
            access,
            decision: if infected {
                Decision::Deny
            } else {
                Decision::Allow
            },
            reason: DecisionReason::Verdict,
            latency_us: 50,
        }),
    ]
}

/// Appends stories; each access is journaled with the id its verdict and
/// decision name. Returns the verdict ids of the infected stories.
fn write_journal(
    dir: &Path,
    node: &str,
    stories: &[(Option<&str>, u32, &str, bool)],
) -> Vec<EventId> {
    let mut store = JournalStore::open(&JournalConfig::new(dir, NodeId(node.into()))).unwrap();
    let mut infected = vec![];
    for &(container, pid, path, bad) in stories {
        let bodies = story(container, pid, path, bad);
        let access = bodies[1].access_id().unwrap();
        let mut records = vec![Record {
            event_id: access,
            timestamp: Timestamp::now(),
            trace: TraceContext::root_for(&access),
            body: bodies[0].clone(),
        }];
        records.extend(bodies[1..].iter().cloned().map(Record::new));
        let stored = store.append_batch(records).unwrap();
        if bad {
            infected.push(stored[1].event_id);
        }
    }
    infected
}

fn lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn validator(schema_file: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/json").join(schema_file)).unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn the_investigation_schema_is_generated_from_the_types_and_checked_in() {
    let generated =
        serde_json::to_string_pretty(&schemars::schema_for!(Investigation)).unwrap() + "\n";
    let path = repo().join("schemas/json/investigation.schema.json");
    if std::env::var_os("PORTCULLIS_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    // As JSON values: key order depends on serde_json's features, which
    // depend on what the build unifies (one package or the workspace).
    let parse = |t: &str| serde_json::from_str::<Value>(t).ok();
    assert!(
        parse(&checked_in).is_some() && parse(&checked_in) == parse(&generated),
        "{} differs from the Investigation type; run PORTCULLIS_BLESS=1 cargo test --release -p portcullis-pipeline --test forensics",
        path.display()
    );
}

#[test]
fn replay_filters_and_formats_a_journal_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(
        dir.path(),
        "node-a",
        &[
            (Some("c0ffee"), 10, "/srv/a.txt", false),
            (Some("c0ffee"), 11, "/srv/evil|x=1\\.com", true),
            (None, 12, "/etc/hosts", false),
        ],
    );
    // ECS: every record, each with its journal seq.
    let out = replay_journal(dir.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = lines(&out.stdout);
    assert_eq!(all.len(), 9);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(
            e["portcullis"]["source"]["journal"]["seq"],
            i as u64 + 1,
            "{e}"
        );
    }
    let ecs = validator("ecs.schema.json");
    for e in &all {
        assert!(ecs.is_valid(e), "{e}");
    }

    // --container keeps the accesses of the container and what followed.
    let out = replay_journal(dir.path(), &["--container", "c0f"]);
    assert_eq!(lines(&out.stdout).len(), 6);
    // --verdict/--rule keep the verdict and the decision after it.
    let out = replay_journal(dir.path(), &["--verdict", "infected", "--rule", "eicar_*"]);
    let kept = lines(&out.stdout);
    assert_eq!(
        kept.iter()
            .map(|e| e["portcullis"]["kind"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["verdict_issued", "decision_made"]
    );
    // --pid, --path (glob), --kind.
    let out = replay_journal(dir.path(), &["--pid", "12", "--kind", "decision_made"]);
    assert_eq!(lines(&out.stdout).len(), 1);
    let out = replay_journal(dir.path(), &["--path", "/srv/*.txt"]);
    assert_eq!(lines(&out.stdout).len(), 3);
    // --from in the future: nothing.
    let out = replay_journal(dir.path(), &["--from", "2999-01-01T00:00:00Z"]);
    assert!(out.status.success() && out.stdout.is_empty());

    // OCSF: accesses and decisions as File System Activity, the infected
    // verdict as a Detection Finding.
    let out = replay_journal(dir.path(), &["--format", "ocsf"]);
    assert!(out.status.success());
    let ocsf = lines(&out.stdout);
    assert!(ocsf.iter().any(|e| e["class_uid"] == 2004), "{ocsf:?}");
    assert!(ocsf.iter().any(|e| e["class_uid"] == 1001), "{ocsf:?}");

    // CEF: escaped, one line per event, positions in cs5.
    let out = replay_journal(dir.path(), &["--format", "cef", "--verdict", "infected"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("CEF:0|portcullis|portcullis|"), "{first}");
    assert!(first.contains("|FFTP-"), "{first}");
    assert!(first.contains("evil|x\\=1\\\\.com"), "{first}");

    // Progress on stderr only when asked for (stderr is not a terminal
    // here): the first line and the last, with the total.
    let out = replay_journal(dir.path(), &["--progress"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("progress: journal"), "{err}");
    assert!(err.contains("9/9 records"), "{err}");
    let out = replay_journal(dir.path(), &[]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("progress:"));

    // The table names the kinds.
    portcullis()
        .args(["replay", "--format", "table", "--journal"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicates::str::contains("verdict_issued"));

    // Bad filters name the flag.
    portcullis()
        .args(["replay", "--verdict", "sus", "--journal"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--verdict"));
    portcullis()
        .args(["replay", "--path", "[", "--journal"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--path: `[`"));
}

#[test]
fn replay_names_accesses_journaled_before_their_container_was_described() {
    let dir = tempfile::tempdir().unwrap();
    // The access comes first, with the bare id (the runtime answered late).
    write_journal(
        dir.path(),
        "node-a",
        &[(Some("late1"), 10, "/data/x", true)],
    );
    let mut described = ContainerRef::new(ContainerRuntime::Docker, "late1");
    described.name = Some("billing".into());
    described.image = Some("registry.example/billing:2".into());
    let mut store =
        JournalStore::open(&JournalConfig::new(dir.path(), NodeId("node-a".into()))).unwrap();
    store
        .append_batch(vec![Record::new(EventBody::ContainerObserved(
            ContainerObserved {
                container: described,
                change: ContainerChange::Described,
                labels: vec![],
            },
        ))])
        .unwrap();
    drop(store);

    for args in [
        &["--container-name", "billing", "--kind", "file_accessed"][..],
        &["--image", "registry.example/*", "--kind", "file_accessed"][..],
    ] {
        let out = replay_journal(dir.path(), args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = lines(&out.stdout);
        assert_eq!(got.len(), 1, "{args:?}: the earlier access is selected");
        assert_eq!(got[0]["container"]["id"], "late1");
        assert_eq!(
            got[0]["container"]["name"], "billing",
            "and shown with the name"
        );
        assert_eq!(
            got[0]["container"]["image"]["name"],
            "registry.example/billing:2"
        );
    }
    let out = replay_journal(dir.path(), &["--container-name", "other"]);
    assert!(out.status.success() && out.stdout.is_empty());
}

#[test]
fn exports_round_trip_and_verify_finds_gaps_duplicates_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(
        dir.path(),
        "node-b",
        &[(None, 5, "/a", false), (None, 6, "/b", true)],
    );
    let file = dir.path().join("b.export");
    portcullis()
        .args(["replay", "--format", "export", "-o"])
        .arg(&file)
        .arg("--journal")
        .arg(dir.path())
        .assert()
        .success();
    // The export replays exactly like the journal.
    let from_journal = replay_journal(dir.path(), &[]);
    let from_export = portcullis()
        .args(["replay", "--export"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(from_export.status.success());
    assert_eq!(from_journal.stdout, from_export.stdout);
    portcullis()
        .args(["replay", "--verify", "--export"])
        .arg(&file)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "node node-b: 6 records, seq 1..=6: OK",
        ));

    // A damaged export: seq 3 lost, seq 5 twice, garbage at seq 7.
    let store = JournalStore::open_existing(dir.path()).unwrap();
    let raw = store.reader().raw_from(1, 100).unwrap();
    drop(store);
    let mut buf = vec![];
    export::write_header(
        &mut buf,
        &export::ExportHeader {
            node_id: NodeId("node-b".into()),
            from_seq: 1,
            last_seq: 7,
        },
    )
    .unwrap();
    for (seq, bytes) in raw.iter().filter(|(s, _)| *s != 3) {
        export::write_record(&mut buf, *seq, bytes).unwrap();
        if *seq == 5 {
            export::write_record(&mut buf, *seq, bytes).unwrap();
        }
    }
    export::write_record(&mut buf, 7, b"PC\x00\x01garbage").unwrap();
    export::write_end(&mut buf).unwrap();
    let damaged = dir.path().join("damaged.export");
    std::fs::write(&damaged, &buf).unwrap();
    let out = portcullis()
        .args(["replay", "--verify", "--export"])
        .arg(&damaged)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("gap: seq 3"), "{report}");
    assert!(report.contains("duplicate seqs: 1"), "{report}");
    assert!(report.contains("undecodable records: 1"), "{report}");
    assert!(report.contains("journal:seq=7"), "{report}");

    // A cut export is an error naming the file and offset; nothing replays
    // silently short.
    let cut = dir.path().join("cut.export");
    std::fs::write(&cut, &buf[..buf.len() - 20]).unwrap();
    portcullis()
        .args(["replay", "--export"])
        .arg(&cut)
        .assert()
        .code(2)
        .stderr(
            predicates::str::contains("cut.export").and(predicates::str::contains("cut short")),
        );
    portcullis()
        .args(["replay", "--follow", "--export"])
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--follow"));
}

#[test]
fn investigate_a_journal_at_rest_as_text_json_and_html() {
    let dir = tempfile::tempdir().unwrap();
    let infected = write_journal(
        dir.path(),
        "node-c",
        &[
            (Some("beef01"), 20, "/app/run.sh", false),
            (Some("beef01"), 21, "/app/payload.bin", true),
            (Some("other9"), 30, "/srv/unrelated", false),
        ],
    );
    let id = infected[0].to_string();
    let out = portcullis()
        .args(["investigate", &id, "--format", "json", "--journal"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inv: Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema = validator("investigation.schema.json");
    assert!(schema.is_valid(&inv), "{inv:#}");
    assert_eq!(inv["scope"]["kind"], "container");
    assert_eq!(inv["scope"]["container_id"], "beef01");
    assert_eq!(inv["detection"]["verdict"], "infected");
    assert_eq!(inv["detection"]["decision"], "deny (verdict)");
    assert_eq!(inv["summary"]["accesses"], 2);
    let paths: Vec<&str> = inv["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"/app/run.sh") && !paths.contains(&"/srv/unrelated"),
        "{paths:?}"
    );

    portcullis()
        .args(["investigate", &id, "--journal"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicates::str::contains("INFECTED").and(predicates::str::contains("▶")));
    let html = dir.path().join("report.html");
    portcullis()
        .args(["investigate", &id, "--format", "html", "-o"])
        .arg(&html)
        .arg("--journal")
        .arg(dir.path())
        .assert()
        .success();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("/app/payload.bin"));
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("src="));

    portcullis()
        .args(["investigate", &EventId::new().to_string(), "--journal"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains("is not in journal"));
    portcullis()
        .args(["investigate", "not-a-uuid", "--journal"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains("EVENT_ID"));
}

/// The real agent: replay its journal while it runs (a snapshot and a
/// follow stream, through the export socket), then `kill -9` it, copy the
/// journal, and replay/verify/investigate the copy; the stale socket left
/// behind must not stop a replay of the original.
#[test]
fn live_journal_follow_and_a_journal_copied_after_kill_9() {
    require_privileges!("live_journal_follow_and_a_journal_copied_after_kill_9");
    let keep = tempfile::tempdir().unwrap();
    let copy = keep.path().join("copy");
    let follow_out = keep.path().join("follow.jsonl");
    let journal_file = keep.path().join("journal-dir");
    let script = format!(
        r#"
echo "$WORK/journal" > {journal_file}
( cat clean.txt > /dev/null; cat eicar.com > /dev/null 2>&1; cat other.txt > /dev/null )
wait_hook
cat late.txt > /dev/null
sleep 1
kill -9 $AGENT; wait $AGENT 2>/dev/null
cp -a "$WORK/journal" {copy}
try verify_stale {bin} replay --verify --journal "$WORK/journal"
rm -f "$WORK/ready"
{bin} --log info run --config "$WORK/config.toml" --protect "$MNT" --journal "$WORK/journal" --ready-file "$WORK/ready" 2>> "$WORK/agent.log" &
AGENT=$!
for _ in $(seq 1 200); do [ -f "$WORK/ready" ] && break; sleep 0.05; done
"#,
        journal_file = journal_file.display(),
        copy = copy.display(),
        bin = bin(),
    );
    let (jf, fo) = (journal_file.clone(), follow_out.clone());
    let follower = std::sync::Arc::new(std::sync::Mutex::new(None));
    let f2 = follower.clone();
    let hook = Box::new(move || {
        let t = Instant::now();
        while !jf.exists() && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let journal = std::fs::read_to_string(&jf).unwrap().trim().to_string();
        // A snapshot while the agent holds the database: wait until the
        // infected verdict is in it.
        let t = Instant::now();
        loop {
            let out = Command::new(bin())
                .args(["replay", "--verdict", "infected", "--journal", &journal])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stderr).contains("running agent"));
            if !out.stdout.is_empty() {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "no verdict in the live journal"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let child = Command::new(bin())
            .args(["replay", "--follow", "--journal", &journal])
            .stdout(std::fs::File::create(&fo).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Let it catch up before the script goes on.
        std::thread::sleep(Duration::from_millis(500));
        *f2.lock().unwrap() = Some(child);
    });
    let o = scenario_with_hook(
        "",
        "",
        r#"echo hello > clean.txt; echo other > other.txt; echo late > late.txt; printf '%s' "$EICAR" > eicar.com"#,
        &script,
        Some(hook),
    );
    // The follow stream saw events written after it started, and ended
    // when the agent died.
    let mut child = follower.lock().unwrap().take().unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let followed = std::fs::read_to_string(&follow_out).unwrap();
    assert!(
        followed.contains("late.txt"),
        "follow missed the late access:\n{followed}"
    );
    assert!(followed.contains("eicar.com"));

    assert_eq!(o.status("verify_stale"), 0, "{}", o.stderr("verify_stale"));
    portcullis()
        .args(["replay", "--verify", "--journal"])
        .arg(&copy)
        .assert()
        .success()
        .stdout(predicates::str::contains(": OK"));
    // Investigate the detection in the copy: the sibling accesses of the
    // same subshell are in its process tree.
    let verdict = o
        .of_kind("verdict_issued")
        .into_iter()
        .find(|v| v["portcullis"]["verdict"] == "infected")
        .unwrap()["event"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = portcullis()
        .args(["investigate", &verdict, "--format", "json", "--journal"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inv: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inv["scope"]["kind"], "process_tree");
    assert_eq!(inv["detection"]["rules"][0], "eicar_test_file");
    assert_eq!(inv["detection"]["decision"], "deny (verdict)");
    let paths: Vec<&str> = inv["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("/clean.txt"))
            && paths.iter().any(|p| p.ends_with("/other.txt")),
        "the subshell's other accesses are adjacent events: {paths:?}"
    );
    // Decoding the copy directly agrees with the replay.
    let store = JournalStore::open_existing(&copy).unwrap();
    let n = store.reader().raw_from(1, 1 << 20).unwrap().len();
    assert!(n >= 10, "{n}");
    for (_, bytes) in store.reader().raw_from(1, 1 << 20).unwrap() {
        codec::decode(&bytes).unwrap();
    }
}

/// Replay and investigate from the Kafka events topic: per-partition time
/// windows, node filters, positions, and `--verify` finding a lost record,
/// a duplicate and garbage.
#[test]
fn replay_and_investigate_from_the_kafka_events_topic() {
    let Some(bootstrap) = kafka_bootstrap("replay_and_investigate_from_the_kafka_events_topic")
    else {
        return;
    };
    use portcullis_pipeline::config::{ConfigFile, Overrides};
    use portcullis_pipeline::kafka::{ensure_topics, idempotent_producer, Topic};
    use rdkafka::producer::FutureRecord;

    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    let cfg = dir.path().join("kafka.toml");
    std::fs::write(
        &cfg,
        format!("[kafka]\nbootstrap = \"{bootstrap}\"\ntopic_prefix = \"{prefix}\"\n[kafka.partitions]\nevents = 2\n"),
    )
    .unwrap();
    let kafka = ConfigFile::load(&cfg)
        .unwrap()
        .build("kafka.toml", Overrides::default())
        .unwrap()
        .kafka
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(ensure_topics(&kafka)).unwrap();

    // node-k1: now; node-k2: two hours ago.
    let k1 = dir.path().join("k1");
    let infected = write_journal(
        &k1,
        "node-k1",
        &[
            (Some("aa11"), 1, "/x/a", false),
            (Some("aa11"), 2, "/x/evil", true),
        ],
    );
    let k2 = dir.path().join("k2");
    {
        let mut store =
            JournalStore::open(&JournalConfig::new(&k2, NodeId("node-k2".into()))).unwrap();
        let old = Timestamp(Timestamp::now().0 - 2 * 3600 * 1_000_000_000);
        let records = story(None, 9, "/old", false)
            .into_iter()
            .map(|b| {
                let mut r = Record::new(b);
                r.timestamp = old;
                r
            })
            .collect();
        store.append_batch(records).unwrap();
    }
    let topic = kafka.topics.name(Topic::Events);
    rt.block_on(async {
        let producer = idempotent_producer(&kafka, "forensics-test").unwrap();
        for (node, dir) in [("node-k1", &k1), ("node-k2", &k2)] {
            let store = JournalStore::open_existing(dir).unwrap();
            for (seq, bytes) in store.reader().raw_from(1, 100).unwrap() {
                if node == "node-k1" && seq == 3 {
                    continue; // lost
                }
                let env = codec::decode(&bytes).unwrap();
                let times = if node == "node-k1" && seq == 2 { 2 } else { 1 };
                for _ in 0..times {
                    producer
                        .send(
                            FutureRecord::to(&topic)
                                .key(node)
                                .payload(&bytes)
                                .timestamp(env.timestamp.0 / 1_000_000),
                            Duration::from_secs(10),
                        )
                        .await
                        .unwrap();
                }
            }
        }
        producer
            .send(
                FutureRecord::to(&topic)
                    .key("node-k1")
                    .payload(&b"definitely not an event"[..]),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    });

    let out = portcullis()
        .args(["replay", "--kafka", "--verify", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("node node-k1: 6 records, seq 1..=6: PROBLEMS"),
        "{report}"
    );
    assert!(report.contains("undecodable records: 1"), "{report}");
    assert!(report.contains("gap: seq 3"), "{report}");
    assert!(report.contains("duplicate seqs: 1"), "{report}");
    assert!(report.contains(&format!("kafka:{topic}/")), "{report}");
    assert!(
        report.contains("node node-k2: 3 records, seq 1..=3: OK"),
        "{report}"
    );

    // The last hour: node-k1 only, each record with its Kafka position.
    let out = portcullis()
        .args(["replay", "--kafka", "--from", "1h", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let recent = lines(&out.stdout);
    assert_eq!(recent.len(), 6, "5 of node-k1's 6 records, one twice");
    for e in &recent {
        assert_eq!(e["host"]["name"], "node-k1");
        assert_eq!(e["portcullis"]["source"]["kafka"]["topic"], topic.as_str());
        assert!(e["portcullis"]["source"]["kafka"]["offset"]
            .as_i64()
            .is_some());
    }
    let out = portcullis()
        .args([
            "replay", "--kafka", "--node", "node-k2", "--to", "1h", "--format", "table", "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.contains(&format!("[kafka:{topic}/")), "{table}");

    let out = portcullis()
        .args([
            "investigate",
            &infected[0].to_string(),
            "--format",
            "json",
            "--kafka",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    // The garbage message is in the window: the report is made, and the
    // exit code says the evidence was not all readable.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("undecodable record"));
    let inv: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inv["detection"]["verdict"], "infected");
    assert_eq!(inv["scope"]["container_id"], "aa11");
    assert!(inv["focus"]["position"]
        .as_str()
        .unwrap()
        .starts_with("kafka:"));

    // --follow keeps tailing the topic: events published after the replay
    // caught up still come out.
    let followed = dir.path().join("followed.jsonl");
    let mut child = Command::new(bin())
        .args([
            "replay", "--kafka", "--follow", "--node", "node-k3", "--config",
        ])
        .arg(&cfg)
        .stdout(std::fs::File::create(&followed).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let k3 = dir.path().join("k3");
    write_journal(&k3, "node-k3", &[(None, 77, "/late/arrival", false)]);
    let store = JournalStore::open_existing(&k3).unwrap();
    let raw = store.reader().raw_from(1, 10).unwrap();
    drop(store);
    rt.block_on(async {
        let producer = idempotent_producer(&kafka, "forensics-follow").unwrap();
        for (_, bytes) in &raw {
            producer
                .send(
                    FutureRecord::to(&topic).key("node-k3").payload(bytes),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    });
    let t = Instant::now();
    let mut seen = String::new();
    while t.elapsed() < Duration::from_secs(30) {
        seen = std::fs::read_to_string(&followed).unwrap_or_default();
        if seen.lines().count() >= raw.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "--follow must keep running"
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen.lines().count(), raw.len(), "{seen}");
    assert!(seen.contains("/late/arrival"), "{seen}");
}
