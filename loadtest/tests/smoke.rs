//! Short runs of every scenario, checking what a run must produce and
//! what must hold whatever the speed: the report's structure, no hung
//! open, every infected file denied, no clean file denied. Never timing.
//!
//! The node and cluster scenarios need root (fanotify permission events,
//! a private mount namespace); Kafka runs need KAFKA_BOOTSTRAP
//! (`scripts/test` starts a broker). Each prints a loud SKIPPED line when
//! it cannot run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use portcullis_loadtest::markdown::{RATIOS_HEADER, RESULTS_HEADER};
use serde_json::Value;

const TOOL: &str = env!("CARGO_BIN_EXE_portcullis-loadtest");

/// Small, quick and still meaningful: a few infected files of each kind.
const SMALL: &[&str] = &[
    "--files",
    "120",
    "--sizes",
    "4k:80,64k:20",
    "--infected-fraction",
    "0.05",
    "--exec-fraction",
    "0.1",
    "--duration",
    "2s",
    "--max-ops",
    "3000",
    "--seed",
    "7",
    "--quiet",
];

/// The agent (`portcullis`) is another package's binary: build it (a
/// no-op when it is up to date) so that the tool finds a fresh one beside
/// itself. With the workspace's test targets, so that features resolve as
/// in `cargo test --workspace` (and `scripts/test`'s build): `-p` alone
/// would resolve other features and compile every dependency again, into
/// the same target directory.
fn agent_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = Path::new(TOOL).parent().unwrap();
        let mut args = vec!["build", "--workspace", "--tests", "--bins"];
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            args.push("--release");
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new("timeout")
            .arg("1800")
            .arg(cargo)
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building the agent failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(profile_dir.join("portcullis").is_file());
    });
}

fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("not root".to_string())
    } else {
        portcullis_interceptor::sandbox::fanotify_permission_available().err()
    };
    match why {
        None => true,
        Some(why) => {
            eprintln!("\n!!!!!!!! SKIPPED privileged test `{test}`: {why} !!!!!!!!\n");
            false
        }
    }
}

fn bootstrap(test: &str) -> Option<String> {
    match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(b) if !b.trim().is_empty() => Some(b),
        _ => {
            eprintln!(
                "\n!!!!!!!! SKIPPED `{test}`: KAFKA_BOOTSTRAP not set (scripts/test starts a broker) !!!!!!!!\n"
            );
            None
        }
    }
}

/// Runs the tool, bounded in time, with the report in a fresh directory.
fn run(args: &[&str]) -> (Output, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new("timeout")
        .args(["-k", "10", "300", TOOL])
        .args(args)
        .arg("--out")
        .arg(out.path())
        .env_remove("KAFKA_BOOTSTRAP")
        .output()
        .unwrap();
    (o, out)
}

