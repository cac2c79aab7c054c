//! Every Kafka client portcullis creates, with the settings the delivery
//! guarantees depend on. The passthrough (`kafka.librdkafka`) goes into
//! each; the keys set here are refused there
//! ([`OWNED_KEYS`](super::config::OWNED_KEYS)).
//!
//! | client | type | set here |
//! |---|---|---|
//! | [`idempotent_producer`] | `FutureProducer` | `enable.idempotence=true`, `acks=all` |
//! | [`transactional_producer`] | `FutureProducer` | the same, `transactional.id` |
//! | [`request_producer`] | `ThreadedProducer<C>` | idempotent, and the [request/reply defaults](REQUEST_REPLY_PRODUCER) |
//! | [`reply_producer`] | `ThreadedProducer<C>` | the same |
//! | [`group_consumer`] | `StreamConsumer<GroupContext>` | `group.id`, `enable.auto.commit=false`, `enable.auto.offset.store=false`, `isolation.level=read_committed`, `auto.offset.reset=earliest` |
//! | [`request_consumer`] | `BaseConsumer<GroupContext>` | the same, but `read_uncommitted` and the [request/reply defaults](REQUEST_REPLY_CONSUMER) |
//! | [`assigned_consumer`] | `StreamConsumer` | `assign()` only; `read_committed`, no commits |
//! | [`reply_consumer`] | [`AssignedConsumer`] | `assign()` only; `read_uncommitted`, the request/reply defaults, no commits |
//! | [`shared_verdict_producer`] | `ThreadedProducer<C>` | idempotent, [lingering](SHARED_VERDICT_PRODUCER) |
//! | [`shared_verdict_consumer`] | [`AssignedConsumer`] | as `reply_consumer`, with [its own defaults](SHARED_VERDICT_CONSUMER) |
//! | [`admin_client`] | `AdminClient` | — |
//!
//! **Two paths, two guarantees.** The events topic (the outbox) and
//! `siem-export` are exactly-once: idempotent or transactional producers,
//! `read_committed` readers. The scan request/reply path (scan requests,
//! replies, shared verdicts) is at-least-once and built for latency: no
//! transactions, `read_uncommitted` readers on their own threads
//! (`BaseConsumer`, polled; not `StreamConsumer`, whose lost wake-ups can
//! stall a stream, rust-rdkafka #665), a short `linger.ms`, and
//! `ThreadedProducer`s whose own thread hands every delivery report to a
//! context (no future to await per message). Their reports are served
//! whatever the rest of the process does: librdkafka counts a message
//! against `queue.buffering.max.*` until its report is served, so a
//! producer polled by a thread that can block could fill its queue and
//! never drain it. A verdict is
//! idempotent (same content and ruleset, same verdict) and the node keeps
//! only the first reply to a request, so a reply sent twice is harmless.
//!
//! The bundled librdkafka is 2.12.1 (rdkafka-sys 4.10.0). Its defaults that
//! the request/reply path changes are in [`REQUEST_REPLY_PRODUCER`],
//! [`REQUEST_REPLY_CONSUMER`], [`SHARED_VERDICT_PRODUCER`] and
//! [`SHARED_VERDICT_CONSUMER`]; a key set in `kafka.librdkafka` overrides
//! them (they are defaults, not [owned keys](super::config::OWNED_KEYS)).
//!
//! Producers also get `message.max.bytes` large enough for a scan request
//! with [`inline_limit`](KafkaSettings::inline_limit) bytes of content
//! (librdkafka's default, 1 000 000, is below the default inline limit of
//! 1 MiB).
//!
//! Why `FutureProducer` for transactions too: it is `Clone` (an `Arc`), has
//! its own polling thread (delivery reports need no polling loop), and
//! gives one future per message, so a scanner can await its reply's
//! delivery or just enqueue it; `commit_transaction` flushes anyway. Its
//! transaction methods are the blocking ones of the `Producer` trait: call
//! them through [`txn`](super::txn), which runs them on tokio's blocking
//! pool.
//!
//! Why `StreamConsumer`: `recv().await` fits actors and tasks, and it keeps
//! the group alive (`max.poll.interval.ms`) while the task awaits. It must
//! be created inside a tokio runtime (actix-rt is one); outside one the
//! constructors return [`KafkaSetupError::NoRuntime`] instead of panicking.
//!
//! A group consumer carries a [`GroupContext`]: it logs every rebalance and
//! tells its owner when the group has assigned it partitions, which is when
//! a service may call itself ready (before that, nothing it is sent is
//! read).

