//! Event bodies. Past tense, immutable, append-only.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::envelope::EventId;
use crate::path::FilePath;

/// The body of an [`crate::Envelope`].
///
/// **Append-only**: the binary encoding uses the variant index, so new
/// variants go at the end and existing ones are never reordered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    AgentStarted(AgentStarted),
    AgentStopped(AgentStopped),
    RulesLoaded(RulesLoaded),
    FileAccessed(FileAccessed),
    ScanRequested(ScanRequested),
    VerdictIssued(VerdictIssued),
    DecisionMade(DecisionMade),
    ActionTaken(ActionTaken),
    QueueOverflowed(QueueOverflowed),
    ContainerObserved(ContainerObserved),
    RulesRejected(RulesRejected),
    QuarantineRestored(QuarantineRestored),
    QuarantineDeleted(QuarantineDeleted),
}

impl EventBody {
    /// A stable, low-cardinality name of the variant (`file_accessed`, ...).
    pub fn kind(&self) -> EventKind {
        match self {
            Self::AgentStarted(_) => EventKind::AgentStarted,
            Self::AgentStopped(_) => EventKind::AgentStopped,
            Self::RulesLoaded(_) => EventKind::RulesLoaded,
            Self::FileAccessed(_) => EventKind::FileAccessed,
            Self::ScanRequested(_) => EventKind::ScanRequested,
            Self::VerdictIssued(_) => EventKind::VerdictIssued,
            Self::DecisionMade(_) => EventKind::DecisionMade,
            Self::ActionTaken(_) => EventKind::ActionTaken,
            Self::QueueOverflowed(_) => EventKind::QueueOverflowed,
            Self::ContainerObserved(_) => EventKind::ContainerObserved,
            Self::RulesRejected(_) => EventKind::RulesRejected,
            Self::QuarantineRestored(_) => EventKind::QuarantineRestored,
            Self::QuarantineDeleted(_) => EventKind::QuarantineDeleted,
        }
    }

    /// The file access (by its event id) this event refers to.
    pub fn access_id(&self) -> Option<EventId> {
        match self {
            Self::ScanRequested(e) => Some(e.access),
            Self::VerdictIssued(e) => Some(e.access),
            Self::DecisionMade(e) => Some(e.access),
            Self::ActionTaken(e) => Some(e.access),
            Self::QuarantineRestored(e) => Some(e.entry.detection),
            Self::QuarantineDeleted(e) => Some(e.entry.detection),
            _ => None,
        }
    }

    /// The file the event itself names, if it names one (the access, its
    /// verdict, an action on it). Other events of an access name the file
    /// only through [`access_id`](Self::access_id).
    pub fn path(&self) -> Option<&FilePath> {
        match self {
            Self::FileAccessed(e) => Some(&e.file.path),
            Self::VerdictIssued(e) => Some(&e.path),
            Self::ActionTaken(e) => Some(&e.path),
            Self::QuarantineRestored(e) => Some(&e.restored_to),
            Self::QuarantineDeleted(e) => Some(&e.entry.original_path),
            _ => None,
        }
    }
}

/// The kind of an event, for filters and metrics labels.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    AgentStarted,
    AgentStopped,
    RulesLoaded,
    FileAccessed,
    ScanRequested,
    VerdictIssued,
    DecisionMade,
    ActionTaken,
    QueueOverflowed,
    ContainerObserved,
    RulesRejected,
    QuarantineRestored,
    QuarantineDeleted,
}

