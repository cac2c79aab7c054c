//! Shared harness of the privileged end-to-end tests: the real
//! `portcullis run` protecting a tmpfs in a private mount namespace.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod containers;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// A child process of a test (scanner service, exporter, syslog daemon),
/// killed and reaped when dropped, so a failing test leaves none behind.
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// Why privileged tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        return Some("unshare(1) not installed".into());
    }
    portcullis_interceptor::sandbox::fanotify_permission_available().err()
}

/// The broker of the Kafka tests (`scripts/test` starts one and sets
/// `KAFKA_BOOTSTRAP`), or `None` after a loud SKIPPED line.
pub fn kafka_bootstrap(test: &str) -> Option<String> {
    match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(b) if !b.trim().is_empty() => Some(b),
        _ => {
            // Straight to the process's stderr: the test harness captures
            // eprintln! of passing tests.
            let line = format!(
                "\n!!!!!!!! SKIPPED `{test}`: KAFKA_BOOTSTRAP not set (scripts/test starts a broker) !!!!!!!!\n"
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            None
        }
    }
}

#[macro_export]
macro_rules! require_privileges {
    ($name:expr) => {
        if let Some(why) = $crate::common::unavailable() {
            eprintln!(
                "\n!!!!!!!! SKIPPED privileged test `{}`: {why} !!!!!!!!\n",
                $name
            );
            return;
        }
    };
}

pub struct Outcome {
    /// name -> (exit status, stderr) of each `try` in the script.
    pub results: HashMap<String, (i32, String)>,
    pub events: Vec<Value>,
    pub agent_log: String,
}

impl Outcome {
    pub fn status(&self, name: &str) -> i32 {
        self.results
            .get(name)
            .unwrap_or_else(|| panic!("no result `{name}`; log:\n{}", self.agent_log))
            .0
    }

    pub fn stderr(&self, name: &str) -> &str {
        &self.results[name].1
    }

    pub fn of_kind(&self, action_or_kind: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["portcullis"]["kind"] == action_or_kind)
            .collect()
    }

    pub fn accesses_of(&self, name: &str) -> Vec<&Value> {
        self.of_kind("file_accessed")
            .into_iter()
            .filter(|e| {
                e["file"]["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(name))
            })
            .collect()
    }

    pub fn access_id(&self, name: &str) -> String {
        let a = self.accesses_of(name);
        assert!(!a.is_empty(), "no access to {name}");
        a[0]["event"]["id"].as_str().unwrap().to_string()
    }

    /// The decision for an access.
    pub fn decision(&self, access: &str) -> &Value {
        self.of_kind("decision_made")
            .into_iter()
            .find(|e| e["portcullis"]["access_id"] == access)
            .unwrap_or_else(|| panic!("no decision for {access}"))
    }

    pub fn verdict(&self, access: &str) -> Option<&Value> {
        self.of_kind("verdict_issued")
            .into_iter()
            .find(|e| e["portcullis"]["access_id"] == access)
    }
}

/// Runs a scenario. `setup` runs before the agent starts (its opens are
/// not seen), `script` while it runs. Both run in the tmpfs as cwd, with
/// `$MNT` the mount and `try NAME CMD...` recording CMD's exit status.
/// `setup` may set `AGENT_WRAPPER` (a command the agent runs under, e.g.
/// strace) and export variables for the agent.
pub fn scenario(config: &str, args: &str, setup: &str, script: &str) -> Outcome {
    scenario_with_hook(config, args, setup, script, None)
}

