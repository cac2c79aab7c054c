//! proptest strategies for every schema type.
//!
//! Every enum strategy is a `prop_oneof!` over *all* variants, and every
//! `Option` field is generated both ways, so a few hundred cases cover the
//! whole model; `strategies_cover_every_variant` (in `roundtrip.rs`) checks
//! that this stays true when the model grows.
#![allow(dead_code)] // each test binary uses a different subset

use portcullis_schemas::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use uuid::Uuid;

/// Short arbitrary Unicode text (including control characters, quotes,
/// backslashes, and characters outside the BMP).
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_./:-]{0,24}",
        proptest::string::string_regex("(?s).{0,24}").expect("valid regex"),
        Just(String::new()),
    ]
}

pub fn event_id() -> impl Strategy<Value = EventId> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(|b| EventId(Uuid::from_bytes(b))),
        Just(EventId(Uuid::nil())),
        Just(EventId(Uuid::max())),
    ]
}

pub fn node_id() -> impl Strategy<Value = NodeId> {
    text().prop_map(NodeId)
}

pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        any::<i64>().prop_map(Timestamp),
        // Realistic: 2000-01-01 .. 2100-01-01.
        (946_684_800_000_000_000i64..4_102_444_800_000_000_000i64).prop_map(Timestamp),
        Just(Timestamp(0)),
        Just(Timestamp(i64::MIN)),
        Just(Timestamp(i64::MAX)),
    ]
}

pub fn trace_context() -> impl Strategy<Value = TraceContext> {
    (any::<[u8; 16]>(), any::<[u8; 8]>(), any::<u8>()).prop_map(|(trace_id, span_id, flags)| {
        TraceContext {
            trace_id,
            span_id,
            flags,
        }
    })
}

/// Paths: arbitrary bytes, plausible UTF-8 paths, and paths that are
/// guaranteed not to be UTF-8.
pub fn file_path() -> impl Strategy<Value = FilePath> {
    prop_oneof![
        vec(any::<u8>(), 0..48).prop_map(FilePath),
        "(/[a-zA-Z0-9 ._\\\\-]{1,10}){0,5}".prop_map(|s| FilePath(s.into_bytes())),
        non_utf8_path(),
    ]
}

/// A path that is never valid UTF-8.
pub fn non_utf8_path() -> impl Strategy<Value = FilePath> {
    (
        "(/[a-z\\\\]{1,6}){0,3}/",
        prop_oneof![Just(0xffu8), Just(0xfe), 0x80u8..0xc0, Just(0xc3)],
        vec(any::<u8>(), 0..12),
    )
        .prop_map(|(prefix, bad, tail)| {
            let mut b = prefix.into_bytes();
            b.push(bad);
            // A lone continuation byte, 0xfe/0xff, or 0xc3 followed by a
            // non-continuation byte is never valid UTF-8.
            if bad == 0xc3 {
                b.push(b'x');
            }
            b.extend(tail);
            FilePath(b)
        })
}

pub fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Enforce), Just(Mode::Audit)]
}

pub fn ruleset_version() -> impl Strategy<Value = RulesetVersion> {
    prop_oneof!["[0-9a-f]{12}", text()].prop_map(RulesetVersion)
}

// ------------------------------------------------------------- lifecycle

pub fn agent_started() -> impl Strategy<Value = AgentStarted> {
    (text(), any::<u32>(), mode(), vec(file_path(), 0..4)).prop_map(
        |(version, pid, interceptor_mode, protected)| AgentStarted {
            version,
            pid,
            interceptor_mode,
            protected,
        },
    )
}

pub fn agent_stopped() -> impl Strategy<Value = AgentStopped> {
    (any::<u64>(), option::of(text())).prop_map(|(answered_pending, signal)| AgentStopped {
        answered_pending,
        signal,
    })
}

pub fn rules_loaded() -> impl Strategy<Value = RulesLoaded> {
    (ruleset_version(), any::<u32>(), vec(text(), 0..4)).prop_map(|(ruleset, rules, files)| {
        RulesLoaded {
            ruleset,
            rules,
            files,
        }
    })
}

pub fn rules_rejected() -> impl Strategy<Value = RulesRejected> {
    (
        ruleset_version(),
        text(),
        option::of(text()),
        option::of(any::<u32>()),
        option::of(any::<u32>()),
    )
        .prop_map(|(kept, error, file, line, column)| RulesRejected {
            kept,
            error,
            file,
            line,
            column,
        })
}

// ------------------------------------------------------------- accesses