fn explain(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn read_report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The target of a report by name.
fn target<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no target {name}: {r:#}"))
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect()
}

/// Every file of a report is there and well formed, and the run passed
/// its checks; returns the report.
fn check_complete_run(dir: &Path, scenario: &str) -> Value {
    let r = read_report(dir);
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["scenario"], scenario);
    assert!(r["tool_version"].is_string() && r["started_at"].is_string());
    assert_eq!(r["seed"], 7);
    assert!(r["command"].as_array().unwrap().len() > 2);
    assert!(r["host"]["cores"].as_u64().unwrap() >= 1);
    assert_eq!(r["params"]["files"], 120);
    // Over Kafka, the Kafka floor is measured in the same run.
    let over_kafka = !r["params"]["kafka"].is_null();
    let mut expected = if over_kafka {
        vec!["baseline", "floor", "kafka-floor", "portcullis"]
    } else {
        vec!["baseline", "floor", "portcullis"]
    };
    // With --telemetry, the agent with telemetry on comes last.
    let telemetry = names(&r["targets"]).contains(&"portcullis+telemetry");
    if telemetry {
        expected.push("portcullis+telemetry");
    }
    assert_eq!(names(&r["targets"]), expected, "{r:#}");
    for t in r["targets"].as_array().unwrap() {
        assert_eq!(names(&t["phases"]), ["cold", "warm"], "{}", t["name"]);
        for p in t["phases"].as_array().unwrap() {
            let at = format!("{} {}", t["name"], p["name"]);
            assert!(p["ops"].as_u64().unwrap() > 0, "{at}");
            assert_eq!(p["hung_opens"], 0, "{at}");
            assert_eq!(p["clean_denied"], 0, "{at}");
            assert_eq!(p["errors"], 0, "{at}: {}", p["error_samples"]);
            assert!(p["aborted"].is_null(), "{at}");
            assert!(p["throughput_ops_s"].as_f64().unwrap() > 0.0, "{at}");
            let l = &p["latency_us"];
            for k in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
                assert!(l[k].as_f64().unwrap() > 0.0, "{at}: {k}");
            }
            assert!(l["p50_us"].as_f64() <= l["p99_us"].as_f64(), "{at}");
            assert!(!p["latency_curve"].as_array().unwrap().is_empty(), "{at}");
            assert!(p["timeline"]["interval_s"].as_f64().unwrap() > 0.0, "{at}");
            let completed: u64 = p["timeline"]["completed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .sum();
            assert_eq!(completed, p["ops"].as_u64().unwrap(), "{at}");
            assert!(p["by_kind"].is_object(), "{at}");
        }
    }
    let p = target(&r, "portcullis");
    let (total, denied) = p["phases"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0), |(t, d), ph| {
            (
                t + ph["infected_total"].as_u64().unwrap(),
                d + ph["infected_denied"].as_u64().unwrap(),
            )
        });
    assert!(total > 0, "no infected file was accessed: {r:#}");
    assert_eq!(denied, total, "every infected access denied");
    assert!(p["decisions_by_reason"]["verdict"].as_u64().unwrap() > 0);
    assert!(p["verdicts"]["infected"].as_u64().unwrap() > 0);
    assert!(p["decisions"]["deny"].as_u64().unwrap() > 0);
    assert!(p["process"]["peak_rss_kib"].as_u64().unwrap() > 0);
    assert!(p["process"]["cpu_s"].as_f64().unwrap() >= 0.0);
    // Portcullis against every reference, per phase (and the telemetry
    // target against portcullis).
    let ratios = r["ratios"].as_array().unwrap();
    let references = expected.len() - 1 - usize::from(telemetry);
    assert_eq!(
        ratios.len(),
        2 * references + 2 * usize::from(telemetry),
        "{ratios:?}"
    );
    if over_kafka {
        assert!(
            ratios
                .iter()
                .any(|x| x["versus"] == "kafka-floor" && x["phase"] == "cold"),
            "{ratios:?}"
        );
    }
    assert!(ratios
        .iter()
        .all(|x| x["p50"].is_number() && x["throughput"].is_number()));
    let c = &r["checks"];
    assert_eq!(c["passed"], true, "{c:#}");
    assert_eq!(c["hung_opens"], 0);
    assert_eq!(c["clean_denied"], 0);
    assert_eq!(c["infected_denied"], c["infected_total"]);

    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains(RESULTS_HEADER), "{md}");
    assert!(md.contains(RATIOS_HEADER), "{md}");
    assert!(md.contains("| portcullis | cold |"), "{md}");
    assert!(md.contains("**PASSED**"), "{md}");
    for png in ["latency.png", "throughput.png"] {
        let bytes = std::fs::read(dir.join(png)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{png} is not a PNG"
        );
        assert!(bytes.len() > 5_000, "{png}: {} bytes", bytes.len());
    }
    r
}