use rdkafka::admin::AdminClient;
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, DefaultConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::producer::{
    BaseProducer, DeliveryResult, FutureProducer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::config::KafkaSettings;
use super::KafkaSetupError;

/// Bootstrap list, passthrough settings and `client.id`: the part every
/// client shares.
pub fn base_config(settings: &KafkaSettings, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in settings.librdkafka.iter() {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &settings.bootstrap);
    c.set("client.id", client_id);
    c
}

fn producer_config(settings: &KafkaSettings, client_id: &str) -> ClientConfig {
    let mut c = base_config(settings, client_id);
    c.set("enable.idempotence", "true");
    c.set("acks", "all");
    if let Some(n) = settings.producer_message_max_bytes() {
        c.set("message.max.bytes", n.to_string());
    }
    c
}

/// The request/reply path's producer settings, as `(key, value, librdkafka
/// 2.12.1's default, why)`.
pub const REQUEST_REPLY_PRODUCER: &[(&str, &str, &str, &str)] = &[
    (
        "linger.ms",
        "0",
        "5",
        "a request or reply leaves at once; under load, messages queued behind the requests in flight still share a batch",
    ),
    (
        "retry.backoff.ms",
        "10",
        "100",
        "a retried produce (leader change, timeout) is sent again after 10 ms",
    ),
    (
        "retry.backoff.max.ms",
        "100",
        "1000",
        "and never waits more than 100 ms between retries",
    ),
    (
        "socket.nagle.disable",
        "true",
        "true",
        "small messages leave at once (TCP_NODELAY); set explicitly",
    ),
];

/// The request/reply path's consumer settings, as `(key, value, librdkafka
/// 2.12.1's default, why)`.
pub const REQUEST_REPLY_CONSUMER: &[(&str, &str, &str, &str)] = &[
    ("fetch.wait.max.ms", "10", "500", "how long the broker holds an empty fetch; it answers at once when a message arrives, so this bounds the idle polling, not the latency"),
    ("fetch.error.backoff.ms", "10", "500", "a failed fetch (leader change) is retried after 10 ms"),
    ("socket.nagle.disable", "true", "true", "set explicitly"),
];

/// librdkafka's other names for the keys of the request/reply defaults.
const ALIASES: &[(&str, &str)] = &[("linger.ms", "queue.buffering.max.ms")];

/// The shared-verdict producer's settings (nothing waits for a shared
/// verdict: batching them saves the broker and every node a request per
/// verdict), as `(key, value, librdkafka 2.12.1's default, why)`.
pub const SHARED_VERDICT_PRODUCER: &[(&str, &str, &str, &str)] = &[
    (
        "linger.ms",
        "20",
        "5",
        "shared verdicts of 20 ms go to the broker in one request",
    ),
    ("retry.backoff.ms", "10", "100", "as the request/reply path"),
    (
        "retry.backoff.max.ms",
        "100",
        "1000",
        "as the request/reply path",
    ),
    ("socket.nagle.disable", "true", "true", "set explicitly"),
];

/// The node's shared-verdict reader's settings, as `(key, value,
/// librdkafka 2.12.1's default, why)`.
pub const SHARED_VERDICT_CONSUMER: &[(&str, &str, &str, &str)] = &[
    (
        "fetch.wait.max.ms",
        "100",
        "500",
        "nothing waits for a shared verdict: fewer idle fetches",
    ),
    (
        "fetch.error.backoff.ms",
        "10",
        "500",
        "as the request/reply path",
    ),
    ("socket.nagle.disable", "true", "true", "set explicitly"),
];

/// Sets each default of `defaults` that the passthrough does not set
/// (under its name or an alias).
fn with_defaults(
    mut c: ClientConfig,
    settings: &KafkaSettings,
    defaults: &[(&str, &str, &str, &str)],
) -> ClientConfig {
    for (key, value, _, _) in defaults {
        let mut names = std::iter::once(*key).chain(
            ALIASES
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, alias)| *alias),
        );
        if !names.any(|n| settings.librdkafka.contains_key(n)) {
            c.set(*key, *value);
        }
    }
    c
}

