//! A deterministic set of sample envelopes: fixed ids, timestamps and
//! content, at least one per [`EventBody`] variant, several non-UTF-8
//! paths. The golden fixtures under `tests/fixtures/` are these samples
//! encoded; see `golden.rs`.
//!
//! Never change an existing sample: its fixture files pin the encoding.
//! Add new samples (and bless their fixtures) instead.
#![allow(dead_code)] // each test binary uses a different subset

use portcullis_schemas::*;
use uuid::Uuid;

/// The node every sample was recorded on.
pub const NODE: &str = "node-a.example.internal";

/// 2025-11-28T20:33:04.123456789Z
pub const T0: i64 = 1_764_361_984_123_456_789;

/// The sha256 of the EICAR test file.
pub const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

pub const CONTAINER_ID: &str = "3f4e9a1c2b7d8e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

/// A non-UTF-8 upload path (0xff in the file name).
pub const UPLOAD_PATH: &[u8] = b"/srv/upload/inv\xffoice.pdf";

/// A path with every character CEF escapes, a newline, a carriage return
/// and bytes that are not UTF-8 (0xfe, and 0xc3 without its continuation).
pub const ESCAPES_PATH: &[u8] = b"/srv/up|load/a=b\\c\nd\re\xfe\xc3|f.txt";

/// A fixed UUIDv7-shaped id: 48-bit ms timestamp, version 7, variant 10.
pub fn id(n: u16) -> EventId {
    let ms: u128 = 0x019a_cc2b_587b; // 2025-11-28T20:33:04.123Z
    let rand_a: u128 = 0x0c3d;
    let rand_b: u128 = 0x0a1b_2c3d_4e5f_6000 | u128::from(n);
    let v = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b;
    EventId(Uuid::from_u128(v))
}

fn env(n: u16, trace: TraceContext, body: EventBody) -> Envelope {
    let event_id = id(n);
    Envelope {
        schema: SCHEMA_VERSION,
        event_id,
        node_id: NodeId(NODE.to_owned()),
        seq: u64::from(n),
        // 1.5 ms apart.
        timestamp: Timestamp(T0 + i64::from(n) * 1_500_000),
        trace,
        body,
    }
}

fn root(n: u16) -> TraceContext {
    TraceContext::root_for(&id(n))
}

fn child_of(parent: u16, n: u16) -> TraceContext {
    TraceContext::root_for(&id(parent)).child(&id(n))
}

fn path(p: &[u8]) -> FilePath {
    FilePath::from_bytes(p)
}

fn sha(hex_digest: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).expect("a 64-digit hex sha256");
    out
}

fn eicar_match() -> RuleMatch {
    RuleMatch {
        rule: "EICAR_Test_File".to_owned(),
        namespace: "default".to_owned(),
        tags: vec!["test".to_owned(), "eicar".to_owned()],
        metadata: vec![
            (
                "description".to_owned(),
                MetaValue::Str("EICAR anti-malware test file".to_owned()),
            ),
            ("author".to_owned(), MetaValue::Str("portcullis".to_owned())),
            ("severity".to_owned(), MetaValue::Int(-3)),
            ("score".to_owned(), MetaValue::Float(7.25)),
            ("is_test".to_owned(), MetaValue::Bool(true)),
            ("magic".to_owned(), MetaValue::Bytes(b"X5O!P%@AP".to_vec())),
        ],
    }
}

/// The access every scan/verdict/decision/action sample refers to.
pub const ACCESS: u16 = 4;

