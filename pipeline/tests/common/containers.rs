//! Helpers of the container runtime tests (Podman, containerd): the agent
//! as a child process with its control socket and journal, and the
//! journal's ECS lines picked by container.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{read_events, Reaped};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

/// A command's outcome, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub struct Agent {
    child: Option<Reaped>,
    pub log: PathBuf,
    pub journal: PathBuf,
    pub socket: PathBuf,
}

impl Agent {
    pub fn exited(&self) -> bool {
        let mut c = self.child.as_ref().map(|c| c.0.id());
        c.take()
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid))
    }

    /// The agent's resident memory (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().map(|c| c.0.id()).unwrap();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `portcullis containers --format json`.
    pub fn containers(&self) -> Value {
        let o = Command::new(bin())
            .args(["containers", "--format", "json", "--socket"])
            .arg(&self.socket)
            .output()
            .unwrap();
        assert!(o.status.success(), "portcullis containers: {}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// SIGTERM, wait, then the journal as ECS.
    pub fn stop(mut self) -> (Vec<Value>, String) {
        let mut child = self.child.take().unwrap();
        let pid = child.0.id();
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = child.0.try_wait() {
                assert!(status.success(), "agent exit {status:?}:\n{}", self.log());
                return (read_events(&self.journal), self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the agent did not stop within 30 s:\n{}", self.log());
    }
}

pub fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

pub fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `container_observed` events of a container with this ECS action.
pub fn observed<'a>(events: &'a [Value], id: &str, action: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["portcullis"]["kind"] == "container_observed")
        .filter(|e| e["container"]["id"] == id && e["event"]["action"] == action)
        .collect()
}

/// `portcullis replay --journal DIR --format FORMAT` of a stopped agent.
pub fn replay(journal: &Path, format: &str) -> String {
    let o = Command::new(bin())
        .args(["replay", "--format", format, "--journal"])
        .arg(journal)
        .output()
        .unwrap();
    assert!(o.status.success(), "replay: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

pub fn denied(o: &Output) -> bool {
    !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Operation not permitted")
}

/// The ECS accesses of a container to paths ending in `suffix`.
pub fn accesses<'a>(events: &'a [Value], id: &str, suffix: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["portcullis"]["kind"] == "file_accessed")
        .filter(|e| e["container"]["id"] == id)
        .filter(|e| {
            e["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(suffix))
        })
        .collect()
}

impl Agent {
    /// `portcullis run --containers --config CONFIG` with its journal,
    /// log and ready file in `dir`; returns once it is ready.
    pub fn start(dir: &Path, config: &Path) -> Agent {
        let ready = dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let child = Command::new(bin())
            .args([
                "--log",
                "info,portcullis_containers=debug",
                "run",
                "--containers",
                "--config",
            ])
            .arg(config)
            .arg("--journal")
            .arg(dir.join("journal"))
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let agent = Agent {
            child: Some(Reaped(child)),
            log: dir.join("agent.log"),
            journal: dir.join("journal"),
            socket: dir.join("agent.sock"),
        };
        wait_for(Duration::from_secs(60), "the agent's ready file", || {
            ready.exists() || agent.exited()
        });
        assert!(!agent.exited(), "the agent exited:\n{}", agent.log());
        agent
    }
}

/// The most an agent's resident memory may grow over start/stop cycles:
/// the bounded memory of gone containers, the journal's caches and the
/// allocator's slack, not a per-container leak (200 cycles leaking a page
/// each stay under it; a leak of a marked container's state does not).
pub const CYCLE_RSS_SLACK_KIB: u64 = 16 * 1024;

/// Container `id` in the answer of `portcullis containers --format json`.
pub fn find<'a>(listed: &'a Value, id: &str) -> Option<&'a Value> {
    listed["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["container"]["id"] == id)
}

/// Inside a protected container (`exec` runs a shell script there): the
/// infected file's open and an infected exec are denied, a clean open and
/// exec pass; the infected `host` file, outside every container, opens.
pub fn assert_protected_inside(exec: &dyn Fn(&str) -> Output, host: &Path) {
    let infected = exec("cat /data/eicar.com");
    assert!(denied(&infected), "{}", text(&infected));
    let clean = exec("cat /data/clean.txt");
    assert!(clean.status.success(), "{}", text(&clean));
    let infected_exec = exec(&format!(
        "printf '%s' '{}' > /tmp/e && chmod +x /tmp/e && /tmp/e",
        super::EICAR
    ));
    assert!(!infected_exec.status.success(), "{}", text(&infected_exec));
    let clean_exec = exec("/bin/busybox true");
    assert!(clean_exec.status.success(), "{}", text(&clean_exec));
    let on_host = Command::new("cat").arg(host).output().unwrap();
    assert!(
        on_host.status.success(),
        "host files are untouched: {}",
        text(&on_host)
    );
}

/// The journal side of [`assert_protected_inside`]: container `id`'s
/// infected exec was intercepted as an exec, and no event names the host
/// file.
pub fn assert_exec_seen_and_host_untouched(events: &[Value], id: &str) {
    assert!(
        accesses(events, id, "/tmp/e")
            .iter()
            .any(|a| a["event"]["action"] == "exec"),
        "the infected exec was intercepted as an exec: {:#?}",
        accesses(events, id, "/tmp/e")
    );
    assert!(
        !events.iter().any(|e| e["file"]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("host-eicar.com"))),
        "the host file was never intercepted"
    );
}

