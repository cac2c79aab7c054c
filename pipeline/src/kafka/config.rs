//! The `[kafka]` section of the config file, and its validated form.
//!
//! ```toml
//! [kafka]
//! bootstrap = "kafka-1:9093,kafka-2:9093"  # default: env KAFKA_BOOTSTRAP, else 127.0.0.1:9092
//! topic_prefix = "portcullis"
//! replication_factor = 3
//! inline_limit_kb = 1024                    # larger files: large_files
//! large_files = "local"                     # or "skip"
//! scanner_group = "portcullis.scanners"    # default: <topic_prefix>.scanners
//! events_retention = "7d"
//!
//! [kafka.partitions]
//! scan_requests = 12
//! verdicts = 12
//! verdict_cache = 12
//! events = 12
//!
//! [kafka.librdkafka]                       # passed through verbatim
//! "security.protocol" = "ssl"
//! "ssl.ca.location" = "/etc/portcullis/kafka-ca.pem"
//! ```
//!
//! Passthrough keys may be quoted (`"socket.timeout.ms" = 30000`) or
//! written as dotted TOML keys (`socket.timeout.ms = 30000`); numbers and
//! booleans become strings. Keys that the delivery guarantees depend on
//! are set by portcullis and refused here ([`OWNED_KEYS`]); every other key
//! is checked by librdkafka itself when the section is built, so an unknown
//! name or a bad value fails at load, naming the key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use super::clients;
use super::topics::{check_prefix, Topic, Topics};
use super::KafkaSetupError;

/// Where the bootstrap list comes from when the file has none.
pub const BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP";
/// The bootstrap list when neither the file nor the environment has one.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";
/// The largest `inline_limit_kb`.
pub const MAX_INLINE_LIMIT_KB: u64 = 8192;
/// Room for a scan request's other fields, framing and Kafka's record
/// overhead on top of its inline content.
pub const MESSAGE_HEADROOM: u64 = 64 * 1024;
/// librdkafka's default `message.max.bytes`.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: u64 = 1_000_000;
/// The most partitions portcullis creates for one topic.
pub const MAX_PARTITIONS: i32 = 10_000;

/// librdkafka settings portcullis sets itself, with the reason; refused in
/// `kafka.librdkafka`.
pub const OWNED_KEYS: &[(&str, &str)] = &[
    ("bootstrap.servers", "set by portcullis from kafka.bootstrap; use that"),
    ("metadata.broker.list", "set by portcullis from kafka.bootstrap; use that"),
    ("client.id", "set by portcullis (one per producer and consumer)"),
    ("group.id", "set by portcullis (kafka.scanner_group for the scanners)"),
    ("group.instance.id", "would be shared by every consumer of the process; static membership is not supported"),
    ("enable.idempotence", "set by portcullis (the producer must be idempotent)"),
    ("enable.gapless.guarantee", "set by portcullis (the producer must be idempotent)"),
    ("acks", "set by portcullis to all (idempotence needs every in-sync replica)"),
    ("request.required.acks", "set by portcullis to all (idempotence needs every in-sync replica)"),
    ("transactional.id", "set by portcullis per siem-export instance (exactly-once consume-transform-produce)"),
    ("enable.auto.commit", "set by portcullis to false (offsets are committed in transactions or after the event is persisted)"),
    ("auto.commit.enable", "set by portcullis to false (offsets are committed in transactions or after the event is persisted)"),
    ("enable.auto.offset.store", "set by portcullis to false (offsets are stored only after the event is persisted)"),
    ("offset.store.method", "set by portcullis (offsets live in the broker)"),
    ("isolation.level", "set by portcullis: read_committed for the events and exports (aborted transactions stay invisible), read_uncommitted on the scan request/reply path"),
    ("auto.offset.reset", "set by portcullis (earliest for the scanner group; replies are read from a given offset)"),
    ("max.in.flight", "set by librdkafka's idempotent producer (ordering depends on it)"),
    ("max.in.flight.requests.per.connection", "set by librdkafka's idempotent producer (ordering depends on it)"),
    ("queuing.strategy", "must stay fifo (ordering of the idempotent producer depends on it)"),
    ("enable.partition.eof", "portcullis consumers do not expect partition-EOF events"),
];

