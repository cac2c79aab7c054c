//! Topic names and their creation.
//!
//! | topic | key | partitions | settings |
//! |---|---|---|---|
//! | `<prefix>.scan-requests.v1` | sha256 | `partitions.scan_requests` | retention 1 h (content of files), `max.message.bytes` fits the inline limit |
//! | `<prefix>.verdicts.v1` | request id | `partitions.verdicts` | broker defaults; each node reads its reply partition |
//! | `<prefix>.verdict-cache.v1` | sha256 + ruleset | `partitions.verdict_cache` | `cleanup.policy=compact` |
//! | `<prefix>.events.v1` | node id | `partitions.events` | `retention.ms` from `events_retention` |
//! | `<topic>.dlq` | original key | 1 | retention 30 days, same `max.message.bytes` as its topic |
//! | `<prefix>.siem.ecs.v1`, `<prefix>.siem.ocsf.v1` ([`SiemTopic`]) | node id | `siem.partitions` | `retention.ms` from `events_retention`; created by `siem-export` only ([`ensure_siem_topics`]) |
//!
//! Every topic gets `min.insync.replicas` 2 when its replication factor is 3
//! or more (acks=all then survives one broker down), else 1.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use super::clients::admin_client;
use super::config::KafkaSettings;
use super::KafkaSetupError;

/// The topics portcullis uses. Never a string: names come from [`Topics`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Node agents → scanners, keyed by sha256.
    ScanRequests,
    /// Scanners → the requesting node's reply partition.
    Verdicts,
    /// Shared verdicts, compacted, keyed by [`shared_verdict_key`](portcullis_schemas::wire::shared_verdict_key).
    VerdictCache,
    /// Every journaled event, keyed by node id.
    Events,
}

impl Topic {
    /// Every topic, in a fixed order.
    pub const ALL: [Topic; 4] = [
        Topic::ScanRequests,
        Topic::Verdicts,
        Topic::VerdictCache,
        Topic::Events,
    ];

    /// The name after the prefix, with its version.
    pub fn suffix(self) -> &'static str {
        match self {
            Topic::ScanRequests => "scan-requests.v1",
            Topic::Verdicts => "verdicts.v1",
            Topic::VerdictCache => "verdict-cache.v1",
            Topic::Events => "events.v1",
        }
    }
}

/// The topics `portcullis siem-export` produces. Not in [`Topic::ALL`]:
/// agents and scanners never create them; the exporter does, for the
/// formats it is configured to produce ([`ensure_siem_topics`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SiemTopic {
    /// One ECS JSON document per event.
    Ecs,
    /// One OCSF JSON document per event that has an OCSF class.
    Ocsf,
}

impl SiemTopic {
    pub const ALL: [SiemTopic; 2] = [SiemTopic::Ecs, SiemTopic::Ocsf];

    /// The name after the prefix, with its version.
    pub fn suffix(self) -> &'static str {
        match self {
            SiemTopic::Ecs => "siem.ecs.v1",
            SiemTopic::Ocsf => "siem.ocsf.v1",
        }
    }
}

/// Suffix of a dead-letter topic.
pub const DLQ_SUFFIX: &str = ".dlq";
/// Retention of dead letters: long enough to look at them after a holiday.
pub const DLQ_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Retention of scan requests. They carry file content, and are worthless
/// once the opener's deadline has passed; an hour leaves room for a
/// scanner outage without keeping content around for days.
pub const SCAN_REQUEST_RETENTION: Duration = Duration::from_secs(3600);
/// The bound of [`ensure_topics`].
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a Kafka topic name may be.
pub const MAX_TOPIC_NAME: usize = 249;

/// Topic names under one prefix (default `portcullis`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Names under `prefix`; [`KafkaSection::build`](super::KafkaSection::build)
    /// validates it (legal characters, length).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>.<suffix>`, e.g. `portcullis.scan-requests.v1`.
    pub fn name(&self, t: Topic) -> String {
        format!("{}.{}", self.prefix, t.suffix())
    }

    /// The dead-letter topic of `t`: `<name>.dlq`.
    pub fn dlq(&self, t: Topic) -> String {
        format!("{}{DLQ_SUFFIX}", self.name(t))
    }

    /// `<prefix>.<suffix>` of a SIEM topic, e.g. `portcullis.siem.ecs.v1`.
    pub fn siem(&self, t: SiemTopic) -> String {
        format!("{}.{}", self.prefix, t.suffix())
    }

    /// Every topic with its name (not the dead-letter topics).
    pub fn all(&self) -> Vec<(Topic, String)> {
        Topic::ALL.iter().map(|&t| (t, self.name(t))).collect()
    }

    /// The topic a name belongs to (a main topic, not a DLQ).
    pub fn topic_of(&self, name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|&t| self.name(t) == name)
    }
}