/// All samples, by fixture name. Names are unique and stable.
pub fn all() -> Vec<(&'static str, Envelope)> {
    let access = id(ACCESS);
    vec![
        (
            "agent_started",
            env(
                1,
                root(1),
                EventBody::AgentStarted(AgentStarted {
                    version: "0.1.0".to_owned(),
                    pid: 4242,
                    interceptor_mode: Mode::Enforce,
                    protected: vec![path(b"/srv/www"), path(b"/data/caf\xe9")],
                }),
            ),
        ),
        (
            "agent_stopped",
            env(
                2,
                root(2),
                EventBody::AgentStopped(AgentStopped {
                    answered_pending: 3,
                    signal: Some("SIGTERM".to_owned()),
                }),
            ),
        ),
        (
            "rules_loaded",
            env(
                3,
                root(3),
                EventBody::RulesLoaded(RulesLoaded {
                    ruleset: RulesetVersion("a1b2c3d4e5f6".to_owned()),
                    rules: 128,
                    files: vec![
                        "/etc/portcullis/rules/base.yar".to_owned(),
                        "/etc/portcullis/rules/webshells.yar".to_owned(),
                    ],
                }),
            ),
        ),
        (
            "rules_rejected",
            env(
                26,
                root(26),
                EventBody::RulesRejected(RulesRejected {
                    kept: RulesetVersion("a1b2c3d4e5f6".to_owned()),
                    error: "/etc/portcullis/rules/webshells.yar:12:5: error[E009]: unknown identifier `filesiz`".to_owned(),
                    file: Some("/etc/portcullis/rules/webshells.yar".to_owned()),
                    line: Some(12),
                    column: Some(5),
                }),
            ),
        ),
        (
            "file_accessed",
            env(
                ACCESS,
                root(ACCESS),
                EventBody::FileAccessed(FileAccessed {
                    kind: AccessKind::Open,
                    file: FileInfo {
                        path: path(UPLOAD_PATH),
                        device: 2049,
                        inode: 1_310_722,
                        size: 68,
                        mtime_ns: T0 - 5_000_000_000,
                        ctime_ns: T0 - 4_000_000_000,
                    },
                    process: ProcessInfo {
                        pid: 31337,
                        ppid: 1000,
                        uid: 1001,
                        gid: 1002,
                        executable: Some(path(b"/usr/bin/python3.12")),
                        command: Some("python3".to_owned()),
                    },
                    container: Some(ContainerRef::new(ContainerRuntime::Containerd, CONTAINER_ID)),
                    interceptor_mode: Mode::Enforce,
                    policy: Some(PolicyRef {
                        name: "uploads".to_owned(),
                        mode: Mode::Enforce,
                    }),
                    blocking: true,
                }),
            ),
        ),
        (
            "file_accessed_minimal",
            env(
                5,
                root(5),
                EventBody::FileAccessed(FileAccessed {
                    kind: AccessKind::CloseWrite,
                    file: FileInfo {
                        path: path("/home/zoë/notes.txt".as_bytes()),
                        device: 0,
                        inode: 7,
                        size: 0,
                        mtime_ns: -1,
                        ctime_ns: 0,
                    },
                    process: ProcessInfo {
                        pid: 1,
                        ppid: 0,
                        uid: 0,
                        gid: 0,
                        executable: None,
                        command: None,
                    },
                    container: None,
                    interceptor_mode: Mode::Audit,
                    policy: None,
                    blocking: false,
                }),
            ),
        ),
        (
            "scan_requested",
            env(
                6,
                child_of(ACCESS, 6),
                EventBody::ScanRequested(ScanRequested {
                    access,
                    size: 68,
                    ruleset: RulesetVersion("a1b2c3d4e5f6".to_owned()),
                }),
            ),
        ),
        (
            "verdict_clean",
            env(
                7,
                child_of(ACCESS, 7),
                EventBody::VerdictIssued(VerdictIssued {
                    access,
                    path: path(b"/srv/www/index.html"),
                    verdict: Verdict::Clean,
                    sha256: Some(sha(
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    )),
                    size: 0,
                    ruleset: RulesetVersion("a1b2c3d4e5f6".to_owned()),
                    scan_duration_us: 12,
                }),
            ),
        ),
        (
            "verdict_infected",
            env(
                8,
                child_of(ACCESS, 8),
                EventBody::VerdictIssued(VerdictIssued {
                    access,
                    path: path(UPLOAD_PATH),
                    verdict: Verdict::Infected {
                        matches: vec![
                            eicar_match(),
                            RuleMatch {
                                rule: "Suspicious_PDF".to_owned(),
                                namespace: "documents".to_owned(),
                                tags: vec![],
                                metadata: vec![],
                            },
                        ],
                    },
                    sha256: Some(sha(EICAR_SHA256)),
                    size: 68,
                    ruleset: RulesetVersion("a1b2c3d4e5f6".to_owned()),
                    scan_duration_us: 431,
                }),
            ),
        ),
        (
            "verdict_skipped_too_large",
            env(
                9,
                child_of(ACCESS, 9),
                EventBody::VerdictIssued(VerdictIssued {
                    access,
                    path: path(b"/srv/backup/db.tar"),
                    verdict: Verdict::Skipped {
                        reason: SkipReason::TooLarge {
                            size: 8_589_934_592,
                            limit: 104_857_600,
                        },
                    },
                    sha256: None,
                    size: 8_589_934_592,
                    ruleset: RulesetVersion("a1b2c3d4e5f6".to_owned()),
                    scan_duration_us: 0,
                }),
            ),
        ),
        (
            "verdict_skipped_timeout",
            env(
                10,
                child_of(ACCESS, 10),
                EventBody::VerdictIssued(VerdictIssued {
                    access,
                    path: path(b"/srv/big.iso"),
                    verdict: Verdict::Skipped {
                        reason: SkipReason::ScanTimeout { after_ms: 5000 },
                    },
                    sha256: None,
                    size: 734_003_200,
                    ruleset: RulesetVersion("a1b2c3d4e5f6".to_owned()),
                    scan_duration_us: 5_000_113,
                }),
            ),
        ),
        (
            "verdict_skipped_excluded",
            env(
                11,
                child_of(ACCESS, 11),
                EventBody::VerdictIssued(VerdictIssued {
                    access,
                    path: path(b"/var/lib/docker/overlay2/\xc3x"),
                    verdict: Verdict::Skipped {
                        reason: SkipReason::Excluded {
                            rule: "/var/lib/docker/**".to_owned(),
                        },
                    },
                    sha256: None,
                    size: 10,
                    ruleset: RulesetVersion("a1b2c3d4e5f6".to_owned()),
                    scan_duration_us: 0,
                }),
            ),
        ),
        (
            "verdict_infected_member",
            env(
                27,
                child_of(ACCESS, 27),
                EventBody::VerdictIssued(VerdictIssued {
                    access,
                    path: path(b"/srv/uploads/outer.tar.gz"),
                    verdict: Verdict::InfectedMember {
                        member: "dir/inner.zip!evil.sh".to_owned(),
                        matches: vec![eicar_match()],
                    },
                    sha256: Some(sha(EICAR_SHA256)),
                    size: 4_096,
                    ruleset: RulesetVersion("a1b2c3d4e5f6".to_owned()),
                    scan_duration_us: 1_250,
                }),
            ),
        ),
        (
            "verdict_skipped_archive_limit",
            env(
                28,
                child_of(ACCESS, 28),
                EventBody::VerdictIssued(VerdictIssued {
                    access,
                    path: path(b"/srv/uploads/42.zip"),
                    verdict: Verdict::Skipped {
                        reason: SkipReason::ArchiveLimit {
                            limit: "max_ratio".to_owned(),
                            value: 200,
                            member: "0.zip!0-lib0.zip!0-0.dll".to_owned(),
                        },
                    },
                    sha256: Some(sha(EICAR_SHA256)),
                    size: 42_374,
                    ruleset: RulesetVersion("a1b2c3d4e5f6".to_owned()),
                    scan_duration_us: 26_000,
                }),
            ),
        ),
        (
            "verdict_error",
            env(
                12,
                child_of(ACCESS, 12),
                EventBody::VerdictIssued(VerdictIssued {
                    access,
                    path: path(b"/srv/www/broken.bin"),
                    verdict: Verdict::Error {
                        message: "read failed: Input/output error (os error 5)".to_owned(),
                    },
                    sha256: None,
                    size: 4096,
                    ruleset: RulesetVersion("a1b2c3d4e5f6".to_owned()),
                    scan_duration_us: 77,
                }),
            ),
        ),
        (
            "decision_allow",
            env(
                13,
                child_of(ACCESS, 13),
                EventBody::DecisionMade(DecisionMade {
                    access,
                    decision: Decision::Allow,
                    reason: DecisionReason::CacheHit,
                    latency_us: 35,
                }),
            ),
        ),
        (
            "decision_deny",
            env(
                14,
                child_of(ACCESS, 14),
                EventBody::DecisionMade(DecisionMade {
                    access,
                    decision: Decision::Deny,
                    reason: DecisionReason::Verdict,
                    latency_us: 512,
                }),
            ),
        ),
        (
            "action_taken_remove",
            env(
                15,
                child_of(ACCESS, 15),
                EventBody::ActionTaken(ActionTaken {
                    access,
                    path: path(UPLOAD_PATH),
                    pid: 31337,
                    action: ActionKind::Remove,
                    step: ActionStep::First,
                    outcome: ActionOutcome::Succeeded,
                    quarantine: Some(QuarantineEntry {
                        id: "q-019acc2b587b".to_owned(),
                        stored_at: path(b"/var/lib/portcullis/quarantine/019acc2b587b"),
                    }),
                }),
            ),
        ),
        (
            "quarantine_restored",
            env(
                29,
                child_of(ACCESS, 29),
                EventBody::QuarantineRestored(QuarantineRestored {
                    entry: quarantined(access),
                    restored_to: path(b"/srv/upload/restored/invoice.pdf"),
                    replaced: false,
                    operator: Some(Operator {
                        uid: 0,
                        login_uid: Some(1000),
                        pid: 4242,
                    }),
                }),
            ),
        ),
        (
            "quarantine_deleted",
            env(
                30,
                child_of(ACCESS, 30),
                EventBody::QuarantineDeleted(QuarantineDeleted {
                    entry: quarantined(access),
                    reason: QuarantineDeletion::MaxAge,
                    operator: None,
                }),
            ),
        ),
        (
            "action_taken_terminate_failed",
            env(
                16,
                child_of(ACCESS, 16),
                EventBody::ActionTaken(ActionTaken {
                    access,
                    path: path(UPLOAD_PATH),
                    pid: 31337,
                    action: ActionKind::Terminate,
                    step: ActionStep::Second,
                    outcome: ActionOutcome::Failed {
                        error: "kill: No such process (os error 3)".to_owned(),
                    },
                    quarantine: None,
                }),
            ),
        ),
        (
            "action_taken_disinfect_not_possible",
            env(
                17,
                child_of(ACCESS, 17),
                EventBody::ActionTaken(ActionTaken {
                    access,
                    path: path(b"/srv/www/index.html"),
                    pid: 812,
                    action: ActionKind::Disinfect,
                    step: ActionStep::First,
                    outcome: ActionOutcome::NotPossible {
                        why: "YARA rules cannot disinfect".to_owned(),
                    },
                    quarantine: None,
                }),
            ),
        ),
        (
            "action_taken_block",
            env(
                18,
                child_of(ACCESS, 18),
                EventBody::ActionTaken(ActionTaken {
                    access,
                    path: path(b"/srv/www/index.html"),
                    pid: 812,
                    action: ActionKind::Block,
                    step: ActionStep::First,
                    outcome: ActionOutcome::Succeeded,
                    quarantine: None,
                }),
            ),
        ),
        (
            "queue_overflowed",
            env(
                19,
                root(19),
                EventBody::QueueOverflowed(QueueOverflowed {
                    source: OverflowSource::Kernel,
                    count: 17,
                }),
            ),
        ),
        (
            // Every character the SIEM encodings must escape: `|`, `=`, `\`,
            // a newline and a carriage return, and bytes that are not UTF-8.
            "file_accessed_escapes",
            env(
                20,
                root(20),
                EventBody::FileAccessed(FileAccessed {
                    kind: AccessKind::Exec,
                    file: FileInfo {
                        path: path(ESCAPES_PATH),
                        device: 2049,
                        inode: 77,
                        size: 4096,
                        mtime_ns: T0,
                        ctime_ns: T0,
                    },
                    process: ProcessInfo {
                        pid: 4711,
                        ppid: 4710,
                        uid: 33,
                        gid: 33,
                        executable: Some(path(b"/opt/a|b=c\\d/run")),
                        command: Some("run|x=y\\z".to_owned()),
                    },
                    container: Some(ContainerRef::new(ContainerRuntime::CriO, CONTAINER_ID)),
                    interceptor_mode: Mode::Enforce,
                    policy: Some(PolicyRef {
                        name: "web|prod=1\\\nnext".to_owned(),
                        mode: Mode::Audit,
                    }),
                    blocking: true,
                }),
            ),
        ),
        // Schema 2: a container with everything the runtime says of it.
        (
            "file_accessed_in_pod",
            env(
                21,
                root(21),
                EventBody::FileAccessed(FileAccessed {
                    kind: AccessKind::Open,
                    file: FileInfo {
                        path: path(b"/data/eicar.com"),
                        device: 41,
                        inode: 1187,
                        size: 68,
                        mtime_ns: T0 - 9_000_000_000,
                        ctime_ns: T0 - 9_000_000_000,
                    },
                    process: ProcessInfo {
                        pid: 9450,
                        ppid: 9431,
                        uid: 0,
                        gid: 0,
                        executable: Some(path(b"/bin/busybox")),
                        command: Some("cat".to_owned()),
                    },
                    container: Some(in_pod()),
                    interceptor_mode: Mode::Enforce,
                    policy: Some(PolicyRef {
                        name: "shop-images".to_owned(),
                        mode: Mode::Enforce,
                    }),
                    blocking: true,
                }),
            ),
        ),
        (
            "container_protected",
            env(
                22,
                root(22),
                EventBody::ContainerObserved(ContainerObserved {
                    container: in_pod(),
                    change: ContainerChange::Protected {
                        pid: 9450,
                        via: ContainerDiscovery::Hook,
                        root_device: 41,
                        volumes: vec![path(b"/proc/9450/root/var/www")],
                    },
                    labels: vec![
                        ("app".to_owned(), "shop".to_owned()),
                        ("tier".to_owned(), "web=front|end".to_owned()),
                    ],
                }),
            ),
        ),
        (
            "container_described",
            env(
                23,
                root(23),
                EventBody::ContainerObserved(ContainerObserved {
                    container: in_pod(),
                    change: ContainerChange::Described,
                    labels: vec![],
                }),
            ),
        ),
        (
            "container_gone",
            env(
                24,
                root(24),
                EventBody::ContainerObserved(ContainerObserved {
                    container: ContainerRef::new(ContainerRuntime::Podman, CONTAINER_ID),
                    change: ContainerChange::Gone,
                    labels: vec![],
                }),
            ),
        ),
        (
            "container_unprotected",
            env(
                25,
                root(25),
                EventBody::ContainerObserved(ContainerObserved {
                    container: ContainerRef::new(ContainerRuntime::Podman, CONTAINER_ID),
                    change: ContainerChange::Unprotected {
                        pid: Some(9450),
                        reason: "agent control socket /run/portcullis/agent.sock: connect: No such file or directory".to_owned(),
                        hook: Some(HookOutcome::Allowed),
                        at: Timestamp(T0 - 60_000_000_000),
                    },
                    labels: vec![],
                }),
            ),
        ),
    ]
}

