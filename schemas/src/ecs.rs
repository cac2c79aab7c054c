//! JSON with Elastic Common Schema field names.
//!
//! One envelope becomes one [`EcsDocument`]: `@timestamp`, `event.*`,
//! `file.*`, `process.*`, `user.*`, `container.*`, `host.*`, `rule.*`,
//! `trace.id`/`span.id`, and portcullis-specific fields under
//! `portcullis.*` (including `portcullis.source`, where the event was read
//! from, when the caller knows it). Absent values are left out rather than
//! written as `null`.
//!
//! The document is a tree of borrowing structs serialized by serde, so the
//! hot path ([`write_ecs_line`]) copies no strings: paths are borrowed
//! unless they are not UTF-8, and times, ids and hashes are formatted
//! straight into the output. Its JSON Schema (`schemas/json/ecs.schema.json`)
//! is generated from the same structs; see [`crate::json_schema`].

use std::borrow::Cow;
use std::io;

use schemars::JsonSchema;
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::envelope::{Envelope, EventId};
use crate::events::*;
use crate::path::FilePath;
use crate::render::{Hex, HexBytes, MetaJson, MetaMap, NumText, Rfc3339};
use crate::source::SourcePosition;

/// The ECS version the output follows.
pub const ECS_VERSION: &str = "8.11.0";

/// The ECS document for one envelope, as a JSON value (tests, tools).
/// The SIEM path uses [`write_ecs_line`].
pub fn to_ecs(env: &Envelope) -> Value {
    serde_json::to_value(EcsDocument::new(env, None)).unwrap_or(Value::Null)
}

/// One line of JSON (no trailing newline).
pub fn to_ecs_line(env: &Envelope) -> String {
    let mut buf = Vec::with_capacity(1024);
    // Writing to a Vec cannot fail, and serde_json writes UTF-8 only.
    let _ = write_ecs_line(env, None, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Writes the ECS document of `env` as one line of JSON, **without** a
/// trailing newline (the caller frames records: `\n` for JSON lines, none
/// for a Kafka message). `source`, when given, becomes `portcullis.source`.
///
/// Nothing is allocated for UTF-8 paths; use a buffered writer (or a
/// reused `Vec<u8>`), as serde_json issues many small writes.
pub fn write_ecs_line(
    env: &Envelope,
    source: Option<&SourcePosition>,
    w: &mut impl io::Write,
) -> io::Result<()> {
    serde_json::to_writer(w, &EcsDocument::new(env, source)).map_err(io::Error::from)
}

// ------------------------------------------------------------- document

/// One event in ECS form.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "EcsDocument")]
pub struct EcsDocument<'a> {
    /// When the event happened (UTC, nanoseconds).
    #[serde(rename = "@timestamp")]
    pub timestamp: Rfc3339,
    pub ecs: EcsMeta,
    pub host: EcsHost<'a>,
    pub trace: EcsTrace<'a>,
    pub span: EcsSpan<'a>,
    pub event: EcsEvent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<EcsAgent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<EcsFile<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<EcsProcess<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<EcsNumId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<EcsNumId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<EcsContainer<'a>>,
    /// The pod of the container (Kubernetes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<EcsOrchestrator<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<EcsRule<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threat: Option<EcsThreat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<EcsError<'a>>,
    pub portcullis: EcsPortcullis<'a>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsMeta {
    /// Always [`ECS_VERSION`].
    #[schemars(schema_with = "ecs_version_schema")]
    pub version: &'static str,
}

fn ecs_version_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "const": ECS_VERSION })
}

/// The node the event was recorded on (both fields hold the node id).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsHost<'a> {
    pub name: &'a str,
    pub hostname: &'a str,
}

/// W3C trace id (32 hex digits).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsTrace<'a> {
    pub id: Hex<'a, 16>,
}

/// W3C span id (16 hex digits).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsSpan<'a> {
    pub id: Hex<'a, 8>,
}

/// `event.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EcsKind {
    Event,
    /// An infected verdict.
    Alert,
}