pub fn access_kind() -> impl Strategy<Value = AccessKind> {
    prop_oneof![
        Just(AccessKind::Open),
        Just(AccessKind::Exec),
        Just(AccessKind::CloseWrite)
    ]
}

pub fn container_runtime() -> impl Strategy<Value = ContainerRuntime> {
    prop_oneof![
        Just(ContainerRuntime::Docker),
        Just(ContainerRuntime::Containerd),
        Just(ContainerRuntime::CriO),
        Just(ContainerRuntime::Podman),
    ]
}

pub fn pod_ref() -> impl Strategy<Value = PodRef> {
    (text(), text(), option::of(text())).prop_map(|(name, namespace, uid)| PodRef {
        name,
        namespace,
        uid,
    })
}

pub fn container_ref() -> impl Strategy<Value = ContainerRef> {
    (
        container_runtime(),
        prop_oneof!["[0-9a-f]{64}", text()],
        option::of(text()),
        option::of(text()),
        option::of(prop_oneof!["sha256:[0-9a-f]{64}", text()]),
        option::of(pod_ref()),
    )
        .prop_map(
            |(runtime, id, name, image, image_digest, pod)| ContainerRef {
                runtime,
                id,
                name,
                image,
                image_digest,
                pod,
            },
        )
}

pub fn container_change() -> impl Strategy<Value = ContainerChange> {
    prop_oneof![
        (
            any::<u32>(),
            prop_oneof![
                Just(ContainerDiscovery::Hook),
                Just(ContainerDiscovery::Scan)
            ],
            any::<u64>(),
            vec(file_path(), 0..3),
        )
            .prop_map(
                |(pid, via, root_device, volumes)| ContainerChange::Protected {
                    pid,
                    via,
                    root_device,
                    volumes,
                }
            ),
        Just(ContainerChange::Described),
        Just(ContainerChange::Gone),
        (
            option::of(any::<u32>()),
            text(),
            option::of(prop_oneof![
                Just(HookOutcome::Allowed),
                Just(HookOutcome::Refused)
            ]),
            timestamp(),
        )
            .prop_map(|(pid, reason, hook, at)| ContainerChange::Unprotected {
                pid,
                reason,
                hook,
                at,
            }),
    ]
}

pub fn container_observed() -> impl Strategy<Value = ContainerObserved> {
    (
        container_ref(),
        container_change(),
        vec((text(), text()), 0..4),
    )
        .prop_map(|(container, change, mut labels)| {
            labels.sort();
            labels.dedup_by(|a, b| a.0 == b.0);
            ContainerObserved {
                container,
                change,
                labels,
            }
        })
}

pub fn policy_ref() -> impl Strategy<Value = PolicyRef> {
    (text(), mode()).prop_map(|(name, mode)| PolicyRef { name, mode })
}

pub fn process_info() -> impl Strategy<Value = ProcessInfo> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        option::of(file_path()),
        option::of(text()),
    )
        .prop_map(|(pid, ppid, uid, gid, executable, command)| ProcessInfo {
            pid,
            ppid,
            uid,
            gid,
            executable,
            command,
        })
}

pub fn file_info() -> impl Strategy<Value = FileInfo> {
    (
        file_path(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(|(path, device, inode, size, mtime_ns, ctime_ns)| FileInfo {
            path,
            device,
            inode,
            size,
            mtime_ns,
            ctime_ns,
        })
}

pub fn file_accessed() -> impl Strategy<Value = FileAccessed> {
    (
        access_kind(),
        file_info(),
        process_info(),
        option::of(container_ref()),
        mode(),
        option::of(policy_ref()),
        any::<bool>(),
    )
        .prop_map(
            |(kind, file, process, container, interceptor_mode, policy, blocking)| FileAccessed {
                kind,
                file,
                process,
                container,
                interceptor_mode,
                policy,
                blocking,
            },
        )
}

// ------------------------------------------------------------- scans

pub fn scan_requested() -> impl Strategy<Value = ScanRequested> {
    (event_id(), any::<u64>(), ruleset_version()).prop_map(|(access, size, ruleset)| {
        ScanRequested {
            access,
            size,
            ruleset,
        }
    })
}

/// Finite floats only: NaN != NaN would break the equality check, and
/// JSON has no representation for infinities.
pub fn finite_f64() -> impl Strategy<Value = f64> {
    use proptest::num::f64;
    f64::POSITIVE | f64::NEGATIVE | f64::NORMAL | f64::SUBNORMAL | f64::ZERO
}

pub fn meta_value() -> impl Strategy<Value = MetaValue> {
    prop_oneof![
        any::<i64>().prop_map(MetaValue::Int),
        finite_f64().prop_map(MetaValue::Float),
        any::<bool>().prop_map(MetaValue::Bool),
        text().prop_map(MetaValue::Str),
        vec(any::<u8>(), 0..16).prop_map(MetaValue::Bytes),
    ]
}

/// Metadata keys: sometimes one of those the ECS rendering lifts into
/// `rule.*`, sometimes anything.
pub fn meta_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "description",
            "author",
            "reference",
            "category",
            "license",
            "uuid",
            "id",
            "version",
            "name",
        ])
        .prop_map(str::to_owned),
        text(),
    ]
}

