//! Every metric and every span portcullis emits: name, type, labels,
//! meaning. Code records metrics only through these definitions, and
//! `docs/observability.md` is checked against this list by a test, so the
//! two stay the same.
//!
//! Labels stay low-cardinality: their values come from closed sets (enums
//! of the product, client roles, topics and brokers), never from paths,
//! hashes, pids or container ids.

/// Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Which program exposes a metric or emits a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `portcullis run` (and `demo`): the node agent.
    Agent,
    /// `portcullis scanner`: a scanner service.
    Scanner,
    /// `portcullis siem-export`.
    SiemExport,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Scanner => "scanner",
            Role::SiemExport => "siem-export",
        }
    }

    /// The default OpenTelemetry `service.name`.
    pub fn service_name(self) -> &'static str {
        match self {
            Role::Agent => "portcullis-agent",
            Role::Scanner => "portcullis-scanner",
            Role::SiemExport => "portcullis-siem-export",
        }
    }
}

/// Histogram bucket sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buckets {
    /// Latencies from 10 µs to 15 s.
    Latency,
    /// Sizes from 1 KiB to 1 GiB.
    Bytes,
    /// Counts from 1 to 4096.
    Count,
}

impl Buckets {
    pub fn bounds(self) -> &'static [f64] {
        match self {
            Buckets::Latency => &[
                0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
            ],
            Buckets::Bytes => &[
                1024.0,
                16_384.0,
                65_536.0,
                262_144.0,
                1_048_576.0,
                4_194_304.0,
                16_777_216.0,
                67_108_864.0,
                268_435_456.0,
                1_073_741_824.0,
            ],
            Buckets::Count => &[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
            ],
        }
    }
}

/// One metric.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub roles: &'static [Role],
    pub buckets: Option<Buckets>,
    pub help: &'static str,
}

const A: &[Role] = &[Role::Agent];
const S: &[Role] = &[Role::Scanner];
const E: &[Role] = &[Role::SiemExport];
const AS: &[Role] = &[Role::Agent, Role::Scanner];
const ALL: &[Role] = &[Role::Agent, Role::Scanner, Role::SiemExport];

macro_rules! metric {
    ($id:ident, $name:literal, $kind:ident, [$($l:literal),*], $roles:expr, $help:literal) => {
        pub const $id: Metric = Metric {
            name: $name,
            kind: Kind::$kind,
            labels: &[$($l),*],
            roles: $roles,
            buckets: None,
            help: $help,
        };
    };
    ($id:ident, $name:literal, Histogram($b:ident), [$($l:literal),*], $roles:expr, $help:literal) => {
        pub const $id: Metric = Metric {
            name: $name,
            kind: Kind::Histogram,
            labels: &[$($l),*],
            roles: $roles,
            buckets: Some(Buckets::$b),
            help: $help,
        };
    };
}

// Decisions.
metric!(DECISIONS, "portcullis_decisions_total", Counter, ["outcome", "reason"], A,
    "Decisions on accesses, by outcome (allow, deny) and reason (verdict, cache_hit, not_in_scope, audit_mode, deadline, overload, shutdown, trusted_hash, known_bad_hash). Deadline answers are reason=\"deadline\".");
metric!(
    DECISION_LATENCY,
    "portcullis_decision_latency_seconds",
    Histogram(Latency),
    ["reason"],
    A,
    "From the interception of an access (its fanotify event read) to its answer, by reason."
);
metric!(PENDING_DECISIONS, "portcullis_pending_decisions", Gauge, [], A,
    "Openers waiting for a verdict (each holds a fanotify event fd), bounded by enforcer.max_pending.");
metric!(
    RUNNING_SCANS,
    "portcullis_running_scans",
    Gauge,
    [],
    A,
    "Scans the Enforcer waits for (local or remote)."
);
metric!(MAILBOX_DEPTH, "portcullis_mailbox_depth", Gauge, ["mailbox"], A,
    "Messages queued in a bounded mailbox: bridge (reader thread to Bridge) or enforcer (Bridge to Enforcer), each bounded by enforcer.mailbox.");
