//! `portcullis siem-export` against a real Kafka broker (KAFKA_BOOTSTRAP),
//! read back with real clients: `kcat` for the topics, `rsyslogd` for the
//! CEF syslog stream (UDP, TCP and TLS on loopback). Every test uses its
//! own topic prefix. kcat, rsyslogd (with its OpenSSL driver) and openssl
//! are installed by scripts/setup: a missing one fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::kafka_bootstrap as bootstrap;
use common::Reaped;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use portcullis_schemas::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::Value;

const NODE: &str = "node-siem.example";
const CONTAINER: &str = "3f4e9a1c2b7d8e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
/// A path with every character CEF extensions escape or must not split on.
const NASTY_PATH: &str = r"/srv/up|load/a=b\c.exe";
const PID: u32 = 4242;
const PPID: u32 = 4200;

/// The path of a tool scripts/setup installs; panics (fails the test)
/// when it is missing.
fn tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is not installed: scripts/setup installs it (apt: kcat, rsyslog, rsyslog-openssl, openssl)");
}

fn prefix() -> String {
    format!("t{}", uuid::Uuid::now_v7().simple())
}

fn kafka_section(bootstrap: &str, prefix: &str) -> String {
    format!(
        "[kafka]\nbootstrap = \"{bootstrap}\"\ntopic_prefix = \"{prefix}\"\n[kafka.partitions]\nscan_requests = 1\nverdicts = 1\nverdict_cache = 1\nevents = 2\n[kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n"
    )
}

// ------------------------------------------------------------------ events

fn envelope(seq: u64, body: EventBody) -> Envelope {
    let event_id = EventId::new();
    Envelope {
        schema: SCHEMA_VERSION,
        event_id,
        node_id: NodeId(NODE.into()),
        seq,
        timestamp: Timestamp(1_764_361_984_123_456_789 + seq as i64 * 1_000_000),
        trace: TraceContext::root_for(&event_id),
        body,
    }
}

/// An access by a containerised process, the infected verdict, the deny
/// decision and the block action.
fn detection() -> Vec<Envelope> {
    let path = FilePath::from_bytes(NASTY_PATH.as_bytes());
    let access = envelope(
        1,
        EventBody::FileAccessed(FileAccessed {
            kind: AccessKind::Open,
            file: FileInfo {
                path: path.clone(),
                device: 2049,
                inode: 77,
                size: 68,
                mtime_ns: 1_764_361_900_000_000_000,
                ctime_ns: 1_764_361_900_000_000_000,
            },
            process: ProcessInfo {
                pid: PID,
                ppid: PPID,
                uid: 1000,
                gid: 1000,
                executable: Some(FilePath::from_bytes(b"/usr/bin/cat")),
                command: Some("cat".into()),
            },
            container: Some(ContainerRef::new(ContainerRuntime::Docker, CONTAINER)),
            interceptor_mode: Mode::Enforce,
            policy: Some(PolicyRef {
                name: "default".into(),
                mode: Mode::Enforce,
            }),
            blocking: true,
        }),
    );
    let id = access.event_id;
    let verdict = envelope(
        2,
        EventBody::VerdictIssued(VerdictIssued {
            access: id,
            path: path.clone(),
            verdict: Verdict::Infected {
                matches: vec![RuleMatch {
                    rule: "EICAR_Test_File".into(),
                    namespace: "default".into(),
                    tags: vec!["test".into()],
                    metadata: vec![(
                        "description".into(),
                        MetaValue::Str("EICAR test file".into()),
                    )],
                }],
            },
            sha256: Some([0x27; 32]),
            size: 68,
            ruleset: RulesetVersion("r1".into()),
            scan_duration_us: 900,
        }),
    );
    let decision = envelope(
        3,
        EventBody::DecisionMade(DecisionMade {
            access: id,
            decision: Decision::Deny,
            reason: DecisionReason::Verdict,
            latency_us: 1200,
        }),
    );
    let action = envelope(
        4,
        EventBody::ActionTaken(ActionTaken {
            access: id,
            path,
            pid: PID,
            action: ActionKind::Block,
            step: ActionStep::First,
            outcome: ActionOutcome::Succeeded,
            quarantine: None,
        }),
    );
    vec![access, verdict, decision, action]
}

