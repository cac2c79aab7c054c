//! Container protection against a real containerd 2.x with CRI and NRI
//! (`scripts/containerd` builds it from the Go module proxy and runs it on
//! its own root, state and sockets), with pods run through CRI (`crictl`)
//! so that pod names, namespaces and labels are real. The images are made
//! locally: the sandbox's pause and `localhost/portcullis-test`.
//!
//! The agent serves NRI on containerd's NRI socket: containerd calls it
//! after `runc create` and before the entrypoint runs. Pods use the host
//! network (no CNI) and a kubelet-style cgroup parent (`/kubepods/...`).
//!
//! Gated on root, fanotify permission events, and containerd with the
//! images; `scripts/test` sets PORTCULLIS_REQUIRE_CONTAINERS=1, which turns
//! a missing runtime into a failure instead of a loud SKIPPED line. The
//! tests share the one containerd, so they run one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::containers::*;
use common::*;
use serde_json::Value;

const IMAGE: &str = "localhost/portcullis-test:latest";
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// How containerd was last started by this process (`None`: not yet).
static STARTED: Mutex<Option<Option<String>>> = Mutex::new(None);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/containerd")
}

/// `scripts/containerd ARGS` under a timeout.
fn containerd_script(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("300")
        .arg("bash")
        .arg(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The sockets of the running containerd.
struct Containerd {
    nri: PathBuf,
    state: PathBuf,
}

/// Starts containerd (again, if it ran with other settings); with
/// `require`, NRI's validator fails every container creation while that
/// plugin is not registered. `Err` says why containerd cannot run here.
fn containerd(require: Option<&str>) -> Result<Containerd, String> {
    if let Some(why) = unavailable() {
        return Err(why);
    }
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    let want = require.map(str::to_string);
    if started.as_ref() != Some(&want) {
        let mut args = vec!["start"];
        if let Some(r) = require {
            args.extend(["--require-plugin", r]);
        }
        let o = containerd_script(&args);
        if !o.status.success() {
            return Err(format!("scripts/containerd start: {}", text(&o)));
        }
        *started = Some(want);
    }
    let out = containerd_script(&["status"]);
    if !out.status.success() {
        *started = None;
        return Err("containerd does not answer".into());
    }
    Ok(Containerd {
        nri: PathBuf::from("/run/portcullis-containerd/nri.sock"),
        state: PathBuf::from("/run/portcullis-containerd"),
    })
}

macro_rules! require_containerd {
    ($name:expr, $require:expr) => {
        match containerd($require) {
            Ok(c) => c,
            Err(why) => {
                runtime_missing($name, "containerd", &why);
                return;
            }
        }
    };
}

/// `crictl ARGS` against the test containerd.
fn crictl(args: &[&str]) -> Output {
    let mut all = vec!["crictl"];
    all.extend(args);
    containerd_script(&all)
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A test's world: the agent's config and journal in a temp dir, and the
/// pods it made (removed at drop).
struct World {
    dir: tempfile::TempDir,
    pods: Vec<String>,
}

/// The `/proc` scans of the asynchronous fallback, as in production.
const WITH_FALLBACK: &str = "rescan_interval = \"500ms\"";
/// NRI alone: no scan after mount changes, none on the interval during a
/// test (what proves the synchronous path closes the window by itself).
const NRI_ONLY: &str = "rescan_interval = \"1h\"\nwatch_mounts = false";

impl World {
    fn new(c: &Containerd, extra: &str) -> World {
        Self::with(c, extra, WITH_FALLBACK)
    }

    /// `extra` goes before `[containers]` (policies); `scans` into it.
    fn with(c: &Containerd, extra: &str, scans: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("portcullis.toml"),
            format!(
                "[enforcer]\ndeadline = \"12s\"\n{extra}\n[containers]\nruntimes = [\"containerd\"]\ncontainerd_state = \"{}\"\ncontrol_socket = \"{}\"\n{scans}\n[containers.hook]\nspool_dir = \"{}\"\n[containers.nri]\nsocket = \"{}\"\n",
                c.state.display(),
                dir.path().join("agent.sock").display(),
                dir.path().join("spool").display(),
                c.nri.display(),
            ),
        )
        .unwrap();
        World {
            dir,
            pods: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn agent(&self) -> Agent {
        let a = Agent::start(self.dir.path(), &self.path("portcullis.toml"));
        wait_for(Duration::from_secs(20), "NRI registration", || {
            a.log().contains("NRI synchronized")
        });
        a
    }

    /// A pod on the host network in namespace `ns`, labelled `app=<name>`.
    fn pod(&mut self, name: &str, ns: &str) -> (String, PathBuf) {
        let uid = format!("{name}-{}", std::process::id());
        let config = serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "uid": uid, "attempt": 0},
            "labels": {"app": name, "team": "payments"},
            "log_directory": self.path("logs"),
            "linux": {
                "cgroup_parent": format!("/kubepods/besteffort/pod{uid}"),
                "security_context": {"namespace_options": {"network": 2}}
            }
        });
        let file = self.path(&format!("pod-{name}.json"));
        std::fs::write(&file, config.to_string()).unwrap();
        let id = ok(crictl(&["runp", file.to_str().unwrap()]), "crictl runp");
        self.pods.push(id.clone());
        (id, file)
    }

    /// Creates (and starts, unless `start` is false) container `name`
    /// running `cmd` in pod `pod`. Returns the container id, or the
    /// failing output.
    fn container(
        &self,
        pod: &(String, PathBuf),
        name: &str,
        cmd: &[&str],
        start: bool,
    ) -> Result<String, Output> {
        let config = serde_json::json!({
            "metadata": {"name": name},
            "image": {"image": IMAGE},
            "command": cmd,
            "labels": {"tier": "front"},
            "log_path": format!("{name}.log"),
            "linux": {}
        });
        let file = self.path(&format!("ctr-{name}.json"));
        std::fs::write(&file, config.to_string()).unwrap();
        let o = crictl(&[
            "create",
            &pod.0,
            file.to_str().unwrap(),
            pod.1.to_str().unwrap(),
        ]);
        if !o.status.success() {
            return Err(o);
        }
        let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if start {
            let o = crictl(&["start", &id]);
            if !o.status.success() {
                return Err(o);
            }
        }
        Ok(id)
    }

    fn sleeper(&self, pod: &(String, PathBuf), name: &str) -> String {
        self.container(pod, name, &["/bin/sleep", "600"], true)
            .unwrap_or_else(|o| panic!("{name}: {}", text(&o)))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for p in &self.pods {
            let _ = crictl(&["stopp", p]);
            let _ = crictl(&["rmp", "-f", p]);
        }
    }
}

fn exec(id: &str, script: &str) -> Output {
    crictl(&["exec", id, "sh", "-c", script])
}

/// The container's exit code and log, once it exited.
fn exited(id: &str) -> (i64, String) {
    let mut status = Value::Null;
    wait_for(Duration::from_secs(30), "the container to exit", || {
        let o = crictl(&["inspect", id]);
        status = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        status["status"]["state"] == "CONTAINER_EXITED"
    });
    let log = crictl(&["logs", id]);
    (
        status["status"]["exitCode"].as_i64().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&log.stdout),
            String::from_utf8_lossy(&log.stderr)
        ),
    )
}

