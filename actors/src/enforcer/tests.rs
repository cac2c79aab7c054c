//! Enforcer semantics without a kernel: synthetic accesses answered on a
//! channel, a scripted scanner, and a journal that records what it gets.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use portcullis_schemas::{FileInfo, PolicyRef, ProcessInfo, RuleMatch};
use tokio::sync::watch;

use super::*;
use crate::policy::PolicySpec;

/// Scans `Bytes` content: "EICAR" inside means infected, "ERROR" an error.
/// While the gate is closed, scans wait.
struct FakeScanner {
    gate: watch::Receiver<bool>,
    calls: Arc<Mutex<u32>>,
}

impl Actor for FakeScanner {
    type Context = Context<Self>;
}

impl Handler<ScanFile> for FakeScanner {
    type Result = ResponseFuture<ScanOutcome>;

    fn handle(&mut self, msg: ScanFile, _: &mut Self::Context) -> Self::Result {
        *self.calls.lock().unwrap() += 1;
        let mut gate = self.gate.clone();
        Box::pin(async move {
            while !*gate.borrow() {
                if gate.changed().await.is_err() {
                    break;
                }
            }
            let bytes = match &msg.content {
                ScanContent::Bytes(b) => b.clone(),
                _ => Vec::new(),
            };
            let text = String::from_utf8_lossy(&bytes);
            let verdict = if text.contains("EICAR") {
                Verdict::Infected {
                    matches: vec![RuleMatch {
                        rule: "EICAR_Test_File".into(),
                        namespace: "eicar".into(),
                        tags: vec![],
                        metadata: vec![],
                    }],
                }
            } else if text.contains("ERROR") {
                Verdict::Error {
                    message: "boom".into(),
                }
            } else {
                Verdict::Clean
            };
            ScanOutcome {
                verdict,
                sha256: Some([1; 32]),
                size: bytes.len() as u64,
                ruleset: RulesetVersion("test".into()),
                duration: Duration::from_micros(10),
                hash_list: None,
                members: Vec::new(),
            }
        })
    }
}

#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<Record>>>);

impl Actor for Journal {
    type Context = Context<Self>;
}

impl Handler<Append> for Journal {
    type Result = ();
    fn handle(&mut self, msg: Append, _: &mut Self::Context) {
        self.0.lock().unwrap().push(msg.0);
    }
}

