//! Privileged end-to-end tests of archive scanning: the real `portcullis
//! run` protecting a tmpfs in a private mount namespace (see
//! `common::scenario`), opens of archives made with Python's zipfile and
//! tarfile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::process::Command;

use common::*;

/// Setup lines making `outer.tar.gz` (with `dir/inner.zip!evil.sh`, the
/// EICAR file), `clean.jar` (a zip of harmless classes) and a copy of both
/// under `$WORK` for `portcullis scan`.
const NESTED: &str = r#"python3 - "$EICAR" <<'PY'
import io, sys, tarfile, zipfile
eicar = sys.argv[1].encode()
z = io.BytesIO()
with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as f:
    f.writestr("readme.txt", "nothing to see")
    f.writestr("evil.sh", eicar)
with tarfile.open("outer.tar.gz", "w:gz") as t:
    for name, data in [("dir/notes.txt", b"clean"), ("dir/inner.zip", z.getvalue())]:
        i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
with zipfile.ZipFile("clean.jar", "w", zipfile.ZIP_DEFLATED) as f:
    f.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    f.writestr("a/B.class", b"\xca\xfe\xba\xbe" + bytes(200))
PY
cp outer.tar.gz clean.jar "$WORK/"
"#;

#[test]
fn an_infected_member_inside_nested_archives_is_denied_on_open_and_named() {
    require_privileges!("an_infected_member_inside_nested_archives_is_denied_on_open_and_named");
    let o = scenario(
        "",
        "",
        NESTED,
        "try outer cat outer.tar.gz; try jar cat clean.jar",
    );
    assert_eq!(o.status("outer"), 1, "{}", o.agent_log);
    assert!(o.stderr("outer").contains("Operation not permitted"));
    assert_eq!(o.status("jar"), 0);

    let id = o.access_id("outer.tar.gz");
    assert_eq!(o.decision(&id)["portcullis"]["decision"], "deny");
    let v = o.verdict(&id).unwrap();
    assert_eq!(v["portcullis"]["verdict"], "infected");
    assert_eq!(v["portcullis"]["archive_member"], "dir/inner.zip!evil.sh");
    assert!(v["file"]["path"]
        .as_str()
        .unwrap()
        .ends_with("/outer.tar.gz"));
    assert_eq!(v["rule"]["name"], "eicar_test_file");
    assert_eq!(v["event"]["kind"], "alert");
    // The actions apply to the archive.
    let actions = o.of_kind("action_taken");
    assert!(
        actions
            .iter()
            .any(|a| a["portcullis"]["access_id"] == id.as_str()
                && a["file"]["path"]
                    .as_str()
                    .unwrap()
                    .ends_with("/outer.tar.gz")),
        "{actions:#?}"
    );
    let jar = o.access_id("clean.jar");
    assert_eq!(o.verdict(&jar).unwrap()["portcullis"]["verdict"], "clean");
}

#[test]
fn scan_reports_archive_members_and_keeps_its_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; mkdir {0}/gen; cd {0}/gen; WORK={0}; {NESTED}",
            dir.path().display()
        ))
        .env("EICAR", EICAR)
        .status()
        .unwrap();
    assert!(status.success());
    let scan = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("scan")
            .args(args)
            .arg(dir.path().join("outer.tar.gz"))
            .arg(dir.path().join("clean.jar"))
            .output()
            .unwrap()
    };
    let out = scan(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("outer.tar.gz!dir/inner.zip!evil.sh: INFECTED eicar:eicar_test_file"),
        "{text}"
    );
    assert!(text.contains("clean.jar: clean"), "{text}");

    let out = scan(&["--format", "jsonl"]);
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["member"], "dir/inner.zip!evil.sh");
    assert_eq!(first["verdict"], "infected");

    let out = scan(&["--archives", "off"]);
    assert_eq!(out.status.code(), Some(0), "opaque bytes: nothing found");
}

#[test]
fn archive_bombs_are_answered_by_their_limits_and_on_limit_decides() {
    require_privileges!("archive_bombs_are_answered_by_their_limits_and_on_limit_decides");
    // A gzip of 1 GiB of zeros, and a 42.zip-style nested bomb (16 zips of
    // 16 zips of 16 files of 4 MiB of zeros).
    let setup = r#"head -c 1G /dev/zero | gzip -1 > zeros.gz
python3 - <<'PY'
import io, zipfile
def zipped(files):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(name, data)
    return b.getvalue()
leaf = zipped([(f"{i}.dll", bytes(4 << 20)) for i in range(16)])
mid = zipped([(f"lib{i}.zip", leaf) for i in range(16)])
open("42.zip", "wb").write(zipped([(f"{i}.zip", mid) for i in range(16)]))
PY
"#;
    let config = "[scan.archives]\non_limit = \"deny\"\n";
    let o = scenario(
        config,
        "",
        setup,
        "try gz cat zeros.gz; try nested cat 42.zip; try again cat 42.zip",
    );
    for name in ["gz", "nested", "again"] {
        assert_eq!(
            o.status(name),
            1,
            "{name}: answered (not the 20 s timeout of `try`) and denied by on_limit: {}",
            o.agent_log
        );
    }
    for file in ["zeros.gz", "42.zip"] {
        let id = o.access_id(file);
        let d = o.decision(&id);
        assert_eq!(d["portcullis"]["decision"], "deny", "{file}");
        assert_eq!(d["event"]["reason"], "verdict", "{file}");
        let v = o.verdict(&id).unwrap();
        assert_eq!(v["event"]["reason"], "archive_limit", "{file}: {v:#}");
        let limit = v["portcullis"]["unprocessed"]["archive_limit"]
            .as_str()
            .unwrap();
        assert!(
            [
                "max_ratio",
                "max_member_bytes",
                "max_total_bytes",
                "max_memory"
            ]
            .contains(&limit),
            "{file}: {limit}"
        );
        // Reason `verdict`, not `deadline`: the walk's limit answered,
        // before the deadline did.
    }
    // The second open of the bomb is answered from the cache, not walked again.
    let opens = o.accesses_of("42.zip");
    assert_eq!(opens.len(), 2);
    let again = opens[1]["event"]["id"].as_str().unwrap();
    assert_eq!(o.decision(again)["event"]["reason"], "cache_hit");
    assert_eq!(o.decision(again)["portcullis"]["decision"], "deny");
}
