//! JSON in the Open Cybersecurity Schema Framework, version 1.3.0.
//!
//! Only events with an honest OCSF home are mapped; [`to_ocsf`] returns
//! `None` for the rest (they stay available as ECS and CEF).
//!
//! | event | OCSF class | activity | notes |
//! |---|---|---|---|
//! | `FileAccessed` open | File System Activity (1001) | 14 Open | `host` profile |
//! | `FileAccessed` exec | File System Activity (1001) | 99 Other, `activity_name` `Exec` | 1001 has no exec activity; Process Activity's Launch would need the new process, which an open-for-exec does not have yet |
//! | `FileAccessed` close_write | File System Activity (1001) | 3 Update | the file was written |
//! | `ActionTaken` block | File System Activity (1001) | 14 Open | `security_control`: action Denied, disposition Blocked |
//! | `ActionTaken` remove | File System Activity (1001) | 4 Delete | disposition Quarantined (with a quarantine copy) or Deleted |
//! | `ActionTaken` terminate | File System Activity (1001) | 99 Other, `Terminate` | disposition 99 Other, `Terminated` |
//! | `ActionTaken` disinfect | File System Activity (1001) | 99 Other, `Disinfect` | disposition Uncorrected |
//! | `VerdictIssued` infected | Detection Finding (2004) | 1 Create | status New, confidence High, severity High, disposition Detected |
//! | anything else | — | — | `None` |
//!
//! A failed action has status Failure and disposition Error.
//! `DecisionMade` is not mapped: its body names neither the file nor the
//! process, and both are required in File System Activity; a consumer
//! joins it (ECS/CEF) on the access id, which every OCSF event carries as
//! `metadata.correlation_uid`. Lifecycle, scan requests, clean, skipped and
//! failed verdicts, and queue overflows have no OCSF class worth the
//! noise. Quarantine restores and deletions are an operator's work on the
//! agent's store, not a file system activity of a workload: ECS and CEF
//! carry them.
//!
//! Everything portcullis knows that OCSF has no attribute for goes to
//! `unmapped` ([`OcsfUnmapped`]), including the [`SourcePosition`] as
//! `unmapped.source`. Paths that are not UTF-8 are written escaped
//! (`FilePath::escaped`), their exact bytes in `unmapped.path_hex`.

use crate::render::display_as_string;
use std::borrow::Cow;
use std::fmt;
use std::io;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::ecs::{EcsPolicy, Matches};
use crate::envelope::{Envelope, EventId};
use crate::events::*;
use crate::path::FilePath;
use crate::render::{Hex, HexBytes, NumText, Rfc3339};
use crate::source::SourcePosition;

/// The OCSF schema version the output follows (`metadata.version`).
pub const OCSF_VERSION: &str = "1.3.0";

/// `metadata.product.version`: the schemas crate shares the workspace
/// version with the agent that writes the events.
pub const PRODUCT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The OCSF event of `env`, if it has one (see the module table).
pub fn to_ocsf<'a>(env: &'a Envelope, source: Option<&'a SourcePosition>) -> Option<OcsfEvent<'a>> {
    OcsfEvent::new(env, source)
}

/// The OCSF event as a JSON value (tests, tools).
pub fn to_ocsf_value(env: &Envelope) -> Option<Value> {
    to_ocsf(env, None).map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
}

/// Writes the OCSF event of `env` as one line of JSON, **without** a
/// trailing newline. Returns `false`, writing nothing, when the event has
/// no OCSF mapping.
pub fn write_ocsf_line(
    env: &Envelope,
    source: Option<&SourcePosition>,
    w: &mut impl io::Write,
) -> io::Result<bool> {
    match to_ocsf(env, source) {
        Some(event) => {
            serde_json::to_writer(w, &event).map_err(io::Error::from)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

// ---------------------------------------------------------- enumerations

/// An OCSF integer enumeration: its id and its caption.
pub trait OcsfEnum: Copy + 'static {
    const ALL: &'static [Self];
    fn id(self) -> u32;
    fn caption(self) -> &'static str;
}

macro_rules! ocsf_enum {
    ($(#[$m:meta])* $name:ident { $($var:ident = $val:literal => $cap:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($var = $val),+ }

        impl OcsfEnum for $name {
            const ALL: &'static [Self] = &[$(Self::$var),+];
            fn id(self) -> u32 {
                self as u32
            }
            fn caption(self) -> &'static str {
                match self { $(Self::$var => $cap),+ }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u32(self.id())
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "integer",
                    "oneOf": [$({ "const": $val, "title": $cap }),+],
                })
            }
        }
    };
}