const GARBAGE: &[u8] = b"\x00not an envelope";

/// Produces the events (as the outbox does: key node id, the journal's
/// encoding) and one undecodable message to the events topic.
fn produce(bootstrap: &str, prefix: &str, events: &[Envelope]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let topic = format!("{prefix}.events.v1");
    let payloads: Vec<Vec<u8>> = events.iter().map(|e| codec::encode(e).unwrap()).collect();
    // The same key for all: one partition, in order.
    for bytes in &payloads {
        p.send(BaseRecord::to(&topic).key(NODE).payload(bytes))
            .unwrap();
    }
    p.send(BaseRecord::to(&topic).key(NODE).payload(GARBAGE))
        .unwrap();
    p.flush(Duration::from_secs(30)).unwrap();
}

// ------------------------------------------------------------------ exporter

/// A running `portcullis siem-export`, killed on drop.
struct Exporter {
    child: Reaped,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    fn start(config: &str, args: &[&str]) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("siem.toml");
        std::fs::write(&cfg, config).unwrap();
        let ready = dir.path().join("ready");
        let log = dir.path().join("export.log");
        // Exporters sharing a transactional id fence each other: every one
        // gets its own unless the test names it.
        let own = format!("x{}", uuid::Uuid::now_v7().simple());
        let instance: &[&str] = if args.contains(&"--instance") {
            &[]
        } else {
            &["--instance", &own]
        };
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["--log", "info", "siem-export", "--config"])
            .arg(&cfg)
            .arg("--ready-file")
            .arg(&ready)
            .args(instance)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut e = Exporter {
            child: Reaped(child),
            log,
            _dir: dir,
        };
        let t = Instant::now();
        while !ready.exists() {
            if let Some(status) = e.child.try_wait().unwrap() {
                panic!("siem-export exited early ({status}):\n{}", e.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(90),
                "siem-export not ready:\n{}",
                e.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        e
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit (bounded) and asserts success.
    fn finish(mut self) -> String {
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log();
                assert!(status.success(), "siem-export failed ({status}):\n{log}");
                return log;
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "siem-export did not finish:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs the exporter to completion.
fn export(config: &str, args: &[&str]) -> String {
    Exporter::start(config, args).finish()
}

// ------------------------------------------------------------------ kcat

struct Consumed {
    headers: BTreeMap<String, String>,
    key: String,
    payload: String,
}

/// Every committed message of `topic`, read by kcat.
fn kcat(bootstrap: &str, topic: &str) -> Vec<Consumed> {
    let out = Command::new("timeout")
        .arg("60")
        .arg(tool("kcat"))
        .args(["-C", "-b", bootstrap, "-t", topic, "-e", "-q"])
        .args(["-X", "isolation.level=read_committed"])
        // Key, headers, payload; the payload is one line (no newline).
        .args(["-f", "%k\t%h\t%s\n"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kcat on {topic} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let key = parts.next().unwrap().to_string();
            let headers = parts
                .next()
                .unwrap()
                .split(',')
                .filter_map(|h| h.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let payload = parts.next().unwrap_or_default().to_string();
            Consumed {
                headers,
                key,
                payload,
            }
        })
        .collect()
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/json")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not validate: {errors:#?}\n{doc:#}"
    );
}

/// The dead letter of the garbage message.
fn assert_one_dead_letter(bootstrap: &str, prefix: &str) {
    let dlq = kcat(bootstrap, &format!("{prefix}.events.v1.dlq"));
    assert_eq!(dlq.len(), 1, "one dead letter");
    let h = &dlq[0].headers;
    assert_eq!(h["portcullis.origin.stage"], "decode");
    assert_eq!(h["portcullis.origin.topic"], format!("{prefix}.events.v1"));
    assert!(
        h["portcullis.origin.service"].contains("siem-export"),
        "{h:?}"
    );
    assert!(h.contains_key("portcullis.origin.offset"));
    assert_eq!(dlq[0].key, NODE);
}

#[test]
fn ecs_topic_has_every_decodable_event_once_and_garbage_goes_to_the_dlq() {
    let Some(b) = bootstrap("ecs_topic_has_every_decodable_event_once_and_garbage_goes_to_the_dlq")
    else {
        return;
    };
    tool("kcat");
    let prefix = prefix();
    let config = kafka_section(&b, &prefix);
    let events = detection();
    // The same instance twice: the second run resumes the first one's group.
    let instance = format!("{prefix}-e1");
    // The exporter creates the topics; then the events arrive while it runs.
    let exporter = Exporter::start(
        &config,
        &["--instance", &instance, "--ocsf", "--max-events", "5"],
    );
    produce(&b, &prefix, &events);
    let log = exporter.finish();

    let ecs = kcat(&b, &format!("{prefix}.siem.ecs.v1"));
    assert_eq!(
        ecs.len(),
        events.len(),
        "one ECS document per decodable event:\n{log}"
    );
    let validator = schema("ecs.schema.json");
    let mut ids = BTreeSet::new();
    for m in &ecs {
        let doc: Value = serde_json::from_str(&m.payload).unwrap();
        assert_valid(&validator, &doc, "an ECS message");
        assert_eq!(m.key, NODE);
        let id = doc["event"]["id"].as_str().unwrap().to_string();
        assert_eq!(m.headers["portcullis.event_id"], id);
        assert_eq!(
            m.headers["portcullis.seq"],
            doc["event"]["sequence"].to_string()
        );
        // The input's position: header and document agree.
        let source: SourcePosition = m.headers["portcullis.source"].parse().unwrap();
        let SourcePosition::Kafka { topic, .. } = &source else {
            panic!("{source}");
        };
        assert_eq!(*topic, format!("{prefix}.events.v1"));
        let in_doc: SourcePosition =
            serde_json::from_value(doc["portcullis"]["source"].clone()).unwrap();
        assert_eq!(in_doc, source, "the document names the same input");
        ids.insert(id);
    }
    let want: BTreeSet<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(ids, want);

    // OCSF: only events with an OCSF class; each valid against its schema.
    let ocsf = kcat(&b, &format!("{prefix}.siem.ocsf.v1"));
    let mapped = events
        .iter()
        .filter(|e| ocsf::to_ocsf(e, None).is_some())
        .count();
    assert!(
        mapped >= 3,
        "access, infected verdict and block have OCSF classes"
    );
    assert_eq!(ocsf.len(), mapped);
    let validator = schema("ocsf.schema.json");
    for m in &ocsf {
        let doc: Value = serde_json::from_str(&m.payload).unwrap();
        assert_valid(&validator, &doc, "an OCSF message");
        assert!(want.contains(&m.headers["portcullis.event_id"]));
    }
    assert_one_dead_letter(&b, &prefix);

    // Exactly once per committed input: the same group again finds
    // nothing new to export.
    let log = export(
        &config,
        &["--instance", &instance, "--ocsf", "--idle-exit", "3"],
    );
    assert!(log.contains("idle-exit"), "{log}");
    assert_eq!(
        kcat(&b, &format!("{prefix}.siem.ecs.v1")).len(),
        events.len()
    );
    assert_eq!(kcat(&b, &format!("{prefix}.events.v1.dlq")).len(), 1);
}

// ------------------------------------------------------------------ rsyslog

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed certificate for 127.0.0.1 and localhost: (cert, key).
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new(tool("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// rsyslogd in the foreground with its own config: UDP, TCP and TLS (ossl)
/// inputs on loopback, each written to its own file, one line per message:
/// facility, severity, timestamp, host, app, procid, msgid, msg (tabs).
/// No imuxsock, no /dev/log, nothing under /var/log.
struct Rsyslog {
    child: Reaped,
    dir: tempfile::TempDir,
    udp: u16,
    tcp: u16,
    tls: u16,
    cert: PathBuf,
}

impl Rsyslog {
    fn start() -> Rsyslog {
        let bin = tool("rsyslogd");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (cert, key) = certificate(d, "collector");
        let (udp, tcp, tls) = (free_udp_port(), free_tcp_port(), free_tcp_port());
        let file = |name: &str| d.join(format!("{name}.log")).display().to_string();
        let conf = format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp" maxSessions="16")
template(name="fields" type="string" string="%syslogfacility%\t%syslogseverity%\t%timereported:::date-rfc3339%\t%hostname%\t%app-name%\t%procid%\t%msgid%\t%msg%\n")
ruleset(name="udp") {{ action(type="omfile" file="{udp_file}" template="fields") }}
ruleset(name="tcp") {{ action(type="omfile" file="{tcp_file}" template="fields") }}
ruleset(name="tls") {{ action(type="omfile" file="{tls_file}" template="fields") }}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="tls"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon"
      streamDriver.CAFile="{cert}" streamDriver.CertFile="{cert}" streamDriver.KeyFile="{key}")
"#,
            work = d.display(),
            udp_file = file("udp"),
            tcp_file = file("tcp"),
            tls_file = file("tls"),
            cert = cert.display(),
            key = key.display(),
        );
        std::fs::write(d.join("rsyslog.conf"), conf).unwrap();
        let child = Self::spawn(&bin, d);
        let mut r = Rsyslog {
            child: Reaped(child),
            dir,
            udp,
            tcp,
            tls,
            cert,
        };
        r.wait_ready();
        r
    }

    fn spawn(bin: &Path, dir: &Path) -> Child {
        Command::new(bin)
            // -n: foreground; -C: no chdir to /; -i: our own pid file.
            .arg("-n")
            .arg("-C")
            .arg("-f")
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rsyslogd.err")).unwrap())
            .spawn()
            .unwrap()
    }

    /// SIGKILL: what it had received but not written is gone.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts again on the same ports and files.
    fn restart(&mut self) {
        self.child = Reaped(Self::spawn(&tool("rsyslogd"), self.dir.path()));
        self.wait_ready();
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.err")).unwrap_or_default()
    }

    /// Both TCP ports accept, and a UDP probe shows up in its file.
    fn wait_ready(&mut self) {
        let t = Instant::now();
        let up = |port: u16| TcpStream::connect(("127.0.0.1", port)).is_ok();
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("rsyslogd exited ({status}): {}", self.stderr());
            }
            if up(self.tcp) && up(self.tls) {
                let _ = probe.send_to(
                    b"<14>1 2025-01-01T00:00:00Z probe probe - PROBE - ready",
                    ("127.0.0.1", self.udp),
                );
                let udp_file = self.dir.path().join("udp.log");
                if std::fs::metadata(udp_file).is_ok_and(|m| m.len() > 0) {
                    return;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "rsyslogd not ready: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The messages received on one input (probes left out).
    fn lines(&self, input: &str) -> Vec<Received> {
        std::fs::read_to_string(self.dir.path().join(format!("{input}.log")))
            .unwrap_or_default()
            .lines()
            .map(Received::parse)
            .filter(|r| r.app != "probe")
            .collect()
    }

    /// Waits until `n` messages arrived on `input`.
    fn wait_for(&self, input: &str, n: usize) -> Vec<Received> {
        let t = Instant::now();
        loop {
            let got = self.lines(input);
            if got.len() >= n || t.elapsed() > Duration::from_secs(20) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[derive(Debug)]
struct Received {
    facility: String,
    severity: u8,
    timestamp: String,
    host: String,
    app: String,
    procid: String,
    msgid: String,
    msg: String,
}

impl Received {
    fn parse(line: &str) -> Received {
        let f: Vec<&str> = line.splitn(8, '\t').collect();
        assert_eq!(f.len(), 8, "{line}");
        Received {
            facility: f[0].into(),
            severity: f[1].parse().unwrap(),
            timestamp: f[2].into(),
            host: f[3].into(),
            app: f[4].into(),
            procid: f[5].into(),
            msgid: f[6].into(),
            msg: f[7].into(),
        }
    }
}

/// The CEF extension value of `key` (up to the next unescaped ` key=`).
fn cef_ext<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!(" {key}=");
    let start = msg.find(&needle)? + needle.len();
    let rest = &msg[start..];
    // The value ends before the next ` word=` (an unescaped `=`).
    let bytes = rest.as_bytes();
    let mut end = rest.len();
    let mut i = 0;
    let mut last_space = None;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b' ' => last_space = Some(i),
            b'=' => {
                if let Some(s) = last_space {
                    end = s;
                    break;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Some(&rest[..end])
}

/// RFC 3339 in UTC with microseconds, as RFC 5424 carries it.
fn micros(t: Timestamp) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0))
        .unwrap()
        .format(&format)
        .unwrap()
}

/// What every received CEF message must show for the detection's events.
fn assert_cef_stream(got: &[Received], events: &[Envelope], facility: &str, transport: &str) {
    assert_eq!(
        got.len(),
        events.len(),
        "{transport}: one message per event: {got:#?}"
    );
    for (r, env) in got.iter().zip(events) {
        let (sig, _, _) = cef::signature(env);
        assert_eq!(r.msgid, sig, "{transport}: MSGID is the signature id");
        assert_eq!(r.facility, facility, "{transport}");
        assert_eq!(r.host, NODE);
        assert_eq!(r.app, "portcullis");
        assert_eq!(r.procid, "-");
        assert!(r.severity <= 7);
        assert_eq!(
            r.timestamp,
            micros(env.timestamp),
            "{transport}: when the event happened"
        );
        assert!(r.msg.starts_with("CEF:0|"), "{transport}: {}", r.msg);
        let header: Vec<&str> = r.msg.splitn(8, '|').collect();
        assert_eq!(header[4], sig, "the CEF signature id and the MSGID agree");
        match &env.body {
            EventBody::FileAccessed(_) => {
                assert!(sig.starts_with("FM-"), "{sig}");
                assert_eq!(
                    cef_ext(&r.msg, "dpid"),
                    Some(PID.to_string().as_str()),
                    "{}",
                    r.msg
                );
                assert_eq!(
                    cef_ext(&r.msg, "spid"),
                    Some(PPID.to_string().as_str()),
                    "{}",
                    r.msg
                );
                assert_eq!(cef_ext(&r.msg, "flexString2"), Some(CONTAINER), "{}", r.msg);
                // `=` and `\` escaped, `|` as it is (CEF extension rules).
                assert!(r.msg.contains(r"/srv/up|load/a\=b\\c.exe"), "{}", r.msg);
            }
            EventBody::VerdictIssued(_) => {
                assert!(sig.starts_with("FFTP-"), "{sig}");
                assert!(r.msg.contains(r"/srv/up|load/a\=b\\c.exe"), "{}", r.msg);
            }
            _ => {}
        }
    }
}

#[test]
fn cef_reaches_rsyslog_over_udp_tcp_and_tls() {
    let Some(b) = bootstrap("cef_reaches_rsyslog_over_udp_tcp_and_tls") else {
        return;
    };
    let rs = Rsyslog::start();
    let prefix = prefix();
    let config = kafka_section(&b, &prefix);
    let events = detection();

    // Syslog only (no topics), one consumer group per transport.
    let udp = format!("udp://127.0.0.1:{}", rs.udp);
    let first = Exporter::start(
        &config,
        &[
            "--no-ecs",
            "--group",
            "g-udp",
            "--syslog",
            &udp,
            "--max-events",
            "5",
        ],
    );
    produce(&b, &prefix, &events);
    first.finish();
    assert_cef_stream(&rs.wait_for("udp", 4), &events, "20", "udp");

    let tcp = format!("tcp://127.0.0.1:{}", rs.tcp);
    export(
        &config,
        &[
            "--no-ecs",
            "--group",
            "g-tcp",
            "--syslog",
            &tcp,
            "--syslog-facility",
            "auth",
            "--max-events",
            "5",
        ],
    );
    assert_cef_stream(&rs.wait_for("tcp", 4), &events, "4", "tcp");

    let tls = format!("tls://127.0.0.1:{}", rs.tls);
    let ca = rs.cert.display().to_string();
    export(
        &config,
        &[
            "--no-ecs",
            "--group",
            "g-tls",
            "--syslog",
            &tls,
            "--syslog-ca",
            &ca,
            "--max-events",
            "5",
        ],
    );
    assert_cef_stream(&rs.wait_for("tls", 4), &events, "20", "tls");

    // A collector whose certificate does not chain to --syslog-ca is refused.
    let other = tempfile::tempdir().unwrap();
    let (wrong_ca, _) = certificate(other.path(), "other");
    let out: Output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "siem-export",
            "--no-ecs",
            "--group",
            "g-bad",
            "--syslog",
            &tls,
        ])
        .arg("--syslog-ca")
        .arg(&wrong_ca)
        .args(["--max-events", "1", "--config"])
        .arg({
            let p = other.path().join("c.toml");
            std::fs::write(&p, &config).unwrap();
            p
        })
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("certificate") || err.contains("TLS"), "{err}");
    assert_eq!(rs.lines("tls").len(), 4, "nothing more arrived");
}

#[test]
fn syslog_flags_without_a_destination_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["siem-export", "--syslog-ca", "/etc/hostname"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--syslog"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["siem-export", "--syslog", "smtp://x:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("siem.syslog.url") && err.contains("smtp"),
        "{err}"
    );
}

#[test]
fn a_collector_outage_delays_syslog_but_loses_nothing() {
    let Some(b) = bootstrap("a_collector_outage_delays_syslog_but_loses_nothing") else {
        return;
    };
    let mut rs = Rsyslog::start();
    let prefix = prefix();
    let config = kafka_section(&b, &prefix);
    let tcp = format!("tcp://127.0.0.1:{}", rs.tcp);
    // Runs until SIGTERM.
    let exporter = Exporter::start(&config, &["--no-ecs", "--syslog", &tcp]);
    let first = detection();
    produce(&b, &prefix, &first);
    let got = rs.wait_for("tcp", first.len());
    assert_eq!(got.len(), first.len(), "{}", exporter.log());

    // The collector goes away; events keep coming.
    rs.kill();
    let second = detection();
    produce(&b, &prefix, &second);
    std::thread::sleep(Duration::from_secs(2));
    rs.restart();
    let all = first.len() + second.len();
    let got = rs.wait_for("tcp", all);
    // At least once: every event is there (a retried batch may repeat).
    let received: BTreeSet<&str> = got
        .iter()
        .filter_map(|r| cef_ext(&r.msg, "externalId"))
        .collect();
    for env in first.iter().chain(&second) {
        let id = env.event_id.to_string();
        assert!(
            received.contains(id.as_str()),
            "event {id} never reached the collector: {got:#?}\n{}",
            exporter.log()
        );
    }
    assert!(got.len() >= all);

    // SIGTERM: the batch in hand is finished, then a clean exit.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(exporter.child.id() as i32, libc::SIGTERM) };
    let log = exporter.finish();
    assert!(
        log.contains("aborted") || log.contains("not committed"),
        "{log}"
    );
    assert!(log.contains("signal"), "{log}");
}