/// Validates a topic prefix: Kafka's legal characters, and short enough for
/// the longest name built from it.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{prefix}` contains {c:?}; topic names allow ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    if prefix == "." || prefix == ".." {
        return Err(format!("`{prefix}` is not a legal topic name"));
    }
    let longest = Topic::ALL
        .iter()
        .map(|t| t.suffix().len() + DLQ_SUFFIX.len())
        .chain(SiemTopic::ALL.iter().map(|t| t.suffix().len()))
        .map(|suffix| prefix.len() + 1 + suffix)
        .max()
        .unwrap_or(0);
    if longest > MAX_TOPIC_NAME {
        return Err(format!(
            "is {} characters; topic names built from it would exceed Kafka's {MAX_TOPIC_NAME}",
            prefix.len()
        ));
    }
    Ok(())
}

/// What one topic should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub config: BTreeMap<&'static str, String>,
}

/// Every topic and DLQ with its partitions and settings.
pub(crate) fn topic_specs(settings: &KafkaSettings) -> Vec<TopicSpec> {
    let min_isr = if settings.replication_factor >= 3 {
        2
    } else {
        1
    };
    let mut specs = Vec::with_capacity(8);
    for (t, name) in settings.topics.all() {
        let mut config = BTreeMap::new();
        config.insert("min.insync.replicas", min_isr.to_string());
        match t {
            Topic::ScanRequests => {
                config.insert(
                    "retention.ms",
                    SCAN_REQUEST_RETENTION.as_millis().to_string(),
                );
                config.insert(
                    "max.message.bytes",
                    settings.max_message_bytes().to_string(),
                );
            }
            Topic::Verdicts => {}
            Topic::VerdictCache => {
                config.insert("cleanup.policy", "compact".into());
            }
            Topic::Events => {
                config.insert(
                    "retention.ms",
                    settings.events_retention.as_millis().to_string(),
                );
            }
        }
        let mut dlq_config = BTreeMap::new();
        dlq_config.insert("min.insync.replicas", min_isr.to_string());
        dlq_config.insert("retention.ms", DLQ_RETENTION.as_millis().to_string());
        dlq_config.insert("cleanup.policy", "delete".into());
        if let Some(max) = config.get("max.message.bytes") {
            dlq_config.insert("max.message.bytes", max.clone());
        }
        specs.push(TopicSpec {
            name,
            partitions: settings.partitions.of(t),
            config,
        });
        specs.push(TopicSpec {
            name: settings.topics.dlq(t),
            partitions: 1,
            config: dlq_config,
        });
    }
    specs
}

/// Creates every topic and its DLQ if missing, within [`SETUP_TIMEOUT`].
///
/// Idempotent: an existing topic is fine. Then it waits until every topic
/// has a leader for each partition, and checks what exactly-once delivery
/// of verdicts depends on:
/// - the verdict cache is compacted (else an error naming the topic);
/// - the verdicts topic has at least `partitions.verdicts` partitions
///   (reply partitions are computed modulo that count).
///
/// Other differences of an existing topic (more partitions, another
/// retention) are logged as warnings, not changed.
pub async fn ensure_topics(settings: &KafkaSettings) -> Result<(), KafkaSetupError> {
    ensure_topics_within(settings, SETUP_TIMEOUT).await
}

/// [`ensure_topics`] with another bound.
pub async fn ensure_topics_within(
    settings: &KafkaSettings,
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    ensure_specs(settings, &topic_specs(settings), timeout).await
}

/// What `siem-export` reads and writes: the events topic and its DLQ
/// (as [`ensure_topics`] makes them) and the SIEM topics in `siem`, with
/// `partitions` each and the events topic's retention. Idempotent, within
/// [`SETUP_TIMEOUT`].
pub async fn ensure_siem_topics(
    settings: &KafkaSettings,
    siem: &[SiemTopic],
    partitions: i32,
) -> Result<(), KafkaSetupError> {
    let events = [
        settings.topics.name(Topic::Events),
        settings.topics.dlq(Topic::Events),
    ];
    let mut specs: Vec<TopicSpec> = topic_specs(settings)
        .into_iter()
        .filter(|s| events.contains(&s.name))
        .collect();
    let min_isr = specs
        .first()
        .and_then(|s| s.config.get("min.insync.replicas").cloned())
        .unwrap_or_else(|| "1".into());
    for &t in siem {
        let mut config = BTreeMap::new();
        config.insert("min.insync.replicas", min_isr.clone());
        config.insert(
            "retention.ms",
            settings.events_retention.as_millis().to_string(),
        );
        specs.push(TopicSpec {
            name: settings.topics.siem(t),
            partitions,
            config,
        });
    }
    ensure_specs(settings, &specs, SETUP_TIMEOUT).await
}

