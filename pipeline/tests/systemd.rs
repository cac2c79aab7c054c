//! systemd: the units of `compose/systemd/` pass `systemd-analyze verify`
//! with nothing to say; the agent's system-call filter allows every call a
//! real agent makes (traced with strace); and the agent under
//! `Type=notify` (READY once its marks are in place, the watchdog pinged
//! while the Enforcer runs, STOPPING at the end), over a notification
//! socket this test provides, as systemd would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Every datagram received, with when it came.
fn collect(sock: UnixDatagram) -> Arc<Mutex<Vec<(Instant, String)>>> {
    let got = Arc::new(Mutex::new(vec![]));
    let sink = got.clone();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let end = Instant::now() + Duration::from_secs(120);
        while Instant::now() < end {
            if let Ok(n) = sock.recv(&mut buf) {
                sink.lock().unwrap().push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
    });
    got
}

/// A scenario whose agent gets `NOTIFY_SOCKET` (a socket of this test)
/// and `exports`; every notification, once the agent has stopped.
fn notified(exports: &str, setup: &str, script: &str) -> (Outcome, Vec<(Instant, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let got = collect(UnixDatagram::bind(&path).unwrap());
    let o = scenario(
        "",
        "",
        &format!("{setup}; export NOTIFY_SOCKET={} {exports}", path.display()),
        script,
    );
    std::thread::sleep(Duration::from_millis(300));
    let got = got.lock().unwrap().clone();
    (o, got)
}

#[test]
fn the_agent_tells_systemd_ready_pings_the_watchdog_and_says_stopping() {
    require_privileges!("the_agent_tells_systemd_ready_pings_the_watchdog_and_says_stopping");
    // WatchdogSec=1s: pings every 500 ms. The script runs 3 s after the
    // agent is ready, and opens the infected file first: READY came once
    // the marks were in place.
    let (o, got) = notified(
        "WATCHDOG_USEC=1000000",
        "printf '%s' \"$EICAR\" > eicar.com",
        "try eicar cat eicar.com; sleep 3",
    );
    assert_eq!(o.status("eicar"), 1, "{}", o.agent_log);
    let texts: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
    assert!(
        texts[0].starts_with("READY=1\nSTATUS=protecting 1 mount (enforce mode)"),
        "{texts:#?}"
    );
    assert_eq!(texts.iter().filter(|t| t.starts_with("READY=1")).count(), 1);
    let last = texts.last().unwrap();
    assert!(last.starts_with("STOPPING=1\nSTATUS=SIGTERM"), "{texts:#?}");
    // Pings between READY and STOPPING, about every 500 ms.
    let pings: Vec<Instant> = got
        .iter()
        .filter(|(_, t)| t == "WATCHDOG=1")
        .map(|(at, _)| *at)
        .collect();
    assert!(pings.len() >= 5, "{texts:#?}");
    for w in pings.windows(2) {
        let gap = w[1] - w[0];
        // Never more often than half the timeout, and never as late as
        // the timeout itself while the Enforcer runs.
        assert!(gap >= Duration::from_millis(495), "{gap:?}");
        assert!(gap < Duration::from_secs(1), "{gap:?}");
    }
}

#[test]
fn a_foreign_watchdog_pid_means_no_pings_and_a_bad_socket_stops_the_start() {
    require_privileges!("a_foreign_watchdog_pid_means_no_pings_and_a_bad_socket_stops_the_start");
    // WATCHDOG_PID of another process (inherited variables): READY and
    // STOPPING, no pings.
    let (o, got) = notified("WATCHDOG_USEC=100000 WATCHDOG_PID=1", "true", "sleep 0.5");
    let texts: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts.len(), 2, "{texts:#?}\n{}", o.agent_log);
    assert!(texts[0].starts_with("READY=1"));
    assert!(texts[1].starts_with("STOPPING=1"));

    // A NOTIFY_SOCKET that is not a socket address: the start fails and
    // names the variable (no marks are placed, no mount is needed).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "--protect", "/nonexistent-mount"])
        .env("NOTIFY_SOCKET", "relative/notify.sock")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NOTIFY_SOCKET: `relative/notify.sock`"),
        "{err}"
    );
}

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose/systemd")
}

/// The units, by file name.
fn units() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(units_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "service") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(name, std::fs::read_to_string(&p).unwrap());
        }
    }
    out
}

/// The values of `key=` in a unit (every line, in order).
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

fn systemd_analyze() -> bool {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_SYSTEMD").is_none(),
            "systemd-analyze is missing (scripts/setup installs it)"
        );
        eprintln!("!!!!!!!! SKIPPED systemd unit checks: systemd-analyze is missing (scripts/setup installs it) !!!!!!!!");
    }
    ok
}

/// `systemd-analyze verify` of `units` (the binary path pointed at the
/// one built here; a template verified as an instance): its diagnostics.
fn verify(units: &BTreeMap<String, String>) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = vec![];
    for (name, text) in units {
        let name = name.replace("@.service", "@1.service");
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            text.replace(
                "/usr/local/bin/portcullis",
                env!("CARGO_BIN_EXE_portcullis"),
            ),
        )
        .unwrap();
        paths.push(p);
    }
    let out = Command::new("timeout")
        .args(["60", "systemd-analyze", "verify", "--man=no"])
        .args(&paths)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn every_unit_passes_systemd_analyze_verify_with_nothing_to_say() {
    if !systemd_analyze() {
        return;
    }
    let units = units();
    assert_eq!(
        units.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "portcullis-agent.service",
            "portcullis-scanner@.service",
            "portcullis-siem-export.service"
        ]
    );
    let (ok, said) = verify(&units);
    assert!(ok && said.trim().is_empty(), "{said}");
    // The check has teeth: a misspelt key and a bad value are reported.
    let mut bad = BTreeMap::new();
    bad.insert(
        "portcullis-agent.service".to_string(),
        units["portcullis-agent.service"]
            .replace("Type=notify", "Type=notfy")
            .replace("WatchdogSec=", "WatchdgSec="),
    );
    let (_, said) = verify(&bad);
    assert!(
        said.contains("notfy") && said.contains("WatchdgSec"),
        "{said}"
    );
}

