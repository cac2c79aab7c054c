//! Traces of the real processes, received by an in-process OTLP/gRPC
//! collector (`fake-opentelemetry-collector` on 127.0.0.1): one trace per
//! access in the agent, and one trace across the node, a scanner service
//! and siem-export for a remote scan, with the parent/child relations of
//! the OpenTelemetry messaging conventions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};

/// A collector drained continuously (its channel holds 64 spans).
struct Collector {
    _rt: tokio::runtime::Runtime,
    endpoint: String,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
}

impl Collector {
    fn start() -> Collector {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        let endpoint = rt.block_on(async move {
            let mut server = FakeCollectorServer::start().await.unwrap();
            let endpoint = server.endpoint();
            tokio::spawn(async move {
                loop {
                    let got = server.exported_spans(1, Duration::from_millis(100)).await;
                    sink.lock().unwrap().extend(got);
                }
            });
            endpoint
        });
        Collector {
            _rt: rt,
            endpoint,
            spans,
        }
    }

    /// Waits (bounded) until `ok` holds for the spans received.
    fn wait(&self, what: &str, ok: impl Fn(&[ExportedSpan]) -> bool) -> Vec<ExportedSpan> {
        let t = Instant::now();
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if ok(&spans) {
                return spans;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{what}: not among {} spans: {:#?}",
                spans.len(),
                spans
                    .iter()
                    .map(|s| (&s.name, &s.trace_id, &s.span_id, &s.parent_span_id))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn config(&self) -> String {
        format!(
            "[telemetry.traces]\nenabled = true\nendpoint = \"{}\"\nexport_interval = \"100ms\"\n",
            self.endpoint
        )
    }
}

/// An attribute's value as text. The collector keeps the protobuf value's
/// Debug form: `Some(AnyValue { value: Some(StringValue("x")) })`.
fn plain(raw: &str) -> String {
    for variant in ["StringValue(", "IntValue(", "BoolValue(", "DoubleValue("] {
        let Some(i) = raw.find(variant) else {
            continue;
        };
        let rest = &raw[i + variant.len()..];
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '"' => break,
                    c => out.push(c),
                }
            }
            return out;
        }
        return rest[..rest.find(')').unwrap_or(rest.len())].to_string();
    }
    raw.to_string()
}

fn attr(s: &ExportedSpan, key: &str) -> String {
    s.attributes
        .get(key)
        .map(|v| plain(v))
        .unwrap_or_else(|| panic!("span `{}` has no `{key}`: {:?}", s.name, s.attributes))
}

fn named<'a>(spans: &'a [ExportedSpan], name: &str) -> Vec<&'a ExportedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// The one span named `name` whose `key` attribute is `value`.
fn find<'a>(spans: &'a [ExportedSpan], name: &str, key: &str, value: &str) -> &'a ExportedSpan {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.name == name && s.attributes.get(key).is_some_and(|v| plain(v) == value))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "`{name}` with {key}={value}: {found:#?}\namong: {:#?}",
        named(spans, name)
            .iter()
            .map(|s| &s.attributes)
            .collect::<Vec<_>>()
    );
    found[0]
}

/// Every span is in the catalog, with only its attributes.
fn assert_catalog(spans: &[ExportedSpan]) {
    for s in spans {
        let def = portcullis_telemetry::catalog::span_def(&s.name)
            .unwrap_or_else(|| panic!("span `{}` is not in the catalog", s.name));
        for k in s.attributes.keys() {
            assert!(
                def.attributes.contains(&k.as_str()),
                "span `{}`: attribute `{k}` is not in the catalog",
                s.name
            );
        }
        assert_eq!(
            s.kind.to_lowercase().trim_start_matches("span_kind_"),
            def.kind.as_str(),
            "{}",
            s.name
        );
    }
}

