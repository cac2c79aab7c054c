use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

use portcullis_schemas::{ContainerRuntime, MetaValue};
use sha2::{Digest, Sha256};

use super::*;

struct Store {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    q: Quarantine,
}

fn store() -> Store {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let q = Quarantine::open(&root.join("q")).unwrap();
    Store { _tmp: tmp, root, q }
}

fn rule(name: &str) -> RuleMatch {
    RuleMatch {
        rule: name.into(),
        namespace: "t".into(),
        tags: vec![],
        metadata: vec![("k".into(), MetaValue::Int(1))],
    }
}

/// Stores `bytes` as detected at `path` (mode 0o4750, owner 1234:5678).
fn keep(s: &Store, path: &Path, bytes: &[u8]) -> String {
    let access = EventId::new();
    let container = ContainerRef::new(ContainerRuntime::Podman, "c0ffee".repeat(10) + "abcd");
    let sha: [u8; 32] = Sha256::digest(bytes).into();
    s.q.store(Detected {
        access,
        path: &FilePath::from(path),
        content: &ScanContent::Bytes(bytes.to_vec()),
        sha256: Some(sha),
        file: (1, 2),
        owner: Some((0o100_000 | 0o4750, 1234, 5678)),
        pid: 42,
        container: Some(&container),
        matches: &[rule("Evil")],
    })
    .unwrap();
    access.to_string()
}

fn set_age(s: &Store, id: &str, when: Timestamp) {
    let path = s.q.dir().join(format!("{id}.json"));
    let mut r: QuarantineRecord = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    r.quarantined_at = when.to_rfc3339();
    fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
}

#[test]
fn a_stored_object_lists_with_its_record() {
    let s = store();
    let original = s.root.join("evil.sh");
    let id = keep(&s, &original, b"payload");
    let listed = s.q.list().unwrap();
    assert_eq!(listed.len(), 1);
    let r = listed[0].record.as_ref().unwrap();
    assert_eq!(listed[0].id, id);
    assert!(listed[0].bytes > 7, "copy and record are counted");
    assert_eq!(r.mode, Some(0o4750));
    assert_eq!((r.uid, r.gid), (Some(1234), Some(5678)));
    assert_eq!(r.rules, ["Evil"]);
    assert_eq!(
        r.container.as_ref().unwrap().runtime,
        ContainerRuntime::Podman
    );
    let o = r.object().unwrap();
    assert_eq!(o.original_path, FilePath::from(original.as_path()));
    assert_eq!(o.detection.to_string(), id);
    assert_eq!(o.size, 7);
}

#[test]
fn restore_writes_the_object_back_with_its_mode_and_owner() {
    let s = store();
    let original = s.root.join("evil.sh");
    let id = keep(&s, &original, b"payload");
    let ev = s.q.restore(&id, &RestoreTo::default(), None).unwrap();
    assert_eq!(fs::read(&original).unwrap(), b"payload");
    let m = fs::metadata(&original).unwrap();
    assert_eq!(
        m.permissions().mode() & 0o7777,
        0o4750,
        "set-id bits survive the chown"
    );
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    assert_eq!(ev.restored_to, FilePath::from(original.as_path()));
    assert!(!ev.replaced);
    assert_eq!(ev.entry.id, id);
    assert!(
        s.q.record(&id).is_ok(),
        "a restore keeps the entry until it is deleted"
    );
    let leftovers: Vec<_> = fs::read_dir(&s.root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".portcullis-restore")
        })
        .collect();
    assert!(leftovers.is_empty(), "no temporary file is left");
}