#[test]
fn the_command_line_lists_the_scenarios_and_names_a_bad_flag() {
    let o = Command::new(TOOL).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for s in ["pipeline", "node", "cluster"] {
        assert!(help.contains(s), "{help}");
    }
    assert!(
        !help.lines().any(|l| l.trim_start().starts_with("opener")),
        "the internal subcommand is hidden: {help}"
    );
    let o = Command::new(TOOL)
        .args(["pipeline", "--infected-fraction", "1.5", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--infected-fraction"),
        "{}",
        explain(&o)
    );
    let o = Command::new(TOOL)
        .args(["cluster", "--quiet"])
        .env_remove("KAFKA_BOOTSTRAP")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("KAFKA_BOOTSTRAP"),
        "{}",
        explain(&o)
    );
    let o = Command::new(TOOL)
        .args(["cluster", "--quiet", "--bootstrap", "192.0.2.1:9092"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("this machine only"),
        "{}",
        explain(&o)
    );
}

#[test]
fn pipeline_smoke_run() {
    let (o, dir) = run(&[&["pipeline"], SMALL].concat());
    assert!(o.status.success(), "{}", explain(&o));
    let r = check_complete_run(dir.path(), "pipeline");
    assert!(r["params"]["kafka"].is_null());
    assert_eq!(
        target(&r, "portcullis")["phases"][0]["by_kind"]["access"]["ops"],
        120
    );
}

/// Starts the tool in a process group of its own and, once a phase has
/// finished (its line on stderr), sends SIGINT to that whole group, as a
/// Ctrl-C at a terminal does. Returns the exit status, the report and
/// stderr. SIGKILL after 120 s if the tool does not stop.
fn interrupted(args: &[&str]) -> (std::process::ExitStatus, Value, String) {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(TOOL)
        .args(args)
        .arg("--out")
        .arg(out.path())
        .env_remove("KAFKA_BOOTSTRAP")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let guard = std::thread::spawn(move || {
        if done_rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .is_err()
        {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        stderr.push_str(&l);
        stderr.push('\n');
        if l.contains(" cold:") {
            break;
        }
    }
    // Well inside the next phase (60 s long): its openers run.
    std::thread::sleep(std::time::Duration::from_secs(3));
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(-pid, libc::SIGINT) }, 0);
    for l in lines {
        stderr.push_str(&l.unwrap());
        stderr.push('\n');
    }
    let status = child.wait().unwrap();
    let _ = done_tx.send(());
    guard.join().unwrap();
    let report = std::fs::read_to_string(out.path().join("report.json"))
        .unwrap_or_else(|e| panic!("no report ({e}); {status}; stderr:\n{stderr}"));
    (status, serde_json::from_str(&report).unwrap(), stderr)
}

/// The phases of a report that say they were interrupted, and how many
/// phases it has.
fn interrupted_phases(r: &Value) -> (usize, usize) {
    let phases: Vec<&Value> = r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["phases"].as_array().unwrap())
        .collect();
    let cut = phases
        .iter()
        .filter(|p| {
            p["aborted"]
                .as_str()
                .is_some_and(|a| a.contains("interrupted (SIGINT)"))
        })
        .count();
    (cut, phases.len())
}

#[test]
fn ctrl_c_stops_the_run_and_writes_a_partial_report() {
    // Flat out for up to 60 s per phase, 3 targets × 2 phases: stopped in
    // the baseline's warm phase, right after its cold one.
    let (status, r, stderr) = interrupted(&[
        "pipeline",
        "--files",
        "120",
        "--sizes",
        "4k",
        "--duration",
        "60s",
        "--seed",
        "7",
    ]);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("partial report"), "{stderr}");
    let (cut, phases) = interrupted_phases(&r);
    assert_eq!(cut, 1, "one phase was cut short: {r:#}");
    assert!(phases < 6, "no phase started after the interrupt: {phases}");
    assert_eq!(r["checks"]["passed"], false);
}

#[test]
fn ctrl_c_stops_a_node_run_with_its_children() {
    if !privileged("ctrl_c_stops_a_node_run_with_its_children") {
        return;
    }
    agent_built();
    let (status, r, stderr) = interrupted(&[
        "node",
        "--files",
        "200",
        "--sizes",
        "4k",
        "--duration",
        "60s",
        "--openers",
        "1",
        "--seed",
        "7",
    ]);
    assert_eq!(status.code(), Some(130), "{stderr}");
    let (cut, phases) = interrupted_phases(&r);
    assert_eq!(cut, 1, "one phase was cut short: {r:#}");
    assert!(phases < 6, "no phase started after the interrupt: {phases}");
    // The Ctrl-C reached the tool alone, not the openers and the agent
    // (process groups of their own): the tool stopped the openers, and
    // they reported what they had done.
    assert_eq!(r["checks"]["hung_opens"], 0, "{stderr}");
}