pub fn rule_match() -> impl Strategy<Value = RuleMatch> {
    (
        text(),
        text(),
        vec(text(), 0..3),
        vec((meta_key(), meta_value()), 0..5),
    )
        .prop_map(|(rule, namespace, tags, metadata)| RuleMatch {
            rule,
            namespace,
            tags,
            metadata,
        })
}

pub fn skip_reason() -> impl Strategy<Value = SkipReason> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(size, limit)| SkipReason::TooLarge { size, limit }),
        any::<u64>().prop_map(|after_ms| SkipReason::ScanTimeout { after_ms }),
        text().prop_map(|rule| SkipReason::Excluded { rule }),
        (text(), any::<u64>(), text()).prop_map(|(limit, value, member)| {
            SkipReason::ArchiveLimit {
                limit,
                value,
                member,
            }
        }),
    ]
}

pub fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::Clean),
        vec(rule_match(), 0..4).prop_map(|matches| Verdict::Infected { matches }),
        (text(), vec(rule_match(), 1..3))
            .prop_map(|(member, matches)| Verdict::InfectedMember { member, matches }),
        skip_reason().prop_map(|reason| Verdict::Skipped { reason }),
        text().prop_map(|message| Verdict::Error { message }),
    ]
}

pub fn verdict_issued() -> impl Strategy<Value = VerdictIssued> {
    (
        event_id(),
        file_path(),
        verdict(),
        option::of(any::<[u8; 32]>()),
        any::<u64>(),
        ruleset_version(),
        any::<u64>(),
    )
        .prop_map(
            |(access, path, verdict, sha256, size, ruleset, scan_duration_us)| VerdictIssued {
                access,
                path,
                verdict,
                sha256,
                size,
                ruleset,
                scan_duration_us,
            },
        )
}

// ------------------------------------------------------------- decisions

pub fn decision() -> impl Strategy<Value = Decision> {
    prop_oneof![Just(Decision::Allow), Just(Decision::Deny)]
}

pub fn decision_reason() -> impl Strategy<Value = DecisionReason> {
    prop_oneof![
        Just(DecisionReason::Verdict),
        Just(DecisionReason::CacheHit),
        Just(DecisionReason::Deadline),
        Just(DecisionReason::AuditMode),
        Just(DecisionReason::Overload),
        Just(DecisionReason::NotInScope),
        Just(DecisionReason::OwnProcess),
        Just(DecisionReason::Shutdown),
        Just(DecisionReason::TrustedHash),
        Just(DecisionReason::KnownBadHash),
    ]
}

pub fn decision_made() -> impl Strategy<Value = DecisionMade> {
    (event_id(), decision(), decision_reason(), any::<u64>()).prop_map(
        |(access, decision, reason, latency_us)| DecisionMade {
            access,
            decision,
            reason,
            latency_us,
        },
    )
}

// ------------------------------------------------------------- actions

pub fn action_kind() -> impl Strategy<Value = ActionKind> {
    prop_oneof![
        Just(ActionKind::Block),
        Just(ActionKind::Remove),
        Just(ActionKind::Terminate),
        Just(ActionKind::Disinfect),
    ]
}

pub fn action_step() -> impl Strategy<Value = ActionStep> {
    prop_oneof![Just(ActionStep::First), Just(ActionStep::Second)]
}

pub fn action_outcome() -> impl Strategy<Value = ActionOutcome> {
    prop_oneof![
        Just(ActionOutcome::Succeeded),
        text().prop_map(|error| ActionOutcome::Failed { error }),
        text().prop_map(|why| ActionOutcome::NotPossible { why }),
    ]
}

