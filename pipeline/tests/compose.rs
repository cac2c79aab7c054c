//! `compose/docker-compose.yml` brought up with podman-compose on this
//! machine, as compose/README.md shows it: the broker becomes ready, the
//! scanner group forms, the agent (in its own container, with the host's
//! pid namespace) protects a container started beside the stack and
//! leaves the stack's own containers alone, an infected file opened in
//! that container is denied, the decision reaches the ECS topic on the
//! published port, and `down` leaves nothing behind.
//!
//! Needs root, fanotify permission events, the images of `scripts/images
//! all`, the test image of `scripts/containers image` and
//! `scripts/compose setup`; scripts/test sets PORTCULLIS_REQUIRE_COMPOSE=1,
//! which turns any of them missing into a failure instead of a loud
//! SKIPPED line. The stack's names are fixed (`portcullis-*`): one stack
//! per host, so a stack already up fails the test instead of being torn
//! down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, podman};
use serde_json::Value;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../compose/docker-compose.yml");
const IMAGES: [&str; 3] = [
    "localhost/portcullis:latest",
    "localhost/portcullis-kafka:latest",
    "localhost/portcullis-test:latest",
];
const STACK: [&str; 5] = [
    "portcullis-broker",
    "portcullis-scanner-1",
    "portcullis-scanner-2",
    "portcullis-siem-export",
    "portcullis-agent",
];

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// podman-compose from `scripts/compose setup`, if installed.
fn podman_compose() -> Option<PathBuf> {
    let o = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/compose"))
        .arg("bin")
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
}

/// What this test needs besides root and fanotify (`require_privileges!`),
/// or why it cannot run.
fn requirements(test: &str) -> Option<PathBuf> {
    let mut missing = Vec::new();
    for image in IMAGES {
        let ok = Command::new("timeout")
            .args(["30", "podman", "image", "exists", image])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            missing.push(format!(
                "image {image} (scripts/images all; scripts/containers image)"
            ));
        }
    }
    let pc = podman_compose();
    if pc.is_none() {
        missing.push("podman-compose (scripts/compose setup)".into());
    }
    if missing.is_empty() {
        return pc;
    }
    assert!(
        std::env::var_os("PORTCULLIS_REQUIRE_COMPOSE").is_none(),
        "{test}: missing {missing:?}"
    );
    eprintln!("!!!!!!!! SKIPPED {test}: missing {missing:?} !!!!!!!!");
    None
}

/// `podman-compose -f compose/docker-compose.yml ARGS`, bounded.
fn compose(pc: &Path, port: u16, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("300")
        .arg(pc)
        .args(["-f", FILE])
        .args(args)
        .env("PORTCULLIS_KAFKA_PORT", port.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Tears the stack (and the test's container) down however the test ends.
struct Stack {
    pc: PathBuf,
    port: u16,
    victim: String,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.victim]);
        let _ = compose(&self.pc, self.port, &["down", "-v"]);
    }
}

fn wait_for<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `portcullis containers --format json` inside the agent's container.
fn protected() -> Option<Value> {
    let o = podman(&[
        "exec",
        "portcullis-agent",
        "portcullis",
        "containers",
        "--format",
        "json",
    ]);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).ok())
        .flatten()
}