ocsf_enum!(
    /// `activity_id` of File System Activity (the values used here).
    FileActivityId {
        Update = 3 => "Update",
        Delete = 4 => "Delete",
        Open = 14 => "Open",
        Other = 99 => "Other",
    }
);

ocsf_enum!(
    /// `activity_id` of a Finding.
    FindingActivityId { Create = 1 => "Create" }
);

ocsf_enum!(
    /// `severity_id`.
    SeverityId {
        Unknown = 0 => "Unknown",
        Informational = 1 => "Informational",
        Low = 2 => "Low",
        Medium = 3 => "Medium",
        High = 4 => "High",
        Critical = 5 => "Critical",
        Fatal = 6 => "Fatal",
    }
);

ocsf_enum!(
    /// `status_id` of an activity event.
    StatusId { Success = 1 => "Success", Failure = 2 => "Failure" }
);

ocsf_enum!(
    /// `status_id` of a Finding.
    FindingStatusId { New = 1 => "New" }
);

ocsf_enum!(
    /// `confidence_id` of a Finding.
    ConfidenceId { Low = 1 => "Low", Medium = 2 => "Medium", High = 3 => "High" }
);

ocsf_enum!(
    /// `action_id` (security control profile).
    ActionId { Unknown = 0 => "Unknown", Allowed = 1 => "Allowed", Denied = 2 => "Denied" }
);

ocsf_enum!(
    /// `disposition_id` (security control profile; the values used here).
    DispositionId {
        Blocked = 2 => "Blocked",
        Quarantined = 3 => "Quarantined",
        Deleted = 5 => "Deleted",
        Uncorrected = 13 => "Uncorrected",
        Detected = 15 => "Detected",
        Error = 27 => "Error",
        Other = 99 => "Other",
    }
);

ocsf_enum!(
    /// `file.type_id`.
    FileTypeId { RegularFile = 1 => "Regular File" }
);

ocsf_enum!(
    /// `fingerprint.algorithm_id`.
    HashAlgorithmId { Sha256 = 3 => "SHA-256" }
);

ocsf_enum!(
    /// `analytic.type_id`.
    AnalyticTypeId { Rule = 1 => "Rule" }
);

ocsf_enum!(
    /// `device.type_id`: a node is a server.
    DeviceTypeId { Server = 1 => "Server" }
);

ocsf_enum!(
    /// `malware.classification_ids`: a YARA match does not say.
    MalwareClassificationId { Unknown = 0 => "Unknown" }
);

/// An integer that is always `N` (`class_uid`, `category_uid`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntConst<const N: u32>;

impl<const N: u32> Serialize for IntConst<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(N)
    }
}

impl<const N: u32> JsonSchema for IntConst<N> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Const{N}").into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "const": N })
    }
}

/// `class_uid * 100 + activity_id`, as OCSF defines `type_uid`.
pub fn type_uid(class_uid: u32, activity_id: u32) -> u32 {
    class_uid * 100 + activity_id
}

/// `type_name`: `"<class name>: <activity caption>"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeName {
    pub class: &'static str,
    pub activity: &'static str,
}

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.activity)
    }
}

display_as_string!(TypeName, "^[A-Za-z ]+: [A-Za-z ]+$");

fn captions<T: OcsfEnum>(_: &mut SchemaGenerator) -> Schema {
    let all: Vec<&str> = T::ALL.iter().map(|v| v.caption()).collect();
    json_schema!({ "type": "string", "enum": all })
}

fn type_uids<T: OcsfEnum, const CLASS: u32>(_: &mut SchemaGenerator) -> Schema {
    let all: Vec<u32> = T::ALL.iter().map(|v| type_uid(CLASS, v.id())).collect();
    json_schema!({ "type": "integer", "enum": all })
}

macro_rules! const_str_schema {
    ($($f:ident = $v:expr;)+) => {$(
        fn $f(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "const": $v })
        }
    )+};
}

const_str_schema! {
    const_system_activity = SYSTEM_ACTIVITY;
    const_file_system_activity = FILE_SYSTEM_ACTIVITY;
    const_findings = FINDINGS;
    const_detection_finding = DETECTION_FINDING;
    const_ocsf_version = OCSF_VERSION;
    const_portcullis = "portcullis";
    const_log_name = LOG_NAME;
    const_malware_types = ["Malware"];
    const_sha256 = "SHA-256";
    const_rule = "Rule";
    const_server = "Server";
    const_regular_file = "Regular File";
    const_unknown_ids = [0];
}

