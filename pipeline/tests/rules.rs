//! Privileged end-to-end tests of the rule lifecycle: hot reloads (SIGHUP
//! and the directory watch), a refused reload, and the hash lists. The real
//! `portcullis run` protects a tmpfs in a private mount namespace (see
//! `common::scenario`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::*;

/// `rules/eicar.yar`, copied into the test's rules directory.
const EICAR_RULE: &str = include_str!("../../rules/eicar.yar");

/// Setup lines writing the EICAR rule into `$WORK/rules`.
fn rules_dir_setup() -> String {
    format!("mkdir -p \"$WORK/rules\"\ncat > \"$WORK/rules/eicar.yar\" <<'PORTCULLIS_RULE'\n{EICAR_RULE}\nPORTCULLIS_RULE\n")
}

/// Script lines waiting (at most 20 s) for `pattern` in the agent's log.
fn wait_log(pattern: &str, n: usize) -> String {
    format!(
        "for _ in $(seq 1 200); do [ \"$(grep -c '{pattern}' \"$WORK/agent.log\")\" -ge {n} ] && break; sleep 0.1; done\n"
    )
}

#[test]
fn a_reload_that_adds_a_rule_denies_a_file_the_kernel_had_cached_as_clean() {
    require_privileges!("a_reload_that_adds_a_rule_denies_a_file_the_kernel_had_cached_as_clean");
    let setup = format!(
        "{}echo 'portcullis reload marker 7f3a' > target.txt\n",
        rules_dir_setup()
    );
    let script = format!(
        r#"try first cat target.txt
try cached cat target.txt
cat > "$WORK/rules/added.yar" <<'EOF'
rule reload_marker {{ strings: $m = "portcullis reload marker 7f3a" condition: $m }}
EOF
kill -HUP $AGENT
{wait}try after cat target.txt
"#,
        wait = wait_log("rules reloaded", 1)
    );
    let o = scenario("", "--rules \"$WORK/rules\"", &setup, &script);
    assert_eq!(o.status("first"), 0, "{}", o.agent_log);
    assert_eq!(o.status("cached"), 0);
    assert_eq!(
        o.status("after"),
        1,
        "denied once the new rule is in force: {}",
        o.agent_log
    );
    assert!(o.stderr("after").contains("Operation not permitted"));

    // Two opens before the reload, one access: the second was answered by
    // the kernel's ignore mark. The open after the reload was intercepted
    // again: the flush took the mark back.
    let accesses = o.accesses_of("target.txt");
    assert_eq!(accesses.len(), 2, "{accesses:#?}");
    let first = accesses[0]["event"]["id"].as_str().unwrap();
    let after = accesses[1]["event"]["id"].as_str().unwrap();
    assert_eq!(o.decision(first)["portcullis"]["decision"], "allow");
    assert_eq!(o.decision(after)["portcullis"]["decision"], "deny");
    assert_eq!(o.decision(after)["event"]["reason"], "verdict");
    let v = o.verdict(after).unwrap();
    assert_eq!(v["rule"]["name"], "reload_marker");

    // Both rulesets are journaled, the reload's last, and the verdict is
    // of the new one.
    let loaded = o.of_kind("rules_loaded");
    assert_eq!(loaded.len(), 2, "{loaded:#?}");
    let (old, new) = (&loaded[0]["rule"]["version"], &loaded[1]["rule"]["version"]);
    assert_ne!(old, new);
    assert_eq!(&v["rule"]["version"], new, "{v:#}");
    assert!(
        o.agent_log.contains("verdict caches emptied"),
        "{}",
        o.agent_log
    );
}