#[test]
fn a_pods_first_open_is_decided_before_its_entrypoint_runs_and_carries_the_pod() {
    let name = "a_pods_first_open_is_decided_before_its_entrypoint_runs_and_carries_the_pod";
    require_privileges!(name);
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = require_containerd!(name, None);
    let mut w = World::with(&c, "", NRI_ONLY);
    let host = w.path("host-eicar.com");
    std::fs::write(&host, EICAR).unwrap();
    let agent = w.agent();

    let pod = w.pod("web-0", "shop");
    // The entrypoint's very first open is of the infected file.
    let bad = w
        .container(&pod, "first-open", &["/bin/cat", "/data/eicar.com"], true)
        .unwrap_or_else(|o| panic!("{}", text(&o)));
    let (code, log) = exited(&bad);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("Operation not permitted"), "{log}");

    // Clean files and execs pass; an infected exec is denied.
    let app = w.sleeper(&pod, "app");
    assert_protected_inside(&|script| exec(&app, script), &host);

    let listed = agent.containers();
    let mine = find(&listed, &app).unwrap_or_else(|| panic!("{app} not listed: {listed:#}"));
    assert_eq!(mine["via"], "hook", "{mine:#}");
    assert_eq!(mine["container"]["runtime"], "containerd");
    assert_eq!(mine["meta"]["name"], "app");
    assert_eq!(mine["meta"]["image"], IMAGE);
    assert_eq!(mine["meta"]["pod"]["name"], "web-0");
    assert_eq!(mine["meta"]["pod"]["namespace"], "shop");
    assert_eq!(
        mine["meta"]["labels"]["app"], "web-0",
        "pod labels: {mine:#}"
    );
    let (events, log) = agent.stop();

    let protected = observed(&events, &bad, "container-protected");
    assert_eq!(protected.len(), 1, "{log}");
    assert_eq!(protected[0]["portcullis"]["container"]["via"], "hook");
    let e = accesses(&events, &bad, "/data/eicar.com");
    assert!(!e.is_empty(), "no access from {bad}:\n{log}");
    // The entrypoint's first open already names the container and pod.
    assert_eq!(e[0]["container"]["name"], "first-open", "{:#}", e[0]);
    assert_eq!(e[0]["container"]["image"]["name"], IMAGE);
    assert_eq!(e[0]["container"]["runtime"], "containerd");
    assert_eq!(e[0]["orchestrator"]["namespace"], "shop", "{:#}", e[0]);
    assert_eq!(e[0]["orchestrator"]["resource"]["name"], "web-0");
    assert_eq!(e[0]["orchestrator"]["resource"]["type"], "pod");
    let deny = decision_of(&events, e[0]);
    assert_eq!(deny["portcullis"]["decision"], "deny");
    assert_exec_seen_and_host_untouched(&events, &app);

    // CEF `cs6` and OCSF `container` carry the name, OCSF the pod.
    let journal = w.path("journal");
    let o = assert_siem_names(&journal, &bad, "first-open");
    assert_eq!(
        o["actor"]["process"]["container"]["pod_uuid"],
        format!("web-0-{}", std::process::id()).as_str(),
        "{o:#}"
    );
    // replay selects by pod and namespace.
    for args in [["--namespace", "shop"], ["--pod", "web-0"]] {
        let lines = replay_ecs(
            &journal,
            &[&["--kind", "file_accessed"][..], &args].concat(),
        );
        assert!(!lines.is_empty(), "{args:?}");
        assert!(
            lines
                .iter()
                .all(|l| l["orchestrator"]["namespace"] == "shop"),
            "{args:?}"
        );
    }
    assert!(replay_ecs(&journal, &["--namespace", "prod"]).is_empty());
}