metric!(OVERFLOWS, "portcullis_overflows_total", Counter, ["source"], A,
    "Accesses answered by on_overload because a queue was full: kernel (the fanotify queue; the kernel allowed them), mailbox, pending_set.");
// Verdict caches.
metric!(
    VERDICT_CACHE_LOOKUPS,
    "portcullis_verdict_cache_lookups_total",
    Counter,
    ["result"],
    A,
    "Lookups of the user-space verdict cache by in-scope blocking accesses: hit or miss."
);
metric!(
    VERDICT_CACHE_ENTRIES,
    "portcullis_verdict_cache_entries",
    Gauge,
    [],
    A,
    "Entries in the user-space verdict cache, bounded by enforcer.cache_entries."
);
metric!(
    KERNEL_IGNORE_MARKS,
    "portcullis_kernel_ignore_marks_total",
    Counter,
    [],
    A,
    "Kernel ignore marks placed on clean files (cleared by the kernel when the file is modified)."
);
// Scans.
metric!(VERDICTS, "portcullis_verdicts_total", Counter, ["class"], A,
    "Verdicts the Enforcer received for its scans (local or remote), by class: clean, infected, skipped, error.");
metric!(SCANS_COALESCED, "portcullis_scans_coalesced_total", Counter, [], A,
    "Openers that joined a scan of the same file version already running instead of starting another.");
metric!(SCANS, "portcullis_scans_total", Counter, ["class"], AS,
    "Scans run by this process (the agent's scanner threads, or a scanner service), by verdict class.");
metric!(
    SCAN_DURATION,
    "portcullis_scan_duration_seconds",
    Histogram(Latency),
    ["class"],
    AS,
    "Time in the YARA-X scan (reading the content included), by verdict class."
);
metric!(
    SCAN_SIZE,
    "portcullis_scan_size_bytes",
    Histogram(Bytes),
    [],
    AS,
    "Size of the scanned objects."
);
// Actions.
metric!(ACTIONS, "portcullis_actions_total", Counter, ["action", "outcome"], A,
    "Actions taken on detections in enforce mode (block, remove, terminate, disinfect), by outcome (success, failure, not_possible).");
// Journal.
metric!(
    JOURNAL_APPENDS,
    "portcullis_journal_appends_total",
    Counter,
    [],
    A,
    "Events appended to the local journal."
);
metric!(
    JOURNAL_COMMIT_BATCH,
    "portcullis_journal_commit_batch_size",
    Histogram(Count),
    [],
    A,
    "Events made durable by one group commit."
);
metric!(
    JOURNAL_COMMIT_DURATION,
    "portcullis_journal_commit_duration_seconds",
    Histogram(Latency),
    [],
    A,
    "Time of one group commit (write and flush)."
);
metric!(
    JOURNAL_LAST_SEQ,
    "portcullis_journal_last_seq",
    Gauge,
    [],
    A,
    "Sequence number of the last durable event."
);
metric!(OUTBOX_LAG, "portcullis_outbox_lag_events", Gauge, [], A,
    "Journal events not yet delivered to the Kafka events topic (last durable seq minus last published seq); distributed mode.");
// Remote scans (node side).
metric!(REMOTE_SCAN_DURATION, "portcullis_remote_scan_duration_seconds", Histogram(Latency), [], A,
    "Request/reply latency of remote scans: from the request handed to the producer to its reply read.");
metric!(
    REMOTE_REQUESTS,
    "portcullis_remote_requests_total",
    Counter,
    ["result"],
    A,
    "Remote scan requests by result: replied, failed (not delivered), timed_out."
);
metric!(REMOTE_REPLIES_UNCLAIMED, "portcullis_remote_replies_unclaimed_total", Counter, [], A,
    "Replies for requests this node no longer waits for (answered by another reply, timed out, or another node's), dropped.");
// Scanner service.
metric!(SCANNER_UNACKED, "portcullis_scanner_unacked_replies", Gauge, [], S,
    "Requests read but whose reply the broker has not acknowledged yet (their offsets stay uncommitted).");
