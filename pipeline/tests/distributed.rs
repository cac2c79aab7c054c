//! Distributed mode against a real Kafka broker (KAFKA_BOOTSTRAP): node
//! agents on private tmpfs mounts, scanner services as separate processes.
//! Every test uses its own topic prefix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kafka_bootstrap as bootstrap;
use common::*;

/// For tests that assert a remote verdict: a deadline far above any
/// scanner's latency on a loaded CI machine, so that the test checks what
/// is decided, not how fast (benchmarks measure that).
const PATIENT: &str = "[scan]\ntimeout = \"10s\"\n[enforcer]\ndeadline = \"15s\"\n";

/// A `[kafka]` section on fresh topics.
fn kafka_config(bootstrap: &str, extra: &str) -> String {
    kafka_config_with_prefix(bootstrap, extra).0
}

fn kafka_config_with_prefix(bootstrap: &str, extra: &str) -> (String, String) {
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    let c = format!(
        "[kafka]\nbootstrap = \"{bootstrap}\"\ntopic_prefix = \"{prefix}\"\n{extra}\n[kafka.partitions]\nscan_requests = 4\nverdicts = 2\nverdict_cache = 2\nevents = 2\n[kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n"
    );
    (c, prefix)
}

/// A running scanner service, stopped (SIGKILL) on drop.
struct Scanner {
    child: Reaped,
    _dir: tempfile::TempDir,
}

fn scanner(config: &str, instance: &str) -> Scanner {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scanner.toml");
    std::fs::write(&cfg, config).unwrap();
    let ready = dir.path().join("ready");
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "--log",
            "info",
            "scanner",
            "--instance",
            instance,
            "--config",
        ])
        .arg(&cfg)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("scanner.log")).unwrap())
        .spawn()
        .unwrap();
    let mut s = Scanner {
        child: Reaped(child),
        _dir: dir,
    };
    let t = Instant::now();
    while !ready.exists() {
        assert!(
            s.child.try_wait().unwrap().is_none(),
            "scanner {instance} exited early"
        );
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "scanner {instance} not ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

#[test]
fn node_and_two_scanners_allow_clean_deny_eicar_and_record_audit() {
    require_privileges!("node_and_two_scanners_allow_clean_deny_eicar_and_record_audit");
    let Some(b) = bootstrap("node_and_two_scanners_allow_clean_deny_eicar_and_record_audit") else {
        return;
    };
    let (config, prefix) = kafka_config_with_prefix(&b, "");
    let config = format!("{PATIENT}{config}");
    let _s1 = scanner(&config, "s1");
    let _s2 = scanner(&config, "s2");
    // Ready means the group has formed: both members, partitions assigned,
    // in the deployment's own group.
    let group = scanner_group(&b, &format!("{prefix}.scanners"));
    assert_eq!(group.0, "Stable", "{group:?}");
    assert_eq!(group.1.len(), 2, "{group:?}");
    let o = scenario(
        &config,
        "",
        r#"echo hello > clean.txt; printf '%s' "$EICAR" > eicar.com"#,
        "try clean cat clean.txt; try eicar cat eicar.com",
    );
    assert_eq!(o.status("clean"), 0, "{}", o.agent_log);
    assert_eq!(o.status("eicar"), 1, "{}", o.agent_log);
    let bad = o.access_id("eicar.com");
    assert_eq!(
        o.decision(&bad)["event"]["reason"],
        "verdict",
        "answered by a remote verdict in time"
    );
    assert_eq!(o.verdict(&bad).unwrap()["rule"]["name"], "eicar_test_file");
    assert!(
        o.agent_log.contains("distributed mode"),
        "the node used the remote scanner:\n{}",
        o.agent_log
    );
    // Reading the shared verdicts to their end is not an error: the
    // end-of-partition events are expected, not logged at ERROR.
    assert!(!o.agent_log.contains("PartitionEOF"), "{}", o.agent_log);

    let o = scenario(
        &config,
        "--mode audit",
        r#"printf '%s' "$EICAR" > eicar2.com"#,
        "try eicar cat eicar2.com; wait_journal --kind verdict_issued --verdict infected",
    );
    assert_eq!(o.status("eicar"), 0);
    let id = o.access_id("eicar2.com");
    assert_eq!(
        o.verdict(&id)
            .unwrap_or_else(|| panic!("not recorded:\n{}", o.agent_log))["portcullis"]["verdict"],
        "infected"
    );
}

#[test]
fn two_deployments_on_one_broker_do_not_disturb_each_other() {
    require_privileges!("two_deployments_on_one_broker_do_not_disturb_each_other");
    let Some(b) = bootstrap("two_deployments_on_one_broker_do_not_disturb_each_other") else {
        return;
    };
    let (east, east_prefix) = kafka_config_with_prefix(&b, "");
    let (west, west_prefix) = kafka_config_with_prefix(&b, "");
    let east = format!("{PATIENT}{east}");
    let west = format!("{PATIENT}{west}");
    // The same instance name in both: nothing global ties them together.
    let _w = scanner(&west, "s1");
    let _e = scanner(&east, "s1");
    let o = scenario(
        &east,
        "",
        r#"printf '%s' "$EICAR" > eicar.com; echo fine > ok.txt"#,
        "try eicar cat eicar.com; try ok cat ok.txt",
    );
    assert_eq!(o.status("eicar"), 1, "{}", o.agent_log);
    assert_eq!(o.status("ok"), 0);
    let bad = o.access_id("eicar.com");
    assert_eq!(o.decision(&bad)["event"]["reason"], "verdict");
    for prefix in [&east_prefix, &west_prefix] {
        let group = scanner_group(&b, &format!("{prefix}.scanners"));
        assert_eq!(group.0, "Stable", "{prefix}: {group:?}");
        assert_eq!(group.1.len(), 1, "{prefix}: its own member only: {group:?}");
    }
    // West's scanner saw none of east's requests.
    use rdkafka::Message;
    let west_replies = consume_all(&b, &format!("{west_prefix}.verdicts.v1"));
    assert!(
        west_replies.is_empty(),
        "{} replies in west",
        west_replies.len()
    );
    let east_replies = consume_all(&b, &format!("{east_prefix}.verdicts.v1"));
    assert!(
        east_replies.iter().any(|m| m.key().is_some()),
        "east's replies are on east's topic"
    );
}

/// The state and member client ids of a consumer group.
fn scanner_group(bootstrap: &str, group: &str) -> (String, Vec<String>) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let list = c
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .unwrap();
    let g = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .unwrap_or_else(|| panic!("no group {group}"));
    let members = g
        .members()
        .iter()
        .map(|m| m.client_id().to_string())
        .collect();
    (g.state().to_string(), members)
}