#[test]
fn pods_running_before_the_agent_are_protected_named_and_protected_again_after_a_restart() {
    let name =
        "pods_running_before_the_agent_are_protected_named_and_protected_again_after_a_restart";
    require_privileges!(name);
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = require_containerd!(name, None);
    let mut w = World::new(&c, "");
    let pod = w.pod("db-0", "shop");
    let id = w.sleeper(&pod, "db");
    // Unprotected before the agent: the infected file opens.
    let before = exec(&id, "cat /data/eicar.com");
    assert!(before.status.success(), "{}", text(&before));

    for round in 0..2 {
        let agent = w.agent();
        let listed = agent.containers();
        let mine = find(&listed, &id)
            .unwrap_or_else(|| panic!("round {round}: {id} not listed: {listed:#}"));
        assert_eq!(mine["via"], "scan", "{mine:#}");
        assert_eq!(mine["meta"]["name"], "db", "named at once: {mine:#}");
        assert_eq!(mine["meta"]["pod"]["name"], "db-0");
        assert_eq!(mine["meta"]["labels"]["team"], "payments", "{mine:#}");
        let denied = exec(&id, "cat /data/eicar.com");
        assert!(!denied.status.success(), "round {round}: {}", text(&denied));
        let clean = exec(&id, "cat /data/clean.txt");
        assert!(clean.status.success(), "round {round}: {}", text(&clean));
        let (events, log) = agent.stop();
        let e = accesses(&events, &id, "/data/eicar.com");
        assert!(!e.is_empty(), "round {round}:\n{log}");
        assert_eq!(e[0]["container"]["name"], "db");
        assert_eq!(e[0]["orchestrator"]["resource"]["name"], "db-0");
        // The agent stopped: its marks went with its group.
        let after = exec(&id, "cat /data/eicar.com");
        assert!(after.status.success(), "round {round}: {}", text(&after));
        std::fs::remove_dir_all(w.path("journal")).unwrap();
    }
}

