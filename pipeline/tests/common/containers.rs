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