fn request_producer_config(settings: &KafkaSettings, client_id: &str) -> ClientConfig {
    with_defaults(
        producer_config(settings, client_id),
        settings,
        REQUEST_REPLY_PRODUCER,
    )
}

fn request_consumer_config(settings: &KafkaSettings, client_id: &str) -> ClientConfig {
    uncommitted_consumer_config(settings, client_id, REQUEST_REPLY_CONSUMER)
}

fn uncommitted_consumer_config(
    settings: &KafkaSettings,
    client_id: &str,
    defaults: &[(&str, &str, &str, &str)],
) -> ClientConfig {
    let mut c = with_defaults(consumer_config(settings, client_id), settings, defaults);
    c.set("isolation.level", "read_uncommitted");
    c
}

fn transactional_config(
    settings: &KafkaSettings,
    client_id: &str,
    transactional_id: &str,
) -> ClientConfig {
    let mut c = producer_config(settings, client_id);
    c.set("transactional.id", transactional_id);
    c
}

fn consumer_config(settings: &KafkaSettings, client_id: &str) -> ClientConfig {
    let mut c = base_config(settings, client_id);
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.set("isolation.level", "read_committed");
    c.set("auto.offset.reset", "earliest");
    // librdkafka (2.4+) postpones the next fetch by this much once its
    // prefetch queue is full (default 1 s). A consumer that drains that
    // queue faster then sits idle for the rest of the second: replay of
    // 1M events took 5.6 s instead of 1.7 s. 20 ms keeps fetches coming.
    c.set("fetch.queue.backoff.ms", "20");
    c
}

/// An idempotent producer (`enable.idempotence=true`, `acks=all`): no
/// duplicates and no reordering per partition on retries.
pub fn idempotent_producer(
    settings: &KafkaSettings,
    client_id: &str,
) -> Result<FutureProducer, KafkaSetupError> {
    producer_config(settings, client_id)
        .create()
        .map_err(|e| KafkaSetupError::setting_or_client(client_id, e))
}

/// The node's producer of scan requests: idempotent, no transaction, the
/// request/reply defaults (`linger.ms` 0). Its own thread hands every
/// delivery report (with the message's opaque) to `context`. With metrics
/// on, `context` gets librdkafka's statistics every 5 s
/// ([`stats::ClientStats`](super::stats::ClientStats)).
pub fn request_producer<C: ProducerContext + 'static>(
    settings: &KafkaSettings,
    client_id: &str,
    context: C,
) -> Result<ThreadedProducer<C>, KafkaSetupError> {
    let mut c = request_producer_config(settings, client_id);
    super::stats::enable(&mut c);
    create(c, client_id, context)
}

/// Creates a client of `c` with `context`; errors name the client.
fn create<C, T>(c: ClientConfig, client_id: &str, context: C) -> Result<T, KafkaSetupError>
where
    C: ClientContext,
    T: rdkafka::config::FromClientConfigAndContext<C>,
{
    c.create_with_context(context)
        .map_err(|e| KafkaSetupError::setting_or_client(client_id, e))
}