const SYSTEM_ACTIVITY: &str = "System Activity";
const FILE_SYSTEM_ACTIVITY: &str = "File System Activity";
const FINDINGS: &str = "Findings";
const DETECTION_FINDING: &str = "Detection Finding";
const LOG_NAME: &str = "portcullis.events";

// ---------------------------------------------------------------- events

/// An OCSF event: one of the two classes portcullis writes. The
/// `class_uid` tells them apart.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "OcsfEvent")]
pub enum OcsfEvent<'a> {
    FileActivity(FileActivity<'a>),
    DetectionFinding(DetectionFinding<'a>),
}

/// File System Activity (class 1001, category 1 System Activity).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "OcsfFileActivity")]
pub struct FileActivity<'a> {
    pub activity_id: FileActivityId,
    /// The caption of `activity_id`, or the portcullis label (`Exec`,
    /// `Terminate`, `Disinfect`) when it is 99 Other.
    #[schemars(length(min = 1))]
    pub activity_name: &'static str,
    pub category_uid: IntConst<1>,
    #[schemars(schema_with = "const_system_activity")]
    pub category_name: &'static str,
    pub class_uid: IntConst<1001>,
    #[schemars(schema_with = "const_file_system_activity")]
    pub class_name: &'static str,
    #[schemars(schema_with = "type_uids::<FileActivityId, 1001>")]
    pub type_uid: u32,
    pub type_name: TypeName,
    /// Milliseconds since the epoch.
    pub time: i64,
    pub severity_id: SeverityId,
    #[schemars(schema_with = "captions::<SeverityId>")]
    pub severity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_id: Option<StatusId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "captions::<StatusId>")]
    pub status: Option<&'static str>,
    /// Why an action failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_id: Option<ActionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "captions::<ActionId>")]
    pub action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition_id: Option<DispositionId>,
    /// The caption of `disposition_id`, or `Terminated` when it is 99.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<&'static str>,
    pub metadata: OcsfMetadata<'a>,
    pub device: OcsfDevice<'a>,
    pub actor: OcsfActor<'a>,
    pub file: OcsfFile<'a>,
    pub unmapped: OcsfUnmapped<'a>,
}

/// Detection Finding (class 2004, category 2 Findings).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "OcsfDetectionFinding")]
pub struct DetectionFinding<'a> {
    pub activity_id: FindingActivityId,
    #[schemars(schema_with = "captions::<FindingActivityId>")]
    pub activity_name: &'static str,
    pub category_uid: IntConst<2>,
    #[schemars(schema_with = "const_findings")]
    pub category_name: &'static str,
    pub class_uid: IntConst<2004>,
    #[schemars(schema_with = "const_detection_finding")]
    pub class_name: &'static str,
    #[schemars(schema_with = "type_uids::<FindingActivityId, 2004>")]
    pub type_uid: u32,
    pub type_name: TypeName,
    /// Milliseconds since the epoch.
    pub time: i64,
    pub severity_id: SeverityId,
    #[schemars(schema_with = "captions::<SeverityId>")]
    pub severity: &'static str,
    pub status_id: FindingStatusId,
    #[schemars(schema_with = "captions::<FindingStatusId>")]
    pub status: &'static str,
    pub confidence_id: ConfidenceId,
    #[schemars(schema_with = "captions::<ConfidenceId>")]
    pub confidence: &'static str,
    pub action_id: ActionId,
    #[schemars(schema_with = "captions::<ActionId>")]
    pub action: &'static str,
    pub disposition_id: DispositionId,
    #[schemars(schema_with = "captions::<DispositionId>")]
    pub disposition: &'static str,
    /// `<rule> detected in <path>`.
    pub message: FindingMessage<'a>,
    pub metadata: OcsfMetadata<'a>,
    pub device: OcsfDevice<'a>,
    pub finding_info: FindingInfo<'a>,
    #[schemars(length(min = 1, max = 1))]
    pub evidences: [OcsfEvidence<'a>; 1],
    /// One entry per matching rule; absent when the scanner reported no
    /// rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malware: Option<MalwareList<'a>>,
    pub unmapped: OcsfUnmapped<'a>,
}

