//! Container protection against a real runtime: Podman (with runc), the
//! image `localhost/portcullis-test` that `scripts/containers image` builds
//! from busybox and test files (no registry is reachable here).
//!
//! Every container here is a test's own (`pc-test-*`), with its own
//! overlay: the agent marks container roots only, never a host
//! filesystem. The tests share the node's container runtime, so they run
//! one at a time (a process-wide lock).
//!
//! Gated on root, fanotify permission events and Podman with the test
//! image; `scripts/test` sets PORTCULLIS_REQUIRE_CONTAINERS=1, which turns
//! a missing runtime into a failure instead of a loud SKIPPED line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::containers::*;
use common::*;
use serde_json::Value;

const IMAGE: &str = "localhost/portcullis-test:latest";
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Why these tests cannot run here, if they cannot.
fn containers_unavailable() -> Option<String> {
    if let Some(why) = unavailable() {
        return Some(why);
    }
    let out = Command::new("timeout")
        .args(["60", "podman", "image", "exists", IMAGE])
        .output();
    match out {
        Err(e) => Some(format!("podman cannot run: {e}")),
        Ok(o) if !o.status.success() => Some(format!(
            "podman or the image {IMAGE} is missing (scripts/containers setup && scripts/containers image): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => None,
    }
}

macro_rules! require_containers {
    ($name:expr) => {
        if let Some(why) = containers_unavailable() {
            runtime_missing($name, "Podman", &why);
            return;
        }
    };
}

const LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// A test's world: a temp dir with the agent's config, sockets and
/// journal, a Podman API service on a socket of its own, and a hooks dir
/// with the portcullis OCI hook.
struct World {
    dir: tempfile::TempDir,
    _api: Reaped,
    names: Vec<String>,
}

impl World {
    fn new(on_agent_unavailable: &str) -> World {
        Self::with_config(on_agent_unavailable, "")
    }

    /// `extra` is appended to the agent's config file (policies).
    fn with_config(on_agent_unavailable: &str, extra: &str) -> World {
        Self::with_scans(on_agent_unavailable, extra, "rescan_interval = \"500ms\"")
    }

    /// The hook alone: no scan after mount changes, none on the interval
    /// during a test (what proves the hook closes the window by itself).
    fn hook_only(on_agent_unavailable: &str) -> World {
        Self::with_scans(
            on_agent_unavailable,
            "",
            "rescan_interval = \"1h\"\nwatch_mounts = false",
        )
    }

    /// `scans` goes into `[containers]`.
    fn with_scans(on_agent_unavailable: &str, extra: &str, scans: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let api_sock = dir.path().join("podman.sock");
        let api = Reaped(
            Command::new("podman")
                .args(["system", "service", "--time=0"])
                .arg(format!("unix://{}", api_sock.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for(Duration::from_secs(30), "the podman API socket", || {
            api_sock.exists()
        });
        let hooks = dir.path().join("hooks.d");
        std::fs::create_dir(&hooks).unwrap();
        let hook = serde_json::json!({
            "version": "1.0.0",
            "hook": {
                "path": bin(),
                "args": ["portcullis", "--log", "warn", "oci-hook",
                    "--socket", dir.path().join("agent.sock"),
                    "--spool-dir", dir.path().join("spool"),
                    "--timeout", "5s",
                    "--on-agent-unavailable", on_agent_unavailable,
                    "--runtime", "podman"],
                "timeout": 10
            },
            "when": { "always": true },
            "stages": ["createRuntime"]
        });
        std::fs::write(hooks.join("portcullis.json"), hook.to_string()).unwrap();
        std::fs::write(
            dir.path().join("portcullis.toml"),
            format!(
                "[enforcer]\ndeadline = \"12s\"\n{extra}\n[containers]\nruntimes = [\"podman\"]\npodman_socket = \"{}\"\ncontrol_socket = \"{}\"\n{scans}\n[containers.hook]\nspool_dir = \"{}\"\n",
                api_sock.display(),
                dir.path().join("agent.sock").display(),
                dir.path().join("spool").display()
            ),
        )
        .unwrap();
        World {
            dir,
            _api: api,
            names: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn name(&mut self, tag: &str) -> String {
        let n = format!("pc-test-{tag}-{}", std::process::id());
        let _ = podman(&["rm", "-f", "-t", "0", &n]);
        self.names.push(n.clone());
        n
    }

    /// `podman --hooks-dir <ours> run ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        let hooks = self.path("hooks.d");
        let mut all = vec!["--hooks-dir", hooks.to_str().unwrap(), "run"];
        all.extend(LIMITS);
        all.extend(["--network", "none"]);
        all.extend(args);
        podman(&all)
    }

    /// A container that sleeps, started with our hook.
    fn start_sleeper(&mut self, tag: &str) -> String {
        let name = self.name(tag);
        let o = self.run(&["-d", "--name", &name, IMAGE, "sleep", "600"]);
        assert!(o.status.success(), "podman run: {}", text(&o));
        name
    }

    fn agent(&self) -> Agent {
        Agent::start(self.dir.path(), &self.path("portcullis.toml"))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = podman(&["rm", "-f", "-t", "0", n]);
        }
    }
}

fn id_of(name: &str) -> String {
    let o = podman(&["inspect", "-f", "{{.Id}}", name]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn exec(name: &str, script: &str) -> Output {
    podman(&["exec", name, "sh", "-c", script])
}

#[test]
fn a_container_running_before_the_agent_is_protected_at_its_start() {
    require_privileges!("a_container_running_before_the_agent_is_protected_at_its_start");
    require_containers!("a_container_running_before_the_agent_is_protected_at_its_start");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::new("allow");
    let name = w.start_sleeper("before");
    let id = id_of(&name);
    // A host file with the same infected content, outside every container.
    let host = w.path("host-eicar.com");
    std::fs::write(&host, EICAR).unwrap();

    let agent = w.agent();
    let listed = agent.containers();
    let mine = find(&listed, &id)
        .unwrap_or_else(|| panic!("{id} not listed: {listed:#}"))
        .clone();
    assert_eq!(mine["via"], "scan");
    assert_eq!(mine["container"]["runtime"], "podman");
    assert!(
        listed["marks"]["filesystems"].as_u64().unwrap() >= 1,
        "{listed:#}"
    );

    assert_protected_inside(&|script| exec(&name, script), &host);

    // Metadata from the runtime, within its bound.
    wait_for(Duration::from_secs(10), "the container's name", || {
        find(&agent.containers(), &id).is_some_and(|c| c["meta"]["name"] == name.as_str())
    });
    let described = agent.containers();
    let c = find(&described, &id).unwrap();
    assert_eq!(c["meta"]["image"], IMAGE, "{c:#}");
    assert!(
        c["meta"]["image_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{c:#}"
    );

    let (events, log) = agent.stop();
    let e = accesses(&events, &id, "/data/eicar.com");
    assert!(!e.is_empty(), "no access to eicar.com from {id}:\n{log}");
    // Attributed from the first access: Podman's storage names the
    // container while it is being marked.
    assert_eq!(e[0]["container"]["name"], name.as_str(), "{:#}", e[0]);
    assert_eq!(e[0]["container"]["image"]["name"], IMAGE);
    assert_eq!(e[0]["container"]["runtime"], "podman");
    let protected = observed(&events, &id, "container-protected");
    assert_eq!(protected.len(), 1, "{protected:#?}");
    assert_eq!(protected[0]["portcullis"]["container"]["via"], "scan");

    // replay selects by name and image.
    let journal = w.path("journal");
    for args in [
        ["--container-name", name.as_str()],
        ["--image", "localhost/portcullis-*"],
    ] {
        let lines = replay_ecs(
            &journal,
            &[&["--kind", "file_accessed"][..], &args].concat(),
        );
        assert!(!lines.is_empty(), "{args:?}");
        assert!(
            lines.iter().all(|l| l["container"]["id"] == id.as_str()),
            "{args:?}: only this container's accesses"
        );
    }
    assert!(replay_ecs(&journal, &["--container-name", "no-such-container"]).is_empty());
    assert_eq!(decision_of(&events, e[0])["portcullis"]["decision"], "deny");
    assert_exec_seen_and_host_untouched(&events, &id);
}

#[test]
fn a_new_containers_first_open_is_decided_before_its_entrypoint_runs() {
    require_privileges!("a_new_containers_first_open_is_decided_before_its_entrypoint_runs");
    require_containers!("a_new_containers_first_open_is_decided_before_its_entrypoint_runs");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::hook_only("refuse");
    let agent = w.agent();

    // The entrypoint's very first open is of the infected file.
    let bad = w.name("first-open");
    let o = w.run(&["--name", &bad, IMAGE, "cat", "/data/eicar.com"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"),
        "{}",
        text(&o)
    );
    let bad_id = id_of(&bad);

    // The entrypoint itself is an infected file: its exec is denied.
    let good = w.name("clean");
    let o = w.run(&["--name", &good, IMAGE, "cat", "/data/clean.txt"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).is_empty());

    let (events, log) = agent.stop();
    let protected = observed(&events, &bad_id, "container-protected");
    assert_eq!(protected.len(), 1, "{log}");
    assert_eq!(protected[0]["portcullis"]["container"]["via"], "hook");
    let e = accesses(&events, &bad_id, "/data/eicar.com");
    assert!(!e.is_empty(), "no access from {bad_id}:\n{log}");
    assert_eq!(
        e[0]["container"]["name"],
        bad.as_str(),
        "the entrypoint's first open already carries the name: {:#}",
        e[0]
    );
    let deny = decision_of(&events, e[0]);
    assert_eq!(deny["portcullis"]["decision"], "deny");
    assert!(
        observed(&events, &bad_id, "container-gone").len() <= 1,
        "at most one gone fact per container"
    );

    // The SIEM shapes carry the name: CEF `cs6`, OCSF `container.name`.
    assert_siem_names(&w.path("journal"), &bad_id, &bad);
}

#[test]
fn the_hook_follows_on_agent_unavailable_and_the_agent_journals_it_later() {
    require_privileges!("the_hook_follows_on_agent_unavailable_and_the_agent_journals_it_later");
    require_containers!("the_hook_follows_on_agent_unavailable_and_the_agent_journals_it_later");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());

    // refuse: no agent, the start fails.
    let mut w = World::new("refuse");
    let n = w.name("refused");
    let o = w.run(&["--name", &n, IMAGE, "true"]);
    assert!(
        !o.status.success(),
        "refused without an agent: {}",
        text(&o)
    );
    let spool = std::fs::read_dir(w.path("spool")).unwrap().count();
    assert_eq!(spool, 1);

    // allow: no agent, the start goes on, and is recorded.
    let mut w = World::new("allow");
    let n = w.name("allowed");
    let o = w.run(&["--name", &n, IMAGE, "true"]);
    assert!(o.status.success(), "allowed without an agent: {}", text(&o));
    let records: Vec<PathBuf> = std::fs::read_dir(w.path("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(records.len(), 1);
    let rec: Value = serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    assert_eq!(rec["decision"], "allowed");
    assert_eq!(rec["container_id"], id_of(&n).as_str());

    // The agent picks the record up at its start, and journals it.
    let agent = w.agent();
    let (events, log) = agent.stop();
    let id = id_of(&n);
    let missed = observed(&events, &id, "container-unprotected");
    assert_eq!(missed.len(), 1, "{log}");
    assert_eq!(missed[0]["portcullis"]["container"]["hook"], "allowed");
    assert_eq!(missed[0]["event"]["outcome"], "failure");
    assert_eq!(std::fs::read_dir(w.path("spool")).unwrap().count(), 0);
}

#[test]
fn start_stop_cycles_leave_no_marks_or_bookkeeping_behind() {
    require_privileges!("start_stop_cycles_leave_no_marks_or_bookkeeping_behind");
    require_containers!("start_stop_cycles_leave_no_marks_or_bookkeeping_behind");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cycles: usize = std::env::var("PORTCULLIS_CONTAINER_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut w = World::new("allow");
    let agent = w.agent();
    let before = agent.containers();
    let rss_before = agent.rss_kib();
    for i in 0..cycles {
        let n = w.name(&format!("cycle{i}"));
        let o = w.run(&["--rm", "--name", &n, IMAGE, "cat", "/data/clean.txt"]);
        assert!(o.status.success(), "cycle {i}: {}", text(&o));
    }
    // The marks went with the unmounts; the registry follows at its next scan.
    assert_cycles_left_nothing(&agent, &before, rss_before, cycles);
    assert!(
        agent.containers()["containers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !c["meta"]["name"].as_str().unwrap_or("").contains("cycle")),
        "no cycle container is left in the registry"
    );
    let (_, log) = agent.stop();
    // With the fallback on, its scans may find a container before the
    // hook asks: either marks it; the hook asks each time.
    assert!(
        log.matches("protect request from an OCI hook").count() >= cycles,
        "every cycle went through the hook:\n{log}"
    );
}

#[test]
fn policies_scoped_by_image_apply_and_policies_scoped_elsewhere_do_not() {
    require_privileges!("policies_scoped_by_image_apply_and_policies_scoped_elsewhere_do_not");
    require_containers!("policies_scoped_by_image_apply_and_policies_scoped_elsewhere_do_not");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let policies = r#"
[[policy]]
name = "other-images"
images = ["docker.io/other/*"]

[[policy]]
name = "other-namespace"
namespaces = ["prod"]

[[policy]]
name = "test-image"
images = ["localhost/portcullis-test:*"]
paths = ["/data/**"]

[[policy]]
name = "host"
host = true
"#;
    let mut w = World::with_config("allow", policies);
    let agent = w.agent();
    let name = w.start_sleeper("policy");
    let id = id_of(&name);
    let (events, _) = assert_policy_scope(agent, &|script| exec(&name, script), &id, "test-image");
    let tmp = accesses(&events, &id, "/tmp/e");
    let reason = decision_of(&events, tmp[0]);
    assert_eq!(reason["event"]["reason"], "not_in_scope");
}

#[test]
fn skip_rules_leave_named_containers_unmarked_and_say_so_once() {
    require_privileges!("skip_rules_leave_named_containers_unmarked_and_say_so_once");
    require_containers!("skip_rules_leave_named_containers_unmarked_and_say_so_once");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Rescans every 200 ms: a skipped container must not be decided (and
    // journaled) again at each one.
    let mut w = World::with_scans(
        "allow",
        "",
        "rescan_interval = \"200ms\"\n[[containers.skip]]\nimage = \"docker.io/*\"\n[[containers.skip]]\nname = \"pc-test-skipme-*\"\n",
    );
    // One skipped container found by the /proc scan at start, one at its
    // hook; one protected beside them.
    let early = w.start_sleeper("skipme-early");
    let agent = w.agent();
    let late = w.start_sleeper("skipme-late");
    let kept = w.start_sleeper("kept");
    let (early_id, late_id, kept_id) = (id_of(&early), id_of(&late), id_of(&kept));
    wait_for(Duration::from_secs(10), "the kept container", || {
        find(&agent.containers(), &kept_id).is_some()
    });
    std::thread::sleep(Duration::from_secs(1));
    let listed = agent.containers();
    for id in [&early_id, &late_id] {
        assert!(find(&listed, id).is_none(), "{id} is skipped: {listed:#}");
    }
    for name in [&early, &late] {
        let o = exec(name, "cat /data/eicar.com");
        assert!(
            o.status.success(),
            "{name} is skipped, its opens are not intercepted: {}",
            text(&o)
        );
    }
    assert!(denied(&exec(&kept, "cat /data/eicar.com")));

    let (events, log) = agent.stop();
    for (id, name) in [(&early_id, &early), (&late_id, &late)] {
        // (The early one also started while the agent was away: the hook
        // spooled that fact, journaled at the agent's start.)
        let skipped: Vec<_> = observed(&events, id, "container-unprotected")
            .into_iter()
            .filter(|e| {
                e["event"]["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("skipped by")
            })
            .collect();
        assert_eq!(skipped.len(), 1, "one fact per skipped container: {log}");
        assert_eq!(skipped[0]["container"]["name"], name.as_str());
        assert_eq!(
            skipped[0]["event"]["reason"],
            "skipped by containers.skip[1] (name = \"pc-test-skipme-*\")",
            "{:#}",
            skipped[0]
        );
        assert!(observed(&events, id, "container-protected").is_empty());
        assert!(accesses(&events, id, "/data/eicar.com").is_empty());
    }
    assert_eq!(observed(&events, &kept_id, "container-protected").len(), 1);
    let u = observed(&events, &kept_id, "container-unprotected");
    assert!(u.is_empty(), "{u:#?}");
}

#[test]
fn a_container_the_scan_cannot_mark_is_journaled_once_not_at_every_rescan() {
    require_privileges!("a_container_the_scan_cannot_mark_is_journaled_once_not_at_every_rescan");
    require_containers!("a_container_the_scan_cannot_mark_is_journaled_once_not_at_every_rescan");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::with_scans("allow", "", "rescan_interval = \"200ms\"");
    // A container whose root is a host directory (`--rootfs`): never
    // marked (the host's filesystem is refused).
    let rootfs = w.path("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let tmp = w.name("rootfs-src");
    assert!(podman(&["create", "--name", &tmp, IMAGE]).status.success());
    let tar = w.path("rootfs.tar");
    assert!(podman(&["export", "-o", tar.to_str().unwrap(), &tmp])
        .status
        .success());
    let untar = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&rootfs)
        .output()
        .unwrap();
    assert!(untar.status.success(), "{}", text(&untar));
    let name = w.name("hostdir");
    let o = w.run(&[
        "-d",
        "--name",
        &name,
        "--rootfs",
        rootfs.to_str().unwrap(),
        "sleep",
        "600",
    ]);
    assert!(o.status.success(), "podman run --rootfs: {}", text(&o));
    let id = id_of(&name);
    let agent = w.agent();
    // Rescans every 200 ms for well over the settling time.
    std::thread::sleep(Duration::from_secs(5));
    assert!(find(&agent.containers(), &id).is_none());
    let (events, log) = agent.stop();
    let refused: Vec<_> = observed(&events, &id, "container-unprotected")
        .into_iter()
        .filter(|e| {
            e["event"]["reason"]
                .as_str()
                .unwrap()
                .starts_with("protecting")
        })
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}\n{log}");
    assert!(
        refused[0]["event"]["reason"]
            .as_str()
            .unwrap()
            .contains("refusing to mark"),
        "{:#}",
        refused[0]
    );
}