/// The scanner service's producer of replies: as [`request_producer`]. Its
/// delivery reports (with each message's opaque) tell the service when a
/// reply is acknowledged, before it commits the request's offset.
pub fn reply_producer<C: ProducerContext + 'static>(
    settings: &KafkaSettings,
    client_id: &str,
    context: C,
) -> Result<ThreadedProducer<C>, KafkaSetupError> {
    request_producer(settings, client_id, context)
}

/// The scanner service's producer of shared verdicts: as
/// [`reply_producer`], but lingering ([`SHARED_VERDICT_PRODUCER`]).
pub fn shared_verdict_producer<C: ProducerContext + 'static>(
    settings: &KafkaSettings,
    client_id: &str,
    context: C,
) -> Result<ThreadedProducer<C>, KafkaSetupError> {
    let mut c = with_defaults(
        producer_config(settings, client_id),
        settings,
        SHARED_VERDICT_PRODUCER,
    );
    super::stats::enable(&mut c);
    create(c, client_id, context)
}

/// A transactional producer for consume-transform-produce (`siem-export`):
/// idempotent, with `transactional.id` set.
///
/// Not initialised: call [`txn::init_transactions`](super::txn::init_transactions)
/// once before the first transaction (it fences older producers with the
/// same `transactional_id`, so give each scanner instance a stable id of
/// its own). Then per batch: `txn::begin`, produce, `txn::commit_with_offsets`.
pub fn transactional_producer(
    settings: &KafkaSettings,
    client_id: &str,
    transactional_id: &str,
) -> Result<FutureProducer, KafkaSetupError> {
    if transactional_id.trim().is_empty() {
        return Err(KafkaSetupError::Setting {
            client: client_id.to_string(),
            setting: "transactional.id".into(),
            message: "must not be empty".into(),
        });
    }
    transactional_config(settings, client_id, transactional_id)
        .create()
        .map_err(|e| KafkaSetupError::setting_or_client(client_id, e))
}

/// A consumer in `group`, not yet subscribed (call `subscribe`). Offsets
/// are never committed automatically: commit them in a transaction
/// ([`txn::commit_with_offsets`](super::txn::commit_with_offsets)) or after
/// the event is persisted. Reads only committed transactions; a group
/// without committed offsets starts at the earliest message.
pub fn group_consumer(
    settings: &KafkaSettings,
    client_id: &str,
    group: &str,
) -> Result<StreamConsumer<GroupContext>, KafkaSetupError> {
    if group.trim().is_empty() {
        return Err(KafkaSetupError::Setting {
            client: client_id.to_string(),
            setting: "group.id".into(),
            message: "must not be empty".into(),
        });
    }
    let mut c = consumer_config(settings, client_id);
    c.set("group.id", group);
    super::stats::enable(&mut c);
    stream_consumer(
        &c,
        client_id,
        GroupContext::new(client_id, group).with_stats(super::stats::role::EXPORTER),
    )
}

/// The scanner service's consumer of scan requests: a member of `group`
/// (call `subscribe`), polled on a thread of its own; `read_uncommitted`
/// (requests are never written in transactions, and the reader does not
/// wait for markers); the request/reply defaults; offsets committed by
/// hand once the replies are delivered. `context` may watch revocations
/// ([`GroupContext::on_revoke`]).
pub fn request_consumer(
    settings: &KafkaSettings,
    client_id: &str,
    group: &str,
    context: GroupContext,
) -> Result<BaseConsumer<GroupContext>, KafkaSetupError> {
    if group.trim().is_empty() {
        return Err(KafkaSetupError::Setting {
            client: client_id.to_string(),
            setting: "group.id".into(),
            message: "must not be empty".into(),
        });
    }
    let mut c = request_consumer_config(settings, client_id);
    c.set("group.id", group);
    if context.stats.is_some() {
        super::stats::enable(&mut c);
    }
    create(c, client_id, context)
}