// --------------------------------------------------------------- objects

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfMetadata<'a> {
    #[schemars(schema_with = "const_ocsf_version")]
    pub version: &'static str,
    /// The envelope's event id.
    pub uid: &'a EventId,
    pub product: OcsfProduct,
    /// The OCSF profiles applied: `host`, and `security_control` on
    /// detections and actions.
    pub profiles: &'static [&'static str],
    #[schemars(schema_with = "const_log_name")]
    pub log_name: &'static str,
    /// The envelope's per-node sequence number.
    pub sequence: u64,
    /// The event time with its full nanosecond precision (`time` has
    /// milliseconds).
    pub original_time: Rfc3339,
    /// The file access this event is about (the event's own id for a file
    /// access): join on it to see a detection with the events around it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_uid: Option<EventId>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfProduct {
    #[schemars(schema_with = "const_portcullis")]
    pub name: &'static str,
    #[schemars(schema_with = "const_portcullis")]
    pub vendor_name: &'static str,
    pub version: &'static str,
}

/// The node the event was recorded on.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfDevice<'a> {
    pub hostname: &'a str,
    pub type_id: DeviceTypeId,
    #[serde(rename = "type")]
    #[schemars(schema_with = "const_server")]
    pub ty: &'static str,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfActor<'a> {
    pub process: OcsfProcess<'a>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfProcess<'a> {
    pub pid: u32,
    /// The process name (`comm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// The executable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<OcsfFile<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_process: Option<OcsfParent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<OcsfUid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<OcsfUid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<OcsfContainer<'a>>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfParent {
    pub pid: u32,
}

/// A user or group by numeric id (OCSF `uid` is a string).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfUid {
    pub uid: NumText,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfContainer<'a> {
    pub uid: &'a str,
    /// `docker`, `containerd`, `cri-o` or `podman`.
    pub runtime: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// Present when the image's digest is known (OCSF requires `image.uid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<OcsfImage<'a>>,
    /// `kubernetes` for a container of a pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<&'static str>,
    /// The pod's uid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uuid: Option<&'a str>,
}

impl<'a> OcsfContainer<'a> {
    fn of(c: &'a ContainerRef) -> Self {
        Self {
            uid: &c.id,
            runtime: c.runtime.as_str(),
            name: c.name.as_deref(),
            image: c.image_digest.as_deref().map(|uid| OcsfImage {
                uid,
                name: c.image.as_deref(),
            }),
            orchestrator: c.pod.as_ref().map(|_| "kubernetes"),
            pod_uuid: c.pod.as_ref().and_then(|p| p.uid.as_deref()),
        }
    }
}

/// OCSF `image`: the container's image.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfImage<'a> {
    /// The image digest.
    pub uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

/// `<device>:<inode>`, the file's identity on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevIno {
    pub device: u64,
    pub inode: u64,
}

impl fmt::Display for DevIno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.device, self.inode)
    }
}

display_as_string!(DevIno, "^[0-9]+:[0-9]+$");

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfFile<'a> {
    /// The last path component (escaped like `path`).
    pub name: Cow<'a, str>,
    /// The path; bytes that are not UTF-8 are written `\xNN`.
    pub path: Cow<'a, str>,
    pub type_id: FileTypeId,
    #[serde(rename = "type")]
    #[schemars(schema_with = "const_regular_file")]
    pub ty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Milliseconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<DevIno>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1))]
    pub hashes: Option<[OcsfFingerprint<'a>; 1]>,
}

impl<'a> OcsfFile<'a> {
    fn path(path: &'a FilePath) -> Self {
        Self {
            name: path.file_name_text(),
            path: path.to_text(),
            type_id: FileTypeId::RegularFile,
            ty: FileTypeId::RegularFile.caption(),
            size: None,
            modified_time: None,
            uid: None,
            hashes: None,
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfFingerprint<'a> {
    pub algorithm_id: HashAlgorithmId,
    #[schemars(schema_with = "const_sha256")]
    pub algorithm: &'static str,
    pub value: Hex<'a, 32>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FindingInfo<'a> {
    /// The verdict's event id.
    pub uid: &'a EventId,
    /// The first matching rule (or `Malware detected` without one).
    pub title: &'a str,
    /// The first rule's `description` metadata, when it is a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desc: Option<&'a str>,
    #[schemars(schema_with = "const_malware_types")]
    pub types: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analytic: Option<OcsfAnalytic<'a>>,
    /// Milliseconds since the epoch.
    pub created_time: i64,
}

/// The YARA rule that fired.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfAnalytic<'a> {
    pub name: &'a str,
    pub type_id: AnalyticTypeId,
    #[serde(rename = "type")]
    #[schemars(schema_with = "const_rule")]
    pub ty: &'static str,
    /// `<namespace>.<rule>`.
    pub uid: QualifiedRule<'a>,
    /// The ruleset version.
    pub version: &'a str,
}

/// `<namespace>.<rule>`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QualifiedRule<'a>(pub &'a RuleMatch);

impl fmt::Display for QualifiedRule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0.namespace, self.0.rule)
    }
}