#[test]
fn an_access_in_the_agent_is_one_trace_from_interception_to_actions() {
    require_privileges!("an_access_in_the_agent_is_one_trace_from_interception_to_actions");
    let collector = Collector::start();
    let o = scenario(
        &collector.config(),
        "",
        r#"echo hello > clean.txt; printf '%s' "$EICAR" > eicar.com"#,
        "try clean cat clean.txt; try eicar cat eicar.com",
    );
    assert_eq!(o.status("eicar"), 1, "{}", o.agent_log);
    let bad = o.access_id("eicar.com");
    let good = o.access_id("clean.txt");
    let spans = collector.wait("the eicar access, its scan, journal and action", |s| {
        s.iter().any(|s| s.name == "act")
            && named(s, "journal append").len() >= 6
            && named(s, "access").len() >= 2
    });
    assert_catalog(&spans);

    let access = find(&spans, "access", "portcullis.event_id", &bad);
    assert_eq!(access.parent_span_id, "", "the access is the root");
    assert_eq!(attr(access, "portcullis.decision"), "deny");
    assert_eq!(attr(access, "portcullis.decision.reason"), "verdict");
    assert_eq!(attr(access, "portcullis.access.kind"), "open");
    assert!(attr(access, "file.path").ends_with("/eicar.com"));
    assert!(attr(access, "process.pid").parse::<u32>().unwrap() > 1);
    let trace = &access.trace_id;

    // The journal's events of the access carry the same trace.
    let accessed = o.accesses_of("eicar.com")[0];
    assert_eq!(accessed["trace"]["id"], trace.as_str(), "{accessed}");
    assert_eq!(accessed["span"]["id"], access.span_id.as_str());

    let scan = find(&spans, "scan", "portcullis.event_id", &bad);
    assert_eq!(
        (&scan.trace_id, &scan.parent_span_id),
        (trace, &access.span_id)
    );
    assert_eq!(attr(scan, "portcullis.verdict"), "infected");
    assert_eq!(attr(scan, "portcullis.rule"), "eicar_test_file");
    assert_eq!(attr(scan, "portcullis.scan.location"), "local");

    let act = find(&spans, "act", "portcullis.event_id", &bad);
    assert_eq!((&act.trace_id, &act.parent_span_id), (trace, &scan.span_id));
    assert_eq!(attr(act, "portcullis.action"), "block");
    assert_eq!(attr(act, "portcullis.action.outcome"), "success");

    // Each event of the access is appended under the span that produced it.
    let appends: HashMap<String, &ExportedSpan> = named(&spans, "journal append")
        .into_iter()
        .filter(|s| &s.trace_id == trace)
        .map(|s| (attr(s, "portcullis.event.kind"), s))
        .collect();
    for (kind, parent) in [
        ("file_accessed", &access.span_id),
        ("decision_made", &access.span_id),
        ("scan_requested", &scan.span_id),
        ("verdict_issued", &scan.span_id),
        ("action_taken", &act.span_id),
    ] {
        let a = appends
            .get(kind)
            .unwrap_or_else(|| panic!("no journal append of {kind}: {appends:#?}"));
        assert_eq!(&a.parent_span_id, parent, "{kind}");
        assert!(attr(a, "portcullis.journal.seq").parse::<u64>().unwrap() > 0);
    }

    // Another access, another trace.
    let clean = find(&spans, "access", "portcullis.event_id", &good);
    assert_ne!(&clean.trace_id, trace);
    assert_eq!(attr(clean, "portcullis.decision"), "allow");
    // Agent lifecycle events have no span to hang under: none is made.
    assert!(
        spans
            .iter()
            .all(|s| s.parent_span_id.is_empty()
                || spans.iter().any(|p| p.span_id == s.parent_span_id)),
        "a span whose parent was never exported"
    );
}

#[test]
fn an_access_left_out_by_sampling_makes_no_span_anywhere() {
    require_privileges!("an_access_left_out_by_sampling_makes_no_span_anywhere");
    let collector = Collector::start();
    // Ratio 0: every access is left out. The infected file is opened twice
    // (a verdict, then the cache): both paths end in actions, whose events
    // derive child contexts from the access's, and the journal appends
    // every event; none of them may export a span.
    let o = scenario(
        &format!("{}sampling_ratio = 0.0\n", collector.config()),
        "",
        r#"echo hello > clean.txt; printf '%s' "$EICAR" > eicar.com"#,
        "try clean cat clean.txt; try eicar cat eicar.com; try again cat eicar.com",
    );
    assert_eq!(o.status("eicar"), 1, "{}", o.agent_log);
    assert_eq!(o.status("again"), 1, "{}", o.agent_log);
    // The agent has stopped, flushing its exporter; the collector is
    // polled every 100 ms.
    std::thread::sleep(Duration::from_secs(2));
    let spans = collector.spans.lock().unwrap().clone();
    assert!(
        spans.is_empty(),
        "spans exported for unsampled accesses: {:#?}",
        spans
            .iter()
            .map(|s| (&s.name, &s.attributes))
            .collect::<Vec<_>>()
    );
    // The events still carry a trace id (the access's), marked unsampled.
    let accessed = o.accesses_of("eicar.com")[0];
    assert!(accessed["trace"]["id"].is_string(), "{accessed}");
}