#[test]
fn restore_never_overwrites_unless_asked_and_never_replaces_a_directory() {
    let s = store();
    let original = s.root.join("evil.sh");
    let id = keep(&s, &original, b"payload");
    fs::write(&original, b"new version").unwrap();
    let err = s.q.restore(&id, &RestoreTo::default(), None).unwrap_err();
    assert!(err.to_string().contains("--force replaces it"), "{err}");
    assert_eq!(fs::read(&original).unwrap(), b"new version");
    let replace = RestoreTo {
        replace: true,
        ..RestoreTo::default()
    };
    let ev = s.q.restore(&id, &replace, None).unwrap();
    assert!(ev.replaced);
    assert_eq!(fs::read(&original).unwrap(), b"payload");

    fs::remove_file(&original).unwrap();
    fs::create_dir(&original).unwrap();
    let err = s.q.restore(&id, &replace, None).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[test]
fn restore_never_follows_a_symlink_on_the_way() {
    let s = store();
    let outside = s.root.join("outside");
    fs::create_dir(&outside).unwrap();
    // The object was detected in `uploads/`; since then `uploads` became
    // a symlink to another directory.
    let uploads = s.root.join("uploads");
    let id = keep(&s, &uploads.join("evil.sh"), b"payload");
    symlink(&outside, &uploads).unwrap();
    let err = s.q.restore(&id, &RestoreTo::default(), None).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written through it"
    );

    // --to through a symlinked directory is refused the same way.
    let to = RestoreTo {
        to: Some(FilePath::from(uploads.join("x").as_path())),
        replace: false,
        keep_mode: false,
    };
    assert!(s.q.restore(&id, &to, None).is_err());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn a_replace_replaces_a_symlink_itself_not_its_target() {
    let s = store();
    let original = s.root.join("evil.sh");
    let id = keep(&s, &original, b"payload");
    let victim = s.root.join("victim");
    fs::write(&victim, b"keep me").unwrap();
    symlink(&victim, &original).unwrap();
    let replace = RestoreTo {
        replace: true,
        ..RestoreTo::default()
    };
    let ev = s.q.restore(&id, &replace, None).unwrap();
    assert!(ev.replaced);
    assert_eq!(fs::read(&victim).unwrap(), b"keep me");
    assert!(fs::symlink_metadata(&original).unwrap().is_file());
    assert_eq!(fs::read(&original).unwrap(), b"payload");
}

#[test]
fn restore_to_a_directory_keeps_the_name_and_to_a_file_takes_it() {
    let s = store();
    let id = keep(&s, &s.root.join("gone/evil.sh"), b"payload");
    let err = s.q.restore(&id, &RestoreTo::default(), None).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let dir = s.root.join("inspect");
    fs::create_dir(&dir).unwrap();
    let to_dir = RestoreTo {
        to: Some(FilePath::from(dir.as_path())),
        replace: false,
        keep_mode: false,
    };
    let ev = s.q.restore(&id, &to_dir, None).unwrap();
    assert_eq!(
        ev.restored_to,
        FilePath::from(dir.join("evil.sh").as_path())
    );
    assert_eq!(fs::read(dir.join("evil.sh")).unwrap(), b"payload");
    // Elsewhere, a sample: no set-id bits, nothing for others, owned by
    // whoever restored it.
    let m = fs::metadata(dir.join("evil.sh")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o700);
    // SAFETY: geteuid has no preconditions.
    assert_eq!(m.uid(), unsafe { libc::geteuid() });
    let kept = RestoreTo {
        to: Some(FilePath::from(dir.join("kept").as_path())),
        replace: false,
        keep_mode: true,
    };
    s.q.restore(&id, &kept, None).unwrap();
    let m = fs::metadata(dir.join("kept")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4750);
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    let to_file = RestoreTo {
        to: Some(FilePath::from(dir.join("sample.bin").as_path())),
        replace: false,
        keep_mode: false,
    };
    s.q.restore(&id, &to_file, None).unwrap();
    assert_eq!(fs::read(dir.join("sample.bin")).unwrap(), b"payload");
    let relative = RestoreTo {
        to: Some(FilePath::from(Path::new("rel/x"))),
        replace: false,
        keep_mode: false,
    };
    assert!(s.q.restore(&id, &relative, None).is_err());
}

#[test]
fn a_copy_that_does_not_match_its_hash_is_not_restored() {
    let s = store();
    let original = s.root.join("evil.sh");
    let id = keep(&s, &original, b"payload");
    fs::write(s.q.dir().join(format!("{id}.bin")), b"tampered").unwrap();
    let err = s.q.restore(&id, &RestoreTo::default(), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not match its recorded sha256"),
        "{err}"
    );
    assert!(!original.exists());
    assert_eq!(
        fs::read_dir(&s.root).unwrap().count(),
        1,
        "only the store: no temporary file"
    );
}

#[test]
fn ids_never_reach_a_file_name_unless_they_are_event_ids() {
    let s = store();
    for bad in ["../q", "/etc/passwd", "", "x.json"] {
        assert!(
            matches!(s.q.record(bad), Err(QuarantineError::BadId { .. })),
            "{bad}"
        );
        assert!(s.q.delete(bad, QuarantineDeletion::Operator, None).is_err());
    }
    let unknown = EventId::new().to_string();
    assert!(matches!(
        s.q.record(&unknown),
        Err(QuarantineError::NotFound { .. })
    ));
}

#[test]
fn delete_removes_the_entry_and_says_who_asked() {
    let s = store();
    let id = keep(&s, &s.root.join("evil.sh"), b"payload");
    let op = Operator {
        uid: 0,
        login_uid: Some(1000),
        pid: 7,
    };
    let ev =
        s.q.delete(&id, QuarantineDeletion::Operator, Some(op))
            .unwrap();
    assert_eq!(ev.operator, Some(op));
    assert_eq!(ev.reason, QuarantineDeletion::Operator);
    assert_eq!(fs::read_dir(s.q.dir()).unwrap().count(), 0);
    assert!(matches!(
        s.q.delete(&id, QuarantineDeletion::Operator, None),
        Err(QuarantineError::NotFound { .. })
    ));
}

#[test]
fn retention_deletes_the_oldest_first_and_keeps_the_newest() {
    let s = store();
    let now = Timestamp::now();
    let day = 86_400 * 1_000_000_000i64;
    let ids: Vec<String> = (0..4)
        .map(|i| {
            let id = keep(&s, &s.root.join(format!("f{i}")), &vec![b'x'; 4096]);
            set_age(&s, &id, Timestamp(now.0 - (10 - i) * day));
            id
        })
        .collect();
    // Nothing set: nothing deleted.
    let (gone, errs) = s.q.purge(Retention::default(), now);
    assert!(gone.is_empty() && errs.is_empty());

    // Older than 8.5 days: the two oldest (10 and 9 days old).
    let by_age = Retention {
        max_age: Some(Duration::from_secs(8 * 86_400 + 43_200)),
        max_bytes: None,
    };
    let (gone, _) = s.q.purge(by_age, now);
    let gone_ids: Vec<&str> = gone.iter().map(|d| d.entry.id.as_str()).collect();
    assert_eq!(gone_ids, [ids[0].as_str(), ids[1].as_str()]);
    assert!(gone.iter().all(|d| d.reason == QuarantineDeletion::MaxAge));

    // A size that holds one entry: the older of the two left goes.
    let by_size = Retention {
        max_age: None,
        max_bytes: Some(5000),
    };
    let (gone, _) = s.q.purge(by_size, now);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].entry.id, ids[2]);
    assert_eq!(gone[0].reason, QuarantineDeletion::MaxSize);
    // Even a size smaller than the newest entry keeps it.
    let tiny = Retention {
        max_age: None,
        max_bytes: Some(1),
    };
    assert!(s.q.purge(tiny, now).0.is_empty());
    assert!(s.q.record(&ids[3]).is_ok());
}