/// A reader of the given partitions of `topic` from `from`, with
/// `assign()`, for a thread of its own (the node's reply partition; the
/// shared verdicts): `read_uncommitted`, the request/reply defaults, no
/// commits, and with `eof` a `PartitionEOF` at each partition's end.
/// Needs no tokio runtime.
pub fn reply_consumer(
    settings: &KafkaSettings,
    client_id: &str,
    topic: &str,
    partitions: &[i32],
    from: Offset,
    eof: bool,
) -> Result<AssignedConsumer, KafkaSetupError> {
    assigned_uncommitted(
        request_consumer_config(settings, client_id),
        client_id,
        topic,
        partitions,
        from,
        eof,
    )
}

/// The node's reader of the shared verdicts (all partitions, from `from`,
/// with a `PartitionEOF` at each end): as [`reply_consumer`], but with
/// [`SHARED_VERDICT_CONSUMER`]'s settings.
pub fn shared_verdict_consumer(
    settings: &KafkaSettings,
    client_id: &str,
    topic: &str,
    partitions: &[i32],
    from: Offset,
) -> Result<AssignedConsumer, KafkaSetupError> {
    assigned_uncommitted(
        uncommitted_consumer_config(settings, client_id, SHARED_VERDICT_CONSUMER),
        client_id,
        topic,
        partitions,
        from,
        true,
    )
}

fn assigned_uncommitted(
    mut c: ClientConfig,
    client_id: &str,
    topic: &str,
    partitions: &[i32],
    from: Offset,
    eof: bool,
) -> Result<AssignedConsumer, KafkaSetupError> {
    c.set("group.id", format!("{client_id}.assigned"));
    if eof {
        c.set("enable.partition.eof", "true");
    }
    let consumer: AssignedConsumer = create(c, client_id, EofExpected)?;
    assign(&consumer, client_id, topic, partitions, from)?;
    Ok(consumer)
}

fn assign<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    client_id: &str,
    topic: &str,
    partitions: &[i32],
    from: Offset,
) -> Result<(), KafkaSetupError> {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    let assign_error = |source: KafkaError| KafkaSetupError::Assign {
        client: client_id.to_string(),
        topic: topic.to_string(),
        source: Box::new(source),
    };
    for &p in partitions {
        tpl.add_partition_offset(topic, p, from)
            .map_err(assign_error)?;
    }
    consumer.assign(&tpl).map_err(assign_error)
}

/// Called with the partitions a group takes away, before they go.
pub type RevokeHook = Box<dyn Fn(&BaseConsumer<GroupContext>, &TopicPartitionList) + Send + Sync>;

/// The context of a [`group_consumer`] or [`request_consumer`]: logs each
/// rebalance with the partitions it moved, counts the assignments
/// received, and runs an optional hook before partitions are revoked.
///
/// Rebalance callbacks run while the consumer is polled (`recv()`), so
/// wait on [`assignments`](Self::assignments) *while* receiving, not
/// before.
pub struct GroupContext {
    client: String,
    group: String,
    assignments: tokio::sync::watch::Sender<u64>,
    on_revoke: Option<RevokeHook>,
    stats: Option<super::stats::ClientStats>,
}

impl std::fmt::Debug for GroupContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupContext")
            .field("client", &self.client)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl GroupContext {
    pub fn new(client: &str, group: &str) -> Self {
        Self {
            client: client.to_string(),
            group: group.to_string(),
            assignments: tokio::sync::watch::Sender::new(0),
            on_revoke: None,
            stats: None,
        }
    }

    /// Feeds librdkafka's statistics to the `portcullis_kafka_*` gauges,
    /// labelled `client = role`.
    pub fn with_stats(mut self, role: &'static str) -> Self {
        self.stats = Some(super::stats::ClientStats::new(role));
        self
    }

    /// Runs `hook` (in the polling thread) before partitions are revoked:
    /// the last moment to commit what was done with them.
    pub fn on_revoke(mut self, hook: RevokeHook) -> Self {
        self.on_revoke = Some(hook);
        self
    }

    /// The number of assignments received so far (an assignment may be
    /// empty: a group with more members than partitions). It changes with
    /// every assignment.
    pub fn assignments(&self) -> tokio::sync::watch::Receiver<u64> {
        self.assignments.subscribe()
    }
}