pub fn quarantine_entry() -> impl Strategy<Value = QuarantineEntry> {
    (text(), file_path()).prop_map(|(id, stored_at)| QuarantineEntry { id, stored_at })
}

pub fn action_taken() -> impl Strategy<Value = ActionTaken> {
    (
        event_id(),
        file_path(),
        any::<u32>(),
        action_kind(),
        action_step(),
        action_outcome(),
        option::of(quarantine_entry()),
    )
        .prop_map(
            |(access, path, pid, action, step, outcome, quarantine)| ActionTaken {
                access,
                path,
                pid,
                action,
                step,
                outcome,
                quarantine,
            },
        )
}

pub fn quarantined_object() -> impl Strategy<Value = QuarantinedObject> {
    (
        text(),
        event_id(),
        prop_oneof![file_path(), non_utf8_path()],
        option::of(any::<[u8; 32]>()),
        any::<u64>(),
        option::of(container_ref()),
    )
        .prop_map(|(id, detection, original_path, sha256, size, container)| {
            QuarantinedObject {
                id,
                detection,
                original_path,
                sha256,
                size,
                container,
            }
        })
}

pub fn operator() -> impl Strategy<Value = Operator> {
    (any::<u32>(), option::of(any::<u32>()), any::<u32>()).prop_map(|(uid, login_uid, pid)| {
        Operator {
            uid,
            login_uid,
            pid,
        }
    })
}

pub fn quarantine_restored() -> impl Strategy<Value = QuarantineRestored> {
    (
        quarantined_object(),
        file_path(),
        any::<bool>(),
        option::of(operator()),
    )
        .prop_map(
            |(entry, restored_to, replaced, operator)| QuarantineRestored {
                entry,
                restored_to,
                replaced,
                operator,
            },
        )
}

pub fn quarantine_deleted() -> impl Strategy<Value = QuarantineDeleted> {
    (
        quarantined_object(),
        prop::sample::select(QuarantineDeletion::ALL.to_vec()),
        option::of(operator()),
    )
        .prop_map(|(entry, reason, operator)| QuarantineDeleted {
            entry,
            reason,
            operator,
        })
}

// ------------------------------------------------------------- overload

pub fn overflow_source() -> impl Strategy<Value = OverflowSource> {
    prop_oneof![
        Just(OverflowSource::Kernel),
        Just(OverflowSource::Mailbox),
        Just(OverflowSource::PendingSet),
    ]
}

pub fn queue_overflowed() -> impl Strategy<Value = QueueOverflowed> {
    (overflow_source(), any::<u64>()).prop_map(|(source, count)| QueueOverflowed { source, count })
}

// ------------------------------------------------------------- envelope

pub fn event_body() -> impl Strategy<Value = EventBody> {
    prop_oneof![
        agent_started().prop_map(EventBody::AgentStarted),
        agent_stopped().prop_map(EventBody::AgentStopped),
        rules_loaded().prop_map(EventBody::RulesLoaded),
        file_accessed().prop_map(EventBody::FileAccessed),
        scan_requested().prop_map(EventBody::ScanRequested),
        verdict_issued().prop_map(EventBody::VerdictIssued),
        decision_made().prop_map(EventBody::DecisionMade),
        action_taken().prop_map(EventBody::ActionTaken),
        queue_overflowed().prop_map(EventBody::QueueOverflowed),
        container_observed().prop_map(EventBody::ContainerObserved),
        rules_rejected().prop_map(EventBody::RulesRejected),
        quarantine_restored().prop_map(EventBody::QuarantineRestored),
        quarantine_deleted().prop_map(EventBody::QuarantineDeleted),
    ]
}

/// An envelope of the current schema version, with any body.
pub fn envelope() -> impl Strategy<Value = Envelope> {
    (
        event_id(),
        node_id(),
        any::<u64>(),
        timestamp(),
        trace_context(),
        event_body(),
    )
        .prop_map(
            |(event_id, node_id, seq, timestamp, trace, body)| Envelope {
                schema: SCHEMA_VERSION,
                event_id,
                node_id,
                seq,
                timestamp,
                trace,
                body,
            },
        )
}

/// Where an exported event was read from (or nothing).
pub fn source_position() -> impl Strategy<Value = Option<SourcePosition>> {
    option::of(prop_oneof![
        any::<u64>().prop_map(|seq| SourcePosition::Journal { seq }),
        (text(), any::<i32>(), any::<i64>()).prop_map(|(topic, partition, offset)| {
            SourcePosition::Kafka {
                topic,
                partition,
                offset,
            }
        }),
    ])
}