#[test]
fn a_reload_that_does_not_compile_is_refused_and_the_old_rules_stay() {
    require_privileges!("a_reload_that_does_not_compile_is_refused_and_the_old_rules_stay");
    let setup = format!(
        "{}printf '%s' \"$EICAR\" > eicar.com; echo hello > clean.txt\n",
        rules_dir_setup()
    );
    let script = format!(
        r#"printf 'rule broken {{\n  condition: filesiz > 0\n}}\n' > "$WORK/rules/broken.yar"
kill -HUP $AGENT
{wait}try eicar cat eicar.com
try clean cat clean.txt
"#,
        wait = wait_log("rules reload refused", 1)
    );
    let o = scenario("", "--rules \"$WORK/rules\"", &setup, &script);
    assert_eq!(
        o.status("eicar"),
        1,
        "the old rules still deny: {}",
        o.agent_log
    );
    assert_eq!(o.status("clean"), 0);

    let rejected = o.of_kind("rules_rejected");
    assert_eq!(rejected.len(), 1, "{:#?}", o.events);
    let r = rejected[0];
    assert_eq!(r["event"]["outcome"], "failure");
    let reason = r["event"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("broken.yar:2:14:") && reason.contains("filesiz"),
        "the error names the file, line and column: {reason}"
    );
    let loaded = o.of_kind("rules_loaded");
    assert_eq!(loaded.len(), 1, "only the start's ruleset was loaded");
    assert_eq!(
        r["rule"]["version"], loaded[0]["rule"]["version"],
        "the rejection names the ruleset that stays"
    );
    let bad = o.access_id("eicar.com");
    assert_eq!(o.verdict(&bad).unwrap()["rule"]["name"], "eicar_test_file");
}

#[test]
fn hash_lists_decide_without_a_scan_and_the_watch_reloads_them() {
    require_privileges!("hash_lists_decide_without_a_scan_and_the_watch_reloads_them");
    // The EICAR file is trusted by digest (allowed though a rule matches),
    // a file no rule matches is known bad (denied). Removing the trusted
    // list is picked up by the watch, without a signal: the EICAR file,
    // cached clean in the kernel, is denied on its next open.
    let setup = format!(
        r#"{}printf '%s' "$EICAR" > eicar.com
echo 'nothing any rule knows' > feed.bin
sha256sum eicar.com > "$WORK/rules/vendor.trusted.sha256"
( echo '# threat feed'; sha256sum feed.bin ) > "$WORK/rules/feed.known-bad.sha256"
"#,
        rules_dir_setup()
    );
    let script = format!(
        r#"try trusted cat eicar.com
try bad cat feed.bin
rm "$WORK/rules/vendor.trusted.sha256"
{wait}try untrusted cat eicar.com
"#,
        wait = wait_log("rules reloaded", 1)
    );
    let config = "[scan]\nwatch_rules = true\nwatch_interval = \"200ms\"\n";
    let o = scenario(config, "--rules \"$WORK/rules\"", &setup, &script);
    assert_eq!(o.status("trusted"), 0, "{}", o.agent_log);
    assert_eq!(o.status("bad"), 1);
    assert_eq!(o.status("untrusted"), 1, "{}", o.agent_log);

    let eicar = o.accesses_of("eicar.com");
    assert_eq!(eicar.len(), 2);
    let trusted = eicar[0]["event"]["id"].as_str().unwrap();
    assert_eq!(o.decision(trusted)["event"]["reason"], "trusted_hash");
    assert_eq!(o.decision(trusted)["portcullis"]["decision"], "allow");
    let untrusted = eicar[1]["event"]["id"].as_str().unwrap();
    assert_eq!(o.decision(untrusted)["event"]["reason"], "verdict");
    assert_eq!(
        o.verdict(untrusted).unwrap()["rule"]["name"],
        "eicar_test_file"
    );

    let bad = o.access_id("feed.bin");
    assert_eq!(o.decision(&bad)["event"]["reason"], "known_bad_hash");
    assert_eq!(o.decision(&bad)["portcullis"]["decision"], "deny");
    let v = o.verdict(&bad).unwrap();
    assert_eq!(v["rule"]["name"], "known_bad_hash");
    assert_eq!(v["rule"]["ruleset"], "feed.known-bad.sha256", "{v:#}");
    assert_eq!(o.of_kind("rules_loaded").len(), 2);
}