/// Values of these keys are never printed (`Debug`).
const SECRET_MARKERS: &[&str] = &[
    "password",
    "secret",
    ".pem",
    "sasl.oauthbearer.config",
    "sasl.username",
];

/// `[kafka]` section of the config file. Its presence turns on distributed mode.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// host:port list. Default: env `KAFKA_BOOTSTRAP`, else "127.0.0.1:9092".
    pub bootstrap: Option<String>,
    /// Topic name prefix (default "portcullis"): topics are
    /// "<prefix>.scan-requests.v1" etc.
    #[serde(default = "d_prefix")]
    pub topic_prefix: String,
    #[serde(default)]
    pub partitions: TopicPartitions,
    /// Replication factor of every topic (default 1).
    #[serde(default = "d_one")]
    pub replication_factor: i16,
    /// Content up to this many KiB travels inline in scan requests (default
    /// 1024, max 8192).
    #[serde(default = "d_inline_kb")]
    pub inline_limit_kb: u64,
    /// Larger files: "local" (default; the node's own scanner) or "skip"
    /// (logged as unprocessed).
    #[serde(default)]
    pub large_files: LargeFiles,
    /// This node's reply partition on the verdicts topic. Default: hash of
    /// the node id modulo the partition count
    /// ([`KafkaSettings::reply_partition_for`]).
    pub reply_partition: Option<i32>,
    /// Scanner consumer group (default "<topic_prefix>.scanners"). One
    /// group per deployment: scanners of another prefix on the same broker
    /// in the same group would rebalance with these at every start, stop
    /// and crash of theirs.
    pub scanner_group: Option<String>,
    /// Retention of the events topic, e.g. "7d" (default) — humantime.
    #[serde(default = "d_retention")]
    pub events_retention: String,
    /// librdkafka settings passed through verbatim (TLS, SASL, ...), e.g.
    /// "security.protocol" = "ssl".
    #[serde(default, deserialize_with = "passthrough")]
    pub librdkafka: Passthrough,
    /// librdkafka settings read from environment variables at load: key →
    /// variable name, e.g. "sasl.password" = "KAFKA_SASL_PASSWORD" (a
    /// Kubernetes Secret or systemd credential passed as a variable, kept
    /// out of the configuration file). Checked like `librdkafka`.
    #[serde(default)]
    pub librdkafka_env: BTreeMap<String, String>,
}

/// Partitions of each topic (every one defaults to 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicPartitions {
    #[serde(default = "d_partitions")]
    pub scan_requests: i32,
    #[serde(default = "d_partitions")]
    pub verdicts: i32,
    #[serde(default = "d_partitions")]
    pub verdict_cache: i32,
    #[serde(default = "d_partitions")]
    pub events: i32,
}

impl Default for TopicPartitions {
    fn default() -> Self {
        Self {
            scan_requests: d_partitions(),
            verdicts: d_partitions(),
            verdict_cache: d_partitions(),
            events: d_partitions(),
        }
    }
}

impl TopicPartitions {
    /// The partition count of `t`.
    pub fn of(&self, t: Topic) -> i32 {
        match t {
            Topic::ScanRequests => self.scan_requests,
            Topic::Verdicts => self.verdicts,
            Topic::VerdictCache => self.verdict_cache,
            Topic::Events => self.events,
        }
    }

    fn field(t: Topic) -> &'static str {
        match t {
            Topic::ScanRequests => "kafka.partitions.scan_requests",
            Topic::Verdicts => "kafka.partitions.verdicts",
            Topic::VerdictCache => "kafka.partitions.verdict_cache",
            Topic::Events => "kafka.partitions.events",
        }
    }
}

/// What a node does with files above the inline limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LargeFiles {
    /// Scan them with the node's own scanner.
    #[default]
    Local,
    /// Do not scan them; log them as unprocessed.
    Skip,
}

fn d_prefix() -> String {
    "portcullis".into()
}
fn d_one() -> i16 {
    1
}
fn d_inline_kb() -> u64 {
    1024
}
fn d_retention() -> String {
    "7d".into()
}
fn d_partitions() -> i32 {
    12
}

impl Default for KafkaSection {
    /// The same values as an empty `[kafka]` section.
    fn default() -> Self {
        Self {
            bootstrap: None,
            topic_prefix: d_prefix(),
            partitions: TopicPartitions::default(),
            replication_factor: d_one(),
            inline_limit_kb: d_inline_kb(),
            large_files: LargeFiles::default(),
            reply_partition: None,
            scanner_group: None,
            events_retention: d_retention(),
            librdkafka: Passthrough::default(),
            librdkafka_env: BTreeMap::new(),
        }
    }
}