impl Journal {
    fn decisions(&self) -> Vec<DecisionMade> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match &r.body {
                EventBody::DecisionMade(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }
    fn kinds(&self) -> Vec<&'static str> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body.kind().as_str())
            .collect()
    }
    fn accesses(&self) -> Vec<FileAccessed> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match &r.body {
                EventBody::FileAccessed(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }
}

#[derive(Clone, Default)]
struct Acts(Arc<Mutex<Vec<(EventId, bool)>>>);

impl Actor for Acts {
    type Context = Context<Self>;
}

impl Handler<ActOnDetection> for Acts {
    type Result = Vec<portcullis_schemas::ActionTaken>;
    fn handle(&mut self, msg: ActOnDetection, _: &mut Self::Context) -> Self::Result {
        self.0.lock().unwrap().push((msg.access, msg.denied));
        Vec::new()
    }
}

struct Harness {
    enforcer: Addr<Enforcer>,
    journal: Journal,
    acts: Acts,
    gate: watch::Sender<bool>,
    scans: Arc<Mutex<u32>>,
}

fn start(cfg: EnforcerConfig, policies: &[PolicySpec], gate_open: bool) -> Harness {
    let (gate, rx) = watch::channel(gate_open);
    let scans = Arc::new(Mutex::new(0));
    let scanner = FakeScanner {
        gate: rx,
        calls: scans.clone(),
    }
    .start();
    let journal = Journal::default();
    let acts = Acts::default();
    let enforcer = Enforcer::new(
        cfg,
        Arc::new(Policies::build(policies).unwrap()),
        RulesetVersion("test".into()),
        scanner.recipient(),
        journal.clone().start().recipient(),
    )
    .with_actions(acts.clone().start().recipient())
    .start();
    Harness {
        enforcer,
        journal,
        acts,
        gate,
        scans,
    }
}

fn file(path: &str, inode: u64, mtime: i64) -> FileInfo {
    FileInfo {
        path: FilePath::from_bytes(path.as_bytes()),
        device: 1,
        inode,
        size: 4,
        mtime_ns: mtime,
        ctime_ns: mtime,
    }
}

fn request(
    file: FileInfo,
    content: &str,
    blocking: bool,
) -> (AccessRequest, Receiver<(EventId, Decision)>) {
    let (tx, rx) = sync_channel(1);
    let req = AccessRequest {
        event_id: EventId::new(),
        kind: AccessKind::Open,
        file,
        layer_device: None,
        process: ProcessInfo {
            pid: 4242,
            ppid: 1,
            ..ProcessInfo::default()
        },
        container: None,
        labels: None,
        content: ScanContent::Bytes(content.as_bytes().to_vec()),
        responder: if blocking {
            Responder::Channel(tx)
        } else {
            Responder::Detached
        },
        received: Instant::now(),
    };
    (req, rx)
}

/// Waits (bounded) for the decision, without blocking the actor system.
async fn answer(rx: &Receiver<(EventId, Decision)>) -> Option<Decision> {
    for _ in 0..400 {
        if let Ok((_, d)) = rx.try_recv() {
            return Some(d);
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

async fn quiesce(h: &Harness) -> EnforcerStats {
    // Stats travel through the same mailbox, after everything sent before.
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    h.enforcer.send(GetStats).await.unwrap()
}

fn policy(name: &str, mode: Mode) -> PolicySpec {
    PolicySpec {
        mode,
        paths: vec!["/srv/**".into()],
        exclude_paths: vec!["/srv/skip/**".into()],
        ..PolicySpec::named(name)
    }
}

#[actix_rt::test]
async fn clean_file_is_allowed_after_its_verdict_and_every_fact_is_journaled() {
    let h = start(EnforcerConfig::default(), &[], true);
    let (req, rx) = request(file("/srv/a", 1, 1), "hello", true);
    let id = req.event_id;
    h.enforcer.do_send(req);
    assert_eq!(answer(&rx).await, Some(Decision::Allow));
    quiesce(&h).await;
    assert_eq!(
        h.journal.kinds(),
        [
            "file_accessed",
            "scan_requested",
            "decision_made",
            "verdict_issued"
        ]
    );
    let d = &h.journal.decisions()[0];
    assert_eq!(
        (d.access, d.decision, d.reason),
        (id, Decision::Allow, DecisionReason::Verdict)
    );
    assert!(h.acts.0.lock().unwrap().is_empty());
}

#[actix_rt::test]
async fn infected_file_is_denied_and_actions_run_in_enforce_mode() {
    let h = start(EnforcerConfig::default(), &[], true);
    let (req, rx) = request(file("/srv/eicar", 2, 1), "X5O EICAR", true);
    let id = req.event_id;
    h.enforcer.do_send(req);
    assert_eq!(answer(&rx).await, Some(Decision::Deny));
    let stats = quiesce(&h).await;
    assert_eq!(stats.infected, 1);
    assert_eq!(*h.acts.0.lock().unwrap(), vec![(id, true)]);
}

#[actix_rt::test]
async fn audit_never_waits_for_the_scan_and_only_records_detections() {
    let cfg = EnforcerConfig {
        mode: Mode::Audit,
        ..EnforcerConfig::default()
    };
    let h = start(cfg, &[], false);
    let (req, rx) = request(file("/srv/eicar", 3, 1), "EICAR", true);
    h.enforcer.do_send(req);
    // The scan is still held at the gate: the answer must not wait for it.
    assert_eq!(answer(&rx).await, Some(Decision::Allow));
    assert!(!h.journal.kinds().contains(&"verdict_issued"));
    h.gate.send(true).unwrap();
    let stats = quiesce(&h).await;
    assert_eq!(stats.infected, 1, "the scan still ran");
    assert!(h.journal.kinds().contains(&"verdict_issued"));
    assert_eq!(h.journal.decisions()[0].reason, DecisionReason::AuditMode);
    assert!(
        h.acts.0.lock().unwrap().is_empty(),
        "no action runs in audit mode"
    );
}

#[actix_rt::test]
async fn a_policy_in_audit_mode_still_blocks_under_an_enforcing_interceptor() {
    let h = start(
        EnforcerConfig::default(),
        &[policy("audit-only", Mode::Audit)],
        true,
    );
    let (req, rx) = request(file("/srv/eicar", 4, 1), "EICAR", true);
    h.enforcer.do_send(req);
    assert_eq!(answer(&rx).await, Some(Decision::Deny));
    quiesce(&h).await;
    let access = &h.journal.accesses()[0];
    assert_eq!(access.interceptor_mode, Mode::Enforce);
    assert_eq!(
        access.policy,
        Some(PolicyRef {
            name: "audit-only".into(),
            mode: Mode::Audit
        })
    );
}

#[actix_rt::test]
async fn files_out_of_scope_are_allowed_without_a_scan() {
    let h = start(
        EnforcerConfig::default(),
        &[policy("srv", Mode::Enforce)],
        false,
    );
    for path in ["/elsewhere/eicar", "/srv/skip/eicar"] {
        let (req, rx) = request(file(path, 5, 1), "EICAR", true);
        h.enforcer.do_send(req);
        assert_eq!(answer(&rx).await, Some(Decision::Allow));
    }
    quiesce(&h).await;
    assert_eq!(*h.scans.lock().unwrap(), 0);
    assert!(h
        .journal
        .decisions()
        .iter()
        .all(|d| d.reason == DecisionReason::NotInScope));
}

#[actix_rt::test]
async fn no_verdict_before_the_deadline_answers_on_timeout_and_journals_deadline() {
    for (fallback, expected) in [
        (Fallback::Allow, Decision::Allow),
        (Fallback::Deny, Decision::Deny),
    ] {
        let cfg = EnforcerConfig {
            deadline: Duration::from_millis(50),
            on_timeout: fallback,
            ..EnforcerConfig::default()
        };
        let h = start(cfg, &[], false);
        let (req, rx) = request(file("/srv/slow", 6, 1), "hello", true);
        h.enforcer.do_send(req);
        assert_eq!(answer(&rx).await, Some(expected));
        quiesce(&h).await;
        let d = h.journal.decisions();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].reason, DecisionReason::Deadline);
        assert!(
            d[0].latency_us >= 50_000,
            "not before the deadline: {}",
            d[0].latency_us
        );
        // The late verdict is still recorded, and answers nobody twice.
        h.gate.send(true).unwrap();
        quiesce(&h).await;
        assert!(h.journal.kinds().contains(&"verdict_issued"));
        assert_eq!(h.journal.decisions().len(), 1);
    }
}

#[actix_rt::test]
async fn unchanged_files_reuse_their_verdict_and_changed_ones_are_rescanned() {
    let h = start(EnforcerConfig::default(), &[], true);
    for (f, reason) in [
        (file("/srv/a", 7, 1), DecisionReason::Verdict),
        (file("/srv/a", 7, 1), DecisionReason::CacheHit),
        (file("/srv/a", 7, 2), DecisionReason::Verdict),
    ] {
        let (req, rx) = request(f, "hello", true);
        h.enforcer.do_send(req);
        assert_eq!(answer(&rx).await, Some(Decision::Allow));
        quiesce(&h).await;
        assert_eq!(h.journal.decisions().last().unwrap().reason, reason);
    }
    assert_eq!(*h.scans.lock().unwrap(), 2);
}

#[actix_rt::test]
async fn a_layer_file_scanned_in_one_container_is_not_scanned_in_the_next() {
    let h = start(EnforcerConfig::default(), &[], true);
    // One layer file (inode 9 on the layers' filesystem 50) seen through
    // the overlays of three containers (devices 41, 53, 60); the third's
    // layers are on several filesystems (no layer device), so its overlay
    // numbers cannot be trusted across containers.
    let through = |overlay: u64| FileInfo {
        device: overlay,
        ..file("/bin/busybox", 9, 1)
    };
    for (f, layer, reason) in [
        (through(41), Some(50), DecisionReason::Verdict),
        (through(53), Some(50), DecisionReason::CacheHit),
        (through(60), None, DecisionReason::Verdict),
        // A copy up in the second container: same number, new version.
        (
            FileInfo {
                mtime_ns: 5,
                ..through(53)
            },
            Some(50),
            DecisionReason::Verdict,
        ),
    ] {
        let (mut req, rx) = request(f, "hello", true);
        req.layer_device = layer;
        h.enforcer.do_send(req);
        assert_eq!(answer(&rx).await, Some(Decision::Allow));
        quiesce(&h).await;
        assert_eq!(h.journal.decisions().last().unwrap().reason, reason);
    }
    assert_eq!(*h.scans.lock().unwrap(), 3);
    assert!(
        h.journal.accesses().iter().all(|a| a.file.device != 50),
        "the journal keeps each file's own device"
    );
}

#[actix_rt::test]
async fn concurrent_opens_of_one_file_share_one_scan() {
    let h = start(EnforcerConfig::default(), &[], false);
    let (a, rx_a) = request(file("/srv/a", 8, 1), "EICAR", true);
    let (b, rx_b) = request(file("/srv/a", 8, 1), "EICAR", true);
    h.enforcer.do_send(a);
    h.enforcer.do_send(b);
    quiesce(&h).await;
    h.gate.send(true).unwrap();
    assert_eq!(answer(&rx_a).await, Some(Decision::Deny));
    assert_eq!(answer(&rx_b).await, Some(Decision::Deny));
    let stats = quiesce(&h).await;
    assert_eq!((stats.scans, stats.coalesced), (1, 1));
    assert_eq!(*h.scans.lock().unwrap(), 1);
}

#[actix_rt::test]
async fn a_full_pending_set_answers_on_overload_and_counts_it() {
    let cfg = EnforcerConfig {
        max_pending: 1,
        on_overload: Fallback::Deny,
        ..EnforcerConfig::default()
    };
    let h = start(cfg, &[], false);
    let (a, _rx_a) = request(file("/srv/a", 9, 1), "hello", true);
    let (b, rx_b) = request(file("/srv/b", 10, 1), "hello", true);
    h.enforcer.do_send(a);
    h.enforcer.do_send(b);
    assert_eq!(answer(&rx_b).await, Some(Decision::Deny));
    let stats = quiesce(&h).await;
    assert_eq!(stats.overflows, 1);
    assert_eq!(h.journal.decisions()[0].reason, DecisionReason::Overload);
    assert!(h.journal.kinds().contains(&"queue_overflowed"));
}

#[actix_rt::test]
async fn shutdown_answers_every_pending_decision() {
    let h = start(EnforcerConfig::default(), &[], false);
    let mut rxs = Vec::new();
    for i in 0..5 {
        let (req, rx) = request(file(&format!("/srv/{i}"), 20 + i, 1), "hello", true);
        h.enforcer.do_send(req);
        rxs.push(rx);
    }
    quiesce(&h).await;
    assert_eq!(h.enforcer.send(Shutdown).await.unwrap(), 5);
    for rx in &rxs {
        assert_eq!(answer(rx).await, Some(Decision::Allow));
    }
    assert!(h
        .journal
        .decisions()
        .iter()
        .all(|d| d.reason == DecisionReason::Shutdown));
    assert_eq!(h.enforcer.send(GetStats).await.unwrap().pending, 0);
}

#[actix_rt::test]
async fn scan_errors_answer_on_scan_error() {
    let cfg = EnforcerConfig {
        on_scan_error: Fallback::Deny,
        ..EnforcerConfig::default()
    };
    let h = start(cfg, &[], true);
    let (req, rx) = request(file("/srv/err", 30, 1), "ERROR", true);
    h.enforcer.do_send(req);
    assert_eq!(answer(&rx).await, Some(Decision::Deny));
}

#[actix_rt::test]
async fn overflows_seen_elsewhere_are_journaled_by_source() {
    let h = start(EnforcerConfig::default(), &[], true);
    h.enforcer.do_send(OverflowNoticed {
        source: OverflowSource::Kernel,
        count: 1,
    });
    h.enforcer.do_send(OverflowNoticed {
        source: OverflowSource::Kernel,
        count: 2,
    });
    h.enforcer.do_send(OverflowNoticed {
        source: OverflowSource::Mailbox,
        count: 5,
    });
    let stats = quiesce(&h).await;
    assert_eq!(stats.overflows, 8);
    let mut seen: Vec<(OverflowSource, u64)> = h
        .journal
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| match &r.body {
            EventBody::QueueOverflowed(q) => Some((q.source, q.count)),
            _ => None,
        })
        .collect();
    seen.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        seen,
        vec![(OverflowSource::Kernel, 3), (OverflowSource::Mailbox, 5)]
    );
}