#[test]
fn a_remote_scan_is_one_trace_across_the_node_the_scanner_and_siem_export() {
    let test = "a_remote_scan_is_one_trace_across_the_node_the_scanner_and_siem_export";
    require_privileges!(test);
    let Some(b) = kafka_bootstrap(test) else {
        return;
    };
    let collector = Collector::start();
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    let config = format!(
        "[scan]\ntimeout = \"10s\"\n[enforcer]\ndeadline = \"15s\"\n[kafka]\nbootstrap = \"{b}\"\ntopic_prefix = \"{prefix}\"\n[kafka.partitions]\nscan_requests = 2\nverdicts = 2\nverdict_cache = 2\nevents = 2\n{}",
        collector.config()
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("portcullis.toml");
    std::fs::write(&cfg, &config).unwrap();
    let ready = dir.path().join("scanner-ready");
    let scanner = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--log", "info", "scanner", "--instance", "t1", "--config"])
        .arg(&cfg)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("scanner.log")).unwrap())
        .spawn()
        .unwrap();
    let mut scanner = Reaped(scanner);
    let t = Instant::now();
    while !ready.exists() {
        assert!(scanner.try_wait().unwrap().is_none(), "scanner exited");
        assert!(t.elapsed() < Duration::from_secs(60), "scanner not ready");
        std::thread::sleep(Duration::from_millis(50));
    }

    let o = scenario(
        &config,
        "",
        r#"printf '%s' "$EICAR" > eicar.com"#,
        "try eicar cat eicar.com",
    );
    assert_eq!(o.status("eicar"), 1, "{}", o.agent_log);
    let bad = o.access_id("eicar.com");
    assert_eq!(o.decision(&bad)["event"]["reason"], "verdict");

    // siem-export reads the events the node published.
    let export = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "--log",
            "info",
            "siem-export",
            "--idle-exit",
            "3s",
            "--config",
        ])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("export.log")).unwrap())
        .status()
        .unwrap();
    assert!(
        export.success(),
        "{}",
        std::fs::read_to_string(dir.path().join("export.log")).unwrap_or_default()
    );

    let requests = format!("{prefix}.scan-requests.v1");
    let replies = format!("{prefix}.verdicts.v1");
    let events = format!("{prefix}.events.v1");
    let spans = collector.wait("the remote scan and its export", |s| {
        s.iter().any(|s| s.name == format!("process {replies}"))
            && s.iter().any(|s| s.name == format!("process {events}"))
    });
    assert_catalog(&spans);

    let access = find(&spans, "access", "portcullis.event_id", &bad);
    let trace = &access.trace_id;
    let in_trace = |name: &str| -> Vec<&ExportedSpan> {
        spans
            .iter()
            .filter(|s| &s.trace_id == trace && s.name == name)
            .collect()
    };
    let scans = in_trace("scan");
    let node_scan = scans
        .iter()
        .find(|s| s.parent_span_id == access.span_id)
        .expect("the node's scan span");
    assert_eq!(attr(node_scan, "portcullis.scan.location"), "remote");
    assert_eq!(attr(node_scan, "portcullis.verdict"), "infected");

    // node: send <requests> under the scan.
    let send = in_trace(&format!("send {requests}"));
    assert_eq!(send.len(), 1, "{send:#?}");
    let send = send[0];
    assert_eq!(send.parent_span_id, node_scan.span_id);
    assert_eq!(send.kind, "SPAN_KIND_PRODUCER");
    assert_eq!(attr(send, "messaging.system"), "kafka");
    assert_eq!(attr(send, "messaging.operation.type"), "send");
    assert_eq!(attr(send, "messaging.destination.name"), requests);
    assert_eq!(attr(send, "messaging.message.id"), bad);

    // scanner: process <requests> under the node's send, then its scan and
    // send <replies> under that.
    let process = in_trace(&format!("process {requests}"));
    assert_eq!(process.len(), 1, "{process:#?}");
    let process = process[0];
    assert_eq!(process.parent_span_id, send.span_id);
    assert_eq!(process.kind, "SPAN_KIND_CONSUMER");
    assert_eq!(attr(process, "messaging.operation.type"), "process");
    assert_eq!(
        attr(process, "messaging.consumer.group.name"),
        format!("{prefix}.scanners")
    );
    attr(process, "messaging.kafka.offset")
        .parse::<i64>()
        .unwrap();
    attr(process, "messaging.destination.partition.id")
        .parse::<i32>()
        .unwrap();
    let scanner_scan = scans
        .iter()
        .find(|s| s.parent_span_id == process.span_id)
        .expect("the scanner's scan span");
    assert_eq!(attr(scanner_scan, "portcullis.verdict"), "infected");
    assert_eq!(attr(scanner_scan, "portcullis.rule"), "eicar_test_file");
    let reply = in_trace(&format!("send {replies}"));
    assert_eq!(reply.len(), 1, "{reply:#?}");
    assert_eq!(reply[0].parent_span_id, process.span_id);

    // node: process <replies> under the scanner's send.
    let got = in_trace(&format!("process {replies}"));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].parent_span_id, reply[0].span_id);

    // siem-export: process <events> for each event of the access, under
    // the span that produced it.
    let exported = in_trace(&format!("process {events}"));
    assert!(exported.len() >= 4, "{exported:#?}");
    for e in &exported {
        assert!(
            [&access.span_id, &node_scan.span_id].contains(&&e.parent_span_id)
                || in_trace("act")
                    .iter()
                    .any(|a| a.span_id == e.parent_span_id),
            "{e:#?}"
        );
        assert_eq!(attr(e, "messaging.operation.type"), "process");
    }
}
