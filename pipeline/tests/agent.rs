//! Privileged end-to-end tests: the real `portcullis run` protecting a tmpfs
//! in a private mount namespace, driven by real opens and execs from child
//! processes. Each scenario is one bash script run under
//! `unshare -m --propagation private`, so the tmpfs and the fanotify mark
//! exist only inside that namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::*;

#[test]
fn enforce_allows_clean_denies_infected_and_acts() {
    require_privileges!("enforce_allows_clean_denies_infected_and_acts");
    let o = scenario(
        "",
        "",
        r#"echo hello > clean.txt; printf '%s' "$EICAR" > eicar.com"#,
        "try clean cat clean.txt; try eicar cat eicar.com",
    );
    assert_eq!(o.status("clean"), 0);
    assert_eq!(o.status("eicar"), 1);
    assert!(
        o.stderr("eicar").contains("Operation not permitted"),
        "{}",
        o.stderr("eicar")
    );

    let clean = o.access_id("clean.txt");
    assert_eq!(o.decision(&clean)["portcullis"]["decision"], "allow");
    assert_eq!(o.decision(&clean)["event"]["reason"], "verdict");
    assert_eq!(o.verdict(&clean).unwrap()["portcullis"]["verdict"], "clean");

    let bad = o.access_id("eicar.com");
    assert_eq!(o.decision(&bad)["portcullis"]["decision"], "deny");
    let v = o.verdict(&bad).unwrap();
    assert_eq!(v["rule"]["name"], "eicar_test_file");
    assert_eq!(v["event"]["kind"], "alert");
    let access = o.accesses_of("eicar.com")[0];
    assert_eq!(access["process"]["name"], "cat");
    assert!(access["process"]["pid"].as_u64().unwrap() > 1);
    assert_eq!(access["portcullis"]["blocking"], true);
    let actions = o.of_kind("action_taken");
    assert!(
        actions.iter().any(
            |a| a["portcullis"]["access_id"] == bad.as_str() && a["event"]["action"] == "block"
        ),
        "the first action ran and was journaled: {actions:?}"
    );
}

#[test]
fn audit_never_blocks_and_only_records() {
    require_privileges!("audit_never_blocks_and_only_records");
    let o = scenario(
        "",
        "--mode audit",
        r#"printf '%s' "$EICAR" > eicar.com"#,
        "try eicar cat eicar.com; wait_journal --kind verdict_issued --verdict infected",
    );
    assert_eq!(o.status("eicar"), 0, "audit lets the infected file through");
    let id = o.access_id("eicar.com");
    assert_eq!(o.decision(&id)["event"]["reason"], "audit_mode");
    assert_eq!(
        o.accesses_of("eicar.com")[0]["portcullis"]["blocking"],
        false
    );
    assert_eq!(
        o.verdict(&id).expect("the scan ran on the side")["portcullis"]["verdict"],
        "infected"
    );
    assert!(
        o.of_kind("action_taken").is_empty(),
        "no action in audit mode"
    );
}

#[test]
fn a_policy_in_audit_mode_is_still_enforced_by_an_enforcing_interceptor() {
    require_privileges!("a_policy_in_audit_mode_is_still_enforced_by_an_enforcing_interceptor");
    let config =
        "interceptor_mode = \"enforce\"\n[[policy]]\nname = \"workloads\"\nmode = \"audit\"\n";
    let o = scenario(
        config,
        "",
        r#"printf '%s' "$EICAR" > eicar.com"#,
        "try eicar cat eicar.com",
    );
    assert_eq!(
        o.status("eicar"),
        1,
        "blocked despite the policy's audit mode"
    );
    let access = o.accesses_of("eicar.com")[0];
    assert_eq!(access["portcullis"]["policy"]["mode"], "audit");
    assert_eq!(access["portcullis"]["interceptor_mode"], "enforce");
}