display_as_string!(QualifiedRule<'_>, "\\.");

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfEvidence<'a> {
    pub file: OcsfFile<'a>,
}

/// `malware`: one entry per match.
#[derive(Debug)]
pub struct MalwareList<'a> {
    pub matches: &'a [RuleMatch],
    pub path: Cow<'a, str>,
}

/// One `malware` entry.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfMalware<'a> {
    /// The rule name.
    pub name: &'a str,
    /// `<namespace>.<rule>`.
    pub uid: QualifiedRule<'a>,
    #[schemars(schema_with = "const_unknown_ids")]
    pub classification_ids: [MalwareClassificationId; 1],
    pub path: &'a str,
    #[schemars(schema_with = "const_portcullis")]
    pub provider: &'static str,
}

impl Serialize for MalwareList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.matches.len()))?;
        for m in self.matches {
            seq.serialize_element(&OcsfMalware {
                name: &m.rule,
                uid: QualifiedRule(m),
                classification_ids: [MalwareClassificationId::Unknown],
                path: &self.path,
                provider: "portcullis",
            })?;
        }
        seq.end()
    }
}

impl JsonSchema for MalwareList<'_> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "MalwareList".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "array",
            "minItems": 1,
            "items": g.subschema_for::<OcsfMalware<'static>>(),
        })
    }
}

/// `<rule> detected in <path>`.
#[derive(Debug)]
pub struct FindingMessage<'a> {
    pub rule: &'a str,
    pub path: Cow<'a, str>,
}

impl fmt::Display for FindingMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} detected in {}", self.rule, self.path)
    }
}

display_as_string!(FindingMessage<'_>, " detected in ");

/// portcullis fields with no OCSF attribute.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OcsfUnmapped<'a> {
    pub kind: EventKind,
    /// The envelope's schema version.
    pub schema: u16,
    /// Where the event was read from, when the exporter knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a SourcePosition>,
    pub trace_id: Hex<'a, 16>,
    pub span_id: Hex<'a, 8>,
    /// `open`, `exec` or `close_write`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "access_kinds")]
    pub access: Option<&'static str>,
    /// The exact bytes of a path that is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<HexBytes<'a>>,
    /// The file's status change time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctime: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interceptor_mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<EcsPolicy<'a>>,
    /// Whether the opener waited on the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocking: Option<bool>,
    /// `block`, `remove`, `terminate` or `disinfect`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "action_kinds")]
    pub action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "steps")]
    pub action_step: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_path: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ruleset: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_duration_us: Option<u64>,
    /// Every match with its tags and full metadata (as in ECS
    /// `portcullis.matches`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<Matches<'a>>,
    /// The archive member the rules matched in (`dir/inner.zip!evil.sh`);
    /// the finding's file is the archive that was opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_member: Option<&'a str>,
}

fn access_kinds(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "enum": ["open", "exec", "close_write"] })
}

fn action_kinds(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "enum": ["block", "remove", "terminate", "disinfect"] })
}

fn steps(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "enum": ["first", "second"] })
}

// -------------------------------------------------------------- mapping

const HOST: &[&str] = &["host"];
const HOST_SECURITY_CONTROL: &[&str] = &["host", "security_control"];

fn ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