#[test]
fn pipeline_over_kafka_smoke_run() {
    let Some(b) = bootstrap("pipeline_over_kafka_smoke_run") else {
        return;
    };
    agent_built();
    let (o, dir) = run(&[
        &[
            "pipeline",
            "--kafka",
            "--scanners",
            "1",
            "--bootstrap",
            b.as_str(),
        ],
        SMALL,
    ]
    .concat());
    assert!(o.status.success(), "{}", explain(&o));
    let r = check_complete_run(dir.path(), "pipeline");
    assert_eq!(r["params"]["kafka"]["scanners"], 1);
    let p = target(&r, "portcullis");
    assert!(p["kafka"]["lag_max"].is_u64(), "{p:#}");
    assert_eq!(p["scanners"].as_array().unwrap().len(), 1);
}

#[test]
fn node_smoke_run() {
    if !privileged("node_smoke_run") {
        return;
    }
    agent_built();
    let (o, dir) = run(&[&["node", "--openers", "2"], SMALL].concat());
    assert!(o.status.success(), "{}", explain(&o));
    let r = check_complete_run(dir.path(), "node");
    assert_eq!(r["params"]["openers"], 2);
    // Both kinds of operation ran, and infected executables were denied.
    let cold = &target(&r, "portcullis")["phases"][0];
    assert!(cold["by_kind"]["read"]["ops"].as_u64().unwrap() > 0);
    let exec = &cold["by_kind"]["exec"];
    assert!(exec["ops"].as_u64().unwrap() > 0, "{cold:#}");
    assert!(exec["infected_total"].as_u64().unwrap() > 0, "{cold:#}");
    assert_eq!(exec["infected_denied"], exec["infected_total"]);
    assert!(target(&r, "floor")["process"]["pid"].as_u64().is_some());
}