#[test]
fn exec_of_an_infected_file_is_denied_and_a_clean_one_runs() {
    require_privileges!("exec_of_an_infected_file_is_denied_and_a_clean_one_runs");
    let o = scenario(
        "",
        "",
        r#"cp /bin/true ./tool; printf '%s' "$EICAR" > bad; chmod +x bad tool"#,
        "try tool ./tool; try bad ./bad",
    );
    assert_eq!(o.status("tool"), 0);
    assert_eq!(o.status("bad"), 126, "exec denied: {}", o.stderr("bad"));
    let execs: Vec<_> = o
        .of_kind("file_accessed")
        .into_iter()
        .filter(|e| e["event"]["action"] == "exec")
        .collect();
    assert!(execs
        .iter()
        .any(|e| e["file"]["path"].as_str().unwrap().ends_with("/tool")));
    assert!(execs
        .iter()
        .any(|e| e["file"]["path"].as_str().unwrap().ends_with("/bad")));
}

#[test]
fn unchanged_files_are_not_rescanned_and_modified_ones_are() {
    require_privileges!("unchanged_files_are_not_rescanned_and_modified_ones_are");
    let o = scenario(
        "",
        "",
        "echo hello > doc.txt",
        r#"try first cat doc.txt; try second cat doc.txt; try third cat doc.txt
printf '%s' "$EICAR" > doc.txt
try after_modify cat doc.txt"#,
    );
    assert_eq!(o.status("first"), 0);
    assert_eq!(o.status("second"), 0);
    assert_eq!(
        o.status("after_modify"),
        1,
        "the rewritten file is scanned again and denied"
    );
    // Three reads of the unchanged file reach the agent once (kernel ignore
    // mark); the write open and the read after the write are seen again.
    let reads: Vec<_> = o
        .accesses_of("doc.txt")
        .into_iter()
        .filter(|e| e["process"]["name"] == "cat")
        .collect();
    assert_eq!(
        reads.len(),
        2,
        "one scan before and one after the modification: {reads:?}"
    );
}

#[test]
fn non_utf8_names_survive_end_to_end() {
    require_privileges!("non_utf8_names_survive_end_to_end");
    let o = scenario(
        "",
        "",
        r#"printf '%s' "$EICAR" > $'bad\xff\xfename.com'"#,
        r#"try bad cat $'bad\xff\xfename.com'"#,
    );
    assert_eq!(o.status("bad"), 1);
    let access = o
        .of_kind("file_accessed")
        .into_iter()
        .find(|e| e["file"]["path_hex"].is_string())
        .expect("a non-UTF-8 path");
    let path = access["file"]["path"].as_str().unwrap();
    assert!(path.ends_with("bad\\xff\\xfename.com"), "{path}");
    let raw = hex::decode(access["file"]["path_hex"].as_str().unwrap()).unwrap();
    assert!(raw.ends_with(b"bad\xff\xfename.com"));
}

const SLOW_RULE: &str = r#"rule slow_loop
{
    condition:
        for any i in (0..filesize - 1) : ( for any j in (0..15) : ( uint8(i + j) == 0x99 ) )
}
"#;

fn slow_rules() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slow.yar"), SLOW_RULE).unwrap();
    dir
}

#[test]
fn no_verdict_before_the_deadline_answers_on_timeout() {
    require_privileges!("no_verdict_before_the_deadline_answers_on_timeout");
    let rules = slow_rules();
    // One scanner thread; each 32 MiB file keeps it busy for the whole scan
    // timeout (1 s), so the third file waits past its 1.5 s deadline.
    let config = format!(
        "[scan]\nrules = \"{}\"\nthreads = 1\ntimeout = \"1s\"\n[enforcer]\ndeadline = \"1500ms\"\non_timeout = \"deny\"\n",
        rules.path().display()
    );
    let o = scenario(
        &config,
        "",
        "for i in 1 2 3; do head -c 33554432 /dev/zero > big$i; done",
        "try big1 cat big1 & P1=$!; try big2 cat big2 & P2=$!; try big3 cat big3 & P3=$!; wait $P1 $P2 $P3",
    );
    let deadline: Vec<_> = o
        .of_kind("decision_made")
        .into_iter()
        .filter(|d| d["event"]["reason"] == "deadline")
        .collect();
    assert!(
        !deadline.is_empty(),
        "at least one open waited past the deadline"
    );
    for d in &deadline {
        assert_eq!(d["portcullis"]["decision"], "deny", "on_timeout = deny");
        let ns = d["event"]["duration"].as_u64().unwrap();
        assert!(
            (1_500_000_000..2_500_000_000).contains(&ns),
            "answered at the deadline plus a small margin, not {ns} ns"
        );
    }
    let denied = ["big1", "big2", "big3"]
        .iter()
        .filter(|n| o.status(n) == 1)
        .count();
    assert_eq!(
        denied,
        deadline.len(),
        "every deadline decision reached its opener"
    );
}