/// `topic/partition` for each entry, for the logs.
fn partitions(tpl: &TopicPartitionList) -> String {
    let names: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect();
    format!("[{}]", names.join(", "))
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Some(s) = &self.stats {
            s.record(&statistics);
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let (Rebalance::Revoke(tpl), Some(hook)) = (rebalance, &self.on_revoke) {
            hook(consumer, tpl);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (client, group) = (self.client.as_str(), self.group.as_str());
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(client, group, partitions = %partitions(tpl), "partitions assigned");
                self.assignments.send_modify(|n| *n += 1);
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(client, group, partitions = %partitions(tpl), "partitions revoked");
            }
            Rebalance::Error(e) => {
                tracing::warn!(client, group, error = %e, "rebalance failed");
            }
        }
    }
}

/// A consumer of the given partitions of `topic` from `from`, with
/// `assign()`: no group membership, no rebalancing, no commits; reads only
/// committed transactions (a reader of what `siem-export` and the outbox
/// write; the request/reply path reads with [`reply_consumer`]).
///
/// librdkafka's `assign()` refuses a consumer without `group.id`
/// ("Requires a consumer with group.id configured"), so it gets one of its
/// own, `<client_id>.assigned`, that never joins (no `subscribe`) and never
/// commits.
pub fn assigned_consumer(
    settings: &KafkaSettings,
    client_id: &str,
    topic: &str,
    partitions: &[i32],
    from: Offset,
) -> Result<StreamConsumer, KafkaSetupError> {
    let mut c = consumer_config(settings, client_id);
    c.set("group.id", format!("{client_id}.assigned"));
    let consumer = stream_consumer(&c, client_id, DefaultConsumerContext)?;
    assign(&consumer, client_id, topic, partitions, from)?;
    Ok(consumer)
}

/// A plain consumer for reading a topic once (`portcullis replay`): no
/// group membership (partitions are assigned), no commits, read_committed,
/// and end-of-partition events so the reader knows when it caught up.
/// Blocking API: use it on a thread of its own.
pub fn replay_consumer(
    settings: &KafkaSettings,
    client_id: &str,
) -> Result<AssignedConsumer, KafkaSetupError> {
    let mut c = consumer_config(settings, client_id);
    c.set("group.id", format!("{client_id}.assigned"));
    c.set("enable.partition.eof", "true");
    create(c, client_id, EofExpected)
}

/// A consumer with assigned partitions (no group membership), whose
/// end-of-partition events are expected ([`EofExpected`]).
pub type AssignedConsumer = BaseConsumer<EofExpected>;

/// The context of the consumers that ask for end-of-partition events
/// (`enable.partition.eof`): librdkafka also reports each one to the
/// client's error callback, which the default context logs at ERROR
/// ("Global error: PartitionEOF") at every start of the agent. Those are
/// dropped; every other error is logged as the default context does.
#[derive(Debug)]
pub struct EofExpected;

impl ClientContext for EofExpected {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            return;
        }
        tracing::error!(target: "rdkafka::client", "librdkafka: {error}: {reason}");
    }
}

impl ConsumerContext for EofExpected {}

/// An admin client (topic creation and description).
pub fn admin_client(
    settings: &KafkaSettings,
    client_id: &str,
) -> Result<AdminClient<DefaultClientContext>, KafkaSetupError> {
    base_config(settings, client_id)
        .create()
        .map_err(|e| KafkaSetupError::setting_or_client(client_id, e))
}

fn stream_consumer<C: ConsumerContext + 'static>(
    c: &ClientConfig,
    client_id: &str,
    context: C,
) -> Result<StreamConsumer<C>, KafkaSetupError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(KafkaSetupError::NoRuntime {
            client: client_id.to_string(),
        });
    }
    c.create_with_context(context)
        .map_err(|e| KafkaSetupError::setting_or_client(client_id, e))
}