metric!(
    SCANNER_PARTITIONS,
    "portcullis_scanner_assigned_partitions",
    Gauge,
    [],
    S,
    "Request partitions the scanner group assigned to this service."
);
// siem-export.
metric!(
    SIEM_EVENTS,
    "portcullis_siem_events_total",
    Counter,
    ["output"],
    E,
    "Events exported, by output: ecs, ocsf (topics, committed), cef (syslog)."
);
// Kafka, every role.
metric!(
    DLQ_MESSAGES,
    "portcullis_dlq_messages_total",
    Counter,
    ["stage"],
    ALL,
    "Messages sent to the dead-letter topic, by stage: decode, process, produce."
);
metric!(KAFKA_CONSUMER_LAG, "portcullis_kafka_consumer_lag_messages", Gauge, ["client", "topic"], ALL,
    "Consumer lag of a client (librdkafka statistics): messages between the committed offset and the end of its assigned partitions, summed.");
metric!(
    KAFKA_QUEUE,
    "portcullis_kafka_queue_messages",
    Gauge,
    ["client"],
    ALL,
    "Messages waiting in a client's librdkafka queues (produced, not yet acknowledged)."
);
metric!(
    KAFKA_RTT,
    "portcullis_kafka_broker_rtt_seconds",
    Gauge,
    ["client", "broker"],
    ALL,
    "Average round trip to a broker over the last statistics window (librdkafka statistics)."
);
// Node state.
metric!(
    CONTAINERS_PROTECTED,
    "portcullis_containers_protected",
    Gauge,
    [],
    A,
    "Containers whose root filesystem the agent protects now."
);
metric!(
    RULES_INFO,
    "portcullis_rules_info",
    Gauge,
    ["ruleset"],
    AS,
    "1, labelled with the version (content hash) of the loaded ruleset."
);
metric!(
    RULES_LOADED,
    "portcullis_rules_loaded",
    Gauge,
    [],
    AS,
    "Rules in the loaded ruleset."
);
metric!(
    RULES_RELOADS,
    "portcullis_rules_reloads_total",
    Counter,
    ["result"],
    AS,
    "Rules reloads (SIGHUP or the rules directory watch), by result: loaded, rejected (the old rules stay in force), unchanged."
);
metric!(
    RESCANS,
    "portcullis_rescans_total",
    Counter,
    [],
    A,
    "Scans started again on the local scanners because their verdict came from a ruleset other than the one in force (a reload while they ran, or a scanner service on other rules)."
);
metric!(
    BUILD_INFO,
    "portcullis_build_info",
    Gauge,
    ["version", "role"],
    ALL,
    "1, labelled with the portcullis version and the role of the process."
);
metric!(
    READY,
    "portcullis_ready",
    Gauge,
    [],
    ALL,
    "1 when /readyz answers ready, else 0."
);

/// Every metric of portcullis itself (the `process_*` metrics are listed
/// in [`PROCESS_METRICS`]).
pub const METRICS: &[Metric] = &[
    DECISIONS,
    DECISION_LATENCY,
    PENDING_DECISIONS,
    RUNNING_SCANS,
    MAILBOX_DEPTH,
    OVERFLOWS,
    VERDICT_CACHE_LOOKUPS,
    VERDICT_CACHE_ENTRIES,
    KERNEL_IGNORE_MARKS,
    VERDICTS,
    SCANS_COALESCED,
    SCANS,
    SCAN_DURATION,
    SCAN_SIZE,
    ACTIONS,
    JOURNAL_APPENDS,
    JOURNAL_COMMIT_BATCH,
    JOURNAL_COMMIT_DURATION,
    JOURNAL_LAST_SEQ,
    OUTBOX_LAG,
    REMOTE_SCAN_DURATION,
    REMOTE_REQUESTS,
    REMOTE_REPLIES_UNCLAIMED,
    SCANNER_UNACKED,
    SCANNER_PARTITIONS,
    SIEM_EVENTS,
    DLQ_MESSAGES,
    KAFKA_CONSUMER_LAG,
    KAFKA_QUEUE,
    KAFKA_RTT,
    CONTAINERS_PROTECTED,
    RULES_INFO,
    RULES_LOADED,
    RULES_RELOADS,
    RESCANS,
    BUILD_INFO,
    READY,
];