impl<'a> OcsfMetadata<'a> {
    fn new(env: &'a Envelope, profiles: &'static [&'static str]) -> Self {
        Self {
            version: OCSF_VERSION,
            uid: &env.event_id,
            product: OcsfProduct {
                name: "portcullis",
                vendor_name: "portcullis",
                version: PRODUCT_VERSION,
            },
            profiles,
            log_name: LOG_NAME,
            sequence: env.seq,
            original_time: Rfc3339(env.timestamp.0),
            correlation_uid: env.access_id(),
        }
    }
}

impl<'a> OcsfDevice<'a> {
    fn new(env: &'a Envelope) -> Self {
        Self {
            hostname: &env.node_id.0,
            type_id: DeviceTypeId::Server,
            ty: DeviceTypeId::Server.caption(),
        }
    }
}

impl<'a> OcsfUnmapped<'a> {
    fn new(env: &'a Envelope, source: Option<&'a SourcePosition>) -> Self {
        Self {
            kind: env.body.kind(),
            schema: env.schema,
            source,
            trace_id: Hex(&env.trace.trace_id),
            span_id: Hex(&env.trace.span_id),
            access: None,
            path_hex: None,
            ctime: None,
            interceptor_mode: None,
            policy: None,
            blocking: None,
            action: None,
            action_step: None,
            quarantine_id: None,
            quarantine_path: None,
            ruleset: None,
            scan_duration_us: None,
            matches: None,
            archive_member: None,
        }
    }
}

fn path_hex(path: &FilePath) -> Option<HexBytes<'_>> {
    (!path.is_utf8()).then(|| HexBytes(path.as_bytes()))
}

impl<'a> FileActivity<'a> {
    /// A File System Activity with everything but the security control
    /// fields set.
    fn new(
        env: &'a Envelope,
        source: Option<&'a SourcePosition>,
        (activity_id, activity_name): (FileActivityId, &'static str),
        severity_id: SeverityId,
        profiles: &'static [&'static str],
        actor: OcsfActor<'a>,
        file: OcsfFile<'a>,
    ) -> Self {
        Self {
            activity_id,
            activity_name,
            category_uid: IntConst,
            category_name: SYSTEM_ACTIVITY,
            class_uid: IntConst,
            class_name: FILE_SYSTEM_ACTIVITY,
            type_uid: type_uid(1001, activity_id.id()),
            type_name: TypeName {
                class: FILE_SYSTEM_ACTIVITY,
                activity: activity_id.caption(),
            },
            time: ms(env.timestamp.0),
            severity_id,
            severity: severity_id.caption(),
            status_id: None,
            status: None,
            status_detail: None,
            action_id: None,
            action: None,
            disposition_id: None,
            disposition: None,
            metadata: OcsfMetadata::new(env, profiles),
            device: OcsfDevice::new(env),
            actor,
            file,
            unmapped: OcsfUnmapped::new(env, source),
        }
    }

    fn access(env: &'a Envelope, source: Option<&'a SourcePosition>, e: &'a FileAccessed) -> Self {
        let activity = match e.kind {
            AccessKind::Open => (FileActivityId::Open, "Open"),
            AccessKind::Exec => (FileActivityId::Other, "Exec"),
            AccessKind::CloseWrite => (FileActivityId::Update, "Update"),
        };
        let p = &e.process;
        let actor = OcsfActor {
            process: OcsfProcess {
                pid: p.pid,
                name: p.command.as_deref(),
                file: p.executable.as_ref().map(OcsfFile::path),
                parent_process: Some(OcsfParent { pid: p.ppid }),
                user: Some(OcsfUid {
                    uid: NumText(u64::from(p.uid)),
                }),
                group: Some(OcsfUid {
                    uid: NumText(u64::from(p.gid)),
                }),
                container: e.container.as_ref().map(OcsfContainer::of),
            },
        };
        let f = &e.file;
        let file = OcsfFile {
            size: Some(f.size),
            modified_time: Some(ms(f.mtime_ns)),
            uid: Some(DevIno {
                device: f.device,
                inode: f.inode,
            }),
            ..OcsfFile::path(&f.path)
        };
        let mut event = Self::new(
            env,
            source,
            activity,
            SeverityId::Informational,
            HOST,
            actor,
            file,
        );
        let u = &mut event.unmapped;
        u.access = Some(e.kind.as_str());
        u.path_hex = path_hex(&f.path);
        u.ctime = Some(Rfc3339(f.ctime_ns));
        u.interceptor_mode = Some(e.interceptor_mode);
        u.policy = e.policy.as_ref().map(|p| EcsPolicy {
            name: &p.name,
            mode: p.mode,
        });
        u.blocking = Some(e.blocking);
        event
    }