/// Checks one librdkafka setting alone (name known, value valid), without
/// creating a client. The message is librdkafka's.
pub(crate) fn check_setting(key: &str, value: &str) -> Result<(), String> {
    let mut c = ClientConfig::new();
    c.set(key, value);
    match c.create_native_config() {
        Ok(_) => Ok(()),
        Err(KafkaError::ClientConfig(_, desc, _, _)) => Err(desc),
        Err(KafkaError::Nul(_)) => Err("contains a NUL byte".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Lets librdkafka check the settings as a whole: creates (and drops) the
/// idempotent producer, the transactional producer, a consumer and the
/// request/reply producer and consumer with
/// these settings but no bootstrap list, so no connection is attempted.
/// This catches conflicts (`retries = 0` with idempotence,
/// `fetch.max.bytes` below `message.max.bytes`, TLS files that do not
/// load, ...).
pub(crate) fn validate(settings: &KafkaSettings) -> Result<(), KafkaSetupError> {
    const CLIENT: &str = "portcullis-config-check";
    let offline = |mut c: ClientConfig| {
        c.remove("bootstrap.servers");
        c.set_log_level(RDKafkaLogLevel::Emerg);
        c
    };
    let err = |e| KafkaSetupError::setting_or_client(CLIENT, e);
    offline(producer_config(settings, CLIENT))
        .create_with_context::<_, BaseProducer<Quiet>>(Quiet)
        .map_err(err)?;
    offline(transactional_config(settings, CLIENT, CLIENT))
        .create_with_context::<_, BaseProducer<Quiet>>(Quiet)
        .map_err(err)?;
    offline(consumer_config(settings, CLIENT))
        .create_with_context::<_, BaseConsumer<Quiet>>(Quiet)
        .map_err(err)?;
    offline(request_producer_config(settings, CLIENT))
        .create_with_context::<_, BaseProducer<Quiet>>(Quiet)
        .map_err(err)?;
    offline(request_consumer_config(settings, CLIENT))
        .create_with_context::<_, BaseConsumer<Quiet>>(Quiet)
        .map_err(err)?;
    offline(with_defaults(
        producer_config(settings, CLIENT),
        settings,
        SHARED_VERDICT_PRODUCER,
    ))
    .create_with_context::<_, BaseProducer<Quiet>>(Quiet)
    .map_err(err)?;
    Ok(())
}

/// A context that drops librdkafka's logs and errors: the offline clients
/// of [`validate`] would warn that they have no brokers.
struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}
    fn error(&self, _: KafkaError, _: &str) {}
}

impl ProducerContext for Quiet {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl ConsumerContext for Quiet {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::kafka::KafkaSection;

    fn settings(text: &str) -> KafkaSettings {
        toml::from_str::<KafkaSection>(text)
            .unwrap()
            .build_with_env(None)
            .unwrap()
    }

    #[test]
    fn configs_carry_the_guarantees() {
        let s = settings("bootstrap = \"k:1\"\n[librdkafka]\n\"socket.timeout.ms\" = \"30000\"");
        let b = base_config(&s, "c1");
        assert_eq!(b.get("bootstrap.servers"), Some("k:1"));
        assert_eq!(b.get("client.id"), Some("c1"));
        assert_eq!(b.get("socket.timeout.ms"), Some("30000"));
        let p = producer_config(&s, "c1");
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("acks"), Some("all"));
        // 1 MiB inline + headroom is above librdkafka's default.
        assert_eq!(
            p.get("message.max.bytes"),
            Some((1024 * 1024 + 64 * 1024).to_string().as_str())
        );
        let t = transactional_config(&s, "c1", "scanner-1");
        assert_eq!(t.get("transactional.id"), Some("scanner-1"));
        assert_eq!(t.get("enable.idempotence"), Some("true"));
        let c = consumer_config(&s, "c1");
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));

        // The request/reply path: no transactions, uncommitted reads, and
        // latency defaults the passthrough may override.
        let r = request_producer_config(&settings(""), "c1");
        assert_eq!(r.get("linger.ms"), Some("0"));
        let s = settings("[librdkafka]\n\"linger.ms\" = \"2\"");
        let r = request_producer_config(&s, "c1");
        assert_eq!(r.get("enable.idempotence"), Some("true"));
        assert_eq!(r.get("transactional.id"), None);
        assert_eq!(r.get("linger.ms"), Some("2"), "the operator's value wins");
        let aliased = settings("[librdkafka]\n\"queue.buffering.max.ms\" = \"3\"");
        let a = request_producer_config(&aliased, "c1");
        assert_eq!(a.get("linger.ms"), None, "nor under its alias");
        assert_eq!(a.get("queue.buffering.max.ms"), Some("3"));
        assert_eq!(r.get("retry.backoff.ms"), Some("10"));
        assert_eq!(r.get("socket.nagle.disable"), Some("true"));
        let rc = request_consumer_config(&s, "c1");
        assert_eq!(rc.get("isolation.level"), Some("read_uncommitted"));
        assert_eq!(rc.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(rc.get("fetch.error.backoff.ms"), Some("10"));
        assert_eq!(rc.get("enable.auto.commit"), Some("false"));
        // The exactly-once paths keep librdkafka's defaults.
        assert_eq!(producer_config(&s, "c1").get("retry.backoff.ms"), None);
        assert_eq!(consumer_config(&s, "c1").get("fetch.wait.max.ms"), None);
    }

    #[test]
    fn the_documented_defaults_are_librdkafkas() {
        // Each table row names librdkafka's own default: check it against
        // the bundled library, so an upgrade that changes one is noticed.
        let c = ClientConfig::new();
        let native = c.create_native_config().unwrap();
        for (key, _, default, _) in REQUEST_REPLY_PRODUCER
            .iter()
            .chain(REQUEST_REPLY_CONSUMER)
            .chain(SHARED_VERDICT_PRODUCER)
            .chain(SHARED_VERDICT_CONSUMER)
        {
            let got = native.get(key).unwrap();
            assert_eq!(&got, default, "librdkafka's default of {key}");
        }
        assert_eq!(rdkafka::util::get_rdkafka_version().1, "2.12.1");
    }

    #[test]
    fn consumers_need_a_runtime_and_producers_do_not() {
        let s = settings("");
        assert!(matches!(
            group_consumer(&s, "c1", "g"),
            Err(KafkaSetupError::NoRuntime { .. })
        ));
        assert!(idempotent_producer(&s, "c1").is_ok());
        assert!(transactional_producer(&s, "c1", "t1").is_ok());
        assert!(matches!(
            transactional_producer(&s, "c1", " "),
            Err(KafkaSetupError::Setting { .. })
        ));
    }

    #[tokio::test]
    async fn consumers_are_created_without_a_broker() {
        let s = settings("bootstrap = \"127.0.0.1:1\"");
        assert!(group_consumer(&s, "c1", "g").is_ok());
        assert!(matches!(
            group_consumer(&s, "c1", ""),
            Err(KafkaSetupError::Setting { .. })
        ));
        assert!(assigned_consumer(&s, "c2", "t", &[0, 3], Offset::End).is_ok());
    }

    #[test]
    fn request_reply_readers_need_no_runtime() {
        let s = settings("bootstrap = \"127.0.0.1:1\"");
        assert!(reply_consumer(&s, "c3", "t", &[1], Offset::End, false).is_ok());
        assert!(request_consumer(&s, "c4", "g", GroupContext::new("c4", "g")).is_ok());
        assert!(matches!(
            request_consumer(&s, "c4", " ", GroupContext::new("c4", " ")),
            Err(KafkaSetupError::Setting { .. })
        ));
        assert!(request_producer(&s, "c5", rdkafka::producer::DefaultProducerContext).is_ok());
    }
}