/// Like [`scenario`], with a hook run (on another thread) once the agent is
/// ready; the script can wait for it with `wait_hook`.
pub fn scenario_with_hook(
    config: &str,
    args: &str,
    setup: &str,
    script: &str,
    hook: Option<Box<dyn FnOnce() + Send>>,
) -> Outcome {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let config = if config.contains("[actions]") {
        config.to_string()
    } else {
        format!(
            "{config}\n[actions]\nquarantine_dir = \"{}\"\n",
            w.join("quarantine").display()
        )
    };
    std::fs::write(w.join("config.toml"), config).unwrap();
    let harness = format!(
        r#"
set -u
WORK={work}
MNT=$(mktemp -d /tmp/portcullis-test-mnt.XXXXXX)
mount -t tmpfs -o size=512m tmpfs "$MNT" || exit 90
cd "$MNT"
EICAR='{eicar}'
wait_hook() {{ for _ in $(seq 1 600); do [ -f "$WORK/hook-done" ] && return 0; sleep 0.05; done; echo "hook_timeout 1" >> "$WORK/results"; }}
# Waits (at most about 15 s) until `replay` with these filters prints
# something from the live journal: for facts recorded after the open
# returned.
wait_journal() {{ local end=$((SECONDS + 15)); while [ $SECONDS -lt $end ]; do [ -n "$(timeout 5 {bin} replay --journal "$WORK/journal" "$@" 2>/dev/null)" ] && return 0; sleep 0.1; done; echo "journal_timeout 1" >> "$WORK/results"; }}
try() {{ local name=$1; shift; local err; err=$(timeout 20 "$@" 2>&1 >/dev/null); echo "$name $? ${{err//$'\n'/ }}" >> "$WORK/results"; }}
{setup}
${{AGENT_WRAPPER:-}} {bin} --log info run --config "$WORK/config.toml" --protect "$MNT" --journal "$WORK/journal" --ready-file "$WORK/ready" {args} 2> "$WORK/agent.log" &
AGENT=$!
trap 'kill -9 $AGENT 2>/dev/null' EXIT
for _ in $(seq 1 200); do [ -f "$WORK/ready" ] && break; kill -0 $AGENT 2>/dev/null || break; sleep 0.05; done
[ -f "$WORK/ready" ] || {{ echo "agent_exit 91 not ready" >> "$WORK/results"; exit 0; }}
{script}
# Under AGENT_WRAPPER the agent is the wrapper's child: signal it, and the
# wrapper (strace) ends with it.
STOP_PID=$AGENT
[ -n "${{AGENT_WRAPPER:-}}" ] && STOP_PID=$(pgrep -x portcullis -P $AGENT | head -n 1)
kill -TERM ${{STOP_PID:-$AGENT}}
timeout 30 tail --pid=$AGENT -f /dev/null
wait $AGENT; echo "agent_exit $?" >> "$WORK/results"
cd /; umount "$MNT"; rmdir "$MNT"
"#,
        work = w.display(),
        eicar = EICAR,
        bin = env!("CARGO_BIN_EXE_portcullis"),
    );
    let hook_thread = hook.map(|h| {
        let ready = w.join("ready");
        let done = w.join("hook-done");
        std::thread::spawn(move || {
            let t = std::time::Instant::now();
            while !ready.exists() && t.elapsed() < std::time::Duration::from_secs(60) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            h();
            std::fs::write(done, b"done").unwrap();
        })
    });
    let status = Command::new("timeout")
        .args([
            "120",
            "unshare",
            "-m",
            "--propagation",
            "private",
            "bash",
            "-c",
            &harness,
        ])
        .stderr(std::fs::File::create(w.join("harness.err")).unwrap())
        .status()
        .unwrap();
    if let Some(t) = hook_thread {
        t.join().unwrap();
    }
    let agent_log = std::fs::read_to_string(w.join("agent.log")).unwrap_or_default();
    let harness_err = std::fs::read_to_string(w.join("harness.err")).unwrap_or_default();
    assert!(
        status.success(),
        "scenario failed: {status}\n{harness_err}\n{agent_log}"
    );
    let results = std::fs::read_to_string(w.join("results")).unwrap_or_default();
    let results: HashMap<String, (i32, String)> = results
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            Some((
                it.next()?.to_string(),
                (
                    it.next()?.parse().ok()?,
                    it.next().unwrap_or("").to_string(),
                ),
            ))
        })
        .collect();
    let events = read_events(&w.join("journal"));
    let out = Outcome {
        results,
        events,
        agent_log,
    };
    assert_eq!(
        out.status("agent_exit"),
        0,
        "agent did not stop cleanly:\n{}",
        out.agent_log
    );
    out
}

pub fn read_events(journal: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["events", "--format", "jsonl", "--journal"])
        .arg(journal)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "events: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `podman ARGS` under a timeout of two minutes, stdin closed.
pub fn podman(args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .arg("120")
        .arg("podman")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}