/// Validated `[kafka]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    pub bootstrap: String,
    pub topics: Topics,
    pub partitions: TopicPartitions,
    pub replication_factor: i16,
    /// Bytes of content that travel inline in a scan request.
    pub inline_limit: u64,
    pub large_files: LargeFiles,
    pub reply_partition: Option<i32>,
    pub scanner_group: String,
    pub events_retention: Duration,
    pub librdkafka: Passthrough,
}

/// librdkafka settings passed through verbatim. Its `Debug` redacts
/// secrets (passwords, keys), so settings can be logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Passthrough(pub BTreeMap<String, String>);

impl std::ops::Deref for Passthrough {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let secret = SECRET_MARKERS.iter().any(|m| k.contains(m));
                (k, if secret { "<redacted>" } else { v.as_str() })
            }))
            .finish()
    }
}

impl KafkaSettings {
    /// This node's reply partition: `reply_partition` if set, else a stable
    /// hash of the node id (first 4 bytes of its sha256) modulo the
    /// partitions of the verdicts topic. Stable across builds and
    /// platforms, unlike `std`'s hasher.
    pub fn reply_partition_for(&self, node_id: &str) -> i32 {
        if let Some(p) = self.reply_partition {
            return p;
        }
        let digest = Sha256::digest(node_id.as_bytes());
        let h = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        let n = u32::try_from(self.partitions.verdicts.max(1)).unwrap_or(1);
        i32::try_from(h % n).unwrap_or(0)
    }

    /// The largest message portcullis produces: a scan request with
    /// `inline_limit` bytes of content plus [`MESSAGE_HEADROOM`]. The
    /// scan-requests topic and producers are sized for it.
    pub fn max_message_bytes(&self) -> u64 {
        self.inline_limit + MESSAGE_HEADROOM
    }

    /// `message.max.bytes` for producers, when librdkafka's default is too
    /// small and the passthrough does not set it.
    pub(crate) fn producer_message_max_bytes(&self) -> Option<u64> {
        let need = self.max_message_bytes();
        (need > LIBRDKAFKA_MESSAGE_MAX_BYTES && !self.librdkafka.contains_key("message.max.bytes"))
            .then_some(need)
    }
}

type Invalid = (String, String);

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    (field.to_string(), message.into())
}

fn passthrough_field(key: &str) -> String {
    format!("kafka.librdkafka.{key:?}")
}

impl KafkaSection {
    /// Validates the section. Errors are `(field, message)`, the field
    /// spelled as in the file: `kafka.inline_limit_kb`,
    /// `kafka.librdkafka."enable.idempotence"`.
    ///
    /// Builds (and drops) a few librdkafka clients without brokers to let
    /// librdkafka check the passthrough settings: no connection is made.
    pub fn build(self) -> Result<KafkaSettings, (String, String)> {
        let env = std::env::var(BOOTSTRAP_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty());
        self.build_with_env(env)
    }