impl EventKind {
    pub const ALL: [EventKind; 13] = [
        Self::AgentStarted,
        Self::AgentStopped,
        Self::RulesLoaded,
        Self::FileAccessed,
        Self::ScanRequested,
        Self::VerdictIssued,
        Self::DecisionMade,
        Self::ActionTaken,
        Self::QueueOverflowed,
        Self::ContainerObserved,
        Self::RulesRejected,
        Self::QuarantineRestored,
        Self::QuarantineDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AgentStarted => "agent_started",
            Self::AgentStopped => "agent_stopped",
            Self::RulesLoaded => "rules_loaded",
            Self::FileAccessed => "file_accessed",
            Self::ScanRequested => "scan_requested",
            Self::VerdictIssued => "verdict_issued",
            Self::DecisionMade => "decision_made",
            Self::ActionTaken => "action_taken",
            Self::QueueOverflowed => "queue_overflowed",
            Self::ContainerObserved => "container_observed",
            Self::RulesRejected => "rules_rejected",
            Self::QuarantineRestored => "quarantine_restored",
            Self::QuarantineDeleted => "quarantine_deleted",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown event kind `{s}`"))
    }
}

/// Interceptor or policy mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Block access while the file is scanned; act on detections.
    #[default]
    Enforce,
    /// Never block; scan on the side and only record detections.
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Audit => "audit",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------- lifecycle

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentStarted {
    pub version: String,
    pub pid: u32,
    pub interceptor_mode: Mode,
    pub protected: Vec<FilePath>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentStopped {
    /// Decisions still pending at shutdown, all answered before the stop.
    pub answered_pending: u64,
    pub signal: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RulesLoaded {
    pub ruleset: RulesetVersion,
    pub rules: u32,
    pub files: Vec<String>,
}

/// A reload found a ruleset that does not load (a rule that does not
/// compile, a bad hash list line, an unreadable file): it was refused and
/// the ruleset in force stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesRejected {
    /// The ruleset that stays in force.
    pub kept: RulesetVersion,
    /// What was wrong, one line: `file:line:column: message` when the
    /// error has a place.
    pub error: String,
    /// The file at fault, when one is.
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

/// The content hash of a compiled ruleset's sources (hex sha256, shortened).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct RulesetVersion(pub String);

impl fmt::Display for RulesetVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------- accesses

/// What the process did to the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessKind {
    Open,
    Exec,
    /// The file was closed after being written (scan modes `open_and_modify`
    /// and `smart`).
    CloseWrite,
}

impl AccessKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Exec => "exec",
            Self::CloseWrite => "close_write",
        }
    }
}

/// The container runtime a process belongs to, from `/proc/<pid>/cgroup`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerRuntime {
    Docker,
    Containerd,
    CriO,
    Podman,
}

impl ContainerRuntime {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Containerd => "containerd",
            Self::CriO => "cri-o",
            Self::Podman => "podman",
        }
    }
}

/// The pod a container belongs to (Kubernetes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
    pub uid: Option<String>,
}

/// A container, as the agent knew it when the event happened: the id and
/// runtime from the process' cgroup, the rest resolved from the runtime
/// (schema 2). A field is `None` when the runtime had not said it yet; a
/// later [`ContainerObserved`] (`described`) then carries it, and replay
/// merges it into the accesses before it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerRef {
    pub runtime: ContainerRuntime,
    /// The full 64-hex-digit container id.
    pub id: String,
    pub name: Option<String>,
    /// The image reference (`docker.io/library/nginx:1.27`).
    pub image: Option<String>,
    /// The image digest (`sha256:...`): the repository digest when the
    /// runtime knows one, else the image id.
    pub image_digest: Option<String>,
    pub pod: Option<PodRef>,
}

impl ContainerRef {
    /// A container known by its id alone.
    pub fn new(runtime: ContainerRuntime, id: impl Into<String>) -> Self {
        Self {
            runtime,
            id: id.into(),
            name: None,
            image: None,
            image_digest: None,
            pod: None,
        }
    }

    /// `true` when only the id and runtime are known.
    pub fn is_bare(&self) -> bool {
        self.name.is_none()
            && self.image.is_none()
            && self.image_digest.is_none()
            && self.pod.is_none()
    }