/// Process metrics of every role (the `metrics-process` collector, read
/// from `/proc/self` at each scrape): name, type, meaning.
pub const PROCESS_METRICS: &[(&str, Kind, &str)] = &[
    (
        "process_cpu_seconds_total",
        Kind::Counter,
        "User and system CPU time.",
    ),
    (
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident set size.",
    ),
    (
        "process_virtual_memory_bytes",
        Kind::Gauge,
        "Virtual memory size.",
    ),
    (
        "process_virtual_memory_max_bytes",
        Kind::Gauge,
        "Limit of the virtual memory size.",
    ),
    (
        "process_open_fds",
        Kind::Gauge,
        "Open file descriptors (each pending decision holds one).",
    ),
    (
        "process_max_fds",
        Kind::Gauge,
        "Limit of open file descriptors.",
    ),
    (
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time, seconds since the epoch.",
    ),
    ("process_threads", Kind::Gauge, "Threads."),
];

/// OpenTelemetry span kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Producer,
    Consumer,
}

impl SpanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Internal => "internal",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

/// One span. `name` is a pattern where `{topic}` stands for a topic name.
#[derive(Clone, Copy, Debug)]
pub struct SpanDef {
    pub name: &'static str,
    pub kind: SpanKind,
    pub roles: &'static [Role],
    pub attributes: &'static [&'static str],
    pub help: &'static str,
}

/// Attributes of every Kafka span (OpenTelemetry messaging conventions).
pub const MESSAGING_ATTRIBUTES: &[&str] = &[
    "messaging.system",
    "messaging.operation.type",
    "messaging.operation.name",
    "messaging.destination.name",
    "messaging.destination.partition.id",
    "messaging.kafka.offset",
    "messaging.kafka.message.key",
    "messaging.consumer.group.name",
    "messaging.message.id",
];

pub const SPAN_ACCESS: SpanDef = SpanDef {
    name: "access",
    kind: SpanKind::Internal,
    roles: A,
    attributes: &[
        "portcullis.event_id",
        "portcullis.access.kind",
        "portcullis.interceptor_mode",
        "file.path",
        "process.pid",
        "container.id",
        "portcullis.policy",
        "portcullis.queue_us",
        "portcullis.coalesced",
        "portcullis.decision",
        "portcullis.decision.reason",
    ],
    help: "The root of every access that reaches the agent: from the Enforcer taking it (portcullis.queue_us after its interception) to its answer.",
};
pub const SPAN_SCAN: SpanDef = SpanDef {
    name: "scan",
    kind: SpanKind::Internal,
    roles: AS,
    attributes: &[
        "portcullis.event_id",
        "portcullis.scan.location",
        "portcullis.ruleset",
        "file.size",
        "portcullis.verdict",
        "portcullis.rule",
    ],
    help: "A scan: in the agent, from the request to the verdict (location local or remote); in a scanner service, the YARA-X scan itself.",
};
pub const SPAN_SEND: SpanDef = SpanDef {
    name: "send {topic}",
    kind: SpanKind::Producer,
    roles: AS,
    attributes: MESSAGING_ATTRIBUTES,
    help: "A scan request (agent) or a reply (scanner service) handed to Kafka; its context is the message's traceparent header and the request's trace field.",
};
pub const SPAN_PROCESS: SpanDef = SpanDef {
    name: "process {topic}",
    kind: SpanKind::Consumer,
    roles: ALL,
    attributes: MESSAGING_ATTRIBUTES,
    help: "A message processed: a scan request (scanner service), a reply (agent), an event exported (siem-export); child of the context in its traceparent header.",
};
pub const SPAN_JOURNAL_APPEND: SpanDef = SpanDef {
    name: "journal append",
    kind: SpanKind::Internal,
    roles: A,
    attributes: &[
        "portcullis.event_id",
        "portcullis.event.kind",
        "portcullis.journal.seq",
    ],
    help: "An event from its append to its group commit, child of the span that produced it.",
};
pub const SPAN_ACT: SpanDef = SpanDef {
    name: "act",
    kind: SpanKind::Internal,
    roles: A,
    attributes: &[
        "portcullis.event_id",
        "portcullis.action",
        "portcullis.action.outcome",
    ],
    help: "The actions on a detection (enforce mode), child of the scan that found it.",
};