/// `event.category` values used here (ECS allowed values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EcsCategory {
    Configuration,
    File,
    Host,
    IntrusionDetection,
    Malware,
    Process,
}

/// `event.type` values used here (ECS allowed values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EcsType {
    Access,
    Allowed,
    Change,
    Creation,
    Deletion,
    Denied,
    End,
    Indicator,
    Info,
    Start,
}

/// `event.outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EcsOutcome {
    Success,
    Failure,
    Unknown,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsEvent<'a> {
    /// The envelope's event id (UUIDv7).
    pub id: &'a EventId,
    /// The envelope's per-node sequence number.
    pub sequence: u64,
    #[schemars(schema_with = "const_portcullis")]
    pub module: &'static str,
    #[schemars(schema_with = "const_dataset")]
    pub dataset: &'static str,
    /// The event kind (`file_accessed`, ...), as `portcullis.kind`.
    pub provider: EventKind,
    pub kind: EcsKind,
    #[schemars(length(min = 1))]
    pub category: &'static [EcsCategory],
    #[serde(rename = "type")]
    #[schemars(length(min = 1))]
    pub ty: &'static [EcsType],
    #[schemars(length(min = 1))]
    pub action: &'static str,
    pub outcome: EcsOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
}

fn const_portcullis(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "const": "portcullis" })
}

fn const_dataset(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "const": "portcullis.events" })
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsAgent<'a> {
    #[serde(rename = "type")]
    #[schemars(schema_with = "const_portcullis")]
    pub ty: &'static str,
    pub version: &'a str,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsFile<'a> {
    /// The path; bytes that are not UTF-8 are written `\xNN` (see
    /// `FilePath::escaped`), and then `path_hex` holds the exact bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<HexBytes<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<NumText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<NumText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtime: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctime: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<EcsHash<'a>>,
}

impl<'a> EcsFile<'a> {
    fn path(path: &'a FilePath) -> Self {
        Self {
            path: Some(path.to_text()),
            name: Some(path.file_name_text()),
            path_hex: (!path.is_utf8()).then(|| HexBytes(path.as_bytes())),
            ..Self::default()
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsHash<'a> {
    pub sha256: Hex<'a, 32>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsProcess<'a> {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<EcsPid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<EcsNumId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<EcsNumId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

impl EcsProcess<'_> {
    fn pid(pid: u32) -> Self {
        Self {
            pid,
            parent: None,
            user: None,
            group: None,
            executable: None,
            name: None,
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsPid {
    pub pid: u32,
}

/// A numeric uid or gid, written as a string (`user.id`, `group.id`).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsNumId {
    pub id: NumText,
}

impl EcsNumId {
    fn of(id: u32) -> Self {
        Self {
            id: NumText(u64::from(id)),
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsContainer<'a> {
    pub id: &'a str,
    /// `docker`, `containerd`, `cri-o` or `podman`.
    #[schemars(schema_with = "runtime_schema")]
    pub runtime: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<EcsImage<'a>>,
    /// The container's labels (on `container_observed` events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels<'a>>,
}

impl<'a> EcsContainer<'a> {
    fn of(c: &'a ContainerRef) -> Self {
        Self {
            id: &c.id,
            runtime: c.runtime.as_str(),
            name: c.name.as_deref(),
            image: (c.image.is_some() || c.image_digest.is_some()).then(|| EcsImage {
                name: c.image.as_deref(),
                hash: c.image_digest.as_deref().map(|d| EcsImageHash { all: [d] }),
            }),
            labels: None,
        }
    }
}

/// `container.image.*`.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsImage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<EcsImageHash<'a>>,
}

/// `container.image.hash.all`: the image's digests.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsImageHash<'a> {
    pub all: [&'a str; 1],
}

/// Labels as a JSON object (key order kept).
#[derive(Debug)]
pub struct Labels<'a>(pub &'a [(String, String)]);

impl Serialize for Labels<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl JsonSchema for Labels<'_> {
    fn schema_name() -> Cow<'static, str> {
        "Labels".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": { "type": "string" },
            "maxProperties": 32
        })
    }
}

/// `orchestrator.*`: the Kubernetes pod of a container.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsOrchestrator<'a> {
    #[serde(rename = "type")]
    #[schemars(schema_with = "const_kubernetes")]
    pub ty: &'static str,
    pub namespace: &'a str,
    pub resource: EcsOrchestratorResource<'a>,
}