    pub(crate) fn build_with_env(
        self,
        env_bootstrap: Option<String>,
    ) -> Result<KafkaSettings, Invalid> {
        let (bootstrap, from) = match self.bootstrap {
            Some(b) => (b, ""),
            None => match env_bootstrap {
                Some(b) => (b, " (from env KAFKA_BOOTSTRAP)"),
                None => (DEFAULT_BOOTSTRAP.to_string(), ""),
            },
        };
        let bootstrap = bootstrap.trim().to_string();
        if bootstrap.is_empty() || bootstrap.split(',').any(|b| b.trim().is_empty()) {
            return Err(invalid(
                "kafka.bootstrap",
                format!("`{bootstrap}`{from} must be a comma-separated list of host:port"),
            ));
        }
        check_prefix(&self.topic_prefix).map_err(|m| invalid("kafka.topic_prefix", m))?;
        for t in Topic::ALL {
            let n = self.partitions.of(t);
            if !(1..=MAX_PARTITIONS).contains(&n) {
                return Err(invalid(
                    TopicPartitions::field(t),
                    format!("{n} is not in 1..={MAX_PARTITIONS}"),
                ));
            }
        }
        if self.replication_factor < 1 {
            return Err(invalid(
                "kafka.replication_factor",
                format!("{} must be at least 1", self.replication_factor),
            ));
        }
        if !(1..=MAX_INLINE_LIMIT_KB).contains(&self.inline_limit_kb) {
            return Err(invalid(
                "kafka.inline_limit_kb",
                format!(
                    "{} is not in 1..={MAX_INLINE_LIMIT_KB} (KiB of content inline in a scan request)",
                    self.inline_limit_kb
                ),
            ));
        }
        if let Some(p) = self.reply_partition {
            if !(0..self.partitions.verdicts).contains(&p) {
                return Err(invalid(
                    "kafka.reply_partition",
                    format!(
                        "{p} is not a partition of the verdicts topic (0..{}, kafka.partitions.verdicts)",
                        self.partitions.verdicts
                    ),
                ));
            }
        }
        let scanner_group = self
            .scanner_group
            .unwrap_or_else(|| format!("{}.scanners", self.topic_prefix));
        if scanner_group.trim().is_empty() {
            return Err(invalid("kafka.scanner_group", "must not be empty"));
        }
        let events_retention = humantime::parse_duration(&self.events_retention).map_err(|e| {
            invalid(
                "kafka.events_retention",
                format!(
                    "`{}` is not a duration (e.g. \"7d\", \"36h\"): {e}",
                    self.events_retention
                ),
            )
        })?;
        if events_retention < Duration::from_secs(60) {
            return Err(invalid(
                "kafka.events_retention",
                format!("`{}` is shorter than a minute", self.events_retention),
            ));
        }
        if i64::try_from(events_retention.as_millis()).is_err() {
            return Err(invalid(
                "kafka.events_retention",
                format!("`{}` is too long", self.events_retention),
            ));
        }
        let mut librdkafka = self.librdkafka;
        merge_env(&mut librdkafka, &self.librdkafka_env, |v| {
            std::env::var(v).ok()
        })?;
        check_passthrough_keys(&librdkafka)?;
        let settings = KafkaSettings {
            bootstrap,
            topics: Topics::new(&self.topic_prefix),
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            inline_limit: self.inline_limit_kb * 1024,
            large_files: self.large_files,
            reply_partition: self.reply_partition,
            scanner_group,
            events_retention,
            librdkafka,
        };
        if let Some(v) = settings.librdkafka.get("message.max.bytes") {
            let need = settings.max_message_bytes();
            if v.trim().parse::<u64>().is_ok_and(|n| n < need) {
                return Err(invalid(
                    &passthrough_field("message.max.bytes"),
                    format!(
                        "{v} is too small for kafka.inline_limit_kb = {} (scan requests need {need} bytes); raise it or remove it",
                        self.inline_limit_kb
                    ),
                ));
            }
        }
        clients::validate(&settings).map_err(|e| match e {
            KafkaSetupError::Setting {
                setting, message, ..
            } if settings.librdkafka.contains_key(&setting) => {
                (passthrough_field(&setting), message)
            }
            KafkaSetupError::Client { source, .. } => match *source {
                rdkafka::error::KafkaError::ClientCreation(m) => invalid(
                    "kafka.librdkafka",
                    format!("librdkafka refuses these settings together: {m}"),
                ),
                other => invalid("kafka.librdkafka", other.to_string()),
            },
            other => invalid("kafka.librdkafka", other.to_string()),
        })?;
        Ok(settings)
    }
}

/// Adds the `librdkafka_env` settings to `map`, each from its variable
/// (`lookup`). A variable unset or empty, or a key set in both tables, is
/// an error naming the field and the variable.
fn merge_env(
    map: &mut Passthrough,
    from_env: &BTreeMap<String, String>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), Invalid> {
    for (key, var) in from_env {
        let field = format!("kafka.librdkafka_env.{key:?}");
        if map.contains_key(key) {
            return Err(invalid(
                &field,
                "also set in kafka.librdkafka; keep one".to_string(),
            ));
        }
        let value = lookup(var).filter(|v| !v.is_empty()).ok_or_else(|| {
            invalid(
                &field,
                format!("the environment variable {var} is not set (or empty)"),
            )
        })?;
        map.0.insert(key.clone(), value);
    }
    Ok(())
}

