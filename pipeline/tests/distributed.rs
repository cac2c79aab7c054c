//! Distributed mode against a real Kafka broker (KAFKA_BOOTSTRAP): node
//! agents on private tmpfs mounts, scanner services as separate processes.
//! Every test uses its own topic prefix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn bootstrap(test: &str) -> Option<String> {
    match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(b) if !b.trim().is_empty() => Some(b),
        _ => {
            eprintln!("\n!!!!!!!! SKIPPED `{test}`: KAFKA_BOOTSTRAP not set (scripts/test starts a broker) !!!!!!!!\n");
            None
        }
    }
}

/// A `[kafka]` section on fresh topics.
fn kafka_config(bootstrap: &str, extra: &str) -> String {
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    format!(
        "[kafka]\nbootstrap = \"{bootstrap}\"\ntopic_prefix = \"{prefix}\"\n{extra}\n[kafka.partitions]\nscan_requests = 4\nverdicts = 2\nverdict_cache = 2\nevents = 2\n[kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n"
    )
}

/// A running scanner service, stopped (SIGKILL) on drop.
struct Scanner {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Scanner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scanner(config: &str, instance: &str) -> Scanner {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scanner.toml");
    std::fs::write(&cfg, config).unwrap();
    let ready = dir.path().join("ready");
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "--log",
            "info",
            "scanner",
            "--instance",
            instance,
            "--config",
        ])
        .arg(&cfg)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("scanner.log")).unwrap())
        .spawn()
        .unwrap();
    let mut s = Scanner { child, _dir: dir };
    let t = Instant::now();
    while !ready.exists() {
        assert!(
            s.child.try_wait().unwrap().is_none(),
            "scanner {instance} exited early"
        );
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "scanner {instance} not ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

#[test]
fn node_and_two_scanners_allow_clean_deny_eicar_and_record_audit() {
    require_privileges!("node_and_two_scanners_allow_clean_deny_eicar_and_record_audit");
    let Some(b) = bootstrap("node_and_two_scanners_allow_clean_deny_eicar_and_record_audit") else {
        return;
    };
    let config = kafka_config(&b, "");
    let _s1 = scanner(&config, "s1");
    let _s2 = scanner(&config, "s2");
    let o = scenario(
        &config,
        "",
        r#"echo hello > clean.txt; printf '%s' "$EICAR" > eicar.com"#,
        "try clean cat clean.txt; try eicar cat eicar.com",
    );
    assert_eq!(o.status("clean"), 0, "{}", o.agent_log);
    assert_eq!(o.status("eicar"), 1);
    let bad = o.access_id("eicar.com");
    assert_eq!(
        o.decision(&bad)["event"]["reason"],
        "verdict",
        "answered by a remote verdict in time"
    );
    assert_eq!(o.verdict(&bad).unwrap()["rule"]["name"], "eicar_test_file");
    assert!(
        o.agent_log.contains("distributed mode"),
        "the node used the remote scanner:\n{}",
        o.agent_log
    );

    let o = scenario(
        &config,
        "--mode audit",
        r#"printf '%s' "$EICAR" > eicar2.com"#,
        "try eicar cat eicar2.com; sleep 1",
    );
    assert_eq!(o.status("eicar"), 0);
    let id = o.access_id("eicar2.com");
    assert_eq!(
        o.verdict(&id)
            .unwrap_or_else(|| panic!("not recorded:\n{}", o.agent_log))["portcullis"]["verdict"],
        "infected"
    );
}