    /// Fills the fields `self` lacks from `other` (same container).
    pub fn fill_from(&mut self, other: &ContainerRef) {
        if self.name.is_none() {
            self.name.clone_from(&other.name);
        }
        if self.image.is_none() {
            self.image.clone_from(&other.image);
        }
        if self.image_digest.is_none() {
            self.image_digest.clone_from(&other.image_digest);
        }
        if self.pod.is_none() {
            self.pod.clone_from(&other.pod);
        }
    }
}

/// The runtime policy that put the file in scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub name: String,
    pub mode: Mode,
}

/// The process that touched a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub executable: Option<FilePath>,
    pub command: Option<String>,
}

/// The file as seen through the event's file descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FileInfo {
    pub path: FilePath,
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
}

/// A process opened, executed, or finished writing a file in scope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileAccessed {
    pub kind: AccessKind,
    pub file: FileInfo,
    pub process: ProcessInfo,
    pub container: Option<ContainerRef>,
    /// The interceptor mode in force (global setting).
    pub interceptor_mode: Mode,
    /// The runtime policy in force and its own mode.
    pub policy: Option<PolicyRef>,
    /// Whether the opener is waiting on our answer.
    pub blocking: bool,
}

// ---------------------------------------------------------------- scans

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanRequested {
    pub access: EventId,
    pub size: u64,
    pub ruleset: RulesetVersion,
}

/// One matching rule, with everything YARA-X reports about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleMatch {
    pub rule: String,
    pub namespace: String,
    pub tags: Vec<String>,
    pub metadata: Vec<(String, MetaValue)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MetaValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// Why an object was not scanned (logged as *unprocessed*).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkipReason {
    TooLarge {
        size: u64,
        limit: u64,
    },
    ScanTimeout {
        after_ms: u64,
    },
    Excluded {
        rule: String,
    },
    /// An archive walk stopped at a limit (`scan.archives`): the archive
    /// was not wholly scanned. `scan.archives.on_limit` decides the open.
    ArchiveLimit {
        /// The limit's config field (`max_depth`, `max_ratio`, `timeout`, ...).
        limit: String,
        /// Its value (bytes, count, ratio; ms for `timeout`).
        value: u64,
        /// Where the walk stopped (`dir/inner.zip!big.bin`).
        member: String,
    },
}

impl SkipReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::ScanTimeout { .. } => "scan_timeout",
            Self::Excluded { .. } => "excluded",
            Self::ArchiveLimit { .. } => "archive_limit",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    Clean,
    Infected {
        matches: Vec<RuleMatch>,
    },
    Skipped {
        reason: SkipReason,
    },
    Error {
        message: String,
    },
    /// Infected: a member of the archive matched (the archive is what was
    /// opened, and what the decision and actions apply to).
    InfectedMember {
        /// The member's path in the archive, nested levels joined by `!`
        /// (`dir/inner.zip!evil.sh`).
        member: String,
        matches: Vec<RuleMatch>,
    },
}

impl Verdict {
    pub fn class(&self) -> VerdictClass {
        match self {
            Self::Clean => VerdictClass::Clean,
            Self::Infected { .. } | Self::InfectedMember { .. } => VerdictClass::Infected,
            Self::Skipped { .. } => VerdictClass::Skipped,
            Self::Error { .. } => VerdictClass::Error,
        }
    }

    /// The matching rules, when infected.
    pub fn matches(&self) -> Option<&[RuleMatch]> {
        match self {
            Self::Infected { matches } | Self::InfectedMember { matches, .. } => Some(matches),
            _ => None,
        }
    }

    /// The archive member the rules matched in, when they matched in one.
    pub fn member(&self) -> Option<&str> {
        match self {
            Self::InfectedMember { member, .. } => Some(member),
            _ => None,
        }
    }
}

/// The verdict without its details, for filters and labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictClass {
    Clean,
    Infected,
    Skipped,
    Error,
}

impl VerdictClass {
    pub const ALL: [VerdictClass; 4] = [Self::Clean, Self::Infected, Self::Skipped, Self::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Infected => "infected",
            Self::Skipped => "skipped",
            Self::Error => "error",
        }
    }
}