pub const SPANS: &[SpanDef] = &[
    SPAN_ACCESS,
    SPAN_SCAN,
    SPAN_SEND,
    SPAN_PROCESS,
    SPAN_JOURNAL_APPEND,
    SPAN_ACT,
];

/// The catalog entry of a span name as exported (`send <topic>` matches
/// `send {topic}`).
pub fn span_def(name: &str) -> Option<&'static SpanDef> {
    SPANS.iter().find(|d| match d.name.split_once("{topic}") {
        Some((prefix, "")) => name.starts_with(prefix) && name.len() > prefix.len(),
        _ => d.name == name,
    })
}

fn roles(r: &[Role]) -> String {
    r.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}

/// The metrics table of `docs/observability.md`.
pub fn metrics_table() -> String {
    let mut out =
        String::from("| Metric | Type | Labels | Exposed by | Meaning |\n|---|---|---|---|---|\n");
    for m in METRICS {
        let labels = if m.labels.is_empty() {
            "".to_string()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            labels,
            roles(m.roles),
            m.help.replace('|', "\\|")
        ));
    }
    for (name, kind, help) in PROCESS_METRICS {
        out.push_str(&format!(
            "| `{name}` | {} | | agent, scanner, siem-export | {help} |\n",
            kind.as_str()
        ));
    }
    out
}

/// The spans table of `docs/observability.md`.
pub fn spans_table() -> String {
    let mut out = String::from(
        "| Span | Kind | Emitted by | Attributes | Meaning |\n|---|---|---|---|---|\n",
    );
    for s in SPANS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            s.name,
            s.kind.as_str(),
            roles(s.roles),
            s.attributes
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", "),
            s.help.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// `docs/observability.md` lists exactly the metrics and spans of
    /// this catalog. `PORTCULLIS_BLESS=1` rewrites its tables.
    #[test]
    fn the_docs_list_every_metric_and_span() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/observability.md");
        let doc = std::fs::read_to_string(&path).expect("docs/observability.md");
        let mut fixed = doc.clone();
        for (name, table) in [("metrics", metrics_table()), ("spans", spans_table())] {
            let begin =
                format!("<!-- {name}:begin (generated from telemetry/src/catalog.rs) -->\n");
            let end = format!("<!-- {name}:end -->");
            let b = fixed
                .find(&begin)
                .unwrap_or_else(|| panic!("no {begin:?} in {}", path.display()));
            let e = fixed
                .find(&end)
                .unwrap_or_else(|| panic!("no {end:?} in {}", path.display()));
            fixed.replace_range(b + begin.len()..e, &table);
        }
        if fixed != doc {
            if std::env::var_os("PORTCULLIS_BLESS").is_some() {
                std::fs::write(&path, fixed).expect("writing docs/observability.md");
            } else {
                panic!(
                    "docs/observability.md does not list the catalog's metrics and spans; \
                     run `PORTCULLIS_BLESS=1 cargo test -p portcullis-telemetry` and review the diff"
                );
            }
        }
    }

    #[test]
    fn names_are_unique_and_prometheus_shaped() {
        let mut seen = HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("portcullis_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert_eq!(m.kind == Kind::Histogram, m.buckets.is_some(), "{}", m.name);
            for l in m.labels {
                // Never a path, hash, pid or container id.
                assert!(
                    ![
                        "path",
                        "sha256",
                        "hash",
                        "pid",
                        "container",
                        "container_id",
                        "event_id"
                    ]
                    .contains(l),
                    "{}: label {l}",
                    m.name
                );
            }
        }
    }

    #[test]
    fn span_names_match_their_patterns() {
        assert_eq!(
            span_def("send portcullis.scan-requests").map(|d| d.name),
            Some("send {topic}")
        );
        assert_eq!(
            span_def("process x").map(|d| d.name),
            Some("process {topic}")
        );
        assert_eq!(span_def("access").map(|d| d.name), Some("access"));
        assert!(span_def("send ").is_none());
        assert!(span_def("other").is_none());
    }
}