/// Creates the topics of `specs` if missing, waits for their leaders and
/// checks them (see [`ensure_topics`]).
async fn ensure_specs(
    settings: &KafkaSettings,
    specs: &[TopicSpec],
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    let client_id = format!("{}-admin", settings.topics.prefix());
    let admin = Arc::new(admin_client(settings, &client_id)?);
    let bound = Bound {
        deadline: Instant::now() + timeout,
        timeout,
    };
    // The steps have their own deadlines and name what they waited for;
    // this outer bound (a little later) only catches a stuck future.
    let result = tokio::time::timeout(timeout + Duration::from_secs(2), async {
        create_missing(&admin, &client_id, settings, specs, timeout).await?;
        let found = wait_for_leaders(&admin, &client_id, specs, bound).await?;
        check_existing(&admin, settings, specs, &found, bound).await
    })
    .await;
    // Dropping the admin client joins its polling thread (up to 100 ms): do
    // it off the async executor.
    let _ = tokio::task::spawn_blocking(move || drop(admin)).await;
    result.map_err(|_| KafkaSetupError::Timeout {
        what: format!(
            "creating the topics under `{}` on {}",
            settings.topics.prefix(),
            settings.bootstrap
        ),
        waited: timeout,
    })?
}

#[derive(Clone, Copy, Debug)]
struct Bound {
    deadline: Instant,
    timeout: Duration,
}