    fn action(env: &'a Envelope, source: Option<&'a SourcePosition>, e: &'a ActionTaken) -> Self {
        use DispositionId as D;
        let (activity, action_id, done) = match e.action {
            ActionKind::Block => (
                (FileActivityId::Open, "Open"),
                ActionId::Denied,
                (D::Blocked, D::Blocked.caption()),
            ),
            ActionKind::Remove => (
                (FileActivityId::Delete, "Delete"),
                ActionId::Denied,
                match e.quarantine {
                    Some(_) => (D::Quarantined, D::Quarantined.caption()),
                    None => (D::Deleted, D::Deleted.caption()),
                },
            ),
            ActionKind::Terminate => (
                (FileActivityId::Other, "Terminate"),
                ActionId::Denied,
                (D::Other, "Terminated"),
            ),
            ActionKind::Disinfect => (
                (FileActivityId::Other, "Disinfect"),
                ActionId::Unknown,
                (D::Uncorrected, D::Uncorrected.caption()),
            ),
        };
        let (status, severity, disposition, detail) = match &e.outcome {
            ActionOutcome::Succeeded => (StatusId::Success, SeverityId::Medium, done, None),
            ActionOutcome::Failed { error } => (
                StatusId::Failure,
                SeverityId::High,
                (D::Error, D::Error.caption()),
                Some(error.as_str()),
            ),
            ActionOutcome::NotPossible { why } => (
                StatusId::Failure,
                SeverityId::High,
                (D::Uncorrected, D::Uncorrected.caption()),
                Some(why.as_str()),
            ),
        };
        let actor = OcsfActor {
            process: OcsfProcess {
                pid: e.pid,
                name: None,
                file: None,
                parent_process: None,
                user: None,
                group: None,
                container: None,
            },
        };
        let mut event = Self::new(
            env,
            source,
            activity,
            severity,
            HOST_SECURITY_CONTROL,
            actor,
            OcsfFile::path(&e.path),
        );
        event.status_id = Some(status);
        event.status = Some(status.caption());
        event.status_detail = detail;
        event.action_id = Some(action_id);
        event.action = Some(action_id.caption());
        event.disposition_id = Some(disposition.0);
        event.disposition = Some(disposition.1);
        let u = &mut event.unmapped;
        u.path_hex = path_hex(&e.path);
        u.action = Some(e.action.as_str());
        u.action_step = Some(match e.step {
            ActionStep::First => "first",
            ActionStep::Second => "second",
        });
        u.quarantine_id = e.quarantine.as_ref().map(|q| q.id.as_str());
        u.quarantine_path = e.quarantine.as_ref().map(|q| q.stored_at.to_text());
        event
    }
}

impl<'a> DetectionFinding<'a> {
    fn infected(
        env: &'a Envelope,
        source: Option<&'a SourcePosition>,
        e: &'a VerdictIssued,
        matches: &'a [RuleMatch],
    ) -> Self {
        let first = matches.first();
        let title = first.map_or("Malware detected", |m| m.rule.as_str());
        let desc = first.and_then(|m| {
            m.metadata.iter().rev().find_map(|(k, v)| match v {
                MetaValue::Str(s) if k == "description" => Some(s.as_str()),
                _ => None,
            })
        });
        let time = ms(env.timestamp.0);
        let file = OcsfFile {
            size: Some(e.size),
            hashes: e.sha256.as_ref().map(|h| {
                [OcsfFingerprint {
                    algorithm_id: HashAlgorithmId::Sha256,
                    algorithm: HashAlgorithmId::Sha256.caption(),
                    value: Hex(h),
                }]
            }),
            ..OcsfFile::path(&e.path)
        };
        let mut unmapped = OcsfUnmapped::new(env, source);
        unmapped.path_hex = path_hex(&e.path);
        unmapped.ruleset = Some(&e.ruleset.0);
        unmapped.scan_duration_us = Some(e.scan_duration_us);
        unmapped.matches = Some(Matches(matches));
        unmapped.archive_member = e.verdict.member();
        let activity = FindingActivityId::Create;
        Self {
            activity_id: activity,
            activity_name: activity.caption(),
            category_uid: IntConst,
            category_name: FINDINGS,
            class_uid: IntConst,
            class_name: DETECTION_FINDING,
            type_uid: type_uid(2004, activity.id()),
            type_name: TypeName {
                class: DETECTION_FINDING,
                activity: activity.caption(),
            },
            time,
            severity_id: SeverityId::High,
            severity: SeverityId::High.caption(),
            status_id: FindingStatusId::New,
            status: FindingStatusId::New.caption(),
            confidence_id: ConfidenceId::High,
            confidence: ConfidenceId::High.caption(),
            action_id: ActionId::Unknown,
            action: ActionId::Unknown.caption(),
            disposition_id: DispositionId::Detected,
            disposition: DispositionId::Detected.caption(),
            message: FindingMessage {
                rule: title,
                path: match e.verdict.member() {
                    Some(member) => Cow::Owned(format!("{}!{member}", e.path.to_text())),
                    None => e.path.to_text(),
                },
            },
            metadata: OcsfMetadata::new(env, HOST_SECURITY_CONTROL),
            device: OcsfDevice::new(env),
            finding_info: FindingInfo {
                uid: &env.event_id,
                title,
                desc,
                types: &["Malware"],
                analytic: first.map(|m| OcsfAnalytic {
                    name: &m.rule,
                    type_id: AnalyticTypeId::Rule,
                    ty: AnalyticTypeId::Rule.caption(),
                    uid: QualifiedRule(m),
                    version: &e.ruleset.0,
                }),
                created_time: time,
            },
            evidences: [OcsfEvidence { file }],
            malware: (!matches.is_empty()).then(|| MalwareList {
                matches,
                path: e.path.to_text(),
            }),
            unmapped,
        }
    }
}