#[actix_rt::test]
async fn a_close_after_write_scan_caches_its_verdict_for_the_next_open() {
    let h = start(EnforcerConfig::default(), &[], true);
    let (mut req, _) = request(file("/srv/w", 40, 9), "EICAR", false);
    req.kind = AccessKind::CloseWrite;
    let id = req.event_id;
    h.enforcer.do_send(req);
    quiesce(&h).await;
    assert_eq!(
        *h.acts.0.lock().unwrap(),
        vec![(id, false)],
        "actions run; nobody was denied"
    );
    let (req, rx) = request(file("/srv/w", 40, 9), "EICAR", true);
    h.enforcer.do_send(req);
    assert_eq!(answer(&rx).await, Some(Decision::Deny));
    quiesce(&h).await;
    assert_eq!(
        h.journal.decisions().last().unwrap().reason,
        DecisionReason::CacheHit
    );
    assert_eq!(*h.scans.lock().unwrap(), 1);
}

// ------------------------------------------------------------ rule reloads

fn ruleset(rules: &[(&str, &str)], lists: &[(&str, String)]) -> Arc<crate::scanner::Ruleset> {
    let owned = |v: &[(&str, String)]| -> Vec<(std::path::PathBuf, String)> {
        v.iter().map(|(n, t)| ((*n).into(), t.clone())).collect()
    };
    let rules: Vec<(&str, String)> = rules.iter().map(|(n, t)| (*n, (*t).to_owned())).collect();
    Arc::new(
        crate::scanner::Ruleset::compile_with_lists(
            std::path::Path::new("/test"),
            &owned(&rules),
            &owned(lists),
        )
        .unwrap(),
    )
}