#[test]
fn node_with_telemetry_smoke_run() {
    if !privileged("node_with_telemetry_smoke_run") {
        return;
    }
    agent_built();
    let (o, dir) = run(&[&["node", "--telemetry", "--trace-ratio", "1.0"], SMALL].concat());
    assert!(o.status.success(), "{}", explain(&o));
    let r = check_complete_run(dir.path(), "node");
    let t = target(&r, "portcullis+telemetry");
    // Infected files denied with telemetry on too (the checks count both
    // agent targets: more infected accesses than portcullis alone saw).
    let infected_of = |name: &str| -> u64 {
        target(&r, name)["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["infected_denied"].as_u64().unwrap())
            .sum()
    };
    assert!(infected_of("portcullis+telemetry") > 0);
    assert_eq!(
        r["checks"]["infected_denied"].as_u64().unwrap(),
        infected_of("portcullis") + infected_of("portcullis+telemetry")
    );
    let m = &t["telemetry"];
    assert!(m["scrapes"].as_u64().unwrap() >= 1, "{m:#}");
    assert_eq!(m["scrape_failures"], 0, "{m:#}");
    assert!(m["metrics_listen"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // The metrics count what the journal holds.
    let journal =
        t["decisions"]["allow"].as_u64().unwrap() + t["decisions"]["deny"].as_u64().unwrap();
    assert_eq!(m["decisions_in_metrics"].as_u64(), Some(journal), "{m:#}");
    // Every access traced: the spans arrived at the tool's receiver.
    assert_eq!(m["trace_ratio"], 1.0);
    assert!(m["otlp_requests"].as_u64().unwrap() > 0, "{m:#}");
    for span in ["access", "scan", "journal append"] {
        assert!(m["spans"][span].as_u64().unwrap_or(0) > 0, "{span}: {m:#}");
    }
    // Traces at 1.0: an access span per decision that reached the agent.
    assert_eq!(m["spans"]["access"].as_u64(), Some(journal), "{m:#}");
    assert!(r["ratios"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["target"] == "portcullis+telemetry" && x["versus"] == "portcullis"));
    // The plain agent has no telemetry section.
    assert!(target(&r, "portcullis").get("telemetry").is_none());
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("Telemetry (portcullis+telemetry)"), "{md}");
}

#[test]
fn cluster_smoke_run() {
    if !privileged("cluster_smoke_run") {
        return;
    }
    let Some(b) = bootstrap("cluster_smoke_run") else {
        return;
    };
    agent_built();
    let (o, dir) = run(&[
        &["cluster", "--scanners", "1", "--bootstrap", b.as_str()],
        SMALL,
    ]
    .concat());
    assert!(o.status.success(), "{}", explain(&o));
    let r = check_complete_run(dir.path(), "cluster");
    let k = &r["params"]["kafka"];
    assert_eq!(k["scanners"], 1);
    assert_eq!(k["scanners_started"], true);
    assert!(k["topic_prefix"].as_str().unwrap().starts_with("loadtest-"));
    let p = target(&r, "portcullis");
    assert!(p["kafka"]["lag_max"].is_u64() && p["kafka"]["lag_final"].is_u64());
    assert!(!p["kafka"]["samples"].as_array().unwrap().is_empty());
    let s = &p["scanners"][0];
    assert!(s["peak_rss_kib"].as_u64().unwrap() > 0, "{s:#}");
    assert!(s["scanned"].as_u64().unwrap() > 0, "{s:#}");
}

#[test]
fn a_responder_that_never_answers_is_stopped_by_the_watchdog() {
    if !privileged("a_responder_that_never_answers_is_stopped_by_the_watchdog") {
        return;
    }
    agent_built();
    let t = std::time::Instant::now();
    let (o, dir) = run(&[
        "node",
        "--stall-floor",
        "--files",
        "40",
        "--duration",
        "3s",
        "--deadline",
        "500ms",
        "--watchdog",
        "2s",
        "--quiet",
    ]);
    // Stopped by itself, well before the outer timeout, and said why.
    assert!(t.elapsed() < std::time::Duration::from_secs(120));
    assert_eq!(o.status.code(), Some(1), "{}", explain(&o));
    let r = read_report(dir.path());
    assert_eq!(r["checks"]["passed"], false);
    assert!(r["checks"]["hung_opens"].as_u64().unwrap() >= 1, "{r:#}");
    assert_eq!(
        names(&r["targets"]),
        ["baseline", "floor"],
        "the run stopped"
    );
    let floor = &r["targets"][1]["phases"][0];
    assert!(
        floor["aborted"].as_str().unwrap().contains("watchdog"),
        "{floor:#}"
    );
    assert!(std::fs::read(dir.path().join("latency.png")).is_ok());
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("**FAILED**"), "{md}");
}

/// A scanner service started here, killed on drop.
struct External(std::process::Child);

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cluster_against_scanner_services_already_running() {
    if !privileged("cluster_against_scanner_services_already_running") {
        return;
    }
    let Some(b) = bootstrap("cluster_against_scanner_services_already_running") else {
        return;
    };
    agent_built();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("ext{}", uuid::Uuid::now_v7().simple());
    let group = format!("{prefix}-group");
    let config = dir.path().join("scanner.toml");
    std::fs::write(
        &config,
        format!(
            "[scan]\nthreads = 1\n\n[kafka]\nbootstrap = \"{b}\"\ntopic_prefix = \"{prefix}\"\nscanner_group = \"{group}\"\n\n[kafka.partitions]\nscan_requests = 4\nverdicts = 4\nverdict_cache = 4\nevents = 1\n"
        ),
    )
    .unwrap();
    let ready = dir.path().join("ready");
    let agent = Path::new(TOOL).with_file_name("portcullis");
    let mut scanner = External(
        Command::new(&agent)
            .args([
                "--log",
                "info",
                "scanner",
                "--instance",
                "ext-1",
                "--config",
            ])
            .arg(&config)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("scanner.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let t = std::time::Instant::now();
    while !ready.exists() {
        assert!(
            scanner.0.try_wait().unwrap().is_none(),
            "the scanner exited"
        );
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "not ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (o, out) = run(&[
        &[
            "cluster",
            "--bootstrap",
            b.as_str(),
            "--scanners-at",
            prefix.as_str(),
            "--scanner-group",
            group.as_str(),
        ],
        SMALL,
    ]
    .concat());
    assert!(o.status.success(), "{}", explain(&o));
    let r = check_complete_run(out.path(), "cluster");
    let k = &r["params"]["kafka"];
    assert_eq!(k["scanners_started"], false);
    assert_eq!(k["topic_prefix"], prefix.as_str());
    assert!(target(&r, "portcullis")["scanners"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(target(&r, "portcullis")["kafka"]["lag_max"].is_u64());
}