impl<'a> OcsfEvent<'a> {
    /// The OCSF event of `env`, if it has one.
    pub fn new(env: &'a Envelope, source: Option<&'a SourcePosition>) -> Option<Self> {
        match &env.body {
            EventBody::FileAccessed(e) => {
                Some(Self::FileActivity(FileActivity::access(env, source, e)))
            }
            EventBody::ActionTaken(e) => {
                Some(Self::FileActivity(FileActivity::action(env, source, e)))
            }
            EventBody::VerdictIssued(
                e @ VerdictIssued {
                    verdict: Verdict::Infected { matches } | Verdict::InfectedMember { matches, .. },
                    ..
                },
            ) => Some(Self::DetectionFinding(DetectionFinding::infected(
                env, source, e, matches,
            ))),
            EventBody::AgentStarted(_)
            | EventBody::AgentStopped(_)
            | EventBody::RulesLoaded(_)
            | EventBody::RulesRejected(_)
            | EventBody::QuarantineRestored(_)
            | EventBody::QuarantineDeleted(_)
            | EventBody::ScanRequested(_)
            | EventBody::VerdictIssued(_)
            | EventBody::DecisionMade(_)
            | EventBody::QueueOverflowed(_)
            | EventBody::ContainerObserved(_) => None,
        }
    }

    /// `class_uid`.
    pub fn class_uid(&self) -> u32 {
        match self {
            Self::FileActivity(_) => 1001,
            Self::DetectionFinding(_) => 2004,
        }
    }

    /// `type_uid`.
    pub fn type_uid(&self) -> u32 {
        match self {
            Self::FileActivity(e) => e.type_uid,
            Self::DetectionFinding(e) => e.type_uid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_uid_is_class_times_100_plus_activity() {
        assert_eq!(type_uid(1001, 14), 100_114);
        assert_eq!(type_uid(1001, 3), 100_103);
        assert_eq!(type_uid(1001, 99), 100_199);
        assert_eq!(type_uid(2004, 1), 200_401);
        for a in FileActivityId::ALL {
            assert_eq!(type_uid(1001, a.id()), 100_100 + a.id());
        }
    }

    #[test]
    fn enum_ids_and_captions_follow_ocsf_1_3_0() {
        assert_eq!(FileActivityId::Open.id(), 14);
        assert_eq!(FileActivityId::Update.id(), 3);
        assert_eq!(FileActivityId::Delete.id(), 4);
        assert_eq!(SeverityId::High.id(), 4);
        assert_eq!(SeverityId::Informational.caption(), "Informational");
        assert_eq!(DispositionId::Blocked.id(), 2);
        assert_eq!(DispositionId::Quarantined.id(), 3);
        assert_eq!(DispositionId::Detected.id(), 15);
        assert_eq!(ActionId::Denied.id(), 2);
        assert_eq!(HashAlgorithmId::Sha256.id(), 3);
        assert_eq!(HashAlgorithmId::Sha256.caption(), "SHA-256");
        assert_eq!(AnalyticTypeId::Rule.id(), 1);
        assert_eq!(FileTypeId::RegularFile.caption(), "Regular File");
        assert_eq!(
            TypeName {
                class: FILE_SYSTEM_ACTIVITY,
                activity: "Open"
            }
            .to_string(),
            "File System Activity: Open"
        );
    }

    #[test]
    fn ms_floors_towards_negative_infinity() {
        assert_eq!(ms(1_999_999), 1);
        assert_eq!(ms(-1), -1);
        assert_eq!(ms(0), 0);
    }
}