#[test]
fn the_agent_unit_keeps_the_host_mounts_and_the_services_are_locked_down() {
    let units = units();
    let agent = &units["portcullis-agent.service"];
    assert_eq!(values(agent, "Type"), ["notify"]);
    assert_eq!(values(agent, "Restart"), ["always"]);
    assert_eq!(values(agent, "WatchdogSec").len(), 1);
    assert_eq!(values(agent, "NotifyAccess"), ["main"]);
    // Anything that makes a private mount namespace would make the marks
    // miss the host's opens.
    for key in [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateMounts",
        "PrivateDevices",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "ProtectProc",
        "ReadOnlyPaths",
        "ReadWritePaths",
        "InaccessiblePaths",
        "TemporaryFileSystem",
        "BindPaths",
        "MemoryDenyWriteExecute",
        "DynamicUser",
        // A quarantine restore writes set-id bits back.
        "RestrictSUIDSGID",
    ] {
        assert!(values(agent, key).is_empty(), "the agent unit sets {key}");
    }
    let filter = values(agent, "SystemCallFilter").join(" ");
    for call in ["@system-service", "fanotify_init", "fanotify_mark"] {
        assert!(filter.split(' ').any(|w| w == call), "{filter}");
    }
    let caps = values(agent, "CapabilityBoundingSet").join(" ");
    // fanotify; and a quarantine restore's owner and set-id bits.
    for cap in ["CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_FSETID"] {
        assert!(caps.split(' ').any(|c| c == cap), "{caps}");
    }
    for name in [
        "portcullis-scanner@.service",
        "portcullis-siem-export.service",
    ] {
        let u = &units[name];
        for (key, value) in [
            ("DynamicUser", "yes"),
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
            ("NoNewPrivileges", "yes"),
            ("CapabilityBoundingSet", ""),
            ("SystemCallFilter", "@system-service"),
        ] {
            assert_eq!(values(u, key), [value], "{name}: {key}");
        }
    }
}

/// Every system call of a filter (`@group`s expanded through
/// `systemd-analyze syscall-filter`).
fn expand_filter(words: &[&str]) -> BTreeSet<String> {
    let out = Command::new("timeout")
        .args(["60", "systemd-analyze", "syscall-filter"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(g) = line.strip_prefix('@') {
            current = Some(format!("@{}", g.trim()));
            groups.entry(format!("@{}", g.trim())).or_default();
        } else if let Some(g) = &current {
            let w = line.trim();
            if !w.is_empty() && !w.starts_with('#') {
                groups.get_mut(g).unwrap().push(w.to_string());
            }
        }
    }
    fn add(w: &str, groups: &BTreeMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
        match groups.get(w) {
            Some(members) => {
                for m in members {
                    add(m, groups, out);
                }
            }
            None => {
                out.insert(w.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    for w in words {
        add(w, &groups, &mut out);
    }
    out
}

#[test]
fn the_agent_makes_no_system_call_its_unit_filter_refuses() {
    require_privileges!("the_agent_makes_no_system_call_its_unit_filter_refuses");
    if !systemd_analyze() {
        return;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_SYSTEMD").is_none(),
            "strace is missing (scripts/setup installs it)"
        );
        eprintln!("!!!!!!!! SKIPPED the_agent_makes_no_system_call_its_unit_filter_refuses: strace is missing !!!!!!!!");
        return;
    }
    let units = units();
    let agent = &units["portcullis-agent.service"];
    let words: Vec<&str> = values(agent, "SystemCallFilter")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .collect();
    let allowed = expand_filter(&words);
    assert!(allowed.contains("openat") && allowed.contains("fanotify_mark"));
    assert!(!allowed.contains("mount") && !allowed.contains("kexec_load"));
    // A real agent's life: start (rules, marks), a clean read, a denied
    // infected open with its block action, an exec, stop.
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("strace.txt");
    let o = scenario(
        "",
        "",
        &format!(
            "echo hi > clean.txt; printf '%s' \"$EICAR\" > eicar.com; cp /bin/true tool; AGENT_WRAPPER='strace -f -qq -c -U name -o {}'",
            trace.display()
        ),
        "try clean cat clean.txt; try eicar cat eicar.com; try exec ./tool",
    );
    assert_eq!(o.status("clean"), 0, "{}", o.agent_log);
    assert_eq!(o.status("eicar"), 1, "{}", o.agent_log);
    assert_eq!(o.status("exec"), 0, "{}", o.agent_log);
    let summary = std::fs::read_to_string(&trace).unwrap();
    let used: BTreeSet<String> = summary
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.starts_with("syscall")
                && !l.starts_with("total")
        })
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert!(
        used.contains("fanotify_init") && used.contains("fanotify_mark"),
        "{summary}"
    );
    let refused: Vec<&String> = used.iter().filter(|c| !allowed.contains(*c)).collect();
    assert!(
        refused.is_empty(),
        "the agent's unit filter would refuse {refused:?} (SystemCallFilter={words:?})\n{summary}"
    );
}