/// Refuses the keys portcullis owns, then lets librdkafka check each
/// remaining name and value on its own (so the error names the key).
fn check_passthrough_keys(map: &BTreeMap<String, String>) -> Result<(), Invalid> {
    for key in map.keys() {
        let normalized = key.trim().to_ascii_lowercase();
        if let Some((_, why)) = OWNED_KEYS.iter().find(|(k, _)| *k == normalized) {
            return Err(invalid(
                &passthrough_field(key),
                format!("{why}; remove it"),
            ));
        }
    }
    for (key, value) in map {
        clients::check_setting(key, value).map_err(|m| invalid(&passthrough_field(key), m))?;
    }
    Ok(())
}

/// Reads the passthrough table: string, integer, float and boolean values
/// (as strings); nested tables (dotted TOML keys) flattened with '.'.
fn passthrough<'de, D>(d: D) -> Result<Passthrough, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        String(String),
        Integer(i64),
        Float(f64),
        Boolean(bool),
        Table(BTreeMap<String, Value>),
    }

    fn flatten(
        prefix: &str,
        table: BTreeMap<String, Value>,
        out: &mut BTreeMap<String, String>,
    ) -> Result<(), String> {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k
            } else {
                format!("{prefix}.{k}")
            };
            let value = match v {
                Value::String(s) => s,
                Value::Integer(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Boolean(b) => b.to_string(),
                Value::Table(t) => {
                    flatten(&key, t, out)?;
                    continue;
                }
            };
            if out.insert(key.clone(), value).is_some() {
                return Err(format!("librdkafka setting `{key}` is given twice"));
            }
        }
        Ok(())
    }

    let table = BTreeMap::<String, Value>::deserialize(d)?;
    let mut out = BTreeMap::new();
    flatten("", table, &mut out).map_err(serde::de::Error::custom)?;
    Ok(Passthrough(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> KafkaSection {
        toml::from_str(text).unwrap()
    }

    fn build(text: &str) -> Result<KafkaSettings, Invalid> {
        parse(text).build_with_env(None)
    }

    fn field_of(text: &str) -> String {
        let (field, message) = build(text).unwrap_err();
        assert!(!message.is_empty());
        field
    }

    #[test]
    fn librdkafka_settings_come_from_the_environment_and_are_checked() {
        let s = parse(
            "[librdkafka_env]\n\"sasl.username\" = \"U\"\n\"sasl.password\" = \"P\"\n[librdkafka]\n\"security.protocol\" = \"sasl_plaintext\"\n",
        );
        let env = |v: &str| match v {
            "U" => Some("alice".to_string()),
            "P" => Some("s3cret".to_string()),
            _ => None,
        };
        let mut map = s.librdkafka.clone();
        merge_env(&mut map, &s.librdkafka_env, env).unwrap();
        assert_eq!(map.get("sasl.username").unwrap(), "alice");
        assert_eq!(map.get("sasl.password").unwrap(), "s3cret");
        assert!(!format!("{map:?}").contains("s3cret"), "{map:?}");

        // Unset, empty, or given twice: the field and the variable named.
        let (field, msg) =
            merge_env(&mut s.librdkafka.clone(), &s.librdkafka_env, |_| None).unwrap_err();
        assert_eq!(field, "kafka.librdkafka_env.\"sasl.password\"");
        assert!(msg.contains("P is not set"), "{msg}");
        let (_, msg) = merge_env(&mut s.librdkafka.clone(), &s.librdkafka_env, |_| {
            Some(String::new())
        })
        .unwrap_err();
        assert!(msg.contains("(or empty)"), "{msg}");
        let twice =
            parse("[librdkafka_env]\n\"linger.ms\" = \"L\"\n[librdkafka]\n\"linger.ms\" = \"1\"\n");
        let (field, _) = merge_env(&mut twice.librdkafka.clone(), &twice.librdkafka_env, |_| {
            Some("2".into())
        })
        .unwrap_err();
        assert_eq!(field, "kafka.librdkafka_env.\"linger.ms\"");
        // Keys the guarantees depend on are refused from the environment too.
        let mut owned = Passthrough::default();
        merge_env(
            &mut owned,
            &[("acks".to_string(), "A".to_string())].into(),
            |_| Some("0".into()),
        )
        .unwrap();
        let (field, _) = check_passthrough_keys(&owned).unwrap_err();
        assert_eq!(field, "kafka.librdkafka.\"acks\"");
    }

    #[test]
    fn an_empty_section_has_the_documented_defaults() {
        let section = parse("");
        assert_eq!(section, KafkaSection::default());
        let s = section.build_with_env(None).unwrap();
        assert_eq!(s.bootstrap, "127.0.0.1:9092");
        assert_eq!(s.topics, Topics::new("portcullis"));
        assert_eq!(s.partitions.scan_requests, 12);
        assert_eq!(s.partitions.verdicts, 12);
        assert_eq!(s.partitions.verdict_cache, 12);
        assert_eq!(s.partitions.events, 12);
        assert_eq!(s.replication_factor, 1);
        assert_eq!(s.inline_limit, 1024 * 1024);
        assert_eq!(s.large_files, LargeFiles::Local);
        assert_eq!(s.reply_partition, None);
        assert_eq!(s.scanner_group, "portcullis.scanners");
        assert_eq!(s.events_retention, Duration::from_secs(7 * 24 * 3600));
        assert!(s.librdkafka.is_empty());
    }

    #[test]
    fn every_field_is_read() {
        let s = build(
            r#"
            bootstrap = "k1:9092, k2:9092"
            topic_prefix = "t1"
            replication_factor = 3
            inline_limit_kb = 8192
            large_files = "skip"
            reply_partition = 5
            scanner_group = "g"
            events_retention = "36h"
            [partitions]
            scan_requests = 1
            verdicts = 6
            verdict_cache = 3
            events = 4
            [librdkafka]
            "socket.timeout.ms" = "30000"
            "#,
        )
        .unwrap();
        assert_eq!(s.bootstrap, "k1:9092, k2:9092");
        assert_eq!(s.topics.name(Topic::Events), "t1.events.v1");
        assert_eq!(s.replication_factor, 3);
        assert_eq!(s.inline_limit, 8192 * 1024);
        assert_eq!(s.large_files, LargeFiles::Skip);
        assert_eq!(s.reply_partition, Some(5));
        assert_eq!(s.scanner_group, "g");
        assert_eq!(s.events_retention, Duration::from_secs(36 * 3600));
        assert_eq!(s.partitions.of(Topic::ScanRequests), 1);
        assert_eq!(s.partitions.of(Topic::Verdicts), 6);
        assert_eq!(s.partitions.of(Topic::VerdictCache), 3);
        assert_eq!(s.partitions.of(Topic::Events), 4);
        assert_eq!(s.librdkafka["socket.timeout.ms"], "30000");
    }

    #[test]
    fn the_scanner_group_follows_the_topic_prefix() {
        // Two deployments on one broker never share a group by default.
        assert_eq!(
            build("topic_prefix = \"east\"").unwrap().scanner_group,
            "east.scanners"
        );
        assert_eq!(
            build("topic_prefix = \"west\"").unwrap().scanner_group,
            "west.scanners"
        );
        assert_eq!(
            build("topic_prefix = \"east\"\nscanner_group = \"shared\"")
                .unwrap()
                .scanner_group,
            "shared"
        );
    }

    #[test]
    fn bootstrap_defaults_to_the_environment() {
        let s = parse("")
            .build_with_env(Some("10.0.0.1:19092".into()))
            .unwrap();
        assert_eq!(s.bootstrap, "10.0.0.1:19092");
        // The file wins over the environment.
        let s = parse("bootstrap = \"k:1\"")
            .build_with_env(Some("10.0.0.1:19092".into()))
            .unwrap();
        assert_eq!(s.bootstrap, "k:1");
        // build() reads the real variable.
        let expected = std::env::var(BOOTSTRAP_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_BOOTSTRAP.into());
        assert_eq!(parse("").build().unwrap().bootstrap, expected.trim());
        assert_eq!(field_of("bootstrap = \"\""), "kafka.bootstrap");
        assert_eq!(field_of("bootstrap = \"a:1,,b:2\""), "kafka.bootstrap");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<KafkaSection>("bootstrp = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bootstrp"), "{err}");
        let err = toml::from_str::<KafkaSection>("[partitions]\nverdict = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("verdict"), "{err}");
        assert!(toml::from_str::<KafkaSection>("large_files = \"remote\"").is_err());
    }

    #[test]
    fn the_inline_limit_is_bounded() {
        assert_eq!(field_of("inline_limit_kb = 0"), "kafka.inline_limit_kb");
        assert_eq!(field_of("inline_limit_kb = 8193"), "kafka.inline_limit_kb");
        assert_eq!(build("inline_limit_kb = 1").unwrap().inline_limit, 1024);
        let s = build("inline_limit_kb = 8192").unwrap();
        assert_eq!(s.inline_limit, 8 * 1024 * 1024);
        assert_eq!(s.max_message_bytes(), 8 * 1024 * 1024 + MESSAGE_HEADROOM);
        assert_eq!(
            s.producer_message_max_bytes(),
            Some(8 * 1024 * 1024 + MESSAGE_HEADROOM)
        );
        assert_eq!(
            build("inline_limit_kb = 512")
                .unwrap()
                .producer_message_max_bytes(),
            None
        );
        // A passthrough message.max.bytes must fit a scan request.
        let (field, message) =
            build("inline_limit_kb = 2048\n[librdkafka]\n\"message.max.bytes\" = \"1000000\"")
                .unwrap_err();
        assert_eq!(field, "kafka.librdkafka.\"message.max.bytes\"");
        assert!(message.contains("inline_limit_kb"), "{message}");
        let s = build("inline_limit_kb = 2048\n[librdkafka]\n\"message.max.bytes\" = \"4000000\"")
            .unwrap();
        assert_eq!(s.producer_message_max_bytes(), None);
    }

    #[test]
    fn the_reply_partition_must_be_a_verdicts_partition() {
        assert_eq!(field_of("reply_partition = 12"), "kafka.reply_partition");
        assert_eq!(field_of("reply_partition = -1"), "kafka.reply_partition");
        assert_eq!(
            field_of("reply_partition = 3\n[partitions]\nverdicts = 3"),
            "kafka.reply_partition"
        );
        let s = build("reply_partition = 2\n[partitions]\nverdicts = 3").unwrap();
        assert_eq!(s.reply_partition_for("any"), 2);
    }

    #[test]
    fn the_default_reply_partition_is_a_stable_hash_of_the_node_id() {
        let s = build("[partitions]\nverdicts = 7").unwrap();
        let p = s.reply_partition_for("node-1");
        assert!((0..7).contains(&p));
        assert_eq!(p, s.reply_partition_for("node-1"));
        // Pinned to sha256, so that a change of the hash (which would move
        // every node's replies) fails here.
        let digest = Sha256::digest(b"node-1");
        let h = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        assert_eq!(p, i32::try_from(h % 7).unwrap());
        let spread: std::collections::BTreeSet<i32> = (0..100)
            .map(|i| s.reply_partition_for(&format!("n{i}")))
            .collect();
        assert!(spread.len() > 4, "{spread:?}");
    }

    #[test]
    fn other_bad_values_name_their_field() {
        for (text, field) in [
            ("topic_prefix = \"\"", "kafka.topic_prefix"),
            ("topic_prefix = \"a/b\"", "kafka.topic_prefix"),
            ("replication_factor = 0", "kafka.replication_factor"),
            ("scanner_group = \" \"", "kafka.scanner_group"),
            ("events_retention = \"a week\"", "kafka.events_retention"),
            ("events_retention = \"1s\"", "kafka.events_retention"),
            (
                "[partitions]\nscan_requests = 0",
                "kafka.partitions.scan_requests",
            ),
            ("[partitions]\nverdicts = -1", "kafka.partitions.verdicts"),
            (
                "[partitions]\nverdict_cache = 10001",
                "kafka.partitions.verdict_cache",
            ),
            ("[partitions]\nevents = 0", "kafka.partitions.events"),
        ] {
            assert_eq!(field_of(text), field, "{text}");
        }
    }

    #[test]
    fn debug_output_redacts_secrets_of_both_forms() {
        let text =
            "[librdkafka]\n\"sasl.password\" = \"hunter2\"\n\"socket.timeout.ms\" = \"30000\"";
        let s = build(text).unwrap();
        let section: KafkaSection = toml::from_str(text).unwrap();
        for shown in [format!("{s:?}"), format!("{section:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(
                shown.contains("<redacted>") && shown.contains("30000"),
                "{shown}"
            );
        }
    }

    #[test]
    fn every_owned_librdkafka_key_is_rejected_by_name() {
        for (key, why) in OWNED_KEYS {
            let (field, message) = build(&format!("[librdkafka]\n{key:?} = \"x\"")).unwrap_err();
            assert_eq!(field, format!("kafka.librdkafka.\"{key}\""));
            assert!(
                message.starts_with(why) && message.ends_with("remove it"),
                "{message}"
            );
        }
        let (field, message) =
            build("[librdkafka]\n\"enable.idempotence\" = \"false\"").unwrap_err();
        assert_eq!(field, "kafka.librdkafka.\"enable.idempotence\"");
        assert_eq!(
            message,
            "set by portcullis (the producer must be idempotent); remove it"
        );
        // Case does not get around it.
        assert_eq!(
            field_of("[librdkafka]\n\"Group.Id\" = \"x\""),
            "kafka.librdkafka.\"Group.Id\""
        );
    }

    #[test]
    fn unknown_librdkafka_keys_and_bad_values_are_rejected_by_name() {
        let (field, message) = build("[librdkafka]\n\"no.such.setting\" = \"1\"").unwrap_err();
        assert_eq!(field, "kafka.librdkafka.\"no.such.setting\"");
        assert!(message.contains("no.such.setting"), "{message}");
        let (field, message) =
            build("[librdkafka]\n\"security.protocol\" = \"carrier-pigeon\"").unwrap_err();
        assert_eq!(field, "kafka.librdkafka.\"security.protocol\"");
        assert!(message.contains("carrier-pigeon"), "{message}");
        assert_eq!(
            field_of("[librdkafka]\n\"socket.timeout.ms\" = \"soon\""),
            "kafka.librdkafka.\"socket.timeout.ms\""
        );
        // Callbacks cannot be set from a file.
        assert_eq!(
            field_of("[librdkafka]\n\"dr_cb\" = \"x\""),
            "kafka.librdkafka.\"dr_cb\""
        );
    }

    #[test]
    fn conflicts_found_when_building_a_client_are_reported() {
        // Each value is fine alone; librdkafka refuses the combination when
        // it creates the idempotent producer.
        let (field, message) = build("[librdkafka]\n\"retries\" = \"0\"").unwrap_err();
        assert_eq!(field, "kafka.librdkafka");
        assert!(
            message.contains("`retries` must be set >= 1 when `enable.idempotence` is true"),
            "{message}"
        );
        // Checked when the consumer is created.
        let (field, message) = build("[librdkafka]\n\"fetch.max.bytes\" = \"1000\"").unwrap_err();
        assert_eq!(field, "kafka.librdkafka");
        assert!(message.contains("fetch.max.bytes"), "{message}");
        // TLS files are loaded when the client is created.
        let (_, message) = build(
            "[librdkafka]\n\"security.protocol\" = \"ssl\"\n\"ssl.ca.location\" = \"/nonexistent/ca.pem\"",
        )
        .unwrap_err();
        assert!(message.contains("ssl.ca.location"), "{message}");
    }

    #[test]
    fn valid_librdkafka_settings_are_accepted_in_any_spelling() {
        let s = build(
            "[librdkafka]\n\"security.protocol\" = \"plaintext\"\n\"socket.timeout.ms\" = \"30000\"",
        )
        .unwrap();
        assert_eq!(s.librdkafka["security.protocol"], "plaintext");
        assert_eq!(s.librdkafka["socket.timeout.ms"], "30000");
        // Dotted keys, numbers and booleans.
        let s = build(
            "[librdkafka]\nsocket.timeout.ms = 30000\nlinger.ms = 2.5\nsocket.keepalive.enable = true",
        )
        .unwrap();
        assert_eq!(s.librdkafka["socket.timeout.ms"], "30000");
        assert_eq!(s.librdkafka["linger.ms"], "2.5");
        assert_eq!(s.librdkafka["socket.keepalive.enable"], "true");
        assert!(toml::from_str::<KafkaSection>("[librdkafka]\n\"a\" = [1]").is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let text = "[librdkafka]\n\"sasl.password\" = \"hunter2\"\n\"sasl.mechanism\" = \"PLAIN\"";
        let section = parse(text);
        assert!(!format!("{section:?}").contains("hunter2"));
        let s = section.build_with_env(None).unwrap();
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("hunter2") && printed.contains("PLAIN"),
            "{printed}"
        );
    }
}