const MARKER_RULE: &str = r#"rule marker { strings: $m = "reload-marker" condition: $m }"#;
const OTHER_RULE: &str = r#"rule other { strings: $m = "something else" condition: $m }"#;

/// An Enforcer on real scanners following `live`; `scanner` answers the
/// first scans (the real ones too, unless given).
fn start_live(
    first: Arc<crate::scanner::Ruleset>,
    scanner: Option<Recipient<ScanFile>>,
) -> (Harness, crate::scanner::LiveRules) {
    let live = crate::scanner::LiveRules::new(first.clone());
    let local =
        crate::scanner::start_scanners(1, live.clone(), crate::scanner::ScanLimits::default());
    let (gate, _) = watch::channel(true);
    let journal = Journal::default();
    let acts = Acts::default();
    let enforcer = Enforcer::new(
        EnforcerConfig::default(),
        Arc::new(Policies::build(&[]).unwrap()),
        first.version().clone(),
        scanner.unwrap_or_else(|| local.clone().recipient()),
        journal.clone().start().recipient(),
    )
    .with_live_rules(live.clone(), local.recipient())
    .with_actions(acts.clone().start().recipient())
    .start();
    let h = Harness {
        enforcer,
        journal,
        acts,
        gate,
        scans: Arc::new(Mutex::new(0)),
    };
    (h, live)
}

