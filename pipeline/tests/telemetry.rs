//! Telemetry of the real processes: a real Prometheus (Debian's package,
//! installed by scripts/setup) scrapes a running agent and a scanner
//! service; `promtool` checks the scrape output and the alert rules;
//! `/readyz` follows the marks and the group assignment; the listener binds
//! 127.0.0.1 unless told otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A plain HTTP/1.0 GET: (status, body); `None` when nothing listens.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether the Debian `prometheus` package is here; `false` after a loud
/// SKIPPED line (a failure under scripts/test, which installs it).
fn prometheus_available(test: &str) -> bool {
    let ok = ["prometheus", "promtool"].iter().all(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_PROMETHEUS").is_none(),
            "`{test}`: prometheus/promtool not installed, and scripts/test requires them (scripts/setup installs them)"
        );
        let line = format!(
            "\n!!!!!!!! SKIPPED `{test}`: prometheus/promtool not installed (scripts/setup installs them) !!!!!!!!\n"
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    ok
}

/// A real Prometheus scraping `targets` (job name, address) every second.
struct Prometheus {
    _child: Reaped,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[(&str, &str)]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, addr) in targets {
            cfg.push_str(&format!(
                "  - job_name: {job}\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{addr}']\n"
            ));
        }
        std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("starting prometheus");
        let p = Prometheus {
            _child: Reaped(child),
            addr,
            _dir: dir,
        };
        wait_for(Duration::from_secs(60), "prometheus ready", || {
            get(&p.addr, "/-/ready").is_some_and(|(s, _)| s == 200)
        });
        p
    }

    /// The value of an instant query's single sample, if it has one.
    fn value(&self, promql: &str) -> Option<f64> {
        let (status, body) = get(
            &self.addr,
            &format!("/api/v1/query?query={}", url_encode(promql)),
        )?;
        assert_eq!(status, 200, "{promql}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let result = v["data"]["result"].as_array()?;
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits (bounded) until `promql` gives `want`.
    fn wait_value(&self, promql: &str, want: impl Fn(f64) -> bool, what: &str) -> f64 {
        let t = Instant::now();
        loop {
            let v = self.value(promql);
            if let Some(v) = v.filter(|v| want(*v)) {
                return v;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{what}: `{promql}` is {v:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `promtool check metrics` on a scrape.
fn promtool_check_metrics(scrape: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `portcullis_` family of a scrape is in the catalog, with its
/// type, and its labels are the catalog's.
fn assert_scrape_matches_catalog(scrape: &str) -> usize {
    use portcullis_telemetry::catalog::{Kind, METRICS};
    let mut seen = 0;
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            if !name.starts_with("portcullis_") {
                continue;
            }
            let m = METRICS
                .iter()
                .find(|m| m.name == name)
                .unwrap_or_else(|| panic!("`{name}` is not in the catalog"));
            assert_eq!(m.kind.as_str(), kind, "{name}");
            seen += 1;
            continue;
        }
        if line.starts_with('#') || !line.starts_with("portcullis_") {
            continue;
        }
        let series = line.split_once(' ').unwrap().0;
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let base = METRICS
            .iter()
            .find(|m| {
                m.name == name
                    || (m.kind == Kind::Histogram
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| name.strip_suffix(s) == Some(m.name)))
            })
            .unwrap_or_else(|| panic!("series `{series}` is not in the catalog"));
        for pair in labels
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let key = pair.split_once('=').unwrap().0;
            assert!(
                key == "le" || base.labels.contains(&key),
                "{series}: label `{key}` is not in the catalog ({:?})",
                base.labels
            );
        }
    }
    seen
}

/// A rules directory whose compilation takes seconds (the built-in rules
/// plus 10,000 generated ones): a window in which the agent is up but has
/// not marked anything yet.
fn slow_compiling_rules() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    for f in std::fs::read_dir(repo).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "yar") {
            std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
    }
    let mut many = String::new();
    for i in 0..10_000 {
        many.push_str(&format!(
            "rule slow_{i} {{ strings: $a = \"portcullis-slow-compile-{i}\" $b = /abc[0-9]{{2,8}}x{i}/ condition: $a or $b }}\n"
        ));
    }
    std::fs::write(dir.path().join("many.yar"), many).unwrap();
    dir
}

#[test]
fn prometheus_scrapes_the_agent_and_readyz_follows_the_marks() {
    require_privileges!("prometheus_scrapes_the_agent_and_readyz_follows_the_marks");
    if !prometheus_available("prometheus_scrapes_the_agent_and_readyz_follows_the_marks") {
        return;
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let rules = slow_compiling_rules();

    // /readyz and /healthz from before the agent starts until it is ready.
    let probe_addr = addr.clone();
    let probes = std::thread::spawn(move || {
        let mut seen: Vec<(u16, String, Option<u16>)> = Vec::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(90) {
            if let Some((status, body)) = get(&probe_addr, "/readyz") {
                let live = get(&probe_addr, "/healthz").map(|(s, _)| s);
                seen.push((status, body.trim().to_string(), live));
                if status == 200 {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    });

    let hook_addr = addr.clone();
    let o = scenario_with_hook(
        "",
        &format!("--metrics-listen {port} --rules {}", rules.path().display()),
        r#"echo hello > clean.txt; echo other > other.txt; printf '%s' "$EICAR" > eicar.com"#,
        "try clean cat clean.txt; try other cat other.txt; try eicar cat eicar.com; wait_hook",
        Some(Box::new(move || {
            // Bound to 127.0.0.1 only: another loopback address is refused.
            assert!(get(&hook_addr, "/healthz").is_some());
            assert!(
                get(&format!("127.0.0.2:{port}"), "/healthz").is_none(),
                "the listener answers on 127.0.0.2: it is not bound to 127.0.0.1 alone"
            );
            let prom = Prometheus::start(&[("agent", &hook_addr)]);
            prom.wait_value(
                r#"sum(portcullis_decisions_total{job="agent",outcome="deny"})"#,
                |v| v == 1.0,
                "one open denied",
            );
            prom.wait_value(
                r#"sum(portcullis_decisions_total{job="agent",outcome="allow",reason="verdict"})"#,
                |v| v >= 2.0,
                "the clean opens allowed by their verdicts",
            );
            prom.wait_value(
                r#"portcullis_scans_total{job="agent",class="infected"}"#,
                |v| v == 1.0,
                "one infected scan",
            );
            prom.wait_value(r#"portcullis_ready{job="agent"}"#, |v| v == 1.0, "ready");
            prom.wait_value(
                r#"portcullis_rules_loaded{job="agent"}"#,
                |v| v > 10_000.0,
                "the ruleset's size",
            );
            prom.wait_value(
                r#"portcullis_journal_last_seq{job="agent"}"#,
                |v| v >= 8.0,
                "the journal's last seq",
            );
            prom.wait_value(
                r#"process_open_fds{job="agent"}"#,
                |v| v > 3.0,
                "process metrics",
            );
            prom.wait_value(
                r#"histogram_quantile(0.5, sum by (le) (portcullis_decision_latency_seconds_bucket{job="agent",reason="verdict"}))"#,
                |v| v > 0.0 && v < 15.0,
                "decision latency histogram",
            );
            let (status, scrape) = get(&hook_addr, "/metrics").unwrap();
            assert_eq!(status, 200);
            promtool_check_metrics(&scrape);
            let families = assert_scrape_matches_catalog(&scrape);
            assert!(families >= 20, "{families} portcullis families:\n{scrape}");
        })),
    );
    assert_eq!(o.status("clean"), 0, "{}", o.agent_log);
    assert_eq!(o.status("eicar"), 1, "{}", o.agent_log);
    assert!(
        o.agent_log.contains(&format!("listen=127.0.0.1:{port}")),
        "{}",
        o.agent_log
    );

    let seen = probes.join().unwrap();
    let first = seen.first().expect("the listener never answered");
    assert_eq!(
        (first.0, first.1.as_str(), first.2),
        (
            503,
            "not ready: the protected mounts are not marked yet",
            Some(200)
        ),
        "alive but not ready while the rules compile, before the marks: {seen:?}"
    );
    assert_eq!(seen.last().unwrap().0, 200, "{seen:?}");
    assert_eq!(seen.last().unwrap().1, "ready");
}

#[test]
fn prometheus_scrapes_a_scanner_service_and_readyz_follows_the_group() {
    let test = "prometheus_scrapes_a_scanner_service_and_readyz_follows_the_group";
    let Some(b) = kafka_bootstrap(test) else {
        return;
    };
    if !prometheus_available(test) {
        return;
    }
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scanner.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbootstrap = \"{b}\"\ntopic_prefix = \"{prefix}\"\n[kafka.partitions]\nscan_requests = 2\nverdicts = 2\nverdict_cache = 2\nevents = 2\n[telemetry]\nmetrics_listen = \"127.0.0.1:{}\"\n",
            free_port()
        ),
    )
    .unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("metrics_listen = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--log", "info", "scanner", "--instance", "m1", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("scanner.log")).unwrap())
        .spawn()
        .unwrap();
    let mut scanner = Reaped(child);
    let log = || std::fs::read_to_string(dir.path().join("scanner.log")).unwrap_or_default();

    // Up and alive before the group has assigned anything; then ready.
    let mut answers = Vec::new();
    let t = Instant::now();
    loop {
        assert!(
            scanner.try_wait().unwrap().is_none(),
            "scanner exited:\n{}",
            log()
        );
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "not ready: {answers:?}\n{}",
            log()
        );
        if let Some((s, body)) = get(&addr, "/readyz") {
            answers.push((s, body.trim().to_string()));
            if s == 200 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(answers.last().unwrap().1, "ready");
    if answers.len() > 1 {
        assert_eq!(
            answers[0],
            (
                503,
                "not ready: the scanner group has not assigned partitions yet".to_string()
            )
        );
    }
    assert_eq!(get(&addr, "/healthz").unwrap(), (200, "ok\n".to_string()));
    assert_eq!(get(&addr, "/nothing").unwrap().0, 404);

    let prom = Prometheus::start(&[("scanner", &addr)]);
    prom.wait_value(
        r#"portcullis_ready{job="scanner"}"#,
        |v| v == 1.0,
        "the scanner ready",
    );
    prom.wait_value(
        r#"portcullis_build_info{job="scanner",role="scanner"}"#,
        |v| v == 1.0,
        "build info",
    );
    prom.wait_value(
        r#"portcullis_scanner_assigned_partitions{job="scanner"}"#,
        |v| v == 2.0,
        "both request partitions assigned to the only member",
    );
    // librdkafka statistics arrive every 5 s.
    prom.wait_value(
        r#"sum(portcullis_kafka_consumer_lag_messages{job="scanner",client="scanner_requests"})"#,
        |v| v >= 0.0,
        "consumer lag from librdkafka's statistics",
    );
    prom.wait_value(
        r#"max(portcullis_kafka_broker_rtt_seconds{job="scanner"})"#,
        |v| v > 0.0,
        "broker round trip from librdkafka's statistics",
    );
    let (status, scrape) = get(&addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    promtool_check_metrics(&scrape);
    assert!(assert_scrape_matches_catalog(&scrape) >= 5, "{scrape}");
}