/// The object of `action_taken_remove`, as the quarantine samples name it.
fn quarantined(access: EventId) -> QuarantinedObject {
    QuarantinedObject {
        id: access.to_string(),
        detection: access,
        original_path: path(UPLOAD_PATH),
        sha256: Some(hex_sha(EICAR_SHA256)),
        size: 68,
        container: Some(in_pod()),
    }
}

fn hex_sha(h: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    out
}

/// The containerd container of pod `shop/web-7d9f` in the schema 2 samples.
pub fn in_pod() -> ContainerRef {
    ContainerRef {
        name: Some("web".to_owned()),
        image: Some("localhost/portcullis-test:latest".to_owned()),
        image_digest: Some(
            "sha256:8c18a4f3d2b1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5".to_owned(),
        ),
        pod: Some(PodRef {
            name: "web-7d9f".to_owned(),
            namespace: "shop".to_owned(),
            uid: Some("8f5a2b1c-7d3e-4f6a-9b8c-1d2e3f4a5b6c".to_owned()),
        }),
        ..ContainerRef::new(ContainerRuntime::Containerd, CONTAINER_ID)
    }
}

/// The sample with this fixture name.
pub fn by_name(name: &str) -> Envelope {
    all()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, e)| e)
        .unwrap_or_else(|| panic!("no sample named `{name}`"))
}