fn producer(bootstrap: &str) -> rdkafka::producer::FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap()
}

fn produce(bootstrap: &str, topic: &str, partition: Option<i32>, key: &[u8], payload: &[u8]) {
    let p = producer(bootstrap);
    let mut r = rdkafka::producer::FutureRecord::to(topic)
        .key(key)
        .payload(payload);
    if let Some(part) = partition {
        r = r.partition(part);
    }
    futures::executor::block_on(p.send(r, Duration::from_secs(10)))
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Every message of `topic` (all partitions), read until it is quiet.
fn consume_all(bootstrap: &str, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("test-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let t = Instant::now();
    let mut quiet = Instant::now();
    while t.elapsed() < Duration::from_secs(60) && quiet.elapsed() < Duration::from_secs(4) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(m.detach());
            quiet = Instant::now();
        }
    }
    out
}

fn content_sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).to_vec()
}

#[test]
fn a_hash_scanned_on_one_node_is_answered_from_shared_verdicts_on_another() {
    require_privileges!("a_hash_scanned_on_one_node_is_answered_from_shared_verdicts_on_another");
    let Some(b) =
        bootstrap("a_hash_scanned_on_one_node_is_answered_from_shared_verdicts_on_another")
    else {
        return;
    };
    let (config, prefix) = kafka_config_with_prefix(&b, "");
    let config = format!("{PATIENT}{config}");
    let _s = scanner(&config, "s1");
    let content = format!("shared {}\n", uuid::Uuid::now_v7());
    let setup = format!("printf '%s' '{content}' > doc.txt");
    let a = scenario(
        &format!("node_id = \"node-a\"\n{config}"),
        "",
        &setup,
        "try open cat doc.txt",
    );
    assert_eq!(a.status("open"), 0);
    let b_run = scenario(
        &format!("node_id = \"node-b\"\n{config}"),
        "",
        &setup,
        "sleep 1; try open cat doc.txt",
    );
    assert_eq!(b_run.status("open"), 0);
    // Each node loaded the shared verdicts before protecting: none on an
    // empty topic (node-a), node-a's one on node-b.
    let plain = |log: &str| {
        // Without the ANSI colours of the log.
        let mut out = String::new();
        let mut it = log.chars();
        while let Some(c) = it.next() {
            if c == '\u{1b}' {
                for c in it.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let a_log = plain(&a.agent_log);
    assert!(
        a_log.contains("shared verdicts loaded shared_verdicts=0"),
        "{a_log}"
    );
    let b_log = plain(&b_run.agent_log);
    assert!(
        b_log.contains("shared verdicts loaded shared_verdicts=1"),
        "{b_log}"
    );
    let id = b_run.access_id("doc.txt");
    assert_eq!(
        b_run.verdict(&id).unwrap()["portcullis"]["verdict"],
        "clean"
    );
    assert_eq!(
        b_run
            .events
            .iter()
            .find(|e| e["portcullis"]["kind"] == "agent_started")
            .unwrap()["host"]["name"],
        "node-b"
    );
    // One scan request for this content in the whole cluster.
    let sha = content_sha256(content.as_bytes());
    let requests = consume_all(&b, &format!("{prefix}.scan-requests.v1"));
    use rdkafka::Message;
    let same: Vec<_> = requests
        .iter()
        .filter(|m| m.key() == Some(sha.as_slice()))
        .collect();
    assert_eq!(
        same.len(),
        1,
        "node-b answered from the shared verdicts without a scan request"
    );
}

#[test]
fn poison_messages_go_to_dead_letter_topics_and_the_pipeline_goes_on() {
    require_privileges!("poison_messages_go_to_dead_letter_topics_and_the_pipeline_goes_on");
    let Some(b) = bootstrap("poison_messages_go_to_dead_letter_topics_and_the_pipeline_goes_on")
    else {
        return;
    };
    let (config, prefix) = kafka_config_with_prefix(&b, "reply_partition = 1\n");
    let _s = scanner(&config, "s1");
    let topic = |t: &str| format!("{prefix}.{t}.v1");
    let (bb, p2) = (b.clone(), prefix.clone());
    let hook: Box<dyn FnOnce() + Send> = Box::new(move || {
        let t = |x: &str| format!("{p2}.{x}.v1");
        produce(
            &bb,
            &t("scan-requests"),
            None,
            b"poison-1",
            b"not a scan request",
        );
        produce(&bb, &t("verdicts"), Some(1), b"poison-2", b"PRxx garbage");
        produce(&bb, &t("verdict-cache"), None, b"poison-3", b"\x00\x01\x02");
        std::thread::sleep(Duration::from_secs(2));
    });
    let o = scenario_with_hook(
        &config,
        "",
        r#"printf '%s' "$EICAR" > eicar.com; echo fine > ok.txt"#,
        "wait_hook; try eicar cat eicar.com; try ok cat ok.txt",
        Some(hook),
    );
    assert_eq!(
        o.status("eicar"),
        1,
        "still denied after the poison: {}",
        o.agent_log
    );
    assert_eq!(o.status("ok"), 0);
    let bad = o.access_id("eicar.com");
    assert_eq!(o.decision(&bad)["event"]["reason"], "verdict");
    for (name, key) in [
        ("scan-requests", "poison-1"),
        ("verdicts", "poison-2"),
        ("verdict-cache", "poison-3"),
    ] {
        let dlq = consume_all(&b, &format!("{}.dlq", topic(name)));
        use rdkafka::Message;
        let m = dlq
            .iter()
            .find(|m| m.key() == Some(key.as_bytes()))
            .unwrap_or_else(|| {
                panic!("{name}: no dead letter for {key} in {} messages", dlq.len())
            });
        let headers = portcullis_pipeline::kafka::dlq_headers(m);
        let joined = format!("{headers:?}");
        assert!(
            joined.contains(&topic(name)),
            "{name}: origin topic in headers: {joined}"
        );
        assert!(headers.keys().any(|k| k.contains("offset")), "{joined}");
        assert!(headers.keys().any(|k| k.contains("error")), "{joined}");
        assert!(headers.keys().any(|k| k.contains("stage")), "{joined}");
    }
}

#[test]
fn killing_a_scanner_mid_stream_loses_no_verdict_and_hangs_no_open() {
    require_privileges!("killing_a_scanner_mid_stream_loses_no_verdict_and_hangs_no_open");
    let Some(b) = bootstrap("killing_a_scanner_mid_stream_loses_no_verdict_and_hangs_no_open")
    else {
        return;
    };
    let config = format!(
        "[scan]\ntimeout = \"2s\"\n[enforcer]\ndeadline = \"3s\"\n{}",
        kafka_config(&b, "")
    );
    let s1 = scanner(&config, "s1");
    let _s2 = scanner(&config, "s2");
    let hook: Box<dyn FnOnce() + Send> = Box::new(move || {
        std::thread::sleep(Duration::from_millis(700));
        drop(s1); // SIGKILL
    });
    let o = scenario_with_hook(
        &config,
        "",
        "for i in $(seq 1 150); do echo \"file $i\" > f$i.txt; done",
        r#"for i in $(seq 1 150); do try open$i cat f$i.txt; done; wait_hook; sleep 20"#,
        Some(hook),
    );
    for i in 1..=150 {
        assert_eq!(
            o.status(&format!("open{i}")),
            0,
            "open {i} answered (verdict or deadline allow)"
        );
    }
    for d in o.of_kind("decision_made") {
        let ns = d["event"]["duration"].as_u64().unwrap();
        assert!(
            ns < 3_600_000_000,
            "every open answered within its deadline plus a margin: {ns} ns"
        );
    }
    let requested: Vec<String> = o
        .of_kind("scan_requested")
        .iter()
        .map(|e| e["portcullis"]["access_id"].as_str().unwrap().to_string())
        .collect();
    assert!(requested.len() >= 150);
    for access in &requested {
        let v = o
            .verdict(access)
            .unwrap_or_else(|| panic!("no verdict for {access}:\n{}", o.agent_log));
        assert_eq!(v["portcullis"]["verdict"], "clean", "{access}: {v}");
    }
    // Requests the killed scanner had read but not answered are scanned
    // again by the survivor (at least once); whatever it sent twice is
    // journaled once.
    let mut verdicts = std::collections::HashMap::new();
    for v in o.of_kind("verdict_issued") {
        *verdicts
            .entry(v["portcullis"]["access_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert!(
        verdicts.values().all(|&n| n == 1),
        "one verdict per access: {verdicts:?}"
    );
}

/// A scan request as a node sends it, for `content`.
fn scan_request(reply_topic: &str, reply_partition: i32, content: &[u8]) -> (Vec<u8>, Vec<u8>) {
    use portcullis_schemas::wire::{self, ScanRequest};
    use portcullis_schemas::{EventId, NodeId, Timestamp, TraceContext};
    use sha2::{Digest, Sha256};
    let id = EventId::new();
    let request = ScanRequest {
        request: id,
        node_id: NodeId("test-node".into()),
        reply_topic: reply_topic.into(),
        reply_partition,
        sha256: Sha256::digest(content).into(),
        size: content.len() as u64,
        content: content.to_vec(),
        trace: TraceContext::root_for(&id),
        sent_at: Timestamp::now(),
    };
    (id.as_bytes().to_vec(), wire::encode(&request).unwrap())
}

#[test]
fn a_request_whose_reply_is_refused_is_dead_lettered_and_the_partition_goes_on() {
    let Some(b) =
        bootstrap("a_request_whose_reply_is_refused_is_dead_lettered_and_the_partition_goes_on")
    else {
        return;
    };
    let (config, prefix) = kafka_config_with_prefix(&b, "");
    let _s = scanner(&config, "s1");
    let topic = |t: &str| format!("{prefix}.{t}.v1");
    // Both on partition 0 of the requests, in this order: the first names
    // a reply partition the verdicts topic does not have (it has 2).
    let (bad_id, bad) = scan_request(&topic("verdicts"), 7, b"nowhere to reply");
    let (good_id, good) = scan_request(&topic("verdicts"), 1, b"fine");
    produce(&b, &topic("scan-requests"), Some(0), b"bad", &bad);
    produce(&b, &topic("scan-requests"), Some(0), b"good", &good);
    use rdkafka::Message;
    let replies = consume_all(&b, &topic("verdicts"));
    assert!(
        replies.iter().any(|m| m.key() == Some(good_id.as_slice())),
        "the request after the refused one was answered"
    );
    assert!(!replies.iter().any(|m| m.key() == Some(bad_id.as_slice())));
    let dlq = consume_all(&b, &format!("{}.dlq", topic("scan-requests")));
    let letter = dlq
        .iter()
        .find(|m| m.key() == Some(b"bad".as_slice()))
        .unwrap_or_else(|| panic!("no dead letter in {} messages", dlq.len()));
    let h = portcullis_pipeline::kafka::dlq_headers(letter);
    assert_eq!(h["portcullis.origin.stage"], "produce", "{h:?}");
    assert_eq!(h["portcullis.origin.partition"], "0", "{h:?}");
    assert!(h["portcullis.origin.error"].contains("reply"), "{h:?}");
    assert_eq!(letter.payload(), Some(bad.as_slice()), "the request itself");
}

/// A stand-in scanner service that answers every scan request twice, the
/// first time `Clean` and the second `Infected` (as a scanner that scanned
/// a request again after a crash could, with another ruleset), until
/// `stop` is set. Returns the number of requests answered.
fn double_replier(
    bootstrap: String,
    prefix: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    use portcullis_schemas::wire::{self, ScanReplied, ScanRequest};
    use portcullis_schemas::Verdict;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("{prefix}.double"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[&format!("{prefix}.scan-requests.v1")])
        .unwrap();
    std::thread::spawn(move || {
        let p = producer(&bootstrap);
        let mut answered = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
                continue;
            };
            let req: ScanRequest = wire::decode(m.payload().unwrap()).unwrap();
            for verdict in [
                Verdict::Clean,
                Verdict::Infected {
                    matches: Vec::new(),
                },
            ] {
                let reply = ScanReplied {
                    request: req.request,
                    node_id: req.node_id.clone(),
                    sha256: req.sha256,
                    size: req.size,
                    verdict,
                    ruleset: portcullis_schemas::RulesetVersion("double".into()),
                    scanner: "double".into(),
                    scan_duration_us: 1,
                };
                let payload = wire::encode(&reply).unwrap();
                let r = rdkafka::producer::FutureRecord::to(&req.reply_topic)
                    .partition(req.reply_partition)
                    .key(req.request.as_bytes().as_slice())
                    .payload(&payload);
                futures::executor::block_on(p.send(r, Duration::from_secs(10)))
                    .map_err(|(e, _)| e)
                    .unwrap();
            }
            answered += 1;
        }
        answered
    })
}

#[test]
fn a_reply_delivered_twice_is_decided_once_and_journaled_once() {
    require_privileges!("a_reply_delivered_twice_is_decided_once_and_journaled_once");
    let Some(b) = bootstrap("a_reply_delivered_twice_is_decided_once_and_journaled_once") else {
        return;
    };
    let (kafka, prefix) = kafka_config_with_prefix(&b, "");
    let config = format!("{PATIENT}{kafka}");
    // The stand-in must be in its group before the first request.
    let section: toml::Value = toml::from_str(&kafka).unwrap();
    let settings = section["kafka"]
        .clone()
        .try_into::<portcullis_pipeline::kafka::KafkaSection>()
        .unwrap()
        .build()
        .unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(portcullis_pipeline::kafka::ensure_topics(&settings))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let replier = double_replier(b.clone(), prefix.clone(), stop.clone());
    let o = scenario(
        &config,
        "",
        "for i in 1 2 3 4 5; do echo \"twice $i\" > t$i.txt; done",
        "for i in 1 2 3 4 5; do try open$i cat t$i.txt; done; sleep 2",
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = replier.join().unwrap();
    assert!(answered >= 5, "the stand-in answered {answered} requests");
    for i in 1..=5 {
        let name = format!("t{i}.txt");
        assert_eq!(
            o.status(&format!("open{i}")),
            0,
            "{name} allowed: {}",
            o.agent_log
        );
        let access = o.access_id(&name);
        assert_eq!(o.decision(&access)["event"]["reason"], "verdict", "{name}");
        let verdicts: Vec<_> = o
            .of_kind("verdict_issued")
            .into_iter()
            .filter(|v| v["portcullis"]["access_id"] == access.as_str())
            .collect();
        assert_eq!(
            verdicts.len(),
            1,
            "{name}: one verdict journaled: {verdicts:?}"
        );
        assert_eq!(
            verdicts[0]["portcullis"]["verdict"], "clean",
            "the first reply won"
        );
        let decisions = o
            .of_kind("decision_made")
            .into_iter()
            .filter(|d| d["portcullis"]["access_id"] == access.as_str())
            .count();
        assert_eq!(decisions, 1, "{name}: decided once");
    }
}

#[test]
fn a_broker_outage_is_answered_by_the_deadline_and_the_outbox_drains_exactly_once() {
    require_privileges!(
        "a_broker_outage_is_answered_by_the_deadline_and_the_outbox_drains_exactly_once"
    );
    if bootstrap("a_broker_outage_is_answered_by_the_deadline_and_the_outbox_drains_exactly_once")
        .is_none()
    {
        return;
    }
    // Its own broker: stopping the shared one would disturb other tests.
    let script = std::env::var("PORTCULLIS_KAFKA_SCRIPT")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka").to_string());
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("kafka.state");
    let kafka = |cmd: &str| {
        let out = Command::new("timeout")
            .args(["180", "bash", &script, cmd])
            .env("KAFKA_STATE", &state)
            .env_remove("KAFKA_PORT")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kafka {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    struct Clean<F: Fn(&str) -> String>(F);
    impl<F: Fn(&str) -> String> Drop for Clean<F> {
        fn drop(&mut self) {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.0)("clean")));
        }
    }
    let started = kafka("start");
    let own = started
        .trim()
        .trim_start_matches("KAFKA_BOOTSTRAP=")
        .to_string();
    let _cleanup = Clean(kafka);
    let (config, prefix) = kafka_config_with_prefix(&own, "");
    let config = format!("[enforcer]\ndeadline = \"2s\"\n[scan]\ntimeout = \"1s\"\n{config}");
    let _s = scanner(&config, "s1");
    // Run from `/`: a broker started from the tmpfs would keep it busy.
    let script_cmd = format!(
        "kafkactl() {{ (cd / && KAFKA_STATE={} timeout 180 bash {script} \"$@\"); }}",
        state.display()
    );
    let o = scenario(
        &config,
        "",
        "for i in 1 2 3 4; do echo \"doc $i\" > d$i.txt; done",
        &format!(
            r#"{script_cmd}
sleep 3
try before cat d1.txt
kafkactl stop >/dev/null 2>&1
try during1 cat d2.txt; try during2 cat d3.txt
kafkactl start >/dev/null 2>&1
sleep 12
try after cat d4.txt
sleep 2"#
        ),
    );
    for n in ["before", "during1", "during2", "after"] {
        assert_eq!(o.status(n), 0, "{n}: {}", o.agent_log);
    }
    for f in ["d2.txt", "d3.txt"] {
        let id = o.access_id(f);
        assert_eq!(
            o.decision(&id)["event"]["reason"],
            "deadline",
            "{f} answered by the deadline policy"
        );
    }
    // Every journal event is in the events topic, exactly once by event id.
    let journal_ids: std::collections::BTreeSet<String> = o
        .events
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap().to_string())
        .collect();
    let published = consume_all(&own, &format!("{prefix}.events.v1"));
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut topic_log = String::new();
    for m in &published {
        use rdkafka::Message;
        let env = portcullis_schemas::codec::decode(m.payload().unwrap()).unwrap();
        *seen.entry(env.event_id.to_string()).or_default() += 1;
        topic_log += &format!("p{} o{} {}\n", m.partition(), m.offset(), env.event_id);
    }
    let missing: Vec<_> = journal_ids
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    // On failure: the journal in order, the topic in order and the agent's
    // log, to tell a lost delivery from a cursor moved too far.
    assert!(
        missing.is_empty(),
        "{} journal events never published: {missing:?}\njournal:\n{}\ntopic:\n{topic_log}\nagent log:\n{}",
        missing.len(),
        o.events
            .iter()
            .map(|e| format!(
                "{} {} {}\n",
                e["event"]["id"], e["portcullis"]["kind"], e["@timestamp"]
            ))
            .collect::<String>(),
        o.agent_log
    );
    let dup: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "published more than once: {dup:?}");
    assert_eq!(seen.len(), journal_ids.len());
}

#[test]
fn files_over_the_inline_limit_are_scanned_locally_or_skipped_as_configured() {
    require_privileges!("files_over_the_inline_limit_are_scanned_locally_or_skipped_as_configured");
    let Some(b) =
        bootstrap("files_over_the_inline_limit_are_scanned_locally_or_skipped_as_configured")
    else {
        return;
    };
    for (policy, expected) in [("local", "clean"), ("skip", "skipped")] {
        let config = format!(
            "{PATIENT}{}",
            kafka_config(
                &b,
                &format!("inline_limit_kb = 1\nlarge_files = \"{policy}\"\n"),
            )
        );
        let _s = scanner(&config, "s1");
        let o = scenario(
            &config,
            "",
            "head -c 4096 /dev/zero > big.bin; echo small > small.txt",
            "try big cat big.bin; try small cat small.txt",
        );
        assert_eq!(o.status("big"), 0);
        assert_eq!(o.status("small"), 0);
        let big = o.access_id("big.bin");
        let v = o
            .verdict(&big)
            .unwrap_or_else(|| panic!("{policy}: no verdict:\n{}", o.agent_log));
        assert_eq!(v["portcullis"]["verdict"], expected, "{policy}: {v}");
        if policy == "skip" {
            assert_eq!(
                v["event"]["reason"], "too_large",
                "logged as unprocessed: {v}"
            );
        }
        let small = o.access_id("small.txt");
        assert_eq!(o.verdict(&small).unwrap()["portcullis"]["verdict"], "clean");
    }
}

/// A rolling rules update: the node runs a ruleset with one more rule than
/// the scanner service. A reply of the service's ruleset is not used (the
/// file is scanned again on the node, by the node's rules); once the
/// service has reloaded (SIGHUP) the same files, its replies decide.
#[test]
fn a_rolling_rules_update_never_decides_by_another_ruleset() {
    require_privileges!("a_rolling_rules_update_never_decides_by_another_ruleset");
    let Some(b) = bootstrap("a_rolling_rules_update_never_decides_by_another_ruleset") else {
        return;
    };
    let eicar_rule = include_str!("../../rules/eicar.yar");
    let marker_rule =
        "rule rolling_marker { strings: $m = \"rolling update marker\" condition: $m }\n";
    let service_rules = tempfile::tempdir().unwrap();
    std::fs::write(service_rules.path().join("eicar.yar"), eicar_rule).unwrap();
    let kafka = kafka_config(&b, "");
    let scanner_config = format!(
        "[scan]\ntimeout = \"10s\"\nrules = \"{}\"\n[enforcer]\ndeadline = \"15s\"\n{kafka}",
        service_rules.path().display()
    );
    let s = scanner(&scanner_config, "rolling");
    let scanner_log = s._dir.path().join("scanner.log");
    let setup = format!(
        "mkdir -p \"$WORK/rules\"\ncp {svc}/eicar.yar \"$WORK/rules/\"\ncat > \"$WORK/rules/marker.yar\" <<'EOF'\n{marker_rule}EOF\necho 'rolling update marker' > one.txt\necho 'rolling update marker, again' > two.txt\n",
        svc = service_rules.path().display()
    );
    // The service takes the node's rules, byte for byte: the same version.
    let script = format!(
        r#"try one cat one.txt
cp "$WORK/rules/marker.yar" {svc}/marker.yar
kill -HUP {pid}
for _ in $(seq 1 200); do grep -q 'rules reloaded' {log} && break; sleep 0.1; done
try two cat two.txt
"#,
        svc = service_rules.path().display(),
        pid = s.child.id(),
        log = scanner_log.display()
    );
    let o = scenario(
        &format!("{PATIENT}{kafka}"),
        "--rules \"$WORK/rules\"",
        &setup,
        &script,
    );
    let service_log = std::fs::read_to_string(&scanner_log).unwrap_or_default();
    assert_eq!(o.status("one"), 1, "{}\n{service_log}", o.agent_log);
    assert_eq!(o.status("two"), 1, "{}\n{service_log}", o.agent_log);
    assert!(service_log.contains("rules reloaded"), "{service_log}");

    let node_version = o.of_kind("rules_loaded")[0]["rule"]["version"].clone();
    for file in ["one.txt", "two.txt"] {
        let id = o.access_id(file);
        assert_eq!(o.decision(&id)["event"]["reason"], "verdict", "{file}");
        let v = o.verdict(&id).unwrap();
        assert_eq!(v["rule"]["name"], "rolling_marker", "{file}");
        assert_eq!(
            v["rule"]["version"], node_version,
            "{file}: decided by the node's rules"
        );
    }
    // Only the first was scanned again locally: the service's reply (its
    // old ruleset, which finds the file clean) was not used.
    assert_eq!(
        o.agent_log.matches("verdict of another ruleset").count(),
        1,
        "{}",
        o.agent_log
    );
}
