use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use actix::{Actor, Context, Handler};

use super::*;

#[derive(Default)]
struct Collector(Arc<Mutex<Vec<Record>>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Append> for Collector {
    type Result = ();
    fn handle(&mut self, msg: Append, _: &mut Self::Context) {
        self.0.lock().unwrap().push(msg.0);
    }
}

fn rule(name: &str, meta: &[(&str, &str)]) -> RuleMatch {
    RuleMatch {
        rule: name.into(),
        namespace: "test".into(),
        tags: vec![],
        metadata: meta
            .iter()
            .map(|(k, v)| (k.to_string(), MetaValue::Str(v.to_string())))
            .collect(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    journal: Arc<Mutex<Vec<Record>>>,
    addr: Addr<Actions>,
}

fn fixture(first: ActionChoice, second: ActionChoice) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let journal = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector(journal.clone()).start();
    let cfg = ActionsConfig {
        first,
        second,
        quarantine_dir: root.join("quarantine"),
        ..ActionsConfig::default()
    };
    let addr = Actions::start(cfg, collector.recipient());
    Fixture {
        _dir: dir,
        root,
        journal,
        addr,
    }
}

fn detection(
    path: &std::path::Path,
    pid: u32,
    denied: bool,
    matches: Vec<RuleMatch>,
) -> ActOnDetection {
    let meta = std::fs::metadata(path).unwrap();
    let fd: OwnedFd = std::fs::File::open(path).unwrap().into();
    ActOnDetection {
        access: EventId::new(),
        trace: TraceContext::default(),
        path: FilePath::from(path),
        file: (meta.dev(), meta.ino()),
        pid,
        container: None,
        content: ScanContent::Fd(Arc::new(fd)),
        sha256: Some([7; 32]),
        matches,
        denied,
    }
}

async fn settle(journal: &Arc<Mutex<Vec<Record>>>, n: usize) -> Vec<ActionTaken> {
    for _ in 0..200 {
        if journal.lock().unwrap().len() >= n {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    journal
        .lock()
        .unwrap()
        .iter()
        .map(|r| match &r.body {
            EventBody::ActionTaken(a) => a.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[actix_rt::test]
async fn disinfection_is_not_possible_and_falls_through_to_the_second_action() {
    let f = fixture(ActionChoice::Disinfect, ActionChoice::Block);
    let file = f.root.join("eicar.com");
    std::fs::write(&file, b"bad").unwrap();
    let taken = f
        .addr
        .send(detection(&file, 4242, true, vec![rule("r", &[])]))
        .await
        .unwrap();
    assert_eq!(taken.len(), 2);
    assert_eq!(taken[0].action, ActionKind::Disinfect);
    assert!(matches!(
        taken[0].outcome,
        ActionOutcome::NotPossible { .. }
    ));
    assert_eq!(
        (taken[1].action, taken[1].step),
        (ActionKind::Block, ActionStep::Second)
    );
    assert_eq!(taken[1].outcome, ActionOutcome::Succeeded);
    let journaled = settle(&f.journal, 2).await;
    assert_eq!(journaled, taken, "every attempt is journaled");
}

#[actix_rt::test]
async fn remove_keeps_a_backup_with_metadata_then_unlinks() {
    let f = fixture(ActionChoice::Remove, ActionChoice::None);
    let file = f.root.join("payload.bin");
    std::fs::write(&file, b"malicious content").unwrap();
    let msg = detection(&file, 4242, true, vec![rule("Evil", &[])]);
    let access = msg.access;
    let taken = f.addr.send(msg).await.unwrap();
    assert_eq!(taken.len(), 1, "a successful first action stops there");
    assert_eq!(taken[0].outcome, ActionOutcome::Succeeded);
    assert!(!file.exists(), "the object is removed");
    let q = taken[0].quarantine.clone().unwrap();
    assert_eq!(q.id, access.to_string());
    assert_eq!(
        std::fs::read(q.stored_at.to_path_buf()).unwrap(),
        b"malicious content"
    );
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(f.root.join("quarantine").join(format!("{access}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["original_path"], file.display().to_string());
    assert_eq!(record["rules"][0], "Evil");
    assert_eq!(record["size"], 17);
    let mode = std::fs::metadata(f.root.join("quarantine"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "quarantine is root-only");
}

#[actix_rt::test]
async fn remove_refuses_a_path_that_names_another_file_now() {
    let f = fixture(ActionChoice::Remove, ActionChoice::Block);
    let file = f.root.join("swapped");
    std::fs::write(&file, b"bad").unwrap();
    let msg = detection(&file, 4242, false, vec![]);
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, b"innocent replacement").unwrap();
    let taken = f.addr.send(msg).await.unwrap();
    assert!(
        matches!(&taken[0].outcome, ActionOutcome::Failed { error } if error.contains("no longer names"))
    );
    assert!(file.exists(), "the replacement is untouched");
    assert_eq!(taken[1].action, ActionKind::Block);
    assert!(
        matches!(taken[1].outcome, ActionOutcome::Failed { .. }),
        "block fails when the access was not denied"
    );
}

#[actix_rt::test]
async fn terminate_kills_the_opener() {
    let f = fixture(ActionChoice::Terminate, ActionChoice::None);
    let file = f.root.join("x");
    std::fs::write(&file, b"bad").unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let taken = f
        .addr
        .send(detection(&file, child.id(), true, vec![]))
        .await
        .unwrap();
    assert_eq!(taken[0].outcome, ActionOutcome::Succeeded);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[actix_rt::test]
async fn terminate_never_kills_the_agent_itself() {
    let f = fixture(ActionChoice::Terminate, ActionChoice::None);
    let file = f.root.join("x");
    std::fs::write(&file, b"bad").unwrap();
    let taken = f
        .addr
        .send(detection(&file, std::process::id(), true, vec![]))
        .await
        .unwrap();
    assert!(matches!(taken[0].outcome, ActionOutcome::Failed { .. }));
}

#[actix_rt::test]
async fn recommended_follows_the_rule_metadata() {
    let f = fixture(ActionChoice::Recommended, ActionChoice::None);
    let file = f.root.join("rec");
    std::fs::write(&file, b"bad").unwrap();
    let taken = f
        .addr
        .send(detection(
            &file,
            4242,
            true,
            vec![rule("r", &[("recommended_action", "remove")])],
        ))
        .await
        .unwrap();
    assert_eq!(taken[0].action, ActionKind::Remove);
    assert!(!file.exists());
    assert_eq!(recommended(&[rule("plain", &[])]), ActionKind::Block);
}

#[test]
fn an_insecure_quarantine_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q");
    std::fs::create_dir(&q).unwrap();
    std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Quarantine::open(&q).unwrap_err().to_string();
    assert!(
        err.contains("readable by others") && err.contains(&q.display().to_string()),
        "{err}"
    );
}

#[test]
fn config_errors_name_the_field() {
    let cfg = ActionsConfig {
        first: ActionChoice::None,
        ..ActionsConfig::default()
    };
    assert!(cfg.validate().unwrap_err().starts_with("actions.first"));
    let cfg = ActionsConfig {
        quarantine_dir: "rel".into(),
        ..ActionsConfig::default()
    };
    assert!(cfg
        .validate()
        .unwrap_err()
        .starts_with("actions.quarantine_dir"));
}

#[actix_rt::test]
async fn the_size_limit_purges_the_oldest_entry_and_journals_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let journal = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector(journal.clone()).start();
    let cfg = ActionsConfig {
        first: ActionChoice::Remove,
        second: ActionChoice::None,
        quarantine_dir: root.join("quarantine"),
        quarantine_max_size_mb: 1,
        ..ActionsConfig::default()
    };
    let addr = Actions::start(cfg, collector.recipient());
    let mut ids = Vec::new();
    for name in ["old.bin", "new.bin"] {
        let file = root.join(name);
        std::fs::write(&file, vec![b'x'; 700 * 1024]).unwrap();
        let msg = detection(&file, 4242, true, vec![rule("Evil", &[])]);
        ids.push(msg.access.to_string());
        let taken = addr.send(msg).await.unwrap();
        assert_eq!(taken[0].outcome, ActionOutcome::Succeeded);
    }
    // Two removals, then the purge that the second one's size caused.
    for _ in 0..200 {
        if journal.lock().unwrap().len() >= 3 {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let deleted: Vec<_> = journal
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| match &r.body {
            EventBody::QuarantineDeleted(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0].entry.id, ids[0], "the oldest goes");
    assert_eq!(deleted[0].reason, QuarantineDeletion::MaxSize);
    assert_eq!(deleted[0].operator, None);
    let q = root.join("quarantine");
    assert!(!q.join(format!("{}.bin", ids[0])).exists());
    assert!(
        q.join(format!("{}.bin", ids[1])).exists(),
        "the newest stays"
    );
}

#[test]
fn retention_settings_default_and_name_their_field() {
    let r = ActionsConfig::default().retention();
    assert_eq!(r.max_age, Some(std::time::Duration::from_secs(30 * 86_400)));
    assert_eq!(r.max_bytes, Some(1024 * 1024 * 1024));
    let off = ActionsConfig {
        quarantine_max_age: "off".into(),
        quarantine_max_size_mb: 0,
        ..ActionsConfig::default()
    };
    assert!(off.validate().is_ok());
    assert_eq!(off.retention(), Retention::default());
    for bad in ["soon", "0s"] {
        let cfg = ActionsConfig {
            quarantine_max_age: bad.into(),
            ..ActionsConfig::default()
        };
        let err = cfg.validate().unwrap_err();
        assert!(err.starts_with("actions.quarantine_max_age"), "{err}");
    }
}