fn const_kubernetes(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "const": "kubernetes" })
}

/// `orchestrator.resource.*`: the pod.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsOrchestratorResource<'a> {
    #[serde(rename = "type")]
    #[schemars(schema_with = "const_pod")]
    pub ty: &'static str,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
}

fn const_pod(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "const": "pod" })
}

impl<'a> EcsOrchestrator<'a> {
    fn of(c: &'a ContainerRef) -> Option<Self> {
        c.pod.as_ref().map(|p| Self {
            ty: "kubernetes",
            namespace: &p.namespace,
            resource: EcsOrchestratorResource {
                ty: "pod",
                name: &p.name,
                id: p.uid.as_deref(),
            },
        })
    }
}

/// `portcullis.container`: what happened to the container
/// (`container_observed`).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsContainerChange<'a> {
    /// `protected`, `described`, `gone` or `unprotected`.
    #[schemars(schema_with = "change_schema")]
    pub change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `hook` or `scan`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "via_schema")]
    pub via: Option<&'static str>,
    /// The root overlay's device number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_device: Option<NumText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<PathList<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// What the OCI hook did while the agent was unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "hook_schema")]
    pub hook: Option<&'static str>,
    /// When it happened (may be long before the event was journaled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<Rfc3339>,
}

fn change_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "enum": ["protected", "described", "gone", "unprotected"] })
}

fn via_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "enum": ["hook", "scan"] })
}

fn hook_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "enum": ["allowed", "refused"] })
}

fn runtime_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "enum": ["docker", "containerd", "cri-o", "podman"] })
}

/// `rule.*`: the ruleset version, and for an infected verdict the first
/// matching rule with the ECS rule fields found in its metadata.
#[derive(Debug, Default, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsRule<'a> {
    pub version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// The rule's YARA namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ruleset: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<MetaJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<MetaJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<MetaJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<MetaJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<MetaJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<MetaJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<MetaJson<'a>>,
}

impl<'a> EcsRule<'a> {
    fn version(version: &'a RulesetVersion) -> Self {
        Self {
            version: &version.0,
            ..Self::default()
        }
    }

    /// Lifts the ECS rule fields out of a match's metadata (the last value
    /// of a repeated key wins).
    fn lift(&mut self, m: &'a RuleMatch) {
        self.name = Some(&m.rule);
        self.ruleset = Some(&m.namespace);
        for (k, v) in &m.metadata {
            let slot = match k.as_str() {
                "description" => &mut self.description,
                "author" => &mut self.author,
                "reference" => &mut self.reference,
                "category" => &mut self.category,
                "license" => &mut self.license,
                "uuid" => &mut self.uuid,
                "id" => &mut self.id,
                _ => continue,
            };
            *slot = Some(MetaJson(v));
        }
    }
}

/// `threat.*` of an infected verdict: `{"indicator":{"type":"file"},"enrichments":[]}`.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsThreat {
    pub indicator: EcsIndicator,
    pub enrichments: EmptyList,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsIndicator {
    #[serde(rename = "type")]
    #[schemars(schema_with = "const_file")]
    pub ty: &'static str,
}

fn const_file(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "const": "file" })
}

/// Always `[]`.
#[derive(Debug, Default)]
pub struct EmptyList;

impl Serialize for EmptyList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_seq(Some(0))?.end()
    }
}

impl JsonSchema for EmptyList {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "EmptyList".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "array", "maxItems": 0 })
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsError<'a> {
    pub message: &'a str,
}

// ------------------------------------------------------------ portcullis.*