impl Journal {
    fn verdicts(&self) -> Vec<VerdictIssued> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match &r.body {
                EventBody::VerdictIssued(v) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }
}

#[actix_rt::test]
async fn a_swap_empties_the_cache_and_the_next_open_is_judged_by_the_new_rules() {
    let a = ruleset(&[("a.yar", OTHER_RULE)], &[]);
    let b = ruleset(&[("a.yar", OTHER_RULE), ("b.yar", MARKER_RULE)], &[]);
    let (h, live) = start_live(a.clone(), None);
    let f = file("/srv/marked", 40, 1);

    for expected_reason in [DecisionReason::Verdict, DecisionReason::CacheHit] {
        let (req, rx) = request(f.clone(), "reload-marker", true);
        h.enforcer.do_send(req);
        assert_eq!(answer(&rx).await, Some(Decision::Allow));
        quiesce(&h).await;
        assert_eq!(
            h.journal.decisions().last().unwrap().reason,
            expected_reason
        );
    }

    let swapped = h
        .enforcer
        .send(SwapRules(b.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(swapped.cache_entries, 1);
    assert!(!swapped.kernel_marks_flushed, "no fanotify group here");
    assert_eq!(
        live.current().version(),
        b.version(),
        "published to the scanners"
    );

    let (req, rx) = request(f, "reload-marker", true);
    h.enforcer.do_send(req);
    assert_eq!(answer(&rx).await, Some(Decision::Deny));
    quiesce(&h).await;
    assert_eq!(
        h.journal.decisions().last().unwrap().reason,
        DecisionReason::Verdict
    );
    let v = h.journal.verdicts().pop().unwrap();
    assert_eq!(&v.ruleset, b.version());
    assert!(matches!(&v.verdict, Verdict::Infected { matches } if matches[0].rule == "marker"));
}

#[actix_rt::test]
async fn a_verdict_of_another_ruleset_is_not_used_the_file_is_scanned_again() {
    // The first scanner answers with ruleset "test" (a scanner service on
    // other rules, or a scan that ran across a swap): infected. The rules
    // in force find the file clean, and they decide.
    let rules = ruleset(&[("a.yar", OTHER_RULE)], &[]);
    let calls = Arc::new(Mutex::new(0));
    let (_gate, rx) = watch::channel(true);
    let stale = FakeScanner {
        gate: rx,
        calls: calls.clone(),
    }
    .start();
    let (h, _live) = start_live(rules.clone(), Some(stale.recipient()));
    let (req, rx) = request(file("/srv/x", 41, 1), "EICAR but not the test file", true);
    h.enforcer.do_send(req);
    assert_eq!(answer(&rx).await, Some(Decision::Allow));
    quiesce(&h).await;
    assert_eq!(
        *calls.lock().unwrap(),
        1,
        "the stale scanner was asked once"
    );
    let v = h.journal.verdicts();
    assert_eq!(
        v.len(),
        1,
        "only the verdict of the rules in force is journaled"
    );
    assert_eq!(&v[0].ruleset, rules.version());
    assert_eq!(v[0].verdict, Verdict::Clean);
    assert!(h.acts.0.lock().unwrap().is_empty());
}

#[actix_rt::test]
async fn hash_lists_give_their_own_decision_reasons() {
    use sha2::Digest as _;
    let digest = |s: &str| hex::encode(sha2::Sha256::digest(s.as_bytes()));
    let rules = ruleset(
        &[("m.yar", MARKER_RULE)],
        &[
            (
                "v.trusted.sha256",
                format!("{}  ok\n", digest("reload-marker")),
            ),
            (
                "f.known-bad.sha256",
                format!("{}\n", digest("innocent-looking")),
            ),
        ],
    );
    let (h, _live) = start_live(rules, None);
    // Trusted although a rule matches; known bad although none does.
    let cases = [
        (
            "reload-marker",
            50,
            Decision::Allow,
            DecisionReason::TrustedHash,
        ),
        (
            "innocent-looking",
            51,
            Decision::Deny,
            DecisionReason::KnownBadHash,
        ),
    ];
    for (content, inode, decision, reason) in cases {
        let (req, rx) = request(file("/srv/h", inode, 1), content, true);
        h.enforcer.do_send(req);
        assert_eq!(answer(&rx).await, Some(decision), "{content}");
        quiesce(&h).await;
        let d = h.journal.decisions().pop().unwrap();
        assert_eq!((d.decision, d.reason), (decision, reason), "{content}");
    }
    let bad = h.journal.verdicts().pop().unwrap();
    let Verdict::Infected { matches } = &bad.verdict else {
        panic!("{bad:?}");
    };
    assert_eq!(matches[0].rule, "known_bad_hash");
    assert_eq!(matches[0].namespace, "f.known-bad.sha256");
    assert_eq!(
        h.acts.0.lock().unwrap().len(),
        1,
        "actions apply to known-bad files"
    );
}