impl std::str::FromStr for VerdictClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "clean" => Ok(Self::Clean),
            "infected" => Ok(Self::Infected),
            "skipped" | "unprocessed" => Ok(Self::Skipped),
            "error" => Ok(Self::Error),
            other => Err(format!(
                "unknown verdict `{other}` (expected clean, infected, skipped or error)"
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictIssued {
    pub access: EventId,
    pub path: FilePath,
    pub verdict: Verdict,
    pub sha256: Option<[u8; 32]>,
    pub size: u64,
    pub ruleset: RulesetVersion,
    pub scan_duration_us: u64,
}

// ---------------------------------------------------------------- decisions

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub const ALL: [Decision; 2] = [Self::Allow, Self::Deny];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionReason {
    /// A scan verdict arrived in time.
    Verdict,
    /// A cached verdict for the unchanged file.
    CacheHit,
    /// No verdict before the deadline; `on_timeout` answered.
    Deadline,
    /// Audit mode: never blocked.
    AuditMode,
    /// Too many pending decisions; `on_overload` answered.
    Overload,
    /// No enabled policy covers the file.
    NotInScope,
    /// The agent's own access.
    OwnProcess,
    /// The agent stopped while the decision was pending.
    Shutdown,
    /// The content's sha256 is on a trusted list: allowed without a scan.
    TrustedHash,
    /// The content's sha256 is on a known-bad list: infected without a scan.
    KnownBadHash,
}

impl DecisionReason {
    pub const ALL: [DecisionReason; 10] = [
        Self::Verdict,
        Self::CacheHit,
        Self::Deadline,
        Self::AuditMode,
        Self::Overload,
        Self::NotInScope,
        Self::OwnProcess,
        Self::Shutdown,
        Self::TrustedHash,
        Self::KnownBadHash,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verdict => "verdict",
            Self::CacheHit => "cache_hit",
            Self::Deadline => "deadline",
            Self::AuditMode => "audit_mode",
            Self::Overload => "overload",
            Self::NotInScope => "not_in_scope",
            Self::OwnProcess => "own_process",
            Self::Shutdown => "shutdown",
            Self::TrustedHash => "trusted_hash",
            Self::KnownBadHash => "known_bad_hash",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionMade {
    pub access: EventId,
    pub decision: Decision,
    pub reason: DecisionReason,
    /// From interception to the answer written to the kernel.
    pub latency_us: u64,
}

// ---------------------------------------------------------------- actions

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Block,
    Remove,
    Terminate,
    Disinfect,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Remove => "remove",
            Self::Terminate => "terminate",
            Self::Disinfect => "disinfect",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStep {
    First,
    Second,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionOutcome {
    Succeeded,
    Failed {
        error: String,
    },
    /// The action cannot be done at all (disinfection with YARA rules).
    NotPossible {
        why: String,
    },
}

impl ActionOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Succeeded => "success",
            Self::Failed { .. } => "failure",
            Self::NotPossible { .. } => "not_possible",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub id: String,
    pub stored_at: FilePath,
}

/// What an event of the quarantine says about the entry it concerns: the
/// object as it was detected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedObject {
    /// The quarantine id (`portcullis quarantine show ID`).
    pub id: String,
    /// The access whose detection put the object in quarantine (the
    /// `access` of its `ActionTaken`, the id `portcullis investigate`
    /// takes).
    pub detection: EventId,
    pub original_path: FilePath,
    pub sha256: Option<[u8; 32]>,
    pub size: u64,
    /// The container the object was detected in, when it was in one.
    pub container: Option<ContainerRef>,
}

/// Who asked for a quarantine change: the process on the other end of the
/// agent's control socket (or the CLI itself when no agent ran).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub uid: u32,
    /// The login uid (`/proc/PID/loginuid`): the user behind `sudo`, when
    /// the kernel audits logins.
    pub login_uid: Option<u32>,
    pub pid: u32,
}

/// An operator restored an object from the quarantine
/// (`portcullis quarantine restore`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRestored {
    pub entry: QuarantinedObject,
    /// Where it was written (the original path, or `--to`).
    pub restored_to: FilePath,
    /// An existing file there was replaced (`--force`).
    pub replaced: bool,
    pub operator: Option<Operator>,
}

/// Why an entry left the quarantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineDeletion {
    /// `portcullis quarantine delete`.
    Operator,
    /// Older than `actions.quarantine_max_age`.
    MaxAge,
    /// The oldest entries past `actions.quarantine_max_size`.
    MaxSize,
}