/// Fields with no ECS home, under `portcullis.*`.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsPortcullis<'a> {
    /// The envelope's schema version.
    pub schema: u16,
    pub kind: EventKind,
    /// The file access this event is about (absent on the `file_accessed`
    /// itself, whose `event.id` it is): the key to the adjacent events of a
    /// detection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_id: Option<EventId>,
    /// Where the event was read from, when the exporter knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a SourcePosition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interceptor_mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected: Option<PathList<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_pending: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_files: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocking: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<EcsPolicy<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<EcsAction<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overflow_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<VerdictClass>,
    /// Every matching rule, in match order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_names: Option<RuleNames<'a>>,
    /// Every match with its tags and full metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<Matches<'a>>,
    /// The archive member the rules matched in (`dir/inner.zip!evil.sh`);
    /// `file.*` is the archive that was opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_member: Option<&'a str>,
    /// Why the object was not scanned, with the numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unprocessed: Option<EcsUnprocessed<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<EcsContainerChange<'a>>,
    /// The quarantine entry a restore or a deletion concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<EcsQuarantine<'a>>,
}

/// `portcullis.quarantine` (`quarantine_restored`, `quarantine_deleted`).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsQuarantine<'a> {
    pub id: &'a str,
    /// Where the object was when it was detected (`file.*` is where it was
    /// restored to, on a restore).
    pub original_path: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_path_hex: Option<HexBytes<'a>>,
    /// A restore replaced an existing file (`--force`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<bool>,
    /// Why an entry was deleted: `operator`, `max_age` or `max_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "deletion_schema")]
    pub deletion: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<EcsOperator>,
}

/// Who asked for a quarantine change.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsOperator {
    pub uid: u32,
    /// The user behind `sudo`, when the kernel audits logins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_uid: Option<u32>,
    pub pid: u32,
}

impl EcsOperator {
    fn of(o: &Operator) -> Self {
        Self {
            uid: o.uid,
            login_uid: o.login_uid,
            pid: o.pid,
        }
    }
}

impl<'a> EcsQuarantine<'a> {
    fn of(o: &'a QuarantinedObject) -> Self {
        Self {
            id: &o.id,
            original_path: o.original_path.to_text(),
            original_path_hex: (!o.original_path.is_utf8())
                .then(|| HexBytes(o.original_path.as_bytes())),
            replaced: None,
            deletion: None,
            operator: None,
        }
    }
}

fn deletion_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "enum": ["operator", "max_age", "max_size"] })
}

impl<'a> EcsPortcullis<'a> {
    fn new(env: &'a Envelope, source: Option<&'a SourcePosition>) -> Self {
        Self {
            schema: env.schema,
            kind: env.body.kind(),
            access_id: env.body.access_id(),
            source,
            interceptor_mode: None,
            protected: None,
            answered_pending: None,
            rules: None,
            rule_files: None,
            blocking: None,
            policy: None,
            decision: None,
            action: None,
            overflow_count: None,
            verdict: None,
            rule_names: None,
            matches: None,
            archive_member: None,
            unprocessed: None,
            container: None,
            quarantine: None,
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsPolicy<'a> {
    pub name: &'a str,
    pub mode: Mode,
}

/// `portcullis.action`: the step, its result, and what went wrong.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsAction<'a> {
    #[schemars(schema_with = "step_schema")]
    pub step: &'static str,
    #[schemars(schema_with = "result_schema")]
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_path: Option<Cow<'a, str>>,
}

fn step_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "enum": ["first", "second"] })
}

fn result_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "enum": ["success", "failure", "not_possible"] })
}

/// `portcullis.unprocessed`: one of `{size, limit}`, `{after_ms}`, `{rule}`,
/// `{archive_limit, value, member}`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EcsUnprocessed<'a> {
    TooLarge(EcsTooLarge),
    ScanTimeout(EcsScanTimeout),
    Excluded(EcsExcluded<'a>),
    ArchiveLimit(EcsArchiveLimit<'a>),
}

/// An archive walk that stopped at a limit.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsArchiveLimit<'a> {
    /// The limit's config field (`max_depth`, `max_ratio`, `timeout`, ...).
    pub archive_limit: &'a str,
    pub value: u64,
    /// Where the walk stopped.
    pub member: &'a str,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsTooLarge {
    pub size: u64,
    pub limit: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsScanTimeout {
    pub after_ms: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsExcluded<'a> {
    pub rule: &'a str,
}

/// Paths in their escaped text form.
#[derive(Debug)]
pub struct PathList<'a>(pub &'a [FilePath]);