fn listed(containers: &Value, id: &str) -> bool {
    containers["containers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["container"]["id"] == id))
}

/// Every message of `topic` on the broker's published port, read with
/// kcat as compose/README.md does.
fn kcat_topic(port: u16, topic: &str) -> Vec<Value> {
    let o = Command::new("timeout")
        .args(["60", "kcat", "-b", &format!("127.0.0.1:{port}")])
        .args(["-C", "-t", topic, "-o", "beginning", "-e", "-q"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The scanner group's members, once the group is stable.
fn scanner_group(port: u16) -> Option<Vec<String>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .create()
        .ok()?;
    let list = c
        .fetch_group_list(Some("portcullis.scanners"), Duration::from_secs(5))
        .ok()?;
    let g = list.groups().first()?;
    (g.state() == "Stable").then(|| {
        g.members()
            .iter()
            .map(|m| m.client_id().to_string())
            .collect()
    })
}

#[test]
fn compose_up_protects_the_nodes_containers_and_exports_the_denial() {
    let test = "compose_up_protects_the_nodes_containers_and_exports_the_denial";
    require_privileges!(test);
    let Some(pc) = requirements(test) else {
        return;
    };
    let running: Vec<&str> = STACK
        .into_iter()
        .filter(|n| podman(&["container", "exists", n]).status.success())
        .collect();
    assert!(
        running.is_empty(),
        "a compose stack is already on this host ({running:?}); `scripts/compose down` first"
    );
    let port = free_port();
    let stack = Stack {
        pc: pc.clone(),
        port,
        victim: format!("pc-test-compose-{}", std::process::id()),
    };

    let up = compose(&pc, port, &["up", "-d"]);
    assert!(up.status.success(), "podman-compose up: {}", text(&up));
    let logs = || {
        STACK
            .iter()
            .map(|n| format!("--- {n}\n{}", text(&podman(&["logs", "--tail", "40", n]))))
            .collect::<String>()
    };

    // The broker answers on the published port.
    wait_for(Duration::from_secs(120), "the broker on 127.0.0.1", || {
        Command::new("timeout")
            .args(["20", "kcat", "-b", &format!("127.0.0.1:{port}"), "-L"])
            .output()
            .ok()
            .filter(|o| o.status.success())
    });
    // The scanner group forms with both scanner services.
    let members = wait_for(Duration::from_secs(120), "the scanner group", || {
        scanner_group(port).filter(|m| m.len() == 2)
    });
    assert!(
        members.iter().all(|m| m.starts_with("portcullis-scanner-")),
        "{members:?}"
    );
    // The agent is up and protects none of the stack's containers.
    let before = wait_for(
        Duration::from_secs(120),
        "the agent's control socket",
        protected,
    );
    assert_eq!(
        before["containers"].as_array().map(Vec::len),
        Some(0),
        "the stack's own containers are skipped: {before:#}\n{}",
        logs()
    );

    // A container of the node, started beside the stack: found by the
    // agent's /proc scan and mount watcher, and protected.
    let run = podman(&[
        "run",
        "-d",
        "--name",
        &stack.victim,
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--network",
        "none",
        IMAGES[2],
        "sleep",
        "600",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let id = String::from_utf8_lossy(&run.stdout).trim().to_string();
    wait_for(Duration::from_secs(30), "the container protected", || {
        protected().filter(|c| listed(c, &id))
    });
    let infected = podman(&["exec", &stack.victim, "cat", "/data/eicar.com"]);
    assert!(
        !infected.status.success()
            && String::from_utf8_lossy(&infected.stderr).contains("Operation not permitted"),
        "the infected file is denied: {}\n{}",
        text(&infected),
        logs()
    );
    let clean = podman(&["exec", &stack.victim, "cat", "/data/clean.txt"]);
    assert!(clean.status.success(), "{}", text(&clean));

    // The access (with the container's name) and its denial, scanned by a
    // scanner service, reach the ECS topic.
    let (access, deny) = wait_for(
        Duration::from_secs(60),
        "the denial on the ECS topic",
        || {
            let ecs = kcat_topic(port, "portcullis.siem.ecs.v1");
            let access = ecs
                .iter()
                .find(|e| {
                    e["portcullis"]["kind"] == "file_accessed"
                        && e["container"]["id"] == id.as_str()
                        && e["file"]["path"] == "/data/eicar.com"
                })?
                .clone();
            let deny = ecs.into_iter().find(|d| {
                d["portcullis"]["kind"] == "decision_made"
                    && d["portcullis"]["access_id"] == access["event"]["id"]
            })?;
            Some((access, deny))
        },
    );
    assert_eq!(deny["event"]["action"], "deny", "{deny:#}");
    assert_eq!(deny["event"]["reason"], "verdict", "{deny:#}");
    assert_eq!(
        access["container"]["name"],
        stack.victim.as_str(),
        "{access:#}"
    );
    assert_eq!(access["host"]["name"], "compose-node");
    // Each container of the stack was skipped by its rule, once; the
    // agent's own by being the agent's.
    let ecs = kcat_topic(port, "portcullis.siem.ecs.v1");
    for name in STACK {
        let skipped: Vec<&Value> = ecs
            .iter()
            .filter(|e| {
                e["event"]["action"] == "container-unprotected" && e["container"]["name"] == name
            })
            .collect();
        assert_eq!(skipped.len(), 1, "{name}: {skipped:#?}");
        let reason = skipped[0]["event"]["reason"].as_str().unwrap();
        if name == "portcullis-agent" {
            assert!(reason.starts_with("the agent's own container"), "{reason}");
        } else {
            assert_eq!(
                reason, "skipped by containers.skip[0] (name = \"portcullis-*\")",
                "{name}"
            );
        }
    }

    // `down` leaves nothing running, and no network or volume.
    let _ = podman(&["rm", "-f", "-t", "0", &stack.victim]);
    let down = compose(&pc, port, &["down", "-v"]);
    assert!(down.status.success(), "{}", text(&down));
    let left = podman(&[
        "ps",
        "-a",
        "--filter",
        "label=io.podman.compose.project=portcullis",
        "--format",
        "{{.Names}}",
    ]);
    assert!(
        left.status.success() && left.stdout.is_empty(),
        "{}",
        text(&left)
    );
    for name in STACK {
        assert!(
            !podman(&["container", "exists", name]).status.success(),
            "{name}"
        );
    }
    let nets = podman(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        !String::from_utf8_lossy(&nets.stdout).contains("portcullis"),
        "{}",
        text(&nets)
    );
    let vols = podman(&["volume", "ls", "--format", "{{.Name}}"]);
    assert!(
        !String::from_utf8_lossy(&vols.stdout).contains("portcullis"),
        "{}",
        text(&vols)
    );
}