impl QuarantineDeletion {
    pub const ALL: [QuarantineDeletion; 3] = [Self::Operator, Self::MaxAge, Self::MaxSize];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::MaxAge => "max_age",
            Self::MaxSize => "max_size",
        }
    }
}

/// A quarantine entry (backup copy and record) was deleted: by an operator,
/// or by the retention settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineDeleted {
    pub entry: QuarantinedObject,
    pub reason: QuarantineDeletion,
    /// Set when an operator asked.
    pub operator: Option<Operator>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionTaken {
    pub access: EventId,
    pub path: FilePath,
    pub pid: u32,
    pub action: ActionKind,
    pub step: ActionStep,
    pub outcome: ActionOutcome,
    pub quarantine: Option<QuarantineEntry>,
}

// ---------------------------------------------------------------- overload

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowSource {
    /// The kernel's fanotify queue overflowed (`FAN_Q_OVERFLOW`).
    Kernel,
    /// The bridge from the reader thread to the Enforcer was full.
    Mailbox,
    /// The Enforcer's pending set was full.
    PendingSet,
}

impl OverflowSource {
    pub const ALL: [OverflowSource; 3] = [Self::Kernel, Self::Mailbox, Self::PendingSet];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Mailbox => "mailbox",
            Self::PendingSet => "pending_set",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueOverflowed {
    pub source: OverflowSource,
    /// How many overflows since the previous such event.
    pub count: u64,
}

// ---------------------------------------------------------------- containers

/// How a container came to be protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerDiscovery {
    /// The runtime's synchronous hook (OCI `createRuntime`, NRI), before
    /// any code of the container ran.
    Hook,
    /// The agent's `/proc` scan: at its start, or after a mount change.
    Scan,
}

/// What an OCI hook did while the agent was unavailable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookOutcome {
    /// The container started unprotected (`on_agent_unavailable = allow`).
    Allowed,
    /// The hook failed the start (`on_agent_unavailable = refuse`).
    Refused,
}

/// What happened to a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerChange {
    /// Its root overlay (and volumes) are marked.
    Protected {
        pid: u32,
        via: ContainerDiscovery,
        /// `st_dev` of the root overlay.
        root_device: u64,
        volumes: Vec<FilePath>,
    },
    /// Its metadata arrived after it was protected: accesses before this
    /// event may lack it.
    Described,
    /// Its processes are gone; the kernel dropped its marks with the
    /// unmount.
    Gone,
    /// It runs (or ran) without protection: the agent refused to mark it,
    /// or it started while the agent was unavailable.
    Unprotected {
        pid: Option<u32>,
        reason: String,
        /// Set when the OCI hook decided, the agent being unavailable.
        hook: Option<HookOutcome>,
        /// When that happened (the event may be journaled much later).
        at: crate::Timestamp,
    },
}

impl ContainerChange {
    /// `container_protected`, `container_described`, ...
    pub fn action(&self) -> &'static str {
        match self {
            Self::Protected { .. } => "container_protected",
            Self::Described => "container_described",
            Self::Gone => "container_gone",
            Self::Unprotected { .. } => "container_unprotected",
        }
    }
}

/// A fact about a container on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerObserved {
    pub container: ContainerRef,
    pub change: ContainerChange,
    /// The container's labels, at most 32, sorted by key.
    pub labels: Vec<(String, String)>,
}