impl Serialize for PathList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(FilePath::to_text))
    }
}

impl JsonSchema for PathList<'_> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "PathList".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "array", "items": { "type": "string" } })
    }
}

/// The rule name of each match.
#[derive(Debug)]
pub struct RuleNames<'a>(pub &'a [RuleMatch]);

impl Serialize for RuleNames<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|m| &m.rule))
    }
}

impl JsonSchema for RuleNames<'_> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "RuleNames".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "array", "items": { "type": "string" } })
    }
}

/// Every match in full.
#[derive(Debug)]
pub struct Matches<'a>(pub &'a [RuleMatch]);

/// One match of `portcullis.matches`.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EcsMatch<'a> {
    pub rule: &'a str,
    pub namespace: &'a str,
    pub tags: &'a [String],
    pub metadata: MetaMap<'a>,
}

impl<'a> From<&'a RuleMatch> for EcsMatch<'a> {
    fn from(m: &'a RuleMatch) -> Self {
        Self {
            rule: &m.rule,
            namespace: &m.namespace,
            tags: &m.tags,
            metadata: MetaMap(&m.metadata),
        }
    }
}

impl Serialize for Matches<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(EcsMatch::from))
    }
}

impl JsonSchema for Matches<'_> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Matches".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "array", "items": g.subschema_for::<EcsMatch<'static>>() })
    }
}

// -------------------------------------------------------------- mapping

fn step_str(step: ActionStep) -> &'static str {
    match step {
        ActionStep::First => "first",
        ActionStep::Second => "second",
    }
}