#[test]
fn an_unreadable_record_is_listed_with_its_error_and_never_purged() {
    let s = store();
    let id = keep(&s, &s.root.join("evil.sh"), b"payload");
    set_age(&s, &id, Timestamp(0));
    fs::write(s.q.dir().join(format!("{id}.json")), b"{not json").unwrap();
    // And one whose time does not read, which must not pass for the newest.
    let odd = keep(&s, &s.root.join("odd"), b"odd");
    let path = s.q.dir().join(format!("{odd}.json"));
    let mut r: QuarantineRecord = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    r.quarantined_at = "yesterday".into();
    fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
    let listed = s.q.list().unwrap();
    assert_eq!(listed.len(), 2);
    let broken = listed.iter().find(|l| l.id == id).unwrap();
    let err = broken.record.as_ref().unwrap_err().to_string();
    assert!(err.contains(&format!("{id}.json")), "names the file: {err}");
    let old = Retention {
        max_age: Some(Duration::from_secs(1)),
        max_bytes: Some(1),
    };
    assert!(s.q.purge(old, Timestamp::now()).0.is_empty());
    assert!(s.q.dir().join(format!("{id}.bin")).exists());
    assert!(s.q.dir().join(format!("{odd}.bin")).exists());
    // They do not count against the size either: two new entries within
    // the limit both stay.
    let a = keep(&s, &s.root.join("a"), b"a");
    let b = keep(&s, &s.root.join("b"), b"b");
    let entry =
        s.q.list()
            .unwrap()
            .iter()
            .find(|l| l.id == a)
            .unwrap()
            .bytes;
    let roomy = Retention {
        max_age: None,
        max_bytes: Some(2 * entry + 10),
    };
    assert!(s.q.purge(roomy, Timestamp::now()).0.is_empty());
    assert!(s.q.record(&a).is_ok() && s.q.record(&b).is_ok());
}

#[test]
fn a_record_from_before_owners_were_kept_restores_root_only() {
    let s = store();
    let original = s.root.join("evil.sh");
    let id = keep(&s, &original, b"payload");
    let path = s.q.dir().join(format!("{id}.json"));
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    for k in ["mode", "uid", "gid", "container"] {
        v.as_object_mut().unwrap().remove(k);
    }
    fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    s.q.restore(&id, &RestoreTo::default(), None).unwrap();
    let m = fs::metadata(&original).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o600);
    assert_eq!((m.uid(), m.gid()), (0, 0));
}