/// A container that only policy `policy` selects, with paths `/data/**`:
/// its `/data/eicar.com` is denied under that policy, a copy in `/tmp` (no
/// policy covers it) opens. Stops the agent; returns its events and log.
pub fn assert_policy_scope(
    agent: Agent,
    exec: &dyn Fn(&str) -> Output,
    id: &str,
    policy: &str,
) -> (Vec<Value>, String) {
    let listed = agent.containers();
    let mine = find(&listed, id).unwrap_or_else(|| panic!("{id} not listed: {listed:#}"));
    assert_eq!(
        mine["policies"],
        serde_json::json!([policy]),
        "portcullis containers names the policy that selects it: {mine:#}"
    );
    let covered = exec("cat /data/eicar.com");
    assert!(
        denied(&covered),
        "in the policy's paths: {}",
        text(&covered)
    );
    let outside = exec(&format!(
        "printf '%s' '{}' > /tmp/e && cat /tmp/e",
        super::EICAR
    ));
    assert!(
        outside.status.success(),
        "outside every policy that selects this container: {}",
        text(&outside)
    );
    let (events, log) = agent.stop();
    let data = accesses(&events, id, "/data/eicar.com");
    assert!(!data.is_empty(), "{log}");
    assert_eq!(data[0]["portcullis"]["policy"]["name"], policy);
    let tmp = accesses(&events, id, "/tmp/e");
    assert!(!tmp.is_empty(), "{log}");
    assert!(
        tmp.iter().all(|a| a["portcullis"].get("policy").is_none()),
        "no policy covers /tmp/e of this container: {tmp:#?}"
    );
    (events, log)
}

/// CEF `cs6` and OCSF `container.name` carry the name of container `id`
/// on its access to the EICAR file; returns that OCSF event.
pub fn assert_siem_names(journal: &Path, id: &str, name: &str) -> Value {
    let cef = replay(journal, "cef");
    let line = cef
        .lines()
        .find(|l| l.contains("|FM-001|") && l.contains(id) && l.contains("eicar.com"))
        .unwrap_or_else(|| panic!("no CEF access line for {id}:\n{cef}"));
    assert!(
        line.contains(&format!("cs6={name} cs6Label=containerName")),
        "{line}"
    );
    let ocsf = replay(journal, "ocsf");
    let o = ocsf
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|o| o["actor"]["process"]["container"]["uid"] == id)
        .unwrap_or_else(|| panic!("no OCSF event of {id}:\n{ocsf}"));
    assert_eq!(o["actor"]["process"]["container"]["name"], name, "{o:#}");
    o
}

/// After start/stop cycles: once the registry is back to `before`'s
/// containers, the agent holds as many filesystem and mount marks, keeps
/// a bounded list of gone containers, and its memory grew at most
/// [`CYCLE_RSS_SLACK_KIB`] from `rss_before`.
pub fn assert_cycles_left_nothing(agent: &Agent, before: &Value, rss_before: u64, cycles: usize) {
    wait_for(
        Duration::from_secs(10),
        "the registry to retire every cycle",
        || {
            agent.containers()["containers"].as_array().unwrap().len()
                == before["containers"].as_array().unwrap().len()
        },
    );
    let after = agent.containers();
    assert_eq!(
        after["marks"]["filesystems"], before["marks"]["filesystems"],
        "{before:#}\n{after:#}"
    );
    assert_eq!(after["marks"]["mounts"], before["marks"]["mounts"]);
    assert!(after["recently_gone"].as_u64().unwrap() <= 1024);
    let rss_after = agent.rss_kib();
    assert!(
        rss_after <= rss_before + CYCLE_RSS_SLACK_KIB,
        "agent memory grew from {rss_before} to {rss_after} KiB over {cycles} cycles"
    );
}

/// A container runtime test cannot run here (`why`): with
/// PORTCULLIS_REQUIRE_CONTAINERS=1 (scripts/test) that fails it; otherwise
/// it is skipped with a loud line on stderr.
pub fn runtime_missing(test: &str, runtime: &str, why: &str) {
    if std::env::var("PORTCULLIS_REQUIRE_CONTAINERS").as_deref() == Ok("1") {
        panic!("`{test}` needs {runtime} here (PORTCULLIS_REQUIRE_CONTAINERS=1): {why}");
    }
    let line = format!("\n!!!!!!!! SKIPPED {runtime} test `{test}`: {why} !!!!!!!!\n");
    // Straight to the process's stderr: the harness captures eprintln!.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// `portcullis replay --format ecs --journal JOURNAL ARGS`: its lines.
pub fn replay_ecs(journal: &Path, args: &[&str]) -> Vec<Value> {
    let o = Command::new(bin())
        .args(["replay", "--format", "ecs", "--journal"])
        .arg(journal)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "replay {args:?}: {}", text(&o));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `decision_made` event of the ECS access event `access`.
pub fn decision_of<'a>(events: &'a [Value], access: &Value) -> &'a Value {
    events
        .iter()
        .find(|d| {
            d["portcullis"]["kind"] == "decision_made"
                && d["portcullis"]["access_id"] == access["event"]["id"]
        })
        .unwrap_or_else(|| panic!("no decision for {access:#}"))
}