#[test]
fn shutdown_answers_every_pending_decision() {
    require_privileges!("shutdown_answers_every_pending_decision");
    let rules = slow_rules();
    let config = format!(
        "[scan]\nrules = \"{}\"\nthreads = 1\ntimeout = \"5s\"\n[enforcer]\ndeadline = \"8s\"\n",
        rules.path().display()
    );
    let o = scenario(
        &config,
        "",
        "for i in 1 2 3; do head -c 33554432 /dev/zero > big$i; done",
        r#"(try big1 cat big1 & try big2 cat big2 & try big3 cat big3 & wait) &
OPENERS=$!
sleep 0.5
kill -TERM $AGENT
timeout 20 tail --pid=$OPENERS -f /dev/null"#,
    );
    for n in ["big1", "big2", "big3"] {
        assert_eq!(
            o.status(n),
            0,
            "{n} was answered (on_timeout = allow) when the agent stopped"
        );
    }
    let stopped = o.of_kind("agent_stopped");
    let answered = stopped[0]["portcullis"]["answered_pending"]
        .as_u64()
        .unwrap();
    assert!(
        answered >= 2,
        "pending decisions answered at shutdown: {answered}"
    );
    let shutdown = o
        .of_kind("decision_made")
        .into_iter()
        .filter(|d| d["event"]["reason"] == "shutdown")
        .count();
    assert_eq!(shutdown as u64, answered);
}

#[test]
fn the_agents_own_opens_are_allowed_at_once() {
    require_privileges!("the_agents_own_opens_are_allowed_at_once");
    // The quarantine lives inside the protected mount: the agent itself
    // creates files there while it handles a detection. Without the
    // own-pid pass-through it would wait for itself forever.
    let o = scenario(
        "[actions]\nfirst = \"remove\"\nsecond = \"block\"\nquarantine_dir = \"QDIR\"\n",
        "",
        r#"printf '%s' "$EICAR" > eicar.com; sed -i "s|QDIR|$MNT/.quarantine|" "$WORK/config.toml""#,
        "try eicar cat eicar.com; wait_journal --kind action_taken; try gone test ! -e eicar.com; try kept sh -c 'ls .quarantine/*.bin'",
    );
    assert_eq!(o.status("eicar"), 1);
    assert_eq!(o.status("gone"), 0, "the infected file was removed");
    assert_eq!(o.status("kept"), 0, "its backup is in the quarantine");
    let removed = o
        .of_kind("action_taken")
        .into_iter()
        .find(|a| a["event"]["action"] == "remove")
        .expect("a remove action");
    assert_eq!(removed["event"]["outcome"], "success");
    assert!(
        o.accesses_of(".bin").is_empty(),
        "the agent's own opens are not intercepted as accesses"
    );
}

#[test]
fn open_and_modify_rescans_a_written_file_when_it_is_closed() {
    require_privileges!("open_and_modify_rescans_a_written_file_when_it_is_closed");
    let o = scenario(
        "[scan]\nmode = \"open_and_modify\"\n",
        "",
        "echo hello > doc.txt",
        r#"try first cat doc.txt
printf '%s' "$EICAR" > doc.txt
sleep 0.5
try after cat doc.txt"#,
    );
    assert_eq!(o.status("first"), 0);
    assert_eq!(o.status("after"), 1, "denied");
    let closes: Vec<_> = o
        .of_kind("file_accessed")
        .into_iter()
        .filter(|e| e["event"]["action"] == "close_write")
        .collect();
    assert!(!closes.is_empty(), "the close after the write was seen");
    let close_id = closes.last().unwrap()["event"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        o.verdict(&close_id).unwrap()["portcullis"]["verdict"],
        "infected"
    );
    // The open after the write is answered from the verdict of the close.
    let last_open = o
        .accesses_of("doc.txt")
        .into_iter()
        .rfind(|e| e["process"]["name"] == "cat")
        .unwrap();
    let id = last_open["event"]["id"].as_str().unwrap();
    assert_eq!(o.decision(id)["event"]["reason"], "cache_hit");
}