impl Bound {
    fn left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100))
    }

    fn passed(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

async fn create_missing(
    admin: &AdminClient<DefaultClientContext>,
    client_id: &str,
    settings: &KafkaSettings,
    specs: &[TopicSpec],
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            let mut t = NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(i32::from(settings.replication_factor)),
            );
            for (k, v) in &s.config {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics(new_topics.iter(), &opts)
        .await
        .map_err(|source| KafkaSetupError::Admin {
            client: client_id.to_string(),
            operation: format!("creating the topics under `{}`", settings.topics.prefix()),
            source: Box::new(source),
        })?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created Kafka topic"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "Kafka topic exists")
            }
            Err((topic, code)) => return Err(KafkaSetupError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// Partition counts by topic name, once every topic of `specs` is known
/// with a leader for each partition.
async fn wait_for_leaders(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    client_id: &str,
    specs: &[TopicSpec],
    bound: Bound,
) -> Result<BTreeMap<String, i32>, KafkaSetupError> {
    loop {
        let left = bound.left();
        let a = Arc::clone(admin);
        // Metadata of all topics: asking for one topic by name may create it
        // with broker defaults where auto-creation is on.
        let fetched = tokio::task::spawn_blocking(move || {
            a.inner().fetch_metadata(None, left).map(|md| {
                md.topics()
                    .iter()
                    .map(|t| {
                        let ready = t.error().is_none()
                            && !t.partitions().is_empty()
                            && t.partitions()
                                .iter()
                                .all(|p| p.error().is_none() && p.leader() >= 0);
                        let n = i32::try_from(t.partitions().len()).unwrap_or(i32::MAX);
                        (t.name().to_string(), (n, ready))
                    })
                    .collect::<BTreeMap<_, _>>()
            })
        })
        .await;
        let (missing, last_error) = match fetched {
            Ok(Ok(found)) => {
                let missing: Vec<&str> = specs
                    .iter()
                    .filter(|s| !found.get(&s.name).is_some_and(|(_, ready)| *ready))
                    .map(|s| s.name.as_str())
                    .collect();
                if missing.is_empty() {
                    return Ok(found.into_iter().map(|(k, (n, _))| (k, n)).collect());
                }
                (missing, None)
            }
            Ok(Err(e)) => (
                specs.iter().map(|s| s.name.as_str()).collect(),
                Some(e.to_string()),
            ),
            Err(e) => (
                specs.iter().map(|s| s.name.as_str()).collect(),
                Some(e.to_string()),
            ),
        };
        if bound.passed() {
            return Err(KafkaSetupError::Timeout {
                what: format!(
                    "Kafka admin `{client_id}`: waiting for a leader of every partition of {}{}",
                    missing.join(", "),
                    last_error
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                ),
                waited: bound.timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks the layout: partitions of every topic, compaction of the verdict
/// cache (when `specs` has it).
async fn check_existing(
    admin: &AdminClient<DefaultClientContext>,
    settings: &KafkaSettings,
    specs: &[TopicSpec],
    found: &BTreeMap<String, i32>,
    bound: Bound,
) -> Result<(), KafkaSetupError> {
    for s in specs {
        let Some(&n) = found.get(&s.name) else {
            continue;
        };
        if s.name == settings.topics.name(Topic::Verdicts) && n < s.partitions {
            return Err(KafkaSetupError::TopicMismatch {
                topic: s.name.clone(),
                setting: "the partition count".into(),
                expected: format!(
                    "at least {} (kafka.partitions.verdicts; reply partitions are computed modulo it)",
                    s.partitions
                ),
                found: n.to_string(),
            });
        }
        if n != s.partitions {
            tracing::warn!(
                topic = %s.name, found = n, configured = s.partitions,
                "existing Kafka topic has another partition count; left as it is"
            );
        }
    }
    let cache = settings.topics.name(Topic::VerdictCache);
    if !specs.iter().any(|s| s.name == cache) {
        return Ok(());
    }
    let policy = topic_config(admin, &cache, "cleanup.policy", bound.left()).await?;
    if !policy
        .as_deref()
        .unwrap_or("")
        .split(',')
        .any(|p| p.trim() == "compact")
    {
        return Err(KafkaSetupError::TopicMismatch {
            topic: cache,
            setting: "cleanup.policy".into(),
            expected: "compact".into(),
            found: policy.unwrap_or_else(|| "unset".into()),
        });
    }
    Ok(())
}

/// One setting of a topic as the broker reports it (`describe_configs`),
/// `None` when the broker lists no value. Retried within `timeout` while
/// the broker does not know the topic yet.
pub async fn topic_config(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<String>, KafkaSetupError> {
    let bound = Bound {
        deadline: Instant::now() + timeout,
        timeout,
    };
    loop {
        let opts = AdminOptions::new().request_timeout(Some(bound.left()));
        let spec = [ResourceSpecifier::Topic(topic)];
        let err = match admin.describe_configs(spec.iter(), &opts).await {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(resource)) => return Ok(resource.get(key).and_then(|e| e.value.clone())),
                Some(Err(code)) => code.to_string(),
                None => "no result".to_string(),
            },
            Err(e) => e.to_string(),
        };
        if bound.passed() {
            return Err(KafkaSetupError::Timeout {
                what: format!("describing the settings of topic `{topic}` (last error: {err})"),
                waited: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topics::new("portcullis");
        assert_eq!(t.name(Topic::ScanRequests), "portcullis.scan-requests.v1");
        assert_eq!(t.name(Topic::Verdicts), "portcullis.verdicts.v1");
        assert_eq!(t.name(Topic::VerdictCache), "portcullis.verdict-cache.v1");
        assert_eq!(t.name(Topic::Events), "portcullis.events.v1");
        assert_eq!(t.dlq(Topic::Events), "portcullis.events.v1.dlq");
        let all = t.all();
        assert_eq!(all.len(), 4);
        assert_eq!(
            all[0],
            (Topic::ScanRequests, "portcullis.scan-requests.v1".into())
        );
        assert_eq!(t.topic_of("portcullis.verdicts.v1"), Some(Topic::Verdicts));
        assert_eq!(t.topic_of("portcullis.verdicts.v1.dlq"), None);
        assert_eq!(Topics::new("x.y").name(Topic::Events), "x.y.events.v1");
        assert_eq!(t.siem(SiemTopic::Ecs), "portcullis.siem.ecs.v1");
        assert_eq!(t.siem(SiemTopic::Ocsf), "portcullis.siem.ocsf.v1");
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("portcullis").is_ok());
        assert!(check_prefix("t-1_a.b").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("a b").unwrap_err().contains("' '"));
        assert!(check_prefix("ü").is_err());
        assert!(check_prefix(&"a".repeat(200)).is_ok());
        assert!(check_prefix(&"a".repeat(240)).unwrap_err().contains("249"));
    }
}