impl<'a> EcsDocument<'a> {
    /// The document of `env`; `source` becomes `portcullis.source`.
    pub fn new(env: &'a Envelope, source: Option<&'a SourcePosition>) -> Self {
        use EcsCategory as C;
        use EcsType as T;

        let kind = env.body.kind();
        let mut doc = EcsDocument {
            timestamp: Rfc3339(env.timestamp.0),
            ecs: EcsMeta {
                version: ECS_VERSION,
            },
            host: EcsHost {
                name: &env.node_id.0,
                hostname: &env.node_id.0,
            },
            trace: EcsTrace {
                id: Hex(&env.trace.trace_id),
            },
            span: EcsSpan {
                id: Hex(&env.trace.span_id),
            },
            event: EcsEvent {
                id: &env.event_id,
                sequence: env.seq,
                module: "portcullis",
                dataset: "portcullis.events",
                provider: kind,
                kind: EcsKind::Event,
                category: &[C::Host],
                ty: &[T::Info],
                action: kind.as_str(),
                outcome: EcsOutcome::Unknown,
                reason: None,
                duration: None,
            },
            agent: None,
            file: None,
            process: None,
            user: None,
            group: None,
            container: None,
            orchestrator: None,
            rule: None,
            threat: None,
            error: None,
            portcullis: EcsPortcullis::new(env, source),
        };
        let ev = &mut doc.event;
        let pc = &mut doc.portcullis;

        match &env.body {
            EventBody::AgentStarted(e) => {
                (ev.category, ev.ty) = (&[C::Host, C::Process], &[T::Start]);
                (ev.action, ev.outcome) = ("agent-started", EcsOutcome::Success);
                doc.agent = Some(EcsAgent {
                    ty: "portcullis",
                    version: &e.version,
                });
                doc.process = Some(EcsProcess::pid(e.pid));
                pc.interceptor_mode = Some(e.interceptor_mode);
                pc.protected = Some(PathList(&e.protected));
            }
            EventBody::AgentStopped(e) => {
                (ev.category, ev.ty) = (&[C::Host, C::Process], &[T::End]);
                (ev.action, ev.outcome) = ("agent-stopped", EcsOutcome::Success);
                ev.reason = e.signal.as_deref();
                pc.answered_pending = Some(e.answered_pending);
            }
            EventBody::RulesLoaded(e) => {
                (ev.category, ev.ty) = (&[C::Configuration], &[T::Change]);
                (ev.action, ev.outcome) = ("rules-loaded", EcsOutcome::Success);
                doc.rule = Some(EcsRule::version(&e.ruleset));
                pc.rules = Some(e.rules);
                pc.rule_files = Some(&e.files);
            }
            EventBody::RulesRejected(e) => {
                (ev.category, ev.ty) = (&[C::Configuration], &[T::Change]);
                (ev.action, ev.outcome) = ("rules-rejected", EcsOutcome::Failure);
                ev.reason = Some(&e.error);
                doc.rule = Some(EcsRule::version(&e.kept));
            }
            EventBody::FileAccessed(e) => {
                (ev.category, ev.ty) = (&[C::File], &[T::Access]);
                ev.action = e.kind.as_str();
                let f = &e.file;
                doc.file = Some(EcsFile {
                    inode: Some(NumText(f.inode)),
                    device: Some(NumText(f.device)),
                    size: Some(f.size),
                    mtime: Some(Rfc3339(f.mtime_ns)),
                    ctime: Some(Rfc3339(f.ctime_ns)),
                    ..EcsFile::path(&f.path)
                });
                let p = &e.process;
                doc.process = Some(EcsProcess {
                    pid: p.pid,
                    parent: Some(EcsPid { pid: p.ppid }),
                    user: Some(EcsNumId::of(p.uid)),
                    group: Some(EcsNumId::of(p.gid)),
                    executable: p.executable.as_ref().map(FilePath::to_text),
                    name: p.command.as_deref(),
                });
                doc.user = Some(EcsNumId::of(p.uid));
                doc.group = Some(EcsNumId::of(p.gid));
                doc.container = e.container.as_ref().map(EcsContainer::of);
                doc.orchestrator = e.container.as_ref().and_then(EcsOrchestrator::of);
                pc.interceptor_mode = Some(e.interceptor_mode);
                pc.blocking = Some(e.blocking);
                pc.policy = e.policy.as_ref().map(|p| EcsPolicy {
                    name: &p.name,
                    mode: p.mode,
                });
            }
            EventBody::ScanRequested(e) => {
                (ev.category, ev.ty) = (&[C::File], &[T::Info]);
                ev.action = "scan-requested";
                doc.file = Some(EcsFile {
                    size: Some(e.size),
                    ..EcsFile::default()
                });
                doc.rule = Some(EcsRule::version(&e.ruleset));
            }
            EventBody::VerdictIssued(e) => {
                ev.action = "scan";
                ev.duration = Some(e.scan_duration_us.saturating_mul(1000));
                doc.file = Some(EcsFile {
                    size: Some(e.size),
                    hash: e.sha256.as_ref().map(|h| EcsHash { sha256: Hex(h) }),
                    ..EcsFile::path(&e.path)
                });
                pc.verdict = Some(e.verdict.class());
                match &e.verdict {
                    Verdict::Clean => {
                        (ev.category, ev.ty) = (&[C::File], &[T::Info]);
                        ev.outcome = EcsOutcome::Success;
                        doc.rule = Some(EcsRule::version(&e.ruleset));
                    }
                    Verdict::Infected { matches } | Verdict::InfectedMember { matches, .. } => {
                        pc.archive_member = e.verdict.member();
                        ev.kind = EcsKind::Alert;
                        ev.category = &[C::Malware, C::IntrusionDetection, C::File];
                        ev.ty = &[T::Info, T::Indicator];
                        ev.outcome = EcsOutcome::Success;
                        let mut rule = EcsRule::version(&e.ruleset);
                        if let Some(first) = matches.first() {
                            rule.lift(first);
                        }
                        doc.rule = Some(rule);
                        doc.threat = Some(EcsThreat {
                            indicator: EcsIndicator { ty: "file" },
                            enrichments: EmptyList,
                        });
                        pc.rule_names = Some(RuleNames(matches));
                        pc.matches = Some(Matches(matches));
                    }
                    Verdict::Skipped { reason } => {
                        (ev.category, ev.ty) = (&[C::File], &[T::Info]);
                        ev.reason = Some(reason.as_str());
                        pc.unprocessed = Some(match reason {
                            SkipReason::TooLarge { size, limit } => {
                                EcsUnprocessed::TooLarge(EcsTooLarge {
                                    size: *size,
                                    limit: *limit,
                                })
                            }
                            SkipReason::ScanTimeout { after_ms } => {
                                EcsUnprocessed::ScanTimeout(EcsScanTimeout {
                                    after_ms: *after_ms,
                                })
                            }
                            SkipReason::Excluded { rule } => {
                                EcsUnprocessed::Excluded(EcsExcluded { rule })
                            }
                            SkipReason::ArchiveLimit {
                                limit,
                                value,
                                member,
                            } => EcsUnprocessed::ArchiveLimit(EcsArchiveLimit {
                                archive_limit: limit,
                                value: *value,
                                member,
                            }),
                        });
                    }
                    Verdict::Error { message } => {
                        (ev.category, ev.ty) = (&[C::File], &[T::Info]);
                        ev.outcome = EcsOutcome::Failure;
                        doc.error = Some(EcsError { message });
                    }
                }
            }
            EventBody::DecisionMade(e) => {
                ev.category = &[C::File];
                (ev.ty, ev.outcome) = match e.decision {
                    Decision::Allow => (&[T::Access, T::Allowed], EcsOutcome::Success),
                    Decision::Deny => (&[T::Access, T::Denied], EcsOutcome::Failure),
                };
                ev.action = e.decision.as_str();
                ev.reason = Some(e.reason.as_str());
                ev.duration = Some(e.latency_us.saturating_mul(1000));
                pc.decision = Some(e.decision);
            }
            EventBody::ActionTaken(e) => {
                ev.category = &[C::Malware, C::File];
                ev.ty = match e.action {
                    ActionKind::Remove => &[T::Deletion],
                    ActionKind::Terminate => &[T::End],
                    ActionKind::Block => &[T::Denied],
                    ActionKind::Disinfect => &[T::Change],
                };
                ev.action = e.action.as_str();
                ev.outcome = match e.outcome {
                    ActionOutcome::Succeeded => EcsOutcome::Success,
                    _ => EcsOutcome::Failure,
                };
                doc.file = Some(EcsFile::path(&e.path));
                doc.process = Some(EcsProcess::pid(e.pid));
                pc.action = Some(EcsAction {
                    step: step_str(e.step),
                    result: e.outcome.as_str(),
                    error: match &e.outcome {
                        ActionOutcome::Failed { error } => Some(error),
                        ActionOutcome::NotPossible { why } => Some(why),
                        ActionOutcome::Succeeded => None,
                    },
                    quarantine_id: e.quarantine.as_ref().map(|q| q.id.as_str()),
                    quarantine_path: e.quarantine.as_ref().map(|q| q.stored_at.to_text()),
                });
            }
            EventBody::QuarantineRestored(e) => {
                (ev.category, ev.ty) = (&[C::File], &[T::Creation]);
                (ev.action, ev.outcome) = ("quarantine-restored", EcsOutcome::Success);
                doc.file = Some(EcsFile {
                    size: Some(e.entry.size),
                    hash: e.entry.sha256.as_ref().map(|h| EcsHash { sha256: Hex(h) }),
                    ..EcsFile::path(&e.restored_to)
                });
                doc.container = e.entry.container.as_ref().map(EcsContainer::of);
                doc.orchestrator = e.entry.container.as_ref().and_then(EcsOrchestrator::of);
                doc.user = e.operator.map(|o| EcsNumId::of(o.uid));
                pc.quarantine = Some(EcsQuarantine {
                    replaced: Some(e.replaced),
                    deletion: None,
                    operator: e.operator.as_ref().map(EcsOperator::of),
                    ..EcsQuarantine::of(&e.entry)
                });
            }
            EventBody::QuarantineDeleted(e) => {
                (ev.category, ev.ty) = (&[C::File], &[T::Deletion]);
                (ev.action, ev.outcome) = ("quarantine-deleted", EcsOutcome::Success);
                ev.reason = Some(e.reason.as_str());
                doc.file = Some(EcsFile {
                    size: Some(e.entry.size),
                    hash: e.entry.sha256.as_ref().map(|h| EcsHash { sha256: Hex(h) }),
                    ..EcsFile::path(&e.entry.original_path)
                });
                doc.container = e.entry.container.as_ref().map(EcsContainer::of);
                doc.orchestrator = e.entry.container.as_ref().and_then(EcsOrchestrator::of);
                doc.user = e.operator.map(|o| EcsNumId::of(o.uid));
                pc.quarantine = Some(EcsQuarantine {
                    deletion: Some(e.reason.as_str()),
                    operator: e.operator.as_ref().map(EcsOperator::of),
                    ..EcsQuarantine::of(&e.entry)
                });
            }
            EventBody::QueueOverflowed(e) => {
                (ev.category, ev.ty) = (&[C::Host], &[T::Info]);
                (ev.action, ev.outcome) = ("queue-overflowed", EcsOutcome::Failure);
                ev.reason = Some(e.source.as_str());
                pc.overflow_count = Some(e.count);
            }
            EventBody::ContainerObserved(e) => {
                let mut container = EcsContainer::of(&e.container);
                container.labels = (!e.labels.is_empty()).then_some(Labels(&e.labels));
                doc.container = Some(container);
                doc.orchestrator = EcsOrchestrator::of(&e.container);
                let mut change = EcsContainerChange {
                    change: "described",
                    pid: None,
                    via: None,
                    root_device: None,
                    volumes: None,
                    reason: None,
                    hook: None,
                    at: None,
                };
                ev.category = &[C::Host];
                ev.action = match &e.change {
                    ContainerChange::Protected { .. } => "container-protected",
                    ContainerChange::Described => "container-described",
                    ContainerChange::Gone => "container-gone",
                    ContainerChange::Unprotected { .. } => "container-unprotected",
                };
                match &e.change {
                    ContainerChange::Protected {
                        pid,
                        via,
                        root_device,
                        volumes,
                    } => {
                        (ev.ty, ev.outcome) = (&[T::Change], EcsOutcome::Success);
                        change.change = "protected";
                        change.pid = Some(*pid);
                        change.via = Some(match via {
                            ContainerDiscovery::Hook => "hook",
                            ContainerDiscovery::Scan => "scan",
                        });
                        change.root_device = Some(NumText(*root_device));
                        change.volumes = Some(PathList(volumes));
                        doc.process = Some(EcsProcess::pid(*pid));
                    }
                    ContainerChange::Described => {
                        (ev.ty, ev.outcome) = (&[T::Info], EcsOutcome::Success);
                    }
                    ContainerChange::Gone => {
                        (ev.ty, ev.outcome) = (&[T::End], EcsOutcome::Success);
                        change.change = "gone";
                    }
                    ContainerChange::Unprotected {
                        pid,
                        reason,
                        hook,
                        at,
                    } => {
                        (ev.ty, ev.outcome) = (&[T::Info], EcsOutcome::Failure);
                        change.change = "unprotected";
                        change.pid = *pid;
                        change.reason = Some(reason);
                        ev.reason = Some(reason);
                        change.hook = hook.map(|h| match h {
                            HookOutcome::Allowed => "allowed",
                            HookOutcome::Refused => "refused",
                        });
                        change.at = Some(Rfc3339(at.0));
                        doc.process = pid.map(EcsProcess::pid);
                    }
                }
                pc.container = Some(change);
            }
        }
        doc
    }
}