#[test]
fn policies_scoped_by_namespace_apply_and_policies_scoped_elsewhere_do_not() {
    let name = "policies_scoped_by_namespace_apply_and_policies_scoped_elsewhere_do_not";
    require_privileges!(name);
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = require_containerd!(name, None);
    let policies = r#"
[[policy]]
name = "prod"
namespaces = ["prod"]

[[policy]]
name = "shop-data"
namespaces = ["shop"]
pod_labels = { team = "payments" }
paths = ["/data/**"]
"#;
    let mut w = World::new(&c, policies);
    let agent = w.agent();
    let pod = w.pod("api-0", "shop");
    let id = w.sleeper(&pod, "api");
    assert_policy_scope(agent, &|script| exec(&id, script), &id, "shop-data");
}

#[test]
fn without_the_agent_containerd_follows_its_nri_validator() {
    let name = "without_the_agent_containerd_follows_its_nri_validator";
    require_privileges!(name);
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Fail closed: the validator requires the plugin.
    let c = require_containerd!(name, Some("portcullis"));
    let mut w = World::new(&c, "");
    let pod = w.pod("strict-0", "shop");
    let refused = w
        .container(&pod, "refused", &["/bin/true"], false)
        .expect_err("created without the required plugin");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("portcullis"),
        "the refusal names the plugin: {}",
        text(&refused)
    );
    let agent = w.agent();
    let id = w.sleeper(&pod, "admitted");
    let denied = exec(&id, "cat /data/eicar.com");
    assert!(!denied.status.success(), "{}", text(&denied));
    let (events, _) = agent.stop();
    assert_eq!(observed(&events, &id, "container-protected").len(), 1);
    drop(w);
    // Back to the default (fail open) for the other tests.
    require_containerd!(name, None);
}

#[test]
fn pod_start_stop_cycles_leave_no_marks_or_bookkeeping_behind() {
    let name = "pod_start_stop_cycles_leave_no_marks_or_bookkeeping_behind";
    require_privileges!(name);
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = require_containerd!(name, None);
    let cycles: usize = std::env::var("PORTCULLIS_CONTAINER_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut w = World::new(&c, "");
    // The pod's sandbox first: the agent protects it too, and it stays.
    let pod = w.pod("cycle-0", "shop");
    let agent = w.agent();
    let before = agent.containers();
    let rss_before = agent.rss_kib();
    for i in 0..cycles {
        let id = w
            .container(
                &pod,
                &format!("cycle{i}"),
                &["/bin/cat", "/data/clean.txt"],
                true,
            )
            .unwrap_or_else(|o| panic!("cycle {i}: {}", text(&o)));
        let (code, log) = exited(&id);
        assert_eq!(code, 0, "cycle {i}: {log}");
        ok(crictl(&["rm", &id]), "crictl rm");
    }
    assert_cycles_left_nothing(&agent, &before, rss_before, cycles);
    let (events, log) = agent.stop();
    // With the fallback on, its scans may find a container between
    // `runc create` and NRI's call: either marks it; NRI is asked each time.
    let asked = log.matches("NRI StartContainer").count();
    assert!(
        asked >= cycles,
        "every cycle went through NRI ({asked} of {cycles}):\n{log}"
    );
    let protected = events
        .iter()
        .filter(|e| e["event"]["action"] == "container-protected")
        .count();
    assert!(
        protected > cycles,
        "every cycle's container was protected:\n{log}"
    );
}
